//! What PostgreSQL clients expect of the catalog besides the live tables:
//! pg_catalog and its functions (datafusion-pg-catalog), and the server
//! settings clients read (`SHOW name`, `current_setting('name')`, as
//! Grafana's table list does).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::query::engine::Engine;

/// Grafana's table list asks which schemas are on the search_path with a
/// set-returning form DataFusion cannot plan. datafusion-pg-catalog
/// replaces it with `''`, so Grafana's table list comes back empty.
/// sockql's search_path is `public`: the subquery is `SELECT 'public'`.
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
pub fn with_search_path(parser: &PostgresCompatibilityParser, text: &str) -> Option<Result<Vec<Statement>, ParserError>> {
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

/// A client's text as statements DataFusion plans: the compatibility
/// parser's rewrites (with Grafana's search_path and pg_catalog's
/// regclass names seen to first), then those psql's meta-commands need.
pub fn parse_client_sql(parser: &PostgresCompatibilityParser, text: &str) -> Result<Vec<Statement>, ParserError> {
    let parsed = match with_search_path(parser, text).or_else(|| super::psql_rewrite::with_catalog_regclass(parser, text)) {
        Some(parsed) => parsed?,
        None => parser.parse(text)?,
    };
    Ok(parsed.into_iter().map(super::psql_rewrite::rewrite).collect())
}

/// The value of a PostgreSQL setting as this server reports it; None for
/// a name it does not know.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => "16.6",
        "server_version_num" => "160006",
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" => "on",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "search_path" => "public",
        "datestyle" => "ISO, MDY",
        "timezone" => "UTC",
        "max_identifier_length" => "63",
        "statement_timeout" | "lock_timeout" => "0",
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
    datafusion_pg_catalog::setup_pg_catalog(ctx, "datafusion", super::pg_overlay::Roles)
        .map_err(|e| anyhow::anyhow!("cannot set up pg_catalog: {e}"))?;
    ctx.register_udf(create_udf("current_setting", vec![DataType::Utf8], DataType::Utf8, Volatility::Stable, Arc::new(current_setting)));
    super::psql_fns::install(ctx)?;
    Ok(())
}

/// Take pg_catalog out of a closing session's catalog. It holds the
/// session's catalog list, which holds it: left in place, that cycle keeps
/// the whole catalog (its static tables, about 5 MB) after the session.
pub fn teardown(engine: &Engine) {
    if let Some(catalog) = engine.context().catalog("datafusion") {
        let _ = catalog.deregister_schema("pg_catalog", true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafanas_search_path_is_public() {
        let parser = PostgresCompatibilityParser::new();
        let grafana = format!(
            "SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND quote_ident(table_schema) IN ({GRAFANA_SEARCH_PATH})"
        );
        let statements = with_search_path(&parser, &grafana).unwrap().unwrap();
        let text = statements[0].to_string();
        assert!(text.contains("IN (SELECT 'public')"), "{text}");
        assert!(with_search_path(&parser, "SELECT 1").is_none());
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
