//! Signals without SA_RESTART hitting processes blocked in SharedMutex::lock and
//! lock_timeout: lock still succeeds when the holder releases, and lock_timeout still
//! expires after its duration (not later, not restarted by each signal).

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{BOUND, Exit, Pipe, SIGNALS, TestKey, fork, install_counting_handler, signal_storm};
use shmsem::{ErrorKind, SharedMutex};

/// Holds a new mutex here while a forked child (with a counting SIGUSR1 handler, no
/// `SA_RESTART`) runs `lock_in_child` on its own handle, which blocks in semop. SIGUSR1
/// storms the child; the mutex is let go once `release_after` signals were sent while the
/// kernel had the child waiting. Returns the key (the objects go with it), the mutex, the
/// pipe `lock_in_child` can report through, and how the child exited.
fn blocked_in_a_storm(
    release_after: u32,
    lock_in_child: impl FnOnce(&SharedMutex<u64>, &Pipe) -> i32,
) -> (TestKey, SharedMutex<u64>, Pipe, Exit) {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let held = m.lock().unwrap();
    let pipe = Pipe::new();
    let key = tk.key();
    let mut child = fork(|| {
        if !install_counting_handler(libc::SIGUSR1) {
            return 90;
        }
        pipe.send(b"r");
        lock_in_child(&SharedMutex::<u64>::open(key).unwrap(), &pipe)
    });
    assert_eq!(pipe.recv_byte(), b'r');
    let mut held = Some(held);
    let mut hits = 0;
    let exit = signal_storm(&mut child, libc::SIGUSR1, || {
        // Count signals sent while the kernel has the child waiting in semop; release
        // after enough of them.
        if held.is_some() && m.semaphores().wait_count(0).unwrap() == 1 {
            hits += 1;
            if hits >= release_after {
                held = None;
            }
        }
    });
    drop(held);
    (tk, m, pipe, exit)
}

#[test]
fn lock_survives_a_sigusr1_storm_and_succeeds_when_released() {
    let (_tk, m, pipe, exit) = blocked_in_a_storm(40, |m, pipe| {
        let r = m.lock().map(|mut g| *g += 1);
        pipe.send_i32(SIGNALS.load(Ordering::Relaxed) as i32);
        if r.is_ok() { 0 } else { 1 }
    });
    let received = pipe.recv_i32();
    assert_eq!(
        exit,
        Exit::Code(0),
        "lock() must succeed after {received} signals"
    );
    assert!(received >= 40, "only {received} signals reached the child");
    assert_eq!(*m.lock().unwrap(), 1);
}

#[test]
fn lock_timeout_expires_on_time_under_a_sigalrm_storm() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let _held = m.lock().unwrap();
    let pipe = Pipe::new();
    let key = tk.key();
    let child = fork(|| {
        if !install_counting_handler(libc::SIGALRM) {
            return 90;
        }
        let m = SharedMutex::<u64>::open(key).unwrap();
        // The child storms itself: SIGALRM every millisecond.
        let tick = libc::timeval {
            tv_sec: 0,
            tv_usec: 1000,
        };
        let timer = libc::itimerval {
            it_interval: tick,
            it_value: tick,
        };
        // SAFETY: setitimer with a local itimerval; SIGALRM is handled above.
        if unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) } != 0 {
            return 91;
        }
        let start = Instant::now();
        let r = m.lock_timeout(Duration::from_millis(500));
        let elapsed = start.elapsed();
        pipe.send_i32(elapsed.as_millis() as i32);
        pipe.send_i32(SIGNALS.load(Ordering::Relaxed) as i32);
        match r {
            Err(e) if e.kind() == ErrorKind::TimedOut => 0,
            Ok(_) => 1,
            Err(_) => 2,
        }
    });
    let elapsed_ms = pipe.recv_i32();
    let received = pipe.recv_i32();
    assert_eq!(child.join(), 0, "lock_timeout must end TimedOut");
    assert!(
        (500..1500).contains(&elapsed_ms),
        "lock_timeout(500ms) under {received} SIGALRMs took {elapsed_ms} ms"
    );
    assert!(received >= 100, "only {received} SIGALRMs were delivered");
}

#[test]
fn lock_timeout_succeeds_under_a_storm_when_released_in_time() {
    let (_tk, m, _pipe, exit) = blocked_in_a_storm(20, |m, _| match m.lock_timeout(BOUND) {
        Ok(mut g) => {
            *g = 7;
            0
        }
        Err(_) => 1,
    });
    assert_eq!(exit, Exit::Code(0));
    assert_eq!(*m.lock().unwrap(), 7);
}
