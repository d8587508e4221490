//! The raw shared-memory layer: [`Segment`] is one attached System V segment
//! (`shmget`/`shmat`/`shmdt`/`shmctl`), with nothing added, so it opens what C, Python or
//! Perl programs made.

use std::ptr::NonNull;
use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result, Target, cvt, last_errno};
use crate::raw::key::Key;
use crate::raw::sys;

/// One System V shared-memory segment, attached to this process.
///
/// This is the raw layer: the bytes are exactly the segment's bytes, no header, no lock.
/// Nothing synchronises access to them; guard them with a
/// [`SemaphoreSet`](crate::SemaphoreSet), or use [`SharedMutex`](crate::SharedMutex),
/// which does both.
///
/// # Safety
///
/// The memory is shared with every process that attaches the segment, so Rust cannot see
/// who else writes it. The safe accessors ([`read_exact_at`](Segment::read_exact_at),
/// [`write_all_at`](Segment::write_all_at)) copy bytes in and out with bounds checks; bytes
/// read while another process writes them may be a mix of old and new (never out of
/// bounds, never a crash). References into the memory ([`as_slice`](Segment::as_slice),
/// [`as_mut_slice`](Segment::as_mut_slice)) are `unsafe`: the caller must make sure
/// nobody writes what a `&[u8]` covers, and nobody else touches what a `&mut [u8]` covers,
/// for as long as the reference lives.
///
/// Dropping a `Segment` detaches it (`shmdt`) and never panics. The segment itself stays in
/// the system until [`remove`](Segment::remove) (`IPC_RMID`) and the last detach.
///
/// ```
/// use shmsem::{Key, Segment};
/// # let key = Key::from_raw(0x5e00_0001);
/// # if let Ok(old) = Segment::open(key) { old.remove()?; }
/// let seg = Segment::create(key, 64, 0o600)?;
/// seg.write_all_at(b"hello", 0)?;
/// let mut buf = [0u8; 5];
/// Segment::open(key)?.read_exact_at(&mut buf, 0)?;
/// assert_eq!(&buf, b"hello");
/// seg.remove()?;
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    id: i32,
    key: Key,
    addr: NonNull<u8>,
    len: usize,
    read_only: bool,
}

// SAFETY: a Segment is an address range shared with other processes; it holds no
// thread-affine state, and its safe methods only copy bytes (any thread may do so at any
// time, the same hazard as another process doing it). Shared references into the memory
// come only from unsafe methods whose callers promise exclusion.
unsafe impl Send for Segment {}
// SAFETY: see Send: &Segment offers nothing that needs more than the above.
unsafe impl Sync for Segment {}

/// Everything the kernel tells about a segment: what `shmctl(IPC_STAT)` reports
/// ([`Segment::info`]), and what `/proc/sysvipc/shm` lists for every segment
/// ([`inspect::segments`](crate::inspect::segments), where this type is also named
/// [`ShmRecord`](crate::inspect::ShmRecord)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The key (`Key::PRIVATE` for private segments, and for segments marked for removal).
    pub key: Key,
    /// The IPC id (`shmid`).
    pub id: i32,
    /// Size in bytes, as asked for at creation (`shm_segsz`).
    pub size: usize,
    /// Permission bits and state flags (`shm_perm.mode`): the low 9 bits are the
    /// permissions; `0o1000` (`SHM_DEST`) is set once the segment is marked for removal,
    /// `0o2000` (`SHM_LOCKED`) while it is locked in memory.
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Creator's user id.
    pub cuid: u32,
    /// Creator's group id.
    pub cgid: u32,
    /// Pid of the creator.
    pub cpid: i32,
    /// Pid of the last process that attached or detached.
    pub lpid: i32,
    /// Number of current attaches.
    pub nattch: u64,
    /// Last attach, if any (`None` also when a kernel's table does not list it).
    pub atime: Option<SystemTime>,
    /// Last detach, if any.
    pub dtime: Option<SystemTime>,
    /// Last change (creation or `IPC_SET`).
    pub ctime: Option<SystemTime>,
}

/// `SHM_DEST`: the segment is marked for removal.
const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED`: the segment is locked in memory (`SHM_LOCK`).
const SHM_LOCKED: u32 = 0o2000;

impl SegmentInfo {
    /// The permission bits (`mode & 0o777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o777
    }

    /// Has the segment been marked for removal (it goes when the last process detaches)?
    pub fn is_marked_for_removal(&self) -> bool {
        self.mode & SHM_DEST != 0
    }

    /// Is it locked in memory (`SHM_LOCK`)?
    pub fn is_locked_in_memory(&self) -> bool {
        self.mode & SHM_LOCKED != 0
    }
}

pub(crate) fn check_mode(call: &'static str, target: Target, mode: u32) -> Result<()> {
    if mode & !0o777 != 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            call,
            target,
            format!("mode {mode:#o} has bits outside the permission bits 0o777"),
        ));
    }
    Ok(())
}

impl Segment {
    /// Creates a new segment of `size` bytes with permissions `mode` (e.g. `0o600`) and
    /// attaches it read-write. Exclusive (`IPC_CREAT | IPC_EXCL`): an existing segment with
    /// that key is `AlreadyExists`. The kernel fills a new segment with zeros.
    ///
    /// # Errors
    /// `AlreadyExists`; `InvalidInput` for size 0 or mode bits outside `0o777`;
    /// `LimitReached` past the system's limits (`SHMMAX`, `SHMALL`, `SHMMNI`).
    pub fn create(key: Key, size: usize, mode: u32) -> Result<Segment> {
        let target = Target { key, id: None };
        check_mode("shmget", target, mode)?;
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "shmget",
                target,
                "size must be at least 1 byte",
            ));
        }
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode as i32;
        // SAFETY: shmget takes plain integers and touches no memory of ours.
        let id = cvt(unsafe { libc::shmget(key.as_raw(), size, flags) })
            // With IPC_CREAT|IPC_EXCL and size > 0, EINVAL means the size is past SHMMAX.
            .map_err(|errno| Error::sysv("shmget", target, errno, ErrorKind::LimitReached))?;
        Segment::attach(key, id, false).inspect_err(|_| {
            // Nothing half-made: a segment we created but cannot attach goes again.
            // SAFETY: IPC_RMID on an id we just created; no buffer is passed.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        })
    }

    /// Opens the existing segment with this key and attaches it read-write.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` without read and write permission;
    /// `InvalidInput` for [`Key::PRIVATE`] (a private segment cannot be found by key).
    pub fn open(key: Key) -> Result<Segment> {
        Segment::open_with(key, false)
    }

    /// Opens the existing segment with this key and attaches it read-only (`SHM_RDONLY`):
    /// writes through this handle are errors, never a crash.
    ///
    /// # Errors
    /// As [`open`](Segment::open), with read permission enough.
    pub fn open_read_only(key: Key) -> Result<Segment> {
        Segment::open_with(key, true)
    }

    /// Attaches the segment with IPC id `id` (as `ipcs -m` lists it), read-write or
    /// read-only. Useful for [`Key::PRIVATE`] segments whose id was passed along.
    ///
    /// # Errors
    /// `Removed` (or `NotFound`) when no segment has that id, `PermissionDenied`.
    pub fn attach_id(id: i32, read_only: bool) -> Result<Segment> {
        let key = match sys::shm_stat(id) {
            Ok(ds) => Key::from_raw(ds.shm_perm.__key),
            Err(_) => Key::PRIVATE,
        };
        Segment::attach(key, id, read_only)
    }

    fn open_with(key: Key, read_only: bool) -> Result<Segment> {
        let target = Target { key, id: None };
        if key.is_private() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "shmget",
                target,
                "Key::PRIVATE names no existing segment; share private segments by fork or id",
            ));
        }
        // SAFETY: shmget takes plain integers and touches no memory of ours.
        let id = cvt(unsafe { libc::shmget(key.as_raw(), 0, 0) })
            .map_err(|errno| Error::sysv("shmget", target, errno, ErrorKind::InvalidInput))?;
        Segment::attach(key, id, read_only)
    }

    /// shmat + IPC_STAT (for the real size): the one place a Segment is made.
    pub(crate) fn attach(key: Key, id: i32, read_only: bool) -> Result<Segment> {
        let target = Target {
            key,
            id: Some(("shmid", id)),
        };
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel pick a free range; nothing of ours is
        // overwritten.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if addr as isize == -1 {
            let errno = last_errno();
            return Err(Error::sysv("shmat", target, errno, ErrorKind::Removed));
        }
        let ds = sys::shm_stat(id).map_err(|errno| {
            // SAFETY: addr came from the shmat above and is detached exactly once.
            unsafe { libc::shmdt(addr) };
            Error::sysv("shmctl(IPC_STAT)", target, errno, ErrorKind::Removed)
        })?;
        let Some(addr) = NonNull::new(addr.cast::<u8>()) else {
            // The kernel never maps page 0 for shmat; refuse rather than trust a null.
            return Err(Error::new(
                ErrorKind::Other,
                "shmat",
                target,
                "returned a null address",
            ));
        };
        Ok(Segment {
            id,
            key,
            addr,
            len: ds.shm_segsz,
            read_only,
        })
    }

    fn target(&self) -> Target {
        Target {
            key: self.key,
            id: Some(("shmid", self.id)),
        }
    }

    /// The IPC id (`shmid`), as `ipcs -m` shows it.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key this segment was created or opened with.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The segment's size in bytes: the size asked for at creation (`shm_segsz`). The kernel
    /// maps whole pages, but only these bytes are offered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Is the segment empty? (Never true: segments have at least one byte.)
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Was this handle attached read-only?
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn check_range(&self, call: &'static str, offset: usize, n: usize) -> Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                call,
                self.target(),
                format!(
                    "{n} bytes at offset {offset} do not fit in a segment of {} bytes",
                    self.len
                ),
            )),
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    ///
    /// # Errors
    /// `InvalidInput` when the range does not lie inside the segment (including when
    /// `offset + buf.len()` overflows); nothing is copied then.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: usize) -> Result<()> {
        self.check_range("Segment::read_exact_at", offset, buf.len())?;
        // SAFETY: offset..offset+len lies inside the attached mapping (checked above), and
        // `buf` is a distinct local buffer, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.addr.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `buf` into the segment starting at `offset`.
    ///
    /// # Errors
    /// `PermissionDenied` on a read-only attach; `InvalidInput` when the range does not lie
    /// inside the segment. Nothing is written on error.
    pub fn write_all_at(&self, buf: &[u8], offset: usize) -> Result<()> {
        if self.read_only {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "Segment::write_all_at",
                self.target(),
                "the segment is attached read-only (SHM_RDONLY)",
            ));
        }
        self.check_range("Segment::write_all_at", offset, buf.len())?;
        // SAFETY: the range lies inside the mapping (checked), which is writable (not a
        // read-only attach, checked); `copy` is memmove, defined even if `buf` is itself a
        // slice of this segment.
        unsafe { std::ptr::copy(buf.as_ptr(), self.addr.as_ptr().add(offset), buf.len()) };
        Ok(())
    }

    /// The address of the first byte. Reading or writing through it is up to the caller
    /// (see the type's Safety section); writing through a read-only attach crashes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.addr.as_ptr()
    }

    /// The segment's bytes as a slice.
    ///
    /// # Safety
    /// While the slice lives, nobody (no thread, no other process) may write these bytes.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping covers len bytes and stays attached while &self lives; the
        // caller promises no writes for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.addr.as_ptr(), self.len) }
    }

    /// The segment's bytes as a mutable slice.
    ///
    /// # Safety
    /// The segment must be attached read-write (not [`is_read_only`](Segment::is_read_only)),
    /// and while the slice lives nobody else (no thread, no other process) may read or
    /// write these bytes.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping covers len bytes and stays attached while &self lives; the
        // caller promises it is writable and exclusively theirs for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.addr.as_ptr(), self.len) }
    }

    /// Everything `shmctl(IPC_STAT)` reports about the segment.
    ///
    /// # Errors
    /// `Removed` once the segment is gone, `PermissionDenied` without read permission.
    pub fn info(&self) -> Result<SegmentInfo> {
        let ds = sys::shm_stat(self.id).map_err(|errno| {
            Error::sysv("shmctl(IPC_STAT)", self.target(), errno, ErrorKind::Removed)
        })?;
        Ok(SegmentInfo {
            key: Key::from_raw(ds.shm_perm.__key),
            id: self.id,
            size: ds.shm_segsz,
            mode: u32::from(ds.shm_perm.mode),
            uid: ds.shm_perm.uid,
            gid: ds.shm_perm.gid,
            cuid: ds.shm_perm.cuid,
            cgid: ds.shm_perm.cgid,
            cpid: ds.shm_cpid,
            lpid: ds.shm_lpid,
            nattch: ds.shm_nattch,
            atime: sys::system_time(ds.shm_atime),
            dtime: sys::system_time(ds.shm_dtime),
            ctime: sys::system_time(ds.shm_ctime),
        })
    }

    /// Marks the segment for removal (`IPC_RMID`): its key is free at once, and the memory
    /// goes when the last process detaches. This handle stays attached until dropped.
    ///
    /// # Errors
    /// `Removed` if it was already removed, `PermissionDenied` unless the caller is the
    /// owner or creator (or privileged).
    pub fn remove(&self) -> Result<()> {
        // SAFETY: IPC_RMID takes no buffer.
        cvt(unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) })
            .map(drop)
            .map_err(|errno| {
                Error::sysv("shmctl(IPC_RMID)", self.target(), errno, ErrorKind::Removed)
            })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: addr is this handle's own attach, detached exactly once, here. The result
        // is ignored: Drop must not panic, and a failed detach leaves nothing to fix.
        unsafe { libc::shmdt(self.addr.as_ptr().cast()) };
    }
}
