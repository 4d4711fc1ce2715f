//! `Distinct` (`unique()`): one row per distinct value of the subset's columns, as a take of
//! the input in input order (a selection, gathered when exported).
//!
//! Rows are compared in arrow-rs's row format (`RowConverter`): every subset column of a row
//! encoded into one byte string, equal exactly when the values are equal (nulls equal each
//! other, as in Polars), so one hash map over the encoded rows serves every type and any
//! number of columns.

use std::collections::HashMap;

use arrow::array::Array;
use arrow::row::{RowConverter, SortField};
use relay_plan::{Expr, Keep};

use crate::error::ExecError;
use crate::sort::dense_values;
use crate::view::ViewSet;

/// The positions (ascending) of the rows of `input` that `unique(subset, keep)` keeps.
pub fn distinct_positions(
    input: &ViewSet,
    subset: Option<&[String]>,
    keep: Keep,
) -> Result<Vec<u32>, ExecError> {
    let rows = input.num_rows();
    let names: Vec<String> = match subset {
        Some(subset) => subset.to_vec(),
        None => input
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
    };
    if names.is_empty() {
        // No column to tell rows apart: all rows are one.
        let kept = match keep {
            Keep::First if rows > 0 => vec![0],
            Keep::Last if rows > 0 => vec![rows as u32 - 1],
            Keep::None if rows == 1 => vec![0],
            _ => vec![],
        };
        return Ok(kept);
    }
    let exprs: Vec<Expr> = names.iter().map(Expr::col).collect();
    let arrays = dense_values(input, &exprs)?;
    let converter = RowConverter::new(
        arrays
            .iter()
            .map(|a| SortField::new(a.data_type().clone()))
            .collect(),
    )?;
    let encoded = converter.convert_columns(&arrays)?;
    // Per distinct row: (first position, last position, occurrences).
    let mut seen: HashMap<arrow::row::Row<'_>, (u32, u32, u32)> = HashMap::new();
    for (position, row) in encoded.iter().enumerate() {
        let position = position as u32;
        seen.entry(row)
            .and_modify(|(_, last, count)| {
                *last = position;
                *count += 1;
            })
            .or_insert((position, position, 1));
    }
    let mut kept: Vec<u32> = seen
        .into_values()
        .filter_map(|(first, last, count)| match keep {
            Keep::First => Some(first),
            Keep::Last => Some(last),
            Keep::None => (count == 1).then_some(first),
        })
        .collect();
    kept.sort_unstable();
    Ok(kept)
}

/// The rows `unique(subset, keep)` keeps, in input order: a selection of `input`.
pub fn distinct(
    input: ViewSet,
    subset: Option<&[String]>,
    keep: Keep,
) -> Result<ViewSet, ExecError> {
    let positions = distinct_positions(&input, subset, keep)?;
    let indices: Vec<u64> = positions.into_iter().map(u64::from).collect();
    crate::nodes::take(input, &indices)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

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
                vec![Some(1), None, Some(1)],
                vec![Some("a"), None, Some("a")],
            ),
            batch(vec![None, Some(1)], vec![None, Some("b")]),
        ];
        memory(schema, &batches)
    }

    #[test]
    fn keeps_first_last_or_only_unrepeated_rows_with_nulls_equal() {
        let view = view();
        assert_eq!(
            distinct_positions(&view, None, Keep::First).unwrap(),
            vec![0, 1, 4]
        );
        assert_eq!(
            distinct_positions(&view, None, Keep::Last).unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(
            distinct_positions(&view, None, Keep::None).unwrap(),
            vec![4]
        );
        let subset = ["k".to_string()];
        assert_eq!(
            distinct_positions(&view, Some(&subset), Keep::First).unwrap(),
            vec![0, 1]
        );
        assert_eq!(
            distinct_positions(&view, Some(&subset), Keep::Last).unwrap(),
            vec![3, 4]
        );
        assert_eq!(
            distinct(view, Some(&subset), Keep::None)
                .unwrap()
                .num_rows(),
            0
        );
    }
}
