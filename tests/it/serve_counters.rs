//! `sockql serve`'s counters over event streams: a `-- metric: ... counter`
//! report over `process_events` is listened to from start-up and its totals
//! exported at every scrape. The events are programs this test starts
//! (copies of sleep under names of its own), the scrapes real HTTP GETs,
//! the exposition checked by promtool and read by a real Prometheus.
//! process_events listens to the host (the proc connector answers only in
//! the host's network namespace), so serve runs there, on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::{bin, eventually, require_root};

/// A directory of this test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sockql-counters-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    /// A copy of sleep named `name`: its execs show that name.
    fn program(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::copy("/usr/bin/sleep", &path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `sockql serve`: killed when dropped; its stderr read all the
/// time (a full pipe would stall it) and kept.
struct Serve {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    fn start(listen: &str, args: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", listen]).args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let port = crate::serve::metrics_port(&first);
        let stderr = Arc::new(Mutex::new(first));
        let kept = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                kept.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Serve { child, port, stderr }
    }

    fn said(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// GET /metrics: the body of a 200 answer.
    fn scrape(&self) -> String {
        let (status, body) = http_get(self.port, "/metrics").unwrap_or_else(|| panic!("no answer: {}", self.said()));
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        body
    }

    /// Peak RSS so far (VmHWM), KiB.
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Wait until the counter's stream is listened to and heard: run
    /// `canary` (counted by the report too, living half a second so that
    /// its name is still in /proc when its event is read) until a scrape
    /// shows it and its count has settled.
    /// Returns how many of its runs are counted.
    fn heard(&self, canary: &Path, sample: &str) -> u64 {
        eventually(Duration::from_secs(30), || {
            self.scrape().lines().any(|l| l.starts_with("sockql_stream_up{") && l.ends_with(" 1")).then_some(())
        });
        let first = eventually(Duration::from_secs(30), || {
            run(canary, &["0.5"]);
            std::thread::sleep(Duration::from_millis(300));
            value(&self.scrape(), sample)
        });
        // Runs before the listener was attached are not heard; from now
        // on every one is: one more run shows one more.
        let mut last = first;
        let first = eventually(Duration::from_secs(20), || {
            std::thread::sleep(Duration::from_millis(1500));
            let now = value(&self.scrape(), sample)?;
            let settled = now == last;
            last = now;
            settled.then_some(now)
        });
        run(canary, &["0.5"]);
        eventually(Duration::from_secs(10), || {
            (value(&self.scrape(), sample) == Some(first + 1.0)).then_some(first as u64 + 1)
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `program` with `args` to its end.
fn run(program: &Path, args: &[&str]) {
    assert!(Command::new(program).args(args).status().unwrap().success());
}

/// Start `n` runs of `program` at once (each `args(i)`) and wait for them all.
fn run_many(program: &Path, n: usize, args: impl Fn(usize) -> Vec<String>) {
    let children: Vec<Child> = (0..n).map(|i| Command::new(program).args(args(i)).spawn().unwrap()).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
}

/// A GET on loopback: status line and body (None if nothing answers).
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The value of the sample line that starts with `sample` (name and labels).
fn value(body: &str, sample: &str) -> Option<f64> {
    body.lines().find(|l| l.starts_with(sample)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Every sample of family `name` (`name{` or `name `).
fn samples<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    body.lines().filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))).collect()
}

fn promtool_accepts(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A PromQL expression as a URL query value.
fn encoded(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's single value from Prometheus at `web`.
fn prometheus_value(web: u16, query: &str) -> Option<f64> {
    let (status, body) = http_get(web, &format!("/api/v1/query?query={}", encoded(query)))?;
    if !status.contains("200") {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"].as_array()?.first()?["value"][1].as_str()?.parse().ok()
}

#[test]
fn serve_counts_exec_events_as_counters_that_prometheus_rates() {
    require_root();
    let dir = Dir::new("execs");
    let me = std::process::id();
    let (canary, program) = (dir.program(&format!("cw{me}")), dir.program(&format!("cx{me}")));
    let sample = format!("sockql_process_execs_total{{process=\"cx{me}\"}}");
    let canary_sample = format!("sockql_process_execs_total{{process=\"cw{me}\"}}");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--metrics", "metric_process_execs"];
    let serve = Serve::start(&listen, &args, &[]);
    assert_eq!(serve.port, port);
    serve.heard(&canary, &canary_sample);
    assert_eq!(value(&serve.scrape(), &sample), None, "no run of the program yet");

    // N runs: the counter shows exactly N (the label is this test's own
    // program), and stays there.
    let mut seen = Vec::new();
    let mut watch = |want: f64| {
        eventually(Duration::from_secs(15), || {
            let got = value(&serve.scrape(), &sample);
            seen.extend(got);
            (got == Some(want)).then_some(())
        });
    };
    run_many(&program, 5, |_| vec!["1".into()]);
    watch(5.0);
    std::thread::sleep(crate::common::WAIT / 2); // nothing more may come: a later scrape must not grow
    watch(5.0);
    // M more: N + M, and never a step down on the way.
    run_many(&program, 3, |_| vec!["1".into()]);
    watch(8.0);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "a counter went down: {seen:?}");
    let body = serve.scrape();
    assert!(body.contains("# TYPE sockql_process_execs_total counter\n"), "{body}");
    assert!(body.contains("sockql_stream_up{query=\"metric_process_execs\"} 1"), "{body}");
    assert!(body.contains("sockql_stream_events_lost_total{query=\"metric_process_execs\"} 0"), "{body}");
    assert!(body.contains("sockql_stream_overruns_total{query=\"metric_process_execs\"} 0"), "{body}");
    assert!(body.contains("sockql_stream_restarts_total{query=\"metric_process_execs\"} 0"), "{body}");
    promtool_accepts(&body);
    let om = {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(om.contains("# TYPE sockql_process_execs counter\n") && om.contains(&sample), "{om}");

    // A real Prometheus scraping every second.
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sockql\n    static_configs:\n      - targets: ['{listen}']\n"),
    )
    .unwrap();
    let web = free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let series = format!("sockql_process_execs_total{{process=\"cx{me}\"}}");
    eventually(Duration::from_secs(60), || (prometheus_value(web, &series) == Some(8.0)).then_some(()));
    // A few samples at 8, then serve restarts: its counters start from zero.
    eventually(Duration::from_secs(30), || {
        (prometheus_value(web, &format!("count_over_time({series}[10m])"))? >= 3.0).then_some(())
    });
    drop(serve);
    let serve = Serve::start(&listen, &args, &[]);
    serve.heard(&canary, &canary_sample);
    assert_eq!(value(&serve.scrape(), &sample), None, "a restarted serve counts from zero");
    run_many(&program, 4, |_| vec!["1".into()]);
    eventually(Duration::from_secs(15), || (value(&serve.scrape(), &sample) == Some(4.0)).then_some(()));
    eventually(Duration::from_secs(30), || (prometheus_value(web, &series) == Some(4.0)).then_some(()));
    eventually(Duration::from_secs(30), || {
        (prometheus_value(web, &format!("count_over_time({series}[10m])"))? >= 6.0).then_some(())
    });
    // Prometheus sees the restart as a reset, and what the program did
    // since it first saw the counter (8) is the 4 runs after the restart.
    // increase() extrapolates its samples' span by at most half an interval
    // at each end: n samples make it at most 4 * n / (n - 1).
    let q = |expr: String| prometheus_value(web, &expr).unwrap_or_else(|| panic!("{expr}: no answer"));
    assert_eq!(q(format!("resets({series}[10m])")), 1.0);
    let n = q(format!("count_over_time({series}[10m])"));
    let increase = q(format!("increase({series}[10m])"));
    assert!(increase >= 4.0 && increase <= 4.0 * n / (n - 1.0) + 1e-9, "increase {increase} over {n} samples");
    // rate() is the same increase per second (one expression: both at
    // the same evaluation time).
    let apart = q(format!("rate({series}[10m]) * 600 - increase({series}[10m])"));
    assert!(apart.abs() < 1e-9, "rate * 600 - increase = {apart}");
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    drop(serve);
}

/// A hostile counter: one label set per exec (its command line, 16 KiB
/// each), thousands of execs. Past --max-series the label sets fold into
/// the `other` series, whose value keeps the family's sum right; every fold
/// is counted; serve's peak memory stays under a ceiling that the label
/// text alone (2,000 x 16 KiB = 32 MiB, plus the keys' copies) would pass
/// without the cap.
#[test]
fn hostile_label_cardinality_folds_into_other_within_a_memory_ceiling() {
    require_root();
    let dir = Dir::new("hostile");
    let me = std::process::id();
    let program = dir.program(&format!("cy{me}"));
    let queries = dir.0.join("config/sockql/queries");
    std::fs::create_dir_all(&queries).unwrap();
    for d in [dir.0.join("config"), dir.0.join("config/sockql"), queries.clone()] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        queries.join("metric_hostile_cmdlines.sql"),
        format!(
            "-- name: metric_hostile_cmdlines\n-- description: hostile\n-- metric: sockql_hostile_execs counter Execs per command line\n\
             SELECT coalesce(cmdline, '') AS cmdline, count(*) AS value FROM process_events \
             WHERE event = 'exec' AND name = 'cy{me}' GROUP BY 1\n"
        ),
    )
    .unwrap();
    let cap = 50;
    let serve = Serve::start(
        "127.0.0.1:0",
        &["--metrics", "metric_hostile_cmdlines", "--max-series", &cap.to_string()],
        &[("XDG_CONFIG_HOME", &dir.0.join("config"))],
    );
    let family = "sockql_hostile_execs_total";
    // The canary is the program itself, with a short command line.
    let canary_runs = serve.heard(&program, &format!("{family}{{cmdline=\"{} 0.5\"}}", program.display()));
    let before = serve.peak_kib();
    // 2,000 execs, 400 at a time, each with a command line of its own;
    // each lives a second, so its name is still in /proc when the event
    // is read (process_events reads it then).
    let (runs, at_once) = (2000, 400);
    let long = |i: usize| format!("0.{}{i}", "0".repeat(16 * 1024));
    for round in 0..runs / at_once {
        run_many(&program, at_once, |i| vec!["1".into(), long(round * at_once + i)]);
    }
    let total = canary_runs + runs as u64;
    let sum = |body: &str| -> f64 {
        samples(body, family).iter().filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    let started = std::time::Instant::now();
    let body = loop {
        let body = serve.scrape();
        if sum(&body) == total as f64 {
            break body;
        }
        let tail: Vec<&str> = body.lines().filter(|l| l.starts_with("sockql_stream")).collect();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "counted {} of {total} execs: {}\n{}",
            sum(&body),
            tail.join("\n"),
            serve.said()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let kept = samples(&body, family);
    assert_eq!(kept.len(), cap + 1, "{cap} label sets and other: {}", kept.len());
    // The canary's label set came first; every other one exec'd once, so
    // cap - 1 long ones are kept (1 each) and the rest folded, each once.
    let folded = runs as u64 - (cap as u64 - 1);
    assert_eq!(value(&body, &format!("{family}{{cmdline=\"other\"}}")), Some(folded as f64));
    assert_eq!(kept.iter().filter(|l| l.ends_with("} 1")).count(), cap - 1);
    assert_eq!(
        value(&body, "sockql_stream_series_dropped_total{query=\"metric_hostile_cmdlines\"}"),
        Some(folded as f64)
    );
    assert!(body.contains("sockql_stream_events_lost_total{query=\"metric_hostile_cmdlines\"} 0"));
    promtool_accepts(&body);
    // The ceiling: what serve held before the load plus 40 MiB (the
    // windows' rows and their aggregation pass through; the kept label
    // text is at most 50 x 16 KiB). Measured: +22 to +27 MiB with the cap,
    // +51 MiB with --max-series 1000000 (every label set kept).
    let peak = serve.peak_kib();
    eprintln!("serve peak RSS: {before} KiB before the load, {peak} KiB after");
    assert!(peak < before + 40 * 1024, "peak RSS {peak} KiB, {before} KiB before the load");
}
