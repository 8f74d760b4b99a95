//! Every shipped saved query, run against sockets made to exercise it,
//! inside namespaces this test creates so the rows are exactly ours.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::netns::{link, Netns};
use crate::packets::send_syns;

#[test]
fn states_with_percentages() {
    let ns = Netns::new("states");
    let held = ns.enter(|| {
        let l = listener("127.0.0.1:8080", 16);
        let c = TcpStream::connect("127.0.0.1:8080").unwrap();
        let (s, _) = l.accept().unwrap();
        (l, c, s, UdpSocket::bind("127.0.0.1:5353").unwrap())
    });
    assert_eq!(
        ns.run_saved_here("states", &[]),
        vec![
            json!({"protocol": "tcp", "state": "ESTAB", "sockets": 2, "pct": 50.0}),
            json!({"protocol": "tcp", "state": "LISTEN", "sockets": 1, "pct": 25.0}),
            json!({"protocol": "udp", "state": "UNCONN", "sockets": 1, "pct": 25.0}),
        ]
    );
    drop(held);
}

#[test]
fn estab_by_remote_matches_the_awk_pipeline() {
    let ns = Netns::new("remotes");
    let held = ns.enter(|| {
        let l = listener("127.0.0.1:8080", 16);
        let clients = vec![
            bind_connect("127.0.0.2:0", "127.0.0.1:8080"),
            bind_connect("127.0.0.2:0", "127.0.0.1:8080"),
            bind_connect("127.0.0.3:0", "127.0.0.1:8080"),
        ];
        let servers: Vec<TcpStream> = (0..3).map(|_| l.accept().unwrap().0).collect();
        (l, clients, servers)
    });
    let rows = ns.run_saved_here("estab_by_remote", &[]);
    assert_eq!(
        rows,
        vec![
            json!({"remote_addr": "127.0.0.1", "connections": 3}),
            json!({"remote_addr": "127.0.0.2", "connections": 2}),
            json!({"remote_addr": "127.0.0.3", "connections": 1}),
        ]
    );
    // The pipeline from the article, in the same namespace.
    let awk =
        ns.exec_ok("sh", &["-c", "ss -tna | grep ESTAB | awk '{print $5}' | cut -d: -f1 | sort | uniq -c | sort -nr"]);
    let from_awk: Vec<Value> = awk
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            json!({"remote_addr": f[1], "connections": f[0].parse::<u64>().unwrap()})
        })
        .collect();
    assert_eq!(rows, from_awk, "{awk}");
    drop(held);
}

#[test]
fn port_owner_and_process_sockets_list_holders_like_lsof() {
    let l = listener("127.0.0.1:0", 16);
    let p = port_of(&l);
    let mut child = spawn_sharing(l.as_raw_fd());
    let c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let cport = c.local_addr().unwrap().port();
    let (s, _) = l.accept().unwrap();
    let port_owner = || {
        let rows = Command::new(bin())
            .args(["run", "port_owner", "--param", &format!("port={p}"), "--format", "ndjson"])
            .output()
            .unwrap();
        parse_ndjson(&String::from_utf8(rows.stdout).unwrap())
    };
    let me = my_pid();
    let cols = |r: &Value| {
        (
            r["state"].clone(),
            r["local_port"].clone(),
            r["remote_port"].clone(),
            r["pid"].clone(),
            r["process"].clone(),
            r["fd"].clone(),
        )
    };
    let mut listen_owners = vec![(me, my_comm()), (child.id() as i64, "sleep".to_string())];
    listen_owners.sort();
    let mut estab = vec![
        (json!("ESTAB"), json!(cport), json!(p), json!(me), json!(my_comm()), json!(c.as_raw_fd())),
        (json!("ESTAB"), json!(p), json!(cport), json!(me), json!(my_comm()), json!(s.as_raw_fd())),
    ];
    estab.sort_by_key(|r| r.1.as_u64());
    let mut expected = estab;
    for (pid, name) in listen_owners {
        expected.push((json!("LISTEN"), json!(p), json!(0), json!(pid), json!(name), json!(l.as_raw_fd())));
    }
    settled(expected, || port_owner().iter().map(cols).collect::<Vec<_>>());
    let rows = port_owner();
    assert!(rows.iter().all(|r| r["user"] == "root" || unsafe { libc::geteuid() } != 0));
    // The other way round (lsof -i -a -p PID): the sharing child holds just
    // the listener, under the same descriptor number.
    let child_pid = child.id().to_string();
    let own_netns = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/proc/self/ns/net").unwrap());
    let (out, err, ok) = run(&["run", "process_sockets", "--param", &format!("pid={child_pid}"), "--format", "ndjson"]);
    assert!(ok, "{err}");
    assert_eq!(
        parse_ndjson(&out),
        vec![
            json!({"netns": own_netns, "netns_name": null, "fd": l.as_raw_fd(), "protocol": "tcp", "family": "inet", "state": "LISTEN",
                    "local_addr": "127.0.0.1", "local_port": p, "remote_addr": "0.0.0.0", "remote_port": 0, "recv_q": 0, "send_q": 16})
        ]
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn listeners_with_shared_workers() {
    let ns = Netns::new("listen");
    let (l, u) = ns.enter(|| (listener("127.0.0.1:8080", 16), UdpSocket::bind("127.0.0.1:5353").unwrap()));
    let mut child = spawn_sharing(l.as_raw_fd());
    let me = my_pid();
    let low = me.min(child.id() as i64);
    settled(
        vec![
            json!({"protocol": "tcp", "local_addr": "127.0.0.1", "local_port": 8080, "queued": 0, "backlog": 16, "pid": low, "process": if low == me { my_comm() } else { "sleep".into() }, "owner_processes": 2}),
            json!({"protocol": "udp", "local_addr": "127.0.0.1", "local_port": 5353, "queued": 0, "backlog": 0, "pid": me, "process": my_comm(), "owner_processes": 1}),
        ],
        || ns.run_saved_here("listeners", &[]),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop((l, u));
}

#[test]
fn syn_recv_pressure_from_half_open_connections() {
    let a = Netns::new("synA");
    let b = Netns::new("synB");
    let (va, _) = link(&a, &b, 1);
    // SYN-ACKs to 10.231.1.99 go to a MAC nobody has, so the handshakes
    // never complete and stay SYN-RECV, as under a SYN flood.
    a.exec_ok("ip", &["neigh", "add", "10.231.1.99", "lladdr", "02:00:00:00:00:63", "dev", &va, "nud", "permanent"]);
    let l = a.enter(|| listener("10.231.1.1:8080", 64));
    // An IPv6-only listener on the same port must not be given the IPv4
    // half-open connections (a join on the port alone did).
    let l6 = a.enter(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        s.set_only_v6(true).unwrap();
        s.bind(&"[::]:8080".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        s.listen(32).unwrap();
        s
    });
    b.enter(|| send_syns(Ipv4Addr::new(10, 231, 1, 99), 41000..41005, Ipv4Addr::new(10, 231, 1, 1), 8080));
    // Two real clients the application never accepts fill the accept queue.
    let clients = b.enter(|| (0..2).map(|_| TcpStream::connect("10.231.1.1:8080").unwrap()).collect::<Vec<_>>());
    let rows = eventually(WAIT, || {
        let r = a.run_saved("syn_recv", &[]);
        (r.len() == 1 && r[0]["syn_recv"] == 5 && r[0]["accept_queue"] == 2 && owned_by_me(&r)).then_some(r)
    });
    assert_eq!(
        rows,
        vec![
            json!({"netns": a.inode(), "netns_name": a.name, "local_addr": "10.231.1.1", "local_port": 8080, "syn_recv": 5, "sources": 1, "accept_queue": 2,
                    "backlog": 64, "accept_queue_pct": 3.1, "pid": my_pid(), "process": my_comm()})
        ]
    );
    // Cross-check the half-open count with ss.
    let ss = a.exec_ok("ss", &["-tn", "state", "syn-recv"]);
    assert_eq!(ss.lines().skip(1).count(), 5, "{ss}");
    // With --all-netns from the host, this namespace's rows are the same,
    // and the other namespace (no listener) adds none.
    settled(rows.clone(), || a.rows_of_all_netns("syn_recv"));
    assert_eq!(b.rows_of_all_netns("syn_recv"), Vec::<Value>::new());
    drop((l, l6, clients));
}

#[test]
fn close_wait_per_process() {
    let ns = Netns::new("cw");
    let held = ns.enter(|| {
        let l = listener("127.0.0.1:8080", 16);
        let mut servers = Vec::new();
        for _ in 0..3 {
            let mut c = TcpStream::connect("127.0.0.1:8080").unwrap();
            c.write_all(b"0123456789").unwrap();
            servers.push(l.accept().unwrap().0);
            drop(c); // the peer closes; the application (us) never does
        }
        (l, servers)
    });
    let rows = eventually(WAIT, || {
        let r = ns.run_saved_here("close_wait", &[]);
        (r.len() == 1 && r[0]["close_wait"] == 3 && owned_by_me(&r)).then_some(r)
    });
    assert_eq!(
        rows,
        vec![json!({"pid": my_pid(), "process": my_comm(), "close_wait": 3, "peers": 1, "unread_bytes": 30})]
    );
    drop(held);
}

#[test]
fn time_wait_against_a_small_ephemeral_range() {
    let ns = Netns::new("tw");
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40009");
    let held = ns.enter(|| {
        let l = listener("127.0.0.1:8080", 16);
        for _ in 0..3 {
            let c = TcpStream::connect("127.0.0.1:8080").unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.shutdown(Shutdown::Both).unwrap();
            drop(c); // we close first: our side ends in TIME-WAIT
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).unwrap();
        }
        let open = TcpStream::connect("127.0.0.1:8080").unwrap();
        let accepted = l.accept().unwrap().0;
        (l, open, accepted)
    });
    let rows = eventually(WAIT, || {
        let r = ns.run_saved("time_wait", &[]);
        (r.len() == 1 && r[0]["time_wait"] == 3).then_some(r)
    });
    assert_eq!(
        rows,
        vec![
            json!({"netns": ns.inode(), "netns_name": ns.name, "remote_addr": "127.0.0.1", "remote_port": 8080, "time_wait": 3, "ports_in_use": 4, "ephemeral_ports": 10, "pct_used": 40.0})
        ]
    );
    // A second namespace with its own range and TIME-WAIT to the same
    // endpoint: with --all-netns each namespace's row is its own (the port
    // range is joined per namespace, not multiplied across them), equal to
    // the report run inside it and to ss there.
    let other = Netns::new("tw2");
    other.sysctl("net.ipv4.ip_local_port_range", "41000 41019");
    let held2 = other.enter(|| {
        let l = listener("127.0.0.1:8080", 16);
        for _ in 0..2 {
            let c = TcpStream::connect("127.0.0.1:8080").unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.shutdown(Shutdown::Both).unwrap();
            drop(c);
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).unwrap();
        }
        l
    });
    let alone =
        eventually(WAIT, || Some(other.run_saved("time_wait", &[])).filter(|r| r.len() == 1 && r[0]["time_wait"] == 2));
    assert_eq!(alone[0]["ephemeral_ports"], json!(20));
    assert_eq!(other.exec_ok("ss", &["-Htn", "state", "time-wait"]).lines().count(), 2);
    assert_eq!(ns.rows_of_all_netns("time_wait"), rows);
    assert_eq!(other.rows_of_all_netns("time_wait"), alone);
    drop((held, held2));
}

#[test]
fn idle_estab_finds_only_the_quiet_connection() {
    let ns = Netns::new("idle");
    let (l, quiet) = ns.enter(|| {
        let l = listener("127.0.0.1:8080", 16);
        let c = TcpStream::connect("127.0.0.1:8080").unwrap();
        let s = l.accept().unwrap().0;
        (l, (c, s))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut busy = ns.enter(|| TcpStream::connect("127.0.0.1:8080").unwrap());
    let (mut busy_s, _) = l.accept().unwrap();
    busy.write_all(b"x").unwrap();
    busy_s.read_exact(&mut [0u8; 1]).unwrap();
    let rows = eventually(WAIT, || Some(ns.run_saved_here("idle_estab", &["seconds=1"])).filter(|r| owned_by_me(r)));
    let ports: Vec<(Value, Value)> = rows.iter().map(|r| (r["local_port"].clone(), r["remote_port"].clone())).collect();
    let qc = quiet.0.local_addr().unwrap().port();
    let mut expected = vec![(json!(8080), json!(qc)), (json!(qc), json!(8080))];
    expected.sort_by_key(|p| p.0.as_u64());
    let mut ports_sorted = ports.clone();
    ports_sorted.sort_by_key(|p| p.0.as_u64());
    assert_eq!(ports_sorted, expected, "{rows:?}");
    assert!(rows.iter().all(|r| r["idle_s"].as_f64().unwrap() >= 1.0 && r["pid"] == my_pid()));
    // The default threshold (300 s) finds nothing in a namespace this young.
    assert_eq!(ns.run_saved_here("idle_estab", &[]), Vec::<Value>::new());
    drop((l, quiet, busy, busy_s));
}

#[test]
fn retransmits_when_the_peer_goes_silent() {
    let a = Netns::new("rtxA");
    let b = Netns::new("rtxB");
    let (_, vb) = link(&a, &b, 2);
    let l = a.enter(|| listener("10.231.2.1:8080", 16));
    let client = b.enter(|| TcpStream::connect("10.231.2.1:8080").unwrap());
    let (mut server, _) = l.accept().unwrap();
    // The peer vanishes: every segment we send now goes unanswered.
    b.exec_ok("ip", &["link", "set", &vb, "down"]);
    server.write_all(&[1u8; 1000]).unwrap();
    let rows = eventually(Duration::from_secs(10), || {
        let r = a.run_saved_here("retransmits", &[]);
        (r.len() == 1 && r[0]["total_retrans"].as_u64() >= Some(2) && owned_by_me(&r)).then_some(r)
    });
    let r = &rows[0];
    assert_eq!(
        (r["state"].clone(), r["local_port"].clone(), r["remote_addr"].clone()),
        (json!("ESTAB"), json!(8080), json!("10.231.2.2"))
    );
    assert_eq!(r["remote_port"], client.local_addr().unwrap().port());
    assert!(r["timeouts"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["unacked"].as_u64().unwrap() >= 1 && r["bytes_retrans"].as_u64().unwrap() >= 1000, "{r}");
    assert_eq!(r["pid"], my_pid());
    // The metric serve exports: one retransmitting connection of this
    // process, timing out now, with at least the segments counted above
    // (read later, the count can only have grown).
    let metric = a.run_saved_here("metric_retransmits", &[]);
    let mine: Vec<&Value> = metric.iter().filter(|m| m["pid"] == json!(my_pid().to_string())).collect();
    assert_eq!(mine.len(), 1, "{metric:?}");
    assert_eq!((mine[0]["connections"].clone(), mine[0]["timing_out"].clone()), (json!(1), json!(1)), "{metric:?}");
    assert!(mine[0]["segments"].as_u64().unwrap() >= r["total_retrans"].as_u64().unwrap(), "{metric:?} after {r}");
    drop((l, client));
}

#[test]
fn built_in_set_works_without_a_queries_directory() {
    let dir = std::env::temp_dir().join(format!("sockql-builtin-{}", std::process::id()));
    let config = dir.join("config");
    std::fs::create_dir_all(config.join("sockql/queries")).unwrap();
    std::fs::write(
        config.join("sockql/queries/mine.sql"),
        "-- name: mine\n-- description: my own\n-- param: n 2\nSELECT $n + 1 AS three;\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .current_dir(&dir)
        .env("XDG_CONFIG_HOME", &config)
        .args(["run", "--list", "--format", "ndjson"])
        .output()
        .unwrap();
    let list = parse_ndjson(&String::from_utf8(out.stdout).unwrap());
    let names: Vec<&str> = list.iter().map(|r| r["name"].as_str().unwrap()).collect();
    for n in [
        "states",
        "estab_by_remote",
        "port_owner",
        "listeners",
        "syn_recv",
        "close_wait",
        "time_wait",
        "idle_estab",
        "retransmits",
        "mine",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let states = list.iter().find(|r| r["name"] == "states").unwrap();
    assert_eq!(states["origin"], "built-in:states.sql");
    let mine = list.iter().find(|r| r["name"] == "mine").unwrap();
    assert_eq!((mine["params"].clone(), mine["description"].clone()), (json!("n=2"), json!("my own")));
    let run = |args: &[&str]| {
        output_of(
            Command::new(bin())
                .current_dir(&dir)
                .env("XDG_CONFIG_HOME", &config)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap(),
        )
    };
    assert_eq!(run(&["run", "mine", "--format", "csv", "--no-header"]).0, "3\n");
    // Parameters are values, never SQL text.
    let (_, err, ok) = run(&["run", "mine", "--param", "n=1; DROP TABLE x"]);
    assert!(!ok && err.contains("sockql: error:"), "{err}");
    let (out, _, ok) = run(&["run", "mine", "--param", "n=40", "--format", "csv", "--no-header"]);
    assert!(ok);
    assert_eq!(out, "41\n");
    // A broken file names itself and the line.
    std::fs::write(
        config.join("sockql/queries/bad.sql"),
        "-- name: bad\n-- description: broken\nSELECT 1\nFROM sockets WHERE;\n",
    )
    .unwrap();
    let (_, err, ok) = run(&["run", "bad"]);
    assert!(!ok);
    assert!(err.contains("sockql/queries/bad.sql:4: SQL syntax error"), "{err}");
    std::fs::write(config.join("sockql/queries/bad.sql"), "-- name: bad\n-- description: broken\nSELECT $nope;\n")
        .unwrap();
    let (_, err, _) = run(&["run", "--list"]);
    assert!(err.contains("bad.sql:3: unknown parameter $nope"), "{err}");
    let (_, err, ok) = run(&["run", "nope"]);
    assert!(!ok && err.contains("no saved query named 'nope'"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn query_files_report_file_and_line() {
    let dir = std::env::temp_dir().join(format!("sockql-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("r.sql");
    std::fs::write(&f, "SELECT 1;\n\nSELECT nope\nFROM sockets;\n").unwrap();
    let (_, err, ok) = run(&["-f", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(&format!("{}:3: Schema error: No field named nope", f.display())), "{err}");
    std::fs::write(&f, "-- name: withparam\n-- description: d\n-- param: port 22\nSELECT $port AS port;\n").unwrap();
    let (out, _, _) = run(&["-f", f.to_str().unwrap(), "--format", "csv", "--param", "port=2222"]);
    assert_eq!(out, "port\n2222\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
