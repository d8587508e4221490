//! The competitors that keep their lock in memory: the lock's state and the record side
//! by side in an anonymous shared mapping (a [`Cell`]), and, for a lock whose whole state
//! is in the cell ([`CellLock`]: the pthread locks, `sem_t`), its [`Lock`] and [`Handle`]
//! written once.

use std::marker::PhantomData;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::pages::SharedPages;

use super::{Handle, Lock};
use crate::record::Record;

/// A lock's state `L` (`()` for a lock that lives elsewhere) with the record right
/// behind it.
#[repr(C)]
struct Cell<L> {
    lock: L,
    record: Record,
}

/// A [`Cell`] alone in an anonymous shared mapping (zero-filled, page-aligned), which
/// every worker forked after it was made shares.
pub struct InPages<L> {
    pages: SharedPages,
    _cell: PhantomData<Cell<L>>,
}

impl<L> InPages<L> {
    pub fn new() -> Res<Self> {
        Ok(InPages {
            pages: SharedPages::new(size_of::<Cell<L>>())?,
            _cell: PhantomData,
        })
    }

    /// A pointer to the cell, for one worker (or for setting the lock up).
    pub fn cell(&self) -> CellRef<'_, L> {
        CellRef {
            cell: self.pages.ptr().cast(),
            _pages: PhantomData,
        }
    }
}

/// A pointer to the [`Cell`] of an [`InPages`] that lives for `'a`.
pub struct CellRef<'a, L> {
    cell: *mut Cell<L>,
    _pages: PhantomData<&'a InPages<L>>,
}

// SAFETY: the pointer is into a MAP_SHARED mapping that the lock (borrowed for 'a) keeps
// alive; the lock state there is process-shared (so certainly thread-safe), and the
// record is only touched while that lock is held.
unsafe impl<L> Send for CellRef<'_, L> {}

impl<L> CellRef<'_, L> {
    /// The lock state (aligned, inside the live mapping).
    pub fn lock(&self) -> *mut L {
        // SAFETY: a field pointer into the live cell; nothing is read.
        unsafe { &raw mut (*self.cell).lock }
    }

    /// The record (aligned, inside the live mapping); accessed only under the lock.
    pub fn record(&self) -> *mut Record {
        // SAFETY: as in `lock`.
        unsafe { &raw mut (*self.cell).record }
    }
}

/// A process-shared lock whose whole state is a `Self` in the cell.
///
/// # Safety
///
/// `lock` must exclude every other `lock` and `read_lock` until `unlock`, and `read_lock`
/// every `lock`, across processes: the record is accessed on that promise.
pub unsafe trait CellLock: Sized + Sync {
    /// Initialises the state at `at`, zero-filled and aligned memory nothing else uses.
    ///
    /// # Safety
    /// As said; once.
    unsafe fn init(at: *mut Self) -> Res<()>;

    /// # Safety
    /// `at` was initialised by `init`, and nobody uses it any more.
    unsafe fn destroy(at: *mut Self);

    /// Takes the lock exclusively.
    ///
    /// # Safety
    /// `at` was initialised by `init` and is not destroyed.
    unsafe fn lock(at: *mut Self) -> Res<()>;

    /// Takes the lock shared (a plain mutex: exclusively, this default).
    ///
    /// # Safety
    /// As for `lock`.
    unsafe fn read_lock(at: *mut Self) -> Res<()> {
        // SAFETY: the caller's promise.
        unsafe { Self::lock(at) }
    }

    /// Releases the lock (taken either way).
    ///
    /// # Safety
    /// As for `lock`, and this thread holds it.
    unsafe fn unlock(at: *mut Self) -> Res<()>;
}

/// A [`CellLock`] in its cell: initialised on creation, destroyed on drop.
pub struct CellLocked<L: CellLock>(InPages<L>);

impl<L: CellLock> CellLocked<L> {
    pub fn create() -> Res<Self> {
        let pages = InPages::<L>::new()?;
        // SAFETY: a fresh, zero-filled, page-aligned mapping that nothing else uses yet.
        unsafe { L::init(pages.cell().lock())? };
        Ok(CellLocked(pages))
    }
}

impl<L: CellLock> Drop for CellLocked<L> {
    fn drop(&mut self) {
        // SAFETY: initialised in `create`; no worker uses it any more (all have exited);
        // the mapping is unmapped after this.
        unsafe { L::destroy(self.0.cell().lock()) };
    }
}

impl<L: CellLock> Lock for CellLocked<L> {
    type Handle<'a>
        = CellRef<'a, L>
    where
        L: 'a;

    fn handle(&self) -> Res<CellRef<'_, L>> {
        Ok(self.0.cell())
    }
}

impl<L: CellLock> Handle for CellRef<'_, L> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        // SAFETY: initialised by `CellLocked::create`, alive as long as the lock ('a).
        unsafe { L::lock(self.lock())? };
        // SAFETY: the lock is held exclusively: this is the only access to the record.
        let r = f(unsafe { &mut *self.record() });
        // SAFETY: as for `lock`, and we hold it.
        unsafe { L::unlock(self.lock())? };
        Ok(r)
    }

    fn with_read_lock<R>(&mut self, f: impl FnOnce(&Record) -> R) -> Res<R> {
        // SAFETY: as in `with_lock`.
        unsafe { L::read_lock(self.lock())? };
        // SAFETY: the lock is held shared: nobody writes the record meanwhile.
        let r = f(unsafe { &*self.record() });
        // SAFETY: as in `with_lock`.
        unsafe { L::unlock(self.lock())? };
        Ok(r)
    }
}
