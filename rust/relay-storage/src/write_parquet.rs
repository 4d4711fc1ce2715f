//! Writing Parquet files with the `parquet` crate's `ArrowWriter`.
//!
//! Like every file relay writes (see `write.rs`), the file is written under a temporary name in
//! the same folder, synced and renamed over its path: readers of the old file keep it, and a
//! failed or interrupted write leaves the path as it was and no temporary file behind.
//!
//! The Arrow schema is stored in the file's metadata (`ARROW:schema`), so dictionary columns,
//! time zones and other Arrow types that Parquet has no exact type for read back as they were
//! written, in relay, pyarrow and Polars. Column statistics and the page index are written, so
//! that readers skip row groups and pages a predicate rules out.

use std::fs::File;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use crate::error::{Result, StorageError};
use crate::write::{PendingFile, WriteSummary};

/// Rows per row group unless asked otherwise: 1 Mi rows, the `parquet` crate's default and the
/// size the benchmark workloads are written with.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 1 << 20;

/// How a Parquet file is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParquetWriteOptions {
    /// The codec of every column chunk: "zstd", "lz4" (Parquet's LZ4_RAW), "snappy" or
    /// "uncompressed".
    pub compression: String,
    /// The codec's level; only zstd takes one (1 to 22; 3 when None).
    pub compression_level: Option<i32>,
    /// Rows per row group (the last one may hold fewer); at least 1.
    pub row_group_rows: usize,
}

impl Default for ParquetWriteOptions {
    fn default() -> Self {
        ParquetWriteOptions {
            compression: "zstd".into(),
            compression_level: None,
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
        }
    }
}

impl ParquetWriteOptions {
    /// The `parquet` crate's writer properties, or `OutOfRange` naming the invalid option.
    fn properties(&self) -> Result<WriterProperties> {
        let level_refused = |codec: &str| StorageError::OutOfRange {
            what: "compression_level",
            detail: format!("{codec} takes no level; only zstd does"),
        };
        let compression = match (self.compression.as_str(), self.compression_level) {
            ("zstd", level) => {
                let level = ZstdLevel::try_new(level.unwrap_or(3)).map_err(|_| {
                    StorageError::OutOfRange {
                        what: "compression_level",
                        detail: format!(
                            "zstd levels run from 1 to 22, got {}",
                            level.expect("the default level is valid")
                        ),
                    }
                })?;
                Compression::ZSTD(level)
            }
            ("lz4", None) => Compression::LZ4_RAW,
            ("snappy", None) => Compression::SNAPPY,
            ("uncompressed", None) => Compression::UNCOMPRESSED,
            (codec @ ("lz4" | "snappy" | "uncompressed"), Some(_)) => {
                return Err(level_refused(codec));
            }
            (other, _) => {
                return Err(StorageError::OutOfRange {
                    what: "compression",
                    detail: format!(
                        "expected \"zstd\", \"lz4\", \"snappy\" or \"uncompressed\", got {other:?}"
                    ),
                });
            }
        };
        if self.row_group_rows == 0 {
            return Err(StorageError::OutOfRange {
                what: "row_group_size",
                detail: "it must be at least 1".into(),
            });
        }
        Ok(WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(None)
            .build())
    }
}

/// Writes `batches` (all of schema `schema`) to `path` as a Parquet file, in row groups of
/// `options.row_group_rows` rows. Returns the rows, the row groups (as `batches`) and the
/// file's size.
///
/// Errors: `OutOfRange` for an invalid option (before anything is written), `WrongFormat` for a
/// directory, `Unsupported` for a column type Parquet cannot hold (the message names it),
/// `WriteFailed` / `Io` when encoding or the file system fails; in every case `path` keeps what
/// it had.
pub fn write_parquet_file(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    options: &ParquetWriteOptions,
) -> Result<WriteSummary> {
    let mut writer = ParquetFileWriter::create(path, schema, options)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
}

/// A Parquet file written batch by batch under a temporary name, renamed into place by
/// `finish`. Dropped unfinished, it removes the temporary file and leaves the path as it was.
pub struct ParquetFileWriter {
    path: std::path::PathBuf,
    // Declared before `pending` so that it is dropped (and stops writing) first.
    writer: ArrowWriter<File>,
    pending: PendingFile,
    schema: SchemaRef,
    rows: u64,
}

impl ParquetFileWriter {
    pub fn create(path: &Path, schema: &SchemaRef, options: &ParquetWriteOptions) -> Result<Self> {
        let properties = options.properties()?;
        if let Some((column, union)) = union_column(schema) {
            // The `parquet` crate has no mapping for unions: it panics on one
            // ("not implemented: See ARROW-8817"), so they are refused before it sees them.
            return Err(StorageError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "column {column:?} holds a {}: Parquet has no union type (cast or split the column first)",
                    crate::type_name(union)
                ),
            });
        }
        if path.is_dir() {
            return Err(StorageError::WrongFormat {
                path: path.to_owned(),
                format: "parquet",
                reason: "it is a directory".into(),
            });
        }
        let pending = PendingFile::beside(path)?;
        let file = pending
            .file()
            .try_clone()
            .map_err(crate::write::io_error(path, "dup"))?;
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(|error| {
                StorageError::Unsupported {
                    path: path.to_owned(),
                    reason: format!("cannot write this schema as Parquet: {error}"),
                }
            })?;
        Ok(ParquetFileWriter {
            path: path.to_owned(),
            writer,
            pending,
            schema: schema.clone(),
            rows: 0,
        })
    }

    /// Adds the rows of `batch` (of the writer's schema); full row groups are written out.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(StorageError::SchemaMismatch {
                path: self.path.clone(),
                file_schema: format!("{:?}", self.schema.fields()),
                frame_schema: format!("{:?}", batch.schema().fields()),
            });
        }
        self.writer
            .write(batch)
            .map_err(|error| encode_error(&self.path, error))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Writes the last row group and the footer, syncs the file and renames it into place.
    pub fn finish(self) -> Result<WriteSummary> {
        let ParquetFileWriter {
            path,
            writer,
            pending,
            rows,
            ..
        } = self;
        let metadata = writer.close().map_err(|error| encode_error(&path, error))?;
        let bytes = pending
            .file()
            .metadata()
            .map_err(crate::write::io_error(&path, "stat"))?
            .len();
        pending.commit(&path, true).map_err(|(_, error)| error)?;
        Ok(WriteSummary {
            rows,
            batches: metadata.num_row_groups() as u64,
            bytes,
        })
    }
}

/// The first column of `schema` that is or holds a union, with the union's type.
fn union_column(schema: &SchemaRef) -> Option<(&str, &DataType)> {
    schema.fields().iter().find_map(|field| {
        // Walked with a stack, not recursion: a nested type may be deep.
        let mut pending = vec![field.data_type()];
        while let Some(data_type) = pending.pop() {
            match data_type {
                DataType::Union(..) => return Some((field.name().as_str(), data_type)),
                DataType::List(child)
                | DataType::LargeList(child)
                | DataType::ListView(child)
                | DataType::LargeListView(child)
                | DataType::FixedSizeList(child, _)
                | DataType::Map(child, _) => pending.push(child.data_type()),
                DataType::Struct(children) => {
                    pending.extend(children.iter().map(|child| child.data_type()))
                }
                DataType::Dictionary(_, values) => pending.push(values),
                DataType::RunEndEncoded(_, values) => pending.push(values.data_type()),
                _ => {}
            }
        }
        None
    })
}

/// A type the `parquet` crate cannot encode is the caller's to fix (`Unsupported`); anything
/// else failed while writing.
fn encode_error(path: &Path, error: ParquetError) -> StorageError {
    match error {
        ParquetError::NYI(reason) => StorageError::Unsupported {
            path: path.to_owned(),
            reason: format!("cannot write this frame as Parquet: {reason}"),
        },
        error => StorageError::WriteFailed {
            path: path.to_owned(),
            reason: error.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{DictionaryArray, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    use super::*;
    use crate::decoded::DecodedFile;
    use crate::parquet::ParquetFile;

    fn temp_dir() -> crate::test_support::TempDir {
        crate::test_support::temp_dir("relay-write-parquet-test")
    }

    fn batch(start: i64, rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "city",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        let cities = DictionaryArray::<Int32Type>::new(
            Int32Array::from(
                (0..rows)
                    .map(|i| (i % 5 != 0).then_some((i % 2) as i32))
                    .collect::<Vec<_>>(),
            ),
            // Each batch has a dictionary of its own.
            Arc::new(StringArray::from(vec![
                format!("a{start}"),
                format!("b{start}"),
            ])),
        );
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(start..start + rows)),
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| (i % 3 != 0).then(|| format!("n{i}"))),
                )),
                Arc::new(cities),
            ],
        )
        .unwrap()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn round_trips_in_row_groups_with_every_codec() {
        let dir = temp_dir();
        let batches = [batch(0, 7), batch(7, 10)];
        let schema = batches[0].schema();
        for (codec, level) in [
            ("zstd", None),
            ("zstd", Some(9)),
            ("lz4", None),
            ("snappy", None),
            ("uncompressed", None),
        ] {
            let path = dir.join(format!("{codec}{level:?}.parquet"));
            let options = ParquetWriteOptions {
                compression: codec.into(),
                compression_level: level,
                row_group_rows: 5,
            };
            let summary = write_parquet_file(&path, &schema, &batches, &options).unwrap();
            assert_eq!((summary.rows, summary.batches), (17, 4));
            assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());
            let file = ParquetFile::open(&path).unwrap();
            assert_eq!(file.schema(), schema);
            let read: Vec<RecordBatch> = (0..file.num_pieces())
                .flat_map(|piece| file.read_piece(piece, &[0, 1, 2], 100).unwrap())
                .collect();
            let read = arrow::compute::concat_batches(&schema, &read).unwrap();
            let expected = arrow::compute::concat_batches(&schema, &batches).unwrap();
            // Dictionaries are re-encoded; compare the values.
            for column in 0..3 {
                let cast = |array: &dyn arrow::array::Array| {
                    arrow::compute::cast(array, &DataType::Utf8)
                        .unwrap_or_else(|_| arrow::array::make_array(array.to_data()))
                };
                assert_eq!(
                    &cast(read.column(column).as_ref()),
                    &cast(expected.column(column).as_ref()),
                    "{codec} column {column}"
                );
            }
        }
        assert!(files_in(&dir).iter().all(|name| name.ends_with(".parquet")));
    }

    #[test]
    fn a_union_column_is_refused_by_name_before_writing() {
        use arrow::array::{Array, ArrayRef, StructArray, UnionArray};
        use arrow::buffer::ScalarBuffer;
        use arrow::datatypes::UnionFields;

        let dir = temp_dir();
        let path = dir.join("out.parquet");
        std::fs::write(&path, b"old").unwrap();
        let fields = UnionFields::try_new(
            [0, 1],
            [
                Field::new("int", DataType::Int32, true),
                Field::new("str", DataType::Utf8, true),
            ],
        )
        .unwrap();
        let union = UnionArray::try_new(
            fields,
            ScalarBuffer::from(vec![0_i8, 1]),
            None,
            vec![
                Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap();
        // At the top level, and inside a struct.
        let nested = StructArray::from(vec![(
            Arc::new(Field::new("inner", union.data_type().clone(), true)),
            Arc::new(union.clone()) as ArrayRef,
        )]);
        for (name, column) in [
            ("u", Arc::new(union) as ArrayRef),
            ("s", Arc::new(nested) as ArrayRef),
        ] {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new(name, column.data_type().clone(), true),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![1, 2])), column],
            )
            .unwrap();
            match write_parquet_file(&path, &schema, &[batch], &Default::default()) {
                Err(StorageError::Unsupported { reason, .. }) => {
                    assert!(reason.contains(&format!("column {name:?}")), "{reason}");
                    assert!(reason.contains("union"), "{reason}");
                }
                other => panic!("{name}: {other:?}"),
            }
            assert_eq!(std::fs::read(&path).unwrap(), b"old");
        }
        assert_eq!(files_in(&dir), ["out.parquet"]);
    }

    #[test]
    fn invalid_options_write_nothing() {
        let dir = temp_dir();
        let path = dir.join("out.parquet");
        let schema = batch(0, 1).schema();
        for (codec, level, rows, what) in [
            ("gzip", None, 10, "compression"),
            ("zstd", Some(30), 10, "compression_level"),
            ("snappy", Some(1), 10, "compression_level"),
            ("zstd", None, 0, "row_group_size"),
        ] {
            let options = ParquetWriteOptions {
                compression: codec.into(),
                compression_level: level,
                row_group_rows: rows,
            };
            match write_parquet_file(&path, &schema, &[], &options) {
                Err(StorageError::OutOfRange { what: got, .. }) => assert_eq!(got, what),
                other => panic!("{codec} {level:?} {rows}: {other:?}"),
            }
        }
        assert!(files_in(&dir).is_empty());
    }

    #[test]
    fn replaces_an_existing_file_and_cleans_up_on_failure() {
        let dir = temp_dir();
        let path = dir.join("out.parquet");
        std::fs::write(&path, b"old contents").unwrap();
        let batches = [batch(0, 3)];
        write_parquet_file(
            &path,
            &batches[0].schema(),
            &batches,
            &ParquetWriteOptions::default(),
        )
        .unwrap();
        assert_eq!(ParquetFile::open(&path).unwrap().piece_rows(0), Some(3));
        // A batch of another schema fails the write: the file keeps what it had.
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)])),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        let error = write_parquet_file(
            &path,
            &batches[0].schema(),
            &[batches[0].clone(), other],
            &Default::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, StorageError::SchemaMismatch { .. }),
            "{error}"
        );
        assert_eq!(ParquetFile::open(&path).unwrap().piece_rows(0), Some(3));
        assert_eq!(files_in(&dir), vec!["out.parquet".to_string()]);
        // A folder as the target.
        assert!(matches!(
            write_parquet_file(&dir, &batches[0].schema(), &batches, &Default::default()),
            Err(StorageError::WrongFormat { .. })
        ));
    }

    #[test]
    fn empty_input_writes_the_schema() {
        let dir = temp_dir();
        let path = dir.join("empty.parquet");
        let schema = batch(0, 1).schema();
        let summary = write_parquet_file(&path, &schema, &[], &Default::default()).unwrap();
        assert_eq!((summary.rows, summary.batches), (0, 0));
        let file = ParquetFile::open(&path).unwrap();
        assert_eq!(file.schema(), schema);
        assert_eq!(file.num_pieces(), 0);
    }
}
