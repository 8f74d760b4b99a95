//! The `history` schema of a session with `--history DIR`: the tables
//! recorded there, and for a name that is not one of them an error that
//! says which table is missing, why, and the `sockql record` command that
//! records it. (A table recorded quiet is there, with zero rows: see
//! [`super::events`]. Without `--history` there is no such schema, and the
//! engine says where history tables come from.)

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};

/// `history.*`: what registration admitted, and what it knows of the rest.
#[derive(Debug)]
pub struct HistorySchema {
    tables: Arc<MemorySchemaProvider>,
    /// DIR as the operator wrote it.
    display: String,
    /// Tables with files in DIR none of which was admitted.
    unreadable: Vec<String>,
}

impl HistorySchema {
    pub fn new(tables: Arc<MemorySchemaProvider>, display: String, unreadable: Vec<String>) -> Self {
        HistorySchema { tables, display, unreadable }
    }

    /// Why `history.<name>` is not a table, and how to get it.
    fn missing(&self, name: &str) -> String {
        let dir = &self.display;
        if self.unreadable.iter().any(|t| t == name) {
            return format!("history.{name}: every file of {name} in {dir} was left out (the warnings above say why)");
        }
        let how = if super::events::EVENT_TABLES.contains(&name) {
            let host_only = if name == "process_events" {
                ", in the host's network namespace (the proc connector answers there only)"
            } else {
                ""
            };
            Some(format!("`sockql record --events --out {dir}`{host_only}"))
        } else if crate::tables::catalog().iter().any(|t| t.name == name) {
            Some(format!("`sockql record --tables {name} --out {dir}`"))
        } else {
            None
        };
        match how {
            Some(how) => format!("history.{name}: {dir} has no recording of {name}; record it with {how}"),
            None => {
                let mut names = self.tables.table_names();
                names.sort();
                let recorded = if names.is_empty() { "nothing".to_string() } else { names.join(", ") };
                // Not a table: perhaps a saved query's name (its results
                // are recorded under it). The saved queries are not read
                // here: this runs for any client's SQL.
                format!(
                    "history.{name}: {dir} has no recording named {name} (recorded there: {recorded}); a saved query's results are recorded with `sockql record --query NAME --out {dir}`"
                )
            }
        }
    }
}

#[async_trait]
impl SchemaProvider for HistorySchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.tables.table(name).await? {
            Some(t) => Ok(Some(t)),
            None => Err(DataFusionError::Plan(self.missing(name))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.table_exist(name)
    }
}
