//! [`Queue`]: a bounded queue of byte messages in a System V segment, shared by any number
//! of producer and consumer processes.
//!
//! The segment holds a control block and a ring of bytes (docs/FORMAT.md, "Queue (kind
//! 3)", is the byte-level contract). Messages are copied into the ring and out of it;
//! the semaphores are used only to put a side to sleep and to wake it, so while both sides
//! are awake a message costs no system call at all.
//!
//! How the pieces fit:
//!
//! - **Records**: an 8-byte length, then the message, padded to a multiple of 8. Positions
//!   are monotonic `u64` byte counters (`head` = consumed, `tail` = published); the index
//!   into the ring is `pos % capacity`. A record may wrap around the end of the ring; its
//!   length word never does (everything is 8-aligned).
//! - **Exclusion** among producers (and among consumers) is a lock word in shared memory
//!   holding the holder's lease token (`lease.rs`), taken with a compare-and-swap and held
//!   only while copying. A waiter spins a bounded while, then sleeps in the kernel on the
//!   holder's lease; it takes the word over only when the kernel says the holder's
//!   process has ended (never from a pid, which lies across PID namespaces).
//! - **Hostile control blocks**: every value read from the control block (positions,
//!   lengths, state, lock words, counters) is checked before it is used; one that breaks
//!   an invariant is a `NotManaged` error ("corrupt queue ..."), never an access outside
//!   the ring.
//! - **Publishing**: a producer copies the whole record, *then* advances `tail`; a consumer
//!   copies the message out, *then* advances `head`. A process killed half-way therefore
//!   never makes half a message visible, nor loses anyone else's.
//! - **Sleeping** (`wake.rs`): a side that cannot go on spins a bounded while, then
//!   registers in its waiter counter, passes through the other side's lock word (which
//!   orders the registration against that side's moves without a fence on their path),
//!   re-checks, and only then sleeps in `semop(-1)` on its semaphore. The other side,
//!   after moving `tail` or `head`, reads the counter before letting go of its lock word
//!   and converts registrations into posts: one consumer's per message published, every
//!   producer's when room is freed (each needs its own amount). No `SEM_UNDO`: these are
//!   signals, not locks.

mod copy;
mod exclusion;
mod pace;
mod ring;
mod transfer;
mod typed;
mod wake;

pub use typed::QueueIter;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result, Target};
use crate::managed::header::{ANY_SIZE, Layout, ObjectKind};
use crate::managed::options::Options;
use crate::managed::pair::{Blueprint, Pair};
use crate::managed::wait::{Patience, Wait};
use crate::raw::key::Key;
use pace::Pace;
use ring::{
    CLOSED, CONTROL_SIZE, Control, LEN_SIZE, OPEN, RECORD_ALIGN, REMOVED, SLOT, Slot,
    initial_control,
};
use wake::{DATA, DEFAULT_SPIN, SPACE};

/// The queue's own semaphores (`DATA`, `SPACE`); the lease slots follow.
const NSEMS: usize = 2;

/// A bounded queue of byte messages in shared memory, for any number of producer and
/// consumer processes that agree on a [`Key`].
///
/// Every message is delivered to exactly one receiver, whole, and the messages of one
/// sender arrive in the order it sent them. [`send`](Queue::send) waits while the queue
/// is full, [`recv`](Queue::recv) while it is empty; both have `try_` and `_timeout`
/// forms. [`close`](Queue::close) ends the stream: receivers take what is left, then get
/// [`ErrorKind::Closed`].
///
/// The capacity is in bytes: each message takes 8 bytes plus its length rounded up to 8,
/// so a queue of capacity `c` holds one message of up to `c - 8` bytes
/// ([`max_message_len`](Queue::max_message_len)), or many small ones. The messages are
/// copied into the segment and out of it; while the other side keeps up, sending and
/// receiving make no system call (the semaphores only put a side to sleep and wake it).
///
/// # Crashes
///
/// - A sender killed while copying a message loses that message only; nobody ever sees
///   part of it (it becomes visible only once complete). Senders that come after take
///   over its lock word as soon as the kernel says its process has ended (they sleep on
///   its lease, docs/FORMAT.md "Leases"), in whatever PID namespace it ran.
/// - A receiver killed while copying a message out leaves it in the queue for the next
///   receiver; one killed after it took the message (the queue's `head` moved on, a
///   matter of one store) has taken it with it.
/// - A process killed while waiting in `send` or `recv` leaves its registration as a
///   sleeper behind: later that costs spurious wake-ups (a woken waiter looks, and sleeps
///   again), never a lost one. A process killed in the instant between taking a
///   sleeper's registration off the counter and posting its wake-up leaves that sleeper
///   to notice on its own, within 5 seconds.
///
/// - A producer killed (or one that exits without calling [`close`](Queue::close)) never
///   closes the queue: a receiver in plain [`recv`](Queue::recv) or
///   [`iter`](Queue::iter) then waits for good. Where producers can die, receive with
///   [`recv_timeout`](Queue::recv_timeout)/[`recv_until`](Queue::recv_until) and decide
///   on a timeout, or let the process that supervises the producers `close` the queue
///   when the last one has ended.
///
/// A process stopped (`SIGSTOP`, a debugger) while copying a message holds up the other
/// senders (or receivers) until it continues: they wait for its lock word, asleep in the
/// kernel after a short spin (`try_send`/`try_recv` give up with `WouldBlock` after the
/// spin). A side going to sleep also waits for the other side's word to be free for a
/// moment, to register (`wake.rs`), but gives that up as soon as what it waits for has
/// happened: a sender waiting for room behind a stopped receiver still learns of a
/// `close`. Its pid is never consulted: processes in other PID namespaces (containers
/// sharing an IPC namespace), processes whose main thread exited, and pids reused after
/// a death are all judged by the kernel's record of who is alive.
///
/// # Handles
///
/// Each handle that sends or receives claims one of the queue's 256 lease slots the
/// first time (and gives it back when dropped): at most 256 handles, across all
/// processes, can use one queue at once; the next gets `LimitReached`.
///
/// ```
/// use shmsem::{ErrorKind, Key, Queue};
/// # let key = Key::from_raw(0x5e00_0004);
/// # if let Ok(old) = Queue::open(key) { old.remove()?; }
/// let q = Queue::open_or_create(key, 64 * 1024)?;   // in every process
/// q.send(b"hello")?;
/// q.send(b"")?;                                      // empty messages are messages
/// q.close()?;                                        // the producer is done
///
/// let mut msg = Vec::new();
/// q.recv(&mut msg)?;
/// assert_eq!(msg, b"hello");
/// q.recv(&mut msg)?;
/// assert!(msg.is_empty());
/// assert_eq!(q.recv(&mut msg).unwrap_err().kind(), ErrorKind::Closed);
/// q.remove()?;                                       // in the last one
/// # Ok::<(), shmsem::Error>(())
/// ```
pub struct Queue {
    pair: Pair,
    /// Bytes in the ring (a multiple of 8, at least 8).
    capacity: usize,
    /// Spin budget in nanoseconds before sleeping.
    spin_nanos: AtomicU64,
    /// A `head` this handle has seen (never more than the real one): producers re-read the
    /// shared `head` only when this one says the record does not fit.
    seen_head: Slot<AtomicU64>,
    /// A `tail` this handle has seen (never more than the real one): consumers re-read the
    /// shared `tail` only when this one says the queue is empty.
    seen_tail: Slot<AtomicU64>,
    /// Per semaphore (`DATA`: receiving, `SPACE`: sending): how soon a wait of this
    /// handle first looks, and how long it spins (`pace.rs`).
    pace: [Slot<Pace>; NSEMS],
}

impl Queue {
    crate::managed::options::constructors! {
        /// Creates a new queue whose ring holds `capacity_bytes` (rounded up to a multiple of
        /// 8). Exclusive: `AlreadyExists` if either object exists. Mode `0o600`.
        ///
        /// # Errors
        /// `AlreadyExists`; `InvalidInput` for a capacity of 0 or one too large to address;
        /// `LimitReached` past the system's limits (`SHMMAX`, `SHMALL`, ...). Nothing
        /// half-made is left behind.
        create(capacity_bytes: usize);
        /// Opens an existing queue, whatever its capacity, waiting up to a second for a
        /// creator that is still initialising it.
        ///
        /// # Errors
        /// `NotFound`; `PermissionDenied`; `NotManaged` for objects shmsem did not make (or
        /// whose creator never finished, or whose control block disagrees with the segment);
        /// `LayoutMismatch` when the key holds a mutex or rwlock.
        open;
        /// Opens the queue, or creates it with `capacity_bytes` if there is none. Any number
        /// of processes may race: exactly one creates. The capacity (rounded up to 8) is part
        /// of the layout: an existing queue of another capacity is `LayoutMismatch` (use
        /// [`open`](Queue::open) to take any).
        open_or_create;
        /// Options: mode for creation, the opener's wait bound.
        ///
        /// ```
        /// use shmsem::{Key, Queue};
        /// let q = Queue::options().mode(0o640).create(Key::PRIVATE, 4096)?;
        /// q.remove()?;
        /// # Ok::<(), shmsem::Error>(())
        /// ```
        options;
    }

    /// Checks the control block against the segment, then wraps the pair.
    fn from_pair(call: &'static str, pair: Pair) -> Result<Queue> {
        let target = Target {
            key: pair.seg.key(),
            id: Some(("shmid", pair.seg.id())),
        };
        let not_managed = |reason: String| Error::new(ErrorKind::NotManaged, call, target, reason);
        let ring = pair.payload_size.checked_sub(CONTROL_SIZE).ok_or_else(|| {
            not_managed(format!(
                "queue payload of {} bytes is smaller than its {CONTROL_SIZE}-byte control block",
                pair.payload_size
            ))
        })?;
        // SAFETY: the payload is at least CONTROL_SIZE bytes (checked just above), aligned
        // to SLOT (the validated payload offset is a multiple of the layout's alignment,
        // SLOT, and segments are page-aligned), and attached as long as `pair` lives.
        let recorded = unsafe { &*pair.payload().cast::<Control>() }
            .meta
            .0
            .capacity
            .load(Ordering::Acquire);
        if ring == 0 || ring % RECORD_ALIGN != 0 || recorded != ring as u64 {
            return Err(not_managed(format!(
                "corrupt queue: control block says capacity {recorded}, the segment has a ring \
                 of {ring} bytes"
            )));
        }
        Ok(Queue {
            pair,
            capacity: ring,
            spin_nanos: AtomicU64::new(DEFAULT_SPIN.as_nanos() as u64),
            seen_head: Slot(AtomicU64::new(0)),
            seen_tail: Slot(AtomicU64::new(0)),
            pace: [0; NSEMS].map(|_| Slot(Pace::new())),
        })
    }

    /// Sends `msg`, waiting while the queue is full.
    ///
    /// # Errors
    /// `InvalidInput` when the message can never fit (longer than
    /// [`max_message_len`](Queue::max_message_len)); `Closed` once the queue is closed
    /// (also while waiting); `Removed` once it is removed (also while waiting).
    pub fn send(&self, msg: &[u8]) -> Result<()> {
        self.send_with(msg, Wait::Forever.into(), "Queue::send")
    }

    /// Sends `msg` if there is room for it now.
    ///
    /// # Errors
    /// `WouldBlock` when the queue is full, or when another sender kept the queue busy
    /// copying a message in for longer than a short spin (a stopped process, say);
    /// otherwise as [`send`](Queue::send).
    pub fn try_send(&self, msg: &[u8]) -> Result<()> {
        self.send_with(msg, Wait::No.into(), "Queue::try_send")
    }

    /// Sends `msg`, waiting at most `timeout` for room (monotonic clock; signals neither
    /// extend nor restart the wait).
    ///
    /// # Errors
    /// `TimedOut` when the time runs out; otherwise as [`send`](Queue::send).
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_with(msg, Patience::Within(timeout), "Queue::send_timeout")
    }

    /// Sends `msg`, waiting until `deadline` at the latest for room: the form of
    /// [`send_timeout`](Queue::send_timeout) for waits that share one deadline.
    ///
    /// # Errors
    /// As [`send_timeout`](Queue::send_timeout).
    pub fn send_until(&self, msg: &[u8], deadline: Instant) -> Result<()> {
        self.send_with(msg, Wait::Until(deadline).into(), "Queue::send_until")
    }

    /// Receives one message into `buf`: clears it, then fills it with exactly the message
    /// (reusing its allocation). Waits while the queue is empty.
    ///
    /// # Errors
    /// `Closed` once the queue is closed and empty (the messages sent before `close` are
    /// all received first); `Removed` once it is removed (also while waiting);
    /// `LimitReached` if `buf` cannot grow to the message's length (the message stays
    /// queued); `NotManaged` if the shared state is corrupt (a foreign writer).
    /// `buf` is empty after any error.
    pub fn recv(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_with(buf, Wait::Forever.into(), "Queue::recv")
    }

    /// Receives one message if there is one now.
    ///
    /// # Errors
    /// `WouldBlock` when the queue is empty (and not closed); otherwise as
    /// [`recv`](Queue::recv).
    pub fn try_recv(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_with(buf, Wait::No.into(), "Queue::try_recv")
    }

    /// Receives one message, waiting at most `timeout` for one.
    ///
    /// # Errors
    /// `TimedOut` when the time runs out; otherwise as [`recv`](Queue::recv).
    pub fn recv_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        self.recv_with(buf, Patience::Within(timeout), "Queue::recv_timeout")
    }

    /// Receives one message, waiting until `deadline` at the latest for one.
    ///
    /// # Errors
    /// As [`recv_timeout`](Queue::recv_timeout).
    pub fn recv_until(&self, buf: &mut Vec<u8>, deadline: Instant) -> Result<()> {
        self.recv_with(buf, Wait::Until(deadline).into(), "Queue::recv_until")
    }

    /// Closes the queue: from now on sends fail with `Closed`; receivers take the
    /// messages still queued, then get `Closed`. Senders and receivers waiting now wake.
    /// Closing again does nothing. A send that completed before `close` returned is always
    /// received before `Closed`.
    ///
    /// # Errors
    /// `Removed` if the queue was removed.
    pub fn close(&self) -> Result<()> {
        let call = "Queue::close";
        let ctl = self.ctl();
        {
            // Under the producer lock, so that every send either completed before (and is
            // drained) or sees the state and fails.
            let _held = self.lock(&ctl.producer_lock.0, Wait::Forever.into(), call)?;
            let state =
                ctl.meta
                    .0
                    .state
                    .compare_exchange(OPEN, CLOSED, Ordering::SeqCst, Ordering::SeqCst);
            match state {
                Ok(_) | Err(CLOSED) => {}
                Err(state) => return Err(self.state_error(state, call)),
            }
        }
        self.wake_all(&ctl.waiting_consumers.0, DATA, call)?;
        self.wake_all(&ctl.waiting_producers.0, SPACE, call)
    }

    /// Has the queue been closed (or removed)?
    pub fn is_closed(&self) -> bool {
        self.ctl().meta.0.state.load(Ordering::Acquire) != OPEN
    }

    /// Removes the segment and the semaphore set. Senders and receivers waiting now wake
    /// with `Removed`; later calls on any handle are `Removed` (messages still queued are
    /// dropped); later opens are `NotFound`. Handles stay attached until dropped.
    ///
    /// # Errors
    /// `Removed` if already removed, `PermissionDenied` for a process that is neither the
    /// owner nor the creator. Both objects are attempted even if the first fails.
    pub fn remove(&self) -> Result<()> {
        let removed = self.pair.remove();
        // Tell the handles that never sleep (and so never see EIDRM) too; unless this
        // process may not remove the queue at all.
        let denied = matches!(&removed, Err(e) if e.kind() == ErrorKind::PermissionDenied);
        if !denied {
            self.ctl().meta.0.state.store(REMOVED, Ordering::SeqCst);
        }
        removed
    }

    crate::managed::view::pair_accessors!("Queue");

    /// Bytes in the ring: the capacity asked for, rounded up to a multiple of 8.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The longest message that fits: the capacity less the 8-byte length word.
    pub fn max_message_len(&self) -> usize {
        self.capacity - LEN_SIZE
    }

    /// The most a sender (receiver) that finds the queue full (empty) spins, re-checking,
    /// before it sleeps in `semop`; per handle, default 4 ms.
    ///
    /// Spinning keeps a steady stream free of system calls, and keeps a ping-pong out of
    /// the kernel on a busy machine, where the other side is sometimes preempted for a
    /// scheduler time slice: with a CPU-bound process beside two that ping-pong (2 CPUs),
    /// `queue_latency` measured a p99 one-way latency of 1.5-1.7 µs with the default,
    /// where a fixed 500 µs spin gave 504 µs (each side that gives up sleeps, and the
    /// wake-ups move the processes around the CPUs, so that preemptions come more often).
    ///
    /// How long a wait does spin adapts, per handle and direction, between 50 µs and this
    /// limit: a side whose waits end quickly (the other side is active) spins up to the
    /// limit; one whose messages are rarer than its spin halves it after each such wait,
    /// down to 50 µs, so that it does not burn the limit on every message (measured:
    /// with a message every 1 ms or 3 ms, a receiver used 8% or 3% of a CPU, against
    /// 42% and 15% with a fixed 500 µs spin). Where CPU matters more than latency, set it
    /// lower (`Duration::ZERO` sleeps at once). A thread that may run on one CPU only
    /// (pinned, or a one-CPU container) yields the CPU between its looks, so that the
    /// other side can move if it shares that CPU.
    pub fn set_spin_limit(&self, spin: Duration) {
        let nanos = u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX);
        self.spin_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The spin limit (see [`set_spin_limit`](Queue::set_spin_limit)).
    pub fn spin_limit(&self) -> Duration {
        Duration::from_nanos(self.spin_nanos.load(Ordering::Relaxed))
    }
}

impl Options<Queue> {
    /// Creates a new queue (see [`Queue::create`]).
    pub fn create(self, key: Key, capacity_bytes: usize) -> Result<Queue> {
        let call = "Queue::create";
        let (layout, control) = Queue::layout_for(call, key, capacity_bytes)?;
        let new = Blueprint::new(layout, &control, &[0; NSEMS]);
        Queue::from_pair(call, Pair::create(call, key, &self.params, new)?)
    }

    /// Opens an existing queue of any capacity (see [`Queue::open`]).
    pub fn open(self, key: Key) -> Result<Queue> {
        let call = "Queue::open";
        let layout = Layout::new(ObjectKind::Queue, ANY_SIZE, SLOT);
        Queue::from_pair(call, Pair::open(call, key, &layout, &self.params)?)
    }

    /// Opens or creates (see [`Queue::open_or_create`]).
    pub fn open_or_create(self, key: Key, capacity_bytes: usize) -> Result<Queue> {
        let call = "Queue::open_or_create";
        let (layout, control) = Queue::layout_for(call, key, capacity_bytes)?;
        let new = Blueprint::new(layout, &control, &[0; NSEMS]);
        Queue::from_pair(call, Pair::open_or_create(call, key, &self.params, new)?)
    }
}

impl Queue {
    /// The layout for a ring of `capacity_bytes` rounded up to 8, and the first bytes of
    /// the payload of a new queue with that ring.
    fn layout_for(
        call: &'static str,
        key: Key,
        capacity_bytes: usize,
    ) -> Result<(Layout, [u8; 8])> {
        let size = capacity_bytes
            .checked_next_multiple_of(RECORD_ALIGN)
            .filter(|&c| c > 0)
            .and_then(|c| Some((c, c.checked_add(CONTROL_SIZE)?)))
            .filter(|&(_, size)| size != ANY_SIZE);
        match size {
            Some((cap, size)) => Ok((
                Layout::new(ObjectKind::Queue, size, SLOT),
                initial_control(cap),
            )),
            None => Err(Error::new(
                ErrorKind::InvalidInput,
                call,
                Target { key, id: None },
                match capacity_bytes {
                    0 => "a queue needs a capacity of at least 1 byte (each message takes 8 \
                          bytes plus its length rounded up to 8)"
                        .to_string(),
                    n => format!(
                        "a queue capacity of {n} bytes cannot be addressed: the segment \
                         would be larger than the address space (the system's shmmax \
                         limits it further; see /proc/sys/kernel/shmmax)"
                    ),
                },
            )),
        }
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pair
            .debug(f, "Queue")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Queue>();
    }
}
