//! What shmsem sees in a segment ([`Contents`], [`Managed`]) and the reports built on it:
//! [`list`] for everything, [`show_key`] and [`show_id`] for one object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::process::{Liveness, Process};
use super::queue::{self, QueueState};
use super::semaphores::{self, SemaphoreState};
use crate::error::{Error, ErrorKind, Result, Target};
use crate::managed::header::{self, HEADER_SIZE, Live, ObjectKind};
use crate::managed::lease::{self, Leases};
use crate::managed::poison::{self, PoisonCause};
use crate::raw::key::Key;
use crate::raw::sem::SemaphoreSet;
use crate::raw::shm::Segment;
use crate::raw::sys;
use crate::raw::tables::{SemRecord, ShmRecord, no_target, segments, semaphore_sets};

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
    /// Whether that handle died or panicked (the poison word says; docs/FORMAT.md).
    pub poison_cause: Option<PoisonCause>,
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
    /// The object's own semaphores as the kernel sees them: values (the same snapshot as
    /// [`semaphore_values`](Managed::semaphore_values)), the processes asleep on each
    /// (`GETNCNT`, `GETZCNT`) and the last pid that operated on each (`GETPID`). `None`
    /// when `semaphore_values` is.
    pub semaphore_states: Option<Vec<SemaphoreState>>,
    /// The lease slots held now, one per open handle that has used the object (or, for a
    /// condvar, per wait in progress), with its process and who sleeps until that process
    /// lets go. `None` when `semaphore_values` is.
    pub leases: Option<Vec<LeaseState>>,
    /// A queue's control block: state, capacity, messages and bytes waiting, lock words,
    /// registered sleepers. `None` for the other kinds.
    pub queue: Option<QueueState>,
}

/// A held lease slot (docs/FORMAT.md, "Leases"): an open handle, in some process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseState {
    /// The slot.
    pub slot: usize,
    /// The process that claimed it (`GETPID` of `GEN(slot)`), as this PID namespace sees
    /// it; 0 when it cannot (another namespace).
    pub pid: i32,
    /// Processes asleep until this slot's holder lets go or dies (`GETZCNT` of
    /// `HELD(slot)`): a queue's producers or consumers behind a lock word it holds.
    pub waiting: usize,
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

    /// Processes asleep on the object (as the kernel counts them): on its own semaphores
    /// (lockers of a mutex, readers and writers of a rwlock, a queue's sleeping producers
    /// and consumers, a condvar's sleeping waiters), and behind a lease (a queue's lock
    /// word). `None` without the semaphore set. Threads of one process that queue inside
    /// it (shmsem hands a mutex on between them) are not counted.
    pub fn waiters(&self) -> Option<usize> {
        let own = self.semaphore_states.as_ref()?;
        let leases = self.leases.as_ref()?;
        Some(
            own.iter().map(|s| s.ncnt + s.zcnt).sum::<usize>()
                + leases.iter().map(|l| l.waiting).sum::<usize>(),
        )
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
// A report is made once per segment and looked at; boxing the large variant would only
// make the public `Contents::Managed(m)` pattern clumsier.
#[allow(clippy::large_enum_variant)]
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
    /// The kernel's record, taken (`shmctl(IPC_STAT)`, else the table's line) just
    /// before this process attached to look: its `lpid`, `atime` and `dtime` are those of
    /// the segment's last user, not this process's attach to look, also when this
    /// process looks again (it remembers what it saw before its first look). An earlier
    /// look by another process (another run of an inspector) was an attach like any
    /// other: the kernel keeps no difference.
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
    let record = restat(record);
    SegmentReport {
        creator: Process::check(record.cpid),
        contents: contents(&record, sets),
        record,
    }
}

/// The segment's record as `IPC_STAT` gives it right now (before this process attaches),
/// if it is still the segment `record` describes; else `record` as it was. Either way
/// with the last user as it was before this process's own looks ([`LastUsers`]).
fn restat(record: &ShmRecord) -> ShmRecord {
    let mut now = match sys::shm_stat(record.id) {
        Ok(ds) => {
            let now = ShmRecord::from_stat(record.id, &ds);
            let same = now.key == record.key && now.cpid == record.cpid && now.size == record.size;
            if same { now } else { record.clone() }
        }
        Err(_) => record.clone(),
    };
    LAST_USERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .fix(&mut now);
    now
}

/// What each segment's record said about its last user (last pid, attach and detach
/// times) before this process first attached it to look, by shmid.
///
/// Looking attaches, and the kernel records an attach and a detach as a use like any
/// other: without this, a process that looks twice (a live view, `list` then `show`)
/// would find itself as the segment's last user from its second look on. A record
/// naming this process is shown with the last user seen before; one naming another
/// process is the news, and is remembered. An earlier look by *another* process (another
/// run of an inspector) cannot be told from a use.
static LAST_USERS: Mutex<LastUsers> = Mutex::new(LastUsers(None));

struct LastUsers(Option<HashMap<i32, Before>>);

#[derive(Clone, Copy)]
struct Before {
    /// Creator and creation time: the same segment, not a later one with its id.
    cpid: i32,
    ctime: Option<SystemTime>,
    lpid: i32,
    atime: Option<SystemTime>,
    dtime: Option<SystemTime>,
}

impl LastUsers {
    fn fix(&mut self, r: &mut ShmRecord) {
        let me = std::process::id() as i32;
        let seen = self.0.get_or_insert_with(HashMap::new);
        let before = seen
            .get(&r.id)
            .filter(|b| b.cpid == r.cpid && b.ctime == r.ctime)
            .copied();
        if r.lpid != me {
            let b = Before {
                cpid: r.cpid,
                ctime: r.ctime,
                lpid: r.lpid,
                atime: r.atime,
                dtime: r.dtime,
            };
            seen.insert(r.id, b);
        } else if let Some(b) = before {
            (r.lpid, r.atime, r.dtime) = (b.lpid, b.atime, b.dtime);
        }
    }
}

pub(super) fn contents(record: &ShmRecord, sets: &[SemRecord]) -> Contents {
    // Too small to hold a header: no need to attach (and touch) someone else's segment.
    if record.size < HEADER_SIZE {
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
    if seg.key() != record.key || seg.len() != record.size {
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
    let own = kind.own_semaphores().min(decoded.nsems as usize);
    // The kernel's counts for the object's own semaphores, with the GETALL's values.
    let semaphore_states = match (&handle, &all_values) {
        (Some(h), Some(values)) => semaphores::states(h, 0..own).ok().map(|mut states| {
            for s in &mut states {
                s.value = values[s.index];
            }
            states
        }),
        _ => None,
    };
    let lease_states = match (leases, &handle, &all_values) {
        (Some(l), Some(h), Some(values)) => held_leases(l, h, values),
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
    let queue = (kind == ObjectKind::Queue)
        .then(|| {
            // SAFETY: decode checked that the payload (payload_size bytes at
            // payload_offset) lies inside the segment, which `seg` keeps attached for this
            // call; a queue's payload is 128-aligned (the offset is a multiple of its
            // alignment, and the segment page-aligned); queue::read only loads.
            unsafe {
                queue::read(
                    seg.as_ptr().add(decoded.payload_offset as usize),
                    decoded.payload_size,
                    recorded,
                )
            }
        })
        .flatten();
    Contents::Managed(Managed {
        kind,
        payload_offset: decoded.payload_offset,
        payload_size: decoded.payload_size,
        payload_align: decoded.payload_align,
        nsems: decoded.nsems,
        holder: recorded(holder),
        poison: recorded(poison::split(poison).0),
        poison_cause: (poison != 0).then(|| poison::split(poison).1),
        leases_held,
        semaphores,
        semaphore_values,
        semaphore_states,
        leases: lease_states,
        queue,
    })
}

/// The held slots in a snapshot of the set's `values`, with who claimed each and who
/// waits on it. `None` if the kernel could not be asked.
fn held_leases(l: Leases, h: &SemaphoreSet, values: &[i32]) -> Option<Vec<LeaseState>> {
    (0..l.slots())
        .filter(|&slot| values.get(l.held(slot)).is_some_and(|&v| v != 0))
        .map(|slot| {
            Some(LeaseState {
                slot,
                pid: h.last_pid(l.counter(slot)).ok()?,
                waiting: h.zero_wait_count(l.held(slot)).ok()?,
            })
        })
        .collect()
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
    // Forget the segments that are gone, so a long-running view does not collect them.
    if let Some(seen) = &mut LAST_USERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .0
    {
        seen.retain(|id, _| records.iter().any(|r| r.id == *id));
    }
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

pub(super) fn private_key(call: &'static str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        call,
        no_target(),
        "key 0 is IPC_PRIVATE: it names no single object (use the IPC id)",
    )
}

pub(super) fn not_found(call: &'static str, key: Key, reason: &'static str) -> Error {
    Error::new(ErrorKind::NotFound, call, Target { key, id: None }, reason)
}
