//! The clock: `CLOCK_MONOTONIC` in nanoseconds, which every process reads alike, so a
//! worker's start and another's end can be subtracted; and what reading it costs.

use std::time::Instant;

/// The monotonic clock, in nanoseconds (the same clock in every process).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What one [`now_ns`] costs, in nanoseconds (a mean over many).
pub fn clock_cost_ns() -> f64 {
    let n = 200_000;
    let start = Instant::now();
    let mut sink = 0u64;
    for _ in 0..n {
        sink = sink.wrapping_add(now_ns());
    }
    std::hint::black_box(sink);
    start.elapsed().as_nanos() as f64 / n as f64
}
