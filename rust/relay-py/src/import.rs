//! Data from other libraries as relay frames: `relay_ml.from_arrow`, `from_numpy`, `from_pandas`.
//!
//! An in-memory frame is a plan whose leaf is memory with the frame's rows and no columns
//! (`LogicalPlan::memory_rows`, `NativeFrame.memory`), with its columns attached as
//! `Frame.with_column` attaches them (`LogicalPlan::AttachColumns`): each column is an external
//! array, referenced where its memory already has the Arrow layout (see `external.rs`). No file
//! is involved. This module reads Arrow streams and arrays from the PyCapsule interface into
//! such columns.

use std::sync::Arc;

use arrow::array::RecordBatchReader;
use arrow::array::{Array, ArrayRef, RecordBatch, StructArray, make_array, new_empty_array};
use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use arrow::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods, PyTuple};

use crate::errors::{DetachGuarded, ErrorKind, relay_error};
use crate::export;

/// One column imported from the Arrow PyCapsule interface. It exports itself again through
/// `__arrow_c_array__` over the same buffers (what `Frame.with_column` attaches), and pickles
/// as a `pyarrow.Array`.
#[pyclass(frozen, module = "relay_ml._relay")]
pub struct ImportedArray {
    field: FieldRef,
    array: ArrayRef,
}

#[pymethods]
impl ImportedArray {
    #[getter]
    fn name(&self) -> &str {
        self.field.name()
    }

    fn __len__(&self) -> usize {
        self.array.len()
    }

    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema; // the spec lets producers ignore it
        export::arrow::array_capsules(
            py,
            &self.field,
            self.array.as_ref(),
            &format!("column {:?}", self.field.name()),
        )
    }

    /// `(pyarrow.array, (the array as pyarrow,))`: pickles the values, not the memory.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let convert = py.import("pyarrow")?.getattr("array")?;
        let values = convert.call1((slf,))?;
        PyTuple::new(py, [convert, PyTuple::new(py, [values])?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!(
            "<relay_ml imported Arrow array {:?}: {} values>",
            self.field.name(),
            self.array.len()
        )
    }
}

/// The columns of an Arrow stream or array: `(columns, rows, notes)` where `notes[i]` says why
/// column `i` was copied (its values came in several chunks and were concatenated), or is None
/// when its buffers are the producer's own. `value` has `__arrow_c_stream__` (a table, a
/// Polars DataFrame, a DuckDB result) or `__arrow_c_array__` of a struct array (a record batch).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn _import_arrow(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
) -> PyResult<(Vec<ImportedArray>, u64, Vec<Option<String>>)> {
    let (schema, chunks) = if value.hasattr("__arrow_c_stream__")? {
        import_stream(value)?
    } else if value.hasattr("__arrow_c_array__")? {
        import_struct_array(value)?
    } else {
        return Err(relay_error(
            ErrorKind::Type,
            format!(
                "from_arrow() takes an object with __arrow_c_stream__ or __arrow_c_array__ (a pyarrow Table or \
                 RecordBatch, a Polars DataFrame, a DuckDB result), got {}",
                value.get_type().name()?
            ),
        ));
    };
    let rows: usize = chunks.iter().map(RecordBatch::num_rows).sum();
    let mut columns = Vec::with_capacity(schema.fields().len());
    let mut notes = Vec::with_capacity(schema.fields().len());
    for (index, field) in schema.fields().iter().enumerate() {
        let parts: Vec<&dyn Array> = chunks
            .iter()
            .map(|batch| batch.column(index).as_ref())
            .collect();
        let (array, note) = match parts.as_slice() {
            [] => (new_empty_array(field.data_type()), None),
            [one] => (make_array(one.to_data()), None),
            many => {
                let joined = py
                    .detach_guarded("_import_arrow", || arrow::compute::concat(many))?
                    .map_err(|e| {
                        relay_error(
                            ErrorKind::Type,
                            format!("from_arrow(): column {:?}: {e}", field.name()),
                        )
                    })?;
                (
                    joined,
                    Some(format!(
                        "the data came in {} chunks, concatenated into one array",
                        many.len()
                    )),
                )
            }
        };
        columns.push(ImportedArray {
            field: field.clone(),
            array,
        });
        notes.push(note);
    }
    Ok((columns, rows as u64, notes))
}

fn import_failure(error: impl std::fmt::Display) -> PyErr {
    relay_error(
        ErrorKind::Type,
        format!("from_arrow(): cannot import the Arrow data: {error}"),
    )
}

/// All record batches of `value.__arrow_c_stream__()`, read with the GIL held (a producer
/// written in Python needs it to make each batch).
fn import_stream(value: &Bound<'_, PyAny>) -> PyResult<(Arc<Schema>, Vec<RecordBatch>)> {
    let capsule = value
        .call_method0("__arrow_c_stream__")?
        .cast_into::<PyCapsule>()?;
    let pointer = capsule
        .pointer_checked(Some(c"arrow_array_stream"))?
        .cast::<FFI_ArrowArrayStream>();
    // The capsule name was checked, so the pointer is the producer's live `ArrowArrayStream`.
    // Moving the stream out and leaving a released (empty) one behind is how the PyCapsule
    // interface hands over ownership.
    // SAFETY: valid and live while we hold the capsule; its destructor then sees a released stream.
    let stream = unsafe { std::ptr::replace(pointer.as_ptr(), FFI_ArrowArrayStream::empty()) };
    let reader = RecordBatchStreamReader::try_new(stream).map_err(import_failure)?;
    let schema = reader.schema();
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(import_failure)?;
    Ok((schema, batches))
}

/// `value.__arrow_c_array__()` as one record batch: it must be a struct array (a pyarrow
/// RecordBatch exports as one), whose fields are the columns.
fn import_struct_array(value: &Bound<'_, PyAny>) -> PyResult<(Arc<Schema>, Vec<RecordBatch>)> {
    let (schema_capsule, array_capsule): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
        value.call_method0("__arrow_c_array__")?.extract()?;
    let schema = schema_capsule
        .pointer_checked(Some(c"arrow_schema"))?
        .cast::<FFI_ArrowSchema>();
    let array = array_capsule
        .pointer_checked(Some(c"arrow_array"))?
        .cast::<FFI_ArrowArray>();
    // The capsule names were checked, so the pointers are the producer's `ArrowSchema` and
    // `ArrowArray`, alive while we hold the capsules; moving the array out leaves a released one.
    // SAFETY: valid, live pointers; the capsule's destructor then sees a released array.
    let array = unsafe { std::ptr::replace(array.as_ptr(), FFI_ArrowArray::empty()) };
    // SAFETY: as above, the schema pointer is valid and borrowed only for this call.
    let schema = unsafe { schema.as_ref() };
    // SAFETY: `array` and `schema` are a consistent pair from one `__arrow_c_array__` call; the
    // producer guarantees its buffers match the schema it describes.
    let data = unsafe { from_ffi(array, schema) }.map_err(import_failure)?;
    let array = make_array(data);
    let DataType::Struct(_) = array.data_type() else {
        return Err(relay_error(
            ErrorKind::Type,
            format!(
                "from_arrow() takes a table or a record batch; this array has type {} (for one column, \
                 use relay_ml.from_arrow({{name: array}}) or from_numpy)",
                relay_storage::type_name(array.data_type())
            ),
        ));
    };
    let structs = array
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| import_failure("not a struct array"))?;
    if structs.null_count() > 0 {
        return Err(import_failure(
            "a record batch cannot have null rows (the struct array has nulls)",
        ));
    }
    let batch = RecordBatch::from(structs.clone());
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    Ok((Arc::new(Schema::new(fields)), vec![batch]))
}

/// Adds this module's classes and functions to `relay_ml._relay`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ImportedArray>()?;
    module.add_function(wrap_pyfunction!(_import_arrow, module)?)?;
    Ok(())
}
