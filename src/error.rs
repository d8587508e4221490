//! The crate's error type: every error names the call, the key (and the IPC id when one is
//! known) and what went wrong, and maps to an [`ErrorKind`].

use std::borrow::Cow;
use std::fmt;
use std::io;

use crate::raw::key::Key;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: the part of an error a program branches on.
///
/// Like [`std::io::ErrorKind`], this list may grow; match it with a wildcard arm.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An exclusive create found an object with that key already there (`EEXIST`).
    AlreadyExists,
    /// No object has that key (`ENOENT`).
    NotFound,
    /// The caller's uid/gid may not do this with the object (`EACCES`, `EPERM`), or the
    /// handle does not allow it (a write through a read-only attach).
    PermissionDenied,
    /// The object was removed (`IPC_RMID`) while this handle still refers to it
    /// (`EIDRM`, or `EINVAL` for an id that no longer exists).
    Removed,
    /// A non-blocking operation would have had to wait (`EAGAIN` with `IPC_NOWAIT`).
    WouldBlock,
    /// A timed wait ran out before the operation could complete.
    TimedOut,
    /// An argument is invalid: out-of-range index, offset past the end, size 0, bad mode...
    InvalidInput,
    /// A system limit was hit: too many objects, no memory, a semaphore value past
    /// `SEMVMX`, too many operations in one call (`ENOSPC`, `ENOMEM`, `ERANGE`, `E2BIG`).
    LimitReached,
    /// The object exists but was not made (or not finished) by shmsem: no valid header, no
    /// matching semaphore set, or never initialised.
    NotManaged,
    /// The object is a shmsem object, but of another type or payload layout than asked for.
    LayoutMismatch,
    /// The object (a queue) was closed by its writers.
    Closed,
    /// A lock was poisoned: its holder died or panicked inside the critical section.
    /// Only produced when a [`LockError::Poisoned`](crate::LockError) is turned into an
    /// [`Error`].
    Poisoned,
    /// Anything else; the message and [`Error::raw_os_error`] tell more.
    Other,
}

impl ErrorKind {
    /// The matching [`std::io::ErrorKind`].
    pub fn to_io(self) -> io::ErrorKind {
        match self {
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            ErrorKind::NotFound | ErrorKind::Removed => io::ErrorKind::NotFound,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::WouldBlock => io::ErrorKind::WouldBlock,
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::LimitReached => io::ErrorKind::QuotaExceeded,
            ErrorKind::NotManaged | ErrorKind::LayoutMismatch => io::ErrorKind::InvalidData,
            ErrorKind::Closed => io::ErrorKind::BrokenPipe,
            ErrorKind::Poisoned | ErrorKind::Other => io::ErrorKind::Other,
        }
    }
}

/// What a failed call was aimed at: the key, and the IPC id once one is known.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) key: Key,
    pub(crate) id: Option<(&'static str, i32)>,
}

impl Target {
    /// For a call that has no object yet (`Key::ftok`): shown as nothing.
    pub(crate) const NONE: Target = Target {
        key: Key::PRIVATE,
        id: Some(("", -1)),
    };
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {}", self.key)?;
        if let Some((name, id)) = self.id {
            write!(f, ", {name} {id}")?;
        }
        Ok(())
    }
}

/// ` (key ..)` after the call's name, or nothing for a call with no object.
fn shown(target: &Target) -> String {
    match target.id {
        Some(("", -1)) => String::new(),
        _ => format!(" ({target})"),
    }
}

/// An error from shmsem.
///
/// `Display` reads like `semop (key 0x0000162e, semid 3): Identifier removed (os error 43)`:
/// the call, the key, the id when one is known, and the reason.
#[derive(thiserror::Error)]
#[error("{call}{}: {reason}", shown(target))]
pub struct Error {
    kind: ErrorKind,
    call: &'static str,
    target: Target,
    errno: Option<i32>,
    reason: Cow<'static, str>,
}

impl Error {
    /// An error with a message of our own (no errno).
    pub(crate) fn new(
        kind: ErrorKind,
        call: &'static str,
        target: Target,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error {
            kind,
            call,
            target,
            errno: None,
            reason: reason.into(),
        }
    }

    /// An error from a System V call: its kind is `classify(errno, einval)`, where
    /// `einval` is what `EINVAL` means for this call.
    pub(crate) fn sysv(call: &'static str, target: Target, errno: i32, einval: ErrorKind) -> Self {
        Error::os(call, target, errno, classify(errno, einval))
    }

    /// An error from the OS: `errno` decides the kind through `classify`.
    pub(crate) fn os(call: &'static str, target: Target, errno: i32, kind: ErrorKind) -> Self {
        let os = io::Error::from_raw_os_error(errno);
        // The OS text must not contradict the kind: a semaphore set that was removed
        // gives EINVAL ("Invalid argument") to a call on its old id.
        let reason = match (kind, errno) {
            (ErrorKind::Removed, libc::EINVAL) => {
                format!("the object was removed (the kernel says: {os})").into()
            }
            (ErrorKind::NotFound, libc::ENOENT) => {
                format!("no object with this key (the kernel says: {os})").into()
            }
            _ => os.to_string().into(),
        };
        Error {
            kind,
            call,
            target,
            errno: Some(errno),
            reason,
        }
    }

    /// A failed file operation (`std::io`): `NotFound` and `PermissionDenied` keep their
    /// meaning, anything else is `Other`; the reason is `what: the io error`.
    pub(crate) fn io(call: &'static str, target: Target, what: &str, e: &io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Other,
        };
        Error::new(kind, call, target, format!("{what}: {e}"))
    }

    /// An error from a System V call whose errno shmsem explains in its own words (a
    /// limit named, the sysctl that raises it): kind and reason given, errno kept.
    pub(crate) fn explained(
        call: &'static str,
        target: Target,
        errno: i32,
        kind: ErrorKind,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        let e = Error::new(kind, call, target, reason);
        Error {
            errno: Some(errno),
            ..e
        }
    }

    /// The same error, reported as a failure of the public call `public` (the system
    /// call that failed stays in the message): `SharedMutex::open (key ..): shmget: No
    /// such file or directory`. Unchanged if it already names `public`.
    pub(crate) fn in_call(self, public: &'static str) -> Error {
        if self.call == public {
            return self;
        }
        Error {
            reason: format!("{}: {}", self.call, self.reason).into(),
            call: public,
            ..self
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The `errno` the failed system call returned, if the failure came from one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.errno
    }

    /// The call that failed, e.g. `"semop"` or `"SharedMutex::open"`.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The key of the object the call was aimed at.
    pub fn key(&self) -> Key {
        self.target.key
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind)
            .field("call", &self.call)
            .field("key", &self.target.key);
        if let Some((name, id)) = self.target.id {
            d.field(name, &id);
        }
        if let Some(errno) = self.errno {
            d.field("errno", &errno);
        }
        d.field("reason", &self.reason).finish()
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        io::Error::new(err.kind.to_io(), err)
    }
}

/// A System V call's return value: `-1` (how they all fail) becomes the `errno`, anything
/// else is the result. The one place that turns a failure into its errno.
pub(crate) fn cvt(rc: libc::c_int) -> std::result::Result<libc::c_int, i32> {
    if rc == -1 { Err(last_errno()) } else { Ok(rc) }
}

/// The `errno` of the last failed libc call on this thread.
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The usual meaning of an `errno` from the SysV calls. `EINVAL` is left to the caller:
/// for a call on an id we hold it means the object is gone, elsewhere a bad argument.
pub(crate) fn classify(errno: i32, einval: ErrorKind) -> ErrorKind {
    match errno {
        libc::EEXIST => ErrorKind::AlreadyExists,
        libc::ENOENT => ErrorKind::NotFound,
        libc::EACCES | libc::EPERM => ErrorKind::PermissionDenied,
        libc::EIDRM => ErrorKind::Removed,
        libc::EAGAIN => ErrorKind::WouldBlock,
        libc::EINVAL => einval,
        libc::ENOSPC | libc::ENOMEM | libc::ERANGE | libc::E2BIG => ErrorKind::LimitReached,
        _ => ErrorKind::Other,
    }
}
