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
//! The spin before sleeping paces itself per handle and direction: its first look comes
//! after a gap that doubles (to `MAX_GAP`, 1 µs) while waits keep ending at that first
//! look, and drops back to `FIRST_GAP` (50 ns) when one takes longer. In a stream the
//! receiver that catches up would otherwise chase the sender record by record, each look
//! pulling `tail`, and the line the sender is writing the next record into, away from
//! it; measured with `queue_compare` (64 B, 11 runs each), that lock-step cost a tenth
//! to a half of the throughput. A ping-pong's waits last a round trip, many looks, so
//! its first looks stay 50 ns apart and its latency is untouched (`queue_latency`).
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
use crate::managed::wait::{FIRST_GAP, MAX_GAP, SpinBackoff, Wait};

/// Semaphore 0: consumers sleep on it, producers post it when they publish.
pub(super) const DATA: u16 = 0;
/// Semaphore 1: producers sleep on it, consumers post it when they free space.
pub(super) const SPACE: u16 = 1;

/// How long a side that cannot go on spins before it sleeps, unless told otherwise.
/// Long enough that a ping-pong on a busy machine rarely sleeps (measured with
/// `queue_latency`: 50 µs left the busy median at 13 µs, 500 µs brings it to 0.5 µs).
pub(super) const DEFAULT_SPIN: Duration = Duration::from_micros(500);
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
        let spin = self.spin_limit();
        if !spin.is_zero() {
            let start = Instant::now();
            let until = start.checked_add(spin).unwrap_or(start);
            let until = deadline.map_or(until, |d| d.min(until));
            let pace = &self.first_gap[usize::from(sem)].0;
            let first = Duration::from_nanos(pace.load(Ordering::Relaxed));
            let mut backoff = SpinBackoff::starting_at(first);
            let mut looks = 0;
            loop {
                if ready(true) {
                    // Ended by the first look after a gap (or before it): a stream, where
                    // looking sooner only chases the other side record by record. Leave
                    // the next wait's first gap longer; otherwise start short again.
                    let next = match looks {
                        0 | 1 => (first * 2).min(MAX_GAP),
                        _ => FIRST_GAP,
                    };
                    pace.store(next.as_nanos() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                if Instant::now() >= until {
                    break;
                }
                backoff.pause();
                looks += 1;
            }
            pace.store(FIRST_GAP.as_nanos() as u64, Ordering::Relaxed);
        }
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
    use crate::raw::key::Key;

    /// Removes the queue when the test ends, passed or panicked.
    struct Removed(Queue);

    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }

    #[test]
    fn the_first_gap_grows_while_waits_end_at_the_first_look_and_resets_after_a_longer_one() {
        let q = Removed(Queue::create(Key::PRIVATE, 4096).unwrap());
        let q = &q.0;
        let ctl = q.ctl();
        let (waiting, guard) = (&ctl.waiting_consumers.0, &ctl.producer_lock.0);
        let first_gap = || q.first_gap[usize::from(DATA)].0.load(Ordering::Relaxed);
        let wait_for = |looks_needed: u32| {
            let looks = Cell::new(0);
            let ready = |_| {
                looks.set(looks.get() + 1);
                looks.get() >= looks_needed
            };
            q.sleep_until(waiting, guard, DATA, ready, None, "test")
                .unwrap();
        };
        assert_eq!(first_gap(), 50);
        // Ready at once, then at the first look after the gap: a stream.
        wait_for(1);
        assert_eq!(first_gap(), 100);
        wait_for(2);
        assert_eq!(first_gap(), 200);
        for _ in 0..5 {
            wait_for(1);
        }
        assert_eq!(first_gap(), MAX_GAP.as_nanos() as u64, "capped");
        // The sending direction has a pace of its own.
        assert_eq!(
            q.first_gap[usize::from(SPACE)].0.load(Ordering::Relaxed),
            50
        );
        // Ready only at the second look: a ping-pong, start short again.
        wait_for(3);
        assert_eq!(first_gap(), FIRST_GAP.as_nanos() as u64);
        // A spin that ends without what it waited for (a deadline) starts short too.
        wait_for(1);
        let deadline = Some(Instant::now());
        let never = |_| false;
        q.sleep_until(waiting, guard, DATA, never, deadline, "test")
            .unwrap();
        assert_eq!(first_gap(), FIRST_GAP.as_nanos() as u64);
    }
}
