//! How a [`Segment`] is made and attached beyond key, size and mode: [`SegmentOptions`]
//! (`shmget`'s `SHM_HUGETLB` with a [`HugePageSize`], `SHM_NORESERVE`, and the explicit
//! request for a mode that locks the owner out) and [`AttachFlags`] (`shmat`'s `SHM_RND`
//! and `SHM_RDONLY`, for [`Segment::open_at`]).

use crate::error::{Error, ErrorKind, Result, Target, cvt};
use crate::raw::key::Key;
use crate::raw::limits::{self, format_size};
use crate::raw::perm::check_owner_access;
use crate::raw::shm::Segment;
use crate::raw::sys;

/// A huge page size for [`SegmentOptions::huge_pages`]: the system's default
/// (`SHM_HUGETLB` alone), or one size by its log2 (`SHM_HUGETLB | SHM_HUGE_2MB`, ...).
///
/// The sizes a system has are the directories of `/sys/kernel/mm/hugepages`; each has a
/// pool of its own, which root fills (`vm.nr_hugepages` for the default size).
///
/// ```
/// use shmsem::HugePageSize;
/// assert_eq!(HugePageSize::SIZE_2MIB.bytes(), Some(2 << 20));
/// assert_eq!(HugePageSize::from_bytes(1 << 30), Some(HugePageSize::SIZE_1GIB));
/// assert_eq!(HugePageSize::from_bytes(3 << 20), None); // not a power of two
/// assert_eq!(HugePageSize::DEFAULT.bytes(), None);      // whatever the system's default is
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HugePageSize {
    /// log2 of the size; 0 for the system's default.
    log2: u8,
}

impl HugePageSize {
    /// The system's default huge page size (`Hugepagesize` in /proc/meminfo; 2 MiB on
    /// x86-64): `SHM_HUGETLB` without a size.
    pub const DEFAULT: HugePageSize = HugePageSize { log2: 0 };
    /// 2 MiB pages (`SHM_HUGE_2MB`).
    pub const SIZE_2MIB: HugePageSize = HugePageSize { log2: 21 };
    /// 1 GiB pages (`SHM_HUGE_1GB`).
    pub const SIZE_1GIB: HugePageSize = HugePageSize { log2: 30 };

    /// The page size of `bytes`, which must be a power of two above the base page size
    /// and below 2^64 (aarch64 also has 64 KiB, 32 MiB and 16 GiB pages, for example).
    pub fn from_bytes(bytes: usize) -> Option<HugePageSize> {
        let ok = bytes.is_power_of_two() && bytes > sys::page_size();
        let log2 = bytes.trailing_zeros();
        (ok && log2 <= sys::SHM_HUGE_MASK).then_some(HugePageSize { log2: log2 as u8 })
    }

    /// The size in bytes; `None` for [`DEFAULT`](HugePageSize::DEFAULT).
    pub fn bytes(&self) -> Option<usize> {
        (self.log2 != 0).then(|| 1usize << self.log2)
    }

    /// shmget's flags for it: `SHM_HUGETLB`, and the size in bits 26..32.
    pub(crate) fn flags(self) -> i32 {
        libc::SHM_HUGETLB | (u32::from(self.log2) << sys::SHM_HUGE_SHIFT) as i32
    }

    /// "2 MiB", or "the default size".
    pub(crate) fn describe(&self) -> String {
        match self.bytes() {
            Some(b) => format_size(b as u64),
            None => "the default size".to_string(),
        }
    }
}

/// How [`Segment`] creates a segment, beyond its key and size: the permission bits, and
/// the Linux extras of `shmget` (huge pages, no swap reservation). Obtained from
/// [`Segment::options`]; [`create`](SegmentOptions::create) makes the segment.
///
/// ```
/// use shmsem::{Key, Segment};
/// let seg = Segment::options().mode(0o640).create(Key::PRIVATE, 4096)?;
/// assert_eq!(seg.info()?.permissions(), 0o640);
/// seg.remove()?;
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "options do nothing until create is called"]
pub struct SegmentOptions {
    mode: u32,
    huge_pages: Option<HugePageSize>,
    no_reserve: bool,
    allow_owner_without_access: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            mode: 0o600,
            huge_pages: None,
            no_reserve: false,
            allow_owner_without_access: false,
        }
    }
}

impl SegmentOptions {
    /// The defaults: mode `0o600`, ordinary pages, memory reserved at creation.
    pub fn new() -> Self {
        SegmentOptions::default()
    }

    /// Permission bits (`0o777` at most; default `0o600`). A mode that gives the owner
    /// neither read nor write is refused unless
    /// [`allow_owner_without_access`](SegmentOptions::allow_owner_without_access).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Back the segment with huge pages of `size` (`SHM_HUGETLB`, with `SHM_HUGE_2MB`,
    /// `SHM_HUGE_1GB`, ... for a size other than the default): fewer TLB misses for large
    /// segments, and the pages are never swapped.
    ///
    /// The pages come from the pool root reserved (`/proc/sys/vm/nr_hugepages`, or
    /// `/sys/kernel/mm/hugepages/hugepages-<size>kB/nr_hugepages`). Creation reserves
    /// them, so a pool that cannot back the whole segment makes `create` fail with
    /// `LimitReached`, saying how many pages it needs and how many are free. The size is
    /// rounded up to whole huge pages in memory; [`Segment::len`] stays the size asked
    /// for. Attach addresses of such a segment must be aligned to the huge page size.
    /// An unprivileged creator needs `CAP_IPC_LOCK`, the group `vm.hugetlb_shm_group`
    /// names, or an `RLIMIT_MEMLOCK` as large as the segment.
    ///
    /// ```no_run
    /// use shmsem::{HugePageSize, Key, Segment};
    /// // As root, first: echo 64 > /proc/sys/vm/nr_hugepages
    /// let seg = Segment::options()
    ///     .huge_pages(HugePageSize::SIZE_2MIB)
    ///     .create(Key::from_u32(0x5e00_0100), 64 << 20)?;
    /// # seg.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    pub fn huge_pages(mut self, size: HugePageSize) -> Self {
        self.huge_pages = Some(size);
        self
    }

    /// `SHM_NORESERVE`: reserve nothing at creation (no swap space accounted; for huge
    /// pages, none taken from the pool). Memory is found when a page is first touched.
    ///
    /// The cost: when it is not there then, the process that touches the page is killed
    /// (`SIGBUS` for huge pages the pool cannot give, the OOM killer otherwise), even
    /// through [`write_all_at`](Segment::write_all_at). Use it for large, sparsely used
    /// segments on systems whose memory you have sized.
    pub fn no_reserve(mut self, no_reserve: bool) -> Self {
        self.no_reserve = no_reserve;
        self
    }

    /// Allow a mode that gives the owner neither read nor write permission (e.g. `0o000`
    /// or `0o060`), which is refused by default: the seed tutorial's pitfall,
    /// `shmget(key, size, IPC_CREAT)` without permission bits, makes a segment that only
    /// root can attach. Ask for it only if that is the point (a segment for a group the
    /// owner is not in, made by root).
    pub fn allow_owner_without_access(mut self, allow: bool) -> Self {
        self.allow_owner_without_access = allow;
        self
    }

    /// Creates the segment of `size` bytes and attaches it read-write, as
    /// [`Segment::create`] does, with these options.
    ///
    /// # Errors
    /// As [`Segment::create`]; also `InvalidInput` for a huge page size the system does
    /// not have, and `LimitReached` when the huge page pool cannot back the segment
    /// (the message says how many pages are free and how to reserve more), or
    /// `PermissionDenied` for huge pages without the privilege they need.
    pub fn create(self, key: Key, size: usize) -> Result<Segment> {
        let target = Target { key, id: None };
        check_owner_access(
            "shmget",
            target,
            self.mode,
            self.allow_owner_without_access,
            "SegmentOptions::allow_owner_without_access(true)",
        )?;
        if size == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "shmget",
                target,
                "size must be at least 1 byte",
            ));
        }
        let mut flags = libc::IPC_CREAT | libc::IPC_EXCL | self.mode as i32;
        if let Some(huge) = self.huge_pages {
            flags |= huge.flags();
        }
        if self.no_reserve {
            flags |= libc::SHM_NORESERVE;
        }
        // SAFETY: shmget takes plain integers and touches no memory of ours.
        let id = cvt(unsafe { libc::shmget(key.as_raw(), size, flags) }).map_err(|errno| {
            match limits::explain_shmget(errno, size, self.huge_pages) {
                Some((kind, why)) => Error::explained("shmget", target, errno, kind, why),
                // With IPC_CREAT|IPC_EXCL and size > 0, EINVAL means a limit.
                None => Error::sysv("shmget", target, errno, ErrorKind::LimitReached),
            }
        })?;
        Segment::attach(key, id, std::ptr::null(), 0, "shmat").inspect_err(|_| {
            // Nothing half-made: a segment we created but cannot attach goes again.
            // SAFETY: IPC_RMID on an id we just created; no buffer is passed.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        })
    }
}

/// How [`Segment::open_at`] and [`Segment::attach_id_at`] attach: `shmat`'s flags
/// `SHM_RND` and `SHM_RDONLY`.
///
/// ```
/// use shmsem::AttachFlags;
/// let flags = AttachFlags::new().round_down(true).read_only(true); // SHM_RND | SHM_RDONLY
/// assert!(flags.is_round_down() && flags.is_read_only());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[must_use]
pub struct AttachFlags {
    round_down: bool,
    read_only: bool,
}

impl AttachFlags {
    /// No flags: read-write, at exactly the address given (which must then be a multiple
    /// of [`Segment::shmlba`]).
    pub const fn new() -> Self {
        AttachFlags {
            round_down: false,
            read_only: false,
        }
    }

    /// `SHM_RND`: round the address down to a multiple of [`Segment::shmlba`] instead of
    /// refusing one that is not.
    pub const fn round_down(mut self, round_down: bool) -> Self {
        self.round_down = round_down;
        self
    }

    /// `SHM_RDONLY`: attach read-only, as [`Segment::open_read_only`].
    pub const fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Is `SHM_RND` set?
    pub const fn is_round_down(&self) -> bool {
        self.round_down
    }

    /// Is `SHM_RDONLY` set?
    pub const fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn bits(self) -> i32 {
        let mut bits = 0;
        if self.round_down {
            bits |= libc::SHM_RND;
        }
        if self.read_only {
            bits |= libc::SHM_RDONLY;
        }
        bits
    }
}
