use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema, UInt64Type,
};
use relay_plan::{AggExpr, AggFunc, Expr};

use crate::aggregate::groups::IntegerIds;
use crate::aggregate::run::share_inputs;
use crate::pool::MORSEL_ROWS;
use crate::view::{Chunk, ViewSet};
use arrow::array::{Int32Array, StringArray};

use super::*;
use crate::nodes::memory;

/// A sort's selection is a permutation, not ascending: a morsel of it spans from its
/// least row to its greatest (it once took its first and last rows for the bounds).
#[test]
fn groups_over_a_sorted_input_follow_its_order() {
    let rows = MORSEL_ROWS * 3 + 5;
    let key = |i: usize| (!i.is_multiple_of(9)).then_some((i % 4) as i32);
    let batch = arrow::array::RecordBatch::try_from_iter(vec![
        (
            "k",
            Arc::new(Int32Array::from_iter((0..rows).map(key))) as ArrayRef,
        ),
        (
            "x",
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))) as _,
        ),
    ])
    .unwrap();
    let plan = Arc::new(relay_plan::LogicalPlan::memory(batch.schema(), vec![batch]));
    let descending = relay_plan::SortKey {
        expr: Expr::col("x"),
        descending: true,
        nulls_last: false,
    };
    let sorted = Arc::new(plan.sort(vec![descending]).unwrap());
    let aggs = vec![
        AggExpr::new(AggFunc::Sum, Expr::col("x")).alias("sum"),
        AggExpr::new(AggFunc::First, Expr::col("x")).alias("first"),
    ];
    let grouped = sorted.aggregate(vec![Expr::col("k")], aggs).unwrap();
    let result = crate::execute::execute(&grouped, &crate::profile::Profile::default())
        .unwrap()
        .record_batches()
        .unwrap();
    let batch = arrow::compute::concat_batches(&result[0].schema(), &result).unwrap();
    // Expected: groups in order of first appearance going down from the last row.
    let mut order: Vec<Option<i32>> = Vec::new();
    for i in (0..rows).rev() {
        if !order.contains(&key(i)) {
            order.push(key(i));
        }
    }
    let keys: Vec<Option<i32>> = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int32Type>()
        .iter()
        .collect();
    assert_eq!(keys, order);
    for (g, k) in order.iter().enumerate() {
        let members = (0..rows).filter(|&i| key(i) == *k).map(|i| i as f64);
        let sum = batch
            .column(1)
            .as_primitive::<arrow::datatypes::Float64Type>();
        let first = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(sum.value(g), members.clone().sum::<f64>());
        assert_eq!(first.value(g), members.fold(f64::MIN, f64::max));
    }
}

#[test]
fn groups_keep_their_first_appearance_across_morsels_and_runs() {
    let rows = MORSEL_ROWS * 9 + 10;
    let key = |i: usize| {
        if i.is_multiple_of(7) {
            None
        } else {
            Some(((rows - i) % 5) as i32)
        }
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, true),
        Field::new("x", DataType::Float64, true),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int32Array::from_iter((0..rows).map(key))),
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
        ],
    )
    .unwrap();
    let view = memory(schema, &[batch]);
    let aggs = vec![
        AggExpr::new(AggFunc::Len, Expr::col("x")).alias("len"),
        AggExpr::new(AggFunc::First, Expr::col("x")).alias("first"),
        AggExpr::new(AggFunc::Last, Expr::col("x")).alias("last"),
        AggExpr::new(AggFunc::Max, Expr::col("x")).alias("max"),
        AggExpr::new(AggFunc::Std, Expr::col("x")).alias("std"),
    ];
    let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
    let output = plan
        .aggregate(vec![Expr::col("k")], aggs.clone())
        .unwrap()
        .schema()
        .unwrap();
    let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
    let columns = &result.chunks[0].columns;
    // Expected, by a plain sequential pass.
    let mut order: Vec<Option<i32>> = Vec::new();
    for i in 0..rows {
        if !order.contains(&key(i)) {
            order.push(key(i));
        }
    }
    assert_eq!(
        columns[0]
            .as_primitive::<arrow::datatypes::Int32Type>()
            .iter()
            .collect::<Vec<_>>(),
        order
    );
    for (g, k) in order.iter().enumerate() {
        let members: Vec<f64> = (0..rows)
            .filter(|&i| key(i) == *k)
            .map(|i| i as f64)
            .collect();
        let n = members.len() as f64;
        let mean = members.iter().sum::<f64>() / n;
        let std = (members.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt();
        assert_eq!(
            columns[1]
                .as_primitive::<arrow::datatypes::UInt32Type>()
                .value(g) as usize,
            members.len()
        );
        assert_eq!(
            columns[2].as_primitive::<Float64Type>().value(g),
            members[0]
        );
        assert_eq!(
            columns[3].as_primitive::<Float64Type>().value(g),
            *members.last().unwrap()
        );
        assert_eq!(
            columns[4].as_primitive::<Float64Type>().value(g),
            *members.last().unwrap()
        );
        assert!((columns[5].as_primitive::<Float64Type>().value(g) - std).abs() < 1e-6 * std);
    }
}

#[test]
fn packed_keys_fall_back_to_the_row_format_mid_run_and_keep_first_appearance() {
    // (string, int) keys pack until a long string (or a null int) appears in a later
    // morsel; the groups keep their order and counts whichever way each run ends up.
    let rows = MORSEL_ROWS * 9 + 10;
    let long_from = MORSEL_ROWS * 5 + 3;
    let name = |i: usize| match i % 3 {
        0 => None,
        1 if i >= long_from => Some("a string over seven bytes".to_string()),
        r => Some(format!("s{r}")),
    };
    let number = |i: usize| {
        if i >= long_from && i.is_multiple_of(11) {
            None
        } else {
            Some(((rows - i) % 4) as i64)
        }
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter((0..rows).map(name))),
            Arc::new(Int64Array::from_iter((0..rows).map(number))),
        ],
    )
    .unwrap();
    let keys = [Expr::col("s"), Expr::col("n")];
    let aggs = vec![AggExpr::new(AggFunc::Len, Expr::col("n")).alias("len")];
    for view in [
        memory(schema.clone(), std::slice::from_ref(&batch)),
        memory(schema.clone(), &[batch.slice(0, long_from - 10)]),
    ] {
        let rows = view.num_rows();
        let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
        let output = plan
            .aggregate(keys.to_vec(), aggs.clone())
            .unwrap()
            .schema()
            .unwrap();
        let result = aggregate(view, &keys, &aggs, output).unwrap();
        let columns = &result.chunks[0].columns;
        #[allow(clippy::type_complexity)]
        let mut expected: Vec<((Option<String>, Option<i64>), u64)> = Vec::new();
        for i in 0..rows {
            let key = (name(i), number(i));
            match expected.iter_mut().find(|(k, _)| *k == key) {
                Some((_, count)) => *count += 1,
                None => expected.push((key, 1)),
            }
        }
        let names: Vec<Option<String>> = columns[0]
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect();
        let numbers: Vec<Option<i64>> = columns[1].as_primitive::<Int64Type>().iter().collect();
        let counts: Vec<u64> = cast(&columns[2], &DataType::UInt64)
            .unwrap()
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec();
        let got: Vec<_> = names.into_iter().zip(numbers).zip(counts).collect();
        assert_eq!(got, expected);
    }
}

#[test]
fn an_input_that_recurs_in_a_later_one_is_evaluated_once_with_the_same_results() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("x", DataType::Int64, true),
    ]));
    let rows = MORSEL_ROWS + 5;
    let x = |i: usize| (!i.is_multiple_of(13)).then_some(i as i64 % 100);
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| (i % 3) as i64),
            )),
            Arc::new(Int64Array::from_iter((0..rows).map(x))),
        ],
    )
    .unwrap();
    let lit = |v: i64| Expr::lit(Arc::new(Int64Array::from(vec![v])));
    let doubled = || Expr::col("x").binary(relay_plan::BinaryOp::Mul, lit(2));
    let aggs = vec![
        AggExpr::new(AggFunc::Sum, doubled()).alias("doubled"),
        AggExpr::new(
            AggFunc::Sum,
            doubled().binary(relay_plan::BinaryOp::Add, lit(1)),
        )
        .alias("plus_one"),
        AggExpr::new(AggFunc::Max, doubled().alias("again")).alias("max"),
    ];
    let (inputs, shared) = share_inputs(&aggs);
    assert!(shared[0].is_some() && shared[1].is_none() && shared[2].is_none());
    assert!(matches!(&inputs[2], Expr::Column(name) if Some(name) == shared[0].as_ref()));
    let view = memory(schema, &[batch]);
    let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
    let output = plan
        .aggregate(vec![Expr::col("k")], aggs.clone())
        .unwrap()
        .schema()
        .unwrap();
    let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
    let columns = &result.chunks[0].columns;
    for k in 0..3 {
        let values: Vec<i64> = (0..rows)
            .filter(|i| i % 3 == k)
            .filter_map(x)
            .map(|v| v * 2)
            .collect();
        let int = |c: usize| {
            cast(&columns[c], &DataType::Int64)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(k)
        };
        assert_eq!(int(1), values.iter().sum::<i64>());
        assert_eq!(int(2), values.iter().map(|v| v + 1).sum::<i64>());
        assert_eq!(int(3), *values.iter().max().unwrap());
    }
}

#[test]
fn dense_selections_aggregate_over_their_span_unless_a_dropped_row_fails() {
    use arrow::array::Decimal128Array;
    // x: decimals; y: an int64 that a strict cast to int8 rejects only on rows the
    // selection drops in the second chunk.
    let rows = MORSEL_ROWS + 100;
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("x", DataType::Decimal128(15, 2), true),
        Field::new("y", DataType::Int64, false),
    ]));
    let x = |i: usize| (!i.is_multiple_of(17)).then_some(i as i128 * 3 - 50);
    let chunk = |bad: bool| {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| ["a", "bb", "ccc"][i % 3]),
            )),
            Arc::new(
                Decimal128Array::from_iter((0..rows).map(x))
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|i| {
                if bad && i % 10 == 9 {
                    1000
                } else {
                    (i % 100) as i64
                }
            }))),
        ];
        Chunk {
            columns,
            len: rows,
            selection: Some(Arc::new((0..rows as u32).filter(|i| i % 10 != 9).collect())),
        }
    };
    let view = ViewSet {
        schema: schema.clone(),
        chunks: vec![chunk(false), chunk(true)],
    };
    let aggs = vec![
        AggExpr::new(AggFunc::Sum, Expr::col("x")).alias("sum"),
        AggExpr::new(AggFunc::Mean, Expr::col("x")).alias("mean"),
        AggExpr::new(AggFunc::Len, Expr::col("x")).alias("len"),
        AggExpr::new(
            AggFunc::Max,
            Expr::Cast {
                input: Arc::new(Expr::col("y")),
                to: DataType::Int8,
            },
        )
        .alias("max"),
    ];
    let plan = Arc::new(relay_plan::LogicalPlan::memory(schema.clone(), vec![]));
    let output = plan
        .aggregate(vec![Expr::col("k")], aggs.clone())
        .unwrap()
        .schema()
        .unwrap();
    let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
    let columns = &result.chunks[0].columns;
    assert_eq!(
        columns[0].as_string::<i32>().iter().collect::<Vec<_>>(),
        [Some("a"), Some("bb"), Some("ccc")]
    );
    for k in 0..3 {
        let members: Vec<usize> = (0..rows).filter(|i| i % 10 != 9 && i % 3 == k).collect();
        let values: Vec<i128> = members.iter().filter_map(|&i| x(i)).collect();
        let sum: i128 = values.iter().sum::<i128>() * 2;
        assert_eq!(columns[1].as_primitive::<Decimal128Type>().value(k), sum);
        let mean = columns[2].as_primitive::<Float64Type>().value(k);
        assert!((mean - sum as f64 / 100.0 / (values.len() * 2) as f64).abs() < 1e-9);
        assert_eq!(
            cast(&columns[3], &DataType::UInt64)
                .unwrap()
                .as_primitive::<UInt64Type>()
                .value(k),
            members.len() as u64 * 2
        );
        let max = members.iter().map(|&i| (i % 100) as i64).max().unwrap();
        assert_eq!(
            cast(&columns[4], &DataType::Int64)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(k),
            max
        );
    }
}

#[test]
fn many_groups_merge_in_parallel_in_order_of_first_appearance() {
    // Direct: runs that share some keys, against a sequential first-appearance numbering.
    let runs: Vec<Vec<u128>> = vec![vec![5, 1, 9], vec![1, 7, 5, 3], vec![], vec![3, 8, 9, 2]];
    let (mappings, new_groups, groups) = merge_wide(&runs);
    let mut order: Vec<u128> = Vec::new();
    for (run, keys) in runs.iter().enumerate() {
        let mut new = Vec::new();
        for (local, key) in keys.iter().enumerate() {
            if !order.contains(key) {
                order.push(*key);
                new.push(local as u32);
            }
            assert_eq!(order[mappings[run][local] as usize], *key);
        }
        assert_eq!(new_groups[run], new);
    }
    assert_eq!(groups, order.len());
    // Through the aggregation: more groups than `PARALLEL_MERGE_GROUPS`, a null key, and
    // keys that recur in later runs; keys far apart, so the runs hash them.
    let rows = MORSEL_ROWS * 6;
    sums_and_firsts_match_a_sequential_pass(rows, |i| {
        if i % 1000 == 999 {
            None
        } else {
            Some(((i * 7919) % (rows / 2)) as i64 * 1_000_003)
        }
    });
}

/// Groups `k` (`key(i)` for row `i` of `rows`) with the sum and first of `x = i`, and checks
/// them against a plain sequential pass, group order included.
fn sums_and_firsts_match_a_sequential_pass(rows: usize, key: impl Fn(usize) -> Option<i64>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("x", DataType::Int64, false),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter((0..rows).map(&key))),
            Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64))),
        ],
    )
    .unwrap();
    let aggs = vec![
        AggExpr::new(AggFunc::Sum, Expr::col("x")).alias("sum"),
        AggExpr::new(AggFunc::First, Expr::col("x")).alias("first"),
    ];
    let plan = Arc::new(relay_plan::LogicalPlan::memory(schema.clone(), vec![]));
    let output = plan
        .aggregate(vec![Expr::col("k")], aggs.clone())
        .unwrap()
        .schema()
        .unwrap();
    let result = aggregate(memory(schema, &[batch]), &[Expr::col("k")], &aggs, output).unwrap();
    let columns = &result.chunks[0].columns;
    let mut expected: Vec<(Option<i64>, i64, i64)> = Vec::new();
    let mut index: std::collections::HashMap<Option<i64>, usize> = std::collections::HashMap::new();
    for i in 0..rows {
        match index.get(&key(i)) {
            Some(&g) => expected[g].1 += i as i64,
            None => {
                index.insert(key(i), expected.len());
                expected.push((key(i), i as i64, i as i64));
            }
        }
    }
    let got: Vec<(Option<i64>, i64, i64)> = (0..result.chunks[0].len)
        .map(|g| {
            let int = |c: usize| cast(&columns[c], &DataType::Int64).unwrap();
            let k = int(0);
            let k = k.as_primitive::<Int64Type>();
            (
                k.is_valid(g).then(|| k.value(g)),
                int(1).as_primitive::<Int64Type>().value(g),
                int(2).as_primitive::<Int64Type>().value(g),
            )
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn integer_keys_in_a_narrow_range_index_an_array_that_grows_both_ways() {
    let rows = MORSEL_ROWS * 6;
    // Sorted, four rows a key, one key in four used (TPC-H's order keys): every run direct.
    sums_and_firsts_match_a_sequential_pass(rows, |i| Some((i / 4 * 4) as i64 + 1));
    // Falling keys, and many groups scattered over a range the array still takes.
    sums_and_firsts_match_a_sequential_pass(rows, |i| Some(-3 * i as i64));
    sums_and_firsts_match_a_sequential_pass(rows, |i| {
        if i % 7 == 0 {
            None
        } else {
            Some(((i * 7919) % (rows / 2)) as i64)
        }
    });
    // Keys at both ends of i64 (the array cannot span them) and a run of rising ones.
    sums_and_firsts_match_a_sequential_pass(rows, |i| match i % 3 {
        0 => Some(i64::MIN + (i % 5) as i64),
        1 => Some(i64::MAX - (i % 5) as i64),
        _ => Some(i as i64),
    });
}

#[test]
fn a_direct_table_grows_to_take_keys_and_hashes_a_sparse_range() {
    let mut keys: Vec<Option<i64>> = Vec::new();
    let mut ids = IntegerIds::new(1000);
    let insert = |ids: &mut IntegerIds, keys: &mut Vec<Option<i64>>, key: i64| {
        let id = ids.get_or_insert(key, keys.len() as u32, keys);
        if id as usize == keys.len() {
            keys.push(Some(key));
        }
        id
    };
    for key in [10, 11, 5, 10, -40_000, 11] {
        insert(&mut ids, &mut keys, key);
    }
    assert!(matches!(ids, IntegerIds::Direct { .. }));
    assert_eq!(keys, vec![Some(10), Some(11), Some(5), Some(-40_000)]);
    assert_eq!(insert(&mut ids, &mut keys, 5), 2);
    // A key a million away from four groups: the range would be too sparse.
    assert_eq!(insert(&mut ids, &mut keys, 1_000_000), 4);
    assert!(matches!(ids, IntegerIds::Hashed(_)));
    for (id, key) in keys.clone().into_iter().enumerate() {
        assert_eq!(insert(&mut ids, &mut keys, key.unwrap()), id as u32);
    }
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
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b"),
                Some("a"),
                None,
                Some("b"),
            ])),
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                None,
                Some(3.0),
                Some(4.0),
                None,
            ])),
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
    let output = plan
        .aggregate(vec![Expr::col("k")], aggs.clone())
        .unwrap()
        .schema()
        .unwrap();
    let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
    let column = |i: usize| result.chunks[0].columns[i].clone();
    assert_eq!(
        column(0).as_string::<i32>().iter().collect::<Vec<_>>(),
        vec![Some("a"), Some("b"), None]
    );
    assert_eq!(
        column(1).as_primitive::<Float64Type>().values().to_vec(),
        vec![4.0, 0.0, 4.0]
    );
    assert_eq!(
        column(2)
            .as_primitive::<Float64Type>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some(2.0), None, Some(4.0)]
    );
    assert_eq!(
        column(3)
            .as_primitive::<Float64Type>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some(1.0), None, Some(4.0)]
    );
    assert_eq!(
        column(4)
            .as_primitive::<arrow::datatypes::UInt32Type>()
            .values()
            .to_vec(),
        vec![2, 0, 1]
    );
    assert_eq!(
        column(5)
            .as_primitive::<arrow::datatypes::UInt32Type>()
            .values()
            .to_vec(),
        vec![2, 2, 1]
    );
    assert_eq!(
        column(6)
            .as_primitive::<Float64Type>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some(3.0), None, Some(4.0)]
    );
}
