//! The queue's peers: other ways to send messages from one process to another, each
//! behind the same three calls so that `queue_compare` (throughput) and `queue_latency`
//! (ping-pong) drive every one alike, and each in its own module (one per transport, so
//! what one crate needs stays in its file).
//!
//! A [`Channel`] is made in the parent before it forks (so both processes inherit what it
//! holds: mappings, descriptors, names), and each process then takes the one end it uses,
//! after the fork: [`Channel::sender`] in the writer, [`Channel::receiver`] in the reader.
//! Taking an end drops that process's copy of the other end where the transport has
//! one (a pipe's other descriptor), so a peer's death is an end of file, as in real use.
//! The parent owns the channel and removes whatever it made (files, shared memory,
//! names) when it drops it, also on errors; the workers end with `_exit` and drop
//! nothing of it. A [`Receiver`] that gets no message for [`STALL`] fails instead of
//! hanging (its writer died or lost a wake-up).
//!
//! Transports:
//!
//! - [`ideal`]: a futex-based SPSC ring in an anonymous shared mapping, written as the
//!   reference for what an SPSC byte queue between two processes can do;
//! - [`stream`]: a pipe and a Unix stream socket pair (`write_all` / `read_exact`);
//! - [`iceoryx2`]: the `iceoryx2` crate's publish-subscribe service (zero-copy: the
//!   message is written into a loaned sample);
//! - [`ipc_channel`]: the `ipc-channel` crate (Servo's), a bytes channel over Unix
//!   sockets;
//! - [`shmem_ipc`]: the `shmem-ipc` crate's SPSC ring buffer over a memfd, with eventfds
//!   to wake the other side;
//! - [`ipmpsc`]: the `ipmpsc` crate's shared ring buffer in a memory-mapped temporary
//!   file, messages serialised with bincode.

pub mod iceoryx2;
pub mod ideal;
pub mod ipc_channel;
pub mod ipmpsc;
pub mod shmem_ipc;
pub mod stream;

use std::time::Duration;

use crate::Res;

/// A receiver that waits this long for one message fails: its writer died or a wake-up
/// was lost. (No transfer here waits for a message anywhere near as long.)
pub const STALL: Duration = Duration::from_secs(10);

/// The sending end, used in one process.
pub trait Sender {
    /// Sends `msg` (blocking while the transport is full).
    fn send(&mut self, msg: &[u8]) -> Res<()>;
}

/// The receiving end, used in one process.
pub trait Receiver {
    /// Receives the next message into `buf` (its old contents replaced; its allocation
    /// reused where the transport allows). Fails after [`STALL`] without a message.
    fn recv(&mut self, buf: &mut Vec<u8>) -> Res<()>;
}

/// A one-way message channel between two processes, made before they fork.
pub trait Channel: Sized {
    /// What the tables call it.
    const NAME: &'static str;
    type Tx<'a>: Sender
    where
        Self: 'a;
    type Rx<'a>: Receiver
    where
        Self: 'a;

    /// The largest message it can carry, if it has such a limit (then sizes above it are
    /// left out of the tables).
    fn max_message() -> Option<usize> {
        None
    }

    /// A channel for messages of up to `max_msg` bytes (the byte streams, which have no
    /// boundaries: of exactly that size), made by the parent before it forks.
    fn new(max_msg: usize) -> Res<Self>;

    /// The sending end, taken once, after the fork, in the process that sends.
    fn sender(&self) -> Res<Self::Tx<'_>>;

    /// The receiving end, taken once, after the fork, in the process that receives.
    fn receiver(&self) -> Res<Self::Rx<'_>>;
}

/// `msg` copied into `buf` (replacing what it held; its allocation reused).
#[inline]
pub fn copy_into(buf: &mut Vec<u8>, msg: &[u8]) {
    buf.clear();
    buf.extend_from_slice(msg);
}
