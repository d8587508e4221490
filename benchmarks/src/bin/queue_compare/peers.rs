//! One timed transfer through a peer ([`Channel`]): the channel made here, the writer a
//! forked process (pinned if asked) that takes its end and reports ready, the reader this
//! process; the time from the start gate's opening to the reader's last message.

use std::time::{Duration, Instant};

use shmsem_benchmarks::Res;
use shmsem_benchmarks::machine::pin;
use shmsem_benchmarks::peers::{Channel, Receiver, Sender};
use shmsem_benchmarks::procs::{Team, WATCHDOG};

use crate::timing::{check, send_all};

/// `count` messages of `size` bytes through a new `C`; `None` if `C` cannot carry them.
pub fn run<C: Channel>(
    size: usize,
    count: u64,
    writer_cpu: Option<usize>,
) -> Res<Option<Duration>> {
    if C::max_message().is_some_and(|max| size > max) {
        return Ok(None);
    }
    let channel = C::new(size)?;
    let mut team = Team::new(WATCHDOG)?;
    team.spawn(|gate| {
        if let Some(cpu) = writer_cpu {
            pin(cpu)?;
        }
        let mut tx = channel.sender()?;
        gate.ready()?;
        gate.wait()?;
        send_all(size, count, |msg| tx.send(msg))
    })?;
    let read = (|| -> Res<Duration> {
        let mut rx = channel.receiver()?;
        let mut buf = Vec::with_capacity(size);
        team.wait_ready()?;
        let start = Instant::now();
        team.release();
        for i in 0..count {
            rx.recv(&mut buf)?;
            check(i, &buf, size)?;
        }
        Ok(start.elapsed())
    })();
    match read {
        Ok(took) => {
            team.wait()?;
            Ok(Some(took))
        }
        Err(e) => {
            // A writer that failed (the likely cause) reports before it exits: give it a
            // moment. One still running is killed as `team` drops.
            let _ = team.wait_within(Duration::from_secs(1));
            Err(e)
        }
    }
}
