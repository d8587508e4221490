//! [`SharedCondvar`]: wait for a change to a [`SharedMutex`]'s data and be woken by
//! whoever makes it, between threads and processes, safe when any of them is killed. The
//! typed API; the kernel protocol is in `waiters.rs`.

mod waiters;

use std::fmt;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, ErrorKind, Result};
use crate::managed::header::{Layout, ObjectKind};
use crate::managed::options::Options;
use crate::managed::pair::{Blueprint, Pair};
use crate::managed::poison::{LockError, LockResult};
use crate::managed::wait::Wait;
use crate::mutex::{SharedMutex, SharedMutexGuard};
use crate::raw::key::Key;
use crate::raw::sem::SemaphoreSet;
use waiters::Woke;

/// A condition variable shared by processes: [`wait`](SharedCondvar::wait) releases a
/// [`SharedMutex`] guard and sleeps until [`notify_one`](SharedCondvar::notify_one) or
/// [`notify_all`](SharedCondvar::notify_all), then takes the lock again, as
/// [`std::sync::Condvar`] does between threads.
///
/// It is its own pair of System V objects under its own key (a small segment and a
/// semaphore set: docs/FORMAT.md, "Condvar"), made and opened like the other managed
/// objects, and can be used with any `SharedMutex<T>` (use one mutex with one condvar).
///
/// # Crashes
///
/// Every wait holds a kernel lease with `SEM_UNDO` while it is registered, and a
/// notification is given only to a waiter whose lease the kernel still holds:
///
/// - a waiter killed while waiting never takes a notification with it: `notify_one` wakes
///   a live waiter, however many died before;
/// - a process killed while holding the mutex leaves the waiters wakeable by anyone; they
///   re-acquire the mutex [`Poisoned`](LockError::Poisoned);
/// - a killed notifier leaves nothing behind.
///
/// At most 256 waits can be in progress on one condvar at once (each holds one of its
/// waiter slots); the next gets `LimitReached`.
///
/// One window is left, as between threads: a waiter killed *after* it was notified, before
/// it re-acquires the mutex, takes that one notification with it. Where processes may be
/// killed, prefer `notify_all`, or wait with a timeout, if a lost `notify_one` matters.
///
/// # Spurious wake-ups
///
/// A wait may return without a notification meant for it (a notifier that read a slot's
/// word just before the slot's wait ended and a new one began in it wakes the new one,
/// and a peer that writes into the segment can cause the same). As with std, check the
/// condition in a loop; [`wait_while`](SharedCondvar::wait_while) and
/// [`wait_timeout_while`](SharedCondvar::wait_timeout_while) do it for you.
///
/// ```
/// use shmsem::{Key, SharedCondvar, SharedMutex};
/// # let (mk, ck) = (Key::from_raw(0x5e00_00c1), Key::from_raw(0x5e00_00c2));
/// # if let Ok(old) = SharedMutex::<u32>::open(mk) { old.remove()?; }
/// # if let Ok(old) = SharedCondvar::open(ck) { old.remove()?; }
/// let ready = SharedMutex::open_or_create(mk, 0u32)?;  // 1 once the data is written
/// let changed = SharedCondvar::open_or_create(ck)?;
///
/// // The writer (here a thread; typically another process):
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *ready.lock().unwrap() = 1;
///         changed.notify_all().unwrap();
///     });
///     // The reader waits until the flag is set:
///     let guard = changed.wait_while(ready.lock().unwrap(), |r| *r == 0).unwrap();
///     assert_eq!(*guard, 1);
/// });
/// # ready.remove()?; changed.remove()?;
/// # Ok::<(), shmsem::Error>(())
/// ```
pub struct SharedCondvar {
    pair: Pair,
}

/// Whether a timed wait returned because its time ran out, as [`std::sync::WaitTimeoutResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True if the wait ended because the time ran out (for the `_while` forms: with the
    /// condition still true).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

impl SharedCondvar {
    fn layout() -> Layout {
        Layout::new(ObjectKind::Condvar, waiters::PAYLOAD_SIZE, 8)
    }

    crate::managed::options::constructors! {
        /// Creates a new condvar (exclusive: `AlreadyExists` if either object exists; mode
        /// `0o600`).
        ///
        /// # Errors
        /// `AlreadyExists`; `LimitReached` past the system's limits (it needs a set of 768
        /// semaphores, within Linux's default `SEMMSL` of 32,000). Nothing half-made is
        /// left.
        create();
        /// Opens an existing condvar, waiting up to a second for a creator that is still
        /// initialising it.
        ///
        /// # Errors
        /// `NotFound`; `PermissionDenied`; `NotManaged` for objects shmsem did not make;
        /// `LayoutMismatch` when the key holds another kind of object.
        open;
        /// Opens the condvar, or creates it if there is none. Any number of processes may
        /// call this at the same time: exactly one creates, all share it.
        open_or_create;
        /// Options: mode for creation, the opener's wait bound.
        options;
    }

    /// Releases the lock of `guard` and sleeps until notified, then takes the lock again
    /// (waiting as long as that takes) and returns its guard. Signals do not end the wait.
    /// May wake spuriously: check the condition in a loop, or use
    /// [`wait_while`](SharedCondvar::wait_while).
    ///
    /// # Errors
    /// [`LockError::Poisoned`] (with the guard) when the mutex is re-acquired poisoned (a
    /// holder died or panicked inside meanwhile); [`LockError::Failed`] with `Removed`
    /// when this condvar is removed while waiting (or before), in which case the lock is
    /// not taken again; `LimitReached` (the guard is dropped, so the lock is released)
    /// when 256 waits are in progress on this condvar already, across all processes and
    /// threads: each wait holds one of its 256 waiter slots; other failures of the
    /// mutex's re-lock as [`SharedMutex::lock`].
    pub fn wait<'a, T: Pod>(
        &self,
        guard: SharedMutexGuard<'a, T>,
    ) -> LockResult<SharedMutexGuard<'a, T>> {
        strip(self.wait_with(guard, Wait::Forever, "SharedCondvar::wait"))
    }

    /// Waits as [`wait`](SharedCondvar::wait) while `condition` returns true (it is called
    /// with the lock held, first before any wait); returns the guard once it is false.
    ///
    /// # Errors
    /// As [`wait`](SharedCondvar::wait); a poisoned re-lock ends the loop at once.
    pub fn wait_while<'a, T: Pod, F: FnMut(&mut T) -> bool>(
        &self,
        mut guard: SharedMutexGuard<'a, T>,
        mut condition: F,
    ) -> LockResult<SharedMutexGuard<'a, T>> {
        while condition(&mut *guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Waits as [`wait`](SharedCondvar::wait), for at most `dur` (on the monotonic clock;
    /// signals neither extend nor restart it). The lock is held again when it returns,
    /// whether it timed out or not.
    ///
    /// # Errors
    /// As [`wait`](SharedCondvar::wait).
    pub fn wait_timeout<'a, T: Pod>(
        &self,
        guard: SharedMutexGuard<'a, T>,
        dur: Duration,
    ) -> LockResult<(SharedMutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_with(guard, Wait::after(dur), "SharedCondvar::wait_timeout")
    }

    /// Waits as [`wait`](SharedCondvar::wait) until `deadline` at the latest: the form of
    /// [`wait_timeout`](SharedCondvar::wait_timeout) for several waits that share one
    /// deadline.
    ///
    /// # Errors
    /// As [`wait`](SharedCondvar::wait).
    pub fn wait_until<'a, T: Pod>(
        &self,
        guard: SharedMutexGuard<'a, T>,
        deadline: Instant,
    ) -> LockResult<(SharedMutexGuard<'a, T>, WaitTimeoutResult)> {
        self.wait_with(guard, Wait::Until(deadline), "SharedCondvar::wait_until")
    }

    /// Waits while `condition` returns true, for at most `dur` in all. Returns the guard
    /// and whether the time ran out with the condition still true.
    ///
    /// # Errors
    /// As [`wait`](SharedCondvar::wait).
    pub fn wait_timeout_while<'a, T: Pod, F: FnMut(&mut T) -> bool>(
        &self,
        mut guard: SharedMutexGuard<'a, T>,
        dur: Duration,
        mut condition: F,
    ) -> LockResult<(SharedMutexGuard<'a, T>, WaitTimeoutResult)> {
        let wait = Wait::after(dur);
        loop {
            if !condition(&mut *guard) {
                return Ok((guard, WaitTimeoutResult(false)));
            }
            if wait.deadline().is_some_and(|d| Instant::now() >= d) {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self
                .wait_with(guard, wait, "SharedCondvar::wait_timeout_while")?
                .0;
        }
    }

    /// Wakes one waiting thread or process, if any is waiting (the one that has waited
    /// longest, roughly). Needs no lock; notifying while holding the mutex or after
    /// releasing it are both correct.
    ///
    /// # Errors
    /// `Removed` when it finds the condvar removed. (With nobody waiting it makes no
    /// system call, so a notification to a removed condvar can also succeed, quietly.)
    pub fn notify_one(&self) -> Result<()> {
        waiters::notify(&self.pair, false, "SharedCondvar::notify_one").map(drop)
    }

    /// Wakes every thread and process waiting now.
    ///
    /// # Errors
    /// As [`notify_one`](SharedCondvar::notify_one).
    pub fn notify_all(&self) -> Result<()> {
        waiters::notify(&self.pair, true, "SharedCondvar::notify_all").map(drop)
    }

    /// How many waits are registered now, across all processes (a snapshot, for
    /// monitoring and tests).
    ///
    /// # Errors
    /// `Removed` once the condvar is removed.
    pub fn waiters(&self) -> Result<usize> {
        waiters::waiters(&self.pair, "SharedCondvar::waiters")
    }

    /// Removes the segment and the semaphore set. Every waiter wakes at once with
    /// [`LockError::Failed`] of kind `Removed` (without the lock); later calls on any
    /// handle are `Removed`, later opens `NotFound`.
    ///
    /// # Errors
    /// `Removed` if already removed, `PermissionDenied` for a process that is neither the
    /// owner nor the creator. Both objects are attempted even if the first fails.
    pub fn remove(&self) -> Result<()> {
        self.pair.remove()
    }

    crate::managed::view::pair_accessors!("SharedCondvar");

    /// The raw semaphore set, for inspection (docs/FORMAT.md, "Condvar", gives the
    /// indexes). Operating on it directly bypasses the condvar's protocol.
    pub fn semaphores(&self) -> &SemaphoreSet {
        &self.pair.sems
    }

    /// The wait itself: register (mutex held), release the mutex, sleep, re-lock.
    fn wait_with<'a, T: Pod>(
        &self,
        guard: SharedMutexGuard<'a, T>,
        wait: Wait,
        call: &'static str,
    ) -> LockResult<(SharedMutexGuard<'a, T>, WaitTimeoutResult)> {
        let Some(mutex) = guard.owned_mutex() else {
            return Err(LockError::Failed(Error::new(
                ErrorKind::InvalidInput,
                call,
                self.pair.sems.target(),
                "the guard was inherited through fork: its lock belongs to the parent",
            )));
        };
        // Wait steps 1-3 (waiters.rs). On an error the guard drops: the lock is released.
        let me = waiters::register(&self.pair, call)?;
        drop(guard);
        let woke = waiters::sleep(&self.pair, me, wait, call)?;
        relock(mutex, WaitTimeoutResult(woke == Woke::TimedOut))
    }
}

/// Takes the mutex again after a wait, carrying `result` along (also inside `Poisoned`).
fn relock<T: Pod>(
    mutex: &SharedMutex<T>,
    result: WaitTimeoutResult,
) -> LockResult<(SharedMutexGuard<'_, T>, WaitTimeoutResult)> {
    mutex
        .lock()
        .map(|g| (g, result))
        .map_err(|e| e.map(|g| (g, result)))
}

/// Drops the `WaitTimeoutResult` from a wait's result, poisoned or not.
fn strip<G>(r: LockResult<(G, WaitTimeoutResult)>) -> LockResult<G> {
    r.map(|(g, _)| g).map_err(|e| e.map(|(g, _)| g))
}

// SAFETY: the handle is a segment attach plus a set id; its shared state is only ever
// touched atomically or through the kernel, from any thread.
unsafe impl Send for SharedCondvar {}
// SAFETY: as above: every method takes &self and works on atomics and system calls.
unsafe impl Sync for SharedCondvar {}

impl Options<SharedCondvar> {
    /// Creates a new condvar (see [`SharedCondvar::create`]).
    pub fn create(self, key: Key) -> Result<SharedCondvar> {
        let new = Blueprint::new(SharedCondvar::layout(), &[], &[0; waiters::SLOTS]);
        let pair = Pair::create("SharedCondvar::create", key, &self.params, new)?;
        Ok(SharedCondvar { pair })
    }

    /// Opens an existing condvar (see [`SharedCondvar::open`]).
    pub fn open(self, key: Key) -> Result<SharedCondvar> {
        let layout = SharedCondvar::layout();
        let pair = Pair::open("SharedCondvar::open", key, &layout, &self.params)?;
        Ok(SharedCondvar { pair })
    }

    /// Opens or creates (see [`SharedCondvar::open_or_create`]).
    pub fn open_or_create(self, key: Key) -> Result<SharedCondvar> {
        let new = Blueprint::new(SharedCondvar::layout(), &[], &[0; waiters::SLOTS]);
        let pair = Pair::open_or_create("SharedCondvar::open_or_create", key, &self.params, new)?;
        Ok(SharedCondvar { pair })
    }
}

impl fmt::Debug for SharedCondvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pair.debug(f, "SharedCondvar").finish_non_exhaustive()
    }
}
