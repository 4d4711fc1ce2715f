//! `Aggregate` (`group_by(keys).agg([...])`): hash aggregation into new memory.
//!
//! 1. The keys and the aggregations' inputs are evaluated into dense arrays.
//! 2. Grouping, in parallel per morsel: each task encodes its rows' keys in arrow-rs's row
//!    format (every key column of a row as one byte string, equal exactly when the keys are,
//!    nulls equal to each other as in Polars) and numbers its distinct keys in order of first
//!    appearance. The merge walks the morsels in order and maps each local group to a global
//!    one, so global groups are numbered in order of first appearance in the input; the rows'
//!    group ids are then rewritten in parallel.
//! 3. Each aggregation runs over (group id, value) pairs into per-group accumulators, the
//!    aggregations in parallel. Keys, first and last are takes of the input at one row per
//!    group; min and max track the row of the extreme value with arrow-rs's comparator, so
//!    they keep the input type (strings and dates included).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, UInt32Array, UInt64Array, make_comparator, new_empty_array,
};
use arrow::compute::{SortOptions, cast, take};
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef, UInt64Type};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use rayon::prelude::*;
use relay_plan::{AggExpr, AggFunc, Expr};

use crate::execute::{Chunk, ExecError, MORSEL_ROWS, ViewSet, pool};
use crate::sort::dense_values;

/// The groups of a set of rows: which group each row is in, and each group's first row.
#[derive(Debug, Default)]
pub struct Groups {
    pub group_of_row: Vec<u32>,
    pub first_row: Vec<u32>,
}

impl Groups {
    pub fn len(&self) -> usize {
        self.first_row.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first_row.is_empty()
    }
}

/// The groups of one morsel, numbered in order of first appearance in it.
struct LocalGroups<'a> {
    group_of_row: Vec<u32>,
    /// Each local group's first row, as an offset into the morsel.
    first_row: Vec<u32>,
    keys: Vec<&'a [u8]>,
}

fn local_groups(rows: &Rows) -> LocalGroups<'_> {
    let mut ids: HashMap<&[u8], u32> = HashMap::new();
    let mut local = LocalGroups {
        group_of_row: Vec::with_capacity(rows.num_rows()),
        first_row: Vec::new(),
        keys: Vec::new(),
    };
    for (offset, row) in rows.iter().enumerate() {
        let bytes: &[u8] = row.data();
        let next = local.keys.len() as u32;
        let id = *ids.entry(bytes).or_insert_with(|| {
            local.keys.push(bytes);
            local.first_row.push(offset as u32);
            next
        });
        local.group_of_row.push(id);
    }
    local
}

/// The groups of equal rows of `keys` (arrays of `rows` values each).
pub fn group_rows(keys: &[ArrayRef], rows: usize) -> Result<Groups, ExecError> {
    if rows > u32::MAX as usize {
        return Err(ExecError::Arrow(ArrowError::InvalidArgumentError(format!(
            "group_by(): {rows} rows are more than the {} an aggregation groups",
            u32::MAX
        ))));
    }
    let converter = RowConverter::new(keys.iter().map(|k| SortField::new(k.data_type().clone())).collect())?;
    let morsels: Vec<(usize, usize)> = (0..rows).step_by(MORSEL_ROWS).map(|start| (start, MORSEL_ROWS.min(rows - start))).collect();
    let encoded: Vec<Rows> = pool().install(|| {
        morsels
            .par_iter()
            .map(|&(start, len)| converter.convert_columns(&keys.iter().map(|k| k.slice(start, len)).collect::<Vec<_>>()))
            .collect::<Result<_, ArrowError>>()
    })?;
    let locals: Vec<LocalGroups<'_>> = pool().install(|| encoded.par_iter().map(local_groups).collect());

    // Merge in morsel order: global ids follow first appearance in the input.
    let mut global: HashMap<&[u8], u32> = HashMap::new();
    let mut first_row = Vec::new();
    let mut mappings = Vec::with_capacity(locals.len());
    for (local, &(start, _)) in locals.iter().zip(&morsels) {
        let mapping: Vec<u32> = local
            .keys
            .iter()
            .zip(&local.first_row)
            .map(|(&key, &offset)| {
                let next = first_row.len() as u32;
                *global.entry(key).or_insert_with(|| {
                    first_row.push(start as u32 + offset);
                    next
                })
            })
            .collect();
        mappings.push(mapping);
    }
    let mut group_of_row = vec![0u32; rows];
    pool().install(|| {
        group_of_row
            .par_chunks_mut(MORSEL_ROWS)
            .zip(locals.par_iter().zip(mappings.par_iter()))
            .for_each(|(out, (local, mapping))| {
                for (slot, &id) in out.iter_mut().zip(&local.group_of_row) {
                    *slot = mapping[id as usize];
                }
            })
    });
    Ok(Groups { group_of_row, first_row })
}

/// `func` over `values` in each of `groups`, as an array of `output` type, one value per group.
pub fn aggregate_values(func: AggFunc, values: &ArrayRef, groups: &Groups, output: &DataType) -> Result<ArrayRef, ExecError> {
    let count = groups.len();
    let group_of_row = &groups.group_of_row;
    let valid = |row: usize| values.is_valid(row);
    let result: ArrayRef = match func {
        AggFunc::Len | AggFunc::Count => {
            let mut counts = vec![0u32; count];
            for (row, &group) in group_of_row.iter().enumerate() {
                if func == AggFunc::Len || valid(row) {
                    counts[group as usize] += 1;
                }
            }
            Arc::new(UInt32Array::from(counts))
        }
        AggFunc::First => take(values.as_ref(), &UInt32Array::from(groups.first_row.clone()), None)?,
        AggFunc::Last => {
            let mut last = groups.first_row.clone();
            for (row, &group) in group_of_row.iter().enumerate() {
                last[group as usize] = row as u32;
            }
            take(values.as_ref(), &UInt32Array::from(last), None)?
        }
        AggFunc::Min | AggFunc::Max => {
            let compare = make_comparator(values.as_ref(), values.as_ref(), SortOptions::default())?;
            let better = if func == AggFunc::Min { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater };
            let mut best: Vec<Option<u32>> = vec![None; count];
            for (row, &group) in group_of_row.iter().enumerate() {
                if !valid(row) {
                    continue;
                }
                let slot = &mut best[group as usize];
                match slot {
                    Some(current) if compare(row, *current as usize) != better => {}
                    _ => *slot = Some(row as u32),
                }
            }
            take(values.as_ref(), &UInt32Array::from(best), None)?
        }
        AggFunc::Sum => match output {
            DataType::Int64 => {
                let values = cast(values, &DataType::Int64)?;
                let values = values.as_primitive::<Int64Type>();
                let mut sums = vec![0i64; count];
                for (row, &group) in group_of_row.iter().enumerate() {
                    if values.is_valid(row) {
                        sums[group as usize] = sums[group as usize].wrapping_add(values.value(row));
                    }
                }
                Arc::new(Int64Array::from(sums))
            }
            DataType::UInt64 => {
                let values = cast(values, &DataType::UInt64)?;
                let values = values.as_primitive::<UInt64Type>();
                let mut sums = vec![0u64; count];
                for (row, &group) in group_of_row.iter().enumerate() {
                    if values.is_valid(row) {
                        sums[group as usize] = sums[group as usize].wrapping_add(values.value(row));
                    }
                }
                Arc::new(UInt64Array::from(sums))
            }
            _ => {
                let (sums, _) = float_sums(values, group_of_row, count)?;
                Arc::new(Float64Array::from(sums))
            }
        },
        AggFunc::Mean => {
            let (sums, counts) = float_sums(values, group_of_row, count)?;
            let means: Float64Array = sums.iter().zip(&counts).map(|(&sum, &n)| (n > 0).then(|| sum / n as f64)).collect();
            Arc::new(means)
        }
        AggFunc::Std | AggFunc::Var => {
            // Welford's update per group: stable where a sum of squares would cancel.
            let values = cast(values, &DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            let mut moments = vec![(0u64, 0f64, 0f64); count];
            for (row, &group) in group_of_row.iter().enumerate() {
                if values.is_valid(row) {
                    let (n, mean, m2) = &mut moments[group as usize];
                    *n += 1;
                    let delta = values.value(row) - *mean;
                    *mean += delta / *n as f64;
                    *m2 += delta * (values.value(row) - *mean);
                }
            }
            let spread: Float64Array = moments
                .iter()
                .map(|&(n, _, m2)| {
                    (n > 1).then(|| {
                        let variance = m2 / (n - 1) as f64;
                        if func == AggFunc::Std { variance.sqrt() } else { variance }
                    })
                })
                .collect();
            Arc::new(spread)
        }
        AggFunc::NUnique => {
            let converter = RowConverter::new(vec![SortField::new(values.data_type().clone())])?;
            let encoded = converter.convert_columns(std::slice::from_ref(values))?;
            let mut seen: HashSet<(u32, &[u8])> = HashSet::new();
            let mut counts = vec![0u32; count];
            for (row, &group) in encoded.iter().zip(group_of_row) {
                if seen.insert((group, row.data())) {
                    counts[group as usize] += 1;
                }
            }
            Arc::new(UInt32Array::from(counts))
        }
    };
    if result.data_type() == output {
        Ok(result)
    } else {
        Ok(cast(&result, output)?)
    }
}

/// Per group: the sum of the non-null values as float64, and how many there were.
fn float_sums(values: &ArrayRef, group_of_row: &[u32], count: usize) -> Result<(Vec<f64>, Vec<u64>), ExecError> {
    let values = cast(values, &DataType::Float64)?;
    let values = values.as_primitive::<Float64Type>();
    let mut sums = vec![0f64; count];
    let mut counts = vec![0u64; count];
    for (row, &group) in group_of_row.iter().enumerate() {
        if values.is_valid(row) {
            sums[group as usize] += values.value(row);
            counts[group as usize] += 1;
        }
    }
    Ok((sums, counts))
}

/// The groups of `input` by `keys` with one column per aggregation: `schema`'s columns.
pub fn aggregate(input: ViewSet, keys: &[Expr], aggs: &[AggExpr], schema: SchemaRef) -> Result<ViewSet, ExecError> {
    let rows = input.num_rows();
    let key_arrays = dense_values(&input, keys)?;
    let groups = group_rows(&key_arrays, rows)?;
    let inputs: Vec<Expr> = aggs.iter().map(|agg| agg.input.clone()).collect();
    let values = dense_values(&input, &inputs)?;
    drop(input);
    let first_rows = UInt32Array::from(groups.first_row.clone());
    let mut columns = key_arrays
        .iter()
        .map(|key| Ok(take(key.as_ref(), &first_rows, None)?))
        .collect::<Result<Vec<ArrayRef>, ExecError>>()?;
    let outputs: Vec<ArrayRef> = pool().install(|| {
        aggs.par_iter()
            .zip(values.par_iter())
            .enumerate()
            .map(|(a, (agg, values))| aggregate_values(agg.func, values, &groups, schema.field(keys.len() + a).data_type()))
            .collect::<Result<_, ExecError>>()
    })?;
    columns.extend(outputs);
    for (column, field) in columns.iter_mut().zip(schema.fields()) {
        if column.data_type() != field.data_type() {
            *column = if groups.is_empty() { new_empty_array(field.data_type()) } else { cast(column, field.data_type())? };
        }
    }
    Ok(ViewSet {
        schema,
        chunks: vec![Chunk {
            columns,
            len: groups.len(),
            selection: None,
        }],
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::nodes::memory;

    #[test]
    fn groups_number_keys_by_first_appearance_across_morsels() {
        let rows = MORSEL_ROWS * 2 + 10;
        let keys: ArrayRef = Arc::new(Int32Array::from_iter((0..rows).map(|i| if i % 7 == 0 { None } else { Some(((rows - i) % 5) as i32) })));
        let groups = group_rows(std::slice::from_ref(&keys), rows).unwrap();
        let keys = keys.as_primitive::<arrow::datatypes::Int32Type>();
        // Every row's group starts at a row with the same key, and first rows ascend.
        assert!(groups.first_row.windows(2).all(|w| w[0] < w[1]));
        for (row, &group) in groups.group_of_row.iter().enumerate() {
            let first = groups.first_row[group as usize] as usize;
            assert_eq!(keys.is_valid(row), keys.is_valid(first));
            if keys.is_valid(row) {
                assert_eq!(keys.value(row), keys.value(first));
            }
        }
        assert_eq!(groups.len(), 6);
    }

    #[test]
    fn aggregates_per_group_with_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("a"), None, Some("b")])),
                Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0), Some(4.0), None])),
            ],
        )
        .unwrap();
        let view = memory(schema, &[batch]);
        let x = || Expr::col("x");
        let aggs = vec![
            AggExpr::new(AggFunc::Sum, x()).alias("sum"),
            AggExpr::new(AggFunc::Mean, x()).alias("mean"),
            AggExpr::new(AggFunc::Min, x()).alias("min"),
            AggExpr::new(AggFunc::Count, x()).alias("count"),
            AggExpr::new(AggFunc::Len, x()).alias("len"),
            AggExpr::new(AggFunc::Last, x()).alias("last"),
        ];
        let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
        let output = plan.aggregate(vec![Expr::col("k")], aggs.clone()).unwrap().schema().unwrap();
        let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
        let column = |i: usize| result.chunks[0].columns[i].clone();
        assert_eq!(column(0).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a"), Some("b"), None]);
        assert_eq!(column(1).as_primitive::<Float64Type>().values().to_vec(), vec![4.0, 0.0, 4.0]);
        assert_eq!(column(2).as_primitive::<Float64Type>().iter().collect::<Vec<_>>(), vec![Some(2.0), None, Some(4.0)]);
        assert_eq!(column(3).as_primitive::<Float64Type>().iter().collect::<Vec<_>>(), vec![Some(1.0), None, Some(4.0)]);
        assert_eq!(column(4).as_primitive::<arrow::datatypes::UInt32Type>().values().to_vec(), vec![2, 0, 1]);
        assert_eq!(column(5).as_primitive::<arrow::datatypes::UInt32Type>().values().to_vec(), vec![2, 2, 1]);
        assert_eq!(column(6).as_primitive::<Float64Type>().iter().collect::<Vec<_>>(), vec![Some(3.0), None, Some(4.0)]);
    }
}
