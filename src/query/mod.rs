//! The query layer every front end uses: what SQL may do (policy) and how
//! SQL text becomes statements within bounds.

pub mod files;
pub mod policy;
pub mod statements;
