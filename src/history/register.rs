//! `--history DIR`: every recorded table under DIR becomes
//! `history.<table>`, a Parquet listing table partitioned by host and date,
//! so filters on them skip whole directories.
//!
//! Every file's footer is read once here: a file that cannot be read, or
//! whose columns conflict with the files before it (oldest first), is left
//! out with one warning naming it, and the rest stay queryable.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::datasource::file_format::FileFormat;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectMeta;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;

use super::layout;
use super::skip::SkipFiles;
use super::store::HistoryStore;

pub use crate::query::catalog::HISTORY_SCHEMA as SCHEMA;

/// Register `history.<table>` for each table recorded in `store`.
pub async fn register(ctx: &SessionContext, store: HistoryStore) -> anyhow::Result<Vec<String>> {
    let catalog = ctx.catalog("datafusion").ok_or_else(|| anyhow::anyhow!("no default catalog"))?;
    let schema = Arc::new(MemorySchemaProvider::new());
    catalog.register_schema(SCHEMA, schema.clone())?;
    let tables = layout::tables(&store).await?;
    if tables.is_empty() {
        crate::notice::note_once("history-empty", format!("no recorded tables in {}", store.display));
    }
    let mut schemas = Vec::new();
    let mut skip = HashSet::new();
    for table in &tables {
        let (schema, bad) = table_schema(ctx, &store, table).await?;
        skip.extend(bad);
        schemas.push(schema);
    }
    ctx.register_object_store(&store.root_url, Arc::new(SkipFiles::new(store.store.clone(), skip)));
    for (table, file_schema) in tables.iter().zip(schemas) {
        let Some(file_schema) = file_schema else { continue };
        let url = ListingTableUrl::parse(store.table_url(table))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("host".into(), DataType::Utf8), ("date".into(), DataType::Utf8)]);
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(Arc::new(file_schema));
        schema.register_table(table.clone(), Arc::new(ListingTable::try_new(config)?))?;
    }
    // Recordings older than the sample log have none: an empty one, so
    // reports that read it still run (they fall back on the data's ts).
    if !schema.table_exist(super::record::SAMPLES) {
        let log = crate::query::stamp::stamped_schema(&super::record::samples_schema());
        let mut fields: Vec<_> = log.fields().iter().cloned().collect();
        fields.push(Arc::new(datafusion::arrow::datatypes::Field::new("host", DataType::Utf8, true)));
        fields.push(Arc::new(datafusion::arrow::datatypes::Field::new("date", DataType::Utf8, true)));
        let empty = datafusion::datasource::MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
        schema.register_table(super::record::SAMPLES.to_string(), Arc::new(empty))?;
    }
    Ok(tables)
}

/// The schema of `table`'s files, merged oldest first, and the files left
/// out (unreadable, or conflicting with that schema). `None` when no file
/// is readable.
async fn table_schema(ctx: &SessionContext, store: &HistoryStore, table: &str) -> anyhow::Result<(Option<Schema>, Vec<Path>)> {
    let prefix = store.path(&[table]);
    let mut files: Vec<ObjectMeta> = store.store.list(Some(&prefix)).try_collect().await?;
    files.retain(|f| f.location.extension() == Some("parquet"));
    files.sort_by(|a, b| a.location.cmp(&b.location));
    let state = ctx.state();
    let format = ParquetFormat::default();
    let schemas: Vec<_> = futures::stream::iter(files.iter())
        .map(|f| async {
            footer_fits(&store.store, f).await?;
            format.infer_schema(&state, &store.store, std::slice::from_ref(f)).await.map_err(|e| e.to_string())
        })
        .buffered(32)
        .collect()
        .await;
    let (mut merged, mut bad): (Option<Schema>, Vec<Path>) = (None, Vec::new());
    for (file, schema) in files.iter().zip(schemas) {
        let next = schema.and_then(|s| match &merged {
            None => Ok(s.as_ref().clone()),
            Some(m) => Schema::try_merge([m.clone(), s.as_ref().clone()]).map_err(|e| format!("its columns conflict with earlier files: {e}")),
        });
        match next {
            Ok(s) => merged = Some(s),
            Err(why) => {
                let first = why.lines().next().unwrap_or("").to_string();
                crate::notice::warn_once(&format!("history-skip:{}", file.location), format!("history: leaving out /{}: {first}", file.location));
                bad.push(file.location.clone());
            }
        }
    }
    Ok((merged, bad))
}

/// A Parquet file ends in a 4-byte metadata length and `PAR1`, and starts
/// with `PAR1`. Checked before the parquet reader sees the file: it
/// computes `file length - 8 - metadata length` unchecked, so a footer
/// claiming more metadata than the file holds overflows (a panic in debug
/// builds).
async fn footer_fits(store: &Arc<dyn object_store::ObjectStore>, file: &ObjectMeta) -> Result<(), String> {
    use object_store::ObjectStoreExt;
    const MAGIC: &[u8] = b"PAR1";
    if file.size < 12 {
        return Err(format!("not a Parquet file ({} bytes)", file.size));
    }
    let tail = store.get_range(&file.location, file.size - 8..file.size).await.map_err(|e| e.to_string())?;
    let metadata_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
    if &tail[4..8] != MAGIC || metadata_len + 12 > file.size {
        return Err("not a Parquet file (its footer is corrupt)".to_string());
    }
    Ok(())
}
