//! Every semaphore of a set as the kernel sees it: value, the processes sleeping on it
//! (`GETNCNT`, `GETZCNT`) and the last process that operated on it (`GETPID`); and the
//! names docs/FORMAT.md gives the semaphores of a managed pair.

use crate::error::{Error, ErrorKind, Result, Target};
use crate::managed::header::ObjectKind;
use crate::raw::sem::SemaphoreSet;
use crate::raw::tables::SemRecord;

/// One semaphore: its value and who waits on it, read with `semctl` (nothing is changed:
/// the inspector never operates on a set, so its `GETPID`s stay the users').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemaphoreState {
    /// Its index in the set.
    pub index: usize,
    /// Its value (`GETVAL`; all values of a set are read with one `GETALL`).
    pub value: i32,
    /// Processes (threads) asleep in `semop` waiting for it to increase (`GETNCNT`): for
    /// a lock, the lockers waiting for it.
    pub ncnt: usize,
    /// Processes (threads) asleep in `semop` waiting for it to become zero (`GETZCNT`).
    pub zcnt: usize,
    /// The pid of the last process that operated on it (`GETPID`), as this PID namespace
    /// sees it; 0 for none (or a process this namespace cannot see).
    pub last_pid: i32,
}

/// Every semaphore of `set`, in index order.
///
/// The kernel counts a sleeper against the semaphore whose operation blocked it (the
/// first of its `semop` that could not proceed), so each sleeping process is counted
/// once, on one semaphore. The values are one snapshot (`GETALL`); the counts and pids
/// are read one by one after it.
///
/// # Errors
/// `Removed` (or `NotFound`) when the set is gone, or its id now names another set;
/// `PermissionDenied` without read permission on it.
pub fn semaphores(set: &SemRecord) -> Result<Vec<SemaphoreState>> {
    let handle = SemaphoreSet::from_id(set.id)?;
    if handle.key() != set.key {
        return Err(Error::new(
            ErrorKind::Removed,
            "inspect::semaphores",
            Target {
                key: set.key,
                id: Some(("semid", set.id)),
            },
            "the set was removed and its id given to another set",
        ));
    }
    states(&handle, 0..handle.len())
}

/// The states of the semaphores in `range` (which must lie in the set).
pub(super) fn states(
    handle: &SemaphoreSet,
    range: std::ops::Range<usize>,
) -> Result<Vec<SemaphoreState>> {
    let values = handle.values()?;
    range
        .map(|index| {
            Ok(SemaphoreState {
                index,
                value: values.get(index).copied().unwrap_or(0),
                ncnt: handle.wait_count(index)?,
                zcnt: handle.zero_wait_count(index)?,
                last_pid: handle.last_pid(index)?,
            })
        })
        .collect()
}

/// The name docs/FORMAT.md gives semaphore `index` of a `kind`'s paired set: the
/// object's own semaphores (`LOCK`; `WRITER`, `READERS`, `QUEUED`; `DATA`, `SPACE`;
/// `WAKE(i)`), then the lease slots' `HELD(i)` and `GEN(i)`.
pub fn semaphore_name(kind: ObjectKind, index: usize) -> String {
    let own = kind.own_semaphores();
    if index >= own {
        let slot = (index - own) / 2;
        return match (index - own) % 2 {
            0 => format!("HELD({slot})"),
            _ => format!("GEN({slot})"),
        };
    }
    let name = match (kind, index) {
        (ObjectKind::Mutex, _) => "LOCK",
        (ObjectKind::RwLock, 0) => "WRITER",
        (ObjectKind::RwLock, 1) => "READERS",
        (ObjectKind::RwLock, _) => "QUEUED",
        (ObjectKind::Queue, 0) => "DATA",
        (ObjectKind::Queue, _) => "SPACE",
        (ObjectKind::Condvar, i) => return format!("WAKE({i})"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_format() {
        assert_eq!(semaphore_name(ObjectKind::Mutex, 0), "LOCK");
        assert_eq!(semaphore_name(ObjectKind::Mutex, 1), "HELD(0)");
        assert_eq!(semaphore_name(ObjectKind::Mutex, 2), "GEN(0)");
        assert_eq!(semaphore_name(ObjectKind::Mutex, 512), "GEN(255)");
        assert_eq!(semaphore_name(ObjectKind::RwLock, 2), "QUEUED");
        assert_eq!(semaphore_name(ObjectKind::RwLock, 3), "HELD(0)");
        assert_eq!(semaphore_name(ObjectKind::Queue, 1), "SPACE");
        assert_eq!(semaphore_name(ObjectKind::Condvar, 255), "WAKE(255)");
        assert_eq!(semaphore_name(ObjectKind::Condvar, 256), "HELD(0)");
        assert_eq!(semaphore_name(ObjectKind::Condvar, 767), "GEN(255)");
    }
}
