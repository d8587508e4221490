//! This process's pid, cached, and refreshed in the child after `fork`.
//!
//! Guards remember the pid that took them (a guard dropped in a forked child must not
//! release the parent's lock), so the pid is read on every lock and unlock. `getpid` is a
//! system call (glibc stopped caching it), which would add a third syscall to a
//! two-syscall lock; the cache costs one relaxed load. A `pthread_atfork` child handler
//! refreshes it, so it stays right across `fork` (also `libc::fork`, which runs the
//! handlers). A child made with a raw `clone` syscall, which runs no handlers, must not
//! use shmsem guards it inherited.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

static PID: AtomicI32 = AtomicI32::new(0);

/// Registration of the fork handler: not yet, under way (another thread), done, failed.
/// An atomic, not a `Once`: a `Once` caught mid-run by `fork` would block the child
/// forever.
static ATFORK: AtomicU8 = AtomicU8::new(UNREGISTERED);
const UNREGISTERED: u8 = 0;
const REGISTERING: u8 = 1;
const REGISTERED: u8 = 2;
const FAILED: u8 = 3;

extern "C" fn refresh_in_child() {
    // SAFETY: getpid has no preconditions and is async-signal-safe, as a fork child
    // handler must be.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

/// This process's pid.
#[inline]
pub(crate) fn current() -> i32 {
    match PID.load(Ordering::Relaxed) {
        0 => init(),
        pid => pid,
    }
}

#[cold]
fn init() -> i32 {
    if ATFORK
        .compare_exchange(
            UNREGISTERED,
            REGISTERING,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        // SAFETY: registers a handler that only calls getpid and stores an atomic.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(refresh_in_child)) };
        let state = if rc == 0 { REGISTERED } else { FAILED };
        ATFORK.store(state, Ordering::Release);
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // Cache only once the handler is in place; otherwise (registration failed, or another
    // thread is registering right now) answer from getpid every time.
    if ATFORK.load(Ordering::Acquire) == REGISTERED {
        PID.store(pid, Ordering::Relaxed);
    }
    pid
}
