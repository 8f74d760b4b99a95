//! A session whose live tables are read once and then answered from
//! memory: several queries (a scrape's metric queries) see one reading of
//! the kernel per table, so their numbers agree with each other and the
//! kernel is walked once per table instead of once per query.
//!
//! The queries are planned first (optimized, so each scan names only the
//! columns it needs and the filters the table applies itself); each live
//! table any of them reads is then read once, with the union of those
//! columns and the disjunction of those filters (a sysctl read for two
//! queries reads their two names, not all of /proc/sys), and replaced in
//! this session by the rows read. The queries are planned again against
//! those rows when they run, so their filters apply as written. Event
//! streams are left live.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::Context;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::LogicalPlan;

use super::engine::{Engine, Event, SqlSource};
use super::statements::Statements;

/// One table read for the session: its name and how much was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub table: String,
    pub columns: usize,
    pub rows: usize,
}

/// What the queries need of one live table.
#[derive(Debug)]
pub(crate) struct Need {
    pub(crate) columns: BTreeSet<String>,
    /// Each scan's filters (those the table applies itself, such as a
    /// sysctl's name or a socket's state, which the kernel filters), as
    /// SQL; None once a scan reads the table unfiltered.
    filters: Option<Vec<String>>,
}

impl Default for Need {
    /// Before its first scan: no columns, no scan unfiltered yet.
    fn default() -> Self {
        Need { columns: BTreeSet::new(), filters: Some(Vec::new()) }
    }
}

impl Need {
    /// The SQL that reads what every scan needs, once.
    pub(crate) fn sql(&self, table: &str) -> String {
        let list =
            self.columns.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect::<Vec<_>>().join(", ");
        match &self.filters {
            // Every entry has had a scan, so a list is never empty.
            Some(any) => format!(
                "SELECT {list} FROM \"{table}\" WHERE {}",
                any.iter().map(|f| format!("({f})")).collect::<Vec<_>>().join(" OR ")
            ),
            None => format!("SELECT {list} FROM \"{table}\""),
        }
    }
}

/// A scan's pushed-down filters as one SQL condition over bare column
/// names; None if there are none or one cannot be written as SQL.
fn filter_sql(filters: &[Expr]) -> Option<String> {
    let all = conjunction(filters.iter().cloned())?;
    let bare = all
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .ok()?
        .data;
    datafusion::sql::unparser::expr_to_sql(&bare).ok().map(|e| e.to_string())
}

/// The tables of `kind` `plan` scans (live ones here; event streams for
/// `serve`'s counters, stream_reads.rs), the columns and rows it needs of each.
fn scanned(plan: &LogicalPlan, kind: sockql_tables::Kind, into: &mut BTreeMap<String, Need>) {
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let name = scan.table_name.table().to_ascii_lowercase();
            let of_kind = matches!(scan.table_name.schema(), None | Some("public"))
                && sockql_tables::TABLES.iter().any(|t| t.name() == name && t.kind() == kind);
            if of_kind {
                let schema = scan.source.schema();
                let need = into.entry(name).or_default();
                match &scan.projection {
                    Some(indices) => need.columns.extend(indices.iter().map(|&i| schema.field(i).name().clone())),
                    None => need.columns.extend(schema.fields().iter().map(|f| f.name().clone())),
                }
                // A filter the table applies itself need not be projected,
                // but the query is planned again against the rows kept,
                // where it applies as written: its columns are kept too.
                for filter in &scan.filters {
                    need.columns.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
                }
                need.filters = match (need.filters.take(), filter_sql(&scan.filters)) {
                    (Some(mut any), Some(f)) => {
                        any.push(f);
                        Some(any)
                    }
                    _ => None,
                };
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

impl Engine {
    /// The tables of `kind` the statements of `sources` read, each with the
    /// columns they need (planned on the query stack, optimized).
    pub(crate) async fn tables_read(
        &self,
        sources: &[SqlSource],
        kind: sockql_tables::Kind,
    ) -> crate::Result<BTreeMap<String, Need>> {
        let (engine, texts): (Engine, Vec<String>) = (self.clone(), sources.iter().map(|s| s.text.clone()).collect());
        let handle = tokio::runtime::Handle::current();
        super::engine::on_query_stack(move || {
            handle.block_on(async move {
                let mut tables = BTreeMap::new();
                let state = engine.context().state();
                // A text that does not plan is skipped here: it fails again
                // when it runs, and says why there.
                for text in &texts {
                    let Ok(mut statements) = Statements::new(text) else { continue };
                    while let Some(Ok(statement)) = statements.next_statement() {
                        let Ok(plan) = state.statement_to_plan(statement).await else { break };
                        if let Ok(plan) = state.optimize(&plan) {
                            scanned(&plan, kind, &mut tables);
                        }
                    }
                }
                Ok::<_, crate::Error>(tables)
            })
        })
        .await
    }

    /// Read each live table the `sources` need once, and answer it from
    /// those rows in this session from now on. The rows are held in the
    /// session's memory pool (--memory-limit bounds them). A table that
    /// cannot be read stays live (its error is in the list): the queries
    /// that need it fail on their own, the others are not held back.
    pub async fn pin_tables(&self, sources: &[SqlSource]) -> crate::Result<Vec<crate::Result<Pinned>>> {
        let mut out = Vec::new();
        for (table, need) in self.tables_read(sources, sockql_tables::Kind::Live).await? {
            out.push(self.pin(table, need).await);
        }
        Ok(out)
    }

    async fn pin(&self, table: String, need: Need) -> crate::Result<Pinned> {
        let mut stream = self.stream(&SqlSource::inline(need.sql(&table)))?;
        let reservation =
            MemoryConsumer::new(format!("pinned {table}")).register(&self.context().runtime_env().memory_pool);
        let (mut schema, mut batches) = (None, Vec::new());
        while let Some(event) = stream.next().await.with_context(|| format!("reading {table}"))? {
            match event {
                Event::Start(s) => schema = Some(s),
                Event::Batch(b) => {
                    reservation.try_grow(b.get_array_memory_size())?;
                    batches.push(b);
                }
                Event::End => {}
            }
        }
        let schema = schema.with_context(|| format!("reading {table} gave no result"))?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let memory = MemTable::try_new(schema, vec![batches])?;
        self.context().deregister_table(table.as_str())?;
        self.context().register_table(table.as_str(), Arc::new(memory))?;
        self.keep_reservation(format!("pinned {table}"), reservation);
        Ok(Pinned { table, columns: need.columns.len(), rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::QueryRunner;
    use sockql_tables::SourceOptions;

    fn first_value(results: &[crate::engine::StatementResult]) -> String {
        let batch = &results.last().unwrap().batches[0];
        datafusion::arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_table_is_read_once_with_what_every_query_needs() {
        let engine = Engine::new(&SourceOptions::default()).unwrap();
        let queries = [
            SqlSource::inline("SELECT value FROM sysctls WHERE name = 'net.ipv4.ip_local_port_range'"),
            SqlSource::inline("SELECT value FROM sysctls WHERE name = 'net.core.somaxconn'"),
            SqlSource::inline("SELECT count(*) FROM sysctls WHERE name = 'net.core.somaxconn'"),
        ];
        let live: Vec<String> = {
            let mut v = Vec::new();
            for q in &queries {
                v.push(first_value(&engine.run(q).await.unwrap()));
            }
            v
        };
        let pinned = engine.pin_tables(&queries).await.unwrap();
        assert_eq!(pinned.len(), 1, "{pinned:?}");
        let p = pinned[0].as_ref().unwrap();
        // Two sysctls, not all of /proc/sys; name and value (and nothing else).
        assert_eq!((p.table.as_str(), p.rows, p.columns), ("sysctls", 2, 2), "{p:?}");
        for (q, want) in queries.iter().zip(&live) {
            assert_eq!(&first_value(&engine.run(q).await.unwrap()), want, "{}", q.text);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_column_only_filtered_on_is_kept_for_the_query() {
        let engine = Engine::new(&SourceOptions::default()).unwrap();
        // The sockets table filters protocol and state in the kernel, so
        // the scan does not project them.
        let query = SqlSource::inline(
            "SELECT count(*) AS n FROM sockets WHERE protocol = 'tcp' AND state = 'CLOSE-WAIT' AND pid = -1",
        );
        let pinned = engine.pin_tables(std::slice::from_ref(&query)).await.unwrap();
        let p = pinned[0].as_ref().unwrap();
        assert_eq!(p.table, "sockets");
        assert_eq!(first_value(&engine.run(&query).await.unwrap()), "0");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unfiltered_scan_reads_the_whole_table() {
        let engine = Engine::new(&SourceOptions::default()).unwrap();
        let queries = [
            SqlSource::inline("SELECT count(*) FROM sysctls"),
            SqlSource::inline("SELECT value FROM sysctls WHERE name = 'net.core.somaxconn'"),
            SqlSource::inline("SELECT no_such_column FROM sysctls"),
        ];
        let before = first_value(&engine.run(&queries[0]).await.unwrap());
        let pinned = engine.pin_tables(&queries).await.unwrap();
        let p = pinned[0].as_ref().unwrap();
        assert_eq!(p.rows.to_string(), before, "{p:?}");
        assert_eq!(first_value(&engine.run(&queries[0]).await.unwrap()), before);
        // The query that does not plan fails on its own, as before.
        assert!(engine.run(&queries[2]).await.is_err());
    }
}
