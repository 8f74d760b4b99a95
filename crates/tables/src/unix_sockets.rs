//! `unix_sockets`: unix domain sockets (ss -x), read with NETLINK_SOCK_DIAG
//! UNIX_DIAG (or /proc/net/unix where netlink is refused or with
//! --no-netlink: no peer, queues or uid), per namespace, with owning
//! processes like `sockets`.
//! Pushed down: netns filters; pid/process only cost a /proc walk when used.

use std::ops::ControlFlow;

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::table_columns;
use crate::{owner_fill, scope, SourceOptions};
use sockql_collect::sock_diag::{self, unix};
use sockql_collect::{tcp_state, ReadOptions};

table_columns!(Col {
    Type: "type", Utf8, false, "stream, dgram or seqpacket";
    State: "state", Utf8, false, "ESTAB, LISTEN, UNCONN, SYN-SENT (connecting), as ss -x prints it";
    Path: "path", Utf8, true, "Bound path; abstract names start with @ (as ss prints them); null if unbound";
    Inode: "inode", U64, false, "Socket inode (join with socket_owners.inode)";
    PeerInode: "peer_inode", U64, true, "Inode of the connected peer socket";
    RecvQ: "recv_q", U32, true, "Queued bytes to read; for LISTEN, pending connections";
    SendQ: "send_q", U32, true, "Queued bytes to send; for LISTEN, the backlog";
    Uid: "uid", U32, true, "User id that created the socket";
    Pid: "pid", I32, true, "Lowest pid holding the socket; null if none is visible";
    Process: "process", Utf8, true, "Command name (comm) of pid";
    Netns: "netns", U64, false, "Network namespace inode (lsns -t net)";
    NetnsName: "netns_name", Utf8, true, "Name of the network namespace under /run/netns, null if unnamed";
});

pub const NAME: &str = "unix_sockets";
pub const ABOUT: &str = "Unix domain sockets (ss -x) with their paths, peers and owning processes";

#[derive(Debug)]
pub struct UnixSocketsTable {
    options: SourceOptions,
}

impl UnixSocketsTable {
    pub fn new(options: SourceOptions) -> Self {
        UnixSocketsTable { options }
    }
}

impl LiveSource for UnixSocketsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let owner_cols = (Col::Pid as usize, Col::Process as usize);
        let (full, inner, owners) = owner_fill::split(Col::DEFS, projection.map(|p| p.as_slice()), owner_cols);
        let targets = scope::targets(filters, self.options.all_netns());
        let schema = RowBuilder::new(Col::DEFS, Some(&full), 0).schema();
        let no_netlink = self.options.no_netlink;
        let source = if no_netlink { "/proc/net/unix" } else { "unix_diag" };
        let label = format!("unix_sockets: {source} {} owners={owners}", scope::describe(&targets));
        LivePartition::new(schema, label, move |sink| {
            let rows = RowBuilder::new(Col::DEFS, Some(&inner), BATCH_ROWS);
            let mut out = if owners { Emitter::holding(rows, limit) } else { Emitter::new(rows, sink, limit) };
            let mut owned = owner_fill::OwnerStream::new(Col::DEFS, &full, owner_cols);
            let options = ReadOptions { no_netlink };
            scope::each(&targets, |ns| {
                let (used, received) = sock_diag::read_unix(options, |s| {
                    let r = &mut out.rows;
                    r.str(Col::Type as usize, Some(unix::type_name(s.kind)));
                    r.str(Col::State as usize, Some(tcp_state::name(s.state)));
                    r.str(Col::Path as usize, s.path.as_deref());
                    r.u64(Col::Inode as usize, Some(s.inode as u64));
                    r.u64(Col::PeerInode as usize, s.peer_inode.filter(|&p| p != 0).map(u64::from));
                    r.u32(Col::RecvQ as usize, s.recv_q);
                    r.u32(Col::SendQ as usize, s.send_q);
                    r.u32(Col::Uid as usize, s.uid);
                    r.u64(Col::Netns as usize, Some(ns.inode));
                    r.str(Col::NetnsName as usize, ns.name.as_deref());
                    let flow = out.end_row()?;
                    if owners && owned.row(s.inode as u64, &mut out, sink)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    Ok::<_, anyhow::Error>(flow)
                })?;
                sink.metrics.read(used, received);
                Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
            })?;
            if owners {
                return owned.finish(out, sink);
            }
            out.finish()
        })
    }
}
