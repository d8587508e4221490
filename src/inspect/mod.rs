//! Inspection and clean-up of the System V objects on this machine: what `ipcs` shows,
//! plus what shmsem sees in them (the `shmsem-inspect` tool is a thin front end).
//!
//! - [`list`] reads `/proc/sysvipc/shm` and `/proc/sysvipc/sem` (every segment and
//!   semaphore set of this IPC namespace, whoever owns it) and, for each segment, attaches
//!   it read-only to look for a shmsem header ([`Contents`]): for a managed object, its
//!   kind, payload, paired semaphore set, current holder (and whether that process is
//!   alive), and poisoning.
//! - [`show_key`] and [`show_id`] do the same for one key or IPC id.
//! - [`remove`] removes a managed pair (segment and semaphore set) by key, refusing
//!   anything that is not one unless forced.
//! - [`gc`] removes managed pairs that are abandoned: the creator is gone and nobody
//!   attaches the segment. [`GcOptions`] has a dry run and a key filter.
//!
//! Nothing here panics on odd objects: a foreign segment is [`Contents::Foreign`], one
//! this process may not attach is [`Contents::NoPermission`], one removed while it was
//! being looked at is [`Contents::Gone`].
//!
//! Looking is not entirely free of side effects: attaching a segment (read-only, for a
//! moment) updates its `lpid`, `atime` and `dtime`, and `nattch` counts the inspector
//! while it looks. Processes are checked with `kill(pid, 0)`; pids are those of this PID
//! namespace, and a pid that was reused by an unrelated process looks alive (the safe
//! direction for [`gc`]).
//!
//! ```no_run
//! use shmsem::inspect::{self, Contents};
//!
//! for seg in inspect::list()?.segments {
//!     if let Contents::Managed(m) = &seg.contents {
//!         println!("{} is a {} of {} bytes", seg.record.key, m.kind.name(), m.payload_size);
//!     }
//! }
//! # Ok::<(), shmsem::Error>(())
//! ```

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result, Target, classify, last_errno};
use crate::managed::header::{self, HEADER_SIZE, Live, ObjectKind};
use crate::managed::lease::{self, Leases};
use crate::raw::key::Key;
use crate::raw::sem::SemaphoreSet;
use crate::raw::shm::Segment;
use crate::raw::sys;

/// Where the kernel lists the shared-memory segments.
pub const SHM_TABLE: &str = "/proc/sysvipc/shm";
/// Where the kernel lists the semaphore sets.
pub const SEM_TABLE: &str = "/proc/sysvipc/sem";

/// `SHM_DEST` in a segment's mode: marked for removal.
const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` in a segment's mode: locked in memory (`SHM_LOCK`).
const SHM_LOCKED: u32 = 0o2000;

// ---------------------------------------------------------------------------------------
// The kernel's tables
// ---------------------------------------------------------------------------------------

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

fn no_target() -> Target {
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
    Some((t > 0).then(|| UNIX_EPOCH + Duration::from_secs(t as u64)))
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

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// Whether a process is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// It exists (`kill(pid, 0)` succeeds or says `EPERM`) and is not a zombie.
    Alive,
    /// No such process (`ESRCH`), or a zombie: it has exited and will never act again.
    Dead,
    /// Not a pid this namespace can check (0 or negative: a creator in another PID
    /// namespace, or a word that holds no pid).
    Unknown,
}

/// A pid and whether that process is alive, checked when the value was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    /// The pid.
    pub pid: i32,
    /// Whether it was alive when checked.
    pub liveness: Liveness,
}

impl Process {
    /// Checks the process with this pid now (`kill(pid, 0)`, then `/proc/<pid>/stat` for
    /// a zombie). A pid of 0 or below is never passed to `kill` (which would address
    /// process groups): it is [`Liveness::Unknown`].
    pub fn check(pid: i32) -> Process {
        let liveness = if pid <= 0 {
            Liveness::Unknown
        } else if !process_exists(pid) {
            Liveness::Dead
        } else {
            match std::fs::read(format!("/proc/{pid}/stat")) {
                Ok(stat) if is_zombie(&stat) => Liveness::Dead,
                _ => Liveness::Alive,
            }
        };
        Process { pid, liveness }
    }

    /// Was it alive?
    pub fn is_alive(&self) -> bool {
        self.liveness == Liveness::Alive
    }

    /// Was it known to be gone?
    pub fn is_dead(&self) -> bool {
        self.liveness == Liveness::Dead
    }

    fn unknown() -> Process {
        Process {
            pid: 0,
            liveness: Liveness::Unknown,
        }
    }
}

impl fmt::Display for Process {
    /// `1234 (alive)`, `1234 (dead)`; a pid this namespace cannot see: `? (alive; ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.liveness {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        };
        match self.pid {
            pid if pid > 0 => write!(f, "{pid} ({state})"),
            _ => write!(
                f,
                "? ({state}; its pid is not visible in this PID namespace)"
            ),
        }
    }
}

/// Does a process with this pid exist in this PID namespace? (Display only.)
fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || last_errno() != libc::ESRCH
}

/// `/proc/<pid>/stat` is `pid (comm) S ...`; `comm` may itself contain `)`.
fn is_zombie(stat: &[u8]) -> bool {
    stat.iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 2))
        .is_some_and(|&s| s == b'Z' || s == b'X')
}

// ---------------------------------------------------------------------------------------
// What shmsem sees in a segment
// ---------------------------------------------------------------------------------------

/// A segment that holds a well-formed shmsem header (docs/FORMAT.md).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Managed {
    /// Mutex, rwlock or queue.
    pub kind: ObjectKind,
    /// Offset of the payload from the start of the segment.
    pub payload_offset: u64,
    /// Size of the payload in bytes.
    pub payload_size: u64,
    /// Alignment of the payload.
    pub payload_align: u64,
    /// Semaphores the header says the paired set has.
    pub nsems: u32,
    /// The process recorded inside the critical section (the holder word), if any. For a
    /// rwlock, a writer; readers are not recorded (see `semaphore_values`). Its liveness
    /// is the kernel's (its lease, docs/FORMAT.md "Leases"), its pid the kernel's record
    /// as this PID namespace sees it (0 when it cannot: another namespace).
    pub holder: Option<Process>,
    /// The handle whose critical section broke off (the poison word), if any: pid as
    /// this namespace sees it (0 when it cannot say), liveness from its lease.
    pub poison: Option<Process>,
    /// How many lease slots are claimed: handles (in any process, any PID namespace) that
    /// have taken a lock on the object and are still open. `None` without the values.
    pub leases_held: Option<usize>,
    /// The semaphore set with the same key (`None` for a private key, or when there is
    /// none: a half-removed pair).
    pub semaphores: Option<SemRecord>,
    /// The values of the object's own semaphores in that set (`None` without one, or
    /// without permission to read it); the lease slots that follow are summed up in
    /// [`leases_held`](Managed::leases_held). Mutex: `[1]` free, `[0]` held. Rwlock:
    /// `[writer inside, readers inside, writers queued]`. Queue: `[DATA, SPACE]` posts.
    pub semaphore_values: Option<Vec<i32>>,
}

impl Managed {
    /// Who the next locker will be told poisoned the lock: the poison word, or a holder
    /// recorded whose lease is gone (it died inside its critical section).
    pub fn poisoned_by(&self) -> Option<Process> {
        if self.poison.is_some() {
            return self.poison;
        }
        self.holder.filter(|h| h.is_dead())
    }

    /// Is the lock poisoned (see [`poisoned_by`](Managed::poisoned_by))?
    pub fn is_poisoned(&self) -> bool {
        self.poisoned_by().is_some()
    }

    /// Is there a semaphore set with the same key and as many semaphores as the header
    /// says, as a complete pair has?
    pub fn is_paired(&self) -> bool {
        self.semaphores
            .as_ref()
            .is_some_and(|s| s.nsems == self.nsems as usize)
    }
}

/// What a segment is, to shmsem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contents {
    /// A shmsem object.
    Managed(Managed),
    /// Not a shmsem object (another program's segment, or a pair whose creator never
    /// finished): why, in words.
    Foreign(String),
    /// This process may not attach it (no read permission).
    NoPermission,
    /// It was removed while being looked at.
    Gone,
    /// It could not be read for another reason (in words).
    Unreadable(String),
}

impl Contents {
    /// The managed object, if it is one.
    pub fn managed(&self) -> Option<&Managed> {
        match self {
            Contents::Managed(m) => Some(m),
            _ => None,
        }
    }
}

/// One segment: the kernel's record, its creator, and what shmsem sees in it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentReport {
    /// The kernel's record (taken before this process attached to look).
    pub record: ShmRecord,
    /// The creator (`cpid`), checked.
    pub creator: Process,
    /// What is in it.
    pub contents: Contents,
}

/// Looks into the segment of `record`: attaches it read-only for a moment, decodes the
/// header, and, for a managed object, finds its semaphore set among `sets` (by key).
/// Never fails: problems are described in [`Contents`].
pub fn inspect(record: &ShmRecord, sets: &[SemRecord]) -> SegmentReport {
    SegmentReport {
        record: record.clone(),
        creator: Process::check(record.cpid),
        contents: contents(record, sets),
    }
}

fn contents(record: &ShmRecord, sets: &[SemRecord]) -> Contents {
    // Too small to hold a header: no need to attach (and touch) someone else's segment.
    if record.size < HEADER_SIZE as u64 {
        return Contents::Foreign(format!(
            "{} bytes, too small for the {HEADER_SIZE}-byte shmsem header",
            record.size
        ));
    }
    let seg = match Segment::attach_id(record.id, true) {
        Ok(seg) => seg,
        Err(e) => {
            return match e.kind() {
                ErrorKind::PermissionDenied => Contents::NoPermission,
                ErrorKind::Removed | ErrorKind::NotFound => Contents::Gone,
                _ => Contents::Unreadable(e.to_string()),
            };
        }
    };
    // The id was freed and given to another segment in between: not the one listed.
    if seg.key() != record.key || seg.len() as u64 != record.size {
        return Contents::Gone;
    }
    let mut bytes = [0u8; HEADER_SIZE];
    let n = seg.len().min(HEADER_SIZE);
    if let Err(e) = seg.read_exact_at(&mut bytes[..n], 0) {
        return Contents::Unreadable(e.to_string());
    }
    let decoded = match header::decode(&bytes[..n], seg.len()) {
        Ok(d) => d,
        Err(why) => return Contents::Foreign(why.reason),
    };
    let Some(kind) = decoded.kind else {
        return Contents::Foreign("unknown object kind".into());
    };
    // The live words, loaded atomically (the copy above may have torn them).
    // SAFETY: `seg` is attached (read-only) while `live` is used, is at least HEADER_SIZE
    // bytes (decode checked the real size) and page-aligned; the words are only loaded.
    let live = unsafe { Live::at(seg.as_ptr()) };
    let holder = live.holder.load(Ordering::Acquire);
    let poison = live.poison.load(Ordering::Acquire);
    let semaphores = paired_set(record.key, sets).cloned();
    let handle = semaphores
        .as_ref()
        .and_then(|s| paired_handle(s, decoded.nsems));
    // One GETALL: the object's own semaphores and every lease slot, at one instant.
    let all_values = handle.as_ref().and_then(|h| h.values().ok());
    let leases = Leases::new(kind.own_semaphores(), decoded.nsems as usize);
    let leases_held = match (leases, &all_values) {
        (Some(l), Some(values)) => Some(l.held_count(values)),
        _ => None,
    };
    let semaphore_values = all_values.map(|mut v| {
        v.truncate(kind.own_semaphores());
        v
    });
    // Who a token names, from the kernel: never a pid checked with kill(2).
    let recorded = |token: u32| -> Option<Process> {
        if token == 0 {
            return None;
        }
        let (Some(l), Some(h)) = (leases, handle.as_ref()) else {
            return Some(Process::unknown());
        };
        let liveness = match l.holder(h, token) {
            Ok(lease::Holder::Alive) => Liveness::Alive,
            Ok(lease::Holder::Gone) => Liveness::Dead,
            _ => Liveness::Unknown,
        };
        let pid = l.owner_pid(h, token).unwrap_or(0);
        Some(Process { pid, liveness })
    };
    Contents::Managed(Managed {
        kind,
        payload_offset: decoded.payload_offset,
        payload_size: decoded.payload_size,
        payload_align: decoded.payload_align,
        nsems: decoded.nsems,
        holder: recorded(holder),
        poison: recorded(poison),
        leases_held,
        semaphores,
        semaphore_values,
    })
}

fn paired_set(key: Key, sets: &[SemRecord]) -> Option<&SemRecord> {
    if key.is_private() {
        return None;
    }
    sets.iter().find(|s| s.key == key)
}

/// A handle on a managed pair's set, if it looks like the pair's.
fn paired_handle(set: &SemRecord, nsems: u32) -> Option<SemaphoreSet> {
    // Only a set of the size the header names: never thousands of calls for an odd one.
    if set.nsems != nsems as usize {
        return None;
    }
    let handle = SemaphoreSet::from_id(set.id).ok()?;
    (handle.key() == set.key).then_some(handle)
}

// ---------------------------------------------------------------------------------------
// list, show
// ---------------------------------------------------------------------------------------

/// Everything on the machine (this IPC namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listing {
    /// Every segment, looked into.
    pub segments: Vec<SegmentReport>,
    /// Every semaphore set.
    pub semaphore_sets: Vec<SemRecord>,
}

impl Listing {
    /// The managed segment a semaphore set pairs with (same key, not private), if any.
    pub fn paired_segment(&self, set: &SemRecord) -> Option<&SegmentReport> {
        if set.key.is_private() {
            return None;
        }
        self.segments
            .iter()
            .find(|s| s.record.key == set.key && s.contents.managed().is_some())
    }
}

/// Lists every segment and semaphore set, looking into each segment ([`inspect`]).
///
/// # Errors
/// When the kernel's tables cannot be read (see [`segments`]); problems with single
/// objects are reported in their [`Contents`] instead.
pub fn list() -> Result<Listing> {
    let records = segments()?;
    let semaphore_sets = semaphore_sets()?;
    let segments = records
        .iter()
        .map(|r| inspect(r, &semaphore_sets))
        .collect();
    Ok(Listing {
        segments,
        semaphore_sets,
    })
}

/// Everything under one key (or for one id).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyReport {
    /// The key.
    pub key: Key,
    /// Its segment, looked into.
    pub segment: Option<SegmentReport>,
    /// Its semaphore set (for a private key: none, sets are not paired by key then).
    pub semaphore_set: Option<SemRecord>,
}

/// The segment and semaphore set with this key, and what shmsem sees in them.
///
/// # Errors
/// `NotFound` when neither exists; `InvalidInput` for [`Key::PRIVATE`] (private objects
/// are found by id: [`show_id`]); errors reading the kernel's tables.
pub fn show_key(key: Key) -> Result<KeyReport> {
    let call = "inspect::show_key";
    if key.is_private() {
        return Err(private_key(call));
    }
    let (segs, sets) = (segments()?, semaphore_sets()?);
    let segment = segs
        .iter()
        .find(|r| r.key == key)
        .map(|r| inspect(r, &sets));
    let semaphore_set = sets.iter().find(|s| s.key == key).cloned();
    if segment.is_none() && semaphore_set.is_none() {
        return Err(not_found(
            call,
            key,
            "no segment and no semaphore set has this key",
        ));
    }
    Ok(KeyReport {
        key,
        segment,
        semaphore_set,
    })
}

/// The objects with IPC id `id`: the segment with that `shmid` (with its key's
/// semaphore set), and the semaphore set with that `semid` (with its key's segment).
/// Segment and set ids are counted apart, so one number can name one of each: then there
/// are two reports, the segment's first (one, if both share the key).
///
/// # Errors
/// `NotFound` when no object has that id; errors reading the kernel's tables.
pub fn show_id(id: i32) -> Result<Vec<KeyReport>> {
    let (segs, sets) = (segments()?, semaphore_sets()?);
    let mut reports = Vec::new();
    if let Some(r) = segs.iter().find(|r| r.id == id) {
        reports.push(KeyReport {
            key: r.key,
            segment: Some(inspect(r, &sets)),
            semaphore_set: paired_set(r.key, &sets).cloned(),
        });
    }
    if let Some(s) = sets.iter().find(|s| s.id == id) {
        let shown = reports
            .first()
            .is_some_and(|r| r.semaphore_set.as_ref().is_some_and(|x| x.id == id));
        if !shown {
            let segment = (!s.key.is_private())
                .then(|| segs.iter().find(|r| r.key == s.key))
                .flatten()
                .map(|r| inspect(r, &sets));
            reports.push(KeyReport {
                key: s.key,
                segment,
                semaphore_set: Some(s.clone()),
            });
        }
    }
    if reports.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            "inspect::show_id",
            no_target(),
            format!("no segment and no semaphore set has id {id}"),
        ));
    }
    Ok(reports)
}

fn private_key(call: &'static str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        call,
        no_target(),
        "key 0 is IPC_PRIVATE: it names no single object (use the IPC id)",
    )
}

fn not_found(call: &'static str, key: Key, reason: &'static str) -> Error {
    Error::new(ErrorKind::NotFound, call, Target { key, id: None }, reason)
}

// ---------------------------------------------------------------------------------------
// remove
// ---------------------------------------------------------------------------------------

/// What [`remove`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Removed {
    /// The key.
    pub key: Key,
    /// The segment removed, if there was one.
    pub shm_id: Option<i32>,
    /// The semaphore set removed, if there was one.
    pub sem_id: Option<i32>,
    /// The managed object's kind; `None` when a forced removal took something else.
    pub kind: Option<ObjectKind>,
    /// Attaches the segment still had: those processes keep their mapping until they
    /// detach, and their semaphore calls fail with `Removed`.
    pub nattch: u64,
}

/// Removes the shmsem pair under `key`: its segment and its semaphore set.
///
/// Without `force`, only a complete managed pair is removed (a segment with a valid
/// header, and no set or a set with as many semaphores as the header says); anything
/// else is refused with `NotManaged` and left alone. With `force`, whatever segment and
/// set carry the key are removed. Processes still attached keep their mapping; their
/// lock calls fail with `Removed`.
///
/// # Errors
/// `InvalidInput` for [`Key::PRIVATE`]; `NotFound` when nothing has the key; `NotManaged`
/// (refused, nothing removed); `PermissionDenied` when this user may not look at or
/// remove the objects; `Other` when the objects changed while being looked at. Both
/// removals are attempted even if the first fails; the first error is returned.
pub fn remove(key: Key, force: bool) -> Result<Removed> {
    let call = "inspect::remove";
    if key.is_private() {
        return Err(private_key(call));
    }
    let (segs, sets) = (segments()?, semaphore_sets()?);
    let seg = segs.iter().find(|r| r.key == key);
    let set = sets.iter().find(|s| s.key == key);
    let target = |id| Target {
        key,
        id: Some(("shmid", id)),
    };
    let refuse = |id: Option<i32>, reason: String| {
        let t = id.map_or(Target { key, id: None }, target);
        let hint = "not removed (force removes it anyway)";
        Err(Error::new(
            ErrorKind::NotManaged,
            call,
            t,
            format!("{reason}: {hint}"),
        ))
    };
    let mut kind = None;
    match seg {
        None if set.is_none() => {
            return Err(not_found(
                call,
                key,
                "no segment and no semaphore set has this key",
            ));
        }
        None if !force => {
            return refuse(
                None,
                format!(
                    "only a semaphore set (semid {}) has this key, no segment: not a shmsem pair",
                    set.map_or(-1, |s| s.id)
                ),
            );
        }
        None => {}
        Some(r) => match contents(r, &sets) {
            Contents::Managed(m) => {
                if !force && set.is_some() && !m.is_paired() {
                    return refuse(
                        Some(r.id),
                        format!(
                            "the semaphore set with this key has {} semaphores, the {} header says {}",
                            set.map_or(0, |s| s.nsems),
                            m.kind.name(),
                            m.nsems
                        ),
                    );
                }
                kind = Some(m.kind);
            }
            _ if force => {}
            Contents::Foreign(why) => {
                return refuse(Some(r.id), format!("not a shmsem segment ({why})"));
            }
            Contents::NoPermission => {
                return Err(Error::new(
                    ErrorKind::PermissionDenied,
                    call,
                    target(r.id),
                    "cannot attach the segment to check that it is a shmsem object",
                ));
            }
            Contents::Gone => {
                return Err(Error::new(
                    ErrorKind::Other,
                    call,
                    target(r.id),
                    "the segment was removed or replaced while being looked at; try again",
                ));
            }
            Contents::Unreadable(why) => {
                return Err(Error::new(ErrorKind::Other, call, target(r.id), why));
            }
        },
    }
    let shm = seg.map(|r| remove_segment(call, key, r.id));
    let sem = set.map(|s| remove_set(call, key, s.id));
    let nattch = match &shm {
        Some(Ok(n)) => *n,
        _ => 0,
    };
    if let Some(Err(e)) = shm {
        return Err(e);
    }
    if let Some(Err(e)) = sem {
        return Err(e);
    }
    Ok(Removed {
        key,
        shm_id: seg.map(|r| r.id),
        sem_id: set.map(|s| s.id),
        kind,
        nattch,
    })
}

/// `IPC_RMID` on segment `id`, if it still is the segment with `key`. Returns the
/// attaches it had just before.
fn remove_segment(call: &'static str, key: Key, id: i32) -> Result<u64> {
    let target = Target {
        key,
        id: Some(("shmid", id)),
    };
    // SAFETY: shmget with plain integers; size 0 and no flags only look the key up.
    let current = unsafe { libc::shmget(key.as_raw(), 0, 0) };
    if current != id {
        return Err(Error::new(
            ErrorKind::Other,
            call,
            target,
            "the key now names another segment (or none); not removed",
        ));
    }
    let nattch = sys::shm_stat(id).map_or(0, |ds| ds.shm_nattch);
    // SAFETY: IPC_RMID takes no buffer.
    let rc = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    if rc == -1 {
        let errno = last_errno();
        return Err(Error::os(
            "shmctl(IPC_RMID)",
            target,
            errno,
            classify(errno, ErrorKind::Removed),
        ));
    }
    Ok(nattch)
}

/// `IPC_RMID` on semaphore set `id`, if it still is the set with `key`.
fn remove_set(call: &'static str, key: Key, id: i32) -> Result<()> {
    // SAFETY: semget with plain integers; nsems 0 and no flags only look the key up.
    let current = unsafe { libc::semget(key.as_raw(), 0, 0) };
    if current != id {
        return Err(Error::new(
            ErrorKind::Other,
            call,
            Target {
                key,
                id: Some(("semid", id)),
            },
            "the key now names another semaphore set (or none); not removed",
        ));
    }
    SemaphoreSet::from_id(id)?.remove()
}

// ---------------------------------------------------------------------------------------
// gc
// ---------------------------------------------------------------------------------------

/// What [`gc`] does: dry run or not, which keys, how old.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "options do nothing until passed to gc"]
pub struct GcOptions {
    dry_run: bool,
    keys: Option<Vec<Key>>,
    min_age: Duration,
}

impl GcOptions {
    /// Every key, no minimum age, not a dry run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only report what would be removed; remove nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Only consider objects with this key (call again to add more keys). Without any,
    /// every key is considered. Other keys' segments are not even looked into.
    pub fn key(mut self, key: Key) -> Self {
        self.keys.get_or_insert_with(Vec::new).push(key);
        self
    }

    /// Only remove segments created (`shm_ctime`) at least this long ago: a grace period
    /// for pairs whose creator exits on purpose before their users come.
    pub fn min_age(mut self, age: Duration) -> Self {
        self.min_age = age;
        self
    }

    /// Is this a dry run?
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    fn wants(&self, key: Key) -> bool {
        self.keys.as_ref().is_none_or(|keys| keys.contains(&key))
    }
}

/// A managed pair [`gc`] looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcEntry {
    /// The key.
    pub key: Key,
    /// The segment.
    pub shm_id: i32,
    /// The semaphore set with the same key, if there is one.
    pub sem_id: Option<i32>,
    /// Mutex, rwlock or queue.
    pub kind: ObjectKind,
    /// The segment's creator.
    pub creator: Process,
    /// The segment's attaches when listed.
    pub nattch: u64,
}

/// What [`gc`] did (or, in a dry run, would do).
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct GcReport {
    /// Was it a dry run?
    pub dry_run: bool,
    /// Removed (in a dry run: would be removed).
    pub collected: Vec<GcEntry>,
    /// Managed pairs left alone, and why. Segments that are not shmsem objects are never
    /// touched, and not listed here.
    pub kept: Vec<(GcEntry, String)>,
    /// Removals that failed.
    pub failed: Vec<(GcEntry, Error)>,
}

/// Removes abandoned shmsem pairs: a segment with a valid shmsem header, not private,
/// not marked for removal, that nobody attaches (`nattch == 0`) and whose creator
/// (`cpid`) is gone (no such process, or a zombie), with the semaphore set of its key
/// (when the set has as many semaphores as the header says; a segment whose key names a
/// set of another size is kept). Segments that are not shmsem objects, lone semaphore
/// sets, and everything of keys outside [`GcOptions::key`] are never touched.
///
/// Just before removing, the segment is checked again (same key, same creator, still
/// unattached). A process that opens the pair after that keeps its attach, and its lock
/// calls fail with `Removed`, as after any removal.
///
/// # Errors
/// Errors reading the kernel's tables. Failed removals are reported in
/// [`GcReport::failed`].
pub fn gc(options: &GcOptions) -> Result<GcReport> {
    let (segs, sets) = (segments()?, semaphore_sets()?);
    let now = SystemTime::now();
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    for record in &segs {
        if record.key.is_private() || !options.wants(record.key) {
            continue;
        }
        let looked = inspect(record, &sets);
        let Contents::Managed(m) = &looked.contents else {
            continue;
        };
        let entry = GcEntry {
            key: record.key,
            shm_id: record.id,
            sem_id: m.semaphores.as_ref().map(|s| s.id),
            kind: m.kind,
            creator: looked.creator,
            nattch: record.nattch,
        };
        let age = record
            .ctime
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or(Duration::ZERO);
        let keep = if record.is_marked_for_removal() {
            Some("already marked for removal".to_string())
        } else if record.nattch > 0 {
            Some(format!("attached by {} process(es)", record.nattch))
        } else if !looked.creator.is_dead() {
            let pid = looked.creator.pid;
            Some(match looked.creator.liveness {
                Liveness::Unknown => format!("creator pid {pid} cannot be checked"),
                _ => format!("creator {pid} is alive"),
            })
        } else if let Some(n) = m.leases_held.filter(|&n| n > 0) {
            Some(format!("{n} open handle(s) hold a lease on it"))
        } else if m.semaphores.is_some() && !m.is_paired() {
            Some(format!(
                "the semaphore set with this key has {} semaphores, the header says {}",
                m.semaphores.as_ref().map_or(0, |s| s.nsems),
                m.nsems
            ))
        } else if age < options.min_age {
            Some(format!(
                "created {}s ago, less than the minimum age of {}s",
                age.as_secs(),
                options.min_age.as_secs()
            ))
        } else {
            None
        };
        if let Some(why) = keep {
            report.kept.push((entry, why));
            continue;
        }
        if options.dry_run {
            report.collected.push(entry);
            continue;
        }
        match collect(record, entry.sem_id) {
            Ok(None) => report.collected.push(entry),
            Ok(Some(why)) => report.kept.push((entry, why)),
            Err(e) => report.failed.push((entry, e)),
        }
    }
    Ok(report)
}

/// Re-checks an abandoned segment and removes it and its set. `Ok(Some(why))`: it
/// changed since it was listed, and was left alone.
fn collect(record: &ShmRecord, sem_id: Option<i32>) -> Result<Option<String>> {
    let call = "inspect::gc";
    let key = record.key;
    match sys::shm_stat(record.id) {
        Ok(ds) => {
            let (now_key, nattch) = (Key::from_raw(ds.shm_perm.__key), ds.shm_nattch);
            if now_key != key || ds.shm_cpid != record.cpid {
                return Ok(Some("replaced by another segment meanwhile".into()));
            }
            if nattch > 0 {
                return Ok(Some(format!("attached by {nattch} process(es) meanwhile")));
            }
        }
        Err(libc::EINVAL | libc::EIDRM) => return Ok(Some("removed meanwhile".into())),
        Err(errno) => {
            let target = Target {
                key,
                id: Some(("shmid", record.id)),
            };
            return Err(Error::os(
                "shmctl(IPC_STAT)",
                target,
                errno,
                classify(errno, ErrorKind::Removed),
            ));
        }
    }
    remove_segment(call, key, record.id)?;
    if let Some(id) = sem_id {
        remove_set(call, key, id)?;
    }
    Ok(None)
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
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
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

    #[test]
    fn zombie_detection_reads_past_odd_command_names() {
        assert!(is_zombie(b"12 (a) b) Z 1 2"));
        assert!(!is_zombie(b"12 (a) Z) S 1 2"));
        assert!(!is_zombie(b"garbage"));
        assert_eq!(Process::check(0).liveness, Liveness::Unknown);
        assert_eq!(Process::check(-1).liveness, Liveness::Unknown);
        assert!(Process::check(std::process::id() as i32).is_alive());
    }
}
