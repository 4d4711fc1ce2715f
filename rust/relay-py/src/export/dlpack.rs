//! DLPack export (`__dlpack__`) of dense columns, built on dlpark.
//!
//! The managed tensor's context owns a clone of the dense `Buffer`: an Arc of the mapping for a
//! view, of a heap allocation for a copy. So a tensor stays valid after the Column and Frame that
//! made it are gone, and the deleter (called by the consumer, on any thread) drops that clone.
//! Shape and compact strides live in the same allocation as the managed tensor header.
//!
//! ABI: the versioned `DLManagedTensorVersioned` when the consumer's `max_version` is 1.x or later
//! (torch), with the READ_ONLY flag; the legacy `DLManagedTensor` otherwise (JAX), which has no
//! flags field (dlpark refuses flags on it). READ_ONLY is advice: torch ignores it, which is why
//! files are mapped copy-on-write and a write through a tensor never reaches the file.
//!
//! `copy=True` gets a fresh allocation that the consumer owns alone (IS_COPIED on the versioned
//! ABI, writable). `copy=False` is enforced by the caller, which only passes a view then.

use arrow::buffer::{Buffer, MutableBuffer};
use dlpark::allocation::dynamic;
use dlpark::ffi::{DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned};
use dlpark::metadata::Dynamic;
use dlpark::python::{DlpackExporter, ExportAbi, ExportRequest, export_dlpack};
use dlpark::{DlpackFlags, Managed, ManagedTensorBase};
use pyo3::prelude::*;
use relay_exec::{DenseArray, DenseDtype};

use crate::errors::{DetachGuarded, ErrorKind, relay_error};

/// kDLCPU, device 0: mapped files and relay's copies live in host memory.
const HOST: (i32, i32) = (1, 0);

/// The DLPack element type of a dense dtype. DLPack has no datetime: datetimes and durations
/// go out as their int64 ticks.
fn dl_dtype(dtype: DenseDtype) -> DLDataType {
    match dtype {
        DenseDtype::Bool => DLDataType::BOOL,
        DenseDtype::Int8 => DLDataType::I8,
        DenseDtype::Int16 => DLDataType::I16,
        DenseDtype::Int32 => DLDataType::I32,
        DenseDtype::Int64 | DenseDtype::Datetime(_) | DenseDtype::Timedelta(_) => DLDataType::I64,
        DenseDtype::UInt8 => DLDataType::U8,
        DenseDtype::UInt16 => DLDataType::U16,
        DenseDtype::UInt32 => DLDataType::U32,
        DenseDtype::UInt64 => DLDataType::U64,
        DenseDtype::Float16 => DLDataType::scalar(dlpark::ffi::DLDataTypeCode::FLOAT, 16),
        DenseDtype::Float32 => DLDataType::F32,
        DenseDtype::Float64 => DLDataType::F64,
    }
}

/// One `__dlpack__` request's tensor: the bytes, their element type and shape, and the flags a
/// zero-copy export carries.
struct DenseTensor {
    buffer: Buffer,
    dtype: DLDataType,
    shape: Vec<i64>,
    /// READ_ONLY for the versioned ABI; empty for the legacy ABI, which has no flags.
    flags: DlpackFlags,
}

impl DenseTensor {
    /// A fresh managed tensor of ABI `M` whose context owns a clone of the buffer (the mapping
    /// or a copy shared with nothing but other exports).
    fn managed<M: ManagedTensorBase>(&self) -> PyResult<Managed<M>> {
        let mut initialized = initialize::<M>(self.buffer.clone(), self.dtype, &self.shape)?;
        initialized
            .set_flags(self.flags)
            .map_err(|e| relay_error(ErrorKind::Relay, format!("DLPack export: {e}")))?;
        // The data pointer is `buffer`'s, whose `len() >= prod(shape) * item_size`
        // (checked in `export`), and the context owns a clone of that Buffer: an Arc of the
        // mapping or of a heap allocation, dropped only by the tensor's deleter, so the bytes
        // outlive the tensor. dlpark wrote the shape and compact (C-contiguous) strides into the
        // managed allocation itself. The device is the host, where the bytes are. The flags are
        // READ_ONLY or none: they claim no ownership.
        // SAFETY: the bytes outlive the tensor and match its shape, device and flags (reasons above).
        Ok(unsafe { initialized.finish() })
    }

    /// A managed tensor of ABI `M` over a copy of the bytes that only it owns, marked IS_COPIED
    /// on the versioned ABI (and writable).
    fn into_copied<M: ManagedTensorBase>(self, py: Python<'_>) -> PyResult<Managed<M>> {
        let unique = py.detach_guarded("into_copied", || owned_copy(self.buffer))?;
        let mut initialized = initialize::<M>(unique, self.dtype, &self.shape)?;
        // IS_COPIED says the consumer solely owns the bytes: `unique` comes from
        // `owned_copy`, a heap allocation no other Buffer shares, and it moved into the context.
        // READ_ONLY is left clear, and that private allocation may be written. On the legacy ABI
        // dlpark ignores flags.
        // SAFETY: the consumer solely owns these bytes, as IS_COPIED claims (reasons above).
        unsafe { initialized.set_flags_unchecked(DlpackFlags::IS_COPIED) };
        // The data pointer is `unique`'s, a copy of a buffer of at least
        // `prod(shape) * item_size` bytes (checked in `export`), owned by the context until the
        // deleter drops it. dlpark wrote the shape and compact strides into the managed
        // allocation. The device is the host. IS_COPIED is justified above.
        // SAFETY: the private copy outlives the tensor and matches its shape (reasons above).
        Ok(unsafe { initialized.finish() })
    }
}

/// A managed tensor of ABI `M` over `owner`'s bytes, whose context owns `owner`; flags unset.
fn initialize<M: ManagedTensorBase>(
    owner: Buffer,
    dtype: DLDataType,
    shape: &[i64],
) -> PyResult<dynamic::Initialized<M>> {
    let data = owner.as_ptr().cast_mut().cast::<std::ffi::c_void>();
    let mut initialized = Dynamic::compact(shape)
        .initialize_as::<M>(Box::new(owner))
        .map_err(|e| relay_error(ErrorKind::Relay, format!("DLPack export: {e}")))?;
    initialized
        .set_data(data)
        .set_device(DLDevice::CPU)
        .set_dtype(dtype)
        .set_byte_offset(0);
    Ok(initialized)
}

impl DlpackExporter for DenseTensor {
    fn device(&self) -> DLDevice {
        DLDevice::CPU
    }

    fn flags(&self) -> DlpackFlags {
        self.flags
    }

    fn prepare_export(&self, _py: Python<'_>, _request: &ExportRequest<'_>) -> PyResult<()> {
        Ok(()) // host memory: no stream to synchronize with
    }

    fn export_legacy(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensor>> {
        self.managed()
    }

    fn export_versioned(&self, _py: Python<'_>) -> PyResult<Managed<DLManagedTensorVersioned>> {
        self.managed()
    }
}

/// The bytes as a heap allocation that nothing else shares: `buffer` itself when it already is
/// one (a copy the dense layer just made for this call), else a fresh copy (of the mapping, say).
fn owned_copy(buffer: Buffer) -> Buffer {
    match buffer.into_mutable() {
        Ok(unique) => unique.into(),
        Err(shared) => {
            let mut copy = MutableBuffer::new(shared.len());
            copy.extend_from_slice(shared.as_slice());
            copy.into()
        }
    }
}

/// `__dlpack__` of a dense column: a `dltensor` / `dltensor_versioned` capsule on the host.
pub fn export(
    py: Python<'_>,
    dense: DenseArray,
    stream: Option<Bound<'_, PyAny>>,
    max_version: Option<(u32, u32)>,
    dl_device: Option<(i32, i32)>,
    copy: Option<bool>,
) -> PyResult<Py<PyAny>> {
    // Checked before any copy is made. dlpark would refuse too, with a bare BufferError; this
    // raises relay's (a BufferError as well) and says what to do instead.
    if let Some(device) = dl_device
        && device != HOST
    {
        return Err(relay_error(
            ErrorKind::Device,
            format!(
                "DLPack export to device {device:?} is not supported: relay_ml data lives in host \
                 memory (kDLCPU, device 0) and is not copied across devices; import it on the CPU \
                 and move the tensor there (e.g. torch.from_dlpack(column).to(\"cuda\"))"
            ),
        ));
    }
    if copy == Some(false)
        && let Some(reason) = &dense.copy_reason
    {
        // The caller refuses this already; kept so the export can never break copy=False.
        return Err(relay_error(
            ErrorKind::ZeroCopy,
            format!("DLPack export without a copy is not possible: {reason}"),
        ));
    }
    let DenseArray {
        buffer,
        dtype,
        shape,
        ..
    } = dense;
    let bytes_needed = shape
        .iter()
        .try_fold(dtype.item_size(), |bytes, &d| bytes.checked_mul(d))
        .filter(|&bytes| bytes <= buffer.len());
    let shape_i64 = shape
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<Vec<i64>, _>>();
    let (Some(_), Ok(shape_i64)) = (bytes_needed, shape_i64) else {
        // The dense layer guarantees neither happens; refuse rather than export a short buffer.
        return Err(relay_error(
            ErrorKind::Relay,
            format!(
                "DLPack export: a buffer of {} bytes does not hold shape {shape:?} of {dtype:?}",
                buffer.len()
            ),
        ));
    };

    // A copy asked for by the consumer is made here, so dlpark gets no copy request (its
    // exporter only does zero-copy exports and refuses copy=True). The device, if any, is the host
    // (checked above). `stream` means nothing on the host; dlpark keeps it for backends that sync.
    let request = ExportRequest::parse(
        stream.as_ref(),
        max_version,
        dl_device.map(|_| (1, 0)),
        None,
    )?;
    let tensor = DenseTensor {
        buffer,
        dtype: dl_dtype(dtype),
        shape: shape_i64,
        flags: match request.abi() {
            ExportAbi::Versioned => DlpackFlags::READ_ONLY,
            ExportAbi::Legacy => DlpackFlags::empty(),
        },
    };
    if copy == Some(true) {
        // dlpark's validation refuses IS_COPIED (it vouches for zero-copy exports only): check
        // the device and ABI without it, then wrap the copy in its capsule.
        request.validate_zero_copy(DLDevice::CPU, DlpackFlags::empty())?;
        return match request.abi() {
            ExportAbi::Versioned => Ok(tensor
                .into_copied::<DLManagedTensorVersioned>(py)?
                .into_pyobject(py)?
                .unbind()),
            ExportAbi::Legacy => Ok(tensor
                .into_copied::<DLManagedTensor>(py)?
                .into_pyobject(py)?
                .unbind()),
        };
    }
    export_dlpack(&tensor, py, request)
}
