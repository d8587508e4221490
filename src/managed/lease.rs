//! Liveness without pids: **leases**. The one place that answers "is the process that
//! recorded this still alive?" for every managed object (docs/FORMAT.md, "Leases").
//!
//! A pid read out of shared memory cannot answer it: System V objects are shared per IPC
//! namespace, pids per PID namespace (the containers of one pod share the objects, and each
//! has its own pid 1); pids are reused; and a process whose main thread exited looks like a
//! zombie in `/proc` while its other threads run on. The kernel can answer it: a semaphore
//! changed with `SEM_UNDO` is changed back when its process ends, whatever its namespace,
//! its threads, or the later fate of its pid number.
//!
//! So every managed semaphore set ends with `slots` lease slots of two semaphores each:
//!
//! - `HELD(i)` is 1 while a live handle owns slot `i`, 0 when it is free. A handle claims
//!   it with `{HELD(i), 0, IPC_NOWAIT}, {HELD(i), +1, SEM_UNDO|IPC_NOWAIT}` (wait-for-zero,
//!   then increment: exclusive), so when the owning process ends, for whatever reason, the
//!   kernel sets it back to 0.
//! - `GEN(i)` counts the claims of slot `i` (modulo 32768). It changes in the same atomic
//!   `semop` as the claim, and nothing else ever operates on it, so the kernel's
//!   `sempid` of `GEN(i)` (`semctl(GETPID)`) is the process that made the current claim,
//!   translated into the caller's PID namespace (0 when it is not visible there).
//!
//! What shared memory records (lock words, holder and poison words) is a **token**: the
//! slot and the generation of its claim, `gen << 16 | (slot + 1)`, never 0. Invariants
//! (cited in the code as "Lease invariant N"):
//!
//! 1. A handle writes its token into shared memory only while it holds its claim, and
//!    gives the claim up only when no word it wrote still names it (handles release their
//!    claim when dropped, after every lock they took is released).
//! 2. Hence the process behind a token is alive only if `HELD(slot)` is 1 and `GEN(slot)`
//!    still equals the token's generation. Either test failing proves it is gone, for good:
//!    a later claim of the slot makes a new generation, never the old one (short of 32,768
//!    claims of one slot while a waiter looks the other way).
//! 3. `GETPID` of `GEN(slot)`, read while `GEN(slot)` equals the token's generation before
//!    and after, is the pid of the token's process as the caller's namespace sees it (or
//!    0): the only process that operated on `GEN(slot)` since that claim.
//!
//! Claims start at a rotating hint in the header, so a slot freed by a death is reused
//! only after every other slot was claimed since: its `GETPID` stays readable for
//! whoever finds the death.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::managed::process;
use crate::raw::sem::SemaphoreSet;
use crate::raw::sys::SEMVMX;

/// Lease slots a new object gets: how many handles (in any number of processes) can use
/// it at once. 513 semaphores for a mutex, within Linux's `SEMMSL` (32,000 by default).
pub(crate) const DEFAULT_SLOTS: usize = 256;

/// The most slots a set can describe (a token keeps the slot in 16 bits).
const MAX_SLOTS: usize = u16::MAX as usize;

/// Where the lease slots of one semaphore set are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Leases {
    /// Index of `HELD(0)`: the object's own semaphores come first.
    base: usize,
    /// Number of slots.
    slots: usize,
}

/// What a token says about its process, from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// Its claim is held: the process lives (it may be stopped, or slow).
    Alive,
    /// Its claim is gone: the process ended (Lease invariant 2).
    Gone,
    /// Not a token of this set: a foreign or hostile value.
    Invalid,
}

impl Leases {
    /// The slots of a set of `nsems` semaphores whose first `own` are the object's own.
    /// `None` if the rest is not a whole, non-empty number of slots.
    pub(crate) fn new(own: usize, nsems: usize) -> Option<Leases> {
        let rest = nsems.checked_sub(own)?;
        let slots = rest / 2;
        (rest % 2 == 0 && (1..=MAX_SLOTS).contains(&slots)).then_some(Leases { base: own, slots })
    }

    /// Semaphores a set needs for `own` semaphores and `slots` lease slots.
    pub(crate) const fn nsems(own: usize, slots: usize) -> usize {
        own + 2 * slots
    }

    /// How many slots are claimed, in a snapshot of the whole set's values.
    pub(crate) fn held_count(&self, values: &[i32]) -> usize {
        (0..self.slots)
            .filter(|&slot| values.get(self.held(slot)).is_some_and(|&v| v != 0))
            .count()
    }

    /// Index of `HELD(slot)`.
    pub(crate) fn held(&self, slot: usize) -> usize {
        self.base + 2 * slot
    }

    /// How many slots the set has.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// Index of `GEN(slot)`.
    pub(crate) fn counter(&self, slot: usize) -> usize {
        self.base + 2 * slot + 1
    }

    /// The slot and generation of `token`, if it can be a token of this set.
    pub(crate) fn decode(&self, token: u32) -> Option<(usize, i32)> {
        let slot = (token & 0xffff).checked_sub(1)? as usize;
        let generation = (token >> 16) as i32;
        (slot < self.slots && generation <= SEMVMX).then_some((slot, generation))
    }

    /// Is the process behind `token` alive? Two `semctl(GETVAL)`.
    pub(crate) fn holder(&self, sems: &SemaphoreSet, token: u32) -> Result<Holder> {
        let Some((slot, generation)) = self.decode(token) else {
            return Ok(Holder::Invalid);
        };
        // Lease invariant 2. HELD first: if it reads 1 and GEN then still reads the
        // token's generation, no claim came between, so the 1 is the token's own.
        if sems.value(self.held(slot))? == 0 || sems.value(self.counter(slot))? != generation {
            return Ok(Holder::Gone);
        }
        Ok(Holder::Alive)
    }

    /// The pid of the process behind `token`, as this process's PID namespace sees it;
    /// `None` when the kernel cannot say (another namespace, or the slot was claimed
    /// again since). Lease invariant 3.
    pub(crate) fn owner_pid(&self, sems: &SemaphoreSet, token: u32) -> Option<i32> {
        let (slot, generation) = self.decode(token)?;
        let same = || sems.value(self.counter(slot)).ok() == Some(generation);
        if !same() {
            return None;
        }
        let pid = sems.last_pid(self.counter(slot)).ok()?;
        (same() && pid > 0).then_some(pid)
    }

    /// Sleeps until the claim behind `token` may have ended (its `HELD` went to 0), or
    /// until `until`. Returns as early as the kernel says the slot is free; the caller
    /// looks again either way (a wake-up is a reason to look, not a verdict).
    pub(crate) fn wait_gone(
        &self,
        sems: &SemaphoreSet,
        token: u32,
        until: Instant,
        call: &'static str,
    ) -> Result<()> {
        let Some((slot, _)) = self.decode(token) else {
            return Ok(());
        };
        let mut op = [libc::sembuf {
            sem_num: self.held(slot) as u16,
            sem_op: 0,
            sem_flg: 0,
        }];
        match sems.semtimedop(&mut op, until, call) {
            Err(e) if e.kind() != ErrorKind::TimedOut => Err(e),
            _ => Ok(()),
        }
    }

    /// Claims a free slot for this process: the token. Starts at the rotating `hint`.
    ///
    /// # Errors
    /// `LimitReached` when every slot is held by a live handle; `Removed` and the like
    /// from the kernel.
    fn claim(&self, sems: &SemaphoreSet, hint: &AtomicU32, call: &'static str) -> Result<u32> {
        self.claim_where_zero(sems, hint, |_| None, call)
    }

    /// [`claim`](Leases::claim), taking only a slot for which the caller's semaphore
    /// `also_zero(slot)` (if any) is 0, tested in the same atomic `semop`: the condvar's
    /// claim for one wait, which must start with that wait's wake-up semaphore at 0.
    pub(crate) fn claim_where_zero(
        &self,
        sems: &SemaphoreSet,
        hint: &AtomicU32,
        also_zero: impl Fn(usize) -> Option<usize>,
        call: &'static str,
    ) -> Result<u32> {
        let start = hint.fetch_add(1, Ordering::Relaxed) as usize % self.slots;
        // First the hinted slot, unseen: claims rotate, so it is usually free, and one
        // semop is cheaper than reading the whole set. (If its GEN is at the top, the +1
        // fails with ERANGE, and the search below, which starts at the same slot, wraps
        // it round: skipping it would leave it at the top, costing every later claim
        // that lands on it a failed try and a full read.)
        if let Some(token) = self.try_claim(sems, start, 1, also_zero(start), call)? {
            return Ok(token);
        }
        let values = sems.values_in(call)?;
        for k in 0..self.slots {
            let slot = (start + k) % self.slots;
            let (held, counter) = (self.held(slot), self.counter(slot));
            let extra = also_zero(slot);
            if values.get(held) != Some(&0) || extra.is_some_and(|e| values.get(e) != Some(&0)) {
                continue;
            }
            // GEN goes round modulo SEMVMX + 1; the claim is refused (and the next slot
            // tried) if GEN moved since the snapshot, as it would then go out of range.
            let delta = match values.get(counter) {
                Some(&g) if g >= SEMVMX => -SEMVMX as i16,
                _ => 1,
            };
            if let Some(token) = self.try_claim(sems, slot, delta, extra, call)? {
                // The next claim starts after this one: past the slots held now, rather
                // than on one of them (claims held for long would make most claims pay
                // for the full read).
                hint.store(slot as u32 + 1, Ordering::Relaxed);
                return Ok(token);
            }
        }
        Err(Error::new(
            ErrorKind::LimitReached,
            call,
            sems.target(),
            format!(
                "all {} lease slots of this object are held by live handles: at most {} \
                 handles (across all processes) can use it at once",
                self.slots, self.slots
            ),
        ))
    }

    /// One claim attempt on `slot` (with `extra`, a semaphore that must be 0 too): the
    /// token, or `None` if the slot is taken (or its GEN would leave its range).
    fn try_claim(
        &self,
        sems: &SemaphoreSet,
        slot: usize,
        delta: i16,
        extra: Option<usize>,
        call: &'static str,
    ) -> Result<Option<u32>> {
        let (held, counter) = (self.held(slot), self.counter(slot));
        let nowait = libc::IPC_NOWAIT as i16;
        let mut ops = [
            libc::sembuf {
                sem_num: extra.unwrap_or(held) as u16,
                sem_op: 0,
                sem_flg: nowait,
            },
            libc::sembuf {
                sem_num: held as u16,
                sem_op: 0,
                sem_flg: nowait,
            },
            libc::sembuf {
                sem_num: held as u16,
                sem_op: 1,
                sem_flg: libc::SEM_UNDO as i16 | nowait,
            },
            libc::sembuf {
                sem_num: counter as u16,
                sem_op: delta,
                sem_flg: nowait,
            },
        ];
        match sems.semop(&mut ops, call) {
            // The slot is ours, so GEN cannot change under us: read the generation our
            // claim made.
            Ok(()) => Ok(Some(
                (sems.value(counter)? as u32) << 16 | (slot as u32 + 1),
            )),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::LimitReached) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives a claim back (the `SEM_UNDO` of the decrement cancels the claim's).
    fn release(&self, sems: &SemaphoreSet, token: u32) {
        if let Some((slot, _)) = self.decode(token) {
            let mut op = [libc::sembuf {
                sem_num: self.held(slot) as u16,
                sem_op: -1,
                sem_flg: libc::SEM_UNDO as i16 | libc::IPC_NOWAIT as i16,
            }];
            // Errors ignored: this runs in Drop, and the likely one (Removed) leaves
            // nothing to give back.
            let _ = sems.semop(&mut op, "lease release");
        }
    }
}

/// A handle's claim: made on first need, per process (a child after `fork` inherits the
/// handle but not the claim: `SEM_UNDO` state is not inherited, so it claims its own).
#[derive(Debug)]
pub(crate) struct Lease {
    /// `generation << 32 | token` of the claim, or 0 before the first.
    word: AtomicU64,
}

impl Lease {
    pub(crate) const fn new() -> Lease {
        Lease {
            word: AtomicU64::new(0),
        }
    }

    /// This process's claim's token, if it has made one. Cheap: two relaxed loads.
    #[inline]
    pub(crate) fn current(&self) -> Option<u32> {
        self.current_in(process::generation())
    }

    /// [`current`](Lease::current), for a caller that has read its fork generation.
    #[inline]
    pub(crate) fn current_in(&self, generation: u32) -> Option<u32> {
        let word = self.word.load(Ordering::Relaxed);
        ((word >> 32) as u32 == generation && word as u32 != 0).then_some(word as u32)
    }

    /// Claims a slot for this process (the first use of the handle in it): the token.
    #[cold]
    pub(crate) fn claim(
        &self,
        leases: &Leases,
        sems: &SemaphoreSet,
        hint: &AtomicU32,
        call: &'static str,
    ) -> Result<u32> {
        let generation = process::generation();
        let token = leases.claim(sems, hint, call)?;
        let mine = u64::from(generation) << 32 | u64::from(token);
        // Two threads may claim at once: the first to record its claim wins, the other
        // gives its slot back. A word of another generation was inherited: replace it.
        let mut seen = self.word.load(Ordering::Relaxed);
        loop {
            if (seen >> 32) as u32 == generation && seen as u32 != 0 {
                leases.release(sems, token);
                return Ok(seen as u32);
            }
            match self
                .word
                .compare_exchange_weak(seen, mine, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(token),
                Err(now) => seen = now,
            }
        }
    }

    /// Gives this process's claim back, if it made one (at the handle's drop).
    pub(crate) fn release(&self, leases: &Leases, sems: &SemaphoreSet) {
        if let Some(token) = self.current() {
            self.word.store(0, Ordering::Relaxed);
            leases.release(sems, token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_objects_own_semaphores() {
        assert_eq!(
            Leases::new(1, 1 + 2 * 256),
            Some(Leases {
                base: 1,
                slots: 256
            })
        );
        assert_eq!(Leases::new(1, 1), None); // no slot
        assert_eq!(Leases::new(2, 5), None); // half a slot
        assert_eq!(Leases::new(3, 2), None); // fewer than its own
        assert_eq!(Leases::nsems(2, 256), 514);
    }

    #[test]
    fn tokens_decode_only_inside_the_set() {
        let l = Leases::new(1, 1 + 2 * 4).unwrap();
        assert_eq!(l.decode(7 << 16 | 1), Some((0, 7)));
        assert_eq!(l.decode(4), Some((3, 0)));
        assert_eq!(l.decode(0), None);
        assert_eq!(l.decode(5), None); // slot 4 of 4
        assert_eq!(l.decode(0x8000_0001), None); // generation above SEMVMX
        assert_eq!(l.decode(3 << 16), None); // slot field 0
    }
}
