//! Cancelling a running DoGet (`CancelFlightInfo`, and Flight SQL's older
//! `CancelQuery`): the FlightInfo a client got names its query by the
//! tickets of its endpoints; the runs of that ticket on the caller's own
//! connection are ended as --timeout ends them (the run is dropped, the
//! query thread stops at its next result and then frees its slot).
//!
//! Each connection keeps its own runs ([`Running`] lives in its
//! `ConnState`), so a cancel on another connection finds nothing to end:
//! a statement's ticket is its SQL text, which anyone could write, and
//! must not be enough to stop someone else's query.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arrow_flight::FlightInfo;
use bytes::Bytes;
use tonic::Status;

use crate::query::engine::QueryStream;

/// One DoGet's run, shared by its batches, its deadline's watchdog and a
/// cancel: whichever takes the stream first ends it.
#[derive(Default)]
pub struct Run {
    held: Mutex<Option<QueryStream>>,
    cancelled: AtomicBool,
    /// Wakes a DoGet waiting for its next batch (the stream is then out
    /// of `held`, in the waiting call's hands).
    notify: tokio::sync::Notify,
}

impl Run {
    pub fn new(stream: QueryStream) -> Arc<Self> {
        Arc::new(Run { held: Mutex::new(Some(stream)), ..Default::default() })
    }

    pub fn take(&self) -> Option<QueryStream> {
        self.held.lock().ok().and_then(|mut h| h.take())
    }

    pub fn put_back(&self, stream: QueryStream) {
        if let Ok(mut h) = self.held.lock() {
            // A cancel that came while the batch was read wins.
            if !self.cancelled.load(Ordering::Acquire) {
                *h = Some(stream);
            }
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        drop(self.take());
        self.notify.notify_waiters();
    }

    /// The next event of `stream`, unless the run is cancelled first
    /// (then None, and the stream is dropped: its query thread stops).
    pub async fn next_unless_cancelled(
        &self,
        stream: &mut QueryStream,
    ) -> Option<crate::query::Result<Option<crate::query::engine::Event>>> {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.cancelled() {
            return None;
        }
        tokio::select! {
            next = stream.next() => Some(next),
            _ = notified => None,
        }
    }
}

/// A connection's running DoGets by ticket.
#[derive(Default)]
pub struct Running {
    next: AtomicU64,
    runs: Mutex<HashMap<u64, (Bytes, Weak<Run>)>>,
}

/// A run's place in its connection's [`Running`]; dropped with the
/// DoGet's stream.
pub struct Registered {
    running: Weak<Running>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(running) = self.running.upgrade() {
            if let Ok(mut runs) = running.runs.lock() {
                runs.remove(&self.id);
            }
        }
    }
}

impl Running {
    pub fn register(self: &Arc<Self>, ticket: Bytes, run: &Arc<Run>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(id, (ticket, Arc::downgrade(run)));
        }
        Registered { running: Arc::downgrade(self), id }
    }

    /// End this connection's runs of any of `info`'s tickets; how many.
    pub fn cancel(&self, info: &FlightInfo) -> usize {
        let tickets: Vec<&Bytes> = info.endpoint.iter().filter_map(|e| e.ticket.as_ref()).map(|t| &t.ticket).collect();
        let found: Vec<Arc<Run>> = match self.runs.lock() {
            Ok(runs) => runs
                .values()
                .filter(|(ticket, _)| tickets.contains(&ticket))
                .filter_map(|(_, run)| run.upgrade())
                .collect(),
            Err(_) => Vec::new(),
        };
        for run in &found {
            run.cancel();
        }
        found.len()
    }

    pub fn len(&self) -> usize {
        self.runs.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The answer to a cancel that found nothing: that query is not running
/// on this connection (it ended, never ran, or is another's).
pub fn not_found() -> Status {
    Status::not_found("no query of this connection is running with that FlightInfo's ticket (a query can be cancelled only on the connection that runs it)")
}
