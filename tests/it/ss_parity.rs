//! Every column of `sockets` against `ss -tuwnaieOmop --tos --cgroup`,
//! field by field, for a TCP connection, a UDP socket and raw sockets this
//! test makes. The list of columns comes from the table itself, so a new
//! column that this comparison does not cover fails the test.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

use crate::common::*;

/// An IP protocol number nothing else here opens raw sockets for
/// (253 is reserved for experiments, RFC 3692).
const RAW_PROTO: i32 = 253;

/// printf's %g, as ss prints times in ms and gains: six significant digits,
/// trailing zeros dropped.
fn g(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let exp = x.abs().log10().floor() as i32;
    assert!((-4..6).contains(&exp), "{x} would print in %g's exponent form");
    let s = format!("{:.*}", (5 - exp).max(0) as usize, x);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One line of ss, as fields: the leading columns by name, `key:value`
/// words by key, `word value` pairs (send, pacing_rate, delivery_rate), the
/// bare flags, and the congestion algorithm (the one bare word ss prints
/// that is no flag).
#[derive(Debug, Clone, PartialEq)]
struct SsLine {
    fields: BTreeMap<String, String>,
    flags: Vec<String>,
}

const FLAGS: &[&str] = &["ts", "sack", "ecn", "ecnseen", "fastopen", "app_limited", "<->"];
/// Fields that move while the test watches (milliseconds since, until).
const MOVING: &[&str] = &["lastsnd", "lastrcv", "lastack", "timer"];

fn parse_ss_line(line: &str) -> SsLine {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut fields = BTreeMap::new();
    for (i, name) in ["netid", "state", "recv_q", "send_q", "local", "peer"].iter().enumerate() {
        fields.insert(name.to_string(), words[i].to_string());
    }
    let mut flags = Vec::new();
    let mut i = 6;
    while i < words.len() {
        let w = words[i];
        if ["send", "pacing_rate", "delivery_rate"].contains(&w) {
            fields.insert(w.to_string(), words[i + 1].trim_end_matches("bps").to_string());
            i += 2;
            continue;
        }
        match w.split_once(':') {
            // cgroup: comes twice (before and after <->), the same both times.
            Some((k, v)) => {
                fields.insert(k.to_string(), v.to_string());
            }
            None if FLAGS.contains(&w) => flags.push(w.to_string()),
            None => {
                fields.insert("congestion".into(), w.to_string());
            }
        }
        i += 1;
    }
    SsLine { fields, flags }
}

/// The sub-fields of `skmem:(r0,rb131072,...)` or `bbr:(bw:..,mrtt:..)`.
fn parenthesized(v: &str) -> BTreeMap<String, String> {
    let inner = v.trim_start_matches('(').trim_end_matches(')');
    inner
        .split(',')
        .map(|kv| match kv.split_once(':') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let digits = kv.find(|c: char| c.is_ascii_digit()).unwrap_or(kv.len());
                (kv[..digits].to_string(), kv[digits..].to_string())
            }
        })
        .collect()
}

fn split_endpoint(s: &str) -> (String, String) {
    let (addr, port) = s.rsplit_once(':').unwrap();
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    (addr.to_string(), if port == "*" { "0".into() } else { port.into() })
}

/// What ss says each column should be, as text in the column's own
/// form; None where ss says the column is null. A column this does not
/// know fails the test.
fn expected(column: &str, ss: &SsLine, row: &Value) -> Option<String> {
    let f = |k: &str| ss.fields.get(k).cloned();
    let flag = |k: &str| Some(ss.flags.iter().any(|x| x == k).to_string());
    let tcp = f("netid").as_deref() == Some("tcp");
    let conn = tcp && f("state").as_deref() != Some("LISTEN");
    // ss prints most counters only when they are not 0.
    let or0 = |k: &str| if conn { Some(f(k).unwrap_or_else(|| "0".into())) } else { f(k) };
    let ms = |k: &str| f(k).map(|v| v.trim_end_matches("ms").to_string());
    let pair = |k: &str, i: usize| f(k).map(|v| v.split(['/', ',']).nth(i).unwrap().to_string());
    let skmem = f("skmem").map(|v| parenthesized(&v));
    let sk = |k: &str| skmem.as_ref().and_then(|m| m.get(k).cloned());
    let bbr = f("bbr").map(|v| parenthesized(&v));
    let bb = |k: &str| bbr.as_ref().and_then(|m| m.get(k).cloned());
    let timer = f("timer")
        .map(|v| v.trim_start_matches('(').trim_end_matches(')').split(',').map(str::to_string).collect::<Vec<_>>());
    let users = f("users").unwrap_or_default();
    let local = split_endpoint(&f("local").unwrap());
    let peer = split_endpoint(&f("peer").unwrap());
    Some(match column {
        "protocol" => f("netid")?,
        "family" => if local.0.contains(':') { "inet6" } else { "inet" }.into(),
        "state" => f("state")?,
        "local_addr" => local.0,
        "local_port" => local.1,
        "remote_addr" => {
            if peer.0 == "*" {
                if local.0.contains(':') { "::" } else { "0.0.0.0" }.into()
            } else {
                peer.0
            }
        }
        "remote_port" => peer.1,
        "interface" => return None, // none bound: ss would print addr%ifname
        "recv_q" => f("recv_q")?,
        "send_q" => f("send_q")?,
        "uid" => f("uid").unwrap_or_else(|| "0".into()),
        // ss's /proc fallback for raw sockets prints no ino: the fd's
        // inode is the truth there.
        "inode" => f("ino").unwrap_or_else(|| row["inode"].to_string()),
        "cookie" => u64::from_str_radix(&f("sk")?, 16).unwrap().to_string(),
        "timer" => timer?[0].clone(),
        "timer_text" => f("timer")?,
        "timer_expires_ms" => timer.map(|_| row["timer_expires_ms"].to_string())?, // checked through timer_text
        "retransmits" => timer
            .map(|t| t[2].clone())
            .or_else(|| (!row["retransmits"].is_null()).then(|| row["retransmits"].to_string()))?,
        "pid" => {
            let pid = row["pid"].to_string();
            assert!(users.contains(&format!("pid={pid},")), "pid {pid} is not among ss's holders {users}");
            pid
        }
        "process" => users.split('"').nth(1)?.to_string(),
        "rtt_ms" => pair("rtt", 0)?,
        "rttvar_ms" => pair("rtt", 1)?,
        "rto_ms" => f("rto")?,
        "mss" => f("mss")?,
        "cwnd" => f("cwnd")?,
        "ssthresh" => f("ssthresh")?,
        "total_retrans" => {
            if conn {
                pair("retrans", 1).unwrap_or_else(|| "0".into())
            } else {
                return None;
            }
        }
        "retrans" => {
            if conn {
                pair("retrans", 0).unwrap_or_else(|| "0".into())
            } else {
                return None;
            }
        }
        "lost" => or0("lost")?,
        "unacked" => {
            if tcp {
                f("unacked").unwrap_or_else(|| "0".into())
            } else {
                return None;
            }
        }
        "bytes_sent" => or0("bytes_sent")?,
        "bytes_acked" => or0("bytes_acked")?,
        "bytes_received" => or0("bytes_received")?,
        "bytes_retrans" => or0("bytes_retrans")?,
        "segs_in" => or0("segs_in")?,
        "segs_out" => or0("segs_out")?,
        "data_segs_in" => or0("data_segs_in")?,
        "data_segs_out" => or0("data_segs_out")?,
        "last_send_ms" => f("lastsnd")?,
        "last_recv_ms" => f("lastrcv")?,
        "last_ack_ms" => f("lastack")?,
        "delivery_rate_bps" => or0("delivery_rate")?,
        "pacing_rate_bps" => f("pacing_rate")?.split('/').next()?.to_string(),
        "max_pacing_rate_bps" => f("pacing_rate")?.split('/').nth(1)?.to_string(),
        "send_bps" => f("send")?,
        "min_rtt_ms" => f("minrtt")?,
        "busy_ms" => {
            if conn {
                ms("busy").unwrap_or_else(|| "0".into())
            } else {
                return None;
            }
        }
        "rwnd_limited_ms" => {
            if conn {
                ms("rwnd_limited").map(|v| v.split('m').next().unwrap().to_string()).unwrap_or_else(|| "0".into())
            } else {
                return None;
            }
        }
        "sndbuf_limited_ms" => {
            if conn {
                ms("sndbuf_limited").map(|v| v.split('m').next().unwrap().to_string()).unwrap_or_else(|| "0".into())
            } else {
                return None;
            }
        }
        "snd_wscale" => pair("wscale", 0)?,
        "rcv_wscale" => pair("wscale", 1)?,
        "opt_ts" if conn => flag("ts")?,
        "opt_sack" if conn => flag("sack")?,
        "opt_ecn" if conn => flag("ecn")?,
        "opt_ecnseen" if conn => flag("ecnseen")?,
        "opt_fastopen" if conn => flag("fastopen")?,
        "app_limited" if conn => flag("app_limited")?,
        "opt_ts" | "opt_sack" | "opt_ecn" | "opt_ecnseen" | "opt_fastopen" | "app_limited" => return None,
        "pmtu" => f("pmtu")?,
        "rcv_mss" => f("rcvmss")?,
        "adv_mss" => f("advmss")?,
        "rcv_space" => f("rcv_space")?,
        "rcv_ssthresh" => f("rcv_ssthresh")?,
        "snd_wnd" => f("snd_wnd")?,
        "rcv_rtt_ms" => f("rcv_rtt")?,
        "notsent_bytes" => or0("notsent")?,
        "delivered" => or0("delivered")?,
        "delivered_ce" => or0("delivered_ce")?,
        "reordering" => {
            if conn {
                f("reordering").unwrap_or_else(|| "3".into())
            } else {
                return None;
            }
        }
        "reord_seen" => or0("reord_seen")?,
        "rcv_ooopack" => or0("rcv_ooopack")?,
        "dsack_dups" => or0("dsack_dups")?,
        "backoff" => or0("backoff")?,
        "ato_ms" => or0("ato")?,
        "sacked" => or0("sacked")?,
        "bbr_bw_bps" => bb("bw")?.trim_end_matches("bps").to_string(),
        "bbr_min_rtt_ms" => bb("mrtt")?,
        "bbr_pacing_gain" => bbr.as_ref().map(|_| bb("pacing_gain").unwrap_or_else(|| "0".into()))?,
        "bbr_cwnd_gain" => bbr.as_ref().map(|_| bb("cwnd_gain").unwrap_or_else(|| "0".into()))?,
        "congestion" => f("congestion")?,
        "rmem_alloc" => sk("r")?,
        "rcv_buf" => sk("rb")?,
        "wmem_alloc" => sk("t")?,
        "snd_buf" => sk("tb")?,
        "fwd_alloc" => sk("f")?,
        "wmem_queued" => sk("w")?,
        "opt_mem" => sk("o")?,
        "backlog" => sk("bl")?,
        "drops" => sk("d")?,
        // Printed as hex when set; sent (as 0) to a reader with CAP_NET_ADMIN.
        "fwmark" => f("fwmark")
            .map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap().to_string())
            .or_else(|| f("ino").map(|_| "0".into()))?,
        "tos" => f("tos").map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap().to_string())?,
        "tclass" => f("tclass").map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap().to_string())?,
        "class_id" => {
            f("class_id").map(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap().to_string())?
        }
        "cgroup_path" => f("cgroup")?,
        "cgroup_id" => {
            let path = f("cgroup")?;
            std::fs::metadata(format!("/sys/fs/cgroup{}", if path == "/" { "" } else { &path })).ok()?.ino().to_string()
        }
        // ss shows one namespace at a time: this test's own.
        "netns" => std::fs::metadata("/proc/self/ns/net").unwrap().ino().to_string(),
        "netns_name" => return None,
        // ss does not know containers; tests/it/containers_use.rs checks these.
        "container" | "container_id" => return None,
        other => panic!("column {other} of sockets is not compared with ss: add it to tests/it/ss_parity.rs"),
    })
}

/// A column's value as ss would print it.
fn as_ss_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Number(n) if n.is_f64() => Some(g(n.as_f64().unwrap())),
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// ss's lines by (netid, state, local endpoint).
type Key = (String, String, String);

fn ss_lines(filter: &[String]) -> BTreeMap<Key, SsLine> {
    let mut args: Vec<String> = ["-Htuwnaieomp", "-O", "--tos", "--cgroup"].iter().map(|s| s.to_string()).collect();
    args.extend(filter.iter().cloned());
    let o = std::process::Command::new("ss").args(&args).output().unwrap();
    assert!(o.status.success(), "ss {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(parse_ss_line)
        .map(|l| ((l.fields["netid"].clone(), l.fields["state"].clone(), l.fields["local"].clone()), l))
        .collect()
}

fn without_moving(mut l: SsLine) -> SsLine {
    l.fields.retain(|k, _| !MOVING.contains(&k.as_str()));
    l
}

#[test]
fn every_column_equals_ss() {
    require_root(); // fwmark is sent only to CAP_NET_ADMIN; raw sockets need CAP_NET_RAW
    assert!(have("ss"), "ss (iproute2) is needed for this cross-check");
    // A TCP connection with data both ways, keepalive, a mark and a TOS.
    let l = listener("127.0.0.1:0", 5);
    let p = port_of(&l);
    let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    c.set_mark(0x2a).unwrap();
    c.set_tos_v4(0x10).unwrap();
    c.set_keepalive(true).unwrap();
    c.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(std::time::Duration::from_secs(700))).unwrap();
    c.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], p)).into()).unwrap();
    let mut c: TcpStream = c.into();
    let (mut s, _) = l.accept().unwrap();
    c.write_all(&[1u8; 3000]).unwrap();
    let mut buf = [0u8; 3000];
    s.read_exact(&mut buf).unwrap();
    s.write_all(&[2u8; 500]).unwrap();
    c.read_exact(&mut buf[..500]).unwrap();
    // UDP: one bound, one connected with a datagram queued.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uc = UdpSocket::bind("127.0.0.1:0").unwrap();
    uc.connect(u.local_addr().unwrap()).unwrap();
    uc.send(b"queued").unwrap();
    // Raw sockets of both families (ss -w), bound to loopback.
    let r4 = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(RAW_PROTO))).unwrap();
    r4.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let r6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(RAW_PROTO))).unwrap();
    r6.bind(&"[::1]:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();

    let inode = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino();
    let inodes: Vec<u64> =
        [l.as_raw_fd(), c.as_raw_fd(), s.as_raw_fd(), u.as_raw_fd(), uc.as_raw_fd(), r4.as_raw_fd(), r6.as_raw_fd()]
            .into_iter()
            .map(inode)
            .collect();
    let ports: Vec<u16> =
        [p, c.local_addr().unwrap().port(), u.local_addr().unwrap().port(), uc.local_addr().unwrap().port()].to_vec();
    let mut filter: Vec<String> = vec!["(".into()];
    for port in &ports {
        filter.extend(["sport".into(), "=".into(), format!(":{port}"), "or".into()]);
    }
    filter.extend(["sport".into(), "=".into(), format!(":{RAW_PROTO}"), ")".into()]);

    let columns: Vec<String> = query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'sockets' ORDER BY ordinal_position",
    )
    .iter()
    .map(|r| r["column_name"].as_str().unwrap().to_string())
    .collect();
    assert!(columns.len() > 90, "{columns:?}");
    let list = inodes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let sql = format!("SELECT * FROM sockets WHERE inode IN ({list}) ORDER BY protocol, local_port, local_addr");

    // ss, sockql, ss again: the fields that do not move must agree in both
    // reads of ss (else the connection was still settling: read again),
    // and the ones that move must lie between them.
    let (before, rows, after) = eventually(WAIT, || {
        let before = ss_lines(&filter);
        let rows = query(&sql);
        let after = ss_lines(&filter);
        let still = |m: &BTreeMap<Key, SsLine>| m.values().cloned().map(without_moving).collect::<Vec<_>>();
        (still(&before) == still(&after) && rows.len() == 7).then_some((before, rows, after))
    });
    assert_eq!(before.len(), 7, "ss lines: {before:#?}");
    let mut compared = 0;
    for row in &rows {
        let proto = row["protocol"].as_str().unwrap().to_string();
        let addr = row["local_addr"].as_str().unwrap();
        let port = row["local_port"].to_string();
        let local = if addr.contains(':') { format!("[{addr}]:{port}") } else { format!("{addr}:{port}") };
        let key = (proto.clone(), row["state"].as_str().unwrap().to_string(), local.clone());
        let (ss1, ss2) = (&before[&key], &after[&key]);
        for col in &columns {
            let ours = as_ss_text(&row[col.as_str()]);
            let want1 = expected(col, ss1, row);
            let want2 = expected(col, ss2, row);
            let is_moving = matches!(col.as_str(), "last_send_ms" | "last_recv_ms" | "last_ack_ms");
            if is_moving {
                let n = |v: &Option<String>| v.as_ref().map(|x| x.parse::<u64>().unwrap());
                let (lo, hi, v) = (n(&want1), n(&want2), n(&ours));
                assert!(lo <= v && v <= hi, "{proto} {local} {col}: ours {ours:?}, ss {want1:?} then {want2:?}");
            } else if col == "timer_text" {
                assert!(
                    ours == want1 || ours == want2,
                    "{proto} {local} {col}: ours {ours:?}, ss {want1:?} then {want2:?}"
                );
            } else {
                assert_eq!(ours, want1, "{proto} {local} {col}: ss line {ss1:?}\nour row {row}");
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 7 * columns.len());
    // What the test made shows up as made.
    let states: Vec<(String, String)> =
        rows.iter().map(|r| (r["protocol"].as_str().unwrap().into(), r["state"].as_str().unwrap().into())).collect();
    assert_eq!(states.iter().filter(|s| s.0 == "raw" && s.1 == "UNCONN").count(), 2, "{states:?}");
    assert!(
        states.contains(&("udp".into(), "ESTAB".into())) && states.contains(&("tcp".into(), "LISTEN".into())),
        "{states:?}"
    );
}
