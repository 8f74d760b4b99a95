//! The query layer's one error type: every public function of this crate
//! fails with [`Error`], a variant per kind, so a front end (and
//! `sqlstate.rs`, `errors.rs`) matches on what went wrong instead of
//! guessing from text. Front ends may wrap it in anyhow at the top: the
//! chain stays walkable (`source()`), and [`typed`] gives each cause's
//! own type back.
//!
//! Display and `source()` are written out rather than derived, for two
//! reasons: a wrapped error shows and chains exactly as the wrapped one
//! (what the one-line error text and its tests are built on), and `{:#}`
//! prints the whole chain joined by ": ", as anyhow did, so every
//! `{e:#}` stays byte-identical.

use std::fmt;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::engine::TimedOut;
use crate::policy::Refusal;
use crate::saved::QueryFileError;
use crate::statement_size::TooLarge;
use crate::statements::StatementError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// The policy refused the statement (a write, a setting, a file).
    Refused(Refusal),
    /// The statement is too large to plan.
    TooLarge(TooLarge),
    /// The SQL text is beyond a bound before planning (never a parse
    /// error: those are DataFusion's own, in [`Error::DataFusion`]).
    Statement(StatementError),
    /// A saved query's file is malformed.
    QueryFile(QueryFileError),
    /// --timeout ended the run.
    TimedOut(TimedOut),
    /// The caller stopped listening (Ctrl-C, a closed client, timeout):
    /// the query thread stops at its next result.
    Cancelled,
    /// Parsing, planning or executing failed (or the memory pool refused).
    DataFusion(DataFusionError),
    Arrow(ArrowError),
    Io(std::io::Error),
    /// A system call of sockql's own (safe directories).
    Errno(nix::errno::Errno),
    /// A kernel reader failed.
    Collect(sockql_collect::Error),
    /// sockql's own message (a bad parameter, no statement, a file that is
    /// not SQL, an untrusted directory...).
    Invalid(String),
    /// What was being done when `source` failed (a file and line, a hint).
    Context {
        context: String,
        source: Box<Error>,
    },
    /// A front end's result sink failed (a closed pipe): its error as it
    /// was, for the front end to find again.
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// sockql's own message.
    pub fn msg(text: impl Into<String>) -> Self {
        Error::Invalid(text.into())
    }

    /// `self`, with what was being done when it happened.
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context { context: context.into(), source: Box::new(self) }
    }

    /// The error this variant wraps, as its own type (so `downcast_ref`
    /// finds a `DataFusionError` or an `io::Error`); `self` for sockql's
    /// own messages and contexts.
    pub fn inner(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Error::Refused(e) => e,
            Error::TooLarge(e) => e,
            Error::Statement(e) => e,
            Error::QueryFile(e) => e,
            Error::TimedOut(e) => e,
            Error::DataFusion(e) => e,
            Error::Arrow(e) => e,
            Error::Io(e) => e,
            Error::Errno(e) => e,
            Error::Collect(e) => e,
            Error::Sink(e) => e.as_ref(),
            Error::Cancelled | Error::Invalid(_) | Error::Context { .. } => self,
        }
    }

    /// The innermost error, past every context.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// The last cause in the chain (anyhow's `root_cause`).
    pub fn root_cause(&self) -> &(dyn std::error::Error + 'static) {
        causes(self).last().unwrap_or(self)
    }

    /// The first cause of type `T`, anywhere in the chain (inside
    /// DataFusion's wrappers too: a function that stopped at the deadline).
    pub fn find<T: std::error::Error + 'static>(&self) -> Option<&T> {
        causes(self).find_map(|c| c.downcast_ref::<T>())
    }

    /// Did the memory pool refuse (--memory-limit)?
    pub fn memory_exhausted(&self) -> bool {
        causes(self)
            .filter_map(|c| c.downcast_ref::<DataFusionError>())
            .any(|d| matches!(d.find_root(), DataFusionError::ResourcesExhausted(_)))
    }
}

/// An error a front end holds (anyhow at its top) or a query [`Error`]:
/// what `error_line` and `sqlstate` take.
pub trait AsError {
    fn as_error(&self) -> &(dyn std::error::Error + 'static);
}

impl AsError for anyhow::Error {
    fn as_error(&self) -> &(dyn std::error::Error + 'static) {
        self.as_ref()
    }
}

impl AsError for Error {
    fn as_error(&self) -> &(dyn std::error::Error + 'static) {
        self
    }
}

/// `cause` as its own type: a query [`Error`] gives the error it wraps.
pub fn typed<'a>(cause: &'a (dyn std::error::Error + 'static)) -> &'a (dyn std::error::Error + 'static) {
    match cause.downcast_ref::<Error>() {
        Some(e) => e.inner(),
        None => cause,
    }
}

/// `e` and its sources, each as its own type (see [`typed`]).
pub fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |c| c.source()).map(typed)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cancelled => f.write_str("query abandoned")?,
            Error::Invalid(text) => f.write_str(text)?,
            Error::Context { context, .. } => f.write_str(context)?,
            other => write!(f, "{}", other.inner())?,
        }
        // `{:#}`: the whole chain, as anyhow prints it.
        if f.alternate() {
            let mut source = std::error::Error::source(self);
            while let Some(s) = source {
                write!(f, ": {s}")?;
                source = s.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Cancelled | Error::Invalid(_) => None,
            Error::Context { source, .. } => Some(source.as_ref()),
            // A wrapped error stands in its own place: its sources follow.
            other => other.inner().source(),
        }
    }
}

macro_rules! from {
    ($($variant:ident($t:ty)),* $(,)?) => {
        $(impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$variant(e)
            }
        })*
    };
}

from!(
    Refused(Refusal),
    TooLarge(TooLarge),
    QueryFile(QueryFileError),
    TimedOut(TimedOut),
    DataFusion(DataFusionError),
    Arrow(ArrowError),
    Io(std::io::Error),
    Errno(nix::errno::Errno),
    Collect(sockql_collect::Error),
);

impl From<StatementError> for Error {
    /// A parse error is DataFusion's own, so front ends find its root
    /// cause (line and column) where they look.
    fn from(e: StatementError) -> Self {
        match e {
            StatementError::Parse(df) => Error::DataFusion(df),
            StatementError::TooLargeToPlan(t) => Error::TooLarge(t),
            other => Error::Statement(other),
        }
    }
}

/// A front end's sink error, kept as it was (its own type stays findable).
impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<Error>() {
            Ok(own) => own,
            // Moved out of anyhow's box, so its own type is found again
            // (`into()` would keep anyhow's wrapper around it).
            Err(e) => Error::Sink(e.reallocate_into_boxed_dyn_error_without_backtrace()),
        }
    }
}

/// `.context(..)` and `.with_context(..)` on results and options, as
/// anyhow has them, giving [`Error`].
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::msg(context))
    }
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.ok_or_else(|| Error::msg(context()))
    }
}

/// Return early with sockql's own message (anyhow's `bail!`).
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::msg(format!($($arg)*)))
    };
}

/// sockql's own message as an [`Error`] (anyhow's `anyhow!`).
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::Error::msg(format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wrapped, an error shows and chains as it did in anyhow: `{:#}` is
    /// the chain, and each cause comes back as its own type.
    #[test]
    fn chains_show_as_anyhow_showed_them() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let e = Error::from(io).context("writing rows").context("q.sql:3");
        assert_eq!(format!("{e}"), "q.sql:3");
        assert_eq!(format!("{e:#}"), "q.sql:3: writing rows: pipe closed");
        let a = anyhow::Error::from(e);
        assert_eq!(format!("{a:#}"), "q.sql:3: writing rows: pipe closed");
        assert!(causes(a.as_ref()).any(|c| c.downcast_ref::<std::io::Error>().is_some()));
        // A sink's error given back by anyhow keeps its type.
        let sink = Error::from(anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe)));
        assert!(sink.find::<std::io::Error>().is_some());
    }

    /// A refusal made inside planning comes back wrapped in DataFusion's
    /// External: still found.
    #[test]
    fn refusals_inside_datafusion_are_found() {
        let inside = DataFusionError::External(Box::new(Refusal::by_front_end("no")));
        let e = Error::from(DataFusionError::Context("planning".into(), Box::new(inside))).context("x.sql:1");
        assert!(e.find::<Refusal>().is_some());
    }
}
