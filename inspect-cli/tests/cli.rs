//! The `shmsem-inspect` binary against real objects: help and usage of every subcommand,
//! exit statuses, completions, and `list`, `show`, `rm` and `gc` in text and in JSON,
//! read back field by field for each kind: a mutex held with a locker asleep, a poisoned
//! mutex with a dead holder (and one poisoned by a panic), a rwlock with readers inside
//! and a writer queued, a queue with messages waiting and one with a consumer asleep, a
//! condvar with a waiter, a lone semaphore set with a process asleep on it.
//!
//! Every object has a key of the test's own (`TestKey`: removed when the test ends, also
//! when it fails); other processes are forked children that hand-shake through pipes,
//! and every wait is bounded. Tests that list every object (which attaches each one for a
//! moment), and tests that count attaches or read a segment's last pid, run one at a
//! time (`#[serial(world)]`); the others run in parallel with each other, never beside
//! those (`#[parallel(world)]`): a fork in any thread of this process copies every
//! attach the process holds, and is an attach and a detach of each to the kernel. `gc`
//! only ever runs for the test's own keys.

mod common;

use serial_test::{parallel, serial};

use common::{
    BOUND, Exit, HeldMutex, Pipe, TestKey, Value, find, fork, hex, inspect, inspect_as, key_in_use,
    killed_inside, line_with, pids, wait_until,
};
use shmsem::{Key, Queue, Segment, SemOp, SemaphoreSet, SharedCondvar, SharedMutex, SharedRwLock};

const SUBCOMMANDS: [&str; 7] = ["list", "show", "rm", "gc", "top", "limits", "completions"];

fn me() -> i64 {
    i64::from(std::process::id())
}

/// `show KEY --json`: the one report.
fn show_json(key: Key) -> Value {
    let run = inspect(&["show", &hex(key), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["key"], hex(key));
    v
}

/// The decoded object of `show KEY --json`.
fn shmsem_of(key: Key) -> Value {
    let v = show_json(key);
    assert_eq!(v["segment"]["contents"], "managed", "{v}");
    v["segment"]["shmsem"].clone()
}

/// A process (`{"pid", "state"}`) as JSON.
fn process(pid: i32, state: &str) -> Value {
    serde_json::json!({ "pid": pid, "state": state })
}

// ---------------------------------------------------------------------------------------
// Help, usage, exit statuses, completions
// ---------------------------------------------------------------------------------------

#[test]
#[parallel(world)]
fn every_subcommand_has_its_own_help() {
    let run = inspect(&["--help"]);
    assert_eq!(run.code, 0, "{run:?}");
    for sub in SUBCOMMANDS {
        assert!(line_with(&run.stdout, &format!("  {sub} ")).contains(sub));
    }
    assert!(
        run.stdout.contains("Exit status: 0 ok; 1 a problem"),
        "{run:?}"
    );
    assert!(run.stdout.contains("docs/INSPECT.md"));
    for sub in SUBCOMMANDS {
        for args in [[sub, "--help"], ["help", sub], [sub, "-h"]] {
            let run = inspect(&args);
            assert_eq!(run.code, 0, "{args:?}: {run:?}");
            assert!(
                run.stdout.contains(&format!("Usage: shmsem-inspect {sub}")),
                "{args:?}: {run:?}"
            );
            assert!(run.stdout.contains("--json"), "{args:?}: {run:?}");
            assert!(run.stderr.is_empty(), "{run:?}");
        }
    }
    let has = |args: &[&str], words: &[&str]| {
        let run = inspect(args);
        for w in words {
            assert!(run.stdout.contains(w), "{args:?} lacks {w:?}: {run:?}");
        }
    };
    has(&["show", "--help"], &["--id <ID>", "GETNCNT", "[KEY]"]);
    has(&["rm", "--help"], &["--force", "<KEY>"]);
    has(
        &["gc", "--help"],
        &["--dry-run", "--key <KEY>", "--min-age <SECONDS>"],
    );
    has(
        &["top", "--help"],
        &["--interval <SECONDS>", "--count <N>", "q"],
    );
    has(&["completions", "--help"], &["bash", "zsh", "fish"]);
    // The aliases.
    has(&["ls", "--help"], &["Usage: shmsem-inspect list"]);
    has(&["remove", "--help"], &["Usage: shmsem-inspect rm"]);
    has(&["watch", "--help"], &["Usage: shmsem-inspect top"]);
    let run = inspect(&["--version"]);
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout.trim(),
        format!("shmsem-inspect {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
#[parallel(world)]
fn usage_errors_exit_2_and_point_to_help() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["list", "extra"],
        &["show"],
        &["show", "0"],
        &["show", "0xnope"],
        &["show", "--id"],
        &["show", "--id", "x"],
        &["show", "--id", "-3"],
        &["show", "1", "2"],
        &["show", "1", "--id", "2"],
        &["rm"],
        &["rm", "0"],
        &["rm", "1", "2"],
        &["gc", "--key"],
        &["gc", "--key", "zz"],
        &["gc", "--min-age", "soon"],
        &["gc", "--bogus"],
        &["top", "--interval", "0"],
        &["top", "--count", "0"],
        &["completions"],
        &["completions", "cmd.exe"],
        &["list", "--json", "extra"],
    ] {
        let run = inspect(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains("--help"), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    // A negative decimal key is a key, not an option.
    let run = inspect(&["show", "-16"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("0xfffffff0"), "{run:?}");
}

#[test]
#[parallel(world)]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _shmsem__inspect"),
        ("zsh", "#compdef shmsem-inspect"),
        ("fish", "complete -c shmsem-inspect"),
        ("elvish", "shmsem-inspect"),
        ("powershell", "shmsem-inspect"),
    ] {
        let run = inspect(&["completions", shell]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains(marker), "{shell}: {run:?}");
        for sub in SUBCOMMANDS {
            assert!(run.stdout.contains(sub), "{shell} lacks {sub}");
        }
        let json = inspect(&["completions", shell, "--json"]).json();
        assert_eq!(json["shell"], shell);
        assert_eq!(json["script"], run.stdout.as_str());
    }
}

#[test]
#[parallel(world)]
fn problems_exit_1_and_say_so_in_json_too() {
    let (missing, foreign) = (TestKey::new(), TestKey::new());
    let run = inspect(&["show", &hex(missing.key())]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("no segment and no semaphore set"),
        "{run:?}"
    );
    let run = inspect(&["show", &hex(missing.key()), "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let e = &run.json()["error"];
    assert_eq!(e["kind"], "not_found");
    assert!(e["message"].as_str().unwrap().contains("no segment"), "{e}");
    assert!(!run.stderr.is_empty());
    let run = inspect(&["show", "--id", "2147483647", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json()["error"]["kind"], "not_found");

    let _seg = Segment::create(foreign.key(), 4096, 0o600).unwrap();
    let run = inspect(&["rm", &hex(foreign.key()), "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json()["error"]["kind"], "not_managed");
    assert!(run.stderr.contains("--force removes it anyway"), "{run:?}");
    assert_eq!(key_in_use(foreign.key()), (true, false));
    let run = inspect(&["rm", &hex(missing.key()), "--json"]);
    assert_eq!(
        (run.code, &run.json()["error"]["kind"]),
        (1, &"not_found".into())
    );
}

// ---------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------

#[test]
#[serial(world)]
fn list_shows_every_object_in_text_and_json() {
    let (km, kr, kf, ks, kl) = (
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
    );
    let mutex = SharedMutex::create(km.key(), 7u64).unwrap();
    let rw = SharedRwLock::create(kr.key(), [1u32; 4]).unwrap();
    let foreign = Segment::create(kf.key(), 256, 0o640).unwrap();
    foreign.write_all_at(b"not a shmsem header", 0).unwrap();
    let small = Segment::create(ks.key(), 16, 0o600).unwrap();
    let lone = SemaphoreSet::create(kl.key(), 3, 0o600).unwrap();

    let run = inspect(&["list", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    let seg = |key: Key| find(&v["segments"], "key", &hex(key).into()).clone();

    let m = seg(km.key());
    assert_eq!(m["shmid"], mutex.shm_id());
    assert_eq!(m["size"], 72);
    assert_eq!(m["perms"], "600");
    assert_eq!(m["marked_for_removal"], false);
    assert_eq!(m["locked_in_memory"], false);
    assert_eq!(
        m["owner"],
        serde_json::json!({"uid": 0, "user": "root", "gid": 0, "group": "root"})
    );
    assert_eq!(m["creator"]["pid"], me());
    assert_eq!(m["creator"]["state"], "alive");
    assert_eq!(m["creator"]["user"], "root");
    assert!(m["attaches"].as_u64().unwrap() >= 1);
    assert!(m["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(m["contents"], "managed");
    assert_eq!(m["detail"], Value::Null);
    let s = &m["shmsem"];
    assert_eq!(s["kind"], "mutex");
    assert_eq!(s["format_version"], shmsem::header::VERSION);
    assert_eq!(
        s["payload"],
        serde_json::json!({"offset": 64, "size": 8, "align": 8})
    );
    assert_eq!(s["nsems"], 1 + 2 * 256);
    assert_eq!(s["semid"], mutex.sem_id());
    assert_eq!(s["paired"], true);
    assert_eq!(s["holder"], Value::Null);
    assert_eq!(
        (&s["poisoned"], &s["poison"]),
        (&false.into(), &Value::Null)
    );
    assert_eq!(
        s["mutex"],
        serde_json::json!({"locked": false, "waiting": 0})
    );
    assert_eq!(s["waiters"], 0);
    assert_eq!(s["leases_held"], 0);
    assert_eq!(s["semaphores"][0]["name"], "LOCK");
    assert_eq!(s["semaphores"][0]["value"], 1);
    for other in ["rwlock", "queue", "condvar"] {
        assert!(s.get(other).is_none(), "{other} in a mutex: {s}");
    }

    let r = &seg(kr.key())["shmsem"];
    assert_eq!(r["kind"], "rwlock");
    assert_eq!(
        (&r["payload"]["size"], &r["nsems"]),
        (&16.into(), &(3 + 512).into())
    );
    assert_eq!(
        r["rwlock"],
        serde_json::json!({"writer_inside": false, "readers_inside": 0, "writers_queued": 0, "waiting": 0})
    );

    let f = seg(kf.key());
    assert_eq!(
        (&f["contents"], &f["shmsem"]),
        (&"foreign".into(), &Value::Null)
    );
    assert!(f["detail"].as_str().unwrap().contains("magic"), "{f}");
    assert_eq!(f["perms"], "640");
    let small_json = seg(ks.key());
    assert!(small_json["detail"].as_str().unwrap().contains("too small"));

    let set = |key: Key| find(&v["semaphore_sets"], "key", &hex(key).into()).clone();
    let ms = set(km.key());
    assert_eq!(ms["semid"], mutex.sem_id());
    assert_eq!(ms["nsems"], 513);
    assert_eq!(
        ms["pairs_with"],
        serde_json::json!({"shmid": mutex.shm_id(), "kind": "mutex", "paired": true})
    );
    assert!(ms["last_semop"].as_u64().is_some());
    assert!(
        ms.get("semaphores").is_none(),
        "list lists no semaphores: {ms}"
    );
    let ls = set(kl.key());
    assert_eq!((&ls["nsems"], &ls["pairs_with"]), (&3.into(), &Value::Null));
    assert_eq!(ls["last_semop"], Value::Null);

    // The text says the same.
    let run = inspect(&["list"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("Shared memory segments: "));
    let line = line_with(&run.stdout, &hex(km.key()));
    assert!(line.contains(&mutex.shm_id().to_string()), "{line}");
    assert!(line.contains(&format!("{} (alive)", me())), "{line}");
    assert!(line.contains("mutex 8B, free"), "{line}");
    assert!(line_with(&run.stdout, &hex(kr.key())).contains("rwlock 16B, free"));
    for key in [kf.key(), ks.key()] {
        let line = line_with(&run.stdout, &hex(key));
        assert!(line.trim_end().ends_with(" -"), "{line}");
    }
    let sets = run.stdout.split("Semaphore sets").nth(1).unwrap();
    let line = line_with(sets, &hex(km.key()));
    assert!(
        line.contains(&format!("mutex pair of shmid {}", mutex.shm_id())),
        "{line}"
    );
    drop((mutex, rw, foreign, small, lone));
}

// ---------------------------------------------------------------------------------------
// show, kind by kind
// ---------------------------------------------------------------------------------------

#[test]
#[parallel(world)]
fn show_a_mutex_held_with_a_locker_asleep() {
    let k = TestKey::new();
    let key = k.key();
    let mutex = SharedMutex::create(key, 0u64).unwrap();
    let lockers = HeldMutex::new(key);
    let (holder, waiter) = (&lockers.holder, &lockers.waiter);
    assert!(
        wait_until(BOUND, || mutex.semaphores().wait_count(0).unwrap() == 1),
        "the second locker never slept"
    );

    let v = show_json(key);
    let s = &v["segment"]["shmsem"];
    assert_eq!(s["holder"], process(holder.pid, "alive"));
    assert_eq!(
        s["mutex"],
        serde_json::json!({"locked": true, "waiting": 1})
    );
    assert_eq!(s["waiters"], 1);
    assert_eq!(
        (&s["poisoned"], &s["poison"]),
        (&false.into(), &Value::Null)
    );
    assert_eq!(s["leases_held"], 2);
    assert_eq!(pids(&s["leases"]), {
        let mut p = vec![i64::from(holder.pid), i64::from(waiter.pid)];
        p.sort();
        p
    });
    assert_eq!(
        s["semaphores"],
        serde_json::json!([{"index": 0, "name": "LOCK", "value": 0, "ncnt": 1, "zcnt": 0,
                            "last_pid": holder.pid}])
    );
    // Every semaphore of the set, named as docs/FORMAT.md names them.
    let set = &v["semaphore_set"];
    assert_eq!(set["semid"], mutex.sem_id());
    let sems = set["semaphores"].as_array().unwrap();
    assert_eq!(sems.len(), 513);
    assert_eq!(set["pairs_with"]["paired"], true);
    assert_eq!(
        (&sems[0]["name"], &sems[0]["ncnt"]),
        (&"LOCK".into(), &1.into())
    );
    assert_eq!(
        (&sems[1]["name"], &sems[2]["name"]),
        (&"HELD(0)".into(), &"GEN(0)".into())
    );
    assert_eq!(sems[512]["name"], "GEN(255)");
    let held: i64 = sems[1..]
        .iter()
        .step_by(2)
        .map(|s| s["value"].as_i64().unwrap())
        .sum();
    assert_eq!(held, 2);

    let run = inspect(&["show", &hex(key)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, "  state:").ends_with("locked"));
    assert!(line_with(&run.stdout, "  waiting:").ends_with("1 locker asleep"));
    let line = line_with(&run.stdout, "  holder:");
    assert!(
        line.contains(&format!("pid {} (alive)", holder.pid)),
        "{line}"
    );
    assert!(line_with(&run.stdout, "#0 LOCK:").contains("1 for an increase"));
    assert!(line_with(&run.stdout, "leases held:").contains(&format!("pid {}", waiter.pid)));
    assert!(line_with(&run.stdout, "poisoned:").ends_with("no"));
    lockers.release();
}

#[test]
#[parallel(world)]
fn show_a_poisoned_mutex_with_a_dead_holder_and_one_poisoned_by_a_panic() {
    let (k, kp) = (TestKey::new(), TestKey::new());
    let key = k.key();
    let mutex = SharedMutex::create(key, 40u64).unwrap();
    let pid = killed_inside(key);

    let s = shmsem_of(key);
    assert_eq!(s["holder"], process(pid, "dead"));
    assert_eq!(s["poisoned"], true);
    assert_eq!(
        s["poison"],
        serde_json::json!({"by": {"pid": pid, "state": "dead"}, "cause": "died", "recorded": false})
    );
    // SEM_UNDO gave the lock back; the dead handle's lease went with its process.
    assert_eq!(
        s["mutex"],
        serde_json::json!({"locked": false, "waiting": 0})
    );
    assert_eq!(s["leases_held"], 0);
    let run = inspect(&["show", &hex(key)]);
    assert!(line_with(&run.stdout, "holder:").contains(&format!("pid {pid} (dead)")));
    let line = line_with(&run.stdout, "poisoned:");
    assert!(line.contains(&format!("yes, by {pid} (dead)")), "{line}");
    assert!(line.contains("the next locker is told"), "{line}");

    // The next locker is told and records it; until cleared it stays, recorded.
    match mutex.lock() {
        Err(shmsem::LockError::Poisoned(p)) => drop(p.into_inner()),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the lock was not poisoned"),
    }
    let s = shmsem_of(key);
    assert_eq!(s["holder"], Value::Null);
    assert_eq!(
        s["poison"],
        serde_json::json!({"by": {"pid": pid, "state": "dead"}, "cause": "died", "recorded": true})
    );
    mutex.clear_poison();
    assert_eq!(shmsem_of(key)["poisoned"], false);

    // A panic inside, in another process.
    let kp_key = kp.key();
    let _panicked = SharedMutex::create(kp_key, 0u64).unwrap();
    let mut child = fork(move || {
        let Ok(m) = SharedMutex::<u64>::open(kp_key) else {
            return 1;
        };
        let _g = m.lock();
        panic!("a panic inside the critical section, to poison the mutex (expected)");
    });
    assert_eq!(child.wait_timeout(BOUND), Exit::Code(101));
    let s = shmsem_of(kp_key);
    assert_eq!(
        s["poison"],
        serde_json::json!({"by": {"pid": child.pid, "state": "dead"}, "cause": "panicked", "recorded": true})
    );
    let run = inspect(&["show", &hex(kp_key)]);
    assert!(line_with(&run.stdout, "poisoned:").contains("a panic inside"));
}

#[test]
#[parallel(world)]
fn show_a_rwlock_with_readers_inside_and_a_writer_queued() {
    let k = TestKey::new();
    let key = k.key();
    let rw = SharedRwLock::create(key, 0u64).unwrap();
    let (inside, release) = (Pipe::new(), Pipe::new());
    let reader = || {
        fork(|| {
            let Ok(rw) = SharedRwLock::<u64>::open(key) else {
                return 1;
            };
            let Ok(_g) = rw.read() else { return 2 };
            inside.send(b"r");
            // Held until the test sends a byte for it.
            let mut b = [0u8];
            if release.recv_timeout(&mut b, BOUND) {
                0
            } else {
                3
            }
        })
    };
    let readers = [reader(), reader()];
    assert_eq!(inside.recv_byte(), b'r');
    assert_eq!(inside.recv_byte(), b'r');
    let writer = fork(|| {
        let Ok(rw) = SharedRwLock::<u64>::open(key) else {
            return 1;
        };
        let Ok(mut g) = rw.write_timeout(BOUND) else {
            return 2;
        };
        *g = 7;
        inside.send(b"w");
        let mut b = [0u8];
        if release.recv_timeout(&mut b, BOUND) {
            0
        } else {
            3
        }
    });
    // The writer announced itself and sleeps until the readers are out.
    let queued = wait_until(BOUND, || {
        rw.semaphores().value(2).unwrap() == 1 && rw.semaphores().zero_wait_count(1).unwrap() == 1
    });
    assert!(queued, "the writer never queued");

    let s = shmsem_of(key);
    assert_eq!(
        s["rwlock"],
        serde_json::json!({"writer_inside": false, "readers_inside": 2, "writers_queued": 1, "waiting": 1})
    );
    assert_eq!(
        s["holder"],
        Value::Null,
        "readers are not recorded as holders"
    );
    assert_eq!(s["waiters"], 1);
    let names: Vec<&str> = s["semaphores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["WRITER", "READERS", "QUEUED"]);
    assert_eq!(s["semaphores"][1]["value"], 2);
    assert_eq!(s["semaphores"][1]["zcnt"], 1);
    // Readers take no lease (they never write the header); the writer's handle has one.
    assert_eq!(pids(&s["leases"]), [i64::from(writer.pid)]);
    let run = inspect(&["show", &hex(key)]);
    assert!(line_with(&run.stdout, "  state:").ends_with("2 readers inside, 1 writer queued"));
    assert!(line_with(&run.stdout, "  inside:").contains("2 readers, no writer; 1 writer queued"));

    // The readers leave: the writer is in, and recorded.
    release.send(b"rr");
    for r in readers {
        assert_eq!(r.join(), 0);
    }
    assert_eq!(inside.recv_byte(), b'w');
    let s = shmsem_of(key);
    assert_eq!(s["rwlock"]["writer_inside"], true);
    assert_eq!(s["rwlock"]["readers_inside"], 0);
    assert_eq!(s["holder"], process(writer.pid, "alive"));
    assert!(line_with(&inspect(&["show", &hex(key)]).stdout, "  state:").ends_with("write-locked"));
    release.send(b"w");
    assert_eq!(writer.join(), 0);
}

#[test]
#[serial(world)] // it lists
fn show_a_queue_with_messages_waiting_and_one_with_a_consumer_asleep() {
    let (kf, ke) = (TestKey::new(), TestKey::new());
    let _full = Queue::create(kf.key(), 4096).unwrap();
    let k = kf.key();
    // Another process sends three messages of 1, 2 and 10 bytes: records of 16, 16, 24.
    let code = fork(move || {
        let Ok(q) = Queue::open(k) else { return 1 };
        let sent = [&b"a"[..], b"bb", b"0123456789"]
            .iter()
            .all(|m| q.send(m).is_ok());
        if sent { 0 } else { 2 }
    })
    .join();
    assert_eq!(code, 0);

    let s = shmsem_of(kf.key());
    assert_eq!(s["kind"], "queue");
    assert_eq!(
        s["queue"],
        serde_json::json!({
            "state": "open", "capacity": 4096, "messages_waiting": 3, "bytes_waiting": 56,
            "message_bytes": 13, "free_bytes": 4040, "head": 0, "tail": 56,
            "producer_lock": null, "consumer_lock": null,
            "waiting_consumers": 0, "waiting_producers": 0,
            "sleeping_consumers": 0, "sleeping_producers": 0, "problem": null
        })
    );
    assert_eq!(s["holder"], Value::Null);
    assert_eq!(s["semaphores"][0]["name"], "DATA");
    assert_eq!(s["semaphores"][1]["name"], "SPACE");
    let run = inspect(&["show", &hex(kf.key())]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, "  queue:").ends_with("open, capacity 4096 bytes"));
    let line = line_with(&run.stdout, "  waiting:");
    assert!(line.contains("3 messages, 56 bytes in the ring"), "{line}");
    assert!(line.contains("4040 bytes free"), "{line}");
    assert!(line_with(&run.stdout, "  consumers:").contains("lock free"));
    let run = inspect(&["list"]);
    let line = line_with(&run.stdout, &hex(kf.key()));
    assert!(
        line.contains("queue of 4096 B, open, 3 msgs (56 B)"),
        "{line}"
    );

    // A consumer of another process asleep on an empty queue.
    let empty = Queue::create(ke.key(), 64).unwrap();
    let k = ke.key();
    let mut consumer = fork(move || {
        let Ok(q) = Queue::open(k) else { return 1 };
        let mut buf = Vec::new();
        match q.recv_timeout(&mut buf, BOUND) {
            Ok(()) if buf == b"wake" => 0,
            _ => 2,
        }
    });
    let sems = SemaphoreSet::open(ke.key()).unwrap();
    assert!(
        wait_until(BOUND, || sems.wait_count(0).unwrap() == 1),
        "the consumer never slept"
    );
    let s = shmsem_of(ke.key());
    let q = &s["queue"];
    assert_eq!(
        (&q["messages_waiting"], &q["capacity"]),
        (&0.into(), &64.into())
    );
    assert_eq!(
        (&q["waiting_consumers"], &q["sleeping_consumers"]),
        (&1.into(), &1.into())
    );
    assert_eq!(s["waiters"], 1);
    assert_eq!(pids(&s["leases"]), [i64::from(consumer.pid)]);
    let run = inspect(&["show", &hex(ke.key())]);
    assert!(
        line_with(&run.stdout, "  consumers:").ends_with("1 registered to sleep, 1 asleep on DATA")
    );
    empty.send(b"wake").unwrap();
    assert_eq!(consumer.wait_timeout(BOUND), Exit::Code(0));
    empty.close().unwrap();
    assert_eq!(shmsem_of(ke.key())["queue"]["state"], "closed");
}

#[test]
#[parallel(world)]
fn show_a_condvar_with_a_waiter() {
    let (km, kc) = (TestKey::new(), TestKey::new());
    let (mk, ck) = (km.key(), kc.key());
    let mutex = SharedMutex::create(mk, 0u64).unwrap();
    let cv = SharedCondvar::create(ck).unwrap();
    let waiter = fork(move || {
        let (Ok(m), Ok(cv)) = (SharedMutex::<u64>::open(mk), SharedCondvar::open(ck)) else {
            return 1;
        };
        let Ok(g) = m.lock() else { return 2 };
        match cv.wait_timeout_while(g, BOUND, |v| *v == 0) {
            Ok((_, r)) if !r.timed_out() => 0,
            _ => 3,
        }
    });
    let asleep = wait_until(BOUND, || {
        let report = shmsem::inspect::show_key(ck).unwrap();
        let seg = report.segment.unwrap();
        seg.contents.managed().unwrap().waiters() == Some(1)
    });
    assert!(asleep, "the waiter never slept");
    let s = shmsem_of(ck);
    assert_eq!(s["kind"], "condvar");
    assert_eq!(
        s["condvar"],
        serde_json::json!({"waiting": 1, "sleeping": 1, "pending_wakeups": 0})
    );
    assert_eq!(
        (&s["holder"], &s["poisoned"]),
        (&Value::Null, &false.into())
    );
    assert_eq!(s["semaphores"].as_array().unwrap().len(), 256);
    assert_eq!(s["semaphores"][255]["name"], "WAKE(255)");
    assert_eq!(pids(&s["leases"]), [i64::from(waiter.pid)]);
    let run = inspect(&["show", &hex(ck)]);
    assert!(
        line_with(&run.stdout, "  waiters:")
            .ends_with("1 waiting (1 asleep), 0 wake-up(s) not yet taken")
    );
    assert!(line_with(&run.stdout, "shmsem:").contains("condvar (format version 2)"));
    assert!(line_with(&run.stdout, "WAKE(0..256):").contains("1 semaphore busy"));
    *mutex.lock().unwrap() = 1;
    cv.notify_all().unwrap();
    assert_eq!(waiter.join(), 0);
    assert_eq!(shmsem_of(ck)["condvar"]["waiting"], 0);
}

#[test]
#[serial(world)] // it counts attaches
fn show_a_lone_semaphore_set_with_a_sleeper_and_a_foreign_segment() {
    let (kl, kf) = (TestKey::new(), TestKey::new());
    let set = SemaphoreSet::create(kl.key(), 3, 0o600).unwrap();
    let k = kl.key();
    let sleeper = fork(move || {
        let Ok(set) = SemaphoreSet::open(k) else {
            return 1;
        };
        set.op_timeout(&[SemOp::wait(1)], BOUND).map_or(2, |_| 0)
    });
    assert!(wait_until(BOUND, || set.wait_count(1).unwrap() == 1));
    let v = show_json(kl.key());
    assert_eq!(v["segment"], Value::Null);
    let s = &v["semaphore_set"];
    assert_eq!((&s["nsems"], &s["pairs_with"]), (&3.into(), &Value::Null));
    assert_eq!(s["last_semop"], Value::Null);
    assert_eq!(
        s["semaphores"],
        serde_json::json!([
            {"index": 0, "name": null, "value": 0, "ncnt": 0, "zcnt": 0, "last_pid": 0},
            {"index": 1, "name": null, "value": 0, "ncnt": 1, "zcnt": 0, "last_pid": 0},
            {"index": 2, "name": null, "value": 0, "ncnt": 0, "zcnt": 0, "last_pid": 0},
        ])
    );
    let run = inspect(&["show", &hex(kl.key())]);
    assert!(line_with(&run.stdout, "segment:").ends_with("none"));
    assert!(line_with(&run.stdout, "last semop:").contains("never"));
    assert!(line_with(&run.stdout, "  #1:").contains("asleep: 1 for an increase"));
    set.op(&[SemOp::post(1)]).unwrap();
    let sleeper_pid = sleeper.pid;
    assert_eq!(sleeper.join(), 0);
    // The sleeper's decrement was the last operation on #1.
    let v = show_json(kl.key());
    assert_eq!(v["semaphore_set"]["semaphores"][1]["last_pid"], sleeper_pid);
    assert_eq!(v["semaphore_set"]["semaphores"][1]["ncnt"], 0);

    let foreign = Segment::create(kf.key(), 4096, 0o600).unwrap();
    let v = show_json(kf.key());
    assert_eq!(v["segment"]["contents"], "foreign");
    assert_eq!(v["segment"]["shmsem"], Value::Null);
    assert_eq!(v["semaphore_set"], Value::Null);
    assert_eq!(v["segment"]["attaches"], 1);
    drop(foreign);
}

#[test]
#[parallel(world)]
fn show_by_id_finds_private_and_removed_segments() {
    let k = TestKey::new();
    let m = SharedMutex::create(k.key(), 1u64).unwrap();
    let by_id = inspect(&["show", "--id", &m.shm_id().to_string(), "--json"]);
    assert_eq!(by_id.code, 0, "{by_id:?}");
    let v = &by_id.json_lines()[0];
    assert_eq!(v["segment"]["shmid"], m.shm_id());
    assert_eq!(v["semaphore_set"]["semid"], m.sem_id());
    for args in [
        vec!["show", &hex(k.key())],
        vec!["show", &k.key().as_raw().to_string()],
    ] {
        let run = inspect(&args);
        assert!(
            run.stdout.contains(&format!("shmid {}", m.shm_id())),
            "{run:?}"
        );
    }
    // Removed while attached: key 0, marked for removal, found by id only.
    m.remove().unwrap();
    let run = inspect(&["show", "--id", &m.shm_id().to_string(), "--json"]);
    let v = &run.json_lines()[0];
    assert_eq!(v["key"], "0x00000000");
    assert_eq!(v["segment"]["marked_for_removal"], true);
    assert_eq!(v["segment"]["shmsem"]["semid"], Value::Null);
    let run = inspect(&["show", "--id", &m.shm_id().to_string()]);
    assert!(run.stdout.contains("marked for removal"), "{run:?}");
    assert!(run.stdout.contains("IPC_PRIVATE"), "{run:?}");
}

#[test]
#[parallel(world)]
fn show_names_users_and_groups_through_the_system_and_numbers_without_a_name() {
    let k = TestKey::new();
    let seg = Segment::create(k.key(), 64, 0o600).unwrap();
    // Give the segment to a uid and gid that no user or group has.
    // SAFETY: shmid_ds is plain data; IPC_STAT fills it, IPC_SET reads it.
    unsafe {
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        assert_eq!(libc::shmctl(seg.id(), libc::IPC_STAT, &mut ds), 0);
        ds.shm_perm.uid = 4242;
        ds.shm_perm.gid = 4243;
        assert_eq!(libc::shmctl(seg.id(), libc::IPC_SET, &mut ds), 0);
    }
    let v = show_json(k.key());
    assert_eq!(
        v["segment"]["owner"],
        serde_json::json!({"uid": 4242, "user": null, "gid": 4243, "group": null})
    );
    assert_eq!(v["segment"]["creator"]["user"], "root");
    let run = inspect(&["show", &hex(k.key())]);
    assert!(line_with(&run.stdout, "  owner:").ends_with("4242 (uid 4242), group 4243 (gid 4243)"));
    assert!(line_with(&run.stdout, "  creator:").contains("root (uid 0), group root (gid 0)"));
    drop(seg);
}

#[test]
#[serial(world)] // another test's listing would be the last use
fn show_reports_the_last_user_not_this_look() {
    let k = TestKey::new();
    let key = k.key();
    let _mutex = SharedMutex::create(key, 0u64).unwrap();
    let mut user = fork(move || SharedMutex::<u64>::open(key).map_or(1, |_| 0));
    assert_eq!(user.wait_timeout(BOUND), Exit::Code(0));
    let v = show_json(key);
    assert_eq!(v["segment"]["last_pid"], user.pid);
    assert_eq!(v["segment"]["attaches"], 1);
    // (A second run would see the first one's look: to the kernel, a look by another
    // process is a use like any other. Within one run, looks never show: see top.rs.)
}

#[test]
#[serial(world)]
fn objects_we_may_not_read_are_reported_as_no_permission() {
    let k = TestKey::new();
    let key = k.key();
    let _mutex = SharedMutex::create(key, 1u64).unwrap(); // 0o600, root's
    let run = inspect_as(&["show", &hex(key)], 65534);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, "shmsem:").contains("no permission"));
    let run = inspect_as(&["show", &hex(key), "--json"], 65534);
    let v = run.json();
    assert_eq!(v["segment"]["contents"], "no_permission");
    assert_eq!(v["segment"]["shmsem"], Value::Null);
    assert_eq!(v["semaphore_set"]["semaphores"], Value::Null);
    assert!(
        v["semaphore_set"]["semaphores_error"]
            .as_str()
            .unwrap()
            .contains("ermission"),
        "{v}"
    );
    let run = inspect_as(&["list"], 65534);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, &hex(key)).contains("no permission"));
    let run = inspect_as(&["rm", &hex(key), "--json"], 65534);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["kind"], "permission_denied");
    assert_eq!(key_in_use(key), (true, true));
}

// ---------------------------------------------------------------------------------------
// rm and gc
// ---------------------------------------------------------------------------------------

#[test]
#[serial(world)] // it counts attaches
fn rm_removes_both_objects_of_a_pair_and_refuses_foreign_ones() {
    let (kr, kq, kf) = (TestKey::new(), TestKey::new(), TestKey::new());
    // An rwlock still attached by this process, which then sees it removed.
    let rw = SharedRwLock::create(kr.key(), 0u32).unwrap();
    let run = inspect(&["rm", &hex(kr.key())]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, "removed rwlock").contains(&format!(
        "{}: segment {} and semaphore set {}",
        hex(kr.key()),
        rw.shm_id(),
        rw.sem_id()
    )));
    assert!(run.stdout.contains("still attach"), "{run:?}");
    assert_eq!(key_in_use(kr.key()), (false, false));
    assert_eq!(rw.read().unwrap_err().kind(), shmsem::ErrorKind::Removed);

    let q = Queue::create(kq.key(), 64).unwrap();
    let run = inspect(&["remove", &hex(kq.key()), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["key"], hex(kq.key()));
    assert_eq!(v["kind"], "queue");
    assert_eq!(
        (&v["shmid"], &v["semid"]),
        (&q.shm_id().into(), &q.sem_id().into())
    );
    // This process's handle (and, for a moment, any inspector on the machine).
    assert!(v["attaches"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(key_in_use(kq.key()), (false, false));

    // A foreign pair: refused, untouched; forced, removed.
    let seg = Segment::create(kf.key(), 4096, 0o600).unwrap();
    let set = SemaphoreSet::create(kf.key(), 1, 0o600).unwrap();
    let run = inspect(&["rm", &hex(kf.key())]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("not removed (--force removes it anyway)")
    );
    assert_eq!(key_in_use(kf.key()), (true, true));
    let run = inspect(&["rm", "-f", &hex(kf.key()), "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(
        (&v["kind"], &v["shmid"], &v["semid"]),
        (&Value::Null, &seg.id().into(), &set.id().into())
    );
    assert_eq!(key_in_use(kf.key()), (false, false));
}

/// A pair made by a forked child that then exits: creator gone, nobody attached.
fn abandoned_mutex(key: Key) {
    let code = fork(move || match SharedMutex::create(key, 5u64) {
        Ok(_m) => 0,
        Err(_) => 1,
    })
    .join();
    assert_eq!(code, 0);
}

#[test]
#[serial(world)]
fn gc_dry_run_then_for_real_in_text_and_json() {
    let (ab, ab2, live, foreign) = (
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
    );
    abandoned_mutex(ab.key());
    abandoned_mutex(ab2.key());
    drop(SharedMutex::create(live.key(), 1u64).unwrap());
    let k = foreign.key();
    assert_eq!(
        fork(move || Segment::create(k, 4096, 0o600).map_or(1, |_| 0)).join(),
        0
    );
    let (a, a2, l, f) = (
        hex(ab.key()),
        hex(ab2.key()),
        hex(live.key()),
        hex(foreign.key()),
    );
    let filter = ["--key", &a, "--key", &l, "--key", &f];
    let run = inspect(&[&["gc", "--dry-run"][..], &filter].concat());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, &a).starts_with(&format!("would remove mutex {a}")));
    assert!(line_with(&run.stdout, &l).starts_with(&format!("kept mutex {l}")));
    assert!(
        !run.stdout.contains(&f),
        "a foreign segment was considered: {run:?}"
    );
    assert!(
        run.stdout
            .contains("gc (dry run): 1 would remove, 1 kept, 0 failed")
    );
    assert_eq!(key_in_use(ab.key()), (true, true));

    let run = inspect(&[&["gc", "-n", "--json"][..], &filter].concat());
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["dry_run"], true);
    let collected = &v["collected"][0];
    assert_eq!(collected["key"], a.as_str());
    assert_eq!(collected["kind"], "mutex");
    assert_eq!(collected["creator"]["state"], "dead");
    assert_eq!(collected["attaches"], 0);
    assert!(collected["semid"].as_i64().is_some());
    assert!(collected.get("reason").is_none());
    let kept = find(&v["kept"], "key", &l.as_str().into());
    assert!(kept["reason"].as_str().unwrap().contains("alive"), "{kept}");
    assert_eq!(v["failed"], serde_json::json!([]));
    assert_eq!(v["collected"].as_array().unwrap().len(), 1);

    let run = inspect(&[&["gc", "--dry-run", "--min-age", "3600"][..], &filter].concat());
    assert_eq!(run.code, 0);
    assert!(line_with(&run.stdout, &a).contains("minimum age"));

    let run = inspect(&[&["gc"][..], &filter].concat());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, &a).starts_with(&format!("removed mutex {a}")));
    assert!(run.stdout.contains("gc: 1 removed, 1 kept, 0 failed"));
    assert_eq!(key_in_use(ab.key()), (false, false));
    assert_eq!(key_in_use(live.key()), (true, true));
    assert_eq!(key_in_use(foreign.key()), (true, false));

    let run = inspect(&["gc", "--key", &a2, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["collected"][0]["key"], a2.as_str());
    assert_eq!(key_in_use(ab2.key()), (false, false));
}

#[test]
#[parallel(world)]
fn limits_are_the_kernels_in_text_and_json() {
    let (shm, sem) = (shmsem::shm_limits().unwrap(), shmsem::sem_limits().unwrap());
    let run = inspect(&["limits", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let v = run.json();
    assert_eq!(v["shmmax"], shm.shmmax);
    assert_eq!(v["shmmni"], shm.shmmni);
    assert_eq!(v["shmall_pages"], shm.shmall);
    assert_eq!(v["page_size"], shm.page_size);
    assert_eq!(v["semmsl"], sem.semmsl);
    assert_eq!(v["semmns"], sem.semmns);
    assert_eq!(v["semopm"], sem.semopm);
    assert_eq!(v["semmni"], sem.semmni);
    assert_eq!(v["semvmx"], sem.semvmx);
    let run = inspect(&["limits"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(line_with(&run.stdout, "semmsl").contains(&sem.semmsl.to_string()));
    assert!(line_with(&run.stdout, "shmmni").contains("kernel.shmmni"));
}
