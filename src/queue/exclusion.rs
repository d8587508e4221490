//! Exclusion among producers (and among consumers): a lock word in the control block
//! holding the lease token of the process copying a record (docs/FORMAT.md, "Send" step
//! 1), taken with a compare-and-swap and held only while copying.
//!
//! A waiter never decides from a pid whether the holder lives: it asks the kernel through
//! the holder's lease (`managed/lease.rs`, Lease invariant 2), so a holder in another PID
//! namespace, one whose main thread exited, or a stopped one is waited for, and a dead one
//! is taken over as soon as the kernel has released its lease.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot_core::SpinWait;

use super::Queue;
use crate::error::Result;
use crate::managed::lease::Holder;
use crate::managed::wait::{Patience, Wait, end_within};

/// How long a process waiting for a busy lock word spins (and yields) before it sleeps
/// in the kernel: a holder only copies one message, usually for less than this.
pub(super) const LOCK_SPIN: Duration = Duration::from_micros(100);
/// The first and the longest sleep of a lock-word waiter between two looks at the word.
/// The holder's death wakes it at once (it sleeps on the holder's lease); a normal
/// release does not, so the sleeps stay short, growing while the holder stays (a long
/// copy, or a stopped process).
pub(super) const LOCK_SLEEP_FIRST: Duration = Duration::from_micros(50);
pub(super) const LOCK_SLEEP_MAX: Duration = Duration::from_millis(5);

impl Queue {
    /// Takes a lock word (producers' or consumers'): compare-and-swap 0 -> our token.
    /// A busy word is waited for as `patience` allows (its clock starts only then).
    pub(super) fn lock<'a>(
        &self,
        word: &'a AtomicU32,
        patience: Patience,
        call: &'static str,
    ) -> Result<Held<'a>> {
        let me = self.pair.token(call)?;
        if word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(Held(word));
        }
        self.await_word(word, me, patience.start(), call, || false)?;
        Ok(Held(word))
    }

    /// Passes through a lock word without holding it (Wake invariant 1): waits until no
    /// process holds it, then compare-and-swaps it from 0 to 0 (AcqRel). The Acquire
    /// half sees everything the last holder did; the Release half, a read-modify-write
    /// continuing the word's release sequence, makes everything this process did before
    /// visible to the next holder. A sleeper registers this way, so that a process that
    /// stops (or dies) while registering holds nothing up.
    ///
    /// `Ok(true)` when passed; `Ok(false)` as soon as `stop()` holds (what the pass was
    /// for has happened already); `TimedOut` past the deadline.
    pub(super) fn pass(
        &self,
        word: &AtomicU32,
        wait: Wait,
        call: &'static str,
        stop: impl Fn() -> bool,
    ) -> Result<bool> {
        if word
            .compare_exchange(0, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(true);
        }
        self.await_word(word, 0, wait, call, stop)
    }

    /// The lock word is held: another producer (consumer) is copying, which is short.
    /// Waits until it is free and swaps it from 0 to `to` (our token to take it, 0 to
    /// pass through it). Spins a bounded while; then sleeps in the kernel on the holder's
    /// lease, waking to look at the word again after a short (growing) while, or at once
    /// when the holder's process ends. The word is taken over from a holder only when the
    /// kernel says its process is gone (Lease invariant 2): a stopped or slow holder is
    /// waited for, never robbed. `Wait::No` waits only through the spin. `Ok(false)` as
    /// soon as `stop()` holds, looked at between looks at the word.
    #[cold]
    fn await_word(
        &self,
        word: &AtomicU32,
        to: u32,
        wait: Wait,
        call: &'static str,
        stop: impl Fn() -> bool,
    ) -> Result<bool> {
        // Acquire: the RMW continues the release sequence of the last release, so we see
        // everything the last live holder published. Release too when passing: the next
        // holder must see what we did (taking, our own release store does that later).
        let success = if to == 0 {
            Ordering::AcqRel
        } else {
            Ordering::Acquire
        };
        let swap = |expected: u32| {
            word.compare_exchange(expected, to, success, Ordering::Relaxed)
                .is_ok()
        };
        let deadline = wait.deadline();
        let spin_until = end_within(LOCK_SPIN, deadline);
        let mut spin = SpinWait::new();
        loop {
            if word.load(Ordering::Relaxed) == 0 && swap(0) {
                return Ok(true);
            }
            if stop() {
                return Ok(false);
            }
            if !spin.spin() {
                std::thread::yield_now();
                if Instant::now() >= spin_until {
                    break;
                }
            }
        }
        let mut sleep = LOCK_SLEEP_FIRST;
        loop {
            let holder = word.load(Ordering::Relaxed);
            if holder == 0 {
                if swap(0) {
                    return Ok(true);
                }
                continue;
            }
            if stop() {
                return Ok(false);
            }
            match self.pair.holder(holder)? {
                // Its process ended while holding the word: what it wrote was never
                // published (or, a registering sleeper, it held nothing up).
                Holder::Gone => {
                    if swap(holder) {
                        return Ok(true);
                    }
                    continue;
                }
                Holder::Invalid => {
                    return Err(self.corrupt(
                        call,
                        format_args!("lock word {holder:#x} is not a lease token of this queue"),
                    ));
                }
                Holder::Alive => {}
            }
            let busy = "another process is copying a message";
            self.may_wait(
                wait,
                call,
                busy,
                "another process held the queue's lock word",
            )?;
            let next = Instant::now() + sleep;
            let until = wait.deadline().map_or(next, |d| d.min(next));
            self.pair
                .leases
                .wait_gone(&self.pair.sems, holder, until, call)?;
            sleep = (sleep * 2).min(LOCK_SLEEP_MAX);
        }
    }
}

/// A held lock word; dropping it releases (store 0, Release: the copy is done).
pub(super) struct Held<'a>(&'a AtomicU32);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}
