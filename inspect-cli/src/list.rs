//! `list`: every segment and every semaphore set, one table each (as `ipcs -m -s`), with
//! a SHMSEM column saying what shmsem sees in each.

use std::fmt::Write as _;

use shmsem::inspect;

use crate::Failure;
use crate::describe::summary;
use crate::model::{ListJson, OwnerJson};
use crate::names::{Names, or_number};
use crate::table::{Align, Table};

pub(crate) fn list(json: bool, out: &mut String) -> Result<(), Failure> {
    let listing = inspect::list()?;
    let model = ListJson::new(&listing, &mut Names::default());
    if json {
        crate::json_line(out, &model);
        return Ok(());
    }

    writeln!(out, "Shared memory segments: {}", model.segments.len()).ok();
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
    for s in &model.segments {
        let mut cells = ipcs_cells(&s.key, s.shmid, &s.owner, &s.perms);
        let mut flags = Vec::new();
        if s.marked_for_removal {
            flags.push("dest");
        }
        if s.locked_in_memory {
            flags.push("locked");
        }
        cells.extend([
            s.size.to_string(),
            s.attaches.to_string(),
            crate::describe::process(&s.creator.process()),
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(",")
            },
            summary(s),
        ]);
        t.row(cells);
    }
    t.render(out);

    writeln!(out, "\nSemaphore sets: {}", model.semaphore_sets.len()).ok();
    let mut t = ipcs_table("SEMID", &[("NSEMS", Align::Right), ("SHMSEM", Align::Left)]);
    for set in &model.semaphore_sets {
        let paired = match &set.pairs_with {
            Some(p) if p.paired => format!("{} pair of shmid {}", p.kind, p.shmid),
            Some(p) => format!(
                "NOT the pair of {} shmid {} (its header names another number of semaphores)",
                p.kind, p.shmid
            ),
            None => "-".into(),
        };
        let mut cells = ipcs_cells(&set.key, set.semid, &set.owner, &set.perms);
        cells.extend([set.nsems.to_string(), paired]);
        t.row(cells);
    }
    t.render(out);
    Ok(())
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
fn ipcs_cells(key: &str, id: i32, owner: &OwnerJson, perms: &str) -> Vec<String> {
    vec![
        key.to_string(),
        id.to_string(),
        or_number(owner.user.as_deref(), owner.uid),
        perms.to_string(),
    ]
}
