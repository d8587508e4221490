//! This process's pid and its fork generation, cached, and refreshed in the child after
//! `fork`.
//!
//! The pid is only ever *reported* (guards and poison reports name it; it is never used
//! to decide whether another process lives: see `lease.rs`). What tells "am I still the
//! process that did this?" is the fork generation: a number that every `fork` child gets
//! anew. A pid cannot answer that question: a child forked into a new PID namespace can
//! have the same pid number as its parent had in its own (both can be 1).
//!
//! Guards remember the pid that took them (a guard dropped in a forked child must not
//! release the parent's lock), so the pid is read on every lock and unlock. `getpid` is a
//! system call (glibc stopped caching it), which would add a third syscall to a
//! two-syscall lock; the cache costs one relaxed load. A `pthread_atfork` child handler
//! refreshes it, so it stays right across `fork` (also `libc::fork`, which runs the
//! handlers). A child made with a raw `clone` syscall, which runs no handlers, must not
//! use shmsem guards it inherited.

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, Ordering};

static PID: AtomicI32 = AtomicI32::new(0);

/// This process's fork generation: 1 in the first process, and a value no ancestor had in
/// every child after `fork` (the child handler draws it from `NEXT_GENERATION`, which the
/// child inherited as it was at the fork, so a child's generation is above its parent's).
static GENERATION: AtomicU32 = AtomicU32::new(1);
static NEXT_GENERATION: AtomicU32 = AtomicU32::new(2);

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
    let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
    GENERATION.store(generation, Ordering::Relaxed);
}

/// This process's fork generation (see the module docs): equal for every thread of one
/// process, different in each process descended from it by `fork`. Registers the fork
/// handler on first use (every managed handle calls this when it is made, before any
/// fork it could be inherited through).
///
/// The answer never depends on whether the handler is registered yet: a thread that asks
/// while another registers gets the same value as every later call in this process (an
/// earlier version answered with the pid in that window, and a guard taken then never
/// unlocked). Should registration fail (it cannot, short of memory), children keep their
/// parent's generation: fork is then not detected.
#[inline]
pub(crate) fn generation() -> u32 {
    if ATFORK.load(Ordering::Relaxed) == UNREGISTERED {
        init();
    }
    GENERATION.load(Ordering::Relaxed)
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
