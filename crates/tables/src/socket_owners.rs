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

use crate::columns::ColumnDef;
use crate::container_fill::{Cols, ContainerLookup};
use crate::filters::{pid_pushdown, pids_in};
use crate::live::Emitter;
use crate::table_columns;
use crate::{Pushdown, Scan, Table};
use sockql_collect::notice;
use sockql_collect::{netns, owners};

table_columns!(Col {
    Inode: "inode", U64, false, "Socket inode (join with sockets.inode)";
    Pid: "pid", I32, false, "Process holding a descriptor of the socket";
    Fd: "fd", I32, false, "Descriptor number in that process";
    Netns: "netns", U64, false, "Network namespace inode of the holding process (its sockets usually, not always, live there)";
    NetnsName: "netns_name", Utf8, true, "Name of that namespace under /run/netns, null if unnamed";
    Container: "container", Utf8, true, "Name of the container the holding process runs in (podman ps / docker ps NAMES); null on the host";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null on the host";
});

#[derive(Debug, Clone, Copy)]
pub struct SocketOwnersTable;

impl Table for SocketOwnersTable {
    const NAME: &'static str = "socket_owners";
    const ABOUT: &'static str = "Which processes hold which sockets: one row per socket descriptor (lsof -i)";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    /// The pids a filter names, or all.
    type Plan = Option<Vec<i32>>;

    fn pushdown(&self, filter: &Expr) -> Pushdown {
        pid_pushdown(filter, "pid")
    }

    fn plan(&self, scan: &Scan<'_>) -> Self::Plan {
        pids_in(scan.filters, "pid")
    }

    fn label(&self, pids: &Self::Plan) -> String {
        format!("socket_owners: /proc/*/fd pids={}", pids.as_ref().map_or("all".into(), |p| format!("{p:?}")))
    }

    fn read(&self, pids: &Self::Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let scan = match pids {
            Some(p) => owners::scan_pids(p),
            None => owners::scan(),
        };
        if scan.denied > 0 {
            notice::note_once(
                "owners-denied",
                format!(
                    "not running as root: the open files of {} processes of other users cannot be read, \
                     so their sockets have no owner rows ({})",
                    scan.denied,
                    sockql_collect::capabilities::fd_tables_refused()
                ),
            );
        }
        let names = netns::names();
        let mut containers = ContainerLookup::for_scan(&out.rows, Cols { name: Col::Container, id: Col::ContainerId });
        let mut netns_of: HashMap<i32, Option<u64>> = HashMap::new();
        for f in &scan.fds {
            // A process that exited since its fds were read is skipped.
            let Some(ns) = *netns_of.entry(f.pid).or_insert_with(|| netns::of_pid(f.pid)) else { continue };
            out.rows.u64(Col::Netns, Some(ns));
            out.rows.str(Col::NetnsName, names.get(&ns).map(String::as_str));
            out.rows.u64(Col::Inode, Some(f.inode));
            out.rows.i32(Col::Pid, Some(f.pid));
            out.rows.i32(Col::Fd, Some(f.fd));
            // By the holding process alone, as processes.container is.
            containers.fill(&mut out.rows, Cols { name: Col::Container, id: Col::ContainerId }, Some(f.pid), None);
            if out.end_row()?.is_break() {
                break;
            }
        }
        Ok(())
    }
}
