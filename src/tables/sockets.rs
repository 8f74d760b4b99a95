//! `sockets`: every TCP and UDP socket of the current network namespace.
//!
//! Source: NETLINK_SOCK_DIAG inet_diag dumps: one for TCP of both families
//! (the kernel walks its TCP table once per request), one per family for
//! UDP; per dump, /proc/net/{tcp,tcp6,udp,udp6} where netlink is refused.
//!
//! Pushed down (all Inexact: DataFusion re-checks the rows):
//! - `state = '…'` / `state IN (…)` become the kernel's state bitmask;
//! - `protocol` and `family` equalities choose which dumps run at all;
//! - port comparisons (=, <, <=, >, >=, BETWEEN, IN as its min..max) and
//!   address equalities become an inet_diag filter program
//!   (INET_DIAG_REQ_BYTECODE), so the kernel sends only matching sockets.
//!
//! Projection decides the work: tcp_info, congestion and memory are asked
//! of the kernel only when their columns are used, and the /proc fd walk
//! behind `pid` and `process` runs only when one of them is used.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CStr;
use std::fmt;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Mutex;

use datafusion::error::Result;
use datafusion::logical_expr::Expr;

use crate::collect::inet_diag::{self, Cond, Extensions, InetDiagMsg};
use crate::collect::{proc_net, sock_diag::SockDiag, tcp_state};
use crate::notice;
use crate::table_columns;
use crate::tables::columns::{ColumnDef, RowBuilder};
use crate::tables::filters::{as_str, column_in_literals, int_range, is_int_range_filter};
use crate::tables::live_table::LiveSource;
use crate::tables::live::{BatchSink, Emitter, LivePartition, BATCH_ROWS};
use crate::collect::netns::Netns;
use crate::tables::{owner_fill, scope};
use crate::tables::SourceOptions;

table_columns!(Col {
    Protocol: "protocol", Utf8, false, "Transport protocol: 'tcp' or 'udp'";
    Family: "family", Utf8, false, "Address family: 'inet' (IPv4) or 'inet6' (IPv6, including IPv4-mapped)";
    State: "state", Utf8, false, "State as ss prints it: ESTAB, LISTEN, SYN-SENT, SYN-RECV, FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, CLOSE-WAIT, LAST-ACK, CLOSING, UNCONN";
    LocalAddr: "local_addr", Utf8, false, "Local IP address (IPv6 without brackets; 0.0.0.0 or :: for a wildcard bind)";
    LocalPort: "local_port", U16, false, "Local port";
    RemoteAddr: "remote_addr", Utf8, false, "Peer IP address (0.0.0.0 or :: when there is no peer, e.g. LISTEN)";
    RemotePort: "remote_port", U16, false, "Peer port (0 when there is no peer)";
    Interface: "interface", Utf8, true, "Interface the socket is bound to (SO_BINDTODEVICE or IPv6 scope), null if none";
    RecvQ: "recv_q", U32, false, "Bytes received but not read by the application; for LISTEN, connections waiting in the accept queue";
    SendQ: "send_q", U32, true, "Bytes sent but not acknowledged; for LISTEN, the accept-queue limit (backlog)";
    Uid: "uid", U32, false, "User id that created the socket";
    Inode: "inode", U64, false, "Socket inode, the key to socket_owners (0 for TIME-WAIT and SYN-RECV request sockets, which no process holds)";
    Cookie: "cookie", U64, true, "Kernel socket cookie, unique while the socket lives";
    Timer: "timer", Utf8, true, "Pending timer as ss -o names it: on (retransmit), keepalive, timewait, persist (zero-window probe); null if none";
    TimerExpiresMs: "timer_expires_ms", U32, true, "Milliseconds until the pending timer fires";
    Retransmits: "retransmits", U32, true, "Unrecovered retransmission timeouts of the pending timer";
    Pid: "pid", I32, true, "Lowest pid holding the socket (as ss -p shows); null if no process holds it or it is not visible to us";
    Process: "process", Utf8, true, "Command name (comm) of pid";
    RttMs: "rtt_ms", F64, true, "Smoothed round-trip time, ms (tcp_info)";
    RttvarMs: "rttvar_ms", F64, true, "Round-trip time variation, ms";
    RtoMs: "rto_ms", F64, true, "Retransmission timeout, ms";
    Mss: "mss", U32, true, "Send maximum segment size, bytes";
    Cwnd: "cwnd", U32, true, "Congestion window, segments";
    Ssthresh: "ssthresh", U32, true, "Slow-start threshold, segments (null while infinite, as ss omits it)";
    TotalRetrans: "total_retrans", U32, true, "Segments retransmitted over the connection's life";
    Lost: "lost", U32, true, "Segments currently considered lost";
    Unacked: "unacked", U32, true, "Segments in flight (sent, not acknowledged); for LISTEN, the accept queue length";
    BytesSent: "bytes_sent", U64, true, "Bytes sent, including retransmissions";
    BytesAcked: "bytes_acked", U64, true, "Bytes acknowledged by the peer";
    BytesReceived: "bytes_received", U64, true, "Bytes received";
    BytesRetrans: "bytes_retrans", U64, true, "Bytes retransmitted";
    SegsIn: "segs_in", U32, true, "Segments received";
    SegsOut: "segs_out", U32, true, "Segments sent";
    LastSendMs: "last_send_ms", U32, true, "Milliseconds since data was last sent";
    LastRecvMs: "last_recv_ms", U32, true, "Milliseconds since data was last received";
    LastAckMs: "last_ack_ms", U32, true, "Milliseconds since an ACK was last received";
    DeliveryRateBps: "delivery_rate_bps", U64, true, "Most recent goodput measurement, bits per second";
    PacingRateBps: "pacing_rate_bps", U64, true, "Pacing rate, bits per second";
    MinRttMs: "min_rtt_ms", F64, true, "Minimum round-trip time seen, ms";
    BusyMs: "busy_ms", U64, true, "Time spent busy sending data, ms";
    Congestion: "congestion", Utf8, true, "Congestion control algorithm (cubic, bbr, ...)";
    RmemAlloc: "rmem_alloc", U32, true, "Receive memory allocated, bytes (skmem r)";
    RcvBuf: "rcv_buf", U32, true, "Receive buffer limit, bytes (skmem rb)";
    WmemAlloc: "wmem_alloc", U32, true, "Send memory allocated, bytes (skmem t)";
    SndBuf: "snd_buf", U32, true, "Send buffer limit, bytes (skmem tb)";
    FwdAlloc: "fwd_alloc", U32, true, "Memory reserved ahead, bytes (skmem f)";
    WmemQueued: "wmem_queued", U32, true, "Memory queued for sending, bytes (skmem w)";
    Drops: "drops", U32, true, "Packets dropped before reaching the socket (skmem d)";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net); see the netns table";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns (ip netns), null if unnamed";
});

pub const NAME: &str = "sockets";
pub const ABOUT: &str = "Every TCP and UDP socket (ss -tuna, netstat, lsof -i), with tcp_info, memory and owning process";

const TCP_INFO_COLS: &[Col] = &[
    Col::RttMs, Col::RttvarMs, Col::RtoMs, Col::Mss, Col::Cwnd, Col::Ssthresh, Col::TotalRetrans,
    Col::Lost, Col::Unacked, Col::BytesSent, Col::BytesAcked, Col::BytesReceived, Col::BytesRetrans,
    Col::SegsIn, Col::SegsOut, Col::LastSendMs, Col::LastRecvMs, Col::LastAckMs,
    Col::DeliveryRateBps, Col::PacingRateBps, Col::MinRttMs, Col::BusyMs,
];
const MEM_COLS: &[Col] = &[
    Col::RmemAlloc, Col::RcvBuf, Col::WmemAlloc, Col::SndBuf, Col::FwdAlloc, Col::WmemQueued, Col::Drops,
];

/// What a scan will do, decided from its projection and filters.
#[derive(Debug, Clone)]
struct ScanPlan {
    dumps: Vec<(u8, u8)>,
    conds: Vec<Cond>,
    states: u32,
    extensions: Extensions,
    owners: bool,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
    no_netlink: bool,
    targets: Vec<Netns>,
}

impl fmt::Display for ScanPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dumps: Vec<String> = self
            .dumps
            .iter()
            .map(|&(p, fam)| format!("{}/{}", protocol_name(p), family_name(fam)))
            .collect();
        write!(
            f,
            "sockets: {} {} dumps=[{}] states={:#x} bytecode=[{}] tcp_info={} congestion={} meminfo={} owners={}",
            if self.no_netlink { "/proc/net" } else { "sock_diag" },
            scope::describe(&self.targets),
            dumps.join(","),
            self.states,
            self.conds.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(" AND "),
            self.extensions.tcp_info,
            self.extensions.congestion,
            self.extensions.meminfo,
            self.owners
        )
    }
}

fn protocol_name(p: u8) -> &'static str {
    if p == inet_diag::IPPROTO_TCP { "tcp" } else { "udp" }
}

fn family_name(f: u8) -> &'static str {
    match f {
        inet_diag::AF_INET => "inet",
        inet_diag::AF_INET6 => "inet6",
        _ => "inet+inet6",
    }
}

/// The families one dump covers (AF_UNSPEC: both, in one TCP walk).
fn families_of(f: u8) -> &'static [u8] {
    match f {
        inet_diag::AF_INET => &[inet_diag::AF_INET],
        inet_diag::AF_INET6 => &[inet_diag::AF_INET6],
        _ => &[inet_diag::AF_INET, inet_diag::AF_INET6],
    }
}

/// Fold the two per-family TCP dumps into one (TCP, AF_UNSPEC) dump: the
/// kernel walks its TCP hash tables once per request, whatever the family,
/// so this halves the kernel's work for a TCP scan (BENCHMARKS.md). UDP has
/// no such request.
fn merge_tcp_families(dumps: &mut Vec<(u8, u8)>) {
    let tcp = |f: u8| (inet_diag::IPPROTO_TCP, f);
    if let (Some(v4), true) = (dumps.iter().position(|&d| d == tcp(inet_diag::AF_INET)), dumps.contains(&tcp(inet_diag::AF_INET6))) {
        dumps[v4] = tcp(inet_diag::AF_UNSPEC);
        dumps.retain(|&d| d != tcp(inet_diag::AF_INET6));
    }
}

/// What the filters allow, as far as the kernel can be told.
#[derive(Debug)]
struct Pushed {
    states: u32,
    protocols: Option<Vec<String>>,
    families: Option<Vec<String>>,
    /// Conditions for the kernel's filter program.
    conds: Vec<Cond>,
    /// A filter no socket can pass (an empty port range, two different
    /// addresses): no dump needs to run.
    impossible: bool,
}

/// Every filter must hold, so a second filter on the same column leaves
/// only the values both allow.
fn narrow(set: &mut Option<Vec<String>>, wanted: &[&str]) {
    *set = Some(match set.take() {
        Some(prev) => prev.into_iter().filter(|v| wanted.contains(&v.as_str())).collect(),
        None => wanted.iter().map(|v| v.to_string()).collect(),
    });
}

/// The address a filter set pins `column` to, if any.
fn pinned_addr(filters: &[&Expr], column: &str) -> Option<Result<IpAddr, ()>> {
    let mut found: Option<Result<IpAddr, ()>> = None;
    for f in filters {
        if let Some((c, values)) = column_in_literals(f) {
            if c != column || values.len() != 1 {
                continue;
            }
            // A string that is no address matches no row.
            let a = as_str(values[0]).map(|s| s.parse::<IpAddr>().map_err(|_| ()));
            if let Some(a) = a {
                found = Some(match found {
                    Some(prev) if prev != a => Err(()),
                    _ => a,
                });
            }
        }
    }
    found
}

/// Port conditions for a column's range within 0..=65535.
fn port_conds(range: Option<(i64, i64)>, ge: fn(u16) -> Cond, le: fn(u16) -> Cond, out: &mut Vec<Cond>) -> bool {
    let Some((lo, hi)) = range else { return true };
    let (lo, hi) = (lo.max(0), hi.min(65535));
    if lo > hi {
        return false;
    }
    if lo > 0 {
        out.push(ge(lo as u16));
    }
    if hi < 65535 {
        out.push(le(hi as u16));
    }
    true
}

/// Filters the kernel can apply (DataFusion still re-checks them).
fn is_pushable(f: &Expr) -> bool {
    scope::is_netns_filter(f) || matches!(column_in_literals(f), Some(("state" | "protocol" | "family", _)))
        || matches!(column_in_literals(f), Some(("local_addr" | "remote_addr", v)) if v.len() == 1)
        || is_int_range_filter(f, "local_port")
        || is_int_range_filter(f, "remote_port")
}

#[derive(Debug)]
pub struct SocketsTable {
    options: SourceOptions,
    warned: Mutex<HashSet<String>>,
}

impl SocketsTable {
    pub fn new(options: SourceOptions) -> Self {
        SocketsTable { options, warned: Mutex::default() }
    }

    /// Warn (once per name) about a state comparison that can never match.
    fn check_state_names(&self, names: &[&str]) {
        for name in names.iter().filter(|n| tcp_state::bits(n).is_none()) {
            let first = self.warned.lock().map(|mut w| w.insert(name.to_string())).unwrap_or(false);
            if first {
                let hint = match name.to_ascii_uppercase().as_str() {
                    "ESTABLISHED" => " (ss spells it ESTAB)".to_string(),
                    "CLOSED" | "CLOSE" => " (ss spells it UNCONN)".to_string(),
                    upper if tcp_state::bits(&upper.replace('_', "-")).is_some() => {
                        format!(" (did you mean '{}'?)", upper.replace('_', "-"))
                    }
                    _ => String::new(),
                };
                eprintln!(
                    "sockql: warning: '{name}' is not a socket state{hint}, so it matches no row; states are: {}",
                    tcp_state::ALL.join(", ")
                );
            }
        }
    }

    /// Fold every filter the kernel can apply into one description.
    fn pushed(&self, filters: &[&Expr]) -> Pushed {
        let mut p = Pushed { states: tcp_state::ALL_BITS, protocols: None, families: None, conds: Vec::new(), impossible: false };
        let ok_local = port_conds(int_range(filters, "local_port"), Cond::LocalPortGe, Cond::LocalPortLe, &mut p.conds);
        let ok_remote = port_conds(int_range(filters, "remote_port"), Cond::RemotePortGe, Cond::RemotePortLe, &mut p.conds);
        p.impossible = !ok_local || !ok_remote;
        for (column, cond) in [("local_addr", Cond::LocalAddr as fn(IpAddr) -> Cond), ("remote_addr", Cond::RemoteAddr)] {
            match pinned_addr(filters, column) {
                None => {}
                Some(Err(())) => p.impossible = true,
                Some(Ok(a)) => {
                    // The column prints IPv4-mapped IPv6 addresses as
                    // ::ffff:a.b.c.d, so an IPv4 literal only matches inet
                    // sockets and an IPv6 literal only inet6 ones.
                    narrow(&mut p.families, &[if a.is_ipv4() { "inet" } else { "inet6" }]);
                    p.conds.push(cond(a));
                }
            }
        }
        for f in filters {
            let Some((column, values)) = column_in_literals(f) else { continue };
            let strings: Option<Vec<&str>> = values.iter().map(|v| as_str(v)).collect();
            let Some(strings) = strings else { continue };
            match column {
                "state" => {
                    self.check_state_names(&strings);
                    p.states &= strings.iter().filter_map(|s| tcp_state::bits(s)).fold(0, |a, b| a | b);
                }
                "protocol" => narrow(&mut p.protocols, &strings),
                "family" => narrow(&mut p.families, &strings),
                _ => {}
            }
        }
        p
    }

    fn plan(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> ScanPlan {
        let pushed = self.pushed(&filters.iter().collect::<Vec<_>>());
        let allows = |set: &Option<Vec<String>>, v: &str| set.as_ref().is_none_or(|s| s.iter().any(|x| x == v));
        let mut dumps = crate::collect::sock_diag::ALL_DUMPS
            .into_iter()
            .filter(|&(p, f)| allows(&pushed.protocols, protocol_name(p)) && allows(&pushed.families, family_name(f)))
            .filter(|_| pushed.states != 0 && !pushed.impossible)
            .collect();
        merge_tcp_families(&mut dumps);
        let uses = |cols: &[Col]| match projection {
            None => true,
            Some(p) => cols.iter().any(|c| p.contains(&(*c as usize))),
        };
        ScanPlan {
            dumps,
            conds: pushed.conds,
            states: pushed.states,
            extensions: Extensions {
                tcp_info: uses(TCP_INFO_COLS),
                congestion: uses(&[Col::Congestion]),
                meminfo: uses(MEM_COLS),
            },
            owners: uses(&[Col::Pid, Col::Process]),
            projection: projection.cloned(),
            limit,
            no_netlink: self.options.no_netlink,
            targets: scope::targets(filters, self.options.all_netns()),
        }
    }
}

impl LiveSource for SocketsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        // Run the analysis once here too, so that a bad state name warns
        // even when the scan is never reached.
        self.pushed(filters);
        filters.iter().map(|f| is_pushable(f)).collect()
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let plan = self.plan(projection, filters, limit);
        LivePartition::projected(Col::DEFS, plan.projection.clone().as_deref(), plan.to_string(), move |sink| produce(&plan, sink))
    }
}

/// Interface index → name, cached per scan.
#[derive(Default)]
struct Interfaces(HashMap<u32, Option<String>>);

impl Interfaces {
    fn name(&mut self, index: u32) -> Option<&str> {
        if index == 0 {
            return None;
        }
        self.0
            .entry(index)
            .or_insert_with(|| {
                let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
                // SAFETY: buf is IF_NAMESIZE bytes as if_indextoname requires.
                let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
                if p.is_null() {
                    return Some(index.to_string());
                }
                // SAFETY: on success buf holds a NUL-terminated name.
                Some(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
            })
            .as_deref()
    }
}

/// The columns both sources fill.
struct CommonRow {
    protocol: u8,
    family: u8,
    state: u8,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    recv_q: u32,
    send_q: Option<u32>,
    uid: u32,
    inode: u64,
    timer: u8,
    expires_ms: u32,
    retransmits: u32,
}

fn timer_name(timer: u8) -> Option<&'static str> {
    match timer {
        1 => Some("on"),
        2 => Some("keepalive"),
        3 => Some("timewait"),
        4 => Some("persist"),
        _ => None,
    }
}

fn append_common(r: &mut RowBuilder, c: &CommonRow, ns: &Netns) {
    use Col::*;
    r.u64(Col::Netns as usize, Some(ns.inode));
    r.str(NetnsName as usize, ns.name.as_deref());
    r.str(Protocol as usize, Some(protocol_name(c.protocol)));
    r.str(Family as usize, Some(family_name(c.family)));
    r.str(State as usize, Some(tcp_state::name(c.state)));
    r.display(LocalAddr as usize, &c.local.0);
    r.u16(LocalPort as usize, Some(c.local.1));
    r.display(RemoteAddr as usize, &c.remote.0);
    r.u16(RemotePort as usize, Some(c.remote.1));
    r.u32(RecvQ as usize, Some(c.recv_q));
    r.u32(SendQ as usize, c.send_q);
    r.u32(Uid as usize, Some(c.uid));
    r.u64(Inode as usize, Some(c.inode));
    let timer = timer_name(c.timer);
    r.str(Timer as usize, timer);
    r.u32(TimerExpiresMs as usize, timer.map(|_| c.expires_ms));
    r.u32(Retransmits as usize, Some(c.retransmits));
    // pid and process are filled after the dump: see `with_owners`.
}

fn us_to_ms(us: Option<u32>) -> Option<f64> {
    us.map(|v| v as f64 / 1000.0)
}

fn append_diag(r: &mut RowBuilder, protocol: u8, m: &InetDiagMsg<'_>, ifs: &mut Interfaces, ns: &Netns) {
    use Col::*;
    let common = CommonRow {
        protocol,
        family: m.family(),
        state: m.state(),
        local: (m.local_addr(), m.local_port()),
        remote: (m.remote_addr(), m.remote_port()),
        recv_q: m.recv_q(),
        send_q: Some(m.send_q()),
        uid: m.uid(),
        inode: m.inode() as u64,
        timer: m.timer(),
        expires_ms: m.expires_ms(),
        retransmits: m.retransmits() as u32,
    };
    append_common(r, &common, ns);
    if r.wants(Interface as usize) {
        r.str(Interface as usize, ifs.name(m.interface()));
    }
    r.u64(Cookie as usize, Some(m.cookie()));

    let ti = m.tcp_info();
    let t = |f: &dyn Fn(&inet_diag::TcpInfo<'_>) -> Option<u32>| ti.as_ref().and_then(f);
    let t64 = |f: &dyn Fn(&inet_diag::TcpInfo<'_>) -> Option<u64>| ti.as_ref().and_then(f);
    r.f64(RttMs as usize, us_to_ms(t(&|i| i.rtt_us())));
    r.f64(RttvarMs as usize, us_to_ms(t(&|i| i.rttvar_us())));
    r.f64(RtoMs as usize, us_to_ms(t(&|i| i.rto_us())));
    r.u32(Mss as usize, t(&|i| i.snd_mss()));
    r.u32(Cwnd as usize, t(&|i| i.snd_cwnd()));
    r.u32(Ssthresh as usize, t(&|i| i.snd_ssthresh()).filter(|&v| v < 0x7fff_ffff));
    r.u32(TotalRetrans as usize, t(&|i| i.total_retrans()));
    r.u32(Lost as usize, t(&|i| i.lost()));
    r.u32(Unacked as usize, t(&|i| i.unacked()));
    r.u64(BytesSent as usize, t64(&|i| i.bytes_sent()));
    r.u64(BytesAcked as usize, t64(&|i| i.bytes_acked()));
    r.u64(BytesReceived as usize, t64(&|i| i.bytes_received()));
    r.u64(BytesRetrans as usize, t64(&|i| i.bytes_retrans()));
    r.u32(SegsIn as usize, t(&|i| i.segs_in()));
    r.u32(SegsOut as usize, t(&|i| i.segs_out()));
    r.u32(LastSendMs as usize, t(&|i| i.last_data_sent_ms()));
    r.u32(LastRecvMs as usize, t(&|i| i.last_data_recv_ms()));
    r.u32(LastAckMs as usize, t(&|i| i.last_ack_recv_ms()));
    r.u64(DeliveryRateBps as usize, t64(&|i| i.delivery_rate()).map(|v| v.saturating_mul(8)));
    r.u64(PacingRateBps as usize, t64(&|i| i.pacing_rate()).filter(|&v| v != u64::MAX).map(|v| v.saturating_mul(8)));
    r.f64(MinRttMs as usize, us_to_ms(t(&|i| i.min_rtt_us())).filter(|&v| v < 4_294_967.0));
    r.u64(BusyMs as usize, t64(&|i| i.busy_time_us()).map(|v| v / 1000));
    r.str(Congestion as usize, m.congestion());
    let mem = m.meminfo();
    let mi = |f: &dyn Fn(&inet_diag::MemInfo<'_>) -> Option<u32>| mem.as_ref().and_then(f);
    r.u32(RmemAlloc as usize, mi(&|x| x.rmem_alloc()));
    r.u32(RcvBuf as usize, mi(&|x| x.rcv_buf()));
    r.u32(WmemAlloc as usize, mi(&|x| x.wmem_alloc()));
    r.u32(SndBuf as usize, mi(&|x| x.snd_buf()));
    r.u32(FwdAlloc as usize, mi(&|x| x.fwd_alloc()));
    r.u32(WmemQueued as usize, mi(&|x| x.wmem_queued()));
    r.u32(Drops as usize, mi(&|x| x.drops()));
}

/// Fill every column the /proc/net row does not carry with null.
fn append_proc(r: &mut RowBuilder, protocol: u8, family: u8, s: &proc_net::ProcNetSocket, hz: u64, ns: &Netns) {
    let common = CommonRow {
        protocol,
        family,
        state: s.state,
        local: (s.local_addr, s.local_port),
        remote: (s.remote_addr, s.remote_port),
        recv_q: s.rx_queue,
        // /proc/net/tcp has no backlog for listeners; it prints 0 there.
        send_q: if s.state == 10 && protocol == inet_diag::IPPROTO_TCP { None } else { Some(s.tx_queue) },
        uid: s.uid,
        inode: s.inode,
        timer: s.timer,
        expires_ms: (s.timer_ticks.saturating_mul(1000) / hz.max(1)).min(u32::MAX as u64) as u32,
        retransmits: s.retransmits,
    };
    append_common(r, &common, ns);
    for c in TCP_INFO_COLS.iter().chain(MEM_COLS).chain(&[Col::Congestion, Col::Interface, Col::Cookie]) {
        match c.def_ty() {
            crate::tables::columns::Ty::F64 => r.f64(*c as usize, None),
            crate::tables::columns::Ty::U64 => r.u64(*c as usize, None),
            crate::tables::columns::Ty::U32 => r.u32(*c as usize, None),
            crate::tables::columns::Ty::Utf8 => r.str(*c as usize, None),
            other => unreachable!("no {other:?} column among the sock_diag-only ones"),
        }
    }
}

impl Col {
    fn def_ty(self) -> crate::tables::columns::Ty {
        Self::DEFS[self as usize].ty
    }
}

/// The /proc/net table of a protocol and family, through thread-self so a
/// reader thread inside another namespace reads that namespace's.
fn proc_file(protocol: u8, family: u8) -> String {
    format!("/proc/thread-self/net/{}{}", protocol_name(protocol), if family == inet_diag::AF_INET6 { "6" } else { "" })
}

/// Read one namespace's sockets into `out` (and their inodes, for owners).
fn read_namespace(plan: &ScanPlan, ns: &Netns, out: &mut Emitter<'_>, inodes: &mut Vec<u64>) -> anyhow::Result<ControlFlow<()>> {
    let mut ifs = Interfaces::default();
    let mut netlink = if plan.no_netlink {
        None
    } else {
        match SockDiag::open() {
            Ok(s) => Some(s),
            Err(e) => {
                notice::warn_once("sock-diag-open", format!(
                    "netlink sock_diag unavailable ({e}); reading /proc/net/{{tcp,tcp6,udp,udp6}} instead, \
                     so tcp_info, memory, cookie and interface columns are null"));
                None
            }
        }
    };
    let hz = procfs::ticks_per_second();
    let mut dumps: VecDeque<(u8, u8)> = plan.dumps.iter().copied().collect();
    while let Some((protocol, family)) = dumps.pop_front() {
        if out.done() {
            return Ok(ControlFlow::Break(()));
        }
        if let Some(nl) = netlink.as_mut() {
            let mut failed = None;
            let mut rows = 0usize;
            let res = nl.dump(protocol, family, plan.states, plan.extensions, &plan.conds, None, |m| {
                rows += 1;
                append_diag(&mut out.rows, protocol, m, &mut ifs, ns);
                if plan.owners {
                    inodes.push(m.inode() as u64);
                }
                match out.end_row() {
                    Ok(flow) => flow,
                    Err(e) => {
                        failed = Some(e);
                        ControlFlow::Break(())
                    }
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            match res {
                Ok(()) => continue,
                // A kernel or sandbox refusing the legacy both-families
                // request before any answer: one request per family instead.
                Err(e) if family == inet_diag::AF_UNSPEC && rows == 0 && e.is_refusal() => {
                    for &f in families_of(family).iter().rev() {
                        dumps.push_front((protocol, f));
                    }
                    continue;
                }
                Err(e) if e.is_refusal() => notice::warn_once(
                    &format!("sock-diag-{protocol}-{family}"),
                    format!(
                        "netlink sock_diag refused the {}/{} dump ({e}); reading {} instead for those sockets",
                        protocol_name(protocol),
                        family_name(family),
                        proc_file(protocol, family)
                    ),
                ),
                Err(e) => return Err(e.into()),
            }
        }
        for &family in families_of(family) {
            for s in proc_net::read(&proc_file(protocol, family))? {
                if plan.states & (1 << s.state) == 0 {
                    continue;
                }
                append_proc(&mut out.rows, protocol, family, &s, hz, ns);
                if plan.owners {
                    inodes.push(s.inode);
                }
                if out.end_row()?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
    }
    Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
}

fn produce(plan: &ScanPlan, sink: &BatchSink) -> anyhow::Result<()> {
    // With owners, rows are built without pid/process and held until the
    // dump is over; then the owners of exactly those sockets are looked up.
    let full: Vec<usize> = plan.projection.clone().unwrap_or_else(|| (0..Col::DEFS.len()).collect());
    let inner: Vec<usize> = full.iter().copied().filter(|&c| c != Col::Pid as usize && c != Col::Process as usize).collect();
    let rows = RowBuilder::new(Col::DEFS, Some(&inner), BATCH_ROWS);
    let mut out = if plan.owners { Emitter::holding(rows, plan.limit) } else { Emitter::new(rows, sink, plan.limit) };
    let mut inodes: Vec<u64> = Vec::new();
    scope::each(&plan.targets, |ns| read_namespace(plan, ns, &mut out, &mut inodes))?;
    if plan.owners {
        return owner_fill::fill(out.into_held()?, &inodes, Col::DEFS, &full, (Col::Pid as usize, Col::Process as usize), sink);
    }
    out.finish()
}
