//! # shmsem: System V shared memory, safe to share
//!
//! Shared memory is the fastest way for processes to exchange data: both map the same
//! physical pages, and nothing is copied through the kernel. But, as every tutorial warns,
//! **shared memory provides no synchronisation**: nothing stops a second process from
//! reading while the first is half-way through writing. shmsem turns that warning into an
//! API: every managed segment is created together with a System V semaphore set under the
//! same key, and the data is reached only through a lock guard.
//!
//! ## The four steps, and what shmsem does with them
//!
//! The classic recipe (`shmget`, `shmat`, use the memory, `shmdt`; `shmctl` to remove) maps
//! onto this crate like this:
//!
//! | C | shmsem |
//! |---|---|
//! | `shmget(key, size, IPC_CREAT\|0600)` | [`SharedMutex::create`] / [`SharedMutex::open_or_create`] (also makes the semaphore set) |
//! | `shmat(id, NULL, 0)` | done by the constructor; the handle is the attach |
//! | read and write the memory | [`SharedMutex::lock`], then use the guard like `&mut T` |
//! | `shmdt(addr)` | dropping the handle |
//! | `shmctl(id, IPC_RMID, NULL)` | [`SharedMutex::remove`] (removes both objects) |
//!
//! ```
//! use shmsem::{Key, SharedMutex};
//!
//! # let key = Key::from_raw(0x5e00_0003);
//! # if let Ok(old) = SharedMutex::<u64>::open(key) { old.remove()?; }
//! // Every process that knows the key does this; exactly one of them creates.
//! let counter = SharedMutex::open_or_create(key, 0u64)?;
//! {
//!     let mut n = counter.lock().unwrap(); // semop(-1, SEM_UNDO)
//!     *n += 1;
//! } // guard dropped: semop(+1, SEM_UNDO)
//! // The last one out removes the objects (they outlive processes otherwise).
//! counter.remove()?;
//! # Ok::<(), shmsem::Error>(())
//! ```
//!
//! ## Waiting for a change: SharedCondvar
//!
//! The tutorial's reader polls a `written` flag with `sleep(1)`: shared memory tells a
//! process nothing when the data changes. A [`SharedCondvar`] (its own pair, under its
//! own key) does, as `std::sync::Condvar` does between threads: wait with the mutex's
//! guard until the data is what you need; whoever changes it notifies.
//!
//! ```
//! use shmsem::{Key, SharedCondvar, SharedMutex};
//! # let (text_key, changed_key) = (Key::from_raw(0x5e00_0004), Key::from_raw(0x5e00_0005));
//! # if let Ok(old) = SharedMutex::<u32>::open(text_key) { old.remove()?; }
//! # if let Ok(old) = SharedCondvar::open(changed_key) { old.remove()?; }
//! let written = SharedMutex::open_or_create(text_key, 0u32)?;
//! let changed = SharedCondvar::open_or_create(changed_key)?;
//! # *written.lock().unwrap() = 1; // (the writer, in another process)
//! // The reader: sleep (no polling) until the writer has set the flag.
//! let mut w = changed.wait_while(written.lock().unwrap(), |w| *w == 0).unwrap();
//! *w = 0; // taken
//! drop(w);
//! changed.notify_all()?; // the writer may wait for the flag to go back to 0
//! # written.remove()?; changed.remove()?;
//! # Ok::<(), shmsem::Error>(())
//! ```
//!
//! A waiter killed while waiting never takes a notification with it, and a process killed
//! holding the mutex leaves the waiters wakeable (they re-lock it poisoned): see
//! [`SharedCondvar`]'s "Crashes".
//!
//! ## Crashes: SEM_UNDO and poisoning
//!
//! Locking is `semop(-1)` with `SEM_UNDO`, so when a process dies holding the lock (even by
//! `kill -9`) the kernel gives the semaphore back: nobody waits forever. But the data may
//! be half-updated. The segment's header records which handle is inside; the next
//! locker that finds a dead holder recorded gets [`LockError::Poisoned`], which carries
//! the guard and the dead process's pid ([`PoisonError::owner_pid`]). A panic inside the
//! critical section poisons too, as with `std::sync::Mutex`. Repair, then
//! [`SharedMutex::clear_poison`]. The poison keeps its *first* cause until then
//! ([`PoisonError::cause`]: died or panicked): a process that panics on a poisoned guard
//! does not hide the death before it.
//!
//! A pattern for workers and a supervisor: workers step aside on poison (dropping the
//! guard releases the lock; the poison stays), the supervisor takes the lock poisoned or
//! not, repairs and clears:
//!
//! ```
//! use shmsem::{Key, LockError, SharedMutex};
//! # let m = SharedMutex::create(Key::PRIVATE, [0u64; 2])?;   // [total, entries]
//! // A worker:
//! match m.lock() {
//!     Ok(mut v) => { v[1] += 1; v[0] += 10; }
//!     Err(LockError::Poisoned(p)) => eprintln!("{p}; leaving it to the supervisor"),
//!     Err(LockError::Failed(e)) => return Err(e),
//! }
//! // The supervisor:
//! if m.is_poisoned() {
//!     let mut v = m.lock().or_else(LockError::into_guard)?;
//!     v[0] = 10 * v[1]; // make the invariant hold again
//!     m.clear_poison();
//! }
//! # m.remove()?;
//! # Ok::<(), shmsem::Error>(())
//! ```
//!
//! Whether a recorded process is still alive is the kernel's answer, never a pid's: each
//! handle holds a *lease*, a semaphore it raised with `SEM_UNDO`, which the kernel lowers
//! when the process ends. So processes in different PID namespaces (the containers of one
//! pod share System V objects, each with its own pid 1), processes whose main thread
//! exited, and pids reused after a death are all judged right. Pids are only reported, as
//! your PID namespace sees them (or `None` when it cannot). Each object has 256 lease
//! slots: at most 256 handles, across all processes, can lock it at once.
//!
//! ## Who removes objects, and when
//!
//! System V objects live until removed (or reboot), not until their processes exit.
//! Decide which process owns the lifetime (the supervisor, the reader of a writer/reader
//! pair) and have it call `remove`. Removing while others use the object is safe: they
//! keep their attach, and calls that need the semaphore get [`ErrorKind::Removed`].
//! `ipcs -m -s` lists what is there; `ipcrm` removes by id. The [`inspect`] module (and
//! the `shmsem-inspect` tool built on it) also decodes shmsem's own objects, and removes
//! abandoned pairs.
//!
//! ## Keys
//!
//! Processes find objects by a 32-bit [`Key`]: a number they agree on
//! ([`Key::from_raw`]), one derived from a file ([`Key::ftok`]: low bits of the file's
//! device and inode plus a project id, so two files can collide), or [`Key::PRIVATE`]
//! for objects shared only with children through `fork`.
//!
//! ## Permissions
//!
//! Objects are created with mode `0o600` (owner only) unless
//! [`options().mode(..)`](SharedMutex::options) says otherwise; both objects of a pair
//! get the same mode. Others get [`ErrorKind::PermissionDenied`]. (root bypasses these
//! checks, so test permissions from a process that gave up root.) A mode that gives the
//! owner neither read nor write is refused at creation (only root could use such an
//! object) unless the options allow it. After creation, `set_owner`, `set_mode` and
//! `set_owner_and_mode` (`IPC_SET`) hand an object to another user: a supervisor running
//! as root creates, then gives it to the service that uses it
//! ([`SharedMutex::set_owner`] changes both objects of the pair).
//!
//! ```
//! use shmsem::{Key, SharedMutex};
//! let m = SharedMutex::create(Key::PRIVATE, 0u64)?;
//! # let (uid, gid) = (m.segment().info()?.uid, m.segment().info()?.gid);
//! m.set_owner_and_mode(uid, gid, 0o660)?; // the service's uid and group
//! assert_eq!(m.segment().info()?.permissions(), 0o660);
//! m.remove()?;
//! # Ok::<(), shmsem::Error>(())
//! ```
//!
//! ## Threads and fork
//!
//! A handle is `Send + Sync`: threads share it. Once a handle sees a sibling thread
//! holding the lock, its threads queue in user space and pass the lock among themselves
//! without giving the semaphore back each time (bounded, so other processes get turns).
//! A handle inherited through `fork` works in the child. A *guard* inherited through
//! `fork` does not unlock when the child drops it: the lock belongs to the parent (the
//! kernel's `SEM_UNDO` bookkeeping is not inherited either).
//!
//! ## Testing multi-process code
//!
//! The `testing` feature (off by default, no dependencies of its own) adds the module
//! `shmsem::testing` for your integration tests, the pieces this crate's own tests use:
//! keys whose objects are removed when the test ends, passed or panicked (`TestKey`);
//! closures run in forked children, awaited with a bound or killed by a watchdog
//! (`fork`, `run_in_child`); gates, latches and pipes to line processes up without
//! sleeps; and a check for System V objects a test left behind (`LeakCheck`). Turn it on
//! for tests only: `shmsem = { version = "0.1", features = ["testing"] }` under
//! `[dev-dependencies]`.
//!
//! ## Layers
//!
//! - Raw: [`Segment`] and [`SemaphoreSet`]/[`SemOp`] are thin, honest wrappers of the
//!   kernel objects, with nothing added: they open what C, Python or Perl programs made.
//!   Every call and flag of `shmget`/`shmat`/`shmdt`/`shmctl` has its place
//!   ([`Segment::options`] for huge pages and `SHM_NORESERVE`, [`Segment::open_at`] for
//!   `SHM_RND`, [`Segment::lock_in_memory`], [`SemaphoreSet::set_values`]), and
//!   [`shm_limits`]/[`sem_limits`] read the system's limits (`IPC_INFO`).
//! - Managed: [`SharedMutex`] writes a small documented header (docs/FORMAT.md) at offset 0
//!   of its segment, which lets it detect foreign objects ([`ErrorKind::NotManaged`]),
//!   type mix-ups ([`ErrorKind::LayoutMismatch`]) and dead holders.
//! - [`SharedRwLock`]: many readers or one writer, on the same kind of pair. Each
//!   acquisition is one atomic `semop` over three semaphores, all with `SEM_UNDO`, and a
//!   waiting writer holds new readers back. Pick it over a mutex for read-mostly state.
//! - [`SharedCondvar`]: wait/notify beside any `SharedMutex`; each wait holds a kernel
//!   lease, so notifications go only to live waiters.
//! - [`Queue`]: a bounded queue of byte messages between any number of producer and
//!   consumer processes, on the same managed pair: messages are copied through a ring in
//!   the segment, and the semaphores only put a side to sleep and wake it, so a steady
//!   stream makes no system calls. A sender or receiver killed half-way tears nothing.
//!
//! Errors name the call, the key and the reason, and have an [`ErrorKind`].
//!
//! The source tree follows these layers: `raw/` (the kernel's objects), `managed/` (the
//! pair and its creation protocol, the header format, leases, poisoning, options,
//! waiting), one folder per primitive with more than one job (`mutex/`, `queue/`, whose
//! `wake.rs` holds the sleep and wake-up protocol, `condvar/`, whose `waiters.rs` holds
//! the wait/notify protocol), `inspect/`, and `testing/` (feature `testing`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod condvar;
mod error;
pub mod inspect;
mod managed;
mod mutex;
mod queue;
mod raw;
mod rwlock;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use managed::header;

/// The `bytemuck` crate, re-exported so that `#[derive(Pod, Zeroable)]` works without a
/// direct dependency: add `#[bytemuck(crate = "shmsem::bytemuck")]` to the type.
pub use bytemuck;
/// The README's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use bytemuck::{Pod, Zeroable};
pub use condvar::{SharedCondvar, WaitTimeoutResult};
pub use error::{Error, ErrorKind, Result};
pub use managed::options::Options;
pub use managed::poison::{LockError, LockResult, PoisonCause, PoisonError};
pub use managed::view::SegmentView;
pub use mutex::{SharedMutex, SharedMutexGuard};
pub use queue::{Queue, QueueIter};
pub use raw::key::{Key, ParseKeyError};
pub use raw::limits::{SemLimits, ShmLimits, sem_limits, shm_limits};
pub use raw::sem::{SemOp, SemaphoreSet, SemaphoreSetInfo, SemaphoreSetOptions};
pub use raw::shm::{Segment, SegmentInfo};
pub use raw::shm_options::{AttachFlags, HugePageSize, SegmentOptions};
pub use rwlock::{SharedReadGuard, SharedRwLock, SharedWriteGuard};
