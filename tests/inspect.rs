//! `shmsem::inspect` against real objects: managed pairs (mutex, rwlock, queue, condvar),
//! foreign segments, a lock held by a live process, one whose holder was SIGKILLed,
//! objects this user may not read; `list`, `show`, `remove` and `gc`. (The
//! `shmsem-inspect` binary is tested in its own crate: inspect-cli/tests.)
//!
//! `gc` only ever runs with a key filter of this test's own keys (an unfiltered run is
//! only ever a dry run), so it cannot remove objects of tests running at the same time.
//! Tests that list every segment (which attaches each one for a moment) and tests that
//! garbage-collect (which need `nattch` to be exact) run one at a time
//! (`#[serial(world)]`), so that a listing in one test never shows up as an attach in
//! another's gc. The others run in parallel with each other but never beside those
//! (`#[parallel(world)]`): a fork in any thread of this process copies every attach the
//! process holds, an attach and a detach of each to the kernel.

mod common;

use serial_test::{parallel, serial};

use common::{BOUND, Exit, HeldMutex, TestKey, fork, fork_as_nobody, key_in_use, killed_inside};
use shmsem::header::ObjectKind;
use shmsem::inspect::{self, Contents, GcOptions, Liveness, Managed, QueueStatus, SegmentReport};
use shmsem::{ErrorKind, Key, LockError, Queue, Segment, SemaphoreSet, SharedMutex, SharedRwLock};

fn me() -> i32 {
    std::process::id() as i32
}

fn segment_of(key: Key) -> SegmentReport {
    inspect::show_key(key)
        .unwrap()
        .segment
        .unwrap_or_else(|| panic!("no segment for {key}"))
}

fn managed(report: &SegmentReport) -> &Managed {
    match &report.contents {
        Contents::Managed(m) => m,
        other => panic!("{} is not managed: {other:?}", report.record.key),
    }
}

/// A pair made by a forked child that then exits: creator gone, nobody attached.
fn abandoned_mutex(key: Key) {
    let code = fork(move || match SharedMutex::create(key, 5u64) {
        Ok(_m) => 0, // dropped: detached
        Err(_) => 1,
    })
    .join();
    assert_eq!(code, 0);
}

// ---------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------

#[test]
#[serial(world)]
fn list_decodes_mutex_rwlock_and_foreign_segments() {
    let (km, kr, kf, ks) = (
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
    );
    let mutex = SharedMutex::create(km.key(), 7u64).unwrap();
    let rw = SharedRwLock::create(kr.key(), [1u32; 4]).unwrap();
    let foreign = Segment::create(kf.key(), 256, 0o600).unwrap();
    foreign
        .write_all_at(b"not a shmsem header at all", 0)
        .unwrap();
    let small = Segment::create(ks.key(), 16, 0o600).unwrap();
    let listing = inspect::list().unwrap();
    let find = |key: Key| {
        listing
            .segments
            .iter()
            .find(|s| s.record.key == key)
            .unwrap_or_else(|| panic!("{key} not listed"))
    };

    let m = find(km.key());
    assert_eq!(m.record.id, mutex.shm_id());
    assert_eq!(m.record.size, 72);
    assert!(m.record.nattch >= 1);
    assert_eq!(m.record.cpid, me());
    assert_eq!(m.creator.liveness, Liveness::Alive);
    let mm = managed(m);
    assert_eq!(mm.kind, ObjectKind::Mutex);
    // The lock, then 256 lease slots of two semaphores (docs/FORMAT.md, "Leases").
    assert_eq!(
        (mm.payload_size, mm.payload_offset, mm.nsems),
        (8, 64, 1 + 2 * 256)
    );
    assert_eq!(mm.semaphores.as_ref().unwrap().id, mutex.sem_id());
    assert!(mm.is_paired());
    assert_eq!(mm.semaphore_values.as_deref(), Some(&[1][..]));
    assert_eq!(mm.holder, None);
    assert!(!mm.is_poisoned());

    let r = managed(find(kr.key()));
    assert_eq!(r.kind, ObjectKind::RwLock);
    assert_eq!((r.payload_size, r.nsems), (16, 3 + 2 * 256));
    assert_eq!(r.semaphores.as_ref().unwrap().id, rw.sem_id());
    assert_eq!(r.semaphore_values.as_deref(), Some(&[0, 0, 0][..]));

    match &find(kf.key()).contents {
        Contents::Foreign(why) => assert!(why.contains("magic"), "{why}"),
        other => panic!("foreign segment seen as {other:?}"),
    }
    match &find(ks.key()).contents {
        Contents::Foreign(why) => assert!(why.contains("too small"), "{why}"),
        other => panic!("16-byte segment seen as {other:?}"),
    }

    // The sets pair with their segments.
    let set = |key: Key| {
        listing
            .semaphore_sets
            .iter()
            .find(|s| s.key == key)
            .unwrap()
    };
    let paired = listing.paired_segment(set(km.key())).unwrap();
    assert_eq!(paired.record.id, mutex.shm_id());
    assert_eq!(set(kr.key()).nsems, 3 + 2 * 256);

    drop((mutex, rw, foreign, small));
}

#[test]
#[parallel(world)]
fn odd_segments_never_panic() {
    let (kc, kd) = (TestKey::new(), TestKey::new());
    // A header with the magic and version but an unknown kind.
    let corrupt = Segment::create(kc.key(), 128, 0o600).unwrap();
    let mut header = [0u8; 64];
    header[..8].copy_from_slice(b"shmsem\0\0");
    header[8..12].copy_from_slice(&shmsem::header::VERSION.to_ne_bytes());
    header[12..16].copy_from_slice(&9u32.to_ne_bytes());
    corrupt.write_all_at(&header, 0).unwrap();
    match segment_of(kc.key()).contents {
        Contents::Foreign(why) => assert!(why.contains("kind 9"), "{why}"),
        other => panic!("corrupt header seen as {other:?}"),
    }

    // A mutex removed while still attached: its key becomes 0, its mode has SHM_DEST;
    // it is found by id, still decodes, and has no semaphore set any more.
    let m = SharedMutex::create(kd.key(), 1u64).unwrap();
    m.remove().unwrap();
    let reports = inspect::show_id(m.shm_id()).unwrap();
    let seg = reports[0].segment.as_ref().unwrap();
    assert_eq!(seg.record.id, m.shm_id());
    assert!(seg.record.key.is_private());
    assert!(seg.record.is_marked_for_removal());
    let mm = managed(seg);
    assert_eq!(mm.kind, ObjectKind::Mutex);
    assert_eq!(mm.semaphores, None);

    // Key 0 names no single object.
    let e = inspect::show_key(Key::PRIVATE).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    drop((corrupt, m));
}

// ---------------------------------------------------------------------------------------
// Holders: alive, and killed inside
// ---------------------------------------------------------------------------------------

#[test]
#[parallel(world)]
fn held_lock_shows_a_live_holder() {
    let (km, kr) = (TestKey::new(), TestKey::new());
    let mutex = SharedMutex::create(km.key(), 0u64).unwrap();
    let guard = mutex.lock().unwrap();
    let seg = segment_of(km.key());
    let m = managed(&seg);
    let holder = m.holder.unwrap();
    assert_eq!(holder.pid, me());
    assert_eq!(holder.liveness, Liveness::Alive);
    assert!(!m.is_poisoned());
    assert_eq!(m.semaphore_values.as_deref(), Some(&[0][..]));

    drop(guard);
    let seg = segment_of(km.key());
    assert_eq!(managed(&seg).holder, None);
    assert_eq!(managed(&seg).semaphore_values.as_deref(), Some(&[1][..]));

    // Readers are counted by the semaphores, not recorded as holders.
    let rw = SharedRwLock::create(kr.key(), 0u64).unwrap();
    let (a, b) = (rw.read().unwrap(), rw.read().unwrap());
    let seg = segment_of(kr.key());
    assert_eq!(
        managed(&seg).semaphore_values.as_deref(),
        Some(&[0, 2, 0][..])
    );
    assert_eq!(managed(&seg).holder, None);
    drop((a, b));
    let w = rw.write().unwrap();
    let seg = segment_of(kr.key());
    assert_eq!(managed(&seg).holder.unwrap().pid, me());
    assert_eq!(
        managed(&seg).semaphore_values.as_deref(),
        Some(&[1, 0, 0][..])
    );
    drop(w);
}

#[test]
#[serial(world)]
fn holder_killed_inside_shows_dead_and_poisoned() {
    let k = TestKey::new();
    let key = k.key();
    let mutex = SharedMutex::create(key, 40u64).unwrap();
    let pid = killed_inside(key);

    let seg = segment_of(key);
    let m = managed(&seg);
    let holder = m.holder.unwrap();
    assert_eq!(holder.pid, pid);
    assert_eq!(holder.liveness, Liveness::Dead);
    assert_eq!(m.poison, None, "nobody has locked since");
    assert_eq!(m.poisoned_by().map(|p| p.pid), Some(pid));
    assert!(m.is_poisoned());
    // SEM_UNDO gave the lock back.
    assert_eq!(m.semaphore_values.as_deref(), Some(&[1][..]));

    // The next locker is told, repairs, clears; the tool then sees a healthy lock.
    match mutex.lock() {
        Err(LockError::Poisoned(p)) => {
            assert_eq!(p.owner_pid(), Some(pid));
            let mut g = p.into_inner();
            *g = 40;
            mutex.clear_poison();
        }
        other => panic!("expected Poisoned, got {:?}", other.map(|g| *g)),
    }
    let seg = segment_of(key);
    let m = managed(&seg);
    assert_eq!((m.holder, m.poison), (None, None));
    assert!(!m.is_poisoned());
}

#[test]
#[serial(world)]
fn objects_we_may_not_read_are_reported_as_no_permission() {
    let k = TestKey::new();
    let key = k.key();
    let mutex = SharedMutex::create(key, 1u64).unwrap(); // 0o600, root's
    let code = fork_as_nobody(move || {
        let Ok(report) = inspect::show_key(key) else {
            return 10;
        };
        match report.segment.map(|s| s.contents) {
            Some(Contents::NoPermission) => {}
            _ => return 11,
        }
        let Ok(listing) = inspect::list() else {
            return 12;
        };
        let ours = listing.segments.iter().find(|s| s.record.key == key);
        if !matches!(ours.map(|s| &s.contents), Some(Contents::NoPermission)) {
            return 13;
        }
        match inspect::remove(key, false) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => 0,
            _ => 14,
        }
    })
    .join();
    assert_eq!(code, 0);
    assert_eq!(key_in_use(key), (true, true));

    drop(mutex);
}

// ---------------------------------------------------------------------------------------
// show
// ---------------------------------------------------------------------------------------

#[test]
#[parallel(world)]
fn show_by_key_and_by_id() {
    let (k, lone, missing) = (TestKey::new(), TestKey::new(), TestKey::new());
    let mutex = SharedMutex::create(k.key(), 3u64).unwrap();

    let by_key = inspect::show_key(k.key()).unwrap();
    assert_eq!(by_key.key, k.key());
    assert_eq!(by_key.semaphore_set.as_ref().unwrap().id, mutex.sem_id());
    let by_shm_id = inspect::show_id(mutex.shm_id()).unwrap();
    assert_eq!(by_shm_id[0].key, k.key());
    assert_eq!(
        by_shm_id[0].segment.as_ref().unwrap().record.id,
        mutex.shm_id()
    );
    assert_eq!(
        by_shm_id[0].semaphore_set.as_ref().unwrap().id,
        mutex.sem_id()
    );
    let by_sem_id = inspect::show_id(mutex.sem_id()).unwrap();
    let r = by_sem_id
        .iter()
        .find(|r| {
            r.semaphore_set
                .as_ref()
                .is_some_and(|s| s.id == mutex.sem_id())
        })
        .unwrap();
    assert_eq!(r.key, k.key());
    assert_eq!(r.segment.as_ref().unwrap().record.id, mutex.shm_id());

    // A semaphore set alone under a key.
    let set = SemaphoreSet::create(lone.key(), 2, 0o600).unwrap();
    let r = inspect::show_key(lone.key()).unwrap();
    assert!(r.segment.is_none());
    assert_eq!(r.semaphore_set.unwrap().nsems, 2);

    // Nothing there.
    let e = inspect::show_key(missing.key()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    drop((mutex, set));
}

// ---------------------------------------------------------------------------------------
// rm
// ---------------------------------------------------------------------------------------

#[test]
#[serial(world)] // it counts attaches
fn rm_removes_both_objects_of_a_pair_and_refuses_foreign_ones() {
    let (km, kr, kf, kl, missing) = (
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
        TestKey::new(),
    );
    // Library: a mutex nobody attaches.
    let m = SharedMutex::create(km.key(), 1u64).unwrap();
    let (shm_id, sem_id) = (m.shm_id(), m.sem_id());
    drop(m);
    let removed = inspect::remove(km.key(), false).unwrap();
    assert_eq!(removed.shm_id, Some(shm_id));
    assert_eq!(removed.sem_id, Some(sem_id));
    assert_eq!(removed.kind, Some(ObjectKind::Mutex));
    assert_eq!(key_in_use(km.key()), (false, false));

    // An rwlock still attached by this process, which then sees it removed.
    let rw = SharedRwLock::create(kr.key(), 0u32).unwrap();
    let removed = inspect::remove(kr.key(), false).unwrap();
    assert_eq!(removed.kind, Some(ObjectKind::RwLock));
    assert_eq!(removed.nattch, 1);
    assert_eq!(key_in_use(kr.key()), (false, false));
    assert_eq!(rw.read().unwrap_err().kind(), ErrorKind::Removed);

    // A foreign segment (with a semaphore set under the same key): refused, untouched.
    let seg = Segment::create(kf.key(), 4096, 0o600).unwrap();
    let set = SemaphoreSet::create(kf.key(), 1, 0o600).unwrap();
    let e = inspect::remove(kf.key(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotManaged);
    assert!(e.to_string().contains("not a shmsem segment"), "{e}");
    assert_eq!(key_in_use(kf.key()), (true, true));
    assert_eq!(seg.info().unwrap().nattch, 1);
    // Forced: both go.
    let removed = inspect::remove(kf.key(), true).unwrap();
    assert_eq!(removed.kind, None);
    assert_eq!(key_in_use(kf.key()), (false, false));
    drop((seg, set));

    // A lone semaphore set: not a pair.
    let _lone = SemaphoreSet::create(kl.key(), 1, 0o600).unwrap();
    let e = inspect::remove(kl.key(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotManaged);
    assert_eq!(key_in_use(kl.key()), (false, true));
    inspect::remove(kl.key(), true).unwrap();
    assert_eq!(key_in_use(kl.key()), (false, false));

    // Nothing there; key 0.
    let e = inspect::remove(missing.key(), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = inspect::remove(Key::PRIVATE, true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

// ---------------------------------------------------------------------------------------
// gc
// ---------------------------------------------------------------------------------------

#[test]
#[serial(world)]
fn gc_removes_only_abandoned_managed_pairs() {
    let ab = TestKey::new(); // mutex, creator exited, nobody attached: garbage
    let ab_rw = TestKey::new(); // the same, an rwlock
    let live = TestKey::new(); // creator (this process) alive, nobody attached
    let att = TestKey::new(); // creator exited, this process attached
    let foreign = TestKey::new(); // raw segment, creator exited, nobody attached
    let mis = TestKey::new(); // managed segment, but its key's set has another size
    let keys = [&ab, &ab_rw, &live, &att, &foreign, &mis].map(|k| k.key());

    abandoned_mutex(ab.key());
    let k = ab_rw.key();
    assert_eq!(
        fork(move || SharedRwLock::create(k, [0u8; 32]).map_or(1, |_| 0)).join(),
        0
    );
    drop(SharedMutex::create(live.key(), 1u64).unwrap());
    abandoned_mutex(att.key());
    let attached = SharedMutex::<u64>::open(att.key()).unwrap();
    let k = foreign.key();
    assert_eq!(
        fork(move || Segment::create(k, 4096, 0o600).map_or(1, |_| 0)).join(),
        0
    );
    let k = mis.key();
    let code = fork(move || {
        let Ok(m) = SharedMutex::create(k, 1u64) else {
            return 1;
        };
        let ok = m.semaphores().remove().is_ok() && SemaphoreSet::create(k, 5, 0o600).is_ok();
        if ok { 0 } else { 2 }
    })
    .join();
    assert_eq!(code, 0);
    let options = keys
        .iter()
        .fold(GcOptions::new(), |o, k| o.key(*k))
        .dry_run(true);
    let collected = |r: &inspect::GcReport| {
        let mut v: Vec<Key> = r.collected.iter().map(|e| e.key).collect();
        v.sort();
        v
    };
    let kept = |r: &inspect::GcReport, key: Key| -> String {
        r.kept
            .iter()
            .find(|(e, _)| e.key == key)
            .map(|(_, why)| why.clone())
            .unwrap_or_else(|| panic!("{key} not among the kept: {r:?}"))
    };
    let mut garbage = vec![ab.key(), ab_rw.key()];
    garbage.sort();

    // Dry run: reports, removes nothing.
    let report = inspect::gc(&options).unwrap();
    assert!(report.dry_run);
    assert_eq!(collected(&report), garbage, "{report:?}");
    assert!(report.failed.is_empty());
    let e = report.collected.iter().find(|e| e.key == ab.key()).unwrap();
    assert_eq!(e.kind, ObjectKind::Mutex);
    assert_eq!(e.creator.liveness, Liveness::Dead);
    assert!(e.sem_id.is_some());
    assert!(kept(&report, live.key()).contains("creator"));
    assert!(kept(&report, att.key()).contains("attached"));
    assert!(kept(&report, mis.key()).contains("5 semaphores"));
    assert!(report.kept.iter().all(|(e, _)| e.key != foreign.key()));
    for key in keys {
        let want = (true, key != foreign.key());
        assert_eq!(key_in_use(key), want, "{key} changed in a dry run");
    }
    // Unfiltered, a dry run sees our garbage too (and still removes nothing).
    let all = inspect::gc(&GcOptions::new().dry_run(true)).unwrap();
    assert!(all.collected.iter().any(|e| e.key == ab.key()));
    assert_eq!(key_in_use(ab.key()), (true, true));

    // A minimum age spares them.
    let young = inspect::gc(
        &options
            .clone()
            .min_age(std::time::Duration::from_secs(3600)),
    );
    let young = young.unwrap();
    assert!(young.collected.is_empty());
    assert!(kept(&young, ab.key()).contains("minimum age"));

    // For real: only the garbage goes, both of its objects.
    let report = inspect::gc(&options.clone().dry_run(false)).unwrap();
    assert!(!report.dry_run);
    assert_eq!(collected(&report), garbage, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(key_in_use(ab.key()), (false, false));
    assert_eq!(key_in_use(ab_rw.key()), (false, false));
    for key in [live.key(), att.key(), mis.key()] {
        assert_eq!(key_in_use(key), (true, true), "{key} was touched");
    }
    assert_eq!(
        key_in_use(foreign.key()),
        (true, false),
        "the foreign one was touched"
    );
    assert_eq!(*attached.lock().unwrap(), 5);
    assert!(SharedMutex::<u64>::open(live.key()).is_ok());

    // Nothing left to collect.
    let again = inspect::gc(&options.dry_run(false)).unwrap();
    assert!(again.collected.is_empty(), "{again:?}");
}

#[test]
#[parallel(world)]
fn a_condvar_shows_its_waiters() {
    let (km, kc) = (TestKey::new(), TestKey::new());
    let mutex = SharedMutex::create(km.key(), 0u64).unwrap();
    let cv = shmsem::SharedCondvar::create(kc.key()).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = mutex.lock().unwrap();
            let r = cv.wait_timeout_while(g, BOUND, |v| *v == 0);
            r.map(|(_, r)| r.timed_out()).ok()
        });
        assert!(common::wait_until(BOUND, || cv.waiters().unwrap() == 1));
        let seg = segment_of(kc.key());
        let m = managed(&seg);
        assert_eq!(m.kind, ObjectKind::Condvar);
        assert_eq!(m.leases_held, Some(1));
        // Its own semaphores are the 256 wake-ups: nothing pending, one asleep.
        let states = m.semaphore_states.as_ref().unwrap();
        assert_eq!(states.len(), 256);
        assert_eq!(states.iter().map(|s| s.value).sum::<i32>(), 0);
        assert!(common::wait_until(BOUND, || {
            let seg = segment_of(kc.key());
            managed(&seg).waiters() == Some(1)
        }));
        *mutex.lock().unwrap() = 1;
        cv.notify_all().unwrap();
        assert_eq!(waiter.join().unwrap(), Some(false));
    });
    let seg = segment_of(kc.key());
    assert_eq!(managed(&seg).leases_held, Some(0));
}

// ---------------------------------------------------------------------------------------
// Queues, waiters, leases, the last user
// ---------------------------------------------------------------------------------------

#[test]
#[parallel(world)]
fn a_queue_shows_its_messages_and_its_sleepers() {
    let (kf, ke) = (TestKey::new(), TestKey::new());
    let full = Queue::create(kf.key(), 4096).unwrap();
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
    let seg = segment_of(kf.key());
    let m = managed(&seg);
    assert_eq!(m.kind, ObjectKind::Queue);
    let q = m.queue.as_ref().unwrap();
    assert_eq!(q.status, QueueStatus::Open);
    assert_eq!(q.capacity, 4096);
    assert_eq!(q.messages_waiting, Some(3), "{q:?}");
    assert_eq!((q.bytes_waiting, q.message_bytes), (56, Some(13)));
    assert_eq!((q.head, q.tail), (0, 56));
    assert_eq!((q.producer_lock, q.consumer_lock), (None, None));
    assert_eq!((q.waiting_consumers, q.waiting_producers), (0, 0));
    assert_eq!(q.problem, None);
    let mut buf = Vec::new();
    full.recv(&mut buf).unwrap();
    let seg = segment_of(kf.key());
    let q = managed(&seg).queue.clone().unwrap();
    assert_eq!((q.messages_waiting, q.bytes_waiting), (Some(2), 40));
    full.close().unwrap();
    let seg = segment_of(kf.key());
    assert_eq!(
        managed(&seg).queue.as_ref().unwrap().status,
        QueueStatus::Closed
    );

    // A consumer of another process asleep on an empty queue: registered, and counted by
    // the kernel on DATA.
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
    let asleep = common::wait_until(BOUND, || {
        let seg = segment_of(ke.key());
        let m = managed(&seg);
        let data = m.semaphore_states.as_ref().unwrap()[0];
        data.ncnt == 1 && m.queue.as_ref().unwrap().waiting_consumers == 1
    });
    assert!(asleep, "the consumer never slept on DATA");
    let seg = segment_of(ke.key());
    let m = managed(&seg);
    assert_eq!(m.waiters(), Some(1));
    assert_eq!(m.queue.as_ref().unwrap().messages_waiting, Some(0));
    // Its handle holds a lease: the consumer's pid, as the kernel recorded it.
    let leases = m.leases.as_ref().unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].pid, consumer.pid);
    empty.send(b"wake").unwrap();
    assert_eq!(consumer.wait_timeout(BOUND), Exit::Code(0));
}

#[test]
#[parallel(world)]
fn the_kernel_counts_a_mutexs_sleepers_and_names_its_handles() {
    let k = TestKey::new();
    let key = k.key();
    let mutex = SharedMutex::create(key, 0u64).unwrap();
    let lockers = HeldMutex::new(key);
    let (holder, waiter) = (&lockers.holder, &lockers.waiter);
    let asleep = common::wait_until(BOUND, || mutex.semaphores().wait_count(0).unwrap() == 1);
    assert!(asleep, "the second locker never slept");
    let seg = segment_of(key);
    let m = managed(&seg);
    let lock = m.semaphore_states.as_ref().unwrap()[0];
    assert_eq!((lock.value, lock.ncnt, lock.zcnt), (0, 1, 0));
    assert_eq!(lock.last_pid, holder.pid);
    assert_eq!(m.waiters(), Some(1));
    assert_eq!(m.holder.unwrap().pid, holder.pid);
    let mut pids: Vec<i32> = m.leases.as_ref().unwrap().iter().map(|l| l.pid).collect();
    pids.sort();
    let mut want = vec![holder.pid, waiter.pid];
    want.sort();
    assert_eq!(pids, want);
    lockers.release();
    let seg = segment_of(key);
    assert_eq!(managed(&seg).waiters(), Some(0));
    assert_eq!(managed(&seg).leases.as_ref().unwrap().len(), 0);
}

#[test]
#[serial(world)] // a listing in another test would be a look of this process's too
fn the_last_user_is_the_users_also_when_this_process_looks_again() {
    let k = TestKey::new();
    let key = k.key();
    let _mutex = SharedMutex::create(key, 0u64).unwrap();
    // Another process attaches (opens) and detaches (exits): the last user.
    let mut user = fork(move || SharedMutex::<u64>::open(key).map_or(1, |_| 0));
    assert_eq!(user.wait_timeout(BOUND), Exit::Code(0));
    for _ in 0..3 {
        let seg = segment_of(key);
        assert_eq!(
            seg.record.lpid, user.pid,
            "the inspector's own look is shown"
        );
        assert_eq!(seg.record.nattch, 1);
    }
    // A use after the looks is the news.
    let mut later = fork(move || SharedMutex::<u64>::open(key).map_or(1, |_| 0));
    assert_eq!(later.wait_timeout(BOUND), Exit::Code(0));
    assert_eq!(segment_of(key).record.lpid, later.pid);
    assert_eq!(segment_of(key).record.lpid, later.pid);
}
