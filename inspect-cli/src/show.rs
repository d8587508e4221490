//! `show KEY` and `show --id ID`: one key's (or id's) segment and semaphore set in
//! detail, one labelled line per fact.

use std::fmt::Write as _;

use shmsem::inspect;

use crate::Failure;
use crate::cli::ShowArgs;
use crate::describe::{count, process, state};
use crate::model::{ManagedJson, OwnerJson, SegmentJson, SemaphoreJson, SetJson, ShowJson};
use crate::names::{Names, or_number};
use crate::time::time;

pub(crate) fn show(args: &ShowArgs, json: bool, out: &mut String) -> Result<(), Failure> {
    let reports = match (args.key, args.id) {
        (Some(key), _) => vec![inspect::show_key(key)?],
        (None, Some(id)) => inspect::show_id(id)?,
        (None, None) => unreachable!("clap requires KEY or --id"),
    };
    let mut names = Names::default();
    for (i, report) in reports.iter().enumerate() {
        let model = ShowJson::new(report, &mut names);
        if json {
            crate::json_line(out, &model);
            continue;
        }
        if i > 0 {
            writeln!(out).ok();
        }
        render(&model, report.key, out);
    }
    Ok(())
}

/// Labelled lines, the labels padded to one width.
#[derive(Default)]
struct Lines(Vec<(String, String)>);

impl Lines {
    fn add(&mut self, label: impl Into<String>, value: impl Into<String>) {
        self.0.push((label.into(), value.into()));
    }

    fn render(self, out: &mut String) {
        let width = self.0.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
        for (label, value) in self.0 {
            writeln!(out, "{:<width$} {value}", format!("{label}:")).ok();
        }
    }
}

fn owner(o: &OwnerJson) -> String {
    format!(
        "{} (uid {}), group {} (gid {})",
        or_number(o.user.as_deref(), o.uid),
        o.uid,
        or_number(o.group.as_deref(), o.gid),
        o.gid
    )
}

fn render(model: &ShowJson, key: shmsem::Key, out: &mut String) {
    let mut lines = Lines::default();
    lines.add(
        "key",
        if key.is_private() {
            format!("{key} (IPC_PRIVATE)")
        } else {
            format!("{key} ({})", key.as_raw())
        },
    );
    match &model.segment {
        None => lines.add("segment", "none"),
        Some(s) => segment_lines(s, &mut lines),
    }
    match &model.semaphore_set {
        None if key.is_private() => {}
        None => lines.add("semaphore set", "none"),
        Some(set) => {
            let kind = model.segment.as_ref().and_then(|s| s.shmsem.as_ref());
            set_lines(set, kind, &mut lines);
        }
    }
    lines.render(out);
}

fn segment_lines(s: &SegmentJson, lines: &mut Lines) {
    let dest = if s.marked_for_removal {
        ", marked for removal"
    } else {
        ""
    };
    lines.add(
        "segment",
        format!(
            "shmid {}, {} bytes, perms {}{dest}",
            s.shmid, s.size, s.perms
        ),
    );
    lines.add("  owner", owner(&s.owner));
    lines.add(
        "  creator",
        format!(
            "pid {}, {}",
            process(&s.creator.process()),
            owner(&s.creator.owner)
        ),
    );
    let looking = if is_inspector(s.last_pid) {
        " (a shmsem-inspect that is running: its look was the last attach)"
    } else {
        ""
    };
    lines.add(
        "  last pid",
        format!(
            "{} (the last to attach or detach before this look){looking}",
            s.last_pid
        ),
    );
    lines.add("  attaches", s.attaches.to_string());
    lines.add("  created", time(s.created));
    lines.add("  last attach", time(s.last_attach));
    lines.add("  last detach", time(s.last_detach));
    let Some(m) = &s.shmsem else {
        let detail = s.detail.as_deref().unwrap_or("");
        lines.add(
            "shmsem",
            match s.contents {
                "foreign" => format!("not a shmsem object ({detail})"),
                "no_permission" => "no permission to attach it (cannot tell)".into(),
                "gone" => "removed while being looked at".into(),
                _ => format!("unreadable: {detail}"),
            },
        );
        return;
    };
    managed_lines(m, s.key == shmsem::Key::PRIVATE.to_string(), lines);
}

/// Is `pid` a running shmsem-inspect (whose own look updated the segment's last pid)?
/// For display only.
fn is_inspector(pid: i32) -> bool {
    pid > 0
        && pid as u32 != std::process::id()
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "shmsem-inspect")
}

fn managed_lines(m: &ManagedJson, private: bool, lines: &mut Lines) {
    lines.add(
        "shmsem",
        format!("{} (format version {})", m.kind, m.format_version),
    );
    lines.add(
        "  payload",
        format!(
            "{} bytes at offset {}, aligned to {}",
            m.payload.size, m.payload.offset, m.payload.align
        ),
    );
    let pairing = match m.semid {
        _ if private => "private key: the set cannot be found by key".into(),
        None => "MISSING: no semaphore set has this key".into(),
        Some(id) if m.paired => format!("semid {id}"),
        Some(id) => format!("MISMATCH: semid {id} has another number of semaphores"),
    };
    lines.add("  semaphores", format!("{} ({pairing})", m.nsems));
    if let Some(leases) = &m.leases {
        let who: Vec<String> = leases
            .iter()
            .map(|l| format!("pid {} (slot {})", pid_or_unknown(l.pid), l.slot))
            .collect();
        let what = if m.condvar.is_some() {
            "wait(s) in progress"
        } else {
            "open handle(s) that have used it"
        };
        let mut text = format!("{} {what}", leases.len());
        if !who.is_empty() {
            write!(text, ": {}", who.join(", ")).ok();
        }
        lines.add("  leases held", text);
    }
    if let Some(x) = &m.mutex {
        lines.add("  state", state(m).unwrap_or_else(|| "?".into()));
        if let Some(n) = x.waiting {
            lines.add("  waiting", format!("{} asleep", count(n as u64, "locker")));
        }
    }
    if let Some(x) = &m.rwlock {
        lines.add("  state", state(m).unwrap_or_else(|| "?".into()));
        if let (Some(w), Some(r), Some(q)) = (x.writer_inside, x.readers_inside, x.writers_queued) {
            lines.add(
                "  inside",
                format!(
                    "{}, {}; {} queued",
                    count(r as u64, "reader"),
                    if w { "a writer" } else { "no writer" },
                    count(q as u64, "writer")
                ),
            );
        }
        if let Some(n) = x.waiting {
            lines.add(
                "  waiting",
                format!(
                    "{} asleep (readers and writers)",
                    count(n as u64, "process")
                ),
            );
        }
    }
    if let Some(q) = &m.queue {
        lines.add(
            "  queue",
            format!("{}, capacity {} bytes", q.state, q.capacity),
        );
        let messages = q
            .messages_waiting
            .map_or_else(|| "? messages".into(), |n| count(n, "message"));
        let own = q
            .message_bytes
            .map(|b| format!(" ({b} of them message bytes)"))
            .unwrap_or_default();
        lines.add(
            "  waiting",
            format!(
                "{messages}, {} bytes in the ring{own}; {} bytes free",
                q.bytes_waiting, q.free_bytes
            ),
        );
        let side = |lock: &Option<crate::model::ProcessJson>,
                    registered: u32,
                    asleep: Option<usize>,
                    sem: &str| {
            let lock = lock.as_ref().map_or("lock free".to_string(), |p| {
                format!("lock held by pid {}", process(p))
            });
            let asleep = asleep.map_or("?".to_string(), |n| n.to_string());
            format!("{lock}; {registered} registered to sleep, {asleep} asleep on {sem}")
        };
        lines.add(
            "  producers",
            side(
                &q.producer_lock,
                q.waiting_producers,
                q.sleeping_producers,
                "SPACE",
            ),
        );
        lines.add(
            "  consumers",
            side(
                &q.consumer_lock,
                q.waiting_consumers,
                q.sleeping_consumers,
                "DATA",
            ),
        );
        if let Some(p) = &q.problem {
            lines.add("  problem", p.clone());
        }
    }
    if let Some(c) = &m.condvar {
        let n = |v: Option<usize>| v.map_or("?".to_string(), |v| v.to_string());
        lines.add(
            "  waiters",
            format!(
                "{} waiting ({} asleep), {} wake-up(s) not yet taken",
                n(c.waiting),
                n(c.sleeping),
                c.pending_wakeups.map_or("?".to_string(), |v| v.to_string())
            ),
        );
    }
    if m.condvar.is_none() && m.queue.is_none() {
        lines.add(
            "  holder",
            match &m.holder {
                None => "none".into(),
                Some(h) if h.state == "alive" => format!("pid {}", process(h)),
                Some(h) => format!("pid {}: it died inside its critical section", process(h)),
            },
        );
        lines.add(
            "  poisoned",
            match &m.poison {
                None => "no".into(),
                Some(p) => format!("yes, {}", crate::describe::poison(p)),
            },
        );
    }
}

fn pid_or_unknown(pid: i32) -> String {
    if pid > 0 {
        pid.to_string()
    } else {
        "? (not visible here)".into()
    }
}

fn semaphore_line(s: &SemaphoreJson) -> String {
    format!(
        "value {}; asleep: {} for an increase, {} for zero; last pid {}",
        s.value, s.ncnt, s.zcnt, s.last_pid
    )
}

/// Semaphores of a set that is no shmsem pair, shown one by one up to this many.
const SHOWN: usize = 32;

fn set_lines(set: &SetJson, managed: Option<&ManagedJson>, lines: &mut Lines) {
    lines.add(
        "semaphore set",
        format!(
            "semid {}, {} semaphore(s), perms {}",
            set.semid, set.nsems, set.perms
        ),
    );
    lines.add("  owner", owner(&set.owner));
    lines.add("  created/changed", time(set.changed));
    lines.add(
        "  last semop",
        match set.last_semop {
            None => "never (not initialised)".into(),
            t => time(t),
        },
    );
    let sems = match &set.semaphores {
        Some(Some(sems)) => sems,
        _ => {
            let why = set.semaphores_error.as_deref().unwrap_or("unknown");
            lines.add("  semaphores", format!("cannot be read: {why}"));
            return;
        }
    };
    let named = sems.first().is_some_and(|s| s.name.is_some());
    match managed.filter(|_| named) {
        Some(m) => {
            let own = m.semaphores.as_ref().map_or(0, Vec::len);
            let (mine, leases) = sems.split_at(own.min(sems.len()));
            if m.condvar.is_some() {
                // 256 wake-up semaphores: the busy ones, and the sum.
                let busy: Vec<_> = mine
                    .iter()
                    .filter(|s| s.value != 0 || s.ncnt != 0 || s.zcnt != 0)
                    .collect();
                lines.add(
                    "  WAKE(0..256)",
                    format!(
                        "{} busy (the others 0, nobody asleep)",
                        count(busy.len() as u64, "semaphore")
                    ),
                );
                for s in busy {
                    lines.add(format!("  {}", label(s)), semaphore_line(s));
                }
            } else {
                for s in mine {
                    lines.add(format!("  {}", label(s)), semaphore_line(s));
                }
            }
            let held = leases.iter().step_by(2).filter(|s| s.value != 0).count();
            let waiting: usize = leases.iter().map(|s| s.ncnt + s.zcnt).sum();
            lines.add(
                "  lease slots",
                format!(
                    "{} (HELD and GEN each): {held} held, {} asleep on them",
                    leases.len() / 2,
                    count(waiting as u64, "process")
                ),
            );
        }
        None => {
            for s in sems.iter().take(SHOWN) {
                lines.add(format!("  {}", label(s)), semaphore_line(s));
            }
            if sems.len() > SHOWN {
                lines.add(
                    "  ...",
                    format!("{} more (--json lists all)", sems.len() - SHOWN),
                );
            }
        }
    }
}

fn label(s: &SemaphoreJson) -> String {
    match &s.name {
        Some(name) => format!("#{} {name}", s.index),
        None => format!("#{}", s.index),
    }
}
