//! `tcp_resets`: every TCP reset the kernel sends or receives while the
//! query listens, from `tcp:tcp_send_reset` (with the kernel's reason,
//! `enum sk_rst_reason`, named by the tracepoint's own format) and
//! `tcp:tcp_receive_reset`, with the socket's namespace and holder
//! (`sock_lookup.rs`).
//!
//! A reset sent for a packet no socket wanted (a connection attempt to a
//! closed port: reason NO_SOCKET) has no socket: its addresses are the
//! packet's, turned around by the kernel so that local is the side that
//! sends the reset, and it has no namespace or holder (null): the
//! tracepoint does not carry the namespace, so such a row is kept in
//! every scan, whatever namespace it covers. A reset received tears its
//! socket down at once, so the lookup finds it only if a dump saw it
//! before (cookie, from the tracepoint, names it either way).

use std::ops::ControlFlow;

use crate::columns::ColumnDef;
use crate::container_fill::{Cols, ContainerLookup};
use crate::holders::{Context, Owner, OwnerColumns, Owners};
use crate::live::Emitter;
use crate::table_columns;
use crate::tcp_retransmits::{decoders, sockaddr, Conn, TupleFields};
use crate::tracepoints::{Point, Pushed, TracePlan, Value};
use crate::{Kind, Scan, Table};
use sockql_collect::tcp_state;
use sockql_collect::trace::event::need;
use sockql_collect::trace::format::{Field, Symbols};
use sockql_collect::trace::{Format, TraceError};

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When the kernel sent or received the reset, UTC (the tracepoint's own time stamp)";
    Direction: "direction", Utf8, false, "'sent' (tcp_send_reset) or 'received' (tcp_receive_reset: a valid reset arrived for the socket, which the kernel then closes)";
    Reason: "reason", Utf8, true, "Why the kernel sent it, its own name (enum sk_rst_reason from the tracepoint's format: NO_SOCKET, a port nothing listens on; TCP_ABORT_ON_CLOSE, closed with unread data; TCP_STATE, aborted in a state that needs a reset, as close() with SO_LINGER 0 does; TCP_ABORT_ON_DATA, TCP_INVALID_ACK_SEQUENCE, ...); null for a reset received";
    State: "state", Utf8, true, "State of the socket that sent it, as ss spells it (field state); null for a reset sent without a socket and for a reset received (the tracepoint has no state)";
    Family: "family", Utf8, true, "'inet' (IPv4) or 'inet6'";
    LocalAddr: "local_addr", Utf8, true, "Local address: the side that sent the reset ('sent') or the socket that received it; for a reset sent without a socket the destination of the packet it answers (the kernel turns the packet's addresses around); null if the kernel gave none";
    LocalPort: "local_port", U16, true, "Local port (as local_addr)";
    RemoteAddr: "remote_addr", Utf8, true, "Remote address: the peer the reset went to or came from";
    RemotePort: "remote_port", U16, true, "Remote port";
    Netns: "netns", U64, true, "Network namespace of the socket, as the lookup of its 4-tuple among every namespace's sockets found it (null when more than one namespace has the 4-tuple, or the only socket found is held by another process in another namespace than the one the event ran for: the tracepoint does not say which, and null is never the other's); for a socket it did not find, the namespace of the process the kernel ran the event for (see pid); null for a reset sent without a socket and for others the lookup missed (see the table's notes)";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, null if unnamed";
    Inode: "inode", U64, true, "The socket's inode (sockets.inode); 0 for a socket no process holds (TIME-WAIT, a request); null if the lookup did not find it";
    Cookie: "cookie", U64, true, "Kernel socket cookie: for a reset received the tracepoint's sock_cookie; for one sent the lookup's (sockets.cookie); null if neither has it";
    Pid: "pid", I32, true, "Lowest pid holding the socket when the lookup dumped it; for a socket it did not find, the process the kernel ran the event for when it ran in a process's own context (close(), a send: the tracepoint's pid, not a softirq's); null for a reset sent without a socket";
    Process: "process", Utf8, true, "Command name of pid";
    Container: "container", Utf8, true, "Name of the container of pid (podman ps / docker ps NAMES), else of the container whose network namespace netns is; null for the host, when neither is known, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host or when unknown";
    Overruns: "overruns", U64, false, "Events the kernel had no room for in sockql's ring before this row (perf ring full: a count of events, where the netlink event tables count overflows); 0: none lost";
});

/// send_reset's addresses are sockaddrs (no port fields to filter on);
/// receive_reset's ports are the socket's own (sport) and its peer's.
static POINTS: &[Point] = &[
    Point {
        group: "tcp",
        name: "tcp_send_reset",
        pushed: &[
            Pushed { column: "state", field: "state", value: Value::TcpState },
            Pushed { column: "reason", field: "reason", value: Value::Symbol },
        ],
    },
    Point {
        group: "tcp",
        name: "tcp_receive_reset",
        pushed: &[
            Pushed { column: "local_port", field: "sport", value: Value::Int },
            Pushed { column: "remote_port", field: "dport", value: Value::Int },
        ],
    },
];

#[derive(Debug, Clone, Copy)]
pub struct TcpResetsTable;

impl Table for TcpResetsTable {
    const NAME: &'static str = "tcp_resets";
    const ABOUT: &'static str = "TCP resets the kernel sends (with its reason) or receives, with the socket's process, while the query listens (--capture-for, default 10 s)";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = TracePlan;

    fn plan(&self, scan: &Scan<'_>) -> TracePlan {
        // Resets come a few at a time: each is read as it comes.
        TracePlan::new(POINTS, scan)
    }

    fn label(&self, plan: &TracePlan) -> String {
        plan.label(Self::NAME)
    }

    fn read(&self, plan: &TracePlan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let decoders = decoders(plan, "resets", |p, f| Reset::new(p.name, f));
        let mut owners = Owners::new();
        let mut containers = ContainerLookup::for_stream(&out.rows, CONTAINER);
        plan.read("resets", out, |hit, out, failed| {
            let Some(Some(d)) = decoders.iter().find(|(id, _)| *id == hit.format.id).map(|(_, d)| d.as_ref()) else {
                return ControlFlow::Continue(());
            };
            let s = hit.sample;
            let (conn, reason, state, owner) = match d {
                Reset::Sent { skaddr, state, reason, saddr, daddr, symbols, context } => {
                    let conn = match (s.bytes(saddr).and_then(sockaddr), s.bytes(daddr).and_then(sockaddr)) {
                        (Some((family, local)), Some((_, remote))) => Some(Conn { family, local, remote }),
                        _ => None,
                    };
                    // No socket: no holder to find (and no dump spent
                    // on a flood of connection attempts to a closed port).
                    let owner = match (s.u64(skaddr), &conn) {
                        (Some(sk), Some(c)) if sk != 0 => owners.of_socket(c.tuple(), hit.ts_ns, context.task_pid(s)),
                        _ => Owner::default(),
                    };
                    let reason = s
                        .i64(reason)
                        .map(|r| symbols.and_then(|m| m.name(r)).map_or_else(|| r.to_string(), str::to_string));
                    // Zero: the kernel had no socket (its "unknown").
                    let state = s.u64(state).filter(|&v| v != 0).map(|v| tcp_state::name(v as u8));
                    (conn, reason, state, owner)
                }
                Reset::Received { tuple, cookie, context } => {
                    let Some(conn) = tuple.read(s) else { return ControlFlow::Continue(()) };
                    let task = context.task_pid(s);
                    let owner = match s.u64(cookie) {
                        Some(cookie) => owners.of_cookie(cookie, conn.tuple(), hit.ts_ns, task),
                        None => owners.of_socket(conn.tuple(), hit.ts_ns, task),
                    };
                    (Some(conn), None, None, owner)
                }
            };
            if !plan.covers(owner.netns) {
                return ControlFlow::Continue(());
            }
            let r = &mut out.rows;
            r.timestamp_ns(Col::Ts, Some(hit.ts_ns));
            r.str(Col::Direction, Some(if matches!(d, Reset::Sent { .. }) { "sent" } else { "received" }));
            r.str(Col::Reason, reason.as_deref());
            r.str(Col::State, state);
            match &conn {
                Some(c) => c.write(r, Col::Family, Col::LocalAddr, Col::LocalPort, Col::RemoteAddr, Col::RemotePort),
                None => {
                    for c in [Col::Family, Col::LocalAddr, Col::LocalPort, Col::RemoteAddr, Col::RemotePort] {
                        r.null(c);
                    }
                }
            }
            owner.write(r, &OWNER);
            containers.fill_event(r, CONTAINER, owner.pid, owner.netns);
            r.u64(Col::Overruns, Some(hit.lost));
            out.end_row_in(failed)
        })
    }
}

const CONTAINER: Cols<Col> = Cols { name: Col::Container, id: Col::ContainerId };

/// The holder columns (no uid: the lookup's socket uid is in `sockets`).
const OWNER: OwnerColumns<Col> = OwnerColumns {
    netns: Col::Netns,
    netns_name: Col::NetnsName,
    inode: Col::Inode,
    cookie: Col::Cookie,
    uid: None,
    pid: Col::Pid,
    process: Col::Process,
};

/// How one of the two tracepoints is read.
enum Reset<'f> {
    Sent {
        skaddr: &'f Field,
        state: &'f Field,
        reason: &'f Field,
        /// struct sockaddr_in/_in6 of 28 bytes each.
        saddr: &'f Field,
        daddr: &'f Field,
        symbols: Option<&'f Symbols>,
        context: Context,
    },
    Received {
        tuple: TupleFields<'f>,
        cookie: &'f Field,
        context: Context,
    },
}

impl<'f> Reset<'f> {
    fn new(name: &str, f: &'f Format) -> Result<Reset<'f>, TraceError> {
        Ok(match name {
            "tcp_send_reset" => Reset::Sent {
                skaddr: need(f, "tcp", "skaddr", &[8])?,
                state: need(f, "tcp", "state", &[4])?,
                reason: need(f, "tcp", "reason", &[4])?,
                saddr: need(f, "tcp", "saddr", &[28])?,
                daddr: need(f, "tcp", "daddr", &[28])?,
                symbols: f.symbols.get("reason"),
                context: Context::of(f),
            },
            _ => Reset::Received {
                tuple: TupleFields::need(f)?,
                cookie: need(f, "tcp", "sock_cookie", &[8])?,
                context: Context::of(f),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockql_collect::trace::format::parse;
    use sockql_collect::trace::Sample;

    #[test]
    fn reasons_are_the_formats_names() {
        let f = parse(include_str!("../../../tests/fixtures/tracepoints/tcp_tcp_send_reset.format")).unwrap();
        let Reset::Sent { reason, symbols, saddr, daddr, .. } = Reset::new("tcp_send_reset", &f).unwrap() else {
            panic!()
        };
        let mut raw = vec![0u8; 88];
        raw[28..32].copy_from_slice(&12u32.to_ne_bytes());
        raw[32..34].copy_from_slice(&2u16.to_ne_bytes());
        raw[34..36].copy_from_slice(&9u16.to_be_bytes());
        raw[36..40].copy_from_slice(&[10, 0, 0, 1]);
        let s = Sample { pid: 0, tid: 0, time_ns: 0, cpu: 0, raw: &raw };
        assert_eq!(symbols.unwrap().name(s.i64(reason).unwrap()), Some("TCP_ABORT_ON_LINGER"));
        assert_eq!(s.bytes(saddr).and_then(sockaddr).map(|a| a.1.to_string()).as_deref(), Some("10.0.0.1:9"));
        assert_eq!(s.bytes(daddr).and_then(sockaddr), None);
    }
}
