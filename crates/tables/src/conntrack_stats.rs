//! `conntrack_stats`: per-CPU connection-tracking counters, as
//! `conntrack -S` prints them. The current entry count and the limit are
//! the sysctls net.netfilter.nf_conntrack_count and nf_conntrack_max.

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::{scope, Scan, Table};
use sockql_collect::conntrack;
use sockql_collect::netns::Netns;
use sockql_collect::ReadOptions;

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

/// The counter columns, in the order of `conntrack::STATS`.
const COUNTERS: [Col; 10] = [
    Col::Found,
    Col::Invalid,
    Col::Insert,
    Col::InsertFailed,
    Col::Drop,
    Col::EarlyDrop,
    Col::Error,
    Col::SearchRestart,
    Col::ClashResolve,
    Col::ChainTooLong,
];

#[derive(Debug, Clone, Copy)]
pub struct ConntrackStatsTable;

/// The namespaces a scan reads, and whether netlink may be used.
pub struct Plan {
    targets: Vec<Netns>,
    no_netlink: bool,
}

impl Table for ConntrackStatsTable {
    const NAME: &'static str = "conntrack_stats";
    const ABOUT: &'static str =
        "Per-CPU connection-tracking counters (conntrack -S); count and max are sysctls nf_conntrack_count/_max";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        Plan { targets: scan.targets(), no_netlink: scan.options.no_netlink }
    }

    fn label(&self, plan: &Plan) -> String {
        format!("conntrack_stats: ctnetlink per-cpu {}", scope::describe(&plan.targets))
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        scope::each(&plan.targets, |ns| {
            for s in conntrack::read_stats(ReadOptions { no_netlink: plan.no_netlink })? {
                out.rows.u16(Col::Cpu, Some(s.cpu));
                for (col, (attr, _)) in COUNTERS.iter().zip(conntrack::STATS.iter()) {
                    out.rows.u32(*col, s.counters[*attr]);
                }
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
