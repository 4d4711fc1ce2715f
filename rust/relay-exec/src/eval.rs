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
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::{boolean, cmp, numeric, zip::zip};
use arrow::compute::{
    CastOptions, DatePart, cast_with_options, date_part, is_not_null, is_null, take,
};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use relay_plan::{BinaryOp, Expr, StringMatch, UnaryOp, with_stack_room};
use relay_storage::type_name;

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

    /// The values: a column, or a one-row array for a scalar.
    fn array(&self) -> &ArrayRef {
        match self {
            Value::Array(array) | Value::Scalar(array) => array,
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
    if scalar {
        Value::Scalar(array)
    } else {
        Value::Array(array)
    }
}

/// Evaluates `expr` over `batch`.
///
/// Recursive, one level per node, each with stack room: an expression as deep as
/// `relay_plan::MAX_EXPR_DEPTH` evaluates on a worker thread's small stack.
pub fn evaluate(expr: &Expr, batch: &RecordBatch) -> Result<Value, ArrowError> {
    with_stack_room(|| evaluate_node(expr, batch))
}

fn evaluate_node(expr: &Expr, batch: &RecordBatch) -> Result<Value, ArrowError> {
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
        Expr::StringMatch {
            kind,
            input,
            pattern,
        } => {
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
        Expr::Cast {
            input: input_expr,
            to,
        } => {
            let input = evaluate(input_expr, batch)?;
            let scalar = matches!(input, Value::Scalar(_));
            let array = match &input {
                Value::Array(a) | Value::Scalar(a) => a,
            };
            if let Some(same_bits) = same_width_integer_cast(array.as_ref(), to) {
                return Ok(wrap(same_bits, scalar));
            }
            // Strict: a value that does not convert is an error, not a silent null.
            let options = CastOptions {
                safe: false,
                ..Default::default()
            };
            let converted = cast_with_options(array, to, &options).map_err(|error| {
                let reason = match error {
                    ArrowError::CastError(reason) => reason,
                    other => other.to_string(),
                };
                ArrowError::CastError(format!(
                    "strict cast of {input_expr} ({}) to {} failed: {reason}",
                    type_name(array.data_type()),
                    type_name(to)
                ))
            })?;
            Ok(wrap(converted, scalar))
        }
        Expr::Case {
            branches,
            otherwise,
        } => {
            let len = batch.num_rows();
            // The rows each branch takes: where its condition is true (a null condition counts
            // as false, `when(lit(None))` is untyped) and no earlier condition was.
            let mut undecided = BooleanBuffer::new_set(len);
            let mut taken_by = Vec::with_capacity(branches.len());
            for (when, _) in branches {
                let condition = evaluate(when, batch)?.into_array(len)?;
                let condition = null_as_false(&as_boolean(&condition)?);
                let taken = condition.values() & &undecided;
                undecided = &undecided & &!&taken;
                taken_by.push(taken);
            }
            let mut result = evaluate_on_rows(otherwise, batch, &undecided)?.into_array(len)?;
            for ((_, then), taken) in branches.iter().zip(taken_by).rev() {
                let then = evaluate_on_rows(then, batch, &taken)?;
                result = zip(
                    &BooleanArray::new(taken, None),
                    &*then.datum(),
                    &result.as_ref(),
                )?;
            }
            Ok(Value::Array(result))
        }
    }
}

/// `expr` over `batch` where only the values at `rows` matter. As in Polars, a branch of a
/// `when` is evaluated for the rows that take it: `when(x >= 0).then(x.cast("uint8"))` does not
/// fail on the negative values it never uses. All rows are evaluated first (one kernel call);
/// only when that fails are the rows that matter evaluated alone, and their error is the one
/// reported.
fn evaluate_on_rows(
    expr: &Expr,
    batch: &RecordBatch,
    rows: &BooleanBuffer,
) -> Result<Value, ArrowError> {
    let error = match evaluate(expr, batch) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    if rows.count_set_bits() == batch.num_rows() {
        return Err(error);
    }
    let selected =
        arrow::compute::filter_record_batch(batch, &BooleanArray::new(rows.clone(), None))?;
    let values = evaluate(expr, &selected)?.into_array(selected.num_rows())?;
    if values.is_empty() {
        return Ok(Value::Array(new_null_array(
            values.data_type(),
            batch.num_rows(),
        )));
    }
    // Back to the batch's rows: the k-th selected row takes the k-th value, the others null.
    let mut next = 0u32;
    let positions: UInt32Array = rows
        .iter()
        .map(|taken| {
            taken.then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    Ok(Value::Array(take(values.as_ref(), &positions, None)?))
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
fn on_dictionary_values(
    array: &ArrayRef,
    f: impl Fn(&ArrayRef) -> Result<ArrayRef, ArrowError>,
) -> Result<ArrayRef, ArrowError> {
    match array.as_any_dictionary_opt() {
        Some(dictionary) => {
            let per_value = f(dictionary.values())?;
            let keys = arrow::compute::cast(dictionary.keys(), &DataType::UInt32)?;
            take(
                per_value.as_ref(),
                keys.as_primitive::<arrow::datatypes::UInt32Type>(),
                None,
            )
        }
        None => f(array),
    }
}

fn string_match(
    kind: StringMatch,
    values: &ArrayRef,
    pattern: &str,
) -> Result<ArrayRef, ArrowError> {
    let pattern = arrow::compute::cast(
        &(Arc::new(arrow::array::StringArray::from(vec![pattern])) as ArrayRef),
        values.data_type(),
    )?;
    let pattern = Scalar::new(pattern);
    let result = match kind {
        StringMatch::StartsWith => {
            arrow::compute::kernels::comparison::starts_with(values, &pattern)?
        }
        StringMatch::EndsWith => arrow::compute::kernels::comparison::ends_with(values, &pattern)?,
        StringMatch::Contains => arrow::compute::kernels::comparison::contains(values, &pattern)?,
    };
    Ok(Arc::new(result))
}

fn str_len(values: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let lengths: UInt32Array = match values.data_type() {
        DataType::Utf8 => values
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|s| s.chars().count() as u32))
            .collect(),
        DataType::LargeUtf8 => values
            .as_string::<i64>()
            .iter()
            .map(|v| v.map(|s| s.chars().count() as u32))
            .collect(),
        DataType::Utf8View => values
            .as_string_view()
            .iter()
            .map(|v| v.map(|s| s.chars().count() as u32))
            .collect(),
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "str.len() of {other}"
            )));
        }
    };
    Ok(Arc::new(lengths))
}

/// Lists longer than this are looked up in a hash set instead of compared one candidate at a
/// time. Each comparison pass streams the column once (about 1 ns a row for 32-bit values), and
/// the hash path costs about as much as 4-8 of them per row (row encoding, hashing, a probe),
/// so it wins from about a dozen candidates on, and by far for long lists.
const IS_IN_LINEAR_MAX: usize = 12;

/// Whether each value is one of `values` (null input gives null, like Polars; null candidates
/// never match). Floats match as Polars compares them: `-0.0 == 0.0` and NaN matches NaN.
fn is_in(array: &ArrayRef, values: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    if values.len() - values.null_count() > IS_IN_LINEAR_MAX
        && let Some(found) = is_in_hashed(array, values)
    {
        return found;
    }
    is_in_linear(array, values)
}

/// Floats with every NaN as one NaN and -0.0 as 0.0, so that equal values encode alike.
fn canonical_floats(array: &ArrayRef) -> ArrayRef {
    use arrow::datatypes::{Float32Type, Float64Type};
    match array.data_type() {
        DataType::Float32 => Arc::new(
            array
                .as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(|v| if v.is_nan() { f32::NAN } else { v + 0.0 }),
        ),
        DataType::Float64 => Arc::new(
            array
                .as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(|v| if v.is_nan() { f64::NAN } else { v + 0.0 }),
        ),
        _ => array.clone(),
    }
}

/// `is_in` through a hash set of the candidates, in arrow's row encoding (one byte string per
/// value, equal exactly when the values are). A dictionary column is looked up once per
/// dictionary value. None when the candidates do not convert to the column's type.
fn is_in_hashed(array: &ArrayRef, values: &ArrayRef) -> Option<Result<BooleanArray, ArrowError>> {
    use arrow::row::{RowConverter, SortField};
    use std::collections::HashSet;

    let value_type = match array.data_type() {
        DataType::Dictionary(_, value_type) => value_type.as_ref().clone(),
        other => other.clone(),
    };
    let values = canonical_floats(&arrow::compute::cast(values, &value_type).ok()?);
    let converter = RowConverter::new(vec![SortField::new(value_type)]).ok()?;
    let candidates = converter
        .convert_columns(std::slice::from_ref(&values))
        .ok()?;
    let set: HashSet<&[u8]> = (0..values.len())
        .filter(|&i| values.is_valid(i))
        .map(|i| candidates.row(i).data())
        .collect();
    let lookup = |column: &ArrayRef| -> Result<ArrayRef, ArrowError> {
        let column = canonical_floats(column);
        let rows = converter.convert_columns(std::slice::from_ref(&column))?;
        let found =
            BooleanBuffer::from_iter((0..column.len()).map(|i| set.contains(rows.row(i).data())));
        Ok(Arc::new(BooleanArray::new(found, column.logical_nulls())))
    };
    Some(on_dictionary_values(array, lookup).map(|found| found.as_boolean().clone()))
}

/// OR of equalities with each candidate: one pass over the column per candidate.
fn is_in_linear(array: &ArrayRef, values: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    let mut result = BooleanArray::from(vec![false; array.len()]);
    if array.logical_null_count() > 0 {
        result = BooleanArray::new(result.values().clone(), array.logical_nulls());
    }
    for i in 0..values.len() {
        if values.is_null(i) {
            continue;
        }
        let candidate = values.slice(i, 1);
        let equal = match compare_floats(
            BinaryOp::Eq,
            &Value::Array(array.clone()),
            &Value::Scalar(candidate.clone()),
        ) {
            Some(equal) => equal?.as_boolean().clone(),
            None => cmp::eq(array, &Scalar::new(candidate))?,
        };
        result = boolean::or_kleene(&result, &equal)?;
    }
    Ok(result)
}

/// Floats compared as Polars compares them: `-0.0 == 0.0`, and every NaN, whatever its sign
/// bit, is one value, equal to itself and greater than every number. arrow-rs compares floats
/// by IEEE total order instead, where -0.0 is less than 0.0 and a NaN with its sign bit set
/// (what x86 makes of `inf - inf`) is less than every number. One pass over the values, as
/// arrow's kernel; None when the operands are not floats of one type.
fn compare_floats(
    op: BinaryOp,
    left: &Value,
    right: &Value,
) -> Option<Result<ArrayRef, ArrowError>> {
    use arrow::datatypes::{Float32Type, Float64Type};
    let (l, r) = (left.array(), right.array());
    let (l_scalar, r_scalar) = (
        matches!(left, Value::Scalar(_)),
        matches!(right, Value::Scalar(_)),
    );
    Some(Ok(match (l.data_type(), r.data_type()) {
        (DataType::Float32, DataType::Float32) => compare_float_arrays::<Float32Type>(
            op,
            l.as_primitive(),
            l_scalar,
            r.as_primitive(),
            r_scalar,
        ),
        (DataType::Float64, DataType::Float64) => compare_float_arrays::<Float64Type>(
            op,
            l.as_primitive(),
            l_scalar,
            r.as_primitive(),
            r_scalar,
        ),
        _ => return None,
    }))
}

fn compare_float_arrays<T: arrow::datatypes::ArrowPrimitiveType>(
    op: BinaryOp,
    left: &PrimitiveArray<T>,
    left_scalar: bool,
    right: &PrimitiveArray<T>,
    right_scalar: bool,
) -> ArrayRef
where
    T::Native: num_like::Float,
{
    use num_like::Float;
    let len = if left_scalar { right.len() } else { left.len() };
    if (left_scalar && left.is_null(0)) || (right_scalar && right.is_null(0)) {
        return new_null_array(&DataType::Boolean, len);
    }
    let nulls = arrow::buffer::NullBuffer::union(
        if left_scalar { None } else { left.nulls() },
        if right_scalar { None } else { right.nulls() },
    );
    fn less<F: Float>(a: F, b: F) -> bool {
        !a.is_nan() & (b.is_nan() | (a < b))
    }
    fn equal<F: Float>(a: F, b: F) -> bool {
        (a == b) | (a.is_nan() & b.is_nan())
    }
    fn each<F: Float>(
        len: usize,
        left: &[F],
        left_scalar: bool,
        right: &[F],
        right_scalar: bool,
        test: impl Fn(F, F) -> bool,
    ) -> BooleanBuffer {
        match (left_scalar, right_scalar) {
            (false, true) => {
                let (left, value) = (&left[..len], right[0]);
                BooleanBuffer::collect_bool(len, |i| test(left[i], value))
            }
            (true, false) => {
                let (value, right) = (left[0], &right[..len]);
                BooleanBuffer::collect_bool(len, |i| test(value, right[i]))
            }
            _ => {
                let (left, right) = (&left[..len], &right[..len]);
                BooleanBuffer::collect_bool(len, |i| test(left[i], right[i]))
            }
        }
    }
    let (l, r) = (left.values().as_ref(), right.values().as_ref());
    let values = match op {
        BinaryOp::Eq => each(len, l, left_scalar, r, right_scalar, equal),
        BinaryOp::NotEq => each(len, l, left_scalar, r, right_scalar, |a, b| !equal(a, b)),
        BinaryOp::Lt => each(len, l, left_scalar, r, right_scalar, less),
        BinaryOp::GtEq => each(len, l, left_scalar, r, right_scalar, |a, b| !less(a, b)),
        BinaryOp::Gt => each(len, l, left_scalar, r, right_scalar, |a, b| less(b, a)),
        BinaryOp::LtEq => each(len, l, left_scalar, r, right_scalar, |a, b| !less(b, a)),
        _ => unreachable!("compare_floats is called for comparisons"),
    };
    Arc::new(BooleanArray::new(values, nulls))
}

fn broadcast_pair(
    left: &Value,
    right: &Value,
    len: usize,
) -> Result<(ArrayRef, ArrayRef, bool), ArrowError> {
    let scalar = matches!((left, right), (Value::Scalar(_), Value::Scalar(_)));
    let n = if scalar { 1 } else { len };
    Ok((
        left.clone().into_array(n)?,
        right.clone().into_array(n)?,
        scalar,
    ))
}

fn binary(op: BinaryOp, left: &Value, right: &Value, len: usize) -> Result<Value, ArrowError> {
    let both_scalar = matches!((left, right), (Value::Scalar(_), Value::Scalar(_)));
    if op.is_comparison()
        && let Some(result) = compare_floats(op, left, right)
    {
        return Ok(wrap(result?, both_scalar));
    }
    if matches!(op, BinaryOp::Eq | BinaryOp::NotEq)
        && let Some(result) = compare_string_to_literal(op, left, right)
    {
        return Ok(Value::Array(result));
    }
    if matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul)
        && !both_scalar
        && let Some(result) = decimal_arithmetic(op, left, right)?
    {
        return Ok(Value::Array(result));
    }
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
        BinaryOp::FloorDiv | BinaryOp::Mod => match (left, right) {
            (Value::Array(array), Value::Scalar(divisor))
                if let Some(result) = floor_div_or_mod_by(op, array, divisor) =>
            {
                result
            }
            _ => {
                let (la, ra, _) = broadcast_pair(left, right, len)?;
                floor_div_or_mod(op, &la, &ra)?
            }
        },
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

/// `==` / `!=` between a string column (utf8 or large utf8) and a non-null string literal;
/// None for anything else.
///
/// Arrow's kernel calls `memcmp` for every value: TPC-H Q10's `l_returnflag == "R"` over 6 M
/// rows was a fifth of the query's profile. Here a value of another length is decided by its
/// offsets alone, and one of the literal's length is compared in place.
fn compare_string_to_literal(op: BinaryOp, left: &Value, right: &Value) -> Option<ArrayRef> {
    let (column, literal) = match (left, right) {
        (Value::Array(column), Value::Scalar(literal))
        | (Value::Scalar(literal), Value::Array(column)) => (column, literal),
        _ => return None,
    };
    let wanted: &[u8] = match literal.data_type() {
        DataType::Utf8 if literal.is_valid(0) => literal.as_string::<i32>().value(0).as_bytes(),
        DataType::LargeUtf8 if literal.is_valid(0) => {
            literal.as_string::<i64>().value(0).as_bytes()
        }
        _ => return None,
    };
    fn each<O: arrow::array::OffsetSizeTrait>(
        column: &arrow::array::GenericStringArray<O>,
        wanted: &[u8],
        equal: bool,
    ) -> ArrayRef {
        let (offsets, values) = (column.value_offsets(), column.value_data());
        let matches = BooleanBuffer::collect_bool(column.len(), |i| {
            let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            // The bytes are folded, not compared until the first difference: whether a row
            // matches is data, and an early exit is a branch the CPU mispredicts.
            (end - start == wanted.len()
                && values[start..end]
                    .iter()
                    .zip(wanted)
                    .fold(0, |diff, (a, b)| diff | (a ^ b))
                    == 0)
                == equal
        });
        Arc::new(BooleanArray::new(matches, column.nulls().cloned()))
    }
    let equal = op == BinaryOp::Eq;
    match column.data_type() {
        DataType::Utf8 => Some(each(column.as_string::<i32>(), wanted, equal)),
        DataType::LargeUtf8 => Some(each(column.as_string::<i64>(), wanted, equal)),
        _ => None,
    }
}

/// `left op right` for decimal128 operands without nulls, where at least one is a column; None
/// (and arrow's kernel does the work) for anything else, or when a value overflows (arrow then
/// reports it as it does).
///
/// Arrow's decimal kernels run a checked op per value through a closure that returns a
/// `Result`, and rescale a scalar per value, which dominates decimal arithmetic such as TPC-H
/// Q1's. Here the result type still comes from arrow (its kernel on zero rows), the values
/// are rescaled and combined with overflow flags folded over the loop, and a product of two
/// values that fit in 64 bits is one widening multiply (it cannot overflow).
fn decimal_arithmetic(
    op: BinaryOp,
    left: &Value,
    right: &Value,
) -> Result<Option<ArrayRef>, ArrowError> {
    use arrow::datatypes::Decimal128Type;
    let (l, r) = (left.array(), right.array());
    let (DataType::Decimal128(_, left_scale), DataType::Decimal128(_, right_scale)) =
        (l.data_type(), r.data_type())
    else {
        return Ok(None);
    };
    if l.null_count() > 0 || r.null_count() > 0 {
        return Ok(None);
    }
    let (left_scale, right_scale) = (*left_scale, *right_scale);
    let empty = |a: &ArrayRef| a.slice(0, 0);
    let result_type = match op {
        BinaryOp::Add => numeric::add_wrapping(&empty(l), &empty(r))?,
        BinaryOp::Sub => numeric::sub_wrapping(&empty(l), &empty(r))?,
        _ => numeric::mul_wrapping(&empty(l), &empty(r))?,
    }
    .data_type()
    .clone();
    let DataType::Decimal128(_, scale) = result_type else {
        return Ok(None);
    };
    /// One side's values (a scalar as one value), brought to the result's scale for + and -.
    fn values<'a>(
        op: BinaryOp,
        value: &Value,
        array: &'a ArrayRef,
        from: i8,
        scale: i8,
    ) -> Option<(std::borrow::Cow<'a, [i128]>, bool)> {
        let values: &[i128] = array.as_primitive::<Decimal128Type>().values();
        let factor = if op == BinaryOp::Mul {
            1
        } else {
            10i128.checked_pow(u32::try_from(scale - from).ok()?)?
        };
        let scalar = matches!(value, Value::Scalar(_));
        if factor == 1 {
            return Some((values.into(), scalar));
        }
        let mut overflowed = false;
        let rescaled = values
            .iter()
            .map(|&v| {
                let (product, overflow) = v.overflowing_mul(factor);
                overflowed |= overflow;
                product
            })
            .collect();
        (!overflowed).then_some((std::borrow::Cow::Owned(rescaled), scalar))
    }
    let (Some((lv, l_scalar)), Some((rv, r_scalar))) = (
        values(op, left, l, left_scale, scale),
        values(op, right, r, right_scale, scale),
    ) else {
        return Ok(None);
    };
    // One loop per operator and operand shape, so none tests per value which shape it has.
    fn each(
        l: &[i128],
        l_scalar: bool,
        r: &[i128],
        r_scalar: bool,
        f: impl Fn(i128, i128) -> (i128, bool),
    ) -> (Vec<i128>, bool) {
        let mut overflowed = false;
        let mut apply = |a: i128, b: i128| {
            let (value, overflow) = f(a, b);
            overflowed |= overflow;
            value
        };
        let out = match (l_scalar, r_scalar) {
            (true, _) => r.iter().map(|&b| apply(l[0], b)).collect(),
            (_, true) => l.iter().map(|&a| apply(a, r[0])).collect(),
            _ => l.iter().zip(r).map(|(&a, &b)| apply(a, b)).collect(),
        };
        (out, overflowed)
    }
    let (out, overflowed) = match op {
        BinaryOp::Add => each(&lv, l_scalar, &rv, r_scalar, i128::overflowing_add),
        BinaryOp::Sub => each(&lv, l_scalar, &rv, r_scalar, i128::overflowing_sub),
        _ => each(&lv, l_scalar, &rv, r_scalar, |a, b| {
            if i128::from(a as i64) == a && i128::from(b as i64) == b {
                (i128::from(a as i64) * i128::from(b as i64), false)
            } else {
                a.overflowing_mul(b)
            }
        }),
    };
    if overflowed {
        return Ok(None);
    }
    Ok(Some(Arc::new(
        PrimitiveArray::<Decimal128Type>::from(out).with_data_type(result_type),
    )))
}

fn as_boolean(array: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    match array.data_type() {
        DataType::Boolean => Ok(array.as_boolean().clone()),
        DataType::Null => Ok(BooleanArray::new_null(array.len())),
        other => Err(ArrowError::InvalidArgumentError(format!(
            "expected booleans, got {other}"
        ))),
    }
}

/// Python's `//` or `%` of an integer and a divisor, rounded down (see `floor_div_or_mod`).
fn floor_div_or_mod_value<N: arrow::datatypes::ArrowNativeTypeOp>(op: BinaryOp, a: N, b: N) -> N {
    let quotient = a.div_wrapping(b);
    let remainder = a.mod_wrapping(b);
    let adjust = !remainder.is_zero() && (remainder.is_lt(N::ZERO) != b.is_lt(N::ZERO));
    match op {
        BinaryOp::FloorDiv if adjust => quotient.sub_wrapping(N::ONE),
        BinaryOp::FloorDiv => quotient,
        _ if adjust => remainder.add_wrapping(b),
        _ => remainder,
    }
}

/// `floor_div_or_mod` of an integer array by a literal of its type that is neither null nor
/// zero: one pass over the values, the array's nulls kept as they are, about twice as fast
/// as the literal broadcast to an array with every value taken as an Option. None for other
/// operands.
fn floor_div_or_mod_by(op: BinaryOp, array: &ArrayRef, divisor: &ArrayRef) -> Option<ArrayRef> {
    fn by<T: ArrowPrimitiveType>(
        op: BinaryOp,
        array: &ArrayRef,
        divisor: &ArrayRef,
    ) -> Option<ArrayRef> {
        let b = divisor.as_primitive_opt::<T>()?.value(0);
        if b.is_zero() {
            return None;
        }
        let out: PrimitiveArray<T> = array
            .as_primitive::<T>()
            .unary(|a| floor_div_or_mod_value(op, a, b));
        Some(Arc::new(out.with_data_type(array.data_type().clone())))
    }
    use arrow::datatypes::*;
    if divisor.len() != 1 || divisor.is_null(0) || divisor.data_type() != array.data_type() {
        return None;
    }
    match array.data_type() {
        DataType::Int8 => by::<Int8Type>(op, array, divisor),
        DataType::Int16 => by::<Int16Type>(op, array, divisor),
        DataType::Int32 => by::<Int32Type>(op, array, divisor),
        DataType::Int64 => by::<Int64Type>(op, array, divisor),
        DataType::UInt8 => by::<UInt8Type>(op, array, divisor),
        DataType::UInt16 => by::<UInt16Type>(op, array, divisor),
        DataType::UInt32 => by::<UInt32Type>(op, array, divisor),
        DataType::UInt64 => by::<UInt64Type>(op, array, divisor),
        _ => None,
    }
}

/// Python's `//` and `%`: the quotient rounds down and the remainder takes the divisor's sign.
/// Integer division by zero gives null (as Polars does) instead of failing the query.
fn floor_div_or_mod(
    op: BinaryOp,
    left: &ArrayRef,
    right: &ArrayRef,
) -> Result<ArrayRef, ArrowError> {
    fn ints<T: ArrowPrimitiveType>(
        op: BinaryOp,
        l: &PrimitiveArray<T>,
        r: &PrimitiveArray<T>,
    ) -> ArrayRef {
        let out: PrimitiveArray<T> = l
            .iter()
            .zip(r.iter())
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) if !b.is_zero() => Some(floor_div_or_mod_value(op, a, b)),
                _ => None,
            })
            .collect();
        Arc::new(out.with_data_type(l.data_type().clone()))
    }
    fn floats<T: ArrowPrimitiveType>(
        op: BinaryOp,
        l: &PrimitiveArray<T>,
        r: &PrimitiveArray<T>,
    ) -> ArrayRef
    where
        T::Native: num_like::Float,
    {
        let out: PrimitiveArray<T> = l
            .iter()
            .zip(r.iter())
            .map(|(a, b)| match (a, b) {
                // As Polars computes them: `a % b` is `a - b * floor(a / b)`, so that `//` and
                // `%` agree (`a == b * (a // b) + a % b` up to rounding). It can differ from
                // Python's exactly rounded `%` in the last bits, and gives NaN for an infinite
                // divisor where Python gives `a`.
                (Some(a), Some(b)) => Some(match op {
                    BinaryOp::FloorDiv => num_like::Float::floor(a / b),
                    _ => a - b * num_like::Float::floor(a / b),
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
    pub trait Float:
        Copy
        + std::ops::Div<Output = Self>
        + std::ops::Mul<Output = Self>
        + std::ops::Sub<Output = Self>
        + std::ops::Add<Output = Self>
        + PartialOrd
    {
        fn floor(self) -> Self;
        fn is_nan(self) -> bool;
    }
    macro_rules! impl_float {
        ($t:ty) => {
            impl Float for $t {
                fn floor(self) -> Self {
                    <$t>::floor(self)
                }
                fn is_nan(self) -> bool {
                    <$t>::is_nan(self)
                }
            }
        };
    }
    impl_float!(f32);
    impl_float!(f64);
}

fn unary(op: UnaryOp, input: Value) -> Result<Value, ArrowError> {
    let scalar = matches!(input, Value::Scalar(_));
    let array = match &input {
        Value::Array(a) | Value::Scalar(a) => a.clone(),
    };
    let out: ArrayRef = match op {
        UnaryOp::Not => Arc::new(boolean::not(&as_boolean(&array)?)?),
        UnaryOp::Negate => numeric::neg_wrapping(&array)?,
        UnaryOp::Abs if array.data_type().is_unsigned_integer() => array,
        UnaryOp::Abs => {
            let zero = arrow::compute::cast(
                &(Arc::new(arrow::array::Int8Array::from(vec![0])) as ArrayRef),
                array.data_type(),
            )?;
            let negative = cmp::lt(&array, &Scalar::new(zero))?;
            let negative = null_as_false(&negative);
            zip(&negative, &numeric::neg_wrapping(&array)?, &array)?
        }
        UnaryOp::IsNull => Arc::new(is_null(array.as_ref())?),
        UnaryOp::IsNotNull => Arc::new(is_not_null(array.as_ref())?),
        UnaryOp::StrLen => on_dictionary_values(&array, str_len)?,
        UnaryOp::Year => date_part(&array, DatePart::Year)?,
        // Polars' types: int8 for the month and the day (1..=31 fit).
        UnaryOp::Month => {
            arrow::compute::cast(&date_part(&array, DatePart::Month)?, &DataType::Int8)?
        }
        UnaryOp::Day => arrow::compute::cast(&date_part(&array, DatePart::Day)?, &DataType::Int8)?,
    };
    Ok(wrap(out, scalar))
}

/// A cast between integer types of one width (int32 -> uint32, uint64 -> int64, ...) whose
/// every value fits the target type: those values have the same bits in both types, so the
/// result shares the input's buffers (a view of the mapped file stays one). One pass reads the
/// values to check that they fit (nulls are skipped: their slots hold no value). None when
/// the types are not such a pair or a value does not fit; the strict cast then reports it.
pub(crate) fn same_width_integer_cast(array: &dyn Array, to: &DataType) -> Option<ArrayRef> {
    use arrow::compute::{max, min};
    use arrow::datatypes::{
        Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
    };
    match (array.data_type(), to) {
        (DataType::Int8, DataType::UInt8) => {
            reinterpret_if::<Int8Type, UInt8Type>(array, |a| min(a).is_none_or(|v| v >= 0))
        }
        (DataType::Int16, DataType::UInt16) => {
            reinterpret_if::<Int16Type, UInt16Type>(array, |a| min(a).is_none_or(|v| v >= 0))
        }
        (DataType::Int32, DataType::UInt32) => {
            reinterpret_if::<Int32Type, UInt32Type>(array, |a| min(a).is_none_or(|v| v >= 0))
        }
        (DataType::Int64, DataType::UInt64) => {
            reinterpret_if::<Int64Type, UInt64Type>(array, |a| min(a).is_none_or(|v| v >= 0))
        }
        (DataType::UInt8, DataType::Int8) => reinterpret_if::<UInt8Type, Int8Type>(array, |a| {
            max(a).is_none_or(|v| v <= i8::MAX as u8)
        }),
        (DataType::UInt16, DataType::Int16) => {
            reinterpret_if::<UInt16Type, Int16Type>(array, |a| {
                max(a).is_none_or(|v| v <= i16::MAX as u16)
            })
        }
        (DataType::UInt32, DataType::Int32) => {
            reinterpret_if::<UInt32Type, Int32Type>(array, |a| {
                max(a).is_none_or(|v| v <= i32::MAX as u32)
            })
        }
        (DataType::UInt64, DataType::Int64) => {
            reinterpret_if::<UInt64Type, Int64Type>(array, |a| {
                max(a).is_none_or(|v| v <= i64::MAX as u64)
            })
        }
        _ => None,
    }
}

/// `array`'s values buffer and nulls read as `To` (of `From`'s width) when `fits` holds.
fn reinterpret_if<From, To>(
    array: &dyn Array,
    fits: impl Fn(&PrimitiveArray<From>) -> bool,
) -> Option<ArrayRef>
where
    From: arrow::datatypes::ArrowPrimitiveType,
    To: arrow::datatypes::ArrowPrimitiveType,
{
    let array = array.as_primitive::<From>();
    if !fits(array) {
        return None;
    }
    debug_assert_eq!(size_of::<From::Native>(), size_of::<To::Native>());
    // The same bytes, sliced as the input is: one width, so one alignment.
    let values = arrow::buffer::ScalarBuffer::<To::Native>::new(
        array.values().inner().clone(),
        0,
        array.len(),
    );
    Some(Arc::new(PrimitiveArray::<To>::new(
        values,
        array.nulls().cloned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Date32Array, Float32Array, Float64Array, Int8Array, Int32Array, Int64Array, NullArray,
        UInt8Array,
    };
    use arrow::datatypes::{Field, Schema};
    use relay_plan::Literal;

    #[test]
    fn a_chain_as_deep_as_the_limit_evaluates_on_a_small_stack() {
        // `sum(col(c) for c in columns)` builds a left-deep chain: float addition is not
        // associative, so it is evaluated as built, one level per node.
        let columns = 3000;
        let fields: Vec<(String, ArrayRef)> = (0..columns)
            .map(|i| {
                let values: Float64Array = (0..4).map(|row| (row * i) as f64 / 7.0).collect();
                (format!("c{i}"), Arc::new(values) as ArrayRef)
            })
            .collect();
        let batch = RecordBatch::try_from_iter(fields.clone()).unwrap();
        let sum = (1..columns).fold(Expr::col("c0"), |sum, i| {
            sum.binary(BinaryOp::Add, Expr::col(format!("c{i}")))
        });
        let expected: Vec<f64> = (0..4)
            .map(|row| {
                (0..columns).fold(0.0, |sum, i| {
                    let value = (row * i) as f64 / 7.0;
                    if i == 0 { value } else { sum + value }
                })
            })
            .collect();
        let got = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(scope, || evaluate(&sum, &batch).unwrap())
                .unwrap()
                .join()
                .unwrap()
        });
        let Value::Array(got) = got else {
            panic!("an array")
        };
        assert_eq!(
            got.as_primitive::<arrow::datatypes::Float64Type>()
                .values()
                .to_vec(),
            expected
        );
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    fn run(expr: &Expr, batch: &RecordBatch) -> ArrayRef {
        evaluate(expr, batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap()
    }

    fn lit(array: impl Array + 'static) -> Expr {
        Expr::lit(Arc::new(array))
    }

    #[test]
    fn integer_floor_division_and_modulo_follow_python_and_divide_by_zero_to_null() {
        let b = batch(vec![
            (
                "a",
                Arc::new(Int8Array::from(vec![
                    Some(7),
                    Some(-7),
                    Some(7),
                    Some(-7),
                    Some(-128),
                    Some(5),
                    None,
                ])),
            ),
            (
                "b",
                Arc::new(Int8Array::from(vec![
                    Some(2),
                    Some(2),
                    Some(-2),
                    Some(-2),
                    Some(-1),
                    Some(0),
                    Some(1),
                ])),
            ),
        ]);
        let quotient = run(
            &Expr::col("a").binary(BinaryOp::FloorDiv, Expr::col("b")),
            &b,
        );
        let remainder = run(&Expr::col("a").binary(BinaryOp::Mod, Expr::col("b")), &b);
        assert_eq!(
            quotient.as_ref(),
            &Int8Array::from(vec![
                Some(3),
                Some(-4),
                Some(-4),
                Some(3),
                Some(-128),
                None,
                None
            ]) as &dyn Array
        );
        assert_eq!(
            remainder.as_ref(),
            &Int8Array::from(vec![
                Some(1),
                Some(1),
                Some(-1),
                Some(-1),
                Some(0),
                None,
                None
            ]) as &dyn Array
        );
    }

    #[test]
    fn integer_floor_division_and_modulo_by_a_literal_match_the_general_kernel() {
        let values: Vec<Option<i64>> = (-20..20)
            .map(|v| (v % 7 != 3).then_some(v * 13))
            .chain([Some(i64::MIN), Some(i64::MAX)])
            .collect();
        let b = batch(vec![("a", Arc::new(Int64Array::from(values.clone())))]);
        for divisor in [3i64, -3, 1, -1, 50_000, i64::MAX] {
            for op in [BinaryOp::FloorDiv, BinaryOp::Mod] {
                let by_literal = run(
                    &Expr::col("a").binary(op, lit(Int64Array::from(vec![divisor]))),
                    &b,
                );
                let divisors = Arc::new(Int64Array::from(vec![divisor; values.len()])) as ArrayRef;
                let by_column = floor_div_or_mod(op, b.column(0), &divisors).unwrap();
                assert_eq!(&by_literal, &by_column, "{op:?} by {divisor}");
            }
        }
        // Python's semantics, nulls kept; a zero or null literal takes the general kernel (null).
        let b = batch(vec![(
            "a",
            Arc::new(Int32Array::from(vec![Some(7), Some(-7), None])),
        )]);
        let modulo = |divisor: Option<i32>| {
            run(
                &Expr::col("a").binary(BinaryOp::Mod, lit(Int32Array::from(vec![divisor]))),
                &b,
            )
        };
        assert_eq!(
            modulo(Some(-2)).as_ref(),
            &Int32Array::from(vec![Some(-1), Some(-1), None]) as &dyn Array
        );
        assert_eq!(modulo(Some(0)).null_count(), 3);
        assert_eq!(modulo(None).null_count(), 3);
    }

    #[test]
    fn float_modulo_is_polars_formula() {
        let a = Float64Array::from(vec![5.5, -5.5, 3.0, f64::INFINITY, -0.0]);
        let b = batch(vec![("a", Arc::new(a))]);
        let by = |divisor: f64, op| {
            run(
                &Expr::col("a").binary(op, lit(Float64Array::from(vec![divisor]))),
                &b,
            )
        };
        let remainder = by(-2.5, BinaryOp::Mod);
        let remainder = remainder.as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(&remainder.values()[..3], &[-2.0, -0.5, -2.0]);
        assert!(remainder.value(3).is_nan());
        assert_eq!(
            remainder.value(4).to_bits(),
            0.0f64.to_bits(),
            "-0.0 % -2.5 is 0.0 as in Polars"
        );
        let infinite = by(f64::INFINITY, BinaryOp::Mod);
        assert!(
            infinite
                .as_primitive::<arrow::datatypes::Float64Type>()
                .values()
                .iter()
                .all(|v| v.is_nan())
        );
        let quotient = by(-2.5, BinaryOp::FloorDiv);
        assert_eq!(
            &quotient
                .as_primitive::<arrow::datatypes::Float64Type>()
                .values()[..3],
            &[-3.0, 2.0, -2.0]
        );
    }

    #[test]
    fn float_comparisons_treat_negative_zero_and_every_nan_as_polars_does() {
        let negative_nan = f32::from_bits(0xFFC0_0000);
        let b = batch(vec![(
            "f",
            Arc::new(Float32Array::from(vec![-0.0, negative_nan, f32::NAN, 1.0])),
        )]);
        let compare = |op, value: f32| {
            run(
                &Expr::col("f").binary(op, lit(Float32Array::from(vec![value]))),
                &b,
            )
        };
        assert_eq!(
            compare(BinaryOp::Eq, 0.0).as_ref(),
            &BooleanArray::from(vec![true, false, false, false]) as &dyn Array
        );
        assert_eq!(
            compare(BinaryOp::Lt, 0.0).as_ref(),
            &BooleanArray::from(vec![false, false, false, false]) as &dyn Array
        );
        assert_eq!(
            compare(BinaryOp::Gt, f32::INFINITY).as_ref(),
            &BooleanArray::from(vec![false, true, true, false]) as &dyn Array
        );
        assert_eq!(
            compare(BinaryOp::Eq, f32::NAN).as_ref(),
            &BooleanArray::from(vec![false, true, true, false]) as &dyn Array
        );
        let is_in = Expr::IsIn {
            input: Arc::new(Expr::col("f")),
            values: Literal(Arc::new(Float32Array::from(vec![0.0, f32::NAN]))),
        };
        assert_eq!(
            run(&is_in, &b).as_ref(),
            &BooleanArray::from(vec![true, true, true, false]) as &dyn Array
        );
    }

    #[test]
    fn long_is_in_lists_match_as_short_ones() {
        use arrow::array::{DictionaryArray, Int64Array, StringArray};
        use arrow::datatypes::Int32Type;
        let negative_nan = f64::from_bits(0xFFF8_0000_0000_0000);
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(3),
            None,
            Some(40),
            Some(7),
            Some(-1),
        ]));
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-0.0),
            Some(negative_nan),
            None,
            Some(2.5),
            Some(9.0),
        ]));
        let strings: ArrayRef = Arc::new(StringArray::from(vec![
            Some("b"),
            None,
            Some("zz"),
            Some("a"),
        ]));
        let cities: DictionaryArray<Int32Type> =
            vec![Some("lima"), None, Some("oslo"), Some("lima")]
                .into_iter()
                .collect();
        let cities: ArrayRef = Arc::new(cities);
        let int_candidates = |extra: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(Int64Array::from(
                extra
                    .into_iter()
                    .chain((100..130).map(Some))
                    .collect::<Vec<_>>(),
            ))
        };
        let cases: Vec<(ArrayRef, ArrayRef, Vec<Option<bool>>)> = vec![
            (
                ints.clone(),
                int_candidates(vec![Some(3), None, Some(7)]),
                vec![Some(true), None, Some(false), Some(true), Some(false)],
            ),
            (
                floats,
                Arc::new(Float64Array::from(
                    (0..30)
                        .map(|i| i as f64 + 0.5)
                        .chain([0.0, f64::NAN])
                        .collect::<Vec<_>>(),
                )),
                vec![Some(true), Some(true), None, Some(true), Some(false)],
            ),
            (
                strings,
                Arc::new(StringArray::from_iter_values(
                    (0..30)
                        .map(|i| format!("s{i}"))
                        .chain(["a".to_string(), "zz".to_string()]),
                )),
                vec![Some(false), None, Some(true), Some(true)],
            ),
            (
                cities,
                Arc::new(StringArray::from_iter_values(
                    (0..30).map(|i| format!("c{i}")).chain(["lima".to_string()]),
                )),
                vec![Some(true), None, Some(false), Some(true)],
            ),
        ];
        for (column, candidates, expected) in cases {
            let b = batch(vec![("x", column.clone())]);
            let is_in = Expr::IsIn {
                input: Arc::new(Expr::col("x")),
                values: Literal(candidates.clone()),
            };
            let expected = BooleanArray::from(expected);
            assert_eq!(
                run(&is_in, &b).as_ref(),
                &expected as &dyn Array,
                "{:?}",
                column.data_type()
            );
            assert_eq!(
                is_in_linear(&column, &candidates).unwrap(),
                expected,
                "{:?}",
                column.data_type()
            );
        }
    }

    #[test]
    fn is_in_gives_null_for_null_input_and_ignores_null_candidates() {
        let b = batch(vec![(
            "x",
            Arc::new(Int8Array::from(vec![Some(1), None, Some(3)])),
        )]);
        let is_in = Expr::IsIn {
            input: Arc::new(Expr::col("x")),
            values: Literal(Arc::new(Int8Array::from(vec![None, Some(3)]))),
        };
        assert_eq!(
            run(&is_in, &b).as_ref(),
            &BooleanArray::from(vec![Some(false), None, Some(true)]) as &dyn Array
        );
        let untyped = batch(vec![("x", Arc::new(NullArray::new(2)))]);
        let is_in = Expr::IsIn {
            input: Arc::new(Expr::col("x")),
            values: Literal(Arc::new(NullArray::new(1))),
        };
        assert_eq!(run(&is_in, &untyped).logical_null_count(), 2);
    }

    #[test]
    fn a_null_or_untyped_null_condition_counts_as_false() {
        let b = batch(vec![(
            "c",
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        )]);
        let case = |condition: Expr| Expr::Case {
            branches: vec![(condition, lit(Int32Array::from(vec![1])))],
            otherwise: Arc::new(lit(Int32Array::from(vec![2]))),
        };
        assert_eq!(
            run(&case(Expr::col("c")), &b).as_ref(),
            &Int32Array::from(vec![1, 2, 2]) as &dyn Array
        );
        assert_eq!(
            run(&case(Expr::Literal(Literal::null())), &b).as_ref(),
            &Int32Array::from(vec![2, 2, 2]) as &dyn Array
        );
    }

    #[test]
    fn when_branches_are_evaluated_only_for_the_rows_that_take_them() {
        let b = batch(vec![(
            "x",
            Arc::new(Int8Array::from(vec![Some(1), Some(-3), None, Some(5)])),
        )]);
        let to_unsigned = Expr::Cast {
            input: Arc::new(Expr::col("x")),
            to: DataType::UInt8,
        };
        let zero = lit(UInt8Array::from(vec![0]));
        let non_negative = Expr::col("x").binary(BinaryOp::GtEq, lit(Int8Array::from(vec![0])));
        let guarded = Expr::Case {
            branches: vec![(non_negative.clone(), to_unsigned.clone())],
            otherwise: Arc::new(zero.clone()),
        };
        assert_eq!(
            run(&guarded, &b).as_ref(),
            &UInt8Array::from(vec![1, 0, 0, 5]) as &dyn Array
        );
        let in_otherwise = Expr::Case {
            branches: vec![(non_negative.unary(UnaryOp::Not), zero.clone())],
            otherwise: Arc::new(to_unsigned.clone()),
        };
        assert_eq!(
            run(&in_otherwise, &b).as_ref(),
            &UInt8Array::from(vec![Some(1), Some(0), None, Some(5)]) as &dyn Array
        );
        // A row that takes the branch and fails still fails.
        let unguarded = Expr::Case {
            branches: vec![(
                Expr::col("x").unary(UnaryOp::IsNotNull),
                to_unsigned.clone(),
            )],
            otherwise: Arc::new(zero.clone()),
        };
        assert!(evaluate(&unguarded, &b).is_err());
        // A branch no row takes is never evaluated on a failing value.
        let never = Expr::Case {
            branches: vec![(Expr::Literal(Literal::null()), to_unsigned)],
            otherwise: Arc::new(zero),
        };
        assert_eq!(
            run(&never, &b).as_ref(),
            &UInt8Array::from(vec![0, 0, 0, 0]) as &dyn Array
        );
    }

    #[test]
    fn abs_wraps_and_leaves_unsigned_values_alone() {
        let b = batch(vec![
            (
                "i",
                Arc::new(Int8Array::from(vec![Some(-128), Some(-5), None, Some(7)])),
            ),
            (
                "u",
                Arc::new(UInt8Array::from(vec![Some(255), Some(0), None, Some(7)])),
            ),
        ]);
        assert_eq!(
            run(&Expr::col("i").unary(UnaryOp::Abs), &b).as_ref(),
            &Int8Array::from(vec![Some(-128), Some(5), None, Some(7)]) as &dyn Array
        );
        assert_eq!(
            run(&Expr::col("u").unary(UnaryOp::Abs), &b).as_ref(),
            b.column(1).as_ref()
        );
    }

    #[test]
    fn month_and_day_are_int8_and_strings_count_characters() {
        let b = batch(vec![
            (
                "d",
                Arc::new(Date32Array::from(vec![Some(-1), None, Some(11_016)])),
            ),
            (
                "s",
                Arc::new(arrow::array::StringArray::from(vec![
                    Some("héllo"),
                    None,
                    Some(""),
                ])),
            ),
        ]);
        assert_eq!(
            run(&Expr::col("d").unary(UnaryOp::Month), &b).as_ref(),
            &Int8Array::from(vec![Some(12), None, Some(2)]) as &dyn Array
        );
        assert_eq!(
            run(&Expr::col("d").unary(UnaryOp::Day), &b).as_ref(),
            &Int8Array::from(vec![Some(31), None, Some(29)]) as &dyn Array
        );
        assert_eq!(
            run(&Expr::col("d").unary(UnaryOp::Year), &b).as_ref(),
            &Int32Array::from(vec![Some(1969), None, Some(2000)]) as &dyn Array
        );
        assert_eq!(
            run(&Expr::col("s").unary(UnaryOp::StrLen), &b).as_ref(),
            &UInt32Array::from(vec![Some(5), None, Some(0)]) as &dyn Array
        );
    }

    #[test]
    fn decimal_arithmetic_matches_arrows_kernels_and_leaves_overflow_to_them() {
        use arrow::array::Decimal128Array;
        let decimals = |values: Vec<i128>, p: u8, s: i8| -> ArrayRef {
            Arc::new(
                Decimal128Array::from(values)
                    .with_precision_and_scale(p, s)
                    .unwrap(),
            )
        };
        let price = decimals(vec![12_345, -9_999, 0, 700], 15, 2);
        let discount = decimals(vec![5, 10, 0, 99], 15, 2);
        let big = decimals(vec![i128::MAX / 3, 1, 2, 3], 38, 0);
        let wide = decimals(vec![i64::MAX as i128 * 4, -3, 2, 1], 38, 1);
        let one = Value::Scalar(decimals(vec![1], 1, 0));
        let cases: Vec<(BinaryOp, Value, Value)> = vec![
            (BinaryOp::Sub, one.clone(), Value::Array(discount.clone())),
            (BinaryOp::Add, Value::Array(discount.clone()), one.clone()),
            (
                BinaryOp::Mul,
                Value::Array(price.clone()),
                Value::Array(discount.clone()),
            ),
            (
                BinaryOp::Mul,
                Value::Array(wide.clone()),
                Value::Array(wide.clone()),
            ),
            (
                BinaryOp::Add,
                Value::Array(price.clone()),
                Value::Array(wide.clone()),
            ),
            (
                BinaryOp::Add,
                Value::Array(big.clone()),
                Value::Array(big.clone()),
            ),
            (
                BinaryOp::Mul,
                Value::Array(big.clone()),
                Value::Scalar(decimals(vec![10], 2, 0)),
            ),
        ];
        for (op, left, right) in cases {
            let (l, r) = (left.datum(), right.datum());
            let expected = match op {
                BinaryOp::Add => numeric::add_wrapping(&*l, &*r),
                BinaryOp::Sub => numeric::sub_wrapping(&*l, &*r),
                _ => numeric::mul_wrapping(&*l, &*r),
            };
            let fast = decimal_arithmetic(op, &left, &right).unwrap();
            match expected {
                // Overflow: the fast path steps aside, and arrow's kernel reports it.
                Err(_) => assert!(fast.is_none(), "{op:?}"),
                Ok(expected) => assert_eq!(fast.unwrap().to_data(), expected.to_data(), "{op:?}"),
            }
            let got = binary(op, &left, &right, 4);
            assert_eq!(got.is_err(), fast_is_err(op, &left, &right));
        }
        fn fast_is_err(op: BinaryOp, left: &Value, right: &Value) -> bool {
            let (l, r) = (left.datum(), right.datum());
            match op {
                BinaryOp::Add => numeric::add_wrapping(&*l, &*r).is_err(),
                BinaryOp::Sub => numeric::sub_wrapping(&*l, &*r).is_err(),
                _ => numeric::mul_wrapping(&*l, &*r).is_err(),
            }
        }
        // Nulls go to arrow's kernel.
        let with_null: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(1), None])
                .with_precision_and_scale(5, 2)
                .unwrap(),
        );
        assert!(
            decimal_arithmetic(
                BinaryOp::Add,
                &Value::Array(with_null.clone()),
                &Value::Array(with_null)
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn a_strict_cast_that_fails_names_the_expression_and_both_types() {
        let b = batch(vec![("x", Arc::new(Int8Array::from(vec![1, -3])))]);
        let cast = Expr::Cast {
            input: Arc::new(Expr::col("x")),
            to: DataType::UInt8,
        };
        let error = evaluate(&cast, &b).unwrap_err().to_string();
        assert!(
            error.contains("col(\"x\") (int8) to uint8") && error.contains("-3"),
            "{error}"
        );
    }

    #[test]
    fn a_same_width_integer_cast_whose_values_fit_shares_the_buffer() {
        let values: ArrayRef = Arc::new(Int32Array::from(vec![
            Some(7),
            None,
            Some(0),
            Some(i32::MAX),
        ]));
        let b = batch(vec![("x", values.clone())]);
        let cast = |to: DataType| Expr::Cast {
            input: Arc::new(Expr::col("x")),
            to,
        };
        let unsigned = run(&cast(DataType::UInt32), &b);
        assert_eq!(
            unsigned.as_ref(),
            &UInt32Array::from(vec![Some(7), None, Some(0), Some(i32::MAX as u32)]) as &dyn Array
        );
        let (input, output) = (values.to_data(), unsigned.to_data());
        assert_eq!(
            input.buffers()[0].as_ptr(),
            output.buffers()[0].as_ptr(),
            "no copy"
        );
        // And back, from a slice (the offset is kept).
        let sliced = unsigned.slice(2, 2);
        let back = same_width_integer_cast(sliced.as_ref(), &DataType::Int32).unwrap();
        assert_eq!(
            back.as_ref(),
            &Int32Array::from(vec![0, i32::MAX]) as &dyn Array
        );
        // A null slot's bits do not count: only values must fit.
        let null_slot_negative =
            Int32Array::new(vec![5, -1].into(), Some(vec![true, false].into()));
        let cast_nulls = same_width_integer_cast(&null_slot_negative, &DataType::UInt32).unwrap();
        assert_eq!(
            cast_nulls.as_ref(),
            &UInt32Array::from(vec![Some(5), None]) as &dyn Array
        );
    }

    #[test]
    fn a_same_width_integer_cast_with_a_value_that_does_not_fit_still_fails() {
        let b = batch(vec![(
            "x",
            Arc::new(Int32Array::from(vec![3, -1])) as ArrayRef,
        )]);
        let cast = Expr::Cast {
            input: Arc::new(Expr::col("x")),
            to: DataType::UInt32,
        };
        assert!(evaluate(&cast, &b).unwrap_err().to_string().contains("-1"));
        let big = arrow::array::UInt64Array::from(vec![1, u64::MAX]);
        assert!(same_width_integer_cast(&big, &DataType::Int64).is_none());
        // Other widths and other types convert as before.
        assert!(same_width_integer_cast(&big, &DataType::Int32).is_none());
        assert!(same_width_integer_cast(&Int32Array::from(vec![1]), &DataType::Float32).is_none());
    }
}
