//! `top` (also `watch`): the shmsem objects in a table, refreshed every interval until
//! `q` (or Ctrl-C), or `--count` refreshes; with `--json`, one line per refresh.
//!
//! The view attaches every segment at each refresh, as `list` does; `shmsem::inspect`
//! keeps showing each segment's last *user* (not this process) all the same.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use shmsem::inspect;

use crate::Failure;
use crate::cli::TopArgs;
use crate::describe::{depth, process, state};
use crate::model::{SegmentJson, TopJson, unix};
use crate::names::Names;
use crate::table::{Align, Table};
use crate::term::{self, Event, Terminal};
use crate::time::clock;

pub(crate) fn top(args: &TopArgs, json: bool) -> Result<(), Failure> {
    let keys = term::is_tty(libc::STDIN_FILENO);
    let screen = !json && term::is_tty(libc::STDOUT_FILENO);
    term::install_signal_handlers();
    let terminal = Terminal::open(keys, screen);
    let mut keys = terminal.reads_keys();
    let mut names = Names::default();
    let mut refreshes = 0u64;
    loop {
        let listing = inspect::list()?;
        let now = SystemTime::now();
        let mut segments: Vec<SegmentJson> = listing
            .segments
            .iter()
            .filter(|s| s.contents.managed().is_some())
            .map(|s| SegmentJson::new(s, &mut names))
            .collect();
        segments.sort_by(|a, b| (&a.key, a.shmid).cmp(&(&b.key, b.shmid)));
        if json {
            let mut line = String::new();
            crate::json_line(
                &mut line,
                &TopJson {
                    time: unix(Some(now)).unwrap_or(0),
                    segments,
                },
            );
            terminal.draw(line.trim_end());
        } else {
            let size = if screen { term::window_size() } else { None };
            terminal.draw(&frame(&segments, now, args, keys, size));
        }
        refreshes += 1;
        if args.count.is_some_and(|n| refreshes >= n) {
            return Ok(());
        }
        let deadline = Instant::now() + args.interval;
        loop {
            match term::wait(deadline, keys) {
                Event::Key(b'q' | b'Q' | 0x03 | 0x04) | Event::Stop => return Ok(()),
                Event::Key(b' ' | b'r' | b'R') | Event::Timeout | Event::Resized => break,
                Event::Key(_) => {}
                Event::Closed => keys = false,
            }
        }
    }
}

/// One screen: a title line, then the table, cut to the window if there is one.
fn frame(
    segments: &[SegmentJson],
    now: SystemTime,
    args: &TopArgs,
    keys: bool,
    size: Option<(usize, usize)>,
) -> String {
    let mut out = String::new();
    let hint = if keys {
        "; q quits, space refreshes"
    } else {
        ""
    };
    writeln!(
        out,
        "shmsem-inspect top: {} shmsem object(s), {}, every {:?}{hint}",
        segments.len(),
        clock(now),
        args.interval
    )
    .ok();
    let mut t = Table::new(&[
        ("KEY", Align::Left),
        ("SHMID", Align::Right),
        ("KIND", Align::Left),
        ("STATE", Align::Left),
        ("HOLDER", Align::Left),
        ("WAITING", Align::Right),
        ("POISONED", Align::Left),
        ("QUEUE", Align::Left),
        ("LEASES", Align::Right),
        ("LAST PID", Align::Right),
    ]);
    for s in segments {
        let Some(m) = &s.shmsem else { continue };
        let dash = || "-".to_string();
        let q = |v: Option<usize>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        t.row(vec![
            s.key.clone(),
            s.shmid.to_string(),
            m.kind.to_string(),
            state(m).unwrap_or_else(|| "?".into()),
            m.holder.as_ref().map_or_else(dash, process),
            q(m.waiters),
            m.poison
                .as_ref()
                .map_or_else(dash, |p| format!("by {}, {}", process(&p.by), p.cause)),
            m.queue.as_ref().map_or_else(dash, depth),
            q(m.leases_held),
            s.last_pid.to_string(),
        ]);
    }
    if segments.is_empty() {
        writeln!(out, "\n(no shmsem objects)").ok();
    } else {
        out.push('\n');
        t.render(&mut out);
    }
    let Some((cols, rows)) = size else {
        return out;
    };
    // Cut to the window: no wrapped lines, and the last row says what did not fit.
    let lines: Vec<&str> = out.lines().collect();
    let mut fitted: Vec<String> = lines
        .iter()
        .map(|l| l.chars().take(cols).collect())
        .collect();
    if fitted.len() > rows {
        let hidden = fitted.len() - (rows - 1);
        fitted.truncate(rows - 1);
        fitted.push(format!(
            "... {hidden} more rows (a larger window shows them)"
        ));
    }
    fitted.join("\n")
}
