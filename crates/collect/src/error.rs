//! The one error type of every reader in `collect`: netlink and /proc
//! alike, with the errno where the kernel gave one, so callers decide on
//! fallbacks by [`Error::errno`] and [`Error::is_refusal`] instead of each
//! digging into the variants.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot open netlink socket: {0}")]
    Open(#[source] std::io::Error),
    #[error("netlink I/O failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("kernel answered the dump with error {errno} ({})", std::io::Error::from_raw_os_error(*.errno))]
    Kernel { errno: i32 },
    #[error("malformed netlink message: {0}")]
    Malformed(String),
    #[error("netlink message of {0} bytes did not fit the receive buffer")]
    Truncated(usize),
    // The /proc variants stay small (a boxed path, one String): every
    // callback of a dump returns a Result holding this type, and a large
    // error made each of a million sockets cost measurably more.
    #[error("cannot read {0}: {1}")]
    Proc(Box<str>, #[source] std::io::Error),
    /// `PATH: what is wrong with its text` (/proc files, capture files).
    #[error("{0}")]
    ProcFormat(String),
    /// A live capture's socket call failed.
    #[error("packet capture: {0}: {1}")]
    Capture(Box<str>, #[source] std::io::Error),
}

impl Error {
    /// The same error with the file actually read (`/proc/thread-self/...`)
    /// in front of a text error's message, which names the file as users
    /// know it (`/proc/net/tcp line 3: ...`).
    pub fn in_file(self, path: &str) -> Error {
        match self {
            Error::ProcFormat(m) => Error::ProcFormat(format!("{path}: {m}")),
            other => other,
        }
    }

    /// The errno behind the error, if the kernel or a system call gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Open(e) | Error::Io(e) | Error::Proc(_, e) | Error::Capture(_, e) => e.raw_os_error(),
            Error::Kernel { errno } => Some(*errno),
            _ => None,
        }
    }

    /// True when the kernel refused us (no permission, protocol not
    /// available in this kernel or sandbox): the caller should fall back.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::EPERM)
                | Some(libc::EACCES)
                | Some(libc::EPROTONOSUPPORT)
                | Some(libc::EAFNOSUPPORT)
                | Some(libc::ENOENT)
                | Some(libc::EOPNOTSUPP)
                | Some(libc::EINVAL)
        )
    }
}

/// Which source a reader used, for EXPLAIN ANALYZE's metrics and notes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    /// Netlink dumps answered.
    pub netlink: usize,
    /// /proc files read instead.
    pub proc: usize,
}

impl Used {
    pub fn add(&mut self, other: Used) {
        self.netlink += other.netlink;
        self.proc += other.proc;
    }
}

/// Inside a reader with a fallback: the error of the caller's callback
/// (passed through untouched) or the reader's own (which decides whether
/// to fall back).
pub(crate) enum CallerOr<E> {
    Caller(E),
    Reader(Error),
}

impl<E> From<Error> for CallerOr<E> {
    fn from(e: Error) -> Self {
        CallerOr::Reader(e)
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn in_file_prefixes_text_errors_only() {
        let e = crate::proc_net::parse("/proc/net/tcp", "header\n   0: 0100007F:1F90 00000000:0000 0A\n").unwrap_err();
        let e = e.in_file("/proc/thread-self/net/tcp").to_string();
        assert!(e.starts_with("/proc/thread-self/net/tcp: /proc/net/tcp line 2: "), "{e}");
        let io = Error::Proc("/proc/x".into(), std::io::Error::from_raw_os_error(libc::ENOENT)).in_file("/y");
        assert_eq!((io.to_string().starts_with("cannot read /proc/x: "), io.errno()), (true, Some(libc::ENOENT)));
    }
}
