//! The mutex's algorithm on its semaphore (docs/FORMAT.md, "Mutex (kind 1)", lock step
//! 1 and unlock step 3): taking and giving back semaphore 0 with `SEM_UNDO`, and how a
//! contended waiter avoids the kernel's hand-off convoy. Nothing here knows the typed
//! value or the in-process hand-off (`mod.rs`, `local.rs`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::managed::pair::{Pair, SPIN_LIMIT};
use crate::managed::wait::{SpinBackoff, Wait, end_within};

/// The one semaphore of a mutex's set: 1 when free, 0 when held.
const LOCK_SEM: u16 = 0;
/// Lock: P with SEM_UNDO, so the kernel gives it back if the holder dies.
const P_UNDO: libc::sembuf = libc::sembuf {
    sem_num: LOCK_SEM,
    sem_op: -1,
    sem_flg: libc::SEM_UNDO as i16,
};
/// How many times a waiter sleeps until the lock is free and races for it, before it
/// queues in the kernel instead (see `acquire_contended`).
const BARGING_ROUNDS: u32 = 8;
/// How many tries of a spinning waiter may find the lock taken although the holder word
/// said free, before it polls instead (step 2 of `acquire_contended`).
const REFUSALS_BEFORE_POLLING: u32 = 4;
/// The gap between two looks of a polling waiter, asleep. The kernel's timer slack
/// (50 µs by default, for a thread that is not real-time) lengthens the sleep to ~60 µs;
/// the poll still ends at its limit or deadline (each sleep is cut to what is left).
const POLL_GAP: Duration = Duration::from_micros(10);
/// How long a waiter polls (once per lock call) before it spins again.
const POLL_LIMIT: Duration = Duration::from_millis(1);
/// "Wait until free" without taking it: these two in one semop complete when the value is
/// 1 and leave it 1. No SEM_UNDO: the net change is zero.
const P_PEEK_TAKE: libc::sembuf = libc::sembuf {
    sem_num: LOCK_SEM,
    sem_op: -1,
    sem_flg: 0,
};
const P_PEEK_GIVE: libc::sembuf = libc::sembuf {
    sem_num: LOCK_SEM,
    sem_op: 1,
    sem_flg: 0,
};
/// Unlock: V with SEM_UNDO, cancelling the P's adjustment.
const V_UNDO: libc::sembuf = libc::sembuf {
    sem_num: LOCK_SEM,
    sem_op: 1,
    sem_flg: libc::SEM_UNDO as i16,
};

/// P on the lock semaphore (with SEM_UNDO) after a non-blocking try found it busy.
///
/// Why not simply sleep in a blocking P: the kernel hands the semaphore straight to a
/// process sleeping in P when the holder gives it back, so under contention every
/// lock would cost a wake-up and a context switch, while the running processes find
/// the lock taken by one that is not even running yet (a convoy). So a waiter:
///
/// 1. spins a bounded while on the header's holder word, retrying the non-blocking P
///    whenever the word says the holder left;
/// 2. once `REFUSALS_BEFORE_POLLING` of those tries found the lock taken all the same,
///    polls instead, once per call: it looks every `POLL_GAP`, asleep in between, for
///    up to `POLL_LIMIT`, then spins again (step 1). Refusals like these mean the lock
///    passes between processes that take it back at once: the holder is inside a semop
///    most of the time, with the word 0. Every try then takes the semaphore's lock from
///    under it, and a sleep in semop (step 3) would be woken by each of its V's; a timed
///    sleep costs it nothing, so it runs at its uncontended speed for a while, as a
///    flock holder does while its waiters sleep;
/// 3. then sleeps until the semaphore is *free* without taking it (`{-1, +1}` in one
///    atomic semop: it completes when the value is 1 and leaves it 1), and races for
///    it again from step 1: the lock goes to whoever is running, as with a futex;
/// 4. after `BARGING_ROUNDS` lost races it falls back to a blocking P, which queues it
///    in the kernel (first come, first served): nobody starves.
#[cold]
pub(super) fn acquire_contended(pair: &Pair, wait: Wait, call: &'static str) -> Result<()> {
    let deadline = match wait {
        Wait::No => {
            let (errno, kind) = (libc::EAGAIN, ErrorKind::WouldBlock);
            return Err(Error::os(call, pair.sems.target(), errno, kind));
        }
        Wait::Forever => None,
        Wait::Until(deadline) => Some(deadline),
    };
    let holder = pair.live().holder;
    let mut refusals = 0u32;
    for _round in 0..BARGING_ROUNDS {
        let mut spin_until = end_within(SPIN_LIMIT, deadline);
        // Time-based, never yielding (wait.rs): with more processes than CPUs, a
        // sched_yield hands the CPU to another waiter (or anything else runnable) for
        // its whole slice, while the holder may leave within a microsecond. Unless this
        // thread may run on one CPU only: then it yields, or it could starve a holder
        // on the same CPU.
        let mut spin = SpinBackoff::new();
        loop {
            if holder.load(Ordering::Relaxed) == 0 {
                if try_acquire(pair, call)? {
                    return Ok(());
                }
                // Taken although the holder word said free: a holder between clearing the
                // word and its V, or a new one between its P and writing the word, is in
                // the middle of a semop. Another try before that ends would only contend
                // with it for the semaphore's lock: the next looks wait the longest gap.
                // Measured with `lock_compare --scenarios b,c,f,g` (5 alternating
                // invocations each): SharedMutex / flock with 2 and 4 processes in a bare
                // loop went from medians of 0.96x and 0.92x to 0.98x and 1.02x; with
                // 0.5 µs of work between turns from 1.58x and 1.54x to 1.54x and 1.47x
                // (within the runs' spread).
                spin.lengthen();
                refusals += 1;
                if refusals == REFUSALS_BEFORE_POLLING {
                    if poll(pair, deadline, call)? {
                        return Ok(());
                    }
                    spin_until = end_within(SPIN_LIMIT, deadline);
                }
            }
            spin.pause();
            if Instant::now() >= spin_until {
                break;
            }
        }
        semop_until(pair, &mut [P_PEEK_TAKE, P_PEEK_GIVE], deadline, call)?;
        if try_acquire(pair, call)? {
            return Ok(());
        }
    }
    semop_until(pair, &mut [P_UNDO], deadline, call)
}

/// Step 2 of `acquire_contended`: a look at the lock every `POLL_GAP`, asleep in between,
/// for up to `POLL_LIMIT` or until the deadline. `Ok(true)` if a look took the lock.
fn poll(pair: &Pair, deadline: Option<Instant>, call: &'static str) -> Result<bool> {
    let holder = pair.live().holder;
    let end = end_within(POLL_LIMIT, deadline);
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(false);
        }
        std::thread::sleep(POLL_GAP.min(end - now));
        if holder.load(Ordering::Relaxed) == 0 && try_acquire(pair, call)? {
            return Ok(true);
        }
    }
}

fn semop_until(
    pair: &Pair,
    ops: &mut [libc::sembuf],
    deadline: Option<Instant>,
    call: &'static str,
) -> Result<()> {
    match deadline {
        Some(deadline) => pair.sems.semtimedop(ops, deadline, call),
        None => pair.sems.semop(ops, call),
    }
}

/// One non-blocking P: `Ok(true)` if taken, `Ok(false)` if busy.
#[inline]
pub(super) fn try_acquire(pair: &Pair, call: &'static str) -> Result<bool> {
    let mut op = [libc::sembuf {
        sem_flg: P_UNDO.sem_flg | libc::IPC_NOWAIT as i16,
        ..P_UNDO
    }];
    // Not `semop` and an error for "busy": a contended waiter tries this in its spin, and
    // building the error's message each time made every failed try slower.
    pair.sems.try_semop(&mut op, call)
}

/// V on the lock semaphore, with SEM_UNDO (cancelling the P's adjustment).
#[inline]
pub(super) fn release(pair: &Pair) -> Result<()> {
    pair.sems.semop(&mut [V_UNDO], "SharedMutex unlock")
}
