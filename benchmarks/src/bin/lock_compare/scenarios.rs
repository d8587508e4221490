//! The scenarios: how many processes and threads use a lock, doing what, and which locks
//! run them (the rows of the tables).

use shmsem_benchmarks::fmt;

use crate::locks::{
    FLOCK, PTHREAD, PTHREAD_RW, RAW_SEMOP, RAW_SYNC, SEM_T, SHMSEM, SHMSEM_RW, SYSV_IPC,
};
use crate::runner::Subject;

/// One way of using a lock: how many processes, how many threads in each, doing what.
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    pub procs: usize,
    pub threads: usize,
    /// Time every acquisition (for the max wait)? Off for the uncontended pair, whose
    /// ns/op would otherwise include two clock reads.
    pub timed: bool,
    pub workload: Workload,
}

impl Scenario {
    /// A timed mutex scenario: every operation is an [`Workload::Increment`].
    const fn increment(
        id: &'static str,
        title: &'static str,
        procs: usize,
        threads: usize,
    ) -> Self {
        Scenario {
            id,
            title,
            procs,
            threads,
            timed: true,
            workload: Workload::Increment { work_ns: 0 },
        }
    }

    /// A timed mutex scenario of one thread per process whose workers, after each
    /// unlock, work about `work_ns` before they lock again.
    const fn increment_then_work(
        id: &'static str,
        title: &'static str,
        procs: usize,
        work_ns: u64,
    ) -> Self {
        Scenario {
            workload: Workload::Increment { work_ns },
            ..Scenario::increment(id, title, procs, 1)
        }
    }

    /// A timed read-heavy scenario ([`Workload::ReadMostly`]).
    const fn read_mostly(
        id: &'static str,
        title: &'static str,
        (procs, threads): (usize, usize),
        reads_per_mille: u64,
        read_work_ns: u64,
    ) -> Self {
        Scenario {
            workload: Workload::ReadMostly {
                reads_per_mille,
                read_work_ns,
            },
            ..Scenario::increment(id, title, procs, threads)
        }
    }

    /// The same scenario without a clock read per acquisition (no max wait).
    const fn untimed(self) -> Self {
        Scenario {
            timed: false,
            ..self
        }
    }

    pub fn workers(&self) -> usize {
        self.procs * self.threads
    }

    /// Is its fairness measured (a timed mutex scenario with more than one worker)?
    pub fn fairness(&self) -> bool {
        self.timed && matches!(self.workload, Workload::Increment { .. }) && self.workers() > 1
    }

    /// The subjects that run it: its workload's [`Workload::lineup`], without those that
    /// cannot ([`Subject::runs`]: Python without threads, or without an interpreter).
    pub fn lineup(&self, subjects: &[Box<dyn Subject>]) -> Vec<usize> {
        let lineup = self.workload.lineup().iter().copied();
        lineup.filter(|&l| subjects[l].runs(self)).collect()
    }
}

/// What each of a worker's operations does, and so which locks a scenario runs.
#[derive(Clone, Copy)]
pub enum Workload {
    /// Lock, `seq += 1`, unlock ([`crate::ops::Increment`]), then, if `work_ns` is not 0,
    /// about that long of [`crate::record::busy_work`] outside the lock: a worker that
    /// does something between its turns, as real ones do (in a bare loop, the best a lock
    /// can do is let one process keep it; with work between, a lock whose waiters take it
    /// promptly keeps both CPUs busy).
    Increment { work_ns: u64 },
    /// Out of every 1000 operations about this many read (read lock, check the record,
    /// then, if `read_work_ns` is not 0, about that long of [`crate::record::busy_work`]
    /// on the copy, unlock), the others write (write lock, rewrite the record, unlock),
    /// chosen by a per-worker xorshift ([`crate::ops::ReadMostly`]).
    ReadMostly {
        reads_per_mille: u64,
        read_work_ns: u64,
    },
}

impl Workload {
    /// The subjects (indices into [`crate::locks::subjects`]) that run this workload, in
    /// the order of the tables; the first is the one the ratios are taken of.
    pub fn lineup(self) -> &'static [usize] {
        match self {
            Workload::Increment { .. } => {
                &[SHMSEM, RAW_SEMOP, PTHREAD, RAW_SYNC, SEM_T, FLOCK, SYSV_IPC]
            }
            Workload::ReadMostly { .. } => &[SHMSEM_RW, SHMSEM, PTHREAD_RW, PTHREAD],
        }
    }

    /// Is this a read-heavy workload?
    pub fn is_read_heavy(self) -> bool {
        matches!(self, Workload::ReadMostly { .. })
    }

    /// What one operation is, for the scenario's heading.
    pub fn describe(self) -> String {
        match self {
            Workload::Increment { work_ns: 0 } => "lock, counter += 1, unlock".into(),
            Workload::Increment { work_ns } => format!(
                "lock, counter += 1, unlock, then ~{} of work",
                fmt::ns(work_ns as f64)
            ),
            Workload::ReadMostly {
                reads_per_mille,
                read_work_ns,
            } => {
                let reads = reads_per_mille as f64 / 10.0;
                let work = if read_work_ns == 0 {
                    String::new()
                } else {
                    format!(", ~{} of work on the copy", fmt::ns(read_work_ns as f64))
                };
                format!(
                    "{reads}%: read lock, check the record{work}, unlock; {}%: write lock, \
                     rewrite the record, unlock",
                    100.0 - reads
                )
            }
        }
    }

    /// How long each operation works (0: not at all): inside the read lock for a read of
    /// the read-heavy workload, after the unlock for an increment.
    pub fn work_ns(self) -> u64 {
        match self {
            Workload::Increment { work_ns } => work_ns,
            Workload::ReadMostly { read_work_ns, .. } => read_work_ns,
        }
    }
}

/// Every scenario, in the order of the tables.
pub const SCENARIOS: &[Scenario] = &[
    Scenario::increment("a", "1 process, uncontended", 1, 1).untimed(),
    Scenario::increment("b", "2 processes", 2, 1),
    Scenario::increment("c", "4 processes", 4, 1),
    Scenario::increment("d", "1 process x 4 threads", 1, 4),
    Scenario::increment("e", "2 processes x 2 threads", 2, 2),
    Scenario::increment_then_work("f", "2 processes, ~0.5 us of work between", 2, 500),
    Scenario::increment_then_work("g", "4 processes, ~0.5 us of work between", 4, 500),
    Scenario::read_mostly("h", "4 processes, 90% reads", (4, 1), 900, 0),
    Scenario::read_mostly("i", "2 processes x 2 threads, 90% reads", (2, 2), 900, 0),
    Scenario::read_mostly("j", "4 processes, 99% reads", (4, 1), 990, 0),
    Scenario::read_mostly(
        "k",
        "4 processes, 90% reads, ~2 us read section",
        (4, 1),
        900,
        2000,
    ),
    Scenario::increment("l", "8 processes", 8, 1),
];
