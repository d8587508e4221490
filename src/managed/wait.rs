//! Waiting, for every primitive: how long a call may wait ([`Wait`]: not at all, as long
//! as it takes, or until a deadline on the monotonic clock, computed once so that retries
//! after a signal or a lost race never extend it; [`Patience`]: the same before the clock
//! is read, for the calls that often need not wait at all), and the two back-offs used where there
//! is nothing to sleep on: [`SleepBackoff`] (an opener polling for its creator) and
//! [`SpinBackoff`] (a spin watching another process's word, which yields on a thread
//! that may run on one CPU only: [`on_one_cpu`]).

use std::cell::Cell;
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

/// `limit` from now, or the deadline if that comes first: when a spin (or a poll) that
/// starts now ends.
pub(crate) fn end_within(limit: Duration, deadline: Option<Instant>) -> Instant {
    let end = Instant::now() + limit;
    deadline.map_or(end, |d| d.min(end))
}

/// How long a call may wait, as its caller gave it: a [`Wait`], or a timeout whose clock
/// has not been read yet. The queue's and the mutex's `_timeout` calls take `Within`, and
/// fix the deadline ([`start`](Patience::start)) only once they find they must wait: a
/// send with room, a receive with a message there, a lock that is free, read no clock. The timeout so counts from that moment
/// rather than from the call, a difference of one attempt (well under a microsecond).
/// Measured with `queue_compare` (64 B messages, `recv_timeout` in the reader), the
/// clock read per call was over a third of the reader's time.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Patience {
    /// A wait already started (or one with nothing to start).
    Started(Wait),
    /// At most this long, from [`start`](Patience::start).
    Within(Duration),
}

impl Patience {
    /// The wait, its deadline fixed from now if it had none yet. Call it once, and keep
    /// the result for the rest of the call: each call of `start` on a `Within` starts
    /// the clock afresh.
    pub(crate) fn start(self) -> Wait {
        match self {
            Patience::Started(wait) => wait,
            Patience::Within(timeout) => Wait::after(timeout),
        }
    }
}

impl From<Wait> for Patience {
    fn from(wait: Wait) -> Patience {
        Patience::Started(wait)
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
pub(crate) struct SpinBackoff {
    gap: Duration,
    /// Yield the CPU between looks instead of spinning: this thread may run on one CPU
    /// only ([`on_one_cpu`]).
    yields: bool,
}

/// The first gap between two looks.
pub(crate) const FIRST_GAP: Duration = Duration::from_nanos(50);
/// The longest gap between two looks.
pub(crate) const MAX_GAP: Duration = Duration::from_micros(1);

impl SpinBackoff {
    pub(crate) fn new() -> SpinBackoff {
        SpinBackoff::starting_at(FIRST_GAP)
    }

    /// A back-off whose first gap is `first` (at most `MAX_GAP`), doubling from there.
    pub(crate) fn starting_at(first: Duration) -> SpinBackoff {
        SpinBackoff {
            gap: first.min(MAX_GAP),
            yields: on_one_cpu(),
        }
    }

    pub(crate) fn pause(&mut self) {
        if self.yields {
            std::thread::yield_now();
            return;
        }
        let until = Instant::now() + self.gap;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        self.gap = (self.gap * 2).min(MAX_GAP);
    }

    /// Makes the next gap, and every one after it, the longest (`MAX_GAP`): for a look
    /// that found the other side in the middle of something that takes a while.
    pub(crate) fn lengthen(&mut self) {
        self.gap = MAX_GAP;
    }
}

/// How many times [`on_one_cpu`] answers from its last look at the CPU affinity before
/// it looks again.
const AFFINITY_REUSE: u32 = 1024;

/// May this thread run on one CPU only (pinned with `taskset`, or a one-CPU container)?
/// Then a spin that never yields can starve the very process it waits for, if that one
/// shares the CPU: measured with `condvar_compare`, both sides pinned to one CPU, a
/// hand-off took 61 µs with the 50 µs spin, 4.2 µs when the spin yields. A spin there
/// yields between looks instead ([`SpinBackoff`]), which costs little when the other
/// side is on another CPU (nothing else to run: the yield returns at once).
///
/// The answer (a `sched_getaffinity`) is kept per thread and reused 1024 times, so that
/// a wait does not pay a system call (nor a clock read) for it; a fork starts afresh
/// (the fork generation is part of the key), so a child that pins itself after the fork
/// is right from its first wait.
pub(crate) fn on_one_cpu() -> bool {
    thread_local! {
        /// (fork generation, answers left, answer).
        static LAST: Cell<(u32, u32, bool)> = const { Cell::new((0, 0, false)) };
    }
    let generation = super::process::generation();
    LAST.with(|last| match last.get() {
        (g, left, one) if g == generation && left > 0 => {
            last.set((g, left - 1, one));
            one
        }
        _ => {
            let one = allowed_cpus() == 1;
            last.set((generation, AFFINITY_REUSE, one));
            one
        }
    })
}

/// How many CPUs this thread may run on (`sched_getaffinity`); 0 if the kernel does not
/// say (then the spin does not yield, as before this check).
fn allowed_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data, all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel writes into it.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: `set` was filled by the kernel.
    unsafe { libc::CPU_COUNT(&set) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread pinned to one CPU knows it, and its spin yields; on a machine with more
    /// CPUs an unpinned one spins. Fresh threads: the answer is kept per thread.
    #[test]
    fn a_thread_pinned_to_one_cpu_yields_in_its_spin() {
        let pinned = std::thread::spawn(|| {
            // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET adds CPU 0; the set
            // outlives the call, which pins this thread only.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
            (allowed_cpus(), on_one_cpu(), SpinBackoff::new().yields)
        })
        .join()
        .unwrap();
        assert_eq!(pinned, (1, true, true));
        let free = std::thread::spawn(|| (allowed_cpus(), on_one_cpu(), SpinBackoff::new().yields))
            .join()
            .unwrap();
        if free.0 > 1 {
            assert_eq!((free.1, free.2), (false, false), "{} CPUs allowed", free.0);
        }
    }
}
