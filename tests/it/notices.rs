//! Warnings and notes reach whoever ran the statement that caused them,
//! once per statement: a PostgreSQL client as NoticeResponse (psql prints
//! `WARNING:  ...`, psycopg's notice handler gets severity and SQLSTATE),
//! never another client nor the server's stderr; the command line on its
//! stderr, each time the statement runs (the shell), not once per process.

use std::process::Command;

use serde_json::Value;

use crate::common::{bin, eventually, output_of, WAIT};
use crate::netns::Netns;
use crate::serve_attack::{Queries, Served};

/// A statement whose state literal no socket has: planning warns.
const BAD_STATE: &str = "SELECT count(*) AS n FROM sockets WHERE state = 'ESTABLISHED'";
/// The warning's text (without `sockql: warning: `).
const SAID: &str = "'ESTABLISHED' is not a socket state (ss spells it ESTAB), so it matches no row";

/// How many times `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// `sockql serve --pg DIR` in a namespace of its own, its stderr kept.
fn serve(tag: &str) -> (Netns, Queries, Served, std::path::PathBuf) {
    let ns = Netns::new(tag);
    let queries = Queries::new(&format!("notices-{tag}"), &[]);
    let dir = queries.0.join("pg");
    let served = Served::start(&ns, &queries, &["--pg", dir.to_str().unwrap(), "--pg-port", "5439"]);
    let socket = dir.join(".s.PGSQL.5439");
    eventually(WAIT, || socket.exists().then_some(()));
    (ns, queries, served, dir)
}

/// psql as root on the unix socket with `args`: (stdout, stderr).
fn psql(dir: &std::path::Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["-h", dir.to_str().unwrap(), "-p", "5439", "-U", "root", "-d", "sockql"];
    all.extend_from_slice(args);
    let (out, err, ok) = crate::pg::psql(None, None, &[], &all);
    assert!(ok, "psql {args:?}: {err}");
    (out, err)
}

#[test]
fn psql_shows_a_statements_warning_once_per_statement_and_serve_logs_none() {
    let (_ns, _queries, served, dir) = serve("ntc-psql");
    let warning = format!("WARNING:  {SAID}");

    // One statement, the literal twice: said once.
    let twice = format!("{BAD_STATE} OR state = 'ESTABLISHED'");
    let (out, err) = psql(&dir, &["-c", &twice]);
    assert_eq!(out.trim(), "0", "{err}");
    assert_eq!(count(&err, &warning), 1, "psql's stderr: {err}");

    // Two statements on one connection (two Query messages): said twice,
    // each before its own result.
    let (out, err) = psql(&dir, &["-c", BAD_STATE, "-c", BAD_STATE]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "0"], "{err}");
    assert_eq!(count(&err, &warning), 2, "psql's stderr: {err}");

    // Both in one Query message: each statement says it.
    let (_, err) = psql(&dir, &["-c", &format!("{BAD_STATE}; {BAD_STATE}")]);
    assert_eq!(count(&err, &warning), 2, "psql's stderr: {err}");

    // A statement that says nothing: no notice.
    let (out, err) = psql(&dir, &["-c", "SELECT count(*) FROM sockets WHERE state = 'ESTAB' AND local_port = 1"]);
    assert_eq!((out.trim(), err.as_str()), ("0", ""));

    // Serve answered all of that and logged none of it.
    let said = served.said();
    assert!(said.contains("PostgreSQL on"), "{said}");
    assert!(!said.contains("is not a socket state"), "serve's stderr carries a client's warning:\n{said}");
}

#[test]
fn psycopg_gets_severity_and_sqlstate_and_another_client_gets_nothing() {
    let (_ns, _queries, served, dir) = serve("ntc-psyco");
    // Two connections at once: `warned` runs the warning statement over
    // and over while `quiet` runs clean ones; each collects its notices.
    let script = format!(
        r#"
import json, threading, psycopg
def connect():
    return psycopg.connect(host="{dir}", port=5439, user="root", dbname="sockql", autocommit=True)
warned, quiet = connect(), connect()
heard = {{"warned": [], "quiet": []}}
warned.add_notice_handler(lambda d: heard["warned"].append([d.severity, d.severity_nonlocalized, d.sqlstate, d.message_primary]))
quiet.add_notice_handler(lambda d: heard["quiet"].append([d.severity, d.sqlstate, d.message_primary]))
rows = {{}}
def run_quiet():
    rows["quiet"] = [quiet.execute("SELECT count(*) FROM sockets WHERE state = 'ESTAB' AND local_port = 1").fetchone()[0] for _ in range(20)]
t = threading.Thread(target=run_quiet)
t.start()
rows["warned"] = [warned.execute("{BAD_STATE}").fetchone()[0] for _ in range(20)]
t.join()
rows["one_statement_twice"] = warned.execute("{BAD_STATE} OR state = 'ESTABLISHED'").fetchone()[0]
print(json.dumps({{"heard": heard, "rows": rows}}))
"#,
        dir = dir.display()
    );
    let o = Command::new("/usr/bin/python3").args(["-c", &script]).output().unwrap();
    let (out, err, ok) = output_of(o);
    assert!(ok, "psycopg script failed: {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["rows"]["warned"].as_array().unwrap().len(), 20, "{v}");
    assert!(v["rows"]["warned"].as_array().unwrap().iter().all(|n| n == 0), "{v}");
    assert_eq!(v["rows"]["one_statement_twice"], 0, "{v}");
    let heard = v["heard"]["warned"].as_array().unwrap();
    // One per statement: 20, then one more for the statement with it twice.
    assert_eq!(heard.len(), 21, "{v}");
    for h in heard {
        assert_eq!((&h[0], &h[1], &h[2]), (&"WARNING".into(), &"WARNING".into(), &"01000".into()), "{v}");
        assert!(h[3].as_str().unwrap().starts_with(SAID), "the text without sockql's prefix: {v}");
    }
    assert_eq!(v["heard"]["quiet"], serde_json::json!([]), "the other client heard: {v}");
    assert_eq!(v["rows"]["quiet"].as_array().unwrap().len(), 20, "{v}");
    assert!(!served.said().contains("is not a socket state"), "serve's stderr:\n{}", served.said());
}

#[test]
fn the_command_line_says_it_once_per_statement() {
    // One statement, the literal twice: once.
    let (out, err, ok) = crate::common::run(&["--format", "csv", &format!("{BAD_STATE} OR state = 'ESTABLISHED'")]);
    assert!(ok, "{err}");
    assert_eq!(out, "n\n0\n");
    assert_eq!(count(&err, &format!("sockql: warning: {SAID}")), 1, "{err}");
    // Two statements in one run: each says it.
    let (out, err, ok) = crate::common::run(&["--format", "csv", &format!("{BAD_STATE}; {BAD_STATE}")]);
    assert!(ok, "{err}");
    assert_eq!(out, "n\n0\nn\n0\n");
    assert_eq!(count(&err, &format!("sockql: warning: {SAID}")), 2, "{err}");
}

#[test]
fn the_shell_says_it_each_time_the_statement_runs() {
    use rexpect::reader::Options;
    use rexpect::session::spawn_with_options;
    let state = std::env::temp_dir().join(format!("sockql-notices-shell-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    let mut cmd = Command::new(bin());
    cmd.env("XDG_STATE_HOME", &state).env("TERM", "xterm").env("COLUMNS", "200");
    let mut p = spawn_with_options(cmd, Options::new().timeout_ms(Some(15_000)).strip_ansi_escape_codes(true)).unwrap();
    p.exp_string("\\? for help, \\q to quit.").unwrap();
    for run in 1..=2 {
        p.exp_regex(r"(^|\n)\r*sockql> ").unwrap_or_else(|e| panic!("no prompt before run {run}: {e}"));
        p.send_line(&format!("{BAD_STATE};")).unwrap();
        p.exp_string(&format!("sockql: warning: {SAID}")).unwrap_or_else(|e| panic!("run {run} did not warn: {e}"));
    }
    p.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap();
    let _ = std::fs::remove_dir_all(&state);
}
