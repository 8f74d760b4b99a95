//! The functions of PostgreSQL's catalog that clients call in their
//! metadata queries and that DataFusion does not have. sockql has one
//! role, one database, schemas without privileges and tables without
//! storage, indexes, constraints or partitions, so most answer a constant
//! (every privilege granted, every table visible, sizes 0, definitions
//! empty), as such a PostgreSQL database would.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::Result;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::serve::pg::pg_overlay::OWNER;
use crate::serve::pg::psql_fns::{no_storage, shim};

/// The number of rows of the first argument (1 for none).
fn rows(args: &[ArrayRef]) -> usize {
    args.first().map_or(1, |a| a.len())
}

fn all_true(args: &[ArrayRef]) -> Result<ArrayRef> {
    Ok(Arc::new(BooleanArray::from(vec![true; rows(args)])))
}

fn owner(args: &[ArrayRef]) -> Result<ArrayRef> {
    Ok(Arc::new(StringArray::from(vec![OWNER; rows(args)])))
}

fn empty_text(args: &[ArrayRef]) -> Result<ArrayRef> {
    Ok(Arc::new(StringArray::from(vec![""; rows(args)])))
}

fn null_text(args: &[ArrayRef]) -> Result<ArrayRef> {
    Ok(Arc::new(StringArray::from(vec![None::<&str>; rows(args)])))
}

fn zero(args: &[ArrayRef]) -> Result<ArrayRef> {
    Ok(Arc::new(Int32Array::from(vec![0; rows(args)])))
}

/// pg_encoding_to_char: sockql's one encoding, 6, as the name psql shows
/// in `\l`; null for any other number.
fn encoding_name(args: &[ArrayRef]) -> Result<ArrayRef> {
    let Some(first) = args.first() else { return null_text(args) };
    let numbers = cast(first, &DataType::Int64)?;
    let numbers = numbers.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    Ok(Arc::new(numbers.iter().map(|n| (n == Some(6)).then_some("UTF-8")).collect::<StringArray>()))
}

/// The first argument as text, nulls kept.
fn texts(args: &[ArrayRef]) -> Result<Vec<Option<String>>> {
    let Some(first) = args.first() else { return Ok(Vec::new()) };
    let t = cast(first, &DataType::Utf8)?;
    Ok(t.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect())
}

/// PostgreSQL's reserved key words (those quote_ident quotes).
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast", "check",
    "collate", "column", "constraint", "create", "current_catalog", "current_date", "current_role", "current_time",
    "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except",
    "false", "fetch", "for", "foreign", "from", "grant", "group", "having", "in", "initially", "intersect", "into",
    "lateral", "leading", "limit", "localtime", "localtimestamp", "not", "null", "offset", "on", "only", "or",
    "order", "placing", "primary", "references", "returning", "select", "session_user", "some", "symmetric",
    "system_user", "table", "then", "to", "trailing", "true", "union", "unique", "user", "using", "variadic", "when",
    "where", "window", "with",
];

/// quote_ident: the name as SQL must write it (double-quoted unless it
/// is lower case letters, digits, `_` and `$`, starts with a letter or
/// `_`, and is not a reserved word).
pub fn quote_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn quote_ident_fn(args: &[ArrayRef]) -> Result<ArrayRef> {
    Ok(Arc::new(texts(args)?.into_iter().map(|s| s.map(|s| quote_ident(&s))).collect::<StringArray>()))
}

/// parse_ident: the parts of a qualified name, unquoted (a quoted part
/// as written, an unquoted one in lower case); None if it is malformed.
pub fn parse_ident(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
            part = part.trim().to_string();
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

fn parse_ident_fn(args: &[ArrayRef]) -> Result<ArrayRef> {
    let mut out = ListBuilder::new(StringBuilder::new());
    for s in texts(args)? {
        match s.as_deref().and_then(parse_ident) {
            Some(parts) => {
                for p in parts {
                    out.values().append_value(p);
                }
                out.append(true);
            }
            None => out.append(false),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// array_lower / array_upper of dimension 1: Arrow lists start at 1, so
/// the lower bound is 1 and the upper the length; null for an empty or
/// null array or any other dimension, as PostgreSQL gives.
fn bounds(args: &[ArrayRef], upper: bool) -> Result<ArrayRef> {
    let (Some(list), Some(dim)) = (args.first(), args.get(1)) else { return zero(args) };
    let dims = cast(dim, &DataType::Int64)?;
    let dims = dims.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    // Arrow's length kernel: the element count of each list, null for null.
    let lengths = cast(&datafusion::arrow::compute::kernels::length::length(list)?, &DataType::Int64)?;
    let lengths = lengths.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
    Ok(Arc::new(
        (0..lengths.len())
            .map(|i| {
                let len = if lengths.is_valid(i) { lengths.value(i) } else { 0 };
                (dims.is_valid(i) && dims.value(i) == 1 && len > 0).then(|| {
                    if upper {
                        i32::try_from(len).unwrap_or(i32::MAX)
                    } else {
                        1
                    }
                })
            })
            .collect::<Int32Array>(),
    ))
}

fn array_lower(args: &[ArrayRef]) -> Result<ArrayRef> {
    bounds(args, false)
}

fn array_upper(args: &[ArrayRef]) -> Result<ArrayRef> {
    bounds(args, true)
}

/// A function of no arguments answering `value`.
fn constant(ctx: &SessionContext, name: &str, value: ScalarValue) {
    let returns = value.data_type();
    ctx.register_udf(create_udf(
        name,
        vec![],
        returns,
        Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
    ));
}

/// current_schemas(include_implicit): the search path, with pg_catalog
/// first when asked for the implicit schemas too.
fn current_schemas(args: &[ArrayRef]) -> Result<ArrayRef> {
    let mut out = ListBuilder::new(StringBuilder::new());
    let implicit = match args.first() {
        Some(a) => cast(a, &DataType::Boolean)?.as_boolean().iter().collect::<Vec<_>>(),
        None => vec![Some(false)],
    };
    for i in implicit {
        if i == Some(true) {
            out.values().append_value("pg_catalog");
        }
        out.values().append_value("public");
        out.append(true);
    }
    Ok(Arc::new(out.finish()))
}

pub fn install(ctx: &SessionContext, database: &str) {
    constant(ctx, "current_database", ScalarValue::Utf8(Some(database.to_string())));
    constant(ctx, "current_schema", ScalarValue::Utf8(Some("public".into())));
    constant(ctx, "session_user", ScalarValue::Utf8(Some(OWNER.into())));
    // The server's own process (clients show it; nothing is signalled).
    constant(ctx, "pg_backend_pid", ScalarValue::Int32(Some(1)));
    let text_list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    ctx.register_udf(shim("current_schemas", &[1], text_list.clone(), current_schemas));
    ctx.register_udf(shim("pg_get_userbyid", &[1], DataType::Utf8, owner));
    for name in ["has_table_privilege", "has_schema_privilege", "has_database_privilege", "has_any_column_privilege"] {
        ctx.register_udf(shim(name, &[2, 3], DataType::Boolean, all_true));
    }
    ctx.register_udf(shim("has_column_privilege", &[3, 4], DataType::Boolean, all_true));
    ctx.register_udf(shim("has_function_privilege", &[2, 3], DataType::Boolean, all_true));
    ctx.register_udf(shim("pg_table_is_visible", &[1], DataType::Boolean, all_true));
    ctx.register_udf(shim("pg_relation_is_publishable", &[1], DataType::Boolean, all_true));
    ctx.register_udf(shim("pg_get_expr", &[2, 3], DataType::Utf8, empty_text));
    ctx.register_udf(shim("pg_get_partkeydef", &[1], DataType::Utf8, empty_text));
    ctx.register_udf(shim("pg_get_constraintdef", &[1, 2], DataType::Utf8, empty_text));
    ctx.register_udf(shim("pg_get_statisticsobjdef_columns", &[1], DataType::Utf8, null_text));
    ctx.register_udf(shim("pg_encoding_to_char", &[1], DataType::Utf8, encoding_name));
    for name in ["pg_relation_size", "pg_total_relation_size"] {
        ctx.register_udf(shim(name, &[1], DataType::Int64, no_storage));
    }
    ctx.register_udf(shim("pg_stat_get_numscans", &[1], DataType::Int32, zero));
    ctx.register_udf(shim("quote_ident", &[1], DataType::Utf8, quote_ident_fn));
    ctx.register_udf(shim("parse_ident", &[1, 2], text_list, parse_ident_fn));
    ctx.register_udf(shim("array_lower", &[2], DataType::Int32, array_lower));
    ctx.register_udf(shim("array_upper", &[2], DataType::Int32, array_upper));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_quote_and_parse_as_postgresql_does() {
        assert_eq!(quote_ident("sockets"), "sockets");
        assert_eq!(quote_ident("Sockets"), "\"Sockets\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident(""), "\"\"");
        assert_eq!(parse_ident("public.Sockets"), Some(vec!["public".to_string(), "sockets".to_string()]));
        assert_eq!(parse_ident("\"My.T\"\"x\".y"), Some(vec!["My.T\"x".to_string(), "y".to_string()]));
        assert_eq!(parse_ident("a..b"), None);
        assert_eq!(parse_ident("\"open"), None);
    }

    #[test]
    fn array_bounds_are_one_based() {
        let list: ArrayRef = Arc::new(datafusion::arrow::array::ListArray::from_iter_primitive::<
            datafusion::arrow::datatypes::Int32Type,
            _,
            _,
        >(vec![Some(vec![Some(1), Some(2), Some(3)]), Some(vec![]), None]));
        let dim: ArrayRef = Arc::new(Int32Array::from(vec![1, 1, 1]));
        let upper = array_upper(&[list.clone(), dim.clone()]).unwrap();
        let upper = upper.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(upper.iter().collect::<Vec<_>>(), vec![Some(3), None, None]);
        let lower = array_lower(&[list, dim]).unwrap();
        let lower = lower.as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        assert_eq!(lower.iter().collect::<Vec<_>>(), vec![Some(1), None, None]);
    }
}
