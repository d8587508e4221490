//! Anonymous shared mappings: memory that every worker forked after it was made shares
//! with the parent, with no System V object involved (where competitors keep their locks,
//! and workers their reports).

use std::ptr::NonNull;

use crate::Res;

/// An anonymous `MAP_SHARED` mapping: zero-filled, page-aligned, shared with every child
/// forked after it was made; unmapped on drop.
pub struct SharedPages {
    ptr: NonNull<u8>,
    len: usize,
}

impl SharedPages {
    /// At least `len` bytes (whole pages), zero-filled.
    pub fn new(len: usize) -> Res<Self> {
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

    /// The first byte (page-aligned).
    #[inline]
    pub fn ptr(&self) -> *mut u8 {
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
