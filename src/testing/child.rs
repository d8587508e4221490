//! Forked children: [`fork`] runs a closure in a child that exits with its result;
//! a [`Child`] is awaited with a bound (through a pidfd) and killed if it overruns it;
//! [`run_in_child`] does both at once, with a watchdog.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::BOUND;
use super::pipe::poll_readable;

static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// The default panic hook takes std's stderr and backtrace locks, which another test
/// thread may have held at the moment of fork: in a forked child it could block forever.
/// This hook (installed in the parent, before its first fork, by the forking thread, so
/// no child can catch the `Once` half-run) makes a child report its panic with one raw
/// write(2) instead.
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

/// How a child ended: its exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// It exited (returned from its closure, or called `exit`) with this code (0..=255).
    Code(i32),
    /// A signal killed it (`libc::SIGKILL`, `libc::SIGSEGV`, ...).
    Signal(i32),
}

impl Exit {
    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }

    /// The signal, if one killed it.
    pub fn signal(self) -> Option<i32> {
        match self {
            Exit::Signal(s) => Some(s),
            Exit::Code(_) => None,
        }
    }

    /// Exited with code 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A child that was still running when its bound ran out: it has been killed (`SIGKILL`)
/// and reaped. The error of [`Child::wait_or_kill`] and [`run_in_child`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Overran {
    /// The child's pid.
    pub pid: i32,
    /// How long it was waited for.
    pub bound: Duration,
    /// How it ended after the kill: `Signal(SIGKILL)`, unless it exited by itself just
    /// before the kill landed.
    pub exit: Exit,
}

impl fmt::Display for Overran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "child {} was still running after {:?}: killed ({})",
            self.pid, self.bound, self.exit
        )
    }
}

impl std::error::Error for Overran {}

/// A forked child of this process (from [`fork`]). Waits on it are bounded; dropping it
/// kills (`SIGKILL`) and reaps it if it is still there, so a test that fails half-way
/// leaves no process behind.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    /// Readable once the child has ended; `None` on kernels without pidfd_open (before
    /// 5.3) or where a seccomp filter refuses it: then waits poll `waitpid(WNOHANG)`.
    pidfd: Option<OwnedFd>,
    exit: Option<Exit>,
}

/// Forks; the child runs `f` and exits (`_exit`) with its return value, or with 101 if
/// it panics. See the [module docs](super#rules-for-the-child) for what the child may do:
/// no printing through std, no locks other threads may hold; report through the exit
/// code or a [`Pipe`](super::Pipe).
///
/// ```
/// use shmsem::testing::{BOUND, Exit, fork};
///
/// let mut child = fork(|| 7);
/// assert_eq!(child.wait_timeout(BOUND), Exit::Code(7));
///
/// let mut child = fork(|| panic!("in the child"));
/// assert_eq!(child.wait_timeout(BOUND), Exit::Code(101));
/// ```
///
/// # Panics
/// If `fork` fails (`EAGAIN`: the process limit).
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    fork_with(f, false)
}

/// [`fork`], the child giving up root first ([`become_nobody`]): for tests of
/// permissions, which root would bypass. The test must run as root (the child exits
/// with 101 otherwise).
pub fn fork_as_nobody(f: impl FnOnce() -> i32) -> Child {
    fork(|| {
        become_nobody();
        f()
    })
}

/// Gives up root in a forked child: no supplementary groups, group and user 65534
/// (`nobody`). Objects made with mode `0o600` by root are then out of its reach.
///
/// # Panics
/// If a call fails (the process is not root).
pub fn become_nobody() {
    // SAFETY: plain syscalls on this (child) process; setgroups(0, NULL) reads nothing.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setgid(65534), 0, "setgid");
        assert_eq!(libc::setuid(65534), 0, "setuid");
    }
}

/// Runs `f` in a forked child under a watchdog and returns how the child ended: its exit
/// code (the closure's return value; 101 if it panicked) or the signal that killed it.
/// A child still running after `bound` is killed and reported as [`Overran`]. The child
/// is also killed if the thread that called this dies (`PR_SET_PDEATHSIG`), so it cannot
/// outlive a test harness that was killed itself.
///
/// The [rules for the child](super#rules-for-the-child) apply to `f`.
///
/// ```
/// use std::time::Duration;
/// use shmsem::SharedMutex;
/// use shmsem::testing::{Exit, TestKey, run_in_child};
///
/// let key = TestKey::new();
/// let m = SharedMutex::create(key.key(), 0u32)?;
/// let guard = m.lock().unwrap(); // held here: the child's lock() blocks
///
/// // try_lock in another process: busy.
/// let busy = run_in_child(Duration::from_secs(20), || {
///     let m = SharedMutex::<u32>::open(key.key()).unwrap();
///     if m.try_lock().is_err() { 0 } else { 1 }
/// });
/// assert_eq!(busy, Ok(Exit::Code(0)));
///
/// // lock() in another process waits as long as the guard lives: the watchdog ends it.
/// let stuck = run_in_child(Duration::from_millis(200), || {
///     let m = SharedMutex::<u32>::open(key.key()).unwrap();
///     drop(m.lock());
///     0
/// });
/// let overran = stuck.unwrap_err();
/// assert_eq!(overran.exit, Exit::Signal(libc::SIGKILL));
/// drop(guard);
/// # Ok::<(), shmsem::Error>(())
/// ```
pub fn run_in_child(bound: Duration, f: impl FnOnce() -> i32) -> Result<Exit, Overran> {
    fork_with(f, true).wait_or_kill(bound)
}

fn fork_with(f: impl FnOnce() -> i32, die_with_parent: bool) -> Child {
    install_child_panic_hook();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork has no preconditions; the child runs only `f` (under the rules the
    // docs give) and then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        IN_FORKED_CHILD.store(true, Ordering::Relaxed);
        if die_with_parent {
            // SAFETY: prctl and getppid with plain integers, on this process.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                // The parent may have died before the prctl: then nobody waits for us.
                if libc::getppid() != parent {
                    libc::_exit(128 + libc::SIGKILL);
                }
            }
        }
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: _exit ends the child without running the parent's atexit handlers or
        // the test harness's destructors.
        unsafe { libc::_exit(code) };
    }
    // SAFETY: pidfd_open with our own, unreaped child's pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    Child {
        pid,
        // SAFETY: a fresh descriptor we own.
        pidfd: (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        exit: None,
    }
}

impl Child {
    /// The child's pid (as this process's PID namespace sees it).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits at most `bound` for the child to end; if it has not, kills it (`SIGKILL`),
    /// reaps it, and says so. After the child has ended, this returns how, at once.
    ///
    /// # Errors
    /// [`Overran`] if the child was still running after `bound`.
    pub fn wait_or_kill(&mut self, bound: Duration) -> Result<Exit, Overran> {
        match self.try_wait_timeout(bound) {
            Some(exit) => Ok(exit),
            None => {
                self.kill(libc::SIGKILL);
                Err(Overran {
                    pid: self.pid,
                    bound,
                    exit: self.reap(),
                })
            }
        }
    }

    /// Waits at most `timeout` for the child to end.
    ///
    /// # Panics
    /// If it has not ended by then, after killing and reaping it.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Exit {
        self.wait_or_kill(timeout).unwrap_or_else(|o| panic!("{o}"))
    }

    /// Waits at most `timeout` for the child to end; `None` if it is still running (it
    /// is left running).
    pub fn try_wait_timeout(&mut self, timeout: Duration) -> Option<Exit> {
        if let Some(exit) = self.exit {
            return Some(exit);
        }
        match &self.pidfd {
            Some(fd) => {
                if !poll_readable(fd.as_raw_fd(), timeout) {
                    return None;
                }
                Some(self.reap())
            }
            None => {
                let mut exit = None;
                super::wait_until(timeout, || {
                    exit = self.reap_if_ended();
                    exit.is_some()
                });
                exit
            }
        }
    }

    /// Waits for the child (at most [`BOUND`]) and returns its exit code.
    ///
    /// # Panics
    /// If a signal killed it, or it was still running after [`BOUND`] (then it is killed).
    pub fn join(mut self) -> i32 {
        match self.wait_timeout(BOUND) {
            Exit::Code(c) => c,
            Exit::Signal(s) => panic!("child {} killed by signal {s}", self.pid),
        }
    }

    /// Sends `sig` to the child, unless it has been reaped (its pid may be another
    /// process's by then). A child that has ended but is not reaped yet ignores it.
    pub fn kill(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: a signal to our own unreaped child (its pid cannot be reused yet).
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// `waitpid(WNOHANG)`: the exit if the child has ended (and reaps it).
    fn reap_if_ended(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            self.waitpid(libc::WNOHANG);
        }
        self.exit
    }

    /// Blocking `waitpid`: for a child known to have ended, or just killed.
    fn reap(&mut self) -> Exit {
        if self.exit.is_none() {
            self.waitpid(0);
        }
        self.exit.expect("reaped")
    }

    fn waitpid(&mut self, flags: i32) {
        let mut status = 0;
        let rc = loop {
            // SAFETY: waitpid on our own child, writing into a local.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if rc >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break rc;
            }
        };
        if rc == 0 {
            return; // WNOHANG: still running
        }
        assert_eq!(
            rc,
            self.pid,
            "waitpid({}): {}",
            self.pid,
            std::io::Error::last_os_error()
        );
        self.exit = Some(if libc::WIFEXITED(status) {
            Exit::Code(libc::WEXITSTATUS(status))
        } else {
            Exit::Signal(libc::WTERMSIG(status))
        });
        self.pidfd = None;
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.kill(libc::SIGKILL);
            let mut status = 0;
            // SAFETY: reaping our own child, writing into a local. Errors are ignored:
            // Drop must not panic.
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
        }
    }
}
