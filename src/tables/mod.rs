//! The SQL tables, one file each: its columns (with descriptions), what it
//! pushes down to its reader, and how a scan reads the kernel, as a
//! [`live_table::LiveSource`]; `live_table.rs` makes each a DataFusion
//! `TableProvider`, and `live.rs` streams what its reader produces.

pub mod columns;
pub mod conntrack;
pub mod conntrack_stats;
pub mod counter_table;
pub mod filters;
pub mod live;
pub mod live_table;
pub mod net_counters;
pub mod netns;
pub mod owner_fill;
pub mod processes;
pub mod scope;
pub mod socket_owners;
pub mod sockets;
pub mod sockstat;
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

/// Every table sockql serves, in the order `sockql tables` lists them.
pub fn catalog() -> Vec<TableInfo> {
    vec![
        TableInfo { name: sockets::NAME, about: sockets::ABOUT, schema: columns::schema_of(sockets::Col::DEFS) },
        TableInfo { name: processes::NAME, about: processes::ABOUT, schema: columns::schema_of(processes::Col::DEFS) },
        TableInfo {
            name: socket_owners::NAME,
            about: socket_owners::ABOUT,
            schema: columns::schema_of(socket_owners::Col::DEFS),
        },
        TableInfo { name: sysctls::NAME, about: sysctls::ABOUT, schema: columns::schema_of(sysctls::Col::DEFS) },
        TableInfo { name: conntrack::NAME, about: conntrack::ABOUT, schema: columns::schema_of(conntrack::Col::DEFS) },
        TableInfo {
            name: conntrack_stats::NAME,
            about: conntrack_stats::ABOUT,
            schema: columns::schema_of(conntrack_stats::Col::DEFS),
        },
        TableInfo { name: netns::NAME, about: netns::ABOUT, schema: columns::schema_of(netns::Col::DEFS) },
        TableInfo { name: net_counters::NAME, about: net_counters::ABOUT, schema: columns::schema_of(net_counters::Col::DEFS) },
        TableInfo { name: sockstat::NAME, about: sockstat::ABOUT, schema: columns::schema_of(sockstat::Col::DEFS) },
        TableInfo { name: unix_sockets::NAME, about: unix_sockets::ABOUT, schema: columns::schema_of(unix_sockets::Col::DEFS) },
    ]
}

/// Register every live table with a DataFusion context.
pub fn register_all(ctx: &SessionContext, options: &SourceOptions) -> Result<()> {
    let tables: Vec<(&str, Arc<dyn TableProvider>)> = vec![
        (sockets::NAME, Arc::new(LiveTable(sockets::SocketsTable::new(options.clone())))),
        (processes::NAME, Arc::new(LiveTable(processes::ProcessesTable))),
        (socket_owners::NAME, Arc::new(LiveTable(socket_owners::SocketOwnersTable))),
        (sysctls::NAME, Arc::new(LiveTable(sysctls::SysctlsTable::new(options.clone())))),
        (conntrack::NAME, Arc::new(LiveTable(conntrack::ConntrackTable::new(options.clone())))),
        (conntrack_stats::NAME, Arc::new(LiveTable(conntrack_stats::ConntrackStatsTable::new(options.clone())))),
        (netns::NAME, Arc::new(LiveTable(netns::NetnsTable))),
        (
            net_counters::NAME,
            Arc::new(LiveTable(counter_table::CounterTable {
                name: net_counters::NAME,
                defs: net_counters::Col::DEFS,
                read: crate::collect::counters::read_counters,
                options: options.clone(),
            })),
        ),
        (
            sockstat::NAME,
            Arc::new(LiveTable(counter_table::CounterTable {
                name: sockstat::NAME,
                defs: sockstat::Col::DEFS,
                read: crate::collect::counters::read_sockstat,
                options: options.clone(),
            })),
        ),
        (unix_sockets::NAME, Arc::new(LiveTable(unix_sockets::UnixSocketsTable::new(options.clone())))),
    ];
    for (name, table) in tables {
        ctx.register_table(name, table)?;
    }
    Ok(())
}
