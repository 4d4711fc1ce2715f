//! Files whose rows are decoded into memory when read: Parquet, CSV, NDJSON.
//!
//! Unlike an Arrow IPC file, no column of these formats can be a view of the file: each read
//! decodes. What the formats share is what a scan needs from them, so the planner and the
//! executor handle every one the same way: a schema known after opening, independent pieces
//! (Parquet row groups; byte ranges of a CSV or NDJSON file) that can be decoded in parallel,
//! and per piece statistics where the file keeps them (Parquet), so pieces that cannot hold a
//! matching row are never decoded.
//!
//! The readers' shared parts live here too: positional reads of the opened file
//! (`PositionalFile`), the checks of `read_piece`'s arguments, the projection of decoded batches
//! onto the columns asked for, and the conversion of a decoder panic into an error.

use std::fmt::Debug;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Schema, SchemaRef};

use crate::error::{Result, StorageError};
use crate::stats::ColumnStats;
use crate::view::batches_in_ranges;
use crate::write::io_error;

/// An opened file of a format that is decoded when read. Opening reads only what the schema
/// and the piece layout need (Parquet: the footer; CSV/NDJSON: the rows schema inference
/// samples), never the whole file.
pub trait DecodedFile: Send + Sync + Debug {
    fn path(&self) -> &Path;

    /// The format's name as users write it: "parquet", "csv", "ndjson".
    fn format(&self) -> &'static str;

    fn schema(&self) -> SchemaRef;

    /// Pieces that are decoded independently, in row order.
    fn num_pieces(&self) -> usize;

    /// Rows of `piece` when the file says so without decoding it (Parquet row groups).
    fn piece_rows(&self, piece: usize) -> Option<u64>;

    /// Statistics the file stores for `column` (an index into `schema()`) in `piece`; None when
    /// it stores none. `min`/`max` follow `ColumnStats`: one-element arrays of the column type.
    fn piece_stats(&self, piece: usize, column: usize) -> Option<ColumnStats>;

    /// Decodes the `columns` (indices into `schema()`, in that order) of `piece` into record
    /// batches of at most `batch_size` rows whose schema is the projected schema. Errors name
    /// the file and the place (row group, line) that could not be decoded.
    fn read_piece(
        &self,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
    ) -> Result<Vec<RecordBatch>>;

    /// Per data page of `column` in `piece`, in row order: its row count and the statistics
    /// stored for it (None for a page without usable ones). None when the file has no page
    /// index for the column (only Parquet files written with one do).
    fn page_stats(&self, _piece: usize, _column: usize) -> Option<Vec<(u64, Option<ColumnStats>)>> {
        None
    }

    /// `read_piece` one batch at a time, of only the rows of `piece` in `rows` when given
    /// (ascending, disjoint ranges of row numbers within the piece, which come out one after
    /// another). A caller that reduces each batch (a filter) before asking for the next holds
    /// one decoded batch at a time.
    fn piece_batches(
        &self,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
        rows: Option<&[Range<u64>]>,
    ) -> Result<PieceBatches<'_>> {
        Ok(batches_already_read(
            self.read_piece(piece, columns, batch_size)?,
            rows,
        ))
    }

    /// Which of `columns` the file can decode at chosen rows of `piece` only
    /// (`selected_column`); none unless the format says otherwise.
    fn selectable_columns(&self, _piece: usize, _columns: &[usize]) -> Vec<usize> {
        Vec::new()
    }

    /// A reader of `column` of `piece` (one of `selectable_columns`) that decodes it only at
    /// the rows a caller selects, batch after batch.
    fn selected_column(
        &self,
        piece: usize,
        _column: usize,
    ) -> Result<Box<dyn SelectedColumnReader + '_>> {
        Err(StorageError::Unsupported {
            path: self.path().to_owned(),
            reason: format!(
                "piece {piece}: {} columns are decoded whole, not at chosen rows",
                self.format()
            ),
        })
    }
}

/// A column of one piece decoded only at the rows a caller selects, walking through the
/// piece's rows in order (`DecodedFile::selected_column`).
pub trait SelectedColumnReader: Send {
    /// The values at `selected` (ascending offsets into the next `rows` rows of the piece);
    /// the reader then moves past those rows.
    fn next_rows(&mut self, rows: usize, selected: &[u32]) -> Result<ArrayRef>;
}

/// Batches already in memory (decoded, or views of a mapping) as `PieceBatches`, cut to `rows`
/// when given.
pub(crate) fn batches_already_read(
    batches: Vec<RecordBatch>,
    rows: Option<&[Range<u64>]>,
) -> PieceBatches<'static> {
    let batches = match rows {
        Some(rows) => batches_in_ranges(&batches, rows),
        None => batches,
    };
    Box::new(batches.into_iter().map(Ok))
}

/// The batches of one piece, decoded as they are asked for (`DecodedFile::piece_batches`).
pub type PieceBatches<'a> = Box<dyn Iterator<Item = Result<RecordBatch>> + 'a>;

/// The columns a decoder reads for a `read_piece` of `columns`: in file order, each once (the
/// order and uniqueness arrow-rs's decoders give their output columns).
pub(crate) fn decoded_roots(columns: &[usize]) -> Vec<usize> {
    let mut roots = columns.to_vec();
    roots.sort_unstable();
    roots.dedup();
    roots
}

/// What turns decoded batches, whose columns are `roots` (`decoded_roots` of `columns`,
/// possibly with columns added to count rows), into the batches `read_piece` returns for
/// `columns` (indices into the file's schema, in the order asked, repeats allowed).
pub(crate) struct Projection {
    schema: SchemaRef,
    /// Per output column, its position among the decoded ones.
    positions: Vec<usize>,
}

impl Projection {
    pub(crate) fn new(schema: &Schema, columns: &[usize], roots: &[usize]) -> Result<Projection> {
        let projected = schema
            .project(columns)
            .map_err(|error| StorageError::OutOfRange {
                what: "column",
                detail: error.to_string(),
            })?;
        let positions = columns
            .iter()
            .map(|column| {
                roots
                    .binary_search(column)
                    .expect("every column is decoded")
            })
            .collect();
        Ok(Projection {
            schema: Arc::new(projected),
            positions,
        })
    }

    /// `decoded` projected; `place` names the piece in errors.
    pub(crate) fn apply(
        &self,
        path: &Path,
        format: &'static str,
        place: &dyn Fn() -> String,
        decoded: RecordBatch,
    ) -> Result<RecordBatch> {
        let arrays = self
            .positions
            .iter()
            .map(|&i| decoded.column(i).clone())
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(decoded.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options).map_err(|error| {
            StorageError::Malformed {
                path: path.to_owned(),
                format,
                place: place(),
                reason: error.to_string(),
            }
        })
    }
}

/// The batches `read_piece` returns for `columns` from `decoded` batches of `roots` (see
/// `Projection`); `place` names the piece in errors.
pub(crate) fn project_decoded(
    path: &Path,
    format: &'static str,
    place: &dyn Fn() -> String,
    schema: &Schema,
    columns: &[usize],
    roots: &[usize],
    decoded: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    let projection = Projection::new(schema, columns, roots)?;
    decoded
        .into_iter()
        .map(|batch| projection.apply(path, format, place, batch))
        .collect()
}

/// Checks a piece index and column indices passed to `DecodedFile::read_piece`.
pub(crate) fn check_piece_and_columns(
    path: &Path,
    pieces: usize,
    piece: usize,
    num_columns: usize,
    columns: &[usize],
) -> Result<()> {
    if piece >= pieces {
        return Err(StorageError::OutOfRange {
            what: "piece",
            detail: format!(
                "{}: piece {piece} of a file with {pieces} pieces",
                path.display()
            ),
        });
    }
    if let Some(column) = columns.iter().find(|&&column| column >= num_columns) {
        return Err(StorageError::OutOfRange {
            what: "column",
            detail: format!(
                "{}: column {column} of a file with {num_columns} columns",
                path.display()
            ),
        });
    }
    Ok(())
}

/// Runs a decoder call, turning a panic into a `Malformed` error at `place()`.
pub(crate) fn catch_decoder_panic<T>(
    path: &Path,
    format: &'static str,
    place: impl FnOnce() -> String,
    decode: impl FnOnce() -> Result<T>,
) -> Result<T> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown error");
        Err(StorageError::Malformed {
            path: path.to_owned(),
            format,
            place: place(),
            reason: format!("the decoder failed: {detail}"),
        })
    })
}

/// An opened file read by `pread` at explicit offsets, with its length at open: clones share
/// the descriptor but no file offset, so threads read concurrently.
#[derive(Clone)]
pub(crate) struct PositionalFile {
    file: Arc<File>,
    /// The file's length when it was opened: reads stop there.
    pub(crate) len: u64,
}

impl std::fmt::Debug for PositionalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PositionalFile")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl PositionalFile {
    /// Opens a regular file; `format` names what a directory or a device is not.
    pub(crate) fn open(path: &Path, format: &'static str) -> Result<PositionalFile> {
        let metadata = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound {
                path: path.to_owned(),
            },
            _ => io_error(path, "stat")(source),
        })?;
        if metadata.is_dir() {
            return Err(StorageError::WrongFormat {
                path: path.to_owned(),
                format,
                reason: "it is a directory".into(),
            });
        }
        if !metadata.is_file() {
            // Opening a FIFO for reading blocks until a writer comes.
            return Err(StorageError::WrongFormat {
                path: path.to_owned(),
                format,
                reason: "it is not a regular file (a FIFO, socket or device)".into(),
            });
        }
        let file = File::open(path).map_err(io_error(path, "open"))?;
        let len = file.metadata().map_err(io_error(path, "stat"))?.len();
        Ok(PositionalFile {
            file: Arc::new(file),
            len,
        })
    }

    /// Fills `buffer` from `offset`, or fails with an error that names `path`.
    pub(crate) fn read_exact_at(&self, buffer: &mut [u8], offset: u64, path: &Path) -> Result<()> {
        self.file
            .read_exact_at(buffer, offset)
            .map_err(io_error(path, "read"))
    }

    /// `length` bytes from `offset` in a new buffer, which the reads fill without zeroing it
    /// first (zeroing would be a pass over every page buffer of a Parquet read); the caller
    /// words the error.
    pub(crate) fn read_vec(&self, offset: u64, length: usize) -> std::io::Result<Vec<u8>> {
        let mut buffer: Vec<u8> = Vec::with_capacity(length);
        let mut filled = 0;
        while filled < length {
            let position = i64::try_from(offset + filled as u64).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "offset beyond the largest file",
                )
            })?;
            // SAFETY: the destination is the buffer's spare capacity from `filled` on, and
            // pread writes at most `length - filled` bytes there.
            let read = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    buffer.as_mut_ptr().add(filled).cast(),
                    length - filled,
                    position,
                )
            };
            match read {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                read if read < 0 => {
                    let error = std::io::Error::last_os_error();
                    if error.kind() != std::io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
                read => filled += read as usize,
            }
        }
        // SAFETY: the loop ran until pread had written all `length` bytes.
        unsafe { buffer.set_len(length) };
        Ok(buffer)
    }

    /// A reader of the bytes from `start` to the length at open.
    pub(crate) fn reader_from(&self, start: u64) -> PositionalReader {
        PositionalReader {
            file: self.file.clone(),
            offset: start,
            end: self.len,
        }
    }

    /// `FileChanged` when the file no longer has the length it had when opened.
    pub(crate) fn check_unchanged(&self, path: &Path) -> Result<()> {
        let actual = self.file.metadata().map(|m| m.len()).unwrap_or(self.len);
        if actual != self.len {
            return Err(StorageError::FileChanged {
                path: path.to_owned(),
                expected: self.len,
                actual,
            });
        }
        Ok(())
    }
}

/// A reader from an offset onward, by positional reads.
pub(crate) struct PositionalReader {
    file: Arc<File>,
    offset: u64,
    end: u64,
}

impl Read for PositionalReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end.saturating_sub(self.offset);
        let take = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        if take == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buffer[..take], self.offset)?;
        self.offset += read as u64;
        Ok(read)
    }
}
