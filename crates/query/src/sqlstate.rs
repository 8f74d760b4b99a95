//! The SQLSTATE of an error: the five-character code a PostgreSQL client
//! (and its user's code) acts on, taken from the error's types wherever
//! it has them. The PostgreSQL endpoint sends it; a front end may show it.
//!
//! Typed first: sockql's own errors (a policy refusal, a bound, a
//! timeout, the kernel refusing a reader), then DataFusion's root cause
//! (a parse error, a missing column, an Arrow cast or division by zero,
//! the memory pool). DataFusion's planning errors are only text
//! (`DataFusionError::Plan(String)`): for those, and those alone, the
//! message's fixed wording decides (a missing table, no such function or
//! operator), and anything not recognised is XX000 (internal_error).

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::engine::TimedOut;
use crate::policy::Refusal;
use crate::statement_size::TooLarge;
use crate::statements::StatementError;
use crate::Error;

/// The codes sockql sends (PostgreSQL's Appendix A names).
pub mod code {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const INVALID_DATETIME_FORMAT: &str = "22007";
    pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const INVALID_REGULAR_EXPRESSION: &str = "2201B";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const QUERY_CANCELED: &str = "57014";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const INTERNAL_ERROR: &str = "XX000";
}

/// The SQLSTATE of `e` (a front end's error, which may hold a query
/// [`Error`]), from the first of its causes that has one.
pub fn sqlstate(e: &impl crate::error::AsError) -> &'static str {
    of_chain(e.as_error())
}

impl Error {
    /// This error's SQLSTATE, from the first of its causes that has one.
    pub fn sqlstate(&self) -> &'static str {
        of_chain(self)
    }
}

fn of_chain(e: &(dyn std::error::Error + 'static)) -> &'static str {
    std::iter::successors(Some(e), |c| c.source()).find_map(of_cause).unwrap_or(code::INTERNAL_ERROR)
}

/// A query error's code, by its kind. Contexts, sockql's own messages,
/// I/O and a cancelled run have none of their own: the chain goes on.
fn of_error(e: &Error) -> Option<&'static str> {
    match e {
        Error::Refused(_) => Some(code::INSUFFICIENT_PRIVILEGE),
        Error::Statement(s) => Some(of_statement(s)),
        Error::TooLarge(_) => Some(code::PROGRAM_LIMIT_EXCEEDED),
        Error::TimedOut(_) => Some(code::QUERY_CANCELED),
        Error::Collect(c) => of_collect(c),
        Error::DataFusion(df) => of_datafusion(df.find_root()),
        Error::Arrow(arrow) => of_arrow(arrow),
        // A front end's own error, as it was.
        Error::Sink(inner) => of_cause(inner.as_ref()),
        Error::QueryFile(_)
        | Error::Cancelled
        | Error::Io(_)
        | Error::Errno(_)
        | Error::Invalid(_)
        | Error::Context { .. } => None,
    }
}

fn of_statement(e: &StatementError) -> &'static str {
    match e {
        // The parse error inside: DataFusion's own, below.
        StatementError::Parse(df) => of_datafusion(df.find_root()).unwrap_or(code::INTERNAL_ERROR),
        StatementError::TooDeepToParse => code::STATEMENT_TOO_COMPLEX,
        _ => code::PROGRAM_LIMIT_EXCEEDED,
    }
}

/// The kernel refused a reader (a privileged source for a user that is
/// not root).
fn of_collect(e: &sockql_collect::Error) -> Option<&'static str> {
    matches!(e.errno(), Some(libc::EPERM) | Some(libc::EACCES)).then_some(code::INSUFFICIENT_PRIVILEGE)
}

/// One cause's code, if its type (or, for DataFusion's text-only plan
/// errors, its wording) says. A query [`Error`] by its variant; anything
/// else (an error that came back inside DataFusion's `External`: a
/// refusal made while planning by a table function, a bound inside a
/// scalar function; a front end's own) by its type.
fn of_cause(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(e) = cause.downcast_ref::<Error>() {
        return of_error(e);
    }
    if cause.is::<Refusal>() {
        return Some(code::INSUFFICIENT_PRIVILEGE);
    }
    if let Some(e) = cause.downcast_ref::<StatementError>() {
        return match e {
            StatementError::Parse(df) => of_datafusion(df.find_root()),
            other => Some(of_statement(other)),
        };
    }
    if cause.is::<TooLarge>() {
        return Some(code::PROGRAM_LIMIT_EXCEEDED);
    }
    if cause.is::<TimedOut>() {
        return Some(code::QUERY_CANCELED);
    }
    if let Some(e) = cause.downcast_ref::<sockql_collect::Error>() {
        if let Some(found) = of_collect(e) {
            return Some(found);
        }
    }
    if let Some(df) = cause.downcast_ref::<DataFusionError>() {
        // The root cause says what is wrong; DataFusion's wrappers
        // (Context, Diagnostic, Shared) only where it was found.
        if let Some(found) = of_datafusion(df.find_root()) {
            return Some(found);
        }
    }
    if let Some(arrow) = cause.downcast_ref::<ArrowError>() {
        return of_arrow(arrow);
    }
    None
}

fn of_datafusion(e: &DataFusionError) -> Option<&'static str> {
    Some(match e {
        DataFusionError::SQL(parse, _) => match parse.as_ref() {
            ParserError::RecursionLimitExceeded => code::STATEMENT_TOO_COMPLEX,
            ParserError::TokenizerError(_) | ParserError::ParserError(_) => code::SYNTAX_ERROR,
        },
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => code::UNDEFINED_COLUMN,
            SchemaError::AmbiguousReference { .. } => code::AMBIGUOUS_COLUMN,
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => {
                code::DUPLICATE_COLUMN
            }
        },
        DataFusionError::ArrowError(arrow, _) => return of_arrow(arrow),
        DataFusionError::ResourcesExhausted(_) => code::OUT_OF_MEMORY,
        DataFusionError::NotImplemented(_) => code::FEATURE_NOT_SUPPORTED,
        DataFusionError::Plan(text) | DataFusionError::Execution(text) => return of_text(text),
        // sockql's own error inside a query: its type, above. The regex
        // crate's error has no type sockql can name (not a dependency of
        // its own): its fixed first words.
        DataFusionError::External(inner) => {
            return of_cause(inner.as_ref()).or_else(|| {
                inner.to_string().starts_with("regex parse error").then_some(code::INVALID_REGULAR_EXPRESSION)
            })
        }
        _ => return None,
    })
}

fn of_arrow(e: &ArrowError) -> Option<&'static str> {
    Some(match e {
        ArrowError::DivideByZero => code::DIVISION_BY_ZERO,
        ArrowError::ArithmeticOverflow(_) => code::NUMERIC_VALUE_OUT_OF_RANGE,
        ArrowError::CastError(text) | ArrowError::ParseError(text) => of_cast(text),
        ArrowError::ExternalError(inner) => return of_cause(inner.as_ref()),
        ArrowError::ComputeError(text) => return of_text(text),
        _ => return None,
    })
}

/// A failed cast or parse. Arrow says which by type and by wording
/// (arrow-cast 59): "Cannot cast string 'x' to value of Int32 type" (the
/// text is not a number, or a number too large for the type), "Can't
/// cast value 300 to type Int8" (a value out of the type's range),
/// "Error parsing timestamp from 'x'" (a date or time).
fn of_cast(text: &str) -> &'static str {
    // The target type is named after the value, which may hold any text.
    let target = text.rsplit_once(" to value of ").or_else(|| text.rsplit_once(" to type ")).map_or("", |(_, t)| t);
    let datetime = |t: &str| {
        let t = t.to_ascii_lowercase();
        ["timestamp", "date", "time", "interval", "duration"].iter().any(|w| t.starts_with(w))
    };
    if datetime(target) || text.strip_prefix("Error parsing ").is_some_and(datetime) {
        return code::INVALID_DATETIME_FORMAT;
    }
    if text.starts_with("Can't cast value") {
        return code::NUMERIC_VALUE_OUT_OF_RANGE;
    }
    // A string that is a number the type cannot hold.
    let quoted =
        text.strip_prefix("Cannot cast string '").and_then(|rest| rest.rsplit_once("' to value of ")).map(|(v, _)| v);
    let numeric = |v: &str| {
        let v = v.trim().trim_start_matches(['-', '+']);
        !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')
    };
    if quoted.is_some_and(numeric) {
        return code::NUMERIC_VALUE_OUT_OF_RANGE;
    }
    code::INVALID_TEXT_REPRESENTATION
}

/// DataFusion's planning and execution errors carry no type: their fixed
/// wording (datafusion-sql, -expr and -functions 55) decides.
fn of_text(text: &str) -> Option<&'static str> {
    let has = |s: &str| text.contains(s);
    Some(if has("table '") && has("not found") {
        code::UNDEFINED_TABLE
    } else if has("already exists") {
        code::DUPLICATE_TABLE
    } else if has("Invalid function")
        || has("No function matches")
        || has("Cannot coerce arithmetic expression")
        || has("is not supported for types")
        || has("There isn't a common type")
    {
        code::UNDEFINED_FUNCTION
    } else if has("Divide by zero") || has("Division by zero") {
        code::DIVISION_BY_ZERO
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::engine::{Engine, Limits, Policy, QueryRunner, SqlSource};
    use sockql_tables::SourceOptions;

    /// The SQLSTATE of running `sql` for real, through the engine.
    async fn code_of(engine: &Engine, sql: &str) -> &'static str {
        match engine.run(&SqlSource::inline(sql)).await {
            Ok(_) => panic!("{sql}: no error"),
            Err(e) => e.sqlstate(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_errors_get_postgresql_codes() {
        let engine = Engine::new(&SourceOptions::default()).unwrap();
        let cases = [
            ("SELECT nosuchcolumn FROM sockets", code::UNDEFINED_COLUMN),
            ("SELECT * FROM nosuchtable", code::UNDEFINED_TABLE),
            ("SELECT * FROM public.nosuchtable", code::UNDEFINED_TABLE),
            ("SELECT 'a' + 1", code::UNDEFINED_FUNCTION),
            ("SELECT nosuchfn(1)", code::UNDEFINED_FUNCTION),
            ("SELECT upper(1, 2)", code::UNDEFINED_FUNCTION),
            ("SELEC 1", code::SYNTAX_ERROR),
            ("SELECT (1", code::SYNTAX_ERROR),
            ("SELECT 1/0", code::DIVISION_BY_ZERO),
            ("SELECT value / (value - 1) FROM range(3)", code::DIVISION_BY_ZERO),
            ("SELECT 'x'::int", code::INVALID_TEXT_REPRESENTATION),
            ("SELECT 'update'::int", code::INVALID_TEXT_REPRESENTATION),
            ("SELECT 300::tinyint", code::NUMERIC_VALUE_OUT_OF_RANGE),
            ("SELECT '99999999999'::int", code::NUMERIC_VALUE_OUT_OF_RANGE),
            ("SELECT 'x'::timestamp", code::INVALID_DATETIME_FORMAT),
            ("SELECT '2024-13-45'::date", code::INVALID_DATETIME_FORMAT),
            ("SELECT to_timestamp('x')", code::INVALID_DATETIME_FORMAT),
            ("SELECT value FROM range(3) WHERE value::text ~ '('", code::INVALID_REGULAR_EXPRESSION),
            ("SELECT 1 FROM sockets JOIN processes ON pid = pid", code::AMBIGUOUS_COLUMN),
            ("COPY (SELECT 1) TO '/nonexistent/x.csv'", code::INSUFFICIENT_PRIVILEGE),
            ("DROP TABLE sockets", code::INSUFFICIENT_PRIVILEGE),
            ("SET datafusion.runtime.memory_limit = '100G'", code::INSUFFICIENT_PRIVILEGE),
        ];
        let mut wrong = Vec::new();
        for (sql, want) in cases {
            let got = code_of(&engine, sql).await;
            if got != want {
                wrong.push(format!("{sql}: {got}, want {want}"));
            }
        }
        let operators = format!("SELECT {}1", "1+".repeat(crate::statements::MAX_OPERATORS + 1));
        assert_eq!(code_of(&engine, &operators).await, code::PROGRAM_LIMIT_EXCEEDED);
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limits_get_their_codes() {
        let memory =
            Engine::with(&SourceOptions::default(), Policy::default(), Limits { memory: Some(8 << 20), timeout: None })
                .unwrap();
        assert_eq!(
            code_of(&memory, "SELECT value, value * 2 AS b FROM range(2000000) ORDER BY b DESC").await,
            code::OUT_OF_MEMORY
        );
        let timeout = Duration::from_millis(100);
        let slow =
            Engine::with(&SourceOptions::default(), Policy::default(), Limits { memory: None, timeout: Some(timeout) })
                .unwrap();
        assert_eq!(code_of(&slow, "SELECT count(*) FROM range(100000000000)").await, code::QUERY_CANCELED);
    }

    #[test]
    fn casts_are_told_apart_by_target_type_not_value() {
        assert_eq!(
            of_cast("Cannot cast string 'up to date' to value of Int64 type"),
            code::INVALID_TEXT_REPRESENTATION
        );
        assert_eq!(of_cast("Cannot cast string '12' to value of Date32 type"), code::INVALID_DATETIME_FORMAT);
        assert_eq!(of_cast("Cannot cast string '-1e5x' to value of Int8 type"), code::INVALID_TEXT_REPRESENTATION);
        assert_eq!(of_cast("Cannot cast string '-129' to value of Int8 type"), code::NUMERIC_VALUE_OUT_OF_RANGE);
        assert_eq!(crate::err!("something else").sqlstate(), code::INTERNAL_ERROR);
        assert_eq!(sqlstate(&anyhow::anyhow!("something else")), code::INTERNAL_ERROR);
    }

    /// Errors made inside DataFusion come back wrapped in its `External`
    /// (a refusal by a table function while planning, a bound inside a
    /// scalar function): found by their type, through the query error
    /// and through a front end's anyhow and context alike.
    #[test]
    fn errors_inside_datafusion_keep_their_codes() {
        let refused = || DataFusionError::External(Box::new(Refusal::by_front_end("COPY ... TO writes files")));
        let e = Error::from(DataFusionError::Context("planning".into(), Box::new(refused()))).context("q.sql:2");
        assert_eq!(e.sqlstate(), code::INSUFFICIENT_PRIVILEGE);
        assert_eq!(sqlstate(&anyhow::Error::from(e).context("front end")), code::INSUFFICIENT_PRIVILEGE);
        let bound = DataFusionError::External(Box::new(TooLarge { max: 1, what: "operators", line: 1 }));
        assert_eq!(Error::from(bound).sqlstate(), code::PROGRAM_LIMIT_EXCEEDED);
        let late = DataFusionError::External(Box::new(TimedOut(Duration::from_secs(1))));
        assert_eq!(Error::from(late).context("x").sqlstate(), code::QUERY_CANCELED);
        // Each kind by its variant.
        assert_eq!(Error::from(Refusal::by_front_end("no")).sqlstate(), code::INSUFFICIENT_PRIVILEGE);
        assert_eq!(Error::Cancelled.sqlstate(), code::INTERNAL_ERROR);
    }
}
