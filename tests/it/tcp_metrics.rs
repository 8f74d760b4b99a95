//! `tcp_metrics` against `ip tcp_metrics show`: in namespaces the test
//! makes, connections to known loopback addresses leave entries in the
//! kernel's cache; sockql must show each entry ip shows, with the same
//! values, and none of another namespace's without --all-netns.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::netns::Netns;

/// Connect from `src` to `dst` in the calling thread's namespace a few
/// times, with round trips (so the kernel has RTT samples), and close:
/// the kernel then keeps metrics for the destination.
fn converse(src: &str, dst: &str) {
    let listener = TcpListener::bind((dst, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    for _ in 0..3 {
        let server = std::thread::spawn({
            let listener = listener.try_clone().unwrap();
            move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4];
                for _ in 0..5 {
                    s.read_exact(&mut buf).unwrap();
                    s.write_all(&buf).unwrap();
                }
            }
        });
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&format!("{src}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
        sock.connect(&format!("{dst}:{port}").parse::<SocketAddr>().unwrap().into()).unwrap();
        let mut c: TcpStream = sock.into();
        let mut buf = [0u8; 4];
        for _ in 0..5 {
            c.write_all(b"ping").unwrap();
            c.read_exact(&mut buf).unwrap();
        }
        server.join().unwrap();
        drop(c);
    }
}

/// The entries as ip prints them, by address and source: their fields, by
/// ip's names.
fn ip_entries(ns: &Netns) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let out = ns.exec_ok("ip", &["tcp_metrics", "show"]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let addr = words.next().unwrap().to_string();
            let rest: Vec<&str> = words.collect();
            let fields: BTreeMap<String, String> =
                rest.chunks(2).map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string())).collect();
            ((addr, fields.get("source").cloned().unwrap_or_default()), fields)
        })
        .collect()
}

/// ip's "4330us" or "4ms" in ms.
fn ip_ms(v: &str) -> f64 {
    match v.strip_suffix("us") {
        Some(us) => us.parse::<f64>().unwrap() / 1000.0,
        None => v.strip_suffix("ms").unwrap().parse().unwrap(),
    }
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// Every column sockql gives for `row` against ip's entry.
fn check_row(row: &Value, ip: &BTreeMap<String, String>, before_ms: f64) {
    let addr = row["address"].as_str().unwrap();
    assert_eq!(row["source_addr"].as_str(), ip.get("source").map(String::as_str), "{addr} source");
    for (col, name) in
        [("cwnd", "cwnd"), ("ssthresh", "ssthresh"), ("reordering", "reordering"), ("fastopen_mss", "fo_mss")]
    {
        let want = ip.get(name).map(|v| v.parse::<f64>().unwrap());
        assert_eq!(num(&row[col]), want, "{addr} {col}");
    }
    for (col, name) in [("rtt_ms", "rtt"), ("rttvar_ms", "rttvar")] {
        let want = ip.get(name).map(|v| ip_ms(v));
        let got = num(&row[col]);
        assert!(
            match (got, want) {
                (Some(g), Some(w)) => (g - w).abs() < 1e-9,
                (None, None) => true,
                _ => false,
            },
            "{addr} {col}: sockql {got:?}, ip {want:?}"
        );
    }
    // ip printed its age first; sockql read the same entry a little later.
    let ip_age = ip["age"].strip_suffix("sec").unwrap().parse::<f64>().unwrap() * 1000.0;
    let age = num(&row["age_ms"]).unwrap();
    assert!(age + 1.0 >= ip_age && age <= ip_age + before_ms + 1.0, "{addr} age {age} ms, ip {ip_age} ms");
    assert_eq!(row["fastopen_cookie"].as_str(), ip.get("fo_cookie").map(String::as_str), "{addr} fo_cookie");
}

#[test]
fn tcp_metrics_match_ip_and_stay_in_their_namespace() {
    require_root();
    let a = Netns::new("tcpm");
    let b = Netns::new("tcpm");
    for ns in [&a, &b] {
        ns.sysctl("net.ipv4.tcp_no_metrics_save", "0");
    }
    a.enter(|| {
        converse("127.0.0.1", "127.0.0.2");
        converse("127.0.0.1", "127.0.0.3");
    });
    b.enter(|| converse("127.0.0.1", "127.0.0.9"));
    // The kernel saves metrics as the connections close.
    let wanted = ["127.0.0.2", "127.0.0.3"];
    eventually(Duration::from_secs(10), || {
        wanted.iter().all(|w| ip_entries(&a).keys().any(|(k, _)| k == w)).then_some(())
    });
    eventually(Duration::from_secs(10), || ip_entries(&b).keys().any(|(k, _)| k == "127.0.0.9").then_some(()));

    let started = std::time::Instant::now();
    let ip = ip_entries(&a);
    let rows = a.sockql("SELECT * FROM tcp_metrics");
    let elapsed = started.elapsed().as_millis() as f64;
    let key = |r: &Value| {
        (r["address"].as_str().unwrap().to_string(), r["source_addr"].as_str().unwrap_or_default().to_string())
    };
    let got: Vec<&str> = rows.iter().map(|r| r["address"].as_str().unwrap()).collect();
    let mut keys: Vec<(String, String)> = rows.iter().map(key).collect();
    keys.sort();
    assert_eq!(keys, ip.keys().cloned().collect::<Vec<_>>(), "the same entries as ip");
    for w in wanted {
        assert!(got.contains(&w), "{w} missing: {got:?}");
    }
    for row in &rows {
        check_row(row, &ip[&key(row)], elapsed);
        assert_eq!(row["netns"], serde_json::json!(a.inode()));
        assert_eq!(row["netns_name"], serde_json::json!(a.name));
    }
    // An entry with real values: its RTT was measured.
    assert!(rows.iter().any(|r| r["address"] == "127.0.0.2" && num(&r["rtt_ms"]).is_some_and(|v| v > 0.0)));

    // Near miss: b's entry is not a's, without --all-netns.
    assert!(!got.contains(&"127.0.0.9"), "another namespace's entry: {got:?}");
    // With --all-netns (from the host) each namespace's entries carry it.
    let all = query_with(&["--all-netns"], "SELECT address, netns FROM tcp_metrics ORDER BY address, source_addr");
    let of = |ns: &Netns| -> Vec<String> {
        all.iter()
            .filter(|r| r["netns"] == serde_json::json!(ns.inode()))
            .map(|r| r["address"].as_str().unwrap().to_string())
            .collect()
    };
    let b_entries: Vec<String> = ip_entries(&b).keys().map(|(a, _)| a.clone()).collect();
    assert_eq!(of(&b), b_entries, "b's entries, as ip -n b shows them");
    assert!(of(&a).contains(&"127.0.0.2".to_string()) && !of(&a).contains(&"127.0.0.9".to_string()));
}
