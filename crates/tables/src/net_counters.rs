//! `net_counters`: the kernel's SNMP and netstat counters, as `nstat -a`
//! shows them (/proc/net/snmp, /proc/net/netstat, /proc/net/snmp6), per
//! namespace. The evidence behind the socket rules of thumb lives here:
//! TcpExt ListenOverflows / ListenDrops / TCPReqQFullDrop / SyncookiesSent
//! (SYN flood or a slow accept loop), Tcp RetransSegs, TcpExt
//! TCPTimeWaitOverflow (tw buckets exhausted), TCPAbortOnTimeout.
//! `nstat` prints mib || name (TcpExtListenOverflows).

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::{counter_table, Scan, Table};
use sockql_collect::counters;
use sockql_collect::netns::Netns;

table_columns!(Col {
    Mib: "mib", Utf8, false, "Counter group: Ip, Icmp, IcmpMsg, Tcp, Udp, UdpLite, TcpExt, IpExt, MPTcpExt, Ip6, Icmp6, Udp6, ...";
    Name: "name", Utf8, false, "Counter name within its group, e.g. ListenOverflows, RetransSegs";
    Value: "value", I64, false, "Value since boot (or since the namespace was created); a few, like Tcp MaxConn, are not counters";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

#[derive(Debug, Clone, Copy)]
pub struct NetCountersTable;

impl Table for NetCountersTable {
    const NAME: &'static str = "net_counters";
    const ABOUT: &'static str =
        "Kernel SNMP/netstat counters per namespace (nstat -a): ListenOverflows, RetransSegs, ...";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Vec<Netns>;

    fn plan(&self, scan: &Scan<'_>) -> Vec<Netns> {
        scan.targets()
    }

    fn label(&self, targets: &Vec<Netns>) -> String {
        counter_table::label(Self::NAME, targets)
    }

    fn read(&self, targets: &Vec<Netns>, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        counter_table::read(targets, counters::read_counters, out)
    }
}
