//! `limits`: the system's System V limits (IPC_INFO), what shmsem's "raise kernel.shmmax"
//! errors refer to.

use std::fmt::Write as _;

use crate::Failure;

pub(crate) fn limits(json: bool, out: &mut String) -> Result<(), Failure> {
    let shm = shmsem::shm_limits()?;
    let sem = shmsem::sem_limits()?;
    if json {
        // Field names: docs/INSPECT.md ("limits").
        let model = serde_json::json!({
            "shmmax": shm.shmmax, "shmmin": shm.shmmin, "shmmni": shm.shmmni,
            "shmseg": shm.shmseg, "shmall_pages": shm.shmall,
            "shmall_bytes": shm.shmall_bytes(), "page_size": shm.page_size,
            "semmsl": sem.semmsl, "semmns": sem.semmns, "semopm": sem.semopm,
            "semmni": sem.semmni, "semvmx": sem.semvmx, "semaem": sem.semaem,
        });
        crate::json_line(out, &model);
        return Ok(());
    }
    let rows: [(&str, String, &str); 10] = [
        (
            "shmmax",
            bytes(shm.shmmax),
            "largest segment (kernel.shmmax)",
        ),
        (
            "shmall",
            format!("{} pages ({})", shm.shmall, bytes(shm.shmall_bytes())),
            "all segments together (kernel.shmall)",
        ),
        (
            "shmmni",
            shm.shmmni.to_string(),
            "segments on the system (kernel.shmmni)",
        ),
        ("page size", bytes(shm.page_size), "what shmall counts in"),
        (
            "semmsl",
            sem.semmsl.to_string(),
            "semaphores per set (kernel.sem, 1st)",
        ),
        (
            "semmns",
            sem.semmns.to_string(),
            "semaphores on the system (kernel.sem, 2nd)",
        ),
        (
            "semopm",
            sem.semopm.to_string(),
            "operations per semop (kernel.sem, 3rd)",
        ),
        (
            "semmni",
            sem.semmni.to_string(),
            "semaphore sets on the system (kernel.sem, 4th)",
        ),
        ("semvmx", sem.semvmx.to_string(), "largest semaphore value"),
        (
            "semaem",
            sem.semaem.to_string(),
            "largest SEM_UNDO adjustment",
        ),
    ];
    for (name, value, what) in rows {
        writeln!(out, "{name:<10} {value:>28}  {what}").ok();
    }
    writeln!(
        out,
        "(a shmsem mutex, rwlock or queue uses one set of 513-515 semaphores, a condvar 768)"
    )
    .ok();
    Ok(())
}

/// A byte count with its binary unit when it is a whole number of one.
fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (1 << 50, "PiB"),
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    match UNITS.iter().find(|&&(u, _)| n >= u && n % u == 0) {
        Some(&(u, name)) => format!("{} {name}", n / u),
        None => format!("{n} bytes"),
    }
}
