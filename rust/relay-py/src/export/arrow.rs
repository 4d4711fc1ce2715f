//! The Arrow PyCapsule interface (`__arrow_c_schema__`, `__arrow_c_array__`,
//! `__arrow_c_stream__`) through arrow-rs's C data interface. Exported arrays share the
//! mapped buffers; their release callbacks hold the buffers (and so the mapping) alive.

use ::arrow::array::{Array, RecordBatch, RecordBatchIterator};
use ::arrow::datatypes::{Field, SchemaRef};
use ::arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use ::arrow::ffi_stream::FFI_ArrowArrayStream;
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::errors::{ErrorKind, relay_error};

fn arrow_failure(what: &str, error: impl std::fmt::Display) -> PyErr {
    relay_error(
        ErrorKind::Type,
        format!("cannot export {what} to Arrow: {error}"),
    )
}

pub fn schema_capsule<'py>(
    py: Python<'py>,
    schema: FFI_ArrowSchema,
) -> PyResult<Bound<'py, PyCapsule>> {
    PyCapsule::new_with_value(py, schema, c"arrow_schema")
}

pub fn field_capsule<'py>(
    py: Python<'py>,
    field: &Field,
    what: &str,
) -> PyResult<Bound<'py, PyCapsule>> {
    let schema = FFI_ArrowSchema::try_from(field).map_err(|e| arrow_failure(what, e))?;
    schema_capsule(py, schema)
}

pub fn table_schema_capsule<'py>(
    py: Python<'py>,
    schema: &SchemaRef,
    what: &str,
) -> PyResult<Bound<'py, PyCapsule>> {
    let schema = FFI_ArrowSchema::try_from(schema.as_ref()).map_err(|e| arrow_failure(what, e))?;
    schema_capsule(py, schema)
}

/// `(schema capsule, array capsule)` for one array.
pub fn array_capsules<'py>(
    py: Python<'py>,
    field: &Field,
    array: &dyn Array,
    what: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let schema = field_capsule(py, field, what)?;
    let array = FFI_ArrowArray::new(&array.to_data());
    let array = PyCapsule::new_with_value(py, array, c"arrow_array")?;
    PyTuple::new(py, [schema.into_any(), array.into_any()])
}

/// A stream capsule over record batches. The schema is checked to export first (a column name
/// with a NUL byte cannot cross the C interface), so a bad one fails here, naming `what`,
/// rather than in the consumer.
pub fn stream_capsule<'py>(
    py: Python<'py>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    what: &str,
) -> PyResult<Bound<'py, PyCapsule>> {
    FFI_ArrowSchema::try_from(schema.as_ref()).map_err(|e| arrow_failure(what, e))?;
    let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), schema);
    let stream = FFI_ArrowArrayStream::new(Box::new(reader));
    PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
}
