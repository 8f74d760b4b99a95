//! `sockql serve --pg` against hostile clients and local users, for real:
//! oversized and malformed protocol messages, prepared statements without
//! end, an unprivileged user (setpriv) flooding the unix socket with
//! silent connections, TCP clients that never log in, and a protocol
//! fuzzer. Each test asserts what did not happen: the server did not
//! panic, its peak memory (VmHWM) stayed under a stated ceiling, and
//! root's psql and a /metrics scrape were answered during the attack.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{bin, eventually, require_root, WAIT};
use crate::events::{spawn_in, Reaped};
use crate::netns::Netns;

/// How long root's psql and a scrape may take while an attack runs.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A running `sockql serve --pg` in a namespace of the test's own.
struct Server {
    ns: Netns,
    child: Reaped,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
    /// The unix socket's --pg-port, or the TCP port.
    port: u16,
    http: u16,
}

/// A port number for this test's unix socket file (only a name: nothing
/// listens on it over TCP).
fn unix_port(offset: u16) -> u16 {
    20000 + (std::process::id() % 4000) as u16 * 10 + offset
}

impl Server {
    /// `--pg DIR/run` (unix) or `--pg 127.0.0.1:0` (tcp: `pg` names it),
    /// with `extra` arguments, under `prlimit --nofile` if given.
    fn start(tag: &str, pg: Option<&str>, port_offset: u16, extra: &[&str], nofile: Option<&str>) -> Server {
        let ns = Netns::new(tag);
        let dir = std::env::temp_dir().join(format!("sockql-pgattack-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let run = dir.join("run");
        let port = unix_port(port_offset).to_string();
        let mut args: Vec<String> = Vec::new();
        if let Some(limit) = nofile {
            args.extend(["prlimit".into(), format!("--nofile={limit}"), "--".into()]);
        }
        args.extend([bin().into(), "serve".into(), "--listen".into(), "127.0.0.1:0".into(), "--pg".into()]);
        match pg {
            None => args.extend([run.display().to_string(), "--pg-port".into(), port]),
            Some(addr) => args.push(addr.into()),
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = spawn_in(&ns, &refs);
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push_str(&line);
                keep.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        assert!(first.contains("PostgreSQL on"), "serve said: {first}");
        let second = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let http = crate::serve::metrics_port(&second);
        let port = match pg {
            None => unix_port(port_offset),
            Some(_) => first
                .split("PostgreSQL on 127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|p| p.parse().ok())
                .expect(&first),
        };
        let server = Server { ns, child, stderr, dir, port, http };
        if pg.is_none() {
            eventually(WAIT, || server.socket().exists().then_some(()));
        }
        server
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn socket(&self) -> PathBuf {
        self.run_dir().join(format!(".s.PGSQL.{}", self.port))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak memory after a root session and a scrape have run once: what
    /// the attack adds is measured from here.
    fn warmed_hwm(&self) -> u64 {
        self.root_psql();
        self.scrape();
        self.vm_hwm()
    }

    /// Peak resident memory so far, KiB.
    fn vm_hwm(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map(|d| d.count()).unwrap_or(0)
    }

    /// Alive, and nothing panicked.
    fn assert_sound(&mut self, context: &str) {
        let err = self.stderr.lock().unwrap().clone();
        assert!(!err.contains("panicked"), "{context}: the server panicked:\n{err}");
        assert!(self.child.try_wait().unwrap().is_none(), "{context}: the server exited:\n{err}");
    }

    /// Root's psql over the unix socket answers SELECT 1 within
    /// ANSWER_WITHIN.
    fn root_psql(&self) {
        let t0 = Instant::now();
        let o = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                self.run_dir().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                "root",
                "sockql",
                "-c",
                "SELECT 1",
            ])
            .env("PGCONNECT_TIMEOUT", "8")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (out, err, ok) = crate::common::output_of(o);
        assert!(ok && out.trim() == "1", "root's psql during the attack: {err}");
        assert!(t0.elapsed() < ANSWER_WITHIN, "root's psql took {:?}", t0.elapsed());
    }

    /// psql over TCP with the password; (stdout, stderr, ok).
    fn tcp_psql(&self, password: &str, sql: &str) -> (String, String, bool) {
        let conn = format!("host=127.0.0.1 port={} user=ops dbname=sockql", self.port);
        let o = Command::new("ip")
            .args(["netns", "exec", &self.ns.name, "psql", "-X", "-A", "-t", &conn, "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "8")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        crate::common::output_of(o)
    }

    /// GET /metrics is answered (200) within ANSWER_WITHIN.
    fn scrape(&self) {
        let t0 = Instant::now();
        let port = self.http;
        let head = self.ns.enter(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
            s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
            write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
            let mut text = String::new();
            s.read_to_string(&mut text).ok()?;
            text.lines().next().map(str::to_string)
        });
        assert_eq!(head.as_deref(), Some("HTTP/1.1 200 OK"), "the scrape during the attack");
        assert!(t0.elapsed() < ANSWER_WITHIN, "the scrape took {:?}", t0.elapsed());
    }

    /// A raw connection to the unix socket, as root.
    fn unix(&self) -> Conn {
        let s = UnixStream::connect(self.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn::Unix(s)
    }

    /// A raw TCP connection inside the namespace.
    fn tcp(&self) -> Conn {
        let port = self.port;
        let s = self.ns.enter(move || TcpStream::connect(("127.0.0.1", port)).unwrap());
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Conn::Tcp(s)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client connection speaking raw protocol.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Conn {
    fn set_read_timeout(&self, t: Duration) {
        let _ = match self {
            Conn::Unix(s) => s.set_read_timeout(Some(t)),
            Conn::Tcp(s) => s.set_read_timeout(Some(t)),
        };
    }

    /// The next backend message: (type, body); None at EOF or timeout.
    fn message(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.read_exact(&mut head).ok()?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let mut body = vec![0; usize::try_from(len).ok()?.checked_sub(4)?];
        self.read_exact(&mut body).ok()?;
        Some((head[0], body))
    }

    /// Messages up to ReadyForQuery, or to the end of the connection.
    fn until_ready(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(m) = self.message() {
            let ready = m.0 == b'Z';
            out.push(m);
            if ready {
                break;
            }
        }
        out
    }

    /// True if the server closed the connection (EOF, reset) within `t`.
    fn closed_within(&mut self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        let mut buf = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.set_read_timeout(left.max(Duration::from_millis(1)));
            match self.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(format!("user\0{user}\0database\0sockql\0\0").as_bytes());
    let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

/// The SQLSTATE of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

fn error_text(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find_map(|f| f.strip_prefix(b"M"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

/// A root session on the unix socket, logged in.
fn logged_in(server: &Server) -> Conn {
    let mut c = server.unix();
    c.write_all(&startup("root")).unwrap();
    let got = c.until_ready();
    assert_eq!(got.last().map(|m| m.0), Some(b'Z'), "login: {got:?}");
    c
}

fn simple_select_1(c: &mut Conn) -> bool {
    if c.write_all(&typed(b'Q', b"SELECT 1\0")).is_err() {
        return false;
    }
    let got = c.until_ready();
    got.iter().any(|m| m.0 == b'D' && m.1.ends_with(b"1")) && got.last().map(|m| m.0) == Some(b'Z')
}

// ---------------------------------------------------------------------
// (3) Messages larger than the SQL bound, and prepared statements without end
// ---------------------------------------------------------------------

#[test]
fn pg_attack_an_oversized_message_is_refused_before_its_body_is_read() {
    let mut server = Server::start("pgbig", None, 0, &[], None);
    let before = server.warmed_hwm();
    // Three sessions each declare a 300 MB Query and send its body, 1 MiB
    // at a time, for as long as the server reads.
    let declared: i32 = 300 << 20;
    let mut threads = Vec::new();
    for _ in 0..3 {
        let mut c = logged_in(&server);
        threads.push(std::thread::spawn(move || {
            let mut head = vec![b'Q'];
            head.extend_from_slice(&declared.to_be_bytes());
            c.write_all(&head).unwrap();
            let chunk = vec![b' '; 1 << 20];
            let mut sent = 0usize;
            while sent < declared as usize - (1 << 20) {
                if c.write_all(&chunk).is_err() {
                    break;
                }
                sent += chunk.len();
            }
            (c.message(), sent)
        }));
    }
    // Root and a scrape are answered while they send.
    server.root_psql();
    server.scrape();
    for t in threads {
        let (reply, sent) = t.join().unwrap();
        let (kind, body) = reply.expect("an ErrorResponse before the connection closes");
        assert_eq!((kind, sqlstate(&body).as_str()), (b'E', "54000"), "{}", error_text(&body));
        assert!(error_text(&body).contains("refused unread"), "{}", error_text(&body));
        assert!(sent < 64 << 20, "the server read on: {sent} bytes went in before it closed");
    }
    let grew = server.vm_hwm().saturating_sub(before);
    eprintln!("VmHWM {before} KiB before the attack, grew by {grew} KiB");
    // Ceiling: 32 MiB over what the server had before (it would hold 900 MB).
    assert!(grew < 32 << 10, "peak memory grew by {grew} KiB");
    server.assert_sound("oversized messages");
    server.root_psql();
}

#[test]
fn pg_attack_prepared_statements_are_bounded_in_count_and_size() {
    let mut server = Server::start("pgprep", None, 1, &[], None);
    let before = server.warmed_hwm();
    let mut c = logged_in(&server);
    // 48 named statements of 512 KiB of text each (24 MiB), each with Sync.
    let literal = "x".repeat(512 << 10);
    let (mut parsed, mut refused) = (0, Vec::new());
    for i in 0..48 {
        let mut body = format!("big{i}\0SELECT '{literal}'\0").into_bytes();
        body.extend_from_slice(&0u16.to_be_bytes());
        c.write_all(&typed(b'P', &body)).unwrap();
        c.write_all(&typed(b'S', b"")).unwrap();
        for (kind, body) in c.until_ready() {
            match kind {
                b'1' => parsed += 1,
                b'E' => refused.push((sqlstate(&body), error_text(&body))),
                _ => {}
            }
        }
    }
    // 16 MiB at twice the text each: 15 fit, and the rest are refused.
    assert_eq!(parsed, 15, "{refused:?}");
    assert_eq!(refused.len(), 33);
    assert!(refused.iter().all(|(code, text)| code == "54000" && text.contains("16 MiB")), "{refused:?}");
    // Closing one makes room for one more.
    let mut close = vec![b'S'];
    close.extend_from_slice(b"big0\0");
    c.write_all(&typed(b'C', &close)).unwrap();
    let mut body = format!("again\0SELECT '{literal}'\0").into_bytes();
    body.extend_from_slice(&0u16.to_be_bytes());
    c.write_all(&typed(b'P', &body)).unwrap();
    c.write_all(&typed(b'S', b"")).unwrap();
    let got = c.until_ready();
    assert!(got.iter().any(|m| m.0 == b'3') && got.iter().any(|m| m.0 == b'1'), "{got:?}");
    assert!(simple_select_1(&mut c), "the session goes on");

    // Count: 1,000 small statements, and the 1,001st is refused.
    let mut d = logged_in(&server);
    let mut batch = Vec::new();
    for i in 0..1001 {
        let mut body = format!("s{i}\0SELECT {i}\0").into_bytes();
        body.extend_from_slice(&0u16.to_be_bytes());
        batch.extend(typed(b'P', &body));
    }
    batch.extend(typed(b'S', b""));
    let writer = {
        let mut w = match &d {
            Conn::Unix(s) => s.try_clone().unwrap(),
            Conn::Tcp(_) => unreachable!(),
        };
        std::thread::spawn(move || w.write_all(&batch).unwrap())
    };
    d.set_read_timeout(Duration::from_secs(120));
    let got = d.until_ready();
    writer.join().unwrap();
    let complete = got.iter().filter(|m| m.0 == b'1').count();
    let errors: Vec<String> = got.iter().filter(|m| m.0 == b'E').map(|m| error_text(&m.1)).collect();
    assert_eq!((complete, errors.len()), (1000, 1), "{errors:?}");
    assert!(errors[0].contains("at most 1000"), "{errors:?}");

    let grew = server.vm_hwm().saturating_sub(before);
    eprintln!("VmHWM {before} KiB before the attack, grew by {grew} KiB");
    // Ceiling: 160 MiB over the start (planning 24 MiB of SELECT text
    // costs a few copies of it; unbounded it grows with every statement).
    assert!(grew < 160 << 10, "peak memory grew by {grew} KiB");
    server.assert_sound("prepared statements");
    server.root_psql();
}

// ---------------------------------------------------------------------
// (10) A local user's silent connections to the unix socket
// ---------------------------------------------------------------------

/// As nobody (setpriv), open `n` connections to `socket` without sending
/// a byte and hold them; returns once they are open, with how many.
fn nobody_holds(socket: &Path, n: usize) -> (std::process::Child, usize) {
    let script = format!(
        "import socket,sys,resource\n\
         resource.setrlimit(resource.RLIMIT_NOFILE,({n}+64,{n}+64))\n\
         held=[]\n\
         for i in range({n}):\n\
         \x20   s=socket.socket(socket.AF_UNIX); s.setblocking(False)\n\
         \x20   try:\n\
         \x20       s.connect({path:?}); held.append(s)\n\
         \x20   except OSError:\n\
         \x20       s.close()\n\
         print(len(held), flush=True)\n\
         sys.stdin.read()\n",
        path = socket.display().to_string()
    );
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    (child, line.trim().parse().unwrap_or(0))
}

#[test]
fn pg_attack_a_local_users_silent_connections_do_not_exhaust_descriptors() {
    require_root();
    // The server's descriptor limit is 1,024; nobody opens 3,000.
    let mut server = Server::start("pgflood", None, 2, &[], Some("1024:1024"));
    let (mut attacker, opened) = nobody_holds(&server.socket(), 3000);
    assert!(opened > 1024, "nobody opened {opened} connections");
    // Not admitted: each was closed at accept, none is held.
    eventually(WAIT, || (server.open_fds() < 100).then_some(()));
    server.root_psql();
    server.scrape();
    server.assert_sound("flood of a user who is not admitted");
    drop(attacker.stdin.take());
    let _ = attacker.wait();

    // Admitted through --pg-group, nobody's silent connections hold at
    // most its pre-auth places (8), each at most 5 s.
    let mut server = Server::start("pgfloodg", None, 3, &["--pg-group", "nogroup"], Some("1024:1024"));
    let (mut attacker, opened) = nobody_holds(&server.socket(), 3000);
    assert!(opened > 1024, "nobody opened {opened} connections");
    server.root_psql();
    server.scrape();
    let fds = server.open_fds();
    assert!(fds < 100, "the server holds {fds} descriptors");
    server.assert_sound("flood of an admitted user");
    drop(attacker.stdin.take());
    let _ = attacker.wait();
}

// ---------------------------------------------------------------------
// (11) Clients that never log in; root's reserved session
// ---------------------------------------------------------------------

fn password_file(server_dir: &Path) -> PathBuf {
    let pw = server_dir.with_extension("pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    pw
}

#[test]
fn pg_attack_tcp_clients_that_never_log_in_hold_no_session() {
    let scratch = std::env::temp_dir().join(format!("sockql-pgattack-silent-{}", std::process::id()));
    let pw = password_file(&scratch);
    let mut server = Server::start(
        "pgsilent",
        Some("127.0.0.1:0"),
        4,
        &["--pg-password-file", pw.to_str().unwrap(), "--pg-max-connections", "2"],
        None,
    );
    // 16 connections that never send a byte, and 16 that stop halfway
    // through their startup packet.
    let mut silent: Vec<Conn> = (0..16).map(|_| server.tcp()).collect();
    for _ in 0..16 {
        let mut c = server.tcp();
        c.write_all(&startup("ops")[..10]).unwrap();
        silent.push(c);
    }
    // A client with the password gets in at once, twice over.
    for _ in 0..2 {
        let t0 = Instant::now();
        let (out, err, ok) = server.tcp_psql("correct horse", "SELECT 1");
        assert!(ok && out.trim() == "1", "{err}");
        assert!(t0.elapsed() < ANSWER_WITHIN, "{:?}", t0.elapsed());
    }
    server.scrape();
    // The silent ones are closed by the 5 s login deadline.
    let t0 = Instant::now();
    for c in &mut silent {
        assert!(c.closed_within(Duration::from_secs(8)), "a silent connection is still open after {:?}", t0.elapsed());
    }
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    server.assert_sound("silent TCP clients");
    let _ = std::fs::remove_file(&pw);
}

/// A local user's flood of TCP connections that never log in: every local
/// user connects from 127.0.0.1, so when pre-auth places were kept per
/// address, the flood evicted every other user's login in progress. Now a
/// loopback peer is the uid owning its socket (sock_diag), and the flood
/// evicts only its own user's connections: root's logins with the password
/// all succeed while user nobody opens connections as fast as it can.
#[test]
fn pg_attack_a_users_tcp_flood_evicts_only_its_own_logins() {
    require_root();
    let scratch = std::env::temp_dir().join(format!("sockql-pgattack-flood-{}", std::process::id()));
    let pw = password_file(&scratch);
    let mut server =
        Server::start("pgflood", Some("127.0.0.1:0"), 6, &["--pg-password-file", pw.to_str().unwrap()], None);
    // nobody: open connections in a loop, each sending half a startup
    // packet, never finishing; bounded to 60 s and closed when killed.
    let flood = format!(
        "import socket,time\nend=time.time()+60\nheld=[]\nwhile time.time()<end:\n  try:\n    s=socket.create_connection(('127.0.0.1',{}))\n    s.send(b'\\x00\\x00\\x00\\x30')\n    held.append(s)\n  except OSError:\n    pass\n  held=held[-200:]\n",
        server.port
    );
    let mut attacker = Command::new("ip")
        .args([
            "netns",
            "exec",
            &server.ns.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            &flood,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The flood is under way once nobody holds more connections than the
    // 8 pre-auth places a peer may have (the rest were evicted).
    let filter = format!("sport = :{}", server.port);
    crate::common::eventually(Duration::from_secs(10), || {
        let o = Command::new("ip")
            .args(["netns", "exec", &server.ns.name, "ss", "-Htn", "state", "established", &filter])
            .output()
            .ok()?;
        (String::from_utf8_lossy(&o.stdout).lines().count() > 8).then_some(())
    });
    assert!(attacker.try_wait().unwrap().is_none(), "the flood ended early");
    for i in 0..5 {
        let t0 = Instant::now();
        let (out, err, ok) = server.tcp_psql("correct horse", "SELECT 1");
        assert!(ok && out.trim() == "1", "login {i} during the flood failed after {:?}: {err}", t0.elapsed());
        assert!(t0.elapsed() < ANSWER_WITHIN, "{:?}", t0.elapsed());
    }
    let _ = attacker.kill();
    let _ = attacker.wait();
    server.assert_sound("a user's TCP flood");
    let _ = std::fs::remove_file(&pw);
}

#[test]
fn pg_attack_root_gets_in_when_others_hold_every_session() {
    require_root();
    let mut server = Server::start("pgreserve", None, 5, &["--pg-group", "nogroup", "--pg-max-connections", "2"], None);
    // nobody (a member of nogroup) holds both sessions, logged in.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut psql = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "stdbuf", "-oL", "psql", "-X", "-A", "-t", "-h"])
            .args([server.run_dir().to_str().unwrap(), "-p", &server.port.to_string(), "-U", "nobody", "sockql"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(psql.stdin.as_mut().unwrap(), "SELECT 'in';").unwrap();
        let mut line = String::new();
        BufReader::new(psql.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "in");
        holders.push(psql);
    }
    // A third is told the server is full; root still gets in.
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "psql",
            "-X",
            "-h",
            server.run_dir().to_str().unwrap(),
            "-p",
            &server.port.to_string(),
            "sockql",
            "-c",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("too many connections"), "{err}");
    server.root_psql();
    server.scrape();
    server.assert_sound("sessions held by another user");
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.wait();
    }
}

// ---------------------------------------------------------------------
// (13) A malformed Parse; (20) the user a failed login names
// ---------------------------------------------------------------------

#[test]
fn pg_attack_a_malformed_parse_is_a_protocol_violation_not_a_panic() {
    let mut server = Server::start("pgparse", None, 6, &[], None);
    let mut c = logged_in(&server);
    // 65,535 parameter types declared, none sent.
    c.write_all(&typed(b'P', b"a\0SELECT $1\0\xff\xff")).unwrap();
    let (kind, body) = c.message().expect("an ErrorResponse");
    assert_eq!((kind, sqlstate(&body).as_str()), (b'E', "08P01"), "{}", error_text(&body));
    assert!(c.closed_within(Duration::from_secs(5)), "the connection is closed");
    server.assert_sound("malformed Parse");
    let mut again = logged_in(&server);
    assert!(simple_select_1(&mut again));
    server.root_psql();
}

#[test]
fn pg_attack_a_failed_scram_login_names_the_startup_user() {
    let scratch = std::env::temp_dir().join(format!("sockql-pgattack-scram-{}", std::process::id()));
    let pw = password_file(&scratch);
    let mut server =
        Server::start("pgscram", Some("127.0.0.1:0"), 7, &["--pg-password-file", pw.to_str().unwrap()], None);
    let (_, err, ok) = server.tcp_psql("wrong", "SELECT 1");
    assert!(!ok && err.to_lowercase().contains("password authentication failed for user \"ops\""), "{err}");
    let (out, err, ok) = server.tcp_psql("correct horse", "SELECT 1");
    assert!(ok && out.trim() == "1", "{err}");
    server.assert_sound("failed login");
    let _ = std::fs::remove_file(&pw);
}

// ---------------------------------------------------------------------
// Planning a prepared statement (Parse) takes a query slot
// ---------------------------------------------------------------------

/// A statement within every statement-size bound whose planning takes
/// seconds on a debug build: 32 joins (the bound) of `sockets`, every
/// column of all 33 selected. Measured on this machine's debug build: one
/// Parse of it plans in 3.1 s, two at once in 5.8 s each.
fn slow_to_plan() -> String {
    let joins: Vec<String> = (1..=32).map(|i| format!("JOIN sockets s{i} ON s{i}.inode = s0.inode")).collect();
    format!("SELECT * FROM sockets s0 {}", joins.join(" "))
}

/// Query threads (planning or running) of the server now.
fn query_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "sockql-query"))
        .count()
}

/// Parse (planning a prepared statement) is query work: with
/// `--pg-max-queries 1` root has two slots (the shared one and its
/// reserved one); two clients' Parse of a statement that takes seconds to
/// plan hold both until their planning threads finish, even after
/// --timeout (1 s) has answered them. A third client's query meanwhile
/// waits its --timeout for a slot and is refused (53300), instead of
/// running beside the planning; once planning ends the slots are free
/// again. Before acd5f94 Parse took no slot: the third client's SELECT 1
/// was answered at once while any number of plans ran.
#[test]
fn pg_attack_planning_a_prepared_statement_holds_a_query_slot() {
    // One live metric report: the counters over event streams (which
    // serve keeps listening to in the background, on query threads of
    // their own) would add threads of the same name to the count below.
    let mut server = Server::start(
        "pgplanslot",
        None,
        10,
        &["--pg-max-queries", "1", "--timeout", "1s", "--metrics", "metric_sockets"],
        None,
    );
    let sql = slow_to_plan();
    let mut planners: Vec<Conn> = (0..2).map(|_| logged_in(&server)).collect();
    let t0 = Instant::now();
    for c in &mut planners {
        let mut body = format!("slow\0{sql}\0").into_bytes();
        body.extend_from_slice(&0u16.to_be_bytes());
        c.write_all(&typed(b'P', &body)).unwrap();
        c.write_all(&typed(b'S', b"")).unwrap();
    }
    // --timeout answers both Parses (the plans go on).
    for c in &mut planners {
        let got = c.until_ready();
        let codes: Vec<String> = got.iter().filter(|m| m.0 == b'E').map(|m| sqlstate(&m.1)).collect();
        assert_eq!(codes.len(), 1, "a Parse that plans for seconds ends at --timeout: {got:?}");
    }
    let answered = t0.elapsed();
    let planning = query_threads(server.pid());
    assert_eq!(planning, 2, "the two plans still run after --timeout answered them ({answered:?})");
    // A third client's query finds no slot within its --timeout.
    let mut third = logged_in(&server);
    let asked = Instant::now();
    third.write_all(&typed(b'Q', b"SELECT 1\0")).unwrap();
    let got = third.until_ready();
    let refused: Vec<(String, String)> =
        got.iter().filter(|m| m.0 == b'E').map(|m| (sqlstate(&m.1), error_text(&m.1))).collect();
    assert!(!got.iter().any(|m| m.0 == b'D'), "a query ran beside two plans holding both of root's slots: {got:?}");
    assert_eq!(refused.len(), 1, "{got:?}");
    assert_eq!(refused[0].0, "53300", "{refused:?}");
    assert!(asked.elapsed() >= Duration::from_millis(900), "refused after {:?}, before its --timeout", asked.elapsed());
    // The planning threads were still running when it was refused.
    assert!(query_threads(server.pid()) >= 1, "the plans ended before the refusal; the test proved nothing");
    // The slots come back when planning ends: the same client's next
    // SELECT 1 is answered, and no query thread is left.
    let back = eventually(Duration::from_secs(60), || simple_select_1(&mut third).then_some(t0.elapsed()));
    eventually(WAIT, || (query_threads(server.pid()) == 0).then_some(()));
    eprintln!("Parses answered by --timeout after {answered:?}; the slots were free again after {back:?}");
    server.assert_sound("planning holds a slot");
    server.root_psql();
}

// ---------------------------------------------------------------------
// The protocol fuzzer
// ---------------------------------------------------------------------

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn untyped(code: i32, body: &[u8]) -> Vec<u8> {
    let mut m = ((body.len() + 8) as i32).to_be_bytes().to_vec();
    m.extend_from_slice(&code.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A header with a length of the fuzzer's choosing (zero, negative,
/// huge, off by a few) and a body that may not match it.
fn lying(kind: u8, declared: i32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&declared.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// A plausible frontend message after login.
fn query_message(rng: &mut Rng) -> Vec<u8> {
    let name = ["", "s", "p1", "x\u{e9}"][rng.below(4)];
    let sql = [
        "SELECT 1",
        "SELECT $1",
        "SELECT $1, $2",
        "BEGIN",
        "SHOW timezone",
        "SELECT count(*) FROM sockets",
        "",
        "SELEC",
        "SELECT 1; SELECT 2",
    ][rng.below(9)];
    let cstr = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    match rng.below(10) {
        0 => typed(b'Q', &cstr(sql)),
        1 => {
            let mut b = cstr(name);
            b.extend(cstr(sql));
            let n = rng.below(3) as u16;
            b.extend(n.to_be_bytes());
            for _ in 0..n {
                b.extend([0u32, 23, 25, 16][rng.below(4)].to_be_bytes());
            }
            typed(b'P', &b)
        }
        2 => {
            let mut b = cstr(name);
            b.extend(cstr(["", "s", "p1"][rng.below(3)]));
            let nf = rng.below(3) as u16;
            b.extend(nf.to_be_bytes());
            for _ in 0..nf {
                b.extend((rng.below(3) as i16).to_be_bytes());
            }
            let np = rng.below(3) as u16;
            b.extend(np.to_be_bytes());
            for _ in 0..np {
                if rng.chance(20) {
                    b.extend((-1i32).to_be_bytes());
                } else {
                    let v = [&b"1"[..], b"abc", b"\x00\x00\x00\x07", b""][rng.below(4)];
                    b.extend((v.len() as i32).to_be_bytes());
                    b.extend(v);
                }
            }
            let nr = rng.below(4) as u16;
            b.extend(nr.to_be_bytes());
            for _ in 0..nr {
                b.extend((rng.below(3) as i16).to_be_bytes());
            }
            typed(b'B', &b)
        }
        3 => {
            let mut b = cstr(name);
            b.extend((rng.below(3) as i32 - 1).to_be_bytes());
            typed(b'E', &b)
        }
        4 => {
            let mut b = vec![[b'S', b'P', b'X'][rng.below(3)]];
            b.extend(cstr(name));
            typed(b'D', &b)
        }
        5 => {
            let mut b = vec![[b'S', b'P'][rng.below(2)]];
            b.extend(cstr(name));
            typed(b'C', &b)
        }
        6 => typed(b'S', b""),
        7 => typed(b'H', b""),
        8 => {
            let (kind, n) = ([b'd', b'c', b'f', b'p', b'F', 0, b'x'][rng.below(7)], rng.below(16));
            typed(kind, &rng.bytes(n))
        }
        _ => typed(b'Q', &cstr(&format!("SELECT {}", rng.below(1000)))),
    }
}

/// Damage a message: truncate it, flip bytes, or lie about its length.
fn mutate(rng: &mut Rng, mut m: Vec<u8>) -> Vec<u8> {
    match rng.below(6) {
        0 if m.len() > 1 => {
            let keep = rng.below(m.len());
            m.truncate(keep);
        }
        1 if !m.is_empty() => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
        }
        2 if m.len() >= 5 => {
            let len = [0i32, -1, 3, 4, i32::MIN, i32::MAX, 0x3fff_fffe, (m.len() as i32) + rng.below(8) as i32 - 4]
                [rng.below(8)];
            m[1..5].copy_from_slice(&len.to_be_bytes());
        }
        3 => {
            let n = rng.below(32);
            m.extend(rng.bytes(n));
        }
        _ => {}
    }
    m
}

/// A pre-login sequence for either endpoint.
fn prelogin(rng: &mut Rng, scram: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match rng.below(12) {
        0 => out.push(untyped(80_877_103, b"")), // SSLRequest
        1 => out.push(untyped(80_877_104, b"")), // GSSENCRequest
        2 => {
            // CancelRequest, of a good length or not.
            let n = [8, 4, 260, 300][rng.below(4)];
            out.push(untyped(80_877_102, &rng.bytes(n)));
        }
        3 => out.push(untyped(196_608 + rng.below(4) as i32, b"user\0root\0")), // no terminator
        4 => out.push(untyped(0x0004_0000, b"user\0root\0\0")),                 // protocol 4.0
        5 => out.push(lying(0, [0, -1, 7, 10_001, i32::MAX][rng.below(5)], &rng.bytes(8))[1..].to_vec()),
        6 => out.push(typed(b'Q', b"SELECT 1\0")), // a query before startup
        _ => out.push(startup(["root", "ops", "", "x\u{1}"][rng.below(4)])),
    }
    if rng.chance(30) {
        out.push(startup("root")); // a second startup
    }
    if scram && rng.chance(70) {
        let mech = ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "OAUTHBEARER", "", "PLAIN"][rng.below(5)];
        let data =
            ["n,,n=,r=abcdef", "y,,n=*,r=", "p=tls-server-end-point,,n=,r=x", "", "n,,", "\u{0}\u{0}"][rng.below(6)];
        let mut b = mech.as_bytes().to_vec();
        b.push(0);
        let len =
            if rng.chance(20) { [-2i32, 1 << 20, data.len() as i32 + 3][rng.below(3)] } else { data.len() as i32 };
        b.extend(len.to_be_bytes());
        b.extend(data.as_bytes());
        out.push(typed(b'p', &b));
        if rng.chance(50) {
            out.push(typed(b'p', format!("c=biws,r=abcdef{},p=AAAA", rng.below(100)).as_bytes()));
        }
    }
    out
}

/// Send `messages` at once, say there is no more, and read what comes
/// back until the server closes (or a few seconds pass).
fn exchange(c: &mut Conn, messages: &[Vec<u8>]) {
    let all: Vec<u8> = messages.concat();
    let _ = c.write_all(&all);
    c.shutdown_write();
    let _ = c.closed_within(Duration::from_secs(5));
}

/// A certificate for 127.0.0.1 and its key, in `dir`: (cert, key).
fn loopback_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        // An end-entity certificate (not a CA), as rustls requires of a peer.
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .args(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
    (cert, key)
}

/// A TLS client (rustls, as the server uses) trusting only `cert`.
fn tls_client(cert: &Path) -> Arc<tokio_rustls::rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap();
    Arc::new(config.with_root_certificates(roots).with_no_client_auth())
}

fn tls_connection(config: &Arc<tokio_rustls::rustls::ClientConfig>) -> tokio_rustls::rustls::ClientConnection {
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    tokio_rustls::rustls::ClientConnection::new(config.clone(), name).unwrap()
}

/// A real ClientHello (fresh random, key share), as TLS records.
fn client_hello(config: &Arc<tokio_rustls::rustls::ClientConfig>) -> Vec<u8> {
    let mut out = Vec::new();
    tls_connection(config).write_tls(&mut out).unwrap();
    out
}

/// What a hostile client sends once SSLRequest was answered 'S': garbage,
/// records that lie about their length, a ClientHello cut short, damaged,
/// followed by garbage or sent twice, alert and ChangeCipherSpec floods.
fn tls_junk(rng: &mut Rng, hello: &[u8]) -> Vec<u8> {
    let record = |kind: u8, len: u16, body: &[u8]| {
        let mut r = vec![kind, 3, 3];
        r.extend(len.to_be_bytes());
        r.extend_from_slice(body);
        r
    };
    match rng.below(9) {
        0 => {
            let n = 1 + rng.below(4096);
            rng.bytes(n)
        }
        1 => {
            // A record header claiming up to 64 KiB (TLS allows 16 KiB + 2,048).
            let len = [0u16, 1, 0x4000, 0x4001, 0x4800, 0x4801, 0xffff][rng.below(7)];
            let kind = [20u8, 21, 22, 23, 24, 0, 0xff][rng.below(7)];
            let n = rng.below(512);
            record(kind, len, &rng.bytes(n))
        }
        2 => hello[..rng.below(hello.len())].to_vec(),
        3 => {
            let n = rng.below(2048);
            [hello.to_vec(), rng.bytes(n)].concat()
        }
        4 => {
            let mut h = hello.to_vec();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(h.len());
                h[i] = rng.next() as u8;
            }
            h
        }
        5 => [hello.to_vec(), hello.to_vec()].concat(),
        6 => record(21, 2, &[2, 40]).repeat(1 + rng.below(2000)),
        7 => record(20, 1, &[1]).repeat(1 + rng.below(2000)),
        _ => {
            // The ClientHello in one-byte handshake fragments, then silence.
            let body = hello.get(5..).unwrap_or_default();
            let keep = rng.below(body.len().max(1));
            body[..keep].iter().flat_map(|b| record(22, 1, &[*b])).collect()
        }
    }
}

/// One TLS case over `conn` (already past SSLRequest and 'S'): a full
/// handshake and then `after` (raw bytes on the socket when `raw`, else
/// through TLS followed by close_notify); read until the server closes.
fn tls_after_handshake(
    conn: TcpStream,
    config: &Arc<tokio_rustls::rustls::ClientConfig>,
    after: &[u8],
    raw: bool,
) -> Result<(), String> {
    let mut tls = tokio_rustls::rustls::StreamOwned::new(tls_connection(config), conn);
    tls.conn.complete_io(&mut tls.sock).map_err(|e| e.to_string())?;
    if raw {
        let _ = tls.sock.write_all(after);
    } else {
        let _ = tls.write_all(after);
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    }
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match tls.sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// A client that logs in over TCP with SCRAM (as ops, with the password;
/// over TLS when asked), then sends one case's bytes and reads until the
/// server closes. One Python process serves every case: "LEN [tls]\n" and
/// the bytes in; "in" (logged in, sent) or "out REASON" back.
const LOGGED_IN_CLIENT: &str = r#"
import base64,hashlib,hmac,os,socket,ssl,struct,sys,time
port,pw,cafile=int(sys.argv[1]),sys.argv[2].encode(),sys.argv[3]
def recvn(s,n):
    b=b''
    while len(b)<n:
        c=s.recv(n-len(b))
        if not c: raise EOFError('closed')
        b+=c
    return b
def msg(s):
    h=recvn(s,5); return h[0:1],recvn(s,struct.unpack('>i',h[1:])[0]-4)
def login(tls):
    s=socket.create_connection(('127.0.0.1',port),timeout=10)
    if tls:
        s.sendall(struct.pack('>ii',8,80877103))
        if recvn(s,1)!=b'S': raise Exception('no TLS')
        s=ssl.create_default_context(cafile=cafile).wrap_socket(s,server_hostname='127.0.0.1')
    body=struct.pack('>i',196608)+b'user\0ops\0database\0sockql\0\0'
    s.sendall(struct.pack('>i',len(body)+4)+body)
    k,b=msg(s)
    if k!=b'R' or struct.unpack('>i',b[:4])[0]!=10: raise Exception('no SASL: %r'%b)
    bare='n=,r='+base64.b64encode(os.urandom(18)).decode()
    first=('n,,'+bare).encode()
    p=b'SCRAM-SHA-256\0'+struct.pack('>i',len(first))+first
    s.sendall(b'p'+struct.pack('>i',len(p)+4)+p)
    k,b=msg(s)
    sf=b[4:].decode(); a=dict(x.split('=',1) for x in sf.split(','))
    salted=hashlib.pbkdf2_hmac('sha256',pw,base64.b64decode(a['s']),int(a['i']))
    ck=hmac.new(salted,b'Client Key','sha256').digest()
    wo='c=biws,r='+a['r']
    sig=hmac.new(hashlib.sha256(ck).digest(),(bare+','+sf+','+wo).encode(),'sha256').digest()
    fin=(wo+',p='+base64.b64encode(bytes(x^y for x,y in zip(ck,sig))).decode()).encode()
    s.sendall(b'p'+struct.pack('>i',len(fin)+4)+fin)
    while True:
        k,b=msg(s)
        if k==b'Z': return s
        if k==b'E': raise Exception(b)
inp=sys.stdin.buffer
while True:
    line=inp.readline().split()
    if not line: break
    data=inp.read(int(line[0]))
    try: s=login(len(line)>1)
    except Exception as e:
        print('out',repr(e)[:300].replace('\n',' '),flush=True); continue
    s.settimeout(5)
    try:
        s.sendall(data)
        if isinstance(s,ssl.SSLSocket): s=s.unwrap()
        s.shutdown(socket.SHUT_WR)
        end=time.time()+5
        while time.time()<end and s.recv(65536): pass
    except (OSError,ValueError): pass
    s.close()
    print('in',flush=True)
"#;

/// The Python client above, running in the server's namespace.
struct LoggedInClient {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl LoggedInClient {
    fn start(server: &Server, cert: &Path) -> Self {
        let port = server.port.to_string();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &server.ns.name,
                "/usr/bin/python3",
                "-c",
                LOGGED_IN_CLIENT,
                &port,
                "correct horse",
                cert.to_str().unwrap(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        LoggedInClient { child, out }
    }

    /// Log in (over TLS if `tls`), send `bytes`; what the client said.
    fn case(&mut self, bytes: &[u8], tls: bool) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{}{}", bytes.len(), if tls { " tls" } else { "" }).unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }
}

impl Drop for LoggedInClient {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The fuzzer's modes; the time budget is shared among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Startup, login and messages over the unix socket.
    Unix,
    /// Before login over TCP (startup, SCRAM).
    TcpPrelogin,
    /// SSLRequest answered 'S', then hostile TLS records.
    TlsRecords,
    /// A complete TLS handshake, then garbage records or protocol messages
    /// through TLS.
    TlsSession,
    /// Logged in with the password over TCP (or TLS), then messages.
    TcpLoggedIn,
}

const MODES: [Mode; 5] = [Mode::Unix, Mode::TcpPrelogin, Mode::TlsRecords, Mode::TlsSession, Mode::TcpLoggedIn];

/// Messages after login: one to eight, some damaged.
fn session_messages(rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..1 + rng.below(8))
        .map(|_| {
            let m = query_message(rng);
            if rng.chance(30) {
                mutate(rng, m)
            } else {
                m
            }
        })
        .collect()
}

#[test]
fn pg_attack_protocol_fuzzer_finds_nothing() {
    let seed = std::env::var("SOCKQL_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    // The whole budget, shared by every mode (each case picks one).
    let budget = Duration::from_secs(std::env::var("SOCKQL_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(25));
    eprintln!("pg fuzzer seed {seed} (rerun with SOCKQL_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);
    let scratch = crate::common::Scratch::new("pgattack-fuzz");
    let pw = password_file(&scratch.0.join("pw"));
    let (cert, key) = loopback_cert(&scratch.0);
    let mut unix = Server::start("pgfuzzu", None, 8, &[], None);
    let tcp_args = [
        "--pg-password-file",
        pw.to_str().unwrap(),
        "--pg-tls-cert",
        cert.to_str().unwrap(),
        "--pg-tls-key",
        key.to_str().unwrap(),
    ];
    let mut tcp = Server::start("pgfuzzt", Some("127.0.0.1:0"), 9, &tcp_args, None);
    let tls = tls_client(&cert);
    let mut logged_in_client = LoggedInClient::start(&tcp, &cert);
    tcp.scrape();
    let (tcp_hwm, tcp_fds) = (tcp.vm_hwm(), tcp.open_fds());

    // Seeds: what broke or bloated the server before, then random cases.
    let seeds: Vec<Vec<Vec<u8>>> = vec![
        vec![startup("root"), typed(b'P', b"a\0SELECT $1\0\xff\xff")],
        vec![startup("root"), lying(b'Q', 300 << 20, b"SELECT")],
        vec![startup("root"), lying(b'S', 0, b"")],
        vec![startup("root"), lying(b'Q', -5, b"")],
        vec![startup("root"), typed(b'Q', b"SELECT 1")],
        vec![startup("root"), typed(b'B', b"\0\0\0\0\0\x01\x7f\xff\xff\xff\0\0")],
        vec![startup("root"), typed(b'C', b"")],
        vec![startup("root"), typed(b'E', b"")],
        vec![startup("root"), typed(b'!', b"")],
        vec![startup("root"), startup("root")],
        vec![typed(b'Q', b"SELECT 1\0")],
        vec![untyped(80_877_103, b""), untyped(80_877_103, b"")],
        vec![
            startup("root"),
            typed(b'P', b"s\0SELECT 1, 2\0\0\0"),
            typed(b'B', b"\0s\0\0\0\0\0\0\x03\0\0\0\0\0\0"),
            typed(b'E', b"\0\0\0\0\0"),
            typed(b'S', b""),
        ],
        vec![
            startup("root"),
            typed(b'P', b"s\0SELECT $1\0\0\0"),
            typed(b'B', b"\0s\0\0\x02\0\x01\0\x01\0\x01\0\0\0\x01\x01\0\0"),
            typed(b'E', b"\0\0\0\0\0"),
            typed(b'S', b""),
        ],
    ];
    let started = Instant::now();
    let mut cases = 0usize;
    let mut per_mode = [0usize; MODES.len()];
    let mut i = 0usize;
    while i < seeds.len() || started.elapsed() < budget {
        // After the seeds, the modes in turn, so each gets its share.
        let mode = if i < seeds.len() { Mode::Unix } else { MODES[(i - seeds.len()) % MODES.len()] };
        let messages: Vec<Vec<u8>>;
        match mode {
            Mode::Unix => {
                messages = if i < seeds.len() {
                    seeds[i].clone()
                } else {
                    let mut ms = if rng.chance(85) { vec![startup("root")] } else { prelogin(&mut rng, false) };
                    ms.extend(session_messages(&mut rng));
                    ms
                };
                exchange(&mut unix.unix(), &messages);
            }
            Mode::TcpPrelogin => {
                messages = prelogin(&mut rng, true)
                    .into_iter()
                    .map(|m| if rng.chance(25) { mutate(&mut rng, m) } else { m })
                    .collect();
                exchange(&mut tcp.tcp(), &messages);
            }
            Mode::TlsRecords => {
                let mut c = tcp.tcp();
                c.write_all(&untyped(80_877_103, b"")).unwrap();
                let mut answer = [0u8; 1];
                c.read_exact(&mut answer).unwrap();
                assert_eq!(&answer, b"S", "SSLRequest is answered S");
                messages = vec![tls_junk(&mut rng, &client_hello(&tls))];
                exchange(&mut c, &messages);
            }
            Mode::TlsSession => {
                let Conn::Tcp(mut c) = tcp.tcp() else { unreachable!() };
                c.write_all(&untyped(80_877_103, b"")).unwrap();
                let mut answer = [0u8; 1];
                c.read_exact(&mut answer).unwrap();
                assert_eq!(&answer, b"S", "SSLRequest is answered S");
                let raw = rng.chance(40);
                messages = if raw {
                    vec![tls_junk(&mut rng, &client_hello(&tls))]
                } else {
                    let mut ms = prelogin(&mut rng, true)
                        .into_iter()
                        .map(|m| if rng.chance(25) { mutate(&mut rng, m) } else { m })
                        .collect::<Vec<_>>();
                    ms.extend(session_messages(&mut rng));
                    ms
                };
                if let Err(e) = tls_after_handshake(c, &tls, &messages.concat(), raw) {
                    panic!("seed {seed}, case {cases}: the TLS handshake failed: {e}");
                }
            }
            Mode::TcpLoggedIn => {
                messages = session_messages(&mut rng);
                let over_tls = rng.chance(50);
                let said = logged_in_client.case(&messages.concat(), over_tls);
                assert_eq!(
                    said, "in",
                    "seed {seed}, case {cases}: a good login with the password (tls: {over_tls}) failed"
                );
            }
        }
        i += 1;
        cases += 1;
        if let Some(n) = MODES.iter().position(|m| *m == mode) {
            per_mode[n] += 1;
        }
        unix.assert_sound(&format!("seed {seed}, case {cases} ({mode:?}): {messages:?}"));
        tcp.assert_sound(&format!("seed {seed}, case {cases} ({mode:?}): {messages:?}"));
        if cases.is_multiple_of(25) {
            // A fresh root session still answers.
            let mut fresh = logged_in(&unix);
            assert!(simple_select_1(&mut fresh), "seed {seed}, after case {cases}");
        }
    }
    eprintln!(
        "pg fuzzer: {cases} cases in {:?}, per mode {:?}",
        started.elapsed(),
        MODES.iter().zip(per_mode).collect::<Vec<_>>()
    );
    assert!(cases > 50, "only {cases} cases ran");
    assert!(per_mode.iter().all(|n| *n >= 5), "a mode ran fewer than 5 cases: {per_mode:?}");
    unix.root_psql();
    let (out, err, ok) = tcp.tcp_psql("correct horse", "SELECT 1");
    assert!(ok && out.trim() == "1", "{err}");
    // And over TLS, verifying the certificate.
    let verify = format!(
        "host=127.0.0.1 port={} user=ops dbname=sockql sslmode=verify-full sslrootcert={}",
        tcp.port,
        cert.display()
    );
    let o = Command::new("ip")
        .args(["netns", "exec", &tcp.ns.name, "psql", "-X", "-A", "-t", &verify, "-c", "SELECT 1"])
        .env("PGPASSWORD", "correct horse")
        .env("PGCONNECT_TIMEOUT", "8")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err, ok) = crate::common::output_of(o);
    assert!(ok && out.trim() == "1", "psql over TLS after fuzzing: {err}");
    // Bounded: what the cases held is given back.
    drop(logged_in_client);
    let grew = tcp.vm_hwm().saturating_sub(tcp_hwm);
    eprintln!("TCP/TLS server: VmHWM grew by {grew} KiB; {tcp_fds} descriptors before");
    assert!(grew < 64 << 10, "the TCP/TLS server's peak memory grew by {grew} KiB");
    // Descriptors too, but the query runtimes serve keeps between queries
    // (crates/query/src/query_runtimes.rs: at most two idle per nice value,
    // root's 0 and other users' 10; an epoll and an eventfd each), which
    // the fuzzing's concurrent queries may have made.
    const KEPT_RUNTIME_FDS: usize = 2 * 2 * 2;
    eventually(Duration::from_secs(10), || (tcp.open_fds() <= tcp_fds + 2 + KEPT_RUNTIME_FDS).then_some(()));
    unix.assert_sound("after fuzzing");
    tcp.assert_sound("after fuzzing");
}
