//! The live view, `shmsem-inspect top`: on a terminal (tmux: started in a detached
//! session of a fixed size, the screen read with `capture-pane`, quit with a key, its
//! exit status printed by the shell after it), without one (each refresh printed in
//! turn), and as JSON Lines (one object per refresh).
//!
//! Every screen is awaited with a bound (the screen is re-read until it shows what is
//! expected); each tmux server has a socket of its own and is killed when the test ends.
//! The view lists every object, so these tests run one at a time (`#[serial(world)]`).

mod common;

use serial_test::serial;

use common::{BIN, BOUND, Exit, HeldMutex, Pipe, TestKey, Tmux, fork, hex, inspect, line_with};
use shmsem::{Key, Queue, SharedMutex, SharedRwLock};

/// A mutex whose holder was SIGKILLed inside it; the dead holder's pid.
fn poisoned_mutex(key: Key) -> (SharedMutex<u64>, i32) {
    let mutex = SharedMutex::create(key, 0u64).unwrap();
    let (inside, hold) = (Pipe::new(), Pipe::new());
    let mut child = fork(|| {
        let Ok(m) = SharedMutex::<u64>::open(key) else {
            return 1;
        };
        let Ok(_g) = m.lock() else { return 2 };
        inside.send(b"i");
        let mut b = [0u8];
        hold.recv_timeout(&mut b, BOUND); // never sent: killed here
        3
    });
    assert_eq!(inside.recv_byte(), b'i');
    child.kill(libc::SIGKILL);
    assert_eq!(child.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
    (mutex, child.pid)
}

/// The screen's row for `key`.
fn row(screen: &str, key: Key) -> &str {
    line_with(screen, &hex(key))
}

#[test]
#[serial(world)]
fn top_on_a_terminal_shows_holders_waiters_poisoning_and_queue_depth_and_quits_with_q() {
    let (kh, kp, kq, kr) = (
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
    );
    // A mutex held by another process, with a locker of a third asleep on it.
    let held = SharedMutex::create(kh.key(), 0u64).unwrap();
    let lockers = HeldMutex::new(kh.key());
    let holder = &lockers.holder;
    assert!(common::wait_until(BOUND, || {
        held.semaphores().wait_count(0).unwrap() == 1
    }));
    let (_poisoned, dead) = poisoned_mutex(kp.key());
    let queue = Queue::create(kq.key(), 1024).unwrap();
    for m in [&b"one"[..], b"two", b"three"] {
        queue.send(m).unwrap();
    }
    let rw = SharedRwLock::create(kr.key(), 0u32).unwrap();
    let reading = rw.read().unwrap();

    let tmux = Tmux::start(&format!("'{BIN}' top --interval 0.2"), 160, 40);
    let screen = tmux.wait_for("the four objects", |s| {
        // A screen may be caught half drawn: every row must be there, the last complete.
        [kh.key(), kp.key(), kq.key(), kr.key()]
            .iter()
            .all(|k| s.contains(&hex(*k)))
            && s.contains(&format!("{} (alive)", holder.pid))
            && s.lines()
                .any(|l| l.contains(&hex(kr.key())) && l.contains("reader"))
    });
    let title = screen.lines().next().unwrap();
    assert!(title.starts_with("shmsem-inspect top: "), "{screen}");
    assert!(title.contains("q quits"), "{screen}");
    let header = line_with(&screen, "KEY");
    for column in [
        "SHMID", "KIND", "STATE", "HOLDER", "WAITING", "POISONED", "QUEUE", "LEASES",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let r = row(&screen, kh.key());
    assert!(r.contains("mutex"), "{r}");
    assert!(r.contains("locked"), "{r}");
    assert!(r.contains(&format!("{} (alive)", holder.pid)), "{r}");
    let cells: Vec<&str> = r.split_whitespace().collect();
    let waiting = cells.iter().position(|c| *c == "(alive)").unwrap() + 1;
    assert_eq!(cells[waiting], "1", "one locker asleep: {r}");
    let r = row(&screen, kp.key());
    assert!(r.contains(&format!("by {dead} (dead), died")), "{r}");
    assert!(r.contains(&format!("{dead} (dead)")), "{r}");
    let r = row(&screen, kq.key());
    assert!(r.contains("queue"), "{r}");
    assert!(r.contains("open"), "{r}");
    assert!(r.contains("3 msgs (48 B)"), "{r}");
    let r = row(&screen, kr.key());
    assert!(r.contains("1 reader inside"), "{r}");

    // The holder lets go; the next refresh shows the lock handed on and then free.
    lockers.release();
    let mut buf = Vec::new();
    queue.recv(&mut buf).unwrap();
    drop(reading);
    let screen = tmux.wait_for("the lock free and the queue shorter", |s| {
        // A screen may be caught half drawn: every row must be there.
        let has =
            |key: Key, text: &str| s.lines().any(|l| l.contains(&hex(key)) && l.contains(text));
        has(kh.key(), "free") && has(kq.key(), "2 msgs (32 B)") && has(kr.key(), "free")
    });
    assert!(!row(&screen, kh.key()).contains("(alive)"), "{screen}");

    // q quits at once, with status 0, and gives the screen back.
    tmux.keys("q");
    assert_eq!(tmux.exit_status(), 0);
    assert!(!tmux.screen().contains("shmsem-inspect top:"));
}

#[test]
#[serial(world)]
fn top_quits_on_ctrl_c_and_restores_the_terminal() {
    let k = TestKey::new();
    let _m = SharedMutex::create(k.key(), 0u64).unwrap();
    // After the view, the shell prints the terminal's settings: line editing and echo
    // must be back on.
    let tmux = Tmux::start(
        &format!(
            "'{BIN}' top -i 0.2; echo \"status $?\"; stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo -e -icanon -e -echo | tr '\\n' ' '; echo"
        ),
        120,
        30,
    );
    tmux.wait_for("the view", |s| s.contains(&hex(k.key())));
    tmux.keys("C-c");
    assert_eq!(tmux.exit_status(), 0);
    let screen = tmux.screen();
    assert!(screen.contains("status 0"), "{screen}");
    let settings = line_with(&screen, "icanon");
    assert_eq!(
        settings.split_whitespace().collect::<Vec<_>>(),
        ["icanon", "echo"],
        "{screen}"
    );
}

#[test]
#[serial(world)]
fn top_without_a_terminal_prints_each_refresh() {
    let k = TestKey::new();
    let _q = Queue::create(k.key(), 64).unwrap();
    let run = inspect(&["top", "--count", "2", "--interval", "0.1"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout.matches("shmsem-inspect top: ").count(),
        2,
        "{run:?}"
    );
    assert!(
        !run.stdout.contains('\x1b'),
        "escape codes without a terminal: {run:?}"
    );
    assert!(
        !run.stdout.contains("q quits"),
        "no keys are read from /dev/null"
    );
    assert_eq!(run.stdout.matches(&hex(k.key())).count(), 2);
    assert!(line_with(&run.stdout, &hex(k.key())).contains("0 msgs (0 B)"));
}

#[test]
#[serial(world)]
fn top_json_prints_one_object_per_refresh_with_the_last_user_not_its_own_looks() {
    let (k, kf) = (TestKey::new(), TestKey::new());
    let key = k.key();
    let _m = SharedMutex::create(key, 0u64).unwrap();
    let _foreign = shmsem::Segment::create(kf.key(), 128, 0o600).unwrap();
    // The segment's last user: a process that opened it and exited.
    let mut user = fork(move || SharedMutex::<u64>::open(key).map_or(1, |_| 0));
    assert_eq!(user.wait_timeout(BOUND), Exit::Code(0));
    let run = inspect(&["top", "--json", "-n", "3", "-i", "0.1"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines = run.json_lines();
    assert_eq!(lines.len(), 3);
    let mut last_time = 0;
    for v in &lines {
        let time = v["time"].as_u64().unwrap();
        assert!(time >= last_time);
        last_time = time;
        let segs = v["segments"].as_array().unwrap();
        assert!(segs.iter().all(|s| s["contents"] == "managed"), "{v}");
        assert!(segs.iter().all(|s| s["key"] != hex(kf.key()).as_str()));
        let s = common::find(&v["segments"], "key", &hex(key).into());
        assert_eq!(s["shmsem"]["kind"], "mutex");
        // Each refresh attaches the segment; none of those looks is shown as its use.
        assert_eq!(s["last_pid"], user.pid, "{s}");
        assert_eq!(s["attaches"], 1, "{s}");
    }
}
