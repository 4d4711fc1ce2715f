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
//! describe valid messages at valid offsets of this file to be accepted. Dictionary-encoded
//! columns are not supported yet (an IPC file may hold one dictionary per column, so appended
//! batches would need dictionary deltas).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message};
use arrow::ipc::{self, Block, MetadataVersion};

use crate::error::{Result, StorageError};
use crate::ipc::IpcFile;
use crate::types::type_name;
use crate::write::{IPC_ALIGNMENT, PendingFile, WriteSummary, has_dictionary, io_error, write_failed, write_ipc_to};

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
    if end < HEADER_LEN + TRAILER_LEN || end > bytes.len() || &bytes[end - MAGIC.len()..end] != MAGIC {
        return None;
    }
    let length = i32::from_le_bytes(bytes[end - TRAILER_LEN..end - MAGIC.len()].try_into().ok()?);
    if length <= 0 || length as usize > end - HEADER_LEN - TRAILER_LEN {
        return None;
    }
    let start = end - TRAILER_LEN - length as usize;
    ipc::root_as_footer(&bytes[start..end - TRAILER_LEN]).ok()
}

/// Whether `bytes` start like an Arrow IPC file but do not end with a footer that verifies: the
/// state a crash in the middle of an append leaves.
pub(crate) fn tail_is_torn(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && &bytes[..MAGIC.len()] == MAGIC && footer_ending_at(bytes, bytes.len()).is_none()
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
fn conform(path: &Path, file_schema: &SchemaRef, frame_schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let mismatch = |detail: Option<String>| StorageError::SchemaMismatch {
        path: path.to_owned(),
        file_schema: describe_schema(file_schema),
        frame_schema: describe_schema(frame_schema) + &detail.map(|d| format!(" ({d})")).unwrap_or_default(),
    };
    let same_columns = file_schema.fields().len() == frame_schema.fields().len()
        && file_schema
            .fields()
            .iter()
            .zip(frame_schema.fields())
            .all(|(file, frame)| file.name() == frame.name() && file.data_type() == frame.data_type());
    if !same_columns {
        return Err(mismatch(None));
    }
    batches
        .iter()
        .map(|batch| {
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(file_schema.clone(), batch.columns().to_vec(), &options)
                .map_err(|e| mismatch(Some(e.to_string())))
        })
        .collect()
}

fn unsupported_dictionary(path: &Path, schema: &Schema) -> Option<StorageError> {
    let column = schema.fields().iter().find(|f| has_dictionary(f.data_type()))?;
    Some(StorageError::Unsupported {
        path: path.to_owned(),
        reason: format!(
            "append does not support dictionary-encoded columns yet (column {:?} is {}); cast it to its value type first",
            column.name(),
            type_name(column.data_type())
        ),
    })
}

/// Appends `batches` (of schema `schema`) to the Arrow IPC file at `path` as one record batch,
/// creating the file when it does not exist. See the module documentation for the guarantees.
///
/// A schema that differs from the file's raises `SchemaMismatch` and writes nothing.
pub fn append_ipc_file(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<WriteSummary> {
    if let Some(error) = unsupported_dictionary(path, schema) {
        return Err(error);
    }
    if path.is_dir() {
        return Err(StorageError::IsDirectory { path: path.to_owned() });
    }
    if !path.exists() {
        let pending = PendingFile::beside(path)?;
        let summary = write_ipc_to(path, pending.file(), schema, batches, None)?;
        match pending.commit(path, false) {
            Ok(()) => return Ok(summary),
            // Created by someone else in the meantime: append to theirs.
            Err((_, StorageError::Io { source, .. })) if source.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err((_, error)) => return Err(error),
        }
    }
    let file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound { path: path.to_owned() },
            _ => io_error(path, "open for appending")(source),
        })?;
    let locked = LockedFile::lock(file, path)?;
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
        MetadataVersion::V4 | MetadataVersion::V5 => IpcWriteOptions::try_new(IPC_ALIGNMENT, false, version),
        other => {
            return Err(StorageError::Unsupported {
                path: path.to_owned(),
                reason: format!("append writes metadata version V4 or V5; the file has {other:?}"),
            });
        }
    }
    .map_err(write_failed(path))?;
    let mut blocks: Vec<Block> = existing.batches().iter().map(|info| info.block).collect();
    drop(existing);

    // One record batch per append (the frame's chunks concatenated), empty appends add nothing.
    let mut new_batches = Vec::new();
    crate::write::rechunk(&file_schema, &conformed, None, |batch| {
        new_batches.push(batch.clone());
        Ok(())
    })
    .map_err(write_failed(path))?;
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
    let mut context = IpcWriteContext::default();
    let mut offset = start;
    for batch in &new_batches {
        let (dictionaries, message) = generator
            .encode(batch, &mut tracker, &options, &mut context)
            .map_err(write_failed(path))?;
        debug_assert!(dictionaries.is_empty(), "dictionary columns are refused above");
        let (meta_len, body_len) = write_message(&mut writer, message, &options).map_err(write_failed(path))?;
        blocks.push(Block::new(offset as i64, meta_len as i32, body_len as i64));
        offset += (meta_len + body_len) as u64;
    }
    writer.flush().map_err(io_error(path, "write"))?;
    drop(writer);
    file.sync_data().map_err(io_error(path, "fsync"))?;

    // 2. The footer of the whole file and the trailer; synced.
    let mut tail = footer_bytes(&file_schema, version, &blocks);
    let footer_len = tail.len() as i32;
    tail.extend_from_slice(&footer_len.to_le_bytes());
    tail.extend_from_slice(MAGIC);
    file.write_all_at(&tail, offset).map_err(io_error(path, "write"))?;
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
    let trailer_start = end.checked_sub(TRAILER_LEN as u64).ok_or_else(|| corrupt("no trailer"))?;
    file.read_exact_at(&mut trailer, trailer_start).map_err(io_error(path, "read"))?;
    let length = i32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    let length = u64::try_from(length).map_err(|_| corrupt("negative footer length"))?;
    let footer_start = trailer_start.checked_sub(length).ok_or_else(|| corrupt("footer longer than the file"))?;
    let mut footer = vec![0u8; length as usize];
    file.read_exact_at(&mut footer, footer_start).map_err(io_error(path, "read"))?;
    let footer = ipc::root_as_footer(&footer).map_err(|e| corrupt(&format!("footer is not a valid flatbuffer: {e}")))?;
    Ok(footer.version())
}

/// A footer flatbuffer for a file of `schema` (without dictionaries) whose record batches are
/// `blocks`.
fn footer_bytes(schema: &Schema, version: MetadataVersion, blocks: &[Block]) -> Vec<u8> {
    let mut builder = flatbuffers::FlatBufferBuilder::new();
    let dictionaries = builder.create_vector::<Block>(&[]);
    let record_batches = builder.create_vector(blocks);
    let schema = ipc::convert::IpcSchemaEncoder::new().schema_to_fb_offset(&mut builder, schema);
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

    fn temp_path(name: &str) -> std::path::PathBuf {
        let folder = std::env::temp_dir().join(format!("relay-append-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        folder.join("data.arrow")
    }

    fn ids(file: &IpcFile) -> Vec<Option<i64>> {
        (0..file.batches().len())
            .flat_map(|b| {
                let column = file.decode_column(b, 0).unwrap().array;
                let ids = column.as_any().downcast_ref::<Int64Array>().unwrap().clone();
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
        assert_eq!(ids(&file), batch(0, 15).column(0).as_any().downcast_ref::<Int64Array>().unwrap().iter().collect::<Vec<_>>());
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
        for cut in [complete.len() + 1, complete.len() + 70, grown.len() - 11, grown.len() - 1] {
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
        assert!(message.contains("id: int64") && message.contains("id: int32"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
