//! `gc [--dry-run] [--key KEY]... [--min-age SECONDS]`: removes abandoned shmsem pairs
//! and reports each one collected, kept or failed.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use shmsem::inspect::{self, GcEntry, GcOptions};

use crate::args::{is_help, parse_key, usage};
use crate::{FAILED, Failure};

pub(crate) fn gc(rest: &[String], out: &mut String) -> Result<ExitCode, Failure> {
    let mut options = GcOptions::new();
    let mut args = rest.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dry-run" | "-n" => options = options.dry_run(true),
            "--key" => {
                let k = args.next().ok_or_else(|| usage("--key needs a KEY"))?;
                options = options.key(parse_key(k)?);
            }
            "--min-age" => {
                let s = args
                    .next()
                    .ok_or_else(|| usage("--min-age needs SECONDS"))?;
                let secs: u64 = s
                    .parse()
                    .map_err(|_| usage(format!("{s:?} is not a number of seconds")))?;
                options = options.min_age(Duration::from_secs(secs));
            }
            a if is_help(a) => return Err(usage("see --help")),
            a => return Err(usage(format!("unexpected argument {a:?}"))),
        }
    }
    let report = inspect::gc(&options)?;
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for e in &report.collected {
        writeln!(out, "{verb} {}", describe(e)).ok();
    }
    for (e, why) in &report.kept {
        writeln!(out, "kept {}: {why}", describe(e)).ok();
    }
    for (e, err) in &report.failed {
        writeln!(out, "FAILED {}: {err}", describe(e)).ok();
    }
    writeln!(
        out,
        "{}: {} {verb}, {} kept, {} failed",
        if report.dry_run { "gc (dry run)" } else { "gc" },
        report.collected.len(),
        report.kept.len(),
        report.failed.len()
    )
    .ok();
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILED)
    })
}

/// One pair gc looked at: kind, key, ids and creator.
fn describe(e: &GcEntry) -> String {
    let sem = e
        .sem_id
        .map_or("no semaphore set".into(), |id| format!("semid {id}"));
    format!(
        "{} {} (shmid {}, {sem}; creator {})",
        e.kind.name(),
        e.key,
        e.shm_id,
        e.creator
    )
}
