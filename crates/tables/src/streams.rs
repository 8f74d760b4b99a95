//! Tables that stream for a while: live packet captures and event
//! listeners run until their time is up (`--capture-for`), a LIMIT is met, or the
//! operator asks them to end. The first Ctrl-C asks: every stream running
//! in that session ends as if its time were up, and the query answers from
//! what it saw, as tcpdump prints what it has (the front ends call
//! [`Streams::end_running`]). What a stream's end asks is held per session
//! ([`Streams`], made by the engine and carried to the scans in
//! `SourceOptions`), so one `serve --pg` client's end never ends another's.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a stream runs when the operator gives no bound: the front
/// end puts it in `SourceOptions::stream_for` unless told otherwise.
pub const DEFAULT_STREAM_FOR: Duration = Duration::from_secs(10);

/// One session's streams: how many run, and whether its front end asked
/// them to end.
#[derive(Debug, Default)]
pub struct Streams {
    running: AtomicUsize,
    end_requested: AtomicBool,
}

impl Streams {
    /// End every stream running in this session now. False when none runs
    /// (the caller then aborts the query instead).
    pub fn end_running(&self) -> bool {
        if self.running.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.end_requested.store(true, Ordering::SeqCst);
        true
    }

    /// True once this session's front end asked its running streams to end.
    pub fn end_requested(&self) -> bool {
        self.end_requested.load(Ordering::SeqCst)
    }

    /// Count one running stream while the guard lives.
    pub fn start(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::SeqCst);
        Running(self)
    }
}

/// Handle Ctrl-C for a command that runs streams in the session `streams`:
/// the first one while streams run ends them (the query, or the recording,
/// then finishes with what was seen); another one, or one with no stream
/// running, exits as SIGINT would (130).
pub fn end_on_ctrl_c(streams: Arc<Streams>) {
    tokio::spawn(async move {
        let mut ended = false;
        while tokio::signal::ctrl_c().await.is_ok() {
            if ended || !streams.end_running() {
                std::process::exit(130);
            }
            ended = true;
            sockql_collect::stderrln!("sockql: capture ended (Ctrl-C again aborts)");
        }
    });
}

/// Counts one running stream of a session while it lives; the session's
/// last to end clears a request to end, so its next query streams in full.
pub struct Running<'a>(&'a Streams);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.end_requested.store(false, Ordering::SeqCst);
        }
    }
}

/// Wait on `fds` (one per namespace listened in) for `bound`, or until
/// the session's front end asks its streams to end (`streams`): after a wake, let what arrives
/// `gather` (zero: none) so one read takes a burst, then `ready(i)` reads
/// what waits on `fds[i]`; `between()` runs after every wait (at least
/// every 100 ms). Either ends the stream by breaking.
pub fn poll_for(
    streams: &Streams,
    fds: &[std::os::fd::RawFd],
    bound: Option<std::time::Duration>,
    gather: std::time::Duration,
    mut ready: impl FnMut(usize) -> anyhow::Result<std::ops::ControlFlow<()>>,
    mut between: impl FnMut() -> anyhow::Result<std::ops::ControlFlow<()>>,
) -> anyhow::Result<()> {
    let _running = streams.start();
    let deadline = deadline(bound);
    use nix::poll::{poll, PollFd, PollFlags};
    // SAFETY: the caller holds every descriptor open for the whole call
    // (each belongs to a listener that outlives it; the numbers are only
    // passed here because `ready` borrows those listeners mutably).
    let borrowed: Vec<_> = fds.iter().map(|&fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).collect();
    let mut polled: Vec<PollFd> = borrowed.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    while deadline.is_none_or(|d| std::time::Instant::now() < d) && !streams.end_requested() {
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
    // What arrived before the end belongs to the stream: one last read of
    // what already waits, without waiting (a capture ended by Ctrl-C or
    // its time reports the packets the kernel took before then, as tcpdump
    // prints what its buffer holds).
    if poll(&mut polled, 0u16).unwrap_or(0) > 0 {
        for (i, p) in polled.iter().enumerate() {
            if p.any().unwrap_or(false) && ready(i)?.is_break() {
                break;
            }
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

/// How long a stream of this session runs: what its front end decided
/// (`--capture-for`, else with `--follow` until Ctrl-C: None, else
/// [`DEFAULT_STREAM_FOR`]).
pub fn bound(options: &crate::SourceOptions) -> Option<Duration> {
    options.stream_for
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

/// CLOCK_REALTIME minus CLOCK_MONOTONIC now, ns: what turns the kernel's
/// monotonic stamps into wall-clock times.
pub fn realtime_offset_ns() -> i64 {
    use nix::time::{clock_gettime, ClockId};
    // Neither clock can fail on Linux; a zero would only shift the times.
    let read = |clock| clock_gettime(clock).map_or(0, |t| t.tv_sec() * 1_000_000_000 + t.tv_nsec());
    read(ClockId::CLOCK_REALTIME) - read(ClockId::CLOCK_MONOTONIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow::Continue;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    /// Listen in `session` for `bound` on a socket nothing writes to;
    /// returns how long it listened.
    fn listen(session: Arc<Streams>, bound: Duration) -> std::thread::JoinHandle<Duration> {
        std::thread::spawn(move || {
            let (quiet, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
            let start = Instant::now();
            poll_for(
                &session,
                &[quiet.as_raw_fd()],
                Some(bound),
                Duration::ZERO,
                |_| Ok(Continue(())),
                || Ok(Continue(())),
            )
            .unwrap();
            start.elapsed()
        })
    }

    /// Before: the running count and the request to end were statics, so
    /// a Ctrl-C in one session (or one `serve` client's end) ended every
    /// stream in the process.
    #[test]
    fn ending_one_sessions_streams_leaves_anothers_running() {
        let (a, b) = (Arc::new(Streams::default()), Arc::new(Streams::default()));
        let ta = listen(a.clone(), Duration::from_secs(30));
        let tb = listen(b.clone(), Duration::from_millis(1500));
        let start = Instant::now();
        while a.running.load(Ordering::SeqCst) == 0 || b.running.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < Duration::from_secs(10), "the streams did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(a.end_running());
        let a_took = ta.join().unwrap();
        assert!(a_took < Duration::from_secs(5), "A ran {a_took:?} after its end was asked");
        assert!(!b.end_requested());
        let b_took = tb.join().unwrap();
        assert!(b_took >= Duration::from_millis(1500), "B ended at {b_took:?}, before its bound");
        // A's request ended with its last stream: its next stream runs in
        // full, and with nothing running there is nothing to end.
        assert!(!a.end_requested());
        assert!(!a.end_running());
    }
}
