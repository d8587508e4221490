//! The pthread locks, process-shared, in an anonymous shared mapping with the record
//! right behind them: a robust `pthread_mutex_t` (`EOWNERDEAD` is repaired with
//! `pthread_mutex_consistent`), and a `pthread_rwlock_t` of glibc's default kind, which
//! prefers readers. POSIX has no robust rwlocks: a holder that dies leaves it held.

use std::mem::MaybeUninit;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::os::errno_rc;

use super::cell::{CellLock, CellLocked};

pub type Pthread = CellLocked<libc::pthread_mutex_t>;
pub type PthreadRw = CellLocked<libc::pthread_rwlock_t>;

/// A pthread function on an attribute object or a lock.
type PthreadFn<T> = unsafe extern "C" fn(*mut T) -> libc::c_int;

/// One step of setting a pthread lock up: its name (for errors) and the call, given the
/// attribute object.
type Step<'a, A> = (&'a str, &'a dyn Fn(*mut A) -> libc::c_int);

/// Makes an attribute object with `init` (named `what`), runs `steps` on it (the last
/// initialises the lock), and destroys it with `destroy` whatever happened.
///
/// # Safety
/// `init` and `destroy` are a pthread attribute type's; the steps are sound to call on
/// an initialised attribute object.
unsafe fn with_attr<A>(
    (what, init): (&str, PthreadFn<A>),
    destroy: PthreadFn<A>,
    steps: &[Step<'_, A>],
) -> Res<()> {
    let mut attr = MaybeUninit::<A>::uninit();
    let attr = attr.as_mut_ptr();
    // SAFETY: `init` initialises the attribute object at `attr` before any other use.
    errno_rc(what, unsafe { init(attr) })?;
    let result = steps
        .iter()
        .try_for_each(|(what, step)| errno_rc(what, step(attr)));
    // SAFETY: initialised above, destroyed once.
    unsafe { destroy(attr) };
    result
}

// SAFETY: a mutex excludes (read_lock is lock).
unsafe impl CellLock for libc::pthread_mutex_t {
    unsafe fn init(at: *mut Self) -> Res<()> {
        // SAFETY: the steps take the initialised attribute object; `at` is fresh, aligned
        // shared memory (the caller's promise).
        unsafe {
            with_attr(
                ("pthread_mutexattr_init", libc::pthread_mutexattr_init),
                libc::pthread_mutexattr_destroy,
                &[
                    ("pthread_mutexattr_setpshared", &|attr| {
                        libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED)
                    }),
                    ("pthread_mutexattr_setrobust", &|attr| {
                        libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST)
                    }),
                    ("pthread_mutex_init", &|attr| {
                        libc::pthread_mutex_init(at, attr)
                    }),
                ],
            )
        }
    }

    unsafe fn destroy(at: *mut Self) {
        // SAFETY: the caller's promise: initialised, unused.
        unsafe { libc::pthread_mutex_destroy(at) };
    }

    unsafe fn lock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, alive.
        match unsafe { libc::pthread_mutex_lock(at) } {
            // The holder died inside: we hold the lock now; mark the state repaired
            // (nothing to fix: a half-written record fails the run's check anyway).
            // SAFETY: we hold the mutex, as pthread_mutex_consistent requires.
            libc::EOWNERDEAD => errno_rc("pthread_mutex_consistent", unsafe {
                libc::pthread_mutex_consistent(at)
            }),
            rc => errno_rc("pthread_mutex_lock", rc),
        }
    }

    unsafe fn unlock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, held by this thread.
        errno_rc("pthread_mutex_unlock", unsafe {
            libc::pthread_mutex_unlock(at)
        })
    }
}

// SAFETY: a rwlock's write lock excludes everyone, its read lock every writer.
unsafe impl CellLock for libc::pthread_rwlock_t {
    unsafe fn init(at: *mut Self) -> Res<()> {
        // SAFETY: as for the mutex.
        unsafe {
            with_attr(
                ("pthread_rwlockattr_init", libc::pthread_rwlockattr_init),
                libc::pthread_rwlockattr_destroy,
                &[
                    ("pthread_rwlockattr_setpshared", &|attr| {
                        libc::pthread_rwlockattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED)
                    }),
                    ("pthread_rwlock_init", &|attr| {
                        libc::pthread_rwlock_init(at, attr)
                    }),
                ],
            )
        }
    }

    unsafe fn destroy(at: *mut Self) {
        // SAFETY: the caller's promise: initialised, unused.
        unsafe { libc::pthread_rwlock_destroy(at) };
    }

    unsafe fn lock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, alive.
        errno_rc("pthread_rwlock_wrlock", unsafe {
            libc::pthread_rwlock_wrlock(at)
        })
    }

    unsafe fn read_lock(at: *mut Self) -> Res<()> {
        // SAFETY: as in `lock`.
        errno_rc("pthread_rwlock_rdlock", unsafe {
            libc::pthread_rwlock_rdlock(at)
        })
    }

    unsafe fn unlock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, held (either way) by this thread.
        errno_rc("pthread_rwlock_unlock", unsafe {
            libc::pthread_rwlock_unlock(at)
        })
    }
}
