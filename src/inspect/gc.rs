//! Collecting abandoned managed pairs: nobody attached, no lease held, the creator gone,
//! old enough; each re-checked just before it is removed.

use std::time::{Duration, SystemTime};

use super::process::{Liveness, Process};
use super::remove::{remove_segment, remove_set};
use super::report::{Contents, inspect};
use crate::error::{Error, ErrorKind, Result, Target};
use crate::managed::header::ObjectKind;
use crate::raw::key::Key;
use crate::raw::sys;
use crate::raw::tables::{ShmRecord, segments, semaphore_sets};

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
            return Err(Error::sysv(
                "shmctl(IPC_STAT)",
                target,
                errno,
                ErrorKind::Removed,
            ));
        }
    }
    remove_segment(call, key, record.id)?;
    if let Some(id) = sem_id {
        remove_set(call, key, id)?;
    }
    Ok(None)
}
