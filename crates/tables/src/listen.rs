//! What every event table does: listen in every namespace it covers until
//! the stream's bound (`--capture-for`, `--follow`), a LIMIT, a consumer
//! that went away, or Ctrl-C, turning each event into a row as it comes,
//! and say at the end whether the kernel dropped events. A table brings
//! its [`Listener`] (one per namespace); the waiting is `streams.rs`'s.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::live::Emitter;
use crate::scope;
use crate::streams::{self, Streams};
use sockql_collect::netns::Netns;

/// One source of events: an event socket (in one namespace) and what the
/// table makes of its events.
pub trait Listener {
    /// The descriptor to wait on.
    fn raw_fd(&self) -> RawFd;
    /// Times the kernel's queue overflowed (ENOBUFS) so far.
    fn overruns(&self) -> u64;
    /// Read the events waiting, one row each (`Emitter::end_row_in`,
    /// `Emitter::settle`); `Break` ends the stream.
    fn read_waiting(&mut self, out: &mut Emitter<'_>) -> anyhow::Result<ControlFlow<()>>;
}

/// Open a listener in each of `targets` (`open` runs inside the
/// namespace, so the socket it makes belongs there; `None` leaves one out)
/// and [`listen`] with them. `what` names the events ("socket events").
pub fn listen_in_each<L: Listener + Send>(
    what: &str,
    targets: &[Netns],
    session: &Streams,
    bound: Option<Duration>,
    out: &mut Emitter<'_>,
    mut open: impl FnMut(&Netns) -> anyhow::Result<Option<L>> + Send,
    between: impl FnMut(&mut [L]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut listeners: Vec<L> = scope::open_in_each(targets, |ns| open(ns))?.into_iter().map(|(_, l)| l).collect();
    listen(what, session, bound, &mut listeners, out, between)
}

/// Wait on every listener for `bound` (None: until the session's front
/// end ends its streams: Ctrl-C) and read each
/// as events arrive; `between` runs after every wait (at least every
/// 100 ms), after the rows built so far went out if they waited long
/// enough. At the end, say once if events were lost.
pub fn listen<L: Listener>(
    what: &str,
    session: &Streams,
    bound: Option<Duration>,
    listeners: &mut [L],
    out: &mut Emitter<'_>,
    mut between: impl FnMut(&mut [L]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    streams::note_start("listening", bound);
    let fds: Vec<RawFd> = listeners.iter().map(L::raw_fd).collect();
    // Both callbacks need the listeners and the rows; they run in turn.
    let state = RefCell::new((&mut *listeners, &mut *out));
    streams::poll_for(
        session,
        &fds,
        bound,
        Duration::ZERO,
        |i| {
            let mut state = state.borrow_mut();
            let (listeners, out) = &mut *state;
            match listeners.get_mut(i) {
                Some(l) => l.read_waiting(out),
                None => Ok(ControlFlow::Continue(())),
            }
        },
        || {
            let mut state = state.borrow_mut();
            let (listeners, out) = &mut *state;
            out.tick()?;
            between(listeners)?;
            Ok(out.flow())
        },
    )?;
    streams::warn_lost(what, listeners.iter().map(L::overruns).sum());
    Ok(())
}
