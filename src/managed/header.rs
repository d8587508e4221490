//! The header at offset 0 of every managed segment (docs/FORMAT.md is its byte-level
//! description): what the object is, where its payload lies, and the two words that make
//! crash detection work (the holder and poison words, which hold lease tokens: see
//! `lease.rs`), and the lease claim hint.
//!
//! Decoding is a pure function of the header bytes and the real segment size, so a foreign
//! or hostile segment can only ever produce `NotManaged` or `LayoutMismatch`.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::ErrorKind;
use crate::managed::lease::{self, Leases};

/// Bytes 0..8 of every managed segment.
pub const MAGIC: [u8; 8] = *b"shmsem\0\0";
/// The format version this crate writes and reads.
pub const VERSION: u32 = 2;
/// Size of the header; the payload starts at or after it.
pub const HEADER_SIZE: usize = 64;
/// The largest payload alignment offered: `shmat` places segments on page boundaries, so
/// nothing stricter can be guaranteed.
pub const MAX_ALIGN: usize = 4096;
/// A [`Layout::size`] that means "any payload size": [`validate`] then skips the payload
/// size comparison (everything else, including that the payload fits in the segment, is
/// still checked). For openers of objects whose size only the creator chose, such as a
/// queue's capacity; the opener must check the payload's own bookkeeping against the
/// real size. Never used to create.
pub const ANY_SIZE: usize = usize::MAX;

/// Byte offsets of the header fields (all native-endian).
mod off {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const KIND: usize = 12;
    pub const PAYLOAD_OFFSET: usize = 16;
    pub const PAYLOAD_SIZE: usize = 24;
    pub const PAYLOAD_ALIGN: usize = 32;
    pub const NSEMS: usize = 40;
    pub const HOLDER: usize = 44;
    pub const POISON: usize = 48;
    pub const LEASE_HINT: usize = 52;
}

/// Which managed type a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ObjectKind {
    /// A `SharedMutex<T>`.
    Mutex = 1,
    /// A `SharedRwLock<T>`.
    RwLock = 2,
    /// A `Queue`.
    Queue = 3,
    /// A `SharedCondvar`.
    Condvar = 4,
}

impl ObjectKind {
    fn from_u32(v: u32) -> Option<ObjectKind> {
        match v {
            1 => Some(ObjectKind::Mutex),
            2 => Some(ObjectKind::RwLock),
            3 => Some(ObjectKind::Queue),
            4 => Some(ObjectKind::Condvar),
            _ => None,
        }
    }

    /// How many semaphores of the paired set are the object's own; the lease slots
    /// follow them (docs/FORMAT.md, "Leases").
    pub fn own_semaphores(self) -> usize {
        match self {
            ObjectKind::Mutex => 1,
            ObjectKind::RwLock => 3,
            ObjectKind::Queue => 2,
            // One wake-up semaphore per lease slot (docs/FORMAT.md, "Condvar").
            ObjectKind::Condvar => crate::managed::lease::DEFAULT_SLOTS,
        }
    }

    /// A lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Mutex => "mutex",
            ObjectKind::RwLock => "rwlock",
            ObjectKind::Queue => "queue",
            ObjectKind::Condvar => "condvar",
        }
    }
}

/// What an opener expects to find: the object kind and the payload layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The managed type.
    pub kind: ObjectKind,
    /// `size_of` the payload.
    pub size: usize,
    /// `align_of` the payload.
    pub align: usize,
    /// Semaphores in the paired set.
    pub nsems: usize,
}

impl Layout {
    /// The layout of a `kind` whose payload is `size` bytes aligned to `align`: its set
    /// has the kind's own semaphores and the default number of lease slots after them.
    pub(crate) fn new(kind: ObjectKind, size: usize, align: usize) -> Layout {
        Layout {
            kind,
            size,
            align,
            nsems: Leases::nsems(kind.own_semaphores(), lease::DEFAULT_SLOTS),
        }
    }

    /// [`new`](Layout::new) for a payload that is one `T`.
    pub(crate) fn of<T>(kind: ObjectKind) -> Layout {
        Layout::new(kind, size_of::<T>(), align_of::<T>())
    }

    /// Where the payload starts: the header, rounded up to the payload's alignment.
    pub fn payload_offset(&self) -> usize {
        HEADER_SIZE.next_multiple_of(self.align.max(1))
    }

    /// Total segment size, or `None` if it overflows.
    pub fn segment_size(&self) -> Option<usize> {
        self.payload_offset().checked_add(self.size)
    }

    /// The header bytes a creator writes for this layout (holder and poison zero).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[off::MAGIC..off::MAGIC + 8].copy_from_slice(&MAGIC);
        put_u32(&mut h, off::VERSION, VERSION);
        put_u32(&mut h, off::KIND, self.kind as u32);
        put_u64(&mut h, off::PAYLOAD_OFFSET, self.payload_offset() as u64);
        put_u64(&mut h, off::PAYLOAD_SIZE, self.size as u64);
        put_u64(&mut h, off::PAYLOAD_ALIGN, self.align as u64);
        put_u32(&mut h, off::NSEMS, self.nsems as u32);
        h
    }
}

/// Why a segment was refused: `NotManaged` or `LayoutMismatch`, and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `NotManaged` or `LayoutMismatch`.
    pub kind: ErrorKind,
    /// What was wrong, for the error message.
    pub reason: String,
}

fn reject(kind: ErrorKind, reason: String) -> Rejection {
    Rejection { kind, reason }
}

/// The decoded fields of a header (the live words excepted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The object kind, if the number is one this version knows.
    pub kind: Option<ObjectKind>,
    /// Payload offset from the start of the segment.
    pub payload_offset: u64,
    /// Payload size.
    pub payload_size: u64,
    /// Payload alignment.
    pub payload_align: u64,
    /// Semaphores in the paired set.
    pub nsems: u32,
    /// The holder word: the lease token of the handle inside the critical section, 0 if
    /// none.
    pub holder: u32,
    /// The poison word: the lease token of the handle whose critical section broke off,
    /// 0 if not poisoned.
    pub poison: u32,
}

/// Decodes the first bytes of a segment whose real size (`shm_segsz`) is `segment_size`,
/// checking that it is a well-formed managed header whose payload fits. `bytes` is what
/// could be read (at most [`HEADER_SIZE`] are looked at; fewer means a short segment).
///
/// # Errors
/// `NotManaged` for anything that is not a well-formed header of this version.
pub fn decode(bytes: &[u8], segment_size: usize) -> Result<Decoded, Rejection> {
    let not_managed = |reason: String| reject(ErrorKind::NotManaged, reason);
    if segment_size < HEADER_SIZE || bytes.len() < HEADER_SIZE {
        return Err(not_managed(format!(
            "segment of {segment_size} bytes is too small for the {HEADER_SIZE}-byte shmsem header"
        )));
    }
    let h = &bytes[..HEADER_SIZE];
    if h[off::MAGIC..off::MAGIC + 8] != MAGIC {
        return Err(not_managed(format!(
            "no shmsem header (magic bytes {:02x?})",
            &h[off::MAGIC..off::MAGIC + 8]
        )));
    }
    let version = get_u32(h, off::VERSION);
    if version != VERSION {
        return Err(not_managed(format!(
            "header format version {version}, this library reads version {VERSION}{}",
            if version < VERSION {
                " (an object made by an older shmsem: remove and recreate it)"
            } else {
                ""
            }
        )));
    }
    let d = Decoded {
        kind: ObjectKind::from_u32(get_u32(h, off::KIND)),
        payload_offset: get_u64(h, off::PAYLOAD_OFFSET),
        payload_size: get_u64(h, off::PAYLOAD_SIZE),
        payload_align: get_u64(h, off::PAYLOAD_ALIGN),
        nsems: get_u32(h, off::NSEMS),
        holder: get_u32(h, off::HOLDER),
        poison: get_u32(h, off::POISON),
    };
    if d.kind.is_none() {
        return Err(not_managed(format!(
            "unknown object kind {}",
            get_u32(h, off::KIND)
        )));
    }
    let align_ok = d.payload_align.is_power_of_two() && d.payload_align <= MAX_ALIGN as u64;
    if !align_ok || d.payload_offset < HEADER_SIZE as u64 || d.payload_offset % d.payload_align != 0
    {
        return Err(not_managed(format!(
            "corrupt header: payload offset {} / alignment {}",
            d.payload_offset, d.payload_align
        )));
    }
    let fits = d
        .payload_offset
        .checked_add(d.payload_size)
        .is_some_and(|end| end <= segment_size as u64);
    if !fits {
        return Err(not_managed(format!(
            "corrupt header: payload of {} bytes at offset {} does not fit in a segment of {segment_size} bytes",
            d.payload_size, d.payload_offset
        )));
    }
    Ok(d)
}

/// [`decode`], then checks the header against what the opener expects.
///
/// # Errors
/// `NotManaged` as for [`decode`]; `LayoutMismatch` when the object is of another kind,
/// or its payload has another size (unless `want.size` is [`ANY_SIZE`]) or alignment, or
/// it pairs with another number of semaphores.
pub fn validate(bytes: &[u8], segment_size: usize, want: &Layout) -> Result<Decoded, Rejection> {
    let d = decode(bytes, segment_size)?;
    let mismatch = |reason: String| Err(reject(ErrorKind::LayoutMismatch, reason));
    if d.kind != Some(want.kind) {
        let found = d.kind.map_or("unknown", ObjectKind::name);
        return mismatch(format!("object is a {found}, not a {}", want.kind.name()));
    }
    let size_ok = want.size == ANY_SIZE || d.payload_size == want.size as u64;
    if !size_ok || d.payload_align != want.align as u64 {
        return mismatch(format!(
            "payload is {} bytes aligned to {}, expected {} bytes aligned to {}",
            d.payload_size, d.payload_align, want.size, want.align
        ));
    }
    if d.payload_offset != want.payload_offset() as u64 || d.nsems as usize != want.nsems {
        return mismatch(format!(
            "payload offset {} with {} semaphores, expected {} with {}",
            d.payload_offset,
            d.nsems,
            want.payload_offset(),
            want.nsems
        ));
    }
    Ok(d)
}

/// The live words of a header in an attached segment.
pub(crate) struct Live<'a> {
    /// Lease token of the handle inside the critical section, 0 when none.
    pub holder: &'a AtomicU32,
    /// Lease token whose critical section broke off (death or panic), 0 when not poisoned.
    pub poison: &'a AtomicU32,
    /// Where the next lease claim starts looking (advisory; see `lease.rs`).
    pub lease_hint: &'a AtomicU32,
}

impl Live<'_> {
    /// The live words of the header at `base`.
    ///
    /// # Safety
    /// `base` must point at an attached segment of at least [`HEADER_SIZE`] bytes,
    /// aligned to 4 (segments are page-aligned), that stays attached for `'a`. If the
    /// attach is read-only, the caller may only load the words, never store.
    #[inline]
    pub(crate) unsafe fn at<'a>(base: *mut u8) -> Live<'a> {
        // SAFETY: the caller guarantees the range is mapped for 'a; the offsets are inside
        // the header and 4-aligned; AtomicU32 has u32's layout, and other processes only
        // touch these words atomically.
        unsafe {
            Live {
                holder: &*base.add(off::HOLDER).cast::<AtomicU32>(),
                poison: &*base.add(off::POISON).cast::<AtomicU32>(),
                lease_hint: &*base.add(off::LEASE_HINT).cast::<AtomicU32>(),
            }
        }
    }
}

/// The holder/poison protocol (docs/FORMAT.md, "Lock" and "Unlock"), shared by every
/// exclusive section (mutex, rwlock writer). `me` is the caller's lease token.
impl Live<'_> {
    /// Called right after the semaphore was taken for an exclusive section: records `me`
    /// as holder and returns the token that poisoned the lock, or 0. A holder still
    /// recorded died inside its section (a live one clears the word before releasing), so
    /// the lock is poisoned in its name.
    #[inline]
    pub(crate) fn enter_exclusive(&self, me: u32) -> u32 {
        // Only the semaphore's holder writes this word, so a plain load and store do (no
        // read-modify-write); the semop before was a full barrier.
        let previous = self.holder.load(Ordering::Relaxed);
        self.holder.store(me, Ordering::Relaxed);
        if previous != 0 {
            // The first cause stays until clear_poison: this death poisons only a lock
            // that was not poisoned already. Reported from what we saw, not re-read: a
            // clear_poison racing in from a process that does not hold the lock must not
            // hide this death.
            return match self.poison.compare_exchange(
                0,
                previous,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => previous,
                Err(first) => first,
            };
        }
        self.poison.load(Ordering::Acquire)
    }

    /// Called right before the semaphore is given back: poisons (unless already poisoned)
    /// if the section broke off in a panic (`panicked`: one that began inside it, not one
    /// that was already unwinding when the lock was taken), then clears the holder word.
    #[inline]
    pub(crate) fn leave_exclusive(&self, me: u32, panicked: bool) {
        if panicked {
            // Only the first cause is kept: a holder handed a poisoned guard that then
            // panics (an `unwrap` on the poison) must not hide the death before it.
            let word = me | crate::managed::poison::PANICKED;
            let _ = self
                .poison
                .compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed);
        }
        self.holder.store(0, Ordering::Release);
    }

    /// For a shared (reader) section, which never writes the header: the token that
    /// poisoned the lock, or a dead writer still recorded as holder, or 0. (While readers
    /// hold the lock no writer can be inside, so a recorded holder is a dead one.)
    #[inline]
    pub(crate) fn observed_poison(&self) -> u32 {
        match self.poison.load(Ordering::Acquire) {
            0 => self.holder.load(Ordering::Acquire),
            token => token,
        }
    }

    /// Clears the poison word.
    pub(crate) fn clear_poison(&self) {
        self.poison.store(0, Ordering::Release);
    }
}

fn get_u32(h: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

fn get_u64(h: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[at..at + 8]);
    u64::from_ne_bytes(b)
}

fn put_u32(h: &mut [u8], at: usize, v: u32) {
    h[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(h: &mut [u8], at: usize, v: u64) {
    h[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutex_u64() -> Layout {
        Layout {
            kind: ObjectKind::Mutex,
            size: 8,
            align: 8,
            nsems: 1,
        }
    }

    #[test]
    fn encode_then_validate_round_trips() {
        let l = mutex_u64();
        let d = validate(&l.encode(), l.segment_size().unwrap(), &l).unwrap();
        assert_eq!(d.payload_offset, 64);
        assert_eq!((d.holder, d.poison), (0, 0));
    }

    #[test]
    fn short_segment_and_bad_magic_are_not_managed() {
        let l = mutex_u64();
        let e = validate(&l.encode()[..10], 10, &l).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotManaged);
        let mut h = l.encode();
        h[0] = b'X';
        assert_eq!(
            validate(&h, 72, &l).unwrap_err().kind,
            ErrorKind::NotManaged
        );
    }

    #[test]
    fn payload_past_the_end_is_not_managed() {
        let l = mutex_u64();
        let mut h = l.encode();
        put_u64(&mut h, off::PAYLOAD_SIZE, u64::MAX - 10);
        assert_eq!(
            validate(&h, 72, &l).unwrap_err().kind,
            ErrorKind::NotManaged
        );
        // The real segment is shorter than the header claims.
        assert_eq!(
            validate(&l.encode(), 71, &l).unwrap_err().kind,
            ErrorKind::NotManaged
        );
    }

    #[test]
    fn any_size_accepts_every_fitting_payload_size_and_nothing_else() {
        let q = Layout {
            kind: ObjectKind::Queue,
            size: 4096,
            align: 64,
            nsems: 2,
        };
        let any = Layout {
            size: ANY_SIZE,
            ..q
        };
        let seg = q.segment_size().unwrap();
        let d = validate(&q.encode(), seg, &any).unwrap();
        assert_eq!(d.payload_size, 4096);
        // Still refused: a payload past the end, another kind, another alignment.
        assert_eq!(
            validate(&q.encode(), seg - 1, &any).unwrap_err().kind,
            ErrorKind::NotManaged
        );
        let m = Layout {
            kind: ObjectKind::Mutex,
            ..q
        };
        assert_eq!(
            validate(&m.encode(), seg, &any).unwrap_err().kind,
            ErrorKind::LayoutMismatch
        );
        let a8 = Layout { align: 8, ..q };
        assert_eq!(
            validate(&a8.encode(), seg, &any).unwrap_err().kind,
            ErrorKind::LayoutMismatch
        );
        // A concrete size still has to match.
        assert_eq!(
            validate(&q.encode(), seg, &Layout { size: 8, ..q })
                .unwrap_err()
                .kind,
            ErrorKind::LayoutMismatch
        );
    }

    #[test]
    fn other_type_is_layout_mismatch() {
        let l = mutex_u64();
        let other = Layout { size: 16, ..l };
        let e = validate(&l.encode(), 200, &other).unwrap_err();
        assert_eq!(e.kind, ErrorKind::LayoutMismatch);
        let rw = Layout {
            kind: ObjectKind::RwLock,
            ..l
        };
        assert_eq!(
            validate(&l.encode(), 72, &rw).unwrap_err().kind,
            ErrorKind::LayoutMismatch
        );
    }
}
