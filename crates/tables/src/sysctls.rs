//! `sysctls`: the kernel's net.* parameters (sysctl -a | grep ^net.), the
//! context the socket rules of thumb need: ip_local_port_range for port
//! exhaustion, somaxconn and tcp_max_syn_backlog for SYN floods,
//! tcp_fin_timeout, tcp_tw_reuse, tcp_max_tw_buckets.
//!
//! Pushed down: `name = '…'` / `name IN (…)` read only those files (Inexact).

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::filters::{as_str, column_in_literals};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::scope;
use crate::table_columns;
use crate::SourceOptions;
use sockql_collect::sysctl;

table_columns!(Col {
    Name: "name", Utf8, false, "Parameter name as sysctl prints it, e.g. net.ipv4.ip_local_port_range";
    Value: "value", Utf8, false, "Current value, white space folded to single spaces (\"32768 60999\")";
    Netns: "netns", U64, false, "Network namespace inode (most net.* parameters are per namespace)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

pub const NAME: &str = "sysctls";
pub const ABOUT: &str = "The kernel's net.* parameters (sysctl -a), e.g. net.ipv4.ip_local_port_range";

#[derive(Debug)]
pub struct SysctlsTable {
    options: SourceOptions,
}

impl SysctlsTable {
    pub fn new(options: SourceOptions) -> Self {
        SysctlsTable { options }
    }
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

impl LiveSource for SysctlsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        filters
            .iter()
            .map(|f| match column_in_literals(f) {
                Some(("name", v)) => v.iter().all(|v| as_str(v).is_some()),
                _ => scope::is_netns_filter(f),
            })
            .collect()
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let names = wanted_names(filters);
        let targets = scope::targets(filters, self.options.all_netns());
        let cols = projection.cloned();
        let label = format!(
            "sysctls: /proc/sys {} names={}",
            scope::describe(&targets),
            names.as_ref().map_or("net.*".into(), |n| format!("{n:?}"))
        );
        LivePartition::projected(Col::DEFS, projection.map(Vec::as_slice), label, move |sink| {
            let mut out = Emitter::new(RowBuilder::new(Col::DEFS, cols.as_deref(), BATCH_ROWS), sink, limit);
            scope::each(&targets, |ns| {
                let pairs: Vec<(String, String)> = match &names {
                    Some(names) => names
                        .iter()
                        .filter(|n| n.starts_with("net."))
                        .filter_map(|n| sysctl::read(n).map(|v| (n.clone(), v)))
                        .collect(),
                    None => sysctl::walk("net"),
                };
                for (n, v) in &pairs {
                    out.rows.str(Col::Name as usize, Some(n));
                    out.rows.str(Col::Value as usize, Some(v));
                    out.rows.u64(Col::Netns as usize, Some(ns.inode));
                    out.rows.str(Col::NetnsName as usize, ns.name.as_deref());
                    if out.end_row()?.is_break() {
                        return Ok(std::ops::ControlFlow::Break(()));
                    }
                }
                Ok(std::ops::ControlFlow::Continue(()))
            })?;
            out.finish()
        })
    }
}
