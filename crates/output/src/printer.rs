//! Printing query results in the formats of `--format`. Printers write to
//! any `io::Write`, so tests print into a `Vec<u8>`. The writer is held as
//! `dyn Write`, not as a type parameter: arrow's csv and json writers are
//! then instantiated here, in this package, at its opt-level, whatever the
//! caller's writer (crates/print/Cargo.toml).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::csv::{Writer as CsvWriter, WriterBuilder as CsvWriterBuilder};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::writer::{
    JsonArray, LineDelimited, Writer as JsonWriter, WriterBuilder as JsonWriterBuilder,
};
use datafusion::arrow::record_batch::RecordBatch;

use super::fit::{self, Fit, Layout};
use sockql_query::engine::ResultSink;

/// `--format`: how results print.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Csv,
    Json,
    Ndjson,
}

/// Where a printer writes.
type Out<'a> = Box<dyn Write + 'a>;

#[derive(Debug, Clone, Copy)]
pub struct OutputOptions {
    pub format: Format,
    pub header: bool,
    /// Escape control characters in csv (the table format always does;
    /// JSON escapes them by its own rules).
    pub escape: bool,
    /// Bytes of formatted cells the table format holds before it prints
    /// what it has as one table and starts the next (see [`TableText`]).
    pub table_budget: usize,
    /// The terminal width tables fit, and when rows print as records.
    pub fit: Fit,
    /// Standard output is a terminal: an empty table says "(0 rows)".
    pub terminal: bool,
}

/// Cells held by the table format when no --memory-limit says otherwise.
pub const DEFAULT_TABLE_BUDGET: usize = 16 << 20;

impl OutputOptions {
    pub fn new(format: Format) -> Self {
        OutputOptions {
            format,
            header: true,
            escape: false,
            table_budget: DEFAULT_TABLE_BUDGET,
            fit: Fit::default(),
            terminal: false,
        }
    }

    /// The table budget under a memory limit: a quarter of it, so printing
    /// stays within the bound the operator set.
    pub fn with_memory_limit(mut self, limit: Option<usize>) -> Self {
        if let Some(l) = limit {
            self.table_budget = (l / 4).clamp(64 << 10, DEFAULT_TABLE_BUDGET);
        }
        self
    }
}

/// Prints one statement's result batch by batch: csv, json and ndjson
/// write each batch as it arrives (memory stays a batch, however many
/// rows); the table format keeps formatted cells for its column widths, up
/// to its budget, then prints them and goes on with a new table.
/// An empty result still prints its header (table, csv) or an empty array
/// (json), so scripts can tell "no rows" from "no output".
pub struct Printer<'a> {
    schema: SchemaRef,
    rows: usize,
    escape: bool,
    sink: Sink<'a>,
    /// Set when the output was closed under us (see [`PipeWatch`]).
    pipe_closed: Arc<AtomicBool>,
}

/// The output writer as the Arrow writers see it. Arrow's csv writer turns
/// an I/O error into text, so a closed pipe (`sockql ... | head`) would
/// reach `main` as "Csv error: Broken pipe" instead of the io::Error it
/// ends quietly on; this remembers that the pipe closed.
struct PipeWatch<'a> {
    inner: Out<'a>,
    closed: Arc<AtomicBool>,
}

impl PipeWatch<'_> {
    fn seen<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                self.closed.store(true, Ordering::Relaxed);
            }
        }
        r
    }
}

impl Write for PipeWatch<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.seen(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.seen(r)
    }
}

enum Sink<'a> {
    /// A statement without a result set (CREATE TABLE ... AS) prints nothing.
    Nothing,
    Table(Out<'a>, TableText),
    Csv(Box<CsvWriter<PipeWatch<'a>>>),
    Json(JsonWriter<Out<'a>, JsonArray>),
    Ndjson(JsonWriter<Out<'a>, LineDelimited>),
}

impl<'a> Printer<'a> {
    pub fn new(out: Out<'a>, opts: OutputOptions, schema: SchemaRef) -> Self {
        let pipe_closed = Arc::new(AtomicBool::new(false));
        let sink = if schema.fields().is_empty() {
            Sink::Nothing
        } else {
            match opts.format {
                Format::Table => Sink::Table(out, TableText::new(&schema, &opts)),
                Format::Csv => Sink::Csv(Box::new(
                    CsvWriterBuilder::new()
                        .with_header(opts.header)
                        .build(PipeWatch { inner: out, closed: pipe_closed.clone() }),
                )),
                Format::Json => Sink::Json(JsonWriterBuilder::new().with_explicit_nulls(true).build(out)),
                Format::Ndjson => Sink::Ndjson(JsonWriterBuilder::new().with_explicit_nulls(true).build(out)),
            }
        };
        Printer { schema, rows: 0, escape: opts.escape, sink, pipe_closed }
    }

    /// Say `note` instead of printing an empty table (other formats stay
    /// empty: scripts read them).
    pub fn with_empty_note(mut self, note: Option<String>) -> Self {
        if let Sink::Table(_, t) = &mut self.sink {
            t.empty_note = note;
        }
        self
    }

    /// A writer's error as the closed pipe it was, when it was one.
    fn pipe_error(closed: &AtomicBool, e: anyhow::Error) -> anyhow::Error {
        if closed.load(Ordering::Relaxed) {
            return std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
        }
        e
    }

    pub fn batch(&mut self, b: &RecordBatch) -> anyhow::Result<()> {
        let closed = self.pipe_closed.clone();
        self.write_batch(b).map_err(|e| Self::pipe_error(&closed, e))
    }

    pub fn finish(self) -> anyhow::Result<()> {
        let closed = self.pipe_closed.clone();
        self.finish_output().map_err(|e| Self::pipe_error(&closed, e))
    }

    fn write_batch(&mut self, b: &RecordBatch) -> anyhow::Result<()> {
        if b.num_rows() == 0 {
            return Ok(());
        }
        self.rows += b.num_rows();
        match &mut self.sink {
            Sink::Nothing => {}
            Sink::Table(out, table) => table.push(b, out)?,
            Sink::Csv(w) if self.escape => w.write(&escape_strings(b)?)?,
            Sink::Csv(w) => w.write(b)?,
            Sink::Json(w) => w.write(b)?,
            Sink::Ndjson(w) => w.write(b)?,
        }
        Ok(())
    }

    fn finish_output(mut self) -> anyhow::Result<()> {
        if self.rows == 0 {
            // Writers emit headers (csv) and brackets (json) on a first write.
            let empty = RecordBatch::new_empty(self.schema.clone());
            match &mut self.sink {
                Sink::Csv(w) if self.escape => w.write(&escape_strings(&empty)?)?,
                Sink::Csv(w) => w.write(&empty)?,
                Sink::Json(w) => w.write(&empty)?,
                Sink::Nothing | Sink::Ndjson(_) | Sink::Table(..) => {}
            }
        }
        match self.sink {
            Sink::Nothing => {}
            Sink::Table(mut out, mut table) => {
                table.flush(&mut out, true)?;
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

pub use sockql_collect::notice::escape_controls as escape_control_text;

/// Every string-like column (Utf8, LargeUtf8, Utf8View, dictionaries of
/// them) as Utf8 with control characters escaped, and escaped column
/// names: for csv on a terminal.
pub fn escape_strings(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let string_like = |t: &DataType| match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => matches!(v.as_ref(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
        _ => false,
    };
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = escape_control_text(f.name()).into_owned();
        if !string_like(c.data_type()) {
            fields.push(Field::new(name, f.data_type().clone(), f.is_nullable()));
            columns.push(c.clone());
            continue;
        }
        let utf8 = datafusion::arrow::compute::cast(c, &DataType::Utf8)?;
        let escaped: StringArray =
            utf8.as_string::<i32>().iter().map(|v| v.map(|s| escape_control_text(s).into_owned())).collect();
        fields.push(Field::new(name, DataType::Utf8, f.is_nullable() || escaped.null_count() > 0));
        columns.push(std::sync::Arc::new(escaped) as ArrayRef);
    }
    Ok(RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)?)
}

/// The table format's cells: every value of every type (nested, dictionary,
/// views) formatted by arrow's display code and then escaped, so nothing a
/// process calls itself reaches the terminal raw. Rows are held until
/// `budget` bytes of cells, then printed as one table; a result larger
/// than that prints as several tables, each with its header, instead of
/// growing without bound.
pub struct TableText {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    bytes: usize,
    budget: usize,
    printed_any: bool,
    fit: Fit,
    terminal: bool,
    /// Rows printed so far, to number records across parts.
    printed_rows: usize,
    /// Said instead of an empty table (a saved query's `-- empty:`).
    empty_note: Option<String>,
}

/// What one held cell costs beyond its text (the String itself).
const CELL_OVERHEAD: usize = std::mem::size_of::<String>();

impl TableText {
    fn new(schema: &SchemaRef, opts: &OutputOptions) -> Self {
        let headers = schema.fields().iter().map(|f| escape_control_text(f.name()).into_owned()).collect();
        TableText {
            headers,
            rows: Vec::new(),
            bytes: 0,
            budget: opts.table_budget,
            printed_any: false,
            fit: opts.fit,
            terminal: opts.terminal,
            printed_rows: 0,
            empty_note: None,
        }
    }

    fn push(&mut self, batch: &RecordBatch, out: &mut dyn Write) -> anyhow::Result<()> {
        use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
        let options = FormatOptions::default().with_display_error(true);
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let cells: Vec<String> =
                formatters.iter().map(|f| escape_control_text(&f.value(row).to_string()).into_owned()).collect();
            self.bytes += cells.iter().map(|c| c.len() + CELL_OVERHEAD).sum::<usize>();
            self.rows.push(cells);
            if self.bytes > self.budget {
                self.flush(out, false)?;
            }
        }
        Ok(())
    }

    /// Print the held rows as one table (the header alone for an empty
    /// result) and let them go.
    fn flush(&mut self, out: &mut dyn Write, last: bool) -> anyhow::Result<()> {
        if self.rows.is_empty() && (self.printed_any || !last) {
            return Ok(());
        }
        if self.rows.is_empty() && !self.printed_any {
            if let Some(note) = &self.empty_note {
                writeln!(out, "{}", escape_control_text(note))?;
                return Ok(());
            }
        }
        if !last && !self.printed_any {
            sockql_collect::notice::note_once(
                "table-parts",
                "a large result prints as several tables (each within the table format's memory budget); --format csv prints one",
            );
        }
        use unicode_width::UnicodeWidthStr;
        let names: Vec<usize> = self.headers.iter().map(|h| h.width()).collect();
        let mut natural = names.clone();
        for row in &self.rows {
            for (w, c) in natural.iter_mut().zip(row) {
                *w = (*w).max(c.width());
            }
        }
        let widths = match fit::layout(&natural, &names, self.fit) {
            Layout::Table(widths) => widths,
            Layout::Records { names, values } => return self.flush_records(out, names, values, last),
        };
        let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
            s
        });
        let line = |out: &mut dyn Write, cells: &[String]| -> std::io::Result<()> {
            out.write_all(b"|")?;
            for (c, w) in cells.iter().zip(&widths) {
                let c = fit::cut(c, *w);
                write!(out, " {c}{} |", " ".repeat(w.saturating_sub(c.width())))?;
            }
            out.write_all(b"\n")
        };
        writeln!(out, "{rule}")?;
        line(out, &self.headers)?;
        writeln!(out, "{rule}")?;
        for row in &self.rows {
            line(out, row)?;
        }
        writeln!(out, "{rule}")?;
        self.end_part(out, last)
    }

    /// The held rows as records, psql's expanded display: a header line
    /// per row, then one "name | value" line per column.
    fn flush_records(
        &mut self,
        out: &mut dyn Write,
        names: usize,
        values: Option<usize>,
        last: bool,
    ) -> anyhow::Result<()> {
        use unicode_width::UnicodeWidthStr;
        for (i, row) in self.rows.iter().enumerate() {
            let title = format!("-[ RECORD {} ]", self.printed_rows + i + 1);
            let rule = (names + 3 + values.unwrap_or(0)).saturating_sub(title.width());
            writeln!(out, "{title}{}", "-".repeat(rule))?;
            for (h, c) in self.headers.iter().zip(row) {
                let c = match values {
                    Some(w) => fit::cut(c, w),
                    None => c.as_str().into(),
                };
                writeln!(out, "{h}{} | {c}", " ".repeat(names.saturating_sub(h.width())))?;
            }
        }
        self.end_part(out, last)
    }

    fn end_part(&mut self, out: &mut dyn Write, last: bool) -> anyhow::Result<()> {
        if last && self.terminal && self.printed_rows == 0 && self.rows.is_empty() {
            writeln!(out, "(0 rows)")?;
        }
        self.printed_rows += self.rows.len();
        self.rows.clear();
        self.bytes = 0;
        self.printed_any = true;
        Ok(())
    }
}

/// A [`ResultSink`] printing each statement's result as it streams, to a
/// writer made per statement (stdout, a buffer in tests).
pub struct PrintSink<'a> {
    make: Box<dyn FnMut() -> Out<'a> + 'a>,
    opts: OutputOptions,
    current: Option<Printer<'a>>,
    empty_note: Option<String>,
}

impl<'a> PrintSink<'a> {
    pub fn new<W: Write + 'a>(opts: OutputOptions, mut make: impl FnMut() -> W + 'a) -> Self {
        PrintSink { make: Box::new(move || Box::new(make()) as Out<'a>), opts, current: None, empty_note: None }
    }

    /// What to say when a statement's table comes out empty.
    pub fn with_empty_note(mut self, note: Option<String>) -> Self {
        self.empty_note = note;
        self
    }
}

impl ResultSink for PrintSink<'_> {
    fn start(&mut self, schema: SchemaRef) -> anyhow::Result<()> {
        self.current = Some(Printer::new((self.make)(), self.opts, schema).with_empty_note(self.empty_note.clone()));
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
pub fn print(
    out: &mut dyn Write,
    opts: OutputOptions,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> anyhow::Result<()> {
    let mut p = Printer::new(Box::new(out), opts, schema.clone());
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
        print(&mut buf, OutputOptions { header, ..OutputOptions::new(format) }, &b.schema(), batches).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn formats() {
        let b = [batch()];
        assert_eq!(render(Format::Csv, true, &b), "state,n\nESTAB,3\nLISTEN,\n");
        assert_eq!(render(Format::Csv, false, &b), "ESTAB,3\nLISTEN,\n");
        assert_eq!(
            render(Format::Json, true, &b),
            "[{\"state\":\"ESTAB\",\"n\":3},{\"state\":\"LISTEN\",\"n\":null}]\n"
        );
        assert_eq!(
            render(Format::Ndjson, true, &b),
            "{\"state\":\"ESTAB\",\"n\":3}\n{\"state\":\"LISTEN\",\"n\":null}\n"
        );
        let t = render(Format::Table, true, &b);
        assert!(t.contains("| state  | n |") && t.contains("| LISTEN |   |"), "{t}");
    }

    #[test]
    fn table_output_escapes_control_characters() {
        let schema = Arc::new(Schema::new(vec![Field::new("process", DataType::Utf8, true)]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![Some("evil\x1b[2J\nname\t"), None]))],
        )
        .unwrap();
        let mut buf = Vec::new();
        print(&mut buf, OutputOptions::new(Format::Table), &schema, std::slice::from_ref(&b)).unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert!(t.contains("evil\\x1b[2J\\nname\\t"), "{t}");
        assert!(!t.contains('\x1b'));
        // Machine formats keep the value itself (JSON escapes it, csv quotes it).
        let mut buf = Vec::new();
        print(&mut buf, OutputOptions::new(Format::Ndjson), &schema, &[b]).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "{\"process\":\"evil\\u001b[2J\\nname\\t\"}\n{\"process\":null}\n");
    }

    #[test]
    fn empty_results_keep_their_shape() {
        assert_eq!(render(Format::Csv, true, &[]), "state,n\n");
        assert_eq!(render(Format::Json, true, &[]), "[]\n");
        assert_eq!(render(Format::Ndjson, true, &[]), "");
        assert!(render(Format::Table, true, &[]).contains("| state | n |"));
    }

    #[test]
    fn every_string_type_and_header_is_escaped_in_tables() {
        use datafusion::arrow::array::{ArrayRef, DictionaryArray, LargeStringArray, StringViewArray, StructArray};
        use datafusion::arrow::datatypes::Int32Type;
        let evil = "a\x1b[2Jb";
        let view: ArrayRef = Arc::new(StringViewArray::from(vec![evil]));
        let large: ArrayRef = Arc::new(LargeStringArray::from(vec![evil]));
        let dict: ArrayRef = Arc::new(vec![evil].into_iter().collect::<DictionaryArray<Int32Type>>());
        let nested: ArrayRef = Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("s", DataType::Utf8, false)),
            Arc::new(StringArray::from(vec![evil])) as ArrayRef,
        )]));
        let columns = vec![view, large, dict, nested];
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("h{i}\x07"), c.data_type().clone(), false))
            .collect();
        let b = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut buf = Vec::new();
        print(&mut buf, OutputOptions::new(Format::Table), &b.schema(), std::slice::from_ref(&b)).unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert!(!t.contains('\x1b') && !t.contains('\x07'), "{t:?}");
        assert_eq!(t.matches(r"a\x1b[2Jb").count(), 4, "{t}");
        assert!(t.contains(r"h0\x07"), "{t}");
        // csv with escaping: string-like columns as escaped text.
        let flat = b.project(&[0, 1, 2]).unwrap();
        let mut buf = Vec::new();
        let opts = OutputOptions { escape: true, ..OutputOptions::new(Format::Csv) };
        print(&mut buf, opts, &flat.schema(), &[flat]).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "h0\\x07,h1\\x07,h2\\x07\na\\x1b[2Jb,a\\x1b[2Jb,a\\x1b[2Jb\n");
    }

    #[test]
    fn a_large_table_prints_in_parts_within_its_budget() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, false)]));
        let rows: Vec<String> = (0..1000).map(|i| format!("row{i:04}")).collect();
        let b = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(rows))]).unwrap();
        let mut buf = Vec::new();
        // Room for about 100 cells of (7 bytes + a String) each.
        let opts = OutputOptions { table_budget: 100 * (7 + CELL_OVERHEAD), ..OutputOptions::new(Format::Table) };
        print(&mut buf, opts, &schema, &[b]).unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert_eq!(t.matches("| v       |").count(), 10, "ten tables of 100 rows");
        assert_eq!(t.lines().filter(|l| l.starts_with("| row")).count(), 1000);
        assert!(t.contains("| row0000 |") && t.contains("| row0999 |"));
    }
}
