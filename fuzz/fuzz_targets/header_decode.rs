//! Fuzzes the managed-segment header decoder (`shmsem::header::decode` and `validate`).
//!
//! Input: the first 8 bytes are the segment size (native-endian u64; shorter inputs are
//! zero-padded), the rest are the segment's first bytes. Besides "no panic", the target
//! checks what every opener relies on: a refusal is only ever `NotManaged` (or, from
//! `validate`, `LayoutMismatch`), and an accepted header's payload lies inside the segment.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shmsem::ErrorKind;
use shmsem::header::{self, Decoded, HEADER_SIZE, Layout, MAX_ALIGN, ObjectKind};

fn in_bounds(d: &Decoded, segment_size: usize) {
    assert!(d.kind.is_some(), "{d:?}");
    assert!(d.payload_offset >= HEADER_SIZE as u64, "{d:?}");
    assert!(d.payload_align.is_power_of_two(), "{d:?}");
    assert!(d.payload_align <= MAX_ALIGN as u64, "{d:?}");
    assert_eq!(d.payload_offset % d.payload_align, 0, "{d:?}");
    let end = d.payload_offset.checked_add(d.payload_size);
    assert!(
        end.is_some_and(|end| end <= segment_size as u64),
        "{d:?} does not fit in {segment_size} bytes"
    );
}

fn check(bytes: &[u8], segment_size: usize, want: &Layout) {
    let decoded = header::decode(bytes, segment_size);
    let validated = header::validate(bytes, segment_size, want);
    match &decoded {
        Ok(d) => in_bounds(d, segment_size),
        Err(r) => assert_eq!(r.kind, ErrorKind::NotManaged, "{}", r.reason),
    }
    match (&decoded, &validated) {
        (_, Ok(v)) => {
            assert_eq!(decoded.as_ref().ok(), Some(v));
            assert_eq!(v.kind, Some(want.kind));
            assert_eq!(v.payload_size, want.size as u64);
            assert_eq!(v.payload_align, want.align as u64);
            assert_eq!(v.payload_offset, want.payload_offset() as u64);
        }
        (Err(d), Err(v)) => assert_eq!(d, v),
        (Ok(_), Err(v)) => assert_eq!(v.kind, ErrorKind::LayoutMismatch, "{}", v.reason),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut size = [0u8; 8];
    let n = data.len().min(8);
    size[..n].copy_from_slice(&data[..n]);
    let segment_size = u64::from_ne_bytes(size) as usize;
    let bytes = &data[n..];

    // What a SharedMutex<u64> opener expects...
    let mutex_u64 = Layout {
        kind: ObjectKind::Mutex,
        size: 8,
        align: 8,
        nsems: 1,
    };
    check(bytes, segment_size, &mutex_u64);
    // ...and exactly what the header claims, so that validate's own checks are reached.
    if let Ok(d) = header::decode(bytes, segment_size) {
        let claimed = Layout {
            kind: d.kind.unwrap(),
            size: d.payload_size as usize,
            align: d.payload_align as usize,
            nsems: d.nsems as usize,
        };
        check(bytes, segment_size, &claimed);
        // Accepted, unless the offset is not the one a creator writes (64 rounded up to
        // the alignment): no opener expects that, and the decoder calls it a mismatch.
        let r = header::validate(bytes, segment_size, &claimed);
        if d.payload_offset == claimed.payload_offset() as u64 {
            assert!(r.is_ok(), "{r:?}");
        } else {
            assert_eq!(r.unwrap_err().kind, ErrorKind::LayoutMismatch);
        }
    }
});
