//! Tables that stream for a while: live packet captures and event
//! listeners run until their time is up (`--capture-for`), a LIMIT is met, or the
//! operator asks them to end. The first Ctrl-C asks: every running stream
//! ends as if its time were up, and the query answers from what it saw,
//! as tcpdump prints what it has (the front ends call
//! [`end_running_streams`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Streams running in this process, and whether the operator asked them
/// to end.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static END_REQUESTED: AtomicBool = AtomicBool::new(false);

/// End every running stream now. False when none runs (the caller then
/// aborts the query instead).
pub fn end_running_streams() -> bool {
    if RUNNING.load(Ordering::SeqCst) == 0 {
        return false;
    }
    END_REQUESTED.store(true, Ordering::SeqCst);
    true
}

/// Handle Ctrl-C for a command that runs streams: the first one while
/// streams run ends them (the query, or the recording, then finishes with
/// what was seen); another one, or one with no stream running, exits as
/// SIGINT would (130).
pub fn end_on_ctrl_c() {
    tokio::spawn(async {
        let mut ended = false;
        while tokio::signal::ctrl_c().await.is_ok() {
            if ended || !end_running_streams() {
                std::process::exit(130);
            }
            ended = true;
            sockql_collect::stderrln!("sockql: capture ended (Ctrl-C again aborts)");
        }
    });
}

/// True once the operator asked the running streams to end.
pub fn end_requested() -> bool {
    END_REQUESTED.load(Ordering::SeqCst)
}

/// Counts one running stream while it lives; the last to end clears a
/// request to end, so the next query streams in full.
pub struct Running;

impl Running {
    pub fn start() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if RUNNING.fetch_sub(1, Ordering::SeqCst) == 1 {
            END_REQUESTED.store(false, Ordering::SeqCst);
        }
    }
}

/// Wait on `fds` (one per namespace listened in) for `bound`, or until
/// the operator asks streams to end: after a wake, let what arrives
/// `gather` (zero: none) so one read takes a burst, then `ready(i)` reads
/// what waits on `fds[i]`; `between()` runs after every wait (at least
/// every 100 ms). Either ends the stream by breaking.
pub fn poll_for(
    fds: &[std::os::fd::RawFd],
    bound: Option<std::time::Duration>,
    gather: std::time::Duration,
    mut ready: impl FnMut(usize) -> anyhow::Result<std::ops::ControlFlow<()>>,
    mut between: impl FnMut() -> anyhow::Result<std::ops::ControlFlow<()>>,
) -> anyhow::Result<()> {
    let _running = Running::start();
    let deadline = deadline(bound);
    use nix::poll::{poll, PollFd, PollFlags};
    // SAFETY: the caller holds every descriptor open for the whole call
    // (each belongs to a listener that outlives it; the numbers are only
    // passed here because `ready` borrows those listeners mutably).
    let borrowed: Vec<_> = fds.iter().map(|&fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).collect();
    let mut polled: Vec<PollFd> = borrowed.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    while deadline.is_none_or(|d| std::time::Instant::now() < d) && !end_requested() {
        // At most 100 ms, so an end asked for is seen; EINTR counts as a
        // wake with nothing ready, as before.
        let n = poll(&mut polled, 100u16).unwrap_or(0);
        if n > 0 {
            if !gather.is_zero() {
                std::thread::sleep(gather);
            }
            for (i, p) in polled.iter().enumerate() {
                if p.any().unwrap_or(true) && ready(i)?.is_break() {
                    return Ok(());
                }
            }
        }
        if between()?.is_break() {
            return Ok(());
        }
    }
    Ok(())
}

/// Say once, as a listener ends, that the kernel dropped events for it.
pub fn warn_lost(what: &str, overruns: u64) {
    if overruns > 0 {
        sockql_collect::notice::warn_once(
            &format!("{what}-lost"),
            format!("{what} were lost {overruns} times: the kernel's queue overflowed (ENOBUFS); the overruns column counts them"),
        );
    }
}

/// Now, in nanoseconds since the epoch: the `ts` of an event the kernel
/// does not stamp.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// How long a stream runs: `--capture-for`, else with `--follow` until
/// Ctrl-C (None), else [`DEFAULT_DURATION`](sockql_collect::packets::live::DEFAULT_DURATION).
pub fn bound(options: &crate::SourceOptions) -> Option<std::time::Duration> {
    match (options.capture_for, options.follow) {
        (Some(d), _) => Some(d),
        (None, true) => None,
        (None, false) => Some(sockql_collect::packets::live::DEFAULT_DURATION),
    }
}

/// A bound as EXPLAIN and the notes say it: "for 10s", "until Ctrl-C".
pub fn describe(bound: Option<std::time::Duration>) -> String {
    match bound {
        Some(d) => format!("for {}", humantime::format_duration(d)),
        None => "until Ctrl-C".into(),
    }
}

/// Say once, as a stream starts, how long it runs and what ends it sooner.
pub fn note_start(what: &str, bound: Option<std::time::Duration>) {
    let sooner = if bound.is_some() { "; a LIMIT or Ctrl-C ends it sooner" } else { "; a LIMIT ends it sooner" };
    sockql_collect::notice::note_once("stream-start", format!("{what} {} (--capture-for{sooner})", describe(bound)));
}

/// When a stream that starts now must end, if ever.
pub fn deadline(bound: Option<std::time::Duration>) -> Option<std::time::Instant> {
    bound.and_then(|d| std::time::Instant::now().checked_add(d))
}
