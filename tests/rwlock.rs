//! SharedRwLock across real processes: shared readers, exclusive writers, writer
//! preference without reader starvation, kill -9 of readers and writers, poisoning,
//! read-only handles, removal.

mod common;

use std::time::{Duration, Instant};

use common::{BOUND, Child, Exit, Pipe, TestKey, fork, wait_until};
use shmsem::{ErrorKind, LockError, Pod, SharedMutex, SharedRwLock, Zeroable};

const WRITER: usize = 0;
const READERS: usize = 1;
const QUEUED: usize = 2;

fn code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Removed => 10,
        ErrorKind::WouldBlock => 12,
        ErrorKind::TimedOut => 13,
        ErrorKind::Poisoned => 14,
        _ => 19,
    }
}

fn values<T: Pod>(rw: &SharedRwLock<T>) -> [i32; 3] {
    let s = rw.semaphores();
    [
        s.value(WRITER).unwrap(),
        s.value(READERS).unwrap(),
        s.value(QUEUED).unwrap(),
    ]
}

#[test]
fn two_readers_are_inside_at_the_same_time() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), 42u64).unwrap();
    let r = rw.read().unwrap();
    let key = tk.key();
    let child = fork(move || {
        let rw = SharedRwLock::<u64>::open(key).unwrap();
        let Ok(r) = rw.read_timeout(BOUND) else {
            return 1;
        };
        // Both read guards are alive now: the kernel counts two readers.
        if *r != 42 || rw.semaphores().value(READERS).unwrap() != 2 {
            return 2;
        }
        0
    });
    assert_eq!(child.join(), 0);
    assert_eq!(*r, 42);
    drop(r);
    assert_eq!(values(&rw), [0, 0, 0]);
}

#[test]
fn a_writer_excludes_readers_and_other_writers() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), 0u64).unwrap();
    let mut w = rw.write().unwrap();
    *w = 1;
    assert_eq!(values(&rw), [1, 0, 0]);
    let key = tk.key();
    let child = fork(move || {
        let rw = SharedRwLock::<u64>::open(key).unwrap();
        let busy = |k: ErrorKind| code(k);
        let a = rw.try_read().map(|_| ()).map_err(|e| busy(e.kind()));
        let b = rw.try_write().map(|_| ()).map_err(|e| busy(e.kind()));
        let c = rw.read_timeout(Duration::from_millis(100)).map(|_| ());
        let d = rw.write_timeout(Duration::from_millis(100)).map(|_| ());
        let ok = a == Err(12)
            && b == Err(12)
            && c.is_err_and(|e| e.kind() == ErrorKind::TimedOut)
            && d.is_err_and(|e| e.kind() == ErrorKind::TimedOut);
        if ok { 0 } else { 1 }
    });
    assert_eq!(child.join(), 0);
    assert_eq!(
        values(&rw),
        [1, 0, 0],
        "a timed-out writer is no longer queued"
    );
    drop(w);
    assert_eq!(*rw.try_read().unwrap(), 1);
    assert!(rw.try_write().is_ok());
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Triple {
    a: u64,
    b: u64,
    c: u64,
    writes: u64,
}

fn spin(n: u64) {
    for i in 0..n {
        std::hint::black_box(i);
    }
}

#[test]
fn readers_never_see_a_torn_value_while_writers_write() {
    const WRITERS: u64 = 2;
    const WRITES: u64 = 400;
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), Triple::zeroed()).unwrap();
    let key = tk.key();
    let mut kids: Vec<Child> = Vec::new();
    for _ in 0..WRITERS {
        kids.push(fork(move || {
            let rw = SharedRwLock::<Triple>::open(key).unwrap();
            for _ in 0..WRITES {
                let mut w = rw.write().unwrap();
                let n = w.a + 1;
                w.a = n;
                spin(200);
                w.b = n;
                spin(200);
                w.c = n;
                w.writes += 1;
            }
            0
        }));
    }
    for _ in 0..2 {
        kids.push(fork(move || {
            let rw = SharedRwLock::<Triple>::open(key).unwrap();
            let deadline = Instant::now() + BOUND;
            loop {
                let r = rw.read().unwrap();
                if r.a != r.b || r.b != r.c {
                    return 1; // torn
                }
                if r.writes == WRITERS * WRITES {
                    return 0;
                }
                drop(r);
                if Instant::now() > deadline {
                    return 2;
                }
            }
        }));
    }
    for k in kids {
        assert_eq!(k.join(), 0);
    }
    let r = rw.read().unwrap();
    assert_eq!(
        (r.a, r.b, r.c),
        (WRITERS * WRITES, WRITERS * WRITES, WRITERS * WRITES)
    );
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Flag {
    stop: u32,
    _pad: u32,
}

#[test]
fn a_stream_of_readers_cannot_starve_a_writer() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), Flag::zeroed()).unwrap();
    let (to_a, to_b) = (Pipe::new(), Pipe::new());
    let key = tk.key();
    // Two readers in a relay: each releases its read lock only after the other has taken
    // one (or after 50 ms without news), so without writer preference there is always a
    // reader inside and the writer would wait until the readers give up (BOUND).
    let relay = |mine: &'static str, inbox: &Pipe, peer: &Pipe| -> i32 {
        let rw = SharedRwLock::<Flag>::open(key).unwrap();
        let deadline = Instant::now() + BOUND;
        let mut held = None;
        if mine == "a" {
            held = Some(rw.read().unwrap());
            peer.send(b"g");
        }
        loop {
            inbox.recv_timeout(&mut [0], Duration::from_millis(50));
            drop(held.take());
            let r = rw.read().unwrap();
            if r.stop == 1 {
                return 0;
            }
            held = Some(r);
            peer.send(b"g");
            if Instant::now() > deadline {
                return 3;
            }
        }
    };
    let readers = [
        fork(|| relay("a", &to_a, &to_b)),
        fork(|| relay("b", &to_b, &to_a)),
    ];
    assert!(wait_until(BOUND, || values(&rw)[READERS] == 2));
    let t = Instant::now();
    let mut w = rw
        .write_timeout(Duration::from_secs(5))
        .expect("writer starved");
    let waited = t.elapsed();
    w.stop = 1;
    drop(w);
    for r in readers {
        assert_eq!(r.join(), 0);
    }
    println!("writer got in after {waited:?} with readers relaying");
}

#[test]
fn a_writer_relocking_in_a_loop_does_not_starve_readers() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), Flag::zeroed()).unwrap();
    let started = Pipe::new();
    let key = tk.key();
    let writer = fork(|| {
        let rw = SharedRwLock::<Flag>::open(key).unwrap();
        let deadline = Instant::now() + BOUND;
        let mut first = true;
        loop {
            let w = rw.write().unwrap();
            if first {
                started.send(b"w");
                first = false;
            }
            if w.stop == 1 {
                return 0;
            }
            spin(5_000);
            drop(w);
            if Instant::now() > deadline {
                return 3;
            }
        }
    });
    assert_eq!(started.recv_byte(), b'w');
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let t = Instant::now();
        let r = rw
            .read_timeout(Duration::from_secs(5))
            .expect("reader starved");
        worst = worst.max(t.elapsed());
        drop(r);
    }
    let mut w = rw.write_timeout(Duration::from_secs(5)).unwrap();
    w.stop = 1;
    drop(w);
    assert_eq!(writer.join(), 0);
    println!("worst reader wait against a looping writer: {worst:?}");
}

#[test]
fn a_dead_reader_releases_and_does_not_poison() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), 5u64).unwrap();
    let inside = Pipe::new();
    let never = Pipe::new();
    let key = tk.key();
    let mut child = fork(|| {
        let rw = SharedRwLock::<u64>::open(key).unwrap();
        let _r = rw.read().unwrap();
        inside.send(b"i");
        never.recv_timeout(&mut [0], BOUND);
        0
    });
    assert_eq!(inside.recv_byte(), b'i');
    assert_eq!(values(&rw), [0, 1, 0]);
    child.kill(libc::SIGKILL);
    assert_eq!(child.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
    assert_eq!(values(&rw), [0, 0, 0], "SEM_UNDO took the reader back");
    assert!(!rw.is_poisoned());
    assert_eq!(*rw.write_timeout(BOUND).unwrap(), 5);
}

#[test]
fn a_dead_writer_poisons_for_readers_and_writers() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), [0u64; 2]).unwrap();
    let inside = Pipe::new();
    let never = Pipe::new();
    let key = tk.key();
    let mut child = fork(|| {
        let rw = SharedRwLock::<[u64; 2]>::open(key).unwrap();
        let mut w = rw.write().unwrap();
        w[0] = 1;
        inside.send(b"i");
        never.recv_timeout(&mut [0], BOUND);
        w[1] = 1;
        0
    });
    assert_eq!(inside.recv_byte(), b'i');
    child.kill(libc::SIGKILL);
    child.wait_timeout(BOUND);
    assert_eq!(values(&rw), [0, 0, 0]);
    assert!(rw.is_poisoned());

    // A read-only reader sees it too, without writing anything.
    let ro = SharedRwLock::<[u64; 2]>::options()
        .read_only(true)
        .open(tk.key())
        .unwrap();
    let p = ro.read().unwrap_err().into_poisoned().unwrap();
    assert_eq!(p.owner_pid(), Some(child.pid));
    assert_eq!(**p.get_ref(), [1, 0]);
    drop(p);

    let err = rw.write().unwrap_err();
    let LockError::Poisoned(p) = err else {
        panic!("expected Poisoned, got {err:?}")
    };
    assert_eq!(p.owner_pid(), Some(child.pid));
    let mut w = p.into_inner();
    w[1] = w[0];
    rw.clear_poison();
    drop(w);
    assert!(!rw.is_poisoned());
    assert_eq!(*ro.read().unwrap(), [1, 1]);
}

#[test]
fn a_writer_killed_while_queued_lets_readers_in_again() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), 0u64).unwrap();
    let r = rw.read().unwrap();
    let key = tk.key();
    let mut writer = fork(move || {
        let rw = SharedRwLock::<u64>::open(key).unwrap();
        let _w = rw.write();
        0
    });
    assert!(wait_until(BOUND, || values(&rw)[QUEUED] == 1));
    assert_eq!(
        rw.try_read().unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "a queued writer holds new readers back"
    );
    writer.kill(libc::SIGKILL);
    writer.wait_timeout(BOUND);
    assert_eq!(values(&rw), [0, 1, 0]);
    assert!(rw.try_read().is_ok());
    drop(r);
    assert!(!rw.is_poisoned());
}

#[test]
fn a_panicking_writer_poisons_and_a_panicking_reader_does_not() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), 0u64).unwrap();
    std::thread::scope(|s| {
        let r = s
            .spawn(|| {
                let _r = rw.read().unwrap();
                panic!("reader panics");
            })
            .join();
        assert!(r.is_err());
    });
    assert!(!rw.is_poisoned());
    assert_eq!(values(&rw), [0, 0, 0]);
    std::thread::scope(|s| {
        let r = s
            .spawn(|| {
                let mut w = rw.write().unwrap();
                *w = 9;
                panic!("writer panics");
            })
            .join();
        assert!(r.is_err());
    });
    assert!(rw.is_poisoned());
    let err = rw.read().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Poisoned);
    assert_eq!(
        err.into_poisoned().unwrap().owner_pid(),
        Some(std::process::id() as i32)
    );
    rw.clear_poison();
    assert_eq!(*rw.read().unwrap(), 9);
}

#[test]
fn a_read_only_handle_reads_and_cannot_write() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), 3u32).unwrap();
    let ro = SharedRwLock::<u32>::options()
        .read_only(true)
        .open(tk.key())
        .unwrap();
    assert!(ro.is_read_only() && ro.segment().is_read_only());
    assert_eq!(*ro.read().unwrap(), 3);
    assert_eq!(*ro.try_read().unwrap(), 3);
    assert_eq!(*ro.read_timeout(BOUND).unwrap(), 3);
    for err in [
        ro.write().unwrap_err(),
        ro.try_write().unwrap_err(),
        ro.write_timeout(BOUND).unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    }
    assert_eq!(
        values(&rw),
        [0, 0, 0],
        "a refused write leaves nothing queued"
    );
    *rw.write().unwrap() = 4;
    assert_eq!(*ro.read().unwrap(), 4);
}

#[test]
fn remove_wakes_waiting_readers_and_writers() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), 0u64).unwrap();
    let w = rw.write().unwrap();
    let key = tk.key();
    let reader = fork(move || {
        let rw = SharedRwLock::<u64>::open(key).unwrap();
        rw.read().map_or_else(|e| code(e.kind()), |_| 0)
    });
    let writer = fork(move || {
        let rw = SharedRwLock::<u64>::open(key).unwrap();
        rw.write().map_or_else(|e| code(e.kind()), |_| 0)
    });
    assert!(wait_until(BOUND, || {
        let s = rw.semaphores();
        s.zero_wait_count(WRITER).unwrap() == 2
    }));
    rw.remove().unwrap();
    assert_eq!(reader.join(), code(ErrorKind::Removed));
    assert_eq!(writer.join(), code(ErrorKind::Removed));
    drop(w);
    assert_eq!(
        SharedRwLock::<u64>::open(key).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn a_rwlock_is_not_a_mutex() {
    let tk = TestKey::new();
    let _rw = SharedRwLock::create(tk.key(), 0u64).unwrap();
    let err = SharedMutex::<u64>::open(tk.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LayoutMismatch, "{err}");
    let tk2 = TestKey::new();
    let _m = SharedMutex::create(tk2.key(), 0u64).unwrap();
    let err = SharedRwLock::<u64>::open(tk2.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LayoutMismatch, "{err}");
}

#[test]
fn kill_9_of_readers_and_writers_at_random_points_always_releases() {
    let tk = TestKey::new();
    let rw = SharedRwLock::create(tk.key(), Triple::zeroed()).unwrap();
    let key = tk.key();
    let spawn = |writer: bool| -> Child {
        fork(move || {
            let rw = SharedRwLock::<Triple>::open(key).unwrap();
            loop {
                if writer {
                    let mut w = match rw.write_timeout(BOUND) {
                        Ok(w) => w,
                        Err(LockError::Poisoned(p)) => {
                            let mut w = p.into_inner();
                            let n = w.a.max(w.b).max(w.c);
                            (w.a, w.b, w.c) = (n, n, n); // repair
                            rw.clear_poison();
                            w
                        }
                        Err(LockError::Failed(_)) => return 2,
                    };
                    let n = w.a + 1;
                    w.a = n;
                    spin(300);
                    w.b = n;
                    w.c = n;
                } else {
                    match rw.read_timeout(BOUND) {
                        Ok(r) if r.a != r.b || r.b != r.c => return 1,
                        Ok(_) | Err(LockError::Poisoned(_)) => {}
                        Err(LockError::Failed(_)) => return 2,
                    }
                }
                spin(300);
            }
        })
    };
    let mut kids: Vec<(bool, Child)> = (0..4).map(|i| (i % 2 == 0, spawn(i % 2 == 0))).collect();
    let mut seed = 0x1234_5678_u64;
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = (seed % kids.len() as u64) as usize;
        std::thread::sleep(Duration::from_micros(seed % 2000)); // spreads the kills
        kids[i].1.kill(libc::SIGKILL);
        let exit = kids[i].1.wait_timeout(BOUND);
        assert_eq!(
            exit,
            Exit::Signal(libc::SIGKILL),
            "a worker gave up by itself"
        );
        let writer = kids[i].0;
        kids[i] = (writer, spawn(writer));
    }
    for (_, k) in &mut kids {
        k.kill(libc::SIGKILL);
        k.wait_timeout(BOUND);
    }
    assert_eq!(
        values(&rw),
        [0, 0, 0],
        "every dead reader and writer was undone"
    );
    let mut w = match rw.write_timeout(BOUND) {
        Ok(w) => w,
        Err(LockError::Poisoned(p)) => {
            rw.clear_poison();
            p.into_inner()
        }
        Err(e) => panic!("{e}"),
    };
    let n = w.a.max(w.b).max(w.c);
    assert!(n > 0);
    (w.a, w.b, w.c) = (n, n, n);
}

#[test]
fn read_until_and_write_until_time_out_at_the_deadline() {
    let tk = TestKey::new();
    let l = SharedRwLock::create(tk.key(), 0u64).unwrap();
    let other = SharedRwLock::<u64>::open(tk.key()).unwrap();
    let w = other.write().unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(50);
    assert_eq!(
        l.read_until(deadline).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    assert_eq!(
        l.write_until(deadline).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took < BOUND,
        "{took:?}"
    );
    drop(w);
    assert!(l.read_until(start).is_ok());
    assert!(l.write_until(start).is_ok());
}

/// With shmsem::testing's pieces: reader processes take the read lock and report through
/// a latch, so the parent knows all of them are inside at once; they stay there until a
/// gate opens. Meanwhile a writer cannot get in: `try_write` is busy, and a writer
/// process that waits is stopped by the watchdog (its queued-writer mark goes with it).
/// Once they leave, a writer gets in; the pair is removed and nothing is left.
#[test]
fn readers_held_inside_by_a_gate_keep_writers_out_until_it_opens() {
    use shmsem::testing::{Gate, Latch, LeakCheck, run_in_child};
    const R: usize = 3;
    let tk = TestKey::new();
    let key = tk.key();
    let check = LeakCheck::keys([key]);
    let rw = SharedRwLock::create(key, 7u64).unwrap();
    let (inside, leave) = (Latch::new(), Gate::new());
    let readers: Vec<_> = (0..R)
        .map(|_| {
            let (inside, leave) = (&inside, &leave);
            fork(move || {
                let rw = SharedRwLock::<u64>::open(key).unwrap();
                let g = rw.read().unwrap();
                inside.arrive();
                leave.wait();
                if *g == 7 { 0 } else { 1 }
            })
        })
        .collect();
    inside.wait(R);
    assert_eq!(
        rw.try_write().unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "a writer got in with {R} readers inside"
    );
    let writer = run_in_child(Duration::from_millis(100), || {
        let rw = SharedRwLock::<u64>::open(key).unwrap();
        drop(rw.write());
        0
    });
    assert_eq!(writer.unwrap_err().exit, Exit::Signal(libc::SIGKILL));
    assert_eq!(values(&rw)[QUEUED], 0, "the killed writer is still queued");
    leave.open();
    for r in readers {
        assert_eq!(r.join(), 0);
    }
    *rw.write_timeout(BOUND).unwrap() = 8;
    assert_eq!(*rw.read().unwrap(), 8);
    rw.remove().unwrap();
    drop(rw);
    check.assert_clean();
}
