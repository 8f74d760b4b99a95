//! `read_pcap` on the link types and encapsulations Linux captures hold,
//! frame by frame against tshark and tcpdump: VLAN and QinQ frames made
//! for real on a veth pair (captured as Ethernet, Linux cooked v1 and v2),
//! NFLOG made by an nftables `log group` rule, and crafted frames for what
//! this kernel cannot make (MPLS: no mpls_router module here; PPPoE
//! sessions; BSD loopback; raw IP) and for what is not decoded, which is
//! said once per file.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use crate::netns::{link, Netns};
use crate::pcap::{drain, spawn_until};

/// What tshark -T fields says of every frame, the fields listed, each
/// with all its occurrences (the outer header's first).
fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<Vec<Vec<String>>> {
    assert!(have("tshark"), "tshark is needed for this test");
    let mut args = vec![
        "-r".to_string(),
        file.display().to_string(),
        "-T".into(),
        "fields".into(),
        "-E".into(),
        "separator=|".into(),
        "-E".into(),
        "occurrence=a".into(),
    ];
    for f in fields {
        args.extend(["-e".to_string(), f.to_string()]);
    }
    let o = Command::new("tshark").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            l.split('|')
                .map(|f| if f.is_empty() { vec![] } else { f.split(',').map(str::to_string).collect() })
                .collect()
        })
        .collect()
}

/// A tshark number, decimal or 0x-hex.
fn num(s: &str) -> u64 {
    s.strip_prefix("0x").map_or_else(|| s.parse().unwrap(), |h| u64::from_str_radix(h, 16).unwrap())
}

const TSHARK: &[&str] = &[
    "frame.number",
    "frame.len",
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "tcp.srcport",
    "udp.srcport",
    "tcp.dstport",
    "udp.dstport",
    "icmp.type",
    "icmpv6.type",
    "vlan.id",
    "ieee8021ad.id",
    "vlan.etype",
    "mpls.label",
    "arp.opcode",
    "ip.proto",
    "ipv6.nxt",
];

/// Every frame of `file` as sockql reads it equals tshark's reading:
/// addresses, ports, ICMP type, protocol, VLAN tags, MPLS label and the
/// EtherType of the network header. Rows `skip` picks are left out
/// (what tshark decodes and sockql notes as not decoded). Returns our rows.
fn equals_tshark(file: &Path, skip: &dyn Fn(&Value) -> bool) -> Vec<Value> {
    let ours = rows(file);
    let theirs = tshark_fields(file, TSHARK);
    assert_eq!(ours.len(), theirs.len(), "{}", file.display());
    for (o, t) in ours.iter().zip(&theirs) {
        let first = |i: usize| t[i].first().cloned();
        let frame = num(&first(0).unwrap());
        assert_eq!(o["frame"], json!(frame));
        assert_eq!(o["length"], json!(num(&first(1).unwrap())), "frame {frame}");
        if skip(o) {
            continue;
        }
        let text = |a: usize, b: usize| first(a).or(first(b)).map_or(Value::Null, Value::from);
        let n = |a: usize, b: usize| first(a).or(first(b)).map_or(Value::Null, |s| json!(num(&s)));
        let icmp = first(10).is_some() || first(11).is_some();
        let tags: Vec<&String> = t[13].iter().chain(&t[12]).collect();
        let outer = if tags.len() > 1 { json!(num(tags[0])) } else { Value::Null };
        let expect = json!({
            "src_addr": text(2, 3), "dst_addr": text(4, 5),
            // An ICMP error quotes a datagram: tshark shows its ports, the
            // row's transport is ICMP.
            "src_port": if icmp { Value::Null } else { n(6, 7) }, "dst_port": if icmp { Value::Null } else { n(8, 9) }, "icmp_type": n(10, 11),
            // The outer 802.1ad tag, then the 802.1Q ones, as on the wire.
            "vlan_id": t[13].iter().chain(&t[12]).last().map_or(Value::Null, |s| json!(num(s))),
            "outer_vlan_id": outer,
            "mpls_label": n(15, 15),
            // The transport header's protocol (ipv6.nxt may name an
            // extension header before it).
            "ip_protocol": if icmp { json!(if first(10).is_some() { 1 } else { 58 }) } else if first(6).is_some() { json!(6) } else if first(7).is_some() { json!(17) } else { n(17, 18) },
            // The network header's: IP's version, ARP, else the last tag's.
            "ether_type": if first(2).is_some() { json!(0x0800) } else if first(3).is_some() { json!(0x86dd) } else if first(16).is_some() { json!(0x0806) } else { t[14].last().map_or(o["ether_type"].clone(), |s| json!(num(s))) },
        });
        for (c, v) in expect.as_object().unwrap() {
            assert_eq!(&o[c.as_str()], v, "{} frame {frame} column {c}: ours {o}\ntshark {t:?}", file.display());
        }
    }
    ours
}

fn rows(file: &Path) -> Vec<Value> {
    let sql = format!(
        "SELECT frame, length, src_addr, dst_addr, src_port, dst_port, icmp_type, vlan_id, outer_vlan_id, mpls_label, ether_type, \
         CASE protocol WHEN 'tcp' THEN 6 WHEN 'udp' THEN 17 WHEN 'icmp' THEN 1 WHEN 'icmpv6' THEN 58 ELSE CAST(protocol AS INT) END AS ip_protocol \
         FROM read_pcap('{}') ORDER BY frame",
        file.display()
    );
    let (out, err, ok) = run(&["--format", "ndjson", &sql]);
    assert!(ok, "{err}");
    parse_ndjson(&out)
}

/// One frame as tcpdump prints it: VLAN IDs, MPLS labels, (source, destination).
type TcpdumpFrame = (Vec<u64>, Vec<u64>, Option<(String, String)>);

/// tcpdump's reading of every frame: with -e the VLAN IDs in order
/// (outer first) and the MPLS labels; without, the addresses (with ports)
/// it prints after "IP" or "IP6".
fn tcpdump_frames(file: &Path) -> Vec<TcpdumpFrame> {
    let lines = |e: bool| -> Vec<String> {
        let mut args = vec!["-nn", "-r", file.to_str().unwrap()];
        if e {
            args.insert(0, "-e");
        }
        let o = Command::new("tcpdump").args(&args).stderr(Stdio::null()).output().unwrap();
        // Hex dumps of what it does not decode go on indented lines.
        String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.starts_with('\t')).map(str::to_string).collect()
    };
    let (with_e, plain) = (lines(true), lines(false));
    assert_eq!(with_e.len(), plain.len());
    with_e
        .iter()
        .zip(&plain)
        .map(|(le, l)| {
            let after = |key: &str| -> Vec<u64> {
                le.split(key)
                    .skip(1)
                    .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
                    .collect()
            };
            // "IP 10.0.0.1.1234 > 10.0.0.2.53:" or "IP6 fd00::1.4321 > fd00::2.80:"
            let addrs = l.split(" IP6 ").nth(1).or_else(|| l.split(" IP ").nth(1)).and_then(|r| {
                let mut w = r.split_whitespace();
                let (src, gt, dst) = (w.next()?, w.next()?, w.next()?);
                (gt == ">").then(|| (src.to_string(), dst.trim_end_matches(':').to_string()))
            });
            (after("vlan "), after("MPLS (label "), addrs)
        })
        .collect()
}

/// "addr.port" as tcpdump prints an endpoint (port only for TCP/UDP).
fn endpoint(r: &Value, addr: &str, port: &str) -> String {
    match r[port].as_u64() {
        Some(p) => format!("{}.{p}", r[addr].as_str().unwrap()),
        None => r[addr].as_str().unwrap().to_string(),
    }
}

/// Our rows equal tcpdump's reading, frame by frame (but for `skip`).
fn equals_tcpdump(file: &Path, ours: &[Value], skip: &dyn Fn(&Value) -> bool) {
    let td = tcpdump_frames(file);
    assert_eq!(td.len(), ours.len(), "{}", file.display());
    for (o, (vlans, labels, addrs)) in ours.iter().zip(&td) {
        if skip(o) {
            continue;
        }
        let mut tags: Vec<u64> = o["outer_vlan_id"].as_u64().into_iter().collect();
        tags.extend(o["vlan_id"].as_u64());
        assert_eq!(&tags, vlans, "{} frame {}: {o}", file.display(), o["frame"]);
        if let Some(top) = labels.first() {
            assert_eq!(o["mpls_label"], json!(top), "frame {}", o["frame"]);
        }
        if let Some((src, dst)) = addrs {
            assert_eq!(
                (&endpoint(o, "src_addr", "src_port"), &endpoint(o, "dst_addr", "dst_port")),
                (src, dst),
                "{} frame {}",
                file.display(),
                o["frame"]
            );
        }
    }
}

/// tcpdump writing what `dev` in `ns` sees to `file`, with link type
/// `linktype` when given (-y), until stopped.
struct Tcpdump(std::process::Child);

/// A test that fails mid-way leaves no tcpdump running.
impl Drop for Tcpdump {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let _ = self.0.wait();
        }
    }
}

impl Tcpdump {
    fn start(ns: &Netns, dev: &str, linktype: Option<&str>, file: &Path) -> Tcpdump {
        let mut args = vec!["netns", "exec", &ns.name, "tcpdump", "-i", dev, "-U", "-w", file.to_str().unwrap()];
        if let Some(l) = linktype {
            args.extend(["-y", l]);
        }
        let (child, err) = spawn_until(Command::new("ip").args(&args), "listening on");
        drain(err);
        Tcpdump(child)
    }

    /// Stop once the file holds `n` frames (tshark counts them).
    fn stop_at(self, file: &Path, n: usize) {
        self.stop_once(file, None, n)
    }

    /// Stop once the file holds a frame tshark's `filter` matches.
    fn stop_when(self, file: &Path, filter: &str) {
        self.stop_once(file, Some(filter), 1)
    }

    fn stop_once(self, file: &Path, filter: Option<&str>, n: usize) {
        eventually(WAIT, || {
            let mut args = vec!["-r", file.to_str().unwrap(), "-T", "fields", "-e", "frame.number"];
            args.extend(filter.map(|f| ["-Y", f]).into_iter().flatten());
            let o = Command::new("tshark").args(&args).stderr(Stdio::null()).output().unwrap();
            (String::from_utf8_lossy(&o.stdout).lines().count() >= n).then_some(())
        });
        // SIGINT: tcpdump flushes and closes the file (see Drop).
        drop(self);
    }
}

/// A pcap file (microseconds, little-endian) of `frames`, one second apart.
fn write_pcap(path: &Path, linktype: u32, frames: &[Vec<u8>]) {
    let mut b = Vec::new();
    for v in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 262_144, linktype] {
        b.extend(v.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for v in [1_700_000_000 + i as u32, 0, f.len() as u32, f.len() as u32] {
            b.extend(v.to_le_bytes());
        }
        b.extend(f);
    }
    std::fs::write(path, b).unwrap();
}

fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let payload = b"hello";
    let total = 20 + 8 + payload.len() as u16;
    let mut p = vec![0x45, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 7, 0, 0, 64, 17, 0, 0]);
    p.extend(src);
    p.extend(dst);
    p.extend(sport.to_be_bytes());
    p.extend(dport.to_be_bytes());
    p.extend((8 + payload.len() as u16).to_be_bytes());
    p.extend([0, 0]);
    p.extend(payload);
    p
}

fn ipv6_tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 20, 6, 63];
    p.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend(sport.to_be_bytes());
    p.extend(dport.to_be_bytes());
    p.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x03, 0xe8, 0, 0, 0, 0]);
    p
}

fn eth(ether_type: u16) -> Vec<u8> {
    // Broadcast, from a locally administered address.
    let mut f = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1];
    f.extend(ether_type.to_be_bytes());
    f
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// One MPLS label stack entry: label, bottom-of-stack, TTL 64.
fn label(l: u32, bottom: bool) -> [u8; 4] {
    ((l << 12) | if bottom { 0x100 } else { 0 } | 64).to_be_bytes()
}

fn pppoe(len: u16) -> Vec<u8> {
    let mut h = vec![0x11, 0, 0x12, 0x34];
    h.extend(len.to_be_bytes());
    h
}

/// sockql's stderr for a whole read of `file`.
fn stderr_of(file: &Path) -> String {
    let (_, err, ok) = run(&["--format", "csv", &format!("SELECT count(*) FROM read_pcap('{}')", file.display())]);
    assert!(ok, "{err}");
    err
}

/// Send `frames` as they are out of `dev` in `ns` (an AF_PACKET socket).
fn send_frames(ns: &Netns, dev: &str, frames: Vec<Vec<u8>>) {
    let dev = std::ffi::CString::new(dev).unwrap();
    ns.enter(move || {
        // SAFETY: a socket of our own, a zeroed sockaddr_ll filled here,
        // and buffers that outlive each call.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            let mut to: libc::sockaddr_ll = std::mem::zeroed();
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_ifindex = libc::if_nametoindex(dev.as_ptr()) as i32;
            to.sll_halen = 6;
            for f in &frames {
                let sent = libc::sendto(
                    fd,
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    (&to as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(sent, f.len() as isize, "{}", std::io::Error::last_os_error());
            }
            libc::close(fd);
        }
    });
}

/// The pseudowire frame: tshark decodes the Ethernet inside, sockql notes it.
fn pseudowire(o: &Value) -> bool {
    o["mpls_label"] == json!(16)
}

#[test]
fn tagged_and_encapsulated_frames_captured_on_a_veth_read_as_tshark_and_tcpdump_read_them() {
    require_root();
    // This kernel has neither 8021q, bridge VLAN filtering nor MPLS
    // routing to make these frames: they are sent as bytes on a veth and
    // captured at its peer by tcpdump, as Ethernet and as Linux cooked v1
    // and v2 (libpcap puts back the tag the kernel took off on receive).
    let (a, b) = (Netns::new("linkA"), Netns::new("linkB"));
    let (va, vb) = link(&a, &b, 0);
    let dir = Scratch::new("pcap-link-veth");
    let files = [dir.0.join("eth.pcap"), dir.0.join("sll2.pcap"), dir.0.join("sll.pcap")];
    let caps = [
        Tcpdump::start(&b, &vb, None, &files[0]),
        Tcpdump::start(&b, "any", None, &files[1]),
        Tcpdump::start(&b, "any", Some("LINUX_SLL"), &files[2]),
    ];
    let (frames, _) = crafted_ethernet();
    let sent = frames.len();
    send_frames(&a, &va, frames);
    for (cap, file) in caps.into_iter().zip(&files) {
        // The pseudowire goes last.
        cap.stop_when(file, "mpls.label == 16");
        let ours = equals_tshark(file, &pseudowire);
        // tcpdump prints the bytes of an 802.1ad tag in a cooked capture
        // where tshark (and sockql) read the tag.
        let cooked_qinq = |o: &Value| file != &files[0] && o["vlan_id"] == json!(100);
        equals_tcpdump(file, &ours, &|o| pseudowire(o) || cooked_qinq(o));
        assert!(ours.len() >= sent, "{}: {ours:?}", file.display());
        let r = |sql: &str| rows_where(file, sql);
        let f = file.display();
        // Untagged encapsulations read alike in the three link types.
        assert_eq!(r("mpls_label = 1000 AND dst_port = 53 AND ether_type = 2048 AND vlan_id IS NULL"), 1, "{f}");
        assert_eq!(r("mpls_label = 2 AND dst_port = 81 AND ether_type = 34525"), 1, "{f}");
        assert_eq!(r("mpls_label IS NULL AND vlan_id IS NULL AND dst_port IN (56, 82, 57)"), 3, "{f}");
        if file == &files[0] {
            assert_eq!(r("vlan_id = 10 AND outer_vlan_id IS NULL AND dst_port = 5353 AND ether_type = 2048 AND src_addr = '10.0.0.1'"), 1, "{f}");
            assert_eq!(r("vlan_id = 20 AND outer_vlan_id = 100 AND dst_port = 80 AND ether_type = 34525"), 1, "{f}");
            assert_eq!(r("vlan_id = 200 AND outer_vlan_id = 100 AND dst_port = 5354"), 1, "{f}");
            assert_eq!(r("vlan_id = 5 AND ether_type = 2054 AND src_addr IS NULL"), 1, "{f}");
            assert_eq!(r("mpls_label = 77 AND vlan_id = 30 AND dst_port = 55"), 1, "{f}");
        } else {
            // libpcap puts the tag the kernel took off back into cooked v1
            // (inner tags of QinQ come out mangled, for tshark as for us),
            // not into v2: there VLAN 10's datagram is plain IPv4.
            let tag = if file == &files[2] { "vlan_id = 10" } else { "vlan_id IS NULL" };
            assert_eq!(r(&format!("{tag} AND dst_port = 5353 AND ether_type = 2048")), 1, "{f}");
        }
        // The undecoded ones are said once, in one line.
        let err = stderr_of(file);
        let notes: Vec<&str> = err.lines().filter(|l| l.contains("not decoded")).collect();
        assert_eq!(notes.len(), 1, "{f}: {err}");
        assert!(
            notes[0].contains("6 packets not decoded")
                && notes[0].contains("EtherType 0x8863 (PPPoE discovery): 1")
                && notes[0].contains("pseudowires): 1"),
            "{f}: {err}"
        );
    }
}

fn rows_where(file: &Path, cond: &str) -> i64 {
    let (out, err, ok) = run(&[
        "--format",
        "csv",
        "--no-header",
        &format!("SELECT count(*) FROM read_pcap('{}') WHERE {cond}", file.display()),
    ]);
    assert!(ok, "{err}");
    out.trim().parse().unwrap()
}

#[test]
fn nflog_captured_from_an_nftables_rule_reads_as_tshark_reads_it() {
    require_root();
    assert!(have("nft"), "nft is needed for this test");
    let ns = Netns::new("nflog");
    let group = (std::process::id() % 60_000 + 1).to_string();
    ns.exec_ok("nft", &["add", "table", "inet", "sockqlt"]);
    ns.exec_ok("nft", &["add", "chain", "inet", "sockqlt", "out", "{ type filter hook output priority 0; }"]);
    ns.exec_ok("nft", &["add", "rule", "inet", "sockqlt", "out", "udp", "dport", "9999", "log", "group", &group]);
    ns.exec_ok("nft", &["add", "rule", "inet", "sockqlt", "out", "tcp", "dport", "9998", "log", "group", &group]);
    let dir = Scratch::new("pcap-link-nflog");
    let file = dir.0.join("nflog.pcap");
    let cap = Tcpdump::start(&ns, &format!("nflog:{group}"), None, &file);
    ns.enter(|| {
        let r4 = std::net::UdpSocket::bind("127.0.0.1:9999").unwrap();
        let r6 = std::net::UdpSocket::bind("[::1]:9999").unwrap();
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap().send_to(b"four", "127.0.0.1:9999").unwrap();
        std::net::UdpSocket::bind("[::1]:0").unwrap().send_to(b"six", "[::1]:9999").unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:9998").unwrap();
        drop(std::net::TcpStream::connect("127.0.0.1:9998").unwrap());
        drop((r4, r6, l));
    });
    // Two datagrams, the SYN, the ACK, and the FIN at least.
    cap.stop_at(&file, 4);
    let ours = equals_tshark(&file, &|_| false);
    equals_tcpdump(&file, &ours, &|_| false);
    let o = Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-T", "fields", "-e", "frame.protocols"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).lines().all(|l| l.starts_with("nflog:")), "an NFLOG capture");
    assert_eq!(rows_where(&file, "src_addr = '127.0.0.1' AND dst_port = 9999 AND ether_type = 2048"), 1);
    assert_eq!(rows_where(&file, "src_addr = '::1' AND dst_port = 9999 AND ether_type = 34525"), 1);
    assert!(rows_where(&file, "protocol = 'tcp' AND dst_port = 9998") >= 2);
    let err = stderr_of(&file);
    assert!(!err.contains("not decoded"), "{err}");
}

/// The crafted frames on Ethernet: MPLS, PPPoE, double 802.1Q tags, and
/// what is not decoded. Returns the frames and the frame numbers that are
/// not decoded.
fn crafted_ethernet() -> (Vec<Vec<u8>>, Vec<u64>) {
    let v4 = |port: u16| ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1234, port);
    let v6 = |port: u16| ipv6_tcp_syn(4321, port);
    let frames = vec![
        // 1: VLAN 10.
        cat(&[&eth(0x8100), &[0, 10, 0x08, 0x00], &v4(5353)]),
        // 2: QinQ: service VLAN 100 (802.1ad) around customer VLAN 20.
        cat(&[&eth(0x88a8), &[0, 100, 0x81, 0x00, 0x20, 20, 0x86, 0xdd], &v6(80)]),
        // 3: two 802.1Q tags (old-style QinQ), 100 outside 200.
        cat(&[&eth(0x8100), &[0, 100, 0x81, 0x00, 0, 200, 0x08, 0x00], &v4(5354)]),
        // 4: ARP in VLAN 5 (ether_type only, not noted).
        cat(&[&eth(0x8100), &[0, 5, 0x08, 0x06], &[0, 1, 8, 0, 6, 4, 0, 1], &[0; 20]]),
        // 5: MPLS, two labels, IPv4 told by its first nibble.
        cat(&[&eth(0x8847), &label(1000, false), &label(2000, true), &v4(53)]),
        // 6: MPLS IPv6 explicit null.
        cat(&[&eth(0x8847), &label(2, true), &v6(81)]),
        // 7: VLAN 30 around MPLS.
        cat(&[&eth(0x8100), &[0, 30, 0x88, 0x47], &label(77, true), &v4(55)]),
        // 8, 9: PPPoE sessions, IPv4 and IPv6.
        cat(&[&eth(0x8864), &pppoe(2 + v4(56).len() as u16), &[0x00, 0x21], &v4(56)]),
        cat(&[&eth(0x8864), &pppoe(2 + v6(82).len() as u16), &[0x00, 0x57], &v6(82)]),
        // 10: PPP's compressed protocol field.
        cat(&[&eth(0x8864), &pppoe(1 + v4(57).len() as u16), &[0x21], &v4(57)]),
        // Not decoded: 11 PPP LCP, 12 PPPoE discovery, 13 LLDP, 14 and 15
        // STP (802.3 with LLC), 16 Ethernet over MPLS (a pseudowire), last.
        cat(&[&eth(0x8864), &pppoe(6), &[0xc0, 0x21, 1, 1, 0, 4]]),
        cat(&[&eth(0x8863), &[0x11, 0x09, 0, 0, 0, 0]]),
        cat(&[&eth(0x88cc), &[0; 20]]),
        cat(&[&eth(0x0026), &[0x42, 0x42, 0x03], &[0; 35]]),
        cat(&[&eth(0x0026), &[0x42, 0x42, 0x03], &[0; 35]]),
        cat(&[&eth(0x8847), &label(16, true), &[0, 0, 0, 0], &eth(0x0800), &v4(58)]),
    ];
    (frames, vec![11, 12, 13, 14, 15, 16])
}

#[test]
fn mpls_pppoe_and_raw_links_read_as_tshark_and_undecoded_ones_are_noted_once_per_file() {
    let dir = Scratch::new("pcap-link-crafted");
    let (frames, undecoded) = crafted_ethernet();
    let file = dir.0.join("eth.pcap");
    write_pcap(&file, 1, &frames);
    // tshark decodes the pseudowire to its IP; sockql notes it.
    let ours = equals_tshark(&file, &pseudowire);
    equals_tcpdump(&file, &ours, &pseudowire);
    let at = |frame: usize| &ours[frame - 1];
    let cols = |frame: usize, cols: &[&str]| cols.iter().map(|c| at(frame)[*c].clone()).collect::<Vec<_>>();
    let ids = ["vlan_id", "outer_vlan_id", "mpls_label", "ether_type", "dst_port"];
    assert_eq!(cols(1, &ids), [json!(10), Value::Null, Value::Null, json!(0x0800), json!(5353)]);
    assert_eq!(cols(2, &ids), [json!(20), json!(100), Value::Null, json!(0x86dd), json!(80)]);
    assert_eq!(cols(3, &ids), [json!(200), json!(100), Value::Null, json!(0x0800), json!(5354)]);
    assert_eq!(cols(4, &ids), [json!(5), Value::Null, Value::Null, json!(0x0806), Value::Null]);
    assert_eq!(cols(5, &ids), [Value::Null, Value::Null, json!(1000), json!(0x0800), json!(53)]);
    assert_eq!(cols(6, &ids), [Value::Null, Value::Null, json!(2), json!(0x86dd), json!(81)]);
    assert_eq!(cols(7, &ids), [json!(30), Value::Null, json!(77), json!(0x0800), json!(55)]);
    assert_eq!(cols(9, &["ether_type", "src_addr", "dst_port"]), [json!(0x86dd), json!("fd00::1"), json!(82)]);
    assert_eq!(cols(10, &["ether_type", "src_addr", "dst_port"]), [json!(0x0800), json!("10.0.0.1"), json!(57)]);
    // What is not decoded keeps frame, time and lengths, and the
    // EtherType it stopped at, no addresses.
    for f in &undecoded {
        let r = at(*f as usize);
        assert!(r["src_addr"].is_null() && r["length"].is_u64(), "{r}");
    }
    assert_eq!(cols(11, &["ether_type"]), [json!(0x8864)]);
    assert_eq!(cols(12, &["ether_type"]), [json!(0x8863)]);
    assert_eq!(cols(14, &["ether_type"]), [Value::Null]);
    // Said once for the file, every kind with its count, not per packet.
    let err = stderr_of(&file);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("not decoded")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    let expected = format!(
        "sockql: note: {}: 6 packets not decoded past the link layer (their rows have frame, time and lengths only): \
         PPP protocol 0xc021 (LCP) in PPPoE sessions: 1; EtherType 0x8863 (PPPoE discovery): 1; EtherType 0x88cc (LLDP): 1; \
         IEEE 802.3 frames with LLC (STP, CDP, ...): 2; MPLS payloads that are not IP (pseudowires): 1",
        file.display()
    );
    assert_eq!(notes[0], expected);
    // A query reading it twice (two scans) still says it once; a second
    // file says its own.
    let other = dir.0.join("wifi.pcap");
    write_pcap(&other, 105, &[vec![0x08, 0x02, 0, 0], vec![0x80, 0, 0, 0, 1]]);
    let sql = format!(
        "SELECT count(*) FROM read_pcap('{f}') a JOIN read_pcap('{f}') b ON a.frame = b.frame UNION ALL SELECT count(*) FROM read_pcap('{o}')",
        f = file.display(),
        o = other.display()
    );
    let (_, err, ok) = run(&["--format", "csv", &sql]);
    assert!(ok, "{err}");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("not decoded")).collect();
    assert_eq!(notes.len(), 2, "{err}");
    assert!(notes.contains(&expected.as_str()), "{err}");
    assert!(notes.contains(&format!("sockql: note: {}: 2 packets not decoded past the link layer (their rows have frame, time and lengths only): link type IEEE802_11 (105): 2", other.display()).as_str()), "{err}");
    let wifi = rows(&other);
    assert_eq!(
        wifi.iter().map(|r| (r["frame"].clone(), r["length"].clone(), r["src_addr"].clone())).collect::<Vec<_>>(),
        [(json!(1), json!(4), Value::Null), (json!(2), json!(5), Value::Null)]
    );

    // IP with no link header, or BSD loopback's: as tshark reads them.
    let v4 = ipv4_udp([192, 0, 2, 1], [192, 0, 2, 2], 40000, 7);
    let v6 = ipv6_tcp_syn(5555, 443);
    let raw = [(101, vec![v4.clone(), v6.clone()]), (228, vec![v4.clone()]), (229, vec![v6.clone()])];
    let null = [
        (
            0,
            vec![
                cat(&[&2u32.to_le_bytes(), &v4]),
                cat(&[&28u32.to_le_bytes(), &v6]),
                cat(&[&30u32.to_le_bytes(), &v6]),
            ],
        ),
        (108, vec![cat(&[&2u32.to_be_bytes(), &v4]), cat(&[&24u32.to_be_bytes(), &v6])]),
    ];
    for (linktype, frames) in raw.iter().chain(&null) {
        let f = dir.0.join(format!("lt{linktype}.pcap"));
        write_pcap(&f, *linktype, frames);
        let ours = equals_tshark(&f, &|_| false);
        assert!(
            ours.iter().all(|r| r["src_addr"].is_string() && r["src_port"].is_u64()),
            "link type {linktype}: {ours:?}"
        );
        assert!(!stderr_of(&f).contains("not decoded"));
    }
}

#[test]
fn schema_read_pcap_lists_its_columns() {
    let columns = |what: &str| {
        let (out, err, ok) = run(&["--format", "csv", "schema", what]);
        assert!(ok, "{what}: {err}");
        out
    };
    let pcap = columns("read_pcap");
    // packets' columns but the live capture's holders, which a file has none of.
    let live_only = ["src_pid,", "src_process,", "dst_pid,", "dst_process,"];
    let packets: String = columns("packets")
        .lines()
        .filter(|l| !live_only.iter().any(|c| l.starts_with(c)))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(columns("packets").lines().count(), packets.lines().count() + live_only.len());
    assert_eq!(pcap, packets);
    assert!(pcap.lines().any(|l| l.starts_with("vlan_id,UInt16,true,")), "{pcap}");
    assert!(pcap.lines().any(|l| l.starts_with("ether_type,UInt16,true,\"EtherType of the network header")), "{pcap}");
}
