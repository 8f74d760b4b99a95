//! The REPL's line-editing helper: tab completion of SQL keywords, table
//! and column names (from the live schemas), saved query names and
//! meta-commands; and multi-line input ended by `;`.

use rustyline::completion::{Completer, Pair};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper, Highlighter, Hinter};

use super::meta;

const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT", "JOIN", "LEFT JOIN", "ON", "USING",
    "AS", "AND", "OR", "NOT", "IN", "IS NULL", "IS NOT NULL", "LIKE", "BETWEEN", "DISTINCT", "COUNT", "SUM",
    "AVG", "MIN", "MAX", "CASE", "WHEN", "THEN", "ELSE", "END", "DESC", "ASC", "WITH", "UNION ALL", "EXPLAIN",
    "DESCRIBE", "SHOW TABLES", "CAST", "round", "now()", "split_part", "regexp_like", "array_agg", "string_agg",
];

#[derive(Helper, Highlighter, Hinter)]
pub struct SqlHelper {
    tables: Vec<String>,
    columns: Vec<String>,
    saved: Vec<String>,
}

impl SqlHelper {
    pub fn new(tables: Vec<String>, mut columns: Vec<String>, saved: Vec<String>) -> Self {
        columns.sort();
        columns.dedup();
        SqlHelper { tables, columns, saved }
    }

    /// Candidates for `word` given the line before it.
    pub fn candidates(&self, before: &str, word: &str) -> Vec<String> {
        let matches = |c: &str| c.len() >= word.len() && c[..word.len()].eq_ignore_ascii_case(word);
        let trimmed = before.trim_start();
        let from: Vec<String> = if word.starts_with('\\') {
            meta::words().into_iter().map(str::to_string).collect()
        } else if trimmed.starts_with("\\run") {
            self.saved.clone()
        } else if trimmed.starts_with("\\d") {
            self.tables.clone()
        } else if trimmed.starts_with('\\') {
            Vec::new()
        } else {
            let lower = word.chars().next().is_some_and(|c| c.is_ascii_lowercase());
            let kw = KEYWORDS.iter().map(|k| if lower { k.to_ascii_lowercase() } else { k.to_string() });
            self.tables.iter().chain(self.columns.iter()).cloned().chain(kw).collect()
        };
        let mut out: Vec<String> = from.into_iter().filter(|c| matches(c)).collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = line[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '\\'))
            .map_or(0, |i| i + 1);
        let word = &line[start..pos];
        let pairs = self
            .candidates(&line[..start], word)
            .into_iter()
            .map(|c| Pair { display: c.clone(), replacement: c })
            .collect();
        Ok((start, pairs))
    }
}

/// A statement is complete when it ends with `;`; a meta-command or an
/// empty line is complete at once.
pub fn is_complete(input: &str) -> bool {
    let t = input.trim();
    t.is_empty() || t.starts_with('\\') || t.ends_with(';')
}

impl Validator for SqlHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) { ValidationResult::Valid(None) } else { ValidationResult::Incomplete })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> SqlHelper {
        SqlHelper::new(
            vec!["sockets".into(), "socket_owners".into()],
            vec!["state".into(), "local_port".into()],
            vec!["port_owner".into(), "states".into()],
        )
    }

    #[test]
    fn completes_by_context() {
        let h = helper();
        assert_eq!(h.candidates("SELECT ", "sta"), vec!["state"]);
        assert_eq!(h.candidates("SELECT * ", "FR"), vec!["FROM"]);
        assert_eq!(h.candidates("select * ", "fr"), vec!["from"]);
        assert_eq!(h.candidates("SELECT * FROM ", "sock"), vec!["socket_owners", "sockets"]);
        assert_eq!(h.candidates("", "\\ti"), vec!["\\timing"]);
        assert_eq!(h.candidates("\\run ", "po"), vec!["port_owner"]);
        assert_eq!(h.candidates("\\d ", "socket_"), vec!["socket_owners"]);
    }

    #[test]
    fn statements_end_with_a_semicolon() {
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT 1\nFROM x"));
        assert!(is_complete("SELECT 1\nFROM x;"));
        assert!(is_complete("\\d sockets"));
        assert!(is_complete("  "));
    }
}
