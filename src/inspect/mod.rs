//! Inspection and clean-up of the System V objects on this machine: what `ipcs` shows,
//! plus what shmsem sees in them (the `shmsem-inspect` tool is a thin front end).
//!
//! - [`list`] reads `/proc/sysvipc/shm` and `/proc/sysvipc/sem` (every segment and
//!   semaphore set of this IPC namespace, whoever owns it) and, for each segment, attaches
//!   it read-only to look for a shmsem header ([`Contents`]): for a managed object
//!   ([`Managed`]), its kind, payload, paired semaphore set, current holder (and whether
//!   that process is alive), poisoning and its cause, the processes asleep on each of its
//!   semaphores ([`SemaphoreState`]), its open handles ([`LeaseState`]), and for a queue
//!   its control block ([`QueueState`]: state, messages and bytes waiting, sleepers).
//! - [`show_key`] and [`show_id`] do the same for one key or IPC id.
//! - [`remove`] removes a managed pair (segment and semaphore set) by key, refusing
//!   anything that is not one unless forced.
//! - [`gc`] removes managed pairs that are abandoned: the creator is gone and nobody
//!   attaches the segment. [`GcOptions`] has a dry run and a key filter.
//! - [`semaphores`] reads every semaphore of any set (value, `GETNCNT`, `GETZCNT`,
//!   `GETPID`); [`semaphore_name`] names those of a managed pair as docs/FORMAT.md does.
//!
//! Nothing here panics on odd objects: a foreign segment is [`Contents::Foreign`], one
//! this process may not attach is [`Contents::NoPermission`], one removed while it was
//! being looked at is [`Contents::Gone`].
//!
//! Looking is not entirely free of side effects: attaching a segment (read-only, for a
//! moment) updates its `lpid`, `atime` and `dtime`, and `nattch` counts the inspector
//! while it looks. The reports read the segment's record (`IPC_STAT`) just before
//! attaching, and a process that looks again is shown the last user it saw before its
//! own first look ([`SegmentReport::record`]); another process's earlier look (another
//! run of `shmsem-inspect`) is, to the kernel, a use like any other. Semaphores are only
//! read (`semctl`), never operated on, so their last pids stay the users'. Processes are checked with `kill(pid, 0)`; pids are those of this PID
//! namespace, and a pid that was reused by an unrelated process looks alive (the safe
//! direction for [`gc`]).
//!
//! ```no_run
//! use shmsem::inspect::{self, Contents};
//!
//! for seg in inspect::list()?.segments {
//!     if let Contents::Managed(m) = &seg.contents {
//!         println!("{} is a {} of {} bytes", seg.record.key, m.kind.name(), m.payload_size);
//!     }
//! }
//! # Ok::<(), shmsem::Error>(())
//! ```

mod gc;
mod process;
mod queue;
mod remove;
mod report;
mod semaphores;

pub use crate::raw::tables::{
    SEM_TABLE, SHM_TABLE, SemRecord, ShmRecord, parse_sem_table, parse_shm_table, segments,
    semaphore_sets,
};
pub use gc::{GcEntry, GcOptions, GcReport, gc};
pub use process::{Liveness, Process};
pub use queue::{QueueState, QueueStatus};
pub use remove::{Removed, remove};
pub use report::{
    Contents, KeyReport, LeaseState, Listing, Managed, SegmentReport, inspect, list, show_id,
    show_key,
};
pub use semaphores::{SemaphoreState, semaphore_name, semaphores};
