//! Dropping root after binding privileged ports: the daemon binds as root (or with
//! `CAP_NET_BIND_SERVICE`), then runs every session as an unprivileged user.

use std::ffi::CString;

/// Why privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivilegeError {
    /// The user does not exist.
    #[error("user `{0}` does not exist")]
    NoUser(String),
    /// A system call failed.
    #[error("cannot switch to user `{user}`: {call} failed: {source}")]
    Call {
        /// The user.
        user: String,
        /// Which call.
        call: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and primary gid of `user`.
pub fn lookup_user(user: &str) -> Result<(u32, u32), PrivilegeError> {
    let name = CString::new(user).map_err(|_| PrivilegeError::NoUser(user.into()))?;
    // SAFETY: getpwnam returns null or a pointer to static storage valid until the next call;
    // we copy the two fields we need before any other libc call.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(PrivilegeError::NoUser(user.into()));
        }
        Ok(((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// Switches the process to `user` (its uid, primary gid, no supplementary groups).
/// Does nothing unless running as root. Returns whether it switched.
pub fn drop_privileges(user: &str) -> Result<bool, PrivilegeError> {
    if !is_root() {
        return Ok(false);
    }
    let (uid, gid) = lookup_user(user)?;
    let fail = |call| PrivilegeError::Call {
        user: user.into(),
        call,
        source: std::io::Error::last_os_error(),
    };
    // SAFETY: plain system calls on integers; order matters (groups and gid before uid).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(fail("setuid"));
        }
        // If root can be regained, the drop did not take.
        if libc::setuid(0) == 0 {
            return Err(PrivilegeError::Call {
                user: user.into(),
                call: "setuid (verify)",
                source: std::io::Error::other("root could be regained"),
            });
        }
    }
    Ok(true)
}
