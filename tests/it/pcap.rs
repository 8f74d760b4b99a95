//! `read_pcap('FILE')` against the reference tools: traffic this test makes
//! in a namespace of its own (TCP over IPv4 and IPv6 with data both ways,
//! UDP, ICMP echo), captured by tcpdump, then read by sockql and by tshark
//! and tcpdump, packet by packet. The same packets as pcapng (editcap) and
//! gzipped read the same.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use crate::impair::{impair, Impairment};
use crate::netns::{link, Netns};

/// Spawn `cmd` with stderr piped and return once a stderr line contains
/// `marker` (the tool says its capture runs), with the rest of stderr.
pub fn spawn_until(cmd: &mut Command, marker: &str) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains(marker) {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "{cmd:?} ended before saying {marker:?}");
    }
    (child, err)
}

/// Read and drop the rest of a child's stderr, so it never blocks on it.
pub fn drain(mut err: BufReader<std::process::ChildStderr>) {
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
}

/// tcpdump writing every packet of `ns`'s loopback to `file` until dropped.
pub struct Capture {
    child: std::process::Child,
}

impl Capture {
    pub fn start(ns: &Netns, file: &std::path::Path) -> Capture {
        Capture::start_on(ns, "lo", file)
    }

    pub fn start_on(ns: &Netns, dev: &str, file: &std::path::Path) -> Capture {
        Capture::start_with(ns, dev, file, &[])
    }

    /// With more tcpdump options (`extra`).
    pub fn start_with(ns: &Netns, dev: &str, file: &std::path::Path, extra: &[&str]) -> Capture {
        assert!(have("tcpdump"), "tcpdump is needed for this test");
        let (child, err) = spawn_until(
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "tcpdump", "-i", dev, "-U", "-w", file.to_str().unwrap()])
                .args(extra),
            "listening on",
        );
        drain(err);
        Capture { child }
    }

    /// Stop once tcpdump -r shows `last` in `file`: the traffic's last packet.
    pub fn stop_after(self, file: &std::path::Path, last: &str) {
        eventually(WAIT, || {
            let o = Command::new("tcpdump")
                .args(["-nn", "-r", file.to_str().unwrap()])
                .stderr(Stdio::null())
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains(last).then_some(())
        });
        self.stop();
    }

    /// Stop now: tcpdump (-U) has written every packet it saw.
    pub fn stop(mut self) {
        // SIGINT: tcpdump flushes and closes the file.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap();
    }
}

/// The fields tshark reads, in sockql's column names.
fn tshark_rows(file: &str) -> Vec<Value> {
    assert!(have("tshark"), "tshark is needed for this test");
    let fields = [
        "frame.number",
        "frame.len",
        "frame.cap_len",
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "ip.ttl",
        "ipv6.hlim",
        "tcp.srcport",
        "udp.srcport",
        "tcp.dstport",
        "udp.dstport",
        "tcp.flags",
        "tcp.seq_raw",
        "tcp.ack_raw",
        "tcp.window_size_value",
        "tcp.len",
        "udp.length",
        "tcp.options.mss_val",
        "tcp.options.wscale.shift",
        "tcp.options.timestamp.tsval",
        "tcp.options.timestamp.tsecr",
        "icmp.type",
        "icmpv6.type",
        "frame.time_epoch",
        "tcp.seq",
        "tcp.ack",
        "tcp.window_size",
        "tcp.analysis.initial_rtt",
        "tcp.payload",
        "udp.payload",
    ];
    let mut args = vec!["-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"];
    for f in &fields {
        args.extend(["-e", f]);
    }
    let o = Command::new("tshark").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let num = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            json!(s.parse::<u64>().unwrap_or_else(|_| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()))
        }
    };
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
                "window_raw": num(f[16]),
                "rel_seq": num(f[26]),
                "rel_ack": if flags.as_u64().is_some_and(|x| x & 0x10 != 0) { num(f[27]) } else { Value::Null },
                "window": num(f[28]),
                // seconds with nanoseconds, as ms
                "handshake_rtt_ms": if f[29].is_empty() { Value::Null } else { json!(f[29].parse::<f64>().unwrap() * 1000.0) },
                "payload_length": if f[17].is_empty() { udp_len.as_u64().map_or(Value::Null, |l| json!(l - 8)) } else { num(f[17]) },
                "mss": num(f[19]), "wscale": num(f[20]), "ts_val": num(f[21]), "ts_ecr": num(f[22]),
                "icmp_type": num(&or(f[23], f[24])),
                "time_epoch": json!(f[25]),
                // hex, as sockql prints a binary column
                "payload": text(or(f[30], f[31])),
            })
        })
        .collect()
}

/// The frames tshark's analysis flags with tcp.analysis.`flag`.
pub fn tshark_flagged(file: &str, flag: &str) -> Vec<u64> {
    let o = Command::new("tshark")
        .args(["-r", file, "-Y", &format!("tcp.analysis.{flag}"), "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().parse().unwrap()).collect()
}

/// tshark's tcp.analysis flags and sockql's columns for them.
const ANALYSIS_FLAGS: [(&str, &str); 10] = [
    ("retransmission", "retransmission"),
    ("fast_retransmission", "fast_retransmission"),
    ("spurious_retransmission", "spurious_retransmission"),
    ("out_of_order", "out_of_order"),
    ("duplicate_ack", "dup_ack"),
    ("keep_alive", "keep_alive"),
    ("window_update", "window_update"),
    ("window_full", "window_full"),
    ("zero_window", "zero_window"),
    ("ack_rtt", "ack_rtt_ms"),
];

/// Every analysis flag, frame for frame, equal to tshark's on `file`, and
/// ack_rtt_ms equal to tshark's tcp.analysis.ack_rtt on every frame.
/// Returns how many frames each column flags.
pub fn analysis_equals_tshark(file: &str) -> std::collections::BTreeMap<&'static str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (theirs, ours) in ANALYSIS_FLAGS {
        let t = tshark_flagged(file, theirs);
        let cond = if ours == "ack_rtt_ms" { "ack_rtt_ms IS NOT NULL".to_string() } else { ours.to_string() };
        let (out, err, ok) = run(&[
            "--format",
            "csv",
            "--no-header",
            &format!("SELECT frame FROM read_pcap('{file}') WHERE {cond} ORDER BY frame"),
        ]);
        assert!(ok, "{err}");
        let s: Vec<u64> = out.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(s, t, "{file}: {ours}");
        counts.insert(ours, s.len());
    }
    // The round trips themselves: tshark's seconds (ns digits) as ms.
    let o = Command::new("tshark")
        .args(["-r", file, "-Y", "tcp.analysis.ack_rtt", "-T", "fields", "-e", "tcp.analysis.ack_rtt"])
        .output()
        .unwrap();
    let theirs: Vec<f64> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().parse::<f64>().unwrap() * 1000.0).collect();
    let (out, err, ok) = run(&[
        "--format",
        "csv",
        "--no-header",
        &format!("SELECT ack_rtt_ms FROM read_pcap('{file}') WHERE ack_rtt_ms IS NOT NULL ORDER BY frame"),
    ]);
    assert!(ok, "{err}");
    let ours: Vec<f64> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-6, "ack_rtt_ms {a} vs tshark {b}");
    }
    counts
}

const COLUMNS: &str = "frame, length, captured_length, src_addr, dst_addr, ttl, src_port, dst_port, \
    syn, ack, fin, rst, psh, urg, ece, cwr, flags, seq, ack_seq, rel_seq, rel_ack, window, window_raw, handshake_rtt_ms, zero_window, \
    window_update, dup_ack, retransmission, keep_alive, out_of_order, payload_length, mss, wscale, ts_val, ts_ecr, icmp_type, \
    CAST(ts AS BIGINT) AS ts_ns";

fn ours(file: &str) -> Vec<Value> {
    let (out, err, ok) =
        run(&["--format", "ndjson", &format!("SELECT {COLUMNS} FROM read_pcap('{file}') ORDER BY frame")]);
    assert!(ok, "{err}");
    parse_ndjson(&out)
}

/// Make the traffic: a TCP exchange over IPv4 and one over IPv6 (handshake,
/// data both ways, FIN), a UDP datagram, and one ping.
fn traffic(ns: &Netns, pcap: &std::path::Path) {
    let pcap = pcap.to_path_buf();
    ns.enter(move || {
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
        // A reader that stops reading: a small receive buffer fills, and it
        // advertises a zero window.
        {
            let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            l.set_recv_buffer_size(4096).unwrap();
            l.bind(&"127.0.0.1:8082".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
            l.listen(1).unwrap();
            let c = std::net::TcpStream::connect("127.0.0.1:8082").unwrap();
            let (_s, _) = l.accept().unwrap();
            c.set_nonblocking(true).unwrap();
            let mut c = c;
            let chunk = [7u8; 4096];
            // Write until the kernel takes no more: the peer's window is 0.
            let mut stuck = 0;
            while stuck < 3 {
                match c.write(&chunk) {
                    Ok(_) => stuck = 0,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        stuck += 1;
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            // The zero window goes out with the receiver's (delayed) ACK:
            // hold both ends until the capture shows it.
            eventually(WAIT, || {
                let o = Command::new("tcpdump")
                    .args(["-nn", "-r", pcap.to_str().unwrap(), "port", "8082"])
                    .stderr(Stdio::null())
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&o.stdout).contains(", win 0,").then_some(())
            });
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
    traffic(&ns, &pcap);
    // The ping is the last of the traffic.
    cap.stop_after(&pcap, "ICMP echo reply");
    let file = pcap.to_str().unwrap();
    let rows = ours(file);
    let tshark = tshark_rows(file);
    assert_eq!(rows.len(), tshark.len());
    assert!(rows.len() >= 20, "{rows:?}");
    for (o, t) in rows.iter().zip(&tshark) {
        for c in [
            "frame",
            "length",
            "captured_length",
            "src_addr",
            "dst_addr",
            "ttl",
            "src_port",
            "dst_port",
            "seq",
            "ack_seq",
            "rel_seq",
            "rel_ack",
            "window",
            "window_raw",
            "payload_length",
            "mss",
            "wscale",
            "ts_val",
            "ts_ecr",
            "icmp_type",
        ] {
            assert_eq!(o[c], t[c], "frame {} column {c}: ours {o}\ntshark {t}", o["frame"]);
        }
        // The handshake's round trip: where tshark shows it, the same; ours
        // is on every packet after the handshake, tshark's on most.
        if let Some(b) = t["handshake_rtt_ms"].as_f64() {
            let a = o["handshake_rtt_ms"].as_f64().unwrap_or_else(|| panic!("frame {}: tshark has {b}", o["frame"]));
            assert!((a - b).abs() < 1e-6, "frame {}: {a} vs {b}", o["frame"]);
        }
        if o["flags"] == json!("S") || o["flags"] == json!("S.") {
            assert!(o["handshake_rtt_ms"].is_null(), "{o}");
        }
        // The flag booleans are the bits tshark shows.
        if let Some(bits) = t["tcp_flags"].as_u64() {
            for (c, bit) in
                [("fin", 1), ("syn", 2), ("rst", 4), ("psh", 8), ("ack", 16), ("urg", 32), ("ece", 64), ("cwr", 128)]
            {
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
    // Zero-window advertisements: the frames tshark's analysis marks.
    let tshark_zero = tshark_flagged(file, "zero_window");
    let our_zero: Vec<u64> =
        rows.iter().filter(|r| r["zero_window"] == json!(true)).map(|r| r["frame"].as_u64().unwrap()).collect();
    assert_eq!(our_zero, tshark_zero);
    assert!(!our_zero.is_empty(), "the stalled reader advertised a zero window");
    // The rest of the analysis on real traffic: window updates as the
    // stalled reader's window moves, the writer filling it, round trips.
    let counts = analysis_equals_tshark(file);
    assert!(counts["window_full"] > 0 && counts["ack_rtt_ms"] > 0, "{counts:?}");
    // tcpdump's own flag text, for every TCP packet, in order.
    let o = Command::new("tcpdump").args(["-nn", "-r", file]).stderr(Stdio::null()).output().unwrap();
    let from_tcpdump: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split("Flags [").nth(1).map(|r| r.split(']').next().unwrap().to_string()))
        .collect();
    let from_us: Vec<String> = rows.iter().filter_map(|r| r["flags"].as_str().map(str::to_string)).collect();
    assert_eq!(from_us, from_tcpdump);
    assert!(
        from_us.iter().filter(|f| *f == "S").count() == 3
            && from_us.contains(&"S.".to_string())
            && from_us.contains(&"P.".to_string()),
        "{from_us:?}"
    );
    // Payload bytes only when asked for, then as tshark shows them.
    let hidden = query(&format!("SELECT count(*) AS n FROM read_pcap('{file}') WHERE payload IS NOT NULL"));
    assert_eq!(hidden[0]["n"], json!(0));
    let (out, err, ok) = run(&[
        "--payload",
        "--format",
        "ndjson",
        &format!("SELECT frame, protocol, payload FROM read_pcap('{file}') ORDER BY frame"),
    ]);
    assert!(ok, "{err}");
    let shown = parse_ndjson(&out);
    for (o, t) in shown.iter().zip(&tshark) {
        if o["protocol"] == json!("tcp") || o["protocol"] == json!("udp") {
            assert_eq!(
                o["payload"],
                if t["payload"].is_null() { json!("") } else { t["payload"].clone() },
                "frame {}",
                o["frame"]
            );
        }
    }
    assert!(shown.iter().any(|r| r["payload"] == json!(hex(b"datagram"))), "the datagram's bytes");
    // What the test made is there: both handshakes, the datagram, the ping.
    let count = |sql: &str| -> i64 {
        let (out, err, ok) =
            run(&["--format", "csv", "--no-header", &format!("SELECT count(*) FROM read_pcap('{file}') WHERE {sql}")]);
        assert!(ok, "{err}");
        out.trim().parse().unwrap()
    };
    assert_eq!(count("flags = 'S' AND dst_port = 8080 AND src_addr = '127.0.0.1'"), 1);
    assert_eq!(count("flags = 'S' AND dst_port = 8081 AND src_addr = '::1'"), 1);
    assert_eq!(count("protocol = 'udp' AND dst_port = 5353 AND payload_length = 8"), 1);
    assert_eq!(count("protocol = 'icmp' AND icmp_type IN (0, 8)"), 2);

    // Cut to a 70-byte snap length (editcap -s, as tcpdump -s 70 writes):
    // lengths on the wire stay, headers cut short read as far as they go.
    let cut = dir.join("lo70.pcap");
    assert!(Command::new("editcap").args(["-s", "70", file, cut.to_str().unwrap()]).status().unwrap().success());
    let short = ours(cut.to_str().unwrap());
    let short_t = tshark_rows(cut.to_str().unwrap());
    assert_eq!(short.len(), rows.len());
    for (o, t) in short.iter().zip(&short_t) {
        for c in ["frame", "length", "captured_length", "src_addr", "dst_addr", "ttl"] {
            assert_eq!(o[c], t[c], "cut frame {} column {c}", o["frame"]);
        }
    }
    assert!(short.iter().any(|r| r["length"].as_u64() > r["captured_length"].as_u64()), "some packets were cut");

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
    for (path, want) in [
        (secret.to_str().unwrap(), "not a pcap or pcapng file"),
        (dir.to_str().unwrap(), "not a regular file or pipe"),
        ("/dev/zero", "not a regular file or pipe"),
    ] {
        let (out, err, ok) = run(&[&format!("SELECT count(*) FROM read_pcap('{path}')")]);
        assert!(!ok && out.is_empty(), "{path}: {out}");
        assert!(err.contains(want) && !err.contains("root-password"), "{path}: {err}");
    }
    let (_, err, ok) = run(&["SELECT * FROM read_pcap(42)"]);
    assert!(!ok && err.contains("read_pcap takes one file name"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// sockql capturing live in `ns` for `secs`, printing ndjson: started, and
/// returned once its capture runs (its note on stderr says so).
fn live_capture(ns: &Netns, secs: u32, sql: &str) -> std::process::Child {
    live_capture_with(ns, secs, &[], sql)
}

fn live_capture_with(ns: &Netns, secs: u32, flags: &[&str], sql: &str) -> std::process::Child {
    let (child, err) = spawn_until(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, bin(), "--capture-for", &format!("{secs}s"), "--format", "ndjson"])
            .args(flags)
            .arg(sql)
            .stdout(Stdio::piped()),
        "capturing on",
    );
    drain(err);
    child
}

/// The live `packets` table sees what tcpdump sees on the same interface,
/// packet by packet, and says which way each went.
#[test]
fn live_packets_equal_tcpdump() {
    let ns = Netns::new("pcapL");
    let dir = std::env::temp_dir().join(format!("sockql-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("lo.pcap");
    let cap = Capture::start(&ns, &pcap);
    let ours = live_capture_with(
        &ns,
        6,
        &["--payload"],
        "SELECT src_addr, dst_addr, src_port, dst_port, protocol, flags, seq, ack_seq, window_raw, payload_length, icmp_type, interface, direction, \
         CAST(ts AS BIGINT) / 1000 AS ts_us, CASE WHEN protocol IN ('tcp', 'udp') THEN payload END AS payload FROM packets ORDER BY ts",
    );
    traffic(&ns, &pcap);
    // sockql's capture ends first; tcpdump, still running, then holds
    // everything it saw.
    let out = ours.wait_with_output().unwrap();
    assert!(out.status.success());
    cap.stop_after(&pcap, "ICMP echo reply");
    let ours = parse_ndjson(&String::from_utf8_lossy(&out.stdout));
    let file = pcap.to_str().unwrap();
    let theirs = tshark_rows(file);
    // tshark leaves an empty payload out; sockql's is empty bytes.
    let payload = |r: &Value| if r["payload"] == json!("") { Value::Null } else { r["payload"].clone() };
    let key = |r: &Value| {
        (
            r["src_addr"].clone(),
            r["dst_addr"].clone(),
            r["src_port"].clone(),
            r["dst_port"].clone(),
            r["seq"].clone(),
            r["ack_seq"].clone(),
            r["window_raw"].clone(),
            r["payload_length"].clone(),
            r["icmp_type"].clone(),
            payload(r),
        )
    };
    let a: Vec<_> = ours.iter().map(key).collect();
    let b: Vec<_> = theirs.iter().map(key).collect();
    assert_eq!(a, b, "sockql live vs tcpdump on lo");
    // The kernel's timestamps, as tcpdump's, not when sockql got round to
    // reading them: the capture starts only once the kernel stamps packets
    // (see live_capture_starts_with_receive_stamps for its first packets).
    // To a microsecond or so, not exactly: TCP's packets carry a departure
    // time on the monotonic clock (pacing), which loopback keeps, and each
    // packet socket replaces it with the real time as the packet reaches
    // it (skb_clear_delivery_time; tpacket_rcv for tcpdump's ring), a few
    // hundred nanoseconds apart. UDP's carry the one receive stamp.
    let times = |rows: &[Value], f: &dyn Fn(&Value) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let ours_us = times(&ours, &|r| r["ts_us"].as_i64().unwrap());
    let theirs_us = times(&theirs, &|t| {
        let (secs, frac) = t["time_epoch"].as_str().unwrap().split_once('.').unwrap();
        secs.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap()
    });
    assert_eq!(ours_us.len(), theirs_us.len());
    for (a, b) in ours_us.iter().zip(&theirs_us) {
        assert!((a - b).abs() <= 5, "timestamps {a} vs tcpdump {b} µs:\n{ours_us:?}\n{theirs_us:?}");
    }
    // With --payload, whole packets: the 1000-byte writes arrive whole.
    assert!(ours.iter().any(|r| r["payload"] == json!(hex(&[1u8; 1000]))), "payload kept");
    assert!(ours.len() >= 20, "{ours:?}");
    // One copy of each packet on loopback, as tcpdump keeps, marked in.
    assert!(ours.iter().all(|r| r["interface"] == json!("lo") && r["direction"] == json!("in")), "{ours:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A capture that starts while traffic flows hands over its first packets
/// with the kernel's receive stamps, to the microsecond tcpdump wrote for
/// the same datagrams, not the time sockql read them.
///
/// The kernel stamps packets only while some socket on the host asks for
/// stamps, and the first to ask switches that on through a workqueue
/// (net_enable_timestamp). tcpdump at its default microsecond precision
/// does not ask (its ring stamps each packet as it fills it; with
/// --time-stamp-precision=nano libpcap does ask, which would hide the gap),
/// and on this machine nothing else asks between captures (no chronyd or
/// PTP daemon), so the switch is off when the capture starts: a capture
/// that took packets before it came on stamped them as it read them, 3 to
/// 10 ms after tcpdump, and this test failed. If another process holds the
/// switch on for the whole run (another capture, a time daemon), every
/// packet is stamped either way and the run cannot tell. While each
/// capture starts the datagrams come back to back, so that, with the
/// switch off, some arrive while it is being switched on.
#[test]
fn live_capture_starts_with_receive_stamps() {
    const STARTS: usize = 5;
    let ns = Netns::new("pcapS");
    let dir = std::env::temp_dir().join(format!("sockql-stamps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("lo.pcap");
    // A receiver that never reads (its queue fills; taps see every packet
    // before that) and a sender, both made inside the namespace.
    let (rx, tx) = ns.enter(|| {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    });
    let port = rx.local_addr().unwrap().port();
    let cap = Capture::start_with(&ns, "lo", &pcap, &["-B", "65536"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The sender stops when the test ends, passed or not.
    struct Stop(std::sync::Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _stop = Stop(stop.clone());
    // Datagrams a few hundred microseconds apart, back to back while
    // `dense` is set: while a capture starts.
    let dense = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // With two CPUs or more: sockql and a busy loop of the test's share
    // one, the sender has another. The kernel's worker that switches the
    // stamps on runs on the CPU that asked, so it waits its turn there
    // while datagrams keep coming from the other, as on a loaded machine.
    let cpus: Vec<usize> = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect())
        .unwrap_or_default();
    let pin = |cpu: Option<&usize>| {
        if let Some(&c) = cpu {
            let mut one = nix::sched::CpuSet::new();
            one.set(c).unwrap();
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
        }
    };
    let (capture_cpu, sender_cpu) = match cpus.as_slice() {
        [a, b, ..] => (Some(*a), Some(*b)),
        _ => (None, None),
    };
    let busy = {
        let (stop, dense) = (stop.clone(), dense.clone());
        std::thread::spawn(move || {
            pin(capture_cpu.as_ref());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if !dense.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })
    };
    let sender = {
        let (stop, dense) = (stop.clone(), dense.clone());
        std::thread::spawn(move || {
            pin(sender_cpu.as_ref());
            let mut seq: u32 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // The receiver's full queue refuses nothing on send.
                let _ = tx.send(&seq.to_be_bytes());
                seq += 1;
                if !dense.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            }
            // The last packet, for tcpdump's stop: 3 bytes, unlike the rest.
            tx.send(b"end").unwrap();
            seq
        })
    };
    // Let the flow run before the capture starts.
    eventually(WAIT, || (std::fs::metadata(&pcap).map_or(0, |m| m.len()) > 4096).then_some(()));
    // Several capture starts, each while the switch is off again (the last
    // socket that asked is gone).
    let mut ours = Vec::new();
    for _ in 0..STARTS {
        dense.store(true, std::sync::atomic::Ordering::Relaxed);
        let taskset = capture_cpu.map(|c| c.to_string());
        let (capture, err) = spawn_until(
            Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .args(taskset.as_ref().map(|c| ["taskset", "-c", c.as_str()]).iter().flatten())
                .args([bin(), "--capture-for", "10s", "--format", "ndjson", "--payload"])
                .arg(format!(
                    "SELECT CAST(ts AS BIGINT) AS ts_ns, payload FROM packets \
                     WHERE protocol = 'udp' AND dst_port = {port} AND payload_length = 4 LIMIT 100"
                ))
                .stdout(Stdio::piped()),
            "capturing on",
        );
        drain(err);
        dense.store(false, std::sync::atomic::Ordering::Relaxed);
        let out = capture.wait_with_output().unwrap();
        assert!(out.status.success());
        let rows = parse_ndjson(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(rows.len(), 100, "the LIMIT's rows");
        ours.push(rows);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    busy.join().unwrap();
    cap.stop_after(&pcap, "UDP, length 3");
    // tcpdump's stamp of each datagram, by its sequence number.
    let o = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-T", "fields", "-e", "frame.time_epoch", "-e", "udp.payload"])
        .arg("-Y")
        .arg(format!("udp.dstport == {port} && udp.length == 12"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let us_of = |epoch: &str| {
        let (secs, frac) = epoch.split_once('.').unwrap();
        secs.parse::<i64>().unwrap() * 1_000_000 + frac[..6].parse::<i64>().unwrap()
    };
    let theirs: std::collections::HashMap<String, i64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(t, payload)| (payload.replace(':', ""), us_of(t)))
        .collect();
    assert!(theirs.len() as u32 >= sent / 2, "tcpdump kept {} of {sent}", theirs.len());
    let seq = |r: &Value| u32::from_str_radix(r["payload"].as_str().unwrap(), 16).unwrap();
    // Each capture began mid-flow.
    assert!(ours.iter().all(|rows| seq(&rows[0]) > 0), "{:?}", ours.iter().map(|r| &r[0]).collect::<Vec<_>>());
    let mut late = Vec::new();
    for r in ours.iter().flatten() {
        let Some(t) = theirs.get(r["payload"].as_str().unwrap()) else {
            panic!("datagram {} is not in tcpdump's capture", seq(r));
        };
        // One receive stamp for both: the same microsecond.
        let ts = r["ts_ns"].as_i64().unwrap() / 1000;
        if ts != *t {
            late.push((seq(r), ts - t));
        }
    }
    assert!(late.is_empty(), "(datagram, µs after tcpdump's stamp) of those sockql stamped otherwise: {late:?}");
    drop(rx);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Packets joined to the sockets and processes they belong to, on the
/// 5-tuple, while the connection lives; and a LIMIT ends the capture.
#[test]
fn live_packets_join_to_their_process() {
    let ns = Netns::new("pcapJ");
    let sql = "SELECT DISTINCT p.dst_port, s.state, o.pid FROM packets p \
               JOIN sockets s ON s.local_addr = p.src_addr AND s.local_port = p.src_port AND s.remote_port = p.dst_port \
               JOIN socket_owners o ON o.inode = s.inode \
               WHERE p.protocol = 'tcp' AND p.dst_port = 9090 AND p.payload_length > 0";
    let (l, c) = ns.enter(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:9090").unwrap();
        let c = std::net::TcpStream::connect("127.0.0.1:9090").unwrap();
        (l, c)
    });
    let (mut s, _) = l.accept().unwrap();
    let child = live_capture(&ns, 3, sql);
    let mut c = c;
    c.write_all(b"from the client").unwrap();
    let mut buf = [0u8; 15];
    s.read_exact(&mut buf).unwrap();
    let out = child.wait_with_output().unwrap();
    let rows = parse_ndjson(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows, vec![json!({"dst_port": 9090, "state": "ESTAB", "pid": my_pid()})]);
    // LIMIT 1 ends a 60 s capture at its first packet.
    let start = std::time::Instant::now();
    let child = live_capture(&ns, 60, "SELECT protocol FROM packets LIMIT 1");
    c.write_all(b"x").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(parse_ndjson(&String::from_utf8_lossy(&out.stdout)), vec![json!({"protocol": "tcp"})]);
    assert!(start.elapsed() < std::time::Duration::from_secs(30), "{:?}", start.elapsed());
}

/// Port, protocol and address filters run in the kernel: with a ping and
/// a TCP exchange on the wire, the socket is handed only the TCP packets
/// towards the port (twice each on loopback: as sent and as received).
#[test]
fn live_filters_run_in_the_kernel() {
    let ns = Netns::new("pcapF");
    let sql = "EXPLAIN ANALYZE SELECT count(*) FROM packets WHERE protocol = 'tcp' AND dst_port = 9191 AND dst_addr = '127.0.0.1'";
    let (l, mut c) = ns.enter(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:9191").unwrap();
        let c = std::net::TcpStream::connect("127.0.0.1:9191").unwrap();
        (l, c)
    });
    let (mut s, _) = l.accept().unwrap();
    let child = live_capture(&ns, 2, sql);
    ns.exec_ok("ping", &["-c", "2", "-i", "0.2", "127.0.0.1"]);
    for _ in 0..3 {
        c.write_all(b"abc").unwrap();
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"def").unwrap();
        c.read_exact(&mut buf).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace("\\n", "\n");
    let scan = text.lines().find(|l| l.contains("LiveScanExec: packets")).unwrap_or_else(|| panic!("{text}"));
    assert!(scan.contains("bpf=[tcp and dst port 9191 and dst host 127.0.0.1]"), "{scan}");
    let metric = |name: &str| -> u64 {
        let at = scan.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} in {scan}"));
        scan[at + name.len() + 1..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
    };
    let (rows, passed) = (metric("output_rows"), metric("kernel_messages"));
    // Three segments with data towards 9191 (and ACKs of the replies).
    assert!(rows >= 3, "{scan}");
    assert_eq!(passed, 2 * rows, "only matching packets reached the socket: {scan}");
}

/// Capturing in several namespaces at once: each packet carries its
/// namespace, and each namespace's packets equal tcpdump's inside it.
#[test]
fn live_packets_across_namespaces() {
    let a = Netns::new("pcapA");
    let b = Netns::new("pcapB");
    let dir = std::env::temp_dir().join(format!("sockql-live-ns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (pa, pb) = (dir.join("a.pcap"), dir.join("b.pcap"));
    let (ca, cb) = (Capture::start(&a, &pa), Capture::start(&b, &pb));
    let sql = format!(
        "SELECT netns_name, src_addr, dst_addr, src_port, dst_port, seq, ack_seq, icmp_type FROM packets \
         WHERE netns_name IN ('{}', '{}') ORDER BY ts",
        a.name, b.name
    );
    let (child, err) = spawn_until(
        Command::new(bin())
            .args(["--all-netns", "--capture-for", "4s", "--format", "ndjson", &sql])
            .stdout(Stdio::piped()),
        "capturing on",
    );
    drain(err);
    a.enter(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:7070").unwrap();
        let mut c = std::net::TcpStream::connect("127.0.0.1:7070").unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"in A").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
    });
    b.exec_ok("ping", &["-c", "1", "127.0.0.1"]);
    // sockql's capture ends first; tcpdump, still running, then holds
    // everything it saw (nothing else runs in these namespaces).
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    ca.stop_after(&pa, "Flags [F.]");
    cb.stop_after(&pb, "ICMP echo reply");
    let rows = parse_ndjson(&String::from_utf8_lossy(&out.stdout));
    let key = |r: &Value| {
        (
            r["src_addr"].clone(),
            r["dst_addr"].clone(),
            r["src_port"].clone(),
            r["dst_port"].clone(),
            r["seq"].clone(),
            r["ack_seq"].clone(),
            r["icmp_type"].clone(),
        )
    };
    for (ns, file) in [(&a, &pa), (&b, &pb)] {
        let ours: Vec<_> = rows.iter().filter(|r| r["netns_name"] == json!(ns.name)).map(key).collect();
        let theirs: Vec<_> = tshark_rows(file.to_str().unwrap()).iter().map(key).collect();
        assert!(!ours.is_empty(), "{}: {rows:?}", ns.name);
        assert_eq!(ours, theirs, "{}", ns.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `sockql capture --out FILE FILTER` writes a pcap that tcpdump and tshark
/// read, holding exactly the packets tcpdump's same filter keeps; a filter
/// the capture cannot apply, or an existing file, is refused before
/// anything is written.
#[test]
fn capture_writes_a_pcap_tcpdump_reads() {
    let ns = Netns::new("pcapW");
    let dir = std::env::temp_dir().join(format!("sockql-capw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (theirs, ours) = (dir.join("tcpdump.pcap"), dir.join("sockql.pcap"));
    let cap = Capture::start(&ns, &theirs);
    let (mut child, mut err) = spawn_until(
        Command::new("ip").args([
            "netns",
            "exec",
            &ns.name,
            bin(),
            "--capture-for",
            "4s",
            "capture",
            "--out",
            ours.to_str().unwrap(),
            "protocol = 'tcp' AND dst_port = 8080",
        ]),
        "capturing on",
    );
    traffic(&ns, &theirs);
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("sockql capture: ") && rest.contains(" packets written to "), "{rest}");
    cap.stop_after(&theirs, "ICMP echo reply");
    // tcpdump's own filter over its own capture: the packets ours must hold.
    let expected = dir.join("expected.pcap");
    let st = Command::new("tcpdump")
        .args(["-r", theirs.to_str().unwrap(), "-w", expected.to_str().unwrap(), "tcp and dst port 8080"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let key = |r: &Value| {
        (
            r["src_addr"].clone(),
            r["dst_addr"].clone(),
            r["src_port"].clone(),
            r["dst_port"].clone(),
            r["seq"].clone(),
            r["ack_seq"].clone(),
            r["length"].clone(),
        )
    };
    let a: Vec<_> = tshark_rows(ours.to_str().unwrap()).iter().map(key).collect();
    let b: Vec<_> = tshark_rows(expected.to_str().unwrap())
        .iter()
        .map(|r| {
            // Ours carries a 20-byte cooked header where tcpdump's lo capture
            // has a 14-byte Ethernet one.
            let mut r = r.clone();
            r["length"] = json!(r["length"].as_u64().unwrap() + 6);
            key(&r)
        })
        .collect();
    assert!(a.len() >= 5, "{a:?}");
    assert_eq!(a, b);
    // And sockql reads it back.
    let (n, e, ok) = run(&[
        "--format",
        "csv",
        "--no-header",
        &format!(
            "SELECT count(*) FROM read_pcap('{}') WHERE dst_port = 8080 AND direction = 'in' AND interface IS NULL",
            ours.display()
        ),
    ]);
    assert!(ok, "{e}");
    assert_eq!(n.trim(), a.len().to_string());
    // Refusals leave no file behind.
    let other = dir.join("never.pcap");
    let (_, e, ok) = run(&["--capture-for", "1s", "capture", "--out", other.to_str().unwrap(), "length > 5"]);
    assert!(!ok && e.contains("capture --out cannot apply"), "{e}");
    assert!(!other.exists());
    let (_, e, ok) = run(&["--capture-for", "1s", "capture", "--out", ours.to_str().unwrap()]);
    assert!(!ok && e.contains("it must not exist yet"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Wireshark's sequence analysis, flag by flag, on captures made from the
/// recorded handshake fixture with editcap and mergecap: one where a data
/// segment is sent twice at once and the peer's ACK three times more (a
/// retransmission, three duplicate ACKs), one where those copies come
/// late (keep-alives, a spurious retransmission).
#[test]
fn analysis_flags_equal_tshark() {
    assert!(have("editcap") && have("mergecap"), "editcap and mergecap (wireshark-common) are needed");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/handshake.pcap");
    let dir = std::env::temp_dir().join(format!("sockql-analysis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let tool = |prog: &str, args: &[&str]| {
        assert!(Command::new(prog).args(args).status().unwrap().success(), "{prog} {args:?}")
    };
    // Pieces: frames by number, shifted in time.
    let piece = |frames: &str, shift: &str, name: &str| {
        tool("editcap", &["-r", fixture, &p(&format!("{name}.raw")), frames]);
        tool("editcap", &["-t", shift, &p(&format!("{name}.raw")), &p(name)]);
        p(name)
    };
    let scenarios = [
        // copies right behind the originals
        vec![
            piece("1-4", "0", "a"),
            piece("4", "0.000001", "d"),
            piece("5", "0.000002", "k1"),
            piece("5", "0.000003", "k2"),
            piece("5", "0.000004", "k3"),
            piece("5-8", "0", "b"),
        ],
        // the same copies, late
        vec![
            piece("1-7", "0", "c"),
            piece("5", "0.4", "l1"),
            piece("5", "0.41", "l2"),
            piece("5", "0.42", "l3"),
            piece("4", "0.5", "e"),
        ],
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (i, parts) in scenarios.iter().enumerate() {
        let merged = p(&format!("s{i}.pcap"));
        let mut args = vec!["-w", merged.as_str()];
        args.extend(parts.iter().map(String::as_str));
        tool("mergecap", &args);
        for (flag, n) in analysis_equals_tshark(&merged) {
            if n > 0 {
                seen.insert(flag);
            }
        }
    }
    // The scenarios do show what they are for.
    for f in ["retransmission", "spurious_retransmission", "dup_ack", "keep_alive"] {
        assert!(seen.contains(f), "no {f} in any scenario: {seen:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A bulk transfer over a link that loses and reorders segments (see
/// `impair`) to a reader that stalls once: the receiver's capture shows
/// retransmissions (fast, spurious and on timeout), out-of-order segments,
/// duplicate ACKs, full windows and
/// a handshake of about a second, and sockql's analysis equals tshark's
/// frame for frame, with the ACK round trips to the nanosecond.
#[test]
fn loss_and_reordering_equal_tshark() {
    let (a, b) = (Netns::new("lossA"), Netns::new("lossB"));
    let (va, vb) = link(&a, &b, 6);
    impair(&a, &va, 9000, &Impairment { drop_every: 17, slow_every: 11, slow_handshake: true });
    let dir = std::env::temp_dir().join(format!("sockql-loss-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("receiver.pcap");
    let cap = Capture::start_on(&b, &vb, &pcap);
    let l = b.enter(|| std::net::TcpListener::bind("10.231.6.2:9000").unwrap());
    let stalled = pcap.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"hello\n").unwrap();
        // The reader stalls until it has advertised a zero window: the
        // writer then fills the window to its edge whatever the machine's
        // load (reading at once, a loaded machine's writer never caught
        // up with it, and no segment was window_full).
        eventually(WAIT, || {
            let o = Command::new("tcpdump")
                .args(["-nn", "-r", stalled.to_str().unwrap(), "src", "port", "9000"])
                .stderr(Stdio::null())
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains(", win 0,").then_some(())
        });
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(b"done").unwrap();
        got.len()
    });
    a.enter(|| {
        let mut c = std::net::TcpStream::connect("10.231.6.2:9000").unwrap();
        c.set_nodelay(true).unwrap();
        // The client speaks after the banner, so its data waits for the
        // resent SYN/ACK: the handshake's round trip stays the second.
        let mut banner = [0u8; 6];
        c.read_exact(&mut banner).unwrap();
        for _ in 0..300 {
            c.write_all(&[9u8; 1000]).unwrap();
        }
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut done = Vec::new();
        c.read_to_end(&mut done).unwrap();
        assert_eq!(done, b"done");
    });
    assert_eq!(server.join().unwrap(), 300_000);
    cap.stop_after(&pcap, "length 4");
    let file = pcap.to_str().unwrap();
    let counts = analysis_equals_tshark(file);
    for flag in ["retransmission", "fast_retransmission", "out_of_order", "dup_ack", "window_full", "ack_rtt_ms"] {
        assert!(counts[flag] > 0, "the impaired link showed no {flag}: {counts:?}");
    }
    // The handshake took the resent SYN/ACK's second, as tshark says.
    let rtt = query(&format!(
        "SELECT DISTINCT handshake_rtt_ms AS r FROM read_pcap('{file}') WHERE handshake_rtt_ms IS NOT NULL"
    ));
    assert_eq!(rtt.len(), 1, "{rtt:?}");
    let r = rtt[0]["r"].as_f64().unwrap();
    let t = tshark_rows(file).iter().find_map(|t| t["handshake_rtt_ms"].as_f64()).unwrap();
    assert!((r - t).abs() < 1e-6 && r > 900.0, "ours {r} ms, tshark {t} ms");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bytes as sockql prints a binary column: lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ctrl-C during a capture ends the capture, and the query answers from
/// what it saw (as tcpdump prints what it has); Ctrl-C with no capture
/// running exits as SIGINT does.
#[test]
fn ctrl_c_ends_the_capture_and_the_query_answers() {
    let ns = Netns::new("pcapC");
    let query = live_capture(
        &ns,
        120,
        "SELECT icmp_type, count(*) AS n FROM packets WHERE protocol = 'icmp' GROUP BY icmp_type ORDER BY icmp_type",
    );
    let start = std::time::Instant::now();
    ns.exec_ok("ping", &["-c", "3", "-i", "0.2", "127.0.0.1"]);
    // SAFETY: a signal to the child we spawned.
    unsafe { libc::kill(query.id() as i32, libc::SIGINT) };
    let out = query.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert!(start.elapsed() < std::time::Duration::from_secs(30), "ended by Ctrl-C, not its 120 s");
    let rows = parse_ndjson(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows, vec![json!({"icmp_type": 0, "n": 3}), json!({"icmp_type": 8, "n": 3})]);

    // No capture: a read that waits on a pipe nobody writes.
    let dir = std::env::temp_dir().join(format!("sockql-ctrlc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("never.pcap");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // A writer that never writes, so the reader waits (O_RDWR: opening
    // a FIFO so does not wait for a reader).
    let _writer = std::fs::File::options().read(true).write(true).open(&fifo).unwrap();
    let mut waiting = Command::new(bin())
        .arg(format!("SELECT count(*) FROM read_pcap('{}')", fifo.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The query is waiting once it has the pipe open.
    eventually(WAIT, || {
        std::fs::read_dir(format!("/proc/{}/fd", waiting.id()))
            .ok()?
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == fifo))
            .then_some(())
    });
    unsafe { libc::kill(waiting.id() as i32, libc::SIGINT) };
    assert_eq!(waiting.wait().unwrap().code(), Some(130));
    std::fs::remove_dir_all(&dir).unwrap();
}
