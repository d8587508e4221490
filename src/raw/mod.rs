//! The raw layer: the kernel's objects with nothing added, so that they open what C,
//! Python or Perl programs made (and what they see is what `ipcs` shows).
//!
//! - `key`: the 32-bit key that names objects ([`Key`](crate::Key));
//! - `shm`: a shared-memory segment and its attach ([`Segment`](crate::Segment));
//! - `sem`: a semaphore set and its operations ([`SemaphoreSet`](crate::SemaphoreSet));
//! - `sys`: the few declarations `libc` lacks (`semtimedop`, `union semun`).

pub(crate) mod key;
pub(crate) mod sem;
pub(crate) mod shm;
pub(crate) mod sys;
