//! Running SQL text against the live tables: split it into statements,
//! answer catalog statements, plan the rest with DataFusion, check the
//! plan against the policy, bind parameters as values, execute.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Context;
use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{CreateMemoryTable, DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::Spanned;

use super::catalog::catalog_statement;
use super::deadline::Deadline;
pub use crate::policy::Policy;
use crate::statements::Statements;
use sockql_collect::notice::{Heard, Mode, Notice, Notices};
use sockql_tables::{register_all, SourceOptions};

/// The result of one statement.
pub struct StatementResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The batches' memory, reserved in the session's pool (the results of
    /// one run share it) for as long as any of them is kept.
    _held: Option<Arc<MemoryReservation>>,
}

/// SQL to run, where it came from, and its parameter values.
#[derive(Debug, Clone, Default)]
pub struct SqlSource {
    pub text: String,
    /// File (or `built-in:FILE`) the text came from; errors then name it
    /// and the line.
    pub origin: Option<String>,
    pub params: HashMap<String, ScalarValue>,
    /// What an empty answer means, for front ends to say (a saved query's
    /// `-- empty:` header).
    pub empty_note: Option<String>,
}

impl SqlSource {
    pub fn inline(text: impl Into<String>) -> Self {
        SqlSource { text: text.into(), ..Default::default() }
    }
}

/// Receives results statement by statement, batch by batch, as they are
/// computed: printing need not wait for (or hold) a whole result.
pub trait ResultSink {
    fn start(&mut self, schema: SchemaRef) -> anyhow::Result<()>;
    fn batch(&mut self, batch: &RecordBatch) -> anyhow::Result<()>;
    fn end(&mut self) -> anyhow::Result<()>;
}

/// A sink that keeps everything (watch mode, a scrape's metric queries,
/// the recorder's samples, tests). An engine's own `run` reserves what it
/// keeps in the session's pool, so --memory-limit bounds collected results
/// as it bounds sorts.
#[derive(Default)]
pub struct Collect {
    pub results: Vec<StatementResult>,
    reservation: Option<Arc<MemoryReservation>>,
}

impl Collect {
    /// A sink whose batches are reserved in `pool` first.
    pub fn reserving(pool: &Arc<dyn datafusion::execution::memory_pool::MemoryPool>) -> Self {
        Collect {
            results: Vec::new(),
            reservation: Some(Arc::new(MemoryConsumer::new("collected results").register(pool))),
        }
    }
}

impl ResultSink for Collect {
    fn start(&mut self, schema: SchemaRef) -> anyhow::Result<()> {
        self.results.push(StatementResult { schema, batches: Vec::new(), _held: self.reservation.clone() });
        Ok(())
    }
    fn batch(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        if let Some(reservation) = &self.reservation {
            reservation.try_grow(batch.get_array_memory_size())?;
        }
        match self.results.last_mut() {
            Some(r) => r.batches.push(batch.clone()),
            None => return Err(crate::err!("a batch arrived before its statement started").into()),
        }
        Ok(())
    }
    fn end(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What the REPL, watch and the one-shot runner need of an engine: keeps
/// them off a concrete DataFusion context.
#[async_trait(?Send)]
pub trait QueryRunner {
    /// Run every statement in order into `sink`.
    async fn run_into(&self, sql: &SqlSource, sink: &mut dyn ResultSink) -> crate::Result<()>;

    /// Every table the session can query, with its schema (for `\\d`,
    /// `sockql tables` and completion).
    async fn listing(&self) -> Vec<super::catalog::Listed>;

    /// Run and keep every result.
    async fn run(&self, sql: &SqlSource) -> crate::Result<Vec<StatementResult>> {
        let mut all = Collect::default();
        self.run_into(sql, &mut all).await?;
        Ok(all.results)
    }

    /// [`QueryRunner::run`], with the warnings and notes of its statements
    /// kept for the caller instead of printed (watch prints them where its
    /// redrawn screen does not hide them).
    async fn run_keeping_notices(&self, sql: &SqlSource) -> (crate::Result<Vec<StatementResult>>, Vec<Notice>) {
        (self.run(sql).await, Vec::new())
    }
}

/// Resource bounds of a session.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Bytes DataFusion operators may hold (sorts, joins, aggregates) and
    /// in-memory snapshots keep.
    pub memory: Option<usize>,
    /// Wall-clock time one run may take, from parsing its text to printing
    /// its last row.
    pub timeout: Option<std::time::Duration>,
}

/// The stack of the thread that parses, plans and runs statements.
/// DataFusion grows its own stack where planning recurses (recursive
/// protection); this covers the rest up to the bounds in
/// [`crate::statements`].
const QUERY_STACK: usize = 64 << 20;

/// A session: one DataFusion context with sockql's tables, policy and
/// limits. Clones share the session (the query thread holds one).
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    policy: Policy,
    limits: Limits,
    /// Memory each in-memory snapshot holds, reserved in the pool that
    /// --memory-limit bounds and released by DROP TABLE.
    snapshots: Arc<Mutex<HashMap<String, MemoryReservation>>>,
    /// Each run on a tokio runtime of its own, at this nice value (see
    /// [`Engine::isolated`]); None: on the caller's runtime.
    isolated: Option<i32>,
    /// Where its statements' warnings and notes go (a `Keep` list is made
    /// for each run: see [`QueryStream::take_notices`]).
    notices: Mode,
    /// What its tables were made with, streams included (its own: ending
    /// them ends no other session's).
    source: SourceOptions,
}

/// What the query thread sends to the caller, which prints.
#[derive(Debug)]
pub enum Event {
    /// A statement with rows begins.
    Start(SchemaRef),
    Batch(RecordBatch),
    /// That statement's rows are done.
    End,
}

type Events = tokio::sync::mpsc::Sender<Event>;

/// The caller stopped listening (timeout, Ctrl-C, closed output): the
/// query thread stops at its next result ([`crate::Error::Cancelled`]).
/// A caller that holds the stream but stops reading it (a client whose
/// connection stays open, its window full) is waited for only until the
/// deadline: then the thread returns and frees the front end's slot.
async fn send(tx: &Events, deadline: &Deadline, e: Event) -> crate::Result<()> {
    tokio::select! {
        sent = tx.send(e) => sent.map_err(|_| crate::Error::Cancelled),
        _ = deadline.passed() => Err(deadline.timed_out()),
    }
}

/// The next batch of `stream`, or [`crate::Error::Cancelled`] as soon as the caller
/// stops listening (timeout, Ctrl-C, a closed client). An aggregate sends
/// nothing until it is done: waiting only on sends would let it run on,
/// unheard, to the end. Dropping the stream stops DataFusion's tasks.
/// Past the deadline the wait ends too (an operator that computes without
/// calling a scalar function never checks it itself).
async fn next_batch(
    stream: &mut datafusion::physical_plan::SendableRecordBatchStream,
    tx: &Events,
    deadline: &Deadline,
) -> crate::Result<Option<RecordBatch>> {
    use futures::StreamExt;
    tokio::select! {
        next = stream.next() => Ok(next.transpose()?),
        _ = tx.closed() => Err(crate::Error::Cancelled),
        _ = deadline.passed() => Err(deadline.timed_out()),
    }
}

/// Did `e` come from the memory pool refusing (--memory-limit)?
pub fn memory_exhausted(e: &crate::Error) -> bool {
    e.memory_exhausted()
}

fn exhausted_hint(e: crate::Error) -> crate::Error {
    if e.memory_exhausted() {
        e.context("the query needs more memory than --memory-limit allows")
    } else {
        e
    }
}

impl Engine {
    pub fn new(options: &SourceOptions) -> crate::Result<Self> {
        Self::with(options, Policy::default(), Limits::default())
    }

    pub fn with(options: &SourceOptions, policy: Policy, limits: Limits) -> crate::Result<Self> {
        // Times carry their zone, UTC (query/time_zone.rs).
        let config = super::time_zone::configure(SessionConfig::new().with_information_schema(true));
        // Never spill: during an incident sockql must not fill a disk with
        // temporary files (and SET cannot turn it back on: see policy).
        let mut runtime = RuntimeEnvBuilder::new()
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled));
        if let Some(bytes) = limits.memory {
            runtime = runtime.with_memory_limit(bytes, 1.0);
        }
        // Streams' rows as they come (query/stream_plan.rs).
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.build_arc()?)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(super::stream_plan::StreamsUnsplit))
            .build();
        let ctx = SessionContext::new_with_state(state);
        // Streams belong to the session: a Ctrl-C (or a client's end) asks
        // this session's streams to end, never another's.
        let options = SourceOptions { streams: Arc::default(), ..options.clone() };
        register_all(&ctx, &options)?;
        super::time_zone::register(&ctx);
        ctx.register_udtf("report", Arc::new(super::report_fn::ReportFunction { policy }));
        // Scalar functions allocate outside the pool: hold their results
        // to it (query/budget.rs says why this and not a process limit).
        super::budget::budget_functions(&ctx);
        super::budget::return_large_allocations();
        Ok(Engine {
            ctx,
            policy,
            limits,
            snapshots: Default::default(),
            isolated: None,
            notices: Mode::default(),
            source: options,
        })
    }

    /// This session's streams: [`Streams::end_running`](sockql_tables::streams::Streams::end_running)
    /// ends the ones running now (the first Ctrl-C).
    pub fn streams(&self) -> &Arc<sockql_tables::streams::Streams> {
        &self.source.streams
    }

    /// What this session's tables read with (its own streams included).
    pub fn source(&self) -> &SourceOptions {
        &self.source
    }

    /// This session, its statements' warnings and notes sent as `mode`
    /// says (`Keep`: each run keeps its own, for [`QueryStream::take_notices`]).
    pub fn with_notices(&self, mode: Mode) -> Engine {
        Engine { notices: mode, ..self.clone() }
    }

    /// Run every statement's work (DataFusion's partition tasks, the
    /// tables' producers) on a runtime of the query thread's own instead
    /// of the caller's. A server sets this: a query busy in a function
    /// call holds a tokio worker until its next chunk, and on the shared
    /// runtime two such calls hold every worker, so no other client, not
    /// root's psql nor a scrape, would be answered until they end. On
    /// runtimes of their own, queries are threads the kernel shares the
    /// CPU between; `nice` (0 for root and scrapes, higher for other
    /// users' sessions) tells the kernel whose threads go first.
    pub fn isolated(mut self, nice: i32) -> Self {
        self.isolated = Some(nice);
        self
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Hold `reservation` as long as the session (rows kept in memory).
    pub(crate) fn keep_reservation(&self, name: String, reservation: MemoryReservation) {
        if let Ok(mut kept) = self.snapshots.lock() {
            kept.insert(name, reservation);
        }
    }

    /// `CREATE TABLE name AS ...`: the rows are kept in memory, each batch
    /// reserved in the session's pool first, so --memory-limit bounds
    /// snapshots as it bounds sorts.
    async fn create_snapshot(&self, cmd: CreateMemoryTable, tx: &Events, deadline: &Deadline) -> crate::Result<()> {
        let CreateMemoryTable { name, input, if_not_exists, or_replace, constraints, column_defaults, temporary } = cmd;
        if temporary {
            crate::bail!("temporary tables are not supported: every snapshot lasts the session");
        }
        let exists = self.ctx.table_exist(name.clone())?;
        match (if_not_exists, or_replace, exists) {
            (true, true, _) => crate::bail!("'IF NOT EXISTS' cannot coexist with 'OR REPLACE'"),
            (true, false, true) => return Ok(()),
            (false, false, true) => crate::bail!("table '{name}' already exists"),
            _ => {}
        }
        let df = self.execute(Arc::unwrap_or_clone(input), deadline).await?;
        let schema: SchemaRef = df.schema().inner().clone();
        let reservation = MemoryConsumer::new(format!("snapshot {name}")).register(&self.ctx.runtime_env().memory_pool);
        let mut stream = df.execute_stream().await?;
        let mut batches = Vec::new();
        while let Some(batch) = next_batch(&mut stream, tx, deadline).await? {
            reservation.try_grow(batch.get_array_memory_size())?;
            batches.push(batch);
        }
        let table = MemTable::try_new(schema, vec![batches])?
            .with_constraints(constraints)
            .with_column_defaults(column_defaults.into_iter().collect());
        if exists {
            self.ctx.deregister_table(name.clone())?;
        }
        self.ctx.register_table(name.clone(), Arc::new(table))?;
        self.snapshots
            .lock()
            .map_err(|_| crate::err!("snapshot registry poisoned"))?
            .insert(name.to_string(), reservation);
        Ok(())
    }

    /// One statement made ready to run: a catalog statement answered from
    /// the session, anything else planned and checked against the policy.
    /// Running and describing both go through here, so what a client may
    /// prepare is what it may run.
    async fn checked(&self, statement: Statement) -> crate::Result<Checked> {
        if let Some(request) = catalog_statement(&statement) {
            return Ok(Checked::Answer(super::catalog::answer(&request, &super::catalog::listing(&self.ctx).await)?));
        }
        let plan = self.ctx.state().statement_to_plan(statement).await.map_err(|e| suggest_table(e.into()))?;
        crate::policy::check(&plan, self.policy)?;
        Ok(Checked::Plan(super::time_zone::keep_zone(plan)))
    }

    /// `plan` ready to stream. A query gets a state of its own that carries
    /// the run's deadline in its config, so every scalar function
    /// DataFusion evaluates for it, while optimizing (constant folding) and
    /// executing, on any thread, stops when the run must (query/deadline.rs).
    /// Catalog changes and settings go to the session itself.
    async fn execute(&self, plan: LogicalPlan, deadline: &Deadline) -> crate::Result<datafusion::dataframe::DataFrame> {
        if matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_)) {
            return Ok(self.ctx.execute_logical_plan(plan).await?);
        }
        let mut state = self.ctx.state();
        state.config_mut().options_mut().extensions.insert(deadline.clone());
        state.mark_start_execution();
        Ok(datafusion::dataframe::DataFrame::new(state, plan))
    }

    /// Plan, check and run one statement, sending its result as it streams.
    async fn run_statement(
        &self,
        statement: Statement,
        params: &HashMap<String, ScalarValue>,
        tx: &Events,
        deadline: &Deadline,
    ) -> crate::Result<()> {
        let mut plan = match self.checked(statement).await? {
            Checked::Answer(batch) => {
                send(tx, deadline, Event::Start(batch.schema())).await?;
                send(tx, deadline, Event::Batch(batch)).await?;
                return send(tx, deadline, Event::End).await;
            }
            Checked::Plan(plan) => plan,
        };
        if !params.is_empty() {
            plan = plan.with_param_values(params.clone())?;
        }
        let dropped = match &plan {
            LogicalPlan::Ddl(DdlStatement::DropTable(d)) => Some(d.name.to_string()),
            _ => None,
        };
        let df = match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmd)) => {
                self.create_snapshot(cmd, tx, deadline).await?;
                return Ok(());
            }
            plan => self.execute(plan, deadline).await?,
        };
        if let (Some(name), Ok(mut snapshots)) = (dropped, self.snapshots.lock()) {
            snapshots.remove(&name);
        }
        let schema: SchemaRef = df.schema().inner().clone();
        let mut stream = df.execute_stream().await?;
        send(tx, deadline, Event::Start(schema)).await?;
        while let Some(batch) = next_batch(&mut stream, tx, deadline).await? {
            send(tx, deadline, Event::Batch(batch)).await?;
        }
        send(tx, deadline, Event::End).await
    }

    /// Parse and run every statement of `sql` in order, one at a time;
    /// stops at the first failing statement. Runs on the query thread.
    async fn produce(&self, sql: &SqlSource, tx: &Events, deadline: &Deadline, notices: &Mode) -> crate::Result<()> {
        let at = |line: Option<usize>, e: crate::Error| match (&sql.origin, line) {
            (Some(origin), Some(line)) => e.context(format!("{origin}:{line}")),
            (Some(origin), None) => e.context(origin.clone()),
            _ => e,
        };
        // A parse error names its line in its text.
        let parse_error = |e: crate::statements::StatementError| {
            let line = parser_error_line(&e.to_string());
            at(line, e.into())
        };
        let mut statements = Statements::new(&sql.text).map_err(parse_error)?;
        let mut ran = 0;
        while let Some(statement) = statements.next_statement() {
            let statement = statement.map_err(parse_error)?;
            let line = statement_line(&statement);
            // Each statement says its warnings again; planning reports on
            // this thread, and each scan takes them to its reader.
            let _said_here = Notices::new(notices.clone()).enter();
            self.run_statement(statement, &sql.params, tx, deadline).await.map_err(|e| at(line, exhausted_hint(e)))?;
            ran += 1;
        }
        if ran == 0 {
            return Err(at(None, crate::err!("no SQL statement found")));
        }
        Ok(())
    }
}

#[async_trait(?Send)]
impl QueryRunner for Engine {
    async fn listing(&self) -> Vec<super::catalog::Listed> {
        super::catalog::listing(&self.ctx).await
    }

    /// Run and keep every result, reserved in the session's pool while it
    /// is kept: a collected result counts against --memory-limit.
    async fn run(&self, sql: &SqlSource) -> crate::Result<Vec<StatementResult>> {
        let mut all = Collect::reserving(&self.ctx.runtime_env().memory_pool);
        self.run_into(sql, &mut all).await.map_err(exhausted_hint)?;
        Ok(all.results)
    }

    /// Parse, plan and run on a thread of its own with a large stack, and
    /// print here as results arrive (see [`Engine::stream`]).
    async fn run_into(&self, sql: &SqlSource, sink: &mut dyn ResultSink) -> crate::Result<()> {
        let mut stream = self.stream(sql)?;
        while let Some(event) = stream.next().await? {
            match event {
                Event::Start(schema) => sink.start(schema)?,
                Event::Batch(batch) => sink.batch(&batch)?,
                Event::End => sink.end()?,
            }
        }
        Ok(())
    }

    async fn run_keeping_notices(&self, sql: &SqlSource) -> (crate::Result<Vec<StatementResult>>, Vec<Notice>) {
        let mut all = Collect::reserving(&self.ctx.runtime_env().memory_pool);
        let mut stream = match self.with_notices(Mode::Keep(Default::default())).stream(sql) {
            Ok(s) => s,
            Err(e) => return (Err(e), Vec::new()),
        };
        let result = async {
            while let Some(event) = stream.next().await? {
                match event {
                    Event::Start(schema) => all.start(schema)?,
                    Event::Batch(batch) => all.batch(&batch)?,
                    Event::End => all.end()?,
                }
            }
            Ok::<_, crate::Error>(())
        }
        .await;
        let notices = stream.take_notices();
        (result.map(|()| all.results).map_err(exhausted_hint), notices)
    }
}

/// Run `work` on a thread of its own with the query stack, inside the
/// caller's runtime, or, `isolated` (a nice value), inside a runtime that
/// is the run's alone while it runs: kept for the next run at that nice
/// value if the run leaves nothing alive on it (query_runtimes.rs), ended
/// otherwise (see [`Engine::isolated`]).
fn query_thread<T: Send + 'static>(
    isolated: Option<i32>,
    work: impl FnOnce(&tokio::runtime::Handle) -> T + Send + 'static,
) -> crate::Result<std::thread::JoinHandle<T>> {
    let shared = tokio::runtime::Handle::current();
    let own = isolated.map(super::query_runtimes::take).transpose()?;
    std::thread::Builder::new()
        .name("sockql-query".into())
        .stack_size(QUERY_STACK)
        .spawn(move || match own {
            // Given back when `runtime` drops, not waited for: the run's
            // answer must not wait on a reader's last syscall.
            Some(runtime) => {
                super::priority::nice_this_thread(runtime.nice());
                work(runtime.handle())
            }
            None => work(&shared),
        })
        .context("cannot start the query thread")
}

/// Run `work` on a query thread (its large stack) and wait for it without
/// blocking the runtime: for front ends' own parsing of client text.
/// The work's own error type passes through; the thread's failures come as
/// [`crate::Error`].
pub async fn on_query_stack<T: Send + 'static, E: From<crate::Error> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    join(query_thread(None, move |_| work())?).await
}

/// Wait for a query thread without blocking the runtime.
async fn join<T: Send + 'static, E: From<crate::Error> + Send + 'static>(
    worker: std::thread::JoinHandle<Result<T, E>>,
) -> Result<T, E> {
    match tokio::task::spawn_blocking(move || worker.join()).await {
        Ok(Ok(result)) => result,
        _ => Err(crate::err!("the query thread failed").into()),
    }
}

/// A run stopped by --timeout.
#[derive(Debug, thiserror::Error)]
#[error("query timed out after {} (--timeout)", humantime::format_duration(*.0))]
pub struct TimedOut(pub std::time::Duration);

pub(crate) fn timed_out(t: std::time::Duration) -> crate::Error {
    crate::Error::TimedOut(TimedOut(t))
}

/// The results of one run as they are computed, statement by statement.
/// It is `Send`, so any front end (the shell, the PostgreSQL server) can
/// hold it across awaits. --timeout covers the whole run, from parsing to
/// the last [`QueryStream::next`]; dropping the stream (Ctrl-C, a closed
/// client) makes the query thread stop at its next result (a statement
/// stuck in planning finishes planning first, then stops; nothing it
/// produces is delivered).
pub struct QueryStream {
    rx: tokio::sync::mpsc::Receiver<Event>,
    worker: Option<std::thread::JoinHandle<crate::Result<()>>>,
    deadline: Option<(tokio::time::Instant, std::time::Duration)>,
    /// The run's own deadline, which its scalar functions check: stopped
    /// when the stream is dropped, so work no one waits for ends.
    stop: Deadline,
    /// The run's warnings and notes, when its engine keeps them.
    kept: Heard,
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

impl QueryStream {
    /// The next event; `None` once every statement has run. A failed
    /// statement is the error of the call after its last event.
    pub async fn next(&mut self) -> crate::Result<Option<Event>> {
        let received = match self.deadline {
            None => self.rx.recv().await,
            // Past the deadline, the run is over even if rows are waiting:
            // timeout_at polls the receive first, so a run whose batches
            // are always ready would never see its deadline pass.
            Some((at, t)) if tokio::time::Instant::now() >= at => return Err(timed_out(t)),
            Some((at, t)) => tokio::time::timeout_at(at, self.rx.recv()).await.map_err(|_| timed_out(t))?,
        };
        if let Some(event) = received {
            return Ok(Some(event));
        }
        // The channel closed: the thread has returned or is returning. A
        // function that stopped at the deadline says so in its error: it is
        // the timeout, whatever statement or thread it came through.
        match self.worker.take() {
            Some(worker) => join(worker).await.map(|()| None).map_err(|e| match self.deadline {
                Some((_, t)) if e.find::<TimedOut>().is_some() => timed_out(t),
                _ => e,
            }),
            None => Ok(None),
        }
    }

    /// When --timeout ends this run, and the timeout itself (None without
    /// --timeout): a front end that sends rows bounds its sending by it.
    pub fn deadline(&self) -> Option<(tokio::time::Instant, std::time::Duration)> {
        self.deadline
    }

    /// The warnings and notes its statements said since the last call, in
    /// order (none unless the engine keeps them: [`Mode::Keep`]). Once
    /// [`QueryStream::next`] has given a statement's `End` (or its error),
    /// that statement's are all here.
    pub fn take_notices(&self) -> Vec<Notice> {
        self.kept.take()
    }

    /// Where [`QueryStream::take_notices`] takes them from, to take them
    /// after the stream is gone (its statement failed, or its rows were
    /// handed on).
    pub fn heard(&self) -> Heard {
        self.kept.clone()
    }
}

/// A statement ready to run (see `Engine::checked`).
enum Checked {
    /// A catalog statement (SHOW TABLES, DESCRIBE), answered already.
    Answer(RecordBatch),
    Plan(LogicalPlan),
}

/// Does running `plan` give rows? Not for catalog changes, settings,
/// writes and COPY.
pub fn has_rows(plan: &LogicalPlan) -> bool {
    !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_))
}

/// What a statement takes and gives, known before it runs (a client's
/// prepared statement asks for this).
#[derive(Debug, Clone)]
pub struct Described {
    /// `$1`, `$2`, ...: the type DataFusion infers for each (None: any).
    pub params: Vec<Option<datafusion::arrow::datatypes::DataType>>,
    /// The rows' schema; None for a statement without rows (CREATE TABLE
    /// AS, SET, DROP).
    pub schema: Option<SchemaRef>,
}

impl Engine {
    /// Start running every statement of `sql` on the query thread; the
    /// stream delivers their results.
    pub fn stream(&self, sql: &SqlSource) -> crate::Result<QueryStream> {
        self.stream_holding(sql, ())
    }

    /// [`Engine::stream`], with `guard` (a front end's query slot: a
    /// semaphore permit) owned by the query thread and dropped only when
    /// that thread has finished. A timeout or a dropped stream ends the
    /// wait at once, but a statement still being planned goes on until its
    /// plan is made; the slot stays taken until then, so a front end never
    /// counts work that is still running as free.
    pub fn stream_holding(&self, sql: &SqlSource, guard: impl Send + 'static) -> crate::Result<QueryStream> {
        let stop = Deadline::new(self.limits.timeout);
        let deadline = stop.at().map(|(at, t)| (tokio::time::Instant::from_std(at), t));
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let (engine, source, run) = (self.clone(), sql.clone(), stop.clone());
        let kept = Heard::default();
        let notices = match &self.notices {
            Mode::Keep(_) => Mode::Keep(kept.clone()),
            other => other.clone(),
        };
        let worker = query_thread(self.isolated, move |handle| {
            let _held = guard;
            handle.block_on(engine.produce(&source, &tx, &run, &notices))
        })?;
        Ok(QueryStream { rx, worker: Some(worker), deadline, stop, kept })
    }

    /// Plan the single statement in `sql` and check it against the policy,
    /// without running it: its parameters and the schema of its rows.
    /// Bounded by --timeout like a run. `guard` (a front end's query slot)
    /// is held by the planning thread until it has finished (see
    /// [`Engine::stream_holding`]).
    pub async fn describe_holding(&self, sql: &SqlSource, guard: impl Send + 'static) -> crate::Result<Described> {
        let (engine, text) = (self.clone(), sql.text.clone());
        let worker = query_thread(self.isolated, move |handle| {
            let _held = guard;
            // What planning says is said again when the statement runs,
            // and belongs to that run: here it is dropped.
            let _unheard = Notices::new(Mode::Keep(Default::default())).enter();
            handle.block_on(engine.plan_only(&text))
        })?;
        match self.limits.timeout {
            None => join(worker).await,
            Some(t) => tokio::time::timeout(t, join(worker)).await.map_err(|_| timed_out(t))?,
        }
    }

    async fn plan_only(&self, text: &str) -> crate::Result<Described> {
        let mut statements = Statements::new(text)?;
        let statement = statements.next_statement().context("no SQL statement found")??;
        if statements.next_statement().is_some() {
            crate::bail!("a prepared statement holds one SQL statement");
        }
        let plan = match self.checked(statement).await? {
            Checked::Answer(batch) => return Ok(Described { params: Vec::new(), schema: Some(batch.schema()) }),
            Checked::Plan(plan) => plan,
        };
        let types = plan.get_parameter_types()?;
        // $1..$n by number; a gap (only $2 used) is a parameter of any type.
        let count = types.keys().filter_map(|k| k.strip_prefix('$')?.parse::<usize>().ok()).max().unwrap_or(0);
        let params = (1..=count).map(|i| types.get(&format!("${i}")).cloned().flatten()).collect();
        let schema = has_rows(&plan).then(|| plan.schema().inner().clone());
        Ok(Described { params, schema })
    }
}

/// "table 'x' not found": add the nearest table name.
fn suggest_table(e: crate::Error) -> crate::Error {
    let text = e.to_string();
    let Some(rest) = text.split("table '").nth(1) else { return e };
    let Some(name) = rest.split('\'').next().filter(|_| text.contains("not found")) else { return e };
    if name.contains("history.") {
        return e
            .context(format!("no table named '{name}': history tables come from --history DIR (see sockql record)"));
    }
    let wanted = name.rsplit('.').next().unwrap_or(name);
    let best = sockql_tables::catalog()
        .into_iter()
        .map(|t| (datafusion::common::utils::datafusion_strsim::normalized_levenshtein(wanted, t.name), t.name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, table)) if score >= 0.5 => {
            e.context(format!("no table named '{wanted}'; did you mean '{table}'?"))
        }
        _ => {
            let names: Vec<&str> = sockql_tables::catalog().iter().map(|t| t.name).collect();
            e.context(format!("no table named '{wanted}'; tables are: {}", names.join(", ")))
        }
    }
}

/// `Line: N` out of a sqlparser error message.
fn parser_error_line(message: &str) -> Option<usize> {
    let rest = &message[message.find("Line: ")? + 6..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn statement_line(s: &Statement) -> Option<usize> {
    match s {
        Statement::Statement(inner) => Some(inner.span().start.line as usize).filter(|&l| l > 0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockql_tables::SourceOptions;

    /// A front end's slot given to the query thread is free again only
    /// when that thread has finished, not when the stream is dropped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_query_thread_owns_the_slot() {
        let engine = Engine::new(&SourceOptions::default()).unwrap();
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        // Planning this takes a few hundred milliseconds (the most
        // operators statements.rs lets through), and cannot be interrupted.
        let sql =
            format!("SELECT value{} FROM range(1)", " + value".repeat(crate::statement_size::MAX_PLANNED_OPERATORS));
        let permit = slots.clone().acquire_owned().await.unwrap();
        let stream = engine.stream_holding(&SqlSource::inline(sql), permit).unwrap();
        drop(stream);
        assert_eq!(slots.available_permits(), 0, "the slot was freed while the statement was still being planned");
        let start = std::time::Instant::now();
        while slots.available_permits() == 0 {
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "the query thread never gave the slot back");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// What `run` collects counts against --memory-limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn collected_results_are_held_to_the_limit() {
        let limits = Limits { memory: Some(8 << 20), timeout: None };
        let engine = Engine::with(&SourceOptions::default(), Policy::default(), limits).unwrap();
        // 4,000,000 rows of one 8-byte number: 32 MB kept, in batches of
        // 64 KB that nothing else reserves. A computed column would put a
        // RepartitionExec in the plan, whose buffer (reserved too) grows
        // while the collector lags on a loaded machine and was sometimes
        // the one refused ("SpillPool"): a plain column keeps one consumer.
        let e = engine
            .run(&SqlSource::inline("SELECT value FROM range(4000000)"))
            .await
            .err()
            .expect("collected past the limit");
        assert!(memory_exhausted(&e), "{e:#}");
        assert!(format!("{e:#}").contains("collected results"), "{e:#}");
        // Within the limit it is kept, and given back when dropped.
        let kept = engine.run(&SqlSource::inline("SELECT value FROM range(100000)")).await.unwrap();
        assert_eq!(kept[0].batches.iter().map(|b| b.num_rows()).sum::<usize>(), 100_000);
        assert!(engine.context().runtime_env().memory_pool.reserved() >= 800_000);
        drop(kept);
        assert_eq!(engine.context().runtime_env().memory_pool.reserved(), 0);
    }

    /// A reader slower than the query keeps batches always waiting: the
    /// run still ends at its deadline (timeout_at alone polled the waiting
    /// batch first, and never saw the deadline pass).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_whose_rows_are_always_ready_ends_at_its_deadline() {
        let timeout = std::time::Duration::from_millis(500);
        let limits = Limits { memory: None, timeout: Some(timeout) };
        let engine = Engine::with(&SourceOptions::default(), Policy::default(), limits).unwrap();
        let mut stream = engine.stream(&SqlSource::inline("SELECT value FROM range(1000000000)")).unwrap();
        let start = std::time::Instant::now();
        let ended = loop {
            match stream.next().await {
                Ok(Some(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
                other => break other,
            }
            assert!(
                start.elapsed() < timeout * 6,
                "still reading rows {:?} after a {timeout:?} timeout",
                start.elapsed()
            );
        };
        let Err(e) = ended else { panic!("the run ended without its timeout") };
        assert!(matches!(e, crate::Error::TimedOut(_)), "{e:#}");
    }

    /// A front end that keeps the stream but stops reading it (a Flight
    /// client whose HTTP/2 window is full: the response body holding the
    /// stream is never polled again) does not keep the query thread, or
    /// the slot it holds, past the deadline.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_kept_but_not_read_frees_its_slot_at_the_deadline() {
        let timeout = std::time::Duration::from_millis(500);
        let limits = Limits { memory: None, timeout: Some(timeout) };
        let engine = Engine::with(&SourceOptions::default(), Policy::default(), limits).unwrap();
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = slots.clone().acquire_owned().await.unwrap();
        let start = std::time::Instant::now();
        let mut stream =
            engine.stream_holding(&SqlSource::inline("SELECT value FROM range(1000000000)"), permit).unwrap();
        assert!(matches!(stream.next().await, Ok(Some(Event::Start(_)))));
        while slots.available_permits() == 0 {
            assert!(
                start.elapsed() < timeout * 10,
                "the slot was still held {:?} into a {timeout:?} timeout, the stream unread",
                start.elapsed()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(start.elapsed() >= timeout, "freed before the deadline: {:?}", start.elapsed());
        // The stream, read again, says why it ended.
        let ended = loop {
            match stream.next().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert!(matches!(ended, Err(crate::Error::TimedOut(_))), "{ended:?}");
    }

    #[test]
    fn finds_parser_error_lines() {
        assert_eq!(parser_error_line("Expected: x, found: y at Line: 12, Column: 3"), Some(12));
        assert_eq!(parser_error_line("no position"), None);
    }
}
