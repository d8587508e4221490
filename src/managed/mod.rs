//! What every managed object shares, whatever its kind:
//!
//! - `pair`: a segment and a semaphore set under one key, created and opened race-free
//!   (the `sem_otime` protocol);
//! - `header`: the 64-byte header at offset 0 of every managed segment (docs/FORMAT.md);
//! - `lease`: who is alive, from the kernel: the lease slots every managed set ends with,
//!   and the tokens that shared memory records instead of pids;
//! - `process`: this process's identity across `fork` (fork generation, cached pid);
//! - `poison`: what a lock call returns when a holder broke off ([`LockError`],
//!   [`PoisonError`]);
//! - `options`: how an object is made or opened ([`Options`]);
//! - `wait`: how long a call may wait (no, forever, until a deadline);
//! - `view`: what a managed object shows of its segment ([`SegmentView`]).
//!
//! [`SegmentView`]: crate::SegmentView
//!
//! [`LockError`]: crate::LockError
//! [`PoisonError`]: crate::PoisonError
//! [`Options`]: crate::Options

pub mod header;
pub(crate) mod lease;
pub(crate) mod options;
pub(crate) mod pair;
pub(crate) mod poison;
pub(crate) mod process;
pub(crate) mod view;
pub(crate) mod wait;
