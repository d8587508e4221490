//! The subject: a [`SharedMutex`] holding the turn word and a [`SharedCondvar`] (private
//! keys, shared with both sides through fork). Each side holds the lock throughout and
//! waits in `wait_timeout_while(turn != me)` (which releases it while asleep), then
//! stamps, flips the turn and calls `notify_one`.

use shmsem::{Key, SharedCondvar, SharedMutex, SharedMutexGuard};
use shmsem_benchmarks::Res;
use shmsem_benchmarks::clock::now_ns;

use crate::sides::{Endpoint, PING, Plan, Sides, WAIT_BOUND};

/// What the mutex guards.
#[repr(C)]
#[derive(Clone, Copy, shmsem::Pod, shmsem::Zeroable)]
#[bytemuck(crate = "shmsem::bytemuck")]
pub struct Turn {
    /// Whose turn it is: [`PING`] or [`crate::sides::PONG`].
    turn: u64,
    /// Handoffs made so far.
    handoffs: u64,
    /// The last handoff's sender's clock read.
    stamp: u64,
}

const START: Turn = Turn {
    turn: PING as u64,
    handoffs: 0,
    stamp: 0,
};

/// The mutex and the condvar; both removed on drop.
pub struct Shmsem {
    mutex: SharedMutex<Turn>,
    cv: SharedCondvar,
}

impl Shmsem {
    pub fn new() -> Res<Shmsem> {
        let mutex = SharedMutex::create(Key::PRIVATE, START)?;
        match SharedCondvar::create(Key::PRIVATE) {
            Ok(cv) => Ok(Shmsem { mutex, cv }),
            Err(e) => {
                let _ = mutex.remove();
                Err(e.into())
            }
        }
    }

    fn lock(&self) -> Res<SharedMutexGuard<'_, Turn>> {
        Ok(self.mutex.lock().map_err(shmsem::Error::from)?)
    }
}

impl Drop for Shmsem {
    fn drop(&mut self) {
        for (what, result) in [
            ("mutex", self.mutex.remove()),
            ("condvar", self.cv.remove()),
        ] {
            if let Err(e) = result {
                eprintln!("{}: removing the {what}: {e}", shmsem_benchmarks::program());
            }
        }
    }
}

impl Sides for Shmsem {
    type End<'a> = End<'a>;

    fn reset(&self) -> Res<()> {
        *self.lock()? = START;
        Ok(())
    }

    fn endpoint(&self, me: usize) -> Res<End<'_>> {
        Ok(End {
            pair: self,
            me: me as u64,
            guard: None,
        })
    }

    fn check_end(&self, plan: &Plan) -> Res<()> {
        let got = *self.lock()?;
        if got.handoffs != 2 * plan.total() || got.turn != PING as u64 {
            return Err(format!(
                "WRONG COUNT: the mutex holds {} handoffs (turn {}), expected {} (turn {PING})",
                got.handoffs,
                got.turn,
                2 * plan.total()
            )
            .into());
        }
        Ok(())
    }
}

/// One side: the guard, once taken, is held except inside the condvar's waits.
pub struct End<'a> {
    pair: &'a Shmsem,
    me: u64,
    guard: Option<SharedMutexGuard<'a, Turn>>,
}

impl Endpoint for End<'_> {
    #[inline]
    fn send(&mut self, k: u64) -> Res<()> {
        let pair = self.pair;
        let mut g = match self.guard.take() {
            Some(g) => g,
            None => pair.lock()?,
        };
        g.stamp = now_ns();
        g.handoffs = k + 1;
        g.turn = 1 - self.me;
        pair.cv.notify_one()?;
        self.guard = Some(g);
        Ok(())
    }

    #[inline]
    fn recv(&mut self) -> Res<(u64, u64)> {
        let (pair, me) = (self.pair, self.me);
        let g = match self.guard.take() {
            Some(g) => g,
            None => pair.lock()?,
        };
        let (g, waited) = pair
            .cv
            .wait_timeout_while(g, WAIT_BOUND, |t| t.turn != me)
            .map_err(shmsem::Error::from)?;
        if waited.timed_out() {
            return Err(format!(
                "LOST WAKE-UP: no turn within {WAIT_BOUND:?} (handoffs so far: {})",
                g.handoffs
            )
            .into());
        }
        let got = (g.handoffs.wrapping_sub(1), g.stamp);
        self.guard = Some(g);
        Ok(got)
    }
}
