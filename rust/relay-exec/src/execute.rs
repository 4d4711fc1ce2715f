//! Execution of logical plans into views: chunks of column arrays plus selection vectors
//! (`view`). This module only dispatches: each node's inputs are executed first, then its
//! operator runs on them and its statistics are recorded in the profile.
//!
//! A chunk is one record batch of the scanned file (its arrays point into the mapping) or the
//! output of a computed projection. Filters never copy column data (see `filter`). The only
//! copy happens at materialization, in one gather pass (see `gather`).

use std::time::Instant;

use arrow::array::{Array, RecordBatch};
use relay_plan::LogicalPlan;

use crate::aggregate::aggregate;
use crate::distinct::distinct;
use crate::error::ExecError;
use crate::filter::filter;
use crate::join::join;
use crate::nodes::{attach, memory, reinterpret, take};
use crate::pool::pool;
use crate::profile::{OperatorStats, Profile};
use crate::project::project;
use crate::read::execute_read;
use crate::scan::execute_scan;
use crate::sort::sort;
use crate::view::{ViewSet, slice};

/// Statistics of an operator that turned `rows_in` rows into `result`, copying `bytes_copied`.
fn row_stats(rows_in: usize, result: &ViewSet, bytes_copied: usize) -> OperatorStats {
    OperatorStats {
        rows_in,
        rows_out: result.num_rows(),
        bytes_copied,
        ..Default::default()
    }
}

/// Executes `plan` (already optimized), recording per-operator statistics in `profile`.
pub fn execute(plan: &LogicalPlan, profile: &Profile) -> Result<ViewSet, ExecError> {
    let started = Instant::now();
    let (result, stats) = match plan {
        LogicalPlan::Scan {
            table,
            filters,
            batches,
        } => execute_scan(table, filters, batches.as_deref())?,
        LogicalPlan::Read { view, filters } => execute_read(view, filters)?,
        LogicalPlan::Filter { input, predicate } => {
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result =
                filter(input, predicate).map_err(|e| e.in_file(plan, "filter evaluation"))?;
            let stats = row_stats(rows_in, &result, 0);
            (result, stats)
        }
        LogicalPlan::Project { input, exprs } => {
            let schema = plan.schema()?;
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let (result, bytes_copied) = project(input, exprs, schema)
                .map_err(|e| e.in_file(plan, "evaluating a computed column"))?;
            let stats = row_stats(rows_in, &result, bytes_copied);
            (result, stats)
        }
        LogicalPlan::Slice {
            input,
            offset,
            length,
        } => {
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result = slice(input, *offset, *length);
            let stats = row_stats(rows_in, &result, 0);
            (result, stats)
        }
        LogicalPlan::Take { input, indices } => {
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result = take(input, indices)?;
            let stats = row_stats(rows_in, &result, 0);
            (result, stats)
        }
        LogicalPlan::Memory {
            schema, batches, ..
        } => {
            let result = memory(schema.clone(), batches);
            let rows = result.num_rows();
            let stats = OperatorStats {
                rows_in: rows,
                rows_out: rows,
                bytes_read: batches.iter().map(RecordBatch::get_array_memory_size).sum(),
                ..Default::default()
            };
            (result, stats)
        }
        LogicalPlan::Reinterpret { input, columns } => {
            let schema = plan.schema()?;
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result = reinterpret(input, columns, schema)?;
            let stats = row_stats(rows_in, &result, 0);
            (result, stats)
        }
        LogicalPlan::AttachColumns { input, columns } => {
            let schema = plan.schema()?;
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result = attach(input, columns, schema)?;
            let stats = row_stats(rows_in, &result, 0);
            (result, stats)
        }
        LogicalPlan::Sort { input, keys, limit } => {
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result = sort(input, keys, *limit).map_err(|e| e.in_file(plan, "sort"))?;
            let stats = row_stats(rows_in, &result, 0);
            (result, stats)
        }
        LogicalPlan::Distinct {
            input,
            subset,
            keep,
        } => {
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result =
                distinct(input, subset.as_deref(), *keep).map_err(|e| e.in_file(plan, "unique"))?;
            let stats = row_stats(rows_in, &result, 0);
            (result, stats)
        }
        LogicalPlan::Aggregate { input, keys, aggs } => {
            let schema = plan.schema()?;
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result =
                aggregate(input, keys, aggs, schema).map_err(|e| e.in_file(plan, "aggregation"))?;
            let bytes_copied = result
                .chunks
                .iter()
                .flat_map(|c| &c.columns)
                .map(|c| c.get_array_memory_size())
                .sum();
            let stats = row_stats(rows_in, &result, bytes_copied);
            (result, stats)
        }
        LogicalPlan::Join {
            left,
            right,
            left_on,
            right_on,
            how,
            columns,
        } => {
            let schema = plan.schema()?;
            // Both inputs at once: each is parallel inside, but often small (a dimension
            // table), and its serial parts (hash table builds, merges) overlap the other's.
            let (left, right) = pool().join(|| execute(left, profile), || execute(right, profile));
            let (left, right) = (left?, right?);
            let rows_in = left.num_rows() + right.num_rows();
            let result = join(left, right, left_on, right_on, *how, columns, schema)
                .map_err(|e| e.in_file(plan, "join"))?;
            // Semi and anti joins select left rows (no copy); the others gather new arrays.
            let bytes_copied = if how.filters_left() {
                0
            } else {
                result
                    .chunks
                    .iter()
                    .flat_map(|c| &c.columns)
                    .map(|c| c.get_array_memory_size())
                    .sum()
            };
            let stats = row_stats(rows_in, &result, bytes_copied);
            (result, stats)
        }
    };
    profile.record(
        plan.to_string(),
        OperatorStats {
            wall: started.elapsed(),
            ..stats
        },
    );
    Ok(result)
}
