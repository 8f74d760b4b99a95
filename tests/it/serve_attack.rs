//! Attacks on the Prometheus side of `sockql serve`, performed for real:
//! an unprivileged local user holding and churning keep-alive, silent and
//! slow-header HTTP connections; a metric report that returns millions of
//! rows under --memory-limit 32M; concurrent scrapes racing a deadline.
//! Each asserts what must not happen: a scrape left unanswered or late,
//! /healthz held up behind scrapes, memory beyond a stated ceiling.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, eventually, have};
use crate::netns::Netns;

/// A queries directory of the test's own (as XDG_CONFIG_HOME), owned by
/// root and not writable by others, as sockql requires; removed on drop.
pub struct Queries(pub PathBuf);

impl Queries {
    pub fn new(tag: &str, files: &[(&str, &str)]) -> Queries {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("sockql-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("sockql/queries");
        std::fs::create_dir_all(&dir).unwrap();
        for d in [&root, &root.join("sockql"), &dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for (name, text) in files {
            let file = dir.join(format!("{name}.sql"));
            std::fs::write(&file, text).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Queries(root)
    }
}

impl Drop for Queries {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A metric report file: `-- metric:` header and SQL.
pub fn metric(name: &str, family: &str, sql: &str) -> String {
    format!("-- name: {name}\n-- description: {name} (test)\n-- metric: {family} gauge {name} for the test\n{sql}\n")
}

/// `sockql serve` running in a namespace; killed on drop.
pub struct Served {
    pub child: Child,
    pub port: u16,
    /// Its stderr, read on a thread so it never fills.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Served {
    /// Start serve in `ns` with `queries` as its config home and `args`.
    pub fn start(ns: &Netns, queries: &Queries, args: &[&str]) -> Served {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, bin(), "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("XDG_CONFIG_HOME", &queries.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Lines until the one naming /metrics' address (with --pg, the
        // PostgreSQL line may come first), then the rest on a thread.
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut port = None;
        let mut line = String::new();
        while port.is_none() && reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.contains("http://127.0.0.1:") {
                port = Some(crate::serve::metrics_port(&line));
            }
            stderr.lock().unwrap().push_str(&line);
            line.clear();
        }
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let mut all = keep.lock().unwrap();
                // The last 64 KiB is enough to say what went wrong (a soak
                // runs for minutes).
                if all.len() > 64 << 10 {
                    let cut = all.len() - (32 << 10);
                    let cut = (cut..all.len()).find(|&i| all.is_char_boundary(i)).unwrap_or(all.len());
                    all.drain(..cut);
                }
                all.push_str(&line);
                line.clear();
            }
        });
        let port = port.unwrap_or_else(|| panic!("serve did not start: {}", stderr.lock().unwrap()));
        Served { child, port, stderr }
    }

    /// A field of /proc/PID/status in KiB (`ip netns exec` execs serve, so
    /// the child's pid is serve's).
    pub fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.child.id(), field)
    }

    pub fn said(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix(" kB")?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A TCP connection from inside `ns` to its loopback `port`.
pub fn connect(ns: &Netns, port: u16) -> std::io::Result<TcpStream> {
    ns.enter(move || TcpStream::connect(("127.0.0.1", port)))
}

/// One keep-alive GET on `s`: status line and body, or why not (within
/// `limit`).
pub fn get_on(s: &mut TcpStream, path: &str, limit: Duration) -> Result<(String, String), String> {
    s.set_read_timeout(Some(limit)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {} bytes", got.len())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A signal to this process (a parallel test's child stopping)
            // is not the server's answer.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
        .ok_or_else(|| format!("no content-length: {head}"))?;
    while got.len() < head_end + length {
        match s.read(&mut buf) {
            Ok(0) => return Err("closed in the body".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read body: {e}")),
        }
    }
    let body = String::from_utf8_lossy(&got[head_end..head_end + length]).to_string();
    Ok((head.lines().next().unwrap_or_default().to_string(), body))
}

/// A GET on a new connection, with how long it took from connecting.
pub fn timed_get(ns: &Netns, port: u16, path: &str, limit: Duration) -> (Result<(String, String), String>, Duration) {
    let t0 = Instant::now();
    let result = connect(ns, port).map_err(|e| format!("connect: {e}")).and_then(|mut s| get_on(&mut s, path, limit));
    (result, t0.elapsed())
}

/// The attacking user's HTTP clients (python, as user nobody): `keep`
/// keep-alive connections each sending GET /healthz every second,
/// `silent` connections that send nothing, `trickle` connections that
/// send a request head one byte a second; every connection the server
/// closes is opened again at once. Prints the connections opened so far
/// once a second; runs for SECONDS.
pub const HTTP_ATTACKER: &str = r#"
import socket, sys, time
port, keep, silent, trickle, seconds = (int(a) for a in sys.argv[1:6])
kinds = ["keep"] * keep + ["silent"] * silent + ["trickle"] * trickle
socks = [None] * len(kinds)
sent = [0] * len(kinds)
opened = 0
head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
end = time.time() + seconds
while time.time() < end:
    for i, kind in enumerate(kinds):
        try:
            if socks[i] is None:
                socks[i] = socket.create_connection(("127.0.0.1", port), timeout=2)
                socks[i].setblocking(False)
                sent[i] = 0
                opened += 1
            s = socks[i]
            try:
                if s.recv(65536) == b"":
                    raise OSError("closed")
            except BlockingIOError:
                pass
            if kind == "keep":
                s.send(head)
            elif kind == "trickle":
                s.send(head[sent[i] % 20:sent[i] % 20 + 1])
                sent[i] += 1
        except OSError:
            try:
                socks[i].close()
            except Exception:
                pass
            socks[i] = None
    print(opened, flush=True)
    time.sleep(1)
"#;

/// Run [`HTTP_ATTACKER`] in `ns` as user nobody.
pub fn http_attacker(
    ns: &Netns,
    port: u16,
    keep: usize,
    silent: usize,
    trickle: usize,
    seconds: u64,
) -> (Child, PathBuf) {
    assert!(have("setpriv") && have("python3"), "setpriv and python3 are needed");
    let script = std::env::temp_dir().join(format!("sockql-http-attacker-{}-{port}.py", std::process::id()));
    std::fs::write(&script, HTTP_ATTACKER).unwrap();
    let args = [port.to_string(), keep.to_string(), silent.to_string(), trickle.to_string(), seconds.to_string()];
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            script.to_str().unwrap(),
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, script)
}

/// Connections the attacker has opened so far, read from its output (a
/// thread keeps reading; the last count is in the cell).
pub fn watch_count(child: &mut Child) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let keep = count.clone();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(n) = line.trim().parse() {
                keep.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    count
}

/// Server-side established connections on `port` in `ns` (ss).
fn established(ns: &Netns, port: u16) -> usize {
    ns.exec_ok("ss", &["-Htn", "state", "established", "sport", "=", &format!(":{port}")]).lines().count()
}

const ONE: &str = "SELECT 'x' AS k, 1 AS v";

#[test]
fn a_local_users_keep_alive_silent_and_slow_connections_never_lock_out_a_scrape() {
    let ns = Netns::new("httpflood");
    let queries = Queries::new("httpflood", &[("metric_one", &metric("metric_one", "sockql_test_one", ONE))]);
    let served = Served::start(&ns, &queries, &["--scrape-timeout", "2s", "--metrics", "metric_one"]);
    let port = served.port;
    // 100 keep-alive /healthz clients (more than the 64 the server holds),
    // 20 silent and 20 slow-header connections, all from user nobody.
    let (mut attacker, script) = http_attacker(&ns, port, 100, 20, 20, 40);
    let opened = watch_count(&mut attacker);
    eventually(Duration::from_secs(10), || (opened.load(std::sync::atomic::Ordering::SeqCst) >= 140).then_some(()));
    let at_start = opened.load(std::sync::atomic::Ordering::SeqCst);
    // A Prometheus-like client: one keep-alive connection scraping every
    // half second, and scrapes on a new connection each.
    let mut kept = connect(&ns, port).unwrap();
    let mut late = Vec::new();
    for round in 0..12 {
        let t0 = Instant::now();
        let kept_result = get_on(&mut kept, "/metrics", Duration::from_secs(3));
        let kept_took = t0.elapsed();
        let (fresh_result, fresh_took) = timed_get(&ns, port, "/metrics", Duration::from_secs(3));
        for (what, result, took) in [("kept", kept_result, kept_took), ("fresh", fresh_result, fresh_took)] {
            match result {
                Ok((status, body))
                    if status == "HTTP/1.1 200 OK"
                        && body.contains("sockql_test_one{k=\"x\"} 1")
                        && took <= Duration::from_secs(2) => {}
                other => late.push(format!("round {round} {what}: {other:?} after {took:?}")),
            }
        }
        if established(&ns, port) > 64 {
            late.push(format!("round {round}: more than 64 connections held"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The attack went on all along: the server kept closing the
    // attacker's connections and it kept opening new ones.
    let churned = opened.load(std::sync::atomic::Ordering::SeqCst) - at_start;
    assert!(attacker.try_wait().unwrap().is_none(), "the attacker ran throughout");
    let _ = attacker.kill();
    let _ = attacker.wait();
    let _ = std::fs::remove_file(script);
    assert!(late.is_empty(), "scrapes refused or late during the flood: {late:#?}\nserver said: {}", served.said());
    assert!(churned > 100, "the attacker's connections were closed and reopened ({churned})");
    // /healthz still answers for the attacker's user and anyone else.
    assert_eq!(
        timed_get(&ns, port, "/healthz", Duration::from_secs(2)).0,
        Ok(("HTTP/1.1 200 OK".into(), "ok\n".into()))
    );
}

/// Peak memory of serve scraping a report of 5 million rows under
/// --memory-limit 32M. Measured: idle ~26 MB, 91-99 MB at the peak of a
/// scrape of 10-20 million rows (DataFusion's working set and the 32 MiB
/// pool), whatever the row count. The code before this change held the
/// whole result (about 25 bytes a row: 125 MB more for 5 million rows,
/// 500 MB for 20 million).
const MANY_ROWS_CEILING_KIB: u64 = 160 << 10;

#[test]
fn a_metric_report_of_millions_of_rows_is_read_within_the_memory_limit() {
    let ns = Netns::new("httprows");
    let sql = "SELECT 'row' || CAST(value AS VARCHAR) AS label, value AS v FROM range(5000000)";
    let queries = Queries::new("httprows", &[("metric_many", &metric("metric_many", "sockql_test_many", sql))]);
    let served =
        Served::start(&ns, &queries, &["--memory-limit", "32M", "--scrape-timeout", "60s", "--max-series", "1000"]);
    let idle = served.status_kib("VmRSS");
    let (result, took) = timed_get(&ns, served.port, "/metrics", Duration::from_secs(60));
    let (status, body) = result.unwrap_or_else(|e| panic!("{e} after {took:?}: {}", served.said()));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let series: Vec<&str> = body.lines().filter(|l| l.starts_with("sockql_test_many{")).collect();
    assert_eq!(series.len(), 1000, "the family is cut at --max-series");
    // Each series is one row of the report, whole: label rowN, value N.
    for line in &series {
        let n = line.rsplit(' ').next().unwrap();
        assert_eq!(*line, format!("sockql_test_many{{label=\"row{n}\"}} {n}"));
    }
    assert!(body.contains("sockql_series_dropped{query=\"metric_many\"} 4999000\n"), "{body}");
    assert!(body.contains("sockql_query_up{query=\"metric_many\"} 1\n"), "{body}");
    let peak = served.status_kib("VmHWM");
    assert!(
        peak < MANY_ROWS_CEILING_KIB,
        "serve peaked at {peak} KiB (idle {idle} KiB), over {MANY_ROWS_CEILING_KIB} KiB"
    );
}

#[test]
fn concurrent_scrapes_share_one_deadline_and_healthz_never_waits() {
    let ns = Netns::new("httpdeadline");
    // A report of a million rows (work formatting them: about a second of
    // CPU in the debug build, so it finishes within the 3 s deadline on a
    // loaded machine; two million missed it once in CI) and one that
    // never finishes within the deadline.
    let rows = metric(
        "metric_a_rows",
        "sockql_test_rows",
        "SELECT 'row' || CAST(value AS VARCHAR) AS label, value AS v FROM range(1000000)",
    );
    let slow = metric("metric_b_slow", "sockql_test_slow", "SELECT count(*) AS n FROM range(100000000000)");
    let queries = Queries::new("httpdeadline", &[("metric_a_rows", &rows), ("metric_b_slow", &slow)]);
    let timeout = Duration::from_secs(3);
    let served = Served::start(&ns, &queries, &["--scrape-timeout", "3s"]);
    let port = served.port;
    // /healthz every 50 ms on one keep-alive connection while three
    // scrapes run at once, twice over.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut health = connect(&ns, port).unwrap();
    let stop_health = stop.clone();
    let healthz = std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        let mut answered = 0;
        while !stop_health.load(std::sync::atomic::Ordering::SeqCst) {
            let t0 = Instant::now();
            let r = get_on(&mut health, "/healthz", Duration::from_secs(10));
            assert_eq!(r, Ok(("HTTP/1.1 200 OK".into(), "ok\n".into())));
            slowest = slowest.max(t0.elapsed());
            answered += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        (answered, slowest)
    });
    for _ in 0..2 {
        let scrapes: Vec<_> = (0..3)
            .map(|_| {
                let s = connect(&ns, port).unwrap();
                std::thread::spawn(move || {
                    let mut s = s;
                    let t0 = Instant::now();
                    (get_on(&mut s, "/metrics", Duration::from_secs(20)), t0.elapsed())
                })
            })
            .collect();
        for scrape in scrapes {
            let (result, took) = scrape.join().unwrap();
            let (status, body) = result.unwrap_or_else(|e| panic!("{e} after {took:?}"));
            assert_eq!(status, "HTTP/1.1 200 OK");
            // Answered within the deadline (and a margin for a loaded
            // machine), with what finished in time.
            assert!(took < timeout + Duration::from_millis(750), "a scrape took {took:?} under --scrape-timeout 3s");
            assert!(body.contains("sockql_query_up{query=\"metric_a_rows\"} 1\n"), "{body}");
            assert!(body.contains("sockql_query_up{query=\"metric_b_slow\"} 0\n"), "{body}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (answered, slowest) = healthz.join().unwrap();
    assert!(answered > 20, "{answered}");
    assert!(slowest < Duration::from_millis(500), "/healthz waited {slowest:?} behind scrapes");
}
