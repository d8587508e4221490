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
//! removes the IPC objects (the shared text with its lock, and the condition variable),
//! so `ipcs -m -s` shows nothing left behind.
//!
//! The tutorial's reader polls: `if (shared->written) { print; written = 0; } else
//! sleep(1);`. Here the `written` flag means the same, but nothing sleeps: the reader
//! waits on a condition variable until `written` is 1 (the writer notifies it after each
//! message), and notifies it after setting `written` back to 0.

mod shmdata;

use std::io::Write;
use std::process::ExitCode;

use shmsem::{Result, SharedCondvar, SharedMutex};

use shmdata::SharedUse;

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
    changed: SharedCondvar,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // Each `remove` removes a segment and its semaphore set.
        if let Err(e) = self.shared.remove() {
            eprintln!("reader: removing the shared text: {e}");
        }
        if let Err(e) = self.changed.remove() {
            eprintln!("reader: removing the condition variable: {e}");
        }
    }
}

fn run() -> Result<()> {
    // Steps 1 and 2 (shmget + shmat): find or create the shared text and its lock, and
    // attach it. Then the condition variable. From here on the guard owns their removal.
    let objects = RemoveOnDrop {
        shared: shmdata::open_shared()?,
        changed: shmdata::open_changed()?,
    };
    let (shared, changed) = (&objects.shared, &objects.changed);
    let mut out = std::io::stdout();

    loop {
        // Where the tutorial sleeps and looks again, sleep until the writer says there
        // is a message. Then step 3 (use the memory): take it, still under the lock.
        let is_end = {
            let mut s = shmdata::wait_while(changed, shared, |s| s.written == 0)?;
            let text = shmdata::message(&s);
            // The tutorial's printf("You wrote: %s", text). A failed print (say, a closed
            // pipe) is reported, but the exchange goes on so the writer is not left
            // waiting.
            if let Err(e) = print(&mut out, text) {
                eprintln!("reader: writing to stdout: {e}");
            }
            let is_end = text == b"end";
            // Tell the writer the text may be reused, as the tutorial's reader does.
            s.written = 0;
            is_end
        };
        // `end`: stop. The writer does not wait for an answer to it.
        if is_end {
            break;
        }
        // "Send the next one": wakes the writer if it waits.
        changed.notify_all()?;
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
