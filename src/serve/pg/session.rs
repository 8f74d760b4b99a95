//! One PostgreSQL client's session: its statements run through the same
//! engine, read-only policy and limits as the command line (a session of
//! its own, so snapshots and settings stay per client).
//!
//! Client SQL is first rewritten by datafusion-pg-catalog's compatibility
//! parser (psql's and other clients' catalog queries use PostgreSQL forms
//! DataFusion does not plan), then printed back to text and run by
//! [`Engine`], which checks it against the same bounds as any other text.
//! Transaction commands and PostgreSQL session settings are answered here
//! without effect: sockql has no transactions, and no client setting may
//! reach the engine's options except through the policy.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::query::engine::{memory_exhausted, Described, Engine, Event, QueryStream, SqlSource, TimedOut};
use crate::query::policy::Refusal;
use crate::query::statements::{StatementError, Statements};

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
    Query { sql: String, described: Described, tag: &'static str },
    Local(Local),
}

fn local(statement: &Statement) -> Option<Local> {
    Some(match statement {
        Statement::StartTransaction { .. } => Local::Begin,
        Statement::Commit { .. } => Local::Commit,
        Statement::Rollback { .. } => Local::Rollback,
        Statement::Discard { .. } => Local::Ignored("DISCARD ALL"),
        Statement::Deallocate { .. } => Local::Ignored("DEALLOCATE"),
        Statement::Set(Set::SingleAssignment { variable, .. })
            if IGNORED_SETTINGS.contains(&variable.to_string().to_ascii_lowercase().as_str()) =>
        {
            Local::Ignored("SET")
        }
        Statement::Set(Set::SetTimeZone { .. } | Set::SetNames { .. } | Set::SetTransaction { .. }) => Local::Ignored("SET"),
        Statement::ShowVariable { variable } => {
            let name = variable.iter().map(|v| v.value.to_ascii_lowercase()).collect::<Vec<_>>().join(" ");
            let name = if name == "time zone" { "timezone".to_string() } else { name };
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
}

/// PostgreSQL's syntax first (rewritten for DataFusion); failing that,
/// DataFusion's own (SHOW TABLES, DESCRIBE, EXPLAIN ANALYZE, CREATE
/// EXTERNAL TABLE), whose statements the engine's policy then judges.
fn parse(parser: &PostgresCompatibilityParser, text: &str) -> anyhow::Result<Vec<Parsed>> {
    let parsed = super::catalog::with_search_path(parser, text).unwrap_or_else(|| parser.parse(text));
    match parsed {
        Ok(statements) => Ok(statements
            .iter()
            .map(|st| Parsed { local: local(st), sql: st.to_string(), tag: tag_of(st) })
            .collect()),
        Err(pg) => {
            let mut out = Vec::new();
            let mut statements = Statements::new(text).map_err(StatementError::into_anyhow)?;
            while let Some(st) = statements.next_statement() {
                match st {
                    Ok(st) => out.push(Parsed { local: None, sql: st.to_string(), tag: "OK" }),
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
        _ => "OK",
    }
}

/// An engine error as the client sees it, with the SQLSTATE a PostgreSQL
/// client (and its user) would act on.
pub fn pg_error(e: anyhow::Error) -> PgWireError {
    let text = crate::query::errors::error_line(&e);
    let code = if e.chain().any(|c| c.is::<Refusal>()) {
        "42501" // insufficient_privilege: sockql is read-only
    } else if e.chain().any(|c| c.is::<StatementError>()) {
        "54000" // program_limit_exceeded: past the SQL bounds
    } else if e.chain().any(|c| c.is::<TimedOut>()) {
        "57014" // query_canceled
    } else if memory_exhausted(&e) {
        "53200" // out_of_memory
    } else if text.contains("not found") {
        "42P01" // undefined_table (or column)
    } else {
        "XX000"
    };
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), text)))
}

/// What every session of one server shares.
pub struct Shared {
    /// Queries running at once, across clients (`--pg-max-queries`).
    pub slots: Arc<Semaphore>,
    pub max_queries: usize,
    /// How long a query waits for a slot before it is refused.
    pub slot_wait: Duration,
    /// Built once: it parses its own rewrite tables when made.
    pub parser: Arc<PostgresCompatibilityParser>,
}

/// How a session makes its engine.
pub type MakeEngine = Box<dyn Fn() -> anyhow::Result<Engine> + Send + Sync>;

/// One client's session. Its engine (the live tables, pg_catalog) is made
/// at its first statement: a client that never authenticates costs none.
pub struct Session {
    engine: std::sync::OnceLock<Engine>,
    make: MakeEngine,
    shared: Arc<Shared>,
}

/// The handlers pgwire calls for one connection, all on its session.
#[derive(Clone)]
pub struct Handler(pub Arc<Session>);

impl Session {
    pub fn new(make: MakeEngine, shared: Arc<Shared>) -> Self {
        Session { engine: std::sync::OnceLock::new(), make, shared }
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
        Statements::new(text).map_err(|e| pg_error(e.into_anyhow()))?;
        let (text, parser) = (text.to_string(), self.shared.parser.clone());
        crate::query::engine::on_query_stack(move || parse(&parser, &text)).await.map_err(|e| {
            let mut pg = pg_error(e);
            if let PgWireError::UserError(info) = &mut pg {
                info.code = "42601".into();
            }
            pg
        })
    }

    /// A query slot, or a refusal once `slot_wait` has passed.
    async fn slot(&self) -> PgWireResult<OwnedSemaphorePermit> {
        match tokio::time::timeout(self.shared.slot_wait, self.shared.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "53300".into(),
                format!("{} queries are running (--pg-max-queries); try again", self.shared.max_queries),
            )))),
        }
    }

    /// Run one statement's text and answer with its rows as they come.
    async fn run(&self, source: SqlSource, tag: &'static str, format: &Format, options: Arc<FormatOptions>) -> PgWireResult<Response> {
        // The query thread owns the slot: it is free again only when the
        // thread has finished, not when a timeout ends the wait.
        let permit = self.slot().await?;
        let mut stream = self.engine()?.stream_holding(&source, permit).map_err(pg_error)?;
        match stream.next().await.map_err(pg_error)? {
            None => Ok(Response::Execution(Tag::new(tag))),
            Some(Event::Start(schema)) if schema.fields().is_empty() => {
                drain(&mut stream).await?;
                Ok(Response::Execution(Tag::new(tag)))
            }
            Some(Event::Start(schema)) => {
                let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, Some(options))?);
                Ok(Response::Query(QueryResponse::new(fields.clone(), rows(stream, fields))))
            }
            Some(other) => Err(pg_error(anyhow::anyhow!("unexpected {other:?} before the statement's start"))),
        }
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

fn show_fields(name: &str) -> Vec<FieldInfo> {
    vec![FieldInfo::new(name.to_string(), None, None, Type::TEXT, FieldFormat::Text)]
}

/// Read a statement without rows to its end (and its error, if any).
async fn drain(stream: &mut QueryStream) -> PgWireResult<()> {
    while stream.next().await.map_err(pg_error)?.is_some() {}
    Ok(())
}

/// The rows of one statement, encoded batch by batch as the engine sends
/// them; the query thread holds the query slot until it has finished.
fn rows(
    stream: QueryStream,
    fields: Arc<Vec<FieldInfo>>,
) -> impl futures::Stream<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + 'static {
    futures::stream::unfold(Some(stream), move |state| {
        let fields = fields.clone();
        async move {
            let mut stream = state?;
            match stream.next().await {
                Ok(Some(Event::Batch(batch))) => {
                    let encoded: Vec<_> = encode_recordbatch(fields, batch).collect();
                    Some((futures::stream::iter(encoded), Some(stream)))
                }
                Ok(Some(Event::End)) | Ok(None) => None,
                Ok(Some(Event::Start(_))) => {
                    Some((futures::stream::iter(vec![Err(pg_error(anyhow::anyhow!("a second result in one statement")))]), None))
                }
                Err(e) => Some((futures::stream::iter(vec![Err(pg_error(e))]), None)),
            }
        }
    })
    .flatten()
}

fn format_options<C: ClientInfo>(client: &C) -> Arc<FormatOptions> {
    Arc::new(FormatOptions::from_client_metadata(client.metadata()))
}

#[async_trait]
impl SimpleQueryHandler for Handler {
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
        let options = format_options(client);
        let mut out = Vec::with_capacity(statements.len());
        let last = statements.len() - 1;
        for (i, statement) in statements.into_iter().enumerate() {
            if let Some(what) = &statement.local {
                out.push(session.answer_local(what)?);
                continue;
            }
            let response = session.run(SqlSource::inline(statement.sql), statement.tag, &Format::UnifiedText, options.clone()).await;
            // A failed statement ends the text, as in PostgreSQL; earlier
            // answers are still sent. Rows of all but the last statement are
            // read now, so the next statement runs after them.
            match response {
                Ok(Response::Query(q)) if i < last => out.push(Response::Query(materialize(q).await?)),
                Ok(r) => out.push(r),
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// A response's rows read now (for all but the last statement of a text).
async fn materialize(mut q: QueryResponse) -> PgWireResult<QueryResponse> {
    let fields = q.row_schema();
    let mut rows = Vec::new();
    while let Some(row) = q.data_rows().next().await {
        rows.push(row);
    }
    Ok(QueryResponse::new(fields, futures::stream::iter(rows)))
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
        let described = self.engine()?.describe(&SqlSource::inline(statement.sql.clone())).await.map_err(pg_error)?;
        Ok(Some(Prepared::Query { sql: statement.sql, described, tag: statement.tag }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        match stmt {
            Prepared::Query { described, .. } => described
                .params
                .iter()
                .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
                .collect(),
            Prepared::Local(_) => Ok(Vec::new()),
        }
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            Prepared::Query { described: Described { schema: Some(schema), .. }, .. } if !schema.fields().is_empty() => {
                arrow_schema_to_pg_fields(schema, format.unwrap_or(&Format::UnifiedText), None)
            }
            Prepared::Local(Local::Show(name, _)) => Ok(show_fields(name)),
            _ => Ok(Vec::new()),
        }
    }
}

/// The client's parameter values, decoded by the types the plan infers
/// (or the client names), as `$1`, `$2`, ... bindings.
fn parameters(portal: &Portal<Prepared>, described: &Described) -> PgWireResult<HashMap<String, ScalarValue>> {
    let inferred: Vec<Option<&datafusion::arrow::datatypes::DataType>> = described.params.iter().map(|t| t.as_ref()).collect();
    let values = arrow_pg::datatypes::df::deserialize_parameters(portal, &inferred)?;
    Ok(match values {
        ParamValues::List(list) => list.into_iter().enumerate().map(|(i, v)| ((i + 1).to_string(), v.value)).collect(),
        ParamValues::Map(map) => map.into_iter().map(|(k, v)| (k, v.value)).collect(),
    })
}

#[async_trait]
impl ExtendedQueryHandler for Handler {
    type Statement = Prepared;
    type QueryParser = Session;

    fn query_parser(&self) -> Arc<Session> {
        self.0.clone()
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = &self.0;
        match &portal.statement.statement {
            Prepared::Local(what) => session.answer_local(what),
            Prepared::Query { sql, described, tag } => {
                let source = SqlSource { text: sql.clone(), params: parameters(portal, described)?, ..Default::default() };
                session.run(source, tag, &portal.result_column_format, format_options(client)).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        PostgresCompatibilityParser::new().parse(sql).unwrap().remove(0)
    }

    #[test]
    fn transactions_and_client_settings_are_answered_here() {
        assert!(matches!(local(&parse("BEGIN")), Some(Local::Begin)));
        assert!(matches!(local(&parse("COMMIT")), Some(Local::Commit)));
        assert!(matches!(local(&parse("ROLLBACK")), Some(Local::Rollback)));
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
        let refused = anyhow::Error::new(Refusal::example());
        assert_eq!(code(pg_error(refused)), "42501");
        assert_eq!(code(pg_error(crate::query::engine::TimedOut(std::time::Duration::from_secs(1)).into())), "57014");
        // A refusal inside DataFusion's planning, as a table function makes it.
        let inside = datafusion::error::DataFusionError::External(Box::new(Refusal::by_front_end("no")));
        assert_eq!(code(pg_error(anyhow::Error::new(inside).context("planning"))), "42501");
        assert_eq!(code(pg_error(anyhow::anyhow!("boom"))), "XX000");
    }
}
