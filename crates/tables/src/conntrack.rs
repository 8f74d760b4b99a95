//! `conntrack`: the kernel's connection-tracking / NAT table (conntrack -L).
//!
//! Source: `collect::conntrack::read` chooses: a ctnetlink dump
//! (NETLINK_NETFILTER, IPCTNL_MSG_CT_GET); where netlink is refused,
//! /proc/net/nf_conntrack (no ids; status bits partly inferred). Without
//! CAP_NET_ADMIN, or with connection tracking inactive, the table is empty
//! and stderr says why once.
//!
//! Pushed down (Inexact): `family = …` chooses the dump's address family;
//! `mark = N` and `zone = N` go into ctnetlink's dump filter, so the
//! kernel sends only those entries.
//! Rows stream into batches as the dump arrives, so a 100,000-entry table
//! costs a couple of batches of memory.

use std::ops::ControlFlow;

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::filters::{as_i64, as_str, column_in_literals};
use crate::live::Emitter;
use crate::table_columns;
use crate::{scope, Pushdown, Scan, Table};
use sockql_collect::conntrack::{self, Conntrack, DumpFilter, Tuple};
use sockql_collect::ReadOptions;

table_columns!(Col {
    Id: "id", U32, true, "Kernel id of the entry (conntrack -o id); null from /proc/net/nf_conntrack";
    Family: "family", Utf8, false, "'inet' (IPv4) or 'inet6' (IPv6)";
    Protocol: "protocol", Utf8, false, "Layer-4 protocol name: tcp, udp, icmp, icmpv6, sctp, gre, ... or its number";
    ProtocolNum: "protocol_num", U8, false, "Layer-4 protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6)";
    State: "state", Utf8, true, "TCP conntrack state: SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE; null for other protocols";
    TimeoutS: "timeout_s", U32, true, "Seconds until the entry expires unless traffic refreshes it";
    OrigSrc: "orig_src", Utf8, true, "Original direction source address (who opened the flow)";
    OrigDst: "orig_dst", Utf8, true, "Original direction destination address";
    OrigSport: "orig_sport", U16, true, "Original direction source port (null for icmp)";
    OrigDport: "orig_dport", U16, true, "Original direction destination port";
    ReplySrc: "reply_src", Utf8, true, "Reply direction source address: differs from orig_dst under DNAT";
    ReplyDst: "reply_dst", Utf8, true, "Reply direction destination address: differs from orig_src under SNAT/masquerade";
    ReplySport: "reply_sport", U16, true, "Reply direction source port";
    ReplyDport: "reply_dport", U16, true, "Reply direction destination port";
    IcmpType: "icmp_type", U8, true, "ICMP type of the original direction (icmp/icmpv6 only)";
    IcmpCode: "icmp_code", U8, true, "ICMP code of the original direction";
    IcmpId: "icmp_id", U16, true, "ICMP echo id of the original direction";
    Status: "status", Utf8, true, "Status flags, comma-separated: ASSURED, SEEN_REPLY, CONFIRMED, SRC_NAT, DST_NAT, SRC_NAT_DONE, DST_NAT_DONE, DYING, OFFLOAD, ...";
    Assured: "assured", Bool, true, "Traffic seen both ways long enough that the entry is kept under table pressure";
    SeenReply: "seen_reply", Bool, true, "A reply was seen (false is conntrack's [UNREPLIED])";
    Snat: "snat", Bool, true, "Source NAT (SNAT or masquerade) applies";
    Dnat: "dnat", Bool, true, "Destination NAT (DNAT, port forward) applies";
    Mark: "mark", U32, true, "Connection mark (ct mark)";
    Zone: "zone", U16, true, "Conntrack zone";
    UseCount: "use_count", U32, true, "Reference count of the entry";
    OrigPackets: "orig_packets", U64, true, "Packets in the original direction (needs net.netfilter.nf_conntrack_acct=1)";
    OrigBytes: "orig_bytes", U64, true, "Bytes in the original direction (needs nf_conntrack_acct=1)";
    ReplyPackets: "reply_packets", U64, true, "Packets in the reply direction (needs nf_conntrack_acct=1)";
    ReplyBytes: "reply_bytes", U64, true, "Bytes in the reply direction (needs nf_conntrack_acct=1)";
    StartTime: "start_time", TimestampMs, true, "When the flow was first seen, UTC (needs net.netfilter.nf_conntrack_timestamp=1)";
    Labels: "labels", Utf8, true, "Set connlabel bits, comma-separated bit numbers (see connlabel.conf)";
    Secctx: "secctx", Utf8, true, "Security context (SELinux) of the entry";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net): each namespace has its own table";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns (ip netns), null if unnamed";
});

#[derive(Debug, Clone, Copy)]
pub struct ConntrackTable;

/// One scan: its namespaces, source, family and the kernel's dump filter.
pub struct Plan {
    targets: Vec<sockql_collect::netns::Netns>,
    no_netlink: bool,
    family: u8,
    filter: DumpFilter,
}

/// The mark and zone a filter set pins, for the kernel's dump filter.
fn wanted_filter(filters: &[Expr]) -> DumpFilter {
    let mut f = DumpFilter::default();
    for e in filters {
        if let Some((c @ ("mark" | "zone"), values)) = column_in_literals(e) {
            let [v] = values.as_slice() else { continue };
            match (c, as_i64(v)) {
                ("mark", Some(m)) => f.mark = u32::try_from(m).ok(),
                ("zone", Some(z)) => f.zone = u16::try_from(z).ok(),
                _ => {}
            }
        }
    }
    f
}

/// The nfgenmsg family a filter set allows: 0 (all), AF_INET or AF_INET6.
fn wanted_family(filters: &[Expr]) -> u8 {
    for f in filters {
        if let Some(("family", values)) = column_in_literals(f) {
            let fams: Vec<&str> = values.iter().filter_map(|v| as_str(v)).collect();
            if fams == ["inet"] {
                return libc::AF_INET as u8;
            }
            if fams == ["inet6"] {
                return libc::AF_INET6 as u8;
            }
        }
    }
    0
}

impl Table for ConntrackTable {
    const NAME: &'static str = "conntrack";
    const ABOUT: &'static str = "The connection-tracking / NAT table (conntrack -L), needs CAP_NET_ADMIN";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn pushdown(&self, f: &Expr) -> Pushdown {
        match column_in_literals(f) {
            Some(("family", _)) => Pushdown::Inexact,
            Some(("mark" | "zone", v)) if v.len() == 1 && as_i64(v[0]).is_some() => Pushdown::Inexact,
            Some(("mark" | "zone", _)) => Pushdown::Unsupported,
            _ if scope::is_netns_filter(f) => Pushdown::Exact,
            _ => Pushdown::Unsupported,
        }
    }

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        Plan {
            targets: scan.targets(),
            no_netlink: scan.options.no_netlink,
            family: wanted_family(scan.filters),
            filter: wanted_filter(scan.filters),
        }
    }

    fn label(&self, plan: &Plan) -> String {
        format!(
            "conntrack: {} {} family={} mark={:?} zone={:?}",
            if plan.no_netlink { "/proc/net/nf_conntrack" } else { "ctnetlink" },
            scope::describe(&plan.targets),
            match plan.family {
                0 => "all",
                2 => "inet",
                _ => "inet6",
            },
            plan.filter.mark,
            plan.filter.zone,
        )
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let options = ReadOptions { no_netlink: plan.no_netlink };
        scope::each(&plan.targets, |ns| {
            let used = conntrack::read(options, plan.family, &plan.filter, |ct: Conntrack| {
                append(&mut out.rows, &ct, ns);
                out.end_row()
            })?;
            out.count(used, Default::default());
            Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
    }
}

fn tuple(r: &mut RowBuilder, t: &Tuple, src: Col, dst: Col, sport: Col, dport: Col) {
    match t.src {
        Some(a) => r.display(src, &a),
        None => r.str(src, None),
    }
    match t.dst {
        Some(a) => r.display(dst, &a),
        None => r.str(dst, None),
    }
    r.u16(sport, t.sport);
    r.u16(dport, t.dport);
}

/// One entry's columns (`conntrack_events` fills them after its own,
/// through [`RowBuilder::at`]).
pub fn append(r: &mut RowBuilder, ct: &Conntrack, ns: &sockql_collect::netns::Netns) {
    use Col::*;
    r.u64(Col::Netns, Some(ns.inode));
    r.str(NetnsName, ns.name.as_deref());
    let proto = ct.orig.protocol.unwrap_or(0);
    r.u32(Id, ct.id);
    r.str(Family, Some(if ct.family == libc::AF_INET6 as u8 { "inet6" } else { "inet" }));
    match conntrack::protocol_name(proto) {
        Some(n) => r.str(Protocol, Some(n)),
        None => r.display(Protocol, &proto),
    }
    r.u8(ProtocolNum, Some(proto));
    r.str(State, ct.tcp_state.filter(|_| proto == 6).map(conntrack::tcp_state_name));
    r.u32(TimeoutS, ct.timeout_s);
    tuple(r, &ct.orig, OrigSrc, OrigDst, OrigSport, OrigDport);
    tuple(r, &ct.reply, ReplySrc, ReplyDst, ReplySport, ReplyDport);
    r.u8(IcmpType, ct.orig.icmp_type);
    r.u8(IcmpCode, ct.orig.icmp_code);
    r.u16(IcmpId, ct.orig.icmp_id);
    if r.wants(Status) {
        r.str(Status, ct.status.map(conntrack::status_names).as_deref());
    }
    let bit = |b: u32| ct.status.map(|s| s & b != 0);
    r.bool(Assured, bit(conntrack::IPS_ASSURED));
    r.bool(SeenReply, bit(conntrack::IPS_SEEN_REPLY));
    r.bool(Snat, bit(conntrack::IPS_SRC_NAT));
    r.bool(Dnat, bit(conntrack::IPS_DST_NAT));
    r.u32(Mark, ct.mark);
    r.u16(Zone, Some(ct.zone.unwrap_or(0)));
    r.u32(UseCount, ct.use_count);
    r.u64(OrigPackets, ct.orig_counters.packets);
    r.u64(OrigBytes, ct.orig_counters.bytes);
    r.u64(ReplyPackets, ct.reply_counters.packets);
    r.u64(ReplyBytes, ct.reply_counters.bytes);
    r.timestamp_ms(StartTime, ct.start_ns.map(|ns| (ns / 1_000_000) as i64));
    if r.wants(Labels) {
        let labels = ct.labels.as_ref().map(|l| l.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
        r.str(Labels, labels.as_deref());
    }
    r.str(Secctx, ct.secctx.as_deref());
}
