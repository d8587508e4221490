//! Sizes and limits at their edges, read from the running kernel where the kernel sets
//! them: a payload aligned above a page, a segment one byte past SHMMAX, a set one
//! semaphore past SEMMSL, a value pushed past SEMVMX by semop, one operation past SEMOPM.
//!
//! Already covered elsewhere, so not repeated here: `set_value` outside 0..=32767
//! (tests/raw.rs, `semaphore_set_invalid_input`), a foreign segment with a garbage header
//! and an initialised set (tests/mutex.rs, `foreign_segments_are_not_managed`), and
//! `Key::PRIVATE` to `SharedMutex::open` (tests/mutex.rs,
//! `private_mutexes_are_shared_through_fork`).

mod common;

use common::{TestKey, key_in_use};
use shmsem::{ErrorKind, Key, Pod, Segment, SemOp, SemaphoreSet, SharedMutex, Zeroable};

/// A payload aligned to 8192, above the 4096 that `shmat`'s page alignment guarantees.
/// (bytemuck derives Pod for it: `repr(C, align(N))` with no padding, since the field
/// fills the whole alignment. `[u64; 1024]` because bytemuck, without its
/// `min_const_generics` feature, implements Pod only for some array lengths.)
#[repr(C, align(8192))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct OverAligned([u64; 1024]);

/// Page-aligned (4096), the most that is offered: the edge that must still work.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PageAligned([u8; 4096]);

fn proc_numbers(path: &str) -> Vec<u128> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.split_whitespace()
        .map(|n| n.parse().unwrap_or_else(|e| panic!("{path}: {n:?}: {e}")))
        .collect()
}

#[test]
fn a_payload_aligned_above_a_page_is_invalid_input() {
    assert_eq!(align_of::<OverAligned>(), 8192);
    let tk = TestKey::new();
    let err = SharedMutex::create(tk.key(), OverAligned([7; 1024])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("8192"), "{err}");
    let err = SharedMutex::<OverAligned>::options()
        .open_or_create(tk.key(), OverAligned([7; 1024]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // A private key is refused the same way (nothing is made that would have to go).
    let err = SharedMutex::create(Key::PRIVATE, OverAligned([7; 1024])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(
        key_in_use(tk.key()),
        (false, false),
        "a refused create made something"
    );

    // Open: refused before looking, whether or not something has the key.
    let err = SharedMutex::<OverAligned>::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let page = SharedMutex::create(tk.key(), PageAligned([1; 4096])).unwrap();
    assert_eq!(page.segment().len(), 4096 + 4096, "payload at offset 4096");
    let err = SharedMutex::<OverAligned>::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // The page-aligned edge works, and the value sits where the header says.
    let other = SharedMutex::<PageAligned>::open(tk.key()).unwrap();
    assert_eq!(other.lock().unwrap().0, [1; 4096]);
    assert_eq!(other.lock().unwrap().0.as_ptr() as usize % 4096, 0);
    page.remove().unwrap();
}

#[test]
fn a_segment_one_byte_past_shmmax_is_limit_reached() {
    let shmmax = proc_numbers("/proc/sys/kernel/shmmax")[0];
    let size = usize::try_from(shmmax + 1).unwrap_or(usize::MAX);
    let tk = TestKey::new();
    let err = Segment::create(tk.key(), size, 0o600).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitReached, "size {size}: {err}");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    assert_eq!(key_in_use(tk.key()), (false, false));
}

#[test]
fn a_set_one_past_semmsl_is_limit_reached_and_semmsl_itself_is_not() {
    // /proc/sys/kernel/sem: SEMMSL SEMMNS SEMOPM SEMMNI.
    let semmsl = usize::try_from(proc_numbers("/proc/sys/kernel/sem")[0]).unwrap();
    let tk = TestKey::new();
    let err = SemaphoreSet::create(tk.key(), semmsl + 1, 0o600).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::LimitReached,
        "nsems {}: {err}",
        semmsl + 1
    );
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    assert_eq!(key_in_use(tk.key()), (false, false));
    // Exactly SEMMSL is allowed, and the last index is usable.
    let set = SemaphoreSet::create(tk.key(), semmsl, 0o600).unwrap();
    assert_eq!(set.len(), semmsl);
    set.op(&[SemOp::post(semmsl - 1)]).unwrap();
    assert_eq!(set.value(semmsl - 1).unwrap(), 1);
    set.remove().unwrap();
}

#[test]
fn semop_past_semvmx_is_limit_reached_and_changes_nothing() {
    let tk = TestKey::new();
    let set = SemaphoreSet::create(tk.key(), 2, 0o600).unwrap();
    set.op(&[SemOp::new(0, i16::MAX)]).unwrap();
    assert_eq!(set.value(0).unwrap(), 32767, "SEMVMX itself is reachable");
    let err = set.op(&[SemOp::new(0, i16::MAX)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitReached, "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::ERANGE), "{err}");
    assert_eq!(set.value(0).unwrap(), 32767);
    // One past is enough, through op_timeout too, and the list is all or nothing.
    assert_eq!(
        set.op(&[SemOp::post(1), SemOp::post(0)])
            .unwrap_err()
            .kind(),
        ErrorKind::LimitReached
    );
    assert_eq!(
        set.op_timeout(&[SemOp::post(0)], std::time::Duration::from_millis(10))
            .unwrap_err()
            .kind(),
        ErrorKind::LimitReached
    );
    assert_eq!(
        set.value(1).unwrap(),
        0,
        "a refused semop applied part of its list"
    );
    set.remove().unwrap();
}

#[test]
fn more_operations_than_semopm_is_limit_reached() {
    let semopm = usize::try_from(proc_numbers("/proc/sys/kernel/sem")[2]).unwrap();
    let tk = TestKey::new();
    let set = SemaphoreSet::create(tk.key(), 1, 0o600).unwrap();
    set.op(&vec![SemOp::new(0, 0); semopm]).unwrap(); // wait-for-zero, passes at once
    let err = set.op(&vec![SemOp::new(0, 0); semopm + 1]).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::LimitReached,
        "{} ops: {err}",
        semopm + 1
    );
    assert_eq!(err.raw_os_error(), Some(libc::E2BIG), "{err}");
    set.remove().unwrap();
}
