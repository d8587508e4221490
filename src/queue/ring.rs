//! The queue's shared-memory format (docs/FORMAT.md, "Queue (kind 3)"): the control block,
//! the ring of records, and the copies into and out of the ring.
//!
//! Ring invariants (cited in the code as "Ring invariant N"):
//!
//! 1. `head <= tail <= head + capacity`; both are multiples of 8 and only grow. So the
//!    length word at `pos % capacity` lies whole and aligned inside the ring.
//! 2. The bytes from `head` to `tail` are a sequence of complete records: an 8-byte length,
//!    the message, padding to a multiple of 8. A record may wrap round the ring's end; its
//!    length word never does.
//! 3. A record's bytes are written before `tail` moves past them (publishing), and are
//!    read before `head` moves past them (consuming): whoever dies half-way has made
//!    nothing visible, and taken nothing from anyone else.
//!
//! The control block is in shared memory, so another process can write anything into it:
//! every value read from it is checked against these invariants before it is used
//! (`transfer.rs`), and a violation is a "corrupt queue" error.

use std::sync::atomic::{AtomicU32, AtomicU64};

use super::Queue;
use super::copy::copy;

/// The control block's fields each sit in their own 128-byte slot: a cache line, plus the
/// neighbour that adjacent-line prefetchers pull in with it, so a producer writing `tail`
/// never invalidates the line a consumer writes `head` in.
pub(super) const SLOT: usize = 128;
/// Size of the control block; the ring follows it.
pub(super) const CONTROL_SIZE: usize = 1024;
/// Records are aligned to this, and the ring's capacity is a multiple of it.
pub(super) const RECORD_ALIGN: usize = 8;
/// The length word that starts every record.
pub(super) const LEN_SIZE: usize = 8;

/// Values of the state word.
pub(super) const OPEN: u32 = 0;
pub(super) const CLOSED: u32 = 1;
pub(super) const REMOVED: u32 = 2;

/// One slot of the control block.
#[repr(C, align(128))]
pub(super) struct Slot<T>(pub(super) T);

/// Slot 0: written once by the creator (capacity) or rarely (state), read by everyone.
#[repr(C)]
pub(super) struct Meta {
    /// Bytes in the ring.
    pub(super) capacity: AtomicU64,
    /// `OPEN`, `CLOSED` or `REMOVED`.
    pub(super) state: AtomicU32,
}

/// The control block at the start of the payload. Every field is an atomic: other
/// processes touch them concurrently, and only ever atomically.
#[repr(C)]
pub(super) struct Control {
    pub(super) meta: Slot<Meta>,
    /// Bytes published (monotonic).
    pub(super) tail: Slot<AtomicU64>,
    /// Bytes consumed (monotonic).
    pub(super) head: Slot<AtomicU64>,
    /// Lease token of the producer copying a record in, 0 if none.
    pub(super) producer_lock: Slot<AtomicU32>,
    /// Lease token of the consumer copying a record out, 0 if none.
    pub(super) consumer_lock: Slot<AtomicU32>,
    /// Consumers registered to sleep on `DATA` (and not yet woken).
    pub(super) waiting_consumers: Slot<AtomicU32>,
    /// Producers registered to sleep on `SPACE` (and not yet woken).
    pub(super) waiting_producers: Slot<AtomicU32>,
    // 896..1024: reserved (zero), not part of this struct.
}

// The byte offsets documented in docs/FORMAT.md.
const _: () = {
    assert!(size_of::<Slot<Meta>>() == SLOT);
    assert!(std::mem::offset_of!(Meta, capacity) == 0);
    assert!(std::mem::offset_of!(Meta, state) == 8);
    assert!(std::mem::offset_of!(Control, tail) == 128);
    assert!(std::mem::offset_of!(Control, head) == 256);
    assert!(std::mem::offset_of!(Control, producer_lock) == 384);
    assert!(std::mem::offset_of!(Control, consumer_lock) == 512);
    assert!(std::mem::offset_of!(Control, waiting_consumers) == 640);
    assert!(std::mem::offset_of!(Control, waiting_producers) == 768);
    assert!(size_of::<Control>() <= CONTROL_SIZE);
    assert!(align_of::<Control>() == SLOT);
};

/// Bytes a record of a `len`-byte message takes: length word plus padded message.
pub(super) fn record_size(len: usize) -> Option<usize> {
    len.checked_next_multiple_of(RECORD_ALIGN)?
        .checked_add(LEN_SIZE)
}

/// Does a record of `rec` bytes fit behind `tail` in a ring of `cap` bytes that has been
/// consumed up to `head`?
pub(super) fn fits(head: u64, tail: u64, cap: u64, rec: u64) -> bool {
    tail.checked_sub(head)
        .is_some_and(|used| used <= cap && cap - used >= rec)
}

/// The index `n` bytes past index `at` (`at < cap`, `n <= cap`), wrapping at the end:
/// `(at + n) % cap` without a division.
pub(super) fn advance(at: usize, n: usize, cap: usize) -> usize {
    let p = at + n;
    if p >= cap { p - cap } else { p }
}

/// Copies `src` into the ring at index `at`, wrapping at the end.
///
/// # Safety
/// `ring` must be valid for writes of `cap` bytes, `at < cap`, `src.len() <= cap`, and
/// `src` must not overlap the ring.
#[inline]
pub(super) unsafe fn copy_into_ring(ring: *mut u8, cap: usize, at: usize, src: &[u8]) {
    let first = src.len().min(cap - at);
    // SAFETY: at + first <= cap, and the wrapped part, src.len() - first <= cap, starts
    // at 0: both ranges lie inside the ring; `src` is valid for src.len() reads; the
    // caller guarantees the ring's validity and no overlap.
    unsafe {
        copy(src.as_ptr(), ring.add(at), first);
        // Most records do not wrap: no call for nothing.
        if first < src.len() {
            copy(src.as_ptr().add(first), ring, src.len() - first);
        }
    }
}

/// Copies `len` bytes from the ring at index `at` (wrapping at the end) to `dst`.
///
/// # Safety
/// `ring` must be valid for reads of `cap` bytes, `at < cap`, `len <= cap`, and `dst`
/// valid for writes of `len` bytes, not overlapping the ring.
#[inline]
pub(super) unsafe fn copy_from_ring(
    ring: *const u8,
    cap: usize,
    at: usize,
    dst: *mut u8,
    len: usize,
) {
    let first = len.min(cap - at);
    // SAFETY: as in copy_into_ring, with the roles swapped.
    unsafe {
        copy(ring.add(at), dst, first);
        if first < len {
            copy(ring, dst.add(first), len - first);
        }
    }
}

/// The first bytes of a new queue's payload: the capacity, the control block's first word
/// (the segment is zeroed, so everything else starts at 0: open, empty, unlocked, nobody
/// waiting).
pub(super) fn initial_control(cap: usize) -> [u8; 8] {
    (cap as u64).to_ne_bytes()
}

impl Queue {
    /// Where position `pos` lies in the ring: `pos % capacity`, by a mask when the
    /// capacity is a power of two. A 64-bit division costs tens of cycles, and every send
    /// and every receive computes one.
    pub(super) fn index(&self, pos: u64) -> usize {
        let cap = self.capacity as u64;
        // Not `is_power_of_two`: without POPCNT (baseline x86-64) that is a dozen
        // instructions. The capacity is at least 8, never 0.
        let i = if cap & (cap - 1) == 0 {
            pos & (cap - 1)
        } else {
            pos % cap
        };
        i as usize
    }

    pub(super) fn ctl(&self) -> &Control {
        // SAFETY: checked in from_pair: the payload holds at least CONTROL_SIZE bytes and
        // is SLOT-aligned; the segment stays attached while &self lives. Every field is an
        // atomic (shared mutation through & is allowed), and other processes only touch
        // them atomically.
        unsafe { &*self.pair.payload().cast::<Control>() }
    }

    pub(super) fn ring(&self) -> *mut u8 {
        // SAFETY: the ring starts right after the control block, inside the payload
        // (payload_size = CONTROL_SIZE + capacity, checked in from_pair).
        unsafe { self.pair.payload().add(CONTROL_SIZE) }
    }

    /// The length word of the record at ring index `at`.
    ///
    /// # Safety
    /// `at` must be a multiple of 8 below the capacity.
    pub(super) unsafe fn len_word(&self, at: usize) -> &AtomicU64 {
        debug_assert!(at % RECORD_ALIGN == 0 && at < self.capacity);
        // SAFETY: at + 8 <= capacity (the capacity is a multiple of 8), so the word lies
        // in the ring; the ring starts at payload + 1024 with the payload 128-aligned, so
        // the word is 8-aligned. Processes access length words only atomically.
        unsafe { &*self.ring().add(at).cast::<AtomicU64>() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_pad_to_eight_plus_the_length_word() {
        assert_eq!(record_size(0), Some(8));
        assert_eq!(record_size(1), Some(16));
        assert_eq!(record_size(8), Some(16));
        assert_eq!(record_size(9), Some(24));
        assert_eq!(record_size(usize::MAX), None);
        assert_eq!(record_size(usize::MAX - 7), None);
    }

    #[test]
    fn fits_checks_room_and_rejects_inconsistent_counters() {
        assert!(fits(0, 0, 64, 64));
        assert!(!fits(0, 8, 64, 64));
        assert!(fits(8, 8, 64, 64));
        assert!(!fits(9, 8, 64, 8)); // head past tail
        assert!(!fits(0, 72, 64, 0)); // more used than the capacity
    }

    #[test]
    fn the_ring_copies_wrap_around_the_end() {
        let mut ring = [0u8; 16];
        // SAFETY: a 16-byte local ring; at 12 < 16; 8 bytes <= 16; no overlap.
        unsafe { copy_into_ring(ring.as_mut_ptr(), 16, 12, b"abcdefgh") };
        assert_eq!(&ring[12..], b"abcd");
        assert_eq!(&ring[..4], b"efgh");
        let mut out = [0u8; 8];
        // SAFETY: as above, reading.
        unsafe { copy_from_ring(ring.as_ptr(), 16, 12, out.as_mut_ptr(), 8) };
        assert_eq!(&out, b"abcdefgh");
    }
}
