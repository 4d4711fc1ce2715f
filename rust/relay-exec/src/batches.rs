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
use relay_storage::{fault, type_name};

use crate::dense::{DenseArray, DenseDtype, DenseTimeUnit};
use crate::gather::interleave_rows;
use crate::pool::pool;
use crate::view::ViewSet;

/// Output bytes per gather task, at least. A training batch (1024 rows of `tab`'s nine columns,
/// 36 KiB) is one task: split in two it ran slower, since the loader's producer threads
/// already keep the cores busy (a stream's first batch is the exception: `spread`).
const TASK_MIN_BYTES: usize = 1 << 20;

/// Rows of a bucket, at least, for it to be copied as a run when they turn out consecutive. A
/// shuffled batch over a file of many record batches puts a row or two in most buckets, and
/// those are consecutive trivially: copied as runs, each would cost a copy's set-up per row.
const RUN_MIN_ROWS: usize = 16;

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

impl Cells {
    /// The cells' bytes and their type, for a copy without conversion (booleans are bits: None).
    fn plain(&self) -> Option<(&[u8], DenseDtype)> {
        Some(match self {
            Cells::Bool(_) => return None,
            Cells::I8(b) => (b.inner().as_slice(), DenseDtype::Int8),
            Cells::I16(b) => (b.inner().as_slice(), DenseDtype::Int16),
            Cells::I32(b) => (b.inner().as_slice(), DenseDtype::Int32),
            Cells::I64(b) => (b.inner().as_slice(), DenseDtype::Int64),
            Cells::U8(b) => (b.inner().as_slice(), DenseDtype::UInt8),
            Cells::U16(b) => (b.inner().as_slice(), DenseDtype::UInt16),
            Cells::U32(b) => (b.inner().as_slice(), DenseDtype::UInt32),
            Cells::U64(b) => (b.inner().as_slice(), DenseDtype::UInt64),
            Cells::F16(b) => (b.inner().as_slice(), DenseDtype::Float16),
            Cells::F32(b) => (b.inner().as_slice(), DenseDtype::Float32),
            Cells::F64(b) => (b.inner().as_slice(), DenseDtype::Float64),
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

/// Where the rows one gather takes from one chunk come from and go to.
#[derive(Debug, Clone, PartialEq)]
enum ChunkRows {
    /// `len` consecutive rows from `row` on, to consecutive output rows from `out_row` on (a
    /// batch in file order): copied as slices, with no per-row bookkeeping.
    Run { out_row: u32, row: u32, len: u32 },
    /// (output row, chunk row) pairs, output rows ascending.
    Pairs(Vec<Pair>),
}

impl ChunkRows {
    fn is_empty(&self) -> bool {
        match self {
            ChunkRows::Run { len, .. } => *len == 0,
            ChunkRows::Pairs(pairs) => pairs.is_empty(),
        }
    }

    /// The rows as pairs (a run spelled out, for the kernels that go row by row).
    fn pairs(&self) -> std::borrow::Cow<'_, [Pair]> {
        match self {
            ChunkRows::Run { out_row, row, len } => {
                (0..*len).map(|k| (out_row + k, row + k)).collect()
            }
            ChunkRows::Pairs(pairs) => std::borrow::Cow::Borrowed(pairs),
        }
    }
}

/// Writes the cells of `rows` of `piece` into `out` (rows of `stride` cells, this column's
/// cells starting at `offset`), converting each to `D`. Null cells get `fill`, or the first
/// one's output row is returned as an error.
#[allow(clippy::too_many_arguments)] // a kernel's operands, passed as they are used
fn write_piece<D>(
    piece: &Piece,
    width: usize,
    rows: &ChunkRows,
    out: &mut [D],
    stride: usize,
    offset: usize,
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
    #[allow(clippy::too_many_arguments)] // a kernel's operands, passed as they are used
    fn typed<S: AsPrimitive<D>, D: OutCell>(
        values: &[S],
        piece: &Piece,
        width: usize,
        rows: &ChunkRows,
        out: &mut [D],
        stride: usize,
        offset: usize,
        fill: Option<D>,
    ) -> Result<(), usize> {
        let nullable = piece.row_nulls.is_some() || piece.value_nulls.is_some();
        if let (&ChunkRows::Run { out_row, row, len }, false) = (rows, nullable) {
            let (out_row, row, len) = (out_row as usize, row as usize, len as usize);
            let source = &values[piece.base + row * width..][..len * width];
            let target = &mut out[out_row * stride..][..len * stride];
            if width == stride {
                for (cell, value) in target.iter_mut().zip(source) {
                    *cell = value.as_();
                }
            } else if width == 1 {
                for (row, value) in target.chunks_exact_mut(stride).zip(source) {
                    row[offset] = value.as_();
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
        let pairs = rows.pairs();
        let pairs = pairs.as_ref();
        if width == 1 && !nullable {
            // The common case, one cell per row, kept to one load and one store: the general
            // loop below compiles to a memcpy call per cell when `S == D`, several times
            // slower.
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
    if width == 0 || rows.is_empty() {
        return Ok(());
    }
    match &piece.cells {
        Cells::Bool(bits) => {
            let nullable = piece.row_nulls.is_some() || piece.value_nulls.is_some();
            for &(out_row, row) in rows.pairs().as_ref() {
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
        Cells::I8(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::I16(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::I32(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::I64(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::U8(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::U16(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::U32(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::U64(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::F16(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::F32(v) => typed(v, piece, width, rows, out, stride, offset, fill),
        Cells::F64(v) => typed(v, piece, width, rows, out, stride, offset, fill),
    }
}

/// The values of one cell type in a piece's cells.
trait CellValues: Sized {
    fn of(cells: &Cells) -> Option<&[Self]>;
}

macro_rules! cell_values {
    ($($native:ty => $variant:ident),*) => {$(
        impl CellValues for $native {
            fn of(cells: &Cells) -> Option<&[Self]> {
                match cells {
                    Cells::$variant(values) => Some(values),
                    _ => None,
                }
            }
        }
    )*};
}
cell_values!(i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16, u32 => U32,
    u64 => U64, f16 => F16, f32 => F32, f64 => F64);

/// Writes one cell per column for each `(output row, row)` pair of `flat[chunk]`, chunk by
/// chunk and row by row: cells `offset..offset + columns.len()` of each output row, `columns[c]`
/// being a column's pieces. A shuffled batch takes only a few rows from each record batch of a
/// many-batch file (Polars writes one per 122 k rows): a loop per piece and column over so few
/// rows is slow, and so is a pass per column, whose random reads then spread over the whole
/// file instead of staying within one record batch at a time. False, with nothing written,
/// unless every piece holds `S` without nulls, one cell per row.
fn write_flat<S, D>(
    columns: &[&[Piece]],
    flat: &[&[Pair]],
    out: &mut [D],
    stride: usize,
    offset: usize,
) -> bool
where
    S: CellValues + AsPrimitive<D>,
    D: OutCell,
{
    let chunks = columns.first().map_or(0, |pieces| pieces.len());
    // values[chunk * columns + c]: the values of column c in chunk `chunk`.
    let Some(values) = (0..chunks)
        .flat_map(|chunk| columns.iter().map(move |pieces| &pieces[chunk]))
        .map(|piece| {
            let values = S::of(&piece.cells).filter(|_| piece.row_nulls.is_none())?;
            values.get(piece.base..)
        })
        .collect::<Option<Vec<&[S]>>>()
    else {
        return false;
    };
    let width = columns.len();
    for (chunk, pairs) in flat.iter().enumerate() {
        let sources = &values[chunk * width..][..width];
        for &(out_row, row) in pairs.iter() {
            let cells = &mut out[out_row as usize * stride + offset..][..width];
            for (cell, source) in cells.iter_mut().zip(sources) {
                *cell = source[row as usize].as_();
            }
        }
    }
    true
}

/// `write_flat` with the cell type of the first column's first piece.
fn write_flat_any<D>(
    columns: &[&[Piece]],
    flat: &[&[Pair]],
    out: &mut [D],
    stride: usize,
    offset: usize,
) -> bool
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
    let write = match columns
        .first()
        .and_then(|pieces| pieces.first())
        .map(|p| &p.cells)
    {
        Some(Cells::I8(_)) => write_flat::<i8, D>,
        Some(Cells::I16(_)) => write_flat::<i16, D>,
        Some(Cells::I32(_)) => write_flat::<i32, D>,
        Some(Cells::I64(_)) => write_flat::<i64, D>,
        Some(Cells::U8(_)) => write_flat::<u8, D>,
        Some(Cells::U16(_)) => write_flat::<u16, D>,
        Some(Cells::U32(_)) => write_flat::<u32, D>,
        Some(Cells::U64(_)) => write_flat::<u64, D>,
        Some(Cells::F16(_)) => write_flat::<f16, D>,
        Some(Cells::F32(_)) => write_flat::<f32, D>,
        Some(Cells::F64(_)) => write_flat::<f64, D>,
        Some(Cells::Bool(_)) | None => return false,
    };
    write(columns, flat, out, stride, offset)
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
        let one_row = ChunkRows::Run {
            out_row,
            row: 0,
            len: 1,
        };
        write_piece(&single, end - start, &one_row, out, stride, 0, fill)?;
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
    /// The mapped files the column buffers lie in, checked after each gather.
    watch: fault::Watch,
}

/// One output buffer of a batch: which columns (indices into the source's columns) and as what.
#[derive(Debug, Clone)]
pub struct BatchGroup {
    pub columns: Vec<usize>,
    pub dtype: DenseDtype,
    /// Written in place of null cells; without it a null is an error naming the column.
    pub fill_null: Option<f64>,
}

/// The mapped files that columns `indices` of `view` lie in.
pub(crate) fn watch_columns(view: &ViewSet, indices: &[usize]) -> fault::Watch {
    let mut addresses = Vec::new();
    for chunk in &view.chunks {
        for &i in indices {
            relay_storage::for_each_buffer(&chunk.columns[i].to_data(), &mut |buffer| {
                addresses.push(buffer.as_ptr() as usize);
            });
        }
    }
    fault::Watch::of_addresses(addresses)
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
            watch: watch_columns(view, indices),
        })
    }

    /// `FileChanged` when a mapped file that the columns view was truncated since they were
    /// prepared: a gather from them may have read zeros in place of the file's bytes.
    pub fn check_intact(&self) -> relay_storage::Result<()> {
        self.watch.check()
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
        let mut watch = fault::Watch::default();
        let mut total = 0;
        for source in sources {
            watch.merge(&source.watch);
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
            watch,
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

    /// The chunk that view row `position` (below the total) lies in. Writers cut record
    /// batches of one size, so the proportional guess is usually right or one off; a binary
    /// search otherwise.
    fn chunk_of(&self, position: u64) -> usize {
        let chunks = self.starts.len() - 1;
        let total = self.starts[chunks];
        let holds =
            |chunk: usize| self.starts[chunk] <= position && position < self.starts[chunk + 1];
        let guess = ((u128::from(position) * chunks as u128) / u128::from(total.max(1))) as usize;
        let guess = guess.min(chunks - 1);
        if holds(guess) {
            guess
        } else if guess + 1 < chunks && holds(guess + 1) {
            guess + 1
        } else {
            self.starts.partition_point(|&s| s <= position) - 1
        }
    }

    /// Where the rows at `positions` are, chunk by chunk (an entry per chunk, empty where no
    /// position falls). Consecutive positions over an unfiltered chunk (a batch in file order)
    /// become one run without a per-row lookup, and so does a bucket whose rows turn out to be
    /// consecutive.
    fn locate(&self, positions: &[u64]) -> Result<Vec<ChunkRows>, String> {
        let total = self.num_rows();
        let chunks = self.selections.len();
        let (Some(&head), Some(&tail)) = (positions.first(), positions.last()) else {
            return Ok(vec![ChunkRows::Pairs(Vec::new()); chunks]);
        };
        let consecutive = tail.wrapping_sub(head) == positions.len() as u64 - 1
            && positions
                .iter()
                .zip(head..)
                .fold(true, |all, (&p, want)| all & (p == want));
        if consecutive && tail < total {
            let (first_chunk, last_chunk) = (self.chunk_of(head), self.chunk_of(tail));
            let unfiltered = (first_chunk..=last_chunk).all(|c| self.selections[c].is_none());
            if unfiltered {
                let mut located = vec![ChunkRows::Pairs(Vec::new()); chunks];
                for (chunk, rows) in located
                    .iter_mut()
                    .enumerate()
                    .take(last_chunk + 1)
                    .skip(first_chunk)
                {
                    let start = head.max(self.starts[chunk]);
                    let end = (tail + 1).min(self.starts[chunk + 1]);
                    *rows = ChunkRows::Run {
                        out_row: (start - head) as u32,
                        row: (start - self.starts[chunk]) as u32,
                        len: (end - start) as u32,
                    };
                }
                return Ok(located);
            }
        }
        // Two passes: each position's chunk, then buckets allocated at their final size (a
        // shuffled batch over hundreds of chunks otherwise regrows every bucket a few times).
        let mut located: Vec<(u32, u32)> = Vec::with_capacity(positions.len());
        let mut counts = vec![0usize; chunks];
        for &position in positions {
            if position >= total {
                return Err(format!(
                    "row {position} is out of range for a frame of {total} rows"
                ));
            }
            let chunk = self.chunk_of(position);
            let offset = (position - self.starts[chunk]) as usize;
            let row = match &self.selections[chunk] {
                Some(selection) => selection[offset],
                None => offset as u32,
            };
            counts[chunk] += 1;
            located.push((chunk as u32, row));
        }
        let mut buckets: Vec<Vec<Pair>> = counts.into_iter().map(Vec::with_capacity).collect();
        for (k, &(chunk, row)) in located.iter().enumerate() {
            buckets[chunk as usize].push((k as u32, row));
        }
        Ok(buckets
            .into_iter()
            .map(|pairs| {
                // Output rows of a bucket always ascend. The first and last rows rule out
                // almost every shuffled bucket before the full check.
                let run = match (pairs.first(), pairs.last()) {
                    (Some(first), Some(last))
                        if pairs.len() >= RUN_MIN_ROWS
                            && last.1.wrapping_sub(first.1) as usize == pairs.len() - 1 =>
                    {
                        pairs
                            .windows(2)
                            .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 1)
                    }
                    _ => false,
                };
                match (run, pairs.first()) {
                    (true, Some(&(out_row, row))) => ChunkRows::Run {
                        out_row,
                        row,
                        len: pairs.len() as u32,
                    },
                    _ => ChunkRows::Pairs(pairs),
                }
            })
            .collect())
    }

    /// Gathers the rows at `positions` (view rows, in output order) of `group` into `out`:
    /// `positions.len()` rows of `group_width` cells of `group.dtype`, row-major. The one copy.
    ///
    /// A large batch is split into tasks on the pool; `spread` splits even a small one across
    /// the pool's threads, for a batch someone is waiting for with nothing else in flight (a
    /// stream's first batch, whose random reads mostly fault pages in).
    pub fn gather(
        &self,
        group: &BatchGroup,
        positions: &[u64],
        out: &mut [u8],
        spread: bool,
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
        let min_task_bytes = if spread { 0 } else { TASK_MIN_BYTES };
        let task_rows = positions
            .len()
            .div_ceil(pool().current_num_threads().max(1))
            .max(min_task_bytes.div_ceil(row_bytes));
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
        let located = self.locate(positions)?;
        let copied: Vec<bool> = located
            .iter()
            .enumerate()
            .map(|(chunk, rows)| match *rows {
                ChunkRows::Run { out_row, row, len } => {
                    let rows = out_row as usize..(out_row + len) as usize;
                    self.copy_run(group, chunk, row as usize, rows, width, out)
                }
                ChunkRows::Pairs(_) => false,
            })
            .collect();
        // Rows picked at random from many chunks: each chunk's (output row, row) pairs.
        let scattered = located.iter().filter(|rows| !rows.is_empty()).count() > 1
            && located
                .iter()
                .all(|rows| matches!(rows, ChunkRows::Pairs(_)));
        let flat: Option<Vec<&[Pair]>> = scattered.then(|| {
            located
                .iter()
                .map(|rows| match rows {
                    ChunkRows::Pairs(pairs) => pairs.as_slice(),
                    ChunkRows::Run { .. } => &[],
                })
                .collect()
        });
        // With every output row's (chunk, row): the whole group row by row where its columns
        // allow (one cell each, one type, no nulls), else each such column on its own.
        let write_flat_cells = |columns: &[&[Piece]], out: &mut [u8], offset: usize| {
            let Some(flat) = &flat else {
                return Ok(false);
            };
            dispatch_dtype(group.dtype, out, None, |out, _| match out {
                TypedOut::I8(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::I16(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::I32(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::I64(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::U8(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::U16(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::U32(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::U64(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::F16(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::F32(o) => write_flat_any(columns, flat, o, width, offset),
                TypedOut::F64(o) => write_flat_any(columns, flat, o, width, offset),
            })
        };
        let group_columns: Vec<&BatchColumn> =
            group.columns.iter().map(|&c| &self.columns[c]).collect();
        if group_columns
            .iter()
            .all(|c| c.shape == ColumnShape::Fixed(1))
        {
            let pieces: Vec<&[Piece]> = group_columns.iter().map(|c| c.pieces.as_slice()).collect();
            if write_flat_cells(&pieces, out, 0)? {
                return Ok(());
            }
        }
        let mut offset = 0;
        for column in group_columns {
            let ColumnShape::Fixed(column_width) = column.shape else {
                unreachable!("group_width rejects ragged columns")
            };
            if column_width == 1 && write_flat_cells(&[&column.pieces], out, offset)? {
                offset += 1;
                continue;
            }
            let jobs: Vec<(&Piece, PieceRows<'_>)> = located
                .iter()
                .enumerate()
                .filter(|&(chunk, rows)| !rows.is_empty() && !copied[chunk])
                .map(|(chunk, rows)| {
                    let rows = PieceRows::Fixed {
                        width: column_width,
                        rows,
                        stride: width,
                        offset,
                    };
                    (&column.pieces[chunk], rows)
                })
                .collect();
            let result = write_rows(&jobs, group.dtype, out, group.fill_null)?;
            if let Err(out_row) = result {
                return Err(null_error(
                    &column.name,
                    positions[out_row],
                    first + out_row,
                ));
            }
            offset += column_width;
        }
        Ok(())
    }

    /// Copies chunk rows `row..` to output rows `out_rows` when every column of `group` is one
    /// cell per row, without nulls, of the output's type: the rows are interleaved block by
    /// block (`interleave_rows`), not written column by column over the whole run. False,
    /// with nothing written, when the group does not qualify.
    fn copy_run(
        &self,
        group: &BatchGroup,
        chunk: usize,
        row: usize,
        out_rows: std::ops::Range<usize>,
        width: usize,
        out: &mut [u8],
    ) -> bool {
        let size = group.dtype.item_size();
        let mut sources = Vec::with_capacity(group.columns.len());
        for &c in &group.columns {
            let column = &self.columns[c];
            let piece = &column.pieces[chunk];
            let nullable = piece.row_nulls.is_some() || piece.value_nulls.is_some();
            match (column.shape, piece.cells.plain()) {
                (ColumnShape::Fixed(1), Some((bytes, dtype)))
                    if !nullable && piece.base == 0 && dtype == group.dtype =>
                {
                    sources.push(&bytes[row * size..(row + out_rows.len()) * size]);
                }
                _ => return false,
            }
        }
        let out = &mut out[out_rows.start * width * size..out_rows.end * width * size];
        interleave_rows(&sources, size, out);
        true
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
        let buckets: Vec<_> = self
            .locate(positions)?
            .into_iter()
            .map(|rows| rows.pairs().into_owned())
            .collect();
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
        let jobs: Vec<(&Piece, PieceRows<'_>)> = buckets
            .iter()
            .enumerate()
            .filter(|(_, pairs)| !pairs.is_empty())
            .map(|(chunk, pairs)| {
                let rows = PieceRows::Ragged {
                    pairs,
                    stride: longest,
                };
                (&batch_column.pieces[chunk], rows)
            })
            .collect();
        let result = write_rows(&jobs, dtype, padded.as_slice_mut(), fill_null)?;
        if let Err(out_row) = result {
            return Err(null_error(&batch_column.name, positions[out_row], out_row));
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

/// Where the rows one gather takes from one chunk's piece go in a batch buffer.
enum PieceRows<'a> {
    /// Fixed-width cells, `width` per row, written from cell `offset` of output rows of
    /// `stride` cells.
    Fixed {
        width: usize,
        rows: &'a ChunkRows,
        stride: usize,
        offset: usize,
    },
    /// Ragged rows, left-aligned in output rows of `stride` cells (already padded).
    Ragged { pairs: &'a [Pair], stride: usize },
}

/// Writes the rows of each `(piece, rows)` job into `out` typed as `dtype` cells, converting
/// each value and writing `fill` for null cells. The inner error is the output row of the first
/// null met without a fill; the outer one a dtype a batch cannot hold. The dtype is dispatched
/// once for all the jobs: a shuffled batch over a file of many record batches takes a few rows
/// from each of hundreds of pieces.
fn write_rows(
    jobs: &[(&Piece, PieceRows<'_>)],
    dtype: DenseDtype,
    out: &mut [u8],
    fill: Option<f64>,
) -> Result<Result<(), usize>, String> {
    macro_rules! write {
        ($out:expr, $fill:expr) => {{
            let fill = $fill.map(|f| f.as_());
            jobs.iter().try_for_each(|(piece, rows)| match *rows {
                PieceRows::Fixed {
                    width,
                    rows,
                    stride,
                    offset,
                } => write_piece(piece, width, rows, $out, stride, offset, fill),
                PieceRows::Ragged { pairs, stride } => {
                    write_ragged(piece, pairs, $out, stride, fill)
                }
            })
        }};
    }
    dispatch_dtype(dtype, out, fill, |out, fill| match out {
        TypedOut::I8(o) => write!(o, fill),
        TypedOut::I16(o) => write!(o, fill),
        TypedOut::I32(o) => write!(o, fill),
        TypedOut::I64(o) => write!(o, fill),
        TypedOut::U8(o) => write!(o, fill),
        TypedOut::U16(o) => write!(o, fill),
        TypedOut::U32(o) => write!(o, fill),
        TypedOut::U64(o) => write!(o, fill),
        TypedOut::F16(o) => write!(o, fill),
        TypedOut::F32(o) => write!(o, fill),
        TypedOut::F64(o) => write!(o, fill),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Chunk, ViewSet};
    use arrow::array::{Float32Array, Int32Array};
    use arrow::datatypes::{Field, Schema};

    /// Three chunks of `a` (int32, nulls at multiples of 7) and `b` (float32): rows 0..10,
    /// 10..20 with only its odd rows selected, 20..35.
    fn source() -> BatchSource {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Float32, false),
        ]));
        let chunk = |rows: std::ops::Range<i32>, selection: Option<Vec<u32>>| {
            let a: Int32Array = rows.clone().map(|v| (v % 7 != 0).then_some(v)).collect();
            let b: Float32Array = rows.clone().map(|v| v as f32 + 0.5).collect();
            Chunk {
                columns: vec![Arc::new(a), Arc::new(b)],
                len: rows.len(),
                selection: selection.map(Arc::new),
            }
        };
        let view = ViewSet {
            schema,
            chunks: vec![
                chunk(0..10, None),
                chunk(10..20, Some((1..10).step_by(2).collect())),
                chunk(20..35, None),
            ],
        };
        BatchSource::new(&view, &[0, 1]).unwrap()
    }

    /// The values of view row `position`: (a, b), as the gather should write them.
    fn expected(position: u64) -> (f64, f32) {
        let value = match position {
            0..10 => position,
            10..15 => 10 + 2 * (position - 10) + 1,
            _ => position - 15 + 20,
        } as i32;
        let a = if value % 7 == 0 { -1.0 } else { value as f64 };
        (a, value as f32 + 0.5)
    }

    fn gathered(source: &BatchSource, positions: &[u64]) -> Vec<(f64, f32)> {
        let group = |c, dtype| BatchGroup {
            columns: vec![c],
            dtype,
            fill_null: Some(-1.0),
        };
        let mut a = vec![0u8; positions.len() * 8];
        let mut b = vec![0u8; positions.len() * 4];
        source
            .gather(&group(0, DenseDtype::Float64), positions, &mut a, false)
            .unwrap();
        source
            .gather(&group(1, DenseDtype::Float32), positions, &mut b, true)
            .unwrap();
        a.chunks_exact(8)
            .zip(b.chunks_exact(4))
            .map(|(a, b)| {
                (
                    f64::from_ne_bytes(a.try_into().unwrap()),
                    f32::from_ne_bytes(b.try_into().unwrap()),
                )
            })
            .collect()
    }

    #[test]
    fn consecutive_positions_are_runs_of_unfiltered_chunks() {
        let source = source();
        assert_eq!(source.num_rows(), 30);
        assert_eq!(
            source.locate(&[2, 3, 4]).unwrap(),
            vec![
                ChunkRows::Run {
                    out_row: 0,
                    row: 2,
                    len: 3
                },
                ChunkRows::Pairs(vec![]),
                ChunkRows::Pairs(vec![]),
            ]
        );
        // Through the filtered chunk: pairs there, and pairs around it too, since buckets of
        // fewer than RUN_MIN_ROWS rows are not runs.
        let located = source.locate(&(8..17).collect::<Vec<_>>()).unwrap();
        assert_eq!(located[0], ChunkRows::Pairs(vec![(0, 8), (1, 9)]));
        assert_eq!(
            located[1],
            ChunkRows::Pairs(vec![(2, 1), (3, 3), (4, 5), (5, 7), (6, 9)])
        );
        assert_eq!(located[2], ChunkRows::Pairs(vec![(7, 0), (8, 1)]));
        // Shuffled positions that happen to be consecutive inside a chunk still make a run.
        let located = source.locate(&[21, 3, 22, 4]).unwrap();
        assert_eq!(located[0], ChunkRows::Pairs(vec![(1, 3), (3, 4)]));
        assert_eq!(located[2], ChunkRows::Pairs(vec![(0, 6), (2, 7)]));
        assert!(source.locate(&[29, 30]).is_err());
    }

    #[test]
    fn runs_and_pairs_gather_the_same_values() {
        let source = source();
        let every: Vec<u64> = (0..30).collect();
        let want: Vec<_> = every.iter().map(|&p| expected(p)).collect();
        assert_eq!(gathered(&source, &every), want);
        let reversed: Vec<u64> = every.iter().rev().copied().collect();
        let want_reversed: Vec<_> = want.iter().rev().copied().collect();
        assert_eq!(gathered(&source, &reversed), want_reversed);
        for window in [0..3, 5..12, 12..14, 18..30, 9..10] {
            let positions: Vec<u64> = window.collect();
            let want: Vec<_> = positions.iter().map(|&p| expected(p)).collect();
            assert_eq!(gathered(&source, &positions), want);
        }
    }

    #[test]
    fn chunk_of_agrees_with_a_binary_search() {
        // Chunks of 10, 5 (selected) and 15 rows: the proportional guess misses some.
        let source = source();
        for position in 0..source.num_rows() {
            let want = source.starts.partition_point(|&s| s <= position) - 1;
            assert_eq!(source.chunk_of(position), want, "row {position}");
        }
    }

    #[test]
    fn rows_scattered_over_chunks_gather_in_output_order() {
        let source = source();
        let positions = [17u64, 3, 29, 11, 0, 22, 5, 14, 9];
        assert_eq!(
            gathered(&source, &positions),
            positions.iter().map(|&p| expected(p)).collect::<Vec<_>>()
        );
        // Two cells per row: the null-free column twice, converted to float64.
        let group = BatchGroup {
            columns: vec![1, 1],
            dtype: DenseDtype::Float64,
            fill_null: None,
        };
        let mut out = vec![0u8; positions.len() * 16];
        source.gather(&group, &positions, &mut out, false).unwrap();
        let cells: Vec<f64> = out
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        let want: Vec<f64> = positions
            .iter()
            .flat_map(|&p| [f64::from(expected(p).1); 2])
            .collect();
        assert_eq!(cells, want);
    }

    #[test]
    fn runs_of_plain_columns_interleave_across_blocks() {
        let columns: Vec<ArrayRef> = (0..3)
            .map(|c| {
                Arc::new(
                    (0..300)
                        .map(|r| (r * 3 + c) as f32)
                        .collect::<Float32Array>(),
                ) as ArrayRef
            })
            .collect();
        let schema = Arc::new(Schema::new(
            (0..3)
                .map(|c| Field::new(format!("c{c}"), DataType::Float32, false))
                .collect::<Vec<_>>(),
        ));
        let view = ViewSet {
            schema,
            chunks: vec![Chunk {
                columns,
                len: 300,
                selection: None,
            }],
        };
        let source = BatchSource::new(&view, &[0, 1, 2]).unwrap();
        let plain = BatchGroup {
            columns: vec![2, 0, 1],
            dtype: DenseDtype::Float32,
            fill_null: None,
        };
        let converted = BatchGroup {
            dtype: DenseDtype::Float64,
            ..plain.clone()
        };
        for positions in [(5..290).collect::<Vec<u64>>(), (0..64).collect(), vec![7]] {
            let mut out = vec![0u8; positions.len() * 12];
            source.gather(&plain, &positions, &mut out, false).unwrap();
            let mut wide = vec![0u8; positions.len() * 24];
            source
                .gather(&converted, &positions, &mut wide, true)
                .unwrap();
            let want: Vec<f32> = positions
                .iter()
                .flat_map(|&r| [2, 0, 1].map(|c| (r * 3 + c) as f32))
                .collect();
            let got: Vec<f32> = out
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
                .collect();
            let got_wide: Vec<f32> = wide
                .chunks_exact(8)
                .map(|b| f64::from_ne_bytes(b.try_into().unwrap()) as f32)
                .collect();
            assert_eq!(got, want);
            assert_eq!(got_wide, want);
        }
    }

    #[test]
    fn a_null_in_a_run_without_fill_names_its_row() {
        let source = source();
        let group = BatchGroup {
            columns: vec![0],
            dtype: DenseDtype::Int32,
            fill_null: None,
        };
        let mut out = vec![0u8; 4 * 4];
        let error = source
            .gather(&group, &[5, 6, 7, 8], &mut out, false)
            .unwrap_err();
        assert!(error.contains("'a'"), "{error}");
        assert!(error.contains('7'), "{error}");
    }
}
