//! The managed pair: one segment (header + payload) and one semaphore set under the same
//! key, created and opened race-free. `SharedMutex`, `SharedRwLock` and `Queue` are typed
//! views over a [`Pair`].
//!
//! The creation protocol (Stevens' `sem_otime` rule; docs/FORMAT.md, "Creation"), whose
//! steps the code cites as "Creation step N":
//!
//! 1. The creator makes the segment exclusively (`IPC_CREAT|IPC_EXCL`); `EEXIST` means
//!    someone else creates.
//! 2. Then the set, exclusively. If that fails, the segment is removed again: nothing
//!    half-made is left.
//! 3. It writes the header and the payload (the segment starts zeroed).
//! 4. Last, one real `semop` sets the object's own semaphores' starting values (the lease
//!    slots stay 0) and, being the set's first operation, sets `sem_otime`.
//! 5. An opener finds both objects and waits (bounded) until `sem_otime != 0`; only then
//!    does it read the header, complete by then (`semop` is a full barrier). An object
//!    still uninitialised when the bound runs out is `NotManaged`; a segment marked for
//!    removal meanwhile (a creator that gave up) sends it back to the start.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result, Target};
use crate::managed::header::{self, ANY_SIZE, HEADER_SIZE, Layout, Live, MAX_ALIGN, ObjectKind};
use crate::managed::lease::{Holder, Lease, Leases};
use crate::managed::poison::{self, LockError, LockResult, PoisonError};
use crate::managed::process;
use crate::managed::wait::SleepBackoff;
use crate::raw::key::Key;
use crate::raw::perm::{PermChange, check_owner_access};
use crate::raw::sem::SemaphoreSet;
use crate::raw::shm::Segment;

/// How long a contended lock call (mutex, rwlock) spins, retrying without blocking,
/// before it sleeps in `semop`.
pub(crate) const SPIN_LIMIT: Duration = Duration::from_micros(50);

/// How long an opener waits for a creator to finish, unless told otherwise.
pub(crate) const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(1);

/// A segment with a valid header and its semaphore set.
#[derive(Debug)]
pub(crate) struct Pair {
    pub(crate) seg: Segment,
    pub(crate) sems: SemaphoreSet,
    pub(crate) payload_offset: usize,
    /// The payload's size in bytes (the header's, validated to fit in the segment).
    pub(crate) payload_size: usize,
    /// Where the set's lease slots are (`lease.rs`).
    pub(crate) leases: Leases,
    /// This handle's claim of one of them, made on first need.
    lease: Lease,
}

/// The step of [`Pair::create`] that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CreateStep {
    /// Making the segment (or checking the layout for it).
    Segment,
    /// Making the semaphore set, after the segment was made (and then removed again).
    Set,
    /// Writing the header and payload, or the initialising `semop`.
    Init,
}

/// What a creator makes: the layout (the header it writes), the payload's first bytes
/// (the rest of the segment stays zero) and the starting values of the object's own
/// semaphores (the lease slots after them start at 0). Creation steps 3 and 4.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blueprint<'a> {
    pub(crate) layout: Layout,
    pub(crate) payload: &'a [u8],
    pub(crate) sem_values: &'a [i16],
}

impl<'a> Blueprint<'a> {
    pub(crate) fn new(layout: Layout, payload: &'a [u8], sem_values: &'a [i16]) -> Self {
        Blueprint {
            layout,
            payload,
            sem_values,
        }
    }

    /// The blueprint of a `kind` whose payload is one `T`, starting as `value`.
    pub(crate) fn of<T: bytemuck::Pod>(
        kind: ObjectKind,
        value: &'a T,
        sem_values: &'a [i16],
    ) -> Self {
        Blueprint::new(Layout::of::<T>(kind), bytemuck::bytes_of(value), sem_values)
    }
}

/// How a managed object is made or opened (from the public `Options`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Params {
    pub(crate) mode: u32,
    pub(crate) init_timeout: Duration,
    pub(crate) read_only: bool,
    /// Create even with a mode that gives the owner neither read nor write.
    pub(crate) allow_owner_without_access: bool,
}

fn check_layout(call: &'static str, key: Key, layout: &Layout) -> Result<usize> {
    let target = Target { key, id: None };
    if layout.align > MAX_ALIGN {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            call,
            target,
            format!(
                "payload alignment {} is above {MAX_ALIGN}: shmat only guarantees page alignment",
                layout.align
            ),
        ));
    }
    layout.segment_size().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            call,
            target,
            format!("payload of {} bytes is too large", layout.size),
        )
    })
}

impl Pair {
    /// Creates a new pair exclusively, as `new` says: the segment (zeroed by the kernel)
    /// gets the header and the payload's first bytes, then one `semop` sets the object's
    /// own semaphores, which is also what marks the pair initialised.
    pub(crate) fn create(
        call: &'static str,
        key: Key,
        params: &Params,
        new: Blueprint,
    ) -> Result<Pair> {
        Pair::try_create(call, key, params, new).map_err(|(_, e)| e.in_call(call))
    }

    /// [`create`](Pair::create), telling which step failed: `open_or_create` treats a
    /// segment that exists (someone else creates) apart from a set that exists without
    /// one (a leftover no creator will finish).
    fn try_create(
        call: &'static str,
        key: Key,
        params: &Params,
        new: Blueprint,
    ) -> Result<Pair, (CreateStep, Error)> {
        let layout = &new.layout;
        let at = |step| move |e| (step, e);
        // The object's own semaphores; the lease slots that follow start at 0 (free).
        debug_assert_eq!(new.sem_values.len(), layout.kind.own_semaphores());
        let size = check_layout(call, key, layout).map_err(at(CreateStep::Segment))?;
        // The seed's pitfall, refused here to name the managed option that allows it.
        let target = Target { key, id: None };
        let allow = params.allow_owner_without_access;
        let option = "Options::allow_owner_without_access(true)";
        check_owner_access(call, target, params.mode, allow, option)
            .map_err(at(CreateStep::Segment))?;
        // Creation step 1.
        let seg = Segment::options()
            .mode(params.mode)
            .allow_owner_without_access(allow)
            .create(key, size)
            .map_err(at(CreateStep::Segment))?;
        let sems = match SemaphoreSet::options()
            .mode(params.mode)
            .allow_owner_without_access(allow)
            .create(key, layout.nsems)
        {
            Ok(sems) => sems,
            Err(e) => {
                // Creation step 2: nothing half-made, the segment goes again.
                let _ = seg.remove();
                return Err((CreateStep::Set, e));
            }
        };
        // The fork handler goes in now, before any fork that could inherit this handle.
        process::generation();
        let Some(leases) = Leases::new(layout.kind.own_semaphores(), layout.nsems) else {
            unreachable!("every managed layout has lease slots")
        };
        let pair = Pair {
            seg,
            sems,
            payload_offset: layout.payload_offset(),
            payload_size: layout.size,
            leases,
            lease: Lease::new(),
        };
        let finish = || -> Result<()> {
            // Creation step 3.
            pair.seg.write_all_at(&layout.encode(), 0)?;
            pair.seg.write_all_at(new.payload, pair.payload_offset)?;
            // Creation step 4: one semop sets every non-zero starting value and stamps
            // sem_otime: from here on, openers proceed. If every value starts at 0, a +1
            // and a -1 on semaphore 0 make it an altering operation all the same.
            let sembuf = |i: usize, v: i16| libc::sembuf {
                sem_num: i as u16,
                sem_op: v,
                sem_flg: 0,
            };
            let mut ops: Vec<libc::sembuf> = new
                .sem_values
                .iter()
                .enumerate()
                .filter(|&(_, &v)| v != 0)
                .map(|(i, &v)| sembuf(i, v))
                .collect();
            if ops.is_empty() {
                ops = vec![sembuf(0, 1), sembuf(0, -1)];
            }
            pair.sems.semop(&mut ops, call)
        };
        if let Err(e) = finish() {
            pair.remove_both();
            return Err((CreateStep::Init, e));
        }
        Ok(pair)
    }

    /// Opens an existing pair, waiting (bounded by `params.init_timeout`) for its creator
    /// to finish, and validates the header against `layout`.
    pub(crate) fn open(
        call: &'static str,
        key: Key,
        layout: &Layout,
        params: &Params,
    ) -> Result<Pair> {
        Pair::try_open(call, key, layout, params).map_err(|e| e.in_call(call))
    }

    fn try_open(call: &'static str, key: Key, layout: &Layout, params: &Params) -> Result<Pair> {
        let target = Target { key, id: None };
        if key.is_private() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                call,
                target,
                "Key::PRIVATE names no existing object; share private objects through fork",
            ));
        }
        // An opener that accepts any payload size (ANY_SIZE) has only its alignment to check.
        let probe = match layout.size {
            ANY_SIZE => Layout { size: 0, ..*layout },
            _ => *layout,
        };
        check_layout(call, key, &probe)?;
        let deadline = Instant::now() + params.init_timeout;
        let mut backoff = SleepBackoff::new();
        loop {
            let seg = if params.read_only {
                Segment::open_read_only(key)?
            } else {
                Segment::open(key)?
            };
            let target = Target {
                key,
                id: Some(("shmid", seg.id())),
            };
            let not_managed =
                |reason: &str| Error::new(ErrorKind::NotManaged, call, target, reason.to_string());
            // The size is fixed at shmget time, so a short segment can never become one of
            // ours: refuse at once.
            if seg.len() < HEADER_SIZE {
                return Err(not_managed(&format!(
                    "segment of {} bytes is too small for the {HEADER_SIZE}-byte shmsem header",
                    seg.len()
                )));
            }
            let waiting = match SemaphoreSet::open(key) {
                // Creation step 5: only a finished pair is read.
                Ok(sems) if sems.is_initialised()? => {
                    return Pair::validate(call, seg, sems, layout);
                }
                Ok(_) => "its semaphore set was never initialised (sem_otime is 0)",
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    "the segment has no semaphore set with the same key"
                }
                Err(e) => return Err(e),
            };
            // A creator that gave up removes its segment: start over (NotFound, or a fresh
            // segment) rather than wait for a set that will never come.
            if seg.info()?.is_marked_for_removal() {
                backoff.pause();
                continue;
            }
            if Instant::now() >= deadline {
                return Err(not_managed(&format!(
                    "not a finished shmsem object after {:?}: {waiting}",
                    params.init_timeout
                )));
            }
            backoff.pause();
        }
    }

    fn validate(
        call: &'static str,
        seg: Segment,
        sems: SemaphoreSet,
        layout: &Layout,
    ) -> Result<Pair> {
        let target = Target {
            key: seg.key(),
            id: Some(("shmid", seg.id())),
        };
        let mut bytes = [0u8; HEADER_SIZE];
        seg.read_exact_at(&mut bytes, 0)?;
        let decoded = header::validate(&bytes, seg.len(), layout)
            .map_err(|why| Error::new(why.kind, call, target, why.reason))?;
        if sems.len() != layout.nsems {
            return Err(Error::new(
                ErrorKind::NotManaged,
                call,
                target,
                format!(
                    "the semaphore set has {} semaphores, the header says {}",
                    sems.len(),
                    layout.nsems
                ),
            ));
        }
        // The fork handler goes in now, before any fork that could inherit this handle.
        process::generation();
        // The header's nsems matched the opener's layout, which has whole lease slots.
        let leases = Leases::new(layout.kind.own_semaphores(), sems.len()).ok_or_else(|| {
            Error::new(
                ErrorKind::NotManaged,
                call,
                target,
                format!(
                    "a set of {} semaphores has no whole lease slots",
                    sems.len()
                ),
            )
        })?;
        Ok(Pair {
            seg,
            sems,
            payload_offset: decoded.payload_offset as usize,
            payload_size: decoded.payload_size as usize,
            leases,
            lease: Lease::new(),
        })
    }

    /// Opens the pair, or creates it if there is none; any number of processes may race.
    pub(crate) fn open_or_create(
        call: &'static str,
        key: Key,
        params: &Params,
        new: Blueprint,
    ) -> Result<Pair> {
        Pair::try_open_or_create(call, key, params, new).map_err(|e| e.in_call(call))
    }

    fn try_open_or_create(
        call: &'static str,
        key: Key,
        params: &Params,
        new: Blueprint,
    ) -> Result<Pair> {
        if key.is_private() {
            return Pair::create(call, key, params, new);
        }
        let deadline = Instant::now() + params.init_timeout;
        let mut backoff = SleepBackoff::new();
        loop {
            let last = match Pair::try_create(call, key, params, new) {
                // A set with our key but no segment: a leftover or a foreign object. No
                // creator will ever finish it; say so at once instead of retrying.
                Err((CreateStep::Set, e)) if e.kind() == ErrorKind::AlreadyExists => {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        call,
                        Target { key, id: None },
                        "a semaphore set with this key exists without a segment (a leftover \
                         or another program's); remove it (ipcrm -S <key>) or use another key",
                    ));
                }
                Err((_, e)) if e.kind() == ErrorKind::AlreadyExists => e,
                done => return done.map_err(|(_, e)| e),
            };
            match Pair::open(call, key, &new.layout, params) {
                // The creator we saw gave up and removed its half: try again.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Removed) => {
                    if Instant::now() >= deadline {
                        return Err(last);
                    }
                    backoff.pause();
                }
                done => return done,
            }
        }
    }

    /// The header's live words.
    #[inline]
    pub(crate) fn live(&self) -> Live<'_> {
        // SAFETY: the segment is attached while &self lives, at least HEADER_SIZE bytes
        // (validated or created so) and page-aligned. On a read-only attach the words are
        // only ever loaded (the rwlock's read path); every handle that stores to them
        // (mutex, rwlock writers, clear_poison) is attached read-write.
        unsafe { Live::at(self.seg.as_ptr()) }
    }

    /// This handle's lease token in this process (claiming a slot the first time): what
    /// it records in the holder word and lock words.
    #[inline]
    pub(crate) fn token(&self, call: &'static str) -> Result<u32> {
        self.token_in(process::generation(), call)
    }

    /// [`token`](Pair::token), for a caller that has read its fork generation.
    #[inline]
    pub(crate) fn token_in(&self, generation: u32, call: &'static str) -> Result<u32> {
        match self.lease.current_in(generation) {
            Some(token) => Ok(token),
            None => self.claim_token(call),
        }
    }

    #[cold]
    fn claim_token(&self, call: &'static str) -> Result<u32> {
        self.lease
            .claim(&self.leases, &self.sems, self.live().lease_hint, call)
    }

    /// Is the process behind `token` alive (from the kernel: `lease.rs`)?
    pub(crate) fn holder(&self, token: u32) -> Result<Holder> {
        self.leases.holder(&self.sems, token)
    }

    /// The pid behind `token` as this process's namespace sees it, if the kernel can say.
    pub(crate) fn owner_pid(&self, token: u32) -> Option<i32> {
        self.leases.owner_pid(&self.sems, token)
    }

    /// The result of a lock call that took the lock: the guard, or (if `poisoned_by`, a
    /// poison word, is not 0) the guard inside `Poisoned`, with the pid behind its token
    /// and its cause.
    pub(crate) fn guard_or_poisoned<G>(&self, guard: G, poisoned_by: u32) -> LockResult<G> {
        if poisoned_by == 0 {
            return Ok(guard);
        }
        let (token, cause) = poison::split(poisoned_by);
        let pid = self.owner_pid(token);
        Err(LockError::Poisoned(PoisonError::new(
            guard,
            pid,
            cause,
            self.seg.key(),
        )))
    }

    /// Would the next exclusive locker be told the lock is poisoned? The poison word is
    /// set, or the holder word names a handle whose process is gone (it died inside its
    /// section; nobody has locked since). Errors reading the kernel count as "cannot tell
    /// it is gone": not poisoned.
    pub(crate) fn is_poisoned(&self) -> bool {
        let live = self.live();
        if live.poison.load(Ordering::Acquire) != 0 {
            return true;
        }
        let holder = live.holder.load(Ordering::Acquire);
        if holder == 0 {
            return false;
        }
        let gone = matches!(self.holder(holder), Ok(Holder::Gone | Holder::Invalid));
        // Still the same holder after the kernel said it is gone: it left no other way
        // (a live holder clears the word before it lets go of its claim; Lease invariant
        // 1), so it died inside. A different word means it left, and someone else is in.
        gone && live.holder.load(Ordering::Acquire) == holder
    }

    /// A handle's `Debug`: `name { key, shm_id, sem_id, .. }`; the caller adds its own
    /// fields and finishes it (non-exhaustive).
    pub(crate) fn debug<'a, 'b>(
        &self,
        f: &'a mut std::fmt::Formatter<'b>,
        name: &str,
    ) -> std::fmt::DebugStruct<'a, 'b> {
        let mut d = f.debug_struct(name);
        d.field("key", &self.seg.key())
            .field("shm_id", &self.seg.id())
            .field("sem_id", &self.sems.id());
        d
    }

    /// Address of the payload.
    #[inline]
    pub(crate) fn payload(&self) -> *mut u8 {
        // SAFETY: payload_offset + payload size <= seg.len() (validated or created so).
        unsafe { self.seg.as_ptr().add(self.payload_offset) }
    }

    /// Removes both objects; the first error is returned, but both are attempted.
    pub(crate) fn remove(&self) -> Result<()> {
        let sem = self.sems.remove();
        let shm = self.seg.remove();
        sem.and(shm)
    }

    /// `IPC_SET` on both objects: the segment first, then the set; if the set refuses,
    /// the segment gets its old owner and mode back, so a failed call changes neither.
    pub(crate) fn change_perm(&self, call: &'static str, change: PermChange) -> Result<()> {
        let old = self.seg.info().map_err(|e| e.in_call(call))?;
        self.seg.change_perm(call, change)?;
        if let Err(e) = self.sems.change_perm(call, change) {
            let back = PermChange::all(old.uid, old.gid, old.permissions());
            let _ = self.seg.change_perm(call, back);
            return Err(e);
        }
        Ok(())
    }

    fn remove_both(&self) {
        let _ = self.remove();
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // Lease invariant 1: every lock this handle took was released before it could be
        // dropped (guards borrow it). Never panics.
        self.lease.release(&self.leases, &self.sems);
    }
}
