//! Predicate pushdown: filters move as close to the scan as they can, so that fewer rows flow
//! through the operators above and the scan can skip record batches.
//!
//! - A filter above a projection moves below it. Columns the projection renames or computes are
//!   replaced in the predicate by what the projection computes for them
//!   (`Expr::substitute_columns`), then folded (substituting a constant may make the predicate
//!   constant). The projection then runs on the filtered rows only.
//! - A filter above a filter merges into one conjunction (inner conjuncts first).
//! - A filter directly on a scan moves its conjuncts into `Scan.filters`.
//! - A filter never moves below a slice or a take: filtering then picking rows by position
//!   keeps other rows than picking then filtering. Nor below a reinterpretation (the predicate
//!   reads the reinterpreted types), attached arrays (their input must keep its rows) or memory.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::expr::Expr;
use crate::optimizer::constant_folding::fold_expr;
use crate::optimizer::{OptimizerRule, literal_bool, map_input, strip_alias};
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
        LogicalPlan::Project { input: inner, exprs } => {
            let computed: HashMap<String, Expr> = exprs
                .iter()
                .map(|expr| (expr.output_name(), strip_alias(expr.clone())))
                .collect();
            // Only a predicate over the projection's outputs (a hand-built plan may be wrong).
            if !predicate.columns().iter().all(|name| computed.contains_key(name)) {
                return None;
            }
            let substituted = fold_expr(predicate.substitute_columns(&|name| computed.get(name).cloned()));
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
        LogicalPlan::Scan { table, filters } => {
            let schema = table.schema();
            if !predicate.columns().iter().all(|name| schema.index_of(name).is_ok()) {
                return None;
            }
            let mut filters = filters.clone();
            filters.extend(predicate.conjuncts());
            Some(Arc::new(LogicalPlan::Scan {
                table: table.clone(),
                filters,
            }))
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
        LogicalPlan::Sort { .. } | LogicalPlan::Distinct { .. } | LogicalPlan::Aggregate { .. } => None,
    }
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
                    Expr::col("id").binary(BinaryOp::Mul, int(2)).alias("double"),
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
        assert!(Arc::ptr_eq(&PredicatePushdown.rewrite(plan.clone()).unwrap(), &plan));
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
        assert!(Arc::ptr_eq(&PredicatePushdown.rewrite(plan.clone()).unwrap(), &plan));
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
        assert!(Arc::ptr_eq(&PredicatePushdown.rewrite(plan.clone()).unwrap(), &plan));
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
            file.scan().distinct(Some(vec!["age".into()]), Keep::First).unwrap(),
            file.scan()
                .aggregate(vec![Expr::col("age")], vec![AggExpr::new(AggFunc::Sum, Expr::col("id"))])
                .unwrap(),
        ];
        for input in inputs {
            let plan = Arc::new(Arc::new(input).filter(gt("age", 3)).unwrap());
            let (before, after, _) = run_rule(&PredicatePushdown, &plan);
            assert_eq!(before, after);
        }
    }
}
