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
//!
//! Beyond the columns every packet source shares, a live capture says who
//! held each end on this host: `src_pid`/`src_process` (the socket that
//! sent the packet) and `dst_pid`/`dst_process` (the one that received
//! it), learned while the connection is open (see [`super::capture_owners`]),
//! so a report can name the worker that served a connection closed before
//! the capture ended.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::logical_expr::Expr;

use super::capture_owners::{CaptureOwners, EndKey};
use super::{append, Col, Meta};
use crate::columns::{joined, Column, ColumnDef, RowBuilder};
use crate::container_fill::{Cols, ContainerLookup};
use crate::filters::{as_str, column_in_literals, int_range, is_int_range_filter, port_range};
use crate::live::Emitter;
use crate::table_columns;
use crate::{scope, streams, Kind, Scan, SourceOptions, Table};
use sockql_collect::netns::{self, Netns};
use sockql_collect::packets::bpf::{compile, describe, Cond};
use sockql_collect::packets::flows::Flows;
use sockql_collect::packets::live::{snap_len, Captured, LiveCapture};
use sockql_collect::packets::{decode, Direction};

table_columns!(OwnerCol {
    SrcPid: "src_pid", I32, true, "Live capture: lowest pid holding the socket on this host that sent the packet, learned while the connection was open (sock_diag and /proc soon after its first packet); null before that, for a packet from elsewhere, a socket no process held (not accepted yet, or closed) or one opened and closed between two lookups";
    SrcProcess: "src_process", Utf8, true, "Live capture: command name of src_pid";
    DstPid: "dst_pid", I32, true, "Live capture: lowest pid holding the socket on this host that received the packet, learned as src_pid is; null as it is";
    DstProcess: "dst_process", Utf8, true, "Live capture: command name of dst_pid";
});

/// The live `packets` table's columns: those of every packet source, then
/// the holders a live capture learns ([`OwnerCol`]).
pub const COLUMNS: &[ColumnDef] = &joined::<{ Col::DEFS.len() + OwnerCol::DEFS.len() }>(Col::DEFS, OwnerCol::DEFS);

/// Fill the holder columns of the row being built: the sending end when
/// it is on this host (the packet went out, or over loopback), the
/// receiving end when it is (it came in). Returns the two holders' pids.
fn append_owners(
    r: &mut RowBuilder,
    owners: &mut CaptureOwners,
    netns: u64,
    local_out: bool,
    local_in: bool,
    d: &decode::Decoded,
) -> (Option<i32>, Option<i32>) {
    let ends = match (d.ip_protocol, d.src_addr, d.src_port, d.dst_addr, d.dst_port) {
        (Some(protocol @ (6 | 17)), Some(sa), Some(sp), Some(da), Some(dp)) => Some((protocol, (sa, sp), (da, dp))),
        _ => None,
    };
    let now = std::time::Instant::now();
    let closing = d.tcp.as_ref().is_some_and(|t| t.flags & (decode::FIN | decode::RST) != 0);
    let mut fill = |pid: OwnerCol, process: OwnerCol, key: Option<EndKey>| {
        let held = key.and_then(|k| owners.holder(k, closing, now));
        r.at(Col::DEFS.len(), |r| {
            r.i32(pid, held.as_ref().map(|h| h.0));
            r.str(process, held.as_ref().and_then(|h| h.1.as_deref()));
        });
        held.map(|h| h.0)
    };
    let src = fill(
        OwnerCol::SrcPid,
        OwnerCol::SrcProcess,
        ends.filter(|_| local_out).map(|(protocol, s, d)| EndKey { netns, protocol, local: s, remote: d }),
    );
    let dst = fill(
        OwnerCol::DstPid,
        OwnerCol::DstProcess,
        ends.filter(|_| local_in).map(|(protocol, s, d)| EndKey { netns, protocol, local: d, remote: s }),
    );
    (src, dst)
}

/// True if the query asked for a holder column.
fn wants_owners(r: &RowBuilder) -> bool {
    OwnerCol::ALL.iter().any(|&c| r.wants(Col::DEFS.len() + c.index()))
}

/// How long a capture lets packets gather after a wake before reading.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

/// Batches read from one ready socket before the others get their turn.
const TURN_BATCHES: usize = 16;

/// One namespace's capture, and its interface names.
struct Target {
    ns: Netns,
    cap: LiveCapture,
    names: HashMap<u32, Option<String>>,
}

/// How long a capture start waits for the kernel's receive stamps: the
/// workqueue that switches them on runs within milliseconds even on a
/// loaded machine.
const STAMP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Wait for the kernel to stamp packets on receive (a switch for the whole
/// host). If that cannot be seen, say so and go on: the first packets may
/// then carry the time they were read.
fn wait_for_stamps() {
    let why = match sockql_collect::packets::stamps::wait_for_receive_stamps(STAMP_WAIT) {
        Ok(true) => return,
        Ok(false) => format!("were not on after {}s", STAMP_WAIT.as_secs()),
        Err(e) => format!("cannot be checked ({e})"),
    };
    sockql_collect::notice::note_once(
        "capture-stamps",
        format!("kernel receive timestamps {why}: the first packets may carry the time sockql read them"),
    );
}

#[derive(Debug, Clone, Copy)]
pub struct PacketsTable;

/// One scan: the capture, and the LIMIT EXPLAIN shows.
pub struct Plan {
    capture: CapturePlan,
    limit: Option<usize>,
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
        if let Some(range) = port_range(filters, column) {
            let (lo, hi) = range?;
            conds.push(make(lo, hi));
        }
    }
    conds.extend(addrs);
    Some(conds)
}

/// A filter no packet can ever meet, named as the operator would write
/// it, with why: a protocol name the column never holds, an address that
/// does not parse, a port outside 0..65535. Capturing for it would run
/// the whole `--capture-for` for nothing (tcpdump refuses such filters).
fn impossible(f: &Expr) -> Option<String> {
    if let Some((column, v)) = column_in_literals(f) {
        if let Some(text) = v.first().filter(|_| v.len() == 1).and_then(|v| as_str(v)) {
            let shown = sockql_collect::notice::escape_controls(text);
            match column {
                "protocol" if protocol_number(text).is_none() => {
                    return Some(format!(
                        "protocol = '{shown}': no such protocol (tcp, udp, icmp, icmpv6 or a number up to 255)"
                    ))
                }
                "src_addr" | "dst_addr" if text.parse::<std::net::IpAddr>().is_err() => {
                    return Some(format!("{column} = '{shown}': not an IP address"))
                }
                _ => {}
            }
        }
    }
    for column in ["src_port", "dst_port"] {
        let Some((lo, hi)) = int_range(&[f], column) else { continue };
        if lo > hi.min(65535) || hi < lo.max(0) {
            let cond = match (lo, hi) {
                (lo, hi) if lo == hi => format!("{column} = {lo}"),
                (lo, i64::MAX) => format!("{column} >= {lo}"),
                (i64::MIN, hi) => format!("{column} <= {hi}"),
                (lo, hi) => format!("{column} BETWEEN {lo} AND {hi}"),
            };
            return Some(format!("{cond}: ports are 0 to 65535"));
        }
    }
    None
}

/// What a capture will do, decided from its filters: the same for the
/// `packets` table and for `sockql capture --out`.
#[derive(Debug, Clone)]
pub struct CapturePlan {
    pub targets: Vec<Netns>,
    pub interface: Option<String>,
    /// None: no packet can match.
    pub conds: Option<Vec<Cond>>,
    /// None: until Ctrl-C (`--follow`) or a LIMIT.
    pub duration: Option<std::time::Duration>,
    /// Keep whole packets (`--payload`), not only their headers.
    pub payload: bool,
    /// A filter no packet can meet, named (see [`impossible`]).
    impossible: Option<String>,
    /// The session's streams: its front end's Ctrl-C ends this capture.
    streams: std::sync::Arc<streams::Streams>,
}

impl CapturePlan {
    pub fn new(filters: &[Expr], options: &SourceOptions) -> Self {
        let refs: Vec<&Expr> = filters.iter().collect();
        CapturePlan {
            targets: scope::targets(filters, options),
            interface: pinned_interface(&refs),
            conds: bpf_conds(&refs),
            duration: streams::bound(options),
            payload: options.payload,
            impossible: refs.iter().find_map(|f| impossible(f)),
            streams: options.streams.clone(),
        }
    }

    /// Refuse, in one line naming it, a filter no packet can meet: one of
    /// [`impossible`], or an interface that none of the target namespaces
    /// has. `sockql capture --out` asks before it creates its file; a
    /// capture asks before it starts.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(why) = &self.impossible {
            anyhow::bail!("no packet can match {why}");
        }
        if let Some(name) = &self.interface {
            let here = |ns: &Netns| {
                netns::run_in(ns, || nix::net::if_::if_nametoindex(name.as_str()).is_ok()).unwrap_or(false)
            };
            if !self.targets.iter().any(here) {
                anyhow::bail!("{}", self.no_such_interface(name));
            }
        }
        Ok(())
    }

    fn no_such_interface(&self, name: &str) -> String {
        format!(
            "no packet can match interface = '{}': no such interface in {}",
            sockql_collect::notice::escape_controls(name),
            scope::describe(&self.targets)
        )
    }

    /// True if the plan applies `filter` itself (interface and namespace
    /// exactly, the rest as a kernel pre-filter).
    pub fn takes(filter: &Expr) -> bool {
        is_interface_filter(filter) || is_bpf_filter(filter) || scope::is_netns_filter(filter)
    }

    fn on(&self) -> String {
        self.interface.clone().unwrap_or_else(|| "every interface".into())
    }

    /// How EXPLAIN shows it.
    pub fn describe(&self) -> String {
        let bpf = match &self.conds {
            None => "none can match".to_string(),
            Some(c) => describe(c),
        };
        format!(
            "AF_PACKET {} on {} {} bpf=[{bpf}]",
            scope::describe(&self.targets),
            sockql_collect::notice::escape_controls(&self.on()),
            streams::describe(self.duration)
        )
    }

    /// Capture until the duration ends, `between` (run after every wait,
    /// at least every 100 ms) or `on_packet` breaks, handing each packet
    /// over with its namespace and interface name. Returns the packets the
    /// kernel passed to the sockets (after their filter).
    pub fn run(
        &self,
        between: impl FnMut() -> anyhow::Result<ControlFlow<()>>,
        mut on_packet: impl FnMut(&Netns, Option<&str>, &Captured<'_>) -> anyhow::Result<ControlFlow<()>>,
    ) -> anyhow::Result<u64> {
        if let Some(why) = &self.impossible {
            anyhow::bail!("no packet can match {why}");
        }
        let Some(conds) = &self.conds else { return Ok(0) };
        let prog = if conds.is_empty() { Vec::new() } else { compile(conds) };
        // One capture socket per namespace, each opened inside it (a
        // socket stays in the namespace it was made in).
        let mut caps: Vec<Target> = scope::open_in_each(&self.targets, |_| {
            let ifindex = match &self.interface {
                None => 0,
                Some(name) => match nix::net::if_::if_nametoindex(name.as_str()) {
                    Ok(i) => i,
                    // No such interface here: no packet can match.
                    Err(_) => return Ok(None),
                },
            };
            Ok(Some(LiveCapture::open(ifindex, &prog, snap_len(self.payload))?))
        })?
        .into_iter()
        .map(|(ns, cap)| Target { ns, cap, names: HashMap::new() })
        .collect();
        if caps.is_empty() {
            if let Some(name) = self.interface.as_deref().filter(|_| !self.targets.is_empty()) {
                anyhow::bail!("{}", self.no_such_interface(name));
            }
            return Ok(0);
        }
        // The sockets asked for kernel timestamps but receive nothing yet:
        // bound only once the kernel stamps packets on receive, so no row
        // carries the time sockql read it (see collect::packets::stamps).
        wait_for_stamps();
        for t in &caps {
            t.cap.start()?;
        }
        streams::note_start(
            &format!("capturing on {}", sockql_collect::notice::escape_controls(&self.on())),
            self.duration,
        );
        let fds: Vec<_> = caps.iter().map(|t| t.cap.raw_fd()).collect();
        // A burst gathers before it is read, as libpcap's ring lets it with
        // its block timeout: at tens of thousands of packets a second, one
        // wake and one read then take a batch, instead of a wake and reads
        // per packet. Rows are at most COALESCE late.
        streams::poll_for(
            &self.streams,
            &fds,
            self.duration,
            COALESCE,
            |i| {
                let t = &mut caps[i];
                // What waits, a batch at a time; a few batches per socket
                // per turn, so one busy namespace does not starve the rest.
                for _ in 0..TURN_BATCHES {
                    let n = t.cap.read_batch()?;
                    for i in 0..n {
                        let p = t.cap.packet(i);
                        let ns = &t.ns;
                        let name = t.names.entry(p.ifindex).or_insert_with(|| {
                            let idx = p.ifindex;
                            netns::run_in(ns, move || {
                                nix::net::if_::if_indextoname(idx).ok().map(|n| n.to_string_lossy().into_owned())
                            })
                            .ok()
                            .flatten()
                        });
                        // On loopback the kernel hands every packet over
                        // twice, as sent and as received; libpcap (so
                        // tcpdump) keeps one.
                        if p.direction == Direction::Out && name.as_deref() == Some("lo") {
                            continue;
                        }
                        if on_packet(ns, name.as_deref(), &p)?.is_break() {
                            return Ok(ControlFlow::Break(()));
                        }
                    }
                    // A part batch: the queue is empty now.
                    if n < t.cap.batch_size() {
                        break;
                    }
                }
                Ok(ControlFlow::Continue(()))
            },
            between,
        )?;
        let mut passed = 0u64;
        for t in &caps {
            if let Some((n, dropped)) = t.cap.statistics() {
                passed += n as u64;
                if dropped > 0 {
                    sockql_collect::notice::warn_once(
                        "packets-drops",
                        format!("the kernel dropped {dropped} packets this capture could not keep up with"),
                    );
                }
            }
        }
        Ok(passed)
    }
}

impl Table for PacketsTable {
    const NAME: &'static str = "packets";
    const ABOUT: &'static str = "Packets captured live while the query runs (tcpdump), headers only unless --payload, bounded by --capture-for (default 10 s) or LIMIT";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = COLUMNS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        let capture = CapturePlan::new(scan.filters, scan.options);
        super::note_payload_hidden(scan.projection, capture.payload);
        Plan { capture, limit: scan.limit }
    }

    fn label(&self, plan: &Plan) -> String {
        format!("packets: {} (limit {:?})", plan.capture.describe(), plan.limit)
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let (plan, payload) = (&plan.capture, plan.capture.payload);
        // Shared by the idle check and the packet handler, which run
        // one after the other.
        let out = std::cell::RefCell::new(out);
        // Connections are followed per namespace: the same addresses
        // and ports in two namespaces are two connections.
        let mut flows: HashMap<u64, Flows> = HashMap::new();
        let track = super::follows_flows(&out.borrow().rows);
        // Who holds each end, looked up between reads: only when asked.
        let ctr_cols = Cols { name: Col::Container, id: Col::ContainerId };
        let mut containers = ContainerLookup::for_stream(&out.borrow().rows, ctr_cols);
        // Holders for the container columns only where a container shares
        // a namespace without owning it (--network host); elsewhere the
        // namespace names the packet.
        let shared = plan.targets.iter().any(|ns| containers.shares_namespace(ns.inode));
        let owners =
            (wants_owners(&out.borrow().rows) || shared).then(|| std::cell::RefCell::new(CaptureOwners::default()));
        let targets: Vec<&sockql_collect::netns::Netns> = plan.targets.iter().collect();
        let mut frame = 0u64;
        // Between waits: the ends first seen are looked up, rows built
        // so far go out, and a consumer that went away (a LIMIT met
        // above a filter) ends the capture.
        let between = || {
            if let Some(owners) = &owners {
                owners.borrow_mut().pass(&targets);
            }
            let mut o = out.borrow_mut();
            o.tick()?;
            Ok(o.flow())
        };
        let passed = plan.run(between, |ns, name, p| {
            let mut out = out.borrow_mut();
            if out.done() {
                return Ok(ControlFlow::Break(()));
            }
            frame += 1;
            let d = decode::decode_network(p.ether_type, p.data).on_wire(p.data.len(), p.length);
            // The holder columns first: the container is named by them.
            let (mut src, mut dst) = (None, None);
            if let Some(owners) = &owners {
                // Over loopback both ends are on this host.
                let lo = name == Some("lo");
                let (local_out, local_in) = (lo || p.direction == Direction::Out, lo || p.direction == Direction::In);
                (src, dst) = append_owners(&mut out.rows, &mut owners.borrow_mut(), ns.inode, local_out, local_in, &d);
            }
            let ctr = if containers.wanted() {
                // By a holder's process (src_pid, else dst_pid), else by
                // the namespace the packet was captured in.
                let by_pid = [src, dst].into_iter().flatten().find_map(|pid| containers.of_process(pid));
                by_pid.or_else(|| containers.of_live_netns(ns.inode))
            } else {
                None
            };
            let meta = Meta {
                ts_ns: Some(p.ts_ns),
                interface: name,
                ifindex: Some(p.ifindex),
                direction: Some(p.direction),
                length: p.length,
                captured_length: p.data.len() as u32,
                netns: Some((ns.inode, ns.name.as_deref())),
                payload: payload.then(|| d.payload.clone().and_then(|r| p.data.get(r))).flatten(),
                container: ctr.as_ref().map(|c| (c.0.as_deref(), c.1.as_str())),
            };
            append(&mut out.rows, track.then(|| flows.entry(ns.inode).or_default()), frame, &meta, &d);
            out.end_row()
        })?;
        // EXPLAIN ANALYZE's kernel_messages.
        out.borrow().count(Default::default(), sockql_collect::netlink::Received { messages: passed, bytes: 0 });
        Ok(())
    }
}
