//! User and group names for uids and gids, from /etc/passwd and /etc/group.

use std::collections::HashMap;

/// User and group names from /etc/passwd and /etc/group (numbers when not found), each
/// file read once, when first needed.
#[derive(Default)]
pub(crate) struct Names {
    users: Option<HashMap<u32, String>>,
    groups: Option<HashMap<u32, String>>,
}

impl Names {
    pub(crate) fn user(&mut self, uid: u32) -> String {
        let users = self.users.get_or_insert_with(|| read_names("/etc/passwd"));
        users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
    }

    pub(crate) fn group(&mut self, gid: u32) -> String {
        let groups = self.groups.get_or_insert_with(|| read_names("/etc/group"));
        groups.get(&gid).cloned().unwrap_or_else(|| gid.to_string())
    }

    /// `root (uid 0), group root (gid 0)`.
    pub(crate) fn owner(&mut self, uid: u32, gid: u32) -> String {
        format!(
            "{} (uid {uid}), group {} (gid {gid})",
            self.user(uid),
            self.group(gid)
        )
    }
}

/// `name:x:id:...` lines.
fn read_names(path: &str) -> HashMap<u32, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            Some((id, name.to_string()))
        })
        .collect()
}
