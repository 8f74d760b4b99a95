//! The command line: arguments, where the SQL comes from, and printing.
//! [`run`] is one match over the commands, each arm one function; the
//! flags were turned into decisions once before it ([`hi_args::HiArgs`]).

pub mod args;
pub mod capture;
pub mod complete;
pub mod container_scope;
pub mod fixtures;
pub mod fleet;
pub mod hi_args;
pub mod history_file;
pub mod meta;
pub mod reference;
pub mod repl;
pub mod watch;

use std::io::{IsTerminal, Write};
use std::path::Path;

use crate::output;
use crate::query::engine::{Engine, QueryRunner, SqlSource};
use crate::query::{catalog, saved};
use args::{Args, Command};
use hi_args::HiArgs;

pub use crate::query::errors::error_line;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let hi = HiArgs::new(&args)?;
    match &args.command {
        None if args.flags.fleet.hosts.is_some() => {
            fleet::query(&hi, &args.flags.fleet, sql_source(&hi, args.query.as_deref(), args.file.as_deref())?).await
        }
        Some(Command::Run { name: Some(name), flags, .. }) if flags.fleet.hosts.is_some() => {
            fleet::report(&hi, &flags.fleet, name).await
        }
        None => query(&hi, sql_source(&hi, args.query.as_deref(), args.file.as_deref())?).await,
        Some(Command::Run { name: None, .. }) => print_batch(&hi, saved::list_batch()),
        Some(Command::Run { name: Some(name), .. }) => query(&hi, Some(saved::find(name)?.source(&hi.params)?)).await,
        Some(Command::Record { events: true, out, every, .. }) => record_events(&hi, out, *every).await,
        Some(Command::Record { out, every, duration, samples, tables, query, retention, .. }) => {
            let plan = Recording { every: *every, duration: *duration, samples: *samples, retention: *retention };
            record(&hi, out, tables, query.as_deref(), plan).await
        }
        Some(Command::Serve { listen, scrape_timeout, max_series, metrics, pg, .. }) => {
            serve(hi, *listen, *scrape_timeout, *max_series, metrics, pg).await
        }
        Some(Command::Tables { .. }) => print_batch(&hi, catalog::tables_batch(&session(&hi).await?.listing().await)),
        Some(Command::Schema { table, .. }) => {
            print_batch(&hi, catalog::describe_batch(&session(&hi).await?.listing().await, table)?)
        }
        Some(Command::Completions { shell }) => completions(*shell),
        Some(Command::Man) => man(),
        Some(Command::Reference) => reference(),
        Some(Command::Capture { out, filter, .. }) => capture_to(&hi, filter.as_deref(), out).await,
        Some(Command::NetlinkCapture { source, file, .. }) => netlink_capture(&hi, *source, file),
    }
}

/// Where the SQL to run comes from: the argument, --file, or standard
/// input; `None` means start the REPL.
fn sql_source(hi: &HiArgs, text: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<SqlSource>> {
    let inline = |text: String| {
        let params = hi.params.iter().map(|(k, v)| (k.clone(), saved::param_value(v))).collect();
        SqlSource { text, origin: None, params, empty_note: None }
    };
    if let Some(q) = text {
        return Ok(Some(inline(q.to_string())));
    }
    if let Some(path) = file {
        return Ok(Some(saved::file_source(path, &hi.params)?));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let sql = crate::query::files::read_bounded(stdin.lock(), "standard input")?;
    Ok(Some(inline(sql)))
}

/// The session the command line's statements run in, with --history's
/// tables registered.
async fn session(hi: &HiArgs) -> anyhow::Result<Engine> {
    let engine = Engine::with(&hi.source, hi.policy, hi.limits)?;
    if let Some(location) = &hi.history {
        let store = crate::history::store::HistoryStore::open(location, false)?;
        crate::history::register::register(engine.context(), store, hi.limits).await?;
    }
    Ok(engine)
}

/// Run SQL (the query form, `run NAME`): once, every --watch interval,
/// or, with no SQL on a terminal, the shell.
async fn query(hi: &HiArgs, sql: Option<SqlSource>) -> anyhow::Result<()> {
    let engine = session(hi).await?;
    let Some(sql) = sql else {
        return repl::Repl::new(&engine, hi.output, hi.source.all_netns.clone(), engine.streams().clone())
            .with_home_netns(hi.source.home_netns.clone())
            .run()
            .await;
    };
    if let Some(every) = hi.watch {
        return watch::watch(&engine, &sql, every, hi.output, &mut std::io::stdout().lock()).await;
    }
    crate::tables::streams::end_on_ctrl_c(engine.streams().clone());
    // Following, each row goes out as it comes (a line at a time for jq
    // or a log shipper); else in large writes.
    let follow = hi.follow;
    let mut sink = output::PrintSink::new(hi.output, move || -> Box<dyn std::io::Write> {
        if follow {
            Box::new(std::io::LineWriter::new(std::io::stdout()))
        } else {
            Box::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()))
        }
    })
    .with_empty_note(sql.empty_note.clone());
    Ok(engine.run_into(&sql, &mut sink).await?)
}

/// Print one batch (a listing) in the chosen format.
fn print_batch(hi: &HiArgs, b: datafusion::arrow::record_batch::RecordBatch) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    output::print(&mut out, hi.output, &b.schema(), &[b])?;
    Ok(out.flush()?)
}

/// How often and how long `record` samples.
struct Recording {
    every: std::time::Duration,
    duration: Option<std::time::Duration>,
    samples: Option<u64>,
    retention: Option<i64>,
}

/// `record`: sample tables or a saved query into Parquet. A recorder
/// runs the same statements every interval: each warning is printed the
/// first time only.
async fn record(hi: &HiArgs, out: &str, tables: &[String], query: Option<&str>, plan: Recording) -> anyhow::Result<()> {
    let engine = Engine::with(&hi.source, hi.policy, hi.limits)?.with_notices(crate::notice::Mode::PrintOnce);
    let store = crate::history::store::HistoryStore::open(out, true)?;
    let sources = crate::history::record::sources(tables, query, &hi.params)?;
    let recorder = crate::history::record::Recorder {
        runner: &engine,
        store,
        sources,
        host: crate::history::record::hostname(),
        every: plan.every,
        duration: plan.duration,
        samples: plan.samples,
        retention_days: plan.retention,
    };
    recorder.run().await
}

/// `record --events`: listen to the event tables for the whole recording.
async fn record_events(hi: &HiArgs, out: &str, every: std::time::Duration) -> anyhow::Result<()> {
    let engine = Engine::with(&hi.source, hi.policy, hi.limits)?.with_notices(crate::notice::Mode::PrintOnce);
    let store = crate::history::store::HistoryStore::open(out, true)?;
    let recorder = crate::history::events::EventRecorder {
        runner: &engine,
        streams: engine.streams().clone(),
        store,
        host: crate::history::record::hostname(),
        every,
        last_ms: Default::default(),
    };
    let rows = recorder.run().await?;
    crate::stderrln!("sockql record: {rows} events in all (done)");
    Ok(())
}

/// `serve`: /metrics, and the PostgreSQL endpoint with --pg.
async fn serve(
    hi: HiArgs,
    listen: std::net::SocketAddr,
    scrape_timeout: std::time::Duration,
    max_series: usize,
    metrics: &[String],
    pg: &args::PgArgs,
) -> anyhow::Result<()> {
    let flight = pg.flight.flight.map(|listen| crate::serve::flight::FlightOptions {
        listen,
        password_file: pg.flight.flight_password_file.clone(),
        tls_cert: pg.flight.flight_tls_cert.clone(),
        tls_key: pg.flight.flight_tls_key.clone(),
        tls_client_ca: pg.flight.flight_tls_client_ca.clone(),
        max_queries: pg.pg_max_queries,
    });
    let pg = match &pg.pg {
        None => None,
        Some(value) => Some(crate::serve::pg::PgOptions {
            endpoint: crate::serve::pg::Endpoint::parse(value, pg.pg_port)?,
            group: pg.pg_group.clone(),
            password_file: pg.pg_password_file.clone(),
            tls_cert: pg.pg_tls_cert.clone(),
            tls_key: pg.pg_tls_key.clone(),
            max_connections: pg.pg_max_connections,
            max_queries: pg.pg_max_queries,
            slots: None,
        }),
    };
    let options = crate::serve::ServeOptions {
        listen,
        scrape_timeout,
        max_series,
        only: metrics.to_vec(),
        source: hi.source,
        memory: hi.limits.memory,
        pg,
        flight,
        client_limits: crate::query::engine::Limits {
            memory: Some(hi.limits.memory.unwrap_or(crate::serve::CLIENT_MEMORY)),
            timeout: Some(hi.limits.timeout.unwrap_or(crate::serve::CLIENT_TIMEOUT)),
        },
    };
    crate::serve::serve(options).await
}

/// `capture --out`: packets into a pcap file.
async fn capture_to(hi: &HiArgs, filter: Option<&str>, out: &Path) -> anyhow::Result<()> {
    let engine = Engine::with(&hi.source, hi.policy, hi.limits)?;
    capture::to_pcap(&engine, filter, out).await
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Args::command_tree(), "sockql", &mut out);
    Ok(out.flush()?)
}

fn man() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    reference::man_page(&mut out)?;
    Ok(out.flush()?)
}

fn reference() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write!(out, "{}", reference::markdown())?;
    Ok(out.flush()?)
}

/// `netlink-capture`: it writes a file, so only with --allow-files.
fn netlink_capture(hi: &HiArgs, source: args::CaptureSource, file: &Path) -> anyhow::Result<()> {
    if !hi.policy.allow_files {
        anyhow::bail!("refused: capture writes a file; run it with --allow-files");
    }
    fixtures::write(source, file)
}
