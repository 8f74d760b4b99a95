//! `tcp_retransmits`: every TCP segment and SYN-ACK the kernel
//! retransmits while the query listens (bcc `tcpretrans`), from the
//! tracepoints `tcp:tcp_retransmit_skb` and `tcp:tcp_retransmit_synack`,
//! with the socket's namespace and holder (`sock_lookup.rs`).
//!
//! One row is one call of the kernel's retransmit (`__tcp_retransmit_skb`
//! or `tcp_rtx_synack`): the unit `ss -ti`'s `retrans:X/Y` (tcp_info
//! total_retrans) and nstat's `TcpRetransSegs` count, as long as each
//! retransmitted skb is one segment (no GSO: loopback, or a device
//! without it). A retransmission after a timeout, a fast retransmission
//! and a tail loss probe that resends the last segment are all
//! `tcp_retransmit_skb`; the tracepoint does not say which (bcc marks
//! loss probes with a kprobe on `tcp_send_loss_probe`, which sockql does
//! not attach), so all three are kind 'data'.
//!
//! The decoding shared with `tcp_resets` is here too: the 4-tuple layout
//! of the TCP tracepoints and the socket's holder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::ControlFlow;

use crate::columns::{ColumnDef, RowBuilder};
use crate::container_fill::{Cols, ContainerLookup};
use crate::holders::{Context, OwnerColumns, Owners};
use crate::live::Emitter;
use crate::sock_lookup::Tuple;
use crate::table_columns;
use crate::tracepoints::{Point, Pushed, TracePlan, Value};
use crate::{Kind, Scan, Table};
use sockql_collect::sock_diag::inet;
use sockql_collect::tcp_state;
use sockql_collect::trace::event::need;
use sockql_collect::trace::format::Field;
use sockql_collect::trace::{Format, Sample, TraceError};

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When the kernel retransmitted, UTC (the tracepoint's own time stamp)";
    Kind: "kind", Utf8, false, "'data' (tcp_retransmit_skb: after a timeout, a fast retransmission, or a tail loss probe resending the last segment; the tracepoint does not tell these apart) or 'synack' (tcp_retransmit_synack: a listener resending its SYN-ACK to a client whose handshake has not completed)";
    State: "state", Utf8, true, "The socket's state as ss spells it (tracepoint field state); 'SYN-RECV' for a SYN-ACK";
    Family: "family", Utf8, false, "'inet' (IPv4) or 'inet6' (tracepoint field family)";
    LocalAddr: "local_addr", Utf8, false, "Local address: the retransmitting side (saddr, or saddr_v6 for inet6)";
    LocalPort: "local_port", U16, false, "Local port (sport)";
    RemoteAddr: "remote_addr", Utf8, false, "Remote address: the peer the segment is resent to (daddr, or daddr_v6 for inet6)";
    RemotePort: "remote_port", U16, false, "Remote port (dport)";
    Err: "err", I32, true, "What the kernel's retransmit returned (field err): 0 sent, else a negative errno (-EBUSY: still queued below TCP; -ENOMEM, -EHOSTUNREACH, ...); null for a SYN-ACK (its tracepoint has no err)";
    Netns: "netns", U64, true, "Network namespace of the socket, as the lookup of its 4-tuple among every namespace's sockets found it (null when more than one namespace has the 4-tuple, or the only socket found is held by another process in another namespace than the one the event ran for: the tracepoint does not say which, and null is never the other's); for a socket it did not find, the namespace of the process the kernel ran the event for (see pid); else null (the table's notes)";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, null if unnamed";
    Inode: "inode", U64, true, "The socket's inode (sockets.inode; for a SYN-ACK the listener's); 0 for a socket no process holds; null if the lookup did not find it";
    Cookie: "cookie", U64, true, "Kernel socket cookie (sockets.cookie; for a SYN-ACK the listener's); null if the lookup did not find it";
    Pid: "pid", I32, true, "Lowest pid holding the socket (for a SYN-ACK the listener) when the lookup dumped it; for a socket it did not find, the process the kernel ran the event for when it ran in a process's own context (not softirq: the tracepoint's pid and common_flags); else null";
    Process: "process", Utf8, true, "Command name of pid";
    Container: "container", Utf8, true, "Name of the container of pid (podman ps / docker ps NAMES), else of the container whose network namespace netns is; null for the host, when neither is known, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host or when unknown";
    Overruns: "overruns", U64, false, "Events the kernel had no room for in sockql's ring before this row (perf ring full: a count of events, where the netlink event tables count overflows); 0: none lost";
});

/// The columns whose filters go to the kernel: which side each port is,
/// checked in the format (`sport` is the socket's own, `dport` the peer's,
/// both in host order: the tracepoints ntohs them).
static POINTS: &[Point] = &[
    Point {
        group: "tcp",
        name: "tcp_retransmit_skb",
        pushed: &[
            Pushed { column: "state", field: "state", value: Value::TcpState },
            Pushed { column: "local_port", field: "sport", value: Value::Int },
            Pushed { column: "remote_port", field: "dport", value: Value::Int },
            Pushed { column: "err", field: "err", value: Value::Int },
        ],
    },
    Point {
        group: "tcp",
        name: "tcp_retransmit_synack",
        pushed: &[
            Pushed { column: "local_port", field: "sport", value: Value::Int },
            Pushed { column: "remote_port", field: "dport", value: Value::Int },
        ],
    },
];

#[derive(Debug, Clone, Copy)]
pub struct TcpRetransmitsTable;

impl Table for TcpRetransmitsTable {
    const NAME: &'static str = "tcp_retransmits";
    const ABOUT: &'static str = "TCP segments and SYN-ACKs as the kernel retransmits them (bcc tcpretrans), with the socket's process, while the query listens (--capture-for, default 10 s)";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = TracePlan;

    fn plan(&self, scan: &Scan<'_>) -> TracePlan {
        // Retransmissions come a few at a time: each is read as it comes.
        TracePlan::new(POINTS, scan)
    }

    fn label(&self, plan: &TracePlan) -> String {
        plan.label(Self::NAME)
    }

    fn read(&self, plan: &TracePlan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let decoders = decoders(plan, "retransmits", |p, f| Retransmit::new(p.name, f));
        let mut owners = Owners::new();
        let mut containers = ContainerLookup::for_stream(&out.rows, CONTAINER);
        plan.read("retransmits", out, |hit, out, failed| {
            let Some(Some(d)) = decoders.iter().find(|(id, _)| *id == hit.format.id).map(|(_, d)| d.as_ref()) else {
                return ControlFlow::Continue(());
            };
            let s = hit.sample;
            let Some(conn) = d.tuple.read(s) else { return ControlFlow::Continue(()) };
            let task = d.context.task_pid(s);
            let owner = match d.synack {
                false => owners.of_socket(conn.tuple(), hit.ts_ns, task),
                true => owners.of_listener(conn.tuple(), hit.ts_ns, task),
            };
            if !plan.covers(owner.netns) {
                return ControlFlow::Continue(());
            }
            let r = &mut out.rows;
            r.timestamp_ns(Col::Ts, Some(hit.ts_ns));
            r.str(Col::Kind, Some(if d.synack { "synack" } else { "data" }));
            let state = match (&d.state, d.synack) {
                (Some(f), _) => s.u64(f).map(|v| tcp_state::name(v as u8)),
                (None, true) => Some("SYN-RECV"),
                (None, false) => None,
            };
            r.str(Col::State, state);
            conn.write(r, Col::Family, Col::LocalAddr, Col::LocalPort, Col::RemoteAddr, Col::RemotePort);
            r.i32(Col::Err, d.err.as_ref().and_then(|f| s.i64(f)).map(|e| e as i32));
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
struct Retransmit<'f> {
    synack: bool,
    tuple: TupleFields<'f>,
    state: Option<&'f Field>,
    err: Option<&'f Field>,
    context: Context,
}

impl<'f> Retransmit<'f> {
    fn new(name: &str, f: &'f Format) -> Result<Retransmit<'f>, TraceError> {
        let synack = name == "tcp_retransmit_synack";
        Ok(Retransmit {
            synack,
            tuple: TupleFields::need(f)?,
            state: if synack { None } else { Some(need(f, "tcp", "state", &[4])?) },
            err: if synack { None } else { Some(need(f, "tcp", "err", &[4])?) },
            context: Context::of(f),
        })
    }
}

/// Each readable tracepoint's decoder by event id; a tracepoint whose
/// format lacks a field the decoder needs is said once and read as
/// nothing (None), like a tracepoint the kernel lacks.
pub(crate) fn decoders<'p, D>(
    plan: &'p TracePlan,
    what: &str,
    make: impl Fn(&Point, &'p Format) -> Result<D, TraceError>,
) -> Vec<(u64, Option<D>)> {
    plan.points
        .iter()
        .filter_map(|p| {
            let f = p.format.as_ref().ok()?;
            Some((
                f.id,
                make(p.point, f)
                    .map_err(|e| {
                        sockql_collect::notice::note_once(
                            &format!("tracepoint-field-{}-{}", p.point.group, p.point.name),
                            format!("{what}: {e}; its rows are missing"),
                        )
                    })
                    .ok(),
            ))
        })
        .collect()
}

/// A connection as a tracepoint names it, oriented as its local socket
/// sees it.
pub(crate) struct Conn {
    pub family: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Conn {
    pub fn tuple(&self) -> Tuple {
        Tuple { protocol: inet::IPPROTO_TCP, local: self.local, remote: self.remote }
    }

    pub fn write<C: crate::columns::Column>(&self, r: &mut RowBuilder, family: C, la: C, lp: C, ra: C, rp: C) {
        r.str(family, Some(sockql_collect::sock_diag::family_name(self.family)));
        r.display(la, &self.local.ip());
        r.u16(lp, Some(self.local.port()));
        r.display(ra, &self.remote.ip());
        r.u16(rp, Some(self.remote.port()));
    }
}

/// The fields of the layout `tcp_retransmit_skb`, `tcp_retransmit_synack`
/// and `tcp_receive_reset` share: family, sport and dport (host order),
/// saddr/daddr (IPv4) and saddr_v6/daddr_v6 (IPv6, or IPv4-mapped).
pub(crate) struct TupleFields<'f> {
    family: &'f Field,
    sport: &'f Field,
    dport: &'f Field,
    saddr: &'f Field,
    daddr: &'f Field,
    saddr_v6: &'f Field,
    daddr_v6: &'f Field,
}

impl<'f> TupleFields<'f> {
    pub fn need(f: &'f Format) -> Result<TupleFields<'f>, TraceError> {
        Ok(TupleFields {
            family: need(f, "tcp", "family", &[2])?,
            sport: need(f, "tcp", "sport", &[2])?,
            dport: need(f, "tcp", "dport", &[2])?,
            saddr: need(f, "tcp", "saddr", &[4])?,
            daddr: need(f, "tcp", "daddr", &[4])?,
            saddr_v6: need(f, "tcp", "saddr_v6", &[16])?,
            daddr_v6: need(f, "tcp", "daddr_v6", &[16])?,
        })
    }

    /// The sample's connection; None for a family other than IPv4/IPv6
    /// or a record too short for its fields.
    pub fn read(&self, s: &Sample<'_>) -> Option<Conn> {
        let family = s.u64(self.family)? as u8;
        let (sport, dport) = (s.u64(self.sport)? as u16, s.u64(self.dport)? as u16);
        let (local, remote) = match family {
            inet::AF_INET => (v4(s.bytes(self.saddr)?)?, v4(s.bytes(self.daddr)?)?),
            inet::AF_INET6 => (v6(s.bytes(self.saddr_v6)?)?, v6(s.bytes(self.daddr_v6)?)?),
            _ => return None,
        };
        Some(Conn { family, local: SocketAddr::new(local, sport), remote: SocketAddr::new(remote, dport) })
    }
}

fn v4(b: &[u8]) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(..4)?).ok()?)))
}

fn v6(b: &[u8]) -> Option<IpAddr> {
    Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b.get(..16)?).ok()?)))
}

/// A `struct sockaddr_in` or `sockaddr_in6` as a tracepoint copies it
/// (`tcp_send_reset`'s 28-byte saddr/daddr): family in host order, port
/// in network order, then the IPv4 address, or flowinfo and the IPv6
/// address. None for another family (zeros: the kernel had neither a
/// socket nor a packet to take them from) or too few bytes.
pub(crate) fn sockaddr(b: &[u8]) -> Option<(u8, SocketAddr)> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    let ip = match u8::try_from(family).ok()? {
        inet::AF_INET => v4(b.get(4..8)?)?,
        inet::AF_INET6 => v6(b.get(8..24)?)?,
        _ => return None,
    };
    Some((family as u8, SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockql_collect::trace::format::parse;

    #[test]
    fn sockaddrs_decode_bounded() {
        let mut b = [0u8; 28];
        b[0..2].copy_from_slice(&2u16.to_ne_bytes());
        b[2..4].copy_from_slice(&8080u16.to_be_bytes());
        b[4..8].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(sockaddr(&b), Some((2, "10.1.2.3:8080".parse().unwrap())));
        let mut b6 = [0u8; 28];
        b6[0..2].copy_from_slice(&10u16.to_ne_bytes());
        b6[2..4].copy_from_slice(&443u16.to_be_bytes());
        b6[8..24].copy_from_slice(&"fd00::7".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(sockaddr(&b6), Some((10, "[fd00::7]:443".parse().unwrap())));
        // Zeros (no socket, no packet), another family, and cut records.
        assert_eq!(sockaddr(&[0; 28]), None);
        b[0..2].copy_from_slice(&1u16.to_ne_bytes());
        assert_eq!(sockaddr(&b), None);
        for cut in 0..24 {
            assert_eq!(sockaddr(&b6[..cut]), None, "{cut}");
        }
    }

    #[test]
    fn retransmit_records_decode_as_the_local_side_sees_them() {
        let f = parse(include_str!("../../../tests/fixtures/tracepoints/tcp_tcp_retransmit_skb.format")).unwrap();
        let d = Retransmit::new("tcp_retransmit_skb", &f).unwrap();
        let mut raw = vec![0u8; 80];
        raw[24..28].copy_from_slice(&1i32.to_ne_bytes());
        raw[28..30].copy_from_slice(&5000u16.to_ne_bytes());
        raw[30..32].copy_from_slice(&80u16.to_ne_bytes());
        raw[32..34].copy_from_slice(&2u16.to_ne_bytes());
        raw[34..38].copy_from_slice(&[127, 0, 0, 1]);
        raw[38..42].copy_from_slice(&[127, 0, 0, 2]);
        raw[76..80].copy_from_slice(&(-16i32).to_ne_bytes());
        let s = Sample { pid: 0, tid: 0, time_ns: 0, cpu: 0, raw: &raw };
        let c = d.tuple.read(&s).unwrap();
        assert_eq!((c.local, c.remote), ("127.0.0.1:5000".parse().unwrap(), "127.0.0.2:80".parse().unwrap()));
        assert_eq!(s.i64(d.err.unwrap()), Some(-16));
        assert_eq!(s.u64(d.state.unwrap()), Some(1));
        // A record cut short is skipped, not read past its end.
        let short = Sample { raw: &raw[..40], ..s };
        assert!(d.tuple.read(&short).is_none());
        // softirq (0x10) is not a process's own context; none set is.
        let (mut softirq, mut task) = (raw.clone(), raw.clone());
        softirq[2] = 0x10;
        task[2] = 0x80; // bottom halves off, but not serving one
        assert_eq!(d.context.task_pid(&Sample { pid: 42, raw: &softirq, ..s }), None);
        assert_eq!(d.context.task_pid(&Sample { pid: 42, raw: &task, ..s }), Some(42));
    }
}
