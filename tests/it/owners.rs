//! `socket_owners`, `processes` and the pid/process columns of `sockets`,
//! against processes this test starts.

use std::os::fd::AsRawFd;

use serde_json::json;

use crate::common::*;

/// A child that inherits the listening socket, like a pre-forked worker.
#[test]
fn a_shared_listener_has_one_owner_row_per_process() {
    let l = listener("127.0.0.1:0", 8);
    let p = port_of(&l);
    let fd = l.as_raw_fd();
    let mut child = spawn_sharing(fd);
    let cpid = child.id() as i64;
    let mut expected =
        vec![json!({"pid": my_pid(), "fd": fd, "name": my_comm()}), json!({"pid": cpid, "fd": fd, "name": "sleep"})];
    expected.sort_by_key(|r| r["pid"].as_i64());
    settled(expected, || {
        query(&format!(
            "SELECT o.pid, o.fd, p.name FROM sockets s JOIN socket_owners o ON s.inode = o.inode \
             JOIN processes p ON p.pid = o.pid WHERE s.local_port = {p} AND s.state = 'LISTEN' ORDER BY o.pid"
        ))
    });
    // sockets.pid is the lowest owner, as ss -p lists first.
    settled(vec![json!({"pid": my_pid().min(cpid)})], || {
        query(&format!("SELECT pid FROM sockets WHERE local_port = {p} AND state = 'LISTEN'"))
    });
    // A pid filter is pushed into the fd walk and still exact.
    let only_child = query(&format!("SELECT pid, fd FROM socket_owners WHERE pid = {cpid}"));
    assert!(only_child.contains(&json!({"pid": cpid, "fd": fd})), "{only_child:?}");
    assert!(only_child.iter().all(|r| r["pid"] == cpid));
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = query(&format!("SELECT pid FROM socket_owners WHERE pid = {cpid}"));
    assert!(gone.is_empty());
}

#[test]
fn processes_row_of_this_test() {
    let me = my_pid();
    let rows = query(&format!(
        "SELECT pid, ppid, name, uid, user, state, threads >= 1 AS has_threads, rss_bytes > 0 AS has_rss, \
         fd_count >= 3 AS has_fds, exe, start_time <= now() AS started, cmdline FROM processes WHERE pid = {me}"
    ));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["ppid"], std::os::unix::process::parent_id() as i64);
    assert_eq!(r["name"], my_comm());
    assert_eq!(r["uid"], unsafe { libc::getuid() } as i64);
    if unsafe { libc::getuid() } == 0 {
        assert_eq!(r["user"], "root");
    }
    assert!(["running", "sleeping"].contains(&r["state"].as_str().unwrap()));
    assert_eq!(
        (r["has_threads"].clone(), r["has_rss"].clone(), r["has_fds"].clone(), r["started"].clone()),
        (json!(true), json!(true), json!(true), json!(true))
    );
    assert_eq!(r["exe"], std::env::current_exe().unwrap().to_str().unwrap());
    let arg0 = std::env::args().next().unwrap();
    assert!(r["cmdline"].as_str().unwrap().starts_with(&arg0));
    // Every process in /proc, no more, no less, at least for the ones that live through both reads.
    let n = query("SELECT count(*) AS n FROM processes")[0]["n"].as_i64().unwrap();
    let in_proc = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().parse::<u32>().is_ok())
        .count() as i64;
    assert!((n - in_proc).abs() < 20, "{n} processes vs {in_proc} in /proc");
}

/// processes.rss_bytes and cmdline equal what ps shows: VmRSS, and the
/// arguments without the trailing empty ones a retitled process pads
/// its argv area with.
#[test]
fn rss_and_cmdline_match_ps() {
    let mut child = std::process::Command::new("sh").args(["-c", "sleep 30", "arg0", "", ""]).spawn().unwrap();
    let pid = child.id();
    let ps = |field: &str| -> String {
        let o = std::process::Command::new("ps")
            .args(["-o", &format!("{field}="), "-p", &pid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim_end_matches('\n').trim_start().to_string()
    };
    let sql = format!("SELECT cmdline, rss_bytes FROM processes WHERE pid = {pid}");
    // The shell has started once its argv is in place and ps sees it.
    let row =
        eventually(WAIT, || query(&sql).into_iter().next().filter(|r| r["cmdline"] == serde_json::json!(ps("args"))));
    assert_eq!(row["cmdline"], serde_json::json!("sh -c sleep 30 arg0"));
    let rss_kib: u64 = ps("rss").trim().parse().unwrap();
    assert_eq!(row["rss_bytes"].as_u64().unwrap(), rss_kib * 1024, "rss_bytes is VmRSS, as ps shows it");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A table too large to hold until its owners are known (20,000 sockets,
/// past the two batches a scan holds): every socket still names its
/// owner, as socket_owners says. Four processes hold 5,000 each.
#[test]
fn owners_of_a_large_table_stream_and_stay_exact() {
    use std::io::BufRead;
    const PER: usize = 5_000;
    let ns = crate::netns::Netns::new("ownBig");
    struct Holder(std::process::Child);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let script = format!(
        "import socket, sys, time\ns = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range({PER})]\n\
         for x in s: x.bind(('127.0.0.1', 0))\nprint('ready', flush=True)\ntime.sleep(600)\n"
    );
    let holders: Vec<Holder> = (0..4)
        .map(|_| {
            let mut c = std::process::Command::new("ip")
                .args(["netns", "exec", &ns.name, "python3", "-c", &script])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "ready");
            Holder(c)
        })
        .collect();
    let rows = |sql: &str| -> Vec<(i64, i64)> {
        let (out, err, ok) = ns.exec(bin(), &["--format", "csv", "--no-header", sql]);
        assert!(ok, "{err}");
        out.lines()
            .map(|l| {
                let (a, b) = l.split_once(',').unwrap();
                (a.parse().unwrap_or(-1), b.parse().unwrap())
            })
            .collect()
    };
    let mut expected: Vec<(i64, i64)> = holders.iter().map(|h| (h.0.id() as i64, PER as i64)).collect();
    expected.sort();
    // By the scan's owner column (streamed past the hold), and by the
    // owner table (its own walk).
    assert_eq!(rows("SELECT pid, count(*) FROM sockets WHERE protocol = 'udp' GROUP BY pid ORDER BY pid"), expected);
    assert_eq!(rows("SELECT o.pid, count(*) FROM sockets s JOIN socket_owners o ON o.inode = s.inode WHERE s.protocol = 'udp' GROUP BY o.pid ORDER BY o.pid"), expected);
}
