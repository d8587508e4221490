//! What a worker does: one operation ([`Op`]: an increment, or a read or write of the
//! record), and the measured loop that repeats it and reports to the board.

use std::sync::atomic::Ordering;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::clock::now_ns;

use crate::locks::Handle;
use crate::record::{Record, busy_work};
use crate::runner::{Report, Slot, Window, Work};
use crate::waits::{BUCKETS, bucket};

/// What a worker does in one operation. Monomorphised with the handle, so the mutex
/// scenarios' loop is just lock, increment, unlock.
pub trait Op {
    /// One operation; returns the clock read taken inside the critical section if `TIMED`
    /// (0 otherwise).
    fn once<H: Handle, const TIMED: bool>(&mut self, handle: &mut H) -> Res<u64>;
    /// (writes, torn records seen) after `done` operations.
    fn tally(&self, done: u64) -> (u64, u64);
}

/// Lock, `seq += 1`, unlock, then `work_iters` iterations of [`busy_work`] (0: none)
/// outside the lock: every operation is a write.
pub struct Increment {
    pub work_iters: u64,
}

impl Op for Increment {
    #[inline(always)]
    fn once<H: Handle, const TIMED: bool>(&mut self, handle: &mut H) -> Res<u64> {
        let got = handle.with_lock(|record| {
            let got = if TIMED { now_ns() } else { 0 };
            record.seq += 1;
            got
        })?;
        if self.work_iters > 0 {
            std::hint::black_box(busy_work(&Record::at(got), self.work_iters));
        }
        Ok(got)
    }

    fn tally(&self, done: u64) -> (u64, u64) {
        (done, 0)
    }
}

/// Mostly reads: each operation reads (read lock, copy the record, check it is whole,
/// run `work_iters` iterations of [`busy_work`] over the copy, unlock) with probability
/// `reads_per_mille / 1000`, else writes (write lock, check the record, replace it by the
/// next whole one, unlock). The choice is an xorshift64 step: deterministic per worker,
/// no system call.
pub struct ReadMostly {
    state: u64,
    reads_per_mille: u64,
    work_iters: u64,
    writes: u64,
    torn: u64,
}

impl ReadMostly {
    pub fn new(worker: usize, reads_per_mille: u64, work_iters: u64) -> Self {
        ReadMostly {
            // Odd constant times a nonzero number: a nonzero seed, distinct per worker.
            state: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(worker as u64 + 1),
            reads_per_mille,
            work_iters,
            writes: 0,
            torn: 0,
        }
    }

    /// The next pseudo-random number in 0..1000 (xorshift64, high 32 bits scaled).
    #[inline(always)]
    fn next_per_mille(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        ((x >> 32) * 1000) >> 32
    }
}

impl Op for ReadMostly {
    #[inline(always)]
    fn once<H: Handle, const TIMED: bool>(&mut self, handle: &mut H) -> Res<u64> {
        let (got, whole) = if self.next_per_mille() < self.reads_per_mille {
            let iters = self.work_iters;
            handle.with_read_lock(|record| {
                let got = if TIMED { now_ns() } else { 0 };
                let seen = *record;
                if iters > 0 {
                    std::hint::black_box(busy_work(&seen, iters));
                }
                (got, seen.is_whole())
            })?
        } else {
            self.writes += 1;
            handle.with_lock(|record| {
                let got = if TIMED { now_ns() } else { 0 };
                let seen = *record;
                *record = Record::at(seen.seq.wrapping_add(1));
                (got, seen.is_whole())
            })?
        };
        self.torn += u64::from(!whole);
        Ok(got)
    }

    fn tally(&self, _done: u64) -> (u64, u64) {
        (self.writes, self.torn)
    }
}

/// Runs one worker thread's measured loop, timed or not.
pub fn run_op<H: Handle, O: Op>(
    handle: &mut H,
    mut op: O,
    timed: bool,
    work: Work,
    slot: &Slot,
    window: &Window,
) -> Res<()> {
    if timed {
        run_worker::<_, _, true>(handle, &mut op, work, slot, window)
    } else {
        run_worker::<_, _, false>(handle, &mut op, work, slot, window)
    }
}

/// The measured loop of one worker thread. The time cap is checked with the clock read
/// the timed loop takes anyway, or every 1024 operations in the untimed one.
///
/// Timed, each operation's wait also goes into the worker's histogram and sum (outside
/// the timed stretch), and until the worker has seen the [`Window`] close (the first
/// worker's end), one or two relaxed loads of its words note how many operations this
/// worker had done when all had started and when the first finished: its turns while
/// all competed.
fn run_worker<H: Handle, O: Op, const TIMED: bool>(
    handle: &mut H,
    op: &mut O,
    work: Work,
    slot: &Slot,
    window: &Window,
) -> Res<()> {
    let mut max_wait = 0;
    let mut wait_sum = 0;
    let mut hist = [0u32; BUCKETS];
    let (mut at_all, mut at_first) = (None, None);
    let workers = window.workers.load(Ordering::Relaxed);
    if TIMED {
        window.started.fetch_add(1, Ordering::Relaxed);
    }
    let mut done = 0;
    let start = now_ns();
    let stop = start.saturating_add(work.cap_ns);
    while done < work.ops {
        done += 1;
        if TIMED {
            let asked = now_ns();
            let got = op.once::<H, true>(handle)?;
            let wait = got.saturating_sub(asked);
            max_wait = max_wait.max(wait);
            wait_sum += wait;
            hist[bucket(wait)] += 1;
            if at_first.is_none() {
                if at_all.is_none() && window.started.load(Ordering::Relaxed) == workers {
                    at_all = Some(done);
                }
                if window.first_end.load(Ordering::Relaxed) != 0 {
                    at_first = Some(done);
                }
            }
            if got > stop {
                break;
            }
        } else {
            op.once::<H, false>(handle)?;
            if done % 1024 == 0 && now_ns() > stop {
                break;
            }
        }
    }
    let end = now_ns();
    if TIMED {
        // The first to finish says so; the others' stores fail (it is set).
        let first = &window.first_end;
        let _ = first.compare_exchange(0, end, Ordering::Relaxed, Ordering::Relaxed);
        slot.store_waits(&hist);
    }
    let (writes, torn) = op.tally(done);
    slot.store(Report {
        start_ns: start,
        end_ns: end,
        max_wait_ns: max_wait,
        writes,
        torn,
        done,
        at_all: at_all.unwrap_or(u64::MAX),
        at_first: at_first.unwrap_or(done),
        wait_sum_ns: wait_sum,
    });
    Ok(())
}
