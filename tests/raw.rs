//! The raw layer (`Key`, `Segment`, `SemaphoreSet`/`SemOp`) and its errors, against the
//! real kernel objects.
//!
//! Every test uses its own `TestKey` (or `Key::PRIVATE`), so the tests run in parallel.
//! Forked children report through exit codes or pipes, never through stdout. Nothing
//! sleeps to synchronise: waits are on pipes, semaphores and children's exits, and
//! `wait_until` polls only kernel counters (waiter counts, attach counts).

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use common::{
    BOUND, Exit, Pipe, SIGNALS, TestKey, fork, fork_as_nobody, install_counting_handler,
    key_in_use, wait_until,
};
use shmsem::{Error, ErrorKind, Key, Segment, SemOp, SemaphoreSet};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Exit code a child uses to report an `ErrorKind` (0 is success).
fn kind_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::AlreadyExists => 10,
        ErrorKind::NotFound => 11,
        ErrorKind::PermissionDenied => 12,
        ErrorKind::Removed => 13,
        ErrorKind::WouldBlock => 14,
        ErrorKind::TimedOut => 15,
        ErrorKind::InvalidInput => 16,
        ErrorKind::LimitReached => 17,
        _ => 19,
    }
}

/// The exit code for a result: 0 for `Ok`, `kind_code` for an error.
fn code<T>(r: shmsem::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => kind_code(e.kind()),
    }
}

/// The error kind of a result that must be an error.
#[track_caller]
fn kind<T: std::fmt::Debug>(r: shmsem::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// A new set of `nsems` semaphores (mode 0o600) under a new test key.
fn new_set(nsems: usize) -> (TestKey, SemaphoreSet) {
    let tk = TestKey::new();
    let set = SemaphoreSet::create(tk.key(), nsems, 0o600).unwrap();
    (tk, set)
}

// ---------------------------------------------------------------------------------------
// 1. Key
// ---------------------------------------------------------------------------------------

#[test]
fn key_raw_round_trip_and_display() {
    for raw in [
        0,
        1,
        0x162e,
        0x7fff_ffff,
        -1,
        i32::MIN,
        0x8000_0001_u32 as i32,
    ] {
        let key = Key::from_raw(raw);
        assert_eq!(key.as_raw(), raw);
        assert_eq!(i32::from(key), raw);
        assert_eq!(key, Key::from_raw(raw));
        assert_eq!(key.to_string(), format!("0x{:08x}", raw as u32));
    }
    assert_eq!(Key::from_raw(0x162e).to_string(), "0x0000162e");
    assert_eq!(Key::from_raw(-1).to_string(), "0xffffffff");
    assert_eq!(Key::from_raw(i32::MIN).to_string(), "0x80000000");
    assert_eq!(Key::from_raw(0).to_string(), "0x00000000");
    assert_eq!(Key::PRIVATE.as_raw(), 0);
    assert_eq!(Key::PRIVATE.as_raw(), libc::IPC_PRIVATE);
    assert!(Key::PRIVATE.is_private());
    assert!(!Key::from_raw(1).is_private());
    assert_ne!(Key::from_raw(1), Key::from_raw(2));
}

#[test]
fn key_ftok_errors() {
    let missing = Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-file-for-ftok");
    let err = Key::ftok(&missing, b'S').unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("ftok"), "{err}");

    let err = Key::ftok("/", 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // proj_id 0 is refused even for a path that does not exist.
    assert_eq!(kind(Key::ftok(&missing, 0)), ErrorKind::InvalidInput);
}

#[test]
fn key_ftok_matches_glibc() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = std::env::temp_dir().join(format!("shmsem-raw-ftok-{}", std::process::id()));
    std::fs::write(&scratch, b"ftok").unwrap();
    let paths: Vec<PathBuf> = vec![
        PathBuf::from("/"),
        PathBuf::from("/dev/null"),
        std::env::temp_dir(),
        manifest.to_path_buf(),
        manifest.join("Cargo.toml"),
        manifest.join("src/lib.rs"),
        scratch.clone(),
    ];
    let mut checked = 0;
    for path in &paths {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        for id in [1u8, b'S', b'}', 0x7f, 0x80, 0xfe, 0xff] {
            // SAFETY: a valid NUL-terminated path.
            let expected = unsafe { libc::ftok(c.as_ptr(), libc::c_int::from(id)) };
            assert_ne!(expected, -1, "libc::ftok({path:?}) failed");
            let key = Key::ftok(path, id).unwrap();
            assert_eq!(
                key.as_raw(),
                expected,
                "ftok({path:?}, {id:#x}): ours {key}, glibc 0x{:08x}",
                expected as u32
            );
            assert_eq!((key.as_raw() as u32) >> 24, u32::from(id));
            checked += 1;
        }
    }
    std::fs::remove_file(&scratch).unwrap();
    assert_eq!(checked, paths.len() * 7);
}

// ---------------------------------------------------------------------------------------
// 2. Segment
// ---------------------------------------------------------------------------------------

#[test]
fn segment_create_is_exclusive_and_open_of_unused_key_is_not_found() {
    let tk = TestKey::new();
    let key = tk.key();
    assert_eq!(kind(Segment::open(key)), ErrorKind::NotFound);
    assert_eq!(kind(Segment::open_read_only(key)), ErrorKind::NotFound);

    let seg = Segment::create(key, 64, 0o600).unwrap();
    assert_eq!(seg.key(), key);
    let err = Segment::create(key, 64, 0o600).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    // A different size does not make it less exclusive.
    assert_eq!(
        kind(Segment::create(key, 4096, 0o600)),
        ErrorKind::AlreadyExists
    );

    let other = Segment::open(key).unwrap();
    assert_eq!(other.id(), seg.id());

    // Key::PRIVATE names no existing segment; creating with it always makes a new one.
    assert_eq!(kind(Segment::open(Key::PRIVATE)), ErrorKind::InvalidInput);
    let p1 = Segment::create(Key::PRIVATE, 16, 0o600).unwrap();
    let p2 = Segment::create(Key::PRIVATE, 16, 0o600).unwrap();
    assert_ne!(p1.id(), p2.id());
    p1.remove().unwrap();
    p2.remove().unwrap();
    seg.remove().unwrap();
}

#[test]
fn segment_open_read_only_reads_and_refuses_writes_without_crashing() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 100, 0o600).unwrap();
    assert!(!seg.is_read_only());
    seg.write_all_at(b"hello, reader", 10).unwrap();

    let ro = Segment::open_read_only(tk.key()).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.id(), seg.id());
    assert_eq!(ro.len(), 100);
    let mut buf = [0u8; 13];
    ro.read_exact_at(&mut buf, 10).unwrap();
    assert_eq!(&buf, b"hello, reader");

    // The write goes through a child: if the library wrote through the read-only mapping,
    // the child (not the test binary) would die of SIGSEGV.
    let mut child = fork(|| code(ro.write_all_at(b"X", 10)));
    assert_eq!(
        child.wait_timeout(BOUND),
        Exit::Code(kind_code(ErrorKind::PermissionDenied)),
        "write_all_at through a read-only attach must be PermissionDenied, not a crash"
    );
    let err = ro.write_all_at(b"X", 10).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    // Even an out-of-range write through a read-only handle is an error, not a crash.
    assert!(ro.write_all_at(b"X", 1000).is_err());
    ro.read_exact_at(&mut buf, 10).unwrap();
    assert_eq!(&buf, b"hello, reader", "nothing may have been written");

    // Writes through the read-write handle show through the read-only one.
    seg.write_all_at(b"H", 10).unwrap();
    ro.read_exact_at(&mut buf[..1], 10).unwrap();
    assert_eq!(buf[0], b'H');
    seg.remove().unwrap();
}

#[test]
fn segment_len_is_the_size_asked_for_and_access_is_bounds_checked() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 100, 0o600).unwrap();
    assert_eq!(
        seg.len(),
        100,
        "len is shm_segsz, not the page-rounded size"
    );
    assert!(!seg.is_empty());
    assert_eq!(Segment::open(tk.key()).unwrap().len(), 100);
    assert_eq!(seg.info().unwrap().size, 100);

    // A new segment is zeroed; the last byte is reachable.
    let mut all = [0xaau8; 100];
    seg.read_exact_at(&mut all, 0).unwrap();
    assert!(all.iter().all(|&b| b == 0));
    seg.write_all_at(&[7], 99).unwrap();
    seg.write_all_at(&[1; 100], 0).unwrap();
    seg.write_all_at(&[], 100).unwrap();

    let mut four = [0u8; 4];
    // offset + len > len.
    assert_eq!(
        kind(seg.read_exact_at(&mut four, 97)),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(seg.read_exact_at(&mut four, 100)),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(seg.read_exact_at(&mut all, 1)),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(seg.read_exact_at(&mut [0u8; 101], 0)),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(seg.write_all_at(&[2; 4], 97)), ErrorKind::InvalidInput);
    assert_eq!(
        kind(seg.write_all_at(&[2; 101], 0)),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(seg.write_all_at(&[2], 100)), ErrorKind::InvalidInput);
    // Within the page the kernel mapped, but past the size asked for.
    assert_eq!(kind(seg.write_all_at(&[2], 4000)), ErrorKind::InvalidInput);
    // offset + len overflows usize.
    for offset in [usize::MAX, usize::MAX - 1, usize::MAX - 3] {
        assert_eq!(
            kind(seg.read_exact_at(&mut four, offset)),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(seg.write_all_at(&[2; 4], offset)),
            ErrorKind::InvalidInput
        );
    }
    assert_eq!(
        kind(seg.read_exact_at(&mut [0u8], usize::MAX)),
        ErrorKind::InvalidInput
    );

    // Nothing was written by the failed calls.
    seg.read_exact_at(&mut all, 0).unwrap();
    assert_eq!(all, [1u8; 100]);
    seg.remove().unwrap();
}

#[test]
fn segment_size_zero_and_bad_mode_are_invalid_input() {
    let tk = TestKey::new();
    let err = Segment::create(tk.key(), 0, 0o600).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    for mode in [
        0o1600,
        0o4600,
        0o1000,
        0o2000,
        0o10000,
        u32::MAX,
        0o777 | 0o1000,
    ] {
        let err = Segment::create(tk.key(), 64, mode).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "mode {mode:#o}: {err}");
    }
    // Past SHMMAX (shmget's EINVAL on a create) is a limit, not a bad argument.
    let err = Segment::create(tk.key(), usize::MAX, 0o600).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitReached, "{err}");
    assert_eq!(
        key_in_use(tk.key()),
        (false, false),
        "a refused create made something"
    );
    // Every permission mode up to 0o777 is accepted and kept.
    let seg = Segment::create(tk.key(), 64, 0o777).unwrap();
    assert_eq!(seg.info().unwrap().mode & 0o777, 0o777);
    seg.remove().unwrap();
}

#[test]
fn segment_info_reports_the_kernel_fields() {
    let tk = TestKey::new();
    let before = SystemTime::now() - Duration::from_secs(5);
    let a = Segment::create(tk.key(), 100, 0o640).unwrap();
    let b = Segment::open(tk.key()).unwrap();

    // Another test's forked child inherits our attaches for its lifetime, so the count is
    // awaited (it is a kernel counter), not read once.
    let mut last = None;
    assert!(
        wait_until(BOUND, || {
            let info = a.info().unwrap();
            let ok = info.nattch == 2;
            last = Some(info);
            ok
        }),
        "nattch never 2 with two handles: {last:?}"
    );
    let info = a.info().unwrap();
    assert_eq!(info.size, 100);
    assert_eq!(info.mode & 0o777, 0o640);
    assert!(!info.is_marked_for_removal());
    assert_eq!(info.cpid, my_pid());
    assert_eq!(info.uid, 0);
    assert_eq!(info.cuid, 0);
    // SAFETY: getgid has no preconditions.
    let gid = unsafe { libc::getgid() };
    assert_eq!(info.gid, gid);
    assert_eq!(info.cgid, gid);
    let atime = info.atime.expect("atime set after an attach");
    let ctime = info.ctime.expect("ctime set at creation");
    assert!(atime >= before, "atime {atime:?} is too old");
    assert!(ctime >= before, "ctime {ctime:?} is too old");
    assert!(atime <= SystemTime::now() + Duration::from_secs(5));
    assert_eq!(b.info().unwrap().size, info.size);

    // Drop detaches: the count goes down and a detach time appears.
    drop(b);
    assert!(
        wait_until(BOUND, || a.info().unwrap().nattch == 1),
        "nattch did not go down when a handle was dropped: {:?}",
        a.info()
    );
    assert!(
        a.info().unwrap().dtime.is_some(),
        "dtime set after a detach"
    );

    let c = Segment::open_read_only(tk.key()).unwrap();
    assert!(wait_until(BOUND, || a.info().unwrap().nattch == 2));
    drop(c);
    assert!(wait_until(BOUND, || a.info().unwrap().nattch == 1));
    a.remove().unwrap();
}

#[test]
fn segment_remove_frees_the_key_but_keeps_attached_handles_working() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 128, 0o600).unwrap();
    let other = Segment::open(tk.key()).unwrap();
    seg.write_all_at(b"still here", 5).unwrap();
    seg.remove().unwrap();

    let err = Segment::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(!key_in_use(tk.key()).0);

    // Memory stays attached: both handles still read and write.
    let mut buf = [0u8; 10];
    seg.read_exact_at(&mut buf, 5).unwrap();
    assert_eq!(&buf, b"still here");
    other.read_exact_at(&mut buf, 5).unwrap();
    assert_eq!(&buf, b"still here");
    other.write_all_at(b"STILL", 5).unwrap();
    seg.read_exact_at(&mut buf, 5).unwrap();
    assert_eq!(&buf, b"STILL here");

    let info = seg.info().unwrap();
    assert!(info.is_marked_for_removal(), "mode {:#o}", info.mode);
    assert_eq!(info.mode & 0o777, 0o600);
    assert!(other.info().unwrap().is_marked_for_removal());

    // The key is free again: a new, different segment can be made with it.
    let fresh = Segment::create(tk.key(), 16, 0o600).unwrap();
    assert_ne!(fresh.id(), seg.id());
    assert!(!fresh.info().unwrap().is_marked_for_removal());
    fresh.remove().unwrap();
}

#[test]
fn segment_opens_one_that_a_c_program_made() {
    let tk = TestKey::new();
    let message = b"made by shmget(2), not by shmsem";
    // SAFETY: the C way: shmget, shmat, memcpy, shmdt, on a key of our own.
    let id = unsafe {
        let id = libc::shmget(
            tk.key().as_raw(),
            256,
            libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
        );
        assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
        let addr = libc::shmat(id, std::ptr::null(), 0);
        assert_ne!(
            addr as isize,
            -1,
            "shmat: {}",
            std::io::Error::last_os_error()
        );
        std::ptr::copy_nonoverlapping(message.as_ptr(), addr.cast::<u8>().add(3), message.len());
        assert_eq!(libc::shmdt(addr), 0);
        id
    };

    let seg = Segment::open(tk.key()).unwrap();
    assert_eq!(seg.id(), id);
    assert_eq!(seg.len(), 256);
    let mut buf = vec![0u8; message.len()];
    seg.read_exact_at(&mut buf, 3).unwrap();
    assert_eq!(&buf[..], &message[..]);
    // The raw layer adds nothing: everything else is zero.
    let mut all = vec![0u8; 256];
    seg.read_exact_at(&mut all, 0).unwrap();
    assert!(
        all[..3]
            .iter()
            .chain(&all[3 + message.len()..])
            .all(|&b| b == 0)
    );

    // And what we write, the C side sees.
    seg.write_all_at(b"reply", 200).unwrap();
    // SAFETY: attach read-only, read 5 bytes inside the 256-byte segment, detach.
    let seen = unsafe {
        let addr = libc::shmat(id, std::ptr::null(), libc::SHM_RDONLY);
        assert_ne!(addr as isize, -1);
        let mut out = [0u8; 5];
        std::ptr::copy_nonoverlapping(addr.cast::<u8>().add(200), out.as_mut_ptr(), 5);
        libc::shmdt(addr);
        out
    };
    assert_eq!(&seen, b"reply");
    seg.remove().unwrap();
}

// ---------------------------------------------------------------------------------------
// 3. SemaphoreSet
// ---------------------------------------------------------------------------------------

#[test]
fn semaphore_set_create_open_len_value_set_value() {
    let tk = TestKey::new();
    assert_eq!(kind(SemaphoreSet::open(tk.key())), ErrorKind::NotFound);
    let set = SemaphoreSet::create(tk.key(), 3, 0o600).unwrap();
    assert_eq!(set.len(), 3);
    assert!(!set.is_empty());
    assert_eq!(set.key(), tk.key());
    for i in 0..3 {
        assert_eq!(set.value(i).unwrap(), 0);
    }
    let info = set.info().unwrap();
    assert_eq!(info.nsems, 3);
    assert_eq!(info.mode & 0o777, 0o600);
    assert_eq!((info.uid, info.cuid), (0, 0));
    assert!(info.otime.is_none(), "no semop ran yet");
    assert!(info.ctime.is_some());

    assert_eq!(
        kind(SemaphoreSet::create(tk.key(), 3, 0o600)),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(SemaphoreSet::create(tk.key(), 1, 0o600)),
        ErrorKind::AlreadyExists
    );

    set.set_value(1, 5).unwrap();
    set.set_value(2, 32767).unwrap(); // SEMVMX is allowed
    let other = SemaphoreSet::open(tk.key()).unwrap();
    assert_eq!(other.id(), set.id());
    assert_eq!(other.len(), 3);
    assert_eq!(other.key(), tk.key());
    assert_eq!(other.value(0).unwrap(), 0);
    assert_eq!(other.value(1).unwrap(), 5);
    assert_eq!(other.value(2).unwrap(), 32767);
    other.set_value(2, 0).unwrap();
    assert_eq!(set.value(2).unwrap(), 0);

    set.op(&[SemOp::wait(1), SemOp::new(0, 3)]).unwrap();
    assert_eq!(set.value(1).unwrap(), 4);
    assert_eq!(set.value(0).unwrap(), 3);
    assert_eq!(set.last_pid(0).unwrap(), my_pid());
    assert!(set.info().unwrap().otime.is_some(), "a semop sets otime");
    set.remove().unwrap();
}

#[test]
fn semaphore_set_invalid_input() {
    let tk = TestKey::new();
    assert_eq!(
        kind(SemaphoreSet::create(tk.key(), 0, 0o600)),
        ErrorKind::InvalidInput
    );
    for mode in [0o1600, 0o4600, 0o10000, u32::MAX] {
        let err = SemaphoreSet::create(tk.key(), 1, mode).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "mode {mode:#o}: {err}");
    }
    assert_eq!(
        kind(SemaphoreSet::open(Key::PRIVATE)),
        ErrorKind::InvalidInput
    );
    assert_eq!(key_in_use(tk.key()), (false, false));

    let set = SemaphoreSet::create(tk.key(), 2, 0o600).unwrap();
    set.set_value(0, 7).unwrap();
    for v in [-1, 32768, i32::MIN, i32::MAX] {
        let err = set.set_value(0, v).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "set_value({v}): {err}");
    }
    assert_eq!(
        set.value(0).unwrap(),
        7,
        "a refused set_value changed the value"
    );

    for i in [2, 3, 65536, usize::MAX] {
        assert_eq!(kind(set.value(i)), ErrorKind::InvalidInput, "value({i})");
        assert_eq!(kind(set.set_value(i, 1)), ErrorKind::InvalidInput);
        assert_eq!(kind(set.op(&[SemOp::post(i)])), ErrorKind::InvalidInput);
        assert_eq!(
            kind(set.op_timeout(&[SemOp::post(i)], Duration::from_millis(10))),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(set.wait_count(i)), ErrorKind::InvalidInput);
    }
    // A bad index anywhere in the list refuses the whole call: nothing is applied.
    assert_eq!(
        kind(set.op(&[SemOp::post(0), SemOp::post(2)])),
        ErrorKind::InvalidInput
    );
    // Also past the few operations that are converted on the stack.
    let mut many = vec![SemOp::post(1); 12];
    many.push(SemOp::post(5));
    assert_eq!(kind(set.op(&many)), ErrorKind::InvalidInput);
    assert_eq!(set.value(0).unwrap(), 7);
    assert_eq!(set.value(1).unwrap(), 0);
    assert_eq!(kind(set.op(&[])), ErrorKind::InvalidInput);
    set.remove().unwrap();
}

#[test]
fn semaphore_set_past_semmsl_is_limit_reached() {
    let tk = TestKey::new();
    let err = SemaphoreSet::create(tk.key(), 100_000, 0o600).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitReached, "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    assert_eq!(key_in_use(tk.key()), (false, false));
}

#[test]
fn semaphore_nowait_on_zero_would_block() {
    let (_tk, set) = new_set(2);
    let err = set.op(&[SemOp::wait(0).nowait()]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::EAGAIN));
    // With undo too, and through op_timeout: nowait wins over the timeout.
    assert_eq!(
        kind(set.op(&[SemOp::wait(0).undo().nowait()])),
        ErrorKind::WouldBlock
    );
    assert_eq!(
        kind(set.op_timeout(&[SemOp::wait(0).nowait()], Duration::from_secs(5))),
        ErrorKind::WouldBlock
    );
    // All or nothing: the post in the same call did not happen.
    assert_eq!(
        kind(set.op(&[SemOp::post(1), SemOp::wait(0).nowait()])),
        ErrorKind::WouldBlock
    );
    assert_eq!(set.value(1).unwrap(), 0);
    assert_eq!(set.value(0).unwrap(), 0);
    // Once there is something to take, the same op succeeds.
    set.op(&[SemOp::post(0)]).unwrap();
    set.op(&[SemOp::wait(0).nowait()]).unwrap();
    assert_eq!(set.value(0).unwrap(), 0);
    set.remove().unwrap();
}

#[test]
fn semaphore_op_timeout_times_out() {
    let (_tk, set) = new_set(1);
    let start = Instant::now();
    let err = set
        .op_timeout(&[SemOp::wait(0)], Duration::from_millis(200))
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(
        elapsed >= Duration::from_millis(200),
        "gave up early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "took far too long: {elapsed:?}"
    );
    assert_eq!(set.value(0).unwrap(), 0);

    // A zero timeout tries once.
    assert_eq!(
        kind(set.op_timeout(&[SemOp::wait(0)], Duration::ZERO)),
        ErrorKind::TimedOut
    );
    // With something to take it succeeds at once.
    set.set_value(0, 1).unwrap();
    set.op_timeout(&[SemOp::wait(0)], Duration::from_millis(200))
        .unwrap();
    assert_eq!(set.value(0).unwrap(), 0);
    // A post from another process before the deadline ends the wait with success.
    let child = fork(|| code(set.op_timeout(&[SemOp::wait(0)], Duration::from_secs(60))));
    assert!(
        wait_until(BOUND, || set.wait_count(0).unwrap() == 1),
        "the child never blocked in op_timeout"
    );
    set.op(&[SemOp::post(0)]).unwrap();
    assert_eq!(child.join(), 0, "op_timeout did not take the post");
    assert_eq!(set.value(0).unwrap(), 0);
    // A timeout too far away to represent means no timeout, not an error.
    set.set_value(0, 1).unwrap();
    set.op_timeout(&[SemOp::wait(0)], Duration::MAX).unwrap();
    set.remove().unwrap();
}

#[test]
fn semaphore_wait_zero() {
    let (_tk, set) = new_set(1);
    // Already zero: returns at once.
    set.op(&[SemOp::wait_zero(0)]).unwrap();
    set.op_timeout(&[SemOp::wait_zero(0)], Duration::from_millis(100))
        .unwrap();

    set.set_value(0, 2).unwrap();
    assert_eq!(
        kind(set.op(&[SemOp::wait_zero(0).nowait()])),
        ErrorKind::WouldBlock
    );
    assert_eq!(
        kind(set.op_timeout(&[SemOp::wait_zero(0)], Duration::from_millis(50))),
        ErrorKind::TimedOut
    );

    // A child waits for zero; it wakes only when the value reaches zero.
    let child = fork(|| code(set.op(&[SemOp::wait_zero(0)])));
    assert!(
        wait_until(BOUND, || set.zero_wait_count(0).unwrap() == 1),
        "the child never blocked waiting for zero"
    );
    set.op(&[SemOp::wait(0)]).unwrap();
    assert_eq!(set.value(0).unwrap(), 1);
    assert_eq!(set.zero_wait_count(0).unwrap(), 1, "woke before zero");
    set.op(&[SemOp::wait(0)]).unwrap();
    assert_eq!(child.join(), 0, "wait_zero in the child failed");
    set.remove().unwrap();
}

#[test]
fn semaphore_undo_is_applied_when_a_child_exits() {
    let (_tk, set) = new_set(2);
    set.set_value(0, 3).unwrap();
    set.set_value(1, 3).unwrap();
    let pipe = Pipe::new();
    let child = fork(|| {
        let r = set.op(&[SemOp::post(0).undo(), SemOp::post(1)]);
        pipe.send_i32(set.value(0).unwrap_or(-1));
        pipe.send_i32(set.value(1).unwrap_or(-1));
        code(r)
    });
    let in_child = (pipe.recv_i32(), pipe.recv_i32());
    let pid = child.pid;
    assert_eq!(child.join(), 0);
    assert_eq!(
        in_child,
        (4, 4),
        "the child's posts took effect while it ran"
    );
    assert_eq!(set.last_pid(0).unwrap(), pid);
    assert_eq!(
        set.value(0).unwrap(),
        3,
        "SEM_UNDO post was not undone at exit"
    );
    assert_eq!(set.value(1).unwrap(), 4, "a post without SEM_UNDO stays");

    // The other direction: a wait with undo is given back (the crash-safe lock).
    let child = fork(|| code(set.op(&[SemOp::wait(0).undo()])));
    assert_eq!(child.join(), 0);
    assert_eq!(set.value(0).unwrap(), 3);
    set.remove().unwrap();
}

#[test]
fn semaphore_remove_makes_every_later_call_removed() {
    let (tk, a) = new_set(2);
    let b = SemaphoreSet::open(tk.key()).unwrap();
    a.set_value(0, 1).unwrap();
    a.remove().unwrap();

    for (name, set) in [("remover", &a), ("second handle", &b)] {
        let removed = |what: &str, r: Result<(), Error>| {
            let err = r.expect_err(what);
            assert_eq!(err.kind(), ErrorKind::Removed, "{name}: {what}: {err}");
        };
        removed("value", set.value(0).map(drop));
        removed("set_value", set.set_value(0, 1));
        removed("op", set.op(&[SemOp::wait(0)]));
        removed("op nowait", set.op(&[SemOp::post(1).nowait()]));
        removed(
            "op_timeout",
            set.op_timeout(&[SemOp::wait(0)], Duration::from_millis(100)),
        );
        removed("info", set.info().map(drop));
        removed("wait_count", set.wait_count(0).map(drop));
        removed("zero_wait_count", set.zero_wait_count(0).map(drop));
        removed("last_pid", set.last_pid(0).map(drop));
        removed("remove", set.remove());
    }
    assert_eq!(kind(SemaphoreSet::open(tk.key())), ErrorKind::NotFound);
}

#[test]
fn semaphore_remove_wakes_a_blocked_waiter_with_removed() {
    let (_tk, set) = new_set(1);
    let child = fork(|| code(set.op(&[SemOp::wait(0)])));
    assert!(
        wait_until(BOUND, || set.wait_count(0).unwrap() == 1),
        "the child never blocked in op(wait)"
    );
    set.remove().unwrap();
    assert_eq!(
        child.join(),
        kind_code(ErrorKind::Removed),
        "a waiter must wake with Removed when the set goes"
    );
}

#[test]
fn semaphore_remove_wakes_a_timed_waiter_with_removed() {
    let (_tk, set) = new_set(1);
    let child = fork(|| code(set.op_timeout(&[SemOp::wait(0)], Duration::from_secs(60))));
    assert!(wait_until(BOUND, || set.wait_count(0).unwrap() == 1));
    set.remove().unwrap();
    assert_eq!(child.join(), kind_code(ErrorKind::Removed));
}

// ---------------------------------------------------------------------------------------
// 4. EINTR: a storm of signals without SA_RESTART
// ---------------------------------------------------------------------------------------

#[test]
fn op_timeout_keeps_its_deadline_under_a_signal_storm() {
    let (_tk, set) = new_set(1);
    let pipe = Pipe::new();
    let mut child = fork(|| {
        if !install_counting_handler(libc::SIGUSR1) {
            return 90;
        }
        pipe.send(&[1]); // ready: signals no longer kill us
        let start = Instant::now();
        let r = set.op_timeout(&[SemOp::wait(0)], Duration::from_millis(500));
        let elapsed = start.elapsed();
        pipe.send_i32(elapsed.as_millis().min(i32::MAX as u128) as i32);
        pipe.send_i32(SIGNALS.load(Ordering::Relaxed) as i32);
        code(r)
    });
    assert_eq!(pipe.recv_byte(), 1);

    // Signal generator (pacing, not synchronisation): until the child exits.
    let start = Instant::now();
    let mut sent = 0u32;
    let exit = loop {
        child.kill(libc::SIGUSR1);
        sent += 1;
        if let Some(exit) = child.try_wait_timeout(Duration::from_millis(5)) {
            break exit;
        }
        assert!(
            start.elapsed() < BOUND,
            "child still running after {BOUND:?}"
        );
    };
    let elapsed_ms = pipe.recv_i32();
    let received = pipe.recv_i32();
    assert_eq!(
        exit,
        Exit::Code(kind_code(ErrorKind::TimedOut)),
        "op_timeout under signals must end TimedOut (elapsed {elapsed_ms} ms)"
    );
    assert!(
        (500..=1500).contains(&elapsed_ms),
        "op_timeout(500ms) under {received} signals took {elapsed_ms} ms"
    );
    assert!(
        received >= 10,
        "the storm did not reach the child: {received} of {sent} signals"
    );
    assert_eq!(set.value(0).unwrap(), 0);
    set.remove().unwrap();
}

#[test]
fn blocked_op_survives_a_signal_storm_and_completes_on_post() {
    let (_tk, set) = new_set(1);
    let pipe = Pipe::new();
    let mut child = fork(|| {
        if !install_counting_handler(libc::SIGUSR1) {
            return 90;
        }
        pipe.send(&[1]);
        let r = set.op(&[SemOp::wait(0)]);
        pipe.send_i32(SIGNALS.load(Ordering::Relaxed) as i32);
        code(r)
    });
    assert_eq!(pipe.recv_byte(), 1);

    let start = Instant::now();
    let mut sent_while_blocked = 0u32;
    let mut posted = false;
    let exit = loop {
        child.kill(libc::SIGUSR1);
        if !posted {
            // The waiter count is the kernel's word that the child is inside semop; it
            // may dip while the child handles a signal and re-enters.
            if set.wait_count(0).unwrap() == 1 {
                sent_while_blocked += 1;
            }
            if sent_while_blocked >= 40 {
                set.op(&[SemOp::post(0)]).unwrap();
                posted = true;
            }
        }
        if let Some(exit) = child.try_wait_timeout(Duration::from_millis(5)) {
            break exit;
        }
        assert!(
            start.elapsed() < BOUND,
            "child still running after {BOUND:?}"
        );
    };
    let received = pipe.recv_i32();
    assert!(posted, "the child ended before the post: {exit:?}");
    assert_eq!(
        exit,
        Exit::Code(0),
        "op() interrupted by signals must resume, then take the post"
    );
    assert!(
        received >= 10,
        "the storm did not reach the child: {received}"
    );
    assert_eq!(set.value(0).unwrap(), 0, "the child took the post");
    set.remove().unwrap();
}

// ---------------------------------------------------------------------------------------
// 5. Errors
// ---------------------------------------------------------------------------------------

#[test]
fn error_display_names_the_call_and_the_key() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<Error>();

    let tk = TestKey::new();
    let key = tk.key();
    let err = SemaphoreSet::open(key).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert!(text.contains("semget"), "{text}");
    assert!(text.contains(&key.to_string()), "{text}");
    assert!(text.starts_with("semget"), "{text}");
    assert_eq!(err.call(), "semget");
    assert_eq!(err.key(), key);

    let err = Segment::open(key).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert!(text.contains("shmget"), "{text}");
    assert!(text.contains(&key.to_string()), "{text}");

    // Errors on an object name the id too.
    let set = SemaphoreSet::create(key, 1, 0o600).unwrap();
    let err = set.op(&[SemOp::wait(0).nowait()]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("semop"), "{text}");
    assert!(text.contains(&key.to_string()), "{text}");
    assert!(text.contains(&set.id().to_string()), "{text}");
    set.remove().unwrap();
}

#[test]
fn error_converts_to_io_error_with_the_matching_kind() {
    use std::io;
    let tk = TestKey::new();
    let key = tk.key();
    let to_io = |e: Error| io::Error::from(e).kind();

    let not_found = SemaphoreSet::open(key).unwrap_err();
    assert_eq!(not_found.kind(), ErrorKind::NotFound);
    assert_eq!(to_io(not_found), io::ErrorKind::NotFound);

    let set = SemaphoreSet::create(key, 1, 0o600).unwrap();
    let exists = SemaphoreSet::create(key, 1, 0o600).unwrap_err();
    assert_eq!(exists.kind(), ErrorKind::AlreadyExists);
    assert_eq!(to_io(exists), io::ErrorKind::AlreadyExists);

    let would_block = set.op(&[SemOp::wait(0).nowait()]).unwrap_err();
    assert_eq!(would_block.kind(), ErrorKind::WouldBlock);
    assert_eq!(to_io(would_block), io::ErrorKind::WouldBlock);

    let timed_out = set
        .op_timeout(&[SemOp::wait(0)], Duration::from_millis(10))
        .unwrap_err();
    assert_eq!(timed_out.kind(), ErrorKind::TimedOut);
    assert_eq!(to_io(timed_out), io::ErrorKind::TimedOut);

    let invalid = set.set_value(0, -1).unwrap_err();
    assert_eq!(invalid.kind(), ErrorKind::InvalidInput);
    assert_eq!(to_io(invalid), io::ErrorKind::InvalidInput);

    // The io::Error carries ours inside, message and all.
    let err = SemaphoreSet::open(Key::from_raw(key.as_raw() ^ 0x200)).unwrap_err();
    let text = err.to_string();
    let io_err = io::Error::from(err);
    assert_eq!(io_err.to_string(), text);
    let inner = io_err.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert_eq!(inner.map(Error::kind), Some(ErrorKind::NotFound));
    set.remove().unwrap();
}

// ---------------------------------------------------------------------------------------
// 6. Permissions (root creates, a child that became nobody opens)
// ---------------------------------------------------------------------------------------

/// A 64-byte segment and a one-semaphore set under a new key, both with `mode`, made by
/// this (root) process.
fn objects_with_mode(mode: u32) -> (TestKey, Segment, SemaphoreSet) {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 64, mode).unwrap();
    let set = SemaphoreSet::create(tk.key(), 1, mode).unwrap();
    (tk, seg, set)
}

#[test]
fn nobody_cannot_open_0o600_objects() {
    let (tk, seg, set) = objects_with_mode(0o600);
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        pipe.send_i32(code(Segment::open(tk.key())));
        pipe.send_i32(code(Segment::open_read_only(tk.key())));
        pipe.send_i32(code(SemaphoreSet::open(tk.key())));
        // Handles inherited through fork: the kernel checks the caller, not the handle.
        pipe.send_i32(code(set.value(0)));
        pipe.send_i32(code(set.op(&[SemOp::post(0)])));
        pipe.send_i32(code(seg.info()));
        0
    });
    let denied = kind_code(ErrorKind::PermissionDenied);
    let results: Vec<i32> = (0..6).map(|_| pipe.recv_i32()).collect();
    assert_eq!(child.join(), 0);
    let names = [
        "Segment::open",
        "Segment::open_read_only",
        "SemaphoreSet::open",
        "value",
        "op",
        "Segment::info",
    ];
    for (name, got) in names.iter().zip(&results) {
        assert_eq!(
            *got, denied,
            "{name} as nobody on a 0o600 object: code {got}"
        );
    }
    assert_eq!(
        set.value(0).unwrap(),
        0,
        "nobody's op must not have applied"
    );
    seg.remove().unwrap();
    set.remove().unwrap();
}

#[test]
fn nobody_can_use_0o666_objects() {
    let (tk, seg, set) = objects_with_mode(0o666);
    let child = fork_as_nobody(|| {
        let seg = match Segment::open(tk.key()) {
            Ok(s) => s,
            Err(e) => return 20 + kind_code(e.kind()),
        };
        if let Err(e) = seg.write_all_at(b"written by nobody", 0) {
            return 40 + kind_code(e.kind());
        }
        let set = match SemaphoreSet::open(tk.key()) {
            Ok(s) => s,
            Err(e) => return 60 + kind_code(e.kind()),
        };
        if let Err(e) = set.op(&[SemOp::post(0)]) {
            return 80 + kind_code(e.kind());
        }
        match set.value(0) {
            Ok(1) => 0,
            Ok(_) => 100,
            Err(e) => 100 + kind_code(e.kind()),
        }
    });
    let pid = child.pid;
    assert_eq!(child.join(), 0, "nobody could not use 0o666 objects");
    let mut buf = [0u8; 17];
    seg.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"written by nobody");
    assert_eq!(set.value(0).unwrap(), 1);
    assert_eq!(set.last_pid(0).unwrap(), pid);
    seg.remove().unwrap();
    set.remove().unwrap();
}
