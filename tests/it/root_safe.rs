//! sockql as root against a hostile colleague (issue "Root-safe"): every
//! attack the issue reproduced, run for real in temporary directories this
//! test creates, asserting that nothing was written, deleted, leaked or
//! printed raw, with the exit code and message. Where it matters the same
//! attack is also run as an unprivileged user (setpriv).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const NOBODY: u32 = 65534;

/// A fresh directory owned by root, mode 0755.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sockql-safe-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn chown(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

/// Run sockql in `dir` with extra environment; (stdout, stderr, exit code).
fn run_at(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (String, String, Option<i32>) {
    let mut c = Command::new(bin());
    c.current_dir(dir).args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status.code())
}

/// Expect a refusal: exit 1, one stderr line naming `needle`, no output.
fn refused(out: (String, String, Option<i32>), needle: &str) {
    let (o, e, code) = out;
    assert_eq!(code, Some(1), "expected exit 1: {e}");
    assert!(o.is_empty(), "printed: {o}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains(needle), "{needle:?} not in {e}");
    assert!(!e.contains("panicked"), "{e}");
}

fn as_nobody(args: &[&str]) -> (String, String, Option<i32>) {
    require_root();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status.code())
}

fn with_stdin(args: &[&str], input: &[u8]) -> (String, String, Option<i32>) {
    let mut c = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let input = input.to_vec();
    // A writer thread: sockql may stop reading early, which breaks the pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let o = c.wait_with_output().unwrap();
    writer.join().unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status.code())
}

/// Item 1 and 4: the policy looks at every plan node; limits stay the
/// operator's.
#[test]
fn policy_refuses_writes_wrapped_in_any_plan_node() {
    let dir = temp_dir("policy");
    let target = dir.join("x.sh");
    let t = target.display();
    let d = dir.as_path();
    for sql in [
        format!("EXPLAIN ANALYZE COPY (SELECT '* * * * * root id' AS l) TO '{t}' STORED AS CSV OPTIONS ('format.has_header' 'false')"),
        format!("EXPLAIN ANALYZE COPY (SELECT 1 AS l) TO '{t}' STORED AS JSON"),
        format!("EXPLAIN COPY (SELECT 1 AS l) TO '{t}' STORED AS CSV"),
        format!("SELECT 1; COPY (SELECT 1 AS l) TO '{t}' STORED AS CSV"),
    ] {
        let (o, e, code) = run_at(d, &[], &[&sql]);
        assert_eq!(code, Some(1), "{sql}: {e}");
        assert!(e.contains("refused: COPY ... TO writes files") && e.contains("--allow-files"), "{e}");
        assert!(!o.contains("l"), "{o}");
        assert!(!target.exists(), "{sql} wrote {t}");
    }
    // The same from a file, from standard input and from a saved query.
    let copy = format!("EXPLAIN ANALYZE COPY (SELECT 1 AS l) TO '{t}' STORED AS CSV");
    let f = dir.join("exfil.sql");
    std::fs::write(&f, format!("{copy};\n")).unwrap();
    refused(run_at(d, &[], &["-f", f.to_str().unwrap()]), "refused: COPY");
    let (_, e, code) = with_stdin(&[], copy.as_bytes());
    assert_eq!(code, Some(1));
    assert!(e.contains("refused: COPY"), "{e}");
    let config = dir.join("config");
    std::fs::create_dir_all(config.join("sockql/queries")).unwrap();
    std::fs::write(config.join("sockql/queries/exfil.sql"), format!("-- name: exfil\n-- description: d\n{copy};\n"))
        .unwrap();
    refused(run_at(d, &[("XDG_CONFIG_HOME", config.to_str().unwrap())], &["run", "exfil"]), "refused: COPY");
    assert!(!target.exists());
    // INSERT wrapped in EXPLAIN ANALYZE or a prepared statement.
    refused(
        run_at(d, &[], &["CREATE TABLE t AS SELECT 1 AS x; EXPLAIN ANALYZE INSERT INTO t VALUES (2)"]),
        "refused: INSERT",
    );
    refused(
        run_at(
            d,
            &[],
            &["CREATE TABLE t AS SELECT 1 AS x; PREPARE p(BIGINT) AS INSERT INTO t VALUES ($1); EXECUTE p(3)"],
        ),
        "refused: INSERT",
    );
    // A subquery cannot hide what the top node does not show.
    refused(
        run_at(d, &[], &[&format!("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{}'", dir.display())]),
        "refused: CREATE EXTERNAL TABLE",
    );
    // Built-in tables cannot be replaced or dropped, even with --allow-files.
    refused(
        run_at(d, &[], &["--allow-files", "CREATE OR REPLACE TABLE sockets AS SELECT 1 AS fake"]),
        "'sockets' is a built-in table",
    );
    refused(run_at(d, &[], &["CREATE VIEW processes AS SELECT 1 AS fake"]), "'processes' is a built-in table");
    refused(run_at(d, &[], &["DROP TABLE sockets"]), "cannot be dropped");
    refused(run_at(d, &[], &["CREATE SCHEMA x"]), "changes the catalog");
    // Snapshots and views in memory are fine, and DROP of one's own too.
    let (o, e, code) = run_at(d, &[], &["--format", "csv", "--no-header", "CREATE TABLE snap AS SELECT 1 AS x; CREATE VIEW v AS SELECT x + 1 AS y FROM snap; SELECT y FROM v; DROP TABLE snap"]);
    assert_eq!((o.as_str(), code), ("2\n", Some(0)), "{e}");
    // Item 4: SET cannot lift the operator's limits.
    let spill = dir.join("spill");
    for (sql, needle) in [
        ("SET datafusion.runtime.memory_limit = '4G'", "SET datafusion.runtime.memory_limit is not allowed"),
        (
            &*format!("SET datafusion.runtime.temp_directory = '{}'", spill.display()),
            "SET datafusion.runtime.temp_directory is not allowed",
        ),
        (
            "SET datafusion.execution.target_partitions = 100000",
            "SET datafusion.execution.target_partitions is not allowed",
        ),
        ("RESET datafusion.runtime.memory_limit", "RESET datafusion.runtime.memory_limit is not allowed"),
    ] {
        refused(run_at(d, &[], &["--memory-limit", "64M", "--allow-files", sql]), needle);
    }
    assert!(!spill.exists(), "SET created {}", spill.display());
    // What only changes how results look may be set.
    let (o, e, code) = run_at(
        d,
        &[],
        &["--format", "csv", "--no-header", "SET datafusion.execution.time_zone = '+01:00'; SELECT 'ok'"],
    );
    assert_eq!((o.as_str(), code), ("ok\n", Some(0)), "{e}");
    // And the same refusal for an unprivileged user.
    refused(
        as_nobody(&[&format!(
            "EXPLAIN ANALYZE COPY (SELECT 1 AS l) TO '/tmp/sockql-nobody-{}.csv' STORED AS CSV",
            std::process::id()
        )]),
        "refused: COPY",
    );
    assert!(!Path::new(&format!("/tmp/sockql-nobody-{}.csv", std::process::id())).exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Item 1 (snapshots) and 8: a snapshot counts against --memory-limit.
#[test]
fn snapshots_count_against_the_memory_limit() {
    let sql = "CREATE TABLE t AS SELECT v, v * 2 AS w FROM generate_series(1, 50000000) AS s(v)";
    let r = peak_rss(&[bin(), "--memory-limit", "64M", sql]);
    assert!(!r.ok);
    assert!(r.err.contains("--memory-limit"), "{}", r.err);
    assert_eq!(r.err.lines().count(), 1, "{}", r.err);
    let base = peak_rss(&[bin(), "SELECT 1"]).peak_kib;
    // Refused near the limit: 50M rows would be 800 MB.
    assert!(r.peak_kib < base + 3 * 64 * 1024, "peak {} KiB (SELECT 1: {base} KiB)", r.peak_kib);
    // A small snapshot under the same limit works, and DROP frees its room
    // for the next one.
    let small = "CREATE TABLE a AS SELECT v FROM generate_series(1, 2000000) AS s(v); DROP TABLE a; \
                 CREATE TABLE b AS SELECT v FROM generate_series(1, 2000000) AS s(v); SELECT count(*) AS n FROM b";
    let (o, e, ok) = run(&["--memory-limit", "24M", "--format", "csv", "--no-header", small]);
    assert!(ok, "{e}");
    assert_eq!(o, "2000000\n");
}

/// Item 2: ./queries of another user, a name header that claims a
/// built-in report, a symlink to /proc/kmsg and a FIFO.
#[test]
fn saved_queries_cannot_be_hijacked() {
    require_root();
    let w = temp_dir("hijack");
    // A directory an unprivileged user owns, with their queries/.
    let q = w.join("queries");
    std::fs::create_dir(&q).unwrap();
    std::fs::write(q.join("zz.sql"), "-- name: listeners\n-- description: evil\nSELECT 'hijacked' AS protocol\n")
        .unwrap();
    chown(&q, NOBODY);
    chown(&q.join("zz.sql"), NOBODY);
    let (o, e, code) = run_at(&w, &[("XDG_CONFIG_HOME", "/nonexistent")], &["--format", "csv", "run", "listeners"]);
    assert_eq!(code, Some(0), "{e}");
    assert!(!o.contains("hijacked"), "root ran another user's SQL: {o}");
    assert!(o.starts_with("netns,netns_name,protocol") || o.contains("protocol"), "{o}");
    assert!(e.contains(&format!("not searching queries for saved queries: queries is owned by uid {NOBODY}")), "{e}");
    // An unprivileged user is protected the same way from a third user's
    // directory (uid 1 here).
    chown(&q, 1);
    chown(&q.join("zz.sql"), 1);
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args(["--format", "csv", "run", "listeners"])
        .current_dir(&w)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .unwrap();
    let (o, e, ok) = output_of(o);
    assert!(ok, "{e}");
    assert!(!o.contains("hijacked") && e.contains("queries is owned by uid 1, not by root or you"), "{o}{e}");
    // Root's own directory: the file is named by its file name.
    chown(&q, 0);
    chown(&q.join("zz.sql"), 0);
    let (o, e, code) = run_at(&w, &[("XDG_CONFIG_HOME", "/nonexistent")], &["--format", "csv", "run", "listeners"]);
    assert_eq!(code, Some(0), "{e}");
    assert!(!o.contains("hijacked"), "a name header replaced a built-in report: {o}");
    let (o, e, code) =
        run_at(&w, &[("XDG_CONFIG_HOME", "/nonexistent")], &["--format", "csv", "--no-header", "run", "zz"]);
    assert_eq!((o.as_str(), code), ("hijacked\n", Some(0)), "{e}");
    assert!(e.contains("its '-- name: listeners' header is ignored; a saved query is named by its file: zz"), "{e}");
    // A root-owned file in a directory others can write is not read.
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (o, e, _) = run_at(&w, &[("XDG_CONFIG_HOME", "/nonexistent")], &["run", "zz"]);
    assert!(
        o.is_empty() && e.contains("writable by group or others") && e.contains("no saved query named 'zz'"),
        "{e}"
    );
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A file another user owns in root's directory is not read either.
    chown(&q.join("zz.sql"), NOBODY);
    let (_, e, _) = run_at(&w, &[("XDG_CONFIG_HOME", "/nonexistent")], &["run", "zz"]);
    assert!(e.contains(&format!("zz.sql is owned by uid {NOBODY}")), "{e}");
    std::fs::remove_file(q.join("zz.sql")).unwrap();
    // A symlink to /proc/kmsg and a FIFO: every run (and --list) finishes.
    std::os::unix::fs::symlink("/proc/kmsg", q.join("a.sql")).unwrap();
    let fifo = std::ffi::CString::new(q.join("b.sql").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    for args in [&["run", "--list"][..], &["run", "states"][..]] {
        let start = Instant::now();
        let (o, e, code) = run_at(&w, &[("XDG_CONFIG_HOME", "/nonexistent")], args);
        assert_eq!(code, Some(0), "{args:?}: {e}");
        assert!(start.elapsed() < Duration::from_secs(10), "{args:?} took {:?}", start.elapsed());
        assert!(!o.is_empty());
        assert!(e.contains("a.sql") && e.contains("b.sql"), "each unreadable file is named: {e}");
    }
    std::fs::remove_dir_all(w).unwrap();
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// Every file (not directory) below `dir`, links included, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        crate::common::tree(dir).into_iter().filter(|p| !std::fs::symlink_metadata(p).unwrap().is_dir()).collect();
    out.sort();
    out
}

/// Item 3: retention and writes never follow links; --out must be ours.
#[test]
fn record_never_follows_links_or_uses_anothers_directory() {
    require_root();
    let base = temp_dir("record");
    let victim = base.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();
    let out = base.join("out");
    let host_dir = out.join("sockets").join(format!("host={}", host()));
    std::fs::create_dir_all(&host_dir).unwrap();
    std::os::unix::fs::symlink(&victim, host_dir.join("date=2000-01-01")).unwrap();
    let record = |out: &Path| {
        run_at(
            &base,
            &[],
            &[
                "record",
                "--out",
                out.to_str().unwrap(),
                "--tables",
                "sockets",
                "--samples",
                "1",
                "--every",
                "100ms",
                "--retention",
                "7d",
            ],
        )
    };
    let (_, e, code) = record(&out);
    assert_eq!(code, Some(0), "{e}");
    assert!(e.contains("retention skips it") && e.contains("is a symbolic link"), "{e}");
    assert_eq!(
        std::fs::read_to_string(victim.join("precious")).unwrap(),
        "keep me",
        "retention deleted through a link"
    );
    // What it wrote: 0750 directories, 0640 files, no temporary left.
    let written: Vec<PathBuf> =
        files_under(&out).into_iter().filter(|p| !p.starts_with(host_dir.join("date=2000-01-01"))).collect();
    let parquet: Vec<&PathBuf> = written
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet") && p.starts_with(out.join("sockets")))
        .collect();
    assert_eq!(parquet.len(), 1, "{written:?}");
    assert_eq!(std::fs::metadata(parquet[0]).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(std::fs::metadata(parquet[0].parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o750);
    // A link where today's partition goes stops the write; nothing lands
    // in the link's target.
    let today = chrono_today();
    std::fs::remove_dir_all(host_dir.join(format!("date={today}"))).unwrap();
    std::os::unix::fs::symlink(&victim, host_dir.join(format!("date={today}"))).unwrap();
    let (_, e, code) = record(&out);
    assert_eq!(code, Some(1), "{e}");
    assert!(e.contains(&format!("date={today} is a symbolic link")), "{e}");
    assert_eq!(files_under(&victim), vec![victim.join("precious")], "root wrote through a link");
    // --out owned by another user, or writable by others without the
    // sticky bit, is refused; a sticky world-writable one (like /tmp) is
    // used, with what is below it checked.
    let (_, e, code) = as_nobody(&["record", "--out", out.to_str().unwrap(), "--tables", "sockets", "--samples", "1"]);
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "refusing --out {}: it belongs to uid 0, not to the user sockql runs as (65534)",
            out.display()
        )),
        "{e}"
    );
    let theirs = base.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    chown(&theirs, NOBODY);
    refused(record(&theirs), &format!("refusing --out {}: it belongs to uid {NOBODY}", theirs.display()));
    assert!(files_under(&theirs).is_empty());
    let open = base.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(record(&open), "writable by group or others (mode 777) without the sticky bit");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Another user got there first with the table directory.
    std::fs::create_dir(open.join("sockets")).unwrap();
    chown(&open.join("sockets"), NOBODY);
    refused(record(&open), &format!("belongs to uid {NOBODY}"));
    std::fs::remove_dir(open.join("sockets")).unwrap();
    let (_, e, code) = record(&open);
    assert_eq!(code, Some(0), "{e}");
    assert_eq!(files_under(&open.join("sockets")).len(), 1);
    std::fs::remove_dir_all(base).unwrap();
}

fn chrono_today() -> String {
    let o = Command::new("date").args(["-u", "+%Y-%m-%d"]).output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// A `sleep` named `name` (a copy of the binary under that file name, as
/// the kernel names a process after its executable) that shares `fd`:
/// FD_CLOEXEC is cleared in the child only. The caller closes its own copy
/// so the child is the socket's only holder.
fn renamed_holder(dir: &Path, fd: i32, name: &[u8]) -> std::process::Child {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let exe = dir.join(std::ffi::OsStr::from_bytes(name));
    std::fs::copy("/bin/sleep", &exe).unwrap();
    let mut c = Command::new(&exe);
    c.arg("30");
    // SAFETY: only fcntl, async-signal-safe, between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().unwrap()
}

/// Item 5: what a process calls itself is escaped in every type, header,
/// error line and (on a terminal) csv.
#[test]
fn process_names_cannot_drive_the_terminal() {
    let evil = b"\x1b[2J\x1b]0;PWN\x07";
    let shown = r"\x1b[2J\x1b]0;PWN\x07";
    // A listener whose accept queue is full, held only by the renamed
    // process: the health report names it.
    let l = listener("127.0.0.1:0", 1);
    let p = port_of(&l);
    let clients: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(("127.0.0.1", p))).collect();
    let dir = temp_dir("evil");
    let mut child = renamed_holder(&dir, std::os::fd::AsRawFd::as_raw_fd(&l), evil);
    drop(l);
    let pid = child.id();
    let (o, e, ok) = eventually(WAIT, || Some(run(&["run", "health"])).filter(|r| r.0.contains("PWN")));
    assert!(ok, "{e}");
    assert!(o.contains(&format!("({shown} is not accepting fast enough)")), "{o}");
    assert!(!o.contains('\x1b') && !o.contains('\x07'), "raw control characters in health: {o:?}");
    let name = format!("(SELECT name FROM processes WHERE pid = {pid})");
    for sql in [
        format!("SELECT {name} AS n"),
        format!("SELECT CAST({name} AS VARCHAR) AS n"),
        format!("SELECT arrow_cast({name}, 'Utf8View') AS n"),
        format!("SELECT arrow_cast({name}, 'LargeUtf8') AS n"),
        format!("SELECT arrow_cast({name}, 'Dictionary(Int32, Utf8)') AS n"),
        format!("SELECT array_agg(name) AS n FROM processes WHERE pid = {pid}"),
        format!("SELECT string_agg(name, ',') AS n FROM processes WHERE pid = {pid}"),
        format!("SELECT named_struct('name', name) AS n FROM processes WHERE pid = {pid}"),
        format!("SELECT 1 AS \"{}\"", String::from_utf8_lossy(evil)),
    ] {
        let (o, e, ok) = run(&[&sql]);
        assert!(ok, "{sql}: {e}");
        assert!(o.contains(shown), "{sql}: {o}");
        assert!(!o.contains('\x1b') && !o.contains('\x07'), "{sql}: raw control characters: {o:?}");
    }
    // The same for an unprivileged user.
    let (o, e, code) = as_nobody(&[&format!("SELECT {name} AS n")]);
    assert_eq!(code, Some(0), "{e}");
    assert!(o.contains(shown) && !o.contains('\x1b'), "{o:?}");
    // Error lines that quote data.
    let (_, e, ok) = run(&[&format!("SELECT * FROM \"{}\"", String::from_utf8_lossy(evil))]);
    assert!(!ok);
    assert!(e.contains(shown) && !e.contains('\x1b'), "{e:?}");
    // csv: escaped on request (and on a terminal), raw for pipes by default.
    let sql = format!("SELECT {name} AS n");
    let (o, _, _) = run(&["--format", "csv", "--escape", "always", &sql]);
    assert_eq!(o, format!("n\n{shown}\n"));
    let (o, _, _) = run(&["--format", "csv", &sql]);
    assert_eq!(o.as_bytes(), [b"n\n".as_slice(), evil, b"\n"].concat(), "pipes get the value itself");
    let mut tty = rexpect::session::spawn_command(
        {
            let mut c = Command::new(bin());
            c.args(["--format", "csv", &sql]);
            c
        },
        Some(10_000),
    )
    .unwrap();
    let seen = tty.exp_eof().unwrap();
    assert!(seen.contains(shown) && !seen.contains('\x1b'), "csv on a terminal: {seen:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(clients);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Item 6: a name that is not UTF-8 is still a name.
#[test]
fn invalid_utf8_names_are_shown_not_hidden() {
    let l = listener("127.0.0.1:0", 2);
    let p = port_of(&l);
    let dir = temp_dir("utf8");
    let mut child = renamed_holder(&dir, std::os::fd::AsRawFd::as_raw_fd(&l), b"\xffhide");
    drop(l);
    let sql = format!("SELECT process FROM sockets WHERE local_port = {p}");
    settled(vec![serde_json::json!({"process": "\u{fffd}hide"})], || query(&sql));
    let rows = query(&format!("SELECT name FROM processes WHERE pid = {}", child.id()));
    assert_eq!(rows, vec![serde_json::json!({"name": "\u{fffd}hide"})]);
    let rows = query(&format!("SELECT count(*) AS n FROM sockets WHERE process = '\u{fffd}hide' AND local_port = {p}"));
    assert_eq!(rows, vec![serde_json::json!({"n": 1})]);
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Item 7: as root under `sudo -E`/`su`, HOME is still the user's; root
/// neither writes through a link there nor creates anything in it.
#[test]
fn root_shell_history_stays_out_of_a_users_home() {
    require_root();
    let base = temp_dir("home");
    let home = base.join("alice");
    let state = home.join(".local/state/sockql");
    std::fs::create_dir_all(&state).unwrap();
    let victim = base.join("root-owned");
    std::fs::write(&victim, "root's file\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, state.join("history")).unwrap();
    for p in [&home, &home.join(".local"), &home.join(".local/state"), &state] {
        chown(p, NOBODY);
    }
    chown(&state.join("history"), NOBODY);
    let before = files_under(&home);
    let mut cmd = Command::new(bin());
    cmd.env("HOME", &home).env_remove("XDG_STATE_HOME").env("TERM", "xterm");
    let mut sh = rexpect::session::spawn_with_options(
        cmd,
        rexpect::reader::Options::new().timeout_ms(Some(15_000)).strip_ansi_escape_codes(true),
    )
    .unwrap();
    sh.exp_string("\\? for help").unwrap();
    sh.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    sh.send_line("SELECT 424242 AS marker;").unwrap();
    sh.exp_string("| 424242 |").unwrap();
    sh.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    sh.send_line("\\q").unwrap();
    sh.exp_eof().unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n", "root wrote through the user's link");
    assert_eq!(
        std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
        0o644,
        "root chmodded the link's target"
    );
    assert_eq!(files_under(&home), before, "root created files in the user's home");
    for e in crate::common::tree(&home) {
        assert_eq!(std::fs::symlink_metadata(&e).unwrap().uid(), NOBODY, "{} belongs to root", e.display());
    }
    // Root's own state directory with a link in place of the file: no
    // history rather than a write through the link.
    let own = base.join("rootstate");
    std::fs::create_dir_all(own.join("sockql")).unwrap();
    std::os::unix::fs::symlink(&victim, own.join("sockql/history")).unwrap();
    let mut cmd = Command::new(bin());
    cmd.env("XDG_STATE_HOME", &own).env("TERM", "xterm");
    let mut sh = rexpect::session::spawn_with_options(
        cmd,
        rexpect::reader::Options::new().timeout_ms(Some(15_000)).strip_ansi_escape_codes(true),
    )
    .unwrap();
    sh.exp_string("is a symbolic link").unwrap();
    sh.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    sh.send_line("SELECT 1 AS one;").unwrap();
    sh.exp_string("| 1   |").unwrap();
    sh.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    sh.send_line("\\q").unwrap();
    sh.exp_eof().unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file\n");
    std::fs::remove_dir_all(base).unwrap();
}

/// Item 8: deep expressions, absurd durations, huge results, long plans,
/// long names, huge input: a clear error or a bounded answer, never a
/// crash.
#[test]
fn no_input_crashes_or_runs_unbounded() {
    // 200 operators work (statement_size's planning bound); past the
    // documented bounds, a clear error.
    let sum = format!("SELECT 1{} AS n", " + 1".repeat(200));
    assert_eq!(query(&sum), vec![serde_json::json!({"n": 201})]);
    let ors = format!(
        "SELECT count(*) AS n FROM sockets WHERE {}",
        (1..=100).map(|p| format!("local_port = {p}")).collect::<Vec<_>>().join(" OR ")
    );
    assert_eq!(query(&ors).len(), 1);
    refused(
        run_at(Path::new("/"), &[], &[&format!("SELECT 1{}", " + 1".repeat(20_000))]),
        "expression too deep: 10001 operators",
    );
    refused(
        run_at(Path::new("/"), &[], &[&format!("SELECT {}1{}", "(".repeat(300), ")".repeat(300))]),
        "expression too deep: it nests more than 50 levels",
    );
    // Durations: refused with exit 2, no panic.
    for args in [
        &["--timeout", "1e30", "SELECT 1"][..],
        &["--watch", "1e30", "SELECT 1"][..],
        &["--timeout", "18446744073709551615", "SELECT 1"][..],
        &["record", "--out", "/nonexistent/x", "--every", "1e30"][..],
        &["record", "--out", "/nonexistent/x", "--for", "1e30"][..],
        &["record", "--out", "/nonexistent/x", "--retention", "99999999999999999999d"][..],
    ] {
        let (o, e, code) = run_at(Path::new("/"), &[], args);
        assert_eq!(code, Some(2), "{args:?}: {e}");
        assert!(o.is_empty() && !e.contains("panicked") && e.contains("bad "), "{args:?}: {e}");
    }
    assert!(!Path::new("/nonexistent/x").exists());
    // The table format prints a result of any size within the limit.
    let big = "SELECT v, repeat('x', 200) AS pad FROM generate_series(1, 300000) AS s(v)";
    let r = peak_rss(&[bin(), "--memory-limit", "16M", big]);
    assert!(r.ok, "{}", r.err);
    assert_eq!(r.out.lines().filter(|l| l.starts_with("| ") && l.contains("xxxx")).count(), 300_000);
    assert!(r.err.contains("a large result prints as several tables"), "{}", r.err);
    let base = peak_rss(&[bin(), "SELECT 1"]).peak_kib;
    assert!(r.peak_kib < base + 64 * 1024, "table output of 60 MB took {} KiB (SELECT 1: {base} KiB)", r.peak_kib);
    // 10,000 columns are refused before planning (statement_size); --timeout
    // covers parsing them (on a loaded debug build it may be first).
    let wide = format!("SELECT {}", (0..10_000).map(|i| format!("{i} AS c{i}")).collect::<Vec<_>>().join(", "));
    let start = Instant::now();
    let (_, e, code) = with_stdin(&["--timeout", "1s"], wide.as_bytes());
    let took = start.elapsed();
    assert_eq!(code, Some(1), "{e}");
    assert!(
        e.contains("statement too large to plan: more than 1000 expressions")
            || e.contains("query timed out after 1s (--timeout)"),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "refused after {took:?}");
    // A 300,000-character unknown column name (on standard input: one
    // argument holds at most 128 KiB) is refused at once.
    let start = Instant::now();
    let (o, e, code) = with_stdin(&[], format!("SELECT {} FROM sockets", "a".repeat(300_000)).as_bytes());
    assert_eq!(code, Some(1), "{e}");
    assert!(o.is_empty() && e.contains("identifier of 300000 bytes at line 1 is too long"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    // Standard input is bounded, and statements run one at a time.
    let start = Instant::now();
    let (o, e, code) = with_stdin(&[], "SELECT 1;".repeat(1_000_000).as_bytes());
    assert_eq!(code, Some(1), "{e}");
    assert!(o.is_empty() && e.contains("standard input: too large for SQL (more than 1024 KiB)"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(10));
    let (o, e, code) = with_stdin(&["--format", "csv", "--no-header"], b"SELECT 1;\nSELEC 2;\n");
    assert_eq!((o.as_str(), code), ("1\n", Some(1)), "{e}");
    assert!(e.contains("Line: 2"), "{e}");
}

/// Item 8: an unbracketed paste into the shell costs linear time. What
/// the shell writes to the terminal is the deterministic measure of its
/// redraw work (a quadratic redraw writes 16 times as much for 4 times the
/// input); wall time is only bounded loosely.
#[test]
fn shell_pastes_in_linear_time() {
    let dir = temp_dir("paste");
    let mut cmd = Command::new(bin());
    cmd.env("XDG_STATE_HOME", &dir).env("TERM", "xterm");
    let options = rexpect::reader::Options::new().timeout_ms(Some(120_000)).strip_ansi_escape_codes(true);
    let mut sh = rexpect::session::spawn_with_options(cmd, options).unwrap();
    sh.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
    // Typed as a terminal without bracketed paste delivers it: one long
    // line, and a statement of many lines.
    let one_line = |n: usize| (format!("SELECT length('{}') AS n;\n", "y".repeat(n)), format!("| {n} |"));
    let many_lines = |n: usize| {
        (
            format!("SELECT {n} AS lines\n{};\n", "-- a pasted comment line, forty-odd bytes\n".repeat(n)),
            format!("| {n} "),
        )
    };
    let mut paste = |(text, expect): (String, String)| -> usize {
        let start = Instant::now();
        for chunk in text.as_bytes().chunks(4096) {
            sh.send(std::str::from_utf8(chunk).unwrap()).unwrap();
        }
        sh.flush().unwrap();
        let written = sh.exp_string(&expect).unwrap().len();
        sh.exp_regex(r"(^|\n)\r*sockql> ").unwrap();
        let took = start.elapsed();
        eprintln!("pasted {} bytes in {took:?}; {written} bytes to the terminal", text.len());
        assert!(took < Duration::from_secs(60), "a paste of {} bytes took {took:?}", text.len());
        written
    };
    let (small, large) = (paste(one_line(25_000)), paste(one_line(100_000)));
    assert!(large < 5 * small, "one line: 4x the input wrote {large} bytes against {small}");
    let (small, large) = (paste(many_lines(500)), paste(many_lines(2_000)));
    assert!(large < 5 * small, "many lines: 4x the input wrote {large} bytes against {small}");
    sh.send_line("\\q").unwrap();
    sh.exp_eof().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Item 9: one bad file under --history costs a warning naming it; a file
/// named with -f that is not SQL is not quoted; capture writes only with
/// --allow-files and never over an existing file.
#[test]
fn bad_files_fail_alone_and_quietly() {
    let dir = temp_dir("files");
    let out = dir.join("hist");
    let (_, e, code) = run_at(
        &dir,
        &[],
        &["record", "--out", out.to_str().unwrap(), "--tables", "sockstat", "--samples", "2", "--every", "100ms"],
    );
    assert_eq!(code, Some(0), "{e}");
    let good = files_under(&out.join("sockstat"));
    assert_eq!(good.len(), 2, "{good:?}");
    let part = good[0].parent().unwrap().to_path_buf();
    let corrupt = part.join("1.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet PAR1").unwrap();
    // A file whose columns conflict: `protocol` as a number.
    let conflict = part.join("2.parquet");
    let (_, e, code) = run_at(
        &dir,
        &[],
        &["--allow-files", &format!("COPY (SELECT 5 AS protocol) TO '{}' STORED AS PARQUET", conflict.display())],
    );
    assert_eq!(code, Some(0), "{e}");
    let (o, e, code) =
        run_at(&dir, &[], &["--history", out.to_str().unwrap(), "--format", "csv", "--no-header", "SELECT 1"]);
    assert_eq!((o.as_str(), code), ("1\n", Some(0)), "{e}");
    assert!(e.contains(&format!("history: leaving out {}", corrupt.display())), "{e}");
    assert!(e.contains(&format!("history: leaving out {}: its columns conflict", conflict.display())), "{e}");
    let (o, e, code) = run_at(
        &dir,
        &[],
        &[
            "--history",
            out.to_str().unwrap(),
            "--format",
            "csv",
            "--no-header",
            "SELECT count(DISTINCT ts) FROM history.sockstat",
        ],
    );
    assert_eq!((o.as_str(), code), ("2\n", Some(0)), "{e}");
    // -f of a secret file: refused without quoting it.
    let secret = dir.join("shadow");
    std::fs::write(&secret, "rootsecret:$y$j9T$abcdef:19000:0:99999:7:::\n").unwrap();
    refused(run_at(&dir, &[], &["-f", secret.to_str().unwrap()]), "not SQL");
    let (_, e, _) = run_at(&dir, &[], &["-f", secret.to_str().unwrap()]);
    assert!(!e.contains("rootsecret") && !e.contains("j9T"), "{e}");
    // capture: refused without --allow-files, and never over a file.
    let cap = dir.join("cap.bin");
    refused(
        run_at(&dir, &[], &["netlink-capture", "sock-diag", cap.to_str().unwrap()]),
        "refused: capture writes a file",
    );
    assert!(!cap.exists());
    std::fs::write(&cap, "keep").unwrap();
    refused(
        run_at(&dir, &[], &["--allow-files", "netlink-capture", "sock-diag", cap.to_str().unwrap()]),
        "it must not exist yet",
    );
    assert_eq!(std::fs::read_to_string(&cap).unwrap(), "keep");
    std::fs::remove_dir_all(dir).unwrap();
}
