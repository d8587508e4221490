//! What the tool reports, as records: `--json` prints them (serde), and the text output
//! is rendered from the same records, so the two never disagree. The field names are
//! the stable, documented interface (docs/INSPECT.md, "JSON"): add fields freely, rename
//! or remove none without a note in the changelog.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shmsem::PoisonCause;
use shmsem::header::{ObjectKind, VERSION};
use shmsem::inspect::{
    self, Contents, GcEntry, KeyReport, Listing, Liveness, Managed, Process, QueueState,
    SegmentReport, SemRecord, SemaphoreState,
};

use crate::names::Names;

/// Seconds since the Unix epoch; `None` for "never".
pub(crate) fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// A process: its pid as this PID namespace sees it (0: not visible here) and whether it
/// is alive (for lock holders the kernel's answer, through its lease).
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct ProcessJson {
    pub pid: i32,
    /// `alive`, `dead` or `unknown`.
    pub state: &'static str,
}

impl From<Process> for ProcessJson {
    fn from(p: Process) -> Self {
        ProcessJson {
            pid: p.pid,
            state: match p.liveness {
                Liveness::Alive => "alive",
                Liveness::Dead => "dead",
                Liveness::Unknown => "unknown",
            },
        }
    }
}

/// A user and group, with their names where the system knows them (`null` when not).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OwnerJson {
    pub uid: u32,
    pub user: Option<String>,
    pub gid: u32,
    pub group: Option<String>,
}

impl OwnerJson {
    pub(crate) fn new(uid: u32, gid: u32, names: &mut Names) -> Self {
        OwnerJson {
            uid,
            user: names.user(uid),
            gid,
            group: names.group(gid),
        }
    }
}

/// A segment's creator: the process and its user and group.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct CreatorJson {
    pub pid: i32,
    pub state: &'static str,
    #[serde(flatten)]
    pub owner: OwnerJson,
}

impl CreatorJson {
    pub(crate) fn process(&self) -> ProcessJson {
        ProcessJson {
            pid: self.pid,
            state: self.state,
        }
    }
}

/// One shared-memory segment (`list`, `show`, `top`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SegmentJson {
    pub shmid: i32,
    /// `0x%08x`, as ipcs prints it; `0x00000000` for a private (or removed) segment.
    pub key: String,
    pub size: usize,
    /// Permission bits in octal, as ipcs prints them (`"600"`).
    pub perms: String,
    pub marked_for_removal: bool,
    pub locked_in_memory: bool,
    pub owner: OwnerJson,
    pub creator: CreatorJson,
    /// The last process that attached or detached (`shm_lpid`), read before this
    /// inspector attached.
    pub last_pid: i32,
    /// Attaches now (`shm_nattch`, read before this inspector attached).
    pub attaches: u64,
    pub created: Option<u64>,
    pub last_attach: Option<u64>,
    pub last_detach: Option<u64>,
    /// `managed`, `foreign`, `no_permission`, `gone` or `unreadable`.
    pub contents: &'static str,
    /// Why a segment is foreign or unreadable, in words.
    pub detail: Option<String>,
    /// The decoded shmsem object (when `contents` is `managed`).
    pub shmsem: Option<ManagedJson>,
}

impl SegmentJson {
    pub(crate) fn new(s: &SegmentReport, names: &mut Names) -> Self {
        let r = &s.record;
        let (contents, detail, shmsem) = match &s.contents {
            Contents::Managed(m) => ("managed", None, Some(ManagedJson::new(m))),
            Contents::Foreign(why) => ("foreign", Some(why.clone()), None),
            Contents::NoPermission => ("no_permission", None, None),
            Contents::Gone => ("gone", None, None),
            Contents::Unreadable(why) => ("unreadable", Some(why.clone()), None),
        };
        let creator = ProcessJson::from(s.creator);
        SegmentJson {
            shmid: r.id,
            key: r.key.to_string(),
            size: r.size,
            perms: format!("{:o}", r.permissions()),
            marked_for_removal: r.is_marked_for_removal(),
            locked_in_memory: r.is_locked_in_memory(),
            owner: OwnerJson::new(r.uid, r.gid, names),
            creator: CreatorJson {
                pid: creator.pid,
                state: creator.state,
                owner: OwnerJson::new(r.cuid, r.cgid, names),
            },
            last_pid: r.lpid,
            attaches: r.nattch,
            created: unix(r.ctime),
            last_attach: unix(r.atime),
            last_detach: unix(r.dtime),
            contents,
            detail,
            shmsem,
        }
    }
}

/// A semaphore: value, sleepers, last pid; named after its role in a shmsem pair.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SemaphoreJson {
    pub index: usize,
    /// docs/FORMAT.md's name (`LOCK`, `WRITER`, `DATA`, `WAKE(3)`, `HELD(0)`, ...) in a
    /// shmsem pair's set; `null` in other sets.
    pub name: Option<String>,
    pub value: i32,
    /// Sleepers waiting for the value to increase (`GETNCNT`).
    pub ncnt: usize,
    /// Sleepers waiting for the value to become zero (`GETZCNT`).
    pub zcnt: usize,
    /// Last process that operated on it (`GETPID`; 0 for none).
    pub last_pid: i32,
}

impl SemaphoreJson {
    pub(crate) fn new(s: &SemaphoreState, kind: Option<ObjectKind>) -> Self {
        SemaphoreJson {
            index: s.index,
            name: kind.map(|k| inspect::semaphore_name(k, s.index)),
            value: s.value,
            ncnt: s.ncnt,
            zcnt: s.zcnt,
            last_pid: s.last_pid,
        }
    }
}

/// A held lease slot: an open handle and who waits for it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LeaseJson {
    pub slot: usize,
    pub pid: i32,
    pub waiting: usize,
}

/// Why a lock is poisoned.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PoisonJson {
    pub by: ProcessJson,
    /// `died` (the holder's process ended inside) or `panicked`.
    pub cause: &'static str,
    /// `true`: the poison word records it; `false`: the holder recorded inside is dead
    /// and nobody has locked since (the next locker will be told, and record it).
    pub recorded: bool,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct PayloadJson {
    pub offset: u64,
    pub size: u64,
    pub align: u64,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct MutexJson {
    /// `null` without the semaphore set.
    pub locked: Option<bool>,
    /// Lockers asleep in the kernel (`GETNCNT` of `LOCK`).
    pub waiting: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct RwLockJson {
    pub writer_inside: Option<bool>,
    pub readers_inside: Option<i32>,
    /// Writers that announced themselves and wait to get in (`QUEUED`).
    pub writers_queued: Option<i32>,
    /// Readers and writers asleep in the kernel.
    pub waiting: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct QueueJson {
    /// `open`, `closed`, `removed` or `invalid`.
    pub state: &'static str,
    pub capacity: u64,
    /// Messages between head and tail; `null` when they could not be counted (`problem`).
    pub messages_waiting: Option<u64>,
    /// Ring bytes in use: the waiting records with their 8-byte length words and padding.
    pub bytes_waiting: u64,
    /// The waiting messages' own bytes.
    pub message_bytes: Option<u64>,
    pub free_bytes: u64,
    pub head: u64,
    pub tail: u64,
    /// The producer (consumer) copying a record in (out) right now.
    pub producer_lock: Option<ProcessJson>,
    pub consumer_lock: Option<ProcessJson>,
    /// Registered to sleep (the control block's counters).
    pub waiting_consumers: u32,
    pub waiting_producers: u32,
    /// Asleep in the kernel on `DATA` / `SPACE` (`GETNCNT`).
    pub sleeping_consumers: Option<usize>,
    pub sleeping_producers: Option<usize>,
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct CondvarJson {
    /// Waits in progress (each holds a lease slot).
    pub waiting: Option<usize>,
    /// Of those, asleep in the kernel on their `WAKE` semaphore.
    pub sleeping: Option<usize>,
    /// Notifications given and not yet taken by their waiter.
    pub pending_wakeups: Option<i64>,
}

/// A decoded shmsem object.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ManagedJson {
    /// `mutex`, `rwlock`, `queue` or `condvar`.
    pub kind: &'static str,
    pub format_version: u32,
    pub payload: PayloadJson,
    /// Semaphores the header says the pair's set has.
    pub nsems: u32,
    /// The paired semaphore set (same key), if there is one.
    pub semid: Option<i32>,
    /// The set is there and has `nsems` semaphores.
    pub paired: bool,
    /// Held lease slots: open handles that have used it (condvar: waits in progress).
    pub leases_held: Option<usize>,
    pub leases: Option<Vec<LeaseJson>>,
    /// The handle recorded inside the critical section (mutex; rwlock writer).
    pub holder: Option<ProcessJson>,
    pub poisoned: bool,
    pub poison: Option<PoisonJson>,
    /// Processes asleep on the object, all kinds of waits together.
    pub waiters: Option<usize>,
    /// The object's own semaphores (those before the lease slots).
    pub semaphores: Option<Vec<SemaphoreJson>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutex: Option<MutexJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rwlock: Option<RwLockJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condvar: Option<CondvarJson>,
}

impl ManagedJson {
    pub(crate) fn new(m: &Managed) -> Self {
        let own = m.semaphore_states.as_deref();
        let state = |i: usize| own.and_then(|s| s.get(i));
        let value = |i: usize| state(i).map(|s| s.value);
        let sleepers = |range: std::ops::Range<usize>| {
            own.map(|s| {
                s.iter()
                    .filter(|s| range.contains(&s.index))
                    .map(|s| s.ncnt + s.zcnt)
                    .sum::<usize>()
            })
        };
        let (mut mutex, mut rwlock, mut queue, mut condvar) = (None, None, None, None);
        match m.kind {
            ObjectKind::Mutex => {
                mutex = Some(MutexJson {
                    locked: value(0).map(|v| v <= 0),
                    waiting: state(0).map(|s| s.ncnt),
                });
            }
            ObjectKind::RwLock => {
                rwlock = Some(RwLockJson {
                    writer_inside: value(0).map(|v| v > 0),
                    readers_inside: value(1),
                    writers_queued: value(2),
                    waiting: sleepers(0..3),
                });
            }
            ObjectKind::Queue => {
                queue = m
                    .queue
                    .as_ref()
                    .map(|q| QueueJson::new(q, state(0), state(1)));
            }
            ObjectKind::Condvar => {
                condvar = Some(CondvarJson {
                    waiting: m.leases_held,
                    sleeping: own.map(|s| s.iter().map(|s| s.ncnt).sum()),
                    pending_wakeups: own.map(|s| s.iter().map(|s| i64::from(s.value)).sum()),
                });
            }
        }
        let poison = m.poisoned_by().map(|by| PoisonJson {
            by: by.into(),
            cause: match m.poison_cause {
                Some(PoisonCause::Panicked) => "panicked",
                _ => "died",
            },
            recorded: m.poison.is_some(),
        });
        ManagedJson {
            kind: m.kind.name(),
            format_version: VERSION,
            payload: PayloadJson {
                offset: m.payload_offset,
                size: m.payload_size,
                align: m.payload_align,
            },
            nsems: m.nsems,
            semid: m.semaphores.as_ref().map(|s| s.id),
            paired: m.is_paired(),
            leases_held: m.leases_held,
            leases: m.leases.as_ref().map(|l| {
                l.iter()
                    .map(|l| LeaseJson {
                        slot: l.slot,
                        pid: l.pid,
                        waiting: l.waiting,
                    })
                    .collect()
            }),
            holder: m.holder.map(Into::into),
            poisoned: poison.is_some(),
            poison,
            waiters: m.waiters(),
            semaphores: own.map(|s| {
                s.iter()
                    .map(|s| SemaphoreJson::new(s, Some(m.kind)))
                    .collect()
            }),
            mutex,
            rwlock,
            queue,
            condvar,
        }
    }
}

impl QueueJson {
    fn new(q: &QueueState, data: Option<&SemaphoreState>, space: Option<&SemaphoreState>) -> Self {
        QueueJson {
            state: q.status.name(),
            capacity: q.capacity,
            messages_waiting: q.messages_waiting,
            bytes_waiting: q.bytes_waiting,
            message_bytes: q.message_bytes,
            free_bytes: q.capacity.saturating_sub(q.bytes_waiting),
            head: q.head,
            tail: q.tail,
            producer_lock: q.producer_lock.map(Into::into),
            consumer_lock: q.consumer_lock.map(Into::into),
            waiting_consumers: q.waiting_consumers,
            waiting_producers: q.waiting_producers,
            sleeping_consumers: data.map(|s| s.ncnt),
            sleeping_producers: space.map(|s| s.ncnt),
            problem: q.problem.clone(),
        }
    }
}

/// The managed segment a set pairs with.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PairJson {
    pub shmid: i32,
    pub kind: &'static str,
    /// The set has as many semaphores as the segment's header says.
    pub paired: bool,
}

/// One semaphore set (`list`, `show`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SetJson {
    pub semid: i32,
    pub key: String,
    pub nsems: usize,
    pub perms: String,
    pub owner: OwnerJson,
    pub creator: OwnerJson,
    /// Last `semop` (`sem_otime`); `null`: never (an uninitialised set).
    pub last_semop: Option<u64>,
    /// Created or last changed (`sem_ctime`).
    pub changed: Option<u64>,
    /// The shmsem segment with the same key, if there is one.
    pub pairs_with: Option<PairJson>,
    /// `show` only: every semaphore (`null` when they could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semaphores: Option<Option<Vec<SemaphoreJson>>>,
    /// `show` only: why the semaphores could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semaphores_error: Option<String>,
}

impl SetJson {
    pub(crate) fn new(set: &SemRecord, pair: Option<&SegmentReport>, names: &mut Names) -> Self {
        let pairs_with = pair.and_then(|seg| {
            seg.contents.managed().map(|m| PairJson {
                shmid: seg.record.id,
                kind: m.kind.name(),
                paired: set.nsems == m.nsems as usize,
            })
        });
        SetJson {
            semid: set.id,
            key: set.key.to_string(),
            nsems: set.nsems,
            perms: format!("{:o}", set.permissions()),
            owner: OwnerJson::new(set.uid, set.gid, names),
            creator: OwnerJson::new(set.cuid, set.cgid, names),
            last_semop: unix(set.otime),
            changed: unix(set.ctime),
            pairs_with,
            semaphores: None,
            semaphores_error: None,
        }
    }

    /// Adds every semaphore's state (`show`), named after `kind`'s format.
    pub(crate) fn with_semaphores(mut self, set: &SemRecord, kind: Option<ObjectKind>) -> Self {
        match inspect::semaphores(set) {
            Ok(states) => {
                let named = kind.filter(|_| self.pairs_with.as_ref().is_some_and(|p| p.paired));
                self.semaphores = Some(Some(
                    states
                        .iter()
                        .map(|s| SemaphoreJson::new(s, named))
                        .collect(),
                ));
            }
            Err(e) => {
                self.semaphores = Some(None);
                self.semaphores_error = Some(e.to_string());
            }
        }
        self
    }
}

/// `list --json`.
#[derive(Debug, Serialize)]
pub(crate) struct ListJson {
    pub segments: Vec<SegmentJson>,
    pub semaphore_sets: Vec<SetJson>,
}

impl ListJson {
    pub(crate) fn new(listing: &Listing, names: &mut Names) -> Self {
        ListJson {
            segments: listing
                .segments
                .iter()
                .map(|s| SegmentJson::new(s, names))
                .collect(),
            semaphore_sets: listing
                .semaphore_sets
                .iter()
                .map(|set| SetJson::new(set, listing.paired_segment(set), names))
                .collect(),
        }
    }
}

/// `show --json`: one per key (or per object an id names).
#[derive(Debug, Serialize)]
pub(crate) struct ShowJson {
    pub key: String,
    pub segment: Option<SegmentJson>,
    pub semaphore_set: Option<SetJson>,
}

impl ShowJson {
    pub(crate) fn new(report: &KeyReport, names: &mut Names) -> Self {
        let kind = report
            .segment
            .as_ref()
            .and_then(|s| s.contents.managed())
            .map(|m| m.kind);
        // A private key pairs nothing: the segment's set is found by key only.
        let pair = report
            .segment
            .as_ref()
            .filter(|s| !s.record.key.is_private() && s.contents.managed().is_some());
        ShowJson {
            key: report.key.to_string(),
            segment: report.segment.as_ref().map(|s| SegmentJson::new(s, names)),
            semaphore_set: report
                .semaphore_set
                .as_ref()
                .map(|set| SetJson::new(set, pair, names).with_semaphores(set, kind)),
        }
    }
}

/// `rm --json`.
#[derive(Debug, Serialize)]
pub(crate) struct RmJson {
    pub key: String,
    /// The removed object's kind; `null` when `--force` removed something else.
    pub kind: Option<&'static str>,
    pub shmid: Option<i32>,
    pub semid: Option<i32>,
    /// Processes still attached to the removed segment (they keep it until they detach).
    pub attaches: u64,
}

/// One pair `gc` looked at.
#[derive(Debug, Serialize)]
pub(crate) struct GcEntryJson {
    pub key: String,
    pub kind: &'static str,
    pub shmid: i32,
    pub semid: Option<i32>,
    pub creator: ProcessJson,
    pub attaches: u64,
    /// Why it was kept (`kept` entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why removing it failed (`failed` entries only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl GcEntryJson {
    pub(crate) fn new(e: &GcEntry) -> Self {
        GcEntryJson {
            key: e.key.to_string(),
            kind: e.kind.name(),
            shmid: e.shm_id,
            semid: e.sem_id,
            creator: e.creator.into(),
            attaches: e.nattch,
            reason: None,
            error: None,
        }
    }
}

/// `gc --json`.
#[derive(Debug, Serialize)]
pub(crate) struct GcJson {
    pub dry_run: bool,
    /// Removed (in a dry run: would be removed).
    pub collected: Vec<GcEntryJson>,
    pub kept: Vec<GcEntryJson>,
    pub failed: Vec<GcEntryJson>,
}

/// `top --json`: one per refresh.
#[derive(Debug, Serialize)]
pub(crate) struct TopJson {
    /// When the objects were read (seconds since the epoch).
    pub time: u64,
    /// The managed segments (`contents` is `managed`), as `list` shows them.
    pub segments: Vec<SegmentJson>,
}

/// `completions --json`.
#[derive(Debug, Serialize)]
pub(crate) struct CompletionsJson {
    pub shell: String,
    pub script: String,
}

/// A failure, with `--json`: `{"error": {...}}` on standard output (the message also
/// goes to standard error).
#[derive(Debug, Serialize)]
pub(crate) struct ErrorJson {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    /// shmsem's `ErrorKind` in snake case (`not_found`, `permission_denied`,
    /// `not_managed`, ...), or `failed` for a problem that is no single error (`gc`).
    pub kind: String,
    pub message: String,
}
