//! A process named by a pid, for display: whether `kill(2)` and `/proc` say it is there,
//! as this PID namespace sees it. Only ever shown, and used by [`gc`](super::gc) as a
//! conservative policy on a pair's creator (a pid it cannot check, or one reused, keeps
//! the pair); never used to decide whether a lock holder is alive (leases do that).

use std::fmt;

use crate::error::last_errno;

/// Whether a process is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// It exists (`kill(pid, 0)` succeeds or says `EPERM`) and is not a zombie.
    Alive,
    /// No such process (`ESRCH`), or a zombie: it has exited and will never act again.
    Dead,
    /// Not a pid this namespace can check (0 or negative: a creator in another PID
    /// namespace, or a word that holds no pid).
    Unknown,
}

/// A pid and whether that process is alive, checked when the value was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    /// The pid.
    pub pid: i32,
    /// Whether it was alive when checked.
    pub liveness: Liveness,
}

impl Process {
    /// Checks the process with this pid now (`kill(pid, 0)`, then `/proc/<pid>/stat` for
    /// a zombie). A pid of 0 or below is never passed to `kill` (which would address
    /// process groups): it is [`Liveness::Unknown`].
    pub fn check(pid: i32) -> Process {
        let liveness = if pid <= 0 {
            Liveness::Unknown
        } else if !process_exists(pid) {
            Liveness::Dead
        } else {
            match std::fs::read(format!("/proc/{pid}/stat")) {
                Ok(stat) if is_zombie(&stat) => Liveness::Dead,
                _ => Liveness::Alive,
            }
        };
        Process { pid, liveness }
    }

    /// Was it alive?
    pub fn is_alive(&self) -> bool {
        self.liveness == Liveness::Alive
    }

    /// Was it known to be gone?
    pub fn is_dead(&self) -> bool {
        self.liveness == Liveness::Dead
    }

    pub(super) fn unknown() -> Process {
        Process {
            pid: 0,
            liveness: Liveness::Unknown,
        }
    }
}

impl fmt::Display for Process {
    /// `1234 (alive)`, `1234 (dead)`; a pid this namespace cannot see: `? (alive; ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.liveness {
            Liveness::Alive => "alive",
            Liveness::Dead => "dead",
            Liveness::Unknown => "unknown",
        };
        match self.pid {
            pid if pid > 0 => write!(f, "{pid} ({state})"),
            _ => write!(
                f,
                "? ({state}; its pid is not visible in this PID namespace)"
            ),
        }
    }
}

/// Does a process with this pid exist in this PID namespace? (Display only.)
fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || last_errno() != libc::ESRCH
}

/// `/proc/<pid>/stat` is `pid (comm) S ...`; `comm` may itself contain `)`.
fn is_zombie(stat: &[u8]) -> bool {
    stat.iter()
        .rposition(|&b| b == b')')
        .and_then(|i| stat.get(i + 2))
        .is_some_and(|&s| s == b'Z' || s == b'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombie_detection_reads_past_odd_command_names() {
        assert!(is_zombie(b"12 (a) b) Z 1 2"));
        assert!(!is_zombie(b"12 (a) Z) S 1 2"));
        assert!(!is_zombie(b"garbage"));
        assert_eq!(Process::check(0).liveness, Liveness::Unknown);
        assert_eq!(Process::check(-1).liveness, Liveness::Unknown);
        assert!(Process::check(std::process::id() as i32).is_alive());
    }
}
