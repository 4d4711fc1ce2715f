//! Files whose rows are decoded into memory when read: Parquet, CSV, NDJSON.
//!
//! Unlike an Arrow IPC file, no column of these formats can be a view of the file: each read
//! decodes. What the formats share is what a scan needs from them, so the planner and the
//! executor handle every one the same way: a schema known after opening, independent pieces
//! (Parquet row groups; a whole CSV or NDJSON file) that can be decoded in parallel, and per
//! piece statistics where the file keeps them (Parquet), so pieces that cannot hold a matching
//! row are never decoded.

use std::fmt::Debug;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::Result;
use crate::stats::ColumnStats;

/// An opened file of a format that is decoded when read. Opening reads only what the schema
/// and the piece layout need (Parquet: the footer; CSV/NDJSON: the rows schema inference
/// samples), never the whole file.
pub trait DecodedFile: Send + Sync + Debug {
    fn path(&self) -> &Path;

    /// The format's name as users write it: "parquet", "csv", "ndjson".
    fn format(&self) -> &'static str;

    fn schema(&self) -> SchemaRef;

    /// Pieces that are decoded independently, in row order.
    fn num_pieces(&self) -> usize;

    /// Rows of `piece` when the file says so without decoding it (Parquet row groups).
    fn piece_rows(&self, piece: usize) -> Option<u64>;

    /// Statistics the file stores for `column` (an index into `schema()`) in `piece`; None when
    /// it stores none. `min`/`max` follow `ColumnStats`: one-element arrays of the column type.
    fn piece_stats(&self, piece: usize, column: usize) -> Option<ColumnStats>;

    /// Decodes the `columns` (indices into `schema()`, in that order) of `piece` into record
    /// batches of at most `batch_size` rows whose schema is the projected schema. Errors name
    /// the file and the place (row group, line) that could not be decoded.
    fn read_piece(&self, piece: usize, columns: &[usize], batch_size: usize) -> Result<Vec<RecordBatch>>;
}
