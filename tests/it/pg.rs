//! `sockql serve --pg`: real PostgreSQL clients (psql from
//! postgresql-client, psycopg from python3-psycopg) against the live
//! tables of a namespace the test fills, checked against ss and the
//! command line; who may connect (peer credentials, SCRAM, TLS off
//! loopback) checked with the clients' own errors.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{bin, eventually, my_comm, Scratch, WAIT};
use crate::events::{spawn_in, Reaped};
use crate::netns::{link, Netns};

/// Start `sockql serve` in `ns` with `args`; returns it once its
/// PostgreSQL line is on stderr (the rest of stderr is drained).
pub fn serve(ns: &Netns, args: &[&str]) -> (Reaped, String) {
    let (child, first, _) = serve_both(ns, args);
    (child, first)
}

/// As [`serve`], also returning the port of /metrics.
fn serve_both(ns: &Netns, args: &[&str]) -> (Reaped, String, u16) {
    let mut full = vec![bin(), "serve", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    let mut child = spawn_in(ns, &full);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    assert!(first.contains("PostgreSQL on"), "serve {args:?} said: {first}");
    let second = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let http = crate::serve::metrics_port(&second);
    std::thread::spawn(move || for _ in lines {});
    (child, first, http)
}

/// CPU seconds `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// psql with `args`, optionally as another user or in a namespace:
/// (stdout, stderr, success).
/// `as_user`: (user, group) to run as, with no supplementary groups.
pub fn psql(
    ns: Option<&Netns>,
    as_user: Option<(&str, &str)>,
    env: &[(&str, &str)],
    args: &[&str],
) -> (String, String, bool) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]);
            c
        }
        None => Command::new("env"),
    };
    if let Some((user, group)) = as_user {
        cmd.args(["setpriv", "--reuid", user, "--regid", group, "--clear-groups"]);
    }
    // -X: no ~/.psqlrc; -A -t: unaligned rows only; -v ON_ERROR_STOP.
    cmd.args(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]).args(args).envs(env.iter().copied());
    crate::common::output_of(cmd.stdin(Stdio::null()).output().unwrap())
}

fn unix_args(dir: &Path, port: u16) -> Vec<String> {
    vec![
        "-h".into(),
        dir.display().to_string(),
        "-p".into(),
        port.to_string(),
        "-U".into(),
        "root".into(),
        "-d".into(),
        "sockql".into(),
    ]
}

/// psql over the unix socket as root: the rows, or a panic with psql's error.
fn psql_rows(dir: &Path, port: u16, sql: &str) -> Vec<String> {
    let mut args = unix_args(dir, port);
    args.extend(["-c".into(), sql.into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, err, ok) = psql(None, None, &[], &refs);
    assert!(ok, "psql -c {sql}: {err}");
    out.lines().map(str::to_string).collect()
}

/// Run a psycopg script with Debian's python3; its stdout is one JSON value.
fn psycopg(script: &str) -> Value {
    let o = Command::new("/usr/bin/python3").args(["-c", script]).output().unwrap();
    let (out, err, ok) = crate::common::output_of(o);
    assert!(ok, "psycopg script failed: {err}\n{script}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn psql_and_psycopg_query_live_tables_and_reports_under_the_cli_policy() {
    let ns = Netns::new("pg");
    // Two established connections to a listener, all held by this process.
    let (listener, clients, accepted) = ns.enter(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let clients: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(l.local_addr().unwrap()).unwrap()).collect();
        let accepted: Vec<TcpStream> = (0..2).map(|_| l.accept().unwrap().0).collect();
        (l, clients, accepted)
    });
    let port = listener.local_addr().unwrap().port();
    let mut client_ports: Vec<String> = clients.iter().map(|c| c.local_addr().unwrap().port().to_string()).collect();
    client_ports.sort();
    let scratch = Scratch::new("pg-unix");
    // The socket directory does not exist yet: serve makes it.
    let dir = scratch.0.join("run");
    let (mut server, said) = serve(&ns, &["--pg", dir.to_str().unwrap(), "--pg-port", "5439"]);
    let socket = dir.join(".s.PGSQL.5439");
    assert!(said.contains(&socket.display().to_string()), "{said}");
    eventually(WAIT, || socket.exists().then_some(()));

    // \dt lists exactly the tables the command line lists.
    let listed = psql_rows(&dir, 5439, "\\dt");
    let mut names: Vec<String> = listed.iter().map(|l| l.split('|').nth(1).unwrap_or("").to_string()).collect();
    names.sort();
    let mut cli_tables: Vec<String> =
        crate::common::query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            .iter()
            .map(|r| r["table_name"].as_str().unwrap().to_string())
            .collect();
    cli_tables.sort();
    assert_eq!(names, cli_tables, "{listed:?}");
    assert!(listed.iter().all(|l| l.starts_with("public|") && l.contains("|table|")), "{listed:?}");
    // Grafana's table list (its query builder), as Grafana sends it.
    let grafana = "SELECT quote_ident(table_name) as \"table\" FROM information_schema.tables \
        WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog', '_timescaledb_cache', '_timescaledb_catalog', \
        '_timescaledb_internal', '_timescaledb_config', 'timescaledb_information', 'timescaledb_experimental') \
        AND table_type = 'BASE TABLE' AND quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = '\"$user\"' THEN user ELSE trim(s[i]) END \
        FROM generate_series(array_lower(string_to_array(current_setting('search_path'),','),1), \
        array_upper(string_to_array(current_setting('search_path'),','),1)) as i, string_to_array(current_setting('search_path'),',') s)";
    let mut for_grafana = psql_rows(&dir, 5439, grafana);
    for_grafana.sort();
    assert_eq!(for_grafana, cli_tables);

    // A join: the established sockets on the port and their owner, as ss sees them.
    let joined = psql_rows(
        &dir,
        5439,
        &format!(
            "SELECT s.remote_port, o.pid FROM sockets s JOIN socket_owners o ON o.inode = s.inode \
             WHERE s.protocol = 'tcp' AND s.state = 'ESTAB' AND s.local_port = {port} ORDER BY s.remote_port"
        ),
    );
    let pid = std::process::id();
    let want: Vec<String> = client_ports.iter().map(|p| format!("{p}|{pid}")).collect();
    assert_eq!(joined, want);
    let ss = ns.exec_ok("ss", &["-Htnp", "state", "established", "sport", &format!("= :{port}")]);
    assert_eq!(ss.lines().count(), 2, "{ss}");
    assert!(ss.lines().all(|l| l.contains(&format!("pid={pid},"))), "{ss}");

    // A saved report equals the same report run by the command line here.
    let report =
        psql_rows(&dir, 5439, "SELECT state, sockets FROM report('states') WHERE protocol = 'tcp' ORDER BY state");
    let cli: Vec<String> = ns
        .run_saved("states", &[])
        .iter()
        .filter(|r| r["protocol"] == "tcp")
        .map(|r| format!("{}|{}", r["state"].as_str().unwrap(), r["sockets"]))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(report, cli);
    assert!(report.contains(&"ESTAB|4".to_string()), "both ends of both connections: {report:?}");

    // Writes and limit changes are refused, as on the command line.
    let target = scratch.0.join("written.csv");
    for (sql, said) in [
        (format!("COPY (SELECT 1) TO '{}'", target.display()), "refused: COPY"),
        (
            format!("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}'", target.display()),
            "refused: CREATE EXTERNAL TABLE",
        ),
        ("SET datafusion.runtime.memory_limit = '100G'".to_string(), "refused: SET datafusion.runtime.memory_limit"),
        ("DROP TABLE sockets".to_string(), "built-in table"),
        // Reading a capture file on the host is the operator's, not a client's.
        ("SELECT count(*) FROM read_pcap('/etc/passwd')".to_string(), "refused: read_pcap reads files"),
    ] {
        let mut args = unix_args(&dir, 5439);
        args.extend(["-c".into(), sql.clone()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, err, ok) = psql(None, None, &[], &refs);
        assert!(!ok && err.contains(said), "{sql}: {err}");
    }
    assert!(!target.exists(), "nothing was written");

    // psycopg: parameters (extended protocol), a report, a refused write
    // with its SQLSTATE, and the session still usable after it.
    let script = format!(
        r#"
import json, psycopg
out = {{}}
with psycopg.connect(host="{dir}", port=5439, user="root", dbname="sockql") as conn:
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM sockets WHERE protocol = %s AND state = %s AND local_port = %s", ("tcp", "ESTAB", {port}))
    out["estab"] = cur.fetchone()[0]
    cur.execute("SELECT o.pid, p.name FROM socket_owners o JOIN sockets s ON s.inode = o.inode JOIN processes p ON p.pid = o.pid WHERE s.state = 'LISTEN' AND s.local_port = %s", ({port},))
    out["owner"] = [list(r) for r in cur.fetchall()]
    out["columns"] = [d.name for d in cur.description]
    cur.execute("SELECT state, sockets FROM report('states') WHERE protocol = 'tcp' ORDER BY state")
    out["states"] = [list(r) for r in cur.fetchall()]
    try:
        cur.execute("INSERT INTO sockets (protocol) VALUES ('x')")
        out["insert"] = "accepted"
    except psycopg.Error as e:
        out["insert"] = [e.sqlstate, str(e)]
    conn.rollback()
    cur.execute("SELECT 41 + 1 AS answer")
    out["after"] = cur.fetchone()[0]
print(json.dumps(out))
"#,
        dir = dir.display()
    );
    let out = psycopg(&script);
    assert_eq!(out["estab"], 2, "{out}");
    assert_eq!(out["owner"], serde_json::json!([[pid, my_comm()]]), "{out}");
    assert_eq!(out["columns"], serde_json::json!(["pid", "name"]), "{out}");
    let states: Vec<String> =
        out["states"].as_array().unwrap().iter().map(|r| format!("{}|{}", r[0].as_str().unwrap(), r[1])).collect();
    assert_eq!(states, report, "psycopg and psql see the same report");
    assert_eq!(out["insert"][0], "42501", "{out}");
    assert!(out["insert"][1].as_str().unwrap().contains("refused"), "{out}");
    assert_eq!(out["after"], 42, "{out}");

    // Peer credentials: nobody is refused with the reason.
    let refs: Vec<String> = unix_args(&dir, 5439);
    let mut args: Vec<&str> = refs.iter().map(String::as_str).collect();
    args.extend(["-c", "SELECT 1"]);
    let (_, err, ok) = psql(None, Some(("nobody", "nogroup")), &[], &args);
    assert!(!ok && err.contains("peer authentication failed") && err.contains("is not root"), "{err}");

    // Ctrl-C: the server removes its socket file.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let _ = server.wait();
    assert!(!socket.exists(), "the socket file is removed on exit");
    drop((listener, clients, accepted));
}

#[test]
fn pg_group_members_are_admitted_on_the_unix_socket() {
    let ns = Netns::new("pggroup");
    let scratch = Scratch::new("pg-group");
    let dir = scratch.0.join("run");
    // nobody's own group on Debian is nogroup.
    let (mut server, _) = serve(&ns, &["--pg", dir.to_str().unwrap(), "--pg-port", "5440", "--pg-group", "nogroup"]);
    eventually(WAIT, || dir.join(".s.PGSQL.5440").exists().then_some(()));
    let refs: Vec<String> = unix_args(&dir, 5440);
    let mut args: Vec<&str> = refs.iter().map(String::as_str).collect();
    args.extend(["-c", "SELECT count(*) > 0 FROM processes"]);
    // daemon is not a member of nogroup: refused, with the reason.
    let (_, err, ok) = psql(None, Some(("daemon", "daemon")), &[], &args);
    assert!(!ok && err.contains("user daemon (uid 1) is not root and not in group nogroup"), "{err}");
    // Running with nogroup as its group, it is admitted.
    let (out, err, ok) = psql(None, Some(("daemon", "nogroup")), &[], &args);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "t");
    // nobody is a member of nogroup (its group in the user database), so
    // it is admitted whatever group it runs with, as login would give it.
    let (out, err, ok) = psql(None, Some(("nobody", "daemon")), &[], &args);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "t");
    // SIGTERM (systemd's stop) ends it as Ctrl-C does: the socket file goes.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());
    assert!(!dir.join(".s.PGSQL.5440").exists());
}

#[test]
fn tcp_needs_a_password_and_off_loopback_tls() {
    let (a, b) = (Netns::new("pgtcp-a"), Netns::new("pgtcp-b"));
    link(&a, &b, 61);
    let scratch = Scratch::new("pg-tcp");
    let pw = scratch.0.join("password");
    std::fs::write(&pw, "correct horse\n").unwrap();
    let pw_arg = pw.to_str().unwrap();

    // Refused at start, before anything listens.
    for (args, said) in [
        (vec!["--pg", "127.0.0.1:5439"], "needs --pg-password-file"),
        (vec!["--pg", "10.231.61.1:5439", "--pg-password-file", pw_arg], "not on loopback and needs TLS"),
        (vec!["--pg", "127.0.0.1:5439", "--pg-password-file", pw_arg], "chmod 600"),
    ] {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        full.extend(args.iter().copied());
        let (_, err, ok) = a.exec(bin(), &full);
        assert!(!ok && err.contains(said), "{args:?}: {err}");
    }
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    // Loopback TCP: SCRAM, the right password and a wrong one.
    let (_lo, _) = serve(&a, &["--pg", "127.0.0.1:5439", "--pg-password-file", pw_arg]);
    let conn = "host=127.0.0.1 port=5439 user=ops dbname=sockql";
    let ok_env = [("PGPASSWORD", "correct horse")];
    let (out, err, ok) = eventually(WAIT, || {
        let r = psql(
            Some(&a),
            None,
            &ok_env,
            &[conn, "-c", "SELECT count(*) FROM sockets WHERE state = 'LISTEN' AND local_port = 5439"],
        );
        (!r.1.contains("Connection refused")).then_some(r)
    });
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1", "its own listener");
    let (_, err, ok) = psql(Some(&a), None, &[("PGPASSWORD", "wrong")], &[conn, "-c", "SELECT 1"]);
    assert!(!ok && err.to_lowercase().contains("password authentication failed"), "{err}");

    // Off loopback: TLS, with a certificate for the address.
    let cert = scratch.0.join("cert.pem");
    let key = scratch.0.join("key.pem");
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=10.231.61.1", "-addext", "subjectAltName=IP:10.231.61.1"])
        .args(["-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {}", String::from_utf8_lossy(&o.stderr));
    let (_tls, said) = serve(
        &a,
        &[
            "--pg",
            "10.231.61.1:5439",
            "--pg-password-file",
            pw_arg,
            "--pg-tls-cert",
            cert.to_str().unwrap(),
            "--pg-tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(said.contains("TLS"), "{said}");
    let remote = "host=10.231.61.1 port=5439 user=ops dbname=sockql";
    let verify = format!("{remote} sslmode=verify-full sslrootcert={}", cert.display());
    let (out, err, ok) = eventually(WAIT, || {
        let r = psql(Some(&b), None, &ok_env, &[&verify, "-c", "SELECT ssl FROM (SELECT true AS ssl)"]);
        (!r.1.contains("Connection refused")).then_some(r)
    });
    assert!(ok, "verified TLS from the other namespace: {err}");
    assert_eq!(out.trim(), "t");
    let (_, err, ok) = psql(Some(&b), None, &ok_env, &[&format!("{remote} sslmode=disable"), "-c", "SELECT 1"]);
    assert!(!ok && err.contains("connect with TLS"), "plain text off loopback is refused: {err}");
}

#[test]
fn a_slow_client_is_bounded_and_does_not_starve_scrapes() {
    let ns = Netns::new("pgslow");
    let scratch = Scratch::new("pg-slow");
    let dir = scratch.0.join("run");
    let (server, _, http) = serve_both(
        &ns,
        &[
            "--pg",
            dir.to_str().unwrap(),
            "--pg-port",
            "5441",
            "--pg-max-connections",
            "1",
            "--timeout",
            "4s",
            "--memory-limit",
            "8M",
        ],
    );
    eventually(WAIT, || dir.join(".s.PGSQL.5441").exists().then_some(()));
    let args = |sql: &str| -> Vec<String> {
        let mut a = unix_args(&dir, 5441);
        a.extend(["-v".into(), "VERBOSITY=verbose".into(), "-c".into(), sql.into()]);
        a
    };
    // A client that holds the only connection: connected (it answered),
    // then a query that would run for minutes.
    let mut a = Command::new("stdbuf");
    a.args(["-oL", "psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"])
        .args(unix_args(&dir, 5441));
    let mut a = a.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut a_in = a.stdin.take().unwrap();
    let mut a_out = BufReader::new(a.stdout.take().unwrap());
    {
        use std::io::Write;
        writeln!(a_in, "SELECT 'connected';").unwrap();
    }
    let mut first = String::new();
    a_out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "connected");
    let started = std::time::Instant::now();
    {
        use std::io::Write;
        writeln!(a_in, "SELECT count(*) FROM generate_series(1, 100000000000) t(x) WHERE x % 7 = 3;").unwrap();
    }
    drop(a_in);
    let a = std::thread::spawn(move || {
        let _stdout = a_out; // open until psql is done
        let out = a.wait_with_output().unwrap();
        ((String::new(), String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success()), started.elapsed())
    });
    // Another client is told the server is full.
    let other = args("SELECT 1");
    let refs: Vec<&str> = other.iter().map(String::as_str).collect();
    let (_, err, ok) = psql(None, None, &[], &refs);
    assert!(!ok && err.contains("too many connections"), "{err}");
    assert!(err.contains("--pg-max-connections"), "{err}");
    // Scrapes are answered meanwhile, every metric query up.
    let t0 = std::time::Instant::now();
    let (status, body) = crate::serve::get(&ns, http, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.lines().filter(|l| l.starts_with("sockql_query_up{")).all(|l| l.ends_with(" 1")), "{body}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(4), "the scrape waited {:?}", t0.elapsed());
    // --timeout ends the slow query, with PostgreSQL's query_canceled.
    let ((_, err, ok), took) = a.join().unwrap();
    assert!(!ok && err.contains("57014") && err.contains("timed out after 4s"), "{err}");
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    // ...and the work stops: the server's CPU time stops growing.
    eventually(std::time::Duration::from_secs(10), || {
        let before = cpu_seconds(server.id());
        std::thread::sleep(std::time::Duration::from_millis(500));
        (cpu_seconds(server.id()) - before < 0.1).then_some(())
    });
    // --memory-limit bounds what one query holds, with out_of_memory.
    let big = args("SELECT length(string_agg(CAST(x AS VARCHAR), ',')) FROM generate_series(1, 4000000) t(x)");
    let refs: Vec<&str> = big.iter().map(String::as_str).collect();
    let (_, err, ok) = psql(None, None, &[], &refs);
    assert!(!ok && err.contains("53200") && err.contains("--memory-limit"), "{err}");
}

#[test]
fn pgjdbc_lists_tables_and_columns_as_dbeaver_does() {
    let ns = Netns::new("pgjdbc");
    let scratch = Scratch::new("pg-jdbc");
    let pw = scratch.0.join("password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let probe = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/jdbc/Probe.java");
    let o = Command::new("javac").args(["-d", scratch.0.to_str().unwrap(), probe]).output().unwrap();
    assert!(o.status.success(), "javac: {}", String::from_utf8_lossy(&o.stderr));
    let _held = ns.enter(|| TcpListener::bind("127.0.0.1:0").unwrap());
    let (_server, _) = serve(&ns, &["--pg", "127.0.0.1:5439", "--pg-password-file", pw.to_str().unwrap()]);
    let classpath = format!("/usr/share/java/postgresql.jar:{}", scratch.0.display());
    let (out, err, ok) = eventually(WAIT, || {
        let r = ns.exec("java", &["-cp", &classpath, "Probe", "jdbc:postgresql://127.0.0.1:5439/sockql", "s3cret"]);
        (!r.1.contains("Connection refused")).then_some(r)
    });
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("product PostgreSQL"), "{out}");
    let mut tables: Vec<String> = lines.iter().filter_map(|l| l.strip_prefix("table ")).map(str::to_string).collect();
    tables.sort();
    let mut cli: Vec<String> =
        crate::common::query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            .iter()
            .map(|r| r["table_name"].as_str().unwrap().to_string())
            .collect();
    cli.sort();
    assert_eq!(tables, cli);
    assert!(lines.contains(&"column local_addr text") && lines.contains(&"column local_port int4"), "{out}");
    // The test's listener, serve's HTTP and PostgreSQL listeners: as ss counts them.
    let listening = ns.exec_ok("ss", &["-Hltn"]).lines().count();
    assert_eq!(listening, 3);
    assert!(lines.contains(&format!("listen {listening}").as_str()), "{out}");
}
