//! The tracepoint reader against the real kernel, as root: state changes
//! of a scripted loopback connection against `ss`, drops of UDP sent to a
//! closed port in a namespace the test makes against the namespace's
//! UdpNoPorts counter and bpftrace, and nothing left behind after a drop
//! or a SIGKILL. Skipped (passing) when not root.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::event::need;
use super::test_support::{
    as_root_alone, cpus, first_allowed_cpu, perf_fds, pin_this_thread, read_to_line, say_and_wait_for_kill,
    symbol_value, test_child, Bpftrace, Netns,
};
use super::{Options, Request, TraceReader, Tracefs};

/// Read until `done` says so or 5 s pass.
fn read_until(reader: &mut TraceReader, mut on: impl FnMut(&super::Sample<'_>), done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        reader
            .read_waiting(|s| {
                on(s);
                ControlFlow::Continue(())
            })
            .unwrap();
        if done() || Instant::now() > deadline {
            return;
        }
        reader.wait(50).unwrap();
    }
}

/// `ss` state of the socket with these local and peer ports.
fn ss_state(local: u16, peer: u16) -> String {
    let out = Command::new("ss")
        .args(["-tanH", "state", "all", &format!("( sport = :{local} and dport = :{peer} )")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace().next().unwrap_or("").to_string()
}

/// ss's names for the kernel's (TCP_FIN_WAIT2 -> FIN-WAIT-2, ESTABLISHED -> ESTAB).
fn ss_name(kernel: &str) -> String {
    let s = kernel.trim_start_matches("TCP_").replace('_', "-");
    match s.as_str() {
        "ESTABLISHED" => "ESTAB".into(),
        "FIN-WAIT1" => "FIN-WAIT-1".into(),
        "FIN-WAIT2" => "FIN-WAIT-2".into(),
        _ => s,
    }
}

#[test]
fn inet_sock_set_state_follows_a_loopback_connection() {
    let Some(_one) = as_root_alone() else { return };
    let tracefs = Tracefs::open().unwrap();
    let format = tracefs.format("sock", "inet_sock_set_state").unwrap();
    let states = format.symbols["newstate"].clone();
    let (sk_f, old_f, new_f, sport_f, dport_f) = (
        need(&format, "sock", "skaddr", &[8]).unwrap().clone(),
        need(&format, "sock", "oldstate", &[4]).unwrap().clone(),
        need(&format, "sock", "newstate", &[4]).unwrap().clone(),
        need(&format, "sock", "sport", &[2]).unwrap().clone(),
        need(&format, "sock", "dport", &[2]).unwrap().clone(),
    );
    // The listener's port is known before it listens: bind, then listen
    // once the reader is open, so its CLOSE -> LISTEN is seen too.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    // A near miss: a connection on another port the filter leaves out.
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let filter = format!("sport == {port} || dport == {port}");
    let mut reader =
        TraceReader::open(&[Request { group: "sock", format: &format, filter: Some(&filter) }], Options::default())
            .unwrap();
    let monotonic = || {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    };
    let start = monotonic();
    socket.listen(8).unwrap();
    let listener: TcpListener = socket.into();
    let _near_miss = TcpStream::connect(other.local_addr().unwrap()).unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let cport = client.local_addr().unwrap().port();

    // Socket (its address: a connecting socket has no local port yet
    // when it enters SYN_SENT) -> its latest (sport, dport) and every
    // [(old, new)] in order.
    type Sockets = HashMap<u64, ((u16, u16), Vec<(String, String)>)>;
    let seen: std::cell::RefCell<Sockets> = Default::default();
    let name = |v: i64| states.name(v).unwrap_or("?").to_string();
    let times = std::cell::RefCell::new(Vec::new());
    let mut on = |s: &super::Sample<'_>| {
        times.borrow_mut().push(s.time_ns);
        let ports = (s.u64(&sport_f).unwrap() as u16, s.u64(&dport_f).unwrap() as u16);
        let change = (name(s.i64(&old_f).unwrap()), name(s.i64(&new_f).unwrap()));
        let mut seen = seen.borrow_mut();
        let entry = seen.entry(s.u64(&sk_f).unwrap()).or_default();
        if ports.0 != 0 {
            entry.0 = ports;
        }
        entry.1.push(change);
    };
    let changes = |k: (u16, u16)| seen.borrow().values().find(|v| v.0 == k).map(|v| v.1.clone()).unwrap_or_default();
    let last = |k: (u16, u16)| changes(k).last().map(|c| c.1.clone()).unwrap_or_default();
    let established = || last((cport, port)) == "TCP_ESTABLISHED" && last((port, cport)) == "TCP_ESTABLISHED";
    read_until(&mut reader, &mut on, established);
    // As ss sees them now.
    assert_eq!(ss_name(&last((cport, port))), ss_state(cport, port));
    assert_eq!(ss_name(&last((port, cport))), ss_state(port, cport));

    client.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    server.read_exact(&mut b).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    read_until(&mut reader, &mut on, || {
        last((cport, port)) == "TCP_FIN_WAIT2" && last((port, cport)) == "TCP_CLOSE_WAIT"
    });
    assert_eq!(
        (ss_name(&last((cport, port))), ss_name(&last((port, cport)))),
        (ss_state(cport, port), ss_state(port, cport))
    );
    drop(server);
    read_until(&mut reader, &mut on, || last((port, cport)) == "TCP_CLOSE" && last((cport, port)) == "TCP_CLOSE");
    drop(listener);
    read_until(&mut reader, &mut on, || last((port, 0)) == "TCP_CLOSE");
    // Stamped on CLOCK_MONOTONIC, in order on each CPU, within the test.
    let end = monotonic();
    assert!(times.borrow().iter().all(|&t| (start..=end).contains(&t)), "{start} {:?} {end}", times.borrow());
    // The client's socket is closed; what ss shows is the TIME-WAIT
    // socket that took its place, which has no state change of its own.
    assert_eq!(ss_state(cport, port), "TIME-WAIT");
    drop(client);

    let pairs =
        |v: &[(&str, &str)]| v.iter().map(|(a, b)| (format!("TCP_{a}"), format!("TCP_{b}"))).collect::<Vec<_>>();
    assert_eq!(changes((port, 0)), pairs(&[("CLOSE", "LISTEN"), ("LISTEN", "CLOSE")]), "listener");
    assert_eq!(
        changes((cport, port)),
        pairs(&[
            ("CLOSE", "SYN_SENT"),
            ("SYN_SENT", "ESTABLISHED"),
            ("ESTABLISHED", "FIN_WAIT1"),
            ("FIN_WAIT1", "FIN_WAIT2"),
            ("FIN_WAIT2", "CLOSE"),
        ]),
        "client"
    );
    assert_eq!(
        changes((port, cport)),
        pairs(&[
            ("LISTEN", "SYN_RECV"),
            ("SYN_RECV", "ESTABLISHED"),
            ("ESTABLISHED", "CLOSE_WAIT"),
            ("CLOSE_WAIT", "LAST_ACK"),
            ("LAST_ACK", "CLOSE"),
        ]),
        "server"
    );
    // The near miss's port never came through the kernel's filter.
    let oport = other.local_addr().unwrap().port();
    let seen = seen.into_inner();
    assert!(seen.values().all(|((s, d), _)| *s != oport && *d != oport), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!((reader.lost(), reader.malformed()), (0, 0));
}

#[test]
fn kfree_skb_counts_no_socket_drops_in_a_namespace() {
    let Some(_one) = as_root_alone() else { return };
    let tracefs = Tracefs::open().unwrap();
    let format = tracefs.format("skb", "kfree_skb").unwrap();
    let reasons = &format.symbols["reason"];
    // The kernel's value for NO_SOCKET, from its own format.
    let no_socket = symbol_value(&format, "reason", "NO_SOCKET");
    let reason_f = need(&format, "skb", "reason", &[4]).unwrap().clone();
    let proto_f = need(&format, "skb", "protocol", &[2]).unwrap().clone();
    let location_f = need(&format, "skb", "location", &[8]).unwrap().clone();
    let ns = Netns::new("tracedrop");
    const N: u64 = 200;
    // The sender thread's id: loopback delivers in the sender's softirq,
    // so the drops carry it as common_pid, and the filter keeps other
    // tests' drops on this host out.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let before = ns.nstat("UdpNoPorts");
    std::thread::scope(|s| {
        let ns = &ns;
        let sender = s.spawn(move || {
            ns.run(move || {
                tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
                go_rx.recv().unwrap();
                let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = closed.local_addr().unwrap().port();
                drop(closed);
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                // A near miss: one datagram to an open port is no drop.
                let open = UdpSocket::bind("127.0.0.1:0").unwrap();
                udp.send_to(b"kept", open.local_addr().unwrap()).unwrap();
                for _ in 0..N {
                    udp.send_to(b"dropped", ("127.0.0.1", port)).unwrap();
                }
                let mut b = [0u8; 8];
                assert_eq!(open.recv(&mut b).unwrap(), 4);
            })
        });
        let tid = tid_rx.recv().unwrap();
        let filter = format!("reason == {no_socket} && common_pid == {tid}");
        let mut reader =
            TraceReader::open(&[Request { group: "skb", format: &format, filter: Some(&filter) }], Options::default())
                .unwrap();
        let bpf = Bpftrace::count(&format!("args->reason == {no_socket} && tid == {tid}"));
        go_tx.send(()).unwrap();
        sender.join().unwrap();
        let kallsyms = super::kallsyms::Kallsyms::load().unwrap();
        let (count, other) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
        let mut functions = HashMap::<String, u64>::new();
        let mut on = |s: &super::Sample<'_>| {
            let named = reasons.name(s.i64(&reason_f).unwrap());
            if named == Some("NO_SOCKET") && s.u64(&proto_f) == Some(0x0800) && s.tid == tid as u32 {
                count.set(count.get() + 1);
            } else {
                other.set(other.get() + 1);
            }
            let at = kallsyms.resolve(s.u64(&location_f).unwrap()).map(|s| s.name.to_string());
            *functions.entry(at.unwrap_or_default()).or_default() += 1;
        };
        read_until(&mut reader, &mut on, || count.get() >= N);
        // The sender has returned, so every drop it caused is in the ring
        // (delivered in its own softirq): one more pass finds any extra.
        reader
            .read_waiting(|s| {
                on(s);
                ControlFlow::Continue(())
            })
            .unwrap();
        let (count, other) = (count.get(), other.get());
        let no_ports = ns.nstat("UdpNoPorts") - before;
        assert_eq!((count, other, no_ports, reader.lost()), (N, 0, N, 0), "{functions:?}");
        // The kernel names the function that dropped them.
        assert_eq!(functions.len(), 1, "{functions:?}");
        assert!(functions.keys().all(|f| f.contains("udp")), "{functions:?}");
        Bpftrace::assert_counted(bpf, N);
    });
}

/// What the host's ftrace shows of kfree_skb and inet_sock_set_state:
/// their enable and filter files, the enabled event list, tracing_on.
fn tracing_state(t: &Tracefs) -> Vec<String> {
    [
        "events/skb/kfree_skb/enable",
        "events/skb/kfree_skb/filter",
        "events/sock/inet_sock_set_state/enable",
        "set_event",
        "tracing_on",
        "current_tracer",
    ]
    .iter()
    .map(|f| t.read(f, 1 << 16).unwrap())
    .collect()
}

#[test]
fn nothing_remains_after_drop() {
    let Some(_one) = as_root_alone() else { return };
    let t = Tracefs::open().unwrap();
    let state = tracing_state(&t);
    let me = std::process::id();
    let before = perf_fds(me);
    let kfree = t.format("skb", "kfree_skb").unwrap();
    let states = t.format("sock", "inet_sock_set_state").unwrap();
    let reader = TraceReader::open(
        &[
            Request { group: "skb", format: &kfree, filter: Some("reason == 3") },
            Request { group: "sock", format: &states, filter: None },
        ],
        Options::default(),
    )
    .unwrap();
    assert_eq!(perf_fds(me), before + 2 * cpus());
    // The host's ftrace state is not how the reader works: untouched.
    assert_eq!(tracing_state(&t), state);
    drop(reader);
    assert_eq!(perf_fds(me), before);
    assert_eq!(tracing_state(&t), state);
    assert_eq!(state[0].trim(), "0");
    // A filter the kernel refuses is a one-line error, and leaves nothing.
    let e = TraceReader::open(
        &[Request { group: "skb", format: &kfree, filter: Some("no_such_field == 1") }],
        Options::default(),
    )
    .err()
    .unwrap();
    assert!(e.to_string().starts_with("tracepoint skb:kfree_skb: the kernel refused the filter"), "{e}");
    assert_eq!(perf_fds(me), before);
}

/// The child half of `nothing_remains_after_sigkill`: opens a reader,
/// says so, and waits to be killed.
#[test]
#[ignore]
fn child_holds_reader() {
    if std::env::var_os("SOCKQL_TRACE_CHILD").is_none() {
        return;
    }
    let t = Tracefs::open().unwrap();
    let f = t.format("skb", "kfree_skb").unwrap();
    let _reader = TraceReader::open(&[Request { group: "skb", format: &f, filter: None }], Options::default()).unwrap();
    say_and_wait_for_kill("READY");
}

#[test]
fn nothing_remains_after_sigkill() {
    let Some(_one) = as_root_alone() else { return };
    let t = Tracefs::open().unwrap();
    let state = tracing_state(&t);
    let mut child = test_child("trace::kernel_tests::child_holds_reader", ("SOCKQL_TRACE_CHILD", "1"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = read_to_line(child.stdout.as_mut().unwrap(), "READY");
    let pid = child.id();
    assert_eq!(perf_fds(pid), cpus(), "{text}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(perf_fds(pid), 0);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(tracing_state(&t), state);
    // No tracefs left mounted by the child's private mount either.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        super::tracefs::mount_points(&mounts).is_empty(),
        !matches!(t.reached, super::tracefs::Reached::Mounted(_))
    );
}

/// A ring too small for a burst: what the kernel could not write comes
/// back as PERF_RECORD_LOST and is counted, so samples read plus samples
/// lost is every drop the sender caused.
#[test]
fn a_full_ring_counts_what_it_lost() {
    let Some(_one) = as_root_alone() else { return };
    let tracefs = Tracefs::open().unwrap();
    let format = tracefs.format("skb", "kfree_skb").unwrap();
    let ns = Netns::new("tracelost");
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<u64>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let ns = &ns;
        s.spawn(move || {
            ns.run(move || {
                // Pinned to one CPU: a ring's LOST record is written only
                // when a later sample comes to that same CPU's ring.
                pin_this_thread(first_allowed_cpu());
                tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
                let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
                let port = closed.local_addr().unwrap().port();
                drop(closed);
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                while let Ok(n) = go_rx.recv() {
                    for _ in 0..n {
                        udp.send_to(b"x", ("127.0.0.1", port)).unwrap();
                    }
                    done_tx.send(()).unwrap();
                }
            })
        });
        let tid = tid_rx.recv().unwrap();
        let filter = format!("common_pid == {tid}");
        // One data page: about fifty samples.
        let mut reader = TraceReader::open(
            &[Request { group: "skb", format: &format, filter: Some(&filter) }],
            Options { pages: 1, wakeup_bytes: 0 },
        )
        .unwrap();
        let mut read = 0u64;
        let mut count = |r: &mut TraceReader| {
            r.read_waiting(|_| {
                read += 1;
                ControlFlow::Continue(())
            })
            .unwrap()
        };
        go_tx.send(500).unwrap();
        done_rx.recv().unwrap();
        count(&mut reader);
        // The kernel writes its LOST record once there is room again,
        // before the next sample.
        go_tx.send(1).unwrap();
        done_rx.recv().unwrap();
        count(&mut reader);
        drop(go_tx);
        let lost = reader.lost();
        assert!(lost > 0 && read < 200, "read {read}, lost {lost}");
        assert_eq!(read + lost, 501, "read {read}, lost {lost}");
    });
}
