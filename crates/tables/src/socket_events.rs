//! `socket_events`: every TCP and UDP socket the kernel destroys while the
//! query listens (`--capture-for`, 10 s by default; a LIMIT or Ctrl-C ends it
//! sooner), from the sock_diag destroy groups `ss -E` uses, in the current
//! namespace or those `--all-netns` / a netns filter name.
//!
//! The kernel says neither who held a socket nor when it was made. sockql
//! dumps the namespace's sockets when it starts listening and again every
//! [`REDUMP`], and names the holders of the sockets each dump finds new;
//! an event whose cookie a dump saw gets that `pid` and `process`, and if
//! it was first seen by a later dump (not the first), `opened_at` (that
//! dump's time: the socket was made since the dump before) and
//! `duration_ms`. A socket made and destroyed between two dumps has them
//! null, as has one whose holder had already closed it when a dump looked.
//!
//! What the dumps learned is kept only for sockets that are alive, so a
//! stream that runs for days under heavy churn holds what the host holds,
//! not what it has seen: an event takes its socket's entry out, and a
//! socket two dumps in a row no longer found (its event lost, or one the
//! kernel never sends) is forgotten. TIME-WAIT and request sockets are not
//! learned at all: the kernel sends no destroy event for them.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::columns::{ColumnDef, RowBuilder};
use crate::container_fill::{Cols, ContainerLookup};
use crate::listen::{listen_in_each, Listener};
use crate::live::Emitter;
use crate::table_columns;
use crate::{scope, streams, Kind, Scan, Table};
use sockql_collect::netns::{self, Netns};
use sockql_collect::owners;
use sockql_collect::sock_diag::destroy::DestroyListener;
use sockql_collect::sock_diag::inet::{self, Extensions, InetDiagMsg};
use sockql_collect::sock_diag::{InetRequest, SockDiag};
use sockql_collect::tcp_state;

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When sockql read the event, UTC (the kernel stamps none; it sends it as it frees the socket)";
    Netns: "netns", U64, false, "Network namespace of the socket";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, null if unnamed";
    Cookie: "cookie", U64, false, "Kernel socket cookie (sockets.cookie while it lived)";
    Protocol: "protocol", Utf8, false, "'tcp' or 'udp'";
    Family: "family", Utf8, false, "'inet' (IPv4) or 'inet6'";
    LocalAddr: "local_addr", Utf8, false, "Local address";
    LocalPort: "local_port", U16, false, "Local port";
    RemoteAddr: "remote_addr", Utf8, false, "Remote address";
    RemotePort: "remote_port", U16, false, "Remote port";
    State: "state", Utf8, false, "State when destroyed, as ss spells it (a TCP socket that closed reads UNCONN, ss -E's CLOSE)";
    BytesAcked: "bytes_acked", U64, true, "TCP: bytes the peer acknowledged (tcp_info, final)";
    BytesReceived: "bytes_received", U64, true, "TCP: bytes received (tcp_info, final)";
    SegsIn: "segs_in", U32, true, "TCP: segments received";
    SegsOut: "segs_out", U32, true, "TCP: segments sent";
    TotalRetrans: "total_retrans", U32, true, "TCP: segments retransmitted over the connection's life";
    Lost: "lost", U32, true, "TCP: segments thought lost when it closed";
    RttMs: "rtt_ms", F64, true, "TCP: smoothed round trip time, ms";
    MinRttMs: "min_rtt_ms", F64, true, "TCP: lowest round trip time seen, ms";
    DeliveryRateBps: "delivery_rate_bps", U64, true, "TCP: last delivery rate, bytes per second";
    Pid: "pid", I32, true, "Lowest pid holding the socket when a dump saw it (see the table's notes); null if none did";
    Process: "process", Utf8, true, "Command name of pid";
    OpenedAt: "opened_at", TimestampMs, true, "Made at most this long before: the time of the dump that first saw it, when that was not the first dump; else null";
    DurationMs: "duration_ms", F64, true, "ts minus opened_at, ms: how long it lived, to within the dump interval";
    Container: "container", Utf8, true, "Name of the container of pid (podman ps / docker ps NAMES), else of the container whose network namespace the socket was in (the holder is learned for this column only in a namespace a container shares without owning it, --network host); null for the host's, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host's";
    Overruns: "overruns", U64, false, "Times this namespace's listener lost events to a full queue before this row (ENOBUFS); 0 means none lost so far";
});

/// How often the namespace's sockets are dumped again to learn new
/// cookies' holders.
pub const REDUMP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct SocketEventsTable;

/// One scan: the namespaces it listens in, for how long, and whether it
/// learns the sockets' holders.
pub struct Plan {
    targets: Vec<Netns>,
    bound: Option<Duration>,
    /// The session whose front end ends its streams (Ctrl-C).
    session: std::sync::Arc<streams::Streams>,
    owners: bool,
}

/// What a dump learned of one socket.
#[derive(Debug, Clone)]
struct Seen {
    pid: Option<i32>,
    process: Option<String>,
    /// None when the first dump saw it (made at an unknown time before).
    opened_ms: Option<i64>,
    /// The last dump that found it alive.
    dump: u64,
    /// Its inode then: 0 while no process holds it (a connection still
    /// in its listener's accept queue), so a later dump asks again.
    inode: u64,
}

/// The most sockets remembered per namespace: the live set of a busy host
/// fits; beyond it new sockets' events have no pid (said once).
const MAX_SEEN: usize = 1 << 20;

/// The states whose sockets the kernel never announces destroying:
/// TIME-WAIT (6) and request sockets (TCP_NEW_SYN_RECV, 12) are freed
/// without a destroy event, so learning them would only fill `seen`.
const NO_EVENT_STATES: u32 = 1 << 6 | 1 << 12;

/// The live sockets of one namespace, as the dumps found them.
#[derive(Default)]
struct Holders {
    seen: HashMap<u64, Seen>,
    /// Dumps made so far.
    dumps: u64,
}

impl Holders {
    /// What the dumps knew of a socket the kernel just destroyed; its
    /// entry goes with it (a cookie is never reused).
    fn take(&mut self, cookie: u64) -> Option<Seen> {
        self.seen.remove(&cookie)
    }

    /// Dump the TCP and UDP sockets of the calling thread's namespace:
    /// mark those known as still alive, add the new ones with their
    /// holders (and name those that had none: accepted since), and forget those neither this dump nor the one before
    /// found (their events, if any, were read in between). `first` marks
    /// the dump made as listening began.
    fn learn(&mut self, first: bool) -> anyhow::Result<()> {
        self.dumps += 1;
        let dump = self.dumps;
        let seen = &mut self.seen;
        let mut fresh: Vec<(u64, u64)> = Vec::new();
        let mut diag = SockDiag::open()?;
        for protocol in [inet::IPPROTO_TCP, inet::IPPROTO_UDP] {
            for family in [inet::AF_INET, inet::AF_INET6] {
                let states = tcp_state::ALL_BITS & !NO_EVENT_STATES;
                let req =
                    InetRequest { protocol, family, states, extensions: Extensions::default(), conds: Vec::new() };
                diag.inet(&req, None, |m: &InetDiagMsg<'_>| {
                    match seen.get_mut(&m.cookie()) {
                        Some(s) => {
                            s.dump = dump;
                            if s.inode == 0 && m.inode() != 0 {
                                fresh.push((m.cookie(), m.inode() as u64));
                            }
                        }
                        None => fresh.push((m.cookie(), m.inode() as u64)),
                    }
                    Ok::<_, sockql_collect::Error>(ControlFlow::Continue(()))
                })?;
            }
        }
        seen.retain(|_, s| s.dump + 1 >= dump);
        // After a burst, give back the room it took.
        if seen.capacity() > 4 * seen.len().max(4096) {
            seen.shrink_to(2 * seen.len());
        }
        let room = MAX_SEEN.saturating_sub(seen.len());
        if fresh.len() > room {
            sockql_collect::notice::note_once(
                "socket-events-seen-cap",
                format!("more than {MAX_SEEN} sockets alive in a namespace: events of the sockets beyond have no pid or opened_at"),
            );
            fresh.truncate(room);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<u64> = fresh.iter().map(|&(_, inode)| inode).filter(|&i| i != 0).collect();
        let (holders, denied) = owners::lowest_owners(&wanted);
        if denied > 0 {
            sockql_collect::notice::note_once(
                "socket-events-owners-denied",
                "not running as root: the open files of other users' processes cannot be read, so their sockets' events have no pid",
            );
        }
        let opened_ms = (!first).then(|| streams::now_ns() / 1_000_000);
        for (cookie, inode) in fresh {
            let pid = holders.get(inode);
            // A socket named late keeps the time it was first seen.
            let opened_ms = seen.get(&cookie).map_or(opened_ms, |s| s.opened_ms);
            seen.insert(cookie, Seen { pid, process: pid.and_then(owners::comm), opened_ms, dump, inode });
        }
        Ok(())
    }
}

/// One namespace's listener and what its dumps saw.
struct Target {
    ns: Netns,
    listener: DestroyListener,
    holders: Holders,
    /// The scan's containers, one snapshot for every namespace.
    containers: Arc<Mutex<ContainerLookup>>,
}

const CONTAINER: Cols<Col> = Cols { name: Col::Container, id: Col::ContainerId };

impl Listener for Target {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.raw_fd()
    }

    fn overruns(&self) -> u64 {
        self.listener.overruns()
    }

    fn read_waiting(&mut self, out: &mut Emitter<'_>) -> anyhow::Result<ControlFlow<()>> {
        let Target { ns, listener, holders, containers } = self;
        let overruns = listener.overruns();
        let mut failed = None;
        let mut containers =
            containers.lock().map_err(|_| anyhow::anyhow!("socket events: container lookup poisoned"))?;
        listener.read_waiting(|m| {
            let seen = holders.take(m.cookie());
            append(&mut out.rows, ns, m, seen.as_ref(), overruns);
            containers.fill_event(&mut out.rows, CONTAINER, seen.and_then(|s| s.pid), Some(ns.inode));
            out.end_row_in(&mut failed)
        })?;
        out.settle(failed)
    }
}

fn append(r: &mut RowBuilder, ns: &Netns, m: &InetDiagMsg<'_>, seen: Option<&Seen>, overruns: u64) {
    use Col::*;
    let ts = streams::now_ns();
    r.timestamp_ns(Ts, Some(ts));
    r.u64(Col::Netns, Some(ns.inode));
    r.str(NetnsName, ns.name.as_deref());
    r.u64(Cookie, Some(m.cookie()));
    let protocol = m.attr(inet::INET_DIAG_PROTOCOL).and_then(|b| b.first().copied());
    r.str(Col::Protocol, Some(if protocol == Some(inet::IPPROTO_UDP) { "udp" } else { "tcp" }));
    r.str(Family, Some(sockql_collect::sock_diag::family_name(m.family())));
    r.display(LocalAddr, &m.local_addr());
    r.u16(LocalPort, Some(m.local_port()));
    r.display(RemoteAddr, &m.remote_addr());
    r.u16(RemotePort, Some(m.remote_port()));
    r.str(State, Some(tcp_state::name(m.state())));
    let t = m.tcp_info();
    let t = t.as_ref();
    r.u64(BytesAcked, t.and_then(|t| t.bytes_acked()));
    r.u64(BytesReceived, t.and_then(|t| t.bytes_received()));
    r.u32(SegsIn, t.and_then(|t| t.segs_in()));
    r.u32(SegsOut, t.and_then(|t| t.segs_out()));
    r.u32(TotalRetrans, t.and_then(|t| t.total_retrans()));
    r.u32(Lost, t.and_then(|t| t.lost()));
    r.f64(RttMs, t.and_then(|t| t.rtt_us()).map(|us| us as f64 / 1000.0));
    r.f64(MinRttMs, t.and_then(|t| t.min_rtt_us()).map(|us| us as f64 / 1000.0));
    r.u64(DeliveryRateBps, t.and_then(|t| t.delivery_rate()));
    r.i32(Pid, seen.and_then(|s| s.pid));
    r.str(Process, seen.and_then(|s| s.process.as_deref()));
    let opened = seen.and_then(|s| s.opened_ms);
    r.timestamp_ms(OpenedAt, opened);
    r.f64(DurationMs, opened.map(|o| (ts / 1_000_000 - o) as f64));
    r.u64(Overruns, Some(overruns));
}

impl Table for SocketEventsTable {
    const NAME: &'static str = "socket_events";
    const ABOUT: &'static str = "TCP and UDP sockets as the kernel destroys them (ss -E), with final tcp_info, while the query listens (--capture-for, default 10 s)";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        let owners = [Col::Pid, Col::Process, Col::OpenedAt, Col::DurationMs].iter().any(|&c| scan.wants(c));
        Plan {
            targets: scan.targets(),
            bound: streams::bound(scan.options),
            session: scan.options.streams.clone(),
            owners,
        }
    }

    fn label(&self, plan: &Plan) -> String {
        format!(
            "socket_events: sock_diag destroy groups {} {}",
            scope::describe(&plan.targets),
            streams::describe(plan.bound)
        )
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let lookup = ContainerLookup::for_stream(&out.rows, CONTAINER);
        // The holders are learned when the query asks for them, and for
        // the container columns where a container shares a namespace
        // without owning it (--network host): its sockets are named by
        // their holder only. Elsewhere the namespace names them.
        let owners = plan.owners || plan.targets.iter().any(|ns| lookup.shares_namespace(ns.inode));
        let containers = Arc::new(Mutex::new(lookup));
        // Listen first, then dump: a socket destroyed in between is an
        // event, not lost.
        let open = |ns: &Netns| -> anyhow::Result<Option<Target>> {
            let listener = DestroyListener::open().map_err(|e| {
                anyhow::Error::from(e).context("listening for socket destroy events (needs root: CAP_NET_ADMIN)")
            })?;
            let mut holders = Holders::default();
            if owners {
                holders.learn(true)?;
            }
            Ok(Some(Target { ns: ns.clone(), listener, holders, containers: containers.clone() }))
        };
        let mut next_dump = Instant::now() + REDUMP;
        let redump = |targets: &mut [Target]| {
            if owners && Instant::now() >= next_dump {
                for t in targets {
                    let holders = &mut t.holders;
                    netns::run_in(&t.ns, || holders.learn(false)).map_err(anyhow::Error::from)??;
                }
                next_dump = Instant::now() + REDUMP;
            }
            Ok(())
        };
        listen_in_each("socket events", &plan.targets, &plan.session, plan.bound, out, open, redump)
    }
}
