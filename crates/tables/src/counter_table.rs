//! The provider shared by `net_counters` and `sockstat`: per-namespace
//! (group, name, value) readings of a /proc/net text file. Each table file
//! declares its columns in this order: group, name, value, netns, netns_name.

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::{scope, SourceOptions};
use sockql_collect::counters::Counter;

#[derive(Debug)]
pub struct CounterTable {
    pub name: &'static str,
    pub defs: &'static [ColumnDef],
    pub read: fn() -> std::result::Result<Vec<Counter>, sockql_collect::Error>,
    pub options: SourceOptions,
}

impl LiveSource for CounterTable {
    fn columns(&self) -> &'static [ColumnDef] {
        self.defs
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let cols = projection.cloned();
        let targets = scope::targets(filters, self.options.all_netns());
        let (defs, read) = (self.defs, self.read);
        let label = format!("{}: /proc/net {}", self.name, scope::describe(&targets));
        LivePartition::projected(defs, projection.map(Vec::as_slice), label, move |sink| {
            let mut out = Emitter::new(RowBuilder::new(defs, cols.as_deref(), BATCH_ROWS), sink, limit);
            scope::each(&targets, |ns| {
                for c in read()? {
                    out.rows.str(0, Some(&c.mib));
                    out.rows.str(1, Some(&c.name));
                    out.rows.i64(2, Some(c.value));
                    out.rows.u64(3, Some(ns.inode));
                    out.rows.str(4, ns.name.as_deref());
                    if out.end_row()?.is_break() {
                        return Ok(std::ops::ControlFlow::Break(()));
                    }
                }
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            out.finish()
        })
    }
}
