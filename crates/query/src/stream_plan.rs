//! Streams hand their rows over as they come, whatever a query computes
//! on top of them.
//!
//! With more than one core DataFusion puts a round-robin repartition
//! (`RepartitionExec: RoundRobinBatch(n)`) above a scan of one partition
//! to compute projections, CASE, functions in parallel. In DataFusion 55
//! a repartition over a *bounded* input also coalesces on the producer
//! side (repartition/mod.rs: `coalesce_batches = !preserve_order &&
//! !input.boundedness().is_unbounded()`): it keeps rows back until it has
//! `batch_size` (8,192) of them or its input ends. A stream's scan sends a
//! part batch within 200 ms (tables/live.rs, `STREAM_FLUSH`), but above
//! the repartition `SELECT pid, name || 'x' FROM process_events` showed
//! nothing until the stream's end, while `SELECT pid, name` (no
//! repartition: nothing to compute) showed each row at once.
//!
//! A stream cannot say it is unbounded instead: it is bounded (by
//! --capture-for, a LIMIT, Ctrl-C), and an unbounded input makes
//! DataFusion refuse sorts and aggregates over it. So this rule, run after
//! DataFusion's own, takes out every round-robin repartition above a
//! stream's scan. Nothing needs one (it only spreads work over cores, and
//! a stream's rows are few and slow); hash repartitions stay (an
//! aggregate or join needs them and answers at the end anyway), and live
//! tables keep theirs.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use sockql_tables::live::LiveScanExec;

/// The physical optimizer rule (added after DataFusion's rules).
#[derive(Debug)]
pub struct StreamsUnsplit;

impl PhysicalOptimizerRule for StreamsUnsplit {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        let rewritten = plan.transform_up(|node| {
            let Some(repartition) = node.downcast_ref::<RepartitionExec>() else {
                return Ok(Transformed::no(node));
            };
            if !matches!(repartition.partitioning(), Partitioning::RoundRobinBatch(_))
                || !reads_stream(repartition.input())?
            {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(repartition.input().clone()))
        })?;
        Ok(rewritten.data)
    }

    fn name(&self) -> &str {
        "streams_unsplit"
    }

    fn schema_check(&self) -> bool {
        true // a repartition's schema is its input's
    }
}

/// Whether `plan` reads a stream anywhere below it.
fn reads_stream(plan: &Arc<dyn ExecutionPlan>) -> Result<bool> {
    plan.exists(|node| Ok(node.downcast_ref::<LiveScanExec>().is_some_and(LiveScanExec::is_stream)))
}
