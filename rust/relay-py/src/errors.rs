//! The one mapping from Rust errors to Python exceptions.
//!
//! The exception classes live in `relay_ml/errors.py` (they need multiple inheritance:
//! `RelayError` plus the builtin users catch); this module looks them up by name.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use relay_storage::{StorageError, fault};

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
        StorageError::NotFound { .. } | StorageError::NoMatch { .. } => ErrorKind::FileNotFound,
        StorageError::IsDirectory { .. }
        | StorageError::NotArrowFile { .. }
        | StorageError::NoDataFiles { .. } => ErrorKind::NotArrowFile,
        StorageError::WrongFormat { .. } => ErrorKind::WrongFormat,
        StorageError::CorruptFile { .. } | StorageError::Malformed { .. } => ErrorKind::CorruptFile,
        StorageError::FileChanged { .. } => ErrorKind::FileChanged,
        StorageError::ColumnNotFound { .. } => ErrorKind::ColumnNotFound,
        StorageError::OutOfRange { .. }
        | StorageError::SchemaMismatch { .. }
        | StorageError::Unsupported { .. }
        | StorageError::InvalidSource { .. } => ErrorKind::Value,
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

thread_local! {
    /// How many `guarded` calls are running on this thread: a panic inside one is reported as
    /// an exception, so the panic hook stays silent for it.
    static GUARDED_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Installs (once) a panic hook that prints nothing for a panic that `guarded` turns into an
/// exception: one on a thread inside `guarded`, or on a worker of the engine's thread pool
/// (rayon hands a worker's panic to the thread that waits for it). Any other panic is printed
/// by the hook that was there before.
fn install_quiet_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let guarded = GUARDED_CALLS.with(|calls| calls.get() > 0);
            if !guarded && rayon::current_thread_index().is_none() {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, the body of a binding that calls into the engine; a panic in it (a bug, or an
/// arrow-rs assertion on input relay did not check) becomes a `RelayError` naming `operation`
/// instead of a `PanicException`, which derives from `BaseException` and would escape
/// `except Exception`.
///
/// A file truncated while `f` read its mapping (the read saw zeros past the cut instead of
/// killing the process, see `relay_storage::fault`) makes the call fail with `FileChangedError`,
/// whatever it returned.
pub fn guarded<T>(operation: &str, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    install_quiet_panic_hook();
    let faults = fault::faults();
    let fault_guard = fault::Guard::enter();
    GUARDED_CALLS.with(|calls| calls.set(calls.get() + 1));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED_CALLS.with(|calls| calls.set(calls.get() - 1));
    drop(fault_guard);
    fault::check_since(faults).map_err(storage_error)?;
    outcome.unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(relay_error(
            ErrorKind::Relay,
            format!("{operation} failed inside relay (an internal error): {detail}"),
        ))
    })
}

/// `Python::detach` (engine work with the GIL released) under `guarded`: a panic in the work
/// becomes a `RelayError` naming `operation`.
pub trait DetachGuarded {
    fn detach_guarded<T: pyo3::marker::Ungil>(
        self,
        operation: &str,
        work: impl FnOnce() -> T + pyo3::marker::Ungil,
    ) -> PyResult<T>;
}

impl DetachGuarded for Python<'_> {
    fn detach_guarded<T: pyo3::marker::Ungil>(
        self,
        operation: &str,
        work: impl FnOnce() -> T + pyo3::marker::Ungil,
    ) -> PyResult<T> {
        guarded(operation, || Ok(self.detach(work)))
    }
}
