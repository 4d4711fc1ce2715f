//! `Sort`: the order of the input's rows by its keys, as a take of the input (a selection).
//!
//! The keys are evaluated into dense arrays once; rows are then ordered as u32 positions with
//! arrow-rs's `LexicographicalComparator` (one comparator per key, nulls and direction per
//! key). Ties are broken by position, which makes the order total: an unstable sort then gives
//! the stable result, and a top-k can use a partial selection (`select_nth_unstable_by`) and
//! sort only the k rows it keeps. Large inputs are sorted on the rayon pool.
//!
//! The output is the input with a selection in sorted order, so `sort(...).select(...)`
//! gathers each selected column once, when it is exported.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, new_empty_array};
use arrow::compute::{LexicographicalComparator, SortColumn, SortOptions, cast, concat};
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use rayon::prelude::*;
use relay_plan::{Expr, SortKey};

use crate::error::ExecError;
use crate::eval::evaluate;
use crate::pool::pool;
use crate::view::ViewSet;

/// Rows from which sorting runs on the pool: below it the tasks cost more than they save.
const PARALLEL_SORT_ROWS: usize = 256 * 1024;

/// `exprs` evaluated over the selected rows of `input`, one dense array per expression (the
/// chunks' values concatenated; a single chunk without selection is not copied).
pub(crate) fn dense_values(input: &ViewSet, exprs: &[Expr]) -> Result<Vec<ArrayRef>, ExecError> {
    let mut names: Vec<String> = Vec::new();
    for expr in exprs {
        for name in expr.columns() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let indices = names
        .iter()
        .map(|name| input.schema.index_of(name))
        .collect::<Result<Vec<_>, _>>()?;
    let per_column = indices
        .iter()
        .map(|&i| input.column_arrays(i))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(Schema::new(
        indices
            .iter()
            .map(|&i| input.schema.field(i).clone())
            .collect::<Vec<_>>(),
    ));
    let batches = input
        .chunks
        .iter()
        .enumerate()
        .map(|(c, chunk)| {
            let arrays = per_column.iter().map(|column| column[c].clone()).collect();
            let options = RecordBatchOptions::new().with_row_count(Some(chunk.num_selected()));
            RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let per_chunk: Vec<Vec<ArrayRef>> = pool().install(|| {
        batches
            .par_iter()
            .map(|batch| {
                exprs
                    .iter()
                    .map(|expr| evaluate(expr, batch)?.into_array(batch.num_rows()))
                    .collect()
            })
            .collect::<Result<_, ArrowError>>()
    })?;
    exprs
        .iter()
        .enumerate()
        .map(|(e, expr)| {
            let parts: Vec<&ArrayRef> = per_chunk.iter().map(|arrays| &arrays[e]).collect();
            match parts.as_slice() {
                [] => {
                    let data_type =
                        relay_plan::resolve::resolve(expr.clone(), &input.schema)?.data_type;
                    Ok(new_empty_array(&data_type))
                }
                [one] => Ok((*one).clone()),
                many => {
                    let arrays: Vec<&dyn Array> = many.iter().map(|a| a.as_ref()).collect();
                    Ok(concat(&arrays)?)
                }
            }
        })
        .collect()
}

/// The positions of `input`'s rows in the order of `keys`, the first `limit` only when set.
pub fn sorted_positions(
    input: &ViewSet,
    keys: &[SortKey],
    limit: Option<u64>,
) -> Result<Vec<u32>, ExecError> {
    let rows = input.num_rows();
    if rows > u32::MAX as usize {
        return Err(ExecError::Arrow(ArrowError::InvalidArgumentError(format!(
            "sort(): {rows} rows are more than the {} a sort orders",
            u32::MAX
        ))));
    }
    let exprs: Vec<Expr> = keys.iter().map(|key| key.expr.clone()).collect();
    let arrays = dense_values(input, &exprs)?;
    let full_sort = limit.is_none_or(|k| k >= rows as u64);
    if let ([key], [values]) = (keys, arrays.as_slice())
        && full_sort
        && let Some(normalized) = normalized_keys(values, key.descending)
    {
        return Ok(sort_normalized(values, &normalized, key.nulls_last));
    }
    let columns: Vec<SortColumn> = arrays
        .into_iter()
        .zip(keys)
        .map(|(values, key)| SortColumn {
            values,
            options: Some(SortOptions {
                descending: key.descending,
                nulls_first: !key.nulls_last,
            }),
        })
        .collect();
    let comparator = LexicographicalComparator::try_new(&columns)?;
    // Equal keys keep input order: the comparison is total, so any sort algorithm is stable.
    let compare = |a: &u32, b: &u32| comparator.compare(*a as usize, *b as usize).then(a.cmp(b));
    let mut positions: Vec<u32> = (0..rows as u32).collect();
    match limit.map(|k| usize::try_from(k).unwrap_or(usize::MAX)) {
        Some(0) => positions.clear(),
        Some(k) if k < rows => {
            positions.select_nth_unstable_by(k - 1, compare);
            positions.truncate(k);
            positions.sort_unstable_by(compare);
        }
        _ if rows >= PARALLEL_SORT_ROWS => {
            pool().install(|| positions.par_sort_unstable_by(compare))
        }
        _ => positions.sort_unstable_by(compare),
    }
    Ok(positions)
}

/// Each value of a numeric or temporal key as a u64 whose unsigned order is the key's order
/// (descending: reversed); None for other types. Floats map to their bits with the sign
/// flipped (negative ones inverted), which is `total_cmp`'s order, the comparator's too.
fn normalized_keys(values: &ArrayRef, descending: bool) -> Option<Vec<u64>> {
    use arrow::datatypes::{DataType::*, Float64Type, Int64Type, UInt64Type};
    const SIGN: u64 = 1 << 63;
    let bits: Vec<u64> = match values.data_type() {
        Int8 | Int16 | Int32 | Int64 | Date32 | Date64 | Timestamp(..) => {
            let ints = cast(values, &Int64).ok()?;
            ints.as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|&v| (v as u64) ^ SIGN)
                .collect()
        }
        UInt8 | UInt16 | UInt32 | UInt64 => cast(values, &UInt64)
            .ok()?
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec(),
        Float16 | Float32 | Float64 => {
            let floats = cast(values, &Float64).ok()?;
            floats
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|v| {
                    let bits = v.to_bits();
                    if bits & SIGN != 0 { !bits } else { bits ^ SIGN }
                })
                .collect()
        }
        _ => return None,
    };
    Some(if descending {
        bits.into_iter().map(|b| !b).collect()
    } else {
        bits
    })
}

/// The positions of `values` in the order of `normalized` (ties by position), nulls first or
/// last: one sort of (key, position) pairs, on the pool when large.
fn sort_normalized(values: &ArrayRef, normalized: &[u64], nulls_last: bool) -> Vec<u32> {
    let nulls = values.logical_nulls();
    let mut null_positions = Vec::new();
    let mut pairs: Vec<(u64, u32)> = Vec::with_capacity(normalized.len());
    for (position, &key) in normalized.iter().enumerate() {
        if nulls.as_ref().is_some_and(|n| n.is_null(position)) {
            null_positions.push(position as u32);
        } else {
            pairs.push((key, position as u32));
        }
    }
    if pairs.len() >= PARALLEL_SORT_ROWS {
        pool().install(|| pairs.par_sort_unstable());
    } else {
        pairs.sort_unstable();
    }
    let sorted = pairs.into_iter().map(|(_, position)| position);
    if nulls_last {
        sorted.chain(null_positions).collect()
    } else {
        null_positions.into_iter().chain(sorted).collect()
    }
}

/// `input` ordered by `keys` (the first `limit` rows when set): a selection of its rows.
pub fn sort(input: ViewSet, keys: &[SortKey], limit: Option<u64>) -> Result<ViewSet, ExecError> {
    let positions = sorted_positions(&input, keys, limit)?;
    let indices: Vec<u64> = positions.into_iter().map(u64::from).collect();
    crate::nodes::take(input, &indices)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type};

    use super::*;
    use crate::nodes::memory;

    fn view() -> ViewSet {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = |k: Vec<Option<i64>>, s: Vec<Option<&str>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(k)),
                    Arc::new(StringArray::from(s)),
                ],
            )
            .unwrap()
        };
        let batches = [
            batch(
                vec![Some(2), None, Some(1)],
                vec![Some("a"), Some("b"), Some("c")],
            ),
            batch(vec![Some(2), Some(1)], vec![Some("d"), None]),
        ];
        memory(schema, &batches)
    }

    fn key(name: &str, descending: bool, nulls_last: bool) -> SortKey {
        SortKey {
            expr: Expr::col(name),
            descending,
            nulls_last,
        }
    }

    fn sorted_column(keys: &[SortKey], limit: Option<u64>, column: usize) -> Vec<Option<String>> {
        let result = sort(view(), keys, limit).unwrap();
        let arrays = result.column_arrays(column).unwrap();
        arrays
            .iter()
            .flat_map(|array| {
                let formatter = arrow::util::display::ArrayFormatter::try_new(
                    array.as_ref(),
                    &Default::default(),
                )
                .unwrap();
                (0..array.len())
                    .map(move |i| array.is_valid(i).then(|| formatter.value(i).to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn sorts_stably_with_nulls_where_asked() {
        let s = |v: &[Option<&str>]| v.iter().map(|x| x.map(str::to_string)).collect::<Vec<_>>();
        // Equal keys (2, 2 and 1, 1) keep input order.
        assert_eq!(
            sorted_column(&[key("k", false, false)], None, 1),
            s(&[Some("b"), Some("c"), None, Some("a"), Some("d")])
        );
        assert_eq!(
            sorted_column(&[key("k", true, true)], None, 1),
            s(&[Some("a"), Some("d"), Some("c"), None, Some("b")])
        );
        // Second key breaks ties: descending strings, nulls first.
        assert_eq!(
            sorted_column(&[key("k", false, true), key("s", true, false)], None, 1),
            s(&[None, Some("c"), Some("d"), Some("a"), Some("b")])
        );
    }

    #[test]
    fn a_top_k_equals_the_head_of_the_full_sort() {
        let keys = [key("k", true, false)];
        let full = sorted_column(&keys, None, 1);
        for k in 0..7 {
            assert_eq!(
                sorted_column(&keys, Some(k), 1),
                full[..(k as usize).min(full.len())].to_vec()
            );
        }
    }

    #[test]
    fn the_single_numeric_key_path_orders_as_the_comparator_does() {
        use arrow::array::Float64Array;
        let values: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(0.0),
            Some(-0.0),
            None,
            Some(f64::NAN),
            Some(-1.5),
            Some(f64::NEG_INFINITY),
            Some(2.0),
            Some(-1.5),
            None,
        ]));
        for descending in [false, true] {
            for nulls_last in [false, true] {
                let options = SortOptions {
                    descending,
                    nulls_first: !nulls_last,
                };
                let column = SortColumn {
                    values: values.clone(),
                    options: Some(options),
                };
                let comparator =
                    LexicographicalComparator::try_new(std::slice::from_ref(&column)).unwrap();
                let mut expected: Vec<u32> = (0..values.len() as u32).collect();
                expected.sort_by(|a, b| comparator.compare(*a as usize, *b as usize));
                let normalized = normalized_keys(&values, descending).unwrap();
                assert_eq!(
                    sort_normalized(&values, &normalized, nulls_last),
                    expected,
                    "{descending} {nulls_last}"
                );
            }
        }
    }

    #[test]
    fn keys_may_be_expressions() {
        let negated = SortKey {
            expr: Expr::col("k").unary(relay_plan::UnaryOp::Negate),
            descending: false,
            nulls_last: true,
        };
        let result = sort(view(), &[negated], None).unwrap();
        let arrays = result.column_arrays(0).unwrap();
        let values: Vec<Option<i64>> = arrays
            .iter()
            .flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
            .collect();
        assert_eq!(values, vec![Some(2), Some(2), Some(1), Some(1), None]);
    }
}
