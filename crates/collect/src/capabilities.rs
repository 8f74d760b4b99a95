//! The Linux capabilities sockql's readers need, by name, and which of
//! them this thread has: so that a reader the kernel refused (EPERM,
//! EACCES) can be told apart from one refused for another reason, and the
//! operator is told in one line which capability to grant. sockql runs as
//! root or as a service user with a capability set (SECURITY.md,
//! "Capabilities"); only root has them all.

/// A capability some reader needs (capability.h numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cap {
    DacReadSearch = 2,
    NetAdmin = 12,
    NetRaw = 13,
    SysPtrace = 19,
    SysAdmin = 21,
    Perfmon = 38,
    Bpf = 39,
}

impl Cap {
    pub fn name(self) -> &'static str {
        match self {
            Cap::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::SysPtrace => "CAP_SYS_PTRACE",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Perfmon => "CAP_PERFMON",
            Cap::Bpf => "CAP_BPF",
        }
    }
}

/// The effective set of the calling thread (CapEff of
/// /proc/thread-self/status), None if it cannot be read.
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Does the calling thread hold `cap` in its effective set? (Unknown
/// counts as held: nothing is then blamed on it.)
pub fn has(cap: Cap) -> bool {
    effective().is_none_or(|set| set & (1u64 << cap as u32) != 0)
}

/// Why other users' open files (/proc/PID/fd: listed with
/// CAP_DAC_READ_SEARCH, its links read with CAP_SYS_PTRACE) could not be
/// read, for the notes that say their sockets' holders are unknown.
pub fn fd_tables_refused() -> &'static str {
    if has(Cap::SysPtrace) && has(Cap::DacReadSearch) {
        "refused although sockql holds CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: another user namespace or a security module"
    } else {
        "needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"
    }
}

/// "CAP_A", "CAP_A and CAP_B", "CAP_A, CAP_B and CAP_C".
pub fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// True when `e` or one of its causes is the kernel saying no to us
/// (EPERM, EACCES): a capability may be what is missing.
pub fn is_permission_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let errno = if let Some(io) = c.downcast_ref::<std::io::Error>() {
            io.raw_os_error()
        } else if let Some(ours) = c.downcast_ref::<crate::Error>() {
            ours.errno()
        } else if let Some(trace) = c.downcast_ref::<crate::trace::TraceError>() {
            trace.errno()
        } else {
            c.downcast_ref::<nix::errno::Errno>().map(|n| *n as i32)
        };
        if matches!(errno, Some(libc::EPERM) | Some(libc::EACCES)) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// True when `e` or one of its causes is "tracefs is not mounted and a
/// private mount failed": the mount is what needs CAP_SYS_ADMIN.
pub fn is_tracefs_mount_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let trace = c.downcast_ref::<crate::trace::TraceError>().or_else(|| match c.downcast_ref::<crate::Error>() {
            Some(crate::Error::Trace(t)) => Some(t.as_ref()),
            _ => None,
        });
        if matches!(trace, Some(crate::trace::TraceError::NoTracefs(_))) {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_is_read_from_status_text() {
        let status = "Name:\tsockql\nCapInh:\t0000000000000000\nCapEff:\t000000c000283004\nCapBnd:\t0\n";
        let set = parse_cap_eff(status).unwrap();
        for cap in
            [Cap::DacReadSearch, Cap::NetAdmin, Cap::NetRaw, Cap::SysPtrace, Cap::SysAdmin, Cap::Perfmon, Cap::Bpf]
        {
            assert_ne!(set & (1 << cap as u32), 0, "{cap:?}");
        }
        assert_eq!(parse_cap_eff("CapEff:\t0000000000001000\n"), Some(1 << Cap::NetAdmin as u32));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff(""), None);
    }

    #[test]
    fn permission_errors_are_found_anywhere_in_the_chain() {
        let io = std::io::Error::from_raw_os_error(libc::EACCES);
        let ours = crate::Error::Open(io);
        assert!(is_permission_error(&ours));
        assert!(is_permission_error(&crate::Error::Kernel { errno: libc::EPERM }));
        assert!(!is_permission_error(&crate::Error::Kernel { errno: libc::ENOENT }));
        let trace =
            crate::Error::from(crate::trace::TraceError::NoTracefs(std::io::Error::from_raw_os_error(libc::EPERM)));
        assert!(is_permission_error(&trace) && is_tracefs_mount_error(&trace));
        assert!(!is_tracefs_mount_error(&ours));
        assert_eq!(and_list(&["A".into(), "B".into(), "C".into()]), "A, B and C");
        assert_eq!(and_list(&["A".into()]), "A");
    }
}
