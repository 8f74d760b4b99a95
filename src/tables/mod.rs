//! The SQL tables, one file each: its columns (with descriptions), its
//! DataFusion `TableProvider`, and what it pushes down to its reader.

pub mod columns;
pub mod conntrack;
pub mod conntrack_stats;
pub mod filters;
pub mod live;
pub mod processes;
pub mod socket_owners;
pub mod sockets;
pub mod sysctls;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;

/// How tables read the kernel, from the command line.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Read sockets from /proc/net even where netlink works.
    pub no_netlink: bool,
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
    ]
}

/// Register every live table with a DataFusion context.
pub fn register_all(ctx: &SessionContext, options: &SourceOptions) -> Result<()> {
    let tables: Vec<(&str, Arc<dyn TableProvider>)> = vec![
        (sockets::NAME, Arc::new(sockets::SocketsTable::new(options.clone()))),
        (processes::NAME, Arc::new(processes::ProcessesTable)),
        (socket_owners::NAME, Arc::new(socket_owners::SocketOwnersTable)),
        (sysctls::NAME, Arc::new(sysctls::SysctlsTable)),
        (conntrack::NAME, Arc::new(conntrack::ConntrackTable::new(options.clone()))),
        (conntrack_stats::NAME, Arc::new(conntrack_stats::ConntrackStatsTable::new(options.clone()))),
    ];
    for (name, table) in tables {
        ctx.register_table(name, table)?;
    }
    Ok(())
}
