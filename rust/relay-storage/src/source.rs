//! What `scan` reads: a source (a path, a list of paths, a glob or a directory) resolved into
//! files, each with its format and its hive partition values, then opened as one table.
//!
//! Resolution lists folders and matches names only; it opens no file except to sniff the
//! format of one whose suffix says nothing (its first 8 bytes). A glob is matched against the
//! paths listed below its first component with a wildcard, so a pattern over a large tree
//! lists only the part of the tree the pattern can reach.
//!
//! A single Arrow IPC file without partition columns or format options opens as an `IpcFile`
//! (mapped, or read into memory as `FormatOptions::ipc_access` says); everything else opens as a `Dataset`, whose files are opened when read.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field};

use crate::dataset::{Dataset, FileFormat, FormatOptions, FragmentSpec};
use crate::error::{Result, StorageError};
use crate::ipc::IpcFile;

/// The value pyarrow, Hive and Spark write in a folder name for a null partition value.
pub const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

/// What `scan` was given.
#[derive(Debug, Clone)]
pub enum Source {
    /// A path, a glob or a directory.
    One(PathBuf),
    /// Files read in the order given.
    List(Vec<PathBuf>),
}

/// How to read the files of a source.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Every file's format; None: each file's suffix, else its first bytes.
    pub format: Option<FileFormat>,
    /// Whether `key=value` folders add partition columns; None: for a directory only.
    pub hive_partitioning: Option<bool>,
    pub format_options: FormatOptions,
}

/// A source resolved into files.
#[derive(Debug)]
pub struct ResolvedSource {
    /// The source as the user gave it, for plans and messages.
    pub description: String,
    pub files: Vec<FragmentSpec>,
    /// The partition columns, in the order the folders nest (int64 when every value is an
    /// integer, else string).
    pub partition_fields: Vec<Field>,
    /// Whether the source named one file (no list, glob or directory).
    pub single_file: bool,
}

/// A source opened as a table.
pub enum OpenedSource {
    /// One Arrow IPC file, mapped.
    File(Arc<IpcFile>),
    /// Files read piece by piece.
    Dataset(Arc<Dataset>),
}

/// Resolves `source` and opens it: see the module documentation.
pub fn open_source(source: &Source, options: &ScanOptions) -> Result<OpenedSource> {
    let resolved = resolve_source(source, options)?;
    if resolved.single_file
        && resolved.partition_fields.is_empty()
        && options.format_options.decodes_as_inferred()
        && resolved.files[0].format == FileFormat::Ipc
    {
        return Ok(OpenedSource::File(IpcFile::open_as(
            &resolved.files[0].path,
            options.format_options.ipc_access,
        )?));
    }
    let dataset = Dataset::with_options(
        resolved.description,
        resolved.files,
        resolved.partition_fields,
        options.format_options.clone(),
    )?;
    Ok(OpenedSource::Dataset(dataset))
}

/// The files of `source`, sorted within a glob or directory, with formats and partitions.
pub fn resolve_source(source: &Source, options: &ScanOptions) -> Result<ResolvedSource> {
    // The folder that partition folders are counted from, when the source has one.
    let mut partition_root: Option<PathBuf> = None;
    let mut is_directory = false;
    let mut single_file = false;
    let (description, paths) = match source {
        Source::List(paths) => {
            if paths.is_empty() {
                return Err(invalid("scan()", "the list of paths is empty"));
            }
            let mut shown: Vec<String> = paths
                .iter()
                .take(2)
                .map(|p| p.display().to_string())
                .collect();
            if paths.len() > 2 {
                shown.push(format!("... ({} files)", paths.len()));
            }
            (format!("[{}]", shown.join(", ")), paths.clone())
        }
        Source::One(path) => {
            let description = path.display().to_string();
            let paths = if path.is_dir() {
                is_directory = true;
                partition_root = Some(path.clone());
                let mut files = Vec::new();
                list_directory(path, &mut files)?;
                if files.is_empty() {
                    return Err(StorageError::NoDataFiles { path: path.clone() });
                }
                files
            } else if !path.exists() && is_pattern(&description) {
                let (root, files) = match_glob(&description)?;
                partition_root = Some(root);
                files
            } else {
                single_file = true;
                vec![path.clone()]
            };
            (description, paths)
        }
    };
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        if !path.exists() {
            return Err(StorageError::NotFound { path });
        }
        let format = match options.format {
            Some(format) => format,
            None => format_of(&path)?,
        };
        files.push(FragmentSpec {
            path,
            format,
            partition_values: Vec::new(),
        });
    }
    let mut partition_fields = Vec::new();
    if options.hive_partitioning.unwrap_or(is_directory) {
        let root = match partition_root {
            Some(root) => root,
            None => common_parent(&files),
        };
        partition_fields = add_partition_values(&root, &mut files)?;
    }
    Ok(ResolvedSource {
        description,
        files,
        partition_fields,
        single_file,
    })
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> StorageError {
    StorageError::InvalidSource {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The format named by `path`'s suffix, if any.
fn format_of_suffix(path: &Path) -> Option<FileFormat> {
    let suffix = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match suffix.as_str() {
        "arrow" | "feather" | "ipc" | "arrows" => FileFormat::Ipc,
        "parquet" | "pq" => FileFormat::Parquet,
        "csv" => FileFormat::Csv,
        "json" | "ndjson" | "jsonl" => FileFormat::Ndjson,
        _ => return None,
    })
}

/// The format of `path` from its first bytes; None when they say nothing.
fn sniff(path: &Path) -> Option<FileFormat> {
    let mut head = Vec::with_capacity(8);
    fs::File::open(path)
        .ok()?
        .take(8)
        .read_to_end(&mut head)
        .ok()?;
    if head.starts_with(b"PAR1") {
        return Some(FileFormat::Parquet);
    }
    if head.starts_with(b"ARROW1") || head.starts_with(&[0xff; 4]) {
        return Some(FileFormat::Ipc);
    }
    let text = head.trim_ascii_start();
    text.starts_with(b"{").then_some(FileFormat::Ndjson)
}

/// The format to read `path` as: its suffix's, else the one its first bytes say.
fn format_of(path: &Path) -> Result<FileFormat> {
    format_of_suffix(path)
        .or_else(|| sniff(path))
        .ok_or_else(|| {
            invalid(
                path.display().to_string(),
                "cannot tell its format from the suffix or the first bytes; pass format= (one of \
             csv, ipc, ndjson, parquet)",
            )
        })
}

/// Whether a name is hidden (`.git`) or a marker (`_SUCCESS`, `_temporary`).
fn is_hidden_or_marker(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

fn io_error(path: &Path, action: &'static str, source: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// The entries of `folder`: (path, name, whether it is a folder). Symbolic links to folders
/// are not followed (so no walk can loop); links to files are files.
fn entries(folder: &Path) -> Result<Vec<(PathBuf, String, bool)>> {
    let listing = fs::read_dir(folder).map_err(|e| io_error(folder, "listing the folder", e))?;
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| io_error(folder, "listing the folder", e))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| io_error(&path, "reading the file type", e))?;
        let is_folder = file_type.is_dir();
        let is_file = file_type.is_file() || (file_type.is_symlink() && path.is_file());
        if !is_folder && !is_file {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        found.push((path, name, is_folder));
    }
    Ok(found)
}

/// Adds the data files under `folder` to `files`, sorted by path: not hidden or markers, of a
/// known suffix or recognisable from their first bytes. Hidden and marker folders are skipped
/// unless they are partition folders (`key=value`).
fn list_directory(folder: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut pending = vec![folder.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for (path, name, is_folder) in entries(&folder)? {
            if is_folder {
                if name.contains('=') || !is_hidden_or_marker(&name) {
                    pending.push(path);
                }
            } else if !is_hidden_or_marker(&name)
                && (format_of_suffix(&path).is_some() || sniff(&path).is_some())
            {
                files.push(path);
            }
        }
    }
    sort_paths(files);
    Ok(())
}

/// Sorts paths as strings (byte order), as listings are shown.
fn sort_paths(paths: &mut [PathBuf]) {
    paths.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
}

/// Whether `text` holds a glob wildcard.
fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The files matching the glob `pattern`, sorted, and the folder before its first component
/// with a wildcard (where partition folders are counted from). `*` and `?` do not cross `/`;
/// a `**` component matches any number of folders. Hidden files and folders are not matched.
fn match_glob(pattern: &str) -> Result<(PathBuf, Vec<PathBuf>)> {
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| invalid(pattern, format!("not a valid glob pattern: {e}")))?
        .compile_matcher();
    let components: Vec<&str> = pattern.split('/').collect();
    let fixed = components.iter().take_while(|c| !is_pattern(c)).count();
    let prefix = components[..fixed].join("/");
    let (root, listed_from) = match (prefix.as_str(), pattern.starts_with('/')) {
        ("", true) => (PathBuf::from("/"), Some(PathBuf::from("/"))),
        ("", false) => (PathBuf::from("."), None),
        (prefix, _) => (PathBuf::from(prefix), Some(PathBuf::from(prefix))),
    };
    // Without `**`, no match lies deeper than the pattern's remaining components.
    let max_depth = if components[fixed..].contains(&"**") || pattern.contains("**") {
        usize::MAX
    } else {
        components.len() - fixed
    };
    let mut files = Vec::new();
    // (folder to list, the path its entries are shown under, depth of its entries)
    let mut pending = vec![(root.clone(), listed_from, 1usize)];
    while let Some((folder, shown, depth)) = pending.pop() {
        let listing = match entries(&folder) {
            Ok(listing) => listing,
            // A prefix that names no folder matches nothing.
            Err(_) if depth == 1 => Vec::new(),
            Err(error) => return Err(error),
        };
        for (path, name, is_folder) in listing {
            if name.starts_with('.') {
                continue;
            }
            let shown_path = match &shown {
                Some(parent) => parent.join(&name),
                None => PathBuf::from(&name),
            };
            if is_folder {
                if depth < max_depth {
                    pending.push((path, Some(shown_path), depth + 1));
                }
            } else if matcher.is_match(&shown_path) {
                files.push(shown_path);
            }
        }
    }
    if files.is_empty() {
        return Err(StorageError::NoMatch {
            pattern: pattern.to_owned(),
        });
    }
    sort_paths(&mut files);
    Ok((root, files))
}

/// `path` made absolute, with `.` and `..` resolved by name (no link is followed).
fn absolute(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// The deepest folder that holds every file (a list of paths read with hive partitioning).
fn common_parent(files: &[FragmentSpec]) -> PathBuf {
    let parents: Vec<PathBuf> = files
        .iter()
        .map(|f| absolute(f.path.parent().unwrap_or(Path::new(""))))
        .collect();
    let mut common: Vec<Component<'_>> = parents[0].components().collect();
    for parent in &parents[1..] {
        let shared = common
            .iter()
            .zip(parent.components())
            .take_while(|(a, b)| **a == *b)
            .count();
        common.truncate(shared);
    }
    common.iter().collect()
}

/// The `key=value` folders between `root` and `path`, outermost first, percent-decoded.
fn hive_parts(root: &Path, path: &Path) -> Vec<(String, String)> {
    let parent = path.parent().unwrap_or(Path::new(""));
    let relative = match parent.strip_prefix(root) {
        Ok(relative) => relative.to_path_buf(),
        Err(_) => absolute(parent)
            .strip_prefix(absolute(root))
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    relative
        .components()
        .filter_map(|component| {
            let text = component.as_os_str().to_string_lossy();
            let (key, value) = text.split_once('=')?;
            Some((percent_decode(key), percent_decode(value)))
        })
        .collect()
}

/// `%XX` escapes decoded (as folder names written by pyarrow, Spark and Hive hold them); text
/// that is not a valid escape stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Sets each file's partition values from its `key=value` folders below `root`, and returns
/// the partition columns: int64 when every value present is an integer, else string.
fn add_partition_values(root: &Path, files: &mut [FragmentSpec]) -> Result<Vec<Field>> {
    let parts: Vec<Vec<(String, String)>> =
        files.iter().map(|f| hive_parts(root, &f.path)).collect();
    let keys: Vec<&str> = parts[0].iter().map(|(key, _)| key.as_str()).collect();
    for (file, found) in files.iter().zip(&parts) {
        let found_keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        if found_keys != keys {
            return Err(invalid(
                file.path.display().to_string(),
                format!(
                    "its partition folders are {found_keys:?}, but {} has {keys:?}; every file \
                     must sit under the same partition keys",
                    files[0].path.display()
                ),
            ));
        }
    }
    let values = |index: usize| {
        parts.iter().map(move |found| {
            let value = found[index].1.as_str();
            (value != HIVE_NULL).then_some(value)
        })
    };
    let mut fields = Vec::with_capacity(keys.len());
    let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(keys.len()); files.len()];
    for (index, key) in keys.iter().enumerate() {
        let integers: Option<Vec<Option<i64>>> = values(index)
            .map(|value| match value {
                None => Some(None),
                Some(text) => text.parse::<i64>().ok().map(Some),
            })
            .collect();
        let has_value = values(index).any(|value| value.is_some());
        match integers.filter(|_| has_value) {
            Some(integers) => {
                fields.push(Field::new(*key, DataType::Int64, true));
                for (column, value) in columns.iter_mut().zip(integers) {
                    column.push(Arc::new(Int64Array::from(vec![value])));
                }
            }
            None => {
                fields.push(Field::new(*key, DataType::Utf8, true));
                for (column, value) in columns.iter_mut().zip(values(index)) {
                    column.push(Arc::new(StringArray::from(vec![value])));
                }
            }
        }
    }
    for (file, values) in files.iter_mut().zip(columns) {
        file.partition_values = values;
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn names(root: &Path, files: &[FragmentSpec]) -> Vec<String> {
        files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("relay-source-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_directory_lists_data_files_sorted_and_reads_hive_folders() {
        let dir = temp_dir("hive");
        touch(&dir.join("year=2024/month=3/b.parquet"), b"PAR1");
        touch(&dir.join("year=2024/month=3/a.parquet"), b"PAR1");
        touch(&dir.join("year=2023/month=12/x.parquet"), b"PAR1");
        touch(&dir.join("year=2023/month=12/_SUCCESS"), b"");
        touch(&dir.join("year=2023/month=12/.part.crc"), b"");
        touch(&dir.join("_temporary/y.parquet"), b"PAR1");
        touch(&dir.join("year=2023/month=12/notes.txt"), b"hello");
        let resolved = resolve_source(&Source::One(dir.clone()), &ScanOptions::default()).unwrap();
        assert_eq!(
            names(&dir, &resolved.files),
            [
                "year=2023/month=12/x.parquet",
                "year=2024/month=3/a.parquet",
                "year=2024/month=3/b.parquet"
            ]
        );
        let fields: Vec<(&str, &DataType)> = resolved
            .partition_fields
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        assert_eq!(
            fields,
            [("year", &DataType::Int64), ("month", &DataType::Int64)]
        );
        let first = resolved.files[0].partition_values[1]
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(first, 12);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn partition_values_that_are_not_all_integers_are_strings_and_the_null_folder_is_null() {
        let dir = temp_dir("strings");
        touch(&dir.join("city=oslo/a.csv"), b"x\n1\n");
        touch(&dir.join("city=new%20york/b.csv"), b"x\n1\n");
        touch(&dir.join(format!("city={HIVE_NULL}/c.csv")), b"x\n1\n");
        let resolved = resolve_source(&Source::One(dir.clone()), &ScanOptions::default()).unwrap();
        assert_eq!(resolved.partition_fields[0].data_type(), &DataType::Utf8);
        let values: Vec<Option<String>> = resolved
            .files
            .iter()
            .map(|f| {
                let array = f.partition_values[0]
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap();
                (!arrow::array::Array::is_null(array, 0)).then(|| array.value(0).to_owned())
            })
            .collect();
        assert_eq!(
            values,
            [None, Some("new york".to_owned()), Some("oslo".to_owned())]
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn globs_match_below_their_fixed_prefix_and_double_star_crosses_folders() {
        let dir = temp_dir("glob");
        touch(&dir.join("a.parquet"), b"PAR1");
        touch(&dir.join("sub/b.parquet"), b"PAR1");
        touch(&dir.join("sub/deeper/c.parquet"), b"PAR1");
        touch(&dir.join("sub/d.csv"), b"x\n");
        let pattern = |p: &str| Source::One(PathBuf::from(format!("{}/{p}", dir.display())));
        let options = ScanOptions::default();
        let one_level = resolve_source(&pattern("*.parquet"), &options).unwrap();
        assert_eq!(names(&dir, &one_level.files), ["a.parquet"]);
        let every = resolve_source(&pattern("**/*.parquet"), &options).unwrap();
        assert_eq!(
            names(&dir, &every.files),
            ["a.parquet", "sub/b.parquet", "sub/deeper/c.parquet"]
        );
        let dotted = Source::One(PathBuf::from(format!("{}/./sub/*.parquet", dir.display())));
        let dotted = resolve_source(&dotted, &options).unwrap();
        assert_eq!(dotted.files[0].path, dir.join("./sub/b.parquet"));
        let error = resolve_source(&pattern("*.arrow"), &options).unwrap_err();
        assert!(matches!(error, StorageError::NoMatch { .. }), "{error}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn files_of_no_known_suffix_are_sniffed_and_unknown_ones_are_refused() {
        let dir = temp_dir("sniff");
        touch(&dir.join("data.bin"), b"PAR1....");
        touch(&dir.join("rows"), b"  {\"a\": 1}\n");
        touch(&dir.join("blob"), b"\x00\x01");
        let options = ScanOptions::default();
        let format = |name: &str| {
            resolve_source(&Source::One(dir.join(name)), &options).map(|r| r.files[0].format)
        };
        assert_eq!(format("data.bin").unwrap(), FileFormat::Parquet);
        assert_eq!(format("rows").unwrap(), FileFormat::Ndjson);
        let error = format("blob").unwrap_err().to_string();
        assert!(error.contains("cannot tell its format"), "{error}");
        let error = format("missing.parquet").unwrap_err();
        assert!(matches!(error, StorageError::NotFound { .. }), "{error}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn lists_keep_their_order_and_mismatched_partition_keys_are_refused() {
        let dir = temp_dir("list");
        touch(&dir.join("k=1/b.csv"), b"x\n1\n");
        touch(&dir.join("k=2/a.csv"), b"x\n1\n");
        touch(&dir.join("other=3/c.csv"), b"x\n1\n");
        let list = Source::List(vec![dir.join("k=2/a.csv"), dir.join("k=1/b.csv")]);
        let options = ScanOptions {
            hive_partitioning: Some(true),
            ..Default::default()
        };
        let resolved = resolve_source(&list, &options).unwrap();
        assert_eq!(names(&dir, &resolved.files), ["k=2/a.csv", "k=1/b.csv"]);
        assert_eq!(resolved.partition_fields[0].name(), "k");
        let mixed = Source::List(vec![dir.join("k=1/b.csv"), dir.join("other=3/c.csv")]);
        let error = resolve_source(&mixed, &options).unwrap_err().to_string();
        assert!(error.contains("same partition keys"), "{error}");
        let empty = resolve_source(&Source::List(vec![]), &options).unwrap_err();
        assert!(empty.to_string().contains("empty"), "{empty}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn percent_escapes_decode_and_broken_ones_stay() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
