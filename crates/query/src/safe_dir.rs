//! Directories sockql writes in as root (the shell's history, the
//! server's socket), opened without trusting the path that names them.
//!
//! A path is only as safe as its weakest component: if another user may
//! rename or replace any directory on the way, they can swap in a tree of
//! their own (with links to files root owns) between a check and a write.
//! So the path is walked from `/` one component at a time, each opened
//! relative to the one before with O_NOFOLLOW and judged on the open
//! descriptor (fstat: what is judged is what is used), as sshd's
//! StrictModes judges the path to `authorized_keys`:
//!
//! - every directory belongs to root or the user sockql runs as, and is
//!   not writable by group or others unless it is sticky (`/tmp`: others
//!   may add entries there but not rename or remove ours);
//! - the directory itself, the last one, is not writable by group or
//!   others at all, sticky or not;
//! - a symbolic link on the way is followed only if it belongs to root or
//!   this user (the directory holding it was judged already, so nobody
//!   else can have put it there); the last component is never a link.
//!
//! Callers then work relative to the descriptor this returns (`openat`,
//! `fchmodat`, `unlinkat`), never by the path again, and walk again before
//! each later write (a directory's mode can change while sockql runs).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use crate::bail;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};

/// Links followed in one walk before giving up (Linux's own bound).
const MAX_LINKS: usize = 40;

/// What to do with directories that do not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing directory is an error.
    Never,
    /// Make the last one with this mode (its parent must exist).
    Last(u32),
    /// Make every missing one with this mode (`mkdir -p`).
    All(u32),
}

/// Owners sockql writes under: root and the user it runs as.
pub fn trusted_uid(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Why the directory `shown`, whose status is `st`, may not be used; `last`
/// for the directory itself rather than one on the way to it.
fn judge(shown: &Path, st: &FileStat, last: bool) -> crate::Result<()> {
    if !trusted_uid(st.st_uid) {
        bail!("{} is owned by uid {}, not by root or you", shown.display(), st.st_uid);
    }
    let mode = st.st_mode;
    let sticky = mode & libc::S_ISVTX != 0;
    if mode & 0o022 != 0 && (last || !sticky) {
        bail!("{} is writable by group or others", shown.display());
    }
    Ok(())
}

fn is(st: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == kind
}

/// The mode to make `last` (or not) with, if `create` makes it.
fn mode_for(create: Create, last: bool) -> Option<u32> {
    match create {
        Create::All(m) => Some(m),
        Create::Last(m) if last => Some(m),
        _ => None,
    }
}

/// The names of `path` in order, `..` kept (it is resolved against the
/// directories actually opened, which no link has redirected).
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Open directory `name` in `dir` for walking, never through a link.
fn open_in(dir: &OwnedFd, name: &OsString, shown: &Path) -> crate::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(dir, name.as_os_str(), flags, Mode::empty()).map_err(|e| match e {
        Errno::ELOOP => crate::err!("{} is a symbolic link (not followed)", shown.display()),
        Errno::ENOTDIR => crate::err!("{} is not a directory", shown.display()),
        e => crate::err!("cannot open {}: {e}", shown.display()),
    })
}

/// Open the directory `path` (relative paths start at the working
/// directory) after judging every component from `/` under the rules of
/// the module doc, making missing ones as `create` says. The error is one
/// line naming the component and why.
pub fn open_dir(path: &Path, create: Create) -> crate::Result<OwnedFd> {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    let mut todo: VecDeque<OsString> = names(&abs).collect();
    let root = || -> crate::Result<(OwnedFd, PathBuf)> {
        let fd = openat(AT_FDCWD, "/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
        judge(Path::new("/"), &fstat(&fd)?, false)?;
        Ok((fd, PathBuf::from("/")))
    };
    // The directories opened so far, each with the path that shows it.
    let mut stack = vec![root()?];
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        let last = todo.is_empty();
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let Some((dir, shown)) = stack.last() else { bail!("{}: no directory to start from", abs.display()) };
        let here = shown.join(&name);
        // The mode of a directory made here.
        let mut made = None;
        match fstatat(dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if is(&st, SFlag::S_IFLNK) => {
                if last {
                    bail!("{} is a symbolic link (not followed)", here.display());
                }
                if !trusted_uid(st.st_uid) {
                    bail!("{} is a symbolic link owned by uid {}, not by root or you", here.display(), st.st_uid);
                }
                links += 1;
                if links > MAX_LINKS {
                    bail!("{}: too many symbolic links", abs.display());
                }
                let target = PathBuf::from(readlinkat(dir, name.as_os_str())?);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                for n in names(&target).collect::<Vec<_>>().into_iter().rev() {
                    todo.push_front(n);
                }
                continue;
            }
            Ok(_) => {}
            Err(Errno::ENOENT) if mode_for(create, last).is_some() => {
                let mode = mode_for(create, last).unwrap_or(0o700);
                match mkdirat(dir, name.as_os_str(), Mode::from_bits_truncate(mode)) {
                    Ok(()) => made = Some(mode),
                    Err(Errno::EEXIST) => {}
                    Err(e) => bail!("cannot make the directory {}: {e}", here.display()),
                }
            }
            Err(e) => bail!("cannot read {}: {e}", here.display()),
        }
        let fd = open_in(dir, &name, &here)?;
        let st = fstat(&fd)?;
        if let Some(mode) = made.filter(|_| st.st_uid == nix::unistd::geteuid().as_raw()) {
            // The mode asked for, whatever the umask took away; set on a
            // descriptor of the directory just made, never by path.
            let rw = openat(
                dir,
                name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            if fstat(&rw).is_ok_and(|s| (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino)) {
                fchmod(&rw, Mode::from_bits_truncate(mode))?;
            }
        }
        judge(&here, &fstat(&fd)?, last)?;
        stack.push((fd, here));
    }
    let (fd, shown) = stack.pop().ok_or_else(|| crate::err!("{}: no directory", abs.display()))?;
    // Where the walk ended (after a `..` or a link) is the directory
    // itself: judged as such.
    judge(&shown, &fstat(&fd)?, true)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sockql-safedir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn walks_trusted_paths_and_makes_what_is_missing() {
        let d = scratch("ok");
        let deep = d.join("a/b/c");
        open_dir(&deep, Create::All(0o700)).unwrap();
        assert_eq!(std::fs::metadata(&deep).unwrap().permissions().mode() & 0o777, 0o700);
        // A link this user owns, on the way, is followed; `..` is resolved
        // against what was opened.
        symlink(d.join("a"), d.join("viaLink")).unwrap();
        open_dir(&d.join("viaLink/b/../b/c"), Create::Never).unwrap();
        assert!(open_dir(&d.join("missing"), Create::Never).unwrap_err().to_string().contains("cannot read"));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn refuses_links_at_the_end_and_open_directories() {
        let d = scratch("bad");
        std::fs::create_dir(d.join("real")).unwrap();
        symlink(d.join("real"), d.join("link")).unwrap();
        assert!(open_dir(&d.join("link"), Create::Never).unwrap_err().to_string().contains("is a symbolic link"));
        std::fs::set_permissions(d.join("real"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = open_dir(&d.join("real"), Create::Never).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        // Group-writable on the way, without the sticky bit: refused.
        std::fs::create_dir(d.join("real/sub")).unwrap();
        assert!(open_dir(&d.join("real/sub"), Create::Never).unwrap_err().to_string().contains("real is writable"));
        // With the sticky bit (a /tmp), only the last one must be closed.
        std::fs::set_permissions(d.join("real"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        open_dir(&d.join("real/sub"), Create::Never).unwrap();
        assert!(open_dir(&d.join("real"), Create::Never).is_err());
        std::fs::remove_dir_all(d).unwrap();
    }
}
