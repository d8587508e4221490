//! A process-shared POSIX semaphore (`sem_init(pshared = 1, value = 1)`), with the record
//! behind it in an anonymous shared mapping: `sem_wait` / `sem_post`.

use shmsem_benchmarks::Res;
use shmsem_benchmarks::os::{check_rc, retry_eintr};

use super::cell::{CellLock, CellLocked};

pub type PosixSem = CellLocked<libc::sem_t>;

// SAFETY: a semaphore of value 1 excludes (read_lock is lock).
unsafe impl CellLock for libc::sem_t {
    unsafe fn init(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: fresh, aligned shared memory.
        check_rc("sem_init", unsafe { libc::sem_init(at, 1, 1) }).map(drop)
    }

    unsafe fn destroy(at: *mut Self) {
        // SAFETY: the caller's promise: initialised, unused.
        unsafe { libc::sem_destroy(at) };
    }

    unsafe fn lock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, alive.
        retry_eintr("sem_wait", || unsafe { libc::sem_wait(at) }).map(drop)
    }

    unsafe fn unlock(at: *mut Self) -> Res<()> {
        // SAFETY: as in `lock`.
        check_rc("sem_post", unsafe { libc::sem_post(at) }).map(drop)
    }
}
