//! Objects a test made and left: [`LeakCheck`], from the kernel's tables before and after.

use std::collections::HashSet;
use std::fmt;

use crate::inspect;
use crate::raw::key::Key;

/// Which kind of System V object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ObjectKind {
    /// A shared memory segment (`ipcs -m`).
    Segment,
    /// A semaphore set (`ipcs -s`).
    SemaphoreSet,
}

/// One System V object, as the kernel's table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SysvObject {
    /// Segment or semaphore set.
    pub kind: ObjectKind,
    /// Its id (`shmid`/`semid`, what `ipcrm -m`/`-s` takes).
    pub id: i32,
    /// Its key (`Key::PRIVATE` for a private one).
    pub key: Key,
    /// The process that made it, as this PID namespace sees it: segments only (the
    /// kernel keeps no creator for a semaphore set).
    pub creator_pid: Option<i32>,
    /// A segment that was removed while processes still had it attached: it goes
    /// when the last one detaches (its key reads `Key::PRIVATE` meanwhile). Never true
    /// for a semaphore set, which goes at once.
    pub marked_for_removal: bool,
}

impl SysvObject {
    /// Removes it (`IPC_RMID` by id); whether it was there to remove. Removing an object
    /// another process still uses is allowed: they keep their attach, and their
    /// semaphore calls fail with `Removed`.
    pub fn remove(&self) -> bool {
        // SAFETY: IPC_RMID by id with no buffer (plain integers).
        let rc = unsafe {
            match self.kind {
                ObjectKind::Segment => libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()),
                ObjectKind::SemaphoreSet => libc::semctl(self.id, 0, libc::IPC_RMID),
            }
        };
        rc == 0
    }
}

impl fmt::Display for SysvObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ObjectKind::Segment => "segment",
            ObjectKind::SemaphoreSet => "semaphore set",
        };
        write!(f, "{kind} id {} key {}", self.id, self.key)?;
        if let Some(pid) = self.creator_pid {
            write!(f, " (made by pid {pid})")?;
        }
        Ok(())
    }
}

/// Every segment and semaphore set of this IPC namespace, from `/proc/sysvipc/shm` and
/// `/proc/sysvipc/sem` (what `ipcs -m -s` lists, whoever owns them).
///
/// # Errors
/// As [`inspect::segments`]: `NotFound` without `/proc/sysvipc`.
pub fn sysv_objects() -> crate::Result<Vec<SysvObject>> {
    let segments = inspect::segments()?.into_iter().map(|s| SysvObject {
        kind: ObjectKind::Segment,
        id: s.id,
        key: s.key,
        creator_pid: Some(s.cpid),
        marked_for_removal: s.is_marked_for_removal(),
    });
    let sets = inspect::semaphore_sets()?.into_iter().map(|s| SysvObject {
        kind: ObjectKind::SemaphoreSet,
        id: s.id,
        key: s.key,
        creator_pid: None,
        marked_for_removal: false,
    });
    Ok(segments.chain(sets).collect())
}

/// Lists the System V objects that appeared since it started and are still there: what a
/// test made and left.
///
/// The kernel's tables say what exists, not which test made it (a semaphore set does not
/// even record its creator). So a check either covers the keys the test uses
/// ([`LeakCheck::keys`]), which is reliable while other tests run, or everything
/// ([`LeakCheck::start`]), which is reliable only where nothing else makes objects
/// meanwhile: a test binary of its own, a test that runs alone (`#[serial]` in every
/// test of the binary, `--test-threads=1`), a CI job. Private objects
/// (`Key::PRIVATE`) can only be seen by the second kind; [`LeakCheck::filter`] narrows
/// either.
///
/// Objects are told apart by kind and id (the kernel does not reuse an id soon), so one
/// removed and made again under the same key counts as new. A segment already removed
/// but still attached somewhere is not counted: it goes when its last process detaches
/// (a process the test left running is a leak of another kind, which dropping the
/// [`Child`](super::Child) prevents).
///
/// ```
/// use shmsem::{Key, Segment, SharedMutex};
/// use shmsem::testing::{BOUND, LeakCheck, TestKey, fork};
///
/// let key = TestKey::new();
/// let check = LeakCheck::keys([key.key()]);
/// // The code under test: a child that makes a mutex and removes it.
/// let child = fork(|| {
///     let m = SharedMutex::create(key.key(), 0u64).unwrap();
///     *m.lock().unwrap() += 1;
///     m.remove().unwrap();
///     0
/// });
/// assert_eq!(child.join(), 0);
/// check.assert_clean(); // nothing under the key: both objects were removed
///
/// // One that forgets to: the check lists both objects (and removes them).
/// let check = LeakCheck::keys([key.key()]);
/// let child = fork(|| {
///     let _m = SharedMutex::create(key.key(), 0u64).unwrap();
///     0 // (and no remove)
/// });
/// assert_eq!(child.join(), 0);
/// let leaks = check.leaks();
/// assert_eq!(leaks.len(), 2);
/// for leak in leaks {
///     assert!(leak.remove());
/// }
///
/// // Private objects: only the whole-namespace check sees them; narrowed to this
/// // process's segments here, since other tests may be making objects meanwhile.
/// let me = std::process::id() as i32;
/// let check = LeakCheck::start().filter(move |o| o.creator_pid == Some(me));
/// let segment = Segment::create(Key::PRIVATE, 64, 0o600)?;
/// let leaks = check.leaks();
/// assert_eq!(leaks.len(), 1);
/// assert_eq!(leaks[0].id, segment.id());
/// segment.remove()?; // still attached here: marked for removal, not counted
/// assert!(check.leaks().is_empty());
/// # Ok::<(), shmsem::Error>(())
/// ```
#[must_use = "a leak check reports only when asked: call leaks() or assert_clean()"]
pub struct LeakCheck {
    before: HashSet<(ObjectKind, i32)>,
    keys: Option<HashSet<Key>>,
    filter: Option<Filter>,
}

/// What [`LeakCheck::filter`] keeps.
type Filter = Box<dyn Fn(&SysvObject) -> bool + Send + Sync>;

impl fmt::Debug for LeakCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakCheck")
            .field("before", &self.before.len())
            .field("keys", &self.keys)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

impl LeakCheck {
    /// Starts a check of every object in this IPC namespace (see above for when that
    /// is reliable): notes what exists now.
    ///
    /// # Panics
    /// If the kernel's tables cannot be read (no `/proc/sysvipc`).
    pub fn start() -> LeakCheck {
        LeakCheck {
            before: snapshot().map(|o| (o.kind, o.id)).collect(),
            keys: None,
            filter: None,
        }
    }

    /// Starts a check of the objects under `keys` (`Key::PRIVATE` among them is
    /// ignored: private objects share that key without sharing anything else).
    ///
    /// # Panics
    /// As [`start`](LeakCheck::start).
    pub fn keys(keys: impl IntoIterator<Item = Key>) -> LeakCheck {
        let keys: HashSet<Key> = keys.into_iter().filter(|k| *k != Key::PRIVATE).collect();
        LeakCheck {
            keys: Some(keys),
            ..LeakCheck::start()
        }
    }

    /// Counts only the objects `keep` returns true for (by creator, say), besides any
    /// key restriction.
    pub fn filter(
        mut self,
        keep: impl Fn(&SysvObject) -> bool + Send + Sync + 'static,
    ) -> LeakCheck {
        self.filter = Some(Box::new(keep));
        self
    }

    /// The objects that appeared since the start, were not removed (segments marked for
    /// removal are not counted), and pass the key restriction and filter; sorted by
    /// kind, then id.
    ///
    /// # Panics
    /// As [`start`](LeakCheck::start).
    pub fn leaks(&self) -> Vec<SysvObject> {
        let mut new: Vec<SysvObject> = snapshot()
            .filter(|o| !o.marked_for_removal && !self.before.contains(&(o.kind, o.id)))
            .filter(|o| self.keys.as_ref().is_none_or(|keys| keys.contains(&o.key)))
            .filter(|o| self.filter.as_ref().is_none_or(|keep| keep(o)))
            .collect();
        new.sort_by_key(|o| (o.kind, o.id));
        new
    }

    /// Panics if anything leaked, listing it, after removing it (so that a failing test
    /// leaves nothing behind either).
    ///
    /// # Panics
    /// If [`leaks`](LeakCheck::leaks) is not empty.
    pub fn assert_clean(self) {
        let leaks = self.leaks();
        if leaks.is_empty() {
            return;
        }
        let mut list = String::new();
        for leak in &leaks {
            let removed = if leak.remove() {
                "removed now"
            } else {
                "could not remove"
            };
            list.push_str(&format!("\n  {leak}: {removed}"));
        }
        panic!(
            "{} System V object(s) made during the test were left behind:{list}",
            leaks.len()
        );
    }
}

fn snapshot() -> impl Iterator<Item = SysvObject> {
    match sysv_objects() {
        Ok(objects) => objects.into_iter(),
        Err(e) => panic!("LeakCheck: cannot list the System V objects: {e}"),
    }
}
