//! Every live saved report, across namespaces: run with --all-netns from
//! the host, each namespace's rows must equal the report run inside that
//! namespace alone, and the figures must equal ss counted inside it. The
//! list of reports comes from `sockql run --list`, so a new report is
//! covered (or, if it reads history or live packets, must be named below
//! or in packet_reports.rs) without editing this test.

use std::net::TcpStream;

use serde_json::{json, Value};

use crate::common::*;
use crate::conntrack::{conntrack_tool, NftExt};
use crate::containers_use::CONTAINER_REPORTS;
use crate::events::EVENT_HISTORY_REPORTS;
use crate::netns::{link, Netns};
use crate::packet_drops::TRACE_REPORTS;
use crate::packet_reports::PACKET_REPORTS;
use crate::tcp_state_changes::STATE_REPORTS;

/// Reports over other event streams, each checked against its own events
/// where its table is tested (tcp_retransmits.rs, tcp_resets.rs,
/// serve_counters.rs): a stream listens for its window, so running it once
/// per namespace here would only compare two windows of different events.
const STREAM_REPORTS: &[&str] =
    &["retransmitting_flows", "who_resets", "metric_tcp_retransmit_events", "metric_process_execs"];

/// Reports over recorded history (`--history`): checked below over one
/// sample recorded with --all-netns (and in depth by history.rs).
const HISTORY_REPORTS: &[&str] = &["conntrack_growth", "fastest_growing_remotes", "state_trend"];

/// A known socket set in `ns`: a listener on 8080 with `estab` accepted
/// connections and `close_wait` connections whose peer closed, a UDP
/// socket and an ICMP raw socket (ss -w). Connections are tracked by
/// conntrack, and one more goes to 127.0.0.1:8081, which the namespace
/// DNATs to 8080. Returned to be held.
fn socket_set(ns: &Netns, backlog: i32, estab: usize, close_wait: usize) -> Vec<Box<dyn std::any::Any + Send>> {
    ns.nft(
        "table ip sockql_reports {\n chain out { type nat hook output priority -100; tcp dport 8081 dnat to 127.0.0.1:8080; }\n          chain track { type filter hook output priority 0; ct state new,established accept; }\n}\n",
    );
    ns.enter(move || {
        let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
        let l = listener("127.0.0.1:8080", backlog);
        for _ in 0..estab {
            let c = TcpStream::connect("127.0.0.1:8080").unwrap();
            held.push(Box::new(l.accept().unwrap().0));
            held.push(Box::new(c));
        }
        let forwarded = TcpStream::connect("127.0.0.1:8081").unwrap();
        held.push(Box::new(l.accept().unwrap().0));
        held.push(Box::new(forwarded));
        for _ in 0..close_wait {
            let c = TcpStream::connect("127.0.0.1:8080").unwrap();
            held.push(Box::new(l.accept().unwrap().0));
            drop(c);
        }
        held.push(Box::new(std::net::UdpSocket::bind("127.0.0.1:5353").unwrap()));
        held.push(Box::new(
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(socket2::Protocol::ICMPV4)).unwrap(),
        ));
        held.push(Box::new(l));
        held
    })
}

#[test]
fn every_report_per_namespace_equals_the_report_inside_it() {
    let a = Netns::new("repA");
    let b = Netns::new("repB");
    let _sa = socket_set(&a, 16, 2, 1);
    let _sb = socket_set(&b, 8, 1, 2);
    let (out, err, ok) = run(&["run", "--list", "--format", "ndjson"]);
    assert!(ok, "{err}");
    let reports: Vec<String> = parse_ndjson(&out).iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    assert!(reports.len() >= 17, "{reports:?}");
    let params = |name: &str| -> Vec<String> {
        match name {
            "port_owner" => vec!["--param".into(), "port=8080".into()],
            "process_sockets" => vec!["--param".into(), format!("pid={}", my_pid())],
            _ => vec![],
        }
    };
    let mut covered = 0;
    for name in &reports {
        if HISTORY_REPORTS.contains(&name.as_str())
            || PACKET_REPORTS.contains(&name.as_str())
            || EVENT_HISTORY_REPORTS.contains(&name.as_str())
            || TRACE_REPORTS.contains(&name.as_str())
            || STATE_REPORTS.contains(&name.as_str())
            || STREAM_REPORTS.contains(&name.as_str())
            || CONTAINER_REPORTS.contains(&name.as_str())
        {
            continue;
        }
        let extra = params(name);
        let inside = |ns: &Netns| {
            let mut args: Vec<&str> = vec!["run", name, "--format", "ndjson"];
            args.extend(extra.iter().map(String::as_str));
            parse_ndjson(&ns.exec_ok(bin(), &args))
        };
        let across = || {
            let mut args: Vec<&str> = vec!["--all-netns", "run", name, "--format", "ndjson"];
            args.extend(extra.iter().map(String::as_str));
            let (out, err, ok) = run(&args);
            assert!(ok, "{name}: {err}");
            parse_ndjson(&out)
        };
        for ns in [&a, &b] {
            let alone = inside(ns);
            assert!(
                alone.iter().all(|r| r["netns_name"] == json!(ns.name)),
                "{name}: every row carries its namespace: {alone:?}"
            );
            // Owner columns can move for a moment while a parallel test's
            // child holds our sockets (see settled()); compare when still.
            settled(inside(ns), || {
                across().into_iter().filter(|r| r["netns_name"] == json!(ns.name)).collect::<Vec<Value>>()
            });
        }
        covered += 1;
    }
    assert_eq!(
        covered
            + HISTORY_REPORTS.len()
            + PACKET_REPORTS.len()
            + EVENT_HISTORY_REPORTS.len()
            + TRACE_REPORTS.len()
            + STATE_REPORTS.len()
            + STREAM_REPORTS.len()
            + CONTAINER_REPORTS.len(),
        reports.len(),
        "every report is covered here or named as a history, packet or event-history report"
    );
    // The figures equal ss inside each namespace.
    for (ns, estab, close_wait) in [(&a, 2, 1), (&b, 1, 2)] {
        let states = ns.run_saved_here("states", &[]);
        let count = |proto: &str, state: &str| {
            states
                .iter()
                .find(|r| r["protocol"] == proto && r["state"] == state)
                .map_or(0, |r| r["sockets"].as_i64().unwrap())
        };
        let ss = ns.exec_ok("ss", &["-Htuwan"]);
        let ss_count = |proto: &str, state: &str| {
            ss.lines().filter(|l| l.starts_with(proto) && l.split_whitespace().nth(1) == Some(state)).count() as i64
        };
        for (proto, state) in [
            ("tcp", "ESTAB"),
            ("tcp", "LISTEN"),
            ("tcp", "CLOSE-WAIT"),
            ("tcp", "FIN-WAIT-2"),
            ("udp", "UNCONN"),
            ("raw", "UNCONN"),
        ] {
            assert_eq!(count(proto, state), ss_count(proto, state), "{}: {proto} {state}: {ss}", ns.name);
        }
        assert_eq!(count("tcp", "ESTAB"), 2 * (estab + 1), "estab pairs and the forwarded one");
        assert_eq!(count("tcp", "CLOSE-WAIT"), close_wait);
        assert_eq!(count("raw", "UNCONN"), 1);
        let cw = ns.run_saved_here("close_wait", &[]);
        assert_eq!(cw.iter().map(|r| r["close_wait"].as_i64().unwrap()).sum::<i64>(), close_wait, "{cw:?}");
        // conntrack's own view inside the namespace: entries by source,
        // the table's fill, and the one DNAT.
        let tool = conntrack_tool(ns);
        let sources = ns.run_saved_here("top_conntrack_sources", &[]);
        let by_src: Vec<(Value, i64)> =
            sources.iter().map(|r| (r["orig_src"].clone(), r["entries"].as_i64().unwrap())).collect();
        assert_eq!(by_src, vec![(json!("127.0.0.1"), tool.len() as i64)], "{tool:?}");
        // estab + 1 + close_wait connections, each tracked once (TIME-WAIT
        // and FIN-WAIT ends stay tracked as long as the sockets are held).
        assert_eq!(tool.len() as i64, estab + 1 + close_wait, "{tool:?}");
        let full = ns.run_saved_here("conntrack_full", &[]);
        let counted = ns.exec_ok("conntrack", &["-C"]).trim().parse::<i64>().unwrap();
        assert_eq!(full[0]["entries"], json!(counted), "{full:?}");
        // The metric reports serve exports: conntrack's fill as conntrack -C
        // counts it, its drops as conntrack -S sums them.
        let fill = ns.run_saved_here("metric_conntrack", &[]);
        assert_eq!(fill.len(), 1, "{fill:?}");
        assert_eq!(fill[0]["entries"], json!(counted), "{fill:?}");
        let max: i64 =
            std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap().trim().parse().unwrap();
        assert_eq!(fill[0]["max"], json!(max), "{fill:?}");
        let drops = ns.run_saved_here("metric_conntrack_drops", &[]);
        let stat = ns.exec_ok("conntrack", &["-S"]);
        let summed = |key: &str| -> i64 {
            stat.split_whitespace().filter_map(|w| w.strip_prefix(&format!("{key}="))?.parse::<i64>().ok()).sum()
        };
        assert_eq!(
            (drops[0]["drops"].clone(), drops[0]["early_drops"].clone(), drops[0]["insert_failed"].clone()),
            (json!(summed("drop")), json!(summed("early_drop")), json!(summed("insert_failed"))),
            "{stat}"
        );
        // Ephemeral ports per remote, as ss shows the sockets on ports of
        // the namespace's range (every state but LISTEN), leaving out
        // those on a listening port (accepted, not connected).
        let range = ns.exec_ok("cat", &["/proc/sys/net/ipv4/ip_local_port_range"]);
        let (lo, hi): (u16, u16) = {
            let mut w = range.split_whitespace().map(|x| x.parse().unwrap());
            (w.next().unwrap(), w.next().unwrap())
        };
        let mut from_ss: std::collections::BTreeMap<String, i64> = Default::default();
        let all = ns.exec_ok("ss", &["-Htan", "state", "all"]);
        let port_of = |addr: &str| -> u16 { addr.rsplit(':').next().unwrap().parse().unwrap() };
        let listening: std::collections::BTreeSet<u16> = all
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f[0] == "LISTEN")
            .map(|f| port_of(f[3]))
            .collect();
        for line in all.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = port_of(f[3]);
            if f[0] != "LISTEN" && (lo..=hi).contains(&local_port) && !listening.contains(&local_port) {
                *from_ss.entry(f[4].to_string()).or_default() += 1;
            }
        }
        let ports: std::collections::BTreeMap<String, i64> = ns
            .run_saved_here("metric_ephemeral_ports", &[])
            .iter()
            .map(|r| {
                assert_eq!(r["range_size"], json!(i64::from(hi - lo) + 1), "{r}");
                (
                    format!("{}:{}", r["remote_addr"].as_str().unwrap(), r["remote_port"].as_str().unwrap()),
                    r["used"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(ports, from_ss);
        assert_eq!(ports.get("127.0.0.1:8080"), Some(&(estab + close_wait)), "the clients of 8080: {ports:?}");
        let nat = ns.run_saved_here("nat_by_destination", &[]);
        assert_eq!(nat.len(), 1, "{nat:?}");
        let dnat: Vec<&Value> = tool.iter().filter(|r| r["orig_dport"] == json!(8081)).collect();
        assert_eq!(dnat.len(), 1, "{tool:?}");
        assert_eq!(
            (
                nat[0]["orig_dport"].clone(),
                nat[0]["dnat_to"].clone(),
                nat[0]["dnat_to_port"].clone(),
                nat[0]["flows"].clone()
            ),
            (json!(8081), dnat[0]["reply_src"].clone(), dnat[0]["reply_sport"].clone(), json!(1)),
            "{nat:?}"
        );
        // lsof inside the namespace names the same descriptors on 8080.
        let owners: std::collections::BTreeSet<i64> = ns
            .run_saved_here("port_owner", &["port=8080"])
            .iter()
            .filter(|r| r["pid"] == json!(my_pid()))
            .map(|r| r["fd"].as_i64().unwrap())
            .collect();
        let lsof = ns.exec("lsof", &["-nP", "-a", "-p", &my_pid().to_string(), "-i", "TCP:8080", "-F", "f"]).0;
        let from_lsof: std::collections::BTreeSet<i64> =
            lsof.lines().filter_map(|l| l.strip_prefix('f')?.parse().ok()).collect();
        assert_eq!(owners, from_lsof, "lsof: {lsof}");
        assert_eq!(owners.len() as i64, 1 + 2 * estab + 1 + close_wait, "listener, both ends of each pair, the accepted end of the forwarded one (its client went to 8081), the CLOSE-WAIT ends");
        let listeners = ns.run_saved_here("listeners", &[]);
        let backlog = listeners.iter().find(|r| r["protocol"] == "tcp").unwrap()["backlog"].clone();
        // A raw socket listens on no port: ss -tuln leaves it out, so do listeners.
        assert!(listeners.iter().all(|r| r["protocol"] != "raw"), "{listeners:?}");
        assert_eq!(backlog, json!(if ns.name == a.name { 16 } else { 8 }));
    }
    // The history reports, over one sample recorded with --all-netns: each
    // namespace's figures are its own.
    let dir = std::env::temp_dir().join(format!("sockql-reports-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (_, err, ok) = run(&[
        "--all-netns",
        "record",
        "--out",
        dir.to_str().unwrap(),
        "--tables",
        "sockets,conntrack",
        "--samples",
        "1",
    ]);
    assert!(ok, "{err}");
    let history = |name: &str| {
        let (out, err, ok) = run(&["--history", dir.to_str().unwrap(), "run", name, "--format", "ndjson"]);
        assert!(ok, "{name}: {err}");
        parse_ndjson(&out)
    };
    let trend = history("state_trend");
    let growth = history("fastest_growing_remotes");
    assert!(!history("conntrack_growth").is_empty());
    for (ns, estab, close_wait) in [(&a, 2, 1), (&b, 1, 2)] {
        let mine =
            |rows: &[Value]| rows.iter().filter(|r| r["netns_name"] == json!(ns.name)).cloned().collect::<Vec<Value>>();
        let cw: Vec<i64> = mine(&trend)
            .iter()
            .filter(|r| r["state"] == "CLOSE-WAIT")
            .map(|r| r["sockets"].as_i64().unwrap())
            .collect();
        assert_eq!(cw, vec![close_wait as i64], "{}: {trend:?}", ns.name);
        let remotes = mine(&growth);
        assert_eq!(remotes.len(), 1, "{remotes:?}");
        assert_eq!(
            (remotes[0]["remote_addr"].clone(), remotes[0]["last"].clone()),
            (json!("127.0.0.1"), json!(2 * (estab + 1))),
            "{remotes:?}"
        );
    }
    for name in HISTORY_REPORTS {
        assert!(reports.iter().any(|r| r == name), "{name} is no longer a report");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Per half-open connection in `ns` as `ss -o` shows it: peer port →
/// (Recv-Q, Send-Q, timer name, SYN-ACKs retransmitted), from
/// `timer:(on,1.2sec,N)`.
fn ss_syn_recv(ns: &Netns) -> std::collections::BTreeMap<u64, (u64, u64, String, u64)> {
    ns.exec_ok("ss", &["-Htan", "-o", "state", "syn-recv"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let timer = f
                .iter()
                .find_map(|w| w.strip_prefix("timer:(")?.strip_suffix(')'))
                .unwrap_or_else(|| panic!("no timer: {l}"));
            let t: Vec<&str> = timer.split(',').collect();
            let port = f[3].rsplit(':').next().unwrap().parse().unwrap();
            (port, (f[0].parse().unwrap(), f[1].parse().unwrap(), t[0].to_string(), t[2].parse().unwrap()))
        })
        .collect()
}

/// Half-open connections whose SYN-ACKs go unanswered retransmit them:
/// `retransmits` lists each with the count ss -o shows
/// (`timer:(on,…,N)`), though the kernel keeps no tcp_info for them, and
/// the sockets table's columns for them equal ss.
#[test]
fn retransmits_include_syn_ack_retransmissions_of_half_open_connections() {
    use std::net::Ipv4Addr;
    let a = Netns::new("rtxS");
    let b = Netns::new("rtxC");
    let (va, _) = link(&a, &b, 7);
    // SYN-ACKs to 10.231.7.99 go to a MAC nobody has: no ACK ever comes,
    // and the server's request sockets retransmit their SYN-ACKs.
    a.exec_ok("ip", &["neigh", "add", "10.231.7.99", "lladdr", "02:00:00:00:00:63", "dev", &va, "nud", "permanent"]);
    let l = a.enter(|| listener("10.231.7.1:0", 64));
    let port = port_of(&l);
    let sports = 43000..43003u16;
    b.enter(move || {
        crate::packets::send_syns(Ipv4Addr::new(10, 231, 7, 99), sports, Ipv4Addr::new(10, 231, 7, 1), port)
    });
    let expected_ports: Vec<u64> = (43000..43003).collect();
    eventually(std::time::Duration::from_secs(10), || {
        let ss = ss_syn_recv(&a);
        (ss.keys().cloned().collect::<Vec<u64>>() == expected_ports && ss.values().all(|v| v.3 >= 1)).then_some(())
    });
    // Counts move every few seconds (1 s, 3 s, 7 s...): compare a report
    // read between two equal readings of ss.
    let (report, table, ss) = eventually(std::time::Duration::from_secs(15), || {
        let before = ss_syn_recv(&a);
        let report = a.run_saved_here("retransmits", &[]);
        let table = a.sockql(
            "SELECT remote_port, recv_q, send_q, timer, retransmits, timer_text, total_retrans, rtt_ms, inode, pid FROM sockets WHERE state = 'SYN-RECV' ORDER BY remote_port",
        );
        (ss_syn_recv(&a) == before).then_some((report, table, before))
    });
    assert_eq!(report.len(), 3, "{report:?}");
    for r in &report {
        let sport = r["remote_port"].as_u64().unwrap();
        let n = ss[&sport].3;
        assert!(n >= 1);
        assert_eq!(
            r,
            &json!({"state": "SYN-RECV", "local_addr": "10.231.7.1", "local_port": port, "remote_addr": "10.231.7.99", "remote_port": sport,
                    "total_retrans": n, "timeouts": n, "lost": null, "unacked": null, "bytes_retrans": null,
                    "rto_ms": null, "rtt_ms": null, "pid": null, "process": null}),
            "ss: {ss:?}"
        );
    }
    // The sockets table's row of each request socket equals ss: queues,
    // the timer's name and count; no tcp_info (ss -i prints none for
    // them), no inode, no process.
    assert_eq!(table.len(), 3, "{table:?}");
    for t in &table {
        let (recv_q, send_q, name, n) = ss[&t["remote_port"].as_u64().unwrap()].clone();
        assert_eq!(
            (t["recv_q"].clone(), t["send_q"].clone(), t["timer"].clone(), t["retransmits"].clone()),
            (json!(recv_q), json!(send_q), json!(name), json!(n)),
            "{t}"
        );
        let text = t["timer_text"].as_str().unwrap();
        assert!(text.starts_with("(on,") && text.ends_with(&format!(",{n})")), "{t}");
        assert_eq!(
            (t["total_retrans"].clone(), t["rtt_ms"].clone(), t["inode"].clone(), t["pid"].clone()),
            (json!(null), json!(null), json!(0), json!(null)),
            "{t}"
        );
    }
    let info = a.exec_ok("ss", &["-Htani", "state", "syn-recv"]);
    assert!(!info.contains("rtt:") && !info.contains("retrans:"), "ss -i shows tcp_info for a request socket: {info}");
    drop(l);
}
