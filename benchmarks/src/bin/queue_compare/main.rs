//! The queue comparison: how fast is a shmsem [`Queue`](shmsem::Queue) between two
//! processes, next to the other ways two processes can stream messages? This file: the
//! command line and the table; the transports are the modules beside it, one each.
//!
//! ```text
//! cargo run --release -p shmsem-benchmarks --bin queue_compare              # 3 runs, 1 GiB
//! cargo run --release -p shmsem-benchmarks --bin queue_compare -- --quick   # a few seconds
//! cargo run --release -p shmsem-benchmarks --bin queue_compare -- --total-mib 256 --runs 5
//! cargo run --release -p shmsem-benchmarks --bin queue_compare -- --cpus 1,0   # see below
//! cargo run --release -p shmsem-benchmarks --bin queue_compare -- --sizes 64 --only shmsem,ideal
//! ```
//!
//! `--sizes` (bytes, comma-separated) and `--only` (column names) narrow the table to
//! the cells that matter for a change, so that more runs fit in the same time.
//!
//! One writer process sends fixed-size messages to one reader process; the reader checks
//! every message's length and its first byte (the sequence number, mod 256). Message
//! sizes: 64 B, 4 KiB, 64 KiB, 1 MiB. Per size, 1 GiB goes through (64 MiB at 64 B, where
//! every transport is bound by per-message cost); `--total-mib N` changes that (N/16 at
//! 64 B).
//!
//! Transports:
//!
//! - `shmsem`: a `Queue` with a ring of max(4 MiB, 4 records) bytes: 4 MiB for every
//!   size here (64 K records of 64 B; 4 records of 1 MiB, so the writer fills one while
//!   the reader empties another). `send(&msg)` / `recv(&mut buf)` with the `Vec` reused;
//! - `pipe`: `pipe2`, `write_all` / `read_exact` per message (default 64 KiB pipe buffer);
//! - `socketpair`: `socketpair(AF_UNIX, SOCK_STREAM)`, the same calls;
//! - `msgq`: a System V message queue, `msgsnd` / `msgrcv`. A message may hold at most
//!   `msgmax` bytes (8192 by default), so bigger messages go as several; the writer sends
//!   from a prepared `msgbuf` (no copy of its own, which favours msgq a little);
//! - `ideal`: the futex-based SPSC ring of [`shmsem_benchmarks::peers::ideal`], the
//!   reference for what an SPSC byte ring between two processes can do (a ring of
//!   max(4 MiB, 4 records), rounded up to a power of two); `/ ideal` is the key ratio;
//! - `ipc-channel`, `ipmpsc`, `shmem-ipc`: the crates, through the adapters of
//!   [`shmsem_benchmarks::peers`] (each module says how it is used and why so); none has
//!   a message size limit that rules out a size here (a "-" would say so);
//! - `iceoryx2` only with `--iceoryx2`: its adapter failed the reader's check between
//!   forked processes once the subscriber's buffer had filled, in every run one day and
//!   in none later (see its module), so it is left out of the default table;
//! - `memcpy`: the physical reference, no second process: one thread copying the same
//!   bytes in messages of that size, from a 4 MiB source (the queue's ring size) into one
//!   reused buffer. (A queue copies every byte twice, in and out, on two cores.)
//!
//! By default the scheduler places the two processes. Where it puts both on one CPU, a
//! pipe or socket needs no cross-CPU wake-ups and its data stays in one cache, which on
//! some machines (virtual ones especially, where a cross-CPU wake-up is costly) makes it
//! several times faster than with the ends on two CPUs; the queue is built for the two
//! CPU case. `--cpus W,R` pins the writer to CPU W and the reader (and memcpy) to CPU R,
//! so both placements can be measured (`--cpus 1,0`: writer on CPU 1, reader on CPU 0;
//! `--cpus 0,0`: both on CPU 0).
//!
//! Times are from the writer's start (released through the harness's start gate after
//! the fork) to the reader's last byte; forks and exits are not counted. Reported: GB/s
//! (10^9 bytes/s), the median over the runs (and at 64 B in M msgs/s too); and shmsem's
//! ratio to the pipe, to the ideal ring and to memcpy, the median of the ratios within
//! each run (the transports of one run take turns, so a noisy moment hits them alike).
//! Default runtime: about 1-3 minutes on a 2-CPU VM (1 GiB per size through 9
//! transports, 3 runs; the slowest cells are the syscall-bound ones at 64 B and msgq).
//! Every object is removed at the end
//! (`ipcs -m -s -q` shows nothing left), also on errors; a watchdog (`alarm`) ends a run
//! that hangs.

mod memcpy;
mod msgq;
mod peers;
mod queue;
mod timing;

use std::process::ExitCode;
use std::time::Duration;

use shmsem_benchmarks::peers::iceoryx2::Iceoryx2;
use shmsem_benchmarks::peers::ideal::IdealRing;
use shmsem_benchmarks::peers::ipc_channel::IpcChannel;
use shmsem_benchmarks::peers::ipmpsc::Ipmpsc;
use shmsem_benchmarks::peers::shmem_ipc::ShmemIpc;
use shmsem_benchmarks::peers::stream::{Pipe, SocketPair};
use shmsem_benchmarks::stats::median;
use shmsem_benchmarks::{Res, args, fmt, interrupt, machine};

use crate::queue::ring_for;

const USAGE: &str = "usage: queue_compare [--quick] [--total-mib N] [--runs N] [--cpus W,R] [--iceoryx2] \
     [--sizes N,N..] [--only NAME,NAME..]";
const SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];
/// Seconds after which the whole program ends (SIGALRM), should a run hang elsewhere.
const WATCHDOG_SECS: u32 = 1800;

struct Config {
    total_mib: usize,
    runs: usize,
    /// Writer's and reader's CPU, if pinned.
    cpus: Option<(usize, usize)>,
    /// Whether to run iceoryx2 too (it fails its check here: see its module).
    iceoryx2: bool,
    /// Message sizes to run (default: [`SIZES`]).
    sizes: Vec<usize>,
    /// Columns to run, if not all.
    only: Option<Vec<String>>,
}

fn parse_args() -> Res<Config> {
    let mut config = Config {
        total_mib: 1024,
        runs: 3,
        cpus: None,
        iceoryx2: false,
        sizes: SIZES.to_vec(),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| args::positive::<usize>(&mut args, what, USAGE);
        match arg.as_str() {
            "--quick" => {
                config.total_mib = 64;
                config.runs = 1;
            }
            "--iceoryx2" => config.iceoryx2 = true,
            "--total-mib" => config.total_mib = number("--total-mib")?,
            "--runs" => config.runs = number("--runs")?,
            "--cpus" => {
                let v = args.next().ok_or(format!("--cpus needs W,R\n{USAGE}"))?;
                let pair = v
                    .split_once(',')
                    .and_then(|(w, r)| Some((w.parse().ok()?, r.parse().ok()?)));
                config.cpus =
                    Some(pair.ok_or(format!("--cpus: not two CPU numbers: {v}\n{USAGE}"))?);
            }
            "--sizes" => {
                let v = args.next().ok_or(format!("--sizes needs N,N..\n{USAGE}"))?;
                let sizes: Option<Vec<usize>> = v
                    .split(',')
                    .map(|n| n.parse().ok().filter(|&n: &usize| n > 0))
                    .collect();
                config.sizes =
                    sizes.ok_or(format!("--sizes: not positive byte counts: {v}\n{USAGE}"))?;
            }
            "--only" => {
                let known: Vec<&str> = TRANSPORTS.iter().map(|&(t, _)| t).collect();
                config.only = Some(args::names(&mut args, "--only", &known, USAGE)?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    Ok(config)
}

/// Bytes sent per size: the total, a 16th of it at 64 B.
fn bytes_for(size: usize, total_mib: usize) -> u64 {
    let total = (total_mib as u64) << 20;
    if size <= 64 {
        (total / 16).max(1 << 20)
    } else {
        total
    }
}

/// One transfer of `count` messages of `size` bytes; `None` if the transport cannot carry
/// messages of that size.
type RunFn = fn(usize, u64, Option<usize>) -> Res<Option<Duration>>;

/// The transports, in the order of the table: a column's heading and how to run it.
const TRANSPORTS: &[(&str, RunFn)] = &[
    ("memcpy", |size, count, _| {
        Ok(Some(memcpy::run(size, count)))
    }),
    ("pipe", peers::run::<Pipe>),
    ("socketpair", peers::run::<SocketPair>),
    ("msgq", |size, count, cpu| {
        msgq::run(size, count, cpu).map(Some)
    }),
    ("ipc-channel", peers::run::<IpcChannel>),
    ("ipmpsc", peers::run::<Ipmpsc>),
    ("iceoryx2", peers::run::<Iceoryx2>),
    ("shmem-ipc", peers::run::<ShmemIpc>),
    ("ideal", peers::run::<IdealRing>),
    ("shmsem", |size, count, cpu| {
        queue::run(size, count, cpu).map(Some)
    }),
];

/// Columns of the ratios: shmsem within each run to the pipe, the ideal ring, memcpy.
const SHMSEM: &str = "shmsem";
const RATIO_TO: [&str; 3] = ["pipe", "ideal", "memcpy"];

fn main() -> ExitCode {
    shmsem_benchmarks::main(bench)
}

fn bench() -> Res<()> {
    let config = parse_args()?;
    // SAFETY: alarm only arms a timer; SIGALRM's default action ends the process.
    unsafe { libc::alarm(WATCHDOG_SECS) };
    // Before pinning, which narrows what it sees.
    let machine = format!("{} CPUs, {}", machine::cpus(), machine::cpu_model());
    let placement = match config.cpus {
        Some((w, r)) => {
            machine::pin(r)?;
            format!("writer on CPU {w}, reader on CPU {r}")
        }
        None => "placed by the scheduler".to_string(),
    };
    let writer_cpu = config.cpus.map(|(w, _)| w);
    println!(
        "queue_compare: {}; {} run(s); {} MiB per size ({} MiB at 64 B); shmsem ring {} \
         MiB; msgmax {} B; {placement}",
        machine,
        config.runs,
        config.total_mib,
        bytes_for(64, config.total_mib) >> 20,
        ring_for(1 << 20) >> 20,
        msgq::msgmax(),
    );
    println!();
    // iceoryx2 fails its check between forked processes (see peers::iceoryx2): only on
    // request.
    let transports: Vec<(&str, RunFn)> = TRANSPORTS
        .iter()
        .copied()
        .filter(|&(name, _)| match &config.only {
            Some(only) => only.iter().any(|n| n == name),
            None => name != "iceoryx2" || config.iceoryx2,
        })
        .collect();
    let _iceoryx2_files = transports
        .iter()
        .any(|&(name, _)| name == "iceoryx2")
        .then_some(shmsem_benchmarks::peers::iceoryx2::Leftovers);
    let index = |name: &str| transports.iter().position(|&(n, _)| n == name);
    let width = |name: &str| name.len().max(7);
    let mut heading = format!("{:>8} |", "size");
    for &(name, _) in &transports {
        heading += &format!(" {:>w$}", name, w = width(name));
    }
    heading += " |";
    for to in RATIO_TO {
        heading += &format!(" {:>8}", format!("/ {to}"));
    }
    println!("{heading}");
    println!("{}", "-".repeat(heading.len()));
    let mut msgs_64 = Vec::new();
    let mut ranges = Vec::new();
    for &size in &config.sizes {
        let count = bytes_for(size, config.total_mib) / size as u64;
        let bytes = (count * size as u64) as f64;
        let mut gbps: Vec<Vec<f64>> = vec![Vec::new(); transports.len()];
        let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); RATIO_TO.len()];
        for _ in 0..config.runs {
            let mut this_run = vec![None; transports.len()];
            for (t, &(name, run)) in transports.iter().enumerate() {
                interrupt::check_interrupted()?;
                let took = run(size, count, writer_cpu)
                    .map_err(|e| format!("{name}, {}: {e}", fmt::size(size)))?;
                this_run[t] = took.map(|took| bytes / took.as_secs_f64() / 1e9);
                gbps[t].extend(this_run[t]);
            }
            for (r, to) in RATIO_TO.iter().enumerate() {
                let cell = |name| index(name).and_then(|t| this_run[t]);
                if let (Some(ours), Some(theirs)) = (cell(SHMSEM), cell(to)) {
                    ratios[r].push(ours / theirs);
                }
            }
        }
        // A transport that cannot carry this size has no runs: "-".
        let cell = |xs: &Vec<f64>, scale: f64, w: usize| match xs.is_empty() {
            true => format!(" {:>w$}", "-"),
            false => format!(" {:>w$.2}", median(xs.clone()) * scale),
        };
        let mut row = format!("{:>8} |", fmt::size(size));
        for (t, &(name, _)) in transports.iter().enumerate() {
            row += &cell(&gbps[t], 1.0, width(name));
        }
        row += " |";
        for r in &ratios {
            row += &cell(r, 1.0, 7);
            row += "x";
        }
        println!("{row}");
        // The spread behind the ideal ratio, the one issue 15 sets a bar for.
        let ideal = &ratios[RATIO_TO.iter().position(|&to| to == "ideal").unwrap()];
        if ideal.len() > 1 {
            let (lo, hi) = ideal
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            ranges.push(format!(
                "{:>8}: shmsem / ideal {:.2}x median, {lo:.2}-{hi:.2}x over {} runs",
                fmt::size(size),
                median(ideal.clone()),
                ideal.len()
            ));
        }
        if size == 64 {
            // GB/s at 64 B as M msgs/s: 10^9 bytes / 64 per second is 15.625 M msgs/s.
            let mut row = format!("{:>8} |", "M msgs/s");
            for (t, &(name, _)) in transports.iter().enumerate() {
                row += &cell(&gbps[t], 1e3 / 64.0, width(name));
            }
            msgs_64.push(row);
        }
    }
    println!("{}", "-".repeat(heading.len()));
    for row in msgs_64 {
        println!("{row}   (64 B)");
    }
    println!();
    for range in ranges {
        println!("{range}");
    }
    println!(
        "GB/s = 10^9 bytes/s, median of the runs; / pipe, / ideal, / memcpy: median of \
         shmsem's ratio to it within each run; -: cannot carry messages of that size."
    );
    println!(
        "msgq sends messages above msgmax as several; memcpy is one thread copying, the \
         reference for what one side of a queue can do."
    );
    Ok(())
}
