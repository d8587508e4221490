//! Byte streams between the two processes: a pipe (`pipe2`, default 64 KiB buffer) and a
//! socket pair (`socketpair(AF_UNIX, SOCK_STREAM)`), `write_all` / `read_exact` per
//! message.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::os::{check_rc, pipe};

use crate::timing::{check, send_all, timed};

/// Through a pipe.
pub fn run_pipe(size: usize, count: u64, writer_cpu: Option<usize>) -> Res<Duration> {
    let (r, w) = pipe()?;
    run(r, w, size, count, writer_cpu)
}

/// Through a Unix stream socket pair.
pub fn run_socketpair(size: usize, count: u64, writer_cpu: Option<usize>) -> Res<Duration> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the local array.
    check_rc("socketpair", unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both descriptors are fresh and ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    run(r, w, size, count, writer_cpu)
}

/// Messages from `w` (the writer's, closed here once it is forked) to `r`.
fn run(r: OwnedFd, w: OwnedFd, size: usize, count: u64, cpu: Option<usize>) -> Res<Duration> {
    timed(
        cpu,
        move || {
            let mut out = File::from(w);
            send_all(size, count, |msg| Ok(out.write_all(msg)?))
        },
        || {},
        move || {
            let mut input = File::from(r);
            let mut buf = vec![0u8; size];
            for i in 0..count {
                input.read_exact(&mut buf)?;
                check(i, &buf, size)?;
            }
            Ok(())
        },
    )
}
