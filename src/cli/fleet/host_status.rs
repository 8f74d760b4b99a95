//! What each host did in the last fleet query: the `fleet_hosts` table,
//! and the one stderr line naming the hosts that did not answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::hosts_file::Host;

/// How a host's part of a query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not asked yet in this session.
    Idle,
    Ok,
    /// No answer within --hosts-timeout.
    Timeout,
    /// The connection was refused (nothing listening, or a firewall's reset).
    Refused,
    /// The host refused our password.
    Auth,
    /// Anything else: the host's error, TLS, a broken answer.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Ok => "ok",
            State::Timeout => "timeout",
            State::Refused => "refused",
            State::Auth => "auth",
            State::Failed => "failed",
        }
    }
}

/// One host's last run.
#[derive(Debug, Clone)]
struct Entry {
    state: State,
    error: Option<String>,
    rows: u64,
    elapsed: Duration,
    /// The run it belongs to ([`Statuses::begin_run`]).
    run: u64,
}

/// The hosts' statuses, shared by every executor of the session.
#[derive(Debug)]
pub struct Statuses {
    hosts: Vec<Host>,
    entries: Vec<Mutex<Entry>>,
    run: AtomicU64,
}

/// A failed host's error, kept short: it is printed on one line per host.
const MAX_ERROR: usize = 200;

impl Statuses {
    pub fn new(hosts: Vec<Host>) -> Arc<Self> {
        let idle = || Mutex::new(Entry { state: State::Idle, error: None, rows: 0, elapsed: Duration::ZERO, run: 0 });
        Arc::new(Statuses { entries: hosts.iter().map(|_| idle()).collect(), hosts, run: AtomicU64::new(0) })
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// A new run (one invocation's SQL): what hosts report from now on
    /// belongs to it.
    pub fn begin_run(&self) -> u64 {
        self.run.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Host `i`'s part of a query started: it counts as asked in this run.
    pub fn started(&self, i: usize) {
        let run = self.run.load(Ordering::SeqCst);
        if let Some(Ok(mut e)) = self.entries.get(i).map(|m| m.lock()) {
            if e.run != run {
                *e = Entry { state: State::Ok, error: None, rows: 0, elapsed: Duration::ZERO, run };
            }
        }
    }

    /// Host `i`'s part of a query ended; a host asked twice in one run
    /// (a join of two tables) keeps its worst outcome and its rows add.
    pub fn finished(&self, i: usize, state: State, error: Option<String>, rows: u64, elapsed: Duration) {
        let run = self.run.load(Ordering::SeqCst);
        let Some(Ok(mut e)) = self.entries.get(i).map(|m| m.lock()) else { return };
        if e.run != run {
            *e = Entry { state: State::Ok, error: None, rows: 0, elapsed: Duration::ZERO, run };
        }
        e.rows += rows;
        e.elapsed = e.elapsed.max(elapsed);
        if e.state == State::Ok && state != State::Ok {
            e.state = state;
            e.error = error.map(|s| one_line(&s));
        }
    }

    /// The hosts of `run` that did not answer fully: (name, state, error).
    pub fn missing(&self, run: u64) -> Vec<(String, State, Option<String>)> {
        self.hosts
            .iter()
            .zip(&self.entries)
            .filter_map(|(h, m)| {
                let e = m.lock().ok()?;
                (e.run == run && e.state != State::Ok).then(|| (h.name.clone(), e.state, e.error.clone()))
            })
            .collect()
    }

    /// How many hosts `run` asked.
    pub fn asked(&self, run: u64) -> usize {
        self.entries.iter().filter(|m| m.lock().is_ok_and(|e| e.run == run)).count()
    }

    fn batch(&self) -> datafusion::error::Result<RecordBatch> {
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .map(|m| m.lock().map(|e| e.clone()).unwrap_or_else(|p| p.into_inner().clone()))
            .collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(self.hosts.iter().map(|h| h.name.as_str()))),
            Arc::new(StringArray::from_iter_values(self.hosts.iter().map(|h| h.target.as_str()))),
            Arc::new(StringArray::from_iter_values(entries.iter().map(|e| e.state.as_str()))),
            Arc::new(StringArray::from_iter(entries.iter().map(|e| e.error.as_deref()))),
            Arc::new(UInt64Array::from_iter_values(entries.iter().map(|e| e.rows))),
            Arc::new(UInt64Array::from_iter_values(
                entries.iter().map(|e| u64::try_from(e.elapsed.as_millis()).unwrap_or(u64::MAX)),
            )),
        ];
        Ok(RecordBatch::try_new(schema(), cols)?)
    }
}

/// The one line on stderr for a partial answer.
pub fn partial_line(missing: &[(String, State, Option<String>)], asked: usize) -> String {
    let named: Vec<String> = missing
        .iter()
        .map(|(name, state, error)| match error {
            Some(e) => format!("{name} ({}: {e})", state.as_str()),
            None => format!("{name} ({})", state.as_str()),
        })
        .collect();
    format!("sockql: partial answer: {} of {asked} hosts did not answer: {}", missing.len(), named.join(", "))
}

/// Control characters out, and a bound: a host's error is its own text.
fn one_line(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.len() > MAX_ERROR {
        let mut cut = MAX_ERROR;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("host", DataType::Utf8, false),
        Field::new("addr", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("rows", DataType::UInt64, false),
        Field::new("elapsed_ms", DataType::UInt64, false),
    ]))
}

/// `fleet_hosts`: read when scanned, so a later statement of the same
/// session sees the statuses of the queries before it.
#[derive(Debug)]
pub struct FleetHostsTable(pub Arc<Statuses>);

#[async_trait::async_trait]
impl TableProvider for FleetHostsTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let table = MemTable::try_new(schema(), vec![vec![self.0.batch()?]])?;
        table.scan(state, projection, filters, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_outcome_and_rows_add() {
        let hosts = super::super::hosts_file::parse("127.0.0.1:1 a\n127.0.0.1:2 b\n").unwrap();
        let s = Statuses::new(hosts);
        let run = s.begin_run();
        s.started(0);
        s.finished(0, State::Ok, None, 3, Duration::from_millis(5));
        s.finished(0, State::Timeout, Some("late\nline".into()), 1, Duration::from_millis(9));
        s.finished(1, State::Ok, None, 2, Duration::from_millis(1));
        let missing = s.missing(run);
        assert_eq!(missing, vec![("a".to_string(), State::Timeout, Some("late line".to_string()))]);
        assert_eq!(s.asked(run), 2);
        assert_eq!(
            partial_line(&missing, 2),
            "sockql: partial answer: 1 of 2 hosts did not answer: a (timeout: late line)"
        );
        let b = s.batch().unwrap();
        let rows = b.column(4).as_any().downcast_ref::<UInt64Array>().unwrap();
        assert_eq!(rows.values(), &[4, 2]);
    }
}
