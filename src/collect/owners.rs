//! Which processes hold which sockets: a walk of /proc/<pid>/fd reading each
//! link, as `ss -p` and `lsof` do. The kernel offers no reverse index, so
//! this is the costly part of any owner query; callers run it only when a
//! query asks for owners.
//!
//! Processes come and go during the walk: a pid or fd that vanishes is
//! skipped silently. A process we may not look into (another user's, when
//! not root) is counted in [`OwnerScan::denied`] so the caller can say why
//! some owners are unknown.

use std::collections::{HashMap, HashSet};
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

/// The lowest pid holding each of the `wanted` socket inodes, and how many
/// processes could not be looked into. Walks pids in ascending order, so
/// the first owner found is the lowest, and stops as soon as every wanted
/// inode has one: a query about a few sockets reads few fd tables.
pub fn lowest_owners(wanted: &HashSet<u64>) -> (HashMap<u64, i32>, usize) {
    if wanted.is_empty() {
        return (HashMap::new(), 0);
    }
    walk_lowest(Some(wanted))
}

/// The lowest pid holding every socket of every process (one walk of all
/// fd tables): for a scan too large to hold until its inodes are known.
pub fn all_lowest_owners() -> (HashMap<u64, i32>, usize) {
    walk_lowest(None)
}

fn walk_lowest(wanted: Option<&HashSet<u64>>) -> (HashMap<u64, i32>, usize) {
    use std::os::unix::ffi::OsStrExt;
    let mut found: HashMap<u64, i32> = HashMap::with_capacity(wanted.map_or(0, HashSet::len));
    let mut denied = 0;
    for pid in pids() {
        let entries = match fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                denied += 1;
                continue;
            }
            Err(_) => continue,
        };
        for entry in entries.flatten() {
            let Ok(target) = fs::read_link(entry.path()) else { continue };
            if let Some(inode) = socket_inode(target.as_os_str().as_bytes()) {
                if wanted.is_none_or(|w| w.contains(&inode)) {
                    found.entry(inode).or_insert(pid);
                }
            }
        }
        if wanted.is_some_and(|w| found.len() == w.len()) {
            break;
        }
    }
    (found, denied)
}

/// The command name of `pid` (/proc/<pid>/comm), as `ss -p` shows it.
pub fn comm(pid: i32) -> Option<String> {
    // comm is at most 15 bytes and a newline; 64 leaves room.
    let s = super::proc_text(&format!("/proc/{pid}/comm"), 64)?;
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
    fn finds_this_process_as_the_owner_of_its_socket() {
        use std::os::unix::fs::MetadataExt;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&l))).unwrap().ino();
        let (found, _) = lowest_owners(&HashSet::from([inode]));
        assert_eq!(found.get(&inode), Some(&(std::process::id() as i32)));
        assert!(lowest_owners(&HashSet::new()).0.is_empty());
    }
}
