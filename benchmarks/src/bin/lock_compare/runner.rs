//! One run of one (scenario, lock) cell: fork the workers, let them go together, wait,
//! collect their reports from the board and check the record (exact counts, nothing torn).

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use shmsem_benchmarks::Res;
use shmsem_benchmarks::pages::SharedPages;
use shmsem_benchmarks::procs::{Gate, Team};

use crate::locks::Lock;
use crate::ops::{Increment, ReadMostly, run_op};
use crate::record::Record;
use crate::scenarios::{Scenario, Workload};
use crate::waits::{BUCKETS, Fairness};

/// Workers (processes x threads) one scenario may have.
const MAX_WORKERS: usize = 64;

/// The names a lock goes by in the tables.
#[derive(Clone, Copy)]
pub struct Names {
    /// In its table row.
    pub name: &'static str,
    /// In the mutex scenarios' ratio lines and the summary's columns.
    pub short: &'static str,
    /// In the read-heavy scenarios' ratio lines (says mutex or rwlock).
    pub label: &'static str,
}

impl Names {
    pub const fn new(name: &'static str, short: &'static str, label: &'static str) -> Self {
        Names { name, short, label }
    }
}

/// A lock behind one object-safe face, so the benchmark can interleave them.
pub trait Subject {
    /// Its index in [`crate::locks::subjects`].
    fn index(&self) -> usize;
    fn names(&self) -> &Names;
    /// Does it run `scenario` (if the workload's lineup has it)? Yes, unless it says
    /// otherwise.
    fn runs(&self, _scenario: &Scenario) -> bool {
        true
    }
    /// A line for the heading (where it comes from, or why it does not run).
    fn note(&self) -> Option<String> {
        None
    }
    /// One run of `scenario`, each worker doing `work`.
    fn run(&self, scenario: &Scenario, work: Work, board: &Board) -> Res<Sample>;
}

/// `lock`, the subject at `index`, named `names`.
pub fn subject(lock: impl Lock + 'static, index: usize, names: Names) -> Box<dyn Subject> {
    Box::new(Named { lock, index, names })
}

struct Named<L> {
    lock: L,
    index: usize,
    names: Names,
}

impl<L: Lock> Subject for Named<L> {
    fn index(&self) -> usize {
        self.index
    }

    fn names(&self) -> &Names {
        &self.names
    }

    fn run(&self, scenario: &Scenario, work: Work, board: &Board) -> Res<Sample> {
        run_lock(&self.lock, self.names.name, scenario, work, board)
    }
}

/// How much one worker does in a run: `ops` operations (lock+unlock pairs), unless
/// `cap_ns` (from its start) runs out first; each operation also runs `work_iters`
/// iterations of [`crate::record::busy_work`] (0: none): a read inside its read lock, an
/// increment after its unlock.
#[derive(Clone, Copy)]
pub struct Work {
    pub ops: u64,
    pub cap_ns: u64,
    pub work_iters: u64,
}

/// What one run measured.
#[derive(Clone, Copy)]
pub struct Sample {
    /// Operations done (reads and writes), all workers together.
    pub ops: u64,
    /// Of those, writes (increments in the mutex scenarios), found in the record's `seq`.
    pub writes: u64,
    /// Did some worker stop at the time cap before doing all its operations?
    pub capped: bool,
    /// First worker's start to last worker's end.
    pub window_ns: u64,
    /// The longest single acquisition of any worker (timed scenarios only).
    pub max_wait_ns: Option<u64>,
    /// The waits' median, the worst, and the spread of turns (timed mutex scenarios).
    pub fairness: Option<Fairness>,
}

impl Sample {
    /// Throughput: M operations per second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 * 1e3 / self.window_ns.max(1) as f64
    }
}

/// What one worker thread reports at the end of its run.
#[derive(Clone, Copy, Default)]
pub struct Report {
    pub start_ns: u64,
    pub end_ns: u64,
    /// Its longest single acquisition (0 when not timed).
    pub max_wait_ns: u64,
    /// Writes (or increments) done.
    pub writes: u64,
    /// Operations that found the record torn (a mix of two writes).
    pub torn: u64,
    /// Operations done.
    pub done: u64,
    /// Operations done when every worker had started (timed runs; `u64::MAX`: not
    /// seen before the first worker finished).
    pub at_all: u64,
    /// Operations done when the first worker had finished (timed runs; else `done`).
    pub at_first: u64,
    /// The sum of its waits (timed runs).
    pub wait_sum_ns: u64,
}

/// One worker's [`Report`] and its waits' histogram, in shared memory.
#[repr(C, align(64))]
pub struct Slot {
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    max_wait_ns: AtomicU64,
    writes: AtomicU64,
    torn: AtomicU64,
    at_all: AtomicU64,
    at_first: AtomicU64,
    wait_sum_ns: AtomicU64,
    /// Its waits ([`crate::waits::bucket`]); all zero when not timed.
    hist: [AtomicU32; BUCKETS],
    /// Written last (Release), read first (Acquire); 0: no report.
    done: AtomicU64,
}

impl Slot {
    /// Publishes `r` (from the worker; `done` last).
    pub fn store(&self, r: Report) {
        self.start_ns.store(r.start_ns, Ordering::Relaxed);
        self.end_ns.store(r.end_ns, Ordering::Relaxed);
        self.max_wait_ns.store(r.max_wait_ns, Ordering::Relaxed);
        self.writes.store(r.writes, Ordering::Relaxed);
        self.torn.store(r.torn, Ordering::Relaxed);
        self.at_all.store(r.at_all, Ordering::Relaxed);
        self.at_first.store(r.at_first, Ordering::Relaxed);
        self.wait_sum_ns.store(r.wait_sum_ns, Ordering::Relaxed);
        self.done.store(r.done, Ordering::Release);
    }

    /// Publishes the worker's waits (before [`Slot::store`], which publishes them).
    pub fn store_waits(&self, hist: &[u32; BUCKETS]) {
        for (slot, &n) in self.hist.iter().zip(hist) {
            slot.store(n, Ordering::Relaxed);
        }
    }

    /// Adds the worker's waits to `into` (in the parent, after [`Slot::load`]).
    fn add_waits(&self, into: &mut [u64]) {
        for (total, n) in into.iter_mut().zip(&self.hist) {
            *total += u64::from(n.load(Ordering::Relaxed));
        }
    }

    /// The report (in the parent, after the worker exited; `done` first).
    fn load(&self) -> Report {
        let done = self.done.load(Ordering::Acquire);
        Report {
            start_ns: self.start_ns.load(Ordering::Relaxed),
            end_ns: self.end_ns.load(Ordering::Relaxed),
            max_wait_ns: self.max_wait_ns.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            torn: self.torn.load(Ordering::Relaxed),
            at_all: self.at_all.load(Ordering::Relaxed),
            at_first: self.at_first.load(Ordering::Relaxed),
            wait_sum_ns: self.wait_sum_ns.load(Ordering::Relaxed),
            done,
        }
    }
}

/// The workers' reports: a shared mapping that starts with a cache line of its own
/// ([`Window`]: when all workers competed), then [`MAX_WORKERS`] slots.
pub struct Board(SharedPages);

/// When all of a run's workers competed: from the last one's start to the first one's
/// end. Every timed worker counts itself in at its start, and after each operation looks
/// at these words (relaxed loads of a line written only at starts and at the first end)
/// until it has seen both moments, to count its operations in between: its turns.
#[repr(C)]
pub struct Window {
    /// Workers in the run (set by the parent before it forks them).
    pub workers: AtomicU64,
    /// Workers that have started.
    pub started: AtomicU64,
    /// The first finisher's end time (0 while none has finished).
    pub first_end: AtomicU64,
}

/// Where the slots start in the board's mapping.
const SLOTS_AT: usize = 64;

impl Board {
    pub fn new() -> Res<Self> {
        Ok(Board(SharedPages::new(
            SLOTS_AT + MAX_WORKERS * size_of::<Slot>(),
        )?))
    }

    /// The run's [`Window`].
    pub fn window(&self) -> &Window {
        // SAFETY: the mapping starts with SLOTS_AT >= size_of::<Window>() bytes of its
        // own, page-aligned, zero-filled (valid atomics), alive as long as `self`.
        unsafe { &*self.0.ptr().cast::<Window>() }
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(i < MAX_WORKERS);
        // SAFETY: the mapping holds MAX_WORKERS slots from SLOTS_AT on, aligned for Slot
        // (page-aligned mapping, SLOTS_AT and Slot's size multiples of its alignment) and
        // zero-filled (a valid Slot: atomics), and lives as long as `self`.
        unsafe { &*self.0.ptr().add(SLOTS_AT).cast::<Slot>().add(i) }
    }

    fn clear(&self, n: usize) {
        let window = self.window();
        window.workers.store(n as u64, Ordering::Relaxed);
        window.started.store(0, Ordering::Relaxed);
        window.first_end.store(0, Ordering::Relaxed);
        for i in 0..n {
            self.slot(i).store_waits(&[0; BUCKETS]);
            self.slot(i).store(Report::default());
        }
    }
}

/// One run of `scenario` on `lock` (named `name` in errors).
fn run_lock<L: Lock>(
    lock: &L,
    name: &str,
    scenario: &Scenario,
    work: Work,
    board: &Board,
) -> Res<Sample> {
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
    Team::run(scenario.procs, |proc_index, gate| {
        worker_process(lock, scenario, work, board, proc_index, gate)
    })?;

    let mut start = u64::MAX;
    let mut end = 0;
    let mut max_wait = 0;
    let mut ops = 0;
    let mut expected = 0;
    let mut torn = 0;
    let mut capped = false;
    let mut hist = vec![0u64; BUCKETS];
    let mut turns = Vec::with_capacity(workers);
    let mut mean_waits = Vec::with_capacity(workers);
    for i in 0..workers {
        let r = board.slot(i).load();
        if r.done == 0 || r.done > work.ops || r.writes > r.done {
            return Err(format!("{name}, ({}): worker {i} did not report", scenario.id).into());
        }
        ops += r.done;
        expected += r.writes;
        torn += r.torn;
        capped |= r.done < work.ops;
        start = start.min(r.start_ns);
        end = end.max(r.end_ns);
        max_wait = max_wait.max(r.max_wait_ns);
        board.slot(i).add_waits(&mut hist);
        turns.push(r.at_first.checked_sub(r.at_all));
        mean_waits.push(r.wait_sum_ns as f64 / r.done as f64);
    }
    let got = lock.record()?;
    let what = match scenario.workload {
        Workload::Increment { .. } => "the counter",
        Workload::ReadMostly { .. } => "the record's write count",
    };
    if got.seq != expected {
        return Err(format!(
            "WRONG COUNT: {} in scenario ({}) {}: {what} is {}, expected {expected} (the \
             writes its {workers} workers did): the lock did not exclude",
            name, scenario.id, scenario.title, got.seq
        )
        .into());
    }
    let whole = match scenario.workload {
        Workload::Increment { .. } => true, // only `seq` is written
        Workload::ReadMostly { .. } => got.is_whole(),
    };
    if torn > 0 || !whole {
        return Err(format!(
            "TORN RECORD: {} in scenario ({}) {}: {torn} operations found the record half \
             written, and it is {got:?} at the end: the lock let someone in beside a writer",
            name, scenario.id, scenario.title
        )
        .into());
    }
    Ok(Sample {
        ops,
        writes: expected,
        capped,
        window_ns: end.saturating_sub(start),
        max_wait_ns: scenario.timed.then_some(max_wait),
        fairness: scenario
            .fairness()
            .then(|| Fairness::new(&hist, max_wait, &mean_waits, &turns)),
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
                let window = board.window();
                s.spawn(move || -> Res<()> {
                    barrier.wait();
                    gate.wait()?;
                    match scenario.workload {
                        Workload::Increment { .. } => {
                            let op = Increment {
                                work_iters: work.work_iters,
                            };
                            run_op(&mut handle, op, scenario.timed, work, slot, window)
                        }
                        Workload::ReadMostly {
                            reads_per_mille, ..
                        } => {
                            let op = ReadMostly::new(worker, reads_per_mille, work.work_iters);
                            run_op(&mut handle, op, scenario.timed, work, slot, window)
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
