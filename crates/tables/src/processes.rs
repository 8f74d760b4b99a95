//! `processes`: every process visible in /proc (read with the procfs crate).
//!
//! Pushed down: `pid = N` / `pid IN (…)` read only those processes
//! (Inexact). Everything else is read per process, so the cost is one
//! small read set per process.

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::filters::{pid_pushdown, pids_in};
use crate::live::{BatchSink, Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::table_columns;
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
});

pub const NAME: &str = "processes";
pub const ABOUT: &str = "Every process (ps), with its command line, user, memory and open-file count";

#[derive(Debug, Default)]
pub struct ProcessesTable;

impl LiveSource for ProcessesTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn pushdown(&self, filters: &[&Expr]) -> Vec<bool> {
        pid_pushdown(filters, "pid")
    }

    fn partition(&self, projection: Option<&Vec<usize>>, filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let cols = projection.cloned();
        let pids = pids_in(filters, "pid");
        let label = format!("processes: procfs pids={}", pids.as_ref().map_or("all".into(), |p| format!("{p:?}")));
        LivePartition::projected(Col::DEFS, projection.map(Vec::as_slice), label, move |sink| {
            produce(cols.as_deref(), pids.as_deref(), limit, sink)
        })
    }
}

fn append(r: &mut RowBuilder, p: &ProcessRecord) {
    use Col::*;
    r.i32(Pid as usize, Some(p.pid));
    r.i32(Ppid as usize, Some(p.ppid));
    r.str(Name as usize, Some(&p.name));
    r.str(Cmdline as usize, p.cmdline.as_deref());
    r.str(Exe as usize, p.exe.as_deref());
    r.u32(Uid as usize, p.uid);
    r.str(User as usize, p.user.as_deref());
    r.str(State as usize, Some(p.state));
    r.i64(Threads as usize, Some(p.threads));
    r.u64(RssBytes as usize, Some(p.rss_bytes));
    r.timestamp_ms(StartTime as usize, p.start_time_ms);
    r.u64(FdCount as usize, p.fd_count);
    r.str(Cgroup as usize, p.cgroup.as_deref());
    r.str(ContainerId as usize, p.container_id.as_deref());
    r.str(Runtime as usize, p.runtime);
    r.u64(Netns as usize, p.netns);
}

fn produce(
    projection: Option<&[usize]>,
    pids: Option<&[i32]>,
    limit: Option<usize>,
    sink: &BatchSink,
) -> anyhow::Result<()> {
    let reader = ProcessReader::new();
    let mut out = Emitter::new(RowBuilder::new(Col::DEFS, projection, BATCH_ROWS), sink, limit);
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
        if out.end_row()?.is_break() {
            break;
        }
    }
    out.finish()
}
