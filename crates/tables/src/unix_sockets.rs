//! `unix_sockets`: unix domain sockets (ss -x), read with NETLINK_SOCK_DIAG
//! UNIX_DIAG (or /proc/net/unix where netlink is refused or with
//! --no-netlink: no peer, queues or uid), per namespace, with owning
//! processes like `sockets`.
//! Pushed down: netns filters; pid/process only cost a /proc walk when used.

use std::ops::ControlFlow;

use crate::columns::{Column, ColumnDef, RowBuilder};
use crate::container_fill::{Cols, ContainerLookup};
use crate::live::{Emitter, BATCH_ROWS};
use crate::table_columns;
use crate::{owner_fill, scope, Scan, Table};
use sockql_collect::netns::Netns;
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
    Container: "container", Utf8, true, "Name of the container whose network namespace the socket is in (podman ps NAMES); null for the host's namespace";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null for the host's namespace";
});

#[derive(Debug, Clone, Copy)]
pub struct UnixSocketsTable;

/// One scan: its namespaces, and whether netlink may be used.
pub struct Plan {
    targets: Vec<Netns>,
    no_netlink: bool,
    owners: bool,
}

impl Table for UnixSocketsTable {
    const NAME: &'static str = "unix_sockets";
    const ABOUT: &'static str = "Unix domain sockets (ss -x) with their paths, peers and owning processes";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        let owners = scan.wants(Col::Pid) || scan.wants(Col::Process);
        Plan { targets: scan.targets(), no_netlink: scan.options.no_netlink, owners }
    }

    fn label(&self, plan: &Plan) -> String {
        let source = if plan.no_netlink { "/proc/net/unix" } else { "unix_diag" };
        format!("unix_sockets: {source} {} owners={}", scope::describe(&plan.targets), plan.owners)
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        // With owners, rows are built without pid/process and held (see
        // owner_fill::OwnerStream).
        let owner_cols = (Col::Pid.index(), Col::Process.index());
        let (full, inner, owners) = owner_fill::split(Col::DEFS, Some(&out.rows.projection()), owner_cols);
        let sink = out.sink();
        let mut held = owners.then(|| out.holding(RowBuilder::new(Col::DEFS, Some(&inner), BATCH_ROWS)));
        let mut owned = owner_fill::OwnerStream::new(Col::DEFS, &full, owner_cols);
        let options = ReadOptions { no_netlink: plan.no_netlink };
        {
            let out = held.as_mut().unwrap_or(out);
            let ctr_cols = Cols { name: Col::Container, id: Col::ContainerId };
            let mut containers = ContainerLookup::for_namespaces(&out.rows, ctr_cols, &plan.targets);
            scope::each(&plan.targets, |ns| {
                // Every socket of a namespace is that namespace's container's.
                let ctr = containers.of(None, Some(ns.inode)).map(|c| (c.name.clone(), c.id.clone()));
                let (used, received) = sock_diag::read_unix(options, |s| {
                    let r = &mut out.rows;
                    r.str(Col::Type, Some(unix::type_name(s.kind)));
                    r.str(Col::State, Some(tcp_state::name(s.state)));
                    r.str(Col::Path, s.path.as_deref());
                    r.u64(Col::Inode, Some(s.inode as u64));
                    r.u64(Col::PeerInode, s.peer_inode.filter(|&p| p != 0).map(u64::from));
                    r.u32(Col::RecvQ, s.recv_q);
                    r.u32(Col::SendQ, s.send_q);
                    r.u32(Col::Uid, s.uid);
                    r.u64(Col::Netns, Some(ns.inode));
                    r.str(Col::NetnsName, ns.name.as_deref());
                    if containers.wanted() {
                        r.str(Col::Container, ctr.as_ref().and_then(|c| c.0.as_deref()));
                        r.str(Col::ContainerId, ctr.as_ref().map(|c| c.1.as_str()));
                    }
                    let flow = out.end_row()?;
                    if owners && owned.row(s.inode as u64, out, sink)?.is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                    Ok::<_, anyhow::Error>(flow)
                })?;
                out.count(used, received);
                Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
            })?;
        }
        match held {
            Some(held) => owned.finish(held, sink),
            None => Ok(()),
        }
    }
}
