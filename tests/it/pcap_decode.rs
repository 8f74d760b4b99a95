//! IP and TCP headers read as tshark 4.0 and tcpdump 4.99 read them, on
//! captures this test makes: BIG TCP super-packets sent over a veth pair
//! (IPv4 total length 0, IPv6 jumbograms), TCP options after a kind sockql
//! does not know, every TCP flag byte, first fragments of real fragmented
//! datagrams, and the SACK blocks of a transfer that loses segments. Each
//! file is read by sockql, tshark and tcpdump and compared frame by frame.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;
use crate::conntrack::NftExt;
use crate::netns::{link, Netns};
use crate::pcap::{analysis_equals_tshark, Capture};

// ---- crafted packets ------------------------------------------------------

/// A pcap file (Ethernet) of `frames`: the bytes kept and the length on the wire.
fn write_pcap(path: &std::path::Path, frames: &[(Vec<u8>, u32)]) {
    let mut f = Vec::new();
    for v in [
        0xa1b2_c3d4u32.to_le_bytes().as_slice(),
        &2u16.to_le_bytes(),
        &4u16.to_le_bytes(),
        &[0; 8],
        &262_144u32.to_le_bytes(),
        &1u32.to_le_bytes(),
    ] {
        f.extend_from_slice(v);
    }
    for (i, (data, wire)) in frames.iter().enumerate() {
        f.extend((1000 + i as u32).to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend((data.len() as u32).to_le_bytes());
        f.extend(wire.to_le_bytes());
        f.extend(data);
    }
    std::fs::write(path, f).unwrap();
}

fn eth(ether_type: u16) -> Vec<u8> {
    let mut e = vec![0u8; 12];
    e.extend(ether_type.to_be_bytes());
    e
}

/// A TCP header from port 40000 to 5001 with `opts` (padded with NOPs).
fn tcp(flags: u8, seq: u32, ack: u32, window: u16, opts: &[u8]) -> Vec<u8> {
    let mut o = opts.to_vec();
    while !o.len().is_multiple_of(4) {
        o.push(1);
    }
    let mut t = Vec::new();
    t.extend(40000u16.to_be_bytes());
    t.extend(5001u16.to_be_bytes());
    t.extend(seq.to_be_bytes());
    t.extend(ack.to_be_bytes());
    t.push(((5 + o.len() / 4) as u8) << 4);
    t.push(flags);
    t.extend(window.to_be_bytes());
    t.extend([0, 0, 0, 0]);
    t.extend(o);
    t
}

/// Ethernet + IPv4 10.0.0.1 > 10.0.0.2 (TCP, DF) with `total_len` as given.
fn ip4(total_len: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = eth(0x0800);
    p.extend([0x45, 0]);
    p.extend(total_len.to_be_bytes());
    p.extend([0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend(payload);
    p
}

/// Ethernet + IPv6 fd00::1 > fd00::2 with `plen` and next header `nh`.
fn ip6(plen: u16, nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = eth(0x86dd);
    p.extend([0x60, 0, 0, 0]);
    p.extend(plen.to_be_bytes());
    p.extend([nh, 64]);
    p.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend(payload);
    p
}

// ---- the reference tools --------------------------------------------------

/// tshark's `fields` of every frame of `file`, with `opts` (-o ...):
/// several occurrences joined by a space.
fn tshark(file: &str, opts: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    assert!(have("tshark"), "tshark is needed for this test");
    let mut args = vec!["-r", file, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator= "];
    for o in opts {
        args.extend(["-o", o]);
    }
    for f in fields {
        args.extend(["-e", f]);
    }
    let o = Command::new("tshark").args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| l.split('|').map(str::to_string).collect()).collect()
}

/// tcpdump -nn's line for every frame.
fn tcpdump(file: &str) -> Vec<String> {
    assert!(have("tcpdump"), "tcpdump is needed for this test");
    let o = Command::new("tcpdump").args(["-nn", "-r", file]).stderr(Stdio::null()).output().unwrap();
    String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()
}

/// sockql's rows of `file`, `cols` of every frame in order.
fn ours(file: &str, cols: &str) -> Vec<Value> {
    let (out, err, ok) =
        run(&["--format", "ndjson", &format!("SELECT {cols} FROM read_pcap('{file}') ORDER BY frame")]);
    assert!(ok, "{err}");
    parse_ndjson(&out)
}

/// A column as tshark prints it: numbers as digits, null as empty.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The number at the end of a tcpdump line's "length N".
fn tcpdump_length(line: &str) -> Option<u64> {
    line.rsplit_once("length ").and_then(|(_, n)| n.trim().parse().ok())
}

// ---- BIG TCP --------------------------------------------------------------

/// Two namespaces joined by a veth pair, BIG TCP on both ends (185000
/// bytes for IPv6 and IPv4; iproute2 6.1 has no gso_ipv4_max_size, so
/// that one is set over rtnetlink from python), IPv6 addresses added.
fn big_tcp_pair(net: u8) -> (Netns, Netns, String) {
    let (a, b) = (Netns::new("bigA"), Netns::new("bigB"));
    let (va, vb) = link(&a, &b, net);
    const SET_IPV4_GSO: &str = r#"
import socket, struct, sys
idx = socket.if_nametoindex(sys.argv[1])
# IFLA_GSO_IPV4_MAX_SIZE (63), IFLA_GRO_IPV4_MAX_SIZE (64)
attrs = b"".join(struct.pack("=HHI", 8, t, int(sys.argv[2])) for t in (63, 64))
body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, idx, 0, 0) + attrs
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.send(struct.pack("=IHHII", 16 + len(body), 16, 0x5, 1, 0) + body)  # RTM_NEWLINK, REQUEST|ACK
sys.exit(struct.unpack("=i", s.recv(4096)[16:20])[0] != 0)
"#;
    for (ns, dev, addr) in [(&a, &va, "fd70::1/64"), (&b, &vb, "fd70::2/64")] {
        ns.exec_ok("ip", &["link", "set", "dev", dev, "gso_max_size", "185000", "gro_max_size", "185000"]);
        ns.exec_ok("/usr/bin/python3", &["-c", SET_IPV4_GSO, dev, "185000"]);
        ns.exec_ok("ip", &["addr", "add", addr, "dev", dev, "nodad"]);
        let d = ns.exec_ok("ip", &["-d", "link", "show", dev]);
        assert!(d.contains("gso_max_size 185000") && d.contains("gro_max_size 185000"), "{d}");
    }
    (a, b, va)
}

/// Send `bytes` from `a` to `addr` in b (a listener bound there) in 1 MB writes.
fn bulk(a: &Netns, b: &Netns, addr: &str, bytes: usize) {
    use std::io::{Read, Write};
    let addr = addr.to_string();
    let l = b.enter(move || std::net::TcpListener::bind(addr).unwrap());
    let to = l.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        got
    });
    a.enter(move || {
        let mut c = std::net::TcpStream::connect(to).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..bytes / chunk.len() {
            c.write_all(&chunk).unwrap();
        }
    });
    assert_eq!(reader.join().unwrap(), bytes / (1 << 20) * (1 << 20));
}

/// Every TCP frame's payload_length, rel_seq, next sequence, dup_ack,
/// retransmission and ack_rtt_ms equal tshark's tcp.len, tcp.seq,
/// tcp.nxtseq and analysis; returns the largest payload_length.
fn tcp_lengths_equal_tshark(file: &str) -> u64 {
    let t = tshark(file, &[], &["frame.number", "tcp.len", "tcp.seq", "tcp.nxtseq", "tcp.ack"]);
    let o = ours(file, "frame, payload_length, rel_seq, rel_ack, syn, fin, ack");
    assert_eq!(o.len(), t.len());
    let mut largest = 0;
    for (o, t) in o.iter().zip(&t) {
        if t[1].is_empty() {
            continue;
        }
        let frame = &o["frame"];
        assert_eq!(text(&o["payload_length"]), t[1], "frame {frame}: payload_length vs tcp.len");
        assert_eq!(text(&o["rel_seq"]), t[2], "frame {frame}: rel_seq vs tcp.seq");
        let len = o["payload_length"].as_u64().unwrap();
        let synfin = (o["syn"] == json!(true) || o["fin"] == json!(true)) as u64;
        assert_eq!(
            (o["rel_seq"].as_u64().unwrap() + len + synfin).to_string(),
            t[3],
            "frame {frame}: next seq vs tcp.nxtseq"
        );
        if o["ack"] == json!(true) {
            assert_eq!(text(&o["rel_ack"]), t[4], "frame {frame}: rel_ack");
        }
        largest = largest.max(len);
    }
    // dup_ack, retransmissions, ack_rtt_ms (values too): frame for frame.
    analysis_equals_tshark(file);
    largest
}

#[test]
fn big_tcp_real_capture_lengths_and_analysis_equal_tshark() {
    let (a, b, va) = big_tcp_pair(70);
    let dir = Scratch::new("bigtcp");
    for (family, to) in [("v4", "10.231.70.2:0"), ("v6", "[fd70::2]:0")] {
        let file = dir.0.join(format!("big{family}.pcap"));
        let cap = Capture::start_on(&a, &va, &file);
        bulk(&a, &b, to, 24 << 20);
        cap.stop();
        let f = file.to_str().unwrap();
        let largest = tcp_lengths_equal_tshark(f);
        // GSO handed tcpdump super-packets over 64 KB: the case at stake.
        assert!(largest > 65535, "{family}: no BIG TCP packet in the capture (largest {largest})");
        // tcpdump: its "length N" for every TCP frame it decodes. For IPv4
        // with total length 0, tcpdump 4.99 (built without GUESS_TSO)
        // prints "bad-len 0" and no TCP; sockql follows tshark there.
        let lines = tcpdump(f);
        let rows = ours(f, "frame, protocol, payload_length");
        assert_eq!(lines.len(), rows.len());
        let mut bad_len = 0;
        for (line, r) in lines.iter().zip(&rows) {
            if r["protocol"] != json!("tcp") {
                continue;
            }
            if line.ends_with("IP bad-len 0") {
                assert_eq!(family, "v4", "{line}");
                assert!(r["payload_length"].as_u64().unwrap() > 65535 - 40, "frame {}: {line}", r["frame"]);
                bad_len += 1;
            } else {
                assert_eq!(tcpdump_length(line), r["payload_length"].as_u64(), "frame {}: {line}", r["frame"]);
            }
        }
        if family == "v6" {
            // The kernel inserts the jumbo option, and tcpdump reads it.
            let jumbo = tshark(f, &[], &["ipv6.opt.jumbo"]);
            assert!(
                jumbo.iter().any(|j| j[0].parse::<u64>().is_ok_and(|l| l > 65535)),
                "no jumbogram in the v6 capture"
            );
            assert!(
                lines.iter().any(|l| l.contains(": HBH ") && tcpdump_length(l).is_some_and(|l| l > 65535)),
                "no jumbogram in tcpdump's lines"
            );
        } else {
            assert!(bad_len > 0, "no IPv4 packet with total length 0");
        }
    }
}

#[test]
fn big_tcp_crafted_jumbogram_and_tso_lengths_equal_tshark() {
    let dir = Scratch::new("bigcraft");
    let file = dir.0.join("big.pcap");
    let t = tcp(0x18, 1000, 1, 100, &[]);
    let n = 131_072u32;
    let mut frames = Vec::new();
    // IPv4 total length 0: tshark takes the frame's length.
    let p = ip4(0, &t);
    frames.push((p.clone(), p.len() as u32 + n));
    // An IPv6 jumbogram: payload length 0, hop-by-hop Jumbo Payload option
    // (0xC2) with everything after the IPv6 header; captured short.
    let mut hbh = vec![6, 0, 0xC2, 4];
    hbh.extend((8 + t.len() as u32 + n).to_be_bytes());
    hbh.extend(&t);
    let p = ip6(0, 0, &hbh);
    frames.push((p.clone(), p.len() as u32 + n));
    // IPv6 payload length 0 and no jumbo option: tshark and tcpdump read
    // no transport header (tshark's ipv6.tso_support is off by default).
    let p = ip6(0, 6, &t);
    frames.push((p.clone(), p.len() as u32 + n));
    // A hop-by-hop header without the jumbo option (PadN): the same.
    let mut hbh = vec![6, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend(&t);
    let p = ip6(0, 0, &hbh);
    frames.push((p.clone(), p.len() as u32 + n));
    // An ordinary packet beside them.
    let p = ip6(20 + 10, 6, &[t.clone(), vec![7; 10]].concat());
    frames.push((p.clone(), p.len() as u32));
    write_pcap(&file, &frames);
    let f = file.to_str().unwrap();
    let theirs = tshark(f, &[], &["tcp.len", "tcp.srcport", "tcp.seq_raw"]);
    let rows = ours(f, "payload_length, src_port, seq, protocol");
    assert_eq!(rows.len(), 5);
    for (i, (o, t)) in rows.iter().zip(&theirs).enumerate() {
        assert_eq!(
            [text(&o["payload_length"]), text(&o["src_port"]), text(&o["seq"])],
            [t[0].clone(), t[1].clone(), t[2].clone()],
            "frame {}",
            i + 1
        );
        assert_eq!(o["protocol"], json!("tcp"));
    }
    let lengths: Vec<Value> = rows.iter().map(|r| r["payload_length"].clone()).collect();
    assert_eq!(lengths, vec![json!(n), json!(n), Value::Null, Value::Null, json!(10)]);
    // tcpdump: "bad-len 0" for the IPv4 one, the jumbogram's length, no TCP
    // for the two without a length.
    let lines = tcpdump(f);
    assert!(lines[0].ends_with("IP bad-len 0"), "{}", lines[0]);
    assert_eq!(tcpdump_length(&lines[1]), Some(n as u64), "{}", lines[1]);
    assert!(!lines[2].contains("Flags") && !lines[3].contains("Flags"), "{lines:?}");
    assert_eq!(tcpdump_length(&lines[4]), Some(10));
}

// ---- TCP options ----------------------------------------------------------

#[test]
fn tcp_options_after_an_unknown_kind_read_as_tshark() {
    let dir = Scratch::new("tcpopts");
    let file = dir.0.join("opts.pcap");
    // A handshake whose SYN carries an experimental option (kind 254)
    // before its window scale, then data: the client's windows scale by 6.
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let syn = tcp(0x02, 1000, 0, 64240, &[254, 4, 0xab, 0xcd, 2, 4, 0x05, 0xb4, 4, 2, 3, 3, 6]);
    frames.push(ip4(20 + syn.len() as u16, &syn));
    // The SYN/ACK, from the server (ports swapped by hand).
    let mut synack = tcp(0x12, 5000, 1001, 65160, &[2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 3, 3, 7]);
    synack[0..4].copy_from_slice(&[0x13, 0x89, 0x9c, 0x40]);
    let mut p = ip4(20 + synack.len() as u16, &synack);
    p[26..34].copy_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
    frames.push(p);
    for (seq, win) in [(1001u32, 1027u16), (1001, 1027), (1001, 2000)] {
        let a = tcp(0x10, seq, 5001, win, &[]);
        frames.push(ip4(40, &a));
    }
    // Malformed lists, as tshark walks them: a length under 2 or past the
    // end ends the walk; a known kind of the wrong length is stepped over;
    // end-of-options ends it; SACK keeps the whole blocks that fit.
    for opts in [
        &[254u8, 0, 3, 3, 7, 2, 4, 5, 0xb4][..],
        &[254, 1, 3, 3, 7, 2, 4, 5, 0xb4],
        &[3, 3, 7, 254, 30, 2, 4, 5, 0xb4],
        &[0, 3, 3, 7, 2, 4, 5, 0xb4],
        &[3, 4, 7, 0, 2, 4, 5, 0xb4],
        &[2, 3, 5, 3, 3, 7],
        &[5, 12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 3, 3, 7],
        &[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 3, 3, 7],
        &[1, 1, 3, 3, 7, 1, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0, 40],
        &[30, 6, 1, 2, 3, 4, 253, 2, 4, 2],
    ] {
        let t = tcp(0x10, 7, 1, 100, opts);
        let mut p = ip4(20 + t.len() as u16, &t);
        // A connection of its own each (tshark takes a window scale even
        // from a segment that is no SYN).
        p[29] = 9 + frames.len() as u8;
        frames.push(p);
    }
    write_pcap(
        &file,
        &frames
            .into_iter()
            .map(|p| {
                let l = p.len() as u32;
                (p, l)
            })
            .collect::<Vec<_>>(),
    );
    let f = file.to_str().unwrap();
    let fields = [
        "tcp.options.wscale.shift",
        "tcp.options.mss_val",
        "tcp.options.sack_perm",
        "tcp.options.timestamp.tsval",
        "tcp.options.sack_le",
        "tcp.options.sack_re",
        "tcp.window_size",
    ];
    let theirs = tshark(f, &[], &fields);
    let rows = ours(f, "frame, wscale, mss, sack_permitted, ts_val, sack_blocks, window");
    assert_eq!(rows.len(), theirs.len());
    for (o, t) in rows.iter().zip(&theirs) {
        let frame = &o["frame"];
        assert_eq!(text(&o["wscale"]), t[0], "frame {frame} wscale");
        assert_eq!(text(&o["mss"]), t[1], "frame {frame} mss");
        assert_eq!(o["sack_permitted"] == json!(true), !t[2].is_empty(), "frame {frame} sack_permitted");
        assert_eq!(text(&o["ts_val"]), t[3], "frame {frame} ts_val");
        let sack: Vec<String> = t[4]
            .split(' ')
            .zip(t[5].split(' '))
            .filter(|(l, _)| !l.is_empty())
            .map(|(l, r)| format!("{l}-{r}"))
            .collect();
        assert_eq!(text(&o["sack_blocks"]), sack.join(" "), "frame {frame} sack_blocks");
        assert_eq!(text(&o["window"]), t[6], "frame {frame} window");
    }
    // What was at stake: the scale after kind 254, and the scaled window.
    assert_eq!(rows[0]["wscale"], json!(6));
    assert_eq!(rows[2]["window"], json!(1027 << 6));
    assert_eq!(rows[13]["sack_blocks"], json!("10-20 30-40"));
}

// ---- flags ----------------------------------------------------------------

#[test]
fn flags_of_all_256_flag_bytes_equal_tcpdump() {
    let dir = Scratch::new("tcpflags");
    let file = dir.0.join("flags.pcap");
    let frames: Vec<(Vec<u8>, u32)> = (0..=255u8)
        .map(|fl| ip4(40, &tcp(fl, 1, 1, 100, &[])))
        .map(|p| {
            let l = p.len() as u32;
            (p, l)
        })
        .collect();
    write_pcap(&file, &frames);
    let f = file.to_str().unwrap();
    let from_tcpdump: Vec<String> =
        tcpdump(f).iter().map(|l| l.split("Flags [").nth(1).unwrap().split(']').next().unwrap().to_string()).collect();
    let rows = ours(f, "flags");
    let from_us: Vec<String> = rows.iter().map(|r| text(&r["flags"])).collect();
    assert_eq!(from_us, from_tcpdump);
    assert_eq!((from_us[0x12].as_str(), from_us[0x58].as_str(), from_us[0x92].as_str()), ("S.", "P.E", "S.W"));
}

// ---- fragments ------------------------------------------------------------

#[test]
fn first_fragments_keep_their_transport_header_as_tshark_and_tcpdump() {
    let (a, b) = (Netns::new("fragA"), Netns::new("fragB"));
    let (va, vb) = link(&a, &b, 71);
    a.exec_ok("ip", &["addr", "add", "fd71::1/64", "dev", &va, "nodad"]);
    b.exec_ok("ip", &["addr", "add", "fd71::2/64", "dev", &vb, "nodad"]);
    let dir = Scratch::new("frags");
    let file = dir.0.join("frag.pcap");
    let cap = Capture::start_on(&a, &va, &file);
    // Receivers, so no port-unreachable quotes the datagrams back.
    let r4 = b.enter(|| std::net::UdpSocket::bind("10.231.71.2:0").unwrap());
    let r6 = b.enter(|| std::net::UdpSocket::bind("[fd71::2]:0").unwrap());
    let (to4, to6) = (r4.local_addr().unwrap(), r6.local_addr().unwrap());
    a.enter(move || {
        std::net::UdpSocket::bind("0.0.0.0:0").unwrap().send_to(&[b'u'; 4000], to4).unwrap();
        std::net::UdpSocket::bind("[::]:0").unwrap().send_to(&[b'v'; 4000], to6).unwrap();
    });
    let mut buf = [0u8; 5000];
    assert_eq!(r4.recv(&mut buf).unwrap(), 4000);
    assert_eq!(r6.recv(&mut buf).unwrap(), 4000);
    a.exec_ok("ping", &["-c", "1", "-W", "2", "-s", "4000", "10.231.71.2"]);
    a.exec_ok("ping", &["-6", "-c", "1", "-W", "2", "-s", "4000", "fd71::2"]);
    // Every fragment written: the IPv4 echo's four later fragments and
    // IPv6's three last ones (two datagrams' and the reply's).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let lines = tcpdump(file.to_str().unwrap());
        let count = |s: &str| lines.iter().filter(|l| l.contains(s)).count();
        let ends = lines.iter().filter(|l| l.ends_with(": ip-proto-1")).count();
        if ends == 4 && count("frag (2896|") == 3 && count("ICMP6, echo reply") == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not every fragment was captured: {lines:#?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    cap.stop();
    let f = file.to_str().unwrap();
    // tshark without reassembly decodes each fragment as it stands, as
    // sockql does (it reassembles nothing).
    let theirs = tshark(
        f,
        &["ip.defragment:FALSE", "ipv6.defragment:FALSE"],
        &[
            "frame.number",
            "ip.frag_offset",
            "ipv6.fraghdr.offset",
            "udp.srcport",
            "udp.dstport",
            "udp.length",
            "icmp.type",
            "icmpv6.type",
            "ip.flags.mf",
        ],
    );
    let rows = ours(f, "frame, src_port, dst_port, payload_length, icmp_type, protocol");
    assert_eq!(rows.len(), theirs.len());
    let (mut first, mut later) = (0, 0);
    for (o, t) in rows.iter().zip(&theirs) {
        let frame = &o["frame"];
        let offset = if t[1].is_empty() { &t[2] } else { &t[1] };
        let fragment = t[8] == "1" || !t[2].is_empty() || !matches!(t[1].as_str(), "" | "0");
        // Quoted headers inside ICMP errors are not ours to compare.
        if o["protocol"] == json!("udp") || t[6].is_empty() && t[7].is_empty() {
            assert_eq!([text(&o["src_port"]), text(&o["dst_port"])], [t[3].clone(), t[4].clone()], "frame {frame}");
            let udp_len = t[5].parse::<u64>().ok().map(|l| json!(l - 8)).unwrap_or(Value::Null);
            assert_eq!(o["payload_length"], udp_len, "frame {frame}");
        }
        if !t[6].is_empty() || !t[7].is_empty() {
            let icmp = if t[6].is_empty() { &t[7] } else { &t[6] };
            assert_eq!(&text(&o["icmp_type"]), icmp.split(' ').next().unwrap(), "frame {frame}");
        } else {
            assert!(o["icmp_type"].is_null(), "frame {frame}");
        }
        match offset.as_str() {
            _ if !fragment => {}
            "0" => first += 1,
            _ => {
                later += 1;
                assert!(
                    o["src_port"].is_null() && o["icmp_type"].is_null(),
                    "frame {frame}: a later fragment has no transport header"
                );
            }
        }
    }
    // Two UDP datagrams and two echo requests and two replies, 3 fragments each.
    assert_eq!((first, later), (6, 12), "{theirs:?}");
    // The first fragments carry what the test sent.
    let udp: Vec<Value> = rows
        .iter()
        .filter(|r| r["protocol"] == json!("udp") && !r["src_port"].is_null())
        .map(|r| json!([r["dst_port"], r["payload_length"]]))
        .collect();
    assert_eq!(udp, vec![json!([to4.port(), 4000]), json!([to6.port(), 4000])]);
    // tcpdump prints the ports and ICMP types of the first fragments, and
    // no transport header for the rest.
    let lines = tcpdump(f);
    for (line, o) in lines.iter().zip(&rows) {
        if let Some(port) = o["dst_port"].as_u64() {
            assert!(line.contains(&format!(".{port}: ")) || line.contains(&format!(" > {port}: ")), "{line}");
        }
        if o["icmp_type"] == json!(8) {
            assert!(line.contains("ICMP echo request"), "{line}");
        }
        if o["icmp_type"] == json!(128) {
            assert!(line.contains("echo request"), "{line}");
        }
    }
}

// ---- SACK -----------------------------------------------------------------

#[test]
fn sack_blocks_relative_as_tshark_on_a_lossy_transfer() {
    let (a, b) = (Netns::new("sackA"), Netns::new("sackB"));
    let (va, _vb) = link(&a, &b, 72);
    // One segment per packet, so the receiver's drops make holes it SACKs:
    // two data segments of every 20 to the port, five apart, are dropped on
    // arrival, so a window in flight holds two holes (SACKs with several
    // blocks) however the machine's load shapes the bursts.
    a.exec_ok("ip", &["link", "set", "dev", &va, "gso_max_size", "1500"]);
    b.nft(
        "table inet sackloss {
            chain in {
                type filter hook input priority 0;
                tcp dport 5072 ip length > 500 numgen inc mod 20 { 10, 15 } drop
            }
        }",
    );
    let dir = Scratch::new("sack");
    let file = dir.0.join("sack.pcap");
    let cap = Capture::start_on(&a, &va, &file);
    bulk(&a, &b, "10.231.72.2:5072", 2 << 20);
    cap.stop();
    let f = file.to_str().unwrap();
    let rel = tshark(f, &[], &["tcp.options.sack_le", "tcp.options.sack_re"]);
    let abs = tshark(f, &["tcp.relative_sequence_numbers:FALSE"], &["tcp.options.sack_le", "tcp.options.sack_re"]);
    let rows = ours(f, "frame, sack_blocks, sack_blocks_raw, rel_ack, ack_seq");
    assert_eq!(rows.len(), rel.len());
    let pairs = |t: &Vec<String>| {
        t[0].split(' ')
            .zip(t[1].split(' '))
            .filter(|(l, _)| !l.is_empty())
            .map(|(l, r)| format!("{l}-{r}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (mut sacks, mut multi) = (0, 0);
    for ((o, r), a) in rows.iter().zip(&rel).zip(&abs) {
        assert_eq!(text(&o["sack_blocks"]), pairs(r), "frame {}", o["frame"]);
        assert_eq!(text(&o["sack_blocks_raw"]), pairs(a), "frame {}", o["frame"]);
        if let Some(s) = o["sack_blocks"].as_str() {
            sacks += 1;
            multi += s.contains(' ') as usize;
            // Relative to the same base as rel_ack.
            let base = o["ack_seq"].as_u64().unwrap().wrapping_sub(o["rel_ack"].as_u64().unwrap()) as u32;
            let raw: u32 = o["sack_blocks_raw"].as_str().unwrap().split('-').next().unwrap().parse().unwrap();
            let rel: u32 = s.split('-').next().unwrap().parse().unwrap();
            assert_eq!(raw.wrapping_sub(base), rel, "frame {}", o["frame"]);
        }
    }
    assert!(sacks >= 5 && multi >= 1, "SACKs {sacks}, with several blocks {multi}");
}
