//! The one DataFusion `TableProvider` behind every live table. A table file
//! says only what is particular to it (its columns, the filters its reader
//! can use, and how one scan reads the kernel) by implementing
//! [`LiveSource`]; [`LiveTable`] does the rest the same way for all.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::tables::columns::{schema_of, ColumnDef};
use crate::tables::live::{LivePartition, LiveScanExec};
use crate::tables::scope;

/// What makes one live table itself.
pub trait LiveSource: fmt::Debug + Send + Sync + 'static {
    /// The table's columns, with their descriptions.
    fn columns(&self) -> &'static [ColumnDef];

    /// For each filter, whether the reader uses it to read less. By
    /// default a table only uses the filters that choose network namespaces.
    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        filters.iter().map(|f| scope::is_netns_filter(f)).collect()
    }

    /// Whether the reader applies a filter it uses to every row exactly, so
    /// DataFusion need not check it again (Exact); otherwise a used filter
    /// is Inexact and may be applied loosely. By default: the namespace
    /// filters, which choose exactly the namespaces read, every row of
    /// which carries its namespace.
    fn exact(&self, filter: &Expr) -> bool {
        scope::is_netns_filter(filter)
    }

    /// One scan: what EXPLAIN shows and the reader that produces its rows
    /// (see [`LivePartition::projected`]).
    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition;
}

/// A [`LiveSource`] as a table DataFusion can query: a view, re-read from
/// the kernel by every scan.
#[derive(Debug)]
pub struct LiveTable<S>(pub S);

#[async_trait]
impl<S: LiveSource> TableProvider for LiveTable<S> {
    fn schema(&self) -> SchemaRef {
        schema_of(self.0.columns())
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(self
            .0
            .pushdown(filters)
            .into_iter()
            .zip(filters)
            .map(|(used, f)| match (used, used && self.0.exact(f)) {
                (true, true) => TableProviderFilterPushDown::Exact,
                (true, false) => TableProviderFilterPushDown::Inexact,
                _ => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(LiveScanExec::new(self.0.partition(projection, filters, limit)))
    }
}
