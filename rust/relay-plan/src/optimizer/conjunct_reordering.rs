//! Conjunct reordering: within a filter (and within a scan's filters), the conjuncts that are
//! cheap and drop many rows go first, so that the expensive ones run on fewer rows.
//!
//! The executor evaluates a conjunction one conjunct at a time, each on the rows the previous
//! ones kept. For conjuncts with per-row cost `c` and selectivity `s` (the fraction of rows
//! kept), evaluating them in the order 1..n costs `c1 + s1*c2 + s1*s2*c3 + ...`, which is
//! smallest when they are sorted by ascending rank `(s - 1) / c` (the classic ordering of
//! independent predicates; Hellerstein, "Predicate migration", 1993). Ties keep the written
//! order (a stable sort), so the result is deterministic.
//!
//! Cost (`estimate_cost`), in units of one comparison of two fixed-width values per row:
//! column and literal 0; `is_null` / `is_not_null` 0.25 (the validity bitmap); `&`, `|`, `~` 0.5;
//! comparison and arithmetic on fixed-width values 1, on dictionary-encoded values 2, on strings
//! or binary 8; `cast` 1 (8 from or to a string); `is_in` 4; `dt.*` 3; `str.len` 4;
//! `str.starts_with` / `ends_with` / `contains` 10; `fill_null` 1; `when` 2; plus the cost of
//! the operands. Every conjunct costs at least 0.25.
//!
//! Selectivity (`estimate_selectivity`), with statistics summed over the record batches of the
//! scan (min of the mins, max of the maxes, null and row counts added up) when the filter reads
//! a scan's columns and the statistics are there:
//! - `col op v` on a numeric or temporal column with bounds `[lo, hi]`, assuming values spread
//!   uniformly: integers (and dates, timestamps) count values, `width = hi - lo + 1`:
//!   `<` : `(v - lo) / width`, `<=`: `(v - lo + 1) / width`, `>` : `(hi - v) / width`,
//!   `>=`: `(hi - v + 1) / width`; floats use `width = hi - lo` and drop the `+ 1`
//!   (`age > 94` on ages 0..=99: `(99 - 94) / 100 = 0.05`);
//!   `==`: 0 outside `[lo, hi]`, else `1 / min(width, rows)` for integers and 0.1 for floats;
//!   `!=`: `1 - (==)`; each clamped to [0, 1] and multiplied by the non-null fraction
//!   `1 - nulls / rows`;
//! - `col.is_null()`: `nulls / rows`; `col.is_not_null()`: `1 - nulls / rows`;
//! - `col.is_in(values)`: the values inside `[lo, hi]` times the `==` estimate.
//!
//! Without statistics: `==` 0.1, `!=` 0.9, `< <= > >=` 1/3, `is_null` 0.05, `is_not_null` 0.95,
//! `is_in` `min(0.1 * len, 0.5)`, `str.starts_with` / `ends_with` 0.1, `str.contains` 0.2;
//! `a & b`: `s(a) * s(b)`; `a | b`: `s(a) + s(b) - s(a) * s(b)`; `~a`: `1 - s(a)`; a literal true
//! 1, false or null 0; anything else 0.5.
//!
//! Before any of these, a conjunct on a scan's column of the form `col op literal` (`== != <
//! <= > >=`), `col.is_in(values)` or `col.str.starts_with / ends_with / contains(literal)` is
//! evaluated on a sample of the scan's rows: `SAMPLE_BLOCKS` blocks of `SAMPLE_BLOCK_ROWS`
//! consecutive rows spread evenly over them (16 Ki rows, a few pages of each column, decoded
//! as views of the mapping), and its estimate is `(matches + 0.5) / (rows + 1)`. A sample
//! knows what min/max cannot: how often a dictionary string occurs, how skewed values are.
//! On `tab` (20 M rows, one record batch), `(city == "Lima") & (f0 > 0) & (age > 98)` is
//! estimated 0.126, 0.50 and 0.010 and runs as `age > 98`, `f0 > 0`, `city == "Lima"`.
//!
//! Statistics come from `relay_storage::cached_batch_stats`: this rule reads no column data
//! for them unless it is built with `compute_stats: true` (`batch_pruning`, which runs before
//! it, computes them for the columns filters read on scans over several record batches).
//! `estimate_selectivity` uses statistics only, never a sample.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Scalar, StringArray};
use arrow::compute::cast;
use arrow::compute::kernels::{boolean, cmp, comparison};
use arrow::datatypes::{DataType, Float64Type, Schema};
use relay_storage::{TableView, batch_stats, cached_batch_stats};

use crate::error::Result;
use crate::expr::{BinaryOp, Expr, Literal, StringMatch, UnaryOp, with_stack_room};
use crate::optimizer::batch_pruning::overlapping_batches;
use crate::optimizer::{OptimizerRule, literal_bool, transform_up};
use crate::plan::LogicalPlan;
use crate::resolve::resolve;

/// Orders the conjuncts of filters and scan filters by ascending `(selectivity - 1) / cost`.
#[derive(Debug, Clone, Copy)]
pub struct ConjunctReordering {
    /// Compute missing statistics (one pass over each filtered column) instead of using only
    /// those computed already.
    pub compute_stats: bool,
    /// Estimate simple conjuncts on a scan's columns from a sample of its rows.
    pub sample: bool,
}

impl Default for ConjunctReordering {
    fn default() -> Self {
        ConjunctReordering {
            compute_stats: false,
            sample: true,
        }
    }
}

impl OptimizerRule for ConjunctReordering {
    fn name(&self) -> &'static str {
        "conjunct_reordering"
    }

    fn rewrite(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
        transform_up(&plan, &mut |node| {
            Ok(match node.as_ref() {
                LogicalPlan::Scan {
                    table,
                    filters,
                    batches,
                } => {
                    let conjuncts: Vec<Expr> =
                        filters.iter().cloned().flat_map(Expr::conjuncts).collect();
                    let stats = StatsSource {
                        table: Some(table),
                        compute: self.compute_stats,
                        sample: self.sample,
                    };
                    match reorder(conjuncts, &table.schema(), &stats) {
                        // The same conjuncts in another order: the same batches may match.
                        Some(ordered) if &ordered != filters => Arc::new(LogicalPlan::Scan {
                            table: table.clone(),
                            filters: ordered,
                            batches: batches.clone(),
                        }),
                        _ => node.clone(),
                    }
                }
                LogicalPlan::Filter { input, predicate } => {
                    // A filter right on a scan reads the scan's columns: its statistics apply.
                    let table = match input.as_ref() {
                        LogicalPlan::Scan { table, .. } => Some(table),
                        _ => None,
                    };
                    let stats = StatsSource {
                        table,
                        compute: self.compute_stats,
                        sample: self.sample,
                    };
                    let conjuncts = predicate.clone().conjuncts();
                    let Ok(schema) = input.schema() else {
                        return Ok(node.clone());
                    };
                    match reorder(conjuncts, &schema, &stats) {
                        Some(ordered) => Arc::new(LogicalPlan::Filter {
                            input: input.clone(),
                            predicate: Expr::conjunction(ordered)
                                .unwrap_or_else(|| predicate.clone()),
                        }),
                        None => node.clone(),
                    }
                }
                _ => node.clone(),
            })
        })
    }
}

/// The conjuncts sorted by rank; None when the order does not change.
fn reorder(conjuncts: Vec<Expr>, schema: &Schema, stats: &StatsSource<'_>) -> Option<Vec<Expr>> {
    if conjuncts.len() < 2 {
        return None;
    }
    let mut ranked: Vec<(f64, usize, Expr)> = conjuncts
        .into_iter()
        .enumerate()
        .map(|(index, conjunct)| {
            let selectivity = selectivity(&conjunct, stats);
            let cost = estimate_cost(&conjunct, schema).max(MIN_COST);
            ((selectivity - 1.0) / cost, index, conjunct)
        })
        .collect();
    // Stable: equal ranks keep the order they were written in.
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    if ranked
        .iter()
        .enumerate()
        .all(|(position, (_, index, _))| position == *index)
    {
        return None;
    }
    Some(
        ranked
            .into_iter()
            .map(|(_, _, conjunct)| conjunct)
            .collect(),
    )
}

const MIN_COST: f64 = 0.25;

// -- cost -------------------------------------------------------------------------------------

fn data_type(expr: &Expr, schema: &Schema) -> Option<DataType> {
    resolve(expr.clone(), schema)
        .ok()
        .map(|resolved| resolved.data_type)
}

fn is_string_like(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// Per-row cost of comparing or computing on values of type `t`.
fn value_cost(t: Option<&DataType>) -> f64 {
    match t {
        Some(t) if is_string_like(t) => 8.0,
        Some(DataType::Dictionary(..)) => 2.0,
        _ => 1.0,
    }
}

/// Estimated per-row cost of evaluating `expr` over rows of `schema` (see the module docs).
pub fn estimate_cost(expr: &Expr, schema: &Schema) -> f64 {
    let children: f64 = expr
        .children()
        .iter()
        .map(|child| with_stack_room(|| estimate_cost(child, schema)))
        .sum();
    let own = match expr {
        Expr::Column(_) | Expr::Literal(_) | Expr::Alias { .. } => 0.0,
        Expr::Binary { op, left, .. } if op.is_logical() => 0.5,
        Expr::Binary { left, .. } => value_cost(data_type(left, schema).as_ref()),
        Expr::Unary { op, .. } => match op {
            UnaryOp::IsNull | UnaryOp::IsNotNull => 0.25,
            UnaryOp::Not => 0.5,
            UnaryOp::Negate | UnaryOp::Abs => 1.0,
            UnaryOp::StrLen => 4.0,
            UnaryOp::Year | UnaryOp::Month | UnaryOp::Day => 3.0,
        },
        Expr::StringMatch { .. } => 10.0,
        Expr::IsIn { .. } => 4.0,
        Expr::Cast { input, to } => {
            let from = data_type(input, schema);
            if is_string_like(to) || from.as_ref().is_some_and(is_string_like) {
                8.0
            } else {
                1.0
            }
        }
        Expr::FillNull { .. } => 1.0,
        Expr::Case { .. } => 2.0,
    };
    own + children
}

// -- selectivity ------------------------------------------------------------------------------

const DEFAULT_EQ: f64 = 0.1;
const DEFAULT_RANGE: f64 = 1.0 / 3.0;
const DEFAULT_IS_NULL: f64 = 0.05;

/// Statistics of one column over the rows of a scan, as numbers.
#[derive(Debug, Clone, Copy)]
struct Summary {
    /// Bounds as floats, for numeric and temporal columns without NaN.
    bounds: Option<(f64, f64)>,
    /// Integer-like values (integers, dates, timestamps, durations): count values, not length.
    discrete: bool,
    null_count: u64,
    row_count: u64,
}

impl Summary {
    fn non_null_fraction(&self) -> f64 {
        if self.row_count == 0 {
            0.0
        } else {
            1.0 - self.null_count as f64 / self.row_count as f64
        }
    }

    fn null_fraction(&self) -> f64 {
        if self.row_count == 0 {
            0.0
        } else {
            self.null_count as f64 / self.row_count as f64
        }
    }
}

struct StatsSource<'a> {
    table: Option<&'a TableView>,
    compute: bool,
    sample: bool,
}

/// Blocks of consecutive rows in a sample, and rows per block: 16 Ki rows in all. Consecutive
/// rows share pages (1024 32-bit values a page), so a sample touches a few dozen pages per
/// column; the blocks are spread so that data sorted or clustered by position is seen whole.
const SAMPLE_BLOCKS: u64 = 16;
const SAMPLE_BLOCK_ROWS: u64 = 1024;

impl StatsSource<'_> {
    /// The column's values at the sample rows of the scan, as slices of its decoded batches;
    /// None without a scan, for a column the scan does not have, or when a batch does not
    /// decode (the executor reports that).
    fn sample_of(&self, name: &str) -> Option<Vec<ArrayRef>> {
        if !self.sample {
            return None;
        }
        let table = self.table?;
        let column = table.column(name).ok()?;
        let rows = table.rows();
        if rows.length == 0 {
            return None;
        }
        let file = table.file();
        let index = file.column_index(name).ok()?;
        let starts = file.batch_row_starts();
        // Block starts, relative to the view: all rows when they fit in the sample.
        let blocks: Vec<(u64, u64)> = if rows.length <= SAMPLE_BLOCKS * SAMPLE_BLOCK_ROWS {
            vec![(0, rows.length)]
        } else {
            let span = rows.length - SAMPLE_BLOCK_ROWS;
            (0..SAMPLE_BLOCKS)
                .map(|i| (span * i / (SAMPLE_BLOCKS - 1), SAMPLE_BLOCK_ROWS))
                .collect()
        };
        let mut sample = Vec::with_capacity(blocks.len());
        for (offset, length) in blocks {
            let first = rows.offset + offset;
            // The batch holding `first`; a block that runs past its end is cut there.
            let batch = starts
                .partition_point(|&start| start <= first)
                .checked_sub(1)?;
            let batch_end = *starts.get(batch + 1)?;
            let length = length.min(batch_end - first);
            let decoded = file.decode_column(batch, index).ok()?;
            let within = (first - starts[batch]) as usize;
            if within + length as usize > decoded.array.len() {
                return None;
            }
            sample.push(decoded.array.slice(within, length as usize));
        }
        debug_assert!(sample.iter().all(|a| a.data_type() == column.data_type()));
        Some(sample)
    }

    /// The fraction of the sample rows of column `name` for which `test` is true (null counts
    /// as false), smoothed so that a sample without a match does not make a conjunct free.
    fn sampled(&self, name: &str, test: impl Fn(&ArrayRef) -> Option<BooleanArray>) -> Option<f64> {
        let sample = self.sample_of(name)?;
        let (mut matches, mut rows) = (0usize, 0usize);
        for block in &sample {
            let found = test(block)?;
            matches += found.true_count();
            rows += block.len();
        }
        Some((matches as f64 + 0.5) / (rows as f64 + 1.0))
    }

    /// The column's statistics over every batch the scan overlaps; None when any is missing.
    fn summary(&self, name: &str) -> Option<Summary> {
        let table = self.table?;
        table.column(name).ok()?;
        let file = table.file();
        let column = file.column_index(name).ok()?;
        let data_type = file.schema().field(column).data_type();
        let value_type = match data_type {
            DataType::Dictionary(_, value) => value.as_ref(),
            other => other,
        };
        let discrete = value_type.is_integer() || value_type.is_temporal();
        let numeric = discrete
            || value_type.is_floating()
            || matches!(
                value_type,
                DataType::Decimal128(..) | DataType::Decimal256(..)
            );
        let mut summary = Summary {
            bounds: None,
            discrete,
            null_count: 0,
            row_count: 0,
        };
        let mut bounds: Option<(f64, f64)> = None;
        let mut bounds_known = numeric;
        for batch in overlapping_batches(table) {
            let stats = if self.compute {
                batch_stats(file, batch, column).ok()?
            } else {
                cached_batch_stats(file, batch, column)?
            };
            summary.null_count += stats.null_count;
            summary.row_count += stats.row_count;
            if stats.all_null() || !bounds_known {
                continue;
            }
            match (
                stats.min.as_ref().and_then(as_f64),
                stats.max.as_ref().and_then(as_f64),
            ) {
                (Some(lo), Some(hi)) if !lo.is_nan() && !hi.is_nan() => {
                    bounds = Some(bounds.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))));
                }
                _ => bounds_known = false,
            }
        }
        summary.bounds = bounds.filter(|_| bounds_known);
        Some(summary)
    }
}

/// A one-element numeric or temporal array as a float.
fn as_f64(array: &ArrayRef) -> Option<f64> {
    let as_float = cast(array, &DataType::Float64)
        .or_else(|_| cast(array, &DataType::Int64).and_then(|ints| cast(&ints, &DataType::Float64)))
        .ok()?;
    let as_float = as_float.as_primitive::<Float64Type>();
    (as_float.len() == 1 && as_float.is_valid(0)).then(|| as_float.value(0))
}

/// Estimated fraction of rows for which `expr` is true, from the statistics of `table`'s
/// columns where they were computed already (see the module docs for the formulas).
pub fn estimate_selectivity(expr: &Expr, table: Option<&TableView>) -> f64 {
    selectivity(
        expr,
        &StatsSource {
            table,
            compute: false,
            sample: false,
        },
    )
}

fn selectivity(expr: &Expr, stats: &StatsSource<'_>) -> f64 {
    with_stack_room(|| selectivity_here(expr, stats))
}

fn selectivity_here(expr: &Expr, stats: &StatsSource<'_>) -> f64 {
    let estimate = match expr {
        Expr::Literal(_) => match literal_bool(expr) {
            Some(Some(true)) => 1.0,
            Some(_) => 0.0,
            None => 0.5,
        },
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => selectivity(left, stats) * selectivity(right, stats),
        Expr::Binary {
            op: BinaryOp::Or,
            left,
            right,
        } => {
            let (a, b) = (selectivity(left, stats), selectivity(right, stats));
            a + b - a * b
        }
        Expr::Binary { op, left, right } if op.is_comparison() => {
            comparison_selectivity(*op, left, right, stats)
        }
        Expr::Unary {
            op: UnaryOp::Not,
            input,
        } => 1.0 - selectivity(input, stats),
        Expr::Unary {
            op: op @ (UnaryOp::IsNull | UnaryOp::IsNotNull),
            input,
        } => {
            let null_fraction = match input.as_ref() {
                Expr::Column(name) => stats.summary(name).map(|s| s.null_fraction()),
                _ => None,
            }
            .unwrap_or(DEFAULT_IS_NULL);
            if *op == UnaryOp::IsNull {
                null_fraction
            } else {
                1.0 - null_fraction
            }
        }
        Expr::IsIn { input, values } => is_in_selectivity(input, values, stats),
        Expr::StringMatch {
            kind,
            input,
            pattern,
        } => {
            let sampled = match input.as_ref() {
                Expr::Column(name) => {
                    stats.sampled(name, |block| sample_string_match(*kind, block, pattern))
                }
                _ => None,
            };
            sampled.unwrap_or(match kind {
                StringMatch::StartsWith | StringMatch::EndsWith => 0.1,
                StringMatch::Contains => 0.2,
            })
        }
        _ => 0.5,
    };
    estimate.clamp(0.0, 1.0)
}

fn default_comparison(op: BinaryOp) -> f64 {
    match op {
        BinaryOp::Eq => DEFAULT_EQ,
        BinaryOp::NotEq => 1.0 - DEFAULT_EQ,
        _ => DEFAULT_RANGE,
    }
}

/// The column name read by `expr` directly or through a cast (casts of numbers keep order
/// closely enough for an estimate).
fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(name) => Some(name),
        Expr::Cast { input, .. } => column_name(input),
        _ => None,
    }
}

fn comparison_selectivity(op: BinaryOp, left: &Expr, right: &Expr, stats: &StatsSource<'_>) -> f64 {
    let (column, literal, op) = match (left, right) {
        (column, Expr::Literal(literal)) => (column, literal, op),
        (Expr::Literal(literal), column) => (column, literal, op.flipped()),
        _ => return default_comparison(op),
    };
    if literal.0.len() != 1 {
        return default_comparison(op);
    }
    if literal.is_null() {
        return 0.0;
    }
    if let Expr::Column(name) = column
        && let Some(sampled) = stats.sampled(name, |block| sample_comparison(op, block, &literal.0))
    {
        return sampled;
    }
    let Some(summary) = column_name(column).and_then(|name| stats.summary(name)) else {
        return default_comparison(op);
    };
    let non_null = summary.non_null_fraction();
    let (Some((lo, hi)), Some(value)) = (summary.bounds, as_f64(&literal.0)) else {
        return default_comparison(op) * non_null;
    };
    range_selectivity(op, value, lo, hi, &summary) * non_null
}

/// The fraction of non-null values `v` for which `v op value` holds, for values spread
/// uniformly over `[lo, hi]`.
fn range_selectivity(op: BinaryOp, value: f64, lo: f64, hi: f64, summary: &Summary) -> f64 {
    let rows = summary.row_count.saturating_sub(summary.null_count).max(1) as f64;
    let (width, step) = if summary.discrete {
        (hi - lo + 1.0, 1.0)
    } else {
        (hi - lo, 0.0)
    };
    if width <= 0.0 {
        // Every value equals lo.
        let holds = match op {
            BinaryOp::Eq => value == lo,
            BinaryOp::NotEq => value != lo,
            BinaryOp::Lt => lo < value,
            BinaryOp::LtEq => lo <= value,
            BinaryOp::Gt => lo > value,
            BinaryOp::GtEq => lo >= value,
            _ => return 0.5,
        };
        return if holds { 1.0 } else { 0.0 };
    }
    let equal = if value < lo || value > hi {
        0.0
    } else if summary.discrete {
        1.0 / width.min(rows)
    } else {
        DEFAULT_EQ
    };
    let fraction = match op {
        BinaryOp::Eq => equal,
        BinaryOp::NotEq => 1.0 - equal,
        BinaryOp::Lt => (value - lo) / width,
        BinaryOp::LtEq => (value - lo + step) / width,
        BinaryOp::Gt => (hi - value) / width,
        BinaryOp::GtEq => (hi - value + step) / width,
        _ => 0.5,
    };
    fraction.clamp(0.0, 1.0)
}

/// The type values of `column` compare as: a dictionary's value type, else its own.
fn value_type_of(column: &ArrayRef) -> DataType {
    match column.data_type() {
        DataType::Dictionary(_, value) => value.as_ref().clone(),
        other => other.clone(),
    }
}

/// `block op literal` with arrow's kernels (dictionaries compare through their values), or
/// None when the literal does not convert to the column's type.
fn sample_comparison(op: BinaryOp, block: &ArrayRef, literal: &ArrayRef) -> Option<BooleanArray> {
    let literal = Scalar::new(cast(literal, &value_type_of(block)).ok()?);
    let found = match op {
        BinaryOp::Eq => cmp::eq(block, &literal),
        BinaryOp::NotEq => cmp::neq(block, &literal),
        BinaryOp::Lt => cmp::lt(block, &literal),
        BinaryOp::LtEq => cmp::lt_eq(block, &literal),
        BinaryOp::Gt => cmp::gt(block, &literal),
        BinaryOp::GtEq => cmp::gt_eq(block, &literal),
        _ => return None,
    };
    found.ok()
}

/// Candidates up to which a sample evaluates `is_in` (one comparison pass per candidate).
const SAMPLE_IS_IN_MAX: usize = 64;

fn sample_is_in(block: &ArrayRef, values: &ArrayRef) -> Option<BooleanArray> {
    let mut found = BooleanArray::from(vec![false; block.len()]);
    for index in 0..values.len() {
        if values.is_valid(index) {
            let equal = sample_comparison(BinaryOp::Eq, block, &values.slice(index, 1))?;
            found = boolean::or_kleene(&found, &equal).ok()?;
        }
    }
    Some(found)
}

/// A string predicate on a block of plain strings (None for dictionaries and other types).
fn sample_string_match(kind: StringMatch, block: &ArrayRef, pattern: &str) -> Option<BooleanArray> {
    if !is_string_like(block.data_type()) {
        return None;
    }
    let pattern = Scalar::new(
        cast(
            &(Arc::new(StringArray::from(vec![pattern])) as ArrayRef),
            block.data_type(),
        )
        .ok()?,
    );
    let found = match kind {
        StringMatch::StartsWith => comparison::starts_with(block, &pattern),
        StringMatch::EndsWith => comparison::ends_with(block, &pattern),
        StringMatch::Contains => comparison::contains(block, &pattern),
    };
    found.ok()
}

fn is_in_selectivity(input: &Expr, values: &Literal, stats: &StatsSource<'_>) -> f64 {
    if let Expr::Column(name) = input
        && values.0.len() <= SAMPLE_IS_IN_MAX
        && let Some(sampled) = stats.sampled(name, |block| sample_is_in(block, &values.0))
    {
        return sampled;
    }
    let count = values.0.len() as f64;
    let default = (DEFAULT_EQ * count).min(0.5);
    let Some(summary) = column_name(input).and_then(|name| stats.summary(name)) else {
        return default;
    };
    let Some((lo, hi)) = summary.bounds else {
        return default * summary.non_null_fraction();
    };
    let Ok(as_floats) = cast(&values.0, &DataType::Float64) else {
        return default;
    };
    let as_floats = as_floats.as_primitive::<Float64Type>();
    let mut total = 0.0;
    for value in as_floats.iter().flatten() {
        total += range_selectivity(BinaryOp::Eq, value, lo, hi, &summary);
    }
    total.min(1.0) * summary.non_null_fraction()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::test_support::*;
    use arrow::array::{Int32Array, RecordBatch};
    use arrow::datatypes::Field;

    /// The rule with statistics computed already only: the defaults decide.
    const WITHOUT_SAMPLES: ConjunctReordering = ConjunctReordering {
        compute_stats: false,
        sample: false,
    };

    fn age(op: BinaryOp, value: i32) -> Expr {
        Expr::col("age").binary(op, Expr::lit(Arc::new(Int32Array::from(vec![value]))))
    }

    fn contains(name: &str, pattern: &str) -> Expr {
        Expr::StringMatch {
            kind: StringMatch::Contains,
            input: Arc::new(Expr::col(name)),
            pattern: pattern.into(),
        }
    }

    /// One batch of 100 rows: age 0..=99, name "n<age>".
    fn ages() -> TestFile {
        let schema = Arc::new(Schema::new(vec![
            Field::new("age", DataType::Int32, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from((0..100).collect::<Vec<i32>>())),
                Arc::new(arrow::array::StringArray::from_iter_values(
                    (0..100).map(|i| format!("n{i}")),
                )),
            ],
        )
        .unwrap();
        TestFile::write("ages", schema, &[batch])
    }

    #[test]
    fn uniform_estimates_from_min_and_max() {
        let file = ages();
        let table = file.table();
        // No statistics computed yet: the defaults.
        assert_eq!(
            estimate_selectivity(&age(BinaryOp::Gt, 94), Some(&table)),
            DEFAULT_RANGE
        );
        batch_stats(&file.file, 0, 0).unwrap();
        let estimate = |expr: Expr| estimate_selectivity(&expr, Some(&table));
        assert!((estimate(age(BinaryOp::Gt, 94)) - 0.05).abs() < 1e-12);
        assert!((estimate(age(BinaryOp::GtEq, 94)) - 0.06).abs() < 1e-12);
        assert!((estimate(age(BinaryOp::Lt, 10)) - 0.10).abs() < 1e-12);
        assert!((estimate(age(BinaryOp::LtEq, 10)) - 0.11).abs() < 1e-12);
        assert!((estimate(age(BinaryOp::Eq, 5)) - 0.01).abs() < 1e-12);
        assert_eq!(estimate(age(BinaryOp::Eq, 500)), 0.0);
        assert_eq!(estimate(age(BinaryOp::Gt, 500)), 0.0);
        assert_eq!(estimate(age(BinaryOp::Lt, 500)), 1.0);
        assert!((estimate(age(BinaryOp::NotEq, 5)) - 0.99).abs() < 1e-12);
        assert_eq!(estimate(Expr::col("age").unary(UnaryOp::IsNull)), 0.0);
        let is_in = Expr::IsIn {
            input: Arc::new(Expr::col("age")),
            values: Literal(Arc::new(Int32Array::from(vec![1, 2, 300]))),
        };
        assert!((estimate(is_in) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn null_counts_scale_the_estimates() {
        let file = TestFile::people();
        let table = file.table();
        for batch in 0..3 {
            batch_stats(&file.file, batch, 1).unwrap();
        }
        // 2 of 30 ages are null.
        let is_null = estimate_selectivity(&Expr::col("age").unary(UnaryOp::IsNull), Some(&table));
        assert!((is_null - 2.0 / 30.0).abs() < 1e-12);
        let all = estimate_selectivity(&age(BinaryOp::GtEq, 0), Some(&table));
        assert!((all - 28.0 / 30.0).abs() < 1e-12);
    }

    #[test]
    fn costs_put_strings_above_fixed_width_values() {
        let file = TestFile::people();
        let schema = file.table().schema();
        let compare_int = estimate_cost(&age(BinaryOp::Gt, 3), &schema);
        let compare_string = estimate_cost(
            &Expr::col("name").binary(BinaryOp::Eq, string("p1")),
            &schema,
        );
        let compare_dictionary = estimate_cost(
            &Expr::col("city").binary(BinaryOp::Eq, string("oslo")),
            &schema,
        );
        let matches = estimate_cost(&contains("name", "1"), &schema);
        let is_in = estimate_cost(
            &Expr::IsIn {
                input: Arc::new(Expr::col("age")),
                values: Literal(Arc::new(Int32Array::from(vec![1]))),
            },
            &schema,
        );
        assert!(
            compare_int < compare_dictionary
                && compare_dictionary < is_in
                && is_in < compare_string
                && compare_string < matches
        );
    }

    #[test]
    fn filter_conjuncts_go_cheap_and_selective_first() {
        let file = TestFile::people();
        let plan = Arc::new(
            file.scan()
                .filter(
                    contains("name", "1")
                        .and(age(BinaryOp::Gt, 3))
                        .and(Expr::col("age").unary(UnaryOp::IsNotNull)),
                )
                .unwrap(),
        );
        let (before, after, _) = run_rule(&WITHOUT_SAMPLES, &plan);
        assert_eq!(
            before.lines().next().unwrap(),
            "FILTER ((col(\"name\").str.contains(\"1\") & (col(\"age\") > 3)) & col(\"age\").is_not_null())"
        );
        // Without statistics: `> 3` keeps 1/3 at cost 1 (rank -0.67); is_not_null keeps 0.95 at
        // cost 0.25 (rank -0.2); contains keeps 0.2 at cost 10 (rank -0.08).
        assert_eq!(
            after.lines().next().unwrap(),
            "FILTER (((col(\"age\") > 3) & col(\"age\").is_not_null()) & col(\"name\").str.contains(\"1\"))"
        );
    }

    #[test]
    fn scan_filters_are_ordered_by_statistics() {
        let file = ages();
        let plan = Arc::new(LogicalPlan::Scan {
            table: file.table(),
            filters: vec![age(BinaryOp::Lt, 90), age(BinaryOp::Gt, 94)],
            batches: None,
        });
        // Without statistics both estimates are equal: the order stays.
        assert!(Arc::ptr_eq(
            &WITHOUT_SAMPLES.rewrite(plan.clone()).unwrap(),
            &plan
        ));
        let with_statistics = ConjunctReordering {
            compute_stats: true,
            sample: false,
        };
        let (before, after, _) = run_rule(&with_statistics, &plan);
        assert!(
            before.contains("filters=[(col(\"age\") < 90), (col(\"age\") > 94)]"),
            "{before}"
        );
        assert!(
            after.contains("filters=[(col(\"age\") > 94), (col(\"age\") < 90)]"),
            "{after}"
        );
    }

    #[test]
    fn equal_estimates_keep_the_written_order() {
        let file = TestFile::people();
        let plan = Arc::new(
            file.scan()
                .filter(age(BinaryOp::Gt, 3).and(age(BinaryOp::Lt, 20)))
                .unwrap(),
        );
        let plan = Arc::new(
            plan.filter(Expr::col("id").binary(BinaryOp::Gt, int(1)))
                .unwrap(),
        );
        let rewritten = ConjunctReordering::default().rewrite(plan.clone()).unwrap();
        assert!(Arc::ptr_eq(&rewritten, &plan));
    }

    /// One batch of 40,000 rows: `age` i % 100, `f` alternating -1.0 / 1.0, `city` a dictionary
    /// where "lima" is one row in eight.
    fn sampled_file() -> TestFile {
        let rows = 40_000;
        let dictionary_type =
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(vec![
            Field::new("age", DataType::Int32, false),
            Field::new("f", DataType::Float32, false),
            Field::new("city", dictionary_type, false),
        ]));
        let cities: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> = (0..rows)
            .map(|i| {
                if i % 8 == 3 {
                    "lima"
                } else {
                    ["oslo", "quito", "bern"][i % 3]
                }
            })
            .collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from_iter_values(
                    (0..rows).map(|i| (i % 100) as i32),
                )),
                Arc::new(arrow::array::Float32Array::from_iter_values(
                    (0..rows).map(|i| if i % 2 == 0 { -1.0 } else { 1.0 }),
                )),
                Arc::new(cities),
            ],
        )
        .unwrap();
        TestFile::write("sampled", schema, &[batch])
    }

    #[test]
    fn samples_estimate_dictionary_equality_and_comparisons() {
        let file = sampled_file();
        let table = file.table();
        let stats = StatsSource {
            table: Some(&table),
            compute: false,
            sample: true,
        };
        let city = Expr::col("city").binary(BinaryOp::Eq, string("lima"));
        let positive = Expr::col("f").binary(BinaryOp::Gt, float(0.0));
        let old = age(BinaryOp::Gt, 98);
        let close = |a: f64, b: f64| (a - b).abs() < 0.01;
        assert!(
            close(selectivity(&city, &stats), 0.125),
            "{}",
            selectivity(&city, &stats)
        );
        assert!(close(selectivity(&positive, &stats), 0.5));
        assert!(close(selectivity(&old, &stats), 0.01));
        let is_in = Expr::IsIn {
            input: Arc::new(Expr::col("age")),
            values: Literal(Arc::new(Int32Array::from(vec![1, 2, 3, 4, 500]))),
        };
        assert!(close(selectivity(&is_in, &stats), 0.04));
        // Without a sample, a dictionary string compare gets the default.
        assert_eq!(estimate_selectivity(&city, Some(&table)), DEFAULT_EQ);
    }

    #[test]
    fn sampled_scan_filters_go_selective_first() {
        let file = sampled_file();
        let written = vec![
            Expr::col("city").binary(BinaryOp::Eq, string("lima")),
            Expr::col("f").binary(BinaryOp::Gt, float(0.0)),
            age(BinaryOp::Gt, 98),
        ];
        let plan = Arc::new(LogicalPlan::Scan {
            table: file.table(),
            filters: written,
            batches: None,
        });
        // Without statistics: both comparisons 1/3 at cost 1, the string compare 0.1 at cost 2.
        let (_, unsampled, _) = run_rule(&WITHOUT_SAMPLES, &plan);
        assert!(
            unsampled.contains(
                "filters=[(col(\"f\") > 0.0), (col(\"age\") > 98), (col(\"city\") == \"lima\")]"
            ),
            "{unsampled}"
        );
        // Sampled: age > 98 keeps 1 %, f > 0 half, city == "lima" an eighth at twice the cost.
        let (before, after, _) = run_rule(&ConjunctReordering::default(), &plan);
        assert!(
            before.contains(
                "filters=[(col(\"city\") == \"lima\"), (col(\"f\") > 0.0), (col(\"age\") > 98)]"
            ),
            "{before}"
        );
        assert!(
            after.contains(
                "filters=[(col(\"age\") > 98), (col(\"f\") > 0.0), (col(\"city\") == \"lima\")]"
            ),
            "{after}"
        );
    }
}
