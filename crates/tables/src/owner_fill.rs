//! The pid/process columns of `sockets` and `unix_sockets`, filled after
//! the dump: for a dump of up to two batches, owners are looked up for
//! exactly the inodes it returned, walking /proc only until each has its
//! lowest owner; a larger one walks /proc once for every socket and
//! streams ([`OwnerStream`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray, StringBuilder};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::columns::{ColumnDef, RowBuilder};
use crate::live::BatchSink;
use sockql_collect::notice;
use sockql_collect::owners::{self, OwnerMap};

/// Who holds the sockets of a scan, and the names of those processes.
pub struct Owners {
    owner_of: OwnerMap,
    names: HashMap<i32, Option<String>>,
}

impl Owners {
    /// The lowest owners of exactly `inodes` (the walk stops once each
    /// has one).
    pub fn of(inodes: &[u64]) -> Self {
        let wanted: HashSet<u64> = inodes.iter().copied().filter(|&i| i != 0).collect();
        Self::noted(owners::lowest_owners(&wanted))
    }

    /// The lowest owners of every socket on the host: for a scan grown too
    /// large to hold its rows until its inodes are all known.
    pub fn all() -> Self {
        Self::noted(owners::all_lowest_owners())
    }

    fn noted((owner_of, denied): (OwnerMap, usize)) -> Self {
        if denied > 0 {
            notice::note_once(
                "owners-denied",
                format!(
                    "not running as root: the open files of {denied} processes of other users cannot be read, \
                     so pid and process are null for their sockets ({})",
                    sockql_collect::capabilities::fd_tables_refused()
                ),
            );
        }
        Owners { owner_of, names: HashMap::new() }
    }

    /// The `process` column for `pids`: each name is read once per
    /// process and appended without a copy per row.
    fn process_names(&mut self, pids: &Int32Array) -> StringArray {
        let mut b = StringBuilder::with_capacity(pids.len(), pids.len() * 8);
        for pid in pids.iter() {
            b.append_option(pid.and_then(|p| self.names.entry(p).or_insert_with(|| owners::comm(p)).as_deref()));
        }
        b.finish()
    }

    /// Send `held` batches, built over `full` minus the `(pid, process)`
    /// columns with one entry of `inodes` per row, completed, in `full`'s
    /// column order. False once the consumer is gone.
    pub fn send(
        &mut self,
        held: Vec<RecordBatch>,
        inodes: &[u64],
        defs: &[ColumnDef],
        full: &[usize],
        (pid_col, process_col): (usize, usize),
        sink: &BatchSink,
    ) -> anyhow::Result<bool> {
        self.send_named(held, inodes, defs, full, (pid_col, process_col), None, sink)
    }

    /// As [`send`](Self::send), with the container columns of `by` filled
    /// from each row's holder (its `netns` entry for the namespace).
    #[allow(clippy::too_many_arguments)]
    pub fn send_named(
        &mut self,
        held: Vec<RecordBatch>,
        inodes: &[u64],
        defs: &[ColumnDef],
        full: &[usize],
        (pid_col, process_col): (usize, usize),
        mut by: Option<(&mut ByOwner, &[u64])>,
        sink: &BatchSink,
    ) -> anyhow::Result<bool> {
        let schema = RowBuilder::new(defs, Some(full), 0).schema();
        let mut offset = 0;
        for batch in held {
            let n = batch.num_rows();
            let rows = inodes.get(offset..offset + n).ok_or_else(|| anyhow::anyhow!("owner batch lost its inodes"))?;
            let pids: Arc<Int32Array> = Arc::new(rows.iter().map(|&i| self.owner_of.get(i)).collect());
            let named = match by.as_mut() {
                Some((by, netns)) => {
                    let netns =
                        netns.get(offset..offset + n).ok_or_else(|| anyhow::anyhow!("owner batch lost its netns"))?;
                    Some((by.cols, by.arrays(&pids, netns)))
                }
                None => None,
            };
            offset += n;
            let mut inner = batch.columns().iter();
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(full.len());
            for &c in full {
                columns.push(match (c, &named) {
                    (c, Some(((name, _), (names, _)))) if c == *name => names.clone(),
                    (c, Some(((_, id), (_, ids)))) if c == *id => ids.clone(),
                    (c, _) if c == pid_col => pids.clone(),
                    (c, _) if c == process_col => Arc::new(self.process_names(&pids)),
                    _ => inner.next().cloned().ok_or_else(|| anyhow::anyhow!("owner batch lost a column"))?,
                });
            }
            let batch = RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(n)),
            )?;
            if !sink.send(batch) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Rows a scan with owners holds before it stops waiting for the dump to
/// end: past this, it walks /proc for every socket once and streams the
/// rest, so memory stays bounded however large the table.
pub const HOLD_ROWS: usize = 2 * crate::live::BATCH_ROWS;

/// The owner columns of one scan: rows are built without pid/process and
/// held; while the dump stays within [`HOLD_ROWS`], the owners of exactly
/// its inodes are looked up at the end (a walk that stops once each has
/// one); a dump that outgrows it switches to the owners of every socket
/// and streams.
pub struct OwnerStream<'a> {
    defs: &'a [ColumnDef],
    full: &'a [usize],
    cols: (usize, usize),
    inodes: Vec<u64>,
    /// Once streaming: every socket's owner, and the rows already sent.
    streaming: Option<(Owners, usize)>,
    /// The container columns, named by the holder ([`ByOwner`]), and
    /// each row's namespace for the sockets no container process holds.
    by: Option<ByOwner>,
    netns: Vec<u64>,
}

impl<'a> OwnerStream<'a> {
    pub fn new(defs: &'a [ColumnDef], full: &'a [usize], cols: (usize, usize)) -> Self {
        OwnerStream { defs, full, cols, inodes: Vec::new(), streaming: None, by: None, netns: Vec::new() }
    }

    /// This stream with the container columns named by the holder: rows
    /// are then built without them and given with [`row_in`](Self::row_in).
    pub fn naming(mut self, by: ByOwner) -> Self {
        self.by = Some(by);
        self
    }

    /// [`row`](Self::row) of a socket of namespace `netns`.
    pub fn row_in(
        &mut self,
        inode: u64,
        netns: u64,
        out: &mut crate::live::Emitter<'_>,
        sink: &BatchSink,
    ) -> anyhow::Result<std::ops::ControlFlow<()>> {
        if self.by.is_some() {
            self.netns.push(netns);
        }
        self.row(inode, out, sink)
    }

    /// After each row (its socket's `inode`): send what is ready once
    /// streaming. Break when the consumer is gone.
    pub fn row(
        &mut self,
        inode: u64,
        out: &mut crate::live::Emitter<'_>,
        sink: &BatchSink,
    ) -> anyhow::Result<std::ops::ControlFlow<()>> {
        self.inodes.push(inode);
        if self.streaming.is_none() && self.inodes.len() > HOLD_ROWS {
            self.streaming = Some((Owners::all(), 0));
        }
        if let Some((owners, sent)) = self.streaming.as_mut() {
            let held = out.take_held();
            let rows: usize = held.iter().map(|b| b.num_rows()).sum();
            if rows > 0 {
                let by = self.by.as_mut().map(|b| (b, self.netns.get(*sent..).unwrap_or_default()));
                if !owners.send_named(held, &self.inodes[*sent..], self.defs, self.full, self.cols, by, sink)? {
                    return Ok(std::ops::ControlFlow::Break(()));
                }
                *sent += rows;
            }
        }
        Ok(std::ops::ControlFlow::Continue(()))
    }

    /// Send what is still held, with its owners.
    pub fn finish(mut self, out: crate::live::Emitter<'_>, sink: &BatchSink) -> anyhow::Result<()> {
        let held = out.into_held()?;
        let (mut owners, sent) = match self.streaming.take() {
            Some(streaming) => streaming,
            None => (Owners::of(&self.inodes), 0),
        };
        let by = self.by.as_mut().map(|b| (b, self.netns.get(sent..).unwrap_or_default()));
        owners.send_named(held, &self.inodes[sent..], self.defs, self.full, self.cols, by, sink).map(drop)
    }
}

/// The `container`/`container_id` columns of a scan with owners, named
/// by the socket's holder first (the container its process runs in: a
/// container sharing the host's namespace, `--network host`, or a pod's
/// member), then by the socket's namespace.
pub struct ByOwner {
    /// (container, container_id) column indices.
    pub cols: (usize, usize),
    pub lookup: crate::container_fill::ContainerLookup,
}

impl ByOwner {
    /// The two columns of rows held by `pids`, in namespaces `netns`.
    fn arrays(&mut self, pids: &Int32Array, netns: &[u64]) -> (ArrayRef, ArrayRef) {
        let mut names = StringBuilder::with_capacity(pids.len(), 0);
        let mut ids = StringBuilder::with_capacity(pids.len(), 0);
        for (pid, ns) in pids.iter().zip(netns) {
            let c = self.lookup.of(pid, Some(*ns));
            names.append_option(c.and_then(|c| c.name.as_deref()));
            ids.append_option(c.map(|c| c.id.as_str()));
        }
        (Arc::new(names.finish()), Arc::new(ids.finish()))
    }
}

/// The table columns without pid/process, and whether either is wanted.
pub fn split(
    defs: &[ColumnDef],
    projection: Option<&[usize]>,
    (pid_col, process_col): (usize, usize),
) -> (Vec<usize>, Vec<usize>, bool) {
    let full: Vec<usize> = projection.map(<[usize]>::to_vec).unwrap_or_else(|| (0..defs.len()).collect());
    let inner: Vec<usize> = full.iter().copied().filter(|&c| c != pid_col && c != process_col).collect();
    let owners = inner.len() != full.len();
    (full, inner, owners)
}
