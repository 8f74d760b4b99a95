//! Where tracepoints' format files are read: tracefs, found in this
//! process's mount table, or, where it is not mounted, mounted privately.
//!
//! The private mount is the new mount API's detached mount: `fsopen
//! ("tracefs")`, `fsconfig(CREATE)`, `fsmount()` give a descriptor of a
//! tracefs that is attached to no directory of any mount namespace. Files
//! are opened relative to it; nobody else sees it, nothing is left in the
//! mount table, and when the descriptor closes (drop, exit, SIGKILL) the
//! kernel dissolves the mount. No namespace is unshared, no thread or
//! child is needed, and the host's tracing state is untouched (tracefs
//! has one superblock; a mount only makes it reachable). Mounting needs
//! CAP_SYS_ADMIN; without it, or on a kernel older than 5.2 (no fsopen),
//! the error says in one line how to mount it.
//!
//! A `debugfs/tracing` directory is not used unless the mount table lists
//! tracefs there: opening it would trigger the automount, which leaves a
//! tracefs mounted in the host's namespace.
//!
//! Paths: tracefs and the sysfs/debugfs directories it is mounted on are
//! kernel-owned and only root can place anything there, so the threat is
//! small; still, sockql runs as root and reads what it finds there as a
//! trusted description of kernel memory. So the directory is opened with
//! openat2(RESOLVE_NO_SYMLINKS) and must be tracefs by its filesystem
//! magic (fstatfs), and each file is opened beneath it with RESOLVE_BENEATH
//! | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV, from group and event names
//! that may only hold `[A-Za-z0-9_]`: no path a name or link can steer.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::Mode;

use super::error::TraceError;
use super::format::{self, Format, MAX_FORMAT_BYTES};

/// How tracefs was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reached {
    /// Already mounted here.
    Mounted(String),
    /// A private detached mount of sockql's own.
    Private,
}

/// An open tracefs root.
#[derive(Debug)]
pub struct Tracefs {
    root: OwnedFd,
    pub reached: Reached,
}

/// The mount points of tracefs in a mountinfo text, in its order.
pub fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            let point = left.split(' ').nth(4)?;
            (fstype == "tracefs").then(|| crate::cgroups::unescape_octal(point))
        })
        .collect()
}

/// A group or event name: what tracefs names them with, nothing a path
/// could be made of.
fn plain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Tracefs {
    /// tracefs as mounted, else a private mount.
    pub fn open() -> Result<Tracefs, TraceError> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| TraceError::sys("reading /proc/self/mountinfo", e))?;
        for point in mount_points(&mountinfo) {
            if let Ok(t) = Tracefs::at(&point) {
                return Ok(t);
            }
        }
        Tracefs::private()
    }

    /// The tracefs mounted at `path` (no symlink followed on the way).
    pub fn at(path: &str) -> Result<Tracefs, TraceError> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
        let root = openat2(AT_FDCWD, path, how).map_err(|e| TraceError::sys(format!("opening {path}"), e))?;
        Tracefs::checked(root, Reached::Mounted(path.to_string()))
    }

    /// A detached tracefs mount only this descriptor reaches.
    pub fn private() -> Result<Tracefs, TraceError> {
        use rustix::mount::{fsconfig_create, fsmount, fsopen, FsMountFlags, FsOpenFlags, MountAttrFlags};
        let fs = fsopen("tracefs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| TraceError::NoTracefs(e.into()))?;
        fsconfig_create(&fs).map_err(|e| TraceError::NoTracefs(e.into()))?;
        let attrs = MountAttrFlags::MOUNT_ATTR_RDONLY
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC;
        let root = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(|e| TraceError::NoTracefs(e.into()))?;
        Tracefs::checked(root, Reached::Private)
    }

    fn checked(root: OwnedFd, reached: Reached) -> Result<Tracefs, TraceError> {
        let fs = nix::sys::statfs::fstatfs(&root).map_err(|e| TraceError::sys("fstatfs of tracefs", e))?;
        if fs.filesystem_type() != nix::sys::statfs::TRACEFS_MAGIC {
            let shown = match &reached {
                Reached::Mounted(p) => p.as_str(),
                Reached::Private => "the private mount",
            };
            return Err(TraceError::NotTracefs(shown.into()));
        }
        Ok(Tracefs { root, reached })
    }

    /// The text of a file beneath the root, at most `max` bytes.
    pub fn read(&self, rel: &str, max: usize) -> std::io::Result<String> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .mode(Mode::empty())
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV);
        let file: std::fs::File = openat2(self.root.as_fd(), rel, how)?.into();
        let mut bytes = Vec::new();
        file.take(max as u64 + 1).read_to_end(&mut bytes)?;
        if bytes.len() > max {
            return Err(std::io::Error::other(format!("{rel}: more than {max} bytes")));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The parsed format of `group:name`; a tracepoint this kernel lacks
    /// is [`TraceError::NoTracepoint`].
    pub fn format(&self, group: &str, name: &str) -> Result<Format, TraceError> {
        let event = format!("{group}:{name}");
        if !plain(group) || !plain(name) {
            return Err(TraceError::NoTracepoint(event.into()));
        }
        let rel = format!("events/{group}/{name}/format");
        let text = self.read(&rel, MAX_FORMAT_BYTES).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => TraceError::NoTracepoint(event.clone().into()),
            _ => TraceError::sys(format!("reading {rel}"), e),
        })?;
        format::parse(&text).map_err(|msg| TraceError::Format { path: rel.into(), msg: msg.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tracefs_in_mountinfo_with_escapes() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
            90 23 0:12 / /sys/kernel/tracing rw,nosuid shared:7 - tracefs nodev rw\n\
            91 23 0:12 / /tmp/a\\040b rw - tracefs tracefs rw\n\
            92 23 0:13 / /sys/kernel/debug rw - debugfs debugfs rw\n\
            garbage line\n - tracefs\n";
        assert_eq!(mount_points(text), vec!["/sys/kernel/tracing".to_string(), "/tmp/a b".into()]);
        assert_eq!(crate::cgroups::unescape_octal("a\\134b\\011\\0"), "a\\b\t\\0");
    }

    #[test]
    fn names_that_could_be_paths_are_not_tracepoints() {
        for bad in ["..", "a/b", "", "a b", "x\0"] {
            assert!(!plain(bad), "{bad:?}");
        }
        assert!(plain("kfree_skb") && plain("tcp"));
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// On this machine tracefs is not mounted: the private mount must
    /// read the real format, and leave the mount table as it was.
    #[test]
    fn private_mount_reads_formats_and_leaves_no_mount() {
        if !root() {
            return;
        }
        let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let t = Tracefs::private().unwrap();
        assert_eq!(t.reached, Reached::Private);
        let f = t.format("skb", "kfree_skb").unwrap();
        assert_eq!(f.name, "kfree_skb");
        assert_eq!(f.symbols["reason"].name(3), Some("NO_SOCKET"));
        // The fixture is this kernel's text.
        let fixture = include_str!("../../../../tests/fixtures/tracepoints/skb_kfree_skb.format");
        assert_eq!(t.read("events/skb/kfree_skb/format", MAX_FORMAT_BYTES).unwrap(), fixture);
        let e = t.format("skb", "no_such_event").unwrap_err();
        assert_eq!(e.to_string(), "this kernel has no tracepoint skb:no_such_event");
        assert!(matches!(t.format("..", "x"), Err(TraceError::NoTracepoint(_))));
        assert!(t.read("../../etc/passwd", 100).is_err());
        assert!(t.read("/etc/passwd", 100).is_err());
        drop(t);
        let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert_eq!(mount_points(&before), mount_points(&after));
        assert!(!after.contains("tracefs") || before.contains("tracefs"));
    }

    /// A symlink where tracefs is looked for is not followed, and a
    /// directory that is not tracefs is refused.
    #[test]
    fn refuses_symlinks_and_other_filesystems() {
        if !root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("sockql-tracefs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("events/skb/kfree_skb")).unwrap();
        std::fs::write(dir.join("events/skb/kfree_skb/format"), "name: kfree_skb\nID: 1\n").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink("/sys/kernel", &link).unwrap();
        let e = Tracefs::at(dir.to_str().unwrap()).unwrap_err();
        assert!(matches!(e, TraceError::NotTracefs(_)), "{e}");
        assert!(e.to_string().ends_with("mount -t tracefs nodev /sys/kernel/tracing"), "{e}");
        let e = Tracefs::at(&format!("{}/tracing", link.display())).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ELOOP), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
