use relay_storage::StorageError;

/// Errors found while building or optimizing a plan: they reach users before any data is read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// An operation applied to types it does not accept; the message names the expression
    /// and the types.
    #[error("{0}")]
    Type(String),

    #[error("column {name:?} not found; available columns: {available}")]
    ColumnNotFound { name: String, available: String },

    /// A bad argument value (negative length, duplicate output name, ...).
    #[error("{0}")]
    Invalid(String),

    #[error(transparent)]
    Storage(#[from] StorageError),

    /// An optimizer rule changed the plan's output schema: a bug in the rule.
    #[error("optimizer rule {rule} changed the output schema from {before} to {after}")]
    RuleBrokeSchema {
        rule: &'static str,
        before: String,
        after: String,
    },
}

pub type Result<T, E = PlanError> = std::result::Result<T, E>;
