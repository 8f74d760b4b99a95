//! The pg_catalog schema of one client's session: the tables of
//! `definitions.rs`, each made when it is scanned from the session's live
//! catalog (so a table registered later is listed, and nothing is held
//! between queries), with OIDs that stay the same for the whole session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::serve::pg::type_catalog::{oid_type, OID_KIND_KEY};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{CatalogProviderList, SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::definitions::TABLES;

/// The Arrow field of one `name:type[!]` column of `definitions.rs`.
fn field(spec: &str) -> Field {
    let (name, ty) = spec.split_once(':').unwrap_or((spec, "text"));
    let (ty, nullable) = match ty.strip_suffix('!') {
        Some(t) => (t, false),
        None => (ty, true),
    };
    let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
    let arrow = match ty {
        "bool" => DataType::Boolean,
        "int2" => DataType::Int16,
        "int4" => DataType::Int32,
        "int8" => DataType::Int64,
        "float4" => DataType::Float32,
        "float8" => DataType::Float64,
        "bytea" => DataType::Binary,
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "text[]" => list(DataType::Utf8),
        "int4[]" => list(DataType::Int32),
        kind if oid_type(kind).is_some() => {
            return Field::new(name, DataType::Int32, nullable)
                .with_metadata(HashMap::from([(OID_KIND_KEY.to_string(), kind.to_string())]));
        }
        _ => DataType::Utf8,
    };
    Field::new(name, arrow, nullable)
}

/// The Arrow schema of pg_catalog table `name`, or None.
pub fn schema_of(name: &str) -> Option<SchemaRef> {
    let (_, columns) = TABLES.iter().find(|(t, _)| t.eq_ignore_ascii_case(name))?;
    Some(Arc::new(Schema::new(columns.split_whitespace().map(field).collect::<Vec<_>>())))
}

/// Every pg_catalog table's name.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|(name, _)| *name)
}

/// Object identifiers, assigned once per session. PostgreSQL's own fixed
/// OIDs where clients rely on them (the pg_catalog namespace is 11, public
/// 2200; pg_class is 1259, which pg_description's classoid names), then
/// from 16384, PostgreSQL's first user OID, in the order objects are seen.
#[derive(Debug, Default)]
pub struct Oids {
    assigned: Mutex<(HashMap<String, i32>, i32)>,
}

const FIXED: &[(&str, i32)] = &[
    ("namespace:pg_catalog", 11),
    ("namespace:public", 2200),
    ("namespace:information_schema", 13_000),
    ("pg_catalog.pg_type", 1247),
    ("pg_catalog.pg_attribute", 1249),
    ("pg_catalog.pg_proc", 1255),
    ("pg_catalog.pg_class", 1259),
    ("pg_catalog.pg_authid", 1260),
    ("pg_catalog.pg_database", 1262),
    ("pg_catalog.pg_namespace", 2615),
    ("pg_catalog.pg_description", 2609),
    ("pg_catalog.pg_constraint", 2606),
    ("pg_catalog.pg_index", 2610),
];

/// The first OID PostgreSQL gives a user's object.
const FIRST_USER_OID: i32 = 16_384;

impl Oids {
    /// The OID of `key` (`namespace:NAME`, `database:NAME` or
    /// `SCHEMA.TABLE`).
    pub fn of(&self, key: &str) -> i32 {
        if let Some((_, oid)) = FIXED.iter().find(|(k, _)| *k == key) {
            return *oid;
        }
        // A poisoned lock only means another query panicked mid-insert;
        // the map is still whole.
        let mut guard = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        let (map, next) = &mut *guard;
        if let Some(oid) = map.get(key) {
            return *oid;
        }
        let oid = FIRST_USER_OID.saturating_add(*next);
        *next = next.saturating_add(1);
        map.insert(key.to_string(), oid);
        oid
    }
}

/// What every pg_catalog table of a session reads from.
#[derive(Debug)]
pub struct Shared {
    /// Weak: the catalog list holds this schema.
    pub catalogs: Weak<dyn CatalogProviderList>,
    pub oids: Oids,
}

/// pg_catalog for one session.
#[derive(Debug)]
pub struct PgCatalog {
    pub shared: Arc<Shared>,
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        table_names().map(str::to_string).collect()
    }

    /// Cheap (pg_class asks every table's schema while it lists them):
    /// the rows are made when the table is scanned.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some((name, _)) = TABLES.iter().find(|(t, _)| t.eq_ignore_ascii_case(name)) else { return Ok(None) };
        let Some(schema) = schema_of(name) else { return Ok(None) };
        Ok(Some(Arc::new(CatalogTable { name, schema, shared: self.shared.clone() })))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.iter().any(|(t, _)| t.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug)]
struct CatalogTable {
    name: &'static str,
    schema: SchemaRef,
    shared: Arc<Shared>,
}

#[async_trait]
impl TableProvider for CatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Base, as PostgreSQL's catalogs are tables (relkind r).
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = super::rows::of(self.name, &self.shared, state).await?;
        let batch = super::rows::batch(&self.schema, &rows)?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())?)
    }
}
