//! Each host's SQL from its group's: the federation writes one statement
//! for a group of hosts (`fan_out.rs`), in which `host` is a column of
//! the fleet table. A host has no such column: its copy names it by its
//! own name (a string literal), so `SELECT host, count(*) ... GROUP BY
//! host` is each host's own count under its name. A filter on `host` in
//! the statement's WHERE (`host = 'h02'`, `host IN (...)`, `<>`, `NOT
//! IN`) decides which hosts are asked at all: a host it rules out is not
//! contacted.
//!
//! The fleet's tables never have a column of their own called `host`
//! (views.rs puts it first), so every column reference named `host` in a
//! group's SQL is the fleet's.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, SetExpr, Statement, TableFactor, TableWithJoins, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::query::ast_walk::WalkMut;

/// A group's statement, parsed once.
#[derive(Debug, Clone)]
pub struct Template {
    statement: Statement,
    /// What the top-level WHERE says of `host`, if anything.
    rule: HostRule,
}

/// The hosts a statement's filter leaves in.
#[derive(Debug, Clone, Default, PartialEq)]
struct HostRule {
    /// Only these (every `=` and `IN` must hold).
    only: Option<Vec<String>>,
    /// Never these (`<>`, `NOT IN`).
    not: Vec<String>,
}

impl Template {
    /// `sql` as the federation wrote it (DataFusion's unparser; the hosts
    /// parse it with DataFusion's default, generic, dialect).
    pub fn parse(sql: &str) -> Result<Template, String> {
        let mut statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| format!("{e}: {sql}"))?;
        if statements.len() != 1 {
            return Err(format!("one statement expected for the hosts, got {}: {sql}", statements.len()));
        }
        let statement = statements.remove(0);
        let rule = rule_of(&statement);
        Ok(Template { statement, rule })
    }

    /// Does the statement's filter leave host `name` in?
    pub fn asks(&self, name: &str) -> bool {
        let only = self.rule.only.as_ref().is_none_or(|only| only.iter().any(|n| n == name));
        only && !self.rule.not.iter().any(|n| n == name)
    }

    /// The statement host `name` is sent: `host` written as its name.
    pub fn for_host(&self, name: &str) -> String {
        let mut statement = self.statement.clone();
        let _ = statement.visit(&mut WalkMut(&mut NameHost(name)));
        statement.to_string()
    }
}

/// Writes every reference to `host` as the host's name.
struct NameHost<'a>(&'a str);

impl VisitorMut for NameHost<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if is_host(e) {
            *e = Expr::Value(Value::SingleQuotedString(self.0.to_string()).into());
        }
        ControlFlow::Continue(())
    }
}

/// A reference to the `host` column (bare, or qualified by any table or
/// alias).
fn is_host(e: &Expr) -> bool {
    match e {
        Expr::Identifier(i) => i.value == "host",
        Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|i| i.value == "host"),
        _ => false,
    }
}

/// A string literal, in any parentheses.
fn literal(e: &Expr) -> Option<&str> {
    match unnest(e) {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn unnest(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => unnest(inner),
        e => e,
    }
}

/// The WHERE conjuncts about `host` of the statement's SELECT and of the
/// derived table it reads from, down the chain (the unparser writes a
/// filtered scan as `FROM (SELECT ... WHERE ...)`). Anything it cannot
/// read (an OR, a function of host, a join) leaves every host in: the
/// host itself applies the filter to its literal name.
fn rule_of(statement: &Statement) -> HostRule {
    let mut rule = HostRule::default();
    let Statement::Query(query) = statement else { return rule };
    let mut body = query.body.as_ref();
    while let SetExpr::Select(select) = body {
        if let Some(selection) = &select.selection {
            rule.read(selection);
        }
        match select.from.as_slice() {
            [TableWithJoins { relation: TableFactor::Derived { subquery, .. }, joins }] if joins.is_empty() => {
                body = subquery.body.as_ref();
            }
            _ => break,
        }
    }
    rule
}

impl HostRule {
    /// Read one WHERE clause's conjuncts.
    fn read(&mut self, selection: &Expr) {
        let mut conjuncts = vec![selection];
        while let Some(e) = conjuncts.pop() {
            match unnest(e) {
                Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
                    conjuncts.push(left);
                    conjuncts.push(right);
                }
                Expr::BinaryOp { left, op: op @ (BinaryOperator::Eq | BinaryOperator::NotEq), right } => {
                    let (l, r) = (unnest(left), unnest(right));
                    let name = match (is_host(l), is_host(r)) {
                        (true, false) => literal(r),
                        (false, true) => literal(l),
                        _ => None,
                    };
                    match (name, op) {
                        (Some(name), BinaryOperator::Eq) => self.only(vec![name.to_string()]),
                        (Some(name), _) => self.not.push(name.to_string()),
                        (None, _) => {}
                    }
                }
                Expr::InList { expr, list, negated } if is_host(unnest(expr)) => {
                    let names: Option<Vec<String>> = list.iter().map(|e| literal(e).map(str::to_string)).collect();
                    match (names, negated) {
                        (Some(names), false) => self.only(names),
                        (Some(names), true) => self.not.extend(names),
                        (None, _) => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// Another conjunct that only `names` pass: both must hold.
    fn only(&mut self, names: Vec<String>) {
        self.only = Some(match self.only.take() {
            None => names,
            Some(before) => before.into_iter().filter(|n| names.contains(n)).collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_host_is_named_in_its_own_copy() {
        let t = Template::parse(
            "SELECT sockets.host, sockets.state, count(1) AS __fleet_partial_0 FROM sockets \
             WHERE (sockets.local_port > 0) GROUP BY sockets.host, sockets.state",
        )
        .unwrap();
        assert_eq!(
            t.for_host("h'01"),
            "SELECT 'h''01', sockets.state, count(1) AS __fleet_partial_0 FROM sockets \
             WHERE (sockets.local_port > 0) GROUP BY 'h''01', sockets.state"
        );
        assert!(t.asks("anyone"));
        // A column only named like it, in a string, is left alone.
        let t = Template::parse("SELECT 'host' AS x, hostname FROM t WHERE host = 'a'").unwrap();
        assert_eq!(t.for_host("b"), "SELECT 'host' AS x, hostname FROM t WHERE 'b' = 'a'");
    }

    #[test]
    fn a_filter_on_host_decides_who_is_asked() {
        let asked = |sql: &str| -> Vec<&str> {
            let t = Template::parse(sql).unwrap();
            ["a", "b", "c"].into_iter().filter(|h| t.asks(h)).collect()
        };
        assert_eq!(asked("SELECT x FROM t WHERE (t.host = 'b')"), ["b"]);
        assert_eq!(asked("SELECT x FROM t WHERE 'c' = host AND x > 1"), ["c"]);
        assert_eq!(asked("SELECT x FROM t WHERE host IN ('a', 'c') AND (host = 'c')"), ["c"]);
        assert_eq!(asked("SELECT x FROM t WHERE host IN ('a', 'c') AND host = 'b'"), Vec::<&str>::new());
        assert_eq!(asked("SELECT x FROM t WHERE host <> 'a' AND host NOT IN ('b')"), ["c"]);
        // What it cannot read asks everyone (the host filters itself).
        assert_eq!(asked("SELECT x FROM t WHERE host = 'a' OR x = 1"), ["a", "b", "c"]);
        assert_eq!(asked("SELECT x FROM t WHERE upper(host) = 'A'"), ["a", "b", "c"]);
        assert_eq!(asked("SELECT x FROM t WHERE host IN ('a', lower('B'))"), ["a", "b", "c"]);
        assert_eq!(asked("SELECT x FROM t"), ["a", "b", "c"]);
        // Down the chain of derived tables, as the unparser writes a
        // filtered scan; not through a join.
        assert_eq!(
            asked(
                "SELECT h, count(1) FROM (SELECT t.host AS h FROM t WHERE ((t.x = 1) AND (t.host = 'b'))) GROUP BY h"
            ),
            ["b"]
        );
        assert_eq!(asked("SELECT x FROM (SELECT * FROM t WHERE host = 'a') JOIN u ON true"), ["a", "b", "c"]);
    }

    #[test]
    fn only_one_statement() {
        assert!(Template::parse("SELECT 1; SELECT 2").is_err());
        assert!(Template::parse("SELEC").is_err());
    }
}
