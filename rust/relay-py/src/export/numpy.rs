//! NumPy arrays over dense buffers, without copying them again.

use std::ffi::c_int;

use numpy::npyffi::{
    NPY_ARRAY_CARRAY, NPY_ARRAY_CARRAY_RO, NpyTypes, PY_ARRAY_API, get_type_object, npy_intp,
};
use numpy::{PyArrayDescr, PyArrayDescrMethods};
use pyo3::prelude::*;
use relay_exec::DenseArray;

use super::BufferOwner;

/// A read-only NumPy array of `dense`, whose base object keeps the buffer alive (the mapping
/// for a view, the heap allocation for a copy).
pub fn dense_to_numpy<'py>(py: Python<'py>, dense: DenseArray) -> PyResult<Bound<'py, PyAny>> {
    new_array(py, dense, NPY_ARRAY_CARRAY_RO)
}

/// A writable NumPy array of `dense`, for fresh buffers nothing else refers to (a batch the
/// caller owns, which torch may take without a read-only warning).
pub fn dense_to_numpy_writable<'py>(
    py: Python<'py>,
    dense: DenseArray,
) -> PyResult<Bound<'py, PyAny>> {
    new_array(py, dense, NPY_ARRAY_CARRAY)
}

fn new_array<'py>(py: Python<'py>, dense: DenseArray, flags: c_int) -> PyResult<Bound<'py, PyAny>> {
    let descr = PyArrayDescr::new(py, dense.dtype.numpy_str().as_str())?;
    let item_size = dense.dtype.item_size();
    let mut dims: Vec<npy_intp> = dense.shape.iter().map(|&d| d as npy_intp).collect();
    let mut strides: Vec<npy_intp> = match dense.shape.as_slice() {
        [_, width] => vec![(width * item_size) as npy_intp, item_size as npy_intp],
        _ => vec![item_size as npy_intp],
    };
    let data = dense.buffer.as_ptr() as *mut std::ffi::c_void;
    let owner = Bound::new(
        py,
        BufferOwner {
            buffer: dense.buffer,
        },
    )?;
    // `descr` is a valid dtype whose reference NewFromDescr steals (hence into_ptr on a
    // fresh reference); `dims` and `strides` have `ndim` entries and are copied by NumPy; `data`
    // points to `prod(dims) * item_size` bytes owned by `owner`'s buffer, which becomes the
    // array's base (SetBaseObject steals that reference too), so the bytes outlive the array.
    // With NPY_ARRAY_CARRAY_RO the flags leave out WRITEABLE: the array is read-only.
    // SAFETY: valid descr, dims and strides; the base object owns the bytes (reasons above).
    unsafe {
        let array = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            get_type_object(py, NpyTypes::PyArray_Type),
            descr.into_dtype_ptr(),
            dims.len() as c_int,
            dims.as_mut_ptr(),
            strides.as_mut_ptr(),
            data,
            flags,
            std::ptr::null_mut(),
        );
        let array = Bound::from_owned_ptr_or_err(py, array)?;
        if PY_ARRAY_API.PyArray_SetBaseObject(py, array.as_ptr().cast(), owner.into_ptr()) != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(array)
    }
}
