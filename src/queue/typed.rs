//! Conveniences over the queue's byte messages: plain-data values as messages
//! (`send_pod`/`recv_pod`), any serde type with the `serde` feature
//! (`send_serde`/`recv_serde`, postcard-encoded), and iterators in the std/crossbeam
//! style (`iter`, `try_iter`).

use std::time::Duration;

use bytemuck::Pod;

use super::Queue;
use crate::error::{Error, ErrorKind, Result};
use crate::managed::wait::{Patience, Wait};

impl Queue {
    /// Sends the bytes of a plain-data value as one message (waiting for room as
    /// [`send`](Queue::send) does). The receiver reads it back with
    /// [`recv_pod`](Queue::recv_pod).
    ///
    /// ```
    /// use shmsem::{Key, Queue};
    /// #[repr(C)]
    /// #[derive(Clone, Copy, Debug, PartialEq, shmsem::Pod, shmsem::Zeroable)]
    /// #[bytemuck(crate = "shmsem::bytemuck")]
    /// struct Job { id: u64, cost: u32, _pad: u32 }
    ///
    /// let q = Queue::create(Key::PRIVATE, 4096)?;
    /// q.send_pod(&Job { id: 7, cost: 3, _pad: 0 })?;
    /// let job: Job = q.recv_pod()?;
    /// assert_eq!(job.id, 7);
    /// # q.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`send`](Queue::send).
    pub fn send_pod<T: Pod>(&self, value: &T) -> Result<()> {
        self.send_with(
            bytemuck::bytes_of(value),
            Wait::Forever.into(),
            "Queue::send_pod",
        )
    }

    /// Receives one message as a `T` (waiting as [`recv`](Queue::recv) does).
    ///
    /// # Errors
    /// `LayoutMismatch` when the message is not exactly `size_of::<T>()` bytes (it was
    /// another type's; the message is consumed); otherwise as [`recv`](Queue::recv).
    pub fn recv_pod<T: Pod>(&self) -> Result<T> {
        self.recv_pod_with(Wait::Forever.into(), "Queue::recv_pod")
    }

    /// Receives one message as a `T`, waiting at most `timeout` for one.
    ///
    /// # Errors
    /// `TimedOut` when the time runs out; otherwise as [`recv_pod`](Queue::recv_pod).
    pub fn recv_pod_timeout<T: Pod>(&self, timeout: Duration) -> Result<T> {
        self.recv_pod_with(Patience::Within(timeout), "Queue::recv_pod_timeout")
    }

    /// Receives one message as a `T` if there is one now.
    ///
    /// # Errors
    /// `WouldBlock` when the queue is empty; otherwise as [`recv_pod`](Queue::recv_pod).
    pub fn try_recv_pod<T: Pod>(&self) -> Result<T> {
        self.recv_pod_with(Wait::No.into(), "Queue::try_recv_pod")
    }

    fn recv_pod_with<T: Pod>(&self, wait: Patience, call: &'static str) -> Result<T> {
        let mut buf = Vec::with_capacity(size_of::<T>());
        self.recv_with(&mut buf, wait, call)?;
        // pod_read_unaligned: the Vec's bytes need not be aligned for T.
        match bytemuck::try_pod_read_unaligned(&buf) {
            Ok(value) => Ok(value),
            Err(_) => Err(Error::new(
                ErrorKind::LayoutMismatch,
                call,
                self.pair.sems.target(),
                format!(
                    "a message of {} bytes where a {} of {} bytes was expected (the \
                     message is consumed)",
                    buf.len(),
                    std::any::type_name::<T>(),
                    size_of::<T>()
                ),
            )),
        }
    }

    /// Sends any serde value as one message, encoded with postcard (compact; the
    /// receiver must decode the same type, with [`recv_serde`](Queue::recv_serde)).
    /// Feature `serde`.
    ///
    /// # Errors
    /// `InvalidInput` if the value cannot be encoded; otherwise as [`send`](Queue::send).
    #[cfg(feature = "serde")]
    pub fn send_serde<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let call = "Queue::send_serde";
        let bytes = postcard::to_stdvec(value).map_err(|e| {
            let why = format!("cannot encode the value: {e}");
            Error::new(ErrorKind::InvalidInput, call, self.pair.sems.target(), why)
        })?;
        self.send_with(&bytes, Wait::Forever.into(), call)
    }

    /// Receives one message as a serde value (waiting as [`recv`](Queue::recv) does).
    /// Feature `serde`.
    ///
    /// # Errors
    /// `LayoutMismatch` when the message does not decode as a `T` (it was another type's;
    /// the message is consumed); otherwise as [`recv`](Queue::recv).
    #[cfg(feature = "serde")]
    pub fn recv_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.recv_serde_with(Wait::Forever.into(), "Queue::recv_serde")
    }

    /// [`recv_serde`](Queue::recv_serde), waiting at most `timeout`. Feature `serde`.
    ///
    /// # Errors
    /// `TimedOut` when the time runs out; otherwise as [`recv_serde`](Queue::recv_serde).
    #[cfg(feature = "serde")]
    pub fn recv_serde_timeout<T: serde::de::DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T> {
        self.recv_serde_with(Patience::Within(timeout), "Queue::recv_serde_timeout")
    }

    #[cfg(feature = "serde")]
    fn recv_serde_with<T: serde::de::DeserializeOwned>(
        &self,
        wait: Patience,
        call: &'static str,
    ) -> Result<T> {
        let mut buf = Vec::new();
        self.recv_with(&mut buf, wait, call)?;
        postcard::from_bytes(&buf).map_err(|e| {
            let why = format!(
                "a message of {} bytes that is not a {}: {e} (the message is consumed)",
                buf.len(),
                std::any::type_name::<T>()
            );
            Error::new(
                ErrorKind::LayoutMismatch,
                call,
                self.pair.sems.target(),
                why,
            )
        })
    }

    /// An iterator that receives messages, waiting for each, until the queue is closed
    /// and drained (as crossbeam's `Receiver::iter` ends when the channel disconnects).
    /// Any other error is yielded once, then the iterator ends.
    ///
    /// A producer that is killed never calls [`close`](Queue::close): when producers can
    /// die, receive with [`recv_timeout`](Queue::recv_timeout) or
    /// [`recv_until`](Queue::recv_until) (or have a supervisor close the queue once it
    /// has seen the producers end) instead of waiting here for good.
    ///
    /// ```
    /// use shmsem::{Key, Queue};
    /// let q = Queue::create(Key::PRIVATE, 4096)?;
    /// for word in ["one", "two"] {
    ///     q.send(word.as_bytes())?;
    /// }
    /// q.close()?;
    /// let got: Vec<Vec<u8>> = q.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    /// # q.remove()?;
    /// # Ok::<(), shmsem::Error>(())
    /// ```
    pub fn iter(&self) -> QueueIter<'_> {
        QueueIter {
            queue: self,
            wait: Wait::Forever,
            done: false,
        }
    }

    /// An iterator over the messages that are in the queue now: it ends when the queue
    /// is empty (or closed and drained), without waiting.
    pub fn try_iter(&self) -> QueueIter<'_> {
        QueueIter {
            queue: self,
            wait: Wait::No,
            done: false,
        }
    }
}

/// Messages received one by one: from [`Queue::iter`] (waiting) or [`Queue::try_iter`]
/// (not waiting). Yields `Ok(message)`; ends at `Closed` (and, for `try_iter`, at
/// `WouldBlock`); any other error is yielded once, then it ends.
#[must_use = "iterators do nothing unless consumed"]
#[derive(Debug)]
pub struct QueueIter<'a> {
    queue: &'a Queue,
    wait: Wait,
    done: bool,
}

impl Iterator for QueueIter<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        let mut buf = Vec::new();
        let call = match self.wait {
            Wait::No => "Queue::try_iter",
            _ => "Queue::iter",
        };
        match self.queue.recv_with(&mut buf, self.wait.into(), call) {
            Ok(()) => Some(Ok(buf)),
            Err(e) => {
                self.done = true;
                match e.kind() {
                    ErrorKind::Closed | ErrorKind::WouldBlock => None,
                    _ => Some(Err(e)),
                }
            }
        }
    }
}
