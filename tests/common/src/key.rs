//! Keys of one test's own ([`TestKey`]), and what is under a key.

use std::sync::atomic::{AtomicU32, Ordering};

use shmsem::Key;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A key no other test (in this or another test process) uses. Whatever SysV objects
/// carry it are removed when it is dropped, also when the test fails half-way.
pub struct TestKey(pub Key);

impl TestKey {
    #[allow(clippy::new_without_default)] // each call makes another key: not a default
    pub fn new() -> TestKey {
        // 0x7d prefix (ftok keys with proj_id '}' are unlikely), then 14 bits of pid and
        // 10 bits of a per-process counter.
        let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0x3ff;
        let pid = std::process::id() & 0x3fff;
        let key = TestKey(Key::from_raw((0x7d00_0000 | (pid << 10) | n) as i32));
        key.cleanup(); // leftovers of an earlier run that was killed
        key
    }

    pub fn key(&self) -> Key {
        self.0
    }

    /// Removes any segment and semaphore set with this key.
    pub fn cleanup(&self) {
        remove_key(self.0);
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Removes the segment and semaphore set with `key`, if any (errors ignored).
pub fn remove_key(key: Key) {
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

/// Does any SysV object with `key` exist? (segment, semaphore set)
pub fn key_in_use(key: Key) -> (bool, bool) {
    // SAFETY: lookups with plain integers.
    unsafe {
        (
            libc::shmget(key.as_raw(), 0, 0) >= 0,
            libc::semget(key.as_raw(), 0, 0) >= 0,
        )
    }
}
