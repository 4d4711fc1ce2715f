//! Execution layer of relay_ml: turns views of mapped files into the memory consumers ask for,
//! copying only where the view cannot be handed over as it is.
//!
//! Modules build only on those listed before them:
//! - shared ground: `error` (`ExecError`), `pool` (the rayon pool), `view` (`ViewSet`, `Chunk`),
//!   `profile`, `eval` (expression kernels), `keys` (group and join keys), `dense`;
//! - operators, each over executed inputs: `filter`, `project`, `scan`, `read`, `gather`,
//!   `nodes` (take, memory, reinterpret, attached columns, collect), `sort`, `distinct`,
//!   `join`, `aggregate`;
//! - `execute`, the dispatcher that runs a plan's nodes through them;
//! - what runs plans: `provenance`, training batches (`order`, `batches`, `pieces`, `feed`)
//!   and `fuzzing`.

mod aggregate;
mod batches;
mod dense;
mod distinct;
mod error;
mod eval;
mod execute;
mod feed;
mod filter;
pub mod fuzzing;
mod gather;
mod join;
mod keys;
mod nodes;
mod order;
mod pieces;
mod pool;
mod profile;
mod project;
mod provenance;
mod read;
mod scan;
mod sort;
#[cfg(test)]
mod test_support;
mod view;

pub use batches::ColumnShape;
pub use dense::{
    DenseArray, DenseDtype, DenseTimeUnit, dictionary_codes, materialize, zero_copy_blocker,
};
pub use error::ExecError;
pub use execute::execute;
pub use feed::{BatchPlan, BatchStream, Output, OutputMemory, RaggedDense, StreamSpec, outputs_of};
pub use gather::{MemoryLayout, dense_column, gather_fixed_width};
pub use nodes::collect_batches;
pub use order::{EpochOrder, Shuffle, epoch_order};
pub use profile::{OperatorStats, Profile};
pub use provenance::{Verdict, chunks_verdict, column_verdict, explain_column, export_range};
pub use view::{Chunk, ViewSet};
