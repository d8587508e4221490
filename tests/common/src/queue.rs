//! The queue's control block (docs/FORMAT.md, "Queue (kind 3)"), read and written through
//! a raw [`Segment`] the way a hostile or crashed peer would: field offsets relative to
//! the payload, and accessors that find the payload from the header.

use shmsem::Segment;

/// The ring's size in bytes (u64).
pub const CAPACITY: usize = 0;
/// Open, closed or removed (u32).
pub const STATE: usize = 8;
/// Bytes ever published (u64).
pub const TAIL: usize = 128;
/// Bytes ever consumed (u64).
pub const HEAD: usize = 256;
/// The producers' lock word (u32: 0, or the holder's lease token).
pub const PRODUCER_LOCK: usize = 384;
/// The consumers' lock word.
pub const CONSUMER_LOCK: usize = 512;
/// Consumers registered to sleep on `DATA` (u32).
pub const WAITING_CONSUMERS: usize = 640;
/// Producers registered to sleep on `SPACE` (u32).
pub const WAITING_PRODUCERS: usize = 768;
/// The ring starts after the 1024-byte control block.
pub const RING: usize = 1024;

/// The payload offset, from the header (bytes 16..24).
pub fn payload_offset(seg: &Segment) -> usize {
    let mut b = [0u8; 8];
    seg.read_exact_at(&mut b, 16).unwrap();
    u64::from_ne_bytes(b) as usize
}

/// The u32 (as i32) at control block offset `field`.
pub fn read_i32(seg: &Segment, field: usize) -> i32 {
    let mut b = [0u8; 4];
    seg.read_exact_at(&mut b, payload_offset(seg) + field)
        .unwrap();
    i32::from_ne_bytes(b)
}

/// The u64 at control block offset `field`.
pub fn read_u64(seg: &Segment, field: usize) -> u64 {
    let mut b = [0u8; 8];
    seg.read_exact_at(&mut b, payload_offset(seg) + field)
        .unwrap();
    u64::from_ne_bytes(b)
}

/// Writes `v` at control block offset `field`.
pub fn write_i32(seg: &Segment, field: usize, v: i32) {
    seg.write_all_at(&v.to_ne_bytes(), payload_offset(seg) + field)
        .unwrap();
}
