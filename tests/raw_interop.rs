//! Interop of `IPC_SET` with Python's `sysv_ipc`: a segment and a semaphore set whose
//! owner and mode shmsem changed are read by Python (as the new owner, and refused to a
//! stranger), and objects whose owner and mode Python changed are read by shmsem (and by
//! a child that became the new owner).
//!
//! The Python is `$SHMSEM_PYTHON`, or the virtual environment tests/interop.rs provisions
//! (`<target>/interop-venv`, made by `cargo test --test interop`; CI sets `SHMSEM_PYTHON`).
//! Every Python run is bounded and killed if it does not finish.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::{BOUND, Pipe, TestKey, fork, fork_as_nobody};
use shmsem::{ErrorKind, Segment, SemaphoreSet};

const NOBODY: u32 = 65534;
const STRANGER: u32 = 4242;

/// A python that can `import sysv_ipc`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SHMSEM_PYTHON") {
        return PathBuf::from(p);
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let venv = tmp.parent().unwrap().join("interop-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with sysv_ipc: set SHMSEM_PYTHON, or run `cargo test --test interop` once \
         (it makes {})",
        venv.display()
    );
    venv
}

/// Python's first lines: switch to the uid and gid given as the first two arguments once
/// the interpreter and sysv_ipc are loaded (the interpreter may live where only root can
/// read, e.g. under /root/.pyenv), then go on with the script's arguments.
const PRELUDE: &str = r#"
import os, sys, sysv_ipc
uid, gid = int(sys.argv[1]), int(sys.argv[2])
if os.getuid() != uid:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
del sys.argv[1:3]
"#;

/// Runs `script` (Python source) with `args`, as `uid`/`gid` (no supplementary groups),
/// at most [`BOUND`]; returns (exit code, stdout, stderr).
fn run_python(uid: u32, gid: u32, script: &str, args: &[String]) -> (i32, String, String) {
    let python = python();
    let mut cmd = Command::new(&python);
    cmd.arg("-c")
        .arg(format!("{PRELUDE}{script}"))
        .arg(uid.to_string())
        .arg(gid.to_string())
        .args(args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let pid = child.id() as i32;
    let (done, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(BOUND).is_err() {
            // SAFETY: a signal to our own child, not yet reaped (the main thread reaps it
            // only after this thread's verdict is in, through `done`).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let err = err_reader.join().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), out, err)
}

/// `run_python`, which must succeed; returns its stdout's `name=value` lines.
#[track_caller]
fn python_ok(uid: u32, gid: u32, script: &str, args: &[String]) -> Vec<(String, String)> {
    let (code, out, err) = run_python(uid, gid, script, args);
    assert_eq!(code, 0, "python (uid {uid}) failed:\n{err}");
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("python printed no {name}: {fields:?}"))
}

/// Python reading a segment and a semaphore set by key: owner, mode, bytes, value.
const READ_BOTH: &str = r#"
key = int(sys.argv[1])
try:
    mem = sysv_ipc.SharedMemory(key)
except sysv_ipc.PermissionsError as e:
    print("shm=denied")
    sys.exit(0)
print(f"shm_uid={mem.uid}")
print(f"shm_gid={mem.gid}")
print(f"shm_cuid={mem.cuid}")
print(f"shm_mode={mem.mode & 0o777:o}")
print(f"data={mem.read(19).decode()}")
mem.write(b"python was here", 100)
mem.detach()
sem = sysv_ipc.Semaphore(key)
print(f"sem_uid={sem.uid}")
print(f"sem_mode={sem.mode & 0o777:o}")
print(f"sem_value={sem.value}")
sem.release()
"#;

#[test]
fn python_reads_objects_whose_owner_and_mode_shmsem_changed() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 4096, 0o600).unwrap();
    let set = SemaphoreSet::create(tk.key(), 1, 0o600).unwrap();
    seg.write_all_at(b"owned by nobody now", 0).unwrap();
    set.set_values(&[3]).unwrap();
    seg.set_owner_and_mode(NOBODY, NOBODY, 0o640).unwrap();
    set.set_owner_and_mode(NOBODY, NOBODY, 0o660).unwrap();

    let args = [tk.key().as_raw().to_string()];
    // The new owner, in Python: sees the new owner and mode, reads, writes, posts.
    let f = python_ok(NOBODY, NOBODY, READ_BOTH, &args);
    assert_eq!(field(&f, "shm_uid"), "65534");
    assert_eq!(field(&f, "shm_gid"), "65534");
    assert_eq!(field(&f, "shm_cuid"), "0");
    assert_eq!(field(&f, "shm_mode"), "640");
    assert_eq!(field(&f, "data"), "owned by nobody now");
    assert_eq!(field(&f, "sem_uid"), "65534");
    assert_eq!(field(&f, "sem_mode"), "660");
    assert_eq!(field(&f, "sem_value"), "3");
    let mut buf = [0u8; 15];
    seg.read_exact_at(&mut buf, 100).unwrap();
    assert_eq!(&buf, b"python was here");
    assert_eq!(set.value(0).unwrap(), 4);

    // A stranger, in Python: the mode shmsem set keeps it out.
    let f = python_ok(STRANGER, STRANGER, READ_BOTH, &args);
    assert_eq!(field(&f, "shm"), "denied");

    seg.remove().unwrap();
    set.remove().unwrap();
}

/// Python creating both objects as root, then handing them to nobody with new modes.
const CREATE_AND_HAND_OVER: &str = r#"
key = int(sys.argv[1])
mem = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREX, 0o600, 4096)
mem.write(b"written by python", 0)
mem.uid = 65534
mem.gid = 65534
mem.mode = 0o604
mem.detach()
sem = sysv_ipc.Semaphore(key, sysv_ipc.IPC_CREX, 0o600, 5)
sem.uid = 65534
sem.mode = 0o640
print(f"shm_id={mem.id}")
print(f"sem_id={sem.id}")
"#;

#[test]
fn shmsem_reads_objects_whose_owner_and_mode_python_changed() {
    let tk = TestKey::new();
    let key = tk.key();
    // SAFETY: getgid has no preconditions.
    let my_gid = unsafe { libc::getgid() };
    let f = python_ok(0, 0, CREATE_AND_HAND_OVER, &[key.as_raw().to_string()]);

    let seg = Segment::open(key).unwrap();
    assert_eq!(field(&f, "shm_id"), seg.id().to_string());
    let info = seg.info().unwrap();
    assert_eq!((info.uid, info.gid, info.cuid), (NOBODY, NOBODY, 0));
    assert_eq!(info.permissions(), 0o604);
    let mut buf = [0u8; 17];
    seg.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"written by python");
    let set = SemaphoreSet::open(key).unwrap();
    assert_eq!(field(&f, "sem_id"), set.id().to_string());
    let info = set.info().unwrap();
    assert_eq!((info.uid, info.gid, info.cuid), (NOBODY, my_gid, 0));
    assert_eq!(info.permissions(), 0o640);
    assert_eq!(set.value(0).unwrap(), 5);

    // The new owner opens both with shmsem; a stranger reads the segment (others: 4) but
    // may not touch the set (others: 0).
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        let code = |ok: bool, bit: i32| if ok { 0 } else { bit };
        let seg = Segment::open(key);
        let mut buf = [0u8; 17];
        let read = seg
            .as_ref()
            .is_ok_and(|s| s.read_exact_at(&mut buf, 0).is_ok() && &buf == b"written by python");
        let set = SemaphoreSet::open(key);
        let value = set.as_ref().is_ok_and(|s| s.value(0).ok() == Some(5));
        pipe.send_i32(code(read, 1) | code(value, 2));
        0
    });
    assert_eq!(
        pipe.recv_i32(),
        0,
        "nobody could not use what Python gave it"
    );
    assert_eq!(child.join(), 0);
    let pipe = Pipe::new();
    let child = fork(|| {
        // SAFETY: plain syscalls on this (child) process.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            libc::setgid(STRANGER);
            libc::setuid(STRANGER);
        }
        let ro = Segment::open_read_only(key).is_ok();
        let rw = Segment::open(key).map_err(|e| e.kind());
        let set = SemaphoreSet::open(key).map_err(|e| e.kind());
        let ok = ro
            && rw.err() == Some(ErrorKind::PermissionDenied)
            && set.err() == Some(ErrorKind::PermissionDenied);
        pipe.send_i32(i32::from(!ok));
        0
    });
    assert_eq!(
        pipe.recv_i32(),
        0,
        "a stranger's access did not follow Python's modes"
    );
    assert_eq!(child.join(), 0);

    seg.remove().unwrap();
    set.remove().unwrap();
}
