//! Printing query results in the formats of `--format`. Printers write to
//! any `io::Write`, so tests print into a `Vec<u8>`.

use std::io::Write;

use datafusion::arrow::csv::{Writer as CsvWriter, WriterBuilder as CsvWriterBuilder};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::writer::{JsonArray, LineDelimited, Writer as JsonWriter, WriterBuilder as JsonWriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::args::Format;
use super::engine::ResultSink;

#[derive(Debug, Clone, Copy)]
pub struct OutputOptions {
    pub format: Format,
    pub header: bool,
}

/// Prints one statement's result batch by batch: csv, json and ndjson
/// write each batch as it arrives (memory stays a batch, however many rows);
/// the table format needs every row for its column widths and keeps them.
/// An empty result still prints its header (table, csv) or an empty array
/// (json), so scripts can tell "no rows" from "no output".
pub struct Printer<W: Write> {
    schema: SchemaRef,
    rows: usize,
    sink: Sink<W>,
}

enum Sink<W: Write> {
    /// A statement without a result set (CREATE TABLE ... AS) prints nothing.
    Nothing,
    Table(W, Vec<RecordBatch>),
    Csv(Box<CsvWriter<W>>),
    Json(JsonWriter<W, JsonArray>),
    Ndjson(JsonWriter<W, LineDelimited>),
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, opts: OutputOptions, schema: SchemaRef) -> Self {
        let sink = if schema.fields().is_empty() {
            Sink::Nothing
        } else {
            match opts.format {
                Format::Table => Sink::Table(out, Vec::new()),
                Format::Csv => Sink::Csv(Box::new(CsvWriterBuilder::new().with_header(opts.header).build(out))),
                Format::Json => Sink::Json(JsonWriterBuilder::new().with_explicit_nulls(true).build(out)),
                Format::Ndjson => Sink::Ndjson(JsonWriterBuilder::new().with_explicit_nulls(true).build(out)),
            }
        };
        Printer { schema, rows: 0, sink }
    }

    pub fn batch(&mut self, b: &RecordBatch) -> anyhow::Result<()> {
        if b.num_rows() == 0 {
            return Ok(());
        }
        self.rows += b.num_rows();
        match &mut self.sink {
            Sink::Nothing => {}
            Sink::Table(_, kept) => kept.push(b.clone()),
            Sink::Csv(w) => w.write(b)?,
            Sink::Json(w) => w.write(b)?,
            Sink::Ndjson(w) => w.write(b)?,
        }
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            // Writers emit headers (csv) and brackets (json) on a first write.
            let empty = RecordBatch::new_empty(self.schema.clone());
            match &mut self.sink {
                Sink::Table(_, kept) => kept.push(empty),
                Sink::Csv(w) => w.write(&empty)?,
                Sink::Json(w) => w.write(&empty)?,
                Sink::Nothing | Sink::Ndjson(_) => {}
            }
        }
        match self.sink {
            Sink::Nothing => {}
            Sink::Table(mut out, kept) => {
                let safe = kept.iter().map(escape_controls).collect::<anyhow::Result<Vec<_>>>()?;
                writeln!(out, "{}", pretty_format_batches(&safe)?)?;
                out.flush()?;
            }
            Sink::Csv(w) => w.into_inner().flush()?,
            Sink::Json(mut w) => {
                w.finish()?;
                let mut out = w.into_inner();
                writeln!(out)?;
                out.flush()?;
            }
            Sink::Ndjson(mut w) => {
                w.finish()?;
                w.into_inner().flush()?;
            }
        }
        Ok(())
    }
}

/// Text with control characters shown as escapes (`\n`, `\t`, `\x1b`):
/// a process name or command line must not move the cursor, clear the
/// screen or break the table when printed to a terminal.
pub fn escape_control_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn escape_controls(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
    use datafusion::arrow::datatypes::DataType;
    let columns = batch
        .columns()
        .iter()
        .map(|c| -> ArrayRef {
            if c.data_type() != &DataType::Utf8 {
                return c.clone();
            }
            let strings = c.as_string::<i32>();
            if !strings.iter().flatten().any(|s| s.chars().any(char::is_control)) {
                return c.clone();
            }
            let escaped: StringArray = strings.iter().map(|v| v.map(|s| escape_control_text(s).into_owned())).collect();
            std::sync::Arc::new(escaped)
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// A [`ResultSink`] printing each statement's result as it streams, to a
/// writer made per statement (stdout, a buffer in tests).
pub struct PrintSink<W: Write, F: FnMut() -> W> {
    make: F,
    opts: OutputOptions,
    current: Option<Printer<W>>,
}

impl<W: Write, F: FnMut() -> W> PrintSink<W, F> {
    pub fn new(opts: OutputOptions, make: F) -> Self {
        PrintSink { make, opts, current: None }
    }
}

impl<W: Write, F: FnMut() -> W> ResultSink for PrintSink<W, F> {
    fn start(&mut self, schema: SchemaRef) -> anyhow::Result<()> {
        self.current = Some(Printer::new((self.make)(), self.opts, schema));
        Ok(())
    }
    fn batch(&mut self, batch: &RecordBatch) -> anyhow::Result<()> {
        match &mut self.current {
            Some(p) => p.batch(batch),
            None => anyhow::bail!("a batch arrived before its statement started"),
        }
    }
    fn end(&mut self) -> anyhow::Result<()> {
        self.current.take().map_or(Ok(()), Printer::finish)
    }
}

/// Print a whole result at once.
pub fn print(out: &mut dyn Write, opts: OutputOptions, schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<()> {
    let mut p = Printer::new(out, opts, schema.clone());
    for b in batches {
        p.batch(b)?;
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("state", DataType::Utf8, false),
            Field::new("n", DataType::Int32, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec!["ESTAB", "LISTEN"])), Arc::new(Int32Array::from(vec![Some(3), None]))],
        )
        .unwrap()
    }

    fn render(format: Format, header: bool, batches: &[RecordBatch]) -> String {
        let mut buf = Vec::new();
        let b = batch();
        print(&mut buf, OutputOptions { format, header }, &b.schema(), batches).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn formats() {
        let b = [batch()];
        assert_eq!(render(Format::Csv, true, &b), "state,n\nESTAB,3\nLISTEN,\n");
        assert_eq!(render(Format::Csv, false, &b), "ESTAB,3\nLISTEN,\n");
        assert_eq!(render(Format::Json, true, &b), "[{\"state\":\"ESTAB\",\"n\":3},{\"state\":\"LISTEN\",\"n\":null}]\n");
        assert_eq!(render(Format::Ndjson, true, &b), "{\"state\":\"ESTAB\",\"n\":3}\n{\"state\":\"LISTEN\",\"n\":null}\n");
        let t = render(Format::Table, true, &b);
        assert!(t.contains("| state  | n |") && t.contains("| LISTEN |   |"), "{t}");
    }

    #[test]
    fn table_output_escapes_control_characters() {
        let schema = Arc::new(Schema::new(vec![Field::new("process", DataType::Utf8, true)]));
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![Some("evil\x1b[2J\nname\t"), None]))]).unwrap();
        let mut buf = Vec::new();
        print(&mut buf, OutputOptions { format: Format::Table, header: true }, &schema, std::slice::from_ref(&b)).unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert!(t.contains("evil\\x1b[2J\\nname\\t"), "{t}");
        assert!(!t.contains('\x1b'));
        // Machine formats keep the value itself (JSON escapes it, csv quotes it).
        let mut buf = Vec::new();
        print(&mut buf, OutputOptions { format: Format::Ndjson, header: true }, &schema, &[b]).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "{\"process\":\"evil\\u001b[2J\\nname\\t\"}\n{\"process\":null}\n");
    }

    #[test]
    fn empty_results_keep_their_shape() {
        assert_eq!(render(Format::Csv, true, &[]), "state,n\n");
        assert_eq!(render(Format::Json, true, &[]), "[]\n");
        assert_eq!(render(Format::Ndjson, true, &[]), "");
        assert!(render(Format::Table, true, &[]).contains("| state | n |"));
    }
}
