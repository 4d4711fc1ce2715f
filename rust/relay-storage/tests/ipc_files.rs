//! Integration tests of relay-storage on Arrow IPC files written by arrow-rs's `FileWriter`:
//! reading valid files (several record batches, dictionaries, misaligned buffers) and refusing
//! damaged ones with the right error, without a panic reaching the caller.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, DictionaryArray, Float64Array, Int32Array,
    Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{
    DataType, Decimal128Type, Field, Float64Type, Int32Type, Int64Type, Schema, SchemaRef,
};
use arrow::ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
use arrow::ipc::{MetadataVersion, RecordBatch as IpcRecordBatch};
use relay_storage::{IpcAccess, IpcFile, IpcFormat, StorageError, TableView};

// ---------------------------------------------------------------------------------------------
// Temporary files
// ---------------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "relay-storage-{}-{name}-{unique}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_file(path: &Path, schema: &SchemaRef, batches: &[RecordBatch], options: IpcWriteOptions) {
    let file = std::fs::File::create(path).expect("create file");
    let mut writer = FileWriter::try_new_with_options(file, schema, options).expect("writer");
    for batch in batches {
        writer.write(batch).expect("write batch");
    }
    writer.finish().expect("finish");
}

fn default_options() -> IpcWriteOptions {
    IpcWriteOptions::default()
}

/// id: int64, value: float64 with nulls, name: utf8; batches of 4, 0 and 5 rows.
fn multi_batch() -> (SchemaRef, Vec<RecordBatch>) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("value", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = |ids: std::ops::Range<i64>| {
        let values: Float64Array = ids
            .clone()
            .map(|i| (i % 3 != 0).then_some(i as f64 * 0.5))
            .collect();
        let names: StringArray = ids
            .clone()
            .map(|i| (i % 4 != 1).then(|| format!("n{i}")))
            .collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids)) as ArrayRef,
                Arc::new(values),
                Arc::new(names),
            ],
        )
        .expect("batch")
    };
    let batches = vec![batch(0..4), batch(4..4), batch(4..9)];
    (schema, batches)
}

fn dictionary_batches() -> (SchemaRef, Vec<RecordBatch>) {
    let dictionary_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Arc::new(Schema::new(vec![
        Field::new("city", dictionary_type, true),
        Field::new("n", DataType::Int32, false),
    ]));
    let cities: DictionaryArray<Int32Type> = vec![
        Some("oslo"),
        Some("lima"),
        None,
        Some("oslo"),
        Some("quito"),
        Some("lima"),
    ]
    .into_iter()
    .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(cities) as ArrayRef,
            Arc::new(Int32Array::from_iter_values(0..6)),
        ],
    )
    .expect("batch");
    (schema, vec![batch.slice(0, 3), batch.slice(3, 3)])
}

/// The file's bytes, read back.
fn bytes_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

// ---------------------------------------------------------------------------------------------
// Where things are in a file, found with arrow's own flatbuffer accessors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct BlockAt {
    /// Position of the 24-byte Block struct in the footer.
    entry: usize,
    offset: usize,
    meta_len: usize,
    body_len: usize,
}

struct Layout {
    batches: Vec<BlockAt>,
    dictionaries: Vec<BlockAt>,
}

fn position_in(file: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - file.as_ptr() as usize
}

fn blocks_at(start: usize, blocks: Vec<arrow::ipc::Block>) -> Vec<BlockAt> {
    blocks
        .iter()
        .enumerate()
        .map(|(i, block)| BlockAt {
            entry: start + 24 * i,
            offset: block.offset() as usize,
            meta_len: block.metaDataLength() as usize,
            body_len: block.bodyLength() as usize,
        })
        .collect()
}

fn layout(file: &[u8]) -> Layout {
    let len = file.len();
    let footer_len = i32::from_le_bytes(file[len - 10..len - 6].try_into().unwrap()) as usize;
    let footer =
        arrow::ipc::root_as_footer(&file[len - 10 - footer_len..len - 10]).expect("footer");
    let batches = footer.recordBatches().expect("record batches");
    let dictionaries = footer
        .dictionaries()
        .map(|d| blocks_at(position_in(file, d.bytes()), d.iter().copied().collect()))
        .unwrap_or_default();
    Layout {
        batches: blocks_at(
            position_in(file, batches.bytes()),
            batches.iter().copied().collect(),
        ),
        dictionaries,
    }
}

/// The RecordBatch header of the message at `block` (of a record batch or a dictionary batch).
fn batch_header<'a>(file: &'a [u8], block: &BlockAt) -> IpcRecordBatch<'a> {
    let message =
        arrow::ipc::root_as_message(&file[block.offset + 8..block.offset + block.meta_len])
            .expect("message");
    match message.header_as_record_batch() {
        Some(header) => header,
        None => message
            .header_as_dictionary_batch()
            .and_then(|d| d.data())
            .expect("a batch"),
    }
}

/// Position in the file of buffer `index` (16 bytes: offset, length) of the batch at `block`.
fn buffer_entry(file: &[u8], block: &BlockAt, index: usize) -> usize {
    let buffers = batch_header(file, block).buffers().expect("buffers");
    position_in(file, buffers.bytes()) + 16 * index
}

/// Position in the file of field node `index` (16 bytes: length, null count).
fn node_entry(file: &[u8], block: &BlockAt, index: usize) -> usize {
    let nodes = batch_header(file, block).nodes().expect("nodes");
    position_in(file, nodes.bytes()) + 16 * index
}

/// Position in the file of the row count (i64) of the batch at `block`.
fn row_count_at(file: &[u8], block: &BlockAt) -> usize {
    let header = batch_header(file, block);
    let slot = header._tab.vtable().get(IpcRecordBatch::VT_LENGTH) as usize;
    assert!(slot != 0, "row count left out of the flatbuffer");
    position_in(file, header._tab.buf()) + header._tab.loc() + slot
}

fn put_i64(file: &mut [u8], at: usize, value: i64) {
    file[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn corrupt_reason(result: Result<impl std::fmt::Debug, StorageError>) -> String {
    match result {
        Err(StorageError::CorruptFile { reason, .. }) => reason,
        other => panic!("expected CorruptFile, got {other:?}"),
    }
}

/// Opens `path` and decodes every column of every batch; the first error, if any.
fn read_all(path: &Path) -> Result<(), StorageError> {
    let file = IpcFile::open(path)?;
    for batch in 0..file.batches().len() {
        for column in 0..file.schema().fields().len() {
            file.decode_column(batch, column)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Valid files
// ---------------------------------------------------------------------------------------------

#[test]
fn multi_batch_file_opens_with_schema_and_row_counts() {
    let dir = TempDir::new("multi");
    let path = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&path, &schema, &batches, default_options());

    let file = IpcFile::open(&path).expect("open");
    assert_eq!(file.path(), path);
    assert_eq!(file.schema().as_ref(), schema.as_ref());
    assert_eq!(file.batches().len(), 3);
    assert_eq!(
        file.batches()
            .iter()
            .map(|b| b.num_rows)
            .collect::<Vec<_>>(),
        vec![4, 0, 5]
    );
    assert_eq!(file.batch_row_starts(), &[0, 4, 4, 9]);
    assert_eq!(file.num_rows(), 9);
    assert_eq!(file.size(), std::fs::metadata(&path).unwrap().len());
    assert!(file.batches().iter().all(|b| b.compression.is_none()));
}

#[test]
fn decode_column_returns_each_batch_values() {
    let dir = TempDir::new("decode");
    let path = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&path, &schema, &batches, default_options());
    let file = IpcFile::open(&path).expect("open");

    for (index, expected) in batches.iter().enumerate() {
        for column in 0..3 {
            let decoded = file.decode_column(index, column).expect("decode");
            assert_eq!(
                decoded.array.as_ref(),
                expected.column(column).as_ref(),
                "batch {index} column {column}"
            );
        }
    }
    // A fixed-width column of an aligned file is a view of the mapping.
    let ids = file.decode_column(0, 0).unwrap();
    assert!(ids.copy_reason.is_none());
    let address = ids.array.to_data().buffers()[0].as_ptr() as usize;
    assert!(file.mapped_range().contains(&address));

    assert!(matches!(
        file.decode_column(3, 0),
        Err(StorageError::OutOfRange { .. })
    ));
    assert!(matches!(
        file.decode_column(0, 3),
        Err(StorageError::OutOfRange { .. })
    ));
}

#[test]
fn a_file_read_into_memory_keeps_its_values_after_the_file_is_cut_or_rewritten() {
    let dir = TempDir::new("in-memory");
    let path = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&path, &schema, &batches, default_options());
    let file = IpcFile::open_as(&path, IpcAccess::InMemory).expect("open");
    let mapped = IpcFile::open(&path).expect("open");

    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(16)
        .unwrap();
    file.check_unchanged()
        .expect("bytes in memory do not change");
    assert!(matches!(
        mapped.check_unchanged(),
        Err(StorageError::FileChanged { .. })
    ));
    for (index, expected) in batches.iter().enumerate() {
        for column in 0..3 {
            let decoded = file.decode_column(index, column).expect("decode");
            assert_eq!(decoded.array.as_ref(), expected.column(column).as_ref());
        }
    }
    // Columns are still views: of the copy in memory, 64-byte aligned like a mapping.
    let ids = file.decode_column(0, 0).unwrap();
    assert!(ids.copy_reason.is_none());
    let address = ids.array.to_data().buffers()[0].as_ptr() as usize;
    assert!(file.mapped_range().contains(&address));
}

#[test]
fn table_view_select_and_slice_across_batch_boundaries() {
    let dir = TempDir::new("view");
    let path = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&path, &schema, &batches, default_options());
    let view = TableView::new(IpcFile::open(&path).expect("open"));
    assert_eq!(view.num_rows(), 9);

    let selected = view.select(&["name", "id"]).expect("select");
    assert_eq!(selected.column_names(), vec!["name", "id"]);
    // Rows 2..7 span the first batch (2, 3), the empty one, and the third (4, 5, 6).
    let sliced = selected.slice(2, 5);
    assert_eq!(sliced.num_rows(), 5);
    let pieces = sliced.record_batches().expect("record batches");
    assert_eq!(
        pieces.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let ids: Vec<i64> = pieces
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(ids, vec![2, 3, 4, 5, 6]);
    let names: Vec<Option<String>> = pieces
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        names,
        vec![
            Some("n2".into()),
            Some("n3".into()),
            Some("n4".into()),
            None,
            Some("n6".into())
        ]
    );

    let value = view.column("value").expect("column").slice(3, 3);
    let chunks = value.chunks().expect("chunks");
    assert_eq!(
        chunks.iter().map(|c| c.array.len()).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let values: Vec<Option<f64>> = chunks
        .iter()
        .flat_map(|c| {
            c.array
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(values, vec![None, Some(2.0), Some(2.5)]);

    // Slicing past the end is empty, like Python, and still has a typed chunk.
    let past = view.column("id").unwrap().slice(100, 5);
    assert!(past.is_empty());
    let chunks = past.chunks().unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].array.data_type(), &DataType::Int64);
    assert!(view.slice(9, 1).record_batches().unwrap().is_empty());
}

#[test]
fn column_not_found_lists_the_available_columns() {
    let dir = TempDir::new("missing-column");
    let path = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&path, &schema, &batches, default_options());
    let file = IpcFile::open(&path).expect("open");
    let error = file.column_index("nope").unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, StorageError::ColumnNotFound { .. }));
    for name in [
        "\"nope\"",
        "\"id\"",
        "\"value\"",
        "\"name\"",
        &path.display().to_string(),
    ] {
        assert!(message.contains(name), "{message} should contain {name}");
    }
    // A view lists only its own columns.
    let view = TableView::new(file).select(&["id"]).unwrap();
    let message = view.column("value").unwrap_err().to_string();
    assert!(
        message.contains("\"id\"") && !message.contains("\"name\""),
        "{message}"
    );
    assert!(matches!(
        view.select(&["id", "id"]),
        Err(StorageError::OutOfRange { .. })
    ));
}

#[test]
fn dictionary_columns_decode_in_every_batch() {
    let dir = TempDir::new("dictionary");
    let path = dir.join("dict.arrow");
    let (schema, batches) = dictionary_batches();
    write_file(&path, &schema, &batches, default_options());
    let file = IpcFile::open(&path).expect("open");
    assert_eq!(file.num_rows(), 6);
    let mut cities = vec![];
    for batch in 0..2 {
        let decoded = file.decode_column(batch, 0).expect("decode");
        let dictionary = decoded.array.as_dictionary::<Int32Type>();
        let values = dictionary.values().as_string::<i32>();
        cities.extend(
            dictionary
                .keys()
                .iter()
                .map(|k| k.map(|k| values.value(k as usize).to_owned())),
        );
    }
    let expected = ["oslo", "lima", "", "oslo", "quito", "lima"];
    let expected: Vec<Option<String>> = expected
        .iter()
        .map(|s| (!s.is_empty()).then(|| s.to_string()))
        .collect();
    assert_eq!(cities, expected);
}

#[test]
fn misaligned_decimal_buffers_decode_with_a_copy_reason() {
    // With 8-byte alignment a decimal128 buffer (16-byte values) can start 8 bytes off a 16-byte
    // boundary. Leading int64 columns of one row shift it by 8 bytes each, so among these files
    // some have it misaligned; all must decode to the right values, and those that copy say so.
    let dir = TempDir::new("decimal");
    let decimal_type = DataType::Decimal128(20, 3);
    let decimals: Decimal128Array = vec![Some(1_234i128), None, Some(-98_765_432_100i128)]
        .into_iter()
        .collect::<Decimal128Array>()
        .with_data_type(decimal_type.clone());
    let mut reasons = vec![];
    for leading in 0..4 {
        let mut fields = vec![];
        let mut columns: Vec<ArrayRef> = vec![];
        for i in 0..leading {
            fields.push(Field::new(format!("pad{i}"), DataType::Int64, false));
            columns.push(Arc::new(Int64Array::from(vec![1i64, 2, 3])));
        }
        fields.push(Field::new("d", decimal_type.clone(), true));
        columns.push(Arc::new(decimals.clone()));
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
        let path = dir.join(&format!("decimal{leading}.arrow"));
        let options = IpcWriteOptions::try_new(8, false, MetadataVersion::V5).unwrap();
        write_file(&path, &schema, &[batch], options);

        let file = IpcFile::open(&path).expect("open");
        let decoded = file.decode_column(0, leading).expect("decode");
        assert_eq!(
            decoded.array.as_primitive::<Decimal128Type>(),
            &decimals,
            "{leading} leading columns"
        );
        let address = decoded.array.to_data().buffers()[0].as_ptr() as usize;
        assert_eq!(address % 16, 0, "decoded decimals are aligned");
        match &decoded.copy_reason {
            Some(reason) => {
                assert!(reason.contains("aligned"), "{reason}");
                assert!(
                    !file.mapped_range().contains(&address),
                    "a copy is not in the mapping"
                );
            }
            None => assert!(file.mapped_range().contains(&address)),
        }
        reasons.push(decoded.copy_reason.is_some());
    }
    assert!(
        reasons.contains(&true),
        "no file had a misaligned decimal buffer: {reasons:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Files that are not Arrow IPC files
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_file_directory_and_socket_are_refused() {
    let dir = TempDir::new("not-files");
    let missing = dir.join("missing.arrow");
    assert!(
        matches!(IpcFile::open(&missing), Err(StorageError::NotFound { path }) if path == missing)
    );
    assert!(matches!(
        IpcFile::open(&dir.0),
        Err(StorageError::IsDirectory { .. })
    ));
    // A socket is neither a file nor a directory (a FIFO would block open() until a writer came).
    let socket = dir.join("socket.arrow");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind socket");
    match IpcFile::open(&socket) {
        Err(StorageError::NotArrowFile { reason, .. }) => {
            assert!(reason.contains("regular file"), "{reason}")
        }
        other => panic!("expected NotArrowFile, got {other:?}"),
    }
}

#[test]
fn stream_format_and_small_files_are_not_arrow_files() {
    let dir = TempDir::new("stream");
    let (schema, batches) = multi_batch();
    let path = dir.join("stream.arrows");
    let mut writer = StreamWriter::try_new(std::fs::File::create(&path).unwrap(), &schema).unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    // A stream is read too (see `stream_files_read_like_files`); a stream without its schema
    // message is refused.
    assert_eq!(IpcFile::open(&path).unwrap().format(), IpcFormat::Stream);
    let headless = dir.join("headless.arrows");
    std::fs::write(
        &headless,
        [[0xffu8; 4].as_slice(), &[16, 0, 0, 0], &[0; 24]].concat(),
    )
    .unwrap();
    assert!(IpcFile::open(&headless).is_err());
    for content in [&b""[..], b"A", b"ARROW1", b"ARROW1\0\0ARROW1"] {
        let path = dir.join("small.arrow");
        std::fs::write(&path, content).unwrap();
        assert!(
            matches!(IpcFile::open(&path), Err(StorageError::NotArrowFile { .. })),
            "{content:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged files
// ---------------------------------------------------------------------------------------------

#[test]
fn every_truncation_is_a_corrupt_file() {
    let dir = TempDir::new("truncated");
    let path = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&path, &schema, &batches, default_options());
    let data = bytes_of(&path);
    let truncated = dir.join("truncated.arrow");
    for len in 0..data.len() {
        std::fs::write(&truncated, &data[..len]).unwrap();
        match IpcFile::open(&truncated) {
            Err(StorageError::CorruptFile { path, .. }) => assert!(len >= 18 && path == truncated),
            Err(StorageError::NotArrowFile { .. }) => assert!(len < 18, "length {len}"),
            other => panic!("truncated to {len} bytes: {other:?}"),
        }
    }
}

#[test]
fn truncating_in_place_after_open_gives_file_changed() {
    let dir = TempDir::new("truncate-in-place");
    let path = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&path, &schema, &batches, default_options());
    let size = std::fs::metadata(&path).unwrap().len();
    let file = IpcFile::open(&path).expect("open");
    let view = TableView::new(file.clone());
    file.decode_column(0, 0).expect("decode before truncation");

    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    match file.decode_column(2, 0) {
        Err(StorageError::FileChanged {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (size, size / 2));
        }
        other => panic!("expected FileChanged, got {other:?}"),
    }
    assert!(matches!(
        view.record_batches(),
        Err(StorageError::FileChanged { .. })
    ));
    assert!(matches!(
        file.check_unchanged(),
        Err(StorageError::FileChanged { .. })
    ));
}

#[test]
fn buffers_outside_the_body_are_refused_before_arrow_reads_them() {
    let dir = TempDir::new("buffers");
    let source = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&source, &schema, &batches, default_options());
    let data = bytes_of(&source);
    let lay = layout(&data);
    let block = lay.batches[2];
    let body = block.body_len as i64;

    let edits: Vec<(&str, usize, i64)> = vec![
        ("offset past the body", 0, body + 8),
        ("offset far past the body", 0, 1 << 40),
        ("negative offset", 0, -8),
        ("length past the body", 8, body + 1),
        ("huge length", 8, i64::MAX),
        ("negative length", 8, -1),
    ];
    for buffer in [0, 1, 5] {
        for (what, field, value) in &edits {
            let mut damaged = data.clone();
            put_i64(
                &mut damaged,
                buffer_entry(&data, &block, buffer) + field,
                *value,
            );
            let path = dir.join("damaged.arrow");
            std::fs::write(&path, &damaged).unwrap();
            let file = IpcFile::open(&path).expect("the footer is intact");
            // Every column of the batch fails, not only the one that owns the buffer.
            for column in 0..3 {
                let reason = corrupt_reason(file.decode_column(2, column));
                assert!(
                    reason.contains("lies outside the message body"),
                    "buffer {buffer}, {what}: {reason}"
                );
            }
            // The other batches still read.
            file.decode_column(0, 2).expect("batch 0 is intact");
        }
    }
}

#[test]
fn field_nodes_and_row_counts_are_checked() {
    let dir = TempDir::new("nodes");
    let source = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&source, &schema, &batches, default_options());
    let data = bytes_of(&source);
    let lay = layout(&data);
    let path = dir.join("damaged.arrow");
    let write = |damaged: &[u8]| std::fs::write(&path, damaged).unwrap();

    // Negative lengths or null counts, or more nulls than values.
    for (node, field, value) in [(1, 0, -1i64), (1, 8, -1), (2, 8, 1 << 20), (0, 8, 5)] {
        let mut damaged = data.clone();
        put_i64(
            &mut damaged,
            node_entry(&data, &lay.batches[0], node) + field,
            value,
        );
        write(&damaged);
        let reason = corrupt_reason(read_all(&path));
        assert!(reason.contains("field node"), "node {node}: {reason}");
    }
    // A huge first node: the batch's row count and its first column disagree.
    let mut damaged = data.clone();
    put_i64(&mut damaged, node_entry(&data, &lay.batches[0], 0), 1 << 40);
    write(&damaged);
    assert!(corrupt_reason(IpcFile::open(&path)).contains("first column"));
    // A huge node deeper in: arrow-rs's array validation finds the buffers too small.
    let mut damaged = data.clone();
    put_i64(&mut damaged, node_entry(&data, &lay.batches[2], 2), 1 << 40);
    write(&damaged);
    let file = IpcFile::open(&path).expect("open");
    let reason = corrupt_reason(file.decode_column(2, 2));
    assert!(reason.contains("column \"name\""), "{reason}");

    // Row counts: huge with tiny buffers, negative, zero (a batch that would never be decoded),
    // and counts whose total overflows.
    for (batch, rows) in [(0, 1i64 << 40), (0, -1), (0, 0), (2, 6), (2, i64::MAX)] {
        let mut damaged = data.clone();
        put_i64(&mut damaged, row_count_at(&data, &lay.batches[batch]), rows);
        write(&damaged);
        corrupt_reason(read_all(&path));
    }
    let mut damaged = data.clone();
    for block in [&lay.batches[0], &lay.batches[2]] {
        put_i64(&mut damaged, row_count_at(&data, block), i64::MAX);
        // Keep the first node consistent so that only the total is wrong.
        put_i64(&mut damaged, node_entry(&data, block, 0), i64::MAX);
    }
    write(&damaged);
    assert!(corrupt_reason(IpcFile::open(&path)).contains("add up to more than"));
}

#[test]
fn footer_blocks_are_checked() {
    let dir = TempDir::new("blocks");
    let source = dir.join("multi.arrow");
    let (schema, batches) = multi_batch();
    write_file(&source, &schema, &batches, default_options());
    let data = bytes_of(&source);
    let lay = layout(&data);
    let path = dir.join("damaged.arrow");
    let size = data.len() as i64;

    for (field, value) in [
        (0, size),
        (0, -8),
        (0, 0),
        (0, i64::MAX),
        (16, size),
        (16, -1),
        (16, i64::MAX),
    ] {
        let mut damaged = data.clone();
        put_i64(&mut damaged, lay.batches[0].entry + field, value);
        std::fs::write(&path, &damaged).unwrap();
        corrupt_reason(IpcFile::open(&path));
    }
    // Two blocks naming the same message.
    let mut damaged = data.clone();
    let (first, last) = (lay.batches[0], lay.batches[2]);
    damaged.copy_within(first.entry..first.entry + 24, last.entry);
    std::fs::write(&path, &damaged).unwrap();
    assert!(corrupt_reason(IpcFile::open(&path)).contains("overlaps"));
    // A record batch block pointing at the schema message.
    let mut damaged = data.clone();
    put_i64(&mut damaged, first.entry, 8);
    std::fs::write(&path, &damaged).unwrap();
    corrupt_reason(IpcFile::open(&path));
    // Footer lengths that cannot be.
    for footer_len in [-1i32, 0, i32::MAX, data.len() as i32 - 17] {
        let mut damaged = data.clone();
        let at = damaged.len() - 10;
        damaged[at..at + 4].copy_from_slice(&footer_len.to_le_bytes());
        std::fs::write(&path, &damaged).unwrap();
        corrupt_reason(IpcFile::open(&path));
    }
}

#[test]
fn damaged_dictionary_batches_are_corrupt_files_not_panics() {
    let dir = TempDir::new("dictionary-damage");
    let source = dir.join("dict.arrow");
    let (schema, batches) = dictionary_batches();
    write_file(&source, &schema, &batches, default_options());
    let data = bytes_of(&source);
    let lay = layout(&data);
    assert_eq!(lay.dictionaries.len(), 1);
    let block = lay.dictionaries[0];
    let path = dir.join("damaged.arrow");

    for (buffer, field, value) in [
        (1, 0, block.body_len as i64 + 8),
        (2, 8, 1 << 40),
        (2, 0, -16),
    ] {
        let mut damaged = data.clone();
        put_i64(
            &mut damaged,
            buffer_entry(&data, &block, buffer) + field,
            value,
        );
        std::fs::write(&path, &damaged).unwrap();
        let file = IpcFile::open(&path).expect("open");
        let reason = corrupt_reason(file.decode_column(0, 0));
        assert!(
            reason.contains("dictionary batch 0")
                && reason.contains("lies outside the message body"),
            "{reason}"
        );
        // The column without a dictionary still reads.
        file.decode_column(0, 1).expect("plain column");
    }
    // A dictionary block that points at a record batch.
    let mut damaged = data.clone();
    let batch = lay.batches[0];
    put_i64(&mut damaged, block.entry, batch.offset as i64);
    damaged[block.entry + 8..block.entry + 12]
        .copy_from_slice(&(batch.meta_len as i32).to_le_bytes());
    put_i64(&mut damaged, block.entry + 16, batch.body_len as i64);
    std::fs::write(&path, &damaged).unwrap();
    // Either refused at open (the blocks overlap) or when the dictionary is needed.
    corrupt_reason(read_all(&path));
}

// ---------------------------------------------------------------------------------------------
// Compressed record batches and IPC streams
// ---------------------------------------------------------------------------------------------

fn write_stream(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    options: IpcWriteOptions,
) {
    let file = std::fs::File::create(path).expect("create file");
    let mut writer = StreamWriter::try_new_with_options(file, schema, options).expect("writer");
    for batch in batches {
        writer.write(batch).expect("write batch");
    }
    writer.finish().expect("finish");
}

/// Every column of every batch of `path`, as decoded by relay, against `batches`.
fn assert_reads_back(path: &Path, batches: &[RecordBatch], compressed: bool) {
    let file = IpcFile::open(path).unwrap();
    assert_eq!(file.batches().len(), batches.len());
    for (index, batch) in batches.iter().enumerate() {
        for column in 0..batch.num_columns() {
            let decoded = file.decode_column(index, column).unwrap();
            assert_eq!(
                decoded.array.to_data(),
                batch.column(column).to_data(),
                "batch {index} column {column}"
            );
            if compressed {
                let reason = decoded.copy_reason.expect("a copy reason");
                assert!(reason.contains("decompressed into memory"), "{reason}");
            }
        }
    }
}

fn compressed_options(codec: arrow::ipc::CompressionType) -> IpcWriteOptions {
    IpcWriteOptions::default()
        .try_with_compression(Some(codec))
        .unwrap()
}

#[test]
fn compressed_files_and_streams_decode_into_memory() {
    let dir = TempDir::new("compressed");
    let (schema, batches) = multi_batch();
    for codec in [
        arrow::ipc::CompressionType::LZ4_FRAME,
        arrow::ipc::CompressionType::ZSTD,
    ] {
        let path = dir.join("c.arrow");
        write_file(&path, &schema, &batches, compressed_options(codec));
        assert_reads_back(&path, &batches, true);
        let file = IpcFile::open(&path).unwrap();
        assert!(file.batches().iter().all(|b| b.compression == Some(codec)));
        let path = dir.join("c.arrows");
        write_stream(&path, &schema, &batches, compressed_options(codec));
        assert_reads_back(&path, &batches, true);
    }
}

#[test]
fn stream_files_read_like_files() {
    let dir = TempDir::new("streams");
    let (schema, batches) = multi_batch();
    let path = dir.join("s.arrows");
    write_stream(&path, &schema, &batches, default_options());
    assert_reads_back(&path, &batches, false);
    let file = IpcFile::open(&path).unwrap();
    assert_eq!(file.format(), IpcFormat::Stream);
    assert_eq!(file.batch_row_starts(), &[0, 4, 4, 9]);
    // Fixed-width columns of an aligned stream are views of the mapping.
    let id = file.decode_column(0, 0).unwrap();
    assert!(id.copy_reason.is_none());
    assert!(
        file.mapped_range()
            .contains(&(id.array.to_data().buffers()[0].as_ptr() as usize))
    );

    let (schema, batches) = dictionary_batches();
    let path = dir.join("d.arrows");
    write_stream(&path, &schema, &batches, default_options());
    let file = IpcFile::open(&path).unwrap();
    assert_eq!(
        file.num_rows(),
        batches.iter().map(|b| b.num_rows() as u64).sum::<u64>()
    );
    read_all(&path).unwrap();
}

#[test]
fn damaged_streams_name_the_message() {
    let dir = TempDir::new("damaged-streams");
    let (schema, batches) = multi_batch();
    let path = dir.join("s.arrows");
    write_stream(&path, &schema, &batches, default_options());
    let bytes = bytes_of(&path);
    // Every truncation fails (the end-of-stream marker is missing or a message is cut short).
    for cut in 1..bytes.len() {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let result = read_all(&path);
        assert!(result.is_err(), "cut at {cut}");
    }
    // A bad continuation marker on the second message.
    let schema_len = 8 + i32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let mut damaged = bytes.clone();
    damaged[schema_len..schema_len + 4].copy_from_slice(b"JUNK");
    std::fs::write(&path, &damaged).unwrap();
    let reason = corrupt_reason(IpcFile::open(&path));
    assert!(
        reason.contains(&format!("message 1 (byte offset {schema_len})")),
        "{reason}"
    );
    assert!(reason.contains("continuation"), "{reason}");
    // A body length past the end of the file.
    let mut damaged = bytes.clone();
    damaged[schema_len + 4..schema_len + 8].copy_from_slice(&i32::MAX.to_le_bytes());
    std::fs::write(&path, &damaged).unwrap();
    let reason = corrupt_reason(IpcFile::open(&path));
    assert!(reason.contains("message 1"), "{reason}");
}

#[test]
fn damaged_compressed_length_prefixes_are_refused_before_allocating() {
    let dir = TempDir::new("damaged-compressed");
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from_iter_values(0..1000)) as ArrayRef],
    )
    .unwrap();
    let path = dir.join("z.arrow");
    write_file(
        &path,
        &schema,
        &[batch],
        compressed_options(arrow::ipc::CompressionType::ZSTD),
    );
    let bytes = bytes_of(&path);
    let lay = layout(&bytes);
    let block = &lay.batches[0];
    let header = batch_header(&bytes, block);
    let body_start = block.offset + block.meta_len;
    let values = header.buffers().unwrap().get(1);
    let prefix_at = body_start + values.offset() as usize;
    for announced in [i64::MAX, 1 << 50, -5] {
        let mut damaged = bytes.clone();
        put_i64(&mut damaged, prefix_at, announced);
        std::fs::write(&path, &damaged).unwrap();
        let error = read_all(&path).unwrap_err();
        let reason = corrupt_reason(Err::<(), _>(error));
        assert!(reason.contains("decompresses to"), "{reason}");
    }
    // Garbage where the zstd frame should be.
    let mut damaged = bytes.clone();
    for byte in &mut damaged[prefix_at + 8..prefix_at + 16] {
        *byte = 0x5a;
    }
    std::fs::write(&path, &damaged).unwrap();
    assert!(matches!(
        read_all(&path),
        Err(StorageError::CorruptFile { .. })
    ));
}
