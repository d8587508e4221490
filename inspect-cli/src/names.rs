//! User and group names for uids and gids, through the system's lookup
//! (`getpwuid_r`/`getgrgid_r`: /etc/passwd, LDAP, sssd, systemd-userdb, whatever NSS is
//! set up with), each id asked once.

use std::collections::HashMap;
use std::ffi::CStr;

/// Names of users and groups; `None` for an id the system has no name for.
#[derive(Default)]
pub(crate) struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Names {
    pub(crate) fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| user_name(uid))
            .clone()
    }

    pub(crate) fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| group_name(gid))
            .clone()
    }
}

/// A name, or the number when there is none.
pub(crate) fn or_number(name: Option<&str>, id: u32) -> String {
    name.map_or_else(|| id.to_string(), str::to_string)
}

/// The largest buffer tried for one entry (entries with thousands of group members are
/// long; beyond this the id is shown as a number).
const MAX_BUFFER: usize = 1 << 20;

/// Calls a `get*_r` function with a growing buffer until it fits: `Some(name)`, or `None`
/// when there is no entry or the lookup fails.
fn lookup(mut call: impl FnMut(&mut [u8]) -> (i32, Option<String>)) -> Option<String> {
    let mut buf = vec![0u8; 1024];
    loop {
        match call(&mut buf) {
            (0, name) => return name,
            (libc::EINTR, _) => {}
            (libc::ERANGE, _) if buf.len() < MAX_BUFFER => buf.resize(buf.len() * 2, 0),
            _ => return None,
        }
    }
}

fn user_name(uid: u32) -> Option<String> {
    lookup(|buf| {
        // SAFETY: passwd is plain data (integers and pointers); all-zero is a valid value
        // for getpwuid_r to fill in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local or to `buf`, whose length is passed;
        // the strings getpwuid_r stores point into `buf`.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
            return (rc, None);
        }
        // SAFETY: on success pw_name is a NUL-terminated string inside `buf`, which is
        // alive here.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        (0, Some(name.to_string_lossy().into_owned()))
    })
}

fn group_name(gid: u32) -> Option<String> {
    lookup(|buf| {
        // SAFETY: group is plain data; all-zero is a valid value for getgrgid_r to fill.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in user_name.
        let rc = unsafe {
            libc::getgrgid_r(
                gid,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 || found.is_null() || grp.gr_name.is_null() {
            return (rc, None);
        }
        // SAFETY: as in user_name.
        let name = unsafe { CStr::from_ptr(grp.gr_name) };
        (0, Some(name.to_string_lossy().into_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_an_unused_id_has_none() {
        let mut names = Names::default();
        assert_eq!(names.user(0).as_deref(), Some("root"));
        assert_eq!(names.group(0).as_deref(), Some("root"));
        // Not a valid id anywhere ((uid_t)-2 is reserved as "nobody" on some systems,
        // (uid_t)-1 means "no change" to the kernel and is never a user).
        assert_eq!(names.user(u32::MAX), None);
        assert_eq!(or_number(None, 4242), "4242");
    }
}
