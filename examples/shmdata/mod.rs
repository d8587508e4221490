//! What the writer and the reader agree on: the seed tutorial's `shmdata.h`.
//!
//! The C original shares
//!
//! ```c
//! #define TEXT_SZ 2048
//! struct shared_use_st { int written; char text[TEXT_SZ]; };
//! ```
//!
//! under the key 1234. Here the struct gains a length (Rust strings are not
//! NUL-terminated), and a condition variable replaces the tutorial's `sleep(1)` polling
//! loops: each side waits on it until the `written` flag says it may go on, and notifies
//! it after changing the flag. Both examples include this file (`mod shmdata;`), so they
//! cannot disagree about the layout.

// Each example uses most, not all, of what is here.
#![allow(dead_code)]

use shmsem::{
    Error, ErrorKind, Key, LockError, LockResult, Pod, Result, SharedCondvar, SharedMutex,
    SharedMutexGuard, Zeroable,
};

/// Bytes of text one message can carry (the tutorial's `TEXT_SZ`).
pub const TEXT_SZ: usize = 2048;

/// The key both programs use for the shared text and its lock (the tutorial's
/// `(key_t)1234`; `ipcs` shows it as `0x000004d2`).
pub const KEY: Key = Key::from_raw(1234);

/// The key of the condition variable "`written` changed" (`0x000004d3` in `ipcs`).
pub const CHANGED_KEY: Key = Key::from_raw(1235);

/// The shared struct (the tutorial's `struct shared_use_st`). `#[repr(C)]` plain data, so
/// any process (even a C one) sees the same bytes.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct SharedUse {
    /// 1: `text` holds a message the reader has not taken yet; 0: the writer may write.
    pub written: u32,
    /// How many bytes of `text` are the message.
    pub len: u32,
    /// The message bytes.
    pub text: [u8; TEXT_SZ],
}

/// Steps 1 and 2 of the tutorial, `shmget` and `shmat`: find (or make) the segment with
/// [`KEY`] and attach it. `open_or_create` also makes the semaphore set that guards it;
/// whichever program starts first creates, the other opens, even if they start together.
pub fn open_shared() -> Result<SharedMutex<SharedUse>> {
    SharedMutex::open_or_create(KEY, SharedUse::zeroed())
}

/// The condition variable both sides wait on until `written` is what they need, and
/// notify after changing it. Whichever program starts first creates it.
pub fn open_changed() -> Result<SharedCondvar> {
    SharedCondvar::open_or_create(CHANGED_KEY)
}

/// Locks the shared text. If the other program died while holding the lock, the lock is
/// poisoned: say so and carry on (every field is checked before use, so a half-written
/// message cannot do harm here).
pub fn lock(shared: &SharedMutex<SharedUse>) -> Result<SharedMutexGuard<'_, SharedUse>> {
    carry_on(shared, shared.lock())
}

/// Waits on `changed` while `until_not(&shared)` holds (the lock is released while
/// waiting, held again after), then returns the guard. If the other side was killed, the
/// wait ends with `Removed` (when it removed the objects) or, if it died holding the
/// lock, with the lock poisoned, handled as in [`lock`].
pub fn wait_while<'a>(
    changed: &SharedCondvar,
    shared: &'a SharedMutex<SharedUse>,
    mut until_not: impl FnMut(&mut SharedUse) -> bool,
) -> Result<SharedMutexGuard<'a, SharedUse>> {
    let mut guard = lock(shared)?;
    // A loop (rather than `SharedCondvar::wait_while`) so that a poisoned re-lock is
    // handled and the condition still checked again.
    while until_not(&mut guard) {
        guard = carry_on(shared, changed.wait(guard))?;
    }
    Ok(guard)
}

fn carry_on<'a>(
    shared: &SharedMutex<SharedUse>,
    taken: LockResult<SharedMutexGuard<'a, SharedUse>>,
) -> Result<SharedMutexGuard<'a, SharedUse>> {
    match taken {
        Ok(guard) => Ok(guard),
        Err(LockError::Poisoned(p)) => {
            eprintln!("warning: {p}; carrying on");
            shared.clear_poison();
            Ok(p.into_inner())
        }
        Err(LockError::Failed(e)) => Err(e),
    }
}

/// The message in `text`, its length clamped to the buffer (the other side could be a
/// buggy or hostile program: never trust a length from shared memory).
pub fn message(s: &SharedUse) -> &[u8] {
    &s.text[..(s.len as usize).min(TEXT_SZ)]
}

/// Turns a `Removed` error (the other side removed the objects) into a clearer message.
pub fn explain(e: Error) -> String {
    if e.kind() == ErrorKind::Removed {
        format!("{e}\n(the objects were removed: the other program ended)")
    } else {
        e.to_string()
    }
}
