//! The same ping-pong through a peer ([`Channel`]): two channels made here before the
//! fork (ping, pong); the ponger takes ping's receiver and pong's sender, the pinger
//! (this process) the other two. Each run stops after `rounds` round trips or
//! [`BUDGET`] of wall time, whichever comes first (a pipe's round trip on a busy VM can
//! be 100 times the queue's), and then sends a stop message that the ponger does not
//! echo.

use std::time::{Duration, Instant};

use shmsem_benchmarks::Res;
use shmsem_benchmarks::clock::now_ns;
use shmsem_benchmarks::peers::{Channel, Receiver, Sender};
use shmsem_benchmarks::procs::Team;

use crate::{Config, SIZE, Sample, check, cpu_seconds, start_hog};

/// The longest a run measures for.
pub const BUDGET: Duration = Duration::from_secs(2);

/// The round number of the stop message.
const STOP: u64 = u64::MAX;

/// One ping-pong run through two `C`s (with a CPU hog beside it if `busy`).
pub fn one_run<C: Channel>(config: &Config, busy: bool) -> Res<Sample> {
    let ping = C::new(SIZE)?;
    let pong = C::new(SIZE)?;
    let hog = start_hog(busy)?;
    let mut team = Team::new(Duration::from_secs(120))?;
    team.spawn(|gate| {
        let mut rx = ping.receiver()?;
        let mut tx = pong.sender()?;
        gate.ready()?;
        gate.wait()?;
        let mut buf = Vec::with_capacity(SIZE);
        for i in 0.. {
            rx.recv(&mut buf)?;
            if round(&buf) == Some(STOP) {
                return Ok(());
            }
            check(i, &buf)?;
            tx.send(&buf)?;
        }
        Ok(())
    })?;
    let mut tx = ping.sender()?;
    let mut rx = pong.receiver()?;
    team.wait_ready()?;
    let cpu_before = cpu_seconds();
    team.release();
    let wall = Instant::now();
    let deadline = now_ns() + BUDGET.as_nanos() as u64;
    let mut rts = Vec::with_capacity(config.rounds as usize);
    let mut msg = [0u8; SIZE];
    let mut buf = Vec::with_capacity(SIZE);
    for i in 0..config.rounds {
        msg[..8].copy_from_slice(&i.to_ne_bytes());
        let t0 = now_ns();
        tx.send(&msg)?;
        rx.recv(&mut buf)?;
        let t1 = now_ns();
        rts.push(t1 - t0);
        check(i, &buf)?;
        if t1 > deadline {
            break;
        }
    }
    msg[..8].copy_from_slice(&STOP.to_ne_bytes());
    tx.send(&msg)?;
    let wall = wall.elapsed().as_secs_f64();
    team.wait_within(Duration::from_secs(10))?;
    let used = cpu_seconds() - cpu_before;
    drop(hog);
    Ok(Sample::new(rts, used, wall))
}

/// A message's round number.
fn round(buf: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(buf.get(..8)?.try_into().ok()?))
}
