//! The connection-tracking table: its records ([`Conntrack`], [`CpuStats`])
//! and the readers that fill them, ctnetlink ([`netlink`], what
//! `conntrack -L` uses) or the /proc/net text ([`proc`]). [`read`] and
//! [`read_stats`] choose the source: netlink unless `--no-netlink` or
//! refused, then /proc, else nothing with one note: a missing conntrack
//! never fails a query.

pub mod events;
pub mod netlink;
pub mod proc;

use std::net::IpAddr;
use std::ops::ControlFlow;

use super::error::CallerOr;
use super::{Error, ReadOptions, Used};
use crate::notice;
pub use netlink::{Ctnetlink, DumpFilter};

/// `status` bits (enum ip_conntrack_status), named as conntrack(8) and the
/// kernel headers name them.
pub const STATUS_NAMES: [&str; 16] = [
    "EXPECTED",
    "SEEN_REPLY",
    "ASSURED",
    "CONFIRMED",
    "SRC_NAT",
    "DST_NAT",
    "SEQ_ADJUST",
    "SRC_NAT_DONE",
    "DST_NAT_DONE",
    "DYING",
    "FIXED_TIMEOUT",
    "TEMPLATE",
    "NAT_CLASH",
    "HELPER",
    "OFFLOAD",
    "HW_OFFLOAD",
];
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;

/// TCP conntrack states (enum tcp_conntrack), as conntrack -L prints them.
pub const TCP_STATES: [&str; 10] = [
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
];

pub fn tcp_state_name(s: u8) -> &'static str {
    TCP_STATES.get(s as usize).copied().unwrap_or("UNKNOWN")
}

/// Space-separated names of the set status bits.
pub fn status_names(status: u32) -> String {
    STATUS_NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| status & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn protocol_name(p: u8) -> Option<&'static str> {
    Some(match p {
        1 => "icmp",
        2 => "igmp",
        6 => "tcp",
        17 => "udp",
        33 => "dccp",
        47 => "gre",
        58 => "icmpv6",
        132 => "sctp",
        136 => "udplite",
        _ => return None,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tuple {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub protocol: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_id: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
}

/// One conntrack entry. Fields the kernel did not send are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conntrack {
    pub family: u8,
    pub id: Option<u32>,
    pub orig: Tuple,
    pub reply: Tuple,
    pub status: Option<u32>,
    pub tcp_state: Option<u8>,
    pub timeout_s: Option<u32>,
    pub mark: Option<u32>,
    pub zone: Option<u16>,
    pub use_count: Option<u32>,
    pub orig_counters: Counters,
    pub reply_counters: Counters,
    /// Nanoseconds since the epoch (with nf_conntrack_timestamp=1).
    pub start_ns: Option<u64>,
    /// When the flow ended, in a DESTROY event (nf_conntrack_timestamp=1).
    pub stop_ns: Option<u64>,
    /// Set connlabel bits, by number.
    pub labels: Option<Vec<u16>>,
    pub secctx: Option<String>,
}

/// Per-CPU statistics, as `conntrack -S` prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub cpu: u16,
    /// Indexed by CTA_STATS_* attribute number (1..=15).
    pub counters: [Option<u32>; 16],
}

/// CTA_STATS_* attribute numbers and the names conntrack -S uses.
pub const STATS: [(usize, &str); 10] = [
    (2, "found"),
    (4, "invalid"),
    (8, "insert"),
    (9, "insert_failed"),
    (10, "drop"),
    (11, "early_drop"),
    (12, "error"),
    (13, "search_restart"),
    (14, "clash_resolve"),
    (15, "chaintoolong"),
];

/// Through thread-self: a reader thread in another namespace reads its own.
const PROC_CONNTRACK: &str = "/proc/thread-self/net/nf_conntrack";
const PROC_CONNTRACK_STATS: &str = "/proc/thread-self/net/stat/nf_conntrack";

fn refusal_note(e: &Error) {
    let msg = match e.errno() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "reading the connection-tracking table needs CAP_NET_ADMIN (run sockql as root); conntrack is empty"
                .to_string()
        }
        _ => format!(
            "connection tracking is not available here ({e}): the nf_conntrack module is not loaded or \
             nothing uses it in this network namespace; conntrack is empty"
        ),
    };
    notice::note_once("conntrack-unavailable", msg);
}

/// Read the table of `family` (0: both) in the calling thread's namespace
/// from ctnetlink, else /proc/net/nf_conntrack, else nothing (with a
/// note). `filter` goes to the kernel where it takes dump filters; the
/// caller re-checks it either way.
pub fn read<E: From<Error>>(
    options: ReadOptions,
    family: u8,
    filter: &DumpFilter,
    mut each: impl FnMut(Conntrack) -> Result<ControlFlow<()>, E>,
) -> Result<Used, E> {
    if !options.no_netlink {
        let mut each_ct = |ct: Conntrack| each(ct).map_err(CallerOr::Caller);
        let res = match Ctnetlink::open() {
            Ok(mut nl) => match nl.dump(family, filter, None, &mut each_ct) {
                // A kernel without dump filters (zone filtering came late)
                // refuses the request before sending anything: ask again
                // unfiltered and let the caller filter.
                Err(CallerOr::Reader(Error::Kernel { errno }))
                    if errno == libc::EINVAL && *filter != DumpFilter::default() =>
                {
                    nl.dump(family, &DumpFilter::default(), None, &mut each_ct)
                }
                other => other,
            },
            Err(e) => Err(CallerOr::Reader(e)),
        };
        match res {
            Ok(()) => return Ok(Used { netlink: 1, proc: 0 }),
            Err(CallerOr::Caller(e)) => return Err(e),
            Err(CallerOr::Reader(e))
                if e.is_refusal() || matches!(e.errno(), Some(libc::EOPNOTSUPP) | Some(libc::ENOENT)) =>
            {
                if std::fs::metadata(PROC_CONNTRACK).is_err() || e.errno() == Some(libc::EPERM) {
                    refusal_note(&e);
                    return Ok(Used::default());
                }
                notice::warn_once(
                    "ctnetlink-refused",
                    format!("ctnetlink refused ({e}); reading /proc/net/nf_conntrack instead (no ids)"),
                );
            }
            Err(CallerOr::Reader(e)) => return Err(e.into()),
        }
    }
    let text = match std::fs::read_to_string(PROC_CONNTRACK) {
        Ok(t) => t,
        Err(e) => {
            notice::note_once(
                "conntrack-unavailable",
                format!("cannot read /proc/net/nf_conntrack ({e}); conntrack is empty"),
            );
            return Ok(Used::default());
        }
    };
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let entries = proc::parse(&text, now_s).map_err(|e| e.in_file(PROC_CONNTRACK))?;
    for ct in entries {
        if family != 0 && ct.family != family {
            continue;
        }
        if each(ct)?.is_break() {
            break;
        }
    }
    Ok(Used { netlink: 0, proc: 1 })
}

/// Per-CPU statistics: ctnetlink, else /proc/net/stat/nf_conntrack, else
/// none (with the same note).
pub fn read_stats(options: ReadOptions) -> Result<Vec<CpuStats>, Error> {
    if !options.no_netlink {
        match Ctnetlink::open().and_then(|mut nl| nl.cpu_stats()) {
            Ok(s) => return Ok(s),
            Err(e) if matches!(e.errno(), Some(libc::EPERM) | Some(libc::EACCES)) => {
                refusal_note(&e);
                return Ok(Vec::new());
            }
            Err(_) => {}
        }
    }
    match std::fs::read_to_string(PROC_CONNTRACK_STATS) {
        Ok(text) => proc::parse_stats(&text).map_err(|e| e.in_file(PROC_CONNTRACK_STATS)),
        Err(e) => {
            notice::note_once(
                "conntrack-unavailable",
                format!("cannot read conntrack statistics ({e}); conntrack_stats is empty"),
            );
            Ok(Vec::new())
        }
    }
}
