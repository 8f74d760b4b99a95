//! `netns`: every network namespace on the host: named ones (/run/netns,
//! `ip netns add`) and those of running processes (containers), joined by
//! inode, with the container they belong to where the cgroup path says.

use datafusion::logical_expr::Expr;

use crate::columns::ColumnDef;
use crate::container_fill::ContainerLookup;
use crate::live::Emitter;
use crate::table_columns;
use crate::{Pushdown, Scan, Table};
use sockql_collect::netns;

table_columns!(Col {
    Netns: "netns", U64, false, "Namespace inode: the key other tables' netns columns refer to";
    Name: "name", Utf8, true, "Name under /run/netns (ip netns add), null if unnamed";
    Current: "current", Bool, false, "True for the namespace sockql itself runs in";
    Pid: "pid", I32, true, "Lowest pid inside it; null if only a name holds it";
    Processes: "processes", U32, false, "Processes inside it";
    ContainerId: "container_id", Utf8, true, "Container id from the cgroup path of a process inside (64 hex digits)";
    Runtime: "runtime", Utf8, true, "docker, containerd, podman, cri-o or kubernetes, from the cgroup path";
    Container: "container", Utf8, true, "Name of the container whose namespace this is (podman ps / docker ps NAMES); null for the host's and for namespaces no container holds";
});

#[derive(Debug, Clone, Copy)]
pub struct NetnsTable;

impl Table for NetnsTable {
    const NAME: &'static str = "netns";
    const ABOUT: &'static str = "Every network namespace on the host (lsns -t net, ip netns), with its container";
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = ();

    /// The namespace list is short and read whole: no filter is used.
    fn pushdown(&self, _filter: &Expr) -> Pushdown {
        Pushdown::Unsupported
    }

    fn plan(&self, _scan: &Scan<'_>) {}

    fn label(&self, _plan: &()) -> String {
        "netns: /run/netns + /proc/*/ns/net".into()
    }

    fn read(&self, _plan: &(), out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let current = netns::current();
        let mut containers = ContainerLookup::new(out.rows.wants(Col::Container), false);
        for n in netns::list() {
            let r = &mut out.rows;
            r.u64(Col::Netns, Some(n.inode));
            r.str(Col::Name, n.name.as_deref());
            r.bool(Col::Current, Some(n.inode == current));
            r.i32(Col::Pid, n.pid);
            r.u32(Col::Processes, Some(n.processes as u32));
            r.str(Col::ContainerId, n.container_id.as_deref());
            r.str(Col::Runtime, n.runtime);
            if containers.wanted() {
                r.str(Col::Container, containers.of(None, Some(n.inode)).and_then(|c| c.name.as_deref()));
            }
            if out.end_row()?.is_break() {
                break;
            }
        }
        Ok(())
    }
}
