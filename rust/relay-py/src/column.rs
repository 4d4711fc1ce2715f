//! `relay_ml._relay.ColumnBase`: one column of a mapped file or of a plan (over a file or over
//! memory), with every export. The public class is `relay_ml.Column`, a Python subclass that carries the docs.

use std::ffi::c_int;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::FieldRef;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyList, PyTuple};
use relay_exec::{DenseArray, Verdict, ViewSet};
use relay_plan::LogicalPlan;
use relay_storage::{ColumnView, DecodedColumn, type_name};

use crate::errors::{DetachGuarded, ErrorKind, IntoPyResult, guarded, relay_error};
use crate::export;
use crate::frame::{FrameOrigin, exec_error, optimized, run_plan};

/// Where a column's data comes from.
#[derive(Clone)]
pub enum ColumnSource {
    /// A column of the file itself over a row range: decoded batch by batch.
    File(ColumnView),
    /// The single output column of a plan (filtered, computed, ...), executed on export.
    Plan {
        plan: Arc<LogicalPlan>,
        field: FieldRef,
        /// The frame's file or memory: a file's mapping tells views from copies; messages name
        /// the file's path or the call that made the frame.
        origin: FrameOrigin,
    },
}

/// A column's data once read: decoded chunks of the file, or an executed plan.
enum Executed {
    Chunks(Vec<DecodedColumn>),
    View(ViewSet),
}

const FILTER_COPY: &str = "a filter selected rows: they are gathered into a copy";

impl Executed {
    /// Why exporting what was executed copies, or None for a view of `range`: the check an
    /// export with `zero_copy=True` makes after running, beside the verdict from the plan.
    fn blocker(&self, range: &std::ops::Range<usize>) -> Option<String> {
        match self {
            Executed::Chunks(chunks) => relay_exec::zero_copy_blocker(chunks, range),
            Executed::View(view) if view.chunks.iter().any(|c| c.selection.is_some()) => {
                Some(FILTER_COPY.into())
            }
            Executed::View(view) => {
                let chunks = view_chunks(view).ok()?;
                relay_exec::zero_copy_blocker(&chunks, range)
            }
        }
    }

    fn dense(&self, mapped: &std::ops::Range<usize>) -> Result<DenseArray, String> {
        match self {
            Executed::Chunks(chunks) => relay_exec::materialize(chunks, mapped),
            Executed::View(view) => relay_exec::dense_column(view, 0, mapped),
        }
    }

    fn arrays(&self) -> Result<Vec<ArrayRef>, String> {
        match self {
            Executed::Chunks(chunks) => Ok(chunks.iter().map(|c| c.array.clone()).collect()),
            Executed::View(view) => Ok(view_chunks(view)?.into_iter().map(|c| c.array).collect()),
        }
    }

    fn into_chunks(self) -> Result<Vec<DecodedColumn>, String> {
        match self {
            Executed::Chunks(chunks) => Ok(chunks),
            Executed::View(view) => view_chunks(&view),
        }
    }
}

/// The first column of an executed view as decoded chunks (gathered where selected); never
/// empty, so the type is always known.
fn view_chunks(view: &ViewSet) -> Result<Vec<DecodedColumn>, String> {
    let selected = view.chunks.iter().any(|c| c.selection.is_some());
    let mut chunks: Vec<DecodedColumn> = view
        .column_arrays(0)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|array| DecodedColumn {
            array,
            copy_reason: selected.then(|| FILTER_COPY.to_string()),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(DecodedColumn {
            array: arrow::array::new_empty_array(view.schema.field(0).data_type()),
            copy_reason: None,
        });
    }
    Ok(chunks)
}

#[pyclass(subclass, frozen, module = "relay_ml._relay")]
pub struct ColumnBase {
    pub source: ColumnSource,
}

impl ColumnBase {
    fn field(&self) -> &FieldRef {
        match &self.source {
            ColumnSource::File(view) => view.field(),
            ColumnSource::Plan { field, .. } => field,
        }
    }

    fn origin(&self) -> FrameOrigin {
        match &self.source {
            ColumnSource::File(view) => FrameOrigin::File(view.file().clone()),
            ColumnSource::Plan { origin, .. } => origin.clone(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "column {:?} of {}",
            self.field().name(),
            self.origin().describe()
        )
    }

    fn execute(&self, py: Python<'_>) -> PyResult<Executed> {
        match &self.source {
            ColumnSource::File(view) => Ok(Executed::Chunks(
                py.detach_guarded("execute", || view.chunks())?
                    .into_py_result()?,
            )),
            ColumnSource::Plan { plan, .. } => Ok(Executed::View(run_plan(py, plan)?)),
        }
    }

    pub(crate) fn chunks(&self, py: Python<'_>) -> PyResult<Vec<DecodedColumn>> {
        let executed = self.execute(py)?;
        py.detach_guarded("chunks", || executed.into_chunks())?
            .map_err(|reason| self.type_error(&reason))
    }

    fn type_error(&self, reason: &str) -> PyErr {
        relay_error(ErrorKind::Type, format!("{}: {reason}", self.describe()))
    }

    fn mapped(&self) -> std::ops::Range<usize> {
        self.origin().mapped_range()
    }

    /// Whether exports of this column are views or copies, decided from the plan and the
    /// file's metadata (see `relay_exec::provenance`): the plan is not run.
    fn verdict(&self, py: Python<'_>) -> PyResult<Verdict> {
        match &self.source {
            ColumnSource::File(view) => {
                let chunks = py
                    .detach_guarded("copy_reason", || view.chunks())?
                    .into_py_result()?;
                Ok(relay_exec::chunks_verdict(
                    &chunks,
                    view.data_type(),
                    &self.mapped(),
                ))
            }
            ColumnSource::Plan {
                plan,
                field,
                origin,
            } => py
                .detach_guarded("copy_reason", || {
                    relay_exec::column_verdict(
                        optimized(plan.clone())?.as_ref(),
                        field.name(),
                        &origin.mapped_range(),
                    )
                })?
                .map_err(exec_error),
        }
    }

    /// The column read for an export, and the memory the export may point into without a
    /// copy. With `zero_copy`, a copy is refused: before running the plan when the verdict
    /// says copy, and after it should what ran not be a view after all.
    fn read_for_export(
        &self,
        py: Python<'_>,
        zero_copy: bool,
    ) -> PyResult<(Executed, std::ops::Range<usize>)> {
        let range = match &self.source {
            ColumnSource::File(_) => self.mapped(),
            ColumnSource::Plan {
                plan,
                field,
                origin,
            } => relay_exec::export_range(plan, field.name(), &origin.mapped_range()),
        };
        if !zero_copy {
            return Ok((self.execute(py)?, range));
        }
        let executed = match &self.source {
            // The decoded chunks are both what the verdict looks at and what is exported.
            ColumnSource::File(view) => {
                let chunks = py
                    .detach_guarded("execute", || view.chunks())?
                    .into_py_result()?;
                let verdict = relay_exec::chunks_verdict(&chunks, view.data_type(), &range);
                if let Some(reason) = verdict.copy_reason() {
                    return Err(self.zero_copy_error(reason));
                }
                Executed::Chunks(chunks)
            }
            ColumnSource::Plan { .. } => {
                if let Some(reason) = self.verdict(py)?.copy_reason() {
                    return Err(self.zero_copy_error(reason));
                }
                self.execute(py)?
            }
        };
        if let Some(reason) = executed.blocker(&range) {
            return Err(self.zero_copy_error(&reason));
        }
        Ok((executed, range))
    }

    /// The column as one dense buffer, refusing a copy when `zero_copy` is true.
    fn dense(&self, py: Python<'_>, zero_copy: bool) -> PyResult<DenseArray> {
        let (executed, range) = self.read_for_export(py, zero_copy)?;
        py.detach_guarded("dense", || executed.dense(&range))?
            .map_err(|reason| self.type_error(&reason))
    }

    fn zero_copy_error(&self, reason: &str) -> PyErr {
        relay_error(
            ErrorKind::ZeroCopy,
            format!(
                "{} cannot be exported without a copy: {reason}",
                self.describe()
            ),
        )
    }

    fn arrays(&self, py: Python<'_>) -> PyResult<Vec<ArrayRef>> {
        let executed = self.execute(py)?;
        py.detach_guarded("arrays", || executed.arrays())?
            .map_err(|reason| self.type_error(&reason))
    }
}

#[pymethods]
impl ColumnBase {
    #[new]
    fn new(source: PyRef<'_, ColumnBase>) -> Self {
        ColumnBase {
            source: source.source.clone(),
        }
    }

    #[getter]
    fn name(&self) -> &str {
        self.field().name()
    }

    #[getter]
    fn dtype(&self) -> String {
        type_name(self.field().data_type())
    }

    /// The mapped file; None for a column of a frame in memory.
    #[getter]
    fn path(&self) -> Option<String> {
        self.origin().path()
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        match &self.source {
            ColumnSource::File(view) => Ok(view.len() as usize),
            ColumnSource::Plan { plan, .. } => match plan.known_num_rows() {
                Some(n) => Ok(n as usize),
                None => Ok(run_plan(py, plan)?.num_rows()),
            },
        }
    }

    #[getter]
    fn null_count(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self
            .arrays(py)?
            .iter()
            .map(|a| a.logical_null_count())
            .sum())
    }

    /// Why an export of this column copies, or None when it is a view of the mapping.
    #[getter]
    pub fn copy_reason(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.verdict(py)?.copy_reason().map(str::to_owned))
    }

    fn _slice(&self, offset: u64, length: Option<u64>) -> Self {
        let length = length.unwrap_or(u64::MAX);
        let source = match &self.source {
            ColumnSource::File(view) => ColumnSource::File(view.slice(offset, length)),
            ColumnSource::Plan {
                plan,
                field,
                origin,
            } => ColumnSource::Plan {
                plan: Arc::new(plan.slice(offset, length)),
                field: field.clone(),
                origin: origin.clone(),
            },
        };
        ColumnBase { source }
    }

    #[pyo3(signature = (zero_copy=None))]
    fn _to_numpy<'py>(
        &self,
        py: Python<'py>,
        zero_copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (executed, range) = self.read_for_export(py, zero_copy == Some(true))?;
        match py.detach_guarded("_to_numpy", || executed.dense(&range))? {
            Ok(dense) => export::numpy::dense_to_numpy(py, dense),
            // No fixed-width form (strings, decimals, nested types): an object array.
            // fromiter, unlike array(), never turns equal-length lists into extra dimensions.
            Err(_) => {
                let values = self.to_pylist(py)?;
                let count = values.len();
                let numpy = py.import("numpy")?;
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("dtype", "object")?;
                kwargs.set_item("count", count)?;
                let array = numpy.call_method("fromiter", (values,), Some(&kwargs))?;
                array.getattr("flags")?.setattr("writeable", false)?;
                Ok(array)
            }
        }
    }

    /// NumPy array of the dictionary codes (a view when the column is one record batch).
    fn _codes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let chunks = self.chunks(py)?;
        let codes = relay_exec::dictionary_codes(&chunks).map_err(|reason| {
            relay_error(ErrorKind::Type, format!("{}: {reason}", self.describe()))
        })?;
        let dense = relay_exec::materialize(&codes, &self.mapped()).map_err(|reason| {
            relay_error(ErrorKind::Type, format!("{}: {reason}", self.describe()))
        })?;
        export::numpy::dense_to_numpy(py, dense)
    }

    fn to_pylist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let what = self.describe();
        let mut arrays = self.arrays(py)?;
        // Reads the mapped values on this thread, with the GIL held.
        guarded("to_pylist", || {
            if arrays.len() == 1 {
                let array = arrays.pop().expect("one chunk");
                return export::pyvalues::array_to_pylist_of(py, array.as_ref(), &what);
            }
            let list = PyList::empty(py);
            for array in arrays {
                for value in export::pyvalues::array_to_pylist_of(py, array.as_ref(), &what)? {
                    list.append(value)?;
                }
            }
            Ok(list)
        })
    }

    /// The buffer protocol exports views only: a column that needs a copy refuses with
    /// ZeroCopyError (a BufferError), so NumPy falls back to `__array__`, where the copy is
    /// visible and `copy=False` is honoured.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let column = slf.get();
        let dense = column.dense(slf.py(), true)?;
        let what = column.describe();
        // SAFETY: `view` comes from CPython's bf_getbuffer slot, as `fill` requires.
        unsafe { export::buffer::fill(view, flags, dense, slf.into_any(), &what) }
    }

    unsafe fn __releasebuffer__(&self, view: *mut ffi::Py_buffer) {
        // SAFETY: CPython passes back the `Py_buffer` that `__getbuffer__` filled, once.
        unsafe { export::buffer::release(view) }
    }

    #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
    fn __dlpack__(
        &self,
        py: Python<'_>,
        stream: Option<Bound<'_, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Py<PyAny>> {
        let dense = self.dense(py, copy == Some(false))?;
        export::dlpack::export(py, dense, stream, max_version, dl_device, copy)
    }

    fn __dlpack_device__(&self) -> (i32, i32) {
        (1, 0) // kDLCPU, device 0: mapped files live in host memory
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        export::arrow::field_capsule(py, self.field(), &self.describe())
    }

    /// One array: the single chunk as it is, or the chunks concatenated (a copy).
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema; // the spec lets producers ignore it; the data keeps its type
        let arrays = self.arrays(py)?;
        let array = if arrays.len() == 1 {
            arrays.into_iter().next().expect("one chunk")
        } else {
            let refs: Vec<&dyn arrow::array::Array> = arrays.iter().map(|a| a.as_ref()).collect();
            py.detach_guarded("__arrow_c_array__", || arrow::compute::concat(&refs))?
                .map_err(|e| relay_error(ErrorKind::Type, format!("{}: {e}", self.describe())))?
        };
        export::arrow::array_capsules(py, self.field(), array.as_ref(), &self.describe())
    }

    /// `(schema, array)` capsules for each chunk, sharing the mapping.
    fn _arrow_chunks<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        self.arrays(py)?
            .iter()
            .map(|array| {
                export::arrow::array_capsules(py, self.field(), array.as_ref(), &self.describe())
            })
            .collect()
    }
}
