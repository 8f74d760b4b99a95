//! Readers of kernel state. Nothing here knows about SQL or Arrow: each
//! module yields plain typed records or borrowed views of kernel messages,
//! with parsing kept apart from I/O so parsers can be tested on captured
//! bytes.
//!
//! `notice` lives here too, below every layer: warnings and notes that any
//! layer may say, kept per statement (ARCHITECTURE.md).

pub mod capabilities;
pub mod cgroups;
pub mod conntrack;
pub mod containers;
pub mod counters;
pub mod error;
pub mod netlink;
pub mod netlink_sockets;
pub mod netns;
pub mod nla;
pub mod notice;
pub mod owners;
pub mod packets;
pub mod proc_events;
pub mod proc_net;
pub mod processes;
pub mod sock_diag;
pub mod sysctl;
pub mod tcp_metrics;
pub mod tcp_state;
pub mod trace;
pub mod users;

pub use error::{Error, Used};

/// How readers choose their source, from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Read /proc text files even where netlink works (`--no-netlink`).
    pub no_netlink: bool,
}

/// A small /proc text file whose content a process controls (comm,
/// cgroup): read as bytes, at most `max` of them, shown lossily. A name
/// with invalid UTF-8 must still be a name (never null: a process must not
/// hide from `WHERE process = ...` by renaming itself to `\xff`).
pub fn proc_text(path: &str, max: u64) -> Option<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(max).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
