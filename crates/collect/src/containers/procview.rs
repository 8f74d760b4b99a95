//! One process as /proc shows it, read through one descriptor of its
//! /proc/<pid> directory: the cgroup that names its container and the
//! network namespace are then of the same process, even if the pid ends
//! and is reused meanwhile (the reads of an ended process fail instead of
//! reading its successor's). That is what keeps a container that stops
//! during a scan from lending its name to another's process.

use std::io::Read;
use std::os::fd::AsFd;

use nix::fcntl::AtFlags;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode};

/// /proc/<pid>/cgroup: one line per hierarchy, a few hundred bytes.
const MAX_CGROUP: u64 = 64 << 10;

/// What one process's /proc directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcView {
    /// The cgroup v2 path (or the first v1 hierarchy's).
    pub cgroup: String,
    /// Network namespace inode.
    pub netns: Option<u64>,
}

/// The process `pid`, if it is there.
pub fn view(pid: i32) -> Option<ProcView> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW;
    let dir = openat(nix::fcntl::AT_FDCWD, format!("/proc/{pid}").as_str(), flags, Mode::empty()).ok()?;
    let file = openat(dir.as_fd(), "cgroup", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let mut bytes = Vec::new();
    std::fs::File::from(file).take(MAX_CGROUP).read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let cgroup = cgroup_line(&text)?;
    // ns/net is a link to the namespace: stat follows it to its inode.
    let netns = fstatat(dir.as_fd(), "ns/net", AtFlags::empty()).ok().map(|st| st.st_ino);
    Some(ProcView { cgroup, netns })
}

/// The v2 line's path, else the first line's (as `netns::cgroup_of`).
fn cgroup_line(text: &str) -> Option<String> {
    let mut lines = text.lines();
    let first = lines.clone().next()?;
    let line = lines.find(|l| l.starts_with("0::")).unwrap_or(first);
    Some(line.splitn(3, ':').nth(2)?.to_string())
}

/// Whether a cgroup path is container `id`'s: the id is one of its
/// components (or a `-`/`.`-separated part of one, as in
/// `libpod-<id>.scope`, `cri-containerd-<id>.scope`).
pub fn names_container(cgroup: &str, id: &str) -> bool {
    !id.is_empty() && cgroup.split('/').any(|c| c == id || c.split(['-', '.', ':']).any(|p| p == id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_name_their_container_only() {
        let id = "5d3d69c6811b1f0318c93ab38199afc10ad12afa85d77bd1d9134c99c340e0b7";
        assert!(names_container(&format!("/libpod_parent/libpod-{id}"), id));
        assert!(names_container(&format!("/system.slice/docker-{id}.scope"), id));
        assert!(names_container("/default/web", "web"));
        assert!(!names_container("/default/web2", "web"));
        assert!(!names_container(&format!("/libpod_parent/libpod-{id}"), &id[..63]));
        assert!(!names_container("/", ""));
    }

    #[test]
    fn our_own_process_is_viewed() {
        let v = view(std::process::id() as i32).unwrap();
        assert_eq!(v.netns, crate::netns::of_pid(std::process::id() as i32));
        assert_eq!(Some(v.cgroup), crate::netns::cgroup_of(std::process::id() as i32));
    }
}
