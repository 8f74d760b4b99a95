//! One visitor type for all of sockql's walks over sqlparser's AST.
//!
//! sqlparser's `Visit`/`VisitMut` derive a walk of the whole AST for each
//! visitor type it is called with: every walk sockql wrote (the
//! statement size check here, the PostgreSQL front end's rewrites, the
//! fleet's host copies) added its own copy of that code, about 190 KB
//! each in the release binary, sixteen in all with DataFusion's. Called
//! through [`Walk`] and [`WalkMut`], which hand each node to a visitor
//! behind a `dyn`, sockql's walks share one copy (BENCHMARKS.md, "Release
//! binary"). A visitor stays an ordinary `Visitor` with `Break = ()`;
//! only the call changes: `node.visit(&mut Walk(&mut visitor))`.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Query, Select, Statement, TableFactor, ValueWithSpan, Visitor, VisitorMut,
};

/// A read-only walk: `node.visit(&mut Walk(&mut visitor))`.
pub struct Walk<'a>(pub &'a mut dyn Visitor<Break = ()>);

/// A walk that may change the nodes: `node.visit(&mut WalkMut(&mut visitor))`.
pub struct WalkMut<'a>(pub &'a mut dyn VisitorMut<Break = ()>);

impl Visitor for Walk<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, node: &Query) -> ControlFlow<()> {
        self.0.pre_visit_query(node)
    }
    fn post_visit_query(&mut self, node: &Query) -> ControlFlow<()> {
        self.0.post_visit_query(node)
    }
    fn pre_visit_select(&mut self, node: &Select) -> ControlFlow<()> {
        self.0.pre_visit_select(node)
    }
    fn post_visit_select(&mut self, node: &Select) -> ControlFlow<()> {
        self.0.post_visit_select(node)
    }
    fn pre_visit_relation(&mut self, node: &ObjectName) -> ControlFlow<()> {
        self.0.pre_visit_relation(node)
    }
    fn post_visit_relation(&mut self, node: &ObjectName) -> ControlFlow<()> {
        self.0.post_visit_relation(node)
    }
    fn pre_visit_table_factor(&mut self, node: &TableFactor) -> ControlFlow<()> {
        self.0.pre_visit_table_factor(node)
    }
    fn post_visit_table_factor(&mut self, node: &TableFactor) -> ControlFlow<()> {
        self.0.post_visit_table_factor(node)
    }
    fn pre_visit_expr(&mut self, node: &Expr) -> ControlFlow<()> {
        self.0.pre_visit_expr(node)
    }
    fn post_visit_expr(&mut self, node: &Expr) -> ControlFlow<()> {
        self.0.post_visit_expr(node)
    }
    fn pre_visit_statement(&mut self, node: &Statement) -> ControlFlow<()> {
        self.0.pre_visit_statement(node)
    }
    fn post_visit_statement(&mut self, node: &Statement) -> ControlFlow<()> {
        self.0.post_visit_statement(node)
    }
    fn pre_visit_value(&mut self, node: &ValueWithSpan) -> ControlFlow<()> {
        self.0.pre_visit_value(node)
    }
    fn post_visit_value(&mut self, node: &ValueWithSpan) -> ControlFlow<()> {
        self.0.post_visit_value(node)
    }
}

impl VisitorMut for WalkMut<'_> {
    type Break = ();
    fn pre_visit_query(&mut self, node: &mut Query) -> ControlFlow<()> {
        self.0.pre_visit_query(node)
    }
    fn post_visit_query(&mut self, node: &mut Query) -> ControlFlow<()> {
        self.0.post_visit_query(node)
    }
    fn pre_visit_select(&mut self, node: &mut Select) -> ControlFlow<()> {
        self.0.pre_visit_select(node)
    }
    fn post_visit_select(&mut self, node: &mut Select) -> ControlFlow<()> {
        self.0.post_visit_select(node)
    }
    fn pre_visit_relation(&mut self, node: &mut ObjectName) -> ControlFlow<()> {
        self.0.pre_visit_relation(node)
    }
    fn post_visit_relation(&mut self, node: &mut ObjectName) -> ControlFlow<()> {
        self.0.post_visit_relation(node)
    }
    fn pre_visit_table_factor(&mut self, node: &mut TableFactor) -> ControlFlow<()> {
        self.0.pre_visit_table_factor(node)
    }
    fn post_visit_table_factor(&mut self, node: &mut TableFactor) -> ControlFlow<()> {
        self.0.post_visit_table_factor(node)
    }
    fn pre_visit_expr(&mut self, node: &mut Expr) -> ControlFlow<()> {
        self.0.pre_visit_expr(node)
    }
    fn post_visit_expr(&mut self, node: &mut Expr) -> ControlFlow<()> {
        self.0.post_visit_expr(node)
    }
    fn pre_visit_statement(&mut self, node: &mut Statement) -> ControlFlow<()> {
        self.0.pre_visit_statement(node)
    }
    fn post_visit_statement(&mut self, node: &mut Statement) -> ControlFlow<()> {
        self.0.post_visit_statement(node)
    }
    fn pre_visit_value(&mut self, node: &mut ValueWithSpan) -> ControlFlow<()> {
        self.0.pre_visit_value(node)
    }
    fn post_visit_value(&mut self, node: &mut ValueWithSpan) -> ControlFlow<()> {
        self.0.post_visit_value(node)
    }
}
