//! Saved queries: SQL files with comment headers.
//!
//! ```sql
//! -- name: port_owner
//! -- description: Who uses a port (lsof -i :PORT)
//! -- param: port 80
//! SELECT pid, process FROM sockets WHERE local_port = $port
//! ```
//!
//! `$NAME` placeholders are bound as values by DataFusion (never pasted
//! into the SQL text), so a parameter cannot change the statement.
//!
//! Lookup order for `sockql run NAME`: ./queries, then
//! $XDG_CONFIG_HOME/sockql/queries (~/.config/sockql/queries), then the
//! built-in set compiled from this repository's queries/ directory.
//!
//! sockql runs as root, often from a directory someone else can write, so
//! a directory is searched only when it and each file are owned by root or
//! the invoking user and writable by nobody else, only regular files (no
//! symlinks) are read, and a file's name is its query name: `zz.sql` with
//! `-- name: listeners` runs as `zz` (with a warning), never in place of
//! `listeners`. See [`crate::files`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datafusion::scalar::ScalarValue;
use thiserror::Error;

pub(crate) mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_queries.rs"));
}

/// A problem in a query file, located by file and line.
#[derive(Debug, Error, PartialEq)]
#[error("{file}:{line}: {message}")]
pub struct QueryFileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParamDecl {
    pub name: String,
    /// The default as written; `None` means the caller must give a value.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SavedQuery {
    pub name: String,
    pub description: String,
    pub params: Vec<ParamDecl>,
    /// The whole file text: headers are SQL comments, so line numbers in
    /// SQL errors are file line numbers.
    pub sql: String,
    /// Where it came from: a path, or `built-in:FILE`.
    pub origin: String,
    /// What an empty answer means (`-- empty: no findings`), said in
    /// table output instead of an empty table.
    pub empty: Option<String>,
    /// `-- metric: NAME TYPE HELP`: `sockql serve` exports the result as
    /// Prometheus metric families.
    pub metric: Option<MetricDecl>,
}

/// How a saved query's result is exported as metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDecl {
    /// A Prometheus metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
    pub name: String,
    pub kind: MetricKind,
    pub help: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
}

impl MetricDecl {
    fn parse(v: &str) -> Result<Self, String> {
        let mut parts = v.splitn(3, char::is_whitespace);
        let (name, kind, help) =
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("").trim());
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !valid {
            return Err(format!(
                "bad metric name '{name}': use letters, digits, '_' and ':', not starting with a digit"
            ));
        }
        let kind = match kind {
            "gauge" => MetricKind::Gauge,
            "counter" => MetricKind::Counter,
            other => return Err(format!("bad metric type '{other}': expected gauge or counter")),
        };
        if help.is_empty() {
            return Err("a metric needs help text: '-- metric: NAME TYPE HELP'".into());
        }
        Ok(MetricDecl { name: name.to_string(), kind, help: help.to_string() })
    }
}

/// A saved query's name: letters, digits, '_' and '-' (the `-- name:`
/// header and, for a file in a searched directory, its file name).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn header<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix(key)?.strip_prefix(':')?;
    Some(rest.trim())
}

/// The header comment lines at the top of a file (blank lines allowed).
fn header_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().take_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
}

/// True if `text` declares itself a saved query with a `-- name:` header.
pub fn has_name_header(text: &str) -> bool {
    header_lines(text).any(|l| header(l, "name").is_some())
}

/// `$name` placeholders in `sql`, with their 1-based line, found by
/// sqlparser's tokenizer: `$x` inside a string, quoted identifier or
/// comment is not a parameter. Text the tokenizer cannot read has none
/// (the SQL error comes when it is run).
pub fn placeholders(sql: &str) -> Vec<(String, usize)> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else { return Vec::new() };
    tokens
        .into_iter()
        .filter_map(|t| match t.token {
            Token::Placeholder(p) => {
                let name = p.strip_prefix('$')?;
                let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                ok.then(|| (name.to_string(), t.span.start.line as usize))
            }
            _ => None,
        })
        .collect()
}

impl SavedQuery {
    /// Parse a query file. `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, QueryFileError> {
        let err = |line: usize, message: String| QueryFileError { file: origin.to_string(), line, message };
        let (mut name, mut description, mut params, mut empty, mut metric) =
            (None, None, Vec::<ParamDecl>::new(), None, None);
        for (i, line) in header_lines(text).enumerate() {
            let t = line.trim();
            if let Some(v) = header(t, "name") {
                if !valid_name(v) {
                    return Err(err(i + 1, format!("bad query name '{v}': use letters, digits, '_' and '-'")));
                }
                name = Some(v.to_string());
            } else if let Some(v) = header(t, "description") {
                description = Some(v.to_string());
            } else if let Some(v) = header(t, "empty") {
                empty = Some(v.to_string());
            } else if let Some(v) = header(t, "metric") {
                metric = Some(MetricDecl::parse(v).map_err(|m| err(i + 1, m))?);
            } else if let Some(v) = header(t, "param") {
                let mut parts = v.splitn(2, char::is_whitespace);
                let pname = parts.next().unwrap_or("").trim_start_matches('$');
                if pname.is_empty() || !pname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(err(i + 1, format!("bad parameter header '{v}': expected '-- param: NAME [DEFAULT]'")));
                }
                if params.iter().any(|p| p.name == pname) {
                    return Err(err(i + 1, format!("parameter '{pname}' declared twice")));
                }
                let default = parts.next().map(str::trim).filter(|d| !d.is_empty()).map(str::to_string);
                params.push(ParamDecl { name: pname.to_string(), default });
            }
        }
        let Some(name) = name else {
            return Err(err(1, "missing '-- name: NAME' header".into()));
        };
        let Some(description) = description else {
            return Err(err(1, "missing '-- description: TEXT' header".into()));
        };
        for (p, line) in placeholders(text) {
            if !params.iter().any(|d| d.name == p) {
                return Err(err(line, format!("unknown parameter ${p}: declare it with '-- param: {p} DEFAULT'")));
            }
        }
        Ok(SavedQuery { name, description, params, sql: text.to_string(), origin: origin.to_string(), empty, metric })
    }

    /// A given value as its parameter's type, which the default's shows:
    /// a whole-number default wants a whole number, a decimal one a
    /// number. A port parameter (`port`, `*_port`) takes a service name
    /// from /etc/services and refuses numbers no port has.
    fn typed(&self, decl: &ParamDecl, given: &str) -> crate::Result<ScalarValue> {
        let value = param_value(given);
        let Some(default) = decl.default.as_deref() else { return Ok(value) };
        let name = &decl.name;
        let is_port = name == "port" || name.ends_with("_port");
        let refuse = |want: &str| {
            crate::err!(
                "--param {name}={given}: {} of saved query {} takes {want} (default {default})",
                name,
                self.name
            )
        };
        match (param_value(default), &value) {
            (ScalarValue::Int64(_), ScalarValue::Int64(Some(n))) if is_port && !(0..=65535).contains(n) => {
                Err(refuse("a port number from 0 to 65535 or a service name"))
            }
            (ScalarValue::Int64(_), ScalarValue::Int64(_)) => Ok(value),
            (ScalarValue::Int64(_), _) if is_port => match super::services::lookup(given.trim()) {
                Some(port) => Ok(ScalarValue::Int64(Some(port as i64))),
                None => Err(refuse("a port number or a service name from /etc/services")),
            },
            (ScalarValue::Int64(_), _) => Err(refuse("a whole number")),
            (ScalarValue::Float64(_), ScalarValue::Int64(Some(n))) => Ok(ScalarValue::Float64(Some(*n as f64))),
            (ScalarValue::Float64(_), ScalarValue::Float64(_)) => Ok(value),
            (ScalarValue::Float64(_), _) => Err(refuse("a number")),
            _ => Ok(value),
        }
    }

    /// Bind `given` (`name=value` pairs) over the defaults.
    pub fn bind(&self, given: &[(String, String)]) -> crate::Result<HashMap<String, ScalarValue>> {
        let mut values = HashMap::new();
        for (k, v) in given {
            if !self.params.iter().any(|p| &p.name == k) {
                let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                crate::bail!(
                    "unknown parameter '{k}' for saved query {}; its parameters are: {}",
                    self.name,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                );
            }
            let decl = self.params.iter().find(|p| &p.name == k).expect("checked above");
            values.insert(k.clone(), self.typed(decl, v)?);
        }
        for p in &self.params {
            if values.contains_key(&p.name) {
                continue;
            }
            match &p.default {
                Some(d) => values.insert(p.name.clone(), param_value(d)),
                None => {
                    crate::bail!("saved query {} needs a value for '{}': --param {}=VALUE", self.name, p.name, p.name)
                }
            };
        }
        Ok(values)
    }
}

/// A parameter's text as a typed value: integers and decimals become
/// numbers, 'quoted' text and anything else a string.
pub fn param_value(text: &str) -> ScalarValue {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return ScalarValue::Utf8(Some(inner.replace("''", "'")));
    }
    if let Ok(i) = t.parse::<i64>() {
        return ScalarValue::Int64(Some(i));
    }
    if let Ok(f) = t.parse::<f64>() {
        return ScalarValue::Float64(Some(f));
    }
    ScalarValue::Utf8(Some(t.to_string()))
}

/// Parse `k=v` as given to --param or \run.
pub fn parse_assignment(s: &str) -> crate::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().trim_start_matches('$').to_string(), v.to_string())),
        _ => crate::bail!("bad parameter '{s}': expected NAME=VALUE"),
    }
}

/// The directories searched, in order, before the built-in set.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("queries")];
    if let Some(c) = super::dirs::config_home() {
        dirs.push(c.join("sockql").join("queries"));
    }
    dirs
}

/// The `.sql` files of a searched directory, or none with one warning when
/// the directory is not trusted.
fn sql_files(dir: &Path) -> Vec<PathBuf> {
    match crate::files::trusted_dir(dir) {
        Ok(true) => {}
        Ok(false) => return Vec::new(),
        Err(e) => {
            let key = format!("untrusted-dir:{}", dir.display());
            // The server's own configuration, with its paths: said on this
            // process's stderr (the operator's), never to a client.
            sockql_collect::notice::once(
                &key,
                "warning",
                format!("not searching {} for saved queries: {e:#}", dir.display()),
            );
            return Vec::new();
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
}

/// Read a file the operator named (`-f`, `\i`): see [`crate::files`].
pub fn read_query_file(path: &Path) -> crate::Result<String> {
    crate::files::read_sql_file(path, crate::files::Read::Named)
}

/// Read and parse a saved query found in a searched directory. Its name is
/// the file's name: a different `-- name:` header is dropped, with a
/// warning, so a file cannot take another report's name.
pub fn load_file(path: &Path) -> crate::Result<SavedQuery> {
    let text = crate::files::read_sql_file(path, crate::files::Read::Discovered)?;
    let mut q = SavedQuery::parse(&path.display().to_string(), &text)?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if !valid_name(&stem) {
        crate::bail!("{}: a saved query's file name must be its name (letters, digits, '_' and '-')", path.display());
    }
    if q.name != stem {
        sockql_collect::notice::once(
            &format!("name-header:{}", path.display()),
            "warning",
            format!(
                "{}: its '-- name: {}' header is ignored; a saved query is named by its file: {stem}",
                path.display(),
                q.name
            ),
        );
        q.name = stem;
    }
    Ok(q)
}

/// SQL from a file: a saved query if it has headers (its parameters get
/// their defaults), else plain statements; errors name the file and line.
pub fn file_source(path: &Path, params: &[(String, String)]) -> crate::Result<super::engine::SqlSource> {
    let text = read_query_file(path)?;
    let origin = path.display().to_string();
    if has_name_header(&text) {
        return SavedQuery::parse(&origin, &text)?.source(params);
    }
    let params = params.iter().map(|(k, v)| (k.clone(), param_value(v))).collect();
    Ok(super::engine::SqlSource { text, origin: Some(origin), params, empty_note: None })
}

/// Every saved query visible from here, first found wins per name.
/// Files that fail to parse are reported as errors, not skipped silently.
pub fn all() -> Vec<Result<SavedQuery, crate::Error>> {
    let mut out: Vec<Result<SavedQuery, crate::Error>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |q: Result<SavedQuery, crate::Error>| match q {
        Ok(q) => {
            if seen.insert(q.name.clone()) {
                out.push(Ok(q));
            }
        }
        Err(e) => out.push(Err(e)),
    };
    for dir in search_dirs() {
        for f in sql_files(&dir) {
            push(load_file(&f));
        }
    }
    for (file, text) in builtin::BUILTIN {
        push(SavedQuery::parse(&format!("built-in:{file}"), text).map_err(Into::into));
    }
    out
}

/// The saved queries compiled into the binary, in file order: what every
/// host has, whatever its directories hold (the generated reference).
pub fn builtins() -> Vec<SavedQuery> {
    builtin::BUILTIN
        .iter()
        .filter_map(|(file, text)| SavedQuery::parse(&format!("built-in:{file}"), text).ok())
        .collect()
}

impl SavedQuery {
    /// This query ready to run, with `given` parameters over the defaults.
    pub fn source(&self, given: &[(String, String)]) -> crate::Result<super::engine::SqlSource> {
        Ok(super::engine::SqlSource {
            text: self.sql.clone(),
            origin: Some(self.origin.clone()),
            params: self.bind(given)?,
            empty_note: self.empty.clone(),
        })
    }
}

/// The saved queries as a result table: name, description, parameters, origin.
pub fn list_batch() -> datafusion::arrow::record_batch::RecordBatch {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let (mut names, mut descs, mut params, mut origins) = (vec![], vec![], vec![], vec![]);
    for q in all() {
        match q {
            Ok(q) => {
                names.push(q.name.clone());
                descs.push(q.description.clone());
                params.push(
                    q.params
                        .iter()
                        .map(|p| match &p.default {
                            Some(d) => format!("{}={d}", p.name),
                            None => p.name.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                origins.push(q.origin.clone());
            }
            Err(e) => {
                sockql_collect::notice::once(&e.to_string(), "warning", format!("skipping a bad saved query: {e:#}"))
            }
        }
    }
    let schema = Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("params", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(descs)),
        Arc::new(StringArray::from(params)),
        Arc::new(StringArray::from(origins)),
    ];
    datafusion::arrow::record_batch::RecordBatch::try_new(Arc::new(schema), columns).expect("list matches its schema")
}

/// Find a saved query by name.
pub fn find(name: &str) -> crate::Result<SavedQuery> {
    let mut names = Vec::new();
    for q in all() {
        match q {
            Ok(q) if q.name == name => return Ok(q),
            Ok(q) => names.push(q.name),
            Err(e) => {
                sockql_collect::notice::once(&e.to_string(), "warning", format!("skipping a bad saved query: {e:#}"))
            }
        }
    }
    crate::bail!("no saved query named '{name}'; saved queries are: {}", names.join(", "))
}

/// Names of the saved queries, for completion.
pub fn names() -> Vec<String> {
    all().into_iter().filter_map(|q| q.ok().map(|q| q.name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_headers_are_parsed_and_bad_ones_refused() {
        let q =
            SavedQuery::parse("m.sql", "-- name: m\n-- description: d\n-- metric: sockql_m gauge Some help\nSELECT 1")
                .unwrap();
        assert_eq!(
            q.metric,
            Some(MetricDecl { name: "sockql_m".into(), kind: MetricKind::Gauge, help: "Some help".into() })
        );
        for (header, want) in [
            ("9bad gauge h", "bad metric name"),
            ("sockql_m histogram h", "bad metric type"),
            ("sockql_m counter", "needs help text"),
        ] {
            let e =
                SavedQuery::parse("m.sql", &format!("-- name: m\n-- description: d\n-- metric: {header}\nSELECT 1"))
                    .unwrap_err();
            assert_eq!(e.line, 3);
            assert!(e.message.contains(want), "{header}: {}", e.message);
        }
    }

    const GOOD: &str = "-- name: port_owner\n-- description: who owns a port\n-- param: port 80\n-- param: state 'LISTEN'\nSELECT pid FROM sockets\nWHERE local_port = $port AND state = $state AND process <> '$notaparam' -- $nor_this\n";

    #[test]
    fn parses_headers_and_binds_typed_values() {
        let q = SavedQuery::parse("t.sql", GOOD).unwrap();
        assert_eq!(q.name, "port_owner");
        assert_eq!(q.params.len(), 2);
        let v = q.bind(&[("port".into(), "8080".into())]).unwrap();
        assert_eq!(v["port"], ScalarValue::Int64(Some(8080)));
        assert_eq!(v["state"], ScalarValue::Utf8(Some("LISTEN".into())));
        assert!(q
            .bind(&[("nope".into(), "1".into())])
            .unwrap_err()
            .to_string()
            .contains("its parameters are: port, state"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = SavedQuery::parse("x.sql", "SELECT 1").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (1, "missing '-- name: NAME' header"));
        let e = SavedQuery::parse("x.sql", "-- name: a\n-- description: d\nSELECT 1\nFROM t WHERE a = $missing\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "x.sql:4: unknown parameter $missing: declare it with '-- param: missing DEFAULT'");
        let e = SavedQuery::parse("x.sql", "-- name: a b\n").unwrap_err();
        assert_eq!(e.line, 1);
        let q = SavedQuery::parse("x.sql", "-- name: a\n-- description: d\n-- param: p\nSELECT $p\n").unwrap();
        assert!(q.bind(&[]).unwrap_err().to_string().contains("needs a value for 'p'"));
    }

    #[test]
    fn placeholders_skip_strings_and_comments() {
        let p = placeholders("SELECT $a, '$b', \"$c\" -- $d\n, $e_1 /* $f */");
        assert_eq!(p, vec![("a".to_string(), 1), ("e_1".to_string(), 2)]);
    }

    #[test]
    fn param_values() {
        assert_eq!(param_value("3.5"), ScalarValue::Float64(Some(3.5)));
        assert_eq!(param_value("'it''s'"), ScalarValue::Utf8(Some("it's".into())));
        assert_eq!(param_value("10.0.0.1"), ScalarValue::Utf8(Some("10.0.0.1".into())));
        assert_eq!(parse_assignment("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_assignment("=x").is_err());
    }

    #[test]
    fn every_built_in_query_parses() {
        assert!(!builtin::BUILTIN.is_empty());
        for (file, text) in builtin::BUILTIN {
            let q = SavedQuery::parse(file, text).unwrap();
            assert_eq!(format!("{}.sql", q.name), *file, "file name matches the name header");
        }
    }
}
