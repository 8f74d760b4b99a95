//! Running SQL text against the live tables: split it into statements,
//! answer catalog statements, plan and execute the rest with DataFusion.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::DFParser;

use super::catalog::catalog_statement;
use crate::tables::{register_all, SourceOptions};

/// The result of one statement.
pub struct StatementResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

pub struct Engine {
    ctx: SessionContext,
}

impl Engine {
    pub fn new(options: &SourceOptions) -> anyhow::Result<Self> {
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        register_all(&ctx, options)?;
        Ok(Engine { ctx })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Run every statement of `sql` in order, reading the kernel afresh
    /// for each. Stops at the first failing statement.
    pub async fn run(&self, sql: &str) -> anyhow::Result<Vec<StatementResult>> {
        let statements = DFParser::parse_sql(sql)?;
        if statements.is_empty() {
            anyhow::bail!("no SQL statement found");
        }
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            if let Some(batch) = catalog_statement(&statement.to_string()) {
                let batch = batch?;
                results.push(StatementResult { schema: batch.schema(), batches: vec![batch] });
                continue;
            }
            let state = self.ctx.state();
            let plan = state.statement_to_plan(statement).await?;
            let df = self.ctx.execute_logical_plan(plan).await?;
            let schema: SchemaRef = df.schema().inner().clone();
            let batches = df.collect().await?;
            results.push(StatementResult { schema, batches });
        }
        Ok(results)
    }
}
