//! Real containers for the tests (shared by every container test): an
//! image made here from files already on the machine (`podman import` of
//! a tarball holding Debian's busybox-static, no registry, no network),
//! and containers run from it with podman and runc, each a guard that
//! removes it (and the image) when dropped, also when the test panics.
//!
//! Names are `sockql-<test pid>-<tag>` so parallel tests and other
//! engineers' runs never meet. This machine's cgroups are hybrid v1/v2,
//! which crun refuses: podman runs runc. runc sets the OCI rlimits, and
//! raising one needs CAP_SYS_RESOURCE, which the test environment may
//! lack: nofile and nproc are given at or below the limits root has.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// `podman ARGS`, its stdout on success.
pub fn podman(args: &[&str]) -> Result<String, String> {
    let o = Command::new("podman").args(args).stdin(Stdio::null()).output().map_err(|e| format!("podman: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(format!("podman {args:?}: {}", String::from_utf8_lossy(&o.stderr)))
    }
}

/// A unique name for something this test process makes.
pub fn unique(tag: &str) -> String {
    format!("sockql-{}-{tag}", std::process::id())
}

/// A local image holding /bin/busybox (busybox-static), removed on drop.
pub struct Image {
    pub name: String,
}

impl Image {
    pub fn build(tag: &str) -> Image {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed (.ci/run)");
        let dir = super::common::Scratch::new(&format!("img-{tag}"));
        let root = dir.0.join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        let tar = dir.0.join("image.tar");
        let ok = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap().success();
        assert!(ok, "tar of the image");
        let name = format!("localhost/{}:test", unique(tag));
        podman(&["import", tar.to_str().unwrap(), &name]).unwrap();
        Image { name }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.name]);
    }
}

/// A container, removed (with its process) on drop.
pub struct Ctr {
    pub name: String,
    pub id: String,
}

/// The limits every container here is given (see the module's comment).
pub const ULIMITS: &[&str] = &["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"];

impl Ctr {
    /// `podman run -d` of `cmd` in `image` as `sockql-<pid>-<tag>`, with
    /// `opts` (e.g. `--network none`) before the image.
    pub fn run(image: &Image, tag: &str, opts: &[&str], cmd: &[&str]) -> Ctr {
        Ctr::start("run", image, tag, opts, cmd)
    }

    /// `podman create`: a container that never ran.
    pub fn create(image: &Image, tag: &str, opts: &[&str], cmd: &[&str]) -> Ctr {
        Ctr::start("create", image, tag, opts, cmd)
    }

    fn start(verb: &str, image: &Image, tag: &str, opts: &[&str], cmd: &[&str]) -> Ctr {
        let name = unique(tag);
        let mut args = vec!["--runtime", "runc", verb];
        if verb == "run" {
            args.push("-d");
        }
        args.extend_from_slice(ULIMITS);
        args.extend_from_slice(&["--name", &name]);
        args.extend_from_slice(opts);
        args.push(&image.name);
        args.extend_from_slice(cmd);
        let id = podman(&args).unwrap();
        assert_eq!(id.len(), 64, "podman {verb} printed the id: {id}");
        Ctr { name, id }
    }

    /// `podman inspect` of it.
    pub fn inspect(&self) -> Value {
        let out = podman(&["inspect", &self.name]).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// Stop it at once (SIGKILL: busybox as pid 1 ignores SIGTERM).
    pub fn stop(&self) {
        podman(&["stop", "-t", "0", &self.name]).unwrap();
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct NamedNetns {
    pub name: String,
}

impl NamedNetns {
    pub fn add(tag: &str) -> NamedNetns {
        let name = unique(tag);
        assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success());
        NamedNetns { name }
    }

    /// The `--network` option that runs a container in it.
    pub fn network(&self) -> String {
        format!("ns:/run/netns/{}", self.name)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
