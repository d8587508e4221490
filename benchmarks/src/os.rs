//! System-call helpers: retrying on `EINTR`, turning the two ways C calls report errors
//! (-1 and `errno`, or an error number returned) into [`Res`], and pipes.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::Res;

/// Calls `call` until it does not fail with `EINTR`. A negative result is a failure
/// (`errno` says which): an error `what: errno`. Returns the first non-negative result
/// (a count for `read`/`msgrcv`, 0 for most calls).
#[inline]
pub fn retry_eintr<T>(what: &str, mut call: impl FnMut() -> T) -> Res<T>
where
    T: Copy + Default + PartialOrd,
{
    loop {
        let rc = call();
        if rc >= T::default() {
            return Ok(rc);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(format!("{what}: {err}").into());
        }
    }
}

/// `rc`, the return value of a call that returns its error number (the pthread
/// functions), as a result: 0 is success, else an error `what: that error`.
pub fn errno_rc(what: &str, rc: libc::c_int) -> Res<()> {
    match rc {
        0 => Ok(()),
        e => Err(format!("{what}: {}", std::io::Error::from_raw_os_error(e)).into()),
    }
}

/// `-1`-and-`errno` calls that do not retry: 0 (or more) is success, else `what: errno`.
pub fn check_rc(what: &str, rc: libc::c_int) -> Res<libc::c_int> {
    if rc < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(rc)
}

/// A pipe (read end, write end), both close-on-exec.
pub fn pipe() -> Res<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the local array.
    check_rc("pipe2", unsafe {
        libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC)
    })?;
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `poll` entries asking whether each of `fds` is readable.
pub fn readable_polls(fds: &[std::os::fd::RawFd]) -> Vec<libc::pollfd> {
    fds.iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect()
}
