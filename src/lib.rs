//! sockql: SQL over the live state of a Linux host's network stack.
//!
//! The modules are layers; each imports only from those below it
//! (`tests/it/layers.rs` checks it). ARCHITECTURE.md describes each and
//! where new code goes; this list is the map, bottom up:
//!
//! - [`notice`]: warnings and notes, kept per statement for the front end
//!   that shows them.
//! - [`collect`]: readers of kernel state (netlink sock_diag, ctnetlink,
//!   procfs, /proc/net, packet capture and files) into typed records; no
//!   SQL, no Arrow.
//! - [`tables`]: those readers as DataFusion tables with typed, described
//!   columns and kernel-side filter pushdown.
//! - [`query`]: what every front end uses: the engine, the read-only
//!   policy, saved queries, the catalog, errors.
//! - Front ends: [`cli`] (arguments, the shell, output formats, the
//!   generated reference and man page), [`history`] (recording to Parquet
//!   and reading it back) and [`serve`] (Prometheus metrics and the
//!   PostgreSQL wire protocol).

pub mod cli;
pub mod collect;
pub mod history;
pub mod notice;
pub mod query;
pub mod serve;
pub mod tables;
