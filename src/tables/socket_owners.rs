//! `socket_owners`: which process holds which socket, one row per open
//! socket descriptor. The many-to-many truth behind `sockets.pid`: a
//! listening socket shared by pre-forked workers has a row per worker.
//!
//! Source: a walk of /proc/<pid>/fd. Pushed down: `pid = N` / `pid IN
//! (…)` walk only those processes (Inexact).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::collect::owners;
use crate::notice;
use crate::table_columns;
use crate::tables::columns::{schema_of, RowBuilder};
use crate::tables::filters::{pid_pushdown, pids_in};
use crate::tables::live::{Emitter, LivePartition, BATCH_ROWS, LiveScanExec};

table_columns!(Col {
    Inode: "inode", U64, false, "Socket inode (join with sockets.inode)";
    Pid: "pid", I32, false, "Process holding a descriptor of the socket";
    Fd: "fd", I32, false, "Descriptor number in that process";
});

pub const NAME: &str = "socket_owners";
pub const ABOUT: &str = "Which processes hold which sockets: one row per socket descriptor (lsof -i)";

#[derive(Default)]
pub struct SocketOwnersTable;

impl fmt::Debug for SocketOwnersTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SocketOwnersTable")
    }
}

#[async_trait]
impl TableProvider for SocketOwnersTable {
    fn schema(&self) -> SchemaRef {
        schema_of(Col::DEFS)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(pid_pushdown(filters, "pid"))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let pids = pids_in(filters, "pid");
        let projection = projection.cloned();
        let schema = RowBuilder::new(Col::DEFS, projection.as_deref(), 0).schema();
        let label = format!("socket_owners: /proc/*/fd pids={}", pids.as_ref().map_or("all".into(), |p| format!("{p:?}")));
        let partition = LivePartition::new(schema.clone(), label, move |sink| {
            let scan = match &pids {
                Some(p) => owners::scan_pids(p),
                None => owners::scan(),
            };
            if scan.denied > 0 {
                notice::note_once(
                    "owners-denied",
                    format!(
                        "not running as root: the open files of {} processes of other users cannot be read, \
                         so their sockets have no owner rows",
                        scan.denied
                    ),
                );
            }
            let mut out = Emitter::new(RowBuilder::new(Col::DEFS, projection.as_deref(), BATCH_ROWS), sink, limit);
            for f in &scan.fds {
                out.rows.u64(Col::Inode as usize, Some(f.inode));
                out.rows.i32(Col::Pid as usize, Some(f.pid));
                out.rows.i32(Col::Fd as usize, Some(f.fd));
                if out.end_row()?.is_break() {
                    break;
                }
            }
            out.finish()
        });
        Ok(LiveScanExec::new(partition))
    }
}
