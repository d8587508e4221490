//! SharedMutex across real processes: counting, the seed's writer/reader, race-free
//! creation, header validation, poisoning, fork, removal, permissions.

mod common;

use std::time::{Duration, Instant};

use common::{BOUND, Exit, Pipe, TestKey, fork, fork_as_nobody, key_in_use, wait_until};
use shmsem::{ErrorKind, Key, LockError, Pod, Segment, SemOp, SemaphoreSet, SharedMutex, Zeroable};

/// The ErrorKind a failed lock call reports, as a small exit code for children.
fn code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Removed => 10,
        ErrorKind::PermissionDenied => 11,
        ErrorKind::WouldBlock => 12,
        ErrorKind::NotFound => 13,
        _ => 19,
    }
}

#[test]
fn n_processes_times_m_increments_is_exact() {
    const N: usize = 4;
    const M: u64 = 2000;
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let children: Vec<_> = (0..N)
        .map(|_| {
            let key = tk.key();
            fork(move || {
                let m = SharedMutex::<u64>::open(key).unwrap();
                for _ in 0..M {
                    // A separate read and write: without the lock, updates would get lost.
                    let mut g = m.lock().unwrap();
                    let v = *g;
                    std::hint::black_box(&v);
                    *g = v + 1;
                }
                0
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.join(), 0);
    }
    assert_eq!(*m.lock().unwrap(), N as u64 * M);
}

/// The seed tutorial's shared struct: a `written` flag plus a text buffer.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SharedUse {
    written: u32,
    len: u32,
    text: [u8; 256],
}

#[test]
fn writer_and_reader_pass_text_like_the_seed() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), SharedUse::zeroed()).unwrap();
    let lines: Vec<String> = (0..200)
        .map(|i| format!("line {i} {}", "x".repeat(i)))
        .collect();
    let to_send = lines.clone();
    let key = tk.key();
    let writer = fork(move || {
        let m = SharedMutex::<SharedUse>::open(key).unwrap();
        let deadline = Instant::now() + BOUND;
        for line in to_send.iter().map(String::as_str).chain(["end"]) {
            // Wait (bounded) until the reader has taken the previous text.
            loop {
                let mut g = m.lock().unwrap();
                if g.written == 0 {
                    g.text[..line.len()].copy_from_slice(line.as_bytes());
                    g.len = line.len() as u32;
                    g.written = 1;
                    break;
                }
                drop(g);
                if Instant::now() > deadline {
                    return 1;
                }
                std::thread::yield_now();
            }
        }
        0
    });
    let mut received = Vec::new();
    let deadline = Instant::now() + BOUND;
    loop {
        let mut g = m.lock().unwrap();
        if g.written == 1 {
            let text = String::from_utf8(g.text[..g.len as usize].to_vec()).unwrap();
            g.written = 0;
            if text == "end" {
                break;
            }
            received.push(text);
        } else {
            drop(g);
            assert!(
                Instant::now() < deadline,
                "reader saw no text for {BOUND:?}"
            );
            std::thread::yield_now();
        }
    }
    assert_eq!(writer.join(), 0);
    assert_eq!(received, lines);
}

#[test]
fn eight_processes_open_or_create_at_once_share_one_object() {
    for _round in 0..5 {
        let tk = TestKey::new();
        // The start gate: one semop releases all eight children at the same instant.
        let gate_key = TestKey::new();
        let gate = SemaphoreSet::create(gate_key.key(), 1, 0o600).unwrap();
        let ids = Pipe::new();
        let children: Vec<_> = (0..8)
            .map(|_| {
                let key = tk.key();
                let gate = &gate;
                let ids = &ids;
                fork(move || {
                    if gate.op_timeout(&[SemOp::wait(0)], BOUND).is_err() {
                        return 2;
                    }
                    let m = match SharedMutex::open_or_create(key, 0u64) {
                        Ok(m) => m,
                        Err(_) => return 3,
                    };
                    *m.lock().unwrap() += 1;
                    // One write, so that the children's pairs cannot interleave.
                    let mut both = [0u8; 8];
                    both[..4].copy_from_slice(&m.shm_id().to_ne_bytes());
                    both[4..].copy_from_slice(&m.sem_id().to_ne_bytes());
                    ids.send(&both);
                    0
                })
            })
            .collect();
        assert!(wait_until(BOUND, || gate.wait_count(0).unwrap() == 8));
        gate.op(&[SemOp::new(0, 8)]).unwrap();
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push((ids.recv_i32(), ids.recv_i32()));
        }
        for c in children {
            assert_eq!(c.join(), 0);
        }
        let m = SharedMutex::<u64>::open(tk.key()).unwrap();
        assert!(seen.iter().all(|&ids| ids == (m.shm_id(), m.sem_id())));
        assert_eq!(*m.lock().unwrap(), 8);
    }
}

#[test]
fn create_is_exclusive_with_mode_0600_by_default() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 7u32).unwrap();
    let again = SharedMutex::create(tk.key(), 7u32).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);
    assert_eq!(m.segment().info().unwrap().mode & 0o777, 0o600);
    assert_eq!(m.semaphores().info().unwrap().mode & 0o777, 0o600);
    assert_eq!(
        m.semaphores().value(0).unwrap(),
        1,
        "a new mutex is unlocked"
    );
    assert_eq!(
        *SharedMutex::<u32>::open(tk.key()).unwrap().lock().unwrap(),
        7
    );

    let tk2 = TestKey::new();
    let open = SharedMutex::<u32>::options()
        .mode(0o666)
        .create(tk2.key(), 0)
        .unwrap();
    assert_eq!(open.segment().info().unwrap().mode & 0o777, 0o666);
    let bad = SharedMutex::<u32>::options()
        .mode(0o4777)
        .create(tk2.key(), 0);
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_pair_that_cannot_be_completed_leaves_nothing_behind() {
    let tk = TestKey::new();
    // A stale semaphore set with our key: the segment can be made, the set cannot.
    let _stale = SemaphoreSet::create(tk.key(), 1, 0o600).unwrap();
    let err = SharedMutex::create(tk.key(), 0u64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        key_in_use(tk.key()),
        (false, true),
        "the new segment must be removed again"
    );
    // open_or_create says so at once rather than retrying for its whole bound.
    let t = Instant::now();
    let err = SharedMutex::open_or_create(tk.key(), 0u64).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(key_in_use(tk.key()), (false, true));
}

fn fast_open<T: Pod>(key: Key) -> shmsem::Result<SharedMutex<T>> {
    SharedMutex::<T>::options()
        .init_timeout(Duration::from_millis(200))
        .open(key)
}

#[test]
fn foreign_segments_are_not_managed() {
    // A segment a C program made: garbage, no semaphore set.
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 4096, 0o600).unwrap();
    seg.write_all_at(&[0xAB; 4096], 0).unwrap();
    let t = Instant::now();
    let err = fast_open::<u64>(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotManaged, "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "bounded, not a hang");

    // With an initialised semaphore set but garbage where the header should be.
    let set = SemaphoreSet::create(tk.key(), 1, 0o600).unwrap();
    set.op(&[SemOp::post(0)]).unwrap();
    let err = fast_open::<u64>(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotManaged, "{err}");
    assert!(err.to_string().contains("SharedMutex::open"), "{err}");

    // A segment smaller than the header.
    let tk2 = TestKey::new();
    Segment::create(tk2.key(), 10, 0o600).unwrap();
    let err = fast_open::<u64>(tk2.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotManaged, "{err}");
    // Zero-filled (a fresh segment) with an initialised set: no magic.
    let tk3 = TestKey::new();
    Segment::create(tk3.key(), 200, 0o600).unwrap();
    SemaphoreSet::create(tk3.key(), 1, 0o600)
        .unwrap()
        .op(&[SemOp::post(0)])
        .unwrap();
    assert_eq!(
        fast_open::<u64>(tk3.key()).unwrap_err().kind(),
        ErrorKind::NotManaged
    );
}

#[test]
fn a_header_claiming_more_than_the_segment_is_not_managed() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 1u64).unwrap();
    // SAFETY: no guard of `m` lives while the header is rewritten through its segment.
    let seg = unsafe { m.segment().as_segment() };
    // Payload size field (offset 24) claims a terabyte.
    seg.write_all_at(&(1u64 << 40).to_ne_bytes(), 24).unwrap();
    let err = SharedMutex::<u64>::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotManaged, "{err}");
    // Wrong version (offset 8).
    seg.write_all_at(&8u64.to_ne_bytes(), 24).unwrap();
    seg.write_all_at(&99u32.to_ne_bytes(), 8).unwrap();
    let err = SharedMutex::<u64>::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotManaged, "{err}");
    // An object of the format before leases (version 1) is refused, naming both versions.
    seg.write_all_at(&1u32.to_ne_bytes(), 8).unwrap();
    let err = SharedMutex::<u64>::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotManaged, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("version 1") && text.contains("version 2"),
        "{text}"
    );
    seg.write_all_at(&shmsem::header::VERSION.to_ne_bytes(), 8)
        .unwrap();
    assert!(SharedMutex::<u64>::open(tk.key()).is_ok());
}

#[test]
fn another_payload_type_is_layout_mismatch() {
    let tk = TestKey::new();
    let _m = SharedMutex::create(tk.key(), 1u64).unwrap();
    for err in [
        SharedMutex::<[u8; 16]>::open(tk.key()).unwrap_err(),
        SharedMutex::<u32>::open(tk.key()).unwrap_err(),
        SharedMutex::<[u32; 2]>::open(tk.key()).unwrap_err(), // same size, other alignment
    ] {
        assert_eq!(err.kind(), ErrorKind::LayoutMismatch, "{err}");
    }
}

#[test]
fn try_lock_and_lock_timeout_report_busy_and_expiry() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let g = m.lock().unwrap();
    let busy = m.try_lock().unwrap_err();
    assert!(matches!(&busy, LockError::Failed(e) if e.kind() == ErrorKind::WouldBlock));
    let t = Instant::now();
    let late = m.lock_timeout(Duration::from_millis(150)).unwrap_err();
    let waited = t.elapsed();
    assert_eq!(late.kind(), ErrorKind::TimedOut);
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    drop(g);
    assert!(m.try_lock().is_ok());
    assert!(m.lock_timeout(Duration::from_millis(10)).is_ok());
    // A zero timeout is a try.
    let _g = m.lock().unwrap();
    assert_eq!(
        m.lock_timeout(Duration::ZERO).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
}

#[test]
fn lock_timeout_succeeds_when_another_process_releases_in_time() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let g = m.lock().unwrap();
    let key = tk.key();
    let child = fork(move || {
        let m = SharedMutex::<u64>::open(key).unwrap();
        match m.lock_timeout(BOUND) {
            Ok(mut g) => {
                *g = 5;
                0
            }
            Err(e) => code(e.kind()),
        }
    });
    assert!(wait_until(BOUND, || m.semaphores().wait_count(0).unwrap() == 1));
    drop(g);
    assert_eq!(child.join(), 0);
    assert_eq!(*m.lock().unwrap(), 5);
}

/// The payload of the test below: every increment, the child's share, and "stop".
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Turns {
    total: u64,
    child: u64,
    stop: u64,
}

#[test]
fn a_process_that_takes_the_lock_back_at_once_does_not_starve_a_waiter() {
    // The child locks and unlocks in a tight loop: its holder is inside a semop most of
    // the time with the holder word 0, so the parent's tries are refused and it polls,
    // asleep between looks (semaphore.rs, step 2), and so may the child. The parent's
    // `lock` calls must all get through, its `lock_timeout` calls get the lock or report
    // TimedOut, the child must get its turns too, and no increment may be lost.
    const CALLS: u64 = 1000;
    const CHILD_TURNS: u64 = 100;
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), Turns::zeroed()).unwrap();
    let looping = Pipe::new();
    let key = tk.key();
    let child = fork(|| {
        let m = SharedMutex::<Turns>::open(key).unwrap();
        looping.send(b"l");
        loop {
            let mut g = m.lock().unwrap();
            if g.stop != 0 {
                return 0;
            }
            g.total += 1;
            g.child += 1;
        }
    });
    assert_eq!(looping.recv_byte(), b'l');
    let (mut locked, mut timed_out, mut child_turns) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    // Until the parent made its calls and the child had its turns meanwhile.
    while locked + timed_out < CALLS || child_turns < CHILD_TURNS {
        assert!(
            start.elapsed() < BOUND,
            "{locked} locked, {child_turns} child turns"
        );
        let got = if (locked + timed_out) % 2 == 0 {
            m.lock()
        } else {
            m.lock_timeout(Duration::from_micros(300))
        };
        match got {
            Ok(mut g) => {
                g.total += 1;
                child_turns = g.child;
                locked += 1;
            }
            Err(LockError::Failed(e)) if e.kind() == ErrorKind::TimedOut => timed_out += 1,
            Err(e) => panic!("call {}: {e}", locked + timed_out),
        }
    }
    m.lock().unwrap().stop = 1;
    assert_eq!(child.join(), 0);
    let g = m.lock().unwrap();
    assert!(
        locked >= CALLS / 2,
        "{locked} locked, {timed_out} timed out"
    );
    assert_eq!(g.total, g.child + locked, "an increment was lost");
}

#[test]
fn sigkill_inside_the_critical_section_poisons_with_the_holders_pid() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), [0u64; 2]).unwrap();
    let inside = Pipe::new();
    let never = Pipe::new();
    let key = tk.key();
    let mut child = fork(|| {
        let m = SharedMutex::<[u64; 2]>::open(key).unwrap();
        let mut g = m.lock().unwrap();
        g[0] = 1; // half of an update that keeps both fields equal
        inside.send(b"i");
        never.recv_timeout(&mut [0], BOUND); // killed here
        g[1] = 1;
        0
    });
    assert_eq!(inside.recv_byte(), b'i');
    child.kill(libc::SIGKILL);
    assert_eq!(child.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));

    assert!(
        m.is_poisoned(),
        "a dead holder is visible before anyone locks"
    );
    let err = m.lock_timeout(BOUND).unwrap_err();
    let LockError::Poisoned(p) = err else {
        panic!("expected Poisoned, got {err:?}");
    };
    assert_eq!(p.owner_pid(), Some(child.pid));
    let mut g = p.into_inner();
    assert_eq!(*g, [1, 0], "the half-made update is there to repair");
    g[1] = g[0];
    m.clear_poison();
    drop(g);
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock().unwrap(), [1, 1]);
}

#[test]
fn death_outside_the_critical_section_does_not_poison() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let key = tk.key();

    // Dies after unlocking.
    let done = Pipe::new();
    let never = Pipe::new();
    let mut child = fork(|| {
        let m = SharedMutex::<u64>::open(key).unwrap();
        *m.lock().unwrap() += 1;
        done.send(b"d");
        never.recv_timeout(&mut [0], BOUND);
        0
    });
    assert_eq!(done.recv_byte(), b'd');
    child.kill(libc::SIGKILL);
    child.wait_timeout(BOUND);
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock().unwrap(), 1);

    // Dies while blocked in lock().
    let g = m.lock().unwrap();
    let mut child = fork(|| {
        let m = SharedMutex::<u64>::open(key).unwrap();
        let _g = m.lock();
        0
    });
    assert!(wait_until(BOUND, || m.semaphores().wait_count(0).unwrap() == 1));
    child.kill(libc::SIGKILL);
    child.wait_timeout(BOUND);
    drop(g);
    let g = m.lock_timeout(BOUND).expect("no poison, no deadlock");
    assert_eq!(*g, 1);
    assert_eq!(m.semaphores().value(0).unwrap(), 0);
}

#[test]
fn a_panic_inside_poisons_in_this_and_other_processes() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    std::thread::scope(|s| {
        let r = s
            .spawn(|| {
                let mut g = m.lock().unwrap();
                *g = 1;
                panic!("inside the critical section");
            })
            .join();
        assert!(r.is_err());
    });
    assert!(m.is_poisoned());
    let p = m.lock().unwrap_err().into_poisoned().unwrap();
    assert_eq!(p.owner_pid(), Some(std::process::id() as i32));
    assert_eq!(**p.get_ref(), 1);
    drop(p);
    m.clear_poison();
    assert!(m.lock().is_ok());

    // A child that panics: its panic poisons for everyone.
    let key = tk.key();
    let child = fork(move || {
        let m = SharedMutex::<u64>::open(key).unwrap();
        let _g = m.lock().unwrap();
        panic!("child panics inside");
    });
    let pid = child.pid;
    assert_eq!(child.join(), 101);
    let err = m.lock().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Poisoned);
    assert_eq!(err.into_poisoned().unwrap().owner_pid(), Some(pid));
}

#[test]
fn a_guard_dropped_in_a_forked_child_does_not_unlock_the_parent() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let mut held = Some(m.lock().unwrap());
    let child = fork(|| {
        drop(held.take()); // the child's copy of the parent's guard
        match m.try_lock() {
            Err(LockError::Failed(e)) if e.kind() == ErrorKind::WouldBlock => 0,
            _ => 1,
        }
    });
    assert_eq!(child.join(), 0, "the child saw the lock released");
    assert_eq!(
        m.semaphores().value(0).unwrap(),
        0,
        "still held by the parent"
    );
    assert_eq!(m.try_lock().unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(held);
    assert_eq!(m.semaphores().value(0).unwrap(), 1);

    // A handle inherited through fork works in the child; its own guards unlock.
    let child = fork(|| {
        for _ in 0..100 {
            *m.lock().unwrap() += 1;
        }
        0
    });
    assert_eq!(child.join(), 0);
    assert_eq!(*m.lock_timeout(BOUND).unwrap(), 100);
    assert!(!m.is_poisoned());
}

#[test]
fn remove_wakes_blocked_lockers_with_removed() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let g = m.lock().unwrap();
    let key = tk.key();
    let children: Vec<_> = (0..2)
        .map(|_| {
            fork(move || {
                let m = SharedMutex::<u64>::open(key).unwrap();
                match m.lock() {
                    Ok(_) => 0,
                    Err(e) => code(e.kind()),
                }
            })
        })
        .collect();
    assert!(wait_until(BOUND, || m.semaphores().wait_count(0).unwrap() == 2));
    let t = Instant::now();
    m.remove().unwrap();
    for c in children {
        assert_eq!(c.join(), code(ErrorKind::Removed));
    }
    assert!(t.elapsed() < Duration::from_secs(5), "woken promptly");
    assert_eq!(
        SharedMutex::<u64>::open(key).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    drop(g); // quiet: no panic, nothing to give back
    assert_eq!(m.lock().unwrap_err().kind(), ErrorKind::Removed);
    assert_eq!(m.remove().unwrap_err().kind(), ErrorKind::Removed);
}

#[test]
fn an_unprivileged_process_is_denied_0600_and_allowed_0666() {
    let tk = TestKey::new();
    let _private = SharedMutex::create(tk.key(), 0u64).unwrap();
    let key = tk.key();
    let child = fork_as_nobody(move || match SharedMutex::<u64>::open(key) {
        Ok(_) => 0,
        Err(e) => code(e.kind()),
    });
    assert_eq!(child.join(), code(ErrorKind::PermissionDenied));

    let tk2 = TestKey::new();
    let shared = SharedMutex::<u64>::options()
        .mode(0o666)
        .create(tk2.key(), 0)
        .unwrap();
    let key = tk2.key();
    let child = fork_as_nobody(move || match SharedMutex::<u64>::open(key) {
        Ok(m) => {
            *m.lock().unwrap() += 1;
            0
        }
        Err(e) => code(e.kind()),
    });
    assert_eq!(child.join(), 0);
    assert_eq!(*shared.lock().unwrap(), 1);
}

#[test]
fn errors_name_the_call_and_key_and_convert_to_io() {
    let tk = TestKey::new();
    let err = SharedMutex::<u64>::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let text = err.to_string();
    assert!(text.contains("shmget"), "{text}");
    assert!(text.contains(&tk.key().to_string()), "{text}");
    assert_eq!(err.key(), tk.key());
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let err = SharedMutex::<u64>::create(tk.key(), 0).unwrap_err();
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::AlreadyExists
    );
    let _g = m.lock().unwrap();
    let busy: shmsem::Error = m.try_lock().unwrap_err().into();
    assert!(busy.to_string().contains("try_lock"), "{busy}");
    assert_eq!(
        std::io::Error::from(busy).kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[test]
fn private_mutexes_are_shared_through_fork() {
    let m = SharedMutex::create(Key::PRIVATE, 0u64).unwrap();
    // A private key cannot be cleaned up by key: remove by handle, also on failure.
    struct RemoveOnDrop<'a>(&'a SharedMutex<u64>);
    impl Drop for RemoveOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.remove();
        }
    }
    let _cleanup = RemoveOnDrop(&m);
    let child = fork(|| {
        *m.lock().unwrap() += 41;
        0
    });
    assert_eq!(child.join(), 0);
    *m.lock().unwrap() += 1;
    assert_eq!(*m.lock().unwrap(), 42);
    assert_eq!(
        SharedMutex::<u64>::open(Key::PRIVATE).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn threads_of_several_processes_count_exactly() {
    const PROCS: usize = 2;
    const THREADS: usize = 4;
    const M: u64 = 3000;
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let key = tk.key();
    let kids: Vec<_> = (0..PROCS)
        .map(|_| {
            fork(move || {
                let m = SharedMutex::<u64>::open(key).unwrap();
                std::thread::scope(|s| {
                    for _ in 0..THREADS {
                        s.spawn(|| {
                            for _ in 0..M {
                                let mut g = m.lock().unwrap();
                                let v = *g;
                                std::hint::black_box(&v);
                                *g = v + 1;
                            }
                        });
                    }
                });
                0
            })
        })
        .collect();
    // And threads of this process too, through try_lock and lock_timeout.
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0;
            while n < M {
                if let Ok(mut g) = m.try_lock() {
                    *g += 1;
                    n += 1;
                }
            }
        });
        s.spawn(|| {
            for _ in 0..M {
                *m.lock_timeout(BOUND).unwrap() += 1;
            }
        });
    });
    for k in kids {
        assert_eq!(k.join(), 0);
    }
    let g = m.lock().unwrap();
    assert_eq!(*g, (PROCS * THREADS) as u64 * M + 2 * M);
    assert_eq!(m.semaphores().value(0).unwrap(), 0, "held by this guard");
    drop(g);
    assert_eq!(
        m.semaphores().value(0).unwrap(),
        1,
        "nothing kept after the last unlock"
    );
}

#[test]
fn a_child_forked_while_a_sibling_thread_holds_the_lock_can_lock_later() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    // Let two threads contend first, so the handle queues its threads locally.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..5000 {
                    *m.lock().unwrap() += 1;
                }
            });
        }
    });
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let m = &m;
        s.spawn(move || {
            let mut g = m.lock().unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv_timeout(BOUND).unwrap();
            *g += 1;
        });
        held_rx.recv_timeout(BOUND).unwrap();
        // Forked while a sibling thread (which does not exist in the child) holds it.
        let child = fork(|| match m.lock_timeout(BOUND) {
            Ok(mut g) if *g == 10_001 => {
                *g += 1;
                0
            }
            Ok(_) => 1,
            Err(e) => code(e.kind()),
        });
        assert!(
            wait_until(BOUND, || m.semaphores().wait_count(0).unwrap() == 1),
            "the child must wait on the semaphore, not on state inherited from a thread"
        );
        release_tx.send(()).unwrap();
        assert_eq!(child.join(), 0);
    });
    assert_eq!(*m.lock().unwrap(), 10_002);
}

#[test]
fn a_panicking_thread_poisons_while_threads_pass_the_lock_around() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = &m;
            s.spawn(move || {
                for i in 0..2000 {
                    let mut g = match m.lock() {
                        Ok(g) => g,
                        Err(e) => e.into_poisoned().unwrap().into_inner(),
                    };
                    *g += 1;
                    if t == 0 && i == 1000 {
                        drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                            || {
                                let _g = g;
                                panic!("inside");
                            },
                        )));
                    }
                }
            });
        }
    });
    assert!(m.is_poisoned());
    let p = m.lock().unwrap_err().into_poisoned().unwrap();
    assert_eq!(p.owner_pid(), Some(std::process::id() as i32));
    assert_eq!(**p.get_ref(), 8000);
}

#[test]
fn a_mutex_costs_its_value_plus_a_64_byte_header_and_one_semaphore_plus_lease_slots() {
    fn check<T: Pod + Zeroable>() {
        let m = SharedMutex::create(Key::PRIVATE, T::zeroed()).unwrap();
        let info = m.segment().info().unwrap();
        let sems = m.semaphores().len();
        m.remove().unwrap();
        let page = 4096;
        assert_eq!(info.size, 64 + size_of::<T>(), "shm_segsz");
        assert!(
            info.size.div_ceil(page) <= size_of::<T>().div_ceil(page) + 1,
            "at most one page beyond the value"
        );
        // The lock, then 256 lease slots of two semaphores (docs/FORMAT.md, "Leases").
        assert_eq!(sems, 1 + 2 * 256);
    }
    check::<u64>();
    check::<[u64; 512]>(); // exactly one page of value
    check::<[u8; 100_000]>();
}

#[test]
fn a_worker_panicking_on_poison_does_not_hide_the_first_death_from_the_supervisor() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    // Worker A dies inside the critical section.
    let pipe = Pipe::new();
    let mut a = fork(|| {
        let mut g = m.lock().unwrap();
        *g += 1;
        pipe.send(b"in");
        loop {
            std::hint::spin_loop();
        }
    });
    assert_eq!(pipe.recv_byte(), b'i');
    let a_pid = a.pid;
    a.kill(libc::SIGKILL);
    assert_eq!(a.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
    // Worker B uses the README's idiom, `lock().unwrap()`, and panics on the poison;
    // dropping the guard while unwinding must not replace A's death with B's panic.
    let b = fork(|| {
        let _g = m.lock().unwrap();
        0
    });
    assert_eq!(b.join(), 101, "B panics on the poisoned lock");
    // The supervisor is told about A, the first cause, and that it died.
    let err = m.lock().unwrap_err();
    assert!(err.is_poisoned());
    assert_eq!(
        err.owner_pid(),
        Some(a_pid),
        "the first death, not B's panic"
    );
    let p = err.into_poisoned().unwrap();
    assert_eq!(p.cause(), shmsem::PoisonCause::Died);
    assert!(p.to_string().contains("died"), "{p}");
    drop(p.into_inner());
    m.clear_poison();
    assert!(m.lock().is_ok());
}

#[test]
fn a_panic_inside_is_reported_as_a_panic_of_this_process() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = m.lock().unwrap();
            panic!("inside");
        })
        .join()
    });
    assert!(r.is_err());
    let p = m.lock().unwrap_err().into_poisoned().unwrap();
    assert_eq!(p.cause(), shmsem::PoisonCause::Panicked);
    assert_eq!(p.owner_pid(), Some(std::process::id() as i32));
    assert!(p.to_string().contains("panicked"), "{p}");
}

#[test]
fn into_guard_takes_the_lock_poisoned_or_not_and_question_mark_works_everywhere() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    fn with_shmsem(m: &SharedMutex<u64>) -> shmsem::Result<u64> {
        Ok(*m.lock().or_else(LockError::into_guard)?)
    }
    fn with_io(m: &SharedMutex<u64>) -> std::io::Result<u64> {
        Ok(*m.lock()?)
    }
    fn with_box(m: &SharedMutex<u64>) -> Result<u64, Box<dyn std::error::Error>> {
        Ok(*m.lock().or_else(LockError::into_guard)?)
    }
    assert_eq!(with_shmsem(&m).unwrap(), 0);
    assert_eq!(with_io(&m).unwrap(), 0);
    assert_eq!(with_box(&m).unwrap(), 0);
    // Poisoned: into_guard still gives the guard; `?` into io::Error reports the kind.
    let _ = std::thread::scope(|s| {
        s.spawn(|| {
            let _g = m.lock().unwrap();
            panic!("poison it");
        })
        .join()
    });
    assert_eq!(with_shmsem(&m).unwrap(), 0);
    assert_eq!(with_box(&m).unwrap(), 0);
    let e = with_io(&m).unwrap_err();
    assert!(e.to_string().contains("poisoned"), "{e}");
    // A failure has no guard: into_guard gives the error.
    let g = m.lock().or_else(LockError::into_guard).unwrap();
    let other = SharedMutex::<u64>::open(tk.key()).unwrap();
    let e = other.try_lock().unwrap_err();
    assert!(!e.is_poisoned() && e.owner_pid().is_none());
    assert_eq!(e.into_guard().unwrap_err().kind(), ErrorKind::WouldBlock);
    drop(g);
}

#[test]
fn lock_until_keeps_one_deadline_across_two_locks() {
    let tk = (TestKey::new(), TestKey::new());
    let a = SharedMutex::create(tk.0.key(), 1u32).unwrap();
    let b = SharedMutex::create(tk.1.key(), 2u32).unwrap();
    let other_b = SharedMutex::<u32>::open(tk.1.key()).unwrap();
    let held_b = other_b.lock().unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(100);
    let ga = a.lock_until(deadline).unwrap();
    let e = b.lock_until(deadline).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(100),
        "returned after {took:?}"
    );
    assert!(took < BOUND, "{took:?}");
    // A deadline already past still takes a free lock, and times out at once on a held one.
    drop(ga);
    assert!(a.lock_until(start).is_ok());
    assert_eq!(b.lock_until(start).unwrap_err().kind(), ErrorKind::TimedOut);
    drop(held_b);
}

#[test]
fn error_texts_name_the_public_call_and_never_contradict_the_kind() {
    let tk = TestKey::new();
    let e = SharedMutex::<u64>::open(tk.key()).unwrap_err();
    assert_eq!(
        (e.kind(), e.call()),
        (ErrorKind::NotFound, "SharedMutex::open")
    );
    let text = e.to_string();
    assert!(text.starts_with("SharedMutex::open (key "), "{text}");
    assert!(text.contains("no object with this key"), "{text}");
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    m.remove().unwrap();
    let e = m.lock().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Removed);
    let text = e.to_string();
    assert!(text.starts_with("SharedMutex::lock (key "), "{text}");
    assert!(text.contains("was removed"), "{text}");
    let e = Key::ftok("/nonexistent/shmsem", 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let text = e.to_string();
    assert!(
        text.starts_with("Key::ftok: /nonexistent/shmsem: "),
        "{text}"
    );
    let e = shmsem::Queue::create(Key::PRIVATE, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("at least 1 byte"), "{e}");
}

/// With shmsem::testing's pieces: processes open the mutex and line up at a gate (the
/// parent knows when all are there from a latch, no sleeps), start together and count
/// exactly; a process stuck in `lock` behind a holder is stopped by the watchdog without
/// poisoning or keeping the lock; another process removes the pair, and the leak check
/// finds nothing left under the key.
#[test]
fn processes_started_at_a_gate_count_exactly_and_leave_nothing_behind() {
    use shmsem::testing::{Gate, Latch, LeakCheck, run_in_child};
    const N: usize = 4;
    const M: u64 = 500;
    let tk = TestKey::new();
    let key = tk.key();
    let check = LeakCheck::keys([key]);
    let m = SharedMutex::create(key, 0u64).unwrap();
    let (ready, go) = (Latch::new(), Gate::new());
    let children: Vec<_> = (0..N)
        .map(|_| {
            let (ready, go) = (&ready, &go);
            fork(move || {
                let m = SharedMutex::<u64>::open(key).unwrap();
                ready.arrive();
                go.wait();
                for _ in 0..M {
                    *m.lock().unwrap() += 1;
                }
                0
            })
        })
        .collect();
    ready.wait(N);
    assert_eq!(
        *m.lock().unwrap(),
        0,
        "a child started before the gate opened"
    );
    go.open();
    for c in children {
        assert_eq!(c.join(), 0);
    }
    assert_eq!(*m.lock().unwrap(), N as u64 * M);

    let held = m.lock().unwrap();
    let stuck = run_in_child(Duration::from_millis(100), || {
        let m = SharedMutex::<u64>::open(key).unwrap();
        drop(m.lock());
        0
    });
    assert_eq!(stuck.unwrap_err().exit, Exit::Signal(libc::SIGKILL));
    drop(held);
    assert!(
        !m.is_poisoned(),
        "a process killed while waiting poisoned the mutex"
    );
    *m.try_lock().unwrap() += 1;

    let removed = run_in_child(BOUND, || {
        SharedMutex::<u64>::open(key)
            .and_then(|m| m.remove())
            .map_or(1, |()| 0)
    });
    assert_eq!(removed, Ok(Exit::Code(0)));
    assert_eq!(m.lock().unwrap_err().kind(), ErrorKind::Removed);
    drop(m);
    check.assert_clean();
}
