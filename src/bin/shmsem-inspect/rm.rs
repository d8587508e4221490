//! `rm KEY [--force]`: removes one shmsem pair and says what went.

use std::fmt::Write as _;
use std::process::ExitCode;

use shmsem::header::ObjectKind;
use shmsem::inspect;

use crate::Failure;
use crate::args::{is_help, parse_public_key, usage};

pub(crate) fn rm(rest: &[String], out: &mut String) -> Result<ExitCode, Failure> {
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
