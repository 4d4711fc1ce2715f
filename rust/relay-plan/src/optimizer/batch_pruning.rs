//! Batch pruning: record batches whose statistics prove that no row passes a scan's filters are
//! not read.
//!
//! For each record batch the scan overlaps, each conjunct of `Scan.filters` is checked against
//! the batch's per-column statistics (`relay_storage::batch_stats`: min, max, null count):
//! - `col op literal` and `literal op col` for `== != < <= > >=`: e.g. `col > v` can match only
//!   if `max > v`; `col == v` only if `min <= v <= max`; `col != v` unless `min == max == v`;
//! - `col.is_in(values)`: only if some value lies in `[min, max]`;
//! - `between` arrives as two conjuncts and is checked as two;
//! - `col.is_null()` only if `null_count > 0`; `col.is_not_null()` only if some row is not null;
//! - a boolean column used as a predicate only if `max` is true;
//! - `a & b` and `a | b` combine the checks of their sides; a literal false or null never
//!   matches; a column compared through a widening cast (`age.cast(int64) > 2**40`) is checked
//!   on its statistics converted the same way.
//!
//! A comparison with a null literal never matches, nor does any comparison on a batch whose
//! column is all null. Anything else may match. NaN sorts above every number, so a float
//! column whose `max` is NaN (it holds a NaN, or a Parquet file could not rule one out) is
//! bounded below only: `<`, `<=`, `==` and `is_in` still prune on its `min`; one whose `min` is
//! NaN is not bounded at all. A zero bound is widened to cover both -0.0 and +0.0, so that the
//! check holds whether the executor orders floats as IEEE 754 comparisons or as arrow-rs's
//! total order.
//!
//! The rule narrows the scan's rows to the span from the first to the last surviving batch
//! (`TableView::slice`) and records the surviving batches on the scan (`Scan.batches`): the
//! executor reads only those, skipping the batches between them too.
//!
//! Statistics cost one pass over each filtered column of each batch the first time, then are
//! cached for as long as the file is open. A scan over a single record batch would pay that
//! pass to learn only whether the whole scan is empty, so there only statistics computed
//! already are used.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Scalar};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Float64Type};
use relay_storage::{
    ColumnStats, DatasetView, IpcFile, OpenedFile, PieceId, TableView, batch_stats,
    cached_batch_stats,
};

use crate::error::Result;
use crate::expr::{BinaryOp, Expr, Literal, UnaryOp, with_stack_room};
use crate::optimizer::{OptimizerRule, literal_bool, transform_up};
use crate::plan::LogicalPlan;

/// Narrows filtered scans to the record batches whose min/max statistics allow a match.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchPruning;

impl OptimizerRule for BatchPruning {
    fn name(&self) -> &'static str {
        "batch_pruning"
    }

    fn rewrite(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
        transform_up(&plan, &mut |node| {
            if let LogicalPlan::Read { view, filters } = node.as_ref() {
                // A file that cannot be opened or whose statistics cannot be read prunes
                // nothing here; the executor reports the error when it reads the file.
                return Ok(match pruned_read(view, filters) {
                    Ok(Some(view)) => Arc::new(LogicalPlan::Read {
                        view,
                        filters: filters.clone(),
                    }),
                    _ => node.clone(),
                });
            }
            let LogicalPlan::Scan { table, filters, .. } = node.as_ref() else {
                return Ok(node.clone());
            };
            if filters.is_empty() {
                return Ok(node.clone());
            }
            // Statistics that cannot be read (a damaged batch) prune nothing here; the executor
            // reports the damage when it reads the batch.
            let Ok(surviving) = surviving_batches(table, filters) else {
                return Ok(node.clone());
            };
            let narrowed = narrowed(table, &surviving);
            if narrowed.is_none() && surviving == overlapping_batches(table) {
                return Ok(node.clone());
            }
            Ok(Arc::new(LogicalPlan::Scan {
                table: narrowed.unwrap_or_else(|| table.clone()),
                filters: filters.clone(),
                batches: Some(surviving),
            }))
        })
    }
}

/// The record batches of `table.file()` that hold at least one row of `table`, in order.
pub(crate) fn overlapping_batches(table: &TableView) -> Vec<usize> {
    let rows = table.rows();
    let starts = table.file().batch_row_starts();
    let end = rows.offset + rows.length;
    (0..starts.len().saturating_sub(1))
        .filter(|&batch| starts[batch].max(rows.offset) < starts[batch + 1].min(end))
        .collect()
}

/// The record batches of `table` (indices into `table.file().batches()`, ascending, only
/// batches that hold rows of the view) that may contain a row passing every filter in
/// `filters`; the others can be skipped without changing the result.
///
/// Statistics are computed on first use and cached while the file is open; on a view that
/// overlaps one batch only cached statistics are used. Errors are decoding errors of the
/// batches whose statistics were needed.
pub fn surviving_batches(table: &TableView, filters: &[Expr]) -> Result<Vec<usize>> {
    let overlapping = overlapping_batches(table);
    if filters.is_empty() {
        return Ok(overlapping);
    }
    let context = StatsSource {
        table,
        compute: overlapping.len() > 1,
    };
    let mut surviving = Vec::with_capacity(overlapping.len());
    'batches: for batch in overlapping {
        for filter in filters {
            if !may_match(filter, &context, batch)? {
                continue 'batches;
            }
        }
        surviving.push(batch);
    }
    Ok(surviving)
}

/// `table` over the rows of the span from the first to the last surviving batch; None when
/// that is all of its rows already.
fn narrowed(table: &TableView, surviving: &[usize]) -> Option<TableView> {
    let rows = table.rows();
    let (Some(&first), Some(&last)) = (surviving.first(), surviving.last()) else {
        return (rows.length > 0).then(|| table.slice(0, 0));
    };
    let starts = table.file().batch_row_starts();
    let start = starts[first].max(rows.offset);
    let end = starts[last + 1].min(rows.offset + rows.length);
    let (offset, length) = (start - rows.offset, end - start);
    (offset != 0 || length != rows.length).then(|| table.slice(offset, length))
}

/// `view` without the files whose partition values, and the pieces whose statistics, prove
/// that no row passes `filters`; None when nothing is pruned.
///
/// Files are judged by their partition values first, known from their paths, so a file ruled
/// out that way is never opened. The surviving files are opened to judge their pieces: Parquet
/// row groups by the statistics in the footer, record batches of Arrow IPC files by
/// `batch_stats` (computed once, when the read has more than one piece). A read narrowed to a
/// range of rows (a slice) is left as it is: its rows are positions among all pieces.
pub fn pruned_read(view: &DatasetView, filters: &[Expr]) -> Result<Option<DatasetView>> {
    if filters.is_empty() || view.rows().is_some() {
        return Ok(None);
    }
    let mut kept_fragments = Vec::with_capacity(view.fragments().len());
    'fragments: for &fragment in view.fragments() {
        let source = PartitionStats { view, fragment };
        for filter in filters {
            if !may_match(filter, &source, 0)? {
                continue 'fragments;
            }
        }
        kept_fragments.push(fragment);
    }
    let dataset = view.dataset();
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    for &fragment in &kept_fragments {
        for piece in view.pieces_of(fragment)? {
            candidates.push((fragment, piece));
        }
    }
    let compute = candidates.len() > 1;
    let mut kept_pieces = Vec::with_capacity(candidates.len());
    'pieces: for (fragment, piece) in candidates.iter().copied() {
        let source = PieceStats {
            view,
            fragment,
            file: dataset.open(fragment)?,
            compute,
        };
        for filter in filters {
            if !may_match(filter, &source, piece)? {
                continue 'pieces;
            }
        }
        kept_pieces.push(PieceId { fragment, piece });
    }
    Ok(if kept_pieces.len() < candidates.len() {
        Some(view.keep_pieces(kept_pieces))
    } else if kept_fragments.len() < view.fragments().len() {
        Some(view.keep_fragments(kept_fragments))
    } else {
        None
    })
}

/// The rows of piece `piece` of file `fragment` worth decoding for `filters`, judged by the
/// statistics of its data pages (the Parquet page index): ascending, disjoint ranges of row
/// numbers within the piece. None when page statistics rule out no row (or there are none).
///
/// Pages of different columns start at different rows, so each conjunct that reads one column
/// is judged page by page on its own, and the rows kept are those every such conjunct keeps.
pub fn page_row_ranges(
    view: &DatasetView,
    fragment: usize,
    piece: usize,
    filters: &[Expr],
) -> Result<Option<Vec<Range<u64>>>> {
    let file = view.dataset().open(fragment)?;
    let Some(rows) = file.piece_rows(piece) else {
        return Ok(None);
    };
    // A list of one range (every row), not the list of the range's numbers.
    #[allow(clippy::single_range_in_vec_init)]
    let mut kept = vec![0..rows];
    for conjunct in filters.iter().cloned().flat_map(Expr::conjuncts) {
        let columns = conjunct.columns();
        let [name] = columns.as_slice() else {
            continue;
        };
        let Some(column) = view.column_index(name) else {
            continue;
        };
        // A partition column is not in the file: its one value per file was judged already.
        if view.partition_value(fragment, column).is_some() {
            continue;
        }
        let Some(pages) = file.page_stats(piece, column) else {
            continue;
        };
        if pages.iter().map(|(count, _)| count).sum::<u64>() != rows {
            continue;
        }
        let source = PageStats {
            view,
            column,
            pages: &pages,
        };
        let mut page_kept: Vec<Range<u64>> = Vec::new();
        let mut start = 0;
        for (page, (count, _)) in pages.iter().enumerate() {
            if may_match(&conjunct, &source, page)? {
                match page_kept.last_mut() {
                    Some(last) if last.end == start => last.end = start + count,
                    _ => page_kept.push(start..start + count),
                }
            }
            start += count;
        }
        kept = intersect_ranges(&kept, &page_kept);
    }
    let everything = kept.len() == 1 && kept[0] == (0..rows);
    Ok((!everything).then_some(kept))
}

/// The rows in both `a` and `b` (ascending, disjoint ranges each).
fn intersect_ranges(a: &[Range<u64>], b: &[Range<u64>]) -> Vec<Range<u64>> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (start, end) = (a[i].start.max(b[j].start), a[i].end.min(b[j].end));
        if start < end {
            out.push(start..end);
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// One column's statistics per data page, for the conjuncts that read only it.
struct PageStats<'a> {
    view: &'a DatasetView,
    column: usize,
    pages: &'a [(u64, Option<ColumnStats>)],
}

impl StatsLookup for PageStats<'_> {
    fn column(&self, name: &str) -> Option<(usize, DataType)> {
        let index = self
            .view
            .column_index(name)
            .filter(|&index| index == self.column)?;
        Some((
            index,
            self.view
                .dataset()
                .schema()
                .field(index)
                .data_type()
                .clone(),
        ))
    }

    fn stats(&self, page: usize, _column: usize) -> Result<Option<Arc<ColumnStats>>> {
        Ok(self.pages[page].1.clone().map(Arc::new))
    }
}

/// The value of a partition column as statistics: min = max = the value, or all null.
fn constant_stats(value: &ArrayRef) -> Arc<ColumnStats> {
    let null = value.is_null(0);
    Arc::new(ColumnStats {
        min: (!null).then(|| value.clone()),
        max: (!null).then(|| value.clone()),
        null_count: u64::from(null),
        row_count: 1,
    })
}

/// The partition values of one file of a read: its other columns are unknown.
struct PartitionStats<'a> {
    view: &'a DatasetView,
    fragment: usize,
}

impl StatsLookup for PartitionStats<'_> {
    fn column(&self, name: &str) -> Option<(usize, DataType)> {
        let index = self.view.column_index(name)?;
        let value = self.view.partition_value(self.fragment, index)?;
        Some((index, value.data_type().clone()))
    }

    fn stats(&self, _batch: usize, column: usize) -> Result<Option<Arc<ColumnStats>>> {
        Ok(self
            .view
            .partition_value(self.fragment, column)
            .map(constant_stats))
    }
}

/// The pieces of one opened file of a read: statistics per piece, by dataset column index.
struct PieceStats<'a> {
    view: &'a DatasetView,
    fragment: usize,
    file: &'a OpenedFile,
    /// Whether statistics an IPC file does not store may be computed (a pass over the column).
    compute: bool,
}

impl StatsLookup for PieceStats<'_> {
    fn column(&self, name: &str) -> Option<(usize, DataType)> {
        let index = self.view.column_index(name)?;
        Some((
            index,
            self.view
                .dataset()
                .schema()
                .field(index)
                .data_type()
                .clone(),
        ))
    }

    fn stats(&self, piece: usize, column: usize) -> Result<Option<Arc<ColumnStats>>> {
        if let Some(value) = self.view.partition_value(self.fragment, column) {
            return Ok(Some(constant_stats(value)));
        }
        Ok(match self.file {
            OpenedFile::Ipc(file) if !self.compute => cached_batch_stats(file, piece, column),
            other => other.piece_stats(piece, column)?,
        })
    }
}

/// Where statistics come from: the scan's file, computed on demand or cached only.
struct StatsSource<'a> {
    table: &'a TableView,
    compute: bool,
}

/// Where the checks find a column and its statistics per batch (or piece).
trait StatsLookup {
    /// The column `name` as an index the statistics are kept by, and its type; None when the
    /// source has no such column (then anything may match).
    fn column(&self, name: &str) -> Option<(usize, DataType)>;
    /// Statistics of `column` in `batch`; None when unknown.
    fn stats(&self, batch: usize, column: usize) -> Result<Option<Arc<ColumnStats>>>;
}

impl StatsLookup for StatsSource<'_> {
    fn column(&self, name: &str) -> Option<(usize, DataType)> {
        let file: &Arc<IpcFile> = self.table.file();
        // Only a column of the view: filters read the scan's columns.
        self.table.column(name).ok()?;
        let index = file.column_index(name).ok()?;
        Some((index, file.schema().field(index).data_type().clone()))
    }

    fn stats(&self, batch: usize, column: usize) -> Result<Option<Arc<ColumnStats>>> {
        let file = self.table.file();
        Ok(if self.compute {
            Some(batch_stats(file, batch, column)?)
        } else {
            cached_batch_stats(file, batch, column)
        })
    }
}

/// The column an expression reads and, when read through a cast that keeps the order of
/// values, the type it is cast to.
fn column_operand(expr: &Expr) -> Option<(&str, Option<&DataType>)> {
    match expr {
        Expr::Column(name) => Some((name, None)),
        Expr::Cast { input, to } => match input.as_ref() {
            Expr::Column(name) => Some((name, Some(to))),
            _ => None,
        },
        _ => None,
    }
}

fn value_type(t: &DataType) -> &DataType {
    match t {
        DataType::Dictionary(_, value) => value,
        other => other,
    }
}

/// Whether converting `from` to `to` keeps the order of values (`a <= b` implies
/// `cast(a) <= cast(b)`) for every value that converts: widening integer and float casts,
/// integers to floats, between string encodings, and to finer temporal types.
fn keeps_order(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let from = value_type(from);
    if from == to {
        return true;
    }
    let width = |t: &DataType| t.primitive_width().unwrap_or(usize::MAX);
    match (from, to) {
        (a, b) if a.is_signed_integer() && b.is_signed_integer() => width(a) <= width(b),
        (a, b) if a.is_unsigned_integer() && b.is_unsigned_integer() => width(a) <= width(b),
        (a, b) if a.is_unsigned_integer() && b.is_signed_integer() => width(a) < width(b),
        (a, b) if a.is_integer() && b.is_floating() => true,
        (a, b) if a.is_floating() && b.is_floating() => width(a) <= width(b),
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Date32, Date64 | Timestamp(..)) | (Date64, Timestamp(..)) => true,
        (Timestamp(from_unit, from_tz), Timestamp(to_unit, to_tz)) => {
            from_tz == to_tz && from_unit <= to_unit
        }
        _ => false,
    }
}

/// The bounds of a batch's column as the comparison sees them: converted through the cast the
/// expression applies, zeros widened to both signs; for floats, no upper bound (None) when
/// `max` is NaN. None when unknown.
fn bounds(stats: &ColumnStats, cast_to: Option<&DataType>) -> Option<(ArrayRef, Option<ArrayRef>)> {
    let (mut min, mut max) = (stats.min.clone()?, stats.max.clone()?);
    if let Some(to) = cast_to {
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        min = cast_with_options(&min, to, &options).ok()?;
        max = cast_with_options(&max, to, &options).ok()?;
    }
    if !min.data_type().is_floating() {
        return Some((min, Some(max)));
    }
    let as_f64 = |array: &ArrayRef| -> Option<f64> {
        let array = cast(array, &DataType::Float64).ok()?;
        let array = array.as_primitive::<Float64Type>();
        array.is_valid(0).then(|| array.value(0))
    };
    let (low, high) = (as_f64(&min)?, as_f64(&max)?);
    if low.is_nan() {
        return None;
    }
    let float_type = min.data_type().clone();
    let signed_zero = |value: f64| {
        cast(
            &(Arc::new(Float64Array::from(vec![value])) as ArrayRef),
            &float_type,
        )
        .ok()
    };
    if low == 0.0 {
        min = signed_zero(-0.0)?;
    }
    if high.is_nan() {
        return Some((min, None));
    }
    if high == 0.0 {
        max = signed_zero(0.0)?;
    }
    Some((min, Some(max)))
}

/// A comparison kernel of `arrow::compute::kernels::cmp`.
type Kernel = fn(
    &dyn arrow::array::Datum,
    &dyn arrow::array::Datum,
) -> std::result::Result<BooleanArray, arrow::error::ArrowError>;

/// `kernel(left, right)` on one-element arrays; None when the kernel refuses the types.
fn compare(kernel: Kernel, left: &ArrayRef, right: &ArrayRef) -> Option<bool> {
    let result = kernel(left, right).ok()?;
    (result.len() == 1 && result.is_valid(0)).then(|| result.value(0))
}

/// False only when the statistics of `batch` prove that no row makes `expr` true.
fn may_match(expr: &Expr, source: &dyn StatsLookup, batch: usize) -> Result<bool> {
    with_stack_room(|| may_match_here(expr, source, batch))
}

fn may_match_here(expr: &Expr, source: &dyn StatsLookup, batch: usize) -> Result<bool> {
    match expr {
        Expr::Literal(_) => Ok(literal_bool(expr).is_none_or(|value| value == Some(true))),
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => Ok(may_match(left, source, batch)? && may_match(right, source, batch)?),
        Expr::Binary {
            op: BinaryOp::Or,
            left,
            right,
        } => Ok(may_match(left, source, batch)? || may_match(right, source, batch)?),
        Expr::Binary { op, left, right } if op.is_comparison() => {
            let (column, literal, op) = match (left.as_ref(), right.as_ref()) {
                (column, Expr::Literal(literal)) => (column, literal, *op),
                (Expr::Literal(literal), column) => (column, literal, op.flipped()),
                _ => return Ok(true),
            };
            if literal.0.len() != 1 {
                return Ok(true);
            }
            if literal.is_null() {
                return Ok(false);
            }
            let Some((name, cast_to)) = column_operand(column) else {
                return Ok(true);
            };
            comparison_may_match(source, batch, name, cast_to, op, literal)
        }
        Expr::IsIn { input, values } => {
            let Some((name, cast_to)) = column_operand(input) else {
                return Ok(true);
            };
            is_in_may_match(source, batch, name, cast_to, values)
        }
        Expr::Unary {
            op: op @ (UnaryOp::IsNull | UnaryOp::IsNotNull),
            input,
        } => {
            let Expr::Column(name) = input.as_ref() else {
                return Ok(true);
            };
            let Some(stats) = column_stats(source, batch, name)? else {
                return Ok(true);
            };
            Ok(if *op == UnaryOp::IsNull {
                stats.null_count > 0
            } else {
                stats.null_count < stats.row_count
            })
        }
        Expr::Column(name) => {
            let Some(stats) = column_stats(source, batch, name)? else {
                return Ok(true);
            };
            if stats.all_null() {
                return Ok(false);
            }
            let max_is_false = stats.max.as_ref().and_then(|max| {
                max.as_boolean_opt()
                    .map(|max| max.is_valid(0) && !max.value(0))
            });
            Ok(max_is_false != Some(true))
        }
        _ => Ok(true),
    }
}

fn column_stats(
    source: &dyn StatsLookup,
    batch: usize,
    name: &str,
) -> Result<Option<Arc<ColumnStats>>> {
    match source.column(name) {
        Some((index, _)) => source.stats(batch, index),
        None => Ok(None),
    }
}

fn comparison_may_match(
    source: &dyn StatsLookup,
    batch: usize,
    name: &str,
    cast_to: Option<&DataType>,
    op: BinaryOp,
    literal: &Literal,
) -> Result<bool> {
    let Some((index, column_type)) = source.column(name) else {
        return Ok(true);
    };
    if cast_to.is_some_and(|to| !keeps_order(&column_type, to)) {
        return Ok(true);
    }
    let Some(stats) = source.stats(batch, index)? else {
        return Ok(true);
    };
    if stats.all_null() {
        return Ok(false);
    }
    let Some((min, max)) = bounds(&stats, cast_to) else {
        return Ok(true);
    };
    let value = &literal.0;
    if min.data_type() != value.data_type() {
        return Ok(true);
    }
    // Without an upper bound, anything at or above `min` may be there.
    let below_max = |kernel: Kernel| {
        max.as_ref()
            .map_or(Some(true), |max| compare(kernel, max, value))
    };
    let possible = match op {
        BinaryOp::Eq => compare(cmp::lt_eq, &min, value)
            .zip(below_max(cmp::gt_eq))
            .map(|(a, b)| a && b),
        BinaryOp::NotEq => compare(cmp::eq, &min, value)
            .zip(
                max.as_ref()
                    .map_or(Some(false), |max| compare(cmp::eq, max, value)),
            )
            .map(|(a, b)| !(a && b)),
        BinaryOp::Lt => compare(cmp::lt, &min, value),
        BinaryOp::LtEq => compare(cmp::lt_eq, &min, value),
        BinaryOp::Gt => below_max(cmp::gt),
        BinaryOp::GtEq => below_max(cmp::gt_eq),
        _ => None,
    };
    Ok(possible.unwrap_or(true))
}

fn is_in_may_match(
    source: &dyn StatsLookup,
    batch: usize,
    name: &str,
    cast_to: Option<&DataType>,
    values: &Literal,
) -> Result<bool> {
    let Some((index, column_type)) = source.column(name) else {
        return Ok(true);
    };
    if cast_to.is_some_and(|to| !keeps_order(&column_type, to)) {
        return Ok(true);
    }
    let Some(stats) = source.stats(batch, index)? else {
        return Ok(true);
    };
    if stats.all_null() {
        return Ok(false);
    }
    let Some((min, max)) = bounds(&stats, cast_to) else {
        return Ok(true);
    };
    if min.data_type() != values.data_type() {
        return Ok(true);
    }
    let in_range = cmp::gt_eq(&values.0, &Scalar::new(min)).and_then(|above| match max {
        Some(max) => boolean::and(&above, &cmp::lt_eq(&values.0, &Scalar::new(max))?),
        None => Ok(above),
    });
    Ok(in_range.map_or(true, |in_range| in_range.true_count() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizer::test_support::*;
    use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn page_ranges_intersect() {
        let a = [0..10, 20..30, 40..50];
        let b = [5..25, 29..41, 60..70];
        assert_eq!(
            intersect_ranges(&a, &b),
            vec![5..10, 20..25, 29..30, 40..41]
        );
        assert_eq!(intersect_ranges(&a, &[]), Vec::<Range<u64>>::new());
        let everything: Vec<Range<u64>> = std::iter::once(0..100).collect();
        assert_eq!(intersect_ranges(&everything, &a), a.to_vec());
    }

    fn age(op: BinaryOp, value: i32) -> Expr {
        Expr::col("age").binary(op, Expr::lit(Arc::new(Int32Array::from(vec![value]))))
    }

    fn filtered_scan(file: &TestFile, filters: Vec<Expr>) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Scan {
            table: file.table(),
            filters,
            batches: None,
        })
    }

    fn survivors(file: &TestFile, filters: Vec<Expr>) -> Vec<usize> {
        surviving_batches(&file.table(), &filters).unwrap()
    }

    #[test]
    fn comparisons_keep_the_batches_whose_range_allows_a_match() {
        let file = TestFile::people();
        // Ages: batch 0 holds 0..=9, batch 1 10..=19 (with nulls), batch 2 20..=29.
        assert_eq!(survivors(&file, vec![age(BinaryOp::Gt, 15)]), [1, 2]);
        assert_eq!(survivors(&file, vec![age(BinaryOp::GtEq, 20)]), [2]);
        assert_eq!(survivors(&file, vec![age(BinaryOp::Lt, 10)]), [0]);
        assert_eq!(survivors(&file, vec![age(BinaryOp::LtEq, 10)]), [0, 1]);
        assert_eq!(survivors(&file, vec![age(BinaryOp::Eq, 19)]), [1]);
        assert_eq!(survivors(&file, vec![age(BinaryOp::NotEq, 19)]), [0, 1, 2]);
        assert_eq!(
            survivors(&file, vec![age(BinaryOp::Gt, 99)]),
            Vec::<usize>::new()
        );
        // Literal on the left.
        let flipped =
            Expr::lit(Arc::new(Int32Array::from(vec![5]))).binary(BinaryOp::Gt, Expr::col("age"));
        assert_eq!(survivors(&file, vec![flipped]), [0]);
        // between(3, 12) is two conjuncts.
        assert_eq!(
            survivors(&file, vec![age(BinaryOp::GtEq, 3), age(BinaryOp::LtEq, 12)]),
            [0, 1]
        );
        // Or keeps what either side keeps.
        assert_eq!(
            survivors(
                &file,
                vec![age(BinaryOp::Lt, 2).binary(BinaryOp::Or, age(BinaryOp::Gt, 28))]
            ),
            [0, 2]
        );
    }

    #[test]
    fn strings_dictionaries_floats_booleans_and_casts_prune() {
        let file = TestFile::people();
        // Strings order as bytes: "p25" lies between "p0" and "p9" (batch 0) too.
        let name = Expr::col("name").binary(BinaryOp::Eq, string("p25"));
        assert_eq!(survivors(&file, vec![name]), [0, 2]);
        // A dictionary column is bounded by its whole dictionary, shared by all batches.
        let city = |value: &str| vec![Expr::col("city").binary(BinaryOp::Eq, string(value))];
        assert_eq!(survivors(&file, city("oslo")), [0, 1, 2]);
        assert_eq!(survivors(&file, city("aalborg")), Vec::<usize>::new());
        let score = Expr::col("score").binary(BinaryOp::Lt, float(4.0));
        assert_eq!(survivors(&file, vec![score]), [0]);
        assert_eq!(survivors(&file, vec![Expr::col("flag")]), [2]);
        let widened = Expr::Cast {
            input: Arc::new(Expr::col("age")),
            to: DataType::Int64,
        }
        .binary(BinaryOp::Gt, int(25));
        assert_eq!(survivors(&file, vec![widened]), [2]);
        // Narrowing casts do not keep the order of values: nothing is pruned.
        let narrowed = Expr::Cast {
            input: Arc::new(Expr::col("id")),
            to: DataType::Int8,
        }
        .binary(
            BinaryOp::Gt,
            Expr::lit(Arc::new(arrow::array::Int8Array::from(vec![100]))),
        );
        assert_eq!(survivors(&file, vec![narrowed]), [0, 1, 2]);
    }

    #[test]
    fn is_in_and_null_checks_prune() {
        let file = TestFile::people();
        let is_in = |values: Vec<i32>| Expr::IsIn {
            input: Arc::new(Expr::col("age")),
            values: Literal(Arc::new(Int32Array::from(values))),
        };
        assert_eq!(survivors(&file, vec![is_in(vec![3, 27])]), [0, 2]);
        assert_eq!(survivors(&file, vec![is_in(vec![])]), Vec::<usize>::new());
        assert_eq!(
            survivors(&file, vec![Expr::col("age").unary(UnaryOp::IsNull)]),
            [1]
        );
        assert_eq!(
            survivors(&file, vec![Expr::col("age").unary(UnaryOp::IsNotNull)]),
            [0, 1, 2]
        );
        let null = Expr::lit(Arc::new(Int32Array::from(vec![None])));
        assert_eq!(
            survivors(&file, vec![Expr::col("age").binary(BinaryOp::Gt, null)]),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn expressions_statistics_cannot_judge_keep_every_batch() {
        let file = TestFile::people();
        let computed = Expr::col("age")
            .binary(BinaryOp::Add, int(1))
            .binary(BinaryOp::Gt, int(100));
        assert_eq!(survivors(&file, vec![computed]), [0, 1, 2]);
        let not = age(BinaryOp::Gt, 100).unary(UnaryOp::Not);
        assert_eq!(survivors(&file, vec![not]), [0, 1, 2]);
    }

    #[test]
    fn a_scan_narrows_to_the_span_of_surviving_batches() {
        let file = TestFile::people();
        let plan = filtered_scan(&file, vec![age(BinaryOp::Gt, 15)]);
        let (before, _, rewritten) = run_rule(&BatchPruning, &plan);
        assert!(before.contains("rows=0..30"), "{before}");
        assert_eq!(
            shown(&rewritten, &file),
            "SCAN FILE columns=[id, age, score, name, city, flag] rows=10..30 filters=[(col(\"age\") > 15)]\n"
        );
        let LogicalPlan::Scan { batches, .. } = rewritten.as_ref() else {
            panic!("a scan stays a scan: {rewritten}");
        };
        assert_eq!(batches.as_deref(), Some([1, 2].as_slice()));
        // A gap in the middle stays in the span; the scan records it for the executor to skip.
        let gap = age(BinaryOp::Lt, 2).binary(BinaryOp::Or, age(BinaryOp::Gt, 28));
        let plan = filtered_scan(&file, vec![gap]);
        let rewritten = BatchPruning.rewrite(plan.clone()).unwrap();
        let LogicalPlan::Scan { table, batches, .. } = rewritten.as_ref() else {
            panic!("a scan stays a scan: {rewritten}");
        };
        assert_eq!(table.rows().length, 30);
        assert_eq!(batches.as_deref(), Some([0, 2].as_slice()));
        // Every batch may match: the scan is left as it is.
        let plan = filtered_scan(&file, vec![age(BinaryOp::Gt, 5)]);
        assert!(Arc::ptr_eq(
            &BatchPruning.rewrite(plan.clone()).unwrap(),
            &plan
        ));
    }

    #[test]
    fn a_sliced_scan_narrows_within_its_rows() {
        let file = TestFile::people();
        let plan = Arc::new(LogicalPlan::Scan {
            table: file.table().slice(5, 20),
            filters: vec![age(BinaryOp::Lt, 12)],
            batches: None,
        });
        let (before, _, rewritten) = run_rule(&BatchPruning, &plan);
        assert!(before.contains("rows=5..25"), "{before}");
        assert!(
            shown(&rewritten, &file).contains("rows=5..20 "),
            "{}",
            rewritten.display_indent()
        );
    }

    #[test]
    fn a_scan_no_batch_can_match_becomes_empty() {
        let file = TestFile::people();
        let plan = filtered_scan(&file, vec![age(BinaryOp::Gt, 99)]);
        let (_, _, rewritten) = run_rule(&BatchPruning, &plan);
        assert!(
            shown(&rewritten, &file).contains("rows=0..0 "),
            "{}",
            rewritten.display_indent()
        );
        // A literal false prunes without statistics.
        let plan = filtered_scan(&file, vec![crate::optimizer::bool_literal(false)]);
        let (_, after, _) = run_rule(&BatchPruning, &plan);
        assert!(after.contains("rows=0..0 "), "{after}");
    }

    #[test]
    fn unfiltered_scans_and_scans_every_batch_matches_are_unchanged() {
        let file = TestFile::people();
        let plan = file.scan();
        assert!(Arc::ptr_eq(
            &BatchPruning.rewrite(plan.clone()).unwrap(),
            &plan
        ));
        let plan = filtered_scan(&file, vec![age(BinaryOp::GtEq, 0)]);
        assert!(Arc::ptr_eq(
            &BatchPruning.rewrite(plan.clone()).unwrap(),
            &plan
        ));
    }

    #[test]
    fn a_single_batch_scan_uses_only_statistics_computed_already() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
            ],
        )
        .unwrap();
        let file = TestFile::write("single", schema, &[batch]);
        let filters = vec![Expr::col("x").binary(BinaryOp::Gt, int(10))];
        assert_eq!(survivors(&file, filters.clone()), [0]);
        assert!(cached_batch_stats(&file.file, 0, 0).is_none());
        batch_stats(&file.file, 0, 0).unwrap();
        assert_eq!(survivors(&file, filters), Vec::<usize>::new());
    }

    #[test]
    fn float_bounds_with_nan_or_signed_zeros_are_conservative() {
        let schema = Arc::new(Schema::new(vec![Field::new("f", DataType::Float64, true)]));
        let batches: Vec<RecordBatch> = [vec![-0.0, -0.0], vec![0.0, 1.0], vec![f64::NAN, 5.0]]
            .into_iter()
            .map(|values| {
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Float64Array::from(values))])
                    .unwrap()
            })
            .collect();
        let file = TestFile::write("floats", schema, &batches);
        let f = |op: BinaryOp, value: f64| vec![Expr::col("f").binary(op, float(value))];
        // IEEE says -0.0 >= 0.0; total order says no. Either way batch 0 must stay.
        assert_eq!(survivors(&file, f(BinaryOp::GtEq, 0.0)), [0, 1, 2]);
        // Batch 2 is bounded below by 5.0 only: its NaN sorts above every number.
        assert_eq!(survivors(&file, f(BinaryOp::Lt, 0.0)), [0, 1]);
        assert_eq!(survivors(&file, f(BinaryOp::Gt, 2.0)), [2]);
        assert_eq!(survivors(&file, f(BinaryOp::Gt, 1e300)), [2]);
        assert_eq!(survivors(&file, f(BinaryOp::Lt, -1.0)), Vec::<usize>::new());
        assert_eq!(survivors(&file, f(BinaryOp::Eq, 3.0)), Vec::<usize>::new());
        assert_eq!(survivors(&file, f(BinaryOp::Eq, 7.0)), [2]);
        assert_eq!(survivors(&file, f(BinaryOp::NotEq, 5.0)), [0, 1, 2]);
    }

    #[test]
    fn a_read_skips_files_by_partition_values_and_pieces_by_statistics() {
        let data = TestDataset::parts();
        let filters = vec![
            Expr::col("part").binary(BinaryOp::LtEq, int(1)),
            Expr::col("id").binary(BinaryOp::GtEq, int(12)),
        ];
        let plan = Arc::new(LogicalPlan::Read {
            view: relay_storage::DatasetView::new(data.dataset.clone()),
            filters,
        });
        let (before, after, _) = run_rule(&BatchPruning, &plan);
        assert_eq!(
            before,
            "READ ipc DIR files=3/3 columns=[id, age, part] filters=[(col(\"part\") <= 1), (col(\"id\") >= 12)]\n"
        );
        // File 2 is ruled out by its path and never opened; both batches of file 0 by their ids.
        assert_eq!(
            after,
            "READ ipc DIR files=1/3 columns=[id, age, part] pieces=2 filters=[(col(\"part\") <= 1), (col(\"id\") >= 12)]\n"
        );
        assert!(data.dataset.is_open(1) && !data.dataset.is_open(2));
    }
}
