//! [`Key`]: the name under which System V objects are found (`key_t`).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result, Target};

/// A System V IPC key (`key_t`, 32 bits): the name processes agree on to find one object.
///
/// Build one from a number both sides know ([`Key::from_u32`] for any hex literal,
/// [`Key::from_raw`] for C's signed `key_t`), from a file both sides can see
/// ([`Key::ftok`]), from text (`"0x0000162e"`, `"5678"`, `"private"`: [`FromStr`]), or
/// use [`Key::PRIVATE`] for objects shared only with children. `Display` prints it like
/// `ipcs` does: `0x0000162e`.
///
/// ```
/// use shmsem::Key;
/// let key = Key::from_u32(0x162e);
/// assert_eq!(key.to_string(), "0x0000162e");
/// assert_eq!(key.as_raw(), 0x162e);
/// assert_eq!("0x0000162e".parse::<Key>()?, key);
/// assert_eq!(Key::from_u32(0xdead_beef).as_u32(), 0xdead_beef);
/// # Ok::<(), shmsem::ParseKeyError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(i32);

impl Key {
    /// `IPC_PRIVATE`: every create with it makes a new object that no other process can open
    /// by key; share it with children through `fork`.
    pub const PRIVATE: Key = Key(libc::IPC_PRIVATE);

    /// A key from its raw value. `key_t` is 32 bits, so this takes an `i32`: a wider number
    /// cannot be truncated silently. (Numbers written in hex past `0x7fff_ffff` convert with
    /// `u32 as i32`, which keeps every bit.)
    pub const fn from_raw(raw: i32) -> Key {
        Key(raw)
    }

    /// A key from its 32 bits written as an unsigned number, as `ipcs` prints keys: any
    /// hex literal fits (`Key::from_u32(0xdead_beef)`).
    pub const fn from_u32(bits: u32) -> Key {
        Key(bits as i32)
    }

    /// The raw `key_t` value.
    pub const fn as_raw(self) -> i32 {
        self.0
    }

    /// The key's 32 bits as an unsigned number (what `ipcs` prints in hex).
    pub const fn as_u32(self) -> u32 {
        self.0 as u32
    }

    /// Is this [`Key::PRIVATE`]?
    pub const fn is_private(self) -> bool {
        self.0 == libc::IPC_PRIVATE
    }

    /// The key `ftok(3)` makes for `path` and `proj_id`, computed the way glibc does, so a
    /// C program calling `ftok` with the same file and id finds the same objects.
    ///
    /// The key mixes the low 8 bits of the file's device number and the low 16 bits of its
    /// inode number with `proj_id`: two different files can give the same key, and a file
    /// that is deleted and re-created usually gives a different one. `proj_id` 0 is
    /// rejected (`InvalidInput`): ftok's result for 0 is unspecified by POSIX.
    ///
    /// # Errors
    /// `NotFound` when the path does not exist, `PermissionDenied` when it cannot be
    /// reached, `InvalidInput` for `proj_id` 0.
    ///
    /// ```
    /// use shmsem::Key;
    /// let key = Key::ftok("/", b'S')?;
    /// assert_eq!((key.as_raw() as u32) >> 24, u32::from(b'S'));
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    pub fn ftok(path: impl AsRef<Path>, proj_id: u8) -> Result<Key> {
        let path = path.as_ref();
        let target = Target::NONE;
        if proj_id == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "Key::ftok",
                target,
                format!("proj_id must not be 0 (path {})", path.display()),
            ));
        }
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io("Key::ftok", target, &path.display().to_string(), &e))?;
        // glibc: (st_ino & 0xffff) | ((st_dev & 0xff) << 16) | ((proj_id & 0xff) << 24)
        let raw = (meta.ino() & 0xffff) as u32
            | (((meta.dev() & 0xff) as u32) << 16)
            | (u32::from(proj_id) << 24);
        Ok(Key(raw as i32))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0 as u32)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// Parses what people and tools write for a key: `ipcs`'s hex (`0x000004d2`, any case,
/// up to 8 digits), a decimal number (signed like C's `key_t`, or unsigned up to
/// `4294967295`), or `private` / `IPC_PRIVATE` for [`Key::PRIVATE`] (any case).
///
/// ```
/// use shmsem::Key;
/// assert_eq!("0x000004d2".parse(), Ok(Key::from_u32(1234)));
/// assert_eq!("1234".parse(), Ok(Key::from_u32(1234)));
/// assert_eq!("-1".parse(), Ok(Key::from_u32(0xffff_ffff)));
/// assert_eq!("private".parse(), Ok(Key::PRIVATE));
/// assert!("0x1_0000_0000".parse::<Key>().is_err());
/// ```
impl FromStr for Key {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> std::result::Result<Key, ParseKeyError> {
        let bad = || ParseKeyError {
            input: s.to_owned(),
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("private") || t.eq_ignore_ascii_case("ipc_private") {
            return Ok(Key::PRIVATE);
        }
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            // from_str_radix would accept a sign after the prefix: digits only.
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            return u32::from_str_radix(hex, 16)
                .map(Key::from_u32)
                .map_err(|_| bad());
        }
        let v: i64 = t.parse().map_err(|_| bad())?;
        match v {
            v if (i64::from(i32::MIN)..0).contains(&v) => Ok(Key(v as i32)),
            v => u32::try_from(v).map(Key::from_u32).map_err(|_| bad()),
        }
    }
}

/// Text that is not a key ([`Key`]'s [`FromStr`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseKeyError {
    input: String,
}

impl fmt::Display for ParseKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a System V key: write it as ipcs prints it (0x000004d2), in \
             decimal (1234, or -1 for 0xffffffff), or as `private`",
            self.input
        )
    }
}

impl std::error::Error for ParseKeyError {}

impl From<Key> for i32 {
    fn from(key: Key) -> i32 {
        key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_ipcs_and_people_write_and_nothing_else() {
        let ok = |s: &str| s.parse::<Key>().unwrap().as_u32();
        assert_eq!(ok("0x000004d2"), 1234);
        assert_eq!(ok("0XFFFFFFFF"), u32::MAX);
        assert_eq!(ok(" 0x10 "), 16);
        assert_eq!(ok("4294967295"), u32::MAX);
        assert_eq!(ok("-2147483648"), 0x8000_0000);
        assert_eq!(ok("IPC_PRIVATE"), 0);
        for bad in [
            "",
            "0x",
            "0x-1",
            "0x+1",
            "0x100000000",
            "4294967296",
            "-2147483649",
            "12ab",
            "key",
        ] {
            let e = bad.parse::<Key>().unwrap_err();
            assert!(e.to_string().contains("not a System V key"), "{bad:?}: {e}");
        }
    }
}
