//! The few System V declarations that `libc` lacks, and small helpers around the calls.
//!
//! `libc` has no `semtimedop` and no `union semun`; both are declared here as glibc and
//! the Linux kernel define them. The layout is the same on x86-64 and aarch64: `semun` is a
//! pointer-sized union passed by value as semctl's fourth (variadic) argument, which both
//! ABIs pass exactly as they pass a pointer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libc::{c_int, c_ushort, size_t};

use crate::error::cvt;

/// `union semun` from semctl(2): the caller must declare it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union Semun {
    pub(crate) val: c_int,
    pub(crate) buf: *mut libc::semid_ds,
    pub(crate) array: *mut c_ushort,
}

unsafe extern "C" {
    /// semtimedop(2), exported by glibc since 2.3.3.
    pub(crate) fn semtimedop(
        semid: c_int,
        sops: *mut libc::sembuf,
        nsops: size_t,
        timeout: *const libc::timespec,
    ) -> c_int;
}

/// The most a single semaphore can hold on Linux (`SEMVMX`, a compile-time constant of the
/// kernel).
pub(crate) const SEMVMX: i32 = 32767;

/// A relative `timespec` for a `Duration`, saturating instead of overflowing.
pub(crate) fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// `semctl(IPC_STAT)` into a zeroed `semid_ds`; `Err(errno)` on failure.
pub(crate) fn sem_stat(semid: c_int) -> Result<libc::semid_ds, i32> {
    // SAFETY: semid_ds is plain data (integers), so all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    let arg = Semun { buf: &mut ds };
    // SAFETY: IPC_STAT writes one semid_ds through arg.buf, which points at `ds`, live and
    // writable for the whole call.
    cvt(unsafe { libc::semctl(semid, 0, libc::IPC_STAT, arg) }).map(|_| ds)
}

/// `shmctl(IPC_STAT)` into a zeroed `shmid_ds`; `Err(errno)` on failure.
pub(crate) fn shm_stat(shmid: c_int) -> Result<libc::shmid_ds, i32> {
    // SAFETY: shmid_ds is plain data (integers), so all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds through the pointer, which points at `ds`.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) }).map(|_| ds)
}

/// The time a kernel record keeps as seconds since the epoch (`time_t`); 0 or below
/// means "never".
pub(crate) fn system_time(secs: i64) -> Option<SystemTime> {
    (secs > 0).then(|| UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// `SHM_HUGE_SHIFT`: where shmget's flags carry log2 of the huge page size (0: the
/// system's default size). `libc` has `SHM_HUGETLB` but not these.
pub(crate) const SHM_HUGE_SHIFT: u32 = 26;
/// `SHM_HUGE_MASK`: that field's mask (6 bits, after the shift).
pub(crate) const SHM_HUGE_MASK: u32 = 0x3f;

/// `struct shminfo64` of the kernel (glibc's `struct shminfo`): what `shmctl(IPC_INFO)`
/// writes on 64-bit Linux, nine `unsigned long`s (64 bits on the targets shmsem
/// supports). `libc` does not declare it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ShmInfo64 {
    pub(crate) shmmax: u64,
    pub(crate) shmmin: u64,
    pub(crate) shmmni: u64,
    pub(crate) shmseg: u64,
    pub(crate) shmall: u64,
    unused: [u64; 4],
}

/// `struct shm_info`: what `shmctl(SHM_INFO)` writes (usage, not limits; `unsigned long`s
/// are 64 bits here too).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct ShmUsage {
    /// Segments that exist now.
    pub(crate) used_ids: c_int,
    /// Pages allocated to segments in total (what `shmall` bounds).
    pub(crate) shm_tot: u64,
    shm_rss: u64,
    shm_swp: u64,
    swap_attempts: u64,
    swap_successes: u64,
}

/// `shmctl(SHM_INFO)`, a Linux command `libc` does not name.
const SHM_INFO: c_int = 14;

/// `shmctl(0, IPC_INFO)`: the system's shared-memory limits.
pub(crate) fn shm_ipc_info() -> Result<ShmInfo64, i32> {
    let mut info = ShmInfo64::default();
    // SAFETY: IPC_INFO writes one struct shminfo64 through the pointer (passed as the
    // shmid_ds pointer the prototype names, as the kernel's ABI has it); `info` is that
    // struct, live and writable for the call.
    cvt(unsafe { libc::shmctl(0, libc::IPC_INFO, (&raw mut info).cast()) }).map(|_| info)
}

/// `shmctl(0, SHM_INFO)`: how much of the limits is in use.
pub(crate) fn shm_usage() -> Result<ShmUsage, i32> {
    let mut usage = ShmUsage::default();
    // SAFETY: SHM_INFO writes one struct shm_info through the pointer; `usage` is one.
    cvt(unsafe { libc::shmctl(0, SHM_INFO, (&raw mut usage).cast()) }).map(|_| usage)
}

/// `semctl(0, 0, IPC_INFO)` (`SEM_INFO` with `usage`): the system's semaphore limits, or
/// with `SEM_INFO` the same struct whose `semusz` is the number of sets and `semaem` the
/// number of semaphores in use.
pub(crate) fn sem_ipc_info(usage: bool) -> Result<libc::seminfo, i32> {
    // SAFETY: seminfo is ten ints, so all-zero is a valid value.
    let mut info: libc::seminfo = unsafe { std::mem::zeroed() };
    let cmd = if usage {
        libc::SEM_INFO
    } else {
        libc::IPC_INFO
    };
    // The kernel reads the __buf member of semun as a struct seminfo pointer.
    let arg = Semun {
        buf: (&raw mut info).cast(),
    };
    // SAFETY: IPC_INFO/SEM_INFO write one struct seminfo through arg.buf, which points at
    // `info`, live and writable for the call.
    cvt(unsafe { libc::semctl(0, 0, cmd, arg) }).map(|_| info)
}

/// `shmctl(IPC_SET)`: sets the segment's owner, group and permission bits.
pub(crate) fn shm_set(shmid: c_int, uid: u32, gid: u32, mode: u32) -> Result<(), i32> {
    // SAFETY: shmid_ds is plain data (integers), so all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = mode as _;
    // SAFETY: IPC_SET reads one shmid_ds (only shm_perm.uid, gid and mode) through the
    // pointer, which points at `ds`.
    cvt(unsafe { libc::shmctl(shmid, libc::IPC_SET, &mut ds) }).map(drop)
}

/// `semctl(IPC_SET)`: sets the set's owner, group and permission bits.
pub(crate) fn sem_set(semid: c_int, uid: u32, gid: u32, mode: u32) -> Result<(), i32> {
    // SAFETY: semid_ds is plain data (integers), so all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = mode as _;
    let arg = Semun { buf: &mut ds };
    // SAFETY: IPC_SET reads one semid_ds (only sem_perm.uid, gid and mode) through
    // arg.buf, which points at `ds`, live for the call.
    cvt(unsafe { libc::semctl(semid, 0, libc::IPC_SET, arg) }).map(drop)
}

/// The system's page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}
