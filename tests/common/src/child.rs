//! Forked children: [`fork`] runs a closure in a child and exits with its result; a
//! [`Child`] is awaited with a bound (through a pidfd) and killed if it is left behind.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::BOUND;
use crate::pipe::poll_readable;

static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// The default panic hook takes std's stderr and backtrace locks, which another test
/// thread may have held at the moment of fork: in a forked child it could block forever.
/// This hook (installed in the parent, before the first fork) makes a child report its
/// panic with one raw write(2) instead.
fn install_child_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_FORKED_CHILD.load(Ordering::Relaxed) {
                let msg = format!("forked child {} panicked: {info}\n", std::process::id());
                // SAFETY: writes from a live buffer to fd 2.
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            } else {
                previous(info);
            }
        }));
    });
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// A forked child. Dropping it kills and reaps it if it is still there.
pub struct Child {
    pub pid: i32,
    reaped: bool,
}

/// Forks; the child runs `f` and exits with its return value (101 if it panics). The
/// child must not print through std (another test thread may hold the stdout lock at
/// fork time); report through the exit code or a pipe.
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    install_child_panic_hook();
    // SAFETY: fork has no preconditions; the child only runs `f` and then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        IN_FORKED_CHILD.store(true, Ordering::Relaxed);
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit ends the child without running the parent's atexit handlers or
        // the test harness's destructors.
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

/// [`fork`], the child dropping root first ([`become_nobody`]): for permission tests.
pub fn fork_as_nobody(f: impl FnOnce() -> i32) -> Child {
    fork(|| {
        become_nobody();
        f()
    })
}

/// Drops root in a forked child: group and user 65534 (nobody).
pub fn become_nobody() {
    // SAFETY: plain syscalls on this (child) process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
}

impl Child {
    /// Waits for the child to end, at most `timeout`; panics (after killing it) if it
    /// does not.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Exit {
        match self.try_wait_timeout(timeout) {
            Some(exit) => exit,
            None => {
                self.kill(libc::SIGKILL);
                let _ = self.reap();
                panic!("child {} did not exit within {timeout:?}", self.pid);
            }
        }
    }

    /// Waits at most `timeout` for the child to end; `None` if it is still running.
    pub fn try_wait_timeout(&mut self, timeout: Duration) -> Option<Exit> {
        // SAFETY: pidfd_open with our own child's pid and no flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) } as i32;
        assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if !poll_readable(fd.as_raw_fd(), timeout) {
            return None;
        }
        Some(self.reap())
    }

    /// Waits for the child (bound: [`BOUND`]) and returns its exit code, panicking if it
    /// was killed by a signal.
    pub fn join(mut self) -> i32 {
        match self.wait_timeout(BOUND) {
            Exit::Code(c) => c,
            Exit::Signal(s) => panic!("child {} killed by signal {s}", self.pid),
        }
    }

    fn reap(&mut self) -> Exit {
        let mut status = 0;
        // SAFETY: waitpid on our own child, writing into a local.
        let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        assert_eq!(rc, self.pid, "waitpid: {}", std::io::Error::last_os_error());
        self.reaped = true;
        if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else {
            Exit::Signal(libc::WTERMSIG(status))
        }
    }

    pub fn kill(&self, sig: i32) {
        if !self.reaped {
            // SAFETY: a signal to our own unreaped child (its pid cannot be reused yet).
            unsafe { libc::kill(self.pid, sig) };
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill(libc::SIGKILL);
            let mut status = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }
}
