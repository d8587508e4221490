//! The Rust side of `examples/interop.py`: a `SharedMutex<u64>` that a Python program
//! (`sysv_ipc`, following docs/FORMAT.md) and this program increment at the same time.
//!
//! ```text
//! cargo run --example interop_host          # 1000 each
//! cargo run --example interop_host -- 5000  # 5000 each
//! cargo run --example interop_host -- --serve    # create, print the key, wait for Enter
//! ```
//!
//! By default it creates the mutex, starts `examples/interop.py KEY N` (with
//! `$SHMSEM_PYTHON`; else the virtual environment with `sysv_ipc` that `cargo test`
//! makes in `target/interop-venv`; else `python3`, which then needs `sysv_ipc`),
//! waits until the script has opened the mutex, then both add 1 to the counter N times,
//! under the same lock. The total must be exactly 2 x N. With `--serve` it only creates
//! the mutex and waits for you to press Enter, so you can run the script (or several) by
//! hand in another terminal; then it prints the counter.
//!
//! Either way the mutex is removed at the end (also on failure).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use shmsem::{Error, ErrorKind, Key, SharedMutex};

/// The key both sides use (`0x5e001e70` in `ipcs`).
const KEY: Key = Key::from_raw(0x5e00_1e70);

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--serve"] => serve(),
        [] => run(1000),
        [n] => match n.parse() {
            Ok(n) if n > 0 => run(n),
            _ => Err(format!("{n:?} is not a positive number").into()),
        },
        _ => Err("usage: interop_host [INCREMENTS] | interop_host --serve".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop_host: {e}");
            ExitCode::FAILURE
        }
    }
}

fn create() -> DemoResult<RemoveOnDrop> {
    match SharedMutex::<u64>::open(KEY) {
        Ok(old) => old.remove()?, // left by an earlier run that was killed
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("key {KEY} is taken by something else ({e})").into()),
    }
    let m = SharedMutex::create(KEY, 0u64)?;
    println!(
        "rust: created SharedMutex<u64> {KEY} (shmid {}, semid {})",
        m.shm_id(),
        m.sem_id()
    );
    Ok(RemoveOnDrop(m))
}

/// `$SHMSEM_PYTHON`; else the virtual environment `cargo test` made with `sysv_ipc`
/// (`target/interop-venv`, or under `$CARGO_TARGET_DIR`); else `python3`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SHMSEM_PYTHON") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("interop-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

fn run(n: u64) -> DemoResult<()> {
    let counter = create()?;
    let python = python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/interop.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args([KEY.to_string(), n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {}: {e} (set SHMSEM_PYTHON to a python with sysv_ipc, or run \
                 `cargo test --test interop` once: it makes target/interop-venv)",
                python.display()
            )
        })?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no pipe")?).lines();

    // Go once the script has opened the mutex, so that both really run at once.
    let Some(Ok(first)) = lines.next() else {
        let status = child.wait()?;
        return Err(format!(
            "the Python script ended before opening the mutex ({status}); does {} have \
             sysv_ipc? (see examples/interop.py)",
            python.display()
        )
        .into());
    };
    println!("{first}");
    for _ in 0..n {
        *counter.0.lock().map_err(Error::from)? += 1;
    }
    println!("rust: added {n}");
    for line in lines.map_while(Result::ok) {
        println!("{line}");
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the Python script failed: {status}").into());
    }
    let total = *counter.0.lock().map_err(Error::from)?;
    println!(
        "rust: counter = {total}, expected {} ({})",
        2 * n,
        verdict(total == 2 * n)
    );
    if total != 2 * n {
        return Err("lost updates".into());
    }
    println!("rust: removing the mutex");
    Ok(())
}

fn serve() -> DemoResult<()> {
    let counter = create()?;
    println!("run, in another terminal:  python3 examples/interop.py {KEY} 1000");
    println!("then press Enter here to see the counter and remove the mutex");
    std::io::stdin().read_line(&mut String::new())?;
    let total = *counter.0.lock().map_err(Error::from)?;
    println!("rust: counter = {total}; removing the mutex");
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "exact" } else { "WRONG" }
}

struct RemoveOnDrop(SharedMutex<u64>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("interop_host: removing the mutex: {e}");
        }
    }
}
