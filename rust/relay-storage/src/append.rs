//! Appending record batches to an Arrow IPC file, crash-safely.
//!
//! # On-disk design
//!
//! An IPC file is `ARROW1\0\0`, the schema message, record batch messages, then the footer (a
//! flatbuffer listing the schema and the offset and length of every record batch), the footer's
//! length as a little-endian i32 and `ARROW1`. Readers, pyarrow's and relay's alike, start from
//! the last ten bytes. An append never changes a byte below the file's current end. It adds,
//! after that end:
//!
//! ```text
//! | old file, untouched ... old footer | len | ARROW1 | zeros to 64 | batch | batch | new footer | len | ARROW1 |
//!                                                    ^ 64-aligned   (fsync)                               (fsync)
//! ```
//!
//! The new footer lists the old file's record batches (where they are) and the new ones, so it
//! describes the whole file and every reader that looks at the end of the file finds it. The old
//! footer stays where it was, describing the file as it was before the append.
//!
//! The order of writes is what makes this crash-safe:
//! 1. The new record batches are written and synced (`fdatasync`), so that no footer can ever
//!    point at data that did not reach the disk.
//! 2. The new footer and trailer are written and synced. When `append` returns, both syncs are
//!    done: the rows survive a kill -9 and a power cut.
//!
//! A crash in between leaves a *torn tail*: the file ends with a prefix of what the append was
//! writing (after a power cut, possibly with holes), not with a valid footer. Opening such a file
//! (`IpcFile::open`, and the next `append`) finds the last complete footer by searching backwards
//! for `ARROW1` preceded by a plausible footer length and a footer flatbuffer that verifies, and
//! then validates that footer like any other (every block inside the data before it, messages
//! that parse, no overlaps). That is the footer of the last append that completed, so the file
//! reads as exactly the rows of the appends that returned (an append killed after its footer
//! was complete, but before it returned, counts as complete: appends are all or nothing). The
//! search only runs when the file's own trailer is not a valid footer, so a file that is corrupt
//! in some other way is reported, not silently read at an older footer. Bytes of a torn tail are
//! never overwritten: the next append starts after them (at the next multiple of 64), and its
//! footer simply does not mention them; pyarrow reads the file again from then on.
//!
//! Readers that mapped the file before an append keep their mapping of the old length: the bytes
//! they can see never change, and their footer (the old one) still describes them. The file
//! only grows, so their pages never go past its end (no SIGBUS).
//!
//! Appenders take an exclusive `flock` on the file, so two processes appending at once each add
//! complete segments. A file that does not exist yet is written whole under a temporary name and
//! linked into place, so a crash while creating it leaves no file rather than a broken one.
//!
//! Residual risks, stated plainly: a torn tail that happens to contain a complete, verifying
//! footer flatbuffer followed by its length and `ARROW1` (say, an Arrow file stored in a binary
//! column of the batch being appended) could be taken for the last footer; it must then still
//! describe valid messages at valid offsets of this file to be accepted.
//!
//! # Dictionary-encoded columns
//!
//! The IPC *file* format allows one dictionary per column for the whole file: pyarrow refuses
//! to read a file with a replacement dictionary, and delta dictionaries in files are not read by
//! every reader. So an append never writes a second dictionary for a column that has one: the
//! appended rows are re-encoded against the file's dictionary (their keys point at the file's
//! values), and a value the file's dictionary lacks is an error that names the column and the
//! value, before anything is written. The file stays readable by pyarrow, Polars and relay.
//! Growing a dictionary means rewriting the file (`relay.write`). A file without dictionaries
//! yet (created from an empty frame) gets them with its first non-empty append. Dictionaries
//! nested in other types (a list of dictionaries) are refused.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use std::collections::HashMap;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt64Array, make_array,
};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message,
};
use arrow::ipc::{self, Block, MetadataVersion};
use arrow::row::{RowConverter, SortField};

use crate::error::{Result, StorageError};
use crate::ipc::IpcFile;
use crate::types::type_name;
use crate::write::{
    IPC_ALIGNMENT, PendingFile, WriteSummary, has_dictionary, io_error, write_failed, write_ipc_to,
};

const MAGIC: &[u8; 6] = b"ARROW1";
/// Leading magic plus padding to 8 bytes.
const HEADER_LEN: usize = 8;
/// Footer length (i32) plus trailing magic.
const TRAILER_LEN: usize = 10;
/// How many earlier footers a torn file's recovery tries before it gives up.
pub(crate) const MAX_RECOVERY_CANDIDATES: usize = 64;

/// The footer that the trailer ending at `end` points to, if the trailer is well-formed and the
/// footer flatbuffer verifies.
fn footer_ending_at(bytes: &[u8], end: usize) -> Option<ipc::Footer<'_>> {
    if end < HEADER_LEN + TRAILER_LEN
        || end > bytes.len()
        || &bytes[end - MAGIC.len()..end] != MAGIC
    {
        return None;
    }
    let length = i32::from_le_bytes(
        bytes[end - TRAILER_LEN..end - MAGIC.len()]
            .try_into()
            .ok()?,
    );
    if length <= 0 || length as usize > end - HEADER_LEN - TRAILER_LEN {
        return None;
    }
    let start = end - TRAILER_LEN - length as usize;
    crate::nesting::root_as_footer(&bytes[start..end - TRAILER_LEN]).ok()
}

/// Whether `bytes` start like an Arrow IPC file but do not end with a footer that verifies: the
/// state a crash in the middle of an append leaves.
pub(crate) fn tail_is_torn(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && &bytes[..MAGIC.len()] == MAGIC
        && footer_ending_at(bytes, bytes.len()).is_none()
}

/// Ends of earlier trailers whose footers verify, the latest first: where a torn file may be
/// read up to. The caller still validates the footer's blocks.
pub(crate) fn earlier_footer_ends(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let searched = &bytes[..bytes.len().saturating_sub(1)];
    memchr::memmem::rfind_iter(searched, MAGIC)
        .map(|position| position + MAGIC.len())
        .filter(move |&end| footer_ending_at(bytes, end).is_some())
        .take(MAX_RECOVERY_CANDIDATES)
}

/// Where the record batch (and dictionary) messages written after the last intact footer end,
/// and how many rows those record batches hold: walked from the first multiple of 64 after the
/// footer that ends at `intact_end`, message by message, while each is complete and verifies.
fn messages_after(bytes: &[u8], intact_end: usize) -> (usize, u64) {
    let first = intact_end.next_multiple_of(IPC_ALIGNMENT) - intact_end;
    let (end, rows) = messages_in(&bytes[intact_end..], first);
    (intact_end + end, rows)
}

/// `messages_after` over `tail`, the bytes from the end of the last intact footer on, whose
/// first message would start at `first`.
fn messages_in(tail: &[u8], first: usize) -> (usize, u64) {
    let len = tail.len();
    let mut at = first;
    let mut rows = 0u64;
    while let Some(prefix) = tail.get(at..at + 8) {
        if prefix[..4] != [0xff; 4] {
            break;
        }
        let meta = i32::from_le_bytes(prefix[4..].try_into().expect("4 bytes"));
        let Some(meta_end) = usize::try_from(meta)
            .ok()
            .filter(|&meta| meta > 0)
            .map(|meta| at + 8 + meta)
            .filter(|&end| end <= len)
        else {
            break;
        };
        let Ok(message) = crate::nesting::root_as_message(&tail[at + 8..meta_end]) else {
            break;
        };
        let Some(end) = usize::try_from(message.bodyLength())
            .ok()
            .and_then(|body| meta_end.checked_add(body))
            .filter(|&end| end <= len)
        else {
            break;
        };
        if let Some(batch) = message.header_as_record_batch() {
            rows += u64::try_from(batch.length()).unwrap_or(0);
        }
        at = end;
    }
    (at.min(len), rows)
}

/// Where a message lies that the footer starting at `footer_start` should list but does not:
/// the first message of an append made after the last block the footer lists (which ends at
/// `listed_end`). A footer that verifies can still have been damaged into listing fewer record
/// batches (a vector length with a flipped bit); reading it would silently drop the last
/// appends. Only the bytes between `listed_end` and `footer_start` are searched: none in a file
/// written in one go.
pub(crate) fn unlisted_message(
    bytes: &[u8],
    listed_end: usize,
    footer_start: usize,
) -> Option<usize> {
    let before_footer = bytes.get(..footer_start)?;
    let between = before_footer.get(listed_end..)?;
    let intact_end = memchr::memmem::rfind_iter(between, MAGIC)
        .map(|position| listed_end + position + MAGIC.len())
        .find(|&end| footer_ending_at(before_footer, end).is_some())?;
    let first = intact_end.next_multiple_of(IPC_ALIGNMENT);
    let (messages_end, _) = messages_after(before_footer, intact_end);
    (messages_end > first).then_some(first)
}

/// For a file that does not end with a footer that verifies (`tail_is_torn`): where it still
/// ends with a complete footer, one that was damaged after it was written, the offset of that
/// footer and what is wrong with it. None for a torn tail, which recovery may skip.
///
/// An append writes its footer, the footer's length and the magic in one write, after its
/// record batches are on disk. So a file that ends with the magic got its whole footer, and a
/// file whose record batch messages (read from the last intact footer on) end exactly where the
/// trailer's length says a footer of that length starts got its whole footer and length: in
/// both cases, a footer that does not verify was damaged, and reading the file at an earlier
/// footer would silently drop the last append. An interrupted append ends anywhere before
/// that: inside its record batches, or inside its footer, where the last ten bytes are no
/// trailer.
pub(crate) fn damaged_final_footer(bytes: &[u8]) -> Option<(usize, String)> {
    let len = bytes.len();
    if len < HEADER_LEN + TRAILER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let length = i32::from_le_bytes(
        bytes[len - TRAILER_LEN..len - MAGIC.len()]
            .try_into()
            .expect("4 bytes"),
    );
    let footer_start = usize::try_from(length)
        .ok()
        .filter(|&length| length > 0 && length <= len - HEADER_LEN - TRAILER_LEN)
        .map(|length| len - TRAILER_LEN - length);
    if &bytes[len - MAGIC.len()..] == MAGIC {
        return Some(match footer_start {
            Some(start) => {
                let reason = match crate::nesting::root_as_footer(&bytes[start..len - TRAILER_LEN])
                {
                    // Not damage: a schema nested deeper than relay reads, refused as such
                    // when the footer is read.
                    Err(flatbuffers::InvalidFlatbuffer::DepthLimitReached) => return None,
                    Err(error) => crate::nesting::flatbuffer_error(&error),
                    Ok(_) => "it verifies".into(),
                };
                (
                    start,
                    format!("the footer ({length} bytes) is not a valid flatbuffer: {reason}"),
                )
            }
            None => (
                len - TRAILER_LEN,
                format!(
                    "the trailer gives the footer a length of {length} bytes, impossible for a file of {len} bytes"
                ),
            ),
        });
    }
    let start = footer_start?;
    let intact_end = earlier_footer_ends(bytes).next()?;
    let (messages_end, _) = messages_after(bytes, intact_end);
    (messages_end == start).then(|| {
        (
            len - MAGIC.len(),
            format!(
                "the magic bytes after the footer read {:?}, not \"ARROW1\"",
                bytes[len - MAGIC.len()..].escape_ascii().to_string()
            ),
        )
    })
}

/// What `repair_ipc_file` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSummary {
    /// Rows the file holds after the repair.
    pub rows: u64,
    /// Rows of complete record batches after the last intact footer, dropped by the repair
    /// (the rows of the append whose footer was damaged, as far as they can be told).
    pub rows_dropped: u64,
    /// Bytes dropped from the end of the file.
    pub bytes_dropped: u64,
}

/// Rewrites an Arrow IPC file that does not end with a valid footer (a damaged last footer, or
/// a torn tail) as its bytes up to its last intact footer: what the file was after the last
/// append whose footer survived. The shortened file replaces the old one by rename, so readers
/// that mapped it keep their bytes. A file that opens as it is is left alone.
///
/// Takes the appenders' lock, so no append runs meanwhile.
pub fn repair_ipc_file(path: &Path) -> Result<RepairSummary> {
    let file = File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => StorageError::NotFound {
            path: path.to_owned(),
        },
        _ => io_error(path, "open")(source),
    })?;
    let locked = LockedFile::lock(file, path)?;
    if !still_at_path(&locked.file, path)? {
        drop(locked);
        return repair_ipc_file(path);
    }
    let size = locked
        .file
        .metadata()
        .map_err(io_error(path, "stat"))?
        .len();
    match IpcFile::open(path) {
        Ok(intact) => {
            // A torn tail opens at its last complete footer: cut it off as well.
            let kept = intact.mapped_range().len() as u64;
            if kept == size {
                return Ok(RepairSummary {
                    rows: intact.num_rows(),
                    rows_dropped: 0,
                    bytes_dropped: 0,
                });
            }
        }
        Err(StorageError::CorruptFile { .. }) => {}
        Err(other) => return Err(other),
    }
    let recovered = IpcFile::open_at_last_intact_footer(path)?;
    let kept = recovered.mapped_range().len() as u64;
    let rows = recovered.num_rows();
    drop(recovered);
    let file = &locked.file;
    let mut tail = vec![0u8; (size - kept) as usize];
    file.read_exact_at(&mut tail, kept)
        .map_err(io_error(path, "read"))?;
    let first = (kept.next_multiple_of(IPC_ALIGNMENT as u64) - kept) as usize;
    let (_, rows_dropped) = messages_in(&tail, first);
    drop(tail);
    let pending = crate::write::PendingFile::beside(path)?;
    let mut head = std::io::Read::take(file, kept);
    let copied = std::io::copy(&mut head, &mut pending.file()).map_err(io_error(path, "copy"))?;
    if copied != kept {
        return Err(io_error(path, "read")(
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    pending.commit(path, true).map_err(|(_, error)| error)?;
    drop(locked);
    Ok(RepairSummary {
        rows,
        rows_dropped,
        bytes_dropped: size - kept,
    })
}

/// `file`, locked exclusively (`flock`) until it is dropped.
struct LockedFile {
    file: File,
}

impl LockedFile {
    fn lock(file: File, path: &Path) -> Result<Self> {
        loop {
            // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
            let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if status == 0 {
                return Ok(LockedFile { file });
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_error(path, "lock")(error));
            }
        }
    }
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        // SAFETY: as in `lock`; closing the descriptor would release the lock anyway.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Whether `path` still names the open `file` (the same device and inode).
fn still_at_path(file: &File, path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let open = file.metadata().map_err(io_error(path, "stat"))?;
    Ok(match std::fs::metadata(path) {
        Ok(named) => named.dev() == open.dev() && named.ino() == open.ino(),
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => return Err(io_error(path, "stat")(source)),
    })
}

/// Writes at increasing offsets of a file with `pwrite`, wherever the file's position is.
struct PositionedWriter<'a> {
    file: &'a File,
    offset: u64,
}

impl Write for PositionedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write_at(buf, self.offset)?;
        self.offset += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn describe_schema(schema: &Schema) -> String {
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let nullable = if f.is_nullable() { "" } else { " not null" };
            format!("{}: {}{nullable}", f.name(), type_name(f.data_type()))
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// `batches` as record batches of `file_schema`, or the mismatch naming both schemas. Column
/// names and types must match; a nullable column may go into a non-nullable one when it has no
/// nulls.
fn conform(
    path: &Path,
    file_schema: &SchemaRef,
    frame_schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<RecordBatch>> {
    let mismatch = |detail: Option<String>| StorageError::SchemaMismatch {
        path: path.to_owned(),
        file_schema: describe_schema(file_schema),
        frame_schema: describe_schema(frame_schema)
            + &detail.map(|d| format!(" ({d})")).unwrap_or_default(),
    };
    let same_columns = file_schema.fields().len() == frame_schema.fields().len()
        && file_schema
            .fields()
            .iter()
            .zip(frame_schema.fields())
            .all(|(file, frame)| {
                file.name() == frame.name() && file.data_type() == frame.data_type()
            });
    if !same_columns {
        return Err(mismatch(None));
    }
    batches
        .iter()
        .map(|batch| {
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(
                file_schema.clone(),
                batch.columns().to_vec(),
                &options,
            )
            .map_err(|e| mismatch(Some(e.to_string())))
        })
        .collect()
}

/// A column with a dictionary below its top level (a list or struct of dictionaries, a
/// dictionary of dictionaries): append re-encodes only top-level dictionary columns.
fn unsupported_dictionary(path: &Path, schema: &Schema) -> Option<StorageError> {
    let column = schema.fields().iter().find(|f| match f.data_type() {
        DataType::Dictionary(_, values) => has_dictionary(values),
        other => has_dictionary(other),
    })?;
    Some(StorageError::Unsupported {
        path: path.to_owned(),
        reason: format!(
            "append supports dictionary-encoded columns only at the top level (column {:?} is {}); cast it to \
             its value type first",
            column.name(),
            type_name(column.data_type())
        ),
    })
}

/// `batch` with each dictionary column re-encoded against the file's dictionary of that column
/// (`file_dictionaries[c]`, the values), so that the one dictionary the file holds per column
/// describes the appended rows too. A value that the file's dictionary lacks is an error naming
/// the column and the value.
fn encode_against(
    path: &Path,
    batch: &RecordBatch,
    file_dictionaries: &[Option<ArrayRef>],
) -> Result<RecordBatch> {
    let failed = write_failed(path);
    let mut columns = batch.columns().to_vec();
    for (index, file_values) in file_dictionaries.iter().enumerate() {
        let Some(file_values) = file_values else {
            continue;
        };
        let column = &batch.columns()[index];
        let DataType::Dictionary(key_type, _) = column.data_type() else {
            continue;
        };
        let dictionary = column.as_any_dictionary();
        let converter = RowConverter::new(vec![SortField::new(file_values.data_type().clone())])
            .map_err(&failed)?;
        let file_rows = converter
            .convert_columns(std::slice::from_ref(file_values))
            .map_err(&failed)?;
        let mut position: HashMap<&[u8], u64> = HashMap::with_capacity(file_rows.num_rows());
        for (at, row) in file_rows.iter().enumerate() {
            position.entry(row.data()).or_insert(at as u64);
        }
        let new_values = dictionary.values();
        let new_rows = converter
            .convert_columns(std::slice::from_ref(new_values))
            .map_err(&failed)?;
        let mapping: Vec<Option<u64>> = new_rows
            .iter()
            .map(|row| position.get(row.data()).copied())
            .collect();
        let keys = dictionary.normalized_keys();
        let key_nulls = dictionary.keys().logical_nulls();
        let mut remapped = Vec::with_capacity(keys.len());
        for (row, &key) in keys.iter().enumerate() {
            if key_nulls.as_ref().is_some_and(|nulls| nulls.is_null(row)) {
                remapped.push(None);
                continue;
            }
            match mapping.get(key).copied().flatten() {
                Some(at) => remapped.push(Some(at)),
                None => {
                    let value =
                        arrow::util::display::array_value_to_string(new_values.as_ref(), key)
                            .unwrap_or_else(|_| "?".into());
                    return Err(StorageError::Unsupported {
                        path: path.to_owned(),
                        reason: format!(
                            "cannot append: column {:?} holds the value {value:?}, which is not in the file's \
                             dictionary for that column; an Arrow IPC file keeps one dictionary per column, so \
                             appended rows may only use values already in it (rewrite the file with relay.write \
                             to add values)",
                            batch.schema().field(index).name()
                        ),
                    });
                }
            }
        }
        let keys = arrow::compute::cast(&UInt64Array::from(remapped), key_type).map_err(&failed)?;
        let data = keys
            .to_data()
            .into_builder()
            .data_type(column.data_type().clone())
            .child_data(vec![file_values.to_data()])
            .build()
            .map_err(&failed)?;
        columns[index] = make_array(data);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(batch.schema(), columns, &options).map_err(failed)
}

/// Appends `batches` (of schema `schema`) to the Arrow IPC file at `path` as one record batch,
/// creating the file when it does not exist. See the module documentation for the guarantees.
///
/// A schema that differs from the file's raises `SchemaMismatch` and writes nothing.
pub fn append_ipc_file(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<WriteSummary> {
    if let Some(error) = unsupported_dictionary(path, schema) {
        return Err(error);
    }
    if path.is_dir() {
        return Err(StorageError::IsDirectory {
            path: path.to_owned(),
        });
    }
    if !path.exists() {
        let pending = PendingFile::beside(path)?;
        let summary = write_ipc_to(path, pending.file(), schema, batches, None)?;
        match pending.commit(path, false) {
            Ok(()) => return Ok(summary),
            // Created by someone else in the meantime: append to theirs.
            Err((_, StorageError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err((_, error)) => return Err(error),
        }
    }
    let file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound {
                path: path.to_owned(),
            },
            _ => io_error(path, "open for appending")(source),
        })?;
    let locked = LockedFile::lock(file, path)?;
    if !still_at_path(&locked.file, path)? {
        // Replaced (by a repair or a rewrite) while this append waited for the lock: appending
        // to the file it had opened would add rows nobody can see.
        drop(locked);
        return append_ipc_file(path, schema, batches);
    }
    let file = &locked.file;
    let size = file.metadata().map_err(io_error(path, "stat"))?.len();
    if size == 0 {
        // An empty file (made by `touch` or `tempfile`): nobody can have mapped anything of it.
        let summary = write_ipc_to(path, file, schema, batches, None)?;
        file.sync_all().map_err(io_error(path, "fsync"))?;
        return Ok(summary);
    }

    // The file as it is, at its last complete footer (recovering a torn tail).
    let existing = IpcFile::open(path)?;
    if existing.format() == crate::ipc::IpcFormat::Stream {
        return Err(StorageError::Unsupported {
            path: path.to_owned(),
            reason: "cannot append to an Arrow IPC stream file: append adds record batches and a new footer \
                     to an Arrow IPC file (`relay convert` rewrites the stream as one)"
                .into(),
        });
    }
    let footer_end = existing.mapped_range().len() as u64;
    let version = footer_version(path, file, footer_end)?;
    let file_schema = existing.schema().clone();
    if let Some(error) = unsupported_dictionary(path, &file_schema) {
        return Err(error);
    }
    let conformed = conform(path, &file_schema, schema, batches)?;
    let options = match version {
        MetadataVersion::V4 | MetadataVersion::V5 => {
            IpcWriteOptions::try_new(IPC_ALIGNMENT, false, version)
        }
        other => {
            return Err(StorageError::Unsupported {
                path: path.to_owned(),
                reason: format!("append writes metadata version V4 or V5; the file has {other:?}"),
            });
        }
    }
    .map_err(write_failed(path))?;
    let mut blocks: Vec<Block> = existing.batches().iter().map(|info| info.block).collect();
    let mut dictionary_blocks: Vec<Block> = existing.dictionary_blocks().to_vec();
    // The file's dictionary of each dictionary column, when it has them (see the module docs).
    let has_dictionaries = file_schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(_, _)));
    let file_dictionaries: Option<Vec<Option<ArrayRef>>> =
        if has_dictionaries && !dictionary_blocks.is_empty() {
            if existing.batches().is_empty() {
                return Err(StorageError::Unsupported {
                path: path.to_owned(),
                reason:
                    "cannot append: the file has dictionaries but no record batch to read them with"
                        .into(),
            });
            }
            let dictionaries = file_schema
                .fields()
                .iter()
                .enumerate()
                .map(|(index, field)| match field.data_type() {
                    DataType::Dictionary(_, _) => {
                        let column = existing.decode_column(0, index)?.array;
                        Ok(Some(column.as_any_dictionary().values().clone()))
                    }
                    _ => Ok(None),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(dictionaries)
        } else {
            None
        };
    drop(existing);

    // One record batch per append (the frame's chunks concatenated), empty appends add nothing.
    let mut new_batches = Vec::new();
    crate::write::rechunk(&file_schema, &conformed, None, |batch| {
        new_batches.push(batch.clone());
        Ok(())
    })
    .map_err(write_failed(path))?;
    if let Some(file_dictionaries) = &file_dictionaries {
        new_batches = new_batches
            .iter()
            .map(|batch| encode_against(path, batch, file_dictionaries))
            .collect::<Result<_>>()?;
    }
    let rows: u64 = new_batches.iter().map(|b| b.num_rows() as u64).sum();
    if rows == 0 {
        return Ok(WriteSummary {
            rows: 0,
            batches: 0,
            bytes: size,
        });
    }

    // 1. Zeros up to a multiple of 64 after the current end, then the record batches; synced.
    let start = size.next_multiple_of(IPC_ALIGNMENT as u64);
    let mut writer = BufWriter::with_capacity(1 << 20, PositionedWriter { file, offset: size });
    writer
        .write_all(&vec![0u8; (start - size) as usize])
        .map_err(io_error(path, "write"))?;
    let generator = IpcDataGenerator::default();
    let mut tracker = DictionaryTracker::new(true);
    // Encoding the schema gives each dictionary field its id (in field order), as a writer does.
    ipc::convert::IpcSchemaEncoder::new()
        .with_dictionary_tracker(&mut tracker)
        .schema_to_fb(&file_schema);
    let mut context = IpcWriteContext::default();
    let mut offset = start;
    for batch in &new_batches {
        let (dictionaries, message) = generator
            .encode(batch, &mut tracker, &options, &mut context)
            .map_err(write_failed(path))?;
        // With dictionaries in the file, the batch was re-encoded against them: nothing to add.
        // Without, these are the file's first (and only) dictionaries.
        if file_dictionaries.is_none() {
            for dictionary in dictionaries {
                let (meta_len, body_len) =
                    write_message(&mut writer, dictionary, &options).map_err(write_failed(path))?;
                dictionary_blocks.push(Block::new(offset as i64, meta_len as i32, body_len as i64));
                offset += (meta_len + body_len) as u64;
            }
        }
        let (meta_len, body_len) =
            write_message(&mut writer, message, &options).map_err(write_failed(path))?;
        blocks.push(Block::new(offset as i64, meta_len as i32, body_len as i64));
        offset += (meta_len + body_len) as u64;
    }
    writer.flush().map_err(io_error(path, "write"))?;
    drop(writer);
    file.sync_data().map_err(io_error(path, "fsync"))?;

    // 2. The footer of the whole file and the trailer; synced.
    let mut tail = footer_bytes(&file_schema, version, &dictionary_blocks, &blocks);
    let footer_len = tail.len() as i32;
    tail.extend_from_slice(&footer_len.to_le_bytes());
    tail.extend_from_slice(MAGIC);
    file.write_all_at(&tail, offset)
        .map_err(io_error(path, "write"))?;
    file.sync_data().map_err(io_error(path, "fsync"))?;
    Ok(WriteSummary {
        rows,
        batches: new_batches.len() as u64,
        bytes: offset + tail.len() as u64,
    })
}

/// The metadata version in the footer that ends at `end`.
fn footer_version(path: &Path, file: &File, end: u64) -> Result<MetadataVersion> {
    let corrupt = |reason: &str| StorageError::CorruptFile {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut trailer = [0u8; TRAILER_LEN];
    let trailer_start = end
        .checked_sub(TRAILER_LEN as u64)
        .ok_or_else(|| corrupt("no trailer"))?;
    file.read_exact_at(&mut trailer, trailer_start)
        .map_err(io_error(path, "read"))?;
    let length = i32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let length = u64::try_from(length).map_err(|_| corrupt("negative footer length"))?;
    let footer_start = trailer_start
        .checked_sub(length)
        .ok_or_else(|| corrupt("footer longer than the file"))?;
    let mut footer = vec![0u8; length as usize];
    file.read_exact_at(&mut footer, footer_start)
        .map_err(io_error(path, "read"))?;
    let footer = crate::nesting::root_as_footer(&footer).map_err(|e| {
        corrupt(&format!(
            "footer is not a valid flatbuffer: {}",
            crate::nesting::flatbuffer_error(&e)
        ))
    })?;
    Ok(footer.version())
}

/// A footer flatbuffer for a file of `schema` whose dictionary batches are `dictionary_blocks`
/// and record batches `blocks`. Dictionary ids are numbered in field order, as arrow-rs's and
/// pyarrow's writers number them (and as the dictionary batches of the file carry them).
fn footer_bytes(
    schema: &Schema,
    version: MetadataVersion,
    dictionary_blocks: &[Block],
    blocks: &[Block],
) -> Vec<u8> {
    let mut builder = flatbuffers::FlatBufferBuilder::new();
    let dictionaries = builder.create_vector(dictionary_blocks);
    let record_batches = builder.create_vector(blocks);
    let mut tracker = DictionaryTracker::new(true);
    let schema = ipc::convert::IpcSchemaEncoder::new()
        .with_dictionary_tracker(&mut tracker)
        .schema_to_fb_offset(&mut builder, schema);
    let root = {
        let mut footer = ipc::FooterBuilder::new(&mut builder);
        footer.add_version(version);
        footer.add_schema(schema);
        footer.add_dictionaries(dictionaries);
        footer.add_recordBatches(record_batches);
        footer.finish()
    };
    builder.finish(root, None);
    builder.finished_data().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    fn batch(start: i64, rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter((start..start + rows).map(|i| (i % 7 != 3).then_some(i)));
        let names = StringArray::from_iter((start..start + rows).map(|i| Some(format!("row {i}"))));
        RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)]).unwrap()
    }

    fn temp_path(name: &str) -> crate::test_support::TempFile {
        crate::test_support::TempFile::new(&format!("relay-append-{name}"), "data.arrow")
    }

    fn ids(file: &IpcFile) -> Vec<Option<i64>> {
        (0..file.batches().len())
            .flat_map(|b| {
                let column = file.decode_column(b, 0).unwrap().array;
                let ids = column
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone();
                ids.iter().collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn appends_grow_the_file_and_keep_earlier_bytes() {
        let path = temp_path("grow");
        let first = batch(0, 10);
        append_ipc_file(&path, &first.schema(), std::slice::from_ref(&first)).unwrap();
        let before = std::fs::read(&path).unwrap();
        let reader = IpcFile::open(&path).unwrap();
        let second = batch(10, 5);
        append_ipc_file(&path, &second.schema(), &[second]).unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(&after[..before.len()], &before[..]);
        let file = IpcFile::open(&path).unwrap();
        assert_eq!(file.num_rows(), 15);
        assert_eq!(
            ids(&file),
            batch(0, 15)
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .iter()
                .collect::<Vec<_>>()
        );
        // A reader that opened the file before still reads its rows.
        assert_eq!(ids(&reader).len(), 10);
        for info in file.batches() {
            assert_eq!(info.block.offset() % 64, 0);
        }
    }

    #[test]
    fn a_torn_tail_opens_at_the_last_complete_footer() {
        let path = temp_path("torn");
        let first = batch(0, 100);
        append_ipc_file(&path, &first.schema(), std::slice::from_ref(&first)).unwrap();
        let complete = std::fs::read(&path).unwrap();
        append_ipc_file(&path, &first.schema(), &[batch(100, 100)]).unwrap();
        let grown = std::fs::read(&path).unwrap();
        for cut in [
            complete.len() + 1,
            complete.len() + 70,
            grown.len() - 11,
            grown.len() - 1,
        ] {
            std::fs::write(&path, &grown[..cut]).unwrap();
            assert!(tail_is_torn(&grown[..cut]));
            let file = IpcFile::open(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(file.num_rows(), 100, "cut at {cut}");
            // The next append goes after the torn bytes and makes the file whole again.
            append_ipc_file(&path, &first.schema(), &[batch(100, 3)]).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert!(!tail_is_torn(&bytes));
            assert_eq!(IpcFile::open(&path).unwrap().num_rows(), 103);
        }
    }

    #[test]
    fn every_cut_inside_an_append_opens_at_the_previous_footer() {
        let path = temp_path("every-cut");
        let first = batch(0, 100);
        append_ipc_file(&path, &first.schema(), std::slice::from_ref(&first)).unwrap();
        let complete = std::fs::read(&path).unwrap();
        append_ipc_file(&path, &first.schema(), &[batch(100, 100)]).unwrap();
        let grown = std::fs::read(&path).unwrap();
        for cut in complete.len() + 1..grown.len() {
            assert!(tail_is_torn(&grown[..cut]), "cut at {cut}");
            assert_eq!(damaged_final_footer(&grown[..cut]), None, "cut at {cut}");
            std::fs::write(&path, &grown[..cut]).unwrap();
            let file = IpcFile::open(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(file.num_rows(), 100, "cut at {cut}");
        }
    }

    /// A file of three appends of 20 rows, and where its last footer (with its trailer) lies.
    fn three_appends(name: &str) -> (crate::test_support::TempFile, Vec<u8>, usize) {
        let path = temp_path(name);
        for start in [0, 20, 40] {
            let rows = batch(start, 20);
            append_ipc_file(&path, &rows.schema(), &[rows]).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        let footer_len =
            i32::from_le_bytes(bytes[len - TRAILER_LEN..len - 6].try_into().unwrap()) as usize;
        (path, bytes, len - TRAILER_LEN - footer_len)
    }

    #[test]
    fn a_damaged_last_footer_is_refused_never_read_at_an_earlier_one() {
        let (path, bytes, footer_start) = three_appends("damaged");
        let mut refused = 0;
        for at in footer_start..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= flip;
                std::fs::write(&path, &damaged).unwrap();
                match IpcFile::open(&path) {
                    // A flip the footer does not notice (padding, an unused field) must still
                    // give every row.
                    Ok(file) => assert_eq!(file.num_rows(), 60, "byte {at} ^ {flip:#x}"),
                    Err(StorageError::CorruptFile { .. }) => refused += 1,
                    Err(other) => panic!("byte {at} ^ {flip:#x}: {other}"),
                }
            }
        }
        assert!(refused > (bytes.len() - footer_start), "{refused}");
        // The offset named is the footer's (or, for a damaged magic, the magic's).
        let mut damaged = bytes.clone();
        damaged[footer_start + 1] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        let error = IpcFile::open(&path).unwrap_err().to_string();
        assert!(
            error.contains(&format!("byte offset {footer_start}")),
            "{error}"
        );
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let error = IpcFile::open(&path).unwrap_err().to_string();
        assert!(
            error.contains(&format!("byte offset {}", last - 5)),
            "{error}"
        );
        // Appending to it is refused as well: the file stays as it is.
        let more = batch(60, 5);
        assert!(append_ipc_file(&path, &more.schema(), &[more]).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), damaged);
    }

    #[test]
    fn repair_drops_the_append_whose_footer_is_damaged_and_says_so() {
        let (path, bytes, footer_start) = three_appends("repair");
        let intact = repair_ipc_file(&path).unwrap();
        assert_eq!(
            intact,
            RepairSummary {
                rows: 60,
                rows_dropped: 0,
                bytes_dropped: 0
            }
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        for at in [
            footer_start + 1,
            footer_start + 40,
            bytes.len() - 8,
            bytes.len() - 1,
        ] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0xff;
            std::fs::write(&path, &damaged).unwrap();
            assert!(IpcFile::open(&path).is_err(), "byte {at}");
            let summary = repair_ipc_file(&path).unwrap();
            assert_eq!(summary.rows, 40, "byte {at}");
            assert_eq!(summary.rows_dropped, 20, "byte {at}");
            let repaired = std::fs::read(&path).unwrap();
            assert_eq!(summary.bytes_dropped, (bytes.len() - repaired.len()) as u64);
            assert_eq!(&repaired[..], &bytes[..repaired.len()]);
            let file = IpcFile::open(&path).unwrap();
            assert_eq!(ids(&file), ids_of(0, 40));
            // The repaired file takes appends again.
            let more = batch(40, 20);
            append_ipc_file(&path, &more.schema(), &[more]).unwrap();
            assert_eq!(ids(&IpcFile::open(&path).unwrap()), ids_of(0, 60));
        }

        // A torn tail is cut off as well, dropping the rows of its complete messages.
        let mut torn = bytes.clone();
        torn.truncate(footer_start + 3);
        std::fs::write(&path, &torn).unwrap();
        let summary = repair_ipc_file(&path).unwrap();
        assert_eq!((summary.rows, summary.rows_dropped), (40, 20));
    }

    fn ids_of(start: i64, rows: i64) -> Vec<Option<i64>> {
        batch(start, rows)
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .iter()
            .collect()
    }

    fn cities(values: &[&str], keys: &[Option<i32>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "city",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        )]));
        let column = arrow::array::DictionaryArray::<arrow::datatypes::Int32Type>::new(
            arrow::array::Int32Array::from(keys.to_vec()),
            Arc::new(StringArray::from(values.to_vec())),
        );
        RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap()
    }

    fn city_values(file: &IpcFile) -> Vec<Option<String>> {
        (0..file.batches().len())
            .flat_map(|b| {
                let column = file.decode_column(b, 0).unwrap().array;
                let strings = arrow::compute::cast(&column, &DataType::Utf8).unwrap();
                strings
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn dictionary_columns_are_re_encoded_against_the_files_dictionary() {
        let path = temp_path("dictionary");
        let first = cities(
            &["oslo", "rome", "lima"],
            &[Some(0), Some(1), None, Some(2)],
        );
        append_ipc_file(&path, &first.schema(), std::slice::from_ref(&first)).unwrap();
        // Another dictionary (other order, fewer values) for the same column.
        let second = cities(&["lima", "oslo"], &[Some(1), Some(0), Some(0), None]);
        append_ipc_file(&path, &second.schema(), std::slice::from_ref(&second)).unwrap();
        let file = IpcFile::open(&path).unwrap();
        assert_eq!(file.dictionary_blocks().len(), 1);
        let expected = ["oslo", "rome", "", "lima", "oslo", "lima", "lima", ""];
        let expected: Vec<Option<String>> = expected
            .iter()
            .map(|v| (!v.is_empty()).then(|| v.to_string()))
            .collect();
        assert_eq!(city_values(&file), expected);
        // A value the file's dictionary lacks: refused, nothing written.
        let before = std::fs::read(&path).unwrap();
        let third = cities(&["oslo", "paris"], &[Some(0), Some(1)]);
        let error = append_ipc_file(&path, &third.schema(), &[third]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("\"city\"") && message.contains("\"paris\""),
            "{message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_file_without_rows_gets_its_dictionary_from_the_first_append() {
        let path = temp_path("dictionary-empty");
        let empty = cities(&[], &[]);
        append_ipc_file(&path, &empty.schema(), std::slice::from_ref(&empty)).unwrap();
        let rows = cities(&["a", "b"], &[Some(1), Some(0)]);
        append_ipc_file(&path, &rows.schema(), std::slice::from_ref(&rows)).unwrap();
        let more = cities(&["b"], &[Some(0)]);
        append_ipc_file(&path, &more.schema(), std::slice::from_ref(&more)).unwrap();
        let file = IpcFile::open(&path).unwrap();
        assert_eq!(file.dictionary_blocks().len(), 1);
        let expected: Vec<Option<String>> = ["b", "a", "b"]
            .iter()
            .map(|v| Some(v.to_string()))
            .collect();
        assert_eq!(city_values(&file), expected);
    }

    #[test]
    fn a_schema_mismatch_writes_nothing() {
        let path = temp_path("mismatch");
        let first = batch(0, 4);
        append_ipc_file(&path, &first.schema(), &[first]).unwrap();
        let before = std::fs::read(&path).unwrap();
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, true)])),
            vec![Arc::new(arrow::array::Int32Array::from(vec![1]))],
        )
        .unwrap();
        let error = append_ipc_file(&path, &other.schema(), &[other]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("id: int64") && message.contains("id: int32"),
            "{message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
