//! The execution side shared by every live table: a scan is a
//! [`PartitionStream`] whose producer runs on a blocking thread, reads the
//! kernel, and sends record batches down a small channel as they fill. The
//! query starts consuming rows while the dump is still arriving, memory is
//! bounded by the channel, and a consumer that stops (LIMIT) makes the next
//! send fail, which ends the dump.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::PartitionStream;
use tokio::sync::mpsc::Sender;

/// Where a producer puts its batches.
pub struct BatchSink {
    tx: Sender<Result<RecordBatch>>,
}

impl BatchSink {
    /// Send a batch; false means nobody reads any more and the producer
    /// should stop.
    pub fn send(&self, batch: RecordBatch) -> bool {
        self.tx.blocking_send(Ok(batch)).is_ok()
    }
}

type Producer = dyn Fn(&BatchSink) -> anyhow::Result<()> + Send + Sync;

pub struct LivePartition {
    schema: SchemaRef,
    label: String,
    producer: Arc<Producer>,
}

impl LivePartition {
    /// `label` says what the scan will do (shown by EXPLAIN via Debug).
    pub fn new(
        schema: SchemaRef,
        label: String,
        producer: impl Fn(&BatchSink) -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> Self {
        LivePartition { schema, label, producer: Arc::new(producer) }
    }
}

impl fmt::Debug for LivePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.label)
    }
}

impl PartitionStream for LivePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        // Two batches in flight: enough to overlap kernel reads with query
        // work, small enough that memory stays a couple of batches.
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let sink = BatchSink { tx: builder.tx() };
        let producer = self.producer.clone();
        builder.spawn_blocking(move || {
            producer(&sink).map_err(|e| DataFusionError::External(e.into()))
        });
        builder.build()
    }
}

/// Batch size of every live table: large enough to amortise per-batch
/// overhead, small enough that a scan holds little memory.
pub const BATCH_ROWS: usize = 8192;

/// Feeds rows from a producer into batches and the batches into the sink,
/// honouring LIMIT and a consumer that went away.
pub struct Emitter<'a> {
    pub rows: crate::tables::columns::RowBuilder,
    sink: &'a BatchSink,
    limit: Option<usize>,
    total: usize,
    closed: bool,
}

impl<'a> Emitter<'a> {
    pub fn new(rows: crate::tables::columns::RowBuilder, sink: &'a BatchSink, limit: Option<usize>) -> Self {
        Emitter { rows, sink, limit, total: 0, closed: false }
    }

    /// Close the row being built. `Break` means stop producing: the limit
    /// is reached or the consumer is gone.
    pub fn end_row(&mut self) -> anyhow::Result<std::ops::ControlFlow<()>> {
        use std::ops::ControlFlow;
        self.total += 1;
        let full = self.rows.end_row();
        let at_limit = self.limit.is_some_and(|l| self.total >= l);
        if full || at_limit {
            self.flush()?;
        }
        Ok(if self.closed || at_limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
    }

    /// True once no more rows are wanted.
    pub fn done(&self) -> bool {
        self.closed || self.limit.is_some_and(|l| self.total >= l)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows.rows() > 0 && !self.closed {
            let batch = self.rows.finish()?;
            self.closed = !self.sink.send(batch);
        }
        Ok(())
    }

    /// Send what is left.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush()
    }
}
