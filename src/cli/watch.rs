//! Watch mode: re-run a query every interval until Ctrl-C. The table
//! format redraws the screen like `watch -n`; the other formats append
//! each run's rows with a `ts` column, for piping into other tools.

use std::io::Write;
use std::time::Duration;

use super::args::Format;
use crate::output::{self as output, OutputOptions};
use crate::query::engine::{QueryRunner, SqlSource, StatementResult};
use crate::query::stamp::{stamp, stamped_schema};

fn print_tick(
    out: &mut dyn Write,
    opts: OutputOptions,
    sql: &SqlSource,
    every: Duration,
    results: &[StatementResult],
    tick: usize,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now();
    if opts.format == Format::Table {
        // Clear the screen and home the cursor, then a header like watch's.
        write!(out, "\x1b[H\x1b[2J")?;
        let first = sql.text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("--")).unwrap_or("");
        let first = output::escape_control_text(first);
        writeln!(
            out,
            "Every {}: {}    {}",
            humantime::format_duration(every),
            first,
            now.format("%Y-%m-%d %H:%M:%S UTC")
        )?;
        writeln!(out)?;
        for r in results {
            output::print(out, opts, &r.schema, &r.batches)?;
        }
    } else {
        let ts = now.timestamp_millis();
        // csv: the header once, not per tick.
        let opts = OutputOptions { header: opts.header && tick == 0, ..opts };
        for r in results {
            let schema = stamped_schema(&r.schema);
            let batches = r.batches.iter().map(|b| stamp(b, &schema, ts)).collect::<crate::query::Result<Vec<_>>>()?;
            // ndjson/csv of an empty tick print nothing (or one header).
            if !batches.is_empty() || opts.format == Format::Json || tick == 0 {
                output::print(out, opts, &schema, &batches)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Run `sql` every `every` until Ctrl-C; Ctrl-C is a normal end.
pub async fn watch(
    runner: &dyn QueryRunner,
    sql: &SqlSource,
    every: Duration,
    opts: OutputOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = 0;
    let mut said = std::collections::HashSet::new();
    loop {
        let next = tokio::time::Instant::now() + every;
        tokio::select! {
            (results, notices) = runner.run_keeping_notices(sql) => {
                let printed = results.map_err(anyhow::Error::from).and_then(|r| print_tick(out, opts, sql, every, &r, tick));
                // The table format redraws the screen, which would wipe a
                // warning printed once: it is printed under every redraw.
                // The appending formats print each distinct one once.
                for n in notices {
                    if opts.format == Format::Table || said.insert(n.clone()) {
                        n.print();
                    }
                }
                printed?
            }
            _ = &mut ctrl_c => return Ok(()),
        }
        tick += 1;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}
