//! `packets`: a live capture of the current network namespace (every one
//! with `--all-netns`, or those a netns filter names), one row per
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
use crate::collect::netns::{self, Netns};
use crate::tables::{scope, SourceOptions};

pub const NAME: &str = "packets";
pub const ABOUT: &str = "Packets captured live while the query runs (tcpdump), headers only, bounded by --capture-for (default 10 s) or LIMIT";

/// One namespace's capture, and its interface names.
struct Target {
    ns: Netns,
    cap: LiveCapture,
    names: HashMap<u32, Option<String>>,
}

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
        filters.iter().map(|f| is_interface_filter(f) || is_bpf_filter(f) || scope::is_netns_filter(f)).collect()
    }

    fn exact(&self, filter: &Expr) -> bool {
        is_interface_filter(filter) || scope::is_netns_filter(filter)
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let filter_refs: Vec<&Expr> = filters.iter().collect();
        let interface = pinned_interface(&filter_refs);
        let conds = bpf_conds(&filter_refs);
        let duration = self.options.capture_for.unwrap_or(DEFAULT_DURATION);
        let targets = scope::targets(filters, self.options.all_netns());
        let projection = projection.cloned();
        let on = interface.clone().unwrap_or_else(|| "every interface".into());
        let bpf = match &conds {
            None => "none can match".to_string(),
            Some(c) => describe(c),
        };
        let label = format!(
            "packets: AF_PACKET {} on {} for {} bpf=[{bpf}] (limit {limit:?})",
            scope::describe(&targets),
            crate::notice::escape_controls(&on),
            humantime::format_duration(duration)
        );
        LivePartition::projected(Col::DEFS, projection.clone().as_deref(), label, move |sink| {
            let Some(conds) = &conds else { return Ok(()) };
            let prog = if conds.is_empty() { Vec::new() } else { compile(conds) };
            // One capture socket per namespace, each opened inside it (a
            // socket stays in the namespace it was made in).
            let mut caps: Vec<Target> = Vec::new();
            for ns in &targets {
                let opened = netns::run_in(ns, || -> anyhow::Result<Option<LiveCapture>> {
                    let ifindex = match &interface {
                        None => 0,
                        Some(name) => match nix::net::if_::if_nametoindex(name.as_str()) {
                            Ok(i) => i,
                            // No such interface here: no packet can match.
                            Err(_) => return Ok(None),
                        },
                    };
                    Ok(Some(LiveCapture::open(ifindex, &prog)?))
                });
                match opened {
                    Ok(Ok(Some(cap))) => caps.push(Target { ns: ns.clone(), cap, names: HashMap::new() }),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => crate::notice::note_once(
                        &format!("netns-enter-{}", ns.inode),
                        format!("cannot enter network namespace {} ({e}); its packets are missing", ns.name.clone().unwrap_or_else(|| ns.inode.to_string())),
                    ),
                }
            }
            let rows = RowBuilder::new(Col::DEFS, projection.as_deref(), BATCH_ROWS);
            let mut out = Emitter::new(rows, sink, limit);
            if caps.is_empty() {
                return out.finish();
            }
            crate::notice::note_once(
                "packets-capture",
                format!("capturing on {on} for {} (--capture-for; a LIMIT or Ctrl-C ends it sooner)", humantime::format_duration(duration)),
            );
            let deadline = Instant::now() + duration;
            let mut flows = Flows::default();
            let mut frame = 0u64;
            let mut fds: Vec<libc::pollfd> = caps.iter().map(|t| libc::pollfd { fd: t.cap.raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
            'capture: while !out.done() && Instant::now() < deadline {
                // SAFETY: poll(2) on descriptors `caps` owns, for at most 100 ms.
                let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
                if ready <= 0 {
                    continue;
                }
                for (t, pfd) in caps.iter_mut().zip(&fds) {
                    if pfd.revents == 0 {
                        continue;
                    }
                    let Some(p) = t.cap.next_packet()? else { continue };
                    let ns = &t.ns;
                    let name = t.names.entry(p.ifindex).or_insert_with(|| {
                        let idx = p.ifindex;
                        netns::run_in(ns, move || nix::net::if_::if_indextoname(idx).ok().map(|n| n.to_string_lossy().into_owned())).ok().flatten()
                    });
                    // On loopback the kernel hands every packet over twice,
                    // as sent and as received; libpcap (so tcpdump) keeps one.
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
                        netns: Some((ns.inode, ns.name.as_deref())),
                    };
                    append(&mut out.rows, &mut flows, frame, &meta, &d);
                    if out.end_row()?.is_break() {
                        break 'capture;
                    }
                }
            }
            // EXPLAIN ANALYZE's kernel_messages: the packets the kernel
            // passed to the sockets (after their filter).
            for t in &caps {
                if let Some((passed, dropped)) = t.cap.statistics() {
                    sink.metrics.read(Default::default(), crate::collect::netlink::Received { messages: passed as u64, bytes: 0 });
                    if dropped > 0 {
                        crate::notice::warn_once("packets-drops", format!("the kernel dropped {dropped} packets this capture could not keep up with"));
                    }
                }
            }
            out.finish()
        })
    }
}
