//! What the binary's tests share: the workspace's test support (`shmsem-test-common`:
//! keys that clean up, forked children with bounded waits, pipes), running the binary
//! with a bound, reading its JSON back, and a tmux server of the test's own for the
//! live view. Each test file uses part of it.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::Value;
pub use shmsem_test_common::*;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shmsem-inspect");

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output as one JSON document (one line).
    pub fn json(&self) -> Value {
        let lines = self.json_lines();
        assert_eq!(lines.len(), 1, "not one JSON line: {self:?}");
        lines.into_iter().next().unwrap()
    }

    /// Standard output as JSON Lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
            .collect()
    }
}

/// Runs the binary, bounded by [`BOUND`].
pub fn inspect(args: &[&str]) -> Run {
    run_bin(args, None)
}

/// Runs the binary as `uid` (and the group of that number), bounded by [`BOUND`].
pub fn inspect_as(args: &[&str], uid: u32) -> Run {
    run_bin(args, Some(uid))
}

fn run_bin(args: &[&str], as_user: Option<u32>) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(id) = as_user {
        // std drops root's supplementary groups when it changes the uid.
        cmd.uid(id).gid(id);
    }
    let mut child = cmd.spawn().expect("spawn shmsem-inspect");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).ok();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    // SAFETY: pidfd_open with our own unreaped child's pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) } as i32;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if !poll_readable(fd.as_raw_fd(), BOUND) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("shmsem-inspect {args:?} did not finish within {BOUND:?}");
    }
    let status = child.wait().unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    eprintln!(
        "$ shmsem-inspect {}\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

pub fn hex(key: shmsem::Key) -> String {
    key.to_string()
}

/// The line of `text` that mentions `needle` (panics if none).
pub fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// The element of a JSON array whose `field` is `value`.
pub fn find<'a>(array: &'a Value, field: &str, value: &Value) -> &'a Value {
    array
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {array}"))
        .iter()
        .find(|v| &v[field] == value)
        .unwrap_or_else(|| panic!("no element with {field} = {value} in {array}"))
}

/// The pids in a JSON array of objects with a `pid` field, sorted.
pub fn pids(array: &Value) -> Vec<i64> {
    let mut v: Vec<i64> = array
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["pid"].as_i64().unwrap())
        .collect();
    v.sort();
    v
}

/// Re-checks `cond` every few milliseconds until it holds, at most `timeout`: for state
/// with no wait primitive (a screen, a kernel counter). It never assumes, it looks.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A tmux server of this test's own (its own socket, in the temporary directory),
/// running one command in a detached session of a fixed size. Killed (and its socket
/// removed) when dropped, also when the test fails.
pub struct Tmux {
    socket: std::path::PathBuf,
}

static SERVERS: AtomicU32 = AtomicU32::new(0);

impl Tmux {
    /// Starts `command` (a shell command line) in a `cols` x `rows` window, followed by
    /// a line with its exit status.
    pub fn start(command: &str, cols: u16, rows: u16) -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        assert!(
            version.is_ok_and(|o| o.status.success()),
            "tmux is needed for the live view's tests (apt-get install tmux; .ci/run installs it)"
        );
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let t = Tmux {
            socket: std::env::temp_dir().join(format!(
                "shmsem-inspect-test-{}-{n}.tmux",
                std::process::id()
            )),
        };
        let (cols, rows) = (cols.to_string(), rows.to_string());
        // Then the shell waits for a line that never comes, so the pane (and what the
        // command left on it) stays until the server is killed: tmux 3.3 can lose a dead
        // pane's last output.
        let command = format!("{command}; echo \"{EXIT_MARK}$?]\"; read _");
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &cols,
            "-y",
            &rows,
            &command,
        ]);
        t
    }

    /// Runs a tmux command on this server; its standard output.
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits (bounded by [`BOUND`]) until the screen satisfies `cond`; the screen then.
    pub fn wait_for(&self, what: &str, mut cond: impl FnMut(&str) -> bool) -> String {
        let mut screen = String::new();
        let seen = poll_until(BOUND, || {
            screen = self.screen();
            cond(&screen)
        });
        assert!(
            seen,
            "the screen never showed {what} within {BOUND:?}:\n{screen}"
        );
        screen
    }

    /// Types keys (tmux key names: `q`, `C-c`, `Space`).
    pub fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "t", keys]);
    }

    /// The command's exit status once it has ended (bounded by [`BOUND`]), as the shell
    /// that ran it printed it.
    pub fn exit_status(&self) -> i32 {
        let screen = self.wait_for("the command's exit status", |s| s.contains(EXIT_MARK));
        let at = screen.find(EXIT_MARK).unwrap() + EXIT_MARK.len();
        let digits: String = screen[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("an exit status")
    }
}

/// What the shell prints after the command: `[exit status N]`.
const EXIT_MARK: &str = "[exit status ";

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The server leaves its socket behind when killed.
        let _ = std::fs::remove_file(&self.socket);
    }
}
