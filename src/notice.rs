//! One-line notices on stderr ("warning:", "note:"), each printed at most
//! once per process however many scans hit the same condition: an
//! operator wants to know once that netlink is refused, not per query.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

fn seen() -> &'static Mutex<HashSet<String>> {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

/// Print `sockql: {kind}: {message}` unless `key` was printed before.
pub fn once(key: &str, kind: &str, message: impl std::fmt::Display) {
    let first = seen().lock().map(|mut s| s.insert(key.to_string())).unwrap_or(true);
    if first {
        eprintln!("sockql: {kind}: {message}");
    }
}

pub fn warn_once(key: &str, message: impl std::fmt::Display) {
    once(key, "warning", message)
}

pub fn note_once(key: &str, message: impl std::fmt::Display) {
    once(key, "note", message)
}
