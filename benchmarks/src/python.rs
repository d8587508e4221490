//! Python with `sysv_ipc`, the competitor several comparisons share: what its users pay
//! per operation. Here, what they all need, written once: finding an interpreter that can
//! import `sysv_ipc` ([`Python::find`]), running it in a forked worker of a [`Team`] (so
//! bounded by its watchdog, and killed if the parent gives up) with its output captured
//! ([`Python::spawn`], [`Capture`]), and System V objects under fresh keys, since
//! `sysv_ipc` opens them by key ([`fresh`], [`Owned`]).
//!
//! The interpreter: `$SHMSEM_PYTHON`, else the interop tests' virtual environment
//! (`target/interop-venv/bin/python`, which `cargo test --test interop` makes). A
//! benchmark that finds neither skips its Python row or column with a note; it never
//! fails for it.

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use shmsem::{ErrorKind, Key, Segment, SemaphoreSet};

use crate::Res;
use crate::machine::pin;
use crate::os::check_rc;
use crate::procs::Team;

/// How long the check that an interpreter can import sysv_ipc may take.
const PROBE_BOUND: Duration = Duration::from_secs(30);

/// An interpreter that can import `sysv_ipc`.
pub struct Python {
    python: CString,
    /// `sysv_ipc X / Python Y`, for the heading.
    pub version: String,
    /// Where the interpreter is.
    pub path: PathBuf,
}

impl Python {
    /// The first interpreter that can import sysv_ipc: `$SHMSEM_PYTHON`, then the interop
    /// tests' virtual environment (`target/interop-venv`); `Err(why not)` if none.
    pub fn find() -> Result<Python, String> {
        let mut tried = Vec::new();
        for candidate in candidates() {
            if !candidate.exists() {
                tried.push(format!("{} (missing)", candidate.display()));
                continue;
            }
            match probe(&candidate) {
                Ok(version) => {
                    let python = CString::new(candidate.as_os_str().as_bytes())
                        .map_err(|e| e.to_string())?;
                    return Ok(Python {
                        python,
                        version,
                        path: candidate,
                    });
                }
                Err(why) => tried.push(format!("{}: {why}", candidate.display())),
            }
        }
        Err(format!(
            "no Python that can import sysv_ipc (tried: {}; set SHMSEM_PYTHON, or run \
             `cargo test --test interop`, which makes target/interop-venv)",
            if tried.is_empty() {
                "none".into()
            } else {
                tried.join("; ")
            }
        ))
    }

    /// Forks a worker in `team` that runs `python args...` with its stdout (and stderr if
    /// `stderr_too`) into `out`, pinned to `cpu` if given. It does not wait at the team's
    /// gate: the script synchronises itself if it must.
    pub fn spawn(
        &self,
        team: &mut Team,
        args: &[String],
        out: &Capture,
        stderr_too: bool,
        cpu: Option<usize>,
    ) -> Res<()> {
        spawn(team, &self.python, args, out, stderr_too, cpu)
    }
}

/// The interpreters to try, in order.
fn candidates() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(p) = std::env::var_os("SHMSEM_PYTHON") {
        found.push(PathBuf::from(p));
    }
    // This program is <target>/<profile>/<name>.
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    found.push(target.join("interop-venv/bin/python"));
    found
}

/// Can `python` import sysv_ipc? Its version line if so, what it said if not.
fn probe(python: &Path) -> Result<String, String> {
    let run = || -> Res<String> {
        let out = Capture::new()?;
        let mut team = Team::new(PROBE_BOUND)?;
        let code = "import sys, sysv_ipc; \
                    print('sysv_ipc', sysv_ipc.VERSION, '/ Python', sys.version.split()[0])";
        let python = CString::new(python.as_os_str().as_bytes())?;
        spawn(
            &mut team,
            &python,
            &["-c".into(), code.into()],
            &out,
            true,
            None,
        )?;
        team.release();
        let status = team.wait();
        let text = out.read()?;
        match status {
            Ok(()) => Ok(text.trim().to_string()),
            Err(_) => Err(text
                .lines()
                .last()
                .unwrap_or("failed")
                .trim()
                .to_string()
                .into()),
        }
    };
    run().map_err(|e| e.to_string())
}

fn spawn(
    team: &mut Team,
    python: &CString,
    args: &[String],
    out: &Capture,
    stderr_too: bool,
    cpu: Option<usize>,
) -> Res<()> {
    // Everything exec needs, made before the fork.
    let args: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()?;
    let mut argv: Vec<*const libc::c_char> = vec![python.as_ptr()];
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let fd = out.0.as_raw_fd();
    team.spawn(|_gate| {
        if let Some(cpu) = cpu {
            pin(cpu)?;
        }
        // SAFETY: dup2 onto this process's standard descriptors (a fresh copy of `fd`,
        // without close-on-exec); execv gets a NUL-terminated path and a NULL-terminated
        // array of NUL-terminated strings, all alive here, and returns only on failure.
        unsafe {
            check_rc("dup2", libc::dup2(fd, 1))?;
            if stderr_too {
                check_rc("dup2", libc::dup2(fd, 2))?;
            }
            libc::execv(python.as_ptr(), argv.as_ptr());
        }
        Err(format!(
            "exec {}: {}",
            python.to_string_lossy(),
            std::io::Error::last_os_error()
        )
        .into())
    })
}

/// An anonymous file (memfd) that a child writes its output into; read after it exits.
pub struct Capture(File);

impl Capture {
    pub fn new() -> Res<Capture> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags.
        let fd = check_rc("memfd_create", unsafe {
            libc::memfd_create(c"shmsem-benchmarks".as_ptr(), libc::MFD_CLOEXEC)
        })?;
        // SAFETY: a fresh descriptor, ours.
        Ok(Capture(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Everything written so far.
    pub fn read(&self) -> Res<String> {
        let mut file = &self.0;
        file.seek(SeekFrom::Start(0))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text)
    }
}

/// A System V object this program made, removed when dropped (a failure is printed).
pub struct Owned<T: Removable>(pub T);

/// What [`Owned`] can remove.
pub trait Removable {
    fn remove_object(&self) -> shmsem::Result<()>;
    /// `semaphore set 32769`, for messages.
    fn describe(&self) -> String;
}

impl Removable for SemaphoreSet {
    fn remove_object(&self) -> shmsem::Result<()> {
        self.remove()
    }

    fn describe(&self) -> String {
        format!("semaphore set {}", self.id())
    }
}

impl Removable for Segment {
    fn remove_object(&self) -> shmsem::Result<()> {
        self.remove()
    }

    fn describe(&self) -> String {
        format!("shared memory segment {}", self.id())
    }
}

impl<T: Removable> Drop for Owned<T> {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove_object() {
            eprintln!("{}: removing {}: {e}", crate::program(), self.0.describe());
        }
    }
}

/// Keys handed out so far by [`fresh`] in this process.
static KEYS: AtomicU32 = AtomicU32::new(0);

/// An object made by `create` (which must create exclusively) under a fresh key: `0x7c`
/// then 14 bits of our pid and 10 of a counter, the next one tried while a key is taken
/// (never anyone else's object opened or removed).
pub fn fresh<T: Removable>(mut create: impl FnMut(Key) -> shmsem::Result<T>) -> Res<Owned<T>> {
    let pid = std::process::id() & 0x3fff;
    loop {
        let n = KEYS.fetch_add(1, Ordering::Relaxed);
        if n >= 0x400 {
            return Err("no free System V key in 1024 tries".into());
        }
        let key = Key::from_raw((0x7c00_0000 | (pid << 10) | n) as i32);
        match create(key) {
            Ok(object) => return Ok(Owned(object)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
