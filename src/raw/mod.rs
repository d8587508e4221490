//! The raw layer: the kernel's objects with nothing added, so that they open what C,
//! Python or Perl programs made (and what they see is what `ipcs` shows).
//!
//! - `key`: the 32-bit key that names objects ([`Key`](crate::Key));
//! - `shm`: a shared-memory segment and its attach ([`Segment`](crate::Segment));
//! - `shm_options`: how a segment is made and attached
//!   ([`SegmentOptions`](crate::SegmentOptions): huge pages, `SHM_NORESERVE`;
//!   [`AttachFlags`](crate::AttachFlags): `SHM_RND`, `SHM_RDONLY`);
//! - `sem`: a semaphore set and its operations ([`SemaphoreSet`](crate::SemaphoreSet));
//! - `perm`: creation-mode checks and `IPC_SET` (owner, group, mode), for both kinds;
//! - `limits`: the system's limits (`IPC_INFO`: [`shm_limits`](crate::shm_limits),
//!   [`sem_limits`](crate::sem_limits)) and the messages that name them;
//! - `sys`: the few declarations `libc` lacks (`semtimedop`, `union semun`, `shminfo`,
//!   the huge page size flags);
//! - `tables`: the kernel's lists of every object (`/proc/sysvipc`), which
//!   [`inspect`](crate::inspect) re-exports and `IPC_SET` falls back on.

pub(crate) mod key;
pub(crate) mod limits;
pub(crate) mod perm;
pub(crate) mod sem;
pub(crate) mod shm;
pub(crate) mod shm_options;
pub(crate) mod sys;
pub(crate) mod tables;
