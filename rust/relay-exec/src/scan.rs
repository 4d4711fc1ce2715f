//! `Scan`: the record batches of a mapped file that a scan reads, as chunks whose arrays point
//! into the mapping, filtered by the predicates pushed into the scan.

use arrow::array::{Array, RecordBatch};
use relay_plan::Expr;
use relay_storage::TableView;

use crate::error::ExecError;
use crate::filter::filter;
use crate::profile::OperatorStats;
use crate::view::{Chunk, ViewSet};

/// The rows of `table` passing `filters`, reading only `batches` of the file where batch
/// pruning recorded them (every batch the table overlaps otherwise), and the scan's statistics.
pub(crate) fn execute_scan(
    table: &TableView,
    filters: &[Expr],
    batches: Option<&[usize]>,
) -> Result<(ViewSet, OperatorStats), ExecError> {
    let schema = table.schema();
    let overlapping = table.batch_indices();
    // Batches whose min/max rule out every row are neither decoded nor evaluated: the
    // optimizer's batch pruning recorded the others on the scan. A batch whose statistics could
    // not be read was kept there, and its damage is reported now.
    let surviving: Vec<usize> = match batches {
        Some(batches) => overlapping
            .iter()
            .copied()
            .filter(|batch| batches.binary_search(batch).is_ok())
            .collect(),
        None => overlapping.clone(),
    };
    // Pages of the mapping are left to fault in when the kernels first touch them.
    // Populating the ranges a scan reads first (MADV_POPULATE_READ over every scanned
    // buffer, in 4 MiB pieces on the pool) was slower: `age > 94` on `tab`, first query
    // in a fresh process, 24.5-31 ms against 21.6-26 ms, and 45-48 ms of CPU against
    // 39-41 ms; on a repeat it still walks the page tables (+6 ms). Faults on this VM do
    // not get cheaper when batched, and fault-around already maps 16 pages per fault.
    let record_batches = table.record_batches_of(&surviving)?;
    let rows_in: usize = record_batches.iter().map(RecordBatch::num_rows).sum();
    // The bytes of the scanned rows (an array's memory size would count the whole mapping
    // its buffers share).
    let bytes_read = record_batches
        .iter()
        .flat_map(|b| b.columns())
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum();
    let chunks = record_batches
        .into_iter()
        .map(|batch| Chunk {
            len: batch.num_rows(),
            columns: batch.columns().to_vec(),
            selection: None,
        })
        .collect();
    let mut result = ViewSet { schema, chunks };
    if let Some(predicate) = Expr::conjunction(filters.iter().cloned()) {
        result = filter(result, &predicate)
            .map_err(|e| e.at_path(Some(table.file().path().to_owned()), "filter evaluation"))?;
    }
    let stats = OperatorStats {
        rows_in,
        rows_out: result.num_rows(),
        bytes_read,
        batches_read: surviving.len(),
        batches_skipped: overlapping.len() - surviving.len(),
        ..Default::default()
    };
    Ok((result, stats))
}
