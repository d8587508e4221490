//! The Python row: the same ping-pong with two System V semaphores (one set of one each)
//! driven from Python through `sysv_ipc` (`pingpong.py`, beside this file), two
//! interpreters forked and exec'd by the harness's [`Team`] (the interpreter and the
//! spawning are the harness's: [`shmsem_benchmarks::python`]) (so bounded by its watchdog,
//! and killed if the parent gives up). The parent makes both sets (exclusive, under keys
//! of its own, since `sysv_ipc` opens semaphores by key) and removes them on drop; it
//! checks that both sides did every round trip, that no handoff arrived before it was
//! sent, and that both semaphores are 0 at the end.

use std::time::Duration;

use shmsem::{Key, SemaphoreSet};
use shmsem_benchmarks::Res;
use shmsem_benchmarks::procs::Team;
use shmsem_benchmarks::python::{Capture, Owned, fresh};

use crate::sides::{PING, PONG, Plan, RUN_WATCHDOG, Sample, WAIT_BOUND, hung, side_name};

const SCRIPT: &str = include_str!("pingpong.py");

/// The interpreter, and the two semaphore sets (`sems[s]` is acquired by side `s`).
pub struct Python {
    python: shmsem_benchmarks::python::Python,
    sems: [Owned<SemaphoreSet>; 2],
}

/// A set of one semaphore under a fresh key.
fn fresh_set() -> Res<Owned<SemaphoreSet>> {
    fresh(|key: Key| SemaphoreSet::create(key, 1, 0o600))
}

impl Python {
    /// The first interpreter that can import sysv_ipc (see
    /// [`shmsem_benchmarks::python`]), with its two sets; `Err(why not)` if none.
    pub fn find() -> Result<Python, String> {
        let python = shmsem_benchmarks::python::Python::find()?;
        let sems =
            (|| -> Res<_> { Ok([fresh_set()?, fresh_set()?]) })().map_err(|e| e.to_string())?;
        Ok(Python { python, sems })
    }

    /// Where the interpreter is, and `sysv_ipc X / Python Y`, for the heading.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.python.path.display(), self.python.version)
    }

    /// One run.
    pub fn run(&self, plan: &Plan) -> Res<Sample> {
        for s in &self.sems {
            s.0.set_value(0, 0)?;
        }
        let outputs = [Capture::new()?, Capture::new()?];
        let mut team = Team::new(RUN_WATCHDOG)?;
        for me in [PING, PONG] {
            let args = [
                "-c".to_string(),
                SCRIPT.to_string(),
                side_name(me).to_string(),
                self.sems[me].0.key().as_raw().to_string(),
                self.sems[1 - me].0.key().as_raw().to_string(),
                plan.warm.to_string(),
                plan.rounds.to_string(),
            ];
            self.python
                .spawn(&mut team, &args, &outputs[me], false, plan.cpu(me))?;
        }
        team.release();
        team.wait().map_err(|e| hung("sysv_ipc", e))?;
        for (s, set) in self.sems.iter().enumerate() {
            let value = set.0.value(0)?;
            if value != 0 {
                return Err(format!(
                    "sysv_ipc: WRONG COUNT: {}'s semaphore is {value} after the run, not 0",
                    side_name(s)
                )
                .into());
            }
        }
        let [ping, pong] = outputs;
        let ping =
            Report::parse(&ping.read()?, plan).map_err(|e| format!("sysv_ipc, ping: {e}"))?;
        let pong =
            Report::parse(&pong.read()?, plan).map_err(|e| format!("sysv_ipc, pong: {e}"))?;
        let mut deltas = Vec::with_capacity(2 * plan.rounds as usize);
        // Ping to pong, then pong to ping: round i's receipt minus its sending.
        for (from, to) in [(&ping, &pong), (&pong, &ping)] {
            for (i, (&sent, &got)) in from.sent.iter().zip(&to.got).enumerate() {
                if got < sent {
                    return Err(format!(
                        "sysv_ipc: round {i}: a handoff arrived before it was sent \
                         ({sent} > {got} ns): a semaphore gave a turn twice"
                    )
                    .into());
                }
                if got - sent >= WAIT_BOUND.as_nanos() as u64 {
                    return Err(format!(
                        "sysv_ipc: LOST WAKE-UP: round {i}: a handoff took {:.1?}",
                        Duration::from_nanos(got - sent)
                    )
                    .into());
                }
                deltas.push(got - sent);
            }
        }
        if ping.window.1 <= ping.window.0 {
            return Err("sysv_ipc: ping reported no time window".into());
        }
        Ok(Sample::new(
            plan.rounds,
            ping.window.1 - ping.window.0,
            deltas,
        ))
    }
}

/// What one Python side printed.
struct Report {
    /// Ping's timed window (0s for pong).
    window: (u64, u64),
    sent: Vec<u64>,
    got: Vec<u64>,
}

impl Report {
    fn parse(text: &str, plan: &Plan) -> Res<Report> {
        let mut done = None;
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        let mut window = (0, 0);
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let head = words.next();
            let numbers: Vec<u64> = words.map(str::parse).collect::<Result<_, _>>()?;
            match (head, numbers.as_slice()) {
                (Some("done"), &[n, start, end]) => {
                    done = Some(n);
                    window = (start, end);
                }
                (Some("sent"), _) => sent = numbers,
                (Some("got"), _) => got = numbers,
                _ => return Err(format!("unexpected output: {line:.80}").into()),
            }
        }
        if done != Some(plan.total()) {
            return Err(format!(
                "WRONG COUNT: {done:?} round trips done, expected {}",
                plan.total()
            )
            .into());
        }
        let n = plan.rounds as usize;
        if sent.len() != n || got.len() != n {
            return Err(format!(
                "{} send and {} receive stamps, expected {n} each",
                sent.len(),
                got.len()
            )
            .into());
        }
        Ok(Report { window, sent, got })
    }
}
