//! The optimizer: rules that rewrite a logical plan into a cheaper one with the same result.
//!
//! Every rule implements `OptimizerRule`; the driver runs them in order and checks after each
//! that the output schema (names and types) did not change, so a faulty rule fails loudly
//! instead of returning wrong columns.
//!
//! The default rules, in the order they run (`Optimizer::default().rule_names()`):
//!
//! 1. `constant_folding`: evaluates sub-expressions without column references at plan time and
//!    simplifies boolean identities (`x & true`, `~~x`); drops filters that are always true.
//! 2. `predicate_pushdown`: moves filters below projections (substituting computed columns),
//!    merges stacked filters and hands filters on a scan or read to it (`Scan.filters`,
//!    `Read.filters`).
//! 3. `projection_pruning`: scans and reads (whose files then decode only those columns) read
//!    only the columns something above reads; stacked
//!    projections merge; projections that change nothing disappear.
//! 4. `batch_pruning`: narrows a filtered scan's rows to the record batches whose min/max
//!    statistics allow a matching row, and records those batches on the scan (`Scan.batches`),
//!    so that batches skipped in between are not read either;
//!    drops from a filtered read the files whose partition values, and the pieces whose
//!    statistics, rule out every row.
//! 5. `conjunct_reordering`: orders the conjuncts of each filter cheap and selective first.
//!
//! Rules only ever see pure expressions: evaluating an expression has no effect besides its
//! value, so expressions may be dropped, duplicated or reordered.
//!
//! Filters never move below a slice or a take (both pick rows by position), a reinterpretation
//! (the predicate reads the new types) or attached arrays (their input must keep its rows);
//! below a reinterpretation or attached arrays every column is kept. Rules still rewrite the
//! plan underneath these nodes.
//!
//! Joins have two inputs (`map_input` rewrites both). A filter conjunct over one side's
//! columns moves into that side where the join type allows it, and each side reads only the
//! join's output columns that something above reads, plus its keys.

use std::sync::Arc;

use crate::error::{PlanError, Result};
use crate::expr::Expr;
use crate::plan::LogicalPlan;

mod batch_pruning;
mod conjunct_reordering;
mod constant_folding;
mod predicate_pushdown;
mod projection_pruning;
#[cfg(test)]
pub(crate) mod test_support;

pub use batch_pruning::{BatchPruning, page_row_ranges, pruned_read, surviving_batches};
pub use conjunct_reordering::{ConjunctReordering, estimate_cost, estimate_selectivity};
pub use constant_folding::{ConstantFolding, fold_expr};
pub use predicate_pushdown::PredicatePushdown;
pub use projection_pruning::ProjectionPruning;

pub trait OptimizerRule: Send + Sync {
    fn name(&self) -> &'static str;
    /// The rewritten plan (or the same one when the rule does not apply).
    fn rewrite(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>>;
}

pub struct Optimizer {
    rules: Vec<Box<dyn OptimizerRule>>,
}

/// The plan after each rule that changed it, for `explain()`.
pub type Trace = Vec<(&'static str, String)>;

impl Default for Optimizer {
    /// The rules in the order that lets each build on the previous: folding first so that
    /// pushdown moves simplified predicates; pushdown before pruning so that the columns a
    /// pushed filter reads are known where the scan is; batch pruning once filters sit in
    /// scans (it also computes the statistics reordering uses); reordering last, as it only
    /// changes the order of the conjuncts the other rules produced.
    fn default() -> Self {
        Optimizer {
            rules: vec![
                Box::new(ConstantFolding),
                Box::new(PredicatePushdown),
                Box::new(ProjectionPruning),
                Box::new(BatchPruning),
                Box::new(ConjunctReordering::default()),
            ],
        }
    }
}

/// The names of the default rules, in the order they run (for `explain()`).
pub fn explain_rules() -> Vec<&'static str> {
    Optimizer::default().rule_names()
}

fn schema_text(plan: &LogicalPlan) -> Result<String> {
    let schema = plan.schema()?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), relay_storage::type_name(f.data_type())))
        .collect::<Vec<_>>()
        .join(", "))
}

impl Optimizer {
    pub fn with_rules(rules: Vec<Box<dyn OptimizerRule>>) -> Self {
        Optimizer { rules }
    }

    pub fn rule_names(&self) -> Vec<&'static str> {
        self.rules.iter().map(|r| r.name()).collect()
    }

    pub fn optimize(&self, plan: Arc<LogicalPlan>) -> Result<(Arc<LogicalPlan>, Trace)> {
        let before = schema_text(&plan)?;
        let mut plan = plan;
        let mut trace = Trace::new();
        for rule in &self.rules {
            let rewritten = rule.rewrite(plan.clone())?;
            let after = schema_text(&rewritten)?;
            if after != before {
                return Err(PlanError::RuleBrokeSchema {
                    rule: rule.name(),
                    before,
                    after,
                });
            }
            if !Arc::ptr_eq(&rewritten, &plan) {
                trace.push((rule.name(), rewritten.display_indent()));
            }
            plan = rewritten;
        }
        Ok((plan, trace))
    }
}

// -- helpers shared by the rules --------------------------------------------------------------

/// A leaf that filters its rows (a scan or a read) with `filters` in place of its own; any other
/// plan holds no filters and is returned unchanged.
pub(crate) fn with_filters(plan: &LogicalPlan, filters: Vec<Expr>) -> LogicalPlan {
    match plan {
        LogicalPlan::Scan { table, .. } => LogicalPlan::Scan {
            table: table.clone(),
            filters,
            batches: None,
        },
        LogicalPlan::Read { view, .. } => LogicalPlan::Read {
            view: view.clone(),
            filters,
        },
        other => other.clone(),
    }
}

/// `plan` with its input replaced by `input` (a scan has none and is returned unchanged).
pub(crate) fn with_new_input(plan: &LogicalPlan, input: Arc<LogicalPlan>) -> LogicalPlan {
    match plan {
        LogicalPlan::Scan { .. } | LogicalPlan::Read { .. } => plan.clone(),
        LogicalPlan::Filter { predicate, .. } => LogicalPlan::Filter {
            input,
            predicate: predicate.clone(),
        },
        LogicalPlan::Project { exprs, .. } => LogicalPlan::Project {
            input,
            exprs: exprs.clone(),
        },
        LogicalPlan::Slice { offset, length, .. } => LogicalPlan::Slice {
            input,
            offset: *offset,
            length: *length,
        },
        // Nodes of take / collect / view / with_column(array): rules leave them as they are.
        LogicalPlan::Memory { .. } => plan.clone(),
        LogicalPlan::Take { indices, .. } => LogicalPlan::Take {
            input,
            indices: indices.clone(),
        },
        LogicalPlan::Reinterpret { columns, .. } => LogicalPlan::Reinterpret {
            input,
            columns: columns.clone(),
        },
        LogicalPlan::AttachColumns { columns, .. } => LogicalPlan::AttachColumns {
            input,
            columns: columns.clone(),
        },
        LogicalPlan::Sort { keys, limit, .. } => LogicalPlan::Sort {
            input,
            keys: keys.clone(),
            limit: *limit,
        },
        LogicalPlan::Distinct { subset, keep, .. } => LogicalPlan::Distinct {
            input,
            subset: subset.clone(),
            keep: *keep,
        },
        LogicalPlan::Aggregate { keys, aggs, .. } => LogicalPlan::Aggregate {
            input,
            keys: keys.clone(),
            aggs: aggs.clone(),
        },
        // Two inputs: rules rebuild joins with `with_new_inputs`.
        LogicalPlan::Join { .. } => plan.clone(),
    }
}

/// A join with its inputs replaced by `left` and `right`; any other plan is returned unchanged.
pub(crate) fn with_new_inputs(
    plan: &LogicalPlan,
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
) -> LogicalPlan {
    match plan {
        LogicalPlan::Join {
            left_on,
            right_on,
            how,
            columns,
            ..
        } => LogicalPlan::Join {
            left,
            right,
            left_on: left_on.clone(),
            right_on: right_on.clone(),
            how: *how,
            columns: columns.clone(),
        },
        other => other.clone(),
    }
}

/// `plan` with `rewrite` applied to its inputs (both of a join's); the same `Arc` when no
/// input changed.
pub(crate) fn map_input(
    plan: &Arc<LogicalPlan>,
    mut rewrite: impl FnMut(&Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>>,
) -> Result<Arc<LogicalPlan>> {
    if let LogicalPlan::Join { left, right, .. } = plan.as_ref() {
        let (new_left, new_right) = (rewrite(left)?, rewrite(right)?);
        return Ok(
            if Arc::ptr_eq(&new_left, left) && Arc::ptr_eq(&new_right, right) {
                plan.clone()
            } else {
                Arc::new(with_new_inputs(plan, new_left, new_right))
            },
        );
    }
    match plan.inputs().first() {
        None => Ok(plan.clone()),
        Some(&input) => {
            let rewritten = rewrite(input)?;
            Ok(if Arc::ptr_eq(&rewritten, input) {
                plan.clone()
            } else {
                Arc::new(with_new_input(plan, rewritten))
            })
        }
    }
}

/// Applies `rewrite` to every node, inputs before the node that reads them. Nodes whose
/// inputs did not change are passed to `rewrite` as the same `Arc`.
pub(crate) fn transform_up(
    plan: &Arc<LogicalPlan>,
    rewrite: &mut dyn FnMut(&Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>>,
) -> Result<Arc<LogicalPlan>> {
    let with_new_inputs = map_input(plan, |input| transform_up(input, rewrite))?;
    rewrite(&with_new_inputs)
}

/// Whether two plans have the same output column names and types (what the driver checks).
pub(crate) fn same_schema(a: &LogicalPlan, b: &LogicalPlan) -> bool {
    match (schema_text(a), schema_text(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The value of a one-value boolean literal: `Some(Some(b))` for true / false, `Some(None)` for
/// a null literal of any type, `None` for anything else.
pub(crate) fn literal_bool(expr: &Expr) -> Option<Option<bool>> {
    let Expr::Literal(literal) = expr else {
        return None;
    };
    if literal.0.len() != 1 {
        return None;
    }
    if literal.is_null() {
        return Some(None);
    }
    literal
        .0
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .map(|array| Some(array.value(0)))
}

/// A boolean literal.
pub(crate) fn bool_literal(value: bool) -> Expr {
    Expr::lit(Arc::new(arrow::array::BooleanArray::from(vec![value])))
}

/// The expression under any aliases: what a projection computes for a column.
pub(crate) fn strip_alias(expr: Expr) -> Expr {
    match expr {
        Expr::Alias { input, .. } => strip_alias(Arc::unwrap_or_clone(input)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::expr::{BinaryOp, UnaryOp};

    #[test]
    fn default_rules_run_in_the_documented_order() {
        assert_eq!(
            explain_rules(),
            [
                "constant_folding",
                "predicate_pushdown",
                "projection_pruning",
                "batch_pruning",
                "conjunct_reordering"
            ]
        );
    }

    #[test]
    fn default_pipeline_pushes_prunes_and_keeps_the_schema() {
        let file = TestFile::people();
        let plan = file.scan();
        let plan = Arc::new(
            plan.with_columns(vec![(
                "older".into(),
                Expr::col("age").binary(BinaryOp::Add, int(1)),
            )])
            .unwrap(),
        );
        let predicate = Expr::col("older")
            .binary(BinaryOp::Gt, int(25))
            .and(bool_literal(true))
            .and(Expr::col("age").binary(BinaryOp::GtEq, int(20)));
        let plan = Arc::new(plan.filter(predicate).unwrap());
        let plan = Arc::new(
            plan.project(vec![Expr::col("name"), Expr::col("older")])
                .unwrap(),
        );
        let (optimized, trace) = Optimizer::default().optimize(plan.clone()).unwrap();
        assert!(same_schema(&plan, &optimized));
        let text = optimized.display_indent();
        assert_eq!(
            text,
            format!(
                "SELECT [col(\"name\"), (col(\"age\") + 1).alias(\"older\")]\n  SCAN {} columns=[age, name] rows=20..30 filters=[((col(\"age\") + 1) > 25), (col(\"age\") >= 20)]\n",
                file.path().display()
            ),
            "{text}"
        );
        let names: Vec<&str> = trace.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "constant_folding",
                "predicate_pushdown",
                "projection_pruning",
                "batch_pruning"
            ]
        );
    }

    #[test]
    fn a_plan_no_rule_applies_to_comes_back_as_the_same_arc() {
        let file = TestFile::people();
        let plan = Arc::new(file.scan().slice(0, 5));
        let (optimized, trace) = Optimizer::default().optimize(plan.clone()).unwrap();
        assert!(Arc::ptr_eq(&plan, &optimized));
        assert!(trace.is_empty());
    }

    /// Plans built the way the Python API builds them, each optimized by the default rules and
    /// run by the test executor: same columns, same rows.
    #[test]
    fn optimized_plans_return_what_the_original_plans_return() {
        let file = TestFile::people();
        let age = |op: BinaryOp, value: i64| Expr::col("age").binary(op, int(value));
        let scan = file.scan();
        let mut plans: Vec<Arc<LogicalPlan>> = Vec::new();
        let filtered = Arc::new(
            scan.filter(age(BinaryOp::Gt, 15).and(bool_literal(true)))
                .unwrap(),
        );
        plans.push(filtered.clone());
        let with_older = Arc::new(
            filtered
                .with_columns(vec![(
                    "older".into(),
                    Expr::col("age").binary(BinaryOp::Add, int(1)),
                )])
                .unwrap(),
        );
        plans.push(with_older.clone());
        let on_computed = Arc::new(
            with_older
                .filter(Expr::col("older").binary(BinaryOp::LtEq, int(25)))
                .unwrap(),
        );
        plans.push(on_computed.clone());
        plans.push(Arc::new(
            on_computed
                .project(vec![Expr::col("name"), Expr::col("older").alias("o")])
                .unwrap(),
        ));
        let sliced = Arc::new(filtered.slice(3, 6));
        plans.push(Arc::new(sliced.filter(Expr::col("flag")).unwrap()));
        plans.push(Arc::new(
            Arc::new(
                sliced
                    .project(vec![Expr::col("id"), Expr::col("score")])
                    .unwrap(),
            )
            .filter(Expr::col("id").binary(BinaryOp::NotEq, int(20)))
            .unwrap(),
        ));
        let nulls = Arc::new(
            scan.filter(
                Expr::col("age")
                    .unary(UnaryOp::IsNull)
                    .binary(BinaryOp::Or, age(BinaryOp::Lt, 3)),
            )
            .unwrap(),
        );
        plans.push(Arc::new(nulls.project(vec![Expr::col("id")]).unwrap()));
        let is_in = Expr::IsIn {
            input: Arc::new(Expr::col("id")),
            values: crate::expr::Literal(Arc::new(arrow::array::Int64Array::from(vec![4, 25, 26]))),
        };
        let renamed = Arc::new(
            scan.project(vec![Expr::col("id").alias("key"), Expr::col("score")])
                .unwrap(),
        );
        let renamed = Arc::new(
            renamed
                .filter(Expr::col("key").binary(BinaryOp::GtEq, int(5)))
                .unwrap(),
        );
        plans.push(Arc::new(
            renamed
                .project(vec![Expr::col("score").binary(BinaryOp::Mul, float(2.0))])
                .unwrap(),
        ));
        plans.push(Arc::new(scan.filter(is_in).unwrap()));
        plans.push(Arc::new(scan.filter(age(BinaryOp::Gt, 100)).unwrap()));
        plans.push(Arc::new(
            scan.filter(int(1).binary(BinaryOp::Gt, int(2))).unwrap(),
        ));
        plans.push(Arc::new(scan.project(vec![int(7).alias("seven")]).unwrap()));
        let taken = Arc::new(filtered.take(&[3, 0, 7, 3], 14).unwrap());
        plans.push(Arc::new(taken.project(vec![Expr::col("score")]).unwrap()));
        plans.push(Arc::new(
            Arc::new(taken.filter(age(BinaryOp::Lt, 25)).unwrap())
                .project(vec![Expr::col("id")])
                .unwrap(),
        ));
        for plan in plans {
            let (optimized, _) = Optimizer::default().optimize(plan.clone()).unwrap();
            let (expected, actual) = (execute(&plan), execute(&optimized));
            assert_eq!(
                expected.columns(),
                actual.columns(),
                "\n{}\noptimized to\n{}",
                plan.display_indent(),
                optimized.display_indent()
            );
            assert_eq!(expected.num_rows(), actual.num_rows());
            assert!(same_schema(&plan, &optimized));
        }
    }

    /// Plans assembled by hand, not by the type-checking builders: literals of no or several
    /// values, predicates on columns that do not exist, a null-typed column. Every rule must
    /// return a plan or an error, never panic, and keep the schema where there is one.
    #[test]
    fn hand_built_odd_plans_do_not_panic() {
        use arrow::array::{ArrayRef, BooleanArray, Int64Array, NullArray, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};

        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("nothing", DataType::Null, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(NullArray::new(2)),
        ];
        let batches = [
            RecordBatch::try_new(schema.clone(), columns.clone()).unwrap(),
            RecordBatch::try_new(schema.clone(), columns).unwrap(),
        ];
        let file = TestFile::write("odd", schema, &batches);
        let empty = Expr::lit(Arc::new(Int64Array::from(Vec::<i64>::new())));
        let several = Expr::lit(Arc::new(BooleanArray::from(vec![true, false])));
        let scan = || {
            Arc::new(LogicalPlan::Scan {
                table: file.table(),
                filters: vec![],
                batches: None,
            })
        };
        let odd_predicates = [
            Expr::col("x").binary(BinaryOp::Gt, empty.clone()),
            empty
                .clone()
                .binary(BinaryOp::Add, empty.clone())
                .binary(BinaryOp::Eq, Expr::col("x")),
            several.clone(),
            several.clone().and(Expr::col("nothing")),
            Expr::col("missing").binary(BinaryOp::Gt, int(1)),
            Expr::col("nothing"),
            Expr::col("nothing").unary(UnaryOp::Not).unary(UnaryOp::Not),
            empty.clone().unary(UnaryOp::IsNull),
        ];
        let mut plans = Vec::new();
        for predicate in odd_predicates {
            plans.push(Arc::new(LogicalPlan::Filter {
                input: scan(),
                predicate: predicate.clone(),
            }));
            plans.push(Arc::new(LogicalPlan::Scan {
                table: file.table(),
                filters: vec![predicate.clone()],
                batches: None,
            }));
            plans.push(Arc::new(LogicalPlan::Project {
                input: scan(),
                exprs: vec![predicate.clone().alias("p")],
            }));
        }
        // `nothing & true` is a boolean; folding it to `nothing` would make it a null column.
        let null_and_true = Arc::new(
            scan()
                .project(vec![Expr::col("nothing").and(bool_literal(true))])
                .unwrap(),
        );
        let (folded, _, _) = test_support::run_rule(&ConstantFolding, &null_and_true);
        assert!(folded.contains("&"), "{folded}");
        plans.push(null_and_true);
        let rules: Vec<Box<dyn OptimizerRule>> = vec![
            Box::new(ConstantFolding),
            Box::new(PredicatePushdown),
            Box::new(ProjectionPruning),
            Box::new(BatchPruning),
            Box::new(ConjunctReordering {
                compute_stats: true,
                sample: true,
            }),
        ];
        for plan in plans {
            for rule in &rules {
                if let Ok(rewritten) = rule.rewrite(plan.clone())
                    && plan.schema().is_ok()
                {
                    assert!(
                        same_schema(&plan, &rewritten),
                        "{} on\n{}",
                        rule.name(),
                        plan.display_indent()
                    );
                }
            }
            let _ = Optimizer::default().optimize(plan);
        }
    }
}
