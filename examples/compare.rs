//! How fast is a `SharedMutex`, next to the other locks two processes can share?
//!
//! ```text
//! cargo run --release --example compare              # 5 runs per cell, about 1-2 minutes
//! cargo run --release --example compare -- 3         # 3 runs per cell
//! cargo run --release --example compare -- 5 20000   # 5 runs, 20000 ops per worker
//! cargo run --release --example compare -- --quick   # 1 run, 2000 ops: proves it works
//! ```
//!
//! Locks (each with a `u64` counter next to it in shared memory):
//!
//! - `shmsem`: [`SharedMutex<u64>`], the subject;
//! - `raw semop`: a one-semaphore System V set (value 1), `semop(-1, SEM_UNDO)` /
//!   `semop(+1, SEM_UNDO)` straight through libc: the kernel's cost, nothing added;
//! - `pthread`: a process-shared, robust `pthread_mutex_t` (`EOWNERDEAD` is repaired with
//!   `pthread_mutex_consistent`), in an anonymous `MAP_SHARED` mapping;
//! - `sem_t`: a POSIX semaphore (`sem_init(pshared = 1, value = 1)`) in such a mapping;
//! - `flock`: `flock(LOCK_EX)` / `flock(LOCK_UN)` on a temporary file, which every worker
//!   (process or thread) opens itself: flock locks belong to open file descriptions.
//!
//! Scenarios: (a) one process, uncontended lock + unlock; (b) 2 and (c) 4 processes,
//! (d) 1 process x 4 threads, (e) 2 processes x 2 threads, each worker incrementing the
//! counter under the lock N times. The parent forks the workers, lets them go together
//! through a pipe (closing its write end: no sleeps), waits for their exits, and checks
//! that the counter is exactly the sum of the increments the workers report, workers x N
//! unless a run was capped (see below); the program fails loudly otherwise.
//!
//! Reported per (scenario, lock), as the median over the runs:
//! - throughput: total operations / (last worker's end - first worker's start), so forks
//!   and exits are not counted;
//! - max wait: in the contended scenarios every acquisition is timed (monotonic clock,
//!   before `lock` to inside the critical section); the worst acquisition of the worst
//!   worker. Those two clock reads are included in the contended numbers (their cost is
//!   printed); scenario (a) has no clock reads, so its ns/op is the bare pair.
//! - shmsem / baseline: the throughput ratio, median over runs of the ratio within each
//!   run (above 1x shmsem is faster).
//!
//! N (operations per worker) is calibrated per (scenario, lock) so that one run lasts
//! about 0.4 s (locks differ by 100x), unless given on the command line. Semop-based locks
//! have two regimes on a small machine (fast, and a convoy where every hand-over wakes a
//! sleeper, 10-40x slower): N is sized for the fast one, a run caught in the slow one stops
//! at a 1.2 s cap (the table says how many did; the count is still checked exactly, against
//! the operations done), and a run that was far too short raises N for the later runs.
//!
//! Extending: a lock is a [`Lock`] (shared object made by the parent before forking) with
//! a [`Handle`] (what one worker thread uses); add it to `subjects()`. A scenario is a row
//! of [`SCENARIOS`]. A read-heavy scenario for a reader-writer lock would add a workload
//! field to [`Scenario`] and a `with_read_lock` method to [`Handle`] (defaulting to
//! `with_lock` for plain mutexes); a queue-throughput scenario would be a second kind of
//! subject beside [`Lock`], run by the same fork/gate/wait machinery ([`run_workers`]).
//!
//! Every object (System V sets and segment, mappings, the temp file) is removed when the
//! program ends, also on errors and on Ctrl-C: `ipcs -m -s` shows nothing left.

use std::error::Error;
use std::fs::File;
use std::io::Write;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shmsem::{Key, SemaphoreSet, SharedMutex};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

const USAGE: &str =
    "usage: compare [--quick] [RUNS (default 5)] [OPS per worker (default: calibrated)]";

/// How long one calibrated run should last.
const TARGET_RUN: Duration = Duration::from_millis(400);
/// A calibrated run stops early after this long (its workers stop taking the lock): a
/// lock that falls into a slower regime after calibration (a convoy) must not stretch the
/// whole benchmark. The count is still checked exactly, against the operations done.
const RUN_CAP: Duration = Duration::from_millis(1200);
/// A calibration run shorter than this is too short to extrapolate from.
const CALIBRATION_MIN: Duration = Duration::from_millis(40);
/// Operations per worker in `--quick` mode.
const QUICK_OPS: u64 = 2000;
/// Bounds of a calibrated N.
const MIN_OPS: u64 = 1000;
const MAX_OPS: u64 = 100_000_000;
/// No run may take longer than this (a hung lock fails the program instead of hanging it).
const WATCHDOG: Duration = Duration::from_secs(300);
/// Workers (processes x threads) one scenario may have.
const MAX_WORKERS: usize = 64;

struct Config {
    runs: usize,
    /// Operations per worker; `None`: calibrate.
    ops: Option<u64>,
    quick: bool,
}

fn parse_args() -> Res<Config> {
    let mut quick = false;
    let mut numbers = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
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
    })
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

/// One way of using a lock: how many processes, how many threads in each.
struct Scenario {
    id: &'static str,
    title: &'static str,
    procs: usize,
    threads: usize,
    /// Time every acquisition (for the max wait)? Off for the uncontended pair, whose
    /// ns/op would otherwise include two clock reads.
    timed: bool,
}

impl Scenario {
    fn workers(&self) -> usize {
        self.procs * self.threads
    }
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "a",
        title: "1 process, uncontended",
        procs: 1,
        threads: 1,
        timed: false,
    },
    Scenario {
        id: "b",
        title: "2 processes",
        procs: 2,
        threads: 1,
        timed: true,
    },
    Scenario {
        id: "c",
        title: "4 processes",
        procs: 4,
        threads: 1,
        timed: true,
    },
    Scenario {
        id: "d",
        title: "1 process x 4 threads",
        procs: 1,
        threads: 4,
        timed: true,
    },
    Scenario {
        id: "e",
        title: "2 processes x 2 threads",
        procs: 2,
        threads: 2,
        timed: true,
    },
];

// ---------------------------------------------------------------------------------------
// The locks
// ---------------------------------------------------------------------------------------

/// A lock under test: made by the parent before it forks (so every worker process
/// inherits it), removed when dropped. Guards a `u64` counter in shared memory.
trait Lock: Sync {
    /// Name in the tables.
    const NAME: &'static str;
    /// Name in the ratio lines.
    const SHORT: &'static str;
    /// What one worker thread uses. Made in the worker process, after the fork.
    type Handle<'a>: Handle + Send
    where
        Self: 'a;
    fn handle(&self) -> Res<Self::Handle<'_>>;
    /// The counter, read while no worker runs.
    fn counter(&self) -> Res<u64>;
    /// Sets the counter, while no worker runs.
    fn set_counter(&self, value: u64) -> Res<()>;
}

/// One worker's access to a [`Lock`].
trait Handle {
    /// Takes the lock, runs `f` on the counter, releases the lock.
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut u64) -> R) -> Res<R>;
}

/// Retries `call` while it fails with `EINTR`; other errors become `what: errno`.
fn retry_eintr(what: &str, mut call: impl FnMut() -> libc::c_int) -> Res<()> {
    loop {
        if call() == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(format!("{what}: {err}").into());
        }
    }
}

// --- shmsem ----------------------------------------------------------------------------

/// The subject: a `SharedMutex<u64>` (its own segment and semaphore set, `Key::PRIVATE`).
struct Shmsem(SharedMutex<u64>);

impl Shmsem {
    fn create() -> Res<Self> {
        Ok(Shmsem(SharedMutex::create(Key::PRIVATE, 0u64)?))
    }
}

impl Drop for Shmsem {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("compare: removing the SharedMutex: {e}");
        }
    }
}

struct ShmsemHandle<'a>(&'a SharedMutex<u64>);

impl Lock for Shmsem {
    const NAME: &'static str = "shmsem SharedMutex";
    const SHORT: &'static str = "shmsem";
    type Handle<'a> = ShmsemHandle<'a>;

    fn handle(&self) -> Res<ShmsemHandle<'_>> {
        Ok(ShmsemHandle(&self.0))
    }

    fn counter(&self) -> Res<u64> {
        Ok(*self.0.lock().map_err(shmsem::Error::from)?)
    }

    fn set_counter(&self, value: u64) -> Res<()> {
        *self.0.lock().map_err(shmsem::Error::from)? = value;
        Ok(())
    }
}

impl Handle for ShmsemHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut u64) -> R) -> Res<R> {
        let mut guard = self.0.lock().map_err(shmsem::Error::from)?;
        Ok(f(&mut guard))
    }
}

// --- raw semop -------------------------------------------------------------------------

/// The kernel's own price: a one-semaphore set (value 1) and two `libc::semop` calls with
/// `SEM_UNDO`, as a C program would write them. The counter is in a shared mapping.
struct RawSemop {
    set: SemaphoreSet,
    page: SharedPages,
}

impl RawSemop {
    fn create() -> Res<Self> {
        let page = SharedPages::new(size_of::<u64>())?;
        let set = SemaphoreSet::create(Key::PRIVATE, 1, 0o600)?;
        let lock = RawSemop { set, page }; // from here on, Drop removes the set
        lock.set.set_value(0, 1)?;
        Ok(lock)
    }
}

impl Drop for RawSemop {
    fn drop(&mut self) {
        if let Err(e) = self.set.remove() {
            eprintln!("compare: removing the raw semaphore set: {e}");
        }
    }
}

struct RawSemopHandle<'a> {
    id: i32,
    counter: *mut u64,
    _lock: PhantomData<&'a RawSemop>,
}

// SAFETY: the pointer is into a MAP_SHARED mapping that the lock (borrowed for 'a) keeps
// alive; it is only dereferenced while the semaphore is held.
unsafe impl Send for RawSemopHandle<'_> {}

fn semop1(id: i32, delta: i16) -> Res<()> {
    let mut op = libc::sembuf {
        sem_num: 0,
        sem_op: delta,
        sem_flg: libc::SEM_UNDO as i16,
    };
    // SAFETY: `op` is one initialised sembuf that outlives the call; the kernel only reads
    // it, and semaphore 0 exists in the one-semaphore set.
    retry_eintr("semop", || unsafe { libc::semop(id, &mut op, 1) })
}

impl Lock for RawSemop {
    const NAME: &'static str = "raw semop (SEM_UNDO)";
    const SHORT: &'static str = "raw semop";
    type Handle<'a> = RawSemopHandle<'a>;

    fn handle(&self) -> Res<RawSemopHandle<'_>> {
        Ok(RawSemopHandle {
            id: self.set.id(),
            counter: self.page.ptr().cast(),
            _lock: PhantomData,
        })
    }

    fn counter(&self) -> Res<u64> {
        // SAFETY: the mapping holds a u64 at offset 0 (page-aligned); no worker runs.
        Ok(unsafe { self.page.ptr().cast::<u64>().read_volatile() })
    }

    fn set_counter(&self, value: u64) -> Res<()> {
        // SAFETY: as in `counter`.
        unsafe { self.page.ptr().cast::<u64>().write_volatile(value) };
        Ok(())
    }
}

impl Handle for RawSemopHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut u64) -> R) -> Res<R> {
        semop1(self.id, -1)?;
        // SAFETY: the semaphore is held, so this is the only access to the counter, which
        // lives as long as the lock ('a).
        let r = f(unsafe { &mut *self.counter });
        semop1(self.id, 1)?;
        Ok(r)
    }
}

// --- robust process-shared pthread mutex -----------------------------------------------

#[repr(C)]
struct PthreadCell {
    mutex: libc::pthread_mutex_t,
    counter: u64,
}

/// A robust, process-shared `pthread_mutex_t` with the counter right behind it, in an
/// anonymous shared mapping.
struct Pthread {
    page: SharedPages,
}

impl Pthread {
    fn create() -> Res<Self> {
        let page = SharedPages::new(size_of::<PthreadCell>())?;
        let cell = page.ptr().cast::<PthreadCell>();
        let check = |what: &str, rc: libc::c_int| -> Res<()> {
            match rc {
                0 => Ok(()),
                e => Err(format!("{what}: {}", std::io::Error::from_raw_os_error(e)).into()),
            }
        };
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: attr is initialised by pthread_mutexattr_init before any other use and
        // destroyed once; the mutex is in a fresh, page-aligned shared mapping that nothing
        // else uses yet.
        unsafe {
            check(
                "pthread_mutexattr_init",
                libc::pthread_mutexattr_init(attr.as_mut_ptr()),
            )?;
            let result = check(
                "pthread_mutexattr_setpshared",
                libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED),
            )
            .and_then(|()| {
                check(
                    "pthread_mutexattr_setrobust",
                    libc::pthread_mutexattr_setrobust(
                        attr.as_mut_ptr(),
                        libc::PTHREAD_MUTEX_ROBUST,
                    ),
                )
            })
            .and_then(|()| {
                check(
                    "pthread_mutex_init",
                    libc::pthread_mutex_init(&raw mut (*cell).mutex, attr.as_ptr()),
                )
            });
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            result?;
        }
        Ok(Pthread { page })
    }

    fn cell(&self) -> *mut PthreadCell {
        self.page.ptr().cast()
    }
}

impl Drop for Pthread {
    fn drop(&mut self) {
        // SAFETY: the mutex was initialised in `create` and no worker uses it any more (all
        // have exited); the mapping is unmapped after this.
        unsafe { libc::pthread_mutex_destroy(&raw mut (*self.cell()).mutex) };
    }
}

struct PthreadHandle<'a> {
    cell: *mut PthreadCell,
    _lock: PhantomData<&'a Pthread>,
}

// SAFETY: the pointer is into the shared mapping that the lock (borrowed for 'a) keeps
// alive; the mutex is process-shared (so certainly thread-safe), and the counter is only
// touched while it is held.
unsafe impl Send for PthreadHandle<'_> {}

impl Lock for Pthread {
    const NAME: &'static str = "pthread robust mutex";
    const SHORT: &'static str = "pthread";
    type Handle<'a> = PthreadHandle<'a>;

    fn handle(&self) -> Res<PthreadHandle<'_>> {
        Ok(PthreadHandle {
            cell: self.cell(),
            _lock: PhantomData,
        })
    }

    fn counter(&self) -> Res<u64> {
        // SAFETY: the cell's counter is an aligned u64 in the live mapping; no worker runs.
        Ok(unsafe { (&raw const (*self.cell()).counter).read_volatile() })
    }

    fn set_counter(&self, value: u64) -> Res<()> {
        // SAFETY: as in `counter`.
        unsafe { (&raw mut (*self.cell()).counter).write_volatile(value) };
        Ok(())
    }
}

impl Handle for PthreadHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut u64) -> R) -> Res<R> {
        // SAFETY: the mutex is initialised and lives as long as the lock ('a).
        let mutex = unsafe { &raw mut (*self.cell).mutex };
        // SAFETY: as above.
        match unsafe { libc::pthread_mutex_lock(mutex) } {
            0 => {}
            libc::EOWNERDEAD => {
                // The holder died inside: we hold the lock now; mark the state repaired
                // (an increment is either done or not, nothing to fix).
                // SAFETY: we hold the mutex, as pthread_mutex_consistent requires.
                let rc = unsafe { libc::pthread_mutex_consistent(mutex) };
                if rc != 0 {
                    let err = std::io::Error::from_raw_os_error(rc);
                    return Err(format!("pthread_mutex_consistent: {err}").into());
                }
            }
            rc => {
                let err = std::io::Error::from_raw_os_error(rc);
                return Err(format!("pthread_mutex_lock: {err}").into());
            }
        }
        // SAFETY: the mutex is held, so this is the only access to the counter.
        let r = f(unsafe { &mut (*self.cell).counter });
        // SAFETY: we hold the mutex.
        let rc = unsafe { libc::pthread_mutex_unlock(mutex) };
        if rc != 0 {
            let err = std::io::Error::from_raw_os_error(rc);
            return Err(format!("pthread_mutex_unlock: {err}").into());
        }
        Ok(r)
    }
}

// --- POSIX sem_t -----------------------------------------------------------------------

#[repr(C)]
struct SemCell {
    sem: libc::sem_t,
    counter: u64,
}

/// A process-shared POSIX semaphore (value 1) with the counter behind it, in an anonymous
/// shared mapping.
struct PosixSem {
    page: SharedPages,
}

impl PosixSem {
    fn create() -> Res<Self> {
        let page = SharedPages::new(size_of::<SemCell>())?;
        let cell = page.ptr().cast::<SemCell>();
        // SAFETY: the sem_t is in a fresh, aligned shared mapping nothing else uses yet.
        if unsafe { libc::sem_init(&raw mut (*cell).sem, 1, 1) } != 0 {
            return Err(format!("sem_init: {}", std::io::Error::last_os_error()).into());
        }
        Ok(PosixSem { page })
    }

    fn cell(&self) -> *mut SemCell {
        self.page.ptr().cast()
    }
}

impl Drop for PosixSem {
    fn drop(&mut self) {
        // SAFETY: initialised in `create`; no worker uses it any more.
        unsafe { libc::sem_destroy(&raw mut (*self.cell()).sem) };
    }
}

struct PosixSemHandle<'a> {
    cell: *mut SemCell,
    _lock: PhantomData<&'a PosixSem>,
}

// SAFETY: as for PthreadHandle: a pointer into a mapping kept alive for 'a, to a
// process-shared semaphore; the counter is only touched while it is held.
unsafe impl Send for PosixSemHandle<'_> {}

impl Lock for PosixSem {
    const NAME: &'static str = "POSIX sem_t";
    const SHORT: &'static str = "sem_t";
    type Handle<'a> = PosixSemHandle<'a>;

    fn handle(&self) -> Res<PosixSemHandle<'_>> {
        Ok(PosixSemHandle {
            cell: self.cell(),
            _lock: PhantomData,
        })
    }

    fn counter(&self) -> Res<u64> {
        // SAFETY: an aligned u64 in the live mapping; no worker runs.
        Ok(unsafe { (&raw const (*self.cell()).counter).read_volatile() })
    }

    fn set_counter(&self, value: u64) -> Res<()> {
        // SAFETY: as in `counter`.
        unsafe { (&raw mut (*self.cell()).counter).write_volatile(value) };
        Ok(())
    }
}

impl Handle for PosixSemHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut u64) -> R) -> Res<R> {
        // SAFETY: the semaphore is initialised and lives as long as the lock ('a).
        let sem = unsafe { &raw mut (*self.cell).sem };
        // SAFETY: as above.
        retry_eintr("sem_wait", || unsafe { libc::sem_wait(sem) })?;
        // SAFETY: the semaphore is held, so this is the only access to the counter.
        let r = f(unsafe { &mut (*self.cell).counter });
        // SAFETY: as above.
        if unsafe { libc::sem_post(sem) } != 0 {
            return Err(format!("sem_post: {}", std::io::Error::last_os_error()).into());
        }
        Ok(r)
    }
}

// --- flock -----------------------------------------------------------------------------

/// `flock` on a temporary file (removed at the end); the counter is in a shared mapping.
/// Every handle opens the file itself: an flock belongs to an open file description, so
/// threads sharing one descriptor would not exclude each other.
struct Flock {
    path: PathBuf,
    page: SharedPages,
}

impl Flock {
    fn create() -> Res<Self> {
        let page = SharedPages::new(size_of::<u64>())?;
        let path = std::env::temp_dir().join(format!("shmsem-compare-{}.lock", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Flock { path, page })
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            eprintln!("compare: removing {}: {e}", self.path.display());
        }
    }
}

struct FlockHandle<'a> {
    file: File,
    counter: *mut u64,
    _lock: PhantomData<&'a Flock>,
}

// SAFETY: the pointer is into the shared mapping that the lock (borrowed for 'a) keeps
// alive; it is only dereferenced while the flock is held.
unsafe impl Send for FlockHandle<'_> {}

impl Lock for Flock {
    const NAME: &'static str = "flock (temp file)";
    const SHORT: &'static str = "flock";
    type Handle<'a> = FlockHandle<'a>;

    fn handle(&self) -> Res<FlockHandle<'_>> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| format!("opening {}: {e}", self.path.display()))?;
        Ok(FlockHandle {
            file,
            counter: self.page.ptr().cast(),
            _lock: PhantomData,
        })
    }

    fn counter(&self) -> Res<u64> {
        // SAFETY: the mapping holds a u64 at offset 0 (page-aligned); no worker runs.
        Ok(unsafe { self.page.ptr().cast::<u64>().read_volatile() })
    }

    fn set_counter(&self, value: u64) -> Res<()> {
        // SAFETY: as in `counter`.
        unsafe { self.page.ptr().cast::<u64>().write_volatile(value) };
        Ok(())
    }
}

impl Handle for FlockHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut u64) -> R) -> Res<R> {
        let fd = self.file.as_raw_fd();
        // SAFETY: flock on a descriptor we own.
        retry_eintr("flock(LOCK_EX)", || unsafe {
            libc::flock(fd, libc::LOCK_EX)
        })?;
        // SAFETY: the flock is held, so this is the only access to the counter.
        let r = f(unsafe { &mut *self.counter });
        // SAFETY: as above.
        retry_eintr("flock(LOCK_UN)", || unsafe {
            libc::flock(fd, libc::LOCK_UN)
        })?;
        Ok(r)
    }
}

// ---------------------------------------------------------------------------------------
// Subjects: locks behind one object-safe face, so the runner can interleave them
// ---------------------------------------------------------------------------------------

trait Subject {
    fn name(&self) -> &'static str;
    fn short(&self) -> &'static str;
    /// One run of `scenario`, each worker doing `work`.
    fn run(&self, scenario: &Scenario, work: Work, board: &Board) -> Res<Sample>;
}

impl<L: Lock> Subject for L {
    fn name(&self) -> &'static str {
        L::NAME
    }

    fn short(&self) -> &'static str {
        L::SHORT
    }

    fn run(&self, scenario: &Scenario, work: Work, board: &Board) -> Res<Sample> {
        run_lock(self, scenario, work, board)
    }
}

/// Every lock, the subject first (ratios are taken against it). Made one by one: if one
/// fails, those already made are removed again as the vector drops.
fn subjects() -> Res<Vec<Box<dyn Subject>>> {
    Ok(vec![
        Box::new(Shmsem::create()?),
        Box::new(RawSemop::create()?),
        Box::new(Pthread::create()?),
        Box::new(PosixSem::create()?),
        Box::new(Flock::create()?),
    ])
}

// ---------------------------------------------------------------------------------------
// Running one (scenario, lock): fork, gate, wait, check
// ---------------------------------------------------------------------------------------

/// How much one worker does in a run: `ops` lock+unlock pairs, unless `cap_ns` (from its
/// start) runs out first.
#[derive(Clone, Copy)]
struct Work {
    ops: u64,
    cap_ns: u64,
}

/// What one run measured.
#[derive(Clone, Copy)]
struct Sample {
    /// Increments done (and found in the counter), all workers together.
    ops: u64,
    /// Did some worker stop at the time cap before doing all its operations?
    capped: bool,
    /// First worker's start to last worker's end.
    window_ns: u64,
    /// The longest single acquisition of any worker (timed scenarios only).
    max_wait_ns: Option<u64>,
}

impl Sample {
    fn mops(&self) -> f64 {
        self.ops as f64 * 1e3 / self.window_ns.max(1) as f64
    }
}

/// One worker's report, in shared memory.
#[repr(C)]
struct Slot {
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    max_wait_ns: AtomicU64,
    /// Operations done; written last (Release).
    done: AtomicU64,
}

/// The workers' reports: a shared mapping of [`MAX_WORKERS`] slots.
struct Board(SharedPages);

impl Board {
    fn new() -> Res<Self> {
        Ok(Board(SharedPages::new(MAX_WORKERS * size_of::<Slot>())?))
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(i < MAX_WORKERS);
        // SAFETY: the mapping holds MAX_WORKERS slots, is page-aligned (so aligned for
        // Slot) and zero-filled (a valid Slot: atomics), and lives as long as `self`.
        unsafe { &*self.0.ptr().cast::<Slot>().add(i) }
    }

    fn clear(&self, n: usize) {
        for i in 0..n {
            let s = self.slot(i);
            for a in [&s.start_ns, &s.end_ns, &s.max_wait_ns, &s.done] {
                a.store(0, Ordering::Relaxed);
            }
        }
    }
}

fn run_lock<L: Lock>(lock: &L, scenario: &Scenario, work: Work, board: &Board) -> Res<Sample> {
    let workers = scenario.workers();
    if workers > MAX_WORKERS {
        return Err(format!(
            "scenario ({}) has more than {MAX_WORKERS} workers",
            scenario.id
        )
        .into());
    }
    lock.set_counter(0)?;
    board.clear(workers);
    run_workers(scenario.procs, |proc_index, gate| {
        worker_process(lock, scenario, work, board, proc_index, gate)
    })?;

    let mut start = u64::MAX;
    let mut end = 0;
    let mut max_wait = 0;
    let mut expected = 0;
    let mut capped = false;
    for i in 0..workers {
        let s = board.slot(i);
        let done = s.done.load(Ordering::Acquire);
        if done == 0 || done > work.ops {
            return Err(
                format!("{}, ({}): worker {i} did not report", L::NAME, scenario.id).into(),
            );
        }
        expected += done;
        capped |= done < work.ops;
        start = start.min(s.start_ns.load(Ordering::Relaxed));
        end = end.max(s.end_ns.load(Ordering::Relaxed));
        max_wait = max_wait.max(s.max_wait_ns.load(Ordering::Relaxed));
    }
    let got = lock.counter()?;
    if got != expected {
        return Err(format!(
            "WRONG COUNT: {} in scenario ({}) {}: the counter is {got}, expected {expected} \
             (the operations its {workers} workers did): the lock did not exclude",
            L::NAME,
            scenario.id,
            scenario.title
        )
        .into());
    }
    Ok(Sample {
        ops: expected,
        capped,
        window_ns: end.saturating_sub(start),
        max_wait_ns: scenario.timed.then_some(max_wait),
    })
}

/// The body of one forked worker process: makes one handle per thread, starts the
/// threads, reports ready once all of them are about to wait at the gate.
fn worker_process<L: Lock>(
    lock: &L,
    scenario: &Scenario,
    work: Work,
    board: &Board,
    proc_index: usize,
    gate: Gate,
) -> Res<()> {
    let handles = (0..scenario.threads)
        .map(|_| lock.handle())
        .collect::<Res<Vec<_>>>()?;
    let barrier = Barrier::new(scenario.threads + 1);
    std::thread::scope(|s| {
        let barrier = &barrier;
        let threads: Vec<_> = handles
            .into_iter()
            .enumerate()
            .map(|(t, mut handle)| {
                let slot = board.slot(proc_index * scenario.threads + t);
                s.spawn(move || -> Res<()> {
                    barrier.wait();
                    gate.wait()?;
                    if scenario.timed {
                        run_worker::<_, true>(&mut handle, work, slot)
                    } else {
                        run_worker::<_, false>(&mut handle, work, slot)
                    }
                })
            })
            .collect();
        barrier.wait();
        let ready = gate.ready();
        let mut result = ready;
        for t in threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err("a worker thread panicked".into()));
            result = result.and(r);
        }
        result
    })
}

/// The measured loop of one worker thread. The time cap is checked with the clock read
/// the timed loop takes anyway, or every 1024 operations in the untimed one.
fn run_worker<H: Handle, const TIMED: bool>(handle: &mut H, work: Work, slot: &Slot) -> Res<()> {
    let mut max_wait = 0;
    let mut done = 0;
    let start = now_ns();
    let stop = start.saturating_add(work.cap_ns);
    while done < work.ops {
        done += 1;
        if TIMED {
            let asked = now_ns();
            let got = handle.with_lock(|counter| {
                let got = now_ns();
                *counter += 1;
                got
            })?;
            max_wait = max_wait.max(got.saturating_sub(asked));
            if got > stop {
                break;
            }
        } else {
            handle.with_lock(|counter| *counter += 1)?;
            if done % 1024 == 0 && now_ns() > stop {
                break;
            }
        }
    }
    let end = now_ns();
    slot.start_ns.store(start, Ordering::Relaxed);
    slot.end_ns.store(end, Ordering::Relaxed);
    slot.max_wait_ns.store(max_wait, Ordering::Relaxed);
    slot.done.store(done, Ordering::Release);
    Ok(())
}

/// The monotonic clock, in nanoseconds (the same clock in every process).
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// --- processes: the fork/gate/wait machinery, for any kind of subject -------------------

/// A worker process's ends of the two pipes: it writes one byte to `ready` once it is
/// set up, then waits for EOF on `gate`, which comes when the parent closes its write
/// end, for every process and thread at once.
#[derive(Clone, Copy)]
struct Gate {
    gate: libc::c_int,
    ready: libc::c_int,
}

impl Gate {
    /// Blocks until the parent opens the gate.
    fn wait(&self) -> Res<()> {
        let mut byte = 0u8;
        loop {
            // SAFETY: reads at most one byte into `byte`.
            let n = unsafe { libc::read(self.gate, (&raw mut byte).cast(), 1) };
            match n {
                0 => return Ok(()),
                n if n > 0 => return Err("unexpected data on the start gate".into()),
                _ => {
                    let err = std::io::Error::last_os_error();
                    if err.raw_os_error() != Some(libc::EINTR) {
                        return Err(format!("reading the start gate: {err}").into());
                    }
                }
            }
        }
    }

    /// Tells the parent this process is ready, and closes the ready pipe.
    fn ready(&self) -> Res<()> {
        let byte = b'r';
        let result = loop {
            // SAFETY: writes one byte from `byte`.
            let n = unsafe { libc::write(self.ready, (&raw const byte).cast(), 1) };
            if n == 1 {
                break Ok(());
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                break Err(format!("writing to the ready pipe: {err}").into());
            }
        };
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.ready) };
        result
    }
}

/// Forks `procs` worker processes running `body(index, gate)`, releases them together
/// once all are ready, and waits for every one to exit successfully.
///
/// The caller must be single-threaded (it forks). Every worker ends with `_exit`, so the
/// parent's objects, inherited through fork, are never dropped (removed) by a child.
fn run_workers(procs: usize, body: impl Fn(usize, Gate) -> Res<()>) -> Res<()> {
    let deadline = Instant::now() + WATCHDOG;
    let gate = Pipe::new()?;
    let ready = Pipe::new()?;
    let mut children = Children(Vec::new());
    for index in 0..procs {
        // Nothing buffered may be duplicated into the child.
        let _ = std::io::stdout().flush();
        // SAFETY: this process is single-threaded (the runner starts no threads), so the
        // child gets a consistent copy of every lock; it ends with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()).into());
        }
        if pid == 0 {
            // The child.
            // SAFETY: restoring default dispositions and closing the parent's pipe ends
            // (in this process only) have no preconditions.
            unsafe {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::close(gate.write.0);
                libc::close(ready.read.0);
            }
            let ends = Gate {
                gate: gate.read.0,
                ready: ready.write.0,
            };
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                body(index, ends)
            })) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("compare: worker process {}: {e}", std::process::id());
                    1
                }
                Err(_) => 101,
            };
            // SAFETY: ends the child without running the parent's destructors or flushing
            // its copies of the parent's buffers.
            unsafe { libc::_exit(code) };
        }
        children.push(pid);
    }
    let Pipe {
        read: ready_read,
        write: ready_write,
    } = ready;
    drop(ready_write); // so that the read sees EOF if every worker is gone
    wait_ready(&ready_read, procs, deadline)?;
    drop(gate); // the start
    children.wait_all(deadline)
}

/// Reads one byte from each of `procs` workers.
fn wait_ready(fd: &Fd, procs: usize, deadline: Instant) -> Res<()> {
    let mut got = 0;
    while got < procs {
        poll_readable(&mut [fd.0], deadline)?;
        let mut buf = [0u8; 64];
        let want = (procs - got).min(buf.len());
        // SAFETY: reads at most `want` <= buf.len() bytes into buf.
        let n = unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), want) };
        match n {
            0 => return Err("a worker process failed before the start (see above)".into()),
            n if n > 0 => got += n as usize,
            _ => {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(format!("reading the ready pipe: {err}").into());
                }
            }
        }
    }
    Ok(())
}

/// Waits until at least one of `fds` is readable (entries that are not are set to -1),
/// failing at `deadline` or on Ctrl-C.
fn poll_readable(fds: &mut [libc::c_int], deadline: Instant) -> Res<()> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        check_interrupted()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the workers did not finish within {}s: is a lock hung? (they are killed)",
                WATCHDOG.as_secs()
            )
            .into());
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: pollfds is a valid array of pollfds.len() entries.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
        if rc > 0 {
            for (fd, p) in fds.iter_mut().zip(&pollfds) {
                if p.revents == 0 {
                    *fd = -1;
                }
            }
            return Ok(());
        }
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(format!("poll: {err}").into());
            }
        }
    }
}

/// An owned file descriptor, closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.0) };
    }
}

struct Pipe {
    read: Fd,
    write: Fd,
}

impl Pipe {
    fn new() -> Res<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!("pipe2: {}", std::io::Error::last_os_error()).into());
        }
        Ok(Pipe {
            read: Fd(fds[0]),
            write: Fd(fds[1]),
        })
    }
}

struct Child {
    pid: libc::pid_t,
    /// For waiting with a deadline; `None` if pidfd_open is unavailable (then: no watchdog).
    pidfd: Option<Fd>,
    reaped: bool,
}

/// The worker processes. Dropping it kills and reaps any not yet reaped (on an error or
/// Ctrl-C), so none outlives the objects it uses.
struct Children(Vec<Child>);

impl Children {
    fn push(&mut self, pid: libc::pid_t) {
        // SAFETY: pidfd_open takes a pid and flags; it works on a child until it is reaped.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        self.0.push(Child {
            pid,
            pidfd: (fd >= 0).then_some(Fd(fd as libc::c_int)),
            reaped: false,
        });
    }

    fn wait_all(&mut self, deadline: Instant) -> Res<()> {
        let mut failures = Vec::new();
        loop {
            let pending: Vec<usize> = (0..self.0.len()).filter(|&i| !self.0[i].reaped).collect();
            if pending.is_empty() {
                break;
            }
            let mut fds: Vec<libc::c_int> = pending
                .iter()
                .map(|&i| self.0[i].pidfd.as_ref().map_or(-1, |fd| fd.0))
                .collect();
            if fds.iter().all(|&fd| fd >= 0) {
                poll_readable(&mut fds, deadline)?;
            } // else: no pidfds, a plain blocking wait below
            for (&i, &fd) in pending.iter().zip(&fds) {
                if fd < 0 && self.0[i].pidfd.is_some() {
                    continue; // not exited yet
                }
                let child = &mut self.0[i];
                let mut status = 0;
                // SAFETY: waits for our own child; writes its status into `status`.
                while unsafe { libc::waitpid(child.pid, &mut status, 0) } < 0 {
                    let err = std::io::Error::last_os_error();
                    if err.raw_os_error() != Some(libc::EINTR) {
                        return Err(format!("waitpid({}): {err}", child.pid).into());
                    }
                    check_interrupted()?;
                }
                child.reaped = true;
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    failures.push(describe_status(child.pid, status));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("worker processes failed: {}", failures.join(", ")).into())
        }
    }
}

fn describe_status(pid: libc::pid_t, status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("{pid} exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("{pid} killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("{pid} ended with wait status {status:#x}")
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().filter(|c| !c.reaped) {
            // SAFETY: signals and reaps our own, unreaped child (its pid cannot have been
            // reused while it is a zombie we have not waited for).
            unsafe {
                libc::kill(child.pid, libc::SIGKILL);
                let mut status = 0;
                while libc::waitpid(child.pid, &mut status, 0) < 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {
                }
            }
            child.reaped = true;
        }
    }
}

// --- shared memory and signals ---------------------------------------------------------

/// An anonymous `MAP_SHARED` mapping: zero-filled, page-aligned, shared with every child
/// forked after it was made; unmapped on drop. No System V object involved.
struct SharedPages {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedPages {
    fn new(len: usize) -> Res<Self> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()).into());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or("mmap returned NULL")?;
        Ok(SharedPages { ptr, len })
    }

    fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for SharedPages {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; nothing borrows it any more
        // (borrows of it are tied to the owner's lifetime).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is plain shared memory; what is in it is synchronised by the locks
// and atomics its owners put there.
unsafe impl Sync for SharedPages {}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C (SIGINT) or SIGTERM: the workers die (default action), the parent notices at
/// its next wait and unwinds, removing every object on the way.
fn catch_interrupts() {
    // SAFETY: installs a handler that only stores an atomic flag (async-signal-safe). No
    // SA_RESTART: a blocked poll returns EINTR, so the flag is seen at once.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

fn check_interrupted() -> Res<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The benchmark: calibrate, run interleaved, report medians
// ---------------------------------------------------------------------------------------

/// Chooses N for one (scenario, lock): grows a small count until a run lasts
/// [`CALIBRATION_MIN`], takes the fastest of three such runs (semop-based locks have a
/// fast and a slow regime; a run in the slow one is stopped by [`RUN_CAP`], while an N
/// sized for it would make fast runs too short to measure), and scales it to
/// [`TARGET_RUN`].
fn calibrate(subject: &dyn Subject, scenario: &Scenario, board: &Board) -> Res<u64> {
    let cap_ns = RUN_CAP.as_nanos() as u64;
    let mut ops = 500;
    let mut probes = Vec::new();
    while probes.len() < 3 {
        let sample = subject.run(scenario, Work { ops, cap_ns }, board)?;
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

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn fmt_mops(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} us", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.1} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: uname fills the struct; the fields are NUL-terminated strings.
    let kernel = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            let s = |f: &[libc::c_char]| {
                std::ffi::CStr::from_ptr(f.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            };
            format!("{} {} {}", s(&u.sysname), s(&u.release), s(&u.machine))
        } else {
            "unknown kernel".into()
        }
    };
    format!("{cpus} CPUs, {kernel}, {cpu}")
}

/// What one clock read costs (the contended scenarios do two per acquisition).
fn clock_cost_ns() -> f64 {
    let n = 200_000;
    let start = Instant::now();
    let mut sink = 0u64;
    for _ in 0..n {
        sink = sink.wrapping_add(now_ns());
    }
    std::hint::black_box(sink);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() -> ExitCode {
    catch_interrupts();
    match parse_args().and_then(|config| bench(&config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(config: &Config) -> Res<()> {
    let started = Instant::now();
    let subjects = subjects()?;
    let board = Board::new()?;
    let nl = subjects.len();
    let ns = SCENARIOS.len();

    println!("shmsem {} lock comparison", env!("CARGO_PKG_VERSION"));
    println!("machine: {}", machine());
    println!(
        "clock read (monotonic): {:.0} ns; contended scenarios take two per acquisition",
        clock_cost_ns()
    );

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
                for (l, subject) in subjects.iter().enumerate() {
                    ops[s][l] = calibrate(subject.as_ref(), scenario, &board)?;
                }
            }
        }
    }

    // samples[s][l] = one Sample per run. Runs are interleaved (every lock once per
    // scenario in each run, in a rotating order), so slow drift on a noisy machine hits
    // every lock alike and the ratios compare neighbours in time.
    let mut samples = vec![vec![Vec::<Sample>::new(); nl]; ns];
    // A calibrated N gets the time cap; an N from the command line is done in full.
    let cap_ns = match config.ops {
        Some(_) => u64::MAX,
        None => RUN_CAP.as_nanos() as u64,
    };
    for run in 0..config.runs {
        eprintln!("run {}/{}...", run + 1, config.runs);
        for (s, scenario) in SCENARIOS.iter().enumerate() {
            for k in 0..nl {
                let l = (k + run) % nl;
                let work = Work {
                    ops: ops[s][l],
                    cap_ns,
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

    println!(
        "\n{} run{} per cell, median shown; range = slowest..fastest run; ratios: shmsem \
         throughput / baseline, within each run (above 1x shmsem is faster)",
        config.runs,
        if config.runs == 1 { "" } else { "s" }
    );
    println!(
        "max wait: the longest single acquisition (clock before lock .. inside), worst \
         worker, median over runs; with more workers than CPUs it includes waiting for a CPU"
    );
    let mut summary = vec![vec![0f64; nl]; ns];
    let mut any_capped = false;
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        println!(
            "\n({}) {}: {} worker{}, each doing lock, counter += 1, unlock",
            scenario.id,
            scenario.title,
            scenario.workers(),
            if scenario.workers() == 1 { "" } else { "s" }
        );
        println!(
            "  {:<22} {:>10} {:>9} {:>17} {:>9} {:>10}",
            "lock", "N/worker", "M ops/s", "range", "ns/op", "max wait"
        );
        for (l, subject) in subjects.iter().enumerate() {
            let runs = &samples[s][l];
            let mops: Vec<f64> = runs.iter().map(Sample::mops).collect();
            let lo = mops.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = mops.iter().copied().fold(0.0, f64::max);
            let m = median(mops);
            summary[s][l] = m;
            let wait = if scenario.timed {
                fmt_ns(median(
                    runs.iter()
                        .map(|r| r.max_wait_ns.unwrap_or(0) as f64)
                        .collect(),
                ))
            } else {
                "-".into()
            };
            let capped = runs.iter().filter(|r| r.capped).count();
            any_capped |= capped > 0;
            println!(
                "  {:<22} {:>10} {:>9} {:>17} {:>9.0} {:>10}{}",
                subject.name(),
                ops[s][l],
                fmt_mops(m),
                format!("{}..{}", fmt_mops(lo), fmt_mops(hi)),
                1e3 / m,
                wait,
                if capped > 0 {
                    format!("  ({capped} capped)")
                } else {
                    String::new()
                }
            );
        }
        let ratios: Vec<String> = (1..nl)
            .map(|l| {
                let per_run: Vec<f64> = samples[s][0]
                    .iter()
                    .zip(&samples[s][l])
                    .map(|(a, b)| a.mops() / b.mops())
                    .collect();
                format!(
                    "{} / {} = {:.2}x",
                    subjects[0].short(),
                    subjects[l].short(),
                    median(per_run)
                )
            })
            .collect();
        println!("  {}", ratios.join(", "));
    }

    // The summary: throughput, scenarios x locks.
    println!("\nsummary: M ops/s (median)");
    print!("  {:<34}", "scenario");
    for subject in &subjects {
        print!(" {:>10}", subject.short());
    }
    println!();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        print!("  {:<34}", format!("({}) {}", scenario.id, scenario.title));
        for m in &summary[s] {
            print!(" {:>10}", fmt_mops(*m));
        }
        println!();
    }
    if any_capped {
        println!(
            "\n(k capped): k runs stopped at the {:.1?} cap before doing N ops per worker: the \
             lock ran over 3x slower than in its fastest calibration probe (a second regime, \
             e.g. a convoy, or a noisy machine); their throughput is still ops done / time",
            RUN_CAP
        );
    }
    let checked: u64 = samples.iter().flatten().flatten().map(|x| x.ops).sum();
    println!(
        "\nevery run's counter checked exact ({checked} increments in all); took {:.0?}",
        started.elapsed()
    );
    if config.quick {
        println!("(--quick: 1 run of {QUICK_OPS} ops per worker: a smoke test, not a measurement)");
    }
    drop(subjects); // removes the System V objects and the temp file (also on `?` above)
    Ok(())
}
