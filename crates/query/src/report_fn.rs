//! `report('name', 'param=value', ...)`: a saved report as a table, so
//! any front end (a PostgreSQL client above all, which cannot run
//! `sockql run`) can select from it, filter it and join it.
//!
//! `report()` with no argument lists the saved reports.
//!
//! The report is found as `sockql run` finds it, bound as `--param` binds
//! it, planned in the calling session and checked against the same
//! policy; it becomes a view of that plan. A report is one query: one
//! with several statements, or one that calls `report` itself, is refused.

use std::cell::Cell;
use std::sync::Arc;

use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_datafusion_err, plan_err, Result, ScalarValue};
use datafusion::datasource::ViewTable;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};

use super::policy::Policy;
use super::saved;
use super::statements::Statements;

thread_local! {
    /// Reports being planned on this thread: a report's SQL may not call
    /// `report` again (no recursion through saved files).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

struct Nested;

impl Nested {
    fn enter() -> Result<Self> {
        DEPTH.with(|d| {
            if d.get() > 0 {
                return plan_err!("a saved report cannot call report()");
            }
            d.set(d.get() + 1);
            Ok(Nested)
        })
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

#[derive(Debug)]
pub struct ReportFunction {
    pub policy: Policy,
}

fn text_arg(e: &Expr) -> Result<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Ok(s.clone()),
        other => plan_err!("report() takes text literals: report('name', 'param=value', ...), not {other}"),
    }
}

impl TableFunctionImpl for ReportFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let _nested = Nested::enter()?;
        let exprs = args.exprs();
        let Some((name, rest)) = exprs.split_first() else {
            // report(): the list, as sockql run --list.
            let batch = saved::list_batch();
            return Ok(Arc::new(datafusion::datasource::MemTable::try_new(batch.schema(), vec![vec![batch]])?));
        };
        let name = text_arg(name)?;
        let given = rest
            .iter()
            .map(|e| saved::parse_assignment(&text_arg(e)?).map_err(|e| plan_datafusion_err!("{e:#}")))
            .collect::<Result<Vec<_>>>()?;
        let report = saved::all().into_iter().filter_map(|q| q.ok()).find(|q| q.name == name).ok_or_else(|| {
            plan_datafusion_err!("no saved report named '{name}' (SELECT * FROM report() lists them)")
        })?;
        let source = report.source(&given).map_err(|e| plan_datafusion_err!("{e:#}"))?;
        let mut statements =
            Statements::new(&source.text).map_err(|e| plan_datafusion_err!("{}: {e}", report.origin))?;
        let statement = statements
            .next_statement()
            .ok_or_else(|| plan_datafusion_err!("{}: no SQL statement", report.origin))?
            .map_err(|e| plan_datafusion_err!("{}: {e}", report.origin))?;
        if statements.next_statement().is_some() {
            return plan_err!("report '{name}' has several statements; run it with sockql run {name}");
        }
        let state = args
            .session()
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| plan_datafusion_err!("report() needs a DataFusion session"))?;
        // Planning resolves tables through in-memory catalogs only: it does
        // not wait on I/O, so it completes on this thread.
        let plan = futures::executor::block_on(state.statement_to_plan(statement))?;
        super::policy::check(&plan, self.policy).map_err(|e| plan_datafusion_err!("report '{name}': {e}"))?;
        // DESCRIBE gives rows, but no plan a view can run.
        if !super::engine::has_rows(&plan) || matches!(plan, LogicalPlan::DescribeTable(_)) {
            return plan_err!("report '{name}' is not a query; run it with sockql run {name}");
        }
        let plan = keep_order(plan.with_param_values(source.params)?)?;
        Ok(Arc::new(ViewTable::new(plan, Some(source.text))))
    }
}

/// The plan under a LIMIT without bounds, so that the report's ORDER BY
/// stays: DataFusion's planner drops the sort of a relation in FROM
/// unless a limit is above it (`enable_subquery_sort_elimination`), and
/// `SELECT * FROM report('listeners')` then interleaved namespaces, unlike
/// `sockql run listeners`. The optimizer takes the empty limit away
/// afterwards (eliminate_limit); the sort stays.
fn keep_order(plan: LogicalPlan) -> Result<LogicalPlan> {
    if !sorted_on_top(&plan) {
        return Ok(plan);
    }
    LogicalPlanBuilder::from(plan).limit(0, None)?.build()
}

/// The plan's rows come out of a sort (under projections only).
fn sorted_on_top(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(_) => true,
        LogicalPlan::Projection(p) => sorted_on_top(&p.input),
        LogicalPlan::SubqueryAlias(a) => sorted_on_top(&a.input),
        _ => false,
    }
}
