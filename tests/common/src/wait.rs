//! Waiting on conditions that have no wait primitive: [`wait_until`].

use std::time::{Duration, Instant};

/// Polls `cond` until it holds, at most `timeout`. For conditions that have no wait
/// primitive (a semaphore's waiter count): it re-checks real state, it never assumes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}
