//! One `sockets` scan: read each target namespace through the sock_diag
//! reader (which chooses netlink or /proc itself), build rows, and fill
//! owners afterwards when the query uses them.

use std::ops::ControlFlow;

use super::pushdown::ScanPlan;
use super::rows::{append_diag, append_proc, Interfaces, Wanted};
use super::Col;
use crate::columns::RowBuilder;
use crate::live::{BatchSink, Emitter, BATCH_ROWS};
use crate::{owner_fill, scope};
use sockql_collect::cgroups::CgroupPaths;
use sockql_collect::sock_diag::{read_inet, InetSocket};
use sockql_collect::ReadOptions;

pub(super) fn produce(plan: &ScanPlan, sink: &BatchSink) -> anyhow::Result<()> {
    // With owners, rows are built without pid/process and held (see
    // owner_fill::OwnerStream).
    let owner_cols = (Col::Pid as usize, Col::Process as usize);
    let (full, inner, _) = owner_fill::split(Col::DEFS, plan.projection.as_deref(), owner_cols);
    let rows = RowBuilder::new(Col::DEFS, Some(&inner), BATCH_ROWS);
    let mut out = if plan.owners { Emitter::holding(rows, plan.limit) } else { Emitter::new(rows, sink, plan.limit) };
    let mut owners = owner_fill::OwnerStream::new(Col::DEFS, &full, owner_cols);
    let wanted = Wanted::of(&out.rows);
    let hz = procfs::ticks_per_second();
    let options = ReadOptions { no_netlink: plan.no_netlink };
    // cgroups are not per network namespace: one walk names them for all.
    let cgroups = if plan.cgroup_paths { CgroupPaths::read() } else { CgroupPaths::default() };
    scope::each(&plan.targets, |ns| {
        if out.done() {
            return Ok(ControlFlow::Break(()));
        }
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
            let flow = out.end_row()?;
            if plan.owners && owners.row(inode, &mut out, sink)?.is_break() {
                return Ok::<_, anyhow::Error>(ControlFlow::Break(()));
            }
            Ok(flow)
        })?;
        sink.metrics.read(used, received);
        Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    })?;
    if plan.owners {
        return owners.finish(out, sink);
    }
    out.finish()
}
