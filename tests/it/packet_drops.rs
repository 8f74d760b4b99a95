//! `packet_drops` against the kernel's own counters for the same cause
//! and against bpftrace counting the same tracepoint: drops made for real
//! in namespaces the tests create.
//!
//! The eBPF reader names each drop's namespace, so each query keeps the
//! drops of the test's own namespace (`WHERE netns = N`, applied in the
//! kernel), and within it those of its own thread where other traffic
//! could share the namespace (`current_tid = T`: packets sent on loopback
//! or a veth are delivered in the sending thread's softirq). Those counts
//! are then compared for equality with the namespace's counters (nstat,
//! nft), which only this test's traffic moves.
//!
//! To know every row is in before the stream ends, each test either ends
//! its traffic with a sentinel drop the query also keeps (an IPv6
//! datagram to a closed port, or one more nft drop), sent from the same
//! thread after the counted ones, or waits for as many rows as the
//! counters say and then checks that no more come before the end.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::conntrack::NftExt;
use crate::netns::Netns;

/// The saved reports over tracepoint streams: run by the tests here, not
/// by the per-namespace harness in reports.rs (their rows carry no netns).
pub const TRACE_REPORTS: &[&str] = &["drops_by_reason", "drops_by_process", "metric_packet_drops"];

const LONG: Duration = Duration::from_secs(20);

/// A child killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// sockql streaming `sql` (`--follow`), started and listening.
pub struct Stream {
    child: Killed,
    lines: Receiver<String>,
    err: std::thread::JoinHandle<String>,
}

impl Stream {
    pub fn start(args: &[&str], sql: &str) -> Stream {
        let mut child = Killed(
            Command::new(bin())
                .args(["--follow", "--format", "ndjson"])
                .args(args)
                .arg(sql)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let (tx, lines) = channel();
        let out = child.0.stdout.take().unwrap();
        std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        // stderr says when listening starts; kept for failure messages.
        let (ready_tx, ready) = channel();
        let mut err_pipe = BufReader::new(child.0.stderr.take().unwrap());
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let mut line = String::new();
            while err_pipe.read_line(&mut line).unwrap_or(0) > 0 {
                if line.contains("listening") {
                    let _ = ready_tx.send(());
                }
                text.push_str(&line);
                line.clear();
            }
            text
        });
        if ready.recv_timeout(LONG).is_err() {
            let _ = child.0.kill();
            panic!("sockql did not start listening: {}", err.join().unwrap());
        }
        Stream { child, lines, err }
    }

    /// Rows as they come until `done` holds for the rows so far.
    pub fn rows_until(&mut self, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let mut rows = Vec::new();
        while !done(&rows) {
            let Ok(line) = self.lines.recv_timeout(LONG) else {
                let _ = self.child.0.kill();
                let err = std::mem::replace(&mut self.err, std::thread::spawn(String::new));
                panic!("rows so far: {rows:?}; sockql said: {}", err.join().unwrap());
            };
            rows.push(serde_json::from_str(&line).unwrap());
        }
        rows
    }

    /// Ctrl-C; it must end cleanly. Returns any rows after those taken.
    pub fn stop(mut self) -> Vec<Value> {
        // SAFETY: a signal to the child we spawned.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGINT) };
        let status = self.child.0.wait().unwrap();
        let err = self.err.join().unwrap();
        assert!(status.success(), "{err}");
        self.lines.try_iter().map(|l| serde_json::from_str(&l).unwrap()).collect()
    }
}

/// A thread in `ns` that says its id, then runs `f` when told to: the
/// query filters on that id before the traffic starts.
pub struct NsThread<T> {
    pub tid: i32,
    go: Sender<()>,
    done: std::thread::JoinHandle<T>,
}

impl<T: Send + 'static> NsThread<T> {
    pub fn new(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> NsThread<T> {
        let file = std::fs::File::open(format!("/run/netns/{}", ns.name)).unwrap();
        let (tid_tx, tid_rx) = channel();
        let (go, go_rx) = channel::<()>();
        let done = std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a namespace fd we hold.
            assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            go_rx.recv().unwrap();
            f()
        });
        NsThread { tid: tid_rx.recv().unwrap(), go, done }
    }

    pub fn run(self) -> T {
        self.go.send(()).unwrap();
        self.done.join().unwrap()
    }
}

/// A UDP port of this namespace with nothing bound to it.
fn closed_port(addr: &str) -> u16 {
    let s = UdpSocket::bind((addr, 0)).unwrap();
    s.local_addr().unwrap().port()
}

/// The sentinel: one IPv6 datagram to a closed port (NO_SOCKET, l3 ipv6).
fn sentinel() {
    let port = closed_port("::1");
    UdpSocket::bind("[::1]:0").unwrap().send_to(b"end", ("::1", port)).unwrap();
}

fn is_sentinel(r: &Value) -> bool {
    r["reason"] == "NO_SOCKET" && r["l3"] == "ipv6"
}

/// Absolute values of nstat counters in `ns` (-s: its history file is
/// neither read nor written, so parallel tests cannot disturb it).
pub fn nstat(ns: &str, names: &[&str]) -> Vec<u64> {
    let o = Command::new("ip").args(["netns", "exec", ns, "nstat", "-asz"]).args(names).output().unwrap();
    assert!(o.status.success(), "nstat: {}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    names
        .iter()
        .map(|n| {
            out.lines()
                .find_map(|l| l.strip_prefix(n).filter(|rest| rest.starts_with(char::is_whitespace)))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("{n} not in {out}"))
        })
        .collect()
}

/// The kernel's number for a drop reason, read through sockql's own rows
/// is circular; read it from the format file instead (mounted tracefs, or
/// a private mount in a mount namespace of its own).
fn reason_number(name: &str) -> i64 {
    let script = "f=events/skb/kfree_skb/format; for d in /sys/kernel/tracing /sys/kernel/debug/tracing; do \
                  [ -r $d/$f ] && exec cat $d/$f; done; mount -t tracefs nodev /sys/kernel/tracing && exec cat /sys/kernel/tracing/$f";
    let out = Command::new("unshare").args(["-m", "sh", "-c", script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!(", \"{name}\" }}");
    let at = text.find(&needle).unwrap_or_else(|| panic!("{name} not in the format file: {text}"));
    let open = text[..at].rfind('{').unwrap();
    text[open + 1..at].trim().parse().unwrap()
}

/// bpftrace counting skb:kfree_skb with `predicate`, ready.
pub struct Bpftrace(Killed);

impl Bpftrace {
    pub fn count(probe: &str, predicate: &str) -> Bpftrace {
        assert!(have("bpftrace"), "bpftrace (Debian package) is needed for this cross-check");
        let script = format!("BEGIN {{ printf(\"READY\\n\"); }} tracepoint:{probe} /{predicate}/ {{ @n = count(); }}");
        // Its own mount namespace: tracefs mounted there if needed, nothing left behind.
        let mount = "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing";
        let mut child = Killed(
            Command::new("unshare")
                .args(["-m", "sh", "-c", &format!("{mount} && exec bpftrace -e \"$1\""), "sh", &script])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut out = child.0.stdout.take().unwrap();
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while !text.ends_with(b"READY\n") && out.read(&mut byte).unwrap() == 1 {
            text.push(byte[0]);
        }
        assert!(text.ends_with(b"READY\n"), "bpftrace did not start: {}", String::from_utf8_lossy(&text));
        child.0.stdout = Some(out);
        Bpftrace(child)
    }

    pub fn stop(mut self) -> u64 {
        // SAFETY: a signal to the test's own child.
        assert_eq!(unsafe { libc::kill(self.0 .0.id() as i32, libc::SIGINT) }, 0);
        let mut text = String::new();
        self.0 .0.stdout.take().unwrap().read_to_string(&mut text).unwrap();
        self.0 .0.wait().unwrap();
        text.lines().find_map(|l| l.strip_prefix("@n:")).map_or(0, |n| n.trim().parse().unwrap())
    }
}

/// An accept queue overflow. On this kernel (6.18) a SYN that finds the
/// accept queue full is not a drop the tracepoint sees: tcp_conn_request
/// counts ListenOverflows and the SYN is consumed (consume_skb), so a
/// listener with backlog 1 flooded with connects yields no kfree_skb. The
/// kernel's TCP_LISTEN_OVERFLOW is the packet that would complete a
/// connection whose SYN got in while there was room, arriving when the
/// queue is full. Made here synchronously: a TCP_DEFER_ACCEPT listener
/// keeps connections half-made until their first data; with backlog B,
/// B connections fill the queue to B, then B more get in half-made, then
/// each sends its byte: the first fills the queue (B + 1), the other
/// B - 1 overflow, each one drop, one ListenOverflows and one ListenDrops.
#[test]
fn listen_overflow_drops_equal_listen_overflows() {
    const B: usize = 8;
    let ns = Netns::new("pdlo");
    let name = ns.name.clone();
    let work = NsThread::new(&ns, move || {
        use std::io::Write;
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // SAFETY: setsockopt on our own socket with an int.
        let secs: libc::c_int = 30;
        let rc = unsafe {
            libc::setsockopt(
                l.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                &secs as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        l.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        l.listen(B as i32).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        for _ in 0..B {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"q").unwrap();
            queued.push(c);
        }
        let half: Vec<_> = (0..B).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        let before = nstat(&name, &["TcpExtListenOverflows", "TcpExtListenDrops"]);
        for mut c in half {
            c.write_all(b"d").unwrap();
            // Reset at once: no retransmission of the byte overflows again.
            socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
        }
        let after = nstat(&name, &["TcpExtListenOverflows", "TcpExtListenDrops"]);
        sentinel();
        drop((l, queued));
        (before, after)
    });
    let sql = format!(
        "SELECT reason, function, l3, ethertype, rx_sk, current_pid, current_tid, current_process, overruns, \
         netns_name, interface, reader FROM packet_drops \
         WHERE reason IN ('TCP_LISTEN_OVERFLOW', 'NO_SOCKET') AND current_tid = {} AND netns = {}",
        work.tid,
        ns.inode()
    );
    let mut stream = Stream::start(&[], &sql);
    let (before, after) = work.run();
    let rows = stream.rows_until(|rows| rows.iter().any(is_sentinel));
    let rest = stream.stop();
    let overflows: Vec<&Value> = rows.iter().chain(&rest).filter(|r| r["reason"] == "TCP_LISTEN_OVERFLOW").collect();
    let (d_over, d_drops) = (after[0] - before[0], after[1] - before[1]);
    assert_eq!((overflows.len() as u64, d_over, d_drops), (B as u64 - 1, B as u64 - 1, B as u64 - 1), "{rows:?}");
    for r in overflows {
        assert_eq!(
            (&r["function"], &r["l3"], &r["ethertype"]),
            (&Value::from("tcp_v4_rcv"), &"ipv4".into(), &2048.into())
        );
        assert_eq!((&r["current_pid"], &r["overruns"]), (&Value::from(my_pid()), &Value::from(0)));
        assert_eq!(
            (&r["netns_name"], &r["interface"], &r["reader"]),
            (&Value::from(ns.name.clone()), &"lo".into(), &"bpf".into())
        );
    }
}

/// NETFILTER_DROP for an nft drop rule in the namespace, equal to the
/// rule's counter; and the near miss: NO_SOCKET drops the same thread
/// causes before, between and after never appear, because the kernel
/// filter (shown in EXPLAIN as the kernel's number for the reason) keeps
/// them out.
#[test]
fn netfilter_drops_equal_the_rules_counter_and_other_reasons_stay_out() {
    const N: usize = 25;
    const M: usize = 10;
    let ns = Netns::new("pdnf");
    // Ports of the rules (any numbers: nothing listens in a new namespace).
    let dropped = closed_port("127.0.0.1").max(1024);
    let last = dropped - 1;
    ns.nft(&format!(
        "table inet sockql_pd {{\n chain input {{\n type filter hook input priority 0;\n \
         udp dport {dropped} counter drop\n udp dport {last} counter drop\n }}\n}}\n"
    ));
    let sql = format!(
        "SELECT reason, reason_code, function, l3, current_tid, dst_port FROM packet_drops \
         WHERE reason = 'NETFILTER_DROP' AND ethertype = 2048 AND netns = {}",
        ns.inode()
    );
    // EXPLAIN: the reason goes to the kernel as its number, the
    // ethertype as the tracepoint's protocol field, the namespace as its
    // inode; and the perf reader, asked for, takes the same filter.
    let number = reason_number("NETFILTER_DROP");
    let (plan, err, ok) = run(&["--format", "ndjson", &format!("EXPLAIN {sql}")]);
    assert!(ok, "{err}");
    assert!(
        plan.contains(&format!(
            "packet_drops: eBPF kfree_skb [reason == {number} && protocol == 2048] netns=[{}] (in the kernel)",
            ns.name
        )),
        "{plan}"
    );
    let (plan, err, ok) = run(&["--format", "ndjson", &format!("EXPLAIN {sql} AND reader = 'perf'")]);
    assert!(ok, "{err}");
    assert!(
        plan.contains(&format!("packet_drops: tracepoints skb:kfree_skb [reason == {number} && protocol == 2048]"))
            && plan.contains("reader=perf"),
        "{plan}"
    );
    let name = ns.name.clone();
    let work = NsThread::new(&ns, move || {
        let closed =
            std::iter::repeat_with(|| closed_port("127.0.0.1")).find(|p| ![dropped, last].contains(p)).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = nstat(&name, &["UdpNoPorts"])[0];
        for _ in 0..M {
            udp.send_to(b"no socket", ("127.0.0.1", closed)).unwrap();
        }
        for _ in 0..N {
            udp.send_to(b"nft", ("127.0.0.1", dropped)).unwrap();
            udp.send_to(b"no socket", ("127.0.0.1", closed)).unwrap();
        }
        // The sentinel: one more drop the query keeps, on its own rule.
        udp.send_to(b"last", ("127.0.0.1", last)).unwrap();
        nstat(&name, &["UdpNoPorts"])[0] - before
    });
    let tid = work.tid;
    let mut stream = Stream::start(&[], &format!("{sql} AND current_tid = {tid}"));
    let no_ports = work.run();
    let rows = stream.rows_until(|rows| rows.len() > N);
    let rest = stream.stop();
    assert_eq!(no_ports, (M + N) as u64, "the near misses happened");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(rows.iter().all(|r| r["reason"] == "NETFILTER_DROP" && r["reason_code"] == number), "{rows:?}");
    // The verdict is applied in nft_do_chain on 6.18 (nf_hook_slow on older kernels).
    let nft_function = |f: &Value| f == "nft_do_chain" || f == "nf_hook_slow";
    assert!(rows.iter().all(|r| nft_function(&r["function"]) && r["l3"] == "ipv4"), "{rows:?}");
    let to = |port: u16| rows.iter().filter(|r| r["dst_port"] == port).count();
    assert_eq!((to(dropped), to(last)), (N, 1), "{rows:?}");
    let counters = ns.exec_ok("nft", &["list", "table", "inet", "sockql_pd"]);
    let packets = |port: u16| {
        let line = counters.lines().find(|l| l.contains(&format!("dport {port} "))).unwrap();
        let n: u64 = line.split("packets ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        n
    };
    assert_eq!((rows.len(), packets(dropped), packets(last)), (N + 1, N as u64, 1), "{counters}");
}

/// NO_SOCKET: UDP to a closed port, as many rows as the namespace's
/// UdpNoPorts moved and as bpftrace counted on the same tracepoint with
/// the same predicate (reason and thread).
#[test]
fn no_socket_drops_equal_udp_no_ports_and_bpftrace() {
    const N: usize = 200;
    let ns = Netns::new("pdns");
    let name = ns.name.clone();
    let work = NsThread::new(&ns, move || {
        let closed = closed_port("127.0.0.1");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = nstat(&name, &["UdpNoPorts"])[0];
        for _ in 0..N {
            udp.send_to(b"dropped", ("127.0.0.1", closed)).unwrap();
        }
        let moved = nstat(&name, &["UdpNoPorts"])[0] - before;
        sentinel();
        moved
    });
    let tid = work.tid;
    let mut stream = Stream::start(
        &[],
        &format!(
            "SELECT reason, function, location, l3, ethertype, rx_sk, current_pid, current_process, overruns, \
             src_addr, dst_addr, dst_port, protocol, interface, netns \
             FROM packet_drops WHERE reason = 'NO_SOCKET' AND current_tid = {tid} AND netns = {}",
            ns.inode()
        ),
    );
    let no_socket = reason_number("NO_SOCKET");
    let bpf = Bpftrace::count(
        "skb:kfree_skb",
        &format!("args->reason == {no_socket} && tid == {tid} && args->protocol == 0x800 && {}", in_netns(ns.inode())),
    );
    let no_ports = work.run();
    let mut rows = stream.rows_until(|rows| rows.iter().any(is_sentinel));
    // The rings are read one CPU after another: a drop made before the
    // sentinel on another CPU can come after it (the counts below are exact).
    rows.extend(stream.stop());
    let v4: Vec<&Value> = rows.iter().filter(|r| r["l3"] == "ipv4").collect();
    assert_eq!((v4.len() as u64, no_ports, bpf.stop()), (N as u64, N as u64, N as u64));
    let me = my_pid();
    for r in &v4 {
        assert_eq!(
            (&r["ethertype"], &r["current_pid"], &r["overruns"]),
            (&Value::from(2048), &Value::from(me), &Value::from(0))
        );
        // No socket took it: the kernel names none.
        assert_eq!(r["rx_sk"], false, "{r}");
        let (f, loc) = (r["function"].as_str().unwrap(), r["location"].as_str().unwrap());
        assert!(f.contains("udp") && loc.starts_with(&format!("{f}+0x")), "{r}");
        assert_eq!(
            (&r["src_addr"], &r["dst_addr"], &r["protocol"], &r["interface"], &r["netns"]),
            (&"127.0.0.1".into(), &"127.0.0.1".into(), &"udp".into(), &"lo".into(), &ns.inode().into()),
        );
    }
    // One closed port, the one the thread sent to.
    let ports: std::collections::BTreeSet<String> = v4.iter().map(|r| r["dst_port"].to_string()).collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
}

/// The reports over packet_drops run through the CLI: drops a thread of
/// this test causes while they listen are in them under their reason and
/// function; the metric report's labels and value are what serve exports.
#[test]
fn drop_reports_name_reason_function_and_count() {
    let ns = Netns::new("pdrep");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let sent = NsThread::new(&ns, move || {
        let closed = closed_port("127.0.0.1");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut n = 0u64;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) && n < 100_000 {
            udp.send_to(b"x", ("127.0.0.1", closed)).unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    });
    let me = my_pid();
    let tid = sent.tid;
    let handle = std::thread::spawn(move || sent.run());
    for report in TRACE_REPORTS {
        let (out, err, ok) = run(&["--all-netns", "--capture-for", "2s", "run", report, "--format", "ndjson"]);
        assert!(ok, "{report}: {err}");
        let rows = parse_ndjson(&out);
        let ours = rows.iter().find(|r| {
            r["reason"] == "NO_SOCKET"
                && r["function"].as_str().is_some_and(|f| f.contains("udp"))
                && (*report != "drops_by_process" || r["current_pid"] == me)
        });
        let ours = ours.unwrap_or_else(|| panic!("{report} (thread {tid}): {rows:?}"));
        let n = if *report == "metric_packet_drops" { &ours["value"] } else { &ours["drops"] };
        assert!(n.as_u64().is_some_and(|n| n > 0), "{ours}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(handle.join().unwrap() > 0);
}

/// `--all-netns`: the program keeps every namespace's drops (EXPLAIN
/// says netns=all), and each row names its own: drops this test causes
/// in its namespace carry its inode and name.
#[test]
fn all_netns_rows_name_their_namespace() {
    let ns = Netns::new("pdall");
    let (plan, err, ok) = run(&["--all-netns", "--format", "ndjson", "EXPLAIN SELECT * FROM packet_drops"]);
    assert!(ok, "{err}");
    assert!(plan.contains("packet_drops: eBPF kfree_skb netns=all"), "{plan}");
    let work = NsThread::new(&ns, || {
        let closed = closed_port("127.0.0.1");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..20 {
            udp.send_to(b"x", ("127.0.0.1", closed)).unwrap();
        }
        sentinel();
    });
    let tid = work.tid;
    let sql = format!(
        "SELECT reason, l3, netns, netns_name, reader FROM packet_drops \
         WHERE reason = 'NO_SOCKET' AND current_tid = {tid}"
    );
    let mut stream = Stream::start(&["--all-netns"], &sql);
    work.run();
    let mut rows = stream.rows_until(|rows| rows.iter().any(is_sentinel));
    // Rings are read CPU by CPU: earlier drops of another CPU may follow the sentinel.
    rows.extend(stream.stop());
    assert_eq!(rows.len(), 21, "{rows:?}");
    let want = (Value::from(ns.inode()), Value::from(ns.name.clone()), Value::from("bpf"));
    assert!(
        rows.iter().all(|r| (r["netns"].clone(), r["netns_name"].clone(), r["reader"].clone()) == want),
        "{rows:?}"
    );
}

/// bpftrace's predicate for a drop whose device is in namespace `inode`.
fn in_netns(inode: u64) -> String {
    format!("((struct sk_buff *)args->skbaddr)->dev->nd_net.net->ns.inum == {inode}")
}
