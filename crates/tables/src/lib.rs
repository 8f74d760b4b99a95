//! The SQL tables, one file each: its columns (with descriptions), what it
//! pushes down to its reader, and how a scan reads the kernel, as a
//! [`Table`] (`table.rs`); `live_table.rs` makes each a DataFusion
//! `TableProvider`, and `live.rs` streams what its reader produces.

pub mod capabilities;
pub mod columns;
pub mod conntrack;
pub mod conntrack_events;
pub mod conntrack_stats;
pub mod container_fill;
pub mod containers;
pub mod counter_table;
pub mod filters;
pub(crate) mod holders;
pub mod listen;
pub mod live;
pub mod live_table;
pub mod net_counters;
pub mod netlink_sockets;
pub mod netns;
pub mod owner_fill;
pub mod packet_drops;
pub mod packets;
pub mod process_events;
pub mod processes;
pub mod scope;
pub mod sock_lookup;
pub mod socket_events;
pub mod socket_owners;
pub mod socket_pressure;
pub mod sockets;
pub mod sockstat;
pub mod streams;
pub mod sysctls;
pub mod table;
pub mod tcp_metrics;
pub mod tcp_resets;
pub mod tcp_retransmits;
pub mod tcp_state_changes;
pub mod tracepoints;
pub mod unix_sockets;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

pub use table::{AnyTable, Kind, Pushdown, Scan, Table};

/// How tables read the kernel, as the front end decided from its flags,
/// and the session the tables are made for.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Read sockets from /proc/net even where netlink works.
    pub no_netlink: bool,
    /// Cover every network namespace, not just our own. Shared, so the
    /// shell's `\netns all` changes what already registered tables read.
    pub all_netns: Arc<AtomicBool>,
    /// How long a stream (a live capture, an event table) runs: None
    /// until its session's front end ends it (`--follow`), else
    /// `--capture-for` or [`streams::DEFAULT_STREAM_FOR`].
    pub stream_for: Option<std::time::Duration>,
    /// The network namespace a scan reads by default instead of sockql's
    /// own: a container's (`--container NAME`, `\container NAME`), as
    /// `nsenter -t PID -n` would enter it. 0 is sockql's own. Shared, as
    /// `all_netns` is, so the shell's `\container` changes it.
    pub home_netns: Arc<AtomicU64>,
    /// Keep and show packet payloads (`--payload`); without it captures
    /// keep headers only and the `payload` column is null.
    pub payload: bool,
    /// The session's streams, which its front end ends (Ctrl-C). The
    /// engine gives each session its own (`Engine::with`).
    pub streams: Arc<streams::Streams>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            no_netlink: false,
            all_netns: Arc::default(),
            home_netns: Arc::default(),
            stream_for: Some(streams::DEFAULT_STREAM_FOR),
            payload: false,
            streams: Arc::default(),
        }
    }
}

impl SourceOptions {
    pub fn all_netns(&self) -> bool {
        self.all_netns.load(Ordering::Relaxed)
    }

    /// The namespace scans read by default, when not sockql's own.
    pub fn home_netns(&self) -> Option<u64> {
        Some(self.home_netns.load(Ordering::Relaxed)).filter(|&n| n != 0)
    }
}

/// A table as the catalog lists it.
pub struct TableInfo {
    pub name: &'static str,
    pub about: &'static str,
    pub kind: Kind,
    pub schema: SchemaRef,
}

/// Every table sockql serves, in the order `sockql tables` lists them:
/// the one list the catalog and registration read.
pub const TABLES: &[&dyn AnyTable] = &[
    &sockets::SocketsTable,
    &processes::ProcessesTable,
    &socket_owners::SocketOwnersTable,
    &sysctls::SysctlsTable,
    &conntrack::ConntrackTable,
    &conntrack_stats::ConntrackStatsTable,
    &netns::NetnsTable,
    &netlink_sockets::NetlinkSocketsTable,
    &net_counters::NetCountersTable,
    &sockstat::SockstatTable,
    &packets::capture::PacketsTable,
    &conntrack_events::ConntrackEventsTable,
    &process_events::ProcessEventsTable,
    &socket_events::SocketEventsTable,
    &unix_sockets::UnixSocketsTable,
    &tcp_metrics::TcpMetricsTable,
    &packet_drops::PacketDropsTable,
    &socket_pressure::SocketPressureTable,
    &tcp_state_changes::TcpStateChangesTable,
    &tcp_retransmits::TcpRetransmitsTable,
    &tcp_resets::TcpResetsTable,
    &containers::ContainersTable,
];

/// Every table sockql serves, with its schema, in [`TABLES`] order.
pub fn catalog() -> Vec<TableInfo> {
    TABLES
        .iter()
        .map(|t| TableInfo {
            name: t.name(),
            about: t.about(),
            kind: t.kind(),
            schema: columns::schema_of(t.columns()),
        })
        .collect()
}

/// Register every live table with a DataFusion context.
pub fn register_all(ctx: &SessionContext, options: &SourceOptions) -> Result<()> {
    for t in TABLES {
        ctx.register_table(t.name(), t.provider(options))?;
    }
    // Table functions: read_pcap('FILE').
    ctx.register_udtf(packets::read_pcap::NAME, Arc::new(packets::read_pcap::ReadPcap { payload: options.payload }));
    // capture_seconds(), for rates over a live capture.
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        packets::capture_seconds::CaptureSeconds::new(options),
    ));
    Ok(())
}
