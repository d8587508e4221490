//! Interop with real clients: Python (`sysv_ipc`, from PyPI) and Perl (`IPC::SysV`) programs
//! share objects with shmsem, through the raw layer (a bare segment and semaphore set) and
//! through the managed format of docs/FORMAT.md (a `SharedMutex<u64>`, and a
//! `SharedCondvar` waited on and notified beside it).
//!
//! The clients live in tests/interop/. Python's `sysv_ipc` is installed into a virtual
//! environment, `<target>/interop-venv`, the first time a test needs it (PyPI must be
//! reachable then); if that fails, the tests fail and say why. Set `SHMSEM_PYTHON` to a
//! python that can `import sysv_ipc` to skip the provisioning.
//!
//! Every wait is bounded; a client that does not finish in time is killed and the test
//! fails with what the client wrote to stderr.

mod common;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{BOUND, Exit, Pipe, TestKey, fork, poll_readable, wait_until};
use shmsem::{ErrorKind, Key, LockError, Segment, SemOp, SemaphoreSet, SharedCondvar, SharedMutex};

/// Increments per client.
const K: u64 = 10_000;
/// Bound for a client's whole counting run (thousands of contended lock hand-overs).
const RUN_BOUND: Duration = Duration::from_secs(120);
/// Bounds for provisioning the virtual environment.
const VENV_BOUND: Duration = Duration::from_secs(120);
const PIP_BOUND: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// The Python with sysv_ipc.

/// A python that can `import sysv_ipc`: `$SHMSEM_PYTHON`, or the test's own virtual
/// environment, made on first use. Panics (failing the test) if there is none.
fn python() -> &'static Path {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    // get_or_init runs `provision` once; other test threads wait for it.
    match PYTHON.get_or_init(provision) {
        Ok(python) => python,
        Err(why) => panic!("no Python with sysv_ipc for the interop tests: {why}"),
    }
}

fn provision() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("SHMSEM_PYTHON") {
        let python = PathBuf::from(python);
        return match imports_sysv_ipc(&python) {
            Ok(()) => Ok(python),
            Err(why) => Err(format!(
                "SHMSEM_PYTHON={} cannot import sysv_ipc: {why}",
                python.display()
            )),
        };
    }
    let target = target_dir();
    std::fs::create_dir_all(&target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let venv = target.join("interop-venv");
    let python = venv.join("bin").join("python");
    // Another test process (a second `cargo test` on the same target directory) may be
    // provisioning right now: take a file lock around the check-and-build.
    let _lock = FileLock::acquire(&target.join("interop-venv.lock"), PIP_BOUND + VENV_BOUND)?;
    if imports_sysv_ipc(&python).is_ok() {
        return Ok(python);
    }
    // Missing, or half-made by an interrupted run: build it from scratch.
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .map_err(|e| format!("cannot remove the broken {}: {e}", venv.display()))?;
    }
    let log_path = target.join("interop-venv.log");
    File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let hint = format!(
        "(log: {}; or set SHMSEM_PYTHON to a python that has sysv_ipc)",
        log_path.display()
    );
    run_logged(
        Command::new("python3").args([OsStr::new("-m"), "venv".as_ref(), venv.as_os_str()]),
        &log_path,
        VENV_BOUND,
    )
    .map_err(|why| format!("`python3 -m venv {}` failed: {why} {hint}", venv.display()))?;
    run_logged(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--timeout",
            "60",
            "sysv_ipc",
        ]),
        &log_path,
        PIP_BOUND,
    )
    .map_err(|why| format!("`pip install sysv_ipc` failed (is PyPI reachable?): {why} {hint}"))?;
    imports_sysv_ipc(&python).map_err(|why| {
        format!("the new virtual environment cannot import sysv_ipc: {why} {hint}")
    })?;
    Ok(python)
}

/// The target directory: the parent of the `tmp` directory cargo gives integration tests.
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn imports_sysv_ipc(python: &Path) -> Result<(), String> {
    let mut child = Command::new(python)
        .args(["-c", "import sysv_ipc"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let status = wait_child(&mut child, BOUND);
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        set_nonblocking(err.as_raw_fd());
        let _ = err.read_to_string(&mut stderr);
    }
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("{s}: {}", stderr.trim())),
        None => Err(format!("`import sysv_ipc` did not finish within {BOUND:?}")),
    }
}

/// Runs `cmd` with stdout and stderr appended to `log`, at most `bound`.
fn run_logged(cmd: &mut Command, log: &Path, bound: Duration) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let _ = writeln!(file, "==> {cmd:?}");
    let err = file.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    match wait_child(&mut child, bound) {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("{s}; last lines of the log:\n{}", tail(log, 15))),
        None => Err(format!("did not finish within {bound:?} (killed)")),
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An exclusive `flock` on a file, taken within a bound, released on drop.
struct FileLock(File);

impl FileLock {
    fn acquire(path: &Path, bound: Duration) -> Result<FileLock, String> {
        let file =
            File::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let deadline = Instant::now() + bound;
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(FileLock(file));
            }
            let err = std::io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::EWOULDBLOCK | libc::EINTR)) {
                return Err(format!("flock {}: {err}", path.display()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} still locked by another provisioning after {bound:?}",
                    path.display()
                ));
            }
            // flock has no timed wait: poll the real lock.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own descriptor (closing it would too).
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

// ---------------------------------------------------------------------------------------
// Client processes.

/// Waits for `child` at most `bound`; on expiry kills and reaps it and returns `None`.
fn wait_child(child: &mut std::process::Child, bound: Duration) -> Option<ExitStatus> {
    // SAFETY: pidfd_open with the pid of our own unreaped child and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) } as i32;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor, ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if poll_readable(fd.as_raw_fd(), bound) {
        Some(child.wait().expect("waitpid"))
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor we own, with plain integer arguments.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// The interpreter a client script runs with.
#[derive(Clone, Copy, Debug)]
enum Lang {
    Python,
    Perl,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
        .join(name)
}

/// A client script run as a child process, with its stdin, stdout and stderr piped.
/// Dropping it kills and reaps the process if it is still there.
struct Client {
    name: String,
    child: std::process::Child,
    stdout_buf: Vec<u8>,
    reaped: bool,
    /// How it ended, once reaped by `wait` or `try_wait`.
    status: Option<ExitStatus>,
}

impl Client {
    fn spawn(lang: Lang, script_name: &str, args: &[String]) -> Client {
        let program: PathBuf = match lang {
            Lang::Python => python().to_path_buf(),
            Lang::Perl => "perl".into(),
        };
        let name = format!("{lang:?} {script_name} {}", args.join(" "));
        let child = Command::new(&program)
            .arg(script(script_name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Client {
            name,
            child,
            stdout_buf: Vec::new(),
            reaped: false,
            status: None,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the client wrote to stderr so far (without waiting for more).
    fn stderr_now(&mut self) -> String {
        let mut text = Vec::new();
        if let Some(err) = self.child.stderr.as_mut() {
            set_nonblocking(err.as_raw_fd());
            let _ = err.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Kills the client (if it runs) and panics with `why` and its stderr.
    fn fail(&mut self, why: &str) -> ! {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
        let stderr = self.stderr_now();
        panic!("{}: {why}\n--- its stderr ---\n{stderr}", self.name);
    }

    /// Reads one line of the client's stdout, within `bound`.
    fn read_line(&mut self, bound: Duration) -> String {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(at) = self.stdout_buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.stdout_buf.drain(..=at).collect();
                return String::from_utf8_lossy(&line).trim_end().to_string();
            }
            let fd = self
                .child
                .stdout
                .as_ref()
                .expect("stdout piped")
                .as_raw_fd();
            let left = deadline.saturating_duration_since(Instant::now());
            if !poll_readable(fd, left) {
                self.fail(&format!("wrote no line within {bound:?}"));
            }
            let mut chunk = [0u8; 256];
            match self.child.stdout.as_mut().unwrap().read(&mut chunk) {
                Ok(0) => self.fail("closed its stdout before writing a line"),
                Ok(n) => self.stdout_buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => self.fail(&format!("reading its stdout: {e}")),
            }
        }
    }

    /// Waits (at most `bound`) for the client to exit; kills it and panics if it does not.
    fn wait(&mut self, bound: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match wait_child(&mut self.child, bound) {
            Some(status) => {
                self.reaped = true;
                self.status = Some(status);
                status
            }
            None => {
                self.reaped = true;
                self.fail(&format!("did not exit within {bound:?} (killed)"))
            }
        }
    }

    /// Waits (at most `bound`) for the client to exit with status 0.
    fn expect_success(&mut self, bound: Duration) {
        let status = self.wait(bound);
        if !status.success() {
            self.fail(&format!("exited with {status}"));
        }
    }

    /// How the client ended, if it has (without waiting).
    fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() && !self.reaped {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = true;
                self.status = Some(status);
            }
        }
        self.status
    }

    /// SIGKILLs the client and reaps it.
    fn kill_and_wait(&mut self) -> ExitStatus {
        self.child.kill().expect("kill");
        self.wait(BOUND)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The start gate was not reached by every client within [`BOUND`]: kill the script
/// clients and fail with what each of them wrote to stderr. (Forked Rust children are
/// killed when their `common::Child` handles drop during the unwind.)
fn gate_failed(clients: &mut [Client], expected: usize, waiting: usize) -> ! {
    let mut report = String::new();
    for c in clients.iter_mut() {
        let _ = c.child.kill();
        let status = c.child.wait().map(|s| s.to_string()).unwrap_or_default();
        c.reaped = true;
        let stderr = c.stderr_now();
        report += &format!("\n--- {} ({status}) stderr ---\n{stderr}", c.name);
    }
    panic!(
        "only {waiting} of {expected} incrementers were waiting on the lock after {BOUND:?}{report}"
    );
}

fn key_arg(key: Key) -> String {
    key.as_raw().to_string()
}

// ---------------------------------------------------------------------------------------
// 1. The raw layer: one u64 in a bare 8-byte segment, one bare semaphore (1 = free).

/// Who creates the raw objects in a round.
#[derive(Clone, Copy, Debug)]
enum Creator {
    Python,
    Perl,
    Rust,
}

/// The Rust raw client: `k` increments with P/V + SEM_UNDO, as the scripts do.
fn rust_raw_increments(key: Key, k: u64) -> i32 {
    let (Ok(seg), Ok(sems)) = (Segment::open(key), SemaphoreSet::open(key)) else {
        return 2;
    };
    let mut bytes = [0u8; 8];
    for _ in 0..k {
        if sems.op(&[SemOp::wait(0).undo()]).is_err() {
            return 3;
        }
        if seg.read_exact_at(&mut bytes, 0).is_err() {
            return 4;
        }
        let v = u64::from_ne_bytes(bytes) + 1;
        if seg.write_all_at(&v.to_ne_bytes(), 0).is_err() {
            return 4;
        }
        if sems.op(&[SemOp::post(0).undo()]).is_err() {
            return 3;
        }
    }
    0
}

fn raw_counter_round(creator: Creator) {
    let tk = TestKey::new();
    let key = tk.key();
    // The creator creates and initialises, and is done, before any incrementer starts.
    match creator {
        Creator::Python => Client::spawn(
            Lang::Python,
            "raw_counter.py",
            &["create".into(), key_arg(key)],
        )
        .expect_success(BOUND),
        Creator::Perl => Client::spawn(
            Lang::Perl,
            "raw_counter.pl",
            &["create".into(), key_arg(key)],
        )
        .expect_success(BOUND),
        Creator::Rust => {
            Segment::create(key, 8, 0o600)
                .unwrap()
                .write_all_at(&0u64.to_ne_bytes(), 0)
                .unwrap();
            SemaphoreSet::create(key, 1, 0o600)
                .unwrap()
                .set_value(0, 1)
                .unwrap();
        }
    }
    let seg = Segment::open(key).unwrap();
    let sems = SemaphoreSet::open(key).unwrap();
    assert_eq!(seg.len(), 8, "{creator:?} made the segment");
    assert_eq!(sems.len(), 1, "{creator:?} made the semaphore set");
    assert_eq!(seg.info().unwrap().mode & 0o777, 0o600);
    assert_eq!(sems.value(0).unwrap(), 1, "{creator:?} left the lock free");
    let read = || {
        let mut b = [0u8; 8];
        seg.read_exact_at(&mut b, 0).unwrap();
        u64::from_ne_bytes(b)
    };
    assert_eq!(read(), 0, "{creator:?} initialised the counter");

    // Start gate: hold the lock while the three incrementers start, and let go once all
    // three are blocked on it, so that they really run at the same time.
    sems.op(&[SemOp::wait(0).undo()]).unwrap();
    let args = ["incr".to_string(), key_arg(key), K.to_string()];
    let mut py = Client::spawn(Lang::Python, "raw_counter.py", &args);
    let mut pl = Client::spawn(Lang::Perl, "raw_counter.pl", &args);
    let rust = fork(move || rust_raw_increments(key, K));
    if !wait_until(BOUND, || sems.wait_count(0).unwrap() == 3) {
        let waiting = sems.wait_count(0).unwrap();
        gate_failed(&mut [py, pl], 3, waiting);
    }
    sems.op(&[SemOp::post(0).undo()]).unwrap();

    py.expect_success(RUN_BOUND);
    pl.expect_success(RUN_BOUND);
    assert_eq!(rust.join(), 0, "the Rust incrementer failed");
    assert_eq!(read(), 3 * K, "objects created by {creator:?}");
    assert_eq!(sems.value(0).unwrap(), 1, "the lock is free again");
}

#[test]
fn raw_counter_created_by_python_python_perl_rust_increment() {
    raw_counter_round(Creator::Python);
}

#[test]
fn raw_counter_created_by_perl_python_perl_rust_increment() {
    raw_counter_round(Creator::Perl);
}

#[test]
fn raw_counter_created_by_rust_python_perl_rust_increment() {
    raw_counter_round(Creator::Rust);
}

// ---------------------------------------------------------------------------------------
// 2.-4. The managed format: a SharedMutex<u64> shared with clients that follow only
// docs/FORMAT.md.

const HOLDER_AT: usize = 44;
const POISON_AT: usize = 48;

/// A live word of the header: a lease token (docs/FORMAT.md, "Leases"), 0 for none.
fn live_word(m: &SharedMutex<u64>, at: usize) -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: only header bytes are read (no payload), and no guard of `m` gives `&mut`
    // to them: the live words are written by lockers, atomically, never through a guard.
    let seg = unsafe { m.segment().as_segment() };
    seg.read_exact_at(&mut b, at).unwrap();
    u32::from_ne_bytes(b)
}

/// The pid behind a lease token, read from the kernel as FORMAT.md "Which pid?" says: the
/// last pid of the token's slot's GEN semaphore, while GEN still equals the token's
/// generation. Panics if `token` is not a token of this mutex's set, or if its slot was
/// claimed again since (then the kernel no longer knows the pid).
fn token_pid(m: &SharedMutex<u64>, token: u32) -> i32 {
    const OWN: usize = 1; // the mutex's own semaphore; the lease slots follow
    let sems = m.semaphores();
    let slots = (sems.len() - OWN) / 2;
    let (slot, generation) = ((token & 0xffff) as usize, (token >> 16) as i32);
    assert!(
        (1..=slots).contains(&slot) && generation <= 32767,
        "{token:#x} is no token of a set with {slots} lease slots"
    );
    let gen_sem = OWN + 2 * (slot - 1) + 1;
    assert_eq!(
        sems.value(gen_sem).unwrap(),
        generation,
        "slot of {token:#x} claimed again"
    );
    let pid = sems.last_pid(gen_sem).unwrap();
    assert_eq!(
        sems.value(gen_sem).unwrap(),
        generation,
        "slot of {token:#x} claimed again"
    );
    pid
}

/// A forked Rust process that opens the mutex and adds 1, `k` times. Exit 3: poisoned.
fn rust_mutex_increments(key: Key, k: u64) -> common::Child {
    fork(move || {
        let Ok(m) = SharedMutex::<u64>::open(key) else {
            return 2;
        };
        for _ in 0..k {
            let mut g = match m.lock() {
                Ok(g) => g,
                Err(LockError::Poisoned(_)) => return 3,
                Err(LockError::Failed(_)) => return 4,
            };
            let v = *g;
            std::hint::black_box(&v);
            *g = v + 1;
        }
        0
    })
}

/// Counting on a `SharedMutex<u64>` by `scripts` (each K times) and `rust_procs` forked
/// Rust processes (each K times), all at once: the result is exact, and nothing is
/// poisoned.
fn managed_count(scripts: &[(Lang, &str)], rust_procs: usize) {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let n = scripts.len() + rust_procs;
    let args = ["incr".to_string(), key_arg(tk.key()), K.to_string()];
    let gate = m.lock().unwrap(); // the start gate, as in the raw test
    let mut clients: Vec<Client> = scripts
        .iter()
        .map(|&(lang, name)| Client::spawn(lang, name, &args))
        .collect();
    let rust: Vec<_> = (0..rust_procs)
        .map(|_| rust_mutex_increments(tk.key(), K))
        .collect();
    if !wait_until(BOUND, || m.semaphores().wait_count(0).unwrap() == n) {
        let waiting = m.semaphores().wait_count(0).unwrap();
        gate_failed(&mut clients, n, waiting);
    }
    drop(gate);
    for c in &mut clients {
        c.expect_success(RUN_BOUND);
    }
    for c in rust {
        assert_eq!(c.join(), 0, "a Rust incrementer failed (3: poisoned)");
    }
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock().expect("not poisoned"), n as u64 * K);
    assert_eq!((live_word(&m, HOLDER_AT), live_word(&m, POISON_AT)), (0, 0));
    assert_eq!(m.semaphores().value(0).unwrap(), 1);
}

#[test]
fn managed_mutex_python_and_two_rust_processes_count_exactly() {
    managed_count(&[(Lang::Python, "mutex_client.py")], 2);
}

#[test]
fn managed_mutex_perl_python_and_rust_count_exactly() {
    managed_count(
        &[
            (Lang::Perl, "mutex_client.pl"),
            (Lang::Python, "mutex_client.py"),
        ],
        1,
    );
}

/// A script client locks (per FORMAT.md), reports, and is SIGKILLed while holding the
/// lock: SEM_UNDO gives the semaphore back at once, and Rust's next lock is `Poisoned` in
/// the script's name, with the payload reachable.
fn killed_while_holding(lang: Lang, script_name: &str) {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 41u64).unwrap();
    let mut c = Client::spawn(lang, script_name, &["crash".into(), key_arg(tk.key())]);
    let line = c.read_line(BOUND);
    let pid: i32 = match line.strip_prefix("locked ").map(str::parse) {
        Some(Ok(pid)) => pid,
        _ => c.fail(&format!("unexpected line {line:?}")),
    };
    assert_eq!(pid, c.pid(), "the locker is the process we started");
    // It really holds the lock, recorded as the format says.
    assert_eq!(m.semaphores().value(0).unwrap(), 0);
    let token = live_word(&m, HOLDER_AT);
    assert_ne!(token, 0, "the holder word names the locker");
    assert_eq!(
        token_pid(&m, token),
        pid,
        "the holder token is the locker's lease"
    );
    match m.try_lock() {
        Err(LockError::Failed(e)) => assert_eq!(e.kind(), ErrorKind::WouldBlock),
        other => panic!("try_lock while {lang:?} holds it: {other:?}"),
    }

    let status = c.kill_and_wait();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(m.semaphores().value(0).unwrap(), 1, "SEM_UNDO released it");
    assert!(m.is_poisoned(), "a dead holder is recorded");

    let started = Instant::now();
    let poisoned = match m.lock_timeout(Duration::from_secs(20)) {
        Err(LockError::Poisoned(p)) => p,
        other => panic!("expected Poisoned, got {other:?}"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the lock came only after {:?}",
        started.elapsed()
    );
    assert_eq!(poisoned.owner_pid(), Some(pid));
    let guard = poisoned.into_inner();
    assert_eq!(*guard, 41, "the payload is reachable (and was not touched)");
    // The dead holder's token moved to the poison word, and still names it.
    assert_eq!(live_word(&m, POISON_AT), token);
    assert_eq!(token_pid(&m, token), pid);
    m.clear_poison();
    drop(guard);
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock().expect("no longer poisoned"), 41);
    assert_eq!((live_word(&m, HOLDER_AT), live_word(&m, POISON_AT)), (0, 0));
}

#[test]
fn python_killed_holding_the_mutex_poisons_it_for_rust() {
    killed_while_holding(Lang::Python, "mutex_client.py");
}

#[test]
fn perl_killed_holding_the_mutex_poisons_it_for_rust() {
    killed_while_holding(Lang::Perl, "mutex_client.pl");
}

/// The other direction: a Rust process is SIGKILLed holding the lock; the Python client
/// (FORMAT.md only) finds the poison with the dead holder's token, reports its pid (from
/// the lease, as FORMAT.md "Which pid?" says), clears it, and Rust then locks cleanly.
#[test]
fn rust_killed_holding_the_mutex_poisons_it_for_python() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 7u64).unwrap();
    let locked = Pipe::new();
    let release = Pipe::new();
    let key = tk.key();
    let mut holder = fork(|| {
        let Ok(m) = SharedMutex::<u64>::open(key) else {
            return 2;
        };
        let Ok(g) = m.lock() else {
            return 3;
        };
        locked.send(&[1]);
        // Hold the lock until killed (bounded: the parent kills us or the bound ends).
        let mut b = [0u8];
        let _ = release.recv_timeout(&mut b, BOUND);
        drop(g);
        4
    });
    assert_eq!(locked.recv_byte(), 1);
    let token = live_word(&m, HOLDER_AT);
    assert_ne!(token, 0, "the holder word names the locker");
    assert_eq!(
        token_pid(&m, token),
        holder.pid,
        "the holder token is the child's lease"
    );
    holder.kill(libc::SIGKILL);
    assert_eq!(
        holder.wait_timeout(BOUND),
        common::Exit::Signal(libc::SIGKILL)
    );

    let mut py = Client::spawn(
        Lang::Python,
        "mutex_client.py",
        &["check".into(), key_arg(tk.key())],
    );
    let line = py.read_line(BOUND);
    py.expect_success(BOUND);
    assert_eq!(line, format!("poisoned_by {} value 7", holder.pid));
    assert!(!m.is_poisoned(), "Python cleared the poison");
    assert_eq!(*m.lock().expect("not poisoned"), 7);
}

// ---------------------------------------------------------------------------------------
// 5. The condvar: a SharedCondvar beside a SharedMutex<u64>, waited on and notified by
// Python (tests/interop/condvar_client.py, written from docs/FORMAT.md alone) and by
// Rust processes and threads at once.

/// The condvar's own semaphores (`WAKE(i)`), before its lease slots.
const CV_OWN: usize = 256;

/// A `SharedMutex<u64>` (the shared state) and a `SharedCondvar`, under keys of our own.
struct CvPair {
    _keys: (TestKey, TestKey),
    mutex: SharedMutex<u64>,
    cv: SharedCondvar,
}

impl CvPair {
    fn new() -> CvPair {
        let keys = (TestKey::new(), TestKey::new());
        let mutex = SharedMutex::create(keys.0.key(), 0u64).unwrap();
        let cv = SharedCondvar::create(keys.1.key()).unwrap();
        CvPair {
            _keys: keys,
            mutex,
            cv,
        }
    }

    /// Runs condvar_client.py `mode` on this pair with further arguments `rest`.
    fn python(&self, mode: &str, rest: &[String]) -> Client {
        let mut args = vec![
            mode.to_string(),
            key_arg(self.mutex.key()),
            key_arg(self.cv.key()),
        ];
        args.extend_from_slice(rest);
        Client::spawn(Lang::Python, "condvar_client.py", &args)
    }

    /// A Python client that waits (at most `timeout`) for the value to be non-zero and
    /// takes 1 from it; returned once it sleeps in the kernel (see `await_asleep`).
    fn python_taker(&self, timeout: Duration) -> Client {
        let mut c = self.python("take", &[timeout.as_secs_f64().to_string()]);
        self.await_asleep(&mut c);
        c
    }

    /// Reads the client's "waiting SLOT" line and waits (bounded) until it sleeps on
    /// `WAKE(SLOT)` (the kernel counts it waiting for the semaphore to grow).
    fn await_asleep(&self, c: &mut Client) -> usize {
        let line = c.read_line(BOUND);
        let slot: usize = match line.strip_prefix("waiting ").map(str::parse) {
            Some(Ok(slot)) if slot < CV_OWN => slot,
            _ => c.fail(&format!("unexpected line {line:?}")),
        };
        let sems = self.cv.semaphores();
        if !wait_until(BOUND, || sems.wait_count(slot).unwrap() == 1) {
            c.fail(&format!("not asleep on WAKE({slot}) after {BOUND:?}"));
        }
        slot
    }

    /// Waits (bounded) until exactly `n` waits are registered.
    fn await_waiters(&self, n: usize) {
        assert!(
            wait_until(BOUND, || self.cv.waiters().unwrap() == n),
            "expected {n} registered waiters, have {}",
            self.cv.waiters().unwrap()
        );
    }

    /// Adds `n` to the state under the mutex (before a notification).
    fn post(&self, n: u64) {
        *self.mutex.lock().expect("not poisoned") += n;
    }

    fn value(&self) -> u64 {
        *self.mutex.lock().expect("not poisoned")
    }

    /// Nothing is left behind: no wait registered, no wake-up pending, and once a Rust
    /// notifier has passed (it clears the words of gone waits, which the Python client,
    /// having no compare-and-swap, leaves), no waiter word set.
    fn assert_clean(&self) {
        self.await_waiters(0);
        self.cv.notify_all().unwrap();
        let values = self.cv.semaphores().values().unwrap();
        assert!(
            values[..CV_OWN].iter().all(|&v| v == 0),
            "a wake-up was left pending: {:?}",
            &values[..CV_OWN]
        );
        assert!(
            values[CV_OWN..].iter().step_by(2).all(|&v| v == 0),
            "a lease slot is still held"
        );
        assert!(
            cv_words(&self.cv).iter().all(|&w| w == 0),
            "waiter words left set: {:?}",
            cv_words(&self.cv)
        );
    }
}

/// The condvar's waiter words (docs/FORMAT.md, "Condvar": 256 u32 at the payload).
fn cv_words(cv: &SharedCondvar) -> Vec<u32> {
    let mut bytes = vec![0u8; 4 * CV_OWN];
    // SAFETY: a read of the payload's words; no guard of a condvar exists.
    let seg = unsafe { cv.segment().as_segment() };
    seg.read_exact_at(&mut bytes, 64).unwrap();
    bytes
        .chunks(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

/// The client's next line that is not a "waiting SLOT" announcement.
fn result_line(c: &mut Client) -> String {
    loop {
        let line = c.read_line(BOUND);
        if !line.starts_with("waiting ") {
            return line;
        }
    }
}

/// A Python taker's number of notified wake-ups, from its "took N" line.
fn took(c: &mut Client) -> u32 {
    let line = result_line(c);
    match line.strip_prefix("took ").map(str::parse) {
        Some(Ok(n)) => n,
        _ => c.fail(&format!("unexpected line {line:?}")),
    }
}

/// A Rust waiter: waits (bounded) for the value to be non-zero and takes 1 from it.
/// 0: done; 2: timed out; 3: poisoned; 4: another error.
fn rust_taker(p: &CvPair) -> i32 {
    let Ok(g) = p.mutex.lock() else {
        return 3;
    };
    match p.cv.wait_timeout_while(g, BOUND, |v| *v == 0) {
        Ok((mut g, r)) if !r.timed_out() => {
            *g -= 1;
            0
        }
        Ok(_) => 2,
        Err(LockError::Poisoned(_)) => 3,
        Err(_) => 4,
    }
}

/// A Rust notifier wakes Python waiters: `notify_one` reaches exactly one of them (twice),
/// `notify_all` the rest; no waiter is woken twice (the wake-ups add up to 4).
#[test]
fn condvar_rust_notify_one_wakes_exactly_one_python_waiter_and_notify_all_the_rest() {
    let p = CvPair::new();
    let mut waiters: Vec<Client> = (0..4)
        .map(|k| {
            let c = p.python_taker(BOUND);
            p.await_waiters(k + 1);
            c
        })
        .collect();
    for round in 0..2 {
        p.post(1);
        p.cv.notify_one().unwrap();
        let done = wait_until(BOUND, || {
            waiters.iter_mut().filter_map(Client::try_wait).count() == round + 1
        });
        assert!(done, "round {round}: notify_one woke no Python waiter");
        // The others are still registered, the value taken.
        p.await_waiters(3 - round);
        assert_eq!(p.value(), 0);
    }
    p.post(2);
    p.cv.notify_all().unwrap();
    let mut wakeups = 0;
    for c in &mut waiters {
        c.expect_success(BOUND);
        wakeups += took(c);
    }
    assert_eq!(wakeups, 4, "each Python waiter was woken exactly once");
    assert_eq!(p.value(), 0);
    p.assert_clean();
}

/// A Python notifier wakes Rust waiters (two forked processes and a thread): its
/// notify-one reaches exactly one, its notify-all the other two.
#[test]
fn condvar_python_notify_one_and_notify_all_wake_rust_processes_and_a_thread() {
    let p = CvPair::new();
    let mut children: Vec<common::Child> = (0..2)
        .map(|k| {
            let c = fork(|| rust_taker(&p));
            p.await_waiters(k + 1);
            c
        })
        .collect();
    std::thread::scope(|s| {
        let thread = s.spawn(|| rust_taker(&p));
        p.await_waiters(3);
        let mut exits: Vec<Option<Exit>> = vec![None; children.len()];
        let mut finished = |exits: &mut Vec<Option<Exit>>| {
            for (c, e) in children.iter_mut().zip(exits.iter_mut()) {
                if e.is_none() {
                    *e = c.try_wait_timeout(Duration::ZERO);
                }
            }
            exits.iter().filter(|e| e.is_some()).count() + usize::from(thread.is_finished())
        };

        let mut py = p.python("post", &["1".into(), "one".into()]);
        let line = py.read_line(BOUND);
        py.expect_success(BOUND);
        assert_eq!(line, "notified 1", "Python's notify-one reached one wait");
        assert!(
            wait_until(BOUND, || finished(&mut exits) == 1),
            "no Rust waiter got through"
        );
        p.await_waiters(2);
        assert_eq!(p.value(), 0);

        let mut py = p.python("post", &["2".into(), "all".into()]);
        let line = py.read_line(BOUND);
        py.expect_success(BOUND);
        assert_eq!(line, "notified 2", "Python's notify-all reached both waits");
        assert!(
            wait_until(BOUND, || finished(&mut exits) == 3),
            "a Rust waiter was not woken"
        );
        assert!(
            exits.iter().all(|e| *e == Some(Exit::Code(0))),
            "Rust waiters: {exits:?} (2: timed out)"
        );
        assert_eq!(thread.join().unwrap(), 0, "the Rust thread waiter");
    });
    assert_eq!(p.value(), 0);
    p.assert_clean();
}

/// Participants `0..langs.len()` take turns (participant `me` moves the value on when
/// `value % n == me`) until the value is `n * rounds`, each wait bounded: a lost wake-up
/// fails the test. Python participants and forked Rust processes, notifying one or all.
fn mixed_ring(python: &[bool], rounds: u64, all: bool) {
    let p = CvPair::new();
    let n = python.len() as u64;
    let total = n * rounds;
    let how = if all { "all" } else { "one" };
    let mut clients = Vec::new();
    let mut children = Vec::new();
    for (me, &is_python) in (0u64..).zip(python) {
        if is_python {
            let rest = [me, n, total].map(|v| v.to_string());
            let mut args = rest.to_vec();
            args.extend([how.to_string(), BOUND.as_secs().to_string()]);
            clients.push(p.python("ring", &args));
        } else {
            let p = &p;
            children.push(fork(move || {
                loop {
                    let Ok(g) = p.mutex.lock() else {
                        return 3;
                    };
                    let Ok((mut g, r)) =
                        p.cv.wait_timeout_while(g, BOUND, |v| *v % n != me && *v < total)
                    else {
                        return 3;
                    };
                    if r.timed_out() {
                        return 2; // a lost wake-up
                    }
                    if *g >= total {
                        return 0;
                    }
                    *g += 1;
                    drop(g);
                    let sent = if all {
                        p.cv.notify_all()
                    } else {
                        p.cv.notify_one()
                    };
                    if sent.is_err() {
                        return 4;
                    }
                }
            }));
        }
    }
    for c in &mut clients {
        c.expect_success(RUN_BOUND);
        let line = c.read_line(BOUND);
        if !line.starts_with("done ") {
            c.fail(&format!("unexpected line {line:?}"));
        }
    }
    for mut c in children {
        assert_eq!(
            c.wait_timeout(RUN_BOUND),
            Exit::Code(0),
            "a Rust participant failed (2: timed out waiting for its turn)"
        );
    }
    assert_eq!(p.value(), total);
    p.assert_clean();
}

#[test]
fn condvar_ring_of_two_python_and_two_rust_processes_notify_all_300_rounds() {
    mixed_ring(&[true, false, true, false], 300, true);
}

#[test]
fn condvar_python_and_rust_hand_the_turn_to_each_other_500_times_with_notify_one() {
    mixed_ring(&[true, false], 500, false);
}

/// Python waiters SIGKILLed while asleep in the wait are deregistered by the kernel, so a
/// Rust `notify_one` is never swallowed by them: it reaches the live waiter (Python and
/// Rust in turn), every round.
#[test]
fn condvar_python_waiters_killed_waiting_do_not_swallow_a_rust_notify_one() {
    let p = CvPair::new();
    for round in 0..6 {
        // Registered first, so that the dead are where notify_one starts looking.
        let mut dead: Vec<Client> = (0..3)
            .map(|k| {
                let c = p.python_taker(BOUND);
                p.await_waiters(k + 1);
                c
            })
            .collect();
        let python_live = round % 2 == 0;
        let mut live_py = python_live.then(|| p.python_taker(BOUND));
        let live_rust = (!python_live).then(|| fork(|| rust_taker(&p)));
        p.await_waiters(4);
        for c in &mut dead {
            assert_eq!(c.kill_and_wait().signal(), Some(libc::SIGKILL));
        }
        p.await_waiters(1);
        p.post(1);
        p.cv.notify_one().unwrap();
        if let Some(c) = &mut live_py {
            c.expect_success(BOUND);
            assert_eq!(took(c), 1, "round {round}: the live Python waiter");
        }
        if let Some(c) = live_rust {
            assert_eq!(c.join(), 0, "round {round}: the live Rust waiter");
        }
        p.await_waiters(0);
        assert_eq!(p.value(), 0);
    }
    p.assert_clean();
}

/// A Rust process dies holding the mutex the Python waiters wait with: a notify_all
/// still wakes them, and each re-acquires the mutex poisoned in the dead one's name.
#[test]
fn condvar_python_waiters_of_a_rust_holder_killed_inside_are_woken_and_see_poison() {
    let p = CvPair::new();
    let mut waiters: Vec<Client> = (0..2)
        .map(|k| {
            let c = p.python_taker(BOUND);
            p.await_waiters(k + 1);
            c
        })
        .collect();
    let locked = Pipe::new();
    let release = Pipe::new();
    let mut holder = fork(|| {
        let Ok(mut g) = p.mutex.lock() else {
            return 3;
        };
        *g = 2;
        locked.send(b"h");
        // Hold the lock until killed (bounded).
        let mut b = [0u8];
        let _ = release.recv_timeout(&mut b, BOUND);
        4
    });
    assert_eq!(locked.recv_byte(), b'h');
    holder.kill(libc::SIGKILL);
    assert_eq!(holder.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
    p.cv.notify_all().unwrap();
    for c in &mut waiters {
        let line = result_line(c);
        assert_eq!(line, format!("poisoned {}", holder.pid));
        assert_eq!(c.wait(BOUND).code(), Some(3), "exit 3: poisoned");
    }
    assert!(p.mutex.is_poisoned());
    p.mutex.clear_poison();
    assert_eq!(p.value(), 2, "the Python waiters left the value alone");
    p.assert_clean();
}

/// A Python wait times out, giving its slot back (W5); `remove` wakes Python waiters at
/// once with "removed", without their taking the mutex again.
#[test]
fn condvar_python_wait_times_out_and_remove_wakes_python_waiters() {
    let p = CvPair::new();
    let mut c = p.python_taker(Duration::from_millis(200));
    assert_eq!(result_line(&mut c), "timeout");
    assert_eq!(c.wait(BOUND).code(), Some(2));
    p.assert_clean();

    let mut waiters: Vec<Client> = (0..2)
        .map(|k| {
            let c = p.python_taker(BOUND);
            p.await_waiters(k + 1);
            c
        })
        .collect();
    p.cv.remove().unwrap();
    for c in &mut waiters {
        assert_eq!(result_line(c), "removed");
        assert_eq!(c.wait(Duration::from_secs(5)).code(), Some(4));
    }
    assert!(p.mutex.try_lock().is_ok(), "the mutex was not taken again");
}
