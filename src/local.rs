//! The in-process side of a `SharedMutex`: threads of one process queue on a local lock
//! (a futex word in this process's memory), so only one of them at a time deals with the
//! semaphore, and the lock can pass from thread to thread without a system call.
//!
//! The local lock also records whether this process currently holds the semaphore. A
//! thread that unlocks while siblings wait keeps the semaphore and hands the lock on
//! (a bounded number of times in a row, so other processes are not starved); otherwise
//! it gives the semaphore back.
//!
//! Fork: a child inherits this memory as it was, perhaps locked by a thread that does
//! not exist in the child, and with "semaphore held" set although the child holds
//! nothing (`SEM_UNDO` adjustments are not inherited). So the state carries the pid it
//! belongs to, and the first use in another process resets it.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::time::Instant;

use parking_lot_core::SpinWait;

use crate::sys;

const FREE: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and a thread may be sleeping on the word.
const CONTENDED: u32 = 2;

/// An epoch value meaning "being reset by some thread right now".
const RESETTING: i32 = -1;

/// How many times in a row the lock may pass between threads of this process while
/// holding the semaphore, before it is given back so other processes get a turn.
pub(crate) const MAX_HANDOFFS: u32 = 64;

pub(crate) struct LocalLock {
    state: AtomicU32,
    /// The pid this state belongs to (0: never used).
    epoch: AtomicI32,
    /// Does this process hold the semaphore? Read and written only under the lock.
    sem_held: AtomicBool,
    /// Consecutive hand-offs without giving the semaphore back. Under the lock.
    handoffs: AtomicU32,
    /// Threads waiting in `lock` without a deadline. Each of them will certainly take the
    /// local lock in the end, so a semaphore kept for them is never stranded (a waiter
    /// with a deadline might give up, so it does not count).
    committed_waiters: AtomicU32,
}

impl LocalLock {
    pub(crate) const fn new() -> Self {
        LocalLock {
            state: AtomicU32::new(FREE),
            epoch: AtomicI32::new(0),
            sem_held: AtomicBool::new(false),
            handoffs: AtomicU32::new(0),
            committed_waiters: AtomicU32::new(0),
        }
    }

    /// Makes sure the state belongs to process `me`: after a fork, the first caller
    /// resets it (while others wait for that), so nothing inherited counts.
    #[inline]
    fn enter_epoch(&self, me: i32) {
        if self.epoch.load(Ordering::Acquire) != me {
            self.reset_for(me);
        }
    }

    #[cold]
    fn reset_for(&self, me: i32) {
        let mut spin = SpinWait::new();
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch == me {
                return;
            }
            if epoch != RESETTING
                && self
                    .epoch
                    .compare_exchange(epoch, RESETTING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.sem_held.store(false, Ordering::Relaxed);
                self.handoffs.store(0, Ordering::Relaxed);
                self.committed_waiters.store(0, Ordering::Relaxed);
                self.state.store(FREE, Ordering::Release);
                self.epoch.store(me, Ordering::Release);
                // Nobody can sleep on the word yet: sleepers first pass enter_epoch.
                return;
            }
            if !spin.spin() {
                spin.reset();
            }
        }
    }

    /// Takes the local lock without waiting.
    #[inline]
    pub(crate) fn try_lock(&self, me: i32) -> bool {
        self.enter_epoch(me);
        self.state
            .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the local lock, waiting until `deadline` if there is one. False on timeout.
    #[inline]
    pub(crate) fn lock(&self, me: i32, deadline: Option<Instant>) -> bool {
        if self.try_lock(me) {
            return true;
        }
        self.lock_slow(deadline)
    }

    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> bool {
        let committed = deadline.is_none();
        if committed {
            self.committed_waiters.fetch_add(1, Ordering::Relaxed);
        }
        let got = self.wait_for_lock(deadline);
        if committed {
            self.committed_waiters.fetch_sub(1, Ordering::Relaxed);
        }
        got
    }

    fn wait_for_lock(&self, deadline: Option<Instant>) -> bool {
        // A sibling's critical section is usually short: spin a little first.
        let mut spin = SpinWait::new();
        while spin.spin() {
            if self.state.load(Ordering::Relaxed) == FREE
                && self
                    .state
                    .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        // Drepper's mutex: mark it contended, sleep while it stays taken.
        while self.state.swap(CONTENDED, Ordering::Acquire) != FREE {
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    Some(sys::timespec(d - now))
                }
                None => None,
            };
            futex_wait(&self.state, CONTENDED, timeout.as_ref());
        }
        true
    }

    /// Releases the local lock, waking one sleeper if there may be one.
    #[inline]
    pub(crate) fn unlock(&self) {
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            futex_wake(&self.state);
        }
    }

    /// Are other threads waiting for the local lock that will certainly take it?
    #[inline]
    fn has_committed_waiters(&self) -> bool {
        self.committed_waiters.load(Ordering::Relaxed) > 0
    }

    /// Does this process hold the semaphore? (Under the local lock.)
    #[inline]
    pub(crate) fn sem_held(&self) -> bool {
        self.sem_held.load(Ordering::Relaxed)
    }

    /// Records that this process took the semaphore. (Under the local lock.)
    #[inline]
    pub(crate) fn set_sem_taken(&self) {
        self.sem_held.store(true, Ordering::Relaxed);
        self.handoffs.store(0, Ordering::Relaxed);
    }

    /// Decides, at unlock, whether to keep the semaphore for a waiting sibling. Returns
    /// true if the semaphore stays with this process. (Under the local lock.)
    #[inline]
    pub(crate) fn keep_for_sibling(&self) -> bool {
        let handoffs = self.handoffs.load(Ordering::Relaxed);
        if handoffs < MAX_HANDOFFS && self.has_committed_waiters() {
            self.handoffs.store(handoffs + 1, Ordering::Relaxed);
            true
        } else {
            self.sem_held.store(false, Ordering::Relaxed);
            self.handoffs.store(0, Ordering::Relaxed);
            false
        }
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<&libc::timespec>) {
    let ts = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT_PRIVATE on a live, aligned u32 of this process; the timeout, if
    // any, is a valid relative timespec that outlives the call. EINTR, EAGAIN and
    // ETIMEDOUT all just send the caller back to re-check the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE_PRIVATE on a live, aligned u32 of this process; wakes at most one.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}
