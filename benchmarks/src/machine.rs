//! The machine: what the tables name it by (CPUs, CPU model, kernel), and pinning a
//! process to one CPU.

use crate::Res;

/// CPUs this process may run on (0 if unknown).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The line every benchmark prints first: `machine: N CPUs, <kernel>, <CPU model>`.
pub fn headline() -> String {
    format!("machine: {} CPUs, {}, {}", cpus(), kernel(), cpu_model())
}

/// The CPU's model name from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The kernel: `uname`'s system name, release and machine, e.g. `Linux 6.18.4 x86_64`.
pub fn kernel() -> String {
    // SAFETY: uname fills the struct; the fields are NUL-terminated strings.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            let s = |f: &[libc::c_char]| {
                std::ffi::CStr::from_ptr(f.as_ptr())
                    .to_string_lossy()
                    .into_owned()
            };
            format!("{} {} {}", s(&u.sysname), s(&u.release), s(&u.machine))
        } else {
            "unknown kernel".into()
        }
    }
}

/// Pins the calling process to `cpu`.
pub fn pin(cpu: usize) -> Res<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!("CPU {cpu} out of range").into());
    }
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes a bit below CPU_SETSIZE (checked) into the local set;
    // sched_setaffinity reads the set.
    let rc = unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(format!("pinning to CPU {cpu}: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}
