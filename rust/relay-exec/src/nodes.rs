//! The operators of the plan nodes behind `take` / `sample`, `collect`, `view` and
//! `with_column(array)`: none of them copies column data.
//!
//! - `Take` maps each index to (chunk, row) through the prefix sums of the chunks' selected row
//!   counts (a binary search per index) and keeps the chunks' columns, with the rows as a
//!   selection. Consecutive indices in one chunk share an output chunk, so a take in any order
//!   (a shuffle) costs one selection entry per row and one chunk per run of one input chunk;
//!   such a selection goes backwards, which the operators above (filter, project, slice,
//!   gather) handle: they read a selection in order and never search it.
//! - `Memory` hands out its record batches as chunks.
//! - `Reinterpret` rebuilds the named arrays' `ArrayData` with the new type over the same buffers.
//! - `AttachColumns` slices each external array along the input's chunks.
//!
//! `collect_batches` is the one copy of `collect()`: the rows of an executed view gathered into
//! record batches held in memory, which a `Memory` node then serves.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayData, ArrayRef, RecordBatch, RecordBatchOptions, make_array, new_empty_array,
};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use rayon::prelude::*;
use relay_plan::PlanError;
use relay_plan::plan::AttachedColumn;

use crate::error::ExecError;
use crate::gather::{MemoryLayout, gather_fixed_width};
use crate::pool::pool;
use crate::view::{Chunk, ViewSet};

/// Indices located by one task when a take is large enough to split.
const TAKE_TASK_INDICES: usize = 64 * 1024;

/// The rows of `input` at `indices` (positions among its selected rows), in order.
pub fn take(input: ViewSet, indices: &[u64]) -> Result<ViewSet, ExecError> {
    // starts[c]: position of chunk c's first selected row.
    let mut starts = Vec::with_capacity(input.chunks.len());
    let mut total = 0u64;
    for chunk in &input.chunks {
        starts.push(total);
        total += chunk.num_selected() as u64;
    }
    if let Some(&index) = indices.iter().find(|&&i| i >= total) {
        return Err(ExecError::Plan(PlanError::Invalid(format!(
            "take(): index {index} is out of range for {total} rows"
        ))));
    }
    if let Some(chunk) = input
        .chunks
        .iter()
        .find(|c| c.selection.is_none() && c.len > u32::MAX as usize)
    {
        return Err(ExecError::Arrow(ArrowError::InvalidArgumentError(format!(
            "a record batch of {} rows is too large to take rows from (at most {} rows)",
            chunk.len,
            u32::MAX
        ))));
    }
    let chunks = &input.chunks;
    // The row inside chunk `c` at selected position `offset`.
    let row_of = |c: usize, offset: u64| match &chunks[c].selection {
        Some(selection) => selection[offset as usize],
        None => offset as u32,
    };
    // (chunk, row) of every index. One chunk (the common case: a file of one record batch)
    // needs no search; otherwise the last chunk starting at or before the index holds it
    // (empty chunks share their start with the next chunk, so the search skips them).
    let located: Vec<(u32, u32)> = pool().install(|| {
        let locate = |&index: &u64| {
            let c = if starts.len() == 1 {
                0
            } else {
                starts.partition_point(|&start| start <= index) - 1
            };
            (c as u32, row_of(c, index - starts[c]))
        };
        if indices.len() > TAKE_TASK_INDICES {
            indices
                .par_iter()
                .with_min_len(TAKE_TASK_INDICES)
                .map(locate)
                .collect()
        } else {
            indices.iter().map(locate).collect()
        }
    });

    // Consecutive indices of one chunk share an output chunk.
    let mut output = Vec::new();
    let mut begin = 0;
    while begin < located.len() {
        let c = located[begin].0;
        let end = begin
            + located[begin..]
                .iter()
                .take_while(|&&(chunk, _)| chunk == c)
                .count();
        let source = &chunks[c as usize];
        output.push(Chunk {
            columns: source.columns.clone(),
            len: source.len,
            selection: Some(Arc::new(
                located[begin..end].iter().map(|&(_, row)| row).collect(),
            )),
        });
        begin = end;
    }
    Ok(ViewSet {
        schema: input.schema,
        chunks: output,
    })
}

/// Record batches as chunks without selections (their arrays are shared, not copied).
pub fn memory(schema: SchemaRef, batches: &[RecordBatch]) -> ViewSet {
    let chunks = batches
        .iter()
        .map(|batch| Chunk {
            columns: batch.columns().to_vec(),
            len: batch.num_rows(),
            selection: None,
        })
        .collect();
    ViewSet { schema, chunks }
}

/// `array` with its bits read as `to`, a type of the same width (for a fixed-size list, the
/// list type with the new item type): the same buffers, offset, length and nulls.
pub fn reinterpret_array(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    let data = array.to_data();
    let data = match to {
        DataType::FixedSizeList(item, _) => {
            let child = data.child_data().first().cloned().ok_or_else(|| {
                ArrowError::InvalidArgumentError(format!(
                    "cannot view {} as {to}: it has no items",
                    array.data_type()
                ))
            })?;
            let child = child
                .into_builder()
                .data_type(item.data_type().clone())
                .build()?;
            data.into_builder()
                .data_type(to.clone())
                .child_data(vec![child])
                .build()?
        }
        _ => data.into_builder().data_type(to.clone()).build()?,
    };
    Ok(make_array(data))
}

/// The named columns of `input` read as their new types; selections are kept.
pub(crate) fn reinterpret(
    input: ViewSet,
    columns: &[(String, DataType)],
    schema: SchemaRef,
) -> Result<ViewSet, ExecError> {
    let targets: Vec<(usize, &DataType)> = columns
        .iter()
        .map(|(name, to)| Ok((input.schema.index_of(name)?, to)))
        .collect::<Result<_, ArrowError>>()?;
    let chunks = input
        .chunks
        .into_iter()
        .map(|mut chunk| {
            for &(index, to) in &targets {
                chunk.columns[index] = reinterpret_array(&chunk.columns[index], to)?;
            }
            Ok(chunk)
        })
        .collect::<Result<_, ArrowError>>()?;
    Ok(ViewSet { schema, chunks })
}

/// `input` (chunks without selections, in row order) with the attached arrays sliced along its
/// chunks, in the columns `schema` names.
pub(crate) fn attach(
    input: ViewSet,
    columns: &[AttachedColumn],
    schema: SchemaRef,
) -> Result<ViewSet, ExecError> {
    if input.chunks.iter().any(|c| c.selection.is_some()) {
        return Err(ExecError::Plan(PlanError::Invalid(
            "attached arrays need the input's rows in file order, without a selection".into(),
        )));
    }
    enum Source<'a> {
        Input(usize),
        Attached(&'a ArrayRef),
    }
    let sources: Vec<Source<'_>> = schema
        .fields()
        .iter()
        .map(
            |field| match columns.iter().find(|c| &c.name == field.name()) {
                Some(column) => Ok(Source::Attached(&column.array)),
                None => Ok(Source::Input(input.schema.index_of(field.name())?)),
            },
        )
        .collect::<Result<_, ArrowError>>()?;
    let mut offset = 0;
    let mut chunks = Vec::with_capacity(input.chunks.len());
    for chunk in input.chunks {
        let columns = sources
            .iter()
            .map(|source| match source {
                Source::Input(index) => chunk.columns[*index].clone(),
                Source::Attached(array) => array.slice(offset, chunk.len),
            })
            .collect();
        offset += chunk.len;
        chunks.push(Chunk {
            columns,
            len: chunk.len,
            selection: None,
        });
    }
    Ok(ViewSet { schema, chunks })
}

/// The rows of `view` as record batches held in memory, for `collect()`.
///
/// Without selections the chunks' arrays are kept as they are: views of a mapped file stay
/// views (copying them would only duplicate the page cache) and computed arrays are already in
/// memory. Otherwise every column is gathered once into one array: fixed-width columns without
/// nulls by the parallel gather straight into the result, the others by arrow's `take` (and a
/// concatenation when the rows come from several chunks).
pub fn collect_batches(view: &ViewSet) -> Result<Vec<RecordBatch>, ExecError> {
    if view.chunks.iter().all(|chunk| chunk.selection.is_none()) {
        return view.record_batches();
    }
    let rows = view.num_rows();
    let columns = (0..view.schema.fields().len())
        .map(|index| gather_column(view, index, rows))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(vec![RecordBatch::try_new_with_options(
        view.schema.clone(),
        columns,
        &options,
    )?])
}

/// Column `index` of `view` (`rows` selected rows) as one array.
fn gather_column(view: &ViewSet, index: usize, rows: usize) -> Result<ArrayRef, ExecError> {
    let data_type = view.schema.field(index).data_type();
    let item_type = match data_type {
        DataType::FixedSizeList(item, _) => item.data_type(),
        other => other,
    };
    // The gather handles plain integers and floats (and fixed-size lists of them) only.
    if (item_type.is_integer() || item_type.is_floating())
        && let Some(dense) =
            gather_fixed_width(view, &[index], MemoryLayout::C).map_err(ArrowError::ComputeError)?
    {
        let data = match data_type {
            DataType::FixedSizeList(item, width) => {
                let items = ArrayData::builder(item.data_type().clone())
                    .len(rows * *width as usize)
                    .add_buffer(dense.buffer)
                    .build()?;
                ArrayData::builder(data_type.clone())
                    .len(rows)
                    .child_data(vec![items])
                    .build()?
            }
            _ => ArrayData::builder(data_type.clone())
                .len(rows)
                .add_buffer(dense.buffer)
                .build()?,
        };
        return Ok(make_array(data));
    }
    let arrays = view.column_arrays(index)?;
    Ok(match arrays.as_slice() {
        [] => new_empty_array(data_type),
        [array] => array.clone(),
        _ => {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            arrow::compute::concat(&refs)?
        }
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, FixedSizeListArray, Float32Array, Int64Array};
    use arrow::datatypes::{Field, Float32Type, Int64Type, Schema, UInt32Type};

    use super::*;

    /// Chunks of ids: [0, 1, 2], [] (empty), [3 .. 8) with rows 1 and 3 selected (ids 4, 6),
    /// [8, 9].
    fn view() -> ViewSet {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let chunk = |ids: std::ops::Range<i64>, selection: Option<Vec<u32>>| Chunk {
            len: ids.end as usize - ids.start as usize,
            columns: vec![Arc::new(Int64Array::from_iter_values(ids)) as ArrayRef],
            selection: selection.map(Arc::new),
        };
        ViewSet {
            schema,
            chunks: vec![
                chunk(0..3, None),
                chunk(3..3, None),
                chunk(3..8, Some(vec![1, 3])),
                chunk(8..10, None),
            ],
        }
    }

    fn ids(view: &ViewSet) -> Vec<i64> {
        (0..view.chunks.len())
            .flat_map(|c| {
                let chunk = &view.chunks[c];
                let values = chunk.columns[0].as_primitive::<Int64Type>().clone();
                match &chunk.selection {
                    Some(selection) => selection
                        .iter()
                        .map(|&r| values.value(r as usize))
                        .collect::<Vec<_>>(),
                    None => values.values().to_vec(),
                }
            })
            .collect()
    }

    #[test]
    fn take_maps_positions_through_chunks_and_selections_in_order() {
        // positions: 0 1 2 | 3 4 | 5 6  ->  ids 0 1 2 | 4 6 | 8 9
        let taken = take(view(), &[6, 3, 0, 4, 4, 2, 5]).unwrap();
        assert_eq!(ids(&taken), [9, 4, 0, 6, 6, 2, 8]);
        assert!(taken.chunks.iter().all(|c| c.selection.is_some()));
        // one chunk per run of one input chunk, in any order inside it
        let taken = take(view(), &[2, 0, 1, 4, 3]).unwrap();
        assert_eq!(taken.chunks.len(), 2);
        assert_eq!(
            taken.chunks[0].selection.as_deref().unwrap(),
            &vec![2, 0, 1]
        );
        assert_eq!(taken.chunks[1].selection.as_deref().unwrap(), &vec![3, 1]);
        let empty = take(view(), &[]).unwrap();
        assert!(empty.chunks.is_empty());
        assert!(take(view(), &[7]).is_err());
    }

    #[test]
    fn reinterpretation_keeps_the_buffers() {
        let values: ArrayRef = Arc::new(Float32Array::from(vec![1.0, -2.0]));
        let bits = reinterpret_array(&values, &DataType::UInt32).unwrap();
        assert_eq!(
            bits.as_primitive::<UInt32Type>().values(),
            &[1.0f32.to_bits(), (-2.0f32).to_bits()]
        );
        assert_eq!(
            bits.to_data().buffers()[0].as_ptr(),
            values.to_data().buffers()[0].as_ptr()
        );
        let field = Arc::new(Field::new("item", DataType::Float32, true));
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(field, 1, values.clone(), None));
        let to = DataType::FixedSizeList(Arc::new(Field::new("item", DataType::UInt32, true)), 1);
        let viewed = reinterpret_array(&list.slice(1, 1), &to).unwrap();
        assert_eq!(viewed.data_type(), &to);
        let items = viewed
            .as_fixed_size_list()
            .values()
            .as_primitive::<UInt32Type>()
            .clone();
        assert_eq!(items.values().as_ref(), &[(-2.0f32).to_bits()]);
    }

    #[test]
    fn attached_arrays_follow_the_chunks() {
        let unselected = ViewSet {
            schema: view().schema,
            chunks: view()
                .chunks
                .into_iter()
                .filter(|c| c.selection.is_none())
                .collect(),
        };
        let extra: ArrayRef = Arc::new(Float32Array::from_iter_values(
            (0..5).map(|i| i as f32 / 2.0),
        ));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("half", DataType::Float32, true),
        ]));
        let column = AttachedColumn {
            name: "half".into(),
            array: extra,
            copied: None,
        };
        let result = attach(unselected, &[column], schema).unwrap();
        let halves: Vec<f32> = result
            .chunks
            .iter()
            .flat_map(|c| c.columns[1].as_primitive::<Float32Type>().values().to_vec())
            .collect();
        assert_eq!(halves, [0.0, 0.5, 1.0, 1.5, 2.0]);
        assert!(attach(view(), &[], view().schema).is_err()); // selections are refused
    }

    #[test]
    fn collecting_gathers_selected_rows_into_one_batch() {
        let batches = collect_batches(&view()).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>().values(),
            &[0, 1, 2, 4, 6, 8, 9]
        );
        let unselected = memory(view().schema, &batches);
        assert_eq!(
            collect_batches(&unselected).unwrap()[0].column(0).as_ref(),
            batches[0].column(0).as_ref()
        );
    }
}
