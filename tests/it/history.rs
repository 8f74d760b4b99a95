//! Recording samples to Parquet and querying them over time: exact deltas
//! from the saved growth reports, files that survive a killed recorder,
//! retention, another Parquet reader (pyarrow), and S3 (moto's server on
//! loopback).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::conntrack::NftExt;
use crate::netns::Netns;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sockql-hist-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn python_reads(dir: &std::path::Path, table: &str) -> Value {
    let script = format!(
        "import json, pyarrow.dataset as ds\n\
         t = ds.dataset('{}/{}', format='parquet', partitioning='hive').to_table()\n\
         print(json.dumps({{'rows': t.num_rows, 'columns': sorted(t.column_names), 'hosts': sorted(set(t.column('host').to_pylist())), \
         'states': sorted(set(t.column('state').to_pylist())) if 'state' in t.column_names else []}}))",
        dir.display(),
        table
    );
    let o = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(o.status.success(), "pyarrow: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn recorded_samples_answer_growth_questions() {
    let ns = Netns::new("hist");
    ns.nft("table inet sockql_test {\n chain out { type filter hook output priority 0; ct state new,established accept; }\n}\n");
    let dir = temp_dir("grow");
    let out = dir.to_str().unwrap().to_string();
    let l = ns.enter(|| listener("127.0.0.1:7600", 64));
    let record = |ns: &Netns| {
        let (_, err, ok) =
            ns.exec(bin(), &["record", "--samples", "1", "--out", &out, "--tables", "sockets,conntrack,net_counters"]);
        assert!(ok && err.contains("1 samples"), "{err}");
        next_millisecond(); // distinct millisecond timestamps
    };
    // One connection from `src`: (client end, accepted end).
    let pair = |src: &'static str| {
        let c = ns.enter(move || bind_connect(&format!("{src}:0"), "127.0.0.1:7600"));
        let (s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        (c, s)
    };
    let mut held = Vec::new();
    // Tick 1: 127.0.0.2 x1, 127.0.0.3 x2.
    held.push(pair("127.0.0.2"));
    held.push(pair("127.0.0.3"));
    let closing = pair("127.0.0.3");
    record(&ns);
    // Tick 2: 127.0.0.2 +3.
    for _ in 0..3 {
        held.push(pair("127.0.0.2"));
    }
    record(&ns);
    // Tick 3: 127.0.0.2 +3 more; one 127.0.0.3 connection closes, both ends.
    for _ in 0..3 {
        held.push(pair("127.0.0.2"));
    }
    let closing_port = closing.0.local_addr().unwrap().port();
    drop(closing);
    // Recorded once neither end of it is established any more.
    let still_estab = format!("SELECT count(*) AS n FROM sockets WHERE state = 'ESTAB' AND (local_port = {closing_port} OR remote_port = {closing_port})");
    eventually(WAIT, || (ns.sockql(&still_estab)[0]["n"] == json!(0)).then_some(()));
    record(&ns);

    let h = host();
    let hist = ["--history", &out, "--format", "ndjson"];
    let run_saved = |name: &str, extra: &[&str]| {
        let mut args: Vec<&str> = vec!["run", name];
        args.extend_from_slice(&hist);
        args.extend_from_slice(extra);
        let (o, e, ok) = run(&args);
        assert!(ok, "{name}: {e}");
        parse_ndjson(&o)
    };
    // 127.0.0.1 is the remote of every client end: 3, 6, 8.
    let growth = run_saved("fastest_growing_remotes", &[]);
    let rates: Vec<f64> = growth.iter().map(|r| r["per_minute"].as_f64().unwrap()).collect();
    assert_eq!(
        growth,
        vec![
            json!({"host": h, "netns": ns.inode(), "netns_name": ns.name, "remote_addr": "127.0.0.2", "first": 1, "last": 7, "delta": 6, "per_minute": rates[0], "largest_step": 3}),
            json!({"host": h, "netns": ns.inode(), "netns_name": ns.name, "remote_addr": "127.0.0.1", "first": 3, "last": 8, "delta": 5, "per_minute": rates[1], "largest_step": 3}),
            json!({"host": h, "netns": ns.inode(), "netns_name": ns.name, "remote_addr": "127.0.0.3", "first": 2, "last": 1, "delta": -1, "per_minute": rates[2], "largest_step": 0}),
        ]
    );
    // The samples are a fraction of a second apart; the rate divides by at least one second.
    assert!(rates[0] >= 6.0 * 60.0 / 5.0 && rates[0] <= 360.0, "{rates:?}");
    assert!(rates[2] < 0.0);
    let trend: Vec<(i64, Value)> = run_saved("state_trend", &[])
        .into_iter()
        .filter(|r| r["state"] == "ESTAB")
        .map(|r| (r["sockets"].as_i64().unwrap(), r["change"].clone()))
        .collect();
    assert_eq!(trend, vec![(6, Value::Null), (12, json!(6)), (16, json!(4))]);
    let ct: Vec<(i64, Value)> = run_saved("conntrack_growth", &[])
        .into_iter()
        .map(|r| (r["entries"].as_i64().unwrap(), r["change"].clone()))
        .collect();
    assert_eq!(
        ct.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![3, 6, 9],
        "one entry per connection ever made; closed ones linger"
    );
    // The layout: hive partitions, one file per table per sample (and one
    // line per sample in the recorder's log, samples/), readable by pyarrow too.
    let files = parquet_files(&dir);
    assert_eq!(files.len(), 12, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.to_str().unwrap().contains("/samples/")).count(), 3);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(files.iter().all(|f| f.to_str().unwrap().contains(&format!("/host={h}/date={today}/"))), "{files:?}");
    let py = python_reads(&dir, "sockets");
    let ours = run(&["--history", &out, "--format", "csv", "--no-header", "SELECT count(*) FROM history.sockets"]).0;
    assert_eq!(py["rows"].as_i64().unwrap().to_string(), ours.trim());
    assert_eq!(py["hosts"], json!([h]));
    assert!(
        py["columns"].as_array().unwrap().contains(&json!("ts"))
            && py["columns"].as_array().unwrap().contains(&json!("date"))
    );
    // Partition pruning: a filter on date and host skips directories.
    let explain = run(&[
        "--history",
        &out,
        "--format",
        "csv",
        &format!("EXPLAIN SELECT count(*) FROM history.sockets WHERE date = '{today}' AND host = '{h}'"),
    ])
    .0;
    assert!(explain.contains("date") && explain.contains("host"), "{explain}");
    drop((l, held));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_killed_recorder_leaves_only_readable_files_and_retention_prunes() {
    let dir = temp_dir("kill");
    let out = dir.to_str().unwrap().to_string();
    // An old partition that retention must remove.
    let old = dir.join(format!("processes/host={}/date=2020-01-01", host()));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("1.parquet"), b"").unwrap();
    let mut child = Command::new(bin())
        .args([
            "record",
            "--every",
            "100ms",
            "--out",
            &out,
            "--tables",
            "processes,sockets,sysctls",
            "--retention",
            "7d",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut buf = Vec::new();
    // Wait for some samples, then kill it hard, mid-sample or not.
    while !String::from_utf8_lossy(&buf).contains("5 samples") {
        let mut chunk = Vec::new();
        err.read_until(b'\n', &mut chunk).unwrap();
        assert!(!chunk.is_empty(), "recorder ended early: {}", String::from_utf8_lossy(&buf));
        buf.extend(chunk);
    }
    // Where the kill lands (between samples or inside one) is left to
    // chance on purpose: every outcome must leave readable files, so this
    // pause spaces events and decides no assertion.
    std::thread::sleep(Duration::from_millis(130));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!old.exists(), "the 2020 partition was pruned");
    let files = parquet_files(&dir);
    assert!(files.len() >= 15, "{} files", files.len());
    // Every file left is whole: pyarrow and sockql read them all.
    for t in ["processes", "sockets", "sysctls"] {
        let py = python_reads(&dir, t);
        assert!(py["rows"].as_i64().unwrap() > 0);
    }
    let (o, e, ok) = run(&[
        "--history",
        &out,
        "--format",
        "csv",
        "--no-header",
        "SELECT count(DISTINCT ts) >= 5 FROM history.processes",
    ]);
    assert!(ok, "{e}");
    assert_eq!(o, "true\n");
    std::fs::remove_dir_all(dir).unwrap();
}

/// moto's S3 server on loopback, for the duration of a test.
pub(crate) struct S3 {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl S3 {
    pub(crate) fn start() -> S3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]')");
        eventually(Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()));
        S3 { child, port }
    }
    pub(crate) fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port))
            .env("AWS_ALLOW_HTTP", "true");
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn records_to_s3_and_reads_back() {
    let s3 = S3::start();
    // Create the bucket (S3 CreateBucket is a PUT on the bucket).
    let mut sock = TcpStream::connect(("127.0.0.1", s3.port)).unwrap();
    std::io::Write::write_all(
        &mut sock,
        b"PUT /sockql-test HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut sock, &mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let l = listener("127.0.0.1:0", 4);
    let p = port_of(&l);
    let url = "s3://sockql-test/fleet";
    for _ in 0..2 {
        let mut cmd = Command::new(bin());
        cmd.args(["record", "--samples", "1", "--out", url, "--tables", "sockets"]);
        s3.env(&mut cmd);
        let (_, err, ok) = output_of(cmd.output().unwrap());
        assert!(ok, "{err}");
        next_millisecond(); // distinct millisecond timestamps
    }
    let mut cmd = Command::new(bin());
    cmd.args(["--history", url, "--format", "ndjson", &format!(
        "SELECT count(DISTINCT ts) AS samples, count(*) AS rows, min(host) = max(host) AS one_host FROM history.sockets WHERE local_port = {p} AND state = 'LISTEN'")]);
    s3.env(&mut cmd);
    let (o, e, ok) = output_of(cmd.output().unwrap());
    assert!(ok, "{e}");
    assert_eq!(parse_ndjson(&o), vec![json!({"samples": 2, "rows": 2, "one_host": true})]);
    drop(l);
}

#[test]
fn records_a_saved_query_and_refuses_unknown_tables() {
    let dir = temp_dir("query");
    let out = dir.to_str().unwrap().to_string();
    let (_, err, ok) = run(&["record", "--samples", "1", "--query", "states", "--out", &out]);
    assert!(ok, "{err}");
    let (o, e, ok) = run(&[
        "--history",
        &out,
        "--format",
        "csv",
        "--no-header",
        "SELECT sum(sockets) > 0, min(pct) >= 0 FROM history.states",
    ]);
    assert!(ok, "{e}");
    assert_eq!(o, "true,true\n");
    let (_, err, ok) = run(&["record", "--samples", "1", "--tables", "sockets,nope", "--out", &out]);
    assert!(!ok && err.contains("cannot record 'nope': no such table"), "{err}");
    let (_, err, ok) = run(&["SELECT * FROM history.sockets"]);
    assert!(!ok && err.contains("history tables come from --history DIR"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Zero is an answer: a state that drops to 0 shows 0, and an empty table
/// is recorded (a zero-row file and a line in history.samples), so
/// "healthy" differs from "not recorded".
#[test]
fn empty_samples_and_cleared_states_read_as_zero() {
    let ns = Netns::new("zero");
    let dir = temp_dir("zero");
    let out = dir.to_str().unwrap().to_string();
    let record = |ns: &Netns| {
        let (_, err, ok) =
            ns.exec(bin(), &["record", "--samples", "1", "--out", &out, "--tables", "sockets,conntrack"]);
        assert!(ok && err.contains("1 samples"), "{err}");
        next_millisecond(); // distinct millisecond timestamps
    };
    // A CLOSE-WAIT leak of two sockets: the peers closed, we did not.
    let l = ns.enter(|| listener("127.0.0.1:7700", 8));
    let mut leaked = Vec::new();
    for _ in 0..2 {
        let c = ns.enter(|| bind_connect("127.0.0.1:0", "127.0.0.1:7700"));
        let (s, _) = l.accept().unwrap();
        drop(c);
        leaked.push(s);
    }
    let close_wait =
        |ns: &Netns| ns.sockql("SELECT count(*) AS n FROM sockets WHERE state = 'CLOSE-WAIT'")[0]["n"].clone();
    eventually(WAIT, || (close_wait(&ns) == json!(2)).then_some(()));
    record(&ns);
    // The leak is fixed: the application closes its ends.
    drop(leaked);
    eventually(WAIT, || (close_wait(&ns) == json!(0)).then_some(()));
    record(&ns);
    let hist = ["--history", &out, "--format", "ndjson"];
    let saved = |name: &str| {
        let mut args: Vec<&str> = vec!["run", name];
        args.extend_from_slice(&hist);
        let (o, e, ok) = run(&args);
        assert!(ok, "{name}: {e}");
        parse_ndjson(&o)
    };
    let trend: Vec<(i64, Value)> = saved("state_trend")
        .into_iter()
        .filter(|r| r["state"] == "CLOSE-WAIT")
        .map(|r| (r["sockets"].as_i64().unwrap(), r["change"].clone()))
        .collect();
    assert_eq!(trend, vec![(2, Value::Null), (0, json!(-2))], "the cleared leak reads 0");
    // No conntrack entries in this namespace (no ruleset): recorded empty.
    assert_eq!(ns.sockql("SELECT count(*) AS n FROM conntrack"), vec![json!({"n": 0})]);
    let ct: Vec<(i64, Value)> =
        saved("conntrack_growth").into_iter().map(|r| (r["entries"].as_i64().unwrap(), r["change"].clone())).collect();
    assert_eq!(ct, vec![(0, Value::Null), (0, json!(0))]);
    let q = |sql: &str| {
        let mut args: Vec<&str> = hist.to_vec();
        args.push(sql);
        let (o, e, ok) = run(&args);
        assert!(ok, "{sql}: {e}");
        parse_ndjson(&o)
    };
    assert_eq!(q("SELECT count(*) AS n FROM history.conntrack"), vec![json!({"n": 0})]);
    assert_eq!(
        q("SELECT source, count(*) AS samples, sum(rows) AS rows FROM history.samples GROUP BY 1 ORDER BY 1"),
        vec![
            json!({"source": "conntrack", "samples": 2, "rows": 0}),
            json!({"source": "sockets", "samples": 2, "rows": q("SELECT count(*) AS n FROM history.sockets")[0]["n"].clone()})
        ]
    );
    // A recording made before the log existed still answers (an empty
    // log): its samples are the ones with rows, here both (the listener).
    std::fs::remove_dir_all(dir.join("samples")).unwrap();
    let trend: Vec<i64> = saved("state_trend")
        .into_iter()
        .filter(|r| r["state"] == "CLOSE-WAIT")
        .map(|r| r["sockets"].as_i64().unwrap())
        .collect();
    assert_eq!(trend, vec![2, 0]);
    assert_eq!(q("SELECT count(*) AS n FROM history.samples"), vec![json!({"n": 0})]);
    drop(l);
    std::fs::remove_dir_all(dir).unwrap();
}
