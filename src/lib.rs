//! sockql: SQL over the live state of a Linux host's network stack.
//!
//! This package is the binary and its front ends; the layers below are
//! their own packages, so the compiler keeps imports one way
//! (ARCHITECTURE.md):
//!
//! - [`collect`] (`sockql-collect`) reads kernel state into typed records
//!   and keeps notices; it knows nothing of SQL or Arrow.
//! - [`tables`] (`sockql-tables`) turns those readers into DataFusion
//!   tables with described columns and kernel-side filter pushdown.
//! - [`query`] (`sockql-query`): the engine, policy, limits, saved queries
//!   and the catalog, used by every front end.
//! - [`output`] (`sockql-output`): each row of a result written out,
//!   printed (table, csv, json, ndjson over any `io::Write`, for the
//!   command line, the shell and `--watch`) or encoded for PostgreSQL
//!   clients (`serve --pg`).
//! - Front ends: [`cli`] (the command line and shell), [`history`]
//!   (recording to Parquet and reading it back) and [`serve`] (Prometheus
//!   and PostgreSQL clients).
//!
//! The lower layers are re-exported under their layer names, so front-end
//! code and the integration tests say `crate::query::Engine`.

pub use sockql_collect as collect;
pub use sockql_collect::notice;
pub use sockql_collect::{stderr, stderrln};
pub use sockql_output as output;
pub use sockql_query as query;
pub use sockql_tables as tables;

pub mod cli;
pub mod history;
pub mod serve;
