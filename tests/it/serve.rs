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

/// A GET from inside `ns`: status line and body.
fn get(ns: &Netns, port: u16, path: &str) -> (String, String) {
    get_retrying(ns, port, path).unwrap_or_else(|| panic!("no answer to GET {path} on port {port}"))
}

/// A port nothing listens on in `ns` now.
fn free_port(ns: &Netns) -> u16 {
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
    let mut server = spawn_in(&ns, &[bin(), "serve", "--listen", "127.0.0.1:0"]);
    let mut line = String::new();
    BufReader::new(server.stderr.as_mut().unwrap()).read_line(&mut line).unwrap();
    let port: u16 = line.split("http://127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok()).expect(&line);

    let (status, body) = get(&ns, port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let close_wait: Vec<&str> = body.lines().filter(|l| l.starts_with("sockql_close_wait_sockets{")).collect();
    let pid = std::process::id();
    assert_eq!(close_wait.len(), 1, "{body}");
    assert!(close_wait[0].contains(&format!("netns_name=\"{}\",pid=\"{pid}\",process=\"{}\"", ns.name, my_comm())), "{body}");
    assert!(close_wait[0].ends_with(&format!("}} {ss_close_wait}")), "ss counts {ss_close_wait}: {body}");
    let estab = format!("netns_name=\"{}\",protocol=\"tcp\",state=\"FIN-WAIT-2\"}} 3", ns.name);
    assert!(body.lines().any(|l| l.starts_with("sockql_sockets{") && l.ends_with(&estab)), "the closed clients: {body}");
    assert!(body.contains("sockql_query_up{query=\"metric_close_wait\"} 1"), "{body}");
    // The accept queue as ss -ltn shows it: Recv-Q queued, Send-Q the limit.
    let ss_listen = ns.exec_ok("ss", &["-Hltn", "sport", &format!(":{listen_port}")]);
    let fields: Vec<&str> = ss_listen.split_whitespace().collect();
    let (ss_queued, ss_max) = (fields[1], fields[2]);
    assert_eq!(ss_queued, "2", "{ss_listen}");
    let listener_labels = format!("local_addr=\"127.0.0.1\",local_port=\"{listen_port}\",pid=\"{pid}\",process=\"{}\"}}", my_comm());
    for (family, want) in [("sockql_accept_queue_queued", ss_queued), ("sockql_accept_queue_max", ss_max)] {
        let line = body.lines().find(|l| l.starts_with(family) && l.contains(&listener_labels)).unwrap_or_else(|| panic!("{family}: {body}"));
        assert!(line.ends_with(&format!(" {want}")), "{line} against ss {ss_listen}");
    }
    // promtool accepts the exposition.
    let (ok, said) = std::process::Command::new("promtool").args(["check", "metrics"]).stdin(std::process::Stdio::piped()).output_with(&body);
    assert!(ok, "promtool: {said}");
    assert_eq!(get(&ns, port, "/healthz"), ("HTTP/1.1 200 OK".into(), "ok\n".into()));
    assert_eq!(get(&ns, port, "/nothing").0, "HTTP/1.1 404 Not Found");

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
        let (status, body) = get_retrying(&ns, web, &format!("/api/v1/query?query=sockql_close_wait_sockets%7Bpid%3D%22{pid}%22%7D"))?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?.first()?.clone();
        (status.contains("200")).then_some(result)
    });
    assert_eq!(value["metric"]["pid"], Value::from(pid.to_string()), "{value}");
    assert_eq!(value["metric"]["job"], Value::from("sockql"), "{value}");
    assert_eq!(value["value"][1], Value::from(ss_close_wait.to_string()), "{value}");
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
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}
