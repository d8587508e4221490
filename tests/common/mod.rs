//! Test support: keys of our own that clean up after themselves, forked children with
//! bounded waits, and pipes for handshakes. No sleeps as synchronisation: children are
//! awaited through a pidfd, handshakes go through pipes, and every wait has a bound.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use shmsem::Key;

/// Bound for waits that should finish almost at once; generous for a loaded CI machine.
pub const BOUND: Duration = Duration::from_secs(20);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A key no other test (in this or another test process) uses. Whatever SysV objects
/// carry it are removed when it is dropped, also when the test fails half-way.
pub struct TestKey(pub Key);

impl TestKey {
    pub fn new() -> TestKey {
        // 0x7d prefix (ftok keys with proj_id '}' are unlikely), then 14 bits of pid and
        // 10 bits of a per-process counter.
        let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0x3ff;
        let pid = std::process::id() & 0x3fff;
        let key = TestKey(Key::from_raw((0x7d00_0000 | (pid << 10) | n) as i32));
        key.cleanup(); // leftovers of an earlier run that was killed
        key
    }

    pub fn key(&self) -> Key {
        self.0
    }

    /// Removes any segment and semaphore set with this key.
    pub fn cleanup(&self) {
        remove_key(self.0);
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Removes the segment and semaphore set with `key`, if any (errors ignored).
pub fn remove_key(key: Key) {
    // SAFETY: shmget/semget/shmctl/semctl with plain integers; IPC_RMID takes no buffer.
    unsafe {
        let shm = libc::shmget(key.as_raw(), 0, 0);
        if shm >= 0 {
            libc::shmctl(shm, libc::IPC_RMID, std::ptr::null_mut());
        }
        let sem = libc::semget(key.as_raw(), 0, 0);
        if sem >= 0 {
            libc::semctl(sem, 0, libc::IPC_RMID);
        }
    }
}

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

/// Is `fd` readable within `timeout`? (poll, EINTR retried against the deadline.)
pub fn poll_readable(fd: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one pollfd, a local.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc > 0 {
            return true;
        }
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

/// A pipe for handshakes between parent and child. Reads are bounded.
pub struct Pipe {
    pub read: OwnedFd,
    pub write: Option<OwnedFd>,
}

impl Pipe {
    pub fn new() -> Pipe {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the local array.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are fresh and ours.
        unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: Some(OwnedFd::from_raw_fd(fds[1])),
            }
        }
    }

    /// Writes all of `bytes` (async-signal-safe: usable in a forked child).
    pub fn send(&self, bytes: &[u8]) {
        let fd = self.write.as_ref().expect("write end closed").as_raw_fd();
        let mut done = 0;
        while done < bytes.len() {
            // SAFETY: writes from a live slice.
            let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            done += n as usize;
        }
    }

    pub fn send_i32(&self, v: i32) {
        self.send(&v.to_ne_bytes());
    }

    /// Closes this process's write end (so the reader sees EOF once all writers did).
    pub fn close_write(&mut self) {
        self.write = None;
    }

    /// Reads exactly `buf.len()` bytes within `timeout`; false on timeout or EOF.
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut done = 0;
        while done < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if !poll_readable(self.read.as_raw_fd(), left) {
                return false;
            }
            // SAFETY: reads into a live slice.
            let n = unsafe {
                libc::read(
                    self.read.as_raw_fd(),
                    buf[done..].as_mut_ptr().cast(),
                    buf.len() - done,
                )
            };
            if n == 0 {
                return false;
            }
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return false;
            }
            done += n as usize;
        }
        true
    }

    /// Reads one byte within [`BOUND`], panicking on timeout or EOF.
    pub fn recv_byte(&self) -> u8 {
        let mut b = [0u8];
        assert!(
            self.recv_timeout(&mut b, BOUND),
            "no byte on the pipe within {BOUND:?}"
        );
        b[0]
    }

    pub fn recv_i32(&self) -> i32 {
        let mut b = [0u8; 4];
        assert!(
            self.recv_timeout(&mut b, BOUND),
            "no i32 on the pipe within {BOUND:?}"
        );
        i32::from_ne_bytes(b)
    }

    /// Blocks (bounded) until every write end is closed: a start gate for children.
    pub fn wait_eof(&self, timeout: Duration) -> bool {
        let mut b = [0u8];
        if !poll_readable(self.read.as_raw_fd(), timeout) {
            return false;
        }
        // SAFETY: reads into a local byte.
        let n = unsafe { libc::read(self.read.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        n == 0
    }
}

/// Polls `cond` until it holds, at most `timeout`. For conditions that have no wait
/// primitive (a semaphore's waiter count): it re-checks real state, it never assumes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Does any SysV object with `key` exist?
pub fn key_in_use(key: Key) -> (bool, bool) {
    // SAFETY: lookups with plain integers.
    unsafe {
        (
            libc::shmget(key.as_raw(), 0, 0) >= 0,
            libc::semget(key.as_raw(), 0, 0) >= 0,
        )
    }
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
