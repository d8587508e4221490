//! The record every lock guards, the check that it is whole, and the work a read does on
//! its copy in the scenario with long reads.

use std::time::{Duration, Instant};

/// What every lock guards, in shared memory: four `u64`. The mutex scenarios count in
/// `seq` alone; the read-heavy ones keep the record whole (every field derived from `seq`,
/// see [`Record::at`]), so that a read or write beside a writer would find it torn, and
/// `seq` counts the writes.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, shmsem::Pod, shmsem::Zeroable)]
#[bytemuck(crate = "shmsem::bytemuck")]
pub struct Record {
    pub seq: u64,
    pub mixed: u64,
    pub inverted: u64,
    pub rotated: u64,
}

impl Record {
    /// The whole record for `seq`.
    pub const fn at(seq: u64) -> Record {
        Record {
            seq,
            mixed: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            inverted: !seq,
            rotated: seq.rotate_left(29),
        }
    }

    /// Is every field the one `seq` implies (not a mix of two writes)?
    pub fn is_whole(&self) -> bool {
        *self == Record::at(self.seq)
    }
}

/// The work an operation does when its scenario asks for some (a read inside its read
/// lock, an increment after its unlock): `iters` rounds of dependent arithmetic over a
/// record (the read's copy). `black_box` on every round
/// keeps the compiler from folding the loop into a formula or moving it (out of the
/// critical section, say); [`WorkLoop::calibrate`] finds how many rounds take the time wanted.
#[inline(never)]
pub fn busy_work(record: &Record, iters: u64) -> u64 {
    let mut h = record.seq ^ record.mixed;
    for i in 0..iters {
        let x = std::hint::black_box(h ^ i);
        h = (x ^ record.inverted)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(23)
            .wrapping_add(record.rotated);
    }
    h
}

/// What one iteration of [`busy_work`] costs on this machine, measured once at startup.
pub struct WorkLoop {
    pub ns_per_iter: f64,
}

impl WorkLoop {
    /// Times [`busy_work`] alone (one thread, no lock): a warm-up (the CPU may clock up),
    /// then the fastest of several batches.
    pub fn calibrate() -> Self {
        let record = Record::at(12345);
        let batch = 100_000;
        let time = |iters: u64| {
            let start = Instant::now();
            std::hint::black_box(busy_work(std::hint::black_box(&record), iters));
            start.elapsed().as_nanos() as f64
        };
        let warm_up = Instant::now();
        while warm_up.elapsed() < Duration::from_millis(50) {
            time(batch);
        }
        let best = (0..9).map(|_| time(batch)).fold(f64::INFINITY, f64::min);
        WorkLoop {
            ns_per_iter: (best / batch as f64).max(0.01),
        }
    }

    /// Iterations that take about `ns` (0 for 0).
    pub fn iters_for(&self, ns: u64) -> u64 {
        if ns == 0 {
            0
        } else {
            ((ns as f64 / self.ns_per_iter).round() as u64).max(1)
        }
    }

    /// How long `iters` iterations take, one call at a time as a read makes them (the
    /// call, and the reads of the copy, included): the mean of many calls.
    pub fn check(&self, iters: u64) -> f64 {
        let record = Record::at(12345);
        let calls = (20_000_000.0 / (iters as f64 * self.ns_per_iter).max(1.0)) as u64;
        let calls = calls.clamp(100, 100_000);
        let start = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(busy_work(std::hint::black_box(&record), iters));
        }
        start.elapsed().as_nanos() as f64 / calls as f64
    }
}
