//! The one trait a table implements, [`Table`]: its name, description and
//! kind, its columns, which filters its reader takes, and how one scan
//! reads the kernel into rows. Everything else (the DataFusion provider,
//! the scan node, batches, the LIMIT, a stream's filter, the catalog)
//! comes from it (`live_table.rs`, `live.rs`, `mod.rs`).

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::logical_expr::Expr;

use crate::columns::{Column, ColumnDef};
use crate::live::Emitter;
use crate::live_table::LiveTable;
use crate::{scope, SourceOptions};

pub use datafusion::logical_expr::TableProviderFilterPushDown as Pushdown;

/// What a table's rows are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The kernel's state as a scan reads it (sockets, conntrack, ...).
    Live,
    /// Events or packets read for a while (a live capture, a listener)
    /// and handed over as they come, until its bound (`--capture-for`,
    /// `--follow`), a LIMIT or Ctrl-C. DataFusion's FilterExec keeps rows
    /// back until it has a full batch, and a LIMIT above a filter it
    /// checks is not pushed to the scan, so a filtered stream would show
    /// nothing, and not stop at its LIMIT, until its time is up. A stream
    /// therefore takes every filter as Exact and its scan applies the
    /// whole predicate itself (DataFusion's own evaluator, on each batch
    /// as it comes), then the LIMIT; [`Table::pushdown`] is not asked of
    /// it: its `plan` picks from all the filters what it can use. A
    /// snapshot of a stream cannot be taken once and reused.
    Stream,
}

/// What one scan asks of a table.
pub struct Scan<'a> {
    /// The filters DataFusion pushed down (each one the table took, and
    /// for a stream all of them).
    pub filters: &'a [Expr],
    /// The LIMIT, when DataFusion pushed one to the scan.
    pub limit: Option<usize>,
    /// The table columns the scan produces, in order; `None` is all.
    pub projection: Option<&'a [usize]>,
    /// How tables read the kernel, from the command line.
    pub options: &'a SourceOptions,
}

impl Scan<'_> {
    /// True if the scan produces `column`: skip the work of those it does not.
    pub fn wants(&self, column: impl Column) -> bool {
        self.projection.is_none_or(|p| p.contains(&column.index()))
    }

    /// The network namespaces this scan reads (`--all-netns`, or those a
    /// netns filter names; see `scope.rs`).
    pub fn targets(&self) -> Vec<sockql_collect::netns::Netns> {
        scope::targets(self.filters, self.options)
    }
}

/// A table: declare it once here, and list it in `TABLES` (`mod.rs`).
pub trait Table: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Its name in SQL.
    const NAME: &'static str;
    /// One line for the catalog, `sockql tables` and the reference.
    const ABOUT: &'static str;
    /// A snapshot of state, or a stream.
    const KIND: Kind = Kind::Live;
    /// Its columns, with their descriptions (`table_columns!`).
    const COLUMNS: &'static [ColumnDef];

    /// What a scan decided from its filters and options (the namespaces
    /// to read, a kernel filter), for [`Table::label`] and [`Table::read`].
    type Plan: Send + Sync + 'static;

    /// Whether the reader uses `filter` to read less: Exact when it
    /// applies it to every row it produces (DataFusion need not check it
    /// again), Inexact when DataFusion must still check, Unsupported when
    /// it is not used. By default only the filters that choose network
    /// namespaces, which choose exactly the namespaces read, every row of
    /// which carries its namespace.
    fn pushdown(&self, filter: &Expr) -> Pushdown {
        if scope::is_netns_filter(filter) {
            Pushdown::Exact
        } else {
            Pushdown::Unsupported
        }
    }

    /// Decide what one scan reads.
    fn plan(&self, scan: &Scan<'_>) -> Self::Plan;

    /// What the scan will ask of the kernel, as EXPLAIN shows it.
    fn label(&self, plan: &Self::Plan) -> String;

    /// Read: append rows to `out` (built over the scan's projection, at
    /// the LIMIT or when the query stops it says `Break` from `end_row`)
    /// until the source is done.
    fn read(&self, plan: &Self::Plan, out: &mut Emitter<'_>) -> anyhow::Result<()>;
}

/// A [`Table`] as the registry holds it.
pub trait AnyTable: Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn kind(&self) -> Kind;
    fn columns(&self) -> &'static [ColumnDef];
    /// The DataFusion table, reading with `options`.
    fn provider(&self, options: &SourceOptions) -> Arc<dyn TableProvider>;
}

impl<T: Table> AnyTable for T {
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn about(&self) -> &'static str {
        T::ABOUT
    }
    fn kind(&self) -> Kind {
        T::KIND
    }
    fn columns(&self) -> &'static [ColumnDef] {
        T::COLUMNS
    }
    fn provider(&self, options: &SourceOptions) -> Arc<dyn TableProvider> {
        Arc::new(LiveTable::new(self.clone(), options.clone()))
    }
}
