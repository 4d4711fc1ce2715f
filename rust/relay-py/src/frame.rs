//! `relay_ml._relay.NativeFrame`: a lazy plan over a mapped file or over data in memory.
//! The public class is `relay_ml.Frame`, a Python wrapper that carries the docs.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::Array;
use arrow::datatypes::DataType;
use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCapsule};
use relay_exec::{
    ExecError, MemoryLayout, Profile, ViewSet, collect_batches, execute, explain_column,
    gather_fixed_width,
};
use relay_plan::optimizer::Optimizer;
use relay_plan::serialize::{SourceOpener, StorageOpener};
use relay_plan::{AggExpr, Expr, LogicalPlan, PlanError, SortKey};
use relay_storage::{
    Dataset, DatasetView, FormatOptions, FragmentSpec, IpcAccess, IpcFile, OpenedSource,
    ScanOptions, TableView, open_source, type_name,
};

use crate::column::{ColumnBase, ColumnSource};
use crate::convert::{self, SourceArg};
use crate::errors::{DetachGuarded, ErrorKind, IntoPyResult, guarded, relay_error, storage_error};
use crate::export;
use crate::expr::NativeExpr;
use crate::external::attached_column;

pub fn plan_error(error: PlanError) -> PyErr {
    match error {
        PlanError::Type(message) => relay_error(ErrorKind::Type, message),
        PlanError::ColumnNotFound { .. } => {
            relay_error(ErrorKind::ColumnNotFound, error.to_string())
        }
        PlanError::Invalid(message) => relay_error(ErrorKind::Value, message),
        PlanError::Storage(error) => storage_error(error),
        PlanError::RuleBrokeSchema { .. } => relay_error(ErrorKind::Relay, error.to_string()),
    }
}

pub fn exec_error(error: ExecError) -> PyErr {
    match error {
        ExecError::Storage(error) => storage_error(error),
        ExecError::Plan(error) => plan_error(error),
        ExecError::Arrow(error) => {
            relay_error(ErrorKind::Value, format!("evaluation failed: {error}"))
        }
        error @ ExecError::Evaluation { .. } => relay_error(ErrorKind::Value, error.to_string()),
        ExecError::Batch(message) => relay_error(ErrorKind::Type, message),
    }
}

/// Whether `run_plan` optimizes plans before executing them (on unless a benchmark turns it off).
static OPTIMIZER_ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the optimizer on or off for this process: for benchmarks that compare a plan as
/// written with its optimized form. Not part of the public API (`relay_ml._relay` only).
#[pyfunction]
pub fn _set_optimizer_enabled(enabled: bool) {
    OPTIMIZER_ENABLED.store(enabled, Ordering::Relaxed);
}

/// Optimizes and executes `plan` with the GIL released.
pub fn run_plan(py: Python<'_>, plan: &Arc<LogicalPlan>) -> PyResult<ViewSet> {
    run_plan_profiled(py, plan, &Profile::default())
}

fn run_plan_profiled(
    py: Python<'_>,
    plan: &Arc<LogicalPlan>,
    profile: &Profile,
) -> PyResult<ViewSet> {
    guarded("running the plan", || {
        py.detach(|| execute(optimized(plan.clone())?.as_ref(), profile))
            .map_err(exec_error)
    })
}

/// `plan` as it runs: optimized, unless a benchmark turned the optimizer off.
pub fn optimized(plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>, ExecError> {
    Ok(if OPTIMIZER_ENABLED.load(Ordering::Relaxed) {
        Optimizer::default().optimize(plan)?.0
    } else {
        plan
    })
}

/// Where a frame's rows come from: a mapped file, or memory (a frame made by `from_numpy`,
/// `from_arrow`, ...). Exports that point into the file's mapping are views of it; messages
/// name the file's path, or the call that made an in-memory frame.
#[derive(Clone)]
pub enum FrameOrigin {
    File(Arc<IpcFile>),
    Memory(Arc<str>),
    /// Files read by decoding them (Parquet, CSV, NDJSON) or several files at once: no
    /// export is a view of one mapping. Holds the source as the user gave it.
    Dataset(Arc<str>),
}

impl FrameOrigin {
    /// The addresses of the mapped file; empty for memory (no export is a view of a mapping).
    pub fn mapped_range(&self) -> Range<usize> {
        match self {
            FrameOrigin::File(file) => file.mapped_range(),
            FrameOrigin::Memory(_) | FrameOrigin::Dataset(_) => 0..0,
        }
    }

    /// The file's path; None for memory.
    pub fn path(&self) -> Option<String> {
        match self {
            FrameOrigin::File(file) => Some(file.path().display().to_string()),
            FrameOrigin::Memory(_) | FrameOrigin::Dataset(_) => None,
        }
    }

    /// The origin as messages name it: the file's path, or `<from_numpy>`.
    pub fn describe(&self) -> String {
        match self {
            FrameOrigin::File(file) => file.path().display().to_string(),
            FrameOrigin::Memory(origin) => format!("<{origin}>"),
            FrameOrigin::Dataset(source) => source.to_string(),
        }
    }
}

#[pyclass(frozen, module = "relay_ml._relay")]
pub struct NativeFrame {
    pub(crate) plan: Arc<LogicalPlan>,
    /// The scanned file or memory at the plan's leaf.
    origin: FrameOrigin,
}

impl NativeFrame {
    fn with_plan(&self, plan: LogicalPlan) -> Self {
        NativeFrame {
            plan: Arc::new(plan),
            origin: self.origin.clone(),
        }
    }

    /// The scan's view when this frame is a plain scan (columns and a row range, no filter).
    fn plain_scan(&self) -> Option<&TableView> {
        match self.plan.as_ref() {
            LogicalPlan::Scan { table, filters, .. } if filters.is_empty() => Some(table),
            _ => None,
        }
    }

    /// Whether each slice of this frame would run the whole plan again: a filter, a sort, a
    /// unique or an aggregation decides which rows come out only by running over all of them.
    fn slices_rerun(&self) -> bool {
        self.plan.contains_filter()
            || plan_has(&self.plan, &|node| {
                matches!(
                    node,
                    LogicalPlan::Sort { .. }
                        | LogicalPlan::Distinct { .. }
                        | LogicalPlan::Aggregate { .. }
                        | LogicalPlan::Join { .. }
                )
            })
    }

    fn schema_ref(&self) -> PyResult<arrow::datatypes::SchemaRef> {
        self.plan.schema().map_err(plan_error)
    }
}

/// Whether any node of `plan` satisfies `test`.
fn plan_has(plan: &LogicalPlan, test: &impl Fn(&LogicalPlan) -> bool) -> bool {
    test(plan) || plan.inputs().iter().any(|input| plan_has(input, test))
}

/// One operator of a profile: (operator, rows in, rows out, bytes read, bytes copied, seconds,
/// record batches read, record batches skipped by their statistics, files read, files skipped).
type OperatorRow = (
    String,
    usize,
    usize,
    usize,
    usize,
    f64,
    usize,
    usize,
    usize,
    usize,
);

/// Opens the sources of a deserialized plan as `scan()` does, each mapped file once (two
/// leaves over one file share its mapping, and the frame's origin is that mapping too).
#[derive(Default)]
struct SharedOpener {
    files: std::sync::Mutex<Vec<Arc<IpcFile>>>,
}

impl SharedOpener {
    fn ipc(
        &self,
        path: &std::path::Path,
        access: IpcAccess,
    ) -> relay_storage::Result<Arc<IpcFile>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = files
            .iter()
            .find(|file| file.path() == path && file.access() == access)
        {
            return Ok(file.clone());
        }
        let file = IpcFile::open_as(path, access)?;
        files.push(file.clone());
        Ok(file)
    }
}

impl SharedOpener {
    /// The file a frame's origin names: the one its plan opened, else the file mapped.
    fn origin(&self, path: &std::path::Path) -> relay_storage::Result<Arc<IpcFile>> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        match files.iter().find(|file| file.path() == path) {
            Some(file) => Ok(file.clone()),
            None => {
                drop(files);
                self.ipc(path, IpcAccess::Mapped)
            }
        }
    }
}

impl SourceOpener for SharedOpener {
    fn open_ipc(
        &self,
        path: &std::path::Path,
        access: IpcAccess,
    ) -> relay_storage::Result<Arc<IpcFile>> {
        self.ipc(path, access)
    }

    fn open_dataset(
        &self,
        description: &str,
        fragments: Vec<FragmentSpec>,
        partition_fields: Vec<arrow::datatypes::Field>,
        options: FormatOptions,
    ) -> relay_storage::Result<Arc<Dataset>> {
        StorageOpener.open_dataset(description, fragments, partition_fields, options)
    }
}

fn exprs_of(exprs: Vec<PyRef<'_, NativeExpr>>) -> Vec<Expr> {
    exprs.iter().map(|e| e.expr().clone()).collect()
}

#[pymethods]
impl NativeFrame {
    /// Opens what `scan` reads: `source` (a path, glob or directory, or a list of paths) as
    /// one mapped Arrow IPC file or a dataset of files (see `relay_storage::open_source`).
    /// `format` names every file's format; `schema` `[(name, dtype)]` replaces CSV / NDJSON
    /// inference; `memory_map=False` reads Arrow IPC files into memory instead of mapping them.
    #[staticmethod]
    #[pyo3(signature = (source, format=None, hive_partitioning=None, schema=None, has_header=None, separator=None, memory_map=true))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        source: SourceArg,
        format: Option<&str>,
        hive_partitioning: Option<bool>,
        schema: Option<Vec<(String, String)>>,
        has_header: Option<bool>,
        separator: Option<&str>,
        memory_map: bool,
    ) -> PyResult<Self> {
        let options = ScanOptions {
            format: format.map(convert::file_format).transpose()?,
            hive_partitioning,
            format_options: FormatOptions {
                schema: schema.map(convert::schema).transpose()?,
                has_header,
                separator: separator.map(convert::separator).transpose()?,
                ipc_access: if memory_map {
                    IpcAccess::Mapped
                } else {
                    IpcAccess::InMemory
                },
            },
        };
        let source = source.into_source();
        let opened = py
            .detach_guarded("scan", || open_source(&source, &options))?
            .into_py_result()?;
        Ok(match opened {
            OpenedSource::File(file) => NativeFrame {
                plan: Arc::new(LogicalPlan::scan(TableView::new(file.clone()))),
                origin: FrameOrigin::File(file),
            },
            OpenedSource::Dataset(dataset) => NativeFrame {
                origin: FrameOrigin::Dataset(dataset.description().into()),
                plan: Arc::new(LogicalPlan::read(DatasetView::new(dataset))),
            },
        })
    }

    /// `num_rows` rows and no columns in memory, for `attach` to add columns to; `origin`
    /// names the call that made the frame (`from_numpy`, ...).
    #[staticmethod]
    fn memory(num_rows: u64, origin: &str) -> PyResult<Self> {
        let rows = usize::try_from(num_rows).map_err(|_| {
            relay_error(
                ErrorKind::Value,
                format!("{origin}: {num_rows} rows do not fit in memory"),
            )
        })?;
        Ok(NativeFrame {
            plan: Arc::new(LogicalPlan::memory_rows(rows, origin).map_err(plan_error)?),
            origin: FrameOrigin::Memory(origin.into()),
        })
    }

    /// `(origin kind, origin, plan)`: the plan as bytes (`relay_plan::serialize`) and where the
    /// frame's rows come from ("file" and its path, "memory" and the call that made it,
    /// "dataset" and the source as the user gave it). What pickling sends.
    fn _serialize<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(&'static str, String, Bound<'py, PyBytes>)> {
        let bytes = py
            .detach_guarded("pickling a frame", || {
                relay_plan::serialize::encode(&self.plan)
            })?
            .map_err(plan_error)?;
        let kind = match &self.origin {
            FrameOrigin::File(_) => "file",
            FrameOrigin::Memory(_) => "memory",
            FrameOrigin::Dataset(_) => "dataset",
        };
        Ok((kind, self.origin(), PyBytes::new(py, &bytes)))
    }

    /// The frame `_serialize` described: its files opened again, its data in memory again.
    #[staticmethod]
    fn _deserialize(py: Python<'_>, kind: &str, origin: &str, plan: &[u8]) -> PyResult<Self> {
        let opener = SharedOpener::default();
        let plan = py
            .detach_guarded("unpickling a frame", || {
                relay_plan::serialize::decode(plan, &opener)
            })?
            .map_err(plan_error)?;
        let origin = match kind {
            "file" => {
                let path = PathBuf::from(origin);
                FrameOrigin::File(
                    py.detach_guarded("unpickling a frame", || opener.origin(&path))?
                        .into_py_result()?,
                )
            }
            "memory" => FrameOrigin::Memory(origin.into()),
            "dataset" => FrameOrigin::Dataset(origin.into()),
            other => {
                return Err(relay_error(
                    ErrorKind::Value,
                    format!("cannot unpickle a frame whose origin is {other:?}"),
                ));
            }
        };
        Ok(NativeFrame {
            plan: Arc::new(plan),
            origin,
        })
    }

    /// The mapped file; None for a frame in memory.
    #[getter]
    fn path(&self) -> Option<String> {
        self.origin.path()
    }

    /// The mapped file's path, or the call that made an in-memory frame (`from_numpy`, ...).
    #[getter]
    fn origin(&self) -> String {
        match &self.origin {
            FrameOrigin::File(file) => file.path().display().to_string(),
            FrameOrigin::Memory(origin) | FrameOrigin::Dataset(origin) => origin.to_string(),
        }
    }

    /// `[(name, type name)]` in column order.
    #[getter]
    fn schema(&self) -> PyResult<Vec<(String, String)>> {
        Ok(self
            .schema_ref()?
            .fields()
            .iter()
            .map(|f| (f.name().clone(), type_name(f.data_type())))
            .collect())
    }

    #[getter]
    fn columns(&self) -> PyResult<Vec<String>> {
        Ok(self
            .schema_ref()?
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect())
    }

    /// Rows: from the footer when no filter is involved, else by running the filters.
    fn num_rows(&self, py: Python<'_>) -> PyResult<u64> {
        match self.plan.known_num_rows() {
            Some(n) => Ok(n),
            None => Ok(run_plan(py, &self.plan)?.num_rows() as u64),
        }
    }

    fn select(&self, exprs: Vec<PyRef<'_, NativeExpr>>) -> PyResult<Self> {
        let exprs = exprs_of(exprs);
        Ok(self.with_plan(self.plan.project(exprs).map_err(plan_error)?))
    }

    fn filter(&self, predicate: PyRef<'_, NativeExpr>) -> PyResult<Self> {
        Ok(self.with_plan(
            self.plan
                .filter(predicate.expr().clone())
                .map_err(plan_error)?,
        ))
    }

    fn with_columns(&self, columns: Vec<(String, PyRef<'_, NativeExpr>)>) -> PyResult<Self> {
        let columns = columns
            .into_iter()
            .map(|(name, e)| (name, e.expr().clone()))
            .collect();
        Ok(self.with_plan(self.plan.with_columns(columns).map_err(plan_error)?))
    }

    #[pyo3(signature = (offset, length=None))]
    fn slice(&self, offset: u64, length: Option<u64>) -> Self {
        self.with_plan(self.plan.slice(offset, length.unwrap_or(u64::MAX)))
    }

    /// The rows at `indices` (negative ones count from the end), in that order: a selection.
    fn take(&self, py: Python<'_>, indices: PyReadonlyArray1<'_, i64>) -> PyResult<Self> {
        let num_rows = self.num_rows(py)?;
        let indices = indices.as_slice()?;
        Ok(self.with_plan(self.plan.take(indices, num_rows).map_err(plan_error)?))
    }

    /// `n` rows drawn from `seed`, ascending: distinct ones, or with repeats when `replace`.
    fn sample(&self, py: Python<'_>, n: u64, seed: u64, replace: bool) -> PyResult<Self> {
        let num_rows = self.num_rows(py)?;
        let plan = py
            .detach_guarded("sample", || self.plan.sample(n, seed, replace, num_rows))?
            .map_err(plan_error)?;
        Ok(self.with_plan(plan))
    }

    /// The rows ordered by `keys` `[(expr, descending, nulls_last)]`, stably; the first `k`
    /// only (a top-k, no full sort) when `k` is given.
    #[pyo3(signature = (keys, k=None))]
    fn sort(
        &self,
        keys: Vec<(PyRef<'_, NativeExpr>, bool, bool)>,
        k: Option<u64>,
    ) -> PyResult<Self> {
        let keys = keys
            .into_iter()
            .map(|(expr, descending, nulls_last)| SortKey {
                expr: expr.expr().clone(),
                descending,
                nulls_last,
            })
            .collect();
        let plan = match k {
            Some(k) => self.plan.top_k(k, keys),
            None => self.plan.sort(keys),
        };
        Ok(self.with_plan(plan.map_err(plan_error)?))
    }

    /// One row per distinct value of `subset` (all columns when None); `keep` is "first",
    /// "last" or "none".
    #[pyo3(signature = (subset, keep))]
    fn unique(&self, subset: Option<Vec<String>>, keep: &str) -> PyResult<Self> {
        let keep = convert::keep(keep)?;
        Ok(self.with_plan(self.plan.distinct(subset, keep).map_err(plan_error)?))
    }

    /// Groups of rows with equal `keys`, aggregated by `aggs` `[(function, input, name,
    /// quantile)]`, where `quantile` is `(q, interpolation)` for the function "quantile".
    #[allow(clippy::type_complexity)]
    fn aggregate(
        &self,
        keys: Vec<PyRef<'_, NativeExpr>>,
        aggs: Vec<(
            String,
            PyRef<'_, NativeExpr>,
            Option<String>,
            Option<(f64, String)>,
        )>,
    ) -> PyResult<Self> {
        let keys = exprs_of(keys);
        let aggs = aggs
            .into_iter()
            .map(|(func, input, name, quantile)| {
                let func = convert::agg_func(&func, quantile)?;
                let agg = AggExpr::new(func, input.expr().clone());
                Ok(match name {
                    Some(name) => agg.alias(name),
                    None => agg,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(self.with_plan(self.plan.aggregate(keys, aggs).map_err(plan_error)?))
    }

    /// This frame joined with `other` on `left_on[i] == right_on[i]`, the rows kept as `how`
    /// ("inner", "left", "right", "full", "semi", "anti") says; right columns whose names clash
    /// get `suffix`. The result keeps this frame's origin (file or memory).
    fn join(
        &self,
        other: PyRef<'_, NativeFrame>,
        left_on: Vec<PyRef<'_, NativeExpr>>,
        right_on: Vec<PyRef<'_, NativeExpr>>,
        how: &str,
        suffix: &str,
    ) -> PyResult<Self> {
        let how = convert::join_type(how)?;
        let plan = self
            .plan
            .join(
                &other.plan,
                exprs_of(left_on),
                exprs_of(right_on),
                how,
                suffix,
            )
            .map_err(plan_error)?;
        Ok(self.with_plan(plan))
    }

    /// The rows of `frames` one after the other, held in memory: each frame is run once and
    /// collected (arrays that are views of a mapped file stay views). Every frame must have
    /// the first one's column names and types, in order.
    #[staticmethod]
    fn concat(py: Python<'_>, frames: Vec<PyRef<'_, NativeFrame>>) -> PyResult<Self> {
        let Some(first) = frames.first() else {
            return Err(relay_error(
                ErrorKind::Value,
                "concat() needs at least one frame",
            ));
        };
        let schema = first.schema_ref()?;
        for (position, frame) in frames.iter().enumerate().skip(1) {
            let other = frame.schema_ref()?;
            if let Some(problem) = schema_mismatch(&schema, &other) {
                return Err(relay_error(
                    ErrorKind::Type,
                    format!("concat(): frame {position} does not match frame 0: {problem}"),
                ));
            }
        }
        let mut batches = Vec::new();
        for frame in &frames {
            let view = run_plan(py, &frame.plan)?;
            batches.extend(
                py.detach_guarded("concat (collecting the frames)", || collect_batches(&view))?
                    .map_err(exec_error)?,
            );
        }
        let batches = batches
            .into_iter()
            .map(|batch| batch.with_schema(schema.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| relay_error(ErrorKind::Value, format!("concat(): {error}")))?;
        Ok(NativeFrame {
            plan: Arc::new(LogicalPlan::Memory {
                schema,
                batches: Arc::new(batches),
                origin: Some("concat".into()),
            }),
            origin: FrameOrigin::Memory("concat".into()),
        })
    }

    /// Runs the plan once and holds the result in memory (see `nodes::collect_batches`).
    fn collect(&self, py: Python<'_>) -> PyResult<Self> {
        let view = run_plan(py, &self.plan)?;
        let batches = py
            .detach_guarded("collect", || collect_batches(&view))?
            .map_err(exec_error)?;
        Ok(self.with_plan(LogicalPlan::memory(view.schema.clone(), batches)))
    }

    /// `(rows, shown)`: the number of rows, and in memory the first and the last `each_end`
    /// rows (every row when there are at most twice that many): what printing the frame shows.
    /// A frame whose slices narrow what is read (no filter, sort, unique, aggregation or join)
    /// runs only the two slices; any other runs its plan once, and only the rows shown are
    /// gathered from the result.
    fn _preview(&self, py: Python<'_>, each_end: u64) -> PyResult<(u64, Self)> {
        let known_rows = (!self.slices_rerun())
            .then(|| self.plan.known_num_rows())
            .flatten();
        if let Some(rows) = known_rows
            && rows > each_end.saturating_mul(2)
        {
            let head = run_plan(py, &Arc::new(self.plan.slice(0, each_end)))?;
            let tail = run_plan(py, &Arc::new(self.plan.slice(rows - each_end, each_end)))?;
            let schema = head.schema.clone();
            let batches = py
                .detach_guarded("_preview", || -> Result<_, ExecError> {
                    let mut batches = collect_batches(&head)?;
                    batches.extend(collect_batches(&tail)?);
                    Ok(batches)
                })?
                .map_err(exec_error)?;
            return Ok((rows, self.with_plan(LogicalPlan::memory(schema, batches))));
        }
        let view = run_plan(py, &self.plan)?;
        let rows = view.num_rows();
        let each_end = usize::try_from(each_end).unwrap_or(usize::MAX);
        let schema = view.schema.clone();
        let batches = py
            .detach_guarded("_preview", || -> Result<_, ExecError> {
                if rows <= each_end.saturating_mul(2) {
                    return collect_batches(&view);
                }
                let mut batches = collect_batches(&view.clone().slice(0, each_end))?;
                batches.extend(collect_batches(&view.slice(rows - each_end, each_end))?);
                Ok(batches)
            })?
            .map_err(exec_error)?;
        Ok((
            rows as u64,
            self.with_plan(LogicalPlan::memory(schema, batches)),
        ))
    }

    /// Columns `[(name, dtype name)]` with their bits read as the dtype (same width).
    fn view(&self, columns: Vec<(String, String)>) -> PyResult<Self> {
        let columns = columns
            .into_iter()
            .map(|(name, dtype)| Ok((name, convert::dtype(&dtype)?)))
            .collect::<PyResult<Vec<(String, DataType)>>>()?;
        Ok(self.with_plan(self.plan.reinterpret(columns).map_err(plan_error)?))
    }

    /// External arrays `[(name, array, why the caller copied it)]` as columns: referenced where
    /// their memory has the Arrow layout. A frame whose rows are not its file's or memory's in
    /// order (filtered, taken, computed) is collected first.
    fn attach(
        &self,
        py: Python<'_>,
        columns: Vec<(String, Bound<'_, PyAny>, Option<String>)>,
    ) -> PyResult<Self> {
        let base = if self.plan.is_row_aligned() {
            self.plan.clone()
        } else {
            self.collect(py)?.plan
        };
        let attached = columns
            .into_iter()
            .map(|(name, value, copied)| attached_column(py, name, &value, copied))
            .collect::<PyResult<Vec<_>>>()?;
        let plan = base.attach_columns(attached).map_err(plan_error)?;
        Ok(self.with_plan(plan))
    }

    /// Whether `column` was taken from this frame (so it is row-aligned with it by construction).
    fn _owns_column(&self, column: PyRef<'_, ColumnBase>) -> PyResult<bool> {
        Ok(match &column.source {
            ColumnSource::Plan { plan, .. } => {
                matches!(plan.as_ref(), LogicalPlan::Project { input, .. } if Arc::ptr_eq(input, &self.plan))
            }
            ColumnSource::File(view) => match self.plain_scan() {
                // The same file over the same rows: the first decoded chunks are the same bytes.
                Some(table)
                    if Arc::ptr_eq(table.file(), view.file()) && table.num_rows() == view.len() =>
                {
                    match table.column(view.name()) {
                        Ok(own) => {
                            let (own, other) = (
                                own.chunks().into_py_result()?,
                                view.chunks().into_py_result()?,
                            );
                            own.len() == other.len()
                                && own.first().zip(other.first()).is_some_and(|(a, b)| {
                                    a.array.to_data().ptr_eq(&b.array.to_data())
                                })
                        }
                        Err(_) => false,
                    }
                }
                _ => false,
            },
        })
    }

    /// Whether running this frame runs a filter (then slicing it would run the filter again).
    fn _contains_filter(&self) -> bool {
        self.plan.contains_filter()
    }

    /// Whether each slice of this frame would run the whole plan again (see `slices_rerun`).
    fn _slices_rerun(&self) -> bool {
        self.slices_rerun()
    }

    fn column(&self, name: &str) -> PyResult<ColumnBase> {
        if let Some(table) = self.plain_scan() {
            return Ok(ColumnBase {
                source: ColumnSource::File(table.column(name).into_py_result()?),
            });
        }
        let schema = self.schema_ref()?;
        let field = match schema.field_with_name(name) {
            Ok(field) => Arc::new(field.clone()),
            Err(_) => {
                return Err(plan_error(PlanError::ColumnNotFound {
                    name: name.to_owned(),
                    available: schema
                        .fields()
                        .iter()
                        .map(|f| format!("{:?}", f.name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                }));
            }
        };
        let plan = self
            .plan
            .project(vec![Expr::col(name)])
            .map_err(plan_error)?;
        Ok(ColumnBase {
            source: ColumnSource::Plan {
                plan: Arc::new(plan),
                field,
                origin: self.origin.clone(),
            },
        })
    }

    /// Several columns gathered into one 2-D array in `order` ("C" or "F"), or None when they
    /// are not all null-free fixed-width scalars of one dtype.
    fn _matrix<'py>(&self, py: Python<'py>, order: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let order = convert::matrix_order(order)?;
        let view = run_plan(py, &self.plan)?;
        let indices: Vec<usize> = (0..view.schema.fields().len()).collect();
        let dense = py
            .detach_guarded("_matrix", || gather_fixed_width(&view, &indices, order))?
            .map_err(|reason| {
                relay_error(
                    ErrorKind::Type,
                    format!("{}: {reason}", self.origin.describe()),
                )
            })?;
        match dense {
            None => Ok(None),
            Some(dense) => {
                let array = export::numpy::dense_to_numpy(py, dense)?;
                Ok(Some(if order == MemoryLayout::F && indices.len() > 1 {
                    array.getattr("T")?
                } else {
                    array
                }))
            }
        }
    }

    /// The logical plan, the optimized plan, and for each output column whether exporting it
    /// will be a view of the file or a copy, and why. Decided from the optimized plan and the
    /// file's metadata (record batch headers, decoded as views): nothing is filtered, gathered
    /// or computed.
    fn explain(&self, py: Python<'_>) -> PyResult<String> {
        let (optimized, trace) = py
            .detach_guarded("explain", || {
                Optimizer::default().optimize(self.plan.clone())
            })?
            .map_err(plan_error)?;
        let mut out = String::new();
        out.push_str("logical plan:\n");
        out.push_str(&indent(&self.plan.display_indent()));
        out.push_str("optimized plan:\n");
        out.push_str(&indent(&optimized.display_indent()));
        if !trace.is_empty() {
            let rules: Vec<&str> = trace.iter().map(|(rule, _)| *rule).collect();
            out.push_str(&format!(
                "  (rules that changed it: {})\n",
                rules.join(", ")
            ));
        }
        out.push_str("columns:\n");
        let schema = self.schema_ref()?;
        let mapped = self.origin.mapped_range();
        for field in schema.fields() {
            let verdict = py.detach_guarded("explain", || {
                explain_column(&optimized, field.name(), &mapped)
            })?;
            out.push_str(&format!(
                "  {} ({}): {verdict}\n",
                field.name(),
                type_name(field.data_type())
            ));
        }
        Ok(out)
    }

    /// Runs the plan and returns, per operator, (operator, rows in, rows out, bytes read,
    /// bytes copied, seconds, record batches read, record batches skipped, files read, files
    /// skipped).
    fn _profile(&self, py: Python<'_>) -> PyResult<Vec<OperatorRow>> {
        let profile = Profile::default();
        run_plan_profiled(py, &self.plan, &profile)?;
        Ok(profile
            .operators()
            .into_iter()
            .map(|(name, s)| {
                let seconds = s.wall.as_secs_f64();
                (
                    name,
                    s.rows_in,
                    s.rows_out,
                    s.bytes_read,
                    s.bytes_copied,
                    seconds,
                    s.batches_read,
                    s.batches_skipped,
                    s.files_read,
                    s.files_skipped,
                )
            })
            .collect())
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        export::arrow::table_schema_capsule(py, &self.schema_ref()?, &self.origin.describe())
    }

    /// The frame as a stream of record batches; a plain scan's batches share the mapping.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema; // the spec lets producers ignore it; the data keeps its types
        let view = run_plan(py, &self.plan)?;
        let batches = py
            .detach_guarded("__arrow_c_stream__", || view.record_batches())?
            .map_err(exec_error)?;
        export::arrow::stream_capsule(py, view.schema.clone(), batches, &self.origin.describe())
    }
}

/// How `other`'s columns differ from `schema`'s, naming the first column that differs; None
/// when they have the same names and types in the same order.
fn schema_mismatch(
    schema: &arrow::datatypes::Schema,
    other: &arrow::datatypes::Schema,
) -> Option<String> {
    for (position, field) in schema.fields().iter().enumerate() {
        match other.fields().get(position) {
            None => {
                return Some(format!(
                    "it has no column {:?} ({} columns, not {})",
                    field.name(),
                    other.fields().len(),
                    schema.fields().len()
                ));
            }
            Some(theirs) if theirs.name() != field.name() => {
                return Some(format!(
                    "it has column {:?} where frame 0 has {:?}",
                    theirs.name(),
                    field.name()
                ));
            }
            Some(theirs) if theirs.data_type() != field.data_type() => {
                return Some(format!(
                    "its column {:?} is {}, not {}",
                    field.name(),
                    type_name(theirs.data_type()),
                    type_name(field.data_type())
                ));
            }
            Some(_) => {}
        }
    }
    other
        .fields()
        .get(schema.fields().len())
        .map(|extra| format!("it has an extra column {:?}", extra.name()))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
