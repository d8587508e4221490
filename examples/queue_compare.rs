//! How fast is a shmsem [`Queue`] between two processes, next to the other ways two
//! processes can stream messages?
//!
//! ```text
//! cargo run --release --example queue_compare                      # 1 GiB per size, 3 runs
//! cargo run --release --example queue_compare -- --quick           # a few seconds
//! cargo run --release --example queue_compare -- --total-mib 256 --runs 5
//! cargo run --release --example queue_compare -- --cpus 1,0        # writer on CPU 1, reader on 0
//! ```
//!
//! One writer process sends fixed-size messages to one reader process; the reader checks
//! every message's length and its first byte (the sequence number, mod 256). Message
//! sizes: 64 B, 4 KiB, 64 KiB, 1 MiB. Per size, 1 GiB goes through (64 MiB at 64 B, where
//! every transport is bound by per-message cost); `--total-mib N` changes that (N/16 at
//! 64 B).
//!
//! Transports:
//!
//! - `shmsem`: a [`Queue`] with a ring of max(4 MiB, 4 records) bytes: 4 MiB for every
//!   size here (64 K records of 64 B; 4 records of 1 MiB, so the writer fills one while
//!   the reader empties another). `send(&msg)` / `recv(&mut buf)` with the `Vec` reused;
//! - `pipe`: `pipe2`, `write_all` / `read_exact` per message (default 64 KiB pipe buffer);
//! - `socketpair`: `socketpair(AF_UNIX, SOCK_STREAM)`, the same calls;
//! - `msgq`: a System V message queue, `msgsnd` / `msgrcv`. A message may hold at most
//!   `msgmax` bytes (8192 by default), so bigger messages go as several; the writer sends
//!   from a prepared `msgbuf` (no copy of its own, which favours msgq a little);
//! - `memcpy`: the physical reference, no second process: one thread copying the same
//!   bytes in messages of that size, from a 4 MiB source (the queue's ring size) into one
//!   reused buffer. (A queue copies every byte twice, in and out, on two cores.)
//!
//! By default the scheduler places the two processes. Where it puts both on one CPU, a
//! pipe or socket needs no cross-CPU wake-ups and its data stays in one cache, which on
//! some machines (virtual ones especially, where a cross-CPU wake-up is costly) makes it
//! several times faster than with the ends on two CPUs; the queue is built for the two
//! CPU case. `--cpus W,R` pins the writer to CPU W and the reader (and memcpy) to CPU R,
//! so both placements can be measured (`--cpus 1,0` and `--cpus 0,0`).
//!
//! Times are from the writer's start (released through a pipe after the fork) to the
//! reader's last byte; forks and exits are not counted. Reported: GB/s (10^9 bytes/s),
//! the median over the runs; and shmsem's ratio to the pipe and to memcpy, the median of
//! the ratios within each run (the transports of one run take turns, so a noisy moment
//! hits them alike). Every object is removed at the end (`ipcs -m -s -q` shows nothing
//! left), also on errors; a watchdog (`alarm`) ends a run that hangs.

use std::error::Error;
use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmsem::{Key, Queue};

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage: queue_compare [--quick] [--total-mib N] [--runs N] [--cpus W,R]";
const SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];
/// The queue's ring: at least 4 MiB, and at least 4 records.
const MIN_RING: usize = 4 << 20;
/// A reader that waits this long for one message gives up (the writer died).
const STALL: Duration = Duration::from_secs(60);
/// Seconds after which the whole program ends (SIGALRM), should a run hang elsewhere.
const WATCHDOG_SECS: u32 = 1800;

struct Config {
    total_mib: usize,
    runs: usize,
    /// Writer's and reader's CPU, if pinned.
    cpus: Option<(usize, usize)>,
}

fn parse_args() -> Res<Config> {
    let mut config = Config {
        total_mib: 1024,
        runs: 3,
        cpus: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Res<usize> {
            let v = args
                .next()
                .ok_or(format!("{what} needs a number\n{USAGE}"))?;
            match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{what}: not a positive number: {v}\n{USAGE}").into()),
            }
        };
        match arg.as_str() {
            "--quick" => {
                config.total_mib = 64;
                config.runs = 1;
            }
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
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    Ok(config)
}

fn ring_for(size: usize) -> usize {
    MIN_RING.max(4 * (size.next_multiple_of(8) + 8))
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

/// Pins the calling process to `cpu`.
fn pin(cpu: usize) -> Res<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!("CPU {cpu} out of range").into());
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes a bit below CPU_SETSIZE (checked) into the local set;
    // sched_setaffinity reads the set.
    let rc = unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// The writer's CPU, when pinned (set once by `bench`, read in the forked writers).
static WRITER_CPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The transports, in the order of the table.
const NAMES: [&str; 5] = ["memcpy", "pipe", "socketpair", "msgq", "shmsem"];

fn run_one(name: &str, size: usize, count: u64) -> Res<Duration> {
    match name {
        "memcpy" => Ok(memcpy(size, count)),
        "pipe" => {
            let (r, w) = pipe()?;
            stream(r, w, size, count)
        }
        "socketpair" => {
            let (r, w) = socketpair()?;
            stream(r, w, size, count)
        }
        "msgq" => msgq(size, count),
        "shmsem" => queue(size, count),
        _ => unreachable!("unknown transport {name}"),
    }
}

/// Forks a writer process that runs `writer` once released; runs `reader` here and
/// returns the time from the release to the reader's end. `parent_drops` are closed in
/// the parent right after the fork (the writer's ends, so that its death is an EOF).
fn timed(
    writer: impl FnOnce() -> Res<()>,
    on_writer_error: impl FnOnce(),
    reader: impl FnOnce() -> Res<()>,
    parent_drops: Vec<OwnedFd>,
) -> Res<Duration> {
    let (gate_r, gate_w) = pipe()?;
    // SAFETY: this program is single-threaded; the child runs the writer and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()).into());
    }
    if pid == 0 {
        drop(gate_w);
        if let Some(&cpu) = WRITER_CPU.get()
            && let Err(e) = pin(cpu)
        {
            eprintln!("writer: {e}");
            // SAFETY: ends the child without the parent's destructors.
            unsafe { libc::_exit(3) };
        }
        let mut go = [0u8];
        let code = match File::from(gate_r).read_exact(&mut go) {
            Ok(()) => match writer() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("writer: {e}");
                    on_writer_error();
                    1
                }
            },
            Err(_) => 2,
        };
        // SAFETY: ends the child without the parent's destructors and atexit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(parent_drops);
    drop(gate_r);
    let start = Instant::now();
    File::from(gate_w).write_all(b"g")?;
    let read = reader();
    let took = start.elapsed();
    let mut status = 0;
    // SAFETY: reaping our own child into a local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err("waitpid failed".into());
        }
    }
    read?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("the writer failed (wait status {status:#x})").into());
    }
    Ok(took)
}

fn queue(size: usize, count: u64) -> Res<Duration> {
    // A private pair, shared with the writer through fork; removed when `q` goes.
    let q = RemoveQueue(Queue::create(Key::PRIVATE, ring_for(size))?);
    let q = &q.0;
    timed(
        || {
            let mut msg = vec![0x5a_u8; size];
            for i in 0..count {
                msg[0] = i as u8;
                q.send(&msg)?;
            }
            Ok(())
        },
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
        Vec::new(),
    )
}

struct RemoveQueue(Queue);

impl Drop for RemoveQueue {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("removing the queue: {e}");
        }
    }
}

fn check(i: u64, buf: &[u8], size: usize) -> Res<()> {
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

/// A pipe or a socket pair: `write_all` / `read_exact` of whole messages.
fn stream(r: OwnedFd, w: OwnedFd, size: usize, count: u64) -> Res<Duration> {
    let w2 = w.try_clone()?;
    let r2 = r.try_clone()?;
    timed(
        move || {
            drop(r2);
            let mut out = File::from(w2);
            let mut msg = vec![0x5a_u8; size];
            for i in 0..count {
                msg[0] = i as u8;
                out.write_all(&msg)?;
            }
            Ok(())
        },
        || {},
        move || {
            let mut input = File::from(r);
            let mut buf = vec![0u8; size];
            for i in 0..count {
                input.read_exact(&mut buf)?;
                check(i, &buf, size)?;
            }
            Ok(())
        },
        vec![w],
    )
}

fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn socketpair() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the local array.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(format!("socketpair: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A System V message queue, removed on drop.
struct MsgQueue(i32);

impl Drop for MsgQueue {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID takes no buffer.
        unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

fn msgmax() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/msgmax")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192)
}

fn msgq(size: usize, count: u64) -> Res<Duration> {
    // SAFETY: msgget takes plain integers.
    let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    if id < 0 {
        return Err(format!("msgget: {}", std::io::Error::last_os_error()).into());
    }
    let mq = MsgQueue(id);
    let chunk = size.min(msgmax());
    // struct msgbuf: a long mtype (1), then the text.
    let header = size_of::<libc::c_long>();
    let retry = |what: &str, mut call: Box<dyn FnMut() -> isize + '_>| -> Res<usize> {
        loop {
            let rc = call();
            if rc >= 0 {
                return Ok(rc as usize);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(format!("{what}: {e}").into());
            }
        }
    };
    timed(
        || {
            let mut msg = vec![0x5a_u8; header + chunk];
            msg[..header].copy_from_slice(&(1 as libc::c_long).to_ne_bytes());
            for i in 0..count {
                msg[header] = i as u8;
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk);
                    retry(
                        "msgsnd",
                        Box::new(|| {
                            // SAFETY: `msg` holds the mtype and at least n bytes of text.
                            unsafe { libc::msgsnd(mq.0, msg.as_ptr().cast(), n, 0) as isize }
                        }),
                    )?;
                    left -= n;
                }
            }
            Ok(())
        },
        || {
            // Wakes the reader with EIDRM.
            // SAFETY: IPC_RMID takes no buffer.
            unsafe { libc::msgctl(mq.0, libc::IPC_RMID, std::ptr::null_mut()) };
        },
        || {
            let mut buf = vec![0u8; header + chunk];
            for i in 0..count {
                let mut got = 0;
                let mut first = None;
                while got < size {
                    let n = retry(
                        "msgrcv",
                        Box::new(|| {
                            // SAFETY: `buf` has room for the mtype and `chunk` bytes.
                            unsafe { libc::msgrcv(mq.0, buf.as_mut_ptr().cast(), chunk, 0, 0) }
                        }),
                    )?;
                    first.get_or_insert(buf[header]);
                    got += n;
                }
                if got != size || first != Some(i as u8) {
                    return Err(format!("msgq message {i}: {got} bytes").into());
                }
            }
            Ok(())
        },
        Vec::new(),
    )
}

fn memcpy(size: usize, count: u64) -> Duration {
    let src = vec![0x5a_u8; ring_for(size)];
    let mut dst = vec![0u8; size];
    let mut at = 0;
    let start = Instant::now();
    for _ in 0..count {
        if at + size > src.len() {
            at = 0;
        }
        dst.copy_from_slice(black_box(&src[at..at + size]));
        black_box(&mut dst);
        at += size;
    }
    start.elapsed()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn fmt_size(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue_compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Res<()> {
    let config = parse_args()?;
    // SAFETY: alarm only arms a timer; SIGALRM's default action ends the process.
    unsafe { libc::alarm(WATCHDOG_SECS) };
    let machine = machine(); // before pinning, which narrows what it sees
    let placement = match config.cpus {
        Some((w, r)) => {
            pin(r)?;
            let _ = WRITER_CPU.set(w);
            format!("writer on CPU {w}, reader on CPU {r}")
        }
        None => "placed by the scheduler".to_string(),
    };
    println!(
        "queue_compare: {}; {} run(s); {} MiB per size ({} MiB at 64 B); shmsem ring {} \
         MiB; msgmax {} B; {placement}",
        machine,
        config.runs,
        config.total_mib,
        bytes_for(64, config.total_mib) >> 20,
        ring_for(1 << 20) >> 20,
        msgmax(),
    );
    println!();
    println!(
        "{:>8} | {:>8} {:>8} {:>10} {:>8} {:>8} | {:>7} {:>9}",
        "size", "memcpy", "pipe", "socketpair", "msgq", "shmsem", "x pipe", "/ memcpy"
    );
    println!("{}", "-".repeat(84));
    for size in SIZES {
        let count = bytes_for(size, config.total_mib) / size as u64;
        let bytes = (count * size as u64) as f64;
        let mut gbps: Vec<Vec<f64>> = vec![Vec::new(); NAMES.len()];
        let (mut vs_pipe, mut vs_memcpy) = (Vec::new(), Vec::new());
        for _ in 0..config.runs {
            let mut this_run = [0.0; NAMES.len()];
            for (t, name) in NAMES.iter().enumerate() {
                let took = run_one(name, size, count)
                    .map_err(|e| format!("{name}, {}: {e}", fmt_size(size)))?;
                this_run[t] = bytes / took.as_secs_f64() / 1e9;
                gbps[t].push(this_run[t]);
            }
            vs_memcpy.push(this_run[4] / this_run[0]);
            vs_pipe.push(this_run[4] / this_run[1]);
        }
        let cells: Vec<f64> = gbps.into_iter().map(median).collect();
        println!(
            "{:>8} | {:>8.2} {:>8.2} {:>10.2} {:>8.2} {:>8.2} | {:>6.1}x {:>8.0}%",
            fmt_size(size),
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            median(vs_pipe),
            median(vs_memcpy) * 100.0,
        );
    }
    println!();
    println!(
        "GB/s = 10^9 bytes/s, median of the runs; x pipe and / memcpy: median of shmsem's \
         ratio within each run."
    );
    println!(
        "msgq sends messages above msgmax as several; memcpy is one thread copying, the \
         reference for what one side of a queue can do."
    );
    Ok(())
}
