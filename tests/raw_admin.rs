//! The raw layer's administration calls (issue 16), against real kernel objects:
//! ownership and mode after creation (`IPC_SET`) on segments, semaphore sets and every
//! managed object; the refused creation mode that would lock the owner out; `SETALL`;
//! attaching at a chosen address (`SHM_RND`); locking in memory (`SHM_LOCK`); huge pages
//! and `SHM_NORESERVE`; the system's limits (`IPC_INFO`) and the errors that name them.
//!
//! Permissions are checked from forked children that gave up root (root bypasses every
//! check) and against what `ipcs` prints. Tests that change machine-wide state (the huge
//! page pool, one user's locked-memory count) run one at a time (`#[serial]`) and put the
//! old state back, also when they fail. Limits are lowered only inside a child's own IPC
//! namespace, so no other process sees them. Nothing sleeps to synchronise: children are
//! awaited with bounds, handshakes go through pipes, and `wait_until` polls kernel
//! counters only.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::{BOUND, Exit, Pipe, TestKey, fork, fork_as_nobody, key_in_use, wait_until};
use serial_test::serial;
use shmsem::{
    AttachFlags, ErrorKind, HugePageSize, Key, Queue, Segment, SemOp, SemaphoreSet, SharedCondvar,
    SharedMutex, SharedRwLock,
};

const NOBODY: u32 = 65534;
/// A uid and gid that own nothing here: neither owner nor creator of any test object.
const STRANGER: u32 = 4242;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// [`fork`], the child switching to `uid`/`gid` (no supplementary groups) first.
fn fork_as(uid: u32, gid: u32, f: impl FnOnce() -> i32) -> common::Child {
    fork(move || {
        // SAFETY: plain syscalls on this (child) process.
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setgid(gid), 0);
            assert_eq!(libc::setuid(uid), 0);
        }
        f()
    })
}

/// What a child reports about one call: `Ok`, or the error's kind and text.
#[derive(Debug)]
struct Outcome {
    label: String,
    kind: Option<String>,
    text: String,
}

impl Outcome {
    #[track_caller]
    fn ok(&self) {
        assert!(
            self.kind.is_none(),
            "{}: expected Ok, got {self:?}",
            self.label
        );
    }

    #[track_caller]
    fn err(&self, kind: ErrorKind) -> &str {
        assert_eq!(
            self.kind.as_deref(),
            Some(format!("{kind:?}").as_str()),
            "{}: {self:?}",
            self.label
        );
        &self.text
    }
}

/// A child's side of the report channel: one line per call.
fn report<T>(pipe: &Pipe, label: &str, r: &shmsem::Result<T>) {
    let line = match r {
        Ok(_) => format!("{label}\tOk\t"),
        Err(e) => format!("{label}\t{:?}\t{e}", e.kind()),
    };
    pipe.send(&(line.len() as u32).to_ne_bytes());
    pipe.send(line.as_bytes());
}

/// The parent's side: `n` reports, by label.
fn outcomes(pipe: &Pipe, n: usize) -> HashMap<String, Outcome> {
    (0..n)
        .map(|_| {
            let mut len = [0u8; 4];
            assert!(
                pipe.recv_timeout(&mut len, BOUND),
                "no report from the child"
            );
            let mut buf = vec![0u8; u32::from_ne_bytes(len) as usize];
            assert!(pipe.recv_timeout(&mut buf, BOUND), "a report was cut short");
            let line = String::from_utf8(buf).unwrap();
            let mut parts = line.splitn(3, '\t');
            let label = parts.next().unwrap().to_string();
            let kind = parts.next().unwrap();
            let text = parts.next().unwrap_or("").to_string();
            let kind = (kind != "Ok").then(|| kind.to_string());
            (label.clone(), Outcome { label, kind, text })
        })
        .collect()
}

/// Runs `program args`, at most [`BOUND`] (killed after), and returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let pid = child.id() as i32;
    let (done, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(BOUND).is_err() {
            // SAFETY: a signal to our own child, not yet reaped (the main thread reaps it
            // only after this thread's verdict is in, through `done`).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{program} {args:?}: {status}");
    out
}

/// The row `ipcs -m` (`flag` "-m") or `ipcs -s` ("-s") prints for IPC id `id`: key, id,
/// owner, perms, then bytes/nattch/status or nsems.
fn ipcs_row(flag: &str, id: i32) -> Vec<String> {
    let out = run("ipcs", &[flag]);
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.len() >= 4 && cols[1] == id.to_string())
        .unwrap_or_else(|| panic!("ipcs {flag} lists no id {id}:\n{out}"))
}

/// The `name=value` fields of `ipcs -m -i ID` / `ipcs -s -i ID` (uid, gid, cuid, cgid,
/// mode, access_perms, ...).
fn ipcs_detail(flag: &str, id: i32) -> HashMap<String, String> {
    let out = run("ipcs", &[flag, "-i", &id.to_string()]);
    out.split_whitespace()
        .filter_map(|tok| {
            let (k, v) = tok.split_once('=')?;
            Some((k.to_string(), v.trim_end_matches(',').to_string()))
        })
        .collect()
}

/// Owner column as ipcs prints it for uid 65534.
fn is_nobody(owner: &str) -> bool {
    owner == "nobody" || owner == "65534"
}

#[track_caller]
fn assert_ipcs_owner_mode(flag: &str, id: i32, uid: u32, gid: u32, mode: u32) {
    let d = ipcs_detail(flag, id);
    assert_eq!(
        d.get("uid"),
        Some(&uid.to_string()),
        "ipcs {flag} -i {id}: {d:?}"
    );
    assert_eq!(
        d.get("gid"),
        Some(&gid.to_string()),
        "ipcs {flag} -i {id}: {d:?}"
    );
    assert_eq!(
        d.get("cuid"),
        Some(&"0".to_string()),
        "ipcs {flag} -i {id}: {d:?}"
    );
    assert_eq!(
        d.get("mode"),
        Some(&format!("{mode:04o}")),
        "ipcs {flag} -i {id}: {d:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 1. IPC_SET on the raw objects
// ---------------------------------------------------------------------------------------

#[test]
fn segment_set_owner_hands_it_to_nobody() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 4096, 0o600).unwrap();

    // Before: root's, 0o600; nobody may not open it.
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        report(&pipe, "open", &Segment::open(tk.key()));
        0
    });
    let before = outcomes(&pipe, 1);
    assert_eq!(child.join(), 0);
    before["open"].err(ErrorKind::PermissionDenied);

    seg.set_owner(NOBODY, NOBODY).unwrap();
    let info = seg.info().unwrap();
    assert_eq!(
        (info.uid, info.gid, info.cuid, info.cgid),
        (NOBODY, NOBODY, 0, 0)
    );
    assert_eq!(info.permissions(), 0o600, "set_owner keeps the mode");
    assert_ipcs_owner_mode("-m", seg.id(), NOBODY, NOBODY, 0o600);
    let row = ipcs_row("-m", seg.id());
    assert!(is_nobody(&row[2]) && row[3] == "600", "ipcs -m: {row:?}");

    // nobody now owns it: opens, writes, changes the mode (the owner may).
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        let seg = Segment::open(tk.key());
        report(&pipe, "open", &seg);
        let Ok(seg) = seg else { return 1 };
        report(&pipe, "write", &seg.write_all_at(b"nobody was here", 0));
        // Locked out by its own mode, the owner can still change it back (IPC_SET asks
        // for ownership, not permission bits).
        report(&pipe, "set_mode 0", &seg.set_mode(0));
        report(&pipe, "open locked out", &Segment::open_read_only(tk.key()));
        report(&pipe, "set_mode", &seg.set_mode(0o640));
        0
    });
    let got = outcomes(&pipe, 5);
    assert_eq!(child.join(), 0);
    got["open locked out"].err(ErrorKind::PermissionDenied);
    for label in ["open", "write", "set_mode 0", "set_mode"] {
        got[label].ok();
    }
    let mut buf = [0u8; 15];
    seg.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"nobody was here");
    assert_eq!(seg.info().unwrap().permissions(), 0o640);
    assert_ipcs_owner_mode("-m", seg.id(), NOBODY, NOBODY, 0o640);

    // A stranger (neither owner nor creator) is refused, and told who may.
    let pipe = Pipe::new();
    let child = fork_as(STRANGER, STRANGER, || {
        report(&pipe, "set_owner", &seg.set_owner(STRANGER, STRANGER));
        report(&pipe, "set_mode", &seg.set_mode(0o666));
        0
    });
    let got = outcomes(&pipe, 2);
    assert_eq!(child.join(), 0);
    let text = got["set_owner"].err(ErrorKind::PermissionDenied);
    for needle in [
        "Segment::set_owner",
        &tk.key().to_string(),
        "shmctl(IPC_SET)",
        "owner (uid 65534)",
        "creator (uid 0)",
        "uid 4242",
    ] {
        assert!(text.contains(needle), "{needle:?} missing: {text}");
    }
    got["set_mode"].err(ErrorKind::PermissionDenied);
    assert_eq!(
        seg.info().unwrap().permissions(),
        0o640,
        "a refused call changed it"
    );

    // The creator keeps its rights: root takes it back in one IPC_SET.
    seg.set_owner_and_mode(0, 0, 0o600).unwrap();
    let info = seg.info().unwrap();
    assert_eq!((info.uid, info.gid, info.permissions()), (0, 0, 0o600));
    seg.remove().unwrap();
}

#[test]
fn semaphore_set_owner_and_mode_apply_to_every_operation() {
    let tk = TestKey::new();
    let set = SemaphoreSet::create(tk.key(), 2, 0o600).unwrap();
    let before = set.info().unwrap().ctime;

    set.set_owner_and_mode(NOBODY, NOBODY, 0o660).unwrap();
    let info = set.info().unwrap();
    assert_eq!((info.uid, info.gid, info.cuid), (NOBODY, NOBODY, 0));
    assert_eq!(info.permissions(), 0o660);
    assert!(info.ctime >= before);
    assert_ipcs_owner_mode("-s", set.id(), NOBODY, NOBODY, 0o660);
    let row = ipcs_row("-s", set.id());
    assert!(is_nobody(&row[2]) && row[3] == "660", "ipcs -s: {row:?}");

    // nobody operates on it, through a handle inherited from root and one of its own.
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        report(&pipe, "inherited op", &set.op(&[SemOp::post(0)]));
        let own = SemaphoreSet::open(tk.key());
        report(&pipe, "open", &own);
        let Ok(own) = own else { return 1 };
        report(&pipe, "set_values", &own.set_values(&[3, 4]));
        // The owner takes its own alter permission away: the next op is refused.
        report(&pipe, "set_mode", &own.set_mode(0o000));
        report(&pipe, "op after", &own.op(&[SemOp::post(0)]));
        report(&pipe, "set_mode back", &own.set_mode(0o660));
        report(&pipe, "op again", &own.op(&[SemOp::post(0)]));
        0
    });
    let got = outcomes(&pipe, 7);
    assert_eq!(child.join(), 0);
    for label in [
        "inherited op",
        "open",
        "set_values",
        "set_mode",
        "set_mode back",
    ] {
        got[label].ok();
    }
    got["op after"].err(ErrorKind::PermissionDenied);
    got["op again"].ok();
    assert_eq!(set.values().unwrap(), [4, 4]);

    let pipe = Pipe::new();
    let child = fork_as(STRANGER, STRANGER, || {
        report(&pipe, "set_owner", &set.set_owner(STRANGER, STRANGER));
        0
    });
    let got = outcomes(&pipe, 1);
    assert_eq!(child.join(), 0);
    let text = got["set_owner"].err(ErrorKind::PermissionDenied);
    assert!(
        text.contains("SemaphoreSet::set_owner") && text.contains("semctl(IPC_SET)"),
        "{text}"
    );
    assert!(text.contains("owner (uid 65534)"), "{text}");
    set.remove().unwrap();
}

#[test]
fn ipc_set_refuses_bad_input_and_removed_objects() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 64, 0o600).unwrap();
    let set = SemaphoreSet::create(tk.key(), 1, 0o600).unwrap();
    for mode in [0o1000, 0o4777, u32::MAX] {
        let e = seg.set_mode(mode).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let e = set.set_owner_and_mode(0, 0, mode).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    let e = seg.set_owner(u32::MAX, 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("uid 4294967295"), "{e}");
    let e = set.set_owner(0, u32::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(seg.info().unwrap().permissions(), 0o600);

    // Unlike at creation, a mode that locks the owner out is accepted, and undone.
    seg.set_mode(0).unwrap();
    assert_eq!(seg.info().unwrap().permissions(), 0);
    seg.set_mode(0o600).unwrap();

    seg.remove().unwrap();
    set.remove().unwrap();
    // A segment marked for removal still exists while attached: IPC_SET still works.
    seg.set_mode(0o640).unwrap();
    let e = set.set_mode(0o640).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Removed, "{e}");
    assert_eq!(e.call(), "SemaphoreSet::set_mode");
}

// ---------------------------------------------------------------------------------------
// 2. IPC_SET on managed objects: both objects of the pair in one call
// ---------------------------------------------------------------------------------------

#[test]
fn managed_set_owner_hands_both_objects_to_nobody() {
    let (km, kr, kq, kc) = (
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
    );
    let mutex = SharedMutex::create(km.key(), 0u64).unwrap();
    let rw = SharedRwLock::create(kr.key(), 0u64).unwrap();
    let queue = Queue::create(kq.key(), 256).unwrap();
    let cv = SharedCondvar::create(kc.key()).unwrap();

    // Before: nobody may open none of them.
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        report(&pipe, "mutex", &SharedMutex::<u64>::open(km.key()));
        report(&pipe, "rwlock", &SharedRwLock::<u64>::open(kr.key()));
        report(&pipe, "queue", &Queue::open(kq.key()));
        report(&pipe, "condvar", &SharedCondvar::open(kc.key()));
        0
    });
    let got = outcomes(&pipe, 4);
    assert_eq!(child.join(), 0);
    for label in ["mutex", "rwlock", "queue", "condvar"] {
        got[label].err(ErrorKind::PermissionDenied);
    }

    mutex.set_owner(NOBODY, NOBODY).unwrap();
    rw.set_owner(NOBODY, NOBODY).unwrap();
    queue.set_owner_and_mode(NOBODY, NOBODY, 0o600).unwrap();
    cv.set_owner(NOBODY, NOBODY).unwrap();
    for (shm, sem) in [
        (mutex.shm_id(), mutex.sem_id()),
        (rw.shm_id(), rw.sem_id()),
        (queue.shm_id(), queue.sem_id()),
        (cv.shm_id(), cv.sem_id()),
    ] {
        assert_ipcs_owner_mode("-m", shm, NOBODY, NOBODY, 0o600);
        assert_ipcs_owner_mode("-s", sem, NOBODY, NOBODY, 0o600);
        assert!(is_nobody(&ipcs_row("-m", shm)[2]));
        assert!(is_nobody(&ipcs_row("-s", sem)[2]));
    }
    let info = mutex.segment().info().unwrap();
    assert_eq!((info.uid, info.cuid), (NOBODY, 0));
    assert_eq!(mutex.semaphores().info().unwrap().uid, NOBODY);

    // After: nobody opens and uses every one.
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        let m = SharedMutex::<u64>::open(km.key());
        report(&pipe, "mutex", &m);
        if let Ok(m) = &m {
            let r = m.lock().map(|mut g| *g += 41).map_err(shmsem::Error::from);
            report(&pipe, "lock", &r);
        }
        let r = SharedRwLock::<u64>::open(kr.key());
        report(&pipe, "rwlock", &r);
        if let Ok(r) = &r {
            let w = r.write().map(|mut g| *g = 7).map_err(shmsem::Error::from);
            report(&pipe, "write", &w);
        }
        let q = Queue::open(kq.key());
        report(&pipe, "queue", &q);
        if let Ok(q) = &q {
            report(&pipe, "send", &q.send(b"from nobody"));
        }
        let c = SharedCondvar::open(kc.key());
        report(&pipe, "condvar", &c);
        if let Ok(c) = &c {
            report(&pipe, "notify", &c.notify_all());
        }
        0
    });
    let got = outcomes(&pipe, 8);
    assert_eq!(child.join(), 0);
    for label in [
        "mutex", "lock", "rwlock", "write", "queue", "send", "condvar", "notify",
    ] {
        got[label].ok();
    }
    assert_eq!(*mutex.lock().unwrap(), 41);
    assert_eq!(*rw.read().unwrap(), 7);
    let mut msg = Vec::new();
    queue.recv_timeout(&mut msg, BOUND).unwrap();
    assert_eq!(msg, b"from nobody");

    // The mode of both, in one call; and back to root.
    mutex.set_mode(0o640).unwrap();
    assert_eq!(mutex.segment().info().unwrap().permissions(), 0o640);
    assert_eq!(mutex.semaphores().info().unwrap().permissions(), 0o640);
    mutex.set_owner_and_mode(0, 0, 0o600).unwrap();
    assert_ipcs_owner_mode("-m", mutex.shm_id(), 0, 0, 0o600);
    assert_ipcs_owner_mode("-s", mutex.sem_id(), 0, 0, 0o600);

    mutex.remove().unwrap();
    rw.remove().unwrap();
    queue.remove().unwrap();
    cv.remove().unwrap();
}

#[test]
fn managed_set_owner_by_a_stranger_is_refused_and_changes_nothing() {
    let tk = TestKey::new();
    let m = SharedMutex::options()
        .mode(0o666)
        .create(tk.key(), 0u32)
        .unwrap();
    let pipe = Pipe::new();
    let child = fork_as(STRANGER, STRANGER, || {
        // The stranger may use it (0o666), but not give it away.
        let own = SharedMutex::<u32>::open(tk.key());
        report(&pipe, "open", &own);
        let Ok(own) = own else { return 1 };
        report(&pipe, "set_owner", &own.set_owner(STRANGER, STRANGER));
        report(&pipe, "set_mode", &own.set_mode(0o600));
        0
    });
    let got = outcomes(&pipe, 3);
    assert_eq!(child.join(), 0);
    got["open"].ok();
    let text = got["set_owner"].err(ErrorKind::PermissionDenied);
    assert!(text.starts_with("SharedMutex::set_owner (key "), "{text}");
    assert!(
        text.contains(&tk.key().to_string()) && text.contains("uid 4242"),
        "{text}"
    );
    let text = got["set_mode"].err(ErrorKind::PermissionDenied);
    assert!(text.starts_with("SharedMutex::set_mode"), "{text}");
    let (seg, set) = (m.segment().info().unwrap(), m.semaphores().info().unwrap());
    assert_eq!((seg.uid, seg.permissions()), (0, 0o666));
    assert_eq!((set.uid, set.permissions()), (0, 0o666));
    m.remove().unwrap();
}

#[test]
fn managed_set_owner_puts_the_segment_back_when_the_set_refuses() {
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    // The set goes (as if another process removed it); the segment stays.
    m.semaphores().remove().unwrap();
    let e = m.set_owner_and_mode(NOBODY, NOBODY, 0o644).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Removed, "{e}");
    assert_eq!(e.call(), "SharedMutex::set_owner_and_mode");
    let info = m.segment().info().unwrap();
    assert_eq!(
        (info.uid, info.gid, info.permissions()),
        (0, 0, 0o600),
        "the segment kept the change the set refused"
    );
    m.remove().unwrap_err(); // the set is already gone: reported, the segment still goes
    assert_eq!(key_in_use(tk.key()), (false, false));
}

// ---------------------------------------------------------------------------------------
// 3. The seed's pitfall: a creation mode that locks the owner out
// ---------------------------------------------------------------------------------------

#[test]
fn creation_mode_without_owner_access_is_refused_unless_asked_for() {
    let tk = TestKey::new();
    let key = tk.key();
    for mode in [0o000, 0o044, 0o066, 0o100, 0o177] {
        let e = Segment::create(key, 64, mode).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{mode:#o}: {e}");
        let text = e.to_string();
        assert!(text.contains("neither read nor write"), "{text}");
        assert!(text.contains("only a privileged process (root)"), "{text}");
        assert!(
            text.contains("SegmentOptions::allow_owner_without_access(true)"),
            "{text}"
        );
        assert!(text.contains(&key.to_string()), "{text}");
        let e = SemaphoreSet::create(key, 1, mode).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{mode:#o}: {e}");
        assert!(
            e.to_string()
                .contains("SemaphoreSetOptions::allow_owner_without_access(true)"),
            "{e}"
        );
        let e = SharedMutex::options()
            .mode(mode)
            .create(key, 0u8)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{mode:#o}: {e}");
        assert!(e.to_string().starts_with("SharedMutex::create"), "{e}");
        assert!(
            e.to_string()
                .contains("Options::allow_owner_without_access(true)"),
            "{e}"
        );
        let e = Queue::options().mode(mode).create(key, 64).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{mode:#o}: {e}");
        assert_eq!(
            key_in_use(key),
            (false, false),
            "a refused create made something"
        );
    }
    // Read alone or write alone is access.
    for mode in [0o400, 0o200] {
        Segment::create(key, 64, mode).unwrap().remove().unwrap();
        SemaphoreSet::create(key, 1, mode)
            .unwrap()
            .remove()
            .unwrap();
    }

    // Asked for explicitly: made, as ipcs shows; useless to its owner once it is not root.
    let seg = Segment::options()
        .mode(0o000)
        .allow_owner_without_access(true)
        .create(key, 64)
        .unwrap();
    let set = SemaphoreSet::options()
        .mode(0o060)
        .allow_owner_without_access(true)
        .create(key, 1)
        .unwrap();
    assert_eq!(ipcs_row("-m", seg.id())[3], "0");
    assert_eq!(ipcs_row("-s", set.id())[3], "60");
    seg.set_owner(NOBODY, NOBODY).unwrap();
    set.set_owner(NOBODY, NOBODY).unwrap();
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        report(&pipe, "segment", &Segment::open_read_only(key));
        report(&pipe, "set", &SemaphoreSet::open(key));
        0
    });
    let got = outcomes(&pipe, 2);
    assert_eq!(child.join(), 0);
    got["segment"].err(ErrorKind::PermissionDenied);
    got["set"].err(ErrorKind::PermissionDenied);
    seg.remove().unwrap();
    set.remove().unwrap();

    let m = SharedCondvar::options()
        .mode(0o060)
        .allow_owner_without_access(true)
        .create(key)
        .unwrap();
    assert_eq!(m.segment().info().unwrap().permissions(), 0o060);
    m.remove().unwrap();
}

// ---------------------------------------------------------------------------------------
// 4. SETALL
// ---------------------------------------------------------------------------------------

#[test]
fn set_values_sets_every_semaphore_at_once() {
    let tk = TestKey::new();
    let set = SemaphoreSet::create(tk.key(), 4, 0o644).unwrap();
    set.set_values(&[1, 2, 32767, 0]).unwrap();
    assert_eq!(set.values().unwrap(), [1, 2, 32767, 0]);
    assert_eq!(
        set.info().unwrap().otime,
        None,
        "SETALL is not an operation"
    );

    for bad in [&[1, 2, 3][..], &[1, 2, 3, 4, 5], &[]] {
        let e = set.set_values(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("for a set of 4 semaphores"), "{e}");
    }
    for bad in [[0, 0, 0, -1], [32768, 0, 0, 0]] {
        let e = set.set_values(&bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert_eq!(e.call(), "SemaphoreSet::set_values");
    }
    assert_eq!(
        set.values().unwrap(),
        [1, 2, 32767, 0],
        "a refused call set something"
    );

    // Read permission is not alter permission.
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        report(&pipe, "values", &set.values());
        report(&pipe, "set_values", &set.set_values(&[0; 4]));
        0
    });
    let got = outcomes(&pipe, 2);
    assert_eq!(child.join(), 0);
    got["values"].ok();
    got["set_values"].err(ErrorKind::PermissionDenied);

    set.remove().unwrap();
    let e = set.set_values(&[0; 4]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Removed, "{e}");
}

#[test]
fn set_values_wakes_waiters_and_clears_undo_adjustments() {
    let tk = TestKey::new();
    let set = SemaphoreSet::create(tk.key(), 2, 0o600).unwrap();
    let (ready, go) = (Pipe::new(), Pipe::new());
    let mut child = fork(|| {
        // An undo adjustment of -1 on semaphore 0 ...
        if set.op(&[SemOp::post(0).undo()]).is_err() {
            return 1;
        }
        ready.send_i32(1);
        // ... then wait for semaphore 1, which only SETALL will raise.
        if set.op_timeout(&[SemOp::wait(1)], BOUND).is_err() {
            return 2;
        }
        go.recv_byte();
        0
    });
    assert_eq!(ready.recv_i32(), 1);
    assert!(
        wait_until(BOUND, || set.wait_count(1).unwrap() == 1),
        "the child never waited on semaphore 1"
    );
    set.set_values(&[5, 1]).unwrap();
    assert!(
        wait_until(BOUND, || set.wait_count(1).unwrap() == 0),
        "SETALL did not wake the waiter"
    );
    go.send(&[1]);
    assert_eq!(child.wait_timeout(BOUND), Exit::Code(0));
    // The child's exit undid nothing: SETALL cleared its adjustment (else 5 - 1 = 4).
    assert_eq!(set.values().unwrap(), [5, 0]);
    set.remove().unwrap();
}

// ---------------------------------------------------------------------------------------
// 5. Attach at an address (SHM_RND)
// ---------------------------------------------------------------------------------------

/// Fixed addresses far from where Linux puts mmaps and the heap (as a C program would
/// pick one), one gigabyte apart per test so that tests running at once never meet.
fn fixed_address(slot: usize) -> usize {
    0x5e00_0000_0000 + slot * (1 << 30)
}

#[test]
fn open_at_attaches_at_the_address_rounded_down_with_shm_rnd() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 10_000, 0o600).unwrap();
    seg.write_all_at(b"at a fixed address", 9_000).unwrap();
    let base = fixed_address(0);
    let shmlba = Segment::shmlba();
    assert!(shmlba >= 4096 && shmlba.is_power_of_two());

    // SAFETY: nothing in this test binary maps at fixed_address(0).
    let exact = unsafe { Segment::open_at(tk.key(), base as *const u8, AttachFlags::new()) };
    let exact = exact.unwrap();
    assert_eq!(exact.as_ptr() as usize, base);
    let mut buf = [0u8; 18];
    exact.read_exact_at(&mut buf, 9_000).unwrap();
    assert_eq!(&buf, b"at a fixed address");
    drop(exact);

    let flags = AttachFlags::new().round_down(true).read_only(true);
    // SAFETY: as above.
    let rounded = unsafe { Segment::open_at(tk.key(), (base + 123) as *const u8, flags) };
    let rounded = rounded.unwrap();
    assert_eq!(
        rounded.as_ptr() as usize,
        base,
        "SHM_RND rounds down to SHMLBA"
    );
    assert!(rounded.is_read_only());
    let e = rounded.write_all_at(b"x", 0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    rounded.read_exact_at(&mut buf, 9_000).unwrap();
    assert_eq!(&buf, b"at a fixed address");

    // By id, at another address (the first attach is still there).
    let at = base + 4 * shmlba * 4;
    // SAFETY: as above; `at` is inside this test's own slot and above `rounded`'s pages.
    let by_id = unsafe { Segment::attach_id_at(seg.id(), at as *const u8, AttachFlags::new()) };
    let by_id = by_id.unwrap();
    assert_eq!(by_id.as_ptr() as usize, at);
    assert_eq!(by_id.key(), tk.key());
    assert!(wait_until(BOUND, || seg.info().unwrap().nattch >= 3));
    seg.remove().unwrap();
}

#[test]
fn open_at_refuses_misaligned_and_occupied_addresses() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 8192, 0o600).unwrap();
    let base = fixed_address(1);

    // SAFETY: nothing in this test binary maps at fixed_address(1); the kernel refuses
    // the misaligned address anyway.
    let e = unsafe { Segment::open_at(tk.key(), (base + 1) as *const u8, AttachFlags::new()) };
    let e = e.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("SHMLBA") && text.contains("round_down"),
        "{text}"
    );
    assert!(text.contains(&tk.key().to_string()), "{text}");

    // Memory the process already uses: the kernel will not map over it.
    let mut mine = vec![0xa5u8; 64 * 1024];
    let page = Segment::shmlba();
    let inside = (mine.as_ptr() as usize).next_multiple_of(page);
    let flags = AttachFlags::new().round_down(true);
    // SAFETY: the kernel refuses ranges that overlap existing mappings (shmsem never
    // passes SHM_REMAP), which is what this checks; `mine` is not touched if it works.
    let e = unsafe { Segment::open_at(tk.key(), inside as *const u8, flags) }.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("overlaps"), "{e}");
    assert!(mine.iter().all(|&b| b == 0xa5), "the heap was mapped over");
    mine[0] = 0;

    seg.remove().unwrap();
}

#[test]
fn pointers_stored_at_a_fixed_address_work_in_another_process() {
    let tk = TestKey::new();
    let key = tk.key();
    let base = fixed_address(2);
    let (ready, done) = (Pipe::new(), Pipe::new());
    // The child is forked before anything maps at `base`, so the address is free in it.
    let mut child = fork(|| {
        ready.recv_byte();
        // SAFETY: nothing in the child maps at fixed_address(2).
        let seg = match unsafe { Segment::open_at(key, base as *const u8, AttachFlags::new()) } {
            Ok(s) => s,
            Err(_) => return 1,
        };
        let mut word = [0u8; 8];
        if seg.read_exact_at(&mut word, 0).is_err() {
            return 2;
        }
        // A C-style pointer into the segment, valid because both attach at `base`.
        let ptr = usize::from_ne_bytes(word) as *const u8;
        if !(base..base + seg.len()).contains(&(ptr as usize)) {
            return 3;
        }
        // SAFETY: ptr lies inside this attach (checked), and the parent writes nothing
        // while the child reads (it waits on `done`).
        let text = unsafe { std::slice::from_raw_parts(ptr, 11) };
        let code = if text == b"linked list" { 0 } else { 4 };
        done.send(&[1]);
        code
    });
    let seg = Segment::create(key, 4096, 0o600).unwrap();
    drop(seg);
    // SAFETY: nothing in this test binary maps at fixed_address(2).
    let seg = unsafe { Segment::open_at(key, base as *const u8, AttachFlags::new()) }.unwrap();
    seg.write_all_at(b"linked list", 100).unwrap();
    seg.write_all_at(&(base + 100).to_ne_bytes(), 0).unwrap();
    ready.send(&[1]);
    assert_eq!(done.recv_byte(), 1);
    assert_eq!(child.wait_timeout(BOUND), Exit::Code(0));
    seg.remove().unwrap();
}

// ---------------------------------------------------------------------------------------
// 6. SHM_LOCK / SHM_UNLOCK
// ---------------------------------------------------------------------------------------

#[test]
fn lock_in_memory_and_unlock_show_in_info_and_ipcs() {
    let tk = TestKey::new();
    let seg = Segment::create(tk.key(), 64 * 1024, 0o666).unwrap();
    assert!(!seg.info().unwrap().is_locked_in_memory());
    seg.lock_in_memory().unwrap();
    assert!(seg.info().unwrap().is_locked_in_memory());
    let row = ipcs_row("-m", seg.id());
    assert!(row.iter().any(|c| c == "locked"), "ipcs -m: {row:?}");

    // nobody may use it (0o666) but not unlock or lock it: neither owner nor creator.
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        report(&pipe, "unlock", &seg.unlock());
        report(&pipe, "lock", &seg.lock_in_memory());
        0
    });
    let got = outcomes(&pipe, 2);
    assert_eq!(child.join(), 0);
    let text = got["unlock"].err(ErrorKind::PermissionDenied);
    assert!(text.starts_with("Segment::unlock (key"), "{text}");
    assert!(
        text.contains("shmctl(SHM_UNLOCK)") && text.contains("CAP_IPC_LOCK"),
        "{text}"
    );
    let text = got["lock"].err(ErrorKind::PermissionDenied);
    assert!(text.contains("owner (uid 0)"), "{text}");
    assert!(seg.info().unwrap().is_locked_in_memory());

    seg.unlock().unwrap();
    assert!(!seg.info().unwrap().is_locked_in_memory());
    assert!(!ipcs_row("-m", seg.id()).iter().any(|c| c == "locked"));
    seg.remove().unwrap();
}

#[test]
#[serial(memlock)]
fn lock_in_memory_as_the_new_owner_is_bounded_by_rlimit_memlock() {
    let (small, large) = (TestKey::new(), TestKey::new());
    let s = Segment::create(small.key(), 16 * 1024, 0o600).unwrap();
    let l = Segment::create(large.key(), 4 << 20, 0o600).unwrap();
    s.set_owner(NOBODY, NOBODY).unwrap();
    l.set_owner(NOBODY, NOBODY).unwrap();
    let pipe = Pipe::new();
    let child = fork_as_nobody(|| {
        let limit = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        // SAFETY: lowering this process's own limit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) }, 0);
        report(&pipe, "small", &s.lock_in_memory());
        report(&pipe, "large", &l.lock_in_memory());
        report(&pipe, "unlock", &s.unlock());
        0
    });
    let got = outcomes(&pipe, 3);
    assert_eq!(child.join(), 0);
    got["small"].ok();
    let text = got["large"].err(ErrorKind::LimitReached);
    for needle in [
        "Segment::lock_in_memory",
        "4 MiB",
        "RLIMIT_MEMLOCK (1 MiB",
        "CAP_IPC_LOCK",
    ] {
        assert!(text.contains(needle), "{needle:?} missing: {text}");
    }
    got["unlock"].ok();
    assert!(!s.info().unwrap().is_locked_in_memory());
    assert!(!l.info().unwrap().is_locked_in_memory());
    s.remove().unwrap();
    l.remove().unwrap();
}

// ---------------------------------------------------------------------------------------
// 7. Huge pages and SHM_NORESERVE
// ---------------------------------------------------------------------------------------

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// The default-size huge page pool, set for one test and put back as it was on drop
/// (also when the test fails).
struct HugePool {
    old: u64,
}

impl HugePool {
    /// Sets the pool to `pages` pages; returns how many the kernel really has then.
    fn set(pages: u64) -> (HugePool, u64) {
        let old = read_u64(NR_HUGEPAGES);
        let pool = HugePool { old };
        std::fs::write(NR_HUGEPAGES, pages.to_string()).unwrap();
        (pool, read_u64(NR_HUGEPAGES))
    }
}

impl Drop for HugePool {
    fn drop(&mut self) {
        let _ = std::fs::write(NR_HUGEPAGES, self.old.to_string());
    }
}

fn read_u64(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    text.trim().parse().unwrap()
}

/// A `/proc/meminfo` field (in its own unit: pages for HugePages_*, kB otherwise).
fn meminfo(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The `KernelPageSize` (kB) of this process's mapping that starts at `addr`.
fn kernel_page_size_kb(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let start = format!("{addr:x}-");
    let block = smaps
        .split_inclusive('\n')
        .skip_while(|l| !l.starts_with(&start))
        .take_while(|l| !l.starts_with("VmFlags"))
        .collect::<String>();
    let line = block
        .lines()
        .find(|l| l.starts_with("KernelPageSize:"))
        .unwrap_or_else(|| panic!("no mapping at {addr:#x} in /proc/self/smaps"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[serial(hugepages)]
fn huge_pages_from_a_pool_the_test_reserves() {
    let page_kb = meminfo("Hugepagesize");
    let (_pool, got) = HugePool::set(read_u64(NR_HUGEPAGES) + 4);
    assert!(
        got >= 4,
        "the kernel gave only {got} huge pages for the test's pool"
    );
    let free = meminfo("HugePages_Free");
    assert!(free >= 3, "only {free} huge pages free after reserving 4");
    let rsvd = meminfo("HugePages_Rsvd");
    let page = (page_kb * 1024) as usize;

    let tk = TestKey::new();
    // Two pages and a bit: three pages taken from the pool at creation.
    let size = 2 * page + 1;
    let seg = Segment::options()
        .huge_pages(HugePageSize::DEFAULT)
        .create(tk.key(), size)
        .unwrap();
    assert_eq!(
        seg.len(),
        size,
        "len is the size asked for, not the rounded one"
    );
    assert_eq!(
        meminfo("HugePages_Rsvd"),
        rsvd + 3,
        "creation reserves the pages"
    );
    assert_eq!(
        seg.as_ptr() as usize % page,
        0,
        "attached at a huge page boundary"
    );
    assert_eq!(kernel_page_size_kb(seg.as_ptr() as usize), page_kb);
    seg.write_all_at(b"first", 0).unwrap();
    seg.write_all_at(b"last", size - 4).unwrap();
    let other = Segment::open(tk.key()).unwrap();
    let mut buf = [0u8; 4];
    other.read_exact_at(&mut buf, size - 4).unwrap();
    assert_eq!(&buf, b"last");

    // More than the pool has left: refused, saying how many are needed and free.
    let tk2 = TestKey::new();
    let e = Segment::options()
        .huge_pages(HugePageSize::DEFAULT)
        .create(tk2.key(), (free as usize + 1) * page)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitReached, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("the kernel has no huge pages to give"),
        "{text}"
    );
    assert!(
        text.contains(&format!("needs {} pages", free + 1)),
        "{text}"
    );
    assert!(text.contains("nr_hugepages"), "{text}");
    assert_eq!(key_in_use(tk2.key()), (false, false));

    // The explicit size flag for the same size works the same way.
    if page_kb == 2048 {
        let tk3 = TestKey::new();
        let two = Segment::options()
            .huge_pages(HugePageSize::SIZE_2MIB)
            .mode(0o640)
            .create(tk3.key(), 4096)
            .unwrap();
        assert_eq!(kernel_page_size_kb(two.as_ptr() as usize), 2048);
        two.remove().unwrap();
    }
    drop(other);
    seg.remove().unwrap();
    drop(seg);
    // A child forked meanwhile by another test of this binary holds a copy of the attach
    // until it exits (fork copies attaches): the pages go back once the last one is gone.
    assert!(
        wait_until(BOUND, || meminfo("HugePages_Rsvd") == rsvd),
        "the pages never went back to the pool: {} reserved, {rsvd} before",
        meminfo("HugePages_Rsvd")
    );
}

#[test]
#[serial(hugepages)]
fn huge_pages_none_to_give_says_so() {
    let (_pool, got) = HugePool::set(0);
    assert_eq!(got, 0);
    let tk = TestKey::new();
    let e = Segment::options()
        .huge_pages(HugePageSize::DEFAULT)
        .create(tk.key(), 1 << 20)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitReached, "{e}");
    let text = e.to_string();
    assert!(text.starts_with("shmget (key "), "{text}");
    assert!(
        text.contains("the kernel has no huge pages to give"),
        "{text}"
    );
    assert!(text.contains("the pool has 0 free"), "{text}");
    assert!(text.contains("reserve more as root"), "{text}");
    assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));

    // 1 GiB pages: this machine's pool for them is empty (or absent) too.
    let e = Segment::options()
        .huge_pages(HugePageSize::SIZE_1GIB)
        .create(tk.key(), 1 << 20)
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::LimitReached | ErrorKind::InvalidInput),
        "{e}"
    );
    assert!(e.to_string().contains("1 GiB"), "{e}");

    // A size the system does not have at all.
    let odd = HugePageSize::from_bytes(1 << 25).unwrap();
    if !std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-32768kB").exists() {
        let e = Segment::options()
            .huge_pages(odd)
            .create(tk.key(), 1 << 20)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("no huge pages of 32 MiB"), "{e}");
    }
    assert_eq!(HugePageSize::from_bytes(4096), None);
    assert_eq!(HugePageSize::from_bytes(3 << 20), None);
    assert_eq!(key_in_use(tk.key()), (false, false));
}

#[test]
#[serial(hugepages)]
fn no_reserve_huge_pages_are_made_without_a_pool_and_fail_only_when_touched() {
    let (_pool, got) = HugePool::set(0);
    assert_eq!(got, 0);
    let tk = TestKey::new();
    let rsvd = meminfo("HugePages_Rsvd");
    let seg = Segment::options()
        .huge_pages(HugePageSize::DEFAULT)
        .no_reserve(true)
        .create(tk.key(), 1 << 21)
        .unwrap();
    assert_eq!(
        meminfo("HugePages_Rsvd"),
        rsvd,
        "SHM_NORESERVE reserved pages"
    );
    // The documented cost: touching a page the pool cannot give kills the toucher.
    let mut child = fork(|| {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: no core file for the expected crash.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        let _ = seg.write_all_at(b"x", 0);
        0
    });
    assert_eq!(child.wait_timeout(BOUND), Exit::Signal(libc::SIGBUS));
    seg.remove().unwrap();
}

#[test]
fn no_reserve_ordinary_segment_is_not_accounted() {
    // Committed_AS (kB) counts what creation reserves; other processes move it too, so
    // the difference is looked for with a wide margin, a few times.
    const SIZE: usize = 4 << 30;
    let margin_kb = 1 << 20; // 1 GiB
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (a, b) = (TestKey::new(), TestKey::new());
        let before = meminfo("Committed_AS");
        let reserved = Segment::create(a.key(), SIZE, 0o600).unwrap();
        let mid = meminfo("Committed_AS");
        let unreserved = Segment::options()
            .no_reserve(true)
            .create(b.key(), SIZE)
            .unwrap();
        let after = meminfo("Committed_AS");
        reserved.remove().unwrap();
        unreserved.remove().unwrap();
        let (with, without) = (mid as i64 - before as i64, after as i64 - mid as i64);
        seen.push((with, without));
        if with > (SIZE / 1024) as i64 - margin_kb && without < margin_kb {
            return;
        }
    }
    panic!("no run showed the reservation only without SHM_NORESERVE: {seen:?} (kB)");
}

// ---------------------------------------------------------------------------------------
// 8. System limits (IPC_INFO) and the errors that name them
// ---------------------------------------------------------------------------------------

#[test]
fn shm_limits_and_sem_limits_are_what_proc_sys_says() {
    let shm = shmsem::shm_limits().unwrap();
    assert_eq!(shm.shmmax, read_u64("/proc/sys/kernel/shmmax"));
    assert_eq!(shm.shmall, read_u64("/proc/sys/kernel/shmall"));
    assert_eq!(shm.shmmni, read_u64("/proc/sys/kernel/shmmni"));
    assert_eq!(shm.shmmin, 1);
    assert_eq!(shm.page_size, Segment::shmlba() as u64);
    assert_eq!(shm.shmall_bytes(), shm.shmall.saturating_mul(shm.page_size));

    let sem = shmsem::sem_limits().unwrap();
    let fields: Vec<u32> = std::fs::read_to_string("/proc/sys/kernel/sem")
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(
        [sem.semmsl, sem.semmns, sem.semopm, sem.semmni],
        fields[..4],
        "kernel.sem is SEMMSL SEMMNS SEMOPM SEMMNI"
    );
    assert_eq!(sem.semvmx, 32767);
    assert!(sem.semaem > 0);

    // ipcs -l prints the same numbers.
    let l = run("ipcs", &["-l"]);
    assert!(
        l.contains(&format!("max number of segments = {}", shm.shmmni)),
        "{l}"
    );
    assert!(
        l.contains(&format!("max ops per semop call = {}", sem.semopm)),
        "{l}"
    );
}

/// Runs `f` in a child with an IPC namespace of its own (so lowered limits and the
/// objects made to hit them are seen by nobody else, and vanish with it).
fn in_own_ipc_namespace(f: impl FnOnce(&Pipe) -> i32, reports: usize) -> HashMap<String, Outcome> {
    let pipe = Pipe::new();
    let child = fork(|| {
        // SAFETY: unshare on this (child) process only.
        if unsafe { libc::unshare(libc::CLONE_NEWIPC) } != 0 {
            return 90;
        }
        f(&pipe)
    });
    let got = outcomes(&pipe, reports);
    assert_eq!(child.join(), 0);
    got
}

fn write_sysctl(path: &str, value: &str) {
    std::fs::write(path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
}

#[test]
fn limit_errors_name_the_limit_its_value_and_the_sysctl() {
    let got = in_own_ipc_namespace(
        |pipe| {
            write_sysctl("/proc/sys/kernel/shmmax", &(32u64 << 20).to_string());
            write_sysctl("/proc/sys/kernel/shmmni", "2");
            write_sysctl("/proc/sys/kernel/shmall", "100");
            write_sysctl("/proc/sys/kernel/sem", "8 12 4 3");
            report(
                pipe,
                "shm_limits",
                &shmsem::shm_limits().map(|l| {
                    assert_eq!((l.shmmax, l.shmmni, l.shmall), (32 << 20, 2, 100));
                }),
            );
            report(
                pipe,
                "shmmax",
                &Segment::create(Key::PRIVATE, 64 << 30, 0o600),
            );
            // shmall: 100 pages for all segments together.
            let a = Segment::create(Key::PRIVATE, 90 * 4096, 0o600);
            report(
                pipe,
                "shmall",
                &Segment::create(Key::PRIVATE, 20 * 4096, 0o600),
            );
            let b = Segment::create(Key::PRIVATE, 4096, 0o600);
            report(pipe, "shmmni", &Segment::create(Key::PRIVATE, 4096, 0o600));
            for seg in [a, b].into_iter().flatten() {
                let _ = seg.remove();
            }
            report(
                pipe,
                "semmsl",
                &SemaphoreSet::create(Key::PRIVATE, 9, 0o600),
            );
            let s1 = SemaphoreSet::create(Key::PRIVATE, 8, 0o600).unwrap();
            report(
                pipe,
                "semmns",
                &SemaphoreSet::create(Key::PRIVATE, 8, 0o600),
            );
            let _s2 = SemaphoreSet::create(Key::PRIVATE, 2, 0o600).unwrap();
            let _s3 = SemaphoreSet::create(Key::PRIVATE, 1, 0o600).unwrap();
            report(
                pipe,
                "semmni",
                &SemaphoreSet::create(Key::PRIVATE, 1, 0o600),
            );
            let ops = [SemOp::post(0); 5];
            report(pipe, "semopm", &s1.op(&ops));
            report(
                pipe,
                "managed",
                &SharedMutex::create(Key::PRIVATE, [0u8; 64 << 10]),
            );
            0
        },
        9,
    );
    got["shm_limits"].ok();
    let t = got["shmmax"].err(ErrorKind::LimitReached);
    assert!(
        t.contains("a segment of 64 GiB is above this system's shmmax of 32 MiB")
            && t.contains("raise kernel.shmmax"),
        "{t}"
    );
    assert!(t.starts_with("shmget (key 0x00000000)"), "{t}");
    let t = got["shmall"].err(ErrorKind::LimitReached);
    assert!(
        t.contains("shmall of 100 pages") && t.contains("kernel.shmall"),
        "{t}"
    );
    let t = got["shmmni"].err(ErrorKind::LimitReached);
    assert!(
        t.contains("all 2 segments") && t.contains("kernel.shmmni"),
        "{t}"
    );
    let t = got["semmsl"].err(ErrorKind::LimitReached);
    assert!(
        t.contains("a set of 9 semaphores is above this system's semmsl of 8")
            && t.contains("kernel.sem"),
        "{t}"
    );
    let t = got["semmns"].err(ErrorKind::LimitReached);
    assert!(
        t.contains("semmns of 12") && t.contains("second field of kernel.sem"),
        "{t}"
    );
    let t = got["semmni"].err(ErrorKind::LimitReached);
    assert!(
        t.contains("all 3 semaphore sets") && t.contains("semmni"),
        "{t}"
    );
    let t = got["semopm"].err(ErrorKind::LimitReached);
    assert!(
        t.contains("5 operations") && t.contains("semopm of 4"),
        "{t}"
    );
    // A managed object whose semaphore set is past SEMMSL says so under its own name.
    let t = got["managed"].err(ErrorKind::LimitReached);
    assert!(
        t.starts_with("SharedMutex::create") && t.contains("semmsl of 8"),
        "{t}"
    );
}
