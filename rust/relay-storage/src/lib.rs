//! Storage layer of relay_ml: memory-mapped Arrow IPC files and views over them, and readers
//! of the formats that are decoded into memory (Parquet, CSV, NDJSON).
//!
//! Nothing here copies column data: opening a file reads its footer, and decoding a column of a
//! record batch yields arrow arrays whose buffers point into the mapping (unless the file itself
//! forces a copy, which is reported).

mod append;
mod dataset;
mod decoded;
mod error;
pub mod fault;
pub mod fuzzing;
mod ipc;
mod nesting;
mod parquet;
mod parquet_selected;
mod source;
mod stats;
mod stream;
#[cfg(test)]
mod test_support;
mod text;
mod types;
mod view;
mod write;
mod write_parquet;

pub use self::parquet::ParquetFile;
pub use append::{RepairSummary, append_ipc_file, repair_ipc_file};
pub use dataset::{
    Dataset, DatasetView, DecodedOpener, FileFormat, FormatOptions, Fragment, FragmentSpec,
    OpenedFile, PieceId, constant_column,
};
pub use decoded::{DecodedFile, PieceBatches, SelectedColumnReader};
pub use error::{Result, StorageError};
pub use ipc::{
    BatchInfo, DecodedColumn, IpcAccess, IpcFile, IpcFormat, codec_name, for_each_buffer,
};
pub use source::{
    HIVE_NULL, OpenedSource, ResolvedSource, ScanOptions, Source, open_source, resolve_source,
};
pub use stats::{ColumnStats, batch_stats, cached_batch_stats};
pub use text::{CsvOptions, JsonOptions, TextFile};
pub use types::{type_name, unit_name};
pub use view::{ColumnView, RowRange, TableView, slice_batches, slice_rows};
pub use write::{IPC_ALIGNMENT, IpcFileWriter, WriteSummary, ipc_write_options, write_ipc_file};
pub use write_parquet::{
    DEFAULT_ROW_GROUP_ROWS, ParquetFileWriter, ParquetWriteOptions, write_parquet_file,
};
