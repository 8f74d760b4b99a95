//! `tcp_retransmits` against the kernel's own counts and tshark, for
//! flows the test makes lose segments with nft in namespaces of its own.
//!
//! The data flow is request/response over loopback: the client sends 200
//! bytes and waits for a 1-byte answer, and an nft rule on the input hook
//! drops every 4th data segment to the server. The capture on lo sees
//! each segment as it is sent (before input drops it), so tshark sees the
//! original and its retransmission. With one segment in flight, each
//! loss is repaired by exactly one retransmission (a tail loss probe or a
//! timeout: the segment alone, 200 ms later), and each retransmitted skb
//! is one segment (loopback has no GSO split), so the kernel's events, the
//! frames tshark flags tcp.analysis.retransmission, the nft rule's
//! drops, tcp_info's total_retrans (ss -ti retrans:X/Y) and the
//! namespace's RetransSegs must all be the same number.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::conntrack::NftExt;
use crate::events::Reaped;
use crate::netns::Netns;
use crate::pcap::{drain, spawn_until};

const PORT: u16 = 5001;

/// A client that sends `n` requests of 200 bytes to a server in the same
/// process over `addr`, each answered by two bytes (one byte resent would look like a
/// keep-alive to tshark); prints its own port
/// and waits for a line on stdin before closing.
const FLOW: &str = r#"
import socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, port)); l.listen(1)
c = socket.create_connection((addr, port), source_address=(addr, 0)); s, _ = l.accept()
for i in range(n):
    c.sendall(b'x' * 200)
    got = 0
    while got < 200:
        got += len(s.recv(200 - got))
    s.sendall(b'yy')
    assert c.recv(2) == b'yy'
print(c.getsockname()[1], flush=True)
sys.stdin.readline()
c.close(); s.close(); l.close()
"#;

/// A flow that loses segments in `ns` over `addr`, with its capture.
struct Lossy {
    ns: Netns,
    addr: String,
    pcap: std::path::PathBuf,
}

impl Lossy {
    fn new(tag: &str, addr: &str) -> Lossy {
        let ns = Netns::new(tag);
        ns.nft(&format!(
            "table inet lossy {{
                chain in {{
                    type filter hook input priority 0;
                    ip daddr {addr} tcp dport {PORT} ip length > 100 numgen inc mod 4 == 0 counter drop
                }}
            }}"
        ));
        let pcap = std::env::temp_dir().join(format!("{}.pcap", ns.name));
        Lossy { ns, addr: addr.to_string(), pcap }
    }

    /// Packets the nft rule dropped.
    fn drops(&self) -> u64 {
        let rules = self.ns.exec_ok("nft", &["list", "table", "inet", "lossy"]);
        let counter = rules.split("counter packets ").nth(1).unwrap_or_else(|| panic!("no counter: {rules}"));
        counter.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Run the flow with a capture; returns (client port, python's pid,
    /// total_retrans of the client socket as ss -ti shows it before it
    /// closes).
    fn run(&self, requests: u32) -> (u16, u32, u64) {
        let capture = Capture::start(&self.ns, &self.pcap);
        let mut flow = Reaped(
            Command::new("ip")
                .args(["netns", "exec", &self.ns.name, "/usr/bin/python3", "-c", FLOW, &self.addr])
                .args([PORT.to_string(), requests.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(flow.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("flow said {line:?}"));
        let ss = self.ns.exec_ok("ss", &["-tinH", "dst", &format!("{}:{PORT}", self.addr)]);
        // ss leaves retrans: out while there has been none.
        let total = ss
            .split_whitespace()
            .find_map(|w| w.strip_prefix("retrans:"))
            .map_or(0, |r| r.split('/').nth(1).unwrap_or_else(|| panic!("ss: {ss}")).parse().unwrap());
        writeln!(flow.stdin.as_mut().unwrap()).unwrap();
        assert!(flow.wait().unwrap().success());
        // Both FINs written: the capture has the whole flow.
        capture.stop_after(&self.pcap, "Flags [F.]", 2);
        (port, flow.id(), total)
    }

    /// Frames of the data sent to `port` (`to`) or from it that match
    /// the display filter `flags`.
    fn tshark(&self, port: u16, to: bool, flags: &str) -> usize {
        let side = if to { "dstport" } else { "srcport" };
        let o = Command::new("tshark")
            .arg("-r")
            .arg(&self.pcap)
            .args(["-Y", &format!("tcp.{side} == {port} && tcp.len > 0 && ({flags})"), "-T", "fields"])
            .args(["-e", "frame.number"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).lines().count()
    }

    /// The namespace's Tcp RetransSegs (nstat TcpRetransSegs).
    fn retrans_segs(&self) -> u64 {
        counter(&self.ns, "/proc/net/snmp", "Tcp:", "RetransSegs")
    }
}

impl Drop for Lossy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pcap);
    }
}

/// tcpdump writing `ns`'s loopback to `file`, killed if dropped (a
/// failing test leaves no capture running).
pub(crate) struct Capture(Reaped);

impl Capture {
    pub fn start(ns: &Netns, file: &std::path::Path) -> Capture {
        let (child, err) = spawn_until(
            Command::new("ip").args(["netns", "exec", &ns.name, "tcpdump", "-i", "lo", "-U", "-w"]).arg(file),
            "listening on",
        );
        drain(err);
        Capture(Reaped(child))
    }

    /// Stop once tcpdump -r shows `times` lines with `last` (tcpdump
    /// writes what it reads a little after the packet went by).
    pub fn stop_after(self, file: &std::path::Path, last: &str, times: usize) {
        eventually(WAIT, || {
            let o = Command::new("tcpdump").arg("-nn").arg("-r").arg(file).stderr(Stdio::null()).output().unwrap();
            (String::from_utf8_lossy(&o.stdout).matches(last).count() >= times).then_some(())
        });
        self.stop();
    }

    /// Stop now: SIGINT, so tcpdump (-U: it wrote each packet) closes the file.
    pub fn stop(mut self) {
        // SAFETY: a signal to our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        self.0.wait().unwrap();
    }
}

/// A counter of `ns` from /proc/net/snmp or netstat (nstat's source):
/// the `prefix` lines are names, then values.
pub(crate) fn counter(ns: &Netns, file: &str, prefix: &str, name: &str) -> u64 {
    let text = ns.exec_ok("cat", &[file]);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    let (names, values) = (lines[0].split_whitespace(), lines[1].split_whitespace());
    names.zip(values).find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no {name} in {file}")).1.parse().unwrap()
}

/// A loopback address of this test process's own (other tests use
/// 127.0.0.x): 127.P.Q.`last` from the pid.
pub(crate) fn loopback(last: u8) -> String {
    let pid = std::process::id();
    format!("127.{}.{}.{last}", 100 + pid % 100, (pid / 100) % 250)
}

/// sockql listening with `sql` for `secs`, once it says it listens.
pub(crate) fn stream(args: &[&str], secs: u32, sql: &str) -> Child {
    let (child, err) = spawn_until(
        Command::new(bin())
            .args(["--capture-for", &format!("{secs}s"), "--format", "ndjson"])
            .args(args)
            .arg(sql)
            .stdout(Stdio::piped()),
        "listening",
    );
    drain(err);
    child
}

pub(crate) fn rows_of(child: Child) -> Vec<Value> {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "sockql failed");
    parse_ndjson(&String::from_utf8_lossy(&o.stdout))
}

/// Two lossy flows in two namespaces: a scan of one namespace has its
/// flow's retransmissions, each once, equal to tshark, tcp_info, nft and
/// RetransSegs, with the holder; the other namespace's flow is not in
/// it; --all-netns has both; a state the events are not in has none.
#[test]
fn tcp_retransmits_equal_tshark_tcp_info_and_nft() {
    require_root();
    assert!(have("tshark") && have("tcpdump") && have("nft"), "tshark, tcpdump and nft are needed");
    let (a, c) = (Lossy::new("retrA", &loopback(2)), Lossy::new("retrC", &loopback(3)));
    let filter = format!("local_addr IN ('{}', '{}')", a.addr, c.addr);
    // A's client (its remote port the server's): the kernel filter dport.
    let one = stream(
        &[],
        20,
        &format!(
            "SELECT * FROM tcp_retransmits WHERE netns_name = '{}' AND remote_port = {PORT} AND {filter}",
            a.ns.name
        ),
    );
    let all = stream(&["--all-netns"], 20, &format!("SELECT * FROM tcp_retransmits WHERE {filter}"));
    let other_state =
        stream(&["--all-netns"], 20, &format!("SELECT * FROM tcp_retransmits WHERE state = 'CLOSE-WAIT' AND {filter}"));
    // The saved reports over the same events: per flow, and the metric
    // report run inside A (its scope: A's events).
    let report = stream(&["--all-netns", "run"], 20, "retransmitting_flows");
    let (metric, err) = spawn_until(
        Command::new("ip")
            .args(["netns", "exec", &a.ns.name, bin(), "--capture-for", "20s", "--format", "ndjson"])
            .args(["run", "metric_tcp_retransmit_events"])
            .stdout(Stdio::piped()),
        "listening",
    );
    drain(err);
    let (ta, tc) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.run(10));
        let tc = s.spawn(|| c.run(10));
        (ta.join().unwrap(), tc.join().unwrap())
    });
    let (one, all, other_state) = (rows_of(one), rows_of(all), rows_of(other_state));
    let (report, metric) = (rows_of(report), rows_of(metric));

    for (flow, (port, pid, total)) in [(&a, ta), (&c, tc)] {
        let ns_rows: Vec<&Value> = all.iter().filter(|r| r["local_addr"] == json!(flow.addr)).collect();
        // The client's retransmissions (to the server's port), and the
        // server's (its answers, resent when the ACK riding on the next
        // request was dropped with it).
        let (client, server): (Vec<&Value>, Vec<&Value>) =
            ns_rows.iter().partition(|r| r["remote_port"] == json!(PORT));
        let drops = flow.drops();
        assert!(drops >= 2, "the rule dropped {drops} segments");
        assert_eq!(client.len() as u64, drops, "one retransmission per segment dropped: {client:#?}");
        let seen = Command::new("tshark").arg("-r").arg(&flow.pcap).output().unwrap();
        let seen = String::from_utf8_lossy(&seen.stdout).to_string();
        // tshark's retransmissions: its three flags for a segment sent
        // again (a server's answer resent after the client had it, its ACK
        // riding on a dropped request, is a spurious one).
        let resent =
            "tcp.analysis.retransmission || tcp.analysis.fast_retransmission || tcp.analysis.spurious_retransmission";
        assert_eq!(client.len(), flow.tshark(PORT, true, resent), "tshark's retransmissions:\n{seen}");
        assert_eq!(server.len(), flow.tshark(PORT, false, resent), "the server's, as tshark flags them:\n{seen}");
        // One segment in flight: no duplicate ACKs, so no fast
        // retransmission, and nothing out of order.
        for flag in ["tcp.analysis.fast_retransmission", "tcp.analysis.out_of_order"] {
            assert_eq!(flow.tshark(PORT, true, flag) + flow.tshark(PORT, false, flag), 0, "{flag}:\n{seen}");
        }
        assert_eq!(client.len() as u64, total, "ss -ti retrans:X/{total}");
        assert_eq!(ns_rows.len() as u64, flow.retrans_segs(), "RetransSegs of {}", flow.ns.name);
        for r in &ns_rows {
            let (local_port, remote_port) = if r["remote_port"] == json!(PORT) { (port, PORT) } else { (PORT, port) };
            let want = json!({
                "kind": "data", "state": "ESTAB", "family": "inet", "local_addr": flow.addr, "local_port": local_port,
                "remote_addr": flow.addr, "remote_port": remote_port, "err": 0, "netns": flow.ns.inode(),
                "netns_name": flow.ns.name, "pid": pid, "process": "python3", "overruns": 0,
            });
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(&r[k], v, "{k} of {r}");
            }
            assert!(r["inode"].as_u64().unwrap() > 0 && r["cookie"].as_u64().unwrap() > 0, "{r}");
        }
        // retransmitting_flows: one row per flow, the same counts.
        for (rows, local_port, remote_port) in [(&client, port, PORT), (&server, PORT, port)] {
            // first and last are the kernel's times, each sockql turning
            // them to UTC with its own clock offset (microseconds apart):
            // checked present, not compared.
            let flows: Vec<Value> = report
                .iter()
                .filter(|r| r["local_addr"] == json!(flow.addr) && r["local_port"] == json!(local_port))
                .map(|r| {
                    let mut r = r.clone();
                    let o = r.as_object_mut().unwrap();
                    assert!(o.remove("first").unwrap().is_string() && o.remove("last").unwrap().is_string());
                    r
                })
                .collect();
            if rows.is_empty() {
                assert!(flows.is_empty(), "{flows:#?}");
                continue;
            }
            let want = json!([{
                "netns": flow.ns.inode(), "netns_name": flow.ns.name, "family": "inet", "local_addr": flow.addr,
                "local_port": local_port, "remote_addr": flow.addr, "remote_port": remote_port,
                "retransmits": rows.len(), "synacks": 0, "failed": 0, "state": "ESTAB", "pid": pid,
                "process": "python3", "overruns": 0,
            }]);
            assert_eq!(json!(flows), want, "retransmitting_flows");
        }
        if std::ptr::eq(flow, &a) {
            // The metric report in A: A's events by state and kind.
            assert_eq!(metric, vec![json!({"state": "ESTAB", "kind": "data", "value": ns_rows.len()})], "metric");
            // The scan of A alone, filtered on the client's remote port in
            // the kernel: A's client rows, the same.
            // (ts aside: each sockql turns the kernel's clock to UTC with
            // its own offset, microseconds apart.)
            let no_ts = |r: &Value| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("ts");
                r
            };
            let client: Vec<Value> = client.iter().map(|r| no_ts(r)).collect();
            assert_eq!(one.iter().map(no_ts).collect::<Vec<_>>(), client, "the scan of {}", a.ns.name);
        }
    }
    // The scan of A has nothing of C, --all-netns has both, and the state
    // the events are not in has none of them.
    assert!(one.iter().all(|r| r["netns_name"] == json!(a.ns.name)), "{one:#?}");
    assert!(all.iter().any(|r| r["netns_name"] == json!(a.ns.name)), "{all:#?}");
    assert_eq!(other_state, Vec::<Value>::new());
}

/// The last ACK of a handshake dropped: the listener resends its SYN-ACK
/// once (the client answers the second one and the handshake completes).
#[test]
fn tcp_retransmits_synack_equals_tshark_and_syn_retrans() {
    require_root();
    let ns = Netns::new("retrS");
    let addr = loopback(6);
    // The first pure ACK to the port: the handshake's last.
    ns.nft(&format!(
        "table inet lossy {{
            chain in {{
                type filter hook input priority 0;
                tcp dport {PORT} tcp flags == ack numgen inc mod 1000000 == 0 counter drop
            }}
        }}"
    ));
    let pcap = std::env::temp_dir().join(format!("{}.pcap", ns.name));
    let q = stream(&["--all-netns"], 10, &format!("SELECT * FROM tcp_retransmits WHERE local_port = {PORT}"));
    let capture = Capture::start(&ns, &pcap);
    // A listener, and a client that keeps its end open: it thinks the
    // handshake is done when the SYN-ACK arrives.
    let mut flow = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "/usr/bin/python3", "-c"])
            .arg(format!(
                "import socket,sys\nl=socket.socket()\nl.bind(('{addr}',{PORT}))\nl.listen(1)\n\
                 c=socket.create_connection(('{addr}',{PORT}),source_address=('{addr}',0))\n\
                 print(c.getsockname()[1],flush=True)\nsys.stdin.readline()"
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(flow.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let client: u16 = line.trim().parse().unwrap_or_else(|_| panic!("flow said {line:?}"));
    // Until the listener has the connection (its second SYN-ACK answered).
    eventually(Duration::from_secs(4), || {
        let ss = ns.exec_ok("ss", &["-tnH", "state", "established", &format!("( sport = :{PORT} )")]);
        ss.contains(&format!(":{client}")).then_some(())
    });
    capture.stop_after(&pcap, "Flags [S.]", 2);
    let rows: Vec<Value> = rows_of(q).into_iter().filter(|r| r["netns_name"] == json!(ns.name)).collect();
    let syn_retrans = counter(&ns, "/proc/net/netstat", "TcpExt:", "TCPSynRetrans");
    let file = pcap.to_str().unwrap();
    let o = Command::new("tshark")
        .args(["-r", file, "-Y", "tcp.analysis.retransmission && tcp.flags.syn == 1 && tcp.flags.ack == 1"])
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    let synacks = String::from_utf8_lossy(&o.stdout).lines().count();
    let seen = Command::new("tshark").args(["-r", file]).output().unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout).to_string();
    let _ = std::fs::remove_file(&pcap);
    writeln!(flow.stdin.as_mut().unwrap()).unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(
        (rows.len(), rows.len() as u64),
        (synacks, syn_retrans),
        "tshark's SYN-ACK retransmissions, TcpExtTCPSynRetrans, in:\n{seen}"
    );
    let want = json!({
        "kind": "synack", "state": "SYN-RECV", "family": "inet", "local_addr": &addr, "local_port": PORT,
        "remote_addr": &addr, "remote_port": client, "err": null, "netns": ns.inode(),
        "pid": flow.id(), "process": "python3", "overruns": 0,
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&rows[0][k], v, "{k} of {}", rows[0]);
    }
}

/// EXPLAIN shows the kernel filters: a state and a remote port on
/// tcp_retransmit_skb, the port alone on the SYN-ACK tracepoint (it has
/// no state), and the filters the kernel cannot take left out.
#[test]
fn tcp_retransmits_explain_shows_kernel_filters() {
    require_root();
    let (out, err, ok) = run(&[
        "EXPLAIN SELECT * FROM tcp_retransmits WHERE state = 'ESTAB' AND remote_port = 443 AND process = 'curl'",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("tcp:tcp_retransmit_skb [state == 1 && dport == 443]"), "{out}");
    assert!(out.contains("tcp:tcp_retransmit_synack [dport == 443]"), "{out}");
}
