//! The provider shared by `net_counters` and `sockstat`: per-namespace
//! (group, name, value) readings of a /proc/net text file. Each table file
//! declares its columns in this order: group, name, value, netns, netns_name.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::collect::counters::Counter;
use crate::tables::columns::{schema_of, ColumnDef, RowBuilder};
use crate::tables::live::{Emitter, LivePartition, LiveScanExec, BATCH_ROWS};
use crate::tables::{scope, SourceOptions};

#[derive(Debug)]
pub struct CounterTable {
    pub name: &'static str,
    pub defs: &'static [ColumnDef],
    pub read: fn() -> std::result::Result<Vec<Counter>, String>,
    pub options: SourceOptions,
}


#[async_trait]
impl TableProvider for CounterTable {
    fn schema(&self) -> SchemaRef {
        schema_of(self.defs)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(scope::pushdown(filters))
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projection = projection.cloned();
        let targets = scope::targets(filters, self.options.all_netns());
        let (defs, read) = (self.defs, self.read);
        let schema = RowBuilder::new(defs, projection.as_deref(), 0).schema();
        let label = format!("{}: /proc/net {}", self.name, scope::describe(&targets));
        let partition = LivePartition::new(schema.clone(), label, move |sink| {
            let mut out = Emitter::new(RowBuilder::new(defs, projection.as_deref(), BATCH_ROWS), sink, limit);
            scope::each(&targets, |ns| {
                for c in read().map_err(anyhow::Error::msg)? {
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
        });
        Ok(LiveScanExec::new(partition))
    }
}
