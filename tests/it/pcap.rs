//! `read_pcap('FILE')` against the reference tools: traffic this test makes
//! in a namespace of its own (TCP over IPv4 and IPv6 with data both ways,
//! UDP, ICMP echo), captured by tcpdump, then read by sockql and by tshark
//! and tcpdump, packet by packet. The same packets as pcapng (editcap) and
//! gzipped read the same.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use crate::netns::Netns;

/// tcpdump writing every packet of `ns`'s loopback to `file` until dropped.
struct Capture {
    child: std::process::Child,
}

impl Capture {
    fn start(ns: &Netns, file: &std::path::Path) -> Capture {
        assert!(have("tcpdump"), "tcpdump is needed for this test");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "tcpdump", "-i", "lo", "-U", "-w", file.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // tcpdump says "listening on lo" once the capture runs.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "tcpdump ended before listening");
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Capture { child }
    }

    /// Stop once `file` holds `n` packets (as tcpdump -r counts them).
    fn stop_at(mut self, file: &std::path::Path, n: usize) {
        eventually(WAIT, || {
            let o = Command::new("tcpdump").args(["-nn", "-r", file.to_str().unwrap()]).stderr(Stdio::null()).output().unwrap();
            (String::from_utf8_lossy(&o.stdout).lines().count() >= n).then_some(())
        });
        // SIGINT: tcpdump flushes and closes the file.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap();
    }
}

/// The fields tshark reads, in sockql's column names.
fn tshark_rows(file: &str) -> Vec<Value> {
    assert!(have("tshark"), "tshark is needed for this test");
    let fields = [
        "frame.number", "frame.len", "frame.cap_len", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "ip.ttl", "ipv6.hlim",
        "tcp.srcport", "udp.srcport", "tcp.dstport", "udp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw",
        "tcp.window_size_value", "tcp.len", "udp.length", "tcp.options.mss_val", "tcp.options.wscale.shift",
        "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "icmp.type", "icmpv6.type", "frame.time_epoch",
    ];
    let mut args = vec!["-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"];
    for f in &fields {
        args.extend(["-e", f]);
    }
    let o = Command::new("tshark").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let num = |s: &str| if s.is_empty() { Value::Null } else { json!(s.parse::<u64>().unwrap_or_else(|_| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap())) };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let or = |a: &str, b: &str| if a.is_empty() { b.to_string() } else { a.to_string() };
            let text = |s: String| if s.is_empty() { Value::Null } else { json!(s) };
            let flags = num(f[13]);
            let udp_len = num(f[18]);
            json!({
                "frame": num(f[0]), "length": num(f[1]), "captured_length": num(f[2]),
                "src_addr": text(or(f[3], f[4])), "dst_addr": text(or(f[5], f[6])), "ttl": num(&or(f[7], f[8])),
                "src_port": num(&or(f[9], f[10])), "dst_port": num(&or(f[11], f[12])),
                "tcp_flags": flags, "seq": num(f[14]), "ack_seq": if flags.as_u64().is_some_and(|x| x & 0x10 != 0) { num(f[15]) } else { Value::Null },
                "window": num(f[16]),
                "payload_length": if f[17].is_empty() { udp_len.as_u64().map_or(Value::Null, |l| json!(l - 8)) } else { num(f[17]) },
                "mss": num(f[19]), "wscale": num(f[20]), "ts_val": num(f[21]), "ts_ecr": num(f[22]),
                "icmp_type": num(&or(f[23], f[24])),
                "time_epoch": json!(f[25]),
            })
        })
        .collect()
}

const COLUMNS: &str = "frame, length, captured_length, src_addr, dst_addr, ttl, src_port, dst_port, \
    syn, ack, fin, rst, psh, urg, ece, cwr, flags, seq, ack_seq, window, payload_length, mss, wscale, ts_val, ts_ecr, icmp_type, \
    CAST(ts AS BIGINT) AS ts_ns";

fn ours(file: &str) -> Vec<Value> {
    let (out, err, ok) = run(&["--format", "ndjson", &format!("SELECT {COLUMNS} FROM read_pcap('{file}') ORDER BY frame")]);
    assert!(ok, "{err}");
    parse_ndjson(&out)
}

/// Make the traffic: a TCP exchange over IPv4 and one over IPv6 (handshake,
/// data both ways, FIN), a UDP datagram, and one ping.
fn traffic(ns: &Netns) {
    ns.enter(|| {
        for addr in ["127.0.0.1:8080", "[::1]:8081"] {
            let l = std::net::TcpListener::bind(addr).unwrap();
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let (mut s, _) = l.accept().unwrap();
            c.write_all(&[1u8; 1000]).unwrap();
            let mut buf = [0u8; 1000];
            s.read_exact(&mut buf).unwrap();
            s.write_all(b"ok").unwrap();
            c.read_exact(&mut buf[..2]).unwrap();
            drop(c);
            assert_eq!(s.read(&mut buf).unwrap(), 0);
        }
        // A receiver, so no ICMP port-unreachable quotes the datagram back.
        let r = std::net::UdpSocket::bind("127.0.0.1:5353").unwrap();
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(b"datagram", "127.0.0.1:5353").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(r.recv(&mut buf).unwrap(), 8);
    });
    ns.exec_ok("ping", &["-c", "1", "-W", "2", "127.0.0.1"]);
}

#[test]
fn read_pcap_equals_tshark_and_tcpdump_packet_by_packet() {
    let ns = Netns::new("pcapR");
    let dir = std::env::temp_dir().join(format!("sockql-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("lo.pcap");
    let cap = Capture::start(&ns, &pcap);
    traffic(&ns);
    // Two TCP exchanges of at least 8 segments, a datagram, an echo and
    // its reply.
    cap.stop_at(&pcap, 2 * 8 + 1 + 2);
    let file = pcap.to_str().unwrap();
    let rows = ours(file);
    let tshark = tshark_rows(file);
    assert_eq!(rows.len(), tshark.len());
    assert!(rows.len() >= 20, "{rows:?}");
    for (o, t) in rows.iter().zip(&tshark) {
        for c in ["frame", "length", "captured_length", "src_addr", "dst_addr", "ttl", "src_port", "dst_port", "seq", "ack_seq", "window", "payload_length", "mss", "wscale", "ts_val", "ts_ecr", "icmp_type"] {
            assert_eq!(o[c], t[c], "frame {} column {c}: ours {o}\ntshark {t}", o["frame"]);
        }
        // The flag booleans are the bits tshark shows.
        if let Some(bits) = t["tcp_flags"].as_u64() {
            for (c, bit) in [("fin", 1), ("syn", 2), ("rst", 4), ("psh", 8), ("ack", 16), ("urg", 32), ("ece", 64), ("cwr", 128)] {
                assert_eq!(o[c], json!(bits & bit != 0), "frame {} {c}", o["frame"]);
            }
        } else {
            assert!(o["syn"].is_null() && o["flags"].is_null(), "{o}");
        }
        // Times: tshark's epoch seconds with microseconds, ours in ns.
        let (secs, micros) = t["time_epoch"].as_str().unwrap().split_once('.').unwrap();
        let ns_t: i64 = secs.parse::<i64>().unwrap() * 1_000_000_000 + micros[..6].parse::<i64>().unwrap() * 1000;
        assert_eq!(o["ts_ns"], json!(ns_t), "frame {}", o["frame"]);
    }
    // tcpdump's own flag text, for every TCP packet, in order.
    let o = Command::new("tcpdump").args(["-nn", "-r", file]).stderr(Stdio::null()).output().unwrap();
    let from_tcpdump: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split("Flags [").nth(1).map(|r| r.split(']').next().unwrap().to_string()))
        .collect();
    let from_us: Vec<String> = rows.iter().filter_map(|r| r["flags"].as_str().map(str::to_string)).collect();
    assert_eq!(from_us, from_tcpdump);
    assert!(from_us.iter().filter(|f| *f == "S").count() == 2 && from_us.contains(&"S.".to_string()) && from_us.contains(&"P.".to_string()), "{from_us:?}");
    // What the test made is there: both handshakes, the datagram, the ping.
    let count = |sql: &str| -> i64 {
        let (out, err, ok) = run(&["--format", "csv", "--no-header", &format!("SELECT count(*) FROM read_pcap('{file}') WHERE {sql}")]);
        assert!(ok, "{err}");
        out.trim().parse().unwrap()
    };
    assert_eq!(count("flags = 'S' AND dst_port = 8080 AND src_addr = '127.0.0.1'"), 1);
    assert_eq!(count("flags = 'S' AND dst_port = 8081 AND src_addr = '::1'"), 1);
    assert_eq!(count("protocol = 'udp' AND dst_port = 5353 AND payload_length = 8"), 1);
    assert_eq!(count("protocol = 'icmp' AND icmp_type IN (0, 8)"), 2);

    // The same packets as pcapng (interface names, ns resolution) and gzipped.
    let pcapng = dir.join("lo.pcapng");
    let st = Command::new("editcap").args(["-F", "pcapng", file, pcapng.to_str().unwrap()]).status().unwrap();
    assert!(st.success());
    assert_eq!(ours(pcapng.to_str().unwrap()), rows);
    let gz = dir.join("lo.pcap.gz");
    let data = std::fs::read(&pcap).unwrap();
    let mut gzip = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    gzip.stdin.take().unwrap().write_all(&data).unwrap();
    std::fs::write(&gz, gzip.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(ours(gz.to_str().unwrap()), rows);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file that is no capture is refused in one line, without its content;
/// a directory or device is refused before reading.
#[test]
fn read_pcap_refuses_what_is_not_a_capture() {
    let dir = std::env::temp_dir().join(format!("sockql-notpcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "root-password-here\n").unwrap();
    for (path, want) in [(secret.to_str().unwrap(), "not a pcap or pcapng file"), (dir.to_str().unwrap(), "not a regular file or pipe"), ("/dev/zero", "not a regular file or pipe")] {
        let (out, err, ok) = run(&[&format!("SELECT count(*) FROM read_pcap('{path}')")]);
        assert!(!ok && out.is_empty(), "{path}: {out}");
        assert!(err.contains(want) && !err.contains("root-password"), "{path}: {err}");
    }
    let (_, err, ok) = run(&["SELECT * FROM read_pcap(42)"]);
    assert!(!ok && err.contains("read_pcap takes one file name"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
