//! Constant folding: sub-expressions that read no column are evaluated when the plan is
//! optimized, with the arrow-rs kernels the executor uses, on the one-element literal arrays.
//!
//! What folds:
//! - comparisons, `+ - * /`, `&`, `|` of two literals; `//` and `%` of two integer literals when
//!   the dividend is >= 0 and the divisor > 0 (where truncating and flooring division agree, so
//!   the result does not depend on which the executor implements);
//! - `~lit`, `-lit`, `lit.is_null()`, `lit.is_not_null()`, `lit.cast(t)`, string predicates and
//!   `is_in` on a non-null literal, `fill_null` of a literal, `when` branches whose condition is
//!   a literal;
//! - boolean identities: `x & true -> x`, `x | false -> x`, `x & false -> false`,
//!   `x | true -> true` (expressions are pure, so dropping `x` changes nothing but the work),
//!   and `~~x -> x`. `&` and `|` follow Kleene logic (`null & false` is false, `null | true` is
//!   true), as in Polars and arrow-rs's `and_kleene` / `or_kleene`.
//!
//! An evaluation that fails (overflow, division by zero, a cast that loses the value) is left
//! in the plan for the executor to report. In filters, a conjunct that is always true is
//! dropped (a filter left with none disappears), and a conjunct that is false or null makes the
//! whole predicate the literal `false`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Scalar, StringArray};
use arrow::compute::kernels::{boolean, cmp, comparison, numeric};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::DataType;

use crate::error::Result;
use crate::expr::{BinaryOp, Expr, Literal, StringMatch, UnaryOp};
use crate::optimizer::{
    OptimizerRule, bool_literal, literal_bool, same_schema, transform_up, with_filters,
};
use crate::plan::LogicalPlan;

/// Evaluates constant sub-expressions and simplifies boolean identities in every filter,
/// projection and scan filter.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConstantFolding;

impl OptimizerRule for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant_folding"
    }

    fn rewrite(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
        transform_up(&plan, &mut |node| Ok(fold_node(node)))
    }
}

fn fold_node(node: &Arc<LogicalPlan>) -> Arc<LogicalPlan> {
    match node.as_ref() {
        LogicalPlan::Scan { filters, .. } | LogicalPlan::Read { filters, .. } => {
            if filters.is_empty() {
                return node.clone();
            }
            let folded = fold_conjuncts(filters.iter().cloned());
            if &folded == filters {
                return node.clone();
            }
            Arc::new(with_filters(node, folded))
        }
        LogicalPlan::Filter { input, predicate } => {
            let folded = fold_conjuncts(std::iter::once(predicate.clone()));
            match Expr::conjunction(folded) {
                // Every conjunct is always true.
                None => input.clone(),
                Some(folded) if &folded == predicate => node.clone(),
                Some(folded) => Arc::new(LogicalPlan::Filter {
                    input: input.clone(),
                    predicate: folded,
                }),
            }
        }
        LogicalPlan::Project { input, exprs } => {
            let folded: Vec<Expr> = exprs
                .iter()
                .map(|expr| {
                    let name = expr.output_name();
                    let folded = fold_expr(expr.clone());
                    // `col("x") & false` folds to a literal: keep the column's name.
                    if folded.output_name() == name {
                        folded
                    } else {
                        folded.alias(name)
                    }
                })
                .collect();
            if &folded == exprs {
                return node.clone();
            }
            let rewritten = Arc::new(LogicalPlan::Project {
                input: input.clone(),
                exprs: folded,
            });
            // `col & true -> col` over a column of type null would turn a boolean output into a
            // null one; keep the projection as it was rather than change its schema.
            if same_schema(&rewritten, node) {
                rewritten
            } else {
                node.clone()
            }
        }
        LogicalPlan::Slice { .. }
        | LogicalPlan::Take { .. }
        | LogicalPlan::Memory { .. }
        | LogicalPlan::Reinterpret { .. }
        | LogicalPlan::AttachColumns { .. }
        | LogicalPlan::Sort { .. }
        | LogicalPlan::Distinct { .. }
        | LogicalPlan::Aggregate { .. }
        | LogicalPlan::Join { .. } => node.clone(),
    }
}

/// The folded conjuncts of `predicates`: always-true conjuncts dropped, and `[false]` alone when
/// one can never be true (false or null). Empty when the conjunction is always true.
pub(crate) fn fold_conjuncts(predicates: impl IntoIterator<Item = Expr>) -> Vec<Expr> {
    let mut out = Vec::new();
    for predicate in predicates {
        for conjunct in fold_expr(predicate).conjuncts() {
            match literal_bool(&conjunct) {
                Some(Some(true)) => {}
                Some(_) => return vec![bool_literal(false)],
                None => out.push(conjunct),
            }
        }
    }
    out
}

/// `expr` with every constant sub-expression evaluated and boolean identities simplified.
pub fn fold_expr(expr: Expr) -> Expr {
    simplify(expr.map_children(&mut fold_expr))
}

/// Whether a literal holds one value, as literals do (a hand-built plan may hold others: they
/// are left alone).
fn is_scalar(literal: &Literal) -> bool {
    literal.0.len() == 1
}

/// Simplifies one node whose children are already folded.
fn simplify(expr: Expr) -> Expr {
    match expr {
        Expr::Binary { op, left, right } => {
            simplify_binary(op, Arc::unwrap_or_clone(left), Arc::unwrap_or_clone(right))
        }
        Expr::Unary { op, input } => simplify_unary(op, Arc::unwrap_or_clone(input)),
        Expr::Cast { input, to } => match Arc::unwrap_or_clone(input) {
            Expr::Literal(literal) if is_scalar(&literal) => {
                let options = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                match cast_with_options(&literal.0, &to, &options) {
                    Ok(array) => Expr::Literal(Literal(array)),
                    Err(_) => Expr::Cast {
                        input: Arc::new(Expr::Literal(literal)),
                        to,
                    },
                }
            }
            input => Expr::Cast {
                input: Arc::new(input),
                to,
            },
        },
        Expr::StringMatch {
            kind,
            input,
            pattern,
        } => match Arc::unwrap_or_clone(input) {
            Expr::Literal(literal) if is_scalar(&literal) => {
                match eval_string_match(kind, &literal, &pattern) {
                    Some(result) => Expr::Literal(result),
                    None => Expr::StringMatch {
                        kind,
                        input: Arc::new(Expr::Literal(literal)),
                        pattern,
                    },
                }
            }
            input => Expr::StringMatch {
                kind,
                input: Arc::new(input),
                pattern,
            },
        },
        Expr::IsIn { input, values } => match Arc::unwrap_or_clone(input) {
            Expr::Literal(literal) if is_scalar(&literal) => match eval_is_in(&literal, &values) {
                Some(result) => Expr::Literal(result),
                None => Expr::IsIn {
                    input: Arc::new(Expr::Literal(literal)),
                    values,
                },
            },
            input => Expr::IsIn {
                input: Arc::new(input),
                values,
            },
        },
        Expr::FillNull { input, value } => match Arc::unwrap_or_clone(input) {
            // Both sides were converted to one type when the plan was built.
            Expr::Literal(literal) if is_scalar(&literal) && literal.is_null() => {
                Arc::unwrap_or_clone(value)
            }
            Expr::Literal(literal) if is_scalar(&literal) => Expr::Literal(literal),
            input => Expr::FillNull {
                input: Arc::new(input),
                value,
            },
        },
        Expr::Case {
            branches,
            otherwise,
        } => simplify_case(branches, Arc::unwrap_or_clone(otherwise)),
        other => other,
    }
}

fn simplify_case(branches: Vec<(Expr, Expr)>, otherwise: Expr) -> Expr {
    let mut kept = Vec::with_capacity(branches.len());
    for (when, then) in branches {
        match literal_bool(&when) {
            // Never taken.
            Some(Some(false) | None) => {}
            // Always taken when reached: the branches after it never are.
            Some(Some(true)) => {
                if kept.is_empty() {
                    return then;
                }
                return Expr::Case {
                    branches: kept,
                    otherwise: Arc::new(then),
                };
            }
            None => kept.push((when, then)),
        }
    }
    if kept.is_empty() {
        otherwise
    } else {
        Expr::Case {
            branches: kept,
            otherwise: Arc::new(otherwise),
        }
    }
}

fn simplify_unary(op: UnaryOp, input: Expr) -> Expr {
    match (op, input) {
        (
            UnaryOp::Not,
            Expr::Unary {
                op: UnaryOp::Not,
                input,
            },
        ) => Arc::unwrap_or_clone(input),
        (op, Expr::Literal(literal)) if is_scalar(&literal) => match eval_unary(op, &literal) {
            Some(result) => Expr::Literal(result),
            None => Expr::Literal(literal).unary(op),
        },
        (op, input) => input.unary(op),
    }
}

fn eval_unary(op: UnaryOp, literal: &Literal) -> Option<Literal> {
    let array: ArrayRef = match op {
        UnaryOp::IsNull => Arc::new(BooleanArray::from(vec![literal.is_null()])),
        UnaryOp::IsNotNull => Arc::new(BooleanArray::from(vec![!literal.is_null()])),
        UnaryOp::Not => Arc::new(boolean::not(as_boolean(literal)?.as_boolean()).ok()?),
        UnaryOp::Negate => numeric::neg(literal.0.as_ref()).ok()?,
        // Abs, string length and date parts: no arrow-rs kernel with the executor's exact
        // semantics (characters, time zones); left to the executor.
        _ => return None,
    };
    Some(Literal(array))
}

/// A boolean (or untyped null) literal as a boolean array.
fn as_boolean(literal: &Literal) -> Option<ArrayRef> {
    match literal.data_type() {
        DataType::Boolean => Some(literal.0.clone()),
        DataType::Null => cast(&literal.0, &DataType::Boolean).ok(),
        _ => None,
    }
}

fn simplify_binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
    if let (Expr::Literal(l), Expr::Literal(r)) = (&left, &right)
        && is_scalar(l)
        && is_scalar(r)
        && let Some(result) = eval_binary(op, l, r)
    {
        return Expr::Literal(result);
    }
    let (lb, rb) = (literal_bool(&left), literal_bool(&right));
    match op {
        BinaryOp::And => match (lb, rb) {
            (Some(Some(false)), _) | (_, Some(Some(false))) => bool_literal(false),
            (Some(Some(true)), _) => right,
            (_, Some(Some(true))) => left,
            _ => left.binary(op, right),
        },
        BinaryOp::Or => match (lb, rb) {
            (Some(Some(true)), _) | (_, Some(Some(true))) => bool_literal(true),
            (Some(Some(false)), _) => right,
            (_, Some(Some(false))) => left,
            _ => left.binary(op, right),
        },
        _ => left.binary(op, right),
    }
}

fn eval_binary(op: BinaryOp, left: &Literal, right: &Literal) -> Option<Literal> {
    let (l, r) = (&left.0, &right.0);
    let array: ArrayRef = match op {
        BinaryOp::And | BinaryOp::Or => {
            let (l, r) = (as_boolean(left)?, as_boolean(right)?);
            let (l, r) = (l.as_boolean(), r.as_boolean());
            let result = if op == BinaryOp::And {
                boolean::and_kleene(l, r)
            } else {
                boolean::or_kleene(l, r)
            };
            Arc::new(result.ok()?)
        }
        _ if l.data_type() != r.data_type() => return None,
        // Float comparisons are left to the executor, whose ordering (as Polars': -0.0 == 0.0,
        // NaN equal to itself and above every number) differs from arrow's total order.
        _ if op.is_comparison() && l.data_type().is_floating() => return None,
        BinaryOp::Eq => Arc::new(cmp::eq(l, r).ok()?),
        BinaryOp::NotEq => Arc::new(cmp::neq(l, r).ok()?),
        BinaryOp::Lt => Arc::new(cmp::lt(l, r).ok()?),
        BinaryOp::LtEq => Arc::new(cmp::lt_eq(l, r).ok()?),
        BinaryOp::Gt => Arc::new(cmp::gt(l, r).ok()?),
        BinaryOp::GtEq => Arc::new(cmp::gt_eq(l, r).ok()?),
        BinaryOp::Add => numeric::add(l, r).ok()?,
        BinaryOp::Sub => numeric::sub(l, r).ok()?,
        BinaryOp::Mul => numeric::mul(l, r).ok()?,
        BinaryOp::Div => numeric::div(l, r).ok()?,
        BinaryOp::FloorDiv | BinaryOp::Mod => {
            if !l.data_type().is_integer() || sign(l)? < 0.0 || sign(r)? <= 0.0 {
                return None;
            }
            if op == BinaryOp::FloorDiv {
                numeric::div(l, r).ok()?
            } else {
                numeric::rem(l, r).ok()?
            }
        }
    };
    Some(Literal(array))
}

/// The value of a non-null numeric literal as a float: enough to tell its sign.
fn sign(array: &ArrayRef) -> Option<f64> {
    let as_float = cast(array, &DataType::Float64).ok()?;
    let as_float = as_float.as_primitive::<arrow::datatypes::Float64Type>();
    (!as_float.is_empty() && as_float.is_valid(0)).then(|| as_float.value(0))
}

fn eval_string_match(kind: StringMatch, literal: &Literal, pattern: &str) -> Option<Literal> {
    let pattern = cast(
        &(Arc::new(StringArray::from(vec![pattern])) as ArrayRef),
        literal.data_type(),
    )
    .ok()?;
    let pattern = Scalar::new(pattern);
    let result = match kind {
        StringMatch::StartsWith => comparison::starts_with(&literal.0, &pattern),
        StringMatch::EndsWith => comparison::ends_with(&literal.0, &pattern),
        StringMatch::Contains => comparison::contains(&literal.0, &pattern),
    };
    Some(Literal(Arc::new(result.ok()?)))
}

/// `literal.is_in(values)` for a non-null literal (what a null input gives is the executor's
/// choice).
fn eval_is_in(literal: &Literal, values: &Literal) -> Option<Literal> {
    if literal.is_null()
        || literal.data_type() != values.data_type()
        || literal.data_type().is_floating()
    {
        return None;
    }
    let matches = cmp::eq(&values.0, &Scalar::new(literal.0.clone())).ok()?;
    Some(Literal(Arc::new(BooleanArray::from(vec![
        matches.true_count() > 0,
    ]))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::test_support::*;
    use arrow::array::{Int32Array, Int64Array};

    fn fold(expr: Expr) -> String {
        fold_expr(expr).to_string()
    }

    fn null_bool() -> Expr {
        Expr::lit(Arc::new(BooleanArray::from(vec![None])))
    }

    #[test]
    fn arithmetic_and_comparisons_of_literals_fold() {
        assert_eq!(
            fold(
                int(2)
                    .binary(BinaryOp::Add, int(3))
                    .binary(BinaryOp::Mul, int(4))
            ),
            "20"
        );
        assert_eq!(fold(int(2).binary(BinaryOp::Lt, int(3))), "true");
        assert_eq!(fold(float(1.0).binary(BinaryOp::Div, float(4.0))), "0.25");
        assert_eq!(fold(int(7).binary(BinaryOp::FloorDiv, int(2))), "3");
        assert_eq!(fold(int(7).binary(BinaryOp::Mod, int(4))), "3");
        let folded = fold_expr(int(2).binary(BinaryOp::Add, int(3)));
        let Expr::Literal(literal) = folded else {
            panic!("{folded}")
        };
        assert_eq!(literal.data_type(), &DataType::Int64);
    }

    #[test]
    fn folding_under_a_column_reference_keeps_the_column() {
        let expr = Expr::col("age").binary(BinaryOp::Gt, int(90).binary(BinaryOp::Add, int(4)));
        assert_eq!(fold(expr), "(col(\"age\") > 94)");
    }

    #[test]
    fn evaluations_that_fail_stay_for_the_executor() {
        let overflow = int(i64::MAX).binary(BinaryOp::Add, int(1));
        assert_eq!(fold(overflow.clone()), overflow.to_string());
        let by_zero = int(1).binary(BinaryOp::Div, int(0));
        assert_eq!(fold(by_zero.clone()), by_zero.to_string());
        // Floor division and modulo of negative numbers differ between conventions.
        let negative = int(-7).binary(BinaryOp::FloorDiv, int(2));
        assert_eq!(fold(negative.clone()), negative.to_string());
        let lossy = Expr::Cast {
            input: Arc::new(int(300)),
            to: DataType::Int8,
        };
        assert_eq!(fold(lossy.clone()), lossy.to_string());
        let fits = Expr::Cast {
            input: Arc::new(int(100)),
            to: DataType::Int8,
        };
        assert_eq!(fold(fits), "100");
    }

    #[test]
    fn boolean_identities_simplify() {
        let x = || Expr::col("flag");
        assert_eq!(fold(x().and(bool_literal(true))), "col(\"flag\")");
        assert_eq!(fold(bool_literal(true).and(x())), "col(\"flag\")");
        assert_eq!(
            fold(x().binary(BinaryOp::Or, bool_literal(false))),
            "col(\"flag\")"
        );
        assert_eq!(fold(x().and(bool_literal(false))), "false");
        assert_eq!(fold(x().binary(BinaryOp::Or, bool_literal(true))), "true");
        assert_eq!(
            fold(x().unary(UnaryOp::Not).unary(UnaryOp::Not)),
            "col(\"flag\")"
        );
        assert_eq!(fold(x().unary(UnaryOp::Not)), "col(\"flag\").not()");
        // Kleene logic for literals too.
        assert_eq!(fold(null_bool().and(bool_literal(false))), "false");
        assert_eq!(
            fold(null_bool().binary(BinaryOp::Or, bool_literal(true))),
            "true"
        );
        assert_eq!(fold(null_bool().and(bool_literal(true))), "null");
    }

    #[test]
    fn unary_string_is_in_fill_null_and_case_of_literals_fold() {
        assert_eq!(fold(int(5).unary(UnaryOp::Negate)), "-5");
        assert_eq!(fold(int(5).unary(UnaryOp::IsNull)), "false");
        assert_eq!(fold(bool_literal(true).unary(UnaryOp::Not)), "false");
        let starts = Expr::StringMatch {
            kind: StringMatch::StartsWith,
            input: Arc::new(string("oslo")),
            pattern: "os".into(),
        };
        assert_eq!(fold(starts), "true");
        let is_in = Expr::IsIn {
            input: Arc::new(Expr::lit(Arc::new(Int32Array::from(vec![3])))),
            values: Literal(Arc::new(Int32Array::from(vec![1, 2, 3]))),
        };
        assert_eq!(fold(is_in), "true");
        let fill = Expr::FillNull {
            input: Arc::new(Expr::lit(Arc::new(Int64Array::from(vec![None])))),
            value: Arc::new(Expr::col("id")),
        };
        assert_eq!(fold(fill), "col(\"id\")");
        let case = Expr::Case {
            branches: vec![
                (bool_literal(false), int(1)),
                (Expr::col("flag"), int(2)),
                (bool_literal(true), int(3)),
                (Expr::col("flag"), int(4)),
            ],
            otherwise: Arc::new(int(5)),
        };
        assert_eq!(fold(case), "when(col(\"flag\")).then(2).otherwise(3)");
    }

    #[test]
    fn always_true_filters_disappear() {
        let file = TestFile::people();
        let scan = file.scan();
        let plan = Arc::new(scan.filter(int(1).binary(BinaryOp::Lt, int(2))).unwrap());
        let (before, after, rewritten) = run_rule(&ConstantFolding, &plan);
        assert_eq!(before.lines().next().unwrap(), "FILTER (1 < 2)");
        assert!(Arc::ptr_eq(&rewritten, &scan), "{after}");
    }

    #[test]
    fn true_conjuncts_are_dropped_and_a_false_one_makes_the_filter_false() {
        let file = TestFile::people();
        let scan = file.scan();
        let age = || Expr::col("age").binary(BinaryOp::Gt, int(3));
        let plan = Arc::new(
            scan.filter(
                age()
                    .and(bool_literal(true))
                    .and(int(1).binary(BinaryOp::Eq, int(1))),
            )
            .unwrap(),
        );
        let (before, after, _) = run_rule(&ConstantFolding, &plan);
        assert_eq!(
            before.lines().next().unwrap(),
            "FILTER (((col(\"age\") > 3) & true) & (1 == 1))"
        );
        assert_eq!(after.lines().next().unwrap(), "FILTER (col(\"age\") > 3)");

        let never = Arc::new(
            scan.filter(age().and(int(2).binary(BinaryOp::Lt, int(1))))
                .unwrap(),
        );
        let (_, after, _) = run_rule(&ConstantFolding, &never);
        assert_eq!(after.lines().next().unwrap(), "FILTER false");

        let null = Arc::new(scan.filter(age().and(null_bool())).unwrap());
        let (_, after, _) = run_rule(&ConstantFolding, &null);
        assert_eq!(after.lines().next().unwrap(), "FILTER false");
    }

    #[test]
    fn scan_filters_fold_too() {
        let file = TestFile::people();
        let plan = Arc::new(LogicalPlan::Scan {
            table: file.table(),
            filters: vec![
                Expr::col("age").binary(BinaryOp::Gt, int(1).binary(BinaryOp::Add, int(1))),
                bool_literal(true),
            ],
            batches: None,
        });
        let (before, after, _) = run_rule(&ConstantFolding, &plan);
        assert!(
            before.contains("filters=[(col(\"age\") > (1 + 1)), true]"),
            "{before}"
        );
        assert!(after.contains("filters=[(col(\"age\") > 2)]"), "{after}");
    }

    #[test]
    fn projections_fold_and_keep_their_names() {
        let file = TestFile::people();
        let plan = Arc::new(
            file.scan()
                .project(vec![
                    Expr::col("id").binary(BinaryOp::Mul, int(2).binary(BinaryOp::Add, int(1))),
                    Expr::col("flag").and(bool_literal(false)),
                    int(6).binary(BinaryOp::Sub, int(2)).alias("four"),
                ])
                .unwrap(),
        );
        let (before, after, _) = run_rule(&ConstantFolding, &plan);
        assert_eq!(
            before.lines().next().unwrap(),
            "SELECT [(col(\"id\") * (2 + 1)), (col(\"flag\") & false), (6 - 2).alias(\"four\")]"
        );
        assert_eq!(
            after.lines().next().unwrap(),
            "SELECT [(col(\"id\") * 3), false.alias(\"flag\"), 4.alias(\"four\")]"
        );
    }

    #[test]
    fn nothing_to_fold_gives_the_same_plan() {
        let file = TestFile::people();
        let plan = Arc::new(
            file.scan()
                .filter(Expr::col("age").binary(BinaryOp::Gt, int(3)))
                .unwrap(),
        );
        let plan = Arc::new(plan.project(vec![Expr::col("age")]).unwrap());
        assert!(Arc::ptr_eq(
            &ConstantFolding.rewrite(plan.clone()).unwrap(),
            &plan
        ));
    }

    #[test]
    fn filters_of_a_read_fold() {
        let data = crate::optimizer::test_support::TestDataset::parts();
        let id_above = Expr::col("id").binary(BinaryOp::Gt, int(3));
        let plan = Arc::new(LogicalPlan::Read {
            view: relay_storage::DatasetView::new(data.dataset.clone()),
            filters: vec![crate::optimizer::bool_literal(true), id_above],
        });
        let (before, after, _) = run_rule(&ConstantFolding, &plan);
        assert_eq!(
            before,
            "READ ipc DIR files=3/3 columns=[id, age, part] filters=[true, (col(\"id\") > 3)]\n"
        );
        assert_eq!(
            after,
            "READ ipc DIR files=3/3 columns=[id, age, part] filters=[(col(\"id\") > 3)]\n"
        );
    }
}
