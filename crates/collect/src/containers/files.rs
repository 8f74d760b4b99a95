//! Reading a container runtime's files as root without trusting them.
//!
//! A runtime's directory (/var/lib/docker, /run/containerd/..., ...) is
//! root's, but what is inside it is partly written from a container's
//! side (names, labels, annotations, an image's config) and a mistake or
//! a hostile image may leave a symlink, a FIFO or a huge file there. So:
//! the root is opened without following any symlink on its path and must
//! be owned by us and writable by no one else; every file beneath it is
//! opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), O_NOFOLLOW
//! and O_NONBLOCK (a FIFO such as podman's `ctl` never blocks a scan),
//! must be a regular file, and is read up to a cap: a bigger one is not
//! loaded at all (its container keeps what other files say).

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{fstat, Mode, SFlag};

/// A runtime's JSON file for one container (OCI config.json, docker's
/// config.v2.json, runc's state.json): real ones are tens of KiB.
pub const MAX_CONFIG: u64 = 2 << 20;
/// podman's containers.json lists every container (~700 bytes each:
/// 16 MiB is over 20,000 containers).
pub const MAX_LIST: u64 = 16 << 20;
/// A pid file.
pub const MAX_PID: u64 = 32;
/// Entries read from one directory (containers, namespaces).
pub const MAX_ENTRIES: usize = 100_000;
/// Bytes kept of one string field (a name, an image, an annotation).
pub const MAX_FIELD: usize = 4096;

/// A runtime's directory, held open: everything is read beneath it.
pub struct RuntimeDir {
    fd: OwnedFd,
}

fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

impl RuntimeDir {
    /// The directory at `path`, or None if it is missing, reached through
    /// a symlink, not ours or writable by group or others.
    pub fn open(path: &Path) -> Option<RuntimeDir> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = openat2(AT_FDCWD, path, how).ok()?;
        let st = fstat(&fd).ok()?;
        let ours = st.st_uid == nix::unistd::geteuid().as_raw();
        let others_write = st.st_mode & 0o022 != 0;
        (ours && !others_write).then_some(RuntimeDir { fd })
    }

    /// A directory beneath this one (no symlink on the way).
    pub fn dir(&self, rel: &str) -> Option<RuntimeDir> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(beneath());
        openat2(self.fd.as_fd(), rel, how).ok().map(|fd| RuntimeDir { fd })
    }

    /// Whether `rel` exists beneath this directory (not followed).
    pub fn exists(&self, rel: &str) -> bool {
        let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).resolve(beneath());
        openat2(self.fd.as_fd(), rel, how).is_ok()
    }

    /// The bytes of regular file `rel` beneath this directory, if it has
    /// at most `max` of them.
    pub fn read(&self, rel: &str, max: u64) -> Option<Vec<u8>> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
            .mode(Mode::empty())
            .resolve(beneath());
        let fd = openat2(self.fd.as_fd(), rel, how).ok()?;
        let st = fstat(&fd).ok()?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG || st.st_size as u64 > max {
            return None;
        }
        let mut bytes = Vec::new();
        // The size may grow after fstat: the cap holds for what is read.
        std::fs::File::from(fd).take(max + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= max).then_some(bytes)
    }

    /// JSON file `rel`, parsed, if it is at most `max` bytes and valid.
    pub fn json(&self, rel: &str, max: u64) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.read(rel, max)?).ok()
    }

    /// A pid file beneath this directory: a positive decimal number.
    pub fn pid(&self, rel: &str) -> Option<i32> {
        let text = self.read(rel, MAX_PID)?;
        std::str::from_utf8(&text).ok()?.trim().parse().ok().filter(|&p: &i32| p > 0)
    }

    /// Names of the subdirectories of `rel` (real ones: a symlink to a
    /// directory is not one), at most [`MAX_ENTRIES`], that `keep`
    /// accepts, sorted.
    pub fn list(&self, rel: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(beneath());
        let Ok(fd) = openat2(self.fd.as_fd(), rel, how) else { return Vec::new() };
        let Ok(mut dir) = nix::dir::Dir::from_fd(fd) else { return Vec::new() };
        let mut found = Vec::new();
        for entry in dir.iter().flatten() {
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name != "." && name != ".." && keep(name) {
                found.push((name.to_string(), entry.file_type()));
                if found.len() >= MAX_ENTRIES {
                    break;
                }
            }
        }
        let mut out: Vec<String> = found
            .into_iter()
            .filter(|(name, kind)| match kind {
                Some(t) => *t == nix::dir::Type::Directory,
                // No d_type from this filesystem: lstat beneath the listed directory.
                None => nix::sys::stat::fstatat(&dir, name.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR),
            })
            .map(|(name, _)| name)
            .collect();
        out.sort_unstable();
        out
    }
}

/// A 64-hex-digit container id: the only directory names taken as ids.
pub fn is_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A string field of a JSON object, cut to [`MAX_FIELD`] bytes (at a
/// character boundary). Kept as the text it is: printers escape it.
pub fn field(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(cut)
}

/// `s` cut to [`MAX_FIELD`] bytes at a character boundary.
pub fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_FIELD);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("sockql-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn reads_are_capped_confined_and_never_follow_links() {
        let d = scratch("read");
        let outside = scratch("read-outside");
        std::fs::write(outside.join("secret"), "{\"a\":\"secret\"}").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/ok.json"), "{\"a\":\"b\"}").unwrap();
        std::fs::write(d.join("big"), vec![b' '; 101]).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), d.join("abs")).unwrap();
        std::os::unix::fs::symlink("sub/ok.json", d.join("rel")).unwrap();
        std::os::unix::fs::symlink(&outside, d.join("dirlink")).unwrap();
        nix::unistd::mkfifo(&d.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let root = RuntimeDir::open(&d).unwrap();
        assert_eq!(root.json("sub/ok.json", 100).unwrap()["a"], "b");
        assert_eq!(root.read("big", 100), None, "over the cap: not read");
        assert_eq!(root.read("big", 101).map(|b| b.len()), Some(101));
        for link in ["abs", "rel", "dirlink/secret", "../read-outside/secret", "fifo", "sub"] {
            assert_eq!(root.read(link, 1 << 20), None, "{link}");
        }
        assert_eq!(root.list(".", |_| true), ["sub"], "only real directories");
        assert!(root.dir("dirlink").is_none());
        // A root reached through a link, or writable by others, is refused.
        assert!(RuntimeDir::open(&d.join("dirlink")).is_none());
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(RuntimeDir::open(&outside).is_none());
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&outside);
    }

    #[test]
    fn fields_are_cut_at_a_character_boundary() {
        let s = format!("{}é", "a".repeat(MAX_FIELD - 1));
        assert_eq!(cut(&s), "a".repeat(MAX_FIELD - 1));
        assert_eq!(cut("short\u{1b}"), "short\u{1b}");
        assert!(is_id(&"a".repeat(64)) && !is_id(&"g".repeat(64)) && !is_id("abc"));
    }
}
