//! `sockql serve`: the host's socket state for monitoring systems.
//!
//! `GET /metrics` runs every saved query with a `-- metric:` header and
//! writes the results as Prometheus metric families (`exposition.rs`);
//! `GET /healthz` answers `ok`. A scrape is bounded by `--scrape-timeout`,
//! and its own duration, errors and dropped series are metrics too.
//! Scrapes run one at a time: a slow one cannot pile up others behind it
//! on a two-core host.

pub mod exposition;
pub mod pg;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

use crate::query::engine::{Engine, Limits, Policy, QueryRunner, SqlSource};
use crate::query::errors::error_line;
use crate::query::saved::{self, SavedQuery};
use crate::tables::SourceOptions;
use exposition::{write_families, Format};

/// What the server was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub scrape_timeout: Duration,
    /// Series per family; past it the rest are dropped and counted.
    pub max_series: usize,
    /// `--metrics`: serve only these metric reports (empty: all).
    pub only: Vec<String>,
    pub source: SourceOptions,
    pub memory: Option<usize>,
    /// The PostgreSQL endpoint, if asked for.
    pub pg: Option<pg::PgOptions>,
    /// Bounds of each client query (PostgreSQL endpoint).
    pub client_limits: Limits,
}

/// A client query's memory when --memory-limit is not given: a server
/// answers many clients, so none is unbounded.
pub const CLIENT_MEMORY: usize = 256 << 20;
/// HTTP connections open at once (Prometheus keeps one per target).
const HTTP_CONNECTIONS: usize = 64;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A client query's time when --timeout is not given.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The metric queries, found once at start (a changed file is read again
/// on restart, as Prometheus rules are).
fn metric_queries(only: &[String]) -> anyhow::Result<Vec<SavedQuery>> {
    let mut out = Vec::new();
    for q in saved::all() {
        let q = q?;
        if q.metric.is_some() && (only.is_empty() || only.contains(&q.name)) {
            out.push(q);
        }
    }
    if let Some(missing) = only.iter().find(|name| !out.iter().any(|q| &q.name == *name)) {
        let known: Vec<String> = saved::all().into_iter().filter_map(|q| q.ok()).filter(|q| q.metric.is_some()).map(|q| q.name).collect();
        anyhow::bail!("--metrics: no metric report named '{missing}'; they are: {}", known.join(", "));
    }
    Ok(out)
}

struct State {
    options: ServeOptions,
    queries: Vec<SavedQuery>,
    /// One scrape at a time.
    scraping: tokio::sync::Mutex<()>,
    errors_total: std::sync::atomic::AtomicU64,
}

/// One scrape, within the scrape timeout: one session for all metric
/// queries, in which each live table they need is read once (see
/// [`crate::query::pinned`]); a failed query is counted, logged and left
/// out, the others still answer.
async fn scrape(state: &State, format: Format) -> String {
    let _one = state.scraping.lock().await;
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + state.options.scrape_timeout);
    let mut out = String::new();
    // The server's own families, one line per query (or table) each,
    // written after the queries' families with their headers.
    let (mut durations, mut up, mut dropped, mut rows) = (String::new(), String::new(), String::new(), String::new());
    use std::fmt::Write;
    let timed_out = || anyhow::anyhow!("the scrape took longer than --scrape-timeout {}", humantime::format_duration(state.options.scrape_timeout));
    let limits = Limits { memory: state.options.memory, timeout: Some(state.options.scrape_timeout) };
    let session = Engine::with(&state.options.source, Policy::default(), limits);
    let sources: Vec<anyhow::Result<SqlSource>> = state.queries.iter().map(|q| q.source(&[])).collect();
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
            Err(_) => crate::stderrln!("sockql serve: {}", timed_out()),
        }
    }
    for (q, source) in state.queries.iter().zip(sources) {
        let Some(decl) = q.metric.as_ref() else { continue };
        let t0 = Instant::now();
        let result = async {
            let engine = session.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            let mut results = tokio::time::timeout_at(deadline, engine.run(&source?)).await.map_err(|_| timed_out())??;
            let last = results.pop().context("the query returned no result")?;
            let mut text = String::new();
            let written = write_families(decl, &last.schema, &last.batches, state.options.max_series, format, &mut text)?;
            anyhow::Ok((text, written))
        }
        .await;
        let _ = writeln!(durations, "sockql_query_duration_seconds{{query=\"{}\"}} {}", q.name, t0.elapsed().as_secs_f64());
        let (answered, left_out) = match result {
            Ok((text, written)) => {
                out.push_str(&text);
                if written.dropped > 0 {
                    crate::notice::warn_once(
                        &format!("series-cap-{}", q.name),
                        format!("metric {}: {} series past --max-series {} were left out", decl.name, written.dropped, state.options.max_series),
                    );
                }
                (1, written.dropped)
            }
            Err(e) => {
                state.errors_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::stderrln!("sockql serve: {}: {}", q.name, error_line(&e));
                (0, 0)
            }
        };
        let _ = writeln!(up, "sockql_query_up{{query=\"{}\"}} {answered}", q.name);
        let _ = writeln!(dropped, "sockql_series_dropped{{query=\"{}\"}} {left_out}", q.name);
    }
    for (family, help, lines) in [
        ("sockql_query_duration_seconds", "Time each metric query of this scrape took", durations),
        ("sockql_query_up", "1 if the metric query answered in this scrape, 0 if it failed (see sockql's stderr)", up),
        ("sockql_series_dropped", "Series of the query left out past --max-series in this scrape", dropped),
        ("sockql_table_rows", "Rows of each live table read in this scrape, once for all its metric queries", rows),
    ] {
        let _ = write!(out, "# HELP {family} {help}\n# TYPE {family} gauge\n{lines}");
    }
    let total = state.errors_total.load(std::sync::atomic::Ordering::Relaxed);
    let (family, sample) = exposition::counter_names("sockql_scrape_errors", format);
    let _ = writeln!(out, "# HELP {family} Metric queries that failed, since the server started\n# TYPE {family} counter\n{sample} {total}");
    let _ = writeln!(out, "# HELP sockql_scrape_duration_seconds Time this scrape took\n# TYPE sockql_scrape_duration_seconds gauge\nsockql_scrape_duration_seconds {}", started.elapsed().as_secs_f64());
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

async fn handle(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let reply = |status: StatusCode, ty: &str, body: String| {
        Response::builder().status(status).header("content-type", ty).body(Full::new(Bytes::from(body))).expect("a valid response")
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let format = Format::from_accept(req.headers().get("accept").and_then(|v| v.to_str().ok()));
            reply(StatusCode::OK, format.content_type(), scrape(&state, format).await)
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, _) => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics or /healthz\n".into()),
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n".into()),
    })
}

/// An accepted connection; a failed accept (out of descriptors, say) is
/// said once and retried after a pause, so the endpoint outlives it.
pub(crate) async fn accepted<T>(result: std::io::Result<T>) -> Option<T> {
    match result {
        Ok(stream) => Some(stream),
        Err(e) => {
            crate::notice::warn_once("serve-accept", format!("sockql serve: accepting a connection failed ({e}); retrying"));
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Stops a spawned task when the server returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve until Ctrl-C.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let queries = metric_queries(&options.only)?;
    // The PostgreSQL endpoint is checked and bound first: a refused option
    // (TCP without a password, off loopback without TLS) stops the server
    // before anything listens.
    let pg_task = match &options.pg {
        None => None,
        Some(pg_options) => Some(pg::start(pg_options, options.source.clone(), options.client_limits).await?),
    };
    let _pg_task = pg_task.map(AbortOnDrop);
    let listener = tokio::net::TcpListener::bind(options.listen).await.with_context(|| format!("cannot listen on {}", options.listen))?;
    crate::stderrln!(
        "sockql serve: http://{}/metrics ({} metric queries: {})",
        listener.local_addr()?,
        queries.len(),
        queries.iter().map(|q| q.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let state = Arc::new(State { options, queries, scraping: tokio::sync::Mutex::new(()), errors_total: Default::default() });
    let open = Arc::new(tokio::sync::Semaphore::new(HTTP_CONNECTIONS));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            loop {
                let stream = tokio::select! {
                    result = listener.accept() => accepted(result.map(|(s, _)| s)).await,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    // systemd stops a service with SIGTERM: end as on Ctrl-C
                    // (the PostgreSQL socket file is removed on the way out).
                    _ = terminate.recv() => return Ok(()),
                };
                let Some(stream) = stream else { continue };
                // Past the cap a connection is closed at once: idle or slow
                // clients cannot pile up file descriptors and memory.
                let Ok(slot) = open.clone().try_acquire_owned() else { continue };
                let state = state.clone();
                // Queries are not Send (the engine's runner): connections
                // are served on this thread, each its own task.
                tokio::task::spawn_local(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    // A client that sends its request head slowly (or never)
                    // is closed after HEADER_TIMEOUT.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(io, service)
                        .await;
                    drop(slot);
                });
            }
        })
        .await
}
