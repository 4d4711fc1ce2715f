//! Logical plans as bytes and back: what a pickled Frame carries to another process.
//!
//! The bytes start with `MAGIC`, a format version and a checksum of the rest. Then come three
//! tables, each entry referring only to entries before it (so that decoding never recurses and
//! shared subtrees are written once, whatever the tree would unfold to):
//! - sources: the files a leaf reads, as the recipe that opens them again (a mapped Arrow IPC
//!   file: its path; a dataset: its files' paths, formats and partition values, the partition
//!   columns and the format options), with the schema they had, which reopening must find
//!   again;
//! - expressions, each node once;
//! - plan nodes, each once; the last is the root.
//!
//! Data a plan holds in memory (literals, in-memory batches, attached arrays) travels as Arrow
//! IPC streams, and so do types and schemas (a schema-only stream).
//!
//! Decoding takes bytes from anywhere: every count is bounded by the bytes left, expressions and
//! plans by their depth (`Expr::check_depth`, `MAX_PLAN_DEPTH`), every reference must point
//! backwards, and each decoded node is type-checked against its inputs as the builders check
//! it. Files are opened through a `SourceOpener`, which the caller gives.
//!
//! A new plan node or expression kind gets a tag here, in `encode_*` and in `decode_*` (the
//! matches are exhaustive, so the compiler names what is missing), and a round-trip test.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use relay_storage::{
    Dataset, DatasetView, FileFormat, FormatOptions, FragmentSpec, IpcAccess, IpcFile, PieceId,
    RowRange, TableView,
};

use crate::error::{PlanError, Result};
use crate::expr::{
    AggExpr, AggFunc, BinaryOp, Expr, Interpolation, Keep, Literal, MAX_EXPR_DEPTH, Quantile,
    SortKey, StringMatch, UnaryOp, with_stack_room,
};
use crate::join::{JoinColumn, JoinSide, JoinType};
use crate::plan::{AttachedColumn, LogicalPlan};
use crate::resolve::resolve;

/// The first bytes of a serialized plan.
pub const MAGIC: &[u8; 8] = b"RELAYPLN";
/// The version of the format this code writes and reads.
pub const VERSION: u32 = 1;
/// The deepest plan that is serialized or decoded, in nodes from the root to a leaf: dropping
/// or walking a plan recurses once per level.
pub const MAX_PLAN_DEPTH: usize = 10_000;

/// Opens the sources of a decoded plan. `StorageOpener` opens them as `scan()` does; a caller
/// may share files between plans, or refuse some.
pub trait SourceOpener {
    /// An Arrow IPC file, mapped or read into memory as `access` says.
    fn open_ipc(&self, path: &Path, access: IpcAccess) -> relay_storage::Result<Arc<IpcFile>>;

    /// A dataset of `fragments` whose decoded files are opened with `options`.
    fn open_dataset(
        &self,
        description: &str,
        fragments: Vec<FragmentSpec>,
        partition_fields: Vec<Field>,
        options: FormatOptions,
    ) -> relay_storage::Result<Arc<Dataset>>;
}

/// Opens sources with relay-storage's own readers.
pub struct StorageOpener;

impl SourceOpener for StorageOpener {
    fn open_ipc(&self, path: &Path, access: IpcAccess) -> relay_storage::Result<Arc<IpcFile>> {
        IpcFile::open_as(path, access)
    }

    fn open_dataset(
        &self,
        description: &str,
        fragments: Vec<FragmentSpec>,
        partition_fields: Vec<Field>,
        options: FormatOptions,
    ) -> relay_storage::Result<Arc<Dataset>> {
        Dataset::with_options(description, fragments, partition_fields, options)
    }
}

// -- tags ------------------------------------------------------------------------------------

const SOURCE_IPC: u8 = 0;
const SOURCE_DATASET: u8 = 1;

const EXPR_COLUMN: u8 = 0;
const EXPR_LITERAL: u8 = 1;
const EXPR_BINARY: u8 = 2;
const EXPR_UNARY: u8 = 3;
const EXPR_STRING_MATCH: u8 = 4;
const EXPR_IS_IN: u8 = 5;
const EXPR_FILL_NULL: u8 = 6;
const EXPR_CAST: u8 = 7;
const EXPR_CASE: u8 = 8;
const EXPR_ALIAS: u8 = 9;

const PLAN_SCAN: u8 = 0;
const PLAN_READ: u8 = 1;
const PLAN_FILTER: u8 = 2;
const PLAN_PROJECT: u8 = 3;
const PLAN_SLICE: u8 = 4;
const PLAN_TAKE: u8 = 5;
const PLAN_MEMORY: u8 = 6;
const PLAN_REINTERPRET: u8 = 7;
const PLAN_ATTACH_COLUMNS: u8 = 8;
const PLAN_SORT: u8 = 9;
const PLAN_DISTINCT: u8 = 10;
const PLAN_AGGREGATE: u8 = 11;
const PLAN_JOIN: u8 = 12;

const STRING_MATCHES: [StringMatch; 3] = [
    StringMatch::StartsWith,
    StringMatch::EndsWith,
    StringMatch::Contains,
];
const AGG_FUNCS: [AggFunc; 12] = [
    AggFunc::Sum,
    AggFunc::Mean,
    AggFunc::Min,
    AggFunc::Max,
    AggFunc::Count,
    AggFunc::Len,
    AggFunc::NUnique,
    AggFunc::First,
    AggFunc::Last,
    AggFunc::Std,
    AggFunc::Var,
    AggFunc::Median,
];
/// The code of `AggFunc::Quantile`, after the others'.
const AGG_QUANTILE: u8 = 12;
const JOIN_TYPES: [JoinType; 6] = [
    JoinType::Inner,
    JoinType::Left,
    JoinType::Right,
    JoinType::Full,
    JoinType::Semi,
    JoinType::Anti,
];
const KEEPS: [Keep; 3] = [Keep::First, Keep::Last, Keep::None];
const FORMATS: [FileFormat; 4] = [
    FileFormat::Ipc,
    FileFormat::Parquet,
    FileFormat::Csv,
    FileFormat::Ndjson,
];

const ACCESSES: [IpcAccess; 2] = [IpcAccess::Mapped, IpcAccess::InMemory];

/// The position of `value` in `all`, as a byte (every table above is short).
fn code_of<T: PartialEq>(all: &[T], value: &T) -> u8 {
    all.iter()
        .position(|v| v == value)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

fn damaged(detail: impl std::fmt::Display) -> PlanError {
    PlanError::Invalid(format!("cannot decode the serialized plan: {detail}"))
}

fn arrow_failed(what: &str, error: impl std::fmt::Display) -> PlanError {
    PlanError::Invalid(format!("cannot serialize the plan: {what}: {error}"))
}

/// FNV-1a, 64 bits: finds damaged bytes (not a defence against crafted ones: the decoder
/// checks everything it reads regardless).
fn checksum(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What a source's schema must still be when it is opened again: a checksum of its fields'
/// names, types, nullability and metadata (a whole schema would make a plan over a file of
/// many columns large).
fn schema_fingerprint(schema: &Schema) -> u64 {
    use std::hash::{Hash, Hasher};
    /// FNV-1a as a `Hasher`: the same on every run (std's default hasher is keyed per map).
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &byte in bytes {
                self.0 ^= u64::from(byte);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
    // Schema's hash takes metadata in key order, so it does not depend on a map's order.
    schema.hash(&mut hasher);
    hasher.finish()
}

// -- encoding --------------------------------------------------------------------------------

/// `plan` as bytes that `decode` turns back into the same plan.
///
/// Fails for a plan deeper than `MAX_PLAN_DEPTH`, and for a dataset whose files were opened by
/// an opener of the caller's (`Dataset::new`), whose options are unknown here.
pub fn encode(plan: &LogicalPlan) -> Result<Vec<u8>> {
    let mut encoder = Encoder::default();
    let root = encoder.plan(plan, 1)?;
    debug_assert_eq!(root + 1, encoder.plan_count);
    let mut body = Vec::new();
    put_u64(&mut body, encoder.source_count as u64);
    body.extend_from_slice(&encoder.sources);
    put_u64(&mut body, encoder.expr_count as u64);
    body.extend_from_slice(&encoder.exprs);
    put_u64(&mut body, encoder.plan_count as u64);
    body.extend_from_slice(&encoder.plans);
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&checksum(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[derive(Default)]
struct Encoder {
    sources: Vec<u8>,
    source_count: usize,
    /// Sources written, by the address of their `IpcFile` or `Dataset`.
    source_index: HashMap<usize, usize>,
    exprs: Vec<u8>,
    expr_count: usize,
    /// Expressions written, by address: a subtree shared by several parents is written once.
    /// The plan is borrowed for the whole encoding, so no address is reused meanwhile.
    expr_index: HashMap<usize, usize>,
    plans: Vec<u8>,
    plan_count: usize,
    plan_index: HashMap<usize, usize>,
}

fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

/// An unsigned integer in LEB128 (7 bits a byte).
fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

fn put_option<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put(out, value);
        }
    }
}

fn put_strs(out: &mut Vec<u8>, texts: &[impl AsRef<str>]) {
    put_u64(out, texts.len() as u64);
    for text in texts {
        put_str(out, text.as_ref());
    }
}

fn put_indices(out: &mut Vec<u8>, indices: &[usize]) {
    put_u64(out, indices.len() as u64);
    for &index in indices {
        put_u64(out, index as u64);
    }
}

#[cfg(unix)]
fn path_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    Ok(path.as_os_str().as_bytes().to_vec())
}

#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Result<Vec<u8>> {
    path.to_str()
        .map(|text| text.as_bytes().to_vec())
        .ok_or_else(|| {
            PlanError::Invalid(format!(
                "cannot serialize the plan: the path {} is not valid Unicode",
                path.display()
            ))
        })
}

#[cfg(unix)]
fn path_of(bytes: &[u8]) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn path_of(bytes: &[u8]) -> Result<PathBuf> {
    std::str::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| damaged("a path is not valid Unicode"))
}

/// `batch` as an Arrow IPC stream: its schema, then the batch.
fn batch_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    stream_bytes(batch.schema_ref(), Some(batch))
}

/// `schema` alone as an Arrow IPC stream.
fn schema_bytes(schema: &Schema) -> Result<Vec<u8>> {
    stream_bytes(schema, None)
}

/// An Arrow IPC stream of `schema` and, when given, one batch of it.
fn stream_bytes(schema: &Schema, batch: Option<&RecordBatch>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut writer =
        StreamWriter::try_new(&mut out, schema).map_err(|e| arrow_failed("writing a schema", e))?;
    if let Some(batch) = batch {
        writer
            .write(batch)
            .map_err(|e| arrow_failed("writing a record batch", e))?;
    }
    writer
        .finish()
        .map_err(|e| arrow_failed("writing a stream", e))?;
    drop(writer);
    Ok(out)
}

/// One array as a batch of one nullable column.
fn array_bytes(array: &ArrayRef) -> Result<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "value",
        array.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![array.clone()])
        .map_err(|e| arrow_failed("an array", e))?;
    batch_bytes(&batch)
}

fn data_type_bytes(data_type: &DataType) -> Result<Vec<u8>> {
    schema_bytes(&Schema::new(vec![Field::new(
        "value",
        data_type.clone(),
        true,
    )]))
}

impl Encoder {
    fn ipc_source(&mut self, file: &Arc<IpcFile>) -> Result<usize> {
        let key = Arc::as_ptr(file) as usize;
        if let Some(&index) = self.source_index.get(&key) {
            return Ok(index);
        }
        let out = &mut self.sources;
        put_u8(out, SOURCE_IPC);
        put_bytes(out, &path_bytes(file.path())?);
        put_u8(out, code_of(&ACCESSES, &file.access()));
        out.extend_from_slice(&schema_fingerprint(file.schema()).to_le_bytes());
        Ok(self.new_source(key))
    }

    fn dataset_source(&mut self, dataset: &Arc<Dataset>) -> Result<usize> {
        let key = Arc::as_ptr(dataset) as usize;
        if let Some(&index) = self.source_index.get(&key) {
            return Ok(index);
        }
        let options = dataset.options().ok_or_else(|| {
            PlanError::Invalid(format!(
                "cannot serialize the plan: the files of {} were opened by a reader of the \
                 caller's own, which cannot be opened again elsewhere",
                dataset.description()
            ))
        })?;
        let mut out = Vec::new();
        put_u8(&mut out, SOURCE_DATASET);
        put_str(&mut out, dataset.description());
        put_u64(&mut out, dataset.fragments().len() as u64);
        for fragment in dataset.fragments() {
            put_bytes(&mut out, &path_bytes(&fragment.path)?);
            put_u8(&mut out, code_of(&FORMATS, &fragment.format));
            put_u64(&mut out, fragment.partition_values.len() as u64);
            for value in &fragment.partition_values {
                put_bytes(&mut out, &array_bytes(value)?);
            }
        }
        let partition_fields: Vec<Field> = dataset
            .partition_fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        put_bytes(&mut out, &schema_bytes(&Schema::new(partition_fields))?);
        match &options.schema {
            None => put_u8(&mut out, 0),
            Some(schema) => {
                put_u8(&mut out, 1);
                put_bytes(&mut out, &schema_bytes(schema)?);
            }
        }
        put_option(&mut out, options.has_header, put_bool);
        put_option(&mut out, options.separator, put_u8);
        put_u8(&mut out, code_of(&ACCESSES, &options.ipc_access));
        out.extend_from_slice(&schema_fingerprint(dataset.schema()).to_le_bytes());
        self.sources.extend_from_slice(&out);
        Ok(self.new_source(key))
    }

    fn new_source(&mut self, key: usize) -> usize {
        let index = self.source_count;
        self.source_count += 1;
        self.source_index.insert(key, index);
        index
    }

    /// The index of `expr` in the expression table, written (after its children) if new.
    fn expr(&mut self, expr: &Expr) -> Result<usize> {
        let key = expr as *const Expr as usize;
        if let Some(&index) = self.expr_index.get(&key) {
            return Ok(index);
        }
        let mut out = Vec::new();
        with_stack_room(|| self.expr_node(expr, &mut out))?;
        self.exprs.extend_from_slice(&out);
        let index = self.expr_count;
        self.expr_count += 1;
        self.expr_index.insert(key, index);
        Ok(index)
    }

    /// Writes `expr`'s children to the table, and `expr` itself (referring to them) to `out`.
    fn expr_node(&mut self, expr: &Expr, out: &mut Vec<u8>) -> Result<()> {
        match expr {
            Expr::Column(name) => {
                put_u8(out, EXPR_COLUMN);
                put_str(out, name);
            }
            Expr::Literal(Literal(array)) => {
                put_u8(out, EXPR_LITERAL);
                put_bytes(out, &array_bytes(array)?);
            }
            Expr::Binary { op, left, right } => {
                let left = self.expr(left)?;
                let right = self.expr(right)?;
                put_u8(out, EXPR_BINARY);
                put_u8(out, code_of(&BinaryOp::ALL, op));
                put_u64(out, left as u64);
                put_u64(out, right as u64);
            }
            Expr::Unary { op, input } => {
                let input = self.expr(input)?;
                put_u8(out, EXPR_UNARY);
                put_u8(out, code_of(&UnaryOp::ALL, op));
                put_u64(out, input as u64);
            }
            Expr::StringMatch {
                kind,
                input,
                pattern,
            } => {
                let input = self.expr(input)?;
                put_u8(out, EXPR_STRING_MATCH);
                put_u8(out, code_of(&STRING_MATCHES, kind));
                put_u64(out, input as u64);
                put_str(out, pattern);
            }
            Expr::IsIn { input, values } => {
                let input = self.expr(input)?;
                put_u8(out, EXPR_IS_IN);
                put_u64(out, input as u64);
                put_bytes(out, &array_bytes(&values.0)?);
            }
            Expr::FillNull { input, value } => {
                let input = self.expr(input)?;
                let value = self.expr(value)?;
                put_u8(out, EXPR_FILL_NULL);
                put_u64(out, input as u64);
                put_u64(out, value as u64);
            }
            Expr::Cast { input, to } => {
                let input = self.expr(input)?;
                put_u8(out, EXPR_CAST);
                put_u64(out, input as u64);
                put_bytes(out, &data_type_bytes(to)?);
            }
            Expr::Case {
                branches,
                otherwise,
            } => {
                let mut indices = Vec::with_capacity(branches.len() * 2);
                for (when, then) in branches {
                    indices.push(self.expr(when)?);
                    indices.push(self.expr(then)?);
                }
                let otherwise = self.expr(otherwise)?;
                put_u8(out, EXPR_CASE);
                put_u64(out, branches.len() as u64);
                for index in indices {
                    put_u64(out, index as u64);
                }
                put_u64(out, otherwise as u64);
            }
            Expr::Alias { input, name } => {
                let input = self.expr(input)?;
                put_u8(out, EXPR_ALIAS);
                put_u64(out, input as u64);
                put_str(out, name);
            }
        }
        Ok(())
    }

    fn exprs(&mut self, exprs: &[Expr], out: &mut Vec<u8>) -> Result<()> {
        let indices = exprs
            .iter()
            .map(|expr| self.expr(expr))
            .collect::<Result<Vec<_>>>()?;
        put_indices(out, &indices);
        Ok(())
    }

    /// The index of `plan` in the plan table, written (after its inputs) if new. `depth` is
    /// the node's distance from the root, plus one.
    fn plan(&mut self, plan: &LogicalPlan, depth: usize) -> Result<usize> {
        if depth > MAX_PLAN_DEPTH {
            return Err(PlanError::Invalid(format!(
                "cannot serialize the plan: it is more than {MAX_PLAN_DEPTH} operations deep \
                 (collect() part of it first)"
            )));
        }
        let key = plan as *const LogicalPlan as usize;
        if let Some(&index) = self.plan_index.get(&key) {
            return Ok(index);
        }
        let mut out = Vec::new();
        with_stack_room(|| self.plan_node(plan, depth, &mut out))?;
        self.plans.extend_from_slice(&out);
        let index = self.plan_count;
        self.plan_count += 1;
        self.plan_index.insert(key, index);
        Ok(index)
    }

    fn plan_node(&mut self, plan: &LogicalPlan, depth: usize, out: &mut Vec<u8>) -> Result<()> {
        match plan {
            // `batches` is batch pruning's result: the optimizer finds it again when the
            // decoded plan runs.
            LogicalPlan::Scan { table, filters, .. } => {
                let source = self.ipc_source(table.file())?;
                put_u8(out, PLAN_SCAN);
                put_u64(out, source as u64);
                put_strs(out, &table.column_names());
                put_u64(out, table.rows().offset);
                put_u64(out, table.rows().length);
                self.exprs(filters, out)?;
            }
            LogicalPlan::Read { view, filters } => {
                let source = self.dataset_source(view.dataset())?;
                put_u8(out, PLAN_READ);
                put_u64(out, source as u64);
                put_strs(out, &view.column_names());
                put_indices(out, view.fragments());
                put_option(out, view.pieces(), |out, pieces| {
                    put_u64(out, pieces.len() as u64);
                    for piece in pieces {
                        put_u64(out, piece.fragment as u64);
                        put_u64(out, piece.piece as u64);
                    }
                });
                put_option(out, view.rows(), |out, rows| {
                    put_u64(out, rows.offset);
                    put_u64(out, rows.length);
                });
                self.exprs(filters, out)?;
            }
            LogicalPlan::Filter { input, predicate } => {
                let input = self.plan(input, depth + 1)?;
                let predicate = self.expr(predicate)?;
                put_u8(out, PLAN_FILTER);
                put_u64(out, input as u64);
                put_u64(out, predicate as u64);
            }
            LogicalPlan::Project { input, exprs } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_PROJECT);
                put_u64(out, input as u64);
                self.exprs(exprs, out)?;
            }
            LogicalPlan::Slice {
                input,
                offset,
                length,
            } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_SLICE);
                put_u64(out, input as u64);
                put_u64(out, *offset);
                put_u64(out, *length);
            }
            LogicalPlan::Take { input, indices } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_TAKE);
                put_u64(out, input as u64);
                put_u64(out, indices.len() as u64);
                for &index in indices.iter() {
                    out.extend_from_slice(&index.to_le_bytes());
                }
            }
            LogicalPlan::Memory {
                schema,
                batches,
                origin,
            } => {
                put_u8(out, PLAN_MEMORY);
                put_bytes(out, &schema_bytes(schema)?);
                put_u64(out, batches.len() as u64);
                for batch in batches.iter() {
                    put_bytes(out, &batch_bytes(batch)?);
                }
                put_option(out, origin.as_deref(), put_str);
            }
            LogicalPlan::Reinterpret { input, columns } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_REINTERPRET);
                put_u64(out, input as u64);
                put_u64(out, columns.len() as u64);
                for (name, data_type) in columns {
                    put_str(out, name);
                    put_bytes(out, &data_type_bytes(data_type)?);
                }
            }
            LogicalPlan::AttachColumns { input, columns } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_ATTACH_COLUMNS);
                put_u64(out, input as u64);
                put_u64(out, columns.len() as u64);
                for column in columns {
                    put_str(out, &column.name);
                    put_bytes(out, &array_bytes(&column.array)?);
                    put_option(out, column.copied.as_deref(), put_str);
                }
            }
            LogicalPlan::Sort { input, keys, limit } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_SORT);
                put_u64(out, input as u64);
                put_u64(out, keys.len() as u64);
                for key in keys {
                    let expr = self.expr(&key.expr)?;
                    put_u64(out, expr as u64);
                    put_bool(out, key.descending);
                    put_bool(out, key.nulls_last);
                }
                put_option(out, *limit, put_u64);
            }
            LogicalPlan::Distinct {
                input,
                subset,
                keep,
            } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_DISTINCT);
                put_u64(out, input as u64);
                put_option(out, subset.as_deref(), put_strs);
                put_u8(out, code_of(&KEEPS, keep));
            }
            LogicalPlan::Aggregate { input, keys, aggs } => {
                let input = self.plan(input, depth + 1)?;
                put_u8(out, PLAN_AGGREGATE);
                put_u64(out, input as u64);
                self.exprs(keys, out)?;
                put_u64(out, aggs.len() as u64);
                for agg in aggs {
                    match agg.func {
                        AggFunc::Quantile(quantile) => {
                            put_u8(out, AGG_QUANTILE);
                            out.extend_from_slice(&quantile.q().to_le_bytes());
                            put_u8(out, code_of(&Interpolation::ALL, &quantile.interpolation));
                        }
                        func => put_u8(out, code_of(&AGG_FUNCS, &func)),
                    }
                    let input = self.expr(&agg.input)?;
                    put_u64(out, input as u64);
                    put_str(out, &agg.name);
                }
            }
            LogicalPlan::Join {
                left,
                right,
                left_on,
                right_on,
                how,
                columns,
            } => {
                let left = self.plan(left, depth + 1)?;
                let right = self.plan(right, depth + 1)?;
                put_u8(out, PLAN_JOIN);
                put_u64(out, left as u64);
                put_u64(out, right as u64);
                self.exprs(left_on, out)?;
                self.exprs(right_on, out)?;
                put_u8(out, code_of(&JOIN_TYPES, how));
                put_u64(out, columns.len() as u64);
                for column in columns {
                    put_u8(out, u8::from(column.side == JoinSide::Right));
                    put_str(out, &column.name);
                    put_str(out, &column.output);
                }
            }
        }
        Ok(())
    }
}

// -- decoding --------------------------------------------------------------------------------

/// The plan `encode` made `bytes` from, its files opened again by `opener`.
///
/// Bytes that are not a serialized plan of this version, are damaged, or describe a plan that
/// does not type-check give an error (never a panic); so do files that changed since (another
/// schema, fewer rows than the plan reads).
pub fn decode(bytes: &[u8], opener: &dyn SourceOpener) -> Result<LogicalPlan> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(damaged("the bytes are not a relay_ml plan"));
    };
    let mut reader = Reader { bytes: rest };
    let version = u32::from_le_bytes(reader.array::<4>()?);
    if version != VERSION {
        return Err(damaged(format!(
            "format version {version}, this relay_ml reads version {VERSION}"
        )));
    }
    let expected = u64::from_le_bytes(reader.array::<8>()?);
    if checksum(reader.bytes) != expected {
        return Err(damaged(
            "the checksum does not match (the bytes are damaged)",
        ));
    }
    let mut decoder = Decoder {
        opener,
        sources: Vec::new(),
        exprs: Vec::new(),
        expr_depths: Vec::new(),
        plans: Vec::new(),
    };
    let count = reader.count()?;
    for _ in 0..count {
        let source = decoder.source(&mut reader)?;
        decoder.sources.push(source);
    }
    let count = reader.count()?;
    for _ in 0..count {
        decoder.expr(&mut reader)?;
    }
    let count = reader.count()?;
    if count == 0 {
        return Err(damaged("the plan has no node"));
    }
    for _ in 0..count {
        decoder.plan(&mut reader)?;
    }
    if !reader.bytes.is_empty() {
        return Err(damaged(format!(
            "{} bytes after the plan",
            reader.bytes.len()
        )));
    }
    let root = decoder.plans.pop().map(|node| node.plan);
    let root = root.ok_or_else(|| damaged("the plan has no node"))?;
    drop(decoder);
    Ok(Arc::unwrap_or_clone(root))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.bytes.len() {
            return Err(damaged("the bytes end too early"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(damaged("an integer overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(damaged("an integer overflows 64 bits"))
    }

    fn usize(&mut self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| damaged("a number is too large"))
    }

    /// A count of items that take at least one byte each: never more than the bytes left.
    fn count(&mut self) -> Result<usize> {
        let count = self.usize()?;
        if count > self.bytes.len() {
            return Err(damaged(format!(
                "a count of {count} with {} bytes left",
                self.bytes.len()
            )));
        }
        Ok(count)
    }

    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(damaged(format!("{other} is not a boolean"))),
        }
    }

    fn bytes(&mut self) -> Result<&[u8]> {
        let len = self.usize()?;
        self.take(len)
    }

    fn string(&mut self) -> Result<String> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| damaged("a name is not valid UTF-8"))
    }

    fn strings(&mut self) -> Result<Vec<String>> {
        let count = self.count()?;
        (0..count).map(|_| self.string()).collect()
    }

    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        Ok(if self.bool()? {
            Some(read(self)?)
        } else {
            None
        })
    }

    /// One of `all`, by its position.
    fn code<T: Copy>(&mut self, all: &[T], what: &str) -> Result<T> {
        let code = self.u8()?;
        all.get(usize::from(code))
            .copied()
            .ok_or_else(|| damaged(format!("unknown {what} {code}")))
    }
}

/// `f`, reading an Arrow IPC stream, with a panic of arrow-rs's reader (which trusts some of
/// what a crafted stream says) turned into an error.
fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown error");
        Err(damaged(format!("an Arrow IPC stream: {detail}")))
    })
}

fn read_stream(bytes: &[u8]) -> Result<StreamReader<Cursor<&[u8]>>> {
    StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| damaged(format!("an Arrow IPC stream: {e}")))
}

fn read_schema(bytes: &[u8]) -> Result<SchemaRef> {
    catch_panic(|| Ok(read_stream(bytes)?.schema()))
}

fn read_batch(bytes: &[u8]) -> Result<RecordBatch> {
    catch_panic(|| read_batch_here(bytes))
}

fn read_batch_here(bytes: &[u8]) -> Result<RecordBatch> {
    let mut reader = read_stream(bytes)?;
    let batch = reader
        .next()
        .ok_or_else(|| damaged("an Arrow IPC stream holds no record batch"))?
        .map_err(|e| damaged(format!("an Arrow IPC record batch: {e}")))?;
    if reader.next().is_some() {
        return Err(damaged(
            "an Arrow IPC stream holds more than one record batch",
        ));
    }
    Ok(batch)
}

fn read_array(bytes: &[u8]) -> Result<ArrayRef> {
    let batch = read_batch(bytes)?;
    if batch.num_columns() != 1 {
        return Err(damaged("an array stream holds other than one column"));
    }
    Ok(batch.column(0).clone())
}

fn read_data_type(bytes: &[u8]) -> Result<DataType> {
    let schema = read_schema(bytes)?;
    match schema.fields().first() {
        Some(field) if schema.fields().len() == 1 => Ok(field.data_type().clone()),
        _ => Err(damaged("a type stream holds other than one field")),
    }
}

/// A decoded source: what a leaf reads.
enum Source {
    Ipc(Arc<IpcFile>),
    Dataset(Arc<Dataset>),
}

/// A decoded plan node with what checking its parents needs.
struct Node {
    plan: Arc<LogicalPlan>,
    schema: SchemaRef,
    depth: usize,
}

struct Decoder<'a> {
    opener: &'a dyn SourceOpener,
    sources: Vec<Source>,
    exprs: Vec<Arc<Expr>>,
    expr_depths: Vec<usize>,
    plans: Vec<Node>,
}

/// A file that opened with another schema than it had when the plan was serialized.
fn changed(path: &str, now: &Schema) -> PlanError {
    PlanError::Invalid(format!(
        "{path} changed since the plan was serialized: its columns are now {}",
        schema_text(now)
    ))
}

fn schema_text(schema: &Schema) -> String {
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{:?}: {}",
                f.name(),
                relay_storage::type_name(f.data_type())
            )
        })
        .collect();
    format!("[{}]", columns.join(", "))
}

impl Decoder<'_> {
    fn source(&mut self, reader: &mut Reader<'_>) -> Result<Source> {
        match reader.u8()? {
            SOURCE_IPC => {
                let path = path_of(reader.bytes()?)?;
                let access = reader.code(&ACCESSES, "IPC access")?;
                let fingerprint = u64::from_le_bytes(reader.array::<8>()?);
                let file = self.opener.open_ipc(&path, access)?;
                if schema_fingerprint(file.schema()) != fingerprint {
                    return Err(changed(&path.display().to_string(), file.schema()));
                }
                Ok(Source::Ipc(file))
            }
            SOURCE_DATASET => {
                let description = reader.string()?;
                let count = reader.count()?;
                let mut specs = Vec::with_capacity(count);
                for _ in 0..count {
                    let path = path_of(reader.bytes()?)?;
                    let format = reader.code(&FORMATS, "file format")?;
                    let values = reader.count()?;
                    let partition_values = (0..values)
                        .map(|_| read_array(reader.bytes()?))
                        .collect::<Result<Vec<_>>>()?;
                    specs.push(FragmentSpec {
                        path,
                        format,
                        partition_values,
                    });
                }
                let partition_fields: Vec<Field> = read_schema(reader.bytes()?)?
                    .fields()
                    .iter()
                    .map(|f| f.as_ref().clone())
                    .collect();
                let schema = reader.option(|r| read_schema(r.bytes()?))?;
                let has_header = reader.option(Reader::bool)?;
                let separator = reader.option(Reader::u8)?;
                let ipc_access = reader.code(&ACCESSES, "IPC access")?;
                let fingerprint = u64::from_le_bytes(reader.array::<8>()?);
                let options = FormatOptions {
                    schema,
                    has_header,
                    separator,
                    ipc_access,
                };
                let dataset =
                    self.opener
                        .open_dataset(&description, specs, partition_fields, options)?;
                if schema_fingerprint(dataset.schema()) != fingerprint {
                    return Err(changed(&description, dataset.schema()));
                }
                Ok(Source::Dataset(dataset))
            }
            other => Err(damaged(format!("unknown source kind {other}"))),
        }
    }

    /// An expression decoded earlier, by its index (which must be before the current one).
    fn expr_at(&self, index: usize) -> Result<(Arc<Expr>, usize)> {
        match (self.exprs.get(index), self.expr_depths.get(index)) {
            (Some(expr), Some(&depth)) => Ok((expr.clone(), depth)),
            _ => Err(damaged(format!(
                "expression {index} referred to before it is defined"
            ))),
        }
    }

    fn child(&self, reader: &mut Reader<'_>, depth: &mut usize) -> Result<Arc<Expr>> {
        let (expr, child_depth) = self.expr_at(reader.usize()?)?;
        *depth = (*depth).max(child_depth + 1);
        Ok(expr)
    }

    fn expr(&mut self, reader: &mut Reader<'_>) -> Result<()> {
        let mut depth = 1;
        let expr = match reader.u8()? {
            EXPR_COLUMN => Expr::Column(reader.string()?),
            EXPR_LITERAL => Expr::Literal(Literal(read_array(reader.bytes()?)?)),
            EXPR_BINARY => {
                let op = reader.code(&BinaryOp::ALL, "binary operator")?;
                let left = self.child(reader, &mut depth)?;
                let right = self.child(reader, &mut depth)?;
                Expr::Binary { op, left, right }
            }
            EXPR_UNARY => {
                let op = reader.code(&UnaryOp::ALL, "unary operator")?;
                let input = self.child(reader, &mut depth)?;
                Expr::Unary { op, input }
            }
            EXPR_STRING_MATCH => {
                let kind = reader.code(&STRING_MATCHES, "string match")?;
                let input = self.child(reader, &mut depth)?;
                let pattern = reader.string()?;
                Expr::StringMatch {
                    kind,
                    input,
                    pattern,
                }
            }
            EXPR_IS_IN => {
                let input = self.child(reader, &mut depth)?;
                let values = Literal(read_array(reader.bytes()?)?);
                Expr::IsIn { input, values }
            }
            EXPR_FILL_NULL => {
                let input = self.child(reader, &mut depth)?;
                let value = self.child(reader, &mut depth)?;
                Expr::FillNull { input, value }
            }
            EXPR_CAST => {
                let input = self.child(reader, &mut depth)?;
                let to = read_data_type(reader.bytes()?)?;
                Expr::Cast { input, to }
            }
            EXPR_CASE => {
                let count = reader.count()?;
                let mut branches = Vec::with_capacity(count);
                for _ in 0..count {
                    let when = self.child(reader, &mut depth)?;
                    let then = self.child(reader, &mut depth)?;
                    branches.push((Arc::unwrap_or_clone(when), Arc::unwrap_or_clone(then)));
                }
                let otherwise = self.child(reader, &mut depth)?;
                Expr::Case {
                    branches,
                    otherwise,
                }
            }
            EXPR_ALIAS => {
                let input = self.child(reader, &mut depth)?;
                let name = reader.string()?;
                Expr::Alias { input, name }
            }
            other => return Err(damaged(format!("unknown expression kind {other}"))),
        };
        let limit = 2 * MAX_EXPR_DEPTH + 1;
        if depth > limit {
            return Err(damaged(format!(
                "an expression is {depth} levels deep, the limit is {limit}"
            )));
        }
        self.exprs.push(Arc::new(expr));
        self.expr_depths.push(depth);
        Ok(())
    }

    /// Expressions by their indices, as values (their subtrees stay shared).
    fn exprs_of(&self, reader: &mut Reader<'_>) -> Result<Vec<Expr>> {
        let count = reader.count()?;
        (0..count)
            .map(|_| {
                let (expr, _) = self.expr_at(reader.usize()?)?;
                Ok(Arc::unwrap_or_clone(expr))
            })
            .collect()
    }

    fn plan(&mut self, reader: &mut Reader<'_>) -> Result<()> {
        let tag = reader.u8()?;
        let (plan, inputs) = self.plan_node(tag, reader)?;
        let depth = 1 + inputs
            .iter()
            .map(|&i| self.plans[i].depth)
            .max()
            .unwrap_or(0);
        if depth > MAX_PLAN_DEPTH {
            return Err(damaged(format!(
                "the plan is more than {MAX_PLAN_DEPTH} operations deep"
            )));
        }
        let schema = self.check(&plan, &inputs)?;
        self.plans.push(Node {
            plan: Arc::new(plan),
            schema,
            depth,
        });
        Ok(())
    }

    /// A node and the indices of its inputs.
    fn plan_node(&mut self, tag: u8, reader: &mut Reader<'_>) -> Result<(LogicalPlan, Vec<usize>)> {
        let mut inputs = Vec::new();
        let mut input = |decoder: &Self, reader: &mut Reader<'_>| -> Result<Arc<LogicalPlan>> {
            let index = reader.usize()?;
            let node = decoder.plans.get(index).ok_or_else(|| {
                damaged(format!(
                    "plan node {index} referred to before it is defined"
                ))
            })?;
            inputs.push(index);
            Ok(node.plan.clone())
        };
        let plan = match tag {
            PLAN_SCAN => {
                let source = reader.usize()?;
                let Some(Source::Ipc(file)) = self.sources.get(source) else {
                    return Err(damaged(format!("source {source} is not an Arrow IPC file")));
                };
                let columns = reader.strings()?;
                let offset = reader.u64()?;
                let length = reader.u64()?;
                let table = TableView::new(file.clone())
                    .select(&columns)?
                    .slice(offset, length);
                if table.rows() != (RowRange { offset, length }) {
                    return Err(PlanError::Invalid(format!(
                        "{} changed since the plan was serialized: it has {} rows, the plan reads \
                         rows {offset} .. {}",
                        file.path().display(),
                        file.num_rows(),
                        offset.saturating_add(length)
                    )));
                }
                let filters = self.exprs_of(reader)?;
                LogicalPlan::Scan {
                    table,
                    filters,
                    batches: None,
                }
            }
            PLAN_READ => {
                let source = reader.usize()?;
                let Some(Source::Dataset(dataset)) = self.sources.get(source) else {
                    return Err(damaged(format!("source {source} is not a dataset")));
                };
                let columns = reader.strings()?;
                let count = reader.count()?;
                let fragments = (0..count)
                    .map(|_| reader.usize())
                    .collect::<Result<Vec<_>>>()?;
                let ascending = fragments.windows(2).all(|w| w[0] < w[1]);
                if !ascending || fragments.iter().any(|&f| f >= dataset.num_fragments()) {
                    return Err(damaged("the files of a read are out of order or range"));
                }
                let pieces = reader.option(|r| {
                    let count = r.count()?;
                    (0..count)
                        .map(|_| {
                            Ok(PieceId {
                                fragment: r.usize()?,
                                piece: r.usize()?,
                            })
                        })
                        .collect::<Result<Vec<_>>>()
                })?;
                let rows = reader.option(|r| {
                    Ok(RowRange {
                        offset: r.u64()?,
                        length: r.u64()?,
                    })
                })?;
                let mut view = DatasetView::new(dataset.clone())
                    .select(&columns)?
                    .keep_fragments(fragments.clone());
                if let Some(pieces) = pieces {
                    let ascending = pieces
                        .windows(2)
                        .all(|w| (w[0].fragment, w[0].piece) < (w[1].fragment, w[1].piece));
                    if !ascending {
                        return Err(damaged("the pieces of a read are out of order"));
                    }
                    for piece in &pieces {
                        if fragments.binary_search(&piece.fragment).is_err()
                            || piece.piece >= dataset.open(piece.fragment)?.num_pieces()
                        {
                            return Err(damaged("a piece of a read is out of range"));
                        }
                    }
                    view = view.keep_pieces(pieces);
                    if view.fragments() != fragments.as_slice() {
                        return Err(damaged("the pieces of a read do not match its files"));
                    }
                }
                if let Some(rows) = rows {
                    view = view.slice(rows.offset, rows.length);
                }
                let filters = self.exprs_of(reader)?;
                LogicalPlan::Read { view, filters }
            }
            PLAN_FILTER => {
                let input = input(self, reader)?;
                let (predicate, _) = self.expr_at(reader.usize()?)?;
                LogicalPlan::Filter {
                    input,
                    predicate: Arc::unwrap_or_clone(predicate),
                }
            }
            PLAN_PROJECT => {
                let input = input(self, reader)?;
                let exprs = self.exprs_of(reader)?;
                LogicalPlan::Project { input, exprs }
            }
            PLAN_SLICE => {
                let input = input(self, reader)?;
                let offset = reader.u64()?;
                let length = reader.u64()?;
                LogicalPlan::Slice {
                    input,
                    offset,
                    length,
                }
            }
            PLAN_TAKE => {
                let input = input(self, reader)?;
                let count = reader.usize()?;
                if count > reader.bytes.len() / 8 {
                    return Err(damaged("the indices of a take end too early"));
                }
                let indices = (0..count)
                    .map(|_| Ok(u64::from_le_bytes(reader.array::<8>()?)))
                    .collect::<Result<Vec<_>>>()?;
                LogicalPlan::Take {
                    input,
                    indices: Arc::new(indices),
                }
            }
            PLAN_MEMORY => {
                let schema = read_schema(reader.bytes()?)?;
                let count = reader.count()?;
                let batches = (0..count)
                    .map(|_| read_batch(reader.bytes()?))
                    .collect::<Result<Vec<_>>>()?;
                for batch in &batches {
                    let types_match = batch.num_columns() == schema.fields().len()
                        && batch
                            .schema()
                            .fields()
                            .iter()
                            .zip(schema.fields())
                            .all(|(have, want)| have.data_type() == want.data_type());
                    if !types_match {
                        return Err(damaged("a batch in memory does not have the plan's types"));
                    }
                }
                let origin = reader.option(|r| r.string())?.map(Arc::from);
                LogicalPlan::Memory {
                    schema,
                    batches: Arc::new(batches),
                    origin,
                }
            }
            PLAN_REINTERPRET => {
                let input = input(self, reader)?;
                let count = reader.count()?;
                let columns = (0..count)
                    .map(|_| Ok((reader.string()?, read_data_type(reader.bytes()?)?)))
                    .collect::<Result<Vec<_>>>()?;
                LogicalPlan::Reinterpret { input, columns }
            }
            PLAN_ATTACH_COLUMNS => {
                let input = input(self, reader)?;
                let count = reader.count()?;
                let columns = (0..count)
                    .map(|_| {
                        Ok(AttachedColumn {
                            name: reader.string()?,
                            array: read_array(reader.bytes()?)?,
                            copied: reader.option(|r| r.string())?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                LogicalPlan::AttachColumns { input, columns }
            }
            PLAN_SORT => {
                let input = input(self, reader)?;
                let count = reader.count()?;
                let keys = (0..count)
                    .map(|_| {
                        let (expr, _) = self.expr_at(reader.usize()?)?;
                        Ok(SortKey {
                            expr: Arc::unwrap_or_clone(expr),
                            descending: reader.bool()?,
                            nulls_last: reader.bool()?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let limit = reader.option(Reader::u64)?;
                LogicalPlan::Sort { input, keys, limit }
            }
            PLAN_DISTINCT => {
                let input = input(self, reader)?;
                let subset = reader.option(Reader::strings)?;
                let keep = reader.code(&KEEPS, "unique keep")?;
                LogicalPlan::Distinct {
                    input,
                    subset,
                    keep,
                }
            }
            PLAN_AGGREGATE => {
                let input = input(self, reader)?;
                let keys = self.exprs_of(reader)?;
                let count = reader.count()?;
                let aggs = (0..count)
                    .map(|_| {
                        let func = match reader.u8()? {
                            AGG_QUANTILE => {
                                let q = f64::from_le_bytes(reader.array::<8>()?);
                                let interpolation =
                                    reader.code(&Interpolation::ALL, "interpolation")?;
                                AggFunc::Quantile(
                                    Quantile::new(q, interpolation)
                                        .ok_or_else(|| damaged(format!("quantile {q}")))?,
                                )
                            }
                            code => *AGG_FUNCS
                                .get(usize::from(code))
                                .ok_or_else(|| damaged(format!("unknown aggregation {code}")))?,
                        };
                        let (input, _) = self.expr_at(reader.usize()?)?;
                        Ok(AggExpr {
                            func,
                            input: Arc::unwrap_or_clone(input),
                            name: reader.string()?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                LogicalPlan::Aggregate { input, keys, aggs }
            }
            PLAN_JOIN => {
                let left = input(self, reader)?;
                let right = input(self, reader)?;
                let left_on = self.exprs_of(reader)?;
                let right_on = self.exprs_of(reader)?;
                let how = reader.code(&JOIN_TYPES, "join type")?;
                let count = reader.count()?;
                let columns = (0..count)
                    .map(|_| {
                        let side = if reader.bool()? {
                            JoinSide::Right
                        } else {
                            JoinSide::Left
                        };
                        Ok(JoinColumn {
                            side,
                            name: reader.string()?,
                            output: reader.string()?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                LogicalPlan::Join {
                    left,
                    right,
                    left_on,
                    right_on,
                    how,
                    columns,
                }
            }
            other => return Err(damaged(format!("unknown plan node kind {other}"))),
        };
        Ok((plan, inputs))
    }

    /// Type-checks `plan` (whose inputs are the decoded nodes `inputs`) as its builder would,
    /// against its inputs' schemas: the node's own schema.
    fn check(&self, plan: &LogicalPlan, inputs: &[usize]) -> Result<SchemaRef> {
        let input_schemas: Vec<&SchemaRef> =
            inputs.iter().map(|&i| &self.plans[i].schema).collect();
        // The node over stand-ins of its inputs (memory of their schemas, no rows), so that
        // `schema()` resolves this node's expressions without walking the whole plan again.
        let stub = |index: usize| {
            Arc::new(LogicalPlan::Memory {
                schema: input_schemas[index].clone(),
                batches: Arc::new(vec![]),
                origin: None,
            })
        };
        let boolean = |expr: &Expr, schema: &SchemaRef| -> Result<()> {
            let resolved = resolve(expr.clone(), schema)?;
            if matches!(resolved.data_type, DataType::Boolean | DataType::Null) {
                Ok(())
            } else {
                Err(damaged(format!("the filter {expr} is not boolean")))
            }
        };
        let known_rows = |index: usize| self.plans[inputs[index]].plan.known_num_rows();
        let shallow = match plan {
            LogicalPlan::Scan { table, filters, .. } => {
                let schema = table.schema();
                for filter in filters {
                    boolean(filter, &schema)?;
                }
                return Ok(schema);
            }
            LogicalPlan::Read { view, filters } => {
                let schema = view.schema();
                for filter in filters {
                    boolean(filter, &schema)?;
                }
                return Ok(schema);
            }
            LogicalPlan::Memory { schema, .. } => return Ok(schema.clone()),
            LogicalPlan::Filter { predicate, .. } => {
                boolean(predicate, input_schemas[0])?;
                return Ok(input_schemas[0].clone());
            }
            LogicalPlan::Slice { .. } | LogicalPlan::Distinct { .. } => {
                if let LogicalPlan::Distinct {
                    subset: Some(subset),
                    ..
                } = plan
                {
                    for name in subset {
                        input_schemas[0].index_of(name).map_err(|_| {
                            damaged(format!("unique() of a column {name:?} the input lacks"))
                        })?;
                    }
                }
                return Ok(input_schemas[0].clone());
            }
            LogicalPlan::Take { indices, .. } => {
                if let Some(rows) = known_rows(0)
                    && indices.iter().any(|&i| i >= rows)
                {
                    return Err(damaged("a take index is out of range"));
                }
                return Ok(input_schemas[0].clone());
            }
            LogicalPlan::Sort { keys, .. } => {
                for key in keys {
                    resolve(key.expr.clone(), input_schemas[0])?;
                }
                return Ok(input_schemas[0].clone());
            }
            LogicalPlan::Project { exprs, .. } => LogicalPlan::Project {
                input: stub(0),
                exprs: exprs.clone(),
            },
            LogicalPlan::Reinterpret { columns, .. } => {
                for (name, to) in columns {
                    let field = input_schemas[0].field_with_name(name).map_err(|_| {
                        damaged(format!("view() of a column {name:?} the input lacks"))
                    })?;
                    if field.data_type().primitive_width() != to.primitive_width()
                        && !matches!(
                            (field.data_type(), to),
                            (DataType::FixedSizeList(..), DataType::FixedSizeList(..))
                        )
                    {
                        return Err(damaged(format!("view() of {name:?} changes its width")));
                    }
                }
                LogicalPlan::Reinterpret {
                    input: stub(0),
                    columns: columns.clone(),
                }
            }
            LogicalPlan::AttachColumns { columns, .. } => {
                if let Some(rows) = known_rows(0)
                    && columns.iter().any(|c| c.array.len() as u64 != rows)
                {
                    return Err(damaged(
                        "an attached column's length differs from the frame's",
                    ));
                }
                if !self.plans[inputs[0]].plan.is_row_aligned() {
                    return Err(damaged(
                        "columns attached to a plan whose rows are not in order",
                    ));
                }
                LogicalPlan::AttachColumns {
                    input: stub(0),
                    columns: columns.clone(),
                }
            }
            LogicalPlan::Aggregate { keys, aggs, .. } => LogicalPlan::Aggregate {
                input: stub(0),
                keys: keys.clone(),
                aggs: aggs.clone(),
            },
            LogicalPlan::Join {
                left_on,
                right_on,
                how,
                columns,
                ..
            } => {
                if left_on.len() != right_on.len() || left_on.is_empty() {
                    return Err(damaged("a join's keys do not pair up"));
                }
                for (left, right) in left_on.iter().zip(right_on) {
                    let left = resolve(left.clone(), input_schemas[0])?;
                    let right = resolve(right.clone(), input_schemas[1])?;
                    if crate::join::join_key_type(&left.data_type, &right.data_type).is_none() {
                        return Err(damaged("a join's keys have types that do not join"));
                    }
                }
                LogicalPlan::Join {
                    left: stub(0),
                    right: stub(1),
                    left_on: left_on.clone(),
                    right_on: right_on.clone(),
                    how: *how,
                    columns: columns.clone(),
                }
            }
        };
        shallow.schema()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use relay_storage::{Dataset, DatasetView, FileFormat, FormatOptions, FragmentSpec, IpcAccess};

    use super::*;
    use crate::optimizer::test_support::{TestDataset, TestFile, execute, float, int, string};

    /// `plan` encoded and decoded: encoding the decoded plan gives the same bytes, and it shows
    /// as the original does.
    fn round_trip(plan: &LogicalPlan) -> LogicalPlan {
        let bytes = encode(plan).expect("encode");
        let decoded = decode(&bytes, &StorageOpener).expect("decode");
        assert_eq!(encode(&decoded).expect("encode again"), bytes);
        assert_eq!(decoded.display_indent(), plan.display_indent());
        assert_eq!(
            decoded.schema().expect("schema"),
            plan.schema().expect("schema")
        );
        decoded
    }

    fn same_result(plan: &LogicalPlan) {
        let decoded = round_trip(plan);
        assert_eq!(execute(&decoded), execute(plan));
    }

    /// CSV files separated by `;` under `year=2023` and `year=2024`, read as one dataset
    /// partitioned by `year` with the options `scan()` would give. Removed on drop.
    struct CsvDataset {
        dir: PathBuf,
        dataset: Arc<Dataset>,
    }

    impl CsvDataset {
        fn new() -> CsvDataset {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "relay-plan-serialize-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let mut specs = Vec::new();
            for year in [2023i64, 2024] {
                let folder = dir.join(format!("year={year}"));
                std::fs::create_dir_all(&folder).expect("dir");
                let path = folder.join("part.csv");
                let mut text = String::from("id;name\n");
                for id in 0..5 {
                    text.push_str(&format!("{};n{}\n", year * 10 + id, id));
                }
                std::fs::write(&path, text).expect("write");
                specs.push(FragmentSpec {
                    path,
                    format: FileFormat::Csv,
                    partition_values: vec![Arc::new(Int64Array::from(vec![year]))],
                });
            }
            let options = FormatOptions {
                schema: Some(Arc::new(Schema::new(vec![
                    Field::new("id", DataType::Int64, true),
                    Field::new("name", DataType::Utf8, true),
                ]))),
                has_header: Some(true),
                separator: Some(b';'),
                ipc_access: IpcAccess::InMemory,
            };
            let dataset = Dataset::with_options(
                dir.display().to_string(),
                specs,
                vec![Field::new("year", DataType::Int64, true)],
                options,
            )
            .expect("dataset");
            CsvDataset { dir, dataset }
        }

        fn read(&self) -> Arc<LogicalPlan> {
            Arc::new(LogicalPlan::read(DatasetView::new(self.dataset.clone())))
        }
    }

    impl Drop for CsvDataset {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn col(name: &str) -> Expr {
        Expr::col(name)
    }

    fn every_expression() -> Vec<Expr> {
        vec![
            col("id"),
            int(7).alias("seven"),
            col("id").binary(BinaryOp::Add, int(1)).alias("add"),
            col("id").binary(BinaryOp::Gt, int(3)).alias("gt"),
            col("score").binary(BinaryOp::Div, float(2.0)).alias("div"),
            col("age").unary(UnaryOp::IsNull).alias("missing"),
            Expr::StringMatch {
                kind: StringMatch::StartsWith,
                input: Arc::new(col("name")),
                pattern: "p1".into(),
            }
            .alias("starts"),
            Expr::IsIn {
                input: Arc::new(col("id")),
                values: Literal(Arc::new(Int64Array::from(vec![1, 2, 3]))),
            }
            .alias("is_in"),
            Expr::FillNull {
                input: Arc::new(col("age")),
                value: Arc::new(int(0)),
            }
            .alias("filled"),
            Expr::Cast {
                input: Arc::new(col("age")),
                to: DataType::Float64,
            }
            .alias("cast"),
            Expr::Case {
                branches: vec![(col("id").binary(BinaryOp::Lt, int(10)), string("low"))],
                otherwise: Arc::new(string("high")),
            }
            .alias("case"),
            Expr::lit(arrow::array::new_null_array(&DataType::Null, 1)).alias("null"),
        ]
    }

    #[test]
    fn every_expression_kind_round_trips() {
        let file = TestFile::people();
        let plan = file.scan().project(every_expression()).expect("project");
        round_trip(&plan);
        // Binary and unary operators, each.
        for op in BinaryOp::ALL {
            let (left, right) = match op {
                BinaryOp::And | BinaryOp::Or => (col("flag"), col("flag")),
                _ => (col("id"), int(2)),
            };
            let plan = file
                .scan()
                .project(vec![left.binary(op, right).alias("out")])
                .expect("project");
            round_trip(&plan);
        }
        for op in UnaryOp::ALL {
            let input = match op {
                UnaryOp::Not => col("flag"),
                UnaryOp::StrLen => col("name"),
                UnaryOp::Year | UnaryOp::Month | UnaryOp::Day => continue,
                _ => col("id"),
            };
            let plan = file
                .scan()
                .project(vec![input.unary(op).alias("out")])
                .expect("project");
            round_trip(&plan);
        }
        for kind in STRING_MATCHES {
            let expr = Expr::StringMatch {
                kind,
                input: Arc::new(col("name")),
                pattern: "2".into(),
            };
            round_trip(
                &file
                    .scan()
                    .project(vec![expr.alias("out")])
                    .expect("project"),
            );
        }
    }

    #[test]
    fn date_parts_round_trip() {
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(arrow::array::Date32Array::from(vec![0, 400]))],
        )
        .expect("batch");
        let memory = Arc::new(LogicalPlan::memory(schema, vec![batch]));
        for op in [UnaryOp::Year, UnaryOp::Month, UnaryOp::Day] {
            round_trip(
                &memory
                    .project(vec![col("d").unary(op).alias("out")])
                    .expect("project"),
            );
        }
    }

    #[test]
    fn scans_filters_projections_slices_and_takes_give_the_same_rows() {
        let file = TestFile::people();
        let scan = file.scan();
        same_result(&scan);
        let narrowed = LogicalPlan::Scan {
            table: file
                .table()
                .select(&["age", "id"])
                .expect("select")
                .slice(3, 20),
            filters: vec![col("id").binary(BinaryOp::Gt, int(5))],
            batches: None,
        };
        same_result(&narrowed);
        let filtered = scan
            .filter(col("age").binary(BinaryOp::GtEq, int(10)))
            .expect("filter");
        same_result(&filtered);
        let projected = Arc::new(filtered)
            .project(vec![
                col("id"),
                col("score")
                    .binary(BinaryOp::Mul, float(2.0))
                    .alias("double"),
            ])
            .expect("project");
        same_result(&projected);
        let projected = Arc::new(projected);
        let sliced = LogicalPlan::Slice {
            input: projected.clone(),
            offset: 2,
            length: 5,
        };
        same_result(&sliced);
        let taken = scan.take(&[5, 0, 5, -1], 30).expect("take");
        same_result(&taken);
    }

    #[test]
    fn every_other_node_kind_round_trips() {
        let file = TestFile::people();
        let scan = file.scan();
        let key = |name: &str, descending| SortKey {
            expr: col(name),
            descending,
            nulls_last: true,
        };
        round_trip(
            &scan
                .sort(vec![key("age", true), key("id", false)])
                .expect("sort"),
        );
        round_trip(&scan.top_k(4, vec![key("score", false)]).expect("top_k"));
        for keep in KEEPS {
            round_trip(
                &scan
                    .distinct(Some(vec!["city".into()]), keep)
                    .expect("distinct"),
            );
        }
        round_trip(&scan.distinct(None, Keep::First).expect("distinct"));
        let mut aggs: Vec<AggExpr> = AGG_FUNCS
            .iter()
            .map(|&func| AggExpr::new(func, col("score")).alias(func.name()))
            .collect();
        for interpolation in Interpolation::ALL {
            aggs.push(
                AggExpr::new(
                    AggFunc::Quantile(Quantile::new(0.25, interpolation).expect("quantile")),
                    col("score"),
                )
                .alias(format!("q_{}", interpolation.name())),
            );
        }
        round_trip(&scan.aggregate(vec![col("city")], aggs).expect("aggregate"));
        round_trip(
            &scan
                .aggregate(vec![], vec![AggExpr::new(AggFunc::Len, col("id"))])
                .expect("agg"),
        );
        let right = Arc::new(
            scan.project(vec![col("id"), col("name").alias("other")])
                .expect("project"),
        );
        for how in JOIN_TYPES {
            round_trip(
                &scan
                    .join(&right, vec![col("id")], vec![col("id")], how, "_r")
                    .expect("join"),
            );
        }
        round_trip(
            &scan
                .reinterpret(vec![("id".into(), DataType::Float64)])
                .expect("reinterpret"),
        );
        let attached = scan
            .attach_columns(vec![AttachedColumn {
                name: "extra".into(),
                array: Arc::new(Float64Array::from_iter_values((0..30).map(f64::from))),
                copied: Some("a Python list was converted into an array".into()),
            }])
            .expect("attach");
        round_trip(&attached);
        let rows = LogicalPlan::memory_rows(4, "from_numpy").expect("memory");
        round_trip(&rows);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("x", DataType::Int64, false),
                Field::new("s", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            ],
        )
        .expect("batch");
        let memory = LogicalPlan::Memory {
            schema: batch.schema(),
            batches: Arc::new(vec![batch.clone(), batch.slice(1, 2)]),
            origin: Some("concat".into()),
        };
        let decoded = round_trip(&memory);
        let LogicalPlan::Memory { batches, .. } = decoded else {
            panic!("not memory");
        };
        assert_eq!(batches.as_slice(), &[batch.clone(), batch.slice(1, 2)]);
    }

    #[test]
    fn a_dataset_opens_again_with_its_options_and_partitions() {
        let data = CsvDataset::new();
        let read = data.read();
        let filtered = read
            .filter(col("year").binary(BinaryOp::Eq, int(2024)))
            .expect("filter");
        round_trip(&filtered);
        let view = DatasetView::new(data.dataset.clone())
            .select(&["year", "name"])
            .expect("select")
            .keep_fragments(vec![1])
            .slice(1, 3);
        let decoded = round_trip(&LogicalPlan::read(view.clone()));
        let LogicalPlan::Read { view: again, .. } = decoded else {
            panic!("not a read");
        };
        assert_eq!(again.columns(), view.columns());
        assert_eq!(again.fragments(), view.fragments());
        assert_eq!(again.rows(), view.rows());
        let options = again.dataset().options().expect("options");
        assert_eq!(options.separator, Some(b';'));
        assert_eq!(options.has_header, Some(true));
        assert!(options.schema.is_some());
        assert_eq!(
            again.dataset().fragments()[1].partition_values[0].as_ref(),
            &Int64Array::from(vec![2024]) as &dyn Array
        );
        let pieces = DatasetView::new(data.dataset.clone()).keep_pieces(vec![PieceId {
            fragment: 1,
            piece: 0,
        }]);
        round_trip(&LogicalPlan::read(pieces));
    }

    #[test]
    fn shared_subtrees_are_written_once() {
        let file = TestFile::people();
        // 2^16 leaves as a tree, 17 nodes as written.
        let mut expr = col("id");
        for _ in 0..16 {
            expr = expr.clone().binary(BinaryOp::Add, expr);
        }
        let plan = LogicalPlan::Project {
            input: file.scan(),
            exprs: vec![expr.alias("big")],
        };
        let bytes = encode(&plan).expect("encode");
        assert!(bytes.len() < 10_000, "{} bytes", bytes.len());
        let decoded = decode(&bytes, &StorageOpener).expect("decode");
        assert_eq!(encode(&decoded).expect("encode"), bytes);
        // A frame joined with itself: one node, one file.
        let scan = file.scan();
        let joined = scan
            .join(
                &scan,
                vec![col("id")],
                vec![col("id")],
                JoinType::Inner,
                "_r",
            )
            .expect("join");
        let bytes = encode(&joined).expect("encode");
        let LogicalPlan::Join { left, right, .. } = decode(&bytes, &StorageOpener).expect("decode")
        else {
            panic!("not a join");
        };
        assert!(Arc::ptr_eq(&left, &right));
    }

    #[test]
    fn datasets_of_a_callers_own_opener_are_refused() {
        let data = TestDataset::parts();
        let error = encode(&data.read()).expect_err("a custom opener");
        assert!(
            error.to_string().contains("reader of the caller's own"),
            "{error}"
        );
    }

    #[test]
    fn plans_deeper_than_the_limit_are_refused() {
        let file = TestFile::people();
        let mut plan = file.scan();
        for _ in 0..MAX_PLAN_DEPTH {
            plan = Arc::new(LogicalPlan::Slice {
                input: plan,
                offset: 0,
                length: 10,
            });
        }
        let error = encode(&plan).expect_err("too deep");
        assert!(error.to_string().contains("operations deep"), "{error}");
        // Dropping the chain takes stack per level: let it go on a big stack.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || drop(plan))
            .expect("thread")
            .join()
            .expect("drop");
    }

    #[test]
    fn a_changed_file_is_an_error() {
        let file = TestFile::people();
        let bytes = encode(&file.scan()).expect("encode");
        let other = TestFile::write(
            "other",
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
            &[],
        );
        std::fs::copy(other.path(), file.path()).expect("copy");
        let error = decode(&bytes, &StorageOpener).expect_err("changed");
        assert!(error.to_string().contains("changed since"), "{error}");
    }

    /// Bytes `bytes` with the checksum recomputed, so that decoding reaches the damage.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.len() >= 20 {
            let sum = checksum(&bytes[20..]);
            bytes[12..20].copy_from_slice(&sum.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn damaged_bytes_are_errors_never_panics() {
        let file = TestFile::people();
        let scan = file.scan();
        let plan = scan
            .filter(col("id").binary(BinaryOp::Gt, int(3)))
            .expect("filter");
        let plan = Arc::new(plan)
            .project(every_expression()[..6].to_vec())
            .expect("project");
        let plan = Arc::new(plan).take(&[1, 0], 2).expect("take");
        let bytes = encode(&plan).expect("encode");
        assert!(decode(b"", &StorageOpener).is_err());
        assert!(decode(b"RELAYPLN", &StorageOpener).is_err());
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut], &StorageOpener).is_err(),
                "cut at {cut}"
            );
        }
        for position in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[position] ^= flip;
                // The checksum finds it...
                if position >= 20 {
                    assert!(decode(&damaged, &StorageOpener).is_err());
                }
                // ...and past it, every check the decoder makes: an error or a plan, no panic.
                let resealed = resealed(damaged);
                let outcome = std::panic::catch_unwind(|| {
                    decode(&resealed, &StorageOpener).map(|plan| plan.schema().map(|_| ()))
                });
                assert!(outcome.is_ok(), "a panic at byte {position} ^ {flip:#x}");
            }
        }
    }

    #[test]
    fn crafted_depths_and_references_are_errors() {
        // An expression table of a chain deeper than the limit, each node an alias of the last.
        let mut body = Vec::new();
        put_u64(&mut body, 0);
        let depth = 2 * MAX_EXPR_DEPTH + 5;
        put_u64(&mut body, depth as u64);
        put_u8(&mut body, EXPR_COLUMN);
        put_str(&mut body, "x");
        for index in 0..depth - 1 {
            put_u8(&mut body, EXPR_ALIAS);
            put_u64(&mut body, index as u64);
            put_str(&mut body, "a");
        }
        put_u64(&mut body, 0);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&body);
        let error = decode(&resealed(bytes), &StorageOpener).expect_err("too deep");
        assert!(error.to_string().contains("levels deep"), "{error}");
        // A reference forwards.
        let mut body = Vec::new();
        put_u64(&mut body, 0);
        put_u64(&mut body, 1);
        put_u8(&mut body, EXPR_ALIAS);
        put_u64(&mut body, 0);
        put_str(&mut body, "a");
        put_u64(&mut body, 0);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&body);
        let error = decode(&resealed(bytes), &StorageOpener).expect_err("forward");
        assert!(
            error.to_string().contains("before it is defined"),
            "{error}"
        );
        // Another version.
        let mut bytes = encode(&LogicalPlan::memory_rows(1, "x").expect("memory")).expect("encode");
        bytes[8] = 9;
        let error = decode(&bytes, &StorageOpener).expect_err("version");
        assert!(error.to_string().contains("version 9"), "{error}");
    }
}
