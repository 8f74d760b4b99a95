//! Counters over event streams: a metric report whose header says
//! `counter` and whose query reads a stream table (`process_events`,
//! `packet_drops`, ...) cannot be answered at a scrape, as a stream has no
//! state to read: its events must be heard as they happen. `serve` listens
//! to each such stream from start-up, all the time, and runs the report
//! over what came in every [`WINDOW`]; each window's `value` per label set
//! is added to running totals (`counter_totals.rs`), which every scrape
//! exports as Prometheus counters.
//!
//! No event falls between two windows: the listener is one statement that
//! never ends (the report's columns and the filters the stream applies
//! itself, in the kernel where it can: query/stream_reads.rs), whose rows
//! are kept until the next window takes them; the window runs the report
//! as written over those rows (the stream's name stands for them in a
//! session of the window's own). Events are missed only while the
//! listener is down (it failed and waits to retry: `sockql_stream_up` is
//! 0) and when the kernel's own queue overflows (the stream's notices say
//! so). Restarting `serve` starts the totals from zero again, as any
//! counter reset, which Prometheus's rate() and increase() handle.
//!
//! Bounds: the rows waiting for a window are held in the listener's
//! memory pool (a quarter of --memory-limit, or of the client default);
//! rows that arrive while it is full are not counted, and said
//! (`sockql_stream_events_lost_total`). A window is a query like a
//! scrape's, under --memory-limit and --scrape-timeout. Totals keep at most
//! --max-series label sets and a quarter of the memory limit of label
//! text (`counter_totals.rs`). Listener and windows run niced, on threads
//! of their own (as other users' psql queries do), so a scrape or root's
//! psql always gets the CPU first. A listener that fails (no permission, a
//! kernel without the tracepoint) says so in one line, retries with a
//! backoff from 1 s to a minute, and never stops the server.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};

use super::counter_totals::Totals;
use super::exposition::{self, Format};
use super::ServeOptions;
use crate::query::engine::{Engine, Event, Limits, Policy, SqlSource};
use crate::query::errors::error_line;
use crate::query::saved::{MetricKind, SavedQuery};
use crate::query::stream_reads::StreamRead;
use crate::tables::SourceOptions;

/// How often a counter's report runs over the events heard since its last
/// run: how far behind the kernel a scrape may be.
pub const WINDOW: Duration = Duration::from_secs(1);
/// The first wait before a failed listener is started again; doubled at
/// each failure in a row up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A listener that ran this long before failing starts its backoff over.
const HEALTHY: Duration = Duration::from_secs(60);

/// One counter report served from its stream.
pub struct Counter {
    pub query: SavedQuery,
    read: Option<StreamRead>,
    /// Why it cannot be served from a stream at all (it reads several).
    refused: Option<String>,
    totals: Mutex<Totals>,
    up: AtomicBool,
    lost: AtomicU64,
    /// Times the kernel dropped events for the listener (its `overruns`).
    overruns: AtomicU64,
    failures: AtomicU64,
    /// The listening session's streams, to end them when serve stops.
    listening: Mutex<Option<Arc<crate::tables::streams::Streams>>>,
}

/// Every counter over a stream, and their threads.
#[derive(Default)]
pub struct Counters {
    pub list: Vec<Arc<Counter>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The memory the background work of one counter may use for each of its
/// parts (waiting rows, label text): a quarter of what a query may.
fn part_memory(options: &ServeOptions) -> usize {
    options.memory.unwrap_or(super::CLIENT_MEMORY) / 4
}

/// Split the metric reports into those a scrape runs and the counters over
/// event streams, which run in the background ([`start`]).
pub async fn split(
    queries: Vec<SavedQuery>,
    options: &ServeOptions,
) -> anyhow::Result<(Vec<SavedQuery>, Vec<Arc<Counter>>)> {
    let engine = Engine::with(&options.source, Policy::default(), Limits::default())?;
    let (mut scraped, mut counters) = (Vec::new(), Vec::new());
    for q in queries {
        let Some(decl) = q.metric.clone().filter(|d| d.kind == MetricKind::Counter) else {
            scraped.push(q);
            continue;
        };
        let reads = match q.source(&[]) {
            Ok(source) => engine.stream_reads(&source).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let (read, refused) = match reads.len() {
            0 => {
                scraped.push(q);
                continue;
            }
            1 => (reads.into_iter().next(), None),
            _ => (
                None,
                Some(format!(
                    "{}: a counter reads one event stream; this one reads {}",
                    q.name,
                    reads.iter().map(|r| r.table.as_str()).collect::<Vec<_>>().join(", ")
                )),
            ),
        };
        counters.push(Arc::new(Counter {
            totals: Mutex::new(Totals::new(decl, options.max_series, part_memory(options))),
            query: q,
            read,
            refused,
            up: AtomicBool::new(false),
            lost: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            listening: Mutex::new(None),
        }));
    }
    Ok((scraped, counters))
}

/// Start listening for every counter, each on a thread of its own.
pub fn start(list: Vec<Arc<Counter>>, options: &ServeOptions) -> anyhow::Result<Counters> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let handle = tokio::runtime::Handle::current();
    for counter in &list {
        if let Some(why) = &counter.refused {
            crate::stderrln!("sockql serve: {why}: not served");
            continue;
        }
        let (counter, options, stop, handle) = (counter.clone(), options.clone(), stop.clone(), handle.clone());
        threads.push(
            std::thread::Builder::new()
                .name("sockql-counter".into())
                .spawn(move || handle.block_on(keep_listening(&counter, &options, &stop)))?,
        );
    }
    Ok(Counters { list, stop, threads })
}

impl Counters {
    /// End every listener (its stream's bound reached: what it attached is
    /// let go on its way out) and wait for them, up to a few seconds.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for counter in &self.list {
            if let Ok(Some(streams)) = counter.listening.lock().map(|l| l.clone()) {
                streams.end_running();
            }
        }
        let until = Instant::now() + Duration::from_secs(3);
        for thread in self.threads {
            while !thread.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Listen, and after a failure listen again after a backoff, until serve stops.
async fn keep_listening(counter: &Counter, options: &ServeOptions, stop: &AtomicBool) {
    let mut backoff = FIRST_BACKOFF;
    let mut said: Option<String> = None;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let result = listen(counter, options, stop).await;
        counter.up.store(false, Ordering::SeqCst);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let why = match result {
            Ok(()) => "its event stream ended".to_string(),
            Err(e) => error_line(&e),
        };
        counter.failures.fetch_add(1, Ordering::Relaxed);
        if started.elapsed() >= HEALTHY {
            backoff = FIRST_BACKOFF;
        }
        // One line per new reason, not one per retry.
        if said.as_deref() != Some(why.as_str()) {
            crate::stderrln!(
                "sockql serve: counter {}: {why}; retrying (every {} at most)",
                counter.query.name,
                humantime::format_duration(MAX_BACKOFF)
            );
            said = Some(why);
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The rows heard since the last window, held in the listener's pool.
struct Waiting {
    schema: Option<SchemaRef>,
    batches: Vec<RecordBatch>,
    reservation: MemoryReservation,
}

/// One listener's life: its stream, read all the time, and a window every
/// [`WINDOW`] over what it heard. Returns when the stream ends or fails.
async fn listen(counter: &Counter, options: &ServeOptions, stop: &AtomicBool) -> anyhow::Result<()> {
    let read = counter.read.as_ref().ok_or_else(|| anyhow::anyhow!("no stream to read"))?;
    let nice = crate::query::priority::OTHER_USERS;
    let memory = part_memory(options);
    // The stream runs until serve stops it (no --capture-for bound).
    let listening = SourceOptions { stream_for: None, ..options.source.clone() };
    let listener = Engine::with(&listening, Policy::default(), Limits { memory: Some(memory), timeout: None })?
        .isolated(nice)
        .with_notices(crate::notice::Mode::PrintOnce);
    let limits =
        Limits { memory: Some(options.memory.unwrap_or(super::CLIENT_MEMORY)), timeout: Some(options.scrape_timeout) };
    let windows = Engine::with(&options.source, Policy::default(), limits)?
        .isolated(nice)
        .with_notices(crate::notice::Mode::PrintOnce);
    if let Ok(mut l) = counter.listening.lock() {
        *l = Some(listener.streams().clone());
    }
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let reservation = MemoryConsumer::new("counter rows").register(&listener.context().runtime_env().memory_pool);
    let waiting = RefCell::new(Waiting { schema: None, batches: Vec::new(), reservation });
    let mut stream = listener.stream(&SqlSource::inline(read.sql.clone()))?;
    let hear = async {
        // The listener's overruns so far: each run counts from zero.
        let mut overruns = 0;
        while let Some(event) = stream.next().await? {
            let mut w = waiting.borrow_mut();
            match event {
                Event::Start(schema) => {
                    w.schema = Some(schema);
                    counter.up.store(true, Ordering::SeqCst);
                }
                Event::Batch(batch) => {
                    if read.overruns {
                        let now = most_overruns(&batch);
                        if now > overruns {
                            counter.overruns.fetch_add(now - overruns, Ordering::Relaxed);
                            overruns = now;
                        }
                    }
                    if w.reservation.try_grow(batch.get_array_memory_size()).is_ok() {
                        w.batches.push(batch);
                    } else {
                        counter.lost.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                        crate::notice::warn_once(
                            &format!("counter-lost-{}", counter.query.name),
                            format!(
                                "counter {}: events arrived faster than its windows took them; those past the memory bound were not counted (sockql_stream_events_lost_total)",
                                counter.query.name
                            ),
                        );
                    }
                }
                Event::End => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let tick = every_window(counter, read, &windows, &waiting);
    let ended = tokio::select! {
        r = hear => r,
        r = tick => r,
    };
    // What was heard before the end is counted too.
    let last = window(counter, read, &windows, &waiting).await;
    ended.and(last)
}

/// A window every [`WINDOW`], until one fails.
async fn every_window(
    counter: &Counter,
    read: &StreamRead,
    engine: &Engine,
    waiting: &RefCell<Waiting>,
) -> anyhow::Result<()> {
    loop {
        tokio::time::sleep(WINDOW).await;
        window(counter, read, engine, waiting).await?;
    }
}

/// The largest `overruns` of a batch of the listener's rows (each row says
/// how many times its listener lost events so far).
fn most_overruns(batch: &RecordBatch) -> u64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::UInt64Type;
    batch
        .column_by_name(crate::query::stream_reads::OVERRUNS)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .and_then(datafusion::arrow::compute::max)
        .unwrap_or(0)
}

/// Run the report over the rows heard since the last window, and add its
/// result to the totals. The stream's name stands for those rows in the
/// window's session while it runs.
async fn window(
    counter: &Counter,
    read: &StreamRead,
    engine: &Engine,
    waiting: &RefCell<Waiting>,
) -> anyhow::Result<()> {
    let (schema, batches) = {
        let mut w = waiting.borrow_mut();
        let Some(schema) = w.schema.clone() else { return Ok(()) };
        (schema, std::mem::take(&mut w.batches))
    };
    let known = counter.totals.lock().map(|t| t.has_shape()).unwrap_or(false);
    // An empty window adds nothing; the first one runs anyway, to learn
    // the families to declare.
    if batches.is_empty() && known {
        return Ok(());
    }
    let held: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    let result = run_window(counter, read, engine, schema, batches).await;
    waiting.borrow().reservation.shrink(held.min(waiting.borrow().reservation.size()));
    result
}

async fn run_window(
    counter: &Counter,
    read: &StreamRead,
    engine: &Engine,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> anyhow::Result<()> {
    let ctx = engine.context();
    ctx.deregister_table(read.table.as_str())?;
    ctx.register_table(read.table.as_str(), Arc::new(MemTable::try_new(schema.clone(), vec![batches])?))?;
    let ran = async {
        let mut stream = engine.stream(&counter.query.source(&[])?)?;
        let mut last_schema = None;
        let mut rows = Vec::new();
        // Only the last statement's rows count (earlier ones set things up).
        while let Some(event) = stream.next().await? {
            match event {
                Event::Start(s) => {
                    last_schema = Some(s);
                    rows.clear();
                }
                Event::Batch(b) => rows.push(b),
                Event::End => {}
            }
        }
        let schema = last_schema.ok_or_else(|| anyhow::anyhow!("the query returned no result"))?;
        let mut totals = counter.totals.lock().map_err(|_| anyhow::anyhow!("counter totals poisoned"))?;
        totals.start(&schema)?;
        for batch in &rows {
            totals.add(batch)?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // The rows are let go now, not at the next window.
    ctx.deregister_table(read.table.as_str())?;
    ctx.register_table(read.table.as_str(), Arc::new(MemTable::try_new(schema, vec![Vec::new()])?))?;
    ran
}

/// The counters' families and the server's own about them, for a scrape.
pub fn write(list: &[Arc<Counter>], format: Format, out: &mut String) {
    use std::fmt::Write;
    if list.is_empty() {
        return;
    }
    let (mut up, mut folded, mut lost, mut failures) = (String::new(), String::new(), String::new(), String::new());
    let mut overruns = String::new();
    let (overruns_family, overruns_sample) = exposition::counter_names("sockql_stream_overruns", format);
    let names = |name: &str| exposition::counter_names(name, format);
    let (folded_family, folded_sample) = names("sockql_stream_series_dropped");
    let (lost_family, lost_sample) = names("sockql_stream_events_lost");
    let (failures_family, failures_sample) = names("sockql_stream_restarts");
    for c in list {
        let name = &c.query.name;
        if let Ok(totals) = c.totals.lock() {
            totals.write(format, out);
            let _ = writeln!(folded, "{folded_sample}{{query=\"{name}\"}} {}", totals.folded());
        }
        let _ = writeln!(up, "sockql_stream_up{{query=\"{name}\"}} {}", u8::from(c.up.load(Ordering::SeqCst)));
        let _ = writeln!(lost, "{lost_sample}{{query=\"{name}\"}} {}", c.lost.load(Ordering::Relaxed));
        let _ = writeln!(overruns, "{overruns_sample}{{query=\"{name}\"}} {}", c.overruns.load(Ordering::Relaxed));
        let _ = writeln!(failures, "{failures_sample}{{query=\"{name}\"}} {}", c.failures.load(Ordering::Relaxed));
    }
    let _ = write!(
        out,
        "# HELP sockql_stream_up 1 while the counter report's event stream is listened to, 0 while it failed and waits to retry (events then are not counted)\n# TYPE sockql_stream_up gauge\n{up}\
         # HELP {folded_family} Label sets of the counter folded into its other series past --max-series (or its label memory), once per window they appeared in\n# TYPE {folded_family} counter\n{folded}\
         # HELP {lost_family} Events the counter did not count: they arrived while the rows waiting for its next window held all the memory allowed\n# TYPE {lost_family} counter\n{lost}\
         # HELP {overruns_family} Times the kernel dropped events for the counter's listener before sockql read them (its queue was full, ENOBUFS: the stream's overruns column); those events were not counted\n# TYPE {overruns_family} counter\n{overruns}\
         # HELP {failures_family} Times the counter's event stream failed or ended and was started again\n# TYPE {failures_family} counter\n{failures}"
    );
}
