//! The Python row: the same ping-pong with two System V semaphores (one set of one each)
//! driven from Python through `sysv_ipc` (`pingpong.py`, beside this file), two
//! interpreters forked and exec'd by the harness's [`Team`] (so bounded by its watchdog,
//! and killed if the parent gives up). The parent makes both sets (exclusive, under keys
//! of its own, since `sysv_ipc` opens semaphores by key) and removes them on drop; it
//! checks that both sides did every round trip, that no handoff arrived before it was
//! sent, and that both semaphores are 0 at the end.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmsem::{ErrorKind, Key, SemaphoreSet};
use shmsem_benchmarks::Res;
use shmsem_benchmarks::machine::pin;
use shmsem_benchmarks::os::check_rc;
use shmsem_benchmarks::procs::Team;

use crate::sides::{PING, PONG, Plan, RUN_WATCHDOG, Sample, WAIT_BOUND, hung, side_name};

const SCRIPT: &str = include_str!("pingpong.py");
/// How long the check that an interpreter can import sysv_ipc may take.
const PROBE_BOUND: Duration = Duration::from_secs(30);

/// The interpreter, and the two semaphore sets (`sems[s]` is acquired by side `s`).
pub struct Python {
    python: CString,
    /// `sysv_ipc X, Python Y`, for the heading.
    pub version: String,
    /// Where the interpreter is.
    pub path: PathBuf,
    sems: [RemovedOnDrop; 2],
}

struct RemovedOnDrop(SemaphoreSet);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!(
                "{}: removing semaphore set {}: {e}",
                shmsem_benchmarks::program(),
                self.0.id()
            );
        }
    }
}

/// A set of one semaphore under a fresh key: `0x7c` then 14 bits of our pid and 10 of a
/// counter, the next one tried while a key is taken (never anyone else's set removed).
fn fresh_set(counter: &mut u32) -> Res<RemovedOnDrop> {
    let pid = std::process::id() & 0x3fff;
    while *counter < 0x400 {
        let key = Key::from_raw((0x7c00_0000 | (pid << 10) | *counter) as i32);
        *counter += 1;
        match SemaphoreSet::create(key, 1, 0o600) {
            Ok(set) => return Ok(RemovedOnDrop(set)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err("no free semaphore key in 1024 tries".into())
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
                    return Python::new(candidate, version).map_err(|e| e.to_string());
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

    fn new(path: PathBuf, version: String) -> Res<Python> {
        let mut counter = 0;
        Ok(Python {
            python: CString::new(path.as_os_str().as_bytes())?,
            version,
            path,
            sems: [fresh_set(&mut counter)?, fresh_set(&mut counter)?],
        })
    }

    /// One run.
    pub fn run(&self, plan: &Plan) -> Res<Sample> {
        for s in &self.sems {
            s.0.set_value(0, 0)?;
        }
        let outputs = [Capture::new()?, Capture::new()?];
        let mut team = Team::new(RUN_WATCHDOG)?;
        for me in [PING, PONG] {
            let args = [
                "-c".to_string(),
                SCRIPT.to_string(),
                side_name(me).to_string(),
                self.sems[me].0.key().as_raw().to_string(),
                self.sems[1 - me].0.key().as_raw().to_string(),
                plan.warm.to_string(),
                plan.rounds.to_string(),
            ];
            spawn(
                &mut team,
                &self.python,
                &args,
                &outputs[me],
                false,
                plan.cpu(me),
            )?;
        }
        team.release();
        team.wait().map_err(|e| hung("sysv_ipc", e))?;
        for (s, set) in self.sems.iter().enumerate() {
            let value = set.0.value(0)?;
            if value != 0 {
                return Err(format!(
                    "sysv_ipc: WRONG COUNT: {}'s semaphore is {value} after the run, not 0",
                    side_name(s)
                )
                .into());
            }
        }
        let [ping, pong] = outputs;
        let ping =
            Report::parse(&ping.read()?, plan).map_err(|e| format!("sysv_ipc, ping: {e}"))?;
        let pong =
            Report::parse(&pong.read()?, plan).map_err(|e| format!("sysv_ipc, pong: {e}"))?;
        let mut deltas = Vec::with_capacity(2 * plan.rounds as usize);
        // Ping to pong, then pong to ping: round i's receipt minus its sending.
        for (from, to) in [(&ping, &pong), (&pong, &ping)] {
            for (i, (&sent, &got)) in from.sent.iter().zip(&to.got).enumerate() {
                if got < sent {
                    return Err(format!(
                        "sysv_ipc: round {i}: a handoff arrived before it was sent \
                         ({sent} > {got} ns): a semaphore gave a turn twice"
                    )
                    .into());
                }
                if got - sent >= WAIT_BOUND.as_nanos() as u64 {
                    return Err(format!(
                        "sysv_ipc: LOST WAKE-UP: round {i}: a handoff took {:.1?}",
                        Duration::from_nanos(got - sent)
                    )
                    .into());
                }
                deltas.push(got - sent);
            }
        }
        if ping.window.1 <= ping.window.0 {
            return Err("sysv_ipc: ping reported no time window".into());
        }
        Ok(Sample::new(
            plan.rounds,
            ping.window.1 - ping.window.0,
            deltas,
        ))
    }
}

/// The interpreters to try, in order.
fn candidates() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Some(p) = std::env::var_os("SHMSEM_PYTHON") {
        found.push(PathBuf::from(p));
    }
    // This program is <target>/<profile>/condvar_compare.
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

/// Forks a process in `team` that runs `python args...` with its stdout (and stderr if
/// `stderr_too`) into `out`, pinned to `cpu` if given.
fn spawn(
    team: &mut Team,
    python: &CStr,
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
struct Capture(File);

impl Capture {
    fn new() -> Res<Capture> {
        // SAFETY: memfd_create takes a NUL-terminated name and flags.
        let fd = check_rc("memfd_create", unsafe {
            libc::memfd_create(c"condvar_compare".as_ptr(), libc::MFD_CLOEXEC)
        })?;
        // SAFETY: a fresh descriptor, ours.
        Ok(Capture(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    fn read(&self) -> Res<String> {
        let mut file = &self.0;
        file.seek(SeekFrom::Start(0))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text)
    }
}

/// What one Python side printed.
struct Report {
    /// Ping's timed window (0s for pong).
    window: (u64, u64),
    sent: Vec<u64>,
    got: Vec<u64>,
}

impl Report {
    fn parse(text: &str, plan: &Plan) -> Res<Report> {
        let mut done = None;
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        let mut window = (0, 0);
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let head = words.next();
            let numbers: Vec<u64> = words.map(str::parse).collect::<Result<_, _>>()?;
            match (head, numbers.as_slice()) {
                (Some("done"), &[n, start, end]) => {
                    done = Some(n);
                    window = (start, end);
                }
                (Some("sent"), _) => sent = numbers,
                (Some("got"), _) => got = numbers,
                _ => return Err(format!("unexpected output: {line:.80}").into()),
            }
        }
        if done != Some(plan.total()) {
            return Err(format!(
                "WRONG COUNT: {done:?} round trips done, expected {}",
                plan.total()
            )
            .into());
        }
        let n = plan.rounds as usize;
        if sent.len() != n || got.len() != n {
            return Err(format!(
                "{} send and {} receive stamps, expected {n} each",
                sent.len(),
                got.len()
            )
            .into());
        }
        Ok(Report { window, sent, got })
    }
}
