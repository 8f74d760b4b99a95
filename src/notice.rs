//! One-line notices on stderr ("warning:", "note:"), each printed at most
//! once per process however many scans hit the same condition: an
//! operator wants to know once that netlink is refused, not per query.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// `eprintln!` that does not panic when stderr is closed (`sockql record
/// ... 2>&1 | head -1`): std's macro panics on a failed write, and a lost
/// diagnostic is better than a crash. Every line sockql writes to stderr
/// goes through this or [`stderr!`].
#[macro_export]
macro_rules! stderrln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// `eprint!` that does not panic when stderr is closed; flushed.
#[macro_export]
macro_rules! stderr {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut e = std::io::stderr().lock();
        let _ = write!(e, $($arg)*);
        let _ = e.flush();
    }};
}

fn seen() -> &'static Mutex<HashSet<String>> {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// Print `sockql: {kind}: {message}` unless `key` was printed before.
pub fn once(key: &str, kind: &str, message: impl std::fmt::Display) {
    let first = seen().lock().map(|mut s| s.insert(key.to_string())).unwrap_or(true);
    if first {
        crate::stderrln!("sockql: {kind}: {}", escape_controls(&message.to_string()));
    }
}

/// Text with control characters shown as escapes (`\n`, `\t`, `\x1b`):
/// a process name, command line or file content must not move the
/// cursor, clear the screen or break a table when printed to a terminal.
/// C1 controls (U+0080..U+009F, such as the one-character CSI) count too.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

pub fn warn_once(key: &str, message: impl std::fmt::Display) {
    once(key, "warning", message)
}

pub fn note_once(key: &str, message: impl std::fmt::Display) {
    once(key, "note", message)
}
