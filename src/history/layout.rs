//! The hive-partitioned layout of recorded samples, and its retention.

use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::store::HistoryStore;

/// Write one sample as `<table>/host=<host>/date=<YYYY-MM-DD>/<ts-ms>.parquet`:
/// through the link-refusing local tree, or as one atomic put to an
/// object store.
pub async fn write_sample(
    store: &HistoryStore,
    table: &str,
    host: &str,
    ts: DateTime<Utc>,
    data: Vec<u8>,
) -> anyhow::Result<()> {
    let (host, date) = (format!("host={host}"), format!("date={}", ts.format("%Y-%m-%d")));
    let file = format!("{}.parquet", ts.timestamp_millis());
    let dirs = [table, host.as_str(), date.as_str()];
    match &store.local {
        Some(tree) => {
            tree.write_file(&dirs, &file, &data)?;
        }
        None => {
            let path = store.path(&[table, &host, &date, &file]);
            store.store.put(&path, data.into()).await?;
        }
    }
    Ok(())
}

/// The date of a `date=YYYY-MM-DD` path segment.
pub fn partition_date(segment: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(segment.strip_prefix("date=")?, "%Y-%m-%d").ok()
}

/// The table directories under the store's prefix.
pub async fn tables(store: &HistoryStore) -> anyhow::Result<Vec<String>> {
    let listing = store.store.list_with_delimiter(Some(&store.prefix)).await?;
    let mut names: Vec<String> =
        listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
    names.sort();
    Ok(names)
}

/// Delete this host's partitions of `table` older than `keep_days` days
/// before `today`. Returns the number of files deleted.
pub async fn prune(
    store: &HistoryStore,
    table: &str,
    host: &str,
    today: NaiveDate,
    keep_days: i64,
) -> anyhow::Result<usize> {
    if let Some(tree) = &store.local {
        return tree.prune(table, host, today, keep_days);
    }
    let host_dir = store.path(&[table, &format!("host={host}")]);
    let listing = store.store.list_with_delimiter(Some(&host_dir)).await?;
    let mut deleted = 0;
    for dir in listing.common_prefixes {
        let Some(date) = dir.filename().and_then(partition_date) else { continue };
        if (today - date).num_days() <= keep_days {
            continue;
        }
        let files: Vec<_> = store.store.list(Some(&dir)).try_collect().await?;
        for f in files {
            store.store.delete(&f.location).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_dates() {
        assert_eq!(partition_date("date=2026-11-25"), NaiveDate::from_ymd_opt(2026, 11, 25));
        assert_eq!(partition_date("host=x"), None);
        assert_eq!(partition_date("date=yesterday"), None);
    }
}
