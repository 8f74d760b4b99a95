//! How a query's result reaches the operator: a table fitted to the
//! terminal, csv, json or ndjson (`--format`), printed batch by batch to
//! any `io::Write` (stdout, a buffer in tests).
//!
//! A front-end layer beside `cli`: it uses the query layer's
//! [`ResultSink`](sockql_query::engine::ResultSink) and the notices of
//! `collect`, and nothing of the front ends.

pub mod fit;
mod printer;

pub use fit::{Expanded, Fit};
pub use printer::{escape_control_text, escape_strings, print, Format, OutputOptions, PrintSink, Printer};
