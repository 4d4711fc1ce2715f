//! Helpers shared by the unit tests of this crate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A new empty folder under the system's temporary folder, named after `prefix`, this
/// process and a counter, so that tests running in parallel never share one.
pub(crate) fn temp_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
