//! The unix socket's directory and file, made as root without trusting
//! what is already there.
//!
//! - The directory and every one above it are judged as
//!   `query::safe_dir` says (root's or this user's, not writable by
//!   others unless sticky on the way, not a link at the end): if another
//!   user could rename a directory on the path, they could put their own
//!   socket where root's psql looks and be handed its startup packet and
//!   password. The directory is made (mode 0755) if missing.
//! - Everything after that is done relative to the directory's descriptor:
//!   the socket is bound through /proc/self/fd (so in the directory that
//!   was judged), its mode set with fchmodat without following a link,
//!   a stale one removed with unlinkat.
//! - An existing `.s.PGSQL.PORT` is removed only if it is a socket nobody
//!   answers on (left by a crashed server); a live one means another
//!   server, and anything that is not a socket is never touched.
//! - The socket is mode 0666: who is admitted is decided per connection
//!   by peer credentials, not by file permissions (as PostgreSQL's own).
//! - On shutdown, the socket file is removed if it is still ours.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmodat, fstatat, FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::query::safe_dir::{self, Create};

/// The bound socket; removes its file when dropped, if the file is still
/// the one it made.
#[derive(Debug)]
pub struct BoundSocket {
    pub listener: tokio::net::UnixListener,
    pub path: PathBuf,
    dir: OwnedFd,
    name: String,
    ino: (u64, u64),
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(st) = fstatat(&self.dir, self.name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            if (st.st_dev, st.st_ino) == self.ino {
                let _ = unlinkat(&self.dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
            }
        }
    }
}

/// The socket file's name, as libpq builds it.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(socket_name(port))
}

fn socket_name(port: u16) -> String {
    format!(".s.PGSQL.{port}")
}

fn is_socket(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFSOCK
}

/// `name` in the directory `dir` as a path that resolves through the
/// descriptor, not through the directory's names.
fn through_fd(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Clear a stale socket file `name` in `dir`; refuse a live one or a
/// non-socket. `path` is how messages show it.
fn clear_stale(dir: &OwnedFd, name: &str, path: &Path) -> anyhow::Result<()> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !is_socket(&st) {
        bail!("{} exists and is not a socket; not touching it", path.display());
    }
    match std::os::unix::net::UnixStream::connect(through_fd(dir, name)) {
        Ok(_) => bail!("{} is in use: another server listens there (a different --pg-port?)", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)
            .with_context(|| format!("cannot remove the stale socket {}", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot tell whether {} is in use", path.display())),
    }
}

/// Make the directory if needed and listen on its `.s.PGSQL.PORT`.
pub fn bind(dir: &Path, port: u16) -> anyhow::Result<BoundSocket> {
    let dir_fd = safe_dir::open_dir(dir, Create::Last(0o755))
        .map_err(|e| anyhow::anyhow!("--pg {}: {e}; another user could replace the socket", dir.display()))?;
    let (name, path) = (socket_name(port), socket_path(dir, port));
    clear_stale(&dir_fd, &name, &path)?;
    let listener = tokio::net::UnixListener::bind(through_fd(&dir_fd, &name))
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    fchmodat(&dir_fd, name.as_str(), Mode::from_bits_truncate(0o666), FchmodatFlags::NoFollowSymlink)
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    let st = fstatat(&dir_fd, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok(BoundSocket { listener, path, dir: dir_fd, name, ino: (st.st_dev, st.st_ino) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sockql-sd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn binds_clears_stale_sockets_and_removes_its_own() {
        let dir = scratch("bind");
        let bound = bind(&dir, 5439).unwrap();
        let path = bound.path.clone();
        assert_eq!(path.file_name().unwrap(), ".s.PGSQL.5439");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
        // A second server on the same socket is refused while the first lives.
        assert!(bind(&dir, 5439).unwrap_err().to_string().contains("in use"));
        drop(bound);
        assert!(!path.exists(), "the socket file goes with the server");
        // A stale socket (nobody listening) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let again = bind(&dir, 5439).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn never_touches_what_is_not_a_socket_nor_trusts_open_directories() {
        let dir = scratch("hostile");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(socket_path(&dir, 5439), "precious").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _g = rt.enter();
        assert!(bind(&dir, 5439).unwrap_err().to_string().contains("not a socket"));
        assert_eq!(std::fs::read_to_string(socket_path(&dir, 5439)).unwrap(), "precious");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(bind(&dir, 5440).unwrap_err().to_string().contains("writable by group or others"));
        let link = scratch("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(bind(&link, 5441).unwrap_err().to_string().contains("is a symbolic link"));
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
