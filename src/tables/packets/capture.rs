//! `packets`: a live capture of the current network namespace, one row per
//! packet, for as long as the query reads it and never longer than
//! `--capture-for` (10 s unless given; said on stderr when the capture
//! starts). A LIMIT ends it at that many rows.
//!
//! Pushed down: `interface = 'NAME'` binds the capture to that interface
//! (Exact); `protocol`, `src_port`/`dst_port` comparisons and
//! `src_addr`/`dst_addr` equalities become a kernel socket filter (see
//! `collect::packets::bpf`; Inexact: DataFusion checks every row again).
//! Everything else is filtered after capture.

use std::collections::HashMap;
use std::time::Instant;

use datafusion::logical_expr::Expr;

use super::{append, Col, Meta};
use crate::collect::packets::{decode, Direction};
use crate::collect::packets::flows::Flows;
use crate::collect::packets::live::{LiveCapture, DEFAULT_DURATION};
use crate::tables::columns::{ColumnDef, RowBuilder};
use crate::collect::packets::bpf::{compile, describe, Cond};
use crate::tables::filters::{as_str, column_in_literals, int_range, is_int_range_filter};
use crate::tables::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::tables::live_table::LiveSource;
use crate::tables::SourceOptions;

pub const NAME: &str = "packets";
pub const ABOUT: &str = "Packets captured live while the query runs (tcpdump), headers only, bounded by --capture-for (default 10 s) or LIMIT";

#[derive(Debug)]
pub struct PacketsTable {
    options: SourceOptions,
}

impl PacketsTable {
    pub fn new(options: SourceOptions) -> Self {
        PacketsTable { options }
    }
}

/// The one interface `interface = '...'` names, if a filter does.
fn pinned_interface(filters: &[&Expr]) -> Option<String> {
    filters.iter().find_map(|f| match column_in_literals(f) {
        Some(("interface", v)) if v.len() == 1 => as_str(v[0]).map(str::to_string),
        _ => None,
    })
}

fn is_interface_filter(f: &Expr) -> bool {
    matches!(column_in_literals(f), Some(("interface", v)) if v.len() == 1 && as_str(v[0]).is_some())
}

/// The IP protocol number a `protocol` value names, as the column spells it.
fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        n => n.parse().ok(),
    }
}

/// Filters the kernel program can pre-apply.
fn is_bpf_filter(f: &Expr) -> bool {
    is_int_range_filter(f, "src_port")
        || is_int_range_filter(f, "dst_port")
        || matches!(column_in_literals(f), Some(("protocol" | "src_addr" | "dst_addr", v)) if v.len() == 1 && as_str(v[0]).is_some())
}

/// The kernel program's conditions; None when no packet can match.
fn bpf_conds(filters: &[&Expr]) -> Option<Vec<Cond>> {
    let mut conds = Vec::new();
    let mut addrs = Vec::new();
    for f in filters {
        let Some((column, v)) = column_in_literals(f) else { continue };
        let Some(text) = v.first().filter(|_| v.len() == 1).and_then(|v| as_str(v)) else { continue };
        match column {
            "protocol" => conds.push(Cond::Protocol(protocol_number(text)?)),
            "src_addr" => addrs.push(Cond::SrcAddr(text.parse().ok()?)),
            "dst_addr" => addrs.push(Cond::DstAddr(text.parse().ok()?)),
            _ => {}
        }
    }
    // Written as tcpdump would: protocol, ports, hosts.
    for (column, make) in [("src_port", Cond::SrcPort as fn(u16, u16) -> Cond), ("dst_port", Cond::DstPort)] {
        if let Some((lo, hi)) = int_range(filters, column) {
            let (lo, hi) = (lo.max(0), hi.min(65535));
            if lo > hi {
                return None;
            }
            conds.push(make(lo as u16, hi as u16));
        }
    }
    conds.extend(addrs);
    Some(conds)
}

impl LiveSource for PacketsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        filters.iter().map(|f| is_interface_filter(f) || is_bpf_filter(f)).collect()
    }

    fn exact(&self, filter: &Expr) -> bool {
        is_interface_filter(filter)
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let filter_refs: Vec<&Expr> = filters.iter().collect();
        let interface = pinned_interface(&filter_refs);
        let conds = bpf_conds(&filter_refs);
        let duration = self.options.capture_for.unwrap_or(DEFAULT_DURATION);
        let all_netns = self.options.all_netns();
        let projection = projection.cloned();
        let on = interface.clone().unwrap_or_else(|| "every interface".into());
        let bpf = match &conds {
            None => "none can match".to_string(),
            Some(c) => describe(c),
        };
        let label = format!(
            "packets: AF_PACKET on {} for {} bpf=[{bpf}] (limit {limit:?})",
            crate::notice::escape_controls(&on),
            humantime::format_duration(duration)
        );
        LivePartition::projected(Col::DEFS, projection.clone().as_deref(), label, move |sink| {
            if all_netns {
                crate::notice::warn_once("packets-netns", "packets captures in the current network namespace only (run sockql inside another with ip netns exec)");
            }
            let ifindex = match &interface {
                None => 0,
                Some(name) => match nix::net::if_::if_nametoindex(name.as_str()) {
                    Ok(i) => i,
                    // No such interface: no packet can match.
                    Err(_) => return Ok(()),
                },
            };
            let Some(conds) = &conds else { return Ok(()) };
            let prog = if conds.is_empty() { Vec::new() } else { compile(conds) };
            let mut cap = LiveCapture::open(ifindex, &prog)?;
            crate::notice::note_once(
                "packets-capture",
                format!("capturing on {on} for {} (--capture-for; a LIMIT or Ctrl-C ends it sooner)", humantime::format_duration(duration)),
            );
            let deadline = Instant::now() + duration;
            let rows = RowBuilder::new(Col::DEFS, projection.as_deref(), BATCH_ROWS);
            let mut out = Emitter::new(rows, sink, limit);
            let mut flows = Flows::default();
            let mut names: HashMap<u32, Option<String>> = HashMap::new();
            let mut frame = 0u64;
            while !out.done() && Instant::now() < deadline {
                let Some(p) = cap.next_packet()? else { continue };
                let name = names
                    .entry(p.ifindex)
                    .or_insert_with(|| nix::net::if_::if_indextoname(p.ifindex).ok().map(|n| n.to_string_lossy().into_owned()));
                // On loopback the kernel hands every packet over twice, as
                // sent and as received; libpcap (so tcpdump) keeps one.
                if p.direction == Direction::Out && name.as_deref() == Some("lo") {
                    continue;
                }
                frame += 1;
                let d = decode::decode_network(p.ether_type, p.data);
                let meta = Meta {
                    ts_ns: p.ts_ns,
                    interface: name.as_deref(),
                    ifindex: Some(p.ifindex),
                    direction: Some(p.direction),
                    length: p.length,
                    captured_length: p.data.len() as u32,
                };
                append(&mut out.rows, &mut flows, frame, &meta, &d);
                if out.end_row()?.is_break() {
                    break;
                }
            }
            // EXPLAIN ANALYZE's kernel_messages: the packets the kernel
            // passed to the socket (after its filter).
            if let Some((passed, dropped)) = cap.statistics() {
                sink.metrics.read(Default::default(), crate::collect::netlink::Received { messages: passed as u64, bytes: 0 });
                if dropped > 0 {
                    crate::notice::warn_once("packets-drops", format!("the kernel dropped {dropped} packets this capture could not keep up with"));
                }
            }
            out.finish()
        })
    }
}
