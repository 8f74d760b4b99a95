//! The query layer every front end uses (the command line, the recorder,
//! later the server): the engine (session, limits, running statements),
//! what SQL may do (policy), how SQL text becomes statements within bounds,
//! saved queries (format, discovery, binding), and the catalog. It knows
//! nothing of any front end.

pub mod ast_walk;
pub mod budget;
pub mod budget_plan;
pub mod catalog;
pub mod deadline;
pub mod dirs;
pub mod engine;
pub mod error;
pub mod errors;
pub mod files;
pub mod hints;
pub mod pinned;
pub mod policy;
pub mod priority;
mod query_runtimes;
pub mod report_fn;
pub mod safe_dir;
pub mod saved;
pub mod services;
pub mod sqlstate;
pub mod stamp;
pub mod statement_size;
pub mod statements;
pub mod stream_plan;
pub mod stream_reads;
pub mod time_zone;

pub use error::{Error, Result};
