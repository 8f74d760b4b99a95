//! `sockets` against real loopback sockets this test opens: exact rows,
//! states, ports, queues and owners, cross-checked with `ss`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use serde_json::{json, Value};

use crate::common::*;

fn inode_of(fd: &impl AsRawFd) -> i64 {
    std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().ino() as i64
}

/// (state, local_port, remote_port, recv_q, send_q) of the TCP sockets on `port`.
fn tcp_rows_on(port: u16, extra: &[&str]) -> Vec<Value> {
    query_with(
        extra,
        &format!(
            "SELECT state, local_port, remote_port, recv_q, send_q, inode, pid, process, timer FROM sockets \
             WHERE protocol = 'tcp' AND (local_port = {port} OR remote_port = {port}) \
             ORDER BY state, local_port"
        ),
    )
}

fn pick(rows: &[Value], cols: &[&str]) -> Vec<Vec<Value>> {
    rows.iter().map(|r| cols.iter().map(|c| field(r, c).clone()).collect()).collect()
}

#[test]
fn listener_accept_queue_and_established_pair() {
    let l = listener("127.0.0.1:0", 7);
    let p = port_of(&l);
    let client = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let cport = client.local_addr().unwrap().port();

    // Not accepted yet: the listener's accept queue holds one connection
    // and its send_q is the backlog.
    let rows = eventually(WAIT, || {
        let r = tcp_rows_on(p, &[]);
        (r.len() == 3 && r.iter().any(|x| x["state"] == "LISTEN" && x["recv_q"] == 1) && owned_by_me(&r)).then_some(r)
    });
    let listen = rows.iter().find(|r| r["state"] == "LISTEN").unwrap();
    assert_eq!(listen["send_q"], 7);
    assert_eq!(listen["inode"], inode_of(&l));
    assert_eq!(listen["pid"], my_pid());
    assert_eq!(listen["process"], my_comm());
    // The queued server side exists in the kernel but no process holds it yet.
    let queued = rows.iter().find(|r| r["state"] == "ESTAB" && r["local_port"] == p).unwrap();
    assert_eq!(queued["inode"], 0);
    assert_eq!(queued["pid"], Value::Null);

    let (mut server, _) = l.accept().unwrap();
    let mut c = client;
    c.write_all(&[7u8; 100]).unwrap();
    let rows = eventually(WAIT, || {
        let r = tcp_rows_on(p, &[]);
        (r.iter().any(|x| x["local_port"] == p && x["state"] == "ESTAB" && x["recv_q"] == 100) && owned_by_me(&r))
            .then_some(r)
    });
    let mut expected = vec![
        vec![json!("ESTAB"), json!(cport), json!(p), json!(0), json!(0), json!(inode_of(&c)), json!(my_pid())],
        vec![json!("ESTAB"), json!(p), json!(cport), json!(100), json!(0), json!(inode_of(&server)), json!(my_pid())],
        vec![json!("LISTEN"), json!(p), json!(0), json!(0), json!(7), json!(inode_of(&l)), json!(my_pid())],
    ];
    expected.sort_by_key(|r| (r[0].to_string(), r[1].as_u64()));
    assert_eq!(pick(&rows, &["state", "local_port", "remote_port", "recv_q", "send_q", "inode", "pid"]), expected);

    // tcp_info of the client: 100 bytes + SYN acknowledged.
    let info = query(&format!(
        "SELECT bytes_acked, bytes_sent, segs_out, mss, cwnd, rtt_ms, congestion, snd_buf, last_send_ms \
         FROM sockets WHERE local_port = {cport} AND remote_port = {p}"
    ));
    assert_eq!(info.len(), 1);
    assert_eq!(info[0]["bytes_acked"], 101);
    assert_eq!(info[0]["bytes_sent"], 100);
    assert!(info[0]["mss"].as_u64().unwrap() > 0 && info[0]["cwnd"].as_u64().unwrap() >= 1);
    assert!(info[0]["rtt_ms"].as_f64().unwrap() > 0.0);
    assert!(!info[0]["congestion"].as_str().unwrap().is_empty());
    assert!(info[0]["snd_buf"].as_u64().unwrap() > 0);
    assert!(info[0]["last_send_ms"].as_u64().unwrap() < 60_000);
    let mut buf = [0u8; 100];
    server.read_exact(&mut buf).unwrap();
}

#[test]
fn close_wait_fin_wait_and_time_wait() {
    let l = listener("127.0.0.1:0", 16);
    let p = port_of(&l);
    // Pair A: the client closes, the server never does: CLOSE-WAIT on the
    // server (the application bug the rule of thumb is about), FIN-WAIT-2
    // on the orphaned client.
    let a_client = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let a_port = a_client.local_addr().unwrap().port();
    let (a_server, _) = l.accept().unwrap();
    drop(a_client);
    // Pair B: the client closes first, then the server: the client, the
    // active closer, ends in TIME-WAIT.
    let b_client = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let b_port = b_client.local_addr().unwrap().port();
    let (mut b_server, _) = l.accept().unwrap();
    b_client.shutdown(Shutdown::Both).unwrap();
    drop(b_client);
    let mut sink = Vec::new();
    b_server.read_to_end(&mut sink).unwrap(); // wait for the FIN
    drop(b_server);

    let rows = eventually(WAIT, || {
        let r = tcp_rows_on(p, &[]);
        (r.len() == 4 && r.iter().any(|x| x["state"] == "TIME-WAIT") && owned_by_me(&r)).then_some(r)
    });
    let got = pick(&rows, &["state", "local_port", "remote_port", "inode", "pid", "timer"]);
    let mut expected = vec![
        vec![json!("CLOSE-WAIT"), json!(p), json!(a_port), json!(inode_of(&a_server)), json!(my_pid()), Value::Null],
        vec![json!("FIN-WAIT-2"), json!(a_port), json!(p), json!(0), Value::Null, json!("timewait")],
        vec![json!("LISTEN"), json!(p), json!(0), json!(inode_of(&l)), json!(my_pid()), Value::Null],
        vec![json!("TIME-WAIT"), json!(b_port), json!(p), json!(0), Value::Null, json!("timewait")],
    ];
    expected.sort_by_key(|r| r[0].to_string());
    assert_eq!(got, expected);
    let tw =
        query(&format!("SELECT timer_expires_ms FROM sockets WHERE state = 'TIME-WAIT' AND local_port = {b_port}"));
    let ms = tw[0]["timer_expires_ms"].as_u64().unwrap();
    assert!(ms > 0 && ms <= 60_000, "TIME-WAIT lasts at most 60 s, got {ms}");
}

#[test]
fn udp_unconnected_and_connected() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sp = server.local_addr().unwrap().port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let cp = client.local_addr().unwrap().port();
    client.connect(("127.0.0.1", sp)).unwrap();
    client.send(&[1u8; 10]).unwrap();
    let rows = eventually(WAIT, || {
        let r = query(&format!(
            "SELECT protocol, family, state, local_addr, local_port, remote_addr, remote_port, recv_q > 0 AS queued, inode, pid \
             FROM sockets WHERE protocol = 'udp' AND local_port IN ({sp}, {cp}) ORDER BY local_port = {sp}"
        ));
        (r.len() == 2 && r[1]["queued"] == true && owned_by_me(&r)).then_some(r)
    });
    assert_eq!(
        rows[0],
        json!({"protocol": "udp", "family": "inet", "state": "ESTAB", "local_addr": "127.0.0.1", "local_port": cp,
               "remote_addr": "127.0.0.1", "remote_port": sp, "queued": false, "inode": inode_of(&client), "pid": my_pid()})
    );
    assert_eq!(
        rows[1],
        json!({"protocol": "udp", "family": "inet", "state": "UNCONN", "local_addr": "127.0.0.1", "local_port": sp,
               "remote_addr": "0.0.0.0", "remote_port": 0, "queued": true, "inode": inode_of(&server), "pid": my_pid()})
    );
}

#[test]
fn ipv6_listener() {
    let l = listener("[::1]:0", 3);
    let p = port_of(&l);
    let rows =
        query(&format!("SELECT family, local_addr, remote_addr, state, send_q FROM sockets WHERE local_port = {p}"));
    assert_eq!(
        rows,
        vec![json!({"family": "inet6", "local_addr": "::1", "remote_addr": "::", "state": "LISTEN", "send_q": 3})]
    );
}

#[test]
fn pushed_down_state_filters_match_unpushed_ones() {
    let l = listener("127.0.0.1:0", 4);
    let p = port_of(&l);
    let a = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let (_s, _) = l.accept().unwrap();
    drop(a);
    let ports = format!("(local_port = {p} OR remote_port = {p})");
    for states in ["'LISTEN'", "'CLOSE-WAIT'", "'FIN-WAIT-2', 'LISTEN'", "'ESTAB'"] {
        // `state IN (...)` is pushed into the kernel's state mask; `state || ''`
        // hides the column from the pushdown, so DataFusion filters instead.
        let pushed = query(&format!(
            "SELECT state, local_port FROM sockets WHERE state IN ({states}) AND {ports} ORDER BY 1, 2"
        ));
        let plain = query(&format!(
            "SELECT state, local_port FROM sockets WHERE state || '' IN ({states}) AND {ports} ORDER BY 1, 2"
        ));
        assert_eq!(pushed, plain, "states {states}");
    }
    let lp = query(&format!("SELECT count(*) AS n FROM sockets WHERE state = 'LISTEN' AND local_port = {p}"));
    assert_eq!(lp[0]["n"], 1);
}

/// The same socket through `ss -tanie` and through sockql.
#[test]
fn agrees_with_ss() {
    assert!(have("ss"), "ss (iproute2) is needed for this cross-check");
    let l = listener("127.0.0.1:0", 9);
    let p = port_of(&l);
    let c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let cport = c.local_addr().unwrap().port();
    let out = std::process::Command::new("ss").args(["-tanieO", "sport", &format!("= :{p}")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // ss prints e.g. "LISTEN 1 9 127.0.0.1:PORT 0.0.0.0:* uid:0 ino:NNN sk:..."
    let mut from_ss = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ino = f.iter().find_map(|w| w.strip_prefix("ino:")).unwrap_or("0");
        let uid = f.iter().find_map(|w| w.strip_prefix("uid:")).unwrap_or("0");
        let remote_port = f[4].rsplit(':').next().unwrap().replace('*', "0");
        from_ss.push(vec![
            json!(f[0]),
            json!(f[1].parse::<u64>().unwrap()),
            json!(f[2].parse::<u64>().unwrap()),
            json!(remote_port.parse::<u64>().unwrap()),
            json!(uid.parse::<u64>().unwrap()),
            json!(ino.parse::<u64>().unwrap()),
        ]);
    }
    from_ss.sort_by_key(|r| r[0].to_string());
    let ours = query(&format!(
        "SELECT state, recv_q, send_q, remote_port, uid, inode FROM sockets WHERE protocol = 'tcp' AND local_port = {p} ORDER BY state"
    ));
    assert_eq!(pick(&ours, &["state", "recv_q", "send_q", "remote_port", "uid", "inode"]), from_ss, "ss said:\n{text}");
    assert_eq!(from_ss.len(), 2, "listener and the queued server side of port {cport}");
}

#[test]
fn proc_net_fallback_reads_the_same_sockets() {
    let l = listener("127.0.0.1:0", 5);
    let p = port_of(&l);
    let c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let (_s, _) = l.accept().unwrap();
    let cols = ["state", "local_port", "remote_port", "recv_q", "inode", "pid", "process"];
    let netlink = eventually(WAIT, || Some(tcp_rows_on(p, &[])).filter(|r| owned_by_me(r)));
    assert_eq!(netlink.len(), 3, "{netlink:?}");
    let proc_net = eventually(WAIT, || Some(tcp_rows_on(p, &["--no-netlink"])).filter(|r| owned_by_me(r)));
    assert_eq!(pick(&proc_net, &cols), pick(&netlink, &cols), "/proc rows {proc_net:?}\nnetlink rows {netlink:?}");
    // What /proc/net/tcp cannot tell: a listener's backlog, tcp_info.
    let listen = proc_net.iter().find(|r| r["state"] == "LISTEN").unwrap();
    assert_eq!(listen["send_q"], Value::Null);
    let extra = query_with(
        &["--no-netlink"],
        &format!("SELECT rtt_ms, cookie FROM sockets WHERE local_port = {}", c.local_addr().unwrap().port()),
    );
    assert_eq!(extra, vec![json!({"rtt_ms": null, "cookie": null})]);
}

/// Run sockql under a seccomp filter that makes the kernel refuse netlink
/// sockets with EPERM, as some container sandboxes do.
fn without_netlink(args: &[&str]) -> (String, String, bool) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args);
    // SAFETY: pre_exec runs in the forked child before exec; it only calls
    // prctl with a filter program that outlives the calls.
    unsafe {
        cmd.pre_exec(|| {
            const LD_W_ABS: u16 = 0x20;
            const JEQ_K: u16 = 0x15;
            const RET_K: u16 = 0x06;
            let filter = [
                libc::sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: 0 }, // syscall number
                libc::sock_filter { code: JEQ_K, jt: 0, jf: 3, k: libc::SYS_socket as u32 },
                libc::sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: 16 }, // args[0]: the family
                libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: libc::AF_NETLINK as u32 },
                libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32 },
                libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
            ];
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const _ as usize, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    output_of(cmd.stdin(std::process::Stdio::null()).output().unwrap())
}

#[test]
fn a_kernel_refusing_netlink_falls_back_to_proc_net_and_says_so_once_per_statement() {
    let l = listener("127.0.0.1:0", 4);
    let p = port_of(&l);
    let sql = format!(
        "SELECT state, local_port, recv_q, inode, pid FROM sockets WHERE local_port = {p}; \
         SELECT count(*) AS n FROM sockets WHERE local_port = {p}"
    );
    let (out, err, ok) = eventually(WAIT, || {
        Some(without_netlink(&["--format", "ndjson", &sql])).filter(|r| owned_by_me(&parse_ndjson(&r.0)))
    });
    assert!(ok, "{err}");
    assert_eq!(
        parse_ndjson(&out),
        vec![
            json!({"state": "LISTEN", "local_port": p, "recv_q": 0, "inode": inode_of(&l), "pid": my_pid()}),
            json!({"n": 1})
        ]
    );
    // Warnings belong to the statement that met them (a client of serve
    // gets its own): each of the two statements says it once.
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "one notice for each statement: {err}");
    assert_eq!(lines[0], lines[1], "{err}");
    assert!(
        lines[0].starts_with("sockql: warning: netlink sock_diag unavailable") && lines[0].contains("/proc/net"),
        "{err}"
    );
    assert!(lines[0].contains("Operation not permitted"), "{err}");
}

#[test]
fn unix_sockets_fall_back_to_proc_net_unix() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = std::env::temp_dir().join(format!("sockql-unixfb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l.sock");
    let l = UnixListener::bind(&path).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let inodes: Vec<i64> = vec![inode_of(&l), inode_of(&a), inode_of(&b)];
    let sql = format!(
        "SELECT type, state, path, inode, peer_inode, recv_q FROM unix_sockets WHERE inode IN ({}) ORDER BY inode",
        inodes.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
    );
    // Netlink: every column.
    let full = query(&sql);
    assert_eq!(full.len(), 3, "{full:?}");
    let listening = full.iter().find(|r| r["path"] == json!(path.to_str().unwrap())).unwrap();
    assert_eq!((listening["type"].clone(), listening["state"].clone()), (json!("stream"), json!("LISTEN")));
    // Refused netlink (seccomp) and --no-netlink: the same sockets from
    // /proc/net/unix, peer and queues null; a refusal says so once.
    let without = |r: &Value| json!({"type": r["type"], "state": r["state"], "path": r["path"], "inode": r["inode"], "peer_inode": null, "recv_q": null});
    let expected: Vec<Value> = full.iter().map(without).collect();
    let (out, err, ok) = without_netlink(&["--format", "ndjson", &sql]);
    assert!(ok, "{err}");
    assert_eq!(parse_ndjson(&out), expected);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("sockql: warning: netlink sock_diag unavailable") && lines[0].contains("/proc/net/unix"),
        "{err}"
    );
    let (out, err, ok) = run(&["--no-netlink", "--format", "ndjson", &sql]);
    assert!(ok && err.is_empty(), "{err}");
    assert_eq!(parse_ndjson(&out), expected);
    let explain = query_with(&["--no-netlink"], &format!("EXPLAIN {sql}"));
    assert!(
        explain.iter().any(|r| r["plan"].as_str().unwrap_or("").contains("unix_sockets: /proc/net/unix")),
        "{explain:?}"
    );
    drop((l, a, b));
    std::fs::remove_dir_all(dir).unwrap();
}

/// tcp_info columns follow ss -i: a listener shows its congestion window
/// (and accept queue) only, every other tcp_info column null; an
/// established socket's rto, mss and cwnd equal what ss prints, and the
/// estimates ss omits (no ssthresh while infinite) are null.
#[test]
fn tcp_info_columns_are_null_where_ss_prints_nothing() {
    let l = listener("127.0.0.1:0", 5);
    let p = port_of(&l);
    let _c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let (_s, _) = l.accept().unwrap();
    let ss_fields = |state: &str| -> std::collections::HashMap<String, String> {
        let o = std::process::Command::new("ss")
            .args(["-Htnie", "state", state, "sport", "=", &format!(":{p}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.split_whitespace().filter_map(|w| w.split_once(':').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
    };
    let cols = "rtt_ms, rttvar_ms, rto_ms, mss, cwnd, ssthresh, min_rtt_ms, bytes_acked, segs_in, last_send_ms, delivery_rate_bps, busy_ms, unacked";
    let listen = query(&format!("SELECT {cols} FROM sockets WHERE state = 'LISTEN' AND local_port = {p}"));
    let ss = ss_fields("listening");
    assert_eq!(listen.len(), 1);
    let row = &listen[0];
    assert_eq!(row["cwnd"].to_string(), ss["cwnd"], "{ss:?}");
    for c in [
        "rtt_ms",
        "rttvar_ms",
        "rto_ms",
        "mss",
        "ssthresh",
        "min_rtt_ms",
        "bytes_acked",
        "segs_in",
        "last_send_ms",
        "delivery_rate_bps",
        "busy_ms",
    ] {
        assert!(row[c].is_null(), "LISTEN {c} = {} where ss prints nothing ({ss:?})", row[c]);
        assert!(!ss.contains_key(c.trim_end_matches("_ms")), "ss printed {c} for a listener: {ss:?}");
    }
    let estab = query(&format!("SELECT {cols} FROM sockets WHERE state = 'ESTAB' AND local_port = {p}"));
    let ss = ss_fields("established");
    assert_eq!(estab.len(), 1);
    let row = &estab[0];
    assert_eq!(row["rto_ms"].as_f64().unwrap().to_string(), ss["rto"], "{ss:?}");
    assert_eq!(row["mss"].to_string(), ss["mss"]);
    assert_eq!(row["cwnd"].to_string(), ss["cwnd"]);
    assert!(row["rtt_ms"].as_f64().unwrap() > 0.0 && ss.contains_key("rtt"));
    assert!(row["ssthresh"].is_null() && !ss.contains_key("ssthresh"), "{row} {ss:?}");
    // A listener's zeros no longer drag aggregates down.
    let min = query(&format!("SELECT min(rtt_ms) AS m FROM sockets WHERE local_port = {p}"));
    assert!(min[0]["m"].as_f64().unwrap() > 0.0, "{min:?}");
}

/// The tcp_info fields ss -i prints for an established connection, column
/// by column: window scales, options, MSS estimates, buffer sizes,
/// windows, delivered segments and the app-limited flag.
#[test]
fn more_tcp_info_columns_equal_ss() {
    let l = listener("127.0.0.1:0", 5);
    let p = port_of(&l);
    let mut c = TcpStream::connect(("127.0.0.1", p)).unwrap();
    let (mut s, _) = l.accept().unwrap();
    c.write_all(&[7u8; 1000]).unwrap();
    let mut buf = [0u8; 1000];
    s.read_exact(&mut buf).unwrap();
    let sql = format!(
        "SELECT snd_wscale, rcv_wscale, opt_ts, opt_sack, opt_ecn, opt_ecnseen, pmtu, rcv_mss, adv_mss, rcv_space, rcv_ssthresh, snd_wnd, \
         delivered, app_limited, reordering, dsack_dups, notsent_bytes FROM sockets WHERE state = 'ESTAB' AND local_port = {p}"
    );
    // The connection is quiet now: ss and sockql see the same numbers.
    let (row, ss) = eventually(WAIT, || {
        let row = query(&sql).pop()?;
        let o = std::process::Command::new("ss")
            .args(["-Htnie", "state", "established", "sport", "=", &format!(":{p}")])
            .output()
            .unwrap();
        let ss = String::from_utf8_lossy(&o.stdout).into_owned();
        (query(&sql).pop()? == row).then_some((row, ss))
    });
    let words: Vec<&str> = ss.split_whitespace().collect();
    let field = |k: &str| words.iter().find_map(|w| w.strip_prefix(&format!("{k}:"))).map(str::to_string);
    assert_eq!(field("wscale"), Some(format!("{},{}", row["snd_wscale"], row["rcv_wscale"])), "{ss}");
    for (col, key) in [
        ("pmtu", "pmtu"),
        ("rcv_mss", "rcvmss"),
        ("adv_mss", "advmss"),
        ("rcv_space", "rcv_space"),
        ("rcv_ssthresh", "rcv_ssthresh"),
        ("snd_wnd", "snd_wnd"),
        ("delivered", "delivered"),
    ] {
        assert_eq!(Some(row[col].to_string()), field(key), "{col} vs ss {key}: {ss}");
    }
    for (col, word) in [
        ("opt_ts", "ts"),
        ("opt_sack", "sack"),
        ("opt_ecn", "ecn"),
        ("opt_ecnseen", "ecnseen"),
        ("app_limited", "app_limited"),
    ] {
        assert_eq!(row[col] == json!(true), words.contains(&word), "{col} vs ss '{word}': {ss}");
    }
    // Printed by ss only when they differ from the default or from 0.
    assert_eq!(field("reordering").unwrap_or_else(|| "3".into()), row["reordering"].to_string(), "{ss}");
    assert_eq!(field("dsack_dups").unwrap_or_else(|| "0".into()), row["dsack_dups"].to_string(), "{ss}");
    assert_eq!(field("notsent").unwrap_or_else(|| "0".into()), row["notsent_bytes"].to_string(), "{ss}");
    // A listener has none of them.
    let listen = query(&format!("SELECT snd_wscale, opt_ts, pmtu, snd_wnd, delivered, app_limited FROM sockets WHERE state = 'LISTEN' AND local_port = {p}"));
    assert_eq!(
        listen,
        vec![
            json!({"snd_wscale": null, "opt_ts": null, "pmtu": null, "snd_wnd": null, "delivered": null, "app_limited": null})
        ]
    );
}

/// What ss -e, -m and --tos print beyond tcp_info: the firewall mark, the
/// TOS byte, the cgroup, and the socket memory's option and backlog parts.
#[test]
fn mark_tos_cgroup_and_skmem_equal_ss() {
    require_root(); // SO_MARK needs CAP_NET_ADMIN
    let l = listener("127.0.0.1:0", 5);
    let p = port_of(&l);
    let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    c.set_mark(0x2a).unwrap();
    c.set_tos_v4(0x10).unwrap();
    c.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], p)).into()).unwrap();
    let _s = l.accept().unwrap();
    let local = c.local_addr().unwrap().as_socket().unwrap().port();
    let rows = query(&format!(
        "SELECT fwmark, tos, tclass, cgroup_id, opt_mem, backlog FROM sockets WHERE local_port = {local}"
    ));
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    let o = std::process::Command::new("ss")
        .args(["-Htniem", "--tos", "state", "established", "sport", "=", &format!(":{local}")])
        .output()
        .unwrap();
    let ss = String::from_utf8_lossy(&o.stdout).into_owned();
    let words: Vec<&str> = ss.split(|ch: char| ch.is_whitespace() || ch == '(' || ch == ')' || ch == ',').collect();
    let field = |k: &str| words.iter().find_map(|w| w.strip_prefix(k)).map(str::to_string);
    assert_eq!(field("fwmark:"), Some(format!("{:#x}", row["fwmark"].as_u64().unwrap())), "{ss}");
    assert_eq!(field("tos:"), Some(format!("{:#x}", row["tos"].as_u64().unwrap())), "{ss}");
    assert!(row["tclass"].is_null());
    assert_eq!(field("o"), Some(row["opt_mem"].to_string()), "{ss}");
    assert_eq!(field("bl"), Some(row["backlog"].to_string()), "{ss}");
    // ss names the cgroup by path; its directory's inode is the id.
    if let Some(path) = field("cgroup:") {
        let dir = format!("/sys/fs/cgroup{}", if path == "/" { String::new() } else { path });
        use std::os::unix::fs::MetadataExt;
        assert_eq!(row["cgroup_id"].as_u64(), std::fs::metadata(&dir).ok().map(|m| m.ino()), "{ss}");
    }
}

/// timer_text reads as ss -o prints the timer. A keepalive timer of over
/// ten minutes prints in whole minutes, so the two reads agree exactly.
#[test]
fn timer_text_equals_ss() {
    let l = listener("127.0.0.1:0", 5);
    let p = port_of(&l);
    let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    c.set_keepalive(true).unwrap();
    c.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(std::time::Duration::from_secs(700))).unwrap();
    c.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], p)).into()).unwrap();
    let _s = l.accept().unwrap();
    let local = c.local_addr().unwrap().as_socket().unwrap().port();
    let rows = query(&format!("SELECT timer, timer_text FROM sockets WHERE local_port = {local}"));
    let o = std::process::Command::new("ss")
        .args(["-Htno", "state", "established", "sport", "=", &format!(":{local}")])
        .output()
        .unwrap();
    let ss = String::from_utf8_lossy(&o.stdout).into_owned();
    let ss_timer = ss.split_whitespace().find_map(|w| w.strip_prefix("timer:")).unwrap_or_else(|| panic!("{ss}"));
    assert_eq!(rows, vec![json!({"timer": "keepalive", "timer_text": ss_timer})], "{ss}");
    assert_eq!(ss_timer, "(keepalive,11min,0)");
    // --no-netlink reads the same timer from /proc/net/tcp.
    let from_proc =
        query_with(&["--no-netlink"], &format!("SELECT timer, timer_text FROM sockets WHERE local_port = {local}"));
    assert_eq!(from_proc, rows);
    // No pending timer, no text.
    let listen = query(&format!("SELECT timer, timer_text FROM sockets WHERE state = 'LISTEN' AND local_port = {p}"));
    assert_eq!(listen, vec![json!({"timer": null, "timer_text": null})]);
}
