//! What a query needs of the event streams it reads, as one statement per
//! stream: `sockql serve` listens with it all the time and runs the query
//! itself over what came in since its last run (src/serve/counters.rs).
//! Planned and optimized like the pinned live tables (pinned.rs): the
//! statement names only the columns the query uses and the filters the
//! stream applies itself (in the kernel where it can), so a counter over a
//! filtered stream listens to no more than the query would.

use super::engine::{Engine, SqlSource};

/// One stream a query reads, and the statement that reads what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    pub table: String,
    pub sql: String,
    /// The statement also reads the stream's [`OVERRUNS`] column, so the
    /// listener can tell events the kernel dropped before it read them.
    pub overruns: bool,
}

/// The column of the event tables that counts, per listener, the times
/// the kernel's queue overflowed so far (ENOBUFS).
pub const OVERRUNS: &str = "overruns";

impl Engine {
    /// The event streams (`Kind::Stream` tables) `source` reads; empty when
    /// it reads none, or does not plan (it then fails, and says why, when
    /// it runs).
    pub async fn stream_reads(&self, source: &SqlSource) -> crate::Result<Vec<StreamRead>> {
        let tables = self.tables_read(std::slice::from_ref(source), sockql_tables::Kind::Stream).await?;
        Ok(tables
            .into_iter()
            .map(|(table, mut need)| {
                let overruns = sockql_tables::TABLES
                    .iter()
                    .any(|t| t.name() == table && t.columns().iter().any(|c| c.name == OVERRUNS));
                if overruns {
                    need.columns.insert(OVERRUNS.to_string());
                }
                StreamRead { sql: need.sql(&table), table, overruns }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockql_tables::SourceOptions;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_counter_query_reads_its_stream_with_its_columns_and_filters() {
        let engine = Engine::new(&SourceOptions::default()).unwrap();
        let query = SqlSource::inline(
            "SELECT coalesce(name, '') AS process, count(*) AS execs FROM process_events \
             WHERE event = 'exec' GROUP BY 1",
        );
        let reads = engine.stream_reads(&query).await.unwrap();
        assert_eq!(
            reads,
            vec![StreamRead {
                table: "process_events".into(),
                sql: "SELECT \"event\", \"name\", \"overruns\" FROM \"process_events\" WHERE ((\"event\" = 'exec'))"
                    .into(),
                overruns: true,
            }]
        );
        // A query over live tables only reads no stream.
        let live = SqlSource::inline("SELECT count(*) FROM sockets");
        assert!(engine.stream_reads(&live).await.unwrap().is_empty());
    }
}
