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

/// The waiting side's spin between looks at the other side's counter, measured in time:
/// gaps doubling from `FIRST_GAP` to `MAX_GAP`, spinning on the clock (PAUSE costs 10x
/// more on some CPUs than on others, so a count of them means nothing).
///
/// Never `sched_yield`: on a busy machine the CPU goes to whatever else is runnable
/// there for the rest of its time slice (milliseconds), while the other side may answer
/// in a microsecond; the spin limit (then a sleep in `semop`) bounds what spinning costs.
///
/// Not `SpinWait`, whose looks come every ~150 ns once it yields: each look takes the
/// cache line of `head` (or `tail`) away from the side that writes it for every message,
/// and with 64-byte messages that made the queue 2-4x slower (measured); gaps of up to
/// `MAX_GAP` keep a long wait's looks rare.
pub(crate) struct SpinBackoff(Duration);

/// The first gap between two looks.
const FIRST_GAP: Duration = Duration::from_nanos(50);
/// The longest gap between two looks.
const MAX_GAP: Duration = Duration::from_micros(1);

impl SpinBackoff {
    pub(crate) fn new() -> SpinBackoff {
        SpinBackoff(FIRST_GAP)
    }

    pub(crate) fn pause(&mut self) {
        let until = Instant::now() + self.0;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.0 = (self.0 * 2).min(MAX_GAP);
    }
}
