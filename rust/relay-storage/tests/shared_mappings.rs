//! Each opening of a file has a mapping of its own, even of an unchanged file; columns are
//! decoded and validated once per mapping.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use arrow::array::{Array, ArrayRef, DictionaryArray, Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use arrow::ipc::writer::FileWriter;
use relay_storage::{IpcFile, StorageError, batch_stats, cached_batch_stats};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "relay-shared-{}-{name}-{unique}",
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

/// city: dictionary<int32, utf8>, n: int32; two batches of `rows` rows, `n` starting at `first`.
fn write(path: &Path, first: i32, rows: i32) {
    let dictionary_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Arc::new(Schema::new(vec![
        Field::new("city", dictionary_type, true),
        Field::new("n", DataType::Int32, false),
    ]));
    // One dictionary for the whole file: IPC files cannot replace it between batches.
    let cities: DictionaryArray<Int32Type> = (first..first + 2 * rows)
        .map(|i| ["oslo", "lima", "quito"][i as usize % 3])
        .collect();
    let numbers = Int32Array::from_iter_values(first..first + 2 * rows);
    let all = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(cities) as ArrayRef, Arc::new(numbers)],
    )
    .expect("batch");
    let mut writer =
        FileWriter::try_new(std::fs::File::create(path).expect("create"), &schema).expect("writer");
    for batch in 0..2 {
        writer
            .write(&all.slice((batch * rows) as usize, rows as usize))
            .expect("write");
    }
    writer.finish().expect("finish");
}

/// Moves the file's modification time a minute back, as for a file written long before it is
/// read.
fn settle(path: &Path) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open for times");
    file.set_modified(SystemTime::now() - Duration::from_secs(60))
        .expect("set mtime");
}

fn first_value(file: &IpcFile, batch: usize) -> i32 {
    let decoded = file.decode_column(batch, 1).expect("decode");
    decoded
        .array
        .as_any()
        .downcast_ref::<Int32Array>()
        .expect("int32")
        .value(0)
}

#[test]
fn each_opening_of_an_unchanged_file_has_its_own_mapping() {
    let dir = TempDir::new("twice");
    let path = dir.join("data.arrow");
    write(&path, 0, 100);
    settle(&path);
    let first = IpcFile::open(&path).expect("open");
    let second = IpcFile::open(&path).expect("open again");
    assert!(!Arc::ptr_eq(&first, &second));
    assert_ne!(first.mapped_range(), second.mapped_range());
    // Statistics of the file's unchanged contents are computed once for both.
    let stats = batch_stats(&first, 1, 1).expect("stats");
    assert!(Arc::ptr_eq(
        &cached_batch_stats(&second, 1, 1).expect("shared"),
        &stats
    ));
    // A file written moments ago shares none: a write in place could keep its times.
    let recent = dir.join("recent.arrow");
    write(&recent, 0, 100);
    let (first, second) = (
        IpcFile::open(&recent).unwrap(),
        IpcFile::open(&recent).unwrap(),
    );
    batch_stats(&first, 1, 1).expect("stats");
    assert!(cached_batch_stats(&second, 1, 1).is_none());
}

#[test]
fn statistics_never_see_a_write_through_a_view() {
    let dir = TempDir::new("stats-written");
    let path = dir.join("data.arrow");
    write(&path, 0, 100);
    settle(&path);
    let writer = IpcFile::open(&path).expect("open");
    let column = writer.decode_column(1, 1).expect("decode");
    let values = column.array.to_data().buffers()[0].as_ptr() as *mut i32;
    // SAFETY: the buffer is a view of `writer`'s private, writable mapping (mapped with
    // `map_copy`), at least 100 int32 values long, and nothing reads it concurrently.
    unsafe { values.write(1_000_000) };
    assert_eq!(first_value(&writer, 1), 1_000_000);
    // Computed through the writer's opening, the statistics still describe the file.
    let stats = batch_stats(&writer, 1, 1).expect("stats");
    let max = stats.max.as_ref().expect("max");
    let max = max
        .as_any()
        .downcast_ref::<Int32Array>()
        .expect("int32")
        .value(0);
    assert_eq!(max, 199);
    let reader = IpcFile::open(&path).expect("open again");
    assert!(Arc::ptr_eq(
        &batch_stats(&reader, 1, 1).expect("stats"),
        &stats
    ));
}

#[test]
fn a_write_through_one_openings_view_is_not_seen_by_the_next_opening() {
    let dir = TempDir::new("written");
    let path = dir.join("data.arrow");
    write(&path, 0, 100);
    settle(&path);
    let first = IpcFile::open(&path).expect("open");
    let column = first.decode_column(0, 1).expect("decode");
    assert_eq!(first_value(&first, 0), 0);
    // What torch does with an exported view that it takes as writable (it ignores DLPack's
    // read-only flag): a write through the pointer into the private mapping.
    let values = column.array.to_data().buffers()[0].as_ptr() as *mut i32;
    assert!(first.mapped_range().contains(&(values as usize)));
    // SAFETY: the buffer is a view of `first`'s private, writable mapping (mapped with
    // `map_copy`), at least 100 int32 values long, and nothing reads it concurrently.
    unsafe { values.write(42) };
    assert_eq!(
        first_value(&first, 0),
        42,
        "the writer's own opening sees its write"
    );
    let second = IpcFile::open(&path).expect("open again");
    assert_eq!(first_value(&second, 0), 0, "a fresh opening reads the file");
    assert_eq!(
        std::fs::read(&path).expect("read").len() as u64,
        second.size()
    );
}

#[test]
fn a_replaced_or_rewritten_file_gets_a_mapping_of_its_own() {
    let dir = TempDir::new("replaced");
    let path = dir.join("data.arrow");
    write(&path, 0, 100);
    settle(&path);
    let original = IpcFile::open(&path).expect("open");

    // Replaced by rename (a new inode, the same size).
    let next = dir.join("next.arrow");
    write(&next, 1000, 100);
    settle(&next);
    std::fs::rename(&next, &path).expect("rename");
    let replaced = IpcFile::open(&path).expect("open the replacement");
    assert!(!Arc::ptr_eq(&original, &replaced));
    assert_eq!(first_value(&replaced, 0), 1000);
    assert_eq!(
        first_value(&original, 0),
        0,
        "the first opening keeps its own file"
    );

    // Written in place with the same size: new times, so a new mapping.
    write(&path, 2000, 100);
    let rewritten = IpcFile::open(&path).expect("open the rewritten file");
    assert!(!Arc::ptr_eq(&replaced, &rewritten));
    assert_eq!(first_value(&rewritten, 1), 2100);
}

#[test]
fn a_mapping_still_reports_a_truncated_file() {
    let dir = TempDir::new("truncated");
    let path = dir.join("data.arrow");
    write(&path, 0, 1000);
    settle(&path);
    let file = IpcFile::open(&path).expect("open");
    file.decode_column(0, 0).expect("decode");
    let size = std::fs::metadata(&path).expect("stat").len();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open for writing")
        .set_len(size / 2)
        .expect("truncate");
    // Decoded columns are cached, yet each read still checks the file first.
    assert!(matches!(
        file.decode_column(0, 0),
        Err(StorageError::FileChanged { .. })
    ));
    assert!(matches!(
        file.decode_column(1, 1),
        Err(StorageError::FileChanged { .. })
    ));
    // Opening again maps the truncated file, whose footer is gone.
    assert!(IpcFile::open(&path).is_err());
}

#[test]
fn columns_are_decoded_once_per_mapping() {
    let dir = TempDir::new("decoded");
    let path = dir.join("data.arrow");
    write(&path, 0, 1000);
    let file = IpcFile::open(&path).expect("open");
    let first = file.decode_column(1, 0).expect("decode");
    let again = file.decode_column(1, 0).expect("decode again");
    assert!(
        Arc::ptr_eq(&first.array, &again.array),
        "the same decoded array"
    );
    assert!(first.copy_reason.is_none());
    // A fixed-width column validates in constant time: it is decoded on each read, not kept.
    let numbers = file.decode_column(1, 1).expect("decode");
    assert!(!Arc::ptr_eq(
        &numbers.array,
        &file.decode_column(1, 1).expect("decode").array
    ));
    // A write in place (same size) changes the times: the column is decoded afresh, and
    // from then on on every read.
    let bytes = std::fs::read(&path).expect("read");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, &bytes).expect("rewrite in place");
    let after_write = file.decode_column(1, 0).expect("decode after the write");
    assert!(!Arc::ptr_eq(&first.array, &after_write.array));
    assert_eq!(after_write.array.len(), 1000);
    let once_more = file.decode_column(1, 0).expect("decode once more");
    assert!(!Arc::ptr_eq(&after_write.array, &once_more.array));
}

#[test]
fn dictionary_keys_outside_the_dictionary_are_corrupt_files() {
    let dir = TempDir::new("keys");
    let path = dir.join("data.arrow");
    write(&path, 0, 600);
    let bytes = std::fs::read(&path).expect("read");
    // The keys of the first batch: 0, 1, 2, 0, 1, 2, ... as little-endian int32.
    let pattern: Vec<u8> = [0i32, 1, 2, 0, 1, 2]
        .iter()
        .flat_map(|k| k.to_le_bytes())
        .collect();
    let at = bytes
        .windows(pattern.len())
        .position(|w| w == pattern.as_slice())
        .expect("keys in the file");
    for bad_key in [3i32, -1, i32::MAX] {
        let mut damaged = bytes.clone();
        damaged[at + 4..at + 8].copy_from_slice(&bad_key.to_le_bytes());
        let damaged_path = dir.join(&format!("damaged{bad_key}.arrow"));
        std::fs::write(&damaged_path, &damaged).expect("write");
        let file = IpcFile::open(&damaged_path).expect("the footer is intact");
        match file.decode_column(0, 0) {
            Err(StorageError::CorruptFile { reason, .. }) => {
                assert!(reason.contains("city"), "{reason}")
            }
            other => panic!("key {bad_key}: expected a corrupt file, got {other:?}"),
        }
        file.decode_column(0, 1).expect("the other column reads");
    }
    let file = IpcFile::open(&path).expect("open");
    let cities = file.decode_column(0, 0).expect("decode");
    assert_eq!(cities.array.len(), 600);
    assert!(cities.copy_reason.is_none());
}
