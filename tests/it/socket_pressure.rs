//! `socket_pressure` against the kernel's own per-socket drop count and
//! bpftrace counting the same tracepoint, with a full receive queue made
//! for real in a namespace of the test's own.
//!
//! On this kernel (6.18) sock:sock_rcvqueue_full fires where a protocol
//! queues through sock_queue_rcv_skb: ICMP ping sockets do, UDP does not
//! (its own __udp_enqueue_schedule_skb counts UdpRcvbufErrors and drops
//! with SOCKET_RCVBUFF, a packet_drops row), nor do raw sockets
//! (raw_v4_input checks the buffer first). So the full queue here is a
//! ping socket's that never reads, flooded with its own echo replies on
//! loopback; the counted rows are those of the test's sending thread
//! (the replies are delivered in its softirq), and a UDP receiver that
//! overflows on the same thread is the near miss that must not appear.
//!
//! sock:sock_exceed_buf_limit is made by a memory cgroup of the test's
//! own (cgroup v1 memory controller, as this machine mounts it) whose
//! TCP memory limit (memory.kmem.tcp.limit_in_bytes) is 0: a socket the
//! cgroup's process opens or accepts is charged there, and the kernel
//! refuses its first receive allocation and fires the tracepoint once per
//! connection (__sk_mem_raise_allocated). Nothing host-wide changes: the
//! protocol limits (tcp_mem, udp_mem) are not touched, and only the test's
//! process is in the cgroup (writing the limit does turn on the kernel's
//! socket accounting for memory cgroups, a static branch, if it was off).

use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use serde_json::Value;

use crate::common::*;
use crate::netns::Netns;
use crate::packet_drops::{nstat, Bpftrace, NsThread, Stream};

/// The drops column of a ping socket in /proc/net/icmp of `ns`, by inode.
fn icmp_drops(ns: &str, inode: u64) -> u64 {
    let o = std::process::Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/icmp"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    text.lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(9)?.parse::<u64>().ok()? == inode).then(|| f.last()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("inode {inode} not in {text}"))
}

#[test]
fn rcvqueue_full_equals_the_sockets_drops_and_bpftrace() {
    const N: usize = 100;
    let ns = Netns::new("spq");
    ns.sysctl("net.ipv4.ping_group_range", "0 2147483647");
    let name = ns.name.clone();
    let work = NsThread::new(&ns, move || {
        // The near miss first: a UDP receiver with a tiny buffer that
        // never reads overflows (UdpRcvbufErrors) without this tracepoint.
        let rx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        rx.set_recv_buffer_size(1).unwrap();
        rx.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        let to = rx.local_addr().unwrap().as_socket().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = nstat(&name, &["UdpRcvbufErrors"])[0];
        for _ in 0..N {
            tx.send_to(&[7u8; 200], to).unwrap();
        }
        let udp_errors = nstat(&name, &["UdpRcvbufErrors"])[0] - before;
        // A ping socket whose receive buffer is the kernel's minimum and
        // that never reads: its own echo replies overflow it.
        let ping = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::ICMPV4))
            .expect("a ping socket (ping_group_range is open in the namespace)");
        ping.set_recv_buffer_size(1).unwrap();
        let rcvbuf = ping.recv_buffer_size().unwrap();
        let lo: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut echo = vec![8u8, 0, 0, 0, 0, 0, 0, 1];
        echo.extend_from_slice(&[0x55; 200]);
        for _ in 0..N {
            ping.send_to(&echo, &lo.into()).unwrap();
        }
        let inode = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/self/fd/{}", ping.as_raw_fd())).unwrap().ino()
        };
        let drops = icmp_drops(&name, inode);
        (udp_errors, rcvbuf, drops, ping)
    });
    let tid = work.tid;
    let sql = format!(
        "SELECT event, protocol, rmem_alloc, truesize, sk_rcvbuf, kind, current_pid, current_process, overruns \
         FROM socket_pressure WHERE current_tid = {tid}"
    );
    let (plan, err, ok) = run(&["--format", "ndjson", &format!("EXPLAIN {sql}")]);
    assert!(ok, "{err}");
    assert!(
        plan.contains("socket_pressure: tracepoints sock:sock_rcvqueue_full, sock:sock_exceed_buf_limit"),
        "{plan}"
    );
    let mut stream = Stream::start(&[], &sql);
    let bpf = Bpftrace::count("sock:sock_rcvqueue_full", &format!("tid == {tid}"));
    let (udp_errors, rcvbuf, drops, _ping) = work.run();
    assert!(udp_errors > 0 && drops > 0 && drops < N as u64, "udp {udp_errors}, ping {drops}");
    // Every drop the socket counted is a row (the UDP overflows before are
    // none: the kernel's order puts them first, so a row of theirs would
    // be among these).
    let rows = stream.rows_until(|rows| rows.len() as u64 >= drops);
    let rest = stream.stop();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!((rows.len() as u64, bpf.stop()), (drops, drops));
    let me = my_pid();
    for r in &rows {
        assert_eq!(
            (&r["event"], &r["protocol"], &r["kind"]),
            (&Value::from("rcvqueue_full"), &Value::Null, &Value::Null)
        );
        assert_eq!(
            (&r["sk_rcvbuf"], &r["current_pid"], &r["overruns"]),
            (&Value::from(rcvbuf), &Value::from(me), &0.into())
        );
        // The kernel refuses when the queue already holds the buffer's worth.
        let (rmem, truesize) = (r["rmem_alloc"].as_i64().unwrap(), r["truesize"].as_u64().unwrap());
        assert!(rmem >= rcvbuf as i64 && truesize > 200, "{r}");
    }
}

/// A memory cgroup (v1) of the test's own, removed when dropped (after
/// the process in it has gone).
struct MemCgroup(std::path::PathBuf);

impl MemCgroup {
    fn new(tag: &str) -> MemCgroup {
        let root = std::path::Path::new("/sys/fs/cgroup/memory");
        assert!(
            root.join("memory.kmem.tcp.limit_in_bytes").exists(),
            "this test needs the cgroup v1 memory controller at {} (with kmem.tcp)",
            root.display()
        );
        let dir = root.join(format!("sockql-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        let cg = MemCgroup(dir);
        std::fs::write(cg.0.join("memory.kmem.tcp.limit_in_bytes"), "0").unwrap();
        cg
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Opens `near` connections on loopback (sending 200 KB non-blocking on
/// each, never read), then joins the cgroup and opens `n` more the same
/// way; waits for a line before each part.
const CHARGED: &str = r#"
import os, socket, sys
cg, near, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(os.getpid(), flush=True)
def connections(k, keep):
    l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(8)
    for _ in range(k):
        c = socket.socket(); c.connect(l.getsockname()); s, _ = l.accept()
        c.setblocking(False)
        for _ in range(20):
            try:
                c.send(b'x' * 10000)
            except BlockingIOError:
                pass
        keep.append((c, s))
keep = []
sys.stdin.readline()
connections(near, keep)
with open(cg + '/cgroup.procs', 'w') as f:
    f.write(str(os.getpid()))
connections(n, keep)
print('done', flush=True)
sys.stdin.readline()
"#;

#[test]
fn exceed_buf_limit_from_a_memory_cgroup_equals_bpftrace() {
    use std::io::{BufRead, BufReader, Write};
    const N: u64 = 5;
    require_root();
    let cg = MemCgroup::new("spx");
    let mut child = crate::packet_drops::Killed(
        std::process::Command::new("/usr/bin/python3")
            .args(["-c", CHARGED, cg.0.to_str().unwrap(), "3", &N.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let pid: u32 = line.trim().parse().unwrap();
    let sql = format!(
        "SELECT event, protocol, kind, rmem_alloc, sysctl_mem_max, current_pid, current_process, overruns \
         FROM socket_pressure WHERE current_pid = {pid}"
    );
    let mut stream = Stream::start(&[], &sql);
    let bpf = Bpftrace::count("sock:sock_exceed_buf_limit", &format!("pid == {pid}"));
    writeln!(stdin).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    let recv = |rows: &[Value]| rows.iter().filter(|r| r["kind"] == "recv").count() as u64;
    let mut rows = stream.rows_until(|rows| recv(rows) >= N);
    rows.extend(stream.stop());
    let counted = bpf.stop();
    // One receive refusal per connection in the cgroup (its first data),
    // the three before it none; a send may be refused too, when the
    // sender's queue is not yet acknowledged (as timing has it): bpftrace
    // counts the same.
    assert_eq!((recv(&rows), rows.len() as u64), (N, counted), "{rows:#?}");
    let tcp_mem_max: i64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem")
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    for r in &rows {
        assert_eq!(
            (&r["event"], &r["protocol"], &r["current_pid"], &r["current_process"], &r["overruns"]),
            (
                &Value::from("exceed_buf_limit"),
                &Value::from("TCP"),
                &Value::from(pid),
                &Value::from("python3"),
                &Value::from(0)
            ),
            "{r}"
        );
        assert_eq!(r["sysctl_mem_max"], Value::from(tcp_mem_max), "{r}");
        assert!(["recv", "send"].contains(&r["kind"].as_str().unwrap()), "{r}");
    }
    drop(stdin);
    drop(child);
    drop(cg);
}
