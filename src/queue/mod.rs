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
//! - **Sleeping** (Dekker-style, all `SeqCst`): a side that cannot go on spins a bounded
//!   while, then registers in its waiter counter, re-checks, and only then sleeps in
//!   `semop(-1)` on its semaphore. The other side, after moving `tail` or `head`, converts
//!   registrations into posts: one consumer's per message published, every producer's when
//!   room is freed (each needs its own amount). No `SEM_UNDO`: these are signals, not
//!   locks.

use std::fmt;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot_core::SpinWait;

use crate::error::{Error, ErrorKind, Result, Target};
use crate::managed::header::{ANY_SIZE, Layout, ObjectKind};
use crate::managed::lease::{self, Holder, Leases};
use crate::managed::options::Options;
use crate::managed::pair::Pair;
use crate::raw::key::Key;
use crate::raw::shm::Segment;

/// Semaphore 0: consumers sleep on it, producers post it when they publish.
const DATA: u16 = 0;
/// Semaphore 1: producers sleep on it, consumers post it when they free space.
const SPACE: u16 = 1;
const NSEMS: usize = 2;

/// The control block's fields each sit in their own 128-byte slot: a cache line, plus the
/// neighbour that adjacent-line prefetchers pull in with it, so a producer writing `tail`
/// never invalidates the line a consumer writes `head` in.
const SLOT: usize = 128;
/// Size of the control block; the ring follows it.
const CONTROL_SIZE: usize = 1024;
/// Records are aligned to this, and the ring's capacity is a multiple of it.
const RECORD_ALIGN: usize = 8;
/// The length word that starts every record.
const LEN_SIZE: usize = 8;

/// Values of the state word.
const OPEN: u32 = 0;
const CLOSED: u32 = 1;
const REMOVED: u32 = 2;

/// How long a side that cannot go on spins before it sleeps, unless told otherwise.
const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// How long a waiter that gives up waits for the post it was promised (see `unregister`).
const TOKEN_GRACE: Duration = Duration::from_millis(100);
/// A sleeper looks again at least this often even if nobody posts. Only needed when a
/// process died between taking a registration off a counter and posting (a window of a
/// few instructions): its post never comes, and without the second look the sleeper would
/// sleep until the next close. Not a polling interval of the normal path.
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a process waiting for a busy lock word spins (and yields) before it sleeps
/// in the kernel: a holder only copies one message, usually for less than this.
const LOCK_SPIN: Duration = Duration::from_micros(100);
/// The first and the longest sleep of a lock-word waiter between two looks at the word.
/// The holder's death wakes it at once (it sleeps on the holder's lease); a normal
/// release does not, so the sleeps stay short, growing while the holder stays (a long
/// copy, or a stopped process).
const LOCK_SLEEP_FIRST: Duration = Duration::from_micros(50);
const LOCK_SLEEP_MAX: Duration = Duration::from_millis(5);

/// One slot of the control block.
#[repr(C, align(128))]
struct Slot<T>(T);

/// Slot 0: written once by the creator (capacity) or rarely (state), read by everyone.
#[repr(C)]
struct Meta {
    /// Bytes in the ring.
    capacity: AtomicU64,
    /// `OPEN`, `CLOSED` or `REMOVED`.
    state: AtomicU32,
}

/// The control block at the start of the payload. Every field is an atomic: other
/// processes touch them concurrently, and only ever atomically.
#[repr(C)]
struct Control {
    meta: Slot<Meta>,
    /// Bytes published (monotonic).
    tail: Slot<AtomicU64>,
    /// Bytes consumed (monotonic).
    head: Slot<AtomicU64>,
    /// Lease token of the producer copying a record in, 0 if none.
    producer_lock: Slot<AtomicU32>,
    /// Lease token of the consumer copying a record out, 0 if none.
    consumer_lock: Slot<AtomicU32>,
    /// Consumers registered to sleep on `DATA` (and not yet woken).
    waiting_consumers: Slot<AtomicU32>,
    /// Producers registered to sleep on `SPACE` (and not yet woken).
    waiting_producers: Slot<AtomicU32>,
    // 896..1024: reserved (zero), not part of this struct.
}

// The byte offsets documented in docs/FORMAT.md.
const _: () = {
    assert!(size_of::<Slot<Meta>>() == SLOT);
    assert!(std::mem::offset_of!(Meta, capacity) == 0);
    assert!(std::mem::offset_of!(Meta, state) == 8);
    assert!(std::mem::offset_of!(Control, tail) == 128);
    assert!(std::mem::offset_of!(Control, head) == 256);
    assert!(std::mem::offset_of!(Control, producer_lock) == 384);
    assert!(std::mem::offset_of!(Control, consumer_lock) == 512);
    assert!(std::mem::offset_of!(Control, waiting_consumers) == 640);
    assert!(std::mem::offset_of!(Control, waiting_producers) == 768);
    assert!(size_of::<Control>() <= CONTROL_SIZE);
    assert!(align_of::<Control>() == SLOT);
};

/// Bytes a record of a `len`-byte message takes: length word plus padded message.
fn record_size(len: usize) -> Option<usize> {
    len.checked_next_multiple_of(RECORD_ALIGN)?
        .checked_add(LEN_SIZE)
}

/// Does a record of `rec` bytes fit behind `tail` in a ring of `cap` bytes that has been
/// consumed up to `head`?
fn fits(head: u64, tail: u64, cap: u64, rec: u64) -> bool {
    tail.checked_sub(head)
        .is_some_and(|used| used <= cap && cap - used >= rec)
}

/// How long a call may wait.
#[derive(Clone, Copy)]
enum Wait {
    /// Not at all: `try_*`.
    No,
    /// As long as it takes.
    Forever,
    /// Until the deadline.
    Until(Instant),
}

impl Wait {
    fn after(timeout: Duration) -> Wait {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => Wait::Until(deadline),
            None => Wait::Forever, // too far away to represent
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(deadline) => Some(deadline),
            Wait::No | Wait::Forever => None,
        }
    }
}

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
/// A process stopped (`SIGSTOP`, a debugger) while copying a message holds up the other
/// senders (or receivers) until it continues: they wait for its lock word, asleep in the
/// kernel after a short spin (`try_send`/`try_recv` give up with `WouldBlock` after the
/// spin). Its pid is never consulted: processes in other PID namespaces (containers
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
}

impl Queue {
    fn layout(size: usize) -> Layout {
        Layout {
            kind: ObjectKind::Queue,
            size,
            align: SLOT,
            nsems: Leases::nsems(NSEMS, lease::DEFAULT_SLOTS),
        }
    }

    /// Creates a new queue whose ring holds `capacity_bytes` (rounded up to a multiple of
    /// 8). Exclusive: `AlreadyExists` if either object exists. Mode `0o600`.
    ///
    /// # Errors
    /// `AlreadyExists`; `InvalidInput` for a capacity of 0 or one too large to address;
    /// `LimitReached` past the system's limits (`SHMMAX`, `SHMALL`, ...). Nothing
    /// half-made is left behind.
    pub fn create(key: Key, capacity_bytes: usize) -> Result<Queue> {
        Queue::options().create(key, capacity_bytes)
    }

    /// Opens an existing queue, whatever its capacity, waiting up to a second for a
    /// creator that is still initialising it.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied`; `NotManaged` for objects shmsem did not make (or
    /// whose creator never finished, or whose control block disagrees with the segment);
    /// `LayoutMismatch` when the key holds a mutex or rwlock.
    pub fn open(key: Key) -> Result<Queue> {
        Queue::options().open(key)
    }

    /// Opens the queue, or creates it with `capacity_bytes` if there is none. Any number
    /// of processes may race: exactly one creates. The capacity (rounded up to 8) is part
    /// of the layout: an existing queue of another capacity is `LayoutMismatch` (use
    /// [`open`](Queue::open) to take any).
    pub fn open_or_create(key: Key, capacity_bytes: usize) -> Result<Queue> {
        Queue::options().open_or_create(key, capacity_bytes)
    }

    /// Options: mode for creation, the opener's wait bound.
    ///
    /// ```
    /// use shmsem::{Key, Queue};
    /// let q = Queue::options().mode(0o640).create(Key::PRIVATE, 4096)?;
    /// q.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    pub fn options() -> Options<Queue> {
        Options::default()
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
        })
    }

    fn ctl(&self) -> &Control {
        // SAFETY: checked in from_pair: the payload holds at least CONTROL_SIZE bytes and
        // is SLOT-aligned; the segment stays attached while &self lives. Every field is an
        // atomic (shared mutation through & is allowed), and other processes only touch
        // them atomically.
        unsafe { &*self.pair.payload().cast::<Control>() }
    }

    fn ring(&self) -> *mut u8 {
        // SAFETY: the ring starts right after the control block, inside the payload
        // (payload_size = CONTROL_SIZE + capacity, checked in from_pair).
        unsafe { self.pair.payload().add(CONTROL_SIZE) }
    }

    /// The length word of the record at ring index `at`.
    ///
    /// # Safety
    /// `at` must be a multiple of 8 below the capacity.
    unsafe fn len_word(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at % RECORD_ALIGN == 0 && at < self.capacity);
        // SAFETY: at + 8 <= capacity (the capacity is a multiple of 8), so the word lies
        // in the ring; the ring starts at payload + 1024 with the payload 128-aligned, so
        // the word is 8-aligned. Processes access length words only atomically.
        unsafe { &*self.ring().add(at).cast::<AtomicU64>() }
    }

    /// Sends `msg`, waiting while the queue is full.
    ///
    /// # Errors
    /// `InvalidInput` when the message can never fit (longer than
    /// [`max_message_len`](Queue::max_message_len)); `Closed` once the queue is closed
    /// (also while waiting); `Removed` once it is removed (also while waiting).
    pub fn send(&self, msg: &[u8]) -> Result<()> {
        self.send_with(msg, Wait::Forever, "Queue::send")
    }

    /// Sends `msg` if there is room for it now.
    ///
    /// # Errors
    /// `WouldBlock` when the queue is full, or when another sender kept the queue busy
    /// copying a message in for longer than a short spin (a stopped process, say);
    /// otherwise as [`send`](Queue::send).
    pub fn try_send(&self, msg: &[u8]) -> Result<()> {
        self.send_with(msg, Wait::No, "Queue::try_send")
    }

    /// Sends `msg`, waiting at most `timeout` for room (monotonic clock; signals neither
    /// extend nor restart the wait).
    ///
    /// # Errors
    /// `TimedOut` when the time runs out; otherwise as [`send`](Queue::send).
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_with(msg, Wait::after(timeout), "Queue::send_timeout")
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
        self.recv_with(buf, Wait::Forever, "Queue::recv")
    }

    /// Receives one message if there is one now.
    ///
    /// # Errors
    /// `WouldBlock` when the queue is empty (and not closed); otherwise as
    /// [`recv`](Queue::recv).
    pub fn try_recv(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.recv_with(buf, Wait::No, "Queue::try_recv")
    }

    /// Receives one message, waiting at most `timeout` for one.
    ///
    /// # Errors
    /// `TimedOut` when the time runs out; otherwise as [`recv`](Queue::recv).
    pub fn recv_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        self.recv_with(buf, Wait::after(timeout), "Queue::recv_timeout")
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
            let _held = self.lock(&ctl.producer_lock.0, Wait::Forever, call)?;
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

    /// The key both objects share.
    pub fn key(&self) -> Key {
        self.pair.seg.key()
    }

    /// The segment's IPC id (`ipcs -m`).
    pub fn shm_id(&self) -> i32 {
        self.pair.seg.id()
    }

    /// The semaphore set's IPC id (`ipcs -s`).
    pub fn sem_id(&self) -> i32 {
        self.pair.sems.id()
    }

    /// Bytes in the ring: the capacity asked for, rounded up to a multiple of 8.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The longest message that fits: the capacity less the 8-byte length word.
    pub fn max_message_len(&self) -> usize {
        self.capacity - LEN_SIZE
    }

    /// How long a sender (receiver) that finds the queue full (empty) spins, re-checking,
    /// before it sleeps in `semop`; per handle, default 50 µs. Spinning keeps a steady
    /// stream free of system calls; zero sleeps at once, which saves CPU when the other
    /// side is slow.
    pub fn set_spin_limit(&self, spin: Duration) {
        let nanos = u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX);
        self.spin_nanos.store(nanos, Ordering::Relaxed);
    }

    /// The spin limit (see [`set_spin_limit`](Queue::set_spin_limit)).
    pub fn spin_limit(&self) -> Duration {
        Duration::from_nanos(self.spin_nanos.load(Ordering::Relaxed))
    }

    fn target(&self) -> Target {
        self.pair.sems.target()
    }

    fn error(&self, kind: ErrorKind, call: &'static str, reason: String) -> Error {
        Error::new(kind, call, self.target(), reason)
    }

    fn corrupt(&self, call: &'static str, what: String) -> Error {
        self.error(
            ErrorKind::NotManaged,
            call,
            format!("corrupt queue state: {what}"),
        )
    }

    /// The error for a state other than `OPEN`: closed, removed, or a value that is no
    /// state at all.
    fn state_error(&self, state: u32, call: &'static str) -> Error {
        match state {
            CLOSED => self.error(ErrorKind::Closed, call, "the queue is closed".into()),
            REMOVED => self.error(ErrorKind::Removed, call, "the queue was removed".into()),
            other => self.corrupt(call, format!("state word {other}")),
        }
    }

    /// Checks a position read from the control block: a multiple of 8 (every record is),
    /// so that the length word at `pos % capacity` lies whole and aligned in the ring.
    fn check_position(&self, call: &'static str, name: &str, pos: u64) -> Result<u64> {
        if pos % RECORD_ALIGN as u64 != 0 {
            return Err(self.corrupt(call, format!("{name} {pos} is not a multiple of 8")));
        }
        Ok(pos)
    }

    fn send_with(&self, msg: &[u8], wait: Wait, call: &'static str) -> Result<()> {
        let rec = record_size(msg.len())
            .filter(|&r| r <= self.capacity)
            .ok_or_else(|| {
                self.error(
                    ErrorKind::InvalidInput,
                    call,
                    format!(
                        "message of {} bytes does not fit in a queue of {} bytes (at most {} \
                         bytes per message)",
                        msg.len(),
                        self.capacity,
                        self.max_message_len()
                    ),
                )
            })?;
        let deadline = wait.deadline();
        let ctl = self.ctl();
        let cap = self.capacity as u64;
        let rec = rec as u64;
        loop {
            if self.try_push(msg, rec, wait, call)? {
                return Ok(());
            }
            match wait {
                Wait::No => return Err(self.would_block(call, "the queue is full")),
                Wait::Until(d) if Instant::now() >= d => {
                    return Err(self.timed_out(call, "no room in the queue"));
                }
                _ => {}
            }
            // Ready when there is room (or the state changed, or the counters are
            // inconsistent, which try_push reports).
            // While spinning, wait for a batch of room (an eighth of the ring), not just
            // for this record: a producer that re-read `head` for every record a consumer
            // frees would pull that cache line away from the consumer each time. The
            // re-check before sleeping wants just the record.
            let batch = rec.max(cap / 8);
            let ready = |spinning: bool| {
                let want = if spinning { batch } else { rec };
                ctl.meta.0.state.load(Ordering::SeqCst) != OPEN || {
                    let head = ctl.head.0.load(Ordering::SeqCst);
                    let tail = ctl.tail.0.load(Ordering::SeqCst);
                    tail.checked_sub(head)
                        .is_none_or(|used| used > cap || cap - used >= want)
                }
            };
            self.sleep_until(&ctl.waiting_producers.0, SPACE, ready, deadline, call)?;
        }
    }

    /// One attempt to publish `msg` (record size `rec`): `Ok(false)` if it does not fit.
    fn try_push(&self, msg: &[u8], rec: u64, wait: Wait, call: &'static str) -> Result<bool> {
        let ctl = self.ctl();
        let held = self.lock(&ctl.producer_lock.0, wait, call)?;
        let state = ctl.meta.0.state.load(Ordering::Acquire);
        if state != OPEN {
            return Err(self.state_error(state, call));
        }
        let cap = self.capacity as u64;
        // Under the lock: the last holder's tail store came before its release.
        let tail = self.check_position(call, "tail", ctl.tail.0.load(Ordering::Relaxed))?;
        let mut head = self.seen_head.0.load(Ordering::Relaxed);
        if !fits(head, tail, cap, rec) {
            // Acquire: the consumers' reads of the bytes before `head` are finished.
            head = self.check_position(call, "head", ctl.head.0.load(Ordering::Acquire))?;
            if head > tail || tail - head > cap {
                return Err(self.corrupt(call, format!("head {head}, tail {tail}")));
            }
            self.seen_head.0.store(head, Ordering::Relaxed);
            if !fits(head, tail, cap, rec) {
                return Ok(false);
            }
        }
        let new_tail = tail
            .checked_add(rec)
            .ok_or_else(|| self.corrupt(call, format!("tail {tail} about to overflow")))?;
        let at = (tail % cap) as usize;
        // SAFETY: `at` is a multiple of 8 (tail only ever grows by record sizes, multiples
        // of 8, and the capacity is one) below the capacity. The record's bytes, from
        // `tail` up to `tail + rec`, are free (it fits behind `head`, whose readers are
        // done: Acquire above), and no other producer writes while we hold the lock.
        unsafe {
            self.len_word(at).store(msg.len() as u64, Ordering::Relaxed);
            copy_into_ring(
                self.ring(),
                self.capacity,
                (at + LEN_SIZE) % self.capacity,
                msg,
            );
        }
        // Publish: only now does the record exist for consumers. SeqCst, paired with the
        // waiter's registration (see sleep_until).
        ctl.tail.0.store(new_tail, Ordering::SeqCst);
        drop(held);
        self.wake_one(&ctl.waiting_consumers.0, DATA, call);
        Ok(true)
    }

    fn recv_with(&self, buf: &mut Vec<u8>, wait: Wait, call: &'static str) -> Result<()> {
        buf.clear();
        let deadline = wait.deadline();
        let ctl = self.ctl();
        loop {
            if self.try_pop(buf, wait, call)? {
                return Ok(());
            }
            match wait {
                Wait::No => return Err(self.would_block(call, "the queue is empty")),
                Wait::Until(d) if Instant::now() >= d => {
                    return Err(self.timed_out(call, "no message arrived"));
                }
                _ => {}
            }
            let ready = |_spinning: bool| {
                ctl.meta.0.state.load(Ordering::SeqCst) != OPEN
                    || ctl.tail.0.load(Ordering::SeqCst) != ctl.head.0.load(Ordering::SeqCst)
            };
            self.sleep_until(&ctl.waiting_consumers.0, DATA, ready, deadline, call)?;
        }
    }

    /// One attempt to take a message into `buf` (empty): `Ok(false)` if there is none.
    fn try_pop(&self, buf: &mut Vec<u8>, wait: Wait, call: &'static str) -> Result<bool> {
        let ctl = self.ctl();
        // Read before `tail`: a close we see here came after every publish it lets drain.
        let state = ctl.meta.0.state.load(Ordering::Acquire);
        if state != OPEN && state != CLOSED {
            return Err(self.state_error(state, call));
        }
        let held = self.lock(&ctl.consumer_lock.0, wait, call)?;
        let cap = self.capacity as u64;
        // Under the lock: the last holder's head store came before its release.
        let head = self.check_position(call, "head", ctl.head.0.load(Ordering::Relaxed))?;
        let mut tail = self.seen_tail.0.load(Ordering::Relaxed);
        if tail <= head || tail - head > cap {
            // Acquire: the producer's bytes before `tail` are visible.
            tail = self.check_position(call, "tail", ctl.tail.0.load(Ordering::Acquire))?;
            if head > tail || tail - head > cap {
                return Err(self.corrupt(call, format!("head {head}, tail {tail}")));
            }
            self.seen_tail.0.store(tail, Ordering::Relaxed);
            if tail == head {
                drop(held);
                return match state {
                    OPEN => Ok(false),
                    _ => Err(self.state_error(state, call)),
                };
            }
        }
        let at = (head % cap) as usize;
        // SAFETY: `at` is a multiple of 8 below the capacity (as in try_push).
        let len = unsafe { self.len_word(at) }.load(Ordering::Relaxed);
        let Some(rec) = usize::try_from(len)
            .ok()
            .and_then(record_size)
            .filter(|&r| r <= self.capacity && r as u64 <= tail - head)
        else {
            return Err(self.corrupt(
                call,
                format!(
                    "a record of length {len} at {head}, with {} bytes published",
                    tail - head
                ),
            ));
        };
        let len = len as usize;
        if let Err(e) = buf.try_reserve(len) {
            return Err(self.error(
                ErrorKind::LimitReached,
                call,
                format!("cannot make room for a message of {len} bytes: {e}"),
            ));
        }
        // SAFETY: the message's `len` bytes lie in the ring between head + 8 and tail
        // (checked above), published by the producer before `tail` (Acquire above); no
        // producer overwrites them before `head` moves past them, and no other consumer
        // reads them while we hold the lock. `buf` is empty with room for `len` bytes.
        unsafe {
            copy_from_ring(
                self.ring(),
                self.capacity,
                (at + LEN_SIZE) % self.capacity,
                buf.as_mut_ptr(),
                len,
            );
            buf.set_len(len);
        }
        // The message is ours: release its bytes to the producers. SeqCst, paired with
        // the waiting producers' registration.
        ctl.head.0.store(head + rec as u64, Ordering::SeqCst);
        drop(held);
        // Every waiting producer: each needs its own amount of room, and one woken for
        // room that fits only another would leave that other asleep beside free space.
        if ctl.waiting_producers.0.load(Ordering::SeqCst) != 0 {
            let _ = self.wake_all(&ctl.waiting_producers.0, SPACE, call);
        }
        Ok(true)
    }

    /// Waits until `ready()` may hold: spins a bounded while, then registers in `waiting`
    /// and sleeps on semaphore `sem` until the other side converts the registration into a
    /// post. Returns `Ok` when woken, when `ready()` held, or when the deadline passed
    /// (the caller looks once more, then reports the timeout).
    ///
    /// No lost wake-ups: the registration (a SeqCst read-modify-write) comes before the
    /// re-check of `ready()` (SeqCst loads); the other side stores `tail`/`head`/state
    /// (SeqCst) before it loads the counter (SeqCst). In the single total order of these
    /// operations either the re-check sees the change, or the other side sees the
    /// registration and posts.
    fn sleep_until(
        &self,
        waiting: &AtomicU32,
        sem: u16,
        ready: impl Fn(bool) -> bool,
        deadline: Option<Instant>,
        call: &'static str,
    ) -> Result<()> {
        let spin = self.spin_limit();
        if !spin.is_zero() {
            let start = Instant::now();
            let until = start.checked_add(spin).unwrap_or(start);
            let until = deadline.map_or(until, |d| d.min(until));
            let mut backoff = Backoff::new();
            loop {
                if ready(true) {
                    return Ok(());
                }
                if Instant::now() >= until {
                    break;
                }
                backoff.pause();
            }
        }
        waiting.fetch_add(1, Ordering::SeqCst);
        if ready(false) {
            return self.unregister(waiting, sem, call);
        }
        let mut op = [libc::sembuf {
            sem_num: sem,
            sem_op: -1,
            sem_flg: 0,
        }];
        let recheck = Instant::now() + RECHECK_EVERY;
        let until = deadline.map_or(recheck, |d| d.min(recheck));
        match self.pair.sems.semtimedop(&mut op, until, call) {
            // Woken: the waker took our registration off the counter.
            Ok(()) => Ok(()),
            // The caller's deadline, or time for a second look: the caller tries again.
            Err(e) if e.kind() == ErrorKind::TimedOut => self.unregister(waiting, sem, call),
            Err(e) => Err(e),
        }
    }

    /// Takes back a registration that did not sleep (or stopped sleeping). If the counter
    /// is already 0, a waker has converted every registration, ours included, into a
    /// post: take that token, so that it does not wake someone later for nothing. The
    /// wait for it is bounded: a waker killed between its decrement and its post never
    /// posts (the token, if it comes late, is one spurious wake-up, which every waiter
    /// tolerates: it re-checks and sleeps again).
    fn unregister(&self, waiting: &AtomicU32, sem: u16, call: &'static str) -> Result<()> {
        let mut n = waiting.load(Ordering::SeqCst);
        loop {
            if n == 0 {
                let mut op = [libc::sembuf {
                    sem_num: sem,
                    sem_op: -1,
                    sem_flg: 0,
                }];
                let grace = Instant::now() + TOKEN_GRACE;
                return match self.pair.sems.semtimedop(&mut op, grace, call) {
                    Err(e) if e.kind() != ErrorKind::TimedOut => Err(e),
                    _ => Ok(()),
                };
            }
            match waiting.compare_exchange_weak(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(()),
                Err(now) => n = now,
            }
        }
    }

    /// After a publish: if a consumer is registered to sleep, convert one registration
    /// into one post (one message serves one consumer). Errors are ignored: the message
    /// has been sent already, and the only likely one is `Removed`, which the sleepers
    /// learn themselves.
    fn wake_one(&self, waiting: &AtomicU32, sem: u16, call: &'static str) {
        let mut n = waiting.load(Ordering::SeqCst);
        while n != 0 {
            match waiting.compare_exchange_weak(n, n - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    let _ = self.post(sem, 1, call);
                    return;
                }
                Err(now) => n = now,
            }
        }
    }

    /// Converts every registration into a post (one `semop` adding the count): when a
    /// consumer frees room, and on close.
    fn wake_all(&self, waiting: &AtomicU32, sem: u16, call: &'static str) -> Result<()> {
        let n = waiting.swap(0, Ordering::SeqCst);
        // Each registration is one sleeping process (or thread); a semaphore cannot count
        // past SEMVMX, and neither can a real count of sleepers on it.
        match i16::try_from(n) {
            Ok(0) => Ok(()),
            Ok(n) => self.post(sem, n, call),
            Err(_) => Err(self.corrupt(call, format!("{n} waiters registered"))),
        }
    }

    fn post(&self, sem: u16, n: i16, call: &'static str) -> Result<()> {
        let mut op = [libc::sembuf {
            sem_num: sem,
            sem_op: n,
            sem_flg: 0,
        }];
        self.pair.sems.semop(&mut op, call)
    }

    /// Takes a lock word (producers' or consumers'): compare-and-swap 0 -> our token.
    fn lock<'a>(&self, word: &'a AtomicU32, wait: Wait, call: &'static str) -> Result<Held<'a>> {
        let me = self.pair.token(call)?;
        if word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(Held(word));
        }
        self.lock_contended(word, me, wait, call)
    }

    /// The lock word is held: another producer (consumer) is copying, which is short.
    /// Spin and yield a bounded while; then sleep in the kernel on the holder's lease,
    /// waking to look at the word again after a short (growing) while, or at once when the
    /// holder's process ends. The word is taken over from a holder only when the kernel
    /// says its process is gone (Lease invariant 2): a stopped or slow holder is waited
    /// for, never robbed. `Wait::No` waits only through the spin.
    #[cold]
    fn lock_contended<'a>(
        &self,
        word: &'a AtomicU32,
        me: u32,
        wait: Wait,
        call: &'static str,
    ) -> Result<Held<'a>> {
        let take = |expected: u32| {
            // Acquire: the RMW continues the release sequence of the last release, so we
            // see everything the last live holder published.
            word.compare_exchange(expected, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        };
        let deadline = wait.deadline();
        let spin_until = Instant::now() + LOCK_SPIN;
        let spin_until = deadline.map_or(spin_until, |d| d.min(spin_until));
        let mut spin = SpinWait::new();
        loop {
            if word.load(Ordering::Relaxed) == 0 && take(0) {
                return Ok(Held(word));
            }
            if !spin.spin() {
                std::thread::yield_now();
                if Instant::now() >= spin_until {
                    break;
                }
            }
        }
        let mut sleep = LOCK_SLEEP_FIRST;
        loop {
            let holder = word.load(Ordering::Relaxed);
            if holder == 0 {
                if take(0) {
                    return Ok(Held(word));
                }
                continue;
            }
            match self.pair.holder(holder)? {
                // Its process ended while copying: what it wrote was never published.
                Holder::Gone => {
                    if take(holder) {
                        return Ok(Held(word));
                    }
                    continue;
                }
                Holder::Invalid => {
                    return Err(self.corrupt(
                        call,
                        format!("lock word {holder:#x} is not a lease token of this queue"),
                    ));
                }
                Holder::Alive => {}
            }
            let now = Instant::now();
            let until = match wait {
                Wait::No => {
                    return Err(self.would_block(call, "another process is copying a message"));
                }
                Wait::Until(d) if now >= d => {
                    return Err(self.timed_out(call, "another process held the queue's lock word"));
                }
                Wait::Until(d) => d.min(now + sleep),
                Wait::Forever => now + sleep,
            };
            self.pair
                .leases
                .wait_gone(&self.pair.sems, holder, until, call)?;
            sleep = (sleep * 2).min(LOCK_SLEEP_MAX);
        }
    }

    fn would_block(&self, call: &'static str, why: &str) -> Error {
        self.error(ErrorKind::WouldBlock, call, why.to_string())
    }

    fn timed_out(&self, call: &'static str, why: &str) -> Error {
        self.error(ErrorKind::TimedOut, call, format!("timed out: {why}"))
    }
}

/// The waiting side's spin between looks at the other side's counter: pauses doubling
/// from 1 to `MAX_PAUSES` (about 4 µs here), then a `sched_yield` with each look, in case
/// the other side waits for this CPU.
///
/// Not `SpinWait`, whose looks come every ~150 ns once it yields: each look takes the
/// cache line of `head` (or `tail`) away from the side that writes it for every message,
/// and with 64-byte messages that made the queue 2-4x slower (measured).
struct Backoff(u32);

/// The longest run of pause instructions between two looks.
const MAX_PAUSES: u32 = 512;

impl Backoff {
    fn new() -> Backoff {
        Backoff(1)
    }

    fn pause(&mut self) {
        for _ in 0..self.0 {
            std::hint::spin_loop();
        }
        if self.0 < MAX_PAUSES {
            self.0 *= 2;
        } else {
            std::thread::yield_now();
        }
    }
}

/// A held lock word; dropping it releases (store 0, Release: the copy is done).
struct Held<'a>(&'a AtomicU32);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Copies `src` into the ring at index `at`, wrapping at the end.
///
/// # Safety
/// `ring` must be valid for writes of `cap` bytes, `at < cap`, `src.len() <= cap`, and
/// `src` must not overlap the ring.
unsafe fn copy_into_ring(ring: *mut u8, cap: usize, at: usize, src: &[u8]) {
    let first = src.len().min(cap - at);
    // SAFETY: at + first <= cap, and the wrapped part, src.len() - first <= cap, starts
    // at 0: both ranges lie inside the ring; `src` is valid for src.len() reads; the
    // caller guarantees the ring's validity and no overlap.
    unsafe {
        ptr::copy_nonoverlapping(src.as_ptr(), ring.add(at), first);
        ptr::copy_nonoverlapping(src.as_ptr().add(first), ring, src.len() - first);
    }
}

/// Copies `len` bytes from the ring at index `at` (wrapping at the end) to `dst`.
///
/// # Safety
/// `ring` must be valid for reads of `cap` bytes, `at < cap`, `len <= cap`, and `dst`
/// valid for writes of `len` bytes, not overlapping the ring.
unsafe fn copy_from_ring(ring: *const u8, cap: usize, at: usize, dst: *mut u8, len: usize) {
    let first = len.min(cap - at);
    // SAFETY: as in copy_into_ring, with the roles swapped.
    unsafe {
        ptr::copy_nonoverlapping(ring.add(at), dst, first);
        ptr::copy_nonoverlapping(ring, dst.add(first), len - first);
    }
}

impl Options<Queue> {
    /// Creates a new queue (see [`Queue::create`]).
    pub fn create(self, key: Key, capacity_bytes: usize) -> Result<Queue> {
        let call = "Queue::create";
        let (layout, cap) = Queue::layout_for(call, key, capacity_bytes)?;
        let pair = Pair::create(
            call,
            key,
            &layout,
            &self.params,
            init_control(cap),
            &[0; NSEMS],
        )?;
        Queue::from_pair(call, pair)
    }

    /// Opens an existing queue of any capacity (see [`Queue::open`]).
    pub fn open(self, key: Key) -> Result<Queue> {
        let call = "Queue::open";
        let pair = Pair::open(call, key, &Queue::layout(ANY_SIZE), &self.params)?;
        Queue::from_pair(call, pair)
    }

    /// Opens or creates (see [`Queue::open_or_create`]).
    pub fn open_or_create(self, key: Key, capacity_bytes: usize) -> Result<Queue> {
        let call = "Queue::open_or_create";
        let (layout, cap) = Queue::layout_for(call, key, capacity_bytes)?;
        let pair = Pair::open_or_create(
            call,
            key,
            &layout,
            &self.params,
            init_control(cap),
            &[0; NSEMS],
        )?;
        Queue::from_pair(call, pair)
    }
}

impl Queue {
    /// The layout for a ring of `capacity_bytes` rounded up to 8, and that ring size.
    fn layout_for(call: &'static str, key: Key, capacity_bytes: usize) -> Result<(Layout, usize)> {
        let size = capacity_bytes
            .checked_next_multiple_of(RECORD_ALIGN)
            .filter(|&c| c > 0)
            .and_then(|c| Some((c, c.checked_add(CONTROL_SIZE)?)))
            .filter(|&(_, size)| size != ANY_SIZE);
        match size {
            Some((cap, size)) => Ok((Queue::layout(size), cap)),
            None => Err(Error::new(
                ErrorKind::InvalidInput,
                call,
                Target { key, id: None },
                format!(
                    "queue capacity of {capacity_bytes} bytes: must be between 1 and {}",
                    usize::MAX - CONTROL_SIZE - RECORD_ALIGN
                ),
            )),
        }
    }
}

/// The payload initialiser: the capacity in the control block (the segment is zeroed, so
/// everything else starts at 0: open, empty, unlocked, nobody waiting).
fn init_control(cap: usize) -> impl Fn(&Segment, usize) -> Result<()> {
    move |seg, offset| seg.write_all_at(&(cap as u64).to_ne_bytes(), offset)
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("key", &self.key())
            .field("shm_id", &self.shm_id())
            .field("sem_id", &self.sem_id())
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

    #[test]
    fn record_sizes_pad_to_eight_plus_the_length_word() {
        assert_eq!(record_size(0), Some(8));
        assert_eq!(record_size(1), Some(16));
        assert_eq!(record_size(8), Some(16));
        assert_eq!(record_size(9), Some(24));
        assert_eq!(record_size(usize::MAX), None);
        assert_eq!(record_size(usize::MAX - 7), None);
    }

    #[test]
    fn fits_checks_room_and_rejects_inconsistent_counters() {
        assert!(fits(0, 0, 64, 64));
        assert!(!fits(0, 8, 64, 64));
        assert!(fits(8, 8, 64, 64));
        assert!(!fits(9, 8, 64, 8)); // head past tail
        assert!(!fits(0, 72, 64, 0)); // more used than the capacity
    }

    #[test]
    fn the_ring_copies_wrap_around_the_end() {
        let mut ring = [0u8; 16];
        // SAFETY: a 16-byte local ring; at 12 < 16; 8 bytes <= 16; no overlap.
        unsafe { copy_into_ring(ring.as_mut_ptr(), 16, 12, b"abcdefgh") };
        assert_eq!(&ring[12..], b"abcd");
        assert_eq!(&ring[..4], b"efgh");
        let mut out = [0u8; 8];
        // SAFETY: as above, reading.
        unsafe { copy_from_ring(ring.as_ptr(), 16, 12, out.as_mut_ptr(), 8) };
        assert_eq!(&out, b"abcdefgh");
    }
}
