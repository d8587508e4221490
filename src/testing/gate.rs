//! Lining processes up without sleeps: a [`Gate`] one process opens and any number wait
//! at, and a [`Latch`] any number arrive at and one waits on. Both are eventfds made
//! before the fork, so every child has them; both are usable in a forked child (plain
//! `write`/`poll`/`read` calls).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::BOUND;
use super::pipe::poll_readable;

fn eventfd(flags: i32) -> OwnedFd {
    // SAFETY: eventfd with an initial value and flags; no memory is passed.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | flags) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Adds 1 to an eventfd's counter (`write(2)` only).
fn add_one(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    loop {
        // SAFETY: writes 8 bytes from a live local array.
        let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// A start line: closed until one process [`open`](Gate::open)s it, then open for good.
/// Any number of processes (forked after the gate was made) [`wait`](Gate::wait) at it.
///
/// The usual shape, with a [`Latch`] for "everyone is at the line": children set up,
/// arrive, wait at the gate; the parent waits for all arrivals, then opens the gate, so
/// that they start together (or so that the parent can look at the state they are in
/// while they wait).
///
/// ```
/// use shmsem::Queue;
/// use shmsem::testing::{BOUND, Gate, Latch, TestKey, fork};
///
/// let key = TestKey::new();
/// let k = key.key(); // a Key is Copy: each child's closure takes its own
/// let queue = Queue::create(k, 4096)?;
/// let (ready, go) = (Latch::new(), Gate::new());
/// let senders: Vec<_> = (0..3u8)
///     .map(|i| {
///         let (ready, go) = (&ready, &go);
///         fork(move || {
///             let q = Queue::open(k).unwrap();
///             ready.arrive();
///             go.wait();
///             q.send(&[i]).unwrap();
///             0
///         })
///     })
///     .collect();
/// assert_eq!(ready.wait_timeout(3, BOUND), 3); // all three opened the queue
/// assert_eq!(queue.try_recv(&mut Vec::new()).unwrap_err().kind(), shmsem::ErrorKind::WouldBlock);
/// go.open();
/// let mut got = Vec::new();
/// let mut message = Vec::new();
/// for _ in 0..3 {
///     queue.recv_timeout(&mut message, BOUND)?;
///     got.push(message[0]);
/// }
/// got.sort();
/// assert_eq!(got, [0, 1, 2]);
/// for s in senders {
///     assert_eq!(s.join(), 0);
/// }
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Debug)]
pub struct Gate {
    fd: OwnedFd,
}

impl Gate {
    /// A closed gate.
    ///
    /// # Panics
    /// If `eventfd` fails (out of descriptors).
    #[allow(clippy::new_without_default)] // each call makes a gate: not a default
    pub fn new() -> Gate {
        Gate { fd: eventfd(0) }
    }

    /// Opens the gate: every process waiting at it goes on, and later waits return at
    /// once. Opening an open gate does nothing more.
    pub fn open(&self) {
        add_one(&self.fd);
    }

    /// Is it open?
    pub fn is_open(&self) -> bool {
        poll_readable(self.fd.as_raw_fd(), Duration::ZERO)
    }

    /// Waits until the gate is open, at most `timeout`; whether it is.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        // Nobody reads the counter: once above 0 it stays there, and the gate open.
        poll_readable(self.fd.as_raw_fd(), timeout)
    }

    /// Waits until the gate is open.
    ///
    /// # Panics
    /// If it is still closed after [`BOUND`].
    pub fn wait(&self) {
        assert!(
            self.wait_timeout(BOUND),
            "the gate was not opened within {BOUND:?}"
        );
    }
}

/// A count of arrivals: any number of processes [`arrive`](Latch::arrive) (each call
/// counts one), and a process waits until `n` arrivals are there, taking them
/// ([`wait`](Latch::wait)). Arriving never blocks, and arrivals before the wait are
/// counted as well as those during it. See [`Gate`] for the two together.
///
/// ```
/// use shmsem::testing::{BOUND, Latch, fork};
///
/// let done = Latch::new();
/// let children: Vec<_> = (0..4).map(|_| fork(|| { done.arrive(); 0 })).collect();
/// assert_eq!(done.wait_timeout(4, BOUND), 4);
/// assert_eq!(done.wait_timeout(1, std::time::Duration::ZERO), 0); // nobody else
/// for c in children {
///     assert_eq!(c.join(), 0);
/// }
/// ```
#[derive(Debug)]
pub struct Latch {
    fd: OwnedFd,
}

impl Latch {
    /// A latch with no arrivals.
    ///
    /// # Panics
    /// If `eventfd` fails (out of descriptors).
    #[allow(clippy::new_without_default)] // each call makes a latch: not a default
    pub fn new() -> Latch {
        // Semaphore mode: each read takes one arrival.
        Latch {
            fd: eventfd(libc::EFD_SEMAPHORE),
        }
    }

    /// Counts one arrival (`write(2)` only: usable in a forked child).
    pub fn arrive(&self) {
        add_one(&self.fd);
    }

    /// Waits at most `timeout` for `n` arrivals and takes them; returns how many it took:
    /// `n`, or fewer if the time ran out (those are taken too).
    pub fn wait_timeout(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut taken = 0;
        let mut value = [0u8; 8];
        while taken < n {
            // SAFETY: reads 8 bytes into a live local array.
            let rc = unsafe { libc::read(self.fd.as_raw_fd(), value.as_mut_ptr().cast(), 8) };
            if rc == 8 {
                taken += 1;
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {}
                _ => break,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // Readable: the count is above 0 (another waiter may take it first: then
            // the read above says EAGAIN again, and this waits again).
            if !poll_readable(self.fd.as_raw_fd(), left) {
                break;
            }
        }
        taken
    }

    /// Waits for `n` arrivals and takes them.
    ///
    /// # Panics
    /// If fewer than `n` arrived within [`BOUND`].
    pub fn wait(&self, n: usize) {
        let taken = self.wait_timeout(n, BOUND);
        assert!(taken == n, "only {taken} of {n} arrivals within {BOUND:?}");
    }
}
