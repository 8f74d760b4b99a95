//! Printing query results in the formats of `--format`. Printers write to
//! any `io::Write`, so tests print into a `Vec<u8>`.

use std::io::Write;

use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::writer::{JsonArray, LineDelimited, WriterBuilder as JsonWriterBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::args::Format;

#[derive(Debug, Clone, Copy)]
pub struct OutputOptions {
    pub format: Format,
    pub header: bool,
}

/// Print one statement's result. An empty result still prints its header
/// (table, csv) or an empty array (json), so scripts can tell "no rows"
/// from "no output".
pub fn print(out: &mut dyn Write, opts: OutputOptions, schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<()> {
    if schema.fields().is_empty() {
        return Ok(()); // a statement without a result set (CREATE TABLE ... AS)
    }
    let empty;
    let batches = if batches.iter().all(|b| b.num_rows() == 0) {
        empty = [RecordBatch::new_empty(schema.clone())];
        &empty[..]
    } else {
        batches
    };
    match opts.format {
        Format::Table => writeln!(out, "{}", pretty_format_batches(batches)?)?,
        Format::Csv => {
            let mut w = CsvWriterBuilder::new().with_header(opts.header).build(&mut *out);
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = JsonWriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            writeln!(out)?;
        }
        Format::Ndjson => {
            let mut w = JsonWriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(&mut *out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
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
    fn empty_results_keep_their_shape() {
        assert_eq!(render(Format::Csv, true, &[]), "state,n\n");
        assert_eq!(render(Format::Json, true, &[]), "[]\n");
        assert_eq!(render(Format::Ndjson, true, &[]), "");
        assert!(render(Format::Table, true, &[]).contains("| state | n |"));
    }
}
