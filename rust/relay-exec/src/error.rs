//! The error every operator returns, and how an arrow error names the file whose rows failed.

use std::path::PathBuf;

use arrow::error::ArrowError;
use relay_plan::LogicalPlan;
use relay_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    #[error("{0}")]
    Plan(#[from] relay_plan::PlanError),
    /// Evaluating an expression over a file's rows failed (a division by zero, an overflowing
    /// cast, a predicate that is not boolean).
    #[error("{path}: {operation} failed: {source}", path = .path.display())]
    Evaluation {
        path: PathBuf,
        operation: &'static str,
        source: ArrowError,
    },
    /// Columns that cannot be gathered into training batches as asked, or rows out of range.
    #[error("{0}")]
    Batch(String),
}

impl ExecError {
    /// An arrow error of `operation` over the rows of `plan` as an evaluation error that names
    /// the file the rows come from; other errors pass unchanged.
    pub(crate) fn in_file(self, plan: &LogicalPlan, operation: &'static str) -> ExecError {
        self.at_path(scanned_path(plan), operation)
    }

    /// An arrow error of `operation` over rows of the file at `path` as an evaluation error
    /// that names it; other errors pass unchanged.
    pub(crate) fn at_path(self, path: Option<PathBuf>, operation: &'static str) -> ExecError {
        match (self, path) {
            (ExecError::Arrow(source), Some(path)) => ExecError::Evaluation {
                path,
                operation,
                source,
            },
            (other, _) => other,
        }
    }
}

/// The file the first scan under `plan` reads.
fn scanned_path(plan: &LogicalPlan) -> Option<PathBuf> {
    match plan {
        LogicalPlan::Scan { table, .. } => Some(table.file().path().to_owned()),
        LogicalPlan::Read { view, .. } => {
            let dataset = view.dataset();
            let fragment = view.fragments().first().copied().unwrap_or(0);
            dataset.fragments().get(fragment).map(|f| f.path.clone())
        }
        other => other.inputs().iter().find_map(|input| scanned_path(input)),
    }
}
