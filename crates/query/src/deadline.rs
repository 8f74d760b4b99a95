//! Scalar functions held to --timeout: a run's deadline reaches every
//! function call, a batch is evaluated in row chunks with the deadline
//! checked between them, and a function whose one call is super-linear
//! in its arguments is refused before it starts when that call alone
//! would take long.
//!
//! DataFusion stops a query between batches (dropping its stream), but a
//! scalar function runs to the end of its batch once called, and a
//! constant expression is evaluated while planning: `levenshtein` of two
//! 8 MB strings ran for hours past `--timeout 3s`, holding the query
//! thread, its query slot and a core. Stopping cooperatively keeps the
//! process (query/budget.rs says why not a killable worker).
//!
//! Measured on the debug build (release is several times faster), one
//! call of each on one row:
//!
//! | call                                                        | time    |
//! |-------------------------------------------------------------|---------|
//! | levenshtein, 3000 × 3000 bytes                              | 0.21 s  |
//! | strpos/instr, 3 MB haystack × 3 KB needle (naive search)    | 0.8 s   |
//! | strpos, 30 MB × 1 MB                                        | > 30 s  |
//! | ltrim, 30 KB text × 30 KB character set                     | 6.1 s   |
//! | regexp_like, 1 MB × 6 KB pattern                            | 4.0 s   |
//! | regexp_count, 20 MB, `[ab]`                                 | 7.5 s   |
//! | lpad to 100 MB / repeat to 100 MB                           | 2.8 s / 0.5 s |
//! | translate / replace / concat, 30–100 MB                     | 0.8–1.3 s |
//! | overlay, substr_index, split_part, contains, find_in_set, to_char, initcap | linear, < 0.7 s at 10–30 MB |
//!
//! The linear ones are bounded per row by the size of their values (which
//! --memory-limit bounds) and per batch by chunking. The super-linear
//! ones get a bound on one call ([`work_bound`]).

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::concat;
use datafusion::common::config::{ConfigEntry, ConfigExtension, ConfigOptions, ExtensionOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl};
use datafusion::scalar::ScalarValue;

use super::budget::{sizes, PerRow};
use super::engine::TimedOut;

/// When one run must stop: its --timeout, or as soon as its caller stops
/// listening (a dropped stream: Ctrl-C, a closed client). It travels in
/// the run's session config, so DataFusion hands it to every function it
/// evaluates, while planning (constant folding) and while executing, on
/// whichever thread that happens.
#[derive(Debug, Clone, Default)]
pub struct Deadline {
    at: Option<(Instant, Duration)>,
    stopped: Arc<AtomicBool>,
}

/// A run whose caller stopped listening (no one sees this error).
#[derive(Debug, thiserror::Error)]
#[error("query abandoned")]
pub struct Stopped;

impl Deadline {
    /// From now, `timeout` (None: only [`Deadline::stop`] ends it).
    pub fn new(timeout: Option<Duration>) -> Self {
        Deadline { at: timeout.map(|t| (Instant::now() + t, t)), stopped: Arc::default() }
    }

    /// When it passes, and the timeout it was made from.
    pub fn at(&self) -> Option<(Instant, Duration)> {
        self.at
    }

    /// The caller stopped listening: every function of the run stops at
    /// its next check.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Resolves when the deadline passes (never without one): the query
    /// thread waits on its client's reading and on DataFusion's next batch
    /// no longer than this, so a client that stops reading, or a plan that
    /// computes without calling a function, cannot keep the run (and the
    /// slot its thread holds) past --timeout.
    pub async fn passed(&self) {
        match self.at {
            Some((at, _)) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
            None => std::future::pending().await,
        }
    }

    /// The error of a run its deadline ended.
    pub fn timed_out(&self) -> crate::Error {
        super::engine::timed_out(self.at.map(|(_, t)| t).unwrap_or_default())
    }

    /// An error once the run must stop: [`TimedOut`] past the deadline.
    pub fn check(&self) -> Result<()> {
        if let Some((at, t)) = self.at {
            if Instant::now() >= at {
                return Err(DataFusionError::External(Box::new(TimedOut(t))));
            }
        }
        if self.stopped.load(Ordering::Relaxed) {
            return Err(DataFusionError::External(Box::new(Stopped)));
        }
        Ok(())
    }

    /// The run's deadline in a session's config (None outside a run).
    pub fn of(config: &ConfigOptions) -> Option<&Deadline> {
        config.extensions.get::<Deadline>()
    }
}

impl ConfigExtension for Deadline {
    const PREFIX: &'static str = "sockql_deadline";
}

/// Not a setting: `SET` cannot change it and `SHOW ALL` does not list it.
impl ExtensionOptions for Deadline {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }
    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        Err(DataFusionError::Configuration(format!("{}.{key} cannot be set", Self::PREFIX)))
    }
    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

/// One call of a function would do more work than one call may.
#[derive(Debug, thiserror::Error)]
#[error("{name} would take {work} steps ({what}); one call may take at most {bound}, to stay within --timeout")]
pub struct TooMuchWork {
    name: String,
    work: u128,
    what: &'static str,
    bound: u128,
}

/// Bytes of input a chunk of a linear function takes at most: in the
/// debug build the slowest linear function measured (regexp_count, 370 ns
/// a byte) spends about a second on this.
const CHUNK_BYTES: u128 = 2 << 20;

/// The work of one call of a super-linear function, per row, and the most
/// one call (and one chunk of a batch) may do: each bound keeps one call
/// to about 0.2–0.7 s in the debug build (see the module table), a tenth
/// of that in release. None for the other functions.
fn work_bound(name: &str, args: &[ColumnarValue]) -> Result<Option<(PerRow, u128, &'static str)>> {
    let product = |i: usize, j: usize| -> Result<Option<PerRow>> {
        let (Some(a), Some(b)) = (args.get(i), args.get(j)) else { return Ok(None) };
        let (a, b) = (bytes(a)?, bytes(b)?);
        let rows = a.len().max(b.len());
        Ok(Some(PerRow((0..rows).map(|r| a.at(r).saturating_mul(b.at(r).max(1))).collect())))
    };
    let (work, bound, what) = match name {
        // Wagner-Fischer: one step a pair of characters (22 ns in debug).
        "levenshtein" => (product(0, 1)?, 10_000_000, "bytes of the first string × bytes of the second"),
        // A naive search: the needle compared at every place its first
        // byte occurs (memcmp, 0.1 ns a byte).
        "strpos" | "instr" | "position" => {
            (product(0, 1)?, 2_000_000_000, "bytes of the string × bytes of the substring")
        }
        // Each trimmed character looked up in the set (7 ns in debug).
        "ltrim" | "rtrim" | "btrim" | "trim" => {
            (product(0, 1)?, 50_000_000, "bytes of the string × bytes of the characters to trim")
        }
        // The regex engines guarantee time linear in text × pattern
        // (0.7 ns a step in debug for a large pattern).
        "regexp_like" | "regexp_count" | "regexp_match" | "regexp_replace" | "regexp_instr" | "regexp_substr" => {
            (product(0, 1)?, 1_000_000_000, "bytes of the text × bytes of the pattern")
        }
        _ => return Ok(None),
    };
    Ok(work.map(|w| (w, bound, what)))
}

/// Bytes of each value of an argument (a constant: one number).
fn bytes(v: &ColumnarValue) -> Result<PerRow> {
    match v {
        ColumnarValue::Array(a) => sizes(a),
        ColumnarValue::Scalar(s) => Ok(PerRow(vec![scalar_bytes(s)])),
    }
}

fn scalar_bytes(s: &ScalarValue) -> u128 {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_ref().map_or(0, |s| s.len() as u128)
        }
        ScalarValue::Binary(v) | ScalarValue::LargeBinary(v) | ScalarValue::BinaryView(v) => {
            v.as_ref().map_or(0, |s| s.len() as u128)
        }
        other => other.size() as u128,
    }
}

/// Evaluate `inner` on `args` within the run's deadline: refused if one
/// call is past its [`work_bound`]; in row chunks of bounded work (and of
/// at most [`CHUNK_BYTES`] of arguments) with the deadline checked before
/// each; at once when the batch is one chunk.
pub(crate) fn invoke_within_deadline(inner: &dyn ScalarUDFImpl, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
    let deadline = Deadline::of(&args.config_options).cloned();
    if let Some(d) = &deadline {
        d.check()?;
    }
    let name = inner.name();
    let rows = args.number_rows;
    let mut measures: Vec<(PerRow, u128)> = Vec::new();
    if let Some((work, bound, what)) = work_bound(name, &args.args)? {
        if let Some(most) = work.0.iter().copied().max().filter(|&w| w > bound) {
            let e = TooMuchWork { name: name.to_string(), work: most, what, bound };
            return Err(DataFusionError::External(Box::new(e)));
        }
        measures.push((work, bound));
    }
    let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    if all_scalar {
        return inner.invoke_with_args(args);
    }
    let held: u128 = args
        .args
        .iter()
        .map(|a| match a {
            ColumnarValue::Array(a) => a.get_array_memory_size() as u128,
            ColumnarValue::Scalar(s) => scalar_bytes(s).saturating_mul(rows as u128),
        })
        .fold(0, u128::saturating_add);
    if held > CHUNK_BYTES {
        let mut each = PerRow(vec![0]);
        for a in &args.args {
            let b = bytes(a)?;
            let n = each.len().max(b.len());
            each = PerRow((0..n).map(|r| each.at(r).saturating_add(b.at(r))).collect());
        }
        measures.push((each, CHUNK_BYTES));
    }
    let chunks = chunks(rows, &measures);
    if chunks.len() <= 1 {
        return inner.invoke_with_args(args);
    }
    let mut parts: Vec<ArrayRef> = Vec::with_capacity(chunks.len());
    for (start, len) in chunks {
        if let Some(d) = &deadline {
            d.check()?;
        }
        let part = ScalarFunctionArgs {
            args: args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Array(a) => ColumnarValue::Array(a.slice(start, len)),
                    s => s.clone(),
                })
                .collect(),
            arg_fields: args.arg_fields.clone(),
            number_rows: len,
            return_field: args.return_field.clone(),
            config_options: args.config_options.clone(),
        };
        parts.push(inner.invoke_with_args(part)?.into_array(len)?);
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    Ok(ColumnarValue::Array(concat(&refs)?))
}

/// Rows cut into runs within every (work per row, most a run may take)
/// measure (a row past one alone), as (first row, rows).
fn chunks(rows: usize, measures: &[(PerRow, u128)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sums = vec![0u128; measures.len()];
    for r in 0..rows {
        let over = measures.iter().zip(&sums).any(|((w, budget), sum)| sum.saturating_add(w.at(r)) > *budget);
        if r > start && over {
            out.push((start, r - start));
            start = r;
            sums.iter_mut().for_each(|s| *s = 0);
        }
        for ((w, _), sum) in measures.iter().zip(sums.iter_mut()) {
            *sum = sum.saturating_add(w.at(r));
        }
    }
    if rows > start {
        out.push((start, rows - start));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_rows_by_work() {
        assert_eq!(chunks(5, &[(PerRow(vec![4]), 10)]), vec![(0, 2), (2, 2), (4, 1)]);
        assert_eq!(chunks(3, &[(PerRow(vec![1, 50, 1]), 10)]), vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(chunks(3, &[(PerRow(vec![1]), 10)]), vec![(0, 3)]);
        assert_eq!(chunks(3, &[]), vec![(0, 3)]);
        assert_eq!(chunks(4, &[(PerRow(vec![1]), 10), (PerRow(vec![1, 9, 1, 1]), 10)]), vec![(0, 2), (2, 2)]);
        assert_eq!(chunks(0, &[(PerRow(vec![1]), 10)]), Vec::<(usize, usize)>::new());
    }

    #[test]
    fn a_deadline_passes() {
        assert!(Deadline::new(None).check().is_ok());
        let d = Deadline::new(Some(Duration::ZERO));
        let e = d.check().unwrap_err();
        assert!(matches!(&e, DataFusionError::External(inner) if inner.is::<TimedOut>()), "{e}");
        let d = Deadline::new(Some(Duration::from_secs(60)));
        d.clone().stop();
        assert!(d.check().is_err());
    }
}
