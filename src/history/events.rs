//! `sockql record --events`: the event tables (`socket_events`,
//! `conntrack_events`, `process_events`) listened to for the whole
//! recording, not sampled: one query per table runs from start to end
//! (`--for`, or until Ctrl-C, which ends them and writes what they heard),
//! and every `--every` the rows heard since are written as one Parquet file
//! per table, in the same layout as snapshots
//! (DIR/<table>/host=<host>/date=<day>/<ts>.parquet), so `--history DIR`
//! queries them as `history.socket_events` and so on. Rows keep their own
//! `ts` (when the event came). What is held between writes is bounded:
//! once a table has [`FLUSH_BYTES`] waiting, it is written at once rather
//! than at the next `--every`.
//!
//! Quiet is not unrecorded: a table that was listened to and heard nothing
//! still gets one zero-row file (its columns, no rows), so
//! `history.conntrack_events` exists and reports over it answer "none",
//! while a table that was never listened to (or whose listening failed, as
//! `process_events` outside the host's network namespace) has no file and
//! `history.<table>` says it was not recorded. The zero-row file is written
//! once the table has listened over a whole `--every` (a stream that fails
//! does so as it opens, long before) or when its listening ended without
//! error, whichever comes first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use super::layout;
use super::store::HistoryStore;
use crate::query::engine::{QueryRunner, ResultSink, SqlSource};

/// Memory of rows a table may hold before they are written early: a
/// long `--every` under a flood of events stays within it.
pub const FLUSH_BYTES: usize = 32 << 20;

/// The tables `--events` listens to.
pub const EVENT_TABLES: [&str; 3] = ["socket_events", "conntrack_events", "process_events"];

/// Rows heard and not yet written, per table.
#[derive(Default)]
struct Heard {
    schema: Option<SchemaRef>,
    batches: Vec<RecordBatch>,
    /// Their memory.
    bytes: usize,
    /// A file of this table was written in this recording.
    written: bool,
    /// Flushes that found the table listening and not failed.
    flushes_listening: u32,
    /// The table's listening ended with an error: it was not recorded.
    failed: bool,
    /// The table's listening ended without error.
    ended: bool,
}

impl Heard {
    /// A zero-row file says "listened, heard nothing": only for a table
    /// proven to listen (over a whole interval, or to its end).
    fn quiet_proven(&self) -> bool {
        !self.written && !self.failed && (self.ended || self.flushes_listening >= 2)
    }
}

/// Hands a query's batches to the shared buffer, and asks for a write
/// once it holds [`FLUSH_BYTES`].
struct Into(Arc<Mutex<Heard>>, Arc<tokio::sync::Notify>);

impl ResultSink for Into {
    fn start(&mut self, schema: SchemaRef) -> anyhow::Result<()> {
        self.0.lock().map_err(|_| anyhow::anyhow!("event buffer poisoned"))?.schema = Some(schema);
        Ok(())
    }
    fn batch(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        if batch.num_rows() > 0 {
            let mut heard = self.0.lock().map_err(|_| anyhow::anyhow!("event buffer poisoned"))?;
            heard.bytes += batch.get_array_memory_size();
            heard.batches.push(batch.clone());
            if heard.bytes >= FLUSH_BYTES {
                self.1.notify_one();
            }
        }
        Ok(())
    }
    fn end(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

pub struct EventRecorder<'a> {
    pub runner: &'a dyn QueryRunner,
    /// The runner's session's streams, which the first Ctrl-C ends.
    pub streams: std::sync::Arc<crate::tables::streams::Streams>,
    pub store: HistoryStore,
    pub host: String,
    /// How often what was heard is written.
    pub every: Duration,
    /// The last file's time, so two flushes never share a file name.
    pub last_ms: Mutex<i64>,
}

impl EventRecorder<'_> {
    /// Listen until the streams end (their bound, or the first Ctrl-C),
    /// writing every `every`; returns the rows written.
    pub async fn run(&self) -> anyhow::Result<u64> {
        let buffers: Vec<Arc<Mutex<Heard>>> = EVENT_TABLES.iter().map(|_| Arc::default()).collect();
        let full = Arc::new(tokio::sync::Notify::new());
        let listening = futures::future::join_all(EVENT_TABLES.iter().zip(&buffers).map(|(table, buf)| {
            let mut sink = Into(buf.clone(), full.clone());
            async move {
                let r = self.runner.run_into(&SqlSource::inline(format!("SELECT * FROM {table}")), &mut sink).await;
                if let Ok(mut heard) = buf.lock() {
                    heard.failed = r.is_err();
                    heard.ended = r.is_ok();
                }
                r
            }
        }));
        tokio::pin!(listening);
        // The first Ctrl-C ends the listening, and what was heard is written.
        crate::tables::streams::end_on_ctrl_c(self.streams.clone());
        let mut written = 0u64;
        let mut next = tokio::time::Instant::now() + self.every;
        let results = loop {
            tokio::select! {
                r = &mut listening => break r,
                _ = tokio::time::sleep_until(next) => {
                    written += self.flush(&buffers, true).await?;
                    next = tokio::time::Instant::now() + self.every;
                }
                // A table holds FLUSH_BYTES: write it now, and the others
                // with it (the regular writes keep their times).
                _ = full.notified() => written += self.flush(&buffers, false).await?,
            }
        };
        written += self.flush(&buffers, false).await?;
        for (table, r) in EVENT_TABLES.iter().zip(results) {
            match r {
                // The proc connector exists in the host's network namespace
                // only: recording inside another goes on without it.
                Err(e) if *table == "process_events" => {
                    crate::stderrln!(
                        "sockql: warning: process_events not recorded (the proc connector answers in the host's network namespace only): {}",
                        e.root_cause()
                    );
                }
                r => r.map_err(|e| e.context(format!("recording {table}")))?,
            }
        }
        Ok(written)
    }

    /// Write what each table heard since the last flush (a table proven
    /// quiet: one zero-row file, see the module's note).
    /// `interval`: this is the regular write at the end of an `--every`.
    async fn flush(&self, buffers: &[Arc<Mutex<Heard>>], interval: bool) -> anyhow::Result<u64> {
        let mut ts = Utc::now();
        {
            let mut last = self.last_ms.lock().map_err(|_| anyhow::anyhow!("event buffer poisoned"))?;
            if ts.timestamp_millis() <= *last {
                ts = chrono::DateTime::from_timestamp_millis(*last + 1).unwrap_or(ts);
            }
            *last = ts.timestamp_millis();
        }
        let mut rows = 0u64;
        for (table, buf) in EVENT_TABLES.iter().zip(buffers) {
            let (schema, batches) = {
                let mut heard = buf.lock().map_err(|_| anyhow::anyhow!("event buffer poisoned"))?;
                let Some(schema) = heard.schema.clone() else { continue };
                if interval && !heard.failed {
                    heard.flushes_listening = heard.flushes_listening.saturating_add(1);
                }
                if heard.batches.is_empty() && !heard.quiet_proven() {
                    continue;
                }
                heard.bytes = 0;
                heard.written = true;
                (schema, std::mem::take(&mut heard.batches))
            };
            let mut w = ArrowWriter::try_new(Vec::new(), schema, None)?;
            for b in &batches {
                w.write(b)?;
                rows += b.num_rows() as u64;
            }
            layout::write_sample(&self.store, table, &self.host, ts, w.into_inner()?).await?;
        }
        if rows > 0 {
            crate::stderrln!("sockql record: {rows} events written to {}", self.store.display);
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero-row file only for a table proven to listen: to its end, or
    /// over a whole interval; never for one whose listening failed, and
    /// once.
    #[test]
    fn quiet_is_proven_before_it_is_written() {
        let heard = |flushes_listening, failed, ended, written| Heard {
            flushes_listening,
            failed,
            ended,
            written,
            ..Default::default()
        };
        assert!(!heard(0, false, false, false).quiet_proven(), "just started");
        assert!(!heard(1, false, false, false).quiet_proven(), "started within the last interval");
        assert!(heard(2, false, false, false).quiet_proven(), "listened over a whole interval");
        assert!(heard(0, false, true, false).quiet_proven(), "ended without error");
        assert!(!heard(5, true, false, false).quiet_proven(), "its listening failed");
        assert!(!heard(5, false, true, true).quiet_proven(), "a file is already written");
    }
}
