//! The seed tutorial's reader, over a shmsem [`Queue`]: prints every message the writer
//! (`queue_writer`) sends, until the writer closes the queue; then removes the queue.
//!
//! ```text
//! printf 'a\nb\nend\n' | cargo run -q --example queue_writer & cargo run -q --example queue_reader
//! You wrote: a
//! You wrote: b
//! ```
//!
//! Either program may start first. Where the tutorial's reader polls (`sleep(1)` until the
//! `written` flag is set), `recv` sleeps in the kernel until a message comes (after a
//! short spin: a busy writer costs the reader no system call per message).

use std::io::Write;
use std::process::ExitCode;

use shmsem::{ErrorKind, Key, Queue};

/// The key both programs use (see `queue_writer`).
const KEY: Key = Key::from_raw(1236);
/// Ring bytes; must be the writer's (a different capacity is `LayoutMismatch`).
const CAPACITY: usize = 64 * 1024;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue_reader: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Removes the queue when dropped: at the end, and also when the reader fails half-way
/// (a writer waiting for room then wakes with `Removed` instead of waiting forever).
/// This is the tutorial's `shmctl(shmid, IPC_RMID, 0)`, for both objects.
struct RemoveOnDrop(Queue);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("queue_reader: removing the queue: {e}");
        }
    }
}

fn run() -> shmsem::Result<()> {
    // shmget + shmat (and semget): whichever program starts first creates the queue.
    let q = RemoveOnDrop(Queue::open_or_create(KEY, CAPACITY)?);
    let mut out = std::io::stdout().lock();
    let mut msg = Vec::new();
    loop {
        match q.0.recv(&mut msg) {
            Ok(()) => {
                // The tutorial's printf("You wrote: %s", text). A failed print (a closed
                // pipe, say) is reported, but reading goes on so the writer is not left
                // waiting on a full queue.
                let printed = out
                    .write_all(b"You wrote: ")
                    .and_then(|()| out.write_all(&msg))
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                if let Err(e) = printed {
                    eprintln!("queue_reader: writing to stdout: {e}");
                }
            }
            // The writer closed the queue and everything it sent has been printed.
            Err(e) if e.kind() == ErrorKind::Closed => break,
            Err(e) => return Err(e),
        }
    }
    // shmdt + shmctl(IPC_RMID): dropping `q` removes both objects and detaches.
    Ok(())
}
