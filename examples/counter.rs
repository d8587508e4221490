//! Why shared memory needs a lock: N processes each add 1 to one shared `u64`, M times.
//!
//! ```text
//! cargo run --release --example counter            # 4 processes x 100000 increments
//! cargo run --release --example counter -- 8 50000 # 8 processes x 50000
//! ```
//!
//! The count runs twice:
//!
//! 1. in a [`SharedMutex<u64>`]: every increment happens under the lock, so the result is
//!    exactly N x M (the program exits with status 1 if it is not);
//! 2. in a raw [`Segment`] of 8 bytes, with no lock: each increment is a read, an add and
//!    a write (the `counter++` of a C program), and when two processes read the same value
//!    one of the two increments is lost. The tutorial's warning, "shared memory provides
//!    no synchronisation", in numbers.
//!
//! So that the loss shows on every run and every machine (on an idle machine with many
//! cores the processes may rarely overlap), the race is made certain once: in their first
//! increment, every process reads the counter, then all wait for each other (a semaphore
//! barrier) before writing it back, as if the scheduler had switched at the worst moment
//! in each of them. All of them write 1: at least N - 1 updates are lost. After that,
//! each increment yields the CPU between its read and its write, which widens the window
//! a preemption would open.
//!
//! The parent creates the objects, re-runs this program as N children (they find the
//! objects by key, as unrelated processes do), releases them all at once through a start
//! gate, waits for them to exit, reads the result and removes every object, also when
//! something fails on the way.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use shmsem::{Error, ErrorKind, Key, Segment, SemOp, SemaphoreSet, SharedMutex};

/// The hidden first argument that makes a process a child.
const CHILD: &str = "--child";

/// A boxed error: shmsem's errors and the demo's own messages.
type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some(CHILD) {
        child(&args[1..])
    } else {
        parent(&args)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("counter: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------------------

const USAGE: &str = "usage: counter [PROCESSES (default 4)] [INCREMENTS (default 100000)]";

fn parent(args: &[String]) -> DemoResult<ExitCode> {
    if args.len() > 2 {
        return Err(USAGE.into());
    }
    let number = |i: usize, default: u64, what: &str| -> DemoResult<u64> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => match s.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{what} must be a positive number, not {s:?}\n{USAGE}").into()),
            },
        }
    };
    let procs = number(0, 4, "PROCESSES")?;
    let incs = number(1, 100_000, "INCREMENTS")?;
    let expected = procs
        .checked_mul(incs)
        .ok_or("PROCESSES x INCREMENTS does not fit in a u64")?;

    // Keys: ftok of this executable, so debug and release builds (different files) never
    // share objects. Children get the key on their command line.
    let exe = std::env::current_exe()?;
    let locked_key = Key::ftok(&exe, b'L')?;
    let racy_key = Key::ftok(&exe, b'R')?;

    println!("{procs} processes x {incs} increments of one shared u64; expected {expected}");

    // 1. With the lock.
    remove_leftovers(locked_key, racy_key)?;
    let counter = Removing(SharedMutex::create(locked_key, 0u64)?);
    let took = run_children("lock", locked_key, procs, incs)?;
    let locked = *counter.0.lock().map_err(Error::from)?;
    drop(counter); // removes the segment and its semaphore set
    println!(
        "with SharedMutex:    {locked:>12}  ({}) in {took:.2?}",
        if locked == expected { "exact" } else { "WRONG" }
    );

    // 2. Without it. The barrier that makes the first increment's race certain: a
    // semaphore at N, which each child takes 1 from after its first read, then waits
    // until it is 0 (everyone has read) before writing.
    let segment = Removing(Segment::create(racy_key, size_of::<u64>(), 0o600)?);
    let barrier = Removing(SemaphoreSet::create(racy_key, 1, 0o600)?);
    let n = i16::try_from(procs).map_err(|_| "at most 32767 processes")?;
    barrier.0.op(&[SemOp::new(0, n)])?;
    let took = run_children("race", racy_key, procs, incs)?;
    let racy = read_u64(&segment.0)?;
    drop((segment, barrier)); // removes the segment and the barrier
    let lost = expected.saturating_sub(racy);
    println!("without a lock:      {racy:>12}  ({lost} updates lost) in {took:.2?}");
    if procs > 1 {
        println!(
            "(every process read the counter before any wrote it back in its first \
             increment, so at least {} of those are certain; the rest is the race)",
            procs - 1
        );
    }

    Ok(if locked == expected {
        ExitCode::SUCCESS
    } else {
        eprintln!("counter: the locked count is {locked}, expected {expected}");
        ExitCode::FAILURE
    })
}

/// Removes objects left under our keys by an earlier run that was killed, but only if they
/// look like ours (a `SharedMutex<u64>`, an unattached 8-byte segment, a set of one
/// semaphore): another program's
/// objects under a colliding key are reported, never removed.
fn remove_leftovers(locked_key: Key, racy_key: Key) -> DemoResult<()> {
    match SharedMutex::<u64>::open(locked_key) {
        Ok(old) => old.remove()?,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // No segment; a lone semaphore set would still block `create` (a mutex's
            // set: its lock and 256 lease slots of two semaphores).
            if let Ok(set) = SemaphoreSet::open(locked_key) {
                if set.len() == 1 + 2 * 256 {
                    set.remove()?;
                }
            }
        }
        Err(e) => return Err(foreign(locked_key, e)),
    }
    match Segment::open(racy_key) {
        Ok(old) => {
            let info = old.info()?;
            // nattch counts our own attach.
            if info.size == size_of::<u64>() && info.nattch == 1 {
                old.remove()?;
            } else {
                return Err(format!(
                    "a segment of {} bytes with {} attaches uses key {racy_key}: not ours",
                    info.size,
                    info.nattch - 1
                )
                .into());
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(foreign(racy_key, e)),
    }
    // The barrier: a set of one semaphore.
    match SemaphoreSet::open(racy_key) {
        Ok(old) if old.len() == 1 => old.remove()?,
        Ok(_) => {
            return Err(format!("a semaphore set that is not ours uses key {racy_key}").into());
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(foreign(racy_key, e)),
    }
    Ok(())
}

fn foreign(key: Key, e: Error) -> Box<dyn std::error::Error> {
    format!("key {key} is taken by something that is not this demo's ({e}); see `ipcs -m -s`")
        .into()
}

/// Removes the object it holds when dropped: at the end of each run, and on every early
/// return (`?`) in between, so no object outlives the demo.
struct Removing<T: Remove>(T);

trait Remove {
    fn remove(&self) -> shmsem::Result<()>;
}

impl Remove for SharedMutex<u64> {
    fn remove(&self) -> shmsem::Result<()> {
        SharedMutex::remove(self)
    }
}

impl Remove for Segment {
    fn remove(&self) -> shmsem::Result<()> {
        Segment::remove(self)
    }
}

impl Remove for SemaphoreSet {
    fn remove(&self) -> shmsem::Result<()> {
        SemaphoreSet::remove(self)
    }
}

impl<T: Remove> Drop for Removing<T> {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("counter: cleaning up: {e}");
        }
    }
}

/// The children of one run. Dropping it kills and reaps any that were not waited for (on
/// an early return), so none is left running against removed objects.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `procs` children in `mode`, lets them go together, waits for all of them.
/// Returns how long they took from the start gate to the last exit.
fn run_children(mode: &str, key: Key, procs: u64, incs: u64) -> DemoResult<Duration> {
    let exe = std::env::current_exe()?;
    let mut children = Children(Vec::new());
    for _ in 0..procs {
        let child = Command::new(&exe)
            .args([CHILD, mode, &key.as_raw().to_string(), &incs.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        children.0.push(child);
    }
    // The start gate. Each child attaches, then says "ready" on its stdout and blocks
    // reading its stdin. Once every child is ready, closing all the stdins releases them
    // together, so their loops really overlap (a child that started first cannot finish
    // before the last one has even attached).
    for child in &mut children.0 {
        let mut ready = String::new();
        let stdout = child.stdout.take().ok_or("no pipe to the child")?;
        BufReader::new(stdout).read_line(&mut ready)?;
        if ready.trim() != "ready" {
            return Err(format!("child {} failed before starting", child.id()).into());
        }
    }
    let start = Instant::now();
    for child in &mut children.0 {
        drop(child.stdin.take()); // EOF: go
    }
    // Wait for every exit (a blocking wait, no polling).
    let mut failed = 0;
    for child in &mut children.0 {
        if !child.wait()?.success() {
            failed += 1;
        }
    }
    let took = start.elapsed();
    children.0.clear(); // all reaped
    if failed > 0 {
        return Err(format!("{failed} of {procs} children failed ({mode} run)").into());
    }
    Ok(took)
}

fn read_u64(segment: &Segment) -> shmsem::Result<u64> {
    let mut bytes = [0u8; 8];
    segment.read_exact_at(&mut bytes, 0)?;
    Ok(u64::from_ne_bytes(bytes))
}

// ---------------------------------------------------------------------------------------
// The children
// ---------------------------------------------------------------------------------------

/// `counter --child lock|race KEY INCREMENTS`
fn child(args: &[String]) -> DemoResult<ExitCode> {
    let [mode, key, incs] = args else {
        return Err("usage: counter --child lock|race KEY INCREMENTS".into());
    };
    let key = Key::from_raw(key.parse()?);
    let incs: u64 = incs.parse()?;
    match mode.as_str() {
        "lock" => {
            let counter = SharedMutex::<u64>::open(key)?;
            start_gate()?;
            for _ in 0..incs {
                // semop(-1, SEM_UNDO); read, add, write; semop(+1, SEM_UNDO).
                *counter.lock().map_err(Error::from)? += 1;
            }
        }
        "race" => {
            let segment = Segment::open(key)?;
            let barrier = SemaphoreSet::open(key)?;
            start_gate()?;
            for i in 0..incs {
                // The unguarded `counter++`: another process can read the same old value
                // between our read and our write, and one increment is lost.
                let n = read_u64(&segment)?;
                if i == 0 {
                    // The first time, wait until every process has read: all write 1.
                    barrier.op(&[SemOp::wait(0)])?;
                    barrier.op(&[SemOp::wait_zero(0)])?;
                } else {
                    // A preemption between read and write, made likelier.
                    std::thread::yield_now();
                }
                segment.write_all_at(&(n + 1).to_ne_bytes(), 0)?;
            }
        }
        _ => return Err(format!("unknown child mode {mode:?}").into()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Tells the parent this child is attached, then waits for the parent to close our stdin.
fn start_gate() -> std::io::Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest)?;
    Ok(())
}
