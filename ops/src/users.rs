//! Users and groups as the system's user database says (through NSS, so LDAP and SSSD accounts
//! count): the names behind a uid, the groups a user belongs to. The daemon decides who may
//! change which profile from these.

use std::ffi::{CStr, CString};

/// A user, as a peer of the daemon's socket or as this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The name (the uid in digits when the user database has none).
    pub name: String,
    /// The primary and supplementary groups, by name.
    pub groups: Vec<String>,
}

impl User {
    /// The user with `uid` and primary group `gid`, with every group the user database gives.
    pub fn from_ids(uid: u32, gid: u32) -> User {
        let name = user_name(uid).unwrap_or_else(|| uid.to_string());
        let mut groups: Vec<String> = group_ids(&name, gid)
            .into_iter()
            .map(|g| group_name(g).unwrap_or_else(|| g.to_string()))
            .collect();
        groups.sort();
        groups.dedup();
        User { uid, name, groups }
    }

    /// The user this process runs as.
    pub fn current() -> User {
        // SAFETY: plain system calls without arguments.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        User::from_ids(uid, gid)
    }

    /// Whether the user is in the group `name`.
    pub fn in_group(&self, name: &str) -> bool {
        self.groups.iter().any(|g| g == name)
    }
}

/// The name of the user `uid`.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: zeroed passwd is a valid out-parameter; the buffer outlives the call and the
    // returned pointers point into it.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned())
    }
}

/// The gid of the group `name`, if there is one.
pub fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: as in `user_name`.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
    }
}

/// The name of the group `gid`.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: as in `user_name`.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(grp.gr_name).to_string_lossy().into_owned())
    }
}

/// Every group of the user `name` whose primary group is `gid` (`getgrouplist`).
fn group_ids(name: &str, gid: u32) -> Vec<u32> {
    let Ok(c) = CString::new(name) else { return vec![gid] };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many and says how
        // many it needs when that is too few.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        if n > 65536 {
            return vec![gid];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root_and_in_its_own_group() {
        let root = User::from_ids(0, 0);
        assert_eq!(root.name, "root");
        assert!(root.in_group("root"), "{root:?}");
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-envctl"), None);
        // A uid nobody has still gets a name: its digits.
        assert_eq!(User::from_ids(4_000_000, 4_000_000).name, "4000000");
    }
}
