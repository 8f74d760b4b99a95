//! The interactive shell, driven through a pseudo-terminal as a person
//! would: multi-line input, meta-commands, completion, Ctrl-C, history.

use std::process::Command;

use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

use crate::common::*;

struct Shell {
    p: PtySession,
}

fn shell(state_dir: &std::path::Path) -> Shell {
    let mut cmd = Command::new(bin());
    cmd.env("XDG_STATE_HOME", state_dir).env("TERM", "xterm").env("COLUMNS", "200");
    let mut p = spawn_with_options(cmd, Options::new().timeout_ms(Some(15_000)).strip_ansi_escape_codes(true)).unwrap();
    p.exp_string("\\? for help, \\q to quit.").unwrap();
    Shell { p }
}

impl Shell {
    /// Wait for the prompt, then type `s` and Enter. Waiting matters:
    /// input typed before the line editor is ready is discarded, as in a
    /// real terminal.
    fn line(&mut self, s: &str) {
        self.prompt();
        self.p.send_line(s).unwrap();
    }
    /// Wait for a fresh prompt: one at the start of a line. The editor
    /// redraws the line being typed after each key ("\r\rsockql> SEL..."),
    /// and a test that mistook such a redraw for the next prompt would type
    /// ahead, which the line editor may discard.
    fn prompt(&mut self) {
        self.p.exp_regex(r"(^|\n)\r*sockql> ").unwrap_or_else(|e| panic!("expected a prompt: {e}"));
    }
    /// As [`Shell::line`], typing again until the editor echoes it: just
    /// after Ctrl-C the editor may still be resetting the terminal and drop
    /// what arrives (a loaded CI machine showed it).
    fn line_echoed(&mut self, s: &str) {
        self.prompt();
        for _ in 0..10 {
            self.p.send(s).unwrap();
            self.p.flush().unwrap();
            let (mut seen, until) = (String::new(), std::time::Instant::now() + std::time::Duration::from_secs(1));
            while std::time::Instant::now() < until {
                match self.p.try_read() {
                    Some(c) => seen.push(c),
                    None => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
                if seen.contains(s) {
                    self.p.send("\r").unwrap();
                    self.p.flush().unwrap();
                    return;
                }
            }
        }
        panic!("the shell never echoed {s:?}");
    }
    /// Type `s` at the next prompt without Enter.
    fn type_(&mut self, s: &str) {
        self.prompt();
        self.p.send(s).unwrap();
        self.p.flush().unwrap();
    }
    fn expect(&mut self, s: &str) -> String {
        self.p.exp_string(s).unwrap_or_else(|e| panic!("expected {s:?}: {e}"))
    }
}

/// The pid of the shell started with `state_dir` as its XDG_STATE_HOME
/// (a directory named after this test and process, so only that shell).
fn shell_pid(state_dir: &std::path::Path) -> i32 {
    let want = format!("XDG_STATE_HOME={}", state_dir.display());
    let mut found = std::fs::read_dir("/proc").unwrap().flatten().filter_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        env.split(|&b| b == 0).any(|v| v == want.as_bytes()).then_some(pid)
    });
    let pid = found.next().unwrap_or_else(|| panic!("no process with {want}"));
    assert!(found.next().is_none(), "two processes with {want}");
    pid
}

/// User plus system CPU time of `pid`, in clock ticks (/proc/PID/stat).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sockql-repl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn multi_line_statements_meta_commands_and_ctrl_c() {
    let dir = temp_dir("main");
    let l = listener("127.0.0.1:0", 5);
    let p = port_of(&l);
    let mut sh = shell(&dir);
    sh.line("\\format csv");
    sh.expect("Output format is Csv.");
    // A statement spans lines until its ';'.
    sh.line("SELECT local_port, send_q");
    sh.p.send_line(&format!("FROM sockets WHERE local_port = {p};")).unwrap();
    sh.expect(&format!("local_port,send_q\r\n{p},5\r\n"));
    sh.line("\\d sockets");
    sh.expect("local_port,UInt16,false,Local port");
    sh.line("\\d");
    sh.expect("socket_owners,");
    sh.line("\\?");
    sh.expect("\\watch SECONDS");
    sh.line("\\timing");
    sh.expect("Timing is on.");
    sh.line("SELECT 1 AS one;");
    sh.expect("Time: ");
    sh.line("\\timing");
    sh.expect("Timing is off.");
    sh.line(&format!("\\run port_owner port={p}"));
    sh.expect(&format!("tcp,LISTEN,127.0.0.1,{p},0.0.0.0,0,{}", my_pid()));
    sh.line("\\run");
    sh.expect("estab_by_remote,");
    // Ctrl-C while typing drops the statement, not the shell.
    sh.type_("SELECT this is not sql");
    sh.p.send_control('c').unwrap();
    sh.line_echoed("SELECT 41 + 1 AS answer;");
    let before = sh.expect("answer\r\n42\r\n");
    assert!(!before.contains("error"), "the dropped statement must not run: {before}");
    // Ctrl-C during a long query cancels the query and keeps the shell.
    let pid = shell_pid(&dir);
    let cpu_before = cpu_ticks(pid);
    sh.line("SELECT count(*) FROM generate_series(1, 100000000000);");
    // Ctrl-C once the query runs: the shell has spent 0.2 s of CPU (at the
    // usual 100 ticks a second) since Enter, which the line editor waiting
    // for a key never does. A Ctrl-C still in the editor would only drop a line.
    eventually(WAIT, || (cpu_ticks(pid) >= cpu_before + 20).then_some(()));
    sh.p.send_control('c').unwrap();
    sh.expect("query cancelled");
    sh.line_echoed("SELECT 7 AS seven;");
    sh.expect("seven\r\n7\r\n");
    // Errors are reported and the shell goes on.
    sh.line("SELECT nope FROM sockets;");
    sh.expect("sockql: error: Schema error: No field named nope");
    sh.line("\\bogus");
    sh.expect("unknown command \\bogus");
    sh.line("\\q");
    sh.p.exp_eof().unwrap();
    drop(l);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tab_completes_columns_and_commands() {
    let dir = temp_dir("tab");
    let mut sh = shell(&dir);
    sh.line("\\format csv");
    sh.expect("Output format is Csv.");
    sh.type_("SELECT local_p\t");
    sh.p.send_line(" FROM sockets WHERE false;").unwrap();
    sh.expect("local_port\r\n");
    sh.type_("\\tim\t");
    sh.p.send_line("").unwrap();
    sh.expect("Timing is on.");
    sh.type_("\\run estab_by_r\t");
    sh.p.send_line("").unwrap();
    sh.expect("remote_addr,connections");
    // Ctrl-D leaves.
    sh.prompt();
    sh.p.send_control('d').unwrap();
    sh.p.exp_eof().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn history_survives_a_restart() {
    let dir = temp_dir("hist");
    let mut sh = shell(&dir);
    sh.line("SELECT 987654 AS marker;");
    // Expect the result table, not the echo of the typed line: input typed
    // ahead of the next prompt can be lost by the line editor.
    sh.expect("| 987654 |");
    sh.line("\\q");
    sh.p.exp_eof().unwrap();
    let hist = std::fs::read_to_string(dir.join("sockql/history")).unwrap();
    assert!(hist.contains("SELECT 987654 AS marker;"), "{hist}");
    let mut sh = shell(&dir);
    // Up-arrow twice (past "\\q") recalls the previous session's statement.
    sh.type_("\x1b[A\x1b[A");
    sh.p.send_line("").unwrap();
    sh.expect("| marker |");
    sh.expect("| 987654 |");
    sh.line("\\q");
    sh.p.exp_eof().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn watch_re_runs_the_last_query_until_ctrl_c() {
    let dir = temp_dir("watch");
    let mut sh = shell(&dir);
    sh.line("SELECT 'tick' AS what;");
    sh.expect("| tick |");
    sh.line("\\watch 0.2");
    sh.expect("Every 200ms: SELECT 'tick' AS what;");
    sh.expect("Every 200ms: SELECT 'tick' AS what;");
    sh.p.send_control('c').unwrap();
    sh.line_echoed("SELECT 5 AS five;");
    sh.expect("| 5    |");
    sh.line("\\q");
    sh.p.exp_eof().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn snapshots_and_history_are_in_the_catalog_and_completion() {
    let dir = temp_dir("catalog");
    let hist = dir.join("hist");
    let (_, err, ok) = run(&["record", "--out", hist.to_str().unwrap(), "--tables", "sockstat", "--samples", "1"]);
    assert!(ok, "{err}");
    let mut cmd = Command::new(bin());
    cmd.args(["--history", hist.to_str().unwrap()])
        .env("XDG_STATE_HOME", &dir)
        .env("TERM", "xterm")
        .env("COLUMNS", "200");
    let mut sh = Shell {
        p: spawn_with_options(cmd, Options::new().timeout_ms(Some(15_000)).strip_ansi_escape_codes(true)).unwrap(),
    };
    sh.line("\\format csv");
    sh.expect("Output format is Csv.");
    sh.line("CREATE TABLE mysnap AS SELECT 1 AS uniquecolumnxyz;");
    // The new snapshot's column completes, and \d lists and describes it.
    sh.type_("SELECT uniquecol\t");
    sh.p.send_line(" FROM mysnap;").unwrap();
    sh.expect("uniquecolumnxyz\r\n1\r\n");
    sh.line("\\d");
    sh.expect("mysnap,snapshot or view made in this session");
    sh.expect("history.sockstat,samples of sockstat recorded by sockql record (--history)");
    sh.line("\\d mysnap");
    sh.expect("uniquecolumnxyz,Int64,false,");
    sh.line("DESCRIBE history.sockstat;");
    sh.expect("ts,\"Timestamp(ms, \"\"UTC\"\")\",false,When the sample was taken (UTC)");
    sh.line("\\q");
    sh.p.exp_eof().unwrap();
    // The one-shot catalog commands see history tables too.
    let (out, err, ok) = run(&["--history", hist.to_str().unwrap(), "--format", "csv", "schema", "history.sockstat"]);
    assert!(ok, "{err}");
    assert!(out.contains("host,Utf8,false,Host that recorded the sample (partition)"), "{out}");
    let (out, _, _) = run(&["--history", hist.to_str().unwrap(), "--format", "csv", "tables"]);
    assert!(out.contains("history.sockstat,"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// \x prints rows as records and back; \wide toggles cutting; an empty
/// answer says (0 rows) in the shell.
#[test]
fn expanded_display_and_empty_answers_in_the_shell() {
    let dir = temp_dir("x");
    let mut sh = shell(&dir);
    sh.line("\\x on");
    sh.expect("Expanded display is on.");
    sh.line("SELECT 7 AS seven, 'x' AS ex;");
    sh.expect("-[ RECORD 1 ]");
    sh.expect("seven | 7\r\nex    | x\r\n");
    sh.line("\\x");
    sh.expect("Expanded display is off.");
    sh.line("SELECT 8 AS eight;");
    sh.expect("| eight |\r\n");
    sh.line("SELECT 1 AS a WHERE false;");
    sh.expect("(0 rows)");
    sh.line("\\wide");
    sh.expect("Long cells are shown whole.");
    sh.line("\\x sideways");
    sh.expect("\\x takes on, off or auto, not sideways");
    sh.line("\\q");
    sh.p.exp_eof().unwrap();
}
