//! Checking one history file before any query reads it. Files under
//! `--history` may come from other hosts or users and are read as root, so
//! each is hostile until it passes, in this order, every step bounded
//! before it costs:
//!
//! 1. Footer: a Parquet tail whose metadata length fits the file and at
//!    most [`FOOTER_MAX`] bytes; decoding it reserves [`FOOTER_COST`] times
//!    that in the session's memory pool (`--memory-limit`); at most
//!    [`ROW_GROUPS_MAX`] row groups.
//! 2. Columns: every column the table has must have the table's type
//!    (strings and timestamps in any of their Arrow spellings).
//! 3. Pages: every column chunk lies inside the file, and the header of
//!    every page is read (without decoding the page): no page may
//!    decompress to more than [`Budget::page_max`], no row group may hold
//!    more than [`Budget::row_group_max`] compressed.
//! 4. Values: the file is decoded once, batch by batch, with the memory
//!    that takes reserved in the pool, so a file that cannot be decoded or
//!    holds invalid UTF-8 is found here, not by every later query; and no
//!    batch may hold more string bytes, each row counted whole, than
//!    [`Budget::batch_strings_max`] (a dictionary bomb).
//!
//! Decoding at registration costs one read of the history when it is
//! opened; it is what lets a bad file cost one warning instead of the
//! failure of every query that reads its column (DataFusion's scan stops
//! a whole query at the first file it cannot decode).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::arrow::{parquet_to_arrow_schema, ParquetRecordBatchStreamBuilder};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use super::page_header;

/// The largest footer (Thrift metadata) accepted. A recorded sample's is
/// a few tens of KB (one row group of a few dozen columns).
pub const FOOTER_MAX: u64 = 1 << 20;
/// Decoded metadata takes up to this many times its encoded size.
pub const FOOTER_COST: u64 = 32;
/// Row groups one file may have (a sample has one per million rows).
pub const ROW_GROUPS_MAX: usize = 1024;
/// The most a page header may take (they hold statistics).
const HEADER_MAX: u64 = 64 << 10;

const MIB: u64 = 1 << 20;

/// What one file may cost, from `--memory-limit`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub memory: Option<usize>,
}

impl Budget {
    /// The largest page, decompressed: 16 MiB, and an eighth of the limit.
    pub fn page_max(&self) -> u64 {
        self.memory.map_or(16 * MIB, |m| (m as u64 / 8).min(16 * MIB))
    }

    /// The largest row group, compressed: 256 MiB, and half the limit.
    pub fn row_group_max(&self) -> u64 {
        self.memory.map_or(256 * MIB, |m| (m as u64 / 2).min(256 * MIB))
    }
}

/// Rows per batch when checking values: DataFusion's default batch size,
/// so a check of one batch bounds a batch of every later scan.
pub const BATCH_ROWS: usize = 8192;

impl Budget {
    /// The most string bytes one batch of [`BATCH_ROWS`] rows may hold,
    /// each row's value counted whole: 64 MiB, and a quarter of the
    /// limit. A small dictionary page can give many rows one huge value,
    /// and whatever copies or scans them (a cast, `length`, output) pays
    /// for every row.
    pub fn batch_strings_max(&self) -> u64 {
        self.memory.map_or(64 * MIB, |m| (m as u64 / 4).min(64 * MIB))
    }
}

/// The bytes a batch's string and binary columns hold, each row counted
/// (views: from their lengths, without touching the values).
fn string_bytes(batch: &datafusion::arrow::array::RecordBatch) -> u64 {
    use datafusion::arrow::array::AsArray;
    let lengths = |views: &[u128]| views.iter().map(|v| u64::from(*v as u32)).sum::<u64>();
    batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View => lengths(c.as_string_view().views()),
            DataType::BinaryView => lengths(c.as_binary_view().views()),
            _ => 0,
        })
        .sum()
}

/// Why a file is left out, as said in its warning.
pub type Why = String;

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / MIB as f64)
}

fn reserve(pool: &Arc<dyn MemoryPool>, what: &str, bytes: u64) -> Result<MemoryReservation, Why> {
    let r = MemoryConsumer::new(format!("history {what}")).register(pool);
    r.try_grow(usize::try_from(bytes).unwrap_or(usize::MAX))
        .map_err(|_| format!("{what} needs {} and --memory-limit leaves less", mib(bytes)))?;
    Ok(r)
}

/// A file's footer, decoded within bounds, and its columns as Arrow sees them.
pub struct Footer {
    pub metadata: Arc<ParquetMetaData>,
    pub schema: Schema,
    /// Where the column data ends (the footer starts).
    data_end: u64,
}

/// Step 1: read and decode the footer.
pub async fn footer(
    store: &Arc<dyn ObjectStore>,
    file: &ObjectMeta,
    pool: &Arc<dyn MemoryPool>,
) -> Result<Footer, Why> {
    const MAGIC: &[u8] = b"PAR1";
    if file.size < 12 {
        return Err(format!("not a Parquet file ({} bytes)", file.size));
    }
    let tail = store.get_range(&file.location, file.size - 8..file.size).await.map_err(|e| e.to_string())?;
    let (Some(len), Some(magic)) = (tail.get(..4), tail.get(4..8)) else { return Err("cannot read its footer".into()) };
    let len = u64::from(u32::from_le_bytes([len[0], len[1], len[2], len[3]]));
    // The parquet reader computes `size - 8 - len` unchecked: checked here first.
    if magic != MAGIC || len + 12 > file.size {
        return Err("not a Parquet file (its footer is corrupt)".into());
    }
    if len > FOOTER_MAX {
        return Err(format!("its footer claims {} (at most {} is read)", mib(len), mib(FOOTER_MAX)));
    }
    let _held = reserve(pool, "decoding its footer", len * FOOTER_COST)?;
    let data_end = file.size - 8 - len;
    let bytes = store.get_range(&file.location, data_end..file.size - 8).await.map_err(|e| e.to_string())?;
    let metadata =
        ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| format!("cannot decode its footer: {e}"))?;
    if metadata.num_row_groups() > ROW_GROUPS_MAX {
        return Err(format!("{} row groups (at most {ROW_GROUPS_MAX})", metadata.num_row_groups()));
    }
    let meta = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(meta.schema_descr(), meta.key_value_metadata())
        .map_err(|e| format!("cannot read its columns: {e}"))?;
    Ok(Footer { metadata: Arc::new(metadata), schema, data_end })
}

/// A type with its spelling differences removed: Utf8, LargeUtf8 and
/// Utf8View are one string type (DataFusion reads them as views), and a
/// timestamp is a timestamp in any unit and zone spelling (`UTC`,
/// `+00:00`; `record --events` writes nanoseconds, snapshots milliseconds):
/// the scan casts between them.
fn plain(t: &DataType) -> DataType {
    match t {
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Nanosecond, None),
        DataType::Dictionary(_, v) => plain(v),
        t => t.clone(),
    }
}

/// The same columns, as the table reads them: strings as views (as
/// DataFusion reads Parquet), nullability as the table defines it
/// ([`matches`] admits only files that have every non-null column).
pub fn table_schema(s: &Schema) -> Schema {
    Schema::new(
        s.fields()
            .iter()
            .map(|f| {
                let t = match f.data_type() {
                    DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
                    DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
                    t => t.clone(),
                };
                Field::new(f.name(), t, f.is_nullable())
            })
            .collect::<Vec<_>>(),
    )
}

/// The file's own columns with strings as views (what DataFusion's scan
/// decodes them to; the parquet reader takes only type changes like this).
fn as_views(s: &Schema) -> Schema {
    let fields: Vec<Field> = s
        .fields()
        .iter()
        .map(|f| match plain(f.data_type()) {
            // A dictionary too: decoded as views, each row's length is what
            // the scan's cast to the table's type may expand it to.
            DataType::Utf8 => f.as_ref().clone().with_data_type(DataType::Utf8View),
            DataType::Binary => f.as_ref().clone().with_data_type(DataType::BinaryView),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, s.metadata().clone())
}

/// Step 2: the file's columns against the table's. A column the table has
/// must have its type, and be present and non-null in the file where the
/// table's is non-null (`ts`); a nullable one may be missing (an older
/// recording); columns the table lacks are not read.
pub fn matches(file: &Schema, table: &Schema) -> Result<(), Why> {
    let mut shared = 0;
    for want in table.fields() {
        let mut same_name = file.fields().iter().filter(|f| f.name() == want.name());
        let Some(have) = same_name.next() else {
            if !want.is_nullable() {
                return Err(format!("its columns conflict with the table's: it lacks column '{}'", want.name()));
            }
            continue;
        };
        if same_name.next().is_some() {
            return Err(format!("its columns conflict with the table's: two columns are named '{}'", want.name()));
        }
        if plain(have.data_type()) != plain(want.data_type()) {
            return Err(format!(
                "its columns conflict with the table's: column '{}' is {}, the table's is {}",
                want.name(),
                have.data_type(),
                want.data_type()
            ));
        }
        if have.is_nullable() && !want.is_nullable() {
            return Err(format!(
                "its columns conflict with the table's: column '{}' may be null, the table's may not",
                want.name()
            ));
        }
        shared += 1;
    }
    if shared == 0 {
        return Err("its columns conflict with the table's: none of them is the table's".into());
    }
    Ok(())
}

/// Steps 3 and 4: the pages' sizes, then every value decoded.
pub async fn body(
    store: &Arc<dyn ObjectStore>,
    file: &ObjectMeta,
    footer: &Footer,
    pool: &Arc<dyn MemoryPool>,
    budget: Budget,
) -> Result<(), Why> {
    let mut decode_need = 0u64;
    for rg in footer.metadata.row_groups() {
        let (mut compressed, mut pages) = (0u64, 0u64);
        for col in rg.columns() {
            let (start, len) = col.byte_range();
            let end = start
                .checked_add(len)
                .filter(|&e| start >= 4 && e <= footer.data_end)
                .ok_or("a column chunk lies outside the file")?;
            compressed += len;
            if compressed > budget.row_group_max() {
                return Err(format!(
                    "a row group holds more than {} (the most --memory-limit allows)",
                    mib(budget.row_group_max())
                ));
            }
            let largest = largest_page(store, file, start, end, col.column_path().string(), budget).await?;
            pages += largest;
        }
        decode_need = decode_need.max(compressed + pages);
    }
    let held = reserve(pool, "decoding it", decode_need)?;
    // Strings as views: a dictionary value is referenced by each row, not
    // copied into it.
    let options = ArrowReaderOptions::new().with_schema(Arc::new(as_views(&footer.schema)));
    let reader_meta = ArrowReaderMetadata::try_new(footer.metadata.clone(), options)
        .map_err(|e| format!("cannot read its columns: {e}"))?;
    let reader = ViewReader { store: store.clone(), file: file.clone() };
    let mut batches = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, reader_meta)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| format!("cannot be decoded: {e}"))?;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| format!("cannot be decoded: {e}"))?;
        let size = batch.get_array_memory_size();
        held.try_grow(size)
            .map_err(|_| format!("a batch of it needs {} and --memory-limit leaves less", mib(size as u64)))?;
        let strings = string_bytes(&batch);
        if strings > budget.batch_strings_max() {
            held.shrink(size);
            return Err(format!(
                "{BATCH_ROWS} of its rows hold {} of strings (at most {} under --memory-limit; a dictionary repeats one value per row)",
                mib(strings),
                mib(budget.batch_strings_max())
            ));
        }
        drop(batch);
        held.shrink(size);
    }
    Ok(())
}

/// The decoder's byte source: ranges of the file through the history view
/// (the footer is handed over already decoded).
struct ViewReader {
    store: Arc<dyn ObjectStore>,
    file: ObjectMeta,
}

impl AsyncFileReader for ViewReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<bytes::Bytes>> {
        async move {
            self.store.get_range(&self.file.location, range).await.map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async { Err(ParquetError::General("the footer was read already".into())) }.boxed()
    }
}

/// Walk the page headers of the column chunk `start..end`; the largest
/// page's decompressed size.
async fn largest_page(
    store: &Arc<dyn ObjectStore>,
    file: &ObjectMeta,
    start: u64,
    end: u64,
    column: String,
    budget: Budget,
) -> Result<u64, Why> {
    // A small chunk (every recorded one) is read at once, a large one a
    // header at a time.
    let whole = if end - start <= MIB {
        Some(store.get_range(&file.location, start..end).await.map_err(|e| e.to_string())?)
    } else {
        None
    };
    let (mut pos, mut largest) = (start, 0u64);
    while pos < end {
        let header = match &whole {
            Some(chunk) => chunk.slice((pos - start) as usize..),
            None => store.get_range(&file.location, pos..end.min(pos + HEADER_MAX)).await.map_err(|e| e.to_string())?,
        };
        let page = page_header::read(&header).map_err(|e| format!("column '{column}': {e}"))?;
        let (unc, comp) = (page.uncompressed as u64, page.compressed as u64);
        if unc > budget.page_max() {
            return Err(format!(
                "a page of column '{column}' decompresses to {} (at most {} under --memory-limit)",
                mib(unc),
                mib(budget.page_max())
            ));
        }
        largest = largest.max(unc);
        pos += page.header_len as u64 + comp;
    }
    if pos != end {
        return Err(format!("column '{column}': its pages overrun the column chunk"));
    }
    Ok(largest)
}
