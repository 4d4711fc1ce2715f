//! Projection pruning: nothing is read or computed that no operator above needs.
//!
//! The rule walks the plan from the top, carrying the columns the operators above read
//! (at the top: every output column, in order, so the result never changes):
//! - a scan keeps only the columns read above it or by its own filters (in the order the view
//!   has them, which is the file's for a plain scan) and at least one, so that its row count
//!   stays carried by a column;
//! - a projection drops the outputs nobody reads, then merges with a projection right below it
//!   when each column it takes from there is either a plain column or literal, or used once
//!   (substituting a computed expression used twice would compute it twice);
//! - a projection that returns its input's columns unchanged, in order, is removed.
//!
//! Filters and slices pass the columns needed above down, plus the ones their predicate reads.
//! A join drops the output columns nobody reads; each of its inputs then reads only its kept
//! columns and its keys.
//! A node's output may lose columns only when a projection above selects by name, so every
//! operator still finds the columns it reads.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use relay_storage::{DatasetView, TableView};

use crate::error::Result;
use crate::expr::{Expr, with_stack_room};
use crate::join::{JoinColumn, JoinSide};
use crate::optimizer::constant_folding::fold_expr;
use crate::optimizer::{OptimizerRule, same_schema, strip_alias};
use crate::plan::LogicalPlan;

/// Narrows scans to the columns read above them, merges stacked projections and removes
/// projections that change nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProjectionPruning;

impl OptimizerRule for ProjectionPruning {
    fn name(&self) -> &'static str {
        "projection_pruning"
    }

    fn rewrite(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
        prune(&plan, None)
    }
}

/// `names` plus the columns `expr` reads, first-seen order.
fn with_columns_of(names: &[String], expr: &Expr) -> Vec<String> {
    let mut out = names.to_vec();
    for column in expr.columns() {
        if !out.contains(&column) {
            out.push(column);
        }
    }
    out
}

/// `plan` keeping only what produces the columns in `required` (every column when None).
fn prune(plan: &Arc<LogicalPlan>, required: Option<&[String]>) -> Result<Arc<LogicalPlan>> {
    match plan.as_ref() {
        LogicalPlan::Scan {
            table,
            filters,
            batches,
        } => prune_scan(plan, table, filters, batches, required),
        LogicalPlan::Read { view, filters } => prune_read(plan, view, filters, required),
        LogicalPlan::Filter { input, predicate } => {
            let below = required.map(|names| with_columns_of(names, predicate));
            rebuild(plan, input, prune(input, below.as_deref())?)
        }
        LogicalPlan::Slice { input, .. } => rebuild(plan, input, prune(input, required)?),
        LogicalPlan::Project { input, exprs } => prune_project(plan, input, exprs, required),
        // A take picks rows and keeps columns: what is read above is what it needs.
        LogicalPlan::Take { input, .. } => rebuild(plan, input, prune(input, required)?),
        LogicalPlan::Memory { .. } => Ok(plan.clone()),
        // Reinterpreted and attached columns replace input columns by name and position, and
        // attached arrays need their input's rows as they are: below them every column stays
        // (projections further down are still merged and pruned).
        LogicalPlan::Reinterpret { input, .. } | LogicalPlan::AttachColumns { input, .. } => {
            rebuild(plan, input, prune(input, None)?)
        }
        // A sort keeps its input's columns and reads its keys' columns.
        LogicalPlan::Sort { input, keys, .. } => {
            let below = required.map(|names| {
                keys.iter().fold(names.to_vec(), |names, key| {
                    with_columns_of(&names, &key.expr)
                })
            });
            rebuild(plan, input, prune(input, below.as_deref())?)
        }
        // Rows are equal by the subset's columns, or by every column when there is no subset.
        LogicalPlan::Distinct { input, subset, .. } => {
            let below = match (required, subset) {
                (Some(names), Some(subset)) => {
                    let mut names = names.to_vec();
                    names.extend(
                        subset
                            .iter()
                            .filter(|name| !names.contains(name))
                            .cloned()
                            .collect::<Vec<_>>(),
                    );
                    Some(names)
                }
                _ => None,
            };
            rebuild(plan, input, prune(input, below.as_deref())?)
        }
        // An aggregation's output is new: below it only the columns its keys and inputs read.
        LogicalPlan::Aggregate { input, keys, aggs } => {
            let names = keys
                .iter()
                .chain(aggs.iter().map(|agg| &agg.input))
                .fold(Vec::new(), |names, expr| with_columns_of(&names, expr));
            rebuild(plan, input, prune(input, Some(&names))?)
        }
        LogicalPlan::Join { .. } => prune_join(plan, required),
    }
}

/// A join keeps only the output columns read above it (at least one, to carry the row
/// count); each input then reads only its kept columns and its keys (the right input of a
/// semi or anti join: its keys only).
fn prune_join(plan: &Arc<LogicalPlan>, required: Option<&[String]>) -> Result<Arc<LogicalPlan>> {
    let LogicalPlan::Join {
        left,
        right,
        left_on,
        right_on,
        how,
        columns,
    } = plan.as_ref()
    else {
        return Ok(plan.clone());
    };
    let mut kept: Vec<JoinColumn> = match required {
        None => columns.clone(),
        Some(names) => columns
            .iter()
            .filter(|c| names.contains(&c.output))
            .cloned()
            .collect(),
    };
    if kept.is_empty() {
        kept.extend(columns.first().cloned());
    }
    let needed = |side: JoinSide, keys: &[Expr]| {
        let names: Vec<String> = kept
            .iter()
            .filter(|c| c.side == side)
            .map(|c| c.name.clone())
            .collect();
        keys.iter()
            .fold(names, |names, key| with_columns_of(&names, key))
    };
    let new_left = prune(left, Some(&needed(JoinSide::Left, left_on)))?;
    let new_right = prune(right, Some(&needed(JoinSide::Right, right_on)))?;
    if kept.len() == columns.len() && Arc::ptr_eq(&new_left, left) && Arc::ptr_eq(&new_right, right)
    {
        return Ok(plan.clone());
    }
    Ok(Arc::new(LogicalPlan::Join {
        left: new_left,
        right: new_right,
        left_on: left_on.clone(),
        right_on: right_on.clone(),
        how: *how,
        columns: kept,
    }))
}

fn rebuild(
    plan: &Arc<LogicalPlan>,
    input: &Arc<LogicalPlan>,
    pruned: Arc<LogicalPlan>,
) -> Result<Arc<LogicalPlan>> {
    Ok(if Arc::ptr_eq(input, &pruned) {
        plan.clone()
    } else {
        Arc::new(super::with_new_input(plan, pruned))
    })
}

fn prune_scan(
    plan: &Arc<LogicalPlan>,
    table: &TableView,
    filters: &[Expr],
    batches: &Option<Vec<usize>>,
    required: Option<&[String]>,
) -> Result<Arc<LogicalPlan>> {
    let Some(required) = required else {
        return Ok(plan.clone());
    };
    let names = table.column_names();
    let unique: HashSet<&String> = names.iter().collect();
    if unique.len() != names.len() {
        // Columns are selected by name: with two of one name, leave the view alone.
        return Ok(plan.clone());
    }
    let mut needed: Vec<String> = required.to_vec();
    for filter in filters {
        needed = with_columns_of(&needed, filter);
    }
    let mut keep: Vec<&String> = names.iter().filter(|name| needed.contains(name)).collect();
    if keep.is_empty() {
        // Nothing above reads a column (`select(lit(1))`): keep the narrowest one, preferring a
        // fixed-width column, so the executor never meets a view without columns.
        let schema = table.schema();
        let fixed = schema
            .fields()
            .iter()
            .position(|f| f.data_type().is_primitive());
        keep.extend(names.get(fixed.unwrap_or(0)));
    }
    if keep.len() == names.len() {
        return Ok(plan.clone());
    }
    Ok(Arc::new(LogicalPlan::Scan {
        table: table.select(&keep)?,
        filters: filters.to_vec(),
        batches: batches.clone(),
    }))
}

/// A read of only the columns needed above or by its filters, in the view's order: its files
/// decode only those. At least one column is kept, so that the read is never without columns;
/// a read of partition columns only decodes nothing where the files' metadata gives the
/// pieces' row counts (the partition columns are constants added per piece).
fn prune_read(
    plan: &Arc<LogicalPlan>,
    view: &DatasetView,
    filters: &[Expr],
    required: Option<&[String]>,
) -> Result<Arc<LogicalPlan>> {
    let Some(required) = required else {
        return Ok(plan.clone());
    };
    let names = view.column_names();
    let mut needed: Vec<String> = required.to_vec();
    for filter in filters {
        needed = with_columns_of(&needed, filter);
    }
    let file_columns = view.dataset().file_schema().fields().len();
    let is_file_column = |name: &String| {
        view.column_index(name)
            .is_some_and(|index| index < file_columns)
    };
    let mut keep: Vec<&String> = names.iter().filter(|name| needed.contains(name)).collect();
    if keep.is_empty() {
        // Nothing above reads a column (`select(lit(1))`): a partition column (nothing to
        // decode), else the narrowest file column, a fixed-width one where there is one.
        let schema = view.schema();
        let partition = (0..names.len()).find(|&i| !is_file_column(&names[i]));
        let files: Vec<usize> = (0..names.len())
            .filter(|&i| is_file_column(&names[i]))
            .collect();
        let fixed = files
            .iter()
            .copied()
            .find(|&i| schema.field(i).data_type().is_primitive());
        keep.extend(
            partition
                .or(fixed)
                .or(files.first().copied())
                .map(|index| &names[index]),
        );
    }
    if keep.is_empty() || keep.len() == names.len() {
        return Ok(plan.clone());
    }
    Ok(Arc::new(LogicalPlan::Read {
        view: view.select(&keep)?,
        filters: filters.to_vec(),
    }))
}

fn prune_project(
    plan: &Arc<LogicalPlan>,
    input: &Arc<LogicalPlan>,
    exprs: &[Expr],
    required: Option<&[String]>,
) -> Result<Arc<LogicalPlan>> {
    // The outputs something above reads (at least one: a projection of no column would lose
    // the row count).
    let mut kept: Vec<Expr> = match required {
        None => exprs.to_vec(),
        Some(names) => exprs
            .iter()
            .filter(|e| names.contains(&e.output_name()))
            .cloned()
            .collect(),
    };
    if kept.is_empty() {
        kept.extend(exprs.first().cloned());
    }
    let below: Vec<String> = kept
        .iter()
        .fold(Vec::new(), |names, expr| with_columns_of(&names, expr));
    let pruned_input = prune(input, Some(&below))?;
    let unchanged = kept.len() == exprs.len() && Arc::ptr_eq(&pruned_input, input);
    let mut result = if unchanged {
        plan.clone()
    } else {
        Arc::new(LogicalPlan::Project {
            input: pruned_input,
            exprs: kept,
        })
    };
    if let Some(merged) = merge_with_inner_project(&result) {
        result = merged;
    }
    if let LogicalPlan::Project { input, exprs } = result.as_ref()
        && is_identity(exprs, input)
    {
        result = input.clone();
    }
    // Plain columns of a scan, in any order: the scan reads them in that order itself, so its
    // columns stay views of the file with no projection step above them (unless one of the
    // scan's filters reads a column the projection drops).
    if let LogicalPlan::Project { input, exprs } = result.as_ref()
        && let LogicalPlan::Scan {
            table,
            filters,
            batches,
        } = input.as_ref()
        && let Some(names) = plain_names(exprs)
        && filters
            .iter()
            .all(|filter| filter.columns().iter().all(|c| names.contains(c)))
    {
        result = Arc::new(LogicalPlan::Scan {
            table: table.select(&names)?,
            filters: filters.clone(),
            batches: batches.clone(),
        });
    }
    Ok(result)
}

/// The names of `exprs` when each is a plain column, read once.
fn plain_names(exprs: &[Expr]) -> Option<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(exprs.len());
    for expr in exprs {
        match expr {
            Expr::Column(name) if !names.contains(name) => names.push(name.clone()),
            _ => return None,
        }
    }
    Some(names)
}

/// A projection of a projection as one projection, when every column the outer one reads is
/// an output of the inner one and no computed inner column would be computed twice.
fn merge_with_inner_project(outer: &Arc<LogicalPlan>) -> Option<Arc<LogicalPlan>> {
    let LogicalPlan::Project { input, exprs } = outer.as_ref() else {
        return None;
    };
    let LogicalPlan::Project {
        input: inner_input,
        exprs: inner_exprs,
    } = input.as_ref()
    else {
        return None;
    };
    let computed: HashMap<String, Expr> = inner_exprs
        .iter()
        .map(|e| (e.output_name(), strip_alias(e.clone())))
        .collect();
    let mut uses: HashMap<String, usize> = HashMap::new();
    for expr in exprs {
        count_column_uses(expr, &mut uses);
    }
    for (name, count) in &uses {
        let expr = computed.get(name)?;
        if *count > 1 && !matches!(expr, Expr::Column(_) | Expr::Literal(_)) {
            return None;
        }
    }
    let merged_exprs = exprs
        .iter()
        .map(|expr| {
            let name = expr.output_name();
            let merged = fold_expr(
                expr.clone()
                    .substitute_columns(&|column| computed.get(column).cloned()),
            );
            if merged.output_name() == name {
                merged
            } else {
                merged.alias(name)
            }
        })
        .collect();
    let merged = Arc::new(LogicalPlan::Project {
        input: inner_input.clone(),
        exprs: merged_exprs,
    });
    // Substitution keeps every sub-expression's type; checked anyway, as a wrong merge would
    // fail the whole optimization.
    same_schema(&merged, outer).then_some(merged)
}

fn count_column_uses(expr: &Expr, uses: &mut HashMap<String, usize>) {
    if let Expr::Column(name) = expr {
        *uses.entry(name.clone()).or_default() += 1;
    }
    for child in expr.children() {
        with_stack_room(|| count_column_uses(child, uses));
    }
}

/// Whether `exprs` are exactly `input`'s columns, in order, each as a plain reference.
fn is_identity(exprs: &[Expr], input: &LogicalPlan) -> bool {
    let Ok(schema) = input.schema() else {
        return false;
    };
    schema.fields().len() == exprs.len()
        && schema
            .fields()
            .iter()
            .zip(exprs)
            .all(|(field, expr)| matches!(expr, Expr::Column(name) if name == field.name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::BinaryOp;
    use crate::optimizer::test_support::*;

    #[test]
    fn a_scan_reads_only_the_columns_selected_above_it() {
        let file = TestFile::people();
        let plan = Arc::new(
            file.scan()
                .project(vec![Expr::col("name"), Expr::col("age")])
                .unwrap(),
        );
        let (before, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert!(
            before.contains("columns=[id, age, score, name, city, flag]"),
            "{before}"
        );
        // Plain columns: the scan reads them in the order asked for, with no projection above.
        assert_eq!(
            shown(&rewritten, &file),
            "SCAN FILE columns=[name, age] rows=0..30\n"
        );
        // A computed column keeps its projection; the scan reads in file order below it.
        let plan = Arc::new(
            file.scan()
                .project(vec![
                    Expr::col("name"),
                    Expr::col("age").binary(BinaryOp::Add, Expr::col("id")),
                ])
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert!(
            shown(&rewritten, &file).ends_with("  SCAN FILE columns=[id, age, name] rows=0..30\n"),
            "{}",
            shown(&rewritten, &file)
        );
    }

    #[test]
    fn a_scan_keeps_the_columns_its_filters_read() {
        let file = TestFile::people();
        let scan = Arc::new(LogicalPlan::Scan {
            table: file.table(),
            filters: vec![Expr::col("score").binary(BinaryOp::Gt, float(1.0))],
            batches: None,
        });
        let plan = Arc::new(
            scan.project(vec![Expr::col("name"), Expr::col("id")])
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [col(\"name\"), col(\"id\")]\n  SCAN FILE columns=[id, score, name] rows=0..30 filters=[(col(\"score\") > 1.0)]\n"
        );
        // With the filter's column selected too, the scan reads exactly what is asked.
        let plan = Arc::new(
            scan.project(vec![Expr::col("score"), Expr::col("id")])
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SCAN FILE columns=[score, id] rows=0..30 filters=[(col(\"score\") > 1.0)]\n"
        );
    }

    #[test]
    fn columns_read_by_filters_are_kept() {
        let file = TestFile::people();
        let scan = Arc::new(LogicalPlan::Scan {
            table: file.table(),
            filters: vec![Expr::col("score").binary(BinaryOp::Gt, float(1.0))],
            batches: None,
        });
        let plan = Arc::new(scan.filter(Expr::col("flag")).unwrap());
        let plan = Arc::new(plan.project(vec![Expr::col("id")]).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [col(\"id\")]\n  FILTER col(\"flag\")\n    SCAN FILE columns=[id, score, flag] rows=0..30 filters=[(col(\"score\") > 1.0)]\n"
        );
    }

    #[test]
    fn a_projection_that_changes_nothing_is_removed() {
        let file = TestFile::people();
        // Select a subset: once the scan is pruned to it, the projection is the identity.
        let plan = Arc::new(
            file.scan()
                .project(vec![Expr::col("id"), Expr::col("age")])
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SCAN FILE columns=[id, age] rows=0..30\n"
        );
        // All columns in file order: removed at once.
        let all = file
            .table()
            .column_names()
            .into_iter()
            .map(Expr::col)
            .collect();
        let plan = Arc::new(file.scan().project(all).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert!(matches!(rewritten.as_ref(), LogicalPlan::Scan { .. }));
        // Reordered columns are not the identity, but a scan reads them in that order.
        let plan = Arc::new(
            file.scan()
                .project(vec![Expr::col("age"), Expr::col("id")])
                .unwrap(),
        );
        let (_, after, _) = run_rule(&ProjectionPruning, &plan);
        assert!(
            after.starts_with("SCAN") && after.contains("columns=[age, id]"),
            "{after}"
        );
    }

    #[test]
    fn stacked_projections_merge() {
        let file = TestFile::people();
        let inner = Arc::new(
            file.scan()
                .project(vec![
                    Expr::col("age")
                        .binary(BinaryOp::Add, int(1))
                        .alias("older"),
                    Expr::col("name").alias("who"),
                    Expr::col("score"),
                ])
                .unwrap(),
        );
        let plan = Arc::new(
            inner
                .project(vec![
                    Expr::col("who"),
                    Expr::col("older").binary(BinaryOp::Mul, int(2)),
                    Expr::col("who").alias("again"),
                ])
                .unwrap(),
        );
        let (before, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(before.lines().count(), 3);
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [col(\"name\").alias(\"who\"), ((col(\"age\") + 1) * 2).alias(\"older\"), col(\"name\").alias(\"again\")]\n  \
             SCAN FILE columns=[age, name] rows=0..30\n"
        );
    }

    #[test]
    fn a_computed_column_used_twice_is_not_merged_but_unused_ones_are_dropped() {
        let file = TestFile::people();
        let inner = Arc::new(
            file.scan()
                .project(vec![
                    Expr::col("age")
                        .binary(BinaryOp::Add, int(1))
                        .alias("older"),
                    Expr::col("score")
                        .binary(BinaryOp::Mul, float(2.0))
                        .alias("unused"),
                ])
                .unwrap(),
        );
        let plan = Arc::new(
            inner
                .project(vec![
                    Expr::col("older")
                        .binary(BinaryOp::Mul, Expr::col("older"))
                        .alias("square"),
                ])
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [(col(\"older\") * col(\"older\")).alias(\"square\")]\n  \
             SELECT [(col(\"age\") + 1).alias(\"older\")]\n    SCAN FILE columns=[age] rows=0..30\n"
        );
    }

    #[test]
    fn a_projection_of_constants_keeps_one_column_to_count_rows() {
        let file = TestFile::people();
        let plan = Arc::new(file.scan().project(vec![int(1).alias("one")]).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [1.alias(\"one\")]\n  SCAN FILE columns=[id] rows=0..30\n"
        );
    }

    #[test]
    fn takes_pass_the_columns_read_above_but_reinterpretations_keep_every_column() {
        let file = TestFile::people();
        let taken = Arc::new(file.scan().take(&[5, 1, 3], 30).unwrap());
        let plan = Arc::new(taken.project(vec![Expr::col("name")]).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        let text = shown(&rewritten, &file);
        assert!(
            text.ends_with("SCAN FILE columns=[name] rows=0..30\n"),
            "{text}"
        );

        let reinterpreted = Arc::new(
            file.scan()
                .reinterpret(vec![("id".into(), arrow::datatypes::DataType::Float64)])
                .unwrap(),
        );
        let plan = Arc::new(reinterpreted.project(vec![Expr::col("name")]).unwrap());
        assert!(Arc::ptr_eq(
            &ProjectionPruning.rewrite(plan.clone()).unwrap(),
            &plan
        ));
    }

    #[test]
    fn the_top_of_the_plan_keeps_every_column() {
        let file = TestFile::people();
        let plan = Arc::new(file.scan().filter(Expr::col("flag")).unwrap());
        let plan = Arc::new(plan.slice(0, 3));
        assert!(Arc::ptr_eq(
            &ProjectionPruning.rewrite(plan.clone()).unwrap(),
            &plan
        ));
    }

    #[test]
    fn below_sorts_unique_and_aggregations_only_the_columns_they_read_stay() {
        use crate::expr::{AggExpr, AggFunc, Keep, SortKey};
        let file = TestFile::people();
        let key = |name: &str| SortKey {
            expr: Expr::col(name),
            descending: true,
            nulls_last: false,
        };
        let sorted = Arc::new(file.scan().sort(vec![key("age")]).unwrap());
        let plan = Arc::new(sorted.project(vec![Expr::col("name")]).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            shown(&rewritten, &file),
            "SELECT [col(\"name\")]\n  SORT by=[col(\"age\") desc] (rows reordered: gathered into a copy)\n    SCAN FILE columns=[age, name] rows=0..30\n"
        );

        let unique = Arc::new(
            file.scan()
                .distinct(Some(vec!["city".into()]), Keep::Last)
                .unwrap(),
        );
        let plan = Arc::new(unique.project(vec![Expr::col("id")]).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert!(
            shown(&rewritten, &file).contains("SCAN FILE columns=[id, city]"),
            "{}",
            shown(&rewritten, &file)
        );
        // Without a subset every column decides which rows are equal: all stay.
        let unique = Arc::new(file.scan().distinct(None, Keep::First).unwrap());
        let plan = Arc::new(unique.project(vec![Expr::col("id")]).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert!(shown(&rewritten, &file).contains("columns=[id, age, score, name, city, flag]"));

        let aggs = vec![AggExpr::new(AggFunc::Mean, Expr::col("score")).alias("mean")];
        let plan = Arc::new(
            file.scan()
                .aggregate(vec![Expr::col("city")], aggs)
                .unwrap(),
        );
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert!(
            shown(&rewritten, &file).contains("SCAN FILE columns=[score, city]"),
            "{}",
            shown(&rewritten, &file)
        );
    }

    #[test]
    fn a_read_decodes_only_the_columns_read_above_it() {
        let data = TestDataset::parts();
        let plan = Arc::new(data.read().project(vec![Expr::col("age")]).unwrap());
        let (before, after, _) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            before,
            "SELECT [col(\"age\")]\n  READ ipc DIR files=3/3 columns=[id, age, part]\n"
        );
        assert_eq!(after, "READ ipc DIR files=3/3 columns=[age]\n");
        // Only a partition column is read: no column of the files is decoded.
        let plan = Arc::new(data.read().project(vec![Expr::col("part")]).unwrap());
        let (_, after, _) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(after, "READ ipc DIR files=3/3 columns=[part]\n");
        let plan = Arc::new(data.read().project(vec![int(1).alias("one")]).unwrap());
        let (_, after, _) = run_rule(&ProjectionPruning, &plan);
        assert_eq!(
            after,
            "SELECT [1.alias(\"one\")]\n  READ ipc DIR files=3/3 columns=[part]\n"
        );
    }

    #[test]
    fn each_side_of_a_join_reads_only_its_selected_columns_and_keys() {
        use crate::join::JoinType;
        let file = TestFile::people();
        let join = |how| {
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
        };
        let plan = Arc::new(
            join(JoinType::Inner)
                .project(vec![Expr::col("name"), Expr::col("score_right")])
                .unwrap(),
        );
        let (before, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        assert!(
            before.contains("columns=[id, age, score, name, city, flag, age_right"),
            "{before}"
        );
        assert_eq!(
            shown(&rewritten, &file),
            "JOIN how=inner left_on=[col(\"id\")] right_on=[col(\"id\")] columns=[name, score_right] \
             (matched rows gathered into new memory: a copy)\n  \
             SCAN FILE columns=[id, name] rows=0..30\n  SCAN FILE columns=[id, score] rows=0..30\n"
        );
        // The right side of a semi join is read for its keys only; at the top every column stays.
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &join(JoinType::Semi));
        let text = shown(&rewritten, &file);
        assert!(text.ends_with("  SCAN FILE columns=[id, age, score, name, city, flag] rows=0..30\n  SCAN FILE columns=[id] rows=0..30\n"), "{text}");
        // A filter above the join keeps the columns it reads.
        let filtered = Arc::new(
            join(JoinType::Left)
                .filter(Expr::col("flag_right"))
                .unwrap(),
        );
        let plan = Arc::new(filtered.project(vec![Expr::col("age")]).unwrap());
        let (_, _, rewritten) = run_rule(&ProjectionPruning, &plan);
        let text = shown(&rewritten, &file);
        assert!(text.contains("columns=[age, flag_right]"), "{text}");
        assert!(text.ends_with("SCAN FILE columns=[id, age] rows=0..30\n      SCAN FILE columns=[id, flag] rows=0..30\n"), "{text}");
    }
}
