//! Who runs the command line on the gateway host: the process's real uid, read from
//! `/proc/self/status`, and its name from `/etc/passwd`. Never an environment variable
//! (`$USER` and `$SUDO_USER` are set by whoever starts the process).
//!
//! Under `sudo` the real uid is root's: the audit then says `host:root`, which is the truth
//! about the process; who ran sudo is in the host's own sudo log.

use std::path::Path;

/// Why the host user cannot be named.
#[derive(Debug, thiserror::Error)]
pub enum HostUserError {
    #[error("cannot read {0}")]
    Read(String, #[source] std::io::Error),
    #[error("{0} has no readable Uid: line")]
    NoUid(String),
}

/// The real uid of this process and the user name `/etc/passwd` gives it (the uid in
/// decimal when it has none).
pub fn current() -> Result<(String, u32), HostUserError> {
    let uid = real_uid(Path::new("/proc/self/status"))?;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = user_name(&passwd, uid).unwrap_or_else(|| uid.to_string());
    Ok((user, uid))
}

fn real_uid(status_file: &Path) -> Result<u32, HostUserError> {
    let shown = status_file.display().to_string();
    let text =
        std::fs::read_to_string(status_file).map_err(|e| HostUserError::Read(shown.clone(), e))?;
    parse_real_uid(&text).ok_or(HostUserError::NoUid(shown))
}

/// The first field of the `Uid:` line (real, effective, saved, filesystem uid).
fn parse_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|f| f.parse().ok())
}

/// The name of the first `/etc/passwd` entry with `uid`.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let entry_uid: u32 = fields.next()?.parse().ok()?;
        (entry_uid == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_uid_is_the_first_field() {
        let status =
            "Name:\tcertgate\nUmask:\t0022\nUid:\t1001\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_real_uid(status), Some(1001));
        assert_eq!(parse_real_uid("Name:\tx\n"), None);
        assert_eq!(parse_real_uid("Uid:\tabc\t0\n"), None);
    }

    #[test]
    fn names_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nhanako:x:1001:1001::/home/hanako:/bin/sh\n";
        assert_eq!(user_name(passwd, 1001).as_deref(), Some("hanako"));
        assert_eq!(user_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_name(passwd, 4242), None);
    }

    #[test]
    fn this_process_has_a_real_uid() {
        let (user, _uid) = current().expect("Linux /proc");
        assert!(!user.is_empty());
    }
}
