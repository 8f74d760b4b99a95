//! The containers table against real podman containers (podman ps and
//! podman inspect are the reference), Kubernetes attribution from CRI
//! bundles laid out as containerd, CRI-O and docker write them, hostile
//! runtime files, and containers that come and go during queries.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use super::common::{eventually, field, query, require_root, Scratch, WAIT};
use super::containers_common::{podman, unique, Ctr, Image, NamedNetns};
use sockql::collect::containers::{Containers, Roots};

fn inode(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// This test's containers as the table shows them, by name.
fn rows_by_name(prefix: &str) -> HashMap<String, Value> {
    query(&format!("SELECT * FROM containers WHERE starts_with(name, '{prefix}')"))
        .into_iter()
        .map(|r| (field(&r, "name").as_str().unwrap().to_string(), r))
        .collect()
}

#[test]
fn containers_table_matches_podman_ps_and_inspect() {
    require_root();
    let image = Image::build("ctr-ps");
    let ns = NamedNetns::add("ctr-ps-ns");
    let sleep = ["/bin/busybox", "sleep", "600"];
    let in_ns = Ctr::run(&image, "ctr-ps-named", &["--network", &ns.network()], &sleep);
    let isolated = Ctr::run(&image, "ctr-ps-none", &["--network", "none"], &sleep);
    let stopped = Ctr::run(&image, "ctr-ps-stopped", &["--network", "none"], &sleep);
    stopped.stop();
    let never = Ctr::create(&image, "ctr-ps-created", &["--network", "none"], &sleep);
    let prefix = unique("ctr-ps-");

    let ps: Vec<Value> = serde_json::from_str(
        &podman(&["ps", "-a", "--format", "json", "--filter", &format!("name={prefix}")]).unwrap(),
    )
    .unwrap();
    assert_eq!(ps.len(), 4, "podman ps lists the four: {ps:?}");
    let rows = rows_by_name(&prefix);
    assert_eq!(rows.len(), 4, "the table lists the four: {rows:?}");
    for p in &ps {
        let name = p["Names"][0].as_str().unwrap();
        let r = &rows[name];
        assert_eq!(r["id"], p["Id"], "{name}");
        assert_eq!(r["image"], p["Image"], "{name}");
        assert_eq!(r["image"], image.name.as_str());
        assert_eq!(r["state"], p["State"], "{name}");
        assert_eq!(r["runtime"], "podman");
        assert_eq!(r["source"], "/var/lib/containers/storage/overlay-containers/containers.json");
        let pid = p["Pid"].as_i64().unwrap();
        if pid == 0 {
            assert_eq!(r["pid"], Value::Null, "{name}: no process, no pid");
            assert_eq!(r["netns"], Value::Null);
        } else {
            assert_eq!(r["pid"], pid, "{name}");
        }
    }
    for (c, state) in [(&in_ns, "running"), (&isolated, "running"), (&stopped, "exited"), (&never, "created")] {
        let r = &rows[&c.name];
        assert_eq!(r["id"], c.id.as_str());
        assert_eq!(r["state"], state, "{}", c.name);
        let inspect = c.inspect();
        assert_eq!(inspect["Id"], c.id.as_str());
        assert_eq!(inspect["Name"], c.name.as_str());
        assert_eq!(inspect["ImageName"], image.name.as_str());
        let pid = inspect["State"]["Pid"].as_i64().unwrap();
        if state == "running" {
            assert_eq!(r["pid"], pid);
            assert!(r["cgroup"].as_str().unwrap().contains(&c.id), "{r}");
        } else {
            assert_eq!(pid, 0);
            assert_eq!(r["pid"], Value::Null);
            assert_eq!(r["cgroup"], Value::Null);
        }
    }
    // The namespace podman was told to use, by its name and inode.
    let named = &rows[&in_ns.name];
    assert_eq!(in_ns.inspect()["HostConfig"]["NetworkMode"], ns.network());
    assert_eq!(named["netns"], inode(&format!("/run/netns/{}", ns.name)));
    assert_eq!(named["netns_name"], ns.name.as_str());
    // --network none: a namespace of its own, the one its init is in.
    let own = &rows[&isolated.name];
    let pid = isolated.inspect()["State"]["Pid"].as_i64().unwrap();
    assert_eq!(own["netns"], inode(&format!("/proc/{pid}/ns/net")));
    assert_ne!(own["netns"], inode("/proc/self/ns/net"));
    assert_eq!(own["netns_name"], Value::Null);
}

/// A process in a cgroup v2 directory the test makes, as a container's
/// init is in its scope; killed and the directory removed on drop.
struct ScopedProcess {
    child: Child,
    dirs: Vec<PathBuf>,
}

fn cgroup2_root() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let point = info
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2").then(|| left.split(' ').nth(4).unwrap().to_string())
        })
        .expect("a cgroup2 mount");
    PathBuf::from(point)
}

impl ScopedProcess {
    /// `unshare -n sleep` (a network namespace of its own) moved into
    /// `<cgroup2>/sockql-<pid>-<tag>/<scope>`.
    fn start(tag: &str, scope: &str) -> ScopedProcess {
        let top = cgroup2_root().join(unique(tag));
        let leaf = top.join(scope);
        std::fs::create_dir_all(&leaf).unwrap();
        let child = Command::new("unshare").args(["-n", "sleep", "60"]).stdin(Stdio::null()).spawn().unwrap();
        let p = ScopedProcess { child, dirs: vec![leaf.clone(), top] };
        std::fs::write(leaf.join("cgroup.procs"), p.child.id().to_string()).unwrap();
        let me = inode("/proc/self/ns/net");
        eventually(WAIT, || (inode(&format!("/proc/{}/ns/net", p.child.id())) != me).then_some(()));
        p
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for ScopedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn hex_id(n: u8) -> String {
    format!("{:x}{}", n, "0123456789abcdef".repeat(4)).chars().take(64).collect()
}

#[test]
fn kubernetes_pods_from_cri_bundles_containerd_crio_and_docker() {
    require_root();
    let root = Scratch::new("ctr-k8s");
    let roots = Roots::under(&root.0);
    let (app, sandbox, crio, docker) = (hex_id(1), hex_id(2), hex_id(3), hex_id(4));
    // containerd's CRI plugin: the app container, running in its scope.
    let init = ScopedProcess::start("ctr-k8s", &format!("cri-containerd-{app}.scope"));
    let task = roots.containerd_tasks.join("k8s.io");
    write_json(
        &task.join(&app).join("config.json"),
        &json!({"ociVersion": "1.1.0", "process": {"args": ["/app"]}, "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "web",
            "io.kubernetes.cri.image-name": "registry.example/web:1.2",
            "io.kubernetes.cri.sandbox-id": sandbox,
            "io.kubernetes.cri.sandbox-name": "web-7d9f8-abcde",
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.sandbox-uid": "0b7c1a5e-4c1b-4c55-9a43-2f7d3c1e9a10"
        }}),
    );
    std::fs::write(task.join(&app).join("init.pid"), init.pid().to_string()).unwrap();
    // Its sandbox, whose init.pid names a process outside its cgroup (a
    // stale or reused pid: ours): not believed.
    write_json(
        &task.join(&sandbox).join("config.json"),
        &json!({"annotations": {
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-name": "web-7d9f8-abcde",
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.sandbox-uid": "0b7c1a5e-4c1b-4c55-9a43-2f7d3c1e9a10"
        }}),
    );
    std::fs::write(task.join(&sandbox).join("init.pid"), std::process::id().to_string()).unwrap();
    // CRI-O: the kubelet's annotations in the run root's bundle, and a
    // runc state whose process is gone.
    write_json(
        &roots.storage_run.join(format!("overlay-containers/{crio}/userdata/config.json")),
        &json!({"annotations": {
            "io.kubernetes.cri-o.ContainerType": "container",
            "io.kubernetes.cri-o.ImageName": "quay.example/db:15",
            "io.kubernetes.container.name": "db",
            "io.kubernetes.pod.name": "db-0",
            "io.kubernetes.pod.namespace": "data",
            "io.kubernetes.pod.uid": "9d1f0c2a-1111-4222-8333-444455556666"
        }}),
    );
    write_json(&roots.runc.join(&crio).join("state.json"), &json!({"id": crio, "init_process_pid": i32::MAX - 1}));
    // docker through cri-dockerd: labels in config.v2.json, exited.
    write_json(
        &roots.docker.join(format!("containers/{docker}/config.v2.json")),
        &json!({"ID": docker, "Name": "/k8s_cache_cache-1_ops_5e5e_0",
            "Config": {"Image": "redis:7", "Labels": {
                "io.kubernetes.container.name": "cache",
                "io.kubernetes.pod.name": "cache-1",
                "io.kubernetes.pod.namespace": "ops",
                "io.kubernetes.pod.uid": "5e5e0000-aaaa-4bbb-8ccc-dddd0000eeee",
                "io.kubernetes.docker.type": "container"}},
            "State": {"Running": false, "Pid": 0, "StartedAt": "2026-01-01T00:00:00Z", "FinishedAt": "2026-01-01T00:01:00Z"}}),
    );

    let all = Containers::read_with(&roots);
    let get =
        |id: &str| all.all().iter().find(|c| c.id == id).unwrap_or_else(|| panic!("{id} in {:?}", all.all())).clone();
    let a = get(&app);
    let netns = inode(&format!("/proc/{}/ns/net", init.pid()));
    assert_eq!(a.name.as_deref(), Some("web"));
    assert_eq!(a.image.as_deref(), Some("registry.example/web:1.2"));
    assert_eq!(a.runtime, "containerd");
    assert_eq!(a.state.as_deref(), Some("running"));
    assert_eq!(a.pid, Some(init.pid()));
    assert_eq!(a.netns, Some(netns));
    assert_eq!(a.cgroup, Some(format!("/{}/cri-containerd-{app}.scope", unique("ctr-k8s"))));
    assert_eq!(a.pod_name.as_deref(), Some("web-7d9f8-abcde"));
    assert_eq!(a.pod_namespace.as_deref(), Some("shop"));
    assert_eq!(a.pod_uid.as_deref(), Some("0b7c1a5e-4c1b-4c55-9a43-2f7d3c1e9a10"));
    assert_eq!(a.k8s_container_name.as_deref(), Some("web"));
    assert_eq!(PathBuf::from(&a.source), task.join(&app).join("config.json"));
    assert_eq!(all.by_pid(init.pid()).map(|c| c.id.as_str()), Some(app.as_str()));
    assert_eq!(all.by_netns(netns).map(|c| c.id.as_str()), Some(app.as_str()));
    assert_eq!(all.find("web").map(|c| c.id.as_str()), Some(app.as_str()));
    assert!(all.by_pid(std::process::id() as i32).is_none(), "the test process is on the host");

    let s = get(&sandbox);
    assert_eq!(s.name.as_deref(), Some("web-7d9f8-abcde"), "a sandbox is named by its pod");
    assert_eq!(s.k8s_container_name, None);
    assert_eq!((s.pid, s.netns, s.state.as_deref()), (None, None, Some("stopped")), "a pid outside its cgroup");
    assert_eq!(s.pod_uid, a.pod_uid);

    let c = get(&crio);
    assert_eq!(c.runtime, "cri-o");
    assert_eq!(c.name.as_deref(), Some("db"));
    assert_eq!(c.image.as_deref(), Some("quay.example/db:15"));
    assert_eq!(c.pod_name.as_deref(), Some("db-0"));
    assert_eq!(c.pod_namespace.as_deref(), Some("data"));
    assert_eq!(c.pod_uid.as_deref(), Some("9d1f0c2a-1111-4222-8333-444455556666"));
    assert_eq!(c.k8s_container_name.as_deref(), Some("db"));
    assert_eq!((c.pid, c.state.as_deref()), (None, Some("exited")));

    let d = get(&docker);
    assert_eq!(d.runtime, "docker");
    assert_eq!(d.name.as_deref(), Some("k8s_cache_cache-1_ops_5e5e_0"), "docker's name without its /");
    assert_eq!(d.image.as_deref(), Some("redis:7"));
    assert_eq!(d.pod_name.as_deref(), Some("cache-1"));
    assert_eq!(d.pod_namespace.as_deref(), Some("ops"));
    assert_eq!(d.pod_uid.as_deref(), Some("5e5e0000-aaaa-4bbb-8ccc-dddd0000eeee"));
    assert_eq!(d.k8s_container_name.as_deref(), Some("cache"));
    assert_eq!((d.pid, d.state.as_deref()), (None, Some("exited")));
    assert_eq!(PathBuf::from(&d.source), roots.docker.join(format!("containers/{docker}/config.v2.json")));
}

/// A containerd namespace directory of this test under the host's real
/// task root (containerd is not installed here: the parents are made if
/// missing, and removed afterwards if empty), removed on drop.
struct HostTasks {
    ns: PathBuf,
    made: Vec<PathBuf>,
}

impl HostTasks {
    fn new(tag: &str) -> HostTasks {
        use std::os::unix::fs::DirBuilderExt;
        let tasks = Roots::host().containerd_tasks;
        let mut made = Vec::new();
        for dir in [tasks.parent().unwrap().to_path_buf(), tasks.clone()] {
            if std::fs::DirBuilder::new().mode(0o711).create(&dir).is_ok() {
                made.push(dir);
            }
        }
        made.reverse();
        let ns = tasks.join(unique(tag));
        std::fs::create_dir_all(&ns).unwrap();
        HostTasks { ns, made }
    }
}

impl Drop for HostTasks {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.ns);
        for d in &self.made {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn hostile_runtime_files_are_bounded_escaped_and_never_followed() {
    require_root();
    let host = HostTasks::new("ctr-evil");
    let secrets = Scratch::new("ctr-evil-secret");
    let secret = format!("SECRET-{}", std::process::id());
    let (big, evil, long, shadow, link, dirlink, fifo) =
        (hex_id(10), hex_id(11), hex_id(12), hex_id(13), hex_id(14), hex_id(15), hex_id(6));
    let bundle = |id: &str| {
        let d = host.ns.join(id);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    // 50 MB of valid JSON: never loaded.
    let pad = "x".repeat(50 << 20);
    let huge = json!({"annotations": {"io.kubernetes.cri.container-name": format!("BIG-{secret}")}, "pad": pad});
    std::fs::write(bundle(&big).join("config.json"), serde_json::to_vec(&huge).unwrap()).unwrap();
    drop((pad, huge));
    // Terminal escapes and a newline in a name: kept as text, shown escaped.
    let evil_name = "evil\u{1b}]0;owned\u{7}\u{1b}[2J\nline2";
    write_json(
        &bundle(&evil).join("config.json"),
        &json!({"annotations": {"io.kubernetes.cri.container-name": evil_name, "io.kubernetes.cri.sandbox-name": "p"}}),
    );
    // A 100 KB name: cut to 4096 bytes.
    write_json(
        &bundle(&long).join("config.json"),
        &json!({"annotations": {"io.kubernetes.cri.container-name": "n".repeat(100_000)}}),
    );
    // config.json a symlink to /etc/shadow, to a root-only JSON file
    // elsewhere, and a bundle directory that is a symlink to a directory
    // holding one: none is followed.
    std::os::unix::fs::symlink("/etc/shadow", bundle(&shadow).join("config.json")).unwrap();
    let outside = secrets.0.join("config.json");
    write_json(&outside, &json!({"annotations": {"io.kubernetes.cri.sandbox-name": secret}}));
    std::os::unix::fs::symlink(&outside, bundle(&link).join("config.json")).unwrap();
    std::os::unix::fs::symlink(&secrets.0, host.ns.join(&dirlink)).unwrap();
    // A FIFO where config.json should be: the scan must not block on it.
    nix::unistd::mkfifo(&bundle(&fifo).join("config.json"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    let sql = format!(
        "SELECT id, name, pod_name, length(name) AS len FROM containers WHERE starts_with(source, '{}') ORDER BY id",
        host.ns.display()
    );
    // From tmpfs, so peaks differ by what the scans hold, not by how many
    // of the binary's code pages the page cache let them map (InMemoryBin).
    let sockql = super::common::InMemoryBin::new("ctr-evil");
    // The fullest of three runs, as one now and then maps a few MiB less.
    let baseline = (0..3).map(|_| super::common::peak_rss(&[&sockql.path, "SELECT 1"]).peak_kib).max().unwrap();
    let table = super::common::peak_rss(&[&sockql.path, &sql]);
    assert!(table.ok, "{}", table.err);
    let json = super::common::peak_rss(&[&sockql.path, "--format", "ndjson", &sql]);
    assert!(json.ok, "{}", json.err);
    eprintln!(
        "containers hostile scan: peak {} KiB (table output {} KiB), SELECT 1: {} KiB",
        json.peak_kib, table.peak_kib, baseline
    );
    let rows = super::common::parse_ndjson(&json.out);
    let by_id: HashMap<&str, &Value> = rows.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    // The symlinked bundle directory is not a container of ours.
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(!by_id.contains_key(dirlink.as_str()));

    // What the test made secret never shows, nor any line of /etc/shadow.
    let shadow_text = std::fs::read_to_string("/etc/shadow").unwrap();
    for out in [&table.out, &json.out] {
        assert!(!out.contains(&secret), "{secret} in the output");
        for line in shadow_text.lines().filter(|l| l.len() > 8) {
            assert!(!out.contains(line), "a line of /etc/shadow in the output");
        }
    }
    // Files not read are no name but the id (a containerd task's only
    // handle), and no pod.
    for id in [&big, &shadow, &link, &fifo] {
        assert_eq!(by_id[id.as_str()]["name"], id.as_str(), "{id}");
        assert_eq!(by_id[id.as_str()]["pod_name"], Value::Null, "{id}");
    }
    // The hostile name is the text it was (ndjson escapes it as JSON),
    // and the table shows no control character raw.
    assert_eq!(by_id[evil.as_str()]["name"], evil_name);
    assert!(!table.out.contains('\u{1b}') && !table.out.contains('\u{7}'), "raw escapes in {}", table.out);
    assert_eq!(by_id[long.as_str()]["len"], 4096);
    // The 50 MB file was not loaded (loaded and parsed it would add well
    // over 50 MiB): the scan's peak is within 20 MiB of a query that reads
    // nothing (measured from tmpfs: +5 to +10 MiB, the containers table's
    // code and its reads of every process's cgroup and runtime files).
    assert!(json.peak_kib < baseline + (20 << 10), "peak {} KiB vs {} KiB for SELECT 1", json.peak_kib, baseline);
}

#[test]
fn containers_that_come_and_go_are_named_right_or_not_at_all() {
    require_root();
    let image = Image::build("ctr-race");
    let prefix = unique("ctr-race-");
    let started: std::sync::Mutex<HashMap<String, String>> = Default::default();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut seen = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..8 {
                let c = Ctr::run(
                    &image,
                    &format!("ctr-race-{}", i % 3),
                    &["--network", "none"],
                    &["/bin/busybox", "sleep", "600"],
                );
                started.lock().unwrap().insert(c.id.clone(), c.name.clone());
                drop(c);
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut checked = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let rows = query(&format!(
                "SELECT id, name, pid, netns, state FROM containers WHERE starts_with(name, '{prefix}') OR name IS NULL"
            ));
            checked.extend(rows);
        }
        let started = started.lock().unwrap();
        for r in &checked {
            let id = r["id"].as_str().unwrap();
            if let Some(name) = r["name"].as_str() {
                if let Some(expected) = started.get(id) {
                    assert_eq!(name, expected, "{id} named another's name");
                    seen += 1;
                } else {
                    // Named ours but not started by us: impossible.
                    assert!(!name.starts_with(&prefix), "{r} is not a container this test ran");
                }
            }
        }
    });
    eprintln!("containers race: {seen} named rows of the test's containers checked");
    assert!(seen > 0, "the queries saw some of the containers");
    let left = podman(&["ps", "-a", "--format", "json", "--filter", &format!("name={prefix}")]).unwrap();
    assert_eq!(serde_json::from_str::<Vec<Value>>(&left).unwrap().len(), 0, "every container removed");
}
