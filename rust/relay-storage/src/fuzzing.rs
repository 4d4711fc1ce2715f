//! What the fuzz targets run on untrusted bytes: open them as a file of one format and read
//! everything a query could read (every column of every batch or piece, each value checked
//! and formatted, the statistics). Errors are the expected outcome for damaged bytes; a panic
//! that reaches the caller, a crash or a hang is a bug.
//!
//! One body per target, shared by the coverage-guided targets under `rust/fuzz` (libFuzzer,
//! run with `cargo fuzz`) and by `mutation_run`, the bounded run the test suite makes of each
//! (`tests/fuzz_mutations.rs` here, `tests/fuzz_expressions.rs` in relay-exec).
//!
//! `mutation_run` starts from the seeds it is given plus every input under
//! `rust/fuzz/regressions/<target>/` (inputs that once failed, kept for good). Each round takes
//! one of them and mutates it: flipped bits, bytes set to boundary values, 4- and 8-byte
//! fields set to 0 / -1 / huge, cut tails, repeated or deleted spans, splices of two inputs.
//! `RELAY_FUZZ_SECONDS` sets the time per target (default 5); `RELAY_FUZZ_SEED` replays a run.
//! Before each input runs it is written to `<temp>/relay-fuzz-last-<target>.bin`, so a crash
//! leaves its input behind; a panic fails the run with the same file named. Move a failing
//! input into `rust/fuzz/regressions/<target>/` with its fix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::decoded::DecodedFile;
use crate::{CsvOptions, IpcFile, JsonOptions, ParquetFile, TextFile};

/// The formats a target reads, by the name of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Arrow IPC, file or stream format (told apart by content, as `scan` does).
    Ipc,
    Parquet,
    Csv,
    Ndjson,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Ipc, Target::Parquet, Target::Csv, Target::Ndjson];

    pub fn name(self) -> &'static str {
        match self {
            Target::Ipc => "ipc",
            Target::Parquet => "parquet",
            Target::Csv => "csv",
            Target::Ndjson => "ndjson",
        }
    }

    /// The file this thread writes its inputs to.
    pub fn scratch_path(self) -> PathBuf {
        std::env::temp_dir().join(format!(
            "relay-fuzz-{}-{:?}.{}",
            std::process::id(),
            std::thread::current().id(),
            self.name()
        ))
    }

    /// Reads `bytes` as this target's format, written to a scratch file of this thread.
    pub fn run(self, bytes: &[u8]) {
        let path = scratch_file(self, bytes);
        match self {
            Target::Ipc => read_ipc(&path),
            Target::Parquet => {
                if let Ok(file) = ParquetFile::open(&path) {
                    read_decoded(file.as_ref());
                }
            }
            Target::Csv => {
                if let Ok(file) = TextFile::open_csv(&path, &CsvOptions::default()) {
                    read_decoded(file.as_ref());
                }
            }
            Target::Ndjson => {
                if let Ok(file) = TextFile::open_ndjson(&path, &JsonOptions::default()) {
                    read_decoded(file.as_ref());
                }
            }
        }
    }
}

/// Every column of every record batch, decoded and read.
fn read_ipc(path: &Path) {
    let Ok(file) = IpcFile::open(path) else {
        return;
    };
    for batch in 0..file.batches().len() {
        for column in 0..file.schema().fields().len() {
            if let Ok(decoded) = file.decode_column(batch, column) {
                read_array(&decoded.array);
            }
        }
    }
}

/// Every piece with all its columns, read and checked, and the statistics of each.
fn read_decoded(file: &dyn DecodedFile) {
    let columns: Vec<usize> = (0..file.schema().fields().len()).collect();
    for piece in 0..file.num_pieces() {
        for &column in &columns {
            let _ = file.piece_stats(piece, column);
            let _ = file.page_stats(piece, column);
        }
        if let Ok(batches) = file.read_piece(piece, &columns, 64) {
            for batch in batches {
                batch.columns().iter().for_each(read_array);
            }
        }
    }
}

/// Checks `array` as a consumer would rely on it and formats its values, which reads each one
/// (offsets, dictionary keys, children).
fn read_array(array: &ArrayRef) {
    if array.to_data().validate_full().is_err() {
        // Relay hands out only validated arrays: one that fails here is a bug.
        panic!(
            "an array relay decoded fails validation: {:?}",
            array.data_type()
        );
    }
    let options = FormatOptions::default().with_null("null");
    if let Ok(formatter) = ArrayFormatter::try_new(array.as_ref(), &options) {
        let mut text = String::new();
        for row in 0..array.len().min(256) {
            text.clear();
            let _ = std::fmt::Write::write_fmt(&mut text, format_args!("{}", formatter.value(row)));
        }
    }
}

/// Writes `bytes` to this thread's scratch file for `target` and returns its path.
fn scratch_file(target: Target, bytes: &[u8]) -> PathBuf {
    let path = target.scratch_path();
    // A new file each time (never rewritten in place) so that no earlier mapping sees it.
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::File::create(&path).expect("create a scratch file");
    file.write_all(bytes).expect("write a scratch file");
    path
}

/// splitmix64: a small, seedable generator (mutations need no statistical quality).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Inputs that once failed, kept under `rust/fuzz/regressions/<target>/`.
fn regressions(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&directory) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let bytes = std::fs::read(&path).ok()?;
            Some((path, bytes))
        })
        .collect();
    found.sort();
    found
}

fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(bytes.len());
        match rng.below(8) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => bytes[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => {
                let width = [4, 8][rng.below(2)];
                let value: u64 = [0, u64::MAX, 0x7fff_ffff, 0x8000_0000, 1 << 40][rng.below(5)];
                let end = (at + width).min(bytes.len());
                bytes[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            }
            3 => bytes.truncate(at),
            4 => {
                let end = (at + 1 + rng.below(64)).min(bytes.len());
                bytes.drain(at..end);
            }
            5 => {
                let end = (at + 1 + rng.below(64)).min(bytes.len());
                let span = bytes[at..end].to_vec();
                bytes.splice(at..at, span);
            }
            6 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(256)).min(other.len());
                let end_here = (at + end - from).min(bytes.len());
                bytes.splice(at..end_here, other[from..end].iter().copied());
            }
            _ => {
                let value = rng.below(256) as u8;
                bytes.insert(at, value);
            }
        }
    }
    bytes
}

/// Makes the panic hook silent. Relay catches what arrow-rs and parquet assert on damaged
/// input and reports it as an error; the default hook would print each of those, and
/// libFuzzer's aborts on them. A panic that escapes a body is still caught by the caller
/// (`mutation_run`, or libFuzzer's harness, which then reports a crash).
pub fn silence_caught_panics() {
    static SILENCED: std::sync::Once = std::sync::Once::new();
    SILENCED.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

/// Runs `body` on `seeds`, on the regression inputs of `target`, then on mutations of them
/// until `RELAY_FUZZ_SECONDS` have passed (see the module docs). Panics, naming the saved
/// input, when `body` panics.
pub fn mutation_run(
    target: &str,
    seeds: Vec<Vec<u8>>,
    body: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) {
    let seconds: u64 = std::env::var("RELAY_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("RELAY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let last = std::env::temp_dir().join(format!("relay-fuzz-last-{target}.bin"));
    silence_caught_panics();
    let run = |bytes: &[u8], what: &str| {
        std::fs::write(&last, bytes).expect("save the input");
        if let Err(payload) = std::panic::catch_unwind(|| body(bytes)) {
            let _ = std::panic::take_hook();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!(
                "{message}\n{target} target panicked on {what}; the input is at {} \
                 (RELAY_FUZZ_SEED={seed})",
                last.display()
            );
        }
    };

    let mut corpus = seeds;
    assert!(!corpus.is_empty(), "{target}: a mutation run needs a seed");
    for (path, bytes) in regressions(target) {
        run(&bytes, &format!("the regression input {}", path.display()));
        corpus.push(bytes);
    }
    for bytes in &corpus {
        run(bytes, "a seed");
    }
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut executions = 0u64;
    while Instant::now() < deadline {
        let input = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let bytes = mutate(&mut rng, input, other);
        run(&bytes, "a mutated input");
        executions += 1;
    }
    eprintln!("fuzz {target}: {executions} inputs in {seconds} s (RELAY_FUZZ_SEED={seed})");
    let _ = std::fs::remove_file(&last);
}
