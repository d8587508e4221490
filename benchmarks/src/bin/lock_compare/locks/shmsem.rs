//! The subjects: shmsem's `SharedMutex` (the mutex scenarios) and `SharedRwLock` (the
//! read-heavy ones), each guarding the record in its own segment, with its own semaphore
//! set, under `Key::PRIVATE`.

use shmsem::{Key, SharedMutex, SharedRwLock};
use shmsem_benchmarks::Res;

use super::{Handle, Lock, report_removal};
use crate::record::Record;

/// A shmsem lock of the record, removed (segment and semaphore set) when dropped.
pub struct Shmsem<T> {
    lock: T,
    remove: fn(&T) -> Result<(), shmsem::Error>,
    what: &'static str,
}

impl<T> Drop for Shmsem<T> {
    fn drop(&mut self) {
        report_removal(self.what, (self.remove)(&self.lock));
    }
}

/// A `SharedMutex<Record>`.
pub fn mutex() -> Res<Shmsem<SharedMutex<Record>>> {
    Ok(Shmsem {
        lock: SharedMutex::create(Key::PRIVATE, Record::at(0))?,
        remove: SharedMutex::remove,
        what: "the SharedMutex",
    })
}

/// A `SharedRwLock<Record>` (a three-semaphore set).
pub fn rwlock() -> Res<Shmsem<SharedRwLock<Record>>> {
    Ok(Shmsem {
        lock: SharedRwLock::create(Key::PRIVATE, Record::at(0))?,
        remove: SharedRwLock::remove,
        what: "the SharedRwLock",
    })
}

impl<T: Sync> Lock for Shmsem<T>
where
    for<'a> &'a T: Handle + Send,
{
    type Handle<'a>
        = &'a T
    where
        T: 'a;

    fn handle(&self) -> Res<&T> {
        Ok(&self.lock)
    }
}

impl Handle for &SharedMutex<Record> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        let mut guard = self.lock().map_err(shmsem::Error::from)?;
        Ok(f(&mut guard))
    }
}

impl Handle for &SharedRwLock<Record> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        let mut guard = self.write().map_err(shmsem::Error::from)?;
        Ok(f(&mut guard))
    }

    fn with_read_lock<R>(&mut self, f: impl FnOnce(&Record) -> R) -> Res<R> {
        let guard = self.read().map_err(shmsem::Error::from)?;
        Ok(f(&guard))
    }
}
