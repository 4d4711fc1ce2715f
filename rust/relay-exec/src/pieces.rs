//! Plans that run one piece at a time, for sources too large or too costly to hold whole.
//!
//! A frame over decoded files (Parquet row groups, CSV / NDJSON byte ranges, files of a
//! dataset) whose plan only filters, computes columns and reinterprets above its read can run
//! each piece of the read on its own: the same optimized plan, with the read narrowed to that
//! piece, gives exactly that piece's output rows. Training loaders read such frames as a stream
//! of pieces (`PieceStream`), so memory holds what is in flight, never the dataset; map-style
//! access goes through a cache of decoded pieces with a byte budget (`PieceCache`).
//!
//! Orders over pieces follow `crate::order`: an epoch's piece order is a keyed permutation of
//! the pieces (or file order), each consumer (rank x worker) reads a contiguous run of that
//! order, and a block shuffle permutes rows inside *windows* of consecutive pieces holding at
//! least `buffer_rows` rows. Everything depends only on (seed, epoch) and the consumer, so a
//! resumed stream regenerates exactly the rows it left.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use relay_plan::LogicalPlan;
use relay_plan::plan::SplitMix64;
use relay_storage::{DatasetView, PieceId};

use crate::batches::BatchSource;
use crate::error::ExecError;
use crate::execute::execute;
use crate::order::{KeyedPermutation, Shuffle, epoch_key};
use crate::profile::Profile;
use crate::view::ViewSet;

/// A plan whose rows can be produced one piece of its read at a time.
#[derive(Debug)]
pub struct PiecePlan {
    /// The optimized plan: row-local nodes over one `Read`.
    plan: Arc<LogicalPlan>,
    view: DatasetView,
    pieces: Vec<PieceId>,
    /// Rows of each piece before filters, when the file says so without decoding.
    piece_rows: Vec<Option<u64>>,
    filtered: bool,
}

/// The `Read` under a chain of row-local nodes (filters, computed columns, reinterpretation).
fn row_local_read(plan: &LogicalPlan) -> Option<&DatasetView> {
    match plan {
        LogicalPlan::Read { view, .. } => Some(view),
        LogicalPlan::Filter { input, .. }
        | LogicalPlan::Project { input, .. }
        | LogicalPlan::Reinterpret { input, .. } => row_local_read(input),
        _ => None,
    }
}

/// `plan` with its read's view replaced by `view` (`plan` is a chain over a read).
fn with_view(plan: &LogicalPlan, view: &DatasetView) -> LogicalPlan {
    match plan {
        LogicalPlan::Read { filters, .. } => LogicalPlan::Read {
            view: view.clone(),
            filters: filters.clone(),
        },
        LogicalPlan::Filter { input, predicate } => LogicalPlan::Filter {
            input: Arc::new(with_view(input, view)),
            predicate: predicate.clone(),
        },
        LogicalPlan::Project { input, exprs } => LogicalPlan::Project {
            input: Arc::new(with_view(input, view)),
            exprs: exprs.clone(),
        },
        LogicalPlan::Reinterpret { input, columns } => LogicalPlan::Reinterpret {
            input: Arc::new(with_view(input, view)),
            columns: columns.clone(),
        },
        other => unreachable!("with_view over a plan that row_local_read refused: {other}"),
    }
}

impl PiecePlan {
    /// The piece-by-piece form of an optimized plan, or None when its rows cannot be produced
    /// piece by piece (a sort, join, aggregation or slice needs all rows first) or need not be
    /// (Arrow IPC files only: their pieces are views of the mapping, cheap to hold whole).
    pub fn of(plan: &Arc<LogicalPlan>) -> Result<Option<PiecePlan>, ExecError> {
        let Some(view) = row_local_read(plan) else {
            return Ok(None);
        };
        let dataset = view.dataset();
        if view.rows().is_some() || !dataset.formats().iter().any(|f| f.is_decoded()) {
            return Ok(None);
        }
        let pieces = view.all_pieces()?;
        let piece_rows = pieces
            .iter()
            .map(|p| Ok(dataset.open(p.fragment)?.piece_rows(p.piece)))
            .collect::<Result<Vec<_>, ExecError>>()?;
        Ok(Some(PiecePlan {
            plan: plan.clone(),
            view: view.clone(),
            pieces,
            piece_rows,
            filtered: plan.contains_filter(),
        }))
    }

    /// The source as the user gave it (a path, a glob), for messages.
    pub fn description(&self) -> &str {
        self.view.dataset().description()
    }

    pub fn num_pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Output rows of piece `index` without decoding it: known when no filter runs and the
    /// file stores the piece's row count (Parquet row groups, not CSV or NDJSON ranges).
    pub fn known_rows(&self, index: usize) -> Option<u64> {
        if self.filtered {
            None
        } else {
            self.piece_rows[index]
        }
    }

    /// Output rows of the pieces `indices`, when known without decoding.
    fn known_rows_of(&self, indices: impl IntoIterator<Item = usize>) -> Option<u64> {
        indices.into_iter().map(|i| self.known_rows(i)).sum()
    }

    /// The output rows of piece `index`: its decoded columns, filtered and computed.
    pub fn execute_piece(&self, index: usize) -> Result<ViewSet, ExecError> {
        let plan = with_view(&self.plan, &self.view.keep_pieces(vec![self.pieces[index]]));
        execute(&plan, &Profile::default())
    }
}

/// The rows of one window of a stream: decoded pieces ready to gather from, and the order in
/// which the stream visits them.
struct Window {
    source: BatchSource,
    /// Position in the consumer's stream of the window's first row.
    first_row: u64,
    /// Visiting order of the window's rows (None: in order).
    permutation: Option<KeyedPermutation>,
}

impl Window {
    fn end(&self) -> u64 {
        self.first_row + self.source.num_rows()
    }
}

/// The key of the row permutation of the window that starts at `piece_position` of the epoch's
/// piece order: the same window gets the same order whichever consumer reads it.
fn window_key(epoch_key: u64, piece_position: u64) -> u64 {
    SplitMix64(epoch_key ^ piece_position.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

/// What one consumer reads of one epoch.
#[derive(Debug, Clone, Copy)]
pub struct PieceShard {
    pub shuffle: Shuffle,
    pub seed: u64,
    pub epoch: u64,
    pub shard: u64,
    pub shards: u64,
}

impl PieceShard {
    /// The pieces this consumer reads, in order: (position in the epoch's piece order, piece).
    /// The epoch's order is file order, or a keyed permutation for a block shuffle; consumers
    /// take contiguous runs of it whose lengths differ by at most one piece.
    fn pieces(&self, num_pieces: usize) -> Vec<(u64, usize)> {
        let total = num_pieces as u64;
        let range = crate::order::shard_range(total, self.shard, self.shards);
        let permutation = match self.shuffle {
            Shuffle::Sequential => None,
            _ => Some(KeyedPermutation::new(
                total,
                epoch_key(self.seed, self.epoch),
            )),
        };
        range
            .map(|position| {
                (
                    position,
                    permutation.as_ref().map_or(position, |p| p.apply(position)) as usize,
                )
            })
            .collect()
    }

    /// Rows a window gathers before its rows are shuffled (1: each piece is its own window).
    fn window_rows(&self) -> u64 {
        match self.shuffle {
            Shuffle::Block { buffer_rows, .. } => buffer_rows.max(1),
            _ => 1,
        }
    }
}

/// Output rows of a consumer's shard of an epoch, when known without decoding.
pub fn shard_rows(plan: &PiecePlan, shard: &PieceShard) -> Option<u64> {
    plan.known_rows_of(
        shard
            .pieces(plan.num_pieces())
            .into_iter()
            .map(|(_, piece)| piece),
    )
}

/// Decodes a consumer's windows in order and hands them over one at a time. The hand-over is a
/// rendezvous: a finished window waits in this thread until the reader takes it, and only then
/// is the next one decoded, so two windows are in memory (the one being read and the next one,
/// finished or being decoded), three while a batch spans two. Windows that end before `skip_rows` are not handed over, and not
/// decoded at all when their row counts are known from the files.
fn decode_windows(
    plan: &PiecePlan,
    shard: PieceShard,
    columns: &[usize],
    skip_rows: u64,
    windows: &SyncSender<Result<Window, String>>,
) {
    let key = epoch_key(shard.seed, shard.epoch);
    let window_rows = shard.window_rows();
    let shuffled = matches!(shard.shuffle, Shuffle::Block { .. });
    let pieces = shard.pieces(plan.num_pieces());
    let mut first_row = 0u64;
    let mut start = 0;
    while start < pieces.len() {
        // The window: pieces from `start` until it holds `window_rows` rows. Without decoding,
        // rows are known only when no filter runs; then a skipped window is never decoded.
        let mut end = start;
        let mut known = Some(0u64);
        while end < pieces.len() && known.is_some_and(|rows| rows < window_rows) {
            known = known
                .zip(plan.known_rows(pieces[end].1))
                .map(|(a, b)| a + b);
            end += 1;
        }
        if let Some(rows) = known
            && first_row + rows <= skip_rows
        {
            first_row += rows;
            start = end;
            continue;
        }
        let mut views: Vec<ViewSet> = Vec::new();
        let mut rows = 0u64;
        let mut next = start;
        while next < pieces.len() && (rows < window_rows || next == start) {
            match plan.execute_piece(pieces[next].1) {
                Ok(view) => {
                    rows += view.num_rows() as u64;
                    views.push(view);
                }
                Err(error) => {
                    let _ = windows.send(Err(error.to_string()));
                    return;
                }
            }
            next += 1;
        }
        let window_first = first_row;
        first_row += rows;
        let piece_position = pieces[start].0;
        start = next;
        if first_row <= skip_rows || rows == 0 {
            continue;
        }
        let schema = views[0].schema.clone();
        let view = ViewSet {
            schema,
            chunks: views.into_iter().flat_map(|v| v.chunks).collect(),
        };
        let window = BatchSource::new(&view, columns).map(|source| Window {
            source,
            first_row: window_first,
            permutation: shuffled
                .then(|| KeyedPermutation::new(rows, window_key(key, piece_position))),
        });
        if windows.send(window).is_err() {
            return;
        }
    }
}

/// A consumer's batches of one epoch over a piece plan, cut from windows that a thread decodes
/// ahead. Batches are taken in order (`next_batch`), each the next `batch_size` rows of the
/// consumer's stream; a batch may span two windows.
pub struct PieceStream {
    windows: Receiver<Result<Window, String>>,
    held: VecDeque<Window>,
    /// Position in the consumer's stream of the next batch's first row.
    next_row: u64,
    batch_size: u64,
    drop_last: bool,
    /// Set once the decoding thread has handed over its last window.
    exhausted: bool,
}

impl PieceStream {
    /// Starts decoding the windows of `shard` (columns `columns` of the plan's output) on a
    /// thread of its own, from batch `start_batch` on.
    pub fn start(
        plan: Arc<PiecePlan>,
        shard: PieceShard,
        columns: Vec<usize>,
        batch_size: u64,
        drop_last: bool,
        start_batch: u64,
    ) -> Result<Self, String> {
        let skip_rows = start_batch.saturating_mul(batch_size);
        let (sender, receiver) = sync_channel(0);
        std::thread::Builder::new()
            .name("relay-decode".into())
            .spawn(move || {
                relay_storage::fault::guard_this_thread();
                decode_windows(&plan, shard, &columns, skip_rows, &sender)
            })
            .map_err(|e| format!("cannot start a decoding thread: {e}"))?;
        Ok(PieceStream {
            windows: receiver,
            held: VecDeque::new(),
            next_row: skip_rows,
            batch_size,
            drop_last,
            exhausted: false,
        })
    }

    /// The next batch: a source and the positions in it to gather, in order; None at the end.
    pub fn next_batch(&mut self) -> Result<Option<(BatchSource, Vec<u64>)>, String> {
        let (start, wanted_end) = (self.next_row, self.next_row + self.batch_size);
        while self.held.front().is_some_and(|w| w.end() <= start) {
            self.held.pop_front();
        }
        while !self.exhausted && self.held.back().is_none_or(|w| w.end() < wanted_end) {
            match self.windows.recv() {
                Ok(window) => {
                    let window = window?;
                    if window.end() > start {
                        self.held.push_back(window);
                    }
                }
                Err(_) => self.exhausted = true,
            }
        }
        let end = self.held.back().map_or(start, |w| w.end().min(wanted_end));
        if end <= start || (self.drop_last && end < wanted_end) {
            return Ok(None);
        }
        let used: Vec<&Window> = self.held.iter().filter(|w| w.first_row < end).collect();
        let mut positions = Vec::with_capacity((end - start) as usize);
        let mut offset = 0u64;
        for window in &used {
            let from = start.max(window.first_row);
            let to = end.min(window.end());
            let first = positions.len();
            positions.extend((from - window.first_row)..(to - window.first_row));
            if let Some(permutation) = &window.permutation {
                permutation.apply_in_place(&mut positions[first..]);
            }
            for position in &mut positions[first..] {
                *position += offset;
            }
            offset += window.source.num_rows();
        }
        let source = match used[..] {
            [one] => one.source.clone(),
            _ => BatchSource::concat(&used.iter().map(|w| &w.source).collect::<Vec<_>>()),
        };
        self.next_row = end;
        Ok(Some((source, positions)))
    }
}

/// Counters of a `PieceCache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes of the pieces held now.
    pub bytes: u64,
    pub budget: u64,
}

/// Random access to the rows of a piece plan through decoded pieces kept up to a byte budget,
/// least recently used first out: map-style datasets over Parquet and text files.
///
/// Row counts come from the files when no filter runs; otherwise each piece is decoded once
/// to count its rows (the pieces that fit the budget stay cached from that pass).
pub struct PieceCache {
    plan: Arc<PiecePlan>,
    columns: Vec<usize>,
    /// First row of each piece, then the total.
    starts: Vec<u64>,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    pieces: HashMap<usize, (Arc<BatchSource>, u64)>,
    /// Piece indices, least recently used first.
    recency: VecDeque<usize>,
    stats: CacheStats,
}

/// Bytes a decoded piece holds (its column buffers).
fn view_bytes(view: &ViewSet) -> u64 {
    view.chunks
        .iter()
        .flat_map(|c| &c.columns)
        .map(|a| a.get_array_memory_size() as u64)
        .sum()
}

impl PieceCache {
    pub fn new(plan: Arc<PiecePlan>, columns: Vec<usize>, budget: u64) -> Result<Self, ExecError> {
        let cache = PieceCache {
            plan,
            columns,
            starts: Vec::new(),
            state: Mutex::new(CacheState {
                stats: CacheStats {
                    budget,
                    ..Default::default()
                },
                ..Default::default()
            }),
        };
        let mut starts = Vec::with_capacity(cache.plan.num_pieces() + 1);
        let mut total = 0u64;
        for piece in 0..cache.plan.num_pieces() {
            starts.push(total);
            total += match cache.plan.known_rows(piece) {
                Some(rows) => rows,
                None => cache.piece(piece)?.num_rows(),
            };
        }
        starts.push(total);
        Ok(PieceCache { starts, ..cache })
    }

    pub fn num_rows(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Piece `index`, from the cache or decoded (and cached, evicting the least recently used
    /// pieces past the budget). Decoding runs without the lock held.
    fn piece(&self, index: usize) -> Result<Arc<BatchSource>, ExecError> {
        {
            let mut state = self.lock();
            if let Some((source, _)) = state.pieces.get(&index).cloned() {
                state.stats.hits += 1;
                state.recency.retain(|&p| p != index);
                state.recency.push_back(index);
                return Ok(source);
            }
            state.stats.misses += 1;
        }
        let view = self.plan.execute_piece(index)?;
        let bytes = view_bytes(&view);
        let source = Arc::new(BatchSource::new(&view, &self.columns).map_err(ExecError::Batch)?);
        let mut state = self.lock();
        while state.stats.bytes + bytes > state.stats.budget {
            let Some(oldest) = state.recency.pop_front() else {
                break;
            };
            if let Some((_, freed)) = state.pieces.remove(&oldest) {
                state.stats.bytes -= freed;
            }
        }
        if bytes <= state.stats.budget && !state.pieces.contains_key(&index) {
            state.pieces.insert(index, (source.clone(), bytes));
            state.recency.push_back(index);
            state.stats.bytes += bytes;
        }
        Ok(source)
    }

    /// The pieces that hold `positions` (rows of the plan's output) as one source, and the
    /// positions in it.
    pub fn locate(&self, positions: &[u64]) -> Result<(BatchSource, Vec<u64>), ExecError> {
        let total = self.num_rows();
        let mut wanted: Vec<usize> = Vec::new();
        let mut located = Vec::with_capacity(positions.len());
        for &position in positions {
            if position >= total {
                return Err(ExecError::Batch(format!(
                    "row {position} is out of range for a frame of {total} rows"
                )));
            }
            let piece = self.starts.partition_point(|&s| s <= position) - 1;
            located.push((piece, position - self.starts[piece]));
            if !wanted.contains(&piece) {
                wanted.push(piece);
            }
        }
        let sources = wanted
            .iter()
            .map(|&p| self.piece(p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut offsets = HashMap::with_capacity(wanted.len());
        let mut offset = 0u64;
        for (&piece, source) in wanted.iter().zip(&sources) {
            offsets.insert(piece, offset);
            offset += source.num_rows();
        }
        let source = match &sources[..] {
            [one] => one.as_ref().clone(),
            many => BatchSource::concat(&many.iter().map(Arc::as_ref).collect::<Vec<_>>()),
        };
        let positions = located
            .into_iter()
            .map(|(piece, row)| offsets[&piece] + row)
            .collect();
        Ok((source, positions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batches::BatchGroup;
    use crate::dense::DenseDtype;
    use crate::test_support::{counting_dataset, dataset};
    use arrow::array::Int64Array;
    use relay_plan::{BinaryOp, Expr};
    use relay_storage::DatasetView;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The plan `x` of the test dataset (two files of three 10-row pieces: x = 0..30 and
    /// 100..130), filtered to `x > above` when given.
    fn plan_of(view: DatasetView, above: Option<i64>) -> Arc<PiecePlan> {
        let mut plan = Arc::new(LogicalPlan::read(view));
        if let Some(above) = above {
            let literal = Expr::lit(Arc::new(Int64Array::from(vec![above])));
            plan = Arc::new(
                plan.filter(Expr::col("x").binary(BinaryOp::Gt, literal))
                    .unwrap(),
            );
        }
        let plan = Arc::new(plan.project(vec![Expr::col("x")]).unwrap());
        let (plan, _) = relay_plan::optimizer::Optimizer::default()
            .optimize(plan)
            .unwrap();
        Arc::new(
            PiecePlan::of(&plan)
                .unwrap()
                .expect("a read of decoded files runs piece by piece"),
        )
    }

    fn values(source: &BatchSource, positions: &[u64]) -> Vec<i64> {
        let group = BatchGroup {
            columns: vec![0],
            dtype: DenseDtype::Int64,
            fill_null: None,
        };
        let mut out = vec![0u8; positions.len() * 8];
        source.gather(&group, positions, &mut out, false).unwrap();
        out.chunks(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// Every batch of a consumer's stream, as x values.
    fn stream(
        plan: &Arc<PiecePlan>,
        shard: PieceShard,
        batch_size: u64,
        start_batch: u64,
    ) -> Vec<Vec<i64>> {
        let mut stream =
            PieceStream::start(plan.clone(), shard, vec![0], batch_size, false, start_batch)
                .unwrap();
        let mut batches = Vec::new();
        while let Some((source, positions)) = stream.next_batch().unwrap() {
            batches.push(values(&source, &positions));
        }
        batches
    }

    fn shard(shuffle: Shuffle, epoch: u64, shard: u64, shards: u64) -> PieceShard {
        PieceShard {
            shuffle,
            seed: 7,
            epoch,
            shard,
            shards,
        }
    }

    const BLOCK: Shuffle = Shuffle::Block {
        block_rows: 1,
        buffer_rows: 15,
    };

    #[test]
    fn consumers_together_visit_every_row_once() {
        let all: Vec<i64> = (0..30).chain(100..130).collect();
        for above in [None, Some(104)] {
            let plan = plan_of(DatasetView::new(dataset(true)), above);
            let expected: Vec<i64> = all
                .iter()
                .copied()
                .filter(|&x| above.is_none_or(|a| x > a))
                .collect();
            for shuffle in [Shuffle::Sequential, BLOCK] {
                for shards in 1..=4 {
                    let mut seen: Vec<i64> = (0..shards)
                        .flat_map(|s| stream(&plan, shard(shuffle, 0, s, shards), 4, 0))
                        .flatten()
                        .collect();
                    if shuffle == Shuffle::Sequential && shards == 1 {
                        assert_eq!(seen, expected, "file order");
                    }
                    seen.sort_unstable();
                    assert_eq!(
                        seen, expected,
                        "{shuffle:?}, {shards} shards, filter {above:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn block_shuffles_rows_within_windows_and_differs_by_epoch() {
        let plan = plan_of(DatasetView::new(dataset(true)), None);
        let epoch0: Vec<i64> = stream(&plan, shard(BLOCK, 0, 0, 1), 7, 0).concat();
        let epoch1: Vec<i64> = stream(&plan, shard(BLOCK, 1, 0, 1), 7, 0).concat();
        assert_ne!(epoch0, epoch1);
        assert_eq!(
            epoch0,
            stream(&plan, shard(BLOCK, 0, 0, 1), 7, 0).concat(),
            "reproducible"
        );
        // Windows of 15 rows or more hold two 10-row pieces: the first 20 rows are two pieces'.
        let first: Vec<i64> = epoch0[..20].to_vec();
        assert!(
            first.windows(2).any(|pair| pair[0] > pair[1]),
            "rows are shuffled"
        );
        let pieces: std::collections::HashSet<i64> = first.iter().map(|x| x / 10).collect();
        assert_eq!(pieces.len(), 2);
    }

    #[test]
    fn a_resumed_stream_continues_exactly_and_skips_decoding_known_windows() {
        for above in [None, Some(3)] {
            let decodes = Arc::new(AtomicUsize::new(0));
            let plan = plan_of(
                DatasetView::new(counting_dataset(true, decodes.clone())),
                above,
            );
            let full = stream(&plan, shard(BLOCK, 2, 0, 1), 6, 0);
            decodes.store(0, Ordering::Relaxed);
            let resumed = stream(&plan, shard(BLOCK, 2, 0, 1), 6, 5);
            assert_eq!(resumed, full[5..], "filter {above:?}");
            // 30 rows skipped: the first window (20 rows) needs no decoding when no filter runs.
            let expected_decodes = if above.is_none() { 4 } else { 6 };
            assert_eq!(
                decodes.load(Ordering::Relaxed),
                expected_decodes,
                "filter {above:?}"
            );
        }
    }

    #[test]
    fn the_piece_cache_serves_rows_by_position_within_its_budget() {
        let plan = plan_of(DatasetView::new(dataset(false)), Some(5));
        let expected: Vec<i64> = (6..30).chain(100..130).collect();
        let piece_bytes = view_bytes(&plan.execute_piece(1).unwrap());
        let cache = PieceCache::new(plan, vec![0], 2 * piece_bytes).unwrap();
        assert_eq!(cache.num_rows(), expected.len() as u64);
        let positions: Vec<u64> = vec![53, 0, 20, 3, 40, 4];
        let (source, located) = cache.locate(&positions).unwrap();
        let want: Vec<i64> = positions.iter().map(|&p| expected[p as usize]).collect();
        assert_eq!(values(&source, &located), want);
        let stats = cache.stats();
        assert!(stats.bytes <= stats.budget, "{stats:?}");
        assert!(cache.locate(&[54]).is_err());
        let before = cache.stats();
        // The last piece `locate` decoded (x = 10..20, positions 4..14) is still cached.
        cache.locate(&[4, 5, 13]).unwrap();
        assert_eq!(
            cache.stats().hits,
            before.hits + 1,
            "a recently used piece is a hit"
        );
    }
}
