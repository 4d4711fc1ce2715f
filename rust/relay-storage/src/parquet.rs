//! Parquet files, decoded with the `parquet` crate's Arrow reader, one row group at a time.
//!
//! Opening reads the footer once (with the page index where the file has one) into an
//! `ArrowReaderMetadata` that every later read reuses: decoding a row group reads only that row
//! group's column chunks. Pieces are row groups, so different row groups of one file decode in
//! parallel from several threads; each read builds its own decoder over the shared metadata.
//!
//! Reads go through `pread` on the opened file (`PositionalFile`) rather than a memory map.
//! Parquet pages are decoded (and usually decompressed) into new buffers anyway, so a mapping
//! would save at most one copy of the compressed bytes, and it would turn a file truncated by
//! another process into SIGBUS in the middle of a decode; a short `pread` is an error we
//! report. Positional reads share no file offset, so concurrent decodes cannot disturb each
//! other (the `parquet` crate's own `ChunkReader for File` seeks a shared descriptor).
//!
//! The file is untrusted input: the `parquet` crate validates the footer and pages and returns
//! errors for what it recognizes as damaged; anything it still panics on is caught and reported
//! as a malformed file, naming the row group and, where one column alone fails, the column.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::basic::Type as PhysicalType;
use parquet::errors::ParquetError;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::reader::{ChunkReader, Length};

use crate::decoded::{
    DecodedFile, PieceBatches, PositionalFile, PositionalReader, Projection, SelectedColumnReader,
    catch_decoder_panic, check_piece_and_columns, decoded_roots,
};
use crate::error::{Result, StorageError};
use crate::parquet_selected::{SelectedColumn, SelectedError, selectable};
use crate::stats::ColumnStats;

const FORMAT: &str = "parquet";
const MAGIC: &[u8; 4] = b"PAR1";
/// Magic of a file whose footer is encrypted (Parquet modular encryption).
const ENCRYPTED_MAGIC: &[u8; 4] = b"PARE";
/// Leading magic, footer length (u32) and trailing magic: the smallest possible file.
const MIN_FILE_LEN: u64 = 12;

/// An opened Parquet file: its decoded footer, and per column the statistics of every row
/// group, converted on first use.
pub struct ParquetFile {
    path: PathBuf,
    reader: PositionalFile,
    metadata: ArrowReaderMetadata,
    /// Per column of the Arrow schema: the statistics of each row group, None where the file
    /// keeps none that are exact.
    stats: Vec<OnceLock<Vec<Option<ColumnStats>>>>,
}

impl std::fmt::Debug for ParquetFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetFile")
            .field("path", &self.path)
            .field("bytes", &self.reader.len)
            .field("row_groups", &self.metadata.metadata().num_row_groups())
            .finish()
    }
}

impl ParquetFile {
    /// Opens the file and reads its footer (and page index, where there is one).
    ///
    /// Errors: `NotFound`; `WrongFormat` for a directory, a file that is not a regular file, one
    /// too short for the magic and footer, or one without the `PAR1` magic at both ends;
    /// `Unsupported` for an encrypted footer; `Malformed` (place "footer") when the footer
    /// cannot be decoded.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<ParquetFile>> {
        let path = path.as_ref().to_owned();
        let reader = PositionalFile::open(&path, FORMAT)?;
        check_magic(&path, &reader)?;
        check_schema_depth(&path, &reader)?;
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let metadata = catch_decoder_panic(
            &path,
            FORMAT,
            || "footer".into(),
            || {
                ArrowReaderMetadata::load(&reader, options.clone())
                    .and_then(|loaded| legacy_compatible(loaded, options))
                    .map_err(|error| parquet_error(&path, "footer".into(), error))
            },
        )?;
        check_row_counts(&path, metadata.metadata())?;
        let columns = metadata.schema().fields().len();
        Ok(Arc::new(ParquetFile {
            path,
            reader,
            metadata,
            stats: (0..columns).map(|_| OnceLock::new()).collect(),
        }))
    }

    /// The decoded footer: row groups, column chunks, statistics, key-value metadata.
    pub fn metadata(&self) -> &ArrowReaderMetadata {
        &self.metadata
    }

    /// A decoder of `columns` of row group `piece`, in file order of the columns (the order
    /// the `parquet` crate produces).
    /// With `rows`, only those rows (ranges within the row group): arrow-rs then skips the
    /// pages outside them, reading the page index's offsets.
    fn decoder(
        &self,
        piece: usize,
        roots: &[usize],
        batch_size: usize,
        rows: Option<&[Range<u64>]>,
    ) -> Result<ParquetRecordBatchReader, ParquetError> {
        let mask = ProjectionMask::roots(self.metadata.parquet_schema(), roots.iter().copied());
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.reader.clone(),
            self.metadata.clone(),
        )
        .with_projection(mask)
        .with_row_groups(vec![piece])
        .with_batch_size(batch_size.max(1));
        if let Some(rows) = rows {
            builder = builder.with_row_selection(self.row_selection(piece, rows));
        }
        builder.build()
    }

    /// The rows `rows` (ranges within row group `piece`) as the Arrow reader selects them.
    fn row_selection(&self, piece: usize, rows: &[Range<u64>]) -> RowSelection {
        let total = self.piece_rows(piece).unwrap_or_default() as usize;
        RowSelection::from_consecutive_ranges(
            rows.iter()
                .map(|range| range.start as usize..range.end as usize),
            total,
        )
    }

    /// The rows a decode of row group `piece` (at `rows`, or all) must return.
    fn expected_rows(&self, piece: usize, rows: Option<&[Range<u64>]>) -> u64 {
        match rows {
            Some(rows) => self.row_selection(piece, rows).row_count() as u64,
            None => self.piece_rows(piece).unwrap_or_default(),
        }
    }

    /// The column whose decode alone fails in row group `piece`, or returns other than the row
    /// group's rows, for an error message.
    fn failing_column(&self, piece: usize, roots: &[usize]) -> Option<usize> {
        if roots.len() < 2 {
            return roots.first().copied();
        }
        let expected = self.expected_rows(piece, None);
        roots.iter().copied().find(|&root| {
            let decoded = catch_unwind(AssertUnwindSafe(|| {
                self.decoder(piece, &[root], 8192, None)?
                    .map(|batch| batch.map(|batch| batch.num_rows() as u64))
                    .sum::<Result<u64, _>>()
            }));
            !matches!(decoded, Ok(Ok(rows)) if rows == expected)
        })
    }

    /// Where a decode of `roots` of row group `piece` failed, for an error message.
    fn failure_place(&self, piece: usize, roots: &[usize]) -> String {
        match self.failing_column(piece, roots) {
            Some(column) => format!(
                "row group {piece}, column {:?}",
                self.metadata.schema().field(column).name()
            ),
            None => format!("row group {piece}"),
        }
    }

    /// The error for a decode of `roots` of row group `piece` that returned `decoded` rows where
    /// the footer says `expected`.
    fn row_count_error(
        &self,
        piece: usize,
        roots: &[usize],
        expected: u64,
        decoded: u64,
    ) -> StorageError {
        if let Err(changed) = self.reader.check_unchanged(&self.path) {
            return changed;
        }
        let more = if decoded > expected { "at least " } else { "" };
        StorageError::Malformed {
            path: self.path.clone(),
            format: FORMAT,
            place: self.failure_place(piece, roots),
            reason: format!(
                "the footer says the row group holds {expected} rows here, but its column chunks \
                 decode to {more}{decoded}"
            ),
        }
    }

    /// The error for a failed decode of `roots` of row group `piece`: the file changed since it
    /// was opened, or the place that fails.
    fn decode_error(&self, piece: usize, roots: &[usize], error: ParquetError) -> StorageError {
        self.reader
            .check_unchanged(&self.path)
            .err()
            .unwrap_or_else(|| parquet_error(&self.path, self.failure_place(piece, roots), error))
    }

    fn column_stats(&self, column: usize) -> &[Option<ColumnStats>] {
        self.stats[column].get_or_init(|| {
            let metadata = self.metadata.metadata();
            let row_groups = metadata.row_groups();
            // A converter that panics on a damaged footer gives no statistics.
            catch_unwind(AssertUnwindSafe(|| row_group_stats(&self.metadata, column)))
                .ok()
                .flatten()
                .unwrap_or_else(|| vec![None; row_groups.len()])
        })
    }
}

/// The converter of `column`'s Parquet statistics into arrays of its Arrow type (null counts
/// left null where the file has none); None when the column has no Parquet leaf of its own.
fn statistics_converter(
    metadata: &ArrowReaderMetadata,
    column: usize,
) -> Option<StatisticsConverter<'_>> {
    let parquet_metadata = metadata.metadata();
    let converter = StatisticsConverter::try_new(
        metadata.schema().fields().get(column)?.name(),
        metadata.schema(),
        metadata.parquet_schema(),
    )
    .ok()?
    .with_missing_null_counts_as_zero(false)
    .with_column_orders(
        parquet_metadata
            .file_metadata()
            .column_orders()
            .map(Vec::as_slice),
    );
    converter.parquet_column_index()?;
    Some(converter)
}

/// Statistics of `column` in every row group; None when the column has no Parquet leaf of its
/// own (nested types) or the file's statistics cannot be converted.
fn row_group_stats(
    metadata: &ArrowReaderMetadata,
    column: usize,
) -> Option<Vec<Option<ColumnStats>>> {
    let schema = metadata.schema();
    let field = schema.fields().get(column)?;
    if !orderable(field.data_type()) {
        return None;
    }
    let row_groups = metadata.metadata().row_groups();
    let converter = statistics_converter(metadata, column)?;
    let mins = converter.row_group_mins(row_groups).ok()?;
    let maxes = converter.row_group_maxes(row_groups).ok()?;
    let min_exact = converter.row_group_is_min_value_exact(row_groups).ok()?;
    let max_exact = converter.row_group_is_max_value_exact(row_groups).ok()?;
    let null_counts = converter.row_group_null_counts(row_groups).ok()?;
    let nan_counts = converter.row_group_nan_counts(row_groups).ok()?;
    let floating = is_floating(field.data_type());
    let stats = row_groups
        .iter()
        .enumerate()
        .map(|(group, row_group)| {
            // Without an exact null count the statistics could claim a column all null that
            // is not (or the reverse): keep none.
            if null_counts.is_null(group) {
                return None;
            }
            let row_count = u64::try_from(row_group.num_rows()).ok()?;
            let null_count = null_counts.value(group);
            let exact = mins.is_valid(group)
                && maxes.is_valid(group)
                && min_exact.is_valid(group)
                && min_exact.value(group)
                && max_exact.is_valid(group)
                && max_exact.value(group);
            let (min, max) = if exact {
                let nan_free =
                    !floating || (nan_counts.is_valid(group) && nan_counts.value(group) == 0);
                (
                    Some(compact(mins.slice(group, 1))),
                    Some(float_max(maxes.slice(group, 1), nan_free)),
                )
            } else {
                (None, None)
            };
            Some(ColumnStats {
                min,
                max,
                null_count,
                row_count,
            })
        })
        .collect();
    Some(stats)
}

/// The maximum to keep for a column: Parquet's float bounds leave NaN out, but NaN sorts above
/// every number in the order `ColumnStats` follows, so where the file does not say that there
/// is no NaN (pyarrow writes no NaN counts) the maximum is NaN. The minimum still holds.
fn float_max(max: ArrayRef, nan_free: bool) -> ArrayRef {
    if nan_free {
        return compact(max);
    }
    let nan: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![f64::NAN]));
    arrow::compute::cast(&nan, max.data_type()).unwrap_or_else(|_| compact(max))
}

/// A one-element slice copied into arrays of its own, so that the statistics of one row group
/// do not keep the arrays of all row groups alive.
fn compact(array: ArrayRef) -> ArrayRef {
    arrow::compute::concat(&[array.as_ref()]).unwrap_or(array)
}

/// The types `ColumnStats` keeps bounds for (see `stats.rs`): booleans, strings, and primitive
/// types other than intervals; for a dictionary, those of its values.
fn orderable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => orderable(values),
        DataType::Interval(_) => false,
        DataType::Boolean | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        other => other.is_primitive(),
    }
}

fn is_floating(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => is_floating(values),
        other => other.is_floating(),
    }
}

impl DecodedFile for ParquetFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn format(&self) -> &'static str {
        FORMAT
    }

    fn schema(&self) -> SchemaRef {
        self.metadata.schema().clone()
    }

    fn num_pieces(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }

    fn piece_rows(&self, piece: usize) -> Option<u64> {
        let row_group = self.metadata.metadata().row_groups().get(piece)?;
        u64::try_from(row_group.num_rows()).ok()
    }

    fn piece_stats(&self, piece: usize, column: usize) -> Option<ColumnStats> {
        if column >= self.stats.len() {
            return None;
        }
        self.column_stats(column).get(piece).cloned().flatten()
    }

    fn read_piece(
        &self,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
    ) -> Result<Vec<RecordBatch>> {
        self.piece_batches(piece, columns, batch_size, None)?
            .collect()
    }

    fn page_stats(&self, piece: usize, column: usize) -> Option<Vec<(u64, Option<ColumnStats>)>> {
        // A converter that panics on a damaged page index gives no statistics.
        catch_unwind(AssertUnwindSafe(|| {
            page_stats(&self.metadata, piece, column)
        }))
        .ok()
        .flatten()
    }

    fn piece_batches(
        &self,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
        rows: Option<&[Range<u64>]>,
    ) -> Result<PieceBatches<'_>> {
        let schema = self.metadata.schema();
        check_piece_and_columns(
            &self.path,
            self.num_pieces(),
            piece,
            schema.fields().len(),
            columns,
        )?;
        let roots = decoded_roots(columns);
        let projection = Projection::new(schema, columns, &roots)?;
        let decoder = catch_decoder_panic(
            &self.path,
            FORMAT,
            || self.failure_place(piece, &roots),
            || {
                self.decoder(piece, &roots, batch_size, rows)
                    .map_err(|error| self.decode_error(piece, &roots, error))
            },
        )?;
        Ok(Box::new(RowGroupBatches {
            file: self,
            piece,
            roots,
            projection,
            decoder: Some(decoder),
            expected_rows: self.expected_rows(piece, rows),
            decoded_rows: 0,
        }))
    }

    fn selectable_columns(&self, piece: usize, columns: &[usize]) -> Vec<usize> {
        let fields = self.metadata.schema().fields().len();
        columns
            .iter()
            .copied()
            .filter(|&column| {
                column < fields && selectable(&self.metadata, piece, column).is_some()
            })
            .collect()
    }

    fn selected_column(
        &self,
        piece: usize,
        column: usize,
    ) -> Result<Box<dyn SelectedColumnReader + '_>> {
        check_piece_and_columns(
            &self.path,
            self.num_pieces(),
            piece,
            self.metadata.schema().fields().len(),
            &[column],
        )?;
        let Some(leaf) = selectable(&self.metadata, piece, column) else {
            return Err(StorageError::Unsupported {
                path: self.path.clone(),
                reason: format!(
                    "{}: decoded whole, not at chosen rows",
                    self.column_place(piece, column)
                ),
            });
        };
        let reader = SelectedColumn::new(&self.reader, &self.metadata, piece, column, leaf)
            .map_err(|error| self.selected_error(piece, column, error))?;
        Ok(Box::new(SelectedChunk {
            file: self,
            piece,
            column,
            reader,
        }))
    }
}

impl ParquetFile {
    fn column_place(&self, piece: usize, column: usize) -> String {
        format!(
            "row group {piece}, column {:?}",
            self.metadata.schema().field(column).name()
        )
    }

    /// The error for a failed read of `column` of row group `piece` at chosen rows: the file
    /// changed since it was opened, or the place that fails.
    fn selected_error(&self, piece: usize, column: usize, error: SelectedError) -> StorageError {
        if let Err(changed) = self.reader.check_unchanged(&self.path) {
            return changed;
        }
        let place = self.column_place(piece, column);
        match error {
            SelectedError::Parquet(error) => parquet_error(&self.path, place, error),
            SelectedError::Malformed(reason) => StorageError::Malformed {
                path: self.path.clone(),
                format: FORMAT,
                place,
                reason,
            },
        }
    }
}

/// A column chunk decoded at chosen rows (`DecodedFile::selected_column`).
struct SelectedChunk<'a> {
    file: &'a ParquetFile,
    piece: usize,
    column: usize,
    reader: SelectedColumn,
}

impl SelectedColumnReader for SelectedChunk<'_> {
    fn next_rows(&mut self, rows: usize, selected: &[u32]) -> Result<ArrayRef> {
        let SelectedChunk {
            file,
            piece,
            column,
            reader,
        } = self;
        catch_decoder_panic(
            &file.path,
            FORMAT,
            || file.column_place(*piece, *column),
            || {
                reader
                    .next_rows(rows, selected)
                    .map_err(|error| file.selected_error(*piece, *column, error))
            },
        )
    }
}

/// The batches of one read of a row group, decoded one at a time as they are asked for.
struct RowGroupBatches<'a> {
    file: &'a ParquetFile,
    piece: usize,
    roots: Vec<usize>,
    projection: Projection,
    /// None once the decoder is done or has failed.
    decoder: Option<ParquetRecordBatchReader>,
    /// The rows the footer says the read returns, and those decoded so far: a decoder that
    /// returns other than what the footer says has not read the columns as they were written
    /// (a schema or levels it maps wrongly, pages that hold other rows than the footer says),
    /// and its rows are refused rather than returned short.
    expected_rows: u64,
    decoded_rows: u64,
}

impl Iterator for RowGroupBatches<'_> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        let RowGroupBatches {
            file,
            piece,
            roots,
            projection,
            decoder,
            expected_rows,
            decoded_rows,
        } = self;
        let (file, piece) = (*file, *piece);
        decoder.as_ref()?;
        let next = catch_decoder_panic(
            &file.path,
            FORMAT,
            || file.failure_place(piece, roots),
            || {
                decoder
                    .as_mut()
                    .and_then(Iterator::next)
                    .transpose()
                    .map_err(|error| file.decode_error(piece, roots, error.into()))
            },
        );
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) | Err(_) => {
                *decoder = None;
                if let Err(error) = next {
                    return Some(Err(error));
                }
                if *decoded_rows != *expected_rows {
                    return Some(Err(file.row_count_error(
                        piece,
                        roots,
                        *expected_rows,
                        *decoded_rows,
                    )));
                }
                return None;
            }
        };
        *decoded_rows += batch.num_rows() as u64;
        if *decoded_rows > *expected_rows {
            *decoder = None;
            return Some(Err(file.row_count_error(
                piece,
                roots,
                *expected_rows,
                *decoded_rows,
            )));
        }
        let place = || format!("row group {piece}");
        Some(projection.apply(&file.path, FORMAT, &place, batch))
    }
}

/// Per data page of `column` in row group `piece`: its row count and bounds from the page
/// index. None without a page index (or an offset index) for the column, or for strings and
/// binaries, whose page bounds writers may truncate.
fn page_stats(
    metadata: &ArrowReaderMetadata,
    piece: usize,
    column: usize,
) -> Option<Vec<(u64, Option<ColumnStats>)>> {
    let schema = metadata.schema();
    let field = schema.field(column);
    if !orderable(field.data_type())
        || matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
        )
    {
        return None;
    }
    let parquet_metadata = metadata.metadata();
    let page_index = parquet_metadata.page_index()?.as_ref();
    let converter = statistics_converter(metadata, column)?;
    let groups = [piece];
    let rows = converter
        .data_page_row_counts(page_index, parquet_metadata.row_groups(), &groups)
        .ok()??;
    if rows.null_count() > 0 {
        return None;
    }
    let mins = converter.data_page_mins(page_index, &groups).ok()?;
    let maxes = converter.data_page_maxes(page_index, &groups).ok()?;
    let null_counts = converter.data_page_null_counts(page_index, &groups).ok()?;
    let nan_counts = converter.data_page_nan_counts(page_index, &groups).ok()?;
    if [mins.len(), maxes.len(), null_counts.len(), nan_counts.len()] != [rows.len(); 4] {
        return None;
    }
    let floating = is_floating(field.data_type());
    Some(
        (0..rows.len())
            .map(|page| {
                let row_count = rows.value(page);
                // As for row groups: no exact null count, no statistics; a float maximum of NaN
                // unless the page has none.
                let nan_free =
                    !floating || (nan_counts.is_valid(page) && nan_counts.value(page) == 0);
                let stats =
                    (null_counts.is_valid(page) && mins.is_valid(page) && maxes.is_valid(page))
                        .then(|| ColumnStats {
                            min: Some(compact(mins.slice(page, 1))),
                            max: Some(float_max(maxes.slice(page, 1), nan_free)),
                            null_count: null_counts.value(page),
                            row_count,
                        });
                (row_count, stats)
            })
            .collect(),
    )
}

fn parquet_error(path: &Path, place: String, error: ParquetError) -> StorageError {
    let reason = error.to_string();
    // The codec error comes wrapped in the Arrow reader's errors: look at the message.
    if let Some(at) = reason.find("Disabled feature at compile time: ") {
        let feature = reason[at..].trim_start_matches("Disabled feature at compile time: ");
        let codec = match feature.split_whitespace().next().unwrap_or(feature) {
            "flate2" => "GZIP",
            "brotli" => "BROTLI",
            "snap" => "SNAPPY",
            "lz4" => "LZ4",
            "zstd" => "ZSTD",
            other => other,
        };
        return StorageError::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "{place}: the file is compressed with {codec}, which this build of relay cannot decode \
                 (it reads ZSTD, LZ4, SNAPPY, GZIP and uncompressed Parquet)"
            ),
        };
    }
    match error {
        ParquetError::NYI(_) => StorageError::Unsupported {
            path: path.to_owned(),
            reason: format!("{place}: {reason}"),
        },
        _ => StorageError::Malformed {
            path: path.to_owned(),
            format: FORMAT,
            place,
            reason,
        },
    }
}

/// Refuses a file whose schema nests more than `nesting::MAX_NESTING_DEPTH` levels, reading the
/// footer's flattened schema before the `parquet` crate builds a tree of it (which recurses
/// once per level, as do the Arrow schema conversion and the printing of its types). A footer
/// that cannot be read is left to the `parquet` crate to report.
fn check_schema_depth(path: &Path, reader: &PositionalFile) -> Result<()> {
    let mut trailer = [0u8; 8];
    reader.read_exact_at(&mut trailer, reader.len - 8, path)?;
    let footer_len = u64::from(u32::from_le_bytes(
        trailer[..4].try_into().expect("4 bytes"),
    ));
    if footer_len + MIN_FILE_LEN > reader.len {
        return Ok(());
    }
    let footer = reader
        .read_vec(reader.len - 8 - footer_len, footer_len as usize)
        .map_err(|source| StorageError::Io {
            path: path.to_owned(),
            action: "read",
            source,
        })?;
    crate::nesting::check_parquet_footer_depth(&footer).map_err(|reason| StorageError::Malformed {
        path: path.to_owned(),
        format: FORMAT,
        place: "footer".into(),
        reason,
    })
}

/// Checks each row group's row count against its column chunks: a column that is not
/// repeated holds one value (or null) per row, and a repeated one at least one entry per row
/// (an empty or null list is one entry) and none without rows, so `num_values` of every chunk
/// bounds the row count. (The Arrow reader reads as many rows as the footer says: a row
/// group of 0 rows over chunks that hold values would read as empty.)
/// A row count the chunks do not hold would make `len()` and the batches announced for the
/// row group a fiction (2**40 rows over a few pages). The total must also fit an i64.
fn check_row_counts(
    path: &Path,
    metadata: &parquet::file::metadata::ParquetMetaData,
) -> Result<()> {
    let malformed = |place: String, reason: String| StorageError::Malformed {
        path: path.to_owned(),
        format: FORMAT,
        place,
        reason,
    };
    let mut total: i64 = 0;
    for (index, row_group) in metadata.row_groups().iter().enumerate() {
        let rows = row_group.num_rows();
        let place = || format!("row group {index}");
        if rows < 0 {
            return Err(malformed(place(), format!("negative row count {rows}")));
        }
        for chunk in row_group.columns() {
            let values = chunk.num_values();
            let repeated = chunk.column_descr().max_rep_level() > 0;
            let consistent = if repeated {
                values >= rows && (rows > 0 || values == 0)
            } else {
                values == rows
            };
            if !consistent {
                return Err(malformed(
                    format!(
                        "row group {index}, column {:?}",
                        chunk.column_path().string()
                    ),
                    format!(
                        "the row group says it has {rows} rows, but the column chunk holds {values} {}",
                        if repeated {
                            "entries (at least one per row)"
                        } else {
                            "values (one per row)"
                        }
                    ),
                ));
            }
        }
        total = total.checked_add(rows).ok_or_else(|| {
            malformed(
                place(),
                format!(
                    "the row counts of the row groups add up to more than {}",
                    i64::MAX
                ),
            )
        })?;
    }
    Ok(())
}

/// The footer as the Arrow reader should see it to read what other writers meant, where the
/// `parquet` crate takes the footer literally:
///
/// - A `dictionary_page_offset` of 0, or any that does not lie before the first data page, is
///   ignored, as parquet-cpp (pyarrow) ignores it: older parquet-mr wrote 0 for chunks without
///   a dictionary, and some writers point `data_page_offset` at the dictionary page itself.
///   Taken literally, the chunk would be read from the start of the file.
/// - INT96 timestamps (Spark, Hive, Impala) decode as `Timestamp(Microsecond)`: the unit Spark
///   writes them in, which holds every date they can carry, where nanoseconds in 64 bits end
///   in 2262 and the `parquet` crate's default wraps later dates around into wrong values. This
///   is what pyarrow reads with `coerce_int96_timestamp_unit="us"` (digits below a microsecond,
///   which only a few writers keep, are dropped).
fn legacy_compatible(
    loaded: ArrowReaderMetadata,
    options: ArrowReaderOptions,
) -> Result<ArrowReaderMetadata, ParquetError> {
    let stray_dictionary_offset = loaded.metadata().row_groups().iter().any(|row_group| {
        row_group
            .columns()
            .iter()
            .any(|chunk| stray_dictionary_offset(chunk).is_some())
    });
    let int96_schema = int96_as_microseconds(&loaded);
    if !stray_dictionary_offset && int96_schema.is_none() {
        return Ok(loaded);
    }
    let mut metadata = loaded.metadata().as_ref().clone();
    if stray_dictionary_offset {
        metadata = without_stray_dictionary_offsets(metadata)?;
    }
    let options = match int96_schema {
        Some(schema) => options.with_schema(schema),
        None => options,
    };
    ArrowReaderMetadata::try_new(Arc::new(metadata), options)
}

/// The `dictionary_page_offset` of `chunk` when it cannot be where its dictionary page starts:
/// not after the file's leading magic, or not before the chunk's first data page.
fn stray_dictionary_offset(chunk: &ColumnChunkMetaData) -> Option<i64> {
    chunk
        .dictionary_page_offset()
        .filter(|&offset| offset < MAGIC.len() as i64 || offset >= chunk.data_page_offset())
}

/// `metadata` with the stray dictionary page offsets (`stray_dictionary_offset`) removed, so
/// that each such chunk is read from its first data page.
fn without_stray_dictionary_offsets(
    metadata: ParquetMetaData,
) -> Result<ParquetMetaData, ParquetError> {
    let mut builder = metadata.into_builder();
    let row_groups = builder
        .take_row_groups()
        .into_iter()
        .map(|row_group| {
            let mut row_group = row_group.into_builder();
            let columns = row_group
                .take_columns()
                .into_iter()
                .map(|chunk| match stray_dictionary_offset(&chunk) {
                    Some(_) => chunk
                        .into_builder()
                        .set_dictionary_page_offset(None)
                        .build(),
                    None => Ok(chunk),
                })
                .collect::<Result<Vec<_>, _>>()?;
            row_group.set_column_metadata(columns).build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(builder.set_row_groups(row_groups).build())
}

/// The Arrow schema of `loaded` with every INT96 leaf a `Timestamp(Microsecond)` (keeping its
/// time zone, where an Arrow schema stored by the writer gives one); None when the file has no
/// INT96 column in another unit.
fn int96_as_microseconds(loaded: &ArrowReaderMetadata) -> Option<SchemaRef> {
    let parquet_schema = loaded.parquet_schema();
    let int96 = |leaf: usize| {
        leaf < parquet_schema.num_columns()
            && parquet_schema.column(leaf).physical_type() == PhysicalType::INT96
    };
    if !(0..parquet_schema.num_columns()).any(int96) {
        return None;
    }
    // Arrow leaves follow the Parquet leaves, in order (the `parquet` crate maps each Parquet
    // leaf to one Arrow leaf).
    let mut leaf = 0;
    let mut changed = false;
    let fields: Vec<FieldRef> = loaded
        .schema()
        .fields()
        .iter()
        .map(|field| with_int96_microseconds(field, &mut leaf, &int96, &mut changed))
        .collect();
    if !changed || leaf != parquet_schema.num_columns() {
        return None;
    }
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        loaded.schema().metadata().clone(),
    )))
}

/// `field` with its INT96 leaves (by Parquet leaf index, counted from `leaf`) read in
/// microseconds; `changed` set when one was read in another unit.
fn with_int96_microseconds(
    field: &FieldRef,
    leaf: &mut usize,
    int96: &dyn Fn(usize) -> bool,
    changed: &mut bool,
) -> FieldRef {
    let mut child = |item: &FieldRef| with_int96_microseconds(item, leaf, int96, changed);
    let data_type = match field.data_type() {
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(&mut child).collect()),
        DataType::List(item) => DataType::List(child(item)),
        DataType::LargeList(item) => DataType::LargeList(child(item)),
        DataType::FixedSizeList(item, size) => DataType::FixedSizeList(child(item), *size),
        DataType::Map(entries, sorted) => DataType::Map(child(entries), *sorted),
        other => {
            let this = *leaf;
            *leaf += 1;
            match other {
                DataType::Timestamp(unit, zone) if int96(this) => {
                    *changed |= *unit != TimeUnit::Microsecond;
                    DataType::Timestamp(TimeUnit::Microsecond, zone.clone())
                }
                _ => return field.clone(),
            }
        }
    };
    Arc::new(field.as_ref().clone().with_data_type(data_type))
}

fn check_magic(path: &Path, reader: &PositionalFile) -> Result<()> {
    let wrong = |reason: String| StorageError::WrongFormat {
        path: path.to_owned(),
        format: FORMAT,
        reason,
    };
    if reader.len < MIN_FILE_LEN {
        return Err(wrong(format!(
            "the file is {} bytes, too small to hold the Parquet magic and footer",
            reader.len
        )));
    }
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    reader.read_exact_at(&mut head, 0, path)?;
    reader.read_exact_at(&mut tail, reader.len - 4, path)?;
    if &tail == ENCRYPTED_MAGIC {
        return Err(StorageError::Unsupported {
            path: path.to_owned(),
            reason: "the Parquet footer is encrypted, which relay cannot read".into(),
        });
    }
    if &head != MAGIC || &tail != MAGIC {
        return Err(wrong(format!(
            "it does not start and end with the magic bytes \"PAR1\" (found \"{}\" and \"{}\")",
            head.escape_ascii(),
            tail.escape_ascii()
        )));
    }
    Ok(())
}

impl Length for PositionalFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for PositionalFile {
    type T = std::io::BufReader<PositionalReader>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        if start > self.len {
            return Err(ParquetError::EOF(format!(
                "expected to read at offset {start} of a file of {} bytes",
                self.len
            )));
        }
        Ok(std::io::BufReader::new(self.reader_from(start)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        start
            .checked_add(length as u64)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                ParquetError::EOF(format!(
                    "expected {length} bytes at offset {start} of a file of {} bytes",
                    self.len
                ))
            })?;
        let buffer = self.read_vec(start, length).map_err(|error| {
            ParquetError::EOF(format!("reading {length} bytes at offset {start}: {error}"))
        })?;
        Ok(Bytes::from(buffer))
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;
    use arrow::array::{
        AsArray, BooleanArray, DictionaryArray, Float32Array, Float64Array, Int32Array, Int64Array,
        ListArray, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Int32Type, Schema, TimeUnit};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    fn temp_dir() -> crate::test_support::TempDir {
        crate::test_support::temp_dir("relay-parquet-test")
    }

    /// 10 rows per batch: id, a nullable float, a string, a dictionary, a timestamp and a list.
    fn sample_batch(start: i64) -> RecordBatch {
        let ids: Vec<i64> = (start..start + 10).collect();
        let values: Vec<Option<f64>> = (0..10)
            .map(|i| (i % 3 != 0).then(|| (start + i) as f64 / 2.0))
            .collect();
        let names: Vec<Option<String>> = (0..10)
            .map(|i| (i != 4).then(|| format!("name{}", start + i)))
            .collect();
        let cities = DictionaryArray::<Int32Type>::new(
            Int32Array::from((0..10).map(|i| Some(i % 3)).collect::<Vec<_>>()),
            Arc::new(StringArray::from(vec!["oslo", "rome", "lima"])),
        );
        let times = TimestampMicrosecondArray::from(
            (0..10)
                .map(|i| 1_700_000_000_000_000 + start + i)
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC");
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(
            (0..10).map(|i| (i != 7).then(|| (0..(i % 4)).map(Some).collect::<Vec<_>>())),
        );
        RecordBatch::try_new(
            sample_schema(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Float64Array::from(values)),
                Arc::new(StringArray::from(names)),
                Arc::new(cities),
                Arc::new(times),
                Arc::new(lists),
            ],
        )
        .unwrap()
    }

    fn sample_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("value", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "city",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                false,
            ),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new(
                "list",
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                true,
            ),
        ]))
    }

    /// Writes `groups` row groups of 10 rows each.
    fn write_sample(path: &Path, groups: i64, compression: Compression) -> Vec<RecordBatch> {
        let properties = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(10))
            .build();
        let file = File::create(path).unwrap();
        let mut writer = ArrowWriter::try_new(file, sample_schema(), Some(properties)).unwrap();
        let batches: Vec<RecordBatch> = (0..groups).map(|g| sample_batch(g * 10)).collect();
        for batch in &batches {
            writer.write(batch).unwrap();
        }
        writer.close().unwrap();
        batches
    }

    #[test]
    fn reads_every_row_group_with_every_codec() {
        let dir = temp_dir();
        for compression in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::LZ4_RAW,
            Compression::ZSTD(ZstdLevel::default()),
        ] {
            let path = dir.join(format!("{compression:?}.parquet"));
            let written = write_sample(&path, 3, compression);
            let file = ParquetFile::open(&path).unwrap();
            assert_eq!(file.format(), "parquet");
            assert_eq!(file.schema(), sample_schema());
            assert_eq!(file.num_pieces(), 3);
            for (piece, expected) in written.iter().enumerate() {
                assert_eq!(file.piece_rows(piece), Some(10));
                let all: Vec<usize> = (0..6).collect();
                let read = file.read_piece(piece, &all, 4).unwrap();
                assert_eq!(
                    read.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
                    vec![4, 4, 2]
                );
                let read = arrow::compute::concat_batches(&sample_schema(), &read).unwrap();
                assert_eq!(&read, expected, "{compression:?} row group {piece}");
            }
        }
    }

    #[test]
    fn projection_keeps_the_requested_order() {
        let dir = temp_dir();
        let path = dir.join("p.parquet");
        let written = write_sample(&path, 2, Compression::SNAPPY);
        let file = ParquetFile::open(&path).unwrap();
        let read = file.read_piece(1, &[2, 0], 100).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(
            read[0].schema(),
            Arc::new(sample_schema().project(&[2, 0]).unwrap())
        );
        assert_eq!(read[0].column(0), written[1].column(2));
        assert_eq!(read[0].column(1), written[1].column(0));
        // No columns: the rows are still counted.
        let read = file.read_piece(0, &[], 100).unwrap();
        assert_eq!(read.iter().map(RecordBatch::num_rows).sum::<usize>(), 10);
        assert_eq!(read[0].num_columns(), 0);
        // Out of range.
        assert!(matches!(
            file.read_piece(2, &[0], 10),
            Err(StorageError::OutOfRange { what: "piece", .. })
        ));
        assert!(matches!(
            file.read_piece(0, &[6], 10),
            Err(StorageError::OutOfRange { what: "column", .. })
        ));
    }

    #[test]
    fn row_groups_decode_in_parallel() {
        let dir = temp_dir();
        let path = dir.join("parallel.parquet");
        let written = write_sample(&path, 8, Compression::ZSTD(ZstdLevel::default()));
        let file = ParquetFile::open(&path).unwrap();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|piece| {
                    let file = &file;
                    scope.spawn(move || file.read_piece(piece, &[0, 2, 5], 1024).unwrap())
                })
                .collect();
            for (piece, handle) in handles.into_iter().enumerate() {
                let read = handle.join().unwrap();
                assert_eq!(read[0], written[piece].project(&[0, 2, 5]).unwrap());
            }
        });
    }

    #[test]
    fn statistics_per_row_group() {
        let dir = temp_dir();
        let path = dir.join("stats.parquet");
        write_sample(&path, 3, Compression::SNAPPY);
        let file = ParquetFile::open(&path).unwrap();
        let id = file.piece_stats(1, 0).unwrap();
        assert_eq!(
            id.min.as_ref().unwrap().as_ref(),
            &Int64Array::from(vec![10]) as &dyn Array
        );
        assert_eq!(
            id.max.as_ref().unwrap().as_ref(),
            &Int64Array::from(vec![19]) as &dyn Array
        );
        assert_eq!((id.null_count, id.row_count), (0, 10));
        // A float column: the writer counts NaNs (none here), so the bounds hold.
        let value = file.piece_stats(2, 1).unwrap();
        assert_eq!(value.null_count, 4);
        assert_eq!(
            value.min.as_ref().unwrap().as_ref(),
            &Float64Array::from(vec![10.5]) as &dyn Array
        );
        assert_eq!(
            value.max.as_ref().unwrap().as_ref(),
            &Float64Array::from(vec![14.0]) as &dyn Array
        );
        let name = file.piece_stats(0, 2).unwrap();
        assert_eq!(name.null_count, 1);
        assert_eq!(
            name.min.as_ref().unwrap().as_string::<i32>().value(0),
            "name0"
        );
        assert_eq!(
            name.max.as_ref().unwrap().as_string::<i32>().value(0),
            "name9"
        );
        // A dictionary column: bounds of its values' type.
        let city = file.piece_stats(0, 3).unwrap();
        assert_eq!(
            city.min.as_ref().unwrap().as_string::<i32>().value(0),
            "lima"
        );
        assert_eq!(
            city.max.as_ref().unwrap().as_string::<i32>().value(0),
            "rome"
        );
        let time = file.piece_stats(0, 4).unwrap();
        assert_eq!(
            time.min.as_ref().unwrap().data_type(),
            file.schema().field(4).data_type()
        );
        // Lists have no order, and an out of range column or piece has no statistics.
        assert!(file.piece_stats(0, 5).is_none());
        assert!(file.piece_stats(0, 6).is_none());
        assert!(file.piece_stats(3, 0).is_none());
    }

    #[test]
    fn statistics_need_exact_values() {
        let dir = temp_dir();
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float32, true),
            Field::new("flag", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Float32Array::from(vec![Some(1.0), Some(f32::NAN), None])),
                Arc::new(BooleanArray::from(vec![None, None, None])),
            ],
        )
        .unwrap();
        let path = dir.join("nan.parquet");
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let file = ParquetFile::open(&path).unwrap();
        // A NaN sorts above every number: Parquet's bounds leave it out, so the maximum kept is
        // NaN (arrow-rs writes no NaN count here) and the minimum is the file's.
        let x = file.piece_stats(0, 0).unwrap();
        assert_eq!(
            x.min
                .as_ref()
                .unwrap()
                .as_primitive::<arrow::datatypes::Float32Type>()
                .value(0),
            1.0
        );
        assert!(
            x.max
                .as_ref()
                .unwrap()
                .as_primitive::<arrow::datatypes::Float32Type>()
                .value(0)
                .is_nan()
        );
        assert_eq!((x.null_count, x.row_count), (1, 3));
        let flag = file.piece_stats(0, 1).unwrap();
        assert!(flag.all_null());

        // A file written without statistics has none.
        let path = dir.join("none.parquet");
        let properties = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::None)
            .build();
        let mut writer =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let file = ParquetFile::open(&path).unwrap();
        assert!(file.piece_stats(0, 0).is_none());
    }

    #[test]
    fn non_parquet_inputs_are_refused() {
        let dir = temp_dir();
        let missing = dir.join("missing.parquet");
        assert!(matches!(
            ParquetFile::open(&missing),
            Err(StorageError::NotFound { .. })
        ));
        let error = ParquetFile::open(&dir).unwrap_err();
        assert!(matches!(error, StorageError::WrongFormat { .. }), "{error}");
        assert!(error.to_string().contains("directory"), "{error}");
        let short = dir.join("short.parquet");
        std::fs::write(&short, b"PAR1PAR1").unwrap();
        let error = ParquetFile::open(&short).unwrap_err();
        assert!(error.to_string().contains("too small"), "{error}");
        let csv = dir.join("data.parquet");
        std::fs::write(&csv, b"a,b\n1,2\n3,4\n5,6\n").unwrap();
        let error = ParquetFile::open(&csv).unwrap_err();
        assert!(
            matches!(
                error,
                StorageError::WrongFormat {
                    format: "parquet",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("not a parquet file"), "{error}");
        assert!(
            error.to_string().contains(r#"(found "a,b\n" and "5,6\n")"#),
            "{error}"
        );
    }

    #[test]
    fn truncated_and_garbage_files_are_malformed() {
        let dir = temp_dir();
        let path = dir.join("good.parquet");
        write_sample(&path, 3, Compression::SNAPPY);
        let bytes = std::fs::read(&path).unwrap();

        // Cut in the middle, magic put back: the footer length points outside the file.
        let mut cut = bytes[..bytes.len() / 2].to_vec();
        cut.extend_from_slice(&bytes[bytes.len() - 8..]);
        let truncated = dir.join("truncated.parquet");
        std::fs::write(&truncated, &cut).unwrap();
        let error = ParquetFile::open(&truncated).unwrap_err();
        assert!(matches!(error, StorageError::Malformed { .. }), "{error}");
        assert!(
            error.to_string().contains("malformed parquet at footer"),
            "{error}"
        );
        assert!(error.to_string().contains("truncated.parquet"), "{error}");

        // Cut without putting the magic back.
        let cut = dir.join("cut.parquet");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(
            ParquetFile::open(&cut),
            Err(StorageError::WrongFormat { .. })
        ));

        // Garbage between the magic bytes.
        let mut garbage = b"PAR1".to_vec();
        garbage.extend((0..200u32).map(|i| (i * 7919 % 251) as u8));
        garbage.extend_from_slice(&100u32.to_le_bytes());
        garbage.extend_from_slice(b"PAR1");
        let garbage_path = dir.join("garbage.parquet");
        std::fs::write(&garbage_path, &garbage).unwrap();
        let error = ParquetFile::open(&garbage_path).unwrap_err();
        assert!(matches!(error, StorageError::Malformed { .. }), "{error}");

        // Damaged pages: the footer is intact, column chunk bytes are overwritten. Every
        // read returns an error or the right rows; none panics.
        let footer_len =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap())
                as usize;
        let data_end = bytes.len() - 8 - footer_len;
        for seed in 0..16usize {
            let mut damaged = bytes.clone();
            for k in 0..24 {
                let at = 4 + (seed * 131 + k * 37) % (data_end - 4);
                damaged[at] ^= 0x5a;
            }
            let damaged_path = dir.join(format!("damaged{seed}.parquet"));
            std::fs::write(&damaged_path, &damaged).unwrap();
            let Ok(file) = ParquetFile::open(&damaged_path) else {
                continue;
            };
            for piece in 0..file.num_pieces() {
                if let Err(error) = file.read_piece(piece, &[0, 1, 2, 3, 4, 5], 1024) {
                    let message = error.to_string();
                    assert!(
                        message.contains(&format!("row group {piece}"))
                            || matches!(error, StorageError::Unsupported { .. }),
                        "{message}"
                    );
                }
            }
        }
    }

    #[test]
    fn codecs_left_out_of_the_build_are_unsupported() {
        // How the Arrow reader reports a page whose codec's feature is off (Brotli's is).
        let error = ParquetError::External(Box::new(ParquetError::General(
            "Disabled feature at compile time: brotli".into(),
        )));
        let error = parquet_error(
            Path::new("g.parquet"),
            "row group 0, column \"x\"".into(),
            error,
        );
        assert!(matches!(error, StorageError::Unsupported { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("BROTLI") && message.contains("row group 0, column \"x\""),
            "{message}"
        );
        let error = parquet_error(
            Path::new("g.parquet"),
            "footer".into(),
            ParquetError::EOF("short".into()),
        );
        assert!(matches!(error, StorageError::Malformed { .. }), "{error}");
    }

    /// Footer metadata of one row group of `rows` rows over a flat int32 column and a list of
    /// int32, whose chunks hold `flat_values` and `list_entries`.
    fn row_group_metadata(
        rows: i64,
        flat_values: i64,
        list_entries: i64,
    ) -> parquet::file::metadata::ParquetMetaData {
        use parquet::basic::{Repetition, Type as PhysicalType};
        use parquet::file::metadata::{
            ColumnChunkMetaData, FileMetaData, ParquetMetaData, RowGroupMetaData,
        };
        use parquet::schema::types::{SchemaDescriptor, Type};
        let leaf = |name: &str, repetition| {
            Arc::new(
                Type::primitive_type_builder(name, PhysicalType::INT32)
                    .with_repetition(repetition)
                    .build()
                    .unwrap(),
            )
        };
        let schema = Type::group_type_builder("schema")
            .with_fields(vec![
                leaf("flat", Repetition::OPTIONAL),
                leaf("list", Repetition::REPEATED),
            ])
            .build()
            .unwrap();
        let descriptor = Arc::new(SchemaDescriptor::new(Arc::new(schema)));
        let chunks = [flat_values, list_entries]
            .iter()
            .enumerate()
            .map(|(column, &values)| {
                ColumnChunkMetaData::builder(descriptor.column(column))
                    .set_num_values(values)
                    .build()
                    .unwrap()
            })
            .collect();
        let row_group = RowGroupMetaData::builder(descriptor.clone())
            .set_num_rows(rows)
            .set_column_metadata(chunks)
            .build()
            .unwrap();
        let file = FileMetaData::new(2, rows, None, None, descriptor, None);
        ParquetMetaData::new(file, vec![row_group])
    }

    #[test]
    fn row_counts_are_checked_against_the_column_chunks() {
        let path = Path::new("/data/rows.parquet");
        for (rows, flat, list) in [(10, 10, 10), (10, 10, 35), (0, 0, 0)] {
            check_row_counts(path, &row_group_metadata(rows, flat, list))
                .unwrap_or_else(|e| panic!("{rows} {flat} {list}: {e}"));
        }
        for (rows, flat, list, column) in [
            (1 << 40, 10, 10, "flat"),
            (10, 11, 35, "flat"),
            (10, 9, 35, "flat"),
            (10, 10, 9, "list"),
            (0, 0, 5, "list"),
            (-1, 10, 10, ""),
        ] {
            let error = check_row_counts(path, &row_group_metadata(rows, flat, list))
                .unwrap_err()
                .to_string();
            assert!(error.contains("/data/rows.parquet"), "{error}");
            assert!(error.contains("row group 0"), "{error}");
            assert!(error.contains(&format!("{rows}")), "{error}");
            if !column.is_empty() {
                assert!(error.contains(&format!("column {column:?}")), "{error}");
            }
        }
    }

    #[test]
    fn stray_dictionary_page_offsets_are_ignored() {
        use parquet::file::metadata::{ColumnChunkMetaData, RowGroupMetaData};
        let metadata = row_group_metadata(10, 10, 10);
        let descriptor = metadata.file_metadata().schema_descr_ptr();
        let chunk = |dictionary: Option<i64>, data: i64| {
            ColumnChunkMetaData::builder(descriptor.column(0))
                .set_num_values(10)
                .set_dictionary_page_offset(dictionary)
                .set_data_page_offset(data)
                .set_total_compressed_size(100)
                .build()
                .unwrap()
        };
        // Where the dictionary page can start: after the magic, before the first data page.
        assert_eq!(stray_dictionary_offset(&chunk(Some(4), 40)), None);
        assert_eq!(stray_dictionary_offset(&chunk(None, 40)), None);
        for dictionary in [0, -8, 40, 41] {
            assert_eq!(
                stray_dictionary_offset(&chunk(Some(dictionary), 40)),
                Some(dictionary)
            );
        }
        let row_group = RowGroupMetaData::builder(descriptor.clone())
            .set_num_rows(10)
            .set_column_metadata(vec![chunk(Some(0), 40), chunk(Some(4), 40)])
            .build()
            .unwrap();
        let metadata = metadata
            .into_builder()
            .set_row_groups(vec![row_group])
            .build();
        let fixed = without_stray_dictionary_offsets(metadata).unwrap();
        let columns = fixed.row_group(0).columns();
        assert_eq!(columns[0].dictionary_page_offset(), None);
        assert_eq!(columns[0].byte_range(), (40, 100));
        assert_eq!(columns[1].dictionary_page_offset(), Some(4));
        assert_eq!(columns[1].byte_range(), (4, 100));
    }

    #[test]
    fn int96_timestamps_read_in_microseconds() {
        use parquet::basic::{LogicalType, Repetition};
        use parquet::file::metadata::{FileMetaData, ParquetMetaData};
        use parquet::schema::types::{SchemaDescriptor, Type};
        let leaf = |name: &str, physical, repetition| {
            Arc::new(
                Type::primitive_type_builder(name, physical)
                    .with_repetition(repetition)
                    .build()
                    .unwrap(),
            )
        };
        let group = |name: &str, logical, repetition, fields| {
            Arc::new(
                Type::group_type_builder(name)
                    .with_logical_type(logical)
                    .with_repetition(repetition)
                    .with_fields(fields)
                    .build()
                    .unwrap(),
            )
        };
        // A flat INT96, a legacy list of INT96 and a struct holding one, among other leaves.
        let schema = Type::group_type_builder("schema")
            .with_fields(vec![
                leaf("id", PhysicalType::INT64, Repetition::REQUIRED),
                leaf("at", PhysicalType::INT96, Repetition::OPTIONAL),
                group(
                    "times",
                    Some(LogicalType::List),
                    Repetition::OPTIONAL,
                    vec![leaf("array", PhysicalType::INT96, Repetition::REPEATED)],
                ),
                group(
                    "event",
                    None,
                    Repetition::OPTIONAL,
                    vec![
                        leaf("n", PhysicalType::INT32, Repetition::OPTIONAL),
                        leaf("when", PhysicalType::INT96, Repetition::OPTIONAL),
                    ],
                ),
            ])
            .build()
            .unwrap();
        let descriptor = Arc::new(SchemaDescriptor::new(Arc::new(schema)));
        let file = FileMetaData::new(1, 0, None, None, descriptor, None);
        let loaded = ArrowReaderMetadata::try_new(
            Arc::new(ParquetMetaData::new(file, vec![])),
            ArrowReaderOptions::new(),
        )
        .unwrap();
        let read = legacy_compatible(loaded, ArrowReaderOptions::new()).unwrap();
        let microseconds = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = read.schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &microseconds);
        let DataType::List(item) = schema.field(2).data_type() else {
            panic!("{schema:?}")
        };
        assert_eq!(item.data_type(), &microseconds);
        let DataType::Struct(fields) = schema.field(3).data_type() else {
            panic!("{schema:?}")
        };
        assert_eq!(fields[0].data_type(), &DataType::Int32);
        assert_eq!(fields[1].data_type(), &microseconds);
        // Without INT96 columns the footer is read as it is.
        assert!(
            int96_as_microseconds(
                &ArrowReaderMetadata::try_new(
                    Arc::new(row_group_metadata(1, 1, 1)),
                    ArrowReaderOptions::new()
                )
                .unwrap()
            )
            .is_none()
        );
    }

    #[test]
    fn parquet_file_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ParquetFile>();
    }
}
