//! A group of the fleet's hosts as one datafusion-federation
//! `SQLExecutor`. The federation hands it the SQL of the group's part of
//! a plan once; at execution it is sent to every host of the group, each
//! under its own name (`host_sql.rs`), and their batches come back as one
//! stream, in the order they arrive.
//!
//! Why groups and not a branch per host: a plan with a branch per host
//! grows with the fleet (about 0.33 MiB and 32 ms of planning a host in
//! the debug build, even for hosts never asked; BENCHMARKS.md "Fleet").
//! Here the plan is the same size for 2 hosts or 10,000: a fleet table is
//! the union of two groups (views.rs). Two, not one: the federation
//! pushes the largest sub-plan whose tables are all one executor's, so
//! with one group the whole query (a final aggregate, a join across
//! hosts) would run on each host. Two make everything above the union
//! central, and the aggregate split (split_aggregate.rs) puts a partial
//! aggregate in each group's SQL.
//!
//! Hosts are asked in file order, at most `--hosts-parallel` at once
//! across the whole query: a host's task exists only while it has a place,
//! so what the querying side holds grows with the hosts in flight and
//! the result, not with the size of the fleet.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{PhysicalExpr, SendableRecordBatchStream};
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::sql::SQLExecutor;
use tokio::sync::mpsc;

use super::flight_executor::{run_host, FleetShared, Sender};
use super::host_sql::Template;

/// Hosts listed by name in EXPLAIN (the rest are counted).
const NAMED: usize = 8;

/// Batches of the group's stream still counted as held after the plan
/// took them (its own buffers hold one or two).
const HANDED_HELD: usize = 2;

/// Some of the fleet's hosts (indices into its hosts file), asked as one.
pub struct GroupExecutor {
    pub shared: Arc<FleetShared>,
    /// Which of the (two) groups: its compute context.
    pub group: usize,
    pub hosts: Vec<usize>,
    /// What EXPLAIN shows: `hosts=N: a, b, ...`.
    label: String,
}

impl GroupExecutor {
    pub fn new(shared: Arc<FleetShared>, group: usize, hosts: Vec<usize>) -> Self {
        let all = shared.statuses.hosts();
        let mut names: Vec<&str> =
            hosts.iter().take(NAMED).filter_map(|&i| all.get(i)).map(|h| h.name.as_str()).collect();
        let more = hosts.len().saturating_sub(NAMED).to_string() + " more";
        if hosts.len() > NAMED {
            names.push(&more);
        }
        let label = format!("hosts={}: {}", hosts.len(), names.join(", "));
        GroupExecutor { shared, group, hosts, label }
    }
}

#[async_trait::async_trait]
impl SQLExecutor for GroupExecutor {
    fn name(&self) -> &str {
        &self.label
    }

    /// One context per group: the federation pushes a sub-plan only to
    /// the group all its scans belong to.
    fn compute_context(&self) -> Option<String> {
        Some(format!("fleet group #{}", self.group))
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        // DataFusion's own (the hosts parse with its parser), without a
        // regex compiled per identifier.
        Arc::new(super::dialect::FleetDialect)
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| DataFusionError::Execution(format!("fleet query outside a runtime: {e}")))?;
        let template = Template::parse(query).map_err(DataFusionError::Plan)?;
        let all = self.shared.statuses.hosts();
        let asked: Vec<usize> =
            self.hosts.iter().copied().filter(|&i| all.get(i).is_some_and(|h| template.asks(&h.name))).collect();
        // Room for two batches of each host that can be in flight, as a
        // channel of its own per host had: a host that has answered never
        // waits on the others' batches while its --hosts-timeout runs
        // (what waits is reserved in the memory pool, so --memory-limit
        // still bounds it).
        let in_flight = asked.len().min(self.shared.parallel).max(1);
        let (tx, rx) = mpsc::channel(2 * in_flight);
        let reservation =
            Arc::new(MemoryConsumer::new(format!("fleet group #{}", self.group)).register(&self.shared.pool));
        runtime.spawn(ask(self.shared.clone(), asked, template, schema.clone(), tx, reservation.clone()));
        // A batch stays reserved until the plan has taken two more (the
        // plan's own buffers hold one or two after it took them); all of
        // it goes with the stream.
        let batches = futures::stream::unfold(
            (rx, reservation, VecDeque::<usize>::new()),
            |(mut rx, reservation, mut handed)| async move {
                match rx.recv().await? {
                    Ok((batch, size)) => {
                        handed.push_back(size);
                        while handed.len() > HANDED_HELD {
                            let gone = handed.pop_front().unwrap_or(0);
                            reservation.shrink(gone.min(reservation.size()));
                        }
                        Some((Ok(batch), (rx, reservation, handed)))
                    }
                    Err(e) => Some((Err(e), (rx, reservation, handed))),
                }
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        // The fleet's catalog is sockql's own (the hosts run the same binary).
        Err(DataFusionError::NotImplemented("fleet hosts are not asked for their tables".into()))
    }

    async fn get_table_schema(&self, _table_name: &str) -> Result<SchemaRef> {
        Err(DataFusionError::NotImplemented("fleet hosts are not asked for their tables".into()))
    }
}

/// Ask `hosts` in order, each when a place is free; the stream ends when
/// the last has answered (its sender goes with it). A query that needs no
/// more (LIMIT reached, Ctrl-C, --timeout) closes the stream: hosts not
/// yet asked are not.
async fn ask(
    shared: Arc<FleetShared>,
    hosts: Vec<usize>,
    template: Template,
    expected: SchemaRef,
    tx: Sender,
    reservation: Arc<MemoryReservation>,
) {
    let mut running = tokio::task::JoinSet::new();
    for index in hosts {
        let place = tokio::select! {
            place = shared.places.clone().acquire_owned() => place,
            _ = tx.closed() => break,
        };
        let (Ok(place), Some(host)) = (place, shared.statuses.hosts().get(index)) else { break };
        let sql = template.for_host(&host.name);
        running.spawn(run_host(shared.clone(), index, sql, expected.clone(), tx.clone(), reservation.clone(), place));
        // Finished hosts' tasks go now, not at the end.
        while running.try_join_next().is_some() {}
    }
    drop(tx);
    while running.join_next().await.is_some() {}
}
