//! The kernel's tables of System V objects (`/proc/sysvipc/shm`, `/proc/sysvipc/sem`),
//! read and parsed by column name: what `ipcs` shows.

use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result, Target};
use crate::raw::key::Key;
use crate::raw::sem::SemaphoreSetInfo;
use crate::raw::shm::SegmentInfo;
use crate::raw::sys;

/// Where the kernel lists the shared-memory segments.
pub const SHM_TABLE: &str = "/proc/sysvipc/shm";
/// Where the kernel lists the semaphore sets.
pub const SEM_TABLE: &str = "/proc/sysvipc/sem";

/// One shared-memory segment, as `/proc/sysvipc/shm` lists it: the facts
/// `shmctl(IPC_STAT)` gives, so the same type.
pub type ShmRecord = SegmentInfo;

/// One semaphore set, as `/proc/sysvipc/sem` lists it: the facts `semctl(IPC_STAT)`
/// gives, so the same type.
pub type SemRecord = SemaphoreSetInfo;

pub(crate) fn no_target() -> Target {
    Target {
        key: Key::PRIVATE,
        id: None,
    }
}

fn read_table(path: &'static str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::io(path, no_target(), "cannot read the kernel's table", &e))
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

    /// Every row, made into a record by `record`, once every column in `required` is
    /// known to be there (also when there are no rows: a table without them is not one
    /// this code understands).
    fn records<R>(
        &self,
        required: &[&str],
        record: impl Fn(&Row<'_, 'a>) -> Result<R>,
    ) -> Result<Vec<R>> {
        for name in required {
            self.required(name)?;
        }
        self.rows
            .iter()
            .map(|(line, fields)| {
                record(&Row {
                    table: self,
                    line: *line,
                    fields,
                })
            })
            .collect()
    }
}

/// One row of a [`Table`]: its fields by column name.
struct Row<'t, 'a> {
    table: &'t Table<'a>,
    /// The line number in the text, for errors.
    line: usize,
    fields: &'t [&'a str],
}

impl Row<'_, '_> {
    /// The field in column `name`, parsed by `parse`.
    fn get<T>(&self, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
        let col = self.table.required(name)?;
        let (source, line) = (self.table.source, self.line);
        let Some(text) = self.fields.get(col) else {
            return Err(Table::error(
                source,
                format!(
                    "line {line} has {} fields, no column {name:?} (#{})",
                    self.fields.len(),
                    col + 1
                ),
            ));
        };
        parse(text).ok_or_else(|| {
            Table::error(
                source,
                format!("line {line}: column {name:?} is {text:?}, not a valid value"),
            )
        })
    }

    /// The time in column `name`; `None` for never, and where the column is missing.
    fn time(&self, name: &str) -> Result<Option<SystemTime>> {
        match self.table.optional(name) {
            None => Ok(None),
            Some(_) => self.get(name, parse_time),
        }
    }
}

/// A key as the kernel prints it: `%10d` of a signed `key_t`. Decimal only (anything
/// else is not the kernel's table), then [`Key`]'s own parser, which also keeps the 32
/// bits of a number printed unsigned.
fn parse_key(s: &str) -> Option<Key> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let decimal = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    decimal.then(|| s.parse().ok()).flatten()
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
    let required = [
        "key", "shmid", "perms", "size", "cpid", "lpid", "nattch", "uid", "gid", "cuid", "cgid",
    ];
    Table::parse(SHM_TABLE, text)?.records(&required, |r| {
        Ok(ShmRecord {
            key: r.get("key", parse_key)?,
            id: r.get("shmid", parse)?,
            mode: r.get("perms", parse_octal)?,
            size: r.get("size", parse)?,
            cpid: r.get("cpid", parse)?,
            lpid: r.get("lpid", parse)?,
            nattch: r.get("nattch", parse)?,
            uid: r.get("uid", parse)?,
            gid: r.get("gid", parse)?,
            cuid: r.get("cuid", parse)?,
            cgid: r.get("cgid", parse)?,
            atime: r.time("atime")?,
            dtime: r.time("dtime")?,
            ctime: r.time("ctime")?,
        })
    })
}

/// Parses the text of `/proc/sysvipc/sem` (or a saved copy), as [`parse_shm_table`].
///
/// # Errors
/// `Other` when a needed column is missing or a value does not parse.
pub fn parse_sem_table(text: &str) -> Result<Vec<SemRecord>> {
    let required = [
        "key", "semid", "perms", "nsems", "uid", "gid", "cuid", "cgid",
    ];
    Table::parse(SEM_TABLE, text)?.records(&required, |r| {
        Ok(SemRecord {
            key: r.get("key", parse_key)?,
            id: r.get("semid", parse)?,
            mode: r.get("perms", parse_octal)?,
            nsems: r.get("nsems", parse)?,
            uid: r.get("uid", parse)?,
            gid: r.get("gid", parse)?,
            cuid: r.get("cuid", parse)?,
            cgid: r.get("cgid", parse)?,
            otime: r.time("otime")?,
            ctime: r.time("ctime")?,
        })
    })
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
