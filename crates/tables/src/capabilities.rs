//! What each table needs of the kernel's capabilities to be read at all,
//! and the one place a refused read becomes one line naming what is
//! missing: `live_table.rs` passes every table's read error through
//! [`explain`]. A table not listed here needs no capability to answer
//! (SECURITY.md "Capabilities" has the whole matrix, with the columns and
//! rows a missing capability leaves null or out, each said in a note).

use sockql_collect::capabilities::{self as caps, Cap};

/// One requirement: any of `any_of` will do (CAP_SYS_ADMIN also allows
/// what CAP_PERFMON does).
struct Need {
    any_of: &'static [Cap],
    /// Only when tracefs is not mounted (sockql then mounts a private one).
    tracefs_mount: bool,
}

const fn need(any_of: &'static [Cap]) -> Need {
    Need { any_of, tracefs_mount: false }
}

/// A kernel tracepoint read as a perf event: perf_event_open on every CPU
/// (CAP_PERFMON, or CAP_SYS_ADMIN), its format file under tracefs (mode
/// 0700 root: CAP_DAC_READ_SEARCH), and a private tracefs mount where none
/// is mounted (CAP_SYS_ADMIN).
const TRACEPOINT: &[Need] = &[
    need(&[Cap::Perfmon, Cap::SysAdmin]),
    need(&[Cap::DacReadSearch]),
    Need { any_of: &[Cap::SysAdmin], tracefs_mount: true },
];

/// An AF_PACKET socket (the live capture).
const CAPTURE: &[Need] = &[need(&[Cap::NetRaw])];
/// A netlink event group: conntrack's, the proc connector's.
const EVENTS: &[Need] = &[need(&[Cap::NetAdmin])];

fn needs(table: &str) -> &'static [Need] {
    match table {
        "packets" => CAPTURE,
        "conntrack_events" | "process_events" => EVENTS,
        "packet_drops" | "socket_pressure" | "tcp_retransmits" | "tcp_resets" | "tcp_state_changes" => TRACEPOINT,
        _ => &[],
    }
}

/// The capabilities `table` needs to be read, as the line says them
/// ("CAP_PERFMON (or CAP_SYS_ADMIN) and CAP_DAC_READ_SEARCH"); empty for a
/// table that needs none.
pub fn needed(table: &str) -> String {
    caps::and_list(&needs(table).iter().filter(|n| !n.tracefs_mount).map(describe).collect::<Vec<_>>())
}

fn describe(n: &Need) -> String {
    match n.any_of {
        [one] => one.name().to_string(),
        [first, rest @ ..] => {
            format!("{} (or {})", first.name(), rest.iter().map(|c| c.name()).collect::<Vec<_>>().join(" or "))
        }
        [] => String::new(),
    }
}

/// A table's read the kernel refused for want of a capability.
#[derive(Debug)]
pub struct NeedsCapability {
    table: &'static str,
    /// What the table needs, as said.
    needs: String,
    /// Of that, what this process lacks.
    lacks: String,
    /// The reader's own error, for whoever prints causes.
    source: anyhow::Error,
}

impl std::fmt::Display for NeedsCapability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: needs {} (or root); lacks {}", self.table, self.needs, self.lacks)
    }
}

impl std::error::Error for NeedsCapability {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// `e`, a read of `table` that failed: if the kernel refused it (EPERM,
/// EACCES) and this process lacks a capability the table needs, the one
/// line saying so, with `e` as its cause; otherwise `e` as it was.
pub fn explain(table: &'static str, e: anyhow::Error) -> anyhow::Error {
    let cause: &(dyn std::error::Error + 'static) = e.as_ref();
    if !caps::is_permission_error(cause) {
        return e;
    }
    let mount = caps::is_tracefs_mount_error(cause);
    let relevant: Vec<&Need> = needs(table).iter().filter(|n| !n.tracefs_mount || mount).collect();
    let lacking: Vec<String> =
        relevant.iter().filter(|n| !n.any_of.iter().any(|c| caps::has(*c))).map(|n| describe(n)).collect();
    if lacking.is_empty() {
        // Refused although it holds what the table needs (an LSM, a
        // sysctl such as kernel.perf_event_paranoid): the reader's own
        // message says what.
        return e;
    }
    let needs = caps::and_list(&relevant.iter().map(|n| describe(n)).collect::<Vec<_>>());
    anyhow::Error::new(NeedsCapability { table, needs, lacks: caps::and_list(&lacking), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_say_what_they_need() {
        assert_eq!(needed("packets"), "CAP_NET_RAW");
        assert_eq!(needed("process_events"), "CAP_NET_ADMIN");
        assert_eq!(needed("tcp_retransmits"), "CAP_PERFMON (or CAP_SYS_ADMIN) and CAP_DAC_READ_SEARCH");
        assert_eq!(needed("sockets"), "");
    }

    #[test]
    fn errors_that_are_not_refusals_pass_unchanged() {
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOENT)).context("reading x");
        assert_eq!(format!("{:#}", explain("packets", e)), "reading x: No such file or directory (os error 2)");
        // A table that needs nothing: a refusal is the reader's to explain.
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::EACCES));
        assert!(explain("sockets", e).downcast_ref::<std::io::Error>().is_some());
    }
}
