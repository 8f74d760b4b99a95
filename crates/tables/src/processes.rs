//! `processes`: every process visible in /proc (read with the procfs crate).
//!
//! Pushed down: `pid = N` / `pid IN (…)` read only those processes
//! (Inexact). Everything else is read per process, so the cost is one
//! small read set per process.

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::container_fill::ContainerLookup;
use crate::filters::{pid_pushdown, pids_in};
use crate::live::Emitter;
use crate::table_columns;
use crate::{Pushdown, Scan, Table};
use sockql_collect::processes::{ProcessReader, ProcessRecord};

table_columns!(Col {
    Pid: "pid", I32, false, "Process id";
    Ppid: "ppid", I32, true, "Parent process id";
    Name: "name", Utf8, true, "Command name (comm, at most 15 bytes), as ss -p and top show it";
    Cmdline: "cmdline", Utf8, true, "Command line, arguments joined by spaces without the trailing empty ones a retitled process pads with (as ps -o args shows it); null for kernel threads";
    Exe: "exe", Utf8, true, "Path of the executable (null if not permitted or a kernel thread)";
    Uid: "uid", U32, true, "Real user id";
    User: "user", Utf8, true, "User name of uid from /etc/passwd";
    State: "state", Utf8, true, "Scheduler state: running, sleeping, disk-sleep, zombie, stopped, idle, ...";
    Threads: "threads", I64, true, "Number of threads";
    RssBytes: "rss_bytes", U64, true, "Resident memory, bytes (VmRSS, as ps and top show it)";
    StartTime: "start_time", TimestampMs, true, "When the process started (UTC)";
    FdCount: "fd_count", U64, true, "Open file descriptors (null if not permitted)";
    Cgroup: "cgroup", Utf8, true, "cgroup path (v2, else the first v1 hierarchy): tells which service or container runs it";
    ContainerId: "container_id", Utf8, true, "Container id from the cgroup path (docker, containerd, podman, cri-o, kubernetes)";
    Runtime: "runtime", Utf8, true, "Container runtime the cgroup path names";
    Netns: "netns", U64, true, "Network namespace inode of the process (join with netns.netns)";
    Container: "container", Utf8, true, "Name of the container the process runs in (podman ps / docker ps NAMES), whose id is container_id; null on the host, or when the runtime gives no name";
});

#[derive(Debug, Clone, Copy)]
pub struct ProcessesTable;

impl Table for ProcessesTable {
    const NAME: &'static str = "processes";
    const ABOUT: &'static str = "Every process (ps), with its command line, user, memory and open-file count";
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
        format!("processes: procfs pids={}", pids.as_ref().map_or("all".into(), |p| format!("{p:?}")))
    }

    fn read(&self, pids: &Self::Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let reader = ProcessReader::new();
        // Only the name needs the runtime's metadata: container_id comes
        // from the process's own cgroup path, as before.
        let mut containers = ContainerLookup::new(out.rows.wants(Col::Container), false);
        let all;
        let pids = match pids {
            Some(p) => p,
            None => {
                all = sockql_collect::owners::pids();
                &all
            }
        };
        for &pid in pids {
            // A process that exited since the directory listing is skipped.
            let Some(p) = reader.read(pid) else { continue };
            append(&mut out.rows, &p);
            if containers.wanted() {
                // By the process alone: a host process in a container's
                // namespace (nsenter) is still the host's.
                let name = containers.of(Some(pid), None).and_then(|c| c.name.as_deref());
                out.rows.str(Col::Container, name);
            }
            if out.end_row()?.is_break() {
                break;
            }
        }
        Ok(())
    }
}

fn append(r: &mut RowBuilder, p: &ProcessRecord) {
    use Col::*;
    r.i32(Pid, Some(p.pid));
    r.i32(Ppid, Some(p.ppid));
    r.str(Name, Some(&p.name));
    r.str(Cmdline, p.cmdline.as_deref());
    r.str(Exe, p.exe.as_deref());
    r.u32(Uid, p.uid);
    r.str(User, p.user.as_deref());
    r.str(State, Some(p.state));
    r.i64(Threads, Some(p.threads));
    r.u64(RssBytes, Some(p.rss_bytes));
    r.timestamp_ms(StartTime, p.start_time_ms);
    r.u64(FdCount, p.fd_count);
    r.str(Cgroup, p.cgroup.as_deref());
    r.str(ContainerId, p.container_id.as_deref());
    r.str(Runtime, p.runtime);
    r.u64(Netns, p.netns);
}
