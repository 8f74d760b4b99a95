//! pg_catalog (catalog/schema.rs) with sockql's own rows added where
//! clients read them:
//! - pg_description: each table's and column's description (psql's `\d+`
//!   and `\dt+` through `col_description`/`obj_description`, pgjdbc's
//!   REMARKS), keyed by the OIDs pg_class gives them in this session;
//! - pg_proc: sockql's functions (psql's `\df`), in schema public.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProviderList, MemTable, SchemaProvider, Session, TableProvider};
use datafusion::common::cast::{as_int32_array, as_string_array};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::catalog::rows::{batch, text, Row};
use super::psql_fns::OwnFunction;
use crate::query::catalog::{column_doc, listing_in, Listed, HISTORY_SCHEMA};

/// The role every object is owned by, as `pg_get_userbyid` names it.
pub const OWNER: &str = "postgres";

/// That role's OID (PostgreSQL's bootstrap superuser's, 10).
pub const OWNER_OID: i32 = 10;

/// Put the overlay in front of the session's pg_catalog schema.
pub fn install(ctx: &SessionContext, functions: Vec<(i32, &'static OwnFunction)>) -> anyhow::Result<()> {
    let catalog = ctx.catalog("datafusion").ok_or_else(|| anyhow::anyhow!("no catalog datafusion"))?;
    let inner = catalog.schema("pg_catalog").ok_or_else(|| anyhow::anyhow!("pg_catalog is not set up"))?;
    // Weak: the catalog list holds this schema.
    let catalogs = Arc::downgrade(ctx.state().catalog_list());
    let overlay = Overlay { inner, catalogs, functions: Arc::new(functions) };
    catalog
        .register_schema("pg_catalog", Arc::new(overlay))
        .map_err(|e| anyhow::anyhow!("cannot set up pg_catalog: {e}"))?;
    Ok(())
}

#[derive(Debug)]
struct Overlay {
    inner: Arc<dyn SchemaProvider>,
    catalogs: Weak<dyn CatalogProviderList>,
    functions: Arc<Vec<(i32, &'static OwnFunction)>>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Descriptions,
    Functions,
}

#[async_trait]
impl SchemaProvider for Overlay {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }

    /// Cheap: pg_class asks every table's schema while it lists them, so
    /// the rows are made when the table is scanned.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let kind = match name.to_ascii_lowercase().as_str() {
            "pg_description" => Kind::Descriptions,
            "pg_proc" => Kind::Functions,
            _ => return self.inner.table(name).await,
        };
        let Some(base) = self.inner.table(name).await? else { return Ok(None) };
        Ok(Some(Arc::new(Added {
            kind,
            base,
            inner: self.inner.clone(),
            catalogs: self.catalogs.clone(),
            functions: self.functions.clone(),
        })))
    }
}

/// A pg_catalog table with sockql's rows after the crate's.
#[derive(Debug)]
struct Added {
    kind: Kind,
    base: Arc<dyn TableProvider>,
    inner: Arc<dyn SchemaProvider>,
    catalogs: Weak<dyn CatalogProviderList>,
    functions: Arc<Vec<(i32, &'static OwnFunction)>>,
}

#[async_trait]
impl TableProvider for Added {
    fn schema(&self) -> SchemaRef {
        self.base.schema()
    }

    fn table_type(&self) -> TableType {
        self.base.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut batches = rows_of(self.base.as_ref(), state).await?;
        let oids = Oids::read(self.inner.as_ref(), state, matches!(self.kind, Kind::Descriptions)).await?;
        let rows = match self.kind {
            Kind::Descriptions => descriptions(&oids, self.catalogs.upgrade(), &self.functions).await,
            Kind::Functions => functions(&oids, &self.functions),
        };
        if !rows.is_empty() {
            batches.push(batch(&self.schema(), &rows)?);
        }
        MemTable::try_new(self.schema(), vec![batches])?.scan(state, projection, filters, limit).await
    }
}

/// Every row of a table.
async fn rows_of(table: &dyn TableProvider, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let plan = table.scan(state, None, &[], None).await?;
    datafusion::physical_plan::collect(plan, state.task_ctx()).await
}

/// The OIDs pg_class and pg_namespace give this session's objects.
struct Oids {
    /// (schema, relation) -> OID
    relations: HashMap<(String, String), i32>,
    namespaces: HashMap<String, i32>,
}

impl Oids {
    /// `relations`: read pg_class too (the namespaces alone otherwise).
    async fn read(pg_catalog: &dyn SchemaProvider, state: &dyn Session, relations: bool) -> Result<Oids> {
        let mut namespaces = HashMap::new();
        let mut names = HashMap::new();
        for b in table_rows(pg_catalog, "pg_namespace", state).await? {
            let (oid, name) = (as_int32_array(column(&b, "oid")?)?, as_string_array(column(&b, "nspname")?)?);
            for (oid, name) in oid.iter().zip(name.iter()) {
                if let (Some(oid), Some(name)) = (oid, name) {
                    namespaces.insert(name.to_string(), oid);
                    names.insert(oid, name.to_string());
                }
            }
        }
        let with_relations = relations;
        let mut relations = HashMap::new();
        let classes = if with_relations { table_rows(pg_catalog, "pg_class", state).await? } else { Vec::new() };
        for b in classes {
            let oid = as_int32_array(column(&b, "oid")?)?;
            let name = as_string_array(column(&b, "relname")?)?;
            let namespace = as_int32_array(column(&b, "relnamespace")?)?;
            for ((oid, name), namespace) in oid.iter().zip(name.iter()).zip(namespace.iter()) {
                if let (Some(oid), Some(name), Some(schema)) = (oid, name, namespace.and_then(|n| names.get(&n))) {
                    relations.insert((schema.clone(), name.to_string()), oid);
                }
            }
        }
        Ok(Oids { relations, namespaces })
    }

    /// The OID of pg_catalog's table `name` (the classoid of a description),
    /// or PostgreSQL's own should it be missing.
    fn catalog_table(&self, name: &str, postgres: i32) -> i32 {
        self.relations.get(&("pg_catalog".to_string(), name.to_string())).copied().unwrap_or(postgres)
    }
}

async fn table_rows(pg_catalog: &dyn SchemaProvider, name: &str, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    match pg_catalog.table(name).await? {
        Some(t) => rows_of(t.as_ref(), state).await,
        None => Ok(Vec::new()),
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| DataFusionError::Internal(format!("pg_catalog has no column {name}")))
}

/// pg_description rows: the description of each table of this session
/// (objsubid 0) and of each of its columns (objsubid = attnum, from 1),
/// and of sockql's functions.
async fn descriptions(
    oids: &Oids,
    catalogs: Option<Arc<dyn CatalogProviderList>>,
    functions: &[(i32, &'static OwnFunction)],
) -> Vec<Row> {
    let listed = listing_in(catalogs.and_then(|c| c.catalog("datafusion"))).await;
    let pg_class = oids.catalog_table("pg_class", 1259);
    let pg_proc = oids.catalog_table("pg_proc", 1255);
    let row = |objoid: i32, classoid: i32, subid: i32, about: &str| -> Row {
        vec![
            ("objoid", ScalarValue::Int32(Some(objoid))),
            ("classoid", ScalarValue::Int32(Some(classoid))),
            ("objsubid", ScalarValue::Int32(Some(subid))),
            ("description", text(about)),
        ]
    };
    let mut out = Vec::new();
    for Listed { name, about, schema } in &listed {
        let (namespace, relation) = match name.split_once('.') {
            Some((HISTORY_SCHEMA, table)) => (HISTORY_SCHEMA, table),
            Some(_) => continue,
            None => ("public", name.as_str()),
        };
        let Some(&oid) = oids.relations.get(&(namespace.to_string(), relation.to_string())) else { continue };
        out.push(row(oid, pg_class, 0, about));
        for (attnum, field) in (1..).zip(schema.fields().iter()) {
            let doc = column_doc(name, field);
            if !doc.is_empty() {
                out.push(row(oid, pg_class, attnum, &doc));
            }
        }
    }
    for (oid, f) in functions {
        out.push(row(*oid, pg_proc, 0, f.about));
    }
    out
}

/// pg_proc rows for sockql's functions, in schema public.
fn functions(oids: &Oids, functions: &[(i32, &'static OwnFunction)]) -> Vec<Row> {
    let Some(&public) = oids.namespaces.get("public") else { return Vec::new() };
    functions
        .iter()
        .map(|(oid, f)| {
            vec![
                ("oid", ScalarValue::Int32(Some(*oid))),
                ("proname", text(f.name)),
                ("pronamespace", ScalarValue::Int32(Some(public))),
                ("proowner", ScalarValue::Int32(Some(10))),
                ("prolang", ScalarValue::Int32(Some(12))), // internal
                ("procost", ScalarValue::Float32(Some(1.0))),
                ("prorows", ScalarValue::Float32(Some(if f.table { 1000.0 } else { 0.0 }))),
                ("provariadic", ScalarValue::Int32(Some(f.variadic))),
                ("prosupport", text("-")),
                ("prokind", text("f")),
                ("proretset", ScalarValue::Boolean(Some(f.table))),
                ("provolatile", text(f.volatility)),
                ("proparallel", text("u")),
                ("pronargs", ScalarValue::Int16(Some(f.nargs))),
                ("prorettype", ScalarValue::Int32(Some(f.rettype))),
                ("proargtypes", text(f.arg_types)),
                ("prosrc", text(f.name)),
            ]
        })
        .collect()
}
