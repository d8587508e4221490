//! Many readers or one writer: a shared configuration in a [`SharedRwLock`], read by
//! several processes at once and updated by another.
//!
//! ```text
//! cargo run --example rwlock              # 3 readers, 5 updates
//! cargo run --example rwlock -- 4 10      # 4 readers, 10 updates
//! ```
//!
//! The configuration is a version number and a small table whose every entry is derived
//! from the version (`table[i] = version * (i + 1)`), plus a checksum. The writer changes
//! the entries one at a time, yielding the CPU in between, so an unguarded reader would
//! catch half-written tables; under the lock none does. What it shows:
//!
//! 1. the readers hold the read lock *at the same time*: each one takes it and stays
//!    inside until all have arrived, and the parent reads the READERS semaphore
//!    (`semaphores().value(1)`), which counts them;
//! 2. then the writer process updates the config while the readers keep reading; every
//!    reader checks every table it sees and reports the versions it saw; none is ever torn.
//!
//! Processes are this program re-run with a hidden first argument; handshakes go through
//! their stdin and stdout (no sleeps). The parent removes the lock at the end, also on
//! failure, so `ipcs -m -s` shows nothing left.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::thread::JoinHandle;

use shmsem::{Error, ErrorKind, Key, SharedRwLock};

/// The shared configuration: plain data (`Pod`), the same bytes in every process.
#[repr(C)]
#[derive(Clone, Copy, shmsem::Pod, shmsem::Zeroable)]
#[bytemuck(crate = "shmsem::bytemuck")]
struct Config {
    version: u64,
    table: [u64; 8],
    checksum: u64,
}

impl Config {
    fn at(version: u64) -> Config {
        let mut c = Config {
            version,
            table: [0; 8],
            checksum: 0,
        };
        for i in 0..c.table.len() {
            c.table[i] = version * (i as u64 + 1);
        }
        c.checksum = c.table.iter().sum();
        c
    }

    /// Is this a whole config of one version (not a mix of two)?
    fn is_consistent(&self) -> bool {
        let whole = Config::at(self.version);
        self.table == whole.table && self.checksum == whole.checksum
    }
}

/// READERS: the semaphore that counts the readers inside (docs/FORMAT.md, "RwLock").
const READERS: usize = 1;

const READER: &str = "--reader";
const WRITER: &str = "--writer";

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some(READER) => reader(&args[1..]),
        Some(WRITER) => writer(&args[1..]),
        _ => parent(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rwlock: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------------------

const USAGE: &str = "usage: rwlock [READERS (default 3)] [UPDATES (default 5)]";

fn parent(args: &[String]) -> DemoResult<()> {
    let number = |i: usize, default: u64| -> DemoResult<u64> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => s
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{s:?} is not a positive number\n{USAGE}").into()),
        }
    };
    if args.len() > 2 {
        return Err(USAGE.into());
    }
    let (readers, updates) = (number(0, 3)?, number(1, 5)?);

    // A key of this executable's own (ftok), so other programs' objects are not hit.
    let key = Key::ftok(std::env::current_exe()?, b'W')?;
    remove_leftover(key)?;
    let config = RemoveOnDrop(SharedRwLock::create(key, Config::at(0))?);
    println!("config {key}: version 0, {readers} readers, {updates} updates");

    // 1. The readers come in, and stay inside until all of them are.
    let mut children = Children(Vec::new());
    let mut relays = Vec::new();
    for n in 1..=readers {
        let args = [
            READER,
            &n.to_string(),
            &updates.to_string(),
            &key.as_raw().to_string(),
        ];
        let mut child = spawn(&args)?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no pipe")?);
        let first = expect_line(&mut lines, "inside", &format!("reader {n}"))?;
        print!("{first}");
        children.0.push(child);
        relays.push(relay(lines));
    }
    let inside = config.0.semaphores().value(READERS)?;
    println!(
        "parent: READERS semaphore = {inside}: all {readers} readers hold the read lock at once"
    );
    if inside != readers as i32 {
        return Err(
            format!("expected {readers} readers inside, the semaphore says {inside}").into(),
        );
    }
    // Closing their stdin lets them go: they leave, and go on reading.
    for child in &mut children.0 {
        drop(child.stdin.take());
    }

    // 2. The writer updates the config while they read.
    let mut writer = spawn(&[WRITER, &updates.to_string(), &key.as_raw().to_string()])?;
    drop(writer.stdin.take());
    relays.push(relay(BufReader::new(
        writer.stdout.take().ok_or("no pipe")?,
    )));
    children.0.push(writer);

    let mut failed = 0;
    for child in &mut children.0 {
        if !child.wait()?.success() {
            failed += 1;
        }
    }
    children.0.clear();
    for r in relays {
        let _ = r.join();
    }
    if failed > 0 {
        return Err(format!("{failed} process(es) failed").into());
    }
    let last = *config.0.read().map_err(Error::from)?;
    println!(
        "parent: final config version {}, table {:?}, consistent: {}",
        last.version,
        last.table,
        last.is_consistent()
    );
    Ok(())
}

fn spawn(args: &[&str]) -> DemoResult<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?)
}

/// Reads one line and checks it starts with `word` (the child's handshake).
fn expect_line(lines: &mut BufReader<ChildStdout>, word: &str, who: &str) -> DemoResult<String> {
    let mut line = String::new();
    lines.read_line(&mut line)?;
    if !line.contains(word) {
        return Err(format!("{who} failed before the handshake").into());
    }
    Ok(line)
}

/// Copies a child's remaining output to ours, line by line (lines stay whole).
fn relay(lines: BufReader<ChildStdout>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        for line in lines.lines().map_while(Result::ok) {
            let _ = writeln!(stdout.lock(), "{line}");
        }
    })
}

/// Removes an rwlock of ours left by an earlier run that was killed; refuses to touch
/// anything else under the key.
fn remove_leftover(key: Key) -> DemoResult<()> {
    match SharedRwLock::<Config>::open(key) {
        Ok(old) => Ok(old.remove()?),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("key {key} is taken by something else ({e}); see ipcs -m -s").into()),
    }
}

/// Removes the lock when dropped: at the end, and on every early return.
struct RemoveOnDrop(SharedRwLock<Config>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("rwlock: removing the lock: {e}");
        }
    }
}

/// Kills and reaps children not waited for (on an early return).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The readers and the writer
// ---------------------------------------------------------------------------------------

/// `rwlock --reader N UPDATES KEY`
fn reader(args: &[String]) -> DemoResult<()> {
    let [n, last, key] = args else {
        return Err("usage: rwlock --reader N UPDATES KEY".into());
    };
    // The writer's last version: read until it shows up.
    let last: u64 = last.parse()?;
    let config = SharedRwLock::<Config>::open(Key::from_raw(key.parse()?))?;
    let mut out = std::io::stdout();

    // Step 1: take the read lock, say so, and stay inside until the parent lets go.
    {
        let c = config.read().map_err(Error::from)?;
        let readers = config.semaphores().value(READERS)?;
        writeln!(
            out,
            "reader {n}: inside, sees version {} (readers inside now: {readers})",
            c.version
        )?;
        out.flush()?;
        std::io::stdin().read_to_end(&mut Vec::new())?; // the parent closes our stdin
    }

    // Step 2: read until the writer's last version, checking every table.
    let (mut reads, mut seen) = (0u64, Vec::new());
    let mut most_inside = 0;
    loop {
        let c = config.read().map_err(Error::from)?;
        reads += 1;
        if !c.is_consistent() {
            return Err(format!(
                "reader {n}: TORN config: version {}, table {:?}",
                c.version, c.table
            )
            .into());
        }
        if seen.last() != Some(&c.version) {
            let inside = config.semaphores().value(READERS)?;
            most_inside = most_inside.max(inside);
            writeln!(
                out,
                "reader {n}: version {}: table {:?} checksum {} ok (readers inside: {inside})",
                c.version, c.table, c.checksum
            )?;
            seen.push(c.version);
        }
        if c.version == last {
            break;
        }
    }
    writeln!(
        out,
        "reader {n}: done: {reads} reads, saw versions {seen:?}, none torn"
    )?;
    Ok(())
}

/// `rwlock --writer UPDATES KEY`
fn writer(args: &[String]) -> DemoResult<()> {
    let [updates, key] = args else {
        return Err("usage: rwlock --writer UPDATES KEY".into());
    };
    let updates: u64 = updates.parse()?;
    let config = SharedRwLock::<Config>::open(Key::from_raw(key.parse()?))?;
    let mut out = std::io::stdout();
    for version in 1..=updates {
        {
            let mut c = config.write().map_err(Error::from)?;
            // One entry at a time, giving the CPU away in between: without the lock a
            // reader would see a mix of two versions here.
            c.version = version;
            for i in 0..c.table.len() {
                c.table[i] = version * (i as u64 + 1);
                std::thread::yield_now();
            }
            c.checksum = c.table.iter().sum();
        }
        writeln!(out, "writer: version {version} written")?;
    }
    Ok(())
}
