//! The command line: arguments, where the SQL comes from, and printing.

pub mod args;
pub mod capture;
pub mod complete;
pub mod fit;
pub mod history_file;
pub mod meta;
pub mod output;
pub mod reference;
pub mod repl;
pub mod watch;

use std::io::{IsTerminal, Write};

use anyhow::Context;

use crate::query::engine::{self, Engine, QueryRunner, SqlSource};
use crate::query::{catalog, saved};
use args::{Args, Command};
use output::OutputOptions;

use crate::tables::SourceOptions;

pub use crate::query::errors::error_line;

/// Where the SQL to run comes from; `None` means start the REPL.
fn sql_source(args: &Args) -> anyhow::Result<Option<SqlSource>> {
    let inline = |text: String| {
        let params = args.params.iter().map(|(k, v)| (k.clone(), saved::param_value(v))).collect();
        SqlSource { text, origin: None, params, empty_note: None }
    };
    if let Some(Command::Run { name: Some(name), .. }) = &args.command {
        return Ok(Some(saved::find(name)?.source(&args.params)?));
    }
    if let Some(q) = &args.query {
        return Ok(Some(inline(q.clone())));
    }
    if let Some(path) = &args.file {
        return Ok(Some(saved::file_source(path, &args.params)?));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let sql = crate::query::files::read_bounded(stdin.lock(), "standard input")?;
    Ok(Some(inline(sql)))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let escape = match args.output.escape {
        args::Escape::Always => true,
        args::Escape::Never => false,
        args::Escape::Auto => std::io::stdout().is_terminal(),
    };
    let terminal = std::io::stdout().is_terminal();
    let fit = fit::Fit {
        width: if terminal && !args.output.wide { Some(fit::stdout_width()) } else { None },
        expanded: args.output.expanded,
    };
    let opts = OutputOptions {
        header: !args.output.no_header,
        escape,
        fit,
        terminal,
        ..OutputOptions::new(args.output.format)
    }
    .with_memory_limit(args.memory_limit);
    // `record --events` listens for the whole recording: its streams are
    // bounded by record's own --for, or run until Ctrl-C.
    let recording_events = match &args.command {
        Some(Command::Record { events: true, duration, .. }) => Some(*duration),
        _ => None,
    };
    let source = SourceOptions {
        no_netlink: args.source.no_netlink,
        all_netns: std::sync::Arc::new(args.source.all_netns.into()),
        capture_for: recording_events.unwrap_or(args.source.capture_for),
        payload: args.source.payload,
        follow: args.source.follow || recording_events.is_some(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(Command::Run { name: None, .. }) = &args.command {
        let b = saved::list_batch();
        output::print(&mut out, opts, &b.schema(), &[b])?;
        return Ok(out.flush()?);
    }
    match &args.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut Args::command_tree(), "sockql", &mut out);
            return Ok(out.flush()?);
        }
        Some(Command::Man) => {
            reference::man_page(&mut out)?;
            return Ok(out.flush()?);
        }
        Some(Command::Reference) => {
            write!(out, "{}", reference::markdown())?;
            return Ok(out.flush()?);
        }
        Some(Command::NetlinkCapture { source, file }) => {
            if !args.allow_files {
                anyhow::bail!("refused: capture writes a file; run it with --allow-files");
            }
            return capture(*source, file);
        }
        _ => {}
    }
    if let Some(Command::Serve { listen, scrape_timeout, max_series, metrics, pg }) = &args.command {
        if args.allow_files {
            anyhow::bail!("refused: --allow-files is never on for what a server answers");
        }
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
            }),
        };
        let options = crate::serve::ServeOptions {
            listen: *listen,
            scrape_timeout: *scrape_timeout,
            max_series: *max_series,
            only: metrics.clone(),
            source,
            memory: args.memory_limit,
            pg,
            client_limits: engine::Limits {
                memory: Some(args.memory_limit.unwrap_or(crate::serve::CLIENT_MEMORY)),
                timeout: Some(args.timeout.unwrap_or(crate::serve::CLIENT_TIMEOUT)),
            },
        };
        return crate::serve::serve(options).await;
    }
    let policy = engine::Policy { allow_files: args.allow_files };
    let limits = engine::Limits { memory: args.memory_limit, timeout: args.timeout };
    let engine = Engine::with(&source, policy, limits)?;
    if let Some(location) = &args.history {
        let store = crate::history::store::HistoryStore::open(location, false)?;
        crate::history::register::register(engine.context(), store, limits).await?;
    }
    // The catalog commands ask the session, so history tables count too.
    let listing = match &args.command {
        Some(Command::Tables) => Some(catalog::tables_batch(&engine.listing().await)),
        Some(Command::Schema { table }) => Some(catalog::describe_batch(&engine.listing().await, table)?),
        _ => None,
    };
    if let Some(b) = listing {
        output::print(&mut out, opts, &b.schema(), &[b])?;
        return Ok(out.flush()?);
    }
    if let Some(Command::Capture { out: target, filter }) = &args.command {
        return capture::to_pcap(&engine, &source, filter.as_deref(), target).await;
    }
    // A recorder runs the same statements every interval: each warning
    // is printed the first time only.
    let engine = match &args.command {
        Some(Command::Record { .. }) => engine.with_notices(crate::notice::Mode::PrintOnce),
        _ => engine,
    };
    if let Some(Command::Record { out: target, every, events: true, .. }) = &args.command {
        let store = crate::history::store::HistoryStore::open(target, true)?;
        let recorder = crate::history::events::EventRecorder {
            runner: &engine,
            store,
            host: crate::history::record::hostname(),
            every: *every,
            last_ms: Default::default(),
        };
        let rows = recorder.run().await?;
        crate::stderrln!("sockql record: {rows} events in all (done)");
        return Ok(());
    }
    if let Some(Command::Record { out: target, every, duration, samples, tables, query, retention, .. }) = &args.command
    {
        let store = crate::history::store::HistoryStore::open(target, true)?;
        let sources = crate::history::record::sources(tables, query.as_deref(), &args.params)?;
        let recorder = crate::history::record::Recorder {
            runner: &engine,
            store,
            sources,
            host: crate::history::record::hostname(),
            every: *every,
            duration: *duration,
            samples: *samples,
            retention_days: *retention,
        };
        return recorder.run().await;
    }
    let Some(sql) = sql_source(&args)? else {
        drop(out);
        return repl::Repl::new(&engine, opts, source.all_netns.clone()).run().await;
    };
    if let Some(every) = args.watch {
        return watch::watch(&engine, &sql, every, opts, &mut out).await;
    }
    drop(out);
    crate::tables::streams::end_on_ctrl_c();
    // Following, each row goes out as it comes (a line at a time for jq
    // or a log shipper); else in large writes.
    let follow = args.source.follow;
    let mut sink = output::PrintSink::new(opts, move || -> Box<dyn std::io::Write> {
        if follow {
            Box::new(std::io::LineWriter::new(std::io::stdout()))
        } else {
            Box::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout()))
        }
    })
    .with_empty_note(sql.empty_note.clone());
    engine.run_into(&sql, &mut sink).await
}

/// Write every answer datagram of one netlink dump source to `file`, for
/// parser fixtures and bug reports.
fn capture(source: args::CaptureSource, file: &std::path::Path) -> anyhow::Result<()> {
    use crate::collect::sock_diag::inet::Extensions;
    use crate::collect::sock_diag::{InetRequest, SockDiag, ALL_DUMPS};
    use crate::collect::tcp_state::ALL_BITS;
    use crate::collect::Error;
    use std::ops::ControlFlow::Continue;
    // A new file only: never truncate or follow a link to an existing one.
    let created = std::fs::File::options().write(true).create_new(true).open(file);
    let mut w = std::io::BufWriter::new(
        created.with_context(|| format!("cannot create {} (it must not exist yet)", file.display()))?,
    );
    match source {
        args::CaptureSource::SockDiag => {
            let mut nl = SockDiag::open()?;
            let extensions = Extensions { tcp_info: true, congestion: true, meminfo: true, tos: true, ca_info: true };
            // TCP and UDP: the fixtures' protocols (raw_diag is missing
            // from many kernels, this one's included).
            for (protocol, family) in
                ALL_DUMPS.into_iter().filter(|(p, _)| *p != crate::collect::sock_diag::inet::IPPROTO_RAW)
            {
                let req = InetRequest { protocol, family, states: ALL_BITS, extensions, conds: Vec::new() };
                nl.inet(&req, Some(&mut w), |_| Ok::<_, Error>(Continue(())))?;
            }
        }
        args::CaptureSource::Ctnetlink => {
            crate::collect::conntrack::Ctnetlink::open()?
                .dump(0, &Default::default(), Some(&mut w), |_| Ok::<_, Error>(Continue(())))?;
        }
    }
    w.flush()?;
    Ok(())
}
