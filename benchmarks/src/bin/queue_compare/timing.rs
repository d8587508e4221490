//! One timed transfer: the writer in a forked process (pinned if asked), held at the
//! start gate; the reader here; the time from the gate's opening to the reader's end.
//! And what every reader checks of every message.

use std::time::{Duration, Instant};

use shmsem_benchmarks::Res;
use shmsem_benchmarks::machine::pin;
use shmsem_benchmarks::procs::{Team, WATCHDOG};

/// Forks a writer process that runs `writer` once released (pinned to `writer_cpu` if
/// given; on an error it runs `on_writer_error` too, which should wake the reader); runs
/// `reader` here and returns the time from the release to the reader's end. Whatever
/// `writer` owns is closed in this process right after the fork (a pipe's write end, so
/// that the writer's death is an EOF).
pub fn timed(
    writer_cpu: Option<usize>,
    writer: impl FnOnce() -> Res<()>,
    on_writer_error: impl FnOnce(),
    reader: impl FnOnce() -> Res<()>,
) -> Res<Duration> {
    let mut team = Team::new(WATCHDOG)?;
    team.spawn(|gate| {
        if let Some(cpu) = writer_cpu {
            pin(cpu)?;
        }
        gate.wait()?;
        writer().inspect_err(|_| on_writer_error())
    })?;
    let start = Instant::now();
    team.release();
    let read = reader();
    let took = start.elapsed();
    if let Err(e) = read {
        // A writer that failed (the likely cause) reports before it exits: give it a
        // moment. One still running (blocked on a reader that gave up) is killed as
        // `team` drops.
        let _ = team.wait_within(Duration::from_secs(1));
        return Err(e);
    }
    team.wait()?;
    Ok(took)
}

/// Sends `count` messages of `size` bytes through `send`, the first byte of each its
/// sequence number (mod 256), the rest 0x5a; one buffer, reused.
pub fn send_all(size: usize, count: u64, mut send: impl FnMut(&[u8]) -> Res<()>) -> Res<()> {
    let mut msg = vec![0x5a_u8; size];
    for i in 0..count {
        msg[0] = i as u8;
        send(&msg)?;
    }
    Ok(())
}

/// Is `buf` message `i` of `size` bytes (its length, and its first byte)?
pub fn check(i: u64, buf: &[u8], size: usize) -> Res<()> {
    if buf.len() != size || buf.first().is_some_and(|&b| b != i as u8) {
        return Err(format!(
            "message {i}: {} bytes, first byte {:?}",
            buf.len(),
            buf.first()
        )
        .into());
    }
    Ok(())
}
