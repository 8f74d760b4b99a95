//! `packet_drops` in two namespaces joined by a veth pair: each drop names
//! its namespace, interface, 4-tuple and socket, equal to what the test
//! made (cross-checked with `ip link` and `ss -uanpe`), counted equal to
//! the namespace's nft counter, nstat and bpftrace; and near misses (the
//! other namespace's drops, another reason) absent.
//!
//! A sends to B: one socket of B (connected back to A's sender) has its
//! datagrams dropped by an nft rule in B (NETFILTER_DROP: no socket took
//! them, so the socket is found by the packet's 4-tuple); another of B
//! has a receive buffer too small for them (SOCKET_RCVBUFF: the kernel
//! names the socket, rx_sk). B sends to A, dropped by A's rule (the other
//! namespace), and to a closed port of its own (NO_SOCKET: another reason).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::conntrack::NftExt;
use crate::netns::{link, Netns};
use crate::packet_drops::{nstat, Bpftrace, Stream};

const N: usize = 30; // A -> B, dropped by B's rule
const M: usize = 12; // B -> A, dropped by A's rule
const K: usize = 200; // A -> B's small buffer
const C: usize = 9; // B -> a closed port of B

fn inode_of(s: &UdpSocket) -> u64 {
    nix::sys::stat::fstat(s).unwrap().st_ino
}

fn ifindex(ns: &Netns, dev: &str) -> u64 {
    let out = ns.exec_ok("ip", &["-o", "link", "show", "dev", dev]);
    out.split(':').next().unwrap().trim().parse().unwrap()
}

/// Packets of `ns`'s nft rule for UDP port `port`.
fn nft_packets(ns: &Netns, port: u16) -> u64 {
    let text = ns.exec_ok("nft", &["list", "table", "inet", "sockql_pdv"]);
    let line = text.lines().find(|l| l.contains(&format!("dport {port} "))).unwrap_or_else(|| panic!("{text}"));
    line.split("packets ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

fn drop_rule(ns: &Netns, port: u16) {
    ns.nft(&format!(
        "table inet sockql_pdv {{\n chain input {{\n type filter hook input priority 0;\n udp dport {port} counter drop\n }}\n}}\n"
    ));
}

#[test]
fn drops_name_namespace_interface_tuple_and_socket() {
    let (a, b) = (Netns::new("pdva"), Netns::new("pdvb"));
    let (_va, vb) = link(&a, &b, 61);
    let (a_ip, b_ip) = ("10.231.61.1", "10.231.61.2");
    // Sockets made in their namespaces stay there.
    let sender = a.enter(move || UdpSocket::bind((a_ip, 0)).unwrap());
    let (receiver, small, b_out) = b.enter(move || {
        let small = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        small.set_recv_buffer_size(1).unwrap();
        small.bind(&format!("{b_ip}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
        (UdpSocket::bind((b_ip, 0)).unwrap(), UdpSocket::from(small), UdpSocket::bind("127.0.0.1:0").unwrap())
    });
    let (s_addr, r_addr, small_addr) =
        (sender.local_addr().unwrap(), receiver.local_addr().unwrap(), small.local_addr().unwrap());
    receiver.connect(s_addr).unwrap();
    drop_rule(&b, r_addr.port());
    drop_rule(&a, s_addr.port());
    // Neighbours resolved first: nothing waits in an ARP queue.
    a.exec_ok("ping", &["-c1", "-W2", b_ip]);
    let closed = b.enter(|| UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());

    let (a_ino, b_ino) = (a.inode(), b.inode());
    let reasons = "reason IN ('NETFILTER_DROP', 'SOCKET_RCVBUFF')";
    let cols = "reason, netns, netns_name, ifindex, interface, protocol, src_addr, src_port, dst_addr, dst_port, \
                rx_sk, inode, pid, process, reader, overruns";
    let in_b = format!("SELECT {cols} FROM packet_drops WHERE {reasons} AND netns = {b_ino}");
    let (plan, err, ok) = run(&["--format", "ndjson", &format!("EXPLAIN {in_b}")]);
    assert!(ok, "{err}");
    assert!(plan.contains(&format!("netns=[{}] (in the kernel)", b.name)), "{plan}");
    let mut only_b = Stream::start(&[], &in_b);
    let mut both =
        Stream::start(&[], &format!("SELECT {cols} FROM packet_drops WHERE {reasons} AND netns IN ({a_ino}, {b_ino})"));
    let netfilter = {
        let text = std::process::Command::new("unshare")
            .args(["-m", "sh", "-c", "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing; cat /sys/kernel/tracing/events/skb/kfree_skb/format"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout).into_owned();
        let at = text.find(", \"NETFILTER_DROP\" }").unwrap();
        text[text[..at].rfind('{').unwrap() + 1..at].trim().parse::<i64>().unwrap()
    };
    let bpf = Bpftrace::count(
        "skb:kfree_skb",
        &format!(
            "args->reason == {netfilter} && ((struct sk_buff *)args->skbaddr)->dev->nd_net.net->ns.inum == {b_ino}"
        ),
    );

    let [before_rcvbuf, before_noports] = nstat(&b.name, &["UdpRcvbufErrors", "UdpNoPorts"])[..] else { panic!() };
    let payload = [7u8; 1000];
    for _ in 0..N {
        sender.send_to(b"to b", r_addr).unwrap();
    }
    for _ in 0..M {
        receiver.send(b"to a").unwrap();
    }
    for _ in 0..K {
        sender.send_to(&payload, small_addr).unwrap();
    }
    for _ in 0..C {
        b_out.send_to(b"closed", ("127.0.0.1", closed)).unwrap();
    }
    // Every datagram for the small buffer is either queued (read here)
    // or one of B's UdpRcvbufErrors.
    small.set_nonblocking(true).unwrap();
    let mut got = 0usize;
    let mut buf = [0u8; 2048];
    let rcvbuf = eventually(Duration::from_secs(10), || {
        while small.recv(&mut buf).is_ok() {
            got += 1;
        }
        let errors = nstat(&b.name, &["UdpRcvbufErrors"])[0] - before_rcvbuf;
        (got as u64 + errors == K as u64 && nft_packets(&b, r_addr.port()) == N as u64).then_some(errors)
    });
    assert!(rcvbuf > 0, "the buffer never filled: {got} read");
    let (from_a, noports) = (nft_packets(&a, s_addr.port()), nstat(&b.name, &["UdpNoPorts"])[0] - before_noports);
    assert_eq!((from_a, noports), (M as u64, C as u64), "the near misses happened");

    let want_b = N + rcvbuf as usize;
    let mut rows = only_b.rows_until(|r| r.len() >= want_b);
    rows.extend(only_b.stop());
    let mut all = both.rows_until(|r| r.len() >= want_b + M);
    all.extend(both.stop());
    assert_eq!(bpf.stop(), N as u64, "bpftrace's NETFILTER_DROP count in B");

    let (me, comm) = (Value::from(my_pid()), Value::from(my_comm()));
    let (b_if, b_name) = (ifindex(&b, &vb), Value::from(b.name.clone()));
    let of = |rows: &[Value], reason: &str, ns: u64| -> Vec<Value> {
        rows.iter().filter(|r| r["reason"] == reason && r["netns"] == ns).cloned().collect()
    };
    assert_eq!(rows.len(), want_b, "{rows:?}");
    let nf = of(&rows, "NETFILTER_DROP", b_ino);
    let rb = of(&rows, "SOCKET_RCVBUFF", b_ino);
    assert_eq!((nf.len(), rb.len() as u64), (N, rcvbuf), "{rows:?}");
    // NETFILTER_DROP in B: on B's veth, A's sender to B's receiver, the
    // receiver found by that 4-tuple.
    let r_inode = inode_of(&receiver);
    for r in &nf {
        assert_eq!(
            (
                &r["netns_name"],
                &r["ifindex"],
                &r["interface"],
                &r["protocol"],
                &r["rx_sk"],
                &r["reader"],
                &r["overruns"]
            ),
            (&b_name, &b_if.into(), &Value::from(vb.clone()), &"udp".into(), &false.into(), &"bpf".into(), &0.into()),
            "{r}"
        );
        assert_eq!(
            (&r["src_addr"], &r["src_port"], &r["dst_addr"], &r["dst_port"]),
            (&a_ip.into(), &s_addr.port().into(), &b_ip.into(), &r_addr.port().into()),
            "{r}"
        );
        assert_eq!((&r["inode"], &r["pid"], &r["process"]), (&r_inode.into(), &me, &comm), "{r}");
    }
    // SOCKET_RCVBUFF: the kernel names the socket (rx_sk), its inode and holder.
    let small_inode = inode_of(&small);
    for r in &rb {
        assert_eq!(
            (&r["rx_sk"], &r["inode"], &r["pid"], &r["process"], &r["netns_name"]),
            (&true.into(), &small_inode.into(), &me, &comm, &b_name),
            "{r}"
        );
        assert_eq!((&r["src_port"], &r["dst_port"]), (&s_addr.port().into(), &small_addr.port().into()), "{r}");
    }
    // ss in B names the same sockets, tuples and process.
    let ss = b.exec_ok("ss", &["-uanpe"]);
    let line = |inode: u64| ss.lines().find(|l| l.contains(&format!("ino:{inode} "))).unwrap_or_else(|| panic!("{ss}"));
    let rl = line(r_inode);
    assert!(rl.contains(&r_addr.to_string()) && rl.contains(&s_addr.to_string()), "{rl}");
    assert!(rl.contains(&format!("pid={},", my_pid())), "{rl}");
    assert!(line(small_inode).contains(&small_addr.to_string()), "{ss}");

    // Both namespaces' scan: B's rows again, and A's rule's drops in A.
    assert_eq!((of(&all, "NETFILTER_DROP", b_ino).len(), of(&all, "SOCKET_RCVBUFF", b_ino).len() as u64), (N, rcvbuf));
    let in_a = of(&all, "NETFILTER_DROP", a_ino);
    assert_eq!(in_a.len(), M, "{all:?}");
    // The unconnected sender has no such 4-tuple; B's receiver has it,
    // but in another namespace: no socket.
    for r in &in_a {
        assert_eq!(
            (&r["src_port"], &r["dst_port"], &r["inode"], &r["pid"]),
            (&r_addr.port().into(), &s_addr.port().into(), &Value::Null, &Value::Null),
            "{r}"
        );
    }
    assert_eq!(all.len(), want_b + M, "{all:?}");
}
