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
