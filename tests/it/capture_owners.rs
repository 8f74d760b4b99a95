//! Capture reports name the process that really held a connection (issue
//! 28 item 11): a pre-forking server, whose master opens the listener and
//! never accepts while its workers serve, in a namespace of the test's own.
//! Every connection closes during the capture, so `sockets` read after it
//! knows only the listener, whose lowest holder is the master; the reports
//! must credit the worker each connection told the client it was served
//! by, and mark as a guess the traffic whose holder could not be known
//! (connections nobody accepted). tshark's reading of tcpdump's capture of
//! the same traffic gives the packet and byte counts.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;
use crate::netns::Netns;
use crate::pcap::{drain, spawn_until, Capture};

/// The server: a listener and two forked workers that accept on it; each
/// sends the client its pid, then echoes lines until EOF, or aborts the
/// connection (RST) on "rst". A second listener only the parent holds,
/// which never accepts. It prints the two ports and the workers' pids, and
/// ends (with its workers) when its stdin closes.
const PREFORK: &str = r#"
import os, socket, struct, sys
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(64)
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        sys.stdin.close()
        while True:
            c, _ = ls.accept()
            c.sendall(b"%d\n" % os.getpid())
            f = c.makefile("rb")
            for line in f:
                if line.strip() == b"rst":
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                c.sendall(line)
            f.close(); c.close()
    kids.append(pid)
idle = socket.socket(); idle.bind(("127.0.0.1", 0)); idle.listen(64)
print(ls.getsockname()[1], idle.getsockname()[1], *kids, flush=True)
sys.stdin.read()
for k in kids: os.kill(k, 9)
"#;

/// The server process; its workers are killed with it.
struct Server {
    child: Child,
    port: u16,
    idle: u16,
    workers: Vec<i32>,
}

impl Server {
    fn start(ns: &Netns) -> Server {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c", PREFORK])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let words: Vec<i64> = line.split_whitespace().map(|w| w.parse().unwrap()).collect();
        assert_eq!(words.len(), 4, "{line}");
        Server { child, port: words[0] as u16, idle: words[1] as u16, workers: vec![words[2] as i32, words[3] as i32] }
    }

    fn master(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for &w in &self.workers {
            unsafe { libc::kill(w, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One served connection: the client's port and the worker that said it
/// served it.
struct Served {
    client_port: u16,
    worker: i32,
}

/// A connection to the server: `lines` echoed lines about 20 ms apart (a
/// request that takes that long), then a close, or, with `abort`, the
/// worker resets it and the client reads until it has.
fn serve_one(port: u16, lines: usize, abort: bool) -> Served {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = c.local_addr().unwrap().port();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    let mut pid = String::new();
    r.read_line(&mut pid).unwrap();
    for i in 0..lines {
        writeln!(w, "line {i}").unwrap();
        let mut echo = String::new();
        r.read_line(&mut echo).unwrap();
        assert_eq!(echo, format!("line {i}\n"));
        std::thread::sleep(Duration::from_millis(20));
    }
    if abort {
        w.write_all(b"rst\n").unwrap();
        // Until the reset (or EOF) arrives.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
    }
    Served { client_port, worker: pid.trim().parse().unwrap() }
}

/// Packets and IP bytes of `file` that tshark's display filter keeps.
fn tshark_sum(file: &Path, filter: &str) -> (i64, i64) {
    let o = Command::new("tshark")
        .args(["-r", file.to_str().unwrap(), "-Y", filter, "-T", "fields", "-e", "ip.len"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lens: Vec<i64> = String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
    (lens.len() as i64, lens.iter().sum())
}

fn start_report(ns: &Netns, report: &str) -> Child {
    let mut cmd = Command::new("ip");
    // Ended by Ctrl-C once the traffic is over; 60 s only bounds it.
    cmd.args(["netns", "exec", &ns.name, bin(), "--capture-for", "60s", "--format", "ndjson", "run", report])
        .stdout(Stdio::piped());
    let (child, err) = spawn_until(&mut cmd, "capturing on");
    drain(err);
    child
}

#[test]
fn capture_reports_credit_the_worker_that_served_a_connection_closed_during_the_capture() {
    assert!(
        have("tcpdump") && have("tshark") && have("python3"),
        "tcpdump, tshark and python3 are needed for this test"
    );
    let ns = Netns::new("capown");
    let dir = std::env::temp_dir().join(format!("sockql-capture-owners-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("lo.pcap");
    let server = Server::start(&ns);
    let (port, idle, master) = (server.port, server.idle, server.master());
    assert!(
        server.workers.iter().all(|&w| w > master),
        "workers are forked after the master: {:?} > {master}",
        server.workers
    );

    let dump = Capture::start(&ns, &pcap);
    let talkers = start_report(&ns, "top_talkers");
    let resets = start_report(&ns, "rst_by_process");
    // Six connections served (the last one aborted by its worker), two
    // that wait in the idle listener's queue: nobody ever holds them.
    let served: Vec<Served> = ns.enter(move || {
        let mut served: Vec<Served> = (0..5).map(|_| serve_one(port, 10, false)).collect();
        served.push(serve_one(port, 10, true));
        for _ in 0..2 {
            let mut c = TcpStream::connect(("127.0.0.1", idle)).unwrap();
            c.write_all(&[b'x'; 100]).unwrap();
        }
        served
    });
    let aborted = served.last().map(|s| (s.client_port, s.worker)).unwrap();
    // Every served connection is gone on the server's side before the
    // captures end: `sockets` after them knows only the listener.
    eventually(WAIT, || {
        let left = ns.exec_ok("ss", &["-Htan", "state", "connected", &format!("sport = :{port}")]);
        left.trim().is_empty().then_some(())
    });
    // And the queued ones' FINs have had their (delayed) ACKs: no client
    // waits in FIN-WAIT-1, so those ACKs went past the captures too.
    eventually(WAIT, || {
        let left = ns.exec_ok("ss", &["-Htan", "state", "fin-wait-1", &format!("dport = :{idle}")]);
        left.trim().is_empty().then_some(())
    });
    // The connections closed while the captures ran; they end now, as an
    // operator's Ctrl-C ends them, with every packet the kernel took
    // (a fixed --capture-for ended them before that on a loaded machine).
    let mut talkers_child = talkers;
    let mut resets = resets;
    for child in [&mut talkers_child, &mut resets] {
        assert!(child.try_wait().unwrap().is_none(), "the connections closed while the capture ran");
        // SAFETY: kill(2) of our own child, which has not been reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    }
    let rows = |child: Child| {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        parse_ndjson(&String::from_utf8_lossy(&out.stdout))
    };
    let talkers = rows(talkers_child);
    let resets = rows(resets);
    // tcpdump's ring hands a block over when it fills or times out: a
    // datagram after the traffic, once in its file, says every packet
    // before it is there too.
    ns.enter(|| {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(b"end", "127.0.0.1:9").unwrap();
    });
    dump.stop_after(&pcap, "UDP, length 3");

    let mut by_worker: BTreeMap<i32, BTreeSet<u16>> = BTreeMap::new();
    for s in &served {
        assert!(server.workers.contains(&s.worker), "served by a worker: {} not in {:?}", s.worker, server.workers);
        by_worker.entry(s.worker).or_default().insert(s.client_port);
    }
    let pid_rows = |pid: i32| talkers.iter().filter(|r| r["pid"] == json!(pid)).collect::<Vec<&Value>>();
    for (worker, ports) in &by_worker {
        let mine = pid_rows(*worker);
        assert_eq!(mine.len(), 1, "one row for worker {worker}: {talkers:?}");
        let row = mine[0];
        assert_eq!(
            (&row["owner"], &row["process"], &row["remote_addr"]),
            (&json!("capture"), &json!("python3"), &json!("127.0.0.1")),
            "{row}"
        );
        let ports = ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        let (pin, bin_) = tshark_sum(&pcap, &format!("tcp.dstport == {port} && tcp.srcport in {{{ports}}}"));
        let (pout, bout) = tshark_sum(&pcap, &format!("tcp.srcport == {port} && tcp.dstport in {{{ports}}}"));
        assert!(pin >= 10 && pout >= 10, "{pin} {pout}");
        assert_eq!(
            (&row["packets_in"], &row["bytes_in"], &row["packets_out"], &row["bytes_out"]),
            (&json!(pin), &json!(bin_), &json!(pout), &json!(bout)),
            "worker {worker}: {row}"
        );
    }
    // The master is credited with nothing it did not hold, and only as a
    // guess: the queued connections on the port only it holds.
    let master_rows = pid_rows(master);
    assert_eq!(master_rows.len(), 1, "{talkers:?}");
    let guess = master_rows[0];
    let (qin, qbytes_in) = tshark_sum(&pcap, &format!("tcp.dstport == {idle}"));
    let (qout, qbytes_out) = tshark_sum(&pcap, &format!("tcp.srcport == {idle}"));
    assert!(qin >= 6, "two handshakes, data and FINs reached the idle port: {qin}");
    assert_eq!(
        (&guess["owner"], &guess["packets_in"], &guess["bytes_in"], &guess["packets_out"], &guess["bytes_out"]),
        (&json!("listener (guess)"), &json!(qin), &json!(qbytes_in), &json!(qout), &json!(qbytes_out)),
        "{guess}"
    );
    // Every packet to or from the server's port is counted once, for a
    // worker: none left to the master or to nobody.
    let (all_in, _) = tshark_sum(&pcap, &format!("tcp.dstport == {port}"));
    let workers_in: i64 = by_worker.keys().flat_map(|w| pid_rows(*w)).map(|r| r["packets_in"].as_i64().unwrap()).sum();
    assert_eq!(workers_in, all_in);

    // The worker that aborted a connection sent its reset, as tshark saw.
    let (rst, _) =
        tshark_sum(&pcap, &format!("tcp.flags.reset == 1 && tcp.srcport == {port} && tcp.dstport == {}", aborted.0));
    assert_eq!(rst, 1);
    let sent: Vec<&Value> =
        resets.iter().filter(|r| r["role"] == json!("sent") && r["local_port"] == json!(port)).collect();
    assert_eq!(sent.len(), 1, "{resets:?}");
    assert_eq!(
        (&sent[0]["pid"], &sent[0]["owner"], &sent[0]["resets"]),
        (&json!(aborted.1), &json!("capture"), &json!(1)),
        "{resets:?}"
    );
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
