//! Views of a mapped file: a projection of its columns over a contiguous range of its rows.
//!
//! Selecting columns or slicing rows only changes these numbers; column bytes are touched when a
//! view is decoded, and decoding points into the mapping wherever the file allows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};

use crate::error::{Result, StorageError};
use crate::ipc::{DecodedColumn, IpcFile};

/// A half-open range of global row ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRange {
    pub offset: u64,
    pub length: u64,
}

impl RowRange {
    /// The part of this range that starts `offset` rows in and is at most `length` long;
    /// clamped like Python slicing, so a range past the end is empty rather than an error.
    pub fn slice(self, offset: u64, length: u64) -> RowRange {
        let offset = offset.min(self.length);
        RowRange {
            offset: self.offset + offset,
            length: length.min(self.length - offset),
        }
    }

    fn end(self) -> u64 {
        self.offset + self.length
    }
}

/// The rows of `batches` taken together that lie in `rows` (ascending, disjoint ranges), as
/// slices of them (no copy), one range after another.
pub fn batches_in_ranges(
    batches: &[RecordBatch],
    rows: &[std::ops::Range<u64>],
) -> Vec<RecordBatch> {
    rows.iter()
        .flat_map(|range| slice_batches(batches, range.start, range.end - range.start))
        .collect()
}

/// Rows `offset .. offset + length` of `batches` taken together, as slices of them (no copy);
/// batches wholly before or after those rows are dropped.
pub fn slice_batches<'a>(
    batches: impl IntoIterator<Item = &'a RecordBatch>,
    offset: u64,
    length: u64,
) -> Vec<RecordBatch> {
    slice_rows(
        batches,
        offset,
        length,
        |batch| batch.num_rows(),
        |batch, skip, count| batch.slice(skip, count),
    )
}

/// Rows `offset .. offset + length` of `parts` taken together, where a part holds `rows_of(part)`
/// rows: `cut(part, first row, row count)` for each part those rows overlap, in order. Parts
/// wholly before or after the rows, and empty parts, are dropped. This is the one slicing walk
/// of record batches, executed chunks and decoded column chunks alike.
pub fn slice_rows<T, U>(
    parts: impl IntoIterator<Item = T>,
    offset: u64,
    length: u64,
    rows_of: impl Fn(&T) -> usize,
    mut cut: impl FnMut(T, usize, usize) -> U,
) -> Vec<U> {
    let mut skip = offset;
    let mut remaining = length;
    let mut sliced = Vec::new();
    for part in parts {
        let rows = rows_of(&part) as u64;
        if skip >= rows {
            skip -= rows;
            continue;
        }
        if remaining == 0 {
            break;
        }
        let count = (rows - skip).min(remaining);
        sliced.push(cut(part, skip as usize, count as usize));
        remaining -= count;
        skip = 0;
    }
    sliced
}

/// For each record batch that overlaps `rows`: (batch index, first row inside the batch, row count).
fn overlapping_batches(file: &IpcFile, rows: RowRange) -> Vec<(usize, usize, usize)> {
    let starts = file.batch_row_starts();
    let batch_count = starts.len() - 1;
    // The last batch whose first row is <= rows.offset; empty batches before it are skipped.
    let first = starts[..batch_count]
        .partition_point(|&start| start <= rows.offset)
        .saturating_sub(1);
    let mut out = Vec::new();
    for batch in first..batch_count {
        let (start, end) = (starts[batch], starts[batch + 1]);
        if start >= rows.end() {
            break;
        }
        let from = rows.offset.max(start);
        let to = rows.end().min(end);
        if to > from {
            out.push((batch, (from - start) as usize, (to - from) as usize));
        }
    }
    out
}

/// The fields `columns` (indices into `schema`, in that order) with `schema`'s metadata: the
/// schema of a view that selects them.
pub(crate) fn project_schema(schema: &Schema, columns: &[usize]) -> SchemaRef {
    let fields: Vec<FieldRef> = columns
        .iter()
        .map(|&i| schema.fields()[i].clone())
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The names of the fields `columns` (indices into `schema`), in that order.
pub(crate) fn column_names(schema: &Schema, columns: &[usize]) -> Vec<String> {
    columns
        .iter()
        .map(|&i| schema.field(i).name().clone())
        .collect()
}

/// Column names as a column-not-found error lists them: quoted, comma-separated.
pub(crate) fn quoted_names(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The indices (`index_of` finds each, or says why it cannot) of the named columns, in the
/// order given; a column named twice is an error.
pub(crate) fn select_columns<S: AsRef<str>>(
    names: &[S],
    index_of: impl Fn(&str) -> Result<usize>,
) -> Result<Arc<[usize]>> {
    let mut columns = Vec::with_capacity(names.len());
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for name in names {
        let name = name.as_ref();
        let index = index_of(name)?;
        if !seen.insert(index) {
            return Err(StorageError::OutOfRange {
                what: "selection",
                detail: format!("column {name:?} is selected twice"),
            });
        }
        columns.push(index);
    }
    Ok(columns.into())
}

/// Columns of a mapped file, selected by index, over a range of its rows.
#[derive(Debug, Clone)]
pub struct TableView {
    file: Arc<IpcFile>,
    columns: Arc<[usize]>,
    rows: RowRange,
}

impl TableView {
    /// Every column and row of `file`.
    pub fn new(file: Arc<IpcFile>) -> Self {
        let columns = (0..file.schema().fields().len()).collect();
        let rows = RowRange {
            offset: 0,
            length: file.num_rows(),
        };
        Self {
            file,
            columns,
            rows,
        }
    }

    pub fn file(&self) -> &Arc<IpcFile> {
        &self.file
    }

    pub fn rows(&self) -> RowRange {
        self.rows
    }

    pub fn num_rows(&self) -> u64 {
        self.rows.length
    }

    pub fn schema(&self) -> SchemaRef {
        project_schema(self.file.schema(), &self.columns)
    }

    pub fn column_names(&self) -> Vec<String> {
        column_names(self.file.schema(), &self.columns)
    }

    /// The named columns, in the order given. Each must exist and appear once.
    pub fn select<S: AsRef<str>>(&self, names: &[S]) -> Result<TableView> {
        Ok(TableView {
            file: self.file.clone(),
            // A set, not a search of the list per name: selecting every column of a file of
            // 40,000 stays linear.
            columns: {
                let in_view: std::collections::HashSet<usize> =
                    self.columns.iter().copied().collect();
                select_columns(names, |name| {
                    Ok(self.column_where(name, |i| in_view.contains(&i))?.column)
                })?
            },
            rows: self.rows,
        })
    }

    pub fn slice(&self, offset: u64, length: u64) -> TableView {
        TableView {
            file: self.file.clone(),
            columns: self.columns.clone(),
            rows: self.rows.slice(offset, length),
        }
    }

    /// The named column over this view's rows; the error lists the columns this view has.
    pub fn column(&self, name: &str) -> Result<ColumnView> {
        self.column_where(name, |i| self.columns.contains(&i))
    }

    /// `column`, with `in_view` saying whether a column of the file is in this view.
    fn column_where(&self, name: &str, in_view: impl Fn(usize) -> bool) -> Result<ColumnView> {
        let index = self.file.column_index(name).ok().filter(|&i| in_view(i));
        match index {
            Some(column) => Ok(ColumnView {
                file: self.file.clone(),
                column,
                rows: self.rows,
            }),
            None => Err(StorageError::ColumnNotFound {
                path: self.file.path().to_owned(),
                name: name.to_owned(),
                available: quoted_names(&self.column_names()),
            }),
        }
    }

    pub fn columns(&self) -> Vec<ColumnView> {
        self.columns
            .iter()
            .map(|&column| ColumnView {
                file: self.file.clone(),
                column,
                rows: self.rows,
            })
            .collect()
    }

    /// The record batches of the file that hold rows of this view, in order.
    pub fn batch_indices(&self) -> Vec<usize> {
        overlapping_batches(&self.file, self.rows)
            .into_iter()
            .map(|(batch, ..)| batch)
            .collect()
    }

    /// The number of this view's rows in each record batch of the file that holds some, in
    /// order: the row counts of the chunks a scan of the view yields. Read from the footer.
    pub fn batch_rows(&self) -> Vec<usize> {
        overlapping_batches(&self.file, self.rows)
            .into_iter()
            .map(|(_, _, rows)| rows)
            .collect()
    }

    /// The view as record batches, one per overlapping batch of the file, sharing the mapping.
    pub fn record_batches(&self) -> Result<Vec<RecordBatch>> {
        self.record_batches_of(&self.batch_indices())
    }

    /// The view's rows in the record batches `batches` (ascending indices into the file's
    /// batches; those that hold no row of the view are left out), one record batch each. The
    /// other batches are not decoded.
    pub fn record_batches_of(&self, batches: &[usize]) -> Result<Vec<RecordBatch>> {
        let schema = self.schema();
        let pieces: Vec<(usize, usize, usize)> = overlapping_batches(&self.file, self.rows)
            .into_iter()
            .filter(|(batch, ..)| batches.binary_search(batch).is_ok())
            .collect();
        let columns: Vec<Vec<DecodedColumn>> = self
            .columns()
            .iter()
            .map(|column| column.decode_pieces(&pieces))
            .collect::<Result<_>>()?;
        (0..pieces.len())
            .map(|piece| {
                let arrays: Vec<ArrayRef> = columns
                    .iter()
                    .map(|chunks| chunks[piece].array.clone())
                    .collect();
                let options = RecordBatchOptions::new().with_row_count(Some(pieces[piece].2));
                RecordBatch::try_new_with_options(schema.clone(), arrays, &options).map_err(|e| {
                    StorageError::CorruptFile {
                        path: self.file.path().to_owned(),
                        reason: format!("record batch {}: {e}", pieces[piece].0),
                    }
                })
            })
            .collect()
    }
}

/// One column of a mapped file over a range of its rows.
#[derive(Debug, Clone)]
pub struct ColumnView {
    file: Arc<IpcFile>,
    column: usize,
    rows: RowRange,
}

impl ColumnView {
    pub fn file(&self) -> &Arc<IpcFile> {
        &self.file
    }

    pub fn field(&self) -> &FieldRef {
        &self.file.schema().fields()[self.column]
    }

    pub fn name(&self) -> &str {
        self.field().name()
    }

    pub fn data_type(&self) -> &DataType {
        self.field().data_type()
    }

    pub fn len(&self) -> u64 {
        self.rows.length
    }

    pub fn is_empty(&self) -> bool {
        self.rows.length == 0
    }

    pub fn slice(&self, offset: u64, length: u64) -> ColumnView {
        ColumnView {
            file: self.file.clone(),
            column: self.column,
            rows: self.rows.slice(offset, length),
        }
    }

    /// The column's data, one decoded array per overlapping record batch, sliced to the view's
    /// rows. A view of zero rows still yields one empty chunk, so the type is always known.
    pub fn chunks(&self) -> Result<Vec<DecodedColumn>> {
        let pieces = overlapping_batches(&self.file, self.rows);
        if pieces.is_empty() {
            return Ok(vec![DecodedColumn {
                array: arrow::array::new_empty_array(self.data_type()),
                copy_reason: None,
            }]);
        }
        self.decode_pieces(&pieces)
    }

    /// The column's part of each (batch, first row in the batch, row count) piece.
    fn decode_pieces(&self, pieces: &[(usize, usize, usize)]) -> Result<Vec<DecodedColumn>> {
        pieces
            .iter()
            .map(|&(batch, offset, length)| {
                let decoded = self.file.decode_column(batch, self.column)?;
                let array = if offset == 0 && length == decoded.array.len() {
                    decoded.array
                } else {
                    decoded.array.slice(offset, length)
                };
                Ok(DecodedColumn { array, ..decoded })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_rows_cuts_the_parts_that_overlap() {
        let parts = [4usize, 0, 3, 5];
        let cut = |offset, length| {
            slice_rows(
                parts,
                offset,
                length,
                |&rows| rows,
                |rows, skip, count| (rows, skip, count),
            )
        };
        // Across a part boundary: the empty part is dropped.
        assert_eq!(cut(2, 4), vec![(4, 2, 2), (3, 0, 2)]);
        // Starting exactly at a boundary, to the end.
        assert_eq!(cut(4, u64::MAX), vec![(3, 0, 3), (5, 0, 5)]);
        // Nothing: past the end, or no rows.
        assert!(cut(12, 3).is_empty());
        assert!(cut(1, 0).is_empty());
    }

    #[test]
    fn row_range_slice_clamps_like_python() {
        let rows = RowRange {
            offset: 10,
            length: 100,
        };
        assert_eq!(
            rows.slice(5, 10),
            RowRange {
                offset: 15,
                length: 10
            }
        );
        assert_eq!(
            rows.slice(95, 10),
            RowRange {
                offset: 105,
                length: 5
            }
        );
        assert_eq!(
            rows.slice(500, 10),
            RowRange {
                offset: 110,
                length: 0
            }
        );
    }
}
