//! `sockstat`: the socket summary of /proc/net/sockstat and sockstat6 per
//! namespace (ss -s): sockets in use, orphans, TIME-WAIT buckets, memory.

use crate::table_columns;

table_columns!(Col {
    Protocol: "protocol", Utf8, false, "sockets, TCP, UDP, UDPLITE, RAW, FRAG, TCP6, UDP6, ...";
    Name: "name", Utf8, false, "inuse, orphan, tw (TIME-WAIT), alloc, mem (pages), used, memory";
    Value: "value", I64, false, "Current value";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

pub const NAME: &str = "sockstat";
pub const ABOUT: &str = "Socket summary per namespace (/proc/net/sockstat, ss -s): in use, orphans, TIME-WAIT, memory";
