//! Materialization of view sets into dense buffers: the one copy a filtered frame costs.
//!
//! A fixed-width column without nulls is gathered straight from the mapped buffers into the
//! output, in parallel over pieces of the selection, with no intermediate arrays. Several such
//! columns of one dtype are gathered into one 2-D buffer in C (row-major) or F (column-major)
//! order. Everything else goes through arrow's `take` and then `dense::materialize`.

use std::ops::Range;

use arrow::array::{Array, ArrayRef, FixedSizeListArray};
use arrow::buffer::{Buffer, MutableBuffer};
use arrow::datatypes::{ArrowNativeType, DataType, ToByteSlice};
use rayon::prelude::*;
use relay_storage::DecodedColumn;

use crate::dense::{DenseArray, DenseDtype, materialize};
use crate::pool::pool;
use crate::view::ViewSet;

/// Selected rows handled by one task, at most.
const GATHER_ROWS: usize = 64 * 1024;

/// Selected rows handled by one task, at least (unless there are fewer in the chunk). Smaller
/// gathers are still split so that every thread takes part: a sparse selection touches a page
/// of each column per row, and on a fresh mapping each first touch is a page fault (measured:
/// 12.6 k rows of 3 float32 columns, `(city == "Lima") & (f0 > 0) & (age > 98)` on `tab`,
/// took 25-33 ms in one task on first touch).
const GATHER_MIN_ROWS: usize = 1024;

/// Rows per gather task for `rows` selected rows: about four tasks per thread, within
/// `GATHER_MIN_ROWS ..= GATHER_ROWS`.
fn task_rows(rows: usize, threads: usize) -> usize {
    rows.div_ceil(4 * threads.max(1))
        .clamp(GATHER_MIN_ROWS, GATHER_ROWS)
}

/// How the values of a gathered two-dimensional array lie in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLayout {
    /// Row-major: each row's values are adjacent.
    C,
    /// Column-major: each column is contiguous.
    F,
}

/// The bytes of a fixed-width, null-free column piece: (values, bytes per row, dtype, width).
fn fixed_width_values(array: &ArrayRef) -> Option<(Buffer, usize, DenseDtype, Option<usize>)> {
    if array.logical_null_count() > 0 {
        return None;
    }
    let (leaf, width) = match array.data_type() {
        DataType::FixedSizeList(_, d) => {
            let list = array.as_any().downcast_ref::<FixedSizeListArray>()?;
            if list.values().logical_null_count() > 0 {
                return None;
            }
            (list.values().clone(), Some(*d as usize))
        }
        _ => (array.clone(), None),
    };
    let dtype = DenseDtype::of_leaf(leaf.data_type()).filter(|d| {
        !matches!(
            d,
            DenseDtype::Bool | DenseDtype::Datetime(_) | DenseDtype::Timedelta(_)
        )
    })?;
    let data = leaf.to_data();
    let size = dtype.item_size();
    let bytes = data.buffers()[0].slice_with_length(data.offset() * size, data.len() * size);
    Some((bytes, size * width.unwrap_or(1), dtype, width))
}

/// Which rows of a chunk a task copies.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// `count` consecutive rows from `start` (a chunk without selection).
    Range(usize, usize),
    /// Rows by offset, in output order (ascending under a filter, any order under a take).
    Selected(&'a [u32]),
}

/// One column piece as the gather reads it: typed values when the buffer is aligned to the
/// cell type (always, for buffers decoded from a mapping with alignment checks), else bytes.
#[derive(Clone, Copy)]
enum Source<'a> {
    U32(&'a [u32]),
    U64(&'a [u64]),
    Bytes(&'a [u8]),
}

impl<'a> Source<'a> {
    fn of(bytes: &'a Buffer, row_bytes: usize) -> Self {
        let aligned = |align: usize| {
            bytes.as_ptr().align_offset(align) == 0 && bytes.len().is_multiple_of(align)
        };
        match row_bytes {
            4 if aligned(4) => Source::U32(bytes.typed_data::<u32>()),
            8 if aligned(8) => Source::U64(bytes.typed_data::<u64>()),
            _ => Source::Bytes(bytes.as_slice()),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        match *self {
            Source::U32(values) => values.to_byte_slice(),
            Source::U64(values) => values.to_byte_slice(),
            Source::Bytes(bytes) => bytes,
        }
    }
}

/// Copies `rows` of the `sources` (one per output column, all with cells of `cell` bytes) into
/// `out`, row-major: output row k is the k-th row's cells of every source, side by side.
/// With one source this is a plain packed gather (also each column of an F-order result).
///
/// Row at a time, all columns per row: the output is written once, front to back, in full
/// cache lines, while the reads advance through each column in order. Column at a time (a
/// strided pass over the task's output per column) measured twice as slow: 27-28 ms against
/// 13.0-13.3 ms for the gather of `age > 94`, f0..f3 on `tab` (1.0 M rows x 4 float32, pages
/// mapped, 2 threads, median of 7).
fn gather_rows(sources: &[Source<'_>], cell: usize, rows: Rows<'_>, out: &mut [u8]) {
    let row_bytes = sources.len() * cell;
    let rows = match rows {
        Rows::Selected(rows) => rows,
        Rows::Range(start, count) if sources.len() == 1 => {
            // One column, consecutive rows: one copy.
            let from = start * cell;
            out[..count * cell].copy_from_slice(&sources[0].bytes()[from..from + count * cell]);
            return;
        }
        Rows::Range(start, count) => {
            let rows: Vec<&[u8]> = sources
                .iter()
                .map(|source| &source.bytes()[start * cell..(start + count) * cell])
                .collect();
            interleave_rows(&rows, cell, &mut out[..count * row_bytes]);
            return;
        }
    };
    let as_u32: Option<Vec<&[u32]>> = sources
        .iter()
        .map(|s| {
            if let Source::U32(v) = s {
                Some(*v)
            } else {
                None
            }
        })
        .collect();
    let as_u64: Option<Vec<&[u64]>> = sources
        .iter()
        .map(|s| {
            if let Source::U64(v) = s {
                Some(*v)
            } else {
                None
            }
        })
        .collect();
    match (as_u32, as_u64) {
        (Some(typed), _) => gather_typed(&typed, rows, out),
        (_, Some(typed)) => gather_typed(&typed, rows, out),
        _ => {
            for (out_row, &r) in out.chunks_exact_mut(row_bytes).zip(rows) {
                let at = r as usize * cell;
                for (out_cell, source) in out_row.chunks_exact_mut(cell).zip(sources) {
                    out_cell.copy_from_slice(&source.bytes()[at..at + cell]);
                }
            }
        }
    }
}

/// Rows per block of `interleave_rows`: a block's output rows stay in L1 while every column
/// writes its cells into them.
const INTERLEAVE_BLOCK_ROWS: usize = 64;

/// Interleaves the rows of `sources` (the same number of consecutive rows of each, `cell`
/// bytes per row) into `out`, row-major: output row k is row k of every source, side by side.
/// The rows go block by block, each block's output written by every column while it is in
/// L1: a pass per column over the whole output rewrites each of its cache lines once per
/// column, about twice the time for a batch of 1024 rows of 8 float32 columns.
pub(crate) fn interleave_rows(sources: &[&[u8]], cell: usize, out: &mut [u8]) {
    /// False (nothing written) when a buffer is not aligned to `T`.
    fn typed<T: ArrowNativeType>(sources: &[&[u8]], out: &mut [u8]) -> bool {
        // SAFETY: every ArrowNativeType is a plain number for which any bit pattern is a
        // valid value; the cells are moved, not interpreted.
        let (head, out, tail) = unsafe { out.align_to_mut::<T>() };
        if !head.is_empty() || !tail.is_empty() {
            return false;
        }
        let mut columns = Vec::with_capacity(sources.len());
        for source in sources {
            // SAFETY: as above.
            let (head, cells, tail) = unsafe { source.align_to::<T>() };
            if !head.is_empty() || !tail.is_empty() {
                return false;
            }
            columns.push(cells);
        }
        let n = columns.len();
        for (block, target) in out.chunks_mut(INTERLEAVE_BLOCK_ROWS * n).enumerate() {
            let first = block * INTERLEAVE_BLOCK_ROWS;
            for (j, cells) in columns.iter().enumerate() {
                for (row, &cell) in target.chunks_exact_mut(n).zip(&cells[first..]) {
                    row[j] = cell;
                }
            }
        }
        true
    }
    let done = match cell {
        1 => typed::<u8>(sources, out),
        2 => typed::<u16>(sources, out),
        4 => typed::<u32>(sources, out),
        8 => typed::<u64>(sources, out),
        _ => false,
    };
    if done || cell == 0 {
        return;
    }
    let row_bytes = sources.len() * cell;
    for (block, target) in out
        .chunks_mut(INTERLEAVE_BLOCK_ROWS * row_bytes)
        .enumerate()
    {
        let first = block * INTERLEAVE_BLOCK_ROWS * cell;
        for (j, source) in sources.iter().enumerate() {
            let cells = source[first..].chunks_exact(cell);
            for (row, bytes) in target.chunks_exact_mut(row_bytes).zip(cells) {
                row[j * cell..(j + 1) * cell].copy_from_slice(bytes);
            }
        }
    }
}

/// The row-major gather of typed cells, with the column count a constant for 1 to 8 columns
/// (so the per-row loop over columns unrolls), and a loop over columns beyond.
fn gather_typed<T: ArrowNativeType>(sources: &[&[T]], rows: &[u32], out: &mut [u8]) {
    fn fixed<T: ArrowNativeType, const K: usize>(sources: &[&[T]], rows: &[u32], out: &mut [u8]) {
        let sources: [&[T]; K] = std::array::from_fn(|j| sources[j]);
        let cell = std::mem::size_of::<T>();
        for (out_row, &r) in out.chunks_exact_mut(K * cell).zip(rows) {
            for (out_cell, source) in out_row.chunks_exact_mut(cell).zip(&sources) {
                out_cell.copy_from_slice(source[r as usize].to_byte_slice());
            }
        }
    }
    match sources.len() {
        1 => fixed::<T, 1>(sources, rows, out),
        2 => fixed::<T, 2>(sources, rows, out),
        3 => fixed::<T, 3>(sources, rows, out),
        4 => fixed::<T, 4>(sources, rows, out),
        5 => fixed::<T, 5>(sources, rows, out),
        6 => fixed::<T, 6>(sources, rows, out),
        7 => fixed::<T, 7>(sources, rows, out),
        8 => fixed::<T, 8>(sources, rows, out),
        k => {
            let cell = std::mem::size_of::<T>();
            for (out_row, &r) in out.chunks_exact_mut(k * cell).zip(rows) {
                for (out_cell, source) in out_row.chunks_exact_mut(cell).zip(sources) {
                    out_cell.copy_from_slice(source[r as usize].to_byte_slice());
                }
            }
        }
    }
}

/// Outputs of at least this many bytes are anonymous mappings advised for huge pages (see
/// `Output`); NumPy uses the same threshold for its own arrays.
const HUGE_PAGE_OUTPUT_BYTES: usize = 4 << 20;

/// A fresh, zero-filled, writable output buffer.
///
/// Large outputs are an anonymous private mapping with `MADV_HUGEPAGE`: the kernel supplies
/// zeroed pages on first touch, so there is no memset pass (an aligned `alloc_zeroed` is a
/// malloc plus a serial memset), the tasks fault their own parts in parallel, and a fault maps
/// 2 MiB instead of 4 KiB where transparent huge pages are available. Measured on the 2-core
/// development VM (THP "madvise"): filling 16 MB took 1.4-2.2 ms in huge pages against
/// 6.4-8.0 ms in 4 KiB pages (3,912 faults). A partial 2 MiB extent at either end of the
/// mapping gets 4 KiB pages, so resident memory stays the output's size. Without THP the
/// advice is ignored and the mapping behaves like a calloc'd buffer.
enum Output {
    Heap(MutableBuffer),
    Mapped(memmap2::MmapMut),
}

impl Output {
    fn zeroed(len: usize) -> Self {
        if len >= HUGE_PAGE_OUTPUT_BYTES
            && let Ok(mapping) = memmap2::MmapOptions::new().len(len).map_anon()
        {
            // Only advice: without THP support the mapping still works, in 4 KiB pages.
            let _ = mapping.advise(memmap2::Advice::HugePage);
            return Output::Mapped(mapping);
        }
        Output::Heap(MutableBuffer::from_len_zeroed(len))
    }

    fn as_slice_mut(&mut self) -> &mut [u8] {
        match self {
            Output::Heap(buffer) => buffer.as_slice_mut(),
            Output::Mapped(mapping) => mapping.as_mut(),
        }
    }

    /// The bytes as an arrow buffer (writable memory: an exported array may be written to).
    fn into_buffer(self) -> Buffer {
        match self {
            Output::Heap(buffer) => buffer.into(),
            Output::Mapped(mapping) => Buffer::from(bytes::Bytes::from_owner(mapping)),
        }
    }
}

/// Column `index` of `view` as one dense buffer: a view of the mapping when the column is one
/// unselected chunk of it, else one gather or copy.
pub fn dense_column(
    view: &ViewSet,
    index: usize,
    mapped: &Range<usize>,
) -> Result<DenseArray, String> {
    let data_type = view.schema.field(index).data_type().clone();
    let selected = view.chunks.iter().any(|c| c.selection.is_some());
    if selected && let Some(dense) = gather_fixed_width(view, &[index], MemoryLayout::C)? {
        return Ok(dense);
    }
    let arrays = view.column_arrays(index).map_err(|e| e.to_string())?;
    let mut chunks: Vec<DecodedColumn> = arrays
        .into_iter()
        .map(|array| DecodedColumn {
            array,
            copy_reason: selected
                .then(|| "a filter selected rows: they are gathered into a copy".to_string()),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(DecodedColumn {
            array: arrow::array::new_empty_array(&data_type),
            copy_reason: None,
        });
    }
    materialize(&chunks, mapped)
}

/// Columns `indices` of `view` gathered into one 2-D buffer of shape (rows, columns), or None
/// when they are not all fixed-width scalars of one dtype without nulls (the caller then
/// converts column by column). Always a copy.
pub fn gather_fixed_width(
    view: &ViewSet,
    indices: &[usize],
    layout: MemoryLayout,
) -> Result<Option<DenseArray>, String> {
    // Every piece of every column must be fixed-width, null-free and of one dtype.
    let mut dtype = None;
    let mut width = None;
    let mut sources: Vec<Vec<(Buffer, usize)>> = Vec::with_capacity(view.chunks.len());
    for chunk in &view.chunks {
        let mut per_column = Vec::with_capacity(indices.len());
        for &i in indices {
            let Some((bytes, row_bytes, d, w)) = fixed_width_values(&chunk.columns[i]) else {
                return Ok(None);
            };
            if dtype.is_some_and(|known| known != d) || (width.is_some() && width != Some(w)) {
                return Ok(None);
            }
            dtype = Some(d);
            width = Some(w);
            per_column.push((bytes, row_bytes));
        }
        sources.push(per_column);
    }
    let Some(dtype) = dtype else { return Ok(None) };
    let row_width = width.flatten();
    if indices.len() > 1 && row_width.is_some() {
        return Ok(None); // a matrix of fixed-size lists would be 3-D
    }
    let rows = view.num_rows();
    let columns = indices.len();
    let cell_bytes = dtype.item_size() * row_width.unwrap_or(1);
    let mut out = Output::zeroed(rows * columns * cell_bytes);

    // Tasks: (chunk, first selected position, count).
    let per_task = task_rows(rows, pool().current_num_threads());
    let mut tasks = Vec::new();
    for (c, chunk) in view.chunks.iter().enumerate() {
        let n = chunk.num_selected();
        for start in (0..n).step_by(per_task) {
            tasks.push((c, start, per_task.min(n - start)));
        }
    }
    let rows_of = |c: usize, start: usize, count: usize| match &view.chunks[c].selection {
        Some(selection) => Rows::Selected(&selection[start..start + count]),
        None => Rows::Range(start, count),
    };
    let sources: Vec<Vec<Source<'_>>> = sources
        .iter()
        .map(|per_column| {
            per_column
                .iter()
                .map(|(bytes, row_bytes)| Source::of(bytes, *row_bytes))
                .collect()
        })
        .collect();

    let out_slice = out.as_slice_mut();
    match layout {
        MemoryLayout::C => {
            // Row-major: each task owns a contiguous run of output rows.
            let mut pieces: Vec<&mut [u8]> = Vec::with_capacity(tasks.len());
            let mut rest = out_slice;
            for &(_, _, count) in &tasks {
                let (head, tail) = rest.split_at_mut(count * columns * cell_bytes);
                pieces.push(head);
                rest = tail;
            }
            pool().install(|| {
                tasks
                    .par_iter()
                    .zip(pieces)
                    .for_each(|(&(c, start, count), piece)| {
                        gather_rows(&sources[c], cell_bytes, rows_of(c, start, count), piece);
                    });
            });
        }
        MemoryLayout::F => {
            // Column-major: column j's output is contiguous; split it into the same tasks.
            let column_len = rows * cell_bytes;
            let mut pieces: Vec<(usize, usize, &mut [u8])> = Vec::new();
            for (j, column_out) in out_slice
                .chunks_mut(column_len.max(1))
                .enumerate()
                .take(columns)
            {
                let mut rest = column_out;
                for (t, &(_, _, count)) in tasks.iter().enumerate() {
                    let (head, tail) = rest.split_at_mut(count * cell_bytes);
                    pieces.push((j, t, head));
                    rest = tail;
                }
            }
            pool().install(|| {
                pieces.into_par_iter().for_each(|(j, t, piece)| {
                    let (c, start, count) = tasks[t];
                    gather_rows(
                        &sources[c][j..=j],
                        cell_bytes,
                        rows_of(c, start, count),
                        piece,
                    );
                });
            });
        }
    }
    // An F-order matrix is returned as its transpose in C order, (columns, rows): the caller
    // hands out the transposed view, which is the (rows, columns) F-contiguous array.
    let shape = match (row_width, indices.len(), layout) {
        (Some(d), _, _) => vec![rows, d],
        (None, 1, _) => vec![rows],
        (None, k, MemoryLayout::C) => vec![rows, k],
        (None, k, MemoryLayout::F) => vec![k, rows],
    };
    Ok(Some(DenseArray {
        buffer: out.into_buffer(),
        dtype,
        shape,
        copy_reason: Some("gathered into a fresh buffer".into()),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float32Array, Int16Array, Int64Array};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::view::Chunk;

    /// Two chunks of `columns` float32 columns: value = 1000 * column + global row.
    fn floats(columns: usize, lens: [usize; 2], selections: [Option<Vec<u32>>; 2]) -> ViewSet {
        let fields: Vec<Field> = (0..columns)
            .map(|j| Field::new(format!("f{j}"), DataType::Float32, false))
            .collect();
        let mut first_row = 0;
        let chunks = lens
            .into_iter()
            .zip(selections)
            .map(|(len, selection)| {
                let start = first_row;
                first_row += len;
                Chunk {
                    len,
                    columns: (0..columns)
                        .map(|j| {
                            Arc::new(Float32Array::from_iter_values(
                                (start..start + len).map(|r| (1000 * j + r) as f32),
                            )) as ArrayRef
                        })
                        .collect(),
                    selection: selection.map(Arc::new),
                }
            })
            .collect();
        ViewSet {
            schema: Arc::new(Schema::new(fields)),
            chunks,
        }
    }

    /// The (global) rows a view selects, in order.
    fn rows_of(view: &ViewSet) -> Vec<usize> {
        let mut first_row = 0;
        let mut rows = Vec::new();
        for chunk in &view.chunks {
            match &chunk.selection {
                Some(selection) => rows.extend(selection.iter().map(|&r| first_row + r as usize)),
                None => rows.extend(first_row..first_row + chunk.len),
            }
            first_row += chunk.len;
        }
        rows
    }

    #[test]
    fn interleave_rows_matches_a_row_by_row_copy() {
        for cell in [1usize, 2, 3, 4, 8] {
            for (columns, rows) in [(1usize, 5usize), (3, 64), (8, 200), (11, 130)] {
                // An extra leading byte, sliced off, makes every source unaligned for odd runs.
                for skew in [0usize, 1] {
                    let data: Vec<Vec<u8>> = (0..columns)
                        .map(|j| {
                            (0..skew + rows * cell)
                                .map(|b| (b * 7 + j * 31) as u8)
                                .collect()
                        })
                        .collect();
                    let sources: Vec<&[u8]> = data.iter().map(|d| &d[skew..]).collect();
                    let mut out = vec![0u8; rows * columns * cell];
                    interleave_rows(&sources, cell, &mut out);
                    let mut want = Vec::with_capacity(out.len());
                    for r in 0..rows {
                        for source in &sources {
                            want.extend_from_slice(&source[r * cell..(r + 1) * cell]);
                        }
                    }
                    assert_eq!(out, want, "cell {cell}, {columns} columns, {rows} rows");
                }
            }
        }
    }

    #[test]
    fn c_and_f_order_gathers_match_the_selected_rows() {
        // Selections in any order (a take's may go backwards), and one chunk without.
        for selections in [
            [Some(vec![5, 0, 3, 3]), Some(vec![1, 2])],
            [Some(vec![2, 4]), None],
        ] {
            for columns in [1, 3, 9] {
                let view = floats(columns, [6, 4], selections.clone());
                let rows = rows_of(&view);
                let indices: Vec<usize> = (0..columns).collect();
                let c = gather_fixed_width(&view, &indices, MemoryLayout::C)
                    .unwrap()
                    .unwrap();
                let want_c: Vec<f32> = rows
                    .iter()
                    .flat_map(|&r| (0..columns).map(move |j| (1000 * j + r) as f32))
                    .collect();
                assert_eq!(
                    c.buffer.typed_data::<f32>(),
                    want_c.as_slice(),
                    "{columns} columns, C"
                );
                let f = gather_fixed_width(&view, &indices, MemoryLayout::F)
                    .unwrap()
                    .unwrap();
                let want_f: Vec<f32> = (0..columns)
                    .flat_map(|j| rows.iter().map(move |&r| (1000 * j + r) as f32))
                    .collect();
                assert_eq!(
                    f.buffer.typed_data::<f32>(),
                    want_f.as_slice(),
                    "{columns} columns, F"
                );
                assert_eq!(
                    c.shape,
                    if columns == 1 {
                        vec![rows.len()]
                    } else {
                        vec![rows.len(), columns]
                    }
                );
                assert_eq!(
                    f.shape,
                    if columns == 1 {
                        vec![rows.len()]
                    } else {
                        vec![columns, rows.len()]
                    }
                );
            }
        }
    }

    #[test]
    fn large_outputs_are_mapped_and_hold_the_rows() {
        // 8-byte cells, 2 columns, enough rows for a mapped output, in several tasks.
        let len = 5 * GATHER_ROWS + 17;
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("y", DataType::Int64, false),
        ]));
        let selection: Vec<u32> = (0..len as u32).rev().collect();
        let view = ViewSet {
            schema,
            chunks: vec![Chunk {
                len,
                columns: vec![
                    Arc::new(Int64Array::from_iter_values(0..len as i64)) as ArrayRef,
                    Arc::new(Int64Array::from_iter_values((0..len as i64).map(|v| -v))),
                ],
                selection: Some(Arc::new(selection)),
            }],
        };
        assert!(2 * 8 * len >= HUGE_PAGE_OUTPUT_BYTES);
        let dense = gather_fixed_width(&view, &[0, 1], MemoryLayout::C)
            .unwrap()
            .unwrap();
        let values = dense.buffer.typed_data::<i64>();
        assert_eq!(values.len(), 2 * len);
        for (k, pair) in values.chunks_exact(2).enumerate() {
            let row = (len - 1 - k) as i64;
            assert_eq!(pair, [row, -row]);
        }
        assert_eq!(dense.buffer.as_ptr().align_offset(64), 0);
    }

    #[test]
    fn other_cell_sizes_and_fixed_size_lists_copy_bytes() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Int16, false)]));
        let view = ViewSet {
            schema,
            chunks: vec![Chunk {
                len: 5,
                columns: vec![Arc::new(Int16Array::from(vec![10, 11, 12, 13, 14])) as ArrayRef],
                selection: Some(Arc::new(vec![4, 1])),
            }],
        };
        let dense = gather_fixed_width(&view, &[0], MemoryLayout::C)
            .unwrap()
            .unwrap();
        assert_eq!(dense.buffer.typed_data::<i16>(), &[14, 11]);

        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Arc::new(Float32Array::from_iter_values((0..12).map(|v| v as f32)));
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(item.clone(), 3, values, None));
        let view = ViewSet {
            schema: Arc::new(Schema::new(vec![Field::new(
                "e",
                DataType::FixedSizeList(item, 3),
                false,
            )])),
            chunks: vec![Chunk {
                len: 4,
                columns: vec![list.slice(1, 3)],
                selection: Some(Arc::new(vec![2, 0])),
            }],
        };
        let dense = gather_fixed_width(&view, &[0], MemoryLayout::C)
            .unwrap()
            .unwrap();
        assert_eq!(dense.shape, vec![2, 3]);
        assert_eq!(
            dense.buffer.typed_data::<f32>(),
            &[9.0, 10.0, 11.0, 3.0, 4.0, 5.0]
        );
    }

    #[test]
    fn mixed_dtypes_are_not_gathered_together() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("y", DataType::Float32, false),
        ]));
        let view = ViewSet {
            schema,
            chunks: vec![Chunk {
                len: 1,
                columns: vec![
                    Arc::new(Int64Array::from(vec![1])) as ArrayRef,
                    Arc::new(Float32Array::from(vec![1.0])),
                ],
                selection: None,
            }],
        };
        assert!(
            gather_fixed_width(&view, &[0, 1], MemoryLayout::C)
                .unwrap()
                .is_none()
        );
    }
}
