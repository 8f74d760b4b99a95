//! `--history DIR`: every recorded table under DIR becomes
//! `history.<table>`, a Parquet listing table partitioned by host and date,
//! so filters on them skip whole directories.
//!
//! The tree is hostile input read as root (other hosts' files, a shared
//! bucket): it is listed without following links ([`super::walk`]), every
//! file is checked against the table's own columns and decoded once within
//! `--memory-limit` ([`super::vet`]), and the whole registration runs under
//! `--timeout`. A file that fails is left out with one warning naming it
//! (past a few, one line counts the rest: [`super::left_out`]); queries
//! then read only the files admitted, as they were checked
//! ([`super::view`]).

use std::sync::Arc;

use anyhow::Context;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore};

use super::left_out::LeftOut;
use super::schema::HistorySchema;
use super::store::HistoryStore;
use super::vet::{self, Budget, Why};
use super::view::{Admitted, HistoryView};
use super::{layout, walk};
use crate::query::engine::Limits;

pub use crate::query::catalog::HISTORY_SCHEMA as SCHEMA;

/// Register `history.<table>` for each table recorded in `store`, within
/// `limits` (the session's memory pool is the one `--memory-limit` bounds).
pub async fn register(ctx: &SessionContext, store: HistoryStore, limits: Limits) -> anyhow::Result<Vec<String>> {
    let budget = Budget { memory: limits.memory };
    match limits.timeout {
        None => register_within(ctx, store, budget).await,
        Some(t) => tokio::time::timeout(t, register_within(ctx, store, budget)).await.map_err(|_| {
            anyhow::anyhow!("reading --history took longer than --timeout ({})", humantime::format_duration(t))
        })?,
    }
}

/// The columns `record` writes for `table`, when sockql knows them: a
/// built-in table's with the `ts` stamp, an event table's as they are
/// (`record --events` writes the events' own `ts`), the sample log's.
fn known_columns(table: &str) -> Option<Schema> {
    if table == super::record::SAMPLES {
        return Some(crate::query::stamp::stamped_schema(&super::record::samples_schema()).as_ref().clone());
    }
    let info = crate::tables::catalog().into_iter().find(|t| t.name == table)?;
    if super::events::EVENT_TABLES.contains(&table) {
        return Some(info.schema.as_ref().clone());
    }
    Some(crate::query::stamp::stamped_schema(&info.schema).as_ref().clone())
}

/// A file found, not yet checked.
struct Found {
    admitted: Admitted,
    /// How warnings name it.
    name: String,
}

async fn found(store: &HistoryStore, table: &str, left: &mut LeftOut) -> anyhow::Result<Vec<Found>> {
    if let Some(root) = &store.root_dir {
        let files = walk::files(root, &store.prefix, table, left);
        return Ok(files
            .into_iter()
            .map(|(meta, local)| Found { name: local.display(), admitted: Admitted { meta, local: Some(local) } })
            .collect());
    }
    // An object store has no links; the same layout is required.
    let prefix = store.path(&[table]);
    let mut metas: Vec<ObjectMeta> = store.store.list(Some(&prefix)).try_collect().await?;
    metas.retain(|m| {
        let rest: Vec<_> = m.location.prefix_match(&prefix).map(|p| p.collect()).unwrap_or_default();
        rest.len() == 3
            && rest[0].as_ref().starts_with("host=")
            && rest[1].as_ref().starts_with("date=")
            && rest[2].as_ref().ends_with(".parquet")
    });
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let base = store.root_url.as_str().trim_end_matches('/').to_string();
    Ok(metas
        .into_iter()
        .map(|meta| Found { name: format!("{base}/{}", meta.location), admitted: Admitted { meta, local: None } })
        .collect())
}

/// Check one file completely against the table's columns.
async fn check(
    view: &Arc<dyn ObjectStore>,
    file: &ObjectMeta,
    columns: &Schema,
    pool: &Arc<dyn MemoryPool>,
    budget: Budget,
) -> Result<(), Why> {
    let footer = vet::footer(view, file, pool).await?;
    vet::matches(&footer.schema, columns)?;
    vet::body(view, file, &footer, pool, budget).await
}

async fn register_within(ctx: &SessionContext, store: HistoryStore, budget: Budget) -> anyhow::Result<Vec<String>> {
    // DataFusion keeps decoded Parquet footers in a cache (50 MiB by
    // default) outside the memory pool: with none kept, every footer a
    // query decodes is its own, and freed with it.
    ctx.runtime_env().cache_manager.get_file_metadata_cache().update_cache_limit(0);
    let catalog = ctx.catalog("datafusion").ok_or_else(|| anyhow::anyhow!("no default catalog"))?;
    let schema = Arc::new(MemorySchemaProvider::new());
    let mut left = LeftOut::default();
    let tables = match &store.root_dir {
        Some(root) => walk::tables(root, &mut left),
        None => layout::tables(&store).await?,
    };
    if tables.is_empty() {
        crate::notice::note_once("history-empty", format!("no recorded tables in {}", store.display));
    }
    let mut per_table = Vec::new();
    for table in &tables {
        per_table.push(
            found(&store, table, &mut left).await.with_context(|| format!("listing {} in {}", table, store.display))?,
        );
    }
    // Files are read for checking through the same view queries use.
    let every = per_table.iter().flatten().map(|f| f.admitted.clone());
    let view: Arc<dyn ObjectStore> = Arc::new(HistoryView::new(store.store.clone(), store.prefix.clone(), every));
    let pool = ctx.runtime_env().memory_pool.clone();
    let mut admitted = Vec::new();
    let mut columns_of = Vec::new();
    // Tables with files of which none was admitted: their error says so.
    let mut unreadable = Vec::new();
    for (table, files) in tables.iter().zip(per_table) {
        let columns = match known_columns(table) {
            Some(c) => c,
            None => match most_common_columns(&view, &files, &pool).await {
                Some(c) => c,
                None => {
                    if !files.is_empty() {
                        unreadable.push(table.clone());
                    }
                    columns_of.push(None);
                    continue;
                }
            },
        };
        let (mut any, had_files) = (false, !files.is_empty());
        for f in files {
            match check(&view, &f.admitted.meta, &columns, &pool, budget).await {
                Ok(()) => {
                    admitted.push(f.admitted);
                    any = true;
                }
                Err(why) => left.add(&f.name, &why),
            }
        }
        if had_files && !any {
            unreadable.push(table.clone());
        }
        columns_of.push(any.then_some(columns));
    }
    left.finish();
    ctx.register_object_store(
        &store.root_url,
        Arc::new(HistoryView::new(store.store.clone(), store.prefix.clone(), admitted)),
    );
    for (table, columns) in tables.iter().zip(columns_of) {
        let Some(columns) = columns else { continue };
        let url = ListingTableUrl::parse(store.table_url(table))?;
        let options = ListingOptions::new(Arc::new(parquet_format()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("host".into(), DataType::Utf8), ("date".into(), DataType::Utf8)]);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(Arc::new(vet::table_schema(&columns)));
        schema.register_table(table.clone(), Arc::new(ListingTable::try_new(config)?))?;
    }
    // Recordings older than the sample log have none: an empty one, so
    // reports that read it still run (they fall back on the data's ts).
    if !schema.table_exist(super::record::SAMPLES) {
        let log = crate::query::stamp::stamped_schema(&super::record::samples_schema());
        let mut fields: Vec<_> = log.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("host", DataType::Utf8, true)));
        fields.push(Arc::new(Field::new("date", DataType::Utf8, true)));
        let empty = datafusion::datasource::MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
        schema.register_table(super::record::SAMPLES.to_string(), Arc::new(empty))?;
    }
    catalog.register_schema(SCHEMA, Arc::new(HistorySchema::new(schema, store.display.clone(), unreadable)))?;
    Ok(tables)
}

/// Parquet as the history tables read it: no page index and no bloom
/// filters (more structures whose sizes a file claims; a recorded sample
/// is read whole anyway).
fn parquet_format() -> ParquetFormat {
    let mut options = TableParquetOptions::default();
    options.global.enable_page_index = false;
    options.global.bloom_filter_on_read = false;
    ParquetFormat::default().with_options(options)
}

/// For a table sockql does not define (a saved query's results): the
/// columns most of its files have (ties: the first such file's, by path),
/// never simply the first file's. `None` when no footer is readable.
async fn most_common_columns(
    view: &Arc<dyn ObjectStore>,
    files: &[Found],
    pool: &Arc<dyn MemoryPool>,
) -> Option<Schema> {
    // (as the table would read them, how many files, the first file's own)
    let mut seen: Vec<(Schema, usize, Schema)> = Vec::new();
    for f in files {
        // A file whose footer fails here fails again when checked, and is
        // named then.
        let Ok(footer) = vet::footer(view, &f.admitted.meta, pool).await else { continue };
        let columns = vet::table_schema(&footer.schema);
        match seen.iter_mut().find(|(s, _, _)| *s == columns) {
            Some((_, n, _)) => *n += 1,
            None => seen.push((columns, 1, footer.schema)),
        }
    }
    let best = seen.iter().map(|(_, n, _)| *n).max()?;
    seen.into_iter().find(|(_, n, _)| *n == best).map(|(_, _, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use datafusion::parquet::arrow::ArrowWriter;

    /// Footers a query decodes are not kept past it: after two queries
    /// over two files the file-metadata cache holds nothing (DataFusion's
    /// default keeps both, outside --memory-limit).
    #[tokio::test]
    async fn no_parquet_footer_outlives_a_query() {
        let dir = std::env::temp_dir().join(format!("sockql-reg-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        for (i, date) in ["date=2026-01-01", "date=2026-01-02"].iter().enumerate() {
            let d = dir.join("saved").join("host=h").join(date);
            std::fs::create_dir_all(&d).unwrap();
            let col: ArrayRef = Arc::new(Int64Array::from(vec![i as i64; 3]));
            let batch = RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
            let mut w = ArrowWriter::try_new(std::fs::File::create(d.join("1.parquet")).unwrap(), schema.clone(), None)
                .unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
        }
        let ctx = SessionContext::new();
        let store = HistoryStore::open(dir.to_str().unwrap(), false).unwrap();
        register(&ctx, store, Limits { memory: None, timeout: None }).await.unwrap();
        for _ in 0..2 {
            let rows =
                ctx.sql("SELECT count(*) AS c, sum(n) AS s FROM history.saved").await.unwrap().collect().await.unwrap();
            let c = rows[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0);
            assert_eq!(c, 6);
        }
        let cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(cache.len(), 0, "{:?}", cache.list_entries().keys().collect::<Vec<_>>());
        assert_eq!(cache.cache_limit(), 0);
    }
}
