//! The execution side shared by every live table: a scan is a
//! [`LivePartition`] whose producer runs on a blocking thread, reads the
//! kernel, and sends record batches down a small channel as they fill. The
//! query starts consuming rows while the dump is still arriving, memory is
//! bounded by the channel, and a consumer that stops (LIMIT) makes the next
//! send fail, which ends the dump.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::cast::as_boolean_array;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::{RecordBatchReceiverStream, RecordBatchStreamAdapter};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use futures::StreamExt;
use tokio::sync::mpsc::Sender;

use sockql_collect::netlink::Received;
use sockql_collect::Used;

/// What a scan read from the kernel, shown by EXPLAIN ANALYZE: netlink
/// messages and bytes received, netlink dumps and /proc files read, and
/// rows produced.
#[derive(Debug, Clone)]
pub struct ScanMetrics {
    messages: Count,
    bytes: Count,
    netlink_dumps: Count,
    proc_reads: Count,
    rows: Count,
}

impl ScanMetrics {
    fn new(set: &ExecutionPlanMetricsSet) -> Self {
        let count = |name: &'static str| MetricBuilder::new(set).counter(name, 0);
        ScanMetrics {
            messages: count("kernel_messages"),
            bytes: count("kernel_bytes"),
            netlink_dumps: count("netlink_dumps"),
            proc_reads: count("proc_reads"),
            rows: MetricBuilder::new(set).output_rows(0),
        }
    }

    /// Count what one reader call used and received.
    pub fn read(&self, used: Used, received: Received) {
        self.messages.add(received.messages as usize);
        self.bytes.add(received.bytes as usize);
        self.netlink_dumps.add(used.netlink);
        self.proc_reads.add(used.proc);
    }
}

/// Where a producer puts its batches, and what it read.
pub struct BatchSink {
    tx: Sender<Result<RecordBatch>>,
    pub metrics: ScanMetrics,
}

impl BatchSink {
    /// Send a batch; false means nobody reads any more and the producer
    /// should stop.
    pub fn send(&self, batch: RecordBatch) -> bool {
        self.metrics.rows.add(batch.num_rows());
        self.tx.blocking_send(Ok(batch)).is_ok()
    }

    /// True once nobody reads any more (a LIMIT above was met, the query
    /// was dropped): a stream waiting for events stops on it.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

type Producer = dyn Fn(&BatchSink) -> anyhow::Result<()> + Send + Sync;

pub struct LivePartition {
    schema: SchemaRef,
    label: String,
    producer: Arc<Producer>,
    /// The statement that planned this scan: its reader's warnings and
    /// notes go there, from whichever thread reads.
    notices: Option<sockql_collect::notice::Notices>,
    /// A stream's scan (see [`LiveScanExec::is_stream`]).
    stream: bool,
}

impl LivePartition {
    /// `label` says what the scan will do (shown by EXPLAIN via Debug).
    pub fn new(
        schema: SchemaRef,
        label: String,
        producer: impl Fn(&BatchSink) -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> Self {
        LivePartition {
            schema,
            label,
            producer: Arc::new(producer),
            notices: sockql_collect::notice::Notices::current(),
            stream: false,
        }
    }

    /// This scan reads a stream (`Kind::Stream`).
    pub fn stream(self) -> Self {
        LivePartition { stream: true, ..self }
    }
}

impl fmt::Debug for LivePartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.label)
    }
}

impl LivePartition {
    /// Start the producer; what it reads is counted in `metrics`.
    fn execute(&self, metrics: ScanMetrics) -> SendableRecordBatchStream {
        // The reader starts when the stream is first polled, not when the
        // plan is built: the probe side of a join then reads the kernel
        // after its build side is done. A report that joins a capture to
        // sockets so sees the sockets as they are when the capture ends
        // (connections opened during it included), not as they were before.
        let (schema, producer, notices) = (self.schema.clone(), self.producer.clone(), self.notices.clone());
        let start = async move {
            // Two batches in flight: enough to overlap kernel reads with
            // query work, small enough that memory stays a couple of batches.
            let mut builder = RecordBatchReceiverStream::builder(schema, 2);
            let sink = BatchSink { tx: builder.tx(), metrics };
            builder.spawn_blocking(move || {
                sockql_collect::notice::Notices::within(notices.as_ref(), || producer(&sink))
                    .map_err(|e| DataFusionError::External(e.into()))
            });
            builder.build()
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::once(start).flatten()))
    }
}

/// What a stream's scan does to its rows after reading them (see
/// `Kind::Stream` in `table.rs`): keep those the predicate holds for, keep the
/// columns the query asked for, stop at the LIMIT.
#[derive(Debug, Clone)]
pub struct StreamFilter {
    pub predicate: Arc<dyn PhysicalExpr>,
    /// Which of the read columns the query gets, in order.
    pub output: Vec<usize>,
    pub limit: Option<usize>,
    /// The predicate as EXPLAIN shows it.
    pub shown: String,
}

impl StreamFilter {
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let mask = self.predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
        let kept = filter_record_batch(&batch, as_boolean_array(&mask)?)?;
        Ok(kept.project(&self.output)?)
    }
}

/// A stream's rows after its [`StreamFilter`]; it ends as soon as the
/// LIMIT is met, dropping the reader's stream so the reader stops.
struct Filtered {
    inner: Option<SendableRecordBatchStream>,
    filter: StreamFilter,
    left: Option<usize>,
    schema: SchemaRef,
}

impl futures::Stream for Filtered {
    type Item = Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        loop {
            if self.left == Some(0) {
                self.inner = None;
                return Poll::Ready(None);
            }
            let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
            let batch = match inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(b))) => b,
                other => return other,
            };
            let kept = match self.filter.apply(batch) {
                Ok(k) => k,
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            if kept.num_rows() == 0 {
                continue;
            }
            let kept = match self.left.as_mut() {
                Some(left) => {
                    let take = (*left).min(kept.num_rows());
                    *left -= take;
                    kept.slice(0, take)
                }
                None => kept,
            };
            return Poll::Ready(Some(Ok(kept)));
        }
    }
}

impl datafusion::physical_plan::RecordBatchStream for Filtered {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The scan node of every live table. Unlike a generic streaming scan, it
/// shows in EXPLAIN what its reader will ask of the kernel (the dumps, the
/// state mask, the bytecode, the extensions, whether owners are looked up).
#[derive(Debug)]
pub struct LiveScanExec {
    partition: LivePartition,
    /// A stream's own filter, projection and limit.
    post: Option<StreamFilter>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl LiveScanExec {
    /// The scan as the plan node DataFusion wants from a provider.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(partition: LivePartition) -> Arc<dyn ExecutionPlan> {
        let schema = partition.schema.clone();
        Self::with(partition, None, schema)
    }

    /// A stream's scan that applies `post` to what it reads.
    pub fn filtered(partition: LivePartition, post: StreamFilter) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = Arc::new(partition.schema.project(&post.output)?);
        Ok(Self::with(partition, Some(post), schema))
    }

    fn with(partition: LivePartition, post: Option<StreamFilter>, schema: SchemaRef) -> Arc<dyn ExecutionPlan> {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Arc::new(LiveScanExec {
            partition,
            post,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// Whether this scan reads a stream, whose rows must reach the reader
    /// as they come: the query layer keeps DataFusion from splitting it
    /// (query/stream_plan.rs says why).
    pub fn is_stream(&self) -> bool {
        self.partition.stream
    }
}

impl DisplayAs for LiveScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiveScanExec: {}", self.partition.label)?;
        if let Some(p) = &self.post {
            write!(f, " filter=[{}] limit={:?}", p.shown, p.limit)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LiveScanExec {
    fn name(&self) -> &str {
        "LiveScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue) // filters live in the label, not as expressions
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self) // a leaf: there are no children to replace
    }

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let stream = self.partition.execute(ScanMetrics::new(&self.metrics));
        Ok(match &self.post {
            None => stream,
            Some(post) => Box::pin(Filtered {
                inner: Some(stream),
                filter: post.clone(),
                left: post.limit,
                schema: self.properties.eq_properties.schema().clone(),
            }),
        })
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Batch size of every live table: large enough to amortise per-batch
/// overhead, small enough that a scan holds little memory.
pub const BATCH_ROWS: usize = 8192;

/// Feeds rows from a producer into batches and the batches into the sink,
/// honouring LIMIT and a consumer that went away.
pub struct Emitter<'a> {
    pub rows: crate::columns::RowBuilder,
    sink: &'a BatchSink,
    /// Keep batches back instead of sending them (see [`Emitter::holding`]).
    hold: bool,
    held: Vec<RecordBatch>,
    limit: Option<usize>,
    total: usize,
    closed: bool,
    last_flush: std::time::Instant,
}

/// How long a stream keeps rows back before sending a part batch: rows of
/// a live capture or event stream reach a LIMIT, or the screen, within it.
const STREAM_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

impl<'a> Emitter<'a> {
    pub fn new(rows: crate::columns::RowBuilder, sink: &'a BatchSink, limit: Option<usize>) -> Self {
        Emitter {
            rows,
            sink,
            hold: false,
            held: Vec::new(),
            limit,
            total: 0,
            closed: false,
            last_flush: std::time::Instant::now(),
        }
    }

    /// An emitter with this one's sink and limit over `rows`, that keeps
    /// its batches, for a producer that must finish reading before it can
    /// complete the rows (take them with [`Emitter::into_held`]).
    pub fn holding(&self, rows: crate::columns::RowBuilder) -> Self {
        Emitter { hold: true, ..Emitter::new(rows, self.sink, self.limit) }
    }

    /// Where the batches go.
    pub fn sink(&self) -> &'a BatchSink {
        self.sink
    }

    /// Count what one reader call used and received, for EXPLAIN ANALYZE.
    pub fn count(&self, used: Used, received: Received) {
        self.sink.metrics.read(used, received);
    }

    /// The full batches a holding emitter kept so far (not the one being
    /// built), taken out of it.
    pub fn take_held(&mut self) -> Vec<RecordBatch> {
        std::mem::take(&mut self.held)
    }

    /// The batches a holding emitter kept, the last partial one included.
    pub fn into_held(mut self) -> anyhow::Result<Vec<RecordBatch>> {
        self.flush()?;
        Ok(self.held)
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

    /// [`Emitter::end_row`] inside a stream's callback that can only go on
    /// or stop (an event listener's): an error is kept in `failed` and
    /// stops it. Rows that have waited [`STREAM_FLUSH`] are sent
    /// ([`Emitter::tick`]), so a long burst read in one go (a flood, or a
    /// decoder waiting on socket dumps) still streams.
    pub fn end_row_in(&mut self, failed: &mut Option<anyhow::Error>) -> std::ops::ControlFlow<()> {
        let ended = self.end_row().and_then(|flow| self.tick().map(|()| flow));
        ended.unwrap_or_else(|e| {
            *failed = Some(e);
            std::ops::ControlFlow::Break(())
        })
    }

    /// After a listener's callbacks: the error one kept, or whether the
    /// stream goes on.
    pub fn settle(&self, failed: Option<anyhow::Error>) -> anyhow::Result<std::ops::ControlFlow<()>> {
        match failed {
            Some(e) => Err(e),
            None => Ok(self.flow()),
        }
    }

    /// Whether a stream goes on: Break once no more rows are wanted.
    pub fn flow(&self) -> std::ops::ControlFlow<()> {
        if self.done() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }

    /// True once no more rows are wanted.
    pub fn done(&self) -> bool {
        self.closed || self.limit.is_some_and(|l| self.total >= l) || self.sink.is_closed()
    }

    /// For a stream, between waits: send the rows built so far if they
    /// have waited [`STREAM_FLUSH`], so a reader gets them without waiting
    /// for a full batch.
    pub fn tick(&mut self) -> anyhow::Result<()> {
        if self.rows.rows() > 0 && self.last_flush.elapsed() >= STREAM_FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.last_flush = std::time::Instant::now();
        if self.rows.rows() > 0 && !self.closed {
            let batch = self.rows.finish()?;
            if self.hold {
                self.held.push(batch);
            } else {
                self.closed = !self.sink.send(batch);
            }
        }
        Ok(())
    }

    /// Send what is left.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush()
    }
}
