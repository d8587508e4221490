//! The writer of the seed tutorial's writer/reader pair, in safe Rust.
//!
//! Two terminals (either may start first):
//!
//! ```text
//! terminal 1$ cargo run --example reader
//! terminal 2$ cargo run --example writer
//! Enter some text: hello
//! Enter some text: end
//! ```
//!
//! or piped: `printf 'hello\nworld\nend\n' | cargo run -q --example writer`.
//!
//! Each line of standard input becomes one message; the line `end` stops both programs
//! (end of input sends `end` too). One writer at a time, as in the tutorial. The reader
//! removes the IPC objects when it is done.
//!
//! The tutorial's writer polls: `while (shared->written == 1) { sleep(1); }`. Here the
//! `written` flag means the same, but nothing sleeps: the writer waits on a condition
//! variable until the reader has set `written` back to 0 (the reader notifies it after
//! each message it takes), and notifies it after filling the text.

mod shmdata;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use shmsem::Result;

use shmdata::TEXT_SZ;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writer: {}", shmdata::explain(e));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    // Steps 1 and 2 (shmget + shmat): find or create the shared text and its lock, and
    // attach it. Then the condition variable both sides wait on.
    let shared = shmdata::open_shared()?;
    let changed = shmdata::open_changed()?;

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        // The tutorial: while (shared->written == 1) { sleep(1); printf("Waiting...\n"); }
        // Here: sleep until the reader says it took the last message. (If the reader
        // removes the objects instead, the wait ends with a `Removed` error, not a hang.)
        drop(shmdata::wait_while(&changed, &shared, |s| s.written == 1)?);

        if interactive {
            eprint!("Enter some text: ");
            let _ = std::io::stderr().flush();
        }
        line.clear();
        let n = match input.read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("writer: reading stdin: {e}; sending `end`");
                line.clear();
                0
            }
        };
        if n == 0 {
            // End of input: tell the reader to stop, as if `end` had been typed.
            line.extend_from_slice(b"end");
        }
        if line.ends_with(b"\n") {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
        }
        if line.len() > TEXT_SZ {
            eprintln!(
                "writer: line of {} bytes cut to {TEXT_SZ} (the size of the shared text)",
                line.len()
            );
            line.truncate(TEXT_SZ);
        }

        // Step 3 (use the memory): fill in the text under the lock. Taking the guard is
        // `semop(-1, SEM_UNDO)`, dropping it at the end of the block `semop(+1,
        // SEM_UNDO)`, so the reader never sees a half-written message.
        {
            let mut s = shmdata::lock(&shared)?;
            s.text[..line.len()].copy_from_slice(&line);
            s.len = line.len() as u32;
            s.written = 1;
        }
        // "There is a message": wakes the reader if it waits.
        changed.notify_all()?;

        if line == b"end" {
            // The reader removes the objects after `end`: nothing more to wait for.
            break;
        }
    }

    // Step 4 (shmdt): dropping `shared` detaches the segment. The writer removes nothing
    // (the tutorial's shmctl(IPC_RMID)): the reader, who is last, does.
    drop(shared);
    Ok(())
}
