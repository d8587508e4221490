//! `list`: every segment and every semaphore set, one table each (as `ipcs -m -s`), with
//! a SHMSEM column saying what shmsem sees in each.

use std::fmt::Write as _;
use std::process::ExitCode;

use shmsem::Key;
use shmsem::header::ObjectKind;
use shmsem::inspect::{self, Contents, Managed, SegmentReport, ShmRecord};

use crate::Failure;
use crate::names::Names;
use crate::table::{Align, Table};

pub(crate) fn list(out: &mut String) -> Result<ExitCode, Failure> {
    let listing = inspect::list()?;
    let mut names = Names::default();

    writeln!(out, "Shared memory segments: {}", listing.segments.len()).ok();
    let mut t = ipcs_table(
        "SHMID",
        &[
            ("BYTES", Align::Right),
            ("NATTCH", Align::Right),
            ("CPID", Align::Left),
            ("STATUS", Align::Left),
            ("SHMSEM", Align::Left),
        ],
    );
    for s in &listing.segments {
        let r = &s.record;
        let mut cells = ipcs_cells(r.key, r.id, r.uid, r.permissions(), &mut names);
        cells.extend([
            r.size.to_string(),
            r.nattch.to_string(),
            s.creator.to_string(),
            shm_status(r),
            summary(s),
        ]);
        t.row(cells);
    }
    t.render(out);

    writeln!(out, "\nSemaphore sets: {}", listing.semaphore_sets.len()).ok();
    let mut t = ipcs_table("SEMID", &[("NSEMS", Align::Right), ("SHMSEM", Align::Left)]);
    for set in &listing.semaphore_sets {
        let paired = match listing.paired_segment(set) {
            Some(seg) => match seg.contents.managed() {
                Some(m) if m.is_paired() => {
                    format!("{} pair of shmid {}", m.kind.name(), seg.record.id)
                }
                Some(m) => format!(
                    "NOT the pair of {} shmid {} (header says {} semaphores)",
                    m.kind.name(),
                    seg.record.id,
                    m.nsems
                ),
                None => "-".into(),
            },
            None => "-".into(),
        };
        let mut cells = ipcs_cells(set.key, set.id, set.uid, set.permissions(), &mut names);
        cells.extend([set.nsems.to_string(), paired]);
        t.row(cells);
    }
    t.render(out);
    Ok(ExitCode::SUCCESS)
}

/// A table that starts with the columns `ipcs` starts both its tables with: key, the id
/// (named `id`), owner and permissions; `more` follow.
fn ipcs_table(id: &'static str, more: &[(&'static str, Align)]) -> Table {
    let mut columns = vec![
        ("KEY", Align::Left),
        (id, Align::Right),
        ("OWNER", Align::Left),
        ("PERMS", Align::Left),
    ];
    columns.extend_from_slice(more);
    Table::new(&columns)
}

/// The cells under [`ipcs_table`]'s first columns.
fn ipcs_cells(key: Key, id: i32, uid: u32, perms: u32, names: &mut Names) -> Vec<String> {
    vec![
        key.to_string(),
        id.to_string(),
        names.user(uid),
        format!("{perms:o}"),
    ]
}

fn shm_status(r: &ShmRecord) -> String {
    let mut flags = Vec::new();
    if r.is_marked_for_removal() {
        flags.push("dest");
    }
    if r.is_locked_in_memory() {
        flags.push("locked");
    }
    if flags.is_empty() {
        "-".into()
    } else {
        flags.join(",")
    }
}

/// The SHMSEM column: one line on what shmsem sees in a segment.
fn summary(s: &SegmentReport) -> String {
    let m = match &s.contents {
        Contents::Managed(m) => m,
        Contents::Foreign(_) => return "-".into(),
        Contents::NoPermission => return "no permission".into(),
        Contents::Gone => return "(removed meanwhile)".into(),
        Contents::Unreadable(why) => return format!("unreadable: {why}"),
    };
    let mut parts = vec![format!("{} {}B", m.kind.name(), m.payload_size)];
    if let Some(state) = lock_state(m) {
        parts.push(state);
    }
    if let Some(h) = m.holder.filter(|h| h.is_alive()) {
        parts.push(format!("held by {}", h.pid));
    }
    if let Some(h) = m.holder.filter(|h| !h.is_alive()) {
        parts.push(format!("holder {h}"));
    }
    if let Some(by) = m.poisoned_by() {
        parts.push(format!("POISONED by {}", by.pid));
    }
    if s.record.key.is_private() {
        parts.push("private key".into());
    } else if m.semaphores.is_none() {
        parts.push("NO semaphore set".into());
    } else if !m.is_paired() {
        parts.push("semaphore set MISMATCH".into());
    }
    parts.join(", ")
}

/// What the semaphores say: lock states, a condvar's waiters (also `show`'s).
pub(crate) fn lock_state(m: &Managed) -> Option<String> {
    let v = m.semaphore_values.as_deref()?;
    match (m.kind, v) {
        (ObjectKind::Mutex, [lock]) => Some(if *lock > 0 { "free" } else { "locked" }.into()),
        // A condvar's own semaphores are its waiters' wake-ups; its leases, its waits.
        (ObjectKind::Condvar, wakes) => {
            let waiting = m.leases_held.unwrap_or(0);
            let pending: i32 = wakes.iter().sum();
            Some(match pending {
                0 => format!("{waiting} waiting"),
                n => format!("{waiting} waiting, {n} wake-up(s) not yet taken"),
            })
        }
        (ObjectKind::RwLock, [writer, readers, queued]) => Some(if *writer > 0 {
            "write-locked".into()
        } else if *readers > 0 {
            format!("{readers} reader(s)")
        } else if *queued > 0 {
            format!("{queued} writer(s) queued")
        } else {
            "free".into()
        }),
        _ => None,
    }
}
