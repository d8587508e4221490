//! The subject: a shmsem `Queue` (a private pair, shared with the writer through fork),
//! `send(&msg)` / `recv_timeout(&mut buf)` with the buffer reused.

use std::time::Duration;

use shmsem::{Key, Queue};
use shmsem_benchmarks::Res;

use crate::timing::{check, send_all, timed};

/// A reader that waits this long for one message gives up (the writer died).
const STALL: Duration = Duration::from_secs(60);

/// The queue's ring: at least 4 MiB, and at least 4 records.
pub fn ring_for(size: usize) -> usize {
    const MIN_RING: usize = 4 << 20;
    MIN_RING.max(4 * (size.next_multiple_of(8) + 8))
}

pub fn run(size: usize, count: u64, writer_cpu: Option<usize>) -> Res<Duration> {
    let q = RemoveQueue(Queue::create(Key::PRIVATE, ring_for(size))?);
    let q = &q.0;
    timed(
        writer_cpu,
        || send_all(size, count, |msg| Ok(q.send(msg)?)),
        || {
            let _ = q.close();
        },
        || {
            let mut buf = Vec::with_capacity(size);
            for i in 0..count {
                q.recv_timeout(&mut buf, STALL)?;
                check(i, &buf, size)?;
            }
            Ok(())
        },
    )
}

/// Removes the queue (segment and semaphore set) when dropped.
struct RemoveQueue(Queue);

impl Drop for RemoveQueue {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("{}: removing the queue: {e}", shmsem_benchmarks::program());
        }
    }
}
