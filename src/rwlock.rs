//! [`SharedRwLock<T>`]: many readers or one writer over a `T` in shared memory, where
//! every acquisition is one atomic `semop` over the lock's three semaphores.
//!
//! System V semaphores can apply several operations atomically ("wait until these are
//! zero, then add to that"), which a futex cannot. The set:
//!
//! | index | name | value |
//! |---|---|---|
//! | 0 | `WRITER` | 1 while a writer is inside, else 0 |
//! | 1 | `READERS` | number of readers inside |
//! | 2 | `QUEUED` | number of writers waiting to get in |
//!
//! - read: `{WRITER == 0, QUEUED == 0, READERS += 1 (undo)}`: one semop.
//! - write: `{QUEUED += 1 (undo)}` (announce), then
//!   `{WRITER == 0, READERS == 0, WRITER += 1 (undo), QUEUED -= 1 (undo)}`.
//! - unlock: `{READERS -= 1 (undo)}` or `{WRITER -= 1 (undo)}`.
//!
//! A queued writer stops new readers (writer preference), so a stream of readers cannot
//! starve it. When a writer leaves, the kernel completes the waiting readers' operation
//! in the same `semop` that releases `WRITER`, before the writer can announce itself
//! again, so a writer re-locking in a loop does not starve readers either. Every
//! operation that changes a value carries `SEM_UNDO`: the kernel takes back whatever a
//! dead process held, reader or writer.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use bytemuck::Pod;
use parking_lot_core::SpinWait;

use crate::error::{Error, ErrorKind, Result};
use crate::managed::header::{Layout, ObjectKind};
use crate::managed::options::Options;
use crate::managed::pair::{Blueprint, Pair, SPIN_LIMIT};
use crate::managed::poison::LockResult;
use crate::managed::process;
use crate::managed::wait::{Patience, Wait, end_within};
use crate::raw::key::Key;
use crate::raw::sem::SemaphoreSet;

const WRITER: u16 = 0;
const READERS: u16 = 1;
const QUEUED: u16 = 2;
const NSEMS: usize = 3;

const UNDO: i16 = libc::SEM_UNDO as i16;
const NOWAIT: i16 = libc::IPC_NOWAIT as i16;

const fn op(sem_num: u16, sem_op: i16, sem_flg: i16) -> libc::sembuf {
    libc::sembuf {
        sem_num,
        sem_op,
        sem_flg,
    }
}

/// Reader in: no writer inside and none queued, then one more reader.
const READ_LOCK: [libc::sembuf; 3] = [op(WRITER, 0, 0), op(QUEUED, 0, 0), op(READERS, 1, UNDO)];
const READ_UNLOCK: [libc::sembuf; 1] = [op(READERS, -1, UNDO)];
/// Writer announces itself: from now on no new reader gets in.
const ANNOUNCE: [libc::sembuf; 1] = [op(QUEUED, 1, UNDO)];
const WITHDRAW: [libc::sembuf; 1] = [op(QUEUED, -1, UNDO)];
/// Announced writer in: nobody inside, then writer = 1 and no longer queued.
const WRITE_LOCK: [libc::sembuf; 4] = [
    op(WRITER, 0, 0),
    op(READERS, 0, 0),
    op(WRITER, 1, UNDO),
    op(QUEUED, -1, UNDO),
];
/// Writer in without queueing (try_write): nobody inside, then writer = 1.
const TRY_WRITE_LOCK: [libc::sembuf; 3] = [
    op(WRITER, 0, NOWAIT),
    op(READERS, 0, NOWAIT),
    op(WRITER, 1, UNDO | NOWAIT),
];
const WRITE_UNLOCK: [libc::sembuf; 1] = [op(WRITER, -1, UNDO)];

/// A reader-writer lock over a `T` in shared memory: any number of readers at once, or
/// one writer, across processes.
///
/// Constructors, options, header checks, removal and poisoning are those of
/// [`SharedMutex`](crate::SharedMutex). A writer that dies or panics inside poisons the
/// lock (readers and writers that come next get [`LockError::Poisoned`]); a reader that
/// dies does not (it cannot have changed the data).
///
/// Writers are preferred: once a writer waits, new readers wait behind it.
///
/// A handle opened with [`read_only`](Options::read_only) attaches the segment with
/// `SHM_RDONLY`: it can take read locks, and its write calls are `PermissionDenied`.
///
/// ```
/// use shmsem::{Key, SharedRwLock};
/// let config = SharedRwLock::create(Key::PRIVATE, [0u32; 4])?;
/// config.write().unwrap()[0] = 7;
/// let a = config.read().unwrap();
/// let b = config.read().unwrap();           // readers share
/// assert_eq!(a[0] + b[0], 14);
/// drop((a, b));
/// config.remove()?;
/// # Ok::<(), shmsem::Error>(())
/// ```
///
/// [`LockError::Poisoned`]: crate::LockError::Poisoned
pub struct SharedRwLock<T> {
    pair: Pair,
    read_only: bool,
    _value: PhantomData<T>,
}

// SAFETY: as for SharedMutex: the T is reached only through guards under the semaphores,
// which exclude threads as they exclude processes; moving T's bytes between threads
// needs T: Send, sharing &T between reader threads needs T: Sync.
unsafe impl<T: Pod + Send> Send for SharedRwLock<T> {}
// SAFETY: as above.
unsafe impl<T: Pod + Send + Sync> Sync for SharedRwLock<T> {}

impl<T: Pod> SharedRwLock<T> {
    crate::managed::options::constructors! {
        /// Creates a new lock holding `value` (exclusive, mode `0o600`); see
        /// [`SharedMutex::create`](crate::SharedMutex::create).
        create(value: T);
        /// Opens an existing lock; see [`SharedMutex::open`](crate::SharedMutex::open).
        open;
        /// Opens the lock, or creates it holding `value`; race-free.
        open_or_create;
        /// Options: mode for creation, the opener's wait bound, read-only attach.
        options;
    }

    fn from_pair(pair: Pair, read_only: bool) -> Self {
        SharedRwLock {
            pair,
            read_only,
            _value: PhantomData,
        }
    }

    /// Takes a shared (read) lock, waiting while a writer is inside or queued.
    ///
    /// # Errors
    /// [`LockError::Poisoned`] (with the guard) if a writer died or panicked inside;
    /// [`LockError::Failed`] with `Removed` if the lock is removed.
    ///
    /// [`LockError::Poisoned`]: crate::LockError::Poisoned
    /// [`LockError::Failed`]: crate::LockError::Failed
    pub fn read(&self) -> LockResult<SharedReadGuard<'_, T>> {
        self.read_with(Wait::Forever.into(), 0, "SharedRwLock::read")
    }

    /// Takes a read lock if that needs no waiting (`WouldBlock` otherwise).
    pub fn try_read(&self) -> LockResult<SharedReadGuard<'_, T>> {
        self.read_with(Wait::No.into(), NOWAIT, "SharedRwLock::try_read")
    }

    /// Takes a read lock, waiting at most `timeout` (`TimedOut`). The clock starts when
    /// the lock turns out to be busy: an uncontended call reads no clock.
    pub fn read_timeout(&self, timeout: Duration) -> LockResult<SharedReadGuard<'_, T>> {
        self.read_with(Patience::Within(timeout), 0, "SharedRwLock::read_timeout")
    }

    /// Takes a read lock, waiting until `deadline` at the latest (`TimedOut`): the form
    /// of [`read_timeout`](SharedRwLock::read_timeout) for waits that share a deadline.
    pub fn read_until(&self, deadline: Instant) -> LockResult<SharedReadGuard<'_, T>> {
        self.read_with(Wait::Until(deadline).into(), 0, "SharedRwLock::read_until")
    }

    fn read_with(
        &self,
        patience: Patience,
        flags: i16,
        call: &'static str,
    ) -> LockResult<SharedReadGuard<'_, T>> {
        if flags & NOWAIT != 0 {
            let mut ops = READ_LOCK;
            for o in &mut ops {
                o.sem_flg |= flags;
            }
            self.semop(ops, None, call)?;
        } else {
            self.acquire(READ_LOCK, patience, call)?;
        }
        let guard = SharedReadGuard {
            held: Held::new(self),
        };
        self.pair
            .guard_or_poisoned(guard, self.pair.live().observed_poison())
    }

    /// Takes the exclusive (write) lock: announces itself (no new readers get in), then
    /// waits until the readers inside have left.
    ///
    /// # Errors
    /// As [`read`](SharedRwLock::read); `PermissionDenied` on a read-only handle.
    pub fn write(&self) -> LockResult<SharedWriteGuard<'_, T>> {
        self.write_with(Wait::Forever.into(), "SharedRwLock::write")
    }

    /// Takes the write lock if that needs no waiting (`WouldBlock` otherwise).
    pub fn try_write(&self) -> LockResult<SharedWriteGuard<'_, T>> {
        let call = "SharedRwLock::try_write";
        self.check_writable(call)?;
        let me = self.pair.token(call)?;
        self.semop(TRY_WRITE_LOCK, None, call)?;
        self.enter_write(me)
    }

    /// Takes the write lock, waiting at most `timeout` (`TimedOut`; the writer is no
    /// longer queued then, and readers proceed). The clock starts when the lock turns out
    /// to be busy: an uncontended call reads no clock.
    pub fn write_timeout(&self, timeout: Duration) -> LockResult<SharedWriteGuard<'_, T>> {
        self.write_with(Patience::Within(timeout), "SharedRwLock::write_timeout")
    }

    /// Takes the write lock, waiting until `deadline` at the latest (as
    /// [`write_timeout`](SharedRwLock::write_timeout)).
    pub fn write_until(&self, deadline: Instant) -> LockResult<SharedWriteGuard<'_, T>> {
        self.write_with(Wait::Until(deadline).into(), "SharedRwLock::write_until")
    }

    fn write_with(
        &self,
        patience: Patience,
        call: &'static str,
    ) -> LockResult<SharedWriteGuard<'_, T>> {
        self.check_writable(call)?;
        let me = self.pair.token(call)?;
        self.semop(ANNOUNCE, None, call)?;
        if let Err(e) = self.acquire(WRITE_LOCK, patience, call) {
            // Timed out (or failed): stop holding readers back. If the set is gone this
            // fails too, and there is nothing left to withdraw from.
            let _ = self.semop(WITHDRAW, None, call);
            return Err(e.into());
        }
        self.enter_write(me)
    }

    /// Inside, with the write lock taken: the holder/poison protocol under token `me`.
    fn enter_write(&self, me: u32) -> LockResult<SharedWriteGuard<'_, T>> {
        let poisoned_by = self.pair.live().enter_exclusive(me);
        let guard = SharedWriteGuard {
            held: Held::new(self),
            token: me,
            panicking: std::thread::panicking(),
        };
        self.pair.guard_or_poisoned(guard, poisoned_by)
    }

    fn check_writable(&self, call: &'static str) -> Result<()> {
        if self.read_only {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                call,
                self.pair.sems.target(),
                "this handle is attached read-only (SHM_RDONLY): it can only read",
            ));
        }
        Ok(())
    }

    /// Applies a lock operation, waiting as `patience` allows (its clock starts after a
    /// first attempt found the lock busy). Before it
    /// sleeps in `semop` it spins a bounded while retrying the operation with
    /// `IPC_NOWAIT`, skipping the retry while a writer is recorded inside: the other side's
    /// critical sections are usually short, and a process that sleeps in `semop` gets the
    /// lock completed on its behalf by the kernel and must then be woken, while everyone
    /// else waits for it (the convoy `SharedMutex` avoids the same way).
    fn acquire<const N: usize>(
        &self,
        ops: [libc::sembuf; N],
        patience: Patience,
        call: &'static str,
    ) -> Result<()> {
        let mut attempt = ops;
        for o in &mut attempt {
            o.sem_flg |= NOWAIT;
        }
        // "Busy" is an answer here, not an error to build (try_semop).
        if self.pair.sems.try_semop(&mut attempt, call)? {
            return Ok(());
        }
        let deadline = patience.start().deadline();
        let holder = self.pair.live().holder;
        let spin_until = end_within(SPIN_LIMIT, deadline);
        let mut spin = SpinWait::new();
        while Instant::now() < spin_until {
            if !spin.spin() {
                spin.reset();
            }
            if holder.load(Ordering::Relaxed) == 0
                && self.pair.sems.try_semop(&mut attempt, call)?
            {
                return Ok(());
            }
        }
        self.semop(ops, deadline, call)
    }

    fn semop<const N: usize>(
        &self,
        mut ops: [libc::sembuf; N],
        deadline: Option<Instant>,
        call: &'static str,
    ) -> Result<()> {
        match deadline {
            Some(deadline) => self.pair.sems.semtimedop(&mut ops, deadline, call),
            None => self.pair.sems.semop(&mut ops, call),
        }
    }

    /// Is the lock poisoned: did a writer panic or die inside? (Also true when the writer
    /// recorded in the header no longer exists.)
    pub fn is_poisoned(&self) -> bool {
        self.pair.is_poisoned()
    }

    /// Clears the poison flag, once the data has been checked or repaired (typically
    /// while holding the write guard from [`PoisonError::into_inner`]). Does nothing on a
    /// read-only handle, which cannot write the header.
    ///
    /// [`PoisonError::into_inner`]: crate::PoisonError::into_inner
    pub fn clear_poison(&self) {
        if !self.read_only {
            self.pair.live().clear_poison();
        }
    }

    /// Was this handle attached read-only?
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Removes the segment and the semaphore set; see
    /// [`SharedMutex::remove`](crate::SharedMutex::remove).
    pub fn remove(&self) -> Result<()> {
        self.pair.remove()
    }

    crate::managed::view::pair_accessors!("SharedRwLock");

    /// The raw semaphore set, for inspection: `value(0)` is 1 while a writer is inside,
    /// `value(1)` the number of readers inside, `value(2)` the writers queued.
    pub fn semaphores(&self) -> &SemaphoreSet {
        &self.pair.sems
    }

    fn payload(&self) -> *mut T {
        self.pair.payload().cast::<T>()
    }
}

impl<T: Pod> Options<SharedRwLock<T>> {
    /// Attach the segment read-only (`SHM_RDONLY`) when opening: read locks only. Needs
    /// read permission on the segment (and alter permission on the semaphore set, which
    /// every lock operation changes). Ignored by `create`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.params.read_only = read_only;
        self
    }

    /// Creates a new lock holding `value` (always attached read-write).
    pub fn create(self, key: Key, value: T) -> Result<SharedRwLock<T>> {
        let new = Blueprint::of(ObjectKind::RwLock, &value, &[0; NSEMS]);
        Pair::create("SharedRwLock::create", key, &self.params, new)
            .map(|pair| SharedRwLock::from_pair(pair, false))
    }

    /// Opens an existing lock.
    pub fn open(self, key: Key) -> Result<SharedRwLock<T>> {
        let layout = Layout::of::<T>(ObjectKind::RwLock);
        Pair::open("SharedRwLock::open", key, &layout, &self.params)
            .map(|pair| SharedRwLock::from_pair(pair, self.params.read_only))
    }

    /// Opens the lock, or creates it holding `value`.
    pub fn open_or_create(self, key: Key, value: T) -> Result<SharedRwLock<T>> {
        let new = Blueprint::of(ObjectKind::RwLock, &value, &[0; NSEMS]);
        let read_only = self.params.read_only;
        Pair::open_or_create("SharedRwLock::open_or_create", key, &self.params, new)
            .map(|pair| SharedRwLock::from_pair(pair, read_only))
    }
}

impl<T> fmt::Debug for SharedRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pair
            .debug(f, "SharedRwLock")
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

/// What both guards hold: the lock, and the fork generation of the process that took it
/// (`process.rs`), so that a guard inherited through fork does not unlock the parent's
/// lock. Made only once a read lock or the write lock is taken. Neither `Send` nor
/// `Sync` (the raw pointer marker): the guards decide which they are.
struct Held<'a, T: Pod> {
    lock: &'a SharedRwLock<T>,
    generation: u32,
    _not_send: PhantomData<*const ()>,
}

impl<'a, T: Pod> Held<'a, T> {
    fn new(lock: &'a SharedRwLock<T>) -> Self {
        Held {
            lock,
            generation: process::generation(),
            _not_send: PhantomData,
        }
    }

    /// Taken by the parent of this forked process: dropping it must not unlock.
    fn inherited(&self) -> bool {
        self.generation != process::generation()
    }

    fn value(&self) -> &T {
        // SAFETY: the payload lies inside the attached segment (validated) and is aligned
        // for T (payload offset is a multiple of align_of::<T>(), the segment is page
        // aligned); any bytes are a valid T (Pod); a read or the write lock is held, so no
        // cooperating writer of another handle changes it while this borrow lives.
        unsafe { &*self.lock.payload() }
    }
}

/// A shared (read) lock is held while this lives. Derefs to `&T`.
#[must_use = "if unused the SharedRwLock will immediately unlock"]
pub struct SharedReadGuard<'a, T: Pod> {
    held: Held<'a, T>,
}

impl<T: Pod> Deref for SharedReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.held.value()
    }
}

impl<T: Pod> Drop for SharedReadGuard<'_, T> {
    fn drop(&mut self) {
        if self.held.inherited() {
            return; // inherited through fork: the read lock is the parent's
        }
        // Errors are ignored: Drop must not panic, and the likely one is Removed.
        let _ = self
            .held
            .lock
            .semop(READ_UNLOCK, None, "SharedRwLock unlock");
    }
}

// SAFETY: &SharedReadGuard gives only &T: sharing it is sharing &T, allowed by T: Sync.
unsafe impl<T: Pod + Sync> Sync for SharedReadGuard<'_, T> {}

/// The exclusive (write) lock is held while this lives. Derefs to `&mut T`.
#[must_use = "if unused the SharedRwLock will immediately unlock"]
pub struct SharedWriteGuard<'a, T: Pod> {
    held: Held<'a, T>,
    /// The lease token recorded as holder.
    token: u32,
    /// Already unwinding when it locked (a panic then is not the section's).
    panicking: bool,
}

impl<T: Pod> Deref for SharedWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.held.value()
    }
}

impl<T: Pod> DerefMut for SharedWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in Held::value; the write lock excludes every other reader and writer,
        // and this handle is not read-only (write guards are only made for writable ones);
        // `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.held.lock.payload() }
    }
}

impl<T: Pod> Drop for SharedWriteGuard<'_, T> {
    fn drop(&mut self) {
        if self.held.inherited() {
            return; // inherited through fork: the write lock is the parent's
        }
        let panicked = !self.panicking && std::thread::panicking();
        let lock = self.held.lock;
        lock.pair.live().leave_exclusive(self.token, panicked);
        let _ = lock.semop(WRITE_UNLOCK, None, "SharedRwLock unlock");
    }
}

// SAFETY: &SharedWriteGuard gives only &T: sharing it is sharing &T, allowed by T: Sync.
unsafe impl<T: Pod + Sync> Sync for SharedWriteGuard<'_, T> {}

crate::managed::view::deref_fmt!(SharedReadGuard, Debug, Display);
crate::managed::view::deref_fmt!(SharedWriteGuard, Debug, Display);
