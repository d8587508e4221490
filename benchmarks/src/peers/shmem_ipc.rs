//! `shmem-ipc`: its single-producer single-consumer ring buffer over a memfd
//! (`shmem_ipc::sharedring`), with an eventfd each way to wake a side that
//! sleeps. The ring carries items of one `Copy` type; here bytes, so it is a byte stream
//! and each message is framed: an 8-byte length, then the bytes (the same framing as the
//! ideal ring's). A message may wrap round the ring's end; it then goes in two pieces.
//!
//! Both halves are made in the parent before the fork (the sender makes the memfd and
//! the eventfds, the receiver maps duplicates of them) and inherited. Blocking is the
//! crate's: [`block_until_readable`](shmem_ipc::sharedring::Receiver::block_until_readable)
//! / `block_until_writable` read the eventfd that the other side writes when the ring
//! stops being empty (full). The crate's blocking reads have no timeout, so before one
//! we `poll` the eventfd for at most [`STALL`] (only when the ring is empty or full:
//! no system call in the steady state, as in the crate).
//!
//! Ring size: max(4 MiB, 4 records), as the shmsem queue's and the ideal ring's.

use std::cell::Cell;
use std::os::fd::AsRawFd;

use shmem_ipc::sharedring;

use super::{Channel, Receiver, STALL, Sender};
use crate::Res;
use crate::os::{readable_polls, retry_eintr};

/// Both halves, until a process takes the one it uses.
pub struct ShmemIpc {
    tx: Cell<Option<sharedring::Sender<u8>>>,
    rx: Cell<Option<sharedring::Receiver<u8>>>,
}

fn ring_for(max_msg: usize) -> usize {
    (4 << 20).max(4 * (max_msg + 8))
}

impl Channel for ShmemIpc {
    const NAME: &'static str = "shmem-ipc";
    type Tx<'a> = ShmemSender;
    type Rx<'a> = ShmemReceiver;

    fn new(max_msg: usize) -> Res<Self> {
        let capacity = ring_for(max_msg);
        let tx = sharedring::Sender::<u8>::new(capacity)?;
        let rx = sharedring::Receiver::<u8>::open(
            capacity,
            tx.memfd().as_file().try_clone()?,
            tx.empty_signal().try_clone()?,
            tx.full_signal().try_clone()?,
        )?;
        Ok(ShmemIpc {
            tx: Cell::new(Some(tx)),
            rx: Cell::new(Some(rx)),
        })
    }

    fn sender(&self) -> Res<ShmemSender> {
        Ok(ShmemSender(
            self.tx.take().ok_or("the sender was taken already")?,
        ))
    }

    fn receiver(&self) -> Res<ShmemReceiver> {
        Ok(ShmemReceiver(
            self.rx.take().ok_or("the receiver was taken already")?,
        ))
    }
}

/// Waits (at most [`STALL`]) until the eventfd `fd` has been written to.
fn poll_signal(fd: &std::fs::File, what: &str) -> Res<()> {
    let mut polls = readable_polls(&[fd.as_raw_fd()]);
    let ms = STALL.as_millis() as libc::c_int;
    // SAFETY: one valid pollfd.
    let n = retry_eintr("poll", || unsafe { libc::poll(polls.as_mut_ptr(), 1, ms) })?;
    if n == 0 {
        return Err(format!("{what} for {STALL:?}").into());
    }
    Ok(())
}

/// The sending half.
pub struct ShmemSender(sharedring::Sender<u8>);

impl Sender for ShmemSender {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let header = (msg.len() as u64).to_ne_bytes();
        let total = header.len() + msg.len();
        let mut done = 0;
        while done < total {
            if self.0.sender_mut().write_count()? == 0 {
                poll_signal(self.0.full_signal(), "the reader made no room")?;
                self.0.block_until_writable()?;
            }
            let mut wrote = 0;
            self.0.send_raw(|p, room| {
                wrote = room.min(total - done);
                // SAFETY: the crate hands us `room` >= `wrote` writable bytes at `p`.
                unsafe { copy_stream(&header, msg, done, p, wrote) };
                wrote
            })?;
            done += wrote;
        }
        Ok(())
    }
}

/// Copies bytes `from..from + n` of the stream `header ++ msg` to `dst`.
///
/// # Safety
///
/// `dst` must be valid for `n` bytes of writes; `from + n` at most the stream's length.
unsafe fn copy_stream(header: &[u8], msg: &[u8], from: usize, dst: *mut u8, n: usize) {
    let h = header.len();
    let in_header = h.saturating_sub(from).min(n);
    // SAFETY: both ranges lie in their sources (from + n <= h + msg.len()) and in dst.
    unsafe {
        std::ptr::copy_nonoverlapping(header.as_ptr().add(from.min(h)), dst, in_header);
        let msg_from = (from + in_header) - h;
        std::ptr::copy_nonoverlapping(
            msg.as_ptr().add(msg_from),
            dst.add(in_header),
            n - in_header,
        );
    }
}

/// The receiving half.
pub struct ShmemReceiver(sharedring::Receiver<u8>);

impl ShmemReceiver {
    /// Reads exactly `n` bytes of the stream to `dst`.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for `n` bytes of writes.
    unsafe fn read_exact(&mut self, dst: *mut u8, n: usize) -> Res<()> {
        let mut done = 0;
        while done < n {
            if self.0.receiver_mut().read_count()? == 0 {
                poll_signal(self.0.empty_signal(), "no message")?;
                self.0.block_until_readable()?;
            }
            let mut read = 0;
            self.0.receive_raw(|p, have| {
                read = have.min(n - done);
                // SAFETY: the crate hands us `have` >= `read` readable bytes at `p`; dst
                // has room for n - done more.
                unsafe { std::ptr::copy_nonoverlapping(p, dst.add(done), read) };
                read
            })?;
            done += read;
        }
        Ok(())
    }
}

impl Receiver for ShmemReceiver {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Res<()> {
        let mut header = [0u8; 8];
        // SAFETY: 8 bytes into the local header.
        unsafe { self.read_exact(header.as_mut_ptr(), 8)? };
        let len = u64::from_ne_bytes(header) as usize;
        buf.clear();
        buf.reserve(len);
        // SAFETY: `len` bytes into buf's spare capacity (reserved), then they are its
        // length (every one was written, or we returned an error with len 0).
        unsafe {
            self.read_exact(buf.as_mut_ptr(), len)?;
            buf.set_len(len);
        }
        Ok(())
    }
}
