//! Training batches: rows picked by position (a shuffle order, a sampler's indices) gathered
//! from a view set straight into caller-provided row-major buffers.
//!
//! A *group* of columns becomes one `(rows, width)` buffer of one element type: each column
//! contributes one cell per row (a scalar, a dictionary code, a boolean) or `D` cells (a
//! `fixed_size_list<_, D>`), side by side, converted to the group's type on the way. This is
//! the only copy a batch costs: there is no intermediate Arrow array, no per-column NumPy array
//! and no stacking pass. Ragged `list<_>` columns are padded to the longest row of the batch
//! (`gather_ragged`), since their width is known only once the batch's rows are.
//!
//! Positions are rows of the view set (after filters), grouped by record batch ("chunk") so each
//! chunk's typed slices are matched once, not per row. Only large batches are split into
//! tasks on the rayon pool (see `TASK_MIN_BYTES`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::DataType;
use half::f16;
use num_traits::AsPrimitive;
use rayon::prelude::*;
use relay_storage::type_name;

use crate::dense::{DenseArray, DenseDtype, DenseTimeUnit};
use crate::execute::{ViewSet, pool};

/// Output bytes per gather task, at least. A training batch (1024 rows of `tab`'s nine columns,
/// 36 KiB) is one task: split in two it ran slower (134 instead of 105 us per batch), since
/// the loader's producer thread already runs beside the Python thread on the other core.
const TASK_MIN_BYTES: usize = 1 << 20;

/// Values of one column piece, typed. Dictionary columns hold their keys (codes).
#[derive(Debug, Clone)]
enum Cells {
    Bool(BooleanBuffer),
    I8(ScalarBuffer<i8>),
    I16(ScalarBuffer<i16>),
    I32(ScalarBuffer<i32>),
    I64(ScalarBuffer<i64>),
    U8(ScalarBuffer<u8>),
    U16(ScalarBuffer<u16>),
    U32(ScalarBuffer<u32>),
    U64(ScalarBuffer<u64>),
    F16(ScalarBuffer<f16>),
    F32(ScalarBuffer<f32>),
    F64(ScalarBuffer<f64>),
}

impl Cells {
    /// The values of a flat fixed-width array (or the keys of a dictionary array).
    fn of(array: &dyn Array) -> Option<Self> {
        if let Some(dictionary) = array.as_any_dictionary_opt() {
            return Self::of(dictionary.keys());
        }
        if let DataType::Boolean = array.data_type() {
            return Some(Cells::Bool(array.as_boolean().values().clone()));
        }
        let data = array.to_data();
        fn typed<T: arrow::datatypes::ArrowNativeType>(
            data: &arrow::array::ArrayData,
        ) -> ScalarBuffer<T> {
            ScalarBuffer::new(data.buffers()[0].clone(), data.offset(), data.len())
        }
        Some(match array.data_type() {
            DataType::Int8 => Cells::I8(typed(&data)),
            DataType::Int16 => Cells::I16(typed(&data)),
            DataType::Int32 | DataType::Date32 => Cells::I32(typed(&data)),
            DataType::Int64
            | DataType::Date64
            | DataType::Timestamp(..)
            | DataType::Duration(_) => Cells::I64(typed(&data)),
            DataType::UInt8 => Cells::U8(typed(&data)),
            DataType::UInt16 => Cells::U16(typed(&data)),
            DataType::UInt32 => Cells::U32(typed(&data)),
            DataType::UInt64 => Cells::U64(typed(&data)),
            DataType::Float16 => Cells::F16(typed(&data)),
            DataType::Float32 => Cells::F32(typed(&data)),
            DataType::Float64 => Cells::F64(typed(&data)),
            _ => return None,
        })
    }
}

/// The element type a column's cells have, and so its output type unless one is asked for.
/// Dictionary codes are int64, whatever the key width, as embedding layers expect; dates and
/// times are their integer counts (date32: int32 days).
fn natural_dtype(data_type: &DataType) -> Option<DenseDtype> {
    if let DataType::Dictionary(..) = data_type {
        return Some(DenseDtype::Int64);
    }
    Some(match DenseDtype::of_leaf(data_type)? {
        DenseDtype::Datetime(DenseTimeUnit::Day) => DenseDtype::Int32,
        DenseDtype::Datetime(_) | DenseDtype::Timedelta(_) => DenseDtype::Int64,
        numeric => numeric,
    })
}

/// How a column's rows become cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnShape {
    /// `width` cells per row: 1 for scalars, `D` for `fixed_size_list<_, D>`.
    Fixed(usize),
    /// A variable number of cells per row (`list` / `large_list`).
    Ragged,
}

/// Row boundaries of a ragged piece.
#[derive(Debug, Clone)]
enum Offsets {
    Small(OffsetBuffer<i32>),
    Large(OffsetBuffer<i64>),
}

impl Offsets {
    fn range(&self, row: usize) -> (usize, usize) {
        match self {
            Offsets::Small(o) => (o[row] as usize, o[row + 1] as usize),
            Offsets::Large(o) => (o[row] as usize, o[row + 1] as usize),
        }
    }
}

/// One column of one chunk, ready to gather from.
#[derive(Debug, Clone)]
struct Piece {
    cells: Cells,
    /// First value index of row 0 (a fixed-size list's child may start later).
    base: usize,
    /// Set for ragged columns.
    offsets: Option<Offsets>,
    /// Validity of rows, when some are null.
    row_nulls: Option<NullBuffer>,
    /// Validity of values inside lists, when some are null.
    value_nulls: Option<NullBuffer>,
}

impl Piece {
    fn valid(&self, row: usize, value: usize) -> bool {
        self.row_nulls.as_ref().is_none_or(|n| n.is_valid(row))
            && self.value_nulls.as_ref().is_none_or(|n| n.is_valid(value))
    }
}

/// A column as gathers see it: its shape, its natural type, and a piece per chunk.
#[derive(Debug, Clone)]
pub struct BatchColumn {
    pub name: String,
    pub shape: ColumnShape,
    pub dtype: DenseDtype,
    pieces: Vec<Piece>,
}

fn unsupported_column(name: &str, data_type: &DataType) -> String {
    format!(
        "column '{name}' of type {} cannot be gathered into a batch: supported are numeric and boolean \
         scalars, dictionary (as int64 codes), and fixed_size_list / list of those",
        type_name(data_type)
    )
}

/// How a column of type `data_type` gathers (its shape and natural type), known from the type
/// alone: a source with no rows yet (one read piece by piece) still describes its columns.
fn column_kind(name: &str, data_type: &DataType) -> Result<(ColumnShape, DenseDtype), String> {
    let (shape, leaf) = match data_type {
        DataType::FixedSizeList(field, width) => {
            (ColumnShape::Fixed(*width as usize), field.data_type())
        }
        DataType::List(field) | DataType::LargeList(field) => {
            (ColumnShape::Ragged, field.data_type())
        }
        other => (ColumnShape::Fixed(1), other),
    };
    if shape != ColumnShape::Fixed(1) && matches!(leaf, DataType::Dictionary(..)) {
        return Err(unsupported_column(name, data_type));
    }
    let dtype = natural_dtype(leaf).ok_or_else(|| unsupported_column(name, data_type))?;
    Ok((shape, dtype))
}

/// Pieces of a column, or an error saying why the column cannot become a tensor.
fn column_pieces(
    name: &str,
    data_type: &DataType,
    arrays: &[&ArrayRef],
) -> Result<BatchColumn, String> {
    let unsupported = || unsupported_column(name, data_type);
    let (shape, dtype) = column_kind(name, data_type)?;
    let mut pieces = Vec::with_capacity(arrays.len());
    for array in arrays {
        let row_nulls = array.logical_nulls().filter(|n| n.null_count() > 0);
        let piece = match data_type {
            DataType::FixedSizeList(..) => {
                let list = array.as_fixed_size_list();
                let values = list.values();
                Piece {
                    cells: Cells::of(values.as_ref()).ok_or_else(unsupported)?,
                    base: if list.is_empty() {
                        0
                    } else {
                        list.value_offset_at(0)
                    },
                    offsets: None,
                    row_nulls,
                    value_nulls: values.logical_nulls().filter(|n| n.null_count() > 0),
                }
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                Piece {
                    cells: Cells::of(list.values().as_ref()).ok_or_else(unsupported)?,
                    base: 0,
                    offsets: Some(Offsets::Small(list.offsets().clone())),
                    row_nulls,
                    value_nulls: list.values().logical_nulls().filter(|n| n.null_count() > 0),
                }
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                Piece {
                    cells: Cells::of(list.values().as_ref()).ok_or_else(unsupported)?,
                    base: 0,
                    offsets: Some(Offsets::Large(list.offsets().clone())),
                    row_nulls,
                    value_nulls: list.values().logical_nulls().filter(|n| n.null_count() > 0),
                }
            }
            _ => Piece {
                cells: Cells::of(array.as_ref()).ok_or_else(unsupported)?,
                base: 0,
                offsets: None,
                row_nulls,
                value_nulls: None,
            },
        };
        pieces.push(piece);
    }
    Ok(BatchColumn {
        name: name.to_string(),
        shape,
        dtype,
        pieces,
    })
}

/// Output element types a batch buffer can have, as Rust types; `u8` stands for booleans.
trait OutCell: Copy + Send + Sync + 'static {}
impl OutCell for i8 {}
impl OutCell for i16 {}
impl OutCell for i32 {}
impl OutCell for i64 {}
impl OutCell for u8 {}
impl OutCell for u16 {}
impl OutCell for u32 {}
impl OutCell for u64 {}
impl OutCell for f16 {}
impl OutCell for f32 {}
impl OutCell for f64 {}

/// Where one gathered row goes and comes from: (output row, row in its chunk).
type Pair = (u32, u32);

/// Writes the cells of `pairs`' rows of `piece` into `out` (rows of `stride` cells, this
/// column's cells starting at `offset`), converting each to `D`. Null cells get `fill`, or the
/// first one is returned as an error. `run` says that `pairs` are consecutive rows going to
/// consecutive output rows (a batch in file order): then the rows are copied as one slice.
#[allow(clippy::too_many_arguments)] // a kernel's operands, passed as they are used
fn write_piece<D>(
    piece: &Piece,
    width: usize,
    pairs: &[Pair],
    out: &mut [D],
    stride: usize,
    offset: usize,
    fill: Option<D>,
    run: bool,
) -> Result<(), usize>
where
    D: OutCell,
    i8: AsPrimitive<D>,
    i16: AsPrimitive<D>,
    i32: AsPrimitive<D>,
    i64: AsPrimitive<D>,
    u8: AsPrimitive<D>,
    u16: AsPrimitive<D>,
    u32: AsPrimitive<D>,
    u64: AsPrimitive<D>,
    f16: AsPrimitive<D>,
    f32: AsPrimitive<D>,
    f64: AsPrimitive<D>,
{
    #[allow(clippy::too_many_arguments)] // a kernel's operands, passed as they are used
    fn typed<S: AsPrimitive<D>, D: OutCell>(
        values: &[S],
        piece: &Piece,
        width: usize,
        pairs: &[Pair],
        out: &mut [D],
        stride: usize,
        offset: usize,
        fill: Option<D>,
        run: bool,
    ) -> Result<(), usize> {
        let nullable = piece.row_nulls.is_some() || piece.value_nulls.is_some();
        if run && !nullable {
            let (out_row, row) = (pairs[0].0 as usize, pairs[0].1 as usize);
            let source = &values[piece.base + row * width..][..pairs.len() * width];
            let target = &mut out[out_row * stride..][..pairs.len() * stride];
            if width == stride {
                for (cell, value) in target.iter_mut().zip(source) {
                    *cell = value.as_();
                }
            } else if width == 1 {
                for (cell, value) in target[offset..].iter_mut().step_by(stride).zip(source) {
                    *cell = value.as_();
                }
            } else {
                for (target, source) in target
                    .chunks_exact_mut(stride)
                    .zip(source.chunks_exact(width))
                {
                    for (cell, value) in target[offset..offset + width].iter_mut().zip(source) {
                        *cell = value.as_();
                    }
                }
            }
            return Ok(());
        }
        if width == 1 && !nullable {
            // The common case, one cell per row, kept to one load and one store: the general
            // loop below compiles to a memcpy call per cell when `S == D`, which measured 5x
            // slower (25 us instead of 5 us per column of a 1024-row shuffled batch).
            for &(out_row, row) in pairs {
                out[out_row as usize * stride + offset] = values[piece.base + row as usize].as_();
            }
            return Ok(());
        }
        for &(out_row, row) in pairs {
            let (out_row, row) = (out_row as usize, row as usize);
            let first = piece.base + row * width;
            let target = &mut out[out_row * stride + offset..][..width];
            let source = &values[first..first + width];
            if !nullable {
                for (cell, value) in target.iter_mut().zip(source) {
                    *cell = value.as_();
                }
                continue;
            }
            for (k, (cell, value)) in target.iter_mut().zip(source).enumerate() {
                *cell = if piece.valid(row, first + k) {
                    value.as_()
                } else {
                    fill.ok_or(out_row)?
                };
            }
        }
        Ok(())
    }
    match &piece.cells {
        Cells::Bool(bits) => {
            let nullable = piece.row_nulls.is_some() || piece.value_nulls.is_some();
            for &(out_row, row) in pairs {
                let (out_row, row) = (out_row as usize, row as usize);
                let first = piece.base + row * width;
                for k in 0..width {
                    let valid = !nullable || piece.valid(row, first + k);
                    out[out_row * stride + offset + k] = if valid {
                        (bits.value(first + k) as u8).as_()
                    } else {
                        fill.ok_or(out_row)?
                    };
                }
            }
            Ok(())
        }
        Cells::I8(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::I16(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::I32(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::I64(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::U8(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::U16(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::U32(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::U64(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::F16(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::F32(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
        Cells::F64(v) => typed(v, piece, width, pairs, out, stride, offset, fill, run),
    }
}

/// Writes a ragged piece's rows left-aligned into rows of `stride` cells (already padded).
fn write_ragged<D>(
    piece: &Piece,
    pairs: &[Pair],
    out: &mut [D],
    stride: usize,
    fill: Option<D>,
) -> Result<(), usize>
where
    D: OutCell,
    i8: AsPrimitive<D>,
    i16: AsPrimitive<D>,
    i32: AsPrimitive<D>,
    i64: AsPrimitive<D>,
    u8: AsPrimitive<D>,
    u16: AsPrimitive<D>,
    u32: AsPrimitive<D>,
    u64: AsPrimitive<D>,
    f16: AsPrimitive<D>,
    f32: AsPrimitive<D>,
    f64: AsPrimitive<D>,
{
    let offsets = piece.offsets.as_ref().expect("ragged piece");
    // Each row becomes a run of cells: rewrite it as a fixed-width piece of that row's width.
    for &(out_row, row) in pairs {
        let (start, end) = offsets.range(row as usize);
        let single = Piece {
            base: start,
            row_nulls: None,
            offsets: None,
            ..piece.clone()
        };
        if piece
            .row_nulls
            .as_ref()
            .is_some_and(|n| n.is_null(row as usize))
        {
            // A null list is all padding when nulls are filled.
            if fill.is_some() {
                continue;
            }
            return Err(out_row as usize);
        }
        write_piece(
            &single,
            end - start,
            &[(out_row, 0)],
            out,
            stride,
            0,
            fill,
            false,
        )?;
    }
    Ok(())
}

/// Reinterprets a byte buffer as cells of `D`.
fn cells_mut<D: OutCell>(bytes: &mut [u8]) -> Result<&mut [D], String> {
    // SAFETY: every `OutCell` type is a plain number (or `f16`, a u16 newtype) for which every
    // bit pattern is a valid value, so viewing initialized bytes as them is sound.
    let (head, cells, tail) = unsafe { bytes.align_to_mut::<D>() };
    if !head.is_empty() || !tail.is_empty() {
        return Err(format!(
            "batch buffer is not aligned to {} bytes",
            std::mem::size_of::<D>()
        ));
    }
    Ok(cells)
}

/// Columns of a view set, prepared for gathering batches by row position.
#[derive(Debug, Clone)]
pub struct BatchSource {
    columns: Vec<BatchColumn>,
    /// First view row of each chunk (a prefix sum of selected rows), then the total.
    starts: Vec<u64>,
    selections: Vec<Option<Arc<Vec<u32>>>>,
}

/// One output buffer of a batch: which columns (indices into the source's columns) and as what.
#[derive(Debug, Clone)]
pub struct BatchGroup {
    pub columns: Vec<usize>,
    pub dtype: DenseDtype,
    /// Written in place of null cells; without it a null is an error naming the column.
    pub fill_null: Option<f64>,
}

impl BatchSource {
    /// Prepares columns `indices` of `view` (by schema index).
    pub fn new(view: &ViewSet, indices: &[usize]) -> Result<Self, String> {
        let columns = indices
            .iter()
            .map(|&i| {
                let field = view.schema.field(i);
                let arrays: Vec<&ArrayRef> = view.chunks.iter().map(|c| &c.columns[i]).collect();
                column_pieces(field.name(), field.data_type(), &arrays)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut starts = Vec::with_capacity(view.chunks.len() + 1);
        let mut total = 0u64;
        for chunk in &view.chunks {
            starts.push(total);
            total += chunk.num_selected() as u64;
        }
        starts.push(total);
        Ok(Self {
            columns,
            starts,
            selections: view.chunks.iter().map(|c| c.selection.clone()).collect(),
        })
    }

    pub fn num_rows(&self) -> u64 {
        *self.starts.last().expect("starts has the total")
    }

    /// The rows of `sources` (of the same columns) one after another, as one source: a batch
    /// that spans two shuffle windows gathers from both at once. Shares the column buffers.
    pub fn concat(sources: &[&BatchSource]) -> BatchSource {
        let mut columns: Vec<BatchColumn> = sources[0]
            .columns
            .iter()
            .map(|c| BatchColumn {
                name: c.name.clone(),
                shape: c.shape,
                dtype: c.dtype,
                pieces: Vec::new(),
            })
            .collect();
        let mut starts = Vec::new();
        let mut selections = Vec::new();
        let mut total = 0;
        for source in sources {
            for (column, part) in columns.iter_mut().zip(&source.columns) {
                column.pieces.extend(part.pieces.iter().cloned());
            }
            starts.extend(
                source.starts[..source.starts.len() - 1]
                    .iter()
                    .map(|s| s + total),
            );
            selections.extend(source.selections.iter().cloned());
            total += source.num_rows();
        }
        starts.push(total);
        BatchSource {
            columns,
            starts,
            selections,
        }
    }

    pub fn columns(&self) -> &[BatchColumn] {
        &self.columns
    }

    /// Cells per row of a group's buffer, or an error when a column cannot join it.
    pub fn group_width(&self, group: &BatchGroup) -> Result<usize, String> {
        let mut width = 0;
        for &c in &group.columns {
            let column = &self.columns[c];
            match column.shape {
                ColumnShape::Fixed(w) => width += w,
                ColumnShape::Ragged => {
                    return Err(format!(
                        "column '{}' holds lists of varying length: it is padded per batch and cannot be stacked with other columns",
                        column.name
                    ));
                }
            }
            if (group.dtype == DenseDtype::Bool) != (column.dtype == DenseDtype::Bool) {
                return Err(format!(
                    "column '{}' of {} cannot be converted to {}: booleans convert only to and from booleans; pick a numeric dtype",
                    column.name,
                    column.dtype.numpy_str(),
                    group.dtype.numpy_str()
                ));
            }
            if matches!(
                group.dtype,
                DenseDtype::Datetime(_) | DenseDtype::Timedelta(_)
            ) {
                return Err(format!(
                    "column '{}': a batch dtype must be numeric or boolean",
                    column.name
                ));
            }
        }
        Ok(width)
    }

    /// (output row, chunk row) pairs of `positions`, bucketed by chunk. `first_out` is the
    /// output row of `positions[0]`.
    fn locate(&self, positions: &[u64], first_out: usize) -> Result<Vec<Vec<Pair>>, String> {
        let total = self.num_rows();
        let chunks = self.selections.len();
        let mut buckets: Vec<Vec<Pair>> = vec![Vec::new(); chunks];
        for (k, &position) in positions.iter().enumerate() {
            if position >= total {
                return Err(format!(
                    "row {position} is out of range for a frame of {total} rows"
                ));
            }
            let chunk = if chunks == 1 {
                0
            } else {
                self.starts.partition_point(|&s| s <= position) - 1
            };
            let offset = (position - self.starts[chunk]) as usize;
            let row = match &self.selections[chunk] {
                Some(selection) => selection[offset],
                None => offset as u32,
            };
            buckets[chunk].push(((first_out + k) as u32, row));
        }
        Ok(buckets)
    }

    /// Gathers the rows at `positions` (view rows, in output order) of `group` into `out`:
    /// `positions.len()` rows of `group_width` cells of `group.dtype`, row-major. The one copy.
    pub fn gather(
        &self,
        group: &BatchGroup,
        positions: &[u64],
        out: &mut [u8],
    ) -> Result<(), String> {
        let width = self.group_width(group)?;
        let row_bytes = width * group.dtype.item_size();
        let expected = positions.len() * row_bytes;
        if out.len() < expected {
            return Err(format!(
                "batch buffer holds {} bytes, {expected} needed",
                out.len()
            ));
        }
        if row_bytes == 0 || positions.is_empty() {
            return Ok(());
        }
        let task_rows = positions
            .len()
            .div_ceil(pool().current_num_threads().max(1))
            .max(TASK_MIN_BYTES.div_ceil(row_bytes));
        let tasks: Vec<(usize, &[u64], &mut [u8])> = positions
            .chunks(task_rows)
            .zip(out[..expected].chunks_mut(task_rows * row_bytes))
            .enumerate()
            .map(|(t, (p, o))| (t * task_rows, p, o))
            .collect();
        let run = |(first, positions, out): (usize, &[u64], &mut [u8])| {
            self.gather_task(group, width, first, positions, out)
        };
        if tasks.len() == 1 {
            tasks.into_iter().try_for_each(run)
        } else {
            pool().install(|| tasks.into_par_iter().try_for_each(run))
        }
    }

    /// One task of `gather`: `out` holds the rows of `positions` only.
    fn gather_task(
        &self,
        group: &BatchGroup,
        width: usize,
        first: usize,
        positions: &[u64],
        out: &mut [u8],
    ) -> Result<(), String> {
        let buckets = self.locate(positions, 0)?;
        // Output rows of a bucket always ascend; consecutive chunk rows make it one slice. The
        // first and last rows rule out almost every shuffled bucket before the full check.
        let runs: Vec<bool> = buckets
            .iter()
            .map(|pairs| match (pairs.first(), pairs.last()) {
                (Some(first), Some(last))
                    if last.1.wrapping_sub(first.1) as usize == pairs.len() - 1 =>
                {
                    pairs
                        .windows(2)
                        .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1)
                }
                _ => false,
            })
            .collect();
        let mut offset = 0;
        for &c in &group.columns {
            let column = &self.columns[c];
            let ColumnShape::Fixed(column_width) = column.shape else {
                unreachable!("group_width rejects ragged columns")
            };
            for ((chunk, pairs), &run) in buckets.iter().enumerate().zip(&runs) {
                if pairs.is_empty() {
                    continue;
                }
                let piece = &column.pieces[chunk];
                let result =
                    dispatch_dtype(group.dtype, out, group.fill_null, |out, fill| match out {
                        TypedOut::I8(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::I16(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::I32(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::I64(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::U8(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::U16(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::U32(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::U64(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::F16(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::F32(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                        TypedOut::F64(o) => write_piece(
                            piece,
                            column_width,
                            pairs,
                            o,
                            width,
                            offset,
                            fill.map(|f| f.as_()),
                            run,
                        ),
                    })?;
                if let Err(out_row) = result {
                    return Err(null_error(
                        &column.name,
                        positions[out_row],
                        first + out_row,
                    ));
                }
            }
            offset += column_width;
        }
        Ok(())
    }

    /// A ragged column's rows at `positions`, padded with `fill_null` (or zero) to the
    /// longest of them: `(padded (rows, longest), lengths (rows,) int64)`.
    pub fn gather_ragged(
        &self,
        column: usize,
        dtype: DenseDtype,
        fill_null: Option<f64>,
        positions: &[u64],
    ) -> Result<(DenseArray, DenseArray), String> {
        let batch_column = &self.columns[column];
        if batch_column.shape != ColumnShape::Ragged {
            return Err(format!(
                "column '{}' is not a list column",
                batch_column.name
            ));
        }
        let buckets = self.locate(positions, 0)?;
        let mut lengths = vec![0i64; positions.len()];
        for (chunk, pairs) in buckets.iter().enumerate() {
            let offsets = batch_column.pieces[chunk]
                .offsets
                .as_ref()
                .expect("ragged piece");
            for &(out_row, row) in pairs {
                let (start, end) = offsets.range(row as usize);
                lengths[out_row as usize] = (end - start) as i64;
            }
        }
        let longest = lengths.iter().copied().max().unwrap_or(0) as usize;
        let bytes = positions.len() * longest * dtype.item_size();
        let mut padded = MutableBuffer::from_len_zeroed(bytes);
        // The buffer starts zeroed; other padding is written once, before any chunk's rows.
        if let Some(pad) = fill_null.filter(|&f| f != 0.0) {
            dispatch_dtype(
                dtype,
                padded.as_slice_mut(),
                Some(pad),
                |out, _| match out {
                    TypedOut::I8(o) => o.fill(pad.as_()),
                    TypedOut::I16(o) => o.fill(pad.as_()),
                    TypedOut::I32(o) => o.fill(pad.as_()),
                    TypedOut::I64(o) => o.fill(pad.as_()),
                    TypedOut::U8(o) => o.fill(pad.as_()),
                    TypedOut::U16(o) => o.fill(pad.as_()),
                    TypedOut::U32(o) => o.fill(pad.as_()),
                    TypedOut::U64(o) => o.fill(pad.as_()),
                    TypedOut::F16(o) => o.fill(pad.as_()),
                    TypedOut::F32(o) => o.fill(pad.as_()),
                    TypedOut::F64(o) => o.fill(pad.as_()),
                },
            )?;
        }
        for (chunk, pairs) in buckets.iter().enumerate() {
            if pairs.is_empty() {
                continue;
            }
            let piece = &batch_column.pieces[chunk];
            let result =
                dispatch_dtype(
                    dtype,
                    padded.as_slice_mut(),
                    fill_null,
                    |out, fill| match out {
                        TypedOut::I8(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::I16(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::I32(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::I64(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::U8(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::U16(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::U32(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::U64(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::F16(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::F32(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                        TypedOut::F64(o) => {
                            write_ragged(piece, pairs, o, longest, fill.map(|f| f.as_()))
                        }
                    },
                )?;
            if let Err(out_row) = result {
                return Err(null_error(&batch_column.name, positions[out_row], out_row));
            }
        }
        let lengths_buffer = Buffer::from_vec(lengths);
        Ok((
            DenseArray {
                buffer: padded.into(),
                dtype,
                shape: vec![positions.len(), longest],
                copy_reason: Some("list rows are padded into a new buffer".into()),
            },
            DenseArray {
                buffer: lengths_buffer,
                dtype: DenseDtype::Int64,
                shape: vec![positions.len()],
                copy_reason: Some("lengths are computed".into()),
            },
        ))
    }
}

fn null_error(column: &str, position: u64, batch_row: usize) -> String {
    format!(
        "column '{column}' has a null at row {position} (row {batch_row} of the batch); \
         pass fill_null=... to replace nulls, or filter them out with col('{column}').is_not_null()"
    )
}

/// A batch buffer seen as cells of the group's type.
enum TypedOut<'a> {
    I8(&'a mut [i8]),
    I16(&'a mut [i16]),
    I32(&'a mut [i32]),
    I64(&'a mut [i64]),
    U8(&'a mut [u8]),
    U16(&'a mut [u16]),
    U32(&'a mut [u32]),
    U64(&'a mut [u64]),
    F16(&'a mut [f16]),
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

/// Calls `write` with `out` typed as `dtype` cells (booleans as bytes).
fn dispatch_dtype<R>(
    dtype: DenseDtype,
    out: &mut [u8],
    fill: Option<f64>,
    write: impl FnOnce(TypedOut<'_>, Option<f64>) -> R,
) -> Result<R, String> {
    let typed = match dtype {
        DenseDtype::Bool | DenseDtype::UInt8 => TypedOut::U8(cells_mut(out)?),
        DenseDtype::Int8 => TypedOut::I8(cells_mut(out)?),
        DenseDtype::Int16 => TypedOut::I16(cells_mut(out)?),
        DenseDtype::Int32 => TypedOut::I32(cells_mut(out)?),
        DenseDtype::Int64 => TypedOut::I64(cells_mut(out)?),
        DenseDtype::UInt16 => TypedOut::U16(cells_mut(out)?),
        DenseDtype::UInt32 => TypedOut::U32(cells_mut(out)?),
        DenseDtype::UInt64 => TypedOut::U64(cells_mut(out)?),
        DenseDtype::Float16 => TypedOut::F16(cells_mut(out)?),
        DenseDtype::Float32 => TypedOut::F32(cells_mut(out)?),
        DenseDtype::Float64 => TypedOut::F64(cells_mut(out)?),
        other => return Err(format!("a batch cannot hold {}", other.numpy_str())),
    };
    Ok(write(typed, fill))
}
