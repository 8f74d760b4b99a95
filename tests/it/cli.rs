//! The command line: formats, inputs, catalog commands, errors, exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::*;

fn listener_query(p: u16) -> String {
    format!("SELECT state, local_port, send_q, pid FROM sockets WHERE local_port = {p} AND state = 'LISTEN'")
}

#[test]
fn formats_are_typed() {
    let l = listener("127.0.0.1:0", 11);
    let p = port_of(&l);
    let q = listener_query(p);
    let pid = my_pid();

    // (settled(): the pid column names this process once no forked child
    // of a parallel test holds its sockets.)
    let out = |format: &str, header: bool| {
        let mut args = vec!["--format", format];
        if !header {
            args.push("--no-header");
        }
        args.push(&q);
        let (out, err, ok) = run(&args);
        assert!(ok, "{err}");
        out
    };
    settled(format!("state,local_port,send_q,pid\nLISTEN,{p},11,{pid}\n"), || out("csv", true));
    settled(format!("LISTEN,{p},11,{pid}\n"), || out("csv", false));
    // Numbers are JSON numbers, not strings.
    settled(json!([{"state": "LISTEN", "local_port": p, "send_q": 11, "pid": pid}]), || {
        serde_json::from_str::<Value>(&out("json", true)).unwrap()
    });
    settled(vec![json!({"state": "LISTEN", "local_port": p, "send_q": 11, "pid": pid})], || {
        parse_ndjson(&out("ndjson", true))
    });
    let table_row = || {
        let out = out("table", true);
        assert!(out.starts_with("+---"), "{out}");
        let line = out.lines().find(|l| l.contains("LISTEN")).expect("table row").to_string();
        line.split('|').map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect::<Vec<_>>()
    };
    settled(vec!["LISTEN".to_string(), p.to_string(), "11".into(), pid.to_string()], table_row);
}

#[test]
fn sql_from_file_and_stdin() {
    let l = listener("127.0.0.1:0", 12);
    let p = port_of(&l);
    let dir = std::env::temp_dir().join(format!("sockql-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("report.sql");
    std::fs::write(&file, format!("-- a report\n{};\nSELECT 2 AS two;\n", listener_query(p))).unwrap();
    // Both statements run, in order.
    settled(
        vec![json!({"state": "LISTEN", "local_port": p, "send_q": 12, "pid": my_pid()}), json!({"two": 2})],
        || {
            let (out, err, ok) = run(&["--format", "ndjson", "-f", file.to_str().unwrap()]);
            assert!(ok, "{err}");
            parse_ndjson(&out)
        },
    );

    let mut child = Command::new(bin())
        .args(["--format", "csv", "--no-header"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("SELECT local_port FROM sockets WHERE local_port = {p}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{p}\n"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn errors_go_to_stderr_with_exit_code_1() {
    for args in [
        vec!["SELEC nonsense"],
        vec!["SELECT nope FROM sockets"],
        vec!["SELECT * FROM no_such_table"],
        vec!["-f", "/nonexistent/report.sql"],
    ] {
        let o = Command::new(bin()).args(&args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?} printed to stdout");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("sockql: error: "), "{args:?}: {err}");
        // One line, and for an unknown column the hint under it.
        assert_eq!(err.lines().filter(|l| !l.starts_with("hint: ")).count(), 1, "one line: {err}");
    }
    let (_, err, ok) = run(&["-f", "/nonexistent/report.sql"]);
    assert!(!ok && err.contains("/nonexistent/report.sql"), "{err}");
    let o = Command::new(bin()).args(["--format", "yaml", "SELECT 1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "clap's usage error code");
}

#[test]
fn catalog_commands_list_typed_described_columns() {
    let (out, _, ok) = run(&["--format", "ndjson", "tables"]);
    assert!(ok);
    let names: Vec<String> = parse_ndjson(&out).iter().map(|r| r["table_name"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        names,
        [
            "sockets",
            "processes",
            "socket_owners",
            "sysctls",
            "conntrack",
            "conntrack_stats",
            "netns",
            "netlink_sockets",
            "net_counters",
            "sockstat",
            "packets",
            "conntrack_events",
            "process_events",
            "socket_events",
            "unix_sockets",
            "tcp_metrics",
            "packet_drops",
            "socket_pressure",
            "tcp_state_changes",
            "tcp_retransmits",
            "tcp_resets",
            "containers"
        ]
    );
    let (sql_tables, _, _) = run(&["--format", "ndjson", "SHOW TABLES"]);
    assert_eq!(sql_tables, out);

    let (out, _, ok) = run(&["--format", "ndjson", "schema", "sockets"]);
    assert!(ok);
    let cols = parse_ndjson(&out);
    let port = cols.iter().find(|c| c["column_name"] == "local_port").unwrap();
    assert_eq!(port["data_type"], "UInt16");
    assert_eq!(port["nullable"], false);
    let rtt = cols.iter().find(|c| c["column_name"] == "rtt_ms").unwrap();
    assert_eq!(rtt["data_type"], "Float64");
    assert!(rtt["description"].as_str().unwrap().contains("round-trip"));
    let (described, _, _) = run(&["--format", "ndjson", "DESCRIBE sockets"]);
    assert_eq!(described, out);

    // The described types are the types queries really produce.
    let (row, _, _) = run(&[
        "--format",
        "ndjson",
        "SELECT arrow_typeof(local_port) AS t, arrow_typeof(start_time) AS s FROM sockets, processes LIMIT 1",
    ]);
    assert_eq!(parse_ndjson(&row), vec![json!({"t": "UInt16", "s": "Timestamp(ms, \"UTC\")"})]);

    let (_, err, ok) = run(&["schema", "nope"]);
    assert!(!ok && err.contains("tables are: sockets, processes, socket_owners, sysctls, conntrack, conntrack_stats, netns, netlink_sockets, net_counters, sockstat, packets, conntrack_events, process_events, socket_events, unix_sockets, tcp_metrics"), "{err}");
}

#[test]
fn a_state_name_ss_never_prints_warns_with_the_valid_names() {
    let (out, err, ok) = run(&["--format", "csv", "SELECT count(*) AS n FROM sockets WHERE state = 'ESTABLISHED'"]);
    assert!(ok);
    assert_eq!(out, "n\n0\n");
    assert!(err.contains("'ESTABLISHED' is not a socket state (ss spells it ESTAB)"), "{err}");
    assert!(err.contains("ESTAB, SYN-SENT, SYN-RECV, FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, UNCONN, CLOSE-WAIT, LAST-ACK, LISTEN, CLOSING"), "{err}");
    assert_eq!(err.lines().count(), 1, "warned once: {err}");
    let (_, err, _) = run(&["SELECT count(*) FROM sockets WHERE state IN ('TIME_WAIT', 'LISTEN')"]);
    assert!(err.contains("did you mean 'TIME-WAIT'?"), "{err}");
    let (_, err, _) = run(&["SELECT count(*) FROM sockets WHERE state = 'TIME-WAIT'"]);
    assert!(err.is_empty(), "a valid name does not warn: {err}");
}

#[test]
fn help_shows_examples() {
    let (out, _, ok) = run(&["--help"]);
    assert!(ok);
    assert!(out.contains("Examples:") && out.contains("lsof -i :80") && out.contains("sockql schema sockets"), "{out}");
}
