//! Arrow values as Python objects (placeholder until the converter lands).
use arrow::array::Array;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::errors::{ErrorKind, relay_error};

pub fn array_to_pylist<'py>(_py: Python<'py>, _array: &dyn Array) -> PyResult<Bound<'py, PyList>> {
    Err(relay_error(ErrorKind::Relay, "conversion to Python objects is not built yet"))
}
