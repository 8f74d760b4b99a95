//! `socket_owners`: which process holds which socket, one row per open
//! socket descriptor. The many-to-many truth behind `sockets.pid`: a
//! listening socket shared by pre-forked workers has a row per worker.
//!
//! Source: a walk of /proc/<pid>/fd. Pushed down: `pid = N` / `pid IN
//! (…)` walk only those processes (Inexact). Ownership is a matter of
//! processes, not of network namespaces: the table always covers every
//! visible process (a process may hold sockets of several namespaces), and
//! its netns columns are the process's namespace.

use datafusion::logical_expr::Expr;

use std::collections::HashMap;

use crate::columns::{ColumnDef, RowBuilder};
use crate::filters::{pid_pushdown, pids_in};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::table_columns;
use sockql_collect::notice;
use sockql_collect::{netns, owners};

table_columns!(Col {
    Inode: "inode", U64, false, "Socket inode (join with sockets.inode)";
    Pid: "pid", I32, false, "Process holding a descriptor of the socket";
    Fd: "fd", I32, false, "Descriptor number in that process";
    Netns: "netns", U64, false, "Network namespace inode of the holding process (its sockets usually, not always, live there)";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, null if unnamed";
});

pub const NAME: &str = "socket_owners";
pub const ABOUT: &str = "Which processes hold which sockets: one row per socket descriptor (lsof -i)";

#[derive(Debug, Default)]
pub struct SocketOwnersTable;

impl LiveSource for SocketOwnersTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        pid_pushdown(filters, "pid")
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let pids = pids_in(filters, "pid");
        let cols = projection.cloned();
        let label =
            format!("socket_owners: /proc/*/fd pids={}", pids.as_ref().map_or("all".into(), |p| format!("{p:?}")));
        LivePartition::projected(Col::DEFS, projection.map(Vec::as_slice), label, move |sink| {
            let scan = match &pids {
                Some(p) => owners::scan_pids(p),
                None => owners::scan(),
            };
            if scan.denied > 0 {
                notice::note_once(
                    "owners-denied",
                    format!(
                        "not running as root: the open files of {} processes of other users cannot be read, \
                         so their sockets have no owner rows",
                        scan.denied
                    ),
                );
            }
            let mut out = Emitter::new(RowBuilder::new(Col::DEFS, cols.as_deref(), BATCH_ROWS), sink, limit);
            let names = netns::names();
            let mut netns_of: HashMap<i32, Option<u64>> = HashMap::new();
            for f in &scan.fds {
                // A process that exited since its fds were read is skipped.
                let Some(ns) = *netns_of.entry(f.pid).or_insert_with(|| netns::of_pid(f.pid)) else { continue };
                out.rows.u64(Col::Netns as usize, Some(ns));
                out.rows.str(Col::NetnsName as usize, names.get(&ns).map(String::as_str));
                out.rows.u64(Col::Inode as usize, Some(f.inode));
                out.rows.i32(Col::Pid as usize, Some(f.pid));
                out.rows.i32(Col::Fd as usize, Some(f.fd));
                if out.end_row()?.is_break() {
                    break;
                }
            }
            out.finish()
        })
    }
}
