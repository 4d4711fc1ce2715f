//! `relay inspect FILE`: what is in a file, and which columns export without a copy.

use std::path::PathBuf;

use arrow::array::Array;
use arrow::array::ArrayData;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use relay_storage::{IpcFile, TableView};

use crate::errors::DetachGuarded;
use crate::errors::IntoPyResult;
use relay_storage::type_name;

/// The largest power of two (up to 64) that divides the file offset of every buffer of `data`
/// that lies in the mapping; None when no buffer does.
fn buffer_alignment(
    data: &ArrayData,
    mapped: &std::ops::Range<usize>,
    alignment: &mut Option<usize>,
) {
    let buffers = data
        .buffers()
        .iter()
        .chain(data.nulls().map(|n| n.buffer()));
    for buffer in buffers {
        let address = buffer.as_ptr() as usize;
        if buffer.is_empty() || !mapped.contains(&address) {
            continue;
        }
        let offset = address - mapped.start;
        let this = if offset == 0 {
            64
        } else {
            (1usize << offset.trailing_zeros()).min(64)
        };
        *alignment = Some(alignment.map_or(this, |a| a.min(this)));
    }
    for child in data.child_data() {
        buffer_alignment(child, mapped, alignment);
    }
}

#[pyfunction]
pub fn inspect_file<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let file = py
        .detach_guarded("inspect_file", || IpcFile::open(&path))?
        .into_py_result()?;
    let report = PyDict::new(py);
    report.set_item("path", file.path().display().to_string())?;
    report.set_item("size", file.size())?;
    report.set_item("num_rows", file.num_rows())?;
    report.set_item("format", file.format().name())?;
    let batches = PyList::empty(py);
    for info in file.batches() {
        let batch = PyDict::new(py);
        batch.set_item("rows", info.num_rows)?;
        batch.set_item("offset", info.block.offset())?;
        batch.set_item(
            "bytes",
            info.block.metaDataLength() as i64 + info.block.bodyLength(),
        )?;
        batch.set_item(
            "compression",
            info.compression.map(relay_storage::codec_name),
        )?;
        batches.append(batch)?;
    }
    report.set_item("batches", batches)?;
    let mapped = file.mapped_range();
    let columns = PyList::empty(py);
    for view in TableView::new(file.clone()).columns() {
        let column = PyDict::new(py);
        column.set_item("name", view.name())?;
        column.set_item("type", type_name(view.data_type()))?;
        match py.detach_guarded("inspect_file", || view.chunks())? {
            Ok(chunks) => {
                let mut alignment = None;
                for chunk in &chunks {
                    buffer_alignment(&chunk.array.to_data(), &mapped, &mut alignment);
                }
                let nulls: usize = chunks.iter().map(|c| c.array.logical_null_count()).sum();
                let verdict = relay_exec::chunks_verdict(&chunks, view.data_type(), &mapped);
                let blocker = verdict.copy_reason();
                column.set_item("alignment", alignment)?;
                column.set_item("null_count", nulls)?;
                column.set_item("zero_copy", blocker.is_none())?;
                column.set_item("reason", blocker)?;
            }
            Err(error) => {
                column.set_item("alignment", py.None())?;
                column.set_item("null_count", py.None())?;
                column.set_item("zero_copy", false)?;
                column.set_item("reason", error.to_string())?;
            }
        }
        columns.append(column)?;
    }
    report.set_item("columns", columns)?;
    Ok(report)
}
