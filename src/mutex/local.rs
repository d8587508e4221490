//! The in-process side of a `SharedMutex`: threads of one process queue on a local lock
//! (a futex word in this process's memory), so only one of them at a time deals with the
//! semaphore, and the lock can pass from thread to thread without a system call.
//!
//! The local lock also records whether this process currently holds the semaphore. A
//! thread that unlocks while siblings wait keeps the semaphore and hands the lock on
//! (a bounded number of times in a row, so other processes are not starved); otherwise
//! it gives the semaphore back.
//!
//! The local lock's word (Drepper's futex mutex, "Futexes are tricky", mutex 2):
//!
//! | state | meaning | lock | unlock |
//! |-------|---------|------|--------|
//! | `FREE` | nobody holds it | CAS to `LOCKED` (fast path) | - |
//! | `LOCKED` | held, nobody sleeps | spin; then swap to `CONTENDED`, sleep | swap to `FREE` |
//! | `CONTENDED` | held, a thread may sleep | swap to `CONTENDED`, sleep while not `FREE` | swap to `FREE`, wake one |
//!
//! Beside it, under the lock: `sem_held` (this process holds the semaphore) and
//! `handoffs` (consecutive hand-offs without giving it back, at most `MAX_HANDOFFS`).
//!
//! Fork: a child inherits this memory as it was, perhaps locked by a thread that does
//! not exist in the child, and with "semaphore held" set although the child holds
//! nothing (`SEM_UNDO` adjustments are not inherited). So the state carries the fork
//! generation (`pid.rs`) of the process it belongs to, and the first use in another
//! process resets it. A reset that was under way in the parent at the fork (its thread
//! does not exist in the child) is recognised by its generation and taken over.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot_core::SpinWait;

use crate::raw::sys;

const FREE: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and a thread may be sleeping on the word.
const CONTENDED: u32 = 2;

/// Set in the epoch word (beside the resetter's generation) while a thread resets the
/// state.
const RESETTING: u64 = 1 << 32;

/// How many times in a row the lock may pass between threads of this process while
/// holding the semaphore, before it is given back so other processes get a turn.
pub(crate) const MAX_HANDOFFS: u32 = 64;

pub(crate) struct LocalLock {
    state: AtomicU32,
    /// The fork generation this state belongs to (0: never used), with `RESETTING` while
    /// a thread of that generation resets it.
    epoch: AtomicU64,
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
            epoch: AtomicU64::new(0),
            sem_held: AtomicBool::new(false),
            handoffs: AtomicU32::new(0),
            committed_waiters: AtomicU32::new(0),
        }
    }

    /// Makes sure the state belongs to the process of generation `me`: after a fork, the
    /// first caller resets it (while its siblings wait for that), so nothing inherited
    /// counts.
    #[inline]
    fn enter_epoch(&self, me: u32) {
        if self.epoch.load(Ordering::Acquire) != u64::from(me) {
            self.reset_for(me);
        }
    }

    #[cold]
    fn reset_for(&self, me: u32) {
        let mut spin = SpinWait::new();
        let mine = u64::from(me);
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch == mine {
                return;
            }
            // A reset by a sibling thread: wait for it. A reset marked with another
            // generation was under way in an ancestor when it forked: nobody here will
            // finish it, so it is taken over like any stale state.
            let sibling_resetting = epoch == RESETTING | mine;
            if !sibling_resetting
                && self
                    .epoch
                    .compare_exchange(epoch, RESETTING | mine, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                self.sem_held.store(false, Ordering::Relaxed);
                self.handoffs.store(0, Ordering::Relaxed);
                self.committed_waiters.store(0, Ordering::Relaxed);
                self.state.store(FREE, Ordering::Release);
                self.epoch.store(mine, Ordering::Release);
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
    pub(crate) fn try_lock(&self, me: u32) -> bool {
        self.enter_epoch(me);
        self.state
            .compare_exchange(FREE, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Takes the local lock, waiting until `deadline` if there is one. False on timeout.
    #[inline]
    pub(crate) fn lock(&self, me: u32, deadline: Option<Instant>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A child forked while a thread of its parent was inside `reset_for` inherits the
    /// epoch word marked "resetting" with the parent's generation: its first lock must
    /// take the reset over, not wait for a thread that does not exist in it.
    #[test]
    fn a_reset_left_half_done_by_an_ancestor_is_taken_over() {
        let l = LocalLock::new();
        l.epoch.store(RESETTING | 7, Ordering::Relaxed);
        l.state.store(LOCKED, Ordering::Relaxed);
        l.sem_held.store(true, Ordering::Relaxed);
        assert!(
            l.try_lock(8),
            "the stale half-reset blocked the new generation"
        );
        assert!(!l.sem_held());
        l.unlock();
        // The same generation's own state is kept as it is.
        assert!(l.try_lock(8));
        assert!(!l.try_lock(8));
        l.unlock();
    }
}
