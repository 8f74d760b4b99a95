//! The per-query budget: --memory-limit holds for values scalar functions
//! make (not only for what DataFusion's operators reserve), planning is
//! bounded before it starts, and --memory-limit itself is a real bound.
//! Each test runs the real binary and measures the child's peak RSS with
//! GNU time (its wait4's ru_maxrss).

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::bin;

/// One finished run of sockql: exit code, output, peak RSS and time.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
    peak_kib: i64,
    took: Duration,
}

/// Run sockql under GNU time, which reads the peak from its own wait4:
/// sockql is forked from time's small process, so its peak is its own.
/// (Spawned from this test process, a child's ru_maxrss starts from the
/// test's own RSS at the spawn, which under the whole suite passed 280 MB.)
fn measure(args: &[&str]) -> Run {
    let start = Instant::now();
    let report = std::env::temp_dir().join(format!(
        "sockql-budget-peak-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o", report.to_str().unwrap(), bin()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let peak = std::fs::read_to_string(&report).unwrap();
    std::fs::remove_file(&report).unwrap();
    // time's report ends with the peak in KiB (a line before it says how
    // the command ended, when it did not exit 0).
    let peak_kib =
        peak.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("GNU time said {peak:?}"));
    Run {
        code: o.status.code(),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
        peak_kib,
        took: start.elapsed(),
    }
}

const LIMIT_MIB: i64 = 64;

/// The ceiling a query under `--memory-limit 64M` must stay below: the
/// binary's own peak for `SELECT 1` (its tables, DataFusion's session)
/// plus twice the limit (what the pool may hold, and one value being
/// refused while its inputs are still held).
fn ceiling_kib() -> i64 {
    let base = measure(&["--memory-limit", "64M", "--format", "csv", "SELECT 1"]);
    assert_eq!(base.code, Some(0), "{}", base.err);
    base.peak_kib + 2 * LIMIT_MIB * 1024
}

/// One memory error line, exit 1, nothing printed, under the ceiling.
fn refused_within(sql: &str, ceiling: i64, function: &str) -> Run {
    let run = measure(&["--memory-limit", "64M", "--timeout", "60s", "--format", "csv", sql]);
    eprintln!("{sql:.90}: peak {} MiB in {:?}", run.peak_kib / 1024, run.took);
    assert_eq!(run.code, Some(1), "{sql}: {}", run.err);
    assert_eq!(run.err.lines().count(), 1, "{sql}: one line, got: {}", run.err);
    let prefix = format!(
        "sockql: error: the query needs more memory than --memory-limit allows: Resources exhausted: {function} would "
    );
    assert!(run.err.starts_with(&prefix), "{sql}: {}", run.err);
    assert!(run.err.trim_end().ends_with("(an eighth of what is left of --memory-limit)"), "{}", run.err);
    assert!(run.out.is_empty(), "{sql}: printed {}", run.out);
    assert!(run.peak_kib < ceiling, "{sql}: peak {} KiB, ceiling {ceiling} KiB", run.peak_kib);
    run
}

#[test]
fn values_that_scalar_functions_make_are_held_to_the_memory_limit() {
    let ceiling = ceiling_kib();
    // Before: 700 MB for repeat, 5.9 GB for 1.5e9 bytes; each of these ran
    // past the limit by gigabytes (or until --timeout).
    let run = refused_within("SELECT length(repeat('x', 700000000))", ceiling, "repeat");
    assert_eq!(
        run.err,
        "sockql: error: the query needs more memory than --memory-limit allows: Resources exhausted: repeat would make 700000000 bytes; one value may take 8388608 (an eighth of what is left of --memory-limit)\n"
    );
    refused_within("SELECT length(repeat('x', 1500000000))", ceiling, "repeat");
    refused_within("SELECT length(lpad('x', 700000000))", ceiling, "lpad");
    refused_within("SELECT length(rpad('x', 700000000, 'é'))", ceiling, "rpad");
    refused_within("SELECT cardinality(array_repeat(1, 700000000))", ceiling, "array_repeat");
    refused_within("SELECT cardinality(array_resize(make_array(1), 700000000, 7))", ceiling, "array_resize");
    refused_within("SELECT cardinality(range(1000000000))", ceiling, "range");
    refused_within("SELECT length(repeat(repeat('x', 100000), 100000))", ceiling, "repeat");
    refused_within("SELECT length(replace(repeat('a', 10000), 'a', repeat('b', 10000)))", ceiling, "replace");
    // Not constants: evaluated batch by batch, 8,192 rows of 100 KB each.
    refused_within("SELECT max(length(repeat('x', 100000 + value % 2))) FROM range(1000000)", ceiling, "repeat");
    refused_within("SELECT max(length(lpad('x', 100000 + value % 2))) FROM range(1000000)", ceiling, "lpad");
    // The || operator and concat doubling a value from CTE to CTE: each
    // step's result is measured, so the chain stops at the first step past
    // the share (before: 640 MB in 5 s).
    let doubling = |op: &str| {
        let mut sql = "WITH t0 AS (SELECT repeat('x', 4000000 + value) s FROM range(1))".to_string();
        for i in 1..=8 {
            let step = if op == "||" { "s || s".to_string() } else { "concat(s, s)".to_string() };
            sql += &format!(", t{i} AS (SELECT {step} s FROM t{})", i - 1);
        }
        sql + " SELECT length(s) FROM t8"
    };
    refused_within(&doubling("||"), ceiling, "||");
    refused_within(&doubling("concat"), ceiling, "concat");
}

#[test]
fn values_within_the_share_are_computed() {
    let run = measure(&[
        "--memory-limit",
        "64M",
        "--format",
        "csv",
        "SELECT length(repeat('x', 4000000)) AS a, length(lpad('x', 5, 'ab')) AS b, cardinality(array_repeat(7, 1000)) AS c, 'a' || 'b' AS d, ('x' || NULL) IS NULL AS e, length(repeat('ab', 3 + value)) AS f FROM range(2)",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert_eq!(run.out, "a,b,c,d,e,f\n4000000,5,1000,ab,true,6\n4000000,5,1000,ab,true,8\n");
    // The operator keeps its column name when it is not aliased.
    let run = measure(&["--format", "csv", "--memory-limit", "64M", "SELECT 'a' || 'b'"]);
    assert_eq!(run.out, "\"Utf8(\"\"a\"\") || Utf8(\"\"b\"\")\"\nab\n", "{}", run.err);
}

/// A statement of `n` steps of `kind`, for the planning bounds.
fn statement(kind: &str, n: usize) -> String {
    match kind {
        "cte" => {
            let mut s = "WITH t0 AS (SELECT * FROM range(1))".to_string();
            for i in 1..n {
                s += &format!(", t{i} AS (SELECT * FROM t{})", i - 1);
            }
            s + &format!(" SELECT * FROM t{}", n - 1)
        }
        "plus" => format!("SELECT value{} FROM range(1)", " + value".repeat(n)),
        "union" => (0..=n).map(|i| format!("SELECT {i} AS x")).collect::<Vec<_>>().join(" UNION ALL "),
        "join" => format!(
            "SELECT count(*) FROM range(1) a0{}",
            (1..=n).map(|i| format!(" JOIN range(1) a{i} ON a{i}.value = a{}.value", i - 1)).collect::<String>()
        ),
        "call" => format!(
            "SELECT {} FROM range(1)",
            (0..n).map(|i| format!("abs(value) AS c{i}")).collect::<Vec<_>>().join(", ")
        ),
        "subquery" => {
            format!("SELECT {}", (0..n).map(|i| format!("(SELECT {i}) AS s{i}")).collect::<Vec<_>>().join(", "))
        }
        "item" => format!("SELECT {}", (0..n).map(|i| format!("{i} AS c{i}")).collect::<Vec<_>>().join(", ")),
        _ => unreachable!(),
    }
}

#[test]
fn planning_is_bounded_before_it_starts() {
    // Before: 5 GB and still planning; 16.7 s for 4,000 `+`.
    for (sql, message) in [
        (statement("cte", 6_000), "sockql: error: statement too large to plan: more than 100 CTEs (at line 1)\n"),
        (
            format!("SELECT 1{}", " + 1".repeat(4_000)),
            "sockql: error: statement too large to plan: more than 200 operators (at line 1)\n",
        ),
        (
            statement("union", 2_000),
            "sockql: error: statement too large to plan: more than 100 set operations (at line 1)\n",
        ),
        (statement("join", 200), "sockql: error: statement too large to plan: more than 32 joins (at line 1)\n"),
        (
            statement("call", 3_000),
            "sockql: error: statement too large to plan: more than 400 function calls (at line 1)\n",
        ),
        (
            statement("subquery", 1_000),
            "sockql: error: statement too large to plan: more than 128 subqueries (at line 1)\n",
        ),
        (
            statement("item", 5_000),
            "sockql: error: statement too large to plan: more than 1000 expressions (at line 1)\n",
        ),
    ] {
        // From a file: the CTE chain (190 KB) is longer than one argument
        // may be.
        let file = std::env::temp_dir().join(format!("sockql-budget-{}.sql", std::process::id()));
        std::fs::write(&file, &sql).unwrap();
        let run = measure(&["--memory-limit", "64M", "--format", "csv", "-f", file.to_str().unwrap()]);
        std::fs::remove_file(&file).unwrap();
        let message = message.trim_start_matches("sockql: error: ");
        assert_eq!(run.code, Some(1), "{sql:.80}: {}", run.err);
        assert_eq!(run.err.lines().count(), 1, "{}", run.err);
        assert!(run.err.starts_with("sockql: error: ") && run.err.ends_with(message), "{sql:.80}: {}", run.err);
        assert!(run.took < Duration::from_secs(2), "{sql:.80}: refused after {:?}", run.took);
        assert!(run.peak_kib < 256 * 1024, "{sql:.80}: peak {} KiB", run.peak_kib);
    }
    // The largest statement of each kind that is accepted plans (EXPLAIN:
    // planned, not run) in well under a second on a 2-core debug build.
    for (kind, n) in
        [("cte", 100), ("plus", 200), ("union", 100), ("join", 32), ("call", 400), ("subquery", 128), ("item", 1_000)]
    {
        let sql = statement(kind, n);
        let run = measure(&["--memory-limit", "64M", "--format", "csv", &format!("EXPLAIN {sql}")]);
        eprintln!("{kind} {n}: planned in {:?}, peak {} MiB", run.took, run.peak_kib / 1024);
        assert_eq!(run.code, Some(0), "{kind} {n}: {}", run.err);
        assert!(run.took < Duration::from_secs(1), "{kind} {n}: {:?}", run.took);
    }
}

#[test]
fn nesting_counts_each_level_once() {
    let parens = |n: usize| format!("SELECT {}1{} AS x", "(".repeat(n), ")".repeat(n));
    let subqueries =
        |n: usize| format!("SELECT * FROM {}sockets{} LIMIT 0", "(SELECT * FROM ".repeat(n), ") t".repeat(n));
    for make in [parens, subqueries] {
        for n in [49, 50] {
            let run = measure(&["--format", "csv", &make(n)]);
            assert_eq!(run.code, Some(0), "{n} levels: {}", run.err);
        }
        let run = measure(&["--format", "csv", &make(51)]);
        assert_eq!(
            (run.code, run.err.as_str()),
            (Some(1), "sockql: error: expression too deep: it nests more than 50 levels of parentheses (at line 1)\n")
        );
    }
}

#[test]
fn memory_limit_must_be_a_real_bound() {
    let physical_mib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024;
    for (value, why) in [
        ("99999999999999999999G", format!("more than this machine's {physical_mib} MiB of physical memory")),
        ("1e300", format!("more than this machine's {physical_mib} MiB of physical memory")),
        (
            &format!("{}M", physical_mib + 1024) as &str,
            format!("more than this machine's {physical_mib} MiB of physical memory"),
        ),
        ("0.5", "use a positive number of bytes with K, M or G".to_string()),
        ("-3M", "use a positive number of bytes with K, M or G".to_string()),
    ]
    .iter()
    .map(|(v, w)| (v.to_string(), w.clone()))
    .collect::<Vec<_>>()
    {
        let run = measure(&["--memory-limit", &value, "SELECT 1"]);
        assert_eq!(run.code, Some(2), "{value}: {}", run.err);
        assert!(run.err.contains(&format!("bad size '{value}': {why}")), "{value}: {}", run.err);
        assert!(run.out.is_empty());
    }
    let run = measure(&["--memory-limit", "512M", "--format", "csv", "SELECT 1 AS one"]);
    assert_eq!((run.code, run.out.as_str()), (Some(0), "one\n1\n"), "{}", run.err);
}

/// A server started by a test, killed and reaped when dropped.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The peak resident memory of a running process (VmHWM), in KiB.
fn vm_hwm_kib(pid: u32) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Through the PostgreSQL endpoint (the server's default 256 MiB limit per
/// query): the client gets out_of_memory and the server stays within the
/// limit, and answers the next query. Before: 2.46 GB of peak RSS.
#[test]
fn a_pg_client_cannot_make_the_server_allocate_past_the_limit() {
    use std::io::{BufRead, BufReader};
    crate::common::require_root();
    let dir = std::env::temp_dir().join(format!("sockql-budget-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run_dir = dir.join("run");
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--pg", run_dir.to_str().unwrap(), "--pg-port", "5442"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    std::thread::spawn(move || for _ in lines {});
    let server = Server(child);
    crate::common::eventually(crate::common::WAIT, || run_dir.join(".s.PGSQL.5442").exists().then_some(()));
    let psql = |sql: &str| {
        let o = Command::new("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",
                "-h",
                run_dir.to_str().unwrap(),
                "-p",
                "5442",
            ])
            .args(["-U", "root", "-d", "sockql", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.status.success(),
        )
    };
    let (out, err, ok) = psql("SELECT 1");
    assert!(ok && out.trim() == "1", "{err}");
    let base = vm_hwm_kib(server.0.id());
    for sql in [
        "SELECT length(repeat('x', 700000000))",
        "SELECT length(rpad('x', 700000000, 'y'))",
        "SELECT cardinality(array_repeat(1, 700000000))",
        "SELECT max(length(repeat('x', 100000 + value % 2))) FROM range(1000000)",
    ] {
        let (out, err, ok) = psql(sql);
        assert!(!ok && out.is_empty(), "{sql}: {out}");
        assert!(
            err.contains("ERROR:  53200: the query needs more memory than --memory-limit allows: Resources exhausted:"),
            "{sql}: {err}"
        );
        let peak = vm_hwm_kib(server.0.id());
        eprintln!("{sql}: server peak {} MiB (after SELECT 1: {} MiB)", peak / 1024, base / 1024);
        assert!(peak < base + 2 * 256 * 1024, "{sql}: server peak {peak} KiB, base {base} KiB");
    }
    let (out, err, ok) = psql("SELECT length(repeat('x', 1000))");
    assert!(ok && out.trim() == "1000", "{err}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// --timeout holds for scalar functions that take long: levenshtein
/// (quadratic per call) and ltrim with a large set of characters (each
/// trimmed character looked up in the set) over many rows, each call
/// within its bound. The run ends with the one timeout line within a
/// chunk's time of the deadline. Before: both ran on past 12 s.
#[test]
fn cpu_heavy_functions_stop_at_the_timeout() {
    for sql in [
        "SELECT sum(levenshtein(repeat('a', 2000), repeat('b', 2000) || value)) FROM range(100000)",
        "SELECT sum(length(ltrim(repeat('a', 2000) || value, repeat('b', 5000) || 'a'))) FROM range(100000)",
    ] {
        let mut child = Command::new("timeout")
            .args(["30", bin(), "--timeout", "2s", "--format", "csv", sql])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        let took = start.elapsed();
        eprintln!("{sql:.60}: {took:?}");
        assert_eq!(status.code(), Some(1), "{sql}: {err}");
        assert_eq!(err, "sockql: error: query timed out after 2s (--timeout)\n", "{sql}");
        assert!(took < Duration::from_millis(3500), "{sql}: took {took:?} with --timeout 2s");
    }
}

/// One call whose work alone is past its bound is refused before it
/// starts, with one line naming the function and the bound (not the
/// timeout, not hours of work): levenshtein of two 8 MB strings.
#[test]
fn one_call_past_its_work_bound_is_refused() {
    let run = measure(&[
        "--timeout",
        "20s",
        "--format",
        "csv",
        "SELECT levenshtein(repeat('a', 8000000), repeat('b', 8000000))",
    ]);
    assert_eq!(run.code, Some(1), "{}", run.err);
    assert_eq!(
        run.err,
        "sockql: error: levenshtein would take 64000000000000 steps (bytes of the first string × bytes of the second); \
         one call may take at most 10000000, to stay within --timeout\n"
    );
    assert!(run.out.is_empty(), "{}", run.out);
    assert!(run.took < Duration::from_secs(10), "{:?}", run.took);
    // Within the bound it is computed.
    let run = measure(&[
        "--timeout",
        "20s",
        "--format",
        "csv",
        "SELECT levenshtein(repeat('a', 3000), repeat('b', 2999)) AS d",
    ]);
    assert_eq!((run.code, run.out.as_str()), (Some(0), "d\n3000\n"), "{}", run.err);
}

/// CPU time (user + system) of a process so far, in seconds.
/// Threads of `pid` running a query (sockql names them sockql-query).
fn query_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "sockql-query"))
        .count()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): state is the 3rd
    // field, utime and stime the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf reads a constant.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Through `serve --pg`, with one shared query slot: user nobody's
/// CPU-heavy query gets 57014 at --timeout, and then its work has stopped
/// (the server's CPU time stops growing) and its slot is free (nobody's
/// next query is answered). Before: the client was answered, but the
/// query thread went on computing levenshtein for hours, holding a core
/// and the only slot.
/// `serve --pg` admitting user nobody (`--pg-group nogroup`) with `flags`,
/// its stderr drained, ready for clients.
struct NobodyServe {
    server: Server,
    run_dir: std::path::PathBuf,
    port: String,
    /// Where /metrics listens.
    http: u16,
    _scratch: crate::common::Scratch,
}

impl NobodyServe {
    fn start(name: &str, port_offset: u32, flags: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        crate::common::require_root();
        let scratch = crate::common::Scratch::new(name);
        let run_dir = scratch.0.join("run");
        let port = (20000 + (std::process::id() % 4000) * 10 + port_offset).to_string();
        let mut child = Command::new(bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--pg",
                run_dir.to_str().unwrap(),
                "--pg-port",
                &port,
                "--pg-group",
                "nogroup",
            ])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.by_ref().map_while(Result::ok).find(|l| l.contains("http://")).unwrap();
        std::thread::spawn(move || for _ in lines {});
        let http = crate::serve::metrics_port(&first);
        let server = Server(child);
        crate::common::eventually(crate::common::WAIT, || {
            run_dir.join(format!(".s.PGSQL.{port}")).exists().then_some(())
        });
        NobodyServe { server, run_dir, port, http, _scratch: scratch }
    }

    fn pid(&self) -> u32 {
        self.server.0.id()
    }

    /// psql as `user` (nobody through setpriv) running `sql`, error codes shown.
    fn psql(&self, user: &str, sql: &str) -> Command {
        let mut c = Command::new("timeout");
        c.arg("30");
        if user == "nobody" {
            c.args(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
        }
        c.args([
            "psql",
            "-X",
            "-A",
            "-t",
            "-v",
            "VERBOSITY=verbose",
            "-h",
            self.run_dir.to_str().unwrap(),
            "-p",
            &self.port,
        ]);
        c.args(["-U", user, "-d", "sockql", "-c", sql]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }
}

/// A query that computes for minutes: levenshtein over 100,000 rows.
const CPU_HEAVY: &str = "SELECT sum(levenshtein(repeat('a', 2000), repeat('b', 2000) || value)) FROM range(100000)";

#[test]
fn a_pg_clients_cpu_heavy_query_stops_at_the_timeout() {
    let serve = NobodyServe::start("budget-cpu", 7, &["--timeout", "2s", "--pg-max-queries", "1"]);
    let pid = serve.pid();
    let psql_nobody = |sql: &str| crate::common::output_of(serve.psql("nobody", sql).output().unwrap());
    let start = Instant::now();
    let (out, err, ok) = psql_nobody(CPU_HEAVY);
    let answered = start.elapsed();
    assert!(!ok && out.is_empty(), "{out} {err}");
    assert!(err.contains("ERROR:  57014: query timed out after 2s (--timeout)"), "{err}");
    assert!(answered < Duration::from_secs(5), "{answered:?}");
    // Within about 2 s of the error, a second of the server's life costs
    // (almost) no CPU: nothing of the query runs on.
    let settled = crate::common::eventually(Duration::from_secs(3), || {
        let before = cpu_seconds(pid);
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_seconds(pid) - before;
        eprintln!("server CPU in one second: {used:.2} s");
        (used < 0.2).then_some(used)
    });
    assert!(settled < 0.2);
    // The only shared slot is free: nobody's next query is answered.
    let (out, err, ok) = psql_nobody("SELECT 43");
    assert!(ok && out.trim() == "43", "{out} {err}");
}

/// Two of user nobody's queries busy in function calls (one per core)
/// while root asks: root's psql, /healthz and a Prometheus scrape are
/// answered at once, not after nobody's queries end. Each server query
/// runs on a runtime of its own (Engine::isolated); on the server's
/// shared runtime the two calls held both of its workers, and every
/// other client waited for their --timeout.
#[test]
fn cpu_heavy_queries_of_a_user_do_not_hold_up_roots_psql_or_a_scrape() {
    use std::io::Write;
    let serve = NobodyServe::start("budget-cpu-iso", 8, &["--timeout", "10s", "--pg-max-queries", "2"]);
    let (pid, http) = (serve.pid(), serve.http);
    let psql = |user: &str, sql: &str| serve.psql(user, sql);
    let mut busy: Vec<std::process::Child> = (0..2).map(|_| psql("nobody", CPU_HEAVY).spawn().unwrap()).collect();
    // Both are running: two query threads.
    crate::common::eventually(Duration::from_secs(8), || (query_threads(pid) >= 2).then_some(()));
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body
    };
    let start = Instant::now();
    let o = psql("root", "SELECT 42").output().unwrap();
    let root_took = start.elapsed();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "42", "{}", String::from_utf8_lossy(&o.stderr));
    let start = Instant::now();
    let health = get("/healthz");
    let health_took = start.elapsed();
    let start = Instant::now();
    let metrics = get("/metrics");
    let metrics_took = start.elapsed();
    eprintln!("root's psql {root_took:?}, /healthz {health_took:?}, /metrics {metrics_took:?}");
    // nobody's queries were still running all along.
    assert!(busy.iter_mut().all(|c| c.try_wait().unwrap().is_none()), "nobody's queries ended early");
    assert!(root_took < Duration::from_secs(2), "root's psql took {root_took:?}");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health_took < Duration::from_secs(1), "/healthz took {health_took:?}");
    assert!(metrics.starts_with("HTTP/1.1 200") && metrics.contains("sockql_query_up{"), "{metrics}");
    let down: Vec<&str> = metrics.lines().filter(|l| l.starts_with("sockql_query_up{") && !l.ends_with(" 1")).collect();
    assert!(down.is_empty(), "metric queries that did not answer: {down:?}");
    assert!(metrics_took < Duration::from_secs(5), "/metrics took {metrics_took:?}");
    for c in busy {
        let o = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("57014") || err.contains("timed out"), "{err}");
    }
}
