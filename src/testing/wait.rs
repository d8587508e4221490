//! Waiting on conditions that have no wait primitive: [`wait_until`].

use std::time::{Duration, Instant};

/// Re-checks `cond` until it holds, at most `timeout`; whether it came to hold.
///
/// For states nothing can be waited on for: a semaphore's waiter count, a process's
/// state in `/proc`. It checks the real state each time (about every 200 µs) and never
/// assumes it: a sleep of a fixed length standing in for "the other process is there by
/// now" is what this replaces. Prefer a [`Gate`](super::Gate), [`Latch`](super::Latch)
/// or [`Pipe`](super::Pipe) when the other side can say it is ready.
///
/// ```
/// use shmsem::SharedMutex;
/// use shmsem::testing::{BOUND, TestKey, fork, wait_until};
///
/// let key = TestKey::new();
/// let m = SharedMutex::create(key.key(), 0u32)?;
/// let guard = m.lock().unwrap();
/// let child = fork(|| {
///     let m = SharedMutex::<u32>::open(key.key()).unwrap();
///     *m.lock().unwrap() += 1; // blocks: the parent holds the lock
///     0
/// });
/// // The child is asleep in the kernel, waiting for the semaphore:
/// assert!(wait_until(BOUND, || m.semaphores().wait_count(0).unwrap() == 1));
/// drop(guard);
/// assert_eq!(child.join(), 0);
/// assert_eq!(*m.lock().unwrap(), 1);
/// # Ok::<(), shmsem::Error>(())
/// ```
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
