//! The pthread locks, process-shared, in an anonymous shared mapping with the record
//! right behind them: a robust `pthread_mutex_t` (`EOWNERDEAD` is repaired with
//! `pthread_mutex_consistent`), and a `pthread_rwlock_t` of glibc's default kind, which
//! prefers readers. POSIX has no robust rwlocks: a holder that dies leaves it held.

use std::mem::MaybeUninit;

use libc::{
    PTHREAD_MUTEX_ROBUST, PTHREAD_PROCESS_SHARED, pthread_mutexattr_destroy,
    pthread_mutexattr_init, pthread_rwlockattr_destroy, pthread_rwlockattr_init,
};

use shmsem_benchmarks::Res;
use shmsem_benchmarks::os::errno_rc;

use super::cell::{CellLock, CellLocked};

pub type Pthread = CellLocked<libc::pthread_mutex_t>;
pub type PthreadRw = CellLocked<libc::pthread_rwlock_t>;

/// A pthread function on an attribute object or a lock.
type PthreadFn<T> = unsafe extern "C" fn(*mut T) -> libc::c_int;

/// A pthread call whose error is its return value, named after the function for the
/// error: `pthread!(pthread_mutex_lock(at))` is `errno_rc("pthread_mutex_lock", ...)`.
/// The call is unsafe: the caller's `unsafe` block (and its SAFETY comment) covers it.
macro_rules! pthread {
    ($f:ident($($arg:expr),*)) => {
        errno_rc(stringify!($f), libc::$f($($arg),*))
    };
}

/// An initialised pthread attribute object of type `A`, destroyed when dropped.
struct Attr<A> {
    /// On the heap, so that the object never moves while it is initialised.
    attr: Box<MaybeUninit<A>>,
    destroy: PthreadFn<A>,
}

impl<A> Attr<A> {
    /// Initialises one with `init`; `destroy` destroys it on drop.
    ///
    /// # Safety
    /// `init` and `destroy` are the init and destroy functions of attribute type `A`.
    unsafe fn new(init: PthreadFn<A>, destroy: PthreadFn<A>) -> Res<Self> {
        let mut attr = Box::new(MaybeUninit::<A>::uninit());
        // SAFETY: `init` initialises the (live, aligned) attribute object it is given.
        errno_rc("pthread_*attr_init", unsafe { init(attr.as_mut_ptr()) })?;
        Ok(Attr { attr, destroy })
    }

    /// The object, for the attribute setters and the lock's init.
    fn ptr(&mut self) -> *mut A {
        self.attr.as_mut_ptr()
    }
}

impl<A> Drop for Attr<A> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once, with its type's destroy function.
        unsafe { (self.destroy)(self.attr.as_mut_ptr()) };
    }
}

// SAFETY: a mutex excludes (read_lock is lock).
unsafe impl CellLock for libc::pthread_mutex_t {
    unsafe fn init(at: *mut Self) -> Res<()> {
        // SAFETY: a mutex attribute object for the mutex attribute calls; `at` is fresh,
        // aligned shared memory (the caller's promise).
        unsafe {
            let mut attr = Attr::new(pthread_mutexattr_init, pthread_mutexattr_destroy)?;
            let a = attr.ptr();
            pthread!(pthread_mutexattr_setpshared(a, PTHREAD_PROCESS_SHARED))?;
            pthread!(pthread_mutexattr_setrobust(a, PTHREAD_MUTEX_ROBUST))?;
            pthread!(pthread_mutex_init(at, a))
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
            libc::EOWNERDEAD => unsafe { pthread!(pthread_mutex_consistent(at)) },
            rc => errno_rc("pthread_mutex_lock", rc),
        }
    }

    unsafe fn unlock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, held by this thread.
        unsafe { pthread!(pthread_mutex_unlock(at)) }
    }
}

// SAFETY: a rwlock's write lock excludes everyone, its read lock every writer.
unsafe impl CellLock for libc::pthread_rwlock_t {
    unsafe fn init(at: *mut Self) -> Res<()> {
        // SAFETY: as for the mutex, with the rwlock's attribute calls.
        unsafe {
            let mut attr = Attr::new(pthread_rwlockattr_init, pthread_rwlockattr_destroy)?;
            let a = attr.ptr();
            pthread!(pthread_rwlockattr_setpshared(a, PTHREAD_PROCESS_SHARED))?;
            pthread!(pthread_rwlock_init(at, a))
        }
    }

    unsafe fn destroy(at: *mut Self) {
        // SAFETY: the caller's promise: initialised, unused.
        unsafe { libc::pthread_rwlock_destroy(at) };
    }

    unsafe fn lock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, alive.
        unsafe { pthread!(pthread_rwlock_wrlock(at)) }
    }

    unsafe fn read_lock(at: *mut Self) -> Res<()> {
        // SAFETY: as in `lock`.
        unsafe { pthread!(pthread_rwlock_rdlock(at)) }
    }

    unsafe fn unlock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise: initialised, held (either way) by this thread.
        unsafe { pthread!(pthread_rwlock_unlock(at)) }
    }
}
