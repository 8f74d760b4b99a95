//! SQL text to statements, one at a time and within documented bounds.
//!
//! The text is tokenized once (linear), checked, and then parsed statement
//! by statement as the caller runs them: a long script never holds every
//! parsed statement at once, and an early statement's output is not held
//! back by a later one's parse.
//!
//! Bounds (each refused with a clear error, never a crash):
//! - [`MAX_SQL_BYTES`] of text from any source;
//! - [`MAX_IDENTIFIER_BYTES`] per identifier (matching a 300,000-character
//!   unknown name against every column for a suggestion took a minute);
//! - [`MAX_OPERATORS`] operators in one statement, the depth of the
//!   longest possible expression chain (`a OR b OR ...`), counted on the
//!   tokens before parsing;
//! - parentheses (and brackets) nest at most [`MAX_NESTING`] levels, each
//!   level counted once on the tokens; sqlparser's own recursion limit
//!   ([`PARSER_DEPTH`], which counts several steps a level) stays as the
//!   backstop for nesting without parentheses (`NOT NOT ...`, `CASE`);
//! - what planning a parsed statement may take (CTEs, subqueries, joins,
//!   set operations, function calls, operators, expressions):
//!   [`crate::statement_size`].

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// SQL text from any source (argument, file, stdin, saved query).
pub const MAX_SQL_BYTES: usize = 1 << 20;
pub const MAX_IDENTIFIER_BYTES: usize = 255;
pub const MAX_OPERATORS: usize = 10_000;
pub const MAX_NESTING: usize = 50;
/// sqlparser's recursion limit: it counts a parenthesis level several
/// times (a subquery in parentheses costs about four), so this lets
/// [`MAX_NESTING`] levels of any kind through and still stops unbounded
/// recursion on the 64 MiB query stack.
pub const PARSER_DEPTH: usize = 8 * MAX_NESTING;

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("{0} bytes of SQL is too large (at most {max} KiB)", max = MAX_SQL_BYTES / 1024)]
    TooLarge(usize),
    #[error("identifier of {len} bytes at line {line} is too long (at most {MAX_IDENTIFIER_BYTES})")]
    IdentifierTooLong { len: usize, line: u64 },
    #[error("expression too deep: {count} operators in the statement at line {line} (at most {MAX_OPERATORS})")]
    TooDeep { count: usize, line: u64 },
    #[error("expression too deep: it nests more than {MAX_NESTING} levels of parentheses (at line {line})")]
    TooNested { line: u64 },
    #[error("expression too deep: more than {PARSER_DEPTH} levels for the parser")]
    TooDeepToParse,
    #[error(transparent)]
    TooLargeToPlan(#[from] crate::statement_size::TooLarge),
    #[error(transparent)]
    Parse(#[from] DataFusionError),
}

fn is_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT),
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::StringConcat => true,
        _ => false,
    }
}

/// Check the token stream against the bounds, statement by statement.
fn check_tokens(tokens: &[TokenWithSpan]) -> Result<(), StatementError> {
    let (mut operators, mut start_line, mut depth) = (0usize, 1u64, 0usize);
    for t in tokens {
        match &t.token {
            Token::SemiColon => {
                operators = 0;
                depth = 0;
                start_line = t.span.end.line;
                continue;
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(StatementError::TooNested { line: t.span.start.line });
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            Token::Word(w) if w.value.len() > MAX_IDENTIFIER_BYTES => {
                return Err(StatementError::IdentifierTooLong { len: w.value.len(), line: t.span.start.line });
            }
            tok if is_operator(tok) => operators += 1,
            _ => {}
        }
        if operators > MAX_OPERATORS {
            return Err(StatementError::TooDeep { count: operators, line: start_line.max(1) });
        }
    }
    Ok(())
}

/// The statements of one text, parsed one at a time.
pub struct Statements<'a> {
    parser: DFParser<'a>,
    expecting_delimiter: bool,
}

impl Statements<'_> {
    pub fn new(sql: &str) -> Result<Self, StatementError> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(StatementError::TooLarge(sql.len()));
        }
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .map_err(|e| DataFusionError::SQL(Box::new(e.into()), None))?;
        check_tokens(&tokens)?;
        let parser = DFParserBuilder::new(tokens).with_recursion_limit(PARSER_DEPTH).build()?;
        Ok(Statements { parser, expecting_delimiter: false })
    }

    /// The next statement, `None` at the end (as DataFusion's
    /// `parse_statements` loop, one step at a time).
    pub fn next_statement(&mut self) -> Option<Result<Statement, StatementError>> {
        while self.parser.parser.consume_token(&Token::SemiColon) {
            self.expecting_delimiter = false;
        }
        let next = self.parser.parser.peek_token();
        if next.token == Token::EOF {
            return None;
        }
        if self.expecting_delimiter {
            let e = DataFusionError::SQL(
                Box::new(ParserError::ParserError(format!(
                    "Expected: end of statement, found: {next}{}",
                    next.span.start
                ))),
                None,
            );
            // Stop here: the rest is not statements.
            self.expecting_delimiter = false;
            return Some(Err(e.into()));
        }
        self.expecting_delimiter = true;
        let line = next.span.start.line;
        Some(
            self.parser
                .parse_statement()
                .map_err(|e| match e.find_root() {
                    DataFusionError::SQL(p, _) if matches!(p.as_ref(), ParserError::RecursionLimitExceeded) => {
                        StatementError::TooDeepToParse
                    }
                    _ => e.into(),
                })
                .and_then(|statement| {
                    crate::statement_size::check(&statement, line.max(1))?;
                    Ok(statement)
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(sql: &str) -> Result<usize, String> {
        let mut s = Statements::new(sql).map_err(|e| e.to_string())?;
        let mut n = 0;
        while let Some(r) = s.next_statement() {
            r.map_err(|e| e.to_string())?;
            n += 1;
        }
        Ok(n)
    }

    #[test]
    fn parses_one_at_a_time() {
        assert_eq!(all("SELECT 1; ;SELECT 2;"), Ok(2));
        assert_eq!(all("-- only a comment"), Ok(0));
        let mut s = Statements::new("SELECT 1; SELEC 2").unwrap();
        assert!(s.next_statement().unwrap().is_ok());
        assert!(s.next_statement().unwrap().unwrap_err().to_string().contains("SELEC"));
        assert!(all("SELECT 1 2").unwrap_err().contains("end of statement"));
    }

    #[test]
    fn bounds() {
        let long = format!("SELECT {} FROM sockets", "x".repeat(300_000));
        assert!(all(&long).unwrap_err().contains("identifier of 300000 bytes at line 1 is too long"));
        let chain = format!("SELECT 1{}", " + 1".repeat(MAX_OPERATORS + 1));
        assert!(all(&chain).unwrap_err().contains("expression too deep"));
        // Below the tokens' bound, planning's own (statement_size) holds.
        let planned = crate::statement_size::MAX_PLANNED_OPERATORS;
        assert_eq!(all(&format!("SELECT 1{}", " + 1".repeat(planned))), Ok(1));
        assert_eq!(
            all(&format!("SELECT 1{}", " + 1".repeat(planned + 1))).unwrap_err(),
            "statement too large to plan: more than 200 operators (at line 1)"
        );
        // The operator counts are per statement.
        let many = format!("SELECT 1{};", " + 1".repeat(planned)).repeat(3);
        assert_eq!(all(&many), Ok(3));
        let tokens = format!("SELECT 1{};", " + 1".repeat(MAX_OPERATORS / 2)).repeat(3);
        assert!(all(&tokens).unwrap_err().contains("more than 200 operators"));
        assert!(all(&"SELECT 1;".repeat(MAX_SQL_BYTES / 9 + 1)).unwrap_err().contains("too large"));
        let nested = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(
            all(&nested).unwrap_err(),
            "expression too deep: it nests more than 50 levels of parentheses (at line 1)"
        );
        // Each level counts once, whatever it holds.
        let parens = |n: usize| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
        let subqueries = |n: usize| format!("SELECT * FROM {}sockets{}", "(SELECT * FROM ".repeat(n), ") t".repeat(n));
        let calls = |n: usize| format!("SELECT {}1{}", "abs(".repeat(n), ")".repeat(n));
        let scalar = |n: usize| format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n));
        for make in [parens, subqueries, calls, scalar] {
            assert_eq!(all(&make(MAX_NESTING - 1)), Ok(1), "{}", make(MAX_NESTING - 1));
            assert_eq!(all(&make(MAX_NESTING)), Ok(1), "{}", make(MAX_NESTING));
            assert!(
                all(&make(MAX_NESTING + 1)).unwrap_err().contains("more than 50 levels of parentheses"),
                "{}",
                make(MAX_NESTING + 1)
            );
        }
        // Nesting without parentheses parses and meets the planning bound.
        assert!(all(&format!("SELECT {}1", "NOT ".repeat(5_000))).unwrap_err().contains("more than 200 operators"));
    }
}
