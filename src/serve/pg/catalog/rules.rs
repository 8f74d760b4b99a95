//! Rewrites of the PostgreSQL forms in clients' catalog queries that
//! DataFusion does not plan, each into what PostgreSQL means by it:
//! - `n.oid, n.*` (duplicate names): the named column gets an alias;
//! - with one `t.*` in the projection, bare names in WHERE and ORDER BY
//!   are `t`'s (DataFusion will not resolve them through the wildcard);
//! - `x = ANY(arr)` / `x <> ALL(arr)`: array membership, `'{a,b}'`
//!   literals read as arrays;
//! - pg_catalog's table names unqualified (`FROM pg_class`): qualified, as
//!   pg_catalog is first on PostgreSQL's search path;
//! - `pg_catalog.f(...)`: `f(...)` (DataFusion's functions have no schema);
//! - `'{a,b}'::text[]`: `ARRAY['a','b']`;
//! - `current_user`, `current_catalog`, bare `current_schema`: the
//!   functions DataFusion knows them as;
//! - `x COLLATE "C"`: `x` (DataFusion compares bytes);
//! - `OPERATOR(pg_catalog.~)` and the other regex operators: the operator;
//! - `'name'::regclass` (and regnamespace, regtype, regproc): the object's
//!   OID, looked up in pg_catalog by a subquery; `'123'::regclass` is 123;
//! - a subquery in the select list: LIMIT 1 (it is a scalar), or NULL if
//!   it refers to the outer query, which DataFusion cannot plan there;
//! - `SELECT version()`: its column is named `version`, as PostgreSQL's.

use crate::query::ast_walk::{Walk, WalkMut};
use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Array, BinaryOperator, CastKind, DataType as SqlType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, LimitClause, ObjectName, ObjectNamePart, OrderByKind, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableWithJoins,
    UnaryOperator, Value, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Rewrite one statement (see the module comment).
pub fn rewrite(mut statement: Statement) -> Statement {
    if let Statement::Query(query) = &mut statement {
        if let SetExpr::Select(select) = query.body.as_mut() {
            alias_duplicates(select);
        }
        qualify_through_wildcard(query);
    }
    let _ = VisitMut::visit(&mut statement, &mut WalkMut(&mut Exprs));
    let _ = VisitMut::visit(&mut statement, &mut WalkMut(&mut ScalarSubqueries));
    statement
}

fn ident_path(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `SELECT n.oid, n.* FROM ...`: `n.oid AS __alias_oid`, so the two
/// `oid` columns differ (PostgreSQL allows duplicate names; DataFusion not).
fn alias_duplicates(select: &mut Select) {
    let mut wildcards = Vec::new();
    let mut plain_wildcard = false;
    for item in &select.projection {
        match item {
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                wildcards.push(ident_path(name))
            }
            SelectItem::Wildcard(_) => plain_wildcard = true,
            _ => {}
        }
    }
    if wildcards.is_empty() && !plain_wildcard {
        return;
    }
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(expr) = item else { continue };
        let name = match expr {
            Expr::Identifier(ident) => Some(ident.clone()),
            Expr::CompoundIdentifier(parts) if parts.len() > 1 => {
                let table = parts[..parts.len() - 1].iter().map(|i| i.value.as_str()).collect::<Vec<_>>().join(".");
                wildcards.contains(&table).then(|| parts[parts.len() - 1].clone())
            }
            _ => None,
        };
        if let Some(name) = name {
            *item =
                SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::new(format!("__alias_{}", name.value)) };
        }
    }
}

/// With exactly one `t.*` in the select list, a bare name in WHERE or
/// ORDER BY that is neither a table alias nor a select-list name is `t.name`.
fn qualify_through_wildcard(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    let wildcards: Vec<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                Some(ident_path(name))
            }
            _ => None,
        })
        .collect();
    let [wildcard] = wildcards.as_slice() else { return };
    let aliases = table_aliases(&select.from);
    if aliases.is_empty() {
        return;
    }
    let named: HashSet<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.clone()),
            _ => None,
        })
        .collect();
    let qualify = |e: &mut Expr| qualify_expr(e, wildcard, &aliases, &named);
    if let Some(selection) = &mut select.selection {
        qualify(selection);
    }
    if let Some(OrderByKind::Expressions(exprs)) = query.order_by.as_mut().map(|o| &mut o.kind) {
        for e in exprs {
            qualify(&mut e.expr);
        }
    }
}

fn qualify_expr(expr: &mut Expr, wildcard: &str, aliases: &HashSet<String>, named: &HashSet<String>) {
    match expr {
        Expr::Identifier(ident) if !aliases.contains(&ident.value) && !named.contains(&ident.value) => {
            *expr = Expr::CompoundIdentifier(vec![Ident::new(wildcard), ident.clone()]);
        }
        Expr::BinaryOp { left, right, .. } => {
            qualify_expr(left, wildcard, aliases, named);
            qualify_expr(right, wildcard, aliases, named);
        }
        _ => {}
    }
}

fn table_aliases(from: &[TableWithJoins]) -> HashSet<String> {
    let mut out = HashSet::new();
    for t in from {
        for relation in std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { alias: Some(alias), .. } = relation {
                out.insert(alias.name.value.clone());
            }
        }
    }
    out
}

/// `name(args)`.
pub fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

fn string(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).with_empty_span())
}

/// The elements of a `'{a, b}'` array literal, or None for other text.
fn array_literal(text: &str) -> Option<Vec<&str>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    Some(inner.split(',').map(|s| s.trim().trim_matches('"')).filter(|s| !s.is_empty()).collect())
}

/// `array_contains(arr, x)`, with a `'{...}'` literal as an array of text.
fn contains(array: &Expr, x: &Expr) -> Expr {
    let array = match array {
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. }) => match array_literal(s) {
            Some(items) => Expr::Array(Array { elem: items.into_iter().map(string).collect(), named: true }),
            None => array.clone(),
        },
        other => other.clone(),
    };
    call("array_contains", vec![array, x.clone()])
}

/// The lowercased last name of a type (`pg_catalog.regclass` -> regclass).
fn type_name(t: &SqlType) -> String {
    let text = t.to_string().to_ascii_lowercase();
    text.rsplit('.').next().unwrap_or("").to_string()
}

/// The lookup of an OID type's name, `{}` being the name.
fn oid_lookup(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "regclass" => {
            "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = parse_ident({})[CAST(array_length(parse_ident({}), 1) AS BIGINT)] \
             AND n.nspname = CASE WHEN array_length(parse_ident({}), 1) = 2 THEN parse_ident({})[1] ELSE 'public' END"
        }
        "regnamespace" => "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = {}",
        "regtype" => "SELECT oid FROM pg_catalog.pg_type WHERE typname = {}",
        "regproc" => "SELECT oid FROM pg_catalog.pg_proc WHERE proname = {}",
        _ => return None,
    })
}

/// `operand::kind` where the operand names an object: its OID.
fn oid_of(operand: &Expr, kind: &str) -> Option<Expr> {
    let template = oid_lookup(kind)?;
    match operand {
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. })
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(Expr::Value(Value::Number(s.clone(), false).with_empty_span()))
        }
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(_) | Value::Placeholder(_), .. }) => {
            let sql = template.replace("{}", &format!("{operand}::TEXT"));
            match Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?.pop()? {
                Statement::Query(q) => Some(Expr::Subquery(q)),
                _ => None,
            }
        }
        _ => None,
    }
}

fn is_text_type(t: &SqlType) -> bool {
    matches!(t, SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::String(_))
}

/// The expression and table-name rewrites.
struct Exprs;

impl VisitorMut for Exprs {
    type Break = ();

    fn pre_visit_table_factor(&mut self, table: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, args, .. } = table {
            if args.is_some() {
                // A table function: by its bare name.
                if name.0.len() > 1 {
                    if let Some(last) = name.0.pop() {
                        *name = ObjectName(vec![last]);
                    }
                }
            } else if let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() {
                if super::schema::table_names().any(|t| t.eq_ignore_ascii_case(&ident.value)) {
                    *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("pg_catalog")), name.0[0].clone()]);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match expr {
            Expr::AnyOp { left, compare_op: BinaryOperator::Eq, right, .. } => Some(contains(right, left)),
            Expr::AllOp { left, compare_op: BinaryOperator::NotEq, right } => {
                Some(Expr::UnaryOp { op: UnaryOperator::Not, expr: Box::new(contains(right, left)) })
            }
            Expr::Function(f) => {
                if f.name.0.len() > 1 {
                    if let Some(last) = f.name.0.pop() {
                        f.name = ObjectName(vec![last]);
                    }
                }
                let name = ident_path(&f.name).to_ascii_lowercase();
                match name.as_str() {
                    "current_user" => {
                        f.name = ObjectName::from(vec![Ident::new("session_user")]);
                        None
                    }
                    "current_catalog" => Some(call("current_database", vec![])),
                    _ => None,
                }
            }
            Expr::Identifier(ident)
                if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("current_schema") =>
            {
                Some(call("current_schema", vec![]))
            }
            Expr::Collate { expr: inner, .. } => Some(inner.as_ref().clone()),
            Expr::BinaryOp { op, .. } => {
                if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                    if parts.first().is_some_and(|s| s == "pg_catalog") {
                        let builtin = match parts.last().map(String::as_str) {
                            Some("~") => Some(BinaryOperator::PGRegexMatch),
                            Some("~*") => Some(BinaryOperator::PGRegexIMatch),
                            Some("!~") => Some(BinaryOperator::PGRegexNotMatch),
                            Some("!~*") => Some(BinaryOperator::PGRegexNotIMatch),
                            _ => None,
                        };
                        if let Some(b) = builtin {
                            *op = b;
                        }
                    }
                }
                None
            }
            Expr::Cast { kind: CastKind::DoubleColon, expr: operand, data_type: SqlType::Array(element), .. } => {
                // '{a,b}'::text[] / '{1,2}'::int[]: an ARRAY of the elements.
                if let Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. }) = operand.as_ref() {
                    let items: Vec<String> =
                        array_literal(s).unwrap_or_default().into_iter().map(str::to_string).collect();
                    let text = match element {
                        datafusion::sql::sqlparser::ast::ArrayElemTypeDef::AngleBracket(t)
                        | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::SquareBracket(t, _)
                        | datafusion::sql::sqlparser::ast::ArrayElemTypeDef::Parenthesis(t) => is_text_type(t),
                        _ => false,
                    };
                    let elem = items
                        .iter()
                        .map(|s| {
                            if text {
                                string(s)
                            } else {
                                Expr::Value(Value::Number(s.clone(), false).with_empty_span())
                            }
                        })
                        .collect();
                    **operand = Expr::Array(Array { elem, named: true });
                }
                None
            }
            Expr::Cast { expr: operand, data_type, .. } => oid_of(operand, &type_name(data_type)),
            _ => None,
        };
        if let Some(new) = replacement {
            *expr = new;
        }
        ControlFlow::Continue(())
    }
}

/// Subqueries in select lists (see the module comment), and version().
struct ScalarSubqueries;

/// A subquery refers to something outside it: a `$n`, or `t.col` with
/// `t` not one of its own tables.
fn correlated(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else { return false };
    let aliases = table_aliases(&select.from);
    struct Finds<'a>(bool, &'a HashSet<String>);
    impl Visitor for Finds<'_> {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            match expr {
                Expr::Value(ValueWithSpan { value: Value::Placeholder(_), .. }) => self.0 = true,
                Expr::CompoundIdentifier(parts) if parts.first().is_some_and(|p| !self.1.contains(&p.value)) => {
                    self.0 = true
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut finds = Finds(false, &aliases);
    let _ = Visit::visit(query, &mut Walk(&mut finds));
    finds.0
}

impl VisitorMut for ScalarSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
        for item in &mut select.projection {
            let expr = match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => continue,
            };
            if let Expr::Subquery(sub) = expr {
                if correlated(sub) {
                    *expr = Expr::Value(Value::Null.with_empty_span());
                } else if sub.limit_clause.is_none() && sub.fetch.is_none() {
                    sub.limit_clause = Some(LimitClause::LimitOffset {
                        limit: Some(Expr::Value(Value::Number("1".into(), false).with_empty_span())),
                        offset: None,
                        limit_by: vec![],
                    });
                }
            }
        }
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(Expr::Function(f)) = item {
                let no_args = matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty());
                if ident_path(&f.name) == "version" && no_args {
                    *item = SelectItem::ExprWithAlias { expr: Expr::Function(f.clone()), alias: Ident::new("version") };
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        rewrite(statement).to_string()
    }

    #[test]
    fn catalog_forms_become_what_datafusion_plans() {
        assert_eq!(
            rewritten("SELECT n.oid, n.* FROM pg_namespace n"),
            "SELECT n.oid AS __alias_oid, n.* FROM pg_catalog.pg_namespace n"
        );
        assert_eq!(
            rewritten("SELECT 1 WHERE 'r' = ANY('{r, v}')"),
            "SELECT 1 WHERE array_contains(ARRAY['r', 'v'], 'r')"
        );
        assert_eq!(rewritten("SELECT pg_catalog.format_type(1, 2)"), "SELECT format_type(1, 2)");
        assert_eq!(rewritten("SELECT '{a,b}'::text[]"), "SELECT ARRAY['a', 'b']::TEXT[]");
        assert_eq!(rewritten("SELECT current_user"), "SELECT session_user");
        assert_eq!(rewritten("SELECT a COLLATE \"C\" FROM t"), "SELECT a FROM t");
        assert_eq!(rewritten("SELECT 1 FROM t WHERE a OPERATOR(pg_catalog.~) '^x'"), "SELECT 1 FROM t WHERE a ~ '^x'");
        assert_eq!(rewritten("SELECT '16417'::regclass"), "SELECT 16417");
        assert!(rewritten("SELECT 'sockets'::regclass").contains("FROM pg_catalog.pg_class c"));
        assert_eq!(rewritten("SELECT version()"), "SELECT version() AS version");
        assert_eq!(rewritten("SELECT (SELECT x FROM u) FROM t"), "SELECT (SELECT x FROM u LIMIT 1) FROM t");
        assert_eq!(rewritten("SELECT (SELECT u.x FROM u WHERE u.y = t.y) FROM t"), "SELECT NULL FROM t");
        // A user's table named like nothing in pg_catalog stays where it is.
        assert_eq!(rewritten("SELECT * FROM sockets"), "SELECT * FROM sockets");
    }
}
