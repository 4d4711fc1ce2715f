//! `relay_ml._relay.NativeExpr`: expressions, built from Python values.
//! The public class is `relay_ml.Expr`, a Python wrapper that carries the docs and operators.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray, UInt64Array, new_null_array,
};
use arrow::datatypes::DataType;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDate, PyDateTime, PyFloat, PyInt, PyString};
use relay_plan::{DepthCheckedExpr, Expr, Literal, StringMatch};

use crate::convert;
use crate::errors::{ErrorKind, relay_error};
use crate::frame::plan_error;

#[pyclass(frozen, module = "relay_ml._relay")]
pub struct NativeExpr {
    checked: DepthCheckedExpr,
}

impl NativeExpr {
    pub fn expr(&self) -> &Expr {
        self.checked.expr()
    }
}

fn leaf(expr: Expr) -> NativeExpr {
    NativeExpr {
        checked: DepthCheckedExpr::leaf(expr),
    }
}

/// The node `build` makes of `children`, refused (a `RelayValueError` naming the limit) when
/// it would be deeper than expressions may be.
fn node<const N: usize>(
    children: [&NativeExpr; N],
    build: impl FnOnce([Expr; N]) -> Expr,
) -> PyResult<NativeExpr> {
    DepthCheckedExpr::node(children.map(|c| &c.checked), build)
        .map(|checked| NativeExpr { checked })
        .map_err(plan_error)
}

/// A Python value as a literal array of `len` values (1 for a scalar).
fn values_to_array(py: Python<'_>, values: &[Bound<'_, PyAny>], what: &str) -> PyResult<ArrayRef> {
    let first = values.iter().find(|v| !v.is_none());
    let Some(first) = first else {
        return Ok(new_null_array(&DataType::Null, values.len()));
    };
    let bad = |v: &Bound<'_, PyAny>| {
        relay_error(
            ErrorKind::Type,
            format!(
                "{what}: cannot mix {} and {} values",
                first
                    .get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                v.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ),
        )
    };
    // Order matters: bool is an int subclass, datetime a date subclass.
    if first.is_instance_of::<PyBool>() {
        let out: PyResult<BooleanArray> = values
            .iter()
            .map(|v| {
                if v.is_none() {
                    Ok(None)
                } else if v.is_instance_of::<PyBool>() {
                    Ok(Some(v.extract::<bool>()?))
                } else {
                    Err(bad(v))
                }
            })
            .collect();
        return Ok(Arc::new(out?));
    }
    if first.is_instance_of::<PyInt>() || is_numpy_integer(first) {
        let is_int = |v: &Bound<'_, PyAny>| {
            v.is_none() || v.is_instance_of::<PyInt>() || is_numpy_integer(v)
        };
        if values.iter().all(is_int) {
            // int64, or uint64 for values above 2**63 - 1 (as Polars takes them, so that
            // `col("u64") > 2**64 - 2` compares exactly); beyond that there is no type.
            if let Ok(ints) = values
                .iter()
                .map(|v| {
                    if v.is_none() {
                        Ok(None)
                    } else {
                        v.extract::<i64>().map(Some)
                    }
                })
                .collect::<PyResult<Int64Array>>()
            {
                return Ok(Arc::new(ints));
            }
            let unsigned: PyResult<UInt64Array> = values
                .iter()
                .map(|v| {
                    if v.is_none() {
                        Ok(None)
                    } else {
                        v.extract::<u64>().map(Some)
                    }
                })
                .collect();
            return unsigned.map(|u| Arc::new(u) as ArrayRef).map_err(|_| {
                let too_big = values
                    .iter()
                    .find(|v| !v.is_none() && v.extract::<i64>().is_err())
                    .unwrap_or(first);
                relay_error(
                    ErrorKind::Value,
                    format!("{what}: {too_big} does not fit in a 64-bit integer (int64 or uint64)"),
                )
            });
        }
        // Mixed ints and floats become floats (as Python would compare them).
    }
    if first.is_instance_of::<PyFloat>()
        || first.is_instance_of::<PyInt>()
        || is_numpy_number(first)
    {
        let out: PyResult<Float64Array> = values
            .iter()
            .map(|v| {
                if v.is_none() {
                    Ok(None)
                } else {
                    v.extract::<f64>().map(Some).map_err(|_| bad(v))
                }
            })
            .collect();
        return Ok(Arc::new(out?));
    }
    if first.is_instance_of::<PyString>() {
        let out: PyResult<StringArray> = values
            .iter()
            .map(|v| {
                if v.is_none() {
                    Ok(None)
                } else {
                    v.extract::<String>().map(Some).map_err(|_| bad(v))
                }
            })
            .collect();
        return Ok(Arc::new(out?));
    }
    if first.is_instance_of::<PyBytes>() {
        let owned: PyResult<Vec<Option<Vec<u8>>>> = values
            .iter()
            .map(|v| {
                if v.is_none() {
                    Ok(None)
                } else {
                    v.extract::<Vec<u8>>().map(Some).map_err(|_| bad(v))
                }
            })
            .collect();
        let owned = owned?;
        return Ok(Arc::new(BinaryArray::from_iter(
            owned.iter().map(|v| v.as_deref()),
        )));
    }
    if first.is_instance_of::<PyDateTime>() {
        // Microseconds since the epoch: naive datetimes are wall time (no zone), aware ones UTC.
        let datetime = py.import("datetime")?;
        let utc = datetime.getattr("timezone")?.getattr("utc")?;
        let naive_epoch = datetime.getattr("datetime")?.call1((1970, 1, 1))?;
        let aware_epoch = naive_epoch.call_method1("replace", ())?.call_method(
            "replace",
            (),
            Some(&{
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("tzinfo", &utc)?;
                kwargs
            }),
        )?;
        let microsecond = datetime.getattr("timedelta")?.call(
            (),
            Some(&{
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("microseconds", 1)?;
                kwargs
            }),
        )?;
        let aware = !first.getattr("tzinfo")?.is_none();
        let out: PyResult<Vec<Option<i64>>> = values
            .iter()
            .map(|v| {
                if v.is_none() {
                    return Ok(None);
                }
                if !v.is_instance_of::<PyDateTime>() || v.getattr("tzinfo")?.is_none() == aware {
                    return Err(bad(v));
                }
                let epoch = if aware { &aware_epoch } else { &naive_epoch };
                let delta = v.call_method1("__sub__", (epoch,))?;
                delta
                    .call_method1("__floordiv__", (&microsecond,))?
                    .extract()
                    .map(Some)
            })
            .collect();
        let array = TimestampMicrosecondArray::from(out?);
        return Ok(Arc::new(if aware {
            array.with_timezone("UTC")
        } else {
            array
        }));
    }
    if first.is_instance_of::<PyDate>() {
        let out: PyResult<Date32Array> = values
            .iter()
            .map(|v| {
                if v.is_none() {
                    return Ok(None);
                }
                if !v.is_instance_of::<PyDate>() || v.is_instance_of::<PyDateTime>() {
                    return Err(bad(v));
                }
                let ordinal: i64 = v.call_method0("toordinal")?.extract()?;
                Ok(Some((ordinal - 719_163) as i32)) // 719163 = date(1970, 1, 1).toordinal()
            })
            .collect();
        return Ok(Arc::new(out?));
    }
    Err(relay_error(
        ErrorKind::Type,
        format!(
            "{what}: a literal must be a bool, int, float, str, bytes, date, datetime or None, got {}",
            first
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ),
    ))
}

fn is_numpy_integer(value: &Bound<'_, PyAny>) -> bool {
    numpy_kind(value).is_some_and(|k| k == "i" || k == "u")
}

fn is_numpy_number(value: &Bound<'_, PyAny>) -> bool {
    numpy_kind(value).is_some_and(|k| k == "i" || k == "u" || k == "f")
}

/// The NumPy dtype kind of a NumPy scalar, without importing NumPy.
fn numpy_kind(value: &Bound<'_, PyAny>) -> Option<String> {
    let module = value.get_type().module().ok()?;
    if !module.to_str().ok()?.starts_with("numpy") {
        return None;
    }
    value
        .getattr("dtype")
        .ok()?
        .getattr("kind")
        .ok()?
        .extract()
        .ok()
}

#[pymethods]
impl NativeExpr {
    #[staticmethod]
    fn col(name: String) -> Self {
        leaf(Expr::col(name))
    }

    #[staticmethod]
    fn lit(py: Python<'_>, value: Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(leaf(Expr::Literal(Literal(values_to_array(
            py,
            &[value],
            "lit()",
        )?))))
    }

    fn binary(&self, op: &str, right: PyRef<'_, NativeExpr>) -> PyResult<Self> {
        let op = convert::binary_op(op)?;
        node([self, &right], |[left, right]| left.binary(op, right))
    }

    fn unary(&self, op: &str) -> PyResult<Self> {
        let op = convert::unary_op(op)?;
        node([self], |[input]| input.unary(op))
    }

    fn string_match(&self, kind: &str, pattern: String) -> PyResult<Self> {
        let kind = match kind {
            "starts_with" => StringMatch::StartsWith,
            "ends_with" => StringMatch::EndsWith,
            "contains" => StringMatch::Contains,
            other => {
                return Err(relay_error(
                    ErrorKind::Value,
                    format!("unknown string match {other:?}"),
                ));
            }
        };
        node([self], |[input]| Expr::StringMatch {
            kind,
            input: Arc::new(input),
            pattern,
        })
    }

    fn is_in(&self, py: Python<'_>, values: Vec<Bound<'_, PyAny>>) -> PyResult<Self> {
        let values = values_to_array(py, &values, "is_in()")?;
        node([self], |[input]| Expr::IsIn {
            input: Arc::new(input),
            values: Literal(values),
        })
    }

    fn fill_null(&self, value: PyRef<'_, NativeExpr>) -> PyResult<Self> {
        node([self, &value], |[input, value]| Expr::FillNull {
            input: Arc::new(input),
            value: Arc::new(value),
        })
    }

    fn cast(&self, dtype: &str) -> PyResult<Self> {
        let to = convert::dtype(dtype)?;
        node([self], |[input]| Expr::Cast {
            input: Arc::new(input),
            to,
        })
    }

    fn alias(&self, name: String) -> PyResult<Self> {
        node([self], |[input]| input.alias(name))
    }

    #[staticmethod]
    fn case(
        branches: Vec<(PyRef<'_, NativeExpr>, PyRef<'_, NativeExpr>)>,
        otherwise: PyRef<'_, NativeExpr>,
    ) -> PyResult<Self> {
        let children: Vec<&DepthCheckedExpr> = branches
            .iter()
            .flat_map(|(when, then)| [&when.checked, &then.checked])
            .chain([&otherwise.checked])
            .collect();
        DepthCheckedExpr::node_of_many(&children, |mut exprs| {
            let otherwise = exprs.pop().expect("the otherwise value");
            let mut values = exprs.into_iter();
            let mut branches = Vec::new();
            while let (Some(when), Some(then)) = (values.next(), values.next()) {
                branches.push((when, then));
            }
            Expr::Case {
                branches,
                otherwise: Arc::new(otherwise),
            }
        })
        .map(|checked| NativeExpr { checked })
        .map_err(plan_error)
    }

    #[getter]
    fn output_name(&self) -> String {
        self.expr().output_name()
    }

    fn __str__(&self) -> String {
        self.expr().to_string()
    }
}
