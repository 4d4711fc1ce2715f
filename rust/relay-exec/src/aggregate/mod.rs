//! `Aggregate` (`group_by(keys).agg([...])`, or `agg([...])` without keys): parallel partial
//! aggregation with a merge, into new memory.
//!
//! 1. The input's selected rows are cut into morsels of at most `MORSEL_ROWS` rows, and the
//!    morsels into a few contiguous runs, one rayon task each. A task evaluates the keys and
//!    the aggregations' inputs one morsel at a time (nothing the size of the input is
//!    materialized) and folds them into a `Partial`: its own hash table of groups, numbered
//!    in order of first appearance, the key values of each group's first row, and one
//!    accumulator per aggregation.
//! 2. Keys: a single integer or date key is hashed as an `i64`; up to two integer-like or
//!    short string keys are packed into one `u128` (`crate::keys`; a null string packs to a
//!    word of its own); other keys are encoded in arrow-rs's row format (every key column of
//!    a row as one byte string, equal exactly when the keys are, nulls equal to each other as
//!    in Polars). A run whose keys stop packing (a string over 7 bytes, a null integer)
//!    re-encodes the groups it has in the row format and goes on there; before the merge,
//!    the other runs do the same.
//!    A morsel whose selection keeps at least 3/4 of its span is evaluated over the span and
//!    its selected rows picked where they are added up (`span`), rather than every
//!    column gathered first; inputs that recur inside later inputs are evaluated once per
//!    morsel (`share_inputs`).
//! 3. The partials merge in run order, so the groups of the result keep the order of their
//!    first row in the input. With many groups (at least `PARALLEL_MERGE_GROUPS`, over
//!    integer or packed keys) the key tables merge in parallel by hash partition
//!    (`merge_wide`), with the same numbering. Accumulators merge per group: sums and counts add, spreads
//!    combine by Chan's formula, min / max / first / last keep one candidate value per group
//!    and morsel (taken out of the morsel, so morsels are dropped as they are done) and choose
//!    among them at the end with arrow-rs's comparator (so they keep the input type: strings
//!    and dates included), medians and quantiles collect the values and select per group.
//!
//! Step 1 lives in `run`, with its fast path for dense selections in `span`; step 2 in
//! `groups`; the accumulators in `accumulator`, with the kernels of sums in `sums` and of
//! medians and quantiles in `quantiles`; step 3 in `merge`. This module plans the runs and
//! assembles the result (`aggregate`).

mod accumulator;
mod groups;
mod merge;
mod quantiles;
mod run;
mod span;
mod sums;
#[cfg(test)]
mod tests;

use arrow::array::{Array, ArrayRef, new_empty_array};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use rayon::prelude::*;
use relay_plan::{AggExpr, Expr};

use self::groups::KeyTable;
use self::merge::{PARALLEL_MERGE_GROUPS, Partial, merge_wide, wide_keys, widen_direct};
use self::run::{Plan, morsels, share_inputs};
use crate::error::ExecError;
use crate::pool::pool;
use crate::view::{Chunk, ViewSet};

/// The groups of `input` by `keys` with one column per aggregation: `schema`'s columns.
pub fn aggregate(
    input: ViewSet,
    keys: &[Expr],
    aggs: &[AggExpr],
    schema: SchemaRef,
) -> Result<ViewSet, ExecError> {
    let rows = input.num_rows();
    if rows > u32::MAX as usize {
        return Err(ExecError::Arrow(ArrowError::InvalidArgumentError(format!(
            "group_by(): {rows} rows are more than the {} an aggregation groups",
            u32::MAX
        ))));
    }
    let mut names: Vec<String> = Vec::new();
    for expr in keys.iter().chain(aggs.iter().map(|agg| &agg.input)) {
        for name in expr.columns() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let type_of = |expr: &Expr| {
        relay_plan::resolve::resolve(expr.clone(), &input.schema).map(|r| r.data_type)
    };
    let key_types = keys.iter().map(type_of).collect::<Result<Vec<_>, _>>()?;
    let input_types = aggs
        .iter()
        .map(|agg| type_of(&agg.input))
        .collect::<Result<Vec<_>, _>>()?;
    let output_types: Vec<DataType> = schema.fields()[keys.len()..]
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let converter = match KeyTable::new(&key_types, 0) {
        KeyTable::Encoded(_) | KeyTable::Packed { .. } => Some(RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?),
        _ => None,
    };
    let (inputs, shared) = share_inputs(aggs);
    let plan = Plan {
        input: &input,
        names,
        keys,
        key_types,
        aggs,
        inputs,
        shared,
        input_types,
        output_types,
        converter,
    };

    // A few runs per thread, so a run of slow morsels does not hold the others up.
    let morsels = morsels(&input);
    let runs = (pool().current_num_threads() * 4).clamp(1, morsels.len().max(1));
    let per_run = morsels.len().div_ceil(runs).max(1);
    let mut partials: Vec<Partial> = pool().install(|| {
        morsels
            .par_chunks(per_run)
            .map(|run| plan.run(run))
            .collect::<Result<_, ArrowError>>()
    })?;
    // Some runs met keys that do not pack: every run's groups merge in the row format.
    if partials
        .iter()
        .any(|p| matches!(p.table, KeyTable::Encoded(_)))
    {
        let converter = plan
            .converter
            .as_ref()
            .expect("packed keys have a converter");
        for partial in &mut partials {
            if matches!(partial.table, KeyTable::Packed { .. }) {
                partial.table = KeyTable::encoded(&partial.key_parts, converter)?;
            }
        }
    }

    // Direct tables merge one after another into one direct table over all their ranges
    // (when that is narrow enough), a lookup per group; otherwise, with many groups, the key
    // tables merge in parallel (`merge_wide`). The accumulators fold in run order, which is
    // linear in the groups.
    let direct = partials.len() > 1 && widen_direct(&mut partials, rows);
    let wide: Option<Vec<Vec<u128>>> = if !direct
        && partials.len() > 1
        && partials.iter().map(|p| p.table.len()).sum::<usize>() >= PARALLEL_MERGE_GROUPS
    {
        partials.iter().map(|p| wide_keys(&p.table)).collect()
    } else {
        None
    };
    let (mut merged, groups) = match (partials.len(), wide) {
        (0, _) => {
            let empty = plan.partial(0)?;
            let groups = empty.table.len();
            (empty, groups)
        }
        (_, Some(wide)) => {
            let (mappings, new_groups, groups) = merge_wide(&wide);
            drop(wide);
            let mut partials = partials
                .into_iter()
                .zip(mappings.into_iter().zip(new_groups));
            let (mut merged, _) = partials.next().expect("one partial at least");
            for (partial, (mapping, new_groups)) in partials {
                merged.fold(partial, &mapping, new_groups, groups)?;
            }
            (merged, groups)
        }
        _ => {
            let mut partials = partials.into_iter();
            let mut merged = partials.next().expect("one partial at least");
            for mut partial in partials {
                let table = std::mem::replace(&mut partial.table, KeyTable::Single);
                let (mapping, new_groups) = merged.table.merge(table);
                let groups = merged.table.len();
                merged.fold(partial, &mapping, new_groups, groups)?;
            }
            let groups = merged.table.len();
            (merged, groups)
        }
    };

    let mut columns = Vec::with_capacity(schema.fields().len());
    for (parts, field) in merged.key_parts.iter().zip(schema.fields()) {
        let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        columns.push(if parts.is_empty() {
            new_empty_array(field.data_type())
        } else {
            concat(&parts)?
        });
    }
    let accumulators = std::mem::take(&mut merged.accumulators);
    let outputs: Vec<ArrayRef> = pool().install(|| {
        accumulators
            .into_par_iter()
            .zip(plan.output_types.par_iter())
            .map(|(accumulator, output)| accumulator.finish(groups, output))
            .collect::<Result<_, ArrowError>>()
    })?;
    columns.extend(outputs);
    for (column, field) in columns.iter_mut().zip(schema.fields()) {
        if column.data_type() != field.data_type() {
            *column = cast(column, field.data_type())?;
        }
    }
    Ok(ViewSet {
        schema,
        chunks: vec![Chunk {
            columns,
            len: groups,
            selection: None,
        }],
    })
}
