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
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::scope;
use crate::table_columns;
use crate::SourceOptions;
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

pub const NAME: &str = "conntrack";
pub const ABOUT: &str = "The connection-tracking / NAT table (conntrack -L), needs CAP_NET_ADMIN";

#[derive(Debug)]
pub struct ConntrackTable {
    options: SourceOptions,
}

impl ConntrackTable {
    pub fn new(options: SourceOptions) -> Self {
        ConntrackTable { options }
    }
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

impl LiveSource for ConntrackTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        filters
            .iter()
            .map(|f| match column_in_literals(f) {
                Some(("family", _)) => true,
                Some(("mark" | "zone", v)) => v.len() == 1 && as_i64(v[0]).is_some(),
                _ => scope::is_netns_filter(f),
            })
            .collect()
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let family = wanted_family(filters);
        let filter = wanted_filter(filters);
        let targets = scope::targets(filters, self.options.all_netns());
        let cols = projection.cloned();
        let no_netlink = self.options.no_netlink;
        let label = format!(
            "conntrack: {} {} family={} mark={:?} zone={:?}",
            if no_netlink { "/proc/net/nf_conntrack" } else { "ctnetlink" },
            scope::describe(&targets),
            match family {
                0 => "all",
                2 => "inet",
                _ => "inet6",
            },
            filter.mark,
            filter.zone,
        );
        LivePartition::projected(Col::DEFS, projection.map(Vec::as_slice), label, move |sink| {
            let mut out = Emitter::new(RowBuilder::new(Col::DEFS, cols.as_deref(), BATCH_ROWS), sink, limit);
            scope::each(&targets, |ns| {
                let used = conntrack::read(ReadOptions { no_netlink }, family, &filter, |ct: Conntrack| {
                    append(&mut out.rows, &ct, ns, 0);
                    out.end_row()
                })?;
                sink.metrics.read(used, Default::default());
                Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
            })?;
            out.finish()
        })
    }
}

fn tuple(r: &mut RowBuilder, base: usize, t: &Tuple, src: Col, dst: Col, sport: Col, dport: Col) {
    match t.src {
        Some(a) => r.display(base + src as usize, &a),
        None => r.str(base + src as usize, None),
    }
    match t.dst {
        Some(a) => r.display(base + dst as usize, &a),
        None => r.str(base + dst as usize, None),
    }
    r.u16(base + sport as usize, t.sport);
    r.u16(base + dport as usize, t.dport);
}

/// One entry's columns, from column `base` of the row on (0 in
/// `conntrack`; after the event's own columns in `conntrack_events`).
pub fn append(r: &mut RowBuilder, ct: &Conntrack, ns: &sockql_collect::netns::Netns, base: usize) {
    use Col::*;
    r.u64(base + Col::Netns as usize, Some(ns.inode));
    r.str(base + NetnsName as usize, ns.name.as_deref());
    let proto = ct.orig.protocol.unwrap_or(0);
    r.u32(base + Id as usize, ct.id);
    r.str(base + Family as usize, Some(if ct.family == libc::AF_INET6 as u8 { "inet6" } else { "inet" }));
    match conntrack::protocol_name(proto) {
        Some(n) => r.str(base + Protocol as usize, Some(n)),
        None => r.display(base + Protocol as usize, &proto),
    }
    r.u8(base + ProtocolNum as usize, Some(proto));
    r.str(base + State as usize, ct.tcp_state.filter(|_| proto == 6).map(conntrack::tcp_state_name));
    r.u32(base + TimeoutS as usize, ct.timeout_s);
    tuple(r, base, &ct.orig, OrigSrc, OrigDst, OrigSport, OrigDport);
    tuple(r, base, &ct.reply, ReplySrc, ReplyDst, ReplySport, ReplyDport);
    r.u8(base + IcmpType as usize, ct.orig.icmp_type);
    r.u8(base + IcmpCode as usize, ct.orig.icmp_code);
    r.u16(base + IcmpId as usize, ct.orig.icmp_id);
    if r.wants(base + Status as usize) {
        r.str(base + Status as usize, ct.status.map(conntrack::status_names).as_deref());
    }
    let bit = |b: u32| ct.status.map(|s| s & b != 0);
    r.bool(base + Assured as usize, bit(conntrack::IPS_ASSURED));
    r.bool(base + SeenReply as usize, bit(conntrack::IPS_SEEN_REPLY));
    r.bool(base + Snat as usize, bit(conntrack::IPS_SRC_NAT));
    r.bool(base + Dnat as usize, bit(conntrack::IPS_DST_NAT));
    r.u32(base + Mark as usize, ct.mark);
    r.u16(base + Zone as usize, Some(ct.zone.unwrap_or(0)));
    r.u32(base + UseCount as usize, ct.use_count);
    r.u64(base + OrigPackets as usize, ct.orig_counters.packets);
    r.u64(base + OrigBytes as usize, ct.orig_counters.bytes);
    r.u64(base + ReplyPackets as usize, ct.reply_counters.packets);
    r.u64(base + ReplyBytes as usize, ct.reply_counters.bytes);
    r.timestamp_ms(base + StartTime as usize, ct.start_ns.map(|ns| (ns / 1_000_000) as i64));
    if r.wants(base + Labels as usize) {
        let labels = ct.labels.as_ref().map(|l| l.iter().map(u16::to_string).collect::<Vec<_>>().join(","));
        r.str(base + Labels as usize, labels.as_deref());
    }
    r.str(base + Secctx as usize, ct.secctx.as_deref());
}
