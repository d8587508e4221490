//! The kernel's plain wake-up channels, one per direction: a pipe pair (each handoff a
//! 16-byte message: its number and the sender's stamp, one `write` and one `read`), and an
//! eventfd pair (each handoff writes its number + 1 into the receiver's counter, which
//! the receiver's `read` returns and resets; the stamp goes through a shared mapping,
//! stored before the `write`). Made once, used by every run; after each, nothing may be
//! left to read. No wait here can time out on its own: the run's watchdog bounds them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use shmsem_benchmarks::Res;
use shmsem_benchmarks::clock::now_ns;
use shmsem_benchmarks::os::{check_rc, pipe, readable_polls, retry_eintr};
use shmsem_benchmarks::pages::SharedPages;

use crate::sides::{Endpoint, Plan, Sides};

/// `inbox[s]` is read by side `s`, written by the other one.
struct Inboxes {
    read: [OwnedFd; 2],
    write: [RawFd; 2],
}

/// Fails if any of `fds` has something to read (a handoff nobody took).
fn nothing_pending(fds: &[RawFd]) -> Res<()> {
    let mut polls = readable_polls(fds);
    // SAFETY: `polls` is a valid array of polls.len() entries; timeout 0: no wait.
    let n = retry_eintr("poll", || unsafe {
        libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, 0)
    })?;
    if n > 0 {
        return Err("WRONG COUNT: a handoff is left unread after the run".into());
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes in one `read` (a short one is an error).
#[inline]
fn read_exact(fd: RawFd, buf: &mut [u8], what: &str) -> Res<()> {
    // SAFETY: reads at most buf.len() bytes into buf.
    let n = retry_eintr(what, || unsafe {
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
    })?;
    if n as usize != buf.len() {
        return Err(format!("{what}: {n} bytes, not {}", buf.len()).into());
    }
    Ok(())
}

/// Writes all of `buf` in one `write` (a short one is an error).
#[inline]
fn write_all(fd: RawFd, buf: &[u8], what: &str) -> Res<()> {
    // SAFETY: writes buf.len() bytes from buf.
    let n = retry_eintr(what, || unsafe {
        libc::write(fd, buf.as_ptr().cast(), buf.len())
    })?;
    if n as usize != buf.len() {
        return Err(format!("{what}: {n} bytes, not {}", buf.len()).into());
    }
    Ok(())
}

/// Two pipes.
pub struct Pipes {
    inbox: Inboxes,
    /// Keeps the write ends open (`inbox.write` borrows their numbers).
    _write: [OwnedFd; 2],
}

impl Pipes {
    pub fn new() -> Res<Pipes> {
        let (r0, w0) = pipe()?;
        let (r1, w1) = pipe()?;
        Ok(Pipes {
            inbox: Inboxes {
                read: [r0, r1],
                write: [w0.as_raw_fd(), w1.as_raw_fd()],
            },
            _write: [w0, w1],
        })
    }
}

impl Sides for Pipes {
    type End<'a> = PipeEnd;

    fn reset(&self) -> Res<()> {
        Ok(())
    }

    fn endpoint(&self, me: usize) -> Res<PipeEnd> {
        Ok(PipeEnd {
            input: self.inbox.read[me].as_raw_fd(),
            output: self.inbox.write[1 - me],
        })
    }

    fn check_end(&self, _: &Plan) -> Res<()> {
        nothing_pending(&[
            self.inbox.read[0].as_raw_fd(),
            self.inbox.read[1].as_raw_fd(),
        ])
    }
}

pub struct PipeEnd {
    input: RawFd,
    output: RawFd,
}

impl Endpoint for PipeEnd {
    #[inline]
    fn send(&mut self, k: u64) -> Res<()> {
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&k.to_ne_bytes());
        msg[8..].copy_from_slice(&now_ns().to_ne_bytes());
        write_all(self.output, &msg, "write (pipe)")
    }

    #[inline]
    fn recv(&mut self) -> Res<(u64, u64)> {
        let mut msg = [0u8; 16];
        read_exact(self.input, &mut msg, "read (pipe)")?;
        let word = |i: usize| u64::from_ne_bytes(msg[i..i + 8].try_into().unwrap());
        Ok((word(0), word(8)))
    }
}

/// Two eventfds (counter mode), and the stamps: `stamps[s]` written by side `s`.
pub struct EventFds {
    fds: [OwnedFd; 2],
    stamps: SharedPages,
}

fn eventfd() -> Res<OwnedFd> {
    // SAFETY: eventfd takes plain integers.
    let fd = check_rc("eventfd", unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: a fresh descriptor, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl EventFds {
    pub fn new() -> Res<EventFds> {
        Ok(EventFds {
            fds: [eventfd()?, eventfd()?],
            stamps: SharedPages::new(2 * size_of::<u64>())?,
        })
    }
}

impl Sides for EventFds {
    type End<'a> = EventEnd<'a>;

    fn reset(&self) -> Res<()> {
        Ok(())
    }

    fn endpoint(&self, me: usize) -> Res<EventEnd<'_>> {
        // SAFETY: the mapping holds two u64s, page-aligned (aligned for AtomicU64),
        // zero-filled (valid atomics), and outlives the borrow.
        let stamps = unsafe { &*self.stamps.ptr().cast::<[AtomicU64; 2]>() };
        Ok(EventEnd {
            input: self.fds[me].as_raw_fd(),
            output: self.fds[1 - me].as_raw_fd(),
            mine: &stamps[me],
            theirs: &stamps[1 - me],
        })
    }

    fn check_end(&self, _: &Plan) -> Res<()> {
        nothing_pending(&[self.fds[0].as_raw_fd(), self.fds[1].as_raw_fd()])
    }
}

pub struct EventEnd<'a> {
    input: RawFd,
    output: RawFd,
    mine: &'a AtomicU64,
    theirs: &'a AtomicU64,
}

impl Endpoint for EventEnd<'_> {
    #[inline]
    fn send(&mut self, k: u64) -> Res<()> {
        self.mine.store(now_ns(), Ordering::Release);
        write_all(self.output, &(k + 1).to_ne_bytes(), "write (eventfd)")
    }

    #[inline]
    fn recv(&mut self) -> Res<(u64, u64)> {
        let mut value = [0u8; 8];
        read_exact(self.input, &mut value, "read (eventfd)")?;
        // Two handoffs in one read would add up: the number check catches it.
        let k = u64::from_ne_bytes(value).wrapping_sub(1);
        Ok((k, self.theirs.load(Ordering::Acquire)))
    }
}
