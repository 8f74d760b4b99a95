//! The `container`/`container_id` columns of the event tables, of
//! `packets` and of a `--network host` container's sockets, against real
//! podman containers (runc, the busybox image of containers_common.rs; no
//! registry, no network: each container has only its own loopback, or the
//! host's). Every name and id is checked against `podman inspect`; the
//! host's own processes and connections are NULL; a container that stops
//! while a stream runs and one that starts after it are each named by
//! their own name or NULL, never by the other's.

use std::net::{TcpListener, TcpStream};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;
use crate::containers_common::{podman, unique, Ctr, Image};
use crate::tcp_state_changes::Stream;

/// The port busybox httpd listens on inside a container of its own.
const HTTPD: u16 = 8080;

/// A container serving HTTP on its loopback (`--network none`: its own
/// namespace with lo only), once it listens.
fn httpd(image: &Image, tag: &str) -> Ctr {
    let port = HTTPD.to_string();
    let c = Ctr::run(image, tag, &["--network", "none"], &["/bin/busybox", "httpd", "-f", "-p", &port, "-h", "/"]);
    eventually(WAIT, || {
        let ss = podman(&["exec", &c.name, "/bin/busybox", "netstat", "-ltn"]).ok()?;
        ss.contains(&format!(":{HTTPD}")).then_some(())
    });
    c
}

/// `podman exec` a wget of `http://127.0.0.1:8080/<mark>` in `c`: execs,
/// one TCP connection opened and closed in its namespace. The 404 is
/// expected (the path does not exist): the connection is what counts.
fn fetch_in(c: &Ctr, mark: &str) {
    let url = format!("http://127.0.0.1:{HTTPD}/{mark}");
    // Through a shell that outlives the fetch by a second: an exec whose
    // process is gone before its event is read has no cmdline.
    let script = format!("/bin/busybox wget -q -O /dev/null {url}; /bin/busybox sleep 1");
    let _ = podman(&["exec", &c.name, "/bin/busybox", "sh", "-c", &script]);
}

/// (name, id, init pid, netns inode) as podman inspect says.
fn inspected(c: &Ctr) -> (String, String, i64, u64) {
    let v = c.inspect();
    let pid = v["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0, "{} runs: {v}", c.name);
    let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| std::os::linux::fs::MetadataExt::st_ino(&m));
    let name = v["Name"].as_str().unwrap().to_string();
    (name, v["Id"].as_str().unwrap().to_string(), pid, ns.unwrap())
}

fn s(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Whether `stream`'s rows satisfy `f` within `secs`.
fn seen_within(stream: &Stream, secs: u64, f: impl Fn(&[Value]) -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(secs) {
        if f(&stream.rows()) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

fn require_podman(test: &str) -> bool {
    require_root();
    if !have("podman") || !have("runc") {
        eprintln!("SKIP {test}: needs podman and runc (.ci/run installs them)");
        return false;
    }
    true
}

#[test]
fn event_rows_name_their_container_and_never_another() {
    if !require_podman("event_rows_name_their_container_and_never_another") {
        return;
    }
    let image = Image::build("ctrev");
    let a = httpd(&image, "ctrev-a");
    let (a_name, a_id, _, a_ns) = inspected(&a);
    assert_eq!((a_name.as_str(), a_id.as_str()), (a.name.as_str(), a.id.as_str()));
    let cols = "container, container_id";
    let procs = Stream::start(
        None,
        &["--follow", &format!("SELECT pid, event, cmdline, {cols} FROM process_events WHERE event = 'exec'")],
    );
    let destroys_sql =
        format!("SELECT netns, local_port, remote_port, {cols} FROM socket_events WHERE protocol = 'tcp'");
    let a_destroys = Stream::start(None, &["--container", &a.name, "--follow", &destroys_sql]);
    let host_destroys = Stream::start(None, &["--follow", &destroys_sql]);
    let states = Stream::start(
        None,
        &[
            "--all-netns",
            "--follow",
            &format!("SELECT netns, local_port, remote_port, new_state, pid, {cols} FROM tcp_state_changes"),
        ],
    );

    // A's exec and connection; the host's own process and connection.
    let mark_a = unique("mark-a");
    fetch_in(&a, &mark_a);
    let host_mark = unique("host-mark");
    // Alive until its row is seen (a process gone before its exec is
    // read has no cmdline): killed on drop.
    let host_proc = crate::events::Reaped(
        Command::new("/bin/busybox").args(["sh", "-c", "sleep 30; true", &host_mark]).spawn().unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = l.local_addr().unwrap().port();
    let c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    let (srv, _) = l.accept().unwrap();
    drop((c, srv, l));

    // The exec of `mark` itself (podman exec's own command line, on the
    // host, carries it too).
    let is_mark =
        |r: &Value, mark: &str| s(&r["cmdline"]).is_some_and(|c| c.contains(mark) && !c.starts_with("podman"));
    let has_mark = |rows: &[Value], mark: &str| rows.iter().any(|r| is_mark(r, mark));
    // On a loaded machine the connector's queue may drop an event, or a
    // cmdline may be read as its process changes: fetch again, a bounded
    // number of times, until one exec of the mark is seen.
    for _ in 0..4 {
        if seen_within(&procs, 5, |rows| has_mark(rows, &mark_a)) {
            break;
        }
        fetch_in(&a, &mark_a);
    }
    procs.wait_for("A's and the host's execs", |rows| has_mark(rows, &mark_a) && has_mark(rows, &host_mark));
    drop(host_proc);
    let port_in = |r: &Value, port: u16| r["local_port"] == json!(port) || r["remote_port"] == json!(port);
    let in_a = move |r: &Value| r["netns"] == json!(a_ns) && port_in(r, HTTPD);
    a_destroys.wait_for("A's sockets destroyed", |rows| rows.iter().filter(|r| in_a(r)).count() >= 2);
    host_destroys
        .wait_for("the host's sockets destroyed", |rows| rows.iter().filter(|r| port_in(r, host_port)).count() >= 2);
    // A's connection closing and the host's, as tcp_state_changes saw them.
    states.wait_for("A's and the host's connections closing", |rows| {
        rows.iter().any(|r| in_a(r) && r["new_state"] == json!("CLOSE"))
            && rows.iter().any(|r| port_in(r, host_port) && r["new_state"] == json!("CLOSE"))
    });

    let a_era = states.rows().len();
    // A stops while the streams run; B starts after it, its namespace
    // perhaps on A's freed inode, its pids perhaps A's.
    a.stop();
    let b = httpd(&image, "ctrev-b");
    let (b_name, b_id, _, b_ns) = inspected(&b);
    let mark_b = unique("mark-b");
    fetch_in(&b, &mark_b);
    for _ in 0..4 {
        if seen_within(&procs, 5, |rows| has_mark(rows, &mark_b)) {
            break;
        }
        fetch_in(&b, &mark_b);
    }
    procs.wait_for("B's exec", |rows| has_mark(rows, &mark_b));
    let in_b = move |r: &Value| r["netns"] == json!(b_ns) && port_in(r, HTTPD);
    // B's transitions are not waited for: under load the lookup's dumps
    // may not find its short connection (rows with no namespace), and
    // they are checked below only where they came with one.

    let (procs, states) = (procs.stop(), states.stop());
    let (a_destroys, host_destroys) = (a_destroys.stop(), host_destroys.stop());
    let named = |r: &Value| (s(&r["container"]).map(str::to_string), s(&r["container_id"]).map(str::to_string));
    let a_named = (Some(a_name.clone()), Some(a_id.clone()));
    let b_named = (Some(b_name.clone()), Some(b_id.clone()));
    let null = (None, None);

    // process_events: the exec podman made in A is A's, in B B's, the
    // host's NULL.
    let execs = |mark: &str| -> Vec<Value> { procs.iter().filter(|r| is_mark(r, mark)).cloned().collect() };
    for (mark, want) in [(&mark_a, &a_named), (&mark_b, &b_named), (&host_mark, &null)] {
        let rows = execs(mark);
        assert!(!rows.is_empty(), "exec of {mark} seen");
        for r in &rows {
            assert_eq!(&named(r), want, "process_events row {r}");
        }
    }
    // Whatever else ran: a row named A or B is never the other's process.
    for r in &procs {
        if named(r) == a_named {
            assert!(!is_mark(r, &mark_b), "B's exec named A: {r}");
        }
        if named(r) == b_named {
            assert!(!is_mark(r, &mark_a), "A's exec named B: {r}");
        }
        if named(r) != null {
            assert!(!s(&r["cmdline"]).unwrap_or("").starts_with("podman"), "podman on the host named: {r}");
        }
    }

    // socket_events (in A's namespace, and in the host's): A's connection
    // (both ends) is A's; the host's is NULL.
    // The connection's two ends are A's; A's listener, destroyed as A
    // stopped (its init gone, the namespace no longer A's), A's or NULL.
    let a_conn: Vec<&Value> = a_destroys.iter().filter(|r| in_a(r) && r["remote_port"] != json!(0)).collect();
    assert!(a_conn.len() >= 2, "both ends of A's connection destroyed: {a_destroys:#?}");
    for r in &a_conn {
        assert_eq!(named(r), a_named, "socket_events row {r}");
    }
    for r in a_destroys.iter().filter(|r| in_a(r)) {
        assert!(named(r) == a_named || named(r) == null, "socket_events row {r}");
    }
    let host_sockets: Vec<&Value> = host_destroys.iter().filter(|r| port_in(r, host_port)).collect();
    assert!(host_sockets.len() >= 2, "both ends of the host's connection: {host_destroys:#?}");
    for r in &host_sockets {
        assert_eq!(named(r), null, "host socket_events row {r}");
    }

    // tcp_state_changes: A's transitions A's (or NULL where neither its
    // holder nor its namespace was known), B's B's, the host's NULL. B's
    // namespace may sit on A's freed inode: A's connection is told from
    // B's by its client port, seen before A stopped.
    let other =
        |r: &Value| if r["local_port"] == json!(HTTPD) { r["remote_port"].clone() } else { r["local_port"].clone() };
    let a_clients: Vec<Value> = states[..a_era].iter().filter(|r| in_a(r)).map(other).collect();
    let (mut a_exact, mut b_exact) = (0, 0);
    for r in &states {
        let a_conn = in_a(r) && a_clients.contains(&other(r));
        if a_conn {
            assert!(named(r) == a_named || named(r) == null, "A's transition named otherwise: {r}");
            a_exact += usize::from(named(r) == a_named);
        } else if in_b(r) {
            assert!(named(r) == b_named || named(r) == null, "B's transition named otherwise: {r}");
            b_exact += usize::from(named(r) == b_named);
        }
        if port_in(r, host_port) {
            assert_eq!(named(r), null, "host transition {r}");
        }
    }
    assert!(a_exact >= 1, "{a_exact} of A's and {b_exact} of B's transitions named: {states:#?}");
}

#[test]
fn host_network_container_sockets_are_named_by_their_process() {
    if !require_podman("host_network_container_sockets_are_named_by_their_process") {
        return;
    }
    let image = Image::build("ctrev-host");
    // A free port on the host's loopback, for the container to listen on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let c = Ctr::run(
        &image,
        "ctrev-host",
        &["--network", "host"],
        &["/bin/busybox", "httpd", "-f", "-p", &addr, "-h", "/"],
    );
    let (name, id, pid, ns) = inspected(&c);
    assert_eq!(
        ns,
        std::fs::metadata("/proc/self/ns/net").map(|m| std::os::linux::fs::MetadataExt::st_ino(&m)).unwrap()
    );
    // A host listener beside it, NULL.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host.local_addr().unwrap().port();
    let where_ = format!("WHERE state = 'LISTEN' AND local_port IN ({port}, {host_port}) ORDER BY local_port = {port}");
    let with_pid = eventually(WAIT, || {
        let rows = query(&format!("SELECT local_port, pid, container, container_id FROM sockets {where_}"));
        (rows.len() == 2).then_some(rows)
    });
    assert_eq!(with_pid[0], json!({"local_port": host_port, "pid": my_pid(), "container": null, "container_id": null}));
    assert_eq!(with_pid[1], json!({"local_port": port, "pid": pid, "container": name, "container_id": id}));
    // Without pid in the query: the same names (the owner walk runs for
    // the namespace a container shares without owning it).
    let without = query(&format!("SELECT local_port, container, container_id FROM sockets {where_}"));
    assert_eq!(
        without,
        vec![
            json!({"local_port": host_port, "container": null, "container_id": null}),
            json!({"local_port": port, "container": name, "container_id": id}),
        ]
    );
    // GROUP BY container counts the container's one listener.
    let grouped = query(&format!(
        "SELECT container, count(*) AS n FROM sockets WHERE state = 'LISTEN' AND local_port = {port} GROUP BY container"
    ));
    assert_eq!(grouped, vec![json!({"container": name, "n": 1})]);
    drop(host);
}

#[test]
fn packets_captured_in_a_container_carry_its_name() {
    if !require_podman("packets_captured_in_a_container_carry_its_name") {
        return;
    }
    let image = Image::build("ctrev-pkt");
    let c = httpd(&image, "ctrev-pkt");
    let (name, id, _, ns) = inspected(&c);
    let sql = format!("SELECT netns, src_port, dst_port, container, container_id FROM packets WHERE src_port = {HTTPD} OR dst_port = {HTTPD}");
    let scoped = Stream::start(None, &["--container", &c.name, "--follow", &sql]);
    let all = Stream::start(None, &["--all-netns", "--follow", &sql]);
    let mark = unique("pkt");
    fetch_in(&c, &mark);
    let ours = move |r: &Value| r["netns"] == json!(ns);
    // A whole exchange: SYN to FIN, both ways, at least 6 packets.
    scoped.wait_for("the container's packets", |rows| rows.iter().filter(|r| ours(r)).count() >= 6);
    all.wait_for("the container's packets, all namespaces", |rows| rows.iter().filter(|r| ours(r)).count() >= 6);
    let (scoped, all) = (scoped.stop(), all.stop());
    for r in scoped.iter().chain(all.iter().filter(|r| ours(r))) {
        assert_eq!((&r["container"], &r["container_id"]), (&json!(name), &json!(id)), "packet row {r}");
    }
    // A capture file says nothing of containers.
    let dir = Scratch::new("ctrev-pcap");
    let pcap = dir.0.join("lo.pcap");
    let mut f = Vec::new();
    f.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&[14, 0, 0, 0, 14, 0, 0, 0]);
    f.extend_from_slice(&[0; 12]);
    f.extend_from_slice(&[0x08, 0x00]);
    std::fs::write(&pcap, f).unwrap();
    let rows = query(&format!("SELECT container, container_id FROM read_pcap('{}')", pcap.display()));
    assert_eq!(rows, vec![json!({"container": null, "container_id": null})]);
}
