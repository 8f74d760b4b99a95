//! Network namespaces: finding them (named ones in /run/netns, and every
//! process's /proc/<pid>/ns/net, de-duplicated by inode), attributing them
//! to containers from cgroup paths, and running a reader inside one.
//!
//! Entering a namespace is `setns(CLONE_NEWNET)` on a thread made for the
//! purpose, which ends afterwards: the main thread and the async runtime's
//! threads never change namespace. Netlink sockets opened there, and
//! /proc/thread-self/net and /proc/sys/net read there, belong to it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const NAMED_DIR: &str = "/run/netns";

/// A network namespace and how to enter it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    pub inode: u64,
    /// Its name under /run/netns (`ip netns add NAME`), if it has one.
    pub name: Option<String>,
    /// The lowest pid inside it, if any process is.
    pub pid: Option<i32>,
    pub processes: usize,
    pub container_id: Option<String>,
    pub runtime: Option<&'static str>,
    /// A file that opens the namespace (/run/netns/NAME or /proc/PID/ns/net).
    pub path: PathBuf,
}

/// The inode of the namespace a file or link refers to.
pub fn inode_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The namespace of this process.
pub fn current() -> u64 {
    inode_of(Path::new("/proc/self/ns/net")).unwrap_or(0)
}

/// (container id, runtime) from a cgroup path such as
/// `/system.slice/docker-<id>.scope`, `/docker/<id>`,
/// `/kubepods/burstable/pod<uid>/<id>`, `.../cri-containerd-<id>.scope`,
/// `/machine.slice/libpod-<id>.scope`, `.../crio-<id>.scope`.
pub fn container_of(cgroup: &str) -> Option<(String, &'static str)> {
    let id = cgroup.split(['/', '-', '.', ':']).find(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let runtime = if cgroup.contains("kubepods") {
        "kubernetes"
    } else if cgroup.contains("libpod") {
        "podman"
    } else if cgroup.contains("crio") {
        "cri-o"
    } else if cgroup.contains("containerd") {
        "containerd"
    } else if cgroup.contains("docker") {
        "docker"
    } else {
        "unknown"
    };
    Some((id.to_string(), runtime))
}

/// The cgroup v2 path of a process (or its first v1 path).
pub fn cgroup_of(pid: i32) -> Option<String> {
    let text = super::proc_text(&format!("/proc/{pid}/cgroup"), 64 << 10)?;
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.iter().find(|l| l.starts_with("0::")).or_else(|| lines.first())?;
    Some(line.splitn(3, ':').nth(2)?.to_string())
}

/// The netns inode of `pid`, if it is still there and visible.
pub fn of_pid(pid: i32) -> Option<u64> {
    inode_of(Path::new(&format!("/proc/{pid}/ns/net")))
}

/// Names of the named namespaces, by inode.
pub fn names() -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(NAMED_DIR) {
        for e in dir.flatten() {
            if let (Some(ino), Some(name)) = (inode_of(&e.path()), e.file_name().to_str()) {
                out.entry(ino).or_insert_with(|| name.to_string());
            }
        }
    }
    out
}

/// Every network namespace on the host that is named or has a process.
pub fn list() -> Vec<Netns> {
    let mut by_inode: BTreeMap<u64, Netns> = BTreeMap::new();
    for (inode, name) in names() {
        let path = Path::new(NAMED_DIR).join(&name);
        by_inode.insert(
            inode,
            Netns { inode, name: Some(name), pid: None, processes: 0, container_id: None, runtime: None, path },
        );
    }
    for pid in super::owners::pids() {
        let Some(inode) = of_pid(pid) else { continue };
        let ns = by_inode.entry(inode).or_insert_with(|| Netns {
            inode,
            name: None,
            pid: None,
            processes: 0,
            container_id: None,
            runtime: None,
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
        });
        ns.processes += 1;
        if ns.pid.is_none() {
            // pids() is ascending: this is the lowest pid inside.
            ns.pid = Some(pid);
            if ns.name.is_none() {
                ns.path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            }
        }
        if ns.container_id.is_none() {
            if let Some((id, runtime)) = cgroup_of(pid).as_deref().and_then(container_of) {
                ns.container_id = Some(id);
                ns.runtime = Some(runtime);
            }
        }
    }
    by_inode.into_values().collect()
}

/// The namespace this process is in, as a [`Netns`].
pub fn current_netns() -> Netns {
    let inode = current();
    Netns {
        inode,
        name: names().remove(&inode),
        pid: Some(std::process::id() as i32),
        processes: 0,
        container_id: None,
        runtime: None,
        path: PathBuf::from("/proc/self/ns/net"),
    }
}

/// Run `f` inside `ns`: directly if it is ours, else on a new thread that
/// enters it first. Fails if the namespace cannot be entered (gone, or no
/// CAP_SYS_ADMIN).
pub fn run_in<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if ns.inode == current() {
        return Ok(f());
    }
    let file = File::open(&ns.path)?;
    if inode_of(&ns.path) != Some(ns.inode) {
        // The pid we knew it by has exited and its number was reused.
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "namespace is gone"));
    }
    // What the reader says there belongs to the caller's statement.
    let notices = crate::notice::Notices::current();
    std::thread::scope(|s| {
        s.spawn(move || {
            // On this short-lived thread only: the caller's threads never move.
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            Ok(crate::notice::Notices::within(notices.as_ref(), f))
        })
        .join()
        .map_err(|_| std::io::Error::other("reader thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_from_cgroup_paths() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(container_of(&format!("/system.slice/docker-{id}.scope")), Some((id.into(), "docker")));
        assert_eq!(container_of(&format!("/docker/{id}")), Some((id.into(), "docker")));
        assert_eq!(
            container_of(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{id}.scope"
            )),
            Some((id.into(), "kubernetes"))
        );
        assert_eq!(container_of(&format!("/machine.slice/libpod-{id}.scope/container")), Some((id.into(), "podman")));
        assert_eq!(
            container_of(&format!("/system.slice/containerd.service/default/{id}")),
            Some((id.into(), "containerd"))
        );
        assert_eq!(container_of("/user.slice/user-1000.slice/session-2.scope"), None);
    }

    #[test]
    fn this_process_is_in_a_listed_namespace() {
        let me = current();
        assert_ne!(me, 0);
        let all = list();
        let mine = all.iter().find(|n| n.inode == me).expect("own namespace listed");
        assert!(mine.processes >= 1);
        assert_eq!(run_in(mine, current).unwrap(), me);
    }
}
