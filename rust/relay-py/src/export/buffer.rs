//! The Python buffer protocol (PEP 3118) over dense buffers. Exports are read-only: a request
//! for a writable buffer is refused, as NumPy 2 expects of read-only producers.

use std::ffi::{CStr, c_int, c_void};

use pyo3::ffi;
use pyo3::prelude::*;
use relay_exec::{DenseArray, DenseDtype};

use crate::errors::{ErrorKind, relay_error};

/// What one buffer export owns until `release` runs: the bytes and the shape and strides
/// arrays the `Py_buffer` points into.
struct Export {
    /// Never read: holding it keeps the exported bytes alive until release.
    _dense: DenseArray,
    shape: [isize; 2],
    strides: [isize; 2],
}

fn format_of(dtype: DenseDtype) -> Option<&'static CStr> {
    Some(match dtype {
        DenseDtype::Bool => c"?",
        DenseDtype::Int8 => c"b",
        DenseDtype::Int16 => c"h",
        DenseDtype::Int32 => c"i",
        DenseDtype::Int64 => c"q",
        DenseDtype::UInt8 => c"B",
        DenseDtype::UInt16 => c"H",
        DenseDtype::UInt32 => c"I",
        DenseDtype::UInt64 => c"Q",
        DenseDtype::Float16 => c"e",
        DenseDtype::Float32 => c"f",
        DenseDtype::Float64 => c"d",
        // PEP 3118 has no datetime codes; these go through to_numpy() instead.
        DenseDtype::Datetime(_) | DenseDtype::Timedelta(_) => return None,
    })
}

/// Fills `view` with a read-only export of `dense`, owned by `owner`.
///
/// # Safety
/// `view` must be the non-null `Py_buffer` pointer CPython passes to `bf_getbuffer`.
pub unsafe fn fill(
    view: *mut ffi::Py_buffer,
    flags: c_int,
    dense: DenseArray,
    owner: Bound<'_, PyAny>,
    what: &str,
) -> PyResult<()> {
    if flags & ffi::PyBUF_WRITABLE == ffi::PyBUF_WRITABLE {
        return Err(relay_error(
            ErrorKind::Export,
            format!("{what} is read-only: it may be a view of a mapped file; take a copy to write"),
        ));
    }
    let format = format_of(dense.dtype).ok_or_else(|| {
        relay_error(
            ErrorKind::Export,
            format!(
                "{what} has dtype {} which the buffer protocol cannot describe; use to_numpy()",
                dense.dtype.numpy_str()
            ),
        )
    })?;
    let item_size = dense.dtype.item_size() as isize;
    let (ndim, shape, strides) = match dense.shape.as_slice() {
        [rows, width] => (
            2,
            [*rows as isize, *width as isize],
            [*width as isize * item_size, item_size],
        ),
        [rows] => (1, [*rows as isize, 0], [item_size, 0]),
        other => unreachable!("dense arrays are 1-D or 2-D, got {other:?}"),
    };
    let len = shape[..ndim].iter().product::<isize>() * item_size;
    let buf = dense.buffer.as_ptr() as *mut c_void;
    let export = Box::into_raw(Box::new(Export {
        _dense: dense,
        shape,
        strides,
    }));
    // `view` is valid per this function's contract. Every pointer stored in it points
    // into `export` (shape, strides) or its buffer (buf) or static data (format), and `export`
    // is freed only in `release`, after the consumer is done. `obj` takes a new reference to
    // the owner, which CPython drops after `bf_releasebuffer`.
    // SAFETY: `view` is valid and everything it points to lives until release (reasons above).
    unsafe {
        (*view).obj = owner.into_ptr();
        (*view).buf = buf;
        (*view).len = len;
        (*view).readonly = 1;
        (*view).itemsize = item_size;
        (*view).format = if flags & ffi::PyBUF_FORMAT == ffi::PyBUF_FORMAT {
            format.as_ptr() as *mut _
        } else {
            std::ptr::null_mut()
        };
        (*view).ndim = ndim as c_int;
        (*view).shape = if flags & ffi::PyBUF_ND == ffi::PyBUF_ND {
            (*export).shape.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        };
        (*view).strides = if flags & ffi::PyBUF_STRIDES == ffi::PyBUF_STRIDES {
            (*export).strides.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        };
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = export.cast();
    }
    Ok(())
}

/// Frees what `fill` allocated for this export.
///
/// # Safety
/// `view` must be a `Py_buffer` that `fill` filled and that has not been released yet.
pub unsafe fn release(view: *mut ffi::Py_buffer) {
    // SAFETY: per the contract, `internal` holds the Box that `fill` leaked, exactly once.
    unsafe {
        let export = (*view).internal.cast::<Export>();
        if !export.is_null() {
            drop(Box::from_raw(export));
            (*view).internal = std::ptr::null_mut();
        }
    }
}
