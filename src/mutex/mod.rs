//! [`SharedMutex<T>`]: a value of plain data in a System V segment, guarded by a System V
//! semaphore, shared by any number of processes.

mod local;
mod semaphore;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, ErrorKind, Result};
use crate::managed::header::{Layout, ObjectKind};
use crate::managed::options::Options;
use crate::managed::pair::{Blueprint, Pair};
use crate::managed::poison::{LockError, LockResult, PoisonError};
use crate::managed::process;
use crate::managed::wait::{Patience, Wait};
use crate::raw::key::Key;
use crate::raw::sem::SemaphoreSet;
use local::LocalLock;

/// A mutual-exclusion lock over a `T` in shared memory, usable from any number of
/// processes that agree on a [`Key`].
///
/// The segment holds a small header (see docs/FORMAT.md) and the `T`; the semaphore set
/// holds one semaphore. [`lock`](SharedMutex::lock) is `semop(-1, SEM_UNDO)`, dropping
/// the guard is `semop(+1, SEM_UNDO)`: if a holder dies, the kernel gives the lock back,
/// and the next locker is told the data may be half-updated ([`LockError::Poisoned`],
/// with the dead holder's pid).
///
/// `T` is [`Pod`] plain data: no pointers, no references, any bit pattern valid. (Another
/// process, or a crash half-way through a write, can leave any bytes there.)
///
/// Dropping a `SharedMutex` detaches it; the objects stay in the system until
/// [`remove`](SharedMutex::remove) is called by some process.
///
/// ```
/// use shmsem::{Key, SharedMutex};
/// # let key = Key::from_raw(0x5e00_0002);
/// # if let Ok(old) = SharedMutex::<u64>::open(key) { old.remove()?; }
/// let counter = SharedMutex::open_or_create(key, 0u64)?;   // in every process
/// *counter.lock().unwrap() += 1;
/// assert_eq!(*counter.lock().unwrap(), 1);
/// counter.remove()?;                                         // in the last one
/// # Ok::<(), shmsem::Error>(())
/// ```
pub struct SharedMutex<T> {
    pair: Pair,
    /// Threads of this process queue here once `threaded`; see `local.rs`.
    local: LocalLock,
    /// Set for good once a sibling thread was seen holding the lock.
    threaded: AtomicBool,
    _value: PhantomData<T>,
}

// SAFETY: the handle is a segment attach plus a set id; access to the T goes through the
// semaphore, which excludes other threads exactly as it excludes other processes. Moving
// a T's bytes between threads needs T: Send.
unsafe impl<T: Pod + Send> Send for SharedMutex<T> {}
// SAFETY: as above; &SharedMutex only hands out the T through a guard held under the lock.
unsafe impl<T: Pod + Send> Sync for SharedMutex<T> {}

impl<T: Pod> SharedMutex<T> {
    crate::managed::options::constructors! {
        /// Creates a new mutex holding `value` (exclusive: `AlreadyExists` if either object
        /// exists; mode `0o600`).
        ///
        /// # Errors
        /// `AlreadyExists`; `InvalidInput` for a `T` aligned above a page; `LimitReached` past
        /// the system's limits. If the semaphore set cannot be made, the segment is removed
        /// again: nothing half-made is left.
        create(value: T);
        /// Opens an existing mutex, waiting up to a second for a creator that is still
        /// initialising it.
        ///
        /// # Errors
        /// `NotFound`; `PermissionDenied`; `NotManaged` for objects shmsem did not make (or
        /// whose creator never finished); `LayoutMismatch` when it holds another type.
        open;
        /// Opens the mutex, or creates it holding `value` if there is none. Any number of
        /// processes may call this at the same time: exactly one creates, all share it.
        open_or_create;
        /// Options: mode for creation, the opener's wait bound.
        options;
    }

    fn from_pair(pair: Pair) -> Self {
        SharedMutex {
            pair,
            local: LocalLock::new(),
            threaded: AtomicBool::new(false),
            _value: PhantomData,
        }
    }

    /// Takes the lock, waiting as long as it takes (a signal does not end the wait).
    ///
    /// # Errors
    /// [`LockError::Poisoned`] (with the guard) if a holder died or panicked inside;
    /// [`LockError::Failed`] with `Removed` if the mutex is removed (also while waiting).
    ///
    /// Not reentrant: locking again from the thread (or process) that holds it waits
    /// forever, as with `std::sync::Mutex`.
    pub fn lock(&self) -> LockResult<SharedMutexGuard<'_, T>> {
        self.take(Wait::Forever.into(), "SharedMutex::lock")
    }

    /// Takes the lock if it is free now.
    ///
    /// # Errors
    /// [`LockError::Failed`] with `WouldBlock` when it is held; otherwise as
    /// [`lock`](SharedMutex::lock).
    pub fn try_lock(&self) -> LockResult<SharedMutexGuard<'_, T>> {
        self.take(Wait::No.into(), "SharedMutex::try_lock")
    }

    /// Takes the lock, waiting at most `timeout` (measured on the monotonic clock; signals
    /// neither extend nor restart it).
    ///
    /// # Errors
    /// [`LockError::Failed`] with `TimedOut` when the time runs out; otherwise as
    /// [`lock`](SharedMutex::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<SharedMutexGuard<'_, T>> {
        self.take(Patience::Within(timeout), "SharedMutex::lock_timeout")
    }

    /// Takes the lock, waiting until `deadline` at the latest: the form of
    /// [`lock_timeout`](SharedMutex::lock_timeout) for several waits that share one
    /// deadline.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmsem::{Key, SharedMutex};
    /// let (a, b) = (SharedMutex::create(Key::PRIVATE, 1u32)?, SharedMutex::create(Key::PRIVATE, 2u32)?);
    /// let deadline = Instant::now() + Duration::from_secs(1); // for both together
    /// let (ga, gb) = (a.lock_until(deadline).unwrap(), b.lock_until(deadline).unwrap());
    /// assert_eq!(*ga + *gb, 3);
    /// # drop((ga, gb)); a.remove()?; b.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`lock_timeout`](SharedMutex::lock_timeout).
    pub fn lock_until(&self, deadline: Instant) -> LockResult<SharedMutexGuard<'_, T>> {
        self.take(Wait::Until(deadline).into(), "SharedMutex::lock_until")
    }

    /// Takes the lock. A handle starts out going straight to the semaphore (one `semop`
    /// uncontended). Once it sees that the semaphore is busy because a sibling thread of
    /// this process holds it, it switches for good to queueing threads on the local lock
    /// first (`local.rs`), so siblings wait in user space and can hand the lock on
    /// without a system call.
    ///
    /// A timeout's clock starts only once the lock turns out to be busy (`Patience`): an
    /// uncontended `lock_timeout` reads no clock.
    fn take(&self, patience: Patience, call: &'static str) -> LockResult<SharedMutexGuard<'_, T>> {
        // The token this handle records as holder (claimed on the first lock); the
        // generation tells this process from a forked child that inherits the handle.
        let generation = process::generation();
        let me = self.pair.token_in(generation, call)?;
        let unthreaded = !self.threaded.load(Ordering::Relaxed);
        if unthreaded && semaphore::try_acquire(&self.pair, call)? {
            return self.enter(me, generation, false);
        }
        let wait = patience.start();
        if unthreaded {
            // Our own token in the holder word: a sibling thread holds the lock (a token
            // is this handle's in this process, so it is never another process's).
            if self.pair.live().holder.load(Ordering::Relaxed) == me {
                self.threaded.store(true, Ordering::Relaxed);
            } else {
                semaphore::acquire_contended(&self.pair, wait, call)?;
                return self.enter(me, generation, false);
            }
        }
        let got_local = match wait {
            Wait::No => self.local.try_lock(generation),
            Wait::Forever => self.local.lock(generation, None),
            Wait::Until(deadline) => self.local.lock(generation, Some(deadline)),
        };
        if !got_local {
            let (errno, kind) = match wait {
                Wait::No => (libc::EAGAIN, ErrorKind::WouldBlock),
                _ => (libc::ETIMEDOUT, ErrorKind::TimedOut),
            };
            let target = self.pair.sems.target();
            return Err(LockError::Failed(Error::os(call, target, errno, kind)));
        }
        if !self.local.sem_held() {
            let taken = match semaphore::try_acquire(&self.pair, call) {
                Ok(true) => Ok(()),
                Ok(false) => semaphore::acquire_contended(&self.pair, wait, call),
                Err(e) => Err(e),
            };
            if let Err(e) = taken {
                self.local.unlock();
                return Err(LockError::Failed(e));
            }
            self.local.set_sem_taken();
        }
        self.enter(me, generation, true)
    }

    /// Inside, with the semaphore taken: the holder/poison protocol, then the guard.
    fn enter(&self, me: u32, generation: u32, local: bool) -> LockResult<SharedMutexGuard<'_, T>> {
        let poisoned_by = self.pair.live().enter_exclusive(me);
        let guard = SharedMutexGuard {
            mutex: self,
            token: me,
            generation,
            panicking: std::thread::panicking(),
            local,
            _not_send: PhantomData,
        };
        self.pair.guard_or_poisoned(guard, poisoned_by)
    }

    /// Is the mutex poisoned: did a holder panic or die inside the critical section? Also
    /// true when the holder recorded in the header has died (in whatever PID namespace,
    /// whatever became of its threads), before anyone has locked since: the kernel says so
    /// (its lease is gone), not a pid. Agrees with what the next `lock` would report.
    pub fn is_poisoned(&self) -> bool {
        self.pair.is_poisoned()
    }

    /// Clears the poison flag: call it once the data has been checked or repaired
    /// (typically while holding the guard from [`PoisonError::into_inner`]).
    pub fn clear_poison(&self) {
        self.pair.live().clear_poison();
    }

    /// Removes the segment and the semaphore set. Processes waiting in `lock` wake with
    /// `Removed`; later opens are `NotFound`; handles stay attached (and guards drop
    /// quietly) until dropped.
    ///
    /// # Errors
    /// `Removed` if already removed, `PermissionDenied` for a process that is neither the
    /// owner nor the creator. Both objects are attempted even if the first fails.
    pub fn remove(&self) -> Result<()> {
        self.pair.remove()
    }

    crate::managed::view::pair_accessors!("SharedMutex");

    /// The raw semaphore set, for inspection (`value(0)` is 1 when the lock is free).
    /// Operating on it directly bypasses the lock's bookkeeping.
    pub fn semaphores(&self) -> &SemaphoreSet {
        &self.pair.sems
    }
}

impl<T: Pod> Options<SharedMutex<T>> {
    /// Creates a new mutex holding `value` (see [`SharedMutex::create`]).
    pub fn create(self, key: Key, value: T) -> Result<SharedMutex<T>> {
        let new = Blueprint::of(ObjectKind::Mutex, &value, &[1]);
        Pair::create("SharedMutex::create", key, &self.params, new).map(SharedMutex::from_pair)
    }

    /// Opens an existing mutex (see [`SharedMutex::open`]).
    pub fn open(self, key: Key) -> Result<SharedMutex<T>> {
        let layout = Layout::of::<T>(ObjectKind::Mutex);
        Pair::open("SharedMutex::open", key, &layout, &self.params).map(SharedMutex::from_pair)
    }

    /// Opens or creates (see [`SharedMutex::open_or_create`]).
    pub fn open_or_create(self, key: Key, value: T) -> Result<SharedMutex<T>> {
        let new = Blueprint::of(ObjectKind::Mutex, &value, &[1]);
        Pair::open_or_create("SharedMutex::open_or_create", key, &self.params, new)
            .map(SharedMutex::from_pair)
    }
}

impl<T> fmt::Debug for SharedMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pair.debug(f, "SharedMutex").finish_non_exhaustive()
    }
}

/// The lock is held while this lives; dropping it unlocks. Derefs to the `T`.
///
/// The guard remembers the process that took it: a copy inherited by a forked child does
/// not unlock when the child drops it (the parent still holds the lock).
#[must_use = "if unused the SharedMutex will immediately unlock"]
pub struct SharedMutexGuard<'a, T: Pod> {
    mutex: &'a SharedMutex<T>,
    /// The lease token recorded as holder.
    token: u32,
    /// The fork generation of the process that took it (`pid.rs`).
    generation: u32,
    /// Was the thread already unwinding when it locked? Then a panic seen at unlock is
    /// not one of the critical section's (as std's poison flag decides).
    panicking: bool,
    /// Taken through the local lock (which this guard then also releases).
    local: bool,
    /// Not Send, like `std::sync::MutexGuard`.
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> SharedMutexGuard<'a, T> {
    /// The mutex, if this process took the guard (not a copy inherited through fork):
    /// what a condvar wait re-locks after dropping the guard.
    pub(crate) fn owned_mutex(&self) -> Option<&'a SharedMutex<T>> {
        (self.generation == process::generation()).then_some(self.mutex)
    }
}

// SAFETY: &SharedMutexGuard only gives &T, so sharing it between threads is sharing &T,
// which T: Sync allows (as for std's MutexGuard).
unsafe impl<T: Pod + Sync> Sync for SharedMutexGuard<'_, T> {}

impl<T: Pod> Deref for SharedMutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the payload lies inside the attached segment (validated), is aligned for
        // T (payload offset is a multiple of align_of::<T>() and the segment is
        // page-aligned), any bytes are a valid T (Pod), and the lock is held, so no other
        // cooperating thread or process writes it while this borrow lives.
        unsafe { &*self.mutex.pair.payload().cast::<T>() }
    }
}

impl<T: Pod> DerefMut for SharedMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; the lock is held, so this is the only access.
        unsafe { &mut *self.mutex.pair.payload().cast::<T>() }
    }
}

impl<T: Pod> Drop for SharedMutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.generation != process::generation() {
            // A copy inherited through fork: the lock belongs to the parent.
            return;
        }
        let mutex = self.mutex;
        let panicked = !self.panicking && std::thread::panicking();
        mutex.pair.live().leave_exclusive(self.token, panicked);
        // A sibling thread that waits gets the lock without the semaphore going back and
        // forth (bounded: see local.rs); otherwise the semaphore goes back. Errors are
        // ignored: Drop must not panic, and the only likely one is Removed, after which
        // there is nothing to give back.
        if !self.local {
            let _ = semaphore::release(&mutex.pair);
        } else {
            if !mutex.local.keep_for_sibling() {
                let _ = semaphore::release(&mutex.pair);
            }
            mutex.local.unlock();
        }
    }
}

crate::managed::view::deref_fmt!(SharedMutexGuard, Debug, Display);

/// A `SharedMutex` error converts into an `Error` through `?` (dropping any guard).
impl<T: Pod> From<PoisonError<SharedMutexGuard<'_, T>>> for Error {
    fn from(p: PoisonError<SharedMutexGuard<'_, T>>) -> Error {
        LockError::Poisoned(p).into()
    }
}
