//! `shmsem-inspect`: lists, shows, removes and garbage-collects System V shared memory
//! segments and semaphore sets, decoding the ones shmsem manages. A thin front end of
//! [`shmsem::inspect`]; run `shmsem-inspect --help`.
//!
//! This file: the help text, the dispatch to a subcommand, and how a failure ends the
//! program. Each subcommand's arguments and output are in its own module (`list`, `show`,
//! `rm`, `gc`); `args` parses keys, `table`, `names` and `time` format cells.

mod args;
mod gc;
mod list;
mod names;
mod rm;
mod show;
mod table;
mod time;

use std::fmt::Write as _;
use std::process::ExitCode;

use shmsem::Key;

use crate::args::{no_more, usage};

const HELP: &str = "\
shmsem-inspect: System V shared memory segments and semaphore sets, and what shmsem
sees in them (kind; holders and poisoning of its mutexes and rwlocks; queues; condvar waiters)

usage:
  shmsem-inspect list
      every segment and semaphore set (like ipcs -m -s), with a SHMSEM column that
      decodes the shmsem-managed ones
  shmsem-inspect show KEY
  shmsem-inspect show --id ID
      one key (or IPC id): its segment and semaphore set in detail
  shmsem-inspect rm KEY [--force]
      remove a shmsem pair (the segment and the semaphore set with KEY); anything that
      is not a shmsem object is refused unless --force
  shmsem-inspect gc [--dry-run] [--key KEY]... [--min-age SECONDS]
      remove abandoned shmsem pairs: creator gone and nobody attached. --dry-run only
      reports; --key limits it to the given keys; --min-age spares younger segments
  shmsem-inspect --help | --version

KEY is hexadecimal with 0x (as ipcs prints it) or decimal. Segments this user may not
attach show as \"no permission\".

exit status: 0 ok, 1 error, 2 usage error";

/// Exit statuses.
const USAGE: u8 = 2;
const FAILED: u8 = 1;

/// A failure: the message, and whether it was a usage error.
struct Failure {
    message: String,
    usage: bool,
}

impl From<shmsem::Error> for Failure {
    fn from(e: shmsem::Error) -> Self {
        // Errors about no object in particular carry key 0 (IPC_PRIVATE): leave it out.
        let mut message = e.to_string();
        let keyless = format!("{} (key {}): ", e.call(), Key::PRIVATE);
        if e.key().is_private() && message.starts_with(&keyless) {
            message = format!("{}: {}", e.call(), &message[keyless.len()..]);
        }
        Failure {
            message,
            usage: false,
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            usage: false,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = String::new();
    let result = run(&args, &mut out);
    print!("{out}");
    match result {
        Ok(code) => code,
        Err(f) if f.usage => {
            eprintln!("shmsem-inspect: {}", f.message);
            eprintln!("run `shmsem-inspect --help` for usage");
            ExitCode::from(USAGE)
        }
        Err(f) => {
            eprintln!("shmsem-inspect: {}", f.message);
            ExitCode::from(FAILED)
        }
    }
}

fn run(args: &[String], out: &mut String) -> Result<ExitCode, Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage("no command given (list, show, rm, gc)"));
    };
    match command.as_str() {
        "-h" | "--help" | "help" => {
            writeln!(out, "{HELP}").ok();
            Ok(ExitCode::SUCCESS)
        }
        "-V" | "--version" => {
            writeln!(out, "shmsem-inspect {}", env!("CARGO_PKG_VERSION")).ok();
            Ok(ExitCode::SUCCESS)
        }
        "list" | "ls" => {
            no_more(rest)?;
            list::list(out)
        }
        "show" => show::show(rest, out),
        "rm" | "remove" => rm::rm(rest, out),
        "gc" => gc::gc(rest, out),
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}
