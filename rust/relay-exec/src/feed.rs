//! Batches for training loops: which rows each batch holds, where they come from, and the
//! threads that gather them ahead of use.
//!
//! A frame's rows reach a loader in one of two ways (`BatchPlan`):
//! - **by position**: the plan is executed once into views (mapped columns, selection vectors,
//!   or rows already in memory) and any row can be gathered at any time. Orders are keyed
//!   functions of the position (`crate::order`), so a global shuffle costs nothing up front.
//! - **piece by piece**: a plan over decoded files (Parquet, CSV, NDJSON) with only filters
//!   and computed columns above its read runs one piece at a time (`crate::pieces`): memory
//!   holds the shuffle windows in flight, never the dataset.
//!
//! Output buffers are allocated by the caller (NumPy arrays over torch tensors, in pinned or
//! shared memory) and written in place: a batch is copied once, into the memory the framework
//! will use. A `BatchStream` runs producer threads that take submitted buffer sets (each for the
//! next batch of the shard), fill them and hand them back in batch order; the caller keeps a
//! few sets submitted, so the next batches are gathered while the current one trains.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use relay_plan::{Expr, LogicalPlan};
use relay_storage::fault;

use crate::batches::{BatchGroup, BatchSource, ColumnShape};
use crate::dense::{DenseArray, DenseDtype};
use crate::error::ExecError;
use crate::execute::execute;
use crate::order::{EpochOrder, Shuffle, epoch_order, shard_range};
use crate::pieces::{CacheStats, PieceCache, PiecePlan, PieceShard, PieceStream, shard_rows};
use crate::pool::pool;
use crate::profile::Profile;
use crate::view::ViewSet;

/// Per output: (padded values, lengths) for a ragged one, None for a fixed one.
pub type RaggedDense = Vec<Option<(DenseArray, DenseArray)>>;

/// One output of a batch: a stacked group of fixed-width columns, or one ragged column.
#[derive(Debug, Clone)]
pub enum Output {
    Fixed {
        group: BatchGroup,
        width: usize,
    },
    Ragged {
        column: usize,
        dtype: DenseDtype,
        fill_null: Option<f64>,
    },
}

impl Output {
    pub fn dtype(&self) -> DenseDtype {
        match self {
            Output::Fixed { group, .. } => group.dtype,
            Output::Ragged { dtype, .. } => *dtype,
        }
    }
}

/// Writable memory of one output buffer, owned by the caller.
pub struct OutputMemory {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the pointer is dereferenced only by the one thread that fills the batch it belongs
// to, while the caller keeps the memory alive and untouched (see `OutputMemory::new`).
unsafe impl Send for OutputMemory {}

impl OutputMemory {
    /// # Safety
    /// `ptr .. ptr + len` must be writable memory that stays alive, and is neither read nor
    /// written by anyone else, until the batch it is submitted for has been returned (or the
    /// gather that receives it has finished).
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        OutputMemory { ptr, len }
    }
}

/// Gathers one batch: fixed outputs into `memories` (same order, None for ragged outputs),
/// ragged outputs returned as (padded, lengths). `spread`: see `BatchSource::gather`.
pub fn gather_batch(
    source: &BatchSource,
    outputs: &[Output],
    positions: &[u64],
    memories: &[Option<OutputMemory>],
    spread: bool,
) -> Result<RaggedDense, String> {
    outputs
        .iter()
        .zip(memories)
        .map(|(output, memory)| match output {
            Output::Fixed { group, .. } => {
                let memory = memory
                    .as_ref()
                    .ok_or("internal: no buffer for a fixed output")?;
                // SAFETY: `OutputMemory::new`'s contract: `len` writable bytes that nobody
                // else touches until this batch is returned.
                let out = unsafe { std::slice::from_raw_parts_mut(memory.ptr, memory.len) };
                source.gather(group, positions, out, spread).map(|()| None)
            }
            Output::Ragged {
                column,
                dtype,
                fill_null,
            } => source
                .gather_ragged(*column, *dtype, *fill_null, positions)
                .map(Some),
        })
        .collect()
}

/// Where a loader's rows come from (see the module docs).
enum Rows {
    ByPosition(RowsByPosition),
    Pieces {
        plan: Arc<PiecePlan>,
        /// Byte budget of the decoded pieces kept for map-style access.
        cache_bytes: u64,
        cache: Mutex<Option<Arc<PieceCache>>>,
    },
}

/// The columns of a frame prepared for batches.
pub struct BatchPlan {
    /// The columns, described (for a piece plan, before any piece is decoded).
    columns: BatchSource,
    rows: Rows,
}

impl BatchPlan {
    /// Prepares `plan`, an optimized plan whose output columns are exactly the ones batches
    /// read. A plan over decoded files is prepared to run piece by piece when it can; any other
    /// plan is executed here, once.
    pub fn new(plan: &Arc<LogicalPlan>, cache_bytes: u64) -> Result<Self, ExecError> {
        let schema = plan.schema()?;
        let indices: Vec<usize> = (0..schema.fields().len()).collect();
        // The columns described before any row is read: checks that each can be gathered.
        let described = || {
            BatchSource::new(
                &ViewSet {
                    schema: schema.clone(),
                    chunks: Vec::new(),
                },
                &indices,
            )
            .map_err(ExecError::Batch)
        };
        if let Some(pieces) = PiecePlan::of(plan)? {
            return Ok(BatchPlan {
                columns: described()?,
                rows: Rows::Pieces {
                    plan: Arc::new(pieces),
                    cache_bytes,
                    cache: Mutex::new(None),
                },
            });
        }
        if let Some(base) = computed_base(plan) {
            let columns = described()?;
            let view = execute(&base, &Profile::default())?;
            return Ok(BatchPlan {
                columns,
                rows: Rows::ByPosition(RowsByPosition::Computed(Arc::new(ComputedRows::new(
                    plan.clone(),
                    base,
                    view,
                )))),
            });
        }
        let view = execute(plan, &Profile::default())?;
        let source = Arc::new(BatchSource::new(&view, &indices).map_err(ExecError::Batch)?);
        Ok(BatchPlan {
            columns: source.as_ref().clone(),
            rows: Rows::ByPosition(RowsByPosition::Views(source)),
        })
    }

    /// The columns: name, shape and natural type (data only for a positional plan).
    pub fn columns(&self) -> &BatchSource {
        &self.columns
    }

    /// Whether rows are read piece by piece.
    pub fn is_streamed(&self) -> bool {
        matches!(self.rows, Rows::Pieces { .. })
    }

    /// Rows, when known without decoding.
    pub fn known_num_rows(&self) -> Option<u64> {
        match &self.rows {
            Rows::ByPosition(rows) => Some(rows.num_rows()),
            Rows::Pieces { plan, .. } => (0..plan.num_pieces()).map(|p| plan.known_rows(p)).sum(),
        }
    }

    /// The piece cache of a piece plan, made on first use (counting rows where the files do not
    /// say them: each piece decoded once).
    fn cache(&self) -> Result<Option<Arc<PieceCache>>, ExecError> {
        let Rows::Pieces {
            plan,
            cache_bytes,
            cache,
        } = &self.rows
        else {
            return Ok(None);
        };
        let mut slot = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            let columns = (0..self.columns.columns().len()).collect();
            *slot = Some(Arc::new(PieceCache::new(
                plan.clone(),
                columns,
                *cache_bytes,
            )?));
        }
        Ok(slot.clone())
    }

    /// Rows, decoding each piece once to count them when the files do not say.
    pub fn num_rows(&self) -> Result<u64, ExecError> {
        match (&self.rows, self.known_num_rows()) {
            (_, Some(rows)) => Ok(rows),
            _ => Ok(self.cache()?.map_or(0, |cache| cache.num_rows())),
        }
    }

    /// Hits, misses and bytes of the decoded-piece cache (None for a positional plan, or
    /// before map-style access made the cache).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        match &self.rows {
            Rows::Pieces { cache, .. } => cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
                .map(|c| c.stats()),
            Rows::ByPosition(_) => None,
        }
    }

    /// Gathers the rows at `positions` (map-style access): from the positional source, or
    /// from the cached pieces that hold them.
    pub fn gather(
        &self,
        outputs: &[Output],
        positions: &[u64],
        memories: &[Option<OutputMemory>],
    ) -> Result<RaggedDense, ExecError> {
        match &self.rows {
            Rows::ByPosition(rows) => rows.gather(outputs, positions, memories, false),
            Rows::Pieces { .. } => {
                let cache = self.cache()?.expect("a piece plan has a cache");
                let (source, positions) = cache.locate(positions)?;
                gather_batch(&source, outputs, &positions, memories, false)
                    .map_err(ExecError::Batch)
            }
        }
    }

    /// Rows consumer `shard` of `shards` reads in an epoch, when known before reading: a
    /// positional plan's shards are ranges of the epoch's order, a piece plan's shards runs of
    /// its pieces.
    pub fn shard_rows(
        &self,
        shuffle: Shuffle,
        seed: u64,
        epoch: u64,
        shard: u64,
        shards: u64,
    ) -> Option<u64> {
        match &self.rows {
            Rows::ByPosition(rows) => {
                let range = shard_range(rows.num_rows(), shard, shards.max(1));
                Some(range.end - range.start)
            }
            Rows::Pieces { plan, .. } => shard_rows(
                plan,
                &PieceShard {
                    shuffle,
                    seed,
                    epoch,
                    shard,
                    shards: shards.max(1),
                },
            ),
        }
    }

    /// A stream of the batches of one shard of one epoch, filled by producer threads.
    pub fn stream<T: Send + 'static>(
        &self,
        outputs: Vec<Output>,
        spec: StreamSpec,
    ) -> Result<BatchStream<T>, String> {
        if spec.batch_size == 0 || spec.shards == 0 || spec.shard >= spec.shards {
            return Err(format!(
                "invalid stream: batch_size={}, shard {} of {}",
                spec.batch_size, spec.shard, spec.shards
            ));
        }
        let batches_of = |rows: u64| {
            if spec.drop_last {
                rows / spec.batch_size
            } else {
                rows.div_ceil(spec.batch_size)
            }
        };
        let (producer, num_batches, threads): (Arc<dyn Producer>, Option<u64>, usize) = match &self
            .rows
        {
            Rows::ByPosition(rows) => {
                let num_rows = rows.num_rows();
                let order = epoch_order(num_rows, spec.shuffle, spec.seed, spec.epoch)?;
                let range = shard_range(num_rows, spec.shard, spec.shards);
                let num_batches = batches_of(range.end - range.start);
                let shard = PositionalShard {
                    rows: rows.clone(),
                    order,
                    range,
                    batch_size: spec.batch_size,
                    num_batches,
                    first_batch: spec.start_batch,
                };
                // Shuffled batches: two threads gather at once, each into its own buffers (with
                // one, the loader waited on the random reads). Batches in file order are a
                // strided copy that costs less than handing it to a thread and back: the
                // caller's thread fills them when it asks for them.
                let threads = match spec.shuffle {
                    Shuffle::Sequential => 0,
                    _ => pool().current_num_threads().clamp(1, 2),
                };
                (Arc::new(shard), Some(num_batches), threads)
            }
            Rows::Pieces { plan, .. } => {
                if spec.shuffle == Shuffle::Global {
                    return Err(format!(
                        "{}: shuffle=\"global\" needs random access to every row, and this source decodes its rows \
                         piece by piece; use shuffle=\"block\" (pieces in a random order, rows shuffled within \
                         shuffle_buffer rows), or frame.collect() first to decode it all into memory",
                        plan.description()
                    ));
                }
                spec.shuffle.check()?;
                let shard = PieceShard {
                    shuffle: spec.shuffle,
                    seed: spec.seed,
                    epoch: spec.epoch,
                    shard: spec.shard,
                    shards: spec.shards,
                };
                let num_batches = shard_rows(plan, &shard).map(batches_of);
                let start = num_batches.map_or(spec.start_batch, |n| spec.start_batch.min(n));
                let columns = (0..self.columns.columns().len()).collect();
                let stream = PieceStream::start(
                    plan.clone(),
                    shard,
                    columns,
                    spec.batch_size,
                    spec.drop_last,
                    start,
                )?;
                // One thread: a piece stream's batches are cut in order from its windows.
                (
                    Arc::new(PieceProducer {
                        stream: Mutex::new(stream),
                    }),
                    num_batches,
                    1,
                )
            }
        };
        BatchStream::start(producer, outputs, num_batches, threads, spec.start_batch)
    }
}

/// What one consumer reads of one epoch, and how it cuts batches.
#[derive(Debug, Clone, Copy)]
pub struct StreamSpec {
    pub shuffle: Shuffle,
    pub seed: u64,
    pub epoch: u64,
    pub shard: u64,
    pub shards: u64,
    pub batch_size: u64,
    pub drop_last: bool,
    /// Batches of the shard already consumed (a resumed stream starts after them).
    pub start_batch: u64,
}

/// Fills batch number `batch` of a stream; None past the last batch.
trait Producer: Send + Sync {
    fn fill(
        &self,
        batch: u64,
        outputs: &[Output],
        memories: &[Option<OutputMemory>],
    ) -> Result<Option<(usize, RaggedDense)>, ExecError>;
}

/// A positional source's shard of one epoch: batch `k` is positions `k * batch_size ..` of
/// the shard's range of the epoch's order.
struct PositionalShard {
    rows: RowsByPosition,
    order: EpochOrder,
    range: std::ops::Range<u64>,
    batch_size: u64,
    num_batches: u64,
    /// The stream's first batch, gathered spread over the pool: the consumer is waiting for it.
    first_batch: u64,
}

impl Producer for PositionalShard {
    fn fill(
        &self,
        batch: u64,
        outputs: &[Output],
        memories: &[Option<OutputMemory>],
    ) -> Result<Option<(usize, RaggedDense)>, ExecError> {
        if batch >= self.num_batches {
            return Ok(None);
        }
        let first = self.range.start + batch * self.batch_size;
        let mut positions = Vec::with_capacity(self.batch_size as usize);
        self.order.extend_into(
            first..(first + self.batch_size).min(self.range.end),
            &mut positions,
        );
        let ragged = self
            .rows
            .gather(outputs, &positions, memories, batch == self.first_batch);
        self.rows.check_intact()?;
        Ok(Some((positions.len(), ragged?)))
    }
}

/// Rows read by position: views (or memory) gathered as they are, or computed columns
/// evaluated for each batch's rows.
#[derive(Clone)]
enum RowsByPosition {
    Views(Arc<BatchSource>),
    Computed(Arc<ComputedRows>),
}

impl RowsByPosition {
    fn num_rows(&self) -> u64 {
        match self {
            RowsByPosition::Views(source) => source.num_rows(),
            RowsByPosition::Computed(rows) => rows.num_rows(),
        }
    }

    /// `FileChanged` when a mapped file the rows are read from was truncated (see
    /// `BatchSource::check_intact`).
    fn check_intact(&self) -> relay_storage::Result<()> {
        match self {
            RowsByPosition::Views(source) => source.check_intact(),
            RowsByPosition::Computed(rows) => rows.watch.check(),
        }
    }

    /// Gathers the rows at `positions` into the outputs (`spread`: see `BatchSource::gather`).
    fn gather(
        &self,
        outputs: &[Output],
        positions: &[u64],
        memories: &[Option<OutputMemory>],
        spread: bool,
    ) -> Result<RaggedDense, ExecError> {
        match self {
            RowsByPosition::Views(source) => {
                gather_batch(source, outputs, positions, memories, spread)
            }
            RowsByPosition::Computed(rows) => {
                // The source holds exactly the batch's rows, in order.
                let source = rows.rows_at(positions)?;
                gather_batch(
                    &source,
                    outputs,
                    &(0..positions.len() as u64).collect::<Vec<_>>(),
                    memories,
                    spread,
                )
            }
        }
        .map_err(ExecError::Batch)
    }
}

/// The input of the computed columns at the top of `plan`, when there are any: the plan
/// under its top run of projections and reinterpretations, if one of those projections
/// computes a value (rather than picking or renaming a column). Computing such columns for the
/// rows of each batch, rather than for every row up front, keeps a loader's memory to its
/// batches, and the columns below stay views.
fn computed_base(plan: &Arc<LogicalPlan>) -> Option<Arc<LogicalPlan>> {
    let mut node = plan;
    let mut computes = false;
    loop {
        match node.as_ref() {
            LogicalPlan::Project { input, exprs } => {
                computes |= exprs.iter().any(|e| {
                    let inner = match e {
                        Expr::Alias { input, .. } => input.as_ref(),
                        other => other,
                    };
                    !matches!(inner, Expr::Column(_))
                });
                node = input;
            }
            LogicalPlan::Reinterpret { input, .. } => node = input,
            _ => return computes.then(|| node.clone()),
        }
    }
}

/// Rows of a plan's computed columns, made per batch: the rows of the executed `base` at the
/// batch's positions are taken into memory, and `plan`'s projections run over them.
struct ComputedRows {
    plan: Arc<LogicalPlan>,
    base: Arc<LogicalPlan>,
    view: ViewSet,
    /// First row of each chunk of `view` (counting selected rows), then the total.
    starts: Vec<u64>,
    /// The mapped files `view`'s buffers lie in.
    watch: fault::Watch,
}

impl ComputedRows {
    fn new(plan: Arc<LogicalPlan>, base: Arc<LogicalPlan>, view: ViewSet) -> Self {
        let mut starts = vec![0u64];
        for chunk in &view.chunks {
            starts.push(starts.last().copied().unwrap_or(0) + chunk.num_selected() as u64);
        }
        let all: Vec<usize> = (0..view.schema.fields().len()).collect();
        let watch = crate::batches::watch_columns(&view, &all);
        ComputedRows {
            plan,
            base,
            view,
            starts,
            watch,
        }
    }

    fn num_rows(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The plan's output rows at `positions`, as a source of exactly those rows in order.
    fn rows_at(&self, positions: &[u64]) -> Result<BatchSource, ExecError> {
        let total = self.num_rows();
        let mut picks = Vec::with_capacity(positions.len());
        for &position in positions {
            if position >= total {
                return Err(ExecError::Batch(format!(
                    "row {position} is out of range for a frame of {total} rows"
                )));
            }
            let chunk = self.starts.partition_point(|&s| s <= position) - 1;
            let offset = (position - self.starts[chunk]) as usize;
            let row = match &self.view.chunks[chunk].selection {
                Some(selection) => selection[offset] as usize,
                None => offset,
            };
            picks.push((chunk, row));
        }
        let columns = (0..self.view.schema.fields().len())
            .map(|c| {
                let arrays: Vec<&dyn arrow::array::Array> = self
                    .view
                    .chunks
                    .iter()
                    .map(|chunk| chunk.columns[c].as_ref())
                    .collect();
                arrow::compute::interleave(&arrays, &picks)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(positions.len()));
        let batch = arrow::array::RecordBatch::try_new_with_options(
            self.view.schema.clone(),
            columns,
            &options,
        )?;
        let leaf = Arc::new(LogicalPlan::Memory {
            schema: self.view.schema.clone(),
            batches: Arc::new(vec![batch]),
            origin: None,
        });
        let plan = replace_input(&self.plan, &self.base, &leaf);
        let view = execute(&plan, &Profile::default())?;
        let indices: Vec<usize> = (0..view.schema.fields().len()).collect();
        BatchSource::new(&view, &indices).map_err(ExecError::Batch)
    }
}

/// `plan` (a run of projections and reinterpretations over `base`) over `leaf` instead.
fn replace_input(
    plan: &Arc<LogicalPlan>,
    base: &Arc<LogicalPlan>,
    leaf: &Arc<LogicalPlan>,
) -> Arc<LogicalPlan> {
    if Arc::ptr_eq(plan, base) {
        return leaf.clone();
    }
    Arc::new(match plan.as_ref() {
        LogicalPlan::Project { input, exprs } => LogicalPlan::Project {
            input: replace_input(input, base, leaf),
            exprs: exprs.clone(),
        },
        LogicalPlan::Reinterpret { input, columns } => LogicalPlan::Reinterpret {
            input: replace_input(input, base, leaf),
            columns: columns.clone(),
        },
        other => unreachable!("computed_base stops at the first other node: {other}"),
    })
}

/// A piece stream's batches, taken in order by the stream's one producer thread.
struct PieceProducer {
    stream: Mutex<PieceStream>,
}

impl Producer for PieceProducer {
    fn fill(
        &self,
        _batch: u64,
        outputs: &[Output],
        memories: &[Option<OutputMemory>],
    ) -> Result<Option<(usize, RaggedDense)>, ExecError> {
        let mut stream = self
            .stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((source, positions)) = stream.next_batch().map_err(ExecError::Batch)? else {
            return Ok(None);
        };
        let ragged =
            gather_batch(&source, outputs, &positions, memories, false).map_err(ExecError::Batch);
        source.check_intact()?;
        Ok(Some((positions.len(), ragged?)))
    }
}

/// A filled batch: its row count, what the caller submitted with its buffers, and the ragged
/// outputs.
pub struct Filled<T> {
    pub rows: usize,
    pub keep: T,
    pub ragged: RaggedDense,
}

/// Buffers for batch `batch`, with what keeps their memory alive.
struct Job<T> {
    batch: u64,
    memories: Vec<Option<OutputMemory>>,
    keep: T,
}

type Ready<T> = (u64, Result<Option<Filled<T>>, ExecError>);

/// Batches of one shard of one epoch, filled ahead by producer threads into buffers the caller
/// submits, and returned in order. Dropping or closing it stops the producers.
pub struct BatchStream<T: Send + 'static> {
    num_batches: Option<u64>,
    /// The batch the next submitted buffers are for.
    next_submitted: u64,
    /// The batch `next_batch` returns next.
    next_returned: u64,
    /// Batches that finished before an earlier one.
    early: HashMap<u64, Result<Option<Filled<T>>, ExecError>>,
    jobs: Option<Sender<Job<T>>>,
    ready: Receiver<Ready<T>>,
    threads: Vec<JoinHandle<()>>,
    /// Without producer threads: the producer, its outputs and the submitted jobs, filled by
    /// `next_batch` itself.
    inline: Option<Inline<T>>,
    /// The stream's first batch (after any skipped ones).
    first: u64,
    /// Jobs submitted while the first batch is being gathered: the producers get them once it
    /// is returned, so that it alone has the pool (its gather is spread over it, see
    /// `PositionalShard::first_batch`) while the consumer waits.
    held: VecDeque<Job<T>>,
}

/// What a stream without producer threads fills its batches with (see `BatchStream::inline`).
type Inline<T> = (Arc<dyn Producer>, Arc<Vec<Output>>, VecDeque<Job<T>>);

impl<T: Send + 'static> BatchStream<T> {
    fn start(
        producer: Arc<dyn Producer>,
        outputs: Vec<Output>,
        num_batches: Option<u64>,
        threads: usize,
        start_batch: u64,
    ) -> Result<Self, String> {
        let outputs = Arc::new(outputs);
        let (job_sender, job_receiver) = channel::<Job<T>>();
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let (ready_sender, ready_receiver) = channel::<Ready<T>>();
        let threads = (0..threads)
            .map(|i| {
                let (producer, outputs, jobs, ready) = (
                    producer.clone(),
                    outputs.clone(),
                    job_receiver.clone(),
                    ready_sender.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("relay-loader-{i}"))
                    .spawn(move || {
                        fault::guard_this_thread();
                        produce(producer.as_ref(), &outputs, &jobs, &ready)
                    })
                    .map_err(|e| format!("cannot start a loader thread: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let start = num_batches.map_or(start_batch, |n| start_batch.min(n));
        let inline = threads
            .is_empty()
            .then(|| (producer, outputs, VecDeque::new()));
        Ok(BatchStream {
            num_batches,
            next_submitted: start,
            next_returned: start,
            early: HashMap::new(),
            first: start,
            held: VecDeque::new(),
            jobs: Some(job_sender),
            ready: ready_receiver,
            threads,
            inline,
        })
    }

    /// Batches in the shard for the epoch (including those skipped by `start_batch`), when
    /// known before reading (not for a filtered piece stream).
    pub fn num_batches(&self) -> Option<u64> {
        self.num_batches
    }

    /// The batch `next_batch` returns next (counting skipped ones).
    pub fn next_returned(&self) -> u64 {
        self.next_returned
    }

    pub fn producers(&self) -> usize {
        self.threads.len()
    }

    /// Batches submitted and not yet returned.
    pub fn in_flight(&self) -> u64 {
        self.next_submitted - self.next_returned
    }

    /// Whether another set of buffers can be submitted (the shard has a batch left for it, as
    /// far as is known before reading, and the stream is open).
    pub fn wants_buffers(&self) -> bool {
        self.jobs.is_some() && self.num_batches.is_none_or(|n| self.next_submitted < n)
    }

    /// Hands one set of buffers to the producers, for the next batch not yet given buffers.
    pub fn submit(&mut self, memories: Vec<Option<OutputMemory>>, keep: T) -> Result<(), String> {
        let Some(jobs) = &self.jobs else {
            return Err("the batch stream is closed".into());
        };
        let batch = self.next_submitted;
        if self.num_batches.is_some_and(|n| batch >= n) {
            return Err(format!(
                "all {} batches already have buffers",
                self.num_batches.unwrap_or(0)
            ));
        }
        self.next_submitted += 1;
        let job = Job {
            batch,
            memories,
            keep,
        };
        match &mut self.inline {
            Some((_, _, pending)) => pending.push_back(job),
            None if self.next_returned == self.first && batch > self.first => {
                self.held.push_back(job)
            }
            // A send fails only once the producers have stopped; the buffers are then unused.
            None => {
                let _ = jobs.send(job);
            }
        }
        Ok(())
    }

    /// The next batch, waiting for it (call without holding a lock others need); None at the
    /// end of the shard.
    pub fn next_batch(&mut self) -> Result<Option<Filled<T>>, ExecError> {
        if self.jobs.is_none() || self.num_batches.is_some_and(|n| self.next_returned >= n) {
            return Ok(None);
        }
        if self.next_returned >= self.next_submitted {
            return Err(ExecError::Batch(
                "no buffers were submitted for the next batch".into(),
            ));
        }
        let wanted = self.next_returned;
        let result = if let Some((producer, outputs, pending)) = &mut self.inline {
            let job = pending
                .pop_front()
                .expect("a job was submitted for every batch not returned");
            fill_job(producer.as_ref(), outputs, job)
        } else {
            loop {
                if let Some(result) = self.early.remove(&wanted) {
                    break result;
                }
                match self.ready.recv() {
                    Ok((batch, result)) if batch == wanted => break result,
                    Ok((batch, result)) => {
                        self.early.insert(batch, result);
                    }
                    Err(_) => {
                        self.close();
                        return Err(ExecError::Batch(
                            "the loader threads stopped before the end of the epoch".into(),
                        ));
                    }
                }
            }
        };
        match result {
            Ok(Some(filled)) => {
                self.next_returned += 1;
                if let Some(jobs) = &self.jobs {
                    for job in self.held.drain(..) {
                        let _ = jobs.send(job);
                    }
                }
                Ok(Some(filled))
            }
            Ok(None) => {
                self.close();
                Ok(None)
            }
            Err(message) => {
                self.close();
                Err(message)
            }
        }
    }

    /// Stops the producers (after the batches they are filling) and waits for them.
    pub fn close(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.early.clear();
        self.held.clear();
        if let Some((_, _, pending)) = &mut self.inline {
            pending.clear();
        }
    }
}

impl<T: Send + 'static> Drop for BatchStream<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// A producer thread: takes jobs until the stream closes, fills each job's batch and reports
/// it (tagged with its number, since threads finish out of order).
fn produce<T: Send>(
    producer: &dyn Producer,
    outputs: &[Output],
    jobs: &Mutex<Receiver<Job<T>>>,
    ready: &Sender<Ready<T>>,
) {
    loop {
        let job = {
            let receiver = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else { return };
        let batch = job.batch;
        if ready
            .send((batch, fill_job(producer, outputs, job)))
            .is_err()
        {
            return;
        }
    }
}

/// Fills one job's batch; a batch during whose gather a mapped file was truncated (it read
/// zeros past the cut, see `relay_storage::fault`) fails with `FileChanged`.
fn fill_job<T>(
    producer: &dyn Producer,
    outputs: &[Output],
    job: Job<T>,
) -> Result<Option<Filled<T>>, ExecError> {
    let faults = fault::faults();
    let filled = producer.fill(job.batch, outputs, &job.memories);
    fault::check_since(faults)?;
    Ok(filled?.map(|(rows, ragged)| Filled {
        rows,
        keep: job.keep,
        ragged,
    }))
}

/// Checks output descriptions against the plan's columns: column indices in range, a ragged
/// column alone in its output, stackable columns in a fixed one.
pub fn outputs_of(
    columns: &BatchSource,
    specs: Vec<(Vec<usize>, DenseDtype, Option<f64>)>,
) -> Result<Vec<Output>, String> {
    specs
        .into_iter()
        .map(|(indices, dtype, fill_null)| {
            if let Some(&c) = indices.iter().find(|&&c| c >= columns.columns().len()) {
                return Err(format!("internal: output column {c} is not in the reader"));
            }
            if let [column] = indices[..]
                && columns.columns()[column].shape == ColumnShape::Ragged
            {
                return Ok(Output::Ragged {
                    column,
                    dtype,
                    fill_null,
                });
            }
            let group = BatchGroup {
                columns: indices,
                dtype,
                fill_null,
            };
            let width = columns.group_width(&group)?;
            Ok(Output::Fixed { group, width })
        })
        .collect()
}
