//! The rows of each pg_catalog table, made when it is scanned; a table
//! not named here is empty (sockql has no such objects).

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{Result, ScalarValue};

use super::schema::Shared;

/// One row: its values by column name. A column not named is null, or
/// its type's zero if it may not be null.
pub type Row = Vec<(&'static str, ScalarValue)>;

/// The rows of pg_catalog table `name`.
pub async fn of(name: &str, shared: &Shared, _state: &dyn Session) -> Result<Vec<Row>> {
    Ok(match name {
        "pg_namespace" | "pg_class" | "pg_attribute" | "pg_tables" | "pg_database" => {
            let catalogs = shared.catalogs.upgrade();
            let relations = super::relations::list(catalogs.as_ref()).await?;
            match name {
                "pg_namespace" => super::relations::namespaces(&relations, &shared.oids),
                "pg_class" => super::relations::classes(&relations, &shared.oids),
                "pg_attribute" => super::relations::attributes(&relations, &shared.oids),
                "pg_tables" => super::relations::tables(&relations),
                _ => super::relations::databases(catalogs.as_ref(), &shared.oids),
            }
        }
        "pg_type" => super::types::rows(),
        "pg_roles" | "pg_authid" => super::roles::roles(),
        "pg_settings" => super::roles::settings(),
        _ => Vec::new(),
    })
}

/// `rows` as one batch of `schema`.
pub fn batch(schema: &SchemaRef, rows: &[Row]) -> Result<RecordBatch> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            let given = row.iter().find(|(name, _)| field.name() == name).map(|(_, v)| v.cast_to(field.data_type()));
            values.push(match given {
                Some(v) => v?,
                None if field.is_nullable() => ScalarValue::try_new_null(field.data_type())?,
                None => ScalarValue::new_default(field.data_type())?,
            });
        }
        columns.push(if values.is_empty() {
            datafusion::arrow::array::new_empty_array(field.data_type())
        } else {
            ScalarValue::iter_to_array(values)?
        });
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
}

/// A text value.
pub fn text(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

/// An int4 value (oids too).
pub fn int(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}

pub fn boolean(v: bool) -> ScalarValue {
    ScalarValue::Boolean(Some(v))
}
