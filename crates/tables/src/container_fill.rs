//! The `container` and `container_id` columns every table with a process
//! or a network namespace carries: one [`Containers`] snapshot per scan,
//! read only when one of the two columns is projected, and looked up by
//! the row's process first (the container that process runs in), then
//! by its network namespace (the container whose namespace it is). A
//! host process, and a socket of the host's namespace with no container
//! owner, are NULL.
//!
//! A scan that names rows by their namespace only (sockets,
//! unix_sockets) reads the containers of its target namespaces only
//! ([`ContainerLookup::for_namespaces`], `Containers::read_for`): the
//! namespaces' holders and those containers' names, not every process
//! and every container's state, so `GROUP BY container` costs little
//! more than `GROUP BY netns` (BENCHMARKS.md, "Containers at 500").
//!
//! A stream (event tables, captures) runs while containers start and
//! stop: its lookup reads a new snapshot when a pid or namespace is not
//! in the one it holds, at most once per [`REFRESH`], so a container
//! that started after the stream did is named from then on. A snapshot
//! never names a row by another container: a pid or namespace it does
//! not know stays NULL.

use std::time::{Duration, Instant};

use crate::columns::{Column, RowBuilder};
use sockql_collect::containers::{Container, Containers, Roots};
use sockql_collect::netns::{self, Netns};

/// How often a stream's lookup may read the containers again on a miss.
pub const REFRESH: Duration = Duration::from_secs(1);

/// A table's two container columns.
#[derive(Debug, Clone, Copy)]
pub struct Cols<C: Column> {
    pub name: C,
    pub id: C,
}

/// The containers one scan names its rows by; empty (and never read)
/// when the scan does not produce the columns.
pub struct ContainerLookup {
    snap: Option<Containers>,
    /// The host's network namespace (pid 1's): a container sharing it
    /// (`--network host`) does not own the host's sockets.
    host_netns: Option<u64>,
    /// For a stream: when the snapshot was read, so a miss may re-read.
    read_at: Option<Instant>,
    /// Container ids a process's cgroup named that the snapshot did not
    /// know, each of which made one re-read at once (a container started
    /// a moment ago is named from its first event); at most
    /// [`MAX_NEW_IDS`] kept, then misses wait for [`REFRESH`].
    new_ids: std::collections::HashSet<String>,
}

/// New container ids remembered by one stream's lookup.
const MAX_NEW_IDS: usize = 4096;

impl ContainerLookup {
    /// A snapshot for a scan that produces `cols` (none otherwise).
    pub fn for_scan<C: Column>(rows: &RowBuilder, cols: Cols<C>) -> Self {
        Self::new(rows.wants(cols.name) || rows.wants(cols.id), false)
    }

    /// As [`for_scan`](Self::for_scan), for a stream: re-read on a miss.
    pub fn for_stream<C: Column>(rows: &RowBuilder, cols: Cols<C>) -> Self {
        Self::new(rows.wants(cols.name) || rows.wants(cols.id), true)
    }

    /// For a scan of `targets` that looks rows up by namespace only
    /// (`of(None, Some(ns))` with `ns` one of them): their containers.
    pub fn for_namespaces<C: Column>(rows: &RowBuilder, cols: Cols<C>, targets: &[Netns]) -> Self {
        if !(rows.wants(cols.name) || rows.wants(cols.id)) {
            return ContainerLookup { snap: None, host_netns: None, read_at: None, new_ids: Default::default() };
        }
        ContainerLookup {
            snap: Some(Containers::read_for(&Roots::host(), targets)),
            host_netns: host_netns(),
            read_at: None,
            new_ids: Default::default(),
        }
    }

    pub fn new(wanted: bool, stream: bool) -> Self {
        if !wanted {
            return ContainerLookup { snap: None, host_netns: None, read_at: None, new_ids: Default::default() };
        }
        ContainerLookup {
            snap: Some(Containers::read()),
            host_netns: host_netns(),
            read_at: stream.then(Instant::now),
            new_ids: Default::default(),
        }
    }

    /// True when the scan produces the columns (and a snapshot was read).
    pub fn wanted(&self) -> bool {
        self.snap.is_some()
    }

    /// The container of a row: by its process when one is known and in a
    /// container, else by its network namespace.
    pub fn of(&mut self, pid: Option<i32>, ns: Option<u64>) -> Option<&Container> {
        let hit = |s: &Containers, host: Option<u64>| {
            pid.and_then(|p| s.by_pid(p)).is_some()
                || ns.filter(|&n| Some(n) != host).and_then(|n| s.by_netns(n)).is_some()
        };
        let snap = self.snap.as_ref()?;
        if !hit(snap, self.host_netns) {
            // A pid or namespace this snapshot does not know: a stream
            // reads again (rate-limited), a scan answers NULL.
            let stale = self.read_at.is_some_and(|t| t.elapsed() >= REFRESH);
            let unknown = pid.is_some_and(|p| p > 0) || ns.is_some_and(|n| Some(n) != self.host_netns);
            if !(stale && unknown) {
                return None;
            }
            self.snap = Some(Containers::read());
            self.read_at = Some(Instant::now());
        }
        let snap = self.snap.as_ref()?;
        pid.and_then(|p| snap.by_pid(p))
            .or_else(|| ns.filter(|&n| Some(n) != self.host_netns).and_then(|n| snap.by_netns(n)))
    }

    /// Write the row's container (by pid, else netns) into `cols`.
    pub fn fill<C: Column>(&mut self, r: &mut RowBuilder, cols: Cols<C>, pid: Option<i32>, ns: Option<u64>) {
        if self.snap.is_none() {
            return;
        }
        let c = self.of(pid, ns);
        r.str(cols.name, c.and_then(|c| c.name.as_deref()));
        r.str(cols.id, c.map(|c| c.id.as_str()));
    }
}

/// Event rows (process_events, socket_events, the tracepoint tables,
/// packets) come while containers start and stop and pids and namespace
/// inodes are reused: a snapshot read at most once per [`REFRESH`] does
/// not know a process forked a moment ago, and may still hold a stopped
/// container's pids. So an event's process is named by its own cgroup as
/// the event is read (the container id the cgroup path carries, looked
/// up by that exact id); only a process already gone is named as the
/// snapshot knew it. A namespace is named only while the container's
/// init is still in it (an inode freed by one container and reused by
/// the next is never the first one's).
impl ContainerLookup {
    /// The container (name, id) of process `pid` now; None on the host.
    pub fn of_process(&mut self, pid: i32) -> Option<(Option<String>, String)> {
        let snap = self.snap.as_ref()?;
        if pid <= 0 {
            return None;
        }
        let Some(cgroup) = netns::cgroup_of(pid) else {
            // Gone: as the snapshot knew it.
            return snap.by_pid(pid).map(|c| (c.name.clone(), c.id.clone()));
        };
        let (id, _) = netns::container_of(&cgroup)?;
        let exact = |s: &Containers| s.all().iter().find(|c| c.id == id).map(|c| (c.name.clone(), c.id.clone()));
        if let Some(c) = exact(snap) {
            return Some(c);
        }
        // A container started since the snapshot: read again, at once for
        // an id not seen before, else rate-limited as a miss is; its id
        // alone until then.
        let first = self.new_ids.len() < MAX_NEW_IDS && self.new_ids.insert(id.clone());
        if self.read_at.is_some() && (first || self.read_at.is_some_and(|t| t.elapsed() >= REFRESH)) {
            self.snap = Some(Containers::read());
            self.read_at = Some(Instant::now());
        }
        self.snap.as_ref().and_then(exact).or(Some((None, id)))
    }

    /// The container whose network namespace `ns` is, if its init is
    /// still in it.
    pub fn of_live_netns(&mut self, ns: u64) -> Option<(Option<String>, String)> {
        let c = self.of(None, Some(ns))?;
        let alive = c.pid.and_then(netns::of_pid) == Some(ns);
        alive.then(|| (c.name.clone(), c.id.clone()))
    }

    /// Write an event row's container: by its process, else by its
    /// network namespace.
    pub fn fill_event<C: Column>(&mut self, r: &mut RowBuilder, cols: Cols<C>, pid: Option<i32>, ns: Option<u64>) {
        if !self.wanted() {
            return;
        }
        let c = match pid.and_then(|p| self.of_process(p)) {
            Some(c) => Some(c),
            None => ns.and_then(|n| self.of_live_netns(n)),
        };
        r.str(cols.name, c.as_ref().and_then(|c| c.0.as_deref()));
        r.str(cols.id, c.as_ref().map(|c| c.1.as_str()));
    }
}

/// Sockets named by their holder: a scan that does not look owners up
/// must still name the sockets of a container that has no namespace of
/// its own (`--network host`, a pod's member), and pays for the owner
/// walk only in the namespaces where one is.
impl ContainerLookup {
    /// True when a container's processes live in namespace `ns` without
    /// the namespace being named for that container: its sockets are
    /// then named by their holder only.
    pub fn shares_namespace(&self, ns: u64) -> bool {
        let Some(snap) = &self.snap else { return false };
        let owner = snap.by_netns(ns).filter(|_| Some(ns) != self.host_netns).map(|c| c.id.as_str());
        snap.all().iter().any(|c| c.netns == Some(ns) && Some(c.id.as_str()) != owner)
    }
}

/// The host's network namespace: pid 1's, or where pid 1's cannot be read
/// (a sandbox whose init is not ours to inspect) sockql's own, as the
/// scope's "current namespace" is: never None while a container runs
/// with --network host, whose namespace would else name every host socket.
fn host_netns() -> Option<u64> {
    netns::of_pid(1).or_else(|| Some(netns::current()))
}
