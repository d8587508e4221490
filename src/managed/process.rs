//! This process's identity across `fork`: its fork generation, a number every `fork`
//! child gets anew, refreshed by a `pthread_atfork` child handler.
//!
//! It answers "am I still the process that did this?": a guard dropped in a forked child
//! must not release the parent's lock, and a handle inherited through fork must claim its
//! own lease (`lease.rs`), since `SEM_UNDO` state is not inherited. A pid cannot answer
//! that: a child forked into a new PID namespace can have the same pid number as its
//! parent had in its own (both can be 1). Nothing in the library decides anything from a
//! pid. A child made with a raw `clone` syscall, which runs no fork handlers, must not use
//! shmsem guards or handles it inherited.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

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
    // Only atomics: async-signal-safe, as a fork child handler must be.
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
        register();
    }
    GENERATION.load(Ordering::Relaxed)
}

#[cold]
fn register() {
    if ATFORK
        .compare_exchange(
            UNREGISTERED,
            REGISTERING,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    {
        // SAFETY: registers a child handler that only updates atomics.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(refresh_in_child)) };
        let state = if rc == 0 { REGISTERED } else { FAILED };
        ATFORK.store(state, Ordering::Release);
    }
}
