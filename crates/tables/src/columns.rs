//! Column definitions with descriptions, and a row builder that fills only
//! the columns a query asked for.
//!
//! Each table declares its columns once with [`table_columns!`]: name, Arrow
//! type, nullability and a one-line description. The description travels in
//! the Arrow field metadata under `description`, so `DESCRIBE`, `sockql
//! schema` and the README table reference all read the same text.

use std::fmt::Display;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    PrimitiveBuilder, StringBuilder, TimestampMillisecondBuilder, TimestampNanosecondBuilder, UInt16Builder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

pub const DESCRIPTION: &str = "description";

/// A column declared by a table: what `table_columns!` expands to.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    pub name: &'static str,
    pub ty: Ty,
    pub nullable: bool,
    pub doc: &'static str,
}

/// The Arrow types sockql's tables use (a closed set keeps the builder small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Utf8,
    Bool,
    U8,
    U16,
    U32,
    U64,
    I32,
    I64,
    F64,
    /// Milliseconds since the epoch, UTC.
    TimestampMs,
    /// Nanoseconds since the epoch, UTC (packet times).
    TimestampNs,
    /// Raw bytes (packet payloads).
    Binary,
}

impl Ty {
    pub fn data_type(self) -> DataType {
        match self {
            Ty::Utf8 => DataType::Utf8,
            Ty::Bool => DataType::Boolean,
            Ty::U8 => DataType::UInt8,
            Ty::U16 => DataType::UInt16,
            Ty::U32 => DataType::UInt32,
            Ty::U64 => DataType::UInt64,
            Ty::I32 => DataType::Int32,
            Ty::I64 => DataType::Int64,
            Ty::F64 => DataType::Float64,
            // UTC-zoned, so every format prints the instant with its Z
            // (RFC 3339) as `ts` does, and jq's fromdateiso8601 reads it.
            Ty::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Ty::TimestampNs => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            Ty::Binary => DataType::Binary,
        }
    }
}

pub fn schema_of(columns: &[ColumnDef]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(c.name, c.ty.data_type(), c.nullable)
                .with_metadata([(DESCRIPTION.to_string(), c.doc.to_string())].into_iter().collect())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Declare a table's columns: an enum `$Col` naming each column (so row
/// code says `Col::LocalPort`, not an index) and `$Col::DEFS`.
#[macro_export]
macro_rules! table_columns {
    ($Col:ident { $($variant:ident: $name:literal, $ty:ident, $nullable:literal, $doc:literal;)* }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum $Col { $($variant),* }
        impl $Col {
            pub const DEFS: &'static [$crate::columns::ColumnDef] = &[
                $($crate::columns::ColumnDef {
                    name: $name,
                    ty: $crate::columns::Ty::$ty,
                    nullable: $nullable,
                    doc: $doc,
                }),*
            ];
            #[allow(dead_code)]
            pub const ALL: &'static [$Col] = &[$($Col::$variant),*];
            #[allow(dead_code)]
            pub fn name(self) -> &'static str { Self::DEFS[self as usize].name }
        }
    };
}

enum Builder {
    Utf8(StringBuilder),
    Bool(BooleanBuilder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Ts(TimestampMillisecondBuilder),
    TsNs(TimestampNanosecondBuilder),
    Binary(BinaryBuilder),
}

impl Builder {
    fn new(ty: Ty, capacity: usize) -> Self {
        match ty {
            Ty::Utf8 => Builder::Utf8(StringBuilder::with_capacity(capacity, capacity * 8)),
            Ty::Bool => Builder::Bool(BooleanBuilder::with_capacity(capacity)),
            Ty::U8 => Builder::U8(PrimitiveBuilder::with_capacity(capacity)),
            Ty::U16 => Builder::U16(PrimitiveBuilder::with_capacity(capacity)),
            Ty::U32 => Builder::U32(PrimitiveBuilder::with_capacity(capacity)),
            Ty::U64 => Builder::U64(PrimitiveBuilder::with_capacity(capacity)),
            Ty::I32 => Builder::I32(PrimitiveBuilder::with_capacity(capacity)),
            Ty::I64 => Builder::I64(PrimitiveBuilder::with_capacity(capacity)),
            Ty::F64 => Builder::F64(PrimitiveBuilder::with_capacity(capacity)),
            Ty::TimestampMs => Builder::Ts(PrimitiveBuilder::with_capacity(capacity).with_timezone("UTC")),
            Ty::TimestampNs => Builder::TsNs(PrimitiveBuilder::with_capacity(capacity).with_timezone("UTC")),
            Ty::Binary => Builder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 64)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U16(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
            Builder::TsNs(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
        }
    }
}

/// Builds record batches of the projected columns of one table. Setting a
/// column the query did not ask for costs one branch.
pub struct RowBuilder {
    schema: SchemaRef,
    /// Per table column: its builder, if projected.
    slots: Vec<Option<usize>>,
    builders: Vec<Builder>,
    rows: usize,
    capacity: usize,
}

fn mismatch(column: usize) -> ! {
    panic!("column {column} set with a value of the wrong type: table declaration and row code disagree")
}

impl RowBuilder {
    /// `projection` lists table column indices in output order; `None` is all.
    pub fn new(defs: &[ColumnDef], projection: Option<&[usize]>, capacity: usize) -> Self {
        let all: Vec<usize> = (0..defs.len()).collect();
        let projection = projection.unwrap_or(&all);
        let schema = schema_of(defs);
        let projected = Arc::new(schema.project(projection).expect("projection within table"));
        let mut slots = vec![None; defs.len()];
        for (slot, &col) in projection.iter().enumerate() {
            slots[col] = Some(slot);
        }
        let builders = projection.iter().map(|&c| Builder::new(defs[c].ty, capacity)).collect();
        RowBuilder { schema: projected, slots, builders, rows: 0, capacity }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// True if `column` is projected: use it to skip costly work.
    pub fn wants(&self, column: usize) -> bool {
        self.slots[column].is_some()
    }

    fn builder(&mut self, column: usize) -> Option<&mut Builder> {
        let slot = self.slots[column]?;
        Some(&mut self.builders[slot])
    }

    pub fn str(&mut self, column: usize, v: Option<&str>) {
        match self.builder(column) {
            None => {}
            Some(Builder::Utf8(b)) => b.append_option(v),
            Some(_) => mismatch(column),
        }
    }

    /// Append a value through its `Display`, without an intermediate String.
    pub fn display(&mut self, column: usize, v: &dyn Display) {
        use std::fmt::Write;
        match self.builder(column) {
            None => {}
            Some(Builder::Utf8(b)) => {
                let _ = write!(b, "{v}");
                b.append_value("");
            }
            Some(_) => mismatch(column),
        }
    }

    pub fn bool(&mut self, column: usize, v: Option<bool>) {
        match self.builder(column) {
            None => {}
            Some(Builder::Bool(b)) => b.append_option(v),
            Some(_) => mismatch(column),
        }
    }

    pub fn u8(&mut self, column: usize, v: Option<u8>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::U8(b) => Some(b),
            _ => None,
        })
    }
    pub fn u16(&mut self, column: usize, v: Option<u16>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::U16(b) => Some(b),
            _ => None,
        })
    }
    pub fn u32(&mut self, column: usize, v: Option<u32>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::U32(b) => Some(b),
            _ => None,
        })
    }
    pub fn u64(&mut self, column: usize, v: Option<u64>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::U64(b) => Some(b),
            _ => None,
        })
    }
    pub fn i32(&mut self, column: usize, v: Option<i32>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::I32(b) => Some(b),
            _ => None,
        })
    }
    pub fn i64(&mut self, column: usize, v: Option<i64>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::I64(b) => Some(b),
            _ => None,
        })
    }
    pub fn f64(&mut self, column: usize, v: Option<f64>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::F64(b) => Some(b),
            _ => None,
        })
    }
    pub fn timestamp_ms(&mut self, column: usize, v: Option<i64>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::Ts(b) => Some(b),
            _ => None,
        })
    }

    pub fn timestamp_ns(&mut self, column: usize, v: Option<i64>) {
        prim(self.builder(column), column, v, |b| match b {
            Builder::TsNs(b) => Some(b),
            _ => None,
        })
    }

    pub fn binary(&mut self, column: usize, v: Option<&[u8]>) {
        match self.builder(column) {
            None => {}
            Some(Builder::Binary(b)) => b.append_option(v),
            Some(_) => mismatch(column),
        }
    }

    /// Close the current row. Returns true when a batch is full and should
    /// be taken with [`RowBuilder::finish`].
    pub fn end_row(&mut self) -> bool {
        self.rows += 1;
        self.rows >= self.capacity
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Take the rows built so far as a batch and start a new one.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
    }
}

fn prim<T: ArrowPrimitiveType>(
    builder: Option<&mut Builder>,
    column: usize,
    v: Option<T::Native>,
    pick: impl FnOnce(&mut Builder) -> Option<&mut PrimitiveBuilder<T>>,
) {
    if let Some(b) = builder {
        match pick(b) {
            Some(b) => b.append_option(v),
            None => mismatch(column),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::UInt16Type;

    crate::table_columns!(TestCol {
        Name: "name", Utf8, false, "a name";
        Port: "port", U16, true, "a port";
    });

    #[test]
    fn builds_only_projected_columns_in_projection_order() {
        let mut b = RowBuilder::new(TestCol::DEFS, Some(&[1, 0]), 2);
        assert!(b.wants(TestCol::Port as usize));
        b.str(TestCol::Name as usize, Some("a"));
        b.u16(TestCol::Port as usize, Some(80));
        assert!(!b.end_row());
        b.display(TestCol::Name as usize, &"b");
        b.u16(TestCol::Port as usize, None);
        assert!(b.end_row());
        let batch = b.finish().unwrap();
        assert_eq!(batch.schema().field(0).name(), "port");
        assert_eq!(batch.schema().field(0).metadata()[DESCRIPTION], "a port");
        let ports = batch.column(0).as_primitive::<UInt16Type>();
        assert_eq!(ports.value(0), 80);
        assert!(ports.is_null(1));
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "b");
    }

    #[test]
    fn empty_projection_counts_rows() {
        let mut b = RowBuilder::new(TestCol::DEFS, Some(&[]), 8);
        b.str(TestCol::Name as usize, Some("skipped"));
        b.end_row();
        b.end_row();
        assert_eq!(b.finish().unwrap().num_rows(), 2);
    }
}
