//! Filters pushed into the kernel return exactly what DataFusion's own
//! filtering returns, and the kernel really does the filtering.

use std::net::TcpStream;
use std::ops::ControlFlow;

use sockql::collect::sock_diag::inet::{Cond, Extensions, AF_INET, AF_INET6, AF_UNSPEC, IPPROTO_TCP};
use sockql::collect::sock_diag::{InetRequest, SockDiag};
use sockql::collect::tcp_state::ALL_BITS;
use sockql::collect::Error;

use crate::common::*;
use crate::netns::Netns;

#[test]
fn pushed_port_and_address_filters_match_unpushed_ones() {
    let ns = Netns::new("push");
    let held = ns.enter(|| {
        let mut held = Vec::new();
        for port in [7000u16, 7001, 7100, 8000] {
            let l = listener(&format!("127.0.0.1:{port}"), 8);
            for src in ["127.0.0.2", "127.0.0.3"] {
                held.push(bind_connect(&format!("{src}:0"), &format!("127.0.0.1:{port}")));
                held.push(l.accept().unwrap().0);
            }
            held.push(TcpStream::connect(format!("127.0.0.1:{port}")).unwrap());
            held.push(l.accept().unwrap().0);
            std::mem::forget(l);
        }
        held
    });
    let filters = [
        "local_port = 7001",
        "local_port BETWEEN 7000 AND 7100",
        "local_port > 7000 AND local_port <= 7100",
        "local_port IN (7000, 8000)",
        "remote_port >= 7100",
        "remote_port = 7000 AND local_addr = '127.0.0.2'",
        "remote_addr = '127.0.0.3'",
        "local_addr = '127.0.0.1' AND local_port < 7100",
        "local_port = 99999",
        "local_addr = 'not an address'",
        "local_addr = '::1'",
    ];
    for f in filters {
        // `+ 0` and `|| ''` hide the columns from pushdown: DataFusion filters.
        let hidden = f
            .replace("local_port", "(local_port + 0)")
            .replace("remote_port", "(remote_port + 0)")
            .replace("local_addr", "(local_addr || '')")
            .replace("remote_addr", "(remote_addr || '')");
        let cols = "state, local_addr, local_port, remote_addr, remote_port";
        let pushed = ns.sockql(&format!("SELECT {cols} FROM sockets WHERE {f} ORDER BY 1, 2, 3, 4, 5"));
        let plain = ns.sockql(&format!("SELECT {cols} FROM sockets WHERE {hidden} ORDER BY 1, 2, 3, 4, 5"));
        assert_eq!(pushed, plain, "filter {f}");
        let explain = ns.exec_ok(bin(), &["--format", "csv", &format!("EXPLAIN SELECT {cols} FROM sockets WHERE {f}")]);
        assert!(explain.contains("LiveScanExec: sockets: sock_diag"), "{explain}");
    }
    // Spot checks that the sets are what the sockets are.
    let n = |f: &str| ns.sockql(&format!("SELECT count(*) AS n FROM sockets WHERE {f}"))[0]["n"].clone();
    assert_eq!(n("local_port = 7001"), 4, "listener + 3 accepted");
    assert_eq!(n("remote_addr = '127.0.0.3'"), 4, "the accepted side of 127.0.0.3's connections");
    let explain = ns.exec_ok(
        bin(),
        &[
            "--format",
            "csv",
            "EXPLAIN SELECT * FROM sockets WHERE local_port BETWEEN 7000 AND 7100 AND remote_addr = '127.0.0.3'",
        ],
    );
    assert!(
        explain.contains("dumps=[tcp/inet,udp/inet,raw/inet]")
            && explain.contains("bytecode=[LocalPortGe(7000) AND LocalPortLe(7100) AND RemoteAddr(127.0.0.3)]"),
        "{explain}"
    );
    drop(held);
}

/// The kernel itself drops what the bytecode rejects: the dump carries
/// only the matching sockets.
#[test]
fn the_kernel_applies_the_filter_program() {
    let ns = Netns::new("bc");
    let (counts, held) = ns.enter(|| {
        let ls: Vec<_> = [9001u16, 9002, 9003].iter().map(|p| listener(&format!("127.0.0.1:{p}"), 4)).collect();
        let mut nl = SockDiag::open().unwrap();
        let mut count = |conds: &[Cond]| {
            let mut n = 0;
            let req = InetRequest {
                protocol: IPPROTO_TCP,
                family: AF_INET,
                states: ALL_BITS,
                extensions: Extensions::default(),
                conds: conds.to_vec(),
            };
            nl.inet(&req, None, |_| {
                n += 1;
                Ok::<_, Error>(ControlFlow::Continue(()))
            })
            .unwrap();
            n
        };
        let counts = vec![
            count(&[]),
            count(&[Cond::LocalPortGe(9002)]),
            count(&[Cond::LocalPortGe(9002), Cond::LocalPortLe(9002)]),
            count(&[Cond::LocalAddr("127.0.0.2".parse().unwrap())]),
        ];
        (counts, ls)
    });
    assert_eq!(counts, vec![3, 2, 1, 0]);
    drop(held);
}

/// One TCP request covers both families (the kernel walks its hash tables
/// once): it returns exactly what the two per-family requests return
/// together, with state masks and bytecode too, and sockql uses it.
#[test]
fn one_tcp_dump_covers_both_families() {
    let ns = Netns::new("fam");
    let (sets, held) = ns.enter(|| {
        let mut held = Vec::new();
        for addr in ["127.0.0.1:7200", "[::1]:7200", "127.0.0.1:7300", "[::1]:7301"] {
            let l = listener(addr, 8);
            held.push(TcpStream::connect(addr).unwrap());
            held.push(l.accept().unwrap().0);
            std::mem::forget(l);
        }
        let mut nl = SockDiag::open().unwrap();
        let mut rows = |family: u8, states: u32, conds: &[Cond]| {
            let mut out = Vec::new();
            let req = InetRequest {
                protocol: IPPROTO_TCP,
                family,
                states,
                extensions: Extensions::default(),
                conds: conds.to_vec(),
            };
            nl.inet(&req, None, |m| {
                out.push((m.family(), m.state(), m.local_port(), m.remote_port(), m.inode()));
                Ok::<_, Error>(ControlFlow::Continue(()))
            })
            .unwrap();
            out.sort();
            out
        };
        let mut sets = Vec::new();
        for (states, conds) in
            [(ALL_BITS, vec![]), (1 << 10, vec![]), (ALL_BITS, vec![Cond::LocalPortGe(7300), Cond::LocalPortLe(7301)])]
        {
            let one = rows(AF_UNSPEC, states, &conds);
            let mut two = rows(AF_INET, states, &conds);
            two.extend(rows(AF_INET6, states, &conds));
            two.sort();
            sets.push((one, two));
        }
        (sets, held)
    });
    let sizes: Vec<usize> = sets.iter().map(|(one, _)| one.len()).collect();
    assert_eq!(sizes, vec![12, 4, 4], "all; listeners; local ports 7300-7301 (two listeners, two accepted)");
    for (one, two) in &sets {
        assert_eq!(one, two);
    }
    assert!(sets[0].0.iter().any(|r| r.0 == AF_INET) && sets[0].0.iter().any(|r| r.0 == AF_INET6));
    let explain = ns.exec_ok(bin(), &["--format", "csv", "EXPLAIN SELECT count(*) FROM sockets"]);
    assert!(explain.contains("dumps=[tcp/inet+inet6,udp/inet,udp/inet6,raw/inet,raw/inet6]"), "{explain}");
    // UDP and raw sockets are never LISTEN: a listener scan skips their dumps.
    let explain =
        ns.exec_ok(bin(), &["--format", "csv", "EXPLAIN SELECT count(*) FROM sockets WHERE state = 'LISTEN'"]);
    assert!(explain.contains("dumps=[tcp/inet+inet6] "), "{explain}");
    let by_family = ns.sockql("SELECT family, count(*) AS n FROM sockets GROUP BY family ORDER BY family");
    assert_eq!(
        by_family,
        vec![serde_json::json!({"family": "inet", "n": 6}), serde_json::json!({"family": "inet6", "n": 6})]
    );
    assert_eq!(ns.exec_ok("ss", &["-Htan"]).lines().count(), 12);
    drop(held);
}

/// Filters the reader applies exactly need no re-check: no FilterExec is
/// left above the scan for state, protocol, family and netns; port and
/// address conditions stay Inexact and are re-checked. EXPLAIN ANALYZE
/// shows what the scan read from the kernel.
#[test]
fn exact_filters_leave_no_recheck_and_scans_report_what_they_read() {
    let explain = |sql: &str| -> String {
        let (out, err, ok) = run(&["--format", "csv", &format!("EXPLAIN {sql}")]);
        assert!(ok, "{err}");
        out.split("physical_plan").nth(1).unwrap_or("").to_string()
    };
    for sql in [
        "SELECT local_port FROM sockets WHERE state = 'LISTEN' AND protocol = 'tcp'",
        "SELECT local_port FROM sockets WHERE state IN ('ESTAB', 'TIME-WAIT') AND family = 'inet6'",
        "SELECT local_port FROM sockets WHERE netns_name = 'nosuchnamespace'",
        "SELECT path FROM unix_sockets WHERE netns_name = 'nosuchnamespace'",
    ] {
        let plan = explain(sql);
        assert!(plan.contains("LiveScanExec") && !plan.contains("FilterExec"), "{sql}: {plan}");
    }
    let plan = explain("SELECT local_port FROM sockets WHERE local_port = 22 AND state = 'LISTEN'");
    assert!(plan.contains("FilterExec: local_port@0 = 22") && !plan.contains("state@"), "{plan}");
    // Exact answers equal re-checked ones: the same filter hidden from the
    // scan behind an expression gives the same rows.
    let l = listener("127.0.0.1:0", 3);
    let p = port_of(&l);
    let rows = |w: &str| {
        query(&format!(
            "SELECT protocol, family, state, local_port FROM sockets WHERE local_port = {p} AND {w} ORDER BY 1, 2, 3"
        ))
    };
    assert_eq!(
        rows("state = 'LISTEN' AND protocol = 'tcp' AND family = 'inet'"),
        rows("state || '' = 'LISTEN' AND protocol || '' = 'tcp' AND family || '' = 'inet'")
    );
    assert_eq!(rows("state = 'LISTEN'").len(), 1);
    assert_eq!(rows("state = 'listen'"), rows("state || '' = 'listen'"), "exact matching is case-sensitive, as SQL is");
    // EXPLAIN ANALYZE: messages, bytes and dumps read, rows produced.
    let (out, err, ok) = run(&["--format", "csv", &format!("EXPLAIN ANALYZE SELECT count(*) FROM sockets WHERE local_port = {p} AND protocol = 'tcp' AND state = 'LISTEN'")]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("LiveScanExec")).unwrap_or_else(|| panic!("{out}"));
    for metric in ["output_rows=1", "kernel_messages=1", "netlink_dumps=1", "proc_reads=0", "kernel_bytes="] {
        assert!(line.contains(metric), "{metric} not in {line}");
    }
    let (out, err, ok) = run(&[
        "--no-netlink",
        "--format",
        "csv",
        &format!("EXPLAIN ANALYZE SELECT count(*) FROM sockets WHERE local_port = {p} AND protocol = 'tcp'"),
    ]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.contains("LiveScanExec")).unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("netlink_dumps=0") && line.contains("proc_reads=2") && line.contains("kernel_messages=0"),
        "{line}"
    );
    drop(l);
}
