//! Signals without `SA_RESTART` in forked children, and storms of them
//! ([`signal_storm`]): a blocked system call returns `EINTR` on every delivery.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{BOUND, Child, Exit};

/// Counts deliveries of the signals installed by [`install_counting_handler`] in a child
/// (async-signal-safe: one atomic add).
pub static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn count_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

/// Installs a counting handler for `sig` *without* `SA_RESTART`, so a blocked system call
/// returns `EINTR` on every delivery. For forked children only.
pub fn install_counting_handler(sig: i32) -> bool {
    // SAFETY: sigaction is plain data; all-zero is a valid start (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = count_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    sa.sa_flags = 0;
    // SAFETY: sa_mask is a live sigset_t; the handler only does an atomic add.
    unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0
    }
}

/// Sends `sig` to `child` about every 5 ms until it exits (this pacing is a signal
/// generator, not synchronisation), at most [`BOUND`]. `each` runs after every signal
/// (e.g. to release the lock once enough signals hit the child while blocked).
pub fn signal_storm(child: &mut Child, sig: i32, mut each: impl FnMut()) -> Exit {
    let start = Instant::now();
    loop {
        child.kill(sig);
        each();
        if let Some(exit) = child.try_wait_timeout(Duration::from_millis(5)) {
            return exit;
        }
        assert!(
            start.elapsed() < BOUND,
            "child still running after {BOUND:?}"
        );
    }
}
