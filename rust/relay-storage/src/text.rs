//! CSV and newline-delimited JSON files, decoded with arrow-rs's `arrow::csv` and `arrow::json`
//! readers.
//!
//! Both formats are one type, `TextFile`, that differs only in its `TextFormat`: how the
//! schema is inferred, how a decoder is built, and whether spaces and a header line come before
//! records. Everything else (reading, error location) is shared.
//!
//! Opening infers the schema from the first `infer_schema_length` rows (read through a buffered
//! reader, so only those rows are read), unless an explicit schema is given.
//!
//! A file larger than `PIECE_BYTES` is read as several pieces, byte ranges that each start at a
//! record, so that they decode in parallel and a read holds one piece's bytes at a time rather
//! than the whole file. Text has no index of where records start, so the pieces are found when
//! first asked for (`pieces`):
//!
//! - NDJSON: a line break ends a record (JSON strings cannot hold one), so each piece starts
//!   after the first line break past its nominal start, found by reading a little there.
//! - CSV: a quoted field may span lines, so the file is scanned once from its start, following
//!   quotes: a line break outside quotes ends a record. Quotes are followed the way the CSV
//!   decoder reads them only while every quote that opens a field stands at the start of one;
//!   from the first that does not (`5'10"` in an unquoted field), the rest of the file is one
//!   piece, so a split can never fall inside a record.
//!
//! Errors name the file and the line (1-based, counting a CSV header line) of the record that
//! could not be decoded, and the column where one column alone is at fault. arrow-rs's readers
//! report no usable line: the CSV reader counts records of the current batch, not lines of the
//! file (quoted fields may span lines, and a header shifts the count), and the JSON reader gives
//! none. So when a batch fails, its records are decoded again one at a time from the batch's
//! first byte; the first that fails is the bad record, and its line is one plus the number of
//! newlines before its first byte. That second pass runs only on the error path.

use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;

use crate::decoded::{
    DecodedFile, PositionalFile, catch_decoder_panic, check_piece_and_columns, decoded_roots,
    project_decoded,
};
use crate::error::{Result, StorageError};
use crate::stats::ColumnStats;
use crate::write::io_error;

/// How a CSV file is read.
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The columns' names and types; None infers them (types from the sampled rows, names
    /// from the header, or `column_1`, `column_2`, ... without one). An explicit schema
    /// overrides the header's names.
    pub schema: Option<SchemaRef>,
    /// Whether the first line names the columns (and holds no data).
    pub has_header: bool,
    pub delimiter: u8,
    /// Rows sampled to infer the schema; None reads every row.
    pub infer_schema_length: Option<usize>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            schema: None,
            has_header: true,
            delimiter: b',',
            infer_schema_length: Some(1000),
        }
    }
}

/// How a newline-delimited JSON file (one object per line) is read.
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// The columns' names and types; None infers them from the sampled lines. Keys that are
    /// not in an explicit schema are ignored.
    pub schema: Option<SchemaRef>,
    /// Lines (objects) sampled to infer the schema; None reads every line.
    pub infer_schema_length: Option<usize>,
}

impl Default for JsonOptions {
    fn default() -> Self {
        JsonOptions {
            schema: None,
            infer_schema_length: Some(1000),
        }
    }
}

const CSV: &str = "csv";
const NDJSON: &str = "ndjson";

/// The format of a text file, with what decoding it needs beyond the schema.
#[derive(Debug, Clone, Copy)]
enum TextFormat {
    /// Whether the first line is a header (skipped when decoding), and the field delimiter.
    Csv {
        has_header: bool,
        delimiter: u8,
    },
    Ndjson,
}

impl TextFormat {
    fn name(self) -> &'static str {
        match self {
            TextFormat::Csv { .. } => CSV,
            TextFormat::Ndjson => NDJSON,
        }
    }

    /// Whether records are JSON values (spaces between them are not data).
    fn is_json(self) -> bool {
        matches!(self, TextFormat::Ndjson)
    }

    fn has_header(self) -> bool {
        matches!(
            self,
            TextFormat::Csv {
                has_header: true,
                ..
            }
        )
    }
}

/// An opened CSV or NDJSON file and the schema it is read with.
#[derive(Debug)]
pub struct TextFile {
    path: PathBuf,
    reader: PositionalFile,
    schema: SchemaRef,
    format: TextFormat,
    /// Nominal size of a piece (`PIECE_BYTES`; smaller in tests).
    piece_bytes: u64,
    /// The pieces, each starting at a record; found on first use.
    pieces: OnceLock<Vec<TextPiece>>,
}

/// A byte range of a text file that starts at a record, and its rows once decoded.
#[derive(Debug)]
struct TextPiece {
    bytes: Range<u64>,
    rows: OnceLock<u64>,
}

/// Nominal bytes of a piece of a text file: a few batches of rows, enough pieces for the pool's
/// threads in files of tens of megabytes.
const PIECE_BYTES: u64 = 8 << 20;

/// Bytes read at a time while looking for record boundaries.
const SCAN_BLOCK_BYTES: usize = 4 << 20;

/// The starts of pieces of a CSV file after the first (which starts at 0), found by following
/// its quotes from the start of the file (see the module documentation). Fed the file's bytes
/// block by block, in order.
///
/// The bytes are looked at 64 at a time, as bit masks (one bit per byte) of quotes, line breaks
/// and the bytes a field starts after; the quote state after each byte is the running parity
/// of the quotes (a prefix XOR), so a line break is a record boundary where that parity is
/// even. A quote that makes the parity odd opens a field (or is the second of an escaped `""`)
/// and must follow a delimiter, a line feed or a quote; the first that does not stops the scan.
/// Following each quote found with `memchr` instead, the scan took about a quarter of the
/// read of a 77 MB CSV file whose strings pyarrow had all quoted; with masks built by
/// a compiler-vectorized loop rather than SSE2 compares, over a third.
struct CsvBoundaries {
    delimiter: u8,
    piece_bytes: u64,
    /// Where the next piece should start at the earliest: a boundary is the first line break
    /// outside quotes from there.
    next_nominal: u64,
    starts: Vec<u64>,
    /// Whether the byte before the current chunk is inside quotes.
    inside_quotes: bool,
    /// Whether a field may open with a quote right after the byte before the current chunk
    /// (true before the file's first byte).
    may_open: bool,
    /// False from the first quote the scan cannot follow: no boundary after it.
    followed: bool,
}

/// One bit per byte of `chunk` equal to `byte`.
#[cfg(target_arch = "x86_64")]
fn byte_mask(chunk: &[u8; 64], byte: u8) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut mask = 0u64;
    for lane in 0..4 {
        // SAFETY: SSE2 is part of every x86_64 CPU; the unaligned load reads bytes 16 * lane
        // .. 16 * lane + 16 of the 64-byte chunk.
        let bits = unsafe {
            let bytes = _mm_loadu_si128(chunk.as_ptr().add(16 * lane).cast::<__m128i>());
            _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(byte as i8)))
        };
        mask |= u64::from(bits as u16) << (16 * lane);
    }
    mask
}

/// One bit per byte of `chunk` equal to `byte`.
#[cfg(not(target_arch = "x86_64"))]
fn byte_mask(chunk: &[u8; 64], byte: u8) -> u64 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | (u64::from(b == byte) << i))
}

/// Bit i is the XOR of bits 0..=i of `bits`.
fn prefix_xor(mut bits: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        bits ^= bits << shift;
    }
    bits
}

impl CsvBoundaries {
    fn new(delimiter: u8, piece_bytes: u64) -> CsvBoundaries {
        CsvBoundaries {
            delimiter,
            piece_bytes,
            next_nominal: piece_bytes,
            starts: Vec::new(),
            inside_quotes: false,
            may_open: true,
            followed: true,
        }
    }

    /// Follows the block of bytes at `base`; false once no later boundary can be found.
    fn feed(&mut self, base: u64, block: &[u8]) -> bool {
        let chunks = block.chunks_exact(64);
        let rest = chunks.remainder();
        for (index, chunk) in chunks.enumerate() {
            if !self.followed {
                return false;
            }
            self.feed_chunk(
                base + 64 * index as u64,
                chunk.try_into().expect("64 bytes"),
            );
        }
        if !rest.is_empty() && self.followed {
            // Padded with zero bytes, which are none of the bytes looked for.
            let mut chunk = [0u8; 64];
            chunk[..rest.len()].copy_from_slice(rest);
            self.feed_chunk(base + (block.len() - rest.len()) as u64, &chunk);
        }
        self.followed
    }

    fn feed_chunk(&mut self, base: u64, chunk: &[u8; 64]) {
        let quotes = byte_mask(chunk, b'"');
        let newlines = byte_mask(chunk, b'\n');
        // A quote after a carriage return alone (old Mac line ends) stops the scan: safe, and one
        // mask fewer.
        let field_starts_after = byte_mask(chunk, self.delimiter) | newlines | quotes;
        // Bit i: inside quotes after byte i.
        let inside = prefix_xor(quotes) ^ if self.inside_quotes { u64::MAX } else { 0 };
        let openings = quotes & inside;
        let may_open = (field_starts_after << 1) | u64::from(self.may_open);
        let mut record_ends = newlines & !inside;
        let unfollowed = openings & !may_open;
        if unfollowed != 0 {
            record_ends &= (1u64 << unfollowed.trailing_zeros()) - 1;
            self.followed = false;
        }
        while record_ends != 0 && self.next_nominal < base + 64 {
            let from = self.next_nominal.saturating_sub(base);
            let candidates = record_ends & (u64::MAX << from);
            if candidates == 0 {
                break;
            }
            let start = base + u64::from(candidates.trailing_zeros()) + 1;
            self.starts.push(start);
            self.next_nominal = start + self.piece_bytes;
        }
        self.inside_quotes = inside >> 63 == 1;
        self.may_open = field_starts_after >> 63 == 1;
    }
}

/// A record decoder of one format: arrow-rs's CSV and JSON decoders share this shape.
trait RecordDecoder {
    /// Consumes bytes of `input` until a batch is full or the input ends; returns the bytes
    /// consumed. Empty input marks the end of the file.
    fn decode(&mut self, input: &[u8]) -> Result<usize, ArrowError>;
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError>;
}

impl RecordDecoder for arrow::csv::reader::Decoder {
    fn decode(&mut self, input: &[u8]) -> Result<usize, ArrowError> {
        arrow::csv::reader::Decoder::decode(self, input)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        arrow::csv::reader::Decoder::flush(self)
    }
}

impl RecordDecoder for arrow::json::reader::Decoder {
    fn decode(&mut self, input: &[u8]) -> Result<usize, ArrowError> {
        arrow::json::reader::Decoder::decode(self, input)
    }
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        arrow::json::reader::Decoder::flush(self)
    }
}

/// Decodes from `offset` until the decoder's batch is full or `bytes` end (then ends the input,
/// so that a last record without a line terminator is complete), and flushes: the bytes
/// consumed and the batch, if one came out.
fn decode_next(
    decoder: &mut dyn RecordDecoder,
    bytes: &[u8],
    offset: usize,
) -> Result<(usize, Option<RecordBatch>), ArrowError> {
    let consumed = decoder.decode(&bytes[offset..])?;
    if offset + consumed == bytes.len() && consumed > 0 {
        decoder.decode(&[])?;
    }
    Ok((consumed, decoder.flush()?))
}

/// A decoding failure: the byte where the batch (or record) that failed starts, and why.
struct DecodeFailure {
    start: usize,
    error: ArrowError,
}

/// Decodes all of `bytes` into batches. On failure, reports the first byte of the batch that
/// failed (a record boundary, or the start of the file while a CSV header is skipped).
fn decode_all(
    decoder: &mut dyn RecordDecoder,
    bytes: &[u8],
) -> Result<Vec<RecordBatch>, DecodeFailure> {
    let mut batches = Vec::new();
    let mut offset = 0;
    loop {
        let start = offset;
        let (consumed, batch) =
            decode_next(decoder, bytes, offset).map_err(|error| DecodeFailure { start, error })?;
        offset += consumed;
        match batch {
            Some(batch) => batches.push(batch),
            None if offset == bytes.len() || consumed == 0 => return Ok(batches),
            None => {}
        }
    }
}

/// Whether the text formats treat `byte` as space between records.
fn is_space(byte: u8, json: bool) -> bool {
    matches!(byte, b'\n' | b'\r') || (json && matches!(byte, b' ' | b'\t'))
}

/// The 1-based line of the record that starts at or after `start` (skipping the line breaks,
/// and for JSON the spaces, before it).
fn line_of(bytes: &[u8], start: usize, json: bool) -> usize {
    let first = bytes[start..]
        .iter()
        .position(|&byte| !is_space(byte, json))
        .map_or(bytes.len(), |skip| start + skip);
    1 + memchr::memchr_iter(b'\n', &bytes[..first]).count()
}

/// Decodes records one at a time from `start` with `decoder` (batch size 1) and returns the
/// first byte of the first record that fails, with its error.
fn first_failing_record(
    decoder: &mut dyn RecordDecoder,
    bytes: &[u8],
    start: usize,
) -> Option<(usize, ArrowError)> {
    let mut offset = start;
    loop {
        match decode_next(decoder, bytes, offset) {
            Err(error) => return Some((offset, error)),
            Ok((0, None)) => return None,
            Ok((consumed, _)) => {
                offset += consumed;
                if offset >= bytes.len() {
                    return None;
                }
            }
        }
    }
}

fn empty_file_error(path: &Path, format: &'static str, what: &str) -> StorageError {
    StorageError::Malformed {
        path: path.to_owned(),
        format,
        place: "line 1".into(),
        reason: format!(
            "the file is empty: there is no {what} to take the columns from (pass a schema to read it as no rows)"
        ),
    }
}

/// The schema of a CSV file, inferred from the rows `options` sample.
fn infer_csv_schema(path: &Path, reader: &PositionalFile, options: &CsvOptions) -> Result<Schema> {
    if reader.len == 0 {
        return Err(empty_file_error(
            path,
            CSV,
            if options.has_header { "header" } else { "row" },
        ));
    }
    let format = arrow::csv::reader::Format::default()
        .with_header(options.has_header)
        .with_delimiter(options.delimiter);
    let source = BufReader::new(reader.reader_from(0));
    let (schema, _) = catch_decoder_panic(
        path,
        CSV,
        || "schema inference".into(),
        || {
            format
                .infer_schema(source, options.infer_schema_length)
                .map_err(|error| StorageError::Malformed {
                    path: path.to_owned(),
                    format: CSV,
                    place: "the rows sampled for schema inference".into(),
                    reason: error.to_string(),
                })
        },
    )?;
    Ok(schema)
}

/// Yields the JSON values of the non-blank lines of a file, and keeps the line number of the
/// last one, so that an inference error can name its line.
struct JsonLines<R> {
    lines: std::io::Split<BufReader<R>>,
    line: usize,
    values: usize,
    limit: Option<usize>,
}

impl<R: Read> Iterator for JsonLines<R> {
    type Item = Result<serde_json::Value, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.limit.is_some_and(|limit| self.values >= limit) {
            return None;
        }
        loop {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(error) => return Some(Err(ArrowError::ExternalError(Box::new(error)))),
            };
            self.line += 1;
            if line.iter().all(|&byte| is_space(byte, true)) {
                continue;
            }
            self.values += 1;
            return Some(
                serde_json::from_slice(&line)
                    .map_err(|error| ArrowError::JsonError(format!("invalid JSON: {error}"))),
            );
        }
    }
}

/// The schema of an NDJSON file, inferred from the objects `options` sample.
fn infer_json_schema(
    path: &Path,
    reader: &PositionalFile,
    options: &JsonOptions,
) -> Result<Schema> {
    let mut lines = JsonLines {
        lines: BufReader::new(reader.reader_from(0)).split(b'\n'),
        line: 0,
        values: 0,
        limit: options.infer_schema_length,
    };
    let inferred = catch_decoder_panic(
        path,
        NDJSON,
        || "schema inference".into(),
        || {
            arrow::json::reader::infer_json_schema_from_iterator(&mut lines).map_err(|error| {
                StorageError::Malformed {
                    path: path.to_owned(),
                    format: NDJSON,
                    place: format!("line {}", lines.line.max(1)),
                    reason: error.to_string(),
                }
            })
        },
    )?;
    if lines.values == 0 {
        return Err(empty_file_error(path, NDJSON, "JSON object"));
    }
    Ok(inferred)
}

impl TextFile {
    /// Opens a CSV file and infers its schema from the first `options.infer_schema_length`
    /// rows (or takes `options.schema`).
    ///
    /// Errors: `NotFound`; `WrongFormat` for a directory or a device; `Malformed` for an empty
    /// file without a schema, or rows that cannot be sampled (ragged rows, invalid UTF-8: the
    /// message gives the line).
    pub fn open_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Arc<TextFile>> {
        let format = TextFormat::Csv {
            has_header: options.has_header,
            delimiter: options.delimiter,
        };
        TextFile::open(
            path.as_ref(),
            format,
            options.schema.as_ref(),
            |path, reader| infer_csv_schema(path, reader, options),
        )
    }

    /// Opens an NDJSON file and infers its schema from the first `options.infer_schema_length`
    /// objects (or takes `options.schema`).
    ///
    /// Errors: `NotFound`; `WrongFormat` for a directory or a device; `Malformed` for an empty
    /// file without a schema, or a sampled line that is not a JSON object or whose types
    /// conflict with earlier lines (the message gives the line).
    pub fn open_ndjson(path: impl AsRef<Path>, options: &JsonOptions) -> Result<Arc<TextFile>> {
        TextFile::open(
            path.as_ref(),
            TextFormat::Ndjson,
            options.schema.as_ref(),
            |path, reader| infer_json_schema(path, reader, options),
        )
    }

    /// Opens the file and takes `schema`, or infers one with `infer`.
    fn open(
        path: &Path,
        format: TextFormat,
        schema: Option<&SchemaRef>,
        infer: impl FnOnce(&Path, &PositionalFile) -> Result<Schema>,
    ) -> Result<Arc<TextFile>> {
        let reader = PositionalFile::open(path, format.name())?;
        let schema = match schema {
            Some(schema) => schema.clone(),
            None => Arc::new(infer(path, &reader)?),
        };
        Ok(Arc::new(TextFile {
            path: path.to_owned(),
            reader,
            schema,
            format,
            piece_bytes: PIECE_BYTES,
            pieces: OnceLock::new(),
        }))
    }

    /// A decoder of batches of `batch_size` rows of the schema `columns` (None: all; in file
    /// order), that skips a CSV header line when `skip_header`.
    fn decoder(
        &self,
        batch_size: usize,
        columns: Option<&[usize]>,
        skip_header: bool,
    ) -> Result<Box<dyn RecordDecoder>, ArrowError> {
        match self.format {
            TextFormat::Csv { delimiter, .. } => {
                let mut builder = arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(skip_header)
                    .with_delimiter(delimiter)
                    .with_batch_size(batch_size);
                if let Some(columns) = columns {
                    builder = builder.with_projection(columns.to_vec());
                }
                Ok(Box::new(builder.build_decoder()))
            }
            TextFormat::Ndjson => {
                let schema = match columns {
                    Some(columns) => Arc::new(self.schema.project(columns)?),
                    None => self.schema.clone(),
                };
                Ok(Box::new(
                    // Inference widens a column that holds strings and numbers to strings;
                    // coercing primitives makes such a column decodable ("old" and 20 become
                    // "old" and "20").
                    arrow::json::ReaderBuilder::new(schema)
                        .with_batch_size(batch_size)
                        .with_coerce_primitive(true)
                        .build_decoder()?,
                ))
            }
        }
    }

    /// Where a decode of the piece `bytes` failed and why, located as the module documentation
    /// says; `header` tells whether the piece starts with the CSV header, and `first_line` is
    /// the line the piece starts on.
    fn locate_failure(
        &self,
        bytes: &[u8],
        header: bool,
        first_line: usize,
        failure: DecodeFailure,
    ) -> StorageError {
        let format = self.format.name();
        let json = self.format.is_json();
        let malformed = |place: String, reason: String| StorageError::Malformed {
            path: self.path.clone(),
            format,
            place,
            reason,
        };
        let line_of = |start: usize| first_line - 1 + line_of(bytes, start, json);
        // Decoders of batch size 1 for records that start right at their input (no header).
        let single = |columns: Option<&[usize]>| self.decoder(1, columns, false);
        let DecodeFailure { mut start, error } = failure;
        if header && start == 0 {
            // The batch that failed began with the header: start after it.
            start = memchr::memchr(b'\n', bytes).map_or(bytes.len(), |newline| newline + 1);
            if start >= bytes.len() {
                return malformed("line 1".into(), error.to_string());
            }
        }
        let first_failing = single(None)
            .ok()
            .and_then(|mut decoder| first_failing_record(decoder.as_mut(), bytes, start));
        let Some((record, record_error)) = first_failing else {
            return malformed(
                format!("the record at line {} or after", line_of(start)),
                error.to_string(),
            );
        };
        let line = line_of(record);
        // The column at fault, when the record decodes without it: try each column alone.
        let failing: Vec<usize> = (0..self.schema.fields().len())
            .filter(|&column| {
                single(Some(std::slice::from_ref(&column)))
                    .is_ok_and(|mut decoder| decode_next(decoder.as_mut(), bytes, record).is_err())
            })
            .collect();
        let place = match failing.as_slice() {
            [column] => format!(
                "line {line}, column {:?}",
                self.schema.field(*column).name()
            ),
            _ => format!("line {line}"),
        };
        malformed(place, without_decoder_place(&record_error.to_string()))
    }

    /// Reads `range` of the file (within its length at open).
    fn read_range(&self, range: &Range<u64>) -> Result<Vec<u8>> {
        self.reader.check_unchanged(&self.path)?;
        let length =
            usize::try_from(range.end - range.start).map_err(|_| StorageError::Unsupported {
                path: self.path.clone(),
                reason: "the file is larger than this machine's address space".into(),
            })?;
        self.reader
            .read_vec(range.start, length)
            .map_err(io_error(&self.path, "read"))
    }

    /// The pieces (see the module documentation); the whole file as one piece when it is small
    /// or cannot be read here (the read of the piece then reports why).
    fn pieces(&self) -> &[TextPiece] {
        self.pieces.get_or_init(|| {
            let len = self.reader.len;
            let starts = if len <= self.piece_bytes {
                Vec::new()
            } else {
                match self.format {
                    TextFormat::Csv { delimiter, .. } => self.csv_piece_starts(delimiter),
                    TextFormat::Ndjson => self.line_piece_starts(),
                }
                .unwrap_or_default()
            };
            // An empty file is one empty piece.
            let mut bounds: Vec<u64> = std::iter::once(0)
                .chain(starts.into_iter().filter(|&start| 0 < start && start < len))
                .collect();
            bounds.dedup();
            bounds.push(len);
            bounds
                .windows(2)
                .map(|pair| TextPiece {
                    bytes: pair[0]..pair[1],
                    rows: OnceLock::new(),
                })
                .collect()
        })
    }

    /// Starts of the pieces after the first of a CSV file: one scan of the whole file, stopped
    /// early where quotes can no longer be followed.
    fn csv_piece_starts(&self, delimiter: u8) -> Result<Vec<u64>> {
        let mut boundaries = CsvBoundaries::new(delimiter, self.piece_bytes);
        let mut base = 0;
        while base < self.reader.len {
            let block =
                self.read_range(&(base..self.reader.len.min(base + SCAN_BLOCK_BYTES as u64)))?;
            if !boundaries.feed(base, &block) {
                break;
            }
            base += block.len() as u64;
        }
        Ok(boundaries.starts)
    }

    /// Starts of the pieces after the first of a file whose records end at line breaks: after
    /// the first line break at or past each nominal start.
    fn line_piece_starts(&self) -> Result<Vec<u64>> {
        let mut starts = Vec::new();
        let mut nominal = self.piece_bytes;
        let mut position = nominal;
        while position < self.reader.len {
            let window = self.read_range(&(position..self.reader.len.min(position + 64 * 1024)))?;
            match memchr::memchr(b'\n', &window) {
                Some(offset) => {
                    let start = position + offset as u64 + 1;
                    starts.push(start);
                    nominal = start + self.piece_bytes;
                    position = nominal;
                }
                None => position += window.len() as u64,
            }
        }
        Ok(starts)
    }

    /// The line (1-based) that byte `start` of the file is on: one plus the line breaks before
    /// it. Reads the file up to there, so it serves error messages only.
    fn line_at(&self, start: u64) -> usize {
        let mut lines = 1;
        let mut base = 0;
        while base < start {
            let Ok(block) = self.read_range(&(base..start.min(base + SCAN_BLOCK_BYTES as u64)))
            else {
                break;
            };
            lines += memchr::memchr_iter(b'\n', &block).count();
            base += block.len() as u64;
        }
        lines
    }
}

impl DecodedFile for TextFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn format(&self) -> &'static str {
        self.format.name()
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn num_pieces(&self) -> usize {
        self.pieces().len()
    }

    /// Known once the piece has been decoded.
    fn piece_rows(&self, piece: usize) -> Option<u64> {
        self.pieces().get(piece)?.rows.get().copied()
    }

    fn piece_stats(&self, _piece: usize, _column: usize) -> Option<ColumnStats> {
        None
    }

    fn read_piece(
        &self,
        piece: usize,
        columns: &[usize],
        batch_size: usize,
    ) -> Result<Vec<RecordBatch>> {
        let path = &self.path;
        let format = self.format.name();
        let pieces = self.pieces();
        check_piece_and_columns(
            path,
            pieces.len(),
            piece,
            self.schema.fields().len(),
            columns,
        )?;
        let range = &pieces[piece].bytes;
        let bytes = self.read_range(range)?;
        // Decoded in file order, each column once; with no column asked for, the first is decoded
        // so that rows are counted.
        let mut roots = decoded_roots(columns);
        if roots.is_empty() && !self.schema.fields().is_empty() {
            roots.push(0);
        }
        let header = piece == 0 && self.format.has_header();
        let place = || match pieces.len() {
            1 => "the whole file".to_string(),
            _ => format!(
                "bytes {}..{} (from line {})",
                range.start,
                range.end,
                self.line_at(range.start)
            ),
        };
        let decoded = catch_decoder_panic(path, format, place, || {
            let mut decoder = self
                .decoder(batch_size.max(1), Some(&roots), header)
                .map_err(|error| StorageError::Unsupported {
                    path: path.clone(),
                    reason: format!("cannot read this schema from {format}: {error}"),
                })?;
            decode_all(decoder.as_mut(), &bytes).map_err(|failure| {
                let first_line = if range.start == 0 {
                    1
                } else {
                    self.line_at(range.start)
                };
                self.locate_failure(&bytes, header, first_line, failure)
            })
        })?;
        let rows = decoded.iter().map(|batch| batch.num_rows() as u64).sum();
        pieces[piece].rows.get_or_init(|| rows);
        project_decoded(path, format, &place, &self.schema, columns, &roots, decoded)
    }
}

/// arrow-csv's message without the place it gives (" for column 1 at line 1499"): its column
/// is an index into the decoder's projection and its line counts records of the decoder's own
/// input, neither what the file holds. The place relay found is given beside it.
fn without_decoder_place(message: &str) -> String {
    const AT: &str = " at line ";
    let place = message.find(" for column ").and_then(|start| {
        let at = start + message[start..].find(AT)? + AT.len();
        let digits = message[at..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(message.len() - at);
        Some((start, at + digits))
    });
    match place {
        Some((start, end)) => format!("{}{}", &message[..start], &message[end..]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn temp_file(name: &str, contents: &[u8]) -> crate::test_support::TempFile {
        let path = crate::test_support::TempFile::new("relay-text-test", name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Opens a CSV file with the default options but `rows` sampled for schema inference.
    fn csv_sampling(path: &Path, rows: Option<usize>) -> Arc<TextFile> {
        let options = CsvOptions {
            infer_schema_length: rows,
            ..Default::default()
        };
        TextFile::open_csv(path, &options).unwrap()
    }

    /// Opens a CSV file (with a header, comma-separated) read with `schema`.
    fn csv_with_schema(path: &Path, schema: SchemaRef) -> Arc<TextFile> {
        let options = CsvOptions {
            schema: Some(schema),
            ..Default::default()
        };
        TextFile::open_csv(path, &options).unwrap()
    }

    /// Opens an NDJSON file with `rows` lines sampled for schema inference.
    fn ndjson_sampling(path: &Path, rows: Option<usize>) -> Arc<TextFile> {
        let options = JsonOptions {
            infer_schema_length: rows,
            ..Default::default()
        };
        TextFile::open_ndjson(path, &options).unwrap()
    }

    /// Opens an NDJSON file read with `schema`.
    fn ndjson_with_schema(path: &Path, schema: SchemaRef) -> Arc<TextFile> {
        let options = JsonOptions {
            schema: Some(schema),
            ..Default::default()
        };
        TextFile::open_ndjson(path, &options).unwrap()
    }

    fn read_all(file: &dyn DecodedFile, columns: &[usize], batch_size: usize) -> RecordBatch {
        let batches = file.read_piece(0, columns, batch_size).unwrap();
        let schema = Arc::new(file.schema().project(columns).unwrap());
        arrow::compute::concat_batches(&schema, &batches).unwrap()
    }

    const CSV_DATA: &[u8] =
        b"id,score,name\n1,0.5,ann\n2,,bob\n3,2.5,\"c, d\"\n4,3.5,\"multi\nline\"\n5,4.5,eve\n";

    #[test]
    fn csv_infers_and_reads() {
        let path = temp_file("a.csv", CSV_DATA);
        let file = TextFile::open_csv(&path, &CsvOptions::default()).unwrap();
        assert_eq!(file.format(), "csv");
        assert_eq!(file.num_pieces(), 1);
        let schema = file.schema();
        let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(
            types,
            vec![&DataType::Int64, &DataType::Float64, &DataType::Utf8]
        );
        let all = read_all(file.as_ref(), &[0, 1, 2], 2);
        assert_eq!(
            all.column(0).as_ref(),
            &Int64Array::from(vec![1, 2, 3, 4, 5]) as &dyn Array
        );
        assert_eq!(
            all.column(1).as_ref(),
            &Float64Array::from(vec![Some(0.5), None, Some(2.5), Some(3.5), Some(4.5)])
                as &dyn Array
        );
        assert_eq!(all.column(2).as_string::<i32>().value(2), "c, d");
        assert_eq!(all.column(2).as_string::<i32>().value(3), "multi\nline");
        // Projection in the asked order; no columns still counts rows.
        let projected = read_all(file.as_ref(), &[2, 0], 100);
        assert_eq!(projected.schema().field(0).name(), "name");
        assert_eq!(projected.column(1).as_primitive::<Int64Type>().value(4), 5);
        let batches = file.read_piece(0, &[], 3).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 5);
        assert!(file.read_piece(1, &[0], 3).is_err());
        // No statistics; the row count once the piece has been decoded.
        assert!(file.piece_stats(0, 0).is_none() && file.piece_rows(0) == Some(5));
    }

    #[test]
    fn csv_options() {
        // No header, another delimiter, an explicit schema.
        let path = temp_file("b.csv", b"1;x\n2;y\n");
        let file = TextFile::open_csv(
            &path,
            &CsvOptions {
                has_header: false,
                delimiter: b';',
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(file.schema().field(0).name(), "column_1");
        assert_eq!(read_all(file.as_ref(), &[0, 1], 10).num_rows(), 2);
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let file = TextFile::open_csv(
            &path,
            &CsvOptions {
                schema: Some(schema.clone()),
                has_header: false,
                delimiter: b';',
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(file.schema(), schema);
        assert_eq!(
            read_all(file.as_ref(), &[0], 10)
                .column(0)
                .as_string::<i32>()
                .value(1),
            "2"
        );
        // Inference from the first row only: a later float fails to parse as an integer.
        let path = temp_file("c.csv", b"v\n1\n2\n2.5\n");
        let sampled = csv_sampling(&path, Some(1));
        assert_eq!(sampled.schema().field(0).data_type(), &DataType::Int64);
        let error = sampled.read_piece(0, &[0], 100).unwrap_err();
        assert!(error.to_string().contains("line 4"), "{error}");
        let all = csv_sampling(&path, None);
        assert_eq!(all.schema().field(0).data_type(), &DataType::Float64);
    }

    #[test]
    fn csv_bad_value_names_line_and_column() {
        let mut data = b"id,age,name\n".to_vec();
        for i in 1..=10 {
            let age = if i == 6 {
                "old".to_string()
            } else {
                (20 + i).to_string()
            };
            data.extend_from_slice(format!("{i},{age},n{i}\n").as_bytes());
        }
        let path = temp_file("bad.csv", &data);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("age", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let file = csv_with_schema(&path, schema);
        for batch_size in [1, 3, 4, 1000] {
            let error = file.read_piece(0, &[0, 1, 2], batch_size).unwrap_err();
            assert!(
                matches!(error, StorageError::Malformed { format: "csv", .. }),
                "{error}"
            );
            let message = error.to_string();
            assert!(message.contains("bad.csv"), "{message}");
            assert!(
                message.contains("malformed csv at line 7, column \"age\""),
                "{message}"
            );
        }
        // The bad column is not read: no error.
        assert_eq!(read_all(file.as_ref(), &[0, 2], 4).num_rows(), 10);
        // Lines are lines of the file: a quoted field spanning lines and CRLF endings count.
        let path = temp_file(
            "multiline.csv",
            b"id,note\r\n1,\"x\r\ny\"\r\n2,ok\r\nz,3\r\n",
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        let file = csv_with_schema(&path, schema);
        let error = file.read_piece(0, &[0, 1], 2).unwrap_err();
        assert!(
            error.to_string().contains("at line 5, column \"id\""),
            "{error}"
        );
    }

    #[test]
    fn decoder_places_are_left_out_of_messages() {
        assert_eq!(
            without_decoder_place(
                "Parser error: Error while parsing value 'abc' as type 'Float64' for column 1 at line 1499. Row data: '[1500,abc]'"
            ),
            "Parser error: Error while parsing value 'abc' as type 'Float64'. Row data: '[1500,abc]'"
        );
        assert_eq!(without_decoder_place("no place here"), "no place here");
    }

    #[test]
    fn csv_edge_cases() {
        // Empty file.
        let empty = temp_file("empty.csv", b"");
        let error = TextFile::open_csv(&empty, &CsvOptions::default()).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let with_schema = csv_with_schema(&empty, schema);
        assert_eq!(read_all(with_schema.as_ref(), &[0], 10).num_rows(), 0);
        // Header only: the columns, no rows.
        let header = temp_file("header.csv", b"a,b\n");
        let file = TextFile::open_csv(&header, &CsvOptions::default()).unwrap();
        assert_eq!(file.schema().fields().len(), 2);
        assert_eq!(read_all(file.as_ref(), &[0, 1], 10).num_rows(), 0);
        // No final newline.
        let unterminated = temp_file("unterminated.csv", b"a,b\n1,2\n3,4");
        let file = TextFile::open_csv(&unterminated, &CsvOptions::default()).unwrap();
        assert_eq!(read_all(file.as_ref(), &[0, 1], 10).num_rows(), 2);
        // A ragged row after the sampled rows.
        let ragged = temp_file("ragged.csv", b"a,b\n1,2\n3,4\n5\n6,7\n");
        let file = csv_sampling(&ragged, Some(1));
        let error = file.read_piece(0, &[0, 1], 10).unwrap_err();
        assert!(error.to_string().contains("at line 4:"), "{error}");
        // A ragged row among the sampled rows.
        let error = TextFile::open_csv(&ragged, &CsvOptions::default()).unwrap_err();
        assert!(matches!(error, StorageError::Malformed { .. }), "{error}");
        assert!(error.to_string().contains("line 4"), "{error}");
        // Invalid UTF-8 after the sampled rows.
        let invalid = temp_file("invalid.csv", b"a,b\n1,x\n2,\xff\xfe\n3,z\n");
        let file = csv_sampling(&invalid, Some(1));
        let error = file.read_piece(0, &[0, 1], 10).unwrap_err();
        assert!(error.to_string().contains("at line 3"), "{error}");
        assert!(error.to_string().contains("UTF-8"), "{error}");
        // A directory, a missing file.
        let dir = empty.parent().unwrap();
        assert!(matches!(
            TextFile::open_csv(dir, &CsvOptions::default()),
            Err(StorageError::WrongFormat { format: "csv", .. })
        ));
        assert!(matches!(
            TextFile::open_csv(dir.join("missing.csv"), &CsvOptions::default()),
            Err(StorageError::NotFound { .. })
        ));
    }

    const JSON_DATA: &[u8] =
        b"{\"name\": \"a\", \"id\": 1}\n\n{\"id\": 2, \"name\": null}\n{\"id\": 3, \"tags\": [], \"name\": \"c\"}\n";
    const JSON_KEY_ORDER: [&str; 3] = ["name", "id", "tags"];

    #[test]
    fn ndjson_infers_and_reads() {
        let path = temp_file("a.ndjson", JSON_DATA);
        let file = TextFile::open_ndjson(&path, &JsonOptions::default()).unwrap();
        assert_eq!(file.format(), "ndjson");
        let schema = file.schema();
        // Columns in the order their keys first appear in the file, not sorted.
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, JSON_KEY_ORDER);
        assert_eq!(
            schema.field_with_name("id").unwrap().data_type(),
            &DataType::Int64
        );
        assert!(matches!(
            schema.field_with_name("tags").unwrap().data_type(),
            DataType::List(_)
        ));
        let id = schema.index_of("id").unwrap();
        let name = schema.index_of("name").unwrap();
        let all = read_all(file.as_ref(), &[name, id], 2);
        assert_eq!(
            all.column(1).as_ref(),
            &Int64Array::from(vec![1, 2, 3]) as &dyn Array
        );
        assert_eq!(
            all.column(0).as_ref(),
            &StringArray::from(vec![Some("a"), None, Some("c")]) as &dyn Array
        );
        assert_eq!(
            file.read_piece(0, &[], 2)
                .unwrap()
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>(),
            3
        );
        // An explicit schema: keys outside it are ignored.
        let only_id = Arc::new(Schema::new(vec![Field::new("id", DataType::Float64, true)]));
        let file = ndjson_with_schema(&path, only_id.clone());
        assert_eq!(file.schema(), only_id);
        assert_eq!(
            read_all(file.as_ref(), &[0], 10).column(0).as_ref(),
            &Float64Array::from(vec![1.0, 2.0, 3.0]) as &dyn Array
        );
    }

    #[test]
    fn ndjson_bad_value_names_line_and_column() {
        let lines = [
            "{\"id\": 1, \"age\": 20}",
            "{\"id\": 2, \"age\": 21}",
            "{\"id\": 3, \"age\": 22}",
            "{\"id\": 4, \"age\": 23}",
            "{\"id\": 5, \"age\": \"old\"}",
            "{\"id\": 6, \"age\": 25}",
        ];
        let path = temp_file("bad.ndjson", (lines.join("\n") + "\n").as_bytes());
        let file = ndjson_sampling(&path, Some(2));
        let age = file.schema().index_of("age").unwrap();
        for batch_size in [1, 2, 3, 1000] {
            let error = file.read_piece(0, &[0, 1], batch_size).unwrap_err();
            assert!(
                matches!(
                    error,
                    StorageError::Malformed {
                        format: "ndjson",
                        ..
                    }
                ),
                "{error}"
            );
            let message = error.to_string();
            assert!(message.contains("bad.ndjson"), "{message}");
            assert!(
                message.contains("malformed ndjson at line 5, column \"age\""),
                "{message}"
            );
        }
        // Inference over every line sees the string and widens the column to strings.
        let widened = ndjson_sampling(&path, None);
        assert_eq!(widened.schema().field(age).data_type(), &DataType::Utf8);
        let ages = read_all(widened.as_ref(), &[age], 100);
        assert_eq!(ages.column(0).as_string::<i32>().value(4), "old");
    }

    #[test]
    fn ndjson_edge_cases() {
        // Invalid JSON in the sampled lines: the line is named.
        let path = temp_file("invalid.ndjson", b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": nope}\n");
        let error = TextFile::open_ndjson(&path, &JsonOptions::default()).unwrap_err();
        assert!(matches!(error, StorageError::Malformed { .. }), "{error}");
        assert!(error.to_string().contains("at line 3:"), "{error}");
        // After them: found by the decoder.
        let file = ndjson_sampling(&path, Some(1));
        let error = file.read_piece(0, &[0], 10).unwrap_err();
        assert!(error.to_string().contains("at line 3"), "{error}");
        // A line that is not an object.
        let path = temp_file("array.ndjson", b"{\"a\": 1}\n[1, 2]\n");
        let error = TextFile::open_ndjson(&path, &JsonOptions::default()).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        // A truncated last object.
        let path = temp_file("truncated.ndjson", b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3\n");
        let file = ndjson_sampling(&path, Some(2));
        let error = file.read_piece(0, &[0], 10).unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
        // Invalid UTF-8 in a string.
        let path = temp_file("utf8.ndjson", b"{\"a\": \"x\"}\n{\"a\": \"\xff\"}\n");
        let file = ndjson_sampling(&path, Some(1));
        let error = file.read_piece(0, &[0], 10).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        // Empty and blank files.
        for contents in [&b""[..], b"\n\n  \n"] {
            let path = temp_file("empty.ndjson", contents);
            let error = TextFile::open_ndjson(&path, &JsonOptions::default()).unwrap_err();
            assert!(error.to_string().contains("empty"), "{error}");
            let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
            let file = ndjson_with_schema(&path, schema);
            assert_eq!(read_all(file.as_ref(), &[0], 10).num_rows(), 0);
        }
    }

    /// `file` read as pieces of about `piece_bytes`.
    fn with_piece_bytes(file: Arc<TextFile>, piece_bytes: u64) -> Arc<TextFile> {
        let mut file = Arc::try_unwrap(file).unwrap();
        file.piece_bytes = piece_bytes;
        file.pieces = OnceLock::new();
        Arc::new(file)
    }

    /// Every piece of `file`, all columns, concatenated.
    fn read_pieces(file: &TextFile) -> RecordBatch {
        let columns: Vec<usize> = (0..file.schema.fields().len()).collect();
        let batches: Vec<RecordBatch> = (0..file.num_pieces())
            .flat_map(|piece| file.read_piece(piece, &columns, 7).unwrap())
            .collect();
        arrow::compute::concat_batches(&file.schema, &batches).unwrap()
    }

    #[test]
    fn csv_pieces_start_at_records_and_read_as_the_whole_file() {
        let mut data = b"id,note,x\r\n".to_vec();
        for i in 0..400 {
            let note = match i % 7 {
                0 => format!("\"multi\r\nline {i}\""),
                1 => format!("\"say \"\"hi\"\"\n{i}\""),
                2 => "\"a, b\"".to_string(),
                3 => String::new(),
                _ => format!("plain {i}"),
            };
            data.extend_from_slice(format!("{i},{note},{}.5\r\n", i % 13).as_bytes());
            if i % 50 == 0 {
                data.extend_from_slice(b"\r\n");
            }
        }
        let path = temp_file("pieces.csv", &data);
        let whole = read_pieces(&csv_sampling(&path, None));
        assert_eq!(whole.num_rows(), 400);
        for piece_bytes in [1, 16, 100, 333, 4096] {
            let file = with_piece_bytes(csv_sampling(&path, None), piece_bytes);
            assert!(file.num_pieces() > 1 || piece_bytes >= data.len() as u64);
            for piece in file.pieces() {
                // Each piece but the first starts right after a line break.
                assert!(piece.bytes.start == 0 || data[piece.bytes.start as usize - 1] == b'\n');
            }
            assert_eq!(read_pieces(&file), whole, "pieces of {piece_bytes} bytes");
        }
    }

    #[test]
    fn csv_quotes_that_cannot_be_followed_end_the_splitting() {
        // A quote inside an unquoted field (line 4) is a literal to the decoder: after it, the
        // quote parity says nothing, so the rest of the file is one piece.
        let mut data = b"a,b\n".to_vec();
        for i in 0..20 {
            data.extend_from_slice(format!("{i},x\n").as_bytes());
        }
        let literal = data.len();
        data.extend_from_slice(b"20,5'10\"\n21,\"two\nlines\"\n");
        for i in 22..60 {
            data.extend_from_slice(format!("{i},y\n").as_bytes());
        }
        let path = temp_file("literal.csv", &data);
        let file = with_piece_bytes(csv_sampling(&path, None), 10);
        let pieces = file.pieces();
        assert!(pieces.len() > 2);
        let last = &pieces.last().unwrap().bytes;
        assert!(
            last.start <= literal as u64 && last.end == data.len() as u64,
            "{pieces:?}"
        );
        let all = read_pieces(&file);
        assert_eq!(all.num_rows(), 60);
        assert_eq!(all.column(1).as_string::<i32>().value(20), "5'10\"");
        assert_eq!(all.column(1).as_string::<i32>().value(21), "two\nlines");
    }

    #[test]
    fn csv_pieces_of_random_records_read_as_the_whole_file() {
        // Records of three fields drawn from plain, quoted (with delimiters, escaped quotes and
        // line breaks) and unquoted-with-a-literal-quote values.
        let values = [
            "x",
            "",
            "\"a,b\"",
            "\"two\nlines\"",
            "\"q\"\"q\"",
            "\"\"",
            "5'10\"",
            "\"\r\n\"",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut split_cases = 0;
        for case in 0..60 {
            // Other delimiters, and files without a header, split the same way.
            let delimiter = [b',', b';', b'\t'][case % 3];
            let has_header = case % 4 != 3;
            let separator = char::from(delimiter).to_string();
            let mut data = if has_header {
                ["a", "b", "c"].join(&separator) + "\n"
            } else {
                String::new()
            }
            .into_bytes();
            for _ in 0..(20 + next(60)) {
                let fields: Vec<&str> = (0..3)
                    .map(|_| {
                        if case % 2 == 0 && next(10) > 0 {
                            values[next(6)]
                        } else {
                            values[next(values.len())]
                        }
                    })
                    .collect();
                data.extend_from_slice(fields.join(&separator).as_bytes());
                data.extend_from_slice(if next(3) == 0 { b"\r\n" } else { b"\n" });
            }
            let path = temp_file("random.csv", &data);
            let schema = Arc::new(Schema::new(
                ["a", "b", "c"]
                    .map(|name| Field::new(name, DataType::Utf8, true))
                    .to_vec(),
            ));
            let open = || {
                let options = CsvOptions {
                    schema: Some(schema.clone()),
                    has_header,
                    delimiter,
                    ..Default::default()
                };
                TextFile::open_csv(&path, &options).unwrap()
            };
            let whole = read_pieces(&open());
            for piece_bytes in [1, 7, 64, 100] {
                let file = with_piece_bytes(open(), piece_bytes);
                split_cases += usize::from(piece_bytes == 7 && file.num_pieces() > 3);
                assert_eq!(
                    read_pieces(&file),
                    whole,
                    "case {case}, pieces of {piece_bytes} bytes"
                );
            }
        }
        assert!(split_cases >= 30, "{split_cases}");
    }

    #[test]
    fn ndjson_pieces_split_at_line_breaks() {
        let mut data = Vec::new();
        for i in 0..300 {
            data.extend_from_slice(format!("{{\"i\": {i}, \"s\": \"v\\n{i}\"}}\n").as_bytes());
            if i % 40 == 0 {
                data.extend_from_slice(b"\n  \n");
            }
        }
        let path = temp_file("pieces.ndjson", &data);
        let whole = read_pieces(&ndjson_sampling(&path, None));
        assert_eq!(whole.num_rows(), 300);
        for piece_bytes in [1, 50, 999] {
            let file = with_piece_bytes(ndjson_sampling(&path, None), piece_bytes);
            assert!(file.num_pieces() > 1);
            assert_eq!(read_pieces(&file), whole, "pieces of {piece_bytes} bytes");
        }
    }

    #[test]
    fn errors_in_later_pieces_name_lines_of_the_file() {
        let mut data = b"id,age\n".to_vec();
        for i in 1..=100 {
            let age = if i == 77 {
                "old".to_string()
            } else {
                i.to_string()
            };
            data.extend_from_slice(format!("{i},{age}\n").as_bytes());
        }
        let path = temp_file("late.csv", &data);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("age", DataType::Int64, true),
        ]));
        let file = with_piece_bytes(csv_with_schema(&path, schema), 64);
        let errors: Vec<String> = (0..file.num_pieces())
            .filter_map(|piece| {
                file.read_piece(piece, &[0, 1], 5)
                    .err()
                    .map(|e| e.to_string())
            })
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("line 78, column \"age\""),
            "{}",
            errors[0]
        );
    }
}
