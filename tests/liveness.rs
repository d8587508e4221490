//! Liveness without pids (issue 10): whether the process behind a lock word or a holder
//! record is still alive must come from the kernel, never from a pid. Covered here:
//!
//! - processes that are pid 1 of a PID namespace of their own (a container's main process)
//!   sharing a queue or a mutex with host processes: MPMC with MiB messages delivered
//!   exactly once and whole; such a process SIGKILLed at random moments, 30 times, never
//!   wedges the queue; a mutex holder killed mid-update is reported as poisoned, by its pid
//!   as seen here or by none, before anyone locks;
//! - a producer whose main thread has exited (its leader shows `Z` in /proc) keeps its lock
//!   word while it copies;
//! - hostile control blocks (misaligned or out-of-range head, tail, lengths, lock words,
//!   counters, state): the victim gets errors, never a signal or a hang;
//! - a producer waiting behind a SIGSTOPped lock-word holder sleeps instead of spinning;
//! - a lock taken inside a destructor while an unrelated panic unwinds does not poison.
//!
//! Everything runs in real processes with bounded waits; handshakes go through pipes and
//! child exits, never sleeps. The random kill schedule prints its seed (`LIVENESS_SEED`
//! replays one).

mod common;

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::queue::{
    CAPACITY, CONSUMER_LOCK, HEAD, PRODUCER_LOCK, RING, STATE, TAIL, WAITING_CONSUMERS,
    WAITING_PRODUCERS, payload_offset, read_i32,
};
use common::{BOUND, Child, Exit, Pipe, TestKey, fork, poll_readable, wait_until};
use shmsem::{ErrorKind, Key, LockError, Queue, Segment, SharedMutex};

/// Bound of one queue operation in the tests that move MiB messages: generous (an
/// operation normally takes milliseconds), short enough that a wedged queue fails a test
/// well within its time.
const OP: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Exit codes of children.

/// A message that is torn, garbled or not one of ours.
const TORN: i32 = 2;
/// Opening the object (or another preparation) failed.
const SETUP: i32 = 3;
/// A message received twice or out of its sender's order.
const OUT_OF_ORDER: i32 = 4;
/// `unshare(CLONE_NEWPID)` failed, or the new process was not pid 1 of its namespace.
const NO_NAMESPACE: i32 = 5;
/// The main thread's exit did not leave a zombie leader within the bound.
const NO_ZOMBIE: i32 = 6;
/// A container killed by SIGKILL (the middle process's report: 128 + signal).
const KILLED: i32 = 128 + libc::SIGKILL;

const KINDS: [(ErrorKind, i32); 7] = [
    (ErrorKind::Removed, 10),
    (ErrorKind::Closed, 11),
    (ErrorKind::TimedOut, 12),
    (ErrorKind::WouldBlock, 13),
    (ErrorKind::NotManaged, 14),
    (ErrorKind::InvalidInput, 15),
    (ErrorKind::LimitReached, 16),
];
/// Any other error kind.
const OTHER_ERROR: i32 = 19;

/// The ErrorKind a failed call reports, as a small exit code for children.
fn code(kind: ErrorKind) -> i32 {
    KINDS
        .iter()
        .find(|&&(k, _)| k == kind)
        .map_or(OTHER_ERROR, |&(_, c)| c)
}

/// Words for an exit code (or a call outcome) of the tables above.
fn describe(code: i32) -> String {
    if let Some((kind, _)) = KINDS.iter().find(|&&(_, c)| c == code) {
        return format!("error {kind:?}");
    }
    match code {
        0 => "ok".into(),
        TORN => "received a torn or foreign message".into(),
        SETUP => "setup (open) failed".into(),
        OUT_OF_ORDER => "received a message twice or out of order".into(),
        NO_NAMESPACE => "could not become pid 1 of a new PID namespace".into(),
        NO_ZOMBIE => "main thread's exit left no zombie leader".into(),
        OTHER_ERROR => "error of another kind".into(),
        101 => "panicked".into(),
        c if c > 128 => format!("killed by signal {}", c - 128),
        c => format!("exit code {c}"),
    }
}

// ---------------------------------------------------------------------------------------
// Messages that tell when they are torn.

/// splitmix64's finaliser: a cheap, well-mixed hash.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// Word `i` (from 2 on) of the message whose first word is `id`.
fn filler(id: u64, i: usize) -> u64 {
    mix(id).wrapping_add((i as u64).wrapping_mul(STEP))
}

/// Message `seq` of source `src`, `len` bytes (at least 16): word 0 names it (source,
/// sequence number), word 1 is its length, the rest a pattern that depends on word 0 and
/// the position. Any mix of two messages, shift or truncation fails [`check`].
fn message(src: u32, seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 16);
    let id = (u64::from(src) << 32) | u64::from(seq);
    let mut m = vec![0u8; len];
    for (i, w) in m.chunks_mut(8).enumerate() {
        let v = match i {
            0 => id,
            1 => len as u64,
            _ => filler(id, i),
        };
        w.copy_from_slice(&v.to_ne_bytes()[..w.len()]);
    }
    m
}

/// The (source, sequence number) of a whole message of ours, or where it is broken.
fn check(m: &[u8]) -> Result<(u32, u32), String> {
    if m.len() < 16 {
        return Err(format!("{} bytes: too short to be ours", m.len()));
    }
    let word = |i: usize| u64::from_ne_bytes(m[i * 8..i * 8 + 8].try_into().unwrap());
    let id = word(0);
    if word(1) != m.len() as u64 {
        return Err(format!(
            "message {id:#x}: length word says {}, {} bytes arrived",
            word(1),
            m.len()
        ));
    }
    for (i, w) in m.chunks(8).enumerate().skip(2) {
        if w != &filler(id, i).to_ne_bytes()[..w.len()] {
            return Err(format!("message {id:#x} torn at byte {}", i * 8));
        }
    }
    Ok(((id >> 32) as u32, id as u32))
}

/// A length in `min..=max` that depends only on `(src, seq)`.
fn length(src: u32, seq: u32, min: usize, max: usize) -> usize {
    let h = mix((u64::from(src) << 32 | u64::from(seq)) ^ 0x1e57);
    min + (h % (max - min + 1) as u64) as usize
}

// ---------------------------------------------------------------------------------------
// Processes that are pid 1 of a PID namespace of their own.

/// A process that is pid 1 of a PID namespace of its own (like a container's main
/// process), sharing this IPC namespace; and the process outside that namespace that
/// started it and waits for it.
struct Container {
    /// The middle process: it exits with the container's exit code, or with 128 + the
    /// signal that ended it.
    middle: Child,
    /// The container's pid as this (the host's) namespace sees it.
    host_pid: i32,
    /// A pidfd for the container: signals through it cannot reach a later owner of the pid.
    pidfd: OwnedFd,
}

/// Forks a middle process that unshares its PID namespace and forks again: the
/// grandchild, pid 1 of the new namespace, runs `f`. The grandchild dies with the middle
/// process (PR_SET_PDEATHSIG), and the middle one reaps it only after this process holds
/// a pidfd for it.
fn fork_in_new_pid_ns(f: impl FnOnce() -> i32) -> Container {
    let pids = Pipe::new();
    let ack = Pipe::new();
    let (pids_ref, ack_ref) = (&pids, &ack);
    let middle = fork(move || {
        // SAFETY: unshare with a flag; it changes only the namespace of later children.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            pids_ref.send_i32(-1);
            return NO_NAMESPACE;
        }
        let mut inner = fork(move || {
            // SAFETY: prctl with plain integers, on this process.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
            // SAFETY: getpid has no preconditions.
            if unsafe { libc::getpid() } != 1 {
                return NO_NAMESPACE;
            }
            f()
        });
        // fork(2) in this process (still in the host's namespace) gave the host's pid.
        pids_ref.send_i32(inner.pid);
        // Not reaped before the parent has its pidfd (a zombie keeps the pid).
        let _ = ack_ref.recv_timeout(&mut [0], BOUND);
        match inner.wait_timeout(BOUND) {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    });
    let mut b = [0u8; 4];
    let host_pid = if pids.recv_timeout(&mut b, BOUND) {
        i32::from_ne_bytes(b)
    } else {
        -1
    };
    assert!(
        host_pid > 0,
        "could not start a process in a new PID namespace (unshare(CLONE_NEWPID) needs root)"
    );
    // SAFETY: pidfd_open with a pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, host_pid, 0) } as i32;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    ack.send(b"a");
    Container {
        middle,
        host_pid,
        // SAFETY: a fresh descriptor we own.
        pidfd: unsafe { OwnedFd::from_raw_fd(fd) },
    }
}

impl Container {
    fn kill(&self, sig: i32) {
        // SAFETY: pidfd_send_signal on our own pidfd, no siginfo, no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }

    /// The container's exit code (128 + signal if a signal ended it); waits at most
    /// [`BOUND`].
    fn exit_code(&mut self) -> i32 {
        match self.middle.wait_timeout(BOUND) {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // The middle process is killed (and reaped) by Child's Drop after this; the
        // container would follow it through PR_SET_PDEATHSIG anyway.
        self.kill(libc::SIGKILL);
    }
}

/// A worker: a plain child, or pid 1 of a PID namespace of its own.
enum Proc {
    Host(Child),
    Contained(Container),
}

impl Proc {
    fn spawn(own_namespace: bool, f: impl FnOnce() -> i32) -> Proc {
        if own_namespace {
            Proc::Contained(fork_in_new_pid_ns(f))
        } else {
            Proc::Host(fork(f))
        }
    }

    /// Exit code (128 + signal if a signal ended it), waiting at most [`BOUND`].
    fn exit_code(&mut self) -> i32 {
        match self {
            Proc::Host(child) => match child.wait_timeout(BOUND) {
                Exit::Code(c) => c,
                Exit::Signal(s) => 128 + s,
            },
            Proc::Contained(container) => container.exit_code(),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Proc::Host(_) => "host",
            Proc::Contained(_) => "own PID namespace",
        }
    }
}

/// The state letter of `/proc/<pid>/stat` (after the last `)`: comm may hold one).
fn process_state(pid: i32) -> Option<u8> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let i = stat.iter().rposition(|&b| b == b')')?;
    stat.get(i + 2).copied()
}

/// Spins (no sleeping: the moment matters) until `cond` holds, at most `timeout`.
fn wait_until_spinning(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= until {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

/// Held by the tests that need the machine's CPUs to themselves for their timing (the
/// races that must overlap on both cores, the kills that must land inside a copy): they
/// run one at a time, the others beside them.
static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn timing_sensitive() -> std::sync::MutexGuard<'static, ()> {
    TIMING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A small xorshift64* generator for the random schedules; the seed is printed, and
/// `LIVENESS_SEED` (decimal or 0x-hex) replays one.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("LIVENESS_SEED")
            .ok()
            .and_then(|s| match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            })
            .unwrap_or(0x5eed_1d0c_0010_a11e);
        eprintln!("{test}: LIVENESS_SEED={seed:#x}");
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------
// 1. MPMC across PID namespaces.

#[test]
fn mpmc_across_pid_namespaces_delivers_every_mib_message_once_and_whole() {
    const PRODUCERS: u32 = 4; // 0 and 1 in PID namespaces of their own
    const CONSUMERS: usize = 2; // 0 in a PID namespace of its own
    const PER_PRODUCER: u32 = 32;
    const MIN: usize = 256 << 10;
    const MAX: usize = 2 << 20;
    let _timing = timing_sensitive();
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 8 << 20).unwrap();

    // Both sides move bytes as fast as they can, so that they contend for the lock words:
    // producers make their messages before a common start, consumers check theirs only
    // after the end marker.
    let reports: Vec<Pipe> = (0..CONSUMERS).map(|_| Pipe::new()).collect();
    let mut consumers: Vec<Proc> = Vec::new();
    for (c, report) in reports.iter().enumerate() {
        consumers.push(Proc::spawn(c == 0, move || {
            let Ok(q) = Queue::open(key) else {
                return SETUP;
            };
            let mut received = Vec::new();
            let mut msg = Vec::new();
            loop {
                if let Err(e) = q.recv_timeout(&mut msg, OP) {
                    return code(e.kind());
                }
                if msg.is_empty() {
                    break; // an end marker: one per consumer, after every message
                }
                received.push(std::mem::take(&mut msg));
            }
            let mut got: Vec<u8> = Vec::new();
            for msg in &received {
                let Ok((p, seq)) = check(msg) else {
                    return TORN;
                };
                got.extend_from_slice(&p.to_ne_bytes());
                got.extend_from_slice(&seq.to_ne_bytes());
            }
            report.send(&((got.len() / 8) as u32).to_ne_bytes());
            report.send(&got);
            0
        }));
    }
    let (ready, go) = (Pipe::new(), Pipe::new());
    let (ready_ref, go_ref) = (&ready, &go);
    let producers: Vec<Proc> = (0..PRODUCERS)
        .map(|p| {
            Proc::spawn(p < 2, move || {
                let Ok(q) = Queue::open(key) else {
                    return SETUP;
                };
                let msgs: Vec<Vec<u8>> = (0..PER_PRODUCER)
                    .map(|seq| message(p, seq, length(p, seq, MIN, MAX)))
                    .collect();
                ready_ref.send(b"r");
                if !go_ref.recv_timeout(&mut [0], BOUND) {
                    return SETUP;
                }
                for msg in &msgs {
                    if let Err(e) = q.send_timeout(msg, OP) {
                        return code(e.kind());
                    }
                }
                0
            })
        })
        .collect();
    let mut r = [0u8; PRODUCERS as usize];
    assert!(ready.recv_timeout(&mut r, BOUND), "producers not ready");
    go.send(&[b'g'; PRODUCERS as usize]);

    let mut failures = Vec::new();
    for (p, mut producer) in producers.into_iter().enumerate() {
        let exit = producer.exit_code();
        if exit != 0 {
            failures.push(format!(
                "producer {p} ({}): {}",
                producer.label(),
                describe(exit)
            ));
        }
    }
    // No close(): the end markers are sent with a bound, and close() waits for the
    // producer lock word without one. After a failure, none: the consumers give up on
    // their own (OP), with what they saw.
    for _ in 0..CONSUMERS {
        if !failures.is_empty() {
            break;
        }
        if let Err(e) = q.send_timeout(b"", OP) {
            failures.push(format!("end marker: {e}"));
        }
    }
    let mut delivered = HashSet::new();
    let mut twice = Vec::new();
    for (c, mut consumer) in consumers.into_iter().enumerate() {
        let exit = consumer.exit_code();
        if exit != 0 {
            failures.push(format!(
                "consumer {c} ({}): {}",
                consumer.label(),
                describe(exit)
            ));
            continue;
        }
        let mut n = [0u8; 4];
        assert!(
            reports[c].recv_timeout(&mut n, BOUND),
            "consumer {c}: no report"
        );
        let mut got = vec![0u8; u32::from_ne_bytes(n) as usize * 8];
        assert!(
            reports[c].recv_timeout(&mut got, BOUND),
            "consumer {c}: short report"
        );
        let mut last: Vec<Option<u32>> = vec![None; PRODUCERS as usize];
        for rec in got.chunks_exact(8) {
            let p = u32::from_ne_bytes(rec[..4].try_into().unwrap());
            let seq = u32::from_ne_bytes(rec[4..].try_into().unwrap());
            if p >= PRODUCERS || seq >= PER_PRODUCER {
                failures.push(format!("consumer {c}: unknown message {p}/{seq}"));
                continue;
            }
            let prev = last[p as usize].replace(seq);
            if prev.is_some_and(|prev| prev >= seq) {
                failures.push(format!(
                    "consumer {c}: producer {p}'s message {seq} after {prev:?}"
                ));
            }
            if !delivered.insert((p, seq)) {
                twice.push((p, seq));
            }
        }
    }
    if !twice.is_empty() {
        failures.push(format!("delivered twice: {twice:?}"));
    }
    let lost: Vec<(u32, u32)> = (0..PRODUCERS)
        .flat_map(|p| (0..PER_PRODUCER).map(move |seq| (p, seq)))
        .filter(|m| !delivered.contains(m))
        .collect();
    if !lost.is_empty() && failures.is_empty() {
        failures.push(format!("lost: {lost:?}"));
    }
    assert!(
        failures.is_empty(),
        "{PRODUCERS} producers (0 and 1 in PID namespaces of their own), {CONSUMERS} \
         consumers (0 in its own): {}",
        failures.join("; ")
    );
}

// ---------------------------------------------------------------------------------------
// 2. A container's pid 1 killed at random moments.

#[test]
fn killing_a_containers_pid_1_thirty_times_never_wedges_the_queue() {
    const KILLS: u32 = 30;
    const BIG: usize = 1 << 20;
    /// Source ids: the host producer, this (parent) process; containers are 100 + round.
    const HOST: u32 = 1;
    const PARENT: u32 = 2;
    /// The host consumer looks at its stop pipe this often while the queue is empty.
    const IDLE_STEP: Duration = Duration::from_millis(100);
    let _timing = timing_sensitive();
    let mut rng = Rng::from_env("killing_a_containers_pid_1_thirty_times_never_wedges_the_queue");
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, 8 << 20).unwrap();
    let raw = Segment::open(key).unwrap();

    let (stop_producer, stop_consumer) = (Pipe::new(), Pipe::new());
    let stopped = |pipe: &Pipe| poll_readable(pipe.read.as_raw_fd(), Duration::ZERO);
    let mut producer = fork(|| {
        let Ok(q) = Queue::open(key) else {
            return SETUP;
        };
        let mut seq = 0;
        while !stopped(&stop_producer) {
            let msg = message(HOST, seq, length(HOST, seq, 64 << 10, BIG));
            if let Err(e) = q.send_timeout(&msg, OP) {
                return code(e.kind());
            }
            seq += 1;
        }
        0
    });
    let mut consumer = fork(|| {
        let Ok(q) = Queue::open(key) else {
            return SETUP;
        };
        let mut last: HashMap<u32, u32> = HashMap::new();
        let mut msg = Vec::new();
        let mut idle = Duration::ZERO;
        loop {
            match q.recv_timeout(&mut msg, IDLE_STEP) {
                Ok(()) => {
                    idle = Duration::ZERO;
                    match check(&msg) {
                        Ok((src, seq)) => {
                            if last.insert(src, seq).is_some_and(|prev| prev >= seq) {
                                return OUT_OF_ORDER;
                            }
                        }
                        Err(_) => return TORN,
                    }
                }
                Err(e) if e.kind() == ErrorKind::TimedOut => {
                    if stopped(&stop_consumer) {
                        return 0; // drained
                    }
                    // The producer sends all the time: a long silence is a wedged queue.
                    idle += IDLE_STEP;
                    if idle >= OP {
                        return code(ErrorKind::TimedOut);
                    }
                }
                Err(e) => return code(e.kind()),
            }
        }
    });

    // The kills follow the container closely only if this thread has a CPU when it wants
    // one: first in line (root may raise it; this thread only, and the containers forked
    // from it from now on) on a machine busy with the other tests.
    // SAFETY: setpriority on this thread (a tid is a PRIO_PROCESS target), plain integers.
    let raised = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as u32, -10) };
    struct Lower(i32);
    impl Drop for Lower {
        fn drop(&mut self) {
            if self.0 == 0 {
                // SAFETY: as above, back to the default.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as u32, 0) };
            }
        }
    }
    let _lower = Lower(raised);
    let mut failures = Vec::new();
    let (mut announced, mut at_a_held_word) = (0, 0);
    let word_taken = || read_i32(&raw, PRODUCER_LOCK) != 0 || read_i32(&raw, CONSUMER_LOCK) != 0;
    let spin_for = |d: Duration| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    };
    for round in 0..KILLS {
        // The container announces on `progress`: b'o' once open, then b's' right before
        // each send and b'r' right before each receive.
        let progress = Pipe::new();
        let src = 100 + round;
        let progress_ref = &progress;
        let mut container = fork_in_new_pid_ns(move || {
            let Ok(q) = Queue::open(key) else {
                return SETUP;
            };
            progress_ref.send(b"o");
            let mut seq = 0;
            loop {
                let out = message(src, seq, BIG);
                progress_ref.send(b"s");
                if let Err(e) = q.send_timeout(&out, OP) {
                    return code(e.kind());
                }
                // A fresh buffer: its pages are faulted in during the copy-out.
                let mut msg = Vec::new();
                progress_ref.send(b"r");
                if let Err(e) = q.recv_timeout(&mut msg, OP) {
                    return code(e.kind());
                }
                if check(&msg).is_err() {
                    return TORN;
                }
                seq += 1;
            }
        });
        // Set if the container ended on its own (an error) before its kill.
        let mut ended = None;
        if progress.recv_timeout(&mut [0], BOUND) {
            // The moment of the kill (the pacing of a signal generator, not
            // synchronisation): in one round of three, anywhere within 20 ms of the open;
            // otherwise inside one of its first few operations: a random 0-300 us after it
            // announced one, or as soon as a lock word is seen taken (by it or a host
            // process: the words are not decoded here) within 2 ms of that.
            let mode = rng.below(3);
            if mode == 0 {
                // (A bounded wait for an exit that should not come: the pacing.)
                let delay = Duration::from_micros(rng.below(20_000));
                ended = container.middle.try_wait_timeout(delay);
            } else {
                let skip = rng.below(4);
                let mut b = [0u8];
                // What it announced so far is old news; then up to `skip` more.
                while progress.recv_timeout(&mut b, Duration::ZERO) {}
                let mut heard = true;
                for _ in 0..=skip {
                    // Listened for spinning, so that the kill follows the announcement
                    // closely. Not heard within 100 ms: it is stuck in an operation (a
                    // wedged queue), and is killed there.
                    heard = wait_until_spinning(Duration::from_millis(100), || {
                        progress.recv_timeout(&mut b, Duration::ZERO)
                    });
                    if !heard {
                        break;
                    }
                }
                if heard {
                    announced += 1;
                    if mode == 1 {
                        spin_for(Duration::from_micros(rng.below(300)));
                    } else if wait_until_spinning(Duration::from_millis(2), word_taken) {
                        at_a_held_word += 1;
                    }
                }
            }
        }
        let exit = match ended {
            Some(Exit::Code(c)) => c,
            Some(Exit::Signal(s)) => 128 + s,
            None => {
                container.kill(libc::SIGKILL);
                container.exit_code()
            }
        };
        if exit != KILLED {
            failures.push(format!(
                "container {round} (host pid {}): {}",
                container.host_pid,
                describe(exit)
            ));
        }
    }

    stop_producer.send(b"s");
    let exit = match producer.wait_timeout(BOUND) {
        Exit::Code(c) => c,
        Exit::Signal(s) => 128 + s,
    };
    if exit != 0 {
        failures.push(format!("host producer: {}", describe(exit)));
    }
    stop_consumer.send(b"s");
    let exit = match consumer.wait_timeout(BOUND) {
        Exit::Code(c) => c,
        Exit::Signal(s) => 128 + s,
    };
    if exit != 0 {
        failures.push(format!("host consumer: {}", describe(exit)));
    }

    // Nobody else uses the queue now, and the consumer drained it: one bounded round.
    let round_bound = Duration::from_secs(3);
    let mine = message(PARENT, 0, BIG);
    match q.send_timeout(&mine, round_bound) {
        Err(e) => failures.push(format!("final send_timeout: {e}")),
        Ok(()) => {
            let mut msg = Vec::new();
            let mut got_mine = false;
            for _ in 0..16 {
                match q.recv_timeout(&mut msg, round_bound) {
                    Err(e) => {
                        failures.push(format!("final recv_timeout: {e}"));
                        break;
                    }
                    Ok(()) => match check(&msg) {
                        Err(e) => failures.push(format!("final round: {e}")),
                        Ok((PARENT, 0)) => {
                            got_mine = true;
                            break;
                        }
                        Ok(_) => {} // a left-over, whole: fine
                    },
                }
            }
            if !got_mine && failures.is_empty() {
                failures.push("final round: the message sent was not received".into());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "after {KILLS} kills of a container's pid 1 ({announced} right after it announced a \
         send or receive, {at_a_held_word} of those once a lock word was seen taken): {}",
        failures.join("; ")
    );
}

// ---------------------------------------------------------------------------------------
// 3. A mutex holder in another PID namespace killed mid-update.

#[test]
fn mutex_holder_in_another_pid_namespace_killed_mid_update_is_poisoned() {
    let tk = TestKey::new();
    let key = tk.key();
    let m = SharedMutex::create(key, [0u64; 2]).unwrap();
    let inside = Pipe::new();
    let never = Pipe::new();
    let (inside_ref, never_ref) = (&inside, &never);
    let mut holder = fork_in_new_pid_ns(move || {
        let Ok(m) = SharedMutex::<[u64; 2]>::open(key) else {
            return SETUP;
        };
        let Ok(mut g) = m.lock_timeout(BOUND) else {
            return SETUP;
        };
        g[0] = 1; // half of an update that keeps both fields equal
        inside_ref.send(b"i");
        never_ref.recv_timeout(&mut [0], BOUND); // killed here
        g[1] = 1;
        0
    });
    let host_pid = holder.host_pid;
    assert_eq!(inside.recv_byte(), b'i');
    holder.kill(libc::SIGKILL);
    assert_eq!(holder.exit_code(), KILLED);

    let mut problems = Vec::new();
    if !m.is_poisoned() {
        problems.push("is_poisoned() is false before anyone locked".to_string());
    }
    match m.lock_timeout(BOUND) {
        Err(LockError::Poisoned(p)) => {
            // The contract allows None where the kernel cannot say; here it can (the
            // holder's namespace is a child of ours, and nobody claimed its lease slot
            // since), so the pid as we see it is required, never 1 nor anyone else.
            let owner = p.owner_pid();
            if owner != Some(host_pid) {
                problems.push(format!(
                    "the poison names {owner:?}, not the holder (pid {host_pid} here)"
                ));
            }
            let mut g = p.into_inner();
            if *g != [1, 0] {
                problems.push(format!("the half-made update is {:?}, not [1, 0]", *g));
            }
            g[1] = g[0];
            m.clear_poison();
        }
        Err(LockError::Failed(e)) => problems.push(format!("lock failed: {e}")),
        Ok(g) => problems.push(format!("lock() was not Poisoned (value {:?})", *g)),
    }
    assert!(
        problems.is_empty(),
        "holder was pid 1 of its own PID namespace, pid {host_pid} here: {}",
        problems.join("; ")
    );
    assert!(!m.is_poisoned());
    assert_eq!(*m.lock_timeout(BOUND).unwrap(), [1, 1]);
}

// ---------------------------------------------------------------------------------------
// 4. Producers whose main thread has exited.

#[test]
fn a_producer_whose_main_thread_exited_keeps_its_lock_word() {
    const PRODUCERS: u32 = 3;
    const PER: u32 = 40;
    const MIN: usize = 1 << 20;
    const MAX: usize = 4 << 20;
    let tk = TestKey::new();
    let key = tk.key();
    // A ring with room for many messages, and both sides moving bytes as fast as they
    // can, so that the producers contend for the lock word rather than wait for room: they
    // make their messages before a common start, and this process checks what it received
    // only at the end.
    let q = Queue::create(key, 64 << 20).unwrap();
    let (ready, go) = (Pipe::new(), Pipe::new());
    // Raw descriptors: the sending thread outlives the frame that holds the pipes.
    let ready_fd = ready.write.as_ref().unwrap().as_raw_fd();
    let go_fd = go.read.as_raw_fd();
    let producers: Vec<Child> = (0..PRODUCERS)
        .map(|p| {
            fork(move || {
                let Ok(q) = Queue::open(key) else {
                    return SETUP;
                };
                // SAFETY: getpid has no preconditions.
                let leader = unsafe { libc::getpid() };
                let sender = std::thread::Builder::new().spawn(move || {
                    // Send only once the main thread is gone: every copy then happens in a
                    // process whose leader shows `Z` in /proc.
                    if !wait_until(BOUND, || process_state(leader) == Some(b'Z')) {
                        // SAFETY: ends the process (every thread).
                        unsafe { libc::_exit(NO_ZOMBIE) }
                    }
                    let msgs: Vec<Vec<u8>> = (0..PER)
                        .map(|seq| message(p, seq, length(p, seq, MIN, MAX)))
                        .collect();
                    let mut b = [b'r'];
                    // SAFETY: one byte from a live buffer to our pipe.
                    unsafe { libc::write(ready_fd, b.as_ptr().cast(), 1) };
                    let mut exit = 0;
                    // SAFETY: one byte into a live buffer from our pipe.
                    if !poll_readable(go_fd, BOUND)
                        || unsafe { libc::read(go_fd, b.as_mut_ptr().cast(), 1) } != 1
                    {
                        exit = SETUP;
                    }
                    for msg in &msgs {
                        if exit != 0 {
                            break;
                        }
                        if let Err(e) = q.send_timeout(msg, OP) {
                            exit = code(e.kind());
                        }
                    }
                    // SAFETY: ends the process (every thread) with `exit`.
                    unsafe { libc::_exit(exit) }
                });
                if sender.is_err() {
                    return SETUP;
                }
                // The main thread exits; the process lives on in its other thread. This is
                // where `pthread_exit` ends up too, minus its forced unwinding, which here
                // would run through the test harness's Rust frames (and their destructors,
                // such as TestKey's, in this child).
                // SAFETY: SYS_exit ends only the calling thread; nothing on its stack is
                // used by the other thread.
                unsafe { libc::syscall(libc::SYS_exit, 0) };
                unreachable!("SYS_exit returned")
            })
        })
        .collect();

    let mut failures = Vec::new();
    let mut r = [0u8; PRODUCERS as usize];
    if ready.recv_timeout(&mut r, BOUND) {
        go.send(&[b'g'; PRODUCERS as usize]);
    } else {
        failures.push("the producers were not ready".to_string());
    }
    let mut received = Vec::new();
    let mut msg = Vec::new();
    while failures.is_empty() && received.len() < (PRODUCERS * PER) as usize {
        match q.recv_timeout(&mut msg, OP) {
            Ok(()) => received.push(std::mem::take(&mut msg)),
            Err(e) => failures.push(format!("message {}: {e}", received.len())),
        }
    }
    let mut seen = HashSet::new();
    let mut last: Vec<Option<u32>> = vec![None; PRODUCERS as usize];
    for (i, msg) in received.iter().enumerate() {
        match check(msg) {
            Err(e) => {
                failures.push(format!("message {i}: {e}"));
                break;
            }
            Ok((p, seq)) => {
                if p >= PRODUCERS || seq >= PER || msg.len() != length(p, seq, MIN, MAX) {
                    failures.push(format!("message {i}: not one that was sent ({p}/{seq})"));
                    break;
                }
                if last[p as usize]
                    .replace(seq)
                    .is_some_and(|prev| prev >= seq)
                {
                    failures.push(format!("message {i}: {p}/{seq} twice or out of order"));
                }
                seen.insert((p, seq));
            }
        }
    }
    for (p, mut producer) in producers.into_iter().enumerate() {
        let exit = match producer.wait_timeout(BOUND) {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        };
        if exit != 0 {
            failures.push(format!("producer {p}: {}", describe(exit)));
        }
    }
    if failures.is_empty() {
        assert_eq!(seen.len(), (PRODUCERS * PER) as usize, "messages lost");
        assert_eq!(
            q.try_recv(&mut msg).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "more messages than were sent"
        );
    }
    assert!(
        failures.is_empty(),
        "{PRODUCERS} producers whose main thread had exited: {}",
        failures.join("; ")
    );
}

// ---------------------------------------------------------------------------------------
// 5. Hostile control blocks.

const PAGE: usize = 4096;
/// A capacity that makes the segment exactly two pages (128-byte payload offset, 1024-byte
/// control block): the ring's last byte is the mapping's last, so anything past the ring
/// hits the guard page a victim places there.
const HOSTILE_CAP: usize = 2 * PAGE - 128 - RING;

/// The victim's calls, in order; the index is the first byte of each report pair.
const CALLS: [&str; 6] = [
    "open",
    "try_send",
    "try_recv",
    "send_timeout",
    "recv_timeout",
    "close",
];
/// Report pair `[GUARD, 1 or 0]`: whether the guard page sits right after the segment.
const GUARD: u8 = 100;
/// How long the victim's timed calls wait.
const SHORT: Duration = Duration::from_millis(200);
/// How long all victims together may take.
const VICTIM_BOUND: Duration = Duration::from_secs(10);

/// Unmaps all but the last page of a fresh inaccessible reservation of `len + PAGE`
/// bytes: the kernel's top-down search will most likely put the next mapping of `len`
/// bytes into that hole, right below the inaccessible page. Returns that page's address.
fn hole_below_a_guard(len: usize) -> Option<usize> {
    // SAFETY: a fresh anonymous PROT_NONE mapping; nothing refers to it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len + PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: unmaps the first `len` bytes of the mapping just made.
    unsafe { libc::munmap(p, len) };
    Some(p as usize + len)
}

/// Is the attach of segment `shm_id` followed by an inaccessible page? If the hole was
/// not used, tries to map one right after it.
fn guard_after_segment(shm_id: i32, guard: Option<usize>) -> bool {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    let id = shm_id.to_string();
    let end = maps.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_it = fields.len() >= 6 && fields[4] == id && fields[5].starts_with("/SYSV");
        let range = fields.first().filter(|_| is_it)?;
        usize::from_str_radix(range.split('-').nth(1)?, 16).ok()
    });
    let Some(end) = end else {
        return false;
    };
    if guard == Some(end) {
        return true;
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; a fresh anonymous
    // PROT_NONE page that nothing refers to.
    let p = unsafe {
        libc::mmap(
            end as *mut libc::c_void,
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    p as usize == end
}

/// Writes into a control block: (offset from the payload start, bytes).
type Writes = Vec<(usize, Vec<u8>)>;

/// The corruptions: a name and the writes (offset from the payload start, bytes). Every
/// queue starts with one 8-byte message published (a 16-byte record at ring index 0).
fn hostile_cases() -> Vec<(String, Writes)> {
    let cap = HOSTILE_CAP as u64;
    let u64s = |fields: &[(usize, u64)]| -> Writes {
        fields
            .iter()
            .map(|&(at, v)| (at, v.to_ne_bytes().to_vec()))
            .collect()
    };
    // The largest multiple of the capacity: positions near it index near the ring's end.
    let top = u64::MAX - u64::MAX % cap;
    let mut cases: Vec<(String, Writes)> = vec![
        (
            "tail = 20 (not a multiple of 8)".into(),
            u64s(&[(TAIL, 20)]),
        ),
        ("head = 4 (not a multiple of 8)".into(), u64s(&[(HEAD, 4)])),
        (
            "head = tail = capacity - 4 (a length word there reaches past the ring)".into(),
            u64s(&[(HEAD, cap - 4), (TAIL, cap - 4)]),
        ),
        (
            "head = capacity - 4, tail = capacity + 12".into(),
            u64s(&[(HEAD, cap - 4), (TAIL, cap + 12)]),
        ),
        ("head 64 > tail 16".into(), u64s(&[(HEAD, 64)])),
        (
            "tail - head = 2 x capacity".into(),
            u64s(&[(TAIL, 2 * cap)]),
        ),
        (
            "a record length of 1000 with 16 bytes published".into(),
            u64s(&[(RING, 1000)]),
        ),
        (
            "a record length of u64::MAX".into(),
            u64s(&[(RING, u64::MAX)]),
        ),
        (
            "head = tail = u64::MAX - 7".into(),
            u64s(&[(HEAD, u64::MAX - 7), (TAIL, u64::MAX - 7)]),
        ),
        (
            "head = tail = u64::MAX".into(),
            u64s(&[(HEAD, u64::MAX), (TAIL, u64::MAX)]),
        ),
        (
            "head = tail near u64::MAX, at ring index capacity - 4".into(),
            u64s(&[(HEAD, top - 4), (TAIL, top - 4)]),
        ),
        (
            "tail = u64::MAX - 7, head 0".into(),
            u64s(&[(TAIL, u64::MAX - 7)]),
        ),
        (
            "waiting_consumers = u32::MAX".into(),
            vec![(WAITING_CONSUMERS, u32::MAX.to_ne_bytes().to_vec())],
        ),
        (
            "waiting_producers = u32::MAX".into(),
            vec![(WAITING_PRODUCERS, u32::MAX.to_ne_bytes().to_vec())],
        ),
        (
            "state = 77".into(),
            vec![(STATE, 77u32.to_ne_bytes().to_vec())],
        ),
        ("capacity field = 8".into(), u64s(&[(CAPACITY, 8)])),
    ];
    for (name, field) in [
        ("producer_lock", PRODUCER_LOCK),
        ("consumer_lock", CONSUMER_LOCK),
    ] {
        // 1: the pid of every namespace's init, alive for ever.
        for v in [1, -1, i32::MIN, i32::MAX, 0x5a5a_5a5a] {
            cases.push((
                format!("{name} = {v:#x}"),
                vec![(field, v.to_ne_bytes().to_vec())],
            ));
        }
    }
    cases
}

#[test]
fn hostile_control_blocks_give_errors_never_signals() {
    struct Victim {
        name: String,
        _key: TestKey,
        report: Pipe,
        child: Child,
    }
    let mut victims = Vec::new();
    for (name, writes) in hostile_cases() {
        let tk = TestKey::new();
        let key = tk.key();
        {
            let q = Queue::create(key, HOSTILE_CAP).unwrap();
            assert_eq!(q.capacity(), HOSTILE_CAP);
            q.send(b"12345678").unwrap();
            // Dropped before the victim runs: no other process has the queue open.
        }
        let raw = Segment::open(key).unwrap();
        let po = payload_offset(&raw);
        for (at, bytes) in &writes {
            raw.write_all_at(bytes, po + at).unwrap();
        }
        drop(raw);
        let report = Pipe::new();
        let report_ref = &report;
        let child = fork(move || {
            let guard = hole_below_a_guard(2 * PAGE);
            let q = match Queue::open(key) {
                Ok(q) => q,
                Err(e) => {
                    report_ref.send(&[0, code(e.kind()) as u8]);
                    return 0;
                }
            };
            report_ref.send(&[0, 0]);
            report_ref.send(&[GUARD, u8::from(guard_after_segment(q.shm_id(), guard))]);
            let outcome = |r: shmsem::Result<()>| r.map_or_else(|e| code(e.kind()) as u8, |()| 0);
            let mut msg = Vec::new();
            report_ref.send(&[1, outcome(q.try_send(b"hostile"))]);
            report_ref.send(&[2, outcome(q.try_recv(&mut msg))]);
            report_ref.send(&[3, outcome(q.send_timeout(b"x", SHORT))]);
            report_ref.send(&[4, outcome(q.recv_timeout(&mut msg, SHORT))]);
            report_ref.send(&[5, outcome(q.close())]);
            0
        });
        victims.push(Victim {
            name,
            _key: tk,
            report,
            child,
        });
    }

    let deadline = Instant::now() + VICTIM_BOUND;
    let mut failures = Vec::new();
    let mut unguarded = Vec::new();
    for mut v in victims {
        let exit = v
            .child
            .try_wait_timeout(deadline.saturating_duration_since(Instant::now()));
        if exit.is_none() {
            v.child.kill(libc::SIGKILL);
            v.child.wait_timeout(BOUND);
        }
        let mut done = Vec::new();
        let mut guarded = None;
        let mut pair = [0u8; 2];
        while v.report.recv_timeout(&mut pair, Duration::ZERO) {
            match pair {
                [GUARD, g] => guarded = Some(g == 1),
                [call, outcome] => done.push(format!(
                    "{}: {}",
                    CALLS[call as usize],
                    describe(i32::from(outcome))
                )),
            }
        }
        if guarded == Some(false) {
            unguarded.push(v.name.clone());
        }
        let next = CALLS.get(done.len()).copied().unwrap_or("exit");
        match exit {
            Some(Exit::Code(0)) => {}
            None => failures.push(format!(
                "[{}] hung in {next} ({VICTIM_BOUND:?}) after [{}]",
                v.name,
                done.join(", ")
            )),
            Some(Exit::Signal(s)) => failures.push(format!(
                "[{}] killed by signal {s} in {next} after [{}]",
                v.name,
                done.join(", ")
            )),
            Some(Exit::Code(c)) => failures.push(format!(
                "[{}] {} in {next} after [{}]",
                v.name,
                describe(c),
                done.join(", ")
            )),
        }
    }
    if !unguarded.is_empty() {
        eprintln!("no guard page after the segment for: {unguarded:?}");
    }
    assert!(
        failures.is_empty(),
        "{} hostile control blocks broke their victim:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// 6. Waiting behind a stopped lock-word holder.

/// This process's CPU time (all threads; the callers are single-threaded).
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn a_producer_behind_a_stopped_lock_word_holder_uses_little_cpu() {
    const RING_BYTES: usize = 256 << 20;
    const HUGE: usize = 200 << 20;
    const WAIT: Duration = Duration::from_secs(2);
    const CPU_LIMIT: Duration = Duration::from_millis(200);
    let tk = TestKey::new();
    let key = tk.key();
    let _q = Queue::create(key, RING_BYTES).unwrap();
    let raw = Segment::open(key).unwrap();

    let mut a = huge_echo(key, HUGE);
    assert!(
        stop_while_holding(&mut a, &raw, PRODUCER_LOCK),
        "could not stop A while it held the producer lock word (payload + {PRODUCER_LOCK})"
    );

    // B: one small send, which must wait for the word and time out, mostly asleep. C: a
    // receive on the empty queue, which registers to sleep under the same word (the
    // producers' lock word orders a consumer's registration), so it waits for the word
    // just as long, and as cheaply.
    let b = timed_in_child(key, |q| q.send_timeout(b"x", WAIT));
    let c = timed_in_child(key, |q| q.recv_timeout(&mut Vec::new(), WAIT));
    let still_held = read_i32(&raw, PRODUCER_LOCK) != 0;
    a.kill(libc::SIGKILL);
    a.wait_timeout(BOUND);

    assert!(still_held, "A's lock word was released while A was stopped");
    for (who, (outcome, cpu, wall)) in [("B's send_timeout", b), ("C's recv_timeout", c)] {
        eprintln!("{who}: {}, {cpu:?} of CPU in {wall:?}", describe(outcome));
        assert_eq!(
            outcome,
            code(ErrorKind::TimedOut),
            "{who} behind a stopped holder: {}",
            describe(outcome)
        );
        assert!(wall >= WAIT, "{who} gave up after {wall:?}");
        assert!(
            cpu < CPU_LIMIT,
            "{who} used {cpu:?} of CPU waiting {wall:?} behind a stopped lock-word holder \
             (limit {CPU_LIMIT:?})"
        );
    }
}

/// A child that sends a `huge` message to the queue under `key` and takes it back, 50
/// times: copying it in (out) holds the producer (consumer) lock word for tens of ms.
fn huge_echo(key: Key, huge: usize) -> Child {
    fork(move || {
        let Ok(q) = Queue::open(key) else {
            return SETUP;
        };
        let huge = vec![0xa5u8; huge];
        let mut back = Vec::new();
        for _ in 0..50 {
            if let Err(e) = q.send_timeout(&huge, BOUND) {
                return code(e.kind());
            }
            if let Err(e) = q.recv_timeout(&mut back, BOUND) {
                return code(e.kind());
            }
        }
        0
    })
}

/// Stops `a` (SIGSTOP) while it holds the lock word at payload offset `word`: waits for
/// the word to be taken, stops A, and checks that the word is still taken once A has
/// stopped (else lets A go on and tries again). False if A ended first.
fn stop_while_holding(a: &mut Child, raw: &Segment, word: usize) -> bool {
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let a_alive = || process_state(a.pid).is_some_and(|s| s != b'Z');
        if !wait_until(left, || read_i32(raw, word) != 0 || !a_alive()) || !a_alive() {
            return false;
        }
        a.kill(libc::SIGSTOP);
        assert!(
            wait_until(BOUND, || process_state(a.pid) == Some(b'T')),
            "A did not stop"
        );
        if read_i32(raw, word) != 0 {
            return true;
        }
        a.kill(libc::SIGCONT);
    }
    false
}

/// A sender waiting for room behind a receiver stopped while copying out: its
/// registration passes through the receivers' lock word, which the stopped receiver
/// holds, so it waits there; a close must still reach it (it looks at the state while it
/// waits), not leave it waiting until the receiver continues.
#[test]
fn a_sender_waiting_behind_a_stopped_receiver_learns_of_close() {
    const RING_BYTES: usize = 256 << 20;
    const HUGE: usize = 200 << 20;
    let tk = TestKey::new();
    let key = tk.key();
    let q = Queue::create(key, RING_BYTES).unwrap();
    let raw = Segment::open(key).unwrap();
    let mut a = huge_echo(key, HUGE);
    assert!(
        stop_while_holding(&mut a, &raw, CONSUMER_LOCK),
        "could not stop A while it held the consumer lock word (payload + {CONSUMER_LOCK})"
    );
    // B: 100 MiB do not fit beside A's 200 MiB, which stay queued while A is stopped
    // copying them out. Its own deadline is far: only a close can end its wait in time.
    let b = fork(move || {
        let Ok(q) = Queue::open(key) else {
            return SETUP;
        };
        q.send_timeout(&vec![1u8; 100 << 20], 3 * BOUND)
            .map_or_else(|e| code(e.kind()), |()| 0)
    });
    let registered = wait_until(BOUND, || read_i32(&raw, WAITING_PRODUCERS) == 1);
    let still_held = read_i32(&raw, CONSUMER_LOCK) != 0;
    q.close().unwrap();
    let b_exit = b.join();
    a.kill(libc::SIGKILL);
    a.wait_timeout(BOUND);
    assert!(registered, "B never registered to wait for room");
    assert!(still_held, "A's lock word was released while A was stopped");
    assert_eq!(
        b_exit,
        code(ErrorKind::Closed),
        "B's send behind a stopped receiver, after close: {}",
        describe(b_exit)
    );
}

/// Runs `op` on the queue under `key` in a child, first in line for a CPU (root may raise
/// it: an `op` that spins gets the CPU time it asks for even on a loaded machine, so the
/// measurement tells spinning from sleeping). Returns its outcome (0 or an error's
/// code), the CPU time it used and its wall time.
fn timed_in_child(key: Key, op: fn(&Queue) -> shmsem::Result<()>) -> (i32, Duration, Duration) {
    let report = Pipe::new();
    let report_ref = &report;
    let child = fork(move || {
        let Ok(q) = Queue::open(key) else {
            return SETUP;
        };
        // SAFETY: setpriority on this process, plain integers.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -19) };
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let r = op(&q);
        let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
        let outcome = r.map_or_else(|e| code(e.kind()), |()| 0);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&outcome.to_ne_bytes());
        bytes.extend_from_slice(&(cpu.as_nanos() as u64).to_ne_bytes());
        bytes.extend_from_slice(&(wall.as_nanos() as u64).to_ne_bytes());
        report_ref.send(&bytes);
        0
    });
    let exit = child.join();
    assert_eq!(exit, 0, "child: {}", describe(exit));
    let mut bytes = [0u8; 20];
    assert!(
        report.recv_timeout(&mut bytes, BOUND),
        "the child sent no report"
    );
    let outcome = i32::from_ne_bytes(bytes[..4].try_into().unwrap());
    let cpu = Duration::from_nanos(u64::from_ne_bytes(bytes[4..12].try_into().unwrap()));
    let wall = Duration::from_nanos(u64::from_ne_bytes(bytes[12..].try_into().unwrap()));
    (outcome, cpu, wall)
}

// ---------------------------------------------------------------------------------------
// 7. A lock taken during an unrelated panic.

#[test]
fn a_lock_taken_during_an_unrelated_panic_does_not_poison() {
    /// Adds 1 to the value under the lock when dropped: in the test, while a panic that
    /// began outside any critical section unwinds.
    struct AddsOnDrop<'a>(&'a SharedMutex<u64>, &'a std::sync::Mutex<u64>);
    impl Drop for AddsOnDrop<'_> {
        fn drop(&mut self) {
            if let Ok(mut g) = self.0.lock_timeout(BOUND) {
                *g += 1;
            }
            if let Ok(mut g) = self.1.lock() {
                *g += 1;
            }
        }
    }
    let tk = TestKey::new();
    let m = SharedMutex::create(tk.key(), 0u64).unwrap();
    let reference = std::sync::Mutex::new(0u64);
    std::thread::scope(|s| {
        let r = s
            .spawn(|| {
                let _adds = AddsOnDrop(&m, &reference);
                panic!("unrelated to any lock");
            })
            .join();
        assert!(r.is_err());
    });
    // std's Mutex, the model: not poisoned, updated.
    assert!(!reference.is_poisoned());
    assert_eq!(*reference.lock().unwrap(), 1);
    assert!(
        !m.is_poisoned(),
        "a lock taken and released inside a destructor during an unrelated panic poisoned"
    );
    match m.lock_timeout(BOUND) {
        Ok(g) => assert_eq!(*g, 1),
        Err(e) => panic!("lock after an unrelated panic: {e}"),
    }
}

/// The helper the tests above rely on: the new process is pid 1 of its namespace, its
/// parent is outside it, and the host pid is a process of its own.
#[test]
fn the_pid_namespace_helper_gives_pid_1_and_a_host_pid() {
    let pipe = Pipe::new();
    let pipe_ref = &pipe;
    let mut c = fork_in_new_pid_ns(move || {
        // SAFETY: getpid/getppid have no preconditions.
        pipe_ref.send_i32(unsafe { libc::getpid() });
        // SAFETY: as above.
        pipe_ref.send_i32(unsafe { libc::getppid() });
        7
    });
    assert_eq!(pipe.recv_i32(), 1, "pid inside the namespace");
    assert_eq!(pipe.recv_i32(), 0, "the parent is outside the namespace");
    assert!(c.host_pid > 1 && c.host_pid != c.middle.pid);
    assert_eq!(c.exit_code(), 7);
}
