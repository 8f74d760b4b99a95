//! One scrape: every metric query, within one deadline that covers the
//! wait for its turn, reading the tables, every query and (in `mod.rs`)
//! writing the response. A scrape runs off the connection thread (its
//! formatting is CPU work that must not hold up /healthz), one at a time,
//! and holds at most one batch of a query's rows plus the exposition text,
//! which is reserved in the scrape's memory pool (--memory-limit): a query
//! that returns millions of rows is read batch by batch, and past
//! --max-series a family's rows are only counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use tokio::time::Instant as Deadline;

use super::exposition::{self, Families, Format, Written};
use super::ServeOptions;
use crate::query::engine::{Engine, Event, Limits, Policy, SqlSource};
use crate::query::errors::error_line;
use crate::query::saved::SavedQuery;

/// What every scrape shares: the options, the metric queries, the turn.
pub struct Scraper {
    pub options: ServeOptions,
    pub queries: Vec<SavedQuery>,
    /// One scrape at a time.
    turn: tokio::sync::Mutex<()>,
    errors_total: AtomicU64,
    /// Counter reports over event streams: their totals, kept by their
    /// background listeners (counters.rs), are written by every scrape.
    pub counters: Vec<std::sync::Arc<super::counters::Counter>>,
}

impl Scraper {
    pub fn new(options: ServeOptions, queries: Vec<SavedQuery>) -> Self {
        Scraper {
            options,
            queries,
            turn: tokio::sync::Mutex::new(()),
            errors_total: AtomicU64::new(0),
            counters: Vec::new(),
        }
    }

    fn timed_out(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "the scrape took longer than --scrape-timeout {}",
            humantime::format_duration(self.options.scrape_timeout)
        )
    }

    /// Run one metric query, streaming its last statement's rows into its
    /// families; the text is added to `text`, the scrape's reservation in
    /// `engine`'s pool, as it grows (and given back if the query fails).
    async fn one(
        &self,
        engine: &Engine,
        q: &SavedQuery,
        source: crate::query::Result<SqlSource>,
        format: Format,
        deadline: Deadline,
        text: &MemoryReservation,
    ) -> anyhow::Result<(String, Written)> {
        let base = text.size();
        let result = self.families(engine, q, source, format, deadline, text, base).await;
        if result.is_err() {
            text.shrink(text.size().saturating_sub(base));
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn families(
        &self,
        engine: &Engine,
        q: &SavedQuery,
        source: crate::query::Result<SqlSource>,
        format: Format,
        deadline: Deadline,
        text: &MemoryReservation,
        base: usize,
    ) -> anyhow::Result<(String, Written)> {
        let decl = q.metric.as_ref().context("not a metric query")?;
        let mut stream = engine.stream(&source?)?;
        // Each statement with rows starts its own families; the last one's
        // are the query's (earlier statements set things up).
        let mut families: Option<anyhow::Result<Families>> = None;
        while let Some(event) =
            tokio::time::timeout_at(deadline, stream.next()).await.map_err(|_| self.timed_out())??
        {
            match event {
                Event::Start(schema) => {
                    text.try_resize(base)?;
                    families = Some(Families::new(decl, &schema, self.options.max_series, format));
                }
                Event::Batch(batch) => {
                    if let Some(Ok(f)) = &mut families {
                        f.add(&batch)?;
                        text.try_resize(base + f.held())
                            .context("the metric text needs more memory than --memory-limit allows")?;
                    }
                }
                Event::End => {}
            }
        }
        let families = families.context("the query returned no result")??;
        let mut out = String::new();
        let written = families.finish(&mut out);
        Ok((out, written))
    }
}

/// One scrape in `format`, done by `deadline`: the exposition, or why
/// there is none (its turn did not come in time).
pub async fn scrape(s: &Scraper, format: Format, deadline: Deadline) -> Result<String, String> {
    let started = Instant::now();
    let Ok(_turn) = tokio::time::timeout_at(deadline, s.turn.lock()).await else {
        return Err(format!("{} waiting for the scrape before it", s.timed_out()));
    };
    let mut out = String::new();
    // The server's own families, one line per query (or table) each,
    // written after the queries' families with their headers.
    let (mut durations, mut up, mut dropped, mut rows) = (String::new(), String::new(), String::new(), String::new());
    use std::fmt::Write;
    let limits = Limits { memory: s.options.memory, timeout: Some(s.options.scrape_timeout) };
    // Every scrape runs the same queries: a warning is logged on stderr
    // the first time this process sees it, not at every scrape.
    let session = Engine::with(&s.options.source, Policy::default(), limits)
        .map(|e| e.isolated(0).with_notices(crate::notice::Mode::PrintOnce));
    let sources: Vec<crate::query::Result<SqlSource>> = s.queries.iter().map(|q| q.source(&[])).collect();
    if let Ok(engine) = &session {
        let wanted: Vec<SqlSource> = sources.iter().filter_map(|s| s.as_ref().ok().cloned()).collect();
        match tokio::time::timeout_at(deadline, engine.pin_tables(&wanted)).await {
            Ok(Ok(tables)) => {
                for table in tables {
                    match table {
                        Ok(p) => {
                            let _ = writeln!(rows, "sockql_table_rows{{table=\"{}\"}} {}", p.table, p.rows);
                        }
                        Err(e) => crate::stderrln!("sockql serve: {}", error_line(&e)),
                    }
                }
            }
            Ok(Err(e)) => crate::stderrln!("sockql serve: cannot read the tables once: {}", error_line(&e)),
            Err(_) => crate::stderrln!("sockql serve: {}", s.timed_out()),
        }
    }
    // The exposition text, reserved in the scrape's pool as it grows.
    let text = session
        .as_ref()
        .ok()
        .map(|e| MemoryConsumer::new("scrape text").register(&e.context().runtime_env().memory_pool));
    for (q, source) in s.queries.iter().zip(sources) {
        let Some(decl) = q.metric.as_ref() else { continue };
        let t0 = Instant::now();
        let result = match (&session, &text) {
            (Ok(engine), Some(text)) => s.one(engine, q, source, format, deadline, text).await,
            (Err(e), _) => Err(anyhow::anyhow!("{e:#}")),
            _ => Err(anyhow::anyhow!("no memory pool for the scrape")),
        };
        let _ =
            writeln!(durations, "sockql_query_duration_seconds{{query=\"{}\"}} {}", q.name, t0.elapsed().as_secs_f64());
        let (answered, left_out) = match result {
            Ok((text, written)) => {
                out.push_str(&text);
                if written.dropped > 0 {
                    crate::notice::warn_once(
                        &format!("series-cap-{}", q.name),
                        format!(
                            "metric {}: {} series past --max-series {} were left out",
                            decl.name, written.dropped, s.options.max_series
                        ),
                    );
                }
                (1, written.dropped)
            }
            Err(e) => {
                s.errors_total.fetch_add(1, Ordering::Relaxed);
                crate::stderrln!("sockql serve: {}: {}", q.name, error_line(&e));
                (0, 0)
            }
        };
        let _ = writeln!(up, "sockql_query_up{{query=\"{}\"}} {answered}", q.name);
        let _ = writeln!(dropped, "sockql_series_dropped{{query=\"{}\"}} {left_out}", q.name);
    }
    // The counters' totals, held in the scrape's pool while written.
    let mut totals = String::new();
    super::counters::write(&s.counters, format, &mut totals);
    match text.as_ref().map(|t| t.try_grow(totals.len())) {
        Some(Ok(())) => out.push_str(&totals),
        _ => crate::stderrln!("sockql serve: the counters' text needs more memory than --memory-limit allows"),
    }
    for (family, help, lines) in [
        ("sockql_query_duration_seconds", "Time each metric query of this scrape took", durations),
        ("sockql_query_up", "1 if the metric query answered in this scrape, 0 if it failed (see sockql's stderr)", up),
        ("sockql_series_dropped", "Series of the query left out past --max-series in this scrape", dropped),
        ("sockql_table_rows", "Rows of each live table read in this scrape, once for all its metric queries", rows),
    ] {
        let _ = write!(out, "# HELP {family} {help}\n# TYPE {family} gauge\n{lines}");
    }
    let total = s.errors_total.load(Ordering::Relaxed);
    let (family, sample) = exposition::counter_names("sockql_scrape_errors", format);
    let _ = writeln!(out, "# HELP {family} Metric queries that failed, since the server started\n# TYPE {family} counter\n{sample} {total}");
    let _ = writeln!(out, "# HELP sockql_scrape_duration_seconds Time this scrape took\n# TYPE sockql_scrape_duration_seconds gauge\nsockql_scrape_duration_seconds {}", started.elapsed().as_secs_f64());
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    Ok(out)
}
