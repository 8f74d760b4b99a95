//! The whole host: several namespaces (named ones, and one held only by a
//! running process), --all-netns attribution, namespace filters that enter
//! only the namespaces asked for, per-namespace counters, sysctls and unix
//! sockets, and the `health` report.

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;
use crate::netns::{link, Netns};
use crate::packets::send_syns;

fn ino(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// A namespace known only through a process inside it (as a container's).
struct Unnamed {
    child: std::process::Child,
}

impl Unnamed {
    fn new() -> Unnamed {
        let child = Command::new("unshare").args(["--net", "sleep", "60"]).spawn().unwrap();
        let path = format!("/proc/{}/ns/net", child.id());
        // unshare(2) happens just after the fork: wait until it has.
        eventually(WAIT, || (ino(&path) != ino("/proc/self/ns/net")).then_some(()));
        Unnamed { child }
    }
    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.child.id())
    }
    fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = std::fs::File::open(self.path()).unwrap();
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn all_netns_finds_every_namespace_and_filters_enter_only_one() {
    let a = Netns::new("hostA");
    let b = Netns::new("hostB");
    let c = Unnamed::new();
    let la = a.enter(|| listener("127.0.0.1:7101", 4));
    let lb = b.enter(|| listener("127.0.0.1:7102", 4));
    let lc = c.enter(|| listener("127.0.0.1:7103", 4));
    let (ia, ib, ic) = (ino(&format!("/run/netns/{}", a.name)), ino(&format!("/run/netns/{}", b.name)), ino(&c.path()));
    let sql = "SELECT local_port, netns, netns_name, pid FROM sockets WHERE state = 'LISTEN' AND local_port BETWEEN 7101 AND 7103 ORDER BY 1";
    settled(
        vec![
            json!({"local_port": 7101, "netns": ia, "netns_name": a.name, "pid": my_pid()}),
            json!({"local_port": 7102, "netns": ib, "netns_name": b.name, "pid": my_pid()}),
            json!({"local_port": 7103, "netns": ic, "netns_name": null, "pid": my_pid()}),
        ],
        || query_with(&["--all-netns"], sql),
    );
    // Without --all-netns: only the current namespace, where none of them is.
    assert_eq!(query(sql), Vec::<Value>::new());
    // A filter on the namespace enters only that one, with or without --all-netns.
    let only_b = format!("SELECT local_port FROM sockets WHERE netns_name = '{}' AND state = 'LISTEN'", b.name);
    assert_eq!(query(&only_b), vec![json!({"local_port": 7102})]);
    let explain = run(&["--format", "csv", &format!("EXPLAIN {only_b}")]).0;
    assert!(explain.contains(&format!("netns=[{}]", b.name)), "{explain}");
    let by_inode = query(&format!("SELECT local_port FROM sockets WHERE netns = {ic} AND state = 'LISTEN'"));
    assert_eq!(by_inode, vec![json!({"local_port": 7103})]);
    // The netns table knows all three; the unnamed one by its process.
    let ns_rows = query(&format!(
        "SELECT netns, name, pid, processes FROM netns WHERE netns IN ({ia}, {ib}, {ic}) ORDER BY name NULLS LAST"
    ));
    let mut expected = vec![
        json!({"netns": ia, "name": a.name, "pid": null, "processes": 0}),
        json!({"netns": ib, "name": b.name, "pid": null, "processes": 0}),
    ];
    expected.sort_by_key(|v| v["name"].as_str().unwrap().to_string());
    expected.push(json!({"netns": ic, "name": null, "pid": c.child.id(), "processes": 1}));
    assert_eq!(ns_rows, expected);
    let p = query(&format!("SELECT netns FROM processes WHERE pid = {}", c.child.id()));
    assert_eq!(p, vec![json!({"netns": ic})]);
    drop((la, lb, lc));
}

#[test]
fn counters_sysctls_and_unix_sockets_per_namespace() {
    let ns = Netns::new("ctr");
    ns.sysctl("net.ipv4.ip_local_port_range", "41000 41999");
    let counter = |name: &str| -> i64 {
        ns.sockql(&format!("SELECT value FROM net_counters WHERE mib = 'TcpExt' AND name = '{name}'"))[0]["value"]
            .as_i64()
            .unwrap()
    };
    let before = counter("ListenOverflows");
    // A listener with backlog 1 that never accepts: connections overflow it.
    let (l, clients) = ns.enter(|| {
        let l = listener("127.0.0.1:7200", 1);
        let clients: Vec<socket2::Socket> = (0..6)
            .map(|_| {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&"127.0.0.1:7200".parse::<std::net::SocketAddr>().unwrap().into());
                s
            })
            .collect();
        (l, clients)
    });
    let after = eventually(WAIT, || Some(counter("ListenOverflows")).filter(|&v| v > before));
    assert!(after > before, "ListenOverflows {before} -> {after}");
    // The same counter, seen from outside through --all-netns.
    let outside = query_with(
        &["--all-netns"],
        &format!("SELECT value FROM net_counters WHERE netns_name = '{}' AND name = 'ListenOverflows'", ns.name),
    );
    assert!(outside[0]["value"].as_i64().unwrap() >= after);
    // sysctls are per namespace.
    let ranges = query_with(&["--all-netns"], &format!(
        "SELECT netns_name, value FROM sysctls WHERE name = 'net.ipv4.ip_local_port_range' AND (netns_name = '{}' OR netns = {})",
        ns.name, ino("/proc/self/ns/net")));
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(ranges.contains(&json!({"netns_name": ns.name, "value": "41000 41999"})), "{ranges:?}");
    assert!(ranges.iter().any(|r| r["netns_name"].is_null() && r["value"] != "41000 41999"), "{ranges:?}");
    // sockstat counts the namespace's TCP sockets (ss -s).
    let inuse =
        ns.sockql("SELECT value FROM sockstat WHERE protocol = 'TCP' AND name = 'inuse'")[0]["value"].as_i64().unwrap();
    let ss = ns
        .exec_ok("ss", &["-tan"])
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("TIME-WAIT") && !l.starts_with("SYN-RECV"))
        .count() as i64;
    assert_eq!(inuse, ss, "sockstat TCP inuse vs ss");
    // unix sockets of the namespace, with owners.
    let dir = std::env::temp_dir().join(format!("sockql-unix-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    let p2 = path.clone();
    let ul = ns.enter(move || std::os::unix::net::UnixListener::bind(&p2).unwrap());
    // (sockql's own runtime holds a unix socket pair there too: it runs inside.)
    settled(
        vec![json!({"type": "stream", "state": "LISTEN", "path": path.to_str().unwrap(), "pid": my_pid()})],
        || ns.sockql("SELECT type, state, path, pid FROM unix_sockets WHERE state = 'LISTEN'"),
    );
    let ssx = ns.exec_ok("ss", &["-xl"]);
    assert_eq!(ssx.lines().skip(1).count(), 1, "{ssx}");
    std::fs::remove_dir_all(dir).unwrap();
    drop((l, clients, ul));
}

#[test]
fn retransmits_move_the_counters() {
    let a = Netns::new("rcA");
    let b = Netns::new("rcB");
    let (_, vb) = link(&a, &b, 4);
    let l = a.enter(|| listener("10.231.4.1:8080", 4));
    let client = b.enter(|| TcpStream::connect("10.231.4.1:8080").unwrap());
    let (mut server, _) = l.accept().unwrap();
    let retrans = || {
        a.sockql("SELECT value FROM net_counters WHERE mib = 'Tcp' AND name = 'RetransSegs'")[0]["value"]
            .as_i64()
            .unwrap()
    };
    let before = retrans();
    b.exec_ok("ip", &["link", "set", &vb, "down"]);
    server.write_all(&[0u8; 500]).unwrap();
    let after = eventually(std::time::Duration::from_secs(10), || Some(retrans()).filter(|&v| v >= before + 2));
    assert!(after >= before + 2);
    drop((l, client));
}

#[test]
fn health_reports_each_rule_with_evidence() {
    let a = Netns::new("hlA");
    let b = Netns::new("hlB");
    let (va, _) = link(&a, &b, 5);
    a.sysctl("net.ipv4.ip_local_port_range", "42000 42009");
    a.exec_ok("ip", &["neigh", "add", "10.231.5.99", "lladdr", "02:00:00:00:00:63", "dev", &va, "nud", "permanent"]);
    let held = a.enter(|| {
        let syn_l = listener("10.231.5.1:8080", 64);
        let l = listener("127.0.0.1:9000", 16);
        let mut keep = Vec::new();
        // Three CLOSE-WAIT held by us.
        for _ in 0..3 {
            let c = TcpStream::connect("127.0.0.1:9000").unwrap();
            keep.push(l.accept().unwrap().0);
            drop(c);
        }
        // Five TIME-WAIT toward 127.0.0.1:9000 out of a 10-port range.
        for _ in 0..5 {
            let c = TcpStream::connect("127.0.0.1:9000").unwrap();
            let mut s = l.accept().unwrap().0;
            c.shutdown(std::net::Shutdown::Both).unwrap();
            drop(c);
            let mut sink = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut sink).unwrap();
        }
        // A full accept queue (2 waiting, backlog 2) and a near miss
        // (3 waiting, backlog 4); the clients use ports outside the
        // namespace's ephemeral range so the port rule does not count them.
        let full = listener("127.0.0.1:9200", 2);
        let near = listener("127.0.0.1:9201", 4);
        for (i, dst) in ["127.0.0.1:9200", "127.0.0.1:9200", "127.0.0.1:9201", "127.0.0.1:9201", "127.0.0.1:9201"]
            .iter()
            .enumerate()
        {
            keep.push(bind_connect(&format!("127.0.0.1:{}", 50001 + i), dst));
        }
        (syn_l, l, keep, full, near)
    });
    b.enter(|| send_syns(Ipv4Addr::new(10, 231, 5, 99), 43000..43004, Ipv4Addr::new(10, 231, 5, 1), 8080));
    // Four findings, the CLOSE-WAIT one naming this process (see settled()).
    let cw_subject = json!(format!("pid {} ({})", my_pid(), my_comm()));
    let rows = eventually(WAIT, || {
        let r = a.run_saved("health", &["syn_recv_min=4", "close_wait_min=3", "ports_pct_min=50", "idle_seconds=3600"]);
        (r.len() == 4 && r.iter().any(|f| f["subject"] == cw_subject)).then_some(r)
    });
    let by_rule =
        |rule: &str| rows.iter().find(|r| r["rule"] == rule).unwrap_or_else(|| panic!("no {rule} in {rows:?}")).clone();
    let syn = by_rule("syn-flood-or-slow-accept");
    assert_eq!((syn["subject"].clone(), syn["value"].clone()), (json!("port 8080"), json!(4)));
    assert!(syn["evidence"].as_str().unwrap().starts_with("4 SYN-RECV from 1 sources; ListenOverflows="), "{syn}");
    let cw = by_rule("close-wait-leak");
    assert_eq!(
        (cw["subject"].clone(), cw["value"].clone()),
        (json!(format!("pid {} ({})", my_pid(), my_comm())), json!(3))
    );
    let ports = by_rule("ephemeral-port-exhaustion");
    // 5 TIME-WAIT plus the 3 orphaned FIN-WAIT-2 client ends of the CLOSE-WAIT pairs.
    assert_eq!((ports["subject"].clone(), ports["value"].clone()), (json!("127.0.0.1:9000"), json!(8)));
    assert!(
        ports["evidence"].as_str().unwrap().starts_with("8 of 10 local ports in use towards it (5 in TIME-WAIT)"),
        "{ports}"
    );
    let queue = by_rule("accept-queue-full");
    assert_eq!((queue["subject"].clone(), queue["value"].clone()), (json!("port 9200"), json!(2)), "not 9201 (3 of 4)");
    assert!(queue["evidence"].as_str().unwrap().starts_with("accept queue 2/2 ("), "{queue}");
    assert!(rows.iter().all(|r| r["netns_name"] == a.name));
    // ss agrees on both queues: Recv-Q waiting, Send-Q the backlog.
    let ss = a.exec_ok("ss", &["-Htln", "sport", "ge", ":9200", "and", "sport", "le", ":9201"]);
    let mut queues: Vec<(String, String)> = ss
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[1].to_string(), f[2].to_string())
        })
        .collect();
    queues.sort();
    assert_eq!(queues, vec![("2".into(), "2".into()), ("3".into(), "4".into())], "{ss}");
    // Near misses, one below each threshold: 4 SYN-RECV under a minimum
    // of 5, 3 CLOSE-WAIT under 4, 8 of 10 ports (80%) under 81%; only the
    // full queue stays.
    let near: Vec<Value> = a
        .run_saved("health", &["syn_recv_min=5", "close_wait_min=4", "ports_pct_min=81", "idle_seconds=3600"])
        .into_iter()
        .map(|r| r["rule"].clone())
        .collect();
    assert_eq!(near, vec![json!("accept-queue-full")]);
    // With the default thresholds the port finding stays too: 80% of the
    // range is over the default 50%, 4 SYN-RECV and 3 CLOSE-WAIT are few.
    let mut defaults: Vec<Value> = a.run_saved("health", &[]).into_iter().map(|r| r["rule"].clone()).collect();
    defaults.sort_by_key(|v| v.to_string());
    assert_eq!(defaults, vec![json!("accept-queue-full"), json!("ephemeral-port-exhaustion")]);
    drop(held);
}

/// The idle rule knows keepalive: a quiet connection whose keepalive timer
/// runs (no unanswered probe) is a near miss that must not be reported;
/// the same quiet connection without keepalive is.
#[test]
fn health_idle_rule_spares_connections_with_keepalive() {
    let ns = Netns::new("hlK");
    let (quiet, kept) = ns.enter(|| {
        let l = listener("127.0.0.1:9100", 8);
        let pair = |keepalive: bool| {
            let c = TcpStream::connect("127.0.0.1:9100").unwrap();
            let s = l.accept().unwrap().0;
            for end in [&c, &s] {
                socket2::SockRef::from(end).set_keepalive(keepalive).unwrap();
            }
            (c, s)
        };
        (pair(false), pair(true))
    });
    // Both pairs go quiet for over a second; the kept pair's timer is keepalive.
    let timers = |ns: &Netns| {
        ns.sockql("SELECT timer, count(*) AS n FROM sockets WHERE state = 'ESTAB' AND least(last_recv_ms, last_send_ms) > 1000 GROUP BY 1 ORDER BY 1")
    };
    eventually(std::time::Duration::from_secs(10), || {
        (timers(&ns) == vec![json!({"timer": "keepalive", "n": 2}), json!({"timer": null, "n": 2})]).then_some(())
    });
    let idle: Vec<Value> =
        ns.run_saved("health", &["idle_seconds=1"]).into_iter().filter(|r| r["rule"] == "idle-established").collect();
    assert_eq!(idle.len(), 1, "{idle:?}");
    assert_eq!(idle[0]["value"], json!(2), "only the pair without keepalive: {idle:?}");
    assert!(idle[0]["evidence"].as_str().unwrap().contains("none with keepalive"), "{idle:?}");
    drop((quiet, kept));
}
