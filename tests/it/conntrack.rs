//! `conntrack` and `conntrack_stats` against the kernel's connection
//! tracking, in namespaces with their own nftables rulesets, cross-checked
//! with conntrack(8).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};

use serde_json::{json, Value};

use crate::common::*;
use crate::netns::{link, Netns};

pub trait NftExt {
    fn nft(&self, ruleset: &str);
}

impl NftExt for Netns {
    /// Load an nftables ruleset into this namespace.
    fn nft(&self, ruleset: &str) {
        let file = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&file, ruleset).unwrap();
        self.exec_ok("nft", &["-f", file.to_str().unwrap()]);
        std::fs::remove_file(file).unwrap();
    }
}

/// `conntrack -L -o extended,id` parsed independently of sockql's parser,
/// into the column names sockql uses.
pub fn conntrack_tool(ns: &Netns) -> Vec<Value> {
    assert!(have("conntrack"), "conntrack (conntrack-tools) is needed for this cross-check");
    let out = ns.exec_ok("conntrack", &["-L", "-o", "extended,id"]);
    let mut rows: Vec<Value> = out
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let mut row = json!({"protocol": f[2], "state": null, "assured": false, "seen_reply": true,
                "orig_packets": null, "orig_bytes": null, "reply_packets": null, "reply_bytes": null});
            let mut dir = "orig";
            for tok in &f[5..] {
                match tok.split_once('=') {
                    None if *tok == "[ASSURED]" => row["assured"] = json!(true),
                    None if *tok == "[UNREPLIED]" => row["seen_reply"] = json!(false),
                    None if !tok.starts_with('[') => row["state"] = json!(tok),
                    None => {}
                    Some(("src", v)) => {
                        if row.get("orig_src").is_some() {
                            dir = "reply";
                        }
                        row[format!("{dir}_src")] = json!(v);
                    }
                    Some(("dst", v)) => row[format!("{dir}_dst")] = json!(v),
                    Some((k @ ("sport" | "dport" | "packets" | "bytes"), v)) => {
                        row[format!("{dir}_{k}")] = json!(v.parse::<u64>().unwrap())
                    }
                    Some((k @ ("mark" | "id"), v)) => row[k] = json!(v.parse::<u64>().unwrap()),
                    Some(_) => {}
                }
            }
            row
        })
        .collect();
    rows.sort_by_key(|r| r["id"].as_u64());
    rows
}

const COMPARED: &str = "id, protocol, state, orig_src, orig_dst, orig_sport, orig_dport, orig_packets, orig_bytes, \
    reply_src, reply_dst, reply_sport, reply_dport, reply_packets, reply_bytes, assured, seen_reply, mark";

fn ours(ns: &Netns, filter: &str) -> Vec<Value> {
    ns.sockql(&format!("SELECT {COMPARED} FROM conntrack {filter} ORDER BY id"))
}

#[test]
fn tracked_flows_match_conntrack_tool() {
    let ns = Netns::new("ct");
    ns.sysctl("net.netfilter.nf_conntrack_acct", "1");
    ns.sysctl("net.netfilter.nf_conntrack_timestamp", "1");
    ns.nft("table inet sockql_test {\n chain out { type filter hook output priority 0; ct state new,established accept; }\n}\n");
    let held = ns.enter(|| {
        let l = listener("127.0.0.1:8080", 8);
        let mut c = TcpStream::connect("127.0.0.1:8080").unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(&[1u8; 100]).unwrap();
        s.read_exact(&mut [0u8; 100]).unwrap();
        let server = UdpSocket::bind("127.0.0.1:5353").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"ping", "127.0.0.1:5353").unwrap();
        let mut buf = [0u8; 4];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        server.send_to(b"pong", from).unwrap();
        (l, c, s, server, client)
    });
    let tool = conntrack_tool(&ns);
    let rows = ours(&ns, "");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows, tool);
    let tcp = rows.iter().find(|r| r["protocol"] == "tcp").unwrap();
    assert_eq!(
        (tcp["state"].clone(), tcp["orig_dport"].clone(), tcp["assured"].clone()),
        (json!("ESTABLISHED"), json!(8080), json!(true))
    );
    assert!(tcp["orig_bytes"].as_u64().unwrap() > 100, "accounting is on: {tcp}");
    let udp = rows.iter().find(|r| r["protocol"] == "udp").unwrap();
    assert_eq!(
        (udp["orig_dport"].clone(), udp["seen_reply"].clone(), udp["state"].clone()),
        (json!(5353), json!(true), Value::Null)
    );

    // Timestamps, and the count and limit a "table full" check needs.
    let extra = ns.sockql(
        "SELECT count(*) AS n, min(now() - start_time < INTERVAL '1 minute') AS recent, \
         (SELECT value FROM sysctls WHERE name = 'net.netfilter.nf_conntrack_count') AS count_sysctl, \
         (SELECT CAST(value AS BIGINT) > 0 FROM sysctls WHERE name = 'net.netfilter.nf_conntrack_max') AS has_max \
         FROM conntrack",
    );
    assert_eq!(extra, vec![json!({"n": 2, "recent": true, "count_sysctl": "2", "has_max": true})]);

    // conntrack_stats is conntrack -S, CPU by CPU.
    let tool_stats = ns.exec_ok("conntrack", &["-S"]);
    let stats = ns.sockql("SELECT * FROM conntrack_stats ORDER BY cpu");
    assert_eq!(stats.len(), tool_stats.lines().count(), "{tool_stats}");
    for (line, row) in tool_stats.lines().zip(&stats) {
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=').unwrap();
            assert_eq!(row[k], json!(v.parse::<u64>().unwrap()), "{k} in {line} vs {row}");
        }
    }
    // A family filter chooses the dump and keeps the answer right.
    assert_eq!(ours(&ns, "WHERE family = 'inet6'"), Vec::<Value>::new());
    assert_eq!(ours(&ns, "WHERE family = 'inet'").len(), 2);
    drop(held);
}

#[test]
fn snat_and_dnat_translations_and_the_join_to_sockets() {
    let a = Netns::new("natA");
    let b = Netns::new("natB");
    let (va, _) = link(&a, &b, 3);
    a.exec_ok("ip", &["addr", "add", "10.231.3.11/24", "dev", &va]);
    // a masquerades its clients behind 10.231.3.11; b forwards port 9000 to 8080.
    a.nft("table ip sockql_nat {\n chain post { type nat hook postrouting priority 100; ip daddr 10.231.3.2 tcp dport 9000 snat to 10.231.3.11; }\n}\n");
    b.nft("table ip sockql_nat {\n chain pre { type nat hook prerouting priority -100; tcp dport 9000 dnat to 10.231.3.2:8080; }\n}\n");
    let l = b.enter(|| listener("10.231.3.2:8080", 8));
    let client = a.enter(|| TcpStream::connect("10.231.3.2:9000").unwrap());
    let cport = client.local_addr().unwrap().port();
    let (server, _) = l.accept().unwrap();

    let cols = "protocol, state, orig_src, orig_dst, orig_sport, orig_dport, reply_src, reply_dst, reply_sport, reply_dport, snat, dnat";
    let rows_a = eventually(WAIT, || {
        let r = a.sockql(&format!("SELECT {cols} FROM conntrack WHERE orig_dport = 9000"));
        (r.len() == 1 && r[0]["state"] == "ESTABLISHED").then_some(r)
    });
    let snat_port = rows_a[0]["reply_dport"].clone();
    assert_eq!(
        rows_a[0],
        json!({"protocol": "tcp", "state": "ESTABLISHED", "orig_src": "10.231.3.1", "orig_dst": "10.231.3.2", "orig_sport": cport, "orig_dport": 9000,
               "reply_src": "10.231.3.2", "reply_dst": "10.231.3.11", "reply_sport": 9000, "reply_dport": snat_port, "snat": true, "dnat": false})
    );
    let rows_b = b.sockql(&format!("SELECT {cols} FROM conntrack WHERE orig_dport = 9000"));
    assert_eq!(
        rows_b,
        vec![
            json!({"protocol": "tcp", "state": "ESTABLISHED", "orig_src": "10.231.3.11", "orig_dst": "10.231.3.2", "orig_sport": snat_port, "orig_dport": 9000,
                    "reply_src": "10.231.3.2", "reply_dst": "10.231.3.11", "reply_sport": 8080, "reply_dport": snat_port, "snat": false, "dnat": true})
        ]
    );
    // Both sides agree with conntrack(8).
    for ns in [&a, &b] {
        let tool: Vec<Value> = conntrack_tool(ns).into_iter().filter(|r| r["orig_dport"] == 9000).collect();
        assert_eq!(ours(ns, "WHERE orig_dport = 9000"), tool);
    }
    // Both namespaces' tables from outside, each row attributed.
    let both = query_with(
        &["--all-netns"],
        &format!("SELECT netns_name, snat, dnat FROM conntrack WHERE orig_dport = 9000 AND netns_name IN ('{}', '{}') ORDER BY snat", a.name, b.name),
    );
    assert_eq!(
        both,
        vec![
            json!({"netns_name": b.name, "snat": false, "dnat": true}),
            json!({"netns_name": a.name, "snat": true, "dnat": false})
        ]
    );
    // Which local socket serves each forwarded connection: conntrack JOIN sockets.
    settled(
        vec![json!({"public_port": 9000, "local_port": 8080, "remote_addr": "10.231.3.11", "pid": my_pid()})],
        || {
            b.sockql(
            "SELECT c.orig_dport AS public_port, s.local_port, s.remote_addr, s.pid FROM conntrack c \
             JOIN sockets s ON s.local_port = c.reply_sport AND s.remote_addr = c.reply_dst AND s.remote_port = c.reply_dport \
             WHERE c.dnat AND s.state = 'ESTAB'",
        )
        },
    );
    // The saved report of translations, from each side.
    assert_eq!(
        b.run_saved_here("nat_by_destination", &[]),
        vec![
            json!({"protocol": "tcp", "orig_dst": "10.231.3.2", "orig_dport": 9000, "dnat_to": "10.231.3.2", "dnat_to_port": 8080,
                    "snat_to": null, "flows": 1, "sources": 1})
        ]
    );
    assert_eq!(
        a.run_saved_here("nat_by_destination", &[]),
        vec![
            json!({"protocol": "tcp", "orig_dst": "10.231.3.2", "orig_dport": 9000, "dnat_to": null, "dnat_to_port": null,
                    "snat_to": "10.231.3.11", "flows": 1, "sources": 1})
        ]
    );
    drop((l, client, server));
}

#[test]
fn without_cap_net_admin_conntrack_is_empty_and_says_why() {
    require_root();
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["--format", "csv", "SELECT count(*) AS n FROM conntrack; SELECT count(*) > 0 AS ok FROM processes"])
        .output()
        .unwrap();
    let (out, err, ok) = output_of(o);
    assert!(ok, "{err}");
    assert_eq!(out, "n\n0\nok\ntrue\n");
    assert!(err.contains("sockql: note: reading the connection-tracking table needs CAP_NET_ADMIN"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("CAP_NET_ADMIN")).count(), 1, "{err}");
}

/// Fill a namespace's table through ctnetlink (as `conntrack -I` does, but
/// many entries per send): UDP entries 10.200.x.y:port -> 10.201.0.1:53.
fn insert_udp_entries(ns: &Netns, n: u32) {
    insert_udp_entries_with(ns, n, |_| (None, None));
}

/// As [`insert_udp_entries`], entry `i` getting `mark_zone(i)` = (mark, zone).
fn insert_udp_entries_with(ns: &Netns, n: u32, mark_zone: fn(u32) -> (Option<u32>, Option<u16>)) {
    ns.enter(move || {
        fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
            let mut v = Vec::with_capacity(4 + payload.len() + 3);
            v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
            v.extend_from_slice(&kind.to_ne_bytes());
            v.extend_from_slice(payload);
            while v.len() % 4 != 0 {
                v.push(0);
            }
            v
        }
        let nested = |kind: u16, parts: &[Vec<u8>]| nla(kind | 0x8000, &parts.concat());
        let tuple = |kind: u16, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
            nested(
                kind,
                &[
                    nested(1, &[nla(1, &src), nla(2, &dst)]),
                    nested(2, &[nla(1, &[17]), nla(2, &sport.to_be_bytes()), nla(3, &dport.to_be_bytes())]),
                ],
            )
        };
        let mut sock = netlink_sys::Socket::new(netlink_sys::constants::NETLINK_NETFILTER).unwrap();
        sock.bind_auto().unwrap();
        sock.connect(&netlink_sys::SocketAddr::new(0, 0)).unwrap();
        let mut batch = Vec::new();
        for i in 0..n {
            let src = [10, 200, (i / 50_000) as u8, 1];
            let sport = 1024 + (i % 50_000) as u16;
            let dst = [10, 201, 0, 1];
            let body = [
                vec![libc::AF_INET as u8, 0, 0, 0],
                tuple(1, src, dst, sport, 53),
                tuple(2, dst, src, 53, sport),
                nla(7, &600u32.to_be_bytes()),                                // CTA_TIMEOUT
                mark_zone(i).0.map_or(vec![], |m| nla(8, &m.to_be_bytes())),  // CTA_MARK
                mark_zone(i).1.map_or(vec![], |z| nla(18, &z.to_be_bytes())), // CTA_ZONE
            ]
            .concat();
            let len = 16 + body.len();
            batch.extend_from_slice(&(len as u32).to_ne_bytes());
            batch.extend_from_slice(&0x0100u16.to_ne_bytes()); // IPCTNL_MSG_CT_NEW
            batch.extend_from_slice(&(0x1u16 | 0x400 | 0x200).to_ne_bytes()); // REQUEST|CREATE|EXCL
            batch.extend_from_slice(&i.to_ne_bytes());
            batch.extend_from_slice(&0u32.to_ne_bytes());
            batch.extend_from_slice(&body);
            if batch.len() > 60_000 || i + 1 == n {
                sock.send(&batch, 0).unwrap();
                batch.clear();
            }
        }
    });
}

#[test]
fn a_hundred_thousand_entries_stream_in_bounded_memory() {
    let ns = Netns::new("big");
    let n = 100_000;
    insert_udp_entries(&ns, n);
    let counted = ns.exec_ok("conntrack", &["-C"]).trim().parse::<u32>().unwrap();
    assert_eq!(counted, n, "conntrack -C after the inserts");
    // Run from tmpfs: from the page cache, the binary's code pages alone
    // made SELECT 1's peak vary by 30 MiB (see InMemoryBin).
    let sockql_bin = InMemoryBin::new("ct-big");
    let sockql = |sql: &str| {
        let run = peak_rss(&["ip", "netns", "exec", &ns.name, &sockql_bin.path, "--format", "csv", "--no-header", sql]);
        assert!(run.ok, "{sql}: {}", run.err);
        (run.peak_kib, run.out)
    };
    // The binary's own footprint (a debug build maps a lot), for reference:
    // the fullest of three runs, as one now and then maps a few MiB less.
    let rss_base = (0..3).map(|_| sockql("SELECT 1").0).max().unwrap();
    let (rss_count, out) = sockql("SELECT count(*) FROM conntrack WHERE orig_dport = 53");
    assert_eq!(out.trim(), n.to_string());
    // Every row and column printed: memory grows by a few batches, not by
    // the table (whose text alone is ~14 MiB; as Arrow batches, more).
    let (rss_all, out) = sockql("SELECT * FROM conntrack");
    assert_eq!(out.lines().count() as u32, n);
    let grown = rss_all - rss_base;
    eprintln!(
        "peak RSS: SELECT 1 {rss_base} KiB, count(*) {rss_count} KiB, SELECT * as csv {rss_all} KiB (+{grown}); output {} KiB",
        out.len() / 1024
    );
    // Measured from tmpfs: +3 to +9 MiB (a few batches and the scan's code
    // pages), so the table (~14 MiB of text, more as Arrow) is not held
    // whole. The 23-30 MiB once seen here was SELECT 1 mapping fewer code
    // pages from the page cache (BENCHMARKS.md, "conntrack scan memory").
    assert!(grown < 16 * 1024, "SELECT * of {n} entries grew peak RSS by {grown} KiB over SELECT 1");
    // The saved reports over the big table: who fills it, and how full it is.
    assert_eq!(
        ns.run_saved_here("top_conntrack_sources", &["limit=5"]),
        vec![
            json!({"orig_src": "10.200.0.1", "entries": 50_000, "assured": 0, "unreplied": 50_000, "destinations": 1, "protocols": 1}),
            json!({"orig_src": "10.200.1.1", "entries": 50_000, "assured": 0, "unreplied": 50_000, "destinations": 1, "protocols": 1}),
        ]
    );
    let max: i64 = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap().trim().parse().unwrap();
    let full = ns.run_saved_here("conntrack_full", &[]);
    assert_eq!(full.len(), 1);
    assert_eq!((full[0]["entries"].clone(), full[0]["max_entries"].clone()), (json!(n), json!(max)));
    let pct = full[0]["pct_full"].as_f64().unwrap();
    assert!((pct - (100.0 * n as f64 / max as f64)).abs() < 0.01, "{pct}");
    assert!(
        grown < 2 * (out.len() / 1024) as i64,
        "growth ({grown} KiB) below twice the text printed ({} KiB)",
        out.len() / 1024
    );
}

#[test]
fn mark_and_zone_filters_run_in_the_kernel() {
    use sockql::collect::conntrack::{Ctnetlink, DumpFilter};
    let ns = Netns::new("ctf");
    insert_udp_entries_with(&ns, 20, |i| (Some(if i % 2 == 0 { 7 } else { 0 }), (i % 5 == 0).then_some(3)));
    for f in ["mark = 7", "zone = 3", "mark = 7 AND zone = 3", "mark = 8", "zone = 0"] {
        let hidden = f.replace("mark", "(mark + 0)").replace("zone", "(zone + 0)");
        let pushed = ns.sockql(&format!("SELECT orig_src, orig_sport, mark, zone FROM conntrack WHERE {f} ORDER BY 2"));
        let plain =
            ns.sockql(&format!("SELECT orig_src, orig_sport, mark, zone FROM conntrack WHERE {hidden} ORDER BY 2"));
        assert_eq!(pushed, plain, "{f}");
    }
    let n = |f: &str| ns.sockql(&format!("SELECT count(*) AS n FROM conntrack WHERE {f}"))[0]["n"].clone();
    assert_eq!(
        (n("mark = 7"), n("zone = 3"), n("mark = 7 AND zone = 3"), n("zone = 0")),
        (json!(10), json!(4), json!(2), json!(16))
    );
    let explain =
        ns.exec_ok(bin(), &["--format", "csv", "EXPLAIN SELECT * FROM conntrack WHERE mark = 7 AND zone = 3"]);
    assert!(
        explain.contains("LiveScanExec: conntrack: ctnetlink netns=[current] family=all mark=Some(7) zone=Some(3)"),
        "{explain}"
    );
    // The kernel sends only matching entries.
    let counts = ns.enter(|| {
        let mut nl = Ctnetlink::open().unwrap();
        let mut count = |filter: DumpFilter| {
            let mut k = 0;
            nl.dump(0, &filter, None, |_| {
                k += 1;
                Ok::<_, sockql::collect::Error>(std::ops::ControlFlow::Continue(()))
            })
            .unwrap();
            k
        };
        (count(DumpFilter::default()), count(DumpFilter { mark: Some(7), zone: None }))
    });
    assert_eq!(counts, (20, 10));
}
