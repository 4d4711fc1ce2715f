//! `Project`: plain columns pass on as views, computed ones are evaluated chunk by chunk.

use std::sync::Arc;

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use rayon::prelude::*;
use relay_plan::Expr;

use crate::error::ExecError;
use crate::eval::{Value, evaluate};
use crate::pool::pool;
use crate::view::{Chunk, ViewSet, batch_of};

/// Plain column references keep their arrays and the selection (still views); computed
/// columns are evaluated on the selected rows only, which first gathers the chunk.
pub(crate) fn project(
    input: ViewSet,
    exprs: &[Expr],
    schema: SchemaRef,
) -> Result<(ViewSet, usize), ExecError> {
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
        return Ok((input.select_columns(&indices, schema), 0));
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
                let batch = batch_of(
                    &input_schema,
                    &chunk,
                    &needed,
                    chunk.selection.as_deref().map(Vec::as_slice),
                    (0, chunk.len),
                )?;
                let len = batch.num_rows();
                let columns = exprs
                    .iter()
                    .map(|expr| evaluate(expr, &batch).and_then(|v: Value| v.into_array(len)))
                    .collect::<Result<Vec<_>, _>>()?;
                // Fresh arrays are copies; a plain column of an unselected chunk is passed on.
                let copied = columns
                    .iter()
                    .filter(|c| !chunk.columns.iter().any(|input| Arc::ptr_eq(input, c)))
                    .map(|c| c.get_array_memory_size())
                    .sum();
                Ok((
                    Chunk {
                        columns,
                        len,
                        selection: None,
                    },
                    copied,
                ))
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
