//! The interactive shell: `sockql` with a terminal on stdin and no query.
//! Line editing, history and completion come from rustyline; statements
//! run through a [`QueryRunner`], so this file holds no engine code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rustyline::error::ReadlineError;
use rustyline::history::{FileHistory, History};
use rustyline::{Config, Editor};

use super::args::Expanded;
use super::complete::SqlHelper;
use super::history_file::HistoryFile;
use super::meta::{self, Meta};
use super::{error_line, watch};
use crate::output::fit;
use crate::output::{self as output, OutputOptions};
use crate::query::catalog;
use crate::query::engine::{QueryRunner, SqlSource};
use crate::query::saved::{self, file_source};
use crate::tables::streams::Streams;

pub struct Repl<'a> {
    runner: &'a dyn QueryRunner,
    opts: OutputOptions,
    timing: bool,
    last: Option<SqlSource>,
    /// Shared with the tables: `\netns` changes what they read.
    all_netns: Arc<AtomicBool>,
    /// Shared with the tables: `\container` sets the namespace they read.
    home_netns: Arc<AtomicU64>,
    /// The session's streams, which Ctrl-C ends.
    streams: Arc<Streams>,
}

enum Flow {
    Continue,
    Quit,
}

impl<'a> Repl<'a> {
    pub fn new(
        runner: &'a dyn QueryRunner,
        opts: OutputOptions,
        all_netns: Arc<AtomicBool>,
        streams: Arc<Streams>,
    ) -> Self {
        Repl { runner, opts, timing: false, last: None, all_netns, home_netns: Arc::default(), streams }
    }

    /// Share the tables' home namespace (`--container`), which
    /// `\container` then changes.
    pub fn with_home_netns(self, home_netns: Arc<AtomicU64>) -> Self {
        Repl { home_netns, ..self }
    }

    /// Completion over every table the session has now: live ones,
    /// `history.*`, and snapshots and views made so far.
    async fn helper(&self) -> SqlHelper {
        let cat = self.runner.listing().await;
        let names = cat.iter().map(|t| t.name.clone()).collect();
        let columns =
            cat.iter().flat_map(|t| t.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()).collect();
        SqlHelper::new(names, columns, saved::names())
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let config = Config::builder().auto_add_history(false).max_history_size(10_000)?.build();
        let mut rl: Editor<SqlHelper, FileHistory> = Editor::with_config(config)?;
        rl.set_helper(Some(self.helper().await));
        // $XDG_STATE_HOME/sockql/history, else ~/.local/state/sockql/history,
        // of the user sockql runs as, never through anything another user
        // could swap (history_file.rs); none, with one warning, otherwise.
        let mut history = HistoryFile::locate().and_then(|h| match h.load() {
            Ok(entries) => {
                for e in &entries {
                    let _ = rl.history_mut().add(e);
                }
                Some(h)
            }
            Err(e) => {
                crate::notice::warn_once("history", format!("no shell history: {e}"));
                None
            }
        });
        let _ = writeln!(
            std::io::stdout(),
            "sockql {}: SQL over this host's sockets. \\? for help, \\q to quit.",
            env!("CARGO_PKG_VERSION")
        );
        // A statement is gathered line by line until it is complete (ends
        // with ';'), under a continuation prompt: each line is edited on
        // its own, so a paste costs time linear in its lines.
        let carry = Arc::new(std::sync::Mutex::new(None));
        let splitter = super::complete::LongLineSplitter { carry: carry.clone() };
        rl.bind_sequence(rustyline::Event::Any, rustyline::EventHandler::Conditional(Box::new(splitter)));
        let (mut pending, mut glue, mut initial) = (String::new(), "", String::new());
        loop {
            let prompt = if pending.is_empty() { "sockql> " } else { "    ..> " };
            let read =
                if initial.is_empty() { rl.readline(prompt) } else { rl.readline_with_initial(prompt, (&initial, "")) };
            initial.clear();
            match read {
                Ok(text) => {
                    if !pending.is_empty() {
                        pending.push_str(glue);
                    }
                    pending.push_str(&text);
                    // A long line split by the editor goes on without a break.
                    if let Some(c) = carry.lock().ok().and_then(|mut c| c.take()) {
                        initial.push(c);
                        glue = "";
                        continue;
                    }
                    glue = "\n";
                    if pending.len() > crate::query::statements::MAX_SQL_BYTES {
                        pending.clear();
                        crate::stderrln!(
                            "sockql: error: statement too large (at most {} KiB); dropped",
                            crate::query::statements::MAX_SQL_BYTES / 1024
                        );
                        continue;
                    }
                    if !super::complete::is_complete(&pending) {
                        continue;
                    }
                    let line = std::mem::take(&mut pending);
                    if line.trim().is_empty() {
                        continue;
                    }
                    rl.add_history_entry(line.as_str())?;
                    // Saved after every entry (a killed shell keeps its
                    // history), its path judged again each time: a path
                    // that has become unsafe ends the history.
                    if let Some(h) = &history {
                        if let Err(e) = h.save(rl.history().iter()) {
                            crate::notice::warn_once(
                                "history",
                                format!("no shell history from now on: {}: {e}", h.path().display()),
                            );
                            history = None;
                        }
                    }
                    match self.handle(&line).await {
                        Ok(Flow::Quit) => break,
                        Ok(Flow::Continue) => {}
                        Err(e) => crate::stderrln!("sockql: error: {}", error_line(&e)),
                    }
                    // A statement may have made a snapshot or view: complete its columns too.
                    rl.set_helper(Some(self.helper().await));
                }
                // Ctrl-C while typing drops the statement, not the shell.
                Err(ReadlineError::Interrupted) => {
                    pending.clear();
                    glue = "";
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn handle(&mut self, line: &str) -> anyhow::Result<Flow> {
        if line.trim_start().starts_with('\\') {
            return self.meta(meta::parse(line)?).await;
        }
        let src = SqlSource::inline(line);
        self.execute(&src).await?;
        self.last = Some(src);
        Ok(Flow::Continue)
    }

    /// The one place meta-commands are carried out.
    async fn meta(&mut self, m: Meta) -> anyhow::Result<Flow> {
        let mut out = std::io::stdout().lock();
        match m {
            Meta::Help => write!(out, "{}", meta::help_text())?,
            Meta::Quit => return Ok(Flow::Quit),
            Meta::Tables => {
                let b = catalog::tables_batch(&self.runner.listing().await);
                output::print(&mut out, self.opts, &b.schema(), &[b])?;
            }
            Meta::Describe(t) => {
                let b = catalog::describe_batch(&self.runner.listing().await, &t)?;
                output::print(&mut out, self.opts, &b.schema(), &[b])?;
            }
            Meta::Timing => {
                self.timing = !self.timing;
                writeln!(out, "Timing is {}.", if self.timing { "on" } else { "off" })?;
            }
            Meta::Netns(all) => {
                self.all_netns.store(all, Ordering::Relaxed);
                if !all {
                    self.home_netns.store(0, Ordering::Relaxed);
                }
                writeln!(
                    out,
                    "Tables cover {}.",
                    if all { "every network namespace" } else { "the current network namespace" }
                )?;
            }
            Meta::Container(name) => {
                let home = match &name {
                    Some(name) => crate::cli::container_scope::netns_of(name)?,
                    None => 0,
                };
                self.home_netns.store(home, Ordering::Relaxed);
                self.all_netns.store(false, Ordering::Relaxed);
                match name {
                    Some(name) => writeln!(out, "Tables cover container {name}'s network namespace ({home}).")?,
                    None => writeln!(out, "Tables cover the current network namespace.")?,
                }
            }
            Meta::Format(f) => {
                self.opts.format = f;
                writeln!(out, "Output format is {f:?}.")?;
            }
            Meta::Expanded(e) => {
                let e = e.unwrap_or(if self.opts.fit.expanded == Expanded::On { Expanded::Off } else { Expanded::On });
                self.opts.fit.expanded = e;
                writeln!(out, "Expanded display is {}.", format!("{e:?}").to_lowercase())?;
            }
            Meta::Wide => {
                self.opts.fit.width = match self.opts.fit.width {
                    Some(_) => None,
                    None => Some(fit::stdout_width()),
                };
                writeln!(
                    out,
                    "Long cells are {}.",
                    if self.opts.fit.width.is_some() { "cut to the terminal's width" } else { "shown whole" }
                )?;
            }
            Meta::Watch(every) => {
                let Some(last) = self.last.clone() else { anyhow::bail!("no query to watch yet: run one first") };
                drop(out);
                watch::watch(self.runner, &last, every, self.opts, &mut std::io::stdout().lock()).await?;
            }
            Meta::Include(path) => {
                drop(out);
                let src = file_source(&path, &[])?;
                self.execute(&src).await?;
                self.last = Some(src);
            }
            Meta::Run(None) => {
                let b = saved::list_batch();
                output::print(&mut out, self.opts, &b.schema(), &[b])?;
            }
            Meta::Run(Some((name, params))) => {
                drop(out);
                let src = saved::find(&name)?.source(&params)?;
                self.execute(&src).await?;
                self.last = Some(src);
            }
        }
        Ok(Flow::Continue)
    }

    /// Run and print; Ctrl-C ends a running packet capture (the query then
    /// answers from what it captured), else cancels the query and returns
    /// to the prompt.
    async fn execute(&self, src: &SqlSource) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut opts = self.opts;
        // The window may have been resized since the last statement.
        if opts.fit.width.is_some() {
            opts.fit.width = fit::terminal_width(std::io::stdout()).or(opts.fit.width);
        }
        let mut sink = output::PrintSink::new(opts, std::io::stdout).with_empty_note(src.empty_note.clone());
        let run = self.runner.run_into(src, &mut sink);
        tokio::pin!(run);
        loop {
            tokio::select! {
                r = &mut run => break r?,
                _ = tokio::signal::ctrl_c() => {
                    if self.streams.end_running() {
                        crate::stderrln!("capture ended (Ctrl-C again cancels the query)");
                        continue;
                    }
                    crate::stderrln!("query cancelled");
                    return Ok(());
                }
            }
        }
        if self.timing {
            let _ = writeln!(std::io::stdout(), "Time: {:.3} s", start.elapsed().as_secs_f64());
        }
        Ok(())
    }
}
