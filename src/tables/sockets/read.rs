//! One `sockets` scan: read each target namespace through the sock_diag
//! reader (which chooses netlink or /proc itself), build rows, and fill
//! owners afterwards when the query uses them.

use std::ops::ControlFlow;

use super::pushdown::ScanPlan;
use super::rows::{append_diag, append_proc, Interfaces};
use super::Col;
use crate::collect::cgroups::CgroupPaths;
use crate::collect::sock_diag::{read_inet, InetSocket};
use crate::collect::ReadOptions;
use crate::tables::columns::RowBuilder;
use crate::tables::live::{BatchSink, Emitter, BATCH_ROWS};
use crate::tables::{owner_fill, scope};

/// Rows a scan with owners holds before it stops waiting for the dump to
/// end: past this, it walks /proc for every socket once and streams the
/// rest, so memory stays bounded however large the table.
const HOLD_ROWS: usize = 2 * BATCH_ROWS;

pub(super) fn produce(plan: &ScanPlan, sink: &BatchSink) -> anyhow::Result<()> {
    // With owners, rows are built without pid/process and held until the
    // dump is over; then the owners of exactly those sockets are looked up
    // (a walk that stops once each has one). A dump that outgrows
    // HOLD_ROWS switches to owners of all sockets, and streams.
    let full: Vec<usize> = plan.projection.clone().unwrap_or_else(|| (0..Col::DEFS.len()).collect());
    let inner: Vec<usize> = full.iter().copied().filter(|&c| c != Col::Pid as usize && c != Col::Process as usize).collect();
    let rows = RowBuilder::new(Col::DEFS, Some(&inner), BATCH_ROWS);
    let mut out = if plan.owners { Emitter::holding(rows, plan.limit) } else { Emitter::new(rows, sink, plan.limit) };
    let mut inodes: Vec<u64> = Vec::new();
    let owner_cols = (Col::Pid as usize, Col::Process as usize);
    // Once the hold is outgrown: every socket's owner, and how many rows
    // (of `inodes`) have been sent.
    let mut streaming: Option<(owner_fill::Owners, usize)> = None;
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
                    append_diag(&mut out.rows, protocol, msg, &mut ifs, &cgroups, ns);
                    msg.inode() as u64
                }
                InetSocket::Proc { protocol, family, socket } => {
                    append_proc(&mut out.rows, protocol, family, socket, hz, ns);
                    socket.inode
                }
            };
            if plan.owners {
                inodes.push(inode);
            }
            let flow = out.end_row()?;
            if plan.owners && streaming.is_none() && inodes.len() > HOLD_ROWS {
                streaming = Some((owner_fill::Owners::all(), 0));
            }
            if let Some((owners, sent)) = streaming.as_mut() {
                let held = out.take_held();
                let rows: usize = held.iter().map(|b| b.num_rows()).sum();
                if rows > 0 {
                    if !owners.send(held, &inodes[*sent..], Col::DEFS, &full, owner_cols, sink)? {
                        return Ok::<_, anyhow::Error>(ControlFlow::Break(()));
                    }
                    *sent += rows;
                }
            }
            Ok(flow)
        })?;
        sink.metrics.read(used, received);
        Ok(if out.done() { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    })?;
    if plan.owners {
        let held = out.into_held()?;
        return match streaming {
            Some((mut owners, sent)) => owners.send(held, &inodes[sent..], Col::DEFS, &full, owner_cols, sink).map(drop),
            None => owner_fill::fill(held, &inodes, Col::DEFS, &full, owner_cols, sink),
        };
    }
    out.finish()
}
