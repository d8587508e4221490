//! The mutex's algorithm on its semaphore (docs/FORMAT.md, "Mutex (kind 1)", lock step
//! 1 and unlock step 3): taking and giving back semaphore 0 with `SEM_UNDO`, and how a
//! contended waiter avoids the kernel's hand-off convoy. Nothing here knows the typed
//! value or the in-process hand-off (`mod.rs`, `local.rs`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::managed::pair::{Pair, SPIN_LIMIT};
use crate::managed::wait::{SpinBackoff, Wait};

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
/// 2. then sleeps until the semaphore is *free* without taking it (`{-1, +1}` in one
///    atomic semop: it completes when the value is 1 and leaves it 1), and races for
///    it again from step 1: the lock goes to whoever is running, as with a futex;
/// 3. after `BARGING_ROUNDS` lost races it falls back to a blocking P, which queues it
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
    for _round in 0..BARGING_ROUNDS {
        let started = Instant::now();
        let spin_until = match deadline {
            Some(d) => d.min(started + SPIN_LIMIT),
            None => started + SPIN_LIMIT,
        };
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
