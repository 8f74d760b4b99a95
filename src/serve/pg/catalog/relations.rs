//! pg_namespace, pg_class, pg_attribute, pg_tables and pg_database from
//! the session's live catalog: every schema, every table in it (sockql's,
//! information_schema's, pg_catalog's own) and every column, typed as
//! RowDescription types it ([`crate::serve::pg::encode::column_type`]),
//! so what a client reads here is what its queries return.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::CatalogProviderList;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableType;

use super::rows::{boolean, int, text, Row};
use super::schema::Oids;
use crate::serve::pg::pg_overlay::OWNER_OID;

/// The schemas and tables of the session.
pub struct Listing {
    pub schemas: Vec<String>,
    pub relations: Vec<Relation>,
}

pub struct Relation {
    pub schema: String,
    pub name: String,
    pub fields: SchemaRef,
    pub kind: TableType,
}

/// Every schema and table of every catalog of the session, in name order.
pub async fn list(catalogs: Option<&Arc<dyn CatalogProviderList>>) -> Result<Listing> {
    let mut listing = Listing { schemas: Vec::new(), relations: Vec::new() };
    let Some(catalogs) = catalogs else { return Ok(listing) };
    let mut catalog_names = catalogs.catalog_names();
    catalog_names.sort();
    for catalog in catalog_names.iter().filter_map(|c| catalogs.catalog(c)) {
        let mut schema_names = catalog.schema_names();
        schema_names.sort();
        for schema_name in schema_names {
            let Some(schema) = catalog.schema(&schema_name) else { continue };
            let mut tables = schema.table_names();
            tables.sort();
            for name in tables {
                if let Some(table) = schema.table(&name).await? {
                    let (fields, kind) = (table.schema(), table.table_type());
                    listing.relations.push(Relation { schema: schema_name.clone(), name, fields, kind });
                }
            }
            listing.schemas.push(schema_name);
        }
    }
    Ok(listing)
}

fn relation_key(r: &Relation) -> String {
    format!("{}.{}", r.schema, r.name)
}

pub fn namespaces(listing: &Listing, oids: &Oids) -> Vec<Row> {
    listing
        .schemas
        .iter()
        .map(|s| {
            vec![("oid", int(oids.of(&format!("namespace:{s}")))), ("nspname", text(s)), ("nspowner", int(OWNER_OID))]
        })
        .collect()
}

pub fn classes(listing: &Listing, oids: &Oids) -> Vec<Row> {
    listing
        .relations
        .iter()
        .map(|r| {
            let oid = oids.of(&relation_key(r));
            vec![
                ("oid", int(oid)),
                ("relname", text(&r.name)),
                ("relnamespace", int(oids.of(&format!("namespace:{}", r.schema)))),
                ("relowner", int(OWNER_OID)),
                ("relfilenode", int(oid)),
                ("relpages", int(1)),
                ("relpersistence", text("p")),
                ("relkind", text(if r.kind == TableType::View { "v" } else { "r" })),
                ("relnatts", ScalarValue::Int16(Some(i16::try_from(r.fields.fields().len()).unwrap_or(i16::MAX)))),
                ("relispopulated", boolean(true)),
                ("relreplident", text("d")),
                ("relpartbound", text("")),
            ]
        })
        .collect()
}

pub fn attributes(listing: &Listing, oids: &Oids) -> Vec<Row> {
    let mut out = Vec::new();
    for r in &listing.relations {
        let oid = oids.of(&relation_key(r));
        for (attnum, field) in (1i16..).zip(r.fields.fields().iter()) {
            let (ty, typmod) = crate::serve::pg::encode::column_type(field);
            let facts = crate::serve::pg::type_catalog::facts_of(&ty);
            let (len, byval, align, storage) =
                facts.map_or((-1, false, 'i', 'x'), |f| (f.len, f.byval, f.align, f.storage));
            let array = facts.is_some_and(|f| f.typname.starts_with('_'));
            out.push(vec![
                ("attrelid", int(oid)),
                ("attname", text(field.name())),
                ("atttypid", int(i32::try_from(ty.oid()).unwrap_or(0))),
                ("attstattarget", int(-1)),
                ("attlen", ScalarValue::Int16(Some(len))),
                ("attnum", ScalarValue::Int16(Some(attnum))),
                ("attndims", int(i32::from(array))),
                ("attcacheoff", int(-1)),
                ("atttypmod", int(typmod)),
                ("attbyval", boolean(byval)),
                ("attalign", text(&align.to_string())),
                ("attstorage", text(&storage.to_string())),
                ("attnotnull", boolean(!field.is_nullable())),
                ("attidentity", text("")),
                ("attgenerated", text("")),
                ("attislocal", boolean(true)),
            ]);
        }
    }
    out
}

pub fn tables(listing: &Listing) -> Vec<Row> {
    listing
        .relations
        .iter()
        .filter(|r| r.kind != TableType::View)
        .map(|r| {
            vec![
                ("schemaname", text(&r.schema)),
                ("tablename", text(&r.name)),
                ("tableowner", text(crate::serve::pg::pg_overlay::OWNER)),
            ]
        })
        .collect()
}

/// A database per catalog (the session has one), owned by the one role,
/// in UTF-8 (encoding 6).
pub fn databases(catalogs: Option<&Arc<dyn CatalogProviderList>>, oids: &Oids) -> Vec<Row> {
    let mut names = catalogs.map(|c| c.catalog_names()).unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|name| {
            vec![
                ("oid", int(oids.of(&format!("database:{name}")))),
                ("datname", text(name)),
                ("datdba", int(OWNER_OID)),
                ("encoding", int(6)),
                ("datlocprovider", text("c")),
                ("datcollate", text("C")),
                ("datctype", text("C")),
                ("datallowconn", boolean(true)),
                ("datconnlimit", int(-1)),
                ("dattablespace", int(1663)),
            ]
        })
        .collect()
}
