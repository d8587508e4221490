//! Python's `sysv_ipc`: what a lock costs its users. Each worker process is a Python
//! interpreter (forked by the harness's [`Team`], so bounded by its watchdog and killed if
//! the parent gives up, then exec'd) running `lockloop.py` (beside this file): a
//! one-semaphore System V set (value 1) taken with `acquire()` and given back with
//! `release()`, `undo = True` (`SEM_UNDO`, as the other semaphore locks do), around an
//! increment of a counter in a System V segment (`mem.read`, `struct`, `mem.write`). The
//! interpreter is the harness's ([`shmsem_benchmarks::python`]); without one the column
//! shows `-` and the heading says why.
//!
//! Python has no `fork` gate to wait at after `exec`, so the script has its own: two more
//! one-semaphore sets, READY (each worker adds 1 once it is set up) and GATE (1 until the
//! parent, having taken READY down by the worker count, sets it to 0; the workers wait for
//! zero). Everything is made by the parent under fresh keys (`sysv_ipc` opens by key) and
//! removed on drop. Checked after each run: the counter is exactly the sum of the
//! increments the workers report, and the lock's value is back at 1. Only the scenarios
//! with one thread per process (the mutex ones) run it.

use std::time::{Duration, Instant};

use shmsem::{ErrorKind, Segment, SemOp, SemaphoreSet};
use shmsem_benchmarks::Res;
use shmsem_benchmarks::interrupt::check_interrupted;
use shmsem_benchmarks::procs::{Team, WATCHDOG};
use shmsem_benchmarks::python::{Capture, Owned, Python, fresh};

use crate::runner::{Board, Names, Sample, Subject, Work};
use crate::scenarios::{Scenario, Workload};
use crate::waits::{BUCKETS, Fairness};

const SCRIPT: &str = include_str!("lockloop.py");
/// How long the interpreters may take to start and get ready.
const READY_BOUND: Duration = Duration::from_secs(60);
/// Where the first finisher's end time and the count of started workers are, in the
/// segment (the counter is at 0).
const WINDOW_AT: usize = 64;

/// The column: the interpreter and the objects, or why there is none.
pub enum SysvIpc {
    Found(Box<Found>),
    Missing { names: Names, why: String },
}

pub struct Found {
    names: Names,
    python: Python,
    lock: Owned<SemaphoreSet>,
    ready: Owned<SemaphoreSet>,
    gate: Owned<SemaphoreSet>,
    segment: Owned<Segment>,
}

impl SysvIpc {
    /// Finds the interpreter and makes the objects; `Missing` (not an error) if there is
    /// no interpreter that can import sysv_ipc.
    pub fn new(names: Names) -> Res<Self> {
        let python = match Python::find() {
            Ok(python) => python,
            Err(why) => return Ok(SysvIpc::Missing { names, why }),
        };
        let set = || fresh(|key| SemaphoreSet::create(key, 1, 0o600));
        Ok(SysvIpc::Found(Box::new(Found {
            names,
            python,
            lock: set()?,
            ready: set()?,
            gate: set()?,
            segment: fresh(|key| Segment::create(key, 4096, 0o600))?,
        })))
    }
}

impl Subject for SysvIpc {
    fn index(&self) -> usize {
        super::SYSV_IPC
    }

    fn names(&self) -> &Names {
        match self {
            SysvIpc::Found(found) => &found.names,
            SysvIpc::Missing { names, .. } => names,
        }
    }

    fn runs(&self, scenario: &Scenario) -> bool {
        matches!(self, SysvIpc::Found(_))
            && scenario.threads == 1
            && matches!(scenario.workload, Workload::Increment { work_ns: 0 })
    }

    fn note(&self) -> Option<String> {
        Some(match self {
            SysvIpc::Found(found) => format!(
                "sysv_ipc column: {} ({}), one interpreter per worker process",
                found.python.path.display(),
                found.python.version
            ),
            SysvIpc::Missing { why, .. } => format!("sysv_ipc column: none (-): {why}"),
        })
    }

    fn run(&self, scenario: &Scenario, work: Work, _board: &Board) -> Res<Sample> {
        match self {
            SysvIpc::Found(found) => found.run(scenario, work),
            SysvIpc::Missing { .. } => Err("sysv_ipc: no Python".into()),
        }
    }
}

impl Found {
    fn run(&self, scenario: &Scenario, work: Work) -> Res<Sample> {
        let procs = scenario.procs;
        self.segment.0.write_all_at(&[0; WINDOW_AT + 16], 0)?;
        self.lock.0.set_value(0, 1)?;
        self.ready.0.set_value(0, 0)?;
        self.gate.0.set_value(0, 1)?;
        let outputs = (0..procs)
            .map(|_| Capture::new())
            .collect::<Res<Vec<_>>>()?;
        let mut team = Team::new(WATCHDOG)?;
        let key = |set: &Owned<SemaphoreSet>| set.0.key().as_raw().to_string();
        for out in &outputs {
            let args = [
                "-c".to_string(),
                SCRIPT.to_string(),
                key(&self.lock),
                key(&self.ready),
                key(&self.gate),
                self.segment.0.key().as_raw().to_string(),
                work.ops.to_string(),
                work.cap_ns.min(u64::MAX / 4).to_string(),
                u8::from(scenario.timed).to_string(),
                procs.to_string(),
            ];
            self.python.spawn(&mut team, &args, out, false, None)?;
        }
        team.release(); // the interpreters do not wait at it (see the module's docs)
        self.wait_ready(procs)?;
        self.gate.0.set_value(0, 0)?;
        team.wait()?;

        let mut hist = vec![0u64; BUCKETS];
        let (mut start, mut end, mut ops, mut worst, mut capped) = (u64::MAX, 0, 0, 0, false);
        let (mut turns, mut mean_waits) = (Vec::new(), Vec::new());
        for (i, out) in outputs.iter().enumerate() {
            let r = Report::parse(&out.read()?, &mut hist)
                .map_err(|e| format!("sysv_ipc, ({}), worker {i}: {e}", scenario.id))?;
            if r.done == 0 || r.done > work.ops {
                return Err(
                    format!("sysv_ipc, ({}): worker {i} did not report", scenario.id).into(),
                );
            }
            ops += r.done;
            capped |= r.done < work.ops;
            start = start.min(r.start);
            end = end.max(r.end);
            worst = worst.max(r.worst);
            turns.push(r.at_first.checked_sub(r.at_all));
            mean_waits.push(r.wait_sum as f64 / r.done as f64);
        }
        let mut counter = [0u8; 8];
        self.segment.0.read_exact_at(&mut counter, 0)?;
        let counter = u64::from_le_bytes(counter);
        if counter != ops {
            return Err(format!(
                "WRONG COUNT: sysv_ipc in scenario ({}) {}: the counter is {counter}, \
                 expected {ops} (the increments its {procs} workers did): the lock did not \
                 exclude",
                scenario.id, scenario.title
            )
            .into());
        }
        let value = self.lock.0.value(0)?;
        if value != 1 {
            return Err(
                format!("sysv_ipc: the lock's semaphore is {value} after the run, not 1").into(),
            );
        }
        Ok(Sample {
            ops,
            writes: ops,
            capped,
            window_ns: end.saturating_sub(start),
            max_wait_ns: scenario.timed.then_some(worst),
            fairness: scenario
                .fairness()
                .then(|| Fairness::new(&hist, worst, &mean_waits, &turns)),
        })
    }

    /// Waits until every worker said it is ready (READY reached `procs`; taken back to
    /// 0), bounded by [`READY_BOUND`], watching for Ctrl-C.
    fn wait_ready(&self, procs: usize) -> Res<()> {
        let deadline = Instant::now() + READY_BOUND;
        let all = SemOp::new(0, -i16::try_from(procs)?);
        loop {
            check_interrupted()?;
            match self.ready.0.op_timeout(&[all], Duration::from_millis(100)) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::TimedOut && Instant::now() < deadline => {}
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    return Err(format!(
                        "sysv_ipc: the Python workers were not ready after {READY_BOUND:?} \
                         (did one fail? see above)"
                    )
                    .into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// What one worker printed (its waits go straight into the pooled histogram).
struct Report {
    done: u64,
    start: u64,
    end: u64,
    at_all: u64,
    at_first: u64,
    worst: u64,
    wait_sum: u64,
}

impl Report {
    fn parse(text: &str, hist: &mut [u64]) -> Res<Report> {
        let mut report = None;
        for line in text.lines() {
            let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
            match head {
                "done" => {
                    let n: Vec<u64> = rest
                        .split_whitespace()
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                    let &[done, start, end, at_all, at_first, worst, wait_sum] = n.as_slice()
                    else {
                        return Err(format!("unexpected output: {line:.80}").into());
                    };
                    report = Some(Report {
                        done,
                        start,
                        end,
                        at_all,
                        at_first,
                        worst,
                        wait_sum,
                    });
                }
                "hist" => {
                    for pair in rest.split_whitespace() {
                        let (b, n) = pair.split_once(':').ok_or("bad histogram")?;
                        let b: usize = b.parse()?;
                        *hist.get_mut(b).ok_or("histogram bucket out of range")? +=
                            n.parse::<u64>()?;
                    }
                }
                _ => return Err(format!("unexpected output: {line:.80}").into()),
            }
        }
        report.ok_or_else(|| "no report".into())
    }
}
