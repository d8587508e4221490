//! SharedCondvar between processes and threads (issue 11): no lost wake-ups round a ring
//! of processes; waiters killed while waiting never swallow a notification; random kills
//! among waiters and notifiers leave nothing that blocks or drifts; a mutex holder killed
//! inside leaves its waiters wakeable, and they re-acquire `Poisoned`; timeouts keep time
//! under a signal storm; `remove` wakes every waiter with `Removed`; threads and forked
//! children with inherited handles.
//!
//! Every wait is bounded (a timeout that fails the test); handshakes go through pipes,
//! child exits and the kernel's own counts (`SharedCondvar::waiters`), never sleeps.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    BOUND, Child, Exit, Pipe, SIGNALS, TestKey, fork, install_counting_handler, signal_storm,
    wait_until,
};
use shmsem::{ErrorKind, LockError, Pod, SharedCondvar, SharedMutex, Zeroable};

/// The state the ring passes round: whose turn it is, and how many rounds are done.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct Turn {
    turn: u32,
    rounds: u32,
}

/// A mutex and a condvar under two keys of our own.
struct Pair {
    _keys: (TestKey, TestKey),
    mutex: SharedMutex<Turn>,
    cv: SharedCondvar,
}

impl Pair {
    fn new() -> Pair {
        let keys = (TestKey::new(), TestKey::new());
        let mutex = SharedMutex::create(keys.0.key(), Turn { turn: 0, rounds: 0 }).unwrap();
        let cv = SharedCondvar::create(keys.1.key()).unwrap();
        Pair {
            _keys: keys,
            mutex,
            cv,
        }
    }

    /// Waits (bounded) until exactly `n` waits are registered.
    fn await_waiters(&self, n: usize) {
        assert!(
            wait_until(BOUND, || self.cv.waiters().unwrap() == n),
            "expected {n} registered waiters, have {}",
            self.cv.waiters().unwrap()
        );
    }

    /// A child that waits once (bounded by `BOUND`) and exits 0 if notified, 2 if timed
    /// out, 3 if the mutex came back poisoned, 4 if the condvar was removed, 5 otherwise.
    fn waiter(&self) -> Child {
        fork(
            || match self.cv.wait_timeout(self.mutex.lock().unwrap(), BOUND) {
                Ok((_, r)) if !r.timed_out() => 0,
                Ok(_) => 2,
                Err(LockError::Poisoned(_)) => 3,
                Err(e) if e.kind() == ErrorKind::Removed => 4,
                Err(_) => 5,
            },
        )
    }
}

#[test]
fn a_token_goes_round_a_ring_of_four_processes_5000_times() {
    const PROCS: u32 = 4;
    const ROUNDS: u32 = 5000;
    let p = Pair::new();
    let children: Vec<Child> = (0..PROCS)
        .map(|me| {
            let p = &p;
            fork(move || {
                loop {
                    let g = p.mutex.lock().unwrap();
                    let (mut g, r) =
                        p.cv.wait_timeout_while(g, BOUND, |t| t.turn != me && t.rounds < ROUNDS)
                            .unwrap();
                    if r.timed_out() {
                        return 2; // a lost wake-up
                    }
                    if g.rounds >= ROUNDS {
                        return 0;
                    }
                    g.turn = (me + 1) % PROCS;
                    if me == PROCS - 1 {
                        g.rounds += 1;
                    }
                    drop(g);
                    p.cv.notify_all().unwrap();
                }
            })
        })
        .collect();
    for c in children {
        assert_eq!(c.join(), 0, "a process timed out waiting for its turn");
    }
    assert_eq!(p.mutex.lock().unwrap().rounds, ROUNDS);
    p.await_waiters(0);
}

#[test]
fn notify_one_wakes_the_live_waiter_after_three_were_killed_waiting() {
    let p = Pair::new();
    for round in 0..20 {
        // Register one after another, so the dead ones are the ones notify_one would
        // reach first if it handed notifications to registrations instead of the living.
        let mut waiters = Vec::new();
        for k in 0..4 {
            waiters.push(p.waiter());
            p.await_waiters(k + 1);
        }
        for w in &mut waiters[..3] {
            w.kill(libc::SIGKILL);
            assert_eq!(w.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
        }
        p.await_waiters(1);
        p.cv.notify_one().unwrap();
        let live = waiters.pop().unwrap();
        assert_eq!(
            live.join(),
            0,
            "round {round}: the live waiter was not woken"
        );
        p.await_waiters(0);
    }
}

#[test]
fn waiters_of_a_holder_killed_inside_are_woken_by_anyone_and_see_poison() {
    let p = Pair::new();
    let waiters: Vec<Child> = (0..2)
        .map(|k| {
            let w = p.waiter();
            p.await_waiters(k + 1);
            w
        })
        .collect();
    // The process that would change the state and notify dies holding the mutex.
    let pipe = Pipe::new();
    let mut holder = fork(|| {
        let mut g = p.mutex.lock().unwrap();
        g.turn = 7;
        pipe.send(b"h");
        loop {
            std::hint::spin_loop();
        }
    });
    assert_eq!(pipe.recv_byte(), b'h');
    holder.kill(libc::SIGKILL);
    assert_eq!(holder.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
    // Anyone may notify; the waiters take the lock again and learn of the death.
    let notifier = fork(|| p.cv.notify_all().map_or(1, |_| 0));
    assert_eq!(notifier.join(), 0);
    for w in waiters {
        assert_eq!(w.join(), 3, "a woken waiter must re-acquire Poisoned");
    }
}

#[test]
fn random_kills_among_waiters_and_notifiers_leave_nothing_behind() {
    const KILLS: usize = 500;
    const WORKERS: usize = 4;
    let p = Pair::new();
    let before = handoffs_per_second(&p);
    let seed = std::env::var("CONDVAR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15);
    println!("CONDVAR_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Workers wait (short timeouts, so they also go through the timeout path) and notify,
    // at random; the parent kills one at a random moment and starts another in its place.
    let worker = |seed: u64| {
        let p = &p;
        fork(move || {
            let mut r = seed | 1;
            loop {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                let g = match p.mutex.lock() {
                    Ok(g) => g,
                    Err(LockError::Poisoned(e)) => e.into_inner(),
                    Err(_) => return 1,
                };
                let notify = r % 3 == 0;
                let g = match p.cv.wait_timeout(g, Duration::from_micros(r % 2000)) {
                    Ok((g, _)) => g,
                    Err(LockError::Poisoned(e)) => e.into_inner().0,
                    Err(_) => return 1,
                };
                drop(g);
                let sent = match notify {
                    true if r % 2 == 0 => p.cv.notify_all(),
                    true => p.cv.notify_one(),
                    false => Ok(()),
                };
                if sent.is_err() {
                    return 1;
                }
            }
        })
    };
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| worker(next())).collect();
    for _ in 0..KILLS {
        // The kill schedule's pacing (not synchronisation): up to 2 ms between kills.
        std::thread::sleep(Duration::from_micros(next() % 2000));
        let i = (next() % WORKERS as u64) as usize;
        workers[i].kill(libc::SIGKILL);
        match workers[i].wait_timeout(BOUND) {
            Exit::Signal(libc::SIGKILL) => {}
            other => panic!("a worker ended on its own: {other:?}"),
        }
        workers[i] = worker(next());
    }
    for w in &mut workers {
        w.kill(libc::SIGKILL);
        w.wait_timeout(BOUND);
    }
    // A worker killed inside the mutex poisoned it: acknowledge, as a supervisor would.
    if let Err(LockError::Poisoned(e)) = p.mutex.lock() {
        drop(e.into_inner());
        p.mutex.clear_poison();
    }
    // Nothing registered is left (the kernel deregistered every dead waiter), no word
    // stays set once a notifier has passed, and no wake-up count is left above 1.
    p.await_waiters(0);
    p.cv.notify_all().unwrap();
    let values = p.cv.semaphores().values().unwrap();
    assert!(
        values[..256].iter().all(|&v| v <= 1),
        "a wake-up semaphore drifted: {:?}",
        &values[..256]
    );
    assert!(
        words(&p.cv).iter().all(|&w| w == 0),
        "waiter words left set"
    );
    let after = handoffs_per_second(&p);
    println!("handoffs/s before the kills: {before:.0}, after: {after:.0}");
}

/// The condvar's waiter words (docs/FORMAT.md, "Condvar": 256 u32 at the payload).
fn words(cv: &SharedCondvar) -> Vec<u32> {
    let mut bytes = vec![0u8; 1024];
    // SAFETY: a read of the payload's words while no guard of this object exists here.
    let seg = unsafe { cv.segment().as_segment() };
    seg.read_exact_at(&mut bytes, 64).unwrap();
    bytes
        .chunks(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

/// Two processes hand the turn to each other 1000 times (each wait bounded); the rate.
fn handoffs_per_second(p: &Pair) -> f64 {
    const N: u32 = 1000;
    *p.mutex.lock().unwrap() = Turn { turn: 0, rounds: 0 };
    let start = Instant::now();
    let sides: Vec<Child> = (0..2u32)
        .map(|me| {
            fork(move || {
                for _ in 0..N {
                    let g = p.mutex.lock().unwrap();
                    let (mut g, r) = p.cv.wait_timeout_while(g, BOUND, |t| t.turn != me).unwrap();
                    if r.timed_out() {
                        return 2;
                    }
                    g.turn = 1 - me;
                    g.rounds += 1;
                    drop(g);
                    p.cv.notify_one().unwrap();
                }
                0
            })
        })
        .collect();
    for s in sides {
        assert_eq!(s.join(), 0, "a handoff was lost");
    }
    assert_eq!(p.mutex.lock().unwrap().rounds, 2 * N);
    f64::from(2 * N) / start.elapsed().as_secs_f64()
}

#[test]
fn wait_timeout_keeps_time_under_a_signal_storm_and_returns_holding_the_lock() {
    let p = Pair::new();
    let timeout = Duration::from_millis(300);
    let pipe = Pipe::new();
    let mut child = fork(|| {
        if !install_counting_handler(libc::SIGUSR1) {
            return 90;
        }
        pipe.send(b"r");
        let start = Instant::now();
        let (g, r) = p.cv.wait_timeout(p.mutex.lock().unwrap(), timeout).unwrap();
        let took = start.elapsed();
        // Held again: the mutex's semaphore is taken.
        let held = p.mutex.semaphores().value(0).unwrap() == 0;
        drop(g);
        pipe.send_i32(SIGNALS.load(Ordering::Relaxed) as i32);
        pipe.send_i32(took.as_millis() as i32);
        match (r.timed_out(), held) {
            (true, true) => 0,
            (false, _) => 2,
            (_, false) => 3,
        }
    });
    assert_eq!(pipe.recv_byte(), b'r');
    let exit = signal_storm(&mut child, libc::SIGUSR1, || {});
    assert_eq!(exit, Exit::Code(0), "timed_out and the lock held again");
    let (signals, took) = (pipe.recv_i32(), pipe.recv_i32());
    assert!(signals >= 10, "only {signals} signals reached the child");
    let took = Duration::from_millis(took as u64);
    assert!(
        took >= timeout,
        "returned after {took:?}, before its timeout"
    );
    assert!(
        took < timeout + Duration::from_secs(2),
        "signals extended it to {took:?}"
    );
}

#[test]
fn remove_wakes_every_waiter_with_removed() {
    let p = Pair::new();
    let waiters: Vec<Child> = (0..3)
        .map(|k| {
            let w = p.waiter();
            p.await_waiters(k + 1);
            w
        })
        .collect();
    p.cv.remove().unwrap();
    for mut w in waiters {
        let prompt = Duration::from_secs(5);
        assert_eq!(w.wait_timeout(prompt), Exit::Code(4), "woken with Removed");
    }
    // The lock is free again: the waiters did not take it back.
    assert!(p.mutex.try_lock().is_ok());
    assert_eq!(p.cv.waiters().unwrap_err().kind(), ErrorKind::Removed);
}

#[test]
fn threads_of_one_process_hand_the_turn_round() {
    const THREADS: u32 = 4;
    const ROUNDS: u32 = 500;
    let p = Pair::new();
    std::thread::scope(|s| {
        for me in 0..THREADS {
            let p = &p;
            s.spawn(move || {
                loop {
                    let g = p.mutex.lock().unwrap();
                    let (mut g, r) =
                        p.cv.wait_timeout_while(g, BOUND, |t| t.turn != me && t.rounds < ROUNDS)
                            .unwrap();
                    assert!(!r.timed_out(), "thread {me}: lost wake-up");
                    if g.rounds >= ROUNDS {
                        return;
                    }
                    g.turn = (me + 1) % THREADS;
                    g.rounds += u32::from(me == THREADS - 1);
                    drop(g);
                    p.cv.notify_all().unwrap();
                }
            });
        }
    });
    assert_eq!(p.mutex.lock().unwrap().rounds, ROUNDS);
}

#[test]
fn a_forked_child_waits_and_notifies_with_inherited_handles() {
    let p = Pair::new();
    // The child waits through the parent's handles; the parent wakes it.
    let child = fork(|| {
        let g = p.mutex.lock().unwrap();
        match p.cv.wait_timeout_while(g, BOUND, |t| t.turn == 0) {
            Ok((g, r)) if !r.timed_out() && g.turn == 1 => {
                drop(g);
                p.cv.notify_all().map_or(5, |_| 0)
            }
            _ => 2,
        }
    });
    p.await_waiters(1);
    p.mutex.lock().unwrap().turn = 1;
    p.cv.notify_one().unwrap();
    assert_eq!(child.join(), 0);

    // A guard inherited through fork is the parent's: waiting with it is refused.
    let g = p.mutex.lock().unwrap();
    let child = fork(|| match p.cv.wait_timeout(g, BOUND) {
        Err(e) if e.kind() == ErrorKind::InvalidInput => 0,
        _ => 1,
    });
    assert_eq!(child.join(), 0);
}

#[test]
fn wait_timeout_times_out_and_notify_without_waiters_is_a_no_op() {
    let p = Pair::new();
    p.cv.notify_one().unwrap();
    p.cv.notify_all().unwrap();
    let (g, r) =
        p.cv.wait_timeout(p.mutex.lock().unwrap(), Duration::from_millis(20))
            .unwrap();
    assert!(r.timed_out());
    // The notifications before the wait were not kept for it, and nothing is registered.
    assert_eq!(p.cv.waiters().unwrap(), 0);
    let (g, r) =
        p.cv.wait_timeout_while(g, Duration::from_millis(20), |_| false)
            .unwrap();
    assert!(!r.timed_out(), "a false condition returns at once");
    drop(g);
    // A key of another kind is refused.
    let err = SharedCondvar::open(p.mutex.key()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LayoutMismatch);
    assert_eq!(SharedCondvar::open(p.cv.key()).unwrap().key(), p.cv.key());
}

#[test]
fn garbage_in_the_waiter_words_costs_a_look_and_is_cleared() {
    let p = Pair::new();
    let w = p.waiter();
    p.await_waiters(1);
    // A hostile or buggy peer fills every word and the cursor with garbage (sparing
    // nothing: also the live waiter's own word).
    let garbage: Vec<u8> = (0..1028u32).map(|i| (i * 37 + 11) as u8).collect();
    // SAFETY: no guard of this condvar exists in this process; the words are only ever
    // touched as whole u32s, and this test wants them to be garbage.
    unsafe { p.cv.segment().as_segment() }
        .write_all_at(&garbage, 64)
        .unwrap();
    // The notification still reaches the live waiter: its slot is found by its index
    // and woken by what the kernel says, whatever the word holds.
    p.cv.notify_all().unwrap();
    assert_eq!(w.join(), 0);
    p.await_waiters(0);
    // A second pass finds every slot free and clears what is not a live wait's token.
    p.cv.notify_all().unwrap();
    assert!(
        words(&p.cv).iter().all(|&w| w == 0),
        "garbage words left set"
    );
}

#[test]
fn notify_one_wakes_exactly_one_of_several_live_waiters() {
    let p = Pair::new();
    let waiters: Vec<Child> = (0..3).map(|_| p.waiter()).collect();
    // How many processes the kernel has asleep on a wake-up semaphore (Wait step 4).
    let asleep = || -> usize {
        (0..256)
            .map(|i| p.cv.semaphores().wait_count(i).unwrap())
            .sum()
    };
    for left in (0..3).rev() {
        assert!(wait_until(BOUND, || asleep() == left + 1), "not all asleep");
        p.cv.notify_one().unwrap();
        // A sleeper's wake-up and deregistration are completed inside the notifier's
        // semop: when notify_one returns, exactly one wait has left.
        assert_eq!(
            p.cv.waiters().unwrap(),
            left,
            "one notify_one, one wait ended"
        );
    }
    for w in waiters {
        assert_eq!(w.join(), 0);
    }
}

#[test]
fn waits_go_on_after_every_slot_generation_wraps() {
    let p = Pair::new();
    // Every GEN(i) (semaphore 257 + 2i) at the top of its range: each slot's next claim
    // must wrap it round (docs/FORMAT.md, "Leases", claim step 2).
    for i in 0..256 {
        p.cv.semaphores().set_value(257 + 2 * i, 32767).unwrap();
    }
    let mut g = p.mutex.lock().unwrap();
    for _ in 0..512 {
        g = p.cv.wait_timeout(g, Duration::ZERO).unwrap().0;
    }
    drop(g);
    let values = p.cv.semaphores().values().unwrap();
    let stuck = (0..256).filter(|i| values[257 + 2 * i] == 32767).count();
    assert_eq!(stuck, 0, "slots whose generation never wrapped");
}

#[test]
fn a_wake_up_left_by_a_dead_waiter_is_reset_when_slots_run_out() {
    let p = Pair::new();
    // As if 256 waiters each died holding an untaken notification: WAKE(i) 1, HELD(i) 0.
    for i in 0..256 {
        p.cv.semaphores().set_value(i, 1).unwrap();
    }
    let (g, r) =
        p.cv.wait_timeout(p.mutex.lock().unwrap(), Duration::ZERO)
            .unwrap();
    assert!(
        r.timed_out(),
        "a reset wake-up is not a notification for a new wait"
    );
    drop(g);
    let values = p.cv.semaphores().values().unwrap();
    assert!(
        values[..256].iter().all(|&v| v == 0),
        "wake-ups left: {:?}",
        &values[..256]
    );
}

#[test]
fn the_257th_wait_in_progress_is_refused_with_a_clear_error() {
    let p = Pair::new();
    std::thread::scope(|s| {
        let waiting: Vec<_> = (0..256)
            .map(|_| {
                s.spawn(|| {
                    let g = p.mutex.lock().unwrap();
                    let r = p.cv.wait_timeout_while(g, BOUND, |t| t.turn == 0);
                    r.map(|(_, r)| r.timed_out()).ok()
                })
            })
            .collect();
        p.await_waiters(256);
        let e = p.cv.wait(p.mutex.lock().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitReached);
        assert!(e.to_string().contains("at most 256 waits"), "{e}");
        p.mutex.lock().unwrap().turn = 1;
        p.cv.notify_all().unwrap();
        for w in waiting {
            assert_eq!(w.join().unwrap(), Some(false));
        }
    });
    p.await_waiters(0);
}
