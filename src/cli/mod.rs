//! The command line: arguments, where the SQL comes from, and printing.

pub mod args;
pub mod catalog;
pub mod engine;
pub mod output;

use std::io::{IsTerminal, Read, Write};

use anyhow::Context;

use args::{Args, Command};
use engine::Engine;
use output::OutputOptions;

use crate::tables::SourceOptions;

/// An error as one line: each cause's first line, skipping causes whose
/// text the line already holds (DataFusion repeats its source in its own
/// message, and appends long "Valid fields are ..." lists on later lines).
pub fn error_line(e: &anyhow::Error) -> String {
    use datafusion::error::DataFusionError;
    if let Some(df) = e.downcast_ref::<DataFusionError>() {
        if let DataFusionError::SQL(parse, _) = df.find_root() {
            let msg = parse.to_string();
            return format!("SQL syntax error: {}", msg.trim_start_matches("sql parser error: "));
        }
    }
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let first = text.lines().next().unwrap_or("").trim();
        if first.is_empty() || line.contains(first) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(first);
    }
    line
}

/// Where the SQL to run comes from.
fn sql_text(args: &Args) -> anyhow::Result<String> {
    if let Some(q) = &args.query {
        return Ok(q.clone());
    }
    if let Some(path) = &args.file {
        return std::fs::read_to_string(path).with_context(|| format!("cannot read query file {}", path.display()));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        anyhow::bail!("no query: give SQL as an argument, with -f FILE, or on standard input (see sockql --help)");
    }
    let mut sql = String::new();
    stdin.lock().read_to_string(&mut sql).context("cannot read SQL from standard input")?;
    Ok(sql)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let opts = OutputOptions { format: args.output.format, header: !args.output.no_header };
    let source = SourceOptions { no_netlink: args.source.no_netlink };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &args.command {
        Some(Command::Tables) => {
            let b = catalog::tables();
            output::print(&mut out, opts, &b.schema(), &[b])?;
        }
        Some(Command::Schema { table }) => {
            let b = catalog::describe(table)?;
            output::print(&mut out, opts, &b.schema(), &[b])?;
        }
        Some(Command::Reference) => write!(out, "{}", catalog::markdown_reference())?,
        Some(Command::CaptureSockDiag { file }) => capture_sock_diag(file)?,
        None => {
            let sql = sql_text(&args)?;
            let engine = Engine::new(&source)?;
            for r in engine.run(&sql).await? {
                output::print(&mut out, opts, &r.schema, &r.batches)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Write every sock_diag answer datagram (all protocols, families and
/// extensions) to `file`, for parser fixtures and bug reports.
fn capture_sock_diag(file: &std::path::Path) -> anyhow::Result<()> {
    use crate::collect::inet_diag::Extensions;
    use crate::collect::sock_diag::{SockDiag, ALL_DUMPS};
    use crate::collect::tcp_state::ALL_BITS;
    let mut w = std::io::BufWriter::new(std::fs::File::create(file).with_context(|| format!("cannot create {}", file.display()))?);
    let mut nl = SockDiag::open()?;
    let ext = Extensions { tcp_info: true, congestion: true, meminfo: true };
    for (protocol, family) in ALL_DUMPS {
        nl.dump(protocol, family, ALL_BITS, ext, Some(&mut w), |_| std::ops::ControlFlow::Continue(()))?;
    }
    w.flush()?;
    Ok(())
}
