//! One `sockets` scan: read each target namespace through the sock_diag
//! reader (which chooses netlink or /proc itself), build rows, and fill
//! owners afterwards when the query uses them.

use std::ops::ControlFlow;

use super::pushdown::ScanPlan;
use super::rows::{append_diag, append_proc, Interfaces, Wanted};
use super::Col;
use crate::columns::{Column, RowBuilder};
use crate::container_fill::{Cols, ContainerLookup};
use crate::live::{Emitter, BATCH_ROWS};
use crate::{owner_fill, scope};
use sockql_collect::cgroups::CgroupPaths;
use sockql_collect::sock_diag::{read_inet, InetSocket};
use sockql_collect::ReadOptions;

pub(super) fn produce(plan: &ScanPlan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
    let ctr_cols = Cols { name: Col::Container, id: Col::ContainerId };
    // When owners are walked anyway, the whole snapshot (a socket is named
    // by its holder's process); else only the scanned namespaces'
    // containers, read from their processes (the cheap path at hundreds
    // of containers: BENCHMARKS.md "Containers at 500").
    let containers = match plan.owners {
        true => ContainerLookup::for_scan(&out.rows, ctr_cols),
        false => ContainerLookup::for_namespaces(&out.rows, ctr_cols, &plan.targets),
    };
    // A socket is its holder's container's first: when the query looks
    // owners up anyway, or when a container shares a scanned namespace
    // without owning it (--network host). Otherwise by namespace alone,
    // with no owner walk.
    let by_owner =
        containers.wanted() && (plan.owners || plan.targets.iter().any(|ns| containers.shares_namespace(ns.inode)));
    let with_owners = plan.owners || by_owner;
    // With owners, rows are built without pid/process (and, named by
    // owner, without the container columns) and held (see
    // owner_fill::OwnerStream).
    let owner_cols = (Col::Pid.index(), Col::Process.index());
    let (full, mut inner, _) = owner_fill::split(Col::DEFS, Some(&out.rows.projection()), owner_cols);
    let named = (Col::Container.index(), Col::ContainerId.index());
    if by_owner {
        inner.retain(|&c| c != named.0 && c != named.1);
    }
    let sink = out.sink();
    let mut held = with_owners.then(|| out.holding(RowBuilder::new(Col::DEFS, Some(&inner), BATCH_ROWS)));
    let mut owners = owner_fill::OwnerStream::new(Col::DEFS, &full, owner_cols);
    let mut containers = match by_owner {
        true => {
            owners = owners.naming(owner_fill::ByOwner { cols: named, lookup: containers });
            None
        }
        false => Some(containers).filter(ContainerLookup::wanted),
    };
    let out = held.as_mut().unwrap_or(out);
    let wanted = Wanted::of(&out.rows);
    let hz = procfs::ticks_per_second();
    let options = ReadOptions { no_netlink: plan.no_netlink };
    // cgroups are not per network namespace: one walk names them for all.
    let cgroups = if plan.cgroup_paths { CgroupPaths::read() } else { CgroupPaths::default() };
    scope::each(&plan.targets, |ns| {
        if out.done() {
            return Ok(ControlFlow::Break(()));
        }
        // Without owners, every socket of a namespace is that namespace's
        // container's.
        let ctr = containers.as_mut().and_then(|c| c.of(None, Some(ns.inode))).map(|c| (c.name.clone(), c.id.clone()));
        let mut ifs = Interfaces::default();
        let (used, received) = read_inet(options, &plan.dumps, plan.states, plan.extensions, &plan.conds, |s| {
            let inode = match s {
                InetSocket::Diag { protocol, msg } => {
                    append_diag(&mut out.rows, wanted, protocol, msg, &mut ifs, &cgroups, ns);
                    msg.inode() as u64
                }
                InetSocket::Proc { protocol, family, socket } => {
                    append_proc(&mut out.rows, protocol, family, socket, hz, ns);
                    socket.inode
                }
            };
            if containers.is_some() {
                out.rows.str(Col::Container, ctr.as_ref().and_then(|c| c.0.as_deref()));
                out.rows.str(Col::ContainerId, ctr.as_ref().map(|c| c.1.as_str()));
            }
            let flow = out.end_row()?;
            if with_owners && owners.row_in(inode, ns.inode, out, sink)?.is_break() {
                return Ok::<_, anyhow::Error>(ControlFlow::Break(()));
            }
            Ok(flow)
        })?;
        out.count(used, received);
        Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    })?;
    match held {
        Some(held) => owners.finish(held, sink),
        None => Ok(()),
    }
}
