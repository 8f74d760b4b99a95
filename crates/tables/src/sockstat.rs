//! `sockstat`: the socket summary of /proc/net/sockstat and sockstat6 per
//! namespace (ss -s): sockets in use, orphans, TIME-WAIT buckets, memory.

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::{counter_table, Scan, Table};
use sockql_collect::counters;
use sockql_collect::netns::Netns;

table_columns!(Col {
    Protocol: "protocol", Utf8, false, "sockets, TCP, UDP, UDPLITE, RAW, FRAG, TCP6, UDP6, ...";
    Name: "name", Utf8, false, "inuse, orphan, tw (TIME-WAIT), alloc, mem (pages), used, memory";
    Value: "value", I64, false, "Current value";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

#[derive(Debug, Clone, Copy)]
pub struct SockstatTable;

impl Table for SockstatTable {
    const NAME: &'static str = "sockstat";
    const ABOUT: &'static str =
        "Socket summary per namespace (/proc/net/sockstat, ss -s): in use, orphans, TIME-WAIT, memory";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Vec<Netns>;

    fn plan(&self, scan: &Scan<'_>) -> Vec<Netns> {
        scan.targets()
    }

    fn label(&self, targets: &Vec<Netns>) -> String {
        counter_table::label(Self::NAME, targets)
    }

    fn read(&self, targets: &Vec<Netns>, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        counter_table::read(targets, counters::read_sockstat, out)
    }
}
