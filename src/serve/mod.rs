//! `sockql serve`: the host's socket state for monitoring systems.
//!
//! `GET /metrics` runs every saved query with a `-- metric:` header and
//! writes the results as Prometheus metric families (`exposition.rs`);
//! `GET /healthz` answers `ok`. A scrape is bounded by `--scrape-timeout`,
//! and its own duration, errors and dropped series are metrics too.
//! Scrapes run one at a time, and requests that arrive while one runs
//! share it (`scrape.rs`): a slow one cannot pile up others behind it on
//! a two-core host. Connections are served on one thread that never runs
//! a query, so /healthz answers at once whatever scrapes do; what one
//! client or local user can hold of them is capped (`connections.rs`).

mod conn_io;
mod connections;
mod counter_totals;
mod counters;
pub mod exposition;
pub mod flight;
mod peer;
pub mod pg;
mod scrape;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::FutureExt;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

use crate::query::engine::Limits;
use crate::query::saved::{self, SavedQuery};
use crate::tables::SourceOptions;
use conn_io::ConnIo;
use connections::{Admitted, Busy, Conn, Connections};
use exposition::Format;
use scrape::Scraper;

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
    /// The Arrow Flight SQL endpoint, if asked for.
    pub flight: Option<flight::FlightOptions>,
}

/// A client query's memory when --memory-limit is not given: a server
/// answers many clients, so none is unbounded.
pub const CLIENT_MEMORY: usize = 256 << 20;
/// Time a client has to send its request head, once it has begun it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Of a scrape's deadline, the part left for writing its response.
const WRITE_MARGIN: Duration = Duration::from_millis(300);
/// Time a connection may sit between requests (or before its first)
/// without sending a byte: a keep-alive connection nobody uses is closed.
const IDLE: Duration = Duration::from_secs(5);

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
        let known: Vec<String> =
            saved::all().into_iter().filter_map(|q| q.ok()).filter(|q| q.metric.is_some()).map(|q| q.name).collect();
        anyhow::bail!("--metrics: no metric report named '{missing}'; they are: {}", known.join(", "));
    }
    Ok(out)
}

/// What the connection thread keeps: the scrapes in flight, shared by
/// every request of the same format that arrives while one runs.
struct State {
    scraper: Arc<Scraper>,
    in_flight: RefCell<HashMap<Format, InFlight>>,
}

type InFlight = futures::future::Shared<futures::future::LocalBoxFuture<'static, Result<Bytes, String>>>;

/// The exposition for a request that arrived with `deadline` ahead: the
/// scrape in flight in this format if there is one, else a new one, run
/// on a blocking thread (its CPU work never holds up this thread, where
/// /healthz is answered). Scrapes queue for their turn with their
/// deadline running, so a request never waits past its own.
async fn metrics(state: &State, format: Format, deadline: tokio::time::Instant) -> Result<Bytes, String> {
    let shared = {
        let mut in_flight = state.in_flight.borrow_mut();
        match in_flight.get(&format) {
            Some(running) if running.peek().is_none() => running.clone(),
            _ => {
                let (scraper, handle) = (state.scraper.clone(), tokio::runtime::Handle::current());
                // The queries stop a little before the request's deadline,
                // so what finished in time is written by it.
                let margin = (scraper.options.scrape_timeout / 10).min(WRITE_MARGIN);
                let task = tokio::task::spawn_blocking(move || {
                    handle.block_on(scrape::scrape(&scraper, format, deadline - margin))
                });
                let shared = async move {
                    match task.await {
                        Ok(result) => result.map(Bytes::from),
                        Err(_) => Err("the scrape failed".to_string()),
                    }
                }
                .boxed_local()
                .shared();
                in_flight.insert(format, shared.clone());
                shared
            }
        }
    };
    let timeout = state.scraper.options.scrape_timeout;
    tokio::time::timeout_at(deadline, shared).await.unwrap_or_else(|_| {
        Err(format!("the scrape took longer than --scrape-timeout {}", humantime::format_duration(timeout)))
    })
}

async fn handle(
    state: Rc<State>,
    conn: Rc<Conn>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let _busy = Busy::new(&conn);
    let arrived = tokio::time::Instant::now();
    let reply = |status: StatusCode, ty: &str, body: Bytes| {
        Response::builder()
            .status(status)
            .header("content-type", ty)
            .body(Full::new(body))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    // Any response is written within a bound; a scrape's within its own
    // deadline, which started when the request arrived.
    conn.write_deadline.set(Some(arrived + HEADER_TIMEOUT));
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let format = Format::from_accept(req.headers().get("accept").and_then(|v| v.to_str().ok()));
            let deadline = arrived + state.scraper.options.scrape_timeout;
            conn.write_deadline.set(Some(deadline));
            match metrics(&state, format, deadline).await {
                Ok(body) => reply(StatusCode::OK, format.content_type(), body),
                Err(why) => {
                    crate::stderrln!("sockql serve: {why}");
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", Bytes::from(format!("{why}\n")))
                }
            }
        }
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        (&Method::GET, _) => {
            reply(StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found: try /metrics or /healthz\n"))
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", Bytes::from_static(b"only GET\n")),
    })
}

/// Serve one HTTP connection until it ends, is closed to make room, or
/// sits idle between requests past [`IDLE`].
async fn connection(state: Rc<State>, stream: tokio::net::TcpStream, admitted: Admitted) {
    let conn = admitted.conn.clone();
    let io = hyper_util::rt::TokioIo::new(ConnIo::new(stream, conn.clone()));
    let for_service = conn.clone();
    let service = hyper::service::service_fn(move |req| handle(state.clone(), for_service.clone(), req));
    // A client that sends its request head slowly (or never finishes it)
    // is closed after HEADER_TIMEOUT.
    let http = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(http);
    loop {
        let wake = conn.idle_since().unwrap_or_else(tokio::time::Instant::now) + IDLE;
        tokio::select! {
            _ = &mut http => break,
            _ = conn.evicted.notified() => break,
            _ = tokio::time::sleep_until(wake) => {
                if conn.idle_since().is_some_and(|since| since.elapsed() >= IDLE) {
                    break;
                }
            }
        }
    }
    drop(admitted);
}

/// An accepted connection; a failed accept (out of descriptors, say) is
/// said once and retried after a pause, so the endpoint outlives it.
pub(crate) async fn accepted<T>(result: std::io::Result<T>) -> Option<T> {
    match result {
        Ok(stream) => Some(stream),
        Err(e) => {
            crate::notice::warn_once(
                "serve-accept",
                format!("sockql serve: accepting a connection failed ({e}); retrying"),
            );
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
    // Counter reports over event streams listen in the background from
    // now on; the rest run at each scrape (counters.rs).
    let (queries, counter_list) = counters::split(queries, &options).await?;
    // The PostgreSQL endpoint is checked and bound first: a refused option
    // (TCP without a password, off loopback without TLS) stops the server
    // before anything listens.
    // Flight and PostgreSQL clients share --pg-max-queries' slots.
    let max_queries = options.pg.as_ref().map(|p| p.max_queries).or(options.flight.as_ref().map(|f| f.max_queries));
    let slots = flight::Slots::new(max_queries.unwrap_or(1));
    let pg_task = match &options.pg {
        None => None,
        Some(pg_options) => {
            let shared = pg::PgOptions { slots: Some(slots.slots.clone()), ..pg_options.clone() };
            Some(pg::start(&shared, options.source.clone(), options.client_limits).await?)
        }
    };
    let _pg_task = pg_task.map(AbortOnDrop);
    let flight_task = match &options.flight {
        None => None,
        Some(f) => Some(flight::start(f, options.source.clone(), options.client_limits, slots).await?),
    };
    let _flight_task = flight_task.map(AbortOnDrop);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    crate::stderrln!(
        "sockql serve: http://{}/metrics ({} metric queries: {})",
        listener.local_addr()?,
        queries.len() + counter_list.len(),
        queries
            .iter()
            .chain(counter_list.iter().map(|c| &c.query))
            .map(|q| q.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !counter_list.is_empty() {
        crate::stderrln!(
            "sockql serve: counters over event streams, listened to from now on ({} each; totals restart from zero with serve): {}",
            humantime::format_duration(counters::WINDOW),
            counter_list.iter().map(|c| c.query.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let background = counters::start(counter_list.clone(), &options)?;
    let mut scraper = Scraper::new(options, queries);
    scraper.counters = counter_list;
    let state = Rc::new(State { scraper: Arc::new(scraper), in_flight: Default::default() });
    let open = Rc::new(Connections::default());
    let mut identify = peer::Identify::default();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot watch for SIGTERM")?;
    let local = tokio::task::LocalSet::new();
    let served: anyhow::Result<()> = local
        .run_until(async move {
            loop {
                let accepted = tokio::select! {
                    result = listener.accept() => accepted(result).await,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    // systemd stops a service with SIGTERM: end as on Ctrl-C
                    // (the PostgreSQL socket file is removed on the way out).
                    _ = terminate.recv() => return Ok(()),
                };
                let Some((stream, from)) = accepted else { continue };
                let Ok(to) = stream.local_addr() else { continue };
                // Always admitted: at a cap another connection of the peer
                // holding most is closed instead (see connections.rs).
                let admitted = open.admit(identify.peer(to, from));
                // Queries are not Send (the engine's runner): connections
                // are served on this thread, each its own task.
                tokio::task::spawn_local(connection(state.clone(), stream, admitted));
            }
        })
        .await;
    // The listeners end their streams, letting go what they attached.
    tokio::task::spawn_blocking(move || background.stop()).await.ok();
    served
}
