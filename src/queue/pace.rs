//! How a wait paces itself, per handle and direction (sending, receiving): how soon its
//! spin first looks, and how long it spins before it sleeps. Both adapt to what the last
//! waits met; nothing here is shared with other processes, and the values are only advice
//! (relaxed atomics: threads sharing a handle may overwrite each other's, which costs at
//! most one wait a worse guess).
//!
//! **The first look** comes after a gap that doubles (to `MAX_GAP`, 1 µs) while waits
//! keep ending at that first look, and drops back to `FIRST_GAP` (50 ns) when one takes
//! longer. In a stream the receiver that catches up would otherwise chase the sender
//! record by record, each look pulling `tail`, and the line the sender is writing the next
//! record into, away from it; measured with `queue_compare` (64 B, 11 runs each), that
//! lock-step cost a tenth to a half of the throughput. A ping-pong's waits last a round
//! trip, many looks, so its first looks stay 50 ns apart and its latency is untouched
//! (`queue_latency`).
//!
//! **The spin's length** lies between `MIN_SPIN` (50 µs) and the spin limit (4 ms unless
//! set, `Queue::set_spin_limit`):
//!
//! - a wait that ends while spinning within `QUICK` (50 µs) sets it to the limit: the
//!   other side is active (a ping-pong, a stream), and a wait much longer than usual
//!   means it was preempted, which on a busy machine lasts a scheduler time slice
//!   (milliseconds). Measured with `queue_latency`, a CPU-bound process beside the two
//!   processes that ping-pong on 2 CPUs: with fixed spins of 0.1-1 ms, p99 one-way was
//!   the spin itself (a side that gives up sleeps, and every sleep and wake-up moves the
//!   three processes around the two CPUs, so that preemptions come more often); with
//!   2 ms, 2.1-4.9 µs; with 4 ms, 0.98-1.3 µs;
//! - a wait that ends while spinning, but later, halves it: a side whose messages come
//!   every millisecond or so must not burn its CPU spinning through each gap;
//! - a wait that spun out and slept halves it too, unless the wake-up came within
//!   `WAKE_GRACE` (200 µs) of going to sleep: then a spin twice as long would have caught
//!   it, and it doubles. Without that, two sides whose spins have come down below the
//!   cost of a wake-up wait for each other's wake-ups for good (measured: 8,000 of 100,000
//!   round trips slept after a 50 µs spin, p99 54 µs).
//!
//! So a ping-pong or a stream spins up to the limit, and a side whose messages are rare
//! comes down to 50 µs of spin per message within a few waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::managed::wait::{FIRST_GAP, MAX_GAP};

/// The least a wait spins (unless the limit is lower): what a side whose waits keep
/// ending in sleep comes down to.
pub(super) const MIN_SPIN: Duration = Duration::from_micros(50);
/// A wait that ends while spinning within this long found the other side active.
pub(super) const QUICK: Duration = Duration::from_micros(50);
/// A sleeper woken within this long after it went to sleep had spun too short.
pub(super) const WAKE_GRACE: Duration = Duration::from_micros(200);

/// One direction's pace (nanoseconds).
pub(super) struct Pace {
    first_gap: AtomicU64,
    /// The next spin's length; `u64::MAX` (the start): the limit.
    spin: AtomicU64,
}

impl Pace {
    pub(super) fn new() -> Pace {
        Pace {
            first_gap: AtomicU64::new(nanos(FIRST_GAP)),
            spin: AtomicU64::new(u64::MAX),
        }
    }

    /// The next wait's first gap, and how long it spins (at most `limit`).
    pub(super) fn plan(&self, limit: Duration) -> (Duration, Duration) {
        let first = Duration::from_nanos(self.first_gap.load(Ordering::Relaxed));
        let spin = Duration::from_nanos(self.spin.load(Ordering::Relaxed));
        (first, spin.min(limit))
    }

    /// The spin of a wait planned as (`first`, `spin`) found what it waited for at look
    /// number `looks` (0: before the first gap), `waited` after it began.
    pub(super) fn ended_spinning(
        &self,
        (first, spin): (Duration, Duration),
        looks: u32,
        waited: Duration,
        limit: Duration,
    ) {
        let next_gap = match looks {
            0 | 1 => (first * 2).min(MAX_GAP),
            _ => FIRST_GAP,
        };
        self.first_gap.store(nanos(next_gap), Ordering::Relaxed);
        if waited <= QUICK {
            self.spin.store(nanos(limit), Ordering::Relaxed);
        } else {
            self.halve(spin, limit);
        }
    }

    /// The spin ran out before what the wait waited for (or its deadline) came.
    pub(super) fn spun_out(&self) {
        self.first_gap.store(nanos(FIRST_GAP), Ordering::Relaxed);
    }

    /// A wait whose whole spin (`spin`) ran out slept, and its sleep ended (woken, or
    /// looking again) `slept` after it began.
    pub(super) fn ended_sleeping(&self, spin: Duration, slept: Duration, limit: Duration) {
        if slept <= WAKE_GRACE {
            let longer = spin.saturating_mul(2).min(limit);
            self.spin.store(nanos(longer), Ordering::Relaxed);
        } else {
            self.halve(spin, limit);
        }
    }

    fn halve(&self, spin: Duration, limit: Duration) {
        let shorter = (spin / 2).max(MIN_SPIN).min(limit);
        self.spin.store(nanos(shorter), Ordering::Relaxed);
    }
}

/// `d` in nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(4);
    const US: Duration = Duration::from_micros(1);

    #[test]
    fn the_first_gap_grows_while_waits_end_at_the_first_look_and_resets_after_a_longer_one() {
        let pace = Pace::new();
        let gap = |pace: &Pace| pace.plan(LIMIT).0;
        assert_eq!(gap(&pace), FIRST_GAP);
        // Ready at once, then at the first look after the gap: a stream.
        pace.ended_spinning(pace.plan(LIMIT), 0, US, LIMIT);
        assert_eq!(gap(&pace), FIRST_GAP * 2);
        pace.ended_spinning(pace.plan(LIMIT), 1, US, LIMIT);
        assert_eq!(gap(&pace), FIRST_GAP * 4);
        for _ in 0..5 {
            pace.ended_spinning(pace.plan(LIMIT), 1, US, LIMIT);
        }
        assert_eq!(gap(&pace), MAX_GAP, "capped");
        // Ready only at the second look: a ping-pong, start short again.
        pace.ended_spinning(pace.plan(LIMIT), 2, US, LIMIT);
        assert_eq!(gap(&pace), FIRST_GAP);
        // A spin that runs out starts short too.
        pace.ended_spinning(pace.plan(LIMIT), 0, US, LIMIT);
        pace.spun_out();
        assert_eq!(gap(&pace), FIRST_GAP);
    }

    #[test]
    fn the_spin_comes_down_for_rare_messages_and_goes_back_up_for_an_active_side() {
        let pace = Pace::new();
        let spin = |pace: &Pace| pace.plan(LIMIT).1;
        assert_eq!(spin(&pace), LIMIT, "starts at the limit");
        assert_eq!(
            pace.plan(LIMIT / 8).1,
            LIMIT / 8,
            "never above a lower limit"
        );
        // Messages every 3 ms: the first wait ends spinning, but late; then the spin no
        // longer covers the gap, and each sleep lasts well past the grace.
        pace.ended_spinning(pace.plan(LIMIT), 5, 3000 * US, LIMIT);
        assert_eq!(spin(&pace), LIMIT / 2);
        let mut rounds = 0;
        while spin(&pace) > MIN_SPIN {
            let s = spin(&pace);
            pace.ended_sleeping(s, 3000 * US - s, LIMIT);
            rounds += 1;
        }
        assert_eq!(spin(&pace), MIN_SPIN, "floored");
        assert!(rounds <= 7, "down in a few waits, not {rounds}");
        pace.ended_sleeping(MIN_SPIN, 3 * WAKE_GRACE, LIMIT);
        assert_eq!(spin(&pace), MIN_SPIN);
        // Woken soon after going to sleep: the spin was a little short.
        pace.ended_sleeping(MIN_SPIN, WAKE_GRACE / 2, LIMIT);
        assert_eq!(spin(&pace), MIN_SPIN * 2);
        // A quick wait: the other side is active again.
        pace.ended_spinning(pace.plan(LIMIT), 3, QUICK, LIMIT);
        assert_eq!(spin(&pace), LIMIT);
        // A limit below MIN_SPIN is still the most it spins.
        let tiny = Duration::from_micros(10);
        pace.ended_sleeping(LIMIT, 10 * WAKE_GRACE, tiny);
        assert_eq!(pace.plan(tiny).1, tiny);
    }
}
