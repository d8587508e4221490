//! The futex-based reference: a process-shared `pthread_mutex_t` and `pthread_cond_t`
//! (`PTHREAD_PROCESS_SHARED`; the condvar on `CLOCK_MONOTONIC`) with the turn word beside
//! them in an anonymous `MAP_SHARED` mapping. The same ping-pong as shmsem's: each side
//! holds the mutex throughout and waits in `pthread_cond_timedwait` while it is not its
//! turn, then stamps, flips the turn and calls `pthread_cond_signal`. The mutex is not
//! robust: a side that dies holding it leaves it held (the run's watchdog ends that).

use std::mem::MaybeUninit;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::clock::now_ns;
use shmsem_benchmarks::os::errno_rc;
use shmsem_benchmarks::pages::SharedPages;

use crate::sides::{Endpoint, PING, Plan, Sides, WAIT_BOUND};

/// What the mapping holds.
#[repr(C)]
struct Shared {
    mutex: libc::pthread_mutex_t,
    cond: libc::pthread_cond_t,
    turn: u64,
    handoffs: u64,
    stamp: u64,
}

/// The mapping with the initialised mutex and condvar; destroyed on drop.
pub struct PthreadCv {
    pages: SharedPages,
}

impl PthreadCv {
    pub fn new() -> Res<PthreadCv> {
        let pages = SharedPages::new(size_of::<Shared>())?;
        let at = pages.ptr().cast::<Shared>();
        // SAFETY: the mapping is fresh, page-aligned (aligned for Shared) and large
        // enough; every attribute object is initialised before use and destroyed once;
        // the mutex and condvar are initialised once, before any fork.
        unsafe {
            let mut mattr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            errno_rc(
                "pthread_mutexattr_init",
                libc::pthread_mutexattr_init(mattr.as_mut_ptr()),
            )?;
            let rc = match libc::pthread_mutexattr_setpshared(
                mattr.as_mut_ptr(),
                libc::PTHREAD_PROCESS_SHARED,
            ) {
                0 => libc::pthread_mutex_init(&raw mut (*at).mutex, mattr.as_ptr()),
                e => e,
            };
            libc::pthread_mutexattr_destroy(mattr.as_mut_ptr());
            errno_rc("pthread_mutex_init (process-shared)", rc)?;

            let mut cattr = MaybeUninit::<libc::pthread_condattr_t>::uninit();
            let rc = libc::pthread_condattr_init(cattr.as_mut_ptr());
            if rc != 0 {
                libc::pthread_mutex_destroy(&raw mut (*at).mutex);
                return errno_rc("pthread_condattr_init", rc).map(|()| unreachable!());
            }
            let mut rc =
                libc::pthread_condattr_setpshared(cattr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
            if rc == 0 {
                rc = libc::pthread_condattr_setclock(cattr.as_mut_ptr(), libc::CLOCK_MONOTONIC);
            }
            if rc == 0 {
                rc = libc::pthread_cond_init(&raw mut (*at).cond, cattr.as_ptr());
            }
            libc::pthread_condattr_destroy(cattr.as_mut_ptr());
            if rc != 0 {
                libc::pthread_mutex_destroy(&raw mut (*at).mutex);
                errno_rc("pthread_cond_init (process-shared, monotonic)", rc)?;
            }
        }
        Ok(PthreadCv { pages })
    }

    fn shared(&self) -> *mut Shared {
        self.pages.ptr().cast()
    }

    /// Runs `f` on the turn fields with the mutex held (in the parent, between runs).
    fn with_lock<R>(&self, f: impl FnOnce(&mut u64, &mut u64, &mut u64) -> R) -> Res<R> {
        let at = self.shared();
        // SAFETY: the mutex was initialised in `new`; the fields are only touched with it
        // held, which it is between lock and unlock here.
        unsafe {
            errno_rc(
                "pthread_mutex_lock",
                libc::pthread_mutex_lock(&raw mut (*at).mutex),
            )?;
            let r = f(&mut (*at).turn, &mut (*at).handoffs, &mut (*at).stamp);
            errno_rc(
                "pthread_mutex_unlock",
                libc::pthread_mutex_unlock(&raw mut (*at).mutex),
            )?;
            Ok(r)
        }
    }
}

impl Drop for PthreadCv {
    fn drop(&mut self) {
        let at = self.shared();
        // SAFETY: initialised in `new`; no process uses them any more (the workers of
        // every run were reaped).
        unsafe {
            libc::pthread_cond_destroy(&raw mut (*at).cond);
            libc::pthread_mutex_destroy(&raw mut (*at).mutex);
        }
    }
}

impl Sides for PthreadCv {
    type End<'a> = End;

    fn reset(&self) -> Res<()> {
        self.with_lock(|turn, handoffs, stamp| {
            (*turn, *handoffs, *stamp) = (PING as u64, 0, 0);
        })
    }

    fn endpoint(&self, me: usize) -> Res<End> {
        Ok(End {
            at: self.shared(),
            me: me as u64,
            held: false,
        })
    }

    fn check_end(&self, plan: &Plan) -> Res<()> {
        let (turn, handoffs) = self.with_lock(|turn, handoffs, _| (*turn, *handoffs))?;
        if handoffs != 2 * plan.total() || turn != PING as u64 {
            return Err(format!(
                "WRONG COUNT: the shared state holds {handoffs} handoffs (turn {turn}), \
                 expected {} (turn {PING})",
                2 * plan.total()
            )
            .into());
        }
        Ok(())
    }
}

/// One side: the mutex, once taken, is held except inside the condvar's waits.
pub struct End {
    at: *mut Shared,
    me: u64,
    held: bool,
}

impl End {
    #[inline]
    fn hold(&mut self) -> Res<()> {
        if !self.held {
            // SAFETY: the mutex lives in the mapping, initialised before the fork.
            errno_rc("pthread_mutex_lock", unsafe {
                libc::pthread_mutex_lock(&raw mut (*self.at).mutex)
            })?;
            self.held = true;
        }
        Ok(())
    }
}

impl Endpoint for End {
    #[inline]
    fn send(&mut self, k: u64) -> Res<()> {
        self.hold()?;
        let at = self.at;
        // SAFETY: this side holds the mutex, which guards the fields; the condvar lives in
        // the mapping, initialised before the fork.
        unsafe {
            (*at).stamp = now_ns();
            (*at).handoffs = k + 1;
            (*at).turn = 1 - self.me;
            errno_rc(
                "pthread_cond_signal",
                libc::pthread_cond_signal(&raw mut (*at).cond),
            )
        }
    }

    #[inline]
    fn recv(&mut self) -> Res<(u64, u64)> {
        self.hold()?;
        let at = self.at;
        let deadline = now_ns() + WAIT_BOUND.as_nanos() as u64;
        let deadline = libc::timespec {
            tv_sec: (deadline / 1_000_000_000) as libc::time_t,
            tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
        };
        // SAFETY: this side holds the mutex (pthread_cond_timedwait releases it while
        // asleep and holds it again when it returns, also on ETIMEDOUT), which guards the
        // fields.
        unsafe {
            while (*at).turn != self.me {
                match libc::pthread_cond_timedwait(
                    &raw mut (*at).cond,
                    &raw mut (*at).mutex,
                    &deadline,
                ) {
                    0 => {}
                    libc::ETIMEDOUT if (*at).turn != self.me => {
                        return Err(format!(
                            "LOST WAKE-UP: no turn within {WAIT_BOUND:?} (handoffs so far: {})",
                            (*at).handoffs
                        )
                        .into());
                    }
                    libc::ETIMEDOUT => {}
                    rc => errno_rc("pthread_cond_timedwait", rc)?,
                }
            }
            Ok(((*at).handoffs.wrapping_sub(1), (*at).stamp))
        }
    }
}

impl Drop for End {
    fn drop(&mut self) {
        if self.held {
            // SAFETY: held by this side (see `hold`).
            unsafe { libc::pthread_mutex_unlock(&raw mut (*self.at).mutex) };
        }
    }
}
