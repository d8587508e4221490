//! Test support for *your* multi-process integration tests (feature `testing`, off by
//! default): the pieces shmsem's own test suite is built on.
//!
//! Code that shares System V objects between processes is tested by starting processes,
//! and such tests go wrong in the same few ways: a key already used by another test (or
//! by the last run, killed half-way), objects left behind when a test panics, a child
//! that hangs forever, `sleep` standing in for "the other process is ready", a forked
//! child that deadlocks on a lock another test thread held at the moment of `fork`. This
//! module has one answer for each:
//!
//! | Need | Here |
//! |---|---|
//! | a key no other test uses, whose segment *and* semaphore set are removed when the test ends, passed or panicked | [`TestKey`] |
//! | run a closure in a forked child; get its exit code or the signal that killed it; never wait forever | [`fork`] → [`Child`] ([`Child::wait_or_kill`], [`Child::join`]), [`run_in_child`] |
//! | line processes up without sleeps | [`Gate`] (one opens, any number wait), [`Latch`] (any number arrive, one waits for *n*), [`Pipe`] (bytes and numbers between processes) |
//! | find System V objects the test made and left | [`LeakCheck`] |
//! | wait for a state that has no wait primitive (a semaphore's waiter count) | [`wait_until`] |
//!
//! Every wait has a bound (the `_timeout` forms take one; the others use [`BOUND`]),
//! and the ones that panic say what they waited for. Nothing here sleeps to
//! synchronise: children are awaited through a pidfd, gates and latches are eventfds,
//! pipes are polled.
//!
//! ```toml
//! [dev-dependencies]
//! shmsem = { version = "0.1", features = ["testing"] }
//! ```
//!
//! # An example: a writer in another process, a reader here
//!
//! ```
//! use shmsem::SharedMutex;
//! use shmsem::testing::{Exit, Gate, TestKey, fork};
//!
//! let key = TestKey::new(); // removed with everything under it when `key` drops
//! let counter = SharedMutex::create(key.key(), 0u64)?;
//! let go = Gate::new();
//! let mut writer = fork(|| {
//!     // The child: no println! here (see "Rules for the child"); report by exit code.
//!     let counter = SharedMutex::<u64>::open(key.key()).unwrap();
//!     go.wait(); // until the parent opens the gate (bounded: panics after BOUND)
//!     *counter.lock().unwrap() += 41;
//!     0
//! });
//! *counter.lock().unwrap() += 1; // while the writer waits at the gate
//! go.open();
//! assert_eq!(writer.wait_timeout(shmsem::testing::BOUND), Exit::Code(0));
//! assert_eq!(*counter.lock().unwrap(), 42);
//! # Ok::<(), shmsem::Error>(())
//! ```
//!
//! # Rules for the child
//!
//! [`fork`] copies only the calling thread. The test harness runs tests on many threads,
//! and whatever lock one of them held at the moment of the fork stays locked in the child
//! forever: the standard output and error locks (`println!`, `eprintln!`, `dbg!`), any
//! `Mutex` shared with other threads, the panic machinery's own locks. So in the closure:
//!
//! - do not print through `std`; report through the exit code, a [`Pipe`], or shared
//!   memory. (A panic in the child is reported for you, with one raw `write(2)` to
//!   standard error: [`fork`] installs a panic hook that does that in forked children
//!   and passes everything else on to the hook that was there before. A panic hook you
//!   install later replaces it.)
//! - do not touch locks other threads may hold; shmsem's own objects are fine (their
//!   locks are System V semaphores, and a handle notices it was forked);
//! - return the exit code: the child then ends with `_exit`, skipping destructors and
//!   `atexit` handlers that belong to the parent (a [`TestKey`] dropped in a child leaves
//!   the objects alone for the same reason: they belong to the test).
//!
//! The exit code is the closure's return value modulo 256; a panic makes it 101, as
//! for a Rust program.
//!
//! # Cleaning up
//!
//! A [`TestKey`] removes its objects when it is dropped, which happens during a panic's
//! unwinding too; `panic = "abort"` in the test profile, or a `kill -9` of the test,
//! leaves them (see [`TestKey`] for finding those). Forked children still running when
//! their [`Child`] is dropped are killed and reaped, so a failing assertion does not
//! leave processes behind that hold locks.
//!
//! [`LeakCheck`] finds what the code under test left: objects under keys it chose
//! itself, or private ones (`Key::PRIVATE`) that no `TestKey` covers.

mod child;
mod gate;
mod key;
mod leak;
mod pipe;
mod wait;

use std::time::Duration;

pub use child::{Child, Exit, Overran, become_nobody, fork, fork_as_nobody, run_in_child};
pub use gate::{Gate, Latch};
pub use key::{TestKey, key_in_use, remove_key};
pub use leak::{LeakCheck, ObjectKind, SysvObject, sysv_objects};
pub use pipe::{Pipe, poll_readable};
pub use wait::wait_until;

/// The bound of the waits that take none: what should happen almost at once is given this
/// long before the test is failed. Generous (20 s), for loaded CI machines; a passing
/// test never waits for it.
pub const BOUND: Duration = Duration::from_secs(20);
