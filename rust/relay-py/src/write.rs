//! Writing Arrow IPC and Parquet files and appending to IPC files: run the frame's plan, hand
//! its record batches to the storage writers. Documented on the Python wrappers
//! (`relay_ml/io.py`, `Frame.write_ipc`, `Frame.write_parquet`).

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use relay_storage::WriteSummary;

use crate::errors::{ErrorKind, IntoPyResult, guarded, relay_error};
use crate::frame::{NativeFrame, exec_error, run_plan};

/// The frame's rows as record batches (gathered where the plan filtered), GIL released.
fn frame_batches(py: Python<'_>, frame: &NativeFrame) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    let view = run_plan(py, &frame.plan)?;
    let batches = py.detach(|| view.record_batches()).map_err(exec_error)?;
    Ok((view.schema.clone(), batches))
}

fn summary_dict<'py>(py: Python<'py>, summary: WriteSummary) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("rows", summary.rows)?;
    dict.set_item("batches", summary.batches)?;
    dict.set_item("bytes", summary.bytes)?;
    Ok(dict)
}

#[pyfunction]
#[pyo3(signature = (frame, path, batch_size=None, compression=None))]
fn write_ipc<'py>(
    py: Python<'py>,
    frame: &NativeFrame,
    path: PathBuf,
    batch_size: Option<usize>,
    compression: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    guarded("write_ipc", || {
        if let Some(codec) = compression {
            return Err(relay_error(
                ErrorKind::Value,
                format!(
                    "{}: compression {codec:?} is not available: relay writes uncompressed IPC files \
                     (compressed buffers can never be mapped without a copy)",
                    path.display()
                ),
            ));
        }
        let (schema, batches) = frame_batches(py, frame)?;
        let summary = py
            .detach(|| relay_storage::write_ipc_file(&path, &schema, &batches, batch_size))
            .into_py_result()?;
        summary_dict(py, summary)
    })
}

#[pyfunction]
#[pyo3(signature = (frame, path, compression="zstd".to_owned(), row_group_size=None, compression_level=None))]
fn write_parquet<'py>(
    py: Python<'py>,
    frame: &NativeFrame,
    path: PathBuf,
    compression: String,
    row_group_size: Option<usize>,
    compression_level: Option<i32>,
) -> PyResult<Bound<'py, PyDict>> {
    guarded("write_parquet", || {
        let options = relay_storage::ParquetWriteOptions {
            compression,
            compression_level,
            row_group_rows: row_group_size.unwrap_or(relay_storage::DEFAULT_ROW_GROUP_ROWS),
        };
        let (schema, batches) = frame_batches(py, frame)?;
        let summary = py
            .detach(|| relay_storage::write_parquet_file(&path, &schema, &batches, &options))
            .into_py_result()?;
        summary_dict(py, summary)
    })
}

#[pyfunction]
fn append_ipc<'py>(
    py: Python<'py>,
    path: PathBuf,
    frame: &NativeFrame,
) -> PyResult<Bound<'py, PyDict>> {
    guarded("append_ipc", || {
        let (schema, batches) = frame_batches(py, frame)?;
        let summary = py
            .detach(|| relay_storage::append_ipc_file(&path, &schema, &batches))
            .into_py_result()?;
        summary_dict(py, summary)
    })
}

#[pyfunction]
fn repair_ipc(py: Python<'_>, path: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let summary = py
        .detach(|| relay_storage::repair_ipc_file(&path))
        .into_py_result()?;
    let dict = PyDict::new(py);
    dict.set_item("rows", summary.rows)?;
    dict.set_item("rows_dropped", summary.rows_dropped)?;
    dict.set_item("bytes_dropped", summary.bytes_dropped)?;
    Ok(dict)
}

/// A file written one record batch per `write` call, renamed into place by `finish`.
#[pyclass(module = "relay_ml._relay")]
pub struct NativeIpcWriter {
    writer: Option<relay_storage::IpcFileWriter>,
    schema: Option<SchemaRef>,
    path: PathBuf,
}

impl NativeIpcWriter {
    fn open_writer(&mut self) -> PyResult<&mut relay_storage::IpcFileWriter> {
        self.writer.as_mut().ok_or_else(|| {
            relay_error(
                ErrorKind::Value,
                format!("{}: the writer is already finished", self.path.display()),
            )
        })
    }
}

#[pymethods]
impl NativeIpcWriter {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        guarded("opening an IPC writer", || {
            let writer = py
                .detach(|| relay_storage::IpcFileWriter::create(&path))
                .into_py_result()?;
            Ok(NativeIpcWriter {
                writer: Some(writer),
                schema: None,
                path,
            })
        })
    }

    /// Writes the frame's rows as one record batch.
    fn write(&mut self, py: Python<'_>, frame: &NativeFrame) -> PyResult<()> {
        guarded("writing to an IPC writer", || {
            let (schema, batches) = frame_batches(py, frame)?;
            self.schema.get_or_insert_with(|| schema.clone());
            let writer = self.open_writer()?;
            py.detach(|| writer.write(&schema, &batches))
                .into_py_result()
        })
    }

    /// Syncs the file and renames it into place; `schema_of` gives the schema of a file that
    /// received no rows.
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
        schema_of: &NativeFrame,
    ) -> PyResult<Bound<'py, PyDict>> {
        guarded("finishing an IPC writer", || {
            let schema = match &self.schema {
                Some(schema) => schema.clone(),
                None => schema_of.plan.schema().map_err(crate::frame::plan_error)?,
            };
            self.open_writer()?;
            let writer = self.writer.take().expect("checked above");
            let summary = py.detach(|| writer.finish(&schema)).into_py_result()?;
            summary_dict(py, summary)
        })
    }

    /// Removes the temporary file; the path keeps what it had.
    fn abort(&mut self) {
        self.writer = None;
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeIpcWriter>()?;
    module.add_function(wrap_pyfunction!(write_ipc, module)?)?;
    module.add_function(wrap_pyfunction!(write_parquet, module)?)?;
    module.add_function(wrap_pyfunction!(append_ipc, module)?)?;
    module.add_function(wrap_pyfunction!(repair_ipc, module)?)?;
    Ok(())
}
