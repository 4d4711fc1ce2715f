//! The one mapping from Rust errors to Python exceptions.
//!
//! The exception classes live in `relay_ml/errors.py` (they need multiple inheritance:
//! `RelayError` plus the builtin users catch); this module looks them up by name.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use relay_storage::StorageError;

/// Names of the classes in `relay_ml.errors`.
#[derive(Debug, Clone, Copy)]
pub enum ErrorKind {
    FileNotFound,
    NotArrowFile,
    WrongFormat,
    CorruptFile,
    FileChanged,
    ColumnNotFound,
    Type,
    Value,
    Export,
    ZeroCopy,
    Device,
    Io,
    Relay,
}

impl ErrorKind {
    fn class_name(self) -> &'static str {
        match self {
            Self::FileNotFound => "RelayFileNotFoundError",
            Self::NotArrowFile => "NotArrowFileError",
            Self::WrongFormat => "WrongFormatError",
            Self::CorruptFile => "CorruptFileError",
            Self::FileChanged => "FileChangedError",
            Self::ColumnNotFound => "ColumnNotFoundError",
            Self::Type => "RelayTypeError",
            Self::Value => "RelayValueError",
            Self::Export => "ExportError",
            Self::ZeroCopy => "ZeroCopyError",
            Self::Device => "DeviceError",
            Self::Io => "RelayIOError",
            Self::Relay => "RelayError",
        }
    }
}

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// A Python exception of class `kind` with `message`.
pub fn relay_error(kind: ErrorKind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        let class = ERRORS_MODULE
            .get_or_try_init(py, || py.import("relay_ml.errors").map(Bound::unbind))
            .and_then(|module| module.bind(py).getattr(kind.class_name()))
            .and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from));
        match class {
            Ok(class) => PyErr::from_type(class, (message,)),
            Err(lookup_error) => PyRuntimeError::new_err(format!(
                "{message} (and relay_ml.errors could not be imported: {lookup_error})"
            )),
        }
    })
}

pub fn storage_error(error: StorageError) -> PyErr {
    let kind = match &error {
        StorageError::NotFound { .. } => ErrorKind::FileNotFound,
        StorageError::IsDirectory { .. } | StorageError::NotArrowFile { .. } => {
            ErrorKind::NotArrowFile
        }
        StorageError::WrongFormat { .. } => ErrorKind::WrongFormat,
        StorageError::CorruptFile { .. } | StorageError::Malformed { .. } => ErrorKind::CorruptFile,
        StorageError::FileChanged { .. } => ErrorKind::FileChanged,
        StorageError::ColumnNotFound { .. } => ErrorKind::ColumnNotFound,
        StorageError::OutOfRange { .. }
        | StorageError::SchemaMismatch { .. }
        | StorageError::Unsupported { .. } => ErrorKind::Value,
        StorageError::WriteFailed { .. } => ErrorKind::Io,
        StorageError::Io { .. } => ErrorKind::Io,
    };
    relay_error(kind, error.to_string())
}

/// `?`-friendly conversion for storage results.
pub trait IntoPyResult<T> {
    fn into_py_result(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for relay_storage::Result<T> {
    fn into_py_result(self) -> PyResult<T> {
        self.map_err(storage_error)
    }
}
