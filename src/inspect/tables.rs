//! The kernel's tables of System V objects (`/proc/sysvipc/shm`, `/proc/sysvipc/sem`),
//! read and parsed by column name: what `ipcs` shows.

use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result, Target};
use crate::raw::key::Key;
use crate::raw::sys;

/// Where the kernel lists the shared-memory segments.
pub const SHM_TABLE: &str = "/proc/sysvipc/shm";
/// Where the kernel lists the semaphore sets.
pub const SEM_TABLE: &str = "/proc/sysvipc/sem";

/// `SHM_DEST` in a segment's mode: marked for removal.
const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` in a segment's mode: locked in memory (`SHM_LOCK`).
const SHM_LOCKED: u32 = 0o2000;

/// One shared-memory segment, as `/proc/sysvipc/shm` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmRecord {
    /// The key (`Key::PRIVATE` for private segments, and for segments marked for removal).
    pub key: Key,
    /// The IPC id (`shmid`).
    pub id: i32,
    /// Permission bits and state flags: the low 9 bits are the permissions, `0o1000`
    /// marks a segment for removal, `0o2000` a segment locked in memory.
    pub mode: u32,
    /// Size in bytes (`shm_segsz`).
    pub size: u64,
    /// Pid of the creator.
    pub cpid: i32,
    /// Pid of the last process that attached or detached.
    pub lpid: i32,
    /// Number of current attaches.
    pub nattch: u64,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Creator's user id.
    pub cuid: u32,
    /// Creator's group id.
    pub cgid: u32,
    /// Last attach (`None`: never, or not listed by this kernel).
    pub atime: Option<SystemTime>,
    /// Last detach.
    pub dtime: Option<SystemTime>,
    /// Creation or last `IPC_SET`.
    pub ctime: Option<SystemTime>,
}

impl ShmRecord {
    /// The permission bits (`mode & 0o777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o777
    }

    /// Marked for removal (`SHM_DEST`): it goes when the last process detaches.
    pub fn is_marked_for_removal(&self) -> bool {
        self.mode & SHM_DEST != 0
    }

    /// Locked in memory (`SHM_LOCK`).
    pub fn is_locked_in_memory(&self) -> bool {
        self.mode & SHM_LOCKED != 0
    }
}

/// One semaphore set, as `/proc/sysvipc/sem` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemRecord {
    /// The key.
    pub key: Key,
    /// The IPC id (`semid`).
    pub id: i32,
    /// Permission bits (low 9 bits).
    pub mode: u32,
    /// Number of semaphores.
    pub nsems: usize,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Creator's user id.
    pub cuid: u32,
    /// Creator's group id.
    pub cgid: u32,
    /// Last `semop` (`None`: never, which for a shmsem pair means never initialised).
    pub otime: Option<SystemTime>,
    /// Creation or last change.
    pub ctime: Option<SystemTime>,
}

impl SemRecord {
    /// The permission bits (`mode & 0o777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o777
    }
}

pub(super) fn no_target() -> Target {
    Target {
        key: Key::PRIVATE,
        id: None,
    }
}

fn read_table(path: &'static str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Other,
        };
        Error::new(
            kind,
            path,
            no_target(),
            format!("cannot read the kernel's table: {e}"),
        )
    })
}

/// Every shared-memory segment of this IPC namespace (`/proc/sysvipc/shm`).
///
/// # Errors
/// `NotFound` without `/proc/sysvipc` (no procfs, or a kernel without System V IPC);
/// `Other` for a table this code cannot understand.
pub fn segments() -> Result<Vec<ShmRecord>> {
    parse_shm_table(&read_table(SHM_TABLE)?)
}

/// Every semaphore set of this IPC namespace (`/proc/sysvipc/sem`).
///
/// # Errors
/// As [`segments`].
pub fn semaphore_sets() -> Result<Vec<SemRecord>> {
    parse_sem_table(&read_table(SEM_TABLE)?)
}

/// A table whose columns are found by the names in its header line, so that kernels
/// that reorder columns or add new ones (`rss`, `swap`) are read alike.
struct Table<'a> {
    source: &'static str,
    names: Vec<&'a str>,
    rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Table<'a> {
    fn parse(source: &'static str, text: &'a str) -> Result<Table<'a>> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(Table::error(source, "empty table: no header line".into()));
        };
        let names: Vec<&str> = header.split_whitespace().collect();
        let rows = lines
            .map(|(n, l)| (n + 1, l.split_whitespace().collect()))
            .collect();
        Ok(Table {
            source,
            names,
            rows,
        })
    }

    fn error(source: &'static str, reason: String) -> Error {
        Error::new(ErrorKind::Other, source, no_target(), reason)
    }

    /// The index of a column the code cannot do without.
    fn required(&self, name: &str) -> Result<usize> {
        self.optional(name).ok_or_else(|| {
            Table::error(
                self.source,
                format!(
                    "no column {name:?} in the header line (columns: {})",
                    self.names.join(" ")
                ),
            )
        })
    }

    fn optional(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| *n == name)
    }

    /// Field `col` of `row` (line `line`), parsed by `parse`.
    fn field<T>(
        &self,
        line: usize,
        row: &[&str],
        col: usize,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T> {
        let name = self.names.get(col).copied().unwrap_or("?");
        let Some(text) = row.get(col) else {
            return Err(Table::error(
                self.source,
                format!(
                    "line {line} has {} fields, no column {name:?} (#{})",
                    row.len(),
                    col + 1
                ),
            ));
        };
        parse(text).ok_or_else(|| {
            Table::error(
                self.source,
                format!("line {line}: column {name:?} is {text:?}, not a valid value"),
            )
        })
    }

    fn time(&self, line: usize, row: &[&str], col: Option<usize>) -> Result<Option<SystemTime>> {
        match col {
            None => Ok(None),
            Some(col) => self.field(line, row, col, parse_time),
        }
    }
}

/// A key as the kernel prints it: `%10d` of a signed `key_t`. Numbers past `i32::MAX`
/// (a tool that printed it unsigned) keep their 32 bits.
fn parse_key(s: &str) -> Option<Key> {
    let v: i64 = s.parse().ok()?;
    if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&v) {
        Some(Key::from_raw(v as u32 as i32))
    } else {
        None
    }
}

fn parse_octal(s: &str) -> Option<u32> {
    u32::from_str_radix(s, 8).ok()
}

fn parse_time(s: &str) -> Option<Option<SystemTime>> {
    let t: i64 = s.parse().ok()?;
    Some(sys::system_time(t))
}

fn parse<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.parse().ok()
}

/// Parses the text of `/proc/sysvipc/shm` (or a saved copy). Columns are found by name;
/// unknown columns are ignored, the time columns may be missing.
///
/// # Errors
/// `Other` when a needed column is missing or a value does not parse.
pub fn parse_shm_table(text: &str) -> Result<Vec<ShmRecord>> {
    let t = Table::parse(SHM_TABLE, text)?;
    let c = [
        "key", "shmid", "perms", "size", "cpid", "lpid", "nattch", "uid", "gid", "cuid", "cgid",
    ]
    .map(|name| t.required(name));
    let [
        key,
        id,
        perms,
        size,
        cpid,
        lpid,
        nattch,
        uid,
        gid,
        cuid,
        cgid,
    ] = c;
    let (key, id, perms, size, cpid, lpid, nattch) =
        (key?, id?, perms?, size?, cpid?, lpid?, nattch?);
    let (uid, gid, cuid, cgid) = (uid?, gid?, cuid?, cgid?);
    let (atime, dtime, ctime) = (
        t.optional("atime"),
        t.optional("dtime"),
        t.optional("ctime"),
    );
    t.rows
        .iter()
        .map(|(line, row)| {
            let line = *line;
            Ok(ShmRecord {
                key: t.field(line, row, key, parse_key)?,
                id: t.field(line, row, id, parse)?,
                mode: t.field(line, row, perms, parse_octal)?,
                size: t.field(line, row, size, parse)?,
                cpid: t.field(line, row, cpid, parse)?,
                lpid: t.field(line, row, lpid, parse)?,
                nattch: t.field(line, row, nattch, parse)?,
                uid: t.field(line, row, uid, parse)?,
                gid: t.field(line, row, gid, parse)?,
                cuid: t.field(line, row, cuid, parse)?,
                cgid: t.field(line, row, cgid, parse)?,
                atime: t.time(line, row, atime)?,
                dtime: t.time(line, row, dtime)?,
                ctime: t.time(line, row, ctime)?,
            })
        })
        .collect()
}

/// Parses the text of `/proc/sysvipc/sem` (or a saved copy), as [`parse_shm_table`].
///
/// # Errors
/// `Other` when a needed column is missing or a value does not parse.
pub fn parse_sem_table(text: &str) -> Result<Vec<SemRecord>> {
    let t = Table::parse(SEM_TABLE, text)?;
    let c = [
        "key", "semid", "perms", "nsems", "uid", "gid", "cuid", "cgid",
    ]
    .map(|name| t.required(name));
    let [key, id, perms, nsems, uid, gid, cuid, cgid] = c;
    let (key, id, perms, nsems) = (key?, id?, perms?, nsems?);
    let (uid, gid, cuid, cgid) = (uid?, gid?, cuid?, cgid?);
    let (otime, ctime) = (t.optional("otime"), t.optional("ctime"));
    t.rows
        .iter()
        .map(|(line, row)| {
            let line = *line;
            Ok(SemRecord {
                key: t.field(line, row, key, parse_key)?,
                id: t.field(line, row, id, parse)?,
                mode: t.field(line, row, perms, parse_octal)?,
                nsems: t.field(line, row, nsems, parse)?,
                uid: t.field(line, row, uid, parse)?,
                gid: t.field(line, row, gid, parse)?,
                cuid: t.field(line, row, cuid, parse)?,
                cgid: t.field(line, row, cgid, parse)?,
                otime: t.time(line, row, otime)?,
                ctime: t.time(line, row, ctime)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHM: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
         0    2818109   600                    72 11957 11957      3     0     0     0     0 1795703943 1795703943 1795703916                  4096                     0
2097152001      32769  1600                  4096   100   101      0  1000  1001  1002  1003          0          0 1700000000                     0                     0
       -16         5   644                    10     1     1      1     0     0     0     0          0          0          0                     0                     0
";

    #[test]
    fn parses_the_shm_table_by_column_name() {
        let rows = parse_shm_table(SHM).unwrap();
        assert_eq!(rows.len(), 3);
        let r = &rows[1];
        assert_eq!(r.key, Key::from_raw(2_097_152_001));
        assert_eq!(
            (r.id, r.size, r.cpid, r.lpid, r.nattch),
            (32769, 4096, 100, 101, 0)
        );
        assert_eq!((r.uid, r.gid, r.cuid, r.cgid), (1000, 1001, 1002, 1003));
        assert_eq!(r.permissions(), 0o600);
        assert!(r.is_marked_for_removal());
        assert_eq!(r.atime, None);
        assert_eq!(
            r.ctime,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000))
        );
        assert_eq!(rows[2].key, Key::from_raw(-16));
        assert!(rows[0].key.is_private());
    }

    #[test]
    fn reordered_and_extra_columns_and_missing_times() {
        let text = "shmid key extra nattch size perms cpid lpid cgid cuid gid uid\n\
                    7 0x1 9 2 100 600 5 6 13 12 11 10\n";
        // "0x1" is not how the kernel writes keys: refused, with the column named.
        let e = parse_shm_table(text).unwrap_err();
        assert!(e.to_string().contains("\"key\""), "{e}");
        let text = text.replace("0x1", "1");
        let r = &parse_shm_table(&text).unwrap()[0];
        assert_eq!(
            (r.id, r.key, r.nattch, r.size),
            (7, Key::from_raw(1), 2, 100)
        );
        assert_eq!((r.uid, r.gid, r.cuid, r.cgid), (10, 11, 12, 13));
        assert_eq!((r.atime, r.dtime, r.ctime), (None, None, None));
    }

    #[test]
    fn missing_column_short_row_and_empty_table_are_errors() {
        let e = parse_shm_table("key shmid perms size\n1 2 600 10\n").unwrap_err();
        assert!(e.to_string().contains("cpid"), "{e}");
        let short = SHM.lines().take(2).collect::<Vec<_>>().join("\n") + "\n 1 2 600\n";
        let e = parse_shm_table(&short).unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(parse_shm_table("").is_err());
        // A header with no rows is an empty machine.
        assert_eq!(
            parse_sem_table("key semid perms nsems uid gid cuid cgid\n").unwrap(),
            []
        );
    }

    #[test]
    fn parses_the_sem_table() {
        let text =
            "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
         0    3538967   600          1     0     0     0     0 1795703942 1795703916
2097152001         12   640          3     1     2     3     4          0 1795703916
";
        let rows = parse_sem_table(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[1].id, rows[1].nsems, rows[1].permissions()),
            (12, 3, 0o640)
        );
        assert_eq!(rows[1].otime, None);
        assert!(rows[0].otime.is_some());
    }
}
