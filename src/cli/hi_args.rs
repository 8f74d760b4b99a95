//! The flags turned into decisions once (ripgrep's `HiArgs`): whichever
//! command was given, the output, source, policy and limits it runs with
//! are made here, and the commands only use them.

use std::io::IsTerminal;
use std::time::Duration;

use super::args::{self, Args, Command, QueryArgs};
use crate::output::fit;
use crate::output::OutputOptions;
use crate::query::engine::{Limits, Policy};
use crate::tables::streams::DEFAULT_STREAM_FOR;
use crate::tables::SourceOptions;

/// What the flags decided.
pub struct HiArgs {
    pub output: OutputOptions,
    pub source: SourceOptions,
    pub policy: Policy,
    pub limits: Limits,
    /// `--param NAME=VALUE`, in order.
    pub params: Vec<(String, String)>,
    pub history: Option<String>,
    pub watch: Option<Duration>,
    /// Rows go out a line at a time (`--follow`).
    pub follow: bool,
}

/// The flag groups of one command; a group it does not take is its
/// defaults.
struct Groups<'a> {
    params: &'a args::ParamArgs,
    files: &'a args::FileArgs,
    limits: &'a args::LimitArgs,
    history: &'a args::HistoryArgs,
    output: &'a args::OutputArgs,
    read: &'a args::ReadArgs,
    streams: &'a args::StreamArgs,
    watch: Option<Duration>,
    follow: bool,
}

impl<'a> Groups<'a> {
    fn query(q: &'a QueryArgs) -> Self {
        Groups {
            params: &q.params,
            files: &q.files,
            limits: &q.limits,
            history: &q.history,
            output: &q.output,
            read: &q.read,
            streams: &q.streams,
            watch: q.watch,
            follow: q.follow,
        }
    }
}

impl HiArgs {
    /// The decisions of `args`; fails only for a `--container` that names
    /// no running container.
    pub fn new(args: &Args) -> anyhow::Result<HiArgs> {
        let defaults = QueryArgs::default();
        let none = Groups::query(&defaults);
        // `record --events` listens for the whole recording: its streams
        // are bounded by record's own --for, or run until Ctrl-C.
        let mut recording_for = None;
        let g = match &args.command {
            None => Groups::query(&args.flags),
            Some(Command::Run { flags, .. }) => Groups::query(flags),
            Some(Command::Record { params, files, limits, read, streams, events, duration, .. }) => {
                recording_for = events.then_some(*duration);
                Groups { params, files, limits, read, streams, ..none }
            }
            Some(Command::Capture { params, files, limits, read, streams, .. }) => {
                Groups { params, files, limits, read, streams, ..none }
            }
            Some(Command::Serve { limits, read, streams, .. }) => Groups { limits, read, streams, ..none },
            Some(Command::Tables { flags } | Command::Schema { flags, .. }) => Groups {
                files: &flags.files,
                limits: &flags.limits,
                history: &flags.history,
                output: &flags.output,
                read: &flags.read,
                ..none
            },
            Some(Command::NetlinkCapture { files, .. }) => Groups { files, ..none },
            Some(Command::Completions { .. } | Command::Man | Command::Reference) => none,
        };
        let stream_for = match (g.streams.capture_for, g.follow) {
            (Some(d), _) => Some(d),
            (None, true) => None,
            (None, false) => Some(DEFAULT_STREAM_FOR),
        };
        let home_netns = match &g.read.container {
            Some(name) => super::container_scope::netns_of(name)?,
            None => 0,
        };
        Ok(HiArgs {
            output: output(g.output).with_memory_limit(g.limits.memory_limit),
            source: SourceOptions {
                no_netlink: g.read.no_netlink,
                all_netns: std::sync::Arc::new(g.read.all_netns.into()),
                home_netns: std::sync::Arc::new(home_netns.into()),
                stream_for: recording_for.unwrap_or(stream_for),
                payload: g.streams.payload,
                streams: Default::default(),
            },
            policy: Policy { allow_files: g.files.allow_files },
            limits: Limits { memory: g.limits.memory_limit, timeout: g.limits.timeout },
            params: g.params.params.clone(),
            history: g.history.history.clone(),
            watch: g.watch,
            follow: g.follow,
        })
    }
}

fn output(o: &args::OutputArgs) -> OutputOptions {
    let terminal = std::io::stdout().is_terminal();
    let escape = match o.escape {
        args::Escape::Always => true,
        args::Escape::Never => false,
        args::Escape::Auto => terminal,
    };
    let fit =
        fit::Fit { width: if terminal && !o.wide { Some(fit::stdout_width()) } else { None }, expanded: o.expanded };
    OutputOptions { header: !o.no_header, escape, fit, terminal, ..OutputOptions::new(o.format) }
}
