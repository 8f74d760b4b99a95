//! pg_attribute with each column's type as a client receives it.
//!
//! datafusion-pg-catalog's pg_attribute maps Arrow types itself (through
//! arrow-pg, then a short list where intervals, json and most arrays fall
//! back to text) with no atttypmod; RowDescription is made by encode.rs.
//! Its table OIDs come from a cache private to that crate, shared with
//! pg_class, so its rows are kept and only the type columns (atttypid,
//! atttypmod, attlen, attbyval, attalign, attstorage, attndims) are
//! rewritten from [`super::encode::column_type`], each row's table found
//! through pg_class and pg_namespace.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int16Array, Int32Array, StringArray};
use datafusion::arrow::datatypes::{Int16Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// pg_catalog with [`PgAttribute`] in place of the crate's pg_attribute.
#[derive(Debug)]
pub struct PgCatalog {
    pub inner: Arc<dyn SchemaProvider>,
    pub catalogs: Arc<dyn CatalogProviderList>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = self.inner.table(name).await?;
        if !name.eq_ignore_ascii_case("pg_attribute") {
            return Ok(table);
        }
        Ok(table.map(|inner| -> Arc<dyn TableProvider> {
            Arc::new(PgAttribute { inner, pg_catalog: self.inner.clone(), catalogs: self.catalogs.clone() })
        }))
    }

    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        self.inner.table_type(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[derive(Debug)]
struct PgAttribute {
    inner: Arc<dyn TableProvider>,
    pg_catalog: Arc<dyn SchemaProvider>,
    catalogs: Arc<dyn CatalogProviderList>,
}

/// All rows of `table` in `pg_catalog`.
async fn rows_of(pg_catalog: &dyn SchemaProvider, table: &str, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let Some(provider) = pg_catalog.table(table).await? else { return Ok(vec![]) };
    rows(provider.as_ref(), state).await
}

async fn rows(provider: &dyn TableProvider, state: &dyn Session) -> Result<Vec<RecordBatch>> {
    let plan = provider.scan(state, None, &[], None).await?;
    datafusion::physical_plan::collect(plan, state.task_ctx()).await
}

/// Column `name` of `batch` as `T`, or an error naming it.
fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| datafusion::error::DataFusionError::Internal(format!("pg_catalog has no usable column {name}")))
}

#[async_trait]
impl TableProvider for PgAttribute {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // pg_attribute first: it settles the table OIDs pg_class then reads.
        let attributes = rows(self.inner.as_ref(), state).await?;
        // oid -> (relname, namespace oid), namespace oid -> nspname.
        let mut relations: HashMap<i32, (String, i32)> = HashMap::new();
        for b in rows_of(self.pg_catalog.as_ref(), "pg_class", state).await? {
            let (oid, name, ns) = (
                column::<Int32Array>(&b, "oid")?,
                column::<StringArray>(&b, "relname")?,
                column::<Int32Array>(&b, "relnamespace")?,
            );
            for i in 0..b.num_rows() {
                relations.insert(oid.value(i), (name.value(i).to_string(), ns.value(i)));
            }
        }
        let mut namespaces: HashMap<i32, String> = HashMap::new();
        for b in rows_of(self.pg_catalog.as_ref(), "pg_namespace", state).await? {
            let (oid, name) = (column::<Int32Array>(&b, "oid")?, column::<StringArray>(&b, "nspname")?);
            for i in 0..b.num_rows() {
                namespaces.insert(oid.value(i), name.value(i).to_string());
            }
        }
        let mut schemas: HashMap<i32, Option<SchemaRef>> = HashMap::new();
        let mut fixed = Vec::with_capacity(attributes.len());
        for batch in attributes {
            let relids = column::<Int32Array>(&batch, "attrelid")?;
            for i in 0..batch.num_rows() {
                let relid = relids.value(i);
                if schemas.contains_key(&relid) {
                    continue;
                }
                let found = match relations.get(&relid) {
                    Some((table, ns)) => match namespaces.get(ns) {
                        Some(schema) => self.table_schema(schema, table).await?,
                        None => None,
                    },
                    None => None,
                };
                schemas.insert(relid, found);
            }
            fixed.push(retype(&batch, &schemas)?);
        }
        let exec = MemorySourceConfig::try_new_exec(&[fixed], self.schema(), projection.cloned())?;
        Ok(exec)
    }
}

impl PgAttribute {
    /// The Arrow schema of `schema.table` in whichever catalog has it.
    async fn table_schema(&self, schema: &str, table: &str) -> Result<Option<SchemaRef>> {
        for catalog in self.catalogs.catalog_names() {
            let Some(s) = self.catalogs.catalog(&catalog).and_then(|c| c.schema(schema)) else { continue };
            if let Some(t) = s.table(table).await? {
                return Ok(Some(t.schema()));
            }
        }
        Ok(None)
    }
}

/// `batch` with its type columns taken from the tables' own fields (a
/// row whose table or column is not found keeps the crate's values).
fn retype(batch: &RecordBatch, schemas: &HashMap<i32, Option<SchemaRef>>) -> Result<RecordBatch> {
    let relids = column::<Int32Array>(batch, "attrelid")?;
    let names = column::<StringArray>(batch, "attname")?;
    let nums = batch.column_by_name("attnum").map(|c| c.as_primitive::<Int16Type>());
    let Some(nums) = nums else { return Ok(batch.clone()) };
    let typid = column::<Int32Array>(batch, "atttypid")?;
    let typmod = column::<Int32Array>(batch, "atttypmod")?;
    let len = column::<Int16Array>(batch, "attlen")?;
    let ndims = column::<Int32Array>(batch, "attndims")?;
    let byval = column::<BooleanArray>(batch, "attbyval")?;
    let align = column::<StringArray>(batch, "attalign")?;
    let storage = column::<StringArray>(batch, "attstorage")?;
    let (mut t_id, mut t_mod, mut t_len, mut t_ndims) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut t_byval, mut t_align, mut t_storage) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..batch.num_rows() {
        let field = schemas
            .get(&relids.value(i))
            .and_then(|s| s.as_ref())
            .and_then(|s| {
                usize::try_from(nums.value(i)).ok().and_then(|n| n.checked_sub(1)).and_then(|n| s.fields().get(n))
            })
            .filter(|f| f.name() == names.value(i));
        let described = field.and_then(|f| {
            let (ty, m) = super::encode::column_type(f);
            super::type_catalog::facts_of(&ty).map(|facts| (ty, m, facts))
        });
        match described {
            Some((ty, m, facts)) => {
                t_id.push(i32::try_from(ty.oid()).unwrap_or(0));
                t_mod.push(m);
                t_len.push(facts.len);
                t_ndims.push(i32::from(facts.typname.starts_with('_')));
                t_byval.push(facts.byval);
                t_align.push(facts.align.to_string());
                t_storage.push(facts.storage.to_string());
            }
            None => {
                t_id.push(typid.value(i));
                t_mod.push(typmod.value(i));
                t_len.push(len.value(i));
                t_ndims.push(ndims.value(i));
                t_byval.push(byval.value(i));
                t_align.push(align.value(i).to_string());
                t_storage.push(storage.value(i).to_string());
            }
        }
    }
    let replaced: HashMap<&str, ArrayRef> = HashMap::from([
        ("atttypid", Arc::new(Int32Array::from(t_id)) as ArrayRef),
        ("atttypmod", Arc::new(Int32Array::from(t_mod))),
        ("attlen", Arc::new(Int16Array::from(t_len))),
        ("attndims", Arc::new(Int32Array::from(t_ndims))),
        ("attbyval", Arc::new(BooleanArray::from(t_byval))),
        ("attalign", Arc::new(StringArray::from(t_align))),
        ("attstorage", Arc::new(StringArray::from(t_storage))),
    ]);
    let schema = batch.schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| replaced.get(f.name().as_str()).cloned().unwrap_or_else(|| c.clone()))
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}
