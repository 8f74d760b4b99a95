//! A `ts` column in front of a result: what `--watch` appends per tick and
//! what `record` writes per sample. One definition, so both carry the same
//! type (UTC milliseconds, printed with a `Z`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

/// `schema` with `ts` first (a result's own `ts` column gives way).
pub fn stamped_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields =
        vec![Arc::new(Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false))];
    fields.extend(schema.fields().iter().filter(|f| f.name() != "ts").cloned());
    Arc::new(Schema::new(fields))
}

/// `batch` under `stamped` (from [`stamped_schema`]), `ts_ms` on every row.
pub fn stamp(batch: &RecordBatch, stamped: &SchemaRef, ts_ms: i64) -> crate::Result<RecordBatch> {
    let ts: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![ts_ms; batch.num_rows()]).with_timezone("UTC"));
    let mut columns = vec![ts];
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if f.name() != "ts" {
            columns.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(stamped.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;

    #[test]
    fn stamps_every_row_and_replaces_an_own_ts() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int32, false),
            Field::new("n", DataType::Int32, false),
        ]));
        let b = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int32Array::from(vec![1, 2])), Arc::new(Int32Array::from(vec![3, 4]))],
        )
        .unwrap();
        let stamped = stamped_schema(&schema);
        let out = stamp(&b, &stamped, 1_700_000_000_000).unwrap();
        assert_eq!(out.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["ts", "n"]);
        assert_eq!(out.num_rows(), 2);
    }
}
