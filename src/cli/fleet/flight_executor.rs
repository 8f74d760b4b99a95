//! One host's part of a fleet query over Arrow Flight SQL
//! (`FlightSqlServiceClient`): connect, log in, run the SQL its group
//! wrote for it (`fan_out.rs`, `host_sql.rs`), and send its batches on.
//!
//! Each host's part runs as a task of its own, within the fleet's bounds:
//! a place among `--hosts-parallel` (taken before the task starts), then
//! `--hosts-timeout` from connect to its last batch. A host that does not
//! answer in time, refuses, or fails ends its part of the answer early
//! without failing the query; its state goes to [`Statuses`] (the
//! `fleet_hosts` table and the one stderr line). Batches are sent on as
//! they come, not collected first.
//!
//! What a host's part holds counts against --memory-limit: each batch is
//! reserved in the session's memory pool (the one DataFusion's own
//! operators reserve in) as it arrives, and freed when the plan has taken
//! more (`fan_out.rs`); a fleet answer that outgrows the limit fails with
//! the engine's resources-exhausted error, as a sort would, instead of
//! growing the process. A gRPC message (one batch) larger than the whole
//! limit could never be reserved: it is refused by its length prefix,
//! unread, with the same error, so twenty hosts' huge batches are not
//! decoded side by side before the first is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryLimit, MemoryPool, MemoryReservation};
use futures::StreamExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::connect::Connector;
use super::host_status::{State, Statuses};

/// The largest gRPC message a host may send (one Arrow batch): a
/// sockql batch of 8,192 rows of the widest table is a few MiB.
pub const MAX_MESSAGE: usize = 16 << 20;

/// What every host's executor shares.
pub struct FleetShared {
    pub statuses: Arc<Statuses>,
    pub connector: Connector,
    pub password: Option<String>,
    pub timeout: Duration,
    pub places: Arc<Semaphore>,
    /// How many places there are (`--hosts-parallel`).
    pub parallel: usize,
    /// The session's memory pool (--memory-limit): batches from hosts are
    /// reserved in it while the fleet executor holds them.
    pub pool: Arc<dyn MemoryPool>,
}

/// A host's batches to the plan, each with the bytes reserved for it.
pub type Sender = mpsc::Sender<Result<(RecordBatch, usize)>>;

/// Why a host's part ended early.
struct HostError(State, String);

impl HostError {
    fn failed(e: impl std::fmt::Display) -> Self {
        HostError(State::Failed, e.to_string())
    }
    /// A Flight SQL call's error: the client keeps the gRPC status only as
    /// text, so an authentication refusal is found by its code's name.
    fn call(e: impl std::fmt::Display) -> Self {
        let text = e.to_string();
        // tonic writes a code as its description.
        let refused =
            ["Unauthenticated", "PermissionDenied", "valid authentication credentials", "does not have permission"];
        if refused.iter().any(|r| text.contains(r)) {
            HostError(State::Auth, text)
        } else {
            HostError(State::Failed, text)
        }
    }
}

/// Host `index`'s part, in the place it was given: answer `query`
/// within the deadline, and say how it ended.
pub async fn run_host(
    shared: Arc<FleetShared>,
    index: usize,
    query: String,
    expected: SchemaRef,
    tx: Sender,
    reservation: Arc<MemoryReservation>,
    _place: OwnedSemaphorePermit,
) {
    shared.statuses.started(index);
    let start = Instant::now();
    let mut rows = 0u64;
    let outcome =
        tokio::time::timeout(shared.timeout, answer(&shared, index, &query, &expected, &tx, &reservation, &mut rows))
            .await;
    let (state, error) = match outcome {
        Ok(Ok(())) => (State::Ok, None),
        Ok(Err(HostError(state, e))) => (state, Some(e)),
        Err(_) => (State::Timeout, Some(format!("no answer within {}", humantime::format_duration(shared.timeout)))),
    };
    shared.statuses.finished(index, state, error, rows, start.elapsed());
}

async fn answer(
    shared: &FleetShared,
    index: usize,
    query: &str,
    expected: &SchemaRef,
    tx: &Sender,
    reservation: &MemoryReservation,
    rows: &mut u64,
) -> std::result::Result<(), HostError> {
    let Some(host) = shared.statuses.hosts().get(index) else { return Err(HostError::failed("no such host")) };
    let channel = shared.connector.connect(host).await?;
    let max_message = largest_message(&shared.pool);
    let inner = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut client = FlightSqlServiceClient::new_from_inner(inner);
    if let Some(password) = &shared.password {
        client.handshake("sockql", password).await.map_err(HostError::call)?;
    }
    let info = client.execute(query.to_string(), None).await.map_err(HostError::call)?;
    // Only this connection is read: an endpoint's other locations would
    // be addresses a host chose, not the operator.
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else { return Err(HostError::failed("an endpoint without a ticket")) };
        let mut batches = client.do_get(ticket).await.map_err(HostError::call)?;
        while let Some(batch) = batches.next().await {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) if max_message < MAX_MESSAGE && e.to_string().contains("message length too large") => {
                    let said = format!(
                        "host {} sent a batch larger than the memory limit ({max_message} bytes): {e}",
                        host.name
                    );
                    let _ = tx.send(Err(DataFusionError::ResourcesExhausted(said.clone()))).await;
                    return Err(HostError::failed(said));
                }
                Err(e) => return Err(HostError::call(e)),
            };
            let batch = conform(batch, expected).map_err(HostError::failed)?;
            *rows += batch.num_rows() as u64;
            let size = batch.get_array_memory_size();
            if let Err(e) = reservation.try_grow(size) {
                // The whole answer is over the limit, not this host: the
                // query fails with the engine's resources-exhausted error.
                let said = e.to_string();
                let _ = tx.send(Err(e)).await;
                return Err(HostError::failed(said));
            }
            if tx.send(Ok((batch, size))).await.is_err() {
                // The query needs no more (LIMIT) or has ended.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The largest message a host may send under the session's memory
/// limit: no more than the whole limit (and at least 1 MiB, so a small
/// limit still takes a batch of small rows).
fn largest_message(pool: &Arc<dyn MemoryPool>) -> usize {
    match pool.memory_limit() {
        MemoryLimit::Finite(limit) => MAX_MESSAGE.min(limit.max(1 << 20)),
        _ => MAX_MESSAGE,
    }
}

/// A host's batch as the plan expects it: the same number of columns,
/// each of the planned type (cast where it differs), nulls only where
/// allowed. Anything else is that host's failure, not the query's.
fn conform(batch: RecordBatch, expected: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    if batch.num_columns() != expected.fields().len() {
        return Err(format!("answered {} columns, {} expected", batch.num_columns(), expected.fields().len()));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(expected.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                datafusion::arrow::compute::cast(column, field.data_type())
                    .map_err(|e| format!("column {}: {e}", field.name()))
            }
        })
        .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(expected.clone(), columns, &options).map_err(|e| e.to_string())
}

impl From<super::connect::ConnectError> for HostError {
    fn from(e: super::connect::ConnectError) -> Self {
        HostError(if e.refused { State::Refused } else { State::Failed }, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn answers_are_made_to_fit_or_refused() {
        let expected = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let got = Arc::new(Schema::new(vec![Field::new("count(*)", DataType::Int32, true)]));
        let b = RecordBatch::try_new(got.clone(), vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
        let fitted = conform(b, &expected).unwrap();
        assert_eq!(fitted.schema(), expected);
        assert_eq!(fitted.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values(), &[1, 2]);
        let nulls = RecordBatch::try_new(got, vec![Arc::new(Int32Array::from(vec![Some(1), None]))]).unwrap();
        assert!(conform(nulls, &expected).is_err(), "a null where none may be");
        let wide = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Int64, false),
        ]));
        let b =
            RecordBatch::try_new(wide, vec![Arc::new(Int64Array::from(vec![1])), Arc::new(Int64Array::from(vec![1]))])
                .unwrap();
        assert!(conform(b, &expected).unwrap_err().contains("2 columns"));
    }
}
