//! The harness shared by shmsem's comparison benchmarks: what every one of them needs to
//! run competitors in several processes and report on them, written once.
//!
//! - [`procs`]: forked worker processes held at a start gate, released together, awaited
//!   with a deadline (and killed if the parent gives up);
//! - [`os`]: system-call helpers (`EINTR` retries, errno-returning calls, pipes);
//! - [`pages`]: anonymous shared mappings, inherited by every forked worker;
//! - [`peers`]: the queue's peers (other message transports between two processes),
//!   one module each, behind the calls both queue benchmarks drive them with;
//! - [`interrupt`]: Ctrl-C that unwinds the parent, so it removes what it made;
//! - [`clock`]: the monotonic clock every process reads alike;
//! - [`machine`]: what the tables name the machine by, and CPU pinning;
//! - [`python`]: an interpreter with `sysv_ipc`, run in a worker, and objects under fresh
//!   keys for it (the Python rows of the lock and condvar comparisons);
//! - [`stats`] and [`fmt`]: medians and ranges, numbers as the tables print them.
//!
//! The benchmarks themselves are the binaries (`src/bin/*/main.rs`, one module per
//! competitor beside each) and the criterion bench `benches/lock.rs`:
//!
//! ```text
//! cargo run --release -p shmsem-benchmarks --bin lock_compare    # locks across processes
//! cargo run --release -p shmsem-benchmarks --bin queue_compare   # queue throughput
//! cargo run --release -p shmsem-benchmarks --bin condvar_compare # condvar hand-off
//! cargo run --release -p shmsem-benchmarks --bin queue_latency   # queue ping-pong, idle/busy
//! cargo bench -p shmsem-benchmarks --bench lock                  # one uncontended lock
//! benchmarks/run                                                  # all of the above
//! ```
//!
//! `benchmarks/run` builds once and runs them one after the other (`--quick` for a smoke
//! run, as CI does), in under 10 minutes on a 2-CPU VM.

pub mod args;
pub mod clock;
pub mod fmt;
pub mod interrupt;
pub mod machine;
pub mod os;
pub mod pages;
pub mod peers;
pub mod procs;
pub mod python;
pub mod stats;

use std::process::ExitCode;

/// Every fallible step's result. `Send + Sync`: workers report from threads.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// This program's name (its file name), for messages.
pub fn program() -> String {
    std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "benchmark".into())
}

/// A benchmark's `main`: runs `bench`, prints its error (`program: error`) if it fails.
pub fn main(bench: impl FnOnce() -> Res<()>) -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", program());
            ExitCode::FAILURE
        }
    }
}
