//! Arrow values as a PostgreSQL client receives them, in text and binary,
//! written here rather than by arrow-pg.
//!
//! Why not arrow-pg's encoder: its decimals go through rust_decimal, which
//! holds 96 bits and 28 digits of scale, so `18446744073709551615::numeric`
//! (Decimal128(38, 10)) fails to convert; its row iterator then returns the
//! same error again without moving on, forever, and collecting a batch's
//! rows allocated until the OOM killer came. Here every value is encoded
//! once, a failure ends the statement, and rows are made one at a time as
//! the connection takes them (so a batch's encoding is one row at most).
//!
//! How each Arrow type is sent (PostgreSQL type; what is not exact):
//! - Boolean: bool. Int8/Int16/UInt8: int2; Int32/UInt16: int4;
//!   Int64/UInt32: int8; UInt64: numeric (exact to u64::MAX).
//! - Float16/Float32: float4; Float64: float8; NaN, Infinity and -Infinity
//!   spelled as PostgreSQL spells them, digits the shortest that read back
//!   to the same value.
//! - Decimal128/Decimal256: numeric, every digit and the scale exact.
//! - Utf8 (all three layouts): text; Binary (all four): bytea.
//! - Date32/Date64: date; Time32/Time64: time; Timestamp: timestamp, or
//!   timestamptz when it has a zone (sent in UTC, the server's TimeZone);
//!   Interval and Duration: interval. PostgreSQL keeps microseconds: a
//!   nanosecond part is truncated to the microsecond (kept as a time type
//!   so clients such as Grafana see a time column).
//! - List, LargeList, FixedSizeList of the types above: a one-dimensional
//!   array of them.
//! - Struct, Map, lists of lists or of structs, and anything PostgreSQL has
//!   no shape for: json, the same JSON `sockql --format ndjson` prints.
//! - Anything else: text, as Arrow displays it.
//!
//! RowDescription also carries each type's typlen and the column's
//! atttypmod (numeric(p,s) of a decimal, numeric(20,0) of a UInt64): see
//! [`column_type`], which information_schema.columns, pg_attribute and
//! format_type describe columns from too (pg_type_catalog.rs).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Field, FieldRef, Float16Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType,
    Schema, Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::json::writer::{make_encoder, EncoderOptions};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

/// Microseconds from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const CE_TO_UNIX_DAYS: i64 = 719_163;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How one column's values are written.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Numeric,
    Float4,
    Float8,
    Text,
    Bytea,
    Date,
    Time,
    Timestamp {
        zoned: bool,
    },
    Interval,
    /// A one-dimensional array of the element kind (a scalar kind).
    Array(Box<Kind>),
    Json,
    /// Text as Arrow displays it.
    Display,
    /// pg_catalog's oid columns (Int32 on the Arrow side, u32 on the wire).
    Oid(Type),
}

impl Kind {
    fn of(field: &Field) -> Kind {
        if let (Some(kind), DataType::Int32) =
            (field.metadata().get(super::pg_type_catalog::OID_KIND_KEY), field.data_type())
        {
            if let Some(t) = super::pg_type_catalog::oid_type(kind) {
                return Kind::Oid(t);
            }
        }
        Kind::of_type(field.data_type())
    }

    fn of_type(t: &DataType) -> Kind {
        match t {
            DataType::Boolean => Kind::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => Kind::Int2,
            DataType::Int32 | DataType::UInt16 => Kind::Int4,
            DataType::Int64 | DataType::UInt32 => Kind::Int8,
            DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => Kind::Numeric,
            DataType::Float16 | DataType::Float32 => Kind::Float4,
            DataType::Float64 => Kind::Float8,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => Kind::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
                Kind::Bytea
            }
            DataType::Date32 | DataType::Date64 => Kind::Date,
            DataType::Time32(_) | DataType::Time64(_) => Kind::Time,
            DataType::Timestamp(_, zone) => Kind::Timestamp { zoned: zone.is_some() },
            DataType::Interval(_) | DataType::Duration(_) => Kind::Interval,
            DataType::Dictionary(_, values) => Kind::of_type(values),
            DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                match Kind::of_type(f.data_type()) {
                    Kind::Array(_) | Kind::Json | Kind::Display => Kind::Json,
                    element => Kind::Array(Box::new(element)),
                }
            }
            DataType::Struct(_) | DataType::Map(..) | DataType::ListView(_) | DataType::LargeListView(_) => Kind::Json,
            _ => Kind::Display,
        }
    }

    fn pg_type(&self) -> Type {
        match self {
            Kind::Bool => Type::BOOL,
            Kind::Int2 => Type::INT2,
            Kind::Int4 => Type::INT4,
            Kind::Int8 => Type::INT8,
            Kind::Numeric => Type::NUMERIC,
            Kind::Float4 => Type::FLOAT4,
            Kind::Float8 => Type::FLOAT8,
            Kind::Text | Kind::Display => Type::TEXT,
            Kind::Bytea => Type::BYTEA,
            Kind::Date => Type::DATE,
            Kind::Time => Type::TIME,
            Kind::Timestamp { zoned: false } => Type::TIMESTAMP,
            Kind::Timestamp { zoned: true } => Type::TIMESTAMPTZ,
            Kind::Interval => Type::INTERVAL,
            Kind::Json => Type::JSON,
            Kind::Oid(t) => t.clone(),
            Kind::Array(element) => match element.pg_type() {
                Type::BOOL => Type::BOOL_ARRAY,
                Type::INT2 => Type::INT2_ARRAY,
                Type::INT4 => Type::INT4_ARRAY,
                Type::INT8 => Type::INT8_ARRAY,
                Type::NUMERIC => Type::NUMERIC_ARRAY,
                Type::FLOAT4 => Type::FLOAT4_ARRAY,
                Type::FLOAT8 => Type::FLOAT8_ARRAY,
                Type::BYTEA => Type::BYTEA_ARRAY,
                Type::DATE => Type::DATE_ARRAY,
                Type::TIME => Type::TIME_ARRAY,
                Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
                Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
                Type::INTERVAL => Type::INTERVAL_ARRAY,
                Type::CHAR => Type::CHAR_ARRAY,
                _ => Type::TEXT_ARRAY,
            },
        }
    }
}

/// An error in encoding a value: the statement ends with it.
fn value_error(code: &str, text: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), text)))
}

/// The format of column `idx` as the client asked (none: all text; one:
/// all columns; else one per column), refusing a count that fits neither.
fn format_of(format: &Format, idx: usize, columns: usize) -> PgWireResult<FieldFormat> {
    Ok(match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(codes) => match (codes.len(), codes.first()) {
            (0, _) => FieldFormat::Text,
            (1, Some(code)) => FieldFormat::from(*code),
            (n, _) if n == columns => codes.get(idx).map_or(FieldFormat::Text, |c| FieldFormat::from(*c)),
            (n, _) => {
                return Err(value_error(
                    "08P01",
                    format!("bind message has {n} result formats but query has {columns} columns"),
                ));
            }
        },
    })
}

/// The row description of `schema` in `format`.
pub fn fields(schema: &Schema, format: &Format) -> PgWireResult<Vec<FieldInfo>> {
    let columns = schema.fields().len();
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(idx, f)| {
            let (ty, typmod) = column_type(f);
            let len = super::pg_type_catalog::facts_of(&ty).map_or(-1, |facts| facts.len);
            Ok(FieldInfo::new(f.name().clone(), None, None, ty, format_of(format, idx, columns)?)
                .with_type_size(len)
                .with_type_modifier(typmod))
        })
        .collect()
}

/// The PostgreSQL type of a column and its type modifier (atttypmod):
/// what RowDescription tells a client, and what information_schema,
/// pg_attribute and format_type say of the same column.
pub fn column_type(field: &Field) -> (Type, i32) {
    (Kind::of(field).pg_type(), type_modifier(field.data_type()))
}

/// numeric(p,s) for decimals (and numeric(20,0), u64's 20 digits, for
/// UInt64); of an array, its element's; -1 (none) for everything else.
fn type_modifier(t: &DataType) -> i32 {
    use super::pg_type_catalog::numeric_typmod;
    match t {
        DataType::UInt64 => numeric_typmod(20, 0),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 && i16::from(*s) <= i16::from(*p) => {
            numeric_typmod(*p, *s)
        }
        DataType::Dictionary(_, values) => type_modifier(values),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if matches!(Kind::of_type(t), Kind::Array(_)) =>
        {
            type_modifier(f.data_type())
        }
        _ => -1,
    }
}

/// The PostgreSQL type of an Arrow type (a prepared statement's parameters).
pub fn pg_type(t: &DataType) -> Type {
    Kind::of_type(t).pg_type()
}

struct Column {
    array: ArrayRef,
    field: FieldRef,
    kind: Kind,
    binary: bool,
}

/// One batch's rows, encoded one at a time as they are taken.
pub struct BatchRows {
    columns: Vec<Column>,
    rows: usize,
    next: usize,
}

impl BatchRows {
    pub fn new(batch: RecordBatch, fields: &[FieldInfo]) -> PgWireResult<Self> {
        if batch.num_columns() != fields.len() {
            return Err(value_error("XX000", "a batch does not match its statement's columns".into()));
        }
        let schema = batch.schema();
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields().iter())
            .zip(fields)
            .map(|((array, field), info)| {
                // Dictionary columns are sent as their values.
                let array = match array.data_type() {
                    DataType::Dictionary(_, values) => datafusion::arrow::compute::cast(array, values)
                        .map_err(|e| value_error("XX000", format!("cannot unpack a dictionary column: {e}")))?,
                    _ => array.clone(),
                };
                Ok(Column {
                    array,
                    field: field.clone(),
                    kind: Kind::of(field),
                    binary: info.format() == FieldFormat::Binary,
                })
            })
            .collect::<PgWireResult<Vec<_>>>()?;
        Ok(BatchRows { columns, rows: batch.num_rows(), next: 0 })
    }

    /// The next row, or None after the last. Moves on even after an error.
    pub fn next_row(&mut self) -> Option<PgWireResult<DataRow>> {
        if self.next >= self.rows {
            return None;
        }
        let row = self.next;
        self.next += 1;
        let mut buf = BytesMut::with_capacity(16 * self.columns.len());
        for c in &self.columns {
            if is_null(c.array.as_ref(), row) {
                buf.put_i32(-1);
                continue;
            }
            let at = buf.len();
            buf.put_i32(0);
            if let Err(e) = write_value(c, row, &mut buf) {
                return Some(Err(e));
            }
            let len = buf.len() - at - 4;
            let Ok(len) = i32::try_from(len) else {
                return Some(Err(value_error(
                    "54000",
                    format!("a value of {len} bytes is larger than PostgreSQL can send"),
                )));
            };
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        let count = i16::try_from(self.columns.len()).unwrap_or(i16::MAX);
        Some(Ok(DataRow::new(buf, count)))
    }
}

/// A NullArray has no null buffer: every value of it is null.
fn is_null(array: &dyn Array, row: usize) -> bool {
    array.is_null(row) || matches!(array.data_type(), DataType::Null)
}

fn write_value(c: &Column, row: usize, out: &mut BytesMut) -> PgWireResult<()> {
    match &c.kind {
        Kind::Json => write_json(&c.field, &c.array, row, out),
        Kind::Display => {
            let formatter = ArrayFormatter::try_new(c.array.as_ref(), &FormatOptions::default())
                .map_err(|e| value_error("XX000", format!("cannot display {}: {e}", c.array.data_type())))?;
            write!(Writer(out), "{}", formatter.value(row)).map_err(|e| value_error("XX000", e.to_string()))
        }
        Kind::Array(element) => write_array(element, &c.array, row, c.binary, out),
        kind => write_scalar(kind, c.array.as_ref(), row, c.binary, out),
    }
}

/// `fmt::Write` into a byte buffer.
struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// The same JSON as `sockql --format ndjson` prints for the value.
fn write_json(field: &FieldRef, array: &ArrayRef, row: usize, out: &mut BytesMut) -> PgWireResult<()> {
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(field, array.as_ref(), &options)
        .map_err(|e| value_error("XX000", format!("cannot encode {}: {e}", field.name())))?;
    let mut json = Vec::new();
    encoder.encode(row, &mut json);
    out.put_slice(&json);
    Ok(())
}

/// An integer column's value, whatever its width and sign.
fn integer(array: &dyn Array, row: usize) -> Option<i128> {
    Some(match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        _ => return None,
    })
}

fn mismatch(kind: &Kind, array: &dyn Array) -> PgWireError {
    value_error("XX000", format!("cannot send {} as {kind:?}", array.data_type()))
}

/// One non-null value of a scalar kind.
fn write_scalar(kind: &Kind, array: &dyn Array, row: usize, binary: bool, out: &mut BytesMut) -> PgWireResult<()> {
    match kind {
        Kind::Bool => {
            let v = array.as_boolean_opt().ok_or_else(|| mismatch(kind, array))?.value(row);
            if binary {
                out.put_u8(v.into());
            } else {
                out.put_u8(if v { b't' } else { b'f' });
            }
        }
        Kind::Int2 | Kind::Int4 | Kind::Int8 | Kind::Oid(_) => {
            let v = integer(array, row).ok_or_else(|| mismatch(kind, array))?;
            let out_of_range = || value_error("22003", format!("{v} is out of range for {kind:?}"));
            match (kind, binary) {
                (Kind::Oid(_), true) => out.put_u32(i32::try_from(v).map_err(|_| out_of_range())? as u32),
                (Kind::Oid(_), false) => {
                    write!(Writer(out), "{}", i32::try_from(v).map_err(|_| out_of_range())? as u32).unwrap_or(())
                }
                (_, false) => write!(Writer(out), "{v}").unwrap_or(()),
                (Kind::Int2, true) => out.put_i16(i16::try_from(v).map_err(|_| out_of_range())?),
                (Kind::Int4, true) => out.put_i32(i32::try_from(v).map_err(|_| out_of_range())?),
                _ => out.put_i64(i64::try_from(v).map_err(|_| out_of_range())?),
            }
        }
        Kind::Numeric => {
            let text = match array.data_type() {
                DataType::Decimal128(..) => array.as_primitive::<Decimal128Type>().value_as_string(row),
                DataType::Decimal256(..) => array.as_primitive::<Decimal256Type>().value_as_string(row),
                _ => integer(array, row).ok_or_else(|| mismatch(kind, array))?.to_string(),
            };
            if binary {
                numeric_binary(&text, out)?;
            } else {
                out.put_slice(text.as_bytes());
            }
        }
        Kind::Float4 => {
            let v = match array.data_type() {
                DataType::Float16 => array.as_primitive::<Float16Type>().value(row).to_f32(),
                DataType::Float32 => array.as_primitive::<Float32Type>().value(row),
                _ => return Err(mismatch(kind, array)),
            };
            if binary {
                out.put_f32(v);
            } else {
                out.put_slice(float_text(f64::from(v), format!("{v:e}"), 6).as_bytes());
            }
        }
        Kind::Float8 => {
            let v = array.as_primitive_opt::<Float64Type>().ok_or_else(|| mismatch(kind, array))?.value(row);
            if binary {
                out.put_f64(v);
            } else {
                out.put_slice(float_text(v, format!("{v:e}"), 15).as_bytes());
            }
        }
        Kind::Text => {
            let s: &str = match array.data_type() {
                DataType::Utf8 => array.as_string::<i32>().value(row),
                DataType::LargeUtf8 => array.as_string::<i64>().value(row),
                DataType::Utf8View => array.as_string_view().value(row),
                _ => return Err(mismatch(kind, array)),
            };
            out.put_slice(s.as_bytes());
        }
        Kind::Bytea => {
            let b: &[u8] = match array.data_type() {
                DataType::Binary => array.as_binary::<i32>().value(row),
                DataType::LargeBinary => array.as_binary::<i64>().value(row),
                DataType::BinaryView => array.as_binary_view().value(row),
                DataType::FixedSizeBinary(_) => array.as_fixed_size_binary().value(row),
                _ => return Err(mismatch(kind, array)),
            };
            if binary {
                out.put_slice(b);
            } else {
                out.put_slice(b"\\x");
                for byte in b {
                    write!(Writer(out), "{byte:02x}").unwrap_or(());
                }
            }
        }
        Kind::Date => {
            let days: i64 = match array.data_type() {
                DataType::Date32 => array.as_primitive::<Date32Type>().value(row).into(),
                DataType::Date64 => array.as_primitive::<Date64Type>().value(row).div_euclid(86_400_000),
                _ => return Err(mismatch(kind, array)),
            };
            if binary {
                let pg = i32::try_from(days - PG_EPOCH_DAYS).map_err(|_| overflow("date"))?;
                out.put_i32(pg);
            } else {
                let (date, bc) = date_text(days)?;
                out.put_slice(date.as_bytes());
                if bc {
                    out.put_slice(b" BC");
                }
            }
        }
        Kind::Time => {
            let micros = time_micros(array, row).ok_or_else(|| mismatch(kind, array))?;
            if binary {
                out.put_i64(micros);
            } else {
                out.put_slice(clock_text(micros.unsigned_abs()).as_bytes());
            }
        }
        Kind::Timestamp { zoned } => {
            let micros = timestamp_micros(array, row)?;
            if binary {
                out.put_i64(micros.checked_sub(PG_EPOCH_MICROS).ok_or_else(|| overflow("timestamp"))?);
            } else {
                let days = micros.div_euclid(MICROS_PER_DAY);
                let (date, bc) = date_text(days)?;
                let clock = clock_text(micros.rem_euclid(MICROS_PER_DAY).unsigned_abs());
                write!(Writer(out), "{date} {clock}{}{}", if *zoned { "+00" } else { "" }, if bc { " BC" } else { "" })
                    .unwrap_or(());
            }
        }
        Kind::Interval => {
            let (months, days, micros) = interval_parts(array, row)?;
            if binary {
                out.put_i64(micros);
                out.put_i32(days);
                out.put_i32(months);
            } else {
                out.put_slice(interval_text(months, days, micros).as_bytes());
            }
        }
        Kind::Array(_) | Kind::Json | Kind::Display => return Err(mismatch(kind, array)),
    }
    Ok(())
}

fn overflow(what: &str) -> PgWireError {
    value_error("22008", format!("{what} out of range for PostgreSQL"))
}

/// A float as PostgreSQL prints it (extra_float_digits 1, the default):
/// the shortest digits that read back exactly, in positional form for
/// decimal exponents from -4 to below `precision` (15 for float8, 6 for
/// float4), else `d.ddde+XX`. `sci` is the value's `{:e}` (shortest digits).
fn float_text(v: f64, sci: String, precision: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if digits.chars().all(|d| d == '0') {
        out.push('0');
        return out;
    }
    if (-4..precision).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    }
    out
}

/// PostgreSQL's binary numeric from a decimal's exact text (`-123.4500`):
/// base-10000 digits, the weight of the first, sign and display scale.
fn numeric_binary(text: &str, out: &mut BytesMut) -> PgWireResult<()> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(value_error("XX000", format!("not a decimal: {text}")));
    }
    let int = int.trim_start_matches('0');
    let dscale = u16::try_from(frac.len()).map_err(|_| overflow("numeric scale"))?;
    // Pad the integer part on the left and the fraction on the right to
    // whole groups of four digits.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let padded: Vec<u8> = std::iter::repeat_n(b'0', int_pad)
        .chain(int.bytes())
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', frac_pad))
        .collect();
    let mut groups: Vec<i16> =
        padded.chunks(4).map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0'))).collect();
    let mut weight = ((int.len() + int_pad) / 4) as i32 - 1;
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let weight = if groups.is_empty() { 0 } else { i16::try_from(weight).map_err(|_| overflow("numeric"))? };
    out.put_i16(i16::try_from(groups.len()).map_err(|_| overflow("numeric"))?);
    out.put_i16(weight);
    out.put_u16(if negative && !groups.is_empty() { 0x4000 } else { 0 });
    out.put_u16(dscale);
    for g in groups {
        out.put_i16(g);
    }
    Ok(())
}

/// `YYYY-MM-DD` of days since 1970-01-01, and whether it is BC (year 0 is
/// 1 BC, as PostgreSQL counts).
fn date_text(days: i64) -> PgWireResult<(String, bool)> {
    use chrono::Datelike;
    let ce = i32::try_from(days + CE_TO_UNIX_DAYS).map_err(|_| overflow("date"))?;
    let date = chrono::NaiveDate::from_num_days_from_ce_opt(ce).ok_or_else(|| overflow("date"))?;
    let (year, bc) = if date.year() <= 0 { (1 - date.year(), true) } else { (date.year(), false) };
    Ok((format!("{year:04}-{:02}-{:02}", date.month(), date.day()), bc))
}

/// `HH:MM:SS[.ffffff]` (trailing zeros of the fraction dropped); hours
/// past 24 for intervals.
fn clock_text(micros: u64) -> String {
    let (h, m, s, f) = (micros / 3_600_000_000, micros / 60_000_000 % 60, micros / 1_000_000 % 60, micros % 1_000_000);
    let mut out = format!("{h:02}:{m:02}:{s:02}");
    if f != 0 {
        let frac = format!("{f:06}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out
}

fn time_micros(array: &dyn Array, row: usize) -> Option<i64> {
    Some(match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            i64::from(array.as_primitive::<Time32SecondType>().value(row)) * 1_000_000
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            i64::from(array.as_primitive::<Time32MillisecondType>().value(row)) * 1_000
        }
        DataType::Time64(TimeUnit::Microsecond) => array.as_primitive::<Time64MicrosecondType>().value(row),
        DataType::Time64(TimeUnit::Nanosecond) => {
            array.as_primitive::<Time64NanosecondType>().value(row).div_euclid(1_000)
        }
        _ => return None,
    })
}

/// Microseconds since 1970-01-01 (nanoseconds truncated toward the past).
fn timestamp_micros(array: &dyn Array, row: usize) -> PgWireResult<i64> {
    let scaled = |v: i64, by: i64| v.checked_mul(by).ok_or_else(|| overflow("timestamp"));
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            scaled(array.as_primitive::<TimestampSecondType>().value(row), 1_000_000)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            scaled(array.as_primitive::<TimestampMillisecondType>().value(row), 1_000)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            Ok(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            Ok(array.as_primitive::<TimestampNanosecondType>().value(row).div_euclid(1_000))
        }
        other => Err(value_error("XX000", format!("cannot send {other} as a timestamp"))),
    }
}

/// (months, days, microseconds) of an interval or duration.
fn interval_parts(array: &dyn Array, row: usize) -> PgWireResult<(i32, i32, i64)> {
    let scaled = |v: i64, by: i64| v.checked_mul(by).ok_or_else(|| overflow("interval"));
    Ok(match array.data_type() {
        DataType::Interval(IntervalUnit::YearMonth) => (array.as_primitive::<IntervalYearMonthType>().value(row), 0, 0),
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = array.as_primitive::<IntervalDayTimeType>().value(row);
            (0, v.days, i64::from(v.milliseconds) * 1_000)
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            (v.months, v.days, v.nanoseconds.div_euclid(1_000))
        }
        DataType::Duration(TimeUnit::Second) => {
            (0, 0, scaled(array.as_primitive::<DurationSecondType>().value(row), 1_000_000)?)
        }
        DataType::Duration(TimeUnit::Millisecond) => {
            (0, 0, scaled(array.as_primitive::<DurationMillisecondType>().value(row), 1_000)?)
        }
        DataType::Duration(TimeUnit::Microsecond) => (0, 0, array.as_primitive::<DurationMicrosecondType>().value(row)),
        DataType::Duration(TimeUnit::Nanosecond) => {
            (0, 0, array.as_primitive::<DurationNanosecondType>().value(row).div_euclid(1_000))
        }
        other => return Err(value_error("XX000", format!("cannot send {other} as an interval"))),
    })
}

/// An interval in PostgreSQL's default IntervalStyle (`postgres`):
/// `1 year 2 mons -3 days +04:05:06.5`.
fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::new();
    let (mut before, mut zero) = (false, true);
    for (value, unit) in [(i64::from(months / 12), "year"), (i64::from(months % 12), "mon"), (i64::from(days), "day")] {
        if value == 0 {
            continue;
        }
        let _ = write!(
            out,
            "{}{}{value} {unit}{}",
            if zero { "" } else { " " },
            if before && value > 0 { "+" } else { "" },
            if value != 1 { "s" } else { "" }
        );
        before = value < 0;
        zero = false;
    }
    if micros != 0 || zero {
        let sign = if micros < 0 {
            "-"
        } else if before {
            "+"
        } else {
            ""
        };
        let _ = write!(out, "{}{sign}{}", if zero { "" } else { " " }, clock_text(micros.unsigned_abs()));
    }
    out
}

/// An array element's text, quoted as PostgreSQL's array output quotes.
fn quote_element(text: &[u8], out: &mut BytesMut) {
    let needs = text.is_empty()
        || text.eq_ignore_ascii_case(b"NULL")
        || text
            .iter()
            .any(|b| matches!(b, b'"' | b'\\' | b'{' | b'}' | b',' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c));
    if !needs {
        out.put_slice(text);
        return;
    }
    out.put_u8(b'"');
    for &b in text {
        if b == b'"' || b == b'\\' {
            out.put_u8(b'\\');
        }
        out.put_u8(b);
    }
    out.put_u8(b'"');
}

/// A list as a one-dimensional PostgreSQL array of `element`.
fn write_array(element: &Kind, array: &ArrayRef, row: usize, binary: bool, out: &mut BytesMut) -> PgWireResult<()> {
    let values: ArrayRef = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().value(row),
        other => return Err(value_error("XX000", format!("cannot send {other} as an array"))),
    };
    let values = match values.data_type() {
        DataType::Dictionary(_, v) => datafusion::arrow::compute::cast(&values, v)
            .map_err(|e| value_error("XX000", format!("cannot unpack a dictionary: {e}")))?,
        _ => values,
    };
    let mut item = BytesMut::new();
    if binary {
        let len = i32::try_from(values.len()).map_err(|_| overflow("array"))?;
        out.put_i32(if len == 0 { 0 } else { 1 });
        out.put_i32(i32::from((0..values.len()).any(|i| is_null(values.as_ref(), i))));
        out.put_u32(element.pg_type().oid());
        if len > 0 {
            out.put_i32(len);
            out.put_i32(1);
        }
        for i in 0..values.len() {
            if is_null(values.as_ref(), i) {
                out.put_i32(-1);
                continue;
            }
            item.clear();
            write_scalar(element, values.as_ref(), i, true, &mut item)?;
            out.put_i32(i32::try_from(item.len()).map_err(|_| overflow("array element"))?);
            out.put_slice(&item);
        }
        return Ok(());
    }
    out.put_u8(b'{');
    for i in 0..values.len() {
        if i > 0 {
            out.put_u8(b',');
        }
        if is_null(values.as_ref(), i) {
            out.put_slice(b"NULL");
            continue;
        }
        item.clear();
        write_scalar(element, values.as_ref(), i, false, &mut item)?;
        quote_element(&item, out);
    }
    out.put_u8(b'}');
    Ok(())
}

/// The encoded rows of `batch` in `fields`' formats, all at once (tests).
#[cfg(test)]
fn all_rows(batch: RecordBatch, fields: &[FieldInfo]) -> Vec<PgWireResult<DataRow>> {
    let mut rows = BatchRows::new(batch, fields).unwrap();
    std::iter::from_fn(|| rows.next_row()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn f8(v: f64) -> String {
        float_text(v, format!("{v:e}"), 15)
    }

    #[test]
    fn floats_are_spelled_as_postgresql_spells_them() {
        assert_eq!(f8(f64::NAN), "NaN");
        assert_eq!(f8(f64::INFINITY), "Infinity");
        assert_eq!(f8(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(f8(1.5), "1.5");
        assert_eq!(f8(0.0), "0");
        assert_eq!(f8(-0.0), "-0");
        assert_eq!(f8(1e300), "1e+300");
        assert_eq!(f8(1e15), "1e+15");
        assert_eq!(f8(123456789012345.0), "123456789012345");
        assert_eq!(f8(0.0001), "0.0001");
        assert_eq!(f8(0.00001), "1e-05");
        assert_eq!(f8(-2.5e-10), "-2.5e-10");
        assert_eq!(f8(0.1), "0.1");
        assert_eq!(f8(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(float_text(1e6, format!("{:e}", 1e6f32), 6), "1e+06");
        assert_eq!(float_text(123456.0, format!("{:e}", 123456f32), 6), "123456");
    }

    fn numeric(text: &str) -> Vec<i16> {
        let mut out = BytesMut::new();
        numeric_binary(text, &mut out).unwrap();
        out.chunks(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect()
    }

    #[test]
    fn numeric_binary_is_base_10000_with_weight_sign_and_scale() {
        // ndigits, weight, sign, dscale, digits...
        assert_eq!(numeric("0"), vec![0, 0, 0, 0]);
        assert_eq!(numeric("0.00"), vec![0, 0, 0, 2]);
        assert_eq!(numeric("12345.678"), vec![3, 1, 0, 3, 1, 2345, 6780]);
        assert_eq!(numeric("-0.0001"), vec![1, -1, 0x4000, 4, 1]);
        assert_eq!(numeric("18446744073709551615"), vec![5, 4, 0, 0, 1844, 6744, 737, 955, 1615]);
        assert_eq!(numeric("10000"), vec![1, 1, 0, 0, 1]);
    }

    #[test]
    fn intervals_dates_and_clocks_as_postgresql_prints_them() {
        assert_eq!(interval_text(14, 3, 4 * 3_600_000_000 + 5_500_000), "1 year 2 mons 3 days 04:00:05.5");
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(interval_text(0, -1, 3_600_000_000), "-1 days +01:00:00");
        assert_eq!(interval_text(1, 1, -1), "1 mon 1 day -00:00:00.000001");
        assert_eq!(interval_text(0, 0, 90_000_000_000), "25:00:00");
        assert_eq!(date_text(0).unwrap(), ("1970-01-01".to_string(), false));
        assert_eq!(date_text(-719_163).unwrap(), ("0001-12-31".to_string(), true));
        assert_eq!(clock_text(3_723_000_100), "01:02:03.0001");
    }

    #[test]
    fn a_value_that_fails_ends_after_one_error() {
        use datafusion::arrow::array::Decimal128Array;
        let array = Decimal128Array::from(vec![Some(i128::MAX), None]).with_precision_and_scale(38, 10).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Decimal128(38, 10), true)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)]).unwrap();
        let fields = fields(&schema, &Format::UnifiedBinary).unwrap();
        let rows = all_rows(batch, &fields);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.is_ok()));
    }
}
