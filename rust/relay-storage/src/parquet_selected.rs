//! Decoding Parquet column chunks at chosen rows only: once a filter has run on some columns of
//! a row group, the other columns it reads are decoded just at the rows that pass.
//!
//! A filter that keeps few rows (`age > 94` keeps 5% of `tab`) would otherwise decode every
//! value of the other columns to throw most away: a copy of each value out of its page (and a
//! dictionary lookup of each value in a dictionary-encoded page), fresh arrays for every batch,
//! and a gather of the survivors afterwards. Here the pages are read and decompressed as the
//! Arrow reader does it (the `parquet` crate's `SerializedPageReader`), and each selected value
//! is read straight out of its page: from the PLAIN bytes, or through its dictionary index, as
//! the RLE / bit-packed hybrid encoding lets an index be read at any position of its run.
//!
//! Only flat columns of a fixed-width type that Parquet and Arrow store alike qualify (INT32 as
//! Int32, INT64 as Int64, FLOAT as Float32, DOUBLE as Float64; nullable or not), in column
//! chunks whose encodings are PLAIN and dictionary values with RLE levels: what pyarrow,
//! Polars, DuckDB and Spark write by default (`selectable`). The Arrow reader decodes the rest.
//!
//! The file is untrusted input: run headers, bit widths, dictionary indices and page lengths are
//! checked before use, and a page that does not hold what its header says is an error.

use arrow::array::BooleanBufferBuilder;
use arrow::array::{ArrayRef, PrimitiveArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float32Type, Float64Type, Int32Type, Int64Type,
};
use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;
use std::sync::Arc;

use crate::decoded::PositionalFile;

/// The Parquet leaf of Arrow column `column` when it is a flat column whose values can be read
/// at chosen rows in row group `piece` (see the module comment), with the Arrow type it has.
pub(crate) fn selectable(
    metadata: &ArrowReaderMetadata,
    piece: usize,
    column: usize,
) -> Option<usize> {
    let schema = metadata.parquet_schema();
    let root = schema.root_schema().get_fields().get(column)?;
    if !root.is_primitive() {
        return None;
    }
    let mut leaves =
        (0..schema.num_columns()).filter(|&leaf| schema.get_column_root_idx(leaf) == column);
    let leaf = leaves.next()?;
    if leaves.next().is_some() {
        return None;
    }
    let descriptor = schema.column(leaf);
    if descriptor.max_rep_level() != 0 || descriptor.max_def_level() > 1 {
        return None;
    }
    let stored_as = match metadata.schema().field(column).data_type() {
        DataType::Int32 => PhysicalType::INT32,
        DataType::Int64 => PhysicalType::INT64,
        DataType::Float32 => PhysicalType::FLOAT,
        DataType::Float64 => PhysicalType::DOUBLE,
        _ => return None,
    };
    if descriptor.physical_type() != stored_as {
        return None;
    }
    let chunk = metadata
        .metadata()
        .row_groups()
        .get(piece)?
        .columns()
        .get(leaf)?;
    chunk
        .encodings()
        .all(|encoding| {
            matches!(
                encoding,
                Encoding::PLAIN
                    | Encoding::PLAIN_DICTIONARY
                    | Encoding::RLE_DICTIONARY
                    | Encoding::RLE
            )
        })
        .then_some(leaf)
}

/// Why a page could not be read: a message for the caller to place (file, row group, column).
#[derive(Debug)]
pub(crate) enum SelectedError {
    Parquet(ParquetError),
    Malformed(String),
}

impl From<ParquetError> for SelectedError {
    fn from(error: ParquetError) -> Self {
        SelectedError::Parquet(error)
    }
}

type Outcome<T> = std::result::Result<T, SelectedError>;

fn malformed<T>(reason: impl Into<String>) -> Outcome<T> {
    Err(SelectedError::Malformed(reason.into()))
}

/// The bytes of one column chunk, read from the file at once (one `pread`, as the Arrow reader
/// does it) and handed out to the page reader by their offsets in the file. Reading each page
/// on its own put every page in a fresh buffer: twice the page faults, and 10% slower.
struct ChunkBytes {
    start: u64,
    bytes: Bytes,
}

impl ChunkBytes {
    fn from(&self, offset: u64) -> parquet::errors::Result<Bytes> {
        offset
            .checked_sub(self.start)
            .and_then(|skip| usize::try_from(skip).ok())
            .filter(|&skip| skip <= self.bytes.len())
            .map(|skip| self.bytes.slice(skip..))
            .ok_or_else(|| {
                ParquetError::General(format!("offset {offset} lies outside the column chunk"))
            })
    }
}

impl Length for ChunkBytes {
    fn len(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

impl ChunkReader for ChunkBytes {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(self.from(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self.from(start)?;
        if bytes.len() < length {
            return Err(ParquetError::General(format!(
                "a page of {length} bytes at offset {start} runs past the end of the column chunk"
            )));
        }
        Ok(bytes.slice(..length))
    }
}

/// One column chunk, decoded at chosen rows as a caller walks through its rows in order.
pub(crate) struct SelectedColumn {
    pages: SerializedPageReader<ChunkBytes>,
    data_type: DataType,
    nullable: bool,
    /// The PLAIN values of the dictionary page, once it has been read.
    dictionary: Option<Bytes>,
    page: Option<DataPage>,
}

impl SelectedColumn {
    /// A reader of the chunk of leaf `leaf` (of `selectable`) in row group `piece`.
    pub(crate) fn new(
        file: &PositionalFile,
        metadata: &ArrowReaderMetadata,
        piece: usize,
        column: usize,
        leaf: usize,
    ) -> Outcome<SelectedColumn> {
        let row_group = metadata.metadata().row_group(piece);
        let chunk = row_group.column(leaf);
        let rows = usize::try_from(row_group.num_rows())
            .map_err(|_| SelectedError::Malformed("negative row count".into()))?;
        let (start, length) = chunk.byte_range();
        let length = usize::try_from(length)
            .map_err(|_| SelectedError::Malformed("a column chunk too large".into()))?;
        let bytes = file.get_bytes(start, length)?;
        let pages =
            SerializedPageReader::new(Arc::new(ChunkBytes { start, bytes }), chunk, rows, None)?;
        Ok(SelectedColumn {
            pages,
            data_type: metadata.schema().field(column).data_type().clone(),
            nullable: chunk.column_descr().max_def_level() == 1,
            dictionary: None,
            page: None,
        })
    }

    /// The values at `selected` (ascending offsets) among the next `rows` rows of the chunk,
    /// which the reader then moves past.
    pub(crate) fn next_rows(&mut self, rows: usize, selected: &[u32]) -> Outcome<ArrayRef> {
        Ok(match self.data_type {
            DataType::Int32 => Arc::new(self.take::<Int32Type>(rows, selected)?),
            DataType::Int64 => Arc::new(self.take::<Int64Type>(rows, selected)?),
            DataType::Float32 => Arc::new(self.take::<Float32Type>(rows, selected)?),
            DataType::Float64 => Arc::new(self.take::<Float64Type>(rows, selected)?),
            ref other => {
                return malformed(format!(
                    "values of type {other} cannot be read at chosen rows"
                ));
            }
        })
    }

    fn take<T: ArrowPrimitiveType>(
        &mut self,
        rows: usize,
        selected: &[u32],
    ) -> Outcome<PrimitiveArray<T>>
    where
        T::Native: PlainValue,
    {
        if !selected.is_sorted() {
            return malformed("rows selected out of order");
        }
        let width = T::Native::WIDTH;
        let mut values: Vec<T::Native> = Vec::with_capacity(selected.len());
        let mut validity: Option<BooleanBufferBuilder> = None;
        let (mut passed, mut next) = (0, 0);
        while passed < rows {
            let next_selected = selected.get(next).map_or(rows, |&row| row as usize);
            passed += self.skip_pages_before(next_selected.min(rows) - passed)?;
            if passed == rows {
                break;
            }
            self.load_page_with_rows()?;
            let SelectedColumn {
                page, dictionary, ..
            } = self;
            let page = page.as_mut().expect("a page with rows left");
            let take = (page.rows - page.next_row).min(rows - passed);
            let end =
                next + selected[next..].partition_point(|&row| (row as usize) < passed + take);
            // Offsets among the page's rows of the rows selected in it.
            let first = page.next_row;
            let in_page = selected[next..end]
                .iter()
                .map(|&row| first + (row as usize - passed));
            let dictionary = dictionary.as_ref();
            match page.levels {
                // No nulls in the page: a row's value is the page's value of the same offset.
                None => {
                    for row in in_page {
                        values.push(T::Native::from_le(
                            page.values.value(row, dictionary, width)?,
                        ));
                    }
                }
                Some(_) => {
                    for row in in_page {
                        let Some(index) = page.value_index(row) else {
                            values.push(T::Native::default());
                            let validity = validity.get_or_insert_with(|| {
                                let mut builder = BooleanBufferBuilder::new(selected.len());
                                builder.append_n(values.len() - 1, true);
                                builder
                            });
                            validity.append(false);
                            continue;
                        };
                        values.push(T::Native::from_le(
                            page.values.value(index, dictionary, width)?,
                        ));
                        if let Some(validity) = &mut validity {
                            validity.append(true);
                        }
                    }
                }
            }
            // Rows of pages without nulls after the first null.
            if let Some(validity) = &mut validity {
                validity.append_n(values.len() - validity.len(), true);
            }
            next = end;
            page.next_row += take;
            passed += take;
        }
        if next != selected.len() {
            return malformed(format!("row {} selected among {rows} rows", selected[next]));
        }
        let nulls = validity.map(|mut validity| NullBuffer::new(validity.finish()));
        Ok(PrimitiveArray::new(ScalarBuffer::from(values), nulls))
    }

    /// Moves past whole data pages within the next `rows` rows without decompressing them,
    /// when the current page has no rows left; returns the rows moved past. A filter that keeps
    /// few rows leaves most pages of the other columns without one.
    fn skip_pages_before(&mut self, rows: usize) -> Outcome<usize> {
        if self
            .page
            .as_ref()
            .is_some_and(|page| page.next_row < page.rows)
        {
            return Ok(0);
        }
        let mut skipped = 0;
        while let Some(next) = self.pages.peek_next_page()? {
            match next.num_levels.or(next.num_rows) {
                Some(page_rows)
                    if !next.is_dict && page_rows > 0 && skipped + page_rows <= rows =>
                {
                    self.pages.skip_next_page()?;
                    skipped += page_rows;
                }
                _ => break,
            }
        }
        Ok(skipped)
    }

    /// Reads pages until the current data page has rows left.
    fn load_page_with_rows(&mut self) -> Outcome<()> {
        while self
            .page
            .as_ref()
            .is_none_or(|page| page.next_row == page.rows)
        {
            let Some(page) = self.pages.get_next_page()? else {
                return malformed("the column chunk ends before the row group's last row");
            };
            match page {
                Page::DictionaryPage {
                    buf,
                    num_values,
                    encoding,
                    ..
                } => {
                    if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) {
                        return malformed(format!("a dictionary page encoded as {encoding}"));
                    }
                    let width = value_width(&self.data_type);
                    let needed = num_values as usize * width;
                    if buf.len() < needed {
                        return malformed(format!(
                            "a dictionary page of {num_values} values holds only {} bytes",
                            buf.len()
                        ));
                    }
                    self.dictionary = Some(buf.slice(..needed));
                }
                Page::DataPage {
                    buf,
                    num_values,
                    encoding,
                    def_level_encoding,
                    ..
                } => {
                    let rows = num_values as usize;
                    let (levels, values) = if self.nullable {
                        if def_level_encoding != Encoding::RLE {
                            return malformed(format!(
                                "definition levels encoded as {def_level_encoding}"
                            ));
                        }
                        let Some(length) = buf.get(..4) else {
                            return malformed("a data page too short for its definition levels");
                        };
                        let length =
                            u32::from_le_bytes(length.try_into().expect("four bytes")) as usize;
                        if buf.len() - 4 < length {
                            return malformed("definition levels longer than their page");
                        }
                        (Some(buf.slice(4..4 + length)), buf.slice(4 + length..))
                    } else {
                        (None, buf)
                    };
                    self.page = Some(DataPage::new(
                        rows,
                        levels,
                        values,
                        encoding,
                        &self.data_type,
                    )?);
                }
                Page::DataPageV2 {
                    buf,
                    num_values,
                    encoding,
                    def_levels_byte_len,
                    rep_levels_byte_len,
                    ..
                } => {
                    let levels_end = rep_levels_byte_len as usize + def_levels_byte_len as usize;
                    if buf.len() < levels_end {
                        return malformed("levels longer than their page");
                    }
                    let levels = self
                        .nullable
                        .then(|| buf.slice(rep_levels_byte_len as usize..levels_end));
                    self.page = Some(DataPage::new(
                        num_values as usize,
                        levels,
                        buf.slice(levels_end..),
                        encoding,
                        &self.data_type,
                    )?);
                }
            }
        }
        Ok(())
    }
}

fn value_width(data_type: &DataType) -> usize {
    data_type.primitive_width().unwrap_or(1)
}

/// The `width` bytes of value `index` in `values`, `what` naming them in the error.
fn value_bytes<'a>(values: &'a [u8], index: usize, width: usize, what: &str) -> Outcome<&'a [u8]> {
    index
        .checked_mul(width)
        .and_then(|start| values.get(start..start + width))
        .ok_or_else(|| {
            SelectedError::Malformed(format!(
                "value {index} lies beyond {what} ({} values)",
                values.len() / width
            ))
        })
}

/// A fixed-width value as Parquet's PLAIN encoding stores it: little-endian.
trait PlainValue: Copy + Default {
    const WIDTH: usize;
    /// `bytes` holds exactly `WIDTH` bytes.
    fn from_le(bytes: &[u8]) -> Self;
}

macro_rules! plain_value {
    ($($native:ty),*) => {$(
        impl PlainValue for $native {
            const WIDTH: usize = std::mem::size_of::<$native>();
            fn from_le(bytes: &[u8]) -> Self {
                <$native>::from_le_bytes(bytes.try_into().expect("a value's width"))
            }
        }
    )*};
}
plain_value!(i32, i64, f32, f64);

/// A data page being walked through: which of its rows are null, and where its values are.
struct DataPage {
    rows: usize,
    /// Rows of the page that earlier calls have moved past.
    next_row: usize,
    /// One definition level per row when some row is null; None when none is.
    levels: Option<Vec<u8>>,
    /// The first row `levels_counted` and the values (non-null rows) before it: a cursor that
    /// moves forward as ascending rows are asked for.
    levels_counted: (usize, usize),
    values: PageValues,
}

enum PageValues {
    /// The PLAIN values of the page's non-null rows.
    Plain(Bytes),
    /// The page's dictionary indices.
    Dictionary(HybridRuns),
}

impl PageValues {
    /// The `width` bytes of the page's value `index` (its PLAIN bytes, or its dictionary entry).
    fn value<'a>(
        &'a mut self,
        index: usize,
        dictionary: Option<&'a Bytes>,
        width: usize,
    ) -> Outcome<&'a [u8]> {
        match self {
            PageValues::Plain(plain) => value_bytes(plain, index, width, "PLAIN values"),
            PageValues::Dictionary(keys) => {
                let key = keys.get(index)? as usize;
                let dictionary = dictionary.ok_or_else(|| {
                    SelectedError::Malformed(
                        "a dictionary-encoded page without a dictionary page".into(),
                    )
                })?;
                value_bytes(dictionary, key, width, "the dictionary")
            }
        }
    }
}

impl DataPage {
    fn new(
        rows: usize,
        levels: Option<Bytes>,
        values: Bytes,
        encoding: Encoding,
        data_type: &DataType,
    ) -> Outcome<DataPage> {
        let levels = match levels {
            Some(levels) => {
                let runs = HybridRuns::new(levels, 1, rows)?;
                (!runs.all_equal_to(1)).then(|| runs.decode_all())
            }
            None => None,
        };
        let present = levels.as_ref().map_or(rows, |levels| {
            levels.iter().filter(|&&level| level == 1).count()
        });
        let values = match encoding {
            Encoding::PLAIN => {
                let needed = present * value_width(data_type);
                if values.len() < needed {
                    return malformed(format!(
                        "a page of {present} PLAIN values holds only {} bytes",
                        values.len()
                    ));
                }
                PageValues::Plain(values.slice(..needed))
            }
            Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
                let Some(&bit_width) = values.first() else {
                    return malformed("a dictionary-encoded page without its bit width");
                };
                if bit_width > 32 {
                    return malformed(format!("dictionary indices of {bit_width} bits"));
                }
                PageValues::Dictionary(HybridRuns::new(values.slice(1..), bit_width, present)?)
            }
            other => {
                return malformed(format!(
                    "a data page encoded as {other}, which the column chunk does not list"
                ));
            }
        };
        Ok(DataPage {
            rows,
            next_row: 0,
            levels,
            levels_counted: (0, 0),
            values,
        })
    }

    /// The index among the page's values of row `row`, None when the row is null. Rows are
    /// asked for in ascending order.
    fn value_index(&mut self, row: usize) -> Option<usize> {
        let Some(levels) = &self.levels else {
            return Some(row);
        };
        let (counted_to, values_before) = self.levels_counted;
        let values = values_before
            + levels[counted_to..row]
                .iter()
                .filter(|&&level| level == 1)
                .count();
        self.levels_counted = (row, values);
        (levels[row] == 1).then_some(values)
    }
}

/// The runs of a stretch of the RLE / bit-packed hybrid encoding, so that the value at any
/// position can be read: a repeated run holds one value, a bit-packed run `bit_width` bits per
/// value from a known byte.
struct HybridRuns {
    data: Bytes,
    bit_width: u8,
    runs: Vec<Run>,
    /// The run the last `get` read from (positions are asked for in ascending order).
    current: usize,
}

struct Run {
    /// Position of the run's first value in the stretch.
    first: usize,
    len: usize,
    kind: RunKind,
}

enum RunKind {
    Repeated(u32),
    /// Values packed from this byte of the data on.
    Packed(usize),
}

impl HybridRuns {
    /// The runs holding the first `count` values of `data`.
    fn new(data: Bytes, bit_width: u8, count: usize) -> Outcome<HybridRuns> {
        let mut runs = Vec::new();
        let (mut position, mut at) = (0, 0);
        while position < count {
            let header = read_uleb128(&data, &mut at)?;
            if header & 1 == 1 {
                let groups = usize::try_from(header >> 1)
                    .map_err(|_| SelectedError::Malformed("a run too long".into()))?;
                let len = groups.saturating_mul(8).min(count - position);
                if len == 0 {
                    return malformed("an empty bit-packed run");
                }
                // The last run may stop at its last value rather than fill its last group.
                let needed = (len * bit_width as usize).div_ceil(8);
                if data.len() - at < needed {
                    return malformed("a bit-packed run longer than its page");
                }
                runs.push(Run {
                    first: position,
                    len,
                    kind: RunKind::Packed(at),
                });
                at = at
                    .saturating_add(groups.saturating_mul(bit_width as usize))
                    .min(data.len());
                position += len;
            } else {
                let len = usize::try_from(header >> 1)
                    .map_err(|_| SelectedError::Malformed("a run too long".into()))?;
                if len == 0 {
                    return malformed("an empty repeated run");
                }
                let width = (bit_width as usize).div_ceil(8);
                let Some(bytes) = data.get(at..at + width) else {
                    return malformed("a repeated run longer than its page");
                };
                let mut value = [0u8; 4];
                value[..width].copy_from_slice(bytes);
                runs.push(Run {
                    first: position,
                    len: len.min(count - position),
                    kind: RunKind::Repeated(u32::from_le_bytes(value)),
                });
                at += width;
                position += len.min(count - position);
            }
        }
        Ok(HybridRuns {
            data,
            bit_width,
            runs,
            current: 0,
        })
    }

    /// Whether every value is `value`.
    fn all_equal_to(&self, value: u32) -> bool {
        self.runs.iter().all(|run| match run.kind {
            RunKind::Repeated(repeated) => repeated == value,
            RunKind::Packed(_) => false,
        })
    }

    /// Every value, as bytes (levels of at most 8 bits).
    fn decode_all(&self) -> Vec<u8> {
        let mut values = Vec::with_capacity(self.runs.last().map_or(0, |run| run.first + run.len));
        for run in &self.runs {
            match run.kind {
                RunKind::Repeated(value) => {
                    values.extend(std::iter::repeat_n(value as u8, run.len))
                }
                RunKind::Packed(start) => {
                    values.extend((0..run.len).map(|offset| self.packed(start, offset) as u8))
                }
            }
        }
        values
    }

    /// The value at `position` (ascending from one call to the next).
    fn get(&mut self, position: usize) -> Outcome<u32> {
        while let Some(run) = self.runs.get(self.current) {
            if position < run.first + run.len {
                break;
            }
            self.current += 1;
        }
        let Some(run) = self
            .runs
            .get(self.current)
            .filter(|run| position >= run.first)
        else {
            return malformed(format!(
                "value {position} lies beyond the page's dictionary indices"
            ));
        };
        Ok(match run.kind {
            RunKind::Repeated(value) => value,
            RunKind::Packed(start) => self.packed(start, position - run.first),
        })
    }

    /// Value `offset` of the bit-packed run whose bytes start at `start` (checked in `new` to
    /// lie within the data).
    fn packed(&self, start: usize, offset: usize) -> u32 {
        let bit = offset * self.bit_width as usize;
        let from = start + bit / 8;
        // Up to 8 bytes from `from`, fewer at the end of the data (zeros after it).
        let mut word = [0u8; 8];
        let available = &self.data[from.min(self.data.len())..];
        let take = available.len().min(8);
        word[..take].copy_from_slice(&available[..take]);
        let mask = if self.bit_width == 32 {
            u32::MAX as u64
        } else {
            (1u64 << self.bit_width) - 1
        };
        ((u64::from_le_bytes(word) >> (bit % 8)) & mask) as u32
    }
}

/// An unsigned LEB128 number at `*at` of `data`, moving `*at` past it.
fn read_uleb128(data: &[u8], at: &mut usize) -> Outcome<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = data.get(*at) else {
            return malformed("a run header beyond the end of its page");
        };
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    malformed("a run header longer than 64 bits")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoded::DecodedFile;
    use crate::parquet::ParquetFile;
    use arrow::array::{
        Array, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
        UInt32Array,
    };
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use parquet::schema::types::ColumnPath;

    const ROWS: usize = 3000;

    /// A small deterministic generator (the tests need no seeded crate for this).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
    }

    /// Four selectable columns (required and nullable; some with few distinct values, so that
    /// dictionaries hold, some with many, so that dictionaries overflow into PLAIN pages) and
    /// a string column, which is not selectable.
    fn sample() -> RecordBatch {
        let mut random = Lcg(7);
        let few: Vec<i32> = (0..ROWS)
            .map(|_| (random.next() % 50) as i32 - 25)
            .collect();
        let many: Vec<Option<i64>> = (0..ROWS)
            .map(|_| (!random.next().is_multiple_of(7)).then(|| random.next() as i64 - (1 << 30)))
            .collect();
        let floats: Vec<Option<f32>> = (0..ROWS)
            .map(|i| {
                (i % 11 != 3 && !(1200..1500).contains(&i)).then(|| random.next() as f32 / 7.0)
            })
            .collect();
        let doubles: Vec<f64> = (0..ROWS)
            .map(|i| {
                if i < 2000 {
                    (i % 13) as f64
                } else {
                    random.next() as f64 / 3.0
                }
            })
            .collect();
        let names: Vec<String> = (0..ROWS).map(|i| format!("n{}", i % 17)).collect();
        let schema = Schema::new(vec![
            Field::new("few", DataType::Int32, false),
            Field::new("many", DataType::Int64, true),
            Field::new("floats", DataType::Float32, true),
            Field::new("doubles", DataType::Float64, false),
            Field::new("name", DataType::Utf8, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(few)),
                Arc::new(Int64Array::from(many)),
                Arc::new(Float32Array::from(floats)),
                Arc::new(Float64Array::from(doubles)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn write(path: &std::path::Path, properties: WriterProperties) -> RecordBatch {
        let batch = sample();
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(path).unwrap(),
            batch.schema(),
            Some(properties),
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        batch
    }

    fn writer_settings() -> Vec<(&'static str, WriterProperties)> {
        let base = || {
            WriterProperties::builder()
                .set_max_row_group_row_count(Some(1100))
                .set_data_page_row_count_limit(128)
                .set_write_batch_size(64)
                .set_dictionary_page_size_limit(256)
        };
        vec![
            (
                "v1 plain",
                base().set_compression(Compression::UNCOMPRESSED).build(),
            ),
            (
                "v2 snappy",
                base()
                    .set_writer_version(WriterVersion::PARQUET_2_0)
                    .set_compression(Compression::SNAPPY)
                    .build(),
            ),
            (
                "v1 zstd",
                base()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build(),
            ),
            (
                "no dictionary",
                base()
                    .set_dictionary_enabled(false)
                    .set_writer_version(WriterVersion::PARQUET_2_0)
                    .build(),
            ),
            (
                "large dictionaries",
                base()
                    .set_dictionary_page_size_limit(1 << 20)
                    .set_compression(Compression::LZ4_RAW)
                    .build(),
            ),
        ]
    }

    /// For each of `writer_settings`: its name, the batch written, and the file opened.
    fn files_of_each_writer_setting() -> Vec<(&'static str, RecordBatch, Arc<ParquetFile>)> {
        let dir = crate::test_support::temp_dir("relay-parquet-selected");
        writer_settings()
            .into_iter()
            .map(|(name, properties)| {
                let path = dir.join(format!("{}.parquet", name.replace(' ', "_")));
                let written = write(&path, properties);
                (name, written, ParquetFile::open(&path).unwrap())
            })
            .collect()
    }

    #[test]
    fn chosen_rows_match_a_whole_decode() {
        for (name, written, file) in files_of_each_writer_setting() {
            let mut random = Lcg(name.len() as u64);
            let mut row_group_start = 0;
            for piece in 0..file.num_pieces() {
                let columns = file.selectable_columns(piece, &[0, 1, 2, 3, 4]);
                // Writers of format 2 pages fall back from an overflowing dictionary to
                // DELTA_BINARY_PACKED for integers, which is decoded whole.
                match name {
                    "no dictionary" => assert_eq!(columns, [2, 3], "{name}"),
                    "v2 snappy" => assert!(
                        columns.contains(&0) && columns.contains(&2) && !columns.contains(&4),
                        "{name}: {columns:?}"
                    ),
                    _ => assert_eq!(columns, [0, 1, 2, 3], "{name}"),
                }
                let rows = file.piece_rows(piece).unwrap() as usize;
                let mut readers: Vec<_> = columns
                    .iter()
                    .map(|&column| file.selected_column(piece, column).unwrap())
                    .collect();
                let mut at = 0;
                // Batches of varying sizes: none, some, every row selected.
                for (batch, size) in [0usize, 1, 250, 77, 500, 1100, 700]
                    .into_iter()
                    .cycle()
                    .enumerate()
                {
                    let size = size.min(rows - at);
                    // A tenth, a half, every row, or only the last (the pages before it are
                    // skipped undecoded).
                    let selected: Vec<u32> = (0..size as u32)
                        .filter(|&row| match batch % 4 {
                            0 => random.next().is_multiple_of(10),
                            1 => random.next().is_multiple_of(2),
                            2 => true,
                            _ => row + 1 == size as u32,
                        })
                        .collect();
                    let values: Vec<_> = readers
                        .iter_mut()
                        .map(|reader| reader.next_rows(size, &selected).unwrap())
                        .collect();
                    let indices = UInt32Array::from(
                        selected
                            .iter()
                            .map(|&row| row + (row_group_start + at) as u32)
                            .collect::<Vec<_>>(),
                    );
                    for (position, &column) in columns.iter().enumerate() {
                        let expected =
                            arrow::compute::take(written.column(column).as_ref(), &indices, None)
                                .unwrap();
                        assert_eq!(
                            &values[position], &expected,
                            "{name}, row group {piece}, column {column}, rows {at}.."
                        );
                    }
                    at += size;
                    if at == rows {
                        break;
                    }
                }
                for reader in &mut readers {
                    assert!(
                        reader.next_rows(1, &[0]).is_err(),
                        "{name}: rows past the row group's end"
                    );
                }
                row_group_start += rows;
            }
        }
    }

    #[test]
    fn a_single_row_reads_right_wherever_it_lies() {
        // Every page before the row is skipped undecoded; rows at and around page ends.
        for (name, written, file) in files_of_each_writer_setting() {
            let columns = file.selectable_columns(0, &[0, 1, 2, 3]);
            let rows = file.piece_rows(0).unwrap() as u32;
            for row in (0..rows).filter(|row| row % 64 <= 1 || row % 64 == 63 || row % 29 == 0) {
                for &column in &columns {
                    let values = file
                        .selected_column(0, column)
                        .unwrap()
                        .next_rows(rows as usize, &[row])
                        .unwrap();
                    let expected = written.column(column).slice(row as usize, 1);
                    assert_eq!(&values, &expected, "{name}, column {column}, row {row}");
                }
            }
        }
    }

    #[test]
    fn other_encodings_and_types_are_not_selectable() {
        let dir = crate::test_support::temp_dir("relay-parquet-selected");
        let path = dir.join("delta.parquet");
        let properties = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_column_encoding(ColumnPath::from("few"), Encoding::DELTA_BINARY_PACKED)
            .set_column_encoding(ColumnPath::from("floats"), Encoding::BYTE_STREAM_SPLIT)
            .build();
        write(&path, properties);
        let file = ParquetFile::open(&path).unwrap();
        assert_eq!(file.selectable_columns(0, &[0, 1, 2, 3, 4]), [1, 3]);
        assert!(matches!(
            file.selected_column(0, 0),
            Err(crate::StorageError::Unsupported { .. })
        ));
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let dir = crate::test_support::temp_dir("relay-parquet-selected");
        let path = dir.join("clean.parquet");
        let properties = WriterProperties::builder()
            .set_data_page_row_count_limit(128)
            .set_write_batch_size(64)
            .set_compression(Compression::UNCOMPRESSED)
            .build();
        write(&path, properties);
        let clean = std::fs::read(&path).unwrap();
        let mut random = Lcg(3);
        let mut failures = 0;
        for attempt in 0..200 {
            let mut bytes = clean.clone();
            // Damage a few bytes of the column data, past the leading magic, before the footer.
            for _ in 0..4 {
                let at = 4 + (random.next() as usize) % (bytes.len() / 2);
                bytes[at] = random.next() as u8;
            }
            let damaged = dir.join(format!("damaged{attempt}.parquet"));
            std::fs::write(&damaged, &bytes).unwrap();
            let Ok(file) = ParquetFile::open(&damaged) else {
                continue;
            };
            let every: Vec<u32> = (0..1000).collect();
            let mut detected = false;
            for column in 0..4 {
                let Ok(mut reader) = file.selected_column(0, column) else {
                    detected = true;
                    continue;
                };
                match reader.next_rows(1000, &every) {
                    Ok(values) => assert_eq!(values.len(), 1000),
                    Err(error) => {
                        detected = true;
                        assert!(
                            !error.to_string().contains("the decoder failed"),
                            "a panic: {error}"
                        );
                    }
                }
            }
            failures += usize::from(detected);
        }
        assert!(failures > 0, "some damage is detected");
    }

    /// `values` in the hybrid encoding: a bit-packed run of whole groups of 8, then a repeated
    /// run of `repeat` copies of `repeated`.
    fn encode(values: &[u32], bit_width: u8, repeated: u32, repeat: usize) -> Vec<u8> {
        assert_eq!(values.len() % 8, 0);
        let mut out = vec![((values.len() / 8) << 1 | 1) as u8];
        let mut bits = 0u128;
        let mut filled = 0;
        for &value in values {
            bits |= (value as u128) << filled;
            filled += bit_width as usize;
            while filled >= 8 {
                out.push(bits as u8);
                bits >>= 8;
                filled -= 8;
            }
        }
        assert_eq!(filled, 0, "whole groups fill whole bytes");
        out.push((repeat << 1) as u8);
        out.extend_from_slice(&repeated.to_le_bytes()[..(bit_width as usize).div_ceil(8)]);
        out
    }

    #[test]
    fn packed_and_repeated_values_read_at_any_position() {
        for bit_width in [1u8, 3, 7, 8, 13, 18, 31, 32] {
            let mask = if bit_width == 32 {
                u32::MAX
            } else {
                (1 << bit_width) - 1
            };
            let values: Vec<u32> = (0..64u32)
                .map(|i| i.wrapping_mul(2_654_435_761) & mask)
                .collect();
            let data = encode(&values, bit_width, mask, 5);
            let mut runs = HybridRuns::new(Bytes::from(data), bit_width, 69).unwrap();
            for (position, &value) in values.iter().enumerate().step_by(3) {
                assert_eq!(
                    runs.get(position).unwrap(),
                    value,
                    "bit width {bit_width}, position {position}"
                );
            }
            assert_eq!(runs.get(66).unwrap(), mask);
            assert!(runs.get(69).is_err());
        }
    }

    #[test]
    fn levels_decode_whole_and_detect_all_present() {
        let present = HybridRuns::new(Bytes::from(vec![20u8 << 1, 1]), 1, 20).unwrap();
        assert!(present.all_equal_to(1));
        let levels: Vec<u32> = (0..16).map(|i| u32::from(i % 3 != 0)).collect();
        let mixed = HybridRuns::new(Bytes::from(encode(&levels, 1, 0, 2)), 1, 18).unwrap();
        assert!(!mixed.all_equal_to(1));
        let decoded = mixed.decode_all();
        assert_eq!(
            decoded[..16],
            levels.iter().map(|&l| l as u8).collect::<Vec<_>>()[..]
        );
        assert_eq!(decoded[16..], [0, 0]);
    }

    #[test]
    fn damaged_runs_are_errors() {
        // Header says 2 groups of 3-bit values (6 bytes), 2 bytes follow.
        assert!(HybridRuns::new(Bytes::from(vec![(2 << 1) | 1, 0xff, 0xff]), 3, 16).is_err());
        // A repeated run's value is missing.
        assert!(HybridRuns::new(Bytes::from(vec![4 << 1]), 8, 4).is_err());
        // No runs at all where values are expected.
        assert!(HybridRuns::new(Bytes::new(), 4, 1).is_err());
        // An unterminated header.
        assert!(HybridRuns::new(Bytes::from(vec![0xff; 12]), 4, 1).is_err());
        // Empty runs would never end.
        assert!(HybridRuns::new(Bytes::from(vec![0, 0, 0]), 8, 1).is_err());
        assert!(HybridRuns::new(Bytes::from(vec![1]), 8, 1).is_err());
    }
}
