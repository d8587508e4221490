//! A System V message queue, `msgsnd` / `msgrcv`. A message may hold at most `msgmax`
//! bytes (8192 by default), so bigger ones go as several; the writer sends from a
//! prepared `msgbuf` (no copy of its own, which favours msgq a little).

use std::time::Duration;

use shmsem_benchmarks::Res;
use shmsem_benchmarks::os::{check_rc, retry_eintr};

use crate::timing::timed;

/// A System V message queue, removed on drop.
struct MsgQueue(i32);

impl Drop for MsgQueue {
    fn drop(&mut self) {
        remove(self.0);
    }
}

/// Removes queue `id` (which wakes its waiters with `EIDRM`).
fn remove(id: i32) {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

/// The kernel's largest message text (`/proc/sys/kernel/msgmax`).
pub fn msgmax() -> usize {
    std::fs::read_to_string("/proc/sys/kernel/msgmax")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192)
}

pub fn run(size: usize, count: u64, writer_cpu: Option<usize>) -> Res<Duration> {
    // SAFETY: msgget takes plain integers.
    let id = check_rc("msgget", unsafe {
        libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600)
    })?;
    let mq = MsgQueue(id);
    let chunk = size.min(msgmax());
    // struct msgbuf: a long mtype (1), then the text.
    let header = size_of::<libc::c_long>();
    timed(
        writer_cpu,
        || {
            let mut msg = vec![0x5a_u8; header + chunk];
            msg[..header].copy_from_slice(&(1 as libc::c_long).to_ne_bytes());
            for i in 0..count {
                msg[header] = i as u8;
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk);
                    // SAFETY: `msg` holds the mtype and at least n bytes of text.
                    retry_eintr("msgsnd", || unsafe {
                        libc::msgsnd(mq.0, msg.as_ptr().cast(), n, 0)
                    })?;
                    left -= n;
                }
            }
            Ok(())
        },
        || remove(mq.0),
        || {
            let mut buf = vec![0u8; header + chunk];
            for i in 0..count {
                let mut got = 0;
                let mut first = None;
                while got < size {
                    // SAFETY: `buf` has room for the mtype and `chunk` bytes.
                    let n = retry_eintr("msgrcv", || unsafe {
                        libc::msgrcv(mq.0, buf.as_mut_ptr().cast(), chunk, 0, 0)
                    })?;
                    first.get_or_insert(buf[header]);
                    got += n as usize;
                }
                if got != size || first != Some(i as u8) {
                    return Err(format!("msgq message {i}: {got} bytes").into());
                }
            }
            Ok(())
        },
    )
}
