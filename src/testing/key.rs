//! Keys of one test's own ([`TestKey`]), and what is under a key.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::SystemTime;

use crate::managed::process;
use crate::raw::key::Key;

/// Every test key starts with this byte (`0x7d......` in `ipcs`): `ftok` keys with
/// project id `'}'` are the only others likely to.
const PREFIX: u32 = 0x7d00_0000;
/// The 24 bits below the prefix.
const LOW: u32 = 0x00ff_ffff;

/// This process's start in the 24-bit key space, with the fork generation it was drawn
/// in (upper half): a forked child draws its own, so a parent and its child never hand
/// out the same sequence. Atomics only (no `OnceLock`), so a fork that catches another
/// thread drawing cannot leave the child waiting.
static BASE: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU32 = AtomicU32::new(0);

fn base() -> u32 {
    let generation = process::generation();
    let packed = BASE.load(Ordering::Relaxed);
    if packed >> 32 == u64::from(generation) {
        return packed as u32;
    }
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // RandomState is seeded from the OS's randomness; the pid and the time tell apart
    // processes that inherited its state through fork.
    let drawn = RandomState::new().hash_one((std::process::id(), generation, nanos)) as u32 & LOW;
    let fresh = (u64::from(generation) << 32) | u64::from(drawn);
    match BASE.compare_exchange(packed, fresh, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => drawn,
        // Another thread drew first: use its base, so the threads share one sequence.
        Err(now) if now >> 32 == u64::from(generation) => now as u32,
        Err(_) => drawn,
    }
}

/// A key no other test uses, in this process or another; whatever System V objects carry
/// it (a segment, a semaphore set, both) are removed when it is dropped, also when the
/// test panics half-way (drop runs during unwinding).
///
/// Keys are `0x7d` followed by 24 bits from a sequence that starts at a random place in
/// each process; a key that already has an object under it (another test's, or one left
/// by a run that was killed) is skipped, never cleared. So a test is not disturbed by its
/// neighbours, and leftovers of killed runs (`kill -9`, `panic = "abort"`) stay until
/// removed: `ipcs -m -s | grep 0x7d` lists them; `shmsem-inspect gc` (shmsem pairs) or
/// `ipcrm` removes them.
///
/// Only the process that made the key removes the objects: a child that drops a copy
/// it inherited through `fork` leaves them alone. Give children `key.key()` (a [`Key`]
/// is `Copy`), or a reference: a `TestKey` *moved* into the closure of
/// [`fork`](super::fork) is dropped by the parent as soon as the child is started, with
/// the closure, and the objects with it.
///
/// ```
/// use shmsem::{ErrorKind, SharedMutex};
/// use shmsem::testing::{TestKey, key_in_use};
///
/// let key = TestKey::new();
/// let k = key.key();
/// let result = std::panic::catch_unwind(|| {
///     let _m = SharedMutex::create(key.key(), 0u32).unwrap();
///     panic!("the test fails half-way");
/// });
/// assert!(result.is_err());
/// assert_eq!(key_in_use(k), (true, true)); // the key is still alive: so are its objects
/// drop(key);
/// assert_eq!(key_in_use(k), (false, false)); // segment and semaphore set are gone
/// assert_eq!(SharedMutex::<u32>::open(k).unwrap_err().kind(), ErrorKind::NotFound);
/// ```
#[derive(Debug)]
pub struct TestKey {
    key: Key,
    generation: u32,
}

impl TestKey {
    /// A fresh key, with nothing under it.
    ///
    /// # Panics
    /// If 1000 keys in a row are taken (a machine full of leftovers).
    #[allow(clippy::new_without_default)] // each call makes another key: not a default
    pub fn new() -> TestKey {
        let base = base();
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let key = Key::from_u32(PREFIX | (base.wrapping_add(n) & LOW));
            if key_taken(key) == (false, false) {
                return TestKey {
                    key,
                    generation: process::generation(),
                };
            }
        }
        panic!("TestKey::new: 1000 keys in a row have objects under them (see `ipcs -m -s`)");
    }

    /// The key, for the code under test.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Removes any segment and semaphore set with this key now (dropping does it again).
    pub fn cleanup(&self) {
        remove_key(self.key);
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        if process::generation() == self.generation {
            self.cleanup();
        }
    }
}

/// Removes the segment and the semaphore set with `key`, if there are any. Errors (no
/// such object, no permission) are ignored: this is clean-up.
pub fn remove_key(key: Key) {
    if key == Key::PRIVATE {
        return; // shmget(IPC_PRIVATE) would make a segment, not find one
    }
    // SAFETY: shmget/semget/shmctl/semctl with plain integers; IPC_RMID takes no buffer.
    unsafe {
        let shm = libc::shmget(key.as_raw(), 0, 0);
        if shm >= 0 {
            libc::shmctl(shm, libc::IPC_RMID, std::ptr::null_mut());
        }
        let sem = libc::semget(key.as_raw(), 0, 0);
        if sem >= 0 {
            libc::semctl(sem, 0, libc::IPC_RMID);
        }
    }
}

/// Is there an object with `key`: `(segment, semaphore set)`. One this process may not
/// access counts as there.
pub fn key_in_use(key: Key) -> (bool, bool) {
    if key == Key::PRIVATE {
        return (false, false); // private objects have no key to find them by
    }
    key_taken(key)
}

fn key_taken(key: Key) -> (bool, bool) {
    let there =
        |rc: i32| rc >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT);
    // SAFETY: lookups with plain integers; nothing is created (no IPC_CREAT).
    unsafe {
        (
            there(libc::shmget(key.as_raw(), 0, 0)),
            there(libc::semget(key.as_raw(), 0, 0)),
        )
    }
}
