//! `rm KEY [--force]`: removes one shmsem pair and says what went.

use std::fmt::Write as _;

use shmsem::header::ObjectKind;
use shmsem::inspect;

use crate::Failure;
use crate::cli::RmArgs;
use crate::model::RmJson;

pub(crate) fn rm(args: &RmArgs, json: bool, out: &mut String) -> Result<(), Failure> {
    let key = args.key;
    let removed = inspect::remove(key, args.force).map_err(|e| {
        let mut f = Failure::from(e);
        f.message = f.message.replace("force removes", "--force removes");
        f
    })?;
    if json {
        let model = RmJson {
            key: key.to_string(),
            kind: removed.kind.map(ObjectKind::name),
            shmid: removed.shm_id,
            semid: removed.sem_id,
            attaches: removed.nattch,
        };
        crate::json_line(out, &model);
        return Ok(());
    }
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
    Ok(())
}
