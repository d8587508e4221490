//! Crash soak: workers increment a counter under one SharedMutex while a supervisor
//! SIGKILLs a random worker, 1,000 times, at random moments (inside the critical section,
//! blocked in lock(), just after lock() returned, during unlock). After each kill a
//! replacement starts.
//!
//! The protected value carries its own undo log, so the next locker can tell whether the
//! dead worker was inside the critical section and roll the half-made update back.
//! Checked: no deadlock (every acquisition within a bound), every death inside the
//! critical section reported as Poisoned with the right pid, each dead pid reported at
//! most once, no poison naming a process that was not killed, the counter equal to the
//! completed critical sections, no IPC object left.

mod common;

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::{Child, Pipe, TestKey, fork};
use shmsem::{LockError, Pod, SharedMutex, Zeroable};

const WORKERS: usize = 4;
/// Threads per worker process: they also pass the lock among themselves (the in-process
/// hand-off), so kills land in those windows too.
const THREADS: usize = 2;
const SLOTS: usize = WORKERS * THREADS;
const KILLS: usize = 1000;
/// An acquisition that takes longer than this is a deadlock.
const LOCK_BOUND: Duration = Duration::from_secs(10);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Ledger {
    /// Committed critical sections.
    count: u64,
    /// Per worker slot: critical sections committed by workers in that slot.
    done: [u64; SLOTS],
    /// Undo log, written before `inside` is set.
    save_count: u64,
    save_done: u64,
    save_slot: u64,
    /// Longest lock wait seen by each slot, in microseconds.
    max_wait_us: [u64; SLOTS],
    /// Pid of the worker between "log written" and "committed"; 0 otherwise.
    inside: i32,
    _pad: i32,
}

/// Records a worker sends to the supervisor (one write each, so they never interleave).
const POISONED: i32 = 1;
const VIOLATION: i32 = 2;
const TIMEOUT: i32 = 3;

/// Each record also names the worker that sent it (its pid).
fn report(pipe: &Pipe, kind: i32, a: i32, b: i32) {
    let mut rec = [0u8; 16];
    rec[..4].copy_from_slice(&kind.to_ne_bytes());
    rec[4..8].copy_from_slice(&a.to_ne_bytes());
    rec[8..12].copy_from_slice(&b.to_ne_bytes());
    rec[12..].copy_from_slice(&(std::process::id() as i32).to_ne_bytes());
    pipe.send(&rec);
}

/// A tiny xorshift, seeded per process: the moments must differ between workers.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn busy(iterations: u64) {
    for i in 0..iterations {
        std::hint::black_box(i);
    }
}

fn is_consistent(l: &Ledger) -> bool {
    l.inside == 0 && l.count == l.done.iter().sum::<u64>()
}

/// A worker: lock, (repair if poisoned), log, update in two steps, commit, unlock; forever.
fn worker(m: &SharedMutex<Ledger>, slot: usize, reports: &Pipe) -> i32 {
    let me = std::process::id() as i32;
    let seed = u64::from(me.unsigned_abs()) * 31 + slot as u64;
    let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    loop {
        let t = Instant::now();
        let mut g = match m.lock_timeout(LOCK_BOUND) {
            Ok(g) => {
                if !is_consistent(&g) {
                    // A torn ledger without a poison report: a death went unnoticed.
                    report(reports, VIOLATION, g.inside, 0);
                    return 1;
                }
                g
            }
            Err(LockError::Poisoned(p)) => {
                let owner = p.owner_pid().unwrap_or(0);
                let mut g = p.into_inner();
                report(reports, POISONED, owner, g.inside);
                if g.inside != 0 {
                    // Roll the dead worker's half-made update back.
                    let slot = g.save_slot as usize;
                    g.count = g.save_count;
                    g.done[slot] = g.save_done;
                    g.inside = 0;
                }
                if !is_consistent(&g) {
                    report(reports, VIOLATION, owner, -1);
                    return 1;
                }
                m.clear_poison();
                g
            }
            Err(LockError::Failed(_)) => {
                report(reports, TIMEOUT, me, 0);
                return 2;
            }
        };
        let waited = t.elapsed().as_micros() as u64;
        g.max_wait_us[slot] = g.max_wait_us[slot].max(waited);
        // The undo log, then the marker, then the update in two steps.
        g.save_count = g.count;
        g.save_done = g.done[slot];
        g.save_slot = slot as u64;
        g.inside = me;
        g.count += 1;
        busy(rng.below(5000));
        g.done[slot] += 1;
        g.inside = 0;
        drop(g);
        busy(rng.below(2000));
    }
}

#[test]
fn a_thousand_sigkills_never_deadlock_lose_or_fake_a_poisoning() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), Ledger::zeroed()).unwrap();
    let reports = Pipe::new();
    // SAFETY: fcntl on our own pipe's read end: make draining non-blocking.
    unsafe { libc::fcntl(reports.read.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };

    let spawn = |slot: usize| -> Child {
        let m = &m;
        let reports = &reports;
        fork(move || {
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    s.spawn(move || {
                        // Workers only return on failure: end the whole process with it.
                        let code = worker(m, slot * THREADS + t, reports);
                        // SAFETY: ends this forked child at once with the failure's code.
                        unsafe { libc::_exit(code) }
                    });
                }
            });
            0
        })
    };
    let mut workers: Vec<Child> = (0..WORKERS).map(spawn).collect();
    let mut killed: HashSet<i32> = HashSet::new();
    // Per dead pid named by a poisoning: the pids of the workers that reported it, in
    // order (reports are written under the lock, so the pipe keeps their order).
    let mut poison_reports: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut inside_deaths_reported = 0;
    let mut just_after_lock_deaths = 0;
    let mut failures = Vec::new();
    let mut rng = Rng::new(0x5eed);
    let started = Instant::now();

    let mut drain = |failures: &mut Vec<String>| {
        let mut rec = [0u8; 16];
        while reports.recv_timeout(&mut rec, Duration::ZERO) {
            let kind = i32::from_ne_bytes(rec[..4].try_into().unwrap());
            let a = i32::from_ne_bytes(rec[4..8].try_into().unwrap());
            let b = i32::from_ne_bytes(rec[8..12].try_into().unwrap());
            let reporter = i32::from_ne_bytes(rec[12..].try_into().unwrap());
            match kind {
                POISONED => {
                    poison_reports.entry(a).or_default().push(reporter);
                    if b != 0 {
                        inside_deaths_reported += 1;
                        if a != b {
                            failures.push(format!("poison names {a}, the ledger names {b}"));
                        }
                    } else {
                        just_after_lock_deaths += 1;
                    }
                }
                VIOLATION => failures.push(format!("torn ledger without poison ({a}, {b})")),
                TIMEOUT => failures.push(format!("worker {a} waited past {LOCK_BOUND:?}")),
                _ => failures.push(format!("bad record {kind}")),
            }
        }
    };

    for _ in 0..KILLS {
        let victim = rng.below(WORKERS as u64) as usize;
        // A random moment (this sleep only spreads the kills; nothing waits on it).
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        workers[victim].kill(libc::SIGKILL);
        let exit = workers[victim].wait_timeout(LOCK_BOUND);
        if exit != common::Exit::Signal(libc::SIGKILL) {
            failures.push(format!("worker exited by itself: {exit:?}"));
        }
        killed.insert(workers[victim].pid);
        workers[victim] = spawn(victim);
        drain(&mut failures);
        assert!(failures.is_empty(), "{failures:#?}");
    }
    for w in &workers {
        w.kill(libc::SIGKILL);
    }
    for w in &mut workers {
        killed.insert(w.pid);
        w.wait_timeout(LOCK_BOUND);
    }
    drain(&mut failures);
    assert!(failures.is_empty(), "{failures:#?}");

    // The last deaths may still be unreported: the next (final) lock settles them.
    let mut g = match m.lock_timeout(LOCK_BOUND) {
        Ok(g) => g,
        Err(LockError::Poisoned(p)) => {
            let owner = p.owner_pid().unwrap();
            let mut g = p.into_inner();
            poison_reports.entry(owner).or_default().push(0);
            if g.inside != 0 {
                assert_eq!(g.inside, owner);
                inside_deaths_reported += 1;
                let slot = g.save_slot as usize;
                g.count = g.save_count;
                g.done[slot] = g.save_done;
                g.inside = 0;
            } else {
                just_after_lock_deaths += 1;
            }
            m.clear_poison();
            g
        }
        Err(e) => panic!("final lock: {e}"),
    };
    assert!(is_consistent(&g), "ledger torn at the end");
    for (pid, reporters) in &poison_reports {
        assert!(
            killed.contains(pid),
            "poison names {pid}, which was never killed"
        );
        // The poison word keeps its first cause until clear_poison: a worker killed
        // between seeing the poisoning (and reporting it) and clearing it leaves it for
        // the next locker, who reports the same death again. Every report but the last
        // must come from such a worker.
        let (_last, earlier) = reporters.split_last().unwrap();
        assert!(
            earlier.iter().all(|r| killed.contains(r)),
            "death of {pid} reported {} times, by {reporters:?}, not all killed before \
             clearing it",
            reporters.len()
        );
    }
    let max_wait = Duration::from_micros(*g.max_wait_us.iter().max().unwrap());
    let count = g.count;
    g.count += 0;
    drop(g);
    assert!(!m.is_poisoned());
    println!(
        "soak: {KILLS} kills ({} processes) in {:.1?}; poisonings: {} ({} mid-update rolled \
         back, {} just after lock); critical sections committed: {count}; max wait {max_wait:?}",
        killed.len(),
        started.elapsed(),
        poison_reports.len(),
        inside_deaths_reported,
        just_after_lock_deaths,
    );
    assert!(count > 0);
    assert!(
        inside_deaths_reported > 0,
        "1000 kills should hit the critical section at least once"
    );
}
