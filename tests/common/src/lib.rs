//! Test support for shmsem's integration tests: keys of our own that clean up after
//! themselves, forked children with bounded waits, pipes for handshakes, signal storms,
//! and the queue's control block as docs/FORMAT.md lays it out. No sleeps as
//! synchronisation: children are awaited through a pidfd, handshakes go through pipes,
//! and every wait has a bound.
//!
//! The test files use it as `mod common;` (tests/common/mod.rs re-exports all of it).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::time::Duration;

mod child;
mod key;
mod pipe;
pub mod queue;
mod signals;
mod wait;

pub use child::{Child, Exit, become_nobody, fork, fork_as_nobody};
pub use key::{TestKey, key_in_use, remove_key};
pub use pipe::{Pipe, poll_readable};
pub use signals::{SIGNALS, install_counting_handler, signal_storm};
pub use wait::wait_until;

/// Bound for waits that should finish almost at once; generous for a loaded CI machine.
pub const BOUND: Duration = Duration::from_secs(20);
