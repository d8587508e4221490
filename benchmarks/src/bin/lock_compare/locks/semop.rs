//! The kernel's own price: a raw System V semaphore (value 1), taken and given back with
//! two `libc::semop` calls with `SEM_UNDO`, as a C program would write them.

use shmsem::{Key, SemaphoreSet};
use shmsem_benchmarks::Res;
use shmsem_benchmarks::os::retry_eintr;

use super::cell::{CellRef, InPages};
use super::{Handle, Lock, report_removal};
use crate::record::Record;

/// A one-semaphore set (value 1); the record is in a shared mapping.
pub struct RawSemop {
    set: SemaphoreSet,
    pages: InPages<()>,
}

impl RawSemop {
    pub fn create() -> Res<Self> {
        let pages = InPages::new()?;
        let set = SemaphoreSet::create(Key::PRIVATE, 1, 0o600)?;
        let lock = RawSemop { set, pages }; // from here on, Drop removes the set
        lock.set.set_value(0, 1)?;
        Ok(lock)
    }
}

impl Drop for RawSemop {
    fn drop(&mut self) {
        report_removal("the raw semaphore set", self.set.remove());
    }
}

pub struct RawSemopHandle<'a> {
    id: i32,
    cell: CellRef<'a, ()>,
}

/// One `semop` of `delta` on semaphore 0 of set `id`, with `SEM_UNDO`.
fn semop1(id: i32, delta: i16) -> Res<()> {
    let mut op = libc::sembuf {
        sem_num: 0,
        sem_op: delta,
        sem_flg: libc::SEM_UNDO as i16,
    };
    // SAFETY: `op` is one initialised sembuf that outlives the call; the kernel only reads
    // it, and semaphore 0 exists in the one-semaphore set.
    retry_eintr("semop", || unsafe { libc::semop(id, &mut op, 1) }).map(drop)
}

impl Lock for RawSemop {
    type Handle<'a> = RawSemopHandle<'a>;

    fn handle(&self) -> Res<RawSemopHandle<'_>> {
        Ok(RawSemopHandle {
            id: self.set.id(),
            cell: self.pages.cell(),
        })
    }
}

impl Handle for RawSemopHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        semop1(self.id, -1)?;
        // SAFETY: the semaphore is held, so this is the only access to the record, which
        // lives as long as the lock ('a).
        let r = f(unsafe { &mut *self.cell.record() });
        semop1(self.id, 1)?;
        Ok(r)
    }
}
