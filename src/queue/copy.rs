//! Copying message bytes between the caller's buffer and the ring, at the same speed
//! wherever the two happen to lie.
//!
//! Why not always `memcpy`: on some CPUs (measured on an AMD EPYC VM, issue 15) glibc's
//! large-copy path, `rep movsb`, drops from ~37 GB/s to ~2 GB/s when source and
//! destination are a few bytes apart modulo 4 KiB: the CPU takes loads from the source for
//! loads of bytes just stored to the destination ("4K aliasing") and stalls. A ring's
//! offsets move with every record, so a queue hits such a distance by chance, and its
//! large-message throughput swung 2-10x from run to run. When the two pointers are that
//! close modulo 4 KiB, [`copy`] moves the bytes itself in 128-byte blocks of vector loads
//! and stores, stores aligned, which has no such cliff; at every other distance, and for
//! small copies (which glibc does with vector moves anyway), it calls `memcpy`.
//!
//! On the Intel VM the README's figures come from, where `memcpy` has no such cliff, the
//! block copy runs level with it (12.6-13.2 against 12.6-13.0 GB/s for 4 KiB to 1 MiB
//! copies through a 4 MiB ring, at distances 1, 8, 31 and 63; 38-40 GB/s both in cache).

use std::ptr;

/// The page size that aliasing is counted in: loads and stores are compared by their
/// address's low 12 bits.
const PAGE: usize = 4096;
/// Distances (in either direction, modulo 4 KiB) at which `memcpy` is avoided: a block
/// and a half of 32-byte vectors past the measured 1-31 bytes.
const NEAR: usize = 64;
/// Copies shorter than this go to `memcpy` whatever the distance: glibc copies them with
/// vector moves (its `rep movsb` threshold is 2 KiB or more).
const BLOCKS_FROM: usize = 2048;
/// Bytes loaded before they are stored, in the block copy.
const BLOCK: usize = 128;

/// Are `src` and `dst` a few bytes apart (but not 0) modulo 4 KiB?
fn near_alias(src: *const u8, dst: *const u8) -> bool {
    let d = (dst as usize).wrapping_sub(src as usize) % PAGE;
    d != 0 && !(NEAR..=PAGE - NEAR).contains(&d)
}

/// Copies `len` bytes from `src` to `dst`, as `ptr::copy_nonoverlapping`.
///
/// # Safety
/// As `ptr::copy_nonoverlapping`: `src` valid for `len` reads, `dst` for `len` writes,
/// the two ranges not overlapping.
#[inline]
pub(super) unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    if len < BLOCKS_FROM || !near_alias(src, dst) {
        // SAFETY: the caller's guarantee.
        unsafe { ptr::copy_nonoverlapping(src, dst, len) };
        return;
    }
    // First the bytes up to `dst`'s next 64-byte boundary, so that no block's store
    // straddles two cache lines (without this the copy ran at 0.7x memcpy here; the loads
    // may straddle, which costs less).
    let mut done = dst.align_offset(64).min(len);
    // SAFETY: done <= len: inside both ranges.
    unsafe { ptr::copy_nonoverlapping(src, dst, done) };
    while len - done >= BLOCK {
        // SAFETY: done + BLOCK <= len: the block lies inside both ranges, which the caller
        // guarantees valid and apart. Unaligned reads and writes: `src` has any alignment,
        // and `[u8; N]` asks for none anyway.
        unsafe {
            let block = ptr::read_unaligned(src.add(done).cast::<[u8; BLOCK]>());
            ptr::write_unaligned(dst.add(done).cast::<[u8; BLOCK]>(), block);
        }
        done += BLOCK;
    }
    // SAFETY: the last len - done < BLOCK bytes, inside both ranges.
    unsafe { ptr::copy_nonoverlapping(src.add(done), dst.add(done), len - done) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_alias_is_a_few_bytes_either_way_modulo_4k_but_not_0() {
        let base = 0x10_0000 as *const u8;
        let at = |d: usize| (0x10_0000 + d) as *const u8;
        assert!(!near_alias(base, base));
        assert!(!near_alias(base, at(PAGE)));
        assert!(near_alias(base, at(1)));
        assert!(near_alias(base, at(PAGE + 31)));
        assert!(near_alias(at(8), base));
        assert!(!near_alias(base, at(NEAR)));
        assert!(!near_alias(base, at(2048)));
    }

    /// Every length around the block size and the threshold, at distances near and far
    /// modulo 4 KiB, in both directions: the bytes arrive exactly, and nothing past the
    /// end of the destination is touched.
    #[test]
    fn copies_exactly_at_every_distance() {
        let src: Vec<u8> = (0..3 * PAGE).map(|i| (i * 7 + 3) as u8).collect();
        let mut dst = vec![0u8; 3 * PAGE + 2 * NEAR];
        for len in [
            0,
            1,
            127,
            128,
            129,
            2047,
            2048,
            2049,
            2048 + 127,
            4096,
            4096 + 5,
        ] {
            for dist in [0, 1, 8, 31, 63, 64, 100, PAGE - 1, PAGE - 63, PAGE - 64] {
                dst.fill(0xEE);
                // dst index such that (dst - src) % 4096 == dist.
                let src_at = NEAR;
                let want = (src.as_ptr() as usize + src_at + dist) % PAGE;
                let base = dst.as_ptr() as usize % PAGE;
                let dst_at = (want + PAGE - base) % PAGE;
                let s = &src[src_at..src_at + len];
                // SAFETY: both ranges in bounds (dst_at < 4096, len <= 4101), distinct
                // vectors.
                unsafe { copy(s.as_ptr(), dst.as_mut_ptr().add(dst_at), len) };
                assert_eq!(&dst[dst_at..dst_at + len], s, "len {len} dist {dist}");
                assert!(dst[..dst_at].iter().all(|&b| b == 0xEE));
                assert!(dst[dst_at + len..].iter().all(|&b| b == 0xEE));
            }
        }
    }
}
