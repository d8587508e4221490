//! A queue's control block and the records waiting in its ring, read through a read-only
//! attach with atomic loads, at the offsets docs/FORMAT.md ("Queue (kind 3)") gives: the
//! inspector reads the queue as any other client of the format would, and checks every
//! value before it follows it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::process::Process;

/// The control block's size; the ring follows it.
const CONTROL_SIZE: u64 = 1024;
/// Field offsets in the control block (docs/FORMAT.md, "Control block").
const CAPACITY: usize = 0;
const STATE: usize = 8;
const TAIL: usize = 128;
const HEAD: usize = 256;
const PRODUCER_LOCK: usize = 384;
const CONSUMER_LOCK: usize = 512;
const WAITING_CONSUMERS: usize = 640;
const WAITING_PRODUCERS: usize = 768;
/// Records are aligned to 8 and start with an 8-byte length.
const RECORD_ALIGN: u64 = 8;
/// How often the records are counted again when consumers move `head` meanwhile.
const COUNT_TRIES: usize = 8;

/// The queue's `state` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueStatus {
    /// Open (0): sends and receives work.
    Open,
    /// Closed (1): receivers drain what is left, then get `Closed`.
    Closed,
    /// Removed (2).
    Removed,
    /// A value the format does not define (corruption).
    Invalid(u32),
}

impl QueueStatus {
    /// `open`, `closed`, `removed`, or `invalid`.
    pub fn name(self) -> &'static str {
        match self {
            QueueStatus::Open => "open",
            QueueStatus::Closed => "closed",
            QueueStatus::Removed => "removed",
            QueueStatus::Invalid(_) => "invalid",
        }
    }
}

/// What a queue's control block says, read at one moment (each word atomically; the
/// words together are as consistent as a moving queue allows: `head` and `tail` are a
/// pair that satisfies the ring's invariants, and the counted records are those between
/// them).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueState {
    /// Open, closed or removed.
    pub status: QueueStatus,
    /// Bytes in the ring.
    pub capacity: u64,
    /// Bytes consumed since creation (the `head` counter).
    pub head: u64,
    /// Bytes published since creation (the `tail` counter).
    pub tail: u64,
    /// Ring bytes in use: `tail - head`, the waiting records with their 8-byte length
    /// words and padding to a multiple of 8.
    pub bytes_waiting: u64,
    /// Messages waiting (records between `head` and `tail`); `None` when they could not
    /// be counted (see [`problem`](QueueState::problem)).
    pub messages_waiting: Option<u64>,
    /// The waiting messages' own bytes (without length words and padding); `None` as
    /// [`messages_waiting`](QueueState::messages_waiting).
    pub message_bytes: Option<u64>,
    /// The producer copying a record in now (its lock word), if any.
    pub producer_lock: Option<Process>,
    /// The consumer copying a record out now, if any.
    pub consumer_lock: Option<Process>,
    /// Consumers registered to sleep until a message comes (`waiting_consumers`).
    pub waiting_consumers: u32,
    /// Producers registered to sleep until there is room (`waiting_producers`).
    pub waiting_producers: u32,
    /// Why the messages could not be counted, or what is wrong with the control block.
    pub problem: Option<String>,
}

/// Reads the control block of a queue whose payload (`payload_size` bytes) starts at
/// `payload`. `who` turns a lock word (a lease token) into the process it names.
/// `None` when the payload is too small to hold a control block.
///
/// # Safety
/// `payload` must point at `payload_size` bytes of an attached segment that stay
/// attached during the call, aligned to 8 (a queue's payload is 128-aligned, and
/// `header::decode` checked that it fits in the segment). The memory is only loaded from.
pub(super) unsafe fn read(
    payload: *const u8,
    payload_size: u64,
    who: impl Fn(u32) -> Option<Process>,
) -> Option<QueueState> {
    if payload_size < CONTROL_SIZE + RECORD_ALIGN || payload as usize % 8 != 0 {
        return None;
    }
    // The offsets passed to these are the control block's fields: inside the 1024 bytes
    // the payload holds (checked above), each aligned for its type.
    let u32_at = |off: usize| {
        // SAFETY: as said above; the caller guarantees the mapping. Other processes
        // access these words only atomically, and this only loads.
        unsafe { (*payload.add(off).cast::<AtomicU32>()).load(Ordering::SeqCst) }
    };
    let u64_at = |off: usize| {
        // SAFETY: as for u32_at (the u64 fields are at multiples of 8).
        unsafe { (*payload.add(off).cast::<AtomicU64>()).load(Ordering::SeqCst) }
    };
    let capacity = u64_at(CAPACITY);
    let status = match u32_at(STATE) {
        0 => QueueStatus::Open,
        1 => QueueStatus::Closed,
        2 => QueueStatus::Removed,
        n => QueueStatus::Invalid(n),
    };
    let mut problem = None;
    if capacity != payload_size - CONTROL_SIZE || capacity % RECORD_ALIGN != 0 {
        problem = Some(format!(
            "corrupt control block: capacity {capacity} for a payload of {payload_size} bytes"
        ));
    }
    // SAFETY: the ring follows the control block inside the payload.
    let ring = unsafe { payload.add(CONTROL_SIZE as usize) };
    let mut counted = None;
    let (mut head, mut tail) = (u64_at(HEAD), u64_at(TAIL));
    if problem.is_none() {
        for _ in 0..COUNT_TRIES {
            // head first: tail only grows, so tail read after it is >= it.
            head = u64_at(HEAD);
            tail = u64_at(TAIL);
            let sane = head <= tail
                && tail - head <= capacity
                && head % RECORD_ALIGN == 0
                && tail % RECORD_ALIGN == 0;
            if !sane {
                // Consumers and producers moved between the two loads (tail - head can
                // exceed the capacity only then), or the block is corrupt: look again.
                problem = Some(format!(
                    "corrupt control block: head {head}, tail {tail}, capacity {capacity}"
                ));
                continue;
            }
            // SAFETY: the ring holds `capacity` bytes after the control block.
            let walked = unsafe { count_records(ring, capacity, head, tail) };
            // Records behind a head that moved may have been overwritten while counted:
            // only a count during which head stood still is the count at that head.
            if u64_at(HEAD) != head {
                problem = Some("consumers kept taking messages while they were counted".into());
                continue;
            }
            match walked {
                Ok(c) => {
                    counted = Some(c);
                    problem = None;
                }
                Err(why) => problem = Some(why),
            }
            break;
        }
    }
    let lock = |off| match u32_at(off) {
        0 => None,
        token => who(token),
    };
    Some(QueueState {
        status,
        capacity,
        head,
        tail,
        bytes_waiting: tail.saturating_sub(head),
        messages_waiting: counted.map(|(n, _)| n),
        message_bytes: counted.map(|(_, b)| b),
        producer_lock: lock(PRODUCER_LOCK),
        consumer_lock: lock(CONSUMER_LOCK),
        waiting_consumers: u32_at(WAITING_CONSUMERS),
        waiting_producers: u32_at(WAITING_PRODUCERS),
        problem,
    })
}

/// Walks the records from `head` to `tail`: (messages, their bytes). Every length is
/// checked against what is published before it is followed.
///
/// # Safety
/// `ring` must point at `capacity` mapped bytes, 8-aligned; `capacity` a non-zero
/// multiple of 8; `head <= tail <= head + capacity`, both multiples of 8.
unsafe fn count_records(
    ring: *const u8,
    capacity: u64,
    head: u64,
    tail: u64,
) -> Result<(u64, u64), String> {
    let (mut pos, mut messages, mut bytes) = (head, 0u64, 0u64);
    while pos < tail {
        let at = (pos % capacity) as usize;
        // SAFETY: at is a multiple of 8 below capacity (a multiple of 8), so the 8-byte
        // length word lies inside the ring, aligned; producers write it atomically.
        let len = unsafe { (*ring.add(at).cast::<AtomicU64>()).load(Ordering::Acquire) };
        let record = len
            .checked_next_multiple_of(RECORD_ALIGN)
            .and_then(|l| l.checked_add(RECORD_ALIGN));
        match record {
            Some(r) if r <= tail - pos => {
                messages += 1;
                bytes += len;
                pos += r;
            }
            _ => {
                return Err(format!(
                    "corrupt ring: a record of length {len} at position {pos} runs past the \
                     published end ({tail})"
                ));
            }
        }
    }
    Ok((messages, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload: control block and ring, 8-aligned.
    fn payload(capacity: u64, head: u64, tail: u64, lens: &[(u64, u64)]) -> Vec<u64> {
        let mut words = vec![0u64; ((CONTROL_SIZE + capacity) / 8) as usize];
        words[CAPACITY / 8] = capacity;
        words[HEAD / 8] = head;
        words[TAIL / 8] = tail;
        for &(pos, len) in lens {
            words[((CONTROL_SIZE + pos % capacity) / 8) as usize] = len;
        }
        words
    }

    fn read_words(mut words: Vec<u64>) -> QueueState {
        let size = words.len() as u64 * 8;
        // SAFETY: a live, 8-aligned buffer of the size given, borrowed mutably (the
        // loads go through atomics) for the call.
        unsafe { read(words.as_mut_ptr().cast(), size, |_| None).unwrap() }
    }

    #[test]
    fn counts_records_also_across_the_end_of_the_ring() {
        // Three messages of 3, 8 and 0 bytes: records of 16, 16 and 8 bytes from position
        // 40 in a ring of 64: the second's message wraps to index 0, the third is at 8.
        let q = read_words(payload(64, 40, 80, &[(40, 3), (56, 8), (72, 0)]));
        assert_eq!(q.status, QueueStatus::Open);
        assert_eq!((q.capacity, q.bytes_waiting), (64, 40));
        assert_eq!((q.messages_waiting, q.message_bytes), (Some(3), Some(11)));
        assert_eq!(q.problem, None);
        let empty = read_words(payload(64, 64, 64, &[]));
        assert_eq!(empty.messages_waiting, Some(0));
    }

    #[test]
    fn a_corrupt_block_is_reported_not_followed() {
        let q = read_words(payload(64, 0, 16, &[(0, 1 << 40)]));
        assert_eq!(q.messages_waiting, None);
        assert!(q.problem.unwrap().contains("corrupt ring"));
        let q = read_words(payload(64, 16, 8, &[]));
        assert!(q.problem.unwrap().contains("head 16, tail 8"));
        let mut words = payload(64, 0, 0, &[]);
        words[CAPACITY / 8] = 7;
        assert!(read_words(words).problem.unwrap().contains("capacity 7"));
    }
}
