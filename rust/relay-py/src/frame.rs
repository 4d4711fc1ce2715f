//! `relay_ml._relay.NativeFrame`: columns of a mapped file over a range of rows.
//! The public class is `relay_ml.Frame`, a Python wrapper that carries the docs.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use relay_storage::{IpcFile, TableView};

use crate::column::ColumnBase;
use crate::errors::IntoPyResult;
use crate::export;
use relay_storage::type_name;

#[pyclass(frozen, module = "relay_ml._relay")]
pub struct NativeFrame {
    view: TableView,
}

#[pymethods]
impl NativeFrame {
    /// Maps an Arrow IPC file and reads its footer; no column data is read.
    #[staticmethod]
    fn scan(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let file = py.detach(|| IpcFile::open(&path)).into_py_result()?;
        Ok(NativeFrame {
            view: TableView::new(file),
        })
    }

    #[getter]
    fn path(&self) -> String {
        self.view.file().path().display().to_string()
    }

    /// `(offset, length)` of this frame's rows in the file.
    #[getter]
    fn row_range(&self) -> (u64, u64) {
        (self.view.rows().offset, self.view.rows().length)
    }

    /// `[(name, type name)]` in column order.
    #[getter]
    fn schema(&self) -> Vec<(String, String)> {
        self.view
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), type_name(f.data_type())))
            .collect()
    }

    #[getter]
    fn columns(&self) -> Vec<String> {
        self.view.column_names()
    }

    #[getter]
    fn num_rows(&self) -> u64 {
        self.view.num_rows()
    }

    fn select(&self, names: Vec<String>) -> PyResult<Self> {
        Ok(NativeFrame {
            view: self.view.select(&names).into_py_result()?,
        })
    }

    #[pyo3(signature = (offset, length=None))]
    fn slice(&self, offset: u64, length: Option<u64>) -> Self {
        NativeFrame {
            view: self.view.slice(offset, length.unwrap_or(u64::MAX)),
        }
    }

    fn column(&self, name: &str) -> PyResult<ColumnBase> {
        Ok(ColumnBase {
            view: self.view.column(name).into_py_result()?,
        })
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        export::arrow::table_schema_capsule(py, &self.view.schema(), &self.path())
    }

    /// The frame as a stream of record batches that share the mapping.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema; // the spec lets producers ignore it; the data keeps its types
        let batches = py.detach(|| self.view.record_batches()).into_py_result()?;
        export::arrow::stream_capsule(py, self.view.schema(), batches, &self.path())
    }
}
