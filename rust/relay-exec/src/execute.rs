//! Execution of logical plans into views: chunks of column arrays plus selection vectors.
//!
//! A chunk is one record batch of the scanned file (its arrays point into the mapping) or the
//! output of a computed projection. Filters never copy column data: they produce a selection
//! vector, the sorted row offsets inside the chunk that pass. Each chunk is cut into morsels of
//! `MORSEL_ROWS` rows that rayon evaluates in parallel; a conjunction is evaluated one conjunct
//! at a time, each only on the rows that passed the previous ones. The only copy happens at
//! materialization, in one gather pass (see `gather`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use rayon::prelude::*;
use relay_plan::{Expr, LogicalPlan};
use relay_storage::StorageError;

use crate::eval::{Value, evaluate};
use crate::profile::{OperatorStats, Profile};

/// Rows evaluated together by one task: large enough to amortize kernel calls, small enough
/// that a batch splits into many tasks for both cores and stays in L2 per column.
pub const MORSEL_ROWS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    #[error("{0}")]
    Plan(#[from] relay_plan::PlanError),
}

/// Arrays of equal length, and which of their rows are in the result.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub columns: Vec<ArrayRef>,
    pub len: usize,
    /// Sorted row offsets into `columns`; None means every row.
    pub selection: Option<Arc<Vec<u32>>>,
}

impl Chunk {
    pub fn num_selected(&self) -> usize {
        self.selection.as_ref().map_or(self.len, |s| s.len())
    }
}

/// The result of executing a plan: still views of the mapped file where nothing was computed.
#[derive(Debug, Clone)]
pub struct ViewSet {
    pub schema: SchemaRef,
    pub chunks: Vec<Chunk>,
}

impl ViewSet {
    pub fn num_rows(&self) -> usize {
        self.chunks.iter().map(Chunk::num_selected).sum()
    }

    /// Column `index` as dense arrays, one per chunk, with selections applied (a gather where
    /// there is a selection, the arrays as they are otherwise).
    pub fn column_arrays(&self, index: usize) -> Result<Vec<ArrayRef>, ExecError> {
        let arrays: Result<Vec<ArrayRef>, ArrowError> = pool().install(|| {
            self.chunks
                .par_iter()
                .map(|chunk| {
                    let column = &chunk.columns[index];
                    match &chunk.selection {
                        None => Ok(column.clone()),
                        Some(selection) => take(column.as_ref(), &UInt32Array::from(selection.as_ref().clone()), None),
                    }
                })
                .collect()
        });
        Ok(arrays?)
    }

    /// The result as record batches (gathering where there are selections).
    pub fn record_batches(&self) -> Result<Vec<RecordBatch>, ExecError> {
        let per_column: Vec<Vec<ArrayRef>> =
            (0..self.schema.fields().len()).map(|i| self.column_arrays(i)).collect::<Result<_, _>>()?;
        (0..self.chunks.len())
            .map(|c| {
                let arrays: Vec<ArrayRef> = per_column.iter().map(|col| col[c].clone()).collect();
                let options = RecordBatchOptions::new().with_row_count(Some(self.chunks[c].num_selected()));
                Ok(RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?)
            })
            .collect()
    }
}

/// The rayon pool of this process. A pool inherited through fork() has no threads in the
/// child and hangs its first parallel call, so a forked child (different pid) builds its own.
pub fn pool() -> Arc<rayon::ThreadPool> {
    static POOL: OnceLock<std::sync::Mutex<(u32, Arc<rayon::ThreadPool>)>> = OnceLock::new();
    let build = || Arc::new(rayon::ThreadPoolBuilder::new().thread_name(|i| format!("relay-{i}")).build().expect("thread pool"));
    let pid = std::process::id();
    let cell = POOL.get_or_init(|| std::sync::Mutex::new((pid, build())));
    let mut guard = cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.0 != pid {
        *guard = (pid, build());
    }
    guard.1.clone()
}

/// Executes `plan` (already optimized), recording per-operator statistics in `profile`.
pub fn execute(plan: &LogicalPlan, profile: &Profile) -> Result<ViewSet, ExecError> {
    let started = Instant::now();
    let (result, stats) = match plan {
        LogicalPlan::Scan { table, filters } => {
            let schema = table.schema();
            let batches = table.record_batches()?;
            let rows_in: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let bytes_read = batches.iter().map(|b| b.get_array_memory_size()).sum();
            let chunks = batches
                .into_iter()
                .map(|batch| Chunk {
                    len: batch.num_rows(),
                    columns: batch.columns().to_vec(),
                    selection: None,
                })
                .collect();
            let mut result = ViewSet { schema, chunks };
            if let Some(predicate) = Expr::conjunction(filters.iter().cloned()) {
                result = filter(result, &predicate)?;
            }
            let stats = OperatorStats {
                rows_in,
                rows_out: result.num_rows(),
                bytes_read,
                ..Default::default()
            };
            (result, stats)
        }
        LogicalPlan::Filter { input, predicate } => {
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result = filter(input, predicate)?;
            let stats = OperatorStats {
                rows_in,
                rows_out: result.num_rows(),
                ..Default::default()
            };
            (result, stats)
        }
        LogicalPlan::Project { input, exprs } => {
            let schema = plan.schema()?;
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let (result, bytes_copied) = project(input, exprs, schema)?;
            let stats = OperatorStats {
                rows_in,
                rows_out: result.num_rows(),
                bytes_copied,
                ..Default::default()
            };
            (result, stats)
        }
        LogicalPlan::Slice { input, offset, length } => {
            let input = execute(input, profile)?;
            let rows_in = input.num_rows();
            let result = slice(input, *offset as usize, *length as usize);
            let stats = OperatorStats {
                rows_in,
                rows_out: result.num_rows(),
                ..Default::default()
            };
            (result, stats)
        }
    };
    profile.record(plan.to_string(), OperatorStats {
        wall: started.elapsed(),
        ..stats
    });
    Ok(result)
}

/// The columns `names` of `chunk`, at the rows `rows` (all rows when None), as a batch.
fn batch_of(schema: &Schema, chunk: &Chunk, names: &[String], rows: Option<&[u32]>, range: (usize, usize)) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(names.len());
    let mut arrays = Vec::with_capacity(names.len());
    for name in names {
        let index = schema.index_of(name)?;
        fields.push(schema.field(index).clone());
        let column = &chunk.columns[index];
        arrays.push(match rows {
            Some(rows) => take(column.as_ref(), &UInt32Array::from(rows.to_vec()), None)?,
            None => column.slice(range.0, range.1),
        });
    }
    let len = rows.map_or(range.1, <[u32]>::len);
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &RecordBatchOptions::new().with_row_count(Some(len)))
}

/// Offsets of the true values of `mask` (nulls count as false), plus `base`.
fn true_positions(mask: &ArrayRef, base: u32, out: &mut Vec<u32>) -> Result<(), ArrowError> {
    let mask = match mask.data_type() {
        arrow::datatypes::DataType::Boolean => mask.as_boolean(),
        arrow::datatypes::DataType::Null => return Ok(()),
        other => return Err(ArrowError::InvalidArgumentError(format!("filter predicate gave {other}, not booleans"))),
    };
    let mask = crate::eval::null_as_false(mask);
    out.extend(mask.values().set_indices().map(|i| base + i as u32));
    Ok(())
}

/// Keeps the rows where every conjunct of `predicate` is true, one morsel per task. Each
/// conjunct after the first sees only the rows the earlier ones kept.
fn filter(input: ViewSet, predicate: &Expr) -> Result<ViewSet, ExecError> {
    let conjuncts = predicate.clone().conjuncts();
    let needed: Vec<Vec<String>> = conjuncts.iter().map(Expr::columns).collect();
    let schema = input.schema.clone();
    let chunks: Result<Vec<Chunk>, ArrowError> = pool().install(|| {
        input
            .chunks
            .into_par_iter()
            .map(|chunk| {
                if chunk.len > u32::MAX as usize {
                    return Err(ArrowError::InvalidArgumentError(format!(
                        "a record batch of {} rows is too large to filter (at most {} rows)",
                        chunk.len,
                        u32::MAX
                    )));
                }
                let morsels: Vec<(usize, usize)> = (0..chunk.len).step_by(MORSEL_ROWS).map(|s| (s, MORSEL_ROWS.min(chunk.len - s))).collect();
                let selected: Vec<Vec<u32>> = morsels
                    .par_iter()
                    .map(|&(start, len)| filter_morsel(&schema, &chunk, &conjuncts, &needed, start, len))
                    .collect::<Result<_, _>>()?;
                let selection: Vec<u32> = selected.into_iter().flatten().collect();
                Ok(Chunk {
                    selection: Some(Arc::new(selection)),
                    ..chunk
                })
            })
            .collect()
    });
    Ok(ViewSet { schema, chunks: chunks? })
}

fn filter_morsel(
    schema: &Schema,
    chunk: &Chunk,
    conjuncts: &[Expr],
    needed: &[Vec<String>],
    start: usize,
    len: usize,
) -> Result<Vec<u32>, ArrowError> {
    // Rows of this morsel that are still in: the chunk's selection restricted to the morsel.
    let mut rows: Option<Vec<u32>> = chunk.selection.as_ref().map(|selection| {
        let lo = selection.partition_point(|&r| (r as usize) < start);
        let hi = selection.partition_point(|&r| (r as usize) < start + len);
        selection[lo..hi].to_vec()
    });
    for (conjunct, names) in conjuncts.iter().zip(needed) {
        if rows.as_ref().is_some_and(Vec::is_empty) {
            break;
        }
        let batch = batch_of(schema, chunk, names, rows.as_deref(), (start, len))?;
        let mask = evaluate(conjunct, &batch)?.into_array(batch.num_rows())?;
        let mut kept = Vec::new();
        match &rows {
            None => true_positions(&mask, start as u32, &mut kept)?,
            Some(previous) => {
                let mut positions = Vec::new();
                true_positions(&mask, 0, &mut positions)?;
                kept.extend(positions.into_iter().map(|p| previous[p as usize]));
            }
        }
        rows = Some(kept);
    }
    Ok(rows.unwrap_or_else(|| (start as u32..(start + len) as u32).collect()))
}

/// Plain column references keep their arrays and the selection (still views); computed
/// columns are evaluated on the selected rows only, which first gathers the chunk.
fn project(input: ViewSet, exprs: &[Expr], schema: SchemaRef) -> Result<(ViewSet, usize), ExecError> {
    let input_schema = input.schema.clone();
    let plain: Option<Vec<usize>> = exprs
        .iter()
        .map(|expr| match expr {
            Expr::Column(name) => input_schema.index_of(name).ok(),
            Expr::Alias { input, .. } => match input.as_ref() {
                Expr::Column(name) => input_schema.index_of(name).ok(),
                _ => None,
            },
            _ => None,
        })
        .collect();
    if let Some(indices) = plain {
        let chunks = input
            .chunks
            .into_iter()
            .map(|chunk| Chunk {
                columns: indices.iter().map(|&i| chunk.columns[i].clone()).collect(),
                ..chunk
            })
            .collect();
        return Ok((ViewSet { schema, chunks }, 0));
    }
    let needed: Vec<String> = {
        let mut names = Vec::new();
        for expr in exprs {
            for name in expr.columns() {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    };
    let results: Result<Vec<(Chunk, usize)>, ArrowError> = pool().install(|| {
        input
            .chunks
            .into_par_iter()
            .map(|chunk| {
                let batch = batch_of(&input_schema, &chunk, &needed, chunk.selection.as_deref().map(Vec::as_slice), (0, chunk.len))?;
                let len = batch.num_rows();
                let columns = exprs
                    .iter()
                    .map(|expr| evaluate(expr, &batch).and_then(|v: Value| v.into_array(len)))
                    .collect::<Result<Vec<_>, _>>()?;
                let copied = columns.iter().map(|c| c.get_array_memory_size()).sum();
                Ok((Chunk { columns, len, selection: None }, copied))
            })
            .collect()
    });
    let results = results?;
    let copied = results.iter().map(|(_, c)| c).sum();
    Ok((
        ViewSet {
            schema,
            chunks: results.into_iter().map(|(chunk, _)| chunk).collect(),
        },
        copied,
    ))
}

fn slice(input: ViewSet, offset: usize, length: usize) -> ViewSet {
    let mut skip = offset;
    let mut remaining = length;
    let mut chunks = Vec::new();
    for chunk in input.chunks {
        let n = chunk.num_selected();
        if skip >= n {
            skip -= n;
            continue;
        }
        if remaining == 0 {
            break;
        }
        let take_rows = (n - skip).min(remaining);
        let chunk = match &chunk.selection {
            Some(selection) => Chunk {
                selection: Some(Arc::new(selection[skip..skip + take_rows].to_vec())),
                ..chunk
            },
            None => Chunk {
                columns: chunk.columns.iter().map(|c| c.slice(skip, take_rows)).collect(),
                len: take_rows,
                selection: None,
            },
        };
        chunks.push(chunk);
        remaining -= take_rows;
        skip = 0;
    }
    ViewSet { schema: input.schema, chunks }
}
