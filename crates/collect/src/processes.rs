//! Processes from procfs, one plain record each. Every field but the pid
//! may be unreadable (the process exited mid-read, or belongs to another
//! user): such fields are `None`, never an error.

use procfs::process::Process;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessRecord {
    pub pid: i32,
    pub ppid: i32,
    /// Command name (comm).
    pub name: String,
    pub cmdline: Option<String>,
    pub exe: Option<String>,
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub state: &'static str,
    pub threads: i64,
    pub rss_bytes: u64,
    /// Milliseconds since the Unix epoch.
    pub start_time_ms: Option<i64>,
    pub fd_count: Option<u64>,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub runtime: Option<&'static str>,
    /// Network namespace inode.
    pub netns: Option<u64>,
}

/// `ps` state letters spelled out, as in proc(5).
pub fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk-sleep",
        'Z' => "zombie",
        'T' => "stopped",
        't' => "tracing-stop",
        'X' | 'x' => "dead",
        'K' => "wakekill",
        'W' => "waking",
        'P' => "parked",
        'I' => "idle",
        _ => "unknown",
    }
}

pub struct ProcessReader {
    users: super::users::Users,
    boot_time_ms: Option<i64>,
    ticks_per_second: i64,
    page_size: u64,
}

impl ProcessReader {
    pub fn new() -> Self {
        ProcessReader {
            users: super::users::Users::new(),
            boot_time_ms: procfs::boot_time_secs().ok().map(|s| s as i64 * 1000),
            ticks_per_second: procfs::ticks_per_second().max(1) as i64,
            page_size: procfs::page_size(),
        }
    }

    /// Read one process; `None` if it is already gone.
    ///
    /// A process can exit between opening /proc/<pid> and reading its files.
    /// /proc/<pid>/stat is world-readable and exists for zombies too, so if it
    /// cannot be read the process is gone: skip it rather than emit a row of
    /// nulls (a pid with no name or state is not a process anyone can use).
    pub fn read(&self, pid: i32) -> Option<ProcessRecord> {
        let p = Process::new(pid).ok()?;
        let stat = p.stat().ok()?;
        let uid = p.uid().ok();
        let cgroup = super::netns::cgroup_of(pid);
        let container = cgroup.as_deref().and_then(super::netns::container_of);
        Some(ProcessRecord {
            pid,
            ppid: stat.ppid,
            name: stat.comm.clone(),
            cmdline: cmdline(pid),
            exe: p.exe().ok().map(|e| e.to_string_lossy().into_owned()),
            uid,
            user: uid.and_then(|u| self.users.name(u)),
            state: state_name(stat.state),
            threads: stat.num_threads,
            // VmRSS, as ps and top show it: /proc/PID/stat's rss is the
            // kernel's per-CPU cached counter and reads lower.
            rss_bytes: p.status().ok().and_then(|s| s.vmrss).map_or(stat.rss * self.page_size, |kib| kib * 1024),
            start_time_ms: self.boot_time_ms.map(|b| b + stat.starttime as i64 * 1000 / self.ticks_per_second),
            fd_count: p.fd_count().ok().map(|n| n as u64),
            cgroup: cgroup.clone(),
            container_id: container.as_ref().map(|c| c.0.clone()),
            runtime: container.map(|c| c.1),
            netns: super::netns::of_pid(pid),
        })
    }
}

/// The command line, arguments joined by spaces; `None` for kernel threads
/// (empty cmdline). Read as bytes: arguments need not be UTF-8, and one bad
/// byte must not lose the whole line (procfs's reader refuses it).
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    // A process that retitles itself (nginx, postgres) pads its argv area
    // with NULs: trailing empty arguments are padding, and ps -o args
    // drops them too.
    while args.last().is_some_and(|a| a.is_empty()) {
        args.pop();
    }
    if args.is_empty() {
        return None;
    }
    Some(args.iter().map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>().join(" "))
}

impl Default for ProcessReader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `f()` once it is Some, re-tried for up to 5 s; None if it never is.
    /// A child's /proc entries change a moment after the syscall that
    /// changes them returns (kill, exec).
    fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match f() {
                None if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(5)),
                v => return v,
            }
        }
    }

    #[test]
    fn zombies_are_rows_and_reaped_processes_are_none() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        child.kill().unwrap();
        // Killed but not yet waited for: a zombie, still a process with a state.
        let reader = ProcessReader::new();
        let zombie = poll(|| {
            let r = reader.read(pid).expect("a zombie still has /proc/<pid>/stat");
            (r.state == "zombie").then_some(r)
        })
        .expect("became a zombie");
        assert_eq!(zombie.name, "sleep");
        child.wait().unwrap();
        assert!(reader.read(pid).is_none(), "a reaped pid is gone");
    }

    #[test]
    fn command_lines_that_are_not_utf8_are_kept() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;
        // sleep under an argv[0] that is not UTF-8.
        let mut child = std::process::Command::new("sleep")
            .arg0(std::ffi::OsStr::from_bytes(b"caf\xe9"))
            .arg("30")
            .spawn()
            .unwrap();
        // spawn() returns once exec has closed the CLOEXEC pipe, a moment
        // before the kernel sets up the new argument area.
        let line = poll(|| cmdline(child.id() as i32));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(line.as_deref(), Some("caf\u{fffd} 30"));
        assert_eq!(cmdline(2), None, "kthreadd has no command line");
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let r = ProcessReader::new().read(me).expect("own process readable");
        assert_eq!(r.pid, me);
        assert_eq!(r.ppid, std::os::unix::process::parent_id() as i32);
        assert_eq!(r.uid, Some(nix::unistd::getuid().as_raw()));
        assert!(r.threads >= 1);
        assert!(r.rss_bytes > 0);
        assert!(r.fd_count.unwrap() >= 3);
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let started = r.start_time_ms.unwrap();
        assert!(started <= now_ms + 1000 && started > now_ms - 3_600_000, "{started} vs {now_ms}");
        assert_eq!(r.exe.as_deref(), std::env::current_exe().ok().as_deref().and_then(|p| p.to_str()));
    }
}
