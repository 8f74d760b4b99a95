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

use datafusion::logical_expr::Expr;

use crate::columns::{ColumnDef, RowBuilder};
use crate::live::{Emitter, LivePartition, BATCH_ROWS};
use crate::live_table::LiveSource;
use crate::table_columns;
use crate::{streams, SourceOptions};
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
    Overruns: "overruns", U64, false, "Times the listener lost events to a full queue before this row (ENOBUFS); 0 means none lost so far";
});

pub const NAME: &str = "process_events";
pub const ABOUT: &str = "Every fork, exec, rename and exit on the host (the proc connector), while the query listens (--capture-for, default 10 s)";

#[derive(Debug)]
pub struct ProcessEventsTable {
    options: SourceOptions,
}

impl ProcessEventsTable {
    pub fn new(options: SourceOptions) -> Self {
        ProcessEventsTable { options }
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

/// CLOCK_REALTIME minus CLOCK_MONOTONIC now, ns: what turns the kernel's
/// monotonic stamps into wall-clock times.
fn realtime_offset_ns() -> i64 {
    use nix::time::{clock_gettime, ClockId};
    // Neither clock can fail on Linux; a zero would only shift the times.
    let read = |clock| clock_gettime(clock).map_or(0, |t| t.tv_sec() * 1_000_000_000 + t.tv_nsec());
    read(ClockId::CLOCK_REALTIME) - read(ClockId::CLOCK_MONOTONIC)
}

impl LiveSource for ProcessEventsTable {
    fn columns(&self) -> &'static [ColumnDef] {
        Col::DEFS
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn partition(&self, projection: Option<&Vec<usize>>, _filters: &[Expr], limit: Option<usize>) -> LivePartition {
        let bound = streams::bound(&self.options);
        let projection = projection.cloned();
        let label = format!("process_events: proc connector {}", streams::describe(bound));
        LivePartition::projected(Col::DEFS, projection.clone().as_deref(), label, move |sink| {
            let rows = RowBuilder::new(Col::DEFS, projection.as_deref(), BATCH_ROWS);
            let out = std::cell::RefCell::new(Emitter::new(rows, sink, limit));
            let mut listener = ProcListener::open().map_err(|e| {
                anyhow::Error::from(e).context(
                    "listening for process events (needs root: CAP_NET_ADMIN, in the host's network namespace)",
                )
            })?;
            streams::note_start("listening", bound);
            let offset = realtime_offset_ns();
            let wants_details =
                [Col::Name, Col::Cmdline, Col::Netns].iter().any(|c| out.borrow().rows.wants(*c as usize));
            // The last name each pid had, for its exit.
            let mut names: HashMap<i32, String> = HashMap::new();
            let fd = listener.raw_fd();
            streams::poll_for(
                &[fd],
                bound,
                std::time::Duration::ZERO,
                |_| {
                    let mut out = out.borrow_mut();
                    let overruns = listener.overruns();
                    let mut failed = None;
                    listener.read_waiting(|e: &Event| {
                        let r = &mut out.rows;
                        r.timestamp_ns(Col::Ts as usize, Some(e.monotonic_ns as i64 + offset));
                        r.i32(Col::Pid as usize, Some(e.pid));
                        r.i32(Col::Tid as usize, Some(e.tid));
                        let (event, parent, name, cmdline, code, signal) = match &e.kind {
                            Kind::Fork { parent_pid } => (
                                "fork",
                                Some(*parent_pid),
                                wants_details.then(|| owners::comm(e.pid)).flatten(),
                                None,
                                None,
                                None,
                            ),
                            Kind::Exec => (
                                "exec",
                                None,
                                wants_details.then(|| owners::comm(e.pid)).flatten(),
                                wants_details.then(|| processes::cmdline(e.pid)).flatten(),
                                None,
                                None,
                            ),
                            Kind::Comm { name } => ("comm", None, Some(name.clone()), None, None, None),
                            // A thread's exit leaves its process's name for the process's own.
                            Kind::Exit { code, signal } => {
                                let known =
                                    if e.pid == e.tid { names.remove(&e.pid) } else { names.get(&e.pid).cloned() };
                                ("exit", None, known.or_else(|| owners::comm(e.pid)), None, Some(*code), Some(*signal))
                            }
                        };
                        if let (Some(n), false) = (&name, event == "exit") {
                            if e.pid == e.tid {
                                remember(&mut names, e.pid, n);
                            }
                        }
                        r.str(Col::Event as usize, Some(event));
                        r.i32(Col::ParentPid as usize, parent);
                        r.str(Col::Name as usize, name.as_deref());
                        r.str(Col::Cmdline as usize, cmdline.as_deref());
                        r.i32(Col::ExitCode as usize, code.filter(|_| signal == Some(0)));
                        r.i32(Col::ExitSignal as usize, signal);
                        r.u64(
                            Col::Netns as usize,
                            if wants_details && event != "exit" { netns::of_pid(e.pid) } else { None },
                        );
                        r.u64(Col::Overruns as usize, Some(overruns));
                        out.end_row_in(&mut failed)
                    })?;
                    out.settle(failed)
                },
                || {
                    let mut out = out.borrow_mut();
                    out.tick()?;
                    Ok(out.flow())
                },
            )?;
            streams::warn_lost("process events", listener.overruns());
            out.into_inner().finish()
        })
    }
}
