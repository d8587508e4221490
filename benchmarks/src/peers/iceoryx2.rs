//! `iceoryx2`: its publish-subscribe service between two processes (`ipc::Service`:
//! shared memory under `/dev/shm`, the nodes' and services' records under
//! `/tmp/iceoryx2`). Zero-copy is its point: the writer loans a sample in shared memory
//! ([`loan_slice_uninit`](iceoryx2::port::publisher::Publisher::loan_slice_uninit)),
//! copies the message into it and sends it (an offset goes through a lock-free queue);
//! the reader receives the sample and copies the message out. One copy in, one out,
//! like the others.
//!
//! Setup: the parent makes a node and creates the service under a name unique to this
//! process and channel (`shmsem-benchmarks/<pid>/<n>`), before the fork. Each process
//! then makes its own node after the fork and opens the service there, with its one
//! port: iceoryx2 keeps a record of every node and port (with the process's liveness),
//! so ports are not carried across a fork. A worker drops its node before it exits, and
//! the parent's node and service go last (when the parent drops the channel), which
//! removes the service's files.
//!
//! Full and empty: the service does not overflow (`enable_safe_overflow(false)`) and the
//! publisher's back-pressure is `RetryUntilDelivered`, so a full subscriber buffer makes
//! the writer wait (iceoryx2 retries in a loop) instead of losing messages. The
//! subscriber has no blocking receive (iceoryx2 wakes sleepers through a separate event
//! service, a second object per channel and a system call per message, which we leave
//! out): the reader polls, spinning for [`SPIN`] as the ideal ring does, then yielding
//! the CPU between polls.
//!
//! **Not in the tables yet: it fails the benchmarks' check.** Between two forked processes,
//! once the subscriber's buffer has filled for the first time (message number `buffer`),
//! the reader gets a message whose contents are those of a much later one (message 16
//! with a 16-sample buffer carried message 259's sequence byte), in every run and at
//! every buffer size tried (16, 256, 1024, 65 536 at 64 B and 4 KiB); with the reader
//! slowed down (printing each message) the order is right. Either the back-pressure
//! does not hold the writer and a loaned chunk is reused while still queued, or something
//! in iceoryx2's process-local state does not survive the fork. Later the same day (with
//! the leftovers cleanup below in place, so no nodes or services of killed runs left in
//! `/tmp/iceoryx2`) the same check passed in 7 of 7 runs of `queue_compare --iceoryx2`,
//! idle and beside a CPU-bound process. The cause of the failures is not known, so
//! iceoryx2 stays out of the default table (a failed check fails the whole suite, and CI
//! runs it): `queue_compare --iceoryx2` runs it.
//!
//! Buffer: as many samples as 4 MiB holds (the shmsem queue's ring), at least 4, at
//! most 65 536 (64 B messages).

use std::sync::atomic::{AtomicU64, Ordering};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

use super::ideal::SPIN;
use super::{Channel, Receiver, STALL, Sender, copy_into};
use crate::Res;
use crate::clock::now_ns;

/// Channels made by this process so far, for unique names.
static MADE: AtomicU64 = AtomicU64::new(0);

type Service = ipc::Service;
type Factory = PortFactory<Service, [u8], ()>;

/// The service, made and owned by the parent.
pub struct Iceoryx2 {
    name: String,
    max_msg: usize,
    buffer: usize,
    /// Dropped before the node that made it.
    _service: Factory,
    _node: Node<Service>,
}

/// A node of this process, and the service opened there.
fn open(name: &str, buffer: usize) -> Res<(Node<Service>, Factory)> {
    let node = NodeBuilder::new()
        .create::<Service>()
        .map_err(|e| format!("iceoryx2 node: {e:?}"))?;
    let service = builder(&node, name, buffer)?
        .open()
        .map_err(|e| format!("opening iceoryx2 service {name}: {e:?}"))?;
    Ok((node, service))
}

/// The service's settings, alike where it is made and where it is opened.
fn builder(
    node: &Node<Service>,
    name: &str,
    buffer: usize,
) -> Res<iceoryx2::service::builder::publish_subscribe::Builder<[u8], (), Service>> {
    let name: ServiceName = name
        .try_into()
        .map_err(|e| format!("iceoryx2 service name {name}: {e:?}"))?;
    Ok(node
        .service_builder(&name)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(buffer)
        .enable_safe_overflow(false))
}

impl Channel for Iceoryx2 {
    const NAME: &'static str = "iceoryx2";
    type Tx<'a> = Iox2Sender;
    type Rx<'a> = Iox2Receiver;

    fn new(max_msg: usize) -> Res<Self> {
        // Its default-config notice ("No config file was loaded") is not an error here.
        set_log_level(LogLevel::Error);
        let buffer = ((4 << 20) / max_msg.max(1)).clamp(4, 65_536);
        let name = format!(
            "shmsem-benchmarks/{}/{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let node = NodeBuilder::new()
            .create::<Service>()
            .map_err(|e| format!("iceoryx2 node: {e:?}"))?;
        let service = builder(&node, &name, buffer)?
            .create()
            .map_err(|e| format!("creating iceoryx2 service {name}: {e:?}"))?;
        Ok(Iceoryx2 {
            name,
            max_msg,
            buffer,
            _service: service,
            _node: node,
        })
    }

    fn sender(&self) -> Res<Iox2Sender> {
        let (node, service) = open(&self.name, self.buffer)?;
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(self.max_msg)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(|e| format!("iceoryx2 publisher: {e:?}"))?;
        Ok(Iox2Sender {
            publisher,
            _service: service,
            _node: node,
        })
    }

    fn receiver(&self) -> Res<Iox2Receiver> {
        let (node, service) = open(&self.name, self.buffer)?;
        let subscriber = service
            .subscriber_builder()
            .buffer_size(self.buffer)
            .create()
            .map_err(|e| format!("iceoryx2 subscriber: {e:?}"))?;
        Ok(Iox2Receiver {
            subscriber,
            _service: service,
            _node: node,
        })
    }
}

/// A publisher, with the node and service it lives in (dropped in this order).
pub struct Iox2Sender {
    publisher: Publisher<Service, [u8], ()>,
    _service: Factory,
    _node: Node<Service>,
}

impl Sender for Iox2Sender {
    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let sample = self
            .publisher
            .loan_slice_uninit(msg.len())
            .map_err(|e| format!("iceoryx2 loan: {e:?}"))?;
        sample
            .write_from_slice(msg)
            .send()
            .map_err(|e| format!("iceoryx2 send: {e:?}"))?;
        Ok(())
    }
}

/// A subscriber, with the node and service it lives in (dropped in this order).
pub struct Iox2Receiver {
    subscriber: Subscriber<Service, [u8], ()>,
    _service: Factory,
    _node: Node<Service>,
}

impl Receiver for Iox2Receiver {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Res<()> {
        let mut polls = 0u64;
        let mut start = 0;
        loop {
            let got = self
                .subscriber
                .receive()
                .map_err(|e| format!("iceoryx2 receive: {e:?}"))?;
            if let Some(sample) = got {
                copy_into(buf, sample.payload());
                return Ok(());
            }
            polls += 1;
            if polls % 64 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let now = now_ns();
            if start == 0 {
                start = now;
            }
            if now - start > STALL.as_nanos() as u64 {
                return Err(format!("no message for {STALL:?}").into());
            }
            if now - start > SPIN.as_nanos() as u64 {
                std::thread::yield_now();
            }
        }
    }
}

/// Removes what iceoryx2 leaves behind once all its nodes are gone: its empty
/// directories under `/tmp/iceoryx2` and its global management segment in `/dev/shm`
/// (made at the first node, kept by design for the next). Only if no node of anyone's is
/// left (the nodes' directory is empty): then nothing uses them. A benchmark calls this
/// last, through [`Leftovers`].
pub fn remove_leftovers() {
    let root = std::path::Path::new("/tmp/iceoryx2");
    let nodes = root.join("nodes");
    let no_nodes = std::fs::read_dir(&nodes).is_ok_and(|mut d| d.next().is_none());
    if !no_nodes {
        return;
    }
    let _ = std::fs::remove_dir(&nodes);
    let _ = std::fs::remove_dir(root.join("services"));
    let _ = std::fs::remove_dir(root); // only if empty: someone else's files stay
    if let Ok(shm) = std::fs::read_dir("/dev/shm") {
        for entry in shm.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("iox2_") && name.ends_with(".global_mgmt") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Calls [`remove_leftovers`] when dropped (at the end of a benchmark, also on errors).
pub struct Leftovers;

impl Drop for Leftovers {
    fn drop(&mut self) {
        remove_leftovers();
    }
}
