//! The local history tree, written and pruned as root without following
//! links and without trusting anyone else's files.
//!
//! Rules (SECURITY.md states them for operators):
//! - `--out` must be owned by the user sockql runs as, and not writable by
//!   group or others unless it has the sticky bit (like /tmp), where no
//!   one else can rename or remove what sockql creates in it.
//! - Below it, every directory is created 0750 and every file 0640; an
//!   existing entry that is a symlink, belongs to another user or is
//!   writable by group or others stops the write with an error naming it.
//! - Retention deletes only regular `.parquet` files (and sockql's own
//!   temporary files) inside real `date=` directories, and skips a symlink
//!   with a warning: it never deletes through a link.
//!
//! Checks and uses are separate system calls, but only this user can
//! change a checked entry, so nobody else can swap one in between.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::NaiveDate;

const DIR_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o640;

#[derive(Debug, Clone)]
pub struct LocalTree {
    root: PathBuf,
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Why an existing entry below the root may not be used, if it may not.
fn refuse(path: &Path, meta: &fs::Metadata) -> Option<String> {
    if meta.file_type().is_symlink() {
        return Some(format!(
            "{} is a symbolic link; sockql does not follow links inside its output tree",
            path.display()
        ));
    }
    if meta.uid() != euid() {
        return Some(format!(
            "{} belongs to uid {}, not to the user sockql runs as ({})",
            path.display(),
            meta.uid(),
            euid()
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Some(format!("{} is writable by group or others", path.display()));
    }
    None
}

impl LocalTree {
    /// Open (creating when missing) the output directory `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        if fs::symlink_metadata(dir).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // The operator named this path: a link to it is followed once, here.
        let root = dir.canonicalize().with_context(|| format!("cannot open {}", dir.display()))?;
        let meta = fs::metadata(&root)?;
        if !meta.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        if meta.uid() != euid() {
            bail!(
                "refusing --out {}: it belongs to uid {}, not to the user sockql runs as ({})",
                dir.display(),
                meta.uid(),
                euid()
            );
        }
        let mode = meta.permissions().mode();
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            bail!(
                "refusing --out {}: it is writable by group or others (mode {:o}) without the sticky bit",
                dir.display(),
                mode & 0o7777
            );
        }
        Ok(LocalTree { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/<parts...>` as a directory, each component checked, missing
    /// ones created 0750.
    pub fn ensure_dir(&self, parts: &[&str]) -> anyhow::Result<PathBuf> {
        let mut path = self.root.clone();
        for part in parts {
            if part.is_empty() || *part == "." || *part == ".." || part.contains('/') {
                bail!("bad path component '{part}' in the output tree");
            }
            path.push(part);
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
                    }
                    fs::symlink_metadata(&path)?
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            if let Some(why) = refuse(&path, &meta) {
                bail!("{why}");
            }
            if !meta.is_dir() {
                bail!("{} is not a directory", path.display());
            }
        }
        Ok(path)
    }

    /// Write `data` as `root/<dir...>/<name>`: to a new temporary file
    /// (O_EXCL, O_NOFOLLOW, 0640), then renamed over the name, so readers
    /// see a whole file or none.
    pub fn write_file(&self, dir: &[&str], name: &str, data: &[u8]) -> anyhow::Result<PathBuf> {
        let dir = self.ensure_dir(dir)?;
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let target = dir.join(name);
        let mut f = fs::File::options()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let written = f.write_all(data).and_then(|()| f.sync_data());
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
        }
        // rename replaces a link at the target itself; it never writes
        // through one.
        fs::rename(&tmp, &target)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))?;
        Ok(target)
    }

    /// Delete `<table>/host=<host>/date=<day>` partitions older than
    /// `keep_days` before `today`; returns the number of files deleted.
    pub fn prune(&self, table: &str, host: &str, today: NaiveDate, keep_days: i64) -> anyhow::Result<usize> {
        let host_dir = self.root.join(table).join(format!("host={host}"));
        for p in [self.root.join(table), host_dir.clone()] {
            match fs::symlink_metadata(&p) {
                Ok(m) => {
                    if let Some(why) = refuse(&p, &m) {
                        bail!("retention: {why}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
            }
        }
        let mut deleted = 0;
        for entry in fs::read_dir(&host_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(date) = super::layout::partition_date(&name) else { continue };
            if (today - date).num_days() <= keep_days {
                continue;
            }
            let dir = entry.path();
            let meta = fs::symlink_metadata(&dir)?;
            if let Some(why) = refuse(&dir, &meta)
                .or_else(|| (!meta.is_dir()).then(|| format!("{} is not a directory", dir.display())))
            {
                crate::notice::warn_once(&format!("prune:{}", dir.display()), format!("retention skips it: {why}"));
                continue;
            }
            let mut left = false;
            for file in fs::read_dir(&dir)? {
                let file = file?;
                let path = file.path();
                let meta = fs::symlink_metadata(&path)?;
                let ours = path.extension().is_some_and(|e| e == "parquet" || e == "tmp");
                if meta.file_type().is_file() && ours {
                    fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
                    deleted += 1;
                } else {
                    left = true;
                    crate::notice::warn_once(
                        &format!("prune:{}", path.display()),
                        format!("retention leaves {}: not a recorded file", path.display()),
                    );
                }
            }
            if !left {
                let _ = fs::remove_dir(&dir);
            }
        }
        Ok(deleted)
    }
}
