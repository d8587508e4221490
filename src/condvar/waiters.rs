//! The condvar's wait/notify protocol over its semaphore set (docs/FORMAT.md, "Condvar"):
//! each wait owns a lease slot for its duration and sleeps on that slot's own wake-up
//! semaphore; a notifier wakes a slot only while the kernel says its waiter is there.
//!
//! The set is `WAKE(0..256)`, then the 256 lease slots (`HELD(i)`, `GEN(i)`: `lease.rs`).
//! The payload is one word per slot, holding the token of the wait that owns it (or 0),
//! and a cursor where the next `notify_one` starts looking.
//!
//! Steps, cited in the code as "Wait step N" and "Notify step N":
//!
//! - Wait 1 (with the mutex held): claim a slot whose `WAKE` is 0, in one `semop`
//!   `{WAKE(i) == 0, HELD(i) == 0, HELD(i) += 1 (undo), GEN(i) += 1}`. Holding `HELD(i)`
//!   *is* being registered: when the process dies, for whatever reason and in whatever
//!   PID namespace, the kernel deregisters it.
//! - Wait 2: write the token into word `i`, so notifiers find the slot.
//! - Wait 3: release the mutex.
//! - Wait 4: sleep in `{WAKE(i) -= 1, HELD(i) -= 1 (undo)}`: one `semop` consumes the
//!   notification and deregisters together, so a woken waiter can never be notified twice.
//! - Wait 5 (timed out): leave with `{HELD(i) -= 1 (undo), WAKE(i) == 0}`, which fails
//!   only if a notification arrived meanwhile; then take it with the step 4 operation,
//!   without waiting. Either way no notification is left behind in the slot.
//! - Wait 6: clear word `i` if it still holds our token; re-lock the mutex.
//! - Notify 1: scan the words (from the cursor for `notify_one`, all for `notify_all`).
//! - Notify 2: for a word that is set, `{HELD(i) -= 1, HELD(i) += 1, WAKE(i) == 0,
//!   WAKE(i) += 1}` (no undo): it succeeds only while a waiter holds the slot and has not
//!   been notified yet, and then wakes exactly that one.
//! - Notify 3: if it fails and the token's lease is gone (the wait ended, or its process
//!   died), clear the word (compare-and-swap on that token: a new wait in the slot has a
//!   new token), so dead waiters cost nothing for long.
//!
//! Invariants, cited as "Condvar invariant N":
//!
//! 1. A waiter is registered exactly while it holds `HELD(i)`; the kernel ends that at
//!    its death. So a notification goes only to a live, registered waiter: none is
//!    swallowed by a waiter killed before it.
//! 2. `WAKE(i)` is 0 whenever `HELD(i)` is 0, except after a waiter died between a
//!    notification reaching it (Notify 2) and its taking it (Wait 4 or 5): killed
//!    between releasing the mutex and sleeping, or between a timeout and Wait 5. A claim
//!    never takes such a slot (Wait 1 tests `WAKE(i) == 0`), and [`repair`] resets it
//!    once no slot is left.
//! 3. Registration happens before the mutex is released (Wait 1-3), so a notifier that
//!    changed the condition under the mutex afterwards finds the waiter: no lost wake-up.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::managed::lease::{self, Holder};
use crate::managed::pair::Pair;
use crate::managed::wait::Wait;

/// Waiter slots: one per lease slot.
pub(crate) const SLOTS: usize = lease::DEFAULT_SLOTS;

/// The payload: `SLOTS` words, the cursor, and reserved bytes (zero) up to this size.
pub(crate) const PAYLOAD_SIZE: usize = 1088;

/// Byte offset of the cursor in the payload.
const CURSOR: usize = 4 * SLOTS;

const UNDO: i16 = libc::SEM_UNDO as i16;
const NOWAIT: i16 = libc::IPC_NOWAIT as i16;

const fn op(sem_num: usize, sem_op: i16, sem_flg: i16) -> libc::sembuf {
    libc::sembuf {
        sem_num: sem_num as u16,
        sem_op,
        sem_flg,
    }
}

/// Index of `WAKE(slot)`: the condvar's own semaphores are the wake-ups.
const fn wake(slot: usize) -> usize {
    slot
}

/// The words in the payload.
struct Board<'a> {
    words: &'a [AtomicU32; SLOTS],
    cursor: &'a AtomicU32,
}

fn board(pair: &Pair) -> Board<'_> {
    let base = pair.payload();
    // SAFETY: the payload is PAYLOAD_SIZE bytes inside the attached segment (the layout
    // was validated or created so), at an 8-aligned offset of a page-aligned mapping,
    // and lives as long as the pair; every process only touches these words atomically
    // (AtomicU32 has u32's layout).
    unsafe {
        Board {
            words: &*base.cast::<[AtomicU32; SLOTS]>(),
            cursor: &*base.add(CURSOR).cast::<AtomicU32>(),
        }
    }
}

/// A registered wait: its slot and token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registration {
    slot: usize,
    token: u32,
}

/// How a sleep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// A notification (or, rarely, a spurious wake-up).
    Notified,
    /// The deadline passed first.
    TimedOut,
}

/// Wait steps 1 and 2 (the caller holds the mutex).
pub(crate) fn register(pair: &Pair, call: &'static str) -> Result<Registration> {
    let claim = || {
        pair.leases.claim_where_zero(
            &pair.sems,
            pair.live().lease_hint,
            |slot| Some(wake(slot)),
            call,
        )
    };
    let token = match claim() {
        Err(e) if e.kind() == ErrorKind::LimitReached && repair(pair, call)? => claim(),
        other => other,
    }
    .map_err(|e| match e.kind() {
        ErrorKind::LimitReached => Error::new(
            ErrorKind::LimitReached,
            call,
            pair.sems.target(),
            format!(
                "all {SLOTS} waiter slots of this condvar are in use: at most {SLOTS} waits \
                 (across all processes and threads) can be in progress at once"
            ),
        ),
        _ => e,
    })?;
    let Some((slot, _)) = pair.leases.decode(token) else {
        unreachable!("a claim returns a token of its set")
    };
    // Release: a notifier that reads the word after taking the mutex (which we release
    // after this) sees it. The kernel state, not the word, decides who is woken.
    board(pair).words[slot].store(token, Ordering::Release);
    Ok(Registration { slot, token })
}

/// Wait steps 4-6 (the caller has released the mutex; it re-locks after). `Removed`
/// and other kernel errors end the wait with the slot given back as far as possible.
pub(crate) fn sleep(pair: &Pair, me: Registration, wait: Wait, call: &'static str) -> Result<Woke> {
    let held = pair.leases.held(me.slot);
    let mut take = [op(wake(me.slot), -1, 0), op(held, -1, UNDO)];
    // A deadline already past goes straight to Wait step 5 (a kernel wait with a zero
    // timeout still sleeps for the timer slack, ~50 µs).
    let slept = match wait {
        Wait::Forever => pair.sems.semop(&mut take, call).map(Some),
        Wait::Until(deadline) if deadline > Instant::now() => pair
            .sems
            .semtimedop(&mut take, deadline, call)
            .map(Some)
            .or_else(|e| match e.kind() {
                ErrorKind::TimedOut => Ok(None),
                _ => Err(e),
            }),
        Wait::Until(_) | Wait::No => Ok(None),
    };
    let woke = match slept {
        Ok(Some(())) => Ok(Woke::Notified),
        Ok(None) => leave(pair, me, call),
        Err(e) => {
            // Best effort: the set is most likely gone, and with it the slot.
            let _ = pair.sems.semop(&mut [op(held, -1, UNDO | NOWAIT)], call);
            Err(e)
        }
    };
    // Wait step 6. Only our own token is cleared: a later wait in the slot wrote its own.
    let _ = board(pair).words[me.slot].compare_exchange(
        me.token,
        0,
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
    woke
}

/// Wait step 5: deregister after a timeout, unless a notification came meanwhile, in
/// which case it is taken (no notification is ever left in a slot: Condvar invariant 2).
fn leave(pair: &Pair, me: Registration, call: &'static str) -> Result<Woke> {
    let (held, wake) = (pair.leases.held(me.slot), wake(me.slot));
    match pair.sems.semop(
        &mut [op(held, -1, UNDO | NOWAIT), op(wake, 0, NOWAIT)],
        call,
    ) {
        Ok(()) => Ok(Woke::TimedOut),
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            // WAKE is not 0: we were notified (HELD is ours, so that op cannot block).
            pair.sems.semop(
                &mut [op(wake, -1, NOWAIT), op(held, -1, UNDO | NOWAIT)],
                call,
            )?;
            Ok(Woke::Notified)
        }
        Err(e) => Err(e),
    }
}

/// Notify steps 1-3: wakes one registered waiter (`all == false`) or every one; returns
/// how many were woken.
pub(crate) fn notify(pair: &Pair, all: bool, call: &'static str) -> Result<usize> {
    let board = board(pair);
    // notify_one starts after the last slot it woke: claims rotate through the slots,
    // so this is roughly the longest waiting first.
    // (Reduced before any arithmetic: the cursor may hold any value a peer wrote.)
    let start = match all {
        true => 0,
        false => board.cursor.load(Ordering::Relaxed) as usize % SLOTS,
    };
    let mut woken = 0;
    for k in 0..SLOTS {
        let slot = (start + k) % SLOTS;
        let token = board.words[slot].load(Ordering::Acquire);
        if token == 0 {
            continue;
        }
        let held = pair.leases.held(slot);
        let mut ops = [
            op(held, -1, NOWAIT),
            op(held, 1, 0),
            op(wake(slot), 0, NOWAIT),
            op(wake(slot), 1, 0),
        ];
        match pair.sems.semop(&mut ops, call) {
            Ok(()) => {
                woken += 1;
                if !all {
                    board
                        .cursor
                        .store((slot as u32 + 1) % SLOTS as u32, Ordering::Relaxed);
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Notify step 3. A token that is not this slot's is garbage: cleared too.
                let mine = pair.leases.decode(token).is_some_and(|(s, _)| s == slot);
                let stale =
                    !mine || matches!(pair.holder(token), Ok(Holder::Gone | Holder::Invalid));
                if stale {
                    let _ = board.words[slot].compare_exchange(
                        token,
                        0,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(woken)
}

/// Condvar invariant 2's repair: a slot whose waiter died inside Wait step 5, with a
/// notification still in `WAKE`, is reset (only while nobody holds it). Returns whether
/// any slot was reset.
fn repair(pair: &Pair, call: &'static str) -> Result<bool> {
    let values = pair.sems.values_in(call)?;
    let mut repaired = false;
    for slot in 0..SLOTS {
        let (held, wake) = (pair.leases.held(slot), wake(slot));
        match (values.get(held), values.get(wake)) {
            (Some(0), Some(&n)) if n > 0 => {
                let n = n.min(i16::MAX.into()) as i16;
                let reset = [op(held, 0, NOWAIT), op(wake, -n, NOWAIT)];
                repaired |= pair.sems.semop(&mut { reset }, call).is_ok();
            }
            _ => {}
        }
    }
    Ok(repaired)
}

/// How many waits are registered now (slots held), from one `GETALL`.
pub(crate) fn waiters(pair: &Pair, call: &'static str) -> Result<usize> {
    Ok(pair.leases.held_count(&pair.sems.values_in(call)?))
}
