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
//! NUL-terminated), and a second object, the doorbell semaphore set, replaces the
//! tutorial's `sleep(1)` polling loops. Both examples include this file (`mod shmdata;`),
//! so they cannot disagree about the layout.

// Each example uses most, not all, of what is here.
#![allow(dead_code)]

use shmsem::{
    Error, ErrorKind, Key, LockError, Pod, Result, SemaphoreSet, SharedMutex, SharedMutexGuard,
    Zeroable,
};

/// Bytes of text one message can carry (the tutorial's `TEXT_SZ`).
pub const TEXT_SZ: usize = 2048;

/// The key both programs use for the shared text and its lock (the tutorial's
/// `(key_t)1234`; `ipcs` shows it as `0x000004d2`).
pub const KEY: Key = Key::from_raw(1234);

/// The key of the doorbell semaphore set (`0x000004d3` in `ipcs -s`).
pub const DOORBELL_KEY: Key = Key::from_raw(1235);

/// Doorbell 0: the writer rings it when it has filled `text` ("there is a message").
pub const FILLED: usize = 0;
/// Doorbell 1: the reader rings it when it has emptied `text` ("send the next one").
pub const EMPTIED: usize = 1;

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

/// The doorbells: a raw set of 2 semaphores, both 0 when new. No `SEM_UNDO` here: they
/// count messages, not lock ownership, so a post must survive the process that made it.
///
/// Both programs call this. Creation is exclusive, so exactly one of them creates; the
/// other gets `AlreadyExists` and opens the set instead. (A new set needs no further
/// initialisation: Linux starts every semaphore at 0, which is "no message yet".)
pub fn open_doorbells() -> Result<SemaphoreSet> {
    match SemaphoreSet::create(DOORBELL_KEY, 2, 0o600) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => SemaphoreSet::open(DOORBELL_KEY),
        made => made,
    }
}

/// Locks the shared text. If the other program died while holding the lock, the lock is
/// poisoned: say so and carry on (every field is checked before use, so a half-written
/// message cannot do harm here).
pub fn lock(shared: &SharedMutex<SharedUse>) -> Result<SharedMutexGuard<'_, SharedUse>> {
    match shared.lock() {
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
