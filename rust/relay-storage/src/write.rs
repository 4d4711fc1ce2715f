//! Writing Arrow IPC files that relay, NumPy, torch and JAX can map without copying.
//!
//! Every buffer starts at a multiple of 64 bytes in the file (`IpcWriteOptions::try_new(64,
//! false, V5)`): pyarrow's default of 8 makes JAX's `from_dlpack` copy. By default the whole
//! frame becomes one record batch, so each fixed-width column is one contiguous view.
//!
//! A file is never rewritten in place: a reader that mapped it would see its bytes change, or
//! die of SIGBUS if it shrank. The new file is written under a temporary name in the same folder,
//! flushed to disk (fsync), and renamed over the target; then the folder is synced so that the
//! rename itself survives a power cut. A crash leaves the old file (or none) and, at worst, a
//! stray temporary file whose name starts with `.` and ends with `.relay-tmp`.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::{concat, concat_batches};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::ipc::MetadataVersion;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use rayon::prelude::*;

use crate::error::{Result, StorageError};

/// Buffer alignment of the files relay writes. JAX copies buffers aligned to less than 64.
pub const IPC_ALIGNMENT: usize = 64;

/// Size of the buffer between the encoder and the file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Write options of every IPC message relay writes: 64-byte alignment, metadata version 5.
pub fn ipc_write_options() -> IpcWriteOptions {
    IpcWriteOptions::try_new(IPC_ALIGNMENT, false, MetadataVersion::V5)
        .expect("64 is a valid alignment for V5")
}

/// What a write put in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    pub rows: u64,
    pub batches: u64,
    pub bytes: u64,
}

pub(crate) fn io_error<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

pub(crate) fn write_failed(path: &Path) -> impl Fn(ArrowError) -> StorageError + '_ {
    move |error| StorageError::WriteFailed {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

/// Whether a column of this type (or a child of it) is dictionary-encoded.
pub(crate) fn has_dictionary(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, _) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_dictionary(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| has_dictionary(f.data_type())),
        DataType::Union(fields, _) => fields.iter().any(|(_, f)| has_dictionary(f.data_type())),
        DataType::RunEndEncoded(_, values) => has_dictionary(values.data_type()),
        _ => false,
    }
}

/// A file being written under a temporary name next to its final path. Dropped without
/// `commit`, it removes itself.
pub(crate) struct PendingFile {
    temp_path: PathBuf,
    file: Option<File>,
}

impl PendingFile {
    /// Creates `.NAME.PID-N.relay-tmp` in the folder of `path` (never an existing file).
    pub(crate) fn beside(path: &Path) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = path.file_name().ok_or_else(|| StorageError::Unsupported {
            path: path.to_owned(),
            reason: "the path names no file".into(),
        })?;
        let folder = parent_folder(path);
        let temp_path = folder.join(format!(
            ".{}.{}-{}.relay-tmp",
            name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => StorageError::NotFound {
                    path: folder.to_owned(),
                },
                _ => StorageError::Io {
                    path: temp_path.clone(),
                    action: "create",
                    source,
                },
            })?;
        Ok(PendingFile {
            temp_path,
            file: Some(file),
        })
    }

    pub(crate) fn file(&self) -> &File {
        self.file.as_ref().expect("the file is open until commit")
    }

    /// Flushes the data to disk and gives the file its final name: `rename` (replacing what was
    /// there) or, with `replace` false, `link` (failing with `AlreadyExists` when the path exists
    /// by then, so that a concurrent creator is never overwritten). Then syncs the folder.
    pub(crate) fn commit(
        mut self,
        path: &Path,
        replace: bool,
    ) -> std::result::Result<(), (Self, StorageError)> {
        let file = self.file.take().expect("the file is open until commit");
        if let Err(source) = file.sync_all() {
            return Err((self, io_error(path, "fsync")(source)));
        }
        drop(file);
        let named = if replace {
            std::fs::rename(&self.temp_path, path).map_err(io_error(path, "rename"))
        } else {
            match std::fs::hard_link(&self.temp_path, path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.temp_path);
                    Ok(())
                }
                Err(source) => Err(StorageError::Io {
                    path: path.to_owned(),
                    action: "link",
                    source,
                }),
            }
        };
        if let Err(error) = named {
            return Err((self, error));
        }
        self.temp_path = PathBuf::new();
        sync_folder(path);
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.temp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

fn parent_folder(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Makes a rename or a new name in the folder of `path` durable. Best effort: some file
/// systems refuse to fsync a directory, and the data itself is already synced.
pub(crate) fn sync_folder(path: &Path) {
    if let Ok(folder) = File::open(parent_folder(path)) {
        let _ = folder.sync_all();
    }
}

/// Feeds `batches` to `emit` as record batches of `rows_per_batch` rows (the last one may be
/// shorter); `None` makes one batch of all rows. Slices of one input batch are not copied; an
/// output batch that spans input batches is concatenated.
pub(crate) fn rechunk(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    rows_per_batch: Option<usize>,
    mut emit: impl FnMut(&RecordBatch) -> Result<(), ArrowError>,
) -> Result<(), ArrowError> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let size = rows_per_batch.unwrap_or(total).max(1);
    // Batches of a dictionary column must share one dictionary in an IPC file: concatenating
    // first merges the dictionaries of the input batches into one.
    let merged;
    let batches = if batches.len() > 1
        && schema
            .fields()
            .iter()
            .any(|f| has_dictionary(f.data_type()))
    {
        merged = [concat_batches(schema, batches)?];
        &merged[..]
    } else {
        batches
    };
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    let mut flush = |pending: &mut Vec<RecordBatch>| -> Result<(), ArrowError> {
        let batch = match pending.len() {
            0 => return Ok(()),
            1 => pending.pop().expect("one batch"),
            _ => concat_columns(schema, pending)?,
        };
        pending.clear();
        emit(&batch)
    };
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (size - pending_rows).min(batch.num_rows() - offset);
            pending.push(batch.slice(offset, take));
            pending_rows += take;
            offset += take;
            if pending_rows == size {
                flush(&mut pending)?;
                pending_rows = 0;
            }
        }
    }
    flush(&mut pending)
}

/// `batches` (of `schema`) as one record batch, its columns concatenated in parallel:
/// converting a 740 MB Parquet file into one record batch spent most of its time in a
/// single-threaded `concat_batches`.
fn concat_columns(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let columns = (0..schema.fields().len())
        .into_par_iter()
        .map(|column| {
            concat(
                &batches
                    .iter()
                    .map(|batch| batch.column(column).as_ref())
                    .collect::<Vec<_>>(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

/// Writes `batches` as a complete IPC file into `file` (from its current position, which must
/// be the start), in record batches of `rows_per_batch` rows (one batch when `None`).
pub(crate) fn write_ipc_to(
    path: &Path,
    file: &File,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    rows_per_batch: Option<usize>,
) -> Result<WriteSummary> {
    let failed = write_failed(path);
    let sink = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let mut writer =
        FileWriter::try_new_with_options(sink, schema, ipc_write_options()).map_err(&failed)?;
    let mut summary = WriteSummary {
        rows: 0,
        batches: 0,
        bytes: 0,
    };
    rechunk(schema, batches, rows_per_batch, |batch| {
        summary.rows += batch.num_rows() as u64;
        summary.batches += 1;
        writer.write(batch)
    })
    .map_err(&failed)?;
    writer.finish().map_err(&failed)?;
    writer
        .into_inner()
        .map_err(&failed)?
        .into_inner()
        .map_err(|e| io_error(path, "write")(e.into_error()))?;
    summary.bytes = file.metadata().map_err(io_error(path, "stat"))?.len();
    Ok(summary)
}

/// Writes `batches` (all of schema `schema`) to `path` as an Arrow IPC file with 64-byte aligned
/// buffers, in record batches of `rows_per_batch` rows (one batch of all rows when `None`).
///
/// The file is written beside `path` under a temporary name, synced and renamed over `path`:
/// readers of the old file keep it, and a crash never leaves a half-written `path`.
pub fn write_ipc_file(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    rows_per_batch: Option<usize>,
) -> Result<WriteSummary> {
    if rows_per_batch == Some(0) {
        return Err(StorageError::OutOfRange {
            what: "batch_size",
            detail: "it must be at least 1".into(),
        });
    }
    if path.is_dir() {
        return Err(StorageError::IsDirectory {
            path: path.to_owned(),
        });
    }
    let pending = PendingFile::beside(path)?;
    let summary = write_ipc_to(path, pending.file(), schema, batches, rows_per_batch)?;
    pending.commit(path, true).map_err(|(_, error)| error)?;
    Ok(summary)
}

/// An IPC file written batch by batch (for inputs too large to hold at once), under a temporary
/// name until `finish` syncs it and renames it over its path. Dropped unfinished, it removes the
/// temporary file and leaves the path as it was.
pub struct IpcFileWriter {
    path: PathBuf,
    pending: PendingFile,
    writer: Option<FileWriter<BufWriter<File>>>,
    summary: WriteSummary,
}

impl IpcFileWriter {
    pub fn create(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Err(StorageError::IsDirectory {
                path: path.to_owned(),
            });
        }
        Ok(IpcFileWriter {
            path: path.to_owned(),
            pending: PendingFile::beside(path)?,
            writer: None,
            summary: WriteSummary {
                rows: 0,
                batches: 0,
                bytes: 0,
            },
        })
    }

    /// Writes `batches` as one record batch (concatenated when there are several).
    pub fn write(&mut self, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
        let failed = write_failed(&self.path);
        let writer = match &mut self.writer {
            Some(writer) => {
                if writer.schema().fields() != schema.fields() {
                    return Err(StorageError::SchemaMismatch {
                        path: self.path.clone(),
                        file_schema: format!("{:?}", writer.schema().fields()),
                        frame_schema: format!("{:?}", schema.fields()),
                    });
                }
                writer
            }
            None => {
                let file = self
                    .pending
                    .file()
                    .try_clone()
                    .map_err(io_error(&self.path, "dup"))?;
                let sink = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
                self.writer.insert(
                    FileWriter::try_new_with_options(sink, schema, ipc_write_options())
                        .map_err(&failed)?,
                )
            }
        };
        let summary = &mut self.summary;
        rechunk(schema, batches, None, |batch| {
            summary.rows += batch.num_rows() as u64;
            summary.batches += 1;
            writer.write(batch)
        })
        .map_err(&failed)
    }

    /// Writes the footer, syncs and renames the file into place. A writer that wrote nothing
    /// writes a file of `schema` and no rows.
    pub fn finish(mut self, schema: &SchemaRef) -> Result<WriteSummary> {
        if self.writer.is_none() {
            self.write(schema, &[])?;
        }
        let path = self.path.clone();
        let failed = write_failed(&path);
        let mut writer = self.writer.take().expect("created above");
        writer.finish().map_err(&failed)?;
        writer
            .into_inner()
            .map_err(&failed)?
            .into_inner()
            .map_err(|e| io_error(&path, "write")(e.into_error()))?;
        self.summary.bytes = self
            .pending
            .file()
            .metadata()
            .map_err(io_error(&path, "stat"))?
            .len();
        let IpcFileWriter {
            pending, summary, ..
        } = self;
        pending.commit(&path, true).map_err(|(_, error)| error)?;
        Ok(summary)
    }
}
