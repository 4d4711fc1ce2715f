//! Storage layer of relay_ml: memory-mapped Arrow IPC files and views over them.
//!
//! Nothing here copies column data: opening a file reads its footer, and decoding a column of a
//! record batch yields arrow arrays whose buffers point into the mapping (unless the file itself
//! forces a copy, which is reported).

mod append;
mod error;
mod ipc;
mod stats;
mod stream;
mod types;
mod view;
mod write;

pub use append::append_ipc_file;
pub use error::{Result, StorageError};
pub use ipc::{BatchInfo, DecodedColumn, IpcFile, IpcFormat, codec_name};
pub use stats::{ColumnStats, batch_stats, cached_batch_stats};
pub use types::{type_name, unit_name};
pub use view::{ColumnView, RowRange, TableView};
pub use write::{IPC_ALIGNMENT, IpcFileWriter, WriteSummary, ipc_write_options, write_ipc_file};
