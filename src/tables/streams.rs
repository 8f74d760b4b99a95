//! Tables that stream for a while: live packet captures and event
//! listeners run until their time is up (`--for`), a LIMIT is met, or the
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
