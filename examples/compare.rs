//! How fast is a `SharedMutex`, next to the other locks two processes can share? And
//! when most operations only read, how does a `SharedRwLock` do?
//!
//! ```text
//! cargo run --release --example compare              # 5 runs per cell, about 2 minutes
//! cargo run --release --example compare -- 3         # 3 runs per cell
//! cargo run --release --example compare -- 5 20000   # 5 runs, 20000 ops per worker
//! cargo run --release --example compare -- --quick   # 1 run, 2000 ops: proves it works
//! ```
//!
//! Locks (each guarding a [`Record`] of four `u64` next to it in shared memory):
//!
//! - `shmsem`: [`SharedMutex<Record>`], the subject;
//! - `raw semop`: a one-semaphore System V set (value 1), `semop(-1, SEM_UNDO)` /
//!   `semop(+1, SEM_UNDO)` straight through libc: the kernel's cost, nothing added;
//! - `pthread`: a process-shared, robust `pthread_mutex_t` (`EOWNERDEAD` is repaired with
//!   `pthread_mutex_consistent`), in an anonymous `MAP_SHARED` mapping;
//! - `sem_t`: a POSIX semaphore (`sem_init(pshared = 1, value = 1)`) in such a mapping;
//! - `flock`: `flock(LOCK_EX)` / `flock(LOCK_UN)` on a temporary file, which every worker
//!   (process or thread) opens itself: flock locks belong to open file descriptions;
//! - `shmsem rw`: [`SharedRwLock<Record>`], the subject of the read-heavy scenarios (a
//!   read is one semop in, of three operations: no writer inside, none queued, one more
//!   reader; a multi-operation semop takes the kernel's lock of the whole set; and one
//!   out; a write announces itself first: three semops; writers preferred; a contended
//!   read or write retries with `IPC_NOWAIT` for a bounded while before it sleeps in the
//!   kernel);
//! - `pthread rw`: a process-shared `pthread_rwlock_t`
//!   (`pthread_rwlockattr_setpshared(PTHREAD_PROCESS_SHARED)`, glibc's default kind,
//!   which prefers readers), in an anonymous `MAP_SHARED` mapping.
//!
//! Mutex scenarios: (a) one process, uncontended lock + unlock; (b) 2 and (c) 4
//! processes, (d) 1 process x 4 threads, (e) 2 processes x 2 threads, each worker
//! incrementing the record's `seq` (the counter) under the lock N times. They run the five
//! mutexes; the reader-writer locks are not in them.
//!
//! Read-heavy scenarios: (f) 4 processes and (g) 2 processes x 2 threads at 90% reads,
//! (h) 4 processes at 99% reads, (i) 4 processes at 90% reads with a ~2 us read section.
//! Each of a worker's N operations is a read (read lock, copy the record and check that
//! it is whole, unlock) or a write (write lock, check the record, rewrite all four fields
//! from `seq + 1`, unlock); which one comes from a per-worker xorshift64 seeded with the
//! worker's index: the same deterministic sequence in every run and for every lock, no
//! system call. They run `shmsem rw` (the subject), `shmsem` (a plain [`SharedMutex`]: a
//! read just locks), `pthread rw`, and `pthread` (the robust mutex, so that each
//! library's reader-writer lock has its own mutex beside it); `raw semop`, `sem_t` and
//! `flock` add nothing new there and show as `-`.
//!
//! In (f)-(h) a critical section is a few nanoseconds, so they measure what each lock's
//! acquire and release cost (for the semop-based ones, their system calls), which is
//! where a reader-writer lock, doing more per acquisition, loses to a mutex. (i) is (f)
//! with reads that take a while: inside the read lock, after the check, every read runs
//! [`read_work`] over its copy of the record (a loop of `black_box`ed arithmetic) for
//! about 2 us; writes are unchanged. The loop's iteration count is calibrated once at
//! startup ([`ReadWork`]: the fastest of several timed batches, alone, no lock) and
//! printed with the measured time of one read's work. There, readers that overlap can
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
//! - ratios: the throughput of the scenario's subject (`shmsem`, or `shmsem rwlock` in the
//!   read-heavy scenarios) over each other lock's, median over runs of the ratio within
//!   each run (above 1x the subject is faster).
//!
//! The summary has a column per lock and a row per scenario; `-` marks a lock that is not
//! in that scenario.
//!
//! N (operations per worker) is calibrated per (scenario, lock) so that one run lasts
//! about 0.4 s (locks differ by 100x), unless given on the command line. Semop-based locks
//! have two regimes on a small machine (fast, and a convoy where every hand-over wakes a
//! sleeper, 10-40x slower): N is sized for the fast one, a run caught in the slow one stops
//! at a 1.2 s cap (the table says how many did; the count is still checked exactly, against
//! the operations done), and a run that was far too short raises N for the later runs.
//!
//! Extending: a lock is a [`Lock`] (shared object made by the parent before forking) with
//! a [`Handle`] (what one worker thread uses: `with_lock`, and `with_read_lock`, which
//! defaults to `with_lock` for plain mutexes); add it to `subjects()` and give it an index
//! constant. A scenario is a row of [`SCENARIOS`]; its [`Workload`] says what each
//! operation does (an [`Op`]) and which subjects run it, the first being the one the
//! ratios are taken of ([`Workload::lineup`]). A queue-throughput scenario would be a
//! second kind of subject beside [`Lock`], run by the same fork/gate/wait machinery
//! ([`run_workers`]).
//!
//! Every object (System V sets and segments, mappings, the temp file) is removed when the
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

use shmsem::{Key, SemaphoreSet, SharedMutex, SharedRwLock};

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

/// One way of using a lock: how many processes, how many threads in each, doing what.
struct Scenario {
    id: &'static str,
    title: &'static str,
    procs: usize,
    threads: usize,
    /// Time every acquisition (for the max wait)? Off for the uncontended pair, whose
    /// ns/op would otherwise include two clock reads.
    timed: bool,
    workload: Workload,
}

impl Scenario {
    fn workers(&self) -> usize {
        self.procs * self.threads
    }
}

/// What each of a worker's operations does, and so which locks a scenario runs.
#[derive(Clone, Copy)]
enum Workload {
    /// Lock, `seq += 1`, unlock ([`Increment`]).
    Increment,
    /// Out of every 1000 operations about this many read (read lock, check the record,
    /// then, if `read_work_ns` is not 0, about that long of [`read_work`] on the copy,
    /// unlock), the others write (write lock, rewrite the record, unlock), chosen by a
    /// per-worker xorshift ([`ReadMostly`]).
    ReadMostly {
        reads_per_mille: u64,
        read_work_ns: u64,
    },
}

impl Workload {
    /// The subjects (indices into `subjects()`) that run this workload, in the order of
    /// the tables; the first is the one the ratios are taken of.
    fn lineup(self) -> &'static [usize] {
        match self {
            Workload::Increment => &[SHMSEM, RAW_SEMOP, PTHREAD, SEM_T, FLOCK],
            Workload::ReadMostly { .. } => &[SHMSEM_RW, SHMSEM, PTHREAD_RW, PTHREAD],
        }
    }

    /// What one operation is, for the scenario's heading.
    fn describe(self) -> String {
        match self {
            Workload::Increment => "lock, counter += 1, unlock".into(),
            Workload::ReadMostly {
                reads_per_mille,
                read_work_ns,
            } => {
                let reads = reads_per_mille as f64 / 10.0;
                let work = if read_work_ns == 0 {
                    String::new()
                } else {
                    format!(", ~{} of work on the copy", fmt_ns(read_work_ns as f64))
                };
                format!(
                    "{reads}%: read lock, check the record{work}, unlock; {}%: write lock, \
                     rewrite the record, unlock",
                    100.0 - reads
                )
            }
        }
    }

    /// How long each read works inside its read lock (0: not at all).
    fn read_work_ns(self) -> u64 {
        match self {
            Workload::Increment => 0,
            Workload::ReadMostly { read_work_ns, .. } => read_work_ns,
        }
    }
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "a",
        title: "1 process, uncontended",
        procs: 1,
        threads: 1,
        timed: false,
        workload: Workload::Increment,
    },
    Scenario {
        id: "b",
        title: "2 processes",
        procs: 2,
        threads: 1,
        timed: true,
        workload: Workload::Increment,
    },
    Scenario {
        id: "c",
        title: "4 processes",
        procs: 4,
        threads: 1,
        timed: true,
        workload: Workload::Increment,
    },
    Scenario {
        id: "d",
        title: "1 process x 4 threads",
        procs: 1,
        threads: 4,
        timed: true,
        workload: Workload::Increment,
    },
    Scenario {
        id: "e",
        title: "2 processes x 2 threads",
        procs: 2,
        threads: 2,
        timed: true,
        workload: Workload::Increment,
    },
    Scenario {
        id: "f",
        title: "4 processes, 90% reads",
        procs: 4,
        threads: 1,
        timed: true,
        workload: Workload::ReadMostly {
            reads_per_mille: 900,
            read_work_ns: 0,
        },
    },
    Scenario {
        id: "g",
        title: "2 processes x 2 threads, 90% reads",
        procs: 2,
        threads: 2,
        timed: true,
        workload: Workload::ReadMostly {
            reads_per_mille: 900,
            read_work_ns: 0,
        },
    },
    Scenario {
        id: "h",
        title: "4 processes, 99% reads",
        procs: 4,
        threads: 1,
        timed: true,
        workload: Workload::ReadMostly {
            reads_per_mille: 990,
            read_work_ns: 0,
        },
    },
    Scenario {
        id: "i",
        title: "4 processes, 90% reads, ~2 us read section",
        procs: 4,
        threads: 1,
        timed: true,
        workload: Workload::ReadMostly {
            reads_per_mille: 900,
            read_work_ns: 2000,
        },
    },
];

// ---------------------------------------------------------------------------------------
// The locks
// ---------------------------------------------------------------------------------------

/// What every lock guards, in shared memory: four `u64`. The mutex scenarios count in
/// `seq` alone; the read-heavy ones keep the record whole (every field derived from `seq`,
/// see [`Record::at`]), so that a read or write beside a writer would find it torn, and
/// `seq` counts the writes.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, shmsem::Pod, shmsem::Zeroable)]
#[bytemuck(crate = "shmsem::bytemuck")]
struct Record {
    seq: u64,
    mixed: u64,
    inverted: u64,
    rotated: u64,
}

impl Record {
    /// The whole record for `seq`.
    const fn at(seq: u64) -> Record {
        Record {
            seq,
            mixed: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            inverted: !seq,
            rotated: seq.rotate_left(29),
        }
    }

    /// Is every field the one `seq` implies (not a mix of two writes)?
    fn is_whole(&self) -> bool {
        *self == Record::at(self.seq)
    }
}

/// A lock under test: made by the parent before it forks (so every worker process
/// inherits it), removed when dropped. Guards a [`Record`] in shared memory.
trait Lock: Sync {
    /// Name in the tables.
    const NAME: &'static str;
    /// Name in the mutex scenarios' ratio lines and the summary's columns.
    const SHORT: &'static str;
    /// Name in the read-heavy scenarios' ratio lines (says mutex or rwlock).
    const LABEL: &'static str;
    /// What one worker thread uses. Made in the worker process, after the fork.
    type Handle<'a>: Handle + Send
    where
        Self: 'a;
    fn handle(&self) -> Res<Self::Handle<'_>>;
    /// The record, read while no worker runs.
    fn record(&self) -> Res<Record>;
    /// Sets the record, while no worker runs.
    fn set_record(&self, value: Record) -> Res<()>;
}

/// One worker's access to a [`Lock`].
trait Handle {
    /// Takes the lock (exclusive), runs `f` on the record, releases the lock.
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R>;

    /// Takes the lock shared, runs `f` on the record, releases it. A reader-writer lock
    /// takes its read lock; a plain mutex just locks (this default).
    fn with_read_lock<R>(&mut self, f: impl FnOnce(&Record) -> R) -> Res<R> {
        self.with_lock(|record| f(record))
    }
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

/// The subject: a `SharedMutex<Record>` (its own segment and semaphore set,
/// `Key::PRIVATE`).
struct Shmsem(SharedMutex<Record>);

impl Shmsem {
    fn create() -> Res<Self> {
        Ok(Shmsem(SharedMutex::create(Key::PRIVATE, Record::at(0))?))
    }
}

impl Drop for Shmsem {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("compare: removing the SharedMutex: {e}");
        }
    }
}

struct ShmsemHandle<'a>(&'a SharedMutex<Record>);

impl Lock for Shmsem {
    const NAME: &'static str = "shmsem SharedMutex";
    const SHORT: &'static str = "shmsem";
    const LABEL: &'static str = "shmsem mutex";
    type Handle<'a> = ShmsemHandle<'a>;

    fn handle(&self) -> Res<ShmsemHandle<'_>> {
        Ok(ShmsemHandle(&self.0))
    }

    fn record(&self) -> Res<Record> {
        Ok(*self.0.lock().map_err(shmsem::Error::from)?)
    }

    fn set_record(&self, value: Record) -> Res<()> {
        *self.0.lock().map_err(shmsem::Error::from)? = value;
        Ok(())
    }
}

impl Handle for ShmsemHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        let mut guard = self.0.lock().map_err(shmsem::Error::from)?;
        Ok(f(&mut guard))
    }
}

// --- raw semop -------------------------------------------------------------------------

/// The kernel's own price: a one-semaphore set (value 1) and two `libc::semop` calls with
/// `SEM_UNDO`, as a C program would write them. The record is in a shared mapping.
struct RawSemop {
    set: SemaphoreSet,
    page: SharedPages,
}

impl RawSemop {
    fn create() -> Res<Self> {
        let page = SharedPages::new(size_of::<Record>())?;
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
    record: *mut Record,
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
    const LABEL: &'static str = "raw semop";
    type Handle<'a> = RawSemopHandle<'a>;

    fn handle(&self) -> Res<RawSemopHandle<'_>> {
        Ok(RawSemopHandle {
            id: self.set.id(),
            record: self.page.ptr().cast(),
            _lock: PhantomData,
        })
    }

    fn record(&self) -> Res<Record> {
        // SAFETY: the mapping holds a Record at offset 0 (page-aligned); no worker runs.
        Ok(unsafe { self.page.ptr().cast::<Record>().read_volatile() })
    }

    fn set_record(&self, value: Record) -> Res<()> {
        // SAFETY: as in `record`.
        unsafe { self.page.ptr().cast::<Record>().write_volatile(value) };
        Ok(())
    }
}

impl Handle for RawSemopHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        semop1(self.id, -1)?;
        // SAFETY: the semaphore is held, so this is the only access to the record, which
        // lives as long as the lock ('a).
        let r = f(unsafe { &mut *self.record });
        semop1(self.id, 1)?;
        Ok(r)
    }
}

// --- robust process-shared pthread mutex -----------------------------------------------

#[repr(C)]
struct PthreadCell {
    mutex: libc::pthread_mutex_t,
    record: Record,
}

/// A robust, process-shared `pthread_mutex_t` with the record right behind it, in an
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
// alive; the mutex is process-shared (so certainly thread-safe), and the record is only
// touched while it is held.
unsafe impl Send for PthreadHandle<'_> {}

impl Lock for Pthread {
    const NAME: &'static str = "pthread robust mutex";
    const SHORT: &'static str = "pthread";
    const LABEL: &'static str = "pthread mutex";
    type Handle<'a> = PthreadHandle<'a>;

    fn handle(&self) -> Res<PthreadHandle<'_>> {
        Ok(PthreadHandle {
            cell: self.cell(),
            _lock: PhantomData,
        })
    }

    fn record(&self) -> Res<Record> {
        // SAFETY: the cell's record is an aligned Record in the live mapping; no worker
        // runs.
        Ok(unsafe { (&raw const (*self.cell()).record).read_volatile() })
    }

    fn set_record(&self, value: Record) -> Res<()> {
        // SAFETY: as in `record`.
        unsafe { (&raw mut (*self.cell()).record).write_volatile(value) };
        Ok(())
    }
}

impl Handle for PthreadHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        // SAFETY: the mutex is initialised and lives as long as the lock ('a).
        let mutex = unsafe { &raw mut (*self.cell).mutex };
        // SAFETY: as above.
        match unsafe { libc::pthread_mutex_lock(mutex) } {
            0 => {}
            libc::EOWNERDEAD => {
                // The holder died inside: we hold the lock now; mark the state repaired
                // (nothing to fix: a half-written record fails the run's check anyway).
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
        // SAFETY: the mutex is held, so this is the only access to the record.
        let r = f(unsafe { &mut (*self.cell).record });
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
    record: Record,
}

/// A process-shared POSIX semaphore (value 1) with the record behind it, in an anonymous
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
// process-shared semaphore; the record is only touched while it is held.
unsafe impl Send for PosixSemHandle<'_> {}

impl Lock for PosixSem {
    const NAME: &'static str = "POSIX sem_t";
    const SHORT: &'static str = "sem_t";
    const LABEL: &'static str = "sem_t";
    type Handle<'a> = PosixSemHandle<'a>;

    fn handle(&self) -> Res<PosixSemHandle<'_>> {
        Ok(PosixSemHandle {
            cell: self.cell(),
            _lock: PhantomData,
        })
    }

    fn record(&self) -> Res<Record> {
        // SAFETY: an aligned Record in the live mapping; no worker runs.
        Ok(unsafe { (&raw const (*self.cell()).record).read_volatile() })
    }

    fn set_record(&self, value: Record) -> Res<()> {
        // SAFETY: as in `record`.
        unsafe { (&raw mut (*self.cell()).record).write_volatile(value) };
        Ok(())
    }
}

impl Handle for PosixSemHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        // SAFETY: the semaphore is initialised and lives as long as the lock ('a).
        let sem = unsafe { &raw mut (*self.cell).sem };
        // SAFETY: as above.
        retry_eintr("sem_wait", || unsafe { libc::sem_wait(sem) })?;
        // SAFETY: the semaphore is held, so this is the only access to the record.
        let r = f(unsafe { &mut (*self.cell).record });
        // SAFETY: as above.
        if unsafe { libc::sem_post(sem) } != 0 {
            return Err(format!("sem_post: {}", std::io::Error::last_os_error()).into());
        }
        Ok(r)
    }
}

// --- flock -----------------------------------------------------------------------------

/// `flock` on a temporary file (removed at the end); the record is in a shared mapping.
/// Every handle opens the file itself: an flock belongs to an open file description, so
/// threads sharing one descriptor would not exclude each other.
struct Flock {
    path: PathBuf,
    page: SharedPages,
}

impl Flock {
    fn create() -> Res<Self> {
        let page = SharedPages::new(size_of::<Record>())?;
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
    record: *mut Record,
    _lock: PhantomData<&'a Flock>,
}

// SAFETY: the pointer is into the shared mapping that the lock (borrowed for 'a) keeps
// alive; it is only dereferenced while the flock is held.
unsafe impl Send for FlockHandle<'_> {}

impl Lock for Flock {
    const NAME: &'static str = "flock (temp file)";
    const SHORT: &'static str = "flock";
    const LABEL: &'static str = "flock";
    type Handle<'a> = FlockHandle<'a>;

    fn handle(&self) -> Res<FlockHandle<'_>> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| format!("opening {}: {e}", self.path.display()))?;
        Ok(FlockHandle {
            file,
            record: self.page.ptr().cast(),
            _lock: PhantomData,
        })
    }

    fn record(&self) -> Res<Record> {
        // SAFETY: the mapping holds a Record at offset 0 (page-aligned); no worker runs.
        Ok(unsafe { self.page.ptr().cast::<Record>().read_volatile() })
    }

    fn set_record(&self, value: Record) -> Res<()> {
        // SAFETY: as in `record`.
        unsafe { self.page.ptr().cast::<Record>().write_volatile(value) };
        Ok(())
    }
}

impl Handle for FlockHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        let fd = self.file.as_raw_fd();
        // SAFETY: flock on a descriptor we own.
        retry_eintr("flock(LOCK_EX)", || unsafe {
            libc::flock(fd, libc::LOCK_EX)
        })?;
        // SAFETY: the flock is held, so this is the only access to the record.
        let r = f(unsafe { &mut *self.record });
        // SAFETY: as above.
        retry_eintr("flock(LOCK_UN)", || unsafe {
            libc::flock(fd, libc::LOCK_UN)
        })?;
        Ok(r)
    }
}

// --- shmsem SharedRwLock ---------------------------------------------------------------

/// The read-heavy scenarios' subject: a `SharedRwLock<Record>` (its own segment and
/// three-semaphore set, `Key::PRIVATE`).
struct ShmsemRw(SharedRwLock<Record>);

impl ShmsemRw {
    fn create() -> Res<Self> {
        Ok(ShmsemRw(SharedRwLock::create(Key::PRIVATE, Record::at(0))?))
    }
}

impl Drop for ShmsemRw {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("compare: removing the SharedRwLock: {e}");
        }
    }
}

struct ShmsemRwHandle<'a>(&'a SharedRwLock<Record>);

impl Lock for ShmsemRw {
    const NAME: &'static str = "shmsem SharedRwLock";
    const SHORT: &'static str = "shmsem rw";
    const LABEL: &'static str = "shmsem rwlock";
    type Handle<'a> = ShmsemRwHandle<'a>;

    fn handle(&self) -> Res<ShmsemRwHandle<'_>> {
        Ok(ShmsemRwHandle(&self.0))
    }

    fn record(&self) -> Res<Record> {
        Ok(*self.0.read().map_err(shmsem::Error::from)?)
    }

    fn set_record(&self, value: Record) -> Res<()> {
        *self.0.write().map_err(shmsem::Error::from)? = value;
        Ok(())
    }
}

impl Handle for ShmsemRwHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        let mut guard = self.0.write().map_err(shmsem::Error::from)?;
        Ok(f(&mut guard))
    }

    fn with_read_lock<R>(&mut self, f: impl FnOnce(&Record) -> R) -> Res<R> {
        let guard = self.0.read().map_err(shmsem::Error::from)?;
        Ok(f(&guard))
    }
}

// --- process-shared pthread rwlock -----------------------------------------------------

#[repr(C)]
struct PthreadRwCell {
    rwlock: libc::pthread_rwlock_t,
    record: Record,
}

/// A process-shared `pthread_rwlock_t` (glibc's default kind, which prefers readers) with
/// the record right behind it, in an anonymous shared mapping. Not robust: POSIX has no
/// robust rwlocks (a holder that dies leaves it held for good).
struct PthreadRw {
    page: SharedPages,
}

/// `rc` (a pthread function's return value) as a result: 0 is success, else an errno.
fn pthread_rc(what: &str, rc: libc::c_int) -> Res<()> {
    match rc {
        0 => Ok(()),
        e => Err(format!("{what}: {}", std::io::Error::from_raw_os_error(e)).into()),
    }
}

impl PthreadRw {
    fn create() -> Res<Self> {
        let page = SharedPages::new(size_of::<PthreadRwCell>())?;
        let cell = page.ptr().cast::<PthreadRwCell>();
        let mut attr = std::mem::MaybeUninit::<libc::pthread_rwlockattr_t>::uninit();
        // SAFETY: attr is initialised by pthread_rwlockattr_init before any other use and
        // destroyed once; the rwlock is in a fresh, page-aligned shared mapping that
        // nothing else uses yet.
        unsafe {
            pthread_rc(
                "pthread_rwlockattr_init",
                libc::pthread_rwlockattr_init(attr.as_mut_ptr()),
            )?;
            let result = pthread_rc(
                "pthread_rwlockattr_setpshared",
                libc::pthread_rwlockattr_setpshared(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_PROCESS_SHARED,
                ),
            )
            .and_then(|()| {
                pthread_rc(
                    "pthread_rwlock_init",
                    libc::pthread_rwlock_init(&raw mut (*cell).rwlock, attr.as_ptr()),
                )
            });
            libc::pthread_rwlockattr_destroy(attr.as_mut_ptr());
            result?;
            (&raw mut (*cell).record).write(Record::at(0));
        }
        Ok(PthreadRw { page })
    }

    fn cell(&self) -> *mut PthreadRwCell {
        self.page.ptr().cast()
    }
}

impl Drop for PthreadRw {
    fn drop(&mut self) {
        // SAFETY: the rwlock was initialised in `create` and no worker uses it any more
        // (all have exited); the mapping is unmapped after this.
        unsafe { libc::pthread_rwlock_destroy(&raw mut (*self.cell()).rwlock) };
    }
}

struct PthreadRwHandle<'a> {
    cell: *mut PthreadRwCell,
    _lock: PhantomData<&'a PthreadRw>,
}

// SAFETY: the pointer is into the shared mapping that the lock (borrowed for 'a) keeps
// alive; the rwlock is process-shared (so certainly thread-safe), and the record is only
// read under its read lock and written under its write lock.
unsafe impl Send for PthreadRwHandle<'_> {}

/// `pthread_rwlock_rdlock` or `pthread_rwlock_wrlock`.
type RwLockFn = unsafe extern "C" fn(*mut libc::pthread_rwlock_t) -> libc::c_int;

impl PthreadRwHandle<'_> {
    /// Runs `f` between `lock` (named `what`) and unlock.
    fn locked<R>(
        &mut self,
        what: &str,
        lock: RwLockFn,
        f: impl FnOnce(*mut Record) -> R,
    ) -> Res<R> {
        // SAFETY: the rwlock is initialised and lives as long as the lock ('a).
        let rwlock = unsafe { &raw mut (*self.cell).rwlock };
        // SAFETY: as above.
        pthread_rc(what, unsafe { lock(rwlock) })?;
        // SAFETY: a field pointer into the live cell; `f` gets the access `lock` allows.
        let r = f(unsafe { &raw mut (*self.cell).record });
        // SAFETY: we hold the rwlock (read or write), as unlock requires.
        pthread_rc("pthread_rwlock_unlock", unsafe {
            libc::pthread_rwlock_unlock(rwlock)
        })?;
        Ok(r)
    }
}

impl Lock for PthreadRw {
    const NAME: &'static str = "pthread rwlock";
    const SHORT: &'static str = "pthread rw";
    const LABEL: &'static str = "pthread rwlock";
    type Handle<'a> = PthreadRwHandle<'a>;

    fn handle(&self) -> Res<PthreadRwHandle<'_>> {
        Ok(PthreadRwHandle {
            cell: self.cell(),
            _lock: PhantomData,
        })
    }

    fn record(&self) -> Res<Record> {
        // SAFETY: the cell's record is an aligned Record in the live mapping; no worker
        // runs.
        Ok(unsafe { (&raw const (*self.cell()).record).read_volatile() })
    }

    fn set_record(&self, value: Record) -> Res<()> {
        // SAFETY: as in `record`.
        unsafe { (&raw mut (*self.cell()).record).write_volatile(value) };
        Ok(())
    }
}

impl Handle for PthreadRwHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        self.locked(
            "pthread_rwlock_wrlock",
            libc::pthread_rwlock_wrlock,
            |record| {
                // SAFETY: the write lock is held: this is the only access to the record.
                f(unsafe { &mut *record })
            },
        )
    }

    fn with_read_lock<R>(&mut self, f: impl FnOnce(&Record) -> R) -> Res<R> {
        self.locked(
            "pthread_rwlock_rdlock",
            libc::pthread_rwlock_rdlock,
            |record| {
                // SAFETY: a read lock is held: nobody writes the record meanwhile.
                f(unsafe { &*record })
            },
        )
    }
}

// ---------------------------------------------------------------------------------------
// Subjects: locks behind one object-safe face, so the runner can interleave them
// ---------------------------------------------------------------------------------------

trait Subject {
    fn name(&self) -> &'static str;
    fn short(&self) -> &'static str;
    fn label(&self) -> &'static str;
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

    fn label(&self) -> &'static str {
        L::LABEL
    }

    fn run(&self, scenario: &Scenario, work: Work, board: &Board) -> Res<Sample> {
        run_lock(self, scenario, work, board)
    }
}

// Indices into `subjects()`, as the scenarios' lineups ([`Workload::lineup`]) name them.
const SHMSEM: usize = 0;
const RAW_SEMOP: usize = 1;
const PTHREAD: usize = 2;
const SEM_T: usize = 3;
const FLOCK: usize = 4;
const SHMSEM_RW: usize = 5;
const PTHREAD_RW: usize = 6;

/// Every lock, in the order of the index constants above (also the summary's columns).
/// Made one by one: if one fails, those already made are removed again as the vector
/// drops.
fn subjects() -> Res<Vec<Box<dyn Subject>>> {
    let subjects: Vec<Box<dyn Subject>> = vec![
        Box::new(Shmsem::create()?),
        Box::new(RawSemop::create()?),
        Box::new(Pthread::create()?),
        Box::new(PosixSem::create()?),
        Box::new(Flock::create()?),
        Box::new(ShmsemRw::create()?),
        Box::new(PthreadRw::create()?),
    ];
    let expected = [
        (SHMSEM, Shmsem::NAME),
        (RAW_SEMOP, RawSemop::NAME),
        (PTHREAD, Pthread::NAME),
        (SEM_T, PosixSem::NAME),
        (FLOCK, Flock::NAME),
        (SHMSEM_RW, ShmsemRw::NAME),
        (PTHREAD_RW, PthreadRw::NAME),
    ];
    assert_eq!(subjects.len(), expected.len());
    for (index, name) in expected {
        assert_eq!(
            subjects[index].name(),
            name,
            "subject index constants out of order"
        );
    }
    Ok(subjects)
}

// ---------------------------------------------------------------------------------------
// Running one (scenario, lock): fork, gate, wait, check
// ---------------------------------------------------------------------------------------

/// How much one worker does in a run: `ops` operations (lock+unlock pairs), unless
/// `cap_ns` (from its start) runs out first; in the read-heavy scenarios each read also
/// runs `read_iters` iterations of [`read_work`] inside its read lock (0: none).
#[derive(Clone, Copy)]
struct Work {
    ops: u64,
    cap_ns: u64,
    read_iters: u64,
}

/// What one run measured.
#[derive(Clone, Copy)]
struct Sample {
    /// Operations done (reads and writes), all workers together.
    ops: u64,
    /// Of those, writes (increments in the mutex scenarios), found in the record's `seq`.
    writes: u64,
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
    /// Writes (or increments) done.
    writes: AtomicU64,
    /// Operations that found the record torn (a mix of two writes).
    torn: AtomicU64,
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
            for a in [
                &s.start_ns,
                &s.end_ns,
                &s.max_wait_ns,
                &s.writes,
                &s.torn,
                &s.done,
            ] {
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
    lock.set_record(Record::at(0))?;
    board.clear(workers);
    run_workers(scenario.procs, |proc_index, gate| {
        worker_process(lock, scenario, work, board, proc_index, gate)
    })?;

    let mut start = u64::MAX;
    let mut end = 0;
    let mut max_wait = 0;
    let mut ops = 0;
    let mut expected = 0;
    let mut torn = 0;
    let mut capped = false;
    for i in 0..workers {
        let s = board.slot(i);
        let done = s.done.load(Ordering::Acquire);
        let writes = s.writes.load(Ordering::Relaxed);
        if done == 0 || done > work.ops || writes > done {
            return Err(
                format!("{}, ({}): worker {i} did not report", L::NAME, scenario.id).into(),
            );
        }
        ops += done;
        expected += writes;
        torn += s.torn.load(Ordering::Relaxed);
        capped |= done < work.ops;
        start = start.min(s.start_ns.load(Ordering::Relaxed));
        end = end.max(s.end_ns.load(Ordering::Relaxed));
        max_wait = max_wait.max(s.max_wait_ns.load(Ordering::Relaxed));
    }
    let got = lock.record()?;
    let what = match scenario.workload {
        Workload::Increment => "the counter",
        Workload::ReadMostly { .. } => "the record's write count",
    };
    if got.seq != expected {
        return Err(format!(
            "WRONG COUNT: {} in scenario ({}) {}: {what} is {}, expected {expected} (the \
             writes its {workers} workers did): the lock did not exclude",
            L::NAME,
            scenario.id,
            scenario.title,
            got.seq
        )
        .into());
    }
    let whole = match scenario.workload {
        Workload::Increment => true, // only `seq` is written
        Workload::ReadMostly { .. } => got.is_whole(),
    };
    if torn > 0 || !whole {
        return Err(format!(
            "TORN RECORD: {} in scenario ({}) {}: {torn} operations found the record half \
             written, and it is {got:?} at the end: the lock let someone in beside a writer",
            L::NAME,
            scenario.id,
            scenario.title
        )
        .into());
    }
    Ok(Sample {
        ops,
        writes: expected,
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
                let worker = proc_index * scenario.threads + t;
                let slot = board.slot(worker);
                s.spawn(move || -> Res<()> {
                    barrier.wait();
                    gate.wait()?;
                    match scenario.workload {
                        Workload::Increment => {
                            run_op(&mut handle, Increment, scenario.timed, work, slot)
                        }
                        Workload::ReadMostly {
                            reads_per_mille, ..
                        } => {
                            let op = ReadMostly::new(worker, reads_per_mille, work.read_iters);
                            run_op(&mut handle, op, scenario.timed, work, slot)
                        }
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

/// What a worker does in one operation. Monomorphised with the handle, so the mutex
/// scenarios' loop is just lock, increment, unlock.
trait Op {
    /// One operation; returns the clock read taken inside the critical section if `TIMED`
    /// (0 otherwise).
    fn once<H: Handle, const TIMED: bool>(&mut self, handle: &mut H) -> Res<u64>;
    /// (writes, torn records seen) after `done` operations.
    fn tally(&self, done: u64) -> (u64, u64);
}

/// Lock, `seq += 1`, unlock: every operation is a write.
struct Increment;

impl Op for Increment {
    #[inline(always)]
    fn once<H: Handle, const TIMED: bool>(&mut self, handle: &mut H) -> Res<u64> {
        handle.with_lock(|record| {
            let got = if TIMED { now_ns() } else { 0 };
            record.seq += 1;
            got
        })
    }

    fn tally(&self, done: u64) -> (u64, u64) {
        (done, 0)
    }
}

/// Mostly reads: each operation reads (read lock, copy the record, check it is whole,
/// run `read_iters` iterations of [`read_work`] over the copy, unlock) with probability
/// `reads_per_mille / 1000`, else writes (write lock, check the record, replace it by the
/// next whole one, unlock). The choice is an xorshift64 step: deterministic per worker,
/// no system call.
struct ReadMostly {
    state: u64,
    reads_per_mille: u64,
    read_iters: u64,
    writes: u64,
    torn: u64,
}

impl ReadMostly {
    fn new(worker: usize, reads_per_mille: u64, read_iters: u64) -> Self {
        ReadMostly {
            // Odd constant times a nonzero number: a nonzero seed, distinct per worker.
            state: 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(worker as u64 + 1),
            reads_per_mille,
            read_iters,
            writes: 0,
            torn: 0,
        }
    }

    /// The next pseudo-random number in 0..1000 (xorshift64, high 32 bits scaled).
    #[inline(always)]
    fn next_per_mille(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        ((x >> 32) * 1000) >> 32
    }
}

impl Op for ReadMostly {
    #[inline(always)]
    fn once<H: Handle, const TIMED: bool>(&mut self, handle: &mut H) -> Res<u64> {
        let (got, whole) = if self.next_per_mille() < self.reads_per_mille {
            let iters = self.read_iters;
            handle.with_read_lock(|record| {
                let got = if TIMED { now_ns() } else { 0 };
                let seen = *record;
                if iters > 0 {
                    std::hint::black_box(read_work(&seen, iters));
                }
                (got, seen.is_whole())
            })?
        } else {
            self.writes += 1;
            handle.with_lock(|record| {
                let got = if TIMED { now_ns() } else { 0 };
                let seen = *record;
                *record = Record::at(seen.seq.wrapping_add(1));
                (got, seen.is_whole())
            })?
        };
        self.torn += u64::from(!whole);
        Ok(got)
    }

    fn tally(&self, _done: u64) -> (u64, u64) {
        (self.writes, self.torn)
    }
}

/// The work a read does inside its read lock when its scenario asks for some: `iters`
/// rounds of dependent arithmetic over the (copied) record. `black_box` on every round
/// keeps the compiler from folding the loop into a formula or moving it out of the
/// critical section; [`ReadWork::calibrate`] finds how many rounds take the time wanted.
#[inline(never)]
fn read_work(record: &Record, iters: u64) -> u64 {
    let mut h = record.seq ^ record.mixed;
    for i in 0..iters {
        let x = std::hint::black_box(h ^ i);
        h = (x ^ record.inverted)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(23)
            .wrapping_add(record.rotated);
    }
    h
}

/// What one iteration of [`read_work`] costs on this machine, measured once at startup.
struct ReadWork {
    ns_per_iter: f64,
}

impl ReadWork {
    /// Times [`read_work`] alone (one thread, no lock): a warm-up (the CPU may clock up),
    /// then the fastest of several batches.
    fn calibrate() -> Self {
        let record = Record::at(12345);
        let batch = 100_000;
        let time = |iters: u64| {
            let start = Instant::now();
            std::hint::black_box(read_work(std::hint::black_box(&record), iters));
            start.elapsed().as_nanos() as f64
        };
        let warm_up = Instant::now();
        while warm_up.elapsed() < Duration::from_millis(50) {
            time(batch);
        }
        let best = (0..9).map(|_| time(batch)).fold(f64::INFINITY, f64::min);
        ReadWork {
            ns_per_iter: (best / batch as f64).max(0.01),
        }
    }

    /// Iterations that take about `ns` (0 for 0).
    fn iters_for(&self, ns: u64) -> u64 {
        if ns == 0 {
            0
        } else {
            ((ns as f64 / self.ns_per_iter).round() as u64).max(1)
        }
    }

    /// How long `iters` iterations take, one call at a time as a read makes them (the
    /// call, and the reads of the copy, included): the mean of many calls.
    fn check(&self, iters: u64) -> f64 {
        let record = Record::at(12345);
        let calls = (20_000_000.0 / (iters as f64 * self.ns_per_iter).max(1.0)) as u64;
        let calls = calls.clamp(100, 100_000);
        let start = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(read_work(std::hint::black_box(&record), iters));
        }
        start.elapsed().as_nanos() as f64 / calls as f64
    }
}

/// Runs one worker thread's measured loop, timed or not.
fn run_op<H: Handle, O: Op>(
    handle: &mut H,
    mut op: O,
    timed: bool,
    work: Work,
    slot: &Slot,
) -> Res<()> {
    if timed {
        run_worker::<_, _, true>(handle, &mut op, work, slot)
    } else {
        run_worker::<_, _, false>(handle, &mut op, work, slot)
    }
}

/// The measured loop of one worker thread. The time cap is checked with the clock read
/// the timed loop takes anyway, or every 1024 operations in the untimed one.
fn run_worker<H: Handle, O: Op, const TIMED: bool>(
    handle: &mut H,
    op: &mut O,
    work: Work,
    slot: &Slot,
) -> Res<()> {
    let mut max_wait = 0;
    let mut done = 0;
    let start = now_ns();
    let stop = start.saturating_add(work.cap_ns);
    while done < work.ops {
        done += 1;
        if TIMED {
            let asked = now_ns();
            let got = op.once::<H, true>(handle)?;
            max_wait = max_wait.max(got.saturating_sub(asked));
            if got > stop {
                break;
            }
        } else {
            op.once::<H, false>(handle)?;
            if done % 1024 == 0 && now_ns() > stop {
                break;
            }
        }
    }
    let end = now_ns();
    let (writes, torn) = op.tally(done);
    slot.start_ns.store(start, Ordering::Relaxed);
    slot.end_ns.store(end, Ordering::Relaxed);
    slot.max_wait_ns.store(max_wait, Ordering::Relaxed);
    slot.writes.store(writes, Ordering::Relaxed);
    slot.torn.store(torn, Ordering::Relaxed);
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
/// [`TARGET_RUN`]. `read_iters`: the scenario's [`Work::read_iters`].
fn calibrate(
    subject: &dyn Subject,
    scenario: &Scenario,
    read_iters: u64,
    board: &Board,
) -> Res<u64> {
    let cap_ns = RUN_CAP.as_nanos() as u64;
    let mut ops = 500;
    let mut probes = Vec::new();
    while probes.len() < 3 {
        let work = Work {
            ops,
            cap_ns,
            read_iters,
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
    // Iterations of the read work per scenario (0 where reads do none).
    let read_work = ReadWork::calibrate();
    let read_iters: Vec<u64> = SCENARIOS
        .iter()
        .map(|scenario| read_work.iters_for(scenario.workload.read_work_ns()))
        .collect();
    for (scenario, &iters) in SCENARIOS.iter().zip(&read_iters) {
        if iters > 0 {
            println!(
                "read work in ({}): {iters} iterations of the busy loop ({:.2} ns each, \
                 calibrated) for ~{}; measured: {} per read",
                scenario.id,
                read_work.ns_per_iter,
                fmt_ns(scenario.workload.read_work_ns() as f64),
                fmt_ns(read_work.check(iters))
            );
        }
    }

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
                for &l in scenario.workload.lineup() {
                    ops[s][l] = calibrate(subjects[l].as_ref(), scenario, read_iters[s], &board)?;
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
            let lineup = scenario.workload.lineup();
            for k in 0..lineup.len() {
                let l = lineup[(k + run) % lineup.len()];
                let work = Work {
                    ops: ops[s][l],
                    cap_ns,
                    read_iters: read_iters[s],
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
         throughput / baseline, within each run (above 1x shmsem is faster); read-heavy \
         scenarios: shmsem rwlock throughput / the others'",
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
        let lineup = scenario.workload.lineup();
        println!(
            "\n({}) {}: {} worker{}, each doing {}",
            scenario.id,
            scenario.title,
            scenario.workers(),
            if scenario.workers() == 1 { "" } else { "s" },
            scenario.workload.describe()
        );
        println!(
            "  {:<22} {:>10} {:>9} {:>17} {:>9} {:>10}",
            "lock", "N/worker", "M ops/s", "range", "ns/op", "max wait"
        );
        for &l in lineup {
            let subject = &subjects[l];
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
        let name = |l: usize| match scenario.workload {
            Workload::Increment => subjects[l].short(),
            Workload::ReadMostly { .. } => subjects[l].label(),
        };
        let first = lineup[0];
        let ratios: Vec<String> = lineup[1..]
            .iter()
            .map(|&l| {
                let per_run: Vec<f64> = samples[s][first]
                    .iter()
                    .zip(&samples[s][l])
                    .map(|(a, b)| a.mops() / b.mops())
                    .collect();
                format!("{} / {} = {:.2}x", name(first), name(l), median(per_run))
            })
            .collect();
        println!("  {}", ratios.join(", "));
    }

    // The summary: throughput, scenarios x locks ("-": not in that scenario's lineup).
    let label_width = SCENARIOS
        .iter()
        .map(|scenario| scenario.id.len() + scenario.title.len() + 3)
        .fold(34, usize::max);
    let widths: Vec<usize> = subjects.iter().map(|x| x.short().len().max(10)).collect();
    println!("\nsummary: M ops/s (median)");
    print!("  {:<label_width$}", "scenario");
    for (subject, width) in subjects.iter().zip(&widths) {
        print!(" {:>width$}", subject.short());
    }
    println!();
    for (s, scenario) in SCENARIOS.iter().enumerate() {
        let lineup = scenario.workload.lineup();
        print!(
            "  {:<label_width$}",
            format!("({}) {}", scenario.id, scenario.title)
        );
        for (l, width) in widths.iter().enumerate() {
            let cell = if lineup.contains(&l) {
                fmt_mops(summary[s][l])
            } else {
                "-".into()
            };
            print!(" {cell:>width$}");
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
    let tally = |read_heavy: bool| {
        let runs = SCENARIOS
            .iter()
            .zip(&samples)
            .filter(|(scenario, _)| {
                matches!(scenario.workload, Workload::ReadMostly { .. }) == read_heavy
            })
            .flat_map(|(_, cells)| cells.iter().flatten());
        runs.fold((0u64, 0u64), |(ops, writes), x| {
            (ops + x.ops, writes + x.writes)
        })
    };
    let (checked, _) = tally(false);
    let (rw_ops, rw_writes) = tally(true);
    println!("\nevery run's counter checked exact ({checked} increments in all)");
    println!(
        "read-heavy runs: every write count checked exact ({rw_writes} writes in all), and \
         none of their {} reads and {rw_writes} writes found the record torn; took {:.0?}",
        rw_ops - rw_writes,
        started.elapsed()
    );
    if config.quick {
        println!("(--quick: 1 run of {QUICK_OPS} ops per worker: a smoke test, not a measurement)");
    }
    drop(subjects); // removes the System V objects and the temp file (also on `?` above)
    Ok(())
}
