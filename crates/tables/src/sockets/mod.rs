//! `sockets`: every TCP, UDP and raw socket of the current network namespace.
//!
//! Source: NETLINK_SOCK_DIAG inet_diag dumps: one for TCP of both families
//! (the kernel walks its TCP table once per request), one per family for
//! UDP and for raw; per dump, /proc/net/{tcp,tcp6,udp,udp6,raw,raw6} where
//! netlink is refused (raw: kernels without CONFIG_INET_RAW_DIAG, as ss does).
//!
//! Pushed down (see `pushdown.rs`):
//! - `state = '…'` / `state IN (…)` become the kernel's state bitmask
//!   (Exact);
//! - `protocol` and `family` equalities choose which dumps run at all
//!   (Exact), as do `netns` / `netns_name` the namespaces (Exact);
//! - port comparisons (=, <, <=, >, >=, BETWEEN, IN as its min..max) and
//!   address equalities become an inet_diag filter program
//!   (INET_DIAG_REQ_BYTECODE), so the kernel sends only matching sockets
//!   (Inexact: DataFusion re-checks them).
//!
//! Files: `pushdown.rs` decides the scan, `read.rs` runs it through the
//! sock_diag reader, `rows.rs` turns what it found into rows.
//!
//! Projection decides the work: tcp_info, congestion and memory are asked
//! of the kernel only when their columns are used, and the /proc fd walk
//! behind `pid` and `process` runs only when one of them is used.

mod pushdown;
mod read;
mod rows;

use datafusion::logical_expr::Expr;

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::{Pushdown, Scan, Table};
use sockql_collect::tcp_state;

table_columns!(Col {
    Protocol: "protocol", Utf8, false, "Transport protocol: 'tcp', 'udp' or 'raw' (ss -w; local_port is then the IP protocol number the raw socket was opened for)";
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
    Retransmits: "retransmits", U32, true, "Unrecovered retransmission timeouts of the pending timer; for a SYN-RECV request socket, the SYN-ACKs resent (ss -o timer:(on,...,N))";
    TimerText: "timer_text", Utf8, true, "The pending timer as ss -o prints it: (name,time left,retransmits), e.g. (keepalive,4min47sec,0); null if none";
    Pid: "pid", I32, true, "Lowest pid holding the socket, one of those ss -p lists (it lists every holder, in its own order; socket_owners has them all); null if no process holds it or it is not visible to us";
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
    SndWscale: "snd_wscale", U8, true, "Send window scale (ss wscale:SND,rcv); null unless window scaling was negotiated";
    RcvWscale: "rcv_wscale", U8, true, "Receive window scale (ss wscale:snd,RCV); null unless window scaling was negotiated";
    OptTs: "opt_ts", Bool, true, "TCP timestamps negotiated (ss: ts)";
    OptSack: "opt_sack", Bool, true, "Selective acknowledgements negotiated (ss: sack)";
    OptEcn: "opt_ecn", Bool, true, "ECN negotiated (ss: ecn)";
    OptEcnSeen: "opt_ecnseen", Bool, true, "ECN congestion marks seen (ss: ecnseen)";
    Pmtu: "pmtu", U32, true, "Path MTU, bytes (ss pmtu)";
    RcvMss: "rcv_mss", U32, true, "Receive MSS estimate, bytes (ss rcvmss)";
    AdvMss: "adv_mss", U32, true, "Advertised MSS, bytes (ss advmss)";
    RcvSpace: "rcv_space", U32, true, "Receive buffer space auto-tuning estimate, bytes (ss rcv_space)";
    RcvSsthresh: "rcv_ssthresh", U32, true, "Receive window clamp, bytes (ss rcv_ssthresh)";
    SndWnd: "snd_wnd", U32, true, "Peer's advertised receive window, bytes (ss snd_wnd); null on kernels before 5.19";
    RcvRttMs: "rcv_rtt_ms", F64, true, "Receiver-side RTT estimate, ms (ss rcv_rtt); null until measured";
    NotsentBytes: "notsent_bytes", U32, true, "Bytes queued and not yet sent (ss notsent)";
    Delivered: "delivered", U32, true, "Segments delivered to the peer, retransmissions included (ss delivered)";
    DeliveredCe: "delivered_ce", U32, true, "Delivered segments that carried ECN CE marks (ss delivered_ce)";
    AppLimited: "app_limited", Bool, true, "The last delivery-rate sample was limited by the application, not the network (ss app_limited)";
    Reordering: "reordering", U32, true, "Reordering degree the sender tolerates, segments (ss reordering, printed when not 3)";
    DsackDups: "dsack_dups", U32, true, "Duplicate segments the peer reported with D-SACK (ss dsack_dups)";
    Backoff: "backoff", U8, true, "Exponential backoff of the retransmit timer (ss backoff, printed when not 0)";
    AtoMs: "ato_ms", F64, true, "Delayed-ACK timeout, ms (ss ato, printed when not 0)";
    Sacked: "sacked", U32, true, "Segments the peer selectively acknowledged (ss sacked)";
    Retrans: "retrans", U32, true, "Retransmitted segments not yet acknowledged (ss retrans:N/total_retrans)";
    DataSegsIn: "data_segs_in", U32, true, "Segments received that carried data (ss data_segs_in)";
    DataSegsOut: "data_segs_out", U32, true, "Segments sent that carried data (ss data_segs_out)";
    SendBps: "send_bps", U64, true, "Send rate the window allows, cwnd * mss * 8 / rtt, bits per second, computed as ss computes its 'send'";
    MaxPacingRateBps: "max_pacing_rate_bps", U64, true, "Pacing cap set with SO_MAX_PACING_RATE, bits per second (ss pacing_rate X/MAX); null when unlimited";
    RwndLimitedMs: "rwnd_limited_ms", U64, true, "Time sending was limited by the peer's receive window, ms (ss rwnd_limited)";
    SndbufLimitedMs: "sndbuf_limited_ms", U64, true, "Time sending was limited by the send buffer, ms (ss sndbuf_limited)";
    ReordSeen: "reord_seen", U32, true, "Reordering events seen (ss reord_seen)";
    RcvOoopack: "rcv_ooopack", U32, true, "Out-of-order packets received (ss rcv_ooopack)";
    OptFastopen: "opt_fastopen", Bool, true, "The SYN carried data, TCP Fast Open (ss: fastopen)";
    BbrBwBps: "bbr_bw_bps", U64, true, "BBR's bottleneck bandwidth estimate, bits per second (ss bbr:(bw)); null unless the socket runs BBR";
    BbrMinRttMs: "bbr_min_rtt_ms", F64, true, "BBR's min RTT estimate, ms (ss bbr:(mrtt))";
    BbrPacingGain: "bbr_pacing_gain", F64, true, "BBR's pacing gain (ss bbr:(pacing_gain))";
    BbrCwndGain: "bbr_cwnd_gain", F64, true, "BBR's cwnd gain (ss bbr:(cwnd_gain))";
    Congestion: "congestion", Utf8, true, "Congestion control algorithm (cubic, bbr, ...)";
    RmemAlloc: "rmem_alloc", U32, true, "Receive memory allocated, bytes (skmem r)";
    RcvBuf: "rcv_buf", U32, true, "Receive buffer limit, bytes (skmem rb)";
    WmemAlloc: "wmem_alloc", U32, true, "Send memory allocated, bytes (skmem t)";
    SndBuf: "snd_buf", U32, true, "Send buffer limit, bytes (skmem tb)";
    FwdAlloc: "fwd_alloc", U32, true, "Memory reserved ahead, bytes (skmem f)";
    WmemQueued: "wmem_queued", U32, true, "Memory queued for sending, bytes (skmem w)";
    Drops: "drops", U32, true, "Packets dropped before reaching the socket (skmem d)";
    OptMem: "opt_mem", U32, true, "Memory for socket options and ancillary data, bytes (skmem o)";
    Backlog: "backlog", U32, true, "Packets queued in the socket backlog while it was busy, bytes (skmem bl)";
    Fwmark: "fwmark", U32, true, "Firewall mark (SO_MARK; ss fwmark); null without CAP_NET_ADMIN";
    Tos: "tos", U8, true, "IPv4 type of service byte (ss --tos tos)";
    Tclass: "tclass", U8, true, "IPv6 traffic class (ss --tos tclass); null for IPv4";
    ClassId: "class_id", U32, true, "net_cls class id, or the socket priority without one (ss --tos class_id)";
    CgroupId: "cgroup_id", U64, true, "Id of the cgroup v2 the socket was created in (the inode of its /sys/fs/cgroup directory)";
    CgroupPath: "cgroup_path", Utf8, true, "Path of that cgroup under the cgroup2 mount, as ss --cgroup prints it (/ for the root); null when the cgroup is gone or not under the mount";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net); see the netns table";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns (ip netns), null if unnamed";
    Container: "container", Utf8, true, "Name of the container of the socket's holder (pid: its process's container, as a --network host container's), else of the container whose network namespace the socket is in (podman ps / docker ps NAMES); null for the host's, or when the runtime gives no name. The holder is looked up for this column only in a namespace a container shares without owning it";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host's namespace";
});

pub(crate) const TCP_INFO_COLS: &[Col] = &[
    Col::RttMs,
    Col::RttvarMs,
    Col::RtoMs,
    Col::Mss,
    Col::Cwnd,
    Col::Ssthresh,
    Col::TotalRetrans,
    Col::Lost,
    Col::Unacked,
    Col::BytesSent,
    Col::BytesAcked,
    Col::BytesReceived,
    Col::BytesRetrans,
    Col::SegsIn,
    Col::SegsOut,
    Col::LastSendMs,
    Col::LastRecvMs,
    Col::LastAckMs,
    Col::DeliveryRateBps,
    Col::PacingRateBps,
    Col::MinRttMs,
    Col::BusyMs,
    Col::SndWscale,
    Col::RcvWscale,
    Col::OptTs,
    Col::OptSack,
    Col::OptEcn,
    Col::OptEcnSeen,
    Col::Pmtu,
    Col::RcvMss,
    Col::AdvMss,
    Col::RcvSpace,
    Col::RcvSsthresh,
    Col::SndWnd,
    Col::RcvRttMs,
    Col::NotsentBytes,
    Col::Delivered,
    Col::DeliveredCe,
    Col::AppLimited,
    Col::Reordering,
    Col::DsackDups,
    Col::Backoff,
    Col::AtoMs,
    Col::Sacked,
    Col::Retrans,
    Col::DataSegsIn,
    Col::DataSegsOut,
    Col::SendBps,
    Col::MaxPacingRateBps,
    Col::RwndLimitedMs,
    Col::SndbufLimitedMs,
    Col::ReordSeen,
    Col::RcvOoopack,
    Col::OptFastopen,
];
/// The congestion module's own attribute (BBR).
pub(crate) const BBR_COLS: &[Col] = &[Col::BbrBwBps, Col::BbrMinRttMs, Col::BbrPacingGain, Col::BbrCwndGain];
pub(crate) const MEM_COLS: &[Col] = &[
    Col::RmemAlloc,
    Col::RcvBuf,
    Col::WmemAlloc,
    Col::SndBuf,
    Col::FwdAlloc,
    Col::WmemQueued,
    Col::Drops,
    Col::OptMem,
    Col::Backlog,
];

#[cfg(test)]
mod tests {
    #[test]
    fn ss_style_endpoints_get_a_hint() {
        let h = |c, l| super::address_hint(c, l);
        assert_eq!(h("remote_addr", "10.0.0.2"), None);
        assert_eq!(
            h("remote_addr", "10.0.0.2:80").unwrap(),
            "remote_addr holds the address alone: write remote_addr = '10.0.0.2' AND remote_port = 80"
        );
        assert_eq!(
            h("local_addr", "[::1]:443").unwrap(),
            "local_addr holds the address alone: write local_addr = '::1' AND local_port = 443"
        );
        assert_eq!(h("local_addr", "[::]").unwrap(), "addresses are written without brackets: local_addr = '::'");
        assert!(h("local_addr", "*").unwrap().contains("0.0.0.0"));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SocketsTable;

impl SocketsTable {
    /// Warn (once per literal, in the statement planning this) about an
    /// address comparison that can never match because the literal is
    /// written as ss prints endpoints.
    fn check_addresses(&self, column: &str, literals: &[&str]) {
        for lit in literals {
            let Some(hint) = address_hint(column, lit) else { continue };
            sockql_collect::notice::warn_once(
                &format!("address:{column}={lit}"),
                format!("'{lit}' is not an address, so it matches no row; {hint}"),
            );
        }
    }

    /// Warn (once per name, in the statement planning this) about a state
    /// comparison that can never match.
    fn check_state_names(&self, names: &[&str]) {
        for name in names.iter().filter(|n| tcp_state::bits(n).is_none()) {
            let hint = match tcp_state::ss_spelling(name) {
                Some(s) if tcp_state::is_respelling(name, s) => format!(" (did you mean '{s}'?)"),
                Some(s) => format!(" (ss spells it {s})"),
                None => String::new(),
            };
            sockql_collect::notice::warn_once(
                &format!("state:{name}"),
                format!(
                    "'{name}' is not a socket state{hint}, so it matches no row; states are: {}",
                    tcp_state::ALL.join(", ")
                ),
            );
        }
    }
}

/// What an address literal that is no address was meant to say, as ss
/// writes endpoints: `10.0.0.2:80`, `[::1]:443`, `[::]`, `*`.
fn address_hint(column: &str, literal: &str) -> Option<String> {
    use std::net::{IpAddr, SocketAddr};
    if literal.parse::<IpAddr>().is_ok() {
        return None;
    }
    let port_column = column.replace("_addr", "_port");
    if let Ok(sa) = literal.parse::<SocketAddr>() {
        return Some(format!(
            "{column} holds the address alone: write {column} = '{}' AND {port_column} = {}",
            sa.ip(),
            sa.port()
        ));
    }
    if let Some(ip) =
        literal.strip_prefix('[').and_then(|l| l.strip_suffix(']')).filter(|l| l.parse::<IpAddr>().is_ok())
    {
        return Some(format!("addresses are written without brackets: {column} = '{ip}'"));
    }
    if literal == "*" || literal.starts_with("*:") {
        return Some(format!("a wildcard address reads 0.0.0.0 or :: ({column} IN ('0.0.0.0', '::'))"));
    }
    Some(format!("{column} holds IP addresses such as 10.0.0.2 or ::1"))
}

impl Table for SocketsTable {
    const NAME: &'static str = "sockets";
    const ABOUT: &'static str =
        "Every TCP, UDP and raw socket (ss -tuwna, netstat, lsof -i), with tcp_info, memory and owning process";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = pushdown::ScanPlan;

    fn pushdown(&self, filter: &Expr) -> Pushdown {
        // Run the analysis here too, so that a bad state name warns even
        // when the scan is never reached.
        self.pushed(&[filter]);
        pushdown::pushdown_of(filter)
    }

    fn plan(&self, scan: &Scan<'_>) -> Self::Plan {
        self.scan_plan(scan)
    }

    fn label(&self, plan: &Self::Plan) -> String {
        plan.to_string()
    }

    fn read(&self, plan: &Self::Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        read::produce(plan, out)
    }
}
