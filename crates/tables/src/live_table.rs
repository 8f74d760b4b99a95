//! The one DataFusion `TableProvider` behind every table. A table file
//! says only what is particular to it by implementing [`Table`];
//! [`LiveTable`] does the rest the same way for all.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::columns::{schema_of, RowBuilder};
use crate::live::{Emitter, LivePartition, LiveScanExec, StreamFilter, BATCH_ROWS};
use crate::table::{Kind, Pushdown, Scan, Table};
use crate::SourceOptions;

/// A [`Table`] as a table DataFusion can query, re-read from the kernel
/// by every scan.
#[derive(Debug)]
pub struct LiveTable<T> {
    table: T,
    options: SourceOptions,
}

impl<T: Table> LiveTable<T> {
    pub fn new(table: T, options: SourceOptions) -> Self {
        LiveTable { table, options }
    }

    /// One scan: its label for EXPLAIN, and a producer that hands the
    /// table's `read` an emitter over the projection.
    fn partition(&self, projection: Option<&[usize]>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let scan = Scan { filters, limit, projection, options: &self.options };
        let plan = self.table.plan(&scan);
        let label = self.table.label(&plan);
        let table = self.table.clone();
        let projection = projection.map(<[usize]>::to_vec);
        let rows = RowBuilder::new(T::COLUMNS, projection.as_deref(), 0);
        let partition = LivePartition::new(rows.schema(), label, move |sink| {
            let mut out = Emitter::new(RowBuilder::new(T::COLUMNS, projection.as_deref(), BATCH_ROWS), sink, limit);
            // A refusal for want of a capability becomes one line naming it.
            table.read(&plan, &mut out).map_err(|e| crate::capabilities::explain(T::NAME, e))?;
            out.finish()
        });
        if T::KIND == Kind::Stream {
            partition.stream()
        } else {
            partition
        }
    }
}

#[async_trait]
impl<T: Table> TableProvider for LiveTable<T> {
    fn schema(&self) -> SchemaRef {
        schema_of(T::COLUMNS)
    }

    /// A base table to clients (`\dt` in psql, Grafana's table list),
    /// though every scan reads the kernel again, as PostgreSQL's
    /// pg_stat_* do.
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<Pushdown>> {
        if T::KIND == Kind::Stream {
            return Ok(vec![Pushdown::Exact; filters.len()]);
        }
        Ok(filters.iter().map(|f| self.table.pushdown(f)).collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if T::KIND != Kind::Stream || filters.is_empty() {
            return Ok(LiveScanExec::new(self.partition(projection.map(Vec::as_slice), filters, limit)));
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
        LiveScanExec::filtered(self.partition(Some(&read), &filters, None), post)
    }
}
