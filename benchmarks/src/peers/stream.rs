//! Byte streams between the two processes: a pipe (`pipe2`, default 64 KiB buffer) and a
//! socket pair (`socketpair(AF_UNIX, SOCK_STREAM)`), `write_all` / `read_exact` per
//! message. A stream has no message boundaries: the reader reads exactly the size the
//! channel was made for (the benchmarks' sizes are fixed), so nothing frames the
//! messages, which favours the streams a little. Taking one end closes this process's copy of the other,
//! so a writer's death is an end of file for its reader.

use std::cell::Cell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use super::{Channel, Receiver, Sender};
use crate::Res;
use crate::os::{check_rc, pipe};

/// Both ends, until a process takes the one it uses.
struct Ends {
    /// Every message's size.
    size: usize,
    read: Cell<Option<File>>,
    write: Cell<Option<File>>,
}

impl Ends {
    fn new(size: usize, read: OwnedFd, write: OwnedFd) -> Ends {
        Ends {
            size,
            read: Cell::new(Some(read.into())),
            write: Cell::new(Some(write.into())),
        }
    }

    /// The end `take`n, with this process's copy of the other one closed.
    fn take(&self, take: &Cell<Option<File>>, close: &Cell<Option<File>>) -> Res<StreamEnd> {
        drop(close.take());
        let file = take.take().ok_or("this end was taken already")?;
        Ok(StreamEnd(file, self.size))
    }
}

/// A pipe.
pub struct Pipe(Ends);

/// A Unix stream socket pair.
pub struct SocketPair(Ends);

impl Channel for Pipe {
    const NAME: &'static str = "pipe";
    type Tx<'a> = StreamEnd;
    type Rx<'a> = StreamEnd;

    fn new(size: usize) -> Res<Self> {
        let (r, w) = pipe()?;
        Ok(Pipe(Ends::new(size, r, w)))
    }

    fn sender(&self) -> Res<StreamEnd> {
        self.0.take(&self.0.write, &self.0.read)
    }

    fn receiver(&self) -> Res<StreamEnd> {
        self.0.take(&self.0.read, &self.0.write)
    }
}

impl Channel for SocketPair {
    const NAME: &'static str = "socketpair";
    type Tx<'a> = StreamEnd;
    type Rx<'a> = StreamEnd;

    fn new(size: usize) -> Res<Self> {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into the local array.
        check_rc("socketpair", unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })?;
        // SAFETY: both descriptors are fresh and ours.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(SocketPair(Ends::new(size, r, w)))
    }

    fn sender(&self) -> Res<StreamEnd> {
        self.0.take(&self.0.write, &self.0.read)
    }

    fn receiver(&self) -> Res<StreamEnd> {
        self.0.take(&self.0.read, &self.0.write)
    }
}

/// One end of a stream, and the size of every message.
pub struct StreamEnd(File, usize);

impl Sender for StreamEnd {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        Ok(self.0.write_all(msg)?)
    }
}

impl Receiver for StreamEnd {
    /// Reads exactly the channel's message size (a stream has no boundaries).
    fn recv(&mut self, buf: &mut Vec<u8>) -> Res<()> {
        buf.resize(self.1, 0);
        self.0
            .read_exact(buf)
            .map_err(|e| format!("reading the stream: {e}").into())
    }
}
