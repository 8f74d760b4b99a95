//! `sockql serve --pg`: the SQLSTATE each kind of error reaches a real
//! client with (psycopg's `e.sqlstate`, psql's `\set VERBOSITY verbose`),
//! and CancelRequest: psycopg's `cancel_safe()` and psql's Ctrl-C end the
//! running query within a second (57014), its work stops (the server's
//! CPU time stops growing) and its query slot is free; a cancel with a
//! guessed secret, from root or from another local user, ends nothing.
//! Over the unix socket and over TCP (SCRAM).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{bin, eventually, output_of, Scratch, WAIT};

/// The venv's psycopg 3.3 (libpq 18): `cancel_safe()` is psycopg 3.2's.
const PYCLIENTS: &str = "/var/cache/sockql/pyclients/bin/python";

/// A query that runs until it is stopped (a trillion rows, all CPU).
const ENDLESS: &str = "SELECT sum(value % 7) FROM range(1000000000000)";

const PASSWORD: &str = "cancel me";

/// A `sockql serve --pg` of the test's own, killed when dropped.
struct Server {
    child: Child,
    /// A psycopg conninfo reaching it (unix socket as root, or TCP).
    dsn: String,
    /// The unix socket's path, or the TCP port.
    socket: Option<PathBuf>,
    tcp: Option<u16>,
    _scratch: Scratch,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `tcp`: `--pg 127.0.0.1:0` with a password file; else a unix socket
    /// directory (with `--pg-group nogroup`, so user nobody may connect).
    fn start(tag: &str, tcp: bool, extra: &[&str]) -> Server {
        let scratch = Scratch::new(&format!("pgerr-{tag}"));
        let dir = scratch.0.join("run");
        let port = (21000 + (std::process::id() % 3000) * 10 + u32::from(tag.len() as u8 % 10)).to_string();
        let pw = scratch.0.join("pw");
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let mut args: Vec<String> = vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into(), "--pg".into()];
        if tcp {
            args.extend(["127.0.0.1:0".into(), "--pg-password-file".into(), pw.display().to_string()]);
        } else {
            args.extend([
                dir.display().to_string(),
                "--pg-port".into(),
                port.clone(),
                "--pg-group".into(),
                "nogroup".into(),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
        assert!(first.contains("PostgreSQL on"), "serve said: {first}");
        std::thread::spawn(move || for _ in lines {});
        if tcp {
            let addr = first.split("PostgreSQL on ").nth(1).unwrap().split_whitespace().next().unwrap();
            let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
            let dsn =
                format!("host=127.0.0.1 port={port} user=app password='{PASSWORD}' dbname=sockql sslmode=disable");
            Server { child, dsn, socket: None, tcp: Some(port), _scratch: scratch }
        } else {
            let socket = dir.join(format!(".s.PGSQL.{port}"));
            eventually(WAIT, || socket.exists().then_some(()));
            let dsn = format!("host={} port={port} user=root dbname=sockql", dir.display());
            Server { child, dsn, socket: Some(socket), tcp: None, _scratch: scratch }
        }
    }

    /// CPU seconds the server has used (utime + stime).
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    }

    /// Wait until the server's CPU time stops growing: it grows less than
    /// 50 ms over 500 ms. Panics if it keeps growing for 5 s.
    fn settles(&self, what: &str) {
        let start = Instant::now();
        loop {
            let before = self.cpu();
            std::thread::sleep(Duration::from_millis(500));
            let grew = self.cpu() - before;
            if grew < 0.05 {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{what}: the server still uses CPU ({grew:.2}s in 0.5s)");
        }
    }

    /// The server's AF_PACKET sockets (a running capture holds one).
    fn packet_sockets(&self) -> usize {
        let table = std::fs::read_to_string("/proc/net/packet").unwrap();
        let inodes: Vec<String> = table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().last().map(|i| format!("socket:[{i}]")))
            .collect();
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| inodes.iter().any(|i| target.to_str() == Some(i.as_str())))
            .count()
    }

    /// psql's arguments for this server.
    fn psql_args(&self) -> Vec<String> {
        match (&self.socket, self.tcp) {
            (Some(socket), _) => {
                let dir = socket.parent().unwrap().display().to_string();
                let port = socket.file_name().unwrap().to_str().unwrap().rsplit('.').next().unwrap().to_string();
                vec!["-h".into(), dir, "-p".into(), port, "-U".into(), "root".into(), "-d".into(), "sockql".into()]
            }
            (None, Some(port)) => vec![
                "-h".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-U".into(),
                "app".into(),
                "-d".into(),
                "sockql".into(),
            ],
            _ => unreachable!(),
        }
    }

    fn psql(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-A", "-t"])
            .args(self.psql_args())
            .args(extra)
            .env("PGPASSWORD", PASSWORD)
            .env("PGSSLMODE", "disable");
        cmd
    }
}

/// Run a Python script (`python`: the interpreter) with `args`; its
/// stdout's last line is one JSON value.
fn python(python: &str, script: &str, args: &[&str]) -> Value {
    let o = Command::new(python).arg("-c").arg(script).args(args).stdin(Stdio::null()).output().unwrap();
    let (out, err, ok) = output_of(o);
    assert!(ok, "python script failed: {err}\n{script}");
    let last = out.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Each statement on a fresh cursor of one connection: its SQLSTATE, or
/// "ok".
const CODES: &str = r#"
import json, sys, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
out = {}
for sql in json.loads(sys.argv[2]):
    try:
        conn.execute(sql).fetchall()
        out[sql] = "ok"
    except psycopg.Error as e:
        out[sql] = e.sqlstate
print(json.dumps(out))
"#;

fn sqlstates_via_psycopg(server: &Server) {
    let operators = format!("SELECT {}1", "1+".repeat(10_001));
    let cases: Vec<(&str, &str)> = vec![
        ("SELECT nosuchcolumn FROM sockets", "42703"),
        ("SELECT * FROM nosuchtable", "42P01"),
        ("SELECT 'a' + 1", "42883"),
        ("SELECT nosuchfn(1)", "42883"),
        ("SELEC 1", "42601"),
        ("SELECT 1/0", "22012"),
        ("SELECT 'x'::int", "22P02"),
        ("SELECT '99999999999'::int", "22003"),
        ("SELECT 'yesterday-ish'::timestamp", "22007"),
        ("SELECT 1 FROM sockets JOIN processes ON pid = pid", "42702"),
        ("DROP TABLE sockets", "42501"),
        ("COPY (SELECT 1) TO '/tmp/sockql-pgerr-never.csv'", "42501"),
        ("SELECT value, value * 2 AS b FROM range(20000000) ORDER BY b DESC", "53200"),
        (operators.as_str(), "54000"),
        ("SELECT count(*) FROM range(100000000000) WHERE value % 3 = 1", "57014"),
        ("SELECT 1", "ok"),
    ];
    let sqls: Vec<&str> = cases.iter().map(|(s, _)| *s).collect();
    let got = python("/usr/bin/python3", CODES, &[&server.dsn, &serde_json::to_string(&sqls).unwrap()]);
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(sql, want)| got[*sql].as_str() != Some(*want))
        .map(|(sql, want)| format!("{}: {}, want {want}", &sql[..sql.len().min(80)], got[*sql]))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Before: an unknown column and `'a' + 1` were XX000, a bad cast and a
/// division by zero too; only refusals, bounds, the timeout and memory
/// had their own codes.
#[test]
fn pg_errors_each_kind_of_error_has_its_sqlstate_over_unix_and_tcp() {
    for tcp in [false, true] {
        let server =
            Server::start(if tcp { "codes-tcp" } else { "codes" }, tcp, &["--memory-limit", "64M", "--timeout", "2s"]);
        sqlstates_via_psycopg(&server);
        // psql shows the code with VERBOSITY verbose.
        let (_, err, ok) = output_of(
            server.psql(&["-v", "VERBOSITY=verbose", "-c", "SELECT nosuchcolumn FROM sockets"]).output().unwrap(),
        );
        assert!(!ok);
        assert!(err.contains("ERROR:  42703:") && err.contains("nosuchcolumn"), "{err}");
    }
}

/// Start ENDLESS on `dsn`, cancel it with `cancel_safe()` from another
/// thread a second in, and report how long the error took, its code, and
/// whether the connection then answers again.
const CANCEL: &str = r#"
import json, sys, threading, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
res = {"pid": conn.info.backend_pid, "protocol": conn.pgconn.full_protocol_version}
def cancel():
    time.sleep(1.0)
    res["cancel_at"] = time.monotonic()
    conn.cancel_safe()
t = threading.Thread(target=cancel)
start = time.monotonic()
t.start()
try:
    conn.execute(sys.argv[2]).fetchall()
    res["error"] = "none"
except psycopg.Error as e:
    res["error"] = e.sqlstate
    res["message"] = str(e)
res["after_cancel"] = time.monotonic() - res.get("cancel_at", start)
t.join()
res["next"] = conn.execute("SELECT 42").fetchone()[0]
print(json.dumps(res))
"#;

/// CANCEL with psycopg2: `conn.cancel()` (libpq's PQcancel) from another
/// thread a second into ENDLESS.
const CANCEL2: &str = r#"
import json, sys, threading, time, psycopg2
conn = psycopg2.connect(sys.argv[1])
conn.autocommit = True
res = {"pid": conn.get_backend_pid(), "protocol": conn.protocol_version * 10000}
def cancel():
    time.sleep(1.0)
    res["cancel_at"] = time.monotonic()
    conn.cancel()
start = time.monotonic()
t = threading.Thread(target=cancel)
t.start()
cur = conn.cursor()
try:
    cur.execute(sys.argv[2])
    cur.fetchall()
    res["error"] = "none"
except psycopg2.Error as e:
    res["error"] = e.pgcode
    res["message"] = str(e)
res["after_cancel"] = time.monotonic() - res.get("cancel_at", start)
t.join()
cur.execute("SELECT 42")
res["next"] = cur.fetchone()[0]
print(json.dumps(res))
"#;

/// A query, run on a new connection within `limit`: its answer.
fn answered_within(server: &Server, sql: &str, limit: Duration) -> String {
    let started = Instant::now();
    let (out, err, ok) = output_of(server.psql(&["-c", sql]).output().unwrap());
    assert!(ok, "{sql}: {err}");
    assert!(started.elapsed() < limit, "{sql} took {:?}", started.elapsed());
    out.trim().to_string()
}

/// `protocol`: the protocol version the connection uses (30000 for 3.0,
/// with a 4-byte secret; 30002 for 3.2, with a 32-byte one).
fn cancel_via_psycopg(server: &Server, dsn: &str, protocol: u64) {
    cancel_via(server, CANCEL, dsn, protocol)
}

fn cancel_via(server: &Server, script: &str, dsn: &str, protocol: u64) {
    let res = python(PYCLIENTS, script, &[dsn, ENDLESS]);
    assert_eq!(res["protocol"], protocol, "{res}");
    assert_eq!(res["error"], "57014", "{res}");
    assert!(res["message"].as_str().unwrap().contains("canceling statement due to user request"), "{res}");
    let after = res["after_cancel"].as_f64().unwrap();
    println!("{dsn}: 57014 {after:.3}s after cancel_safe()");
    assert!(after < 1.0, "the error came {after:.2}s after the cancel: {res}");
    assert_eq!(res["next"], 42, "{res}");
    // The query's work has stopped, and its slot (the only one) is free.
    let started = Instant::now();
    server.settles("after the cancel");
    println!("CPU settled {:?} after the error", started.elapsed());
    assert_eq!(answered_within(server, "SELECT 7", Duration::from_secs(5)), "7");
}

/// Before: CancelRequest was accepted and ignored; the query ran on (here
/// without end, at full CPU) and held the only query slot.
#[test]
fn pg_errors_psycopg_cancel_ends_the_query_within_a_second_and_frees_its_slot() {
    let unix = Server::start("cancel", false, &["--pg-max-queries", "1", "--timeout", "60s"]);
    cancel_via_psycopg(&unix, &unix.dsn, 30000);
    // Protocol 3.2 (libpq 18): a 32-byte secret.
    cancel_via_psycopg(&unix, &format!("{} max_protocol_version=3.2", unix.dsn), 30002);
    let tcp = Server::start("cancel-tcp", true, &["--pg-max-queries", "1", "--timeout", "60s"]);
    cancel_via_psycopg(&tcp, &tcp.dsn, 30000);
    // psycopg2's conn.cancel(), the same CancelRequest through libpq.
    cancel_via(&unix, CANCEL2, &unix.dsn, 30000);
    cancel_via(&tcp, CANCEL2, &tcp.dsn, 30000);
}

/// psql sends a CancelRequest on SIGINT (Ctrl-C) and prints the error.
#[test]
fn pg_errors_psql_ctrl_c_cancels_the_query() {
    for tcp in [false, true] {
        let server = Server::start(if tcp { "ctrlc-tcp" } else { "ctrlc" }, tcp, &["--timeout", "60s"]);
        let cpu0 = server.cpu();
        let mut psql = server
            .psql(&["-v", "VERBOSITY=verbose", "-c", ENDLESS])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Running: the server spends CPU on it.
        eventually(Duration::from_secs(10), || (server.cpu() - cpu0 > 0.5).then_some(()));
        let sent = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(psql.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
        let status = eventually(Duration::from_secs(5), || psql.try_wait().unwrap());
        let took = sent.elapsed();
        let (_, err, _) = output_of(psql.wait_with_output().unwrap());
        assert!(!status.success());
        assert!(err.contains("57014") && err.contains("canceling statement due to user request"), "{err}");
        println!("tcp {tcp}: psql ended {took:?} after SIGINT");
        assert!(took < Duration::from_millis(1500), "psql ended {took:?} after SIGINT");
        server.settles("after psql's cancel");
    }
}

/// Cancel requests for process id `argv[2]` with random secrets, each on
/// its own connection to `argv[1]` (a socket path, or a TCP port), waiting
/// for the server to close each; prints how many were sent.
const GUESS: &str = r#"
import json, os, socket, struct, sys
target, pid, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sent = 0
for i in range(n):
    if target.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(target)
    else:
        s = socket.create_connection(("127.0.0.1", int(target)))
    s.settimeout(5)
    s.sendall(struct.pack("!iii", 16, 80877102, pid) + os.urandom(4))
    s.recv(1)
    s.close()
    sent += 1
print(json.dumps({"sent": sent}))
"#;

/// A bounded query on `dsn` (a 3 s packet capture) while `attack` runs
/// once it has started; then the same query canceled with the right key,
/// as a check that a cancel does reach it.
const GUESSED: &str = r#"
import json, subprocess, sys, threading, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
attack = json.loads(sys.argv[2])
pid = conn.info.backend_pid
res = {}
def guess():
    time.sleep(0.5)
    out = subprocess.run([a.replace("PID", str(pid)) for a in attack], capture_output=True, text=True)
    res["attack"] = out.stdout.strip() + out.stderr.strip()[-300:]
t = threading.Thread(target=guess)
t.start()
start = time.monotonic()
try:
    res["rows"] = conn.execute("SELECT count(*) >= 0 FROM packets").fetchone()[0]
except psycopg.Error as e:
    res["rows"] = e.sqlstate
res["took"] = time.monotonic() - start
t.join()
def cancel():
    time.sleep(1.0)
    conn.cancel_safe()
t = threading.Thread(target=cancel)
t.start()
try:
    conn.execute("SELECT count(*) FROM packets").fetchone()
    res["control"] = "none"
except psycopg.Error as e:
    res["control"] = e.sqlstate
t.join()
print(json.dumps(res))
"#;

/// A local user (nobody, through setpriv) who knows a connection's
/// process id (psql shows it; ids are small and sequential) sends cancel
/// requests with guessed secrets: the query runs to its end. So does one
/// with a wrong secret sent by root. The same query is canceled by its own
/// client's request, so a cancel does reach it: on the code before, that
/// check failed (no cancel ever ended a query).
#[test]
fn pg_errors_a_cancel_with_a_guessed_secret_ends_nothing() {
    for tcp in [false, true] {
        let server =
            Server::start(if tcp { "guess-tcp" } else { "guess" }, tcp, &["--capture-for", "3s", "--timeout", "60s"]);
        let target = match (&server.socket, server.tcp) {
            (Some(s), _) => s.display().to_string(),
            (None, Some(p)) => p.to_string(),
            _ => unreachable!(),
        };
        for who in [&["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"][..], &[][..]] {
            let mut attack: Vec<&str> = who.to_vec();
            attack.extend(["/usr/bin/python3", "-c", GUESS, &target, "PID", "300"]);
            let res = python(PYCLIENTS, GUESSED, &[&server.dsn, &serde_json::to_string(&attack).unwrap()]);
            assert_eq!(res["attack"], r#"{"sent": 300}"#, "the attack did not run: {res}");
            assert_eq!(res["rows"], true, "a guessed secret ended the query: {res}");
            let took = res["took"].as_f64().unwrap();
            println!("tcp {tcp}, {who:?}: {res}");
            assert!((2.5..10.0).contains(&took), "the capture ran {took:.2}s, not its 3s: {res}");
            assert_eq!(res["control"], "57014", "the client's own cancel did not end the query: {res}");
            // The canceled capture's socket is closed within a second, while
            // its 3 s would still have had about 2 s to run.
            eventually(Duration::from_secs(1), || (server.packet_sockets() == 0).then_some(()));
        }
    }
}

/// Two clients stream `process_events` at once; once both listen (two
/// proc connector sockets in the server), A cancels, then a process runs
/// and exits. Prints what each saw.
const TWO_STREAMS: &str = r#"
import json, os, subprocess, sys, threading, time, psycopg
dsn, server = sys.argv[1], sys.argv[2]
a = psycopg.connect(dsn, autocommit=True)
b = psycopg.connect(dsn, autocommit=True)
res = {}
def run(name, conn, sql):
    t0 = time.monotonic()
    try:
        res[name + "_rows"] = [r[0] for r in conn.execute(sql).fetchall()]
        res[name + "_error"] = "none"
    except psycopg.Error as e:
        res[name + "_error"] = e.sqlstate
    res[name + "_took"] = time.monotonic() - t0
def connectors():
    # The server's NETLINK_CONNECTOR (11) sockets: one per listening stream.
    mine = set()
    for fd in os.listdir(f"/proc/{server}/fd"):
        try:
            link = os.readlink(f"/proc/{server}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    with open("/proc/net/netlink") as f:
        rows = [l.split() for l in f.readlines()[1:]]
    return sum(1 for r in rows if r[1] == "11" and r[-1] in mine)
ta = threading.Thread(target=run, args=("a", a, "SELECT count(*) FROM process_events"))
tb = threading.Thread(target=run, args=("b", b, "SELECT pid FROM process_events WHERE event = 'exit'"))
start = time.monotonic()
ta.start(); tb.start()
while connectors() < 2 and time.monotonic() - start < 10:
    time.sleep(0.02)
res["listening_after"] = time.monotonic() - start
a.cancel_safe()
ta.join()
res["a_ended_after"] = time.monotonic() - start
child = subprocess.Popen(["/bin/true"])
child.wait()
res["child"] = child.pid
tb.join()
print(json.dumps(res))
"#;

/// Stream state is the session's: one client's cancel ends its own stream
/// (57014) while another client's stream keeps listening (it hears a
/// process that exits after the cancel) and ends at its own bound
/// (--capture-for 4s), answering in full.
#[test]
fn pg_errors_cancel_of_one_clients_stream_leaves_anothers_running() {
    let server = Server::start("streams", false, &["--pg-max-queries", "2", "--capture-for", "4s"]);
    let res = python(PYCLIENTS, TWO_STREAMS, &[&server.dsn, &server.child.id().to_string()]);
    println!("{res}");
    let listening = res["listening_after"].as_f64().unwrap();
    assert!(listening < 3.0, "both streams should listen well before their bound: {res}");
    assert_eq!(res["a_error"], "57014", "{res}");
    assert!(res["a_ended_after"].as_f64().unwrap() < 3.5, "A's cancel took too long: {res}");
    assert_eq!(res["b_error"], "none", "{res}");
    let took = res["b_took"].as_f64().unwrap();
    assert!((3.9..8.0).contains(&took), "B should end at its own 4s bound, took {took:.2}s: {res}");
    let child = &res["child"];
    assert!(
        res["b_rows"].as_array().unwrap().contains(child),
        "B stopped listening when A was canceled: it missed pid {child}'s exit: {res}"
    );
}
