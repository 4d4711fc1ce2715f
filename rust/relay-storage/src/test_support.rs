//! Helpers shared by the unit tests of this crate.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A folder under the system's temporary folder that is removed, with what it holds, when
/// dropped.
pub(crate) struct TempDir(PathBuf);

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new empty folder named after `prefix`, this process and a counter, so that tests running
/// in parallel never share one.
pub(crate) fn temp_dir(prefix: &str) -> TempDir {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A path named `name` inside a new temporary folder; the folder goes when this is dropped.
pub(crate) struct TempFile {
    path: PathBuf,
    _dir: TempDir,
}

impl TempFile {
    pub(crate) fn new(prefix: &str, name: &str) -> TempFile {
        let dir = temp_dir(prefix);
        TempFile {
            path: dir.join(name),
            _dir: dir,
        }
    }
}

impl Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}
