//! Predicate pushdown: filters move as close to the scan as they can, so that fewer rows flow
//! through the operators above and the scan can skip record batches.
//!
//! - A filter above a projection moves below it. Columns the projection renames or computes are
//!   replaced in the predicate by what the projection computes for them
//!   (`Expr::substitute_columns`), then folded (substituting a constant may make the predicate
//!   constant). The projection then runs on the filtered rows only.
//! - A filter above a filter merges into one conjunction (inner conjuncts first).
//! - A filter directly on a scan moves its conjuncts into `Scan.filters`, on a read (decoded
//!   or several files) into `Read.filters`, so each piece is filtered right after decoding.
//! - A filter above a join: each conjunct over the columns of one side moves into that side
//!   when the join type allows it (`push_into_join`); the others stay above the join.
//! - A filter never moves below a slice or a take: filtering then picking rows by position
//!   keeps other rows than picking then filtering. Nor below a reinterpretation (the predicate
//!   reads the reinterpreted types), attached arrays (their input must keep its rows) or memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::expr::Expr;
use crate::join::{JoinColumn, JoinSide};
use crate::optimizer::constant_folding::fold_expr;
use crate::optimizer::{
    OptimizerRule, literal_bool, map_input, strip_alias, with_filters, with_new_inputs,
};
use crate::plan::LogicalPlan;

/// Moves filters through projections and into scans, merging stacked filters.
#[derive(Debug, Default, Clone, Copy)]
pub struct PredicatePushdown;

impl OptimizerRule for PredicatePushdown {
    fn name(&self) -> &'static str {
        "predicate_pushdown"
    }

    fn rewrite(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
        push_down(&plan)
    }
}

fn push_down(plan: &Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
    match plan.as_ref() {
        LogicalPlan::Filter { input, predicate } => {
            let pushed_input = push_down(input)?;
            Ok(match push_filter(&pushed_input, predicate.clone()) {
                Some(pushed) => pushed,
                None if Arc::ptr_eq(&pushed_input, input) => plan.clone(),
                None => Arc::new(LogicalPlan::Filter {
                    input: pushed_input,
                    predicate: predicate.clone(),
                }),
            })
        }
        _ => map_input(plan, push_down),
    }
}

/// `predicate` applied to the rows of `input`, with the filter moved as far down as it goes;
/// None when it cannot move (it stays a filter right above `input`).
fn push_filter(input: &Arc<LogicalPlan>, predicate: Expr) -> Option<Arc<LogicalPlan>> {
    match input.as_ref() {
        LogicalPlan::Filter {
            input: inner,
            predicate: inner_predicate,
        } => {
            let merged = inner_predicate.clone().and(predicate);
            Some(filter_below(inner, merged))
        }
        LogicalPlan::Project {
            input: inner,
            exprs,
        } => {
            let computed: HashMap<String, Expr> = exprs
                .iter()
                .map(|expr| (expr.output_name(), strip_alias(expr.clone())))
                .collect();
            // Only a predicate over the projection's outputs (a hand-built plan may be wrong).
            if !predicate
                .columns()
                .iter()
                .all(|name| computed.contains_key(name))
            {
                return None;
            }
            let substituted =
                fold_expr(predicate.substitute_columns(&|name| computed.get(name).cloned()));
            let filtered = if literal_bool(&substituted) == Some(Some(true)) {
                inner.clone()
            } else {
                filter_below(inner, substituted)
            };
            Some(Arc::new(LogicalPlan::Project {
                input: filtered,
                exprs: exprs.clone(),
            }))
        }
        LogicalPlan::Scan { filters, .. } | LogicalPlan::Read { filters, .. } => {
            let schema = input.schema().ok()?;
            if !predicate
                .columns()
                .iter()
                .all(|name| schema.index_of(name).is_ok())
            {
                return None;
            }
            let mut filters = filters.clone();
            filters.extend(predicate.conjuncts());
            Some(Arc::new(with_filters(input, filters)))
        }
        LogicalPlan::Slice { .. } => None,
        // A filter never moves below a take (positions refer to the unfiltered rows), nor
        // below memory, a reinterpretation or attached arrays.
        LogicalPlan::Take { .. }
        | LogicalPlan::Memory { .. }
        | LogicalPlan::Reinterpret { .. }
        | LogicalPlan::AttachColumns { .. } => None,
        // Nor below a sort (a top-k keeps the first k rows before any filter), a unique (which
        // row of equal ones is kept depends on the rows before it) or an aggregation (groups
        // are made of unfiltered rows).
        LogicalPlan::Sort { .. } | LogicalPlan::Distinct { .. } | LogicalPlan::Aggregate { .. } => {
            None
        }
        LogicalPlan::Join { .. } => push_into_join(input, predicate),
    }
}

/// `predicate` over the output of `join`, with each conjunct that reads the columns of one
/// side only moved into that side when the join type allows it (`JoinType::left_filter_commutes`
/// / `right_filter_commutes`: both sides for inner, the preserved side of left and right joins,
/// the left side of semi and anti joins, neither for full joins). Output names are mapped back
/// to the input's (a suffixed right column is filtered under its own name). The conjuncts that
/// stay form a filter above the join; None when none moves.
fn push_into_join(join: &Arc<LogicalPlan>, predicate: Expr) -> Option<Arc<LogicalPlan>> {
    let LogicalPlan::Join {
        left,
        right,
        how,
        columns,
        ..
    } = join.as_ref()
    else {
        return None;
    };
    let source: HashMap<&str, &JoinColumn> =
        columns.iter().map(|c| (c.output.as_str(), c)).collect();
    // The side every column of `conjunct` comes from, when it is one side.
    let side_of = |conjunct: &Expr| -> Option<JoinSide> {
        let mut sides = conjunct
            .columns()
            .into_iter()
            .map(|name| source.get(name.as_str()).map(|c| c.side));
        let first = sides.next()??;
        sides.all(|side| side == Some(first)).then_some(first)
    };
    let (mut to_left, mut to_right, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for conjunct in predicate.conjuncts() {
        match side_of(&conjunct) {
            Some(JoinSide::Left) if how.left_filter_commutes() => to_left.push(conjunct),
            Some(JoinSide::Right) if how.right_filter_commutes() => to_right.push(conjunct),
            _ => kept.push(conjunct),
        }
    }
    if to_left.is_empty() && to_right.is_empty() {
        return None;
    }
    let renamed = |conjuncts: Vec<Expr>| {
        Expr::conjunction(conjuncts)
            .map(|e| e.substitute_columns(&|name| source.get(name).map(|c| Expr::col(&c.name))))
    };
    let new_left = match renamed(to_left) {
        Some(predicate) => filter_below(left, predicate),
        None => left.clone(),
    };
    let new_right = match renamed(to_right) {
        Some(predicate) => filter_below(right, predicate),
        None => right.clone(),
    };
    let joined = Arc::new(with_new_inputs(join, new_left, new_right));
    Some(match Expr::conjunction(kept) {
        Some(rest) => Arc::new(LogicalPlan::Filter {
            input: joined,
            predicate: rest,
        }),
        None => joined,
    })
}

/// A filter of `predicate` over `input`, pushed down as far as it goes.
fn filter_below(input: &Arc<LogicalPlan>, predicate: Expr) -> Arc<LogicalPlan> {
    push_filter(input, predicate.clone()).unwrap_or_else(|| {
        Arc::new(LogicalPlan::Filter {
            input: input.clone(),
            predicate,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::BinaryOp;
    use crate::optimizer::test_support::*;

    fn gt(name: &str, value: i64) -> Expr {
        Expr::col(name).binary(BinaryOp::Gt, int(value))
    }

    #[test]
    fn a_filter_on_a_scan_moves_into_the_scan() {
        let file = TestFile::people();
        let plan = Arc::new(file.scan().filter(gt("age", 3).and(gt("id", 1))).unwrap());
        let (before, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert!(
            before.starts_with("FILTER ((col(\"age\") > 3) & (col(\"id\") > 1))\n  SCAN "),
            "{before}"
        );
        assert_eq!(
            shown(&rewritten, &file),
            "SCAN FILE columns=[id, age, score, name, city, flag] rows=0..30 filters=[(col(\"age\") > 3), (col(\"id\") > 1)]\n"
        );
    }

    #[test]
    fn stacked_filters_merge_into_the_scan() {
        let file = TestFile::people();
        let plan = Arc::new(file.scan().filter(gt("age", 3)).unwrap());
        let plan = Arc::new(plan.filter(gt("id", 1)).unwrap());
        let (_, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SCAN FILE columns=[id, age, score, name, city, flag] rows=0..30 filters=[(col(\"age\") > 3), (col(\"id\") > 1)]\n"
        );
    }

    #[test]
    fn filters_move_below_renames_and_computed_columns() {
        let file = TestFile::people();
        let plan = Arc::new(
            file.scan()
                .project(vec![
                    Expr::col("age").alias("years"),
                    Expr::col("id")
                        .binary(BinaryOp::Mul, int(2))
                        .alias("double"),
                    Expr::col("name"),
                ])
                .unwrap(),
        );
        let plan = Arc::new(plan.filter(gt("years", 20).and(gt("double", 10))).unwrap());
        let (before, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert_eq!(
            before.lines().take(2).collect::<Vec<_>>(),
            [
                "FILTER ((col(\"years\") > 20) & (col(\"double\") > 10))",
                "  SELECT [col(\"age\").alias(\"years\"), (col(\"id\") * 2).alias(\"double\"), col(\"name\")]"
            ]
        );
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [col(\"age\").alias(\"years\"), (col(\"id\") * 2).alias(\"double\"), col(\"name\")]\n  \
             SCAN FILE columns=[id, age, score, name, city, flag] rows=0..30 filters=[(col(\"age\") > 20), ((col(\"id\") * 2) > 10)]\n"
        );
    }

    #[test]
    fn a_predicate_on_a_constant_column_folds_away() {
        let file = TestFile::people();
        let plan = Arc::new(
            file.scan()
                .project(vec![Expr::col("id"), int(5).alias("five")])
                .unwrap(),
        );
        let plan = Arc::new(plan.filter(gt("five", 3)).unwrap());
        let (_, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [col(\"id\"), 5.alias(\"five\")]\n  SCAN FILE columns=[id, age, score, name, city, flag] rows=0..30\n"
        );
    }

    #[test]
    fn filters_stop_at_a_slice_but_merge_above_it() {
        let file = TestFile::people();
        let filtered = Arc::new(file.scan().filter(gt("age", 3)).unwrap());
        let sliced = Arc::new(filtered.slice(2, 5));
        let plan = Arc::new(sliced.filter(gt("id", 1)).unwrap());
        let plan = Arc::new(plan.filter(gt("id", 2)).unwrap());
        let (before, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert_eq!(before.lines().count(), 5, "{before}");
        assert_eq!(
            shown(&rewritten, &file),
            "FILTER ((col(\"id\") > 1) & (col(\"id\") > 2))\n  SLICE offset=2 length=5\n    \
             SCAN FILE columns=[id, age, score, name, city, flag] rows=0..30 filters=[(col(\"age\") > 3)]\n"
        );
    }

    #[test]
    fn filters_stop_at_takes_and_reinterpretations() {
        let file = TestFile::people();
        let taken = Arc::new(file.scan().take(&[5, 1, 3], 30).unwrap());
        let plan = Arc::new(taken.filter(gt("age", 2)).unwrap());
        assert!(Arc::ptr_eq(
            &PredicatePushdown.rewrite(plan.clone()).unwrap(),
            &plan
        ));
        let reinterpreted = Arc::new(
            file.scan()
                .reinterpret(vec![("id".into(), arrow::datatypes::DataType::Float64)])
                .unwrap(),
        );
        let plan = Arc::new(
            reinterpreted
                .filter(Expr::col("id").binary(BinaryOp::Gt, float(0.5)))
                .unwrap(),
        );
        assert!(Arc::ptr_eq(
            &PredicatePushdown.rewrite(plan.clone()).unwrap(),
            &plan
        ));
        // Below a take, a filter still moves into the scan.
        let filtered = Arc::new(file.scan().filter(gt("age", 2)).unwrap());
        let plan = Arc::new(filtered.take(&[0, 2], 20).unwrap());
        let (_, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        let text = shown(&rewritten, &file);
        assert!(text.contains("filters=[(col(\"age\") > 2)]"), "{text}");
    }

    #[test]
    fn a_filter_that_cannot_move_gives_the_same_plan() {
        let file = TestFile::people();
        let plan = Arc::new(file.scan().slice(0, 10));
        let plan = Arc::new(LogicalPlan::Slice {
            input: plan,
            offset: 1,
            length: 3,
        });
        let plan = Arc::new(plan.filter(gt("age", 3)).unwrap());
        assert!(Arc::ptr_eq(
            &PredicatePushdown.rewrite(plan.clone()).unwrap(),
            &plan
        ));
    }

    #[test]
    fn a_filter_stays_above_sorts_unique_and_aggregations() {
        use crate::expr::{AggExpr, AggFunc, Keep, SortKey};
        let file = TestFile::people();
        let key = SortKey {
            expr: Expr::col("age"),
            descending: false,
            nulls_last: false,
        };
        let inputs = [
            file.scan().top_k(3, vec![key]).unwrap(),
            file.scan()
                .distinct(Some(vec!["age".into()]), Keep::First)
                .unwrap(),
            file.scan()
                .aggregate(
                    vec![Expr::col("age")],
                    vec![AggExpr::new(AggFunc::Sum, Expr::col("id"))],
                )
                .unwrap(),
        ];
        for input in inputs {
            let plan = Arc::new(Arc::new(input).filter(gt("age", 3)).unwrap());
            let (before, after, _) = run_rule(&PredicatePushdown, &plan);
            assert_eq!(before, after);
        }
    }

    #[test]
    fn a_filter_on_a_read_moves_into_the_read() {
        let data = TestDataset::parts();
        let plan = Arc::new(data.read().filter(gt("part", 0).and(gt("id", 12))).unwrap());
        let (before, after, _) = run_rule(&PredicatePushdown, &plan);
        assert_eq!(
            before,
            "FILTER ((col(\"part\") > 0) & (col(\"id\") > 12))\n  READ ipc DIR files=3/3 columns=[id, age, part]\n"
        );
        assert_eq!(
            after,
            "READ ipc DIR files=3/3 columns=[id, age, part] filters=[(col(\"part\") > 0), (col(\"id\") > 12)]\n"
        );
    }

    /// `people` joined with itself on id (`how`): the right columns are suffixed `_right`.
    fn self_join(file: &TestFile, how: crate::join::JoinType) -> Arc<LogicalPlan> {
        Arc::new(
            file.scan()
                .join(
                    &file.scan(),
                    vec![Expr::col("id")],
                    vec![Expr::col("id")],
                    how,
                    "_right",
                )
                .unwrap(),
        )
    }

    #[test]
    fn filters_on_one_side_of_an_inner_join_move_into_that_side() {
        use crate::join::JoinType;
        let file = TestFile::people();
        let both = Expr::col("age")
            .binary(BinaryOp::Add, Expr::col("age_right"))
            .binary(BinaryOp::Gt, int(10));
        let predicate = gt("age", 3).and(gt("age_right", 5)).and(both.clone());
        let plan = Arc::new(
            self_join(&file, JoinType::Inner)
                .filter(predicate.clone())
                .unwrap(),
        );
        let (before, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert!(before.starts_with("FILTER "), "{before}");
        let text = shown(&rewritten, &file);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "FILTER ((col(\"age\") + col(\"age_right\")) > 10)",
            "{text}"
        );
        assert!(lines[1].starts_with("  JOIN how=inner"), "{text}");
        // The right side's column is filtered under its own name.
        assert!(lines[2].ends_with("filters=[(col(\"age\") > 3)]"), "{text}");
        assert!(lines[3].ends_with("filters=[(col(\"age\") > 5)]"), "{text}");

        // A left join moves only the left side's conjuncts; a semi join its (left) filter.
        let plan = Arc::new(
            self_join(&file, JoinType::Left)
                .filter(predicate.clone())
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        let text = shown(&rewritten, &file);
        assert!(
            text.starts_with("FILTER ((col(\"age_right\") > 5) & "),
            "{text}"
        );
        assert_eq!(text.matches("filters=").count(), 1, "{text}");
        assert!(text.contains("filters=[(col(\"age\") > 3)]\n    SCAN FILE columns=[id, age, score, name, city, flag] rows=0..30\n"), "{text}");
        let plan = Arc::new(
            self_join(&file, JoinType::Semi)
                .filter(gt("age", 3))
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert!(
            shown(&rewritten, &file).starts_with("JOIN how=semi"),
            "{}",
            shown(&rewritten, &file)
        );
        // A right join moves the right side's conjuncts.
        let plan = Arc::new(
            self_join(&file, JoinType::Right)
                .filter(gt("age_right", 5))
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&PredicatePushdown, &plan);
        assert!(
            shown(&rewritten, &file).ends_with("filters=[(col(\"age\") > 5)]\n"),
            "{}",
            shown(&rewritten, &file)
        );
    }

    #[test]
    fn a_filter_stays_above_a_full_join() {
        let file = TestFile::people();
        let plan = Arc::new(
            self_join(&file, crate::join::JoinType::Full)
                .filter(gt("age", 3).and(gt("age_right", 5)))
                .unwrap(),
        );
        assert!(Arc::ptr_eq(
            &PredicatePushdown.rewrite(plan.clone()).unwrap(),
            &plan
        ));
    }
}
