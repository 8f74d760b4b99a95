//! `tcp_state_changes`: every TCP state transition the kernel makes while
//! the query listens (bcc's tcpstates), from the `sock:inet_sock_set_state`
//! tracepoint, kept to TCP by the kernel (`protocol == 6`) along with the
//! query's filters on states and ports.
//!
//! The tracepoint names the socket by its address in kernel memory, its
//! 4-tuple and the two states; not its namespace, inode or holder. Those
//! come from `sock_lookup.rs` (a dump of every namespace's sockets) and are
//! remembered per socket, so the CLOSE of a connection found earlier keeps
//! its holder although the socket is gone from the tables by then; what is
//! remembered is forgotten at CLOSE and bounded by [`MAX_KNOWN`].
//!
//! Two transitions come before the socket has its 4-tuple: a connect()
//! enters SYN-SENT before it picks a local port (tcp_v4_connect sets the
//! state, then hashes the socket), and a connection a listener makes
//! enters SYN-RECV while it still has the listener's ports. Those rows
//! are held back until the socket's next transition and take its
//! addresses and ports (at most [`MAX_HELD`]; a row still held when the
//! stream ends comes out as the kernel gave it, port 0).
//!
//! A connection that opens and closes between two dumps is never found
//! by one; its rows still name the process that made its transitions by
//! system calls (connect(), close(), ...: they run in the process's own
//! context, which the record's flags tell from softirq work).
//!
//! The same 4-tuple can be live in two namespaces at once: the lookup
//! then finds both and the rows name neither; and two sockets this
//! stream saw take the same tuple and not yet close are two namespaces'
//! too, whatever a dump finds.
//!
//! What is remembered of a socket carries over only to its next
//! transition (one whose old state is the state it last entered): CPUs'
//! perf rings are read one after another, so two transitions of one
//! socket made on two CPUs can be read out of order; a kernel filter on
//! states hides some; a freed socket's address is reused. Otherwise
//! `ms_in_old_state` is null and the holder is looked up again.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::OnceLock;

use crate::columns::ColumnDef;
use crate::container_fill::{Cols, ContainerLookup};
use crate::holders::{Context, Owner, OwnerColumns, Owners};
use crate::live::Emitter;
use crate::sock_lookup::Tuple;
use crate::table_columns;
use crate::tracepoints::{Hit, Point, Pushed, TracePlan, Value};
use crate::{Kind, Scan, Table};
use sockql_collect::owners;
use sockql_collect::sock_diag::inet;
use sockql_collect::tcp_state;
use sockql_collect::trace::event::need;
use sockql_collect::trace::filter::{AnyOf, Cmp, Filter, Op};
use sockql_collect::trace::format::{Field, Format};

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When the kernel changed the state, UTC (the tracepoint's own time stamp)";
    Netns: "netns", U64, true, "Network namespace of the socket, from a dump of every namespace's sockets that found its 4-tuple; null if none did (it closed before the dump, or the dumps' budget was spent: see sock_lookup) and if the same 4-tuple is live in more than one namespace (the tracepoint does not say which: null rather than perhaps the other's); a row of unknown namespace is kept in a scan of any namespace";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, null if unnamed or unknown";
    SockId: "sock_id", U64, false, "The socket: a keyed hash of its kernel address (the address itself is not shown), the same for all its transitions while sockql runs; a socket freed after its CLOSE can give its address, and this id, to a later one";
    Family: "family", Utf8, false, "'inet' (IPv4) or 'inet6'";
    LocalAddr: "local_addr", Utf8, false, "Local address";
    LocalPort: "local_port", U16, false, "Local port; for a connect()'s CLOSE -> SYN-SENT (made before the kernel picks the port) the port of its next transition, 0 if the stream ended first";
    RemoteAddr: "remote_addr", Utf8, false, "Remote address (a listener's: 0.0.0.0 or ::)";
    RemotePort: "remote_port", U16, false, "Remote port (a listener's: 0)";
    OldState: "old_state", Utf8, false, "State before, as ss spells it, except TCP_CLOSE: 'CLOSE' (ss: UNCONN), a socket not yet connected or done with";
    NewState: "new_state", Utf8, false, "State after (ss spelling; 'CLOSE' as in old_state). A client's FIN-WAIT-2 or CLOSING -> CLOSE is its TIME-WAIT beginning: the kernel hands the connection to a TIME-WAIT socket that has no transitions of its own";
    MsInOldState: "ms_in_old_state", F64, true, "Milliseconds since this socket's previous transition this stream saw; null for its first one (out of CLOSE, or LISTEN -> SYN-RECV), the first this stream saw, and one whose previous transition it did not see (a kernel filter on states keeps it out, events lost) or read after this one";
    Inode: "inode", U64, true, "Socket inode as the dump found it (0: no process held it then: in an accept queue, TIME-WAIT); null if not found";
    Cookie: "cookie", U64, true, "Socket cookie as the dump found it (socket_events.cookie, sockets.cookie); null if not found";
    Uid: "uid", U32, true, "Owner uid of the socket, from the dump; null if not found";
    Pid: "pid", I32, true, "Lowest pid holding the socket when a dump found it (the socket's holder, as ss -p); where no dump found it held (a connection that opened and closed between two dumps, a 4-tuple of several namespaces), the process that made one of its transitions so far by a system call on it (connect(), listen(), close(), shutdown(): they run in that process's context); null if neither (an accepted connection before its holder's close(): its first transitions run in softirq)";
    Process: "process", Utf8, true, "Command name of pid";
    Container: "container", Utf8, true, "Name of the container of pid (podman ps / docker ps NAMES), else of the container whose network namespace netns is; null for the host, when neither is known, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host or when unknown";
    CurrentPid: "current_pid", I32, false, "The process on the CPU when the state changed (what tcpstates shows as PID): the caller for connect(), listen(), close() and shutdown(); for transitions made on receiving a packet (SYN-SENT -> ESTAB, ESTAB -> CLOSE-WAIT, ...) whoever was running (softirq work), often another process or 0 (idle)";
    CurrentProcess: "current_process", Utf8, true, "Command name of current_pid, read from /proc as the row is made; null for 0 or a process already gone";
    Overruns: "overruns", U64, false, "Events the kernel had no room for in sockql's ring before this row (perf ring full: a count of events, where the netlink event tables count overflows); 0: none lost";
});

static POINTS: &[Point] = &[Point {
    group: "sock",
    name: "inet_sock_set_state",
    pushed: &[
        Pushed { column: "old_state", field: "oldstate", value: Value::TcpState },
        Pushed { column: "new_state", field: "newstate", value: Value::TcpState },
        Pushed { column: "local_port", field: "sport", value: Value::Int },
        Pushed { column: "remote_port", field: "dport", value: Value::Int },
    ],
}];

/// Sockets remembered (holder, last transition): a busy host's live
/// connections fit; beyond, the oldest half is forgotten (said once).
pub const MAX_KNOWN: usize = 1 << 18;

/// Rows held back for their socket's 4-tuple (see the module notes).
pub const MAX_HELD: usize = 1 << 14;

/// How long a 4-tuple seen in two namespaces at once is not looked up
/// (ns): the lookup's own memory of sockets gone (`KEEP_GONE`).
const TWINNED_NS: i64 = crate::sock_lookup::KEEP_GONE.as_nanos() as i64;

#[derive(Debug, Clone, Copy)]
pub struct TcpStateChangesTable;

/// The kernel's TCP_CLOSE spelled as a state change reads.
fn state_name(state: u8) -> &'static str {
    if state == tcp_state::CLOSE {
        "CLOSE"
    } else {
        tcp_state::name(state)
    }
}

/// A process-wide key, so `sock_id` is stable while sockql runs and the
/// kernel's addresses stay unknown to whoever reads it.
fn sock_id(skaddr: u64) -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    KEY.get_or_init(RandomState::new).hash_one(skaddr)
}

/// The tracepoint's fields this table reads.
struct Fields {
    skaddr: Field,
    oldstate: Field,
    newstate: Field,
    sport: Field,
    dport: Field,
    family: Field,
    saddr: Field,
    daddr: Field,
    saddr_v6: Field,
    daddr_v6: Field,
    context: Context,
}

impl Fields {
    fn of(format: &Format) -> Result<Fields, sockql_collect::trace::TraceError> {
        let f = |name, sizes: &[usize]| need(format, "sock", name, sizes).cloned();
        Ok(Fields {
            skaddr: f("skaddr", &[8])?,
            oldstate: f("oldstate", &[4])?,
            newstate: f("newstate", &[4])?,
            sport: f("sport", &[2])?,
            dport: f("dport", &[2])?,
            family: f("family", &[2])?,
            saddr: f("saddr", &[4])?,
            daddr: f("daddr", &[4])?,
            saddr_v6: f("saddr_v6", &[16])?,
            daddr_v6: f("daddr_v6", &[16])?,
            context: Context::of(format),
        })
    }
}

/// One transition, decoded.
#[derive(Debug, Clone)]
struct Change {
    ts_ns: i64,
    skaddr: u64,
    old: u8,
    new: u8,
    inet6: bool,
    local: SocketAddr,
    remote: SocketAddr,
    current_pid: u32,
    /// The process that made it by a system call on the socket
    /// (connect(), close(), shutdown(), listen()), when it ran in its
    /// own context.
    task: Option<i32>,
    ms_in_old: Option<f64>,
    lost: u64,
}

impl Change {
    fn decode(f: &Fields, hit: &Hit<'_>) -> Option<Change> {
        let s = hit.sample;
        let state = |field| s.i64(field).and_then(|v| u8::try_from(v).ok());
        let port = |field| s.u64(field).map(|p| p as u16);
        let (local_ip, remote_ip, inet6) = match s.u64(&f.family)? as u8 {
            inet::AF_INET => {
                let v4 = |field| <[u8; 4]>::try_from(s.bytes(field)?).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b)));
                (v4(&f.saddr)?, v4(&f.daddr)?, false)
            }
            inet::AF_INET6 => {
                let v6 = |field| <[u8; 16]>::try_from(s.bytes(field)?).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b)));
                (v6(&f.saddr_v6)?, v6(&f.daddr_v6)?, true)
            }
            _ => return None,
        };
        Some(Change {
            ts_ns: hit.ts_ns,
            skaddr: s.u64(&f.skaddr)?,
            old: state(&f.oldstate)?,
            new: state(&f.newstate)?,
            inet6,
            local: SocketAddr::new(local_ip, port(&f.sport)?),
            remote: SocketAddr::new(remote_ip, port(&f.dport)?),
            current_pid: s.pid,
            task: f.context.task_pid(s),
            ms_in_old: None,
            lost: hit.lost,
        })
    }

    /// The first transition of a socket's life: out of CLOSE, or a
    /// listener's new connection.
    fn starts(&self) -> bool {
        self.old == tcp_state::CLOSE || (self.old == tcp_state::LISTEN && self.new != tcp_state::CLOSE)
    }

    /// Whether the 4-tuple is the connection's own yet (see the module
    /// notes); a listener's has no remote port.
    fn complete(&self) -> bool {
        let listener = self.new == tcp_state::LISTEN || (self.old == tcp_state::LISTEN && self.new == tcp_state::CLOSE);
        self.local.port() != 0 && (self.remote.port() != 0 || listener)
    }

    fn tuple(&self) -> Tuple {
        Tuple { protocol: inet::IPPROTO_TCP, local: self.local, remote: self.remote }
    }
}

/// What the stream knows of one socket.
struct Known {
    /// The time of its latest transition read, and the state it entered.
    last_ns: i64,
    last_state: u8,
    /// What a dump found of it (a namespace: found).
    holder: Option<Owner>,
    /// The process of its latest transition made in a process's own
    /// context: a connection that opens and closes between two dumps
    /// still names the process that connect()ed or close()d it.
    task: Option<i32>,
}

/// The decoder's memory across samples.
struct Tracker {
    fields: Fields,
    owners: Owners,
    known: HashMap<u64, Known>,
    /// The sockets (by kernel address) this stream saw take each 4-tuple
    /// and not yet CLOSE: two at once are the same tuple in two
    /// namespaces (one namespace's kernel never has two), whose holder a
    /// lookup by tuple cannot tell apart.
    live: HashMap<Tuple, Vec<u64>>,
    live_count: usize,
    /// Tuples seen live twice at once, and when last (event time, ns):
    /// for [`TWINNED_NS`] after, a lookup by tuple is not trusted, as a
    /// dump may find the other namespace's socket after this one closed.
    twinned: HashMap<Tuple, i64>,
    held: HashMap<u64, Vec<Change>>,
    held_rows: usize,
    /// The containers rows are named by (read only when projected).
    containers: ContainerLookup,
}

impl Tracker {
    fn on(
        &mut self,
        hit: &Hit<'_>,
        plan: &TracePlan,
        out: &mut Emitter<'_>,
        failed: &mut Option<anyhow::Error>,
    ) -> ControlFlow<()> {
        let Some(mut c) = Change::decode(&self.fields, hit) else {
            return ControlFlow::Continue(());
        };
        match self.known.get_mut(&c.skaddr) {
            // The next transition of the socket last seen here.
            Some(k) if !c.starts() && c.old == k.last_state && c.ts_ns >= k.last_ns => {
                c.ms_in_old = Some((c.ts_ns - k.last_ns) as f64 / 1e6);
                k.last_ns = c.ts_ns;
                k.last_state = c.new;
                k.task = c.task.or(k.task);
            }
            // A new socket at an address an old one had, or transitions
            // between not seen (a kernel filter on states, lost events,
            // CPUs read out of order): nothing carries over.
            Some(k) => {
                k.last_ns = k.last_ns.max(c.ts_ns);
                k.last_state = c.new;
                k.holder = None;
                k.task = c.task;
            }
            None => {
                self.remember(c.skaddr, c.ts_ns, c.new, c.task);
            }
        }
        if !c.complete() && c.new != tcp_state::CLOSE && self.held_rows < MAX_HELD {
            self.held.entry(c.skaddr).or_default().push(c);
            self.held_rows += 1;
            return ControlFlow::Continue(());
        }
        self.note_live(&c);
        let holder = self.holder(&c);
        if c.new == tcp_state::CLOSE {
            self.forget_live(&c);
        }
        let mut rows = self.held.remove(&c.skaddr).unwrap_or_default();
        self.held_rows -= rows.len();
        for r in &mut rows {
            r.local = c.local;
            r.remote = c.remote;
        }
        if c.new == tcp_state::CLOSE {
            self.known.remove(&c.skaddr);
        }
        rows.push(c);
        for r in &rows {
            if emit(r, &holder, &mut self.containers, plan, out, failed).is_break() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    fn remember(&mut self, skaddr: u64, ts_ns: i64, state: u8, task: Option<i32>) {
        if self.known.len() >= MAX_KNOWN {
            sockql_collect::notice::note_once(
                "tcp-state-changes-known-cap",
                format!("tcp_state_changes: more than {MAX_KNOWN} sockets changing state: the oldest are forgotten (their next rows have no ms_in_old_state, and no holder unless a dump finds them again)"),
            );
            let mut times: Vec<i64> = self.known.values().map(|k| k.last_ns).collect();
            times.sort_unstable();
            let median = times.get(times.len() / 2).copied().unwrap_or(i64::MAX);
            self.known.retain(|_, k| k.last_ns > median);
        }
        self.known.insert(skaddr, Known { last_ns: ts_ns, last_state: state, holder: None, task });
    }

    /// The socket's holder: the one remembered if a process held it, else
    /// a lookup (which may dump again), remembered; with the process of
    /// its transitions made in a process's context where no dump found
    /// one holding it.
    fn holder(&mut self, c: &Change) -> Owner {
        let (remembered, task) = match self.known.get(&c.skaddr) {
            Some(k) => (k.holder.clone(), k.task.or(c.task)),
            None => (None, c.task),
        };
        if remembered.as_ref().is_some_and(|h| h.inode.is_some_and(|i| i != 0)) || !c.complete() {
            return remembered.unwrap_or_default().or_pid(task);
        }
        let tuple = c.tuple().canonical();
        let twins = self.live.get(&tuple).is_some_and(|v| v.iter().any(|&x| x != c.skaddr));
        if twins {
            if self.twinned.len() >= MAX_HELD {
                self.twinned.retain(|_, at| c.ts_ns.saturating_sub(*at) < TWINNED_NS);
            }
            if self.twinned.len() < MAX_HELD {
                self.twinned.insert(tuple, c.ts_ns);
            }
        }
        let twinned = self.twinned.get(&tuple).is_some_and(|at| c.ts_ns.saturating_sub(*at) < TWINNED_NS);
        if twins || twinned {
            // Another namespace's socket has the tuple: which one a dump
            // finds cannot be told; none rather than the other's.
            return remembered.unwrap_or_default().or_pid(task);
        }
        // With the process the event ran for, so that a socket held by
        // another process of another namespace is not taken for this one;
        // found: a socket the dump saw (it has an inode).
        // Not dumped again for each event's time: two sockets with the
        // tuple are told by `live` instead.
        let found = Some(self.owners.of_held_socket(c.tuple(), task)).filter(|o| o.inode.is_some());
        // A closing socket may have gone, and its TIME-WAIT successor
        // (no inode) taken its tuple: what was known of it is better.
        let better = match (&found, &remembered) {
            (Some(f), Some(_)) if f.inode == Some(0) => remembered,
            (Some(_), _) => found,
            (None, _) => remembered,
        };
        if let (Some(k), Some(h)) = (self.known.get_mut(&c.skaddr), &better) {
            k.holder = Some(h.clone());
        }
        better.unwrap_or_default().or_pid(task)
    }

    /// Count the socket among those with its tuple (bounded: past
    /// [`MAX_KNOWN`], all are forgotten and counted again as they come).
    fn note_live(&mut self, c: &Change) {
        if !c.complete() || c.new == tcp_state::CLOSE && c.old == tcp_state::LISTEN {
            return;
        }
        let v = self.live.entry(c.tuple().canonical()).or_default();
        if !v.contains(&c.skaddr) {
            v.push(c.skaddr);
            self.live_count += 1;
        }
        if self.live_count > MAX_KNOWN {
            self.live.clear();
            self.live_count = 0;
        }
    }

    fn forget_live(&mut self, c: &Change) {
        let tuple = c.tuple().canonical();
        if let Some(v) = self.live.get_mut(&tuple) {
            let before = v.len();
            v.retain(|&x| x != c.skaddr);
            self.live_count -= before - v.len();
            if v.is_empty() {
                self.live.remove(&tuple);
            }
        }
    }

    /// The rows still held when the stream ends, as the kernel gave them.
    fn release(&mut self, plan: &TracePlan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let mut rows: Vec<Change> = self.held.drain().flat_map(|(_, v)| v).collect();
        rows.sort_by_key(|r| r.ts_ns);
        let mut failed = None;
        for r in &rows {
            if out.done()
                || emit(r, &Owner::default().or_pid(r.task), &mut self.containers, plan, out, &mut failed).is_break()
            {
                break;
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

const CONTAINER: Cols<Col> = Cols { name: Col::Container, id: Col::ContainerId };

/// The holder columns.
const OWNER: OwnerColumns<Col> = OwnerColumns {
    netns: Col::Netns,
    netns_name: Col::NetnsName,
    inode: Col::Inode,
    cookie: Col::Cookie,
    uid: Some(Col::Uid),
    pid: Col::Pid,
    process: Col::Process,
};

fn emit(
    c: &Change,
    holder: &Owner,
    containers: &mut ContainerLookup,
    plan: &TracePlan,
    out: &mut Emitter<'_>,
    failed: &mut Option<anyhow::Error>,
) -> ControlFlow<()> {
    use Col::*;
    if !plan.covers(holder.netns) {
        return ControlFlow::Continue(());
    }
    let r = &mut out.rows;
    r.timestamp_ns(Ts, Some(c.ts_ns));
    r.u64(SockId, Some(sock_id(c.skaddr)));
    r.str(Family, Some(if c.inet6 { "inet6" } else { "inet" }));
    r.display(LocalAddr, &c.local.ip());
    r.u16(LocalPort, Some(c.local.port()));
    r.display(RemoteAddr, &c.remote.ip());
    r.u16(RemotePort, Some(c.remote.port()));
    r.str(OldState, Some(state_name(c.old)));
    r.str(NewState, Some(state_name(c.new)));
    r.f64(MsInOldState, c.ms_in_old);
    holder.write(r, &OWNER);
    containers.fill_event(r, CONTAINER, holder.pid, holder.netns);
    let current = i32::try_from(c.current_pid).ok();
    r.i32(CurrentPid, Some(current.unwrap_or(0)));
    r.str(CurrentProcess, current.filter(|&p| p > 0).and_then(owners::comm).as_deref());
    r.u64(Col::Overruns, Some(c.lost));
    out.end_row_in(failed)
}

/// The scan's kernel filter with TCP's protocol first (the tracepoint
/// also fires for SCTP and MPTCP sockets), and every test of the local
/// port letting port 0 through too: a connect()'s CLOSE -> SYN-SENT
/// comes before its port, which its row takes from the next transition.
fn tcp_only(format: &Format, filter: &Filter) -> Filter {
    let mut f = Filter::default();
    f.require(format, AnyOf(vec![Cmp { field: "protocol".into(), op: Op::Eq, value: i64::from(inet::IPPROTO_TCP) }]));
    for group in &filter.0 {
        let mut group = group.clone();
        if group.0.iter().any(|c| c.field == "sport") {
            group.0.push(Cmp { field: "sport".into(), op: Op::Eq, value: 0 });
        }
        f.require(format, group);
    }
    f
}

impl Table for TcpStateChangesTable {
    const NAME: &'static str = "tcp_state_changes";
    const ABOUT: &'static str = "Every TCP state transition as the kernel makes it (sock:inet_sock_set_state; bcc tcpstates), with the socket's holder, while the query listens (--capture-for, default 10 s)";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = TracePlan;

    fn plan(&self, scan: &Scan<'_>) -> TracePlan {
        let mut plan = TracePlan::new(POINTS, scan);
        for p in &mut plan.points {
            if let Ok(format) = &p.format {
                p.filter = tcp_only(format, &p.filter);
            }
        }
        plan
    }

    fn label(&self, plan: &TracePlan) -> String {
        plan.label(Self::NAME)
    }

    fn read(&self, plan: &TracePlan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let fields = match plan.points.first().map(|p| &p.format) {
            Some(Ok(format)) => match Fields::of(format) {
                Ok(f) => Some(f),
                Err(e) if e.is_missing() => {
                    sockql_collect::notice::note_once(
                        "tcp-state-changes-field",
                        format!("tcp state changes: {e}; its rows are missing"),
                    );
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            },
            // plan.read says why.
            _ => None,
        };
        let Some(fields) = fields else {
            return plan.read("tcp state changes", out, |_, _, _| ControlFlow::Continue(()));
        };
        let mut tracker = Tracker {
            fields,
            owners: Owners::lazy(),
            known: HashMap::new(),
            live: HashMap::new(),
            live_count: 0,
            twinned: HashMap::new(),
            held: HashMap::new(),
            held_rows: 0,
            containers: ContainerLookup::for_stream(&out.rows, CONTAINER),
        };
        plan.read("tcp state changes", out, |hit, out, failed| tracker.on(hit, plan, out, failed))?;
        tracker.release(plan, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracepoints::kernel_filter;
    use datafusion::prelude::{col, lit};
    use sockql_collect::trace::format::parse;

    fn format() -> Format {
        parse(include_str!("../../../tests/fixtures/tracepoints/sock_inet_sock_set_state.format")).unwrap()
    }

    #[test]
    fn states_and_ports_go_to_the_kernel_after_the_protocol() {
        let f = format();
        let filters = vec![
            col("new_state").eq(lit("ESTAB")),
            col("old_state").in_list(vec![lit("SYN-SENT"), lit("CLOSE")], false),
            col("remote_port").eq(lit(8080)),
            col("local_port").gt(lit(1000)),
            col("process").eq(lit("curl")),
        ];
        let got = tcp_only(&f, &kernel_filter(&POINTS[0], &f, &filters)).to_string();
        assert_eq!(
            got,
            "protocol == 6 && newstate == 1 && (oldstate == 2 || oldstate == 7) && dport == 8080 && (sport > 1000 || sport == 0)"
        );
        assert_eq!(tcp_only(&f, &Filter::default()).to_string(), "protocol == 6");
    }

    #[test]
    fn close_reads_close_and_ids_hide_addresses() {
        assert_eq!(state_name(7), "CLOSE");
        assert_eq!(state_name(1), "ESTAB");
        assert_eq!(state_name(200), "UNKNOWN");
        assert_eq!(sock_id(0xffff_8880_1234_5678), sock_id(0xffff_8880_1234_5678));
        assert_ne!(sock_id(0xffff_8880_1234_5678), 0xffff_8880_1234_5678);
        assert_ne!(sock_id(1), sock_id(2));
    }
}
