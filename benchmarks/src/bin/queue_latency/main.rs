//! Queue latency: a 64-byte ping-pong between two processes through two shmsem queues,
//! on an idle machine and beside a CPU-bound process (a busy one), with the CPU the
//! waiting side burns. One-way latency is half a round trip.
//!
//! ```text
//! cargo run --release -p shmsem-benchmarks --bin queue_latency              # idle and busy
//! cargo run --release -p shmsem-benchmarks --bin queue_latency -- --quick   # a smoke run
//! cargo run --release -p shmsem-benchmarks --bin queue_latency -- --spin-us 10
//! ```
//!
//! The pinger is this process; the ponger is a forked child that echoes each message.
//! Every message carries its round number, checked on both sides. "Busy" adds one
//! process that spins on a CPU for the whole run (three runnable processes on a 2-CPU
//! machine, as in issue 15). Reported per run: median, p99 and p99.9 one-way; over the
//! runs: the median of each and the range of the medians; and the CPU time the two sides
//! used, as a share of the run's wall time (1.0 = one CPU busy all the time).
//!
//! The peers (`shmsem_benchmarks::peers`, one module each, the same adapters as
//! `queue_compare`'s) play the same ping-pong through two channels of theirs: the ideal
//! futex SPSC ring, iceoryx2 (publish-subscribe; its reader polls, so its CPU is high),
//! shmem-ipc, ipmpsc, ipc-channel and a pipe. A peer's run stops after the rounds or 2 s,
//! whichever comes first (`rounds` column: round trips measured), so that the slow ones
//! (a sleep/wake per message: tens of microseconds on a VM) keep the default run under
//! about 3 minutes: 7 transports x idle/busy x 5 runs x at most 2 s.
//! (iceoryx2 fails `queue_compare`'s check once its subscriber's buffer fills; a
//! ping-pong never holds more than one message in it, and every message is checked here.)

mod peers;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmsem::{Key, Queue};
use shmsem_benchmarks::clock::now_ns;
use shmsem_benchmarks::peers::iceoryx2::Iceoryx2;
use shmsem_benchmarks::peers::ideal::IdealRing;
use shmsem_benchmarks::peers::ipc_channel::IpcChannel;
use shmsem_benchmarks::peers::ipmpsc::Ipmpsc;
use shmsem_benchmarks::peers::shmem_ipc::ShmemIpc;
use shmsem_benchmarks::peers::stream::Pipe;
use shmsem_benchmarks::procs::Team;
use shmsem_benchmarks::stats::{median, range};
use shmsem_benchmarks::{Res, args, fmt, interrupt, machine};

const USAGE: &str = "usage: queue_latency [--quick] [--runs N (default 5)] \
    [--rounds N (default 100000)] [--spin-us MICROSECONDS (the queue's spin limit)] \
    [--only NAME,NAME.. (transports)] [--idle | --busy]";

/// Message size.
pub(crate) const SIZE: usize = 64;
/// A round trip that takes this long means a lost wake-up: the run fails.
const STALL: Duration = Duration::from_secs(10);

pub(crate) struct Config {
    runs: usize,
    pub(crate) rounds: u64,
    spin: Option<Duration>,
    /// Transports to run, if not all.
    only: Option<Vec<String>>,
    /// The loads to run: idle, busy or both.
    loads: Vec<bool>,
}

/// One run's figures.
pub(crate) struct Sample {
    median_ns: f64,
    p99_ns: f64,
    p999_ns: f64,
    /// CPU seconds the pinger and the ponger used, per wall second.
    cpu: f64,
    /// Round trips measured.
    rounds: usize,
}

/// One run: ping-pong through a transport, idle or busy.
type RunFn = fn(&Config, bool) -> Res<Sample>;

/// The transports, in the order of the table.
const TRANSPORTS: &[(&str, RunFn)] = &[
    ("shmsem", one_run),
    ("ideal ring", peers::one_run::<IdealRing>),
    ("iceoryx2", peers::one_run::<Iceoryx2>),
    ("shmem-ipc", peers::one_run::<ShmemIpc>),
    ("ipmpsc", peers::one_run::<Ipmpsc>),
    ("ipc-channel", peers::one_run::<IpcChannel>),
    ("pipe", peers::one_run::<Pipe>),
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue_latency: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<()> {
    let mut config = Config {
        runs: 5,
        rounds: 100_000,
        spin: None,
        only: None,
        loads: vec![false, true],
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| args::positive::<u64>(&mut args, what, USAGE);
        match arg.as_str() {
            "--quick" => {
                config.runs = 1;
                config.rounds = 5_000;
            }
            "--runs" => config.runs = usize::try_from(number("--runs")?)?,
            "--rounds" => config.rounds = number("--rounds")?,
            "--spin-us" => config.spin = Some(Duration::from_micros(number("--spin-us")?)),
            "--idle" => config.loads = vec![false],
            "--busy" => config.loads = vec![true],
            "--only" => {
                let known: Vec<&str> = TRANSPORTS.iter().map(|&(t, _)| t).collect();
                config.only = Some(args::names(&mut args, "--only", &known, USAGE)?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}").into()),
        }
    }
    println!(
        "queue latency: {SIZE} B ping-pong through two Queues (and two channels of each peer), {} round trips per run (peers: or 2 s), {} runs",
        config.rounds, config.runs
    );
    println!("{}", machine::headline());
    let _iceoryx2_files = shmsem_benchmarks::peers::iceoryx2::Leftovers;
    println!(
        "  {:<12} {:<6} {:>10} {:>18} {:>10} {:>10} {:>8} {:>7}",
        "transport", "load", "median", "range of medians", "p99", "p99.9", "CPU", "rounds"
    );
    let started = Instant::now();
    let chosen = |name: &str| {
        config
            .only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == name))
    };
    for &(name, run) in TRANSPORTS.iter().filter(|&&(name, _)| chosen(name)) {
        for &busy in &config.loads {
            let mut samples = Vec::new();
            for _ in 0..config.runs {
                interrupt::check_interrupted()?;
                let sample = run(&config, busy)
                    .map_err(|e| format!("{name}, {}: {e}", if busy { "busy" } else { "idle" }))?;
                samples.push(sample);
            }
            let medians: Vec<f64> = samples.iter().map(|s| s.median_ns).collect();
            let (lo, hi) = range(&medians);
            println!(
                "  {:<12} {:<6} {:>10} {:>18} {:>10} {:>10} {:>8.2} {:>7}",
                name,
                if busy { "busy" } else { "idle" },
                fmt::ns(median(medians.clone())),
                format!("{}..{}", fmt::ns(lo), fmt::ns(hi)),
                fmt::ns(median(samples.iter().map(|s| s.p99_ns).collect())),
                fmt::ns(median(samples.iter().map(|s| s.p999_ns).collect())),
                median(samples.iter().map(|s| s.cpu).collect()),
                median(samples.iter().map(|s| s.rounds as f64).collect()),
            );
        }
    }
    println!(
        "one-way = round trip / 2; every message's round number checked on both sides; took {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// One ping-pong run (with a CPU hog beside it if `busy`).
fn one_run(config: &Config, busy: bool) -> Res<Sample> {
    let ping = Owned(Queue::create(Key::PRIVATE, 64 * 1024)?);
    let pong = Owned(Queue::create(Key::PRIVATE, 64 * 1024)?);
    if let Some(spin) = config.spin {
        ping.0.set_spin_limit(spin);
        pong.0.set_spin_limit(spin);
    }
    let hog = start_hog(busy)?;
    let rounds = config.rounds;
    let mut team = Team::new(Duration::from_secs(120))?;
    let (ping_q, pong_q) = (&ping.0, &pong.0);
    team.spawn(|gate| {
        gate.ready()?;
        gate.wait()?;
        let mut buf = Vec::with_capacity(SIZE);
        for i in 0..rounds {
            ping_q.recv_timeout(&mut buf, STALL)?;
            check(i, &buf)?;
            pong_q.send(&buf)?;
        }
        Ok(())
    })?;
    team.wait_ready()?;
    let cpu_before = cpu_seconds();
    team.release();
    let wall = Instant::now();
    let mut rts = Vec::with_capacity(rounds as usize);
    let mut msg = [0u8; SIZE];
    let mut buf = Vec::with_capacity(SIZE);
    for i in 0..rounds {
        msg[..8].copy_from_slice(&i.to_ne_bytes());
        let t0 = now_ns();
        ping_q.send(&msg)?;
        pong_q.recv_timeout(&mut buf, STALL)?;
        rts.push(now_ns() - t0);
        check(i, &buf)?;
    }
    let wall = wall.elapsed().as_secs_f64();
    team.wait_within(Duration::from_secs(10))?;
    // The pinger's and the (reaped) ponger's; the hog is still running, not counted.
    let used = cpu_seconds() - cpu_before;
    drop(hog);
    Ok(Sample::new(rts, used, wall))
}

impl Sample {
    /// From the round trips (ns) and the CPU seconds the two sides used in `wall` seconds.
    fn new(mut rts: Vec<u64>, cpu_used: f64, wall: f64) -> Sample {
        rts.sort_unstable();
        let pct = |p: f64| rts[((rts.len() - 1) as f64 * p) as usize] as f64 / 2.0;
        Sample {
            rounds: rts.len(),
            median_ns: pct(0.5),
            p99_ns: pct(0.99),
            p999_ns: pct(0.999),
            cpu: (cpu_used / wall).max(0.0),
        }
    }
}

/// With `busy`, a CPU hog: a team of its own, forked before the ping-pong's (so it holds
/// no end of their start gate), spinning until the team drops, which kills and reaps it
/// (after the CPU times are read).
pub(crate) fn start_hog(busy: bool) -> Res<Team> {
    let mut hog = Team::new(Duration::from_secs(120))?;
    if busy {
        hog.spawn(|gate| {
            gate.ready()?;
            gate.wait()?;
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })?;
        hog.wait_ready()?;
        hog.release();
    }
    Ok(hog)
}

pub(crate) fn check(i: u64, buf: &[u8]) -> Res<()> {
    let got = buf
        .get(..8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap()));
    if buf.len() != SIZE || got != Some(i) {
        return Err(format!(
            "WRONG MESSAGE: round {i}, got {got:?} ({} bytes)",
            buf.len()
        )
        .into());
    }
    Ok(())
}

/// CPU seconds of this process and its reaped children (user + system).
pub(crate) fn cpu_seconds() -> f64 {
    let secs = |who| {
        // SAFETY: getrusage writes one rusage into the zeroed local.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `who` is RUSAGE_SELF or RUSAGE_CHILDREN.
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

/// Removes the queue when dropped.
struct Owned(Queue);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}
