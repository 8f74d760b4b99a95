//! Listing and opening a local `--history DIR` without following links.
//!
//! Other users' hosts (or a shared bucket synced to disk) can place
//! entries in the tree, and sockql reads it as root: a link inside it
//! could point at /root or /etc/shadow, or at an ancestor (a loop). So
//! below the directory the operator named, entries are read with lstat
//! and opened with `openat` and `O_NOFOLLOW` one component at a time:
//! nothing is ever followed through a link. The root itself may be a
//! link (the operator chose that path).
//!
//! Layout read: `DIR/<table>/host=<H>/date=<D>/<file>.parquet`; other
//! entries are not part of a recording and are passed over silently,
//! except links and non-regular `.parquet` entries, which are named in a
//! warning.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path as FsPath, PathBuf};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::Mode;
use object_store::path::Path;
use object_store::ObjectMeta;

use super::left_out::LeftOut;

/// What identifies one version of a file: a file rewritten, replaced or
/// swapped for a link after it was checked no longer matches (ctime changes
/// on every write and cannot be set back by the file's owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Self {
        Stamp { dev: m.dev(), ino: m.ino(), size: m.size(), ctime: (m.ctime(), m.ctime_nsec()), mtime: (m.mtime(), m.mtime_nsec()) }
    }
}

/// A file found below the root: its components, to open it again without
/// following links, and the version that was found.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub root: PathBuf,
    pub parts: Vec<OsString>,
    pub stamp: Stamp,
}

impl LocalFile {
    pub fn display(&self) -> String {
        let mut p = self.root.clone();
        p.extend(&self.parts);
        p.display().to_string()
    }

    /// Open the file as it was found: each directory with `O_NOFOLLOW |
    /// O_DIRECTORY` from the root, the file with `O_NOFOLLOW | O_NONBLOCK`
    /// (a FIFO swapped in cannot block), then its identity compared with
    /// the one checked.
    pub fn open(&self) -> std::io::Result<fs::File> {
        let mut dir: OwnedFd = fs::File::open(&self.root)?.into();
        let Some((name, dirs)) = self.parts.split_last() else {
            return Err(std::io::Error::other("empty path"));
        };
        let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY;
        for d in dirs {
            dir = openat(&dir, d.as_os_str(), nofollow | OFlag::O_DIRECTORY, Mode::empty())?;
        }
        let file: fs::File = openat(&dir, name.as_os_str(), nofollow | OFlag::O_NONBLOCK, Mode::empty())?.into();
        let meta = file.metadata()?;
        if !meta.is_file() || Stamp::of(&meta) != self.stamp {
            return Err(std::io::Error::other(format!("{} changed after --history was read; not read", self.display())));
        }
        Ok(file)
    }
}

fn is_link(path: &FsPath, left: &mut LeftOut) -> Option<fs::Metadata> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            left.add(&path.display().to_string(), "a symbolic link; links inside --history are not followed");
            None
        }
        Ok(m) => Some(m),
        Err(e) => {
            left.add(&path.display().to_string(), &format!("cannot be read: {e}"));
            None
        }
    }
}

/// The directory entries of `dir` that are real directories, with names
/// passing `keep` (a link among them is warned about and skipped).
fn subdirs(dir: &FsPath, keep: impl Fn(&OsStr) -> bool, left: &mut LeftOut) -> Vec<OsString> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<OsString> = entries
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| keep(n))
        .filter(|n| is_link(&dir.join(n), left).is_some_and(|m| m.is_dir()))
        .collect();
    out.sort();
    out
}

fn starts(prefix: &'static str) -> impl Fn(&OsStr) -> bool {
    move |n| n.as_bytes().starts_with(prefix.as_bytes()) && n.len() > prefix.len()
}

/// The table directories of the local history at `root`.
pub fn tables(root: &FsPath, left: &mut LeftOut) -> Vec<String> {
    subdirs(root, |n| !n.as_bytes().starts_with(b"."), left).into_iter().filter_map(|n| n.into_string().ok()).collect()
}

/// Every `<table>/host=*/date=*/*.parquet` under `root` that is a regular
/// file reached without a link, as the object-store path `prefix/...`.
pub fn files(root: &FsPath, prefix: &Path, table: &str, left: &mut LeftOut) -> Vec<(ObjectMeta, LocalFile)> {
    let mut out = Vec::new();
    let table_dir = root.join(table);
    for host in subdirs(&table_dir, starts("host="), left) {
        let host_dir = table_dir.join(&host);
        for date in subdirs(&host_dir, starts("date="), left) {
            let date_dir = host_dir.join(&date);
            let Ok(entries) = fs::read_dir(&date_dir) else { continue };
            let mut names: Vec<OsString> =
                entries.flatten().map(|e| e.file_name()).filter(|n| n.as_bytes().ends_with(b".parquet") && !n.as_bytes().starts_with(b".")).collect();
            names.sort();
            for name in names {
                let path = date_dir.join(&name);
                let Some(meta) = is_link(&path, left) else { continue };
                if !meta.is_file() {
                    left.add(&path.display().to_string(), "not a regular file");
                    continue;
                }
                let parts = [OsString::from(table), host.clone(), date.clone(), name];
                let Some(location) = parts.iter().try_fold(prefix.clone(), |p, part| part.to_str().map(|s| p.join(s))) else {
                    left.add(&path.display().to_string(), "its path is not UTF-8");
                    continue;
                };
                let modified = meta.modified().map(chrono::DateTime::<chrono::Utc>::from).unwrap_or_default();
                let object = ObjectMeta { location, last_modified: modified, size: meta.size(), e_tag: None, version: None };
                out.push((object, LocalFile { root: root.to_path_buf(), parts: parts.to_vec(), stamp: Stamp::of(&meta) }));
            }
        }
    }
    out
}
