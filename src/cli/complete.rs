//! The REPL's line-editing helper: tab completion of SQL keywords, table
//! and column names (from the live schemas), saved query names and
//! meta-commands; highlighting; when a statement is complete.

use std::borrow::Cow;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::validate::Validator;
use rustyline::{Context, Helper, Hinter};

use super::meta;

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "USING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS NULL",
    "IS NOT NULL",
    "LIKE",
    "BETWEEN",
    "DISTINCT",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DESC",
    "ASC",
    "WITH",
    "UNION ALL",
    "EXPLAIN",
    "DESCRIBE",
    "SHOW TABLES",
    "CAST",
    "round",
    "now()",
    "split_part",
    "regexp_like",
    "array_agg",
    "string_agg",
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
        let start =
            line[..pos].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '\\')).map_or(0, |i| i + 1);
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
    let words: Vec<&str> =
        KEYWORDS.iter().flat_map(|k| k.split(' ')).filter(|w| w.chars().all(|c| c.is_ascii_alphabetic())).collect();
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

/// Past this many bytes the line being edited is not highlighted: every
/// highlighted keystroke redraws the whole line, which made an unbracketed
/// paste quadratic (100 KB took minutes). Plain text keeps rustyline's
/// one-character fast path, so a paste of any size costs linear time.
pub const HIGHLIGHT_MAX: usize = 256;

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if line.len() > HIGHLIGHT_MAX {
            return Cow::Borrowed(line);
        }
        Cow::Owned(highlight_sql(line))
    }

    fn highlight_char(&self, line: &str, _pos: usize, _kind: CmdKind) -> bool {
        line.len() <= HIGHLIGHT_MAX
    }
}

/// A statement is complete when it ends with `;`; a meta-command or an
/// empty line is complete at once.
pub fn is_complete(input: &str) -> bool {
    let t = input.trim();
    t.is_empty() || t.starts_with('\\') || t.ends_with(';')
}

/// Pasted lines longer than this are taken in pieces of this size (shown
/// under continuation prompts, joined without a line break): rustyline
/// redraws a whole line each time it wraps on the screen, so one pasted
/// 100 KB line without bracketed paste cost quadratic time.
pub const SPLIT_AT: usize = 2048;

/// Ends the line being edited when it reaches [`SPLIT_AT`] bytes and
/// another character arrives at its end, keeping that character for the
/// next piece (the shell prefills it).
pub struct LongLineSplitter {
    pub carry: std::sync::Arc<std::sync::Mutex<Option<char>>>,
}

impl rustyline::ConditionalEventHandler for LongLineSplitter {
    fn handle(
        &self,
        evt: &rustyline::Event,
        _: rustyline::RepeatCount,
        _: bool,
        ctx: &rustyline::EventContext,
    ) -> Option<rustyline::Cmd> {
        use rustyline::{KeyCode, KeyEvent, Modifiers};
        if ctx.line().len() < SPLIT_AT || ctx.pos() != ctx.line().len() {
            return None;
        }
        let KeyEvent(KeyCode::Char(c), m) = evt.get(0)? else { return None };
        if !(m.is_empty() || *m == Modifiers::SHIFT) {
            return None;
        }
        *self.carry.lock().ok()? = Some(*c);
        Some(rustyline::Cmd::AcceptLine)
    }
}

/// Every line is accepted as typed: the shell gathers lines into a
/// statement itself (see `Repl::run`). rustyline's multi-line editing
/// redraws the whole statement at each new line, which made a pasted
/// 2,000-line statement cost quadratic time.
impl Validator for SqlHelper {}

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
