//! The Debian package (scripts/build-deb) and what it ships: `--version`
//! names the build, and the package installs into a fresh Debian root,
//! runs there, its units pass `systemd-analyze verify`, and it purges
//! without leaving a file behind.
//!
//! The install test is ignored by default (it bootstraps Debian bookworm
//! from the network mirror apt uses: a minute or two); `.ci/run` runs it
//! after `cargo test`. SOCKQL_TEST_DEBOOTSTRAP_TARBALL names a tarball made
//! by `debootstrap --make-tarball` to unpack instead of downloading.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{self, bin};

/// `git` in the checkout, trimmed output.
fn git(args: &[&str]) -> String {
    let o = Command::new("git").args(args).output().expect("git");
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `date -u +%F`, or of a time given as seconds.
fn utc_date(epoch: Option<i64>) -> String {
    let mut c = Command::new("date");
    c.arg("-u").arg("+%F");
    if let Some(e) = epoch {
        c.arg(format!("--date=@{e}"));
    }
    String::from_utf8(c.output().unwrap().stdout).unwrap().trim().to_string()
}

/// "sockql 0.1.0 (commit C, built D)" split into (version, commit, date).
fn parse_version(line: &str) -> (String, String, String) {
    let rest = line.trim().strip_prefix("sockql ").unwrap_or_else(|| panic!("{line:?}"));
    let (version, rest) = rest.split_once(" (commit ").unwrap_or_else(|| panic!("{line:?}"));
    let (commit, rest) = rest.split_once(", built ").unwrap_or_else(|| panic!("{line:?}"));
    let date = rest.strip_suffix(')').unwrap_or_else(|| panic!("{line:?}"));
    (version.to_string(), commit.to_string(), date.to_string())
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let (out, err, ok) = common::run(&["--version"]);
    assert!(ok, "{err}");
    let (version, commit, date) = parse_version(&out);
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    // The tests run in the checkout the binary was built from (itest and
    // .ci/run build, then test, the same HEAD).
    assert_eq!(commit, git(&["rev-parse", "--short=12", "HEAD"]), "{out}");
    // Built today, or on an earlier day (a build from before midnight):
    // a real YYYY-MM-DD no later than today.
    assert_eq!(date.len(), 10, "{out}");
    let o = Command::new("date").args(["-u", "+%F", &format!("--date={date}")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), date, "not a date: {out}");
    assert!(date <= utc_date(None), "{out}");
    // The man page keeps the package version only (doc/sockql.1 must not
    // change with each commit).
    let (man, _, ok) = common::run(&["man"]);
    assert!(ok);
    assert!(man.contains(&format!("\"sockql {version}\"")), "{}", &man[..200.min(man.len())]);
    assert!(!man.contains(&commit));
}

/// Every file and directory the package holds (`dpkg-deb -c`), without
/// the leading "./".
fn package_listing(deb: &Path) -> BTreeSet<String> {
    let o = Command::new("dpkg-deb").arg("-c").arg(deb).output().unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Build the package from this checkout around the binary under test, as
/// CI does; returns its path.
fn build_deb(out: &Path, epoch: &str) -> PathBuf {
    let o = Command::new("scripts/build-deb")
        .args(["--binary", bin(), "--compress", "gzip", "--out"])
        .arg(out)
        .env("SOURCE_DATE_EPOCH", epoch)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "build-deb: {}", String::from_utf8_lossy(&o.stderr));
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// The mirror apt uses on this host (deb822 or one-line sources).
fn mirror() -> String {
    let mut texts = Vec::new();
    for f in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        texts.extend(std::fs::read_to_string(f).ok());
    }
    for text in texts {
        for line in text.lines() {
            let line = line.trim();
            if let Some(u) = line.strip_prefix("URIs:") {
                if let Some(u) = u.split_whitespace().find(|u| u.ends_with("/debian")) {
                    return u.to_string();
                }
            }
            if line.starts_with("deb ") {
                if let Some(u) = line.split_whitespace().find(|u| u.starts_with("http") && u.ends_with("/debian")) {
                    return u.to_string();
                }
            }
        }
    }
    "http://deb.debian.org/debian".to_string()
}

/// A fresh Debian bookworm root (minbase, with systemd for
/// `systemd-analyze verify`, man-db for the man page it checks, adduser
/// for the package's postinst), with
/// /proc mounted; unmounted and removed when dropped.
struct DebianRoot {
    dir: PathBuf,
    proc_mounted: bool,
}

impl DebianRoot {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("sockql-debroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut root = DebianRoot { dir, proc_mounted: false };
        let mut c = Command::new("debootstrap");
        match std::env::var("SOCKQL_TEST_DEBOOTSTRAP_TARBALL") {
            Ok(t) => c.arg(format!("--unpack-tarball={t}")),
            Err(_) => &mut c,
        };
        c.args(["--variant=minbase", "--include=systemd,adduser,man-db", "bookworm"]).arg(&root.dir).arg(mirror());
        let o = c.stdin(Stdio::null()).output().expect("debootstrap (apt-get install debootstrap)");
        assert!(o.status.success(), "debootstrap: {}", String::from_utf8_lossy(&o.stdout));
        let proc = root.dir.join("proc");
        let ok = Command::new("mount").args(["-t", "proc", "proc"]).arg(&proc).status().unwrap().success();
        assert!(ok, "mount proc in {}", root.dir.display());
        root.proc_mounted = true;
        root
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    /// Run `args` inside the root: (stdout, stderr, success).
    fn chroot(&self, args: &[&str]) -> (String, String, bool) {
        let o = Command::new("chroot")
            .arg(&self.dir)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        common::output_of(o)
    }

    /// Every path in the root outside /proc, /dev and /tmp, as "/path".
    fn files(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let rel = format!("/{}", e.path().strip_prefix(&self.dir).unwrap().display());
                if ["/proc", "/dev", "/tmp", "/sys", "/run"].contains(&rel.as_str()) {
                    continue;
                }
                if std::fs::symlink_metadata(e.path()).unwrap().is_dir() {
                    stack.push(e.path());
                }
                out.insert(rel);
            }
        }
        out
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        if self.proc_mounted {
            let proc = self.dir.join("proc");
            let _ = Command::new("umount").arg(&proc).status();
            // Never remove a tree that still has /proc mounted in it.
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            if mounts.lines().any(|l| l.split_whitespace().nth(4) == Some(&*proc.to_string_lossy())) {
                eprintln!("{} is still mounted: not removing {}", proc.display(), self.dir.display());
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the package must hold, and nothing else.
fn expected_listing() -> BTreeSet<String> {
    let mut want: BTreeSet<String> = [
        "etc",
        "etc/sockql",
        "etc/sockql/queries",
        "etc/sockql/sockql.conf",
        "lib",
        "lib/systemd",
        "lib/systemd/system",
        "lib/systemd/system/sockql-record.service",
        "lib/systemd/system/sockql-serve.service",
        "usr",
        "usr/bin",
        "usr/bin/sockql",
        "usr/share",
        "usr/share/bash-completion",
        "usr/share/bash-completion/completions",
        "usr/share/bash-completion/completions/sockql",
        "usr/share/doc",
        "usr/share/doc/sockql",
        "usr/share/doc/sockql/README.md",
        "usr/share/doc/sockql/copyright",
        "usr/share/doc/sockql/queries",
        "usr/share/fish",
        "usr/share/fish/vendor_completions.d",
        "usr/share/fish/vendor_completions.d/sockql.fish",
        "usr/share/man",
        "usr/share/man/man1",
        "usr/share/man/man1/sockql.1.gz",
        "usr/share/zsh",
        "usr/share/zsh/vendor-completions",
        "usr/share/zsh/vendor-completions/_sockql",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for e in std::fs::read_dir("queries").unwrap().flatten() {
        want.insert(format!("usr/share/doc/sockql/queries/{}", e.file_name().to_string_lossy()));
    }
    want
}

/// Paths a purge may leave that are not the package's: dpkg's own records
/// and logs, the backups adduser/deluser keep of the user database, and
/// man-db's cache (`man sockql`, run by systemd-analyze verify for the
/// units' Documentation=, formats the page into it; man-db's daily job
/// drops pages whose source is gone).
fn left_by_dpkg(path: &str) -> bool {
    path.starts_with("/var/lib/dpkg/")
        || path.starts_with("/var/log/")
        || path.starts_with("/var/cache/man/")
        || path.starts_with("/var/cache/debconf/")
        || ["/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-"]
            .contains(&path)
}

/// A unit file's `Key=` value (its last one).
fn unit_value(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    unit.lines().filter_map(|l| l.strip_prefix(&prefix)).next_back().unwrap_or_else(|| panic!("no {key}=")).to_string()
}

/// A config file's `VAR=value` value.
fn conf_value(conf: &str, var: &str) -> String {
    let prefix = format!("{var}=");
    conf.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {var}=")).to_string()
}

/// The command that runs `args` in the root as a unit would: its `User=`
/// and `Group=`, its `AmbientCapabilities=` (also the bounding set, as
/// `CapabilityBoundingSet=` says) and `NoNewPrivileges=`.
fn as_unit(root: &DebianRoot, unit: &str, args: &[&str]) -> Command {
    assert_eq!(unit_value(unit, "NoNewPrivileges"), "yes");
    let caps = unit_value(unit, "AmbientCapabilities");
    assert_eq!(caps, unit_value(unit, "CapabilityBoundingSet"));
    let caps: Vec<String> =
        caps.split_whitespace().map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase())).collect();
    let caps = caps.join(",");
    let mut c = Command::new("chroot");
    c.arg(&root.dir)
        .arg("setpriv")
        .arg(format!("--reuid={}", unit_value(unit, "User")))
        .arg(format!("--regid={}", unit_value(unit, "Group")))
        .arg("--init-groups")
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg("--no-new-privs")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("XDG_CONFIG_HOME", "/etc")
        .stdin(Stdio::null());
    c
}

/// `GET path` on `port` of loopback: the body, if it answers 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A process started for a test, ended (SIGKILL) and reaped when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The installed services, run as their units say (no systemd runs in the
/// root): `sockql serve $SERVE_ARGS` as user sockql with the units'
/// capabilities answers a scrape and psql with the owner of a socket root
/// holds; `sockql record $RECORD_ARGS` writes its history as that user.
fn services_run_as_their_units(root: &DebianRoot, listener_port: u16) {
    let conf = std::fs::read_to_string(root.path("/etc/sockql/sockql.conf")).unwrap();
    let serve_unit = std::fs::read_to_string(root.path("/lib/systemd/system/sockql-serve.service")).unwrap();
    let record_unit = std::fs::read_to_string(root.path("/lib/systemd/system/sockql-record.service")).unwrap();
    assert_eq!(unit_value(&serve_unit, "ExecStart"), "/usr/bin/sockql serve $SERVE_ARGS");
    assert_eq!(unit_value(&record_unit, "ExecStart"), "/usr/bin/sockql record $RECORD_ARGS");
    let uid = |name: &str| -> u32 {
        let (pw, _, ok) = root.chroot(&["id", "-u", name]);
        assert!(ok);
        pw.trim().parse().unwrap()
    };
    let sockql_uid = uid("sockql");
    // systemd's RuntimeDirectory= and StateDirectory=: the user's own.
    for (dir, mode) in [("/run/sockql", "0755"), ("/var/lib/sockql", "0750")] {
        assert!(root.chroot(&["install", "-d", "-o", "sockql", "-g", "sockql", "-m", mode, dir]).2);
    }

    // serve, on a free port instead of the config's 9477 (other tests and
    // engineers run on this host).
    let free = common::port_of(&common::listener("127.0.0.1:0", 1));
    let serve_args = conf_value(&conf, "SERVE_ARGS");
    assert!(serve_args.contains("--listen 127.0.0.1:9477 --pg /run/sockql "), "{serve_args}");
    let serve_args = serve_args.replace("127.0.0.1:9477", &format!("127.0.0.1:{free}"));
    let mut args = vec!["sockql", "serve"];
    args.extend(serve_args.split_whitespace());
    let serve = Running(as_unit(root, &serve_unit, &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let me = std::process::id();
    let comm = common::my_comm();
    // SERVE_ARGS has --all-netns: the series of this namespace's listener.
    let netns = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let line = common::eventually(std::time::Duration::from_secs(30), || {
        http_get(free, "/metrics")?
            .lines()
            .find(|l| {
                l.starts_with(&format!("sockql_accept_queue_max{{netns=\"{netns}\","))
                    && l.contains(&format!("local_port=\"{listener_port}\""))
            })
            .map(String::from)
    });
    // Root's listener, its owner found through /proc as user sockql.
    assert!(line.contains(&format!("pid=\"{me}\",process=\"{comm}\"")), "{line}");
    assert!(line.ends_with(" 8"), "{line}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.0.id())).unwrap();
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).unwrap().trim().to_string();
    assert_eq!(field("Uid:").split_whitespace().next(), Some(&*sockql_uid.to_string()), "{status}");
    assert_eq!(field("CapEff:"), field("CapAmb:"));
    assert_eq!(field("NoNewPrivs:"), "1");
    // psql as root on the unit's socket directory.
    let sock_dir = root.path("/run/sockql");
    let sql = format!("SELECT pid, state FROM sockets WHERE local_port = {listener_port} AND netns = {netns}");
    let o = Command::new("psql")
        .args(["-X", "-A", "-t", "-h"])
        .arg(&sock_dir)
        .args(["-p", "5439", "-U", "root", "-d", "sockql", "-c", &sql])
        .output()
        .unwrap();
    assert!(o.status.success(), "psql: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{me}|LISTEN\n"));
    drop(serve);
    let _ = std::fs::remove_file(sock_dir.join(".s.PGSQL.5439"));

    // record, one sample.
    let record_args = conf_value(&conf, "RECORD_ARGS");
    let mut args = vec!["sockql", "record"];
    args.extend(record_args.split_whitespace());
    args.extend(["--samples", "1"]);
    let o = as_unit(root, &record_unit, &args).output().unwrap();
    assert!(o.status.success(), "record: {}", String::from_utf8_lossy(&o.stderr));
    let written: Vec<PathBuf> = common::tree(&root.path("/var/lib/sockql/history/sockets"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(std::fs::metadata(&written[0]).unwrap().uid(), sockql_uid);
    let sql = format!("SELECT pid FROM history.sockets WHERE local_port = {listener_port}");
    let (rows, err, ok) =
        root.chroot(&["sockql", "--history", "/var/lib/sockql/history", "--format", "csv", "--no-header", &sql]);
    assert!(ok, "{err}");
    assert_eq!(rows, format!("{me}\n"));
}

#[test]
#[ignore = "bootstraps Debian from the network: run by .ci/run (cargo test --test it -- --ignored package::)"]
fn deb_installs_runs_verifies_and_purges_in_a_fresh_debian_root() {
    common::require_root();
    let scratch = common::Scratch::new("deb");
    let epoch = git(&["log", "-1", "--format=%ct"]);
    let deb = build_deb(&scratch.0, &epoch);

    // The files, and nothing else.
    assert_eq!(package_listing(&deb), expected_listing(), "dpkg-deb -c {}", deb.display());
    // Reproducible: the same binary and SOURCE_DATE_EPOCH give the same bytes.
    let again = build_deb(&scratch.0.join("again"), &epoch);
    assert!(std::fs::read(&deb).unwrap() == std::fs::read(&again).unwrap(), "two builds of the package differ");

    let root = DebianRoot::new();
    let before = root.files();
    std::fs::copy(&deb, root.path("/tmp/sockql.deb")).unwrap();
    let (out, err, ok) = root.chroot(&["dpkg", "-i", "/tmp/sockql.deb"]);
    assert!(ok, "dpkg -i: {out}{err}");
    std::fs::remove_file(root.path("/tmp/sockql.deb")).unwrap();

    // Installed where dpkg says, as the package lists.
    let (listed, _, ok) = root.chroot(&["dpkg-query", "-L", "sockql"]);
    assert!(ok);
    let listed: BTreeSet<String> =
        listed.lines().filter(|l| *l != "/.").map(|l| l.trim_start_matches('/').to_string()).collect();
    assert_eq!(listed, expected_listing());
    for p in &listed {
        assert!(std::fs::symlink_metadata(root.path(p)).is_ok(), "{p} is not installed");
    }
    let (conffiles, _, _) = root.chroot(&["dpkg-query", "-W", "-f=${Conffiles}", "sockql"]);
    assert_eq!(conffiles.split_whitespace().next(), Some("/etc/sockql/sockql.conf"), "{conffiles}");

    // The service user: a system account without a login, owning the
    // config's group (the config may hold S3 keys: 0640).
    let (pw, _, ok) = root.chroot(&["getent", "passwd", "sockql"]);
    assert!(ok, "no user sockql");
    let pw: Vec<&str> = pw.trim().split(':').collect();
    let uid: u32 = pw[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "{pw:?}");
    assert_eq!((pw[5], pw[6]), ("/var/lib/sockql", "/usr/sbin/nologin"));
    let (gr, _, ok) = root.chroot(&["getent", "group", "sockql"]);
    assert!(ok);
    let gid: u32 = gr.split(':').nth(2).unwrap().parse().unwrap();
    let conf = std::fs::metadata(root.path("/etc/sockql/sockql.conf")).unwrap();
    assert_eq!((conf.uid(), conf.gid(), conf.permissions().mode() & 0o777), (0, gid, 0o640));
    // sockql-serve is enabled, sockql-record is not (it writes all the time).
    let wants = root.path("/etc/systemd/system/multi-user.target.wants");
    assert_eq!(
        std::fs::read_link(wants.join("sockql-serve.service")).unwrap(),
        Path::new("/lib/systemd/system/sockql-serve.service")
    );
    assert!(std::fs::symlink_metadata(wants.join("sockql-record.service")).is_err());

    // --version, the man page and a first query, inside.
    let (v, err, ok) = root.chroot(&["sockql", "--version"]);
    assert!(ok, "{err}");
    let (host_v, _, _) = common::run(&["--version"]);
    assert_eq!(v, host_v);
    assert_eq!(parse_version(&v).1, git(&["rev-parse", "--short=12", "HEAD"]));
    let (man, _, ok) = root.chroot(&["sh", "-c", "zcat /usr/share/man/man1/sockql.1.gz"]);
    assert!(ok);
    let (host_man, _, _) = common::run(&["man"]);
    assert_eq!(man, host_man);
    // The chroot shares this network namespace: a listener made here is
    // a row there.
    let l = common::listener("127.0.0.1:0", 8);
    let port = common::port_of(&l);
    let sql = format!(
        "SELECT local_addr, local_port, state, pid FROM sockets WHERE protocol = 'tcp' AND local_port = {port}"
    );
    let (rows, err, ok) = root.chroot(&["sockql", "--format", "csv", "--no-header", &sql]);
    assert!(ok, "{err}");
    assert_eq!(rows, format!("127.0.0.1,{port},LISTEN,{}\n", std::process::id()));
    let (reports, err, ok) = root.chroot(&["sockql", "run", "--list"]);
    assert!(ok && reports.contains("close_wait"), "{reports}{err}");
    services_run_as_their_units(&root, port);

    // systemd accepts the units (the root's systemd, as a host would).
    let (out, err, ok) = root.chroot(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/sockql-serve.service",
        "/lib/systemd/system/sockql-record.service",
    ]);
    assert!(ok, "systemd-analyze verify: {out}{err}");
    assert!(!format!("{out}{err}").contains("sockql"), "systemd-analyze verify: {out}{err}");

    // Purge removes everything, and follows no link the service user left
    // in its state directory.
    let state = root.path("/var/lib/sockql/history");
    let bait = root.path("/etc/bait");
    std::fs::write(&bait, "keep").unwrap();
    std::os::unix::fs::symlink("/etc/bait", state.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc", state.join("dir-link")).unwrap();
    let (out, err, ok) = root.chroot(&["dpkg", "--purge", "sockql"]);
    assert!(ok, "dpkg --purge: {out}{err}");
    assert_eq!(std::fs::read_to_string(&bait).unwrap(), "keep");
    std::fs::remove_file(&bait).unwrap();
    assert!(!root.chroot(&["getent", "passwd", "sockql"]).2, "user sockql left");
    assert!(!root.chroot(&["getent", "group", "sockql"]).2, "group sockql left");
    let after = root.files();
    let left: Vec<&String> = after.difference(&before).filter(|p| !left_by_dpkg(p)).collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    let gone: Vec<&String> = before.difference(&after).collect();
    assert!(gone.is_empty(), "removed by install and purge: {gone:?}");
    let (status, _, _) = root.chroot(&["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "sockql"]);
    assert!(status.trim().is_empty() || status.starts_with("un"), "{status}");
}
