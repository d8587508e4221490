//! The raw shared-memory layer: [`Segment`] is one attached System V segment
//! (`shmget`/`shmat`/`shmdt`/`shmctl`), with nothing added, so it opens what C, Python or
//! Perl programs made.

use std::ptr::NonNull;
use std::time::SystemTime;

use crate::error::{Error, ErrorKind, Result, Target, cvt, last_errno};
use crate::raw::key::Key;
use crate::raw::limits::format_size;
use crate::raw::perm::{IpcSet, Perm, PermChange};
use crate::raw::shm_options::{AttachFlags, SegmentOptions};
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
    /// The record of segment `id` from what `shmctl(IPC_STAT)` wrote.
    pub(crate) fn from_stat(id: i32, ds: &libc::shmid_ds) -> SegmentInfo {
        SegmentInfo {
            key: Key::from_raw(ds.shm_perm.__key),
            id,
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
        }
    }

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

impl Segment {
    /// Creates a new segment of `size` bytes with permissions `mode` (e.g. `0o600`) and
    /// attaches it read-write. Exclusive (`IPC_CREAT | IPC_EXCL`): an existing segment with
    /// that key is `AlreadyExists`. The kernel fills a new segment with zeros.
    ///
    /// Huge pages, `SHM_NORESERVE`, and modes that lock the owner out are through
    /// [`Segment::options`].
    ///
    /// # Errors
    /// `AlreadyExists`; `InvalidInput` for size 0, mode bits outside `0o777`, or a mode
    /// that gives the owner neither read nor write (`0o000`, `0o044`, ...: the segment
    /// would be unusable by anyone but root; see
    /// [`SegmentOptions::allow_owner_without_access`]); `LimitReached` past the system's
    /// limits (`SHMMAX`, `SHMALL`, `SHMMNI`: the message names the limit, its value and the
    /// sysctl that raises it; [`shm_limits`](crate::shm_limits) reads them).
    pub fn create(key: Key, size: usize, mode: u32) -> Result<Segment> {
        SegmentOptions::new().mode(mode).create(key, size)
    }

    /// Options for creating a segment: mode, huge pages, `SHM_NORESERVE`.
    pub fn options() -> SegmentOptions {
        SegmentOptions::new()
    }

    /// Opens the existing segment with this key and attaches it read-write.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` without read and write permission;
    /// `InvalidInput` for [`Key::PRIVATE`] (a private segment cannot be found by key).
    pub fn open(key: Key) -> Result<Segment> {
        Segment::open_with(key, std::ptr::null(), AttachFlags::new())
    }

    /// Opens the existing segment with this key and attaches it read-only (`SHM_RDONLY`):
    /// writes through this handle are errors, never a crash.
    ///
    /// # Errors
    /// As [`open`](Segment::open), with read permission enough.
    pub fn open_read_only(key: Key) -> Result<Segment> {
        Segment::open_with(key, std::ptr::null(), AttachFlags::new().read_only(true))
    }

    /// Opens the existing segment with this key and attaches it at `addr`
    /// (`shmat(id, addr, flags)`), rounded down to a multiple of
    /// [`shmlba`](Segment::shmlba) with [`AttachFlags::round_down`] (`SHM_RND`). For C
    /// programs that keep pointers into a segment and so attach it at one fixed address
    /// in every process. [`as_ptr`](Segment::as_ptr) tells where it landed.
    ///
    /// The kernel refuses a range that overlaps anything already mapped in this process
    /// (shmsem never passes `SHM_REMAP`): that is `InvalidInput`, never a mapping over
    /// live memory.
    ///
    /// ```
    /// use shmsem::{AttachFlags, Key, Segment};
    /// # let key = Key::from_raw(0x5e00_0006);
    /// # if let Ok(old) = Segment::open(key) { old.remove()?; }
    /// let seg = Segment::create(key, 4096, 0o600)?;
    /// // An address this process does not use (found here by letting the kernel pick one
    /// // and detaching again); a C program would use its fixed constant.
    /// let free = Segment::open(key)?.as_ptr() as usize;
    /// let wanted = (free + 100) as *const u8; // not aligned: SHM_RND rounds it down
    /// // SAFETY: nothing in this program maps at that address while `joined` lives.
    /// let joined = unsafe { Segment::open_at(key, wanted, AttachFlags::new().round_down(true))? };
    /// assert_eq!(joined.as_ptr() as usize, free);
    /// # drop(joined);
    /// seg.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    ///
    /// # Safety
    ///
    /// The segment occupies `addr` (rounded) up to its size rounded up to whole pages, and
    /// its handle assumes that range stays its own until it is dropped. The caller must
    /// make sure nothing else in the process maps over it meanwhile: no `mmap` with
    /// `MAP_FIXED`, no `shmat` with `SHM_REMAP`, no allocator or C library that was told
    /// the range is its own (a fixed address is usually someone's plan for that range).
    /// Pointers that other programs stored in the segment are only meaningful at their
    /// address; dereferencing them is the caller's business too (see [`Segment`]'s Safety
    /// section for references into the memory).
    ///
    /// # Errors
    /// As [`open`](Segment::open); `InvalidInput` when the address is not a multiple of
    /// `shmlba` without `round_down`, or the range overlaps existing mappings or leaves the
    /// address space.
    pub unsafe fn open_at(key: Key, addr: *const u8, flags: AttachFlags) -> Result<Segment> {
        Segment::open_with(key, addr, flags)
    }

    /// Attaches the segment with IPC id `id` (as `ipcs -m` lists it), read-write or
    /// read-only. Useful for [`Key::PRIVATE`] segments whose id was passed along.
    ///
    /// # Errors
    /// `Removed` (or `NotFound`) when no segment has that id, `PermissionDenied`.
    pub fn attach_id(id: i32, read_only: bool) -> Result<Segment> {
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        Segment::attach(Segment::key_of(id), id, std::ptr::null(), flags, "shmat")
    }

    /// [`open_at`](Segment::open_at) for the segment with IPC id `id`.
    ///
    /// # Safety
    /// As [`open_at`](Segment::open_at).
    ///
    /// # Errors
    /// As [`attach_id`](Segment::attach_id) and [`open_at`](Segment::open_at).
    pub unsafe fn attach_id_at(id: i32, addr: *const u8, flags: AttachFlags) -> Result<Segment> {
        Segment::attach(Segment::key_of(id), id, addr, flags.bits(), "shmat")
    }

    /// `SHMLBA`: what attach addresses must be a multiple of (the page size on Linux's
    /// x86-64 and aarch64), and what [`AttachFlags::round_down`] rounds to.
    pub fn shmlba() -> usize {
        sys::page_size()
    }

    fn key_of(id: i32) -> Key {
        match sys::shm_stat(id) {
            Ok(ds) => Key::from_raw(ds.shm_perm.__key),
            Err(_) => Key::PRIVATE,
        }
    }

    fn open_with(key: Key, addr: *const u8, flags: AttachFlags) -> Result<Segment> {
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
        Segment::attach(key, id, addr, flags.bits(), "shmat")
    }

    /// shmat + IPC_STAT (for the real size): the one place a Segment is made. `addr` is
    /// null (the kernel picks) or one the caller answers for (`open_at`'s Safety).
    pub(crate) fn attach(
        key: Key,
        id: i32,
        addr: *const u8,
        flags: i32,
        call: &'static str,
    ) -> Result<Segment> {
        let target = Target {
            key,
            id: Some(("shmid", id)),
        };
        // SAFETY: a null address lets the kernel pick a free range; a requested one is
        // refused by the kernel if it overlaps any mapping (no SHM_REMAP), and the caller
        // of open_at/attach_id_at promised nothing else maps over it later.
        let mapped = unsafe { libc::shmat(id, addr.cast(), flags) };
        if mapped as isize == -1 {
            let errno = last_errno();
            return Err(Segment::attach_error(target, id, addr, flags, errno, call));
        }
        let ds = sys::shm_stat(id).map_err(|errno| {
            // SAFETY: `mapped` came from the shmat above and is detached exactly once.
            unsafe { libc::shmdt(mapped) };
            Error::sysv("shmctl(IPC_STAT)", target, errno, ErrorKind::Removed)
        })?;
        let Some(mapped) = NonNull::new(mapped.cast::<u8>()) else {
            // The kernel never maps page 0 for shmat; refuse rather than trust a null.
            return Err(Error::new(
                ErrorKind::Other,
                call,
                target,
                "returned a null address",
            ));
        };
        Ok(Segment {
            id,
            key,
            addr: mapped,
            len: ds.shm_segsz,
            read_only: flags & libc::SHM_RDONLY != 0,
        })
    }

    #[cold]
    fn attach_error(
        target: Target,
        id: i32,
        addr: *const u8,
        flags: i32,
        errno: i32,
        call: &'static str,
    ) -> Error {
        // EINVAL for a segment that still exists is about the address asked for.
        if errno == libc::EINVAL && !addr.is_null() && sys::shm_stat(id).is_ok() {
            let shmlba = Segment::shmlba();
            let why = if flags & libc::SHM_RND == 0 && (addr as usize) % shmlba != 0 {
                format!(
                    "address {addr:p} is not a multiple of SHMLBA ({shmlba}); round it, or ask \
                     for SHM_RND with AttachFlags::round_down(true)"
                )
            } else {
                format!(
                    "cannot attach at {addr:p}: the range overlaps memory already mapped in \
                     this process, is not aligned as the segment's pages require, or leaves \
                     the address space"
                )
            };
            return Error::explained(call, target, errno, ErrorKind::InvalidInput, why);
        }
        Error::sysv(call, target, errno, ErrorKind::Removed)
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
        Ok(SegmentInfo::from_stat(self.id, &ds))
    }

    /// The kernel's `ipc_perm` of this segment, for `IPC_SET`: from `IPC_STAT`, or for a
    /// caller without read permission (an owner who took it away), from
    /// /proc/sysvipc/shm, which lists every segment's owner and mode to everyone.
    fn perm(&self) -> std::result::Result<Perm, i32> {
        Perm::stat_or_row(sys::shm_stat(self.id).map(|ds| ds.shm_perm), || {
            let all = crate::raw::tables::segments().ok()?;
            let r = all.into_iter().find(|r| r.id == self.id)?;
            Some((r.uid, r.gid, r.cuid, r.mode))
        })
    }

    /// `shmctl(IPC_SET)` with `change`, errors naming `call`.
    pub(crate) fn change_perm(&self, call: &'static str, change: PermChange) -> Result<()> {
        IpcSet {
            call,
            syscall: "shmctl(IPC_SET)",
            target: self.target(),
            stat: &|| self.perm(),
            set: &|uid, gid, mode| sys::shm_set(self.id, uid, gid, mode),
        }
        .apply(change)
    }

    crate::raw::perm::perm_setters!(
        "Segment",
        "the segment",
        "Attaches that exist keep working; the new owner's permission bits apply to later \
         attaches.",
        []
    );

    /// Locks the segment's pages in memory (`shmctl(SHM_LOCK)`): they are not swapped out
    /// from now on (pages not yet touched are not brought in by this). Stays in force,
    /// for every process, until [`unlock`](Segment::unlock) or removal;
    /// [`SegmentInfo::is_locked_in_memory`] reports it, as `ipcs -m`'s status column does.
    /// Huge-page segments are never swapped: for them this does nothing.
    ///
    /// # Errors
    /// `PermissionDenied` for a process that is neither owner nor creator, or has an
    /// `RLIMIT_MEMLOCK` of 0, and lacks `CAP_IPC_LOCK`; `LimitReached` when the segment
    /// does not fit in what `RLIMIT_MEMLOCK` (`ulimit -l`) still allows its user; `Removed`.
    pub fn lock_in_memory(&self) -> Result<()> {
        self.lock_cmd("Segment::lock_in_memory", libc::SHM_LOCK)
    }

    /// Undoes [`lock_in_memory`](Segment::lock_in_memory) (`shmctl(SHM_UNLOCK)`): the
    /// pages may be swapped again. Nothing to do with mutual exclusion: a raw segment has
    /// no lock.
    ///
    /// # Errors
    /// `PermissionDenied` for a process that is neither owner nor creator and lacks
    /// `CAP_IPC_LOCK`; `Removed`.
    pub fn unlock(&self) -> Result<()> {
        self.lock_cmd("Segment::unlock", libc::SHM_UNLOCK)
    }

    fn lock_cmd(&self, call: &'static str, cmd: i32) -> Result<()> {
        let syscall = if cmd == libc::SHM_LOCK {
            "shmctl(SHM_LOCK)"
        } else {
            "shmctl(SHM_UNLOCK)"
        };
        // SAFETY: SHM_LOCK/SHM_UNLOCK read no buffer.
        cvt(unsafe { libc::shmctl(self.id, cmd, std::ptr::null_mut()) })
            .map(drop)
            .map_err(|errno| self.lock_error(call, syscall, cmd, errno))
    }

    #[cold]
    fn lock_error(&self, call: &'static str, syscall: &'static str, cmd: i32, errno: i32) -> Error {
        let limit = {
            let mut rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes one rlimit into `rl`.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } == 0;
            match (ok, rl.rlim_cur) {
                (false, _) => "unknown".to_string(),
                (true, libc::RLIM_INFINITY) => "unlimited".to_string(),
                (true, n) => format_size(n),
            }
        };
        let (kind, why) = match errno {
            libc::EPERM => {
                let who = match self.perm() {
                    Ok(p) => format!("the owner (uid {}) or the creator (uid {})", p.uid, p.cuid),
                    Err(_) => "the owner or the creator".to_string(),
                };
                let rlimit = if cmd == libc::SHM_LOCK {
                    format!(", with an RLIMIT_MEMLOCK above 0 (this process: {limit})")
                } else {
                    String::new()
                };
                (
                    ErrorKind::PermissionDenied,
                    format!(
                        "{syscall}: only {who}{rlimit}, or a process with CAP_IPC_LOCK, may \
                         lock or unlock it"
                    ),
                )
            }
            libc::ENOMEM => (
                ErrorKind::LimitReached,
                format!(
                    "{syscall}: locking {} would take this user past RLIMIT_MEMLOCK \
                     ({limit}, ulimit -l; it counts every segment the user has locked); raise \
                     it or grant CAP_IPC_LOCK",
                    format_size(self.len as u64)
                ),
            ),
            _ => {
                return Error::sysv(syscall, self.target(), errno, ErrorKind::Removed)
                    .in_call(call);
            }
        };
        Error::explained(call, self.target(), errno, kind, why)
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
