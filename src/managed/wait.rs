//! How long a call may wait, shared by every primitive: not at all (`try_*`), as long as
//! it takes, or until a deadline on the monotonic clock (`*_timeout` computes it once, so
//! that retries after a signal or a lost race never extend it).

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
