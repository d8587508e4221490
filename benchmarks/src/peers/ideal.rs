//! The ideal reference: a single-producer single-consumer byte ring in an anonymous
//! shared mapping, with futexes to sleep on, written as fast as such a ring can be made
//! and nothing else (no crash safety, no second writer, no names, no permissions). It
//! is what issue 15 measures the shmsem queue against: "how far are we from what an
//! SPSC ring between two processes can do on this machine?"
//!
//! Layout (each field on its own 128-byte stretch, two cache lines, so that the adjacent
//! line prefetcher does not pair them either; the data from 4 KiB on, page-aligned):
//!
//! ```text
//!    0  tail            u64  bytes ever written; only the writer stores it
//!  128  head            u64  bytes ever read; only the reader stores it
//!  256  reader_waiting  u32  1: the reader is (about to be) asleep, waiting for `tail`;
//!                            its futex word
//!  384  writer_waiting  u32  1: the writer is (about to be) asleep, waiting for `head`;
//!                            its futex word
//! 4096  data            a power of two bytes; records of [len: u64][bytes, padded to 8]
//! ```
//!
//! A record that would run past the end is preceded by a marker (`len == u64::MAX`) that
//! sends the reader back to offset 0, so that every message is one contiguous copy
//! (`copy_nonoverlapping`) in and one out. Each side keeps a private copy of the other's
//! counter and reads the shared one only when its copy says the ring is empty (reader)
//! or full (writer), so in the steady state a message costs the two copies, one store
//! of a counter and one load of the other side's waiting flag, and no system call.
//!
//! Memory ordering: the writer copies a record in, then stores `tail` (release: the
//! bytes happen before the reader's acquire load that sees the new tail); the reader
//! copies it out, then stores `head` (release: the reads happen before the writer,
//! having loaded that head with acquire, overwrites the bytes). Sleeping is the
//! Dekker pattern, all four accesses `SeqCst`: a side about to sleep stores its waiting
//! flag, then loads the other side's counter once more; the other side stores its
//! counter, then loads the flag. Sequential consistency means at least one of the two
//! sees the other's store: either the sleeper sees the new counter and does not sleep,
//! or the waker sees the flag, clears it and calls `FUTEX_WAKE`.
//!
//! The futex word is the waiting flag itself: the sleeper waits with `FUTEX_WAIT` while
//! the flag is still 1, and the waker wakes it after clearing it. (Not the counter: the
//! waker's clearing swap can come late, after the store it belongs to, when the sleeper
//! has already seen that store, gone on and set the flag again for its next sleep. The
//! swap then eats that new flag and its wake-up finds nobody yet; a sleeper waiting on
//! the counter would find the value it expects and sleep with its flag down, and no
//! later store would wake it. Waiting on the flag, it finds the flag cleared and does
//! not sleep: whoever clears the flag of a sleeper wakes it.)
//! The futexes are shared (no `FUTEX_PRIVATE_FLAG`): the two sides are processes.
//!
//! The side that finds the ring empty or full spins ([`SPIN`], measured in time) before
//! it sleeps: about what a futex wake-up costs on the slow virtual machine of issue 15
//! (30-45 us), the textbook point where spinning longer stops paying.

use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::{Channel, Receiver, STALL, Sender};
use crate::Res;
use crate::clock::now_ns;
use crate::pages::SharedPages;

/// How long a side spins on an empty (full) ring before it sleeps.
pub const SPIN: Duration = Duration::from_micros(50);

/// The smallest ring: 4 MiB, as the shmsem queue's in `queue_compare`.
const MIN_RING: usize = 4 << 20;
const TAIL: usize = 0;
const HEAD: usize = 128;
const READER_WAITING: usize = 256;
const WRITER_WAITING: usize = 384;
const DATA: usize = 4096;
/// A record length that means "go back to offset 0".
const WRAP: u64 = u64::MAX;

/// The ring, in memory shared with every process forked after it was made.
pub struct IdealRing {
    pages: SharedPages,
    /// Data bytes: a power of two.
    cap: usize,
}

impl IdealRing {
    fn counter(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `at` is 0 or 128, inside the mapping and 8-aligned; the mapping lives
        // as long as `self`; the counters are only ever accessed atomically.
        unsafe { &*self.pages.ptr().add(at).cast::<AtomicU64>() }
    }

    fn flag(&self, at: usize) -> &AtomicU32 {
        // SAFETY: as in `counter`, for the 4-byte flags at 256 and 384.
        unsafe { &*self.pages.ptr().add(at).cast::<AtomicU32>() }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data start inside the mapping (made DATA + cap bytes long).
        unsafe { self.pages.ptr().add(DATA) }
    }
}

impl Channel for IdealRing {
    const NAME: &'static str = "ideal ring";
    type Tx<'a> = Writer<'a>;
    type Rx<'a> = Reader<'a>;

    /// A record may take the whole ring; the ring grows to fit four.
    fn new(max_msg: usize) -> Res<Self> {
        let cap = MIN_RING
            .max(4 * (max_msg.next_multiple_of(8) + 8))
            .next_power_of_two();
        let pages = SharedPages::new(DATA + cap)?;
        Ok(IdealRing { pages, cap })
    }

    fn sender(&self) -> Res<Writer<'_>> {
        Ok(Writer {
            tail: self.counter(TAIL).load(Ordering::Relaxed),
            head: self.counter(HEAD).load(Ordering::Acquire),
            ring: self,
        })
    }

    fn receiver(&self) -> Res<Reader<'_>> {
        Ok(Reader {
            head: self.counter(HEAD).load(Ordering::Relaxed),
            tail: self.counter(TAIL).load(Ordering::Acquire),
            ring: self,
        })
    }
}

/// The writer's end: its own tail, and the head as it last read it.
pub struct Writer<'a> {
    ring: &'a IdealRing,
    tail: u64,
    head: u64,
}

impl Writer<'_> {
    /// Waits until `n` more bytes fit.
    #[inline]
    fn wait_space(&mut self, n: u64) -> Res<()> {
        let cap = self.ring.cap as u64;
        if self.tail + n - self.head <= cap {
            return Ok(());
        }
        let ring = self.ring;
        let tail = self.tail;
        self.head = wait_until(
            ring.counter(HEAD),
            ring.flag(WRITER_WAITING),
            |head| tail + n - head <= cap,
            "the reader made no room",
        )?;
        Ok(())
    }

    /// Makes everything up to `self.tail` visible to the reader, and wakes it if it
    /// sleeps.
    #[inline]
    fn publish(&self) {
        publish(
            self.ring.counter(TAIL),
            self.tail,
            self.ring.flag(READER_WAITING),
        );
    }
}

impl Sender for Writer<'_> {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let cap = self.ring.cap;
        let record = 8 + msg.len().next_multiple_of(8);
        if record > cap {
            return Err(format!("a {} B message does not fit a {cap} B ring", msg.len()).into());
        }
        let at = self.tail as usize & (cap - 1);
        let to_end = cap - at; // >= 8: offsets and records are multiples of 8
        if record > to_end {
            self.wait_space(to_end as u64)?;
            // SAFETY: `at` is 8-aligned and at least 8 bytes before the end; the space
            // is free (wait_space), so the reader does not read it now.
            unsafe { ptr::write(self.ring.data().add(at).cast::<u64>(), WRAP) };
            self.tail += to_end as u64;
            self.publish();
            return self.send(msg);
        }
        self.wait_space(record as u64)?;
        // SAFETY: `record` bytes from `at` are inside the ring and free; the reader
        // reads them only after the release store of the new tail in `publish`.
        unsafe {
            let dst = self.ring.data().add(at);
            ptr::write(dst.cast::<u64>(), msg.len() as u64);
            ptr::copy_nonoverlapping(msg.as_ptr(), dst.add(8), msg.len());
        }
        self.tail += record as u64;
        self.publish();
        Ok(())
    }
}

/// The reader's end: its own head, and the tail as it last read it.
pub struct Reader<'a> {
    ring: &'a IdealRing,
    head: u64,
    tail: u64,
}

impl Receiver for Reader<'_> {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Res<()> {
        let ring = self.ring;
        let cap = ring.cap;
        loop {
            if self.tail == self.head {
                let head = self.head;
                self.tail = wait_until(
                    ring.counter(TAIL),
                    ring.flag(READER_WAITING),
                    |tail| tail != head,
                    "no message",
                )?;
            }
            let at = self.head as usize & (cap - 1);
            // SAFETY: the writer published a whole record (or a marker) at `at` before
            // the tail this side loaded with acquire.
            let src = unsafe { ring.data().add(at) };
            // SAFETY: as above; 8-aligned.
            let len = unsafe { ptr::read(src.cast::<u64>()) };
            if len == WRAP {
                self.head += (cap - at) as u64;
                publish(ring.counter(HEAD), self.head, ring.flag(WRITER_WAITING));
                continue;
            }
            let len = len as usize;
            if len > cap - at - 8 {
                return Err(format!("corrupt ring: a {len} B record at offset {at}").into());
            }
            buf.clear();
            buf.reserve(len);
            // SAFETY: `len` published bytes at src + 8 (checked to lie in the ring) into
            // `buf`'s spare capacity (reserved), then they are its length.
            unsafe {
                ptr::copy_nonoverlapping(src.add(8), buf.as_mut_ptr(), len);
                buf.set_len(len);
            }
            self.head += (8 + len.next_multiple_of(8)) as u64;
            publish(ring.counter(HEAD), self.head, ring.flag(WRITER_WAITING));
            return Ok(());
        }
    }
}

/// Stores `value` into `counter` (this side's), then wakes the other side if its
/// waiting flag says it sleeps (or is about to) on that counter.
#[inline]
fn publish(counter: &AtomicU64, value: u64, other_waiting: &AtomicU32) {
    // SeqCst store then SeqCst load: the waker's half of the Dekker pair (module docs).
    counter.store(value, Ordering::SeqCst);
    if other_waiting.load(Ordering::SeqCst) != 0 && other_waiting.swap(0, Ordering::SeqCst) != 0 {
        futex_wake(other_waiting);
    }
}

/// Waits until `ready(counter)` (the other side's counter): spins for [`SPIN`], then
/// sleeps on the futex `waiting` (set to 1 first). Returns the counter's value that
/// was ready; fails with `what` after [`STALL`].
#[cold]
fn wait_until(
    counter: &AtomicU64,
    waiting: &AtomicU32,
    ready: impl Fn(u64) -> bool,
    what: &str,
) -> Res<u64> {
    let start = now_ns();
    let spin_until = start + SPIN.as_nanos() as u64;
    let stall_at = start + STALL.as_nanos() as u64;
    loop {
        for _ in 0..64 {
            let v = counter.load(Ordering::Acquire);
            if ready(v) {
                return Ok(v);
            }
            std::hint::spin_loop();
        }
        if now_ns() >= spin_until {
            break;
        }
    }
    loop {
        // The sleeper's half of the Dekker pair (module docs).
        waiting.store(1, Ordering::SeqCst);
        let v = counter.load(Ordering::SeqCst);
        if ready(v) {
            waiting.store(0, Ordering::Relaxed);
            return Ok(v);
        }
        let now = now_ns();
        if now >= stall_at {
            waiting.store(0, Ordering::Relaxed);
            return Err(format!("{what} for {STALL:?}").into());
        }
        // Sleeps only while the flag is still up: a waker that cleared it wakes us (or
        // cleared it before this call, which then returns at once).
        futex_wait(waiting, 1, stall_at - now);
    }
}

/// Sleeps while `word` is `expected`, at most `ns` nanoseconds (or until a wake-up, a
/// signal, or spuriously: the caller checks again).
fn futex_wait(word: &AtomicU32, expected: u32, ns: u64) {
    let timeout = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT reads the aligned 32-bit word inside the live shared mapping
    // and the timeout; it writes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr().cast_const(),
            libc::FUTEX_WAIT,
            expected,
            &raw const timeout,
        )
    };
}

/// Wakes the process sleeping on the futex `word` (at most one does).
fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the word's address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr().cast_const(),
            libc::FUTEX_WAKE,
            1,
        )
    };
}
