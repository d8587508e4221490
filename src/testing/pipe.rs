//! Pipes between a test and its children ([`Pipe`]), with bounded reads; [`poll_readable`].

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::BOUND;

/// Is `fd` readable (or at end of file, or hung up) within `timeout`? `poll(2)`, with
/// `EINTR` retried against one deadline. `fd` is a `RawFd`, or a borrowed one
/// (`owned.as_fd()`); a pidfd is readable once its process has ended.
pub fn poll_readable(fd: impl AsRawFd, timeout: Duration) -> bool {
    let fd = fd.as_raw_fd();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // Rounded up, so that a wait never ends (and reports "not readable") early.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
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

/// A pipe for messages between processes: made before the fork, so both sides have it.
/// Writes are plain `write(2)` calls (usable in a forked child); reads are bounded.
///
/// The ends are public, as `std::process::Child`'s pipes are: for `poll`, or for handing
/// one end to a process you `exec`.
///
/// ```
/// use shmsem::testing::{Pipe, fork};
///
/// let pipe = Pipe::new();
/// let child = fork(|| {
///     // In the child: report a number without printing.
///     pipe.send_i32(std::process::id() as i32);
///     0
/// });
/// let pid = pipe.recv_i32(); // bounded: panics after BOUND without one
/// assert_eq!(pid, child.pid());
/// assert_eq!(child.join(), 0);
/// ```
#[derive(Debug)]
pub struct Pipe {
    /// The read end.
    pub read: OwnedFd,
    /// The write end; `None` once [`close_write`](Pipe::close_write) closed it.
    pub write: Option<OwnedFd>,
}

impl Pipe {
    /// A new pipe (`O_CLOEXEC`: the ends do not leak into programs the test runs).
    ///
    /// # Panics
    /// If `pipe2` fails (out of descriptors).
    #[allow(clippy::new_without_default)] // each call makes a pipe: not a default
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

    /// Writes all of `bytes`, with `write(2)` only (nothing that allocates or locks:
    /// usable in a forked child). A reader that is gone is not reported here: the
    /// reading side's bounded wait is what notices missing bytes.
    ///
    /// # Panics
    /// If this process closed its write end.
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

    /// Writes `v` (native byte order, 4 bytes); see [`send`](Pipe::send).
    pub fn send_i32(&self, v: i32) {
        self.send(&v.to_ne_bytes());
    }

    /// Closes this process's write end (the reader sees end of file once every process
    /// that had it closed it, or ended).
    pub fn close_write(&mut self) {
        self.write = None;
    }

    /// Reads exactly `buf.len()` bytes within `timeout`; false on timeout or end of file.
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

    /// Reads one byte.
    ///
    /// # Panics
    /// If none arrives within [`BOUND`], or at end of file.
    pub fn recv_byte(&self) -> u8 {
        let mut b = [0u8];
        assert!(
            self.recv_timeout(&mut b, BOUND),
            "no byte on the pipe within {BOUND:?}"
        );
        b[0]
    }

    /// Reads an `i32` written by [`send_i32`](Pipe::send_i32).
    ///
    /// # Panics
    /// If none arrives within [`BOUND`], or at end of file.
    pub fn recv_i32(&self) -> i32 {
        let mut b = [0u8; 4];
        assert!(
            self.recv_timeout(&mut b, BOUND),
            "no i32 on the pipe within {BOUND:?}"
        );
        i32::from_ne_bytes(b)
    }

    /// Waits (at most `timeout`) until every write end is closed, every process that had
    /// one having closed it or ended; false on timeout, or if a byte came instead.
    /// Reading end of file is how a parent learns that all its children have gone past
    /// a point, or how children wait for a parent's start signal (though a [`Gate`]
    /// needs no closing of ends: see there).
    ///
    /// [`Gate`]: super::Gate
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
