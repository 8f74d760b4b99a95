//! `netns`: every network namespace on the host: named ones (/run/netns,
//! `ip netns add`) and those of running processes (containers), joined by
//! inode, with the container they belong to where the cgroup path says.

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::table_columns;
use sockql_collect::netns;

table_columns!(Col {
    Netns: "netns", U64, false, "Namespace inode: the key other tables' netns columns refer to";
    Name: "name", Utf8, true, "Name under /run/netns (ip netns add), null if unnamed";
    Current: "current", Bool, false, "True for the namespace sockql itself runs in";
    Pid: "pid", I32, true, "Lowest pid inside it; null if only a name holds it";
    Processes: "processes", U32, false, "Processes inside it";
    ContainerId: "container_id", Utf8, true, "Container id from the cgroup path of a process inside (64 hex digits)";
    Runtime: "runtime", Utf8, true, "docker, containerd, podman, cri-o or kubernetes, from the cgroup path";
});

pub const NAME: &str = "netns";
pub const ABOUT: &str = "Every network namespace on the host (lsns -t net, ip netns), with its container";

#[derive(Debug, Default)]
pub struct NetnsTable;

impl LiveSource for NetnsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    /// The namespace list is short and read whole: no filter is used.
    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        vec![false; filters.len()]
    }

    fn partition(&self, projection: Option<&Vec<usize>>, _filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let cols = projection.cloned();
        LivePartition::projected(
            Col::DEFS,
            projection.map(Vec::as_slice),
            "netns: /run/netns + /proc/*/ns/net".into(),
            move |sink| {
                let current = netns::current();
                let mut out = Emitter::new(RowBuilder::new(Col::DEFS, cols.as_deref(), BATCH_ROWS), sink, limit);
                for n in netns::list() {
                    let r = &mut out.rows;
                    r.u64(Col::Netns as usize, Some(n.inode));
                    r.str(Col::Name as usize, n.name.as_deref());
                    r.bool(Col::Current as usize, Some(n.inode == current));
                    r.i32(Col::Pid as usize, n.pid);
                    r.u32(Col::Processes as usize, Some(n.processes as u32));
                    r.str(Col::ContainerId as usize, n.container_id.as_deref());
                    r.str(Col::Runtime as usize, n.runtime);
                    if out.end_row()?.is_break() {
                        break;
                    }
                }
                out.finish()
            },
        )
    }
}
