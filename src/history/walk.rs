//! Listing and opening a local `--history DIR` without following links.
//!
//! Other users' hosts (or a shared bucket synced to disk) can place
//! entries in the tree, and sockql reads it as root: a link inside it
//! could point at /root or /etc/shadow, or at an ancestor (a loop). So
//! below the directory the operator named, every directory is opened
//! from its parent's descriptor with `openat` and `O_NOFOLLOW |
//! O_DIRECTORY`, listed through its own descriptor, and its entries are
//! judged with `fstatat` without following: nothing is ever followed
//! through a link, not even a directory swapped for one mid-walk. The root itself may be a
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

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode, SFlag};
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
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            ctime: (m.ctime(), m.ctime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
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
            return Err(std::io::Error::other(format!(
                "{} changed after --history was read; not read",
                self.display()
            )));
        }
        Ok(file)
    }
}

/// What `fstatat` without following says an entry is.
enum Kind {
    Dir,
    File(Stamp, chrono::DateTime<chrono::Utc>),
    Link,
    Other,
}

fn kind_of(st: &FileStat) -> Kind {
    let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if fmt == SFlag::S_IFDIR {
        Kind::Dir
    } else if fmt == SFlag::S_IFLNK {
        Kind::Link
    } else if fmt == SFlag::S_IFREG {
        let stamp = Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            ctime: (st.st_ctime, st.st_ctime_nsec),
            mtime: (st.st_mtime, st.st_mtime_nsec),
        };
        let modified = chrono::DateTime::from_timestamp(st.st_mtime, u32::try_from(st.st_mtime_nsec).unwrap_or(0))
            .unwrap_or_default();
        Kind::File(stamp, modified)
    } else {
        Kind::Other
    }
}

/// A directory of the tree, held open: what is listed below it and the
/// directories opened from it are this directory's, whatever is renamed
/// or swapped for a link at its path meanwhile (the path is only for
/// warnings).
struct DirFd {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_NOFOLLOW: OFlag = OFlag::O_NOFOLLOW.union(OFlag::O_DIRECTORY).union(OFlag::O_CLOEXEC).union(OFlag::O_RDONLY);

impl DirFd {
    /// The root the operator named (it may be a link: their choice).
    fn root(root: &FsPath) -> Option<DirFd> {
        let fd = nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY, Mode::empty()).ok()?;
        Some(DirFd { fd, path: root.to_path_buf() })
    }

    /// The subdirectory `name`, opened without following a link (one
    /// put in its place after it was listed is refused with ELOOP).
    fn child(&self, name: &OsStr, left: &mut LeftOut) -> Option<DirFd> {
        let path = self.path.join(name);
        match openat(&self.fd, name, DIR_NOFOLLOW, Mode::empty()) {
            Ok(fd) => Some(DirFd { fd, path }),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                left.add(&path.display().to_string(), "a symbolic link; links inside --history are not followed");
                None
            }
            Err(e) => {
                left.add(&path.display().to_string(), &format!("cannot be read: {e}"));
                None
            }
        }
    }

    /// The entries of this directory (not `.` or `..`) with names passing
    /// `keep`, each as `fstatat` without following links finds it, sorted.
    fn entries(&self, keep: impl Fn(&OsStr) -> bool, left: &mut LeftOut) -> Vec<(OsString, Kind)> {
        let Ok(mut dir) =
            Dir::openat(&self.fd, ".", OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_RDONLY, Mode::empty())
        else {
            return Vec::new();
        };
        let mut names: Vec<OsString> = dir
            .iter()
            .flatten()
            .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
            .filter(|n| n != "." && n != ".." && keep(n))
            .collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            match fstatat(&self.fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => out.push((name, kind_of(&st))),
                Err(e) => left.add(&self.path.join(&name).display().to_string(), &format!("cannot be read: {e}")),
            }
        }
        out
    }

    /// The subdirectories with names passing `keep`, opened in turn by
    /// `visit` (a link among them is warned about and skipped).
    fn each_subdir(
        &self,
        keep: impl Fn(&OsStr) -> bool,
        left: &mut LeftOut,
        mut visit: impl FnMut(OsString, DirFd, &mut LeftOut),
    ) {
        for (name, kind) in self.entries(keep, left) {
            match kind {
                Kind::Dir => {
                    if let Some(dir) = self.child(&name, left) {
                        visit(name, dir, left);
                    }
                }
                Kind::Link => left.add(
                    &self.path.join(&name).display().to_string(),
                    "a symbolic link; links inside --history are not followed",
                ),
                _ => {}
            }
        }
    }
}

fn starts(prefix: &'static str) -> impl Fn(&OsStr) -> bool {
    move |n| n.as_bytes().starts_with(prefix.as_bytes()) && n.len() > prefix.len()
}

/// The table directories of the local history at `root`.
pub fn tables(root: &FsPath, left: &mut LeftOut) -> Vec<String> {
    let Some(root_dir) = DirFd::root(root) else { return Vec::new() };
    let mut out = Vec::new();
    root_dir.each_subdir(|n| !n.as_bytes().starts_with(b"."), left, |name, _, _| out.extend(name.into_string().ok()));
    out
}

/// Every `<table>/host=*/date=*/*.parquet` under `root` that is a regular
/// file reached without a link, as the object-store path `prefix/...`.
/// Each directory is opened from its parent's descriptor with
/// `O_NOFOLLOW | O_DIRECTORY` and listed through its own descriptor, so a
/// directory swapped for a link while the tree is read is never listed.
pub fn files(root: &FsPath, prefix: &Path, table: &str, left: &mut LeftOut) -> Vec<(ObjectMeta, LocalFile)> {
    let mut out = Vec::new();
    let Some(root_dir) = DirFd::root(root) else { return out };
    let Some(table_dir) = root_dir.child(OsStr::new(table), left) else { return out };
    table_dir.each_subdir(starts("host="), left, |host, host_dir, left| {
        host_dir.each_subdir(starts("date="), left, |date, date_dir, left| {
            let parquet = |n: &OsStr| n.as_bytes().ends_with(b".parquet") && !n.as_bytes().starts_with(b".");
            for (name, kind) in date_dir.entries(parquet, left) {
                let path = date_dir.path.join(&name);
                let (stamp, modified) = match kind {
                    Kind::File(stamp, modified) => (stamp, modified),
                    Kind::Link => {
                        left.add(
                            &path.display().to_string(),
                            "a symbolic link; links inside --history are not followed",
                        );
                        continue;
                    }
                    Kind::Dir | Kind::Other => {
                        left.add(&path.display().to_string(), "not a regular file");
                        continue;
                    }
                };
                let parts = [OsString::from(table), host.clone(), date.clone(), name];
                let Some(location) = parts.iter().try_fold(prefix.clone(), |p, part| part.to_str().map(|s| p.join(s)))
                else {
                    left.add(&path.display().to_string(), "its path is not UTF-8");
                    continue;
                };
                let object =
                    ObjectMeta { location, last_modified: modified, size: stamp.size, e_tag: None, version: None };
                out.push((object, LocalFile { root: root.to_path_buf(), parts: parts.to_vec(), stamp }));
            }
        });
    });
    out
}
