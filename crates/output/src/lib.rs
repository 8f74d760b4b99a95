//! How each row of a result leaves sockql: printed for the operator (a
//! table fitted to the terminal, csv, json or ndjson: `--format`), batch by
//! batch to any `io::Write` (stdout, a buffer in tests), or encoded as the
//! DataRows a PostgreSQL client reads (`serve --pg`).
//!
//! Beside the front ends: it uses the query layer's
//! [`ResultSink`](sockql_query::engine::ResultSink) and the notices of
//! `collect`, and nothing of `cli` or `serve`. Its own package so the
//! release profile keeps it at opt-level "s" (Cargo.toml).

pub mod fit;
pub mod pg_encode;
pub mod pg_type_catalog;
mod printer;

pub use fit::{Expanded, Fit};
pub use printer::{escape_control_text, escape_strings, print, Format, OutputOptions, PrintSink, Printer};
