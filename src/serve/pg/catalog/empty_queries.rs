//! Queries that can only return no rows, answered as such without being
//! planned. psql's `\d TABLE` asks for the table's policies, extended
//! statistics and publications, pgcli for foreign keys, each with forms
//! DataFusion cannot plan (`array(SELECT ...)`, `'d' = any(stxkind)`,
//! unnamed NULL columns, `unnest` of a subquery). Each reads a pg_catalog
//! table sockql always has empty (sockql has no policies, statistics,
//! publications or constraints), joined so that no row can come out: a
//! select whose first table is such a table, or that inner-joins one,
//! returns nothing, and so does a UNION of such selects. Such a query is
//! replaced by a SELECT of as many NULL columns, with the same names,
//! WHERE false. A select with an aggregate and no GROUP BY (one row even
//! over nothing) is left as it is.

use crate::query::ast_walk::Walk;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, JoinOperator, ObjectNamePart, Query, SelectItem, SetExpr, SetOperator, Statement, TableFactor,
    TableWithJoins, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// pg_catalog's tables that have rows in sockql (see rows.rs and
/// pg_overlay.rs); every other one is always empty.
const WITH_ROWS: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_tables",
    "pg_database",
    "pg_type",
    "pg_roles",
    "pg_authid",
    "pg_settings",
    "pg_proc",
    "pg_description",
];

/// `name` (as written in FROM) is one of pg_catalog's always-empty tables.
fn always_empty(relation: &TableFactor) -> bool {
    let TableFactor::Table { name, args: None, .. } = relation else { return false };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_ascii_lowercase(),
            _ => String::new(),
        })
        .collect();
    let table = match parts.as_slice() {
        [schema, table] if schema == "pg_catalog" => table,
        _ => return false,
    };
    super::schema::table_names().any(|t| t == table) && !WITH_ROWS.contains(&table.as_str())
}

fn joins_nothing(from: &TableWithJoins) -> bool {
    always_empty(&from.relation)
        || from.joins.iter().any(|j| {
            matches!(j.join_operator, JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_))
                && always_empty(&j.relation)
        })
}

/// The aggregate functions a client's catalog query may use.
const AGGREGATES: &[&str] =
    &["count", "sum", "min", "max", "avg", "array_agg", "string_agg", "bool_and", "bool_or", "every", "json_agg"];

/// An aggregate call in the select list itself (not in a subquery of it).
fn has_aggregate(items: &[SelectItem]) -> bool {
    struct Finds {
        depth: usize,
        found: bool,
    }
    impl Visitor for Finds {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr {
                let name = f.name.to_string().to_ascii_lowercase();
                if self.depth == 0 && AGGREGATES.contains(&name.rsplit('.').next().unwrap_or("")) {
                    self.found = true;
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut finds = Finds { depth: 0, found: false };
    for item in items {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        let _ = expr.visit(&mut Walk(&mut finds));
    }
    finds.found
}

fn no_rows(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => {
            let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
            select.from.iter().any(joins_nothing) && (grouped || !has_aggregate(&select.projection))
        }
        SetExpr::SetOperation { op: SetOperator::Union, left, right, .. } => no_rows(left) && no_rows(right),
        SetExpr::Query(q) => no_rows(&q.body),
        _ => false,
    }
}

/// The select list of the first select of `body`.
fn first_projection(body: &SetExpr) -> Option<&[SelectItem]> {
    match body {
        SetExpr::Select(select) => Some(&select.projection),
        SetExpr::SetOperation { left, .. } => first_projection(left),
        SetExpr::Query(q) => first_projection(&q.body),
        _ => None,
    }
}

/// The name PostgreSQL gives a select-list item, or `column{n}`.
fn column_name(item: &SelectItem, n: usize) -> String {
    let named = match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.clone()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().map(|p| p.value.clone()),
        _ => None,
    };
    named.unwrap_or_else(|| format!("column{n}"))
}

fn empty_select(projection: &[SelectItem]) -> Option<Statement> {
    if projection.iter().any(|i| matches!(i, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..))) {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    let columns: Vec<String> = (1..)
        .zip(projection)
        .map(|(n, item)| {
            let mut name = column_name(item, n);
            if !seen.insert(name.clone()) {
                name = format!("{name}_{n}");
                seen.insert(name.clone());
            }
            format!("NULL AS \"{}\"", name.replace('"', "\"\""))
        })
        .collect();
    let sql = format!("SELECT {} WHERE false", columns.join(", "));
    Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()
}

/// `statement`, or the empty select answering it (see the module comment).
pub fn rewrite(statement: Statement) -> Statement {
    let Statement::Query(query) = &statement else { return statement };
    if query.with.is_some() || !no_rows(&query.body) {
        return statement;
    }
    let replacement = first_projection(&query.body).and_then(empty_select);
    replacement.unwrap_or(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        rewrite(Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0)).to_string()
    }

    #[test]
    fn queries_over_always_empty_tables_return_nothing() {
        assert_eq!(
            rewritten("SELECT pol.polname, array(select 1) FROM pg_catalog.pg_policy pol WHERE pol.polrelid = 5"),
            "SELECT NULL AS \"polname\", NULL AS \"column2\" WHERE false"
        );
        assert_eq!(
            rewritten(
                "SELECT pubname, NULL FROM pg_catalog.pg_publication p UNION SELECT pubname, NULL FROM pg_catalog.pg_publication p JOIN pg_catalog.pg_class c ON true"
            ),
            "SELECT NULL AS \"pubname\", NULL AS \"column2\" WHERE false"
        );
        // Rows exist, a LEFT JOIN keeps them, or an aggregate makes one row.
        for kept in [
            "SELECT relname FROM pg_catalog.pg_class",
            "SELECT c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid",
            "SELECT count(*) FROM pg_catalog.pg_index",
            "SELECT * FROM pg_catalog.pg_index",
        ] {
            assert_eq!(rewritten(kept), Parser::parse_sql(&PostgreSqlDialect {}, kept).unwrap()[0].to_string());
        }
    }
}
#[cfg(test)]
mod psql_tests {
    /// psql 15's `\d TABLE` publications query (an aggregate only inside
    /// a subquery of the middle select).
    #[test]
    fn psqls_publications_of_a_table_are_none() {
        let sql = r#"SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='16464' and pg_catalog.pg_relation_is_publishable('16464')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '16464'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16464')
ORDER BY 1;"#;
        let out = crate::serve::pg::catalog::client_sql::ClientSql::new().parse(sql).unwrap();
        assert_eq!(
            out[0].to_string(),
            "SELECT NULL AS \"pubname\", NULL AS \"column2\", NULL AS \"column3\" WHERE false"
        );
    }
}
