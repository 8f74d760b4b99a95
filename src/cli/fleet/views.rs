//! Each sockql table, fleet-wide, with a `host` column first: the union of
//! the fleet's two groups of hosts (fan_out.rs), each a datafusion-
//! federation SQL table whose `host` column each host answers with its
//! own name (host_sql.rs). It is a view, planned when a query first names
//! it; its plan is the same size whatever the number of hosts.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Column, Result, TableReference};
use datafusion::datasource::{provider_as_source, TableType};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_federation::sql::{RemoteTableRef, SQLFederationProvider, SQLTableSource};
use datafusion_federation::FederatedTableProviderAdaptor;

/// The fleet's groups of hosts, each the federation provider of its
/// executor.
pub type Groups = Arc<Vec<Arc<SQLFederationProvider>>>;

#[derive(Debug)]
pub struct FleetView {
    /// The name the view's scans go by.
    table: String,
    /// What each host is asked for: the table, or a table function call
    /// (`report('health')`).
    remote_ref: RemoteTableRef,
    /// `host`, then the table's columns on every host (sockql's own
    /// catalog: the hosts run the same binary).
    schema: SchemaRef,
    groups: Groups,
    plan: OnceLock<LogicalPlan>,
}

impl FleetView {
    pub fn new(table: &str, remote: SchemaRef, groups: Groups) -> Self {
        Self::of(table, RemoteTableRef::from(TableReference::bare(table)), remote, groups)
    }

    /// Each host's `remote_ref` (a table function call) as `table`.
    pub fn of(table: &str, remote_ref: RemoteTableRef, remote: SchemaRef, groups: Groups) -> Self {
        let mut fields = vec![Arc::new(Field::new("host", DataType::Utf8, false))];
        fields.extend(remote.fields().iter().cloned());
        let schema = Arc::new(Schema::new(fields));
        FleetView { table: table.to_string(), remote_ref, schema, groups, plan: OnceLock::new() }
    }

    fn build(&self) -> Result<LogicalPlan> {
        let name = TableReference::bare(self.table.as_str());
        let mut union: Option<LogicalPlanBuilder> = None;
        for provider in self.groups.iter() {
            let source =
                SQLTableSource::new_with_schema(provider.clone(), self.remote_ref.clone(), self.schema.clone());
            let table = Arc::new(FederatedTableProviderAdaptor::new(Arc::new(source)));
            // Columns aliased to their bare names: every branch has the same
            // unqualified schema (the aggregate split relies on it).
            let exprs = self
                .schema
                .fields()
                .iter()
                .map(|f| Expr::Column(Column::new(Some(name.clone()), f.name())).alias(f.name()));
            let branch =
                LogicalPlanBuilder::scan(name.clone(), provider_as_source(table), None)?.project(exprs)?.build()?;
            union = Some(match union {
                None => LogicalPlanBuilder::from(branch),
                Some(u) => u.union(branch)?,
            });
        }
        match union {
            Some(u) => u.build(),
            None => Err(datafusion::error::DataFusionError::Plan("the fleet has no hosts".into())),
        }
    }

    fn plan(&self) -> Result<&LogicalPlan> {
        if let Some(plan) = self.plan.get() {
            return Ok(plan);
        }
        let plan = self.build()?;
        Ok(self.plan.get_or_init(|| plan))
    }
}

#[async_trait::async_trait]
impl TableProvider for FleetView {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    /// The planner inlines the view, so the optimizer sees each group's
    /// branch (and pushes filters and projections into it).
    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.plan().ok().map(Cow::Borrowed)
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Exact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Reached only if the view was not inlined: plan it as ViewTable does.
        let mut plan = LogicalPlanBuilder::from(self.plan()?.clone());
        if let Some(filter) = filters.iter().cloned().reduce(|a, b| a.and(b)) {
            plan = plan.filter(filter)?;
        }
        if let Some(projection) = projection {
            let schema = self.schema.clone();
            plan = plan.project(
                projection
                    .iter()
                    .filter_map(|i| schema.fields().get(*i))
                    .map(|f| Expr::Column(Column::new_unqualified(f.name()))),
            )?;
        }
        if let Some(limit) = limit {
            plan = plan.limit(0, Some(limit))?;
        }
        state.create_physical_plan(&plan.build()?).await
    }
}
