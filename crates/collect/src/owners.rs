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
    let mut pids: Vec<i32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids
}

/// Why a process's fd table was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unread {
    /// Another user's process, and we are not root.
    Denied,
    /// It exited, or is a kernel thread with no table.
    Gone,
}

/// Call `each(inode, fd)` for every socket descriptor of `pid`. Links are
/// read relative to the open fd directory (readlinkat), so the kernel looks
/// up one name per descriptor instead of walking /proc/<pid>/fd/<n> from
/// the root: at a million descriptors that is most of the walk's cost.
fn socket_fds(pid: i32, mut each: impl FnMut(u64, i32)) -> Result<(), Unread> {
    use std::io::ErrorKind;
    use std::os::unix::ffi::OsStrExt;
    let path = format!("/proc/{pid}/fd");
    let opened = fs::File::open(&path).and_then(|handle| Ok((handle, fs::read_dir(&path)?)));
    let (handle, entries) = match opened {
        Ok(o) => o,
        Err(e) if e.kind() == ErrorKind::PermissionDenied => return Err(Unread::Denied),
        Err(_) => return Err(Unread::Gone),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(fd) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // A descriptor closed since the directory was read is skipped. A
        // link we may not read (a listing allowed by CAP_DAC_READ_SEARCH,
        // the links not: no CAP_SYS_PTRACE) is another user's process we
        // cannot read, and is counted so, never silently ownerless.
        let target = match nix::fcntl::readlinkat(&handle, name.as_os_str()) {
            Ok(t) => t,
            // Root is refused only by something outside sockql's reach (a
            // process of another user namespace or a security module, such
            // as a container sandbox's init): that was never a missing
            // capability, and root's answers stay as they were.
            Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM) if !nix::unistd::geteuid().is_root() => {
                return Err(Unread::Denied)
            }
            Err(_) => continue,
        };
        if let Some(inode) = socket_inode(target.as_bytes()) {
            each(inode, fd);
        }
    }
    Ok(())
}

/// Walk the fd tables of `pids` on up to `threads` threads, each taking the
/// next pid as it finishes one (a few processes may hold most sockets).
/// `visit(pid, state)` reads one process into its thread's `state`; the
/// states come back with how many processes were denied.
fn walk_parallel<S: Send + Default>(
    pids: &[i32],
    threads: usize,
    visit: impl Fn(i32, &mut S) -> Result<(), Unread> + Sync,
) -> (Vec<S>, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let denied = AtomicUsize::new(0);
    let work = || {
        let mut state = S::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&pid) = pids.get(i) else { break };
            if visit(pid, &mut state) == Err(Unread::Denied) {
                denied.fetch_add(1, Ordering::Relaxed);
            }
        }
        state
    };
    let states = if threads <= 1 {
        vec![work()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
            let mut states = vec![work()];
            // A walker cannot panic short of a bug; its share is then lost,
            // not the query.
            states.extend(handles.into_iter().filter_map(|h| h.join().ok()));
            states
        })
    };
    (states, denied.into_inner())
}

/// Threads for a walk of every fd table: one per core, at most four (the
/// walk is system calls into /proc; past that they contend on its locks).
fn walk_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(4)
}

/// Walk every process's fd table and keep its socket descriptors.
pub fn scan() -> OwnerScan {
    scan_pids(&pids())
}

/// Walk the fd tables of `pids` only (those that still exist), in parallel;
/// descriptors come back ordered by pid, then fd, as a walk in order would
/// give them.
pub fn scan_pids(pids: &[i32]) -> OwnerScan {
    let (states, denied) = walk_parallel(pids, walk_threads(), |pid, fds: &mut Vec<SocketFd>| {
        socket_fds(pid, |inode, fd| fds.push(SocketFd { inode, pid, fd }))
    });
    let mut fds = states.concat();
    fds.sort_unstable_by_key(|f| (f.pid, f.fd));
    OwnerScan { fds, denied }
}

/// The lowest pid holding each socket inode, compactly: socket inodes are
/// 32-bit (sockfs numbers them with get_next_ino, an unsigned int), so a
/// sorted vector of (inode, pid) pairs takes 8 bytes a socket, a third of a
/// hash map's; a larger inode (no kernel makes one) is kept aside.
#[derive(Debug, Default)]
pub struct OwnerMap {
    sorted: Vec<(u32, i32)>,
    wide: HashMap<u64, i32>,
}

impl OwnerMap {
    /// From (inode, pid) pairs in any order: the lowest pid of each inode.
    fn from_pairs(mut pairs: Vec<(u32, i32)>, wide: impl IntoIterator<Item = (u64, i32)>) -> Self {
        pairs.sort_unstable();
        pairs.dedup_by_key(|p| p.0); // keeps the first: the lowest pid
        let mut map = OwnerMap { sorted: pairs, wide: HashMap::new() };
        for (inode, pid) in wide {
            map.wide.entry(inode).and_modify(|p| *p = (*p).min(pid)).or_insert(pid);
        }
        map
    }

    pub fn get(&self, inode: u64) -> Option<i32> {
        match u32::try_from(inode) {
            Ok(i) => self.sorted.binary_search_by_key(&i, |p| p.0).ok().map(|at| self.sorted[at].1),
            Err(_) => self.wide.get(&inode).copied(),
        }
    }

    pub fn len(&self) -> usize {
        self.sorted.len() + self.wide.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-thread pairs of a walk of every fd table.
#[derive(Default)]
struct Pairs {
    narrow: Vec<(u32, i32)>,
    wide: Vec<(u64, i32)>,
}

impl Pairs {
    fn push(&mut self, inode: u64, pid: i32) {
        match u32::try_from(inode) {
            Ok(i) => self.narrow.push((i, pid)),
            Err(_) => self.wide.push((inode, pid)),
        }
    }
}

/// The lowest pid holding each of the `wanted` socket inodes, and how many
/// processes could not be looked into. Walks pids in ascending order, so
/// the first owner found is the lowest, and stops as soon as every wanted
/// inode has one: a query about a few sockets reads few fd tables.
pub fn lowest_owners(wanted: &HashSet<u64>) -> (OwnerMap, usize) {
    let mut found = Pairs::default();
    let mut seen: HashSet<u64> = HashSet::with_capacity(wanted.len());
    let mut denied = 0;
    for pid in pids() {
        if seen.len() == wanted.len() {
            break;
        }
        let read = socket_fds(pid, |inode, _| {
            if wanted.contains(&inode) && seen.insert(inode) {
                found.push(inode, pid);
            }
        });
        if read == Err(Unread::Denied) {
            denied += 1;
        }
    }
    (OwnerMap::from_pairs(found.narrow, found.wide), denied)
}

/// The lowest pid holding every socket of every process: one walk of all
/// fd tables, on every core, for a scan too large to hold until its inodes
/// are known.
pub fn all_lowest_owners() -> (OwnerMap, usize) {
    let (states, denied) = walk_parallel(&pids(), walk_threads(), |pid, pairs: &mut Pairs| {
        socket_fds(pid, |inode, _| pairs.push(inode, pid))
    });
    let mut narrow = Vec::with_capacity(states.iter().map(|s| s.narrow.len()).sum());
    let mut wide = Vec::new();
    for s in states {
        narrow.extend(s.narrow);
        wide.extend(s.wide);
    }
    (OwnerMap::from_pairs(narrow, wide), denied)
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
    fn the_owner_map_keeps_the_lowest_pid_of_each_inode() {
        let map =
            OwnerMap::from_pairs(vec![(7, 300), (5, 20), (7, 12), (9, 1), (7, 40)], vec![(1 << 40, 8), (1 << 40, 3)]);
        assert_eq!(map.get(7), Some(12));
        assert_eq!(map.get(5), Some(20));
        assert_eq!(map.get(9), Some(1));
        assert_eq!(map.get(6), None);
        assert_eq!(map.get(1 << 40), Some(3));
        assert_eq!(map.get((1 << 40) + 7), None);
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn a_parallel_walk_visits_every_pid_once() {
        let pids: Vec<i32> = (1..=1000).collect();
        for threads in [1, 2, 4] {
            let (states, denied) = walk_parallel(&pids, threads, |pid, seen: &mut Vec<i32>| {
                seen.push(pid);
                if pid % 100 == 0 {
                    Err(Unread::Denied)
                } else {
                    Ok(())
                }
            });
            let mut all = states.concat();
            all.sort_unstable();
            assert_eq!((all, denied), (pids.clone(), 10), "{threads} threads");
        }
    }

    #[test]
    fn finds_this_process_as_the_owner_of_its_socket() {
        use std::os::unix::fs::MetadataExt;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&l))).unwrap().ino();
        let (found, _) = lowest_owners(&HashSet::from([inode]));
        assert_eq!(found.get(inode), Some(std::process::id() as i32));
        assert!(lowest_owners(&HashSet::new()).0.is_empty());
    }
}
