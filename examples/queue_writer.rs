//! The seed tutorial's writer, over a shmsem [`Queue`] instead of a shared struct.
//!
//! Two terminals (either may start first):
//!
//! ```text
//! terminal 1$ cargo run --example queue_reader
//! terminal 2$ cargo run --example queue_writer
//! Enter some text: hello
//! Enter some text: end
//! ```
//!
//! or piped: `printf 'a\nb\nend\n' | cargo run -q --example queue_writer & cargo run -q
//! --example queue_reader`.
//!
//! Each line of standard input becomes one message. The line `end` (sent, and printed by
//! the reader like the others), or the end of input, closes the queue: the reader prints
//! what is still queued, then stops and removes the queue. The writer does not wait for the reader: the queue holds up to 64 KiB of
//! messages, and `send` waits only when it is full.
//!
//! Where the tutorial's writer polls a `written` flag (`sleep(1)` until the reader has
//! taken the text), the queue does the waiting: `send` blocks while the queue is full,
//! the reader's `recv` while it is empty, and neither polls.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use shmsem::{ErrorKind, Key, Queue};

/// The key both programs use (`0x000004d4` in `ipcs`); the mutex writer/reader pair uses
/// 1234 and 1235, so the two pairs can run side by side.
const KEY: Key = Key::from_raw(1236);
/// Ring bytes; a message takes its length plus 8, rounded up to 8.
const CAPACITY: usize = 64 * 1024;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("queue_writer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // shmget + shmat (and semget): whichever program starts first creates the queue.
    let q = Queue::open_or_create(KEY, CAPACITY)?;
    if q.is_closed() {
        return Err(format!(
            "the queue under key {KEY} is closed: an earlier writer finished and no reader \
             has drained it yet. Run queue_reader, or remove it: ipcrm -M {KEY} -S {KEY}"
        )
        .into());
    }

    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        if interactive {
            eprint!("Enter some text: ");
            let _ = std::io::stderr().flush();
        }
        line.clear();
        let n = match input.read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("queue_writer: reading stdin: {e}; closing the queue");
                0
            }
        };
        if line.ends_with(b"\n") {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
        }
        // End of input counts as `end`, which is sent like any line (the reader prints
        // it, as the tutorial's does), then closes the queue.
        if n == 0 {
            line.clear();
            line.extend_from_slice(b"end");
        }
        let last = line == b"end";
        if line.len() > q.max_message_len() {
            eprintln!(
                "queue_writer: line of {} bytes cut to {} (the largest message that fits)",
                line.len(),
                q.max_message_len()
            );
            line.truncate(q.max_message_len());
        }
        match q.send(&line) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Removed => {
                return Err(format!("{e}\n(the reader removed the queue: it has ended)").into());
            }
            Err(e) => return Err(e.into()),
        }
        if last {
            break;
        }
    }
    // `end`: no more messages. The reader takes what is queued, then sees `Closed`.
    q.close()?;
    // shmdt: dropping `q` detaches. The reader, who is last, removes the queue.
    Ok(())
}
