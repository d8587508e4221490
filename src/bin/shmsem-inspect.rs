//! `shmsem-inspect`: lists, shows, removes and garbage-collects System V shared memory
//! segments and semaphore sets, decoding the ones shmsem manages. A thin front end of
//! [`shmsem::inspect`]; run `shmsem-inspect --help`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shmsem::Key;
use shmsem::header::ObjectKind;
use shmsem::inspect::{
    self, Contents, GcOptions, KeyReport, Managed, SegmentReport, SemRecord, ShmRecord,
};

const HELP: &str = "\
shmsem-inspect: System V shared memory segments and semaphore sets, and what shmsem
sees in them (kind, holder, poisoning of its mutexes, rwlocks and queues)

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

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        usage: true,
    }
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
            list(out)
        }
        "show" => show(rest, out),
        "rm" | "remove" => rm(rest, out),
        "gc" => gc(rest, out),
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

fn no_more(rest: &[String]) -> Result<(), Failure> {
    match rest.first() {
        None => Ok(()),
        Some(arg) if is_help(arg) => Err(usage("see --help")),
        Some(arg) => Err(usage(format!("unexpected argument {arg:?}"))),
    }
}

fn is_help(arg: &str) -> bool {
    arg == "-h" || arg == "--help"
}

/// `0x7d001234` (hex, up to 32 bits), or decimal (a signed or unsigned 32-bit value).
fn parse_key(s: &str) -> Result<Key, Failure> {
    let bad = || usage(format!("{s:?} is not a key (0x-prefixed hex or decimal)"));
    let raw = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).map_err(|_| bad())? as i32
    } else {
        let v: i64 = s.parse().map_err(|_| bad())?;
        if !(i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&v) {
            return Err(bad());
        }
        v as u32 as i32
    };
    Ok(Key::from_raw(raw))
}

/// A key that names one object: not 0 (IPC_PRIVATE).
fn parse_public_key(s: &str) -> Result<Key, Failure> {
    let key = parse_key(s)?;
    if key.is_private() {
        return Err(usage(
            "key 0 is IPC_PRIVATE and names no single object: use `show --id ID` \
             (and ipcrm -m ID / ipcrm -s ID to remove)",
        ));
    }
    Ok(key)
}

// ---------------------------------------------------------------------------------------
// list
// ---------------------------------------------------------------------------------------

fn list(out: &mut String) -> Result<ExitCode, Failure> {
    let listing = inspect::list()?;
    let mut names = Names::default();

    writeln!(out, "Shared memory segments: {}", listing.segments.len()).ok();
    let mut t = Table::new(&[
        ("KEY", Align::Left),
        ("SHMID", Align::Right),
        ("OWNER", Align::Left),
        ("PERMS", Align::Left),
        ("BYTES", Align::Right),
        ("NATTCH", Align::Right),
        ("CPID", Align::Left),
        ("STATUS", Align::Left),
        ("SHMSEM", Align::Left),
    ]);
    for s in &listing.segments {
        let r = &s.record;
        t.row(vec![
            r.key.to_string(),
            r.id.to_string(),
            names.user(r.uid),
            format!("{:o}", r.permissions()),
            r.size.to_string(),
            r.nattch.to_string(),
            s.creator.to_string(),
            shm_status(r),
            summary(s),
        ]);
    }
    t.render(out);

    writeln!(out, "\nSemaphore sets: {}", listing.semaphore_sets.len()).ok();
    let mut t = Table::new(&[
        ("KEY", Align::Left),
        ("SEMID", Align::Right),
        ("OWNER", Align::Left),
        ("PERMS", Align::Left),
        ("NSEMS", Align::Right),
        ("SHMSEM", Align::Left),
    ]);
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
        t.row(vec![
            set.key.to_string(),
            set.id.to_string(),
            names.user(set.uid),
            format!("{:o}", set.permissions()),
            set.nsems.to_string(),
            paired,
        ]);
    }
    t.render(out);
    Ok(ExitCode::SUCCESS)
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

/// What the semaphores say, for the kinds whose semaphores are locks.
fn lock_state(m: &Managed) -> Option<String> {
    let v = m.semaphore_values.as_deref()?;
    match (m.kind, v) {
        (ObjectKind::Mutex, [lock]) => Some(if *lock > 0 { "free" } else { "locked" }.into()),
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

// ---------------------------------------------------------------------------------------
// show
// ---------------------------------------------------------------------------------------

fn show(rest: &[String], out: &mut String) -> Result<ExitCode, Failure> {
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
            line(
                "  owner",
                format!(
                    "{} (uid {}), group {} (gid {})",
                    names.user(r.uid),
                    r.uid,
                    names.group(r.gid),
                    r.gid
                ),
            );
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
    line("shmsem", format!("{} (format version 1)", m.kind.name()));
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
            format!("{n} (open handles that have locked it)"),
        );
    }
    if let Some(values) = &m.semaphore_values {
        let state = lock_state(m).map(|s| format!(": {s}")).unwrap_or_default();
        line("  semaphore values", format!("{values:?}{state}"));
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
    line(
        "  owner",
        format!(
            "{} (uid {}), group {} (gid {})",
            names.user(set.uid),
            set.uid,
            names.group(set.gid),
            set.gid
        ),
    );
    line("  created/changed", time(set.ctime));
    line(
        "  last semop",
        match set.otime {
            None => "never (not initialised)".into(),
            t => time(t),
        },
    );
}

// ---------------------------------------------------------------------------------------
// rm, gc
// ---------------------------------------------------------------------------------------

fn rm(rest: &[String], out: &mut String) -> Result<ExitCode, Failure> {
    let mut key = None;
    let mut force = false;
    for arg in rest {
        match arg.as_str() {
            "--force" | "-f" => force = true,
            a if is_help(a) => return Err(usage("see --help")),
            a if key.is_none() && (!a.starts_with('-') || a.parse::<i64>().is_ok()) => {
                key = Some(parse_public_key(a)?);
            }
            a => return Err(usage(format!("unexpected argument {a:?}"))),
        }
    }
    let key = key.ok_or_else(|| usage("rm needs a KEY"))?;
    let removed = inspect::remove(key, force).map_err(|e| {
        let mut f = Failure::from(e);
        f.message = f.message.replace("force removes", "--force removes");
        f
    })?;
    let what = removed.kind.map_or("objects", ObjectKind::name);
    let mut parts = Vec::new();
    if let Some(id) = removed.shm_id {
        parts.push(format!("segment {id}"));
    }
    if let Some(id) = removed.sem_id {
        parts.push(format!("semaphore set {id}"));
    }
    writeln!(out, "removed {what} {key}: {}", parts.join(" and ")).ok();
    if removed.nattch > 0 {
        writeln!(
            out,
            "note: {} process(es) still attach the segment; they keep it until they detach",
            removed.nattch
        )
        .ok();
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(rest: &[String], out: &mut String) -> Result<ExitCode, Failure> {
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
    let describe = |e: &inspect::GcEntry| {
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

// ---------------------------------------------------------------------------------------
// Output helpers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Columns padded to their widest cell; the last column is not padded.
struct Table {
    header: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[(&'static str, Align)]) -> Table {
        Table {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|(h, _)| h.len()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let last = self.header.len() - 1;
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, cell) in cells.enumerate() {
                let (w, align) = (widths[i], self.header[i].1);
                if i == last {
                    s.push_str(cell);
                } else if align == Align::Right {
                    write!(s, "{cell:>w$}  ").ok();
                } else {
                    write!(s, "{cell:<w$}  ").ok();
                }
            }
            writeln!(out, "{}", s.trim_end()).ok();
        };
        line(&mut self.header.iter().map(|(h, _)| *h));
        for row in &self.rows {
            line(&mut row.iter().map(String::as_str));
        }
    }
}

/// User and group names from /etc/passwd and /etc/group (numbers when not found).
#[derive(Default)]
struct Names {
    users: Option<HashMap<u32, String>>,
    groups: Option<HashMap<u32, String>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> String {
        let users = self.users.get_or_insert_with(|| read_names("/etc/passwd"));
        users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    fn group(&mut self, gid: u32) -> String {
        let groups = self.groups.get_or_insert_with(|| read_names("/etc/group"));
        groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }
}

/// `name:x:id:...` lines.
fn read_names(path: &str) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}

/// `2025-11-26 14:39:03 UTC (5m ago)`, or `never`.
fn time(t: Option<SystemTime>) -> String {
    let Some(t) = t else {
        return "never".into();
    };
    let Ok(since_epoch) = t.duration_since(UNIX_EPOCH) else {
        return "before 1970".into();
    };
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let ago = match SystemTime::now().duration_since(t) {
        Ok(a) => format!(" ({} ago)", short(a)),
        Err(_) => String::new(),
    };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC{ago}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_in_hex_and_decimal() {
        assert_eq!(
            parse_key("0x7d000001").ok(),
            Some(Key::from_raw(0x7d00_0001))
        );
        assert_eq!(parse_key("0xffffffff").ok(), Some(Key::from_raw(-1)));
        assert_eq!(parse_key("1234").ok(), Some(Key::from_raw(1234)));
        assert_eq!(parse_key("-16").ok(), Some(Key::from_raw(-16)));
        assert_eq!(parse_key("4294967295").ok(), Some(Key::from_raw(-1)));
        for bad in ["", "0x", "0x1ffffffff", "4294967296", "12ab", "key"] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
