//! Per-execution statistics of each operator: rows in and out, bytes read and copied, time.
//!
//! Recording costs one mutex push per operator per execution (not per row or morsel), so it is
//! always on; nothing is formatted unless someone reads the profile.

use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct OperatorStats {
    pub rows_in: usize,
    pub rows_out: usize,
    /// Bytes of column data the operator looked at (views of the mapping count, unread pages
    /// do not cost anything until touched).
    pub bytes_read: usize,
    /// Bytes the operator wrote into fresh memory.
    pub bytes_copied: usize,
    /// Record batches of the file a scan decoded and evaluated (0 for other operators).
    pub batches_read: usize,
    /// Record batches of its rows a scan did not read: their statistics proved that no row
    /// passes its filters.
    pub batches_skipped: usize,
    /// Files a read of several files (or of a decoded file) opened and read pieces of.
    pub files_read: usize,
    /// Files of a read that were never opened: their partition values (or their pieces'
    /// statistics) proved that no row passes its filters.
    pub files_skipped: usize,
    /// Wall time including the operator's inputs.
    pub wall: Duration,
}

/// Statistics of one execution, in the order operators finished (inputs before outputs).
#[derive(Debug, Default)]
pub struct Profile {
    operators: Mutex<Vec<(String, OperatorStats)>>,
}

impl Profile {
    pub fn record(&self, operator: String, stats: OperatorStats) {
        self.operators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((operator, stats));
    }

    pub fn operators(&self) -> Vec<(String, OperatorStats)> {
        self.operators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
