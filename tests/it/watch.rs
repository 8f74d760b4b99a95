//! `--watch`: re-running a query on an interval until Ctrl-C.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn interrupt(child: &std::process::Child) {
    // SAFETY: sends SIGINT to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
}

#[test]
fn ndjson_watch_appends_timestamped_rows_until_ctrl_c() {
    let l = listener("127.0.0.1:0", 3);
    let p = port_of(&l);
    let mut child = Command::new(bin())
        .args([
            "--watch",
            "200ms",
            "--format",
            "ndjson",
            &format!("SELECT local_port, send_q FROM sockets WHERE local_port = {p}"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    let mut rows = Vec::new();
    while rows.len() < 4 {
        let line = lines.next().expect("a row per tick").unwrap();
        rows.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    interrupt(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends watch normally: {status:?}");
    let ts: Vec<String> = rows.iter().map(|r| r["ts"].as_str().unwrap().to_string()).collect();
    for r in &rows {
        assert_eq!((r["local_port"].as_u64(), r["send_q"].as_u64()), (Some(p as u64), Some(3)));
    }
    // Compared as instants: RFC 3339 text drops a zero fraction
    // ("…:45Z" after "…:44.796Z"), so the strings do not sort.
    let instants: Vec<_> =
        ts.iter().map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap_or_else(|e| panic!("{t}: {e}"))).collect();
    for w in instants.windows(2) {
        assert!(w[0] < w[1], "timestamps increase: {ts:?}");
    }
    // 4 ticks at 200 ms take at least 600 ms.
    assert!(start.elapsed() >= Duration::from_millis(600));
    drop(l);
}

#[test]
fn table_watch_redraws_with_a_header_and_saved_queries_watch_too() {
    let mut child =
        Command::new(bin()).args(["run", "states", "--watch", "0.2"]).stdout(Stdio::piped()).spawn().unwrap();
    // Read on a thread while this one waits for three whole tables (a
    // tick prints its table in one go, and Ctrl-C ends watch between ticks).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn({
        let seen = seen.clone();
        move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                seen.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        }
    });
    let tables = || String::from_utf8_lossy(&seen.lock().unwrap()).matches("| protocol | state").count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tables() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt(&child);
    reader.join().unwrap();
    let out = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(child.wait().unwrap().success());
    let redraws = out.matches("\x1b[H\x1b[2J").count();
    let headers = out.matches("Every 200ms: SELECT netns, netns_name, protocol, state, count(*) AS sockets,").count();
    assert!(redraws >= 3 && headers == redraws, "{redraws} redraws, {headers} headers:\n{out}");
    assert!(out.contains("| protocol | state"), "{out}");
}

#[test]
fn bad_intervals_are_refused() {
    let (_, err, ok) = run(&["--watch", "fast", "SELECT 1"]);
    assert!(!ok && err.contains("bad interval 'fast'"), "{err}");
    let (_, err, ok) = run(&["--watch", "10ms", "SELECT 1"]);
    assert!(!ok && err.contains("too short"), "{err}");
}
