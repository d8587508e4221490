//! A process is `kill -9`ed in the middle of an update, holding a [`SharedMutex`]; the
//! next process to lock is told, repairs the data, clears the poison and carries on.
//!
//! ```text
//! cargo run --example crash_recovery
//! ```
//!
//! The shared value is two accounts that always add up to 100. A transfer takes money out
//! of one account and then puts it into the other: two steps, so a process that dies in
//! between leaves the total short. What happens:
//!
//! 1. the parent creates the mutex; a child process locks it, takes 30 out of account A,
//!    and tells the parent (through its stdout) that it is inside;
//! 2. the parent kills it with SIGKILL, half-way through the transfer;
//! 3. the kernel gives the semaphore back (`SEM_UNDO`): the parent's `lock()` does not
//!    hang, but returns `Err(LockError::Poisoned(..))` with the dead child's pid, and the
//!    guard;
//! 4. the parent repairs the accounts through that guard, calls `clear_poison`, and the
//!    next `lock()` is an ordinary one.
//!
//! The mutex is removed at the end (also on failure): `ipcs -m -s` shows nothing left.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitCode, Stdio};

use shmsem::{Error, ErrorKind, Key, LockError, SharedMutex};

/// Two accounts whose sum is always [`TOTAL`] (except in the middle of a transfer).
#[repr(C)]
#[derive(Clone, Copy, Debug, shmsem::Pod, shmsem::Zeroable)]
#[bytemuck(crate = "shmsem::bytemuck")]
struct Accounts {
    a: u64,
    b: u64,
    transfers: u64,
}

const TOTAL: u64 = 100;
const CHILD: &str = "--child";

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [flag, key] if flag == CHILD => child(key),
        [] => parent(),
        _ => Err("usage: crash_recovery (no arguments)".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash_recovery: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> DemoResult<()> {
    let key = Key::ftok(std::env::current_exe()?, b'C')?;
    remove_leftover(key)?;
    let accounts = Accounts {
        a: TOTAL,
        b: 0,
        transfers: 0,
    };
    let m = SharedMutex::create(key, accounts)?;
    println!("parent: created the mutex {key}: {}", show(&accounts));
    let result = crash_and_recover(&m, key);
    // Removed also when the demo failed: `ipcs -m -s` shows nothing left.
    println!("parent: removing the mutex");
    let removed = m.remove();
    result?;
    Ok(removed?)
}

/// Steps 1 to 4 on the mutex `m` (under `key`), and one more, ordinary, transfer.
fn crash_and_recover(m: &SharedMutex<Accounts>, key: Key) -> DemoResult<()> {
    // 1. The child locks and starts a transfer.
    let mut child = Command::new(std::env::current_exe()?)
        .args([CHILD, &key.as_raw().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().ok_or("no pipe to the child")?);
    let mut line = String::new();
    while !line.contains("inside") {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the child exited before it was inside".into());
        }
        print!("{line}");
    }

    // 2. kill -9, mid-update.
    println!("parent: kill -9 {pid} while it holds the lock");
    child.kill()?; // SIGKILL
    let status = child.wait()?;
    println!("parent: child {pid} ended: {status}");
    println!(
        "parent: is_poisoned() = {} (the header still names {pid} as the holder)",
        m.is_poisoned()
    );

    // 3. lock(): the kernel gave the semaphore back, and the lock reports the death.
    let mut guard = match m.lock() {
        Ok(_) => return Err("expected the lock to be poisoned".into()),
        Err(LockError::Poisoned(poisoned)) => {
            let owner = poisoned.owner_pid();
            println!(
                "parent: lock() -> Poisoned: owner_pid = {}; the data may be half-updated",
                owner.map_or("?".into(), |p| p.to_string())
            );
            if owner != Some(pid as i32) {
                return Err(format!("poisoned by {owner:?}, expected {pid}").into());
            }
            poisoned.into_inner()
        }
        Err(LockError::Failed(e)) => return Err(e.into()),
    };

    // 4. Repair, clear, carry on.
    println!("parent: found {}", show(&guard));
    let missing = TOTAL - (guard.a + guard.b);
    guard.a += missing; // roll the broken transfer back
    println!(
        "parent: repaired: gave {missing} back to A: {}",
        show(&guard)
    );
    m.clear_poison();
    drop(guard);
    println!(
        "parent: clear_poison(); is_poisoned() = {}",
        m.is_poisoned()
    );

    let mut g = m.lock().map_err(Error::from)?;
    println!("parent: lock() -> Ok (not poisoned)");
    transfer(&mut g, 30, || {});
    println!("parent: transferred 30 under the lock: {}", show(&g));
    Ok(())
}

/// `crash_recovery --child KEY`: lock, start a transfer, tell the parent, wait to die.
fn child(key: &str) -> DemoResult<()> {
    let m = SharedMutex::<Accounts>::open(Key::from_raw(key.parse()?))?;
    let me = std::process::id();
    let mut g = m.lock().map_err(Error::from)?;
    println!("child {me}: locked: {}", show(&g));
    transfer(&mut g, 30, || {
        // Between the two steps: tell the parent, then wait (it kills us here).
        println!("child {me}: inside, took 30 out of A, not yet into B");
        let _ = std::io::stdout().flush();
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    });
    Err("the parent did not kill this child".into())
}

/// Moves `amount` from A to B in two steps, running `between` in the middle.
fn transfer(acc: &mut Accounts, amount: u64, between: impl FnOnce()) {
    acc.a -= amount;
    between();
    acc.b += amount;
    acc.transfers += 1;
}

fn show(acc: &Accounts) -> String {
    let sum = acc.a + acc.b;
    let state = if sum == TOTAL { "ok" } else { "BROKEN" };
    format!(
        "A = {}, B = {}, sum = {sum} ({state}), {} transfer(s)",
        acc.a, acc.b, acc.transfers
    )
}

/// Removes a mutex of ours left by an earlier run that was killed.
fn remove_leftover(key: Key) -> DemoResult<()> {
    match SharedMutex::<Accounts>::open(key) {
        Ok(old) => Ok(old.remove()?),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("key {key} is taken by something else ({e}); see ipcs -m -s").into()),
    }
}
