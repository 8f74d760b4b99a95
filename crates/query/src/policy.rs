//! The read-only policy, decided on the whole logical plan.
//!
//! A statement is refused if *any* node of its plan (under EXPLAIN,
//! EXPLAIN ANALYZE, PREPARE, subqueries and CTEs alike) would write a file,
//! change a table, change the catalog beyond an in-memory snapshot, or set
//! an option outside [`SETTABLE`]. `--allow-files` allows the file class
//! (COPY TO, CREATE EXTERNAL TABLE, INSERT); nothing allows the rest.
//! EXECUTE needs no check of its own: only a plan that passed this check
//! at PREPARE time can have been stored.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement};

/// What statements may do beyond reading the live tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// COPY TO, CREATE EXTERNAL TABLE and INSERT touch files; allowed only
    /// with --allow-files.
    pub allow_files: bool,
}

/// Options `SET` (and `RESET`) may change: how results look, never what
/// bounds them. `datafusion.runtime.*` would lift --memory-limit and turn
/// spilling to disk back on; `execution.*` sizes (target_partitions,
/// batch_size) multiply memory outside the pool's view.
pub const SETTABLE: &[&str] = &["datafusion.execution.time_zone", "datafusion.explain.*", "datafusion.format.*"];

fn settable(variable: &str) -> bool {
    let v = variable.to_ascii_lowercase();
    SETTABLE.iter().any(|allowed| match allowed.strip_suffix('*') {
        Some(prefix) => v.starts_with(prefix),
        None => v == *allowed,
    })
}

/// Why a statement is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("refused: {what}{hint}")]
pub struct Refusal {
    pub what: String,
    hint: &'static str,
}

const FILES_HINT: &str = "; sockql is read-only unless started with --allow-files \
    (CREATE TABLE name AS SELECT ... keeps a snapshot in memory without it)";

impl Refusal {
    fn files(what: &str) -> Self {
        Refusal { what: what.to_string(), hint: FILES_HINT }
    }
    fn always(what: String) -> Self {
        Refusal { what, hint: "" }
    }

    /// A refusal a front end makes itself (what it does not offer its
    /// clients), said and classified as the policy's are.
    pub fn by_front_end(what: impl Into<String>) -> Self {
        Refusal::always(what.into())
    }
}

/// True for the tables sockql itself provides: the live tables, the
/// history schema, information_schema. A statement may not drop or replace
/// them (a snapshot named `sockets` would silently shadow the kernel).
pub fn is_builtin(name: &TableReference) -> bool {
    match name.schema() {
        // pg_catalog: what PostgreSQL clients list tables with (sockql serve --pg).
        Some(super::catalog::HISTORY_SCHEMA) | Some("information_schema") | Some("pg_catalog") => true,
        None | Some("public") => sockql_tables::TABLES.iter().any(|t| t.name.eq_ignore_ascii_case(name.table())),
        Some(_) => false,
    }
}

/// The refusal for one plan node, looking at that node only.
fn node_refusal(node: &LogicalPlan, policy: Policy) -> Option<Refusal> {
    let files = |what: &str| (!policy.allow_files).then(|| Refusal::files(what));
    match node {
        LogicalPlan::Copy(_) => files("COPY ... TO writes files"),
        LogicalPlan::Dml(_) => files("INSERT/UPDATE/DELETE change tables"),
        LogicalPlan::Ddl(ddl) => match ddl {
            DdlStatement::CreateExternalTable(_) => files("CREATE EXTERNAL TABLE reads arbitrary files"),
            DdlStatement::CreateMemoryTable(c) if is_builtin(&c.name) => {
                Some(Refusal::always(format!("'{}' is a built-in table; give the snapshot another name", c.name)))
            }
            DdlStatement::CreateView(c) if is_builtin(&c.name) => {
                Some(Refusal::always(format!("'{}' is a built-in table; give the view another name", c.name)))
            }
            DdlStatement::DropTable(d) if is_builtin(&d.name) => {
                Some(Refusal::always(format!("'{}' is a built-in table and cannot be dropped", d.name)))
            }
            DdlStatement::DropView(d) if is_builtin(&d.name) => {
                Some(Refusal::always(format!("'{}' is a built-in table and cannot be dropped", d.name)))
            }
            DdlStatement::CreateMemoryTable(_)
            | DdlStatement::CreateView(_)
            | DdlStatement::DropTable(_)
            | DdlStatement::DropView(_) => None,
            other => Some(Refusal::always(format!(
                "{} changes the catalog; only in-memory snapshots and views (CREATE TABLE/VIEW name AS SELECT, DROP) are allowed",
                other.name()
            ))),
        },
        LogicalPlan::Statement(Statement::SetVariable(s)) if !settable(&s.variable) => Some(Refusal::always(format!(
            "SET {} is not allowed: limits and resources are the operator's (--memory-limit, --timeout); settable options are {}",
            s.variable,
            SETTABLE.join(", ")
        ))),
        LogicalPlan::Statement(Statement::ResetVariable(r)) if !settable(&r.variable) => Some(Refusal::always(format!(
            "RESET {} is not allowed; settable options are {}",
            r.variable,
            SETTABLE.join(", ")
        ))),
        _ => None,
    }
}

/// Refuse `plan` if any node in it (or in any subquery) is refused.
pub fn check(plan: &LogicalPlan, policy: Policy) -> Result<(), Refusal> {
    let mut refusal = None;
    // The walk itself cannot fail: the closure only records.
    let _ = plan.apply_with_subqueries(|node| {
        refusal = node_refusal(node, policy);
        Ok(if refusal.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    refusal.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settable_options() {
        assert!(settable("datafusion.execution.time_zone"));
        assert!(settable("DATAFUSION.EXPLAIN.FORMAT"));
        assert!(settable("datafusion.format.null"));
        assert!(!settable("datafusion.runtime.memory_limit"));
        assert!(!settable("datafusion.runtime.temp_directory"));
        assert!(!settable("datafusion.execution.target_partitions"));
        assert!(!settable("datafusion.explain"));
    }

    #[test]
    fn builtin_tables() {
        assert!(is_builtin(&TableReference::bare("sockets")));
        assert!(is_builtin(&TableReference::bare("SOCKETS")));
        assert!(is_builtin(&TableReference::partial("history", "anything")));
        assert!(!is_builtin(&TableReference::bare("snap")));
    }
}
