//! `conntrack_events`: connection-tracking entries as they are made,
//! updated and destroyed while the query listens (`--capture-for`, 10 s by
//! default; a LIMIT or Ctrl-C ends it sooner), from ctnetlink's multicast
//! groups, the source of `conntrack -E`, in the current namespace or those
//! `--all-netns` / a netns filter name. Each row is the event's kind, when
//! sockql read it, and the entry as the `conntrack` table shows it (its
//! columns, in its order); a DESTROY carries the final counters and, with
//! nf_conntrack_timestamp=1, `stop_time`.

use std::sync::LazyLock;

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder, Ty};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::{conntrack, scope, streams, SourceOptions};
use sockql_collect::conntrack::events::ConntrackListener;
use sockql_collect::netns::Netns;

pub const NAME: &str = "conntrack_events";
pub const ABOUT: &str = "Conntrack entries as they are made, updated and destroyed (conntrack -E), while the query listens (--capture-for, default 10 s)";

/// The event's own columns, before the entry's.
const OWN: [ColumnDef; 4] = [
    ColumnDef { name: "ts", ty: Ty::TimestampNs, nullable: false, doc: "When sockql read the event, UTC" },
    ColumnDef { name: "event", ty: Ty::Utf8, nullable: false, doc: "NEW, UPDATE or DESTROY, as conntrack -E prints them" },
    ColumnDef {
        name: "stop_time",
        ty: Ty::TimestampMs,
        nullable: true,
        doc: "DESTROY: when the flow ended, UTC (needs net.netfilter.nf_conntrack_timestamp=1)",
    },
    ColumnDef {
        name: "overruns",
        ty: Ty::U64,
        nullable: false,
        doc: "Times this namespace's listener lost events to a full queue before this row (ENOBUFS); 0 means none lost so far",
    },
];

/// The event's columns, then the `conntrack` table's.
static COLUMNS: LazyLock<Vec<ColumnDef>> = LazyLock::new(|| OWN.iter().chain(conntrack::Col::DEFS).copied().collect());

/// The table's columns, for the catalog.
pub fn columns() -> &'static [ColumnDef] {
    &COLUMNS
}

#[derive(Debug)]
pub struct ConntrackEventsTable {
    options: SourceOptions,
}

impl ConntrackEventsTable {
    pub fn new(options: SourceOptions) -> Self {
        ConntrackEventsTable { options }
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

impl LiveSource for ConntrackEventsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        &COLUMNS
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let targets = scope::targets(filters, self.options.all_netns());
        let bound = streams::bound(&self.options);
        let projection = projection.cloned();
        let label =
            format!("conntrack_events: ctnetlink groups {} {}", scope::describe(&targets), streams::describe(bound));
        LivePartition::projected(&COLUMNS, projection.clone().as_deref(), label, move |sink| {
            let rows = RowBuilder::new(&COLUMNS, projection.as_deref(), BATCH_ROWS);
            let out = std::cell::RefCell::new(Emitter::new(rows, sink, limit));
            let listeners = scope::open_in_each(&targets, |ns| {
                let l = ConntrackListener::open().map_err(|e| {
                    anyhow::Error::from(e).context("listening for conntrack events (needs root: CAP_NET_ADMIN)")
                })?;
                note_sysctls(ns);
                Ok(Some(l))
            })?;
            streams::note_start("listening", bound);
            let fds: Vec<_> = listeners.iter().map(|(_, l)| l.raw_fd()).collect();
            let listeners = std::cell::RefCell::new(listeners);
            streams::poll_for(
                &fds,
                bound,
                std::time::Duration::ZERO,
                |i| {
                    let mut out = out.borrow_mut();
                    let mut listeners = listeners.borrow_mut();
                    let (ns, listener) = &mut listeners[i];
                    let overruns = listener.overruns();
                    let mut failed = None;
                    listener.read_waiting(|kind, ct| {
                        let r = &mut out.rows;
                        r.timestamp_ns(0, Some(streams::now_ns()));
                        r.str(1, Some(kind.name()));
                        r.timestamp_ms(2, ct.stop_ns.map(|n| (n / 1_000_000) as i64));
                        r.u64(3, Some(overruns));
                        conntrack::append(r, ct, ns, OWN.len());
                        out.end_row_in(&mut failed)
                    })?;
                    out.settle(failed)
                },
                || {
                    let mut out = out.borrow_mut();
                    out.tick()?;
                    Ok(out.flow())
                },
            )?;
            streams::warn_lost("conntrack events", listeners.borrow().iter().map(|(_, l)| l.overruns()).sum());
            out.into_inner().finish()
        })
    }
}
