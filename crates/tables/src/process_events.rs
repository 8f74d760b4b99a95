//! `process_events`: every fork, exec, name change and exit on the host
//! while the query listens (`--capture-for`, 10 s by default; a LIMIT or
//! Ctrl-C ends it sooner), from the proc connector, so a client that
//! lives for milliseconds can still be named. Threads count too: a
//! thread's rows have `tid` <> `pid`.
//!
//! The kernel gives pids and times; sockql reads the name, command line
//! and network namespace from /proc as the event arrives (for an exit,
//! the name the run last saw for that pid), so they are null for a
//! process already gone by then.

use std::collections::HashMap;
use std::ops::ControlFlow;

use crate::columns::ColumnDef;
use crate::container_fill::{Cols, ContainerLookup};
use crate::listen::{listen, Listener};
use crate::live::Emitter;
use crate::table_columns;
use crate::{streams, Scan, Table};
use sockql_collect::proc_events::{Event, Kind, ProcListener};
use sockql_collect::{netns, owners, processes};

table_columns!(Col {
    Ts: "ts", TimestampNs, false, "When the kernel stamped the event, UTC";
    Event: "event", Utf8, false, "fork, exec, comm (renamed) or exit";
    Pid: "pid", I32, false, "Process id (thread group), as the host numbers it";
    Tid: "tid", I32, false, "Thread id: equal to pid for the process's first thread";
    ParentPid: "parent_pid", I32, true, "fork: the process that forked";
    Name: "name", Utf8, true, "Command name: /proc/PID/comm when the event came (comm: the new name; exit: the last name this run saw)";
    Cmdline: "cmdline", Utf8, true, "exec: the new command line, arguments separated by spaces, read as the event came";
    ExitCode: "exit_code", I32, true, "exit: the exit status (0 to 255) when it exited normally";
    ExitSignal: "exit_signal", I32, true, "exit: the signal that killed it, 0 when it exited normally";
    Netns: "netns", U64, true, "Network namespace of the process when the event came";
    Container: "container", Utf8, true, "Name of the container the process runs in (podman ps / docker ps NAMES), by its cgroup when the event came (exit: as a snapshot of the containers knew it); null on the host, or when the runtime gives no name";
    ContainerId: "container_id", Utf8, true, "Full id of that container (64 hex digits); null on the host";
    Overruns: "overruns", U64, false, "Times the listener lost events to a full queue before this row (ENOBUFS); 0 means none lost so far";
});

#[derive(Debug, Clone, Copy)]
pub struct ProcessEventsTable;

/// One scan: how long it listens, and whether it reads /proc for the
/// name, command line and namespace.
pub struct Plan {
    bound: Option<std::time::Duration>,
    /// The session whose front end ends its streams (Ctrl-C).
    session: std::sync::Arc<streams::Streams>,
    details: bool,
}

impl Table for ProcessEventsTable {
    const NAME: &'static str = "process_events";
    const ABOUT: &'static str = "Every fork, exec, rename and exit on the host (the proc connector), while the query listens (--capture-for, default 10 s)";
    const KIND: crate::Kind = crate::Kind::Stream;
    const COLUMNS: &'static [ColumnDef] = Col::DEFS;
    type Plan = Plan;

    fn plan(&self, scan: &Scan<'_>) -> Plan {
        let details = [Col::Name, Col::Cmdline, Col::Netns].iter().any(|&c| scan.wants(c));
        Plan { bound: streams::bound(scan.options), session: scan.options.streams.clone(), details }
    }

    fn label(&self, plan: &Plan) -> String {
        format!("process_events: proc connector {}", streams::describe(plan.bound))
    }

    fn read(&self, plan: &Plan, out: &mut Emitter<'_>) -> anyhow::Result<()> {
        let listener = ProcListener::open().map_err(|e| {
            anyhow::Error::from(e)
                .context("listening for process events (needs root: CAP_NET_ADMIN, in the host's network namespace)")
        })?;
        let mut listening = [Listening {
            listener,
            offset: streams::realtime_offset_ns(),
            details: plan.details,
            names: HashMap::new(),
            containers: ContainerLookup::for_stream(&out.rows, CONTAINER),
        }];
        listen("process events", &plan.session, plan.bound, &mut listening, out, |_| Ok(()))
    }
}

/// The host's proc connector, and what rows need beyond its events.
struct Listening {
    listener: ProcListener,
    /// What turns the kernel's monotonic stamps into wall-clock times.
    offset: i64,
    /// Read name, command line and namespace from /proc.
    details: bool,
    /// The last name each pid had, for its exit.
    names: HashMap<i32, String>,
    /// The containers rows are named by (read only when projected).
    containers: ContainerLookup,
}

const CONTAINER: Cols<Col> = Cols { name: Col::Container, id: Col::ContainerId };

impl Listener for Listening {
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.raw_fd()
    }

    fn overruns(&self) -> u64 {
        self.listener.overruns()
    }

    fn read_waiting(&mut self, out: &mut Emitter<'_>) -> anyhow::Result<ControlFlow<()>> {
        let Listening { listener, offset, details, names, containers } = self;
        let (offset, details) = (*offset, *details);
        let overruns = listener.overruns();
        let mut failed = None;
        listener.read_waiting(|e: &Event| {
            let r = &mut out.rows;
            r.timestamp_ns(Col::Ts, Some(e.monotonic_ns as i64 + offset));
            r.i32(Col::Pid, Some(e.pid));
            r.i32(Col::Tid, Some(e.tid));
            let (event, parent, name, cmdline, code, signal) = match &e.kind {
                Kind::Fork { parent_pid } => {
                    ("fork", Some(*parent_pid), details.then(|| owners::comm(e.pid)).flatten(), None, None, None)
                }
                Kind::Exec => (
                    "exec",
                    None,
                    details.then(|| owners::comm(e.pid)).flatten(),
                    details.then(|| processes::cmdline(e.pid)).flatten(),
                    None,
                    None,
                ),
                Kind::Comm { name } => ("comm", None, Some(name.clone()), None, None, None),
                // A thread's exit leaves its process's name for the process's own.
                Kind::Exit { code, signal } => {
                    let known = if e.pid == e.tid { names.remove(&e.pid) } else { names.get(&e.pid).cloned() };
                    ("exit", None, known.or_else(|| owners::comm(e.pid)), None, Some(*code), Some(*signal))
                }
            };
            if let (Some(n), false) = (&name, event == "exit") {
                if e.pid == e.tid {
                    remember(names, e.pid, n);
                }
            }
            r.str(Col::Event, Some(event));
            r.i32(Col::ParentPid, parent);
            r.str(Col::Name, name.as_deref());
            r.str(Col::Cmdline, cmdline.as_deref());
            r.i32(Col::ExitCode, code.filter(|_| signal == Some(0)));
            r.i32(Col::ExitSignal, signal);
            r.u64(Col::Netns, if details && event != "exit" { netns::of_pid(e.pid) } else { None });
            // By the process alone, as processes.container: a host process
            // that entered a container's namespace is not the container's.
            containers.fill_event(r, CONTAINER, Some(e.pid), None);
            r.u64(Col::Overruns, Some(overruns));
            out.end_row_in(&mut failed)
        })?;
        out.settle(failed)
    }
}

/// The most names kept for exits: more processes than a host runs at
/// once. The map holds live processes only (an exit takes its entry), but
/// an exit the kernel's queue dropped would leave one behind for good.
const MAX_NAMES: usize = 1 << 17;

/// Keep `name` as `pid`'s for its exit. At the cap, first forget the
/// pids that are gone (their exits were lost); if the live ones alone
/// fill it, the new name is not kept (its exit reads /proc, or is null).
fn remember(names: &mut HashMap<i32, String>, pid: i32, name: &str) {
    if names.len() >= MAX_NAMES && !names.contains_key(&pid) {
        names.retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if names.len() >= MAX_NAMES {
            sockql_collect::notice::note_once(
                "process-events-names-cap",
                format!(
                    "more than {MAX_NAMES} processes alive: some exits name their process from /proc, or not at all"
                ),
            );
            return;
        }
    }
    names.insert(pid, name.to_string());
}
