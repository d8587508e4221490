//! The locks under test: the [`Lock`] and [`Handle`] traits every competitor implements,
//! one module per competitor, and the list of them ([`subjects`]) whose order the
//! scenarios' lineups and the summary's columns follow, with the names the tables use.

mod cell;
mod flock;
mod posix_sem;
mod pthread;
mod raw_sync;
mod semop;
mod shmsem;
mod sysv_ipc;

use shmsem_benchmarks::Res;

use crate::record::Record;
use crate::runner::{Names, Subject, subject};

/// A lock under test: made by the parent before it forks (so every worker process
/// inherits it), removed when dropped. Guards a [`Record`] in shared memory.
pub trait Lock: Sync {
    /// What one worker thread uses. Made in the worker process, after the fork.
    type Handle<'a>: Handle + Send
    where
        Self: 'a;
    fn handle(&self) -> Res<Self::Handle<'_>>;

    /// The record, read (under the lock) while no worker runs.
    fn record(&self) -> Res<Record> {
        self.handle()?.with_lock(|record| *record)
    }

    /// Sets the record (under the lock), while no worker runs.
    fn set_record(&self, value: Record) -> Res<()> {
        self.handle()?.with_lock(|record| *record = value)
    }
}

/// One worker's access to a [`Lock`].
pub trait Handle {
    /// Takes the lock (exclusive), runs `f` on the record, releases the lock.
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R>;

    /// Takes the lock shared, runs `f` on the record, releases it. A reader-writer lock
    /// takes its read lock; a plain mutex just locks (this default).
    fn with_read_lock<R>(&mut self, f: impl FnOnce(&Record) -> R) -> Res<R> {
        self.with_lock(|record| f(record))
    }
}

/// Reports a failure to remove a lock's objects at the end (nothing else to do then).
fn report_removal(what: &str, result: Result<(), ::shmsem::Error>) {
    if let Err(e) = result {
        eprintln!("{}: removing {what}: {e}", shmsem_benchmarks::program());
    }
}

// Indices into `subjects()`, as the scenarios' lineups name them.
pub const SHMSEM: usize = 0;
pub const RAW_SEMOP: usize = 1;
pub const PTHREAD: usize = 2;
pub const RAW_SYNC: usize = 3;
pub const SEM_T: usize = 4;
pub const FLOCK: usize = 5;
pub const SYSV_IPC: usize = 6;
pub const SHMSEM_RW: usize = 7;
pub const PTHREAD_RW: usize = 8;

/// Every lock's names (in its table row; in the mutex scenarios' ratio lines and the
/// summary's columns; in the read-heavy scenarios' ratio lines), by index.
const NAMES: [Names; 9] = [
    Names::new("shmsem SharedMutex", "shmsem", "shmsem mutex"),
    Names::new("raw semop (SEM_UNDO)", "raw semop", "raw semop"),
    Names::new("pthread robust mutex", "pthread", "pthread mutex"),
    Names::new("raw_sync Mutex", "raw_sync", "raw_sync"),
    Names::new("POSIX sem_t", "sem_t", "sem_t"),
    Names::new("flock (temp file)", "flock", "flock"),
    Names::new("sysv_ipc (Python)", "sysv_ipc", "sysv_ipc"),
    Names::new("shmsem SharedRwLock", "shmsem rw", "shmsem rwlock"),
    Names::new("pthread rwlock", "pthread rw", "pthread rwlock"),
];

/// Every lock, in the order of the index constants above (also the summary's columns).
/// Made one by one: if one fails, those already made are removed again as the vector
/// drops.
pub fn subjects() -> Res<Vec<Box<dyn Subject>>> {
    let subjects = vec![
        subject(shmsem::mutex()?, SHMSEM, NAMES[SHMSEM]),
        subject(semop::RawSemop::create()?, RAW_SEMOP, NAMES[RAW_SEMOP]),
        subject(pthread::Pthread::create()?, PTHREAD, NAMES[PTHREAD]),
        subject(raw_sync::RawSync::create()?, RAW_SYNC, NAMES[RAW_SYNC]),
        subject(posix_sem::PosixSem::create()?, SEM_T, NAMES[SEM_T]),
        subject(flock::Flock::create()?, FLOCK, NAMES[FLOCK]),
        Box::new(sysv_ipc::SysvIpc::new(NAMES[SYSV_IPC])?),
        subject(shmsem::rwlock()?, SHMSEM_RW, NAMES[SHMSEM_RW]),
        subject(pthread::PthreadRw::create()?, PTHREAD_RW, NAMES[PTHREAD_RW]),
    ];
    assert_eq!(subjects.len(), NAMES.len());
    for (index, subject) in subjects.iter().enumerate() {
        assert_eq!(
            subject.index(),
            index,
            "subject index constants out of order"
        );
    }
    Ok(subjects)
}
