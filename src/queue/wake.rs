//! Sleeping and waking (docs/FORMAT.md, "Wait for data", "Unregister"): a side that
//! cannot go on spins a bounded while, registers in its waiter counter, *passes through
//! the waking side's lock word* (waits until nobody holds it, then compare-and-swaps it
//! from 0 to 0), re-checks, and only then sleeps on its semaphore; the other side, still
//! holding that lock word after it moved `tail` or `head`, reads the counter, and turns
//! registrations into posts after it lets go. No `SEM_UNDO`: these are signals, not
//! locks.
//!
//! Why through the other side's lock word: the alternative, a Dekker pattern (the waker
//! stores `tail` SeqCst, then loads the counter), costs every send and every receive a
//! full fence (`xchg`), whether or not anyone sleeps; measured with `queue_compare`, 64 B
//! messages, that fence was a fifth of the queue's time. The lock word is taken anyway
//! by every send (receive), so ordering the rare registration against it costs the
//! common path nothing. Passing through rather than holding it: a sleeper that stops
//! (SIGSTOP) or is preempted while registering holds nobody up, and one waiting for a
//! holder to let go still sees a close or the data it waits for.
//!
//! The spin before sleeping paces itself per handle and direction (`pace.rs`): how soon
//! it first looks, and how long it spins.
//!
//! Wake invariants (cited as "Wake invariant N"):
//!
//! 1. No lost wake-up: a sleeper registers, then passes through the other side's lock
//!    word (an AcqRel read-modify-write while nobody holds it), then re-checks; a waker
//!    moves `tail`/`head` and reads the counter inside one hold of the same word. The
//!    pass comes either after the hold (its Acquire sees the hold's release, so the
//!    re-check sees the move) or before it (the holder's Acquire sees the pass's
//!    Release, so the read sees the registration: the waker posts). The state is not
//!    guarded so (a close does not take the consumers' word): a close's SeqCst state
//!    change before its SeqCst swap of the counters, and a registration's SeqCst
//!    read-modify-write before its SeqCst re-check, order those.
//! 2. Each post answers one registration taken off the counter, so a semaphore's value
//!    stays at most the number of registrations (and below `SEMVMX`).
//! 3. A wake-up is a reason to look, never a promise: every woken side re-checks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::Queue;
use crate::error::{ErrorKind, Result};
use crate::managed::wait::{SpinBackoff, Wait};

/// Semaphore 0: consumers sleep on it, producers post it when they publish.
pub(super) const DATA: u16 = 0;
/// Semaphore 1: producers sleep on it, consumers post it when they free space.
pub(super) const SPACE: u16 = 1;

/// The most a side that cannot go on spins before it sleeps, unless told otherwise (how
/// long it does spin adapts: `pace.rs`).
pub(super) const DEFAULT_SPIN: Duration = Duration::from_millis(4);
/// How long a waiter that gives up waits for the post it was promised (see `unregister`).
pub(super) const TOKEN_GRACE: Duration = Duration::from_millis(100);
/// A sleeper looks again at least this often even if nobody posts. Only needed when a
/// process died between taking a registration off a counter and posting (a window of a
/// few instructions): its post never comes, and without the second look the sleeper would
/// sleep until the next close. Not a polling interval of the normal path.
pub(super) const RECHECK_EVERY: Duration = Duration::from_secs(5);
impl Queue {
    /// Waits until `ready()` may hold: spins a bounded while, then registers in `waiting`
    /// and sleeps on semaphore `sem` until the other side converts the registration into a
    /// post. Returns `Ok` when woken, when `ready()` held, or when the deadline passed
    /// (the caller looks once more, then reports the timeout).
    ///
    /// No lost wake-ups (Wake invariant 1): between the registration and the re-check of
    /// `ready()` this process passes through `guard`, the lock word of the side that
    /// wakes it (the producers' for a consumer, the consumers' for a producer); that side
    /// reads the counter under the same word after its move.
    pub(super) fn sleep_until(
        &self,
        waiting: &AtomicU32,
        guard: &AtomicU32,
        sem: u16,
        ready: impl Fn(bool) -> bool,
        deadline: Option<Instant>,
        call: &'static str,
    ) -> Result<()> {
        let limit = self.spin_limit();
        let pace = &self.pace[usize::from(sem)].0;
        // The spin's length, if it ran out whole (not cut short by the deadline).
        let mut spun_out = None;
        if !limit.is_zero() {
            let plan @ (first, spin) = pace.plan(limit);
            let start = Instant::now();
            let spin_end = start.checked_add(spin).unwrap_or(start);
            let until = deadline.map_or(spin_end, |d| d.min(spin_end));
            let mut backoff = SpinBackoff::starting_at(first);
            let (mut looks, mut now) = (0, start);
            loop {
                if ready(true) {
                    pace.ended_spinning(plan, looks, now - start, limit);
                    return Ok(());
                }
                now = Instant::now();
                if now >= until {
                    break;
                }
                backoff.pause();
                looks += 1;
            }
            pace.spun_out();
            spun_out = (until == spin_end).then_some(spin);
        }
        let slept_at = Instant::now();
        let woken = self.sleep(waiting, guard, sem, ready, deadline, call);
        if let Some(spin) = spun_out {
            pace.ended_sleeping(spin, slept_at.elapsed(), limit);
        }
        woken
    }

    /// The sleeping half of [`sleep_until`](Queue::sleep_until), after the spin.
    fn sleep(
        &self,
        waiting: &AtomicU32,
        guard: &AtomicU32,
        sem: u16,
        ready: impl Fn(bool) -> bool,
        deadline: Option<Instant>,
        call: &'static str,
    ) -> Result<()> {
        // Register, then pass through the waking side's lock word (Wake invariant 1):
        // every hold of it before the pass is seen by the re-check below, every hold
        // after sees the registration. While waiting for a holder to let go, look at
        // `ready()` too: a close (the state), or what the holder was doing, may already be
        // what we wait for.
        waiting.fetch_add(1, Ordering::SeqCst);
        let wait = deadline.map_or(Wait::Forever, Wait::Until);
        match self.pass(guard, wait, call, || ready(false)) {
            Ok(true) if !ready(false) => {}
            Ok(_) => return self.unregister(waiting, sem, call),
            // The deadline passed while another process held the word: the caller looks
            // once more and reports the timeout.
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                return self.unregister(waiting, sem, call);
            }
            Err(e) => {
                let _ = self.unregister(waiting, sem, call);
                return Err(e);
            }
        }
        let mut op = [libc::sembuf {
            sem_num: sem,
            sem_op: -1,
            sem_flg: 0,
        }];
        let recheck = Instant::now() + RECHECK_EVERY;
        let until = deadline.map_or(recheck, |d| d.min(recheck));
        match self.pair.sems.semtimedop(&mut op, until, call) {
            // Woken: the waker took our registration off the counter.
            Ok(()) => Ok(()),
            // The caller's deadline, or time for a second look: the caller tries again.
            Err(e) if e.kind() == ErrorKind::TimedOut => self.unregister(waiting, sem, call),
            Err(e) => Err(e),
        }
    }

    /// Takes back a registration that did not sleep (or stopped sleeping). If the counter
    /// is already 0, a waker has converted every registration, ours included, into a
    /// post: take that token, so that it does not wake someone later for nothing. The
    /// wait for it is bounded: a waker killed between its decrement and its post never
    /// posts (the token, if it comes late, is one spurious wake-up, which every waiter
    /// tolerates: it re-checks and sleeps again).
    pub(super) fn unregister(
        &self,
        waiting: &AtomicU32,
        sem: u16,
        call: &'static str,
    ) -> Result<()> {
        let mut n = waiting.load(Ordering::SeqCst);
        loop {
            if n == 0 {
                let mut op = [libc::sembuf {
                    sem_num: sem,
                    sem_op: -1,
                    sem_flg: 0,
                }];
                let grace = Instant::now() + TOKEN_GRACE;
                return match self.pair.sems.semtimedop(&mut op, grace, call) {
                    Err(e) if e.kind() != ErrorKind::TimedOut => Err(e),
                    _ => Ok(()),
                };
            }
            match waiting.compare_exchange_weak(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(now) => n = now,
            }
        }
    }

    /// After a publish that saw registrations (`waiting` read under the producers' lock
    /// word, Wake invariant 1): convert one registration into one post (one message serves
    /// one consumer). Errors are ignored: the message has been sent already, and the only
    /// likely one is `Removed`, which the sleepers learn themselves.
    pub(super) fn wake_one(&self, waiting: &AtomicU32, sem: u16, call: &'static str) {
        let mut n = waiting.load(Ordering::SeqCst);
        while n != 0 {
            match waiting.compare_exchange_weak(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    let _ = self.post(sem, 1, call);
                    return;
                }
                Err(now) => n = now,
            }
        }
    }

    /// Converts every registration into a post (one `semop` adding the count): when a
    /// consumer that saw registrations (under its lock word) has freed room, and on close.
    pub(super) fn wake_all(&self, waiting: &AtomicU32, sem: u16, call: &'static str) -> Result<()> {
        let n = waiting.swap(0, Ordering::SeqCst);
        // Wake invariant 2: each registration is one sleeping process (or thread); a semaphore cannot count
        // past SEMVMX, and neither can a real count of sleepers on it.
        match i16::try_from(n) {
            Ok(0) => Ok(()),
            Ok(n) => self.post(sem, n, call),
            Err(_) => Err(self.corrupt(call, format_args!("{n} waiters registered"))),
        }
    }

    pub(super) fn post(&self, sem: u16, n: i16, call: &'static str) -> Result<()> {
        let mut op = [libc::sembuf {
            sem_num: sem,
            sem_op: n,
            sem_flg: 0,
        }];
        self.pair.sems.semop(&mut op, call)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::managed::wait::FIRST_GAP;
    use crate::raw::key::Key;

    /// Removes the queue when the test ends, passed or panicked.
    struct Removed(Queue);

    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }

    /// `sleep_until` feeds its pace (`pace.rs` tests the rules themselves).
    #[test]
    fn a_wait_reports_how_it_ended_to_its_direction_s_pace() {
        let q = Removed(Queue::create(Key::PRIVATE, 4096).unwrap());
        let q = &q.0;
        let limit = Duration::from_millis(1);
        q.set_spin_limit(limit);
        let ctl = q.ctl();
        let (waiting, guard) = (&ctl.waiting_consumers.0, &ctl.producer_lock.0);
        let plan = |sem: u16| q.pace[usize::from(sem)].0.plan(limit);
        // Ready at the first look: a stream; the first gap doubles.
        let (first, _) = plan(DATA);
        q.sleep_until(waiting, guard, DATA, |_| true, None, "test")
            .unwrap();
        assert_eq!(plan(DATA).0, first * 2);
        // Never ready: the whole 1 ms spin, then a sleep until the deadline 50 ms after
        // the start (far past the grace, even on a loaded machine that preempts this
        // thread for a while): the next spin is half as long.
        let deadline = Instant::now() + Duration::from_millis(50);
        let looks = Cell::new(0);
        let never = |_| {
            looks.set(looks.get() + 1);
            false
        };
        q.sleep_until(waiting, guard, DATA, never, Some(deadline), "test")
            .unwrap();
        assert!(Instant::now() >= deadline);
        assert!(looks.get() > 1, "it spun");
        assert_eq!(plan(DATA), (FIRST_GAP, limit / 2));
        assert_eq!(
            ctl.waiting_consumers.0.load(Ordering::SeqCst),
            0,
            "unregistered"
        );
        // The sending direction has a pace of its own.
        assert_eq!(plan(SPACE), (FIRST_GAP, limit));
    }
}
