//! Pipes for handshakes between a test and its children ([`Pipe`]), with bounded reads.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::BOUND;

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
