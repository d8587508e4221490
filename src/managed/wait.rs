//! Waiting, for every primitive: how long a call may wait ([`Wait`]: not at all, as long
//! as it takes, or until a deadline on the monotonic clock, computed once so that retries
//! after a signal or a lost race never extend it), and the two back-offs used where there
//! is nothing to sleep on: [`SleepBackoff`] (an opener polling for its creator) and
//! [`SpinBackoff`] (a queue side watching the other side's counter).

use std::time::{Duration, Instant};

/// How long a call may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all: `try_*` (`IPC_NOWAIT`).
    No,
    /// As long as it takes.
    Forever,
    /// Until the deadline.
    Until(Instant),
}

impl Wait {
    /// A wait of `timeout` from now (one too long to represent waits forever).
    pub(crate) fn after(timeout: Duration) -> Wait {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => Wait::Until(deadline),
            None => Wait::Forever,
        }
    }

    /// The deadline, if there is one.
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        }
    }
}

/// Bounded exponential back-off for the opener's wait on a creator (polling the kernel's
/// `sem_otime`, which has no wait primitive): 50 µs doubling up to 5 ms.
pub(crate) struct SleepBackoff(Duration);

impl SleepBackoff {
    pub(crate) fn new() -> Self {
        SleepBackoff(Duration::from_micros(50))
    }

    pub(crate) fn pause(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_millis(5));
    }
}

/// The waiting side's spin between looks at the other side's counter: pauses doubling
/// from 1 to `MAX_PAUSES` (about 4 µs here), then a `sched_yield` with each look, in case
/// the other side waits for this CPU.
///
/// Not `SpinWait`, whose looks come every ~150 ns once it yields: each look takes the
/// cache line of `head` (or `tail`) away from the side that writes it for every message,
/// and with 64-byte messages that made the queue 2-4x slower (measured).
pub(crate) struct SpinBackoff(u32);

/// The longest run of pause instructions between two looks.
const MAX_PAUSES: u32 = 512;

impl SpinBackoff {
    pub(crate) fn new() -> SpinBackoff {
        SpinBackoff(1)
    }

    pub(crate) fn pause(&mut self) {
        for _ in 0..self.0 {
            std::hint::spin_loop();
        }
        if self.0 < MAX_PAUSES {
            self.0 *= 2;
        } else {
            std::thread::yield_now();
        }
    }
}
