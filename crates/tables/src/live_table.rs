//! The one DataFusion `TableProvider` behind every live table. A table file
//! says only what is particular to it (its columns, the filters its reader
//! can use, and how one scan reads the kernel) by implementing
//! [`LiveSource`]; [`LiveTable`] does the rest the same way for all.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::columns::{schema_of, ColumnDef};
use crate::live::{LivePartition, LiveScanExec, StreamFilter};
use crate::scope;

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

    /// True for a stream: a table that reads for a while (a live capture,
    /// an event listener) and hands rows over as they come. DataFusion's
    /// FilterExec keeps rows back until it has a full batch, and a LIMIT
    /// above a filter it checks is not pushed to the scan, so a filtered
    /// stream would show nothing, and not stop at its LIMIT, until its time
    /// is up. A stream therefore takes every filter as Exact and the scan
    /// applies the whole predicate itself (DataFusion's own evaluator, on
    /// each batch as it comes), then the LIMIT. (`pushdown` and `exact`
    /// are not asked of a stream; its reader picks from all the filters
    /// what it can use.)
    fn is_stream(&self) -> bool {
        false
    }

    /// One scan: what EXPLAIN shows and the reader that produces its rows
    /// (see [`LivePartition::projected`]).
    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition;
}

/// A [`LiveSource`] as a table DataFusion can query, re-read from the
/// kernel by every scan.
#[derive(Debug)]
pub struct LiveTable<S>(pub S);

#[async_trait]
impl<S: LiveSource> TableProvider for LiveTable<S> {
    fn schema(&self) -> SchemaRef {
        schema_of(self.0.columns())
    }

    /// A base table to clients (`\dt` in psql, Grafana's table list),
    /// though every scan reads the kernel again, as PostgreSQL's
    /// pg_stat_* do.
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        if self.0.is_stream() {
            return Ok(vec![TableProviderFilterPushDown::Exact; filters.len()]);
        }
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
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.0.is_stream() || filters.is_empty() {
            return Ok(LiveScanExec::new(self.0.partition(projection, filters, limit)));
        }
        // The columns the query wants and those its filters read.
        let schema = self.schema();
        let filters: Vec<Expr> = filters.iter().cloned().map(unnormalize_col).collect();
        let mut read: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..schema.fields().len()).collect());
        let wanted = read.len();
        for f in &filters {
            for c in f.column_refs() {
                let i = schema.index_of(&c.name)?;
                if !read.contains(&i) {
                    read.push(i);
                }
            }
        }
        let read_schema = Arc::new(schema.project(&read)?);
        let predicate = conjunction(filters.clone()).expect("filters is not empty");
        let shown = predicate.to_string();
        let physical = state.create_physical_expr(predicate, &DFSchema::try_from(read_schema.as_ref().clone())?)?;
        let post = StreamFilter { predicate: physical, output: (0..wanted).collect(), limit, shown };
        LiveScanExec::filtered(self.0.partition(Some(&read), &filters, None), post)
    }
}
