//! The drop program against the real kernel, as root: UDP (IPv4 and
//! IPv6) sent over a veth pair from one namespace the test makes to a
//! closed port in another, read back with that namespace's inode, the
//! veth's ifindex there and the exact 4-tuple, counted against the
//! namespace's UdpNoPorts/Udp6NoPorts and bpftrace; filters compiled into
//! the program; nothing left after a drop or a SIGKILL; a verifier
//! refusal as one line. Skipped (passing) when not root.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::ControlFlow;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::insn::{Asm, R0};
use super::{DropReader, Headers, PacketDrop};
use crate::trace::filter::{AnyOf, Cmp, Filter, Op};
use crate::trace::test_support::{
    as_root_alone, cpus, fds_linking_to, first_allowed_cpu, perf_fds, pin_this_thread, read_to_line, root, run_in,
    say_and_wait_for_kill, symbol_value, test_child, Bpftrace, VethPair,
};
use crate::trace::{Options, Tracefs};

fn reason_value(name: &str) -> i64 {
    symbol_value(&Tracefs::open().unwrap().format("skb", "kfree_skb").unwrap(), "reason", name)
}

/// bpftrace's predicate for kfree_skb of `reason` in namespace `inum`.
fn in_netns(reason: i64, inum: u32) -> String {
    format!("args->reason == {reason} && ((struct sk_buff *)args->skbaddr)->dev->nd_net.net->ns.inum == {inum}")
}

fn filter(field: &str, value: i64) -> Filter {
    Filter(vec![AnyOf(vec![Cmp { field: field.into(), op: Op::Eq, value }])])
}

/// Every drop of namespace `inum` a reader has, reading until `enough`
/// of them or 5 s.
fn collect(r: &mut DropReader, inum: u32, out: &mut Vec<PacketDrop>, enough: usize) {
    collect_if(r, |d| d.netns == Some(inum), out, enough)
}

/// Every drop `keep` keeps, reading until `enough` of them or 5 s.
fn collect_if(r: &mut DropReader, keep: impl Fn(&PacketDrop) -> bool, out: &mut Vec<PacketDrop>, enough: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        r.read_waiting(|d| {
            if keep(d) {
                out.push(*d);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        if out.len() >= enough || Instant::now() > deadline {
            return;
        }
        r.wait(50).unwrap();
    }
}

#[test]
fn drops_carry_namespace_interface_and_tuple() {
    let Some(_one) = as_root_alone() else { return };
    let no_socket = reason_value("NO_SOCKET");
    let other = reason_value("NETFILTER_DROP");
    let pair = VethPair::new();
    let (b_ns, b_if) = (pair.b.inode(), pair.b_ifindex());
    assert_ne!(b_ns, pair.a.inode());
    const NA: usize = 5;
    const N4: usize = 120;
    const N6: usize = 80;
    let port = 33_333u16;
    let a_ns = pair.a.inode();
    let mut by_reason = DropReader::open(&filter("reason", no_socket), &[], Options::default()).unwrap();
    let mut by_other = DropReader::open(&filter("reason", other), &[], Options::default()).unwrap();
    // IPv6 drops of B only (or of no known namespace), with the skb's
    // fields read one by one (the path of a kernel whose fields lie
    // apart).
    super::program::FIELDWISE.store(true, std::sync::atomic::Ordering::Relaxed);
    let v6_only = DropReader::open(&filter("protocol", 0x86dd), &[b_ns], Options::default());
    super::program::FIELDWISE.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut v6_only = v6_only.unwrap();
    assert_eq!(by_reason.applied().to_string(), format!("reason == {no_socket}"));
    let bpf = Bpftrace::count(&in_netns(no_socket, b_ns));
    let (v4_before, v6_before) = (pair.b.nstat("UdpNoPorts"), pair.b.nstat("Udp6NoPorts"));
    // Sent from A: the source ports are the sockets' own.
    let (s4, s6) = pair.a.run(|| {
        let u4 = UdpSocket::bind("10.77.0.1:0").unwrap();
        let u6 = UdpSocket::bind("[fd77::1]:0").unwrap();
        for _ in 0..N4 {
            u4.send_to(b"dropped", ("10.77.0.2", port)).unwrap();
        }
        for _ in 0..N6 {
            u6.send_to(b"dropped", ("fd77::2", port)).unwrap();
        }
        (u4.local_addr().unwrap(), u6.local_addr().unwrap())
    });
    // A near miss in the other direction: drops in A, from B.
    pair.b.run(|| {
        let u6 = UdpSocket::bind("[fd77::2]:0").unwrap();
        for _ in 0..NA {
            u6.send_to(b"dropped", ("fd77::1", port)).unwrap();
        }
    });
    // The kernel's own count of them, in B (and A).
    let deadline = Instant::now() + Duration::from_secs(5);
    let counted = || {
        (pair.b.nstat("UdpNoPorts") - v4_before, pair.b.nstat("Udp6NoPorts") - v6_before, pair.a.nstat("Udp6NoPorts"))
    };
    let want = (N4 as u64, N6 as u64, NA as u64);
    while counted() != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counted(), want);
    let ab = |d: &PacketDrop| d.netns == Some(b_ns) || d.netns == Some(a_ns);
    let mut seen = Vec::new();
    collect_if(&mut by_reason, ab, &mut seen, N4 + N6 + NA);
    // Counted already, so in the rings: one more pass finds any extra.
    collect_if(&mut by_reason, ab, &mut seen, 0);
    let (in_a, seen): (Vec<PacketDrop>, Vec<PacketDrop>) = seen.into_iter().partition(|d| d.netns == Some(a_ns));
    let expect = |d: &PacketDrop| {
        let t = d.tuple.unwrap();
        let (src, dst) = if d.ethertype == 0x0800 {
            (s4, SocketAddr::new("10.77.0.2".parse().unwrap(), port))
        } else {
            (s6, SocketAddr::new("fd77::2".parse().unwrap(), port))
        };
        (SocketAddr::new(t.src, t.ports.unwrap().0), SocketAddr::new(t.dst, t.ports.unwrap().1), t.protocol)
            == (src, dst, 17)
    };
    let v4 = seen.iter().filter(|d| d.ethertype == 0x0800).count();
    assert_eq!((v4, seen.len() - v4), (N4, N6), "{seen:?}");
    for d in &seen {
        assert_eq!(
            (d.reason as i64, d.ifindex, d.netns_of_socket, d.headers),
            (no_socket, Some(b_if), false, Headers::Read)
        );
        assert!(expect(d), "{d:?} not {s4} / {s6} -> :{port}");
        assert!(matches!(d.tuple.unwrap().src, IpAddr::V4(_)) == (d.ethertype == 0x0800));
    }
    assert_eq!((by_reason.lost(), by_reason.malformed()), (0, 0));
    // The near misses: another reason's filter, and the IPv6-only one.
    let mut none = Vec::new();
    collect(&mut by_other, b_ns, &mut none, 0);
    assert!(
        none.iter().all(|d| d.reason as i64 == other && d.tuple.is_none_or(|t| t.ports.is_none_or(|p| p.1 != port))),
        "{none:?}"
    );
    assert!(none.iter().all(|d| !expect(d)));
    let mut v6 = Vec::new();
    collect_if(&mut v6_only, |d| d.reason as i64 == no_socket && d.netns.is_some(), &mut v6, N6);
    collect_if(&mut v6_only, |d| d.reason as i64 == no_socket && d.netns.is_some(), &mut v6, 0);
    assert_eq!(v6.len(), N6, "{v6:?}");
    assert!(v6.iter().all(|d| d.ethertype == 0x86dd && d.netns == Some(b_ns) && expect(d)), "{v6:?}");
    // A's drops came to the reader without a namespace filter.
    assert_eq!(in_a.len(), NA, "{in_a:?}");
    Bpftrace::assert_counted(bpf, (N4 + N6) as u64);
}

/// The space-separated numbers after `tag` on the first line of a child's
/// output that has it.
fn numbers_after<T: std::str::FromStr>(text: &str, tag: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    let rest = text.lines().find_map(|l| l.split_once(tag).map(|(_, r)| r)).unwrap();
    rest.split(' ').map(|v| v.parse().unwrap()).collect()
}

/// Wait (bounded) until the kernel has let go of the program and link.
fn gone(prog: u32, link: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = (super::sys::exists(prog, false).unwrap(), super::sys::exists(link, true).unwrap());
        if alive == (false, false) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// BPF program and link descriptors a process holds.
fn bpf_fds(pid: u32) -> usize {
    fds_linking_to(pid, &["anon_inode:bpf-prog", "anon_inode:bpf_link"])
}

#[test]
fn nothing_remains_after_drop() {
    let Some(_one) = as_root_alone() else { return };
    let me = std::process::id();
    let (before, perf_before) = (bpf_fds(me), perf_fds(me));
    let reader = DropReader::open(&Filter::default(), &[], Options::default()).unwrap();
    let (prog, link) = reader.ids().unwrap();
    assert_eq!(bpf_fds(me), before + 2);
    assert_eq!(perf_fds(me), perf_before + cpus());
    assert!(super::sys::exists(prog, false).unwrap() && super::sys::exists(link, true).unwrap());
    drop(reader);
    assert_eq!((bpf_fds(me), perf_fds(me)), (before, perf_before));
    assert!(gone(prog, link), "program {prog} or link {link} still loaded");
}

/// The child half of `nothing_remains_after_sigkill`.
#[test]
#[ignore]
fn child_holds_drop_reader() {
    if std::env::var_os("SOCKQL_BPF_CHILD").is_none() {
        return;
    }
    let r = DropReader::open(&Filter::default(), &[], Options::default()).unwrap();
    let (prog, link) = r.ids().unwrap();
    say_and_wait_for_kill(&format!("IDS {prog} {link}"));
}

#[test]
fn nothing_remains_after_sigkill() {
    let Some(_one) = as_root_alone() else { return };
    let mut child = test_child("trace::bpf::kernel_tests::child_holds_drop_reader", ("SOCKQL_BPF_CHILD", "1"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = read_to_line(child.stdout.as_mut().unwrap(), "IDS ");
    let ids: Vec<u32> = numbers_after(&text, "IDS ");
    assert_eq!((bpf_fds(child.id()), perf_fds(child.id())), (2, cpus()));
    assert!(super::sys::exists(ids[0], false).unwrap() && super::sys::exists(ids[1], true).unwrap());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(gone(ids[0], ids[1]), "program {} or link {} left after SIGKILL", ids[0], ids[1]);
}

#[test]
fn a_verifier_refusal_is_one_line_with_the_log() {
    if !root() {
        return;
    }
    // Exit without setting r0: the verifier's "R0 !read_ok".
    let mut a = Asm::new();
    a.exit();
    let e = super::reader::load("sockql_bad", &a.finish().unwrap()).err().unwrap();
    let line = e.to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.starts_with("the kernel's verifier refused the drop program"), "{line}");
    assert!(line.ends_with("R0 !read_ok"), "{line}");
    assert!(e.verifier_log().unwrap().contains("processed"), "{:?}", e.verifier_log());
    // A program that does set r0 loads.
    let mut a = Asm::new();
    a.mov_imm(R0, 0).exit();
    super::reader::load("sockql_ok", &a.finish().unwrap()).unwrap();
}

/// A UDP socket in B that never reads, with the smallest receive buffer:
/// what does not fit is dropped with SOCKET_RCVBUFF and rx_sk set, so
/// each drop names the socket's inode (fstat's st_ino, as
/// /proc/PID/fd's socket:[N]); counted against B's UdpRcvbufErrors.
/// Closing it frees what was queued, after UDP reused skb->dev for its
/// own scratch: those come with their tuple but no device or namespace.
#[test]
fn a_full_socket_names_its_inode() {
    let Some(_one) = as_root_alone() else { return };
    let rcvbuff = reason_value("SOCKET_RCVBUFF");
    let pair = VethPair::new();
    let (b_ns, b_if) = (pair.b.inode(), pair.b_ifindex());
    let socket = pair.b.run(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.bind(&"10.77.0.2:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        s
    });
    let to = socket.local_addr().unwrap().as_socket().unwrap();
    use std::os::fd::AsFd;
    let inode = nix::sys::stat::fstat(socket.as_fd()).unwrap().st_ino;
    let mut all = DropReader::open(&Filter::default(), &[], Options::default()).unwrap();
    let before = pair.b.nstat("UdpRcvbufErrors");
    const M: usize = 200;
    let from = pair.a.run(|| {
        let u = UdpSocket::bind("10.77.0.1:0").unwrap();
        for _ in 0..M {
            u.send_to(&[7u8; 1000], to).unwrap();
        }
        u.local_addr().unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut full = 0;
    while Instant::now() < deadline {
        full = pair.b.nstat("UdpRcvbufErrors") - before;
        let queued = pair.b.run(|| {
            let mut n: libc::c_int = 0;
            let _ = nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::RcvBuf);
            // SAFETY: FIONREAD's int out-parameter.
            unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&socket), libc::FIONREAD, &mut n) };
            n
        });
        if full > 0 && queued > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seen = Vec::new();
    collect(&mut all, b_ns, &mut seen, M);
    let ours = |d: &&PacketDrop| {
        d.tuple.is_some_and(|t| {
            t.ports.is_some_and(|p| SocketAddr::new(t.src, p.0) == from && SocketAddr::new(t.dst, p.1) == to)
        })
    };
    let rcv: Vec<_> = seen.iter().filter(|d| d.reason as i64 == rcvbuff).collect();
    assert!(full > 0 && full < M as u64, "{full}");
    assert_eq!(rcv.len() as u64, full, "{seen:?}");
    for d in &rcv {
        assert!(ours(d), "{d:?}");
        assert_eq!((d.netns, d.ifindex, d.inode, d.netns_of_socket), (Some(b_ns), Some(b_if), Some(inode), false));
    }
    drop(socket);
    let queued = M - full as usize;
    // Purged when the socket is destroyed (after an RCU grace period).
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while after.iter().filter(ours).count() < queued && Instant::now() < deadline {
        collect_if(&mut all, |d| ours(&d), &mut after, 0);
        all.wait(50).unwrap();
    }
    let closed: Vec<_> = after.iter().filter(ours).collect();
    assert_eq!(closed.len(), queued, "{after:?}");
    let not_specified = reason_value("NOT_SPECIFIED");
    for d in &closed {
        // UDP frees what it had queued with plain kfree_skb (no rx_sk)
        // after reusing skb->dev for its scratch: the program does not
        // follow that as a device pointer, so no interface and no
        // namespace rather than garbage; the headers are still read.
        assert_eq!((d.reason as i64, d.netns, d.ifindex, d.inode), (not_specified, None, None, None), "{d:?}");
    }
    assert_eq!((all.lost(), all.malformed()), (0, 0));
}

/// The flood half of `flood_cpu`: N datagrams from namespace A to a
/// closed port of B, then this process's CPU (µs) on stdout.
#[test]
#[ignore]
fn flood_child() {
    let Some(spec) = std::env::var_os("SOCKQL_BPF_FLOOD") else { return };
    let spec = spec.to_string_lossy().to_string();
    let (ns, n) = spec.split_once(' ').unwrap();
    let n: u64 = n.parse().unwrap();
    run_in(ns, || {
        let u = UdpSocket::bind("10.77.0.1:0").unwrap();
        let to: SocketAddr = "10.77.0.2:33333".parse().unwrap();
        for _ in 0..n {
            let _ = u.send_to(b"x", to);
        }
    });
    let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    println!("RUSAGE {} {}", us(r.user_time()), us(r.system_time()));
}

/// CPU of a reader against a UDP flood's drops (not a pass/fail test):
/// SOCKQL_BPF_BENCH=bpf|perf|bpftrace|none, SOCKQL_BPF_BENCH_N drops.
/// Prints the reading process's user+sys CPU while the flood ran, the
/// flood's own user and sys CPU (where the traced kernel path's cost
/// lands), and what each side counted.
#[test]
#[ignore]
fn flood_cpu() {
    let Some(mode) = std::env::var_os("SOCKQL_BPF_BENCH") else { return };
    let mode = mode.to_string_lossy().to_string();
    let n: u64 = std::env::var("SOCKQL_BPF_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let no_socket = reason_value("NO_SOCKET");
    let pair = VethPair::new();
    let b_ns = pair.b.inode();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::sync::atomic::AtomicU64::new(0);
    let lost = std::sync::atomic::AtomicU64::new(0);
    let before = pair.b.nstat("UdpNoPorts");
    let usage = || {
        let r = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
        let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
        us(r.user_time()) + us(r.system_time())
    };
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) * 10_000
        // USER_HZ 100 -> µs
    };
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // bpftrace-printf: bpftrace sending each drop to user space, as a
        // stream table must (its lines counted by a thread here).
        let mut bpftrace = match mode.as_str() {
            "bpftrace" => Bpftrace::count(&in_netns(no_socket, b_ns)),
            "bpftrace-printf" => Bpftrace::start(
                &in_netns(no_socket, b_ns),
                "printf(\"D %d %d\\n\", args->reason, ((struct sk_buff *)args->skbaddr)->dev->ifindex);",
            ),
            _ => None,
        };
        let printed = bpftrace.as_mut().filter(|_| mode == "bpftrace-printf").map(|b| {
            let out = b.0.stdout.take().unwrap();
            std::thread::spawn(move || {
                use std::io::BufRead;
                std::io::BufReader::new(out).lines().map_while(Result::ok).filter(|l| l.starts_with("D ")).count()
                    as u64
            })
        });
        let (mode, stop, seen, lost) = (&mode, &stop, &seen, &lost);
        let reader = s.spawn(move || match mode.as_str() {
            "bpf" => {
                let f = filter("reason", no_socket);
                let mut r = DropReader::open(&f, &[], Options::default()).unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    r.read_waiting(|d| {
                        if d.netns == Some(b_ns) {
                            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                    r.wait(100).unwrap();
                }
                lost.store(r.lost(), std::sync::atomic::Ordering::Relaxed);
            }
            "perf" => {
                let t = Tracefs::open().unwrap();
                let format = t.format("skb", "kfree_skb").unwrap();
                let f = format!("reason == {no_socket}");
                let mut r = crate::trace::TraceReader::open(
                    &[crate::trace::Request { group: "skb", format: &format, filter: Some(&f) }],
                    Options::default(),
                )
                .unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    r.read_waiting(|_| {
                        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                    r.wait(100).unwrap();
                }
                lost.store(r.lost(), std::sync::atomic::Ordering::Relaxed);
            }
            _ => ready_tx.send(()).unwrap(),
        });
        ready_rx.recv().unwrap();
        let (cpu0, bt0) = (usage(), bpftrace.as_ref().map(|b| ticks(b.0.id())));
        let t0 = Instant::now();
        let out =
            test_child("trace::bpf::kernel_tests::flood_child", ("SOCKQL_BPF_FLOOD", &format!("{} {n}", pair.a.0)))
                .output()
                .unwrap();
        let wall = t0.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let r: Vec<u64> = numbers_after(&text, "RUSAGE ");
        let dropped = pair.b.nstat("UdpNoPorts") - before;
        let deadline = Instant::now() + Duration::from_secs(5);
        while (mode == "bpf" || mode == "perf")
            && seen.load(std::sync::atomic::Ordering::Relaxed) < dropped
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let reader_cpu = match &bpftrace {
            Some(b) => ticks(b.0.id()) - bt0.unwrap(),
            None => usage() - cpu0,
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        let counted = match (bpftrace, printed) {
            (Some(mut b), Some(lines)) => {
                // SAFETY: a signal to the test's own child.
                unsafe { libc::kill(b.0.id() as i32, libc::SIGINT) };
                b.0.wait().unwrap();
                lines.join().unwrap()
            }
            (Some(b), None) => b.stop(),
            _ => seen.load(std::sync::atomic::Ordering::Relaxed),
        };
        eprintln!(
            "BENCH mode={mode} sent={n} UdpNoPorts={dropped} counted={counted} lost={} reader_cpu_ms={} flood_user_ms={} flood_sys_ms={} wall_ms={}",
            lost.load(std::sync::atomic::Ordering::Relaxed),
            reader_cpu / 1000,
            r[0] / 1000,
            r[1] / 1000,
            wall.as_millis()
        );
    });
}

/// A ring too small for a burst: what bpf_perf_event_output had no room
/// for comes back as PERF_RECORD_LOST and is counted, so drops read plus
/// drops lost is every drop sent (the program keeps only B's NO_SOCKET
/// drops, so the host's other drops do not count).
#[test]
fn a_full_ring_counts_what_it_lost() {
    let Some(_one) = as_root_alone() else { return };
    let no_socket = reason_value("NO_SOCKET");
    let pair = VethPair::new();
    let b_ns = pair.b.inode();
    // One data page: about forty records.
    let mut r = DropReader::open(&filter("reason", no_socket), &[b_ns], Options { pages: 1, wakeup_bytes: 0 }).unwrap();
    let before = pair.b.nstat("UdpNoPorts");
    // Every drop must land in one CPU's ring: the kernel writes a ring's
    // LOST record only when a later sample comes to that same ring, and a
    // veth packet is dropped in the softirq of the CPU that sent it. So the
    // sender is pinned to one CPU the test may run on.
    let cpu = first_allowed_cpu();
    // Send n, then wait until B has counted `total` since the start.
    let send = |n: u64, total: u64| {
        pair.a.run(|| {
            pin_this_thread(cpu);
            let u = UdpSocket::bind("10.77.0.1:0").unwrap();
            for _ in 0..n {
                u.send_to(b"x", ("10.77.0.2", 33_333)).unwrap();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while pair.b.nstat("UdpNoPorts") - before < total && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut read = 0u64;
    send(500, 500);
    r.read_waiting(|_| {
        read += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    // The kernel writes its LOST record once there is room again,
    // before the next sample.
    send(1, 501);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        r.read_waiting(|_| {
            read += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        if read + r.lost() >= 501 || Instant::now() > deadline {
            break;
        }
        r.wait(50).unwrap();
    }
    assert_eq!(pair.b.nstat("UdpNoPorts") - before, 501);
    let lost = r.lost();
    assert!(lost > 0 && read < 200, "read {read}, lost {lost}");
    assert_eq!(read + lost, 501, "read {read}, lost {lost}");
}
