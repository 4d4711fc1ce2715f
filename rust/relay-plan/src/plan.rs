//! Logical plans: what a Frame computes, as a tree whose leaves are mapped files.
//!
//! Builders check types as the plan grows (`filter`, `select`, ...), so a wrong expression
//! fails when the user writes it, not when data flows.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use relay_storage::{TableView, type_name};

use crate::error::{PlanError, Result};
use crate::expr::Expr;
use crate::resolve::resolve;

#[derive(Debug, Clone)]
pub enum LogicalPlan {
    /// Columns of a mapped file over a range of rows. `filters` are predicates pushed into the
    /// scan: evaluated as rows are produced, and used to skip record batches by their min/max.
    Scan { table: TableView, filters: Vec<Expr> },
    /// Rows where `predicate` is true (null counts as false).
    Filter { input: Arc<LogicalPlan>, predicate: Expr },
    /// One output column per expression, named by `Expr::output_name`.
    Project { input: Arc<LogicalPlan>, exprs: Vec<Expr> },
    /// Rows `offset .. offset + length` of the input.
    Slice { input: Arc<LogicalPlan>, offset: u64, length: u64 },
}

impl LogicalPlan {
    pub fn scan(table: TableView) -> Self {
        LogicalPlan::Scan { table, filters: vec![] }
    }

    /// The output schema. Plans are built type-checked, so this only fails on a plan that
    /// was assembled by hand wrongly.
    pub fn schema(&self) -> Result<SchemaRef> {
        match self {
            LogicalPlan::Scan { table, .. } => Ok(table.schema()),
            LogicalPlan::Filter { input, .. } | LogicalPlan::Slice { input, .. } => input.schema(),
            LogicalPlan::Project { input, exprs } => {
                let input_schema = input.schema()?;
                let fields = exprs
                    .iter()
                    .map(|expr| {
                        let resolved = resolve(expr.clone(), &input_schema)?;
                        Ok(Field::new(expr.output_name(), resolved.data_type, true))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Arc::new(Schema::new(fields)))
            }
        }
    }

    pub fn inputs(&self) -> Vec<&Arc<LogicalPlan>> {
        match self {
            LogicalPlan::Scan { .. } => vec![],
            LogicalPlan::Filter { input, .. } | LogicalPlan::Project { input, .. } | LogicalPlan::Slice { input, .. } => {
                vec![input]
            }
        }
    }

    /// Rows this plan yields when known without reading data (no filter anywhere below).
    pub fn known_num_rows(&self) -> Option<u64> {
        match self {
            LogicalPlan::Scan { table, filters } => filters.is_empty().then(|| table.num_rows()),
            LogicalPlan::Filter { .. } => None,
            LogicalPlan::Project { input, .. } => input.known_num_rows(),
            LogicalPlan::Slice { input, offset, length } => {
                input.known_num_rows().map(|n| n.saturating_sub(*offset).min(*length))
            }
        }
    }

    // -- builders: each checks its expressions against the input schema ------------------

    pub fn filter(self: &Arc<Self>, predicate: Expr) -> Result<LogicalPlan> {
        let schema = self.schema()?;
        let resolved = resolve(predicate, &schema)?;
        if !matches!(resolved.data_type, DataType::Boolean | DataType::Null) {
            return Err(PlanError::Type(format!(
                "filter() needs a boolean expression, got {} of type {}",
                resolved.expr,
                type_name(&resolved.data_type)
            )));
        }
        Ok(LogicalPlan::Filter {
            input: self.clone(),
            predicate: resolved.expr,
        })
    }

    pub fn project(self: &Arc<Self>, exprs: Vec<Expr>) -> Result<LogicalPlan> {
        let schema = self.schema()?;
        let mut names = HashSet::new();
        let mut resolved_exprs = Vec::with_capacity(exprs.len());
        for expr in exprs {
            let name = expr.output_name();
            if !names.insert(name.clone()) {
                return Err(PlanError::Invalid(format!(
                    "the output column {name:?} appears twice; give one of them another name with .alias()"
                )));
            }
            let resolved = resolve(expr, &schema)?.expr;
            // Resolution may wrap a column in a cast; keep the name the user gave it.
            let resolved = if resolved.output_name() == name { resolved } else { resolved.alias(name) };
            resolved_exprs.push(resolved);
        }
        Ok(LogicalPlan::Project {
            input: self.clone(),
            exprs: resolved_exprs,
        })
    }

    /// All input columns, with `name` replaced in place (or appended) by `expr`.
    pub fn with_columns(self: &Arc<Self>, columns: Vec<(String, Expr)>) -> Result<LogicalPlan> {
        let schema = self.schema()?;
        let mut exprs: Vec<Expr> = schema.fields().iter().map(|f| Expr::col(f.name())).collect();
        for (name, expr) in columns {
            let expr = expr.alias(name.clone());
            match schema.index_of(&name) {
                Ok(index) => exprs[index] = expr,
                Err(_) => match exprs.iter().position(|e| e.output_name() == name) {
                    Some(index) => exprs[index] = expr,
                    None => exprs.push(expr),
                },
            }
        }
        self.project(exprs)
    }

    pub fn slice(self: &Arc<Self>, offset: u64, length: u64) -> LogicalPlan {
        match self.as_ref() {
            // A slice of an unfiltered scan narrows the scan itself: still one contiguous view.
            LogicalPlan::Scan { table, filters } if filters.is_empty() => LogicalPlan::Scan {
                table: table.slice(offset, length),
                filters: vec![],
            },
            LogicalPlan::Slice {
                input,
                offset: inner_offset,
                length: inner_length,
            } => {
                let start = offset.min(*inner_length);
                LogicalPlan::Slice {
                    input: input.clone(),
                    offset: inner_offset + start,
                    length: length.min(inner_length - start),
                }
            }
            _ => LogicalPlan::Slice {
                input: self.clone(),
                offset,
                length,
            },
        }
    }

    /// An indented tree, one node a line.
    pub fn display_indent(&self) -> String {
        let mut out = String::new();
        self.write_indent(&mut out, 0);
        out
    }

    fn write_indent(&self, out: &mut String, depth: usize) {
        out.push_str(&"  ".repeat(depth));
        out.push_str(&self.to_string());
        out.push('\n');
        for input in self.inputs() {
            input.write_indent(out, depth + 1);
        }
    }
}

impl fmt::Display for LogicalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogicalPlan::Scan { table, filters } => {
                let rows = table.rows();
                write!(
                    f,
                    "SCAN {} columns=[{}] rows={}..{}",
                    table.file().path().display(),
                    table.column_names().join(", "),
                    rows.offset,
                    rows.offset + rows.length
                )?;
                if !filters.is_empty() {
                    let filters: Vec<String> = filters.iter().map(ToString::to_string).collect();
                    write!(f, " filters=[{}]", filters.join(", "))?;
                }
                Ok(())
            }
            LogicalPlan::Filter { predicate, .. } => write!(f, "FILTER {predicate}"),
            LogicalPlan::Project { exprs, .. } => {
                let exprs: Vec<String> = exprs.iter().map(ToString::to_string).collect();
                write!(f, "SELECT [{}]", exprs.join(", "))
            }
            LogicalPlan::Slice { offset, length, .. } => write!(f, "SLICE offset={offset} length={length}"),
        }
    }
}
