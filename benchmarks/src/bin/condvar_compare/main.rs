//! The condvar comparison: how fast does a [`SharedCondvar`](::shmsem::SharedCondvar) hand
//! a turn from one process to another, next to the other ways two processes can wake each
//! other? This file: the command line, calibration, the schedule of runs and the table;
//! the ping-pong and its runner are in `sides.rs`, the competitors in the modules beside
//! it, one each.
//!
//! ```text
//! cargo run --release -p shmsem-benchmarks --bin condvar_compare              # 5 runs per cell, ~35 s
//! cargo run --release -p shmsem-benchmarks --bin condvar_compare -- --quick   # a second or two
//! cargo run --release -p shmsem-benchmarks --bin condvar_compare -- --runs 9 --rounds 20000
//! cargo run --release -p shmsem-benchmarks --bin condvar_compare -- --cpus 2,3   # one table
//! cargo run --release -p shmsem-benchmarks --bin condvar_compare -- --unpinned   # scheduler's
//! ```
//!
//! Two processes, ping and pong, play ping-pong: ping hands the turn to pong, pong hands it
//! back; that is one round trip, two handoffs. Through:
//!
//! - `shmsem`: a [`SharedMutex`](::shmsem::SharedMutex) holding the turn word, and a
//!   `SharedCondvar`. Each side holds the lock, waits in `wait_timeout_while(turn != me)`,
//!   flips the turn and calls `notify_one` (the subject);
//! - `pthread cv`: the same with a process-shared `pthread_mutex_t` and `pthread_cond_t`
//!   (futex-based, `PTHREAD_PROCESS_SHARED`, in an anonymous shared mapping; the condvar
//!   on `CLOCK_MONOTONIC` for `pthread_cond_timedwait`);
//! - `pipe`: a pipe per direction; a handoff is one 16-byte `write` and one `read`
//!   (the baseline of the ratios);
//! - `eventfd`: an eventfd per direction; a handoff is one 8-byte `write` and one `read`;
//! - `sysv_ipc`: Python, two interpreters doing the ping-pong with two System V
//!   semaphores through the `sysv_ipc` module (`release` / `acquire`): the cost per
//!   operation its users know. The interpreter: `$SHMSEM_PYTHON`, else the interop tests'
//!   `target/interop-venv/bin/python`; the row is skipped, with a note, if neither can
//!   import sysv_ipc.
//!
//! Every handoff is checked: it carries its number (in the turn word, the pipe message,
//! the eventfd counter), and the receiver fails the run unless it is the one expected;
//! after each run the parent checks the counter left behind (exactly 2 x round trips, or
//! nothing left unread in the pipes and eventfds). The Python sides count their round
//! trips, both semaphores must be 0 at the end, and no handoff may arrive before it was
//! sent (their only data is the stamps).
//!
//! Measured per run: round trips per second (ping's clock from its first timed handoff to
//! its last answer), and the one-way handoff latency: the sender reads the monotonic clock
//! right before it hands over (the stamp travels with the handoff, or beside it), the
//! receiver right after it sees the handoff; the median and the 99th percentile of both
//! directions' handoffs. Those two clock reads per handoff are included (their cost is
//! printed); the Python sides' stamps are `time.monotonic_ns()` (the same clock). Each
//! run starts with untimed warm-up round trips (Python's interpreters start there).
//! Reported: the median over the runs, the range (slowest..fastest run), and each row's
//! round trips/s over the pipe's within the same run (median of those ratios). The
//! competitors of a run take turns, in a rotating order, so slow drift on a noisy machine
//! hits them alike. Round trips per run are calibrated so that a run takes about 0.5 s.
//!
//! A handoff costs very different amounts depending on where the two sides run: on one
//! CPU the receiver runs as soon as the sender blocks; on two, the sender's wake-up must
//! reach another CPU (an inter-processor interrupt, costly on virtual machines: there a
//! cross-CPU handoff can take 20 times as long). Left to the scheduler, the placement
//! changes from run to run and every row turns bimodal. So there are two tables, both
//! sides pinned: (a) both on the first CPU this process may use, (b) ping on that one and
//! pong on the next. `--cpus P,Q` makes one table with ping on CPU P and pong on CPU Q;
//! `--unpinned` one with the scheduler's placement.
//!
//! Every wait is bounded: shmsem's and pthread's waits by a 10 s timeout that fails the
//! run as a lost wake-up (as does any handoff that took 10 s to arrive: when a wake-up is
//! lost, both sides' timeouts end together and the one whose turn it was goes on), every
//! run (pipes, eventfds and Python included) by a 60 s watchdog that kills its processes
//! and fails the program. Every object is removed at the end, also on errors and on
//! Ctrl-C (`ipcs -m -s` shows nothing left).

mod fds;
mod pthread;
mod python;
mod shmsem;
mod sides;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmsem_benchmarks::clock::clock_cost_ns;
use shmsem_benchmarks::interrupt::catch_interrupts;
use shmsem_benchmarks::stats::{median, range};
use shmsem_benchmarks::{Res, args, fmt, machine};

use crate::python::Python;
use crate::sides::{Plan, Sample};

const USAGE: &str = "usage: condvar_compare [--quick] [--runs N (default 5)] \
                     [--rounds N (default: calibrated)] [--cpus PING,PONG | --unpinned]";

/// How long one calibrated run should last.
const TARGET_RUN: Duration = Duration::from_millis(500);
/// Bounds of a calibrated round count.
const MIN_ROUNDS: u64 = 1000;
const MAX_ROUNDS: u64 = 1_000_000;
/// Round trips in `--quick` mode, and its warm-up.
const QUICK_ROUNDS: u64 = 1000;
const QUICK_WARM: u64 = 100;
/// The calibration probe: warm-up and timed round trips.
const PROBE: (u64, u64) = (100, 400);

struct Config {
    runs: usize,
    /// Round trips per run; `None`: calibrate.
    rounds: Option<u64>,
    /// (Ping's CPU, pong's CPU) per table, `None` for the scheduler's choice; `None`:
    /// [`default_placements`].
    placements: Option<Vec<Option<(usize, usize)>>>,
    quick: bool,
}

fn parse_args() -> Res<Config> {
    let mut config = Config {
        runs: 5,
        rounds: None,
        placements: None,
        quick: false,
    };
    let mut runs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| args::positive::<u64>(&mut args, what, USAGE);
        match arg.as_str() {
            "--quick" => config.quick = true,
            "--runs" => runs = Some(usize::try_from(number("--runs")?)?),
            "--rounds" => config.rounds = Some(number("--rounds")?),
            "--cpus" => {
                let v = args
                    .next()
                    .ok_or(format!("--cpus needs PING,PONG\n{USAGE}"))?;
                let pair = v
                    .split_once(',')
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                let pair = pair.ok_or(format!("--cpus: not two CPU numbers: {v}\n{USAGE}"))?;
                config.placements = Some(vec![Some(pair)]);
            }
            "--unpinned" => config.placements = Some(vec![None]),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if config.quick {
        config.runs = 1;
        config.rounds = config.rounds.or(Some(QUICK_ROUNDS));
    }
    config.runs = runs.unwrap_or(config.runs);
    Ok(config)
}

/// The competitors, in the order of the table.
enum Competitor {
    Shmsem(shmsem::Shmsem),
    Pthread(pthread::PthreadCv),
    Pipe(fds::Pipes),
    EventFd(fds::EventFds),
    Python(Python),
}

/// The baseline of the ratios: the pipe's row.
const BASELINE: usize = 2;

impl Competitor {
    fn name(&self) -> &'static str {
        match self {
            Competitor::Shmsem(_) => "shmsem Mutex+Condvar",
            Competitor::Pthread(_) => "pthread cond (futex)",
            Competitor::Pipe(_) => "pipe pair",
            Competitor::EventFd(_) => "eventfd pair",
            Competitor::Python(_) => "sysv_ipc (Python)",
        }
    }

    fn run(&self, plan: &Plan) -> Res<Sample> {
        let name = self.name();
        match self {
            Competitor::Shmsem(x) => sides::run(x, name, plan),
            Competitor::Pthread(x) => sides::run(x, name, plan),
            Competitor::Pipe(x) => sides::run(x, name, plan),
            Competitor::EventFd(x) => sides::run(x, name, plan),
            Competitor::Python(x) => x.run(plan),
        }
    }
}

fn main() -> ExitCode {
    catch_interrupts();
    shmsem_benchmarks::main(|| bench(&parse_args()?))
}

fn bench(config: &Config) -> Res<()> {
    let started = Instant::now();
    println!(
        "shmsem {} condvar comparison: ping-pong between two processes",
        env!("CARGO_PKG_VERSION")
    );
    println!("{}", machine::headline());
    println!("load average at the start: {}", load_average());
    println!(
        "clock read (monotonic): {:.0} ns; every handoff takes two (sender, receiver)",
        clock_cost_ns()
    );

    // Made once, before any fork; removed (dropped) at the end, also on `?`.
    let mut competitors = vec![
        Competitor::Shmsem(shmsem::Shmsem::new()?),
        Competitor::Pthread(pthread::PthreadCv::new()?),
        Competitor::Pipe(fds::Pipes::new()?),
        Competitor::EventFd(fds::EventFds::new()?),
    ];
    let python_found = match Python::find() {
        Ok(python) => {
            println!("python: {}", python.describe());
            competitors.push(Competitor::Python(python));
            true
        }
        Err(why) => {
            println!("python: none; the sysv_ipc row is skipped: {why}");
            false
        }
    };
    println!(
        "\n{} run{} per row, median shown; range = slowest..fastest run; x pipe: round \
         trips/s over the pipe's, within each run (median)",
        config.runs,
        if config.runs == 1 { "" } else { "s" }
    );

    let placements = match &config.placements {
        Some(p) => p.clone(),
        None => default_placements(),
    };
    let mut handoffs = 0;
    for (i, &cpus) in placements.iter().enumerate() {
        let id = char::from(b'a' + i as u8);
        println!("\n({id}) {}", describe(cpus));
        handoffs += placement(&competitors, cpus, config, python_found)?;
    }

    println!(
        "\nrounds: timed round trips (two handoffs) per run; k rt/s: thousand round trips \
         per second; one-way: a handoff's latency, sender's clock read to receiver's, median \
         of both directions (p99: the 99th percentile), median over runs"
    );
    println!(
        "every handoff checked: {handoffs} timed ones (and the warm-ups) arrived in order, \
         each exactly once; load average at the end: {}; took {:.0?}",
        load_average(),
        started.elapsed()
    );
    if config.quick {
        println!("(--quick: a smoke test, not a measurement)");
    }
    drop(competitors); // removes the System V objects (also on `?` above)
    Ok(())
}

/// Where the two sides run by default: both on the first CPU this process may use, then
/// on the first two (the costly cross-CPU wake-up). Left to the scheduler if there are
/// none to name.
fn default_placements() -> Vec<Option<(usize, usize)>> {
    match allowed_cpus()[..] {
        [] => vec![None],
        [a] => vec![Some((a, a))],
        [a, b, ..] => vec![Some((a, a)), Some((a, b))],
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data (all-zero: the empty set); sched_getaffinity fills
    // it; CPU_ISSET reads bits below CPU_SETSIZE of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

fn describe(cpus: Option<(usize, usize)>) -> String {
    match cpus {
        Some((a, b)) if a == b => format!("both sides pinned to CPU {a}"),
        Some((a, b)) => format!("ping pinned to CPU {a}, pong to CPU {b}"),
        None => "both sides placed by the scheduler (which may change between runs)".into(),
    }
}

/// Calibrates, runs and prints one placement's table; returns the timed handoffs checked.
fn placement(
    competitors: &[Competitor],
    cpus: Option<(usize, usize)>,
    config: &Config,
    python_found: bool,
) -> Res<u64> {
    let n = competitors.len();
    // Round trips per run, per competitor.
    let rounds: Vec<u64> = match config.rounds {
        Some(r) => vec![r; n],
        None => {
            eprintln!("calibrating round trips for a {TARGET_RUN:?} run...");
            competitors
                .iter()
                .map(|c| calibrate(c, cpus))
                .collect::<Res<_>>()?
        }
    };
    let plans: Vec<Plan> = rounds
        .iter()
        .map(|&rounds| Plan {
            warm: if config.quick {
                QUICK_WARM
            } else {
                (rounds / 10).clamp(100, 5000)
            },
            rounds,
            cpus,
        })
        .collect();

    // samples[c]: one per run. Runs interleave the competitors in a rotating order.
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); n];
    let mut vs_pipe: Vec<Vec<f64>> = vec![Vec::new(); n];
    for run in 0..config.runs {
        eprintln!("run {}/{}...", run + 1, config.runs);
        let mut this_run = vec![None; n];
        for k in 0..n {
            let c = (k + run) % n;
            let sample = competitors[c].run(&plans[c])?;
            this_run[c] = Some(sample);
            samples[c].push(sample);
        }
        let base = this_run[BASELINE].map_or(f64::NAN, |s| s.round_trips_per_s());
        for c in 0..n {
            if let Some(s) = this_run[c] {
                vs_pipe[c].push(s.round_trips_per_s() / base);
            }
        }
    }

    println!(
        "  {:<21} {:>8} {:>9} {:>15} {:>9} {:>15} {:>9} {:>7}",
        "", "rounds", "k rt/s", "range", "one-way", "range", "p99", "x pipe"
    );
    let mut handoffs = 0;
    for (c, competitor) in competitors.iter().enumerate() {
        let runs = &samples[c];
        let rtps: Vec<f64> = runs.iter().map(|s| s.round_trips_per_s() / 1e3).collect();
        let p50: Vec<f64> = runs.iter().map(|s| s.one_way_p50).collect();
        let p99: Vec<f64> = runs.iter().map(|s| s.one_way_p99).collect();
        let (rlo, rhi) = range(&rtps);
        let (olo, ohi) = range(&p50);
        handoffs += runs.iter().map(|s| 2 * s.rounds).sum::<u64>();
        println!(
            "  {:<21} {:>8} {:>9} {:>15} {:>9} {:>15} {:>9} {:>6.2}x",
            competitor.name(),
            rounds[c],
            fmt::mops(median(rtps)),
            format!("{}..{}", fmt::mops(rlo), fmt::mops(rhi)),
            fmt::ns(median(p50)),
            ns_range(olo, ohi),
            fmt::ns(median(p99)),
            median(vs_pipe[c].clone()),
        );
    }
    if !python_found {
        println!(
            "  {:<21} skipped: no Python that can import sysv_ipc (see above)",
            "sysv_ipc (Python)"
        );
    }
    Ok(handoffs)
}

/// Round trips for a [`TARGET_RUN`] run: from the faster of two short probes.
fn calibrate(c: &Competitor, cpus: Option<(usize, usize)>) -> Res<u64> {
    let probe = Plan {
        warm: PROBE.0,
        rounds: PROBE.1,
        cpus,
    };
    let fastest = (0..2)
        .map(|_| c.run(&probe).map(|s| s.round_trips_per_s()))
        .collect::<Res<Vec<f64>>>()?
        .into_iter()
        .fold(0.0, f64::max);
    Ok(((fastest * TARGET_RUN.as_secs_f64()) as u64).clamp(MIN_ROUNDS, MAX_ROUNDS))
}

/// `lo..hi` in nanoseconds as [`fmt::ns`] prints them, the unit once if they share it.
fn ns_range(lo: f64, hi: f64) -> String {
    let (lo, hi) = (fmt::ns(lo), fmt::ns(hi));
    match (lo.split_once(' '), hi.split_once(' ')) {
        (Some((a, unit)), Some((b, unit2))) if unit == unit2 => format!("{a}..{b} {unit}"),
        _ => format!("{lo}..{hi}"),
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}
