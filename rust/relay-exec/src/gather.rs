//! Materialization of view sets into dense buffers: the one copy a filtered frame costs.
//!
//! A fixed-width column without nulls is gathered straight from the mapped buffers into the
//! output, in parallel over pieces of the selection, with no intermediate arrays. Several such
//! columns of one dtype are gathered into one 2-D buffer in C (row-major) or F (column-major)
//! order. Everything else goes through arrow's `take` and then `dense::materialize`.

use std::ops::Range;

use arrow::array::{Array, ArrayRef, FixedSizeListArray};
use arrow::buffer::{Buffer, MutableBuffer};
use arrow::datatypes::DataType;
use rayon::prelude::*;
use relay_storage::DecodedColumn;

use crate::dense::{DenseArray, DenseDtype, materialize};
use crate::execute::{ViewSet, pool};

/// Selected rows handled by one task.
const GATHER_ROWS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
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
    let dtype = match leaf.data_type() {
        DataType::Int8 => DenseDtype::Int8,
        DataType::Int16 => DenseDtype::Int16,
        DataType::Int32 => DenseDtype::Int32,
        DataType::Int64 => DenseDtype::Int64,
        DataType::UInt8 => DenseDtype::UInt8,
        DataType::UInt16 => DenseDtype::UInt16,
        DataType::UInt32 => DenseDtype::UInt32,
        DataType::UInt64 => DenseDtype::UInt64,
        DataType::Float16 => DenseDtype::Float16,
        DataType::Float32 => DenseDtype::Float32,
        DataType::Float64 => DenseDtype::Float64,
        _ => return None,
    };
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
    Selected(&'a [u32]),
}

/// Copies `rows` of `source` (rows of `row_bytes` bytes) into `out`, in order.
/// `out_stride` is the distance between output rows (== row_bytes when rows are packed).
fn copy_rows(source: &[u8], row_bytes: usize, rows: Rows<'_>, out: &mut [u8], out_stride: usize) {
    let rows = match rows {
        Rows::Range(start, count) if out_stride == row_bytes => {
            let from = start * row_bytes;
            out[..count * row_bytes].copy_from_slice(&source[from..from + count * row_bytes]);
            return;
        }
        Rows::Range(start, count) => {
            for k in 0..count {
                let at = (start + k) * row_bytes;
                out[k * out_stride..k * out_stride + row_bytes].copy_from_slice(&source[at..at + row_bytes]);
            }
            return;
        }
        Rows::Selected(rows) => rows,
    };
    match (row_bytes, out_stride == row_bytes) {
        // Packed 4- and 8-byte rows: element copies the compiler turns into plain moves.
        (4, true) => {
            for (dst, &r) in out.chunks_exact_mut(4).zip(rows) {
                let at = r as usize * 4;
                dst.copy_from_slice(&source[at..at + 4]);
            }
        }
        (8, true) => {
            for (dst, &r) in out.chunks_exact_mut(8).zip(rows) {
                let at = r as usize * 8;
                dst.copy_from_slice(&source[at..at + 8]);
            }
        }
        _ => {
            for (k, &r) in rows.iter().enumerate() {
                let at = r as usize * row_bytes;
                out[k * out_stride..k * out_stride + row_bytes].copy_from_slice(&source[at..at + row_bytes]);
            }
        }
    }
}

/// Column `index` of `view` as one dense buffer: a view of the mapping when the column is one
/// unselected chunk of it, else one gather or copy.
pub fn dense_column(view: &ViewSet, index: usize, mapped: &Range<usize>) -> Result<DenseArray, String> {
    let data_type = view.schema.field(index).data_type().clone();
    let selected = view.chunks.iter().any(|c| c.selection.is_some());
    if selected && let Some(dense) = gather_fixed_width(view, &[index], Order::C)? {
        return Ok(dense);
    }
    let arrays = view.column_arrays(index).map_err(|e| e.to_string())?;
    let mut chunks: Vec<DecodedColumn> = arrays
        .into_iter()
        .map(|array| DecodedColumn {
            array,
            copy_reason: selected.then(|| "a filter selected rows: they are gathered into a copy".to_string()),
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
pub fn gather_fixed_width(view: &ViewSet, indices: &[usize], order: Order) -> Result<Option<DenseArray>, String> {
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
    let mut out = MutableBuffer::from_len_zeroed(rows * columns * cell_bytes);

    // Tasks: (chunk, first selected position, count, first output row).
    let mut tasks = Vec::new();
    let mut out_row = 0;
    for (c, chunk) in view.chunks.iter().enumerate() {
        let n = chunk.num_selected();
        for start in (0..n).step_by(GATHER_ROWS) {
            let count = GATHER_ROWS.min(n - start);
            tasks.push((c, start, count, out_row + start));
        }
        out_row += n;
    }
    let rows_of = |c: usize, start: usize, count: usize| match &view.chunks[c].selection {
        Some(selection) => Rows::Selected(&selection[start..start + count]),
        None => Rows::Range(start, count),
    };

    let out_slice = out.as_slice_mut();
    match order {
        Order::C => {
            // Row-major: task k owns output rows [row0, row0 + count) = one contiguous slice.
            let mut pieces: Vec<&mut [u8]> = Vec::with_capacity(tasks.len());
            let mut rest = out_slice;
            for &(_, _, count, _) in &tasks {
                let (head, tail) = rest.split_at_mut(count * columns * cell_bytes);
                pieces.push(head);
                rest = tail;
            }
            pool().install(|| {
                tasks.par_iter().zip(pieces).for_each(|(&(c, start, count, _), piece)| {
                    let rows = rows_of(c, start, count);
                    for (j, (bytes, row_bytes)) in sources[c].iter().enumerate() {
                        copy_rows(bytes.as_slice(), *row_bytes, rows, &mut piece[j * cell_bytes..], columns * cell_bytes);
                    }
                });
            });
        }
        Order::F => {
            // Column-major: column j's output is contiguous; split it into the same tasks.
            let column_len = rows * cell_bytes;
            let mut pieces: Vec<(usize, usize, &mut [u8])> = Vec::new();
            for (j, column_out) in out_slice.chunks_mut(column_len.max(1)).enumerate().take(columns) {
                let mut rest = column_out;
                for (t, &(_, _, count, _)) in tasks.iter().enumerate() {
                    let (head, tail) = rest.split_at_mut(count * cell_bytes);
                    pieces.push((j, t, head));
                    rest = tail;
                }
            }
            pool().install(|| {
                pieces.into_par_iter().for_each(|(j, t, piece)| {
                    let (c, start, count, _) = tasks[t];
                    let rows = rows_of(c, start, count);
                    let (bytes, row_bytes) = &sources[c][j];
                    copy_rows(bytes.as_slice(), *row_bytes, rows, piece, cell_bytes);
                });
            });
        }
    }
    // An F-order matrix is returned as its transpose in C order, (columns, rows): the caller
    // hands out the transposed view, which is the (rows, columns) F-contiguous array.
    let shape = match (row_width, indices.len(), order) {
        (Some(d), _, _) => vec![rows, d],
        (None, 1, _) => vec![rows],
        (None, k, Order::C) => vec![rows, k],
        (None, k, Order::F) => vec![k, rows],
    };
    Ok(Some(DenseArray {
        buffer: out.into(),
        dtype,
        shape,
        copy_reason: Some("gathered into a fresh buffer".into()),
    }))
}
