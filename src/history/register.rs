//! `--history DIR`: every recorded table under DIR becomes
//! `history.<table>`, a Parquet listing table partitioned by host and date,
//! so filters on them skip whole directories.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;

use super::layout;
use super::store::HistoryStore;

pub const SCHEMA: &str = "history";

/// Register `history.<table>` for each table recorded in `store`.
pub async fn register(ctx: &SessionContext, store: HistoryStore) -> anyhow::Result<Vec<String>> {
    ctx.register_object_store(&store.root_url, store.store.clone());
    let catalog = ctx.catalog("datafusion").ok_or_else(|| anyhow::anyhow!("no default catalog"))?;
    let schema = Arc::new(MemorySchemaProvider::new());
    catalog.register_schema(SCHEMA, schema.clone())?;
    let tables = layout::tables(&store).await?;
    if tables.is_empty() {
        crate::notice::note_once("history-empty", format!("no recorded tables in {}", store.display));
    }
    for table in &tables {
        let url = ListingTableUrl::parse(store.table_url(table))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("host".into(), DataType::Utf8), ("date".into(), DataType::Utf8)]);
        let file_schema = options.infer_schema(&ctx.state(), &url).await?;
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(file_schema);
        schema.register_table(table.clone(), Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(tables)
}
