//! `socket_events` against what polling sees and what `ss -E` sees: 5,000
//! connections that each live about 10 ms, in a namespace of their own.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::netns::Netns;

const PORT: u16 = 7070;
const THREADS: usize = 50;
const PER_THREAD: usize = 100;

/// Netlink sockets of `protocol` (4 sock_diag, 11 connector, 12
/// netfilter) that joined multicast groups, in /proc/net/netlink's `text`;
/// only those of netlink port `port` when given (a process's first socket
/// has its pid as port).
pub(crate) fn subscribed(text: &str, protocol: &str, port: Option<u32>) -> usize {
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == protocol && f[3] != "00000000" && port.is_none_or(|p| f[2] == p.to_string())
        })
        .count()
}

/// Destroy listeners (sock_diag sockets with groups) in `ns`.
fn listener_count(ns: &Netns) -> usize {
    subscribed(&ns.exec_ok("cat", &["/proc/net/netlink"]), "4", None)
}

/// sockql listening to `process_events` with `sql` for up to a minute,
/// once it has subscribed; its output as it comes.
fn process_listener(sql: &str) -> (Reaped, std::thread::JoinHandle<String>) {
    let mut events = Reaped(
        Command::new(bin())
            .args(["--capture-for", "60s", "--format", "ndjson", sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = collect(&mut events);
    let id = events.id();
    eventually(WAIT, || {
        (subscribed(&std::fs::read_to_string("/proc/net/netlink").ok()?, "11", Some(id)) > 0).then_some(())
    });
    (events, out)
}

/// A child killed when dropped, so a failing test leaves no listener or
/// poller running behind it.
pub struct Reaped(pub(crate) Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_in(ns: &Netns, args: &[&str]) -> Reaped {
    Reaped(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Read a child's output as it comes (a full pipe would stall the child,
/// and a stalled listener loses events), until it exits.
fn collect(child: &mut Reaped) -> std::thread::JoinHandle<String> {
    let mut out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        text
    })
}

/// 5,000 connections to PORT, each sending 100 + i bytes and living about
/// 10 ms, from 50 threads; returns (client port, bytes sent) for each
/// (a port can serve two of them: loopback reuses TIME-WAIT ports).
fn short_connections() -> Vec<(u16, usize)> {
    let l = TcpListener::bind(("127.0.0.1", PORT)).unwrap();
    let server = std::thread::spawn(move || {
        let mut done = Vec::new();
        for _ in 0..THREADS * PER_THREAD {
            let (mut s, _) = l.accept().unwrap();
            done.push(std::thread::spawn(move || {
                let mut got = Vec::new();
                s.read_to_end(&mut got).unwrap();
            }));
        }
        done.into_iter().for_each(|t| t.join().unwrap());
    });
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                for i in 0..PER_THREAD {
                    let n = 100 + t * PER_THREAD + i;
                    let mut c = TcpStream::connect(("127.0.0.1", PORT)).unwrap();
                    c.write_all(&vec![1u8; n]).unwrap();
                    // The connection's life: what a poll every second misses.
                    std::thread::sleep(Duration::from_millis(10));
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    c.read_to_end(&mut rest).unwrap();
                    sent.push((c.local_addr().unwrap().port(), n));
                }
                sent
            })
        })
        .collect();
    let sent = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    server.join().unwrap();
    sent
}

#[test]
fn socket_events_see_every_short_connection() {
    let ns = Netns::new("evS");
    let events = spawn_in(
        &ns,
        &[
            bin(),
            "--capture-for",
            "60s",
            "--format",
            "ndjson",
            &format!(
                "SELECT local_port, remote_port, state, bytes_acked, bytes_received, overruns FROM socket_events \
                 WHERE protocol = 'tcp' AND (local_port = {PORT} OR remote_port = {PORT}) AND remote_port <> 0 LIMIT {}",
                2 * THREADS * PER_THREAD
            ),
        ],
    );
    let mut events = events;
    let events_out = collect(&mut events);
    eventually(WAIT, || (listener_count(&ns) >= 1).then_some(()));
    // Line-buffered, so what it printed is there when it is stopped.
    let mut ss = spawn_in(&ns, &["stdbuf", "-oL", "ss", "-E", "-tnH"]);
    let ss_out = collect(&mut ss);
    eventually(WAIT, || (listener_count(&ns) >= 2).then_some(()));
    let mut watch = spawn_in(
        &ns,
        &[
            bin(),
            "--watch",
            "1s",
            "--format",
            "ndjson",
            &format!("SELECT remote_port FROM sockets WHERE local_port = {PORT} AND state = 'ESTAB'"),
        ],
    );
    let watch_out = collect(&mut watch);
    let sent = ns.enter(short_connections);
    assert_eq!(sent.len(), THREADS * PER_THREAD);

    let status = events.wait().unwrap();
    let mut err = String::new();
    events.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    let rows = parse_ndjson(&events_out.join().unwrap());
    // Every socket, both ends, once each, with what was sent: the client
    // counts its SYN and FIN as acknowledged bytes, the server the FIN as
    // a received one (the kernel's tcp_info, as ss -i prints it).
    assert_eq!(rows.len(), 2 * sent.len());
    assert!(rows.iter().all(|r| r["overruns"] == 0), "no event lost");
    let mut expected: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for &(port, n) in &sent {
        expected.entry(port).or_default().push(n);
    }
    let (mut clients, mut servers): (BTreeMap<u16, Vec<usize>>, BTreeMap<u16, Vec<usize>>) = Default::default();
    for r in &rows {
        let (local, remote) = (r["local_port"].as_u64().unwrap() as u16, r["remote_port"].as_u64().unwrap() as u16);
        if remote == PORT {
            clients.entry(local).or_default().push(r["bytes_acked"].as_u64().unwrap() as usize - 2);
        } else {
            servers.entry(remote).or_default().push(r["bytes_received"].as_u64().unwrap() as usize - 1);
        }
    }
    for m in [&mut expected, &mut clients, &mut servers] {
        m.values_mut().for_each(|v| v.sort());
    }
    assert!(clients == expected, "client ends: bytes acknowledged, less SYN and FIN, by port");
    assert!(servers == expected, "server ends: bytes received, less the FIN, by client port");

    // ss -E saw the same destroys.
    // SAFETY: a signal to the child we spawned.
    unsafe { libc::kill(ss.id() as i32, libc::SIGINT) };
    let _ = ss.wait();
    let text = ss_out.join().unwrap();
    let port = format!(":{PORT}");
    // The listener, closed at the end, has no peer (`*`): not a connection.
    let by_ss = text
        .lines()
        .filter(|l| l.split_whitespace().any(|f| f.ends_with(&port)) && !l.trim_end().ends_with(":*"))
        .count();
    assert_eq!(by_ss, rows.len(), "ss -E lines for port {PORT}");

    // The poll every second saw almost none of them.
    // SAFETY: a signal to the child we spawned (ip netns exec became sockql).
    unsafe { libc::kill(watch.id() as i32, libc::SIGINT) };
    let _ = watch.wait();
    let rest = watch_out.join().unwrap();
    let polled: HashSet<u64> = rest
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r["remote_port"].as_u64())
        .collect();
    assert!(polled.len() * 10 < sent.len(), "--watch 1s saw {} of {} connections", polled.len(), sent.len());
}

/// A UDP flow through a namespace whose nftables ruleset tracks it:
/// `conntrack_events` shows its NEW, the UPDATE a reply brings, and the
/// DESTROY `conntrack -D` causes, with the flow's counters and stop time,
/// as `conntrack -E` shows them.
#[test]
fn conntrack_events_follow_a_flow_as_conntrack_e_does() {
    use crate::conntrack::NftExt;
    assert!(have("conntrack"), "conntrack (conntrack-tools) is needed for this cross-check");
    let ns = Netns::new("evC");
    ns.nft(
        "table ip track {\n chain out { type filter hook output priority 0; ct state new,established accept; }\n}\n",
    );
    ns.sysctl("net.netfilter.nf_conntrack_acct", "1");
    ns.sysctl("net.netfilter.nf_conntrack_timestamp", "1");
    let mut events = spawn_in(
        &ns,
        &[bin(), "--capture-for", "60s", "--format", "ndjson", "SELECT event, orig_sport, orig_dport, orig_packets, orig_bytes, reply_packets, reply_bytes, stop_time IS NOT NULL AS stopped, start_time IS NOT NULL AS started, overruns FROM conntrack_events WHERE protocol = 'udp' AND orig_dport = 5353"],
    );
    let events_out = collect(&mut events);
    let mut tool = spawn_in(&ns, &["stdbuf", "-oL", "conntrack", "-E", "-p", "udp", "--dport", "5353"]);
    let tool_out = collect(&mut tool);
    // Both subscribed (NETLINK_NETFILTER is protocol 12).
    eventually(WAIT, || (subscribed(&ns.exec_ok("cat", &["/proc/net/netlink"]), "12", None) >= 2).then_some(()));
    let sport = ns.enter(|| {
        let server = std::net::UdpSocket::bind("127.0.0.1:5353").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..3 {
            client.send_to(&[7u8; 100], "127.0.0.1:5353").unwrap();
        }
        let mut buf = [0u8; 200];
        for _ in 0..3 {
            assert_eq!(server.recv_from(&mut buf).unwrap().0, 100);
        }
        server.send_to(b"ok", client.local_addr().unwrap()).unwrap();
        assert_eq!(client.recv(&mut buf).unwrap(), 2);
        client.local_addr().unwrap().port()
    });
    ns.exec_ok("conntrack", &["-D", "-p", "udp", "--dport", "5353"]);
    // conntrack -E has printed the DESTROY: the first Ctrl-C ends
    // sockql's listening and it answers with what it saw.
    let tool_pid = tool.id();
    eventually(WAIT, || {
        let status = std::fs::read_to_string(format!("/proc/{tool_pid}/status")).ok()?;
        status.contains("State:\tS").then_some(())
    });
    // SAFETY: signals to children we spawned.
    unsafe { libc::kill(tool.id() as i32, libc::SIGINT) };
    let _ = tool.wait();
    let theirs = tool_out.join().unwrap();
    assert!(theirs.contains("[DESTROY]"), "{theirs}");
    unsafe { libc::kill(events.id() as i32, libc::SIGINT) };
    assert!(events.wait().unwrap().success());
    let rows = parse_ndjson(&events_out.join().unwrap());
    let kinds: Vec<&str> = rows.iter().map(|r| r["event"].as_str().unwrap()).collect();
    let tool_kinds: Vec<&str> =
        theirs.lines().filter_map(|l| l.trim().strip_prefix('[').and_then(|r| r.split(']').next())).collect();
    assert_eq!(kinds, tool_kinds, "{theirs}");
    assert_eq!((kinds.first(), kinds.last()), (Some(&"NEW"), Some(&"DESTROY")));
    assert!(rows.iter().all(|r| r["orig_sport"] == sport as u64 && r["overruns"] == 0), "{rows:?}");
    let destroy = rows.last().unwrap();
    // Three datagrams of 100 bytes (128 with headers) one way, one of 2
    // (30) back, as conntrack -E's DESTROY line counts them.
    assert_eq!(
        (
            &destroy["orig_packets"],
            &destroy["orig_bytes"],
            &destroy["reply_packets"],
            &destroy["reply_bytes"],
            &destroy["stopped"],
            &destroy["started"]
        ),
        (&Value::from(3), &Value::from(384), &Value::from(1), &Value::from(30), &Value::from(true), &Value::from(true))
    );
    let line = theirs.lines().find(|l| l.contains("[DESTROY]")).unwrap();
    assert!(line.contains("packets=3 bytes=384") && line.contains("packets=1 bytes=30"), "{line}");
}

/// A child this test forks: its fork, exec and exit in `process_events`,
/// named although it lives a fraction of a second.
#[test]
fn process_events_name_a_short_lived_child() {
    let (mut events, events_out) = process_listener(
        "SELECT event, pid, tid, parent_pid, name, cmdline, exit_code, exit_signal FROM process_events WHERE pid = tid",
    );
    let mut child = Command::new("sh").args(["-c", "sleep 0.3; exit 7"]).spawn().unwrap();
    let pid = child.id() as i64;
    assert_eq!(child.wait().unwrap().code(), Some(7));
    // The exit is out: end the listening, and the query answers.
    // SAFETY: a signal to the child we spawned.
    unsafe { libc::kill(events.id() as i32, libc::SIGINT) };
    assert!(events.wait().unwrap().success());
    let rows: Vec<Value> = parse_ndjson(&events_out.join().unwrap()).into_iter().filter(|r| r["pid"] == pid).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["fork", "exec", "exit"], "{rows:?}");
    assert_eq!(rows[0]["parent_pid"], my_pid());
    assert_eq!((&rows[1]["name"], &rows[1]["cmdline"]), (&Value::from("sh"), &Value::from("sh -c sleep 0.3; exit 7")));
    assert_eq!(
        (&rows[2]["name"], &rows[2]["exit_code"], &rows[2]["exit_signal"]),
        (&Value::from("sh"), &Value::from(7), &Value::from(0))
    );
}

/// --follow: no time bound, each row written as it comes (a reader gets
/// it while the stream still runs), Ctrl-C ends it cleanly.
#[test]
fn follow_writes_each_event_as_it_comes() {
    use std::io::BufRead;
    let ns = Netns::new("evF");
    let mut events = spawn_in(
        &ns,
        &[
            bin(),
            "--follow",
            "--format",
            "ndjson",
            "SELECT local_port, remote_port, state FROM socket_events WHERE remote_port = 9",
        ],
    );
    // Lines as they come, to wait on with a timeout.
    let (tx, lines) = std::sync::mpsc::channel();
    let out = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        std::io::BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l)))
    });
    eventually(WAIT, || (listener_count(&ns) >= 1).then_some(()));
    let listener = ns.enter(|| TcpListener::bind("127.0.0.1:9").unwrap());
    for expected in 1..=2 {
        // A connection that opens and closes: its client end's destroy has
        // remote port 9 (a refused one would not: the kernel resets it).
        let port = ns.enter(|| {
            let c = TcpStream::connect("127.0.0.1:9").unwrap();
            c.local_addr().unwrap().port()
        });
        drop(listener.accept().unwrap());
        // The row arrives while sockql still listens.
        let line = lines.recv_timeout(WAIT).expect("the event's row while sockql listens");
        let row: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (&row["local_port"], &row["remote_port"]),
            (&Value::from(port), &Value::from(9)),
            "event {expected}"
        );
        assert!(events.try_wait().unwrap().is_none());
    }
    // SAFETY: a signal to the child we spawned.
    unsafe { libc::kill(events.id() as i32, libc::SIGINT) };
    assert!(events.wait().unwrap().success());
    assert!(lines.recv_timeout(WAIT).is_err(), "nothing after the two events");
}

/// The saved reports over recorded events: checked by the test below, not
/// by the snapshot harness in reports.rs.
pub const EVENT_HISTORY_REPORTS: &[&str] = &["resets_by_remote", "short_lived_connections"];

/// `record --events` in a namespace: every connection made while it
/// listens is in `history.socket_events` afterwards, with its bytes; the
/// first Ctrl-C ends the recording and writes what was heard. (The proc
/// connector is not in a test namespace: the recorder says so and goes on.)
#[test]
fn record_events_keeps_every_connection_for_history() {
    use crate::conntrack::NftExt;
    let ns = Netns::new("evR");
    ns.nft(
        "table ip track {\n chain out { type filter hook output priority 0; ct state new,established accept; }\n}\n",
    );
    let dir = std::env::temp_dir().join(format!("sockql-record-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rec =
        spawn_in(&ns, &[bin(), "record", "--out", dir.to_str().unwrap(), "--events", "--every", "1s", "--for", "60s"]);
    // Both listeners subscribed (sock_diag destroys, ctnetlink events)
    // before any connection is made: the resets are conntrack events.
    eventually(WAIT, || {
        let table = ns.exec_ok("cat", &["/proc/net/netlink"]);
        (subscribed(&table, "4", None) >= 1 && subscribed(&table, "12", None) >= 1).then_some(())
    });
    let l = ns.enter(|| TcpListener::bind("127.0.0.1:7272").unwrap());
    let sent: Vec<(u16, usize)> = (0..20)
        .map(|i| {
            let n = 10 + i;
            let port = ns.enter(move || {
                let mut c = TcpStream::connect("127.0.0.1:7272").unwrap();
                c.write_all(&vec![2u8; n]).unwrap();
                c.local_addr().unwrap().port()
            });
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), n);
            (port, n)
        })
        .collect();
    // Three connections refused with RST: conntrack sees each reset.
    for _ in 0..3 {
        ns.enter(|| assert!(TcpStream::connect("127.0.0.1:7373").is_err()));
    }
    // Every client end's destroy has come (they close first, then wait in
    // TIME-WAIT): the recorder has heard them; Ctrl-C writes and ends it.
    // (Until the first file is written there is no history table yet.)
    let history = |sql: &str| {
        let (out, _, ok) = run(&["--history", dir.to_str().unwrap(), "--format", "ndjson", sql]);
        ok.then(|| parse_ndjson(&out))
    };
    eventually(WAIT, || {
        let n = history("SELECT count(*) AS n FROM history.socket_events WHERE remote_port = 7272")?.first()?["n"]
            .as_u64()?;
        (n == sent.len() as u64).then_some(())
    });
    // SAFETY: a signal to the child we spawned.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    assert!(rec.wait().unwrap().success());
    let mut err = String::new();
    rec.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("process_events not recorded"), "{err}");
    let rows = history(
        "SELECT local_port, bytes_acked FROM history.socket_events WHERE remote_port = 7272 ORDER BY local_port",
    )
    .unwrap();
    let mut expected: Vec<(u64, u64)> = sent.iter().map(|&(p, n)| (p as u64, n as u64 + 2)).collect();
    expected.sort();
    let got: Vec<(u64, u64)> =
        rows.iter().map(|r| (r["local_port"].as_u64().unwrap(), r["bytes_acked"].as_u64().unwrap())).collect();
    assert_eq!(got, expected);
    // The history reports over what was recorded.
    let report = |name: &str| {
        let (out, err, ok) = run(&["--history", dir.to_str().unwrap(), "run", name, "--format", "ndjson"]);
        assert!(ok, "{name}: {err}");
        parse_ndjson(&out)
    };
    let short = report("short_lived_connections");
    assert_eq!(short.len(), 1, "{short:?}");
    // Both ends of each of the 20 (the refused ones lost their remote port).
    assert_eq!(
        (&short[0]["remote_addr"], &short[0]["connections"]),
        (&Value::from("127.0.0.1"), &Value::from(40)),
        "{short:?}"
    );
    assert!(short[0]["per_sec"].as_f64().unwrap() > 0.0);
    let resets = report("resets_by_remote");
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!((&resets[0]["server_port"], &resets[0]["resets"]), (&Value::from(7373), &Value::from(3)), "{resets:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An event stream joined to a live table: the exec of a child that is
/// still running when the stream ends is joined to its `processes` row.
#[test]
fn events_join_live_tables() {
    let (mut events, out) = process_listener(
        "SELECT e.pid, e.name AS event_name, p.name AS process_name, p.ppid FROM process_events e JOIN processes p ON p.pid = e.pid WHERE e.event = 'exec' AND e.name = 'sleep'",
    );
    let mut child = Reaped(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = child.id() as i64;
    // Its exec is out once /proc shows the new program.
    eventually(WAIT, || (std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim() == "sleep").then_some(()));
    // SAFETY: a signal to the child we spawned.
    unsafe { libc::kill(events.id() as i32, libc::SIGINT) };
    assert!(events.wait().unwrap().success());
    let rows: Vec<Value> = parse_ndjson(&out.join().unwrap()).into_iter().filter(|r| r["pid"] == pid).collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (&rows[0]["event_name"], &rows[0]["process_name"], &rows[0]["ppid"]),
        (&Value::from("sleep"), &Value::from("sleep"), &Value::from(my_pid()))
    );
    let _ = child.kill();
}

/// A stream query that computes a column hands each row over as it comes,
/// as one that only names columns does: a process this test starts (a
/// symlink to `sleep` named for this test, so no other process matches) is
/// on the reader's screen (--follow: a line at a time) within 3 s, while
/// the stream itself runs until Ctrl-C. DataFusion used to put a round-robin repartition under the
/// projection, which held rows back until 8,192 of them or the stream's
/// end; EXPLAIN shows none above the stream's scan.
#[test]
fn computed_columns_of_a_stream_come_as_they_happen() {
    use std::io::BufRead;
    let name = format!("sqx{}", std::process::id());
    let sql = format!("SELECT pid, name || '-x' AS n FROM process_events WHERE name = '{name}'");
    let (plan, err, ok) = run(&["--format", "csv", &format!("EXPLAIN {sql}")]);
    assert!(ok, "{err}");
    assert!(plan.contains("LiveScanExec: process_events"), "{plan}");
    assert!(!plan.contains("RoundRobin"), "{plan}");

    let dir = std::env::temp_dir().join(format!("sockql-stream-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(&name);
    let _ = std::fs::remove_file(&exe);
    std::os::unix::fs::symlink("/bin/sleep", &exe).unwrap();

    let mut events = Reaped(
        Command::new(bin())
            .args(["--follow", "--format", "ndjson", &sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, lines) = std::sync::mpsc::channel();
    let out = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        std::io::BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l)))
    });
    let id = events.id();
    eventually(WAIT, || {
        (subscribed(&std::fs::read_to_string("/proc/net/netlink").ok()?, "11", Some(id)) > 0).then_some(())
    });
    // It lives long enough for its name to be read (as `ps` would).
    let mut child = Reaped(Command::new(&exe).arg("1").spawn().unwrap());
    let pid = child.id() as i64;
    // Its exec while the stream still runs.
    let line = lines.recv_timeout(Duration::from_secs(3)).expect("the row of the process while the stream runs");
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
    let row: Value = serde_json::from_str(&line).unwrap();
    assert_eq!((&row["pid"], &row["n"]), (&Value::from(pid), &Value::from(format!("{name}-x"))));
    assert!(events.try_wait().unwrap().is_none(), "the stream still runs");
}
