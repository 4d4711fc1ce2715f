//! Datasets: several files (or one file of a decoded format) read as one table.
//!
//! A dataset is a list of fragments, one per file, each with its format and the values of its
//! hive partition columns (`year=2024/month=3/part-0.parquet` gives `year = 2024, month = 3`).
//! Its schema is the first file's schema followed by the partition columns; every other file
//! must have the same columns (names and types, in order), checked when it is opened.
//!
//! Files are opened lazily, once each (a `OnceLock` per fragment): a fragment that the
//! optimizer rules out by its partition values is never opened. An opened fragment is read in
//! pieces that decode independently: the record batches of an Arrow IPC file (views of its
//! mapping, no copy) or the pieces of a `DecodedFile` (Parquet row groups, byte ranges of CSV /
//! NDJSON files), which are decoded into memory.
//!
//! `DatasetView` is what a plan's leaf holds: columns of the dataset, the fragments and pieces
//! that survive pruning, and for an unfiltered read a range of rows.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};

use crate::decoded::{DecodedFile, PieceBatches, batches_already_read};
use crate::error::{Result, StorageError};
use crate::ipc::{IpcAccess, IpcFile};
use crate::stats::{ColumnStats, batch_stats};
use crate::types::type_name;
use crate::view::{
    RowRange, column_names, project_schema, quoted_names, select_columns, slice_batches,
};

/// The format of one file of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileFormat {
    Ipc,
    Parquet,
    Csv,
    Ndjson,
}

impl FileFormat {
    /// The name users write (`format="parquet"`).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Ipc => "ipc",
            FileFormat::Parquet => "parquet",
            FileFormat::Csv => "csv",
            FileFormat::Ndjson => "ndjson",
        }
    }

    /// The name as prose uses it ("decoded from Parquet").
    pub fn title(self) -> &'static str {
        match self {
            FileFormat::Ipc => "Arrow IPC",
            FileFormat::Parquet => "Parquet",
            FileFormat::Csv => "CSV",
            FileFormat::Ndjson => "NDJSON",
        }
    }

    pub fn parse(name: &str) -> Option<FileFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "ipc" | "arrow" | "feather" => FileFormat::Ipc,
            "parquet" => FileFormat::Parquet,
            "csv" => FileFormat::Csv,
            "ndjson" | "json" | "jsonl" => FileFormat::Ndjson,
            _ => return None,
        })
    }

    /// Whether reading this format decodes into memory (every format but Arrow IPC).
    pub fn is_decoded(self) -> bool {
        self != FileFormat::Ipc
    }
}

/// Opens a file of a decoded format. Given by whoever builds the dataset: it knows the format
/// options (a CSV separator, a schema that overrides inference). The schema argument, when
/// given, is the one to read a CSV or NDJSON file with in place of inferring one, unless the
/// options name one themselves.
pub type DecodedOpener =
    Arc<dyn Fn(&Path, FileFormat, Option<SchemaRef>) -> Result<Arc<dyn DecodedFile>> + Send + Sync>;

/// Options of the decoded formats as `scan()` takes them: what a dataset's files are opened
/// with, and so what opening them again (a frame sent to another process) needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FormatOptions {
    /// Columns and types that replace CSV / NDJSON schema inference.
    pub schema: Option<SchemaRef>,
    pub has_header: Option<bool>,
    pub separator: Option<u8>,
    /// How Arrow IPC files hold their bytes: mapped, or read into memory.
    pub ipc_access: IpcAccess,
}

impl FormatOptions {
    /// Whether no option of the decoded formats is set (a single Arrow IPC file then opens as
    /// an `IpcFile` rather than a dataset).
    pub fn decodes_as_inferred(&self) -> bool {
        self.schema.is_none() && self.has_header.is_none() && self.separator.is_none()
    }

    /// Opens the decoded files of a dataset with these options.
    pub fn opener(&self) -> DecodedOpener {
        let options = self.clone();
        Arc::new(
            move |path: &Path,
                  format: FileFormat,
                  schema: Option<SchemaRef>|
                  -> Result<Arc<dyn DecodedFile>> {
                let schema = options.schema.clone().or(schema);
                match format {
                    FileFormat::Parquet => Ok(crate::parquet::ParquetFile::open(path)?),
                    FileFormat::Csv => {
                        let mut csv = crate::text::CsvOptions {
                            schema,
                            ..Default::default()
                        };
                        csv.has_header = options.has_header.unwrap_or(csv.has_header);
                        csv.delimiter = options.separator.unwrap_or(csv.delimiter);
                        Ok(crate::text::TextFile::open_csv(path, &csv)?)
                    }
                    FileFormat::Ndjson => {
                        let json = crate::text::JsonOptions {
                            schema,
                            ..Default::default()
                        };
                        Ok(crate::text::TextFile::open_ndjson(path, &json)?)
                    }
                    other => Err(StorageError::Unsupported {
                        path: path.to_owned(),
                        reason: format!("reading {} files is not available", other.title()),
                    }),
                }
            },
        )
    }
}

/// An opened file of a dataset.
#[derive(Debug, Clone)]
pub enum OpenedFile {
    /// Mapped; its pieces are its record batches, decoded as views of the mapping.
    Ipc(Arc<IpcFile>),
    /// Decoded when read, piece by piece.
    Decoded(Arc<dyn DecodedFile>),
}

impl OpenedFile {
    pub fn schema(&self) -> SchemaRef {
        match self {
            OpenedFile::Ipc(file) => file.schema().clone(),
            OpenedFile::Decoded(file) => file.schema(),
        }
    }

    pub fn num_pieces(&self) -> usize {
        match self {
            OpenedFile::Ipc(file) => file.batches().len(),
            OpenedFile::Decoded(file) => file.num_pieces(),
        }
    }

    /// Rows of `piece` when known without decoding it.
    pub fn piece_rows(&self, piece: usize) -> Option<u64> {
        match self {
            OpenedFile::Ipc(file) => {
                let starts = file.batch_row_starts();
                Some(starts.get(piece + 1)? - starts[piece])
            }
            OpenedFile::Decoded(file) => file.piece_rows(piece),
        }
    }

    /// Statistics of `column` (an index into the file's schema) in `piece`: computed and
    /// cached for an IPC record batch (`batch_stats`), what the file stores for a decoded one.
    pub fn piece_stats(&self, piece: usize, column: usize) -> Result<Option<Arc<ColumnStats>>> {
        match self {
            OpenedFile::Ipc(file) => Ok(Some(batch_stats(file, piece, column)?)),
            OpenedFile::Decoded(file) => Ok(file.piece_stats(piece, column).map(Arc::new)),
        }
    }

    /// Per data page of `column` in `piece`: rows and statistics (`DecodedFile::page_stats`);
    /// None for an IPC file and a file without a page index.
    pub fn page_stats(
        &self,
        piece: usize,
        column: usize,
    ) -> Option<Vec<(u64, Option<ColumnStats>)>> {
        match self {
            OpenedFile::Ipc(_) => None,
            OpenedFile::Decoded(file) => file.page_stats(piece, column),
        }
    }

    /// `read_piece` one batch at a time (`DecodedFile::piece_batches`), of the rows of `piece`
    /// in `rows` only when given (ascending, disjoint ranges).
    pub fn piece_batches(
        &self,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
        rows: Option<&[Range<u64>]>,
    ) -> Result<PieceBatches<'_>> {
        match self {
            OpenedFile::Ipc(_) => Ok(batches_already_read(
                self.read_piece(piece, columns, batch_size)?,
                rows,
            )),
            OpenedFile::Decoded(file) => {
                file.piece_batches(piece, columns, batch_size.max(1), rows)
            }
        }
    }

    /// The `columns` (indices into the file's schema) of `piece` as record batches of the
    /// projected schema: views of the mapping for IPC (one batch), decoded batches of at most
    /// `batch_size` rows otherwise.
    pub fn read_piece(
        &self,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
    ) -> Result<Vec<RecordBatch>> {
        match self {
            OpenedFile::Ipc(file) => {
                let arrays = columns
                    .iter()
                    .map(|&column| Ok(file.decode_column(piece, column)?.array))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                let rows = self.piece_rows(piece).unwrap_or_default() as usize;
                let fields: Vec<FieldRef> = columns
                    .iter()
                    .map(|&c| file.schema().fields()[c].clone())
                    .collect();
                let options = RecordBatchOptions::new().with_row_count(Some(rows));
                let batch = RecordBatch::try_new_with_options(
                    Arc::new(Schema::new(fields)),
                    arrays,
                    &options,
                )
                .map_err(|e| StorageError::CorruptFile {
                    path: file.path().to_owned(),
                    reason: format!("record batch {piece}: {e}"),
                })?;
                Ok(vec![batch])
            }
            OpenedFile::Decoded(file) => file.read_piece(piece, columns, batch_size.max(1)),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            OpenedFile::Ipc(file) => file.path(),
            OpenedFile::Decoded(file) => file.path(),
        }
    }
}

/// One file of a dataset.
pub struct Fragment {
    pub path: PathBuf,
    pub format: FileFormat,
    /// One single-value array per partition column of the dataset, in its order (a null
    /// array for `__HIVE_DEFAULT_PARTITION__`).
    pub partition_values: Vec<ArrayRef>,
    opened: OnceLock<OpenedFile>,
    /// The decoded piece the last slice ended inside of (see `Dataset::read_piece_rows`).
    sliced_piece: Mutex<Option<DecodedPiece>>,
}

/// A piece decoded whole, with what it was decoded for.
struct DecodedPiece {
    piece: usize,
    columns: Vec<usize>,
    batches: Vec<RecordBatch>,
}

impl fmt::Debug for Fragment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fragment")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("opened", &self.opened.get().is_some())
            .finish()
    }
}

/// Files read as one table: see the module documentation.
pub struct Dataset {
    /// The source as the user gave it (a path, a glob, a directory), for plans and messages.
    description: String,
    fragments: Vec<Fragment>,
    /// The first file's schema: every file must have it.
    file_schema: SchemaRef,
    partition_fields: Vec<FieldRef>,
    /// The file schema followed by the partition columns.
    schema: SchemaRef,
    opener: DecodedOpener,
    /// The options `opener` was made from, when it was (`Dataset::with_options`): what opening
    /// the same files again needs. None for a dataset given an opener of its own.
    options: Option<FormatOptions>,
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("description", &self.description)
            .field("fragments", &self.fragments)
            .finish()
    }
}

/// A file to add to a dataset: its path, format and partition values.
#[derive(Debug, Clone)]
pub struct FragmentSpec {
    pub path: PathBuf,
    pub format: FileFormat,
    pub partition_values: Vec<ArrayRef>,
}

impl Dataset {
    /// A dataset of `fragments` (at least one), whose partition columns are `partition_fields`
    /// (each fragment gives one single-value array per field, of its type). Opens the first
    /// file for the schema; the others are opened when read.
    pub fn new(
        description: impl Into<String>,
        fragments: Vec<FragmentSpec>,
        partition_fields: Vec<Field>,
        opener: DecodedOpener,
    ) -> Result<Arc<Dataset>> {
        Dataset::build(
            description.into(),
            fragments,
            partition_fields,
            opener,
            None,
        )
    }

    fn build(
        description: String,
        fragments: Vec<FragmentSpec>,
        partition_fields: Vec<Field>,
        opener: DecodedOpener,
        options: Option<FormatOptions>,
    ) -> Result<Arc<Dataset>> {
        let Some(first) = fragments.first() else {
            return Err(StorageError::NotFound {
                path: PathBuf::from(&description),
            });
        };
        let ipc_access = ipc_access_of(options.as_ref());
        let first_opened = open_file(&first.path, first.format, &opener, ipc_access, None)?;
        let file_schema = first_opened.schema();
        let partition_fields: Vec<FieldRef> = partition_fields.into_iter().map(Arc::new).collect();
        for field in &partition_fields {
            if file_schema.index_of(field.name()).is_ok() {
                return Err(StorageError::Unsupported {
                    path: first.path.clone(),
                    reason: format!(
                        "the partition column {:?} of the folder names is also a column of the file",
                        field.name()
                    ),
                });
            }
        }
        for spec in &fragments {
            let matches = spec.partition_values.len() == partition_fields.len()
                && spec
                    .partition_values
                    .iter()
                    .zip(&partition_fields)
                    .all(|(value, field)| {
                        value.len() == 1 && value.data_type() == field.data_type()
                    });
            if !matches {
                return Err(StorageError::OutOfRange {
                    what: "partition values",
                    detail: format!(
                        "{}: needs one value for each of the {} partition columns, of their types",
                        spec.path.display(),
                        partition_fields.len()
                    ),
                });
            }
        }
        let mut fields: Vec<FieldRef> = file_schema.fields().iter().cloned().collect();
        fields.extend(partition_fields.iter().cloned());
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            file_schema.metadata().clone(),
        ));
        let fragments: Vec<Fragment> = fragments
            .into_iter()
            .map(|spec| Fragment {
                path: spec.path,
                format: spec.format,
                partition_values: spec.partition_values,
                opened: OnceLock::new(),
                sliced_piece: Mutex::new(None),
            })
            .collect();
        let _ = fragments[0].opened.set(first_opened);
        Ok(Arc::new(Dataset {
            description,
            fragments,
            file_schema,
            partition_fields,
            schema,
            opener,
            options,
        }))
    }

    /// `Dataset::new` with the opener of `options` (`FormatOptions::opener`), which the
    /// dataset keeps: `options()` then says how to open the same files again.
    pub fn with_options(
        description: impl Into<String>,
        fragments: Vec<FragmentSpec>,
        partition_fields: Vec<Field>,
        options: FormatOptions,
    ) -> Result<Arc<Dataset>> {
        let opener = options.opener();
        Dataset::build(
            description.into(),
            fragments,
            partition_fields,
            opener,
            Some(options),
        )
    }

    /// The options the files were opened with, when the dataset was made `with_options`.
    pub fn options(&self) -> Option<&FormatOptions> {
        self.options.as_ref()
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Columns that come from the files (the first `file_schema().fields().len()` of the schema).
    pub fn file_schema(&self) -> &SchemaRef {
        &self.file_schema
    }

    pub fn partition_fields(&self) -> &[FieldRef] {
        &self.partition_fields
    }

    pub fn fragments(&self) -> &[Fragment] {
        &self.fragments
    }

    pub fn num_fragments(&self) -> usize {
        self.fragments.len()
    }

    /// The formats of the files, each once, in order of first appearance.
    pub fn formats(&self) -> Vec<FileFormat> {
        let mut formats = Vec::new();
        for fragment in &self.fragments {
            if !formats.contains(&fragment.format) {
                formats.push(fragment.format);
            }
        }
        formats
    }

    /// Whether `fragment` has been opened (by a read, the optimizer, or as the first file).
    pub fn is_open(&self, fragment: usize) -> bool {
        self.fragments
            .get(fragment)
            .is_some_and(|f| f.opened.get().is_some())
    }

    /// Fragment `index`, opened on first use; its schema must be the dataset's file schema.
    pub fn open(&self, index: usize) -> Result<&OpenedFile> {
        let fragment = self
            .fragments
            .get(index)
            .ok_or_else(|| StorageError::OutOfRange {
                what: "fragment",
                detail: format!("{index} of {} files", self.fragments.len()),
            })?;
        if let Some(opened) = fragment.opened.get() {
            return Ok(opened);
        }
        let mut opened = open_file(
            &fragment.path,
            fragment.format,
            &self.opener,
            ipc_access_of(self.options.as_ref()),
            None,
        )?;
        // Types inferred from a file's own rows may differ from the first file's (a column
        // empty in one file, whole numbers in one and decimals in another): a file whose columns
        // have the first file's names is read with its types instead, and a value that does not
        // fit them raises an error naming the line when read.
        let schema = opened.schema();
        let same_names = schema.fields().len() == self.file_schema.fields().len()
            && schema
                .fields()
                .iter()
                .zip(self.file_schema.fields())
                .all(|(have, want)| have.name() == want.name());
        if matches!(fragment.format, FileFormat::Csv | FileFormat::Ndjson)
            && same_names
            && schema.as_ref() != self.file_schema.as_ref()
        {
            opened = open_file(
                &fragment.path,
                fragment.format,
                &self.opener,
                ipc_access_of(self.options.as_ref()),
                Some(self.file_schema.clone()),
            )?;
        }
        self.check_schema(&fragment.path, &opened.schema())?;
        Ok(fragment.opened.get_or_init(|| opened))
    }

    /// Rows `offset .. offset + count` of `piece` of the file `fragment`: `columns` (indices
    /// into its schema) as record batches of the projected schema.
    ///
    /// A piece of a decoded file is decoded whole, as its format requires, so consecutive
    /// slices of one piece (`iter_batches` over a Parquet row group of 1 M rows in batches of
    /// 100 k) would decode it once per slice. A slice that ends inside the piece therefore
    /// keeps the decoded piece for the next slice; one that reaches its end lets it go, so a
    /// finished iteration holds nothing. One piece is kept per file at most.
    pub fn read_piece_rows(
        &self,
        fragment: usize,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
        offset: u64,
        count: u64,
    ) -> Result<Vec<RecordBatch>> {
        let file = self.open(fragment)?;
        if matches!(file, OpenedFile::Ipc(_)) {
            return Ok(slice_batches(
                &file.read_piece(piece, columns, batch_size)?,
                offset,
                count,
            ));
        }
        let slot = &self.fragments[fragment].sliced_piece;
        let cached = slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .filter(|cached| cached.piece == piece && cached.columns == columns);
        let batches = match cached {
            Some(cached) => cached.batches,
            None => file.read_piece(piece, columns, batch_size)?,
        };
        let rows: u64 = batches.iter().map(|batch| batch.num_rows() as u64).sum();
        let sliced = slice_batches(&batches, offset, count);
        if offset.saturating_add(count) < rows {
            let decoded = DecodedPiece {
                piece,
                columns: columns.to_vec(),
                batches,
            };
            *slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(decoded);
        }
        Ok(sliced)
    }

    /// An error naming `path` and the first column where `schema` differs from the first file's.
    fn check_schema(&self, path: &Path, schema: &Schema) -> Result<()> {
        let first = &self.fragments[0].path;
        let expected = self.file_schema.fields();
        let problem = expected
            .iter()
            .zip(schema.fields())
            .find_map(|(want, have)| {
                if want.name() != have.name() {
                    Some(format!(
                        "it has column {:?} where {} has {:?}",
                        have.name(),
                        first.display(),
                        want.name()
                    ))
                } else if want.data_type() != have.data_type() {
                    Some(format!(
                        "its column {:?} is {}, in {} it is {}",
                        have.name(),
                        type_name(have.data_type()),
                        first.display(),
                        type_name(want.data_type())
                    ))
                } else {
                    None
                }
            });
        let problem = problem.or_else(|| match schema.fields().len().cmp(&expected.len()) {
            std::cmp::Ordering::Less => Some(format!(
                "it has no column {:?}, which {} has",
                expected[schema.fields().len()].name(),
                first.display()
            )),
            std::cmp::Ordering::Greater => Some(format!(
                "it has a column {:?} that {} does not have",
                schema.field(expected.len()).name(),
                first.display()
            )),
            std::cmp::Ordering::Equal => None,
        });
        match problem {
            None => Ok(()),
            Some(problem) => Err(StorageError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "the files of {} must have the same columns: {problem}",
                    self.description
                ),
            }),
        }
    }
}

/// How a dataset made with `options` holds its Arrow IPC files (mapped for a dataset given an
/// opener of its own).
fn ipc_access_of(options: Option<&FormatOptions>) -> IpcAccess {
    options.map_or(IpcAccess::Mapped, |options| options.ipc_access)
}

fn open_file(
    path: &Path,
    format: FileFormat,
    opener: &DecodedOpener,
    ipc_access: IpcAccess,
    schema: Option<SchemaRef>,
) -> Result<OpenedFile> {
    Ok(match format {
        FileFormat::Ipc => OpenedFile::Ipc(IpcFile::open_as(path, ipc_access)?),
        other => OpenedFile::Decoded(opener(path, other, schema)?),
    })
}

/// A piece of a dataset: piece `piece` of fragment `fragment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceId {
    pub fragment: usize,
    pub piece: usize,
}

/// Columns of a dataset over the fragments and pieces that survive pruning, and, for an
/// unfiltered read, a range of the rows of those pieces.
#[derive(Debug, Clone)]
pub struct DatasetView {
    dataset: Arc<Dataset>,
    /// Indices into the dataset's schema.
    columns: Arc<[usize]>,
    /// Fragments that may hold rows, ascending; the others are never opened.
    fragments: Arc<[usize]>,
    /// Pieces of those fragments that may hold rows, ascending; None: every piece.
    pieces: Option<Arc<[PieceId]>>,
    /// Rows of the surviving pieces, taken together in order; None: all.
    rows: Option<RowRange>,
}

impl DatasetView {
    /// Every column, file and row of `dataset`.
    pub fn new(dataset: Arc<Dataset>) -> Self {
        let columns = (0..dataset.schema().fields().len()).collect();
        let fragments = (0..dataset.num_fragments()).collect();
        DatasetView {
            dataset,
            columns,
            fragments,
            pieces: None,
            rows: None,
        }
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    pub fn columns(&self) -> &[usize] {
        &self.columns
    }

    pub fn fragments(&self) -> &[usize] {
        &self.fragments
    }

    pub fn pieces(&self) -> Option<&[PieceId]> {
        self.pieces.as_deref()
    }

    pub fn rows(&self) -> Option<RowRange> {
        self.rows
    }

    pub fn schema(&self) -> SchemaRef {
        project_schema(self.dataset.schema(), &self.columns)
    }

    pub fn column_names(&self) -> Vec<String> {
        column_names(self.dataset.schema(), &self.columns)
    }

    /// The index into the dataset's schema of the view's column `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        let index = self.dataset.schema().index_of(name).ok()?;
        self.columns.contains(&index).then_some(index)
    }

    /// The named columns, in the order given (each a column of this view, once).
    pub fn select<S: AsRef<str>>(&self, names: &[S]) -> Result<DatasetView> {
        let columns = select_columns(names, |name| {
            self.column_index(name)
                .ok_or_else(|| StorageError::ColumnNotFound {
                    path: PathBuf::from(self.dataset.description()),
                    name: name.to_owned(),
                    available: quoted_names(&self.column_names()),
                })
        })?;
        Ok(DatasetView {
            columns,
            ..self.clone()
        })
    }

    /// Only the fragments `keep` of this view's (a subset of them, ascending).
    pub fn keep_fragments(&self, keep: Vec<usize>) -> DatasetView {
        let pieces = self.pieces.as_ref().map(|pieces| {
            pieces
                .iter()
                .copied()
                .filter(|p| keep.binary_search(&p.fragment).is_ok())
                .collect()
        });
        DatasetView {
            fragments: keep.into(),
            pieces,
            ..self.clone()
        }
    }

    /// Only the pieces `keep` (of this view's fragments, ascending); fragments without a
    /// surviving piece are dropped.
    pub fn keep_pieces(&self, keep: Vec<PieceId>) -> DatasetView {
        let mut fragments: Vec<usize> = keep.iter().map(|p| p.fragment).collect();
        fragments.dedup();
        DatasetView {
            fragments: fragments.into(),
            pieces: Some(keep.into()),
            ..self.clone()
        }
    }

    /// Rows `offset .. offset + length` of this view's rows (clamped like Python slicing).
    pub fn slice(&self, offset: u64, length: u64) -> DatasetView {
        let rows = match self.rows {
            Some(rows) => rows.slice(offset, length),
            None => RowRange { offset, length },
        };
        DatasetView {
            rows: Some(rows),
            ..self.clone()
        }
    }

    /// The pieces of `fragment` (one of the view's) that the view reads, ascending. Opens it.
    pub fn pieces_of(&self, fragment: usize) -> Result<Vec<usize>> {
        Ok(match &self.pieces {
            Some(pieces) => pieces
                .iter()
                .filter(|p| p.fragment == fragment)
                .map(|p| p.piece)
                .collect(),
            None => (0..self.dataset.open(fragment)?.num_pieces()).collect(),
        })
    }

    /// Every piece the view reads, in row order. Opens the view's fragments.
    pub fn all_pieces(&self) -> Result<Vec<PieceId>> {
        let mut out = Vec::new();
        for &fragment in self.fragments.iter() {
            out.extend(
                self.pieces_of(fragment)?
                    .into_iter()
                    .map(|piece| PieceId { fragment, piece }),
            );
        }
        Ok(out)
    }

    /// Rows of the view when known without decoding (every piece's row count is in its file's
    /// metadata). Opens the view's fragments.
    pub fn known_num_rows(&self) -> Option<u64> {
        let mut total = 0u64;
        for piece in self.all_pieces().ok()? {
            total += self
                .dataset
                .open(piece.fragment)
                .ok()?
                .piece_rows(piece.piece)?;
        }
        Some(match self.rows {
            Some(rows) => total.saturating_sub(rows.offset).min(rows.length),
            None => total,
        })
    }

    /// The single-row array of the partition column at dataset index `column` for `fragment`;
    /// None for a column of the files.
    pub fn partition_value(&self, fragment: usize, column: usize) -> Option<&ArrayRef> {
        let position = column.checked_sub(self.dataset.file_schema().fields().len())?;
        self.dataset
            .fragments()
            .get(fragment)?
            .partition_values
            .get(position)
    }
}

/// `value` (one element) repeated `len` times: a partition column of a decoded chunk.
pub fn constant_column(value: &ArrayRef, len: usize) -> ArrayRef {
    if value.is_null(0) {
        return new_null_array(value.data_type(), len);
    }
    let indices = arrow::array::UInt32Array::from(vec![0u32; len]);
    arrow::compute::take(value.as_ref(), &indices, None)
        .unwrap_or_else(|_| new_null_array(value.data_type(), len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use arrow::ipc::writer::FileWriter;

    fn write_ipc(dir: &Path, name: &str, schema: SchemaRef, values: &[i64]) -> PathBuf {
        let path = dir.join(name);
        let mut writer =
            FileWriter::try_new(std::fs::File::create(&path).unwrap(), &schema).unwrap();
        for chunk in values.chunks(2) {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(chunk.to_vec()))],
            )
            .unwrap();
            writer.write(&batch).unwrap();
        }
        writer.finish().unwrap();
        path
    }

    fn no_decoded() -> DecodedOpener {
        Arc::new(
            |path: &Path, format: FileFormat, _schema: Option<SchemaRef>| {
                Err(StorageError::Unsupported {
                    path: path.to_owned(),
                    reason: format!("{} is not readable in this test", format.name()),
                })
            },
        )
    }

    #[test]
    fn files_open_lazily_and_must_share_the_first_schema() {
        let dir = crate::test_support::temp_dir("relay-dataset");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, true)]));
        let a = write_ipc(&dir, "a.arrow", schema.clone(), &[1, 2, 3]);
        let b = write_ipc(&dir, "b.arrow", schema.clone(), &[4, 5]);
        let path = dir.join("c.arrow");
        let mut writer =
            FileWriter::try_new(std::fs::File::create(&path).unwrap(), &other).unwrap();
        writer
            .write(
                &RecordBatch::try_new(other.clone(), vec![Arc::new(StringArray::from(vec!["z"]))])
                    .unwrap(),
            )
            .unwrap();
        writer.finish().unwrap();
        let part = |v: i64| -> Vec<ArrayRef> { vec![Arc::new(Int64Array::from(vec![v]))] };
        let specs = vec![
            FragmentSpec {
                path: a,
                format: FileFormat::Ipc,
                partition_values: part(1),
            },
            FragmentSpec {
                path: b,
                format: FileFormat::Ipc,
                partition_values: part(2),
            },
            FragmentSpec {
                path: path.clone(),
                format: FileFormat::Ipc,
                partition_values: part(3),
            },
        ];
        let dataset = Dataset::new(
            "test",
            specs,
            vec![Field::new("p", DataType::Int64, true)],
            no_decoded(),
        )
        .unwrap();
        assert_eq!(dataset.schema().fields().len(), 2);
        assert!(dataset.is_open(0) && !dataset.is_open(1));
        let view = DatasetView::new(dataset.clone());
        assert_eq!(view.keep_fragments(vec![0, 1]).known_num_rows(), Some(5));
        assert!(dataset.is_open(1) && !dataset.is_open(2));
        let error = dataset.open(2).unwrap_err().to_string();
        assert!(
            error.contains("c.arrow") && error.contains("\"x\"") && error.contains("string"),
            "{error}"
        );
        let sliced = view.keep_fragments(vec![0, 1]).slice(1, 3);
        assert_eq!(sliced.known_num_rows(), Some(3));
        assert_eq!(sliced.all_pieces().unwrap().len(), 3);
        assert_eq!(
            view.partition_value(1, 1).map(|v| v
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)),
            Some(2)
        );
        let constant = constant_column(&part(7)[0], 3);
        assert_eq!(constant.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
