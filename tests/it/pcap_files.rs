//! Capture files read as tshark 4.0 and tcpdump 4.99 read them (issue 28):
//! files this test writes byte by byte (the builders below), cut short at
//! every kind of boundary, with headers tshark refuses or accepts, with
//! interface names padded with NULs and timestamps past what a timestamp
//! holds; each compared with tshark and tcpdump reading the same file.

use std::process::Command;

use crate::common::*;

/// Builders of capture files, little-endian unless told.
pub mod build {
    /// An Ethernet frame holding an IPv4 UDP datagram from port `sport`
    /// to 53, with `extra` payload bytes (lengths vary per packet).
    pub fn udp_frame(sport: u16, extra: usize) -> Vec<u8> {
        let udp_len = 8 + extra;
        let ip_len = (20 + udp_len) as u16;
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend([0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend(sport.to_be_bytes());
        f.extend(53u16.to_be_bytes());
        f.extend((udp_len as u16).to_be_bytes());
        f.extend([0, 0]);
        f.extend(std::iter::repeat_n(0x61, extra));
        f
    }

    /// A pcap file header: version, snap length, link type; `nanos` picks
    /// the nanosecond magic.
    pub fn pcap_header(nanos: bool, version: (u16, u16), snaplen: u32, linktype: u32) -> Vec<u8> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = magic.to_le_bytes().to_vec();
        h.extend(version.0.to_le_bytes());
        h.extend(version.1.to_le_bytes());
        h.extend([0u8; 8]);
        h.extend(snaplen.to_le_bytes());
        h.extend(linktype.to_le_bytes());
        h
    }

    pub fn pcap_record(sec: u32, frac: u32, data: &[u8]) -> Vec<u8> {
        let mut r = sec.to_le_bytes().to_vec();
        r.extend(frac.to_le_bytes());
        r.extend((data.len() as u32).to_le_bytes());
        r.extend((data.len() as u32).to_le_bytes());
        r.extend(data);
        r
    }

    pub fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend(len.to_le_bytes());
        b.extend(body);
        b.resize(8 + padded, 0);
        b.extend(len.to_le_bytes());
        b
    }

    pub fn option(code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = code.to_le_bytes().to_vec();
        o.extend((value.len() as u16).to_le_bytes());
        o.extend(value);
        o.resize(4 + value.len().div_ceil(4) * 4, 0);
        o
    }

    pub fn end_of_options() -> Vec<u8> {
        vec![0; 4]
    }

    pub fn section(version: (u16, u16)) -> Vec<u8> {
        let mut body = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
        body.extend(version.0.to_le_bytes());
        body.extend(version.1.to_le_bytes());
        body.extend((-1i64).to_le_bytes());
        block(0x0A0D_0D0A, &body)
    }

    /// An Ethernet interface description block with these options.
    pub fn interface(options: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![1, 0, 0, 0, 0, 0, 4, 0];
        options.iter().for_each(|o| body.extend(o));
        block(1, &body)
    }

    /// An enhanced packet block of interface 0 at `units` of its resolution.
    pub fn packet(units: u64, data: &[u8], options: &[Vec<u8>]) -> Vec<u8> {
        let mut body = 0u32.to_le_bytes().to_vec();
        body.extend(((units >> 32) as u32).to_le_bytes());
        body.extend((units as u32).to_le_bytes());
        body.extend((data.len() as u32).to_le_bytes());
        body.extend((data.len() as u32).to_le_bytes());
        body.extend(data);
        body.resize(20 + data.len().div_ceil(4) * 4, 0);
        options.iter().for_each(|o| body.extend(o));
        block(6, &body)
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = std::process::Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        gz.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = gz.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }
}

use build::*;

/// One packet as both tools show it: frame number, time in nanoseconds,
/// interface name, UDP source port.
type Frame = (u64, Option<i64>, Option<String>, Option<u64>);

/// What sockql read: its frames (or its error) and its stderr.
fn ours(file: &std::path::Path) -> (Result<Vec<Frame>, String>, String) {
    let sql = format!(
        "SELECT frame, CAST(ts AS BIGINT) AS ts_ns, interface, src_port FROM read_pcap('{}') ORDER BY frame",
        file.display()
    );
    let (out, err, ok) = run(&["--format", "ndjson", &sql]);
    if !ok {
        return (Err(err.clone()), err);
    }
    let rows = parse_ndjson(&out)
        .iter()
        .map(|r| {
            (
                r["frame"].as_u64().unwrap(),
                r["ts_ns"].as_i64(),
                r["interface"].as_str().map(str::to_string),
                r["src_port"].as_u64(),
            )
        })
        .collect();
    (Ok(rows), err)
}

/// tshark's frame.time_epoch ("S.FFFFFFFFF", the fraction as the file
/// holds it) in nanoseconds, the fraction carried as sockql carries it.
fn epoch_ns(s: &str) -> i64 {
    if let Some(positive) = s.strip_prefix('-') {
        return -epoch_ns(positive);
    }
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let digits = frac.parse::<i128>().unwrap();
    // Nine digits or more: nanoseconds, as many as the file holds.
    let frac_ns = if frac.len() >= 9 { digits } else { digits * 10i128.pow(9 - frac.len() as u32) };
    i64::try_from(sec.parse::<i128>().unwrap() * 1_000_000_000 + frac_ns).unwrap()
}

/// What tshark read: its frames and its stderr.
fn tshark(file: &std::path::Path) -> (Vec<Frame>, String) {
    assert!(have("tshark"), "tshark is needed for this test");
    let o = Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.interface_name",
            "-e",
            "udp.srcport",
        ])
        .output()
        .unwrap();
    let rows = String::from_utf8_lossy(&o.stdout)
        .lines()
        // tshark shows a frame without a time for a file cut inside its
        // first section header; it is no packet.
        .filter(|l| l.split('\t').nth(1).is_some_and(|t| !t.is_empty()))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let name = f.get(2).filter(|n| !n.is_empty() && **n != "unknown").map(|n| n.to_string());
            (f[0].parse().unwrap(), Some(epoch_ns(f[1])), name, f.get(3).and_then(|p| p.parse().ok()))
        })
        .collect();
    (rows, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// What tcpdump read: how many packets, and its stderr.
fn tcpdump(file: &std::path::Path) -> (usize, String) {
    assert!(have("tcpdump"), "tcpdump is needed for this test");
    let o = Command::new("tcpdump").args(["-nn", "-r", file.to_str().unwrap()]).output().unwrap();
    (String::from_utf8_lossy(&o.stdout).lines().count(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn warnings(err: &str, about: &str) -> usize {
    err.lines().filter(|l| l.starts_with("sockql: warning:") && l.contains(about)).count()
}

/// Four packets of different lengths at 1000.000001 s, 1001.000002 s, ...
fn frames() -> Vec<Vec<u8>> {
    (0..4).map(|i| udp_frame(5000 + i as u16, 3 + 5 * i)).collect()
}

/// A pcap of [`frames`] and where each record ends.
fn pcap_file() -> (Vec<u8>, Vec<usize>) {
    let mut f = pcap_header(false, (2, 4), 65535, 1);
    let mut ends = Vec::new();
    for (i, d) in frames().iter().enumerate() {
        f.extend(pcap_record(1000 + i as u32, 1 + i as u32, d));
        ends.push(f.len());
    }
    (f, ends)
}

/// A pcapng of [`frames`] on interface "eth0" (a name resolution block
/// and a second interface block between packets 2 and 3), where each
/// packet block ends, and where the file header (section and first
/// interface) ends.
fn pcapng_file() -> (Vec<u8>, Vec<usize>, usize) {
    let mut f = section((1, 0));
    f.extend(interface(&[option(2, b"eth0"), end_of_options()]));
    let opened = f.len();
    let mut ends = Vec::new();
    for (i, d) in frames().iter().enumerate() {
        if i == 2 {
            // nrb_record_ipv4 10.0.0.1 "host", then nrb_record_end.
            f.extend(block(4, &[1, 0, 9, 0, 10, 0, 0, 1, b'h', b'o', b's', b't', 0, 0, 0, 0, 0, 0, 0, 0]));
            f.extend(interface(&[option(2, b"eth1")]));
        }
        f.extend(packet((1000 + i as u64) * 1_000_000 + 1 + i as u64, d, &[]));
        ends.push(f.len());
    }
    (f, ends, opened)
}

/// A cut file read by sockql, tshark and tcpdump: the same complete
/// packets with the same times; sockql warns once, naming the byte of the
/// cut, where either tool says the file was cut short.
fn cut_compares(path: &std::path::Path, complete: usize, expect_warning: bool) {
    let (got, err) = ours(path);
    let got = got.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (theirs, terr) = tshark(path);
    assert_eq!(got.len(), complete, "{}: {err}", path.display());
    assert_eq!(got, theirs, "{}: ours vs tshark ({terr})", path.display());
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut tool_warns = terr.contains("cut short");
    if !gz {
        let (n, derr) = tcpdump(path);
        assert_eq!(n, complete, "{}: tcpdump {derr}", path.display());
        tool_warns |= derr.contains("truncated");
    }
    assert_eq!(warnings(&err, "cut short"), usize::from(expect_warning), "{}: {err}", path.display());
    assert_eq!(tool_warns, expect_warning, "{}: tshark {terr}", path.display());
    if expect_warning {
        assert!(err.contains(&format!("the {complete} complete packets before it were read")), "{err}");
    }
}

/// Every cut point of a pcap and a pcapng, plain and gzipped: the complete
/// packets before the cut, and exactly one warning naming the byte where
/// the file ends; a cut inside the file's header is refused (as tshark
/// refuses it), naming the byte. Each boundary kind is compared with
/// tshark and tcpdump.
#[test]
fn a_cut_file_yields_every_complete_packet_and_one_warning() {
    let dir = Scratch::new("pcap-cut");
    let (pcap, pcap_ends) = pcap_file();
    let (ng, ng_ends, ng_opened) = pcapng_file();
    // Every cut point, sockql alone (three at a time, each its own file).
    for (kind, bytes, ends, opened) in [("pcap", &pcap, &pcap_ends, 24), ("pcapng", &ng, &ng_ends, ng_opened)] {
        // (Under 4 bytes there is no magic: not a capture, as tshark says.)
        let cuts: Vec<usize> = (4..bytes.len()).collect();
        std::thread::scope(|s| {
            for part in cuts.chunks(cuts.len().div_ceil(3)) {
                let dir = &dir;
                s.spawn(move || part.iter().for_each(|&cut| every_cut(dir, kind, bytes, ends, opened, cut)));
            }
        });
    }
    // Each kind of boundary against tshark and tcpdump.
    let p3 = pcap_ends[1];
    let n3 = ng_ends[1];
    let cases: Vec<(&str, Vec<u8>, usize, bool)> = vec![
        ("rec-header.pcap", pcap[..p3 + 9].to_vec(), 2, true),
        ("rec-data.pcap", pcap[..p3 + 20].to_vec(), 2, true),
        ("between.pcap", pcap[..p3].to_vec(), 2, false),
        ("first-header.pcap", pcap[..24 + 5].to_vec(), 0, true),
        ("only-header.pcap", pcap[..24].to_vec(), 0, false),
        ("block-header.pcapng", ng[..n3 + 5].to_vec(), 2, true),
        ("block-body-nrb.pcapng", ng[..n3 + 14].to_vec(), 2, true),
        ("block-body-epb.pcapng", ng[..ng_ends[2] + 30].to_vec(), 3, true),
        ("trailer.pcapng", ng[..ng.len() - 2].to_vec(), 3, true),
    ];
    for (name, bytes, complete, warn) in cases {
        let path = dir.0.join(name);
        std::fs::write(&path, &bytes).unwrap();
        cut_compares(&path, complete, warn);
    }
    // A gzip stream cut inside its compressed data: the packets it still
    // holds, and the warning (offsets count decompressed bytes).
    for (name, bytes) in [("cut.pcap.gz", &pcap), ("cut.pcapng.gz", &ng)] {
        let gz = gzip(bytes);
        let path = dir.0.join(name);
        std::fs::write(&path, &gz[..gz.len() - 30]).unwrap();
        let (got, err) = ours(&path);
        let got = got.unwrap();
        assert!(got.len() < 4, "{name}: {got:?}");
        cut_compares(&path, got.len(), true);
        assert!(err.contains("of the decompressed data"), "{err}");
    }
    // A cut inside the header is refused by tshark too, and by tcpdump.
    for (name, bytes) in
        [("file-header.pcap", &pcap[..20]), ("section.pcapng", &ng[..20]), ("first-interface.pcapng", &ng[..34])]
    {
        let path = dir.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        let (got, _) = ours(&path);
        let e = got.unwrap_err();
        assert!(e.contains(&format!("{name}: at byte {}: cut short inside", bytes.len())), "{e}");
        assert_eq!(e.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one line: {e}");
        let (theirs, terr) = tshark(&path);
        let (n, derr) = tcpdump(&path);
        assert!(theirs.is_empty(), "tshark: {theirs:?} {terr}");
        assert!(n == 0 && derr.contains("truncated"), "tcpdump: {derr}");
    }
}

/// `bytes` cut at `cut`: refused in the file's header, else its complete
/// packets and one warning unless the cut falls between packets or blocks.
fn every_cut(dir: &Scratch, kind: &str, bytes: &[u8], ends: &[usize], opened: usize, cut: usize) {
    let path = dir.0.join(format!("every-{cut}.{kind}"));
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let (got, err) = ours(&path);
    std::fs::remove_file(&path).unwrap();
    // tshark refuses a cut in the opening blocks, and in the header of the
    // block after them (it reads it to see whether another interface block
    // follows). A section header alone is read (no packets), as tshark does.
    let whole_block = kind == "pcapng" && is_block_end(bytes, cut);
    if (cut < opened && !whole_block) || (kind == "pcapng" && cut > opened && cut < opened + 8) {
        let e = got.expect_err(&format!("{kind} cut at {cut} in its header"));
        assert!(
            e.contains(&format!("at byte {cut}: cut short inside")) && e.contains("before any packet"),
            "{kind} {cut}: {e}"
        );
        return;
    }
    let got = got.unwrap_or_else(|e| panic!("{kind} cut at {cut}: {e}"));
    let complete = ends.iter().filter(|&&e| e <= cut).count();
    assert_eq!(got.len(), complete, "{kind} cut at {cut}");
    assert_eq!(
        got.iter().map(|r| r.3.unwrap()).collect::<Vec<_>>(),
        (5000..5000 + complete as u64).collect::<Vec<_>>()
    );
    let boundary = cut == opened || ends.contains(&cut) || whole_block;
    assert_eq!(warnings(&err, "cut short"), usize::from(!boundary), "{kind} cut at {cut}: {err}");
    if !boundary {
        let want = format!("every-{cut}.{kind}: the file appears to have been cut short at byte {cut}, inside ");
        assert!(err.contains(&want), "{err}");
    }
}

/// Whether `at` is where a pcapng block ends in `bytes` (walking blocks).
fn is_block_end(bytes: &[u8], at: usize) -> bool {
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[i + 4..i + 8].try_into().unwrap()) as usize;
        i += len;
        if i == at {
            return true;
        }
    }
    false
}

/// What tshark refuses is refused in one line naming the byte offset and
/// the reason; what it reads is read (tcpdump refuses pcap 2.5 and 3.0,
/// tshark reads them: sockql reads them).
#[test]
fn read_pcap_refuses_exactly_what_tshark_refuses() {
    let dir = Scratch::new("pcap-refuse");
    let d = udp_frame(6000, 10);
    let pcap = |version, snaplen| {
        let mut f = pcap_header(false, version, snaplen, 1);
        f.extend(pcap_record(1000, 5, &d));
        f
    };
    let ng = |version, idb: Vec<u8>, epb: Vec<u8>| {
        let mut f = section(version);
        f.extend(idb);
        f.extend(epb);
        f
    };
    let plain = || interface(&[option(2, b"en0"), end_of_options()]);
    let comment = option(1, b"not utf-8: \xff\xfe\xc3");
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("v1.0.pcap", pcap((1, 0), 65535), Some("at byte 4: pcap version 1.0 is not supported (2.x is)")),
        ("v0.9.pcap", pcap((0, 9), 65535), Some("at byte 4: pcap version 0.9 is not supported (2.x is)")),
        ("v2.3.pcap", pcap((2, 3), 65535), None),
        ("v2.5.pcap", pcap((2, 5), 65535), None),
        ("v3.0.pcap", pcap((3, 0), 65535), None),
        ("snap0.pcap", pcap((2, 4), 0), None),
        (
            "v0.1.pcapng",
            ng((0, 1), plain(), packet(1_000_000, &d, &[])),
            Some("at byte 12: section header version 0.1 is not supported (1.0 is)"),
        ),
        (
            "v1.1.pcapng",
            ng((1, 1), plain(), packet(1_000_000, &d, &[])),
            Some("at byte 12: section header version 1.1 is not supported (1.0 is)"),
        ),
        (
            "v2.0.pcapng",
            ng((2, 0), plain(), packet(1_000_000, &d, &[])),
            Some("at byte 12: section header version 2.0 is not supported (1.0 is)"),
        ),
        ("v1.2.pcapng", ng((1, 2), plain(), packet(1_000_000, &d, &[])), None),
        ("comment.pcapng", ng((1, 0), plain(), packet(1_000_000, &d, &[comment.clone(), end_of_options()])), None),
        (
            "no-end-of-options.pcapng",
            ng(
                (1, 0),
                interface(&[option(2, b"en0"), comment.clone()]),
                packet(1_000_000, &d, &[comment.clone(), option(2, &1u32.to_le_bytes())]),
            ),
            None,
        ),
        // 10^-20 s (tcpdump refuses it: "too high").
        ("tsresol-20.pcapng", ng((1, 0), interface(&[option(9, &[20])]), packet(1, &d, &[])), None),
    ];
    for (name, bytes, refusal) in cases {
        let path = dir.0.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let (got, err) = ours(&path);
        let (theirs, terr) = tshark(&path);
        match refusal {
            Some(why) => {
                let e = got.expect_err(name);
                assert!(e.contains(&format!("{name}: {why}")), "{name}: {e}");
                assert_eq!(e.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{name}: one line: {e}");
                assert!(theirs.is_empty() && terr.contains("support"), "{name}: tshark reads it: {terr}");
            }
            None => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got.len(), 1, "{name}: {err}");
                assert_eq!(got, theirs, "{name}: tshark {terr}");
                assert!(!err.contains("warning"), "{name}: {err}");
            }
        }
    }
}

/// Interface names as tshark shows them: cut at the first NUL (the
/// padding some writers count in the option's length), the description
/// where there is no name; times with if_tsresol and if_tsoffset; a time
/// past what a timestamp holds is NULL, with one warning per file.
#[test]
fn pcapng_names_and_times_as_tshark_shows_them() {
    let dir = Scratch::new("pcapng-names");
    let d = udp_frame(7000, 4);
    let file = |idb: Vec<u8>, epbs: Vec<Vec<u8>>| {
        let mut f = section((1, 0));
        f.extend(idb);
        epbs.into_iter().for_each(|e| f.extend(e));
        f
    };
    let ns = option(9, &[9]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "padded.pcapng",
            file(
                interface(&[option(2, b"en0\0"), option(3, b"desc\0junk"), end_of_options()]),
                vec![packet(5_000_000, &d, &[])],
            ),
        ),
        ("described.pcapng", file(interface(&[option(3, b"uplink")]), vec![packet(5_000_000, &d, &[])])),
        (
            "offset.pcapng",
            file(
                interface(&[ns.clone(), option(14, &100i64.to_le_bytes())]),
                vec![packet(1_500_000_000, &d, &[]), packet(7, &d, &[])],
            ),
        ),
        (
            "negative-offset.pcapng",
            file(interface(&[option(14, &(-5000i64).to_le_bytes())]), vec![packet(1_000_000, &d, &[])]),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.0.join(name);
        std::fs::write(&path, &bytes).unwrap();
        let (got, err) = ours(&path);
        let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let (theirs, terr) = tshark(&path);
        assert_eq!(got, theirs, "{name}: {terr}");
        assert!(!err.contains("warning"), "{name}: {err}");
    }
    // The name is 'en0', so a query for it finds the packet.
    let padded = dir.0.join("padded.pcapng");
    let rows = query(&format!("SELECT count(*) AS n FROM read_pcap('{}') WHERE interface = 'en0'", padded.display()));
    assert_eq!(rows, vec![serde_json::json!({"n": 1})]);
    let (got, _) = ours(&dir.0.join("offset.pcapng"));
    assert_eq!(got.unwrap()[0].1, Some(101_500_000_000));

    // Times past the year 2262: an all-ones count of nanoseconds (tshark:
    // 18446744073.709551615, the year 2554), and an if_tsoffset of 2^62 s.
    let over = dir.0.join("overflow.pcapng");
    std::fs::write(
        &over,
        file(
            interface(std::slice::from_ref(&ns)),
            vec![packet(u64::MAX, &d, &[]), packet(1000, &d, &[]), packet(u64::MAX - 1, &d, &[])],
        ),
    )
    .unwrap();
    let (got, err) = ours(&over);
    let got = got.unwrap();
    assert_eq!(got.iter().map(|r| r.1).collect::<Vec<_>>(), vec![None, Some(1000), None]);
    assert_eq!(warnings(&err, "outside what a timestamp holds"), 1, "{err}");
    assert!(err.contains("overflow.pcapng: packet 1 has a time outside"), "{err}");
    let o = Command::new("tshark")
        .args(["-r", over.to_str().unwrap(), "-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().next(), Some("18446744073.709551615"));
    let far = dir.0.join("far.pcapng");
    std::fs::write(&far, file(interface(&[option(14, &(1i64 << 62).to_le_bytes())]), vec![packet(1_000_000, &d, &[])]))
        .unwrap();
    let (got, err) = ours(&far);
    assert_eq!(got.unwrap()[0].1, None);
    assert_eq!(warnings(&err, "outside what a timestamp holds"), 1, "{err}");
}

/// A pcap fraction of a second of a second or more: tshark prints it as
/// the file holds it ("1000.1500000000"), which a timestamp cannot say;
/// sockql carries it into the seconds and warns once per file.
#[test]
fn pcap_fractions_of_a_second_or_more_are_carried_with_one_warning() {
    let dir = Scratch::new("pcap-frac");
    let d = udp_frame(8000, 0);
    for (nanos, big, unit) in [(false, 1_500_000u32, "microseconds"), (true, 1_500_000_000, "nanoseconds")] {
        let mut f = pcap_header(nanos, (2, 4), 65535, 1);
        f.extend(pcap_record(1000, big, &d));
        f.extend(pcap_record(1001, 7, &d));
        f.extend(pcap_record(1002, big, &d));
        let path = dir.0.join(format!("frac-{unit}.pcap"));
        std::fs::write(&path, &f).unwrap();
        let (got, err) = ours(&path);
        let got = got.unwrap();
        let scale = if nanos { 1 } else { 1000 };
        assert_eq!(
            got.iter().map(|r| r.1.unwrap()).collect::<Vec<_>>(),
            vec![1_001_500_000_000, 1_001_000_000_000 + 7 * scale, 1_003_500_000_000]
        );
        assert_eq!(warnings(&err, "not under one second"), 1, "{err}");
        assert!(err.contains(&format!("packet 1 (at byte 24) has a fraction of a second of {big} {unit}")), "{err}");
        // tshark shows the digits as they are; the same instant once carried.
        let o = Command::new("tshark")
            .args(["-r", path.to_str().unwrap(), "-T", "fields", "-e", "frame.time_epoch"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(shown[0], "1000.1500000000");
        assert_eq!(epoch_ns(&shown[0]), got[0].1.unwrap());
        assert_eq!(tcpdump(&path).0, 3);
    }
}
