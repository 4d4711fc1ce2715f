//! Per record batch column statistics: smallest and largest value, null count and row count,
//! for the optimizer to skip record batches that cannot hold a matching row and to estimate how
//! selective a predicate is.
//!
//! Statistics are computed on first use, by decoding the column of one record batch (a view of
//! the mapping where the file allows) and running arrow-rs's `min` / `max` aggregate kernels
//! over it: one pass over that column's bytes. They are cached per opened file for as long as
//! the file stays open.
//!
//! The cache is keyed by the address of the `IpcFile` allocation and holds a `Weak` to it. A
//! `Weak` keeps the allocation (not the mapping) alive, so no other `IpcFile` can be placed at
//! that address while the entry exists: an entry whose address matches a live file is that
//! file's. Entries of files that were dropped are swept when another file's first entry is
//! added. Keying by path and size instead would be wrong: writers replace files by rename, and
//! a replacement of the same size would be served the old file's statistics.
//!
//! Each opening has its own mapping (see "The view contract" in `ipc.rs`), and a write through
//! an export of one changes what its pages hold, so statistics computed over a frame's own
//! mapping could let another frame's pruning skip batches by values the file does not hold.
//! Statistics are shared between openings of an unchanged file (same path and identity, last
//! written at least `SETTLED_AFTER` before it was opened) only when they were computed over an
//! opening of the file that statistics alone read and that is never exported (`SharedStats`):
//! a scan of a file of many record batches then pays the pass over a filtered column once per
//! file, not once per `scan()` (the first filter of a fresh scan of a 100-batch file of 50 M
//! float32 rows: about 500 ms computing statistics, 100 ms with them shared).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, LargeStringArray, PrimitiveArray,
    StringArray, StringViewArray,
};
use arrow::compute::{
    max, max_boolean, max_string, max_string_view, min, min_boolean, min_string, min_string_view,
};
use arrow::datatypes::DataType;

use crate::error::Result;
use crate::ipc::{FileIdentity, IpcFile};

/// Statistics of one column of one record batch.
///
/// `min` and `max` are one-element arrays of the column's value type (for a dictionary column,
/// the type of its values), so that arrow-rs comparison kernels take them as they take a
/// literal. They are exact for plain columns. For a dictionary column they bound the whole
/// dictionary, which may hold values no row refers to: still a valid lower and upper bound.
/// Floating point values are ordered as arrow-rs orders them (IEEE total order: NaN above
/// every number, -0.0 below +0.0).
#[derive(Debug, Clone)]
pub struct ColumnStats {
    /// The smallest non-null value; None when every row is null or the type has no order that
    /// statistics are kept for (lists, structs, intervals, binary, ...).
    pub min: Option<ArrayRef>,
    /// The largest non-null value; None exactly when `min` is.
    pub max: Option<ArrayRef>,
    /// Rows that are null (for a dictionary, rows whose key or value is null).
    pub null_count: u64,
    pub row_count: u64,
}

impl ColumnStats {
    /// Statistics of a decoded column: one pass over its values.
    pub fn of_array(array: &dyn Array) -> ColumnStats {
        let (min, max) = min_max(array).unzip();
        ColumnStats {
            min,
            max,
            null_count: array.logical_null_count() as u64,
            row_count: array.len() as u64,
        }
    }

    /// Whether every row is null (true for an empty batch too).
    pub fn all_null(&self) -> bool {
        self.null_count >= self.row_count
    }
}

fn primitive_min_max<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
) -> Option<(ArrayRef, ArrayRef)> {
    let one = |value: T::Native| -> ArrayRef {
        Arc::new(
            PrimitiveArray::<T>::from_iter_values([value])
                .with_data_type(array.data_type().clone()),
        )
    };
    Some((one(min(array)?), one(max(array)?)))
}

fn min_max(array: &dyn Array) -> Option<(ArrayRef, ArrayRef)> {
    match array.data_type() {
        // Intervals are (months, days, nanoseconds) triples without a total order.
        DataType::Interval(_) => None,
        DataType::Boolean => {
            let array = array.as_boolean();
            let one = |value: bool| -> ArrayRef { Arc::new(BooleanArray::from(vec![value])) };
            Some((one(min_boolean(array)?), one(max_boolean(array)?)))
        }
        DataType::Utf8 => {
            let array = array.as_string::<i32>();
            let one = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value])) };
            Some((one(min_string(array)?), one(max_string(array)?)))
        }
        DataType::LargeUtf8 => {
            let array = array.as_string::<i64>();
            let one = |value: &str| -> ArrayRef { Arc::new(LargeStringArray::from(vec![value])) };
            Some((one(min_string(array)?), one(max_string(array)?)))
        }
        DataType::Utf8View => {
            let array = array.as_string_view();
            let one = |value: &str| -> ArrayRef { Arc::new(StringViewArray::from(vec![value])) };
            Some((one(min_string_view(array)?), one(max_string_view(array)?)))
        }
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary();
            if dictionary.keys().null_count() == dictionary.keys().len() {
                return None;
            }
            min_max(dictionary.values().as_ref())
        }
        _ => arrow::downcast_primitive_array!(
            array => primitive_min_max(array),
            _ => None
        ),
    }
}

/// The cached statistics of one opened file.
struct FileStats {
    file: Weak<IpcFile>,
    columns: HashMap<(usize, usize), Arc<ColumnStats>>,
}

static CACHE: LazyLock<Mutex<HashMap<usize, FileStats>>> = LazyLock::new(Default::default);

/// Statistics of one unchanged file, shared by its openings.
struct SharedStats {
    /// An opening of the file that only statistics read: never handed to a frame, so its pages
    /// hold the file's bytes.
    source: Arc<IpcFile>,
    /// The openings that looked these statistics up; the entry goes once all of them are gone.
    users: Vec<Weak<IpcFile>>,
    columns: HashMap<(usize, usize), Arc<ColumnStats>>,
}

type SharedKey = (PathBuf, FileIdentity);

static SHARED: LazyLock<Mutex<HashMap<SharedKey, SharedStats>>> = LazyLock::new(Default::default);

fn shared() -> MutexGuard<'static, HashMap<SharedKey, SharedStats>> {
    // The cache holds no invariant a panic elsewhere could break half-way.
    SHARED.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedStats {
    fn add_user(&mut self, file: &Arc<IpcFile>) {
        let user = Arc::downgrade(file);
        if !self.users.iter().any(|known| Weak::ptr_eq(known, &user)) {
            self.users.retain(|known| known.strong_count() > 0);
            self.users.push(user);
        }
    }
}

/// Statistics of column `column` of record batch `batch` shared by the openings of `file`'s
/// unchanged contents, if computed already.
fn shared_stats_computed(
    file: &Arc<IpcFile>,
    key: &SharedKey,
    batch: usize,
    column: usize,
) -> Option<Arc<ColumnStats>> {
    let mut shared = shared();
    let entry = shared.get_mut(key)?;
    let stats = entry.columns.get(&(batch, column))?.clone();
    entry.add_user(file);
    Some(stats)
}

/// Statistics of column `column` of record batch `batch` computed over the statistics' own
/// opening of `file`'s contents (opened on first use), and shared; None where they cannot be
/// (the file is not settled, changed, or fails to open or decode: the caller then decodes its
/// own opening, which reports the error).
fn shared_stats(file: &Arc<IpcFile>, batch: usize, column: usize) -> Option<Arc<ColumnStats>> {
    let key = file.statistics_key()?;
    if let Some(stats) = shared_stats_computed(file, &key, batch, column) {
        return Some(stats);
    }
    let known_source = shared().get(&key).map(|entry| entry.source.clone());
    let source = match known_source {
        Some(source) => source,
        None => {
            let source = IpcFile::open(file.path()).ok()?;
            (source.statistics_key().as_ref() == Some(&key)).then_some(source)?
        }
    };
    // Computed outside the lock: two threads may both compute, and the second result wins.
    let decoded = source.decode_column(batch, column).ok()?;
    let stats = Arc::new(ColumnStats::of_array(decoded.array.as_ref()));
    let mut shared = shared();
    if !shared.contains_key(&key) {
        shared.retain(|_, entry| entry.users.iter().any(|user| user.strong_count() > 0));
    }
    let entry = shared.entry(key).or_insert_with(|| SharedStats {
        source,
        users: Vec::new(),
        columns: HashMap::new(),
    });
    entry.add_user(file);
    entry.columns.insert((batch, column), stats.clone());
    Some(stats)
}

fn cache() -> MutexGuard<'static, HashMap<usize, FileStats>> {
    // The cache holds no invariant a panic elsewhere could break half-way.
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn file_key(file: &Arc<IpcFile>) -> usize {
    Arc::as_ptr(file) as usize
}

/// Statistics of column `column` of record batch `batch` if they were computed already (for
/// this opening, or for the file's unchanged contents through another); never reads column
/// data.
pub fn cached_batch_stats(
    file: &Arc<IpcFile>,
    batch: usize,
    column: usize,
) -> Option<Arc<ColumnStats>> {
    let own = {
        let cache = cache();
        cache.get(&file_key(file)).and_then(|entry| {
            // The entry's Weak holds the allocation at this address, so a live file there is
            // this one.
            debug_assert!(Weak::ptr_eq(&entry.file, &Arc::downgrade(file)));
            entry.columns.get(&(batch, column)).cloned()
        })
    };
    own.or_else(|| {
        let key = file.statistics_key()?;
        shared_stats_computed(file, &key, batch, column)
    })
}

/// Statistics of column `column` of record batch `batch`, computed on first use (one pass over
/// the decoded column) and cached while the file is open. Errors are the decoding errors of
/// `IpcFile::decode_column` (an index out of range, a corrupt batch, a file that changed).
pub fn batch_stats(file: &Arc<IpcFile>, batch: usize, column: usize) -> Result<Arc<ColumnStats>> {
    if let Some(stats) = cached_batch_stats(file, batch, column) {
        return Ok(stats);
    }
    let stats = match shared_stats(file, batch, column) {
        Some(stats) => stats,
        None => {
            // Computed outside the lock: two threads may both compute, and the second result
            // wins.
            let decoded = file.decode_column(batch, column)?;
            Arc::new(ColumnStats::of_array(decoded.array.as_ref()))
        }
    };
    let mut cache = cache();
    let key = file_key(file);
    if !cache.contains_key(&key) {
        cache.retain(|_, entry| entry.file.strong_count() > 0);
    }
    cache
        .entry(key)
        .or_insert_with(|| FileStats {
            file: Arc::downgrade(file),
            columns: HashMap::new(),
        })
        .columns
        .insert((batch, column), stats.clone());
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Float64Array, Int32Array, TimestampMillisecondArray};
    use arrow::datatypes::Int8Type;

    #[test]
    fn numeric_stats_skip_nulls() {
        let stats =
            ColumnStats::of_array(&Int32Array::from(vec![Some(5), None, Some(-3), Some(9)]));
        assert_eq!(
            stats
                .min
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            -3
        );
        assert_eq!(
            stats
                .max
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            9
        );
        assert_eq!((stats.null_count, stats.row_count), (1, 4));
    }

    #[test]
    fn all_null_and_empty_columns_have_no_bounds() {
        let stats = ColumnStats::of_array(&Int32Array::from(vec![None, None]));
        assert!(stats.min.is_none() && stats.max.is_none() && stats.all_null());
        let empty = ColumnStats::of_array(&Float64Array::from(Vec::<f64>::new()));
        assert!(empty.min.is_none() && empty.all_null());
    }

    #[test]
    fn temporal_stats_keep_the_unit_and_time_zone() {
        let array = TimestampMillisecondArray::from(vec![3, 1, 2]).with_timezone("UTC");
        let stats = ColumnStats::of_array(&array);
        assert_eq!(stats.min.unwrap().data_type(), array.data_type());
    }

    #[test]
    fn string_and_dictionary_stats_bound_the_values() {
        let strings =
            ColumnStats::of_array(&StringArray::from(vec![Some("oslo"), None, Some("bergen")]));
        assert_eq!(strings.min.unwrap().as_string::<i32>().value(0), "bergen");
        assert_eq!(strings.max.unwrap().as_string::<i32>().value(0), "oslo");
        let dictionary: DictionaryArray<Int8Type> = vec![Some("b"), None, Some("a"), Some("c")]
            .into_iter()
            .collect();
        let stats = ColumnStats::of_array(&dictionary);
        assert_eq!(stats.min.unwrap().as_string::<i32>().value(0), "a");
        assert_eq!(stats.max.unwrap().as_string::<i32>().value(0), "c");
        assert_eq!(stats.null_count, 1);
    }

    #[test]
    fn bounds_are_fresh_arrays_not_slices_of_the_column() {
        let column = Int32Array::from((0..1000).collect::<Vec<_>>());
        let stats = ColumnStats::of_array(&column);
        assert!(stats.max.unwrap().get_array_memory_size() < 1000);
    }

    #[test]
    fn batch_stats_are_cached_per_open_file() {
        use arrow::array::RecordBatch;
        use arrow::datatypes::{Field, Schema};
        use arrow::ipc::writer::FileWriter;

        let path =
            std::env::temp_dir().join(format!("relay-storage-stats-{}.arrow", std::process::id()));
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)]));
        {
            let mut writer =
                FileWriter::try_new(std::fs::File::create(&path).unwrap(), &schema).unwrap();
            for values in [vec![1, 2, 3], vec![40, 50]] {
                let batch =
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(values))])
                        .unwrap();
                writer.write(&batch).unwrap();
            }
            writer.finish().unwrap();
        }
        let file = IpcFile::open(&path).unwrap();
        assert!(cached_batch_stats(&file, 1, 0).is_none());
        let stats = batch_stats(&file, 1, 0).unwrap();
        assert_eq!(
            stats
                .min
                .as_ref()
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            40
        );
        assert!(Arc::ptr_eq(
            &cached_batch_stats(&file, 1, 0).unwrap(),
            &stats
        ));
        assert!(batch_stats(&file, 2, 0).is_err());
        assert!(batch_stats(&file, 0, 1).is_err());
        // Another opening of a file written moments ago shares nothing with this one (see
        // `SETTLED_AFTER`).
        let reopened = IpcFile::open(&path).unwrap();
        assert!(cached_batch_stats(&reopened, 1, 0).is_none());
        drop(file);
        assert_eq!(batch_stats(&reopened, 0, 0).unwrap().row_count, 3);
        let _ = std::fs::remove_file(&path);
    }
}
