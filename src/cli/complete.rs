//! The REPL's line-editing helper: tab completion of SQL keywords, table
//! and column names (from the live schemas), saved query names and
//! meta-commands; and multi-line input ended by `;`.

use std::borrow::Cow;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper, Hinter};

use super::meta;

const KEYWORDS: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP BY", "ORDER BY", "HAVING", "LIMIT", "JOIN", "LEFT JOIN", "ON", "USING",
    "AS", "AND", "OR", "NOT", "IN", "IS NULL", "IS NOT NULL", "LIKE", "BETWEEN", "DISTINCT", "COUNT", "SUM",
    "AVG", "MIN", "MAX", "CASE", "WHEN", "THEN", "ELSE", "END", "DESC", "ASC", "WITH", "UNION ALL", "EXPLAIN",
    "DESCRIBE", "SHOW TABLES", "CAST", "round", "now()", "split_part", "regexp_like", "array_agg", "string_agg",
];

#[derive(Helper, Hinter)]
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

const BOLD: &str = "\x1b[1m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// `line` with SQL keywords in bold, 'strings' in green and a leading
/// meta-command in cyan, for the terminal.
pub fn highlight_sql(line: &str) -> String {
    if line.trim_start().starts_with('\\') {
        return format!("{CYAN}{line}{RESET}");
    }
    let words: Vec<&str> = KEYWORDS.iter().flat_map(|k| k.split(' ')).filter(|w| w.chars().all(|c| c.is_ascii_alphabetic())).collect();
    let mut out = String::with_capacity(line.len() + 16);
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            let mut end = line.len();
            for (j, d) in chars.by_ref() {
                if d == '\'' {
                    end = j + 1;
                    break;
                }
            }
            out.push_str(GREEN);
            out.push_str(&line[i..end]);
            out.push_str(RESET);
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = line.len();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' {
                    chars.next();
                } else {
                    end = j;
                    break;
                }
            }
            let word = &line[i..end];
            if words.iter().any(|k| k.eq_ignore_ascii_case(word)) {
                out.push_str(BOLD);
                out.push_str(word);
                out.push_str(RESET);
            } else {
                out.push_str(word);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Owned(highlight_sql(line))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        true
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
    fn highlights_keywords_strings_and_commands() {
        assert_eq!(
            highlight_sql("select state from sockets where state = 'LISTEN'"),
            "\x1b[1mselect\x1b[0m state \x1b[1mfrom\x1b[0m sockets \x1b[1mwhere\x1b[0m state = \x1b[32m'LISTEN'\x1b[0m"
        );
        assert_eq!(highlight_sql("\\d sockets"), "\x1b[36m\\d sockets\x1b[0m");
        assert_eq!(highlight_sql("'unterminated"), "\x1b[32m'unterminated\x1b[0m");
        assert_eq!(highlight_sql("fromage"), "fromage");
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
