//! [`SegmentView`]: what a managed object shows of its segment. Safe to hand out because
//! it cannot touch the bytes: the payload is reached only through a lock guard, and a
//! safe byte-level write beside a guard's `&mut T` would be undefined behaviour reachable
//! from safe code. The raw segment is still there for those who take the responsibility
//! ([`SegmentView::as_segment`], `unsafe`), as memmap2 draws the line.

use std::fmt;

use crate::error::Result;
use crate::raw::key::Key;
use crate::raw::shm::{Segment, SegmentInfo};

/// A managed object's segment, for inspection: ids, size, the kernel's record. No access
/// to the bytes (see [`as_segment`](SegmentView::as_segment)).
#[derive(Clone, Copy)]
pub struct SegmentView<'a> {
    seg: &'a Segment,
}

impl<'a> SegmentView<'a> {
    pub(crate) fn new(seg: &'a Segment) -> Self {
        SegmentView { seg }
    }

    /// The segment's IPC id (`ipcs -m`).
    pub fn id(&self) -> i32 {
        self.seg.id()
    }

    /// The key it was made with.
    pub fn key(&self) -> Key {
        self.seg.key()
    }

    /// Its size in bytes (`shm_segsz`: header and payload).
    pub fn len(&self) -> usize {
        self.seg.len()
    }

    /// Never: a managed segment holds at least its header. (For `len` without
    /// `is_empty`, clippy's sake.)
    pub fn is_empty(&self) -> bool {
        self.seg.is_empty()
    }

    /// Is this handle's attach read-only (`SHM_RDONLY`)?
    pub fn is_read_only(&self) -> bool {
        self.seg.is_read_only()
    }

    /// Everything `shmctl(IPC_STAT)` reports.
    ///
    /// # Errors
    /// `Removed` once the segment is gone.
    pub fn info(&self) -> Result<SegmentInfo> {
        self.seg.info()
    }

    /// The raw segment, bytes and all.
    ///
    /// # Safety
    /// While any guard of this object lives in this process, nothing may be written
    /// through the returned segment (and no bytes of the payload read while a guard that
    /// gives `&mut T` lives): the guard's reference must be the only access, as Rust's
    /// aliasing rules require. Writing the header's live words breaks the object's
    /// protocol for every process (docs/FORMAT.md); that is only for tests of hostile
    /// input.
    pub unsafe fn as_segment(&self) -> &'a Segment {
        self.seg
    }
}

impl fmt::Debug for SegmentView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentView")
            .field("id", &self.id())
            .field("key", &self.key())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The accessors every managed handle has, for a type with a field `pair: Pair`: `key`,
/// `shm_id`, `sem_id` and `segment`, and the ownership calls that change both objects
/// (`set_owner`, `set_mode`, `set_owner_and_mode`), whose errors name `$name::call`.
/// Expanded inside each handle's `impl` (`pair_accessors!("SharedMutex")`), so that the
/// block (and its docs) exists once.
macro_rules! pair_accessors {
    ($name:literal) => {
        /// The key both objects share.
        pub fn key(&self) -> $crate::Key {
            self.pair.seg.key()
        }

        /// The segment's IPC id (`ipcs -m`).
        pub fn shm_id(&self) -> i32 {
            self.pair.seg.id()
        }

        /// The semaphore set's IPC id (`ipcs -s`).
        pub fn sem_id(&self) -> i32 {
            self.pair.sems.id()
        }

        /// The segment (header and payload), for inspection: ids, size, the kernel's
        /// record. Its bytes are reached only through a guard (or, unsafely,
        /// [`SegmentView::as_segment`](crate::SegmentView::as_segment)).
        pub fn segment(&self) -> $crate::SegmentView<'_> {
            $crate::managed::view::SegmentView::new(&self.pair.seg)
        }

        $crate::raw::perm::perm_setters!(
            $name,
            "both objects (segment and semaphore set)",
            "A supervisor running as root creates the object, then gives it to the \
             service user that will use it; handles that exist keep working. The segment \
             changes first, then the set; if the set refuses, the segment gets its old \
             owner and mode back, so a failed call changes neither.",
            [.pair]
        );
    };
}
pub(crate) use pair_accessors;

/// `Debug` (and, with `Display`, `Display`) for a guard type: those of the value it
/// derefs to, as std's guards format. `deref_fmt!(SharedMutexGuard, Debug, Display)`.
macro_rules! deref_fmt {
    ($guard:ident, $($trait:ident),+) => {
        $(
            impl<T: bytemuck::Pod + std::fmt::$trait> std::fmt::$trait for $guard<'_, T> {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    std::fmt::$trait::fmt(&**self, f)
                }
            }
        )+
    };
}
pub(crate) use deref_fmt;
