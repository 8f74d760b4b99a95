//! `sockql serve`: the metric reports over HTTP, checked against what the
//! test created, against ss, by promtool, and through a real Prometheus
//! server scraping it (all inside a namespace of the test's own).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::common::{bin, eventually, my_comm};
use crate::events::spawn_in;
use crate::netns::Netns;

/// The /metrics port in serve's stderr line "sockql serve: http://127.0.0.1:PORT/metrics ...".
pub fn metrics_port(line: &str) -> u16 {
    line.split("http://127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok()).expect(line)
}

/// `sockql serve --listen 127.0.0.1:0` in `ns` with `extra` arguments,
/// and its /metrics port.
fn start_serve(ns: &Netns, extra: &[&str]) -> (crate::events::Reaped, u16) {
    let mut args = vec![bin(), "serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut server = spawn_in(ns, &args);
    let mut line = String::new();
    BufReader::new(server.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    (server, metrics_port(&line))
}

/// A GET from inside `ns`: status line and body.
pub fn get(ns: &Netns, port: u16, path: &str) -> (String, String) {
    get_retrying(ns, port, path).unwrap_or_else(|| panic!("no answer to GET {path} on port {port}"))
}

/// A port nothing listens on in `ns` now.
pub(crate) fn free_port(ns: &Netns) -> u16 {
    ns.enter(|| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

#[test]
fn serve_exports_metric_reports_that_prometheus_scrapes() {
    let ns = Netns::new("serve");
    // Three CLOSE-WAIT sockets held by this process: each client closes,
    // the accepted end is kept open and never closed.
    // Then two connections left in the listener's accept queue.
    let (held, listener, waiting) = ns.enter(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            held.push(l.accept().unwrap().0);
            drop(c);
        }
        let waiting: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap()).collect();
        (held, l, waiting)
    });
    let listen_port = listener.local_addr().unwrap().port();
    let ss_close_wait = eventually(crate::common::WAIT, || {
        let n = ns.exec_ok("ss", &["-Htan", "state", "close-wait"]).lines().count();
        (n == 3).then_some(n)
    });
    let (_server, port) = start_serve(&ns, &[]);

    let (status, body) = get(&ns, port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let close_wait: Vec<&str> = body.lines().filter(|l| l.starts_with("sockql_close_wait_sockets{")).collect();
    let pid = std::process::id();
    assert_eq!(close_wait.len(), 1, "{body}");
    assert!(
        close_wait[0].contains(&format!("netns_name=\"{}\",pid=\"{pid}\",process=\"{}\"", ns.name, my_comm())),
        "{body}"
    );
    assert!(close_wait[0].ends_with(&format!("}} {ss_close_wait}")), "ss counts {ss_close_wait}: {body}");
    let estab = format!("netns_name=\"{}\",protocol=\"tcp\",state=\"FIN-WAIT-2\"}} 3", ns.name);
    assert!(
        body.lines().any(|l| l.starts_with("sockql_sockets{") && l.ends_with(&estab)),
        "the closed clients: {body}"
    );
    assert!(body.contains("sockql_query_up{query=\"metric_close_wait\"} 1"), "{body}");
    // One reading of the sockets for every metric query of the scrape: the
    // per-state counts add up to the rows read.
    let value = |l: &str| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
    let by_state: f64 = body.lines().filter(|l| l.starts_with("sockql_sockets{")).map(value).sum();
    let read = body.lines().find(|l| l.starts_with("sockql_table_rows{table=\"sockets\"}")).map(value);
    assert_eq!(Some(by_state), read, "{body}");
    assert!(
        body.lines().all(|l| !l.starts_with("sockql_query_up{") || l.ends_with(" 1")),
        "every metric query answers: {body}"
    );
    // The accept queue as ss -ltn shows it: Recv-Q queued, Send-Q the limit.
    let ss_listen = ns.exec_ok("ss", &["-Hltn", "sport", &format!(":{listen_port}")]);
    let fields: Vec<&str> = ss_listen.split_whitespace().collect();
    let (ss_queued, ss_max) = (fields[1], fields[2]);
    assert_eq!(ss_queued, "2", "{ss_listen}");
    let listener_labels =
        format!("local_addr=\"127.0.0.1\",local_port=\"{listen_port}\",pid=\"{pid}\",process=\"{}\"}}", my_comm());
    for (family, want) in [("sockql_accept_queue_queued", ss_queued), ("sockql_accept_queue_max", ss_max)] {
        let line = body
            .lines()
            .find(|l| l.starts_with(family) && l.contains(&listener_labels))
            .unwrap_or_else(|| panic!("{family}: {body}"));
        assert!(line.ends_with(&format!(" {want}")), "{line} against ss {ss_listen}");
    }
    // promtool accepts the exposition.
    let (ok, said) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with(&body);
    assert!(ok, "promtool: {said}");
    assert_eq!(get(&ns, port, "/healthz"), ("HTTP/1.1 200 OK".into(), "ok\n".into()));
    assert_eq!(get(&ns, port, "/nothing").0, "HTTP/1.1 404 Not Found");
    // A client that never finishes its request head is closed after the
    // server's 10 s, and scrapes go on meanwhile.
    let slow = ns.enter(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    });
    let started = std::time::Instant::now();
    assert_eq!(get(&ns, port, "/healthz").0, "HTTP/1.1 200 OK", "served while a slow client waits");
    let waited = std::thread::spawn(move || {
        let mut slow = slow;
        let mut text = String::new();
        let _ = slow.read_to_string(&mut text);
        (text, started.elapsed())
    });

    // A real Prometheus scraping it every second, asked over its own API.
    let dir = std::env::temp_dir().join(format!("sockql-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sockql\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let web = free_port(&ns);
    let _prometheus = spawn_in(
        &ns,
        &[
            "prometheus",
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{web}"),
        ],
    );
    let value = eventually(Duration::from_secs(60), || {
        // This process's series: the namespace may hold other CLOSE-WAIT
        // sockets for a moment (scrape connections being closed).
        let (status, body) =
            get_retrying(&ns, web, &format!("/api/v1/query?query=sockql_close_wait_sockets%7Bpid%3D%22{pid}%22%7D"))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?.first()?.clone();
        (status.contains("200")).then_some(result)
    });
    assert_eq!(value["metric"]["pid"], Value::from(pid.to_string()), "{value}");
    assert_eq!(value["metric"]["job"], Value::from("sockql"), "{value}");
    assert_eq!(value["value"][1], Value::from(ss_close_wait.to_string()), "{value}");
    let (said, after) = waited.join().unwrap();
    assert!(said.is_empty() || said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(after >= Duration::from_secs(9) && after < Duration::from_secs(25), "closed after {after:?}");
    drop((held, listener, waiting));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A GET that may find nothing listening yet (None then).
fn get_retrying(ns: &Netns, port: u16, path: &str) -> Option<(String, String)> {
    let path = path.to_string();
    ns.enter(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        Some((head.lines().next()?.to_string(), body.to_string()))
    })
}

/// Feed `input` to a command's stdin: (success, stdout and stderr).
trait OutputWith {
    fn output_with(&mut self, input: &str) -> (bool, String);
}

impl OutputWith for std::process::Command {
    fn output_with(&mut self, input: &str) -> (bool, String) {
        let mut child = self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }
}

/// A route listener that never reads, with the smallest receive buffer,
/// in `ns`: its fd (held open by the caller) and its inode.
fn deaf_route_listener(ns: &Netns) -> (std::os::fd::OwnedFd, u64) {
    ns.enter(|| {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: plain socket calls on a descriptor this block owns.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
            assert!(fd >= 0);
            let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
            let size: libc::c_int = 1;
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&size as *const libc::c_int).cast(), 4);
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            addr.nl_groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_LINK) as u32;
            let len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
            assert_eq!(libc::bind(owned.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), len), 0);
            let mut st: libc::stat = std::mem::zeroed();
            assert_eq!(libc::fstat(owned.as_raw_fd(), &mut st), 0);
            (owned, st.st_ino)
        }
    })
}

#[test]
fn lost_netlink_events_equal_proc_net_netlink() {
    let ns = Netns::new("nldrops");
    let (listener, inode) = deaf_route_listener(&ns);
    // Sixty address events; the listener's buffer holds a few of them.
    let batch: String = (1..=60).map(|i| format!("address add 10.77.0.{i}/32 dev lo\n")).collect();
    let file = std::env::temp_dir().join(format!("sockql-nldrops-{}", std::process::id()));
    std::fs::write(&file, batch).unwrap();
    ns.exec_ok("ip", &["-batch", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    // The kernel's own account, read inside the namespace.
    let proc_drops: u64 = ns
        .exec_ok("cat", &["/proc/net/netlink"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 10 && f[9] == inode.to_string())
        .map(|f| f[8].parse().unwrap())
        .expect("our socket in /proc/net/netlink");
    assert!(proc_drops > 0, "the deaf listener lost events");
    let rows = ns.sockql(&format!("SELECT protocol, groups, drops FROM netlink_sockets WHERE inode = {inode}"));
    assert_eq!(rows, vec![serde_json::json!({"protocol": "route", "groups": 0x11, "drops": proc_drops})]);
    let metric = ns.run_saved_here("metric_netlink_drops", &[]);
    assert_eq!(
        metric,
        vec![
            serde_json::json!({"protocol": "route", "inode": inode.to_string(), "pid": std::process::id().to_string(), "process": my_comm(), "lost": proc_drops})
        ]
    );
    // As Prometheus sees it: a counter (served alone with --metrics).
    let (_server, port) = start_serve(&ns, &["--metrics", "metric_netlink_drops"]);
    let (_, body) = get(&ns, port, "/metrics");
    assert!(body.contains("# TYPE sockql_netlink_lost_events_total counter"), "{body}");
    let sample = format!("inode=\"{inode}\",pid=\"{}\",process=\"{}\"}} {proc_drops}", std::process::id(), my_comm());
    assert!(body.lines().any(|l| l.starts_with("sockql_netlink_lost_events_total{") && l.ends_with(&sample)), "{body}");
    assert!(
        !body.contains("sockql_sockets") && body.contains("sockql_query_up{query=\"metric_netlink_drops\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("sockql_table_rows{table=\"netlink_sockets\"}")
            && !body.contains("sockql_table_rows{table=\"sockets\"}"),
        "only what it needs is read: {body}"
    );
    drop(listener);
}
