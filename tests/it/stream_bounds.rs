//! Streams and readers stay bounded for as long as they run: a
//! `socket_events` listener under socket churn holds what is alive, not
//! what it has seen; `read_pcap` of a hostile pcapng (thousands of 1.1 MB
//! interface blocks in a small gzip) stays within a fixed memory; and
//! `read_pcap` of a pipe whose writer never writes ends at --timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::events::{spawn_in, Reaped};
use crate::netns::Netns;

/// A status field of process `pid` (VmRSS, VmHWM), KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line =
        status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Whether `pid` has a sock_diag socket subscribed to multicast groups,
/// in the namespace's /proc/net/netlink (its first socket's port is its pid).
fn destroy_listener_of(ns: &Netns, pid: u32) -> bool {
    ns.exec_ok("cat", &["/proc/net/netlink"]).lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == "4" && f[2] == pid.to_string() && f[3] != "00000000"
    })
}

/// Whether sockql (`pid`) has taken every destroy event of the churn from
/// the kernel: no TCP socket is left in its namespace but the listener,
/// and its subscribed sock_diag socket's receive queue (Rmem, in its own
/// namespace's /proc/net/netlink) is empty.
fn events_taken(pid: u32) -> bool {
    let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{file}")).unwrap_or_default();
    let tcp_left = read("tcp").lines().skip(1).count() + read("tcp6").lines().skip(1).count();
    let queued = read("netlink").lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 4 && f[1] == "4" && f[2] == pid.to_string() && f[3] != "00000000" && f[4] != "0"
    });
    tcp_left == 1 && !queued
}

const ROUNDS: usize = 12;
const PER_ROUND: usize = 4000;
/// How long each round's connections live: past the next of the dumps
/// sockql makes every second (plus the time a dump takes), so every
/// socket is learned with its holder before it goes.
const LIFE: Duration = Duration::from_millis(1500);

/// ROUNDS x PER_ROUND connections to `l`, each living LIFE, then reset
/// (SO_LINGER 0: no TIME-WAIT, so the client port is free again); after
/// round `sample_after` and after the last, `sample()`. Returns the
/// samples, and the listener (closed only once sockql is done).
fn churn(l: std::net::TcpListener, sample_after: usize, sample: impl Fn() -> u64) -> (Vec<u64>, std::net::TcpListener) {
    let addr = l.local_addr().unwrap();
    let mut samples = Vec::new();
    for round in 1..=ROUNDS {
        let mut pairs = Vec::with_capacity(PER_ROUND);
        for _ in 0..PER_ROUND {
            let c = TcpStream::connect(addr).unwrap();
            let (s, _) = l.accept().unwrap();
            pairs.push((c, s));
        }
        // The connections' life, the workload itself (not a wait for sockql).
        std::thread::sleep(LIFE);
        for (c, s) in pairs {
            socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
            drop(c);
            drop(s);
        }
        if round == sample_after || round == ROUNDS {
            // Memory once this round's destroy events are read (`sample` waits for that).
            samples.push(sample());
        }
    }
    (samples, l)
}

/// sockql run with `args` in `ns` (a new namespace: every TCP socket in it
/// is the churn's) while ROUNDS x PER_ROUND connections come and go, ended
/// by Ctrl-C once they are gone (`env` execs it: the pid is sockql's).
/// Returns its VmRSS after round ROUNDS / 3
/// and after the last (KiB), and its stdout.
fn beside_churn(ns: &Netns, args: &[&str]) -> (u64, u64, String) {
    let l = ns.enter(|| listener("127.0.0.1:0", 4096));
    // One malloc arena: what is measured is what sockql holds, not how
    // glibc spreads freed memory over the arenas of the threads a dump
    // starts (which alone moved VmRSS by up to 6 MiB from run to run).
    let mut child: Reaped = spawn_in(ns, &[&["env", "MALLOC_ARENA_MAX=1"], args].concat());
    let pid = child.id();
    eventually(WAIT, || destroy_listener_of(ns, pid).then_some(()));
    let start = Instant::now();
    // The kernel sends destroy events from a work queue: an empty queue
    // twice in a row (20 ms apart) is taken as all of them read.
    let sample = move || {
        let mut seen_empty = 0;
        eventually(WAIT, || {
            seen_empty = if events_taken(pid) { seen_empty + 1 } else { 0 };
            (seen_empty >= 2).then_some(())
        });
        status_kib(pid, "VmRSS")
    };
    let (samples, l) = ns.enter(move || churn(l, ROUNDS / 3, sample));
    eprintln!("{} sockets in {:?}; sockql VmRSS {samples:?} KiB", 2 * ROUNDS * PER_ROUND, start.elapsed());
    // SAFETY: a signal to the child we spawned (ip netns exec became sockql).
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(child.wait().unwrap().success(), "{err}");
    // The listener lives on until sockql is done: its own destroy is no
    // part of the count.
    drop(l);
    (samples[0], samples[1], out)
}

/// The memory a stream may gain from a third of the churn to its end:
/// what it held of 128,000 dead sockets came to more than 5 MiB.
const GROWTH_KIB: u64 = 3 * 1024;

/// (8) A `socket_events` listener under 96,000 connections (192,000
/// sockets, each seen by a dump with its holder, then destroyed): its
/// memory stays flat once the churn is under way, where it grew with every
/// socket it had seen (the cookie map was never pruned). Every socket's
/// event is counted, once, and named by its holder.
#[test]
fn socket_events_memory_stays_flat_under_churn() {
    require_root();
    let ns = Netns::new("sbE");
    // No port filter: a reset client's event has its ports zeroed (the
    // kernel's tcp_disconnect).
    let sql =
        "SELECT count(*) AS n, count(pid) AS named, max(overruns) AS lost FROM socket_events WHERE protocol = 'tcp'";
    let (early, late, out) = beside_churn(&ns, &[bin(), "--capture-for", "300s", "--format", "ndjson", sql]);
    let rows = parse_ndjson(&out);
    let made = (2 * ROUNDS * PER_ROUND) as u64;
    assert_eq!(
        rows,
        vec![serde_json::json!({"n": made, "named": made, "lost": 0})],
        "one event per socket, each naming its holder"
    );
    assert!(
        late < early + GROWTH_KIB,
        "VmRSS grew from {early} KiB (after round {}) to {late} KiB (after round {ROUNDS})",
        ROUNDS / 3
    );
}

/// (8) `record --events` under the same churn: the recorder's memory stays
/// flat too, and the history holds every socket's event, named.
#[test]
fn record_events_memory_stays_flat_under_churn() {
    require_root();
    let ns = Netns::new("sbR");
    let dir = std::env::temp_dir().join(format!("sockql-stream-bounds-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (early, late, _) = beside_churn(
        &ns,
        &[bin(), "record", "--out", dir.to_str().unwrap(), "--events", "--every", "1s", "--for", "300s"],
    );
    let (out, err, ok) = run(&[
        "--history",
        dir.to_str().unwrap(),
        "--format",
        "ndjson",
        "SELECT count(*) AS n, count(pid) AS named, max(overruns) AS lost FROM history.socket_events WHERE protocol = 'tcp'",
    ]);
    assert!(ok, "{err}");
    let made = (2 * ROUNDS * PER_ROUND) as u64;
    assert_eq!(parse_ndjson(&out), vec![serde_json::json!({"n": made, "named": made, "lost": 0})]);
    assert!(
        late < early + GROWTH_KIB,
        "VmRSS grew from {early} KiB (after round {}) to {late} KiB (after round {ROUNDS})",
        ROUNDS / 3
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A little-endian pcapng block of `kind` around `body`.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

fn option(code: u16, value: &[u8]) -> Vec<u8> {
    let mut o = code.to_le_bytes().to_vec();
    o.extend_from_slice(&(value.len() as u16).to_le_bytes());
    o.extend_from_slice(value);
    o.resize(4 + value.len().div_ceil(4) * 4, 0);
    o
}

fn section_header() -> Vec<u8> {
    let mut body = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    body.extend_from_slice(&[1, 0, 0, 0]);
    body.extend_from_slice(&(-1i64).to_le_bytes());
    block(0x0A0D_0D0A, &body)
}

/// An Ethernet interface block with sixteen 64 KB comments and `name`.
fn fat_interface(name: &[u8]) -> Vec<u8> {
    let mut body = vec![1, 0, 0, 0, 0, 0, 4, 0];
    for _ in 0..16 {
        body.extend(option(1, &[b'c'; 65_532]));
    }
    body.extend(option(2, name));
    body.extend(option(9, &[9])); // nanoseconds
    body.extend(option(0, &[]));
    block(1, &body)
}

/// An enhanced packet block on interface `iface` at `ns` nanoseconds.
fn packet(iface: u32, ns: u64, data: &[u8]) -> Vec<u8> {
    let mut body = iface.to_le_bytes().to_vec();
    body.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
    body.extend_from_slice(&(ns as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32).to_le_bytes());
    body.extend_from_slice(&(data.len() as u32 + 100).to_le_bytes());
    body.extend_from_slice(data);
    block(6, &body)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Interface blocks in the hostile file: 600 x 1.1 MB = 660 MB unpacked
/// from 0.7 MB (what once took the reader to as many MB resident; 3,000
/// took it to 3.45 GB), fewer than the test's time allows.
const FAT_INTERFACES: usize = 600;

/// (9) A gzip of FAT_INTERFACES members, each one 1.1 MB interface block
/// whose name is 60,000 bytes, then two packets: read within 200 MB peak
/// under --memory-limit 64M (the reader kept every block, options and all:
/// 660 MB here), with the packets' rows exact and the names cut to 256
/// bytes. A second file of 4,100 interfaces shows the cap: the packets of
/// interfaces past 4,096 are skipped, counted in one note.
#[test]
fn read_pcap_keeps_interface_blocks_bounded() {
    let scratch = Scratch::new("stream-bounds");
    let dir = &scratch.0;
    let file = dir.join("fat.pcapng.gz");
    let name = [b'e'; 60_000];
    let member = gzip(&fat_interface(&name));
    let mut bytes = gzip(&section_header());
    for _ in 0..FAT_INTERFACES {
        bytes.extend_from_slice(&member);
    }
    let t0 = 1_700_000_000_123_456_789u64;
    bytes.extend(gzip(&[packet(0, t0, &[1; 60]), packet(FAT_INTERFACES as u32 - 1, t0 + 1000, &[2; 70])].concat()));
    std::fs::write(&file, &bytes).unwrap();
    assert!(bytes.len() < 1 << 20, "{} bytes on disk", bytes.len());

    let sql = format!(
        "SELECT CAST(ts AS BIGINT) AS ts, length, captured_length, length(interface) AS name_len, substr(interface, 1, 3) AS name \
         FROM read_pcap('{}') ORDER BY ts",
        file.display()
    );
    let m = peak_rss(&[bin(), "--memory-limit", "64M", "--format", "ndjson", &sql]);
    assert!(m.ok, "{}", m.err);
    eprintln!("read_pcap of {FAT_INTERFACES} x 1.1 MB interface blocks: peak RSS {} KiB", m.peak_kib);
    assert!(m.peak_kib < 200 * 1024, "peak RSS {} KiB", m.peak_kib);
    let rows = parse_ndjson(&m.out);
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"ts": t0, "length": 160, "captured_length": 60, "name_len": 256, "name": "eee"}),
            serde_json::json!({"ts": t0 + 1000, "length": 170, "captured_length": 70, "name_len": 256, "name": "eee"}),
        ]
    );

    // More interfaces than kept: a packet of the last is skipped, one of
    // the first is read, and the note says so.
    let many = dir.join("many.pcapng");
    let mut bytes = section_header();
    for i in 0..4100 {
        let mut body = vec![1, 0, 0, 0, 0, 0, 4, 0];
        body.extend(option(2, format!("if{i}").as_bytes()));
        body.extend(option(0, &[]));
        bytes.extend(block(1, &body));
    }
    bytes.extend(packet(4099, 5, &[3; 40]));
    bytes.extend(packet(4095, 6, &[4; 40]));
    std::fs::write(&many, &bytes).unwrap();
    let (out, err, ok) = run(&[
        "--format",
        "ndjson",
        &format!("SELECT interface, captured_length FROM read_pcap('{}')", many.display()),
    ]);
    assert!(ok, "{err}");
    assert_eq!(parse_ndjson(&out), vec![serde_json::json!({"interface": "if4095", "captured_length": 40})]);
    assert!(
        err.contains("4 interface blocks beyond the first 4096 of a section were not kept, and the 1 packets of those interfaces skipped"),
        "{err}"
    );
}

/// (9b) read_pcap of a FIFO whose writer holds it open and never writes:
/// the process ends at --timeout with the timeout message, while the
/// writer is still open (it used to live until the writer closed).
#[test]
fn read_pcap_of_a_silent_pipe_ends_at_the_timeout() {
    let scratch = Scratch::new("silent-pipe");
    let dir = &scratch.0;
    let fifo = dir.join("silent.pcap");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The writer: held open (O_RDWR does not wait for a reader), never written.
    let writer = std::fs::File::options().read(true).write(true).open(&fifo).unwrap();
    let start = Instant::now();
    let mut child = Command::new(bin())
        .args(["--timeout", "2s", &format!("SELECT count(*) FROM read_pcap('{}')", fifo.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually(Duration::from_secs(10), || child.try_wait().unwrap());
    let took = start.elapsed();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end(), "sockql: error: query timed out after 2s (--timeout)");
    assert!(took < Duration::from_secs(3), "exited after {took:?}, the writer still open");
    drop(writer);
}
