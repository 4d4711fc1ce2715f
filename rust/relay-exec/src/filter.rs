//! `Filter` (and the filters pushed into scans and reads). Filters never copy column data:
//! they produce a selection vector, the sorted row offsets inside the chunk that pass. Each
//! chunk is cut into morsels of `MORSEL_ROWS` rows that rayon evaluates in parallel; a
//! conjunction is evaluated one conjunct at a time, as bitmaps over the whole morsel while many
//! rows pass and on the passing rows only once few do (see `filter`).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::buffer::BooleanBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::error::ArrowError;
use rayon::prelude::*;
use relay_plan::Expr;

use crate::error::ExecError;
use crate::eval::evaluate;
use crate::pool::{MORSEL_ROWS, pool};
use crate::view::{Chunk, ViewSet};

/// A conjunct of a filter, with what evaluating it on a morsel needs: the columns it reads
/// (their indices in the input) and the schema of the batch it sees.
struct Conjunct {
    expr: Expr,
    columns: Vec<usize>,
    schema: SchemaRef,
}

impl Conjunct {
    fn new(expr: Expr, input: &Schema) -> Result<Self, ArrowError> {
        let names = expr.columns();
        let columns = names
            .iter()
            .map(|name| input.index_of(name))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|&i| input.field(i).clone())
                .collect::<Vec<_>>(),
        ));
        Ok(Conjunct {
            expr,
            columns,
            schema,
        })
    }

    /// The conjunct over `arrays` (its columns, `len` rows), as a bitmap with null as false.
    fn mask(&self, arrays: Vec<ArrayRef>, len: usize) -> Result<BooleanBuffer, ArrowError> {
        let options = RecordBatchOptions::new().with_row_count(Some(len));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?;
        let mask = evaluate(&self.expr, &batch)?.into_array(len)?;
        match mask.data_type() {
            DataType::Boolean => Ok(crate::eval::null_as_false(mask.as_boolean())
                .values()
                .clone()),
            DataType::Null => Ok(BooleanBuffer::new_unset(len)),
            other => Err(ArrowError::InvalidArgumentError(format!(
                "filter predicate gave {other}, not booleans"
            ))),
        }
    }

    /// The conjunct on rows `start .. start + len` of `chunk` (zero-copy slices).
    fn mask_of_range(
        &self,
        chunk: &Chunk,
        start: usize,
        len: usize,
    ) -> Result<BooleanBuffer, ArrowError> {
        let arrays = self
            .columns
            .iter()
            .map(|&i| chunk.columns[i].slice(start, len))
            .collect();
        self.mask(arrays, len)
    }

    /// The rows of `rows` (offsets into `chunk`) where the conjunct holds, in the same order.
    /// The columns it reads are gathered at those rows first.
    fn keep_rows(&self, chunk: &Chunk, rows: Vec<u32>) -> Result<Vec<u32>, ArrowError> {
        let indices = UInt32Array::from(rows);
        let arrays = self
            .columns
            .iter()
            .map(|&i| take(chunk.columns[i].as_ref(), &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        let mask = self.mask(arrays, indices.len())?;
        let rows = indices.values();
        let mut kept = Vec::with_capacity(mask.count_set_bits());
        kept.extend(mask.set_indices().map(|p| rows[p]));
        Ok(kept)
    }
}

/// The rows of one morsel that are still in while its conjuncts are evaluated.
enum Survivors {
    /// Every row of the morsel `start .. start + len`.
    All,
    /// One bit per row of the morsel, while many rows survive.
    Mask(BooleanBuffer),
    /// Offsets into the chunk, in selection order, once few rows survive (or when the chunk
    /// came with a selection).
    Rows(Vec<u32>),
}

impl Survivors {
    fn count(&self, len: usize) -> usize {
        match self {
            Survivors::All => len,
            Survivors::Mask(mask) => mask.count_set_bits(),
            Survivors::Rows(rows) => rows.len(),
        }
    }
}

/// While at least 1 in `DENSE_DIVISOR` rows of a morsel survive, the next conjunct runs over
/// the whole morsel (zero-copy slices of its columns) and its bitmap is ANDed in; below that,
/// the surviving rows are gathered and the conjunct runs on them only. A comparison over a
/// whole morsel streams its column once, while the gather costs a `take` per surviving row
/// and column, so skipping rows pays only once most of them are gone. Measured on `tab`
/// (20 M rows, filter phase, pages mapped, median of 5): `(f0 > 0) & (age > 98) & (city ==
/// "Lima")` took 17.0 ms gathering after every conjunct, 11.0 ms with a divisor of 4 or 8,
/// 10.8 ms with 16 and 15.9 ms never gathering; written as `(city == "Lima") & (f0 > 0) &
/// (age > 98)`, 17.7, 14.0 (4), 15.0 (8), 16.2 (16) and 16.1 ms.
const DENSE_DIVISOR: usize = 4;

/// Keeps the rows where every conjunct of `predicate` is true (null counts as false).
///
/// A chunk without selection is cut into morsels of `MORSEL_ROWS` consecutive rows; a chunk
/// with one (a filter over a take, or a filter the optimizer did not merge) into pieces of
/// `MORSEL_ROWS` selected rows, which keep their order (a take's rows may go backwards). Each
/// morsel is one rayon task that evaluates the conjuncts in order, each on the rows the
/// previous ones kept (see `Survivors`). The chunk's selection is then written in one
/// parallel pass into a vector of exactly the surviving rows.
///
/// Comparisons go through arrow's kernels (`eval`), bitmap first, offsets from its set bits.
/// A hand-written branch-free kernel from an integer column straight to offsets was tried:
/// alone it was faster (20 M int32, `> 94`, one thread: 6.7 ms against 9.0 ms for `cmp::gt`
/// plus `set_indices`), but in the query it made the filter phase slower (9.5-12 ms against
/// 5.9-6.5 ms for `age > 94` on `tab`, 2 threads), as it writes an offset for every row.
pub(crate) fn filter(input: ViewSet, predicate: &Expr) -> Result<ViewSet, ExecError> {
    let filter = ChunkFilter::new(predicate, &input.schema)?;
    let schema = input.schema.clone();
    let chunks: Result<Vec<Chunk>, ArrowError> = pool().install(|| {
        input
            .chunks
            .into_par_iter()
            .map(|chunk| filter.apply(chunk))
            .collect()
    });
    Ok(ViewSet {
        schema,
        chunks: chunks?,
    })
}

/// A predicate's conjuncts, checked against a schema once, to filter chunks of that schema
/// (see `filter`).
pub(crate) struct ChunkFilter {
    conjuncts: Vec<Conjunct>,
}

impl ChunkFilter {
    pub(crate) fn new(predicate: &Expr, schema: &Schema) -> Result<ChunkFilter, ArrowError> {
        let conjuncts = predicate
            .clone()
            .conjuncts()
            .into_iter()
            .map(|expr| Conjunct::new(expr, schema))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChunkFilter { conjuncts })
    }

    /// `chunk` with the selection of the rows that pass.
    pub(crate) fn apply(&self, chunk: Chunk) -> Result<Chunk, ArrowError> {
        if chunk.len > u32::MAX as usize {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a record batch of {} rows is too large to filter (at most {} rows)",
                chunk.len,
                u32::MAX
            )));
        }
        let selection = filter_chunk(&chunk, &self.conjuncts)?;
        Ok(Chunk {
            selection: Some(Arc::new(selection)),
            ..chunk
        })
    }
}

/// The selection of `chunk` after the conjuncts: sorted offsets, or the incoming selection's
/// order where there is one.
fn filter_chunk(chunk: &Chunk, conjuncts: &[Conjunct]) -> Result<Vec<u32>, ArrowError> {
    let survivors: Vec<(usize, Survivors)> = match &chunk.selection {
        None => {
            let starts: Vec<usize> = (0..chunk.len).step_by(MORSEL_ROWS).collect();
            starts
                .into_par_iter()
                .map(|start| {
                    let len = MORSEL_ROWS.min(chunk.len - start);
                    Ok((start, filter_morsel(chunk, conjuncts, start, len)?))
                })
                .collect::<Result<_, ArrowError>>()?
        }
        Some(selection) => selection
            .par_chunks(MORSEL_ROWS)
            .map(|rows| {
                let mut rows = rows.to_vec();
                for conjunct in conjuncts {
                    if rows.is_empty() {
                        break;
                    }
                    rows = conjunct.keep_rows(chunk, rows)?;
                }
                Ok((0, Survivors::Rows(rows)))
            })
            .collect::<Result<_, ArrowError>>()?,
    };
    // One vector of exactly the surviving rows, each morsel writing its own part in parallel.
    let counts: Vec<usize> = survivors
        .iter()
        .map(|(start, s)| s.count(MORSEL_ROWS.min(chunk.len.saturating_sub(*start))))
        .collect();
    let mut selection = vec![0u32; counts.iter().sum()];
    let mut parts: Vec<&mut [u32]> = Vec::with_capacity(counts.len());
    let mut rest = selection.as_mut_slice();
    for &count in &counts {
        let (head, tail) = rest.split_at_mut(count);
        parts.push(head);
        rest = tail;
    }
    survivors
        .into_par_iter()
        .zip(parts)
        .for_each(|((start, survivors), part)| match survivors {
            Survivors::All => {
                for (slot, row) in part.iter_mut().zip(start as u32..) {
                    *slot = row;
                }
            }
            Survivors::Mask(mask) => {
                for (slot, offset) in part.iter_mut().zip(mask.set_indices()) {
                    *slot = (start + offset) as u32;
                }
            }
            Survivors::Rows(rows) => part.copy_from_slice(&rows),
        });
    Ok(selection)
}

/// The conjuncts on rows `start .. start + len` of a chunk without selection.
fn filter_morsel(
    chunk: &Chunk,
    conjuncts: &[Conjunct],
    start: usize,
    len: usize,
) -> Result<Survivors, ArrowError> {
    let mut survivors = Survivors::All;
    for conjunct in conjuncts {
        survivors = match survivors {
            Survivors::All => Survivors::Mask(conjunct.mask_of_range(chunk, start, len)?),
            Survivors::Mask(mask) => {
                let count = mask.count_set_bits();
                if count == 0 {
                    return Ok(Survivors::Mask(mask));
                }
                if count * DENSE_DIVISOR >= len {
                    Survivors::Mask(&mask & &conjunct.mask_of_range(chunk, start, len)?)
                } else {
                    let mut rows = Vec::with_capacity(count);
                    rows.extend(mask.set_indices().map(|offset| (start + offset) as u32));
                    Survivors::Rows(conjunct.keep_rows(chunk, rows)?)
                }
            }
            Survivors::Rows(rows) if rows.is_empty() => return Ok(Survivors::Rows(rows)),
            Survivors::Rows(rows) => Survivors::Rows(conjunct.keep_rows(chunk, rows)?),
        };
    }
    Ok(survivors)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float32Array, Int32Array};
    use arrow::datatypes::{Field, Int32Type};
    use relay_plan::BinaryOp;

    use super::*;

    /// Rows of the test chunk: several morsels and a partial one.
    const ROWS: usize = 3 * MORSEL_ROWS + 1234;

    fn a(i: usize) -> i32 {
        (i % 100) as i32
    }

    fn b(i: usize) -> f32 {
        ((i * 7919) % 1000) as f32 - 500.0
    }

    /// Every seventh row of `c` is null.
    fn c(i: usize) -> Option<i32> {
        (!i.is_multiple_of(7)).then_some((i % 10) as i32)
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("b", DataType::Float32, false),
            Field::new("c", DataType::Int32, true),
        ]))
    }

    fn chunk(rows: std::ops::Range<usize>, selection: Option<Vec<u32>>) -> Chunk {
        Chunk {
            len: rows.len(),
            columns: vec![
                Arc::new(Int32Array::from_iter_values(rows.clone().map(a))) as ArrayRef,
                Arc::new(Float32Array::from_iter_values(rows.clone().map(b))),
                Arc::new(rows.map(c).collect::<Int32Array>()),
            ],
            selection: selection.map(Arc::new),
        }
    }

    fn compare(name: &str, op: BinaryOp, value: ArrayRef) -> Expr {
        Expr::col(name).binary(op, Expr::lit(value))
    }

    fn int(value: i32) -> ArrayRef {
        Arc::new(Int32Array::from(vec![value]))
    }

    fn float(value: f32) -> ArrayRef {
        Arc::new(Float32Array::from(vec![value]))
    }

    /// The selected rows of each chunk after filtering `view` with `predicate`.
    fn selections(view: ViewSet, predicate: &Expr) -> Vec<Vec<u32>> {
        let filtered = filter(view, predicate).unwrap();
        filtered
            .chunks
            .iter()
            .map(|chunk| {
                chunk
                    .selection
                    .as_deref()
                    .expect("a filter gives a selection")
                    .clone()
            })
            .collect()
    }

    fn expected(rows: impl Iterator<Item = usize>, keep: impl Fn(usize) -> bool) -> Vec<u32> {
        rows.filter(|&i| keep(i)).map(|i| i as u32).collect()
    }

    #[test]
    fn one_conjunct_keeps_the_matching_rows_of_every_morsel() {
        let view = ViewSet {
            schema: schema(),
            chunks: vec![chunk(0..ROWS, None)],
        };
        let predicate = compare("a", BinaryOp::Gt, int(94));
        assert_eq!(
            selections(view, &predicate),
            [expected(0..ROWS, |i| a(i) > 94)]
        );
    }

    #[test]
    fn conjunctions_pass_from_bitmaps_to_rows_as_rows_drop_out() {
        let view = || ViewSet {
            schema: schema(),
            chunks: vec![chunk(0..ROWS, None)],
        };
        // b > -400 keeps 90 % (bitmap), a > 50 then 44 % (bitmap ANDed), a == 97 then 1 %
        // (rows gathered), c > 3 on those rows only (null is false).
        let predicate = compare("b", BinaryOp::Gt, float(-400.0))
            .and(compare("a", BinaryOp::Gt, int(50)))
            .and(compare("a", BinaryOp::Eq, int(97)))
            .and(compare("c", BinaryOp::Gt, int(3)));
        let keep =
            |i: usize| b(i) > -400.0 && a(i) > 50 && a(i) == 97 && c(i).is_some_and(|c| c > 3);
        assert_eq!(selections(view(), &predicate), [expected(0..ROWS, keep)]);
        // A selective conjunct first goes to rows at once; the rest run on those rows.
        let predicate =
            compare("a", BinaryOp::Eq, int(3)).and(compare("b", BinaryOp::Lt, float(0.0)));
        assert_eq!(
            selections(view(), &predicate),
            [expected(0..ROWS, |i| a(i) == 3 && b(i) < 0.0)]
        );
        // Nothing left: later conjuncts are skipped.
        let predicate =
            compare("a", BinaryOp::Gt, int(1000)).and(compare("b", BinaryOp::Lt, float(0.0)));
        assert_eq!(selections(view(), &predicate), [Vec::<u32>::new()]);
    }

    #[test]
    fn a_chunk_with_a_selection_keeps_its_order() {
        // A take's selection may go backwards: the filter keeps the survivors in that order.
        let backwards: Vec<u32> = (0..ROWS as u32).rev().step_by(3).collect();
        let view = ViewSet {
            schema: schema(),
            chunks: vec![chunk(0..ROWS, Some(backwards.clone()))],
        };
        let predicate =
            compare("a", BinaryOp::GtEq, int(90)).and(compare("c", BinaryOp::NotEq, int(5)));
        let keep = |i: usize| a(i) >= 90 && c(i).is_some_and(|c| c != 5);
        let want: Vec<u32> = backwards
            .iter()
            .copied()
            .filter(|&r| keep(r as usize))
            .collect();
        assert_eq!(selections(view, &predicate), [want]);
    }

    #[test]
    fn each_chunk_is_filtered_on_its_own_offsets() {
        let view = ViewSet {
            schema: schema(),
            chunks: vec![
                chunk(0..10, None),
                chunk(10..10, None),
                chunk(10..MORSEL_ROWS + 30, None),
            ],
        };
        let predicate = compare("a", BinaryOp::Lt, int(2));
        let got = selections(view, &predicate);
        assert_eq!(got[0], [0, 1]);
        assert!(got[1].is_empty());
        assert_eq!(got[2], expected(0..MORSEL_ROWS + 20, |i| a(i + 10) < 2));
    }

    #[test]
    fn non_boolean_predicates_are_errors() {
        let view = ViewSet {
            schema: schema(),
            chunks: vec![chunk(0..10, None)],
        };
        let error = filter(view, &Expr::col("a")).unwrap_err();
        assert!(error.to_string().contains("not booleans"), "{error}");
    }

    #[test]
    fn selected_rows_read_back_through_column_arrays() {
        let view = ViewSet {
            schema: schema(),
            chunks: vec![chunk(0..ROWS, None)],
        };
        let filtered = filter(view, &compare("a", BinaryOp::Eq, int(42))).unwrap();
        let values = filtered.column_arrays(0).unwrap();
        assert!(
            values[0]
                .as_primitive::<Int32Type>()
                .values()
                .iter()
                .all(|&v| v == 42)
        );
        assert_eq!(filtered.num_rows(), expected(0..ROWS, |i| a(i) == 42).len());
    }
}
