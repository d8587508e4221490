//! Test support for shmsem's integration tests: [`shmsem::testing`] (keys that clean up
//! after themselves, forked children with bounded waits and watchdogs, gates, latches and
//! pipes for handshakes, a leak check), re-exported, plus what only this project's tests
//! need: signal storms, and the queue's control block as docs/FORMAT.md lays it out. No
//! sleeps as synchronisation: children are awaited through a pidfd, handshakes go through
//! pipes and eventfds, and every wait has a bound.
//!
//! The test files use it as `mod common;` (tests/common/mod.rs re-exports all of it).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod child;
mod held;
pub mod queue;
mod signals;

pub use child::{Child, fork, fork_as_nobody};
pub use held::{HeldMutex, killed_inside};
pub use shmsem::testing::{
    BOUND, Exit, Gate, Latch, LeakCheck, ObjectKind, Overran, Pipe, SysvObject, TestKey,
    become_nobody, key_in_use, poll_readable, remove_key, run_in_child, sysv_objects, wait_until,
};
pub use signals::{SIGNALS, install_counting_handler, signal_storm};
