//! `show KEY` and `show --id ID`: one key's (or id's) segment and semaphore set in
//! detail, one labelled line per fact.

use std::fmt::Write as _;
use std::process::ExitCode;

use shmsem::header::ObjectKind;
use shmsem::inspect::{self, Contents, KeyReport, SegmentReport, SemRecord};

use crate::Failure;
use crate::args::{is_help, parse_public_key, usage};
use crate::list::lock_state;
use crate::names::Names;
use crate::time::time;

pub(crate) fn show(rest: &[String], out: &mut String) -> Result<ExitCode, Failure> {
    let reports = match rest {
        [flag, id] if flag == "--id" => {
            let id: i32 = id
                .parse()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| usage(format!("{id:?} is not an IPC id")))?;
            inspect::show_id(id)?
        }
        [key] if !key.starts_with("--") || key.parse::<i64>().is_ok() => {
            vec![inspect::show_key(parse_public_key(key)?)?]
        }
        [] => return Err(usage("show needs a KEY, or --id ID")),
        [arg, ..] if is_help(arg) => return Err(usage("see --help")),
        _ => return Err(usage("usage: show KEY | show --id ID")),
    };
    let mut names = Names::default();
    for (i, report) in reports.iter().enumerate() {
        if i > 0 {
            writeln!(out).ok();
        }
        show_report(report, &mut names, out);
    }
    Ok(ExitCode::SUCCESS)
}

fn show_report(report: &KeyReport, names: &mut Names, out: &mut String) {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut line = |label: &str, value: String| lines.push((label.to_string(), value));
    let key = report.key;
    line(
        "key",
        if key.is_private() {
            format!("{key} (IPC_PRIVATE)")
        } else {
            format!("{key} ({})", key.as_raw())
        },
    );
    match &report.segment {
        None => line("segment", "none".into()),
        Some(s) => {
            let r = &s.record;
            let dest = if r.is_marked_for_removal() {
                ", marked for removal"
            } else {
                ""
            };
            line(
                "segment",
                format!(
                    "shmid {}, {} bytes, perms {:o}{dest}",
                    r.id,
                    r.size,
                    r.permissions()
                ),
            );
            line("  owner", names.owner(r.uid, r.gid));
            line(
                "  creator",
                format!("pid {}, {} (uid {})", s.creator, names.user(r.cuid), r.cuid),
            );
            line(
                "  last pid",
                format!("{} (last to attach or detach)", r.lpid),
            );
            line("  attaches", r.nattch.to_string());
            line("  created", time(r.ctime));
            line("  last attach", time(r.atime));
            line("  last detach", time(r.dtime));
            shmsem_lines(s, &mut line);
        }
    }
    match &report.semaphore_set {
        None if key.is_private() => {}
        None => line("semaphore set", "none".into()),
        Some(set) => semaphore_lines(set, names, &mut line),
    }
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (label, value) in lines {
        writeln!(out, "{:<width$} {value}", format!("{label}:")).ok();
    }
}

fn shmsem_lines(s: &SegmentReport, line: &mut impl FnMut(&str, String)) {
    let m = match &s.contents {
        Contents::Managed(m) => m,
        Contents::Foreign(why) => return line("shmsem", format!("not a shmsem object ({why})")),
        Contents::NoPermission => {
            return line("shmsem", "no permission to attach it (cannot tell)".into());
        }
        Contents::Gone => return line("shmsem", "removed while being looked at".into()),
        Contents::Unreadable(why) => return line("shmsem", format!("unreadable: {why}")),
    };
    let version = shmsem::header::VERSION;
    line(
        "shmsem",
        format!("{} (format version {version})", m.kind.name()),
    );
    line(
        "  payload",
        format!(
            "{} bytes at offset {}, aligned to {}",
            m.payload_size, m.payload_offset, m.payload_align
        ),
    );
    let pairing = match &m.semaphores {
        _ if s.record.key.is_private() => "private key: the set cannot be found by key".into(),
        None => "MISSING: no semaphore set has this key".into(),
        Some(set) if m.is_paired() => format!("semid {}", set.id),
        Some(set) => format!(
            "MISMATCH: semid {} has {} semaphores, the header says {}",
            set.id, set.nsems, m.nsems
        ),
    };
    line("  semaphores", format!("{} ({pairing})", m.nsems));
    if let Some(n) = m.leases_held {
        // Each open handle that has locked holds one lease (docs/FORMAT.md, "Leases").
        line(
            "  leases held",
            match m.kind {
                ObjectKind::Condvar => format!("{n} (one per wait in progress)"),
                _ => format!("{n} (open handles that have locked it)"),
            },
        );
    }
    match &m.semaphore_values {
        // 256 wake-up semaphores: their sum and the waiters say it all.
        Some(_) if m.kind == ObjectKind::Condvar => {
            line("  waiters", lock_state(m).unwrap_or_default());
        }
        Some(values) => {
            let state = lock_state(m).map(|s| format!(": {s}")).unwrap_or_default();
            line("  semaphore values", format!("{values:?}{state}"));
        }
        None => {}
    }
    line(
        "  holder",
        match m.holder {
            None => "none".into(),
            Some(h) if h.is_alive() => format!("pid {h}"),
            Some(h) => format!("pid {h}: it died inside its critical section"),
        },
    );
    line(
        "  poisoned",
        match (m.poisoned_by(), m.poison) {
            (None, _) => "no".into(),
            (Some(by), None) => {
                format!("yes, by {by}: the holder died inside (the next locker is told)")
            }
            (Some(by), Some(_)) => format!("yes, by {by}"),
        },
    );
}

fn semaphore_lines(set: &SemRecord, names: &mut Names, line: &mut impl FnMut(&str, String)) {
    line(
        "semaphore set",
        format!(
            "semid {}, {} semaphore(s), perms {:o}",
            set.id,
            set.nsems,
            set.permissions()
        ),
    );
    line("  owner", names.owner(set.uid, set.gid));
    line("  created/changed", time(set.ctime));
    line(
        "  last semop",
        match set.otime {
            None => "never (not initialised)".into(),
            t => time(t),
        },
    );
}
