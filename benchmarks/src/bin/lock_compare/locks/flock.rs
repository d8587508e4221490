//! `flock(LOCK_EX)` / `flock(LOCK_UN)` on a temporary file (removed at the end); the
//! record is in an anonymous shared mapping.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::os::retry_eintr;

use super::cell::{CellRef, InPages};
use super::{Handle, Lock};
use crate::record::Record;

/// Every handle opens the file itself: an flock belongs to an open file description, so
/// threads sharing one descriptor would not exclude each other.
pub struct Flock {
    path: PathBuf,
    pages: InPages<()>,
}

impl Flock {
    pub fn create() -> Res<Self> {
        let pages = InPages::new()?;
        let path = std::env::temp_dir().join(format!("shmsem-compare-{}.lock", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Flock { path, pages })
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            let program = shmsem_benchmarks::program();
            eprintln!("{program}: removing {}: {e}", self.path.display());
        }
    }
}

pub struct FlockHandle<'a> {
    file: File,
    cell: CellRef<'a, ()>,
}

impl Lock for Flock {
    type Handle<'a> = FlockHandle<'a>;

    fn handle(&self) -> Res<FlockHandle<'_>> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| format!("opening {}: {e}", self.path.display()))?;
        Ok(FlockHandle {
            file,
            cell: self.pages.cell(),
        })
    }
}

impl Handle for FlockHandle<'_> {
    fn with_lock<R>(&mut self, f: impl FnOnce(&mut Record) -> R) -> Res<R> {
        let fd = self.file.as_raw_fd();
        // SAFETY: flock on a descriptor we own.
        retry_eintr("flock(LOCK_EX)", || unsafe {
            libc::flock(fd, libc::LOCK_EX)
        })?;
        // SAFETY: the flock is held, so this is the only access to the record.
        let r = f(unsafe { &mut *self.cell.record() });
        // SAFETY: as above.
        retry_eintr("flock(LOCK_UN)", || unsafe {
            libc::flock(fd, libc::LOCK_UN)
        })?;
        Ok(r)
    }
}
