//! The packet reports on traffic made to trigger each, beside near misses
//! that must not, in two namespaces with different amounts of it.
//!
//! A live report cannot be run twice on the same packets, so each round
//! runs one report three times at once: inside each namespace alone, and
//! once with --all-netns from the host. All three capture before the
//! traffic starts and until after it ends, so they see the same packets,
//! and each namespace's rows of the --all-netns run must equal the run
//! inside it. tcpdump captures the same traffic in each namespace; tshark's
//! reading of that file is the reference for the counts.

use std::any::Any;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::conntrack::NftExt;
use crate::netns::Netns;
use crate::pcap::{drain, spawn_until, Capture};

/// Reports that read the live `packets` table: checked here, not by the
/// snapshot harness in reports.rs.
pub const PACKET_REPORTS: &[&str] =
    &["handshake_failures", "retransmission_rate", "rst_by_process", "top_talkers", "zero_window"];

/// How long each of a round's captures runs: the traffic (about a second)
/// must fit inside all three.
const CAPTURE_FOR: &str = "6s";

/// The sockets a namespace keeps across rounds.
struct Listeners {
    /// Takes handshakes, aborts some (RST), closes one (FIN).
    web: TcpListener,
    /// Answers each 1000-byte request with one byte; nftables drops every
    /// fifth request on arrival (retransmissions).
    lossy: TcpListener,
    /// The same, over a clean path: the near miss.
    clean: TcpListener,
    /// Accepts and never reads, with a 4 KB receive buffer (zero window).
    stalled: TcpListener,
    /// Receives datagrams (top talkers).
    udp: UdpSocket,
}

const WEB: u16 = 8443;
const LOSSY: u16 = 8444;
const CLEAN: u16 = 8445;
const STALLED: u16 = 8446;
const UDP: u16 = 5353;
/// Nothing listens: SYNs are refused with RST.
const CLOSED: u16 = 9;
/// nftables drops SYNs to it: nothing answers.
const BLACKHOLE: u16 = 7;
/// The source of SYNs sent by hand, whose SYN/ACKs this host resets.
const SPOOFED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
/// The source of the datagrams.
const TALKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn setup(ns: &Netns) -> Arc<Listeners> {
    ns.nft(&format!(
        "table inet packet_reports {{
            chain in {{
                type filter hook input priority 0;
                tcp dport {BLACKHOLE} drop
                tcp dport {LOSSY} ip length > 500 numgen inc mod 5 == 2 drop
            }}
        }}"
    ));
    ns.enter(|| {
        let stalled = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        stalled.set_recv_buffer_size(4096).unwrap();
        stalled.bind(&lo(STALLED).into()).unwrap();
        stalled.listen(8).unwrap();
        Arc::new(Listeners {
            web: TcpListener::bind(lo(WEB)).unwrap(),
            lossy: TcpListener::bind(lo(LOSSY)).unwrap(),
            clean: TcpListener::bind(lo(CLEAN)).unwrap(),
            stalled: stalled.into(),
            udp: UdpSocket::bind(lo(UDP)).unwrap(),
        })
    })
}

/// A bare SYN from `src`:`sport` to 127.0.0.1:`dport`, IP header and all,
/// so its SYN/ACK goes to an address with no socket behind it.
fn raw_syn(src: Ipv4Addr, sport: u16, dport: u16) {
    let dst = Ipv4Addr::LOCALHOST;
    let mut p = [0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let t = 20;
    p[t..t + 2].copy_from_slice(&sport.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&dport.to_be_bytes());
    p[t + 4..t + 8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p[t + 12] = 5 << 4;
    p[t + 13] = 0x02;
    p[t + 14..t + 16].copy_from_slice(&64240u16.to_be_bytes());
    // The TCP checksum over the pseudo-header and the header.
    let mut sum: u32 = 0;
    let mut add =
        |b: &[u8]| b.chunks(2).for_each(|c| sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32);
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 6, 0, 20]);
    add(&p[t..t + 20]);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[t + 16..t + 18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    // IPPROTO_RAW: the header above is sent as written.
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
    )
    .unwrap();
    s.send_to(&p, &SocketAddr::from((dst, 0)).into()).unwrap();
}

/// One request-and-answer exchange of 20 requests to `port`: the client
/// and the server's socket, held.
fn exchange(l: &TcpListener, port: u16) -> (TcpStream, TcpStream) {
    let mut c = TcpStream::connect(lo(port)).unwrap();
    c.set_nodelay(true).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 1000];
        for _ in 0..20 {
            s.read_exact(&mut buf).unwrap();
            s.write_all(b"k").unwrap();
        }
        s
    });
    for _ in 0..20 {
        c.write_all(&[5u8; 1000]).unwrap();
        c.read_exact(&mut [0u8; 1]).unwrap();
    }
    (c, server.join().unwrap())
}

/// The traffic of one round, `k` of each failure, inside the namespace.
/// Returns what must stay open until every capture has ended.
fn traffic(k: usize, l: Arc<Listeners>, pcap: PathBuf) -> Vec<Box<dyn Any + Send>> {
    let mut held: Vec<Box<dyn Any + Send>> = Vec::new();
    // handshake_failures: refused, unanswered (the socket is closed before
    // it would send the SYN again), and SYN/ACKs nobody acknowledges.
    for _ in 0..k {
        assert_eq!(TcpStream::connect(lo(CLOSED)).unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    }
    for _ in 0..k {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        // EINPROGRESS: the SYN is on its way.
        assert!(s.connect(&lo(BLACKHOLE).into()).is_err());
    }
    for i in 0..k {
        raw_syn(SPOOFED, 40000 + i as u16, WEB);
    }
    // rst_by_process: the server aborts k connections (SO_LINGER 0); one
    // more it closes with FIN (the near miss), after handshakes that
    // complete (handshake_failures' near miss).
    for _ in 0..k {
        let mut c = TcpStream::connect(lo(WEB)).unwrap();
        let (s, _) = l.web.accept().unwrap();
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
        assert_eq!(c.read(&mut [0u8; 1]).unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    }
    let mut c = TcpStream::connect(lo(WEB)).unwrap();
    let (s, _) = l.web.accept().unwrap();
    drop(s);
    assert_eq!(c.read(&mut [0u8; 1]).unwrap(), 0);
    held.push(Box::new(c));
    // retransmission_rate: a lossy exchange and a clean one.
    held.push(Box::new(exchange(&l.lossy, LOSSY)));
    held.push(Box::new(exchange(&l.clean, CLEAN)));
    // zero_window: a connection that sends less than the reader's buffer
    // (the near miss), then one that fills it; once tcpdump has seen the
    // zero window, the reader takes everything and the window opens.
    let mut near = TcpStream::connect(lo(STALLED)).unwrap();
    let (near_s, _) = l.stalled.accept().unwrap();
    near.write_all(&[3u8; 1000]).unwrap();
    held.push(Box::new((near, near_s)));
    let mut c = TcpStream::connect(lo(STALLED)).unwrap();
    let (mut s, _) = l.stalled.accept().unwrap();
    c.set_nonblocking(true).unwrap();
    let (mut written, mut stuck) = (0, 0);
    while stuck < 3 {
        match c.write(&[7u8; 4096]) {
            Ok(n) => {
                written += n;
                stuck = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stuck += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    }
    eventually(WAIT, || {
        let o = Command::new("tcpdump")
            .args(["-nn", "-r", pcap.to_str().unwrap(), "src", "port", &STALLED.to_string()])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).contains(", win 0,").then_some(())
    });
    let mut got = vec![0u8; written];
    s.read_exact(&mut got).unwrap();
    held.push(Box::new((c, s)));
    // top_talkers: 10k datagrams of 100 bytes from another address.
    let u = UdpSocket::bind(SocketAddr::from((TALKER, 0))).unwrap();
    for _ in 0..10 * k {
        u.send_to(&[1u8; 100], lo(UDP)).unwrap();
        l.udp.recv(&mut [0u8; 200]).unwrap();
    }
    held
}

/// A report started inside `ns` (or across every namespace): returns once
/// its capture runs.
fn start_report(netns: Option<&Netns>, report: &str) -> Child {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, bin()]);
            c
        }
        None => {
            let mut c = Command::new(bin());
            c.arg("--all-netns");
            c
        }
    };
    cmd.args(["--capture-for", CAPTURE_FOR, "--format", "ndjson", "run", report]).stdout(Stdio::piped());
    let (child, err) = spawn_until(&mut cmd, "capturing on");
    drain(err);
    child
}

fn rows_of(child: Child) -> Vec<Value> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    parse_ndjson(&String::from_utf8_lossy(&out.stdout))
}

struct Side {
    ns: Netns,
    k: usize,
    listeners: Arc<Listeners>,
}

/// One report's round: its rows inside each side, the file tcpdump wrote
/// in each, and `ss -tin` there once the captures ended (before the
/// round's connections close).
fn round(report: &str, sides: &[Side], dir: &Path) -> Vec<(Vec<Value>, PathBuf, String)> {
    let pcaps: Vec<PathBuf> = sides.iter().map(|s| dir.join(format!("{report}-{}.pcap", s.ns.name))).collect();
    let dumps: Vec<Capture> = sides.iter().zip(&pcaps).map(|(s, p)| Capture::start(&s.ns, p)).collect();
    let inside: Vec<Child> = sides.iter().map(|s| start_report(Some(&s.ns), report)).collect();
    let across = start_report(None, report);
    let mut held = Vec::new();
    for (s, p) in sides.iter().zip(&pcaps) {
        let (k, l, p) = (s.k, s.listeners.clone(), p.clone());
        held.push(s.ns.enter(move || traffic(k, l, p)));
    }
    let inside: Vec<Vec<Value>> = inside.into_iter().map(rows_of).collect();
    let across = rows_of(across);
    dumps.into_iter().for_each(Capture::stop);
    let ss: Vec<String> = sides.iter().map(|s| s.ns.exec_ok("ss", &["-Htin"])).collect();
    drop(held);
    for (s, rows) in sides.iter().zip(&inside) {
        assert!(
            rows.iter().all(|r| r["netns_name"] == json!(s.ns.name)),
            "{report}: every row carries its namespace: {rows:?}"
        );
        // `owner` says how a row's pid became known (the capture saw the
        // holder, or it was guessed from a listener after the connection
        // was gone): each of the two concurrent runs learns holders on its
        // own schedule, so that label may differ while pid and process
        // agree. Everything else must be equal.
        let unlabelled = |r: &Value| {
            let mut r = r.clone();
            if let Some(o) = r.as_object_mut() {
                o.remove("owner");
            }
            r
        };
        let theirs: Vec<Value> =
            across.iter().filter(|r| r["netns_name"] == json!(s.ns.name)).map(unlabelled).collect();
        let ours: Vec<Value> = rows.iter().map(unlabelled).collect();
        assert_eq!(theirs, ours, "{report}: {} with --all-netns vs inside it", s.ns.name);
        // The connections this round closed have finished closing before
        // the next round's captures start.
        eventually(WAIT, || {
            let out = s.ns.exec_ok(
                "ss",
                &["-Htan", "state", "fin-wait-1", "state", "last-ack", "state", "closing", "state", "close-wait"],
            );
            out.trim().is_empty().then_some(())
        });
    }
    inside.into_iter().zip(pcaps).zip(ss).map(|((rows, pcap), ss)| (rows, pcap, ss)).collect()
}

/// How many packets of `file` tshark's display filter `filter` keeps.
fn tshark_count(file: &Path, filter: &str) -> i64 {
    let o = Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().count() as i64
}

/// The one row whose `key` columns hold `values`.
fn row<'a>(rows: &'a [Value], key: &[(&str, Value)]) -> &'a Value {
    let found: Vec<&Value> = rows.iter().filter(|r| key.iter().all(|(c, v)| &r[*c] == v)).collect();
    assert_eq!(found.len(), 1, "one row with {key:?} in {rows:?}");
    found[0]
}

#[test]
fn packet_reports_match_their_traffic_in_every_namespace() {
    assert!(have("tcpdump") && have("tshark"), "tcpdump and tshark are needed for this test");
    let dir = std::env::temp_dir().join(format!("sockql-packet-reports-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sides: Vec<Side> = [("pktA", 1), ("pktB", 2)]
        .into_iter()
        .map(|(tag, k)| {
            let ns = Netns::new(tag);
            let listeners = setup(&ns);
            Side { ns, k, listeners }
        })
        .collect();
    let me = json!(my_pid());
    // The list run --list gives is the list checked here.
    let (out, err, ok) = run(&["run", "--list", "--format", "ndjson"]);
    assert!(ok, "{err}");
    let listed: Vec<String> = parse_ndjson(&out).iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    for name in PACKET_REPORTS {
        assert!(listed.iter().any(|l| l == name), "{name} is a saved report");
    }

    for (side, (rows, pcap, _)) in sides.iter().zip(round("handshake_failures", &sides, &dir)) {
        let k = json!(side.k);
        let key = |port: u16, remote: &str| [("listener_port", json!(port)), ("remote_addr", json!(remote))];
        let refused = row(&rows, &key(CLOSED, "127.0.0.1"));
        assert_eq!(
            (&refused["attempts"], &refused["refused"], &refused["no_synack"], &refused["no_final_ack"]),
            (&k, &k, &json!(0), &json!(0))
        );
        assert!(refused["pid"].is_null(), "nothing listens on {CLOSED}");
        let dropped = row(&rows, &key(BLACKHOLE, "127.0.0.1"));
        assert_eq!((&dropped["attempts"], &dropped["no_synack"], &dropped["refused"]), (&k, &k, &json!(0)));
        let spoofed = row(&rows, &key(WEB, &SPOOFED.to_string()));
        assert_eq!((&spoofed["attempts"], &spoofed["no_final_ack"], &spoofed["pid"]), (&k, &k, &me));
        // The near miss: handshakes to the same listener that completed.
        assert_eq!(rows.len(), 3, "only the failures: {rows:?}");
        let syn_acks_to_spoofed =
            tshark_count(&pcap, &format!("tcp.flags.syn == 1 && tcp.flags.ack == 1 && ip.dst == {SPOOFED}"));
        let acks_from_spoofed = tshark_count(
            &pcap,
            &format!("tcp.flags.ack == 1 && tcp.flags.syn == 0 && tcp.flags.reset == 0 && ip.src == {SPOOFED}"),
        );
        assert_eq!((syn_acks_to_spoofed, acks_from_spoofed), (side.k as i64, 0));
        assert_eq!(tshark_count(&pcap, &format!("tcp.flags.reset == 1 && tcp.srcport == {CLOSED}")), side.k as i64);
        assert_eq!(tshark_count(&pcap, &format!("tcp.flags.syn == 1 && tcp.dstport == {BLACKHOLE}")), side.k as i64);
    }

    for (side, (rows, pcap, _)) in sides.iter().zip(round("rst_by_process", &sides, &dir)) {
        let k = json!(side.k);
        // Refused, aborted, spoofed: k resets each, each seen by both ends
        // over loopback; a FIN close is not one.
        let resets = tshark_count(&pcap, "tcp.flags.reset == 1");
        assert_eq!(resets, 3 * side.k as i64);
        for role in ["sent", "received"] {
            let n: i64 = rows.iter().filter(|r| r["role"] == json!(role)).map(|r| r["resets"].as_i64().unwrap()).sum();
            assert_eq!(n, resets, "{role}: {rows:?}");
        }
        let aborted =
            row(&rows, &[("role", json!("sent")), ("local_port", json!(WEB)), ("remote_addr", json!("127.0.0.1"))]);
        assert_eq!((&aborted["pid"], &aborted["resets"]), (&me, &k));
        let reset = row(
            &rows,
            &[("role", json!("received")), ("local_port", json!(WEB)), ("remote_addr", json!(SPOOFED.to_string()))],
        );
        assert_eq!((&reset["pid"], &reset["resets"]), (&me, &k));
        let kernel = row(&rows, &[("role", json!("sent")), ("local_port", json!(CLOSED))]);
        assert_eq!((&kernel["pid"], &kernel["resets"]), (&Value::Null, &k));
    }

    for (_, (rows, pcap, ss)) in sides.iter().zip(round("retransmission_rate", &sides, &dir)) {
        // The lossy flow, and its process's total. Another flow appears
        // only if the capture shows it retransmitting too (a starved
        // machine can time out the clean exchange): each flow's count is
        // tshark's.
        let flows: Vec<&Value> = rows.iter().filter(|r| r["scope"] == json!("flow")).collect();
        for f in &flows {
            let seen = tshark_count(
                &pcap,
                &format!(
                    "tcp.analysis.retransmission && tcp.srcport == {} && tcp.dstport == {}",
                    f["src_port"], f["dst_port"]
                ),
            );
            assert_eq!(f["retransmissions"].as_i64(), Some(seen), "{f}");
        }
        let lossy: Vec<&Value> = flows.iter().copied().filter(|r| r["dst_port"] == json!(LOSSY)).collect();
        assert_eq!(lossy.len(), 1, "{rows:?}");
        let flow = lossy[0];
        assert_eq!(&flow["pid"], &me);
        let resent = tshark_count(&pcap, &format!("tcp.analysis.retransmission && tcp.dstport == {LOSSY}"));
        let sent = tshark_count(
            &pcap,
            &format!("tcp.dstport == {LOSSY} && (tcp.len > 0 || tcp.flags.syn == 1 || tcp.flags.fin == 1)"),
        );
        assert_eq!((flow["retransmissions"].as_i64().unwrap(), flow["segments"].as_i64().unwrap()), (resent, sent));
        assert!(resent >= 4, "every fifth of 20 requests was dropped: {resent}");
        let pct = (100.0 * resent as f64 / sent as f64 * 100.0).round() / 100.0;
        assert_eq!(flow["retrans_pct"].as_f64().unwrap(), pct);
        // The sender's own count (ss retrans:N/TOTAL) agrees. Its line is
        // the one with both ends: Linux may give a connect()ed socket to
        // another destination the same ephemeral port (the 4-tuple differs),
        // and the last line with the client's address alone could then be
        // the clean or the stalled client's, which retransmitted nothing.
        let client = format!("127.0.0.1:{}", flow["src_port"]);
        let server = format!("127.0.0.1:{LOSSY}");
        let mut lines = ss.lines();
        let mut info = None;
        while let Some(l) = lines.next() {
            let ends: Vec<&str> = l.split_whitespace().skip(3).take(2).collect();
            if ends == [client.as_str(), server.as_str()] {
                assert!(info.is_none(), "one socket from {client} to {server} in {ss}");
                info = lines.next();
            }
        }
        let info = info.unwrap_or_else(|| panic!("{client} in {ss}"));
        let total: i64 = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("retrans:"))
            .and_then(|r| r.split('/').nth(1))
            .unwrap_or_else(|| panic!("no retrans:N/TOTAL in ss's line for {client}: {info}\nall of ss -tin:\n{ss}"))
            .parse()
            .unwrap();
        assert_eq!(total, resent, "{info}");
        let process = row(&rows, &[("scope", json!("process")), ("pid", me.clone())]);
        let all: i64 = flows.iter().filter(|f| f["pid"] == me).map(|f| f["retransmissions"].as_i64().unwrap()).sum();
        assert_eq!(process["retransmissions"].as_i64(), Some(all), "{rows:?}");
        assert!(
            process["segments"].as_i64() > flow["segments"].as_i64(),
            "the clean exchange counts for its process: {process}"
        );
    }

    for (_, (rows, pcap, _)) in sides.iter().zip(round("zero_window", &sides, &dir)) {
        // One reader stalled: the near miss, which sent less than its
        // buffer, is not one.
        assert_eq!(rows.len(), 1, "{rows:?}");
        let stalled = &rows[0];
        assert_eq!(
            (&stalled["pid"], &stalled["local_port"], &stalled["remote_addr"], &stalled["connections"]),
            (&me, &json!(STALLED), &json!("127.0.0.1"), &json!(1))
        );
        let zero = tshark_count(&pcap, &format!("tcp.analysis.zero_window && tcp.srcport == {STALLED}"));
        assert!(zero >= 1);
        assert_eq!(stalled["zero_windows"], json!(zero));
    }

    for (side, (rows, pcap, _)) in sides.iter().zip(round("top_talkers", &sides, &dir)) {
        let talker = row(&rows, &[("remote_addr", json!(TALKER.to_string()))]);
        let o = Command::new("tshark")
            .args(["-r", pcap.to_str().unwrap(), "-Y", &format!("ip.src == {TALKER}"), "-T", "fields", "-e", "ip.len"])
            .output()
            .unwrap();
        let lens: Vec<i64> = String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(lens.len(), 10 * side.k);
        let bytes: i64 = lens.iter().sum();
        assert_eq!(
            (&talker["pid"], &talker["packets_in"], &talker["bytes_in"], &talker["packets_out"]),
            (&me, &json!(10 * side.k), &json!(bytes), &json!(0))
        );
        assert_eq!(talker["bytes_per_sec"].as_f64().unwrap(), (bytes as f64 / 6.0 * 10.0).round() / 10.0);
        // Biggest first.
        let order: Vec<i64> =
            rows.iter().map(|r| r["bytes_in"].as_i64().unwrap() + r["bytes_out"].as_i64().unwrap()).collect();
        assert!(order.windows(2).all(|w| w[0] >= w[1]), "{order:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
