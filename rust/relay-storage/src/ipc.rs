//! Arrow IPC *file* format, read straight from a private memory mapping (the stream format is
//! walked by `stream.rs` into the same batch descriptions).
//!
//! Record batches compressed with LZ4_FRAME or ZSTD (per batch, as the format allows) are
//! decompressed into the heap on each decode, never cached, and every such column carries a
//! copy reason naming the codec. A buffer not aligned to its type (pyarrow aligns to 8 bytes,
//! decimals and string views need 16) is realigned into the heap once and kept with the
//! opening, within a process-wide budget of an eighth of physical memory. The uncompressed
//! length each compressed buffer announces is checked first (`check_compressed_buffers`):
//! arrow-rs allocates it before decompressing.
//!
//! Opening reads the trailing magic, the footer and each record batch's message header (for
//! its row count); no column bytes are touched, so the cost does not depend on the file size.
//! Columns are decoded on demand, one column of one record batch at a time, by arrow-rs's
//! `RecordBatchDecoder` over an arrow `Buffer` that owns the mapping: the resulting arrays point
//! into the mapping and keep it alive.
//!
//! The file is untrusted input: every offset and length in the footer is checked against the
//! file size before it is sliced (and footer blocks may not overlap), flatbuffers are verified,
//! each batch's buffers and field nodes are checked against its body before arrow-rs reads them,
//! and arrow-rs's array validation stays on. Anything arrow-rs still panics on (it asserts, for
//! one, that an offsets buffer's length is a multiple of its width) is caught and reported as a
//! corrupt file.
//!
//! # The view contract
//!
//! (For files on storage that can change under the process, `IpcAccess::InMemory` reads the
//! file into memory once instead of mapping it: every point below about truncation and
//! in-place writes then does not apply, at the cost of the file's size in anonymous memory.)
//!
//! Each `IpcFile::open` (each `scan()`) maps the file anew, privately (MAP_PRIVATE), and no
//! mapping is ever shared between two openings, even of an unchanged file:
//!
//! - A fresh `scan()` always returns the file's bytes. Exports of mapped columns are marked
//!   read-only, but torch ignores DLPack's read-only flag (and `torch.frombuffer`, ctypes and
//!   `setflags` tricks get around the others), so a user can write into an exported view. The
//!   write lands in a copy-on-write page of *that* mapping only: it never reaches the file,
//!   the page cache or any other opening. A registry that handed one opening's mapping to
//!   later `scan()`s of the same file would show such writes to them as if the file held them,
//!   and a mapping cannot tell afterwards whether an export was written through.
//! - Frames derived from one scan (filter, select, batches, further exports) share its
//!   mapping, and its decoded-column cache: they see what was written through that scan's
//!   exports, as NumPy views of one array see each other's writes.
//! - Openings still share the page cache (clean file pages back every private mapping until
//!   one is written), and the batch statistics of an unchanged file, which are computed from
//!   an opening of their own that is never exported (see `stats.rs`). What each opening builds
//!   for itself: its page tables (filled on first touch; the kernel maps up to 16 pages of a
//!   file per read fault) and the columns it decoded and validated. Opening still reads only
//!   the footer and the message headers.
//! - A file truncated while mapped raises SIGBUS on access. Relay's own reads check the file
//!   size first (`check_unchanged`) and raise `FileChanged`; a read already under way when
//!   the file is cut (a loader gathers for a whole epoch from columns decoded once) reads
//!   zeros past the cut and fails with `FileChanged` (see `fault.rs`). A view the user already
//!   holds, read by NumPy or torch, cannot be guarded, as with pyarrow's and NumPy's memory
//!   maps.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use arrow::array::ArrayRef;
use arrow::buffer::Buffer;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::ipc::reader::{RecordBatchDecoder, read_dictionary_impl};
use arrow::ipc::{self, Block, CompressionType, MetadataVersion};
use memmap2::{MmapMut, MmapOptions};

use crate::error::{Result, StorageError};
use crate::fault;

const MAGIC: &[u8; 6] = b"ARROW1";
/// Leading magic plus padding to 8 bytes.
const HEADER_LEN: usize = 8;
/// Footer length (i32) plus trailing magic.
const TRAILER_LEN: usize = 10;

/// A private copy-on-write mapping of a whole file.
///
/// Private (MAP_PRIVATE) so that an exported tensor written in place (torch ignores DLPack's
/// read-only flag) changes only this mapping's copy of the page, never the file nor another
/// opening of it (see "The view contract" above). Mapped with
/// MAP_NORESERVE so that a file larger than RAM + swap can be mapped under the kernel's default
/// overcommit heuristic: clean pages stay in the page cache and cost no anonymous memory.
pub struct Mapping {
    /// Dropped first: the range must leave the fault registry before it is unmapped.
    _registration: fault::Registration,
    mmap: MmapMut,
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.mmap
    }
}

/// What the file system says about a file's contents: which file it is (device and inode), its
/// size, and when its data and inode last changed (nanoseconds). Writers replace files by rename
/// (a new inode) or append (a new size); an in-place write changes the times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl FileIdentity {
    fn of(metadata: &Metadata) -> Self {
        let ns = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len(),
            modified_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            changed_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Same file, same size, same times: nothing was written since.
    fn same_contents(&self, other: &FileIdentity) -> bool {
        self == other
    }
}

/// A file whose last write is this recent when it is opened shares no statistics with other
/// openings (see `stats.rs`): a file system with coarse timestamps (a jiffy on ext4 without
/// multigrain timestamps, one or two seconds on others) could give a second write in place the
/// same times, and statistics of the first contents would then prune batches of the second
/// (the "racily clean" case of git's index).
const SETTLED_AFTER: Duration = Duration::from_secs(2);

/// What `IpcFile::open_with` does with a file that does not end with a valid footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Reads a torn tail at the last complete footer; refuses a damaged complete footer.
    TornTail,
    /// Reads a damaged complete footer's file at the last intact footer too.
    DamagedFooter,
}

/// Columns decoded and validated once per mapping, while the file's times stay the same.
#[derive(Default)]
struct DecodedCache {
    /// The identity of the file when the entries were decoded.
    identity: Option<FileIdentity>,
    columns: HashMap<(usize, usize), DecodedColumn>,
    /// Bytes that the kept realigned columns hold outside the mapping, counted in
    /// `REALIGNED_BYTES` until the entries go.
    realigned_bytes: usize,
    /// Record batches whose whole header was checked against their body (see
    /// `check_batch_header`) while the file had that identity.
    checked_headers: std::collections::HashSet<usize>,
}

impl DecodedCache {
    fn clear(&mut self) {
        self.columns.clear();
        self.checked_headers.clear();
        REALIGNED_BYTES.fetch_sub(self.realigned_bytes, Ordering::Relaxed);
        self.realigned_bytes = 0;
    }
}

impl Drop for DecodedCache {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Calls `f` with every buffer of `data` and of its children, validity bitmaps included.
pub fn for_each_buffer(data: &arrow::array::ArrayData, f: &mut impl FnMut(&Buffer)) {
    data.buffers().iter().for_each(&mut *f);
    if let Some(nulls) = data.nulls() {
        f(nulls.buffer());
    }
    for child in data.child_data() {
        for_each_buffer(child, f);
    }
}

/// Bytes held by the realigned columns that all openings in the process keep.
static REALIGNED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// How many bytes of realigned columns the process keeps: an eighth of physical memory.
/// Beyond it, a misaligned column is realigned again on each read, as a compressed one is.
fn realigned_budget() -> usize {
    usize::try_from(physical_memory() / 8).unwrap_or(usize::MAX)
}

/// One record batch of the file: where its message lies and what its header says.
#[derive(Debug, Clone)]
pub struct BatchInfo {
    pub block: Block,
    pub num_rows: u64,
    pub compression: Option<CompressionType>,
}

/// The two Arrow IPC layouts: the file format (magic, messages, footer; also Feather v2) and
/// the stream format (messages up to an end-of-stream marker, no footer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcFormat {
    File,
    Stream,
}

impl IpcFormat {
    pub fn name(self) -> &'static str {
        match self {
            IpcFormat::File => "file",
            IpcFormat::Stream => "stream",
        }
    }
}

/// A column of one record batch, decoded, and why it is not a view of the mapping if it is not.
#[derive(Debug, Clone)]
pub struct DecodedColumn {
    pub array: ArrayRef,
    /// Set when decoding had to copy (compressed or misaligned buffers).
    pub copy_reason: Option<String>,
}

/// How an opened Arrow IPC file holds its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IpcAccess {
    /// Mapped privately: opening reads only the footer, columns are views of the page cache.
    #[default]
    Mapped,
    /// Read into memory (64-byte aligned) when opened: columns are views of that copy, which
    /// no later truncation or in-place write of the file can change.
    InMemory,
}

/// An opened, validated Arrow IPC file.
pub struct IpcFile {
    path: PathBuf,
    /// Kept open so that each read can `fstat` it: a file truncated while mapped raises SIGBUS on
    /// access, so reads refuse to go on when the size has changed.
    file: File,
    size: u64,
    /// The file as it was when it was mapped.
    identity: FileIdentity,
    /// Whether the file's last write was at least `SETTLED_AFTER` before it was opened: only
    /// then may its statistics be shared with other openings.
    settled: bool,
    /// The whole mapping, as the arrow buffer that decoded arrays share.
    data: Buffer,
    /// Tells whether a read of the mapping faulted because the file was truncated (see
    /// `fault.rs`); None for bytes that are not a mapping of the file.
    damage: Option<fault::Damage>,
    /// Whether the bytes were read into memory (`IpcAccess::InMemory`): later changes of the
    /// file do not reach them.
    in_memory: bool,
    format: IpcFormat,
    schema: SchemaRef,
    version: MetadataVersion,
    batches: Vec<BatchInfo>,
    /// `batch_row_starts[i]` is the global row id of the first row of batch `i`; one extra entry
    /// at the end holds the total row count. A global row id finds its batch by binary search.
    batch_row_starts: Vec<u64>,
    dictionary_blocks: Vec<Block>,
    /// Decoded on first use: most reads never need them.
    dictionaries: OnceLock<HashMap<i64, ArrayRef>>,
    /// Columns that decoded as views of the mapping, kept so that later reads through this
    /// opening skip arrow-rs's validation: it reads every key of a dictionary column and every
    /// offset and byte of a string column (milliseconds for the 20 M keys of `tab.city`,
    /// against microseconds from the cache).
    /// Only types whose validation reads values are kept (fixed-width columns validate in
    /// constant time, and a file of many batches would fill the cache with them). Of the
    /// copies, realigned columns are kept within `realigned_budget()`; decompressed ones are
    /// not: they would hold the file's whole uncompressed size.
    decoded: Mutex<DecodedCache>,
    /// Where each column's field nodes and buffers lie in a record batch header, found from
    /// the schema on first use.
    column_spans: OnceLock<Vec<Option<ColumnSpan>>>,
    /// Column indices by name, built on first use.
    column_names: OnceLock<HashMap<String, usize>>,
}

impl std::fmt::Debug for IpcFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcFile")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("batches", &self.batches.len())
            .finish()
    }
}

fn catch_panic<T>(path: &Path, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown error");
        Err(StorageError::CorruptFile {
            path: path.to_owned(),
            reason: format!("{what}: {detail}"),
        })
    })
}

/// The field nodes and buffers one column (with everything nested in it) takes in a record
/// batch header, as the IPC format lays them out (the order arrow-rs reads them in).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct FieldLayout {
    nodes: usize,
    /// Buffers, not counting the variadic buffers of view types.
    fixed_buffers: usize,
    /// Nodes of type `Utf8View` / `BinaryView`: each takes one entry of the header's variadic
    /// buffer counts, and that many buffers more.
    view_nodes: usize,
}

/// The layout of a column of type `data_type` in a file of metadata `version`, or None for a
/// type this does not know (the column is then decoded by skipping the columns before it).
fn field_layout(data_type: &DataType, version: MetadataVersion) -> Option<FieldLayout> {
    let mut layout = FieldLayout::default();
    // A stack, not recursion: a nested type may be deep.
    let mut pending = vec![data_type];
    while let Some(data_type) = pending.pop() {
        layout.nodes += 1;
        layout.fixed_buffers += match data_type {
            DataType::Null | DataType::RunEndEncoded(..) => 0,
            DataType::Utf8 | DataType::Binary | DataType::LargeUtf8 | DataType::LargeBinary => 3,
            DataType::Utf8View | DataType::BinaryView => {
                layout.view_nodes += 1;
                2
            }
            DataType::List(_) | DataType::LargeList(_) | DataType::Map(..) => 2,
            DataType::ListView(_) | DataType::LargeListView(_) => 3,
            DataType::FixedSizeList(..) | DataType::Struct(_) => 1,
            DataType::Union(_, mode) => {
                usize::from(version < MetadataVersion::V5)
                    + 1
                    + usize::from(*mode == arrow::datatypes::UnionMode::Dense)
            }
            t if t.is_primitive()
                || matches!(
                    t,
                    DataType::Boolean | DataType::FixedSizeBinary(_) | DataType::Dictionary(..)
                ) =>
            {
                2
            }
            _ => return None,
        };
        match data_type {
            DataType::List(child)
            | DataType::LargeList(child)
            | DataType::Map(child, _)
            | DataType::ListView(child)
            | DataType::LargeListView(child)
            | DataType::FixedSizeList(child, _) => pending.push(child.data_type()),
            DataType::Struct(children) => pending.extend(children.iter().map(|c| c.data_type())),
            DataType::Union(children, _) => {
                pending.extend(children.iter().map(|(_, c)| c.data_type()))
            }
            DataType::RunEndEncoded(run_ends, values) => {
                pending.extend([run_ends.data_type(), values.data_type()])
            }
            _ => {}
        }
    }
    Some(layout)
}

/// Where one column's field nodes, fixed buffers and variadic counts start in a record batch
/// header, and its layout.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ColumnSpan {
    first_node: usize,
    first_fixed_buffer: usize,
    first_view_node: usize,
    layout: FieldLayout,
}

/// The span of each column of `schema`, None from the first column whose layout is unknown on.
fn column_spans(schema: &Schema, version: MetadataVersion) -> Vec<Option<ColumnSpan>> {
    let mut next = Some(ColumnSpan {
        first_node: 0,
        first_fixed_buffer: 0,
        first_view_node: 0,
        layout: FieldLayout::default(),
    });
    schema
        .fields()
        .iter()
        .map(|field| {
            let start = next?;
            let Some(layout) = field_layout(field.data_type(), version) else {
                next = None;
                return None;
            };
            let span = ColumnSpan {
                first_node: start.first_node + start.layout.nodes,
                first_fixed_buffer: start.first_fixed_buffer + start.layout.fixed_buffers,
                first_view_node: start.first_view_node + start.layout.view_nodes,
                layout,
            };
            next = Some(span);
            Some(span)
        })
        .collect()
}

/// Record batch `header` cut down to the field nodes, buffers and variadic counts of the column
/// at `span` (buffer offsets stay relative to the same body), as a finished flatbuffer.
///
/// Decoding one column of a wide batch then costs what that column takes: arrow-rs reads a
/// projection by walking every column before it, so reading all n columns one by one took n^2
/// steps (40,000 columns of 3 rows: 10 s, with the header check, now made once per batch).
fn column_header(
    header: ipc::RecordBatch<'_>,
    span: ColumnSpan,
) -> std::result::Result<Vec<u8>, String> {
    let nodes = header.nodes().ok_or("the header has no field node list")?;
    let buffers = header.buffers().ok_or("the header has no buffer list")?;
    let variadic_counts = header.variadicBufferCounts();
    let variadic = |index: usize| -> std::result::Result<usize, String> {
        let count = variadic_counts
            .filter(|counts| index < counts.len())
            .map(|counts| counts.get(index))
            .ok_or_else(|| format!("no variadic buffer count for view node {index}"))?;
        usize::try_from(count).map_err(|_| format!("variadic buffer count {count} is negative"))
    };
    let own_views = span.first_view_node..span.first_view_node + span.layout.view_nodes;
    let mut first_buffer = span.first_fixed_buffer;
    for index in 0..span.first_view_node {
        first_buffer = first_buffer.saturating_add(variadic(index)?);
    }
    let mut buffer_count = span.layout.fixed_buffers;
    for index in own_views.clone() {
        buffer_count = buffer_count.saturating_add(variadic(index)?);
    }
    let node_end = span.first_node + span.layout.nodes;
    let buffer_end = first_buffer.saturating_add(buffer_count);
    if nodes.len() < node_end || buffers.len() < buffer_end {
        return Err(format!(
            "the header has {} field nodes and {} buffers; the schema needs at least {node_end} and {buffer_end}",
            nodes.len(),
            buffers.len()
        ));
    }
    let mut builder = flatbuffers::FlatBufferBuilder::new();
    let column_nodes: Vec<ipc::FieldNode> =
        (span.first_node..node_end).map(|i| *nodes.get(i)).collect();
    let column_buffers: Vec<ipc::Buffer> = (first_buffer..buffer_end)
        .map(|i| *buffers.get(i))
        .collect();
    let column_variadic: Vec<i64> = own_views
        .map(|index| variadic(index).map(|count| count as i64))
        .collect::<std::result::Result<_, _>>()?;
    let args = ipc::RecordBatchArgs {
        length: header.length(),
        nodes: Some(builder.create_vector(&column_nodes)),
        buffers: Some(builder.create_vector(&column_buffers)),
        compression: header.compression().map(|compression| {
            ipc::BodyCompression::create(
                &mut builder,
                &ipc::BodyCompressionArgs {
                    codec: compression.codec(),
                    method: compression.method(),
                },
            )
        }),
        variadicBufferCounts: (!column_variadic.is_empty())
            .then(|| builder.create_vector(&column_variadic)),
    };
    let batch = ipc::RecordBatch::create(&mut builder, &args);
    builder.finish(batch, None);
    Ok(builder.finished_data().to_vec())
}

/// Parses an IPC message prefix (continuation marker and length, or the pre-1.0 bare length)
/// and verifies the flatbuffer that follows.
fn parse_message(bytes: &[u8]) -> std::result::Result<ipc::Message<'_>, String> {
    let body = match bytes {
        [0xff, 0xff, 0xff, 0xff, _, _, _, _, rest @ ..] => rest,
        [_, _, _, _, rest @ ..] => rest,
        _ => return Err("message is shorter than its length prefix".into()),
    };
    crate::nesting::root_as_message(body).map_err(|e| {
        format!(
            "invalid message flatbuffer: {}",
            crate::nesting::flatbuffer_error(&e)
        )
    })
}

/// The row count of a record batch message, after the checks that need no body: it is not
/// negative, and the first field node (the first column's) has the batch's length. Checked at
/// open because a batch whose row count reads 0 is never decoded.
pub(crate) fn record_batch_rows(
    header: ipc::RecordBatch<'_>,
    schema: &Schema,
) -> std::result::Result<u64, String> {
    let rows = header.length();
    if rows < 0 {
        return Err(format!("negative row count {rows}"));
    }
    if !schema.fields().is_empty() {
        let first_node_length = header
            .nodes()
            .and_then(|nodes| nodes.iter().next())
            .map(|node| node.length());
        if first_node_length != Some(rows) {
            return Err(format!(
                "{rows} rows, but its first column has {}",
                first_node_length.map_or("no field node".to_string(), |n| format!("{n} values")),
            ));
        }
    }
    Ok(rows as u64)
}

/// Checks the buffers and field nodes of a record batch header (of a record batch message or of
/// a dictionary batch) against the body they describe, before arrow-rs reads them.
///
/// arrow-rs slices the body with each buffer's offset and length without checking them first
/// (`Buffer::slice_with_length` panics), and casts node lengths and null counts to `usize`, so a
/// negative value would pass as a huge one. Array validation then checks that each buffer is
/// large enough for its array, so a huge row count over tiny buffers fails there.
fn check_batch_header(
    header: ipc::RecordBatch<'_>,
    body: &[u8],
) -> std::result::Result<(), String> {
    let body_len = body.len();
    let rows = header.length();
    if rows < 0 {
        return Err(format!("negative row count {rows}"));
    }
    let buffers = header.buffers().ok_or("the header has no buffer list")?;
    for (index, buffer) in buffers.iter().enumerate() {
        let (offset, length) = (buffer.offset(), buffer.length());
        if offset < 0 || length < 0 || offset as i128 + length as i128 > body_len as i128 {
            return Err(format!(
                "buffer {index} (offset {offset}, {length} bytes) lies outside the message body of {body_len} bytes"
            ));
        }
    }
    if let Some(compression) = header.compression() {
        check_compressed_buffers(compression.codec(), buffers, body)?;
    }
    let nodes = header.nodes().ok_or("the header has no field node list")?;
    for (index, node) in nodes.iter().enumerate() {
        let (length, null_count) = (node.length(), node.null_count());
        if length < 0 || null_count < 0 || null_count > length {
            return Err(format!(
                "field node {index} has length {length} and null count {null_count}"
            ));
        }
    }
    Ok(())
}

/// The name users know a codec by ("LZ4_FRAME", "ZSTD").
pub fn codec_name(codec: CompressionType) -> String {
    match codec {
        CompressionType::LZ4_FRAME => "LZ4_FRAME".into(),
        CompressionType::ZSTD => "ZSTD".into(),
        other => format!("{other:?}"),
    }
}

/// How many bytes a compressed buffer of `compressed` bytes can at most decompress to.
///
/// arrow-rs allocates the length a compressed buffer's prefix announces before it decompresses
/// (`Vec::with_capacity`), and a failed allocation aborts the process, so a damaged prefix must
/// be refused first. The codecs bound the ratio: an LZ4 sequence of n bytes yields at most about
/// 255 n bytes, and the smallest zstd block (an RLE block: a 3-byte header and one byte) yields
/// at most 128 KiB, 32768 bytes per compressed byte. Nothing larger than the machine's memory is
/// accepted either.
fn max_decompressed_len(codec: CompressionType, compressed: usize) -> u128 {
    let ratio: u128 = match codec {
        CompressionType::LZ4_FRAME => 256,
        _ => 32_768,
    };
    let by_ratio = compressed as u128 * ratio + 4096;
    by_ratio.min(u128::from(physical_memory()))
}

/// Bytes of physical memory (or 16 GiB where the system does not say).
fn physical_memory() -> u64 {
    static MEMORY: LazyLock<u64> = LazyLock::new(|| {
        // SAFETY: sysconf takes no pointers and only reads system configuration.
        let (pages, page_size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if pages > 0 && page_size > 0 {
            (pages as u64).saturating_mul(page_size as u64)
        } else {
            16 << 30
        }
    });
    *MEMORY
}

/// Checks the 8-byte length prefix of each compressed buffer (`buffers` already lie in `body`):
/// -1 (stored uncompressed), 0 (empty) or a length the codec can produce from the bytes given.
fn check_compressed_buffers(
    codec: CompressionType,
    buffers: flatbuffers::Vector<'_, ipc::Buffer>,
    body: &[u8],
) -> std::result::Result<(), String> {
    if !matches!(codec, CompressionType::LZ4_FRAME | CompressionType::ZSTD) {
        return Err(format!("unknown compression codec {codec:?}"));
    }
    for (index, buffer) in buffers.iter().enumerate() {
        let (offset, length) = (buffer.offset() as usize, buffer.length() as usize);
        if length == 0 {
            continue;
        }
        let Some(prefix) = body.get(offset..offset + 8).filter(|_| length >= 8) else {
            return Err(format!(
                "compressed buffer {index} is {length} bytes, too short for its 8-byte length prefix"
            ));
        };
        let announced = i64::from_le_bytes(prefix.try_into().expect("8 bytes"));
        let compressed = length - 8;
        if announced < -1
            || (announced > 0 && announced as u128 > max_decompressed_len(codec, compressed))
        {
            return Err(format!(
                "compressed buffer {index} ({compressed} bytes of {codec:?} data at body offset {offset}) says it decompresses to {announced} bytes, which is impossible"
            ));
        }
    }
    Ok(())
}

/// Whether arrow-rs's validation of a decoded array of this type reads its values (dictionary
/// keys, offsets, UTF-8 bytes, child arrays), rather than only checking buffer sizes.
fn validation_reads_values(data_type: &DataType) -> bool {
    match data_type {
        DataType::Null | DataType::Boolean | DataType::FixedSizeBinary(_) => false,
        DataType::FixedSizeList(item, _) => validation_reads_values(item.data_type()),
        other => !other.is_primitive(),
    }
}

fn contains_dictionary(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, _) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => contains_dictionary(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| contains_dictionary(f.data_type())),
        DataType::Union(fields, _) => fields
            .iter()
            .any(|(_, f)| contains_dictionary(f.data_type())),
        DataType::RunEndEncoded(_, values) => contains_dictionary(values.data_type()),
        _ => false,
    }
}

/// The first `size` bytes of `file` in a 64-byte-aligned buffer; `FileChanged` when the file
/// ends sooner (it was truncated since it was measured).
fn read_whole_file(path: &Path, mut file: &File, size: u64) -> Result<Buffer> {
    let len = usize::try_from(size).map_err(|_| StorageError::OutOfRange {
        what: "file size",
        detail: format!("{}: {size} bytes do not fit in memory", path.display()),
    })?;
    let mut buffer = arrow::buffer::MutableBuffer::from_len_zeroed(len);
    std::io::Read::read_exact(&mut file, buffer.as_slice_mut()).map_err(|source| {
        match source.kind() {
            std::io::ErrorKind::UnexpectedEof => fault::changed(path, size),
            _ => StorageError::Io {
                path: path.to_owned(),
                action: "read",
                source,
            },
        }
    })?;
    Ok(buffer.into())
}

impl IpcFile {
    /// Maps `path` and reads its footer. Touches no column data.
    ///
    /// Each call maps the file anew, even when this process has it mapped already: see "The
    /// view contract" in the module documentation.
    ///
    /// A file whose tail was torn by an append that did not finish opens at the last complete
    /// footer before the tear; a file that ends with a complete footer that is damaged is a
    /// `CorruptFile` naming the footer's offset (see `append.rs`, and
    /// `open_at_last_intact_footer`).
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>> {
        Self::open_with(path.as_ref(), Recovery::TornTail, IpcAccess::Mapped)
    }

    /// `open`, holding the bytes as `access` says.
    pub fn open_as(path: impl AsRef<Path>, access: IpcAccess) -> Result<Arc<Self>> {
        Self::open_with(path.as_ref(), Recovery::TornTail, access)
    }

    /// `open`, except that a file whose last footer is damaged opens at the last intact footer
    /// before it too, as a torn tail does: what `repair_ipc_file` keeps.
    pub fn open_at_last_intact_footer(path: impl AsRef<Path>) -> Result<Arc<Self>> {
        Self::open_with(path.as_ref(), Recovery::DamagedFooter, IpcAccess::Mapped)
    }

    fn open_with(path: &Path, recovery: Recovery, access: IpcAccess) -> Result<Arc<Self>> {
        let path = path.to_owned();
        let metadata = std::fs::metadata(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound { path: path.clone() },
            _ => StorageError::Io {
                path: path.clone(),
                action: "stat",
                source,
            },
        })?;
        if metadata.is_dir() {
            return Err(StorageError::IsDirectory { path });
        }
        if !metadata.is_file() {
            // Opening a FIFO for reading blocks until a writer comes, and devices and sockets
            // cannot be mapped as files.
            return Err(StorageError::NotArrowFile {
                path,
                reason: "it is not a regular file (a FIFO, socket or device)".into(),
            });
        }
        let file = File::open(&path).map_err(|source| StorageError::Io {
            path: path.clone(),
            action: "open",
            source,
        })?;
        let opened_at = SystemTime::now();
        let metadata = file.metadata().map_err(|source| StorageError::Io {
            path: path.clone(),
            action: "stat",
            source,
        })?;
        let identity = FileIdentity::of(&metadata);
        let size = metadata.len();
        if size < (HEADER_LEN + TRAILER_LEN) as u64 {
            return Err(StorageError::NotArrowFile {
                path,
                reason: format!(
                    "the file is {size} bytes, too small to hold the Arrow magic and footer"
                ),
            });
        }
        if access == IpcAccess::InMemory {
            let data = read_whole_file(&path, &file, size)?;
            let mut opened = catch_panic(&path, "reading the footer", || {
                Self::from_mapping_recovering(path.clone(), file, size, identity, data, recovery)
            })?;
            opened.in_memory = true;
            return Ok(Arc::new(opened));
        }
        let mut options = MmapOptions::new();
        options.no_reserve_swap();
        // SAFETY: the mapping is private, so our writes never reach the file. Another process may
        // still truncate the file under us; `check_unchanged` runs before every decode, and a
        // read past the cut inside relay is caught by the fault registry (`fault.rs`).
        let mapped = unsafe { options.map_copy(&file) };
        let mmap = mapped.map_err(|source| StorageError::Io {
            path: path.clone(),
            action: "mmap",
            source,
        })?;
        // The file may have changed size between the stat above and the mapping: bounds are
        // checked against the mapping, and reads later compare the file with its length.
        let size = mmap.len() as u64;
        let registration = fault::Registration::new(&path, mmap.as_ptr(), mmap.len());
        let damage = registration.damage();
        let data = Buffer::from(bytes::Bytes::from_owner(Mapping {
            _registration: registration,
            mmap,
        }));
        let opened = catch_panic(&path, "reading the footer", || {
            Self::from_mapping_recovering(path.clone(), file, size, identity, data, recovery)
        });
        if damage.is_damaged() {
            // Truncated while the footer was read: what was read past the cut was zeros.
            return Err(fault::changed(&path, size));
        }
        let mut opened = opened?;
        opened.damage = Some(damage);
        opened.check_unchanged()?;
        opened.settled = identity.size == size
            && metadata
                .modified()
                .ok()
                .and_then(|modified| opened_at.duration_since(modified).ok())
                .is_some_and(|age| age >= SETTLED_AFTER);
        Ok(Arc::new(opened))
    }

    /// `from_mapping`, except that a file whose tail was torn by an append that did not finish
    /// (it starts like an IPC file but does not end with a valid footer) opens at the last
    /// complete footer before the tear (see `append.rs`). A file that ends with a complete
    /// footer that is damaged is refused, naming the footer's offset, unless `recovery` says to
    /// read it at an earlier footer too.
    fn from_mapping_recovering(
        path: PathBuf,
        file: File,
        size: u64,
        identity: FileIdentity,
        data: Buffer,
        recovery: Recovery,
    ) -> Result<Self> {
        if !crate::append::tail_is_torn(data.as_slice()) {
            let whole = match recovery {
                Recovery::TornTail => return Self::from_mapping(path, file, size, identity, data),
                Recovery::DamagedFooter => Self::from_mapping(
                    path.clone(),
                    file.try_clone().map_err(|source| StorageError::Io {
                        path: path.clone(),
                        action: "dup",
                        source,
                    })?,
                    size,
                    identity,
                    data.clone(),
                ),
            };
            // A last footer that verifies but describes blocks this file does not hold is
            // damaged too: look for an intact one before it.
            if whole.is_ok() {
                return whole;
            }
        }
        if recovery == Recovery::TornTail
            && let Some((offset, reason)) = crate::append::damaged_final_footer(data.as_slice())
        {
            return Err(StorageError::CorruptFile {
                path,
                reason: format!(
                    "the footer at byte offset {offset} is damaged: {reason}. The file ends with a complete \
                     footer, not with an interrupted append, so it is not read at an earlier footer \
                     (that would silently drop the last append); relay_ml.repair(path) rewrites it at \
                     its last intact footer and reports the rows it drops"
                ),
            });
        }
        for end in crate::append::earlier_footer_ends(data.as_slice()) {
            let Ok(descriptor) = file.try_clone() else {
                break;
            };
            let prefix = data.slice_with_length(0, end);
            if let Ok(opened) = Self::from_mapping(path.clone(), descriptor, size, identity, prefix)
            {
                return Ok(opened);
            }
        }
        Self::from_mapping(path, file, size, identity, data)
    }

    fn from_mapping(
        path: PathBuf,
        file: File,
        size: u64,
        identity: FileIdentity,
        data: Buffer,
    ) -> Result<Self> {
        let corrupt = |reason: String| StorageError::CorruptFile {
            path: path.clone(),
            reason,
        };
        let bytes = data.as_slice();
        let len = bytes.len();
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(StorageError::NotArrowFile {
                path,
                reason: format!(
                    "the file is {len} bytes, too small to hold the Arrow magic and footer"
                ),
            });
        }
        if &bytes[..6] != MAGIC && crate::stream::looks_like_stream(bytes) {
            let layout = crate::stream::walk_stream(bytes)
                .map_err(|reason| corrupt(format!("IPC stream: {reason}")))?;
            return Ok(Self {
                path,
                file,
                size,
                identity,
                settled: false,
                data,
                damage: None,
                in_memory: false,
                format: IpcFormat::Stream,
                schema: Arc::new(layout.schema),
                version: layout.version,
                batches: layout.batches,
                batch_row_starts: layout.batch_row_starts,
                dictionary_blocks: layout.dictionary_blocks,
                dictionaries: OnceLock::new(),
                decoded: Mutex::new(DecodedCache::default()),
                column_spans: OnceLock::new(),
                column_names: OnceLock::new(),
            });
        }
        if &bytes[..6] != MAGIC {
            let reason = if bytes[..4] == [0xff; 4] {
                "it starts with an IPC continuation marker, but not with a schema message"
                    .to_string()
            } else if &bytes[..4] == b"PAR1" {
                "it is a Parquet file".to_string()
            } else {
                format!(
                    "it does not start with the magic bytes \"ARROW1\" (found {:?})",
                    &bytes[..6]
                )
            };
            return Err(StorageError::NotArrowFile { path, reason });
        }
        if &bytes[len - 6..] != MAGIC {
            return Err(corrupt(
                "it does not end with the magic bytes \"ARROW1\": the file is truncated or was not closed by its writer".into(),
            ));
        }
        let footer_len = i32::from_le_bytes(
            bytes[len - TRAILER_LEN..len - 6]
                .try_into()
                .expect("4 bytes"),
        );
        let max_footer = len - HEADER_LEN - TRAILER_LEN;
        if footer_len <= 0 || footer_len as usize > max_footer {
            return Err(corrupt(format!(
                "footer length {footer_len} is impossible for a file of {len} bytes"
            )));
        }
        let footer_start = len - TRAILER_LEN - footer_len as usize;
        let footer = crate::nesting::root_as_footer(&bytes[footer_start..len - TRAILER_LEN])
            .map_err(|e| {
                corrupt(format!(
                    "footer is not a valid flatbuffer: {}",
                    crate::nesting::flatbuffer_error(&e)
                ))
            })?;
        let ipc_schema = footer
            .schema()
            .ok_or_else(|| corrupt("footer has no schema".into()))?;
        if !ipc_schema.endianness().equals_to_target_endianness() {
            return Err(corrupt(
                "the file is big-endian; only little-endian files can be mapped".into(),
            ));
        }
        let schema = Arc::new(
            ipc::convert::try_fb_to_schema(ipc_schema)
                .map_err(|e| corrupt(format!("footer schema is invalid: {e}")))?,
        );
        crate::nesting::check_arrow_schema_depth(&schema).map_err(|reason| {
            StorageError::Unsupported {
                path: path.clone(),
                reason,
            }
        })?;
        let version = footer.version();

        let check_block = |kind: &str, index: usize, block: &Block| -> Result<()> {
            let offset = block.offset();
            let meta = block.metaDataLength();
            let body = block.bodyLength();
            let end = (offset as i128) + (meta as i128) + (body as i128);
            if offset < HEADER_LEN as i64 || meta < 8 || body < 0 || end > footer_start as i128 {
                return Err(corrupt(format!(
                    "{kind} {index} lies outside the data region (offset {offset}, metadata {meta} bytes, body {body} bytes, data ends at {footer_start})"
                )));
            }
            Ok(())
        };

        let mut batches = Vec::new();
        let mut batch_row_starts = vec![0u64];
        for (index, block) in footer.recordBatches().into_iter().flatten().enumerate() {
            check_block("record batch", index, block)?;
            let start = block.offset() as usize;
            let message = parse_message(&bytes[start..start + block.metaDataLength() as usize])
                .map_err(|e| corrupt(format!("record batch {index}: {e}")))?;
            if version != MetadataVersion::V1 && message.version() != version {
                return Err(corrupt(format!(
                    "record batch {index} has metadata version {:?}, the footer says {:?}",
                    message.version(),
                    version
                )));
            }
            let header = message.header_as_record_batch().ok_or_else(|| {
                corrupt(format!(
                    "block {index} of the footer is a {:?} message, not a record batch",
                    message.header_type()
                ))
            })?;
            record_batch_rows(header, &schema)
                .map_err(|e| corrupt(format!("record batch {index}: {e}")))?;
            if message.bodyLength() > block.bodyLength() {
                return Err(corrupt(format!(
                    "record batch {index} says its body is {} bytes, the footer gives it {}",
                    message.bodyLength(),
                    block.bodyLength()
                )));
            }
            let num_rows = header.length() as u64;
            // Row ids must fit an i64 (Python's len() is a Py_ssize_t).
            let end = batch_row_starts
                .last()
                .copied()
                .unwrap_or(0)
                .checked_add(num_rows)
                .filter(|&end| end <= i64::MAX as u64)
                .ok_or_else(|| {
                    corrupt(format!(
                        "the row counts of the record batches add up to more than {} (at record batch {index})",
                        i64::MAX
                    ))
                })?;
            batch_row_starts.push(end);
            batches.push(BatchInfo {
                block: *block,
                num_rows,
                compression: header.compression().map(|c| c.codec()),
            });
        }
        let mut dictionary_blocks = Vec::new();
        for (index, block) in footer.dictionaries().into_iter().flatten().enumerate() {
            check_block("dictionary batch", index, block)?;
            dictionary_blocks.push(*block);
        }
        // Writers put each message in the file once. Blocks that overlap would let a footer of
        // a few kilobytes make every read verify the same large message again and again.
        let mut extents: Vec<(i64, i64, &str, usize)> = batches
            .iter()
            .map(|b| &b.block)
            .enumerate()
            .map(|(i, b)| {
                (
                    b.offset(),
                    i64::from(b.metaDataLength()) + b.bodyLength(),
                    "record batch",
                    i,
                )
            })
            .chain(dictionary_blocks.iter().enumerate().map(|(i, b)| {
                (
                    b.offset(),
                    i64::from(b.metaDataLength()) + b.bodyLength(),
                    "dictionary batch",
                    i,
                )
            }))
            .collect();
        extents.sort_unstable_by_key(|&(offset, ..)| offset);
        let listed_end = extents
            .last()
            .map_or(0, |&(offset, length, ..)| (offset + length) as usize);
        if listed_end > 0
            && let Some(offset) = crate::append::unlisted_message(bytes, listed_end, footer_start)
        {
            return Err(corrupt(format!(
                "the footer at byte offset {footer_start} is damaged: it lists {} record batches, the last of them \
                 ending at byte offset {listed_end}, but an appended message follows at byte offset {offset}; \
                 relay_ml.repair(path) rewrites the file at its last intact footer and reports the rows it drops",
                batches.len()
            )));
        }
        for pair in extents.windows(2) {
            let ((offset, length, kind, index), (next_offset, _, next_kind, next_index)) =
                (pair[0], pair[1]);
            // check_block bounded offset + length by the file size, so this cannot overflow.
            if offset + length > next_offset {
                return Err(corrupt(format!(
                    "{kind} {index} (offset {offset}, {length} bytes) overlaps {next_kind} {next_index} at offset {next_offset}"
                )));
            }
        }
        Ok(Self {
            path,
            file,
            size,
            identity,
            settled: false,
            data,
            damage: None,
            in_memory: false,
            format: IpcFormat::File,
            schema,
            version,
            batches,
            batch_row_starts,
            dictionary_blocks,
            dictionaries: OnceLock::new(),
            decoded: Mutex::new(DecodedCache::default()),
            column_spans: OnceLock::new(),
            column_names: OnceLock::new(),
        })
    }

    /// Whether the file is in the IPC file or stream format.
    pub fn format(&self) -> IpcFormat {
        self.format
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File size in bytes when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn batches(&self) -> &[BatchInfo] {
        &self.batches
    }

    /// Where the footer says the dictionary batches are.
    pub fn dictionary_blocks(&self) -> &[Block] {
        &self.dictionary_blocks
    }

    pub fn num_rows(&self) -> u64 {
        *self.batch_row_starts.last().expect("at least one entry")
    }

    /// Global row id of the first row of each batch, plus the total row count at the end.
    pub fn batch_row_starts(&self) -> &[u64] {
        &self.batch_row_starts
    }

    /// Address range of the mapping, to tell views of it from copies.
    pub fn mapped_range(&self) -> std::ops::Range<usize> {
        let start = self.data.as_ptr() as usize;
        start..start + self.data.len()
    }

    /// Index of the column called `name`, or an error that lists the available columns.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        // A map built on first use: `Schema::index_of` searches the fields, and looking up
        // every column of a wide file by name one by one was quadratic.
        let by_name = self.column_names.get_or_init(|| {
            let mut by_name = HashMap::with_capacity(self.schema.fields().len());
            for (index, field) in self.schema.fields().iter().enumerate() {
                // The first of equal names, as `index_of` finds it.
                by_name.entry(field.name().clone()).or_insert(index);
            }
            by_name
        });
        by_name
            .get(name)
            .copied()
            .ok_or_else(|| StorageError::ColumnNotFound {
                path: self.path.clone(),
                name: name.to_owned(),
                available: self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| format!("{:?}", f.name()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// What identifies the file's contents for statistics shared between openings (`stats.rs`):
    /// its path and identity, when its last write had settled when it was opened and nothing
    /// was written to it since. None otherwise: its statistics are then its own.
    pub(crate) fn statistics_key(&self) -> Option<(PathBuf, FileIdentity)> {
        let now = self.current_identity().ok()?;
        (self.settled && now.same_contents(&self.identity))
            .then(|| (self.path.clone(), self.identity))
    }

    /// Fails when the file no longer has the size it had when it was mapped: touching pages past
    /// the new end would kill the process with SIGBUS.
    /// How the file holds its bytes.
    pub fn access(&self) -> IpcAccess {
        if self.in_memory {
            IpcAccess::InMemory
        } else {
            IpcAccess::Mapped
        }
    }

    pub fn check_unchanged(&self) -> Result<()> {
        self.current_identity().map(|_| ())
    }

    /// The file's identity now, after checking that its size did not change (`check_unchanged`).
    /// Bytes read into memory keep the identity they were read with.
    fn current_identity(&self) -> Result<FileIdentity> {
        if self.in_memory {
            return Ok(self.identity);
        }
        let metadata = self.file.metadata().map_err(|source| StorageError::Io {
            path: self.path.clone(),
            action: "stat",
            source,
        })?;
        let actual = metadata.len();
        // Appends only add bytes after the end: a file that grew still holds every mapped page.
        // A mapping that faulted reads zeros past the cut, whatever the size is now.
        let damaged = self.damage.as_ref().is_some_and(fault::Damage::is_damaged);
        if actual < self.size || damaged {
            return Err(StorageError::FileChanged {
                path: self.path.clone(),
                expected: self.size,
                actual,
            });
        }
        Ok(FileIdentity::of(&metadata))
    }

    fn corrupt(&self, reason: String) -> StorageError {
        StorageError::CorruptFile {
            path: self.path.clone(),
            reason,
        }
    }

    /// The file's dictionaries by id, decoded on first use. Call inside `catch_panic`.
    fn dictionaries(&self) -> Result<&HashMap<i64, ArrayRef>> {
        if let Some(dictionaries) = self.dictionaries.get() {
            return Ok(dictionaries);
        }
        let mut dictionaries = HashMap::new();
        for (index, block) in self.dictionary_blocks.iter().enumerate() {
            let start = block.offset() as usize;
            let meta_len = block.metaDataLength() as usize;
            let body_len = block.bodyLength() as usize;
            let message = parse_message(&self.data.as_slice()[start..start + meta_len])
                .map_err(|e| self.corrupt(format!("dictionary batch {index}: {e}")))?;
            let batch = message.header_as_dictionary_batch().ok_or_else(|| {
                self.corrupt(format!(
                    "dictionary block {index} is a {:?} message, not a dictionary batch",
                    message.header_type()
                ))
            })?;
            if self.version != MetadataVersion::V1 && message.version() != self.version {
                return Err(self.corrupt(format!(
                    "dictionary batch {index} has metadata version {:?}, the footer says {:?}",
                    message.version(),
                    self.version
                )));
            }
            if message.bodyLength() > block.bodyLength() {
                return Err(self.corrupt(format!(
                    "dictionary batch {index} says its body is {} bytes, the footer gives it {}",
                    message.bodyLength(),
                    block.bodyLength()
                )));
            }
            let data = batch.data().ok_or_else(|| {
                self.corrupt(format!("dictionary batch {index} has no record batch"))
            })?;
            let body = self.data.slice_with_length(start + meta_len, body_len);
            check_batch_header(data, body.as_slice())
                .map_err(|e| self.corrupt(format!("dictionary batch {index}: {e}")))?;
            read_dictionary_impl(
                &body,
                batch,
                &self.schema,
                &mut dictionaries,
                &message.version(),
                false,
                Default::default(),
            )
            .map_err(|e| self.corrupt(format!("dictionary batch {index}: {e}")))?;
        }
        Ok(self.dictionaries.get_or_init(|| dictionaries))
    }

    /// Decodes column `column` of record batch `batch`.
    ///
    /// The result points into the mapping unless the batch is compressed or a buffer is not
    /// aligned to its type; then arrow-rs copies, and `copy_reason` says why. A view is decoded
    /// and validated once per mapping and kept, as long as the file's size and times stay as
    /// they were when it was mapped.
    pub fn decode_column(&self, batch: usize, column: usize) -> Result<DecodedColumn> {
        let info = self
            .batches
            .get(batch)
            .ok_or_else(|| StorageError::OutOfRange {
                what: "record batch index",
                detail: format!(
                    "{batch} >= {} batches in {}",
                    self.batches.len(),
                    self.path.display()
                ),
            })?;
        let field = self
            .schema
            .fields()
            .get(column)
            .ok_or_else(|| StorageError::OutOfRange {
                what: "column index",
                detail: format!(
                    "{column} >= {} columns in {}",
                    self.schema.fields().len(),
                    self.path.display()
                ),
            })?;
        let identity = self.current_identity()?;
        let unchanged = identity.same_contents(&self.identity);
        if unchanged && let Some(decoded) = self.decoded_cache().columns.get(&(batch, column)) {
            return Ok(decoded.clone());
        }
        let decoded = self.decode_column_uncached(info, batch, column, field, unchanged)?;
        let mut cache = self.decoded_cache();
        if cache.identity != Some(identity) {
            cache.clear();
            cache.identity = Some(identity);
        }
        if unchanged {
            cache.checked_headers.insert(batch);
        }
        // After a write in place the cache stays empty: each read validates again.
        if !unchanged {
            return Ok(decoded);
        }
        let keep = match &decoded.copy_reason {
            None => validation_reads_values(field.data_type()),
            // Realigned, not decompressed: kept within the process's budget, so that a file
            // written with 8-byte alignment (pyarrow's) is not copied again on every query.
            Some(_) if info.compression.is_none() => {
                let held = self.bytes_outside_mapping(&decoded.array.to_data());
                let kept = REALIGNED_BYTES
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                        (total + held <= realigned_budget()).then_some(total + held)
                    })
                    .is_ok();
                if kept {
                    cache.realigned_bytes += held;
                }
                kept
            }
            Some(_) => false,
        };
        if keep {
            cache.columns.insert((batch, column), decoded.clone());
        }
        Ok(decoded)
    }

    /// The bytes of `data`'s buffers (children included) that do not lie in the mapping.
    fn bytes_outside_mapping(&self, data: &arrow::array::ArrayData) -> usize {
        let mapping = self.data.as_slice().as_ptr_range();
        let mut bytes = 0;
        for_each_buffer(data, &mut |buffer| {
            if !mapping.contains(&buffer.as_ptr()) {
                bytes += buffer.len();
            }
        });
        bytes
    }

    fn decoded_cache(&self) -> MutexGuard<'_, DecodedCache> {
        // The cache holds no invariant that a panic elsewhere could break half-way.
        self.decoded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn decode_column_uncached(
        &self,
        info: &BatchInfo,
        batch: usize,
        column: usize,
        field: &arrow::datatypes::FieldRef,
        unchanged: bool,
    ) -> Result<DecodedColumn> {
        let empty = HashMap::new();
        let dictionaries = if contains_dictionary(field.data_type()) {
            catch_panic(&self.path, "decoding the dictionaries", || {
                self.dictionaries()
            })?
        } else {
            &empty
        };
        catch_panic(&self.path, "decoding a record batch", || {
            let start = info.block.offset() as usize;
            let meta_len = info.block.metaDataLength() as usize;
            let body_len = info.block.bodyLength() as usize;
            let in_column = |e: &dyn std::fmt::Display| {
                self.corrupt(format!(
                    "record batch {batch}, column {:?}: {e}",
                    field.name()
                ))
            };
            let message = parse_message(&self.data.as_slice()[start..start + meta_len])
                .map_err(|e| in_column(&e))?;
            let header = message
                .header_as_record_batch()
                .ok_or_else(|| in_column(&"not a record batch message"))?;
            // Checked when decoding, not only at open: the mapping is private, but pages not
            // yet read still follow writes that another process makes to the file in place
            // (such a write changes the file's times, and decodes are no longer cached).
            let body = self.data.slice_with_length(start + meta_len, body_len);
            let span = self
                .column_spans
                .get_or_init(|| column_spans(&self.schema, self.version))
                .get(column)
                .copied()
                .flatten();
            // The column's own part of the header, where its type's layout is known; else the
            // whole header and a projection.
            let column_header_bytes = span
                .map(|span| column_header(header, span))
                .transpose()
                .map_err(|e| in_column(&e))?;
            let column_header = column_header_bytes
                .as_deref()
                .map(flatbuffers::root::<ipc::RecordBatch>)
                .transpose()
                .map_err(|e| in_column(&e))?;
            // The whole header is checked once per batch while the file is as it was mapped
            // (a damaged header fails every column of its batch, not only the column that owns
            // the damaged entry), and on every decode after a write in place.
            let header_checked = unchanged && self.decoded_cache().checked_headers.contains(&batch);
            if !header_checked {
                check_batch_header(header, body.as_slice()).map_err(|e| in_column(&e))?;
            }
            let column_schema = Arc::new(Schema::new(vec![field.clone()]));
            let projection = [column];
            let decode = |require_alignment: bool| match column_header {
                Some(column_header) => RecordBatchDecoder::try_new(
                    &body,
                    column_header,
                    column_schema.clone(),
                    dictionaries,
                    &self.version,
                )?
                .with_require_alignment(require_alignment)
                .read_record_batch(),
                None => RecordBatchDecoder::try_new(
                    &body,
                    header,
                    self.schema.clone(),
                    dictionaries,
                    &self.version,
                )?
                .with_projection(Some(&projection))
                .with_require_alignment(require_alignment)
                .read_record_batch(),
            };
            let (decoded, mut copy_reason) = match decode(true) {
                Ok(decoded) => (decoded, None),
                Err(e) if e.to_string().contains("isaligned") => {
                    let decoded = decode(false).map_err(|e| in_column(&e))?;
                    (
                        decoded,
                        Some(format!(
                            "a buffer is not aligned to its type in the file ({e}); it is realigned into memory, and kept for the scan's later reads while the process's budget allows"
                        )),
                    )
                }
                Err(e) => return Err(in_column(&e)),
            };
            if let Some(codec) = info.compression {
                copy_reason = Some(format!(
                    "record batch {batch} is compressed with {}: it is decompressed into memory",
                    codec_name(codec)
                ));
            }
            if decoded.num_columns() != 1 || decoded.num_rows() as u64 != info.num_rows {
                return Err(in_column(&"decoded batch does not match its header"));
            }
            Ok(DecodedColumn {
                array: decoded.column(0).clone(),
                copy_reason,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        Array, ArrayRef, BinaryViewArray, BooleanArray, DictionaryArray, FixedSizeListArray,
        Int8Array, Int32Array, Int64Array, LargeStringArray, ListArray, NullArray, RecordBatch,
        RunArray, StringArray, StringViewArray, StructArray, UnionArray,
    };
    use arrow::buffer::ScalarBuffer;
    use arrow::datatypes::{Field, Int32Type, UnionFields};
    use arrow::ipc::writer::{FileWriter, IpcWriteOptions};

    use super::*;
    use crate::test_support::TempFile;

    /// One column of each layout, in two record batches, the view columns with several
    /// variadic buffers.
    fn columns(rows: usize, offset: i64) -> Vec<(&'static str, ArrayRef)> {
        let ints =
            Int64Array::from_iter((0..rows as i64).map(|i| (i % 3 != 0).then_some(i + offset)));
        let long = |i: usize| format!("a string longer than twelve bytes {i}");
        let views = StringViewArray::from_iter((0..rows).map(|i| (i % 4 != 0).then(|| long(i))));
        let binary_views =
            BinaryViewArray::from_iter_values((0..rows).map(|i| long(i + 7).into_bytes()));
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(
            (0..rows).map(|i| (i % 5 != 0).then(|| vec![Some(i as i32), None])),
        );
        let fixed = FixedSizeListArray::new(
            Arc::new(Field::new_list_field(DataType::Int8, true)),
            2,
            Arc::new(Int8Array::from_iter_values((0..2 * rows).map(|i| i as i8))),
            None,
        );
        let structs = StructArray::from(vec![
            (
                Arc::new(Field::new("s", DataType::Utf8View, true)),
                Arc::new(views.clone()) as ArrayRef,
            ),
            (
                Arc::new(Field::new("b", DataType::Boolean, true)),
                Arc::new(BooleanArray::from_iter((0..rows).map(|i| Some(i % 2 == 0)))),
            ),
        ]);
        let union = UnionArray::try_new(
            UnionFields::try_new(
                [0, 1],
                [
                    Field::new("i", DataType::Int32, true),
                    Field::new("v", DataType::Utf8View, true),
                ],
            )
            .unwrap(),
            ScalarBuffer::from((0..rows).map(|i| (i % 2) as i8).collect::<Vec<_>>()),
            None,
            vec![
                Arc::new(Int32Array::from_iter_values(0..rows as i32)) as ArrayRef,
                Arc::new(views.clone()),
            ],
        )
        .unwrap();
        let dictionary: DictionaryArray<Int32Type> =
            (0..rows).map(|i| ["x", "y", "z"][i % 3]).collect();
        let runs = RunArray::<Int32Type>::try_new(
            &Int32Array::from(vec![rows as i32]),
            &StringArray::from(vec!["run"]),
        )
        .unwrap();
        vec![
            ("ints", Arc::new(ints)),
            ("views", Arc::new(views)),
            ("nulls", Arc::new(NullArray::new(rows))),
            ("binary_views", Arc::new(binary_views)),
            ("list", Arc::new(list)),
            (
                "large",
                Arc::new(LargeStringArray::from_iter_values((0..rows).map(long))),
            ),
            ("fixed", Arc::new(fixed)),
            ("struct", Arc::new(structs)),
            ("union", Arc::new(union)),
            ("dictionary", Arc::new(dictionary)),
            ("runs", Arc::new(runs)),
            (
                "last",
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            ),
        ]
    }

    #[test]
    fn each_column_decodes_from_its_own_part_of_the_header() {
        let path = TempFile::new("relay-ipc-column-header", "many.arrow");
        let batches = [
            RecordBatch::try_from_iter(columns(50, 0)).unwrap(),
            RecordBatch::try_from_iter(columns(7, 1000)).unwrap(),
        ];
        let schema = batches[0].schema();
        let mut writer = FileWriter::try_new_with_options(
            std::fs::File::create(&*path).unwrap(),
            &schema,
            IpcWriteOptions::default(),
        )
        .unwrap();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
        let file = IpcFile::open(&*path).unwrap();
        let spans = column_spans(&file.schema, file.version);
        assert!(spans.iter().all(Option::is_some), "{spans:?}");
        for (index, batch) in batches.iter().enumerate() {
            for column in 0..schema.fields().len() {
                let decoded = file.decode_column(index, column).unwrap();
                assert_eq!(
                    decoded.array.to_data(),
                    batch.column(column).to_data(),
                    "batch {index}, column {}",
                    schema.field(column).name()
                );
            }
        }
    }

    #[test]
    fn a_header_short_of_what_the_schema_needs_is_an_error() {
        let mut builder = flatbuffers::FlatBufferBuilder::new();
        let args = ipc::RecordBatchArgs {
            length: 1,
            nodes: Some(builder.create_vector(&[ipc::FieldNode::new(1, 0)])),
            buffers: Some(builder.create_vector(&[ipc::Buffer::new(0, 8)])),
            compression: None,
            variadicBufferCounts: None,
        };
        let batch = ipc::RecordBatch::create(&mut builder, &args);
        builder.finish(batch, None);
        let header = flatbuffers::root::<ipc::RecordBatch>(builder.finished_data()).unwrap();
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8View, true),
        ]);
        let spans = column_spans(&schema, MetadataVersion::V5);
        let error = column_header(header, spans[0].unwrap()).unwrap_err();
        assert!(error.contains("field nodes"), "{error}");
        let error = column_header(header, spans[1].unwrap()).unwrap_err();
        assert!(error.contains("variadic"), "{error}");
    }
}
