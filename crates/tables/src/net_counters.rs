//! `net_counters`: the kernel's SNMP and netstat counters, as `nstat -a`
//! shows them (/proc/net/snmp, /proc/net/netstat, /proc/net/snmp6), per
//! namespace. The evidence behind the socket rules of thumb lives here:
//! TcpExt ListenOverflows / ListenDrops / TCPReqQFullDrop / SyncookiesSent
//! (SYN flood or a slow accept loop), Tcp RetransSegs, TcpExt
//! TCPTimeWaitOverflow (tw buckets exhausted), TCPAbortOnTimeout.
//! `nstat` prints mib || name (TcpExtListenOverflows).

use crate::table_columns;

table_columns!(Col {
    Mib: "mib", Utf8, false, "Counter group: Ip, Icmp, IcmpMsg, Tcp, Udp, UdpLite, TcpExt, IpExt, MPTcpExt, Ip6, Icmp6, Udp6, ...";
    Name: "name", Utf8, false, "Counter name within its group, e.g. ListenOverflows, RetransSegs";
    Value: "value", I64, false, "Value since boot (or since the namespace was created); a few, like Tcp MaxConn, are not counters";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

pub const NAME: &str = "net_counters";
pub const ABOUT: &str = "Kernel SNMP/netstat counters per namespace (nstat -a): ListenOverflows, RetransSegs, ...";
