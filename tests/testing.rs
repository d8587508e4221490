//! shmsem::testing's own tests (feature `testing`, which `cargo test` has through the
//! shmsem-test-common dev-dependency): keys that clean up also when a test panics and
//! leave a parent's objects alone in a child, children's exits and signals, the watchdog
//! that kills an overrunning child (and the child of a killed parent), gates, latches,
//! pipes, and the leak check finding what was left. Every wait is bounded; nothing sleeps
//! to synchronise.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use shmsem::testing::{
    BOUND, Exit, Gate, Latch, LeakCheck, ObjectKind, Pipe, TestKey, fork, key_in_use,
    poll_readable, remove_key, run_in_child, sysv_objects, wait_until,
};
use shmsem::{Key, Segment, SemaphoreSet, SharedMutex};

/// A pidfd for a process that is not necessarily our child (a grandchild): readable once
/// it has ended.
fn pidfd(pid: i32) -> OwnedFd {
    // SAFETY: pidfd_open with a pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor we own.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Blocks this (child) process until a signal kills it.
fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

// ---- TestKey ----------------------------------------------------------------------

#[test]
fn test_keys_are_distinct_free_and_marked() {
    let keys: Vec<TestKey> = (0..200).map(|_| TestKey::new()).collect();
    let mut raw: Vec<u32> = keys.iter().map(|k| k.key().as_raw() as u32).collect();
    for &r in &raw {
        assert_eq!(r >> 24, 0x7d, "{r:#010x}");
        assert_eq!(key_in_use(Key::from_u32(r)), (false, false));
    }
    raw.sort_unstable();
    raw.dedup();
    assert_eq!(raw.len(), 200);
}

#[test]
fn a_test_key_removes_segment_and_semaphore_set_when_the_test_panics() {
    let seen = std::sync::Mutex::new(None);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let key = TestKey::new();
        *seen.lock().unwrap() = Some(key.key());
        let m = SharedMutex::create(key.key(), 0u64).unwrap();
        let _g = m.lock().unwrap();
        assert_eq!(key_in_use(key.key()), (true, true));
        panic!("the test fails with the lock held");
    }));
    assert!(result.is_err());
    let key = seen.lock().unwrap().expect("the closure ran");
    assert_eq!(key_in_use(key), (false, false));
}

#[test]
fn a_test_key_removes_raw_objects_made_under_it_too() {
    let key = TestKey::new();
    let k = key.key();
    let _seg = Segment::create(k, 4096, 0o600).unwrap();
    let _set = SemaphoreSet::create(k, 3, 0o600).unwrap();
    assert_eq!(key_in_use(k), (true, true));
    drop(key);
    assert_eq!(key_in_use(k), (false, false));
}

#[test]
fn a_test_key_dropped_in_a_forked_child_leaves_the_objects_alone() {
    let mut slot = Some(TestKey::new());
    let k = slot.as_ref().unwrap().key();
    let m = SharedMutex::create(k, 5u32).unwrap();
    let child = fork(|| {
        drop(slot.take()); // the child's copy of the key: not the child's objects
        match SharedMutex::<u32>::open(k) {
            Ok(m) if *m.lock().unwrap() == 5 => 0,
            _ => 1,
        }
    });
    assert_eq!(child.join(), 0);
    assert_eq!(
        key_in_use(k),
        (true, true),
        "the child removed the test's objects"
    );
    assert_eq!(*m.lock().unwrap(), 5);
    drop(slot);
    assert_eq!(key_in_use(k), (false, false));
}

#[test]
fn remove_key_and_key_in_use_ignore_the_private_key() {
    remove_key(Key::PRIVATE); // must not make a segment, nor fail
    assert_eq!(key_in_use(Key::PRIVATE), (false, false));
}

// ---- fork, Child, run_in_child -----------------------------------------------------

#[test]
fn a_child_reports_its_exit_code_its_panic_and_the_signal_that_killed_it() {
    assert_eq!(fork(|| 0).wait_timeout(BOUND), Exit::Code(0));
    assert_eq!(fork(|| 3).wait_timeout(BOUND), Exit::Code(3));
    assert_eq!(fork(|| 256 + 7).wait_timeout(BOUND), Exit::Code(7));
    assert_eq!(fork(|| panic!("boom")).wait_timeout(BOUND), Exit::Code(101));
    let killed = fork(|| {
        // SAFETY: a signal to this (child) process.
        unsafe { libc::raise(libc::SIGTERM) };
        0
    })
    .wait_timeout(BOUND);
    assert_eq!(killed, Exit::Signal(libc::SIGTERM));
    assert_eq!(killed.signal(), Some(libc::SIGTERM));
    assert_eq!(killed.code(), None);
    assert!(!killed.success());
    assert!(Exit::Code(0).success());
    assert_eq!(
        killed.to_string(),
        format!("killed by signal {}", libc::SIGTERM)
    );
    assert_eq!(fork(|| 9).join(), 9);
}

#[test]
fn join_panics_on_a_killed_child() {
    let child = fork(|| pause_forever());
    child.kill(libc::SIGKILL);
    let err = catch_unwind(AssertUnwindSafe(|| child.join())).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("killed by signal 9"), "{msg}");
}

#[test]
fn wait_or_kill_kills_an_overrunning_child_and_reports_it() {
    let mut child = fork(|| pause_forever());
    let pid = child.pid();
    assert_eq!(child.try_wait_timeout(Duration::ZERO), None);
    let start = Instant::now();
    let overran = child.wait_or_kill(Duration::from_millis(100)).unwrap_err();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < BOUND, "{took:?}");
    assert_eq!(overran.pid, pid);
    assert_eq!(overran.bound, Duration::from_millis(100));
    assert_eq!(overran.exit, Exit::Signal(libc::SIGKILL));
    assert!(
        overran.to_string().contains("still running after 100ms"),
        "{overran}"
    );
    // Reaped: asking again answers at once, and kill is a no-op.
    assert_eq!(
        child.try_wait_timeout(Duration::ZERO),
        Some(Exit::Signal(libc::SIGKILL))
    );
    child.kill(libc::SIGKILL);
}

#[test]
fn wait_timeout_panics_after_killing_an_overrunning_child() {
    let mut child = fork(|| pause_forever());
    let watch = pidfd(child.pid());
    let err = catch_unwind(AssertUnwindSafe(|| {
        child.wait_timeout(Duration::from_millis(50));
    }))
    .unwrap_err();
    assert!(
        err.downcast_ref::<String>()
            .unwrap()
            .contains("still running")
    );
    assert!(
        poll_readable(watch.as_raw_fd(), Duration::ZERO),
        "the child is still running"
    );
}

#[test]
fn dropping_a_child_kills_and_reaps_it() {
    let pipe = Pipe::new();
    let child = fork(|| {
        pipe.send(b"r");
        pause_forever()
    });
    assert_eq!(pipe.recv_byte(), b'r');
    let watch = pidfd(child.pid());
    drop(child);
    assert!(poll_readable(watch.as_raw_fd(), Duration::ZERO));
}

#[test]
fn run_in_child_returns_the_exit_or_kills_at_the_bound() {
    let key = TestKey::new();
    let m = SharedMutex::create(key.key(), 1u64).unwrap();
    let k = key.key();
    let read = run_in_child(BOUND, || {
        *SharedMutex::<u64>::open(k).unwrap().lock().unwrap() as i32
    });
    assert_eq!(read, Ok(Exit::Code(1)));

    let held = m.lock().unwrap();
    let start = Instant::now();
    let stuck = run_in_child(Duration::from_millis(200), || {
        let m = SharedMutex::<u64>::open(k).unwrap();
        drop(m.lock()); // waits for `held`
        0
    });
    assert_eq!(stuck.unwrap_err().exit, Exit::Signal(libc::SIGKILL));
    assert!(start.elapsed() >= Duration::from_millis(200));
    drop(held);
    // The killed waiter took nothing with it: the lock works, unpoisoned.
    assert_eq!(*m.lock().unwrap(), 1);
}

#[test]
fn run_in_childs_child_dies_with_the_thread_that_waits_for_it() {
    // A middle process runs run_in_child; its child reports its pid and waits forever.
    // Killing the middle process must take the grandchild with it (PR_SET_PDEATHSIG).
    let pids = Pipe::new();
    let middle = fork(|| {
        let _ = run_in_child(BOUND, || {
            pids.send_i32(std::process::id() as i32);
            pause_forever()
        });
        0
    });
    let grandchild = pids.recv_i32();
    let watch = pidfd(grandchild);
    assert!(
        !poll_readable(watch.as_raw_fd(), Duration::ZERO),
        "the grandchild ended early"
    );
    middle.kill(libc::SIGKILL);
    assert!(
        poll_readable(watch.as_raw_fd(), BOUND),
        "the grandchild outlived the process that ran it"
    );
    let mut middle = middle;
    assert_eq!(middle.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
}

// ---- Gate, Latch, Pipe, wait_until ---------------------------------------------------

#[test]
fn a_gate_holds_children_until_it_opens() {
    let (ready, go, passed) = (Latch::new(), Gate::new(), Pipe::new());
    let children: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                ready.arrive();
                go.wait();
                passed.send(b"p");
                0
            })
        })
        .collect();
    ready.wait(3);
    assert!(!go.is_open());
    // All three are at the gate (or on their way to it): none is past it.
    assert!(!poll_readable(passed.read.as_raw_fd(), Duration::ZERO));
    go.open();
    assert!(go.is_open());
    let mut three = [0u8; 3];
    assert!(passed.recv_timeout(&mut three, BOUND));
    assert_eq!(&three, b"ppp");
    for c in children {
        assert_eq!(c.join(), 0);
    }
    // Open for good: later waits pass at once, opening again changes nothing.
    go.open();
    assert!(go.wait_timeout(Duration::ZERO));
}

#[test]
fn a_closed_gate_times_out_and_a_child_waiting_at_it_says_so() {
    let go = Gate::new();
    let start = Instant::now();
    assert!(!go.wait_timeout(Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));
    // In a child, wait() panics after BOUND: here a short bound, as a child would use.
    let exit = fork(|| {
        if go.wait_timeout(Duration::from_millis(20)) {
            0
        } else {
            4
        }
    })
    .wait_timeout(BOUND);
    assert_eq!(exit, Exit::Code(4));
}

#[test]
fn a_latch_counts_arrivals_before_and_during_the_wait() {
    let latch = Latch::new();
    latch.arrive();
    latch.arrive();
    assert_eq!(latch.wait_timeout(2, Duration::ZERO), 2);
    assert_eq!(latch.wait_timeout(1, Duration::ZERO), 0);

    let go = Gate::new();
    let children: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                go.wait();
                latch.arrive();
                0
            })
        })
        .collect();
    go.open();
    latch.wait(4);
    for c in children {
        assert_eq!(c.join(), 0);
    }
    // A short count: what arrived is taken, the rest times out.
    latch.arrive();
    let start = Instant::now();
    assert_eq!(latch.wait_timeout(3, Duration::from_millis(50)), 1);
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn a_pipe_carries_bytes_and_numbers_and_ends_when_every_writer_is_gone() {
    let mut pipe = Pipe::new();
    let children: Vec<_> = (0..2)
        .map(|i| {
            let pipe = &pipe;
            fork(move || {
                pipe.send_i32(-1000 - i);
                0
            })
        })
        .collect();
    let mut got = [pipe.recv_i32(), pipe.recv_i32()];
    got.sort_unstable();
    assert_eq!(got, [-1001, -1000]);
    for c in children {
        assert_eq!(c.join(), 0);
    }
    // Nothing more, but the parent's own write end is still open: no end of file yet.
    assert!(!pipe.wait_eof(Duration::from_millis(20)));
    pipe.send(b"xy");
    assert_eq!(pipe.recv_byte(), b'x');
    let mut b = [0u8; 2];
    assert!(
        !pipe.recv_timeout(&mut b, Duration::from_millis(20)),
        "one byte is not two"
    );
    assert_eq!(b[0], b'y');
    pipe.close_write();
    assert!(pipe.wait_eof(BOUND));
}

#[test]
fn wait_until_rechecks_until_true_or_the_bound() {
    let mut n = 0;
    assert!(wait_until(BOUND, || {
        n += 1;
        n == 5
    }));
    let start = Instant::now();
    assert!(!wait_until(Duration::from_millis(30), || false));
    assert!(start.elapsed() >= Duration::from_millis(30));
}

// ---- LeakCheck -----------------------------------------------------------------------

#[test]
fn a_keyed_leak_check_is_clean_when_the_code_removes_its_objects() {
    let key = TestKey::new();
    let k = key.key();
    let check = LeakCheck::keys([k]);
    let made = run_in_child(BOUND, || {
        let m = SharedMutex::create(k, 0u64).unwrap();
        *m.lock().unwrap() += 1;
        m.remove().unwrap();
        0
    });
    assert_eq!(made, Ok(Exit::Code(0)));
    assert!(check.leaks().is_empty());
    check.assert_clean();
}

#[test]
fn a_keyed_leak_check_lists_both_objects_left_and_removes_them_when_it_fails() {
    let key = TestKey::new();
    let k = key.key();
    let check = LeakCheck::keys([k, Key::PRIVATE]);
    assert_eq!(
        run_in_child(BOUND, || SharedMutex::create(k, 0u64).map_or(1, |_| 0)),
        Ok(Exit::Code(0))
    );
    let leaks = check.leaks();
    assert_eq!(
        leaks.iter().map(|o| (o.kind, o.key)).collect::<Vec<_>>(),
        [(ObjectKind::Segment, k), (ObjectKind::SemaphoreSet, k)]
    );
    assert!(
        leaks[0]
            .creator_pid
            .is_some_and(|p| p != std::process::id() as i32)
    );
    assert_eq!(leaks[1].creator_pid, None);
    let err = catch_unwind(AssertUnwindSafe(|| check.assert_clean())).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.starts_with("2 System V object(s)"), "{msg}");
    assert!(
        msg.contains(&format!("segment id {} key {k}", leaks[0].id)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("semaphore set id {} key {k}", leaks[1].id)),
        "{msg}"
    );
    assert_eq!(key_in_use(k), (false, false), "assert_clean removed them");
}

#[test]
fn objects_that_were_there_before_the_check_are_not_leaks() {
    let key = TestKey::new();
    let _m = SharedMutex::create(key.key(), 0u8).unwrap();
    let check = LeakCheck::keys([key.key()]);
    assert!(check.leaks().is_empty());
    check.assert_clean();
    assert_eq!(key_in_use(key.key()), (true, true));
}

#[test]
fn the_whole_namespace_check_sees_private_objects() {
    // Other tests make objects meanwhile: look for ours among what is new.
    let check = LeakCheck::start();
    let seg = Segment::create(Key::PRIVATE, 128, 0o600).unwrap();
    let set = SemaphoreSet::create(Key::PRIVATE, 1, 0o600).unwrap();
    let leaks = check.leaks();
    let mine = |kind, id| leaks.iter().any(|o| o.kind == kind && o.id == id);
    assert!(mine(ObjectKind::Segment, seg.id()), "{leaks:?}");
    assert!(mine(ObjectKind::SemaphoreSet, set.id()), "{leaks:?}");
    assert!(sysv_objects().unwrap().iter().any(|o| o.id == set.id()));

    // Narrowed to this set, the failing check removes it.
    let set_id = set.id();
    let narrowed = check.filter(move |o| o.kind == ObjectKind::SemaphoreSet && o.id == set_id);
    assert!(catch_unwind(AssertUnwindSafe(|| narrowed.assert_clean())).is_err());
    assert_eq!(set.value(0).unwrap_err().kind(), shmsem::ErrorKind::Removed);

    // A removed segment still attached here goes when this detaches: not a leak.
    let me = std::process::id() as i32;
    let check = LeakCheck::start().filter(move |o| o.creator_pid == Some(me));
    let seg2 = Segment::create(Key::PRIVATE, 128, 0o600).unwrap();
    assert_eq!(check.leaks().len(), 1);
    seg2.remove().unwrap();
    assert!(check.leaks().is_empty());
    seg.remove().unwrap();
}
