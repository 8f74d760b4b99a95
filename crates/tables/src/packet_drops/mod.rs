//! `packet_drops`: every packet the kernel frees as dropped (the
//! `skb:kfree_skb` tracepoint, what `dropwatch`, `perf trace -e
//! skb:kfree_skb` and bcc's `tcpdrop` read) while the query listens
//! (`--capture-for`, 10 s by default; a LIMIT or Ctrl-C ends it sooner).
//!
//! What the tracepoint gives, and so what the columns hold:
//! - `reason`: the kernel's name for the drop reason, from the
//!   tracepoint's own format file (its `__print_symbolic` map), so a newer
//!   kernel's new reasons appear by name without a new sockql. A value the
//!   map does not name (a kernel that adds a reason without naming it in
//!   the map) reads as its number in decimal text ('131'), never null,
//!   so a GROUP BY reason keeps unnamed reasons apart; `reason_code` is
//!   always the number.
//! - `location`: the address of the code that freed the packet, as
//!   `function+0x1a` from /proc/kallsyms (` [module]` appended for a
//!   module's function, as perf prints it), and `function` the symbol
//!   alone. Where kallsyms shows no addresses (kptr_restrict=2), location
//!   is the address in hex and function null (said once).
//! - `ethertype`: the skb's `protocol` as the kernel recorded it (host
//!   order: 0x0800 IPv4, 0x86dd IPv6, 0x0806 ARP), `l3` its name; 0 where
//!   the kernel had not set it yet.
//! - `rx_sk`: whether the kernel named a receiving socket. It names it by
//!   a kernel pointer, which sockql cannot map to a socket: /proc/net/*
//!   and sock_diag give hashed pointers or cookies, never the address.
//!
//! Two readers, the first that loads:
//! - eBPF (`reader` = 'bpf'): sockql's own program on the raw tracepoint
//!   (`collect::trace::bpf`) reads what the tracepoint only points to:
//!   the packet's network namespace (its device's, else the receiving
//!   socket's), the interface, the IPv4/IPv6 addresses and TCP/UDP ports
//!   from the linear headers, and the receiving socket's inode. The
//!   namespaces the scan covers (the current one, `--netns`, `WHERE netns
//!   = ...`; all with `--all-netns`) are compared in the kernel, as are
//!   the reason and ethertype filters, so another namespace's drops never
//!   leave it. `inode`, `pid` and `process` are the receiving socket's
//!   when the kernel names one (its inode, then the descriptors' owner as
//!   `ss -p` finds it), else those of a socket of the packet's namespace
//!   whose 4-tuple is the packet's, either way round (a connected sender
//!   or receiver; `sock_lookup.rs`); null when there is none.
//! - perf (`reader` = 'perf'), where eBPF cannot load (no BTF, the
//!   verifier refuses, no CAP_BPF; said once in a note) or when the query
//!   asks for it (`WHERE reader = 'perf'`): the tracepoint's record only,
//!   so the namespace, interface, headers and socket columns are null and
//!   the table shows the whole host's drops whatever the scope.
//!
//! `current_pid`/`current_process` are the sample's own: the task that
//! was on the CPU when the packet was freed. That is the dropping socket's
//! process only by coincidence: for a locally sent packet dropped on
//! loopback or a veth (delivered in the sender's softirq) it is the
//! sender (a UDP datagram to a closed port: its sender), for a packet from
//! the wire or a timer it is whoever was running (0 for an idle CPU).
//!
//! Filters on `reason` (=, IN) and `ethertype` (=, IN, <, >, BETWEEN) go to
//! the kernel as the tracepoint's filter, shown in EXPLAIN (`reason ==
//! 3`); every other filter is applied to each row here.
//!
//! Layout: this file (columns, plan, which reader), [`bpf`] (the eBPF
//! reader's rows), [`perf`] (the perf reader's rows), [`context`] (names
//! of namespaces and interfaces, socket owners: cached and bounded).

mod bpf;
mod context;
mod perf;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::tracepoints::{Point, Pushed, TracePlan, Value};
use crate::{Kind, Scan, Table};
use sockql_collect::trace::bpf::program::{in_kernel, MAX_NETNS};
use sockql_collect::trace::bpf::DropReader;
use sockql_collect::trace::filter::Filter;
use sockql_collect::trace::kallsyms::Kallsyms;
use sockql_collect::trace::Options;

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When the kernel freed the packet (the tracepoint's own time), UTC";
    Reason: "reason", Utf8, false, "The kernel's drop reason as its tracepoint format names it (NO_SOCKET, NETFILTER_DROP, TCP_LISTEN_OVERFLOW, ...); a reason the format does not name reads as its number, in decimal";
    ReasonCode: "reason_code", U32, false, "The drop reason's number (enum skb_drop_reason of the running kernel)";
    Location: "location", Utf8, false, "Where the kernel freed it, function+0xoffset from /proc/kallsyms (' [module]' appended for a module); the address in hex when kallsyms shows no addresses";
    Function: "function", Utf8, true, "The kernel function that freed it (location without the offset); null when kallsyms cannot name it";
    Ethertype: "ethertype", U16, false, "The packet's ethertype as the kernel recorded it (skb protocol: 2048 = 0x0800 IPv4, 34525 = 0x86dd IPv6, 2054 = 0x0806 ARP); 0 where not set yet";
    L3: "l3", Utf8, true, "ethertype named: 'ipv4', 'ipv6', 'arp', 'vlan', 'mpls', ...; null for 0 or an ethertype sockql does not name";
    Protocol: "protocol", Utf8, true, "The IP protocol of the packet's header ('tcp', 'udp', 'icmp', 'ipv6-icmp', else its number; IPv6: the first next header), read by the eBPF reader; null when the header was not read (not IP, beyond the linear data, perf reader)";
    SrcAddr: "src_addr", Utf8, true, "The packet's source address from its IPv4/IPv6 header (eBPF reader); null when not read (see protocol)";
    SrcPort: "src_port", U16, true, "The packet's TCP/UDP source port (eBPF reader); null for other protocols or a transport header beyond the linear data";
    DstAddr: "dst_addr", Utf8, true, "The packet's destination address (see src_addr)";
    DstPort: "dst_port", U16, true, "The packet's TCP/UDP destination port (see src_port)";
    Netns: "netns", U64, true, "Network namespace inode of the packet: its device's namespace, else its receiving socket's (eBPF reader); null when it had neither, or with the perf reader (whose rows are the whole host's)";
    NetnsName: "netns_name", Utf8, true, "Name of netns under /run/netns (ip netns), null if unnamed or unknown";
    Ifindex: "ifindex", U32, true, "Index of the packet's device in its namespace (skb->dev; eBPF reader); null without a device";
    Interface: "interface", Utf8, true, "Name of ifindex in netns when the row was read (as `ip -n NETNS link` names it); null without a device or for one gone by then";
    RxSk: "rx_sk", Bool, true, "Whether the kernel named a receiving socket for it (the tracepoint's rx_sk); null on a kernel without the argument";
    Inode: "inode", U64, true, "Socket inode (as in /proc/PID/fd's socket:[N]): the receiving socket's when the kernel names one (eBPF reader), else that of a socket in netns whose 4-tuple is the packet's, either way round (sock_diag, as ss); null when none";
    Pid: "pid", I32, true, "Lowest pid holding inode when the row was read (as ss -p finds it); null when no process holds it or no socket is known";
    Process: "process", Utf8, true, "Command name of pid";
    Container: "container", Utf8, true, "Name of the container of pid when the query asks for inode, pid or process (podman ps / docker ps NAMES), else of the container whose network namespace netns is (eBPF reader); null for the host, with the perf reader, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host or with the perf reader";
    CurrentPid: "current_pid", I32, true, "The process that was on the CPU when the packet was freed (the sample's pid), not necessarily the socket's: for a packet sent locally and dropped on loopback or a veth, its sender; from the wire or a timer, whoever ran (0: an idle CPU)";
    CurrentTid: "current_tid", I32, true, "The thread of current_pid that was on the CPU";
    CurrentProcess: "current_process", Utf8, true, "Command name of current_tid when the row was read (null for 0 or a thread gone by then)";
    Reader: "reader", Utf8, false, "Which reader made the row: 'bpf' (sockql's eBPF program: namespace, interface, headers, socket) or 'perf' (the perf tracepoint, where eBPF cannot load, or asked for with WHERE reader = 'perf')";
    Overruns: "overruns", U64, false, "Events the kernel had no room for in sockql's ring by the time this row was read (perf ring full: a count of events, where the netlink event tables count overflows), those lost after it while it waited in the ring included, so the last row's (the max) counts every loss before the stream ended; 0: none lost";
});

pub static POINTS: &[Point] = &[Point {
    group: "skb",
    name: "kfree_skb",
    pushed: &[
        Pushed { column: "reason", field: "reason", value: Value::Symbol },
        Pushed { column: "ethertype", field: "protocol", value: Value::Int },
    ],
}];

#[derive(Debug, Clone, Copy)]
pub struct PacketDropsTable;

/// Which reader a scan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// The eBPF program, perf if it cannot load.
    Bpf,
    /// The perf tracepoint (`WHERE reader = 'perf'`).
    Perf,
}

pub struct Plan {
    trace: TracePlan,
    reader: Reader,
    /// The namespaces the eBPF program keeps (with drops of none known);
    /// empty: every namespace's.
    netns: Vec<u32>,
    /// Whether the scan wants location or function (kallsyms is loaded only then).
    symbols: bool,
    /// Whether it wants current_process (read from /proc per thread).
    comm: bool,
    /// Whether it wants inode, pid or process (socket lookups).
    holders: bool,
    netns_names: bool,
    interfaces: bool,
}

impl Plan {
    /// The kernel filter of the tracepoint: (reason, protocol, location)
    /// comparisons the eBPF program compiles too.
    fn filter(&self) -> Filter {
        self.trace.points.first().map(|p| p.filter.clone()).unwrap_or_default()
    }
}

/// `WHERE reader = 'perf'` (or IN with 'perf' alone) asks for the perf reader.
fn reader_of(filters: &[datafusion::logical_expr::Expr]) -> Reader {
    let perf = filters.iter().any(|f| {
        matches!(crate::filters::column_in_literals(f), Some(("reader", v))
            if v.len() == 1 && v.first().and_then(|v| crate::filters::as_str(v)) == Some("perf"))
    });
    if perf {
        Reader::Perf
    } else {
        Reader::Bpf
    }
}

/// The name of an ethertype, as `l3` shows it.
pub fn l3_name(ethertype: u16) -> Option<&'static str> {
    Some(match ethertype {
        0x0800 => "ipv4",
        0x86dd => "ipv6",
        0x0806 => "arp",
        0x8035 => "rarp",
        0x8100 => "vlan",
        0x88a8 => "qinq",
        0x8847 | 0x8848 => "mpls",
        0x8863 | 0x8864 => "pppoe",
        0x88cc => "lldp",
        0x88e5 => "macsec",
        0x88f7 => "ptp",
        0x8906 => "fcoe",
        0x0004 => "802.2",
        _ => return None,
    })
}

/// Command names of the threads samples name, read once per thread per
/// second: a flood of drops from one sender reads /proc once a second,
/// not once a packet. Bounded: cleared when full.
#[derive(Default)]
pub(crate) struct Comms {
    names: HashMap<u32, Option<String>>,
    since: Option<Instant>,
}

impl Comms {
    const MAX: usize = 4096;
    const FRESH: Duration = Duration::from_secs(1);

    pub(crate) fn of(&mut self, tid: u32) -> Option<&str> {
        if tid == 0 {
            return None;
        }
        let now = Instant::now();
        if self.names.len() >= Self::MAX || self.since.is_none_or(|s| now.duration_since(s) > Self::FRESH) {
            self.names.clear();
            self.since = Some(now);
        }
        self.names
            .entry(tid)
            .or_insert_with(|| i32::try_from(tid).ok().and_then(sockql_collect::owners::comm))
            .as_deref()
    }
}

impl Table for PacketDropsTable {
    const NAME: &'static str = "packet_drops";
    const ABOUT: &'static str = "Packets the kernel drops, with its reason, the function, namespace, interface, addresses and socket (skb:kfree_skb; dropwatch, tcpdrop, pwru), while the query listens (--capture-for, default 10 s)";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        let trace = TracePlan::new(POINTS, scan);
        // The program compares u32 inodes; a list it cannot hold whole
        // (or an inode beyond u32) is left to user space.
        let netns: Vec<u32> = if trace.all_netns || trace.targets.len() > MAX_NETNS {
            Vec::new()
        } else {
            trace.targets.iter().map(|t| u32::try_from(t.inode).ok()).collect::<Option<_>>().unwrap_or_default()
        };
        Plan {
            reader: reader_of(scan.filters),
            netns,
            symbols: scan.wants(Col::Location) || scan.wants(Col::Function),
            comm: scan.wants(Col::CurrentProcess),
            holders: scan.wants(Col::Inode) || scan.wants(Col::Pid) || scan.wants(Col::Process),
            netns_names: scan.wants(Col::NetnsName),
            interfaces: scan.wants(Col::Interface),
            trace,
        }
    }

    /// `packet_drops: eBPF kfree_skb [reason == 2] netns=[current] (in
    /// the kernel) for 10s, perf tracepoint skb:kfree_skb if it cannot
    /// load`, or the perf reader's label.
    fn label(&self, plan: &Plan) -> String {
        match plan.reader {
            Reader::Perf => format!("{} reader=perf", plan.trace.label(Self::NAME)),
            Reader::Bpf => {
                let filter = in_kernel(&plan.filter());
                let filter = if filter.is_empty() { String::new() } else { format!(" [{filter}]") };
                let scope = if plan.trace.all_netns {
                    "netns=all".to_string()
                } else if plan.netns.is_empty() {
                    crate::scope::describe(&plan.trace.targets)
                } else {
                    format!("{} (in the kernel)", crate::scope::describe(&plan.trace.targets))
                };
                format!(
                    "{}: eBPF kfree_skb{filter} {scope} {}, reader=bpf (perf tracepoint skb:kfree_skb if it cannot load)",
                    Self::NAME,
                    crate::streams::describe(plan.trace.bound)
                )
            }
        }
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        if plan.reader == Reader::Bpf {
            let opts = Options { wakeup_bytes: plan.trace.wakeup_bytes, ..Options::default() };
            match DropReader::open(&plan.filter(), &plan.netns, opts) {
                Ok(reader) => return bpf::read(plan, reader, out),
                Err(e) => sockql_collect::notice::note_once(
                    "packet-drops-perf",
                    format!(
                        "packet drops: the eBPF reader did not load ({e}); reading the perf tracepoint instead: \
                         netns, interface, addresses, ports and socket columns are null and the rows are the whole host's"
                    ),
                ),
            }
        }
        perf::read(plan, out)
    }
}

/// The reason's name (the format's, else the number) and the location,
/// as both readers write them.
pub(crate) struct Common {
    reasons: sockql_collect::trace::format::Symbols,
    names: HashMap<u32, String>,
    kallsyms: Option<Kallsyms>,
}

impl Common {
    fn new(plan: &Plan) -> Common {
        let reasons = plan
            .trace
            .points
            .first()
            .and_then(|p| p.format.as_ref().ok())
            .and_then(|f| f.symbols.get("reason").cloned())
            .unwrap_or_default();
        let kallsyms = if plan.symbols {
            match Kallsyms::load() {
                Ok(k) => Some(k),
                Err(e) => {
                    sockql_collect::notice::note_once("packet-drops-kallsyms", format!("packet drops: {e}"));
                    None
                }
            }
        } else {
            None
        };
        Common { reasons, names: HashMap::new(), kallsyms }
    }

    /// ts, reason, reason_code, location, function, ethertype and l3.
    fn write(&mut self, r: &mut crate::columns::RowBuilder, ts_ns: i64, code: u32, addr: u64, ethertype: u16) {
        use Col::*;
        r.timestamp_ns(Ts, Some(ts_ns));
        if r.wants(Reason) {
            // Reason names by number, made once: each row then copies a &str.
            let reasons = &self.reasons;
            let name = self
                .names
                .entry(code)
                .or_insert_with(|| reasons.name(i64::from(code)).map_or_else(|| code.to_string(), str::to_string));
            r.str(Reason, Some(name));
        }
        r.u32(ReasonCode, Some(code));
        let symbol = self.kallsyms.as_ref().and_then(|k| k.resolve(addr));
        match &symbol {
            Some(sym) => r.display(Location, sym),
            None => r.display(Location, &format_args!("{addr:#x}")),
        }
        r.str(Function, symbol.as_ref().map(|s| s.name));
        r.u16(Ethertype, Some(ethertype));
        r.str(L3, l3_name(ethertype));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethertypes_are_named_as_l3() {
        assert_eq!((l3_name(0x0800), l3_name(0x86dd), l3_name(0x0806)), (Some("ipv4"), Some("ipv6"), Some("arp")));
        assert_eq!((l3_name(0), l3_name(0x1234)), (None, None));
    }

    #[test]
    fn comms_are_cached_and_bounded() {
        let mut c = Comms::default();
        let me = nix::unistd::gettid().as_raw() as u32;
        let name = c.of(me).map(str::to_string);
        assert_eq!(name, sockql_collect::owners::comm(me as i32));
        assert_eq!(c.of(0), None);
        for t in 1..=(Comms::MAX as u32 + 10) {
            c.names.insert(t + 10_000_000, None);
        }
        c.of(me);
        assert!(c.names.len() <= 2, "{}", c.names.len());
    }
}
