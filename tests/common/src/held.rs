//! A fixture several test files need: a `SharedMutex<u64>` held by one forked process,
//! with a second process asleep in `lock_timeout` on it, until the test releases it.

use shmsem::testing::{BOUND, Pipe};
use shmsem::{Key, SharedMutex};

use crate::child::{Child, fork};

/// The holder and the waiter of a mutex. Both exit 0 once [`release`](HeldMutex::release)d
/// and joined; dropping it kills them.
pub struct HeldMutex {
    /// Holds the lock until released.
    pub holder: Child,
    /// Asleep on the lock (or on its way there: wait for the kernel's count).
    pub waiter: Child,
    release: Pipe,
}

impl HeldMutex {
    /// Forks the holder (returning once it is inside) and then the waiter, on the mutex
    /// with `key` (which must exist).
    pub fn new(key: Key) -> HeldMutex {
        let (inside, release) = (Pipe::new(), Pipe::new());
        let holder = fork(|| {
            let Ok(m) = SharedMutex::<u64>::open(key) else {
                return 1;
            };
            let Ok(_g) = m.lock() else { return 2 };
            inside.send(b"i");
            let mut b = [0u8];
            if release.recv_timeout(&mut b, BOUND) {
                0
            } else {
                3
            }
        });
        assert_eq!(inside.recv_byte(), b'i', "the holder never got in");
        let waiter = fork(|| match SharedMutex::<u64>::open(key) {
            Ok(m) => m.lock_timeout(BOUND).map_or(2, |_| 0),
            Err(_) => 1,
        });
        HeldMutex {
            holder,
            waiter,
            release,
        }
    }

    /// Lets the holder go; the waiter then takes the lock. Both must exit 0.
    pub fn release(self) {
        self.release.send(b"r");
        assert_eq!(self.holder.join(), 0, "the holder");
        assert_eq!(self.waiter.join(), 0, "the waiter");
    }
}

/// Forks a process that takes the `SharedMutex<u64>` with `key` (which must exist),
/// writes 41 into it half-way through an update, and is SIGKILLed there; returns its
/// pid once it is dead and reaped. The mutex is left poisoned by a death.
pub fn killed_inside(key: Key) -> i32 {
    let (inside, hold) = (Pipe::new(), Pipe::new());
    let mut child = fork(|| {
        let Ok(m) = SharedMutex::<u64>::open(key) else {
            return 1;
        };
        let Ok(mut g) = m.lock() else { return 2 };
        *g = 41; // half-way through an update...
        inside.send(b"i");
        // ...and killed here.
        let mut b = [0u8];
        hold.recv_timeout(&mut b, BOUND);
        3
    });
    assert_eq!(inside.recv_byte(), b'i', "the holder never got in");
    child.kill(libc::SIGKILL);
    assert_eq!(
        child.wait_timeout(BOUND),
        crate::Exit::Signal(libc::SIGKILL)
    );
    child.pid
}
