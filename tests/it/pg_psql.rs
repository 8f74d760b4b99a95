//! psql's meta-commands and pgjdbc's DatabaseMetaData against `sockql
//! serve --pg`, over the unix socket and over TCP with SCRAM: each list
//! equals what the command line says of the same thing (its table list
//! and column descriptions, the rows of the same SQL on sockets the test
//! makes on loopback).

use std::net::{TcpListener, TcpStream};
use std::process::Command;

use serde_json::Value;

use crate::common::{eventually, Scratch, WAIT};
use crate::netns::Netns;
use crate::pg::psql;
use crate::serve_attack::{Queries, Served};

/// Where psql reaches the server.
enum Target<'a> {
    Unix(&'a std::path::Path),
    Tcp(&'a Netns),
}

const PASSWORD: &str = "psql meta";

/// psql's rows for `commands` (each a -c, or -f FILE for "-f FILE"),
/// fields split at tabs.
fn rows(target: &Target, commands: &[&str]) -> Vec<Vec<String>> {
    let mut args: Vec<String> = vec!["-F".into(), "\t".into()];
    let (ns, env): (Option<&Netns>, Vec<(&str, &str)>) = match target {
        Target::Unix(dir) => {
            args.extend([
                "-h".into(),
                dir.display().to_string(),
                "-p".into(),
                "5439".into(),
                "-U".into(),
                "root".into(),
                "-d".into(),
                "sockql".into(),
            ]);
            (None, vec![])
        }
        Target::Tcp(ns) => {
            args.push("host=127.0.0.1 port=5439 user=ops dbname=sockql".into());
            (Some(ns), vec![("PGPASSWORD", PASSWORD)])
        }
    };
    for c in commands {
        match c.strip_prefix("-f ") {
            Some(file) => args.extend(["-f".into(), file.to_string()]),
            None => args.extend(["-c".into(), c.to_string()]),
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (out, err, ok) = psql(ns, None, &env, &refs);
    assert!(ok, "psql {commands:?}: {err}");
    out.lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// A JSON value as psql prints it in text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The command line's table list and each table's description.
fn cli_tables() -> Vec<(String, String)> {
    let mut t: Vec<(String, String)> =
        crate::common::query("SHOW TABLES").iter().map(|r| (text(&r["table_name"]), text(&r["description"]))).collect();
    t.sort();
    t
}

/// The command line's columns of `table`: (name, nullable, description).
fn cli_columns(table: &str) -> Vec<(String, bool, String)> {
    crate::common::query(&format!("DESCRIBE {table}"))
        .iter()
        .map(|r| (text(&r["column_name"]), r["nullable"].as_bool().unwrap(), text(&r["description"])))
        .collect()
}

/// Every meta-command of the issue, checked through `target`; `port` is
/// a TCP listener of the test's in the server's namespace.
fn check_meta_commands(target: &Target, ns: &Netns, port: u16, scratch: &Scratch) {
    let tables = cli_tables();
    assert!(tables.iter().any(|(n, _)| n == "sockets") && tables.iter().any(|(n, _)| n == "conntrack"), "{tables:?}");

    // \dt and \d: exactly the command line's tables, in schema public.
    for list in ["\\dt", "\\d"] {
        let mut got: Vec<String> = rows(target, &[list])
            .into_iter()
            .map(|r| {
                assert_eq!(
                    (r[0].as_str(), r[2].as_str(), r[3].as_str()),
                    ("public", "table", "postgres"),
                    "{list}: {r:?}"
                );
                r[1].clone()
            })
            .collect();
        got.sort();
        assert_eq!(got, tables.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), "{list}");
    }
    // \dt+: each table's description is the command line's; nothing is
    // stored, so its size is 0 bytes.
    let mut plus: Vec<(String, String)> = rows(target, &["\\dt+"])
        .into_iter()
        .map(|r| {
            assert_eq!(r.len(), 8, "{r:?}");
            assert_eq!(
                (r[0].as_str(), r[4].as_str(), r[5].as_str(), r[6].as_str()),
                ("public", "permanent", "", "0 bytes"),
                "{r:?}"
            );
            (r[1].clone(), r[7].clone())
        })
        .collect();
    plus.sort();
    assert_eq!(plus, tables);

    // \d sockets: the columns in order, with NOT NULL where the command
    // line says not nullable.
    let columns = cli_columns("sockets");
    let d = rows(target, &["\\d sockets"]);
    let got: Vec<(String, bool)> = d.iter().map(|r| (r[0].clone(), r[3] != "not null")).collect();
    assert_eq!(got, columns.iter().map(|(n, null, _)| (n.clone(), *null)).collect::<Vec<_>>());
    // \d+ sockets: and each column's description.
    let d_plus = rows(target, &["\\d+ sockets"]);
    let got: Vec<(String, String)> =
        d_plus.iter().map(|r| (r[0].clone(), r.last().cloned().unwrap_or_default())).collect();
    assert_eq!(got, columns.iter().map(|(n, _, doc)| (n.clone(), doc.clone())).collect::<Vec<_>>());
    assert!(columns.iter().all(|(_, _, doc)| doc.len() > 5), "every column is described");

    // \du: the one role every object belongs to; it logs in, nothing more.
    assert_eq!(rows(target, &["\\du"]), vec![vec!["postgres".to_string(), String::new(), "{}".to_string()]]);
    // \df: sockql's own functions (PostgreSQL's builtins are pg_catalog's:
    // \dfS), with their signatures; each one runs on the command line.
    let df = rows(target, &["\\df"]);
    assert_eq!(
        df,
        vec![
            vec!["public", "capture_seconds", "double precision", "", "func"],
            vec!["public", "report", "SETOF record", "name text, VARIADIC params text[]", "func"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(str::to_string).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
    assert_eq!(crate::common::query("SELECT capture_seconds() AS s")[0]["s"].as_f64(), Some(10.0));
    assert!(!crate::common::query("SELECT * FROM report()").is_empty());
    // \dT: sockql defines no types of its own. \dn: schema public.
    assert!(rows(target, &["\\dT"]).is_empty());
    assert_eq!(rows(target, &["\\dn"]), vec![vec!["public".to_string(), "postgres".to_string()]]);
    // \l: the database clients are in (current_database()) among them.
    let current = rows(target, &["SELECT current_database()"]);
    let databases = rows(target, &["\\l"]);
    assert!(
        databases.iter().any(|r| Some(&r[0]) == current.first().and_then(|c| c.first())),
        "{databases:?} {current:?}"
    );
    assert!(databases.iter().all(|r| r[1] == "postgres" && r[2] == "UTF-8"), "{databases:?}");

    // \x: a query's rows as records, equal to the command line's rows for
    // the same SQL in the same namespace.
    let sql = format!("SELECT protocol, state, local_port, remote_port FROM sockets WHERE local_port = {port} ORDER BY state, remote_port");
    let cli = ns.sockql(&sql);
    assert_eq!(cli.len(), 2, "the listener and its one accepted connection: {cli:?}");
    let records: Vec<Vec<String>> = rows(target, &["\\x on", &sql]).into_iter().filter(|r| r.len() == 2).collect();
    let want: Vec<Vec<String>> = cli
        .iter()
        .flat_map(|r| ["protocol", "state", "local_port", "remote_port"].map(|c| vec![c.to_string(), text(&r[c])]))
        .collect();
    assert_eq!(records, want);

    // \gdesc: the query's column names, with the types PostgreSQL names
    // for the command line's Arrow types.
    // (psql takes \gdesc after a query only from a file or its input.)
    let file = scratch.0.join("gdesc.sql");
    std::fs::write(&file, format!("{sql} \\gdesc\n")).unwrap();
    let gdesc = rows(target, &[&format!("-f {}", file.display())]);
    let pg_name = |arrow: &str| match arrow {
        "Utf8" => "text",
        "Int32" | "UInt16" => "integer",
        other => panic!("no PostgreSQL name for {other} here"),
    };
    let types: std::collections::HashMap<String, String> = crate::common::query("DESCRIBE sockets")
        .iter()
        .map(|r| (text(&r["column_name"]), text(&r["data_type"])))
        .collect();
    let want: Vec<Vec<String>> = ["protocol", "state", "local_port", "remote_port"]
        .iter()
        .map(|c| vec![c.to_string(), pg_name(&types[*c]).to_string()])
        .collect();
    assert_eq!(gdesc, want);

    // PREPARE and EXECUTE: the command line's rows for the same SQL.
    let prepared = "PREPARE q(int) AS SELECT protocol, state, remote_port FROM sockets WHERE local_port = $1 ORDER BY state, remote_port";
    let executed = rows(target, &[prepared, &format!("EXECUTE q({port})")]);
    let want: Vec<Vec<String>> = std::iter::once(vec!["PREPARE".to_string()])
        .chain(cli.iter().map(|r| vec![text(&r["protocol"]), text(&r["state"]), text(&r["remote_port"])]))
        .collect();
    assert_eq!(executed, want);
}

/// Held by the test: a listener and both ends of one connection to it.
type Pair = (TcpListener, TcpStream, TcpStream);

/// A listener and one connection to it, in `ns`: its port, and the sockets.
fn loopback_pair(ns: &Netns) -> (u16, Pair) {
    let held = ns.enter(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let a = l.accept().unwrap().0;
        (l, c, a)
    });
    (held.0.local_addr().unwrap().port(), held)
}

fn password_file(scratch: &Scratch) -> String {
    let pw = scratch.0.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    pw.display().to_string()
}

#[test]
fn psql_meta_commands_show_sockqls_catalog_over_the_unix_socket_and_scram() {
    let ns = Netns::new("psqlmeta");
    let queries = Queries::new("psqlmeta", &[]);
    let scratch = Scratch::new("psql-meta");
    let (port, _held) = loopback_pair(&ns);

    let dir = scratch.0.join("run");
    let _unix = Served::start(&ns, &queries, &["--pg", dir.to_str().unwrap(), "--pg-port", "5439"]);
    eventually(WAIT, || dir.join(".s.PGSQL.5439").exists().then_some(()));
    check_meta_commands(&Target::Unix(&dir), &ns, port, &scratch);

    let pw = password_file(&scratch);
    let _tcp = Served::start(&ns, &queries, &["--pg", "127.0.0.1:5439", "--pg-password-file", &pw]);
    check_meta_commands(&Target::Tcp(&ns), &ns, port, &scratch);
}

#[test]
fn pgjdbc_metadata_has_sockqls_tables_columns_and_remarks() {
    let ns = Netns::new("pgjdbcmeta");
    let queries = Queries::new("pgjdbcmeta", &[]);
    let scratch = Scratch::new("pgjdbc-meta");
    let (port, _held) = loopback_pair(&ns);
    let probe = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/jdbc/Metadata.java");
    let o = Command::new("javac").args(["-d", scratch.0.to_str().unwrap(), probe]).output().unwrap();
    assert!(o.status.success(), "javac: {}", String::from_utf8_lossy(&o.stderr));
    let pw = password_file(&scratch);
    let _server = Served::start(&ns, &queries, &["--pg", "127.0.0.1:5439", "--pg-password-file", &pw]);
    let classpath = format!("/usr/share/java/postgresql.jar:{}", scratch.0.display());
    let port_arg = port.to_string();
    let out = ns.exec_ok(
        "java",
        &["-cp", &classpath, "Metadata", "jdbc:postgresql://127.0.0.1:5439/sockql", PASSWORD, "sockets", &port_arg],
    );
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();

    // getTables: the command line's tables, each with its description.
    let mut tables: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l[0] == "table")
        .map(|l| {
            assert_eq!(l[1], "public", "{l:?}");
            (l[2].to_string(), l[3].to_string())
        })
        .collect();
    tables.sort();
    assert_eq!(tables, cli_tables());
    // getColumns: sockets' columns in order, REMARKS their descriptions.
    let columns: Vec<(String, String, String)> = lines
        .iter()
        .filter(|l| l[0] == "column")
        .map(|l| (l[1].to_string(), l[2].to_string(), l[3].to_string()))
        .collect();
    let want: Vec<(String, String, String)> =
        cli_columns("sockets").into_iter().enumerate().map(|(i, (n, _, doc))| ((i + 1).to_string(), n, doc)).collect();
    assert_eq!(columns, want);
    // A PreparedStatement with parameters: the command line's rows.
    let prepared: Vec<Vec<&str>> = lines.iter().filter(|l| l[0] == "prepared").map(|l| l[1..].to_vec()).collect();
    let cli = ns.sockql(&format!("SELECT protocol, state, local_port FROM sockets WHERE local_port = {port} AND state = 'LISTEN' ORDER BY protocol"));
    let want: Vec<Vec<String>> =
        cli.iter().map(|r| vec![text(&r["protocol"]), text(&r["state"]), text(&r["local_port"])]).collect();
    assert_eq!(prepared, want);
    assert_eq!(prepared, vec![vec!["tcp", "LISTEN", port_arg.as_str()]]);
}
