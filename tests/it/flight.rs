//! `sockql serve --flight`: the ADBC Flight SQL driver (PyPI, in the
//! client venv) reads the live tables of a namespace the test fills into
//! pyarrow and pandas with sockql's own types, and answers as the command
//! line does; the password and the policy hold.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};

use serde_json::{json, Value};

use crate::common::{bin, eventually, Scratch, WAIT};
use crate::events::{spawn_in, Reaped};
use crate::netns::Netns;

/// The client venv's interpreter (adbc-driver-flightsql, pyarrow, pandas).
pub const PYTHON: &str = "/var/cache/sockql/pyclients/bin/python";

/// A port inside a namespace of the test's own: nothing else listens there.
pub const PORT: u16 = 7470;

/// A 0600 password file in `scratch`.
pub fn password_file(scratch: &Scratch, password: &str) -> String {
    let pw = scratch.0.join("flight-password");
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    pw.to_str().unwrap().to_string()
}

/// Start `sockql serve` in `ns` with `args`; returns it and its Flight
/// line once that is on stderr (the rest of stderr is drained).
pub fn serve_flight(ns: &Netns, args: &[&str]) -> (Reaped, String) {
    let mut full = vec![bin(), "serve", "--listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    let mut child = spawn_in(ns, &full);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let flight = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Arrow Flight SQL on") => break line,
            Some(Ok(line)) => said.push(line),
            _ => panic!("serve {args:?} ended saying: {said:?}"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, flight)
}

/// Run a Python script with the client venv's interpreter in `ns`; its
/// stdout is one JSON value.
pub fn python(ns: &Netns, script: &str) -> Value {
    let (out, err, ok) = ns.exec(PYTHON, &["-c", script]);
    assert!(ok, "python failed: {err}\n{script}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

/// The ADBC connection lines of a script: `conn` to grpc://127.0.0.1:PORT.
pub fn adbc_connect(port: u16, password: &str) -> String {
    format!(
        r#"
import json, sys
import adbc_driver_flightsql.dbapi as flight
from adbc_driver_manager import DatabaseOptions
conn = flight.connect("grpc://127.0.0.1:{port}", db_kwargs={{
    DatabaseOptions.USERNAME.value: "ops", DatabaseOptions.PASSWORD.value: {password:?}}})
"#
    )
}

/// What a failed statement says, or "ok".
const TRY: &str = r#"
def attempt(sql):
    try:
        cur = conn.cursor()
        cur.execute(sql)
        cur.fetch_arrow_table()
        return "ok"
    except Exception as e:
        return str(e)
"#;

#[test]
fn adbc_reads_sockets_and_processes_with_their_types_and_the_clis_answers() {
    let ns = Netns::new("flight");
    let scratch = Scratch::new("flight");
    let pw = password_file(&scratch, "correct horse");
    // Two established connections to a listener, held by this process.
    let (listener, clients, accepted) = crate::flight::two_connections(&ns);
    let port = listener.local_addr().unwrap().port();
    let (_server, said) = serve_flight(&ns, &["--flight", &format!("127.0.0.1:{PORT}"), "--flight-password-file", &pw]);
    assert!(said.contains(&format!("127.0.0.1:{PORT}")), "{said}");

    let sql = format!(
        "SELECT local_port, remote_port, state, uid, inode FROM sockets \
         WHERE protocol = 'tcp' AND (local_port = {port} OR remote_port = {port}) \
         ORDER BY state, local_port, remote_port"
    );
    let me = std::process::id();
    let procs = format!(
        "SELECT pid, start_time, CAST(start_time AS BIGINT) AS start_ms, rss_bytes > 0 AS has_rss \
         FROM processes WHERE pid = {me}"
    );
    let script = format!(
        r#"{connect}{TRY}
def read(sql):
    cur = conn.cursor()
    cur.execute(sql)
    t = cur.fetch_arrow_table()
    df = t.to_pandas()
    return {{"types": {{f.name: str(f.type) for f in t.schema}},
            "dtypes": {{c: str(df[c].dtype) for c in df.columns}},
            "rows": json.loads(df.drop(columns=[c for c in df.columns if str(df[c].dtype).startswith("datetime")]).to_json(orient="records"))}}
info = conn.adbc_get_info()
objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
tables = sorted(t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"])
print(json.dumps({{
    "sockets": read({sql:?}),
    "processes": read({procs:?}),
    "vendor": str(info.get("vendor_name")),
    "tables": tables,
    "table_schema": {{f.name: str(f.type) for f in conn.adbc_get_table_schema("sockets")}},
    "refused": attempt("COPY (SELECT 1) TO '/tmp/sockql-flight-{me}.csv'"),
    "error": attempt("SELECT nope FROM sockets"),
}}))
"#,
        connect = adbc_connect(PORT, "correct horse"),
    );
    let got = eventually(WAIT, || {
        let (out, err, ok) = ns.exec(PYTHON, &["-c", &script]);
        if !ok && (err.contains("onnection refused") || err.contains("UNAVAILABLE")) {
            return None;
        }
        assert!(ok, "{err}");
        Some(serde_json::from_str::<Value>(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}")))
    });

    // The same rows as the command line, and exactly the sockets made here.
    let cli = ns.sockql(&sql);
    let rows = &got["sockets"]["rows"];
    assert_eq!(rows.as_array().unwrap().len(), 5, "{rows}");
    assert_eq!(rows, &Value::Array(cli), "Flight and the CLI agree");
    let states: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["ESTAB", "ESTAB", "ESTAB", "ESTAB", "LISTEN"]);
    // Unsigned stays unsigned, in Arrow and in pandas.
    let types = &got["sockets"]["types"];
    assert_eq!(
        types,
        &json!({"local_port": "uint16", "remote_port": "uint16", "state": "string", "uid": "uint32", "inode": "uint64"})
    );
    let dtypes = &got["sockets"]["dtypes"];
    assert_eq!(dtypes["local_port"], "uint16");
    assert_eq!(dtypes["inode"], "uint64");
    // Timestamps keep their zone.
    assert_eq!(got["processes"]["types"]["start_time"], "timestamp[ms, tz=UTC]");
    assert_eq!(got["processes"]["dtypes"]["start_time"], "datetime64[ms, UTC]");
    assert_eq!(got["processes"]["types"]["rss_bytes"], Value::Null, "only the selected columns");
    let cli = ns.sockql(&procs);
    assert_eq!(got["processes"]["rows"][0]["start_ms"], cli[0]["start_ms"]);
    assert_eq!(got["processes"]["rows"][0]["pid"], json!(me));
    // The catalog as ADBC lists it.
    assert_eq!(got["vendor"], "sockql");
    let tables: Vec<String> = serde_json::from_value(got["tables"].clone()).unwrap();
    assert!(tables.contains(&"sockets".to_string()) && tables.contains(&"processes".to_string()), "{tables:?}");
    assert_eq!(got["table_schema"]["local_port"], "uint16");
    // The policy: read-only, refused with PERMISSION_DENIED; a wrong
    // column is the client's error with its SQLSTATE.
    let refused = got["refused"].as_str().unwrap();
    assert!(refused.contains("PermissionDenied") && refused.contains("read-only"), "{refused}");
    assert!(refused.contains("42501"), "{refused}");
    assert!(!std::path::Path::new(&format!("/tmp/sockql-flight-{me}.csv")).exists());
    assert!(got["error"].as_str().unwrap().contains("42703"), "{}", got["error"]);
    drop((listener, clients, accepted));
}

#[test]
fn a_wrong_password_or_none_is_refused_on_every_call() {
    let ns = Netns::new("flightpw");
    let scratch = Scratch::new("flight-pw");
    let pw = password_file(&scratch, "correct horse");
    let (_server, _) = serve_flight(&ns, &["--flight", &format!("127.0.0.1:{PORT}"), "--flight-password-file", &pw]);
    let script = format!(
        r#"{connect}{TRY}
print(json.dumps(attempt("SELECT 1")))
"#,
        connect = adbc_connect(PORT, "wrong")
    );
    let said = eventually(WAIT, || {
        let (out, err, ok) = ns.exec(PYTHON, &["-c", &script]);
        if err.contains("onnection refused") || out.contains("onnection refused") {
            return None;
        }
        Some(if ok { out } else { err })
    });
    assert!(said.contains("UNAUTHENTICATED") || said.contains("Unauthenticated"), "{said}");
    assert!(!said.contains("\"ok\""), "{said}");
    // No password at all: a raw gRPC call without the header.
    let script = r#"
import json, pyarrow.flight as fl
c = fl.FlightClient("grpc://127.0.0.1:7470")
try:
    list(c.list_actions())
    print(json.dumps("ok"))
except Exception as e:
    print(json.dumps(str(e)))
"#;
    let said = python(&ns, script);
    assert!(said.as_str().unwrap().to_lowercase().contains("unauthenticated"), "{said}");
}

#[test]
fn refused_at_start_without_a_password_file_or_off_loopback_without_tls() {
    let ns = Netns::new("flightstart");
    let scratch = Scratch::new("flight-start");
    let pw = password_file(&scratch, "pw");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let loose = pw.clone();
    ns.exec_ok("ip", &["addr", "add", "10.231.77.1/24", "dev", "lo"]);
    for (args, said) in [
        (vec!["--flight", "127.0.0.1:7470"], "needs --flight-password-file"),
        (vec!["--flight", "127.0.0.1:7470", "--flight-password-file", &loose], "chmod 600"),
    ] {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        full.extend(args.iter().copied());
        let (_, err, ok) = ns.exec(bin(), &full);
        assert!(!ok && err.contains(said), "{args:?}: {err}");
    }
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (_, err, ok) = ns.exec(
        bin(),
        &["serve", "--listen", "127.0.0.1:0", "--flight", "10.231.77.1:7470", "--flight-password-file", &pw],
    );
    assert!(!ok && err.contains("not on loopback and needs TLS"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

use crate::certs::signed;

#[test]
fn off_loopback_flight_is_tls_and_mutual_tls_admits_only_the_cas_clients() {
    let (a, b) = (Netns::new("fltls-a"), Netns::new("fltls-b"));
    crate::netns::link(&a, &b, 62);
    let scratch = Scratch::new("flight-tls");
    let dir = scratch.0.clone();
    let pw = password_file(&scratch, "pw");
    signed(&dir, "server", "/CN=10.231.62.1", "subjectAltName=IP:10.231.62.1");
    signed(&dir, "client", "/CN=ops", "extendedKeyUsage=clientAuth");
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (_server, said) = serve_flight(
        &a,
        &[
            "--flight",
            "10.231.62.1:7470",
            "--flight-password-file",
            &pw,
            "--flight-tls-cert",
            &p("server.pem"),
            "--flight-tls-key",
            &p("server.key"),
            "--flight-tls-client-ca",
            &p("ca.pem"),
        ],
    );
    assert!(said.contains("grpc+tls://10.231.62.1:7470") && said.contains("mutual TLS"), "{said}");
    // From the other namespace, pyarrow's Flight client: with the CA's
    // client certificate, without one, and in clear text.
    let script = format!(
        r#"
import json, base64, pyarrow.flight as fl
read = lambda p: open(p, "rb").read()
AUTH = fl.FlightCallOptions(headers=[(b"authorization", b"Basic " + base64.b64encode(b"ops:pw"))])
def tables(client):
    try:
        return sorted(set(a.type for a in client.list_actions(AUTH)))[:1]
    except Exception as e:
        return str(e)
ca = read({ca:?})
print(json.dumps({{
    "mutual": tables(fl.FlightClient("grpc+tls://10.231.62.1:7470", tls_root_certs=ca, cert_chain=read({cert:?}), private_key=read({key:?}))),
    "no_client_cert": tables(fl.FlightClient("grpc+tls://10.231.62.1:7470", tls_root_certs=ca)),
    "clear": tables(fl.FlightClient("grpc://10.231.62.1:7470")),
}}))
"#,
        ca = p("ca.pem"),
        cert = p("client.pem"),
        key = p("client.key"),
    );
    let got = python(&b, &script);
    assert_eq!(got["mutual"], json!(["BeginSavepoint"]), "{got}");
    assert!(got["no_client_cert"].as_str().is_some_and(|e| !e.is_empty()), "{got}");
    assert!(got["clear"].as_str().is_some_and(|e| !e.is_empty()), "{got}");
}

/// In `ns`: a listener on 127.0.0.1 with two established connections to
/// it, both ends held by this process (listener, clients, accepted).
pub(crate) fn two_connections(ns: &Netns) -> (TcpListener, Vec<TcpStream>, Vec<TcpStream>) {
    ns.enter(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let c = vec![TcpStream::connect(a).unwrap(), TcpStream::connect(a).unwrap()];
        let s = vec![l.accept().unwrap().0, l.accept().unwrap().0];
        (l, c, s)
    })
}
