//! Client SQL as statements DataFusion plans: parsed with PostgreSQL's
//! dialect, then each statement rewritten by `rules.rs` (PostgreSQL forms
//! clients' catalog queries use that DataFusion does not plan) and, if it
//! can only return no rows, replaced by `empty_queries.rs`.

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

/// The parser of a client's SQL (stateless; one is shared by the server).
#[derive(Debug, Default)]
pub struct ClientSql;

impl ClientSql {
    pub fn new() -> Self {
        ClientSql
    }

    /// `text` as rewritten statements.
    pub fn parse(&self, text: &str) -> Result<Vec<Statement>, ParserError> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location()?;
        // ABORT is PostgreSQL's other name for ROLLBACK (pgcli and psql
        // send it), which sqlparser's PostgreSQL dialect does not parse.
        let tokens = tokens
            .into_iter()
            .map(|t| match &t.token {
                Token::Word(w) if w.keyword == Keyword::ABORT => {
                    TokenWithSpan { token: Token::make_keyword("ROLLBACK"), span: Span::empty() }
                }
                _ => t,
            })
            .collect();
        let statements = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(tokens).parse_statements()?;
        Ok(statements.into_iter().map(|s| self.rewrite(s)).collect())
    }

    /// One statement rewritten (see the module comment).
    pub fn rewrite(&self, statement: Statement) -> Statement {
        super::empty_queries::rewrite(super::rules::rewrite(statement))
    }
}
