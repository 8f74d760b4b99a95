//! `sysctls`: the kernel's net.* parameters (sysctl -a | grep ^net.), the
//! context the socket rules of thumb need: ip_local_port_range for port
//! exhaustion, somaxconn and tcp_max_syn_backlog for SYN floods,
//! tcp_fin_timeout, tcp_tw_reuse, tcp_max_tw_buckets.
//!
//! Pushed down: `name = '…'` / `name IN (…)` read only those files (Inexact).

use datafusion::logical_expr::Expr;

use crate::columns::ColumnDef;
use crate::filters::{as_str, column_in_literals};
use crate::live::Emitter;
use crate::table_columns;
use crate::{scope, Pushdown, Scan, Table};
use sockql_collect::netns::Netns;
use sockql_collect::sysctl;

table_columns!(Col {
    Name: "name", Utf8, false, "Parameter name as sysctl prints it, e.g. net.ipv4.ip_local_port_range";
    Value: "value", Utf8, false, "Current value, white space folded to single spaces (\"32768 60999\")";
    Netns: "netns", U64, false, "Network namespace inode (most net.* parameters are per namespace)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

#[derive(Debug, Clone, Copy)]
pub struct SysctlsTable;

/// The namespaces a scan reads, and the names a filter asks for (else all of net.*).
pub struct Plan {
    targets: Vec<Netns>,
    names: Option<Vec<String>>,
}

fn wanted_names(filters: &[Expr]) -> Option<Vec<String>> {
    filters.iter().find_map(|f| {
        let (c, values) = column_in_literals(f)?;
        if c != "name" {
            return None;
        }
        values.iter().map(|v| as_str(v).map(str::to_string)).collect()
    })
}

impl Table for SysctlsTable {
    const NAME: &'static str = "sysctls";
    const ABOUT: &'static str = "The kernel's net.* parameters (sysctl -a), e.g. net.ipv4.ip_local_port_range";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn pushdown(&self, f: &Expr) -> Pushdown {
        match column_in_literals(f) {
            Some(("name", v)) if v.iter().all(|v| as_str(v).is_some()) => Pushdown::Inexact,
            Some(("name", _)) => Pushdown::Unsupported,
            _ if scope::is_netns_filter(f) => Pushdown::Exact,
            _ => Pushdown::Unsupported,
        }
    }

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        Plan { targets: scan.targets(), names: wanted_names(scan.filters) }
    }

    fn label(&self, plan: &Plan) -> String {
        format!(
            "sysctls: /proc/sys {} names={}",
            scope::describe(&plan.targets),
            plan.names.as_ref().map_or("net.*".into(), |n| format!("{n:?}"))
        )
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        scope::each(&plan.targets, |ns| {
            let pairs: Vec<(String, String)> = match &plan.names {
                Some(names) => names
                    .iter()
                    .filter(|n| n.starts_with("net."))
                    .filter_map(|n| sysctl::read(n).map(|v| (n.clone(), v)))
                    .collect(),
                None => sysctl::walk("net"),
            };
            for (n, v) in &pairs {
                out.rows.str(Col::Name, Some(n));
                out.rows.str(Col::Value, Some(v));
                out.rows.u64(Col::Netns, Some(ns.inode));
                out.rows.str(Col::NetnsName, ns.name.as_deref());
                if out.end_row()?.is_break() {
                    return Ok(std::ops::ControlFlow::Break(()));
                }
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
    }
}
