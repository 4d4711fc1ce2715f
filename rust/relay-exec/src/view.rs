//! What executing a plan gives: a `ViewSet` of chunks, each a set of column arrays (views of a
//! mapped file where nothing was computed) with a selection vector of the rows in the result.
//! Operators take and return view sets; the helpers here read and narrow them without copying
//! column data, except where a gather is asked for.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use rayon::prelude::*;

use crate::error::ExecError;
use crate::pool::pool;

/// Arrays of equal length, and which of their rows are in the result.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub columns: Vec<ArrayRef>,
    pub len: usize,
    /// Row offsets into `columns`, in output order: ascending after a filter, any order after
    /// a sort or take. None means every row.
    pub selection: Option<Arc<Vec<u32>>>,
}

impl Chunk {
    pub fn num_selected(&self) -> usize {
        self.selection.as_ref().map_or(self.len, |s| s.len())
    }
}

/// The result of executing a plan: still views of the mapped file where nothing was computed.
#[derive(Debug, Clone)]
pub struct ViewSet {
    pub schema: SchemaRef,
    pub chunks: Vec<Chunk>,
}

impl ViewSet {
    pub fn num_rows(&self) -> usize {
        self.chunks.iter().map(Chunk::num_selected).sum()
    }

    /// Column `index` as dense arrays, one per chunk, with selections applied (a gather where
    /// there is a selection, the arrays as they are otherwise).
    pub fn column_arrays(&self, index: usize) -> Result<Vec<ArrayRef>, ExecError> {
        let arrays: Result<Vec<ArrayRef>, ArrowError> = pool().install(|| {
            self.chunks
                .par_iter()
                .map(|chunk| {
                    let column = &chunk.columns[index];
                    match &chunk.selection {
                        None => Ok(column.clone()),
                        Some(selection) => take(
                            column.as_ref(),
                            &UInt32Array::from(selection.as_ref().clone()),
                            None,
                        ),
                    }
                })
                .collect()
        });
        Ok(arrays?)
    }

    /// Rows `offset .. offset + length` of the result, clamped to it: the arrays are sliced
    /// or the selections narrowed, no column data is copied.
    pub fn slice(self, offset: usize, length: usize) -> ViewSet {
        slice(self, offset as u64, length as u64)
    }

    /// The result as record batches (gathering where there are selections).
    pub fn record_batches(&self) -> Result<Vec<RecordBatch>, ExecError> {
        let per_column: Vec<Vec<ArrayRef>> = (0..self.schema.fields().len())
            .map(|i| self.column_arrays(i))
            .collect::<Result<_, _>>()?;
        (0..self.chunks.len())
            .map(|c| {
                let arrays: Vec<ArrayRef> = per_column.iter().map(|col| col[c].clone()).collect();
                let options =
                    RecordBatchOptions::new().with_row_count(Some(self.chunks[c].num_selected()));
                Ok(RecordBatch::try_new_with_options(
                    self.schema.clone(),
                    arrays,
                    &options,
                )?)
            })
            .collect()
    }

    /// The columns at `indices` of the input, under `schema`: the same arrays, selections kept
    /// (still views, nothing gathered).
    pub(crate) fn select_columns(self, indices: &[usize], schema: SchemaRef) -> ViewSet {
        let chunks = self
            .chunks
            .into_iter()
            .map(|chunk| Chunk {
                columns: indices.iter().map(|&i| chunk.columns[i].clone()).collect(),
                ..chunk
            })
            .collect();
        ViewSet { schema, chunks }
    }
}

/// The columns `names` of `chunk`, at the rows `rows` (all rows when None), as a batch.
pub(crate) fn batch_of(
    schema: &Schema,
    chunk: &Chunk,
    names: &[String],
    rows: Option<&[u32]>,
    range: (usize, usize),
) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(names.len());
    let mut arrays = Vec::with_capacity(names.len());
    for name in names {
        let index = schema.index_of(name)?;
        fields.push(schema.field(index).clone());
        let column = &chunk.columns[index];
        arrays.push(match rows {
            Some(rows) => take(column.as_ref(), &UInt32Array::from(rows.to_vec()), None)?,
            None => column.slice(range.0, range.1),
        });
    }
    let len = rows.map_or(range.1, <[u32]>::len);
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &RecordBatchOptions::new().with_row_count(Some(len)),
    )
}

/// Rows `offset .. offset + length` of `input` (positions among its selected rows): chunks
/// are sliced, or their selections cut, never copied.
pub(crate) fn slice(input: ViewSet, offset: u64, length: u64) -> ViewSet {
    let chunks = relay_storage::slice_rows(
        input.chunks,
        offset,
        length,
        Chunk::num_selected,
        |chunk, skip, rows| match &chunk.selection {
            Some(selection) => Chunk {
                selection: Some(Arc::new(selection[skip..skip + rows].to_vec())),
                ..chunk
            },
            None => Chunk {
                columns: chunk.columns.iter().map(|c| c.slice(skip, rows)).collect(),
                len: rows,
                selection: None,
            },
        },
    );
    ViewSet {
        schema: input.schema,
        chunks,
    }
}
