//! `sockql record`: sample tables (or a saved query) on an interval into
//! Parquet, one file per table per sample. Each file is written whole and
//! then appears under its final name (object stores put atomically; the
//! local store writes a temporary file and renames it), so a crash or
//! Ctrl-C never leaves a torn file where readers look.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use super::layout;
use super::store::HistoryStore;
use crate::query::engine::{QueryRunner, SqlSource};
use crate::query::stamp::{stamp, stamped_schema};

/// What one recorder samples: a name (the directory) and the SQL.
pub struct Source {
    pub name: String,
    pub sql: SqlSource,
}

/// The sources of `--query NAME` (a saved query, with `params`) or of
/// `--tables a,b` (each table whole).
pub fn sources(tables: &[String], query: Option<&str>, params: &[(String, String)]) -> anyhow::Result<Vec<Source>> {
    if query == Some(SAMPLES) {
        anyhow::bail!("'{SAMPLES}' is the recorder's own log of samples; record the saved query under another name");
    }
    if let Some(name) = query {
        return Ok(vec![Source { name: name.to_string(), sql: crate::query::saved::find(name)?.source(params)? }]);
    }
    let known = crate::tables::catalog();
    tables
        .iter()
        .map(|t| {
            if !known.iter().any(|c| c.name == t) {
                anyhow::bail!("cannot record '{t}': no such table");
            }
            Ok(Source { name: t.clone(), sql: SqlSource::inline(format!("SELECT * FROM {t}")) })
        })
        .collect()
}

pub struct Recorder<'a> {
    pub runner: &'a dyn QueryRunner,
    pub store: HistoryStore,
    pub sources: Vec<Source>,
    pub host: String,
    pub every: Duration,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many samples.
    pub samples: Option<u64>,
    /// Keep this many days of partitions (older ones are deleted).
    pub retention_days: Option<i64>,
}

/// A progress line is on the terminal without its newline yet.
static PROGRESS_OPEN: AtomicBool = AtomicBool::new(false);

/// The table every sample is logged in, one row per source and sample:
/// `history.samples (ts, source, rows)`. A sample with no rows still has
/// its line here (and a zero-row file in its table), so reports can tell
/// "0 then" from "not recorded then".
pub const SAMPLES: &str = "samples";

/// The schema of [`SAMPLES`] (before its `ts` stamp).
pub fn samples_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

/// One table's sample as Parquet bytes, with its row count. A sample with
/// no rows is a valid zero-row file: the table exists with its columns.
pub fn parquet_bytes(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    ts: DateTime<Utc>,
) -> anyhow::Result<(Vec<u8>, usize)> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let out_schema = stamped_schema(schema);
    let mut w = ArrowWriter::try_new(Vec::new(), out_schema.clone(), None)?;
    for b in batches {
        w.write(&stamp(b, &out_schema, ts.timestamp_millis())?)?;
    }
    Ok((w.into_inner()?, rows))
}

impl Recorder<'_> {
    pub async fn run(&self) -> anyhow::Result<()> {
        let result = self.sample_loop().await;
        // An error starts on a line of its own, not after the progress line.
        if result.is_err() && PROGRESS_OPEN.swap(false, Ordering::Relaxed) {
            crate::stderrln!();
        }
        result
    }

    /// Say how far recording got: on a terminal one line redrawn in place,
    /// otherwise (a log file, journald) one plain line per sample.
    fn progress(&self, samples: u64, rows: usize, bytes: usize, done: bool) {
        let line = format!(
            "sockql record: {samples} samples, {rows} rows, {:.1} KiB written to {}{}",
            bytes as f64 / 1024.0,
            self.store.display,
            if done { " (done)" } else { "" }
        );
        if std::io::stderr().is_terminal() {
            crate::stderr!("\r{line}{}", if done { "\n" } else { "" });
            PROGRESS_OPEN.store(!done, Ordering::Relaxed);
        } else {
            crate::stderrln!("{line}");
        }
    }

    async fn sample_loop(&self) -> anyhow::Result<()> {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let start = tokio::time::Instant::now();
        let (mut samples, mut rows, mut bytes) = (0u64, 0usize, 0usize);
        loop {
            let next = tokio::time::Instant::now() + self.every;
            let ts = Utc::now();
            let mut logged: Vec<(String, u64)> = Vec::new();
            for source in &self.sources {
                let results = tokio::select! {
                    r = self.runner.run(&source.sql) => r?,
                    _ = &mut ctrl_c => return self.done(samples, rows, bytes),
                };
                let Some(result) = results.into_iter().last() else { continue };
                let (data, n) = parquet_bytes(&result.schema, &result.batches, ts)?;
                bytes += data.len();
                rows += n;
                layout::write_sample(&self.store, &source.name, &self.host, ts, data).await?;
                logged.push((source.name.clone(), n as u64));
                if let Some(days) = self.retention_days {
                    layout::prune(&self.store, &source.name, &self.host, ts.date_naive(), days).await?;
                }
            }
            // The log line of this sample, written after its tables.
            let log = RecordBatch::try_new(
                samples_schema(),
                vec![
                    Arc::new(StringArray::from_iter_values(logged.iter().map(|l| l.0.as_str()))) as ArrayRef,
                    Arc::new(UInt64Array::from_iter_values(logged.iter().map(|l| l.1))),
                ],
            )?;
            let (data, _) = parquet_bytes(&samples_schema(), &[log], ts)?;
            bytes += data.len();
            layout::write_sample(&self.store, SAMPLES, &self.host, ts, data).await?;
            if let Some(days) = self.retention_days {
                layout::prune(&self.store, SAMPLES, &self.host, ts.date_naive(), days).await?;
            }
            samples += 1;
            self.progress(samples, rows, bytes, false);
            if self.samples.is_some_and(|n| samples >= n)
                || self.duration.is_some_and(|d| start.elapsed() + self.every > d)
            {
                return self.done(samples, rows, bytes);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = &mut ctrl_c => return self.done(samples, rows, bytes),
            }
        }
    }

    fn done(&self, samples: u64, rows: usize, bytes: usize) -> anyhow::Result<()> {
        self.progress(samples, rows, bytes, true);
        Ok(())
    }
}

/// This machine's host name, for the `host=` partition.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".to_string())
}
