//! The holder columns (netns, pid, ...) of the TCP tracepoint tables when
//! the 4-tuple alone cannot say whose socket an event is: the same
//! 4-tuple live in two namespaces at once (each row names its own
//! namespace or none, never the other's), and connections that open and
//! close between two of the lookup's dumps (the client's rows still name
//! the process that connect()ed).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use crate::netns::Netns;
use crate::packet_drops::Stream;

/// In its namespace: a listener on 127.0.0.1:P and a client bound to
/// 127.0.0.1:C connected to it (the same tuple in every namespace that
/// runs it); prints its pid and the client's and server end's cookies;
/// at the next line aborts the client (SO_LINGER 0: a reset sent by
/// close(), received by the server end) and prints 'reset'; exits at
/// the next.
const TWIN: &str = r#"
import os, socket, struct, sys
P, C = int(sys.argv[1]), int(sys.argv[2])
cookie = lambda s: struct.unpack('Q', s.getsockopt(socket.SOL_SOCKET, 57, 8))[0]
l = socket.socket(); l.bind(('127.0.0.1', P)); l.listen(1)
c = socket.socket(); c.bind(('127.0.0.1', C)); c.connect(('127.0.0.1', P)); s, _ = l.accept()
print(os.getpid(), cookie(c), cookie(s), flush=True)
sys.stdin.readline()
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()
try:
    s.recv(1); sys.exit('no reset')
except ConnectionResetError:
    pass
print('reset', flush=True)
sys.stdin.readline()
"#;

struct Twin {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
    pid: u64,
    client_cookie: u64,
    server_cookie: u64,
}

impl Twin {
    fn start(ns: &Netns, p: u16, c: u16) -> Twin {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "/usr/bin/python3", "-c", TWIN, &p.to_string(), &c.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let v: Vec<u64> = line.split_whitespace().map(|w| w.parse().unwrap()).collect();
        assert_eq!(v.len(), 3, "{line:?}");
        Twin { child, stdin, out, pid: v[0], client_cookie: v[1], server_cookie: v[2] }
    }

    fn reset(&mut self) {
        writeln!(self.stdin).unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "reset");
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ports of this test process's own (the namespaces are fresh, so any
/// would do; these keep the rows apart from other tests' on the host).
fn ports() -> (u16, u16) {
    let p = 20000 + (std::process::id() % 20000) as u16;
    (p, p + 20000)
}

/// The same 4-tuple 127.0.0.1:C -> 127.0.0.1:P in two namespaces, one
/// after the other, each then aborted: every tcp_state_changes and
/// tcp_resets row of it names the namespace of the process it belongs
/// to, or none; never the other namespace. The resets are each sent by
/// the client's close() (its pid) and received by the server end (its
/// cookie, from the tracepoint).
#[test]
fn the_same_tuple_in_two_namespaces_never_names_the_other() {
    require_root();
    let (a, b) = (Netns::new("twa"), Netns::new("twb"));
    let (p, c) = ports();
    let filter = format!("local_addr = '127.0.0.1' AND local_port IN ({p}, {c}) AND remote_port IN (0, {p}, {c})");
    let mut states = Stream::start(&["--all-netns"], &format!("SELECT * FROM tcp_state_changes WHERE {filter}"));
    let mut resets = Stream::start(&["--all-netns"], &format!("SELECT * FROM tcp_resets WHERE {filter}"));
    // A first, its rows read (and its holder looked up) before B's
    // socket exists; then B with the same tuple while A's still lives.
    let mut ta = Twin::start(&a, p, c);
    let mut st = states.rows_until(|rows| {
        rows.iter().filter(|r| r["new_state"] == "ESTAB" && r["local_port"] == json!(c)).count() >= 1
    });
    let mut tb = Twin::start(&b, p, c);
    ta.reset();
    tb.reset();
    // Per namespace: the client's and the server end's transitions
    // (CLOSE -> SYN-SENT -> ESTAB -> CLOSE and LISTEN -> SYN-RECV ->
    // ESTAB -> CLOSE) and the listener's CLOSE -> LISTEN.
    st.extend(states.rows_until(|rows| {
        st.len() + rows.len() >= 2 * 7
            && st.iter().chain(rows).filter(|r| r["new_state"] == "CLOSE" && r["old_state"] == "ESTAB").count() == 4
    }));
    let rs = resets.rows_until(|rows| rows.len() >= 4);
    st.extend(states.stop());
    let rest = resets.stop();
    assert!(rest.is_empty(), "{rest:#?}");
    let ns_of = |pid: &Value| {
        if *pid == json!(ta.pid) {
            json!(a.inode())
        } else if *pid == json!(tb.pid) {
            json!(b.inode())
        } else {
            panic!("a row of pid {pid}: not a script's")
        }
    };
    let mut named = 0;
    let mut clients: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for r in &st {
        // Every socket here is a script's: a row that names a namespace
        // and a holder names them in agreement (a server end still in
        // the accept queue when a dump saw it has no holder yet).
        if r["netns"] != Value::Null && r["pid"] != Value::Null {
            assert_eq!(r["netns"], ns_of(&r["pid"]), "{r}");
            named += 1;
        }
        if r["local_port"] == json!(c) {
            clients.entry(r["sock_id"].to_string()).or_default().push(r);
        }
    }
    // The two clients' transitions (3 each), each all naming its own
    // process: the one that connect()ed, whatever a dump found.
    assert_eq!(clients.len(), 2, "{st:#?}");
    let pids: Vec<&Value> = clients
        .values()
        .map(|rows| {
            assert_eq!(rows.len(), 3, "{rows:#?}");
            assert!(rows.iter().all(|r| r["pid"] == rows[0]["pid"]), "{rows:#?}");
            &rows[0]["pid"]
        })
        .collect();
    let mut pids: Vec<u64> = pids.iter().map(|p| p.as_u64().unwrap()).collect();
    pids.sort();
    let mut want = vec![ta.pid, tb.pid];
    want.sort();
    assert_eq!(pids, want, "{st:#?}");
    // A's rows before B existed could be told apart: at least those.
    assert!(named >= 1, "{st:#?}");
    let sent: Vec<&Value> = rs.iter().filter(|r| r["direction"] == "sent").collect();
    let received: Vec<&Value> = rs.iter().filter(|r| r["direction"] == "received").collect();
    assert_eq!((sent.len(), received.len()), (2, 2), "{rs:#?}");
    for r in &sent {
        // close() ran in the script's own context: its pid, and its
        // namespace or none.
        assert_eq!((&r["local_port"], &r["remote_port"]), (&json!(c), &json!(p)), "{r}");
        let pid = &r["pid"];
        assert!([json!(null), ns_of(pid)].contains(&r["netns"]), "{r}");
    }
    assert_ne!(sent[0]["pid"], sent[1]["pid"], "{rs:#?}");
    for r in &received {
        let own = match r["cookie"].as_u64() {
            Some(x) if x == ta.server_cookie => a.inode(),
            Some(x) if x == tb.server_cookie => b.inode(),
            _ => panic!("received by no script's server end: {r}"),
        };
        assert!([json!(null), json!(own)].contains(&r["netns"]), "{r}");
        assert!(r["netns"] == Value::Null || r["cookie"] != json!(ta.client_cookie), "{r}");
    }
    drop((ta, tb));
}

/// 50 connections opened and closed as fast as a process can: every row
/// of the client's end names that process (the kernel runs its connect()
/// and close() in its context), whether or not a dump saw the socket;
/// the server's end names it where a dump found it or its close() ran,
/// else null (an accepted socket's first transitions run in softirq).
#[test]
fn short_connections_name_the_process_that_made_them() {
    require_root();
    // Not the twins' port: the tests run in one process, at once.
    short_connections("tshort", ports().0 + 1);
}

/// The same on a host where a namespace holds 19,800 sockets, so each
/// of the lookup's dumps (every namespace, and the holders' descriptors)
/// takes a while: the rows still come as the events do. (Before: every
/// event of an unknown tuple waited for a dump of its own, and no row was
/// sent until the whole burst was read: nothing came for minutes.)
#[test]
fn short_connections_stream_on_a_host_of_many_sockets() {
    require_root();
    let busy = Netns::new("tbusy");
    // 9,900 connections (both ends: 19,800 sockets), fewer only if the
    // descriptors allowed are fewer (RLIMIT_NOFILE's hard limit is 20,000
    // on the machine this was written on, and root there cannot raise it).
    let script = "import socket, sys, resource\n\
         hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))\n\
         l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(4096)\n\
         held = []\n\
         for _ in range(min(9900, (hard - 64) // 2)):\n\
         \x20   c = socket.create_connection(l.getsockname()); s, _ = l.accept(); held += [c, s]\n\
         print(len(held), flush=True); sys.stdin.readline()\n";
    let mut holder = crate::events::Reaped(
        Command::new("ip")
            .args(["netns", "exec", &busy.name, "/usr/bin/python3", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let held: usize = line.trim().parse().unwrap_or(0);
    assert!(held >= 16_000, "the busy namespace holds {held} sockets: {line:?}");
    let t0 = std::time::Instant::now();
    short_connections("tshortbusy", ports().0 + 2);
    eprintln!("50 short connections among {held} sockets: all rows in {:?}", t0.elapsed());
}

/// 50 connections opened and closed in a new namespace (port `p`): every
/// tcp_state_changes row of each end, and its process where the kernel
/// or a dump says it.
fn short_connections(tag: &str, p: u16) {
    const N: usize = 50;
    let ns = Netns::new(tag);
    let script = format!(
        "import os, socket, sys\n\
         l = socket.socket(); l.bind(('127.0.0.1', {p})); l.listen(64)\n\
         print(os.getpid(), flush=True); sys.stdin.readline()\n\
         for _ in range({N}):\n\
         \x20   c = socket.create_connection(('127.0.0.1', {p})); s, _ = l.accept(); c.close(); s.close()\n\
         print('done', flush=True); sys.stdin.readline()\n"
    );
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "/usr/bin/python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let pid: u64 = line.trim().parse().unwrap();
    let sql = format!(
        "SELECT * FROM tcp_state_changes WHERE local_addr = '127.0.0.1' AND (local_port = {p} OR remote_port = {p})"
    );
    let mut stream = Stream::start(&["--all-netns"], &sql);
    writeln!(stdin).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    // The client closes first: CLOSE -> SYN-SENT -> ESTAB -> FIN-WAIT-1
    // -> FIN-WAIT-2 -> CLOSE (its TIME-WAIT); the server end LISTEN ->
    // SYN-RECV -> ESTAB -> CLOSE-WAIT -> LAST-ACK -> CLOSE.
    let rows = stream.rows_until(|rows| rows.iter().filter(|r| r["new_state"] == "CLOSE").count() >= 2 * N);
    let rest = stream.stop();
    let rows: Vec<Value> = rows.into_iter().chain(rest).collect();
    let _ = child.kill();
    let _ = child.wait();
    let client: Vec<&Value> = rows.iter().filter(|r| r["remote_port"] == json!(p)).collect();
    let server: Vec<&Value> = rows.iter().filter(|r| r["local_port"] == json!(p)).collect();
    assert_eq!(client.len(), 5 * N, "{client:#?}");
    assert_eq!(server.len(), 5 * N, "{server:#?}");
    for r in &client {
        assert_eq!((&r["pid"], &r["process"]), (&json!(pid), &json!("python3")), "{r}");
        assert!([json!(null), json!(ns.inode())].contains(&r["netns"]), "{r}");
    }
    for r in &server {
        assert!([json!(null), json!(pid)].contains(&r["pid"]), "{r}");
        assert!([json!(null), json!(ns.inode())].contains(&r["netns"]), "{r}");
    }
    // The server end's close() (CLOSE-WAIT -> LAST-ACK) ran in the
    // process: from then on its rows name it.
    for r in server.iter().filter(|r| r["old_state"] == "CLOSE-WAIT" || r["old_state"] == "LAST-ACK") {
        assert_eq!(r["pid"], json!(pid), "{r}");
    }
}
