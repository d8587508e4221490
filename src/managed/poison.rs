//! What a lock call returns: [`LockResult`], [`LockError`], [`PoisonError`], shaped like
//! `std::sync`'s so that code written for `std::sync::Mutex` reads the same.

use std::fmt;

use crate::error::{Error, ErrorKind, Target};
use crate::raw::key::Key;

/// The result of a lock call: the guard, or why there is none (or why it comes with a
/// warning).
pub type LockResult<G> = Result<G, LockError<G>>;

/// Why a lock call did not simply return its guard.
pub enum LockError<G> {
    /// The lock was taken, but its previous holder died or panicked inside the critical
    /// section: the data may be half-updated. The guard is inside; repair, then
    /// [`clear_poison`](crate::SharedMutex::clear_poison).
    Poisoned(PoisonError<G>),
    /// The lock was not taken: busy (`WouldBlock`), timed out (`TimedOut`), removed
    /// (`Removed`), or another failure of the system call.
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard whether or not the lock was poisoned; the failure if it was not taken.
    /// "Take the lock, poisoned or not" reads `m.lock().or_else(LockError::into_guard)?`,
    /// and that `?` works in any function returning `shmsem::Error`, `std::io::Error` or
    /// `Box<dyn Error>` (the error holds no borrow of the lock).
    ///
    /// ```
    /// use shmsem::{Key, LockError, SharedMutex};
    /// let m = SharedMutex::create(Key::PRIVATE, 0u32)?;
    /// *m.lock().or_else(LockError::into_guard)? += 1;
    /// # m.remove()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_guard(self) -> Result<G, Error> {
        match self {
            LockError::Poisoned(p) => Ok(p.guard),
            LockError::Failed(e) => Err(e),
        }
    }

    /// Was the lock taken, poisoned? (Then the guard is inside.)
    pub fn is_poisoned(&self) -> bool {
        matches!(self, LockError::Poisoned(_))
    }

    /// For a poisoned lock, the pid of the process whose section broke off first
    /// ([`PoisonError::owner_pid`]); `None` otherwise, or when the kernel cannot say.
    pub fn owner_pid(&self) -> Option<i32> {
        match self {
            LockError::Poisoned(p) => p.owner_pid,
            LockError::Failed(_) => None,
        }
    }

    /// The error kind: [`ErrorKind::Poisoned`] or the failure's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LockError::Poisoned(_) => ErrorKind::Poisoned,
            LockError::Failed(e) => e.kind(),
        }
    }

    /// The same error around `f(guard)`, for a call that returns the guard with more.
    pub(crate) fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::Poisoned(p) => LockError::Poisoned(PoisonError {
                guard: f(p.guard),
                owner_pid: p.owner_pid,
                cause: p.cause,
                key: p.key,
            }),
            LockError::Failed(e) => LockError::Failed(e),
        }
    }

    /// The poison error, if this is one (the guard is inside).
    pub fn into_poisoned(self) -> Option<PoisonError<G>> {
        match self {
            LockError::Poisoned(p) => Some(p),
            LockError::Failed(_) => None,
        }
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Poisoned(p) => f.debug_tuple("Poisoned").field(p).finish(),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Poisoned(p) => p.fmt(f),
            LockError::Failed(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::Poisoned(_) => None,
            LockError::Failed(e) => Some(e),
        }
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(e: Error) -> Self {
        LockError::Failed(e)
    }
}

/// For `?` in functions returning `std::io::Error` (kind as [`ErrorKind::to_io`]).
impl<G> From<LockError<G>> for std::io::Error {
    fn from(e: LockError<G>) -> std::io::Error {
        Error::from(e).into()
    }
}

/// Turns a poisoned result into an error (the guard is dropped, so the lock is released).
impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::Failed(e) => e,
            LockError::Poisoned(p) => Error::new(
                ErrorKind::Poisoned,
                "lock",
                Target {
                    key: p.key,
                    id: None,
                },
                p.to_string(),
            ),
        }
    }
}

/// The lock was poisoned: the guard (the lock is held) and who broke off.
///
/// As with [`std::sync::PoisonError`], the data is reachable: [`into_inner`] gives the
/// guard, to inspect and repair the data.
///
/// [`into_inner`]: PoisonError::into_inner
pub struct PoisonError<G> {
    guard: G,
    owner_pid: Option<i32>,
    cause: PoisonCause,
    key: Key,
}

/// What broke the first poisoned critical section off (kept until `clear_poison`: a later
/// death or panic does not replace it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoisonCause {
    /// The holder's process ended inside: killed, crashed, or exited.
    Died,
    /// A panic began inside, in a thread of the holder's process.
    Panicked,
}

/// The bit of a poison word that says the cause was a panic (docs/FORMAT.md, "Unlock");
/// the rest is the holder's lease token, which never has it (generations stop at 32767).
pub(crate) const PANICKED: u32 = 1 << 31;

/// A poison word's token and cause.
pub(crate) fn split(word: u32) -> (u32, PoisonCause) {
    match word & PANICKED {
        0 => (word, PoisonCause::Died),
        _ => (word & !PANICKED, PoisonCause::Panicked),
    }
}

impl<G> PoisonError<G> {
    pub(crate) fn new(guard: G, owner_pid: Option<i32>, cause: PoisonCause, key: Key) -> Self {
        PoisonError {
            guard,
            owner_pid,
            cause,
            key,
        }
    }

    /// Whether the first holder to break off died or panicked.
    pub fn cause(&self) -> PoisonCause {
        self.cause
    }

    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// A mutable reference to the guard.
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }

    /// The pid of the process whose critical section broke off first since the poison
    /// was last cleared (the holder that died: killed, crashed, exited while holding; or
    /// whose thread panicked: see [`cause`](PoisonError::cause)), as this
    /// process's PID namespace sees it. `None` when the kernel cannot say: the process is
    /// in a PID namespace this one cannot see (another container), or so many handles
    /// came and went since that its record was reused. Never another process's pid.
    pub fn owner_pid(&self) -> Option<i32> {
        self.owner_pid
    }
}

impl<G> fmt::Debug for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoisonError")
            .field("owner_pid", &self.owner_pid)
            .field("cause", &self.cause)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<G> fmt::Display for PoisonError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lock with key {} is poisoned: ", self.key)?;
        match (self.owner_pid, self.cause) {
            (Some(pid), PoisonCause::Died) => {
                write!(f, "process {pid} died inside the critical section")
            }
            (Some(pid), PoisonCause::Panicked) => {
                write!(
                    f,
                    "a thread of process {pid} panicked inside the critical section"
                )
            }
            (None, PoisonCause::Died) => write!(
                f,
                "a holder died inside the critical section (its pid is not visible here)"
            ),
            (None, PoisonCause::Panicked) => write!(
                f,
                "a holder panicked inside the critical section (its pid is not visible here)"
            ),
        }
    }
}

impl<G> std::error::Error for PoisonError<G> {}
