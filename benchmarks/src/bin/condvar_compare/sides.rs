//! The ping-pong every native competitor plays, and one run of it: two forked processes
//! (ping and pong) held at the harness's start gate, released together; warm-up round
//! trips, then the timed ones; every handoff checked (its number arrives exact) and
//! timed (the sender's clock read just before it hands over, the receiver's just after it
//! sees the handoff); the results through a shared mapping to the parent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::clock::now_ns;
use shmsem_benchmarks::machine::pin;
use shmsem_benchmarks::pages::SharedPages;
use shmsem_benchmarks::procs::Team;
use shmsem_benchmarks::stats::median;

/// The side that hands over first (handoffs 0, 2, 4, ...) and keeps the time.
pub const PING: usize = 0;
/// The side that answers (handoffs 1, 3, 5, ...).
pub const PONG: usize = 1;

/// One wait that takes this long fails the run as a lost wake-up (where the competitor
/// can bound a single wait; the others are bounded by [`RUN_WATCHDOG`]), and so does a
/// handoff that took this long to arrive.
pub const WAIT_BOUND: Duration = Duration::from_secs(10);
/// One run, fork to the last exit, may take this long; then its processes are killed and
/// the program fails.
pub const RUN_WATCHDOG: Duration = Duration::from_secs(60);

/// What one run does.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Round trips before the timed ones (not measured).
    pub warm: u64,
    /// Round trips timed.
    pub rounds: u64,
    /// Ping's and pong's CPU, if pinned.
    pub cpus: Option<(usize, usize)>,
}

impl Plan {
    pub fn total(&self) -> u64 {
        self.warm + self.rounds
    }

    /// The CPU of side `me`, if pinned.
    pub fn cpu(&self, me: usize) -> Option<usize> {
        self.cpus
            .map(|(ping, pong)| if me == PING { ping } else { pong })
    }
}

pub fn side_name(me: usize) -> &'static str {
    if me == PING { "ping" } else { "pong" }
}

/// What one run measured.
#[derive(Clone, Copy)]
pub struct Sample {
    /// Round trips timed.
    pub rounds: u64,
    /// Ping's first timed handoff to its last answer.
    pub window_ns: u64,
    /// One-way handoff latency (sender's stamp to receiver's), both directions: median.
    pub one_way_p50: f64,
    /// ... and 99th percentile.
    pub one_way_p99: f64,
}

impl Sample {
    /// From the window and every timed handoff's latency (`2 * rounds` of them).
    pub fn new(rounds: u64, window_ns: u64, mut deltas: Vec<u64>) -> Sample {
        deltas.sort_unstable();
        let p99 = deltas
            .get((deltas.len() * 99 / 100).min(deltas.len().saturating_sub(1)))
            .map_or(f64::NAN, |&d| d as f64);
        Sample {
            rounds,
            window_ns,
            one_way_p50: median(deltas.iter().map(|&d| d as f64).collect()),
            one_way_p99: p99,
        }
    }

    pub fn round_trips_per_s(&self) -> f64 {
        self.rounds as f64 * 1e9 / self.window_ns.max(1) as f64
    }
}

/// One side's end of a competitor, made in its process.
pub trait Endpoint {
    /// Hands handoff `k` to the other side, stamped with the clock right before.
    fn send(&mut self, k: u64) -> Res<()>;
    /// Waits for the other side's handoff; returns its number and the sender's stamp.
    fn recv(&mut self) -> Res<(u64, u64)>;
}

/// A native competitor: what the parent makes once (before any fork), and the two ends.
pub trait Sides {
    type End<'a>: Endpoint
    where
        Self: 'a;
    /// Before each run, in the parent: the state as new.
    fn reset(&self) -> Res<()>;
    /// Side `me`'s end, in its process, before the start gate.
    fn endpoint(&self, me: usize) -> Res<Self::End<'_>>;
    /// After each run, in the parent: is what the run left what `plan` implies (the
    /// handoff counter, nothing pending)?
    fn check_end(&self, plan: &Plan) -> Res<()>;
}

/// One run of `sides` (named `name` in errors).
pub fn run<S: Sides>(sides: &S, name: &str, plan: &Plan) -> Res<Sample> {
    sides.reset()?;
    let board = Board::new(plan.rounds)?;
    let mut team = Team::new(RUN_WATCHDOG)?;
    for me in [PING, PONG] {
        let board = &board;
        team.spawn(move |gate| {
            if let Some(cpu) = plan.cpu(me) {
                pin(cpu)?;
            }
            // Filled (so touched) before the start.
            let mut deltas = vec![u64::MAX; plan.rounds as usize];
            let mut end = sides.endpoint(me)?;
            gate.ready()?;
            gate.wait()?;
            let window = play(&mut end, me, plan, &mut deltas)
                .map_err(|e| format!("{name}, {}: {e}", side_name(me)))?;
            drop(end);
            board.publish(me, &deltas, window);
            Ok(())
        })?;
    }
    team.wait_ready()?;
    team.release();
    team.wait().map_err(|e| hung(name, e))?;
    sides.check_end(plan).map_err(|e| format!("{name}: {e}"))?;
    let (window_ns, deltas) = board.collect().map_err(|e| format!("{name}: {e}"))?;
    Ok(Sample::new(plan.rounds, window_ns, deltas))
}

/// `name: e`, saying what a run that did not finish in time most likely is.
pub fn hung(name: &str, e: Box<dyn std::error::Error + Send + Sync>) -> String {
    let e = e.to_string();
    if e.contains("did not finish in time") {
        format!("{name}: {e}: a lost wake-up, most likely")
    } else {
        format!("{name}: {e}")
    }
}

/// Side `me`'s part of the ping-pong; returns ping's timed window (0s for pong).
fn play<E: Endpoint>(end: &mut E, me: usize, plan: &Plan, deltas: &mut [u64]) -> Res<(u64, u64)> {
    let mut window = (0, 0);
    for r in 0..plan.total() {
        if me == PING {
            if r == plan.warm {
                window.0 = now_ns();
            }
            end.send(2 * r)?;
            let (k, sent) = end.recv()?;
            arrived(r, 2 * r + 1, k, sent, now_ns(), plan, deltas)?;
        } else {
            let (k, sent) = end.recv()?;
            arrived(r, 2 * r, k, sent, now_ns(), plan, deltas)?;
            end.send(2 * r + 1)?;
        }
    }
    if me == PING {
        window.1 = now_ns();
    }
    Ok(window)
}

/// Checks handoff `k` (expected: `want`), sent at `sent`, seen at `at`, in round `r`;
/// records its latency if the round is timed.
#[inline]
fn arrived(
    r: u64,
    want: u64,
    k: u64,
    sent: u64,
    at: u64,
    plan: &Plan,
    deltas: &mut [u64],
) -> Res<()> {
    if k != want {
        return Err(format!("WRONG HANDOFF: expected handoff {want}, got {k}").into());
    }
    if at < sent {
        return Err(format!("handoff {k} arrived before it was sent ({sent} > {at} ns)").into());
    }
    // Both sides' bounded waits end together when a wake-up is lost; the one whose turn
    // it was then finds it and goes on. A handoff that slow is that lost wake-up.
    if at - sent >= WAIT_BOUND.as_nanos() as u64 {
        return Err(format!(
            "LOST WAKE-UP: handoff {k} took {:.1?} (seen only when a wait timed out)",
            Duration::from_nanos(at - sent)
        )
        .into());
    }
    if r >= plan.warm {
        deltas[(r - plan.warm) as usize] = at - sent;
    }
    Ok(())
}

/// Where the two sides leave their results: ping's window, each side's count of
/// latencies, then the latencies (ping's, then pong's).
struct Board {
    pages: SharedPages,
    rounds: usize,
}

/// `[ping start, ping end, ping's count, pong's count]`, then the latencies.
const HEADER: usize = 4;

impl Board {
    fn new(rounds: u64) -> Res<Board> {
        let rounds = usize::try_from(rounds)?;
        Ok(Board {
            pages: SharedPages::new((HEADER + 2 * rounds) * size_of::<u64>())?,
            rounds,
        })
    }

    fn header(&self, i: usize) -> &AtomicU64 {
        assert!(i < HEADER);
        // SAFETY: the mapping starts with HEADER u64s, is page-aligned (aligned for
        // AtomicU64) and zero-filled (a valid AtomicU64), and lives as long as `self`.
        unsafe { &*self.pages.ptr().cast::<AtomicU64>().add(i) }
    }

    fn latencies(&self, me: usize) -> *mut u64 {
        // SAFETY: within the mapping: HEADER + 2 * rounds u64s.
        unsafe {
            self.pages
                .ptr()
                .cast::<u64>()
                .add(HEADER + me * self.rounds)
        }
    }

    /// From side `me`, once, at its end.
    fn publish(&self, me: usize, deltas: &[u64], window: (u64, u64)) {
        let n = deltas.len().min(self.rounds);
        // SAFETY: side `me`'s region holds `rounds` u64s, written by this process alone,
        // read by the parent only after this process exited.
        unsafe { std::ptr::copy_nonoverlapping(deltas.as_ptr(), self.latencies(me), n) };
        if me == PING {
            self.header(0).store(window.0, Ordering::Relaxed);
            self.header(1).store(window.1, Ordering::Relaxed);
        }
        self.header(2 + me).store(n as u64, Ordering::Release);
    }

    /// In the parent, after both sides exited: ping's window, every latency.
    fn collect(&self) -> Res<(u64, Vec<u64>)> {
        let mut all = Vec::with_capacity(2 * self.rounds);
        for me in [PING, PONG] {
            let n = self.header(2 + me).load(Ordering::Acquire) as usize;
            if n != self.rounds {
                return Err(format!(
                    "{} reported {n} timed handoffs, not {}",
                    side_name(me),
                    self.rounds
                )
                .into());
            }
            // SAFETY: the region holds `rounds` u64s, written by a process that exited.
            let got = unsafe { std::slice::from_raw_parts(self.latencies(me), n) };
            if got.contains(&u64::MAX) {
                return Err(format!("{} left a handoff unrecorded", side_name(me)).into());
            }
            all.extend_from_slice(got);
        }
        let (start, end) = (
            self.header(0).load(Ordering::Relaxed),
            self.header(1).load(Ordering::Relaxed),
        );
        if end <= start {
            return Err("ping reported no time window".into());
        }
        Ok((end - start, all))
    }
}
