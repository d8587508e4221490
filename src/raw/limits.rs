//! The system's System V limits (`IPC_INFO`): [`shm_limits`] and [`sem_limits`], and the
//! words that turn a limit error (`EINVAL`, `ENOSPC`, `ENOMEM`, `E2BIG` from a create or a
//! `semop`) into a message that names the limit and the sysctl that raises it.

use crate::error::{Error, ErrorKind, Result, Target};
use crate::raw::key::Key;
use crate::raw::shm_options::HugePageSize;
use crate::raw::sys;

/// The system's shared-memory limits, as `shmctl(IPC_INFO)` reports them (and `ipcs -l`
/// prints them). Each is per IPC namespace; root raises them with `sysctl`.
///
/// ```
/// let limits = shmsem::shm_limits()?;
/// assert!(limits.shmmax >= 1 && limits.shmmni >= 1);
/// println!("largest segment: {} bytes (kernel.shmmax)", limits.shmmax);
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShmLimits {
    /// `SHMMAX`: the largest segment, in bytes (`kernel.shmmax`).
    pub shmmax: u64,
    /// `SHMMIN`: the smallest segment, in bytes (1 on Linux).
    pub shmmin: u64,
    /// `SHMMNI`: how many segments the system holds at once (`kernel.shmmni`).
    pub shmmni: u64,
    /// `SHMSEG`: how many segments one process may attach (Linux does not enforce it;
    /// it reports `SHMMNI`).
    pub shmseg: u64,
    /// `SHMALL`: all segments together, in pages (`kernel.shmall`); see
    /// [`shmall_bytes`](ShmLimits::shmall_bytes).
    pub shmall: u64,
    /// The page size `shmall` counts in.
    pub page_size: u64,
}

impl ShmLimits {
    /// `shmall` in bytes (saturating).
    pub fn shmall_bytes(&self) -> u64 {
        self.shmall.saturating_mul(self.page_size)
    }
}

/// The system's semaphore limits, as `semctl(IPC_INFO)` reports them (and `ipcs -l`
/// prints them). `sysctl kernel.sem` sets the first four, in the order
/// `SEMMSL SEMMNS SEMOPM SEMMNI`; the others are fixed in the kernel.
///
/// ```
/// let limits = shmsem::sem_limits()?;
/// assert_eq!(limits.semvmx, 32767);
/// println!("at most {} semaphores per set (kernel.sem, first field)", limits.semmsl);
/// # Ok::<(), shmsem::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemLimits {
    /// `SEMMSL`: the most semaphores in one set.
    pub semmsl: u32,
    /// `SEMMNS`: the most semaphores in all sets together.
    pub semmns: u32,
    /// `SEMOPM`: the most operations in one `semop` call.
    pub semopm: u32,
    /// `SEMMNI`: the most semaphore sets.
    pub semmni: u32,
    /// `SEMVMX`: the largest value a semaphore holds (32767).
    pub semvmx: u32,
    /// `SEMAEM`: the largest adjustment `SEM_UNDO` records per semaphore and process.
    pub semaem: u32,
}

fn no_target() -> Target {
    Target {
        key: Key::PRIVATE,
        id: None,
    }
}

/// The system's shared-memory limits (`shmctl(IPC_INFO)`), for this process's IPC
/// namespace.
///
/// # Errors
/// Only if the kernel refuses `IPC_INFO` (`Other`, with its errno).
pub fn shm_limits() -> Result<ShmLimits> {
    let info = sys::shm_ipc_info().map_err(|errno| {
        Error::sysv("shmctl(IPC_INFO)", no_target(), errno, ErrorKind::Other).in_call("shm_limits")
    })?;
    Ok(ShmLimits {
        shmmax: info.shmmax,
        shmmin: info.shmmin,
        shmmni: info.shmmni,
        shmseg: info.shmseg,
        shmall: info.shmall,
        page_size: sys::page_size() as u64,
    })
}

/// The system's semaphore limits (`semctl(IPC_INFO)`), for this process's IPC namespace.
///
/// # Errors
/// Only if the kernel refuses `IPC_INFO` (`Other`, with its errno).
pub fn sem_limits() -> Result<SemLimits> {
    let info = sys::sem_ipc_info(false).map_err(|errno| {
        Error::sysv("semctl(IPC_INFO)", no_target(), errno, ErrorKind::Other).in_call("sem_limits")
    })?;
    let n = |v: libc::c_int| v.max(0) as u32;
    Ok(SemLimits {
        semmsl: n(info.semmsl),
        semmns: n(info.semmns),
        semopm: n(info.semopm),
        semmni: n(info.semmni),
        semvmx: n(info.semvmx),
        semaem: n(info.semaem),
    })
}

/// A size for people: `64 GiB` when it is a whole number of a binary unit, otherwise the
/// bytes with an approximation (`1610612737 bytes (1.5 GiB)`).
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let exp = ((63 - bytes.leading_zeros()) / 10).min(6) as usize;
    let unit = 1u64 << (10 * exp);
    let name = UNITS[exp - 1];
    if bytes % unit == 0 {
        format!("{} {name}", bytes / unit)
    } else {
        format!("{bytes} bytes ({:.1} {name})", bytes as f64 / unit as f64)
    }
}

/// A huge page pool as /sys/kernel/mm/hugepages lists it.
pub(crate) struct HugePool {
    pub(crate) page_bytes: u64,
    pub(crate) total: u64,
    pub(crate) free: u64,
    pub(crate) reserved: u64,
}

/// The pool of huge pages of `size`, if the system has one (the default size when
/// `size` is [`HugePageSize::DEFAULT`]).
pub(crate) fn huge_pool(size: HugePageSize) -> Option<HugePool> {
    let page_bytes = match size.bytes() {
        Some(b) => b as u64,
        None => default_huge_page_bytes()?,
    };
    let dir = format!("/sys/kernel/mm/hugepages/hugepages-{}kB", page_bytes / 1024);
    let read = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("{dir}/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    Some(HugePool {
        page_bytes,
        total: read("nr_hugepages")?,
        free: read("free_hugepages")?,
        reserved: read("resv_hugepages")?,
    })
}

/// `Hugepagesize` from /proc/meminfo, in bytes.
fn default_huge_page_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("Hugepagesize:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What a failed exclusive `shmget` of `size` bytes means, in words, when the errno is
/// one of the limits (or, for huge pages, the pool); `None` leaves the kernel's text.
pub(crate) fn explain_shmget(
    errno: i32,
    size: usize,
    huge: Option<HugePageSize>,
) -> Option<(ErrorKind, String)> {
    let size = size as u64;
    let limits = shm_limits().ok();
    match errno {
        libc::EINVAL => {
            let l = limits?;
            if size > l.shmmax {
                Some((
                    ErrorKind::LimitReached,
                    format!(
                        "a segment of {} is above this system's shmmax of {}; raise \
                         kernel.shmmax (sysctl -w kernel.shmmax=BYTES) or ask for less",
                        format_size(size),
                        format_size(l.shmmax)
                    ),
                ))
            } else if size < l.shmmin {
                Some((
                    ErrorKind::InvalidInput,
                    format!(
                        "a segment of {size} bytes is below this system's shmmin of {} bytes",
                        l.shmmin
                    ),
                ))
            } else {
                // Within the limits: the page size itself was refused.
                huge.map(|h| {
                    let why = format!(
                        "this system has no huge pages of {} (the sizes it has are the \
                         directories of /sys/kernel/mm/hugepages)",
                        h.describe()
                    );
                    (ErrorKind::InvalidInput, why)
                })
            }
        }
        libc::ENOSPC => {
            let l = limits?;
            let usage = sys::shm_usage().ok();
            if usage.is_some_and(|u| u.used_ids as u64 >= l.shmmni) {
                Some((
                    ErrorKind::LimitReached,
                    format!(
                        "all {} segments this system allows exist (kernel.shmmni); remove \
                         unused ones (ipcs -m, ipcrm) or raise kernel.shmmni",
                        l.shmmni
                    ),
                ))
            } else {
                let pages = size.div_ceil(l.page_size.max(1));
                let used = usage.map(|u| u.shm_tot);
                Some((
                    ErrorKind::LimitReached,
                    format!(
                        "{} more ({pages} pages) would take all segments together past this \
                         system's shmall of {} pages ({}{}); remove unused segments or raise \
                         kernel.shmall",
                        format_size(size),
                        l.shmall,
                        format_size(l.shmall_bytes()),
                        used.map(|u| format!(", {u} in use")).unwrap_or_default()
                    ),
                ))
            }
        }
        libc::ENOMEM => match huge {
            Some(h) => Some((ErrorKind::LimitReached, no_huge_pages(size, h))),
            None => Some((
                ErrorKind::LimitReached,
                format!(
                    "the kernel could not reserve {} for the segment (out of memory, or \
                     vm.overcommit_memory=2 accounting; SegmentOptions::no_reserve skips the \
                     reservation)",
                    format_size(size)
                ),
            )),
        },
        libc::EPERM if huge.is_some() => Some((
            ErrorKind::PermissionDenied,
            format!(
                "huge-page segments (SHM_HUGETLB) need CAP_IPC_LOCK, membership of the group \
                 vm.hugetlb_shm_group names, or an RLIMIT_MEMLOCK (ulimit -l) of at least {}",
                format_size(size)
            ),
        )),
        _ => None,
    }
}

/// The message for a huge-page segment the pool cannot back.
fn no_huge_pages(size: u64, h: HugePageSize) -> String {
    match huge_pool(h) {
        Some(pool) => {
            let needed = size.div_ceil(pool.page_bytes);
            let page = format_size(pool.page_bytes);
            format!(
                "the kernel has no huge pages to give: {} needs {needed} pages of {page}, and \
                 the pool has {} free ({} of them reserved) of {} (vm.nr_hugepages); reserve \
                 more as root (echo N > /sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages)",
                format_size(size),
                pool.free,
                pool.reserved,
                pool.total,
                pool.page_bytes / 1024
            )
        }
        None => format!(
            "the kernel has no huge pages of {} to give (no pool under /sys/kernel/mm/hugepages)",
            h.describe()
        ),
    }
}

/// What a failed exclusive `semget` of `nsems` semaphores means, in words.
pub(crate) fn explain_semget(errno: i32, nsems: usize) -> Option<(ErrorKind, String)> {
    let l = sem_limits().ok()?;
    match errno {
        libc::EINVAL if nsems > l.semmsl as usize => Some((
            ErrorKind::LimitReached,
            format!(
                "a set of {nsems} semaphores is above this system's semmsl of {}; raise the \
                 first field of kernel.sem (SEMMSL SEMMNS SEMOPM SEMMNI)",
                l.semmsl
            ),
        )),
        libc::ENOSPC => {
            let usage = sys::sem_ipc_info(true).ok();
            let (sets, sems) = usage.map_or((0, 0), |u| (u.semusz.max(0), u.semaem.max(0)));
            if sets as u32 >= l.semmni {
                Some((
                    ErrorKind::LimitReached,
                    format!(
                        "all {} semaphore sets this system allows exist (semmni, the fourth \
                         field of kernel.sem); remove unused ones (ipcs -s, ipcrm) or raise it",
                        l.semmni
                    ),
                ))
            } else {
                Some((
                    ErrorKind::LimitReached,
                    format!(
                        "{nsems} more semaphores would take all sets together past this \
                         system's semmns of {} ({sems} in use); raise the second field of \
                         kernel.sem",
                        l.semmns
                    ),
                ))
            }
        }
        _ => None,
    }
}

/// What `E2BIG` from a `semop` of `nops` operations means, in words.
pub(crate) fn explain_semop_e2big(nops: usize) -> String {
    match sem_limits() {
        Ok(l) => format!(
            "{nops} operations in one call are above this system's semopm of {}; raise the \
             third field of kernel.sem or split the call",
            l.semopm
        ),
        Err(_) => format!("{nops} operations in one call are above this system's semopm"),
    }
}

#[cfg(test)]
mod tests {
    use super::format_size;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(format_size(0), "0 bytes");
        assert_eq!(format_size(1023), "1023 bytes");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(64 << 30), "64 GiB");
        assert_eq!(format_size(32 << 20), "32 MiB");
        assert_eq!(format_size(3 << 29), "1610612736 bytes (1.5 GiB)");
        assert_eq!(
            format_size(u64::MAX),
            "18446744073709551615 bytes (16.0 EiB)"
        );
    }
}
