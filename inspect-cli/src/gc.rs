//! `gc [--dry-run] [--key KEY]... [--min-age SECONDS]`: removes abandoned shmsem pairs
//! and reports each one collected, kept or failed.

use std::fmt::Write as _;
use std::time::Duration;

use shmsem::inspect::{self, GcEntry, GcOptions};

use crate::Failure;
use crate::cli::GcArgs;
use crate::describe::process;
use crate::model::{GcEntryJson, GcJson};

pub(crate) fn gc(args: &GcArgs, json: bool, out: &mut String) -> Result<(), Failure> {
    let options = args
        .keys
        .iter()
        .fold(GcOptions::new(), |o, k| o.key(*k))
        .dry_run(args.dry_run)
        .min_age(Duration::from_secs(args.min_age));
    let report = inspect::gc(&options)?;
    let failed = |n: usize| Failure {
        message: format!("gc: {n} removal(s) failed"),
        kind: "failed".into(),
        json_printed: false,
    };
    if json {
        let model = GcJson {
            dry_run: report.dry_run,
            collected: report.collected.iter().map(GcEntryJson::new).collect(),
            kept: report
                .kept
                .iter()
                .map(|(e, why)| GcEntryJson {
                    reason: Some(why.clone()),
                    ..GcEntryJson::new(e)
                })
                .collect(),
            failed: report
                .failed
                .iter()
                .map(|(e, err)| GcEntryJson {
                    error: Some(err.to_string()),
                    ..GcEntryJson::new(e)
                })
                .collect(),
        };
        crate::json_line(out, &model);
        return match report.failed.len() {
            0 => Ok(()),
            // The report is the answer; the status says something failed.
            n => Err(Failure {
                json_printed: true,
                ..failed(n)
            }),
        };
    }
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
    match report.failed.len() {
        0 => Ok(()),
        n => Err(failed(n)),
    }
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
        process(&e.creator.into())
    )
}
