//! sockql: SQL over the live state of a Linux host's network stack.
//!
//! - [`collect`] reads kernel state (netlink sock_diag, procfs, /proc/net)
//!   into typed records; it knows nothing of SQL.
//! - [`tables`] turns those readers into DataFusion tables with typed,
//!   described columns and kernel-side filter pushdown.
//! - [`cli`] is the command line: arguments, running SQL, output formats.
//! - [`history`] records samples to Parquet and reads them back.

pub mod cli;
pub mod collect;
pub mod history;
pub mod notice;
pub mod query;
pub mod serve;
pub mod tables;
