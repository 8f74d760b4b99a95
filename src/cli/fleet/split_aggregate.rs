//! An optimizer rule: an aggregate over a UNION ALL becomes a partial
//! aggregate in each branch and a final one over their union. A fleet
//! table is the union of every host's table, and the federation pushes
//! each branch to its host as SQL, so `count(*) ... GROUP BY state` runs
//! on each host and only its groups travel. The federation does not do
//! this itself: it pushes the largest sub-plan of one host, and an
//! aggregate over all hosts is no host's.
//!
//! Only aggregates whose partials combine exactly are split: count (the
//! sum of counts), sum, min and max, without DISTINCT, FILTER or ORDER
//! BY, and plain GROUP BY (no grouping sets). Anything else is computed
//! centrally from the hosts' rows, as before.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{cast, lit, Aggregate, Expr, LogicalPlan, Projection, Union};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub struct SplitAggregate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Combine {
    /// The sum of the partial counts (0 when no host answered).
    Count,
    Sum,
    Min,
    Max,
}

impl OptimizerRule for SplitAggregate {
    fn name(&self) -> &str {
        "fleet_split_aggregate"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else { return Ok(Transformed::no(plan)) };
        match split(agg)? {
            Some(split) => Ok(Transformed::yes(split)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// The union under `plan`, seen through an alias (a view's name).
fn union_inputs(plan: &LogicalPlan) -> Option<&Vec<Arc<LogicalPlan>>> {
    match plan {
        LogicalPlan::Union(u) => Some(&u.inputs),
        LogicalPlan::SubqueryAlias(a) => union_inputs(&a.input),
        _ => None,
    }
}

fn split(agg: &Aggregate) -> Result<Option<LogicalPlan>> {
    let Some(inputs) = union_inputs(&agg.input) else { return Ok(None) };
    // Already split (its branches are partial aggregates), or federated.
    if inputs.iter().any(|i| matches!(i.as_ref(), LogicalPlan::Aggregate(_) | LogicalPlan::Extension(_))) {
        return Ok(None);
    }
    if agg.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
        return Ok(None);
    }
    let mut partials = Vec::with_capacity(agg.aggr_expr.len());
    let mut combines = Vec::with_capacity(agg.aggr_expr.len());
    for (i, e) in agg.aggr_expr.iter().enumerate() {
        let inner = match e {
            Expr::Alias(a) => a.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else { return Ok(None) };
        if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
            return Ok(None);
        }
        let combine = match func.name() {
            "count" => Combine::Count,
            "sum" => Combine::Sum,
            "min" => Combine::Min,
            "max" => Combine::Max,
            _ => return Ok(None),
        };
        partials.push(unqualified(inner.clone())?.alias(format!("__fleet_partial_{i}")));
        combines.push(combine);
    }
    let groups = agg.group_expr.iter().map(|e| unqualified(e.clone())).collect::<Result<Vec<_>>>()?;
    // Each branch's columns are unqualified (fleet views alias them), so
    // the unqualified expressions name them in every branch.
    let branches = inputs
        .iter()
        .map(|b| {
            Aggregate::try_new(b.clone(), groups.clone(), partials.clone()).map(|a| Arc::new(LogicalPlan::Aggregate(a)))
        })
        .collect::<Result<Vec<_>>>()?;
    let union = LogicalPlan::Union(Union::try_new(branches)?);
    let partial_schema = union.schema().clone();
    let ng = groups.len();
    let column = |i: usize| Expr::Column(Column::from(partial_schema.qualified_field(i)));
    let final_groups = (0..ng).map(column).collect();
    let final_aggs = combines
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let partial = column(ng + i);
            match c {
                Combine::Count | Combine::Sum => sum(partial),
                Combine::Min => min(partial),
                Combine::Max => max(partial),
            }
            .alias(format!("__fleet_final_{i}"))
        })
        .collect();
    let last = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(union), final_groups, final_aggs)?);
    // The original's names, qualifiers and types, for the plan above.
    let wanted = agg.schema.clone();
    let got = last.schema().clone();
    let mut exprs = Vec::with_capacity(wanted.fields().len());
    for i in 0..wanted.fields().len() {
        let (qualifier, field) = wanted.qualified_field(i);
        let mut e = Expr::Column(Column::from(got.qualified_field(i)));
        if i >= ng && combines.get(i - ng) == Some(&Combine::Count) {
            e = datafusion::functions::expr_fn::coalesce(vec![e, lit(0i64)]);
        }
        if got.field(i).data_type() != field.data_type() {
            e = cast(e, field.data_type().clone());
        }
        exprs.push(e.alias_qualified(qualifier.cloned(), field.name()));
    }
    Ok(Some(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(last))?)))
}

fn unqualified(e: Expr) -> Result<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))),
        e => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}
