//! Logical plans: what a Frame computes, as a tree whose leaves are mapped files.
//!
//! Builders check types as the plan grows (`filter`, `select`, ...), so a wrong expression
//! fails when the user writes it, not when data flows.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use relay_storage::{DatasetView, TableView, slice_batches, type_name};

use crate::error::{PlanError, Result};
use crate::expr::{AggExpr, Expr, Keep, SortKey};
use crate::join::{JoinColumn, JoinType, join_schema};
use crate::resolve::{field_named, is_orderable, resolve, resolve_aggregate};

#[derive(Debug, Clone)]
pub enum LogicalPlan {
    /// Columns of a mapped file over a range of rows. `filters` are predicates pushed into the
    /// scan: evaluated as rows are produced, and used to skip record batches by their min/max.
    Scan {
        table: TableView,
        filters: Vec<Expr>,
        /// The record batches of `table.file()` (indices, ascending) that may hold a row
        /// passing `filters`, as batch pruning found from their statistics: the scan reads only
        /// these. None when the scan was not pruned: it reads every batch `table` overlaps.
        batches: Option<Vec<usize>>,
    },
    /// Columns of files that are decoded when read (Parquet, CSV, NDJSON) or of several files
    /// (a list, a glob, a hive-partitioned folder): the fragments and pieces of `view` that
    /// survive pruning, each decoded (or, for Arrow IPC, viewed) and filtered by `filters`
    /// right after. Filters are pushed here as into a scan, and prune whole files by their
    /// partition values and pieces by their statistics.
    Read {
        view: DatasetView,
        filters: Vec<Expr>,
    },
    /// Rows where `predicate` is true (null counts as false).
    Filter {
        input: Arc<LogicalPlan>,
        predicate: Expr,
    },
    /// One output column per expression, named by `Expr::output_name`.
    Project {
        input: Arc<LogicalPlan>,
        exprs: Vec<Expr>,
    },
    /// Rows `offset .. offset + length` of the input.
    Slice {
        input: Arc<LogicalPlan>,
        offset: u64,
        length: u64,
    },
    /// The input's rows at `indices` (positions among the rows the input yields, checked when
    /// the node is built), in that order; an index may repeat. A selection, not a copy: the
    /// executor maps each index to (chunk, row) and keeps the chunks' columns, so a chunk's
    /// selection may go backwards (a shuffle).
    Take {
        input: Arc<LogicalPlan>,
        indices: Arc<Vec<u64>>,
    },
    /// Record batches held in memory: the leaf of a collected frame (arrays that were views of
    /// a mapped file when collected still are), or of a frame made from data already in memory,
    /// whose `origin` names the call that made it (`from_numpy`, ...).
    Memory {
        schema: SchemaRef,
        batches: Arc<Vec<RecordBatch>>,
        origin: Option<Arc<str>>,
    },
    /// Columns whose bits are read as another type of the same width (`int32` as `float32`,
    /// `int64` as `timestamp[us]`, ...): the schema changes, the buffers do not. `columns` holds
    /// each changed column's full new type (for a `fixed_size_list` column, the list type with
    /// the new item type).
    Reinterpret {
        input: Arc<LogicalPlan>,
        columns: Vec<(String, DataType)>,
    },
    /// Arrays from outside the plan (NumPy, Arrow) attached as columns. `input` is a plan whose
    /// rows are a file's or memory's, in order (a scan without filters, memory), so row `i` of
    /// each array belongs to row `i` of the input. A name the input has is replaced in place.
    AttachColumns {
        input: Arc<LogicalPlan>,
        columns: Vec<AttachedColumn>,
    },
    /// The input's rows ordered by `keys` (the first key first; equal rows keep their input
    /// order), only the first `limit` of them when set (a top-k: no full sort). The output is
    /// a selection of the input's rows, gathered when exported.
    Sort {
        input: Arc<LogicalPlan>,
        keys: Vec<SortKey>,
        limit: Option<u64>,
    },
    /// One row per distinct value of the `subset` columns (all columns when None), the one
    /// `keep` says, in input order. A selection of the input's rows, like `Sort`.
    Distinct {
        input: Arc<LogicalPlan>,
        subset: Option<Vec<String>>,
        keep: Keep,
    },
    /// One row per distinct value of `keys`, in order of first appearance: the keys, then one
    /// column per aggregation. Computed into new memory.
    Aggregate {
        input: Arc<LogicalPlan>,
        keys: Vec<Expr>,
        aggs: Vec<AggExpr>,
    },
    /// Pairs of rows of `left` and `right` whose keys are equal (`left_on[i] == right_on[i]`
    /// for every i; a null key matches nothing), kept as `how` says. `columns` are the output
    /// columns, each an input column of one side under its output name (see `crate::join`).
    /// Computed into new memory, except semi / anti joins: a selection of the left rows.
    Join {
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        left_on: Vec<Expr>,
        right_on: Vec<Expr>,
        how: JoinType,
        columns: Vec<JoinColumn>,
    },
}

/// An external array attached to a plan as a column.
#[derive(Debug, Clone)]
pub struct AttachedColumn {
    pub name: String,
    pub array: ArrayRef,
    /// Why the array is a copy of what the caller passed (not C-contiguous, booleans as bits,
    /// ...); None when its buffers are the caller's own memory, referenced.
    pub copied: Option<String>,
}

impl LogicalPlan {
    pub fn scan(table: TableView) -> Self {
        LogicalPlan::Scan {
            table,
            filters: vec![],
            batches: None,
        }
    }

    /// Every column and row of a dataset's view, unfiltered.
    pub fn read(view: DatasetView) -> Self {
        LogicalPlan::Read {
            view,
            filters: vec![],
        }
    }

    /// The output schema. Plans are built type-checked, so this only fails on a plan that
    /// was assembled by hand wrongly.
    pub fn schema(&self) -> Result<SchemaRef> {
        match self {
            LogicalPlan::Scan { table, .. } => Ok(table.schema()),
            LogicalPlan::Read { view, .. } => Ok(view.schema()),
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Slice { input, .. }
            | LogicalPlan::Take { input, .. }
            | LogicalPlan::Sort { input, .. }
            | LogicalPlan::Distinct { input, .. } => input.schema(),
            LogicalPlan::Aggregate { input, keys, aggs } => {
                let input_schema = input.schema()?;
                let mut fields = Vec::with_capacity(keys.len() + aggs.len());
                for key in keys {
                    let resolved = resolve(key.clone(), &input_schema)?;
                    fields.push(Field::new(key.output_name(), resolved.data_type, true));
                }
                for agg in aggs {
                    let (_, data_type) = resolve_aggregate(agg.clone(), &input_schema)?;
                    fields.push(Field::new(&agg.name, data_type, true));
                }
                Ok(Arc::new(Schema::new(fields)))
            }
            LogicalPlan::Memory { schema, .. } => Ok(schema.clone()),
            LogicalPlan::Join {
                left,
                right,
                columns,
                ..
            } => join_schema(&*left.schema()?, &*right.schema()?, columns),
            LogicalPlan::Reinterpret { input, columns } => {
                let input_schema = input.schema()?;
                let fields = input_schema
                    .fields()
                    .iter()
                    .map(
                        |field| match columns.iter().find(|(name, _)| name == field.name()) {
                            Some((_, to)) => {
                                Arc::new(field.as_ref().clone().with_data_type(to.clone()))
                            }
                            None => field.clone(),
                        },
                    )
                    .collect::<Vec<_>>();
                Ok(Arc::new(Schema::new_with_metadata(
                    fields,
                    input_schema.metadata().clone(),
                )))
            }
            LogicalPlan::AttachColumns { input, columns } => {
                let input_schema = input.schema()?;
                let mut fields: Vec<Arc<Field>> = input_schema.fields().iter().cloned().collect();
                for column in columns {
                    let field = Arc::new(Field::new(
                        &column.name,
                        column.array.data_type().clone(),
                        true,
                    ));
                    match fields.iter().position(|f| f.name() == &column.name) {
                        Some(index) => fields[index] = field,
                        None => fields.push(field),
                    }
                }
                Ok(Arc::new(Schema::new_with_metadata(
                    fields,
                    input_schema.metadata().clone(),
                )))
            }
            LogicalPlan::Project { input, exprs } => {
                let input_schema = input.schema()?;
                let fields = exprs
                    .iter()
                    .map(|expr| {
                        let resolved = resolve(expr.clone(), &input_schema)?;
                        Ok(Field::new(expr.output_name(), resolved.data_type, true))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Arc::new(Schema::new(fields)))
            }
        }
    }

    pub fn inputs(&self) -> Vec<&Arc<LogicalPlan>> {
        match self {
            LogicalPlan::Scan { .. } | LogicalPlan::Read { .. } | LogicalPlan::Memory { .. } => {
                vec![]
            }
            LogicalPlan::Filter { input, .. }
            | LogicalPlan::Project { input, .. }
            | LogicalPlan::Slice { input, .. }
            | LogicalPlan::Take { input, .. }
            | LogicalPlan::Reinterpret { input, .. }
            | LogicalPlan::AttachColumns { input, .. }
            | LogicalPlan::Sort { input, .. }
            | LogicalPlan::Distinct { input, .. }
            | LogicalPlan::Aggregate { input, .. } => vec![input],
            LogicalPlan::Join { left, right, .. } => vec![left, right],
        }
    }

    /// Rows this plan yields when known without reading data (no filter anywhere below).
    pub fn known_num_rows(&self) -> Option<u64> {
        match self {
            LogicalPlan::Scan { table, filters, .. } => {
                filters.is_empty().then(|| table.num_rows())
            }
            // Opens the files (their footers say how many rows each piece has).
            LogicalPlan::Read { view, filters } if filters.is_empty() => view.known_num_rows(),
            LogicalPlan::Read { .. } => None,
            LogicalPlan::Filter { .. } => None,
            LogicalPlan::Project { input, .. } => input.known_num_rows(),
            LogicalPlan::Slice {
                input,
                offset,
                length,
            } => input
                .known_num_rows()
                .map(|n| n.saturating_sub(*offset).min(*length)),
            LogicalPlan::Take { indices, .. } => Some(indices.len() as u64),
            LogicalPlan::Memory { batches, .. } => {
                Some(batches.iter().map(|b| b.num_rows() as u64).sum())
            }
            LogicalPlan::Reinterpret { input, .. } | LogicalPlan::AttachColumns { input, .. } => {
                input.known_num_rows()
            }
            LogicalPlan::Sort { input, limit, .. } => input
                .known_num_rows()
                .map(|n| limit.map_or(n, |limit| n.min(limit))),
            LogicalPlan::Distinct { .. }
            | LogicalPlan::Aggregate { .. }
            | LogicalPlan::Join { .. } => None,
        }
    }

    /// Whether a filter runs anywhere in this plan (a `Filter` node or a scan's `filters`):
    /// then which rows come out is only known by running it, and each slice of the plan would
    /// run it again.
    pub fn contains_filter(&self) -> bool {
        match self {
            LogicalPlan::Scan { filters, .. } | LogicalPlan::Read { filters, .. } => {
                !filters.is_empty()
            }
            LogicalPlan::Filter { .. } => true,
            other => other.inputs().iter().any(|input| input.contains_filter()),
        }
    }

    /// Whether row `i` of this plan is row `i` of a file view or of memory: a scan without
    /// filters, memory, or arrays already attached to one. Arrays can only be attached to such
    /// a plan.
    pub fn is_row_aligned(&self) -> bool {
        match self {
            LogicalPlan::Scan { filters, .. } | LogicalPlan::Read { filters, .. } => {
                filters.is_empty()
            }
            LogicalPlan::Memory { .. } => true,
            LogicalPlan::AttachColumns { input, .. } => input.is_row_aligned(),
            _ => false,
        }
    }

    // -- builders: each checks its expressions against the input schema ------------------

    pub fn filter(self: &Arc<Self>, predicate: Expr) -> Result<LogicalPlan> {
        let schema = self.schema()?;
        let resolved = resolve(predicate, &schema)?;
        if !matches!(resolved.data_type, DataType::Boolean | DataType::Null) {
            return Err(PlanError::Type(format!(
                "filter() needs a boolean expression, got {} of type {}",
                resolved.expr,
                type_name(&resolved.data_type)
            )));
        }
        Ok(LogicalPlan::Filter {
            input: self.clone(),
            predicate: resolved.expr,
        })
    }

    pub fn project(self: &Arc<Self>, exprs: Vec<Expr>) -> Result<LogicalPlan> {
        let schema = self.schema()?;
        let mut names = HashSet::new();
        let mut resolved_exprs = Vec::with_capacity(exprs.len());
        for expr in exprs {
            let name = expr.output_name();
            if !names.insert(name.clone()) {
                return Err(PlanError::Invalid(format!(
                    "the output column {name:?} appears twice; give one of them another name with .alias()"
                )));
            }
            let resolved = resolve(expr, &schema)?.expr;
            // Resolution may wrap a column in a cast; keep the name the user gave it.
            let resolved = if resolved.output_name() == name {
                resolved
            } else {
                resolved.alias(name)
            };
            resolved_exprs.push(resolved);
        }
        Ok(LogicalPlan::Project {
            input: self.clone(),
            exprs: resolved_exprs,
        })
    }

    /// All input columns, with `name` replaced in place (or appended) by `expr`.
    pub fn with_columns(self: &Arc<Self>, columns: Vec<(String, Expr)>) -> Result<LogicalPlan> {
        let schema = self.schema()?;
        let mut exprs: Vec<Expr> = schema
            .fields()
            .iter()
            .map(|f| Expr::col(f.name()))
            .collect();
        for (name, expr) in columns {
            let expr = expr.alias(name.clone());
            match schema.index_of(&name) {
                Ok(index) => exprs[index] = expr,
                Err(_) => match exprs.iter().position(|e| e.output_name() == name) {
                    Some(index) => exprs[index] = expr,
                    None => exprs.push(expr),
                },
            }
        }
        self.project(exprs)
    }

    pub fn slice(self: &Arc<Self>, offset: u64, length: u64) -> LogicalPlan {
        match self.as_ref() {
            // A slice of an unfiltered scan narrows the scan itself: still one contiguous view.
            LogicalPlan::Scan { table, filters, .. } if filters.is_empty() => LogicalPlan::Scan {
                table: table.slice(offset, length),
                filters: vec![],
                batches: None,
            },
            // An unfiltered read narrows its rows: only the pieces they overlap are decoded.
            LogicalPlan::Read { view, filters } if filters.is_empty() => LogicalPlan::Read {
                view: view.slice(offset, length),
                filters: vec![],
            },
            LogicalPlan::Slice {
                input,
                offset: inner_offset,
                length: inner_length,
            } => {
                let start = offset.min(*inner_length);
                LogicalPlan::Slice {
                    input: input.clone(),
                    offset: inner_offset + start,
                    length: length.min(inner_length - start),
                }
            }
            // Every other node maps rows one to one (projections evaluate row by row), so the
            // slice moves below it and only the sliced rows are read or computed.
            LogicalPlan::Project { input, exprs } => LogicalPlan::Project {
                input: Arc::new(input.slice(offset, length)),
                exprs: exprs.clone(),
            },
            LogicalPlan::Reinterpret { input, columns } => LogicalPlan::Reinterpret {
                input: Arc::new(input.slice(offset, length)),
                columns: columns.clone(),
            },
            LogicalPlan::AttachColumns { input, columns } => LogicalPlan::AttachColumns {
                input: Arc::new(input.slice(offset, length)),
                columns: columns
                    .iter()
                    .map(|column| {
                        let (start, count) = clamp_range(column.array.len() as u64, offset, length);
                        AttachedColumn {
                            array: column.array.slice(start, count),
                            ..column.clone()
                        }
                    })
                    .collect(),
            },
            // The first `offset + length` rows of a sort are a top-k: no full sort needed.
            LogicalPlan::Sort { input, keys, limit } => {
                let end = offset.saturating_add(length);
                let sort = LogicalPlan::Sort {
                    input: input.clone(),
                    keys: keys.clone(),
                    limit: Some(limit.map_or(end, |limit| limit.min(end))),
                };
                if offset == 0 {
                    sort
                } else {
                    LogicalPlan::Slice {
                        input: Arc::new(sort),
                        offset,
                        length,
                    }
                }
            }
            LogicalPlan::Take { input, indices } => {
                let (start, count) = clamp_range(indices.len() as u64, offset, length);
                LogicalPlan::Take {
                    input: input.clone(),
                    indices: Arc::new(indices[start..start + count].to_vec()),
                }
            }
            LogicalPlan::Memory {
                schema,
                batches,
                origin,
            } => LogicalPlan::Memory {
                schema: schema.clone(),
                batches: Arc::new(slice_batches(batches.iter(), offset, length)),
                origin: origin.clone(),
            },
            _ => LogicalPlan::Slice {
                input: self.clone(),
                offset,
                length,
            },
        }
    }

    /// The rows at `indices` of this plan's `num_rows` rows, in that order; negative indices
    /// count from the end, as in NumPy. A take of a take composes into one.
    pub fn take(self: &Arc<Self>, indices: &[i64], num_rows: u64) -> Result<LogicalPlan> {
        let mut positions = Vec::with_capacity(indices.len());
        for &index in indices {
            let position = if index < 0 {
                num_rows.checked_sub(index.unsigned_abs())
            } else {
                Some(index as u64)
            };
            match position {
                Some(position) if position < num_rows => positions.push(position),
                _ => {
                    return Err(PlanError::Invalid(format!(
                        "take(): index {index} is out of range for a frame of {num_rows} rows"
                    )));
                }
            }
        }
        Ok(self.take_positions(positions))
    }

    /// `n` rows drawn uniformly at random from this plan's `num_rows` rows, in ascending row
    /// order, reproducibly from `seed` (see `sample_indices`).
    pub fn sample(
        self: &Arc<Self>,
        n: u64,
        seed: u64,
        replace: bool,
        num_rows: u64,
    ) -> Result<LogicalPlan> {
        Ok(self.take_positions(sample_indices(num_rows, n, seed, replace)?))
    }

    /// A take of valid positions; over a take, the positions are looked up in its indices.
    fn take_positions(self: &Arc<Self>, positions: Vec<u64>) -> LogicalPlan {
        match self.as_ref() {
            LogicalPlan::Take { input, indices } => LogicalPlan::Take {
                input: input.clone(),
                indices: Arc::new(positions.iter().map(|&p| indices[p as usize]).collect()),
            },
            _ => LogicalPlan::Take {
                input: self.clone(),
                indices: Arc::new(positions),
            },
        }
    }

    /// The rows ordered by `keys` (each resolved against the schema and orderable), stably.
    pub fn sort(self: &Arc<Self>, keys: Vec<SortKey>) -> Result<LogicalPlan> {
        if keys.is_empty() {
            return Err(PlanError::Invalid(
                "sort() needs at least one column or expression to sort by".into(),
            ));
        }
        let schema = self.schema()?;
        let keys = keys
            .into_iter()
            .map(|key| {
                let resolved = resolve(key.expr, &schema)?;
                if !is_orderable(&resolved.data_type) {
                    return Err(PlanError::Type(format!(
                        "sort(): cannot order by {}, of type {}",
                        resolved.expr,
                        type_name(&resolved.data_type)
                    )));
                }
                Ok(SortKey {
                    expr: resolved.expr,
                    ..key
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LogicalPlan::Sort {
            input: self.clone(),
            keys,
            limit: None,
        })
    }

    /// The first `k` rows of the sort by `keys`, found without sorting every row.
    pub fn top_k(self: &Arc<Self>, k: u64, keys: Vec<SortKey>) -> Result<LogicalPlan> {
        match self.sort(keys)? {
            LogicalPlan::Sort { input, keys, .. } => Ok(LogicalPlan::Sort {
                input,
                keys,
                limit: Some(k),
            }),
            other => Ok(other),
        }
    }

    /// One row per distinct value of the `subset` columns (every column when None).
    pub fn distinct(
        self: &Arc<Self>,
        subset: Option<Vec<String>>,
        keep: Keep,
    ) -> Result<LogicalPlan> {
        let schema = self.schema()?;
        if let Some(subset) = &subset {
            if subset.is_empty() {
                return Err(PlanError::Invalid(
                    "unique(): subset names no column".into(),
                ));
            }
            for name in subset {
                resolve(Expr::col(name), &schema)?;
            }
        }
        Ok(LogicalPlan::Distinct {
            input: self.clone(),
            subset,
            keep,
        })
    }

    /// `aggs` over the groups of rows with equal `keys`. Output names must be unique.
    pub fn aggregate(self: &Arc<Self>, keys: Vec<Expr>, aggs: Vec<AggExpr>) -> Result<LogicalPlan> {
        // No keys: one group of every row (`frame.agg(...)`), one output row even when empty.
        if keys.is_empty() && aggs.is_empty() {
            return Err(PlanError::Invalid(
                "agg() needs at least one aggregation".into(),
            ));
        }
        let schema = self.schema()?;
        let mut names = HashSet::new();
        let mut check_name = |name: String| {
            if names.insert(name.clone()) {
                Ok(())
            } else {
                Err(PlanError::Invalid(format!(
                    "group_by().agg(): the output column {name:?} appears twice; give one of them another name with .alias()"
                )))
            }
        };
        let mut resolved_keys = Vec::with_capacity(keys.len());
        for key in keys {
            let name = key.output_name();
            check_name(name.clone())?;
            let resolved = resolve(key, &schema)?;
            if matches!(
                resolved.data_type,
                DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(..)
                    | DataType::Struct(_)
                    | DataType::Map(..)
            ) {
                return Err(PlanError::Type(format!(
                    "group_by(): cannot group by {name:?}, of type {}",
                    type_name(&resolved.data_type)
                )));
            }
            let expr = if resolved.expr.output_name() == name {
                resolved.expr
            } else {
                resolved.expr.alias(name)
            };
            resolved_keys.push(expr);
        }
        let mut resolved_aggs = Vec::with_capacity(aggs.len());
        for agg in aggs {
            check_name(agg.name.clone())?;
            resolved_aggs.push(resolve_aggregate(agg, &schema)?.0);
        }
        Ok(LogicalPlan::Aggregate {
            input: self.clone(),
            keys: resolved_keys,
            aggs: resolved_aggs,
        })
    }

    /// Record batches in memory as a plan. Every batch must have `schema`'s columns.
    pub fn memory(schema: SchemaRef, batches: Vec<RecordBatch>) -> LogicalPlan {
        LogicalPlan::Memory {
            schema,
            batches: Arc::new(batches),
            origin: None,
        }
    }

    /// `num_rows` rows and no columns, held in memory: the leaf of a frame made from data in
    /// memory, whose columns are then attached (`attach_columns`). `origin` names the call that
    /// made the frame (`from_numpy`, ...).
    pub fn memory_rows(num_rows: usize, origin: &str) -> Result<LogicalPlan> {
        let schema = Arc::new(Schema::empty());
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(num_rows));
        let batch = RecordBatch::try_new_with_options(schema.clone(), vec![], &options)
            .map_err(|error| PlanError::Invalid(format!("{origin}: {error}")))?;
        Ok(LogicalPlan::Memory {
            schema,
            batches: Arc::new(vec![batch]),
            origin: Some(origin.into()),
        })
    }

    /// The named columns' bits read as the given types. Each type must have the width of the
    /// column's (for a `fixed_size_list`, of its items); both must be fixed-width numbers,
    /// dates, times, timestamps or durations.
    pub fn reinterpret(self: &Arc<Self>, columns: Vec<(String, DataType)>) -> Result<LogicalPlan> {
        // Reinterpreting twice is reinterpreting the original bits once.
        let (base, mut merged) = match self.as_ref() {
            LogicalPlan::Reinterpret { input, columns } => (input.clone(), columns.clone()),
            _ => (self.clone(), Vec::new()),
        };
        let schema = self.schema()?;
        let base_schema = base.schema()?;
        for (name, to) in columns {
            let field = field_named(&schema, &name)?;
            let target = reinterpreted_type(&name, field.data_type(), &to)?;
            merged.retain(|(existing, _)| existing != &name);
            let original = base_schema
                .field_with_name(&name)
                .ok()
                .map(|f| f.data_type());
            if original != Some(&target) {
                merged.push((name, target));
            }
        }
        if merged.is_empty() {
            return Ok(base.as_ref().clone());
        }
        Ok(LogicalPlan::Reinterpret {
            input: base,
            columns: merged,
        })
    }

    /// External arrays as columns of this plan, which must be row-aligned (`is_row_aligned`)
    /// and have as many rows as each array. Attaching to attached arrays adds to them.
    pub fn attach_columns(self: &Arc<Self>, columns: Vec<AttachedColumn>) -> Result<LogicalPlan> {
        if !self.is_row_aligned() {
            return Err(PlanError::Invalid(
                "arrays can only be attached to a frame whose rows are its file's or memory's \
                 (no filter, take or computed column below): collect() it first"
                    .into(),
            ));
        }
        let num_rows = self.known_num_rows().unwrap_or_default();
        let mut names = HashSet::new();
        for column in &columns {
            if !names.insert(column.name.as_str()) {
                return Err(PlanError::Invalid(format!(
                    "the column {:?} is attached twice",
                    column.name
                )));
            }
            if column.array.len() as u64 != num_rows {
                return Err(PlanError::Invalid(format!(
                    "with_column({:?}): the array has {} rows, the frame has {num_rows}",
                    column.name,
                    column.array.len()
                )));
            }
        }
        let (input, mut merged) = match self.as_ref() {
            LogicalPlan::AttachColumns { input, columns } => (input.clone(), columns.clone()),
            _ => (self.clone(), Vec::new()),
        };
        for column in columns {
            match merged.iter().position(|c| c.name == column.name) {
                Some(index) => merged[index] = column,
                None => merged.push(column),
            }
        }
        Ok(LogicalPlan::AttachColumns {
            input,
            columns: merged,
        })
    }

    /// An indented tree, one node a line.
    pub fn display_indent(&self) -> String {
        let mut out = String::new();
        self.write_indent(&mut out, 0);
        out
    }

    fn write_indent(&self, out: &mut String, depth: usize) {
        out.push_str(&"  ".repeat(depth));
        out.push_str(&self.to_string());
        out.push('\n');
        for input in self.inputs() {
            input.write_indent(out, depth + 1);
        }
    }
}

impl fmt::Display for LogicalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogicalPlan::Scan { table, filters, .. } => {
                let rows = table.rows();
                write!(
                    f,
                    "SCAN {} columns=[{}] rows={}..{}",
                    table.file().path().display(),
                    table.column_names().join(", "),
                    rows.offset,
                    rows.offset + rows.length
                )?;
                if !filters.is_empty() {
                    let filters: Vec<String> = filters.iter().map(ToString::to_string).collect();
                    write!(f, " filters=[{}]", filters.join(", "))?;
                }
                Ok(())
            }
            LogicalPlan::Read { view, filters } => {
                let dataset = view.dataset();
                let formats: Vec<&str> = dataset
                    .formats()
                    .iter()
                    .map(|format| format.name())
                    .collect();
                write!(
                    f,
                    "READ {} {} files={}/{} columns=[{}]",
                    formats.join("+"),
                    dataset.description(),
                    view.fragments().len(),
                    dataset.num_fragments(),
                    view.column_names().join(", ")
                )?;
                if let Some(pieces) = view.pieces() {
                    write!(f, " pieces={}", pieces.len())?;
                }
                if let Some(rows) = view.rows() {
                    write!(
                        f,
                        " rows={}..{}",
                        rows.offset,
                        rows.offset.saturating_add(rows.length)
                    )?;
                }
                if !filters.is_empty() {
                    let filters: Vec<String> = filters.iter().map(ToString::to_string).collect();
                    write!(f, " filters=[{}]", filters.join(", "))?;
                }
                Ok(())
            }
            LogicalPlan::Filter { predicate, .. } => write!(f, "FILTER {predicate}"),
            LogicalPlan::Project { exprs, .. } => {
                let exprs: Vec<String> = exprs.iter().map(ToString::to_string).collect();
                write!(f, "SELECT [{}]", exprs.join(", "))
            }
            LogicalPlan::Slice { offset, length, .. } => {
                write!(f, "SLICE offset={offset} length={length}")
            }
            LogicalPlan::Take { indices, .. } => {
                const SHOWN: usize = 5;
                let shown: Vec<String> = indices
                    .iter()
                    .take(SHOWN)
                    .map(ToString::to_string)
                    .collect();
                let more = if indices.len() > SHOWN { ", ..." } else { "" };
                write!(
                    f,
                    "TAKE {} rows [{}{more}]",
                    indices.len(),
                    shown.join(", ")
                )
            }
            LogicalPlan::Memory {
                schema,
                batches,
                origin,
            } => {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                match origin {
                    // Data from outside the plan: its columns are attached above this leaf.
                    Some(origin) if names.is_empty() => write!(f, "MEMORY <{origin}> rows={rows}"),
                    Some(origin) => write!(
                        f,
                        "MEMORY <{origin}> columns=[{}] rows={rows}",
                        names.join(", ")
                    ),
                    None => write!(
                        f,
                        "MEMORY columns=[{}] rows={rows} batches={}",
                        names.join(", "),
                        batches.len()
                    ),
                }
            }
            LogicalPlan::Reinterpret { columns, .. } => {
                let columns: Vec<String> = columns
                    .iter()
                    .map(|(name, to)| format!("{name} as {}", type_name(to)))
                    .collect();
                write!(f, "REINTERPRET [{}]", columns.join(", "))
            }
            LogicalPlan::AttachColumns { columns, .. } => {
                let columns: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let how = match &c.copied {
                            None => "referenced".to_string(),
                            Some(reason) => format!("copied: {reason}"),
                        };
                        format!("{}: {} ({how})", c.name, type_name(c.array.data_type()))
                    })
                    .collect();
                write!(f, "ATTACH [{}]", columns.join(", "))
            }
            LogicalPlan::Sort { keys, limit, .. } => {
                let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
                write!(f, "SORT by=[{}]", keys.join(", "))?;
                if let Some(limit) = limit {
                    write!(f, " top_k={limit}")?;
                }
                write!(f, " (rows reordered: gathered into a copy)")
            }
            LogicalPlan::Distinct { subset, keep, .. } => {
                match subset {
                    Some(subset) => write!(f, "UNIQUE subset=[{}]", subset.join(", "))?,
                    None => write!(f, "UNIQUE all columns")?,
                }
                write!(
                    f,
                    " keep={} (rows selected: gathered into a copy)",
                    keep.name()
                )
            }
            LogicalPlan::Aggregate { keys, aggs, .. } => {
                let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
                let aggs: Vec<String> = aggs.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "AGGREGATE keys=[{}] aggs=[{}] (computed into new memory: a copy)",
                    keys.join(", "),
                    aggs.join(", ")
                )
            }
            LogicalPlan::Join {
                left_on,
                right_on,
                how,
                columns,
                ..
            } => {
                let keys = |keys: &[Expr]| {
                    keys.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let outputs: Vec<&str> = columns.iter().map(|c| c.output.as_str()).collect();
                write!(
                    f,
                    "JOIN how={how} left_on=[{}] right_on=[{}] columns=[{}]",
                    keys(left_on),
                    keys(right_on),
                    outputs.join(", ")
                )?;
                if how.filters_left() {
                    write!(f, " (left rows selected: gathered into a copy)")
                } else {
                    write!(f, " (matched rows gathered into new memory: a copy)")
                }
            }
        }
    }
}

/// `(start, count)` of rows `offset .. offset + length` of `len` rows, clamped like Python slicing.
fn clamp_range(len: u64, offset: u64, length: u64) -> (usize, usize) {
    let start = offset.min(len);
    (start as usize, length.min(len - start) as usize)
}

/// Whether `data_type` is a fixed-width type whose bits may be read as another of its width.
fn reinterpretable(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float16
            | Float32
            | Float64
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Duration(_)
    )
}

/// The type column `name` of type `from` has once its bits are read as `to`: `to` itself, or
/// for a `fixed_size_list`, the list of `to`.
fn reinterpreted_type(name: &str, from: &DataType, to: &DataType) -> Result<DataType> {
    let mismatch = |detail: &str| {
        PlanError::Type(format!(
            "view(): column {name:?} of type {} cannot be viewed as {}: {detail}",
            type_name(from),
            type_name(to)
        ))
    };
    if !reinterpretable(to) {
        return Err(mismatch(
            "a view reads the same bits as another fixed-width number, date, time or duration type",
        ));
    }
    let (item, list) = match from {
        DataType::FixedSizeList(field, width) if !matches!(to, DataType::FixedSizeList(..)) => {
            (field.data_type(), Some((field, *width)))
        }
        other => (other, None),
    };
    if !reinterpretable(item) {
        return Err(mismatch(
            "only fixed-width numbers, dates, times, timestamps and durations (and fixed-size lists of them) have bits to view",
        ));
    }
    if item.primitive_width() != to.primitive_width() {
        return Err(mismatch(&format!(
            "the widths differ ({} bytes and {} bytes); use cast() to convert values",
            item.primitive_width().unwrap_or_default(),
            to.primitive_width().unwrap_or_default()
        )));
    }
    Ok(match list {
        Some((field, width)) => DataType::FixedSizeList(
            Arc::new(field.as_ref().clone().with_data_type(to.clone())),
            width,
        ),
        None => to.clone(),
    })
}

// -- sampling ----------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
/// a 64-bit state advanced by a constant and mixed. Integer arithmetic only, so a seed gives the
/// same stream on every machine; statistically sound for sampling (it passes BigCrush).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`), without modulo bias: Lemire's multiply-and-shift,
    /// redrawing the rare values that would favour some results ("Fast random integer
    /// generation in an interval", 2019).
    pub fn below(&mut self, bound: u64) -> u64 {
        let mut product = u128::from(self.next_u64()) * u128::from(bound);
        if (product as u64) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (product as u64) < threshold {
                product = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (product >> 64) as u64
    }
}

/// `n` row positions out of `num_rows`, ascending, drawn from `seed`: distinct ones chosen
/// uniformly (every set of `n` rows equally likely) by Floyd's algorithm, or, with `replace`,
/// `n` independent uniform draws (so repeats are possible).
pub fn sample_indices(num_rows: u64, n: u64, seed: u64, replace: bool) -> Result<Vec<u64>> {
    let mut rng = SplitMix64(seed);
    if replace {
        if n > 0 && num_rows == 0 {
            return Err(PlanError::Invalid(format!(
                "sample(): cannot draw {n} rows from an empty frame"
            )));
        }
        let mut drawn: Vec<u64> = (0..n).map(|_| rng.below(num_rows)).collect();
        drawn.sort_unstable();
        return Ok(drawn);
    }
    if n > num_rows {
        return Err(PlanError::Invalid(format!(
            "sample(): cannot draw {n} distinct rows from a frame of {num_rows} rows; pass replace=True to allow repeats"
        )));
    }
    // Floyd: for j in num_rows-n .. num_rows, pick t in 0..=j and take t, or j if t is taken.
    // The set is a bitmap when that is small next to a hash set of n rows, else a hash set;
    // both give the same rows.
    let use_bitmap = num_rows / 256 <= n;
    if use_bitmap {
        /// Sets bit `row`; whether it was set before.
        fn test_and_set(bits: &mut [u64], row: u64) -> bool {
            let (word, bit) = ((row / 64) as usize, row % 64);
            let was_set = (bits[word] >> bit) & 1 == 1;
            bits[word] |= 1 << bit;
            was_set
        }
        let mut chosen = vec![0u64; num_rows.div_ceil(64) as usize];
        for j in num_rows - n..num_rows {
            let t = rng.below(j + 1);
            if test_and_set(&mut chosen, t) {
                test_and_set(&mut chosen, j);
            }
        }
        let mut rows = Vec::with_capacity(n as usize);
        for (word_index, &word) in chosen.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                rows.push(word_index as u64 * 64 + u64::from(bits.trailing_zeros()));
                bits &= bits - 1;
            }
        }
        Ok(rows)
    } else {
        let mut chosen = HashSet::with_capacity(n as usize);
        for j in num_rows - n..num_rows {
            let t = rng.below(j + 1);
            if !chosen.insert(t) {
                chosen.insert(j);
            }
        }
        let mut rows: Vec<u64> = chosen.into_iter().collect();
        rows.sort_unstable();
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float32Array, Int32Array, Int64Array, StringArray};

    use super::*;

    /// A plan over two in-memory batches: ids 0..4 and 4..10, x = id as float32, name.
    fn memory_plan() -> Arc<LogicalPlan> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("x", DataType::Float32, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let batch = |ids: std::ops::Range<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(ids.clone())),
                    Arc::new(Float32Array::from_iter_values(
                        ids.clone().map(|i| i as f32),
                    )),
                    Arc::new(StringArray::from_iter_values(ids.map(|i| format!("r{i}")))),
                ],
            )
            .unwrap()
        };
        Arc::new(LogicalPlan::memory(
            schema.clone(),
            vec![batch(0..4), batch(4..10)],
        ))
    }

    fn indices_of(plan: &LogicalPlan) -> Vec<u64> {
        match plan {
            LogicalPlan::Take { indices, .. } => indices.as_ref().clone(),
            other => panic!("not a take: {other}"),
        }
    }

    #[test]
    fn take_counts_negative_indices_from_the_end_and_names_bad_ones() {
        let plan = memory_plan();
        assert_eq!(
            indices_of(&plan.take(&[3, -1, -10, 0], 10).unwrap()),
            [3, 9, 0, 0]
        );
        let error = plan.take(&[0, 10], 10).unwrap_err().to_string();
        assert!(
            error.contains("index 10") && error.contains("10 rows"),
            "{error}"
        );
        let error = plan.take(&[-11], 10).unwrap_err().to_string();
        assert!(error.contains("index -11"), "{error}");
        assert_eq!(plan.take(&[], 10).unwrap().known_num_rows(), Some(0));
    }

    #[test]
    fn a_take_of_a_take_composes_and_slices_narrow_the_indices() {
        let plan = memory_plan();
        let first = Arc::new(plan.take(&[9, 8, 7, 6], 10).unwrap());
        let second = Arc::new(first.take(&[3, 0, 0], 4).unwrap());
        assert!(
            matches!(second.as_ref(), LogicalPlan::Take { input, .. } if Arc::ptr_eq(input, &plan))
        );
        assert_eq!(indices_of(&second), [6, 9, 9]);
        assert_eq!(indices_of(&first.slice(1, 2)), [8, 7]);
        assert_eq!(indices_of(&first.slice(3, 100)), [6]);
        assert_eq!(first.slice(3, 100).known_num_rows(), Some(1));
    }

    #[test]
    fn slices_move_below_row_by_row_nodes() {
        let plan = memory_plan();
        let projected = Arc::new(plan.project(vec![Expr::col("x"), Expr::col("id")]).unwrap());
        let sliced = projected.slice(3, 4);
        assert_eq!(sliced.known_num_rows(), Some(4));
        let LogicalPlan::Project { input, .. } = &sliced else {
            panic!("{sliced}")
        };
        let LogicalPlan::Memory { batches, .. } = input.as_ref() else {
            panic!("{input}")
        };
        let rows: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(rows, [1, 3]);
        let viewed = Arc::new(
            plan.reinterpret(vec![("x".into(), DataType::Int32)])
                .unwrap(),
        );
        assert!(matches!(
            viewed.slice(0, 2),
            LogicalPlan::Reinterpret { .. }
        ));
        assert_eq!(plan.slice(20, 5).known_num_rows(), Some(0));
    }

    #[test]
    fn sampling_is_reproducible_distinct_and_sorted() {
        // Pinned: the same seed gives these rows on every machine.
        assert_eq!(
            sample_indices(1000, 5, 42, false).unwrap(),
            sample_indices(1000, 5, 42, false).unwrap()
        );
        let pinned = sample_indices(1_000_000, 4, 7, false).unwrap();
        assert_eq!(pinned, [16_788, 389_828, 582_930, 900_759]); // also what tests/test_frame_ops.py's reference gives
        for (rows, n) in [(1000, 3), (1000, 900), (1000, 1000), (100_000, 10), (10, 0)] {
            let drawn = sample_indices(rows, n, 3, false).unwrap();
            assert_eq!(drawn.len() as u64, n);
            assert!(drawn.windows(2).all(|w| w[0] < w[1]));
            assert!(drawn.iter().all(|&r| r < rows));
        }
        let with_repeats = sample_indices(10, 50, 3, true).unwrap();
        assert_eq!(with_repeats.len(), 50);
        assert!(with_repeats.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            sample_indices(10, 11, 3, false)
                .unwrap_err()
                .to_string()
                .contains("11 distinct rows")
        );
        assert!(sample_indices(0, 1, 3, true).is_err());
    }

    #[test]
    fn the_bounded_draw_is_unbiased_at_the_edges() {
        let mut rng = SplitMix64(1);
        assert!((0..1000).all(|_| rng.below(1) == 0));
        let bound = (1u64 << 63) + 1; // about half of the raw values are redrawn
        assert!((0..1000).all(|_| rng.below(bound) < bound));
    }

    #[test]
    fn views_need_equal_widths_and_collapse_when_undone() {
        let plan = memory_plan();
        let error = plan
            .reinterpret(vec![("x".into(), DataType::Int64)])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"x\"") && error.contains("widths differ"),
            "{error}"
        );
        let error = plan
            .reinterpret(vec![("name".into(), DataType::Int64)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"name\""), "{error}");
        assert!(matches!(
            plan.reinterpret(vec![("nope".into(), DataType::Int64)]),
            Err(PlanError::ColumnNotFound { .. })
        ));
        let viewed = Arc::new(
            plan.reinterpret(vec![("x".into(), DataType::UInt32)])
                .unwrap(),
        );
        assert_eq!(
            viewed.schema().unwrap().field(1).data_type(),
            &DataType::UInt32
        );
        let back = viewed
            .reinterpret(vec![("x".into(), DataType::Float32)])
            .unwrap();
        assert!(matches!(back, LogicalPlan::Memory { .. }), "{back}");
        let twice = viewed
            .reinterpret(vec![("x".into(), DataType::Int32)])
            .unwrap();
        assert!(
            matches!(&twice, LogicalPlan::Reinterpret { input, columns } if Arc::ptr_eq(input, &plan) && columns.len() == 1)
        );
    }

    #[test]
    fn attached_columns_need_row_aligned_inputs_of_their_length() {
        let plan = memory_plan();
        let column = |name: &str, len: i32| AttachedColumn {
            name: name.into(),
            array: Arc::new(Int32Array::from_iter_values(0..len)),
            copied: None,
        };
        let attached = Arc::new(plan.attach_columns(vec![column("a", 10)]).unwrap());
        let names: Vec<String> = attached
            .schema()
            .unwrap()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "x", "name", "a"]);
        let replaced = Arc::new(attached.attach_columns(vec![column("x", 10)]).unwrap());
        let LogicalPlan::AttachColumns { input, columns } = replaced.as_ref() else {
            panic!()
        };
        assert!(Arc::ptr_eq(input, &plan) && columns.len() == 2);
        assert_eq!(
            replaced.schema().unwrap().field(1).data_type(),
            &DataType::Int32
        );
        let error = plan
            .attach_columns(vec![column("a", 3)])
            .unwrap_err()
            .to_string();
        assert!(error.contains("3 rows") && error.contains("10"), "{error}");
        let taken = Arc::new(plan.take(&[1], 10).unwrap());
        assert!(taken.attach_columns(vec![column("a", 1)]).is_err());
        let sliced = attached.slice(8, 5);
        let LogicalPlan::AttachColumns { columns, .. } = &sliced else {
            panic!()
        };
        assert_eq!(columns[0].array.len(), 2);
    }

    #[test]
    fn memory_rows_are_a_leaf_that_columns_attach_to() {
        let rows = Arc::new(LogicalPlan::memory_rows(10, "from_numpy").unwrap());
        assert_eq!(rows.known_num_rows(), Some(10));
        assert!(rows.is_row_aligned() && rows.schema().unwrap().fields().is_empty());
        assert_eq!(rows.to_string(), "MEMORY <from_numpy> rows=10");
        let column = AttachedColumn {
            name: "a".into(),
            array: Arc::new(Int32Array::from_iter_values(0..10)),
            copied: None,
        };
        let attached = Arc::new(rows.attach_columns(vec![column]).unwrap());
        assert_eq!(attached.known_num_rows(), Some(10));
        let sliced = rows.slice(4, 100);
        assert_eq!(sliced.to_string(), "MEMORY <from_numpy> rows=6");
        let empty = LogicalPlan::memory_rows(0, "from_arrow").unwrap();
        assert_eq!(empty.known_num_rows(), Some(0));
    }

    fn sort_key(name: &str) -> SortKey {
        SortKey {
            expr: Expr::col(name),
            descending: false,
            nulls_last: true,
        }
    }

    #[test]
    fn sorts_check_their_keys_and_slices_of_them_are_top_ks() {
        let plan = memory_plan();
        assert!(matches!(
            plan.sort(vec![sort_key("nope")]),
            Err(PlanError::ColumnNotFound { .. })
        ));
        assert!(matches!(plan.sort(vec![]), Err(PlanError::Invalid(_))));
        let sorted = Arc::new(plan.sort(vec![sort_key("x")]).unwrap());
        assert_eq!(sorted.schema().unwrap(), plan.schema().unwrap());
        assert_eq!(
            sorted.to_string(),
            "SORT by=[col(\"x\") nulls_last] (rows reordered: gathered into a copy)"
        );
        let head = Arc::new(sorted.slice(0, 3));
        assert!(matches!(
            head.as_ref(),
            LogicalPlan::Sort { limit: Some(3), .. }
        ));
        assert_eq!(head.known_num_rows(), Some(3));
        // A slice of a top-k narrows the limit; one not at the start stays above it.
        assert!(matches!(
            head.slice(0, 2),
            LogicalPlan::Sort { limit: Some(2), .. }
        ));
        let LogicalPlan::Slice {
            input,
            offset: 2,
            length: 4,
        } = sorted.slice(2, 4)
        else {
            panic!()
        };
        assert!(matches!(
            input.as_ref(),
            LogicalPlan::Sort { limit: Some(6), .. }
        ));
    }

    #[test]
    fn aggregations_are_typed_and_name_their_columns() {
        use crate::expr::{AggFunc, Keep};
        let plan = memory_plan();
        let aggs = vec![
            AggExpr::new(AggFunc::Sum, Expr::col("x")),
            AggExpr::new(AggFunc::Mean, Expr::col("id")).alias("mean"),
            AggExpr::new(AggFunc::Max, Expr::col("name")).alias("last_name"),
            AggExpr::new(AggFunc::NUnique, Expr::col("name")),
        ];
        let grouped = plan.aggregate(vec![Expr::col("id")], aggs).unwrap();
        let schema = grouped.schema().unwrap();
        let fields: Vec<(String, DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("id".into(), DataType::Int64),
                ("x".into(), DataType::Float32),
                ("mean".into(), DataType::Float64),
                ("last_name".into(), DataType::Utf8),
                ("name".into(), DataType::UInt32),
            ]
        );
        assert_eq!(grouped.known_num_rows(), None);
        let error = plan
            .aggregate(
                vec![Expr::col("id")],
                vec![AggExpr::new(AggFunc::Sum, Expr::col("name"))],
            )
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("sum() needs a numeric column, but col(\"name\") is string"),
            "{error}"
        );
        let error = plan
            .aggregate(
                vec![Expr::col("id")],
                vec![AggExpr::new(AggFunc::Len, Expr::col("id"))],
            )
            .unwrap_err();
        assert!(
            error.to_string().contains("\"id\" appears twice"),
            "{error}"
        );
        assert!(matches!(
            plan.aggregate(vec![], vec![]),
            Err(PlanError::Invalid(_))
        ));
        assert!(matches!(
            plan.distinct(Some(vec!["nope".into()]), Keep::First),
            Err(PlanError::ColumnNotFound { .. })
        ));
    }
}
