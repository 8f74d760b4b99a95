//! The container columns, `--container` and the per-container reports,
//! against real podman containers (runc, an image `podman import`ed from
//! busybox-static and a static helper compiled here; no registry, no
//! network): a server in one container, clients in a second, a CLOSE-WAIT
//! leak in a third, all traffic on podman's bridge inside this host.
//! Every answer is checked against `podman ps`/`podman inspect` and
//! `nsenter -t PID -n ss`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{eventually, have, my_pid, parse_ndjson, query_with, require_root, run, Scratch};

/// The per-container reports, checked here against real containers (a
/// namespace without containers has nothing for them; reports.rs skips
/// them).
pub const CONTAINER_REPORTS: &[&str] = &[
    "container_close_wait",
    "container_health",
    "container_retransmits",
    "container_talkers",
    "metric_container_close_wait",
];

/// One running container, as podman describes it.
#[derive(Debug, Clone)]
struct Ctr {
    name: String,
    id: String,
    pid: i64,
    netns: u64,
    ip: String,
}

/// A test's image and containers, removed when dropped.
struct Pod {
    tag: String,
    image: String,
    names: Vec<String>,
    _dir: Scratch,
}

fn podman(args: &[&str]) -> String {
    let o = Command::new("podman").arg("--runtime").arg("runc").args(args).output().expect("run podman");
    assert!(o.status.success(), "podman {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Pod {
    /// An image holding busybox-static and tcpkit (tests/it/containers/
    /// tcpkit.c, compiled static), named for this test and process.
    fn new(test: &str) -> Option<Pod> {
        require_root();
        if !have("podman") || !have("runc") || !Path::new("/bin/busybox").exists() || !have("gcc") {
            eprintln!("SKIP {test}: needs podman, runc, busybox-static and gcc (.ci/run installs them)");
            return None;
        }
        let tag = format!("ctruse-{}-{test}", std::process::id());
        let dir = Scratch::new(&tag);
        let root = dir.0.join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/containers/tcpkit.c");
        let cc =
            Command::new("gcc").args(["-static", "-O1", "-o"]).arg(root.join("bin/tcpkit")).arg(&src).output().unwrap();
        assert!(cc.status.success(), "gcc: {}", String::from_utf8_lossy(&cc.stderr));
        let tar = dir.0.join("root.tar");
        let t = Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
        assert!(t.success());
        let image = format!("localhost/sockql-{tag}:t");
        podman(&["import", tar.to_str().unwrap(), &image]);
        Some(Pod { tag, image, names: Vec::new(), _dir: dir })
    }

    /// Start container `<tag>-<role>` running `cmd` through sh; its
    /// description once it runs.
    fn start(&mut self, role: &str, cmd: &str) -> Ctr {
        let name = format!("{}-{role}", self.tag);
        self.names.push(name.clone());
        podman(&[
            "run",
            "-d",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "--name",
            &name,
            &self.image,
            "/bin/sh",
            "-c",
            cmd,
        ]);
        let f = podman(&["inspect", "--format", "{{.Id}} {{.State.Pid}} {{.NetworkSettings.IPAddress}}", &name]);
        let f: Vec<&str> = f.split_whitespace().collect();
        let pid: i64 = f[1].parse().unwrap();
        let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        let netns = link.to_str().unwrap().trim_start_matches("net:[").trim_end_matches(']').parse().unwrap();
        Ctr { name, id: f[0].to_string(), pid, netns, ip: f.get(2).unwrap_or(&"").to_string() }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("podman").args(["rm", "-f", "-t", "0", n]).output();
        }
        let _ = Command::new("podman").args(["rmi", "-f", &self.image]).output();
    }
}

/// The three containers of a test: a server, its clients, a leak.
struct Three {
    server: Ctr,
    client: Ctr,
    leak: Ctr,
}

const ESTAB: i64 = 3;
const LEAKED: i64 = 4;

fn three(pod: &mut Pod) -> Three {
    let server = pod.start("server", "exec /bin/tcpkit serve 9000");
    let leak = pod.start("leak", "exec /bin/tcpkit serve 9001");
    let client = pod.start(
        "client",
        &format!("/bin/tcpkit hold {} 9000 {ESTAB} & /bin/tcpkit churn {} 9001 {LEAKED} & wait", server.ip, leak.ip),
    );
    // Settled: the leak holds every closed connection in CLOSE-WAIT, the
    // server every held one (as ss inside each says).
    let ss = |c: &Ctr, state: &str| {
        let o = Command::new("nsenter")
            .args(["-t", &c.pid.to_string(), "-n", "ss", "-Htan", "state", state])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count() as i64
    };
    eventually(Duration::from_secs(10), || {
        (ss(&leak, "close-wait") == LEAKED && ss(&server, "established") == ESTAB).then_some(())
    });
    Three { server, client, leak }
}

/// (container, container_id, state, count) of every TCP socket of the
/// three, read across namespaces.
fn states_by_container(t: &Three) -> BTreeSet<(Option<String>, Option<String>, String, i64)> {
    let sql = format!(
        "SELECT container, container_id, state, count(*) AS n FROM sockets \
         WHERE protocol = 'tcp' AND netns IN ({}, {}, {}) GROUP BY 1, 2, 3",
        t.server.netns, t.client.netns, t.leak.netns
    );
    query_with(&["--all-netns"], &sql)
        .into_iter()
        .map(|r| {
            (
                r["container"].as_str().map(str::to_string),
                r["container_id"].as_str().map(str::to_string),
                r["state"].as_str().unwrap().into(),
                r["n"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn container_columns_name_what_podman_names() {
    let Some(mut pod) = Pod::new("cols") else { return };
    let t = three(&mut pod);
    // podman's own view: names and ids of the running containers.
    let ps = podman(&["ps", "--no-trunc", "--filter", &format!("name={}", pod.tag), "--format", "{{.Names}} {{.ID}}"]);
    let ps: BTreeSet<(String, String)> = ps
        .lines()
        .map(|l| {
            let (n, i) = l.split_once(' ').unwrap();
            (n.to_string(), i.to_string())
        })
        .collect();
    let ours: BTreeSet<(String, String)> =
        [&t.server, &t.client, &t.leak].iter().map(|c| (c.name.clone(), c.id.clone())).collect();
    assert_eq!(ps, ours, "podman ps");

    let who = |c: &Ctr| (Some(c.name.clone()), Some(c.id.clone()));
    let expect: BTreeSet<(Option<String>, Option<String>, String, i64)> = [
        (who(&t.server), "LISTEN", 1),
        (who(&t.server), "ESTAB", ESTAB),
        (who(&t.client), "ESTAB", ESTAB),
        (who(&t.client), "FIN-WAIT-2", LEAKED),
        (who(&t.leak), "LISTEN", 1),
        (who(&t.leak), "CLOSE-WAIT", LEAKED),
    ]
    .into_iter()
    .map(|((n, i), s, k)| (n, i, s.to_string(), k))
    .collect();
    assert_eq!(states_by_container(&t), expect);

    // processes: each container's init by its pid, the test itself NULL.
    let sql = format!(
        "SELECT pid, container, container_id FROM processes WHERE pid IN ({}, {}, {}, {}) ORDER BY pid",
        t.server.pid,
        t.client.pid,
        t.leak.pid,
        my_pid()
    );
    let mut want: Vec<Value> = [&t.server, &t.client, &t.leak]
        .iter()
        .map(|c| json!({"pid": c.pid, "container": c.name, "container_id": c.id}))
        .collect();
    want.push(json!({"pid": my_pid(), "container": null, "container_id": null}));
    want.sort_by_key(|r| r["pid"].as_i64());
    assert_eq!(query_with(&[], &sql), want);

    // socket_owners: the leak's process holds its listener and every
    // connection it accepted, and is the leak container's.
    let sql = format!(
        "SELECT container, container_id, count(*) AS fds FROM socket_owners WHERE pid = {} GROUP BY 1, 2",
        t.leak.pid
    );
    assert_eq!(
        query_with(&[], &sql),
        vec![json!({"container": t.leak.name, "container_id": t.leak.id, "fds": 1 + LEAKED})]
    );

    // netns: each container's namespace by name; sockql's own is NULL.
    let sql = format!(
        "SELECT netns, container FROM netns WHERE netns IN ({}, {}, {}) OR current ORDER BY netns",
        t.server.netns, t.client.netns, t.leak.netns
    );
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let own: u64 = own.to_str().unwrap().trim_start_matches("net:[").trim_end_matches(']').parse().unwrap();
    let mut want: Vec<Value> = [&t.server, &t.client, &t.leak]
        .iter()
        .map(|c| json!({"netns": c.netns, "container": c.name}))
        .chain([json!({"netns": own, "container": null})])
        .collect();
    want.sort_by_key(|r| r["netns"].as_u64());
    assert_eq!(query_with(&[], &sql), want);

    // Host rows are NULL: nothing of sockql's own namespace is a container's.
    let host =
        query_with(&[], "SELECT count(*) AS n FROM sockets WHERE container_id IS NOT NULL OR container IS NOT NULL");
    assert_eq!(host, vec![json!({"n": 0})]);

    // unix_sockets of a container's namespace are named too (a host
    // process's unix sockets are the host's).
    let unix = query_with(&["--all-netns"], "SELECT count(*) AS n FROM unix_sockets WHERE container IS NOT NULL AND netns NOT IN (SELECT netns FROM netns WHERE container IS NOT NULL)");
    assert_eq!(unix, vec![json!({"n": 0})]);

    // The reports: CLOSE-WAIT per container counts exactly the leak.
    let (out, err, ok) = run(&["--all-netns", "--format", "ndjson", "run", "container_close_wait"]);
    assert!(ok, "{err}");
    let ours: Vec<Value> = parse_ndjson(&out)
        .into_iter()
        .filter(|r| r["container"].as_str().is_some_and(|n| n.starts_with(&pod.tag)))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        (&ours[0]["container"], &ours[0]["pid"], &ours[0]["close_wait"]),
        (&json!(t.leak.name), &json!(t.leak.pid), &json!(LEAKED))
    );
    let (out, err, ok) = run(&["--all-netns", "--format", "ndjson", "run", "metric_container_close_wait"]);
    assert!(ok, "{err}");
    let metric: Vec<Value> = parse_ndjson(&out)
        .into_iter()
        .filter(|r| r["container"].as_str().is_some_and(|n| n.starts_with(&pod.tag)))
        .collect();
    assert_eq!(metric, vec![json!({"container": t.leak.name, "sockets": LEAKED})]);
    // Top talkers: connections and bytes per container equal what ss -ti
    // inside each counts (bytes_sent, bytes_received); a container that
    // moved nothing has no row.
    let talkers = || {
        let (out, err, ok) = run(&["--all-netns", "--format", "ndjson", "run", "container_talkers"]);
        assert!(ok, "{err}");
        let mut rows: Vec<(Value, Value, Value, Value)> = parse_ndjson(&out)
            .into_iter()
            .filter(|r| r["container"].as_str().is_some_and(|n| n.starts_with(&pod.tag)))
            .map(|r| {
                (r["container"].clone(), r["connections"].clone(), r["bytes_sent"].clone(), r["bytes_received"].clone())
            })
            .collect();
        rows.sort_by_key(|r| r.0.as_str().map(str::to_string));
        rows
    };
    let by_ss = || {
        let mut rows = Vec::new();
        for c in [&t.client, &t.leak, &t.server] {
            let o = Command::new("nsenter").args(["-t", &c.pid.to_string(), "-n", "ss", "-Htin"]).output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let (mut conns, mut sent, mut received) = (0i64, 0i64, 0i64);
            let count = |line: &str, key: &str| {
                line.split_whitespace().find_map(|w| w.strip_prefix(key)).map_or(0, |v| v.parse::<i64>().unwrap())
            };
            // A socket's line, then its info line (indented).
            let mut counted = false;
            for line in text.lines() {
                if !line.starts_with(char::is_whitespace) {
                    let state = line.split_whitespace().next().unwrap_or("");
                    counted = !["LISTEN", "TIME-WAIT", "SYN-RECV"].contains(&state);
                    conns += i64::from(counted);
                } else if counted {
                    sent += count(line, "bytes_sent:");
                    received += count(line, "bytes_received:");
                }
            }
            if sent + received > 0 {
                rows.push((json!(c.name), json!(conns), json!(sent), json!(received)));
            }
        }
        rows
    };
    eventually(Duration::from_secs(5), || {
        let (got, want) = (talkers(), by_ss());
        (got == want).then_some(())
    });
    let got = talkers();
    assert!(got.iter().any(|r| r.0 == json!(t.client.name) && r.2 == json!(5 * ESTAB)), "{got:?}");
    let (out, err, ok) =
        run(&["--all-netns", "--format", "ndjson", "run", "container_health", "--param", "close_wait_min=4"]);
    assert!(ok, "{err}");
    let findings: Vec<Value> = parse_ndjson(&out)
        .into_iter()
        .filter(|r| r["container"].as_str().is_some_and(|n| n.starts_with(&pod.tag)))
        .collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(
        (&findings[0]["container"], &findings[0]["rule"], &findings[0]["value"]),
        (&json!(t.leak.name), &json!("close-wait-leak"), &json!(LEAKED))
    );
}

/// `ss -Htan` lines as (state, local, peer) with ss's `*` port as 0.
fn ss_rows(text: &str) -> BTreeSet<(String, String, String)> {
    let norm = |s: &str| s.strip_suffix(":*").map_or(s.to_string(), |a| format!("{a}:0"));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), norm(f[3]), norm(f[4]))
        })
        .collect()
}

#[test]
fn container_flag_reads_what_nsenter_ss_reads() {
    let Some(mut pod) = Pod::new("flag") else { return };
    let t = three(&mut pod);
    for c in [&t.server, &t.client, &t.leak] {
        let ss = Command::new("nsenter").args(["-t", &c.pid.to_string(), "-n", "ss", "-Htan"]).output().unwrap();
        let ss = ss_rows(&String::from_utf8_lossy(&ss.stdout));
        assert!(!ss.is_empty());
        for by in [c.name.as_str(), &c.id[..12]] {
            let rows = query_with(
                &["--container", by],
                "SELECT state, local_addr, local_port, remote_addr, remote_port, container, container_id, netns FROM sockets WHERE protocol = 'tcp'",
            );
            let got: BTreeSet<(String, String, String)> = rows
                .iter()
                .map(|r| {
                    (
                        r["state"].as_str().unwrap().to_string(),
                        format!("{}:{}", r["local_addr"].as_str().unwrap(), r["local_port"]),
                        format!("{}:{}", r["remote_addr"].as_str().unwrap(), r["remote_port"]),
                    )
                })
                .collect();
            assert_eq!(got, ss, "--container {by}");
            assert!(
                rows.iter().all(|r| r["container"] == json!(c.name)
                    && r["container_id"] == json!(c.id)
                    && r["netns"] == json!(c.netns)),
                "{rows:?}"
            );
        }
    }
    // A typo: one line, exit non-zero, the close name offered.
    let typo = format!("{}-servr", pod.tag);
    let (out, err, ok) = run(&["--container", &typo, "SELECT 1"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("no running container is named \"{typo}\"")) && err.contains(&t.server.name),
        "{err}"
    );
    // --container with --all-netns is refused.
    let (_, err, ok) = run(&["--container", &t.server.name, "--all-netns", "SELECT 1"]);
    assert!(!ok && err.contains("--all-netns"), "{err}");
}

#[test]
fn a_container_stopped_mid_query_is_never_named_as_another() {
    let Some(mut pod) = Pod::new("stop") else { return };
    let t = three(&mut pod);
    let doomed = pod.start("doomed", "exec /bin/tcpkit serve 9002");
    let known: Vec<&Ctr> = vec![&t.server, &t.client, &t.leak, &doomed];
    let sql = "SELECT DISTINCT netns, container, container_id FROM sockets";
    // Queries run while the container is killed and removed; every row's
    // (netns, name, id) must be one container's own, or the name NULL.
    let killer = {
        let name = doomed.name.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            let _ = Command::new("podman").args(["rm", "-f", "-t", "0", &name]).output();
        })
    };
    let mut seen_gone = false;
    for _ in 0..40 {
        let rows = query_with(&["--all-netns"], sql);
        for r in &rows {
            let Some(id) = r["container_id"].as_str() else {
                assert_eq!(r["container"], Value::Null, "a name without an id: {r}");
                continue;
            };
            if let Some(c) = known.iter().find(|c| c.id == id) {
                assert_eq!(r["netns"], json!(c.netns), "{id} named for another namespace: {r}");
                assert!(r["container"] == json!(c.name) || r["container"].is_null(), "{r}");
            }
            // A living container's namespace is named for it alone (the
            // removed one's inode may be reused by then).
            if let Some(c) = known[..3].iter().find(|c| r["netns"] == json!(c.netns)) {
                assert_eq!(id, c.id, "{r}");
            }
        }
        if killer.is_finished() && !rows.iter().any(|r| r["container_id"] == json!(doomed.id)) {
            seen_gone = true;
            break;
        }
    }
    killer.join().unwrap();
    assert!(seen_gone, "the stopped container's rows stayed");
    // The others are still named right after it went.
    assert_eq!(states_by_container(&t).len(), 6);
}

/// `sockql serve --all-netns --metrics metric_container_close_wait`
/// started on a free loopback port of the host's namespace, and that port.
fn serve_close_wait(extra: &[&str]) -> (crate::events::Reaped, u16) {
    use std::io::BufRead;
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--all-netns", "--metrics", "metric_container_close_wait"];
    args.extend_from_slice(extra);
    let mut server = crate::events::Reaped(
        Command::new(crate::common::bin())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(server.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    (server, crate::serve::metrics_port(&line))
}

/// The body of GET /metrics on loopback `port` (as serve.rs asks).
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

#[test]
fn serve_scrape_labels_close_wait_by_container_within_the_series_cap() {
    let Some(mut pod) = Pod::new("serve") else { return };
    let t = three(&mut pod);
    // A second leak, with its own count: the clients' container churns 2
    // connections to it (each closed at once, held in CLOSE-WAIT there).
    const LEAKED2: i64 = 2;
    let leak2 = pod.start("leak2", "exec /bin/tcpkit serve 9002");
    // Detached: every tcpkit mode sleeps until killed.
    podman(&["exec", "-d", &t.client.name, "/bin/tcpkit", "churn", &leak2.ip, "9002", &LEAKED2.to_string()]);
    let ss_close_wait = |c: &Ctr| {
        let o = Command::new("nsenter")
            .args(["-t", &c.pid.to_string(), "-n", "ss", "-Htan", "state", "close-wait"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count() as i64
    };
    eventually(Duration::from_secs(10), || (ss_close_wait(&leak2) == LEAKED2).then_some(()));

    // Every series of the family, and its line for each of ours.
    let family = "sockql_container_close_wait_sockets";
    let series = |body: &str| -> Vec<String> {
        body.lines().filter(|l| l.starts_with(&format!("{family}{{"))).map(str::to_string).collect()
    };
    let line_of = |c: &Ctr, n: i64| format!("{family}{{container=\"{}\"}} {n}", c.name);

    let (_server, port) = serve_close_wait(&[]);
    let body = scrape(port);
    let all = series(&body);
    assert!(all.contains(&line_of(&t.leak, ss_close_wait(&t.leak))), "{body}");
    assert!(all.contains(&line_of(&t.leak, LEAKED)), "{body}");
    assert!(all.contains(&line_of(&leak2, LEAKED2)), "{body}");
    // The server's and the clients' containers hold no CLOSE-WAIT: no series.
    for quiet in [&t.server, &t.client] {
        assert!(!all.iter().any(|l| l.contains(&format!("\"{}\"", quiet.name))), "{body}");
    }
    assert!(body.contains("sockql_query_up{query=\"metric_container_close_wait\"} 1"), "{body}");
    let (ok, said) = promtool(&body);
    assert!(ok, "promtool: {said}\n{body}");

    // --max-series 1: one series of the family whatever the number of
    // containers, the others counted in sockql_series_dropped.
    let (_capped, port) = serve_close_wait(&["--max-series", "1"]);
    let body = scrape(port);
    let kept = series(&body);
    assert_eq!(kept.len(), 1, "{body}");
    let dropped: i64 = body
        .lines()
        .find_map(|l| l.strip_prefix("sockql_series_dropped{query=\"metric_container_close_wait\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("series dropped counted: {body}"));
    // Ours alone are two containers: at least one left out.
    assert!(dropped >= 1, "{body}");
    let (ok, said) = promtool(&body);
    assert!(ok, "promtool: {said}\n{body}");
}

/// `promtool check metrics` of an exposition: (passed, what it said).
fn promtool(body: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The pids `text` (strace's log) names as `"/proc/<pid><tail>`.
fn proc_paths(text: &str, tail: &str) -> BTreeSet<i64> {
    text.split("\"/proc/")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..].starts_with(tail).then(|| digits.parse().ok()).flatten()
        })
        .collect()
}

#[test]
fn container_flag_enters_its_namespace_without_listing_every_one() {
    let Some(mut pod) = Pod::new("enter") else { return };
    if !have("strace") {
        eprintln!("SKIP: needs strace (.ci/run installs it)");
        return;
    }
    let c = pod.start("one", "exec /bin/tcpkit serve 9000");
    // Other processes in other namespaces, which the old way (every
    // namespace listed, every process's cgroup read) touched too.
    let other = pod.start("other", "exec /bin/tcpkit serve 9001");
    let dir = Scratch::new(&format!("ctruse-{}-enter-trace", my_pid()));
    let log = dir.0.join("trace");
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat,openat2,open,stat,lstat,newfstatat,statx,readlink,readlinkat", "-o"])
        .arg(&log)
        .arg(crate::common::bin())
        .args([
            "--container",
            &c.name,
            "--format",
            "ndjson",
            "SELECT count(*) AS n, min(container) AS name, min(netns) AS netns FROM sockets WHERE protocol = 'tcp' AND state = 'LISTEN'",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The answer is the container's: its one listener, named for it.
    assert_eq!(
        parse_ndjson(&String::from_utf8_lossy(&o.stdout)),
        vec![json!({"n": 1, "name": c.name, "netns": c.netns})]
    );
    let text = std::fs::read_to_string(&log).unwrap();
    // The only namespaces looked up by path: the container's init's, and
    // pid 1's (the host's, which is never a container's).
    let touched = proc_paths(&text, "/ns/net\"");
    assert!(touched.iter().all(|&p| p == c.pid || p == 1), "namespaces looked at: {touched:?}");
    assert!(touched.contains(&c.pid), "{touched:?}");
    // And nothing of /proc/<pid> read but the container's init's, pid
    // 1's and sockql's own (strace's log starts each line with the pid
    // of the traced thread): not a walk of every process.
    let ours: BTreeSet<i64> = text.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    let opened = proc_paths(&text, "");
    assert!(!opened.contains(&other.pid), "{opened:?}");
    assert!(opened.iter().all(|&p| p == c.pid || p == 1 || ours.contains(&p)), "processes looked at: {opened:?}");
}
