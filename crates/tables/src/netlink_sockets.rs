//! `netlink_sockets`: the netlink sockets of each namespace (ss -f
//! netlink, /proc/net/netlink), with the messages each listener lost
//! (`drops`): the lost events of conntrackd, `ss -E`, `conntrack -E`,
//! sockql's own event streams, or any other listener.

use crate::columns::ColumnDef;
use crate::live::Emitter;
use crate::table_columns;
use crate::{scope, Scan, Table};
use sockql_collect::netlink_sockets::{protocol_name, read};
use sockql_collect::netns::Netns;

table_columns!(Col {
    Protocol: "protocol", Utf8, false, "Netlink protocol as linux/netlink.h names it: route, sock_diag, netfilter (conntrack events), connector (process events), generic, audit, kobject_uevent, ...";
    Portid: "portid", U32, false, "Port id the socket is bound to (often the owner's pid); 0 for the kernel's own socket of the protocol";
    Groups: "groups", U32, false, "Multicast groups it listens to, first 32, as a bit mask (0: not an event listener)";
    Rmem: "rmem", U64, false, "Bytes queued for it to read (a listener that falls behind grows this up to its receive buffer)";
    Wmem: "wmem", U64, false, "Bytes it sent not yet consumed";
    Dumping: "dumping", Bool, false, "A dump (a table read in parts) is in progress on it";
    Drops: "drops", U64, false, "Messages the kernel could not queue to it because its receive buffer was full: events it lost (the listener sees ENOBUFS once)";
    Inode: "inode", U64, false, "Socket inode: join socket_owners (USING inode) for the processes holding it";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

#[derive(Debug, Clone, Copy)]
pub struct NetlinkSocketsTable;

impl Table for NetlinkSocketsTable {
    const NAME: &'static str = "netlink_sockets";
    const ABOUT: &'static str =
        "Netlink sockets per namespace (ss -f netlink, /proc/net/netlink), with the events each listener lost (drops)";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Vec<Netns>;

    fn plan(&self, scan: &Scan<'_>) -> Vec<Netns> {
        scan.targets()
    }

    fn label(&self, targets: &Vec<Netns>) -> String {
        format!("netlink_sockets: /proc/net/netlink {}", scope::describe(targets))
    }

    fn read(&self, targets: &Vec<Netns>, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        scope::each(targets, |ns| {
            for s in read()? {
                let r = &mut out.rows;
                r.str(Col::Protocol, Some(&protocol_name(s.protocol)));
                r.u32(Col::Portid, Some(s.portid));
                r.u32(Col::Groups, Some(s.groups));
                r.u64(Col::Rmem, Some(s.rmem));
                r.u64(Col::Wmem, Some(s.wmem));
                r.bool(Col::Dumping, Some(s.dumping));
                r.u64(Col::Drops, Some(s.drops));
                r.u64(Col::Inode, Some(s.inode));
                r.u64(Col::Netns, Some(ns.inode));
                r.str(Col::NetnsName, ns.name.as_deref());
                if out.end_row()?.is_break() {
                    return Ok(std::ops::ControlFlow::Break(()));
                }
            }
            Ok(std::ops::ControlFlow::Continue(()))
        })
    }
}
