//! The pid/process columns of `sockets` and `unix_sockets`, filled after
//! the dump: owners are looked up for exactly the inodes the dump returned,
//! walking /proc only until each has its lowest owner.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::collect::owners;
use crate::notice;
use crate::tables::columns::{ColumnDef, RowBuilder};
use crate::tables::live::BatchSink;

/// `held` batches were built over `full` minus the `(pid, process)`
/// columns; `inodes` has one entry per row. Send them completed, in
/// `full`'s column order.
pub fn fill(
    held: Vec<RecordBatch>,
    inodes: &[u64],
    defs: &[ColumnDef],
    full: &[usize],
    (pid_col, process_col): (usize, usize),
    sink: &BatchSink,
) -> anyhow::Result<()> {
    let wanted: HashSet<u64> = inodes.iter().copied().filter(|&i| i != 0).collect();
    let (owner_of, denied) = owners::lowest_owners(&wanted);
    if denied > 0 {
        notice::note_once(
            "owners-denied",
            format!(
                "not running as root: the open files of {denied} processes of other users cannot be read, \
                 so pid and process are null for their sockets"
            ),
        );
    }
    let mut names: HashMap<i32, Option<String>> = HashMap::new();
    let schema = RowBuilder::new(defs, Some(full), 0).schema();
    let mut offset = 0;
    for batch in held {
        let n = batch.num_rows();
        let rows = &inodes[offset..offset + n];
        offset += n;
        let pids: Int32Array = rows.iter().map(|i| owner_of.get(i).copied()).collect();
        let process: StringArray = rows
            .iter()
            .map(|i| owner_of.get(i).and_then(|p| names.entry(*p).or_insert_with(|| owners::comm(*p)).clone()))
            .collect();
        let (pids, process): (ArrayRef, ArrayRef) = (Arc::new(pids), Arc::new(process));
        let mut inner = batch.columns().iter();
        let columns = full
            .iter()
            .map(|&c| match c {
                c if c == pid_col => Ok(pids.clone()),
                c if c == process_col => Ok(process.clone()),
                _ => inner.next().cloned().ok_or_else(|| anyhow::anyhow!("owner batch lost a column")),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(n)))?;
        if !sink.send(batch) {
            break;
        }
    }
    Ok(())
}

/// The table columns without pid/process, and whether either is wanted.
pub fn split(defs: &[ColumnDef], projection: Option<&[usize]>, (pid_col, process_col): (usize, usize)) -> (Vec<usize>, Vec<usize>, bool) {
    let full: Vec<usize> = projection.map(<[usize]>::to_vec).unwrap_or_else(|| (0..defs.len()).collect());
    let inner: Vec<usize> = full.iter().copied().filter(|&c| c != pid_col && c != process_col).collect();
    let owners = inner.len() != full.len();
    (full, inner, owners)
}
