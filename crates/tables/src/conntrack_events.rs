//! `conntrack_events`: connection-tracking entries as they are made,
//! updated and destroyed while the query listens (`--capture-for`, 10 s by
//! default; a LIMIT or Ctrl-C ends it sooner), from ctnetlink's multicast
//! groups, the source of `conntrack -E`, in the current namespace or those
//! `--all-netns` / a netns filter name. Each row is the event's kind, when
//! sockql read it, and the entry as the `conntrack` table shows it (its
//! columns, in its order); a DESTROY carries the final counters and, with
//! nf_conntrack_timestamp=1, `stop_time`.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use crate::columns::{joined, ColumnDef};
use crate::container_fill::{Cols, ContainerLookup};
use crate::listen::{listen_in_each, Listener};
use crate::live::Emitter;
use crate::table_columns;
use crate::{conntrack, scope, streams, Kind, Scan, Table};
use sockql_collect::conntrack::events::ConntrackListener;
use sockql_collect::netns::Netns;

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When sockql read the event, UTC";
    Event: "event", Utf8, false, "NEW, UPDATE or DESTROY, as conntrack -E prints them";
    StopTime: "stop_time", TimestampMs, true, "DESTROY: when the flow ended, UTC (needs net.netfilter.nf_conntrack_timestamp=1)";
    Overruns: "overruns", U64, false, "Times this namespace's listener lost events to a full queue before this row (ENOBUFS); 0 means none lost so far";
    Container: "container", Utf8, true, "Name of the container whose network namespace the entry was seen in (podman ps / docker ps NAMES; a NAT'd connection is the namespace's that tracked it); null for the host's namespace, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host's namespace";
});

/// The event's columns, then the `conntrack` table's.
const COLUMNS: &[ColumnDef] =
    &joined::<{ Col::DEFS.len() + conntrack::Col::DEFS.len() }>(Col::DEFS, conntrack::Col::DEFS);

#[derive(Debug, Clone, Copy)]
pub struct ConntrackEventsTable;

/// One scan: the namespaces it listens in, and for how long.
pub struct Plan {
    targets: Vec<Netns>,
    bound: Option<std::time::Duration>,
    /// The session whose front end ends its streams (Ctrl-C).
    session: std::sync::Arc<streams::Streams>,
}

impl Table for ConntrackEventsTable {
    const NAME: &'static str = "conntrack_events";
    const ABOUT: &'static str = "Conntrack entries as they are made, updated and destroyed (conntrack -E), while the query listens (--capture-for, default 10 s)";
    const KIND: Kind = Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = COLUMNS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        Plan { targets: scan.targets(), bound: streams::bound(scan.options), session: scan.options.streams.clone() }
    }

    fn label(&self, plan: &Plan) -> String {
        format!(
            "conntrack_events: ctnetlink groups {} {}",
            scope::describe(&plan.targets),
            streams::describe(plan.bound)
        )
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let containers = Arc::new(Mutex::new(ContainerLookup::for_stream(&out.rows, CONTAINER)));
        let open = |ns: &Netns| -> anyhow::Result<Option<Listening>> {
            let listener = ConntrackListener::open().map_err(|e| {
                anyhow::Error::from(e).context("listening for conntrack events (needs root: CAP_NET_ADMIN)")
            })?;
            note_sysctls(ns);
            Ok(Some(Listening { ns: ns.clone(), listener, containers: containers.clone() }))
        };
        listen_in_each("conntrack events", &plan.targets, &plan.session, plan.bound, out, open, |_| Ok(()))
    }
}

/// One namespace's listener.
struct Listening {
    ns: Netns,
    listener: ConntrackListener,
    /// The scan's containers, one snapshot for every namespace.
    containers: Arc<Mutex<ContainerLookup>>,
}

const CONTAINER: Cols<Col> = Cols { name: Col::Container, id: Col::ContainerId };

impl Listener for Listening {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.raw_fd()
    }

    fn overruns(&self) -> u64 {
        self.listener.overruns()
    }

    fn read_waiting(&mut self, out: &mut Emitter<'_>) -> anyhow::Result<ControlFlow<()>> {
        let (ns, overruns) = (&self.ns, self.listener.overruns());
        let mut failed = None;
        let mut containers =
            self.containers.lock().map_err(|_| anyhow::anyhow!("conntrack events: container lookup poisoned"))?;
        self.listener.read_waiting(|kind, ct| {
            let r = &mut out.rows;
            r.timestamp_ns(Col::Ts, Some(streams::now_ns()));
            r.str(Col::Event, Some(kind.name()));
            r.timestamp_ms(Col::StopTime, ct.stop_ns.map(|n| (n / 1_000_000) as i64));
            r.u64(Col::Overruns, Some(overruns));
            // By the namespace alone: conntrack entries have no process.
            containers.fill_event(r, CONTAINER, None, Some(ns.inode));
            r.at(Col::DEFS.len(), |r| conntrack::append(r, ct, ns));
            out.end_row_in(&mut failed)
        })?;
        out.settle(failed)
    }
}

/// Say once per namespace which of the entry's fields its sysctls leave
/// out, as conntrack -E users learn the hard way.
fn note_sysctls(ns: &Netns) {
    let off = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}")).map(|v| v.trim() == "0").unwrap_or(true)
    };
    let mut missing = Vec::new();
    if off("nf_conntrack_acct") {
        missing.push("counters (net.netfilter.nf_conntrack_acct=0)");
    }
    if off("nf_conntrack_timestamp") {
        missing.push("start and stop times (net.netfilter.nf_conntrack_timestamp=0)");
    }
    if !missing.is_empty() {
        sockql_collect::notice::note_once(
            &format!("conntrack-events-sysctls-{}", ns.inode),
            format!(
                "conntrack_events in {}: no {}",
                ns.name.clone().unwrap_or_else(|| ns.inode.to_string()),
                missing.join(" and no ")
            ),
        );
    }
}
