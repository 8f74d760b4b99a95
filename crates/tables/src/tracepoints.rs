//! What every tracepoint table (`packet_drops`, `tcp_retransmits`,
//! `tcp_resets`, `tcp_state_changes`, ...) shares: the tracepoints it
//! reads, the kernel filter made from the query's WHERE clause (shown in
//! EXPLAIN), opening them on every CPU, and listening until the stream's
//! bound (a `listen.rs` [`Listener`], polled by `streams.rs`), each sample handed to the table's decoder with
//! its time in UTC. A table declares its [`Point`]s and writes a decoder;
//! the reader is `collect::trace`.
//!
//! Tracepoints are host-wide: one perf event per CPU sees every network
//! namespace. Which namespace an event belongs to is the table's to say
//! (from the socket the event names, `sock_lookup.rs`); [`TracePlan`]
//! carries the namespaces the scan covers (`--all-netns`, a netns filter)
//! so the decoder can keep those.
//!
//! A kernel without a tracepoint or field is not an error: the table says
//! so in one line and yields no rows, so a query joining it still runs.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::time::Duration;

use datafusion::logical_expr::{Expr, Operator};
use datafusion::scalar::ScalarValue;

use crate::filters::{as_i64, as_str, column_between, column_compare, column_in_literals};
use crate::listen::Listener;
use crate::live::Emitter;
use crate::{scope, streams, Scan};
use sockql_collect::netns::Netns;
use sockql_collect::tcp_state;
use sockql_collect::trace::filter::{AnyOf, Cmp, Filter, Op};
use sockql_collect::trace::{Format, Options, Request, Sample, TraceError, TraceReader, Tracefs};

/// A tracepoint a table reads, and the columns whose filters the kernel
/// can apply to its fields.
#[derive(Debug)]
pub struct Point {
    /// `skb`, `tcp`, `sock`.
    pub group: &'static str,
    /// `kfree_skb`, `tcp_retransmit_skb`, ...
    pub name: &'static str,
    pub pushed: &'static [Pushed],
}

/// A column whose comparisons with literals become comparisons of a
/// tracepoint field in the kernel.
#[derive(Debug)]
pub struct Pushed {
    pub column: &'static str,
    pub field: &'static str,
    pub value: Value,
}

/// How a SQL literal of the column becomes the field's number.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// The column holds the field's integer as it is (ports, errors).
    Int,
    /// The column holds the kernel's name for the value, from the field's
    /// `__print_symbolic` map (drop reasons: 'NO_SOCKET').
    Symbol,
    /// The column holds a TCP state as ss spells it ('ESTAB'), the field
    /// the kernel's number.
    TcpState,
}

impl Value {
    /// The field's value for `v`, or None when the kernel filter cannot
    /// express it (the comparison is then left to user space).
    fn of(self, v: &ScalarValue, format: &Format, field: &str) -> Option<i64> {
        match self {
            Value::Int => as_i64(v),
            Value::Symbol => {
                let name = as_str(v)?;
                let symbols = format.symbols.get(field)?;
                symbols.entries.iter().find_map(|(k, n)| match k {
                    sockql_collect::trace::format::Key::Value(x) if n == name => Some(*x),
                    _ => None,
                })
            }
            Value::TcpState => {
                let name = as_str(v)?;
                // TCP_CLOSE as a state change reads 'CLOSE' (ss: UNCONN).
                let name = if name == "CLOSE" { "UNCONN" } else { name };
                // SYN-RECV is two kernel states (None): user space decides.
                tcp_state::number(name).map(i64::from)
            }
        }
    }

    /// Only integers order as their columns do.
    fn orders(self) -> bool {
        matches!(self, Value::Int)
    }
}

/// The kernel filter for `point` (its `format`) from a scan's filters:
/// each filter on a pushed column that the kernel can express becomes a
/// group of comparisons that must hold; every other filter is left to
/// user space (a stream's scan checks the whole predicate on each row),
/// so the kernel filter only ever lets through more than the query wants.
pub fn kernel_filter(point: &Point, format: &Format, filters: &[Expr]) -> Filter {
    let mut out = Filter::default();
    let pushed = |column: &str| point.pushed.iter().find(|p| p.column == column);
    let cmp = |p: &Pushed, op: Op, v: &ScalarValue| {
        p.value.of(v, format, p.field).map(|value| Cmp { field: p.field.to_string(), op, value })
    };
    for f in filters {
        if let Some((column, values)) = column_in_literals(f) {
            if let Some(p) = pushed(column) {
                let group: Option<Vec<Cmp>> = values.iter().map(|v| cmp(p, Op::Eq, v)).collect();
                if let Some(group) = group {
                    out.require(format, AnyOf(group));
                }
            }
            continue;
        }
        if let Some((column, lo, hi)) = column_between(f) {
            if let Some(p) = pushed(column).filter(|p| p.value.orders()) {
                for (op, v) in [(Op::Ge, lo), (Op::Le, hi)] {
                    if let Some(c) = cmp(p, op, v) {
                        out.require(format, AnyOf(vec![c]));
                    }
                }
            }
            continue;
        }
        if let Some((column, op, v)) = column_compare(f) {
            let op = match op {
                Operator::Lt => Op::Lt,
                Operator::LtEq => Op::Le,
                Operator::Gt => Op::Gt,
                Operator::GtEq => Op::Ge,
                _ => continue,
            };
            if let Some(c) = pushed(column).filter(|p| p.value.orders()).and_then(|p| cmp(p, op, v)) {
                out.require(format, AnyOf(vec![c]));
            }
        }
    }
    out
}

/// One tracepoint as a scan will open it: its format (or why it cannot
/// be read) and its kernel filter.
pub struct Planned {
    pub point: &'static Point,
    pub format: Result<Format, String>,
    /// Whether the kernel lacks it (said in one line, not an error).
    pub missing: bool,
    /// The errno behind a format that could not be read, and whether it
    /// was mounting tracefs that failed: kept so that the read's error
    /// still carries them (`capabilities.rs` names what was refused).
    pub errno: Option<i32>,
    pub no_tracefs: bool,
    pub filter: Filter,
}

/// What one scan of a tracepoint table reads.
pub struct TracePlan {
    pub points: Vec<Planned>,
    /// The namespaces the scan covers (`--all-netns`, a netns filter):
    /// the decoder keeps the events of these.
    pub targets: Vec<Netns>,
    pub all_netns: bool,
    pub bound: Option<Duration>,
    /// The session whose front end ends its streams (Ctrl-C).
    pub session: std::sync::Arc<streams::Streams>,
    /// When the kernel wakes the listener ([`Options::wakeup_bytes`]).
    /// The listen loop reads only when woken, so samples below the mark
    /// wait for more to come, and those still waiting when the stream
    /// ends are never read: a table of rare events (resets,
    /// retransmissions) sets 0, a wake-up on every sample.
    pub wakeup_bytes: u32,
}

impl TracePlan {
    /// Read the formats of `points` and make their kernel filters from the
    /// scan's filters. Nothing is opened yet; a failure waits for `read`.
    pub fn new(points: &'static [Point], scan: &Scan<'_>) -> TracePlan {
        let tracefs = Tracefs::open();
        let points = points
            .iter()
            .map(|point| {
                let format = match &tracefs {
                    Ok(t) => t.format(point.group, point.name),
                    Err(e) => Err(TraceError::NoTracefs(
                        e.errno()
                            .map_or_else(|| std::io::Error::other(e.to_string()), std::io::Error::from_raw_os_error),
                    )),
                };
                match format {
                    Ok(format) => {
                        let filter = kernel_filter(point, &format, scan.filters);
                        Planned { point, format: Ok(format), missing: false, errno: None, no_tracefs: false, filter }
                    }
                    Err(e) => Planned {
                        point,
                        missing: e.is_missing(),
                        errno: e.errno(),
                        no_tracefs: matches!(e, TraceError::NoTracefs(_)),
                        format: Err(e.to_string()),
                        filter: Filter::default(),
                    },
                }
            })
            .collect();
        TracePlan {
            points,
            targets: scan.targets(),
            all_netns: scan.options.all_netns(),
            bound: streams::bound(scan.options),
            session: scan.options.streams.clone(),
            wakeup_bytes: Options::default().wakeup_bytes,
        }
    }

    /// The tracepoints, their kernel filters and the bound, as EXPLAIN
    /// shows them: `skb:kfree_skb [reason == 2] netns=[current] for 10s`.
    pub fn label(&self, table: &str) -> String {
        let points: Vec<String> = self
            .points
            .iter()
            .map(|p| {
                let name = format!("{}:{}", p.point.group, p.point.name);
                match (&p.format, p.filter.is_empty()) {
                    (Err(_), _) => format!("{name} (unavailable)"),
                    (Ok(_), true) => name,
                    (Ok(_), false) => format!("{name} [{}]", p.filter),
                }
            })
            .collect();
        format!(
            "{table}: tracepoints {} {} {}",
            points.join(", "),
            if self.all_netns { "netns=all".to_string() } else { scope::describe(&self.targets) },
            streams::describe(self.bound)
        )
    }

    /// True if an event of namespace `netns` (None: unknown) belongs in
    /// this scan's rows. An event whose namespace is unknown is kept: the
    /// kernel did not say, and leaving it out could hide the one a query
    /// looks for (the tables' notes say so).
    pub fn covers(&self, netns: Option<u64>) -> bool {
        match netns {
            None => true,
            Some(n) => self.targets.iter().any(|t| t.inode == n),
        }
    }

    /// Open every tracepoint and listen until the bound, a LIMIT or
    /// Ctrl-C, handing each sample to `decode`, which appends a row with
    /// `out.end_row_in(failed)` or skips it. A tracepoint this kernel
    /// lacks is said once and yields nothing; if none is left, the table
    /// is empty. `what` names the events ("packet drops").
    pub fn read(
        &self,
        what: &str,
        out: &mut Emitter<'_>,
        decode: impl FnMut(&Hit<'_>, &mut Emitter<'_>, &mut Option<anyhow::Error>) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let mut requests: Vec<(&'static Point, &Format)> = Vec::new();
        let mut filters = Vec::new();
        for p in &self.points {
            match &p.format {
                Ok(f) => {
                    requests.push((p.point, f));
                    filters.push((!p.filter.is_empty()).then(|| p.filter.to_string()));
                }
                Err(e) if p.missing => sockql_collect::notice::note_once(
                    &format!("tracepoint-missing-{}-{}", p.point.group, p.point.name),
                    format!("{what}: {e}; its rows are missing"),
                ),
                Err(e) => {
                    let failed = anyhow::anyhow!("{what}: {e}");
                    return Err(match p.errno.map(std::io::Error::from_raw_os_error) {
                        Some(io) if p.no_tracefs => anyhow::Error::from(TraceError::NoTracefs(io)).context(failed),
                        Some(io) => anyhow::Error::from(io).context(failed),
                        None => failed,
                    });
                }
            }
        }
        if requests.is_empty() {
            return Ok(());
        }
        let reqs: Vec<Request<'_>> = requests
            .iter()
            .zip(&filters)
            .map(|((point, format), filter)| Request { group: point.group, format, filter: filter.as_deref() })
            .collect();
        let options = Options { wakeup_bytes: self.wakeup_bytes, ..Options::default() };
        let reader = TraceReader::open(&reqs, options).map_err(|e| {
            anyhow::Error::from(e).context(format!("listening for {what} (needs root: CAP_PERFMON or CAP_SYS_ADMIN)"))
        })?;
        let formats: Vec<(&'static Point, &Format)> = requests.iter().map(|&(p, f)| (p, f)).collect();
        let mut listening =
            Listening { reader, formats, offset: streams::realtime_offset_ns(), decode, what: what.to_string() };
        streams::note_start("listening", self.bound);
        let fd = listening.reader.raw_fd();
        // Samples below the ring's wake-up mark wake no one (a quiet
        // stream's, the last ones of a flood): they are read at every tick
        // (100 ms), so their rows come within it, and once more after the
        // bound, so none that happened within it is left unread.
        let state = RefCell::new((&mut listening, &mut *out));
        let read = || {
            let mut state = state.borrow_mut();
            let (listening, out) = &mut *state;
            listening.read_waiting(out)
        };
        streams::poll_for(
            &self.session,
            &[fd],
            self.bound,
            Duration::ZERO,
            |_| read(),
            || {
                if read()?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
                let mut state = state.borrow_mut();
                let (_, out) = &mut *state;
                out.tick()?;
                Ok(out.flow())
            },
        )?;
        if !out.done() {
            // The stream ends here whether or not a LIMIT is reached.
            let _ = listening.read_waiting(out)?;
        }
        let lost = listening.reader.lost();
        if lost > 0 {
            sockql_collect::notice::warn_once(
                &format!("{what}-lost"),
                format!("{what}: {lost} events lost: the kernel's ring was full; the overruns column counts them"),
            );
        }
        Ok(())
    }
}

/// One tracepoint hit, as a decoder sees it.
pub struct Hit<'a> {
    /// Which of the table's points fired.
    pub point: &'static Point,
    pub format: &'a Format,
    pub sample: &'a Sample<'a>,
    /// The kernel's time of the event, ns since the epoch (UTC).
    pub ts_ns: i64,
    /// Events the kernel had no room for by the time this hit was read
    /// ([`TraceReader::lost`]: the events' lost_samples, which count the
    /// losses at the end of a flood that PERF_RECORD_LOST never reports):
    /// the tables' `overruns` column.
    pub lost: u64,
}

/// The perf rings and the table's decoder.
struct Listening<'f, D> {
    reader: TraceReader,
    formats: Vec<(&'static Point, &'f Format)>,
    offset: i64,
    decode: D,
    what: String,
}

impl<D> Listener for Listening<'_, D>
where
    D: FnMut(&Hit<'_>, &mut Emitter<'_>, &mut Option<anyhow::Error>) -> ControlFlow<()>,
{
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.reader.raw_fd()
    }

    /// Perf says how many samples it lost, not how often: the count.
    fn overruns(&self) -> u64 {
        self.reader.lost()
    }

    fn read_waiting(&mut self, out: &mut Emitter<'_>) -> anyhow::Result<ControlFlow<()>> {
        let Listening { reader, formats, offset, decode, what } = self;
        let lost = reader.lost();
        let mut failed = None;
        reader
            .read_waiting(|s| {
                let Some(&(point, format)) = s.event_id().and_then(|id| formats.iter().find(|(_, f)| f.id == id))
                else {
                    return ControlFlow::Continue(());
                };
                let hit = Hit { point, format, sample: s, ts_ns: (s.time_ns as i64).saturating_add(*offset), lost };
                decode(&hit, out, &mut failed)
            })
            .map_err(|e| anyhow::Error::from(e).context(format!("reading {what}")))?;
        out.settle(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};
    use sockql_collect::trace::format::parse;

    const POINT: Point = Point {
        group: "skb",
        name: "kfree_skb",
        pushed: &[
            Pushed { column: "reason", field: "reason", value: Value::Symbol },
            Pushed { column: "ethertype", field: "protocol", value: Value::Int },
        ],
    };

    fn drops() -> Format {
        parse(include_str!("../../../tests/fixtures/tracepoints/skb_kfree_skb.format")).unwrap()
    }

    #[test]
    fn reasons_and_ranges_go_to_the_kernel_the_rest_stays() {
        let f = drops();
        let filters = vec![
            col("reason").in_list(vec![lit("NO_SOCKET"), lit("NETFILTER_DROP")], false),
            col("ethertype").between(lit(0x800), lit(0x86dd)),
            // Not pushed: another column, an unknown reason, an ordering of names.
            col("location").eq(lit("x")),
            col("reason").eq(lit("NO_SUCH_REASON")),
            col("reason").gt(lit("A")),
        ];
        let got = kernel_filter(&POINT, &f, &filters).to_string();
        let no_socket = f.symbols["reason"].entries.iter().find(|(_, n)| n == "NO_SOCKET").unwrap().0.clone();
        let sockql_collect::trace::format::Key::Value(ns) = no_socket else { panic!() };
        assert!(got.starts_with(&format!("(reason == {ns} || reason == ")), "{got}");
        assert!(got.ends_with(") && protocol >= 2048 && protocol <= 34525"), "{got}");
    }

    #[test]
    fn tcp_states_are_the_kernel_numbers() {
        let f = parse(include_str!("../../../tests/fixtures/tracepoints/tcp_tcp_retransmit_skb.format")).unwrap();
        const TCP: Point = Point {
            group: "tcp",
            name: "tcp_retransmit_skb",
            pushed: &[Pushed { column: "state", field: "state", value: Value::TcpState }],
        };
        let filters = vec![col("state").in_list(vec![lit("ESTAB"), lit("SYN-SENT")], false)];
        assert_eq!(kernel_filter(&TCP, &f, &filters).to_string(), "state == 1 || state == 2");
        // SYN-RECV is two kernel states: user space decides.
        assert!(kernel_filter(&TCP, &f, &[col("state").eq(lit("SYN-RECV"))]).is_empty());
    }
}
