//! A counter's running totals: what each window of its query returned,
//! added up per label set since `serve` started, and written as Prometheus
//! counters. Pure: it adds what it is given (tested on hand-made batches);
//! `counters.rs` runs the windows.
//!
//! Bounded against hostile label cardinality (one label value per remote
//! port, per pid, per command line): at most `cap` label sets (--max-series)
//! and `max_bytes` of label text are kept. A label set that arrives past
//! either is folded into one series whose every label is `other`, so the
//! family's sum stays right, and each fold is counted
//! (`sockql_stream_series_dropped_total`: label sets folded, once per
//! window they appeared in).

use std::collections::BTreeMap;
use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::exposition::{self, Format};
use crate::query::saved::MetricDecl;

/// The label value of the series past the cap.
pub const OTHER: &str = "other";

/// Which columns of the query's rows are labels and which are values
/// (as for every metric report: text and booleans label, numbers count).
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    labels: Vec<(usize, String)>,
    /// Column index and family name (the metric's name, or with several
    /// value columns the metric's name and the column's).
    values: Vec<(usize, String)>,
}

impl Shape {
    fn of(decl: &MetricDecl, schema: &Schema) -> anyhow::Result<Self> {
        let fields = schema.fields().iter().enumerate();
        let labels = fields
            .clone()
            .filter(|(_, f)| exposition::is_label(f.data_type()))
            .map(|(i, f)| (i, exposition::label_name(f.name())))
            .collect();
        let numeric: Vec<(usize, &str)> =
            fields.filter(|(_, f)| exposition::is_value(f.data_type())).map(|(i, f)| (i, f.name().as_str())).collect();
        if numeric.is_empty() {
            anyhow::bail!("metric {}: the query has no numeric column to count", decl.name);
        }
        let one = numeric.len() == 1;
        let values = numeric
            .into_iter()
            .map(|(i, name)| {
                (i, if one { decl.name.clone() } else { format!("{}_{}", decl.name, exposition::label_name(name)) })
            })
            .collect();
        Ok(Shape { labels, values })
    }
}

/// The totals of one counter.
#[derive(Debug)]
pub struct Totals {
    decl: MetricDecl,
    shape: Option<Shape>,
    series: BTreeMap<Vec<String>, Vec<f64>>,
    other: Option<Vec<f64>>,
    cap: usize,
    max_bytes: usize,
    held: usize,
    folded: u64,
}

/// Bytes a kept series is counted as beyond its label text.
const SERIES_OVERHEAD: usize = 64;

impl Totals {
    pub fn new(decl: MetricDecl, cap: usize, max_bytes: usize) -> Self {
        Totals { decl, shape: None, series: BTreeMap::new(), other: None, cap, max_bytes, held: 0, folded: 0 }
    }

    /// Label sets folded into the `other` series so far.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// True once a window told which columns are labels and values.
    pub fn has_shape(&self) -> bool {
        self.shape.is_some()
    }

    /// Label sets kept (the `other` series not counted).
    #[cfg(test)]
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Bytes of label text (and per-series overhead) kept.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held
    }

    /// A window's result begins: the first fixes which columns are labels
    /// and values; a later one must have the same.
    pub fn start(&mut self, schema: &Schema) -> anyhow::Result<()> {
        let shape = Shape::of(&self.decl, schema)?;
        match &self.shape {
            None => self.shape = Some(shape),
            Some(known) if *known == shape => {}
            Some(_) => anyhow::bail!("metric {}: the query's columns changed between windows", self.decl.name),
        }
        Ok(())
    }

    /// Add one batch of a window's result. Values that are null, negative
    /// or not finite are not added: a counter never goes down.
    pub fn add(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let shape = self.shape.as_ref().ok_or_else(|| anyhow::anyhow!("a batch before its schema"))?;
        let column =
            |i: usize| batch.columns().get(i).cloned().ok_or_else(|| anyhow::anyhow!("a batch without column {i}"));
        let labels = shape
            .labels
            .iter()
            .map(|&(i, _)| Ok(datafusion::arrow::compute::cast(&column(i)?, &DataType::Utf8)?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let values = shape
            .values
            .iter()
            .map(|&(i, _)| Ok(datafusion::arrow::compute::cast(&column(i)?, &DataType::Float64)?))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let width = values.len();
        for row in 0..batch.num_rows() {
            let add: Vec<f64> = values
                .iter()
                .map(|v| {
                    let v = v.as_primitive::<Float64Type>();
                    if v.is_valid(row) && v.value(row).is_finite() && v.value(row) > 0.0 {
                        v.value(row)
                    } else {
                        0.0
                    }
                })
                .collect();
            let key: Vec<String> = labels
                .iter()
                .map(|l| {
                    let l = l.as_string::<i32>();
                    if l.is_valid(row) {
                        l.value(row).to_string()
                    } else {
                        String::new()
                    }
                })
                .collect();
            let into = match self.series.get_mut(&key) {
                Some(kept) => kept,
                None => {
                    let bytes = SERIES_OVERHEAD + key.iter().map(|k| k.len() + 24).sum::<usize>();
                    if self.series.len() < self.cap && self.held + bytes <= self.max_bytes {
                        self.held += bytes;
                        self.series.entry(key).or_insert_with(|| vec![0.0; width])
                    } else {
                        self.folded += 1;
                        self.other.get_or_insert_with(|| vec![0.0; width])
                    }
                }
            };
            for (total, a) in into.iter_mut().zip(add) {
                *total += a;
            }
        }
        Ok(())
    }

    /// The families, one per value column: nothing before the first
    /// window has told which columns there are.
    pub fn write(&self, format: Format, out: &mut String) {
        let Some(shape) = &self.shape else { return };
        for (k, (_, family)) in shape.values.iter().enumerate() {
            let (family, sample) = exposition::counter_names(family, format);
            let _ =
                write!(out, "# HELP {family} {}\n# TYPE {family} counter\n", exposition::escape_help(&self.decl.help));
            let other = self.other.as_ref().map(|v| (vec![OTHER.to_string(); shape.labels.len()], v));
            for (key, totals) in self.series.iter().chain(other.as_ref().map(|(k, v)| (k, *v))) {
                out.push_str(&sample);
                if !shape.labels.is_empty() {
                    out.push('{');
                    for (n, ((_, name), value)) in shape.labels.iter().zip(key).enumerate() {
                        if n > 0 {
                            out.push(',');
                        }
                        out.push_str(name);
                        out.push_str("=\"");
                        exposition::escape_label(value, out);
                        out.push('"');
                    }
                    out.push('}');
                }
                out.push(' ');
                exposition::write_value(totals.get(k).copied().unwrap_or(0.0), out);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;

    use super::*;
    use crate::query::saved::MetricKind;

    fn decl() -> MetricDecl {
        MetricDecl { name: "sockql_execs".into(), kind: MetricKind::Counter, help: "Execs".into() }
    }

    fn window(names: Vec<Option<&str>>, values: Vec<Option<i64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("process", DataType::Utf8, true),
            Field::new("value", DataType::Int64, true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(names)), Arc::new(Int64Array::from(values))])
            .unwrap()
    }

    fn add(t: &mut Totals, b: RecordBatch) {
        t.start(&b.schema()).unwrap();
        t.add(&b).unwrap();
    }

    #[test]
    fn windows_add_up_per_label_set_and_never_go_down() {
        let mut t = Totals::new(decl(), 10, 1 << 20);
        let mut out = String::new();
        t.write(Format::Text, &mut out);
        assert_eq!(out, "", "nothing before the first window");
        add(&mut t, window(vec![Some("a"), Some("b\"\n")], vec![Some(2), Some(1)]));
        add(&mut t, window(vec![Some("a"), None], vec![Some(3), Some(-5)]));
        add(&mut t, window(vec![Some("b\"\n")], vec![None]));
        t.write(Format::Text, &mut out);
        assert_eq!(
            out,
            "# HELP sockql_execs_total Execs\n# TYPE sockql_execs_total counter\n\
             sockql_execs_total{process=\"\"} 0\nsockql_execs_total{process=\"a\"} 5\n\
             sockql_execs_total{process=\"b\\\"\\n\"} 1\n"
        );
        let mut om = String::new();
        t.write(Format::OpenMetrics, &mut om);
        assert!(om.starts_with("# HELP sockql_execs Execs\n# TYPE sockql_execs counter\nsockql_execs_total{"), "{om}");
    }

    #[test]
    fn label_sets_past_the_cap_fold_into_other_and_are_counted() {
        let mut t = Totals::new(decl(), 2, 1 << 20);
        add(&mut t, window(vec![Some("a"), Some("b"), Some("c"), Some("d")], vec![Some(1), Some(1), Some(1), Some(4)]));
        add(&mut t, window(vec![Some("a"), Some("e")], vec![Some(1), Some(10)]));
        assert_eq!((t.series(), t.folded()), (2, 3));
        let mut out = String::new();
        t.write(Format::Text, &mut out);
        assert!(
            out.ends_with(
                "{process=\"a\"} 2\nsockql_execs_total{process=\"b\"} 1\nsockql_execs_total{process=\"other\"} 15\n"
            ),
            "{out}"
        );
        // Label text is bounded too: a set that does not fit folds.
        let mut small = Totals::new(decl(), 100, 100);
        let long = "x".repeat(200);
        add(&mut small, window(vec![Some("a"), Some(&long)], vec![Some(1), Some(1)]));
        assert_eq!((small.series(), small.folded()), (1, 1));
        assert!(small.held() <= 100);
    }

    #[test]
    fn a_window_with_other_columns_is_refused() {
        let mut t = Totals::new(decl(), 10, 1 << 20);
        add(&mut t, window(vec![Some("a")], vec![Some(1)]));
        let other = Schema::new(vec![Field::new("n", DataType::Int64, true)]);
        assert!(t.start(&other).is_err());
    }
}
