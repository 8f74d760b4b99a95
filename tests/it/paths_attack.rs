//! Files and directories as root, attacked for real: a user (nobody,
//! through setpriv) swaps a directory on the path to the shell's history
//! or the server's socket while sockql runs; capture filters no packet can
//! meet; table cells whose width is not the sum of their characters'.
//! Each test asserts what did NOT happen (a file written, a socket
//! listened on, a file created, a misaligned line).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

use crate::common::*;

const NOBODY: u32 = 65534;

/// A fresh directory owned by root, mode 0755, removed by the test.
fn base_dir(tag: &str) -> PathBuf {
    crate::root_safe::temp_dir(&format!("pa-{tag}"))
}

fn mkdir(p: &Path, mode: u32, uid: u32) {
    std::fs::create_dir(p).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

fn symlink_as(target: &Path, link: &Path, uid: u32) {
    std::os::unix::fs::symlink(target, link).unwrap();
    std::os::unix::fs::lchown(link, Some(uid), Some(uid)).unwrap();
}

/// Run a shell command as nobody, as the attacking user would.
fn as_nobody_sh(script: &str) {
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sh", "-c", script])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(o.status.success(), "as nobody: {script}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A root-owned file the attack aims at: (path, content, mode).
fn victim(base: &Path) -> (PathBuf, &'static str, u32) {
    let v = base.join("victim");
    std::fs::write(&v, "root's precious file\n").unwrap();
    std::fs::set_permissions(&v, std::fs::Permissions::from_mode(0o644)).unwrap();
    (v, "root's precious file\n", 0o644)
}

fn assert_untouched(v: &(PathBuf, &str, u32)) {
    assert_eq!(
        std::fs::read_to_string(&v.0).unwrap(),
        v.1,
        "root wrote through the user's link into {}",
        v.0.display()
    );
    let meta = std::fs::metadata(&v.0).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, v.2, "root chmodded {}", v.0.display());
    assert_eq!(meta.uid(), 0);
}

/// The attacker's tree: `evil/sockql/history`, a link to the victim,
/// all nobody's.
fn evil_tree(base: &Path, victim: &Path) -> PathBuf {
    let evil = base.join("evil");
    mkdir(&evil, 0o755, NOBODY);
    mkdir(&evil.join("sockql"), 0o755, NOBODY);
    symlink_as(victim, &evil.join("sockql/history"), NOBODY);
    evil
}

fn shell(env: &[(&str, &Path)], remove: &[&str]) -> PtySession {
    let mut cmd = Command::new(bin());
    cmd.env("TERM", "xterm").current_dir("/");
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let mut p = spawn_with_options(cmd, Options::new().timeout_ms(Some(15_000)).strip_ansi_escape_codes(true)).unwrap();
    p.exp_string("\\? for help").unwrap();
    p
}

/// Type a statement at a fresh prompt and wait for its answer.
fn statement(p: &mut PtySession, marker: u32) {
    p.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    p.send_line(&format!("SELECT {marker} AS marker;")).unwrap();
    p.exp_string(&format!("| {marker} |")).unwrap();
}

fn quit(mut p: PtySession) -> String {
    p.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    p.send_line("\\q").unwrap();
    p.exp_eof().unwrap()
}

/// Issue 14: the shell's history is written through a path a user swapped
/// after start. Two ways in: HOME is the user's (`sudo -E`) with its state
/// directory a link to a root-owned one at start; and a root-owned state
/// directory whose parent root made world-writable by mistake mid-run.
/// Either way the user swaps in `sockql/history -> victim` between two
/// lines; the victim must keep its content and mode, and nothing may be
/// written in the user's tree or the directory the link first pointed at.
#[test]
fn shell_history_is_never_written_through_a_swapped_directory() {
    require_root();
    let base = base_dir("hist");
    let v = victim(&base);
    let evil = evil_tree(&base, &v.0);
    let evil_before = tree(&evil);

    // sudo -E: HOME is nobody's; its .local/state is nobody's link to a
    // directory of root's, which a check that follows links trusts.
    let home = base.join("alice");
    mkdir(&home, 0o755, NOBODY);
    mkdir(&home.join(".local"), 0o755, NOBODY);
    let rootstate = base.join("rootstate");
    mkdir(&rootstate, 0o755, 0);
    symlink_as(&rootstate, &home.join(".local/state"), NOBODY);
    let mut sh = shell(&[("HOME", &home)], &["XDG_STATE_HOME"]);
    statement(&mut sh, 414141);
    // The swap, as the user: the state directory now leads to the evil tree.
    as_nobody_sh(&format!("ln -sfn {} {}/.local/state", evil.display(), home.display()));
    statement(&mut sh, 414142);
    quit(sh);
    assert_untouched(&v);
    assert_eq!(tree(&rootstate), Vec::<PathBuf>::new(), "root's history went through the user's link");
    assert_eq!(tree(&evil), evil_before);
    for p in tree(&home) {
        assert_eq!(
            std::fs::symlink_metadata(&p).unwrap().uid(),
            NOBODY,
            "root made {} in the user's home",
            p.display()
        );
    }

    // A root-owned state directory, judged safe at start; then its parent
    // becomes writable by others and the user swaps it mid-run.
    let shared = base.join("shared");
    mkdir(&shared, 0o755, 0);
    let state = shared.join("state");
    mkdir(&state, 0o700, 0);
    let mut sh = shell(&[("XDG_STATE_HOME", &state)], &[]);
    statement(&mut sh, 424201);
    let saved = std::fs::read_to_string(state.join("sockql/history")).unwrap();
    assert!(saved.contains("SELECT 424201 AS marker;"), "the first line was saved safely: {saved}");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    as_nobody_sh(&format!("mv {0}/state {0}/old && ln -s {1} {0}/state", shared.display(), evil.display()));
    sh.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    sh.send_line("SELECT 424202 AS marker;").unwrap();
    // One warning: the history stops rather than follow the new path.
    sh.exp_string("no shell history from now on").unwrap();
    sh.exp_string("is writable by group or others").unwrap();
    sh.exp_string("| 424202 |").unwrap();
    statement(&mut sh, 424203);
    let rest = quit(sh);
    assert!(!rest.contains("no shell history"), "warned more than once: {rest}");
    assert_untouched(&v);
    assert_eq!(tree(&evil), evil_before);
    // What root saved stayed where it was judged safe, and nothing after.
    assert_eq!(std::fs::read_to_string(shared.join("old/sockql/history")).unwrap(), saved);
    std::fs::remove_dir_all(&base).unwrap();
}

/// A server this test started, killed if the test ends first.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sockql serve --pg DIR` as root; returns the child once it has either
/// exited (Some(exit code), stderr) or said it listens (None, stderr so far).
fn serve_pg(dir: &Path) -> (Serve, Option<i32>, String) {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--pg", dir.to_str().unwrap(), "--pg-port", "5439"])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    if first.contains("PostgreSQL on") {
        std::thread::spawn(move || for _ in lines {});
        return (Serve(child), None, first);
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = eventually(Duration::from_secs(10), || child.try_wait().unwrap()).code();
    (Serve(child), code, std::iter::once(first).chain(rest).collect::<Vec<_>>().join("\n"))
}

/// Issue 15: the socket directory's parent belongs to a user, who could
/// rename the directory away and listen in a new one, so root's
/// `psql -h DIR` hands them its startup packet and password. serve must
/// refuse such a path (and a user's link on the way) in one line, before
/// it makes or binds anything; a root-owned path, through root's own
/// link, still works, and the socket's mode is set without following a
/// link.
#[test]
fn pg_socket_directory_is_judged_from_the_root_down() {
    require_root();
    let base = base_dir("pg");
    // The operator made DIR; its parent is the user's.
    let users = base.join("users");
    mkdir(&users, 0o755, NOBODY);
    let dir = users.join("run");
    mkdir(&dir, 0o755, 0);
    let (_child, code, err) = serve_pg(&dir);
    assert_eq!(code, Some(1), "serve started with a socket directory inside a user's: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("{} is owned by uid {NOBODY}", users.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(tree(&dir), Vec::<PathBuf>::new(), "serve made something in the refused directory");
    // The user may not even rename it: this is what they would do.
    as_nobody_sh(&format!("mv {0}/run {0}/old && mkdir {0}/run", users.display()));

    // A user's link on the way, to a directory of root's.
    let real = base.join("real");
    mkdir(&real, 0o755, 0);
    mkdir(&real.join("run"), 0o755, 0);
    symlink_as(&real, &base.join("userlink"), NOBODY);
    let (_child, code, err) = serve_pg(&base.join("userlink/run"));
    assert_eq!(code, Some(1), "serve followed a user's link: {err}");
    assert!(err.contains("is a symbolic link owned by uid 65534"), "{err}");

    // A group-writable directory, sticky or not, is refused at the end.
    std::fs::set_permissions(real.join("run"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let (_child, code, err) = serve_pg(&real.join("run"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is writable by group or others"), "{err}");

    // Root's own path, through root's own link, works: psql answers, the
    // directory is made 0755 and the socket is 0666.
    symlink_as(&real, &base.join("rootlink"), 0);
    let made = base.join("rootlink/fresh");
    let (mut child, code, said) = serve_pg(&made);
    assert_eq!(code, None, "serve refused a root-owned path: {said}");
    let o = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            made.to_str().unwrap(),
            "-p",
            "5439",
            "-U",
            "root",
            "-d",
            "sockql",
            "-c",
            "SELECT 40 + 2",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "42", "psql: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::metadata(real.join("fresh")).unwrap().permissions().mode() & 0o7777, 0o755);
    let socket = real.join("fresh/.s.PGSQL.5439");
    assert_eq!(std::fs::symlink_metadata(&socket).unwrap().permissions().mode() & 0o777, 0o666);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.0.wait().unwrap();
    eventually(Duration::from_secs(10), || (!socket.exists()).then_some(()));
    std::fs::remove_dir_all(&base).unwrap();
}

/// Issue 19: filters no packet can meet are refused in one line naming
/// them, before the file exists, instead of capturing nothing for the
/// whole --capture-for; the live `packets` table, which plans the same
/// capture, refuses them too. An interface is looked up in the target
/// namespace: one that exists only in another namespace is unknown here
/// and fine there.
#[test]
fn capture_refuses_filters_no_packet_can_meet() {
    require_root();
    let base = base_dir("cap");
    let ns = crate::netns::Netns::new("pacap");
    let ifname = format!("pa{}", std::process::id() % 1_000_000);
    ns.exec_ok("ip", &["link", "add", &ifname, "type", "veth", "peer", "name", &format!("{ifname}p")]);
    ns.exec_ok("ip", &["link", "set", &ifname, "up"]);
    let out = base.join("out.pcap");
    let only_there = format!("interface = '{ifname}'");
    let cases = [
        ("interface = 'nosuch0'", "interface = 'nosuch0': no such interface"),
        (only_there.as_str(), &*format!("interface = '{ifname}': no such interface")),
        ("dst_port = 70000", "dst_port = 70000: ports are 0 to 65535"),
        ("src_port > 65535 AND protocol = 'tcp'", "src_port >= 65536: ports are 0 to 65535"),
        ("src_addr = 'not-an-ip'", "src_addr = 'not-an-ip': not an IP address"),
        ("protocol = 'bogus'", "protocol = 'bogus': no such protocol"),
    ];
    for (filter, said) in cases {
        let started = Instant::now();
        let o = Command::new(bin())
            .args(["capture", "--capture-for", "30s", "--out", out.to_str().unwrap(), filter])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(1), "{filter}: {err}");
        assert_eq!(err.lines().count(), 1, "{filter}: {err}");
        assert!(err.contains(said), "{filter}: {said:?} not in {err}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(!out.exists(), "{filter}: the file was created");
        assert!(started.elapsed() < Duration::from_secs(10), "{filter}: it captured before refusing");
    }
    // tcpdump agrees about the unknown interface.
    if have("tcpdump") {
        let o = Command::new("tcpdump")
            .args(["-i", "nosuch0", "-c", "1", "-w", base.join("td.pcap").to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!o.status.success(), "tcpdump accepted an unknown interface");
    }
    // The same interface in the namespace that has it: a capture, a file.
    let o = Command::new(bin())
        .args([
            "capture",
            "--capture-for",
            "1s",
            "--out",
            out.to_str().unwrap(),
            &format!("netns_name = '{}' AND {only_there}", ns.name),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
    // The live table plans the same capture and refuses the same way.
    let started = Instant::now();
    let o = Command::new(bin())
        .args(["--capture-for", "30s", "SELECT count(*) FROM packets WHERE dst_port = 70000"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("dst_port = 70000: ports are 0 to 65535"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    std::fs::remove_dir_all(&base).unwrap();
}

/// Issue 20: cells holding U+FFFD (a process name that is not UTF-8, and
/// literals), wide characters and sequences whose width is not the sum
/// of their characters' (an emoji with its presentation selector) print
/// as a table whose every line has the same display width, when cells are
/// cut to a terminal's width and when they are not.
#[test]
fn table_cells_with_replacement_and_wide_characters_line_up() {
    use unicode_width::UnicodeWidthStr;
    let base = base_dir("width");
    // A process whose name is not UTF-8: shown with U+FFFD.
    let script = base.join("name.py");
    std::fs::write(&script, "import ctypes,sys,time\nctypes.CDLL(None).prctl(15, b'ab\\xff\\xfecd\\xe2\\x82', 0, 0, 0)\nprint('ready', flush=True)\ntime.sleep(60)\n").unwrap();
    let mut holder = Command::new("/usr/bin/python3").arg(&script).stdout(Stdio::piped()).spawn().unwrap();
    let mut ready = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let sql = base.join("q.sql");
    std::fs::write(
        &sql,
        format!(
            "SELECT name AS s, 'x' AS t FROM processes WHERE pid = {}
             UNION ALL SELECT 'a' || chr(65533) || 'b', repeat(chr(65533), 40)
             UNION ALL SELECT repeat(chr(10084) || chr(65039), 30), 'y'
             UNION ALL SELECT repeat('日本', 30), repeat(chr(65533) || chr(769), 20)
             UNION ALL SELECT 'abcdefghijklmnopqrstuvwxyz0123456789', 'z'",
            holder.id()
        ),
    )
    .unwrap();
    for cols in [0, 50, 33] {
        // A terminal `cols` wide (script gives sockql one), or a pipe.
        let o = if cols == 0 {
            Command::new(bin()).args(["--format", "table", "-f", sql.to_str().unwrap()]).output().unwrap()
        } else {
            let cmd = format!("stty cols {cols} rows 40; exec {} --expanded off -f {}", bin(), sql.display());
            Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::null()).output().unwrap()
        };
        let text = String::from_utf8_lossy(&o.stdout).replace('\r', "");
        assert!(o.status.success(), "{cols}: {}{text}", String::from_utf8_lossy(&o.stderr));
        assert!(text.contains("ab\u{fffd}\u{fffd}cd\u{fffd}"), "{cols}: the process name is missing: {text}");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('|') || l.starts_with('+')).collect();
        assert_eq!(lines.len(), 9, "{cols}: {text}");
        let widths: Vec<usize> = lines.iter().map(|l| l.width()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{cols}: lines of widths {widths:?}:\n{text}");
        if cols > 0 {
            assert_eq!(widths[0], cols, "{cols}: the table fills the terminal:\n{text}");
        }
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::fs::remove_dir_all(&base).unwrap();
}
