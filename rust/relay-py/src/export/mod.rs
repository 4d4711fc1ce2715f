//! Exports of relay data to other libraries: NumPy arrays, the buffer protocol, DLPack and the
//! Arrow C data interface. Every export holds the buffer it points into (and through it the
//! mapping), so it stays valid after the Frame or Column that made it is gone.

pub mod arrow;
pub mod buffer;
pub mod dlpack;
pub mod numpy;
pub mod pyvalues;

use ::arrow::buffer::Buffer;
use pyo3::prelude::*;

/// Keeps an exported buffer alive; the base object of NumPy arrays made by relay.
#[pyclass(frozen, module = "relay_ml._relay")]
pub struct BufferOwner {
    pub buffer: Buffer,
}

#[pymethods]
impl BufferOwner {
    fn __repr__(&self) -> String {
        format!(
            "<relay_ml buffer of {} bytes at {:#x}>",
            self.buffer.len(),
            self.buffer.as_ptr() as usize
        )
    }
}
