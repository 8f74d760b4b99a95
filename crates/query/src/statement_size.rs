//! How much planning one parsed statement may ask for.
//!
//! DataFusion's planning time and memory grow faster than the statement:
//! a 6,000-step CTE chain (190 KB of text) took more than 5 GB to plan,
//! 4,000 `+` 16.7 s (quadratic), and planning cannot be stopped midway
//! (--timeout ends the wait, not the work). Each statement is therefore
//! counted with sqlparser's visitor before it is planned and refused past
//! any of these bounds, chosen so that a statement at every bound plans in
//! well under a second and a few MB on a debug build (measured on this
//! project's 2-core machine: tests/it/budget.rs times them):
//!
//! | what | bound | a statement at the bound (debug build, EXPLAIN) |
//! |---|---|---|
//! | common table expressions (`WITH`) | [`MAX_CTES`] | chain of 100: 0.11 s |
//! | subqueries (each query, CTE bodies included) | [`MAX_SUBQUERIES`] | 128 scalar subqueries: 0.25 s |
//! | set operations (`UNION`, `INTERSECT`, `EXCEPT`) | [`MAX_SET_OPERATIONS`] | 100 `UNION ALL`: 0.13 s |
//! | joined tables | [`MAX_JOINS`] | 32 joins: 0.18 s |
//! | function calls | [`MAX_FUNCTION_CALLS`] | 400 calls: 0.1 s |
//! | operators (`+`, `AND`, `=`, ...) | [`MAX_PLANNED_OPERATORS`] | a chain of 200: 0.2 s (256: 0.3 s) |
//! | expression nodes in all | [`MAX_EXPRESSIONS`] | 1,000 select items: 0.2 s (2,000: 0.7 s) |

use std::ops::ControlFlow;

use crate::ast_walk::Walk;
use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{Expr, Query, Select, SetExpr, TableFactor, Visit, Visitor};

pub const MAX_CTES: usize = 100;
pub const MAX_SUBQUERIES: usize = 128;
pub const MAX_SET_OPERATIONS: usize = 100;
pub const MAX_JOINS: usize = 32;
pub const MAX_FUNCTION_CALLS: usize = 400;
pub const MAX_PLANNED_OPERATORS: usize = 200;
pub const MAX_EXPRESSIONS: usize = 1_000;

/// A statement past one of the bounds: what was counted and the bound.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("statement too large to plan: more than {max} {what} (at line {line})")]
pub struct TooLarge {
    pub what: &'static str,
    pub max: usize,
    pub line: u64,
}

#[derive(Default)]
struct Count {
    ctes: usize,
    queries: usize,
    set_operations: usize,
    joins: usize,
    functions: usize,
    operators: usize,
    expressions: usize,
}

impl Count {
    /// The first bound passed, if any.
    fn over(&self) -> Option<(&'static str, usize)> {
        [
            ("CTEs", self.ctes, MAX_CTES),
            ("subqueries", self.queries.saturating_sub(1), MAX_SUBQUERIES),
            ("set operations", self.set_operations, MAX_SET_OPERATIONS),
            ("joins", self.joins, MAX_JOINS),
            ("function calls", self.functions, MAX_FUNCTION_CALLS),
            ("operators", self.operators, MAX_PLANNED_OPERATORS),
            ("expressions", self.expressions, MAX_EXPRESSIONS),
        ]
        .into_iter()
        .find(|(_, n, max)| n > max)
        .map(|(what, _, max)| (what, max))
    }
}

/// Set operations in a query's body (its nested queries count on their own).
fn set_operations(body: &SetExpr) -> usize {
    match body {
        SetExpr::SetOperation { left, right, .. } => 1 + set_operations(left) + set_operations(right),
        _ => 0,
    }
}

impl Visitor for Count {
    // The bound passed is kept in `over` (crate::ast_walk: one visitor
    // type for every walk, so one Break type).
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.queries += 1;
        self.ctes += query.with.as_ref().map_or(0, |w| w.cte_tables.len());
        self.set_operations += set_operations(&query.body);
        self.stop()
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        // `FROM a, b` joins as `a JOIN b` does.
        self.joins += select.from.len().saturating_sub(1) + select.from.iter().map(|t| t.joins.len()).sum::<usize>();
        self.stop()
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::NestedJoin { table_with_joins, .. } = factor {
            self.joins += table_with_joins.joins.len();
        }
        self.stop()
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.expressions += 1;
        match expr {
            Expr::Function(_) => self.functions += 1,
            Expr::BinaryOp { .. }
            | Expr::UnaryOp { .. }
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::Like { .. }
            | Expr::ILike { .. }
            | Expr::Between { .. }
            | Expr::InList { .. } => self.operators += 1,
            _ => {}
        }
        self.stop()
    }
}

impl Count {
    fn stop(&self) -> ControlFlow<()> {
        match self.over() {
            Some(_) => ControlFlow::Break(()),
            None => ControlFlow::Continue(()),
        }
    }
}

/// Refuse `statement` if planning it could pass a bound above; `line` is
/// where it starts, for the message.
pub fn check(statement: &Statement, line: u64) -> Result<(), TooLarge> {
    let mut count = Count::default();
    let _ = visit(statement, &mut count);
    match count.over() {
        Some((what, max)) => Err(TooLarge { what, max, line }),
        None => Ok(()),
    }
}

fn visit(statement: &Statement, count: &mut Count) -> ControlFlow<()> {
    match statement {
        Statement::Statement(s) => s.visit(&mut Walk(count)),
        Statement::Explain(e) => visit(&e.statement, count),
        Statement::CopyTo(c) => match &c.source {
            CopyToSource::Query(q) => q.visit(&mut Walk(count)),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(sql: &str) -> Result<(), String> {
        let mut s = crate::statements::Statements::new(sql).map_err(|e| e.to_string())?;
        s.next_statement().ok_or("no statement")?.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Each bound: a statement at it is accepted, one past it refused with
    /// the bound in the message.
    #[test]
    fn each_bound_is_said() {
        let cte = |n: usize| {
            let mut s = "WITH t0 AS (SELECT 1 AS x)".to_string();
            for i in 1..n {
                s += &format!(", t{i} AS (SELECT * FROM t{})", i - 1);
            }
            s + &format!(" SELECT * FROM t{}", n - 1)
        };
        let union = |n: usize| (0..=n).map(|i| format!("SELECT {i}")).collect::<Vec<_>>().join(" UNION ALL ");
        let joins = |n: usize| {
            format!(
                "SELECT 1 FROM sockets s0{}",
                (1..=n).map(|i| format!(" JOIN sockets s{i} ON true")).collect::<String>()
            )
        };
        let comma = |n: usize| {
            format!("SELECT 1 FROM sockets s0{}", (1..=n).map(|i| format!(", sockets s{i}")).collect::<String>())
        };
        let calls = |n: usize| format!("SELECT {}", vec!["abs(1)"; n].join(", "));
        let subqueries = |n: usize| format!("SELECT {}", vec!["(SELECT 1)"; n].join(", "));
        let items = |n: usize| format!("SELECT {}", vec!["1"; n].join(", "));
        type Make<'a> = &'a dyn Fn(usize) -> String;
        let cases: [(Make, usize, &str); 7] = [
            (&cte, MAX_CTES, "CTEs"),
            (&union, MAX_SET_OPERATIONS, "set operations"),
            (&joins, MAX_JOINS, "joins"),
            (&comma, MAX_JOINS, "joins"),
            (&calls, MAX_FUNCTION_CALLS, "function calls"),
            (&subqueries, MAX_SUBQUERIES, "subqueries"),
            (&items, MAX_EXPRESSIONS, "expressions"),
        ];
        for (make, max, what) in cases {
            assert_eq!(first(&make(max)), Ok(()), "{what} at {max}");
            assert_eq!(
                first(&make(max + 1)),
                Err(format!("statement too large to plan: more than {max} {what} (at line 1)"))
            );
        }
        // Under EXPLAIN and in a later statement (its own line).
        assert!(first(&format!("EXPLAIN {}", cte(MAX_CTES + 1))).unwrap_err().contains("more than 100 CTEs"));
        let mut s =
            crate::statements::Statements::new(&format!("SELECT 1;\n\n{}", union(MAX_SET_OPERATIONS + 1))).unwrap();
        assert!(s.next_statement().unwrap().is_ok());
        assert_eq!(
            s.next_statement().unwrap().unwrap_err().to_string(),
            "statement too large to plan: more than 100 set operations (at line 3)"
        );
    }
}

#[cfg(test)]
mod builtin_tests {
    /// Every bundled report is far within the bounds.
    #[test]
    fn bundled_reports_fit() {
        for (file, text) in crate::saved::builtin::BUILTIN {
            let mut s = crate::statements::Statements::new(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            while let Some(r) = s.next_statement() {
                r.unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
    }
}
