//! `netlink_sockets`: the netlink sockets of each namespace (ss -f
//! netlink, /proc/net/netlink), with the messages each listener lost
//! (`drops`): the lost events of conntrackd, `ss -E`, `conntrack -E`,
//! sockql's own event streams, or any other listener.

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::table_columns;
use crate::{scope, SourceOptions};
use sockql_collect::netlink_sockets::{protocol_name, read};

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

pub const NAME: &str = "netlink_sockets";
pub const ABOUT: &str =
    "Netlink sockets per namespace (ss -f netlink, /proc/net/netlink), with the events each listener lost (drops)";

#[derive(Debug)]
pub struct NetlinkSocketsTable {
    options: SourceOptions,
}

impl NetlinkSocketsTable {
    pub fn new(options: SourceOptions) -> Self {
        NetlinkSocketsTable { options }
    }
}

impl LiveSource for NetlinkSocketsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let cols = projection.cloned();
        let targets = scope::targets(filters, self.options.all_netns());
        let label = format!("{NAME}: /proc/net/netlink {}", scope::describe(&targets));
        LivePartition::projected(Col::DEFS, projection.map(Vec::as_slice), label, move |sink| {
            let mut out = Emitter::new(RowBuilder::new(Col::DEFS, cols.as_deref(), BATCH_ROWS), sink, limit);
            scope::each(&targets, |ns| {
                for s in read()? {
                    let r = &mut out.rows;
                    r.str(Col::Protocol as usize, Some(&protocol_name(s.protocol)));
                    r.u32(Col::Portid as usize, Some(s.portid));
                    r.u32(Col::Groups as usize, Some(s.groups));
                    r.u64(Col::Rmem as usize, Some(s.rmem));
                    r.u64(Col::Wmem as usize, Some(s.wmem));
                    r.bool(Col::Dumping as usize, Some(s.dumping));
                    r.u64(Col::Drops as usize, Some(s.drops));
                    r.u64(Col::Inode as usize, Some(s.inode));
                    r.u64(Col::Netns as usize, Some(ns.inode));
                    r.str(Col::NetnsName as usize, ns.name.as_deref());
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
