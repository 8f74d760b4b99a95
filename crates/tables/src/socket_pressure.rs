//! `socket_pressure`: sockets under memory pressure, as the kernel
//! reports them through two tracepoints, one row per event, while the
//! query listens (`--capture-for`, 10 s by default):
//! - `sock:sock_rcvqueue_full` (`event` 'rcvqueue_full'): a packet did not
//!   fit the socket's receive buffer (`rmem_alloc`, the packet's
//!   `truesize`, `sk_rcvbuf`). The kernel fires it only where a protocol
//!   queues through `sock_queue_rcv_skb` (ICMP ping sockets, L2TP, ...,
//!   and the TCP/UDP backlog paths of some kernels). On 6.x kernels UDP
//!   checks its own buffer (`__udp_enqueue_schedule_skb`) and raw sockets
//!   theirs (`raw_v4_input`) without it: those overflows are
//!   `packet_drops` rows with reason SOCKET_RCVBUFF (UDP) or only counted
//!   in /proc/net/raw (raw), not rows here.
//! - `sock:sock_exceed_buf_limit` (`event` 'exceed_buf_limit'): a
//!   protocol's memory went over its limit (`net.ipv4.tcp_mem`,
//!   `udp_mem`: host-wide sysctls, not per namespace) or the cgroup's
//!   socket memory could not be charged, so an allocation was refused
//!   (`protocol`, `sysctl_mem_*`, `allocated`, the socket's buffers,
//!   `kind` send or receive).
//!
//! Neither tracepoint names the socket's namespace, addresses or inode,
//! so the table shows the whole host's events whatever the namespace
//! scope. `current_pid`/`current_process` are the sample's: the task on
//! the CPU, which for a packet delivered on loopback is its sender, for a
//! send-side limit the sending process, and otherwise whoever ran.

use std::ops::ControlFlow;

use crate::columns::ColumnDef;
use crate::container_fill::{Cols, ContainerLookup};
use crate::live::Emitter;
use crate::packet_drops::Comms;
use crate::table_columns;
use crate::tracepoints::{Point, TracePlan};
use crate::{Kind, Scan, Table};
use sockql_collect::trace::event::need;
use sockql_collect::trace::format::Field;
use sockql_collect::trace::Sample;

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When the kernel fired the tracepoint (its own time), UTC";
    Event: "event", Utf8, false, "'rcvqueue_full' (sock:sock_rcvqueue_full: a packet did not fit the receive buffer) or 'exceed_buf_limit' (sock:sock_exceed_buf_limit: the protocol's or cgroup's socket memory refused an allocation)";
    Protocol: "protocol", Utf8, true, "exceed_buf_limit: the protocol as the kernel names it (TCP, UDP, TCPv6, UDPv6, ...); null for rcvqueue_full (the tracepoint does not say)";
    RmemAlloc: "rmem_alloc", I32, true, "Bytes in the socket's receive queue (sk_rmem_alloc) when it fired";
    Truesize: "truesize", U32, true, "rcvqueue_full: memory the refused packet takes (skb truesize), bytes";
    SkRcvbuf: "sk_rcvbuf", I32, true, "rcvqueue_full: the socket's receive buffer size (SO_RCVBUF as the kernel doubled it), bytes";
    SysctlMemMin: "sysctl_mem_min", I64, true, "exceed_buf_limit: the protocol's memory limit, first value (tcp_mem/udp_mem min), pages";
    SysctlMemPressure: "sysctl_mem_pressure", I64, true, "exceed_buf_limit: the protocol's memory pressure threshold, pages";
    SysctlMemMax: "sysctl_mem_max", I64, true, "exceed_buf_limit: the protocol's hard memory limit, pages";
    Allocated: "allocated", I64, true, "exceed_buf_limit: pages the protocol had allocated, with this request";
    SysctlRmem: "sysctl_rmem", I32, true, "exceed_buf_limit: the protocol's minimum receive buffer (tcp_rmem[0], udp_rmem_min), bytes";
    SysctlWmem: "sysctl_wmem", I32, true, "exceed_buf_limit: the protocol's minimum send buffer, bytes";
    WmemAlloc: "wmem_alloc", I32, true, "exceed_buf_limit: bytes the socket had in flight for sending (sk_wmem_alloc)";
    WmemQueued: "wmem_queued", I32, true, "exceed_buf_limit: bytes queued to send (sk_wmem_queued)";
    MemKind: "kind", Utf8, true, "exceed_buf_limit: 'send' or 'recv' (the kernel's SK_MEM_SEND/SK_MEM_RECV)";
    CurrentPid: "current_pid", I32, true, "The process on the CPU when it fired (the sample's pid), not necessarily the socket's: for loopback traffic the sender, for a send-side limit the sender, else whoever ran (0: an idle CPU)";
    CurrentTid: "current_tid", I32, true, "The thread of current_pid on the CPU";
    CurrentProcess: "current_process", Utf8, true, "Command name of current_tid when the row was read (null for 0 or a thread gone by then)";
    Container: "container", Utf8, true, "Name of the container current_pid runs in (podman ps / docker ps NAMES): like current_pid, not necessarily the socket's (the tracepoints name no socket, process or namespace); null on the host, for 0, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null on the host or for 0";
    Overruns: "overruns", U64, false, "Events the kernel had no room for in sockql's ring before this row (perf ring full: a count of events, where the netlink event tables count overflows); 0: none lost";
});

pub static POINTS: &[Point] = &[
    Point { group: "sock", name: "sock_rcvqueue_full", pushed: &[] },
    Point { group: "sock", name: "sock_exceed_buf_limit", pushed: &[] },
];

#[derive(Debug, Clone, Copy)]
pub struct SocketPressureTable;

pub struct Plan {
    trace: TracePlan,
    comm: bool,
}

/// The fields of one tracepoint, looked up once; a field the kernel lacks
/// is None and its column null.
struct Fields(Vec<Option<Field>>);

impl Fields {
    fn of(format: &sockql_collect::trace::Format, group: &str, names: &[&str]) -> Fields {
        Fields(names.iter().map(|n| need(format, group, n, &[]).ok().cloned()).collect())
    }

    fn int(&self, s: &Sample<'_>, i: usize) -> Option<i64> {
        self.0.get(i)?.as_ref().and_then(|f| s.i64(f))
    }
}

const RCVQ: &[&str] = &["rmem_alloc", "truesize", "sk_rcvbuf"];
const EXCEED: &[&str] = &[
    "name",
    "sysctl_mem",
    "allocated",
    "sysctl_rmem",
    "rmem_alloc",
    "sysctl_wmem",
    "wmem_alloc",
    "wmem_queued",
    "kind",
];

/// The `n`th element of a `long[3]` array field.
fn element(s: &Sample<'_>, f: &Field, n: usize) -> Option<i64> {
    let b = s.bytes(f)?;
    let at = n.checked_mul(8)?;
    Some(i64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl Table for SocketPressureTable {
    const NAME: &'static str = "socket_pressure";
    const ABOUT: &'static str = "Sockets whose receive queue was full or whose protocol memory limit refused an allocation (sock:sock_rcvqueue_full, sock_exceed_buf_limit), host-wide, while the query listens (--capture-for, default 10 s)";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        Plan { trace: TracePlan::new(POINTS, scan), comm: scan.wants(Col::CurrentProcess) }
    }

    fn label(&self, plan: &Plan) -> String {
        plan.trace.label(Self::NAME)
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let fields = |name: &str, names: &[&str]| {
            plan.trace.points.iter().find(|p| p.point.name == name).and_then(|p| p.format.as_ref().ok()).map(|f| {
                let fields = Fields::of(f, "sock", names);
                let kinds = f.symbols.get("kind").cloned().unwrap_or_default();
                (fields, kinds)
            })
        };
        let rcvq = fields("sock_rcvqueue_full", RCVQ);
        let exceed = fields("sock_exceed_buf_limit", EXCEED);
        let mut comms = Comms::default();
        let ctr_cols = Cols { name: Col::Container, id: Col::ContainerId };
        let mut containers = ContainerLookup::for_stream(&out.rows, ctr_cols);
        plan.trace.read("socket pressure", out, |hit, out, failed| {
            use Col::*;
            let s = hit.sample;
            let rcvqueue_full = hit.point.name == "sock_rcvqueue_full";
            // A tracepoint whose format could not be read opens nothing;
            // check before the row is begun.
            if (rcvqueue_full && rcvq.is_none()) || (!rcvqueue_full && exceed.is_none()) {
                return ControlFlow::Continue(());
            }
            let r = &mut out.rows;
            r.timestamp_ns(Ts, Some(hit.ts_ns));
            r.str(Event, Some(if rcvqueue_full { "rcvqueue_full" } else { "exceed_buf_limit" }));
            let int32 = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
            match (rcvqueue_full, &rcvq, &exceed) {
                (true, Some((f, _)), _) => {
                    r.null(Protocol);
                    r.i32(RmemAlloc, int32(f.int(s, 0)));
                    r.u32(Truesize, f.int(s, 1).and_then(|v| u32::try_from(v).ok()));
                    r.i32(SkRcvbuf, int32(f.int(s, 2)));
                    for c in [SysctlMemMin, SysctlMemPressure, SysctlMemMax, Allocated] {
                        r.null(c);
                    }
                    for c in [SysctlRmem, SysctlWmem, WmemAlloc, WmemQueued] {
                        r.null(c);
                    }
                    r.null(MemKind);
                }
                (false, _, Some((f, kinds))) => {
                    let name = f.0.first().and_then(Option::as_ref).and_then(|n| s.str(n));
                    r.str(Protocol, name.as_deref());
                    let mem = f.0.get(1).and_then(Option::as_ref);
                    r.i64(SysctlMemMin, mem.and_then(|m| element(s, m, 0)));
                    r.i64(SysctlMemPressure, mem.and_then(|m| element(s, m, 1)));
                    r.i64(SysctlMemMax, mem.and_then(|m| element(s, m, 2)));
                    r.i64(Allocated, f.int(s, 2));
                    r.i32(SysctlRmem, int32(f.int(s, 3)));
                    r.i32(RmemAlloc, int32(f.int(s, 4)));
                    r.i32(SysctlWmem, int32(f.int(s, 5)));
                    r.i32(WmemAlloc, int32(f.int(s, 6)));
                    r.i32(WmemQueued, int32(f.int(s, 7)));
                    let kind = f.int(s, 8).map(|k| match kinds.name(k) {
                        Some("SK_MEM_SEND") => "send".to_string(),
                        Some("SK_MEM_RECV") => "recv".to_string(),
                        Some(other) => other.to_string(),
                        None => k.to_string(),
                    });
                    r.str(MemKind, kind.as_deref());
                    r.null(Truesize);
                    r.null(SkRcvbuf);
                }
                _ => {}
            }
            r.i32(CurrentPid, i32::try_from(s.pid).ok());
            r.i32(CurrentTid, i32::try_from(s.tid).ok());
            r.str(CurrentProcess, if plan.comm { comms.of(s.tid) } else { None });
            // By the process on the CPU alone: no namespace is known.
            let current = i32::try_from(s.pid).ok().filter(|&p| p > 0);
            containers.fill_event(r, ctr_cols, current, None);
            r.u64(Overruns, Some(hit.lost));
            out.end_row_in(failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockql_collect::trace::format::parse;

    #[test]
    fn exceed_buf_limit_record_decodes() {
        let f = parse(include_str!("../../../tests/fixtures/tracepoints/sock_sock_exceed_buf_limit.format")).unwrap();
        let mut raw = vec![0u8; 96];
        raw[0..2].copy_from_slice(&(f.id as u16).to_ne_bytes());
        raw[8..11].copy_from_slice(b"UDP");
        for (i, v) in [10i64, 20, 30].iter().enumerate() {
            raw[40 + 8 * i..48 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        raw[64..72].copy_from_slice(&31i64.to_ne_bytes());
        raw[92..96].copy_from_slice(&1i32.to_ne_bytes());
        let s = Sample { pid: 1, tid: 1, time_ns: 0, cpu: 0, raw: &raw };
        let fields = Fields::of(&f, "sock", EXCEED);
        assert!(fields.0.iter().all(Option::is_some));
        let mem = fields.0[1].as_ref().unwrap();
        assert_eq!((element(&s, mem, 0), element(&s, mem, 2), element(&s, mem, 3)), (Some(10), Some(30), None));
        assert_eq!(fields.int(&s, 2), Some(31));
        assert_eq!(s.str(fields.0[0].as_ref().unwrap()).as_deref(), Some("UDP"));
        assert_eq!(f.symbols["kind"].name(fields.int(&s, 8).unwrap()), Some("SK_MEM_RECV"));
        // Cut short: None, not a panic.
        let short = Sample { raw: &raw[..50], ..s };
        assert_eq!((element(&short, mem, 0), element(&short, mem, 2)), (None, None));
    }
}
