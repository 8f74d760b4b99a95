//! Flight SQL over sockql's engine: arrow-flight's `FlightSqlService`,
//! each statement in an engine of its own (the live tables, the
//! read-only policy, --memory-limit and --timeout), with a query slot
//! shared with the PostgreSQL endpoint's clients.
//!
//! GetFlightInfo plans the statement (checking it against the policy)
//! and answers its schema and a ticket that holds the statement's text;
//! DoGet runs it and streams its record batches as the query thread makes
//! them. The slot is held by the query thread until it returns, and at
//! the deadline the run is dropped whether or not the client is reading:
//! a DoGet whose client stopped reading (HTTP/2 flow control holding the
//! stream back) holds neither memory nor a slot past --timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status, Streaming};

use super::auth::Auth;
use super::cancel::{Run, Running};
use super::conns::{ConnInfo, ConnState};
use super::prepared::{number_placeholders, row_values, Prepared};
use crate::query::engine::{Engine, Event, Limits, Policy, SqlSource};
use crate::tables::SourceOptions;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementUpdate, DoPutPreparedStatementResult,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, IpcMessage, SchemaAsIpc,
};
use bytes::Bytes;

/// The longest statement text a client may send (in a command or a
/// ticket); the engine's own bounds then apply to what it holds.
pub const MAX_SQL: usize = 64 << 10;

/// Query slots, shared with `--pg`'s clients (`--pg-max-queries`).
#[derive(Clone, Debug)]
pub struct Slots {
    pub slots: Arc<Semaphore>,
    pub max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Slots { slots: Arc::new(Semaphore::new(max.max(1))), max: max.max(1) }
    }
}

/// The Flight SQL service over sockql's engine.
pub struct FlightSql {
    source: SourceOptions,
    limits: Limits,
    slots: Slots,
    auth: Option<Arc<Auth>>,
}

type Batches = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// An engine error as a gRPC status: a policy refusal is
/// PERMISSION_DENIED, a timeout DEADLINE_EXCEEDED, a bound (memory,
/// size) RESOURCE_EXHAUSTED; the message is the CLI's, with the SQLSTATE.
pub fn status(e: impl crate::query::error::AsError) -> Status {
    use crate::query::sqlstate::code;
    let state = crate::query::sqlstate::sqlstate(&e);
    let text = format!("{} (SQLSTATE {state})", crate::query::errors::error_line(&e));
    match state {
        code::INSUFFICIENT_PRIVILEGE => Status::permission_denied(text),
        code::QUERY_CANCELED => Status::deadline_exceeded(text),
        code::OUT_OF_MEMORY | code::PROGRAM_LIMIT_EXCEEDED | code::STATEMENT_TOO_COMPLEX => {
            Status::resource_exhausted(text)
        }
        code::INTERNAL_ERROR => Status::internal(text),
        _ => Status::invalid_argument(text),
    }
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::internal(other.to_string()),
    }
}

/// Record batches (already computed: catalogs, SqlInfo) as a DoGet answer.
fn answer(schema: SchemaRef, batch: Result<RecordBatch, FlightError>) -> Response<Batches> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { batch }))
        .map_err(flight_status);
    Response::new(Box::pin(stream))
}

/// A FlightInfo whose one endpoint's ticket is `ticket` (an Any-wrapped
/// command), with `schema`.
fn info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket { ticket: ticket.into() });
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// What the server tells clients of itself (built once).
fn sql_info() -> Result<&'static SqlInfoData, Status> {
    static DATA: std::sync::OnceLock<Option<SqlInfoData>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "sockql");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::FlightSqlServerCancel, true);
        b.build().ok()
    })
    .as_ref()
    .ok_or_else(|| Status::internal("cannot build the server's SqlInfo"))
}

/// The catalog and schema the live tables are in (DataFusion's defaults).
const CATALOG: &str = "datafusion";
const SCHEMA: &str = "public";

/// A statement's text out of a client's bytes, within [`MAX_SQL`].
fn sql_text(bytes: &[u8]) -> Result<String, Status> {
    if bytes.len() > MAX_SQL {
        return Err(Status::resource_exhausted(format!(
            "the statement is {} bytes; the endpoint takes at most {MAX_SQL}",
            bytes.len()
        )));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| Status::invalid_argument("the statement is not UTF-8"))
}

/// The connection a call came on (its prepared statements and runs).
fn connection<T>(request: &Request<T>) -> Result<Arc<ConnState>, Status> {
    request
        .extensions()
        .get::<ConnInfo>()
        .map(|ConnInfo(c)| c.clone())
        .ok_or_else(|| Status::internal("sockql: the call's connection is unknown"))
}

/// A schema as the IPC message a prepared statement's result carries.
fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let options = datafusion::arrow::ipc::writer::IpcWriteOptions::default();
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?;
    Ok(bytes)
}

/// What a write is told: the endpoint serves the live tables read-only.
fn read_only(what: &str) -> Status {
    Status::permission_denied(format!("sockql: {what} refused: the Flight SQL endpoint is read-only (SQLSTATE 25006)"))
}

/// Every parameter of `prepared` has a value (a DoPut bound them).
fn bound_all(prepared: &Prepared) -> Result<(), Status> {
    let wanted = prepared.params.len();
    if prepared.bound.len() < wanted {
        return Err(Status::invalid_argument(format!(
            "the prepared statement takes {wanted} parameters; bind them (DoPut) before running it"
        )));
    }
    Ok(())
}

/// The CancelFlightInfo action's type (a Flight action, not a Flight SQL one).
const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

impl FlightSql {
    pub fn new(source: SourceOptions, limits: Limits, slots: Slots, auth: Option<Arc<Auth>>) -> Self {
        FlightSql { source, limits, slots, auth }
    }

    /// A session for one statement: the live tables, the command line's
    /// limits, the read-only policy (never --allow-files); its threads
    /// yield the CPU to root's and scrapes' (query/priority.rs).
    fn engine(&self) -> Result<Engine, Status> {
        Ok(Engine::with(&self.source, Policy::default(), self.limits)
            .map_err(status)?
            .isolated(crate::query::priority::OTHER_USERS)
            .with_notices(crate::notice::Mode::Keep(Default::default())))
    }

    /// How long a statement waits for a slot before it is refused.
    fn slot_wait(&self) -> Duration {
        self.limits.timeout.unwrap_or(Duration::from_secs(30))
    }

    async fn slot(&self) -> Result<OwnedSemaphorePermit, Status> {
        match tokio::time::timeout(self.slot_wait(), self.slots.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Status::resource_exhausted(format!(
                "{} queries are running (--pg-max-queries, shared with the PostgreSQL endpoint); try again",
                self.slots.max
            ))),
        }
    }

    /// Run `sql` and stream its rows (its first statement with rows).
    /// The run is kept in `running` under `ticket` while it streams, for
    /// its connection to cancel.
    async fn run(&self, sql: SqlSource, running: Option<(&Arc<Running>, Bytes)>) -> Result<Response<Batches>, Status> {
        let permit = self.slot().await?;
        let mut stream = self.engine()?.stream_holding(&sql, permit).map_err(status)?;
        let deadline = stream.deadline();
        // The schema first: an error before any row is the call's status.
        let schema = loop {
            match stream.next().await.map_err(status)? {
                Some(Event::Start(schema)) => break schema,
                Some(_) => continue,
                None => break Arc::new(Schema::empty()),
            }
        };
        let run = Run::new(stream);
        let registered = running.map(|(running, ticket)| running.register(ticket, &run));
        if let Some((at, _)) = deadline {
            // At the deadline the run ends even if no one polls the rows.
            let weak = Arc::downgrade(&run);
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                if let Some(run) = weak.upgrade() {
                    drop(run.take());
                }
            });
        }
        let timeout = deadline.map(|(_, t)| t);
        let batches = futures::stream::unfold((run, registered, false), move |(run, registered, done)| async move {
            if done {
                return None;
            }
            let Some(mut stream) = run.take() else {
                let e = if run.cancelled() {
                    Status::cancelled("sockql: the query was cancelled (CancelFlightInfo)")
                } else {
                    status(crate::query::Error::TimedOut(crate::query::engine::TimedOut(timeout.unwrap_or_default())))
                };
                return Some((Err(FlightError::Tonic(Box::new(e))), (run, registered, true)));
            };
            let Some(next) = run.next_unless_cancelled(&mut stream).await else {
                drop(stream);
                let e = Status::cancelled("sockql: the query was cancelled (CancelFlightInfo)");
                return Some((Err(FlightError::Tonic(Box::new(e))), (run, registered, true)));
            };
            match next {
                Ok(Some(Event::Batch(batch))) => {
                    run.put_back(stream);
                    Some((Ok(batch), (run, registered, false)))
                }
                // A statement after the first's rows: its rows are not this
                // answer's (GetFlightInfo described one statement).
                Ok(Some(Event::End | Event::Start(_))) | Ok(None) => None,
                Err(e) => Some((Err(FlightError::Tonic(Box::new(status(e)))), (run, registered, true))),
            }
        });
        let stream = FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(flight_status);
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Basic auth in, a bearer token out (ADBC and JDBC drivers do this
    /// first). The interceptor has already checked the password.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let token = self.auth.as_ref().map(|a| a.token()).unwrap_or_default();
        let reply = HandshakeResponse { protocol_version: 0, payload: token.clone().into_bytes().into() };
        let stream: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::iter([Ok(reply)]));
        let mut response = Response::new(stream);
        if !token.is_empty() {
            let value =
                format!("Bearer {token}").parse().map_err(|_| Status::internal("cannot put the token in a header"))?;
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = sql_text(query.query.as_bytes())?;
        let permit = self.slot().await?;
        let described =
            self.engine()?.describe_holding(&SqlSource::inline(sql.clone()), permit).await.map_err(status)?;
        let schema = described.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let ticket = TicketStatementQuery { statement_handle: sql.into_bytes().into() };
        info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let sql = sql_text(&ticket.statement_handle)?;
        let conn = connection(&request).ok();
        let ticket = request.get_ref().ticket.clone();
        self.run(SqlSource::inline(sql), conn.as_ref().map(|c| (&c.running, ticket))).await
    }

    /// Plan the statement (the policy checks it here), keep it under a
    /// random handle of this connection, and say its row and parameter
    /// schemas. The caps are checked before planning, so a flood of
    /// creates past them costs no planning.
    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let conn = connection(&request)?;
        let sql = sql_text(query.query.as_bytes())?;
        conn.prepared.room_for(&sql)?;
        let sql = number_placeholders(&sql)?;
        let permit = self.slot().await?;
        let described =
            self.engine()?.describe_holding(&SqlSource::inline(sql.clone()), permit).await.map_err(status)?;
        let dataset = described.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let prepared = Prepared::new(sql, described.params, dataset);
        let (dataset_schema, parameter_schema) =
            (schema_bytes(&prepared.dataset)?, schema_bytes(&prepared.parameter_schema())?);
        let handle = conn.prepared.insert(prepared)?;
        Ok(ActionCreatePreparedStatementResult { prepared_statement_handle: handle, dataset_schema, parameter_schema })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        connection(&request)?.prepared.close(&query.prepared_statement_handle)
    }

    /// Bind one row of parameter values (Arrow) to a prepared statement.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let conn = connection(&request)?;
        let handle = query.prepared_statement_handle;
        let prepared = conn.prepared.get(&handle)?;
        let data = request.into_inner().map_err(|s| FlightError::Tonic(Box::new(s)));
        let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data);
        // The values are read within the slot wait and the connection's
        // bytes: a client that sends forever, or slowly, is cut off.
        let read = async {
            let (mut kept, mut size, mut rows) = (Vec::new(), 0usize, 0usize);
            while let Some(batch) = batches.try_next().await.map_err(flight_status)? {
                size += batch.get_array_memory_size();
                rows += batch.num_rows();
                if size > super::prepared::MAX_BYTES || rows > 1 {
                    return Err(Status::invalid_argument(format!(
                        "a prepared query binds one row of parameters of at most {} bytes",
                        super::prepared::MAX_BYTES
                    )));
                }
                kept.push(batch);
            }
            Ok((kept, size))
        };
        let (kept, size) = tokio::time::timeout(self.slot_wait(), read)
            .await
            .map_err(|_| Status::deadline_exceeded("sockql: the parameter values did not arrive in time"))??;
        let values = row_values(&kept, &prepared.params)?;
        conn.prepared.bind(&handle, values, size)?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle) })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let prepared = connection(&request)?.prepared.get(&query.prepared_statement_handle)?;
        bound_all(&prepared)?;
        info(&prepared.dataset, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let conn = connection(&request)?;
        let prepared = conn.prepared.get(&query.prepared_statement_handle)?;
        bound_all(&prepared)?;
        let sql = SqlSource { text: prepared.sql, params: prepared.bound, ..Default::default() };
        let ticket = request.get_ref().ticket.clone();
        self.run(sql, Some((&conn.running, ticket))).await
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update"))
    }

    async fn do_put_statement_ingest(
        &self,
        _query: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("ingestion"))
    }

    /// Flight SQL's older cancel: the FlightInfo as bytes.
    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let info = FlightInfo::decode(query.info).map_err(|_| Status::invalid_argument("not a FlightInfo"))?;
        if connection(&request)?.running.cancel(&info) == 0 {
            return Err(super::cancel::not_found());
        }
        // CancelResult's values are CancelStatus's.
        Ok(ActionCancelQueryResult { result: CancelStatus::Cancelled as i32 })
    }

    /// CancelFlightInfo (Flight's own action, which Flight SQL clients
    /// use now).
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as arrow_flight::flight_service_server::FlightService>::DoActionStream>, Status> {
        if request.get_ref().r#type != CANCEL_FLIGHT_INFO {
            return Err(Status::invalid_argument(format!(
                "sockql: no action {:?}",
                request.get_ref().r#type.chars().take(64).collect::<String>()
            )));
        }
        let cancel = CancelFlightInfoRequest::decode(request.get_ref().body.clone())
            .map_err(|_| Status::invalid_argument("not a CancelFlightInfoRequest"))?;
        let info =
            cancel.info.ok_or_else(|| Status::invalid_argument("a CancelFlightInfoRequest without its FlightInfo"))?;
        if connection(&request)?.running.cancel(&info) == 0 {
            return Err(super::cancel::not_found());
        }
        let body = CancelFlightInfoResult::new(CancelStatus::Cancelled).encode_to_vec();
        let result = arrow_flight::Result { body: body.into() };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(result)]))))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(vec![Ok(ActionType {
            r#type: CANCEL_FLIGHT_INFO.into(),
            description: "Cancels a running query of this connection.\n Request Message: CancelFlightInfoRequest\n Response Message: CancelFlightInfoResult".into(),
        })])
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(answer(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(answer(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let mut builder = query.into_builder();
        for table in crate::query::catalog::live() {
            builder.append(CATALOG, SCHEMA, &table.name, "TABLE", &table.schema).map_err(flight_status)?;
        }
        Ok(answer(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        Ok(answer(builder.schema(), builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(sql_info()?).schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let builder = query.into_builder(sql_info()?);
        Ok(answer(builder.schema(), builder.build()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
