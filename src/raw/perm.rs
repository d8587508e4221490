//! Permissions of System V objects: the creation-mode checks both kinds share (bits
//! outside `0o777`; the seed's pitfall, an owner with neither read nor write), and
//! `IPC_SET` (owner, group, mode after creation) for segments and semaphore sets alike.

use crate::error::{Error, ErrorKind, Result, Target};

/// Refuses mode bits outside the permission bits `0o777`.
pub(crate) fn check_mode(call: &'static str, target: Target, mode: u32) -> Result<()> {
    if mode & !0o777 != 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            call,
            target,
            format!("mode {mode:#o} has bits outside the permission bits 0o777"),
        ));
    }
    Ok(())
}

/// The seed tutorial's pitfall: `shmget(key, size, IPC_CREAT)` without permission bits
/// makes an object its own owner cannot use. A creation mode that gives the owner neither
/// read nor write (`mode & 0o600 == 0`) is refused unless `allowed`, naming `option`, the
/// call that allows it.
/// Bits outside `0o777` are refused first ([`check_mode`]).
pub(crate) fn check_owner_access(
    call: &'static str,
    target: Target,
    mode: u32,
    allowed: bool,
    option: &'static str,
) -> Result<()> {
    check_mode(call, target, mode)?;
    if allowed || mode & 0o600 != 0 {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        call,
        target,
        format!(
            "mode {mode:#05o} gives the owner neither read nor write permission: only a \
             privileged process (root) could open or use the object, not even the program \
             that made it once this handle is gone (shmget/semget with IPC_CREAT and no \
             permission bits); give the owner access (e.g. 0o600), or ask for exactly this \
             with {option}"
        ),
    ))
}

/// What an `IPC_SET` changes: `None` keeps the object's current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PermChange {
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) mode: Option<u32>,
}

impl PermChange {
    pub(crate) fn owner(uid: u32, gid: u32) -> Self {
        PermChange {
            uid: Some(uid),
            gid: Some(gid),
            mode: None,
        }
    }

    pub(crate) fn mode(mode: u32) -> Self {
        PermChange {
            mode: Some(mode),
            ..PermChange::default()
        }
    }

    pub(crate) fn all(uid: u32, gid: u32, mode: u32) -> Self {
        PermChange {
            uid: Some(uid),
            gid: Some(gid),
            mode: Some(mode),
        }
    }

    fn is_complete(&self) -> bool {
        self.uid.is_some() && self.gid.is_some() && self.mode.is_some()
    }
}

/// An object's `ipc_perm`, the part `IPC_SET` is about.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Perm {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) cuid: u32,
    /// The permission bits only.
    pub(crate) mode: u32,
}

impl Perm {
    /// From the kernel's `ipc_perm` (`IPC_STAT`).
    pub(crate) fn of(p: &libc::ipc_perm) -> Perm {
        Perm {
            uid: p.uid,
            gid: p.gid,
            cuid: p.cuid,
            mode: u32::from(p.mode) & 0o777,
        }
    }

    /// `stat`'s answer, or for a caller `IPC_STAT` refuses (an owner who took its own
    /// read permission away) the object's row in /proc/sysvipc, which lists every
    /// object's owner and mode to everyone: `row()` gives `(uid, gid, cuid, mode)`.
    pub(crate) fn stat_or_row(
        stat: std::result::Result<libc::ipc_perm, i32>,
        row: impl FnOnce() -> Option<(u32, u32, u32, u32)>,
    ) -> std::result::Result<Perm, i32> {
        match stat {
            Ok(p) => Ok(Perm::of(&p)),
            Err(libc::EACCES) => row()
                .map(|(uid, gid, cuid, mode)| Perm {
                    uid,
                    gid,
                    cuid,
                    mode: mode & 0o777,
                })
                .ok_or(libc::EACCES),
            Err(errno) => Err(errno),
        }
    }
}

/// `set_owner`, `set_mode` and `set_owner_and_mode` for a type whose `self$recv` has a
/// `change_perm(call, PermChange)`, written once for `Segment`, `SemaphoreSet` and every
/// managed pair. `$what` names the object(s) in the docs, `$note` adds what is particular
/// to the type, and errors name `$name::set_owner` and so on.
macro_rules! perm_setters {
    ($name:literal, $what:literal, $note:literal, [$($recv:tt)*]) => {
        #[doc = concat!("Hands ", $what, " to another user and group (`IPC_SET` of `uid` \
            and `gid`; the mode stays). The creator (`cuid`) never changes: it keeps the \
            right to change owner and mode and to remove the object, and the owner's \
            permission bits apply to it as to the owner. ", $note)]
        ///
        /// # Errors
        /// `PermissionDenied` for a process that is neither the owner nor the creator
        /// and lacks `CAP_SYS_ADMIN` (the message names both uids); `InvalidInput` for uid
        /// or gid `u32::MAX` or ids this user namespace cannot map; `Removed`.
        pub fn set_owner(&self, uid: u32, gid: u32) -> $crate::Result<()> {
            let change = $crate::raw::perm::PermChange::owner(uid, gid);
            self$($recv)*.change_perm(concat!($name, "::set_owner"), change)
        }

        #[doc = concat!("Changes the permission bits of ", $what, " (`IPC_SET`; owner \
            and group stay), e.g. `0o660` to let the owner's group in. Any mode up to \
            `0o777` is accepted, even one that locks the owner out: unlike at creation \
            that can be undone, because `IPC_SET` asks for ownership, not permission \
            bits. Semaphore permissions are checked at every operation, segment ones at \
            every attach.")]
        ///
        /// # Errors
        /// As `set_owner`; `InvalidInput` for bits outside `0o777`.
        pub fn set_mode(&self, mode: u32) -> $crate::Result<()> {
            let change = $crate::raw::perm::PermChange::mode(mode);
            self$($recv)*.change_perm(concat!($name, "::set_mode"), change)
        }

        #[doc = concat!("Owner, group and permission bits of ", $what, " in one `IPC_SET` \
            each.")]
        ///
        /// # Errors
        /// As `set_owner` and `set_mode`.
        pub fn set_owner_and_mode(&self, uid: u32, gid: u32, mode: u32) -> $crate::Result<()> {
            let change = $crate::raw::perm::PermChange::all(uid, gid, mode);
            self$($recv)*.change_perm(concat!($name, "::set_owner_and_mode"), change)
        }
    };
}
pub(crate) use perm_setters;

/// How one kind of object does `IPC_STAT` and `IPC_SET`.
pub(crate) struct IpcSet<'a> {
    /// The public call, named by every error (`"Segment::set_owner"`).
    pub(crate) call: &'static str,
    /// The system call, named in the reason (`"shmctl(IPC_SET)"`).
    pub(crate) syscall: &'static str,
    pub(crate) target: Target,
    pub(crate) stat: &'a dyn Fn() -> std::result::Result<Perm, i32>,
    pub(crate) set: &'a dyn Fn(u32, u32, u32) -> std::result::Result<(), i32>,
}

impl IpcSet<'_> {
    /// Checks `change`, fills in what it keeps from the object, and applies it with one
    /// `IPC_SET`.
    pub(crate) fn apply(&self, change: PermChange) -> Result<()> {
        let invalid =
            |why: String| Error::new(ErrorKind::InvalidInput, self.call, self.target, why);
        if let Some(mode) = change.mode {
            check_mode(self.call, self.target, mode)?;
        }
        for (name, id) in [("uid", change.uid), ("gid", change.gid)] {
            if id == Some(u32::MAX) {
                return Err(invalid(format!(
                    "{name} 4294967295 (-1) is not an id: chown's \"unchanged\" has no meaning \
                     for IPC_SET; pass the current {name}"
                )));
            }
        }
        let (uid, gid, mode) = if change.is_complete() {
            (change.uid, change.gid, change.mode)
        } else {
            let now = (self.stat)().map_err(|errno| {
                Error::sysv("IPC_STAT", self.target, errno, ErrorKind::Removed).in_call(self.call)
            })?;
            (
                Some(change.uid.unwrap_or(now.uid)),
                Some(change.gid.unwrap_or(now.gid)),
                Some(change.mode.unwrap_or(now.mode)),
            )
        };
        let (uid, gid, mode) = (uid.unwrap_or(0), gid.unwrap_or(0), mode.unwrap_or(0));
        (self.set)(uid, gid, mode).map_err(|errno| self.error(errno, uid, gid))
    }

    #[cold]
    fn error(&self, errno: i32, uid: u32, gid: u32) -> Error {
        let exists = (self.stat)();
        let reason = match errno {
            libc::EPERM => {
                // SAFETY: geteuid has no preconditions.
                let me = unsafe { libc::geteuid() };
                let who = match exists {
                    Ok(p) => format!("the owner (uid {}) or the creator (uid {})", p.uid, p.cuid),
                    Err(_) => "the owner or the creator".to_string(),
                };
                format!(
                    "{}: only {who} may change owner, group or mode, or a process with \
                     CAP_SYS_ADMIN; this process runs as uid {me}",
                    self.syscall
                )
            }
            // EINVAL on an object that is still there: ids this user namespace cannot map.
            libc::EINVAL if matches!(exists, Ok(_) | Err(libc::EACCES)) => {
                return Error::explained(
                    self.call,
                    self.target,
                    errno,
                    ErrorKind::InvalidInput,
                    format!(
                        "{}: uid {uid} or gid {gid} has no mapping in this user namespace",
                        self.syscall
                    ),
                );
            }
            _ => {
                return Error::sysv(self.syscall, self.target, errno, ErrorKind::Removed)
                    .in_call(self.call);
            }
        };
        Error::explained(
            self.call,
            self.target,
            errno,
            ErrorKind::PermissionDenied,
            reason,
        )
    }
}
