//! Queue across real processes: order and content, many producers and consumers, lost
//! wake-ups, close, limits, timeouts, crashes (writers and readers SIGKILLed mid-copy,
//! dead lock holders), removal, layout checks, permissions.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::queue::{
    CONSUMER_LOCK, HEAD, PRODUCER_LOCK, TAIL, payload_offset, read_i32, read_u64, write_i32,
};
use common::{BOUND, Child, Exit, Pipe, TestKey, fork, fork_as_nobody, wait_until};
use shmsem::{ErrorKind, Key, Queue, Segment, SemOp, SemaphoreSet, SharedMutex};

/// The ErrorKind a failed call reports, as a small exit code for children.
fn code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::Removed => 10,
        ErrorKind::Closed => 11,
        ErrorKind::TimedOut => 12,
        ErrorKind::WouldBlock => 13,
        ErrorKind::PermissionDenied => 14,
        _ => 19,
    }
}

/// Semaphore indexes.
const DATA: usize = 0;
const SPACE: usize = 1;

/// Per-call bound in the lost-wake-up tests: generous (each call normally takes
/// microseconds), and shorter than the 5 s after which a sleeper looks again on its own
/// (the safety net for a waker killed between its decrement and its post), so a lost
/// wake-up shows up as `TimedOut` instead of hiding behind that second look.
const WAKE_BOUND: Duration = Duration::from_secs(2);

/// Deterministic message contents: message `i` of length `len`.
fn pattern(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i.wrapping_mul(31) as usize + j * 7 + (j >> 8)) as u8)
        .collect()
}

/// Waits (bounded) until `n` processes sleep on semaphore `sem` of the set with `key`.
fn wait_for_sleepers(key: Key, sem: usize, n: usize) {
    let set = SemaphoreSet::open(key).unwrap();
    assert!(
        wait_until(BOUND, || set.wait_count(sem).unwrap() == n),
        "{n} sleepers on semaphore {sem} expected"
    );
}

/// Waits (bounded) until the child is a zombie (exited, not reaped).
fn wait_for_zombie(pid: i32) {
    let zombie = || {
        std::fs::read(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            let i = s.iter().rposition(|&b| b == b')').unwrap();
            s[i + 2] == b'Z'
        })
    };
    assert!(wait_until(BOUND, zombie), "child {pid} did not exit");
}

#[test]
fn spsc_keeps_order_and_content_across_wrap_around() {
    spsc_across_wrap_around(4096);
}

/// The same with a capacity that is no power of two: ring indexes come from a division
/// there, from a mask at 4096.
#[test]
fn spsc_wraps_around_a_ring_of_any_capacity() {
    spsc_across_wrap_around(4000);
}

fn spsc_across_wrap_around(capacity: usize) {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), capacity).unwrap();
    let max = q.max_message_len();
    assert_eq!(max, capacity - 8);
    // Every size class: empty, tiny, exactly 8, near and at the maximum, odd sizes that
    // leave padding, so records start and wrap at every alignment.
    let sizes: Vec<usize> = (0..4000)
        .map(|i| match i % 8 {
            0 => 0,
            1 => i % 17,
            2 => 8,
            3 => max,
            4 => max - 1 - i % 13,
            5 => 1000 + i % 501,
            6 => i % 3001,
            _ => 2048 + i % 9,
        })
        .collect();
    let to_send = sizes.clone();
    let key = tk.key();
    let producer = fork(move || {
        let q = Queue::open(key).unwrap();
        for (i, &len) in to_send.iter().enumerate() {
            if let Err(e) = q.send_timeout(&pattern(i as u64, len), BOUND) {
                return code(e.kind());
            }
        }
        q.close().map_or(3, |()| 0)
    });
    let mut msg = Vec::new();
    let mut bytes = 0;
    for (i, &len) in sizes.iter().enumerate() {
        q.recv_timeout(&mut msg, BOUND).unwrap();
        assert_eq!(msg.len(), len, "message {i}");
        assert!(msg == pattern(i as u64, len), "message {i} differs");
        bytes += len;
    }
    assert!(bytes > 100 * capacity, "the ring wrapped many times");
    let e = q.recv_timeout(&mut msg, BOUND).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(msg.is_empty());
    assert_eq!(producer.join(), 0);
}

/// Message `seq` of producer `p`: tag, then a filler that depends on both.
fn tagged(p: u32, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + 200);
    m.extend_from_slice(&p.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    let filler = (seq as usize * 13 + p as usize * 5) % 200;
    m.extend((0..filler).map(|j| (j as u32 ^ seq ^ (p << 4)) as u8));
    m
}

fn untag(m: &[u8]) -> Option<(u32, u32)> {
    if m.len() < 8 {
        return None;
    }
    let p = u32::from_ne_bytes(m[..4].try_into().unwrap());
    let seq = u32::from_ne_bytes(m[4..8].try_into().unwrap());
    (tagged(p, seq) == m).then_some((p, seq))
}

/// Runs `producers` x `consumers` processes over a queue of `capacity` bytes; every
/// message must arrive exactly once, whole, and each consumer sees each producer's
/// messages in order. `spin` is the handles' spin limit (zero: sleep at once, which
/// exercises the wake-up protocol on every empty or full queue).
fn mpmc(
    producers: u32,
    consumers: usize,
    per_producer: u32,
    capacity: usize,
    spin: Duration,
    op_bound: Duration,
) {
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, capacity).unwrap();
    let pipes: Vec<Pipe> = (0..consumers).map(|_| Pipe::new()).collect();
    let mut consumer_children = Vec::new();
    for pipe in &pipes {
        consumer_children.push(fork(move || {
            let q = Queue::open(key).unwrap();
            q.set_spin_limit(spin);
            let mut got: Vec<u8> = Vec::new();
            let mut n: u32 = 0;
            let mut msg = Vec::new();
            loop {
                match q.recv_timeout(&mut msg, op_bound) {
                    Ok(()) => match untag(&msg) {
                        Some((p, seq)) => {
                            got.extend_from_slice(&p.to_ne_bytes());
                            got.extend_from_slice(&seq.to_ne_bytes());
                            n += 1;
                        }
                        None => return 2, // torn or foreign bytes
                    },
                    Err(e) if e.kind() == ErrorKind::Closed => break,
                    Err(e) => return code(e.kind()),
                }
            }
            pipe.send(&n.to_ne_bytes());
            pipe.send(&got);
            0
        }));
    }
    let producer_children: Vec<_> = (0..producers)
        .map(|p| {
            fork(move || {
                let q = Queue::open(key).unwrap();
                q.set_spin_limit(spin);
                for seq in 0..per_producer {
                    if let Err(e) = q.send_timeout(&tagged(p, seq), op_bound) {
                        return code(e.kind());
                    }
                }
                0
            })
        })
        .collect();
    for child in producer_children {
        assert_eq!(child.join(), 0, "a producer failed");
    }
    q.close().unwrap();
    let mut all = HashSet::new();
    for (c, pipe) in pipes.iter().enumerate() {
        let mut n = [0u8; 4];
        assert!(
            pipe.recv_timeout(&mut n, BOUND),
            "consumer {c} sent no report"
        );
        let n = u32::from_ne_bytes(n) as usize;
        let mut got = vec![0u8; n * 8];
        assert!(
            pipe.recv_timeout(&mut got, BOUND),
            "consumer {c}: short report"
        );
        let mut last = vec![None; producers as usize];
        for rec in got.chunks_exact(8) {
            let p = u32::from_ne_bytes(rec[..4].try_into().unwrap());
            let seq = u32::from_ne_bytes(rec[4..].try_into().unwrap());
            assert!(
                p < producers && seq < per_producer,
                "unknown message {p}/{seq}"
            );
            let prev = last[p as usize].replace(seq);
            assert!(
                prev.is_none_or(|prev| prev < seq),
                "consumer {c} got producer {p}'s {seq} after {prev:?}"
            );
            assert!(all.insert((p, seq)), "message {p}/{seq} delivered twice");
        }
    }
    for child in consumer_children {
        assert_eq!(child.join(), 0, "a consumer failed");
    }
    assert_eq!(
        all.len(),
        (producers * per_producer) as usize,
        "messages lost"
    );
}

#[test]
fn three_producers_three_consumers_deliver_every_message_exactly_once() {
    mpmc(3, 3, 20_000, 2048, Duration::from_micros(50), BOUND);
}

#[test]
fn mpmc_without_spinning_loses_no_wake_up() {
    // Capacity for a handful of records: every side sleeps all the time.
    mpmc(2, 2, 20_000, 256, Duration::ZERO, WAKE_BOUND);
}

#[test]
fn tiny_queue_ping_pong_loses_no_wake_up() {
    // Two queues of a few records each, no spinning: 100k messages there and back, each
    // side asleep whenever the other has not answered yet. A lost wake-up would hang a
    // side: the calls' generous bound (WAKE_BOUND) then fails the test instead.
    const N: u64 = 100_000;
    let (tk_ping, tk_pong) = (TestKey::new(), TestKey::new());
    let ping = Queue::create(tk_ping.key(), 48).unwrap();
    let pong = Queue::create(tk_pong.key(), 48).unwrap();
    let (kping, kpong) = (tk_ping.key(), tk_pong.key());
    let echo = fork(move || {
        let (ping, pong) = (Queue::open(kping).unwrap(), Queue::open(kpong).unwrap());
        ping.set_spin_limit(Duration::ZERO);
        pong.set_spin_limit(Duration::ZERO);
        let mut msg = Vec::new();
        loop {
            match ping.recv_timeout(&mut msg, WAKE_BOUND) {
                Ok(()) => {
                    if let Err(e) = pong.send_timeout(&msg, WAKE_BOUND) {
                        return code(e.kind());
                    }
                }
                Err(e) if e.kind() == ErrorKind::Closed => return 0,
                Err(e) => return code(e.kind()),
            }
        }
    });
    ping.set_spin_limit(Duration::ZERO);
    pong.set_spin_limit(Duration::ZERO);
    let mut msg = Vec::new();
    // Keep two in flight, so the 48-byte rings are full as often as empty.
    let send = |i: u64| ping.send_timeout(&pattern(i, (i % 25) as usize), WAKE_BOUND);
    send(0).unwrap();
    send(1).unwrap();
    for i in 0..N {
        if i + 2 < N {
            send(i + 2).unwrap();
        }
        match pong.recv_timeout(&mut msg, WAKE_BOUND) {
            Ok(()) => assert!(msg == pattern(i, (i % 25) as usize), "echo {i} differs"),
            Err(e) => panic!("echo {i}: {e} (a lost wake-up?)"),
        }
    }
    ping.close().unwrap();
    assert_eq!(echo.join(), 0);
}

#[test]
fn close_drains_then_reports_closed_and_refuses_sends() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 256).unwrap();
    q.send(b"a").unwrap();
    q.send(b"bb").unwrap();
    assert!(!q.is_closed());
    q.close().unwrap();
    q.close().unwrap(); // again: nothing happens
    assert!(q.is_closed());
    for e in [
        q.send(b"c").unwrap_err(),
        q.try_send(b"c").unwrap_err(),
        q.send_timeout(b"c", BOUND).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Closed);
    }
    let mut msg = b"left over".to_vec();
    q.recv(&mut msg).unwrap();
    assert_eq!(msg, b"a");
    q.try_recv(&mut msg).unwrap();
    assert_eq!(msg, b"bb");
    assert_eq!(q.recv(&mut msg).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(q.try_recv(&mut msg).unwrap_err().kind(), ErrorKind::Closed);
    let e = q.recv_timeout(&mut msg, BOUND).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed);
    assert!(msg.is_empty());
    // Another handle sees the same.
    let other = Queue::open(tk.key()).unwrap();
    assert!(other.is_closed());
    assert_eq!(other.send(b"x").unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn close_wakes_blocked_receivers_and_senders() {
    let (tk_empty, tk_full) = (TestKey::new(), TestKey::new());
    let empty = Queue::create(tk_empty.key(), 64).unwrap();
    let full = Queue::create(tk_full.key(), 64).unwrap();
    while full.try_send(b"12345678").is_ok() {}
    let (ke, kf) = (tk_empty.key(), tk_full.key());
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            fork(move || {
                let q = Queue::open(ke).unwrap();
                let mut msg = Vec::new();
                q.recv(&mut msg).map_or_else(|e| code(e.kind()), |()| 0)
            })
        })
        .collect();
    let senders: Vec<_> = (0..2)
        .map(|_| {
            fork(move || {
                let q = Queue::open(kf).unwrap();
                q.send(b"more").map_or_else(|e| code(e.kind()), |()| 0)
            })
        })
        .collect();
    wait_for_sleepers(ke, DATA, 2);
    wait_for_sleepers(kf, SPACE, 2);
    empty.close().unwrap();
    full.close().unwrap();
    for child in receivers.into_iter().chain(senders) {
        assert_eq!(child.join(), code(ErrorKind::Closed));
    }
    // The full queue still drains.
    let mut msg = Vec::new();
    let mut n = 0;
    while full.try_recv(&mut msg).is_ok() {
        n += 1;
    }
    assert_eq!(n, 64 / 16);
}

#[test]
fn freed_room_wakes_the_sender_it_fits_not_just_the_first_sleeper() {
    // A 64-byte ring, full: a 16-byte record and a 48-byte one.
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 64).unwrap();
    q.send(&[1; 8]).unwrap();
    q.send(&[2; 40]).unwrap();
    // First asleep: a sender of a 56-byte record; then one of an 8-byte record.
    let sender = |len: usize| {
        move || {
            let q = Queue::open(key).unwrap();
            q.send(&vec![3; len])
                .map_or_else(|e| code(e.kind()), |()| 0)
        }
    };
    let mut big = fork(sender(48));
    wait_for_sleepers(key, SPACE, 1);
    let mut small = fork(sender(0));
    wait_for_sleepers(key, SPACE, 2);
    // Taking the 16-byte record frees room for the small one only. It must get it, though
    // the big one has slept longer (the kernel wakes semaphore sleepers in order).
    let mut msg = Vec::new();
    q.recv(&mut msg).unwrap();
    assert_eq!(msg, [1; 8]);
    // Within WAKE_BOUND: a sleeper also looks again on its own after 5 s, which must not
    // be what lets it through.
    assert_eq!(small.wait_timeout(WAKE_BOUND), Exit::Code(0));
    // The big one looked, found no room, and sleeps again.
    wait_for_sleepers(key, SPACE, 1);
    q.recv(&mut msg).unwrap();
    assert_eq!(msg, [2; 40]);
    q.recv(&mut msg).unwrap();
    assert!(msg.is_empty());
    assert_eq!(big.wait_timeout(BOUND), Exit::Code(0));
    q.recv(&mut msg).unwrap();
    assert_eq!(msg, [3; 48]);
}

#[test]
fn a_send_that_completed_before_close_is_received_before_closed() {
    // A producer process sends and closes; the consumer, started after, drains it all.
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 1 << 16).unwrap();
    let producer = fork(move || {
        let q = Queue::open(key).unwrap();
        for i in 0..1000u64 {
            q.send(&i.to_ne_bytes()).unwrap();
        }
        q.close().map_or(3, |()| 0)
    });
    let mut msg = Vec::new();
    let mut next = 0u64;
    loop {
        match q.recv_timeout(&mut msg, BOUND) {
            Ok(()) => {
                assert_eq!(msg, next.to_ne_bytes());
                next += 1;
            }
            Err(e) if e.kind() == ErrorKind::Closed => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next, 1000);
    assert_eq!(producer.join(), 0);
}

#[test]
fn messages_that_cannot_fit_are_invalid_input() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 61).unwrap(); // rounded up to 64
    assert_eq!(q.capacity(), 64);
    assert_eq!(q.max_message_len(), 56);
    let big = vec![7u8; 57];
    for e in [
        q.send(&big).unwrap_err(),
        q.try_send(&big).unwrap_err(),
        q.send_timeout(&big, BOUND).unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.key(), tk.key());
        assert!(e.call().starts_with("Queue::"), "{}", e.call());
        assert!(e.to_string().contains("56"), "{e}");
    }
    q.send(&big[..56]).unwrap();
    let mut msg = Vec::new();
    q.recv(&mut msg).unwrap();
    assert_eq!(msg, &big[..56]);
    // A capacity of 0 (or one that cannot be addressed) is refused.
    let tk2 = TestKey::new();
    for cap in [0, usize::MAX, usize::MAX - 1000] {
        let e = Queue::create(tk2.key(), cap).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "capacity {cap}");
    }
    // Addressable, but past what the system gives.
    for cap in [usize::MAX - 4096, 1 << 62] {
        let e = Queue::create(tk2.key(), cap).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitReached, "capacity {cap}");
    }
}

#[test]
fn try_send_on_full_and_try_recv_on_empty_would_block() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 128).unwrap();
    let mut msg = vec![1, 2, 3];
    assert_eq!(
        q.try_recv(&mut msg).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert!(msg.is_empty());
    // 24-byte records: 5 fit in 128 bytes (120), the sixth does not.
    for i in 0..5u8 {
        q.try_send(&[i; 9]).unwrap();
    }
    assert_eq!(
        q.try_send(&[9; 9]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    // A smaller one still fits in the 8 bytes left.
    q.try_send(b"").unwrap();
    assert_eq!(q.try_send(b"").unwrap_err().kind(), ErrorKind::WouldBlock);
    for i in 0..5u8 {
        q.try_recv(&mut msg).unwrap();
        assert_eq!(msg, [i; 9]);
    }
    q.try_recv(&mut msg).unwrap();
    assert!(msg.is_empty());
    assert_eq!(
        q.try_recv(&mut msg).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn timeouts_expire_within_bounds() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 64).unwrap();
    let wait = Duration::from_millis(100);
    let mut msg = Vec::new();
    let t = Instant::now();
    let e = q.recv_timeout(&mut msg, wait).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(took >= wait && took < BOUND, "recv_timeout took {took:?}");
    while q.try_send(b"x").is_ok() {}
    let t = Instant::now();
    let e = q.send_timeout(b"x", wait).unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(took >= wait && took < BOUND, "send_timeout took {took:?}");
    // Zero waits try once.
    assert_eq!(
        q.send_timeout(b"x", Duration::ZERO).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    // Nothing was left registered: no semaphore holds a stale token.
    let set = SemaphoreSet::open(tk.key()).unwrap();
    assert_eq!(
        (set.value(DATA).unwrap(), set.value(SPACE).unwrap()),
        (0, 0)
    );
}

#[test]
fn recv_timeout_returns_a_message_sent_in_time_by_another_process() {
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 1024).unwrap();
    let child = fork(move || {
        let q = Queue::open(key).unwrap();
        // Send once the parent sleeps in recv_timeout.
        let set = SemaphoreSet::open(key).unwrap();
        if !wait_until(BOUND, || set.wait_count(DATA).unwrap() == 1) {
            return 2;
        }
        q.send(b"in time").map_or(3, |()| 0)
    });
    q.set_spin_limit(Duration::ZERO);
    let mut msg = Vec::new();
    q.recv_timeout(&mut msg, BOUND).unwrap();
    assert_eq!(msg, b"in time");
    assert_eq!(child.join(), 0);
}

#[test]
fn a_writer_killed_mid_message_tears_nothing_and_loses_nothing_else() {
    const BIG: usize = 8 << 20;
    const ROUNDS: u64 = 6;
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 16 << 20).unwrap();
    let raw = Segment::open(key).unwrap();
    let mut msg = Vec::new();
    let mut died_mid_copy = 0;
    let mut bigs = 0;
    for round in 0..ROUNDS {
        let pipe = Pipe::new();
        let pipe_ref = &pipe;
        let mut child = fork(move || {
            let q = Queue::open(key).unwrap();
            q.send(format!("marker {round}").as_bytes()).unwrap();
            let big = pattern(round, BIG);
            pipe_ref.send(b"s"); // about to send the big one
            q.send(&big).unwrap();
            0
        });
        assert_eq!(pipe.recv_byte(), b's');
        // Kill it while it copies: the producer lock word names it exactly then.
        let copying = wait_until(BOUND, || {
            // The word holds a lease token; nobody but the child sends now.
            read_i32(&raw, PRODUCER_LOCK) != 0 || read_u64(&raw, TAIL) > read_u64(&raw, HEAD) + 64
        });
        assert!(copying);
        child.kill(libc::SIGKILL);
        let exit = child.wait_timeout(BOUND);
        if read_i32(&raw, PRODUCER_LOCK) != 0 {
            died_mid_copy += 1;
        }
        // Published: the marker's 16-byte record, and the big one if its send finished.
        let published = read_u64(&raw, TAIL) - read_u64(&raw, HEAD);
        // Drain: the marker, then the big message only if it was published, whole.
        q.recv_timeout(&mut msg, BOUND).unwrap();
        assert_eq!(msg, format!("marker {round}").as_bytes());
        match q.try_recv(&mut msg) {
            Ok(()) => {
                assert_eq!(msg.len(), BIG);
                assert!(msg == pattern(round, BIG), "round {round}: torn message");
                assert!(published > 16);
                bigs += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                assert_eq!(published, 16, "a published message was lost");
                assert_eq!(
                    exit,
                    Exit::Signal(libc::SIGKILL),
                    "a finished send was lost"
                );
            }
        }
    }
    // The next sender (here: us) takes the lock word over from the dead one.
    let t = Instant::now();
    q.send_timeout(b"after", BOUND).unwrap();
    assert!(t.elapsed() < BOUND);
    q.try_recv(&mut msg).unwrap();
    assert_eq!(msg, b"after");
    assert!(
        died_mid_copy >= 1,
        "no kill landed mid-copy in {ROUNDS} rounds ({bigs} big messages got through)"
    );
}

#[test]
fn a_reader_killed_mid_message_leaves_it_queued() {
    const BIG: usize = 8 << 20;
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 16 << 20).unwrap();
    let raw = Segment::open(key).unwrap();
    let mut msg = Vec::new();
    let mut kept = 0;
    for round in 0..4u64 {
        let head_before = read_u64(&raw, HEAD);
        q.send(&pattern(round, BIG)).unwrap();
        q.send(b"after").unwrap();
        let pipe = Pipe::new();
        let pipe_ref = &pipe;
        let mut child = fork(move || {
            let q = Queue::open(key).unwrap();
            let mut msg = Vec::with_capacity(BIG);
            pipe_ref.send(b"r");
            q.recv(&mut msg).map_or(3, |()| 0)
        });
        assert_eq!(pipe.recv_byte(), b'r');
        assert!(wait_until(BOUND, || {
            // The word holds a lease token; nobody but the child receives now.
            read_i32(&raw, CONSUMER_LOCK) != 0 || read_u64(&raw, HEAD) != head_before
        }));
        child.kill(libc::SIGKILL);
        child.wait_timeout(BOUND);
        // The child took the message only if it moved `head` before it died.
        let taken = read_u64(&raw, HEAD) != head_before;
        // We take the consumer lock word over; the big message is there unless the
        // child had taken it.
        q.recv_timeout(&mut msg, BOUND).unwrap();
        if taken {
            assert_eq!(msg, b"after");
        } else {
            assert!(msg == pattern(round, BIG), "round {round}: torn message");
            kept += 1;
            q.try_recv(&mut msg).unwrap();
            assert_eq!(msg, b"after");
        }
        assert_eq!(
            q.try_recv(&mut msg).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }
    assert!(kept >= 1, "no kill landed mid-copy");
}

/// Claims a lease slot of the queue's set as docs/FORMAT.md ("Leases") tells a client to,
/// with the raw layer only, and returns the token. The claim lasts as long as the calling
/// process (SEM_UNDO).
fn claim_lease(key: Key) -> u32 {
    const OWN: usize = 2; // DATA and SPACE come first
    let set = SemaphoreSet::open(key).unwrap();
    let slots = (set.len() - OWN) / 2;
    for slot in 0..slots {
        let (held, counter) = (OWN + 2 * slot, OWN + 2 * slot + 1);
        let bump = if set.value(counter).unwrap() == 32767 {
            -32767
        } else {
            1
        };
        let claim = [
            SemOp::wait_zero(held).nowait(),
            SemOp::new(held, 1).undo().nowait(),
            SemOp::new(counter, bump).nowait(),
        ];
        if set.op(&claim).is_ok() {
            let generation = set.value(counter).unwrap() as u32;
            return generation << 16 | (slot as u32 + 1);
        }
    }
    panic!("no free lease slot");
}

/// A child that claims a lease, reports its token, then waits for a signal.
fn leaseholder(key: Key, pipe: &Pipe) -> Child {
    fork(move || {
        pipe.send_i32(claim_lease(key) as i32);
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
        0
    })
}

#[test]
fn dead_and_zombie_lock_holders_are_stolen_from_live_ones_are_not() {
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 1024).unwrap();
    let raw = Segment::open(key).unwrap();
    let mut msg = Vec::new();

    // A holder that exited and was reaped: the kernel gave its lease back.
    let pipe = Pipe::new();
    let dead = leaseholder(key, &pipe);
    let token = pipe.recv_i32();
    dead.kill(libc::SIGKILL);
    let mut dead = dead;
    assert_eq!(dead.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));
    write_i32(&raw, PRODUCER_LOCK, token);
    q.send_timeout(b"one", BOUND).unwrap();
    assert_eq!(read_i32(&raw, PRODUCER_LOCK), 0);
    write_i32(&raw, CONSUMER_LOCK, token);
    q.recv_timeout(&mut msg, BOUND).unwrap();
    assert_eq!(msg, b"one");
    assert_eq!(read_i32(&raw, CONSUMER_LOCK), 0);

    // A holder that was killed and not reaped yet: gone for the kernel all the same.
    let pipe = Pipe::new();
    let mut zombie = leaseholder(key, &pipe);
    let token = pipe.recv_i32();
    zombie.kill(libc::SIGKILL);
    wait_for_zombie(zombie.pid);
    write_i32(&raw, PRODUCER_LOCK, token);
    q.send_timeout(b"two", BOUND).unwrap();
    write_i32(&raw, CONSUMER_LOCK, token);
    q.recv_timeout(&mut msg, BOUND).unwrap();
    assert_eq!(msg, b"two");
    assert_eq!(zombie.wait_timeout(BOUND), Exit::Signal(libc::SIGKILL));

    // A live holder is waited for, not robbed; its death is noticed at once.
    let pipe = Pipe::new();
    let mut live = leaseholder(key, &pipe);
    let token = pipe.recv_i32();
    write_i32(&raw, PRODUCER_LOCK, token);
    let e = q
        .send_timeout(b"three", Duration::from_millis(30))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert_eq!(read_i32(&raw, PRODUCER_LOCK), token);
    // A sender asleep on the holder's lease (HELD of its slot, waited for zero) wakes
    // when the holder dies: within 100 ms, not after some polling interval.
    let held = 2 + 2 * ((token as u32 & 0xffff) as usize - 1);
    let set = SemaphoreSet::open(key).unwrap();
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            q.send_timeout(b"three", BOUND)?;
            Ok::<_, shmsem::Error>(Instant::now())
        });
        assert!(wait_until(BOUND, || set.zero_wait_count(held).unwrap() == 1));
        let killed = Instant::now();
        live.kill(libc::SIGKILL);
        let sent = sender.join().unwrap().unwrap();
        let took = sent.saturating_duration_since(killed);
        assert!(
            took < Duration::from_millis(100),
            "took over after {took:?}"
        );
    });
    live.wait_timeout(BOUND);
    q.recv_timeout(&mut msg, BOUND).unwrap();
    assert_eq!(msg, b"three");

    // A word that is no token of this queue is corruption, reported, not waited on.
    for garbage in [0x7fff_0000_u32 as i32, -1, 0x0001_ffff] {
        write_i32(&raw, PRODUCER_LOCK, garbage);
        let e = q.send_timeout(b"four", BOUND).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotManaged, "{e}");
        assert!(e.to_string().contains("corrupt queue"), "{e}");
    }
    write_i32(&raw, PRODUCER_LOCK, 0);
    q.send_timeout(b"four", BOUND).unwrap();
}

#[test]
fn remove_wakes_blocked_receivers_and_senders_with_removed() {
    let (tk_empty, tk_full) = (TestKey::new(), TestKey::new());
    let empty = Queue::create(tk_empty.key(), 64).unwrap();
    let full = Queue::create(tk_full.key(), 64).unwrap();
    while full.try_send(b"").is_ok() {}
    let (ke, kf) = (tk_empty.key(), tk_full.key());
    let receiver = fork(move || {
        let q = Queue::open(ke).unwrap();
        let mut msg = Vec::new();
        q.recv(&mut msg).map_or_else(|e| code(e.kind()), |()| 0)
    });
    let sender = fork(move || {
        let q = Queue::open(kf).unwrap();
        q.send(b"x").map_or_else(|e| code(e.kind()), |()| 0)
    });
    wait_for_sleepers(ke, DATA, 1);
    wait_for_sleepers(kf, SPACE, 1);
    empty.remove().unwrap();
    full.remove().unwrap();
    assert_eq!(receiver.join(), code(ErrorKind::Removed));
    assert_eq!(sender.join(), code(ErrorKind::Removed));
    // Every later call on the handles says so; the key is free again.
    let mut msg = Vec::new();
    assert_eq!(
        full.try_recv(&mut msg).unwrap_err().kind(),
        ErrorKind::Removed
    );
    assert_eq!(empty.send(b"x").unwrap_err().kind(), ErrorKind::Removed);
    assert_eq!(empty.remove().unwrap_err().kind(), ErrorKind::Removed);
    assert_eq!(empty.close().unwrap_err().kind(), ErrorKind::Removed);
    assert_eq!(Queue::open(ke).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn other_objects_are_layout_mismatch_and_corrupt_queues_not_managed() {
    let tk = TestKey::new();
    let key = tk.key();
    // A mutex is not a queue, and the other way round.
    let m = SharedMutex::create(key, 0u64).unwrap();
    assert_eq!(
        Queue::open(key).unwrap_err().kind(),
        ErrorKind::LayoutMismatch
    );
    assert_eq!(
        Queue::open_or_create(key, 64).unwrap_err().kind(),
        ErrorKind::LayoutMismatch
    );
    m.remove().unwrap();
    let q = Queue::create(key, 4096).unwrap();
    assert_eq!(
        SharedMutex::<u64>::open(key).unwrap_err().kind(),
        ErrorKind::LayoutMismatch
    );
    // Another capacity: open takes any, open_or_create insists on its own.
    assert_eq!(Queue::open(key).unwrap().capacity(), 4096);
    assert_eq!(Queue::open_or_create(key, 4093).unwrap().capacity(), 4096);
    assert_eq!(
        Queue::open_or_create(key, 8192).unwrap_err().kind(),
        ErrorKind::LayoutMismatch
    );
    // A control block that disagrees with the segment is not a queue of ours.
    let raw = Segment::open(key).unwrap();
    let cap_at = payload_offset(&raw);
    raw.write_all_at(&8192u64.to_ne_bytes(), cap_at).unwrap();
    assert_eq!(Queue::open(key).unwrap_err().kind(), ErrorKind::NotManaged);
    raw.write_all_at(&4096u64.to_ne_bytes(), cap_at).unwrap();
    // Corrupt counters are reported, never followed out of bounds.
    raw.write_all_at(&(1u64 << 40).to_ne_bytes(), cap_at + TAIL)
        .unwrap();
    let mut msg = Vec::new();
    assert_eq!(
        q.try_recv(&mut msg).unwrap_err().kind(),
        ErrorKind::NotManaged
    );
    assert_eq!(q.try_send(b"x").unwrap_err().kind(), ErrorKind::NotManaged);
    raw.write_all_at(&64u64.to_ne_bytes(), cap_at + TAIL)
        .unwrap();
    // A record length past what was published.
    raw.write_all_at(&1000u64.to_ne_bytes(), cap_at + 1024)
        .unwrap();
    assert_eq!(
        q.try_recv(&mut msg).unwrap_err().kind(),
        ErrorKind::NotManaged
    );
    q.remove().unwrap();
    // A foreign pair: a segment without our header, with a 2-semaphore set.
    let seg = Segment::create(key, 4096, 0o600).unwrap();
    let set = SemaphoreSet::create(key, 2, 0o600).unwrap();
    set.op(&[SemOp::post(0)]).unwrap();
    assert_eq!(Queue::open(key).unwrap_err().kind(), ErrorKind::NotManaged);
    seg.remove().unwrap();
    set.remove().unwrap();
}

#[test]
fn permissions_default_to_0600() {
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 1024).unwrap();
    assert_eq!(
        Segment::open(key).unwrap().info().unwrap().mode & 0o777,
        0o600
    );
    assert_eq!(SemaphoreSet::open(key).unwrap().info().unwrap().mode, 0o600);
    let denied = fork_as_nobody(move || Queue::open(key).map_or_else(|e| code(e.kind()), |_| 0));
    assert_eq!(denied.join(), code(ErrorKind::PermissionDenied));
    q.remove().unwrap();
    let q = Queue::options().mode(0o640).create(key, 1024).unwrap();
    assert_eq!(
        Segment::open(key).unwrap().info().unwrap().mode & 0o777,
        0o640
    );
    assert_eq!(SemaphoreSet::open(key).unwrap().info().unwrap().mode, 0o640);
    // 0o666: others may use the queue, but only the owner (or root) may remove it; a
    // refused remove changes nothing.
    let shared_key = TestKey::new();
    let shared = Queue::options()
        .mode(0o666)
        .create(shared_key.key(), 1024)
        .unwrap();
    let sk = shared_key.key();
    let user = fork_as_nobody(move || {
        let Ok(q) = Queue::open(sk) else {
            return 3;
        };
        if q.send(b"from nobody").is_err() {
            return 2;
        }
        q.remove().map_or_else(|e| code(e.kind()), |()| 0)
    });
    assert_eq!(user.join(), code(ErrorKind::PermissionDenied));
    assert!(!shared.is_closed());
    let mut msg = Vec::new();
    shared.recv_timeout(&mut msg, BOUND).unwrap();
    assert_eq!(msg, b"from nobody");
    shared.send(b"still open").unwrap();
    assert_eq!(
        Queue::options()
            .mode(0o1777)
            .create(TestKey::new().key(), 64)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    drop(q);
}

#[test]
fn threads_of_one_process_share_a_handle() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 512).unwrap();
    const PER: u32 = 20_000;
    let got = std::thread::scope(|s| {
        for p in 0..2u32 {
            let q = &q;
            s.spawn(move || {
                for seq in 0..PER {
                    q.send_timeout(&tagged(p, seq), BOUND).unwrap();
                }
            });
        }
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let q = &q;
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut msg = Vec::new();
                    while got.len() < PER as usize {
                        q.recv_timeout(&mut msg, BOUND).unwrap();
                        got.push(untag(&msg).expect("torn message"));
                    }
                    got
                })
            })
            .collect();
        receivers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    let set: HashSet<_> = got.iter().copied().collect();
    assert_eq!(set.len(), 2 * PER as usize);
    assert_eq!(got.len(), set.len());
}

#[test]
fn private_queues_are_shared_through_fork() {
    let q = Queue::create(Key::PRIVATE, 1024).unwrap();
    let child = {
        let q = &q;
        fork(move || {
            for i in 0..100u32 {
                q.send(&i.to_ne_bytes()).unwrap();
            }
            q.close().map_or(3, |()| 0)
        })
    };
    let mut msg = Vec::new();
    for i in 0..100u32 {
        q.recv_timeout(&mut msg, BOUND).unwrap();
        assert_eq!(msg, i.to_ne_bytes());
    }
    assert_eq!(
        q.recv_timeout(&mut msg, BOUND).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(child.join(), 0);
    q.remove().unwrap();
}

#[test]
fn send_until_and_recv_until_time_out_at_the_deadline() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 64).unwrap();
    let mut buf = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(50);
    assert_eq!(
        q.recv_until(&mut buf, deadline).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    q.send_until(&[7; 56], deadline).unwrap(); // fills the ring
    assert_eq!(
        q.send_until(&[1], deadline).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(50) && took < BOUND,
        "{took:?}"
    );
    q.recv_until(&mut buf, start).unwrap();
    assert_eq!(buf, [7; 56]);
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, shmsem::Pod, shmsem::Zeroable)]
struct Job {
    id: u64,
    cost: u32,
    _pad: u32,
}

#[test]
fn plain_data_values_go_through_as_messages_and_a_wrong_size_is_refused() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 256).unwrap();
    let job = Job {
        id: 9,
        cost: 4,
        _pad: 0,
    };
    q.send_pod(&job).unwrap();
    let child = fork(|| {
        let q = Queue::open(tk.key()).unwrap();
        let got = q.recv_pod_timeout::<Job>(BOUND).ok();
        i32::from(
            got != Some(Job {
                id: 9,
                cost: 4,
                _pad: 0,
            }),
        )
    });
    assert_eq!(child.join(), 0);
    q.send(b"short").unwrap();
    let e = q.recv_pod::<Job>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LayoutMismatch);
    assert!(e.to_string().contains("5 bytes"), "{e}");
    assert_eq!(
        q.try_recv_pod::<u64>().unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn iter_ends_at_close_and_try_iter_at_empty() {
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 4096).unwrap();
    for i in 0..3u8 {
        q.send(&[i]).unwrap();
    }
    let now: Vec<Vec<u8>> = q.try_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(now, [vec![0], vec![1], vec![2]]);
    assert_eq!(q.try_iter().count(), 0, "empty: try_iter ends at once");
    // A producer in another process sends and closes; iter waits for each, then ends.
    let producer = fork(|| {
        let q = Queue::open(tk.key()).unwrap();
        for i in 10..20u8 {
            q.send(&[i]).unwrap();
        }
        q.close().map_or(1, |_| 0)
    });
    let got: Vec<Vec<u8>> = q.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, (10..20u8).map(|i| vec![i]).collect::<Vec<_>>());
    assert_eq!(producer.join(), 0);
    // Removed: the error is yielded once, then the iterator ends.
    let tk2 = TestKey::new();
    let q2 = Queue::create(tk2.key(), 64).unwrap();
    q2.remove().unwrap();
    let mut it = q2.try_iter();
    assert_eq!(it.next().unwrap().unwrap_err().kind(), ErrorKind::Removed);
    assert!(it.next().is_none());
}

#[cfg(feature = "serde")]
#[test]
fn serde_values_go_through_as_messages_and_another_type_is_refused() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u64,
        items: Vec<String>,
        note: Option<String>,
    }
    let tk = TestKey::new();
    let q = Queue::create(tk.key(), 4096).unwrap();
    let order = Order {
        id: 3,
        items: vec!["tea".into(), "milk".into()],
        note: None,
    };
    // Sent from another process, received here.
    let child = fork(|| {
        let q = Queue::open(tk.key()).unwrap();
        let order = Order {
            id: 3,
            items: vec!["tea".into(), "milk".into()],
            note: None,
        };
        q.send_serde(&order).map_or(1, |_| 0)
    });
    assert_eq!(child.join(), 0);
    assert_eq!(q.recv_serde_timeout::<Order>(BOUND).unwrap(), order);
    q.send_serde(&"not an order").unwrap();
    let e = q.recv_serde::<Order>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LayoutMismatch, "{e}");
}

/// With shmsem::testing's pieces: producer processes open a small queue and line up at a
/// gate (a latch tells the parent they are all there); once it opens, each sends its
/// numbered messages, blocking on a full ring; this process receives every one, each
/// producer's in order. A consumer waiting on the empty queue is stopped by the watchdog
/// without taking the next message with it. Closing and removing leaves nothing behind.
#[test]
fn producers_started_at_a_gate_deliver_everything_in_order_and_leave_nothing_behind() {
    use shmsem::testing::{Gate, Latch, LeakCheck, run_in_child};
    const P: u32 = 3;
    const EACH: u32 = 300;
    let tk = TestKey::new();
    let key = tk.key();
    let check = LeakCheck::keys([key]);
    let q = Queue::create(key, 512).unwrap();
    let (ready, go) = (Latch::new(), Gate::new());
    let producers: Vec<_> = (0..P)
        .map(|p| {
            let (ready, go) = (&ready, &go);
            fork(move || {
                let q = Queue::open(key).unwrap();
                ready.arrive();
                go.wait();
                for i in 0..EACH {
                    let mut msg = [0u8; 8];
                    msg[..4].copy_from_slice(&p.to_ne_bytes());
                    msg[4..].copy_from_slice(&i.to_ne_bytes());
                    if let Err(e) = q.send_timeout(&msg, BOUND) {
                        return code(e.kind());
                    }
                }
                0
            })
        })
        .collect();
    ready.wait(P as usize);
    let mut msg = Vec::new();
    assert_eq!(
        q.try_recv(&mut msg).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "a producer sent before the gate opened"
    );
    go.open();
    let mut next = [0u32; P as usize];
    for _ in 0..P * EACH {
        q.recv_timeout(&mut msg, BOUND).unwrap();
        let p = u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize;
        let i = u32::from_ne_bytes(msg[4..].try_into().unwrap());
        assert_eq!(i, next[p], "producer {p}'s messages out of order");
        next[p] += 1;
    }
    assert_eq!(next, [EACH; P as usize]);
    for p in producers {
        assert_eq!(p.join(), 0);
    }

    let consumer = run_in_child(Duration::from_millis(100), || {
        let q = Queue::open(key).unwrap();
        let mut buf = Vec::new();
        q.recv(&mut buf).map_or(1, |()| 0)
    });
    assert_eq!(consumer.unwrap_err().exit, Exit::Signal(libc::SIGKILL));
    q.send(b"after").unwrap();
    q.recv_timeout(&mut msg, BOUND).unwrap();
    assert_eq!(msg, b"after");

    q.close().unwrap();
    q.remove().unwrap();
    drop(q);
    check.assert_clean();
}
