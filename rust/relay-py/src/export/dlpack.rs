//! DLPack export (placeholder until the exporter lands).
use pyo3::prelude::*;
use relay_exec::DenseArray;

use crate::errors::{ErrorKind, relay_error};

pub fn export(
    _py: Python<'_>,
    _dense: DenseArray,
    _stream: Option<Bound<'_, PyAny>>,
    _max_version: Option<(u32, u32)>,
    _dl_device: Option<(i32, i32)>,
    _copy: Option<bool>,
) -> PyResult<Py<PyAny>> {
    Err(relay_error(ErrorKind::Relay, "DLPack export is not built yet"))
}
