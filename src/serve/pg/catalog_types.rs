//! Types in the catalog for PostgreSQL clients that read it (pgcli,
//! harlequin, any information_schema reader): PostgreSQL's
//! information_schema.columns and pg_attribute types
//! ([`super::information_schema`], catalog/relations.rs), format_type()
//! from the same table as RowDescription ([`super::type_catalog`]), and
//! what regtype casts print: `x::regtype::text` and
//! `COALESCE(a::regtype[], b::regtype[])::text[]` give type names
//! (`bigint`), as PostgreSQL's regtype output does, where the oids were
//! planned as plain integers (and pg_proc's argument-type lists, text in
//! pg_catalog, failed to cast at all).

use crate::query::ast_walk::WalkMut;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::catalog::client_sql::ClientSql;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Builder, Int64Array, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
use datafusion::common::cast::as_int64_array;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, DataType as SqlType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments,
    ObjectNamePart, Statement, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::parser::ParserError;

/// Install the catalog's PostgreSQL types in a session whose pg_catalog
/// is set up.
pub fn install(ctx: &SessionContext) -> anyhow::Result<()> {
    super::information_schema::install(ctx).map_err(|e| anyhow::anyhow!("cannot set up information_schema: {e}"))?;
    for f in [Oids::FORMAT_TYPE, Oids::REGTYPE_NAME, Oids::REGTYPE_NAMES, Oids::OID_ARRAY, Oids::REGTYPE_ARRAY] {
        ctx.register_udf(ScalarUDF::new_from_impl(Oids::new(f)));
    }
    Ok(())
}

/// Undo [`install`]'s reference cycles (see catalog::teardown).
pub fn uninstall(ctx: &SessionContext) {
    super::information_schema::uninstall(ctx);
}

/// The functions over type oids.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Oids {
    name: &'static str,
    signature: Signature,
}

impl Oids {
    /// format_type(oid, typmod): PostgreSQL's name of a type.
    const FORMAT_TYPE: &str = "format_type";
    /// What `oid::regtype::text` prints.
    const REGTYPE_NAME: &str = "_pg_regtype_name";
    /// What `oids::regtype[]::text[]` prints.
    const REGTYPE_NAMES: &str = "_pg_regtype_names";
    /// `x::oid[]` (or regclass[] ...): a list of oids from a list or from
    /// the text of one (`[23, 25]`, oidvector's `23 25`, `{23,25}`).
    const OID_ARRAY: &str = "_pg_oid_array";
    /// `x::regtype[]`, the same as [`Self::OID_ARRAY`], marked so that
    /// its `::text[]` prints names.
    const REGTYPE_ARRAY: &str = "_pg_regtype_array";

    fn new(name: &'static str) -> Self {
        let arity = if name == Self::FORMAT_TYPE { 2 } else { 1 };
        Oids { name, signature: Signature::any(arity, Volatility::Immutable) }
    }
}

/// A type oid as regtype prints it: the name, `-` for 0, the number
/// itself for an oid no type has.
fn regtype_text(oid: i64) -> String {
    if oid == 0 {
        return "-".into();
    }
    u32::try_from(oid).ok().and_then(|o| super::type_catalog::format_type(o, -1)).unwrap_or_else(|| oid.to_string())
}

/// The integers in a text list of oids, whatever its brackets.
fn oids_in(text: &str) -> Vec<Option<i32>> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '-')).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect()
}

fn as_int64(array: &ArrayRef) -> datafusion::error::Result<ArrayRef> {
    Ok(datafusion::arrow::compute::cast(array, &DataType::Int64)?)
}

/// `array` (text or a list) as a list of Int64 oids per row.
fn oid_lists(array: &ArrayRef) -> datafusion::error::Result<Vec<Option<Vec<Option<i64>>>>> {
    let n = array.len();
    match array.data_type() {
        DataType::Null => Ok(vec![None; n]),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            Ok((0..n)
                .map(|i| {
                    text.is_valid(i).then(|| oids_in(text.value(i)).into_iter().map(|o| o.map(i64::from)).collect())
                })
                .collect())
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let list = datafusion::arrow::compute::cast(
                array,
                &DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
            )?;
            let list = list.as_list::<i32>();
            Ok((0..n)
                .map(|i| {
                    list.is_valid(i).then(|| {
                        let values = list.value(i);
                        let values = values.as_primitive::<Int64Type>();
                        (0..values.len()).map(|j| values.is_valid(j).then(|| values.value(j))).collect()
                    })
                })
                .collect())
        }
        _ => {
            let single = as_int64(array)?;
            let single = as_int64_array(&single)?;
            Ok((0..n).map(|i| single.is_valid(i).then(|| vec![Some(single.value(i))])).collect())
        }
    }
}

impl ScalarUDFImpl for Oids {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match self.name {
            Self::FORMAT_TYPE | Self::REGTYPE_NAME => DataType::Utf8,
            Self::REGTYPE_NAMES => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            _ => DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays: Vec<ArrayRef> =
            args.args.iter().map(|a| a.to_array(rows)).collect::<datafusion::error::Result<_>>()?;
        let Some(first) = arrays.first() else {
            return datafusion::common::exec_err!("{} needs an argument", self.name);
        };
        let out: ArrayRef = match self.name {
            Self::FORMAT_TYPE | Self::REGTYPE_NAME => {
                let oids = as_int64(first)?;
                let oids: &Int64Array = as_int64_array(&oids)?;
                let typmods = match arrays.get(1) {
                    Some(m) => Some(as_int64(m)?),
                    None => None,
                };
                let typmods = typmods.as_ref().map(|m| as_int64_array(m.as_ref())).transpose()?;
                let mut out = StringBuilder::new();
                for i in 0..oids.len() {
                    if oids.is_null(i) {
                        out.append_null();
                        continue;
                    }
                    let oid = oids.value(i);
                    if self.name == Self::REGTYPE_NAME {
                        out.append_value(regtype_text(oid));
                        continue;
                    }
                    let typmod = typmods.filter(|m| m.is_valid(i)).map_or(-1, |m| m.value(i));
                    let typmod = i32::try_from(typmod).unwrap_or(-1);
                    let name = u32::try_from(oid).ok().and_then(|o| super::type_catalog::format_type(o, typmod));
                    out.append_value(name.as_deref().unwrap_or("???"));
                }
                Arc::new(out.finish())
            }
            Self::REGTYPE_NAMES => {
                let mut out = ListBuilder::new(StringBuilder::new());
                for row in oid_lists(first)? {
                    match row {
                        None => out.append_null(),
                        Some(oids) => {
                            for oid in oids {
                                out.values().append_option(oid.map(regtype_text));
                            }
                            out.append(true);
                        }
                    }
                }
                Arc::new(out.finish())
            }
            _ => {
                let mut out = ListBuilder::new(Int32Builder::new());
                for row in oid_lists(first)? {
                    match row {
                        None => out.append_null(),
                        Some(oids) => {
                            for oid in oids {
                                out.values().append_option(oid.and_then(|o| i32::try_from(o).ok()));
                            }
                            out.append(true);
                        }
                    }
                }
                Arc::new(out.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// pgcli's casing query (pgcli 4.7, pgexecute.py `casing`): the words of
/// the source of SQL and PL/pgSQL functions outside pg_catalog. sockql has
/// none (its pg_proc is PostgreSQL's built-ins, all in pg_catalog), so the
/// answer is no rows; DataFusion cannot plan the query itself
/// (regexp_split_to_table, and columns named by PostgreSQL's implicit
/// `count` and `row_number`).
const PGCLI_CASING: &str = r"WITH Words AS (
                SELECT regexp_split_to_table(prosrc, '\W+') AS Word, COUNT(1)
                FROM pg_catalog.pg_proc P
                JOIN pg_catalog.pg_namespace N ON N.oid = P.pronamespace
                JOIN pg_catalog.pg_language L ON L.oid = P.prolang
                WHERE L.lanname IN ('sql', 'plpgsql')
                AND N.nspname NOT IN ('pg_catalog', 'information_schema')
                GROUP BY Word
            ),
            OrderWords AS (
                SELECT Word,
                    ROW_NUMBER() OVER(PARTITION BY LOWER(Word) ORDER BY Count DESC)
                FROM Words
                WHERE Word ~* '.*[a-z].*'
            ),
            Names AS (
                SELECT attname AS Name
                FROM pg_catalog.pg_attribute
                UNION
                SELECT relname
                FROM pg_catalog.pg_class
                UNION
                SELECT proname
                FROM pg_catalog.pg_proc
                UNION
                SELECT typname
                FROM pg_catalog.pg_type
                UNION
                SELECT nspname
                FROM pg_catalog.pg_namespace
                UNION
                SELECT unnest(proargnames)
                FROM pg_proc
            )
            SELECT Word
            FROM OrderWords
            WHERE LOWER(Word) IN (SELECT Name FROM Names)
            AND Row_Number = 1";

/// The statements answering `text` if it is a client's catalog query that
/// is answered another way (pgcli's casing query); None for any other.
pub fn replaced(parser: &ClientSql, text: &str) -> Option<Result<Vec<Statement>, ParserError>> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let significant = |sql: &str| -> Option<Vec<Token>> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
        Some(tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon)).collect())
    };
    (significant(text)? == significant(PGCLI_CASING)?).then(|| parser.parse("SELECT NULL::TEXT AS word WHERE false"))
}

/// Rewrite the regtype casts of `statements` (see the module's comment).
pub fn rewrite(mut statements: Vec<Statement>) -> Vec<Statement> {
    for s in &mut statements {
        let _ = s.visit(&mut WalkMut(&mut RegtypeCasts));
    }
    statements
}

struct RegtypeCasts;

/// The last name of a custom SQL type (`pg_catalog.regtype` -> regtype).
fn custom_name(t: &SqlType) -> Option<String> {
    match t {
        SqlType::Custom(name, args) if args.is_empty() => match name.0.last()? {
            ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
            _ => None,
        },
        SqlType::Regclass => Some("regclass".into()),
        _ => None,
    }
}

/// The element type of an array SQL type.
fn array_element(t: &SqlType) -> Option<&SqlType> {
    match t {
        SqlType::Array(
            ArrayElemTypeDef::SquareBracket(e, _)
            | ArrayElemTypeDef::AngleBracket(e)
            | ArrayElemTypeDef::Parenthesis(e),
        ) => Some(e),
        _ => None,
    }
}

fn is_text(t: &SqlType) -> bool {
    matches!(t, SqlType::Text | SqlType::Varchar(_) | SqlType::String(_))
        || custom_name(t).is_some_and(|n| matches!(n.as_str(), "text" | "varchar" | "name"))
}

const OID_ALIASES: &[&str] = &[
    "oid",
    "regclass",
    "regproc",
    "regprocedure",
    "regoper",
    "regoperator",
    "regtype",
    "regnamespace",
    "regrole",
    "regconfig",
    "regdictionary",
    "regcollation",
];

/// `name(args)` (psql_rewrite.rs builds calls for psql's rewrites too).
fn call(name: &str, args: Vec<Expr>) -> Expr {
    super::psql_rewrite::call(name, args, vec![])
}

fn function_name(f: &Function) -> Option<String> {
    match f.name.0.last()? {
        ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        _ => None,
    }
}

fn function_args(f: &Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// `e` is a regtype[] value: `x::regtype[]` (already rewritten), or a
/// COALESCE of them.
fn is_regtype_array(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_regtype_array(inner),
        Expr::Function(f) => match function_name(f).as_deref() {
            Some(Oids::REGTYPE_ARRAY) => true,
            Some("coalesce") => {
                let args = function_args(f);
                !args.is_empty() && args.iter().all(|a| is_regtype_array(a))
            }
            _ => false,
        },
        _ => false,
    }
}

/// `e` is a regtype: `x::regtype`.
fn is_regtype(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_regtype(inner),
        Expr::Cast { data_type, .. } => custom_name(data_type).as_deref() == Some("regtype"),
        _ => false,
    }
}

impl VisitorMut for RegtypeCasts {
    type Break = ();

    /// Bottom up: an inner `::regtype[]` is rewritten before the
    /// `::text[]` around it is looked at.
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::Cast { expr: inner, data_type, .. } = expr else { return ControlFlow::Continue(()) };
        let replacement = if let Some(element) = array_element(data_type) {
            match custom_name(element) {
                Some(alias) if OID_ALIASES.contains(&alias.as_str()) => {
                    let name = if alias == "regtype" { Oids::REGTYPE_ARRAY } else { Oids::OID_ARRAY };
                    Some(call(name, vec![(**inner).clone()]))
                }
                _ if is_text(element) && is_regtype_array(inner) => {
                    Some(call(Oids::REGTYPE_NAMES, vec![(**inner).clone()]))
                }
                _ => None,
            }
        } else if is_text(data_type) && is_regtype(inner) {
            Some(call(Oids::REGTYPE_NAME, vec![(**inner).clone()]))
        } else {
            None
        };
        if let Some(r) = replacement {
            *expr = r;
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let parser = ClientSql::new();
        rewrite(parser.parse(sql).unwrap()).iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn regtype_casts_print_names() {
        let sql = rewritten("SELECT COALESCE(proallargtypes::regtype[], proargtypes::regtype[])::text[], prorettype::regtype::text AS r FROM pg_proc");
        assert!(
            sql.contains(
                "_pg_regtype_names(COALESCE(_pg_regtype_array(proallargtypes), _pg_regtype_array(proargtypes)))"
            ),
            "{sql}"
        );
        assert!(sql.to_ascii_lowercase().contains("_pg_regtype_name(prorettype::regtype) as r"), "{sql}");
        let plain = rewritten("SELECT x::int4::text, y::oid[] FROM t");
        assert!(plain.contains("_pg_oid_array(y)") && !plain.contains("_pg_regtype"), "{plain}");
    }

    #[test]
    fn oid_lists_from_text() {
        assert_eq!(oids_in("[1034, 26, 25]"), vec![Some(1034), Some(26), Some(25)]);
        assert_eq!(oids_in("25 23 23"), vec![Some(25), Some(23), Some(23)]);
        assert_eq!(oids_in("{}"), vec![]);
        assert_eq!(regtype_text(2276), "any");
        assert_eq!(regtype_text(1184), "timestamp with time zone");
        assert_eq!(regtype_text(0), "-");
        assert_eq!(regtype_text(987_654), "987654");
    }

    #[test]
    fn pgcli_casing_is_recognised() {
        let parser = ClientSql::new();
        assert!(replaced(&parser, &format!("\n   {PGCLI_CASING};\n")).is_some());
        assert!(replaced(&parser, "SELECT 1").is_none());
    }
}
