//! `relay_ml._relay.NativeFrame`: a lazy plan over a mapped file.
//! The public class is `relay_ml.Frame`, a Python wrapper that carries the docs.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use relay_exec::execute::{ExecError, ViewSet, execute};
use relay_exec::gather::{Order, gather_fixed_width};
use relay_exec::profile::Profile;
use relay_plan::optimizer::Optimizer;
use relay_plan::{Expr, LogicalPlan, PlanError};
use relay_storage::{IpcFile, TableView, type_name};

use crate::column::{ColumnBase, ColumnSource};
use crate::errors::{ErrorKind, IntoPyResult, relay_error, storage_error};
use crate::export;
use crate::expr::NativeExpr;

pub fn plan_error(error: PlanError) -> PyErr {
    match error {
        PlanError::Type(message) => relay_error(ErrorKind::Type, message),
        PlanError::ColumnNotFound { .. } => relay_error(ErrorKind::ColumnNotFound, error.to_string()),
        PlanError::Invalid(message) => relay_error(ErrorKind::Value, message),
        PlanError::Storage(error) => storage_error(error),
        PlanError::RuleBrokeSchema { .. } => relay_error(ErrorKind::Relay, error.to_string()),
    }
}

pub fn exec_error(error: ExecError) -> PyErr {
    match error {
        ExecError::Storage(error) => storage_error(error),
        ExecError::Plan(error) => plan_error(error),
        ExecError::Arrow(error) => relay_error(ErrorKind::Value, format!("evaluation failed: {error}")),
    }
}

/// Optimizes and executes `plan` with the GIL released.
pub fn run_plan(py: Python<'_>, plan: &Arc<LogicalPlan>) -> PyResult<ViewSet> {
    run_plan_profiled(py, plan, &Profile::default())
}

fn run_plan_profiled(py: Python<'_>, plan: &Arc<LogicalPlan>, profile: &Profile) -> PyResult<ViewSet> {
    py.detach(|| {
        let (optimized, _) = Optimizer::default().optimize(plan.clone())?;
        Ok::<_, ExecError>(execute(&optimized, profile)?)
    })
    .map_err(exec_error)
}

#[pyclass(frozen, module = "relay_ml._relay")]
pub struct NativeFrame {
    plan: Arc<LogicalPlan>,
    /// The scanned file (the plan's leaf).
    file: Arc<IpcFile>,
}

impl NativeFrame {
    fn with_plan(&self, plan: LogicalPlan) -> Self {
        NativeFrame {
            plan: Arc::new(plan),
            file: self.file.clone(),
        }
    }

    /// The scan's view when this frame is a plain scan (columns and a row range, no filter).
    fn plain_scan(&self) -> Option<&TableView> {
        match self.plan.as_ref() {
            LogicalPlan::Scan { table, filters } if filters.is_empty() => Some(table),
            _ => None,
        }
    }

    fn schema_ref(&self) -> PyResult<arrow::datatypes::SchemaRef> {
        self.plan.schema().map_err(plan_error)
    }
}

fn exprs_of(exprs: Vec<PyRef<'_, NativeExpr>>) -> Vec<Expr> {
    exprs.iter().map(|e| e.expr.clone()).collect()
}

#[pymethods]
impl NativeFrame {
    /// Maps an Arrow IPC file and reads its footer; no column data is read.
    #[staticmethod]
    fn scan(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let file = py.detach(|| IpcFile::open(&path)).into_py_result()?;
        Ok(NativeFrame {
            plan: Arc::new(LogicalPlan::scan(TableView::new(file.clone()))),
            file,
        })
    }

    #[getter]
    fn path(&self) -> String {
        self.file.path().display().to_string()
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
        Ok(self.schema_ref()?.fields().iter().map(|f| f.name().clone()).collect())
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
        // Plain names over a plain scan narrow the scan: the columns stay decodable views.
        if let Some(table) = self.plain_scan() {
            let names: Option<Vec<String>> = exprs
                .iter()
                .map(|e| match e {
                    Expr::Column(name) => Some(name.clone()),
                    _ => None,
                })
                .collect();
            if let Some(names) = names {
                return Ok(self.with_plan(LogicalPlan::scan(table.select(&names).into_py_result()?)));
            }
        }
        Ok(self.with_plan(self.plan.project(exprs).map_err(plan_error)?))
    }

    fn filter(&self, predicate: PyRef<'_, NativeExpr>) -> PyResult<Self> {
        Ok(self.with_plan(self.plan.filter(predicate.expr.clone()).map_err(plan_error)?))
    }

    fn with_columns(&self, columns: Vec<(String, PyRef<'_, NativeExpr>)>) -> PyResult<Self> {
        let columns = columns.into_iter().map(|(name, e)| (name, e.expr.clone())).collect();
        Ok(self.with_plan(self.plan.with_columns(columns).map_err(plan_error)?))
    }

    #[pyo3(signature = (offset, length=None))]
    fn slice(&self, offset: u64, length: Option<u64>) -> Self {
        self.with_plan(self.plan.slice(offset, length.unwrap_or(u64::MAX)))
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
                    available: schema.fields().iter().map(|f| format!("{:?}", f.name())).collect::<Vec<_>>().join(", "),
                }));
            }
        };
        let plan = self.plan.project(vec![Expr::col(name)]).map_err(plan_error)?;
        Ok(ColumnBase {
            source: ColumnSource::Plan {
                plan: Arc::new(plan),
                field,
                file: self.file.clone(),
            },
        })
    }

    /// Several columns gathered into one 2-D array in `order` ("C" or "F"), or None when they
    /// are not all null-free fixed-width scalars of one dtype.
    fn _matrix<'py>(&self, py: Python<'py>, order: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        let order = match order {
            "C" => Order::C,
            "F" => Order::F,
            other => return Err(relay_error(ErrorKind::Value, format!("order must be \"C\" or \"F\", got {other:?}"))),
        };
        let view = run_plan(py, &self.plan)?;
        let indices: Vec<usize> = (0..view.schema.fields().len()).collect();
        let dense = py
            .detach(|| gather_fixed_width(&view, &indices, order))
            .map_err(|reason| relay_error(ErrorKind::Type, format!("{}: {reason}", self.path())))?;
        match dense {
            None => Ok(None),
            Some(dense) => {
                let array = export::numpy::dense_to_numpy(py, dense)?;
                Ok(Some(if order == Order::F && indices.len() > 1 { array.getattr("T")? } else { array }))
            }
        }
    }

    /// The logical plan, the optimized plan, and for each output column whether exporting it
    /// will be a view of the file or a copy, and why.
    fn explain(&self, py: Python<'_>) -> PyResult<String> {
        let (optimized, trace) = Optimizer::default().optimize(self.plan.clone()).map_err(plan_error)?;
        let mut out = String::new();
        out.push_str("logical plan:\n");
        out.push_str(&indent(&self.plan.display_indent()));
        out.push_str("optimized plan:\n");
        out.push_str(&indent(&optimized.display_indent()));
        if !trace.is_empty() {
            let rules: Vec<&str> = trace.iter().map(|(rule, _)| *rule).collect();
            out.push_str(&format!("  (rules that changed it: {})\n", rules.join(", ")));
        }
        out.push_str("columns:\n");
        let schema = self.schema_ref()?;
        for field in schema.fields() {
            let column = self.column(field.name())?;
            let verdict = match column.copy_reason(py)? {
                None => "view of the mapped file".to_string(),
                Some(reason) => format!("copy: {reason}"),
            };
            out.push_str(&format!("  {} ({}): {verdict}\n", field.name(), type_name(field.data_type())));
        }
        Ok(out)
    }

    /// Runs the plan and returns, per operator, (operator, rows in, rows out, bytes read,
    /// bytes copied, seconds).
    fn _profile(&self, py: Python<'_>) -> PyResult<Vec<(String, usize, usize, usize, usize, f64)>> {
        let profile = Profile::default();
        run_plan_profiled(py, &self.plan, &profile)?;
        Ok(profile
            .operators()
            .into_iter()
            .map(|(name, s)| (name, s.rows_in, s.rows_out, s.bytes_read, s.bytes_copied, s.wall.as_secs_f64()))
            .collect())
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        export::arrow::table_schema_capsule(py, &self.schema_ref()?, &self.path())
    }

    /// The frame as a stream of record batches; a plain scan's batches share the mapping.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(&self, py: Python<'py>, requested_schema: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema; // the spec lets producers ignore it; the data keeps its types
        let view = run_plan(py, &self.plan)?;
        let batches = py.detach(|| view.record_batches()).map_err(exec_error)?;
        export::arrow::stream_capsule(py, view.schema.clone(), batches, &self.path())
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
