//! What can go wrong with a tracepoint, each as one line a table can
//! show instead of failing the query: no tracefs, a kernel without the
//! tracepoint or field, a filter the kernel refused, a system call that
//! failed. Kept apart from `collect::Error` (which boxes it) so that type
//! stays small.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TraceError {
    /// tracefs is not mounted and a private mount failed.
    #[error(
        "tracefs is not mounted and a private mount failed ({0}); mount it with: mount -t tracefs nodev /sys/kernel/tracing"
    )]
    NoTracefs(#[source] std::io::Error),
    /// A directory found as tracefs that is not tracefs.
    #[error("{0} is not tracefs; mount it with: mount -t tracefs nodev /sys/kernel/tracing")]
    NotTracefs(Box<str>),
    /// `GROUP:NAME` this kernel does not have.
    #[error("this kernel has no tracepoint {0}")]
    NoTracepoint(Box<str>),
    /// A field the tracepoint of this kernel does not carry (or not with
    /// the size sockql reads it at).
    #[error("tracepoint {event} has no field {field}")]
    NoField { event: Box<str>, field: Box<str> },
    /// A format file sockql cannot read.
    #[error("tracepoint format {path}: {msg}")]
    Format { path: Box<str>, msg: Box<str> },
    /// PERF_EVENT_IOC_SET_FILTER failed (the kernel checks the expression
    /// against the tracepoint's fields).
    #[error("tracepoint {event}: the kernel refused the filter {filter:?}: {source}")]
    Filter { event: Box<str>, filter: Box<str>, source: std::io::Error },
    /// A system call failed: what was being done and the errno.
    #[error("tracepoint {what}: {source}")]
    Sys { what: Box<str>, source: std::io::Error },
}

impl TraceError {
    pub(crate) fn sys(what: impl Into<Box<str>>, source: impl Into<std::io::Error>) -> TraceError {
        TraceError::Sys { what: what.into(), source: source.into() }
    }

    /// The errno behind the error, if a system call gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            TraceError::NoTracefs(e) | TraceError::Filter { source: e, .. } | TraceError::Sys { source: e, .. } => {
                e.raw_os_error()
            }
            _ => None,
        }
    }

    /// True when the kernel lacks what was asked for (tracepoint, field):
    /// the table says so in one line and yields no rows.
    pub fn is_missing(&self) -> bool {
        matches!(self, TraceError::NoTracepoint(_) | TraceError::NoField { .. })
    }
}

impl From<TraceError> for crate::Error {
    fn from(e: TraceError) -> Self {
        crate::Error::Trace(Box::new(e))
    }
}
