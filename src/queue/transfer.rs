//! Sending and receiving: one attempt to publish a record (`try_push`) or take one
//! (`try_pop`) under the lock word, and the loops that wait between attempts. Every value
//! read from the control block is checked against the ring invariants (`ring.rs`) before
//! it is used; a violation is a "corrupt queue" error.

use std::collections::TryReserveError;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::Queue;
use super::ring::{
    CLOSED, LEN_SIZE, OPEN, RECORD_ALIGN, REMOVED, advance, copy_from_ring, copy_into_ring, fits,
    record_size,
};
use super::wake::{DATA, SPACE};
use crate::error::{Error, ErrorKind, Result, Target};
use crate::managed::wait::{Patience, Wait};

impl Queue {
    pub(super) fn target(&self) -> Target {
        self.pair.sems.target()
    }

    // The error constructors are cold and out of line, their messages formatted inside:
    // built in place, the formatting of every error a send or receive can report made
    // their fast paths' code and stack frames several times larger than the work.

    #[cold]
    #[inline(never)]
    pub(super) fn error(&self, kind: ErrorKind, call: &'static str, reason: String) -> Error {
        Error::new(kind, call, self.target(), reason)
    }

    /// `NotManaged`: "corrupt queue state: " and `what`.
    #[cold]
    #[inline(never)]
    pub(super) fn corrupt(&self, call: &'static str, what: fmt::Arguments<'_>) -> Error {
        self.error(
            ErrorKind::NotManaged,
            call,
            format!("corrupt queue state: {what}"),
        )
    }

    /// The error for a state other than `OPEN`: closed, removed, or a value that is no
    /// state at all.
    #[cold]
    #[inline(never)]
    pub(super) fn state_error(&self, state: u32, call: &'static str) -> Error {
        match state {
            CLOSED => self.error(ErrorKind::Closed, call, "the queue is closed".into()),
            REMOVED => self.error(ErrorKind::Removed, call, "the queue was removed".into()),
            other => self.corrupt(call, format_args!("state word {other}")),
        }
    }

    /// `InvalidInput`: a message of `len` bytes does not fit in this queue.
    #[cold]
    #[inline(never)]
    fn too_long(&self, len: usize, call: &'static str) -> Error {
        let (cap, max) = (self.capacity, self.max_message_len());
        let reason = format!(
            "message of {len} bytes does not fit in a queue of {cap} bytes (at most {max} \
             bytes per message)"
        );
        self.error(ErrorKind::InvalidInput, call, reason)
    }

    /// `LimitReached`: `buf` could not grow to hold a message of `len` bytes.
    #[cold]
    #[inline(never)]
    fn no_room_for(&self, len: usize, e: TryReserveError, call: &'static str) -> Error {
        let reason = format!("cannot make room for a message of {len} bytes: {e}");
        self.error(ErrorKind::LimitReached, call, reason)
    }

    /// Checks a position read from the control block (Ring invariant 1): a multiple of 8,
    /// so that the length word at `pos % capacity` lies whole and aligned in the ring.
    pub(super) fn check_position(&self, call: &'static str, name: &str, pos: u64) -> Result<u64> {
        if pos % RECORD_ALIGN as u64 != 0 {
            return Err(self.corrupt(call, format_args!("{name} {pos} is not a multiple of 8")));
        }
        Ok(pos)
    }

    /// Sends `msg`, waiting as `patience` allows while there is no room.
    ///
    /// The first attempt (`try_push`, inlined) is all most sends need; the waiting loop
    /// is a function of its own (cold), so that this one stays small. Inlined together,
    /// with the errors formatted in place, their registers and stack frame cost every
    /// send: measured at 64 bytes, splitting them (and the error constructors out of
    /// line) took a send from 180 to 166 instructions and a receive from 179 to 152, and
    /// a writer and a reader process from 23-24 to 33-35 M messages/s (medians of 30
    /// `queue_compare` invocations each, alternating the builds).
    #[inline]
    pub(super) fn send_with(
        &self,
        msg: &[u8],
        patience: Patience,
        call: &'static str,
    ) -> Result<()> {
        let rec = record_size(msg.len())
            .filter(|&r| r <= self.capacity)
            .ok_or_else(|| self.too_long(msg.len(), call))?;
        let rec = rec as u64;
        if self.try_push(msg, rec, patience, call)? {
            return Ok(());
        }
        self.send_waiting(msg, rec, patience, call)
    }

    /// [`send_with`](Queue::send_with) after a first attempt found no room (or the lock
    /// word held): waits and tries again until it is sent or the wait ends.
    #[cold]
    #[inline(never)]
    fn send_waiting(
        &self,
        msg: &[u8],
        rec: u64,
        mut patience: Patience,
        call: &'static str,
    ) -> Result<()> {
        let ctl = self.ctl();
        let cap = self.capacity as u64;
        loop {
            // The clock starts now, for the rest of the call.
            let wait = patience.start();
            patience = wait.into();
            self.may_wait(wait, call, "the queue is full", "no room in the queue")?;
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
            let (waiting, guard) = (&ctl.waiting_producers.0, &ctl.consumer_lock.0);
            self.sleep_until(waiting, guard, SPACE, ready, wait.deadline(), call)?;
            if self.try_push(msg, rec, patience, call)? {
                return Ok(());
            }
        }
    }

    /// One attempt to publish `msg` (record size `rec`): `Ok(false)` if it does not fit.
    #[inline(always)]
    pub(super) fn try_push(
        &self,
        msg: &[u8],
        rec: u64,
        patience: Patience,
        call: &'static str,
    ) -> Result<bool> {
        let ctl = self.ctl();
        let held = self.lock(&ctl.producer_lock.0, patience, call)?;
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
                return Err(self.corrupt(call, format_args!("head {head}, tail {tail}")));
            }
            self.seen_head.0.store(head, Ordering::Relaxed);
            if !fits(head, tail, cap, rec) {
                return Ok(false);
            }
        }
        let new_tail = tail
            .checked_add(rec)
            .ok_or_else(|| self.corrupt(call, format_args!("tail {tail} about to overflow")))?;
        let at = self.index(tail);
        // SAFETY: `at` is a multiple of 8 (tail only ever grows by record sizes, multiples
        // of 8, and the capacity is one) below the capacity. The record's bytes, from
        // `tail` up to `tail + rec`, are free (it fits behind `head`, whose readers are
        // done: Acquire above), and no other producer writes while we hold the lock.
        unsafe {
            self.len_word(at).store(msg.len() as u64, Ordering::Relaxed);
            copy_into_ring(
                self.ring(),
                self.capacity,
                advance(at, LEN_SIZE, self.capacity),
                msg,
            );
        }
        // Publish (Ring invariant 3): only now does the record exist for consumers.
        // Release: the bytes before it are visible to whoever acquires the new `tail`.
        ctl.tail.0.store(new_tail, Ordering::Release);
        // Still under the lock word: a consumer registers under it (Wake invariant 1), so
        // one registered before this hold is counted here, and one after sees the tail.
        let sleepers = ctl.waiting_consumers.0.load(Ordering::Relaxed);
        drop(held);
        if sleepers != 0 {
            self.wake_one(&ctl.waiting_consumers.0, DATA, call);
        }
        Ok(true)
    }

    /// Receives one message into `buf`, waiting as `patience` allows while there is none
    /// (the first attempt here, the waiting loop apart, as in `send_with`).
    #[inline]
    pub(super) fn recv_with(
        &self,
        buf: &mut Vec<u8>,
        patience: Patience,
        call: &'static str,
    ) -> Result<()> {
        buf.clear();
        if self.try_pop(buf, patience, call)? {
            return Ok(());
        }
        self.recv_waiting(buf, patience, call)
    }

    /// [`recv_with`](Queue::recv_with) after a first attempt found no message (or the
    /// lock word held).
    #[cold]
    #[inline(never)]
    fn recv_waiting(
        &self,
        buf: &mut Vec<u8>,
        mut patience: Patience,
        call: &'static str,
    ) -> Result<()> {
        let ctl = self.ctl();
        loop {
            // The clock starts now, for the rest of the call.
            let wait = patience.start();
            patience = wait.into();
            self.may_wait(wait, call, "the queue is empty", "no message arrived")?;
            let ready = |_spinning: bool| {
                ctl.meta.0.state.load(Ordering::SeqCst) != OPEN
                    || ctl.tail.0.load(Ordering::SeqCst) != ctl.head.0.load(Ordering::SeqCst)
            };
            let (waiting, guard) = (&ctl.waiting_consumers.0, &ctl.producer_lock.0);
            self.sleep_until(waiting, guard, DATA, ready, wait.deadline(), call)?;
            if self.try_pop(buf, patience, call)? {
                return Ok(());
            }
        }
    }

    /// One attempt to take a message into `buf` (empty): `Ok(false)` if there is none.
    #[inline(always)]
    pub(super) fn try_pop(
        &self,
        buf: &mut Vec<u8>,
        patience: Patience,
        call: &'static str,
    ) -> Result<bool> {
        let ctl = self.ctl();
        // Read before `tail`: a close we see here came after every publish it lets drain.
        let state = ctl.meta.0.state.load(Ordering::Acquire);
        if state != OPEN && state != CLOSED {
            return Err(self.state_error(state, call));
        }
        let held = self.lock(&ctl.consumer_lock.0, patience, call)?;
        let cap = self.capacity as u64;
        // Under the lock: the last holder's head store came before its release.
        let head = self.check_position(call, "head", ctl.head.0.load(Ordering::Relaxed))?;
        let mut tail = self.seen_tail.0.load(Ordering::Relaxed);
        if tail <= head || tail - head > cap {
            // Acquire: the producer's bytes before `tail` are visible.
            tail = self.check_position(call, "tail", ctl.tail.0.load(Ordering::Acquire))?;
            if head > tail || tail - head > cap {
                return Err(self.corrupt(call, format_args!("head {head}, tail {tail}")));
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
        let at = self.index(head);
        // SAFETY: `at` is a multiple of 8 below the capacity (as in try_push).
        let len = unsafe { self.len_word(at) }.load(Ordering::Relaxed);
        let Some(rec) = usize::try_from(len)
            .ok()
            .and_then(record_size)
            .filter(|&r| r <= self.capacity && r as u64 <= tail - head)
        else {
            return Err(self.corrupt(
                call,
                format_args!(
                    "a record of length {len} at {head}, with {} bytes published",
                    tail - head
                ),
            ));
        };
        let len = len as usize;
        if let Err(e) = buf.try_reserve(len) {
            return Err(self.no_room_for(len, e, call));
        }
        // SAFETY: the message's `len` bytes lie in the ring between head + 8 and tail
        // (checked above), published by the producer before `tail` (Acquire above); no
        // producer overwrites them before `head` moves past them, and no other consumer
        // reads them while we hold the lock. `buf` is empty with room for `len` bytes.
        unsafe {
            copy_from_ring(
                self.ring(),
                self.capacity,
                advance(at, LEN_SIZE, self.capacity),
                buf.as_mut_ptr(),
                len,
            );
            buf.set_len(len);
        }
        // The message is ours (Ring invariant 3): release its bytes to the producers.
        // Release: our reads of them come before a producer's writes over them.
        ctl.head.0.store(head + rec as u64, Ordering::Release);
        // Under the lock word, as in try_push (Wake invariant 1).
        let sleepers = ctl.waiting_producers.0.load(Ordering::Relaxed);
        drop(held);
        // Every waiting producer: each needs its own amount of room, and one woken for
        // room that fits only another would leave that other asleep beside free space.
        if sleepers != 0 {
            let _ = self.wake_all(&ctl.waiting_producers.0, SPACE, call);
        }
        Ok(true)
    }

    /// May a call that found nothing to do (no room, no message, the lock word held) wait
    /// on? `Ok` when it waits forever or its deadline is still ahead; otherwise the error
    /// that ends it: `WouldBlock` for a `try_*` call (`busy` says why), `TimedOut` past
    /// the deadline (`late` says what did not happen).
    pub(super) fn may_wait(
        &self,
        wait: Wait,
        call: &'static str,
        busy: &str,
        late: &str,
    ) -> Result<()> {
        match wait {
            Wait::No => Err(self.error(ErrorKind::WouldBlock, call, busy.to_string())),
            Wait::Until(d) if Instant::now() >= d => {
                Err(self.error(ErrorKind::TimedOut, call, format!("timed out: {late}")))
            }
            Wait::Until(_) | Wait::Forever => Ok(()),
        }
    }
}
