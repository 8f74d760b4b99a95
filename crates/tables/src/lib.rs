//! The SQL tables, one file each: its columns (with descriptions), what it
//! pushes down to its reader, and how a scan reads the kernel, as a
//! [`live_table::LiveSource`]; `live_table.rs` makes each a DataFusion
//! `TableProvider`, and `live.rs` streams what its reader produces.

pub mod columns;
pub mod conntrack;
pub mod conntrack_events;
pub mod conntrack_stats;
pub mod counter_table;
pub mod filters;
pub mod live;
pub mod live_table;
pub mod net_counters;
pub mod netlink_sockets;
pub mod netns;
pub mod owner_fill;
pub mod packets;
pub mod process_events;
pub mod processes;
pub mod scope;
pub mod socket_events;
pub mod socket_owners;
pub mod sockets;
pub mod sockstat;
pub mod streams;
pub mod sysctls;
pub mod unix_sockets;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

use live_table::LiveTable;

/// How tables read the kernel, from the command line.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Read sockets from /proc/net even where netlink works.
    pub no_netlink: bool,
    /// Cover every network namespace, not just our own. Shared, so the
    /// shell's `\netns all` changes what already registered tables read.
    pub all_netns: Arc<AtomicBool>,
    /// How long a live packet capture runs (`--capture-for`).
    pub capture_for: Option<std::time::Duration>,
    /// Keep and show packet payloads (`--payload`); without it captures
    /// keep headers only and the `payload` column is null.
    pub payload: bool,
    /// Streams run until Ctrl-C unless `--capture-for` bounds them
    /// (`--follow`).
    pub follow: bool,
}

impl SourceOptions {
    pub fn all_netns(&self) -> bool {
        self.all_netns.load(Ordering::Relaxed)
    }
}

/// A table as the catalog lists it.
pub struct TableInfo {
    pub name: &'static str,
    pub about: &'static str,
    pub schema: SchemaRef,
}

/// One table: its name and description for the catalog, its columns, and
/// how to make its provider. [`TABLES`] is the one list both the catalog
/// and registration read.
pub struct Entry {
    pub name: &'static str,
    pub about: &'static str,
    /// Its columns (a function: one table builds its list at first use).
    pub defs: fn() -> &'static [columns::ColumnDef],
    pub make: fn(&SourceOptions) -> Arc<dyn TableProvider>,
}

/// Every table sockql serves, in the order `sockql tables` lists them.
/// The tables that are event streams (read until a time or count, not a
/// snapshot of state): a snapshot of them cannot be taken once and reused.
pub const STREAMS: &[&str] =
    &[packets::capture::NAME, conntrack_events::NAME, process_events::NAME, socket_events::NAME];

pub const TABLES: &[Entry] = &[
    Entry {
        name: sockets::NAME,
        about: sockets::ABOUT,
        defs: || sockets::Col::DEFS,
        make: |o| Arc::new(LiveTable(sockets::SocketsTable::new(o.clone()))),
    },
    Entry {
        name: processes::NAME,
        about: processes::ABOUT,
        defs: || processes::Col::DEFS,
        make: |_| Arc::new(LiveTable(processes::ProcessesTable)),
    },
    Entry {
        name: socket_owners::NAME,
        about: socket_owners::ABOUT,
        defs: || socket_owners::Col::DEFS,
        make: |_| Arc::new(LiveTable(socket_owners::SocketOwnersTable)),
    },
    Entry {
        name: sysctls::NAME,
        about: sysctls::ABOUT,
        defs: || sysctls::Col::DEFS,
        make: |o| Arc::new(LiveTable(sysctls::SysctlsTable::new(o.clone()))),
    },
    Entry {
        name: conntrack::NAME,
        about: conntrack::ABOUT,
        defs: || conntrack::Col::DEFS,
        make: |o| Arc::new(LiveTable(conntrack::ConntrackTable::new(o.clone()))),
    },
    Entry {
        name: conntrack_stats::NAME,
        about: conntrack_stats::ABOUT,
        defs: || conntrack_stats::Col::DEFS,
        make: |o| Arc::new(LiveTable(conntrack_stats::ConntrackStatsTable::new(o.clone()))),
    },
    Entry {
        name: netns::NAME,
        about: netns::ABOUT,
        defs: || netns::Col::DEFS,
        make: |_| Arc::new(LiveTable(netns::NetnsTable)),
    },
    Entry {
        name: netlink_sockets::NAME,
        about: netlink_sockets::ABOUT,
        defs: || netlink_sockets::Col::DEFS,
        make: |o| Arc::new(LiveTable(netlink_sockets::NetlinkSocketsTable::new(o.clone()))),
    },
    Entry {
        name: net_counters::NAME,
        about: net_counters::ABOUT,
        defs: || net_counters::Col::DEFS,
        make: |o| {
            Arc::new(LiveTable(counter_table::CounterTable {
                name: net_counters::NAME,
                defs: net_counters::Col::DEFS,
                read: sockql_collect::counters::read_counters,
                options: o.clone(),
            }))
        },
    },
    Entry {
        name: sockstat::NAME,
        about: sockstat::ABOUT,
        defs: || sockstat::Col::DEFS,
        make: |o| {
            Arc::new(LiveTable(counter_table::CounterTable {
                name: sockstat::NAME,
                defs: sockstat::Col::DEFS,
                read: sockql_collect::counters::read_sockstat,
                options: o.clone(),
            }))
        },
    },
    Entry {
        name: packets::capture::NAME,
        about: packets::capture::ABOUT,
        defs: || packets::capture::COLUMNS,
        make: |o| Arc::new(LiveTable(packets::capture::PacketsTable::new(o.clone()))),
    },
    Entry {
        name: conntrack_events::NAME,
        about: conntrack_events::ABOUT,
        defs: conntrack_events::columns,
        make: |o| Arc::new(LiveTable(conntrack_events::ConntrackEventsTable::new(o.clone()))),
    },
    Entry {
        name: process_events::NAME,
        about: process_events::ABOUT,
        defs: || process_events::Col::DEFS,
        make: |o| Arc::new(LiveTable(process_events::ProcessEventsTable::new(o.clone()))),
    },
    Entry {
        name: socket_events::NAME,
        about: socket_events::ABOUT,
        defs: || socket_events::Col::DEFS,
        make: |o| Arc::new(LiveTable(socket_events::SocketEventsTable::new(o.clone()))),
    },
    Entry {
        name: unix_sockets::NAME,
        about: unix_sockets::ABOUT,
        defs: || unix_sockets::Col::DEFS,
        make: |o| Arc::new(LiveTable(unix_sockets::UnixSocketsTable::new(o.clone()))),
    },
];

/// Every table sockql serves, with its schema, in [`TABLES`] order.
pub fn catalog() -> Vec<TableInfo> {
    TABLES.iter().map(|t| TableInfo { name: t.name, about: t.about, schema: columns::schema_of((t.defs)()) }).collect()
}

/// Register every live table with a DataFusion context.
pub fn register_all(ctx: &SessionContext, options: &SourceOptions) -> Result<()> {
    for t in TABLES {
        ctx.register_table(t.name, (t.make)(options))?;
    }
    // Table functions: read_pcap('FILE').
    ctx.register_udtf(packets::read_pcap::NAME, Arc::new(packets::read_pcap::ReadPcap { payload: options.payload }));
    // capture_seconds(), for rates over a live capture.
    ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
        packets::capture_seconds::CaptureSeconds::new(options),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live_table::LiveSource;

    #[test]
    fn streams_are_the_tables_whose_source_streams() {
        let o = SourceOptions::default();
        assert!(packets::capture::PacketsTable::new(o.clone()).is_stream());
        assert!(conntrack_events::ConntrackEventsTable::new(o.clone()).is_stream());
        assert!(process_events::ProcessEventsTable::new(o.clone()).is_stream());
        assert!(socket_events::SocketEventsTable::new(o.clone()).is_stream());
        assert!(!sockets::SocketsTable::new(o).is_stream());
        for name in STREAMS {
            assert!(TABLES.iter().any(|t| t.name == *name), "{name}");
        }
    }
}
