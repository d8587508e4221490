//! `raw_sync`'s `Mutex`, as that crate's users write it: `Mutex::new` in shared memory by
//! the parent, `Mutex::from_existing` in every worker (after the fork), `lock()` giving a
//! guard that derefs to the data pointer and releases on drop. Underneath: a
//! `PTHREAD_PROCESS_SHARED` `pthread_mutex_t`, not robust (a holder that dies leaves it
//! locked), in an anonymous shared mapping with the record right behind it.

use raw_sync::locks::{LockImpl, LockInit, Mutex};

use shmsem_benchmarks::Res;

use super::cell::{CellRef, InPages};
use super::{Handle, Lock};
use crate::record::Record;

/// Room for the mutex as raw_sync lays it out (a `pthread_mutex_t` at the first
/// pointer-aligned byte): checked against `Mutex::size_of` on creation.
#[repr(C, align(64))]
pub struct Room([u8; 64]);

/// The mapping with raw_sync's mutex initialised in it. raw_sync never destroys it
/// (its `Drop` does nothing); the mapping is unmapped when this drops.
pub struct RawSync {
    pages: InPages<Room>,
}

/// raw_sync's error (a `Box<dyn Error>`, neither `Send` nor `Sync`) as ours.
fn error(what: &str, e: Box<dyn std::error::Error>) -> Box<dyn std::error::Error + Send + Sync> {
    format!("raw_sync {what}: {e}").into()
}

impl RawSync {
    pub fn create() -> Res<Self> {
        let pages = InPages::<Room>::new()?;
        let cell = pages.cell();
        let room = cell.lock().cast::<u8>();
        if Mutex::size_of(Some(room)) > size_of::<Room>() {
            return Err("raw_sync's Mutex does not fit its room".into());
        }
        // SAFETY: `room` is zero-filled, aligned memory of the fresh mapping that nothing
        // else uses, large enough (checked); the data pointer is the record behind it.
        let (mutex, _) = unsafe { Mutex::new(room, cell.record().cast()) }
            .map_err(|e| error("Mutex::new", e))?;
        drop(mutex); // the handle only: the mutex stays in the mapping
        Ok(RawSync { pages })
    }
}

/// One worker's `Mutex` handle over the shared one.
pub struct RawSyncHandle<'a> {
    mutex: Box<dyn LockImpl>,
    _cell: CellRef<'a, Room>,
}

// SAFETY: the handle points at a process-shared pthread mutex in a mapping the lock keeps
// alive for 'a; such a mutex may be used from any thread (raw_sync's type is not `Send`
// only because it holds raw pointers).
unsafe impl Send for RawSyncHandle<'_> {}

impl Lock for RawSync {
    type Handle<'a> = RawSyncHandle<'a>;

    fn handle(&self) -> Res<RawSyncHandle<'_>> {
        let cell = self.pages.cell();
        // SAFETY: the mutex was initialised there by `create`, and the mapping outlives
        // the handle ('a).
        let (mutex, _) = unsafe { Mutex::from_existing(cell.lock().cast(), cell.record().cast()) }
            .map_err(|e| error("Mutex::from_existing", e))?;
        Ok(RawSyncHandle { mutex, _cell: cell })
    }
}

impl Handle for RawSyncHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        let guard = self.mutex.lock().map_err(|e| error("lock", e))?;
        // SAFETY: the guard holds the mutex, so this is the only access to the record
        // its data pointer points at (alive for 'a).
        let r = f(unsafe { &mut *(*guard).cast::<Record>() });
        drop(guard); // pthread_mutex_unlock (raw_sync panics if that fails)
        Ok(r)
    }
}
