//! The CPU priority of a query's threads. A server runs each query on
//! threads of its own (engine.rs, `Engine::isolated`); other users'
//! queries run niced, so that however many of them compute, the kernel
//! gives root's session and the Prometheus scrape the CPU first.

/// The nice value of other users' queries in `sockql serve`: they still
/// get the CPU nobody else wants, but a nice-0 thread gets about ten times
/// their share (the kernel's weights: 1024 against 110).
pub const OTHER_USERS: i32 = 10;

/// Set the calling thread's nice value (Linux keeps one per thread). Only
/// ever raises it from 0, which needs no privilege; a failure leaves the
/// thread as it was, which is what it was before.
pub fn nice_this_thread(nice: i32) {
    if nice == 0 {
        return;
    }
    // For PRIO_PROCESS, Linux takes `who` as a thread id (its per-thread
    // nice); the calling thread's id is always a valid pid.
    let tid = rustix::process::Pid::from_raw(nix::unistd::gettid().as_raw());
    let _ = rustix::process::setpriority_process(tid, nice);
}

#[cfg(test)]
mod tests {
    /// The nice value of thread `tid` of this process (field 19 of stat).
    fn nice_of(tid: i32) -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn only_the_calling_thread_is_niced() {
        let me = nix::unistd::gettid().as_raw();
        let before = nice_of(me);
        let niced = std::thread::spawn(|| {
            super::nice_this_thread(super::OTHER_USERS);
            nice_of(nix::unistd::gettid().as_raw())
        });
        assert_eq!(niced.join().unwrap(), before + i64::from(super::OTHER_USERS));
        assert_eq!(nice_of(me), before, "the caller's own nice changed");
    }
}
