//! Arrays from Python as Arrow arrays, for `Frame.with_column(name, array)`.
//!
//! A NumPy array whose memory already has an Arrow layout (one dimension, or two for a
//! `fixed_size_list`; C-contiguous, aligned, native byte order; an integer, float, datetime64 or
//! timedelta64 dtype) is **referenced, not copied**: the Arrow buffer points at the array's
//! data and holds the array object, so the memory lives as long as any frame or export uses it.
//! Arrow arrays (`__arrow_c_array__`, e.g. pyarrow) and relay Columns are imported the same way,
//! over their own buffers. Anything else is converted into fresh memory, and the copy's reason
//! is kept with the column (`explain()`, `copy_reason`).

use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow::array::{Array, ArrayData, ArrayRef, make_array};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow::datatypes::{DataType, Field};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyCapsuleMethods, PyDict};
use relay_plan::plan::AttachedColumn;

use crate::column::ColumnBase;
use crate::convert;
use crate::errors::{DetachGuarded, ErrorKind, relay_error};

/// Holds a Python object (a NumPy array) while an Arrow buffer points into its memory. Dropping
/// it releases the reference; pyo3 defers that decref to the next time the GIL is held when the
/// last Arrow buffer goes away on a thread without it. The object is never used, only held, so
/// a panic elsewhere cannot leave it half-changed: asserting unwind safety (which arrow asks of
/// buffer owners) is sound.
struct PythonOwner(#[allow(dead_code)] AssertUnwindSafe<Py<PyAny>>);

/// The value `name` as an attached column. `copied` is the caller's reason when it already
/// converted the value (a list, a string array); the import adds its own reason when it copies.
pub fn attached_column(
    py: Python<'_>,
    name: String,
    value: &Bound<'_, PyAny>,
    copied: Option<String>,
) -> PyResult<AttachedColumn> {
    let (array, own_reason) = import(py, &name, value)?;
    Ok(AttachedColumn {
        name,
        array,
        copied: copied.or(own_reason),
    })
}

/// `value` as an Arrow array, and why it had to be copied (None when it is referenced).
fn import(
    py: Python<'_>,
    name: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<(ArrayRef, Option<String>)> {
    if let Ok(array) = value.cast::<PyUntypedArray>() {
        return import_numpy(py, name, array);
    }
    if let Ok(column) = value.cast::<ColumnBase>() {
        let mut chunks = column.get().chunks(py)?;
        if chunks.len() == 1 {
            let chunk = chunks.pop().expect("one chunk");
            return Ok((chunk.array, chunk.copy_reason));
        }
        let arrays: Vec<&dyn Array> = chunks.iter().map(|c| c.array.as_ref()).collect();
        let array = py
            .detach_guarded("importing an external array", || {
                arrow::compute::concat(&arrays)
            })?
            .map_err(|e| relay_error(ErrorKind::Type, format!("with_column({name:?}): {e}")))?;
        return Ok((
            array,
            Some(format!(
                "the column spans {} record batches, concatenated into one array",
                chunks.len()
            )),
        ));
    }
    if value.hasattr("__arrow_c_array__")? {
        return Ok((import_arrow(name, value)?, None));
    }
    Err(relay_error(
        ErrorKind::Type,
        format!(
            "with_column({name:?}) takes an expression, a scalar, a NumPy array, an Arrow array or a Column, got {}",
            value.get_type().name()?
        ),
    ))
}

fn numpy_dtype_str(array: &Bound<'_, PyUntypedArray>) -> PyResult<String> {
    array.dtype().getattr("str")?.extract()
}

/// A NumPy array as an Arrow array: referenced when its memory has the Arrow layout, else
/// converted once into a contiguous array that is then referenced.
fn import_numpy(
    py: Python<'_>,
    name: &str,
    array: &Bound<'_, PyUntypedArray>,
) -> PyResult<(ArrayRef, Option<String>)> {
    let numpy = py.import("numpy")?;
    let bad = |message: String| {
        relay_error(
            ErrorKind::Value,
            format!("with_column({name:?}): {message}"),
        )
    };
    if !matches!(array.ndim(), 1 | 2) {
        return Err(bad(format!(
            "the array has {} dimensions; a column takes a 1-D array, or a 2-D one for fixed_size_list rows",
            array.ndim()
        )));
    }
    let dtype = numpy_dtype_str(array)?;
    let (order, code) = dtype.split_at(1);
    if code == "b1" {
        return import_numpy_bool(py, name, array);
    }
    let Some(item_type) = convert::numpy_arrow_type(code) else {
        return Err(relay_error(
            ErrorKind::Type,
            format!(
                "with_column({name:?}): NumPy dtype {} has no Arrow form here; use an integer, float, \
                 bool, datetime64 or timedelta64 array (in s, ms, us or ns), or a pyarrow array",
                array.dtype()
            ),
        ));
    };
    let native = order != ">";
    let mut copied = None;
    let mut array = array.clone();
    if !(array.is_c_contiguous() && array.is_aligned() && native) {
        let why = if !native {
            "the NumPy array is big-endian"
        } else if !array.is_c_contiguous() {
            "the NumPy array is not C-contiguous"
        } else {
            "the NumPy array is not aligned"
        };
        copied = Some(format!("{why}: it was copied into a contiguous array"));
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", format!("<{code}"))?;
        array = numpy
            .call_method("ascontiguousarray", (&array,), Some(&kwargs))?
            .cast_into::<PyUntypedArray>()?;
    }
    let rows = array.shape()[0];
    let width = array.shape().get(1).copied();
    let values = numpy_buffer(&array)?;
    // NaT is a value in NumPy and a null in Arrow (as pyarrow converts it): a validity bitmap
    // is computed, the values stay referenced.
    let nulls = if matches!(item_type, DataType::Timestamp(..) | DataType::Duration(_))
        && width.is_none()
    {
        let is_nat = numpy.call_method1("isnat", (&array,))?;
        if is_nat.call_method0("any")?.is_truthy()? {
            let valid = numpy.call_method1("logical_not", (&is_nat,))?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("bitorder", "little")?;
            let packed = numpy
                .call_method("packbits", (valid,), Some(&kwargs))?
                .cast_into::<PyUntypedArray>()?;
            Some(NullBuffer::new(BooleanBuffer::new(
                numpy_buffer(&packed)?,
                0,
                rows,
            )))
        } else {
            None
        }
    } else {
        None
    };
    let invalid = |e: arrow::error::ArrowError| bad(e.to_string());
    let data = match width {
        None => ArrayData::builder(item_type)
            .len(rows)
            .add_buffer(values)
            .nulls(nulls)
            .build()
            .map_err(invalid)?,
        Some(width) => {
            let items = ArrayData::builder(item_type.clone())
                .len(rows * width)
                .add_buffer(values)
                .build()
                .map_err(invalid)?;
            let list_type = DataType::FixedSizeList(
                Arc::new(Field::new("item", item_type, true)),
                width as i32,
            );
            ArrayData::builder(list_type)
                .len(rows)
                .child_data(vec![items])
                .build()
                .map_err(invalid)?
        }
    };
    Ok((make_array(data), copied))
}

/// NumPy booleans are bytes and Arrow's are bits: packed into a fresh bitmap.
fn import_numpy_bool(
    py: Python<'_>,
    name: &str,
    array: &Bound<'_, PyUntypedArray>,
) -> PyResult<(ArrayRef, Option<String>)> {
    if array.ndim() != 1 {
        return Err(relay_error(
            ErrorKind::Value,
            format!("with_column({name:?}): a bool column takes a 1-D array"),
        ));
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("bitorder", "little")?;
    let packed = py
        .import("numpy")?
        .call_method("packbits", (array,), Some(&kwargs))?
        .cast_into::<PyUntypedArray>()?;
    let rows = array.shape()[0];
    let values = BooleanBuffer::new(numpy_buffer(&packed)?, 0, rows);
    let array: ArrayRef = Arc::new(arrow::array::BooleanArray::new(values, None));
    Ok((
        array,
        Some(
            "NumPy booleans are bytes and Arrow booleans are bits: they were packed into a copy"
                .into(),
        ),
    ))
}

/// An Arrow buffer over the whole memory of a C-contiguous NumPy array, holding the array.
fn numpy_buffer(array: &Bound<'_, PyUntypedArray>) -> PyResult<Buffer> {
    if !array.is_c_contiguous() {
        return Err(relay_error(
            ErrorKind::Value,
            "internal: numpy_buffer needs a C-contiguous array",
        ));
    }
    let item_size = array.dtype().itemsize();
    let len = array.shape().iter().product::<usize>() * item_size;
    // SAFETY: `as_array_ptr` is the `PyArrayObject` behind `array`, a live NumPy array (the
    // cast checked its type) that we hold a reference to; `data` is a plain field read.
    let data = unsafe { (*array.as_array_ptr()).fields.data }.cast::<u8>();
    let Some(ptr) = NonNull::new(data) else {
        // NumPy never hands out null data; an empty buffer is the right answer anyway.
        return Ok(Buffer::from_vec(Vec::<u8>::new()));
    };
    let owner = Arc::new(PythonOwner(AssertUnwindSafe(
        array.clone().into_any().unbind(),
    )));
    // A C-contiguous array's elements are the `len` bytes starting at `data`. NumPy frees or
    // moves an array's data only when the array is deallocated or resized in place, and `owner`
    // holds a reference to the array, which prevents both (`ndarray.resize` refuses to run on an
    // array with other references, unless the caller passes `refcheck=False`, which NumPy
    // documents as unsafe).
    // SAFETY: so the `len` bytes at `ptr` stay valid until the last clone of the buffer drops `owner`.
    Ok(unsafe { Buffer::from_custom_allocation(ptr, len, owner) })
}

/// An Arrow array from the PyCapsule interface (`__arrow_c_array__`), over the producer's
/// buffers; the producer's release callback runs when the last buffer is dropped.
fn import_arrow(name: &str, value: &Bound<'_, PyAny>) -> PyResult<ArrayRef> {
    let (schema_capsule, array_capsule): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
        value.call_method0("__arrow_c_array__")?.extract()?;
    let schema = schema_capsule
        .pointer_checked(Some(c"arrow_schema"))?
        .cast::<FFI_ArrowSchema>();
    let array = array_capsule
        .pointer_checked(Some(c"arrow_array"))?
        .cast::<FFI_ArrowArray>();
    // The capsule names were checked, so the pointers are the producer's `ArrowSchema` and
    // `ArrowArray` structs, alive while we hold the capsules. Taking the array out and leaving a
    // released (empty) one behind is how the PyCapsule interface moves ownership.
    // SAFETY: valid, live pointers; the capsule's destructor then sees a released array and does nothing.
    let array = unsafe { std::ptr::replace(array.as_ptr(), FFI_ArrowArray::empty()) };
    // SAFETY: as above, the schema pointer is valid and borrowed only for this call.
    let schema = unsafe { schema.as_ref() };
    // SAFETY: `array` and `schema` are a consistent pair from one `__arrow_c_array__` call; the
    // producer guarantees its buffers match the schema it describes.
    let data = unsafe { from_ffi(array, schema) }.map_err(|e| {
        relay_error(
            ErrorKind::Type,
            format!("with_column({name:?}): cannot import the Arrow array: {e}"),
        )
    })?;
    Ok(make_array(data))
}
