//! History and fleets: sampling tables into Parquet files laid out the way
//! every engine understands (hive partitions), locally or in S3, and
//! reading them back as `history.<table>` next to the live tables.
//!
//! Layout: `DIR/<table>/host=<hostname>/date=<YYYY-MM-DD>/<ts-ms>.parquet`,
//! each row with a `ts` column; `host` and `date` come from the path.

pub mod events;
pub mod layout;
pub mod left_out;
pub mod local;
pub mod page_header;
pub mod record;
pub mod register;
pub mod schema;
pub mod store;
pub mod vet;
pub mod view;
pub mod walk;
