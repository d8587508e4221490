//! Worker processes: forked by the parent, held at a start gate until all are ready,
//! released together, awaited with a deadline; killed and reaped if the parent gives up,
//! so none outlives the objects it uses.
//!
//! The gate is a pipe whose write end only the parent holds: a worker waits for EOF on it,
//! which comes for every process and thread at once when the parent closes that end (no
//! sleeps). A second pipe carries one "ready" byte from each worker process.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::Res;
use crate::interrupt::check_interrupted;
use crate::os::{pipe, readable_polls, retry_eintr};

/// How long a [`Team`] may take from its start to the end of its last worker, unless
/// told otherwise: a hung worker fails the program instead of hanging it.
pub const WATCHDOG: Duration = Duration::from_secs(300);

/// A worker process's ends of the two pipes. `Copy`: every thread of the worker may wait
/// at the gate.
#[derive(Clone, Copy)]
pub struct Gate {
    gate: RawFd,
    ready: RawFd,
}

impl Gate {
    /// Blocks until the parent opens the gate.
    pub fn wait(&self) -> Res<()> {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into `byte`.
        let n = retry_eintr("reading the start gate", || unsafe {
            libc::read(self.gate, (&raw mut byte).cast(), 1)
        })?;
        match n {
            0 => Ok(()),
            _ => Err("unexpected data on the start gate".into()),
        }
    }

    /// Tells the parent this process is ready, and closes the ready pipe. Once per
    /// process, by one thread.
    pub fn ready(&self) -> Res<()> {
        let byte = b'r';
        // SAFETY: writes one byte from `byte`.
        let result = retry_eintr("writing to the ready pipe", || unsafe {
            libc::write(self.ready, (&raw const byte).cast(), 1)
        });
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.ready) };
        result.map(drop)
    }
}

/// Worker processes forked from this one, held at one gate.
///
/// The parent must be single-threaded while it forks. Every worker ends with `_exit`, so
/// the parent's objects, inherited through fork, are never dropped (removed) by a child.
pub struct Team {
    /// First, so that it drops first: on an error the workers are killed before the
    /// gate's closing could let them go.
    children: Children,
    /// The gate's write end; `None` once the gate is open.
    gate_write: Option<OwnedFd>,
    gate_read: OwnedFd,
    /// The ready pipe's write end; `None` once the parent waits for ready bytes.
    ready_write: Option<OwnedFd>,
    ready_read: OwnedFd,
    deadline: Instant,
}

impl Team {
    /// An empty team whose workers must all have ended within `watchdog` from now.
    pub fn new(watchdog: Duration) -> Res<Team> {
        let (gate_read, gate_write) = pipe()?;
        let (ready_read, ready_write) = pipe()?;
        Ok(Team {
            children: Children(Vec::new()),
            gate_write: Some(gate_write),
            gate_read,
            ready_write: Some(ready_write),
            ready_read,
            deadline: Instant::now() + watchdog,
        })
    }

    /// Forks one worker process that runs `body(gate)`; it exits 0 if that returns
    /// `Ok`, 1 (after printing the error) if not, 101 if it panics. `body` waits at the
    /// gate itself ([`Gate::wait`]), and may tell the parent it is ready first.
    pub fn spawn(&mut self, body: impl FnOnce(Gate) -> Res<()>) -> Res<()> {
        // Nothing buffered may be duplicated into the child.
        let _ = std::io::stdout().flush();
        // SAFETY: the caller is single-threaded (see the type's docs), so the child gets a
        // consistent copy of every lock; it ends with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()).into());
        }
        if pid == 0 {
            self.run_child(body);
        }
        self.children.push(pid);
        Ok(())
    }

    /// The child's side of [`Team::spawn`]: never returns.
    fn run_child(&self, body: impl FnOnce(Gate) -> Res<()>) -> ! {
        // SAFETY: restoring default dispositions and closing the parent's pipe ends (in
        // this process only) have no preconditions.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            if let Some(write) = &self.gate_write {
                libc::close(write.as_raw_fd());
            }
            libc::close(self.ready_read.as_raw_fd());
        }
        let ends = Gate {
            gate: self.gate_read.as_raw_fd(),
            ready: self.ready_write.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        };
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(ends))) {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                eprintln!(
                    "{}: worker process {}: {e}",
                    crate::program(),
                    std::process::id()
                );
                1
            }
            Err(_) => 101,
        };
        // SAFETY: ends the child without running the parent's destructors or flushing its
        // copies of the parent's buffers.
        unsafe { libc::_exit(code) }
    }

    /// Waits for one ready byte from every worker process ([`Gate::ready`]).
    pub fn wait_ready(&mut self) -> Res<()> {
        self.ready_write = None; // so that the read sees EOF if every worker is gone
        let procs = self.children.0.len();
        let fd = self.ready_read.as_raw_fd();
        let mut got = 0;
        while got < procs {
            poll_readable(&mut [fd], self.deadline)?;
            let mut buf = [0u8; 64];
            let want = (procs - got).min(buf.len());
            // SAFETY: reads at most `want` <= buf.len() bytes into buf.
            let n = retry_eintr("reading the ready pipe", || unsafe {
                libc::read(fd, buf.as_mut_ptr().cast(), want)
            })?;
            if n == 0 {
                return Err("a worker process failed before the start (see above)".into());
            }
            got += n as usize;
        }
        Ok(())
    }

    /// Opens the gate: every worker waiting at it goes.
    pub fn release(&mut self) {
        self.gate_write = None;
    }

    /// Waits for every worker to exit; an error if one did not exit with 0.
    pub fn wait(&mut self) -> Res<()> {
        self.children.wait_all(self.deadline)
    }

    /// [`Team::wait`], giving up after `grace` at the latest (the workers left are
    /// killed when the team drops).
    pub fn wait_within(&mut self, grace: Duration) -> Res<()> {
        self.deadline = self.deadline.min(Instant::now() + grace);
        self.wait()
    }

    /// Forks `procs` workers running `body(index, gate)`, releases them together once
    /// all are ready (each calls [`Gate::ready`], then [`Gate::wait`]), and waits for
    /// every one to exit successfully, all within [`WATCHDOG`].
    pub fn run(procs: usize, body: impl Fn(usize, Gate) -> Res<()>) -> Res<()> {
        let mut team = Team::new(WATCHDOG)?;
        for index in 0..procs {
            team.spawn(|gate| body(index, gate))?;
        }
        team.wait_ready()?;
        team.release();
        team.wait()
    }
}

/// Waits until at least one of `fds` is readable (entries that are not are set to -1),
/// failing at `deadline` or on Ctrl-C.
fn poll_readable(fds: &mut [RawFd], deadline: Instant) -> Res<()> {
    let mut pollfds = readable_polls(fds);
    loop {
        check_interrupted()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(
                "the worker processes did not finish in time: is something hung? \
                        (they are killed)"
                    .into(),
            );
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: pollfds is a valid array of pollfds.len() entries.
        let rc = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
        if rc > 0 {
            for (fd, p) in fds.iter_mut().zip(&pollfds) {
                if p.revents == 0 {
                    *fd = -1;
                }
            }
            return Ok(());
        }
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(format!("poll: {err}").into());
            }
        }
    }
}

struct Child {
    pid: libc::pid_t,
    /// For waiting with a deadline; `None` if pidfd_open is unavailable (then: no watchdog).
    pidfd: Option<OwnedFd>,
    reaped: bool,
}

/// The worker processes. Dropping it kills and reaps any not yet reaped (on an error or
/// Ctrl-C), so none outlives the objects it uses.
struct Children(Vec<Child>);

impl Children {
    fn push(&mut self, pid: libc::pid_t) {
        // SAFETY: pidfd_open takes a pid and flags; it works on a child until it is reaped.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        self.0.push(Child {
            pid,
            // SAFETY: a fresh descriptor, ours.
            pidfd: (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            reaped: false,
        });
    }

    fn wait_all(&mut self, deadline: Instant) -> Res<()> {
        let mut failures = Vec::new();
        loop {
            let pending: Vec<usize> = (0..self.0.len()).filter(|&i| !self.0[i].reaped).collect();
            if pending.is_empty() {
                break;
            }
            let mut fds: Vec<RawFd> = pending
                .iter()
                .map(|&i| self.0[i].pidfd.as_ref().map_or(-1, |fd| fd.as_raw_fd()))
                .collect();
            if fds.iter().all(|&fd| fd >= 0) {
                poll_readable(&mut fds, deadline)?;
            } // else: no pidfds, a plain blocking wait below
            for (&i, &fd) in pending.iter().zip(&fds) {
                if fd < 0 && self.0[i].pidfd.is_some() {
                    continue; // not exited yet
                }
                let child = &mut self.0[i];
                let mut status = 0;
                // SAFETY: waits for our own child; writes its status into `status`.
                while unsafe { libc::waitpid(child.pid, &mut status, 0) } < 0 {
                    let err = std::io::Error::last_os_error();
                    if err.raw_os_error() != Some(libc::EINTR) {
                        return Err(format!("waitpid({}): {err}", child.pid).into());
                    }
                    check_interrupted()?;
                }
                child.reaped = true;
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    failures.push(describe_status(child.pid, status));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("worker processes failed: {}", failures.join(", ")).into())
        }
    }
}

fn describe_status(pid: libc::pid_t, status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("{pid} exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("{pid} killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("{pid} ended with wait status {status:#x}")
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in self.0.iter_mut().filter(|c| !c.reaped) {
            // SAFETY: signals and reaps our own, unreaped child (its pid cannot have been
            // reused while it is a zombie we have not waited for).
            unsafe {
                libc::kill(child.pid, libc::SIGKILL);
                let mut status = 0;
                while libc::waitpid(child.pid, &mut status, 0) < 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {
                }
            }
            child.reaped = true;
        }
    }
}
