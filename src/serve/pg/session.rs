//! One PostgreSQL client's session: its statements run through the same
//! engine, read-only policy and limits as the command line (a session of
//! its own, so snapshots and settings stay per client).
//!
//! Client SQL is first rewritten by the compatibility
//! parser (psql's and other clients' catalog queries use PostgreSQL forms
//! DataFusion does not plan), then printed back to text and run by
//! [`Engine`], which checks it against the same bounds as any other text.
//! Transaction commands and PostgreSQL session settings are answered here
//! without effect: sockql has no transactions, and no client setting may
//! reach the engine's options except through the policy.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::catalog::client_sql::ClientSql;
use async_trait::async_trait;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use futures::{Sink, SinkExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{send_execution_response, ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::response::ReadyForQuery;
use pgwire::messages::simplequery::Query;
use pgwire::messages::PgWireBackendMessage;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{encode, notices};
use crate::query::engine::{Described, Engine, Event, QueryStream, SqlSource, TimedOut};
use crate::query::statements::Statements;

/// PostgreSQL settings clients send that have no meaning here: accepted
/// and ignored (SET answers SET), so drivers connect. Anything else goes
/// to the engine, whose policy decides.
const IGNORED_SETTINGS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "datestyle",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "extra_float_digits",
    "idle_in_transaction_session_timeout",
    "intervalstyle",
    "jit",
    "lock_timeout",
    "search_path",
    "standard_conforming_strings",
    "statement_timeout",
    "timezone",
];

/// A statement answered here, without the engine.
#[derive(Debug, Clone)]
pub enum Local {
    Begin,
    Commit,
    Rollback,
    /// A setting accepted without effect; the tag to answer.
    Ignored(&'static str),
    Show(String, &'static str),
}

/// A statement as prepared by a client (extended protocol).
#[derive(Debug, Clone)]
pub enum Prepared {
    Query { sql: String, described: Described, tag: &'static str, names: Option<Vec<String>> },
    Local(Local),
}

fn local(statement: &Statement) -> Option<Local> {
    Some(match statement {
        Statement::StartTransaction { .. } => Local::Begin,
        Statement::Commit { .. } => Local::Commit,
        // Savepoints (psycopg's nested `conn.transaction()`, as SQLAlchemy
        // uses on connect): nothing to keep, and the transaction goes on.
        Statement::Savepoint { .. } => Local::Ignored("SAVEPOINT"),
        Statement::ReleaseSavepoint { .. } => Local::Ignored("RELEASE"),
        Statement::Rollback { savepoint: Some(_), .. } => Local::Ignored("ROLLBACK"),
        Statement::Rollback { .. } => Local::Rollback,
        Statement::Discard { .. } => Local::Ignored("DISCARD ALL"),
        Statement::Deallocate { .. } => Local::Ignored("DEALLOCATE"),
        Statement::Set(Set::SingleAssignment { variable, .. })
            if IGNORED_SETTINGS.contains(&variable.to_string().to_ascii_lowercase().as_str()) =>
        {
            Local::Ignored("SET")
        }
        Statement::Set(Set::SetTimeZone { .. } | Set::SetNames { .. } | Set::SetTransaction { .. }) => {
            Local::Ignored("SET")
        }
        Statement::ShowVariable { variable } => {
            let name =
                super::catalog::show_name(&variable.iter().map(|v| v.value.as_str()).collect::<Vec<_>>().join(" "));
            let value = super::catalog::setting(&name)?;
            Local::Show(name, value)
        }
        _ => return None,
    })
}

/// One statement of a client's text, ready to answer or run.
#[derive(Debug, Clone)]
struct Parsed {
    local: Option<Local>,
    sql: String,
    tag: &'static str,
    /// Its columns' PostgreSQL names (`column_names`).
    names: Option<Vec<String>>,
}

/// PostgreSQL's syntax first (rewritten for DataFusion); failing that,
/// DataFusion's own (SHOW TABLES, DESCRIBE, EXPLAIN ANALYZE, CREATE
/// EXTERNAL TABLE), whose statements the engine's policy then judges.
fn parse(parser: &ClientSql, text: &str) -> anyhow::Result<Vec<Parsed>> {
    let parsed = super::catalog_types::replaced(parser, text)
        .unwrap_or_else(|| super::catalog::parse_client_sql(parser, text))
        .map(super::catalog_types::rewrite);
    match parsed {
        Ok(statements) => Ok(statements
            .iter()
            .map(|st| Parsed {
                local: local(st),
                sql: st.to_string(),
                tag: tag_of(st),
                names: super::column_names::of(st),
            })
            .collect()),
        Err(pg) => {
            let mut out = Vec::new();
            let mut statements = Statements::new(text).map_err(crate::query::Error::from)?;
            while let Some(st) = statements.next_statement() {
                match st {
                    Ok(st) => out.push(Parsed { local: None, sql: st.to_string(), tag: "OK", names: None }),
                    Err(_) => anyhow::bail!("syntax error: {pg}"),
                }
            }
            Ok(out)
        }
    }
}

/// The command tag of a statement that returns no rows.
fn tag_of(statement: &Statement) -> &'static str {
    match statement {
        Statement::CreateTable { .. } => "CREATE TABLE",
        Statement::CreateView { .. } => "CREATE VIEW",
        Statement::Drop { .. } => "DROP",
        Statement::Set(_) => "SET",
        Statement::Prepare { .. } => "PREPARE",
        _ => "OK",
    }
}

/// An engine error as the client sees it, with the SQLSTATE a PostgreSQL
/// client (and its user) would act on (query/sqlstate.rs).
pub fn pg_error(e: impl Into<anyhow::Error>) -> PgWireError {
    let e = e.into();
    let text = crate::query::errors::error_line(&e);
    let code = crate::query::sqlstate::sqlstate(&e);
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), text)))
}

/// What every session of one server shares.
pub struct Shared {
    /// Queries running at once, across clients (`--pg-max-queries`).
    pub slots: Arc<Semaphore>,
    /// One more query kept for root on the unix socket: whatever other
    /// users run (a client that stops reading holds its slot up to
    /// `--timeout`), the operator's own psql is answered.
    pub root_slot: Arc<Semaphore>,
    pub max_queries: usize,
    /// How long a query waits for a slot before it is refused.
    pub slot_wait: Duration,
    /// Built once: it parses its own rewrite tables when made.
    pub parser: Arc<ClientSql>,
}

/// How a session makes its engine.
pub type MakeEngine = Box<dyn Fn() -> anyhow::Result<Engine> + Send + Sync>;

/// How long a query past its --timeout may take to tell its client so
/// (57014) before the connection is closed instead: a client that does not
/// read cannot hold the server past its deadline.
const TELL_TIMEOUT_GRACE: Duration = Duration::from_secs(2);

/// One client's session. Its engine (the live tables, pg_catalog) is made
/// at its first statement: a client that never authenticates costs none.
pub struct Session {
    engine: std::sync::OnceLock<Engine>,
    make: MakeEngine,
    shared: Arc<Shared>,
    /// Root on the unix socket: may take `Shared::root_slot`.
    root: bool,
    /// A query's deadline passed while its rows were being sent: wakes the
    /// handler sending them (see [`Handler::within_deadline`]).
    expired: Arc<Notify>,
    /// The connection must close (its client could not even be told that
    /// its query timed out); the connection's task waits on this.
    hang_up: Notify,
    /// The --timeout of this session's queries, for the error that says so.
    timeout: Mutex<Option<Duration>>,
    /// Woken by a CancelRequest naming this connection (cancel.rs).
    cancel: Arc<super::cancel::Target>,
    /// The warnings and notes of the statement running now (notices.rs).
    heard: Mutex<crate::notice::Heard>,
}

/// The handlers pgwire calls for one connection, all on its session.
#[derive(Clone)]
pub struct Handler(pub Arc<Session>);

impl Session {
    /// `root`: the peer is root on the unix socket (its reserved slot).
    pub fn new(make: MakeEngine, shared: Arc<Shared>, root: bool) -> Self {
        Session {
            engine: std::sync::OnceLock::new(),
            make,
            shared,
            root,
            expired: Arc::new(Notify::new()),
            hang_up: Notify::new(),
            timeout: Mutex::new(None),
            cancel: Arc::default(),
            heard: Mutex::default(),
        }
    }

    /// The session's queries end when `target` is canceled.
    pub fn with_cancel(mut self, target: Arc<super::cancel::Target>) -> Self {
        self.cancel = target;
        self
    }

    /// Resolves when the connection must be closed: its task drops the
    /// socket (and everything the session holds) then.
    pub async fn hung_up(&self) {
        self.hang_up.notified().await
    }

    fn engine(&self) -> PgWireResult<&Engine> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let made = (self.make)().map_err(pg_error)?;
        Ok(self.engine.get_or_init(|| made))
    }

    /// The statements of a client's text, bounded and rewritten. Parsing
    /// happens on the query stack: rewrites recurse on the tree.
    async fn statements(&self, text: &str) -> PgWireResult<Vec<Parsed>> {
        // The same bounds as any SQL text (size, identifiers, operators),
        // before the compatibility parser sees it.
        Statements::new(text).map_err(|e| pg_error(crate::query::Error::from(e)))?;
        let (text, parser) = (text.to_string(), self.shared.parser.clone());
        crate::query::engine::on_query_stack(move || parse(&parser, &text)).await.map_err(|e| {
            let mut pg = pg_error(e);
            if let PgWireError::UserError(info) = &mut pg {
                info.code = "42601".into();
            }
            pg
        })
    }

    /// A query slot, or a refusal once `slot_wait` has passed. Root takes
    /// whichever frees first of the shared slots and its own.
    async fn slot(&self) -> PgWireResult<OwnedSemaphorePermit> {
        let shared = self.shared.slots.clone().acquire_owned();
        let wait = async {
            if !self.root {
                return shared.await;
            }
            tokio::select! {
                permit = shared => permit,
                permit = self.shared.root_slot.clone().acquire_owned() => permit,
            }
        };
        match tokio::time::timeout(self.shared.slot_wait, wait).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "53300".into(),
                format!("{} queries are running (--pg-max-queries); try again", self.shared.max_queries),
            )))),
        }
    }

    /// Run one statement's text and answer with its rows as they come.
    async fn run(
        &self,
        source: SqlSource,
        tag: &'static str,
        names: Option<&[String]>,
        format: &Format,
    ) -> PgWireResult<Response> {
        // The query thread holds the slot until it returns: however its
        // results are dropped (last row sent, deadline, client gone, portal
        // closed), `--pg-max-queries` counts work that is really running.
        let permit = self.slot().await?;
        let mut running = self.engine()?.stream_holding(&source, permit).map_err(pg_error)?;
        if let Ok(mut heard) = self.heard.lock() {
            *heard = running.heard();
        }
        let deadline = running.deadline();
        match running.next().await.map_err(pg_error)? {
            None => Ok(Response::Execution(Tag::new(tag))),
            Some(Event::Start(schema)) if schema.fields().is_empty() => {
                while running.next().await.map_err(pg_error)?.is_some() {}
                Ok(Response::Execution(Tag::new(tag)))
            }
            Some(Event::Start(schema)) => {
                let fields = Arc::new(encode::fields(&super::column_names::renamed(&schema, names), format)?);
                let held: Held = Arc::new(Mutex::new(Some(running)));
                let timeout = deadline.map(|(at, t)| {
                    watch(Arc::downgrade(&held), at, self.expired.clone());
                    t
                });
                if let Ok(mut t) = self.timeout.lock() {
                    *t = timeout;
                }
                let state = RowsState {
                    batch: None,
                    held,
                    fields: fields.clone(),
                    expired: self.expired.clone(),
                    timeout,
                    done: false,
                };
                Ok(Response::Query(QueryResponse::new(fields, rows(state))))
            }
            Some(other) => Err(pg_error(anyhow::anyhow!("unexpected {other:?} before the statement's start"))),
        }
    }

    /// What the statement run last has said and not yet told.
    fn heard(&self) -> crate::notice::Heard {
        self.heard.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn answer_local(&self, what: &Local) -> PgWireResult<Response> {
        Ok(match what {
            Local::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Local::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            Local::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            Local::Ignored(tag) => Response::Execution(Tag::new(tag)),
            Local::Show(name, value) => {
                let fields = Arc::new(show_fields(name));
                let mut row = DataRowEncoder::new(fields.clone());
                row.encode_field(&Some(*value))?;
                let row = row.take_row();
                Response::Query(QueryResponse::new(fields, futures::stream::once(async move { Ok(row) })))
            }
        })
    }
}

impl Drop for Session {
    /// pg_catalog holds the session's catalog list, which holds pg_catalog:
    /// without breaking that cycle every connection's catalog stayed in
    /// memory after it closed.
    fn drop(&mut self) {
        if let Some(engine) = self.engine.get() {
            super::catalog::teardown(engine);
        }
    }
}

fn show_fields(name: &str) -> Vec<FieldInfo> {
    vec![FieldInfo::new(name.to_string(), None, None, Type::TEXT, FieldFormat::Text)]
}

/// A query's results, shared by its rows and its deadline's watchdog:
/// whichever takes them first ends them.
type Held = Arc<Mutex<Option<QueryStream>>>;

fn take(held: &Held) -> Option<QueryStream> {
    held.lock().ok().and_then(|mut h| h.take())
}

/// At `at`, end the query if its rows are still waiting to be sent (a
/// client not reading, a portal left suspended), and wake the handler
/// that may be stuck sending them.
fn watch(held: std::sync::Weak<Mutex<Option<QueryStream>>>, at: tokio::time::Instant, expired: Arc<Notify>) {
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        let Some(held) = held.upgrade() else { return };
        if let Some(running) = take(&held) {
            drop(running);
            expired.notify_waiters();
        }
    });
}

fn timed_out_error(timeout: Option<Duration>) -> ErrorInfo {
    let text = match timeout {
        Some(t) => TimedOut(t).to_string(),
        None => "query timed out (--timeout)".into(),
    };
    ErrorInfo::new("ERROR".into(), "57014".into(), text)
}

/// Where a statement's rows are: the batch being encoded, and the query.
struct RowsState {
    batch: Option<encode::BatchRows>,
    held: Held,
    fields: Arc<Vec<FieldInfo>>,
    expired: Arc<Notify>,
    timeout: Option<Duration>,
    done: bool,
}

/// The rows of one statement, encoded one at a time as the connection
/// takes them (pgwire writes them with backpressure), so a statement holds
/// one batch and one row's encoding at most.
fn rows(
    state: RowsState,
) -> impl futures::Stream<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + 'static {
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(batch) = &mut st.batch {
                match batch.next_row() {
                    Some(Ok(row)) => return Some((Ok(row), st)),
                    Some(Err(e)) => {
                        st.done = true;
                        drop(take(&st.held));
                        return Some((Err(e), st));
                    }
                    None => st.batch = None,
                }
            }
            // The watchdog took the query: its time is up.
            let Some(mut running) = take(&st.held) else {
                st.done = true;
                let error = timed_out_error(st.timeout);
                return Some((Err(PgWireError::UserError(Box::new(error))), st));
            };
            match running.next().await {
                Ok(Some(Event::Batch(batch))) => {
                    match encode::BatchRows::new(batch, &st.fields) {
                        Ok(rows) => st.batch = Some(rows),
                        Err(e) => {
                            st.done = true;
                            return Some((Err(e), st));
                        }
                    }
                    if let Ok(mut h) = st.held.lock() {
                        *h = Some(running);
                    }
                }
                Ok(Some(Event::End)) | Ok(None) => st.done = true,
                Ok(Some(Event::Start(_))) => {
                    st.done = true;
                    return Some((Err(pg_error(anyhow::anyhow!("a second result in one statement"))), st));
                }
                Err(crate::query::Error::TimedOut(_)) => {
                    // Past the deadline: the handler tells the client (or
                    // closes the connection if it cannot) and drops these rows.
                    drop(running);
                    st.expired.notify_waiters();
                    futures::future::pending::<()>().await;
                }
                Err(e) => {
                    st.done = true;
                    return Some((Err(pg_error(e)), st));
                }
            }
        }
    })
}

impl Handler {
    /// Run a handler's `work` (a query and the sending of its rows) until
    /// it ends, its query's deadline passes or a CancelRequest names this
    /// connection. Then the client is told (57014) if that can be sent
    /// within a short grace; if not, the connection is closed. Either way
    /// the query has already stopped: `work`, dropped, drops its results,
    /// and the query thread stops at its next step.
    async fn within_deadline<C>(
        &self,
        client: &mut C,
        extended: bool,
        work: impl AsyncFnOnce(&mut C) -> PgWireResult<()>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let expired = self.0.expired.clone();
        // Registered now: a wake-up while `work` runs is not missed.
        let notified = expired.notified();
        tokio::pin!(notified);
        let canceled = self.0.cancel.canceled();
        tokio::pin!(canceled);
        let error = tokio::select! {
            biased;
            result = work(client) => return result,
            () = &mut notified => timed_out_error(self.0.timeout.lock().ok().and_then(|t| *t)),
            () = &mut canceled => ErrorInfo::new("ERROR".into(), "57014".into(), "canceling statement due to user request".into()),
        };
        let status = client.transaction_status();
        let told = tokio::time::timeout(TELL_TIMEOUT_GRACE, async {
            client.feed(PgWireBackendMessage::ErrorResponse(error.into())).await.map_err(PgWireError::from)?;
            if !extended {
                client
                    .feed(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status)))
                    .await
                    .map_err(PgWireError::from)?;
            }
            client.flush().await.map_err(PgWireError::from)
        })
        .await
        .is_ok_and(|sent| sent.is_ok());
        if told {
            client.set_state(if extended {
                PgWireConnectionState::AwaitingSync
            } else {
                PgWireConnectionState::ReadyForQuery
            });
            return Ok(());
        }
        self.0.hang_up.notify_one();
        futures::future::pending().await
    }
}

#[async_trait]
impl SimpleQueryHandler for Handler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.within_deadline(client, false, async |client: &mut C| self._on_query(client, query).await).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = &self.0;
        let statements = session.statements(query).await?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let last = statements.len() - 1;
        for (i, statement) in statements.into_iter().enumerate() {
            let response = match &statement.local {
                Some(what) => session.answer_local(what),
                None => {
                    session
                        .run(
                            SqlSource::inline(statement.sql),
                            statement.tag,
                            statement.names.as_deref(),
                            &Format::UnifiedText,
                        )
                        .await
                }
            };
            // What the statement said goes before its end (notices.rs).
            let heard = session.heard();
            // A failed statement ends the text, as in PostgreSQL; earlier
            // answers are already sent.
            let response = match response {
                Err(PgWireError::UserError(info)) => {
                    notices::tell(client, &heard).await?;
                    return Ok(vec![Response::Error(info)]);
                }
                other => other?,
            };
            // Every statement is sent here, its rows streamed to the client
            // before the next statement runs: nothing is kept. (pgwire
            // answers the last one's transaction commands: they change the
            // status it reports.)
            match response {
                Response::Query(rows) => notices::send_query_response(client, rows, true, &heard).await?,
                Response::Execution(tag) => {
                    notices::tell(client, &heard).await?;
                    send_execution_response(client, tag).await?
                }
                other if i == last => return Ok(vec![other]),
                Response::TransactionStart(tag) | Response::TransactionEnd(tag) => {
                    send_execution_response(client, tag).await?
                }
                other => return Ok(vec![other]),
            }
        }
        Ok(Vec::new())
    }
}

#[async_trait]
impl QueryParser for Session {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.statements(sql).await?;
        if statements.len() > 1 {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "42601".into(),
                "cannot insert multiple commands into a prepared statement".into(),
            ))));
        }
        let Some(statement) = statements.pop() else { return Ok(None) };
        if let Some(what) = statement.local {
            return Ok(Some(Prepared::Local(what)));
        }
        // Planning a prepared statement is query work: it takes a query
        // slot, held by the planning thread until it has finished.
        let permit = self.slot().await?;
        let described = self
            .engine()?
            .describe_holding(&SqlSource::inline(statement.sql.clone()), permit)
            .await
            .map_err(pg_error)?;
        Ok(Some(Prepared::Query { sql: statement.sql, described, tag: statement.tag, names: statement.names }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        match stmt {
            Prepared::Query { described, .. } => {
                Ok(described.params.iter().map(|t| t.as_ref().map_or(Type::UNKNOWN, encode::pg_type)).collect())
            }
            Prepared::Local(_) => Ok(Vec::new()),
        }
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            Prepared::Query { described: Described { schema: Some(schema), .. }, names, .. }
                if !schema.fields().is_empty() =>
            {
                encode::fields(
                    &super::column_names::renamed(schema, names.as_deref()),
                    format.unwrap_or(&Format::UnifiedText),
                )
            }
            Prepared::Local(Local::Show(name, _)) => Ok(show_fields(name)),
            _ => Ok(Vec::new()),
        }
    }
}

/// The client's parameter values, decoded by the types the plan infers
/// (or the client names), as `$1`, `$2`, ... bindings.
fn parameters(portal: &Portal<Prepared>, described: &Described) -> PgWireResult<HashMap<String, ScalarValue>> {
    let inferred: Vec<Option<&datafusion::arrow::datatypes::DataType>> =
        described.params.iter().map(|t| t.as_ref()).collect();
    super::parameters::decode(portal, &inferred)
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Session;

    fn query_parser(&self) -> Arc<Session> {
        self.0.clone()
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.within_deadline(client, true, async |client: &mut C| self._on_execute(client, message).await).await
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = &self.0;
        match &portal.statement.statement {
            Prepared::Local(what) => session.answer_local(what),
            Prepared::Query { sql, described, tag, names } => {
                let source =
                    SqlSource { text: sql.clone(), params: parameters(portal, described)?, ..Default::default() };
                let response = session.run(source, tag, names.as_deref(), &portal.result_column_format).await;
                let heard = session.heard();
                match response {
                    // All rows asked for (every common driver): sent here,
                    // then what the statement said, then pgwire's
                    // CommandComplete.
                    Ok(Response::Query(rows)) if max_rows == 0 => {
                        let tag = Tag::new(&rows.command_tag.clone())
                            .with_rows(notices::send_rows(client, rows, &heard).await?);
                        notices::tell(client, &heard).await?;
                        Ok(Response::Execution(tag))
                    }
                    // A portal read in parts is pgwire's to suspend: what
                    // planning said goes before its rows.
                    other => {
                        notices::tell(client, &heard).await?;
                        other
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::policy::Refusal;

    fn parse(sql: &str) -> Statement {
        ClientSql::new().parse(sql).unwrap().remove(0)
    }

    #[test]
    fn transactions_and_client_settings_are_answered_here() {
        assert!(matches!(local(&parse("BEGIN")), Some(Local::Begin)));
        assert!(matches!(local(&parse("COMMIT")), Some(Local::Commit)));
        assert!(matches!(local(&parse("ROLLBACK")), Some(Local::Rollback)));
        assert!(matches!(local(&parse("SAVEPOINT \"_pg3_1\"")), Some(Local::Ignored("SAVEPOINT"))));
        assert!(matches!(local(&parse("ROLLBACK TO SAVEPOINT \"_pg3_1\"")), Some(Local::Ignored("ROLLBACK"))));
        assert!(matches!(local(&parse("RELEASE SAVEPOINT \"_pg3_1\"")), Some(Local::Ignored("RELEASE"))));
        assert!(
            matches!(local(&parse("SHOW TRANSACTION ISOLATION LEVEL")), Some(Local::Show(n, "read committed")) if n == "transaction_isolation")
        );
        assert!(matches!(local(&parse("SET application_name = 'psql'")), Some(Local::Ignored("SET"))));
        assert!(matches!(local(&parse("SET DateStyle = 'ISO'")), Some(Local::Ignored("SET"))));
        assert!(matches!(local(&parse("SHOW transaction_isolation")), Some(Local::Show(_, "read committed"))));
    }

    #[test]
    fn engine_settings_are_left_to_the_policy() {
        assert!(local(&parse("SET datafusion.runtime.memory_limit = '100G'")).is_none());
        assert!(local(&parse("SET datafusion.format.null = 'x'")).is_none());
        assert!(local(&parse("SHOW datafusion.execution.batch_size")).is_none());
        assert!(local(&parse("SELECT 1")).is_none());
    }

    #[test]
    fn refusals_and_bounds_carry_their_sqlstate() {
        let code = |e: PgWireError| match e {
            PgWireError::UserError(info) => info.code,
            other => panic!("{other:?}"),
        };
        let refused = anyhow::Error::new(Refusal::by_front_end("COPY ... TO writes files"));
        assert_eq!(code(pg_error(refused)), "42501");
        assert_eq!(code(pg_error(crate::query::engine::TimedOut(std::time::Duration::from_secs(1)))), "57014");
        // The engine's own error, by its kind.
        let timed_out =
            crate::query::Error::TimedOut(crate::query::engine::TimedOut(std::time::Duration::from_secs(1)));
        assert_eq!(code(pg_error(timed_out.context("q.sql:1"))), "57014");
        // A refusal inside DataFusion's planning, as a table function makes it.
        let inside = datafusion::error::DataFusionError::External(Box::new(Refusal::by_front_end("no")));
        assert_eq!(code(pg_error(anyhow::Error::new(inside).context("planning"))), "42501");
        assert_eq!(code(pg_error(anyhow::anyhow!("boom"))), "XX000");
    }
}
