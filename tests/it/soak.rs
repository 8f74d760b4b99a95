//! SOAK: `sockql serve --pg DIR` with /metrics under many attacks at once
//! for a bounded time (SOCKQL_SOAK_SECONDS, 150 unless set; the load runs
//! for all but 30 s of it, the rest is start-up and settling):
//!
//! - thousands of short client connections to the PostgreSQL socket (half
//!   of them logging in) and to /metrics' port (bounded counts);
//! - user nobody (setpriv) holding silent PostgreSQL connections, and
//!   keep-alive /healthz floods, silent and slow-header HTTP connections;
//! - clients that stop reading in the middle of a large result;
//! - big queries: a 100 MB value, 300 million rows read, counted;
//! - oversized protocol messages (a startup packet and a query message
//!   that claim a gigabyte, and stream 8 MiB of it), 50 a second.
//!
//! Meanwhile root's psql runs `SELECT 1` and a scraper GETs /metrics every
//! second; every one must be answered within its deadline. serve's RSS is
//! sampled and must stay under the ceiling SECURITY.md states, then come
//! back near its idle size once the load ends. Every failure is collected
//! and the test reports them all at the end, by kind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{have, require_root};
use crate::netns::Netns;
use crate::serve_attack::{connect, get_on, http_attacker, metric, status_kib, watch_count, Queries, Served};

/// The bounds serve runs with here, and what the memory ceiling is made of.
const MEMORY_LIMIT_MIB: u64 = 32;
const PG_MAX_QUERIES: u64 = 2;
const PG_MAX_CONNECTIONS: u64 = 16;
/// What one PostgreSQL connection may hold besides its query (buffers of
/// a message being read, of rows being written).
const PER_CONNECTION_MIB: u64 = 4;
/// DataFusion's and the runtime's working set outside the pools (about
/// 65 MiB measured for one scrape of millions of rows), the scrape's own
/// pool (one scrape at a time, --memory-limit), HTTP connections' buffers.
const MARGIN_MIB: u64 = 96 + MEMORY_LIMIT_MIB;
/// After the load: back within this of the idle size.
const SETTLED_MIB: u64 = 64;
/// Root's psql `SELECT 1` must be answered within this.
const PSQL_DEADLINE: Duration = Duration::from_secs(5);
/// --scrape-timeout, and the margin a loaded machine gets on top.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
const SCRAPE_MARGIN: Duration = Duration::from_secs(1);

fn soak_seconds() -> u64 {
    std::env::var("SOCKQL_SOAK_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(150).max(40)
}

/// Raw PostgreSQL protocol clients (python, no driver: they must be able
/// to misbehave). Modes: silent N, churn COUNT, stall, big, oversize.
/// Each prints a running count of what it did, once a second or so.
const PG_ATTACKER: &str = r#"
import socket, struct, sys, time
mode, path, seconds, arg = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
end = time.time() + seconds
count = 0
last_print = 0
def say():
    global last_print
    if time.time() - last_print >= 1:
        print(count, flush=True)
        last_print = time.time()
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s
def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(min(n - len(b), 1 << 20))
        if not c:
            raise OSError("closed")
        b += c
    return bytes(b)
def message(s):
    h = recv_exact(s, 5)
    left = struct.unpack("!i", h[1:])[0] - 4
    body = b""
    while left > 0:
        c = s.recv(min(left, 1 << 20))
        if not c:
            raise OSError("closed")
        if len(body) < 256:
            body += c[:256]
        left -= len(c)
    return h[:1], body
def login(s):
    p = b"user\0root\0database\0sockql\0\0"
    s.sendall(struct.pack("!ii", 8 + len(p), 196608) + p)
    while True:
        t, body = message(s)
        if t == b"Z":
            return
        if t == b"E":
            raise OSError(body[:200])
def query(s, sql):
    q = sql.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
def drain(s):
    while True:
        t, _ = message(s)
        if t == b"Z":
            return
def alive(s):
    s.setblocking(False)
    try:
        return s.recv(4096) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        try:
            s.setblocking(True)
        except OSError:
            pass
held = []
big = ["SELECT repeat('x', 100000000) AS x", "SELECT * FROM range(300000000)", "SELECT count(*) FROM range(300000000)"]
while time.time() < end:
    try:
        if mode == "silent":
            held = [s for s in held if alive(s)]
            while len(held) < int(arg):
                held.append(conn())
                count += 1
            time.sleep(0.5)
        elif mode == "churn":
            if count >= int(arg):
                time.sleep(0.5)
            else:
                s = conn()
                if count % 2 == 0:
                    login(s)
                    s.sendall(b"X\0\0\0\4")
                s.close()
                count += 1
                time.sleep(0.01)
        elif mode == "stall":
            # A large result, of which 64 KiB is read; then never again.
            held = [s for s in held if alive(s)]
            if len(held) < 3:
                s = conn()
                login(s)
                query(s, "SELECT repeat('x', 1000) AS x FROM range(10000000)")
                recv_exact(s, 65536)
                held.append(s)
                count += 1
            time.sleep(2)
        elif mode == "big":
            s = conn()
            login(s)
            query(s, big[count % len(big)])
            try:
                drain(s)
            except OSError:
                pass
            s.close()
            count += 1
        elif mode == "oversize":
            s = conn()
            if count % 2 == 0:
                s.sendall(struct.pack("!ii", 1 << 30, 196608))
            else:
                login(s)
                s.sendall(b"Q" + struct.pack("!i", 1 << 30))
            junk = b"y" * 65536
            try:
                for _ in range(128):
                    s.sendall(junk)
            except OSError:
                pass
            s.close()
            count += 1
            time.sleep(0.02)
    except OSError:
        count += 1
        time.sleep(0.05)
    say()
print(count, flush=True)
"#;

/// Children killed when the soak ends (or fails).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run the PostgreSQL attacker in `mode`, as root or (with `nobody`) as
/// user nobody; its running count.
fn pg_attacker(
    script: &Path,
    socket: &Path,
    mode: &str,
    arg: &str,
    seconds: u64,
    nobody: bool,
    children: &mut Children,
) -> Arc<AtomicUsize> {
    let mut cmd = Command::new(if nobody { "setpriv" } else { "/usr/bin/python3" });
    if nobody {
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3"]);
    }
    let mut child = cmd
        .arg(script)
        .args([mode, socket.to_str().unwrap(), &seconds.to_string(), arg])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let count = watch_count(&mut child);
    children.0.push(child);
    count
}

/// serve with --pg in `ns`, with the bounds this soak states.
fn start_serve(ns: &Netns, queries: &Queries, dir: &Path) -> Served {
    let (memory, connections, max_queries) =
        (format!("{MEMORY_LIMIT_MIB}M"), PG_MAX_CONNECTIONS.to_string(), PG_MAX_QUERIES.to_string());
    let args = [
        "--metrics",
        "metric_soak,metric_close_wait",
        "--pg",
        dir.to_str().unwrap(),
        "--pg-port",
        "5439",
        "--pg-max-connections",
        &connections,
        "--pg-max-queries",
        &max_queries,
        // The attackers are user nobody, admitted as members of nogroup:
        // root's own probes must get through whatever they do.
        "--pg-group",
        "nogroup",
        "--memory-limit",
        &memory,
        "--timeout",
        "10s",
        "--scrape-timeout",
        "3s",
    ];
    Served::start(ns, queries, &args)
}

/// Root's psql `SELECT 1` on the unix socket: Ok(latency) or why not.
fn psql_select_1(dir: &Path) -> Result<Duration, String> {
    let t0 = Instant::now();
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            dir.to_str().unwrap(),
            "-p",
            "5439",
            "-U",
            "root",
            "-d",
            "sockql",
            "-c",
            "SELECT 1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Killed once past the deadline (and a little): a hung psql is a miss.
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let took = t0.elapsed();
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
            return match (status.success(), stdout.as_str(), took <= PSQL_DEADLINE) {
                (true, "1", true) => Ok(took),
                _ => {
                    Err(format!("after {took:?}: {status} {stdout:?} {}", String::from_utf8_lossy(&out.stderr).trim()))
                }
            };
        }
        if t0.elapsed() > PSQL_DEADLINE + Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no answer in {:?}", t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A scrape on a new connection: Ok(latency) or why not.
fn scrape(ns: &Netns, port: u16) -> Result<Duration, String> {
    let t0 = Instant::now();
    let limit = SCRAPE_TIMEOUT + SCRAPE_MARGIN;
    let mut s = connect(ns, port).map_err(|e| format!("connect: {e}"))?;
    let (status, body) = get_on(&mut s, "/metrics", limit + Duration::from_secs(5))?;
    let took = t0.elapsed();
    if status != "HTTP/1.1 200 OK" || !body.contains("sockql_test_soak{k=\"x\"} 1\n") {
        return Err(format!("after {took:?}: {status}: {}", body.chars().take(300).collect::<String>()));
    }
    if took > limit {
        return Err(format!("answered after {took:?}"));
    }
    Ok(took)
}

/// Short TCP connections to `port` in `ns`, up to `count`, until `stop`.
fn http_churn(ns: &Netns, port: u16, count: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let file = std::fs::File::open(format!("/run/netns/{}", ns.name)).unwrap();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on this thread only, with a namespace fd we hold.
        assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let mut done = 0;
        while done < count && !stop.load(Ordering::SeqCst) {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                if done % 2 == 0 {
                    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                }
            }
            done += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        done
    })
}

#[test]
fn soak_serve_and_pg_under_every_attack_at_once() {
    require_root();
    assert!(
        have("psql") && have("setpriv") && Path::new("/usr/bin/python3").exists(),
        "psql, setpriv and python3 are needed"
    );
    let total = soak_seconds();
    let load = Duration::from_secs(total - 30);
    let ns = Arc::new(Netns::new("soak"));
    let queries =
        Queries::new("soak", &[("metric_soak", &metric("metric_soak", "sockql_test_soak", "SELECT 'x' AS k, 1 AS v"))]);
    let scratch: PathBuf = std::env::temp_dir().join(format!("sockql-soakrun-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let dir = scratch.join("run");
    let socket = dir.join(".s.PGSQL.5439");
    let script = scratch.join("pg_attacker.py");
    std::fs::write(&script, PG_ATTACKER).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut served = start_serve(&ns, &queries, &dir);
    let (port, pid) = (served.port, served.child.id());
    let mut children = Children(Vec::new());
    crate::common::eventually(Duration::from_secs(10), || socket.exists().then_some(()));

    // Idle size: after one scrape and one query have warmed everything up.
    scrape(&ns, port).unwrap_or_else(|e| panic!("warm-up scrape: {e}"));
    psql_select_1(&dir).unwrap_or_else(|e| panic!("warm-up psql: {e}"));
    std::thread::sleep(Duration::from_secs(1));
    let idle_kib = status_kib(pid, "VmRSS");
    let ceiling_kib = idle_kib
        + (((PG_MAX_QUERIES + 1) * MEMORY_LIMIT_MIB + PG_MAX_CONNECTIONS * PER_CONNECTION_MIB + MARGIN_MIB) << 10);

    // Every attack at once.
    let secs = load.as_secs();
    let mut counts: Vec<(&str, Arc<AtomicUsize>)> = vec![
        (
            "pg churn of user nobody (3000 short connections, half logging in)",
            pg_attacker(&script, &socket, "churn", "3000", secs, true, &mut children),
        ),
        (
            "pg silent connections of user nobody (50 held)",
            pg_attacker(&script, &socket, "silent", "50", secs, true, &mut children),
        ),
        (
            "pg clients of user nobody that stop reading a large result",
            pg_attacker(&script, &socket, "stall", "", secs, true, &mut children),
        ),
        ("pg big queries of user nobody", pg_attacker(&script, &socket, "big", "", secs, true, &mut children)),
        (
            "pg oversized messages of user nobody",
            pg_attacker(&script, &socket, "oversize", "", secs, true, &mut children),
        ),
    ];
    let (mut http, http_script) = http_attacker(&ns, port, 100, 20, 20, secs);
    counts.push(("http keep-alive/silent/slow connections of user nobody", watch_count(&mut http)));
    children.0.push(http);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = http_churn(&ns, port, 3000, stop.clone());

    // RSS every 200 ms until the end.
    let sampling = Arc::new(AtomicBool::new(true));
    let (keep_sampling, peak_rss) = (sampling.clone(), Arc::new(AtomicUsize::new(0)));
    let peak = peak_rss.clone();
    let sampler = std::thread::spawn(move || {
        while keep_sampling.load(Ordering::SeqCst) {
            peak.fetch_max(status_kib(pid, "VmRSS") as usize, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200));
        }
    });

    // Root's psql and a scrape every second, each on its own thread so a
    // slow one does not delay the next.
    let started = Instant::now();
    let (psql_misses, scrape_misses) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (mut probes, mut asked) = (Vec::new(), 0);
    while started.elapsed() < load {
        let second = started.elapsed().as_secs();
        let (d, misses) = (dir.clone(), psql_misses.clone());
        probes.push(std::thread::spawn(move || {
            if let Err(e) = psql_select_1(&d) {
                misses.lock().unwrap().push(format!("t={second}s {e}"));
            }
        }));
        let (misses, ns) = (scrape_misses.clone(), ns.clone());
        probes.push(std::thread::spawn(move || {
            if let Err(e) = scrape(&ns, port) {
                misses.lock().unwrap().push(format!("t={second}s {e}"));
            }
        }));
        asked += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    for p in probes {
        let _ = p.join();
    }
    stop.store(true, Ordering::SeqCst);
    let churned = churn.join().unwrap();
    let alive_at_end =
        std::iter::once(&mut served.child).chain(children.0.iter_mut()).all(|c| c.try_wait().ok().flatten().is_none());
    let activity: Vec<String> =
        counts.iter().map(|(what, n)| format!("{what}: {}", n.load(Ordering::SeqCst))).collect();
    // The attackers end on their own; those that linger are killed.
    for c in children.0.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_file(http_script);

    // After the load: back near the idle size.
    let settle_started = Instant::now();
    let mut settled_kib = status_kib(pid, "VmRSS");
    while settled_kib > idle_kib + (SETTLED_MIB << 10) && settle_started.elapsed() < Duration::from_secs(25) {
        std::thread::sleep(Duration::from_millis(500));
        settled_kib = status_kib(pid, "VmRSS");
    }
    sampling.store(false, Ordering::SeqCst);
    sampler.join().unwrap();
    let hwm_kib = status_kib(pid, "VmHWM");
    let peak_kib = (peak_rss.load(Ordering::SeqCst) as u64).max(hwm_kib);
    let after_psql = psql_select_1(&dir);
    let after_scrape = scrape(&ns, port);
    let server_alive = served.child.try_wait().ok().flatten().is_none();
    let _ = std::fs::remove_dir_all(&scratch);

    let psql_misses = psql_misses.lock().unwrap().clone();
    let scrape_misses = scrape_misses.lock().unwrap().clone();
    let mut failed = Vec::new();
    if !server_alive {
        failed.push("serve died during the soak".to_string());
    }
    if !psql_misses.is_empty() {
        failed.push(format!(
            "root's psql SELECT 1 missed its {PSQL_DEADLINE:?} deadline {} of {asked} times: {psql_misses:#?}",
            psql_misses.len()
        ));
    }
    if !scrape_misses.is_empty() {
        failed.push(format!(
            "GET /metrics missed --scrape-timeout 3s (+1s) {} of {asked} times: {scrape_misses:#?}",
            scrape_misses.len()
        ));
    }
    if peak_kib > ceiling_kib {
        failed.push(format!(
            "RSS peaked at {peak_kib} KiB, over the ceiling {ceiling_kib} KiB = idle {idle_kib} KiB + ({PG_MAX_QUERIES} + 1 kept for root) x {MEMORY_LIMIT_MIB} MiB + {PG_MAX_CONNECTIONS} x {PER_CONNECTION_MIB} MiB + {MARGIN_MIB} MiB"
        ));
    }
    if settled_kib > idle_kib + (SETTLED_MIB << 10) {
        failed.push(format!(
            "RSS stayed at {settled_kib} KiB after the load, more than {SETTLED_MIB} MiB over idle {idle_kib} KiB"
        ));
    }
    if let Err(e) = &after_psql {
        failed.push(format!("psql after the load: {e}"));
    }
    if let Err(e) = &after_scrape {
        failed.push(format!("scrape after the load: {e}"));
    }
    let summary = format!(
        "soak of {total}s (load {secs}s): {asked} psql and {asked} scrape probes; idle {idle_kib} KiB, peak {peak_kib} KiB (ceiling {ceiling_kib}), after {settled_kib} KiB; http churn {churned}; attackers alive to the end: {alive_at_end}; {activity:#?}"
    );
    eprintln!("{summary}");
    assert!(
        failed.is_empty(),
        "{summary}\nFAILED:\n{}\nserve said (last lines):\n{}",
        failed.join("\n"),
        tail(&served.said(), 40)
    );
    // The attacks were real: each did its thing many times.
    for (what, n) in &counts {
        assert!(n.load(Ordering::SeqCst) > 3, "{what} hardly ran: {activity:#?}");
    }
    assert!(churned > 1000, "http churn: {churned}");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
