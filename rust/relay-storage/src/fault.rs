//! A mapped file truncated under the process: an error from relay's own reads, not SIGBUS.
//!
//! Touching a page of a file mapping that lies past the file's end (another process truncated
//! the file after it was mapped) raises SIGBUS, which kills the process. Checking the file's
//! size before a read (`IpcFile::check_unchanged`) cannot close the window between the check
//! and the read, and a loader's reads run for a whole epoch. So each mapping registers its
//! address range here, and a SIGBUS handler, installed with the first mapping:
//!
//! - when the faulting thread is running relay's own code (`Guard`, or a thread relay started
//!   itself, `guard_this_thread`) and the address lies in a registered mapping, replaces the
//!   mapping from the faulting page to its end with zero-filled anonymous pages, marks the
//!   mapping damaged and returns: the read resumes and sees zeros;
//! - otherwise hands the signal to the handler that was installed before (Python's
//!   `faulthandler`, torch's worker handler, or the default action, which ends the process):
//!   a view the user holds, read by NumPy or torch, dies as a NumPy or pyarrow memory map does.
//!
//! The zeros never leave relay as data: a damaged mapping makes every later read of its file
//! fail with `FileChanged`, and whoever ran the read that faulted checks `check_since` with the
//! fault count taken before it (the bindings around each call, the loader around each batch)
//! and reports `FileChanged` instead of the result.
//!
//! What runs inside the handler is limited to what is safe there: atomics, thread-local
//! counters without destructors, a spin lock that no thread holds while it reads mapped
//! memory, and the `mmap` and `sigaction` system calls.

use std::cell::Cell;
use std::cell::UnsafeCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Result, StorageError};

thread_local! {
    /// How many `Guard`s are alive on this thread (or 1 for good, see `guard_this_thread`).
    /// Const-initialised and without a destructor, so the handler can read it.
    static GUARD_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The address of the last fault this thread handed to the previous handler.
    static LAST_CHAINED: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as running relay's own code while it lives: a truncated mapping
/// it reads reads zeros instead of killing the process (see the module docs). Also makes sure
/// the handler is installed (a library such as torch may have replaced it since).
pub struct Guard(());

impl Guard {
    pub fn enter() -> Guard {
        ensure_handler();
        GUARD_DEPTH.with(|depth| depth.set(depth.get() + 1));
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        GUARD_DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}

/// Marks the current thread, one that relay started and that runs only relay's code (a
/// worker of its thread pool, a loader or decoding thread), as guarded for good.
pub fn guard_this_thread() {
    std::mem::forget(Guard::enter());
}

/// Faults handled so far in this process; `check_since` takes a value read before a read.
pub fn faults() -> u64 {
    FAULTS.load(Ordering::Acquire)
}

/// `FileChanged` naming a file whose mapping faulted after `before` (a value of `faults()`),
/// that is, data read since then may hold zeros in place of the file's bytes.
pub fn check_since(before: u64) -> Result<()> {
    if faults() == before {
        return Ok(());
    }
    let damaged = |region: &Region| region.damaged_at.load(Ordering::Acquire) > before;
    let found = REGIONS
        .with(|regions| {
            regions
                .iter()
                .find(|region| damaged(region))
                .map(|region| (region.path.clone(), region.len()))
        })
        .or_else(|| {
            retired()
                .iter()
                .rev()
                .find(|(at, ..)| *at > before)
                .map(|(_, path, len)| (path.clone(), *len))
        });
    // A fault on a mapping of which nothing is known any more (it was dropped and its record
    // pushed out) still means the read saw zeros.
    let (path, expected) = found.unwrap_or_else(|| (PathBuf::from("a mapped file"), 0));
    Err(changed(&path, expected))
}

/// The registered mappings that some memory lies in (the buffers of the columns a loader
/// gathers from), to check after each read whether one of them faulted. `check_since` alone
/// does not do for a reader that started after another thread's fault: the damaged mapping
/// reads zeros past the cut from then on, without faulting again.
#[derive(Clone, Default)]
pub struct Watch {
    regions: Vec<Arc<Region>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.regions.iter().map(|region| &region.path))
            .finish()
    }
}

impl Watch {
    /// The mappings that hold any of `addresses` (memory elsewhere is not watched).
    pub fn of_addresses(addresses: impl IntoIterator<Item = usize>) -> Watch {
        let mut addresses: Vec<usize> = addresses.into_iter().collect();
        addresses.sort_unstable();
        addresses.dedup();
        let regions = REGIONS.with(|regions| {
            regions
                .iter()
                .filter(|region| {
                    let first = addresses.partition_point(|&address| address < region.start);
                    addresses
                        .get(first)
                        .is_some_and(|&address| address < region.end)
                })
                .cloned()
                .collect()
        });
        Watch { regions }
    }

    /// Adds the mappings `other` watches.
    pub fn merge(&mut self, other: &Watch) {
        for region in &other.regions {
            if !self.regions.iter().any(|r| Arc::ptr_eq(r, region)) {
                self.regions.push(region.clone());
            }
        }
    }

    /// `FileChanged` naming the first watched mapping that faulted (its file was truncated).
    pub fn check(&self) -> Result<()> {
        match self
            .regions
            .iter()
            .find(|region| region.damaged_at.load(Ordering::Acquire) != 0)
        {
            Some(region) => Err(changed(&region.path, region.len())),
            None => Ok(()),
        }
    }
}

/// The error for a file whose mapping of `expected` bytes can no longer be read.
pub(crate) fn changed(path: &Path, expected: u64) -> StorageError {
    let actual = std::fs::metadata(path).map_or(0, |metadata| metadata.len());
    StorageError::FileChanged {
        path: path.to_owned(),
        expected,
        actual,
    }
}

/// A mapping's registration: its address range stays guarded until this is dropped, which
/// must happen before the range is unmapped.
pub(crate) struct Registration {
    region: Arc<Region>,
}

impl Registration {
    /// Registers `start .. start + len`, a mapping of `path`.
    pub(crate) fn new(path: &Path, start: *const u8, len: usize) -> Registration {
        ensure_handler();
        let region = Arc::new(Region {
            start: start as usize,
            end: start as usize + len,
            damaged_at: AtomicU64::new(0),
            path: path.to_owned(),
        });
        REGIONS.with(|regions| regions.push(region.clone()));
        Registration { region }
    }

    /// What tells, for as long as it is kept, whether a read of the mapping faulted.
    pub(crate) fn damage(&self) -> Damage {
        Damage {
            region: self.region.clone(),
        }
    }
}

/// Whether a read of a registered mapping faulted (its tail now reads as zeros).
pub(crate) struct Damage {
    region: Arc<Region>,
}

impl Damage {
    pub(crate) fn is_damaged(&self) -> bool {
        self.region.damaged_at.load(Ordering::Acquire) != 0
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        REGIONS.with(|regions| {
            if let Some(index) = regions.iter().position(|r| Arc::ptr_eq(r, &self.region)) {
                regions.swap_remove(index);
            }
        });
        let at = self.region.damaged_at.load(Ordering::Acquire);
        if at != 0 {
            let mut retired = retired();
            if retired.len() == RETIRED_KEPT {
                retired.remove(0);
            }
            retired.push((at, self.region.path.clone(), self.region.len()));
        }
    }
}

struct Region {
    start: usize,
    end: usize,
    /// The value of `FAULTS` after this mapping's fault; 0 while it never faulted.
    damaged_at: AtomicU64,
    path: PathBuf,
}

impl Region {
    fn len(&self) -> u64 {
        (self.end - self.start) as u64
    }
}

static FAULTS: AtomicU64 = AtomicU64::new(0);
static REGIONS: SpinLocked<Vec<Arc<Region>>> = SpinLocked::new(Vec::new());

/// Damaged mappings dropped recently, so that `check_since` can still name their file.
const RETIRED_KEPT: usize = 64;
static RETIRED: Mutex<Vec<(u64, PathBuf, u64)>> = Mutex::new(Vec::new());

fn retired() -> std::sync::MutexGuard<'static, Vec<(u64, PathBuf, u64)>> {
    RETIRED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A spin lock: the handler may take it (a mutex is not safe in a signal handler). No thread
/// reads mapped memory while holding it, so a fault never happens with it held by the
/// faulting thread, and other holders release it after a few instructions.
struct SpinLocked<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is only reached through `with`, which holds the lock.
unsafe impl<T: Send> Sync for SpinLocked<T> {}

impl<T> SpinLocked<T> {
    const fn new(value: T) -> Self {
        SpinLocked {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        self.lock();
        // SAFETY: the lock is held until the end of this function.
        let result = f(unsafe { &mut *self.value.get() });
        self.unlock();
        result
    }

    fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

/// Taken across `fork()`: a child must not start with the registry half-changed by a thread
/// that does not exist in it, nor with its lock held for good.
extern "C" fn lock_regions() {
    REGIONS.lock();
}

extern "C" fn unlock_regions() {
    REGIONS.unlock();
}

/// The handler that was installed before ours, for faults that are not relay's: its address
/// (`sa_sigaction`) and flags.
static PREVIOUS_ACTION: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREVIOUS_FLAGS: AtomicUsize = AtomicUsize::new(0);
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(4096);
static INSTALLING: Mutex<()> = Mutex::new(());

/// Installs `on_sigbus` unless it is the current SIGBUS handler (torch, for one, installs its
/// own in each DataLoader worker). One `sigaction` call when it is.
fn ensure_handler() {
    let ours = on_sigbus as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);
    let ours = ours as usize;
    // SAFETY: a zeroed sigaction is a valid value, and sigaction with a null new action only
    // reads the current one into it.
    let current = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) == 0).then_some(current)
    };
    if current.is_some_and(|current| current.sa_sigaction == ours) {
        return;
    }
    let _installing = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    // SAFETY: the three functions only take or release the registry's lock.
    AT_FORK.call_once(|| unsafe {
        libc::pthread_atfork(
            Some(lock_regions),
            Some(unlock_regions),
            Some(unlock_regions),
        );
    });
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        PAGE_SIZE.store(page as usize, Ordering::Relaxed);
    }
    // SAFETY: a zeroed sigaction is a valid value; the handler has the SA_SIGINFO signature and
    // is async-signal-safe (see the module docs). `previous` receives the action replaced.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ours;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &action, &mut previous) != 0 {
            return;
        }
        // Two threads that race here both find ours missing; the second must not chain to us.
        if previous.sa_sigaction != ours {
            PREVIOUS_FLAGS.store(previous.sa_flags as usize, Ordering::Relaxed);
            PREVIOUS_ACTION.store(previous.sa_sigaction, Ordering::Release);
        }
    }
}

extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let address = unsafe { (*info).si_addr() } as usize;
    let guarded = GUARD_DEPTH.try_with(Cell::get).unwrap_or(0) > 0;
    if guarded && zero_fill_from(address) {
        return;
    }
    // SAFETY: the previous action is called as the kernel would have called it.
    unsafe { chain(signal, info, context) }
}

/// Replaces the registered mapping that holds `address`, from its page to the mapping's end,
/// with zero-filled pages, and marks it damaged. False when no registered mapping holds it.
fn zero_fill_from(address: usize) -> bool {
    REGIONS.with(|regions| {
        let Some(region) = regions.iter().find(|r| (r.start..r.end).contains(&address)) else {
            return false;
        };
        let page = PAGE_SIZE.load(Ordering::Relaxed);
        let from = address & !(page - 1);
        let to = region.end.div_ceil(page) * page;
        // SAFETY: `from .. to` lies within the registered mapping, which stays mapped while it
        // is registered; MAP_FIXED replaces those pages of it and nothing else.
        let replaced = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                to - from,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced == libc::MAP_FAILED {
            return false;
        }
        let at = FAULTS.fetch_add(1, Ordering::AcqRel) + 1;
        region.damaged_at.store(at, Ordering::Release);
        true
    })
}

/// Hands a fault that is not relay's to the handler installed before ours. Ends the process
/// with the default action instead when there is none, when the signal was sent rather than
/// raised by a fault (Python's `faulthandler` re-raises after its report), and when the
/// previous handler returned without curing a fault at this address (it would repeat forever).
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let previous = PREVIOUS_ACTION.load(Ordering::Acquire);
    let flags = PREVIOUS_FLAGS.load(Ordering::Relaxed) as libc::c_int;
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (sent, address) = unsafe { ((*info).si_code <= 0, (*info).si_addr() as usize) };
    let repeated = LAST_CHAINED.try_with(|last| last.replace(address) == address);
    if previous == libc::SIG_DFL || previous == libc::SIG_IGN || sent || repeated.unwrap_or(true) {
        // SAFETY: a zeroed sigaction with SIG_DFL is the default action; a sent signal is sent
        // again (it is blocked until this handler returns), a fault recurs on return.
        unsafe {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
            if sent {
                libc::raise(signal);
            }
        }
        return;
    }
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: an SA_SIGINFO handler has this signature.
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(previous) };
        handler(signal, info, context);
    } else {
        // SAFETY: a plain handler takes the signal number only.
        let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
        handler(signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A guarded read of a mapping whose file was truncated reads zeros, marks the mapping
    /// damaged and is reported by `check_since`, naming the file.
    #[test]
    fn a_guarded_read_past_a_truncation_reads_zeros_and_is_reported() {
        let directory = std::env::temp_dir().join(format!("relay-fault-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("cut.bin");
        let page = 4096;
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&vec![7u8; 4 * page])
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a private read of a file this test owns.
        let mapping = unsafe { memmap2::MmapOptions::new().map_copy_read_only(&file) }.unwrap();
        let registration = Registration::new(&path, mapping.as_ptr(), mapping.len());
        let damage = registration.damage();
        let before = faults();
        assert_eq!(mapping[3 * page], 7);
        check_since(before).unwrap();

        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(page as u64)
            .unwrap();
        let guard = Guard::enter();
        // SAFETY: volatile reads, so that the compiler reads the pages this test cut.
        let read = |at: usize| unsafe { std::ptr::read_volatile(mapping.as_ptr().add(at)) };
        assert_eq!(read(0), 7, "the page before the cut keeps its bytes");
        assert_eq!(read(2 * page + 5), 0, "past the cut reads zeros");
        assert_eq!(read(4 * page - 1), 0);
        drop(guard);
        assert!(damage.is_damaged());
        // A reader that starts after the fault reads zeros without faulting again: a watch of
        // the memory it reads still tells.
        let after_the_fault = faults();
        let guard = Guard::enter();
        assert_eq!(read(3 * page), 0);
        drop(guard);
        check_since(after_the_fault).unwrap();
        let watch = Watch::of_addresses([mapping.as_ptr() as usize + 3 * page]);
        assert!(matches!(
            watch.check(),
            Err(StorageError::FileChanged { path: named, .. }) if named == path
        ));
        let elsewhere = [1u8; 16];
        Watch::of_addresses([elsewhere.as_ptr() as usize])
            .check()
            .unwrap();
        match check_since(before) {
            Err(StorageError::FileChanged {
                path: named,
                expected,
                actual,
            }) => {
                assert_eq!(named, path);
                assert_eq!(expected, 4 * page as u64);
                assert_eq!(actual, page as u64);
            }
            other => panic!("expected FileChanged, got {other:?}"),
        }
        // Dropped before the mapping (as `Mapping` does), the damage is still named.
        drop(registration);
        drop(mapping);
        assert!(matches!(
            check_since(before),
            Err(StorageError::FileChanged { path: named, .. }) if named == path
        ));
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
