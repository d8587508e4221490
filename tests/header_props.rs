//! Property tests of the header decoder (`shmsem::header`) against hostile and invalid
//! input: arbitrary bytes, arbitrary segment sizes, valid headers with bytes or fields
//! changed. The decoder must never panic, must only ever refuse with `NotManaged` or
//! `LayoutMismatch`, and must never accept a header whose payload lies outside the
//! segment. Its answers are compared with a model written from docs/FORMAT.md.
//!
//! The last property runs end to end, on real segments and semaphore sets (a handful of
//! cases: each one creates IPC objects, removed again by `TestKey`).

mod common;

use std::time::Duration;

use common::TestKey;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use shmsem::header::{
    self, Decoded, HEADER_SIZE, Layout, MAGIC, MAX_ALIGN, ObjectKind, Rejection, VERSION,
};
use shmsem::{ErrorKind, LockError, Segment, SemOp, SemaphoreSet, SharedMutex};

/// Cases for the pure properties: enough to reach the odd corners, a few seconds in debug.
const CASES: u32 = 1024;
/// Cases for the end-to-end property (each one makes a segment and a semaphore set).
const IPC_CASES: u32 = 12;

// ---------------------------------------------------------------------------------------
// The model: docs/FORMAT.md's "Validation" section, in u128 so that nothing can overflow.
// ---------------------------------------------------------------------------------------

fn u32_at(h: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(h[at..at + 4].try_into().unwrap())
}

fn u64_at(h: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(h[at..at + 8].try_into().unwrap())
}

fn put_u32(h: &mut [u8], at: usize, v: u32) {
    h[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(h: &mut [u8], at: usize, v: u64) {
    h[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// What an opener expecting `want` (or anything, for `None`) must answer, per FORMAT.md.
fn model(bytes: &[u8], segment_size: usize, want: Option<&Layout>) -> Result<(), ErrorKind> {
    use ErrorKind::{LayoutMismatch, NotManaged};
    if segment_size < HEADER_SIZE || bytes.len() < HEADER_SIZE {
        return Err(NotManaged);
    }
    if bytes[0..8] != *b"shmsem\0\0" || u32_at(bytes, 8) != 2 {
        return Err(NotManaged);
    }
    let kind = u32_at(bytes, 12);
    if !(1..=4).contains(&kind) {
        return Err(NotManaged);
    }
    let (offset, size, align) = (u64_at(bytes, 16), u64_at(bytes, 24), u64_at(bytes, 32));
    if !align.is_power_of_two() || align > 4096 || offset < 64 || offset % align != 0 {
        return Err(NotManaged);
    }
    if u128::from(offset) + u128::from(size) > segment_size as u128 {
        return Err(NotManaged);
    }
    let Some(want) = want else { return Ok(()) };
    if kind != want.kind as u32
        || size != want.size as u64
        || align != want.align as u64
        || u32_at(bytes, 40) as usize != want.nsems
        // FORMAT.md does not name this case (a well-formed header whose offset is not "64
        // rounded up to payload_align"); the decoder calls it a layout mismatch.
        || offset != want.payload_offset() as u64
    {
        return Err(LayoutMismatch);
    }
    Ok(())
}

/// Everything that must hold of one (bytes, segment size, expected layout) input:
/// no panic, only the two refusal kinds, agreement with the model and between `decode`
/// and `validate`, and a payload that lies inside the segment whenever one is accepted.
fn check(bytes: &[u8], segment_size: usize, want: &Layout) -> Result<(), TestCaseError> {
    let decoded = header::decode(bytes, segment_size);
    let validated = header::validate(bytes, segment_size, want);

    for (what, r) in [("decode", &decoded), ("validate", &validated)] {
        if let Err(Rejection { kind, reason }) = r {
            prop_assert!(
                matches!(kind, ErrorKind::NotManaged | ErrorKind::LayoutMismatch),
                "{what} refused with {kind:?}: {reason}"
            );
            prop_assert!(!reason.is_empty(), "{what} refused without a reason");
        }
    }
    // decode only judges well-formedness: it never speaks of a mismatch.
    if let Err(r) = &decoded {
        prop_assert_eq!(r.kind, ErrorKind::NotManaged, "decode: {}", r.reason);
    }
    prop_assert_eq!(
        decoded.as_ref().map(|_| ()).map_err(|r| r.kind),
        model(bytes, segment_size, None),
        "decode disagrees with FORMAT.md (segment {} bytes, header {:02x?})",
        segment_size,
        &bytes[..bytes.len().min(HEADER_SIZE)]
    );
    prop_assert_eq!(
        validated.as_ref().map(|_| ()).map_err(|r| r.kind),
        model(bytes, segment_size, Some(want)),
        "validate disagrees with FORMAT.md (segment {} bytes, want {:?}, header {:02x?})",
        segment_size,
        want,
        &bytes[..bytes.len().min(HEADER_SIZE)]
    );
    // validate is decode first: the same refusal, or the same fields.
    match (&decoded, &validated) {
        (Err(d), Err(v)) => prop_assert_eq!(d, v),
        (Err(d), Ok(_)) => prop_assert!(false, "decode refused ({}), validate accepted", d.reason),
        (Ok(_), Err(v)) => prop_assert_eq!(v.kind, ErrorKind::LayoutMismatch, "{}", v.reason),
        (Ok(d), Ok(v)) => {
            prop_assert_eq!(d, v);
            prop_assert_eq!(v.kind, Some(want.kind));
            prop_assert_eq!(v.payload_size, want.size as u64);
            prop_assert_eq!(v.payload_align, want.align as u64);
            prop_assert_eq!(v.payload_offset, want.payload_offset() as u64);
            prop_assert_eq!(v.nsems as usize, want.nsems);
        }
    }
    if let Ok(d) = &decoded {
        check_in_bounds(d, segment_size)?;
    }
    Ok(())
}

/// An accepted header never sends a reader outside the segment.
fn check_in_bounds(d: &Decoded, segment_size: usize) -> Result<(), TestCaseError> {
    prop_assert!(d.kind.is_some());
    prop_assert!(d.payload_offset >= HEADER_SIZE as u64, "{d:?}");
    prop_assert!(
        d.payload_align.is_power_of_two() && d.payload_align <= MAX_ALIGN as u64,
        "{d:?}"
    );
    prop_assert_eq!(d.payload_offset % d.payload_align, 0, "{:?}", d);
    let end = d.payload_offset.checked_add(d.payload_size);
    prop_assert!(
        end.is_some_and(|end| end <= segment_size as u64),
        "payload {d:?} past the end of a segment of {segment_size} bytes"
    );
    // Where a segment of that size can be had, really take the payload out of it (the
    // usize conversions and the slice bounds are the ones Pair and the guards rely on).
    if segment_size <= 1 << 21 {
        let segment = vec![0u8; segment_size];
        let start = usize::try_from(d.payload_offset).unwrap();
        let len = usize::try_from(d.payload_size).unwrap();
        prop_assert_eq!(segment[start..start + len].len(), len);
        prop_assert_eq!(start % usize::try_from(d.payload_align).unwrap(), 0);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

fn any_kind() -> impl Strategy<Value = ObjectKind> {
    prop_oneof![
        Just(ObjectKind::Mutex),
        Just(ObjectKind::RwLock),
        Just(ObjectKind::Queue),
        Just(ObjectKind::Condvar)
    ]
}

/// Layouts a managed type can have: size below 1 MiB, alignment a power of two up to
/// 4096, 1 to 4 semaphores.
fn any_layout() -> impl Strategy<Value = Layout> {
    (any_kind(), 0usize..1 << 20, 0u32..=12, 1usize..=4).prop_map(|(kind, size, a, nsems)| Layout {
        kind,
        size,
        align: 1 << a,
        nsems,
    })
}

/// Segment sizes: the small and boundary ones, page-ish ones, anything, and the top.
fn any_segment_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1usize),
        0usize..HEADER_SIZE,
        HEADER_SIZE..HEADER_SIZE + 64,
        0usize..1 << 21,
        any::<usize>(),
        usize::MAX - 4096..=usize::MAX,
        Just(usize::MAX),
    ]
}

/// u64 field values that tend to break arithmetic: zero, small, powers of two and their
/// neighbours, the top of the range, anything.
fn nasty_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=8200,
        (0u32..64).prop_map(|s| 1u64 << s),
        (0u32..64).prop_map(|s| (1u64 << s) - 1),
        (0u32..64).prop_map(|s| (1u64 << s) + 1),
        u64::MAX - 8200..=u64::MAX,
        (0u64..=4096).prop_map(|k| u64::MAX - k * 4096),
        any::<u64>(),
    ]
}

/// A header with valid magic and version and every other field chosen to hurt: kinds
/// near the known ones, alignments that are powers of two (up to past 4096) or anything,
/// offsets just around the header's end, multiples of the alignment or anything, sizes
/// small or anything.
fn structured_header() -> impl Strategy<Value = [u8; HEADER_SIZE]> {
    (
        prop_oneof![3 => 1u32..=3, 1 => 0u32..=5, 1 => any::<u32>()],
        (
            prop_oneof![3 => (0u32..=14).prop_map(|s| 1u64 << s), 1 => nasty_u64()],
            0u8..3,
            0u64..=256,
            0u64..=20,
            nasty_u64(),
        ),
        prop_oneof![3 => 0u64..=8192, 1 => nasty_u64()],
        prop_oneof![3 => 1u32..=4, 1 => any::<u32>()],
        any::<[u8; 20]>(),
    )
        .prop_map(|(kind, (align, how, small, k, nasty), size, nsems, tail)| {
            let offset = match how {
                0 => small,
                1 => k.wrapping_mul(align),
                _ => nasty,
            };
            let mut h = [0u8; HEADER_SIZE];
            h[0..8].copy_from_slice(&MAGIC);
            put_u32(&mut h, 8, VERSION);
            put_u32(&mut h, 12, kind);
            put_u64(&mut h, 16, offset);
            put_u64(&mut h, 24, size);
            put_u64(&mut h, 32, align);
            put_u32(&mut h, 40, nsems);
            h[44..64].copy_from_slice(&tail);
            h
        })
}

/// The layout a header claims (its own fields, truncated to usize), so that an opener
/// expecting exactly what a hostile header says is tried as well.
fn layout_of(h: [u8; HEADER_SIZE]) -> Layout {
    Layout {
        kind: match u32_at(&h, 12) {
            2 => ObjectKind::RwLock,
            3 => ObjectKind::Queue,
            4 => ObjectKind::Condvar,
            _ => ObjectKind::Mutex,
        },
        size: u64_at(&h, 24) as usize,
        align: (u64_at(&h, 32) as usize).clamp(1, MAX_ALIGN),
        nsems: u32_at(&h, 40) as usize,
    }
}

/// Up to four (index into the header, non-zero xor mask) pairs.
fn byte_flips() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((0usize..HEADER_SIZE, 1u8..=255), 1..=4)
}

fn apply(h: &mut [u8], flips: &[(usize, u8)]) {
    for &(i, x) in flips {
        h[i] ^= x;
    }
}

// ---------------------------------------------------------------------------------------
// Properties of the pure decoder
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Arbitrary bytes, arbitrary segment sizes: no panic, only the two refusals.
    #[test]
    fn arbitrary_bytes_are_refused_cleanly(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        segment_size in any_segment_size(),
        want in any_layout(),
    ) {
        check(&bytes, segment_size, &want)?;
    }

    /// Arbitrary bytes behind a valid magic (and sometimes version), so that the checks
    /// after the magic are reached too.
    #[test]
    fn arbitrary_bytes_after_the_magic_are_refused_cleanly(
        rest in proptest::collection::vec(any::<u8>(), 0..192),
        good_version in any::<bool>(),
        segment_size in any_segment_size(),
        want in any_layout(),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&rest);
        if good_version && bytes.len() >= 12 {
            put_u32(&mut bytes, 8, VERSION);
        }
        check(&bytes, segment_size, &want)?;
    }

    /// Well-formed-looking headers whose numbers are chosen to overflow or mislead, in
    /// segments of any size or of just about the size the header claims.
    #[test]
    fn hostile_field_values_are_refused_cleanly(
        h in structured_header(),
        segment_size in any_segment_size(),
        near_the_claim in prop_oneof![Just(None), (-2i128..=2).prop_map(Some)],
        want in prop_oneof![any_layout(), structured_header().prop_map(layout_of)],
    ) {
        let segment_size = match near_the_claim {
            // offset + size (as the header claims it) plus or minus a byte or two.
            Some(delta) => {
                let claim = i128::from(u64_at(&h, 16)) + i128::from(u64_at(&h, 24)) + delta;
                usize::try_from(claim.max(0)).unwrap_or(usize::MAX)
            }
            None => segment_size,
        };
        check(&h, segment_size, &want)?;
    }

    /// A valid header is accepted for its own layout whenever the segment holds the
    /// payload, whatever the live words and reserved bytes say and whatever follows it.
    #[test]
    fn a_valid_header_validates_against_its_own_layout(
        layout in any_layout(),
        extra in prop_oneof![0usize..4096, any::<usize>()],
        live_and_reserved in any::<[u8; 20]>(),
        trailer in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let needed = layout.segment_size().unwrap();
        let segment_size = needed.saturating_add(extra);
        let mut bytes = layout.encode().to_vec();
        let d = header::validate(&bytes, segment_size, &layout).unwrap();
        prop_assert_eq!((d.holder, d.poison), (0, 0));
        bytes[44..64].copy_from_slice(&live_and_reserved);
        bytes.extend_from_slice(&trailer);
        let d = header::validate(&bytes, segment_size, &layout);
        prop_assert!(d.is_ok(), "{:?}", d);
        let d = d.unwrap();
        prop_assert_eq!(d.holder, u32::from_ne_bytes(live_and_reserved[0..4].try_into().unwrap()));
        prop_assert_eq!(d.poison, u32::from_ne_bytes(live_and_reserved[4..8].try_into().unwrap()));
        check(&bytes, segment_size, &layout)?;
    }

    /// A segment too short for the payload the header describes is not managed.
    #[test]
    fn a_segment_shorter_than_the_payload_is_not_managed(
        layout in any_layout(),
        short_by in 1usize..=8192,
    ) {
        let needed = layout.segment_size().unwrap();
        let segment_size = needed.saturating_sub(short_by);
        let r = header::validate(&layout.encode(), segment_size, &layout);
        prop_assert_eq!(r.map(|_| ()).map_err(|r| r.kind), Err(ErrorKind::NotManaged));
        check(&layout.encode(), segment_size, &layout)?;
    }

    /// A changed magic byte, or another version, is not managed, whatever else holds.
    #[test]
    fn wrong_magic_or_version_is_not_managed(
        layout in any_layout(),
        magic_flip in (0usize..8, 1u8..=255),
        version in any::<u32>().prop_filter("another version", |v| *v != VERSION),
        which in 0u8..3,
        segment_size in prop_oneof![any::<usize>(), Just(usize::MAX)],
    ) {
        let mut h = layout.encode();
        if which != 1 {
            h[magic_flip.0] ^= magic_flip.1;
        }
        if which != 0 {
            put_u32(&mut h, 8, version);
        }
        let r = header::validate(&h, segment_size, &layout);
        prop_assert_eq!(r.map(|_| ()).map_err(|r| r.kind), Err(ErrorKind::NotManaged));
        check(&h, segment_size, &layout)?;
    }

    /// A valid header read by an opener that expects another kind, size, alignment or
    /// number of semaphores is a layout mismatch.
    #[test]
    fn another_layout_is_layout_mismatch(
        layout in any_layout(),
        other in any_layout(),
        field in 0u8..4,
        extra in 0usize..4096,
    ) {
        let mut want = layout;
        match field {
            0 => want.kind = other.kind,
            1 => want.size = other.size,
            2 => want.align = other.align,
            _ => want.nsems = other.nsems,
        }
        prop_assume!(want != layout);
        let segment_size = layout.segment_size().unwrap() + extra;
        let r = header::validate(&layout.encode(), segment_size, &want);
        prop_assert_eq!(r.map(|_| ()).map_err(|r| r.kind), Err(ErrorKind::LayoutMismatch));
        check(&layout.encode(), segment_size, &want)?;
    }

    /// Offset and size fields whose sum overflows u64 are not managed, even in a segment
    /// of usize::MAX bytes (the end cannot be computed, so nothing can be read there).
    #[test]
    fn overflowing_offset_or_size_is_not_managed(
        layout in any_layout(),
        offset_steps in 0u64..=4096,
        size_back in 0u64..=8192,
        which in 0u8..3,
        segment_size in prop_oneof![any::<usize>(), Just(usize::MAX)],
    ) {
        let align = layout.align as u64;
        let mut h = layout.encode();
        let offset = match which {
            // The largest offsets that are still multiples of the alignment...
            0 => (u64::MAX - u64::MAX % align) - offset_steps * align,
            // ...or the real one, with a size that overflows past it...
            1 => layout.payload_offset() as u64,
            // ...or both huge.
            _ => u64::MAX - u64::MAX % align,
        };
        // Any size with offset + size > u64::MAX.
        let size = u64::MAX - size_back.min(offset - 1);
        prop_assume!(offset.checked_add(size).is_none());
        put_u64(&mut h, 16, offset);
        put_u64(&mut h, 24, size);
        let r = header::validate(&h, segment_size, &layout);
        prop_assert_eq!(r.map(|_| ()).map_err(|r| r.kind), Err(ErrorKind::NotManaged));
        let r = header::decode(&h, segment_size);
        prop_assert_eq!(r.map(|_| ()).map_err(|r| r.kind), Err(ErrorKind::NotManaged));
        check(&h, segment_size, &layout)?;
    }

    /// A valid header with arbitrary bytes changed: no panic, only the two refusals, the
    /// model's answer; changes confined to the live words and reserved bytes are harmless,
    /// and any change to the magic or version is `NotManaged`.
    #[test]
    fn a_valid_header_with_bytes_changed_is_judged_like_the_model(
        layout in any_layout(),
        flips in byte_flips(),
        segment_size in prop_oneof![
            3 => any_layout().prop_map(|l| l.segment_size().unwrap()),
            1 => any_segment_size(),
        ],
        enough in any::<bool>(),
    ) {
        let segment_size = if enough {
            segment_size.max(layout.segment_size().unwrap())
        } else {
            segment_size
        };
        let original = layout.encode();
        let mut h = original;
        apply(&mut h, &flips);
        check(&h, segment_size, &layout)?;
        let r = header::validate(&h, segment_size, &layout).map(|_| ()).map_err(|r| r.kind);
        // Judged by the bytes that ended up different: two flips of one byte can cancel.
        if h[..12] != original[..12] {
            prop_assert_eq!(r, Err(ErrorKind::NotManaged));
        }
        if enough && h[..44] == original[..44] {
            prop_assert_eq!(r, Ok(()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// End to end: the same bytes in a real segment, opened as SharedMutex<u64>
// ---------------------------------------------------------------------------------------

/// Semaphores of a mutex's set: the lock, then 256 lease slots of two (FORMAT.md).
const MUTEX_NSEMS: usize = 1 + 2 * 256;

/// The header a `SharedMutex<u64>` writes.
fn mutex_u64() -> Layout {
    Layout {
        kind: ObjectKind::Mutex,
        size: 8,
        align: 8,
        nsems: MUTEX_NSEMS,
    }
}

/// Bytes for the start of a foreign segment: anything, or a `SharedMutex<u64>` header
/// (with a value behind it) with a few bytes changed or none.
fn foreign_prefix() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..128),
        (
            proptest::collection::vec((0usize..HEADER_SIZE, 1u8..=255), 0..=2),
            any::<u64>()
        )
            .prop_map(|(flips, value)| {
                let mut h = mutex_u64().encode().to_vec();
                apply(&mut h, &flips);
                h.extend_from_slice(&value.to_ne_bytes());
                h
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(IPC_CASES))]

    /// A segment of any size holding any bytes, paired with an initialised semaphore set
    /// of a mutex's size: `SharedMutex::<u64>::open` refuses it with `NotManaged` or
    /// `LayoutMismatch`, exactly as the pure decoder judges the same bytes, and when the
    /// bytes do form a valid header the value behind it can be locked and read.
    #[test]
    fn open_on_a_foreign_segment_is_refused_cleanly(
        size in prop_oneof![1usize..HEADER_SIZE, HEADER_SIZE..HEADER_SIZE + 16, 1usize..8192],
        prefix in foreign_prefix(),
    ) {
        let tk = TestKey::new();
        let seg = Segment::create(tk.key(), size, 0o600).unwrap();
        let written = &prefix[..prefix.len().min(size)];
        seg.write_all_at(written, 0).unwrap();
        let set = SemaphoreSet::create(tk.key(), MUTEX_NSEMS, 0o600).unwrap();
        set.op(&[SemOp::post(0)]).unwrap(); // sets sem_otime: "initialised"

        // What the opener reads: the segment's first bytes (zero-filled past what we wrote).
        let mut head = vec![0u8; size.min(HEADER_SIZE)];
        seg.read_exact_at(&mut head, 0).unwrap();
        let expected = header::validate(&head, size, &mutex_u64()).map(|_| ()).map_err(|r| r.kind);

        let opened = SharedMutex::<u64>::options()
            .init_timeout(Duration::from_millis(100))
            .open(tk.key());
        match opened {
            Err(e) => {
                prop_assert!(
                    matches!(e.kind(), ErrorKind::NotManaged | ErrorKind::LayoutMismatch),
                    "{e}"
                );
                prop_assert_eq!(Err(e.kind()), expected, "{}", e);
            }
            Ok(m) => {
                prop_assert_eq!(Ok(()), expected);
                let guard = match m.try_lock() {
                    Ok(g) => g,
                    // A holder word left non-zero reads as a dead holder: still the guard.
                    Err(LockError::Poisoned(p)) => p.into_inner(),
                    Err(e) => return Err(TestCaseError::fail(format!("try_lock: {e}"))),
                };
                let mut payload = [0u8; 8];
                seg.read_exact_at(&mut payload, 64).unwrap();
                prop_assert_eq!(*guard, u64::from_ne_bytes(payload));
            }
        }
    }
}
