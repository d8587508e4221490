//! The lock comparison: how fast is a `SharedMutex`, next to the other locks two
//! processes can share? And when most operations only read, how does a `SharedRwLock` do?
//! This file: the command line, calibration and the schedule of runs; the modules beside
//! it hold the scenarios, the locks (one module each), the runner and the report.
//!
//! ```text
//! cargo run --release -p shmsem-benchmarks --bin lock_compare              # 5 runs per cell
//! cargo run --release -p shmsem-benchmarks --bin lock_compare -- 3         # 3 runs per cell
//! cargo run --release -p shmsem-benchmarks --bin lock_compare -- 5 20000   # 20000 ops/worker
//! cargo run --release -p shmsem-benchmarks --bin lock_compare -- --quick   # proves it works
//! cargo run --release -p shmsem-benchmarks --bin lock_compare -- --scenarios b,c  # just those
//! ```
//!
//! The default takes about 1.5 minutes on a 2-CPU VM (runs of 0.25 s: it was 2.5 minutes
//! with 0.4 s runs and the raw_sync and sysv_ipc columns, too long for the whole suite's
//! 10-minute budget, `benchmarks/run`); `--quick` is 1 run of 2000 ops per worker.
//!
//! Locks (each guarding a [`Record`] of four `u64` next to it in shared memory):
//!
//! - `shmsem`: [`SharedMutex<Record>`](shmsem::SharedMutex), the subject;
//! - `raw semop`: a one-semaphore System V set (value 1), `semop(-1, SEM_UNDO)` /
//!   `semop(+1, SEM_UNDO)` straight through libc: the kernel's cost, nothing added;
//! - `pthread`: a process-shared, robust `pthread_mutex_t` (`EOWNERDEAD` is repaired with
//!   `pthread_mutex_consistent`), in an anonymous `MAP_SHARED` mapping;
//! - `raw_sync`: the `raw_sync` crate's `Mutex` (a process-shared, not robust
//!   `pthread_mutex_t`) in such a mapping, as its users write it: `Mutex::new` by the
//!   parent, `Mutex::from_existing` in each worker, `lock()`'s guard releasing on drop;
//! - `sem_t`: a POSIX semaphore (`sem_init(pshared = 1, value = 1)`) in such a mapping;
//! - `flock`: `flock(LOCK_EX)` / `flock(LOCK_UN)` on a temporary file, which every worker
//!   (process or thread) opens itself: flock locks belong to open file descriptions;
//! - `sysv_ipc`: Python, one interpreter per worker process, taking a one-semaphore System
//!   V set with `sysv_ipc`'s `acquire()` / `release()` (`undo = True`: `SEM_UNDO`) around
//!   an increment of a counter in a System V segment: the per-operation cost users of that
//!   module know (`locks/lockloop.py`). The interpreter: `$SHMSEM_PYTHON`, else the interop
//!   tests' `target/interop-venv/bin/python`; without one the column shows `-` and the
//!   heading says why (never a failure). Only in the scenarios with one thread per process;
//! - `shmsem rw`: [`SharedRwLock<Record>`](shmsem::SharedRwLock), the subject of the
//!   read-heavy scenarios (a read is one semop in, of three operations: no writer inside,
//!   none queued, one more reader; a multi-operation semop takes the kernel's lock of the
//!   whole set; and one out; a write announces itself first: three semops; writers
//!   preferred; a contended read or write retries with `IPC_NOWAIT` for a bounded while
//!   before it sleeps in the kernel);
//! - `pthread rw`: a process-shared `pthread_rwlock_t`
//!   (`pthread_rwlockattr_setpshared(PTHREAD_PROCESS_SHARED)`, glibc's default kind,
//!   which prefers readers), in an anonymous `MAP_SHARED` mapping.
//!
//! Mutex scenarios: (a) one process, uncontended lock + unlock; (b) 2 and (c) 4
//! processes, (d) 1 process x 4 threads, (e) 2 processes x 2 threads, each worker
//! incrementing the record's `seq` (the counter) under the lock N times; (f) 2 and (g) 4
//! processes doing the same with ~0.5 us of [`busy_work`] after each unlock. In (b)-(e) a
//! worker is back for the lock at once, so a lock does best there by letting one process
//! keep it for a while (few hand-overs between CPUs); (f) and (g) show what happens
//! when workers do something between their turns, as real ones do: then a lock whose
//! waiters take it promptly keeps the CPUs busy. (l), last so that the letters of the
//! others stay, is (b) with 8 processes: more waiters than CPUs on most test machines,
//! where a waiter that spins takes a CPU from the holder. They run the seven mutexes
//! (`sysv_ipc` only (a)-(c) and (l)); the reader-writer locks are not in them.
//!
//! Read-heavy scenarios: (h) 4 processes and (i) 2 processes x 2 threads at 90% reads,
//! (j) 4 processes at 99% reads, (k) 4 processes at 90% reads with a ~2 us read section.
//! Each of a worker's N operations is a read (read lock, copy the record and check that
//! it is whole, unlock) or a write (write lock, check the record, rewrite all four fields
//! from `seq + 1`, unlock); which one comes from a per-worker xorshift64 seeded with the
//! worker's index: the same deterministic sequence in every run and for every lock, no
//! system call. They run `shmsem rw` (the subject), `shmsem` (a plain `SharedMutex`: a
//! read just locks), `pthread rw`, and `pthread` (the robust mutex, so that each
//! library's reader-writer lock has its own mutex beside it); `raw semop`, `sem_t` and
//! `flock` add nothing new there and show as `-`.
//!
//! In (h)-(j) a critical section is a few nanoseconds, so they measure what each lock's
//! acquire and release cost (for the semop-based ones, their system calls), which is
//! where a reader-writer lock, doing more per acquisition, loses to a mutex. (k) is (h)
//! with reads that take a while: inside the read lock, after the check, every read runs
//! [`busy_work`] over its copy of the record (a loop of `black_box`ed arithmetic) for
//! about 2 us; writes are unchanged. The loop's iteration count (here and in (f), (g)) is
//! calibrated once at startup ([`WorkLoop`]: the fastest of several timed batches, alone,
//! no lock) and printed with the measured time of one operation's work. There, readers that overlap can
//! win back what their lock costs; with more workers than CPUs they also compete for the
//! CPUs (a reader preempted inside holds writers off, a mutex holder preempted inside
//! holds everyone off).
//!
//! The parent forks the workers, lets them go together through a pipe (closing its write
//! end: no sleeps), waits for their exits, and checks the record: in the mutex scenarios
//! `seq` must be exactly the sum of the increments the workers report (workers x N unless
//! a run was capped, see below); in the read-heavy ones exactly the sum of the writes they
//! report, the record must be whole at the end, and no read or write may have found it
//! torn. The program fails loudly otherwise (`WRONG COUNT`, `TORN RECORD`).
//!
//! Reported per (scenario, lock), as the median over the runs:
//! - throughput: total operations (reads and writes alike) / (last worker's end - first
//!   worker's start), so forks and exits are not counted;
//! - max wait: in the contended scenarios every acquisition (read or write) is timed
//!   (monotonic clock, before `lock` to inside the critical section); the worst
//!   acquisition of the worst worker. Those two clock reads are included in the contended
//!   numbers (their cost is printed); scenario (a) has no clock reads, so its ns/op is the
//!   bare pair.
//! - fairness, in the contended mutex scenarios (b)-(e), a table each (issue 15's bound:
//!   "the worst wait of any process stays within 10x the median"). Every acquisition's
//!   wait (the same clock reads as the max wait) goes into its worker's histogram (16
//!   log-linear buckets per power of two: 6% resolution; no sampling, every wait counted;
//!   recording costs a few instructions outside the timed stretch), and the parent pools
//!   them per run. Printed per lock, median over runs: the pooled median and p99 wait; the
//!   worst single wait of any worker; **worst/median**, the longest single wait of any
//!   worker over the median of all waits of the run (also its worst run; `> 10x` marks
//!   the issue's bound exceeded); the slowest worker's mean wait (a worker kept waiting
//!   more often than the others shows there, where one long wait does not); and **turns**,
//!   the operations each worker did while all of them competed (from the last worker's
//!   start to the first one's end), fewest / most (1.00 = equal turns; `-` if one worker
//!   finished before another started, as fast locks do with few operations). To count
//!   turns, a timed worker reads one or two words of a cache line written only at the
//!   starts and at the first end, after each operation, until it saw the first end (the
//!   Python workers every 16 operations). With more workers than CPUs every lock's worst
//!   wait includes a preempted holder's time slice (milliseconds), so the ratio is far
//!   above 10x for all of them there;
//! - ratios: the throughput of the scenario's subject (`shmsem`, or `shmsem rwlock` in the
//!   read-heavy scenarios) over each other lock's, median over runs of the ratio within
//!   each run (above 1x the subject is faster).
//!
//! The summary has a column per lock and a row per scenario; `-` marks a lock that is not
//! in that scenario.
//!
//! N (operations per worker) is calibrated per (scenario, lock) so that one run lasts
//! about 0.25 s (locks differ by 100x), unless given on the command line. Semop-based locks
//! have two regimes on a small machine (fast, and a convoy where every hand-over wakes a
//! sleeper, 10-40x slower): N is sized for the fast one, a run caught in the slow one stops
//! at a 0.75 s cap (the table says how many did; the count is still checked exactly, against
//! the operations done), and a run that was far too short raises N for the later runs.
//!
//! Extending: a lock is a [`Lock`] (shared object made by the parent before forking) with
//! a [`Handle`] (what one worker thread uses: `with_lock`, and `with_read_lock`, which
//! defaults to `with_lock` for plain mutexes), in a module of its own under `locks/` (a
//! lock whose whole state fits beside the record in shared memory only implements
//! `CellLock`, in `locks/cell.rs`, for the rest); add it to [`subjects`] with an index
//! constant and its names in the tables (a competitor that runs its own workers, as the
//! Python one does, implements [`Subject`] itself). A scenario is a row of
//! [`SCENARIOS`]; its [`Workload`] says what each operation does (an [`Op`]) and which
//! subjects run it, the first being the one the ratios are taken of
//! ([`Workload::lineup`]). The fork/gate/wait machinery is the harness library's
//! ([`Team`]), shared with the queue comparison.
//!
//! Every object (System V sets and segments, mappings, the temp file) is removed when the
//! program ends, also on errors and on Ctrl-C: `ipcs -m -s` shows nothing left.
//!
//! [`Record`]: record::Record
//! [`busy_work`]: record::busy_work
//! [`WorkLoop`]: record::WorkLoop
//! [`Lock`]: locks::Lock
//! [`Handle`]: locks::Handle
//! [`subjects`]: locks::subjects
//! [`SCENARIOS`]: scenarios::SCENARIOS
//! [`Workload`]: scenarios::Workload
//! [`Op`]: ops::Op
//! [`Workload::lineup`]: scenarios::Workload::lineup
//! [`Team`]: shmsem_benchmarks::procs::Team
//! [`Subject`]: runner::Subject

mod locks;
mod ops;
mod record;
mod report;
mod runner;
mod scenarios;
mod waits;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmsem_benchmarks::interrupt::catch_interrupts;
use shmsem_benchmarks::{Res, args};

use crate::locks::subjects;
use crate::record::WorkLoop;
use crate::runner::{Board, Sample, Subject, Work};
use crate::scenarios::{SCENARIOS, Scenario};

const USAGE: &str = "usage: lock_compare [--quick] [--scenarios ID,ID.. (default: all, a-l)] \
     [RUNS (default 5)] [OPS per worker (default: calibrated)]";

/// How long one calibrated run should last.
const TARGET_RUN: Duration = Duration::from_millis(250);
/// A calibrated run stops early after this long (its workers stop taking the lock): a
/// lock that falls into a slower regime after calibration (a convoy) must not stretch the
/// whole benchmark. The count is still checked exactly, against the operations done.
const RUN_CAP: Duration = Duration::from_millis(750);
/// A calibration run shorter than this is too short to extrapolate from.
const CALIBRATION_MIN: Duration = Duration::from_millis(40);
/// Operations per worker in `--quick` mode.
const QUICK_OPS: u64 = 2000;
/// Bounds of a calibrated N.
const MIN_OPS: u64 = 1000;
const MAX_OPS: u64 = 100_000_000;

struct Config {
    runs: usize,
    /// Operations per worker; `None`: calibrate.
    ops: Option<u64>,
    quick: bool,
    /// The scenarios to run, by id; `None`: all.
    scenarios: Option<Vec<String>>,
}

impl Config {
    /// Does this run include scenario `scenario`?
    fn runs_scenario(&self, scenario: &Scenario) -> bool {
        self.scenarios
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == scenario.id))
    }
}

fn parse_args() -> Res<Config> {
    let mut quick = false;
    let mut scenarios = None;
    let mut numbers = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--scenarios" => {
                let ids: Vec<&str> = SCENARIOS.iter().map(|s| s.id).collect();
                scenarios = Some(args::names(&mut args, "--scenarios", &ids, USAGE)?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s => match s.parse::<u64>() {
                Ok(n) if n > 0 => numbers.push(n),
                _ => return Err(format!("bad argument {s:?}\n{USAGE}").into()),
            },
        }
    }
    if numbers.len() > 2 {
        return Err(USAGE.into());
    }
    let runs = numbers
        .first()
        .copied()
        .unwrap_or(if quick { 1 } else { 5 });
    let ops = numbers.get(1).copied().or(quick.then_some(QUICK_OPS));
    Ok(Config {
        runs: usize::try_from(runs)?,
        ops,
        quick,
        scenarios,
    })
}

fn main() -> ExitCode {
    catch_interrupts();
    shmsem_benchmarks::main(|| bench(&parse_args()?))
}

fn bench(config: &Config) -> Res<()> {
    let started = Instant::now();
    let subjects = subjects()?;
    let board = Board::new()?;
    let nl = subjects.len();
    let ns = SCENARIOS.len();

    // Iterations of the work loop per operation, per scenario (0 where there is none).
    let work_loop = WorkLoop::calibrate();
    let work_iters: Vec<u64> = SCENARIOS
        .iter()
        .map(|scenario| work_loop.iters_for(scenario.workload.work_ns()))
        .collect();
    let selected: Vec<bool> = SCENARIOS.iter().map(|s| config.runs_scenario(s)).collect();
    report::header(&subjects, &work_loop, &work_iters, &selected);

    // N per (scenario, lock).
    let mut ops = vec![vec![0u64; nl]; ns];
    match config.ops {
        Some(n) => ops.iter_mut().flatten().for_each(|o| *o = n),
        None => {
            eprintln!(
                "calibrating N (ops per worker) for a {:?} run...",
                TARGET_RUN
            );
            for (s, scenario) in SCENARIOS.iter().enumerate() {
                if !selected[s] {
                    continue;
                }
                for l in scenario.lineup(&subjects) {
                    ops[s][l] = calibrate(subjects[l].as_ref(), scenario, work_iters[s], &board)?;
                }
            }
        }
    }

    // samples[s][l] = one Sample per run (none for a lock not in the scenario's lineup).
    // Runs are interleaved (every lock of the lineup once per scenario in each run, in a
    // rotating order), so slow drift on a noisy machine hits every lock alike and the
    // ratios compare neighbours in time.
    let mut samples = vec![vec![Vec::<Sample>::new(); nl]; ns];
    // A calibrated N gets the time cap; an N from the command line is done in full.
    let cap_ns = match config.ops {
        Some(_) => u64::MAX,
        None => RUN_CAP.as_nanos() as u64,
    };
    for run in 0..config.runs {
        eprintln!("run {}/{}...", run + 1, config.runs);
        for (s, scenario) in SCENARIOS.iter().enumerate() {
            if !selected[s] {
                continue;
            }
            let lineup = scenario.lineup(&subjects);
            for k in 0..lineup.len() {
                let l = lineup[(k + run) % lineup.len()];
                let work = Work {
                    ops: ops[s][l],
                    cap_ns,
                    work_iters: work_iters[s],
                };
                let sample = subjects[l].run(scenario, work, &board)?;
                // A run far shorter than the target (calibrated in a slow moment) measures
                // badly: later runs of this cell get a bigger N (never a smaller one).
                if config.ops.is_none() && (sample.window_ns as u128) < TARGET_RUN.as_nanos() / 4 {
                    ops[s][l] = ops[s][l].max(ops_for(sample.mops(), scenario, TARGET_RUN));
                }
                samples[s][l].push(sample);
            }
        }
    }

    report::results(&subjects, &ops, &samples, config.runs, &selected);
    report::footer(&samples, started, RUN_CAP);
    if config.quick {
        println!("(--quick: 1 run of {QUICK_OPS} ops per worker: a smoke test, not a measurement)");
    }
    drop(subjects); // removes the System V objects and the temp file (also on `?` above)
    Ok(())
}

/// Chooses N for one (scenario, lock): grows a small count until a run lasts
/// [`CALIBRATION_MIN`], takes the fastest of three such runs (semop-based locks have a
/// fast and a slow regime; a run in the slow one is stopped by [`RUN_CAP`], while an N
/// sized for it would make fast runs too short to measure), and scales it to
/// [`TARGET_RUN`]. `work_iters`: the scenario's [`Work::work_iters`].
fn calibrate(
    subject: &dyn Subject,
    scenario: &Scenario,
    work_iters: u64,
    board: &Board,
) -> Res<u64> {
    let cap_ns = RUN_CAP.as_nanos() as u64;
    let mut ops = 500;
    let mut probes = Vec::new();
    while probes.len() < 3 {
        let work = Work {
            ops,
            cap_ns,
            work_iters,
        };
        let sample = subject.run(scenario, work, board)?;
        let took = sample.window_ns.max(1);
        if took >= CALIBRATION_MIN.as_nanos() as u64 || ops >= MAX_OPS {
            probes.push(sample);
        } else {
            let factor = (CALIBRATION_MIN.as_nanos() as u64 * 2 / took).clamp(2, 64);
            ops = (ops * factor).min(MAX_OPS);
        }
    }
    let fastest = probes.iter().map(Sample::mops).fold(0.0, f64::max);
    Ok(ops_for(fastest, scenario, TARGET_RUN))
}

/// Operations per worker that take `target` at `mops` M ops/s (all workers together).
fn ops_for(mops: f64, scenario: &Scenario, target: Duration) -> u64 {
    let total = mops * 1e6 * target.as_secs_f64();
    ((total / scenario.workers() as f64) as u64).clamp(MIN_OPS, MAX_OPS)
}
