//! `ipc-channel` (Servo's inter-process channels): a bytes channel
//! (`ipc_channel::ipc::bytes_channel`, no serialisation), which on Linux
//! is a Unix `SOCK_SEQPACKET` socket pair (messages larger than the socket's buffer go as
//! fragments, or through a shared memory region passed along). Both ends are made
//! before the fork and inherited as descriptors; taking one drops this process's copy of
//! the other, so a writer's death is a disconnection for its reader.
//!
//! Each `recv` returns a new `Vec` (the crate's API); it replaces the caller's buffer, so
//! there is no extra copy on our side. It has no timeout on the bytes receiver: a stuck
//! (not dead) writer is left to the benchmarks' watchdogs.

use std::cell::Cell;

use ipc_channel::ipc::{IpcBytesReceiver, IpcBytesSender, bytes_channel};

use super::{Channel, Receiver, Sender};
use crate::Res;

/// Both ends, until a process takes the one it uses.
pub struct IpcChannel {
    tx: Cell<Option<IpcBytesSender>>,
    rx: Cell<Option<IpcBytesReceiver>>,
}

impl Channel for IpcChannel {
    const NAME: &'static str = "ipc-channel";
    type Tx<'a> = IpcBytesSender;
    type Rx<'a> = IpcBytesReceiver;

    fn new(_max_msg: usize) -> Res<Self> {
        let (tx, rx) = bytes_channel()?;
        Ok(IpcChannel {
            tx: Cell::new(Some(tx)),
            rx: Cell::new(Some(rx)),
        })
    }

    fn sender(&self) -> Res<IpcBytesSender> {
        drop(self.rx.take());
        Ok(self.tx.take().ok_or("the sender was taken already")?)
    }

    fn receiver(&self) -> Res<IpcBytesReceiver> {
        drop(self.tx.take());
        Ok(self.rx.take().ok_or("the receiver was taken already")?)
    }
}

impl Sender for IpcBytesSender {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        Ok(IpcBytesSender::send(self, msg)?)
    }
}

impl Receiver for IpcBytesReceiver {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Res<()> {
        *buf = IpcBytesReceiver::recv(self).map_err(|e| format!("ipc-channel recv: {e:?}"))?;
        Ok(())
    }
}
