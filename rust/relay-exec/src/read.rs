//! Execution of `LogicalPlan::Read`: the surviving pieces of a dataset's files, decoded in
//! parallel and filtered right after decoding.
//!
//! Each piece (a Parquet row group, a byte range of a CSV or NDJSON file, a record batch of an
//! Arrow IPC file) is one task on the pool: it decodes only the columns the plan reads, appends
//! the partition columns as constant arrays, and runs the read's filters on each decoded batch
//! before it decodes the next. A batch that keeps few rows is gathered down to them
//! (`compact`), so memory holds about the rows that pass rather than whole files. Arrow IPC
//! pieces are views of the mapping, as in a scan, and keep their selections.
//!
//! Within a piece, pages whose statistics (the Parquet page index) prove that no row passes a
//! filter are not decoded (`page_row_ranges`); the filters still run on the rows decoded.
//!
//! A read narrowed to a range of rows (a slice, as `iter_batches` makes) decodes only the
//! pieces that overlap the range: their row counts come from the files' metadata (Parquet
//! footers, IPC record batch headers). A piece whose row count is not known without decoding
//! (a CSV or NDJSON file) is decoded to learn it, one at a time, and dropped when it lies
//! before the range.

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::take;
use rayon::prelude::*;
use relay_plan::Expr;
use relay_plan::optimizer::page_row_ranges;
use relay_storage::{
    DatasetView, DecodedFile, OpenedFile, PieceBatches, PieceId, RowRange, constant_column,
    slice_batches,
};

use crate::error::ExecError;
use crate::filter::ChunkFilter;
use crate::pool::pool;
use crate::profile::OperatorStats;
use crate::view::{Chunk, ViewSet};

/// Rows per record batch a decoded piece is cut into: large enough to amortize the decoder's
/// and the kernels' work per batch, small enough that a filtered read holds little at a time.
/// On `tab` as Parquet (`age > 94` -> f0..f3, in-process medians) the query took about 196 ms
/// with 16 Ki rows, 185 ms with 64 Ki and 177 ms with 128 Ki (256 Ki: no better).
pub const DECODE_BATCH_ROWS: usize = 128 * 1024;

/// What reading one piece gives: its chunks after the filters, rows decoded, bytes decoded.
type PieceResult = (Vec<Chunk>, usize, usize);

/// A piece to read and, for a sliced read, the rows of it to keep (offset, count).
struct PieceTask {
    id: PieceId,
    rows: Option<(usize, usize)>,
    /// Batches already decoded (to learn the piece's row count) that overlap the range.
    decoded: Option<Vec<RecordBatch>>,
}

/// The rows of `view` passing `filters`, and the read's statistics.
pub fn execute_read(
    view: &DatasetView,
    filters: &[Expr],
) -> Result<(ViewSet, OperatorStats), ExecError> {
    let dataset = view.dataset();
    let file_columns = dataset.file_schema().fields().len();
    let decoded_columns: Vec<usize> = view
        .columns()
        .iter()
        .copied()
        .filter(|&c| c < file_columns)
        .collect();
    // Files are opened (footer read, schema checked) in parallel: each is a read of its own.
    pool().install(|| {
        view.fragments()
            .par_iter()
            .try_for_each(|&fragment| dataset.open(fragment).map(|_| ()))
    })?;
    let mut total_pieces = 0;
    let mut pieces = Vec::new();
    for &fragment in view.fragments() {
        total_pieces += dataset.open(fragment)?.num_pieces();
        pieces.extend(
            view.pieces_of(fragment)?
                .into_iter()
                .map(|piece| PieceId { fragment, piece }),
        );
    }
    let tasks = match view.rows() {
        None => pieces
            .into_iter()
            .map(|id| PieceTask {
                id,
                rows: None,
                decoded: None,
            })
            .collect(),
        Some(range) => sliced_tasks(view, pieces, range, &decoded_columns)?,
    };
    // Fewer pieces than threads: a Parquet piece's columns are decoded in parallel instead.
    let split_columns = tasks.len() < pool().current_num_threads() && decoded_columns.len() > 1;
    let schema = view.schema();
    let filter = match Expr::conjunction(filters.iter().cloned()) {
        Some(predicate) => Some(ChunkFilter::new(&predicate, &schema)?),
        None => None,
    };
    let results: Vec<Result<PieceResult, ExecError>> = pool().install(|| {
        tasks
            .into_par_iter()
            .map(|task| {
                let file = dataset.open(task.id.fragment)?;
                let whole_piece =
                    task.decoded.is_none() && task.rows.is_none() && !decoded_columns.is_empty();
                // Pages whose statistics rule the filters out are not decoded.
                let page_rows = match whole_piece {
                    true => page_row_ranges(view, task.id.fragment, task.id.piece, filters)?,
                    false => None,
                };
                if let (Some(filter), OpenedFile::Decoded(decoded), None, false) =
                    (&filter, file, &page_rows, split_columns)
                    && whole_piece
                {
                    let read = SelectedRead::plan(
                        view,
                        decoded.as_ref(),
                        task.id.piece,
                        &decoded_columns,
                        filters,
                    );
                    if let Some(read) = read {
                        return read.run(view, file, decoded.as_ref(), task.id, filter);
                    }
                }
                let batches: PieceBatches<'_> =
                    match task.decoded {
                        Some(batches) => Box::new(batches.into_iter().map(Ok)),
                        None if decoded_columns.is_empty() => Box::new(std::iter::once(Ok(
                            rows_only(file, task.id.piece, task.rows)?,
                        ))),
                        None => match task.rows {
                            Some((offset, count)) => Box::new(
                                dataset
                                    .read_piece_rows(
                                        task.id.fragment,
                                        task.id.piece,
                                        &decoded_columns,
                                        DECODE_BATCH_ROWS,
                                        offset as u64,
                                        count as u64,
                                    )?
                                    .into_iter()
                                    .map(Ok),
                            ),
                            None => match page_rows {
                                Some(rows) if rows.is_empty() => Box::new(std::iter::empty()),
                                rows if split_columns && decodes_columns_apart(file) => Box::new(
                                    columns_decoded_apart(
                                        file,
                                        task.id.piece,
                                        &decoded_columns,
                                        rows.as_deref(),
                                    )?
                                    .into_iter()
                                    .map(Ok),
                                ),
                                rows => file.piece_batches(
                                    task.id.piece,
                                    &decoded_columns,
                                    DECODE_BATCH_ROWS,
                                    rows.as_deref(),
                                )?,
                            },
                        },
                    };
                // Each batch is filtered before the next is decoded; see `compact`.
                let (mut chunks, mut rows_in, mut bytes_read) = (Vec::new(), 0, 0);
                for batch in batches {
                    let batch = batch?;
                    rows_in += batch.num_rows();
                    bytes_read += bytes_of(file, &batch);
                    let mut chunk = chunk_of(view, task.id.fragment, file_columns, &batch);
                    if let Some(filter) = &filter {
                        let evaluation = filter_error(file);
                        chunk = filter.apply(chunk).map_err(evaluation)?;
                        if matches!(file, OpenedFile::Decoded(_)) {
                            chunk = compact(chunk).map_err(evaluation)?;
                        }
                    }
                    chunks.push(chunk);
                }
                Ok((chunks, rows_in, bytes_read))
            })
            .collect()
    });
    let mut chunks = Vec::new();
    let (mut rows_in, mut bytes_read, mut pieces_read) = (0, 0, 0);
    for result in results {
        let (piece_chunks, rows, bytes) = result?;
        chunks.extend(piece_chunks);
        rows_in += rows;
        bytes_read += bytes;
        pieces_read += 1;
    }
    let result = ViewSet { schema, chunks };
    let stats = OperatorStats {
        rows_in,
        rows_out: result.num_rows(),
        bytes_read,
        batches_read: pieces_read,
        batches_skipped: total_pieces.saturating_sub(pieces_read),
        files_read: view.fragments().len(),
        files_skipped: dataset.num_fragments() - view.fragments().len(),
        ..Default::default()
    };
    Ok((result, stats))
}

/// The pieces that overlap `range` of the rows of `pieces` taken together, with the rows of
/// each to keep. Pieces whose row count the metadata does not give are decoded here, in order.
fn sliced_tasks(
    view: &DatasetView,
    pieces: Vec<PieceId>,
    range: RowRange,
    columns: &[usize],
) -> Result<Vec<PieceTask>, ExecError> {
    let end = range.offset.saturating_add(range.length);
    let mut start = 0u64;
    let mut tasks = Vec::new();
    for id in pieces {
        if start >= end {
            break;
        }
        let file = view.dataset().open(id.fragment)?;
        let (rows, decoded) = match file.piece_rows(id.piece) {
            Some(rows) => (rows, None),
            None => {
                let batches =
                    file.read_piece(id.piece, columns_to_count(columns), DECODE_BATCH_ROWS)?;
                (
                    batches.iter().map(|b| b.num_rows() as u64).sum(),
                    Some(batches),
                )
            }
        };
        let (from, to) = (range.offset.max(start), end.min(start + rows));
        if to > from {
            let (offset, count) = ((from - start) as usize, (to - from) as usize);
            tasks.push(PieceTask {
                id,
                rows: Some((offset, count)),
                decoded: decoded
                    .map(|batches| slice_batches(&batches, offset as u64, count as u64)),
            });
        }
        start += rows;
    }
    Ok(tasks)
}

/// The columns to decode to learn a piece's row count: those read, or the first one.
fn columns_to_count(columns: &[usize]) -> &[usize] {
    if columns.is_empty() { &[0] } else { columns }
}

/// A batch without columns of the rows of `piece` (all, or `rows` as (offset, count)), for a
/// read of partition columns only: nothing is decoded when the file's metadata gives the
/// piece's row count.
fn rows_only(
    file: &OpenedFile,
    piece: usize,
    rows: Option<(usize, usize)>,
) -> Result<RecordBatch, ExecError> {
    let total = match file.piece_rows(piece) {
        Some(total) => total as usize,
        None => file
            .read_piece(piece, columns_to_count(&[]), DECODE_BATCH_ROWS)?
            .iter()
            .map(RecordBatch::num_rows)
            .sum(),
    };
    let count = rows.map_or(total, |(offset, count)| {
        count.min(total.saturating_sub(offset))
    });
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(count));
    Ok(RecordBatch::try_new_with_options(
        std::sync::Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &options,
    )?)
}

/// Whether `file` decodes each column on its own (Parquet), so that decoding the columns of a
/// piece apart costs no more than decoding them together. CSV and NDJSON parse whole records.
fn decodes_columns_apart(file: &OpenedFile) -> bool {
    matches!(file, OpenedFile::Decoded(decoded) if decoded.format() == "parquet")
}

/// The batches of `columns` of `piece` (the rows in `rows` when given), each column decoded
/// on its own task: a file of one row group then decodes on every thread. The piece is
/// decoded whole before its batches are filtered, which a read of fewer pieces than threads
/// can afford. On a 4 M-row file of one row group and 6 float32 columns (zstd, 2 threads),
/// reading every column to NumPy took 60-80 ms against 115-124 ms decoding the columns
/// together, and a filter keeping 7% of the rows, 32-35 ms against 50 ms.
fn columns_decoded_apart(
    file: &OpenedFile,
    piece: usize,
    columns: &[usize],
    rows: Option<&[std::ops::Range<u64>]>,
) -> Result<Vec<RecordBatch>, ExecError> {
    let per_column: Vec<Vec<RecordBatch>> = columns
        .par_iter()
        .map(|&column| {
            file.piece_batches(piece, &[column], DECODE_BATCH_ROWS, rows)?
                .collect::<relay_storage::Result<Vec<_>>>()
        })
        .collect::<relay_storage::Result<_>>()?;
    let schema = std::sync::Arc::new(file.schema().project(columns)?);
    let batches = per_column.first().map_or(0, Vec::len);
    if per_column.iter().any(|decoded| decoded.len() != batches) {
        return Err(ExecError::Arrow(arrow::error::ArrowError::ComputeError(
            format!(
                "{}: the columns of piece {piece} decoded into different numbers of batches",
                file.path().display()
            ),
        )));
    }
    (0..batches)
        .map(|index| {
            let arrays = per_column
                .iter()
                .map(|decoded| decoded[index].column(0).clone())
                .collect();
            let options = arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(per_column[0][index].num_rows()));
            Ok(RecordBatch::try_new_with_options(
                schema.clone(),
                arrays,
                &options,
            )?)
        })
        .collect()
}

/// Bytes of column data a batch of a piece holds: the sliced bytes of an IPC view (its buffers
/// share the whole mapping), the decoded memory otherwise.
fn bytes_of(file: &OpenedFile, batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|column| match file {
            OpenedFile::Ipc(_) => column.to_data().get_slice_memory_size().unwrap_or(0),
            OpenedFile::Decoded(_) => column.get_array_memory_size(),
        })
        .sum()
}

/// A filtered chunk of decoded memory that keeps fewer than half its rows, gathered into
/// arrays of just those rows, so that the decoded batch is freed before the next one is
/// decoded and a filtered read holds about what passes rather than every decoded row, in the
/// same time. A chunk keeping half or more stays a selection over its batch: the gather would
/// copy most of it for little memory.
/// Views of a mapping are never compacted: they cost no memory.
fn compact(chunk: Chunk) -> Result<Chunk, arrow::error::ArrowError> {
    let Some(selection) = chunk
        .selection
        .as_ref()
        .filter(|selection| selection.len() * 2 < chunk.len)
    else {
        return Ok(chunk);
    };
    let indices = UInt32Array::from(selection.as_ref().clone());
    let columns = chunk
        .columns
        .iter()
        .map(|column| take(column.as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Chunk {
        columns,
        len: indices.len(),
        selection: None,
    })
}

/// A read of a decoded piece in two steps: the columns the filters read (and any the file
/// cannot decode at chosen rows) are decoded a batch at a time and filtered, then the other
/// columns are decoded only at the rows that pass (`DecodedFile::selected_column`): the
/// other columns are not copied out of their pages (or looked up in their dictionaries) for
/// the rows that fail, into fresh arrays, nor gathered afterwards.
struct SelectedRead {
    /// Decoded whole and filtered, unique, in the view's order.
    filtered: Vec<usize>,
    /// Decoded at the rows that pass, unique, in the view's order.
    selected: Vec<usize>,
}

impl SelectedRead {
    /// The split of `columns` for `piece`, or None where the file can decode none of the
    /// columns the filters do not read at chosen rows.
    fn plan(
        view: &DatasetView,
        file: &dyn DecodedFile,
        piece: usize,
        columns: &[usize],
        filters: &[Expr],
    ) -> Option<SelectedRead> {
        let filter_columns: Vec<usize> = filters
            .iter()
            .flat_map(Expr::columns)
            .filter_map(|name| view.column_index(&name))
            .collect();
        let mut unique = columns.to_vec();
        let mut seen = std::collections::HashSet::new();
        unique.retain(|column| seen.insert(*column));
        let candidates: Vec<usize> = unique
            .iter()
            .copied()
            .filter(|column| !filter_columns.contains(column))
            .collect();
        let selected = file.selectable_columns(piece, &candidates);
        let filtered: Vec<usize> = unique
            .into_iter()
            .filter(|column| !selected.contains(column))
            .collect();
        (!selected.is_empty() && !filtered.is_empty())
            .then_some(SelectedRead { filtered, selected })
    }

    /// Filters the piece's batches, then decodes each selected column at the passing rows of
    /// every batch before the next column: one column chunk in memory at a time, which halved
    /// the page faults of a first query over `tab` against decoding the columns side by side.
    fn run(
        &self,
        view: &DatasetView,
        file: &OpenedFile,
        decoded: &dyn DecodedFile,
        id: PieceId,
        filter: &ChunkFilter,
    ) -> Result<PieceResult, ExecError> {
        let file_columns = view.dataset().file_schema().fields().len();
        let evaluation = filter_error(file);
        // Per batch: its row count, its passing rows, and the view's columns at those rows
        // (placeholders where a column is decoded at chosen rows).
        let mut filtered = Vec::new();
        let (mut rows_in, mut bytes_read) = (0, 0);
        for batch in decoded.piece_batches(id.piece, &self.filtered, DECODE_BATCH_ROWS, None)? {
            let batch = batch?;
            let len = batch.num_rows();
            rows_in += len;
            bytes_read += bytes_of(file, &batch);
            // The columns decoded at chosen rows are null placeholders, which the filter does
            // not read.
            let position = |column: usize| self.filtered.iter().position(|&c| c == column);
            let chunk = view_chunk(view, id.fragment, file_columns, len, |column| {
                position(column).map(|i| batch.column(i).clone())
            });
            let chunk = filter.apply(chunk).map_err(evaluation)?;
            let passing = UInt32Array::from(match &chunk.selection {
                Some(selection) => selection.as_ref().clone(),
                None => (0..len as u32).collect::<Vec<u32>>(),
            });
            let columns = view
                .columns()
                .iter()
                .zip(&chunk.columns)
                .map(|(column, array)| match self.selected.contains(column) {
                    true => Ok(None),
                    false => take(array.as_ref(), &passing, None).map(Some),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(evaluation)?;
            filtered.push((len, passing, columns));
        }
        for &column in &self.selected {
            let mut reader = decoded.selected_column(id.piece, column)?;
            for (len, passing, columns) in &mut filtered {
                let values = reader.next_rows(*len, passing.values())?;
                bytes_read += values.get_array_memory_size();
                for (_, slot) in view
                    .columns()
                    .iter()
                    .zip(columns.iter_mut())
                    .filter(|(c, _)| **c == column)
                {
                    *slot = Some(values.clone());
                }
            }
        }
        let chunks = filtered
            .into_iter()
            .map(|(_, passing, columns)| Chunk {
                columns: columns
                    .into_iter()
                    .map(|array| array.expect("each column filtered or selected"))
                    .collect(),
                len: passing.len(),
                selection: None,
            })
            .collect();
        Ok((chunks, rows_in, bytes_read))
    }
}

/// The error of a filter that failed on the rows of `file`.
fn filter_error(file: &OpenedFile) -> impl Fn(arrow::error::ArrowError) -> ExecError + Copy + '_ {
    move |source| ExecError::Evaluation {
        path: file.path().to_owned(),
        operation: "filter evaluation",
        source,
    }
}

/// A decoded batch (the view's file columns, in its order) as a chunk of the view's columns:
/// partition columns are constant arrays of the fragment's values.
fn chunk_of(
    view: &DatasetView,
    fragment: usize,
    file_columns: usize,
    batch: &RecordBatch,
) -> Chunk {
    let mut decoded = batch.columns().iter();
    view_chunk(view, fragment, file_columns, batch.num_rows(), |_| {
        decoded.next().cloned()
    })
}

/// A chunk of `len` rows of the view's columns: `decoded(column)` gives each file column, in
/// the view's order (a null placeholder where it gives none), and partition columns are
/// constant arrays of the fragment's values.
fn view_chunk(
    view: &DatasetView,
    fragment: usize,
    file_columns: usize,
    len: usize,
    mut decoded: impl FnMut(usize) -> Option<ArrayRef>,
) -> Chunk {
    let columns: Vec<ArrayRef> = view
        .columns()
        .iter()
        .map(|&column| {
            if column < file_columns {
                decoded(column).unwrap_or_else(|| {
                    arrow::array::new_null_array(&arrow::datatypes::DataType::Null, len)
                })
            } else {
                match view.partition_value(fragment, column) {
                    Some(value) => constant_column(value, len),
                    None => arrow::array::new_null_array(
                        view.dataset().schema().field(column).data_type(),
                        len,
                    ),
                }
            }
        })
        .collect();
    Chunk {
        columns,
        len,
        selection: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{counting_dataset, dataset, xs};
    use arrow::array::{Array, Int64Array};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn pieces_decode_filter_and_carry_partition_columns() {
        let view = DatasetView::new(dataset(true));
        let filter = Expr::col("x").binary(
            relay_plan::BinaryOp::Gt,
            Expr::lit(Arc::new(Int64Array::from(vec![125]))),
        );
        let (result, stats) = execute_read(&view, &[filter]).unwrap();
        assert_eq!(xs(&result), (126..130).collect::<Vec<_>>());
        assert_eq!(
            (
                stats.rows_in,
                stats.rows_out,
                stats.batches_read,
                stats.files_read
            ),
            (60, 4, 6, 2)
        );
        let part = result.column_arrays(2).unwrap();
        assert!(part.iter().all(|a| {
            a.as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .iter()
                .all(|&p| p == 1)
        }));
    }

    #[test]
    fn decoded_batches_that_keep_few_rows_are_gathered_down_to_them() {
        let view = DatasetView::new(dataset(true));
        let gt = |value: i64| {
            Expr::col("x").binary(
                relay_plan::BinaryOp::Gt,
                Expr::lit(Arc::new(Int64Array::from(vec![value]))),
            )
        };
        // 4 of piece 120..130's 10 rows pass: compacted to arrays of those 4 rows.
        let (few, _) = execute_read(&view, &[gt(125)]).unwrap();
        let kept: Vec<&Chunk> = few.chunks.iter().filter(|c| c.num_selected() > 0).collect();
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].len, kept[0].selection.is_none()), (4, true));
        assert_eq!(kept[0].columns[0].len(), 4);
        assert_eq!(xs(&few), (126..130).collect::<Vec<_>>());
        // 6 of 10 pass: the batch stays whole, with a selection.
        let (most, _) = execute_read(&view, &[gt(123)]).unwrap();
        let kept: Vec<&Chunk> = most
            .chunks
            .iter()
            .filter(|c| c.num_selected() > 0)
            .collect();
        assert_eq!((kept[0].len, kept[0].num_selected()), (10, 6));
        assert_eq!(xs(&most), (124..130).collect::<Vec<_>>());
    }

    #[test]
    fn a_slice_decodes_only_the_pieces_it_overlaps() {
        for rows_known in [true, false] {
            let view = DatasetView::new(dataset(rows_known))
                .select(&["x"])
                .unwrap()
                .slice(25, 10);
            let (result, stats) = execute_read(&view, &[]).unwrap();
            assert_eq!(xs(&result), (25..30).chain(100..105).collect::<Vec<_>>());
            assert_eq!((stats.rows_in, stats.batches_read), (10, 2));
        }
    }

    #[test]
    fn consecutive_slices_of_a_piece_decode_it_once() {
        let decodes = Arc::new(AtomicUsize::new(0));
        let dataset = counting_dataset(true, decodes.clone());
        let view = DatasetView::new(dataset.clone()).select(&["x"]).unwrap();
        let count = || decodes.load(Ordering::Relaxed);
        // Pieces hold 10 rows: slices of 4 rows walk pieces 0 and 1 of the first file.
        let mut seen = Vec::new();
        for start in (0..20).step_by(4) {
            let (result, _) = execute_read(&view.slice(start, 4), &[]).unwrap();
            seen.extend(xs(&result));
        }
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        assert_eq!(count(), 2);
        // The last slice reached the end of piece 1, so nothing is kept: piece 1 again is a
        // new decode, kept for what follows.
        let (result, _) = execute_read(&view.slice(12, 2), &[]).unwrap();
        assert_eq!((xs(&result), count()), (vec![12, 13], 3));
        execute_read(&view.slice(14, 2), &[]).unwrap();
        assert_eq!(count(), 3);
        // Other columns are another decode.
        let both = DatasetView::new(dataset).select(&["x", "s"]).unwrap();
        let (result, _) = execute_read(&both.slice(16, 2), &[]).unwrap();
        assert_eq!((xs(&result), count()), (vec![16, 17], 4));
    }

    #[test]
    fn partition_columns_alone_decode_nothing_when_row_counts_are_known() {
        for rows_known in [true, false] {
            let view = DatasetView::new(dataset(rows_known))
                .select(&["part"])
                .unwrap();
            let (result, stats) = execute_read(&view, &[]).unwrap();
            assert_eq!(result.num_rows(), 60);
            assert_eq!(stats.bytes_read, 0);
            let parts: Vec<i64> = result
                .column_arrays(0)
                .unwrap()
                .iter()
                .flat_map(|a| {
                    a.as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect();
            assert_eq!(parts, [vec![0; 30], vec![1; 30]].concat());
            let (sliced, _) = execute_read(&view.slice(25, 10), &[]).unwrap();
            assert_eq!(sliced.num_rows(), 10);
        }
    }
}
