//! Rewrites of the PostgreSQL forms psql's meta-commands (and pgjdbc's
//! metadata calls) use that DataFusion does not plan, applied to each
//! statement after the client SQL rules (catalog/rules.rs):
//! - `ARRAY(SELECT e FROM ...)`, the array of a subquery's rows (`\du`):
//!   `coalesce((SELECT array_agg(e) FROM ...), make_array())`;
//! - `col_description(rel, n)`, `obj_description(oid, 'catalog')`,
//!   `shobj_description(oid, 'catalog')` (`\d+`, `\dt+`, `\dT`, `\df+`):
//!   what PostgreSQL defines them as, a lookup in pg_description /
//!   pg_shdescription, as a scalar subquery;
//! - a correlated scalar subquery with no aggregate (`\dT`'s
//!   `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid = t.typrelid)`):
//!   DataFusion plans it once an aggregate says it is one row, so its
//!   value is wrapped in max();
//! - `array_to_string(c.reloptions || ...)` (`\d+`'s storage options):
//!   `''`, as sockql's tables have none and pg_class has no reloptions;
//! - before parsing, `'pg_class'::regclass` (pgjdbc's REMARKS): PostgreSQL
//!   looks for an unqualified name in pg_catalog first, the compatibility
//!   rule in `public` alone, so a pg_catalog table's name is qualified.

use crate::query::ast_walk::{Walk, WalkMut};
use std::collections::HashSet;
use std::ops::ControlFlow;

use super::catalog::client_sql::ClientSql;
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList, FunctionArguments,
    GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderByKind, Query, SelectItem, SetExpr, Statement, TableFactor,
    Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

/// Rewrite one statement (see the module comment).
pub fn rewrite(mut statement: Statement) -> Statement {
    let _ = VisitMut::visit(&mut statement, &mut WalkMut(&mut Rewriter));
    statement
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    // After the children: an argument is rewritten before its call.
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match expr {
            Expr::Function(f) => function(f),
            Expr::Subquery(q) => {
                one_row(q);
                None
            }
            _ => None,
        };
        if let Some(new) = replacement {
            *expr = new;
        }
        ControlFlow::Continue(())
    }
}

/// A call's name without its schema, lowercased.
fn base_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(id)) => id.value.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// The plain arguments of a call (none if any is named or a wildcard).
fn plain_args(f: &Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &f.args else { return None };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// `name(args clauses)`, as the parser would have made it.
pub(super) fn call(name: &str, args: Vec<Expr>, clauses: Vec<FunctionArgumentClause>) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// The replacement of a call, if it is one of those rewritten here.
fn function(f: &Function) -> Option<Expr> {
    let name = base_name(&f.name);
    if let FunctionArguments::Subquery(q) = &f.args {
        return (name == "array").then(|| array_of(q)).flatten();
    }
    let args = plain_args(f)?;
    match (name.as_str(), args.as_slice()) {
        ("col_description", [rel, column]) => Some(lookup(
            "SELECT max(description) FROM pg_catalog.pg_description WHERE objoid = $1 AND objsubid = $2",
            &[rel, column],
        )),
        // Objects' OIDs do not repeat across catalogs here (sockql's own
        // are given by pg_class and pg_proc apart from PostgreSQL's), so
        // the catalog need not be compared.
        ("obj_description", [oid] | [oid, _]) => Some(lookup(
            "SELECT max(description) FROM pg_catalog.pg_description WHERE objoid = $1 AND objsubid = 0",
            &[oid],
        )),
        ("shobj_description", [oid, _]) => {
            Some(lookup("SELECT max(description) FROM pg_catalog.pg_shdescription WHERE objoid = $1", &[oid]))
        }
        ("array_to_string", [options, ..]) if names_reloptions(options) => {
            Some(Expr::Value(Value::SingleQuotedString(String::new()).with_empty_span()))
        }
        _ => None,
    }
}

/// `template` (a query with `$1`, `$2`, ...) as a scalar subquery of `args`.
fn lookup(template: &str, args: &[&Expr]) -> Expr {
    struct Bind<'a>(&'a [&'a Expr]);
    impl VisitorMut for Bind<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
            if let Expr::Value(v) = e {
                if let Value::Placeholder(p) = &v.value {
                    let n: Option<usize> = p.strip_prefix('$').and_then(|n| n.parse().ok());
                    if let Some(arg) = n.and_then(|n| n.checked_sub(1)).and_then(|i| self.0.get(i)) {
                        *e = (*arg).clone();
                    }
                }
            }
            ControlFlow::Continue(())
        }
    }
    let parsed = Parser::new(&PostgreSqlDialect {}).try_with_sql(template).and_then(|mut p| p.parse_query());
    match parsed {
        Ok(mut query) => {
            let _ = VisitMut::visit(&mut query, &mut WalkMut(&mut Bind(args)));
            Expr::Subquery(query)
        }
        // The templates are constants that parse; should one not, null.
        Err(_) => Expr::Value(Value::Null.with_empty_span()),
    }
}

/// `ARRAY(SELECT e FROM ... [ORDER BY ...])` as
/// `coalesce((SELECT array_agg(e [ORDER BY ...]) FROM ...), make_array())`:
/// an empty array when there are no rows, as PostgreSQL gives.
fn array_of(query: &Query) -> Option<Expr> {
    let mut query = query.clone();
    let order = match query.order_by.take().map(|o| o.kind) {
        None => Vec::new(),
        Some(OrderByKind::Expressions(list)) => list,
        Some(OrderByKind::All(_)) => return None,
    };
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let [item] = select.projection.as_mut_slice() else { return None };
    let value = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    // ORDER BY 1 names the one column.
    let order = order
        .into_iter()
        .map(|mut o| {
            if matches!(&o.expr, Expr::Value(v) if matches!(&v.value, Value::Number(n, _) if n == "1")) {
                o.expr = value.clone();
            }
            o
        })
        .collect::<Vec<_>>();
    let clauses = if order.is_empty() { Vec::new() } else { vec![FunctionArgumentClause::OrderBy(order)] };
    *item = SelectItem::UnnamedExpr(call("array_agg", vec![value], clauses));
    Some(call("coalesce", vec![Expr::Subquery(Box::new(query)), call("make_array", vec![], vec![])], vec![]))
}

/// Does `e` mention a column named reloptions?
fn names_reloptions(e: &Expr) -> bool {
    struct Find(bool);
    impl Visitor for Find {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            let last = match e {
                Expr::Identifier(id) => Some(id),
                Expr::CompoundIdentifier(ids) => ids.last(),
                _ => None,
            };
            if last.is_some_and(|id| id.value.eq_ignore_ascii_case("reloptions")) {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut find = Find(false);
    let _ = e.visit(&mut Walk(&mut find));
    find.0
}

const AGGREGATES: &[&str] = &[
    "count",
    "max",
    "min",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
];

/// Make a correlated scalar subquery of one value without an aggregate
/// say it is one row: its value becomes max(value). True if changed.
fn one_row(query: &mut Query) -> bool {
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return false;
    }
    let SetExpr::Select(select) = query.body.as_mut() else { return false };
    if !matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        || select.having.is_some()
        || select.distinct.is_some()
    {
        return false;
    }
    // Only over the catalog, where psql's queries know one row matches: a
    // client's own subquery over live tables that finds several rows must
    // stay the error PostgreSQL gives, not become the largest value.
    if !catalog_only(&select.from) {
        return false;
    }
    let aliases = from_names(&select.from);
    let correlated = {
        let mut outer = Outer { aliases: &aliases, found: false };
        let _ = select.selection.visit(&mut Walk(&mut outer));
        let _ = select.projection.visit(&mut Walk(&mut outer));
        outer.found
    };
    if !correlated {
        return false;
    }
    let [item] = select.projection.as_mut_slice() else { return false };
    let value = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return false,
    };
    if matches!(value, Expr::Function(f) if AGGREGATES.contains(&base_name(&f.name).as_str())) {
        return false;
    }
    *value = call("max", vec![value.clone()], vec![]);
    true
}

/// True if every relation of a FROM clause is a pg_catalog table.
fn catalog_only(from: &[datafusion::sql::sqlparser::ast::TableWithJoins]) -> bool {
    let relations = from.iter().flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    let mut any = false;
    for relation in relations {
        let TableFactor::Table { name, .. } = relation else { return false };
        let parts: Vec<String> = name.0.iter().map(|p| p.to_string().to_ascii_lowercase()).collect();
        let catalog = match parts.as_slice() {
            [table] => table.starts_with("pg_"),
            [.., schema, _] => schema == "pg_catalog",
            [] => false,
        };
        if !catalog {
            return false;
        }
        any = true;
    }
    any
}

/// The names a FROM clause's tables go by (alias, else the table's name).
fn from_names(from: &[datafusion::sql::sqlparser::ast::TableWithJoins]) -> HashSet<String> {
    let mut names = HashSet::new();
    let relations = from.iter().flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
    for relation in relations {
        match relation {
            TableFactor::Table { alias: Some(alias), .. } | TableFactor::Derived { alias: Some(alias), .. } => {
                names.insert(alias.name.value.to_ascii_lowercase());
            }
            TableFactor::Table { name, alias: None, .. } => {
                names.insert(base_name(name));
            }
            _ => {}
        }
    }
    names
}

/// Finds a column qualified by a name that is not one of `aliases`: a
/// reference to the enclosing query. (A query nested inside, with tables of
/// its own, may look correlated too: then max() of its one value is the
/// value all the same.)
struct Outer<'a> {
    aliases: &'a HashSet<String>,
    found: bool,
}

impl Visitor for Outer<'_> {
    type Break = ();
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(ids) = e {
            // schema.table.column names its table second to last.
            let table = ids.len().checked_sub(2).and_then(|i| ids.get(i));
            if table.is_some_and(|t| !self.aliases.contains(&t.value.to_ascii_lowercase())) {
                self.found = true;
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The statements of `text` if it casts a pg_catalog table's bare name to
/// regclass, with the name qualified; None for any other text.
pub fn with_catalog_regclass(parser: &ClientSql, text: &str) -> Option<Result<Vec<Statement>, ParserError>> {
    let mut tokens: Vec<Token> = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut changed = false;
    for i in 0..tokens.len() {
        let Some(Token::SingleQuotedString(name)) = tokens.get(i) else { continue };
        let is_regclass =
            |t: Option<&Token>| matches!(t, Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("regclass"));
        let cast = matches!(tokens.get(i + 1), Some(Token::DoubleColon))
            && (is_regclass(tokens.get(i + 2))
                || (matches!(tokens.get(i + 2), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("pg_catalog"))
                    && matches!(tokens.get(i + 3), Some(Token::Period))
                    && is_regclass(tokens.get(i + 4))));
        if cast && super::catalog::schema::table_names().any(|t| t == name) {
            let qualified = format!("pg_catalog.{name}");
            if let Some(t) = tokens.get_mut(i) {
                *t = Token::SingleQuotedString(qualified);
                changed = true;
            }
        }
    }
    if !changed {
        return None;
    }
    let spanned = tokens.into_iter().map(|token| TokenWithSpan { token, span: Span::empty() }).collect();
    Some(
        Parser::new(&PostgreSqlDialect {})
            .with_tokens_with_locations(spanned)
            .parse_statements()
            .map(|statements| statements.into_iter().map(|s| parser.rewrite(s)).collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let parser = ClientSql::new();
        let statements = with_catalog_regclass(&parser, sql).unwrap_or_else(|| parser.parse(sql)).unwrap();
        statements.into_iter().map(rewrite).map(|s| s.to_string()).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn an_array_of_a_subquery_is_an_aggregate_of_its_rows() {
        let out = rewritten("SELECT r.rolname, ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) as memberof FROM pg_catalog.pg_roles r");
        assert!(out.contains("coalesce((SELECT array_agg(b.rolname) FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid), make_array()) AS memberof"), "{out}");
        let ordered = rewritten("SELECT array(select rolname from pg_catalog.pg_roles order by 1)");
        assert!(ordered.contains("array_agg(rolname ORDER BY rolname)"), "{ordered}");
    }

    #[test]
    fn descriptions_are_looked_up_in_pg_description() {
        let out = rewritten("SELECT pg_catalog.col_description(a.attrelid, a.attnum) FROM pg_catalog.pg_attribute a");
        assert!(out.contains("(SELECT max(description) FROM pg_catalog.pg_description WHERE objoid = a.attrelid AND objsubid = a.attnum)"), "{out}");
        let out = rewritten(
            "SELECT pg_catalog.obj_description(c.oid, 'pg_class') as \"Description\" FROM pg_catalog.pg_class c",
        );
        assert!(out.contains("(SELECT max(description) FROM pg_catalog.pg_description WHERE objoid = c.oid AND objsubid = 0) AS \"Description\""), "{out}");
        let out = rewritten("SELECT shobj_description(d.oid, 'pg_database') FROM pg_catalog.pg_database d");
        assert!(out.contains("FROM pg_catalog.pg_shdescription WHERE objoid = d.oid)"), "{out}");
    }

    #[test]
    fn a_correlated_scalar_subquery_is_one_row() {
        let out = rewritten("SELECT t.typname FROM pg_catalog.pg_type t WHERE (t.typrelid = 0 OR (SELECT c.relkind = 'c' FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid))");
        assert!(
            out.contains("(SELECT max(c.relkind = 'c') FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid)"),
            "{out}"
        );
        // Not correlated, or already one row: left alone.
        for sql in [
            "SELECT x FROM t WHERE y = (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relname = 'x')",
            "SELECT x FROM t WHERE y = (SELECT count(*) FROM pg_catalog.pg_class c WHERE c.oid = t.y)",
            "SELECT x FROM t WHERE y = (SELECT c.oid FROM pg_catalog.pg_class c WHERE c.oid = t.y LIMIT 1)",
            // A client's own subquery over live tables keeps PostgreSQL's
            // error when it finds several rows.
            "SELECT p.pid, (SELECT s.local_port FROM sockets s WHERE s.pid = p.pid) FROM processes p",
            "SELECT p.pid, (SELECT c.oid FROM pg_catalog.pg_class c JOIN sockets s ON s.inode = c.oid WHERE s.pid = p.pid) FROM processes p",
        ] {
            assert!(!rewritten(sql).contains("max("), "{sql}");
        }
    }

    #[test]
    fn storage_options_are_none() {
        let out = rewritten("SELECT c.relchecks, pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ') FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)");
        assert!(out.starts_with("SELECT c.relchecks, '' FROM"), "{out}");
    }

    #[test]
    fn a_catalog_tables_bare_name_is_found_in_pg_catalog() {
        let out = rewritten("SELECT 1 FROM pg_catalog.pg_description d WHERE d.classoid = 'pg_class'::regclass");
        assert!(out.contains("parse_ident('pg_catalog.pg_class'::TEXT)"), "{out}");
        let out = rewritten("SELECT 'sockets'::regclass, 'pg_class'::text");
        assert!(out.contains("'sockets'") && out.contains("'pg_class'"), "{out}");
        assert!(with_catalog_regclass(&ClientSql::new(), "SELECT 'sockets'::regclass").is_none());
    }
}
