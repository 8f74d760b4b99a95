//! What PostgreSQL clients expect of the catalog besides the live tables:
//! pg_catalog and its functions (the modules below), and the server
//! settings clients read (`SHOW name`, `current_setting('name')`, as
//! Grafana's table list does).

pub mod client_sql;
mod definitions;
mod empty_queries;
mod functions;
mod relations;
mod roles;
pub mod rows;
mod rules;
pub mod schema;
mod type_names;
mod types;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};

use client_sql::ClientSql;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

use crate::query::engine::Engine;

/// Grafana's table list asks which schemas are on the search_path with a
/// set-returning form DataFusion cannot plan. sockql's search_path is
/// `public`: the subquery is `SELECT 'public'`.
const GRAFANA_SEARCH_PATH: &str = r#"SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
FROM
    generate_series(
        array_lower(string_to_array(current_setting('search_path'),','),1),
        array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s"#;

/// The tokens of `sql` that matter (no whitespace), or None.
fn significant(sql: &str) -> Option<Vec<Token>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    Some(tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect())
}

/// The statements of `text` if it holds Grafana's search_path subquery,
/// which is answered as `SELECT 'public'`; None for any other text.
pub fn with_search_path(parser: &ClientSql, text: &str) -> Option<Result<Vec<Statement>, ParserError>> {
    let pattern = significant(GRAFANA_SEARCH_PATH)?;
    let tokens = significant(text)?;
    let at = tokens.windows(pattern.len()).position(|w| w == pattern.as_slice())?;
    let mut out = tokens[..at].to_vec();
    out.extend(significant("SELECT 'public'")?);
    out.extend_from_slice(&tokens[at + pattern.len()..]);
    let spanned = out.into_iter().map(|token| TokenWithSpan { token, span: Span::empty() }).collect();
    Some(
        Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(spanned)
            .parse_statements()
            .map(|statements| statements.into_iter().map(|s| parser.rewrite(s)).collect()),
    )
}

/// The PostgreSQL release whose behaviour this server follows, as
/// `server_version_num` and the start of `server_version` say it.
const PG_VERSION: &str = "16.6";
const PG_VERSION_NUM: &str = "160006";

/// `server_version` (in the startup packet and `SHOW`): a PostgreSQL
/// release first, then what really answers in parentheses, as Debian's
/// PostgreSQL says "16.6 (Debian 16.6-1.pgdg120+1)". libpq (psql,
/// psycopg, pgcli) reads the leading numbers; pgjdbc and node-postgres
/// the same string.
pub fn server_version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{PG_VERSION} (sockql {}, Apache DataFusion {})",
            env!("CARGO_PKG_VERSION"),
            datafusion::DATAFUSION_VERSION
        )
    })
}

/// `version()` and `pg_catalog.version()`: PostgreSQL's form, which
/// SQLAlchemy matches with `PostgreSQL (\d+)\.(\d+)` (DataFusion's own
/// "Apache DataFusion 55.2.0, x86_64 on linux" made it refuse to connect).
pub fn version_text() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        format!(
            "PostgreSQL {PG_VERSION} (sockql {}, Apache DataFusion {}) on {}-{}",
            env!("CARGO_PKG_VERSION"),
            datafusion::DATAFUSION_VERSION,
            std::env::consts::ARCH,
            std::env::consts::OS
        )
    })
}

/// The parameters sent at login (ParameterStatus): pgwire's, with this
/// server's `server_version`.
pub fn server_parameters() -> pgwire::api::auth::DefaultServerParameterProvider {
    let mut p = pgwire::api::auth::DefaultServerParameterProvider::default();
    p.server_version = server_version().to_string();
    // As SHOW answers them (PostgreSQL's defaults; pgwire's differ).
    p.date_style = "ISO, MDY".into();
    p.time_zone = "UTC".into();
    p.default_transaction_read_only = true;
    p
}

/// The name `SHOW` answers under for the words a client wrote: SQL's
/// spellings (`SHOW TIME ZONE`, `SHOW TRANSACTION ISOLATION LEVEL`, as
/// SQLAlchemy sends) are PostgreSQL's settings of one word.
pub fn show_name(words: &str) -> String {
    let words = words.to_ascii_lowercase();
    match words.as_str() {
        "time zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        _ => words,
    }
}

/// A client's text as statements DataFusion plans: the compatibility
/// parser's rewrites (with Grafana's search_path and pg_catalog's
/// regclass names seen to first), then those psql's meta-commands need.
pub fn parse_client_sql(parser: &ClientSql, text: &str) -> Result<Vec<Statement>, ParserError> {
    let parsed =
        match with_search_path(parser, text).or_else(|| super::psql_rewrite::with_catalog_regclass(parser, text)) {
            Some(parsed) => parsed?,
            None => parser.parse(text)?,
        };
    Ok(parsed.into_iter().map(super::psql_rewrite::rewrite).collect())
}

/// The value of a PostgreSQL setting as this server reports it; None for
/// a name it does not know.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => server_version(),
        "server_version_num" => PG_VERSION_NUM,
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "search_path" => "public",
        "datestyle" => "ISO, MDY",
        "timezone" => "UTC",
        "max_identifier_length" => "63",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        // What drivers and shells read on connect (SQLAlchemy, pgcli,
        // DBeaver): PostgreSQL's defaults, which is how sockql answers.
        "intervalstyle" => "postgres",
        "bytea_output" => "hex",
        "extra_float_digits" => "1",
        "client_min_messages" => "notice",
        "in_hot_standby" => "off",
        "transaction_deferrable" | "default_transaction_deferrable" => "off",
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => "C",
        "max_index_keys" => "32",
        "block_size" => "8192",
        "jit" => "off",
        _ => return None,
    })
}

/// `current_setting(name)`: [`setting`], or an error naming the setting
/// (as PostgreSQL's "unrecognized configuration parameter").
fn current_setting(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let names = match &args[0] {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array()?,
    };
    let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
    let names = as_string_array(&names)?;
    let mut out = Vec::with_capacity(names.len());
    for name in names.iter() {
        match name {
            None => out.push(None),
            Some(n) => match setting(n) {
                Some(v) => out.push(Some(v)),
                None => return datafusion::common::plan_err!("unrecognized configuration parameter \"{n}\""),
            },
        }
    }
    let array: ArrayRef = Arc::new(StringArray::from(out));
    Ok(match &args[0] {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&array, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(array),
    })
}

/// The oid of a built-in type named as PostgreSQL's `to_regtype` takes
/// it (`int4`, `integer`, `pg_catalog.text`, `int4[]`); None for any
/// other name (an extension's type such as hstore: sockql has none).
fn regtype_oid(name: &str) -> Option<i32> {
    use std::collections::HashMap;
    static BY_NAME: std::sync::OnceLock<HashMap<String, u32>> = std::sync::OnceLock::new();
    // postgres-types knows every built-in type by oid (below 10000).
    let by_name = BY_NAME.get_or_init(|| {
        (0..10_000u32).filter_map(|oid| pgwire::api::Type::from_oid(oid).map(|t| (t.name().to_string(), oid))).collect()
    });
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    let (base, array) = match name.strip_suffix("[]") {
        Some(base) => (base.trim_end(), true),
        None => (name, false),
    };
    let base = match base {
        "integer" | "int" => "int4",
        "bigint" => "int8",
        "smallint" => "int2",
        "real" => "float4",
        "double precision" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" => "bpchar",
        "decimal" => "numeric",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        other => other,
    };
    let key = if array { format!("_{base}") } else { base.to_string() };
    by_name.get(key.as_str()).and_then(|&oid| i32::try_from(oid).ok())
}

/// `to_regtype(name)`: the type's oid, or NULL (psycopg's TypeInfo.fetch
/// asks it on connect under SQLAlchemy, for hstore).
fn to_regtype(args: &[ColumnarValue]) -> datafusion::error::Result<ColumnarValue> {
    let names = match &args[0] {
        ColumnarValue::Array(a) => a.clone(),
        ColumnarValue::Scalar(s) => s.to_array()?,
    };
    let names = datafusion::arrow::compute::cast(&names, &DataType::Utf8)?;
    let out: datafusion::arrow::array::Int32Array =
        as_string_array(&names)?.iter().map(|n| n.and_then(regtype_oid)).collect();
    let array: ArrayRef = Arc::new(out);
    Ok(match &args[0] {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(datafusion::scalar::ScalarValue::try_from_array(&array, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(array),
    })
}

/// `read_pcap('FILE')` for a network client: refused. It reads a file the
/// SQL names, which on the command line is the operator's own choice; a
/// client of the server (a --pg-group member, a password holder) must not
/// read files on this host as root, as `--allow-files` is never on here.
#[derive(Debug)]
struct NoFiles;

impl datafusion::catalog::TableFunctionImpl for NoFiles {
    fn call_with_args(
        &self,
        _args: datafusion::catalog::TableFunctionArgs,
    ) -> datafusion::error::Result<Arc<dyn datafusion::catalog::TableProvider>> {
        Err(datafusion::error::DataFusionError::External(Box::new(crate::query::policy::Refusal::by_front_end(
            "read_pcap reads files on the server's host, which PostgreSQL clients may not do (run it with sockql on the host)",
        ))))
    }
}

/// Add pg_catalog and the settings functions to a client's session, and
/// take away what reads files.
pub fn setup(engine: &Engine) -> anyhow::Result<()> {
    let ctx = engine.context();
    ctx.register_udtf(crate::tables::packets::read_pcap::NAME, Arc::new(NoFiles));
    let database = ctx.state().config().options().catalog.default_catalog.clone();
    let shared = Arc::new(schema::Shared {
        catalogs: Arc::downgrade(ctx.state().catalog_list()),
        oids: schema::Oids::default(),
    });
    ctx.catalog(&database)
        .ok_or_else(|| anyhow::anyhow!("no catalog {database}"))?
        .register_schema("pg_catalog", Arc::new(schema::PgCatalog { shared }))
        .map_err(|e| anyhow::anyhow!("cannot set up pg_catalog: {e}"))?;
    functions::install(ctx, &database);
    type_names::install(ctx);
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(current_setting),
    ));
    super::catalog_types::install(ctx)?;
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(to_regtype),
    ));
    // In place of DataFusion's version(), whose text clients cannot parse.
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Utf8(Some(version_text().to_string()))))
        }),
    ));
    super::psql_fns::install(ctx)?;
    Ok(())
}

/// Take pg_catalog out of a closing session's catalog (its overlays hold
/// the session's catalog list, which holds them).
pub fn teardown(engine: &Engine) {
    if let Some(catalog) = engine.context().catalog("datafusion") {
        let _ = catalog.deregister_schema("pg_catalog", true);
    }
    super::catalog_types::uninstall(engine.context());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafanas_search_path_is_public() {
        let parser = ClientSql::new();
        let grafana = format!(
            "SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND quote_ident(table_schema) IN ({GRAFANA_SEARCH_PATH})"
        );
        let statements = with_search_path(&parser, &grafana).unwrap().unwrap();
        let text = statements[0].to_string();
        assert!(text.contains("IN (SELECT 'public')"), "{text}");
        assert!(with_search_path(&parser, "SELECT 1").is_none());
    }

    #[test]
    fn versions_read_as_postgresql_16() {
        // SQLAlchemy's pattern for version().
        let v = version_text();
        assert!(v.starts_with("PostgreSQL 16.6 (sockql "), "{v}");
        assert!(v.contains(&format!("Apache DataFusion {}", datafusion::DATAFUSION_VERSION)), "{v}");
        // libpq reads "%d.%d" from server_version.
        assert!(server_version().starts_with("16.6 ("), "{}", server_version());
        assert_eq!(setting("server_version"), Some(server_version()));
        assert_eq!(show_name("TRANSACTION ISOLATION LEVEL"), "transaction_isolation");
        assert_eq!(show_name("time zone"), "timezone");
    }

    #[test]
    fn regtypes_are_built_in_types_only() {
        assert_eq!(regtype_oid("int4"), Some(23));
        assert_eq!(regtype_oid("integer"), Some(23));
        assert_eq!(regtype_oid("pg_catalog.text"), Some(25));
        assert_eq!(regtype_oid("int4[]"), Some(1007));
        assert_eq!(regtype_oid("timestamp with time zone"), Some(1184));
        assert_eq!(regtype_oid("hstore"), None);
        assert_eq!(regtype_oid(""), None);
    }

    #[test]
    fn settings_clients_read() {
        assert_eq!(setting("search_path"), Some("public"));
        assert_eq!(setting("TimeZone"), Some("UTC"));
        assert_eq!(setting("no_such_thing"), None);
        let v = current_setting(&[ColumnarValue::Scalar("search_path".into())]).unwrap();
        assert!(matches!(v, ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Utf8(Some(s))) if s == "public"));
        assert!(current_setting(&[ColumnarValue::Scalar("bogus".into())]).is_err());
    }
}
