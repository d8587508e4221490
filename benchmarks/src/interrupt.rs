//! Ctrl-C (SIGINT) and SIGTERM: the parent notes them and unwinds at its next wait,
//! removing every object it made on the way; the workers die (default action).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::Res;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Installs the handler (in the parent, before it forks; [`crate::procs`] restores the
/// default in every worker).
pub fn catch_interrupts() {
    // SAFETY: installs a handler that only stores an atomic flag (async-signal-safe). No
    // SA_RESTART: a blocked poll returns EINTR, so the flag is seen at once.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// An error once Ctrl-C or SIGTERM came.
pub fn check_interrupted() -> Res<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}
