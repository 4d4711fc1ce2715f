//! Execution layer of relay_ml: turns views of mapped files into the memory consumers ask for,
//! copying only where the view cannot be handed over as it is.

pub mod aggregate;
pub mod batches;
pub mod dense;
pub mod distinct;
pub mod eval;
pub mod execute;
pub mod feed;
pub mod fuzzing;
pub mod gather;
pub mod join;
pub mod keys;
pub mod nodes;
pub mod order;
pub mod pieces;
pub mod profile;
pub mod provenance;
pub mod read;
pub mod sort;
#[cfg(test)]
mod test_support;

pub use dense::{
    DenseArray, DenseDtype, DenseTimeUnit, dictionary_codes, materialize, zero_copy_blocker,
};
