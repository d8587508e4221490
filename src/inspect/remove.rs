//! Removing a managed pair by key: its segment and its semaphore set, refusing what is
//! not one unless forced.

use super::report::{Contents, contents, not_found, private_key};
use crate::error::{Error, ErrorKind, Result, Target, cvt};
use crate::managed::header::ObjectKind;
use crate::raw::key::Key;
use crate::raw::sem::SemaphoreSet;
use crate::raw::sys;
use crate::raw::tables::{segments, semaphore_sets};

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
pub(super) fn remove_segment(call: &'static str, key: Key, id: i32) -> Result<u64> {
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
    cvt(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) })
        .map_err(|errno| Error::sysv("shmctl(IPC_RMID)", target, errno, ErrorKind::Removed))?;
    Ok(nattch)
}

/// `IPC_RMID` on semaphore set `id`, if it still is the set with `key`.
pub(super) fn remove_set(call: &'static str, key: Key, id: i32) -> Result<()> {
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
