//! `conntrack_stats`: per-CPU connection-tracking counters, as
//! `conntrack -S` prints them. The current entry count and the limit are
//! the sysctls net.netfilter.nf_conntrack_count and nf_conntrack_max.

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::scope;
use crate::table_columns;
use crate::SourceOptions;

table_columns!(Col {
    Cpu: "cpu", U16, false, "CPU number";
    Found: "found", U32, true, "Lookups that found an entry";
    Invalid: "invalid", U32, true, "Packets that could not be tracked (invalid state or malformed)";
    Insert: "insert", U32, true, "Entries inserted (older kernels only; newer ones report 0)";
    InsertFailed: "insert_failed", U32, true, "Entries that could not be inserted (clashes)";
    Drop: "drop", U32, true, "Packets dropped because the table was full or an insert failed";
    EarlyDrop: "early_drop", U32, true, "Unassured entries evicted to make room: the table is (nearly) full";
    Error: "error", U32, true, "ICMP errors that could not be matched to a connection";
    SearchRestart: "search_restart", U32, true, "Lookups restarted because the table changed under them";
    ClashResolve: "clash_resolve", U32, true, "Insert clashes resolved";
    ChainTooLong: "chaintoolong", U32, true, "Inserts refused because a hash chain was too long";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

pub const NAME: &str = "conntrack_stats";
pub const ABOUT: &str =
    "Per-CPU connection-tracking counters (conntrack -S); count and max are sysctls nf_conntrack_count/_max";

#[derive(Debug)]
pub struct ConntrackStatsTable {
    options: SourceOptions,
}

impl ConntrackStatsTable {
    pub fn new(options: SourceOptions) -> Self {
        ConntrackStatsTable { options }
    }
}

impl LiveSource for ConntrackStatsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let cols = projection.cloned();
        let no_netlink = self.options.no_netlink;
        let targets = scope::targets(filters, self.options.all_netns());
        let label = format!("conntrack_stats: ctnetlink per-cpu {}", scope::describe(&targets));
        LivePartition::projected(Col::DEFS, projection.map(Vec::as_slice), label, move |sink| {
            let mut out = Emitter::new(RowBuilder::new(Col::DEFS, cols.as_deref(), BATCH_ROWS), sink, limit);
            scope::each(&targets, |ns| {
                for s in sockql_collect::conntrack::read_stats(sockql_collect::ReadOptions { no_netlink })? {
                    out.rows.u16(Col::Cpu as usize, Some(s.cpu));
                    for (i, (attr, _)) in sockql_collect::conntrack::STATS.iter().enumerate() {
                        out.rows.u32(Col::Found as usize + i, s.counters[*attr]);
                    }
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
