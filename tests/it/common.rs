//! Helpers shared by the integration tests: run the real sockql binary,
//! parse its typed output, make sockets on loopback, wait for the kernel.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The sockql binary under test: cargo's, unless `SOCKQL_TEST_BIN` names a
/// copy (so that several checkouts sharing one target directory each test
/// their own build, not whichever was linked last).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| std::env::var("SOCKQL_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sockql").to_string()))
}

/// Run sockql with `args`; returns (stdout, stderr, success).
pub fn run(args: &[&str]) -> (String, String, bool) {
    output_of(Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("run sockql"))
}

pub fn output_of(o: Output) -> (String, String, bool) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        o.status.success(),
    )
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

/// Wait until the wall clock reads a later millisecond than when called.
/// History samples and their file names are stamped to the millisecond, so
/// a recorder started after this returns cannot share a stamp with one
/// that ended before it was called.
pub fn next_millisecond() {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let start = now();
    eventually(Duration::from_secs(1), || (now() > start).then_some(()));
}

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
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (CI runs as root): it creates network namespaces or drops privileges"
    );
}

pub fn have(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| Path::new(d).join(tool).exists())
}

pub fn field<'a>(row: &'a Value, name: &str) -> &'a Value {
    row.get(name).unwrap_or_else(|| panic!("no column {name} in {row}"))
}

/// One finished command with its peak resident memory.
pub struct Measured {
    /// Peak resident set size in KiB (the child's own VmHWM).
    pub peak_kib: i64,
    pub out: String,
    pub err: String,
    pub ok: bool,
}

/// Run a command to the end and measure its peak memory (`ip netns exec`
/// execs its program, so the pid is the program's). Not wait4's ru_maxrss:
/// std spawns with CLONE_VM, so a child's ru_maxrss starts at this test
/// process's own high-water mark, which other tests running beside it
/// raise. VmHWM belongs to the child's own memory after exec; it is read
/// until the child exits (waitid with WNOWAIT: not reaped while read, so
/// the pid cannot be reused under us).
#[allow(clippy::zombie_processes)] // reaped by waitpid below, which std cannot see
pub fn peak_rss(args: &[&str]) -> Measured {
    use std::io::Read;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Both pipes on threads so neither can fill and stall the child.
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let status_file = format!("/proc/{pid}/status");
    let mut peak_kib = 0i64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        // SAFETY: waitid on our own child, WNOWAIT leaves it unreaped;
        // siginfo is plain data.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
        };
        // SAFETY: si_pid is set by waitid when a child has exited.
        if r == 0 && unsafe { info.si_pid() } == pid {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut status = 0;
    // SAFETY: reaps our own child, which has exited.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    Measured {
        peak_kib,
        out: out.join().unwrap(),
        err: err.join().unwrap(),
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

/// A private copy of the sockql binary on tmpfs, for tests that compare
/// two runs' peak RSS ([`peak_rss`]). VmHWM counts the binary's code pages
/// mapped from the page cache, 80-100 MiB of a ~500 MB debug build, and how
/// many get mapped depends on the page cache (which folios are cached, at
/// what size, whether readahead has finished), not on the query: the same
/// `SELECT 1` peaked anywhere from 63 to 97 MiB with 1.2-1.5 MiB of
/// anonymous memory (BENCHMARKS.md, "conntrack scan memory"). A tmpfs file
/// cannot be evicted (no swap) and is always fully cached, so every fault
/// maps the same pages and a difference of peaks is what the query held
/// plus the code it ran. The copy is removed when this is dropped.
pub struct InMemoryBin {
    dir: std::path::PathBuf,
    pub path: String,
}

impl InMemoryBin {
    pub fn new(tag: &str) -> Self {
        use std::os::unix::fs::DirBuilderExt;
        let dir = Path::new("/dev/shm").join(format!("sockql-{tag}-{}", std::process::id()));
        let fs = nix::sys::statfs::statfs("/dev/shm").expect("statfs /dev/shm");
        assert_eq!(fs.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC, "/dev/shm is not tmpfs");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        let path = dir.join("sockql");
        std::fs::copy(bin(), &path).unwrap();
        InMemoryBin { path: path.to_str().unwrap().to_string(), dir }
    }
}

impl Drop for InMemoryBin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Assert that `f()` equals `expected`, re-reading for up to [`WAIT`] first.
///
/// For rows that name this test process as a socket's owner. pid_max is
/// 32768 here and the tests spawn thousands of processes, so pids wrap: a
/// parallel test's child, forked but not yet exec'd, can hold copies of
/// every socket of this process under a *lower* pid for a moment. It really
/// is the lowest owner then (ss -p lists it too), so sockql is right to
/// show it; the test waits until the moment has passed.
pub fn settled<T: PartialEq + std::fmt::Debug>(expected: T, mut f: impl FnMut() -> T) {
    let start = Instant::now();
    loop {
        let got = f();
        if got == expected {
            return;
        }
        if start.elapsed() > WAIT {
            assert_eq!(got, expected);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every row's `pid` is this process or null: no forked child of a
/// parallel test holds our sockets at the moment (see [`settled`]).
pub fn owned_by_me(rows: &[Value]) -> bool {
    rows.iter().all(|r| r["pid"].is_null() || r["pid"] == my_pid())
}

/// A TCP connection from `src` (an address with port, 0 for any) to `dst`:
/// tests choose the client address to tell connections apart.
pub fn bind_connect(src: &str, dst: &str) -> std::net::TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&src.parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    s.connect(&dst.parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    s.into()
}

/// Spawn `sleep 30` sharing the socket `fd` with this process, as a
/// pre-forked worker shares its parent's listener: FD_CLOEXEC is cleared for
/// the one spawn and restored right after.
pub fn spawn_sharing(fd: i32) -> std::process::Child {
    // SAFETY: flips FD_CLOEXEC on a descriptor the test owns, then restores it.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        assert!(flags >= 0);
        assert_eq!(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC), 0);
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        libc::fcntl(fd, libc::F_SETFD, flags);
        child
    }
}

/// A scratch directory of a test, `sockql-TAG-PID` under the temporary
/// directory, removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sockql-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every path below `dir`, never following a link, sorted.
pub fn tree(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if std::fs::symlink_metadata(e.path()).unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}
