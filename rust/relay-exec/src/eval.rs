//! Evaluation of resolved expressions over a record batch, with arrow-rs compute kernels.
//!
//! Expressions reach here resolved (`relay_plan::resolve`): both sides of every operator have
//! one type, so kernels are called as they are. Literals stay one-element arrays and go to the
//! kernels as scalars; they are broadcast only when an output column is a literal.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Datum, PrimitiveArray, RecordBatch, Scalar,
    UInt32Array, downcast_primitive_array, new_null_array,
};
use arrow::compute::kernels::{boolean, cmp, numeric, zip::zip};
use arrow::compute::{CastOptions, DatePart, cast_with_options, date_part, is_not_null, is_null, take};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use relay_plan::{BinaryOp, Expr, StringMatch, UnaryOp};

/// A value while evaluating: a column of the batch's length, or a one-row scalar.
#[derive(Debug, Clone)]
pub enum Value {
    Array(ArrayRef),
    Scalar(ArrayRef),
}

impl Value {
    fn datum(&self) -> Box<dyn Datum + '_> {
        match self {
            Value::Array(array) => Box::new(array.as_ref()),
            Value::Scalar(array) => Box::new(Scalar::new(array.clone())),
        }
    }

    /// The value as an array of `len` rows (a scalar is repeated).
    pub fn into_array(self, len: usize) -> Result<ArrayRef, ArrowError> {
        match self {
            Value::Array(array) => Ok(array),
            Value::Scalar(scalar) => {
                if scalar.is_null(0) {
                    return Ok(new_null_array(scalar.data_type(), len));
                }
                let indices = UInt32Array::from(vec![0u32; len]);
                take(scalar.as_ref(), &indices, None)
            }
        }
    }
}

fn wrap(array: ArrayRef, scalar: bool) -> Value {
    if scalar { Value::Scalar(array) } else { Value::Array(array) }
}

/// Evaluates `expr` over `batch`.
pub fn evaluate(expr: &Expr, batch: &RecordBatch) -> Result<Value, ArrowError> {
    match expr {
        Expr::Column(name) => batch
            .column_by_name(name)
            .cloned()
            .map(Value::Array)
            .ok_or_else(|| ArrowError::SchemaError(format!("column {name:?} is not in the batch"))),
        Expr::Literal(literal) => Ok(Value::Scalar(literal.0.clone())),
        Expr::Alias { input, .. } => evaluate(input, batch),
        Expr::Binary { op, left, right } => {
            let left = evaluate(left, batch)?;
            let right = evaluate(right, batch)?;
            binary(*op, &left, &right, batch.num_rows())
        }
        Expr::Unary { op, input } => unary(*op, evaluate(input, batch)?),
        Expr::StringMatch { kind, input, pattern } => {
            let input = evaluate(input, batch)?;
            let scalar = matches!(input, Value::Scalar(_));
            let array = match &input {
                Value::Array(a) | Value::Scalar(a) => a.clone(),
            };
            let out = on_dictionary_values(&array, |values| string_match(*kind, values, pattern))?;
            Ok(wrap(out, scalar))
        }
        Expr::IsIn { input, values } => {
            let input = evaluate(input, batch)?;
            let scalar = matches!(input, Value::Scalar(_));
            let array = match &input {
                Value::Array(a) | Value::Scalar(a) => a.clone(),
            };
            Ok(wrap(Arc::new(is_in(&array, &values.0)?), scalar))
        }
        Expr::FillNull { input, value } => {
            let input = evaluate(input, batch)?;
            let value = evaluate(value, batch)?;
            let len = batch.num_rows();
            let input_array = input.clone().into_array(len)?;
            let mask = is_not_null(input_array.as_ref())?;
            let filled = zip(&mask, &*input.datum(), &*value.datum())?;
            Ok(Value::Array(filled))
        }
        Expr::Cast { input, to } => {
            let input = evaluate(input, batch)?;
            let scalar = matches!(input, Value::Scalar(_));
            let array = match &input {
                Value::Array(a) | Value::Scalar(a) => a,
            };
            // Strict: a value that does not convert is an error, not a silent null.
            let options = CastOptions {
                safe: false,
                ..Default::default()
            };
            Ok(wrap(cast_with_options(array, to, &options)?, scalar))
        }
        Expr::Case { branches, otherwise } => {
            let len = batch.num_rows();
            let mut result = evaluate(otherwise, batch)?.into_array(len)?;
            for (when, then) in branches.iter().rev() {
                let condition = evaluate(when, batch)?.into_array(len)?;
                // A null condition counts as false.
                let condition = null_as_false(condition.as_boolean());
                let then = evaluate(then, batch)?;
                result = zip(&condition, &*then.datum(), &result.as_ref())?;
            }
            Ok(Value::Array(result))
        }
    }
}

/// `mask` with nulls turned into false (arrow's prep_null_mask_filter needs a null buffer).
pub fn null_as_false(mask: &BooleanArray) -> BooleanArray {
    if mask.null_count() == 0 {
        BooleanArray::new(mask.values().clone(), None)
    } else {
        arrow::compute::prep_null_mask_filter(mask)
    }
}

/// Applies `f` to a dictionary's values and picks the results by key (one evaluation per
/// distinct value); applies it to the array itself otherwise.
fn on_dictionary_values(array: &ArrayRef, f: impl Fn(&ArrayRef) -> Result<ArrayRef, ArrowError>) -> Result<ArrayRef, ArrowError> {
    match array.as_any_dictionary_opt() {
        Some(dictionary) => {
            let per_value = f(dictionary.values())?;
            let keys = arrow::compute::cast(dictionary.keys(), &DataType::UInt32)?;
            take(per_value.as_ref(), keys.as_primitive::<arrow::datatypes::UInt32Type>(), None)
        }
        None => f(array),
    }
}

fn string_match(kind: StringMatch, values: &ArrayRef, pattern: &str) -> Result<ArrayRef, ArrowError> {
    let pattern = arrow::compute::cast(&(Arc::new(arrow::array::StringArray::from(vec![pattern])) as ArrayRef), values.data_type())?;
    let pattern = Scalar::new(pattern);
    let result = match kind {
        StringMatch::StartsWith => arrow::compute::kernels::comparison::starts_with(values, &pattern)?,
        StringMatch::EndsWith => arrow::compute::kernels::comparison::ends_with(values, &pattern)?,
        StringMatch::Contains => arrow::compute::kernels::comparison::contains(values, &pattern)?,
    };
    Ok(Arc::new(result))
}

fn str_len(values: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let lengths: UInt32Array = match values.data_type() {
        DataType::Utf8 => values.as_string::<i32>().iter().map(|v| v.map(|s| s.chars().count() as u32)).collect(),
        DataType::LargeUtf8 => values.as_string::<i64>().iter().map(|v| v.map(|s| s.chars().count() as u32)).collect(),
        DataType::Utf8View => values.as_string_view().iter().map(|v| v.map(|s| s.chars().count() as u32)).collect(),
        other => return Err(ArrowError::InvalidArgumentError(format!("str.len() of {other}"))),
    };
    Ok(Arc::new(lengths))
}

/// OR of equalities with each candidate (null input gives null, like Polars).
/// Linear in the number of candidates: fine for the short lists `is_in` is written with.
fn is_in(array: &ArrayRef, values: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    let mut result = BooleanArray::from(vec![false; array.len()]);
    if array.null_count() > 0 {
        result = BooleanArray::new(result.values().clone(), array.logical_nulls());
    }
    for i in 0..values.len() {
        if values.is_null(i) {
            continue;
        }
        let candidate = Scalar::new(values.slice(i, 1));
        let equal = cmp::eq(array, &candidate)?;
        result = boolean::or_kleene(&result, &equal)?;
    }
    Ok(result)
}

fn broadcast_pair(left: &Value, right: &Value, len: usize) -> Result<(ArrayRef, ArrayRef, bool), ArrowError> {
    let scalar = matches!((left, right), (Value::Scalar(_), Value::Scalar(_)));
    let n = if scalar { 1 } else { len };
    Ok((left.clone().into_array(n)?, right.clone().into_array(n)?, scalar))
}

fn binary(op: BinaryOp, left: &Value, right: &Value, len: usize) -> Result<Value, ArrowError> {
    let both_scalar = matches!((left, right), (Value::Scalar(_), Value::Scalar(_)));
    let (l, r) = (left.datum(), right.datum());
    let out: ArrayRef = match op {
        BinaryOp::Eq => Arc::new(cmp::eq(&*l, &*r)?),
        BinaryOp::NotEq => Arc::new(cmp::neq(&*l, &*r)?),
        BinaryOp::Lt => Arc::new(cmp::lt(&*l, &*r)?),
        BinaryOp::LtEq => Arc::new(cmp::lt_eq(&*l, &*r)?),
        BinaryOp::Gt => Arc::new(cmp::gt(&*l, &*r)?),
        BinaryOp::GtEq => Arc::new(cmp::gt_eq(&*l, &*r)?),
        BinaryOp::Add => numeric::add_wrapping(&*l, &*r)?,
        BinaryOp::Sub => numeric::sub_wrapping(&*l, &*r)?,
        BinaryOp::Mul => numeric::mul_wrapping(&*l, &*r)?,
        BinaryOp::Div => numeric::div(&*l, &*r)?, // floats only (resolution made them so)
        BinaryOp::FloorDiv | BinaryOp::Mod => {
            let (la, ra, _) = broadcast_pair(left, right, len)?;
            floor_div_or_mod(op, &la, &ra)?
        }
        BinaryOp::And | BinaryOp::Or => {
            let (la, ra, _) = broadcast_pair(left, right, len)?;
            let (la, ra) = (as_boolean(&la)?, as_boolean(&ra)?);
            Arc::new(if op == BinaryOp::And {
                boolean::and_kleene(&la, &ra)?
            } else {
                boolean::or_kleene(&la, &ra)?
            })
        }
    };
    Ok(wrap(out, both_scalar))
}

fn as_boolean(array: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    match array.data_type() {
        DataType::Boolean => Ok(array.as_boolean().clone()),
        DataType::Null => Ok(BooleanArray::new_null(array.len())),
        other => Err(ArrowError::InvalidArgumentError(format!("expected booleans, got {other}"))),
    }
}

/// Python's `//` and `%`: the quotient rounds down and the remainder takes the divisor's sign.
/// Integer division by zero gives null (as Polars does) instead of failing the query.
fn floor_div_or_mod(op: BinaryOp, left: &ArrayRef, right: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    fn ints<T: ArrowPrimitiveType>(op: BinaryOp, l: &PrimitiveArray<T>, r: &PrimitiveArray<T>) -> ArrayRef {
        let zero = T::Native::ZERO;
        let out: PrimitiveArray<T> = l
            .iter()
            .zip(r.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if !b.is_zero() => {
                    let quotient = a.div_wrapping(b);
                    let remainder = a.mod_wrapping(b);
                    let adjust = !remainder.is_zero() && (remainder.is_lt(zero) != b.is_lt(zero));
                    Some(match op {
                        BinaryOp::FloorDiv if adjust => quotient.sub_wrapping(T::Native::ONE),
                        BinaryOp::FloorDiv => quotient,
                        _ if adjust => remainder.add_wrapping(b),
                        _ => remainder,
                    })
                }
                _ => None,
            })
            .collect();
        Arc::new(out.with_data_type(l.data_type().clone()))
    }
    fn floats<T: ArrowPrimitiveType>(op: BinaryOp, l: &PrimitiveArray<T>, r: &PrimitiveArray<T>) -> ArrayRef
    where
        T::Native: num_like::Float,
    {
        let out: PrimitiveArray<T> = l
            .iter()
            .zip(r.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Some(match op {
                    BinaryOp::FloorDiv => num_like::Float::floor(a / b),
                    _ => {
                        let remainder = a % b;
                        if remainder != T::Native::ZERO && ((remainder < T::Native::ZERO) != (b < T::Native::ZERO)) {
                            remainder + b
                        } else {
                            remainder
                        }
                    }
                }),
                _ => None,
            })
            .collect();
        Arc::new(out)
    }
    use arrow::datatypes::*;
    Ok(match left.data_type() {
        DataType::Float32 => floats::<Float32Type>(op, left.as_primitive(), right.as_primitive()),
        DataType::Float64 => floats::<Float64Type>(op, left.as_primitive(), right.as_primitive()),
        _ => downcast_primitive_array!(
            left => {
                let right = right.as_any().downcast_ref().ok_or_else(|| ArrowError::InvalidArgumentError("operand types differ".into()))?;
                ints(op, left, right)
            }
            other => return Err(ArrowError::InvalidArgumentError(format!("{} of {other}", if op == BinaryOp::Mod { "%" } else { "//" }))),
        ),
    })
}

/// Minimal float trait for floor division on f32 / f64.
mod num_like {
    pub trait Float: Copy + std::ops::Div<Output = Self> + std::ops::Rem<Output = Self> + std::ops::Add<Output = Self> + PartialOrd {
        fn floor(self) -> Self;
    }
    impl Float for f32 {
        fn floor(self) -> Self {
            f32::floor(self)
        }
    }
    impl Float for f64 {
        fn floor(self) -> Self {
            f64::floor(self)
        }
    }
}

fn unary(op: UnaryOp, input: Value) -> Result<Value, ArrowError> {
    let scalar = matches!(input, Value::Scalar(_));
    let array = match &input {
        Value::Array(a) | Value::Scalar(a) => a.clone(),
    };
    let out: ArrayRef = match op {
        UnaryOp::Not => Arc::new(boolean::not(&as_boolean(&array)?)?),
        UnaryOp::Negate => numeric::neg_wrapping(&array)?,
        UnaryOp::Abs => {
            let zero = arrow::compute::cast(&(Arc::new(arrow::array::Int8Array::from(vec![0])) as ArrayRef), array.data_type())?;
            let negative = cmp::lt(&array, &Scalar::new(zero))?;
            let negative = null_as_false(&negative);
            zip(&negative, &numeric::neg_wrapping(&array)?, &array)?
        }
        UnaryOp::IsNull => Arc::new(is_null(array.as_ref())?),
        UnaryOp::IsNotNull => Arc::new(is_not_null(array.as_ref())?),
        UnaryOp::StrLen => on_dictionary_values(&array, str_len)?,
        UnaryOp::Year => date_part(&array, DatePart::Year)?,
        UnaryOp::Month => date_part(&array, DatePart::Month)?,
        UnaryOp::Day => date_part(&array, DatePart::Day)?,
    };
    Ok(wrap(out, scalar))
}
