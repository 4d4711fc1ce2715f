//! The rayon pool every parallel operator runs on, and the morsel size its tasks take.

use std::sync::{Arc, OnceLock};

/// Rows evaluated together by one task: large enough to amortize kernel calls, small enough
/// that a batch splits into many tasks for both cores and stays in L2 per column.
pub const MORSEL_ROWS: usize = 64 * 1024;

/// The rayon pool of this process. A pool inherited through fork() has no threads in the
/// child and hangs its first parallel call, so a forked child (different pid) builds its own.
pub fn pool() -> Arc<rayon::ThreadPool> {
    static POOL: OnceLock<std::sync::Mutex<(u32, Arc<rayon::ThreadPool>)>> = OnceLock::new();
    let build = || {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("relay-{i}"))
                // Workers run only relay's code: a truncated mapping they read is an error.
                .start_handler(|_| relay_storage::fault::guard_this_thread())
                .build()
                .expect("thread pool"),
        )
    };
    let pid = std::process::id();
    let cell = POOL.get_or_init(|| std::sync::Mutex::new((pid, build())));
    let mut guard = cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.0 != pid {
        *guard = (pid, build());
    }
    guard.1.clone()
}
