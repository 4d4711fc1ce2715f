use std::path::PathBuf;

/// Everything that can go wrong while opening or reading a mapped file.
///
/// Every variant names the file (and the column where there is one), so the
/// message is useful on its own when it reaches Python.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: no such file", path = .path.display())]
    NotFound { path: PathBuf },

    #[error("{path}: is a directory, not an Arrow IPC file", path = .path.display())]
    IsDirectory { path: PathBuf },

    #[error("{path}: {action} failed: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },

    #[error("{path}: not an Arrow IPC file: {reason}", path = .path.display())]
    NotArrowFile { path: PathBuf, reason: String },

    #[error("{path}: corrupt Arrow IPC file: {reason}", path = .path.display())]
    CorruptFile { path: PathBuf, reason: String },

    /// A file opened as `format` (Parquet, CSV, NDJSON) that is not one: no magic bytes, a
    /// directory, too short to hold the format's footer.
    #[error("{path}: not a {format} file: {reason}", path = .path.display())]
    WrongFormat {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },

    /// A file of a decoded format whose bytes cannot be decoded; `place` says where (the
    /// footer, a row group and column, a line and column).
    #[error("{path}: malformed {format} at {place}: {reason}", path = .path.display())]
    Malformed {
        path: PathBuf,
        format: &'static str,
        place: String,
        reason: String,
    },

    #[error(
        "{path}: the file changed size from {expected} to {actual} bytes since it was opened; \
         files that are being read must be replaced by rename, never truncated in place",
        path = .path.display()
    )]
    FileChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error("column {name:?} not found in {path}; available columns: {available}", path = .path.display())]
    ColumnNotFound {
        path: PathBuf,
        name: String,
        available: String,
    },

    #[error(
        "{path}: cannot append: the frame's schema differs from the file's\n  file:  {file_schema}\n  frame: {frame_schema}",
        path = .path.display()
    )]
    SchemaMismatch {
        path: PathBuf,
        file_schema: String,
        frame_schema: String,
    },

    #[error("{path}: {reason}", path = .path.display())]
    Unsupported { path: PathBuf, reason: String },

    #[error("{path}: writing failed: {reason}", path = .path.display())]
    WriteFailed { path: PathBuf, reason: String },

    /// A source `scan` cannot read as given: an empty list, a file of no known format,
    /// files under different partition folders, a malformed pattern.
    #[error("{what}: {reason}")]
    InvalidSource { what: String, reason: String },

    #[error("{pattern}: no file matches the pattern")]
    NoMatch { pattern: String },

    #[error(
        "{path}: is a directory that holds no data files (Arrow IPC, Parquet, CSV or NDJSON)",
        path = .path.display()
    )]
    NoDataFiles { path: PathBuf },

    #[error("{what} is out of range: {detail}")]
    OutOfRange { what: &'static str, detail: String },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
