//! Running SQL text against the live tables: split it into statements,
//! answer catalog statements, plan the rest with DataFusion, bind
//! parameters as values, execute.

use std::collections::HashMap;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Spanned;

use super::catalog::catalog_statement;
use crate::tables::{register_all, SourceOptions};

/// The result of one statement.
pub struct StatementResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// SQL to run, where it came from, and its parameter values.
#[derive(Debug, Clone, Default)]
pub struct SqlSource {
    pub text: String,
    /// File (or `built-in:FILE`) the text came from; errors then name it
    /// and the line.
    pub origin: Option<String>,
    pub params: HashMap<String, ScalarValue>,
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

/// A sink that keeps everything (watch mode, tests).
#[derive(Default)]
pub struct Collect {
    pub results: Vec<StatementResult>,
}

impl ResultSink for Collect {
    fn start(&mut self, schema: SchemaRef) -> anyhow::Result<()> {
        self.results.push(StatementResult { schema, batches: Vec::new() });
        Ok(())
    }
    fn batch(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match self.results.last_mut() {
            Some(r) => r.batches.push(batch.clone()),
            None => anyhow::bail!("a batch arrived before its statement started"),
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
    async fn run_into(&self, sql: &SqlSource, sink: &mut dyn ResultSink) -> anyhow::Result<()>;

    /// Run and keep every result.
    async fn run(&self, sql: &SqlSource) -> anyhow::Result<Vec<StatementResult>> {
        let mut all = Collect::default();
        self.run_into(sql, &mut all).await?;
        Ok(all.results)
    }
}

/// What statements may do beyond reading the live tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// COPY TO, CREATE EXTERNAL TABLE and INSERT touch files; allowed only
    /// with --allow-files.
    pub allow_files: bool,
}

/// Resource bounds of a session.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Bytes DataFusion operators may hold (sorts, joins, aggregates).
    pub memory: Option<usize>,
    /// Wall-clock time a statement may take.
    pub timeout: Option<std::time::Duration>,
}

pub struct Engine {
    ctx: SessionContext,
    policy: Policy,
    limits: Limits,
}

/// Refuse what the read-only default does not allow, with the reason.
fn check_policy(plan: &LogicalPlan, policy: Policy) -> anyhow::Result<()> {
    if policy.allow_files {
        return Ok(());
    }
    let what = match plan {
        LogicalPlan::Copy(_) => "COPY ... TO writes files",
        LogicalPlan::Dml(_) => "INSERT/UPDATE/DELETE change tables",
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_)) => "CREATE EXTERNAL TABLE reads arbitrary files",
        _ => return Ok(()),
    };
    anyhow::bail!(
        "refused: {what}; sockql is read-only unless started with --allow-files \
         (CREATE TABLE name AS SELECT ... keeps a snapshot in memory without it)"
    )
}

/// "table 'x' not found": add the nearest table name.
fn suggest_table(e: anyhow::Error) -> anyhow::Error {
    let text = e.to_string();
    let Some(rest) = text.split("table '").nth(1) else { return e };
    let Some(name) = rest.split('\'').next().filter(|_| text.contains("not found")) else { return e };
    if name.contains("history.") {
        return e.context(format!("no table named '{name}': history tables come from --history DIR (see sockql record)"));
    }
    let wanted = name.rsplit('.').next().unwrap_or(name);
    let best = crate::tables::catalog()
        .into_iter()
        .map(|t| (datafusion::common::utils::datafusion_strsim::normalized_levenshtein(wanted, t.name), t.name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, table)) if score >= 0.5 => e.context(format!("no table named '{wanted}'; did you mean '{table}'?")),
        _ => {
            let names: Vec<&str> = crate::tables::catalog().iter().map(|t| t.name).collect();
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

impl Engine {
    pub fn new(options: &SourceOptions) -> anyhow::Result<Self> {
        Self::with(options, Policy::default(), Limits::default())
    }

    pub fn with(options: &SourceOptions, policy: Policy, limits: Limits) -> anyhow::Result<Self> {
        let config = SessionConfig::new().with_information_schema(true);
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = limits.memory {
            // No spilling either: during an incident, sockql must not fill
            // the disk with temporary files; over the limit is an error.
            runtime = runtime
                .with_memory_limit(bytes, 1.0)
                .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled));
        }
        let ctx = SessionContext::new_with_config_rt(config, runtime.build_arc()?);
        register_all(&ctx, options)?;
        Ok(Engine { ctx, policy, limits })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    async fn run_statement(
        &self,
        statement: Statement,
        params: &HashMap<String, ScalarValue>,
        sink: &mut dyn ResultSink,
    ) -> anyhow::Result<()> {
        use futures::StreamExt;
        if let Some(batch) = catalog_statement(&statement.to_string()) {
            let batch = batch?;
            sink.start(batch.schema())?;
            sink.batch(&batch)?;
            return sink.end();
        }
        let state = self.ctx.state();
        let mut plan = state.statement_to_plan(statement).await.map_err(|e| suggest_table(e.into()))?;
        check_policy(&plan, self.policy)?;
        if !params.is_empty() {
            plan = plan.with_param_values(params.clone())?;
        }
        let work = async {
            let df = self.ctx.execute_logical_plan(plan).await?;
            let schema: SchemaRef = df.schema().inner().clone();
            let mut stream = df.execute_stream().await?;
            sink.start(schema)?;
            while let Some(batch) = stream.next().await {
                sink.batch(&batch?)?;
            }
            sink.end()
        };
        let work = async {
            work.await.map_err(|e| {
                let exhausted = e
                    .chain()
                    .filter_map(|c| c.downcast_ref::<DataFusionError>())
                    .any(|d| matches!(d.find_root(), DataFusionError::ResourcesExhausted(_)));
                if exhausted {
                    e.context("the query needs more memory than --memory-limit allows")
                } else {
                    e
                }
            })
        };
        match self.limits.timeout {
            None => work.await,
            Some(t) => tokio::time::timeout(t, work)
                .await
                .map_err(|_| anyhow::anyhow!("query timed out after {} (--timeout)", humantime::format_duration(t)))?,
        }
    }
}

#[async_trait(?Send)]
impl QueryRunner for Engine {
    /// Run every statement in order, reading the kernel afresh for each.
    /// Stops at the first failing statement.
    async fn run_into(&self, sql: &SqlSource, sink: &mut dyn ResultSink) -> anyhow::Result<()> {
        let at = |line: Option<usize>, e: anyhow::Error| match (&sql.origin, line) {
            (Some(origin), Some(line)) => e.context(format!("{origin}:{line}")),
            (Some(origin), None) => e.context(origin.clone()),
            _ => e,
        };
        let statements = match DFParser::parse_sql(&sql.text) {
            Ok(s) => s,
            Err(e) => {
                let line = parser_error_line(&e.to_string());
                return Err(at(line, e.into()));
            }
        };
        if statements.is_empty() {
            return Err(at(None, anyhow::anyhow!("no SQL statement found")));
        }
        for statement in statements {
            let line = statement_line(&statement);
            self.run_statement(statement, &sql.params, sink).await.map_err(|e| at(line, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parser_error_lines() {
        assert_eq!(parser_error_line("Expected: x, found: y at Line: 12, Column: 3"), Some(12));
        assert_eq!(parser_error_line("no position"), None);
    }
}
