//! PostgreSQL type names in client SQL that DataFusion's planner rejects:
//! the OID types (`regclass`, `regtype`, `oid`, ...), which are int4 here
//! as in pg_catalog's columns (`c.oid::regclass`, `t.typrelid::oid`), and
//! builtins written with their schema (`pg_catalog.text`, psql's casts).
//! Also generate_series over int4 bounds (`generate_series(1,
//! array_upper(...))`): DataFusion's takes int8 literals only, and calls
//! the table function while planning, so its arguments are widened there.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{DataType as SqlType, ObjectNamePart};

/// PostgreSQL's OID types.
const OID_TYPES: &[&str] = &[
    "oid",
    "regproc",
    "regprocedure",
    "regoper",
    "regoperator",
    "regclass",
    "regtype",
    "regnamespace",
    "regrole",
    "regconfig",
    "regdictionary",
    "regcollation",
];

/// The Arrow type of builtin `name` written `pg_catalog.name`.
fn builtin(name: &str) -> Option<DataType> {
    Some(match name {
        "bool" | "boolean" => DataType::Boolean,
        "int2" | "smallint" => DataType::Int16,
        "int4" | "integer" | "int" => DataType::Int32,
        "int8" | "bigint" => DataType::Int64,
        "float4" | "real" => DataType::Float32,
        "float8" => DataType::Float64,
        "text" | "varchar" | "bpchar" | "char" | "name" => DataType::Utf8,
        "bytea" => DataType::Binary,
        _ => return None,
    })
}

#[derive(Debug)]
struct PgTypes;

impl TypePlanner for PgTypes {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<Arc<Field>>> {
        let (parts, args) = match sql_type {
            SqlType::Regclass => return Ok(Some(Arc::new(Field::new("", DataType::Int32, true)))),
            SqlType::Custom(name, args) => (&name.0, args),
            _ => return Ok(None),
        };
        if !args.is_empty() {
            return Ok(None);
        }
        let names: Vec<String> = parts
            .iter()
            .filter_map(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let (schema, name) = match names.as_slice() {
            [name] => (None, name.as_str()),
            [schema, name] => (Some(schema.as_str()), name.as_str()),
            _ => return Ok(None),
        };
        if OID_TYPES.contains(&name) && matches!(schema, None | Some("pg_catalog")) {
            // No metadata on the cast's field: DataFusion 55 takes a cast's
            // logical field from its source and its physical one from the
            // target, and a difference fails the optimizer's schema check.
            return Ok(Some(Arc::new(Field::new("", DataType::Int32, true))));
        }
        Ok(match schema {
            Some("pg_catalog") => builtin(name).map(|t| Arc::new(Field::new("", t, true))),
            _ => None,
        })
    }
}

/// generate_series / range with int4 literal bounds widened to int8.
#[derive(Debug)]
struct WidenedBounds(Arc<dyn TableFunctionImpl>);

impl TableFunctionImpl for WidenedBounds {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let widened: Vec<Expr> = args
            .exprs()
            .iter()
            .map(|e| match e {
                Expr::Literal(ScalarValue::Int32(v), meta) => {
                    Expr::Literal(ScalarValue::Int64(v.map(i64::from)), meta.clone())
                }
                other => other.clone(),
            })
            .collect();
        self.0.call_with_args(TableFunctionArgs::new(&widened, args.session()))
    }
}

pub fn install(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let existing = state.read().clone();
    *state.write() = SessionStateBuilder::new_from_existing(existing).with_type_planner(Arc::new(PgTypes)).build();
    for name in ["generate_series", "range"] {
        let inner = ctx.state().table_functions().get(name).map(|f| Arc::clone(f.function()));
        if let Some(inner) = inner {
            ctx.register_udtf(name, Arc::new(WidenedBounds(inner)));
        }
    }
}
