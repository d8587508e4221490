//! The reader of the seed tutorial's writer/reader pair, in safe Rust.
//!
//! Two terminals (either may start first):
//!
//! ```text
//! terminal 1$ cargo run --example reader
//! You wrote: hello
//! You wrote: end
//! terminal 2$ cargo run --example writer
//! ```
//!
//! The reader prints every message the writer sends until the message `end`, then
//! removes both IPC objects (the shared text with its lock, and the doorbells), so
//! `ipcs -m -s` shows nothing left behind.
//!
//! The tutorial's reader polls: `if (shared->written) { print; written = 0; } else
//! sleep(1);`. Here the `written` flag means the same, but nothing sleeps: when there is
//! no message the reader blocks on doorbell FILLED, which the writer rings after each
//! message; after taking one the reader rings doorbell EMPTIED, which the writer waits on.

mod shmdata;

use std::io::Write;
use std::process::ExitCode;

use shmsem::{Result, SemOp, SemaphoreSet, SharedMutex};

use shmdata::{EMPTIED, FILLED, SharedUse};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reader: {}", shmdata::explain(e));
            ExitCode::FAILURE
        }
    }
}

/// Removes the objects when dropped: at the end, and also when the reader fails half-way
/// (a waiting writer then wakes with a `Removed` error instead of waiting forever).
/// This is the tutorial's `shmctl(shmid, IPC_RMID, 0)`, for both objects.
struct RemoveOnDrop {
    shared: SharedMutex<SharedUse>,
    bells: SemaphoreSet,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // SharedMutex::remove removes its segment and its semaphore set; the doorbells
        // are a separate, raw set.
        if let Err(e) = self.shared.remove() {
            eprintln!("reader: removing the shared text: {e}");
        }
        if let Err(e) = self.bells.remove() {
            eprintln!("reader: removing the doorbells: {e}");
        }
    }
}

fn run() -> Result<()> {
    // Steps 1 and 2 (shmget + shmat): find or create the shared text and its lock, and
    // attach it. Then the doorbells. From here on the guard owns their removal.
    let objects = RemoveOnDrop {
        shared: shmdata::open_shared()?,
        bells: shmdata::open_doorbells()?,
    };
    let (shared, bells) = (&objects.shared, &objects.bells);
    let mut out = std::io::stdout();

    loop {
        // Step 3 (use the memory): look at the flag, and take the message if there is
        // one, all under the lock.
        let taken = {
            let mut s = shmdata::lock(shared)?;
            if s.written == 1 {
                let text = shmdata::message(&s);
                // The tutorial's printf("You wrote: %s", text). A failed print (say, a
                // closed pipe) is reported, but the exchange goes on so the writer is
                // not left waiting.
                if let Err(e) = print(&mut out, text) {
                    eprintln!("reader: writing to stdout: {e}");
                }
                let is_end = text == b"end";
                // Tell the writer the text may be reused, as the tutorial's reader does.
                s.written = 0;
                Some(is_end)
            } else {
                None
            }
        };
        match taken {
            // `end`: stop. The writer does not wait for an answer to it.
            Some(true) => break,
            // Ring EMPTIED: "send the next one" (wakes the writer if it waits).
            Some(false) => bells.op(&[SemOp::post(EMPTIED)])?,
            // No message yet. Where the tutorial sleeps, block until the writer rings
            // FILLED (it does after every message, so none is missed), then look again.
            None => bells.op(&[SemOp::wait(FILLED)])?,
        }
    }

    // Step 4 (shmdt, then shmctl IPC_RMID): dropping `objects` removes both objects and
    // detaches the segment.
    drop(objects);
    Ok(())
}

fn print(out: &mut impl Write, text: &[u8]) -> std::io::Result<()> {
    out.write_all(b"You wrote: ")?;
    out.write_all(text)?;
    out.write_all(b"\n")?;
    out.flush()
}
