//! `ipmpsc`: a multi-producer single-consumer ring buffer in a memory-mapped temporary
//! file ([`SharedRingBuffer::create_temp`]), guarded by a process-shared pthread mutex and
//! condition variable, messages serialised with bincode.
//!
//! The buffer is made in the parent before the fork; both processes use the inherited
//! mapping (no second `open` by path). Its temporary file (in `$TMPDIR`, `/tmp` by
//! default) is deleted when the parent drops the channel; the workers end with `_exit`
//! and delete nothing.
//!
//! The writer serialises the message as bytes (bincode: a u64 length, then the bytes in
//! one copy, through `AsBytes`: a plain `&[u8]` would go through serde one byte at a
//! time); the reader deserialises it in place ([`zero_copy_context`]) as a borrowed
//! `&[u8]` and copies it into its buffer: one copy in, one out, like the others.
//!
//! Ring size: max(4 MiB, 4 records), as the shmsem queue's.
//!
//! [`zero_copy_context`]: ipmpsc::Receiver::zero_copy_context

use std::cell::Cell;

use ipmpsc::SharedRingBuffer;

use super::{Channel, Receiver, STALL, Sender, copy_into};
use crate::Res;

/// The buffer, and the two ends until a process takes the one it uses.
pub struct Ipmpsc {
    tx: Cell<Option<ipmpsc::Sender>>,
    rx: Cell<Option<ipmpsc::Receiver>>,
    /// Dropped last (the ends hold clones): deletes the temporary file.
    _buffer: SharedRingBuffer,
}

impl Channel for Ipmpsc {
    const NAME: &'static str = "ipmpsc";
    type Tx<'a> = ipmpsc::Sender;
    type Rx<'a> = ipmpsc::Receiver;

    fn new(max_msg: usize) -> Res<Self> {
        // Each record: a u32 size, then bincode's u64 length and the bytes.
        let ring = (4 << 20).max(4 * (max_msg + 12));
        let (_path, buffer) = SharedRingBuffer::create_temp(u32::try_from(ring)?)?;
        Ok(Ipmpsc {
            tx: Cell::new(Some(ipmpsc::Sender::new(buffer.clone()))),
            rx: Cell::new(Some(ipmpsc::Receiver::new(buffer.clone()))),
            _buffer: buffer,
        })
    }

    fn sender(&self) -> Res<ipmpsc::Sender> {
        Ok(self.tx.take().ok_or("the sender was taken already")?)
    }

    fn receiver(&self) -> Res<ipmpsc::Receiver> {
        Ok(self.rx.take().ok_or("the receiver was taken already")?)
    }
}

/// Bytes that serde serialises as bytes (`serialize_bytes`: bincode writes the length,
/// then the bytes in one copy), not as a sequence of `u8`s.
struct AsBytes<'a>(&'a [u8]);

impl serde::Serialize for AsBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl Sender for ipmpsc::Sender {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        match self.send_timeout(&AsBytes(msg), STALL)? {
            true => Ok(()),
            false => Err(format!("the reader made no room for {STALL:?}").into()),
        }
    }
}

impl Receiver for ipmpsc::Receiver {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Res<()> {
        let mut context = self.zero_copy_context();
        let msg: &[u8] = context
            .recv_timeout(STALL)?
            .ok_or_else(|| format!("no message for {STALL:?}"))?;
        copy_into(buf, msg);
        Ok(())
    }
}
