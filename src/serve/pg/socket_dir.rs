//! The unix socket's directory and file, made as root without trusting
//! what is already there.
//!
//! - The directory is made (mode 0755) if missing; if present it must be
//!   a real directory (not a symlink) owned by root or this user and not
//!   writable by group or others, or another user could replace the socket.
//! - An existing `.s.PGSQL.PORT` is removed only if it is a socket nobody
//!   answers on (left by a crashed server); a live one means another
//!   server, and anything that is not a socket is never touched.
//! - The socket is mode 0666: who is admitted is decided per connection
//!   by peer credentials, not by file permissions (as PostgreSQL's own).
//! - On shutdown, the socket file is removed if it is still ours.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The bound socket; removes its file when dropped, if the file is still
/// the one it made.
#[derive(Debug)]
pub struct BoundSocket {
    pub listener: tokio::net::UnixListener,
    pub path: PathBuf,
    ino: (u64, u64),
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// The socket file's name, as libpq builds it.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

fn check_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) => {
            if meta.file_type().is_symlink() || !meta.is_dir() {
                bail!("--pg {}: not a directory (a symlink is not followed)", dir.display());
            }
            if let Some(why) = crate::query::files::untrusted(dir, &meta) {
                bail!("--pg {}: {why}; another user could replace the socket", dir.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot make the socket directory {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Clear a stale socket file at `path`; refuse a live one or a non-socket.
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!("{} exists and is not a socket; not touching it", path.display());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!("{} is in use: another server listens there (a different --pg-port?)", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot tell whether {} is in use", path.display())),
    }
}

/// Make the directory if needed and listen on its `.s.PGSQL.PORT`.
pub fn bind(dir: &Path, port: u16) -> anyhow::Result<BoundSocket> {
    check_dir(dir)?;
    let path = socket_path(dir, port);
    clear_stale(&path)?;
    let listener = tokio::net::UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    let meta = std::fs::symlink_metadata(&path)?;
    Ok(BoundSocket { listener, path, ino: (meta.dev(), meta.ino()) })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(bind(&link, 5441).unwrap_err().to_string().contains("not a directory"));
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
