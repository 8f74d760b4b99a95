//! Query results as Prometheus metric families, in the text exposition
//! format (0.0.4) or OpenMetrics 1.0: text columns are labels, numeric
//! columns values. Pure: it formats what it is given, so it is tested on
//! hand-made batches; the server decides what to run.

use std::fmt::Write;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::record_batch::RecordBatch;

use crate::query::saved::{MetricDecl, MetricKind};

/// Which format a scraper asked for (its Accept header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A label name from a column name: Prometheus allows [a-zA-Z_][a-zA-Z0-9_]*,
/// and names starting with __ are reserved.
pub fn label_name(column: &str) -> String {
    let mut out: String = column.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    while out.starts_with("__") {
        out.remove(0);
    }
    out
}

/// A label value as the formats quote it: backslash, double quote and
/// newline escaped (process names and command lines are hostile input).
pub(crate) fn escape_label(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text: backslash and newline escaped.
pub(crate) fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

pub(crate) fn is_label(ty: &DataType) -> bool {
    matches!(ty, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean)
}

pub(crate) fn is_value(ty: &DataType) -> bool {
    ty.is_numeric()
}

/// A number as the formats write it.
pub(crate) fn write_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A counter's family and sample names: the text format names both
/// `NAME_total`; OpenMetrics names the family `NAME` and its sample
/// `NAME_total`.
pub fn counter_names(name: &str, format: Format) -> (String, String) {
    let base = name.strip_suffix("_total").unwrap_or(name);
    let sample = format!("{base}_total");
    match format {
        Format::Text => (sample.clone(), sample),
        Format::OpenMetrics => (base.to_string(), sample),
    }
}

/// What writing one query's families found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub series: usize,
    /// Series left out past the cap.
    pub dropped: usize,
}

/// One family being written: its name, sample name and lines so far.
struct Family {
    column: usize,
    head: String,
    sample: String,
    lines: String,
    series: usize,
}

/// `decl`'s families, written batch by batch as a query's rows arrive:
/// a scrape holds one batch and at most `max_series` lines per family,
/// never the whole result. One value column: the family is `decl.name`;
/// several: `decl.name` + `_` + column, one family each. Rows past the cap
/// are only counted ([`Written::dropped`]), not formatted.
pub struct Families {
    labels: Vec<(usize, String)>,
    families: Vec<Family>,
    max_series: usize,
    dropped: usize,
}

impl Families {
    pub fn new(
        decl: &MetricDecl,
        schema: &datafusion::arrow::datatypes::Schema,
        max_series: usize,
        format: Format,
    ) -> anyhow::Result<Self> {
        let labels: Vec<(usize, String)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| is_label(f.data_type()))
            .map(|(i, f)| (i, label_name(f.name())))
            .collect();
        let values: Vec<(usize, &str)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| is_value(f.data_type()))
            .map(|(i, f)| (i, f.name().as_str()))
            .collect();
        if values.is_empty() {
            anyhow::bail!("metric {}: the query has no numeric column to use as the value", decl.name);
        }
        let families = values
            .iter()
            .map(|&(column, name)| {
                let family =
                    if values.len() == 1 { decl.name.clone() } else { format!("{}_{}", decl.name, label_name(name)) };
                let (family, sample, type_name) = match decl.kind {
                    MetricKind::Gauge => (family.clone(), family, "gauge"),
                    MetricKind::Counter => {
                        let (family, sample) = counter_names(&family, format);
                        (family, sample, "counter")
                    }
                };
                let head = format!("# HELP {family} {}\n# TYPE {family} {type_name}\n", escape_help(&decl.help));
                Family { column, head, sample, lines: String::new(), series: 0 }
            })
            .collect();
        Ok(Families { labels, families, max_series, dropped: 0 })
    }

    /// Bytes of text held so far (what a scrape reserves for it).
    pub fn held(&self) -> usize {
        self.families.iter().map(|f| f.head.len() + f.lines.len()).sum()
    }

    /// Write the series of one batch, up to the cap of each family.
    pub fn add(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        let column =
            |i: usize| batch.columns().get(i).cloned().ok_or_else(|| anyhow::anyhow!("a batch without column {i}"));
        // Label text is cast once per batch, and only while some family
        // still takes series.
        let mut label_text: Option<Vec<_>> = None;
        for family in &mut self.families {
            let value = datafusion::arrow::compute::cast(&column(family.column)?, &DataType::Float64)?;
            let value = value.as_primitive::<Float64Type>();
            let present = batch.num_rows() - value.null_count();
            let room = self.max_series - family.series.min(self.max_series);
            if room == 0 {
                self.dropped += present;
                continue;
            }
            let label_text = match &mut label_text {
                Some(text) => &*text,
                None => {
                    let cast = self
                        .labels
                        .iter()
                        .map(|&(i, _)| Ok(datafusion::arrow::compute::cast(&column(i)?, &DataType::Utf8)?))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    &*label_text.insert(cast)
                }
            };
            let out = &mut family.lines;
            for row in 0..batch.num_rows() {
                if value.is_null(row) {
                    continue;
                }
                if family.series == self.max_series {
                    self.dropped += 1;
                    continue;
                }
                family.series += 1;
                out.push_str(&family.sample);
                if !self.labels.is_empty() {
                    out.push('{');
                    for (k, ((_, name), text)) in self.labels.iter().zip(label_text).enumerate() {
                        if k > 0 {
                            out.push(',');
                        }
                        out.push_str(name);
                        out.push_str("=\"");
                        let text = text.as_string::<i32>();
                        if text.is_valid(row) {
                            escape_label(text.value(row), out);
                        }
                        out.push('"');
                    }
                    out.push('}');
                }
                out.push(' ');
                write_value(value.value(row), out);
                out.push('\n');
            }
        }
        Ok(())
    }

    /// The families' text, in column order, and what was written.
    pub fn finish(self, out: &mut String) -> Written {
        let mut written = Written { series: 0, dropped: self.dropped };
        for family in self.families {
            out.push_str(&family.head);
            out.push_str(&family.lines);
            written.series += family.series;
        }
        written
    }
}

/// Write `decl`'s families from a query's whole result (see [`Families`]).
pub fn write_families(
    decl: &MetricDecl,
    schema: &datafusion::arrow::datatypes::Schema,
    batches: &[RecordBatch],
    max_series: usize,
    format: Format,
    out: &mut String,
) -> anyhow::Result<Written> {
    let mut families = Families::new(decl, schema, max_series, format)?;
    for batch in batches {
        families.add(batch)?;
    }
    Ok(families.finish(out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn decl(kind: MetricKind) -> MetricDecl {
        MetricDecl { name: "sockql_x".into(), kind, help: "Help with a \\ and\na newline".into() }
    }

    fn batch(names: Vec<Option<&str>>, values: Vec<Option<u64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("process", DataType::Utf8, true),
            Field::new("sockets", DataType::UInt64, true),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(names)), Arc::new(UInt64Array::from(values))])
            .unwrap()
    }

    #[test]
    fn hostile_process_names_are_escaped_and_nulls_handled() {
        let b = batch(vec![Some("a\"b\\c\nd"), None, Some("gone")], vec![Some(3), Some(1), None]);
        let mut out = String::new();
        let w = write_families(
            &decl(MetricKind::Gauge),
            &b.schema(),
            std::slice::from_ref(&b),
            100,
            Format::Text,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            "# HELP sockql_x Help with a \\\\ and\\na newline\n# TYPE sockql_x gauge\n\
             sockql_x{process=\"a\\\"b\\\\c\\nd\"} 3\nsockql_x{process=\"\"} 1\n"
        );
        assert_eq!(w, Written { series: 2, dropped: 0 });
    }

    #[test]
    fn series_past_the_cap_are_counted_not_written() {
        let b = batch(vec![Some("a"), Some("b"), Some("c")], vec![Some(1), Some(2), Some(3)]);
        let mut out = String::new();
        let w =
            write_families(&decl(MetricKind::Gauge), &b.schema(), std::slice::from_ref(&b), 2, Format::Text, &mut out)
                .unwrap();
        assert_eq!(w, Written { series: 2, dropped: 1 });
        assert!(!out.contains("\"c\""), "{out}");
    }

    #[test]
    fn counters_are_named_as_each_format_wants() {
        let b = batch(vec![Some("a")], vec![Some(7)]);
        let mut text = String::new();
        write_families(&decl(MetricKind::Counter), &b.schema(), std::slice::from_ref(&b), 10, Format::Text, &mut text)
            .unwrap();
        assert!(text.contains("# TYPE sockql_x_total counter\nsockql_x_total{process=\"a\"} 7\n"), "{text}");
        let mut om = String::new();
        write_families(&decl(MetricKind::Counter), &b.schema(), &[b], 10, Format::OpenMetrics, &mut om).unwrap();
        assert!(om.contains("# TYPE sockql_x counter\nsockql_x_total{process=\"a\"} 7\n"), "{om}");
    }

    #[test]
    fn an_empty_result_still_declares_its_family_and_a_result_without_numbers_is_refused() {
        let b = batch(vec![], vec![]);
        let mut out = String::new();
        write_families(&decl(MetricKind::Gauge), &b.schema(), &[], 10, Format::Text, &mut out).unwrap();
        assert_eq!(out, "# HELP sockql_x Help with a \\\\ and\\na newline\n# TYPE sockql_x gauge\n");
        let only_text = Schema::new(vec![Field::new("process", DataType::Utf8, true)]);
        assert!(write_families(&decl(MetricKind::Gauge), &only_text, &[], 10, Format::Text, &mut out).is_err());
        assert_eq!(label_name("9 bad-name"), "_9_bad_name");
        assert_eq!(label_name("__x"), "_x");
    }
}
