//! What the kernel tests of the tracepoint reader (`trace::kernel_tests`)
//! and of the drop program (`trace::bpf::kernel_tests`) share: one lock
//! for both, network namespaces and veth pairs the tests make and
//! delete, nstat and a namespace's inode, the bpftrace cross-check, the
//! CPU pinning of the ring-loss tests, descriptor counts of a process and
//! the test binary re-run as a child.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use super::format::{Format, Key};

/// Both modules' tests count perf (and BPF) descriptors of this process
/// and attach to the same tracepoint: one such test at a time, across
/// both modules.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Hold while a kernel test runs (a failed test does not poison it).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The kernel tests skip (pass) when not root.
pub fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A kernel test's start: `None` (skip, passing) when not root, else the
/// one-at-a-time lock held for the test.
pub fn as_root_alone() -> Option<MutexGuard<'static, ()>> {
    root().then(one_at_a_time)
}

/// A child test's end: say `line` on stdout (what the parent waits for)
/// and wait to be killed.
pub fn say_and_wait_for_kill(line: &str) {
    println!("{line}");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(30));
}

/// Run a command that must succeed.
pub fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

/// Run `f` on a thread that has entered network namespace `name`
/// (under /run/netns): the test's own threads stay where they are.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// A network namespace of the test's own (`sockql-TAG-PID`, loopback
/// up), deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("sockql-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// Run `f` on a thread that has entered the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.0, f)
    }

    /// The namespace's counter `name` as `nstat` shows it there.
    pub fn nstat(&self, name: &str) -> u64 {
        let out = Command::new("ip").args(["netns", "exec", &self.0, "nstat", "-az", name]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|l| l.strip_prefix(name).filter(|r| r.starts_with(char::is_whitespace)))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// The namespace's inode (what /proc/PID/ns/net links to).
    pub fn inode(&self) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/run/netns/{}", self.0)).unwrap().ino() as u32
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Two namespaces joined by a veth pair (10.77.0.1 and fd77::1 in `a`,
/// 10.77.0.2 and fd77::2 in `b`), deleted on drop: `a` sends, `b` has
/// nothing listening.
pub struct VethPair {
    pub a: Netns,
    pub b: Netns,
    pub b_if: String,
}

impl VethPair {
    pub fn new() -> VethPair {
        let pid = std::process::id();
        let (a, b) = (Netns::new("bpfa"), Netns::new("bpfb"));
        let (a_if, b_if) = (format!("sqa{pid}"), format!("sqb{pid}"));
        sh(&["ip", "link", "add", &a_if, "netns", &a.0, "type", "veth", "peer", "name", &b_if, "netns", &b.0]);
        for (ns, dev, v4, v6) in [(&a, &a_if, "10.77.0.1/24", "fd77::1/64"), (&b, &b_if, "10.77.0.2/24", "fd77::2/64")]
        {
            sh(&["ip", "-n", &ns.0, "addr", "add", v4, "dev", dev]);
            sh(&["ip", "-n", &ns.0, "addr", "add", v6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
        }
        VethPair { a, b, b_if }
    }

    /// `ip -n B link`'s index of B's veth.
    pub fn b_ifindex(&self) -> u32 {
        let out = Command::new("ip").args(["-n", &self.b.0, "-o", "link", "show", "dev", &self.b_if]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':').next().unwrap().trim().parse().unwrap()
    }
}

/// The value a tracepoint's format gives the symbol `name` of `field`
/// (kfree_skb's reason NO_SOCKET, say).
pub fn symbol_value(format: &Format, field: &str, name: &str) -> i64 {
    let (key, _) = format.symbols[field].entries.iter().find(|(_, n)| n == name).unwrap().clone();
    let Key::Value(v) = key else { panic!("{key:?}") };
    v
}

/// Read `out` a byte at a time (no read ahead, so the rest stays for the
/// caller) until a whole line containing `marker`, or its end.
pub fn read_to_line(out: &mut impl Read, marker: &str) -> String {
    let mut text = Vec::new();
    let mut byte = [0u8; 1];
    let has_line = |t: &[u8]| t.ends_with(b"\n") && String::from_utf8_lossy(t).lines().any(|l| l.contains(marker));
    while !has_line(&text) && matches!(out.read(&mut byte), Ok(1)) {
        text.push(byte[0]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// This test binary run again for one ignored test (`--exact NAME`),
/// with `env` set so that the test does its part; stderr dropped.
pub fn test_child(name: &str, env: (&str, &str)) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]).env(env.0, env.1).stderr(Stdio::null());
    cmd
}

/// bpftrace running `action` on kfree_skb where `predicate` holds,
/// started and ready; killed on drop if not stopped.
pub struct Bpftrace(pub Child);

impl Bpftrace {
    /// bpftrace counting kfree_skb where `predicate` holds.
    pub fn count(predicate: &str) -> Option<Bpftrace> {
        Bpftrace::start(predicate, "@n = count();")
    }

    pub fn start(predicate: &str, action: &str) -> Option<Bpftrace> {
        // bpftrace needs tracefs mounted: in a mount namespace of its own
        // (unshare -m makes mounts private), so nothing is left behind.
        // Its memlock warning is moot: BPF memory is charged to the cgroup.
        let script = format!("BEGIN {{ printf(\"READY\\n\"); }} tracepoint:skb:kfree_skb /{predicate}/ {{ {action} }}");
        let mount = "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing";
        let mut child = Command::new("unshare")
            .args(["-m", "sh", "-c", &format!("{mount} && exec bpftrace -e \"$1\""), "sh", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // BEGIN runs once every probe is attached ("Attaching 2
        // probes..." comes before).
        let mut out = child.stdout.take()?;
        let text = read_to_line(&mut out, "READY");
        child.stdout = Some(out);
        let bpftrace = Bpftrace(child);
        text.lines().any(|l| l == "READY").then_some(bpftrace)
    }

    /// Stop it (SIGINT) and read its count.
    pub fn stop(mut self) -> u64 {
        // SAFETY: a signal to the test's own child.
        assert_eq!(unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) }, 0);
        let mut text = String::new();
        self.0.stdout.take().unwrap().read_to_string(&mut text).unwrap();
        self.0.wait().unwrap();
        // `@n: 200` at exit; nothing when it never fired.
        text.lines().find_map(|l| l.strip_prefix("@n:")).map_or(0, |n| n.trim().parse().unwrap())
    }

    /// bpftrace (from `count`) counted `want`; where bpftrace did not
    /// start it must not be installed (.ci/run installs it).
    pub fn assert_counted(bpftrace: Option<Bpftrace>, want: u64) {
        if let Some(b) = bpftrace {
            assert_eq!(b.stop(), want, "bpftrace");
        } else {
            assert!(!std::path::Path::new("/usr/bin/bpftrace").exists(), "bpftrace did not start");
            eprintln!("bpftrace not installed: cross-check skipped");
        }
    }
}

impl Drop for Bpftrace {
    /// A test that fails before `stop` leaves no bpftrace running.
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The first CPU this thread may run on.
pub fn first_allowed_cpu() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .ok()
        .and_then(|set| (0..nix::sched::CpuSet::count()).find(|&c| set.is_set(c).unwrap_or(false)))
        .unwrap_or(0)
}

/// Pin the calling thread to `cpu`: a ring's LOST record is written only
/// when a later sample comes to that same CPU's ring, so a ring-loss
/// test sends every burst from one CPU.
pub fn pin_this_thread(cpu: usize) {
    let mut one = nix::sched::CpuSet::new();
    one.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
}

/// Descriptors of process `pid` whose link is one of `targets`.
pub fn fds_linking_to(pid: u32, targets: &[&str]) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| targets.contains(&l.to_string_lossy().as_ref()))
                .count()
        })
        .unwrap_or(0)
}

/// Perf event descriptors (the rings) a process holds.
pub fn perf_fds(pid: u32) -> usize {
    fds_linking_to(pid, &["anon_inode:[perf_event]"])
}

/// Online CPUs: a reader opens one ring each.
pub fn cpus() -> usize {
    super::perf::parse_cpu_list(&std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap()).unwrap().len()
}
