//! information_schema for PostgreSQL clients: DataFusion's own, except
//! `columns`, which here names each column's PostgreSQL type as a client
//! receives it (`bigint`, `udt_name` `int8`) with PostgreSQL's columns and
//! 1-based ordinal_position. DataFusion's names Arrow types (`Int64`),
//! which clients such as harlequin show as `?`. The command line keeps
//! DataFusion's (Arrow types are what its users write casts in).
//!
//! DataFusion answers `information_schema.*` itself while its
//! `information_schema` option is on; a pg session turns it off and
//! registers this schema under the same name instead.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::information_schema::{InformationSchemaProvider, INFORMATION_SCHEMA};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;

use super::type_catalog;

/// information_schema with PostgreSQL's `columns`.
#[derive(Debug)]
pub struct PgInformationSchema {
    datafusion: InformationSchemaProvider,
    catalogs: Arc<dyn CatalogProviderList>,
}

/// Answer `information_schema` in `ctx` from [`PgInformationSchema`].
pub fn install(ctx: &SessionContext) -> Result<()> {
    let state = ctx.state();
    let catalogs = state.catalog_list().clone();
    let datafusion =
        InformationSchemaProvider::new(catalogs.clone()).with_table_functions(state.table_functions().clone());
    let Some(catalog) = ctx.catalog(&state.config_options().catalog.default_catalog) else {
        return datafusion::common::plan_err!("no default catalog");
    };
    catalog.register_schema(INFORMATION_SCHEMA, Arc::new(PgInformationSchema { datafusion, catalogs }))?;
    ctx.state_ref().write().config_mut().options_mut().catalog.information_schema = false;
    Ok(())
}

/// Take it out again (it holds the catalog list that holds it).
pub fn uninstall(ctx: &SessionContext) {
    if let Some(catalog) = ctx.catalog(&ctx.state().config_options().catalog.default_catalog) {
        let _ = catalog.deregister_schema(INFORMATION_SCHEMA, true);
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.datafusion.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if name.eq_ignore_ascii_case("columns") {
            let columns = Arc::new(Columns { schema: columns_schema(), catalogs: self.catalogs.clone() });
            return Ok(Some(Arc::new(StreamingTable::try_new(columns.schema.clone(), vec![columns])?)));
        }
        self.datafusion.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.datafusion.table_exist(name)
    }
}

/// PostgreSQL's information_schema.columns, every column of it.
fn columns_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let number = |name: &str| Field::new(name, DataType::Int32, true);
    Arc::new(Schema::new(vec![
        text("table_catalog", false),
        text("table_schema", false),
        text("table_name", false),
        text("column_name", false),
        Field::new("ordinal_position", DataType::Int32, false),
        text("column_default", true),
        text("is_nullable", false),
        text("data_type", false),
        number("character_maximum_length"),
        number("character_octet_length"),
        number("numeric_precision"),
        number("numeric_precision_radix"),
        number("numeric_scale"),
        number("datetime_precision"),
        text("interval_type", true),
        number("interval_precision"),
        text("character_set_catalog", true),
        text("character_set_schema", true),
        text("character_set_name", true),
        text("collation_catalog", true),
        text("collation_schema", true),
        text("collation_name", true),
        text("domain_catalog", true),
        text("domain_schema", true),
        text("domain_name", true),
        text("udt_catalog", false),
        text("udt_schema", false),
        text("udt_name", false),
        text("scope_catalog", true),
        text("scope_schema", true),
        text("scope_name", true),
        number("maximum_cardinality"),
        text("dtd_identifier", false),
        text("is_self_referencing", false),
        text("is_identity", false),
        text("identity_generation", true),
        text("identity_start", true),
        text("identity_increment", true),
        text("identity_maximum", true),
        text("identity_minimum", true),
        text("identity_cycle", false),
        text("is_generated", false),
        text("generation_expression", true),
        text("is_updatable", false),
    ]))
}

#[derive(Debug)]
struct Columns {
    schema: SchemaRef,
    catalogs: Arc<dyn CatalogProviderList>,
}

impl PartitionStream for Columns {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (schema, catalogs) = (self.schema.clone(), self.catalogs.clone());
        Box::pin(RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::once(async move { columns(schema, catalogs).await }),
        ))
    }
}

/// What PostgreSQL reports of a column's size and precision, by type.
struct Measures {
    octet_length: Option<i32>,
    precision: Option<i32>,
    radix: Option<i32>,
    scale: Option<i32>,
    datetime_precision: Option<i32>,
}

fn measures(oid: u32, typmod: i32) -> Measures {
    let none = Measures { octet_length: None, precision: None, radix: None, scale: None, datetime_precision: None };
    let binary = |bits| Measures { precision: Some(bits), radix: Some(2), ..none };
    match oid {
        // text: its largest value, 1 GB.
        25 => Measures { octet_length: Some(1_073_741_824), ..none },
        21 => Measures { scale: Some(0), ..binary(16) },
        23 => Measures { scale: Some(0), ..binary(32) },
        20 => Measures { scale: Some(0), ..binary(64) },
        700 => binary(24),
        701 => binary(53),
        1700 => match type_catalog::numeric_parts(typmod) {
            Some((p, s)) => Measures { precision: Some(p), radix: Some(10), scale: Some(s), ..none },
            None => Measures { radix: Some(10), ..none },
        },
        1082 => Measures { datetime_precision: Some(0), ..none },
        1083 | 1114 | 1184 | 1186 | 1266 => {
            Measures { datetime_precision: Some(if typmod >= 0 { typmod } else { 6 }), ..none }
        }
        _ => none,
    }
}

/// One row per column of every table but information_schema's own.
async fn columns(schema: SchemaRef, catalogs: Arc<dyn CatalogProviderList>) -> Result<RecordBatch> {
    let mut text: Vec<StringBuilder> = (0..schema.fields().len()).map(|_| StringBuilder::new()).collect();
    let mut numbers: Vec<Int32Builder> = (0..schema.fields().len()).map(|_| Int32Builder::new()).collect();
    let mut catalog_names = catalogs.catalog_names();
    catalog_names.sort();
    for catalog_name in catalog_names {
        let Some(catalog) = catalogs.catalog(&catalog_name) else { continue };
        let mut schema_names = catalog.schema_names();
        schema_names.sort();
        for schema_name in schema_names.into_iter().filter(|s| s != INFORMATION_SCHEMA) {
            let Some(tables) = catalog.schema(&schema_name) else { continue };
            let mut table_names = tables.table_names();
            table_names.sort();
            for table_name in table_names {
                let Some(table) = tables.table(&table_name).await? else { continue };
                for (idx, field) in table.schema().fields().iter().enumerate() {
                    let (ty, typmod) = super::encode::column_type(field);
                    let udt =
                        type_catalog::facts_of(&ty).map_or_else(|| ty.name().to_string(), |f| f.typname.to_string());
                    let m = measures(ty.oid(), typmod);
                    let position = i32::try_from(idx + 1).unwrap_or(i32::MAX);
                    let row: Vec<Value> = vec![
                        Value::Text(Some(catalog_name.clone())),
                        Value::Text(Some(schema_name.clone())),
                        Value::Text(Some(table_name.clone())),
                        Value::Text(Some(field.name().clone())),
                        Value::Number(Some(position)),
                        Value::Text(None),
                        Value::Text(Some(if field.is_nullable() { "YES" } else { "NO" }.into())),
                        Value::Text(Some(type_catalog::data_type(&ty))),
                        Value::Number(None),
                        Value::Number(m.octet_length),
                        Value::Number(m.precision),
                        Value::Number(m.radix),
                        Value::Number(m.scale),
                        Value::Number(m.datetime_precision),
                        Value::Text(None),
                        Value::Number(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(Some(catalog_name.clone())),
                        Value::Text(Some("pg_catalog".into())),
                        Value::Text(Some(udt)),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Number(None),
                        Value::Text(Some(position.to_string())),
                        Value::Text(Some("NO".into())),
                        Value::Text(Some("NO".into())),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(None),
                        Value::Text(Some("NO".into())),
                        Value::Text(Some("NEVER".into())),
                        Value::Text(None),
                        // sockql's tables are read-only.
                        Value::Text(Some("NO".into())),
                    ];
                    for (i, value) in row.into_iter().enumerate() {
                        match value {
                            Value::Text(v) => text[i].append_option(v),
                            Value::Number(v) => numbers[i].append_option(v),
                        }
                    }
                }
            }
        }
    }
    let arrays: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| -> ArrayRef {
            match f.data_type() {
                DataType::Int32 => Arc::new(numbers[i].finish()),
                _ => Arc::new(text[i].finish()),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema, arrays)?)
}

/// One cell of a row being built.
enum Value {
    Text(Option<String>),
    Number(Option<i32>),
}
