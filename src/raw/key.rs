//! [`Key`]: the name under which System V objects are found (`key_t`).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result, Target};

/// A System V IPC key (`key_t`, 32 bits): the name processes agree on to find one object.
///
/// Build one from a number both sides know ([`Key::from_raw`]), from a file both sides can
/// see ([`Key::ftok`]), or use [`Key::PRIVATE`] for objects shared only with children.
/// `Display` prints it like `ipcs` does: `0x0000162e`.
///
/// ```
/// use shmsem::Key;
/// let key = Key::from_raw(0x162e);
/// assert_eq!(key.to_string(), "0x0000162e");
/// assert_eq!(key.as_raw(), 0x162e);
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

    /// The raw `key_t` value.
    pub const fn as_raw(self) -> i32 {
        self.0
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
        let target = Target {
            key: Key::PRIVATE,
            id: None,
        };
        if proj_id == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "ftok",
                target,
                format!("proj_id must not be 0 (path {})", path.display()),
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Other,
            };
            Error::new(kind, "ftok", target, format!("{}: {e}", path.display()))
        })?;
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

impl From<Key> for i32 {
    fn from(key: Key) -> i32 {
        key.0
    }
}
