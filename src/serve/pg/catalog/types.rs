//! pg_type: PostgreSQL's built-in types, as postgres-types (pgwire's type
//! table) knows them, with the storage facts of `type_catalog` (crates/output/src/pg_type_catalog.rs) for the
//! types sockql sends. Drivers look up a result column's type here by OID
//! (pgjdbc, psycopg's TypeInfo) and join columns to their type name
//! (`pg_attribute.atttypid = pg_type.oid`); sockql defines no types of
//! its own, so every row is pg_catalog's.

use std::collections::HashMap;
use std::sync::OnceLock;

use pgwire::api::Type;
use postgres_types::Kind;

use super::rows::{boolean, int, text, Row};

/// The pg_catalog namespace's OID.
const PG_CATALOG: i32 = 11;

/// Every built-in type (postgres-types numbers them below 10000).
pub fn built_in() -> &'static [Type] {
    static ALL: OnceLock<Vec<Type>> = OnceLock::new();
    ALL.get_or_init(|| (0..10_000u32).filter_map(Type::from_oid).collect())
}

/// pg_type.typtype and typcategory of `ty` (PostgreSQL's letters).
fn kind_letters(ty: &Type) -> (&'static str, &'static str) {
    match ty.kind() {
        Kind::Array(_) => ("b", "A"),
        Kind::Pseudo => ("p", "P"),
        Kind::Range(_) => ("r", "R"),
        Kind::Multirange(_) => ("m", "R"),
        Kind::Enum(_) => ("e", "E"),
        Kind::Domain(_) => ("d", "U"),
        Kind::Composite(_) => ("c", "C"),
        _ => (
            "b",
            match ty.name() {
                "bool" => "B",
                "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" | "oid" | "money" => "N",
                n if n.starts_with("reg") => "N",
                "text" | "varchar" | "bpchar" | "name" | "char" => "S",
                "date" | "time" | "timestamp" | "timestamptz" | "timetz" => "D",
                "interval" => "T",
                "inet" | "cidr" => "I",
                "bit" | "varbit" => "V",
                _ => "U",
            },
        ),
    }
}

/// The rows (the same for every session).
pub fn rows() -> Vec<Row> {
    let types = built_in();
    let arrays: HashMap<u32, i32> = types
        .iter()
        .filter_map(|t| match t.kind() {
            Kind::Array(element) => Some((element.oid(), i32::try_from(t.oid()).ok()?)),
            _ => None,
        })
        .collect();
    types
        .iter()
        .filter_map(|t| {
            let oid = i32::try_from(t.oid()).ok()?;
            let facts = crate::serve::pg::type_catalog::facts_of(t);
            let element = match t.kind() {
                Kind::Array(e) => i32::try_from(e.oid()).unwrap_or(0),
                _ => 0,
            };
            let (typtype, category) = kind_letters(t);
            let (len, byval, align, storage) =
                facts.map_or((-1, false, 'i', 'x'), |f| (f.len, f.byval, f.align, f.storage));
            let collatable = matches!(t.name(), "text" | "varchar" | "bpchar" | "name");
            Some(vec![
                ("oid", int(oid)),
                ("typname", text(t.name())),
                ("typnamespace", int(PG_CATALOG)),
                ("typowner", int(crate::serve::pg::pg_overlay::OWNER_OID)),
                ("typlen", datafusion::common::ScalarValue::Int16(Some(len))),
                ("typbyval", boolean(byval)),
                ("typtype", text(typtype)),
                ("typcategory", text(category)),
                ("typisdefined", boolean(true)),
                ("typdelim", text(",")),
                ("typsubscript", text(if element != 0 { "array_subscript_handler" } else { "-" })),
                ("typelem", int(element)),
                ("typarray", int(arrays.get(&t.oid()).copied().unwrap_or(0))),
                ("typinput", text(&format!("{}in", t.name()))),
                ("typoutput", text(&format!("{}out", t.name()))),
                ("typreceive", text(&format!("{}recv", t.name()))),
                ("typsend", text(&format!("{}send", t.name()))),
                ("typmodin", text("-")),
                ("typmodout", text("-")),
                ("typanalyze", text("-")),
                ("typalign", text(&align.to_string())),
                ("typstorage", text(&storage.to_string())),
                ("typtypmod", int(-1)),
                ("typcollation", int(if collatable { 100 } else { 0 })),
            ])
        })
        .collect()
}
