//! Containers on this host by name: which container a process, a network
//! namespace or a cgroup belongs to.
//!
//! This file is the contract the tables build on. `Containers::read()`
//! takes one snapshot: every process's cgroup names a container id (see
//! `netns::container_of`), and the runtime's own state on disk (podman,
//! docker, containerd, CRI-O: their config files and OCI bundles) gives
//! that id its name, image, state and Kubernetes pod. A snapshot is taken
//! once per query, so every row of one answer agrees with every other.
//!
//! The readers of each runtime's files live in their own modules here
//! (`podman.rs`, `docker.rs`, `containerd.rs`, `crio.rs`; the OCI
//! annotations in `oci.rs`), all through `files.rs`, which bounds and
//! confines every read. A pid a runtime's file claims is believed only if
//! that process's cgroup names the container (`procview.rs`): a stale
//! state file, or a pid reused after the container stopped, gives a NULL
//! pid, never another container's.
//!
//! What is read, and what is not. podman as root: containers/storage's
//! `containers.json` (names, image, libpod's metadata), runc's
//! `/run/runc/<id>/state.json` (the init pid) and the run root's
//! `userdata/pidfile` (it started once); libpod's own state database
//! (`/var/lib/containers/storage/libpod/bolt_state.db`, bolt) is not, so
//! a podman state is running, exited or created only. Rootless podman
//! (a user's `~/.local/share/containers`, `/run/user/UID/containers`) is
//! not read: those containers have their cgroup's id and no name. docker:
//! `config.v2.json`; containerd: task bundles; CRI-O: bundles in the
//! shared run root. No runtime's socket or API is ever used.
//!
//! Cost. [`Containers::read`] walks /proc once and reads every
//! container's files (its state too): what the `containers` table and
//! lookups by process need. A scan that names rows by namespace only
//! reads [`Containers::read_for`] its namespaces: one view of each
//! namespace's holder and the names of those containers, no per-container
//! state file (BENCHMARKS.md, "Containers at 500"). `--container` finds
//! its container from the runtimes' files alone ([`home`]).

pub mod containerd;
pub mod crio;
pub mod docker;
pub mod files;
pub mod home;
pub mod oci;
pub mod podman;
pub mod procview;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::netns::Netns;

/// One container, as its runtime and /proc describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// The full id (64 hex digits for every runtime here; containerd's
    /// own, e.g. `ctr run`'s, may be any identifier).
    pub id: String,
    /// The runtime's name for it (`podman ps`'s NAMES, docker's name
    /// without the leading `/`, crictl's NAME: the Kubernetes container's
    /// name, or the pod's for a sandbox), when its metadata was read.
    pub name: Option<String>,
    pub image: Option<String>,
    /// docker, containerd, cri-o, podman (or what the cgroup path
    /// suggests, `kubernetes` or `unknown`, when no runtime file named it).
    pub runtime: &'static str,
    /// running, exited, created, ... as the runtime says.
    pub state: Option<String>,
    /// The pid of the container's init in the host's pid namespace.
    pub pid: Option<i32>,
    /// Network namespace inode of its init.
    pub netns: Option<u64>,
    /// cgroup path of its init.
    pub cgroup: Option<String>,
    /// Kubernetes attribution, from CRI annotations or labels.
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    pub k8s_container_name: Option<String>,
    /// Where the metadata came from: a file path, or `cgroup` when only
    /// the cgroup path was known.
    pub source: String,
}

/// Where each runtime keeps its files. [`Roots::host`] is the only one
/// sockql itself uses; another is for tests that lay out a runtime's
/// files under a directory of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// containers/storage's graph root (podman): /var/lib/containers/storage.
    pub storage: PathBuf,
    /// containers/storage's run root (podman, CRI-O): /run/containers/storage.
    pub storage_run: PathBuf,
    /// runc's state root as podman and CRI-O run it: /run/runc.
    pub runc: PathBuf,
    /// docker's data root: /var/lib/docker.
    pub docker: PathBuf,
    /// containerd's v2 task bundles: /run/containerd/io.containerd.runtime.v2.task.
    pub containerd_tasks: PathBuf,
}

impl Roots {
    /// The runtimes' default places on this host.
    pub fn host() -> Roots {
        Roots::under("/")
    }

    /// The default places under `root` instead of `/`.
    pub fn under(root: impl Into<PathBuf>) -> Roots {
        let root = root.into();
        Roots {
            storage: root.join("var/lib/containers/storage"),
            storage_run: root.join("run/containers/storage"),
            runc: root.join("run/runc"),
            docker: root.join("var/lib/docker"),
            containerd_tasks: root.join("run/containerd/io.containerd.runtime.v2.task"),
        }
    }
}

/// Which containers a read of the runtimes' files needs, and how much of
/// each.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// Only these ids; `None`: every one.
    pub ids: Option<&'a HashSet<String>>,
    /// Also each one's state and init pid: runc's state file (~35 KiB of
    /// JSON for a podman container) and the pid files, one more read per
    /// container that naming a row does not need.
    pub state: bool,
}

impl Want<'_> {
    /// Every container, with its state.
    pub const ALL: Want<'static> = Want { ids: None, state: true };

    /// Whether container `id` is asked for.
    pub fn id(&self, id: &str) -> bool {
        self.ids.is_none_or(|ids| ids.contains(id))
    }
}

/// What every runtime's files say of the containers `want` asks for.
fn runtimes(roots: &Roots, want: Want<'_>) -> Vec<Container> {
    let mut found = podman::read(roots, want);
    let podmans: HashSet<&str> = found.iter().map(|c| c.id.as_str()).collect();
    let crio = crio::read(roots, want, &podmans);
    found.extend(crio);
    found.extend(docker::read(roots, want));
    found.extend(containerd::read(roots, want));
    found
}

/// One snapshot of every container and the indexes the tables look up.
#[derive(Debug, Default)]
pub struct Containers {
    list: Vec<Container>,
    by_id: HashMap<String, usize>,
    by_pid: HashMap<i32, usize>,
    by_netns: HashMap<u64, usize>,
}

impl Containers {
    /// Read every container now. Never fails: what cannot be read is
    /// left out (a container whose metadata is unreadable keeps its id).
    pub fn read() -> Self {
        Self::read_with(&Roots::host())
    }

    /// Read every container, the runtimes' files taken from `roots`.
    pub fn read_with(roots: &Roots) -> Self {
        let mut out = Containers::default();
        // Each process's cgroup, read with its namespace through one
        // descriptor of its /proc directory (procview.rs).
        let mut first_view = HashMap::new();
        // Every process in a container as this walk saw it: the init pid
        // a runtime's file claims is checked against that view, not read
        // again (one read of /proc per process, not two per container).
        let mut seen: HashMap<i32, procview::ProcView> = HashMap::new();
        for pid in super::owners::pids() {
            let Some(view) = procview::view(pid) else { continue };
            let Some((id, runtime)) = super::netns::container_of(&view.cgroup) else { continue };
            let i =
                out.entry(&id, || Container { id: id.clone(), runtime, source: "cgroup".into(), ..Default::default() });
            out.by_pid.insert(pid, i);
            // pids() is ascending: the first pid seen is the lowest one
            // inside, the container's init unless its runtime says which.
            first_view.entry(i).or_insert_with(|| (pid, view.clone()));
            seen.insert(pid, view);
        }
        for c in runtimes(roots, Want::ALL) {
            let claimed = c.pid;
            let i = out.entry(&c.id, || Container { id: c.id.clone(), ..Default::default() });
            let slot = &mut out.list[i];
            *slot = Container { pid: None, netns: None, cgroup: None, ..c };
            // The runtime's init pid, if that process is in its cgroup (as
            // the walk saw it; one that started since is read now).
            let init = claimed.and_then(|pid| {
                let view = match seen.get(&pid) {
                    Some(view) => view.clone(),
                    None => procview::view(pid)?,
                };
                procview::names_container(&view.cgroup, &slot.id).then_some((pid, view))
            });
            match init {
                Some((pid, view)) => {
                    out.by_pid.insert(pid, i);
                    first_view.insert(i, (pid, view));
                }
                None if claimed.is_some() && !first_view.contains_key(&i) => {
                    slot.state = Some(stopped_word(slot.runtime).into());
                }
                None => {}
            }
        }
        // Pids and namespaces; a namespace shared (a pod's) goes to the
        // container with the lowest init pid, which started first: the
        // pod's sandbox.
        let mut inits: Vec<(usize, i32, procview::ProcView)> =
            first_view.into_iter().map(|(i, (pid, view))| (i, pid, view)).collect();
        inits.sort_by_key(|(_, pid, _)| *pid);
        for (i, pid, view) in inits {
            let Some(c) = out.list.get_mut(i) else { continue };
            c.pid = Some(pid);
            c.netns = view.netns;
            c.cgroup = Some(view.cgroup);
            if let Some(ns) = view.netns {
                out.by_netns.entry(ns).or_insert(i);
            }
        }
        out
    }

    /// The containers of the network namespaces `targets` only, for a
    /// scan that names its rows by namespace (sockets, unix_sockets),
    /// without walking /proc again nor reading any container's state: a
    /// namespace is its holder's (its lowest pid, as `netns::list` found
    /// it) when that process, viewed through one descriptor, is still in
    /// that namespace and its cgroup names a container; the names come
    /// from the runtimes' files of those containers only. So the rules of
    /// [`read_with`](Self::read_with) hold: a namespace shared by a pod
    /// is the container's that started first, a holder that ended (or
    /// whose pid was reused) names nothing, never another container.
    /// Only `by_netns` (and `by_pid` of the holders) is filled, and no
    /// state or init pid but the holder is read.
    ///
    /// Cases the holder does not decide: a namespace whose lowest pid is
    /// a host process but that a container joined (`netns::list` saw a
    /// container's cgroup further on), and a namespace not listed from
    /// /proc at all (the current one, without --all-netns). Then every
    /// container is read as `read_with` does, so the answer is the same.
    pub fn read_for(roots: &Roots, targets: &[Netns]) -> Self {
        let host = super::netns::of_pid(1);
        let mut holders = Vec::new();
        for ns in targets {
            // Not listed from /proc (the current namespace, scanned without
            // --all-netns): whether a container joined it is not known.
            if ns.processes == 0 && ns.pid.is_some() && ns.container_id.is_none() {
                return Self::read_with(roots);
            }
            // The host's namespace is no container's (ContainerLookup),
            // unless one joined it (--network host): then every container
            // is read, so that one's sockets are named by their holders.
            let is_host = Some(ns.inode) == host;
            if is_host && ns.container_id.is_some() {
                return Self::read_with(roots);
            }
            let Some(pid) = ns.pid.filter(|_| !is_host) else { continue };
            let held = procview::view(pid)
                .filter(|v| v.netns == Some(ns.inode))
                .and_then(|v| super::netns::container_of(&v.cgroup).map(|(id, rt)| (id, rt, v)));
            match held {
                Some((id, runtime, view)) => holders.push((ns.inode, pid, id, runtime, view)),
                None if ns.container_id.is_some() => return Self::read_with(roots),
                None => {}
            }
        }
        let ids: HashSet<String> = holders.iter().map(|h| h.2.clone()).collect();
        let mut out = Containers::default();
        if ids.is_empty() {
            return out;
        }
        for c in runtimes(roots, Want { ids: Some(&ids), state: false }) {
            let i = out.entry(&c.id, || Container { id: c.id.clone(), ..Default::default() });
            if let Some(slot) = out.list.get_mut(i) {
                *slot = Container { pid: None, netns: None, cgroup: None, ..c };
            }
        }
        for (inode, pid, id, runtime, view) in holders {
            let i =
                out.entry(&id, || Container { id: id.clone(), runtime, source: "cgroup".into(), ..Default::default() });
            out.by_pid.insert(pid, i);
            out.by_netns.entry(inode).or_insert(i);
            let Some(c) = out.list.get_mut(i) else { continue };
            // The lowest pid of its that holds a namespace here.
            if c.pid.is_none_or(|p| pid < p) {
                c.pid = Some(pid);
                c.netns = view.netns;
                c.cgroup = Some(view.cgroup);
            }
        }
        out
    }

    /// The index of container `id`, made by `new` if it is not there yet.
    fn entry(&mut self, id: &str, new: impl FnOnce() -> Container) -> usize {
        if let Some(&i) = self.by_id.get(id) {
            return i;
        }
        self.list.push(new());
        self.by_id.insert(id.to_string(), self.list.len() - 1);
        self.list.len() - 1
    }

    pub fn all(&self) -> &[Container] {
        &self.list
    }

    /// The container a process is in, or None for a host process.
    pub fn by_pid(&self, pid: i32) -> Option<&Container> {
        self.by_pid.get(&pid).and_then(|&i| self.list.get(i))
    }

    /// The container whose network namespace this is.
    pub fn by_netns(&self, inode: u64) -> Option<&Container> {
        self.by_netns.get(&inode).and_then(|&i| self.list.get(i))
    }

    /// A container by its name, its full id or a unique id prefix of at
    /// least 12 characters (as `podman ps` shows ids).
    pub fn find(&self, name_or_id: &str) -> Option<&Container> {
        if let Some(c) = self.list.iter().find(|c| c.name.as_deref() == Some(name_or_id) || c.id == name_or_id) {
            return Some(c);
        }
        if name_or_id.len() < 12 {
            return None;
        }
        let mut hits = self.list.iter().filter(|c| c.id.starts_with(name_or_id));
        match (hits.next(), hits.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    }
}

/// The runtime's word for a container whose state file names a process
/// that is gone (or not in its cgroup).
fn stopped_word(runtime: &str) -> &'static str {
    match runtime {
        "containerd" => "stopped",
        _ => "exited",
    }
}
