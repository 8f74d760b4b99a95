//! Helpers shared by the integration tests: run the real sockql binary,
//! parse its typed output, make sockets on loopback, wait for the kernel.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockql")
}

/// Run sockql with `args`; returns (stdout, stderr, success).
pub fn run(args: &[&str]) -> (String, String, bool) {
    output_of(Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("run sockql"))
}

pub fn output_of(o: Output) -> (String, String, bool) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status.success())
}

/// Rows of a query, as JSON objects (sockql's typed ndjson output).
pub fn query(sql: &str) -> Vec<Value> {
    query_with(&[], sql)
}

pub fn query_with(extra: &[&str], sql: &str) -> Vec<Value> {
    let mut args = vec!["--format", "ndjson"];
    args.extend_from_slice(extra);
    args.push(sql);
    let (out, err, ok) = run(&args);
    assert!(ok, "sockql failed for {sql}: {err}");
    parse_ndjson(&out)
}

pub fn parse_ndjson(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad json {l}: {e}"))).collect()
}

/// Poll `f` until it returns Some or `timeout` passes; the kernel moves
/// sockets through states asynchronously (FIN handshakes, queueing).
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "condition not reached within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const WAIT: Duration = Duration::from_secs(5);

/// This test process's command name, as the process column shows it.
pub fn my_comm() -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_string()
}

pub fn my_pid() -> i64 {
    std::process::id() as i64
}

/// A TCP listener on `addr` with an exact backlog (std picks its own).
pub fn listener(addr: &str, backlog: i32) -> std::net::TcpListener {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(backlog).unwrap();
    s.into()
}

pub fn port_of(l: &std::net::TcpListener) -> u16 {
    l.local_addr().unwrap().port()
}

/// The tests that create namespaces or switch users need root, as CI has.
pub fn require_root() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root (CI runs as root): it creates network namespaces or drops privileges");
}

pub fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists())
}

pub fn field<'a>(row: &'a Value, name: &str) -> &'a Value {
    row.get(name).unwrap_or_else(|| panic!("no column {name} in {row}"))
}
