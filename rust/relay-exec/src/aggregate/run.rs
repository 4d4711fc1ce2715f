//! One task's work: the morsels of a run evaluated one by one (keys and aggregation inputs,
//! an input evaluated once where it recurs in a later one) and folded into a `Partial`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::row::RowConverter;
use relay_plan::{AggExpr, Expr};

use super::accumulator::Accumulator;
use super::groups::KeyTable;
use super::merge::Partial;
use crate::eval::evaluate;
use crate::pool::MORSEL_ROWS;
use crate::view::{Chunk, ViewSet, batch_of};

/// Rows of one chunk that one task evaluates together.
pub(super) struct Morsel<'a> {
    pub(super) chunk: &'a Chunk,
    /// Offsets into the chunk's columns, when the chunk has a selection.
    pub(super) rows: Option<&'a [u32]>,
    /// Consecutive rows `start .. start + len`, when it has none.
    pub(super) range: (usize, usize),
}

impl Morsel<'_> {
    pub(super) fn len(&self) -> usize {
        self.rows.map_or(self.range.1, <[u32]>::len)
    }
}

pub(super) fn morsels(input: &ViewSet) -> Vec<Morsel<'_>> {
    let mut morsels = Vec::new();
    for chunk in &input.chunks {
        match &chunk.selection {
            Some(selection) => morsels.extend(selection.chunks(MORSEL_ROWS).map(|rows| Morsel {
                chunk,
                rows: Some(rows),
                range: (0, 0),
            })),
            None => morsels.extend((0..chunk.len).step_by(MORSEL_ROWS).map(|start| Morsel {
                chunk,
                rows: None,
                range: (start, MORSEL_ROWS.min(chunk.len - start)),
            })),
        }
    }
    morsels
}

/// Everything the tasks share: what to evaluate and how.
pub(super) struct Plan<'a> {
    pub(super) input: &'a ViewSet,
    pub(super) names: Vec<String>,
    pub(super) keys: &'a [Expr],
    pub(super) key_types: Vec<DataType>,
    pub(super) aggs: &'a [AggExpr],
    /// What each morsel evaluates for aggregation `i`: its input, with each subexpression that
    /// is the whole input of an earlier aggregation read from that one's `shared` column.
    pub(super) inputs: Vec<Expr>,
    /// Per aggregation: the column its values join the morsel's batch as, when a later input
    /// reads them.
    pub(super) shared: Vec<Option<String>>,
    pub(super) input_types: Vec<DataType>,
    pub(super) output_types: Vec<DataType>,
    pub(super) converter: Option<RowConverter>,
}

impl Plan<'_> {
    /// An empty partial for `rows` rows.
    pub(super) fn partial(&self, rows: usize) -> Result<Partial, ArrowError> {
        Ok(Partial {
            table: KeyTable::new(&self.key_types, rows),
            key_parts: vec![Vec::new(); self.keys.len()],
            accumulators: self
                .aggs
                .iter()
                .zip(self.input_types.iter().zip(&self.output_types))
                .map(|(agg, (input, output))| Accumulator::new(agg.func, input, output))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Folds the rows of `morsels`, in order, into a fresh partial.
    pub(super) fn run(&self, morsels: &[Morsel<'_>]) -> Result<Partial, ArrowError> {
        let mut partial = self.partial(morsels.iter().map(Morsel::len).sum())?;
        for morsel in morsels {
            let len = morsel.len();
            let spanned = self.evaluate_span(morsel)?;
            let (keys, values, picked) = match spanned {
                Some(spanned) => spanned,
                None => {
                    let batch = batch_of(
                        &self.input.schema,
                        morsel.chunk,
                        &self.names,
                        morsel.rows,
                        morsel.range,
                    )?;
                    let (keys, values) = self.evaluate(batch)?;
                    (keys, values, None)
                }
            };
            // Packed keys are packed over the span and picked as integers (rather than taking
            // the key columns out first, strings included); `new_rows` are then rows of the
            // span.
            let picked_packed = picked
                .as_deref()
                .and_then(|picked| partial.table.assign_packed_at(&keys, picked));
            let (keys, (ids, new_rows)) = match (picked_packed, &picked) {
                (Some(assigned), _) => (keys, assigned),
                (None, picked) => {
                    let keys = match picked {
                        Some(picked) => {
                            let picked = UInt32Array::from(picked.clone());
                            keys.iter()
                                .map(|key| take(key.as_ref(), &picked, None))
                                .collect::<Result<Vec<_>, _>>()?
                        }
                        None => keys,
                    };
                    let assigned =
                        match partial.table.assign(&keys, self.converter.as_ref(), len)? {
                            Some(assigned) => assigned,
                            None => {
                                // Keys that do not pack: the groups so far move to the row format.
                                let converter = self
                                    .converter
                                    .as_ref()
                                    .expect("packed keys have a converter");
                                partial.table = KeyTable::encoded(&partial.key_parts, converter)?;
                                partial
                                    .table
                                    .assign(&keys, Some(converter), len)?
                                    .expect("encoded keys always fit")
                            }
                        };
                    (keys, assigned)
                }
            };
            if !new_rows.is_empty() {
                let new_rows = UInt32Array::from(new_rows);
                for (parts, key) in partial.key_parts.iter_mut().zip(&keys) {
                    parts.push(take(key.as_ref(), &new_rows, None)?);
                }
            }
            drop(keys);
            let groups = partial.table.len();
            for (accumulator, values) in partial.accumulators.iter_mut().zip(values) {
                accumulator.update_at(&values, picked.as_deref(), &ids, groups)?;
            }
        }
        Ok(partial)
    }

    /// The keys and the aggregations' inputs over `batch`'s rows.
    pub(super) fn evaluate(
        &self,
        batch: RecordBatch,
    ) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>), ArrowError> {
        let len = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|key| evaluate(key, &batch)?.into_array(len))
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = batch;
        let mut values = Vec::with_capacity(self.inputs.len());
        for (input, shared) in self.inputs.iter().zip(&self.shared) {
            let value = evaluate(input, &batch)?.into_array(len)?;
            if let Some(name) = shared {
                batch = with_column(&batch, name, value.clone())?;
            }
            values.push(value);
        }
        Ok((keys, values))
    }
}

/// `batch` with one more column, `name` = `values`.
pub(super) fn with_column(
    batch: &RecordBatch,
    name: &str,
    values: ArrayRef,
) -> Result<RecordBatch, ArrowError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(name, values.data_type().clone(), true));
    let mut columns = batch.columns().to_vec();
    columns.push(values);
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// `expr` without its aliases.
pub(super) fn bare(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias { input, .. } => bare(input),
        other => other,
    }
}

/// Common subexpressions among the aggregations' inputs: an input that is not a bare column
/// or literal and recurs inside (or as) a later input is evaluated once per morsel, and the
/// later inputs read its values. TPC-H Q1 computes `l_extendedprice * (1 - l_discount)` alone
/// and again inside `... * (1 + l_tax)`: reusing it saves two of its six decimal kernels.
/// Returns the inputs to evaluate and the column each shared input's values are kept in.
pub(super) fn share_inputs(aggs: &[AggExpr]) -> (Vec<Expr>, Vec<Option<String>>) {
    fn contains(expr: &Expr, part: &Expr) -> bool {
        bare(expr) == part
            || expr
                .children()
                .into_iter()
                .any(|child| relay_plan::with_stack_room(|| contains(child, part)))
    }
    fn replace(expr: Expr, shared: &[(&Expr, String)]) -> Expr {
        match shared.iter().find(|(part, _)| bare(&expr) == *part) {
            Some((_, name)) => Expr::col(name.clone()),
            None => expr.map_children(&mut |child| replace(child, shared)),
        }
    }
    let mut inputs = Vec::with_capacity(aggs.len());
    let mut names = Vec::with_capacity(aggs.len());
    let mut shared: Vec<(&Expr, String)> = Vec::new();
    for (i, agg) in aggs.iter().enumerate() {
        inputs.push(replace(agg.input.clone(), &shared));
        let input = bare(&agg.input);
        let reused = !matches!(input, Expr::Column(_) | Expr::Literal(_))
            && aggs[i + 1..]
                .iter()
                .any(|later| contains(&later.input, input));
        // A name no column of the input can have (a NUL byte leads it).
        let name = reused.then(|| format!("\u{0}aggregation input {i}"));
        if let Some(name) = &name {
            shared.push((input, name.clone()));
        }
        names.push(name);
    }
    (inputs, names)
}
