//! Flight SQL prepared statements through a real client: the ADBC Flight
//! SQL driver prepares a statement with `?` parameters, binds a value,
//! runs it twice with different values, and gets the command line's rows
//! for the sockets the test made; the parameter schema says the planned
//! type; writes are refused on the update path too.

use serde_json::{json, Value};

use crate::common::{eventually, Scratch, WAIT};
use crate::flight::{adbc_connect, password_file, serve_flight, PORT, PYTHON};
use crate::netns::Netns;

#[test]
fn flight_prepared_adbc_binds_parameters_and_answers_as_the_cli() {
    let ns = Netns::new("flprep");
    let scratch = Scratch::new("flight-prep");
    let pw = password_file(&scratch, "correct horse");
    // A listener with two established connections, held by this process.
    let (listener, clients, accepted) = crate::flight::two_connections(&ns);
    let port = listener.local_addr().unwrap().port();
    let client_port = clients[0].local_addr().unwrap().port();
    let (_server, _) = serve_flight(&ns, &["--flight", &format!("127.0.0.1:{PORT}"), "--flight-password-file", &pw]);

    let prepared = "SELECT local_port, remote_port, state, inode FROM sockets \
                    WHERE protocol = 'tcp' AND local_port = ? ORDER BY state, remote_port";
    let me = std::process::id();
    let script = format!(
        r#"{connect}
def failure(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return str(e)
cur = conn.cursor()
schema = cur.adbc_prepare({prepared:?})
params = {{f.name: str(f.type) for f in schema}}
cur.execute({prepared:?}, parameters=({port},))
listening = cur.fetch_arrow_table()
cur.execute({prepared:?}, parameters=({client_port},))
client = cur.fetch_arrow_table()
def update():
    c = conn.cursor()
    c.adbc_statement.set_sql_query("INSERT INTO sockets VALUES (1)")
    c.adbc_statement.execute_update()
print(json.dumps({{
    "params": params,
    "types": {{f.name: str(f.type) for f in listening.schema}},
    "listening": listening.to_pylist(),
    "client": client.to_pylist(),
    "refused": failure(lambda: conn.cursor().adbc_prepare("COPY (SELECT 1) TO '/tmp/sockql-flprep-{me}.csv'")),
    "update": failure(update),
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
    // The parameter's planned type is local_port's.
    assert_eq!(got["params"], json!({"$1": "uint16"}), "{got}");
    assert_eq!(
        got["types"],
        json!({"local_port": "uint16", "remote_port": "uint16", "state": "string", "inode": "uint64"})
    );
    // The same rows as the command line for each bound value.
    let cli = |p: u16| Value::Array(ns.sockql(&prepared.replace('?', &p.to_string())));
    let listening = &got["listening"];
    assert_eq!(listening, &cli(port), "Flight's prepared statement and the CLI agree");
    let states: Vec<&str> = listening.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["ESTAB", "ESTAB", "LISTEN"], "{listening}");
    assert_eq!(got["client"], cli(client_port));
    assert_eq!(got["client"].as_array().unwrap().len(), 1, "{got}");
    assert_eq!(got["client"][0]["remote_port"], json!(port));
    // The policy holds on this path; the update path is refused.
    let refused = got["refused"].as_str().unwrap();
    assert!(refused.contains("read-only") && refused.contains("42501"), "{refused}");
    assert!(!std::path::Path::new(&format!("/tmp/sockql-flprep-{me}.csv")).exists());
    let update = got["update"].as_str().unwrap();
    assert!(update.contains("read-only") && update.contains("25006"), "{update}");
    drop((listener, clients, accepted));
}
