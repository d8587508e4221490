//! The raw semaphore layer: [`SemaphoreSet`] is one System V semaphore set
//! (`semget`/`semop`/`semtimedop`/`semctl`), and [`SemOp`] one operation of a `semop`.

use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, ErrorKind, Result, Target, cvt, last_errno};
use crate::raw::key::Key;
use crate::raw::limits;
use crate::raw::perm::{IpcSet, Perm, PermChange, check_owner_access};
use crate::raw::sys::{self, Semun};

/// One operation of a [`SemaphoreSet::op`] call (a `struct sembuf`).
///
/// `delta > 0` adds to the semaphore; `delta < 0` waits until the value is at least
/// `-delta`, then subtracts; `delta == 0` waits until the value is zero. All operations of
/// one call happen atomically: all at once, or none.
///
/// ```
/// use shmsem::SemOp;
/// let lock = SemOp::wait(0).undo();          // P with SEM_UNDO
/// let try_lock = SemOp::wait(0).undo().nowait();
/// assert_eq!(lock.delta(), -1);
/// assert!(try_lock.is_nowait() && try_lock.is_undo());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct SemOp {
    index: usize,
    delta: i16,
    flags: i16,
}

impl SemOp {
    /// Adds `delta` to semaphore `index` (waiting first if `delta` is negative).
    pub const fn new(index: usize, delta: i16) -> SemOp {
        SemOp {
            index,
            delta,
            flags: 0,
        }
    }

    /// P: wait until semaphore `index` is positive, then take one (`-1`).
    pub const fn wait(index: usize) -> SemOp {
        SemOp::new(index, -1)
    }

    /// V: give one back to semaphore `index` (`+1`).
    pub const fn post(index: usize) -> SemOp {
        SemOp::new(index, 1)
    }

    /// Wait until semaphore `index` is zero (`0`).
    pub const fn wait_zero(index: usize) -> SemOp {
        SemOp::new(index, 0)
    }

    /// `SEM_UNDO`: the kernel reverses this operation's effect when the process exits, so a
    /// process that dies holding a lock gives it back. Do not use it on counting or
    /// signalling semaphores that a process only posts: the per-process adjustment is
    /// bounded (`SEMVMX`) and the post fails with `ERANGE` once it overflows.
    pub const fn undo(mut self) -> SemOp {
        self.flags |= libc::SEM_UNDO as i16;
        self
    }

    /// `IPC_NOWAIT`: fail with [`ErrorKind::WouldBlock`] instead of waiting.
    pub const fn nowait(mut self) -> SemOp {
        self.flags |= libc::IPC_NOWAIT as i16;
        self
    }

    /// The semaphore's index in the set.
    pub const fn index(&self) -> usize {
        self.index
    }

    /// The amount added (negative: taken after waiting; zero: wait for zero).
    pub const fn delta(&self) -> i16 {
        self.delta
    }

    /// Does this operation carry `SEM_UNDO`?
    pub const fn is_undo(&self) -> bool {
        self.flags & libc::SEM_UNDO as i16 != 0
    }

    /// Does this operation carry `IPC_NOWAIT`?
    pub const fn is_nowait(&self) -> bool {
        self.flags & libc::IPC_NOWAIT as i16 != 0
    }
}

/// Everything the kernel tells about a semaphore set: what `semctl(IPC_STAT)` reports
/// ([`SemaphoreSet::info`]), and what `/proc/sysvipc/sem` lists for every set
/// ([`inspect::semaphore_sets`](crate::inspect::semaphore_sets), where this type is also
/// named [`SemRecord`](crate::inspect::SemRecord)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemaphoreSetInfo {
    /// The key (`Key::PRIVATE` for private sets).
    pub key: Key,
    /// The IPC id (`semid`).
    pub id: i32,
    /// Number of semaphores in the set.
    pub nsems: usize,
    /// Permission bits (`sem_perm.mode`, low 9 bits).
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Creator's user id.
    pub cuid: u32,
    /// Creator's group id.
    pub cgid: u32,
    /// Last `semop`, if any (`sem_otime`): `None` means no operation ever ran, which is how
    /// an uninitialised set is recognised (and, for a shmsem pair, one never initialised).
    pub otime: Option<SystemTime>,
    /// Last change (creation, `SETVAL`, `IPC_SET`).
    pub ctime: Option<SystemTime>,
}

impl SemaphoreSetInfo {
    /// The permission bits (`mode & 0o777`).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o777
    }
}

/// How [`SemaphoreSet`] creates a set, beyond its key and size. Obtained from
/// [`SemaphoreSet::options`]; [`create`](SemaphoreSetOptions::create) makes the set.
///
/// ```
/// use shmsem::{Key, SemaphoreSet};
/// let set = SemaphoreSet::options().mode(0o660).create(Key::PRIVATE, 2)?;
/// assert_eq!(set.info()?.permissions(), 0o660);
/// set.remove()?;
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "options do nothing until create is called"]
pub struct SemaphoreSetOptions {
    mode: u32,
    allow_owner_without_access: bool,
}

impl Default for SemaphoreSetOptions {
    fn default() -> Self {
        SemaphoreSetOptions {
            mode: 0o600,
            allow_owner_without_access: false,
        }
    }
}

impl SemaphoreSetOptions {
    /// The defaults: mode `0o600`.
    pub fn new() -> Self {
        SemaphoreSetOptions::default()
    }

    /// Permission bits (`0o777` at most; default `0o600`; for semaphores the write bit
    /// means "alter"). A mode that gives the owner neither read nor alter is refused
    /// unless [`allow_owner_without_access`](SemaphoreSetOptions::allow_owner_without_access).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Allow a mode that gives the owner neither read nor alter permission (e.g. `0o000`
    /// or `0o060`), refused by default because only root could then use the set (the
    /// seed tutorial's pitfall, `IPC_CREAT` without permission bits).
    pub fn allow_owner_without_access(mut self, allow: bool) -> Self {
        self.allow_owner_without_access = allow;
        self
    }

    /// Creates the set of `nsems` semaphores, as [`SemaphoreSet::create`] does, with
    /// these options.
    ///
    /// # Errors
    /// As [`SemaphoreSet::create`].
    pub fn create(self, key: Key, nsems: usize) -> Result<SemaphoreSet> {
        let target = Target { key, id: None };
        check_owner_access(
            "semget",
            target,
            self.mode,
            self.allow_owner_without_access,
            "SemaphoreSetOptions::allow_owner_without_access(true)",
        )?;
        let n = match i32::try_from(nsems) {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "semget",
                    target,
                    format!("nsems must be between 1 and SEMMSL, not {nsems}"),
                ));
            }
        };
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | self.mode as i32;
        // SAFETY: semget takes plain integers and touches no memory of ours.
        let id = cvt(unsafe { libc::semget(key.as_raw(), n, flags) }).map_err(|errno| {
            match limits::explain_semget(errno, nsems) {
                Some((kind, why)) => Error::explained("semget", target, errno, kind, why),
                // With IPC_CREAT|IPC_EXCL and nsems > 0, EINVAL means nsems > SEMMSL.
                None => Error::sysv("semget", target, errno, ErrorKind::LimitReached),
            }
        })?;
        Ok(SemaphoreSet { id, key, nsems })
    }
}

/// One System V semaphore set.
///
/// The raw layer: exactly the kernel's semaphores, nothing hidden, so it opens sets that
/// C, Python or Perl programs made. Operations that wait retry when a signal interrupts
/// them (`EINTR`); timed ones keep their deadline. Once the set is removed (by any
/// process) every call on it is [`ErrorKind::Removed`]; callers blocked in it wake with
/// that error.
///
/// ```
/// use shmsem::{Key, SemOp, SemaphoreSet};
/// let set = SemaphoreSet::create(Key::PRIVATE, 1, 0o600)?;
/// set.set_value(0, 1)?;
/// set.op(&[SemOp::wait(0).undo()])?;             // P
/// assert_eq!(set.value(0)?, 0);
/// set.op(&[SemOp::post(0).undo()])?;             // V
/// set.remove()?;
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Debug)]
pub struct SemaphoreSet {
    id: i32,
    key: Key,
    nsems: usize,
}

/// Up to this many operations go through `op` without allocating.
const INLINE_OPS: usize = 8;

impl SemaphoreSet {
    /// Creates a new set of `nsems` semaphores (all 0) with permissions `mode`. Exclusive:
    /// an existing set with that key is `AlreadyExists`.
    ///
    /// A new set has never been operated on (`otime` is `None`); programs that open it use
    /// that to tell "not initialised yet" (see [`info`](SemaphoreSet::info)).
    ///
    /// # Errors
    /// `AlreadyExists`; `InvalidInput` for 0 semaphores, bad mode bits, or a mode that
    /// gives the owner neither read nor write (alter) permission (see
    /// [`SemaphoreSetOptions::allow_owner_without_access`]); `LimitReached` for more than
    /// `SEMMSL` semaphores or when the system is out of sets or semaphores (the message
    /// names the limit and the field of `kernel.sem` that raises it;
    /// [`sem_limits`](crate::sem_limits) reads them).
    pub fn create(key: Key, nsems: usize, mode: u32) -> Result<SemaphoreSet> {
        SemaphoreSetOptions::new().mode(mode).create(key, nsems)
    }

    /// Options for creating a set: the mode, and whether a mode that locks the owner out
    /// is really meant.
    pub fn options() -> SemaphoreSetOptions {
        SemaphoreSetOptions::new()
    }

    /// Opens the existing set with this key.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` without read permission; `InvalidInput` for
    /// [`Key::PRIVATE`].
    pub fn open(key: Key) -> Result<SemaphoreSet> {
        let target = Target { key, id: None };
        if key.is_private() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "semget",
                target,
                "Key::PRIVATE names no existing set; share private sets by fork or id",
            ));
        }
        // SAFETY: semget takes plain integers and touches no memory of ours.
        let id = cvt(unsafe { libc::semget(key.as_raw(), 0, 0) })
            .map_err(|errno| Error::sysv("semget", target, errno, ErrorKind::InvalidInput))?;
        SemaphoreSet::from_id_and_key(id, key)
    }

    /// Opens the set with IPC id `id` (as `ipcs -s` lists it).
    ///
    /// # Errors
    /// `Removed` when no set has that id; `PermissionDenied` without read permission.
    pub fn from_id(id: i32) -> Result<SemaphoreSet> {
        SemaphoreSet::from_id_and_key(id, Key::PRIVATE)
    }

    fn from_id_and_key(id: i32, key: Key) -> Result<SemaphoreSet> {
        let mut set = SemaphoreSet { id, key, nsems: 0 };
        let info = set.stat()?;
        set.key = Key::from_raw(info.sem_perm.__key);
        set.nsems = info.sem_nsems as usize;
        Ok(set)
    }

    pub(crate) fn target(&self) -> Target {
        Target {
            key: self.key,
            id: Some(("semid", self.id)),
        }
    }

    #[cold]
    fn os_error(&self, call: &'static str, errno: i32) -> Error {
        // On an id we hold, EINVAL means the set no longer exists.
        Error::sysv(call, self.target(), errno, ErrorKind::Removed)
    }

    fn stat(&self) -> Result<libc::semid_ds> {
        sys::sem_stat(self.id).map_err(|errno| self.os_error("semctl(IPC_STAT)", errno))
    }

    /// The IPC id (`semid`), as `ipcs -s` shows it.
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key this set was created or opened with.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The number of semaphores in the set.
    pub fn len(&self) -> usize {
        self.nsems
    }

    /// Is the set empty? (Never true: sets have at least one semaphore.)
    pub fn is_empty(&self) -> bool {
        self.nsems == 0
    }

    fn check_index(&self, call: &'static str, index: usize) -> Result<i32> {
        if index < self.nsems {
            Ok(index as i32)
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                call,
                self.target(),
                format!(
                    "semaphore index {index} out of range for a set of {}",
                    self.nsems
                ),
            ))
        }
    }

    fn ctl_get(&self, call: &'static str, index: usize, cmd: i32) -> Result<i32> {
        let i = self.check_index(call, index)?;
        // SAFETY: GETVAL/GETNCNT/GETZCNT/GETPID read no fourth argument.
        cvt(unsafe { libc::semctl(self.id, i, cmd) }).map_err(|errno| self.os_error(call, errno))
    }

    /// The current value of semaphore `index` (`GETVAL`).
    pub fn value(&self, index: usize) -> Result<i32> {
        self.ctl_get("semctl(GETVAL)", index, libc::GETVAL)
    }

    /// Sets semaphore `index` to `value` (`SETVAL`). Clears every process's undo adjustment
    /// for it, and does not count as an operation (`otime` stays as it was).
    ///
    /// # Errors
    /// `InvalidInput` for a value outside `0..=32767` (`SEMVMX`) or a bad index.
    pub fn set_value(&self, index: usize, value: i32) -> Result<()> {
        let call = "semctl(SETVAL)";
        let i = self.check_index(call, index)?;
        if !(0..=sys::SEMVMX).contains(&value) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                call,
                self.target(),
                format!("value {value} outside 0..={} (SEMVMX)", sys::SEMVMX),
            ));
        }
        // SAFETY: SETVAL reads the int member of the semun passed by value.
        cvt(unsafe { libc::semctl(self.id, i, libc::SETVAL, Semun { val: value }) })
            .map(drop)
            .map_err(|errno| self.os_error(call, errno))
    }

    /// Every semaphore's value, read in one atomic snapshot (`GETALL`).
    ///
    /// ```
    /// use shmsem::{Key, SemaphoreSet};
    /// let set = SemaphoreSet::create(Key::PRIVATE, 3, 0o600)?;
    /// set.set_value(1, 5)?;
    /// assert_eq!(set.values()?, [0, 5, 0]);
    /// set.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    pub fn values(&self) -> Result<Vec<i32>> {
        self.values_in("semctl(GETALL)")
    }

    /// [`values`](SemaphoreSet::values), with errors naming `call`.
    pub(crate) fn values_in(&self, call: &'static str) -> Result<Vec<i32>> {
        let mut buf: Vec<libc::c_ushort> = vec![0; self.nsems];
        // SAFETY: GETALL writes sem_nsems values through the array member; the buffer
        // holds self.nsems of them, the set's size (fixed at creation, read at open).
        let rc = unsafe {
            libc::semctl(
                self.id,
                0,
                libc::GETALL,
                Semun {
                    array: buf.as_mut_ptr(),
                },
            )
        };
        if rc == -1 {
            return Err(self.os_error(call, last_errno()));
        }
        Ok(buf.into_iter().map(i32::from).collect())
    }

    /// Sets every semaphore at once (`SETALL`): `values[i]` goes to semaphore `i`, in one
    /// atomic step, as [`values`](SemaphoreSet::values) reads them. Like
    /// [`set_value`](SemaphoreSet::set_value) it clears every process's undo adjustments
    /// (for the whole set), wakes waiters whose condition now holds, and does not count
    /// as an operation (`otime` stays as it was).
    ///
    /// ```
    /// use shmsem::{Key, SemaphoreSet};
    /// let set = SemaphoreSet::create(Key::PRIVATE, 3, 0o600)?;
    /// set.set_values(&[1, 0, 7])?;
    /// assert_eq!(set.values()?, [1, 0, 7]);
    /// set.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` when `values` does not have exactly [`len`](SemaphoreSet::len)
    /// elements or one is outside `0..=32767` (`SEMVMX`): nothing is set then;
    /// `PermissionDenied` without alter permission; `Removed`.
    pub fn set_values(&self, values: &[i32]) -> Result<()> {
        let call = "SemaphoreSet::set_values";
        let invalid = |why: String| Error::new(ErrorKind::InvalidInput, call, self.target(), why);
        if values.len() != self.nsems {
            return Err(invalid(format!(
                "{} values given for a set of {} semaphores (SETALL sets every one)",
                values.len(),
                self.nsems
            )));
        }
        let mut buf: Vec<libc::c_ushort> = Vec::with_capacity(values.len());
        for (i, &v) in values.iter().enumerate() {
            if !(0..=sys::SEMVMX).contains(&v) {
                return Err(invalid(format!(
                    "value {v} for semaphore {i} is outside 0..={} (SEMVMX)",
                    sys::SEMVMX
                )));
            }
            buf.push(v as libc::c_ushort);
        }
        // SAFETY: SETALL reads sem_nsems values through the array member; the buffer holds
        // exactly self.nsems of them (checked above), the set's size.
        let rc = unsafe {
            libc::semctl(
                self.id,
                0,
                libc::SETALL,
                Semun {
                    array: buf.as_mut_ptr(),
                },
            )
        };
        if rc == -1 {
            return Err(self.os_error("semctl(SETALL)", last_errno()).in_call(call));
        }
        Ok(())
    }

    /// The kernel's `ipc_perm` of this set, for `IPC_SET`: from `IPC_STAT`, or for a
    /// caller without read permission (an owner who took it away), from
    /// /proc/sysvipc/sem, which lists every set's owner and mode to everyone.
    fn perm(&self) -> std::result::Result<Perm, i32> {
        Perm::stat_or_row(sys::sem_stat(self.id).map(|ds| ds.sem_perm), || {
            let all = crate::raw::tables::semaphore_sets().ok()?;
            let r = all.into_iter().find(|r| r.id == self.id)?;
            Some((r.uid, r.gid, r.cuid, r.mode))
        })
    }

    /// `semctl(IPC_SET)` with `change`, errors naming `call`.
    pub(crate) fn change_perm(&self, call: &'static str, change: PermChange) -> Result<()> {
        IpcSet {
            call,
            syscall: "semctl(IPC_SET)",
            target: self.target(),
            stat: &|| self.perm(),
            set: &|uid, gid, mode| sys::sem_set(self.id, uid, gid, mode),
        }
        .apply(change)
    }

    crate::raw::perm::perm_setters!(
        "SemaphoreSet",
        "the set",
        "Permission bits are checked at every operation, so the new owner's apply at \
         once, to every process.",
        []
    );

    /// How many processes wait for semaphore `index` to increase (`GETNCNT`).
    pub fn wait_count(&self, index: usize) -> Result<usize> {
        self.ctl_get("semctl(GETNCNT)", index, libc::GETNCNT)
            .map(|n| n as usize)
    }

    /// How many processes wait for semaphore `index` to become zero (`GETZCNT`).
    pub fn zero_wait_count(&self, index: usize) -> Result<usize> {
        self.ctl_get("semctl(GETZCNT)", index, libc::GETZCNT)
            .map(|n| n as usize)
    }

    /// The pid of the last process that operated on semaphore `index` (`GETPID`).
    pub fn last_pid(&self, index: usize) -> Result<i32> {
        self.ctl_get("semctl(GETPID)", index, libc::GETPID)
    }

    /// Everything `semctl(IPC_STAT)` reports about the set.
    pub fn info(&self) -> Result<SemaphoreSetInfo> {
        let ds = self.stat()?;
        Ok(SemaphoreSetInfo {
            key: Key::from_raw(ds.sem_perm.__key),
            id: self.id,
            nsems: ds.sem_nsems as usize,
            mode: u32::from(ds.sem_perm.mode),
            uid: ds.sem_perm.uid,
            gid: ds.sem_perm.gid,
            cuid: ds.sem_perm.cuid,
            cgid: ds.sem_perm.cgid,
            otime: sys::system_time(ds.sem_otime),
            ctime: sys::system_time(ds.sem_ctime),
        })
    }

    /// Has any `semop` ever run on this set (`sem_otime != 0`)?
    pub(crate) fn is_initialised(&self) -> Result<bool> {
        Ok(self.stat()?.sem_otime != 0)
    }

    /// Applies `ops` atomically (`semop`), waiting as long as it takes. A signal that
    /// interrupts the wait (`EINTR`) does not end it.
    ///
    /// # Errors
    /// `WouldBlock` when an op has [`nowait`](SemOp::nowait) and would wait; `Removed` when
    /// the set is (or gets) removed; `InvalidInput` for an empty list or a bad index;
    /// `LimitReached` for a value past `SEMVMX` or too many ops (`SEMOPM`).
    pub fn op(&self, ops: &[SemOp]) -> Result<()> {
        self.with_sembufs("semop", ops, |sops| self.semop(sops, "semop"))
    }

    /// Like [`op`](SemaphoreSet::op), but gives up with [`ErrorKind::TimedOut`] after
    /// `timeout` (`semtimedop`). The deadline is taken once, on the monotonic clock: signals
    /// that interrupt the wait neither extend nor restart it. A zero timeout tries once.
    pub fn op_timeout(&self, ops: &[SemOp], timeout: Duration) -> Result<()> {
        let call = "semtimedop";
        self.with_sembufs(call, ops, |sops| {
            match Instant::now().checked_add(timeout) {
                Some(deadline) => self.semtimedop(sops, deadline, call),
                // Too far away to represent: no timeout at all.
                None => self.semop(sops, call),
            }
        })
    }

    /// Checks `ops` and converts them to `sembuf`s (on the stack for a few), then runs `f`.
    fn with_sembufs<R>(
        &self,
        call: &'static str,
        ops: &[SemOp],
        f: impl FnOnce(&mut [libc::sembuf]) -> Result<R>,
    ) -> Result<R> {
        if ops.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                call,
                self.target(),
                "no operations given",
            ));
        }
        let convert = |op: &SemOp| -> Result<libc::sembuf> {
            self.check_index(call, op.index)?;
            Ok(libc::sembuf {
                sem_num: op.index as u16,
                sem_op: op.delta,
                sem_flg: op.flags,
            })
        };
        let zero = libc::sembuf {
            sem_num: 0,
            sem_op: 0,
            sem_flg: 0,
        };
        if ops.len() <= INLINE_OPS {
            let mut buf = [zero; INLINE_OPS];
            for (slot, op) in buf.iter_mut().zip(ops) {
                *slot = convert(op)?;
            }
            f(&mut buf[..ops.len()])
        } else {
            let mut buf = ops.iter().map(convert).collect::<Result<Vec<_>>>()?;
            f(&mut buf)
        }
    }

    /// `semop` on checked `sembuf`s, retrying on `EINTR`.
    #[inline]
    pub(crate) fn semop(&self, sops: &mut [libc::sembuf], call: &'static str) -> Result<()> {
        self.semop_errno(sops)
            .map_err(|errno| self.semop_error(call, sops.len(), errno))
    }

    /// [`semop`](SemaphoreSet::semop) for operations with `IPC_NOWAIT`: `Ok(false)` when
    /// they would wait (`EAGAIN`), without building an error (with its message): a
    /// contended lock tries this over and over.
    #[inline]
    pub(crate) fn try_semop(&self, sops: &mut [libc::sembuf], call: &'static str) -> Result<bool> {
        match self.semop_errno(sops) {
            Ok(()) => Ok(true),
            Err(libc::EAGAIN) => Ok(false),
            Err(errno) => Err(self.semop_error(call, sops.len(), errno)),
        }
    }

    /// The `semop` system call, retried on `EINTR`; the errno if it fails.
    #[inline]
    fn semop_errno(&self, sops: &mut [libc::sembuf]) -> std::result::Result<(), i32> {
        loop {
            // SAFETY: sops points at sops.len() initialised sembufs with indexes checked
            // against the set's size; the kernel only reads them.
            let rc = unsafe { libc::semop(self.id, sops.as_mut_ptr(), sops.len()) };
            if rc == 0 {
                return Ok(());
            }
            match last_errno() {
                libc::EINTR => continue,
                errno => return Err(errno),
            }
        }
    }

    #[cold]
    fn semop_error(&self, call: &'static str, n: usize, errno: i32) -> Error {
        match errno {
            libc::E2BIG => self.too_many_ops(call, n),
            errno => self.os_error(call, errno),
        }
    }

    /// `E2BIG`: more operations than `SEMOPM`, said with the limit.
    #[cold]
    fn too_many_ops(&self, call: &'static str, n: usize) -> Error {
        let why = limits::explain_semop_e2big(n);
        Error::explained(
            call,
            self.target(),
            libc::E2BIG,
            ErrorKind::LimitReached,
            why,
        )
    }

    /// `semtimedop` on checked `sembuf`s until `deadline` (monotonic), retrying on `EINTR`
    /// with the time that is left.
    pub(crate) fn semtimedop(
        &self,
        sops: &mut [libc::sembuf],
        deadline: Instant,
        call: &'static str,
    ) -> Result<()> {
        let nowait = sops
            .iter()
            .any(|s| s.sem_flg & libc::IPC_NOWAIT as i16 != 0);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() && !nowait {
                // Time is up: one last try without sleeping (a zero timeout would still
                // sleep for the timer slack, ~50 µs).
                return self.semop_nowait_once(sops, call);
            }
            let left = sys::timespec(left);
            // SAFETY: sops as in `semop`; `left` is a valid timespec that outlives the call.
            let rc = unsafe { sys::semtimedop(self.id, sops.as_mut_ptr(), sops.len(), &left) };
            if rc == 0 {
                return Ok(());
            }
            match last_errno() {
                libc::EINTR => continue,
                libc::EAGAIN if !nowait => return Err(self.timed_out(call)),
                libc::E2BIG => return Err(self.too_many_ops(call, sops.len())),
                errno => return Err(self.os_error(call, errno)),
            }
        }
    }

    /// [`semop`](SemaphoreSet::semop) with `IPC_NOWAIT` added to every operation (the
    /// flags are restored after): `TimedOut` if it would wait.
    fn semop_nowait_once(&self, sops: &mut [libc::sembuf], call: &'static str) -> Result<()> {
        let flags: Vec<i16> = sops.iter().map(|s| s.sem_flg).collect();
        for s in sops.iter_mut() {
            s.sem_flg |= libc::IPC_NOWAIT as i16;
        }
        let r = self.semop(sops, call);
        for (s, f) in sops.iter_mut().zip(flags) {
            s.sem_flg = f;
        }
        r.map_err(|e| match e.kind() {
            ErrorKind::WouldBlock => self.timed_out(call),
            _ => e,
        })
    }

    fn timed_out(&self, call: &'static str) -> Error {
        let why = "timed out waiting for the semaphore";
        Error::new(ErrorKind::TimedOut, call, self.target(), why)
    }

    /// Removes the set (`IPC_RMID`): processes waiting in it wake with
    /// [`ErrorKind::Removed`], and every later call on any handle is `Removed`.
    ///
    /// # Errors
    /// `Removed` if already removed; `PermissionDenied` unless owner, creator or privileged.
    pub fn remove(&self) -> Result<()> {
        // SAFETY: IPC_RMID reads no fourth argument.
        cvt(unsafe { libc::semctl(self.id, 0, libc::IPC_RMID) })
            .map(drop)
            .map_err(|errno| self.os_error("semctl(IPC_RMID)", errno))
    }
}
