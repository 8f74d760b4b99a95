//! Result column names as PostgreSQL gives them, for the clients that
//! read rows by name: `SELECT count(*)` is `count`, `SELECT 1` is
//! `?column?`, `CAST(x AS int)` is `x`, `f(...)` is `f` (PostgreSQL's
//! FigureColname). DataFusion names them by their expression
//! (`count(*)`, `Int64(1)`), which the command line keeps printing; only
//! what a PostgreSQL client is sent (RowDescription) is renamed here,
//! from the statement's own projection.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr, Ident, ObjectNamePart, Query, SelectItem, SetExpr, Statement, Value,
};

/// PostgreSQL's name for a column it cannot name.
const UNNAMED: &str = "?column?";

/// The PostgreSQL names of a statement's result columns, or None when
/// its projection does not say them one by one (a wildcard, VALUES, not
/// a query): then DataFusion's names stay.
pub fn of(statement: &Statement) -> Option<Vec<String>> {
    match statement {
        Statement::Query(query) => of_query(query),
        _ => None,
    }
}

fn of_query(query: &Query) -> Option<Vec<String>> {
    of_body(&query.body)
}

fn of_body(body: &SetExpr) -> Option<Vec<String>> {
    match body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(expr) => Some(name_of(expr)),
                SelectItem::ExprWithAlias { alias, .. } => Some(ident(alias)),
                _ => None,
            })
            .collect(),
        SetExpr::Query(query) => of_query(query),
        // A set operation's columns are named by its first branch.
        SetExpr::SetOperation { left, .. } => of_body(left),
        _ => None,
    }
}

/// An identifier as PostgreSQL (and DataFusion) resolve it: folded to
/// lower case unless quoted.
fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn last_part(parts: &[ObjectNamePart]) -> Option<String> {
    match parts.last()? {
        ObjectNamePart::Identifier(i) => Some(ident(i)),
        ObjectNamePart::Function(f) => Some(ident(&f.name)),
    }
}

/// The name PostgreSQL gives an expression's column, or None where it
/// gives none (`?column?` at the top).
fn figure(expr: &Expr) -> Option<String> {
    Some(match expr {
        Expr::Identifier(i) => ident(i),
        Expr::CompoundIdentifier(parts) => ident(parts.last()?),
        Expr::Function(f) => last_part(&f.name.0)?,
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => return figure(inner),
        // A cast is named by what it casts, else by its type.
        Expr::Cast { expr: inner, data_type, kind, .. } => {
            return figure(inner)
                .or_else(|| (!matches!(kind, CastKind::TryCast | CastKind::SafeCast)).then(|| type_name(data_type)))
        }
        Expr::TypedString(typed) => type_name(&typed.data_type),
        Expr::Value(v) if matches!(v.value, Value::Boolean(_)) => "bool".into(),
        Expr::Interval(_) => "interval".into(),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        Expr::Tuple(_) => "row".into(),
        Expr::Subquery(query) => {
            return of_query(query).and_then(|names| names.into_iter().next()).filter(|n| n != UNNAMED)
        }
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::AtTimeZone { .. } => "timezone".into(),
        _ => return None,
    })
}

fn name_of(expr: &Expr) -> String {
    figure(expr).unwrap_or_else(|| UNNAMED.to_string())
}

/// A type's name as PostgreSQL names a cast column (`1::int` is `int4`).
fn type_name(t: &DataType) -> String {
    let text = t.to_string().to_lowercase();
    let base = text.split('(').next().unwrap_or("").trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "double" | "float8" | "float" => "float8",
        "boolean" | "bool" => "bool",
        "varchar" | "character varying" => "varchar",
        "char" | "character" => "bpchar",
        "decimal" | "numeric" => "numeric",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp" | "timestamp without time zone" => "timestamp",
        other => return other.rsplit('.').next().unwrap_or(other).to_string(),
    }
    .to_string()
}

/// `schema` with its columns renamed to `names` (when there is one name
/// for each column; else as it was).
pub fn renamed(schema: &SchemaRef, names: Option<&[String]>) -> SchemaRef {
    match names {
        Some(names) if names.len() == schema.fields().len() => {
            let fields: Vec<Field> =
                schema.fields().iter().zip(names).map(|(f, n)| f.as_ref().clone().with_name(n.clone())).collect();
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
        }
        _ => schema.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Option<Vec<String>> {
        of(&Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap()[0])
    }

    fn v(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn columns_are_named_as_postgresql_names_them() {
        assert_eq!(names("SELECT count(*) FROM sockets"), v(&["count"]));
        assert_eq!(names("SELECT 1"), v(&["?column?"]));
        assert_eq!(names("SELECT sum(x), MAX(x), x + 1 FROM t"), v(&["sum", "max", "?column?"]));
        assert_eq!(names("SELECT CAST(x AS int), x::int, 1::int, t.y FROM t"), v(&["x", "x", "int4", "y"]));
        assert_eq!(
            names("SELECT pg_catalog.version(), lower(p) AS \"Name\", state AS S FROM t"),
            v(&["version", "Name", "s"])
        );
        assert_eq!(
            names("SELECT CASE WHEN a THEN 1 END, (x), true, 'a', NULL FROM t"),
            v(&["case", "x", "bool", "?column?", "?column?"])
        );
        assert_eq!(names("SELECT a FROM t UNION ALL SELECT b FROM u"), v(&["a"]));
        assert_eq!(names("WITH c AS (SELECT 1 AS n) SELECT n, (SELECT max(n) FROM c) FROM c"), v(&["n", "max"]));
        assert_eq!(names("SELECT * FROM t"), None);
        assert_eq!(names("SELECT a, t.* FROM t"), None);
        assert_eq!(names("SHOW TABLES"), None);
    }

    #[test]
    fn renaming_needs_a_name_for_every_column() {
        use datafusion::arrow::datatypes::DataType as A;
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("count(*)", A::Int64, false)]));
        assert_eq!(renamed(&schema, Some(&["count".to_string()])).field(0).name(), "count");
        assert_eq!(renamed(&schema, Some(&[])).field(0).name(), "count(*)");
        assert_eq!(renamed(&schema, None).field(0).name(), "count(*)");
    }
}
