//! cgroup v2 ids named by path, as `ss --cgroup` prints them. sock_diag
//! gives each socket the id of the cgroup its creator was in; the id is
//! the inode number of that cgroup's directory in the cgroup2 filesystem,
//! so one walk of that tree names every id.

use std::collections::HashMap;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

/// More cgroups than any host has: the walk stops there rather than run
/// without bound over a tree someone keeps growing.
const MAX_CGROUPS: usize = 200_000;
/// cgroup v2 allows deeper trees, but ids deeper than this are left unnamed.
const MAX_DEPTH: usize = 64;

/// Where cgroup2 is mounted, from /proc/self/mountinfo's text: the first
/// mount of type cgroup2 (field 5 is its mount point, octal-escaped).
pub fn mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, rest) = line.split_once(" - ")?;
        if rest.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        fields.split_whitespace().nth(4).map(|p| PathBuf::from(unescape_octal(p)))
    })
}

/// mountinfo writes space, tab, newline and backslash as \040 and so on
/// (cgroup mounts here, tracefs in `trace/tracefs.rs`).
pub(crate) fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u32, |a, c| a * 8 + (c - b'0') as u32) as u8);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// cgroup id → path below the cgroup2 mount ("/" for its root).
#[derive(Debug, Default)]
pub struct CgroupPaths(HashMap<u64, String>);

impl CgroupPaths {
    /// Walk the cgroup2 tree this process sees. No cgroup2 mount (or no
    /// permission) leaves every id unnamed.
    pub fn read() -> Self {
        let Some(text) = super::proc_text("/proc/self/mountinfo", 16 << 20) else { return Self::default() };
        mount_point(&text).map(|root| Self::walk(&root)).unwrap_or_default()
    }

    /// Name every directory under `root` by its inode, without following
    /// links, breadth first, within MAX_CGROUPS and MAX_DEPTH.
    pub fn walk(root: &Path) -> Self {
        let mut by_id = HashMap::new();
        let Ok(meta) = std::fs::symlink_metadata(root) else { return Self::default() };
        by_id.insert(meta.ino(), "/".to_string());
        let mut level = vec![(root.to_path_buf(), String::new())];
        for _ in 0..MAX_DEPTH {
            let mut next = Vec::new();
            for (dir, rel) in level {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for e in entries.flatten() {
                    if !e.file_type().is_ok_and(|t| t.is_dir()) {
                        continue;
                    }
                    if by_id.len() >= MAX_CGROUPS {
                        return CgroupPaths(by_id);
                    }
                    let path = format!("{rel}/{}", e.file_name().to_string_lossy());
                    by_id.insert(e.ino(), path.clone());
                    next.push((e.path(), path));
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        CgroupPaths(by_id)
    }

    pub fn path(&self, id: u64) -> Option<&str> {
        self.0.get(&id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_mountinfo() {
        // Lines as a Debian host writes them; the second has an escaped space.
        let text = "24 1 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n\
                    35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(mount_point(text), Some(PathBuf::from("/sys/fs/cgroup")));
        let spaced = "40 1 0:31 / /mnt/my\\040cg rw shared:1 - cgroup2 none rw\n";
        assert_eq!(mount_point(spaced), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(mount_point("24 1 0:22 / /sys rw - sysfs sysfs rw\n"), None);
    }

    #[test]
    fn walks_a_tree_by_inode() {
        let root = std::env::temp_dir().join(format!("sockql-cg-{}", std::process::id()));
        std::fs::create_dir_all(root.join("system.slice/ssh.service")).unwrap();
        std::fs::write(root.join("cgroup.procs"), "").unwrap();
        let paths = CgroupPaths::walk(&root);
        let ino = |p: &str| std::fs::metadata(root.join(p)).unwrap().ino();
        assert_eq!(paths.path(ino("")), Some("/"));
        assert_eq!(paths.path(ino("system.slice/ssh.service")), Some("/system.slice/ssh.service"));
        assert_eq!(paths.path(ino("cgroup.procs")), None, "files are not cgroups");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
