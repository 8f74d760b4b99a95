//! What an operator meets first: output that fits the terminal (checked
//! in a real pty of 80, 100 and 120 columns), empty answers that say so,
//! errors that carry the fix, parameters typed by their defaults, record's
//! progress in a log, and the install pieces (completions, man page).

use std::process::Command;

use serde_json::json;

use crate::common::*;
use crate::netns::Netns;

/// sockql's output in a pty `cols` wide (util-linux `script`), with the
/// pty's \r\n turned back into \n.
fn in_terminal(cols: usize, args: &[&str]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let cmd = format!("stty cols {cols} rows 50; {} {}", bin(), quoted.join(" "));
    let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n")
}

fn widest(text: &str) -> usize {
    use unicode_width::UnicodeWidthStr;
    text.lines().map(|l| l.width()).max().unwrap_or(0)
}

#[test]
fn table_output_fits_the_terminal_and_pipes_are_not_cut() {
    // At least two sockets to show.
    let _held = (listener("127.0.0.1:0", 1), listener("127.0.0.1:0", 1));
    for cols in [80, 120] {
        // 90-odd columns cannot fit: one record per row, one column per line.
        let all = in_terminal(cols, &["SELECT * FROM sockets LIMIT 2"]);
        assert!(all.starts_with("-[ RECORD 1 ]"), "{all}");
        assert!(all.contains("\nlocal_port ") && all.contains("-[ RECORD 2 ]"), "{all}");
        assert!(widest(&all) <= cols, "{cols}: {all}");
        // A few long text cells are cut with an ellipsis to fit.
        let list = in_terminal(cols, &["run", "--list"]);
        assert!(list.starts_with("+---") && list.contains('…'), "{list}");
        assert!(widest(&list) <= cols, "{cols}: {list}");
        // The longest report name sets the first column's width; no name is cut.
        assert!(list.contains("| metric_tcp_retransmit_events |"), "the first column is kept whole: {list}");
        assert!(list.contains("| fastest_growing_remotes "), "the first column is kept whole: {list}");
        // --wide keeps every cell whole; --expanded on prints records.
        let wide = in_terminal(cols, &["--wide", "run", "--list"]);
        assert!(!wide.contains('…') && widest(&wide) > cols, "{wide}");
        let x = in_terminal(cols, &["-x", "on", "SELECT 1 AS a, 'b' AS b"]);
        assert_eq!(x, format!("-[ RECORD 1 ]{}\na | 1\nb | b\n", "-".repeat(cols - "-[ RECORD 1 ]".len())));
    }
    for args in [&["run", "--list"][..], &["schema", "sockets"], &["run", "health"]] {
        let out = in_terminal(100, args);
        assert!(widest(&out) <= 100, "{args:?}: {out}");
    }
    // Not a terminal: nothing is cut, and no records unless asked.
    let (piped, _, ok) = run(&["run", "--list"]);
    assert!(ok && !piped.contains('…') && widest(&piped) > 120, "{piped}");
    let (piped, _, _) = run(&["SELECT * FROM sockets LIMIT 1"]);
    assert!(piped.starts_with("+---"), "{piped}");
}

#[test]
fn empty_answers_say_so_on_a_terminal_only() {
    let empty = in_terminal(80, &["SELECT 1 AS a WHERE false"]);
    assert_eq!(empty, "+---+\n| a |\n+---+\n+---+\n(0 rows)\n");
    let (piped, _, _) = run(&["SELECT 1 AS a WHERE false"]);
    assert_eq!(piped, "+---+\n| a |\n+---+\n+---+\n");
    // health in a namespace with nothing wrong: "no findings", and scripts
    // still get an empty csv / json.
    let ns = Netns::new("uxH");
    let table = ns.exec_ok(bin(), &["run", "health"]);
    assert!(table.starts_with("no findings"), "{table}");
    assert_eq!(
        ns.exec_ok(bin(), &["run", "health", "--format", "csv"]),
        "netns,netns_name,rule,subject,value,evidence\n"
    );
    assert_eq!(ns.exec_ok(bin(), &["run", "health", "--format", "json"]), "[]\n");
}

#[test]
fn errors_carry_the_hint() {
    let err = |args: &[&str]| {
        let (_, e, ok) = run(args);
        assert!(!ok, "{args:?} should fail");
        e
    };
    let e = err(&["SELECT nosuchcol FROM sockets"]);
    assert!(e.contains("No field named nosuchcol") && e.contains("\nhint: columns here, nearest first: "), "{e}");
    let e = err(&["SELECT local_prt FROM sockets"]);
    assert!(e.contains("hint: columns here, nearest first: local_port, "), "{e}");
    let e = err(&["SELECT * FROM sockets WHERE state = ESTAB"]);
    assert!(e.contains("hint: 'ESTAB' is a state, not a column: quote it, as in state = 'ESTAB'"), "{e}");
    // A regex error keeps the lines that point at the mistake.
    let e = err(&["SELECT * FROM processes WHERE name ~ '('"]);
    assert!(e.contains("regex parse error:\n") && e.contains("unclosed group"), "{e}");
    // ss-style endpoints match nothing, and say why.
    let (out, e, ok) = run(&["--format", "csv", "SELECT count(*) AS n FROM sockets WHERE remote_addr = '10.0.0.2:80'"]);
    assert!(ok && out == "n\n0\n", "{out}");
    assert!(
        e.contains("'10.0.0.2:80' is not an address") && e.contains("remote_addr = '10.0.0.2' AND remote_port = 80"),
        "{e}"
    );
    let (_, e, _) = run(&["SELECT count(*) FROM sockets WHERE local_addr = '[::]'"]);
    assert!(e.contains("addresses are written without brackets: local_addr = '::'"), "{e}");
    // Parameters are typed by their defaults.
    let e = err(&["run", "idle_estab", "--param", "seconds=abc"]);
    assert!(e.contains("--param seconds=abc: seconds of saved query idle_estab takes a whole number (default"), "{e}");
    let e = err(&["run", "port_owner", "--param", "port=99999"]);
    assert!(e.contains("takes a port number from 0 to 65535 or a service name"), "{e}");
    let e = err(&["run", "port_owner", "--param", "port=no-such-service"]);
    assert!(e.contains("a port number or a service name from /etc/services"), "{e}");
    // A flag that does not apply to record is refused, before or after it.
    for args in [
        &["record", "--out", "/nonexistent", "--format", "csv"][..],
        &["--watch", "2s", "record", "--out", "/nonexistent"],
    ] {
        let (_, e, ok) = run(args);
        assert!(!ok && e.contains("does not apply to record"), "{args:?}: {e}");
    }
}

/// `--param port=https` means 443, as /etc/services says.
#[test]
fn port_parameters_take_service_names() {
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    assert!(
        services.lines().any(|l| l.starts_with("https") && l.contains("443/tcp")),
        "this test needs /etc/services (netbase)"
    );
    let ns = Netns::new("uxP");
    let _l = ns.enter(|| listener("127.0.0.1:443", 4));
    let by_name = ns.exec_ok(bin(), &["run", "port_owner", "--param", "port=https", "--format", "ndjson"]);
    let by_number = ns.exec_ok(bin(), &["run", "port_owner", "--param", "port=443", "--format", "ndjson"]);
    assert_eq!(by_name, by_number);
    let rows = parse_ndjson(&by_name);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["state"].clone(), rows[0]["local_port"].clone()), (json!("LISTEN"), json!(443)));
}

#[test]
fn sql_may_start_with_a_comment_and_run_alone_lists() {
    let (out, e, ok) = run(&["--format", "csv", "-- why: a note\nSELECT 1 AS one"]);
    assert!(ok, "{e}");
    assert_eq!(out, "one\n1\n");
    let (out, _, ok) = run(&["--format", "csv", "--", "-- after --\nSELECT 2 AS two"]);
    assert!(ok && out == "two\n2\n", "{out}");
    let (alone, _, ok) = run(&["run", "--format", "csv"]);
    let (listed, _, _) = run(&["run", "--list", "--format", "csv"]);
    assert!(ok && alone == listed && alone.contains("\nhealth,"), "{alone}");
}

#[test]
fn record_logs_one_plain_line_per_sample_when_not_a_terminal() {
    let dir = std::env::temp_dir().join(format!("sockql-ux-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (_, err, ok) =
        run(&["record", "--out", dir.to_str().unwrap(), "--tables", "sockstat", "--samples", "2", "--every", "100ms"]);
    assert!(ok, "{err}");
    assert!(!err.contains('\r'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with("sockql record: 1 samples,") && lines[1].starts_with("sockql record: 2 samples,"),
        "{err}"
    );
    assert!(lines[2].ends_with("(done)"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_and_man_page_come_from_the_same_definitions() {
    let (bash, _, ok) = run(&["completions", "bash"]);
    assert!(ok && bash.contains("--all-netns") && bash.contains("record"), "{bash}");
    let file = std::env::temp_dir().join(format!("sockql-completion-{}.bash", std::process::id()));
    std::fs::write(&file, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    std::fs::remove_file(file).unwrap();
    for shell in ["zsh", "fish"] {
        let (out, _, ok) = run(&["completions", shell]);
        assert!(ok && out.contains("all-netns"), "{shell}: {out}");
    }
    let (man, _, ok) = run(&["man"]);
    assert!(ok && man.contains(".TH sockql 1") && man.contains("all\\-netns"), "{man}");
    // record's help leaves out what does not apply to it.
    let (help, _, _) = run(&["record", "--help"]);
    for flag in ["--watch", "--format", "--no-header", "--history", "--wide", "--expanded"] {
        assert!(!help.contains(flag), "record --help lists {flag}: {help}");
    }
    assert!(help.contains("--out") && help.contains("--every"), "{help}");
}

/// Timestamps print as RFC 3339 instants with their Z in every format, as
/// `ts` does, so jq's fromdateiso8601 and date -d read them.
#[test]
fn timestamps_carry_their_zone_in_every_format() {
    let sql = format!("SELECT start_time FROM processes WHERE pid = {}", my_pid());
    let (csv, _, _) = run(&["--format", "csv", "--no-header", &sql]);
    let (json, _, _) = run(&["--format", "json", &sql]);
    let (ndjson, _, _) = run(&["--format", "ndjson", &sql]);
    let (table, _, _) = run(&[&sql]);
    let t = csv.trim().to_string();
    // RFC 3339 in UTC; a whole second prints without its fraction.
    assert!(t.ends_with('Z') && t.len() >= "2026-11-27T00:44:26Z".len() && t.as_bytes()[10] == b'T', "{csv}");
    assert_eq!(json.trim(), format!("[{{\"start_time\":\"{t}\"}}]"));
    assert_eq!(ndjson.trim(), format!("{{\"start_time\":\"{t}\"}}"));
    assert!(table.contains(&format!("| {t} |")), "{table}");
    // The instant is this process's start, as date reads it back.
    let o = Command::new("date").args(["-u", "-d", &t, "+%s"]).output().unwrap();
    let started: i64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(started <= now && now - started < 3600, "{t}");
}

/// record's progress piped into `head -1`: stderr closes after one line,
/// and sockql goes on recording and ends with 0, not a panic.
#[test]
fn record_outlives_a_closed_stderr() {
    let dir = std::env::temp_dir().join(format!("sockql-ux-closed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let script = format!(
        "'{}' record --out '{}' --tables sockstat --samples 4 --every 100ms 2>&1 | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
        bin(),
        dir.display()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("sockql record: 1 samples,") && out.contains("\nstatus=0\n"), "{out}");
    let day = std::fs::read_dir(dir.join("sockstat")).unwrap().next().unwrap().unwrap().path();
    let files = std::fs::read_dir(std::fs::read_dir(day).unwrap().next().unwrap().unwrap().path()).unwrap().count();
    assert_eq!(files, 4, "every sample written");
    std::fs::remove_dir_all(&dir).unwrap();
}
