//! Which processes hold which sockets: a walk of /proc/<pid>/fd reading each
//! link, as `ss -p` and `lsof` do. The kernel offers no reverse index, so
//! this is the costly part of any owner query; callers run it only when a
//! query asks for owners.
//!
//! Processes come and go during the walk: a pid or fd that vanishes is
//! skipped silently. A process we may not look into (another user's, when
//! not root) is counted in [`OwnerScan::denied`] so the caller can say why
//! some owners are unknown.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;

/// One open socket descriptor: socket inode, owning pid and its fd number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SocketFd {
    pub inode: u64,
    pub pid: i32,
    pub fd: i32,
}

#[derive(Debug, Default)]
pub struct OwnerScan {
    pub fds: Vec<SocketFd>,
    /// Processes whose fd table we were not allowed to read.
    pub denied: usize,
}

impl OwnerScan {
    /// Lowest pid per socket inode, as `ss -p` lists the first owner.
    pub fn lowest_pid_by_inode(&self) -> HashMap<u64, i32> {
        let mut map: HashMap<u64, i32> = HashMap::with_capacity(self.fds.len());
        for f in &self.fds {
            map.entry(f.inode).and_modify(|p| *p = (*p).min(f.pid)).or_insert(f.pid);
        }
        map
    }
}

/// Parse the target of an fd link: `socket:[12345]` → 12345.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

/// Numeric entries of /proc: the pids alive now.
pub fn pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// Walk every process's fd table and keep its socket descriptors.
pub fn scan() -> OwnerScan {
    scan_pids(&pids())
}

/// Walk the fd tables of `pids` only (those that still exist).
pub fn scan_pids(pids: &[i32]) -> OwnerScan {
    use std::os::unix::ffi::OsStrExt;
    let mut out = OwnerScan::default();
    for &pid in pids {
        let dir = format!("/proc/{pid}/fd");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                out.denied += 1;
                continue;
            }
            Err(_) => continue, // exited, or a kernel thread's empty table
        };
        for entry in entries.flatten() {
            let Ok(target) = fs::read_link(entry.path()) else { continue };
            if let Some(inode) = socket_inode(target.as_os_str().as_bytes()) {
                let fd = entry.file_name().to_str().and_then(|s| s.parse().ok()).unwrap_or(-1);
                out.fds.push(SocketFd { inode, pid, fd });
            }
        }
    }
    out
}

/// The command name of `pid` (/proc/<pid>/comm), as `ss -p` shows it.
pub fn comm(pid: i32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_link_targets() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"socket:[12"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    #[test]
    fn lowest_pid_wins() {
        let scan = OwnerScan {
            fds: vec![
                SocketFd { inode: 7, pid: 30, fd: 3 },
                SocketFd { inode: 7, pid: 10, fd: 4 },
                SocketFd { inode: 8, pid: 20, fd: 5 },
            ],
            denied: 0,
        };
        let m = scan.lowest_pid_by_inode();
        assert_eq!(m[&7], 10);
        assert_eq!(m[&8], 20);
    }
}
