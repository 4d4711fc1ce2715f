//! Type checking and coercion of expressions against a schema, when a plan is built.
//!
//! `resolve` returns the expression with every implicit conversion made explicit (casts of
//! literals or columns to a common type), so the executor never guesses. Literal numbers take
//! the type of the column they meet when the value fits (`col("age") > 94` on an int32 column
//! compares int32s), as in Polars; otherwise both sides go to their common supertype.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, new_empty_array, new_null_array};
use arrow::compute::kernels::numeric;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Field, Float32Type, Float64Type, Int64Type, Schema, TimeUnit, UInt64Type,
};
use relay_storage::type_name;

use crate::error::{PlanError, Result};
use crate::expr::{AggExpr, AggFunc, BinaryOp, Expr, Literal, UnaryOp, with_stack_room};

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
        && !matches!(
            t,
            DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The type values are compared as: dictionaries compare by their values.
fn value_type(t: &DataType) -> &DataType {
    match t {
        DataType::Dictionary(_, value) => value,
        other => other,
    }
}

fn is_decimal(t: &DataType) -> bool {
    matches!(t, DataType::Decimal128(..))
}

/// The decimal type that holds every value of an integer type exactly (int64: 19 digits).
fn decimal_of_integer_type(t: &DataType) -> DataType {
    let digits = match t {
        DataType::Int8 | DataType::UInt8 => 3,
        DataType::Int16 | DataType::UInt16 => 5,
        DataType::Int32 | DataType::UInt32 => 10,
        DataType::Int64 => 19,
        _ => 20,
    };
    DataType::Decimal128(digits, 0)
}

/// The decimal type a number literal takes against a decimal operand (as SQL engines type
/// `0.05` or `24`): an integer gets as many digits as it has; a float gets the digits of its
/// shortest exact decimal form (`0.05` is decimal(2, 2)). None for a float that has no such
/// form within 38 digits (NaN, infinities, `1e-40`): it then meets the decimal as a float.
fn decimal_literal_type(literal: &Literal) -> Option<DataType> {
    let array = &literal.0;
    if array.len() != 1 || array.logical_null_count() != 0 {
        return None;
    }
    let text = match array.data_type() {
        t if t.is_integer() => {
            return integer_value(literal)
                .map(|v| DataType::Decimal128(digit_count(v.unsigned_abs()), 0));
        }
        DataType::Float64 => array.as_primitive::<Float64Type>().value(0),
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(0)),
        _ => return None,
    };
    if !text.is_finite() {
        return None;
    }
    // Rust prints the shortest decimal that reads back as the same float, never in exponent
    // form: "0.05", "24", "0.000001".
    let shown = format!("{}", text.abs());
    let (whole, fraction) = shown.split_once('.').unwrap_or((&shown, ""));
    let whole = whole.trim_start_matches('0');
    let digits = whole.len() + fraction.len();
    let precision = u8::try_from(digits.max(1)).ok().filter(|&p| p <= 38)?;
    Some(DataType::Decimal128(precision, fraction.len() as i8))
}

fn digit_count(value: u128) -> u8 {
    let mut digits = 1;
    let mut rest = value / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    digits
}

/// The decimal both decimals convert to without losing digits: the larger scale, and room
/// for the larger integer part (at most 38 digits, decimal128's limit).
fn decimal_supertype(a: &DataType, b: &DataType) -> Option<DataType> {
    let digits = |t: &DataType| match t {
        DataType::Decimal128(p, s) => Some((*p as i16, *s as i16)),
        DataType::Null => Some((1, 0)),
        t if t.is_integer() => match decimal_of_integer_type(t) {
            DataType::Decimal128(p, s) => Some((p as i16, s as i16)),
            _ => None,
        },
        _ => None,
    };
    let ((pa, sa), (pb, sb)) = (digits(a)?, digits(b)?);
    let scale = sa.max(sb);
    let precision = ((pa - sa).max(pb - sb) + scale).min(38);
    Some(DataType::Decimal128(precision as u8, scale as i8))
}

fn int_bits(t: &DataType) -> u32 {
    t.primitive_width().map_or(64, |w| (w * 8) as u32)
}

/// The smallest type both numeric types convert to without losing range.
fn numeric_supertype(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    if a == b {
        return a.clone();
    }
    match (a, b) {
        (Null, other) | (other, Null) => other.clone(),
        (Float64, _) | (_, Float64) => Float64,
        (Float32, other) | (other, Float32) => {
            if int_bits(other) <= 16 || other == &Float16 {
                Float32
            } else {
                Float64
            }
        }
        (Float16, other) | (other, Float16) => {
            if int_bits(other) <= 8 {
                Float16
            } else if int_bits(other) <= 16 {
                Float32
            } else {
                Float64
            }
        }
        _ => {
            let (a_signed, b_signed) = (a.is_signed_integer(), b.is_signed_integer());
            let bits = int_bits(a).max(int_bits(b));
            if a_signed == b_signed {
                if int_bits(a) >= int_bits(b) {
                    a.clone()
                } else {
                    b.clone()
                }
            } else {
                // Mixed signedness: a signed type wide enough for the unsigned one.
                let unsigned_bits = if a_signed { int_bits(b) } else { int_bits(a) };
                let needed = bits.max(unsigned_bits * 2);
                match needed {
                    0..=8 => Int8,
                    9..=16 => Int16,
                    17..=32 => Int32,
                    33..=64 => Int64,
                    _ => Float64,
                }
            }
        }
    }
}

fn finer_unit(a: &TimeUnit, b: &TimeUnit) -> TimeUnit {
    fn rank(u: &TimeUnit) -> u8 {
        match u {
            TimeUnit::Second => 0,
            TimeUnit::Millisecond => 1,
            TimeUnit::Microsecond => 2,
            TimeUnit::Nanosecond => 3,
        }
    }
    if rank(a) >= rank(b) { *a } else { *b }
}

/// The common type two sides of a comparison (or branches of a `when`) are converted to.
fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    let (a, b) = (value_type(a), value_type(b));
    if a == b {
        return Some(a.clone());
    }
    match (a, b) {
        (Null, other) | (other, Null) => Some(other.clone()),
        _ if is_numeric(a) && is_numeric(b) => Some(numeric_supertype(a, b)),
        // A decimal meets an integer or a decimal as a decimal, a float as a float.
        (Decimal128(..), other) | (other, Decimal128(..)) if other.is_floating() => Some(Float64),
        (Decimal128(..), _) | (_, Decimal128(..)) => decimal_supertype(a, b),
        _ if is_string(a) && is_string(b) => Some(LargeUtf8),
        (Binary | LargeBinary, Binary | LargeBinary) => Some(LargeBinary),
        (Timestamp(ua, tza), Timestamp(ub, tzb)) if tza == tzb => {
            Some(Timestamp(finer_unit(ua, ub), tza.clone()))
        }
        (Date32, Date64) | (Date64, Date32) => Some(Date64),
        (Date32 | Date64, Timestamp(unit, tz)) | (Timestamp(unit, tz), Date32 | Date64) => {
            Some(Timestamp(*unit, tz.clone()))
        }
        (Duration(ua), Duration(ub)) => Some(Duration(finer_unit(ua, ub))),
        _ => None,
    }
}

/// Whether `literal` is an untyped null (`lit(None)`): it takes the type of what it meets.
fn is_untyped_null(literal: &Literal) -> bool {
    literal.data_type() == &DataType::Null
}

/// The value of a one-element integer literal, widened to i128 (None when null or not an
/// integer).
fn integer_value(literal: &Literal) -> Option<i128> {
    let array = &literal.0;
    if array.len() != 1 || array.logical_null_count() != 0 {
        return None;
    }
    let value = match array.data_type() {
        DataType::UInt64 => i128::from(array.as_primitive::<UInt64Type>().value(0)),
        t if t.is_integer() => {
            let as_i64 =
                cast_with_options(array, &DataType::Int64, &CastOptions::default()).ok()?;
            i128::from(as_i64.as_primitive::<Int64Type>().value(0))
        }
        _ => return None,
    };
    Some(value)
}

/// The smallest integer type that holds `value`, unsigned when `prefer_unsigned` and the value
/// is not negative (Polars materializes an integer literal that does not fit the column's type
/// this way: `int8 + 200` is int16, `uint8 + 1000` is uint16, `uint8 + -1` is int16).
fn smallest_integer_type(value: i128, prefer_unsigned: bool) -> DataType {
    use DataType::*;
    let fits = |min: i128, max: i128| min <= value && value <= max;
    if prefer_unsigned && value >= 0 {
        for (t, max) in [
            (UInt8, u8::MAX as i128),
            (UInt16, u16::MAX as i128),
            (UInt32, u32::MAX as i128),
        ] {
            if value <= max {
                return t;
            }
        }
        return UInt64;
    }
    for (t, min, max) in [
        (Int8, i8::MIN as i128, i8::MAX as i128),
        (Int16, i16::MIN as i128, i16::MAX as i128),
        (Int32, i32::MIN as i128, i32::MAX as i128),
        (Int64, i64::MIN as i128, i64::MAX as i128),
    ] {
        if fits(min, max) {
            return t;
        }
    }
    UInt64
}

/// `literal` converted to `target` if every value survives the round trip exactly.
fn fit_exactly(literal: &Literal, target: &DataType) -> Option<Literal> {
    if literal.data_type() == target {
        return Some(literal.clone());
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let converted = cast_with_options(&literal.0, target, &options).ok()?;
    let back = cast_with_options(&converted, literal.data_type(), &options).ok()?;
    (back.to_data() == literal.0.to_data()).then(|| Literal(converted))
}

/// The type a literal takes when it meets an operand of type `other`, as in Polars:
/// - `lit(None)` takes the other side's type;
/// - an integer takes the other side's integer type when the value fits, else the smallest
///   integer type that holds it (the common supertype then decides); it takes a float side's
///   type whatever its value (`float32 + 1` is float32);
/// - a float takes a float side's type (`col("f32") > 0.1` compares float32s), and stays
///   float64 against integers (`int8 * 2.0` is float64, never int8);
/// - a string takes the other side's string type (against a dictionary of strings it keeps the
///   dictionary encoded); dates and datetimes keep their own type.
fn literal_type_against(literal: &Literal, other: &DataType) -> DataType {
    let own = literal.data_type();
    let other = value_type(other);
    if is_untyped_null(literal) {
        return other.clone();
    }
    if is_decimal(other) && is_numeric(own) {
        return decimal_literal_type(literal).unwrap_or(DataType::Float64);
    }
    if is_numeric(own) && is_numeric(other) {
        return match (own.is_floating(), other.is_floating()) {
            (_, true) => other.clone(),
            (true, false) => own.clone(),
            (false, false) if fit_exactly(literal, other).is_some() => other.clone(),
            (false, false) => match integer_value(literal) {
                Some(value) => smallest_integer_type(value, other.is_unsigned_integer()),
                None => other.clone(), // a typed null
            },
        };
    }
    if is_string(own) && is_string(other) {
        return other.clone();
    }
    // Dates and datetimes keep their type (a datetime filling a date column makes datetimes,
    // even at midnight); the common supertype decides.
    own.clone()
}

/// The type `expr` (of type `t`) is treated as when it meets an operand of type `other`: a
/// literal's type follows `literal_type_against`, other expressions keep theirs.
fn effective_type(expr: &Expr, t: &DataType, other_expr: &Expr, other: &DataType) -> DataType {
    match expr {
        Expr::Literal(literal) if !matches!(other_expr, Expr::Literal(_)) => {
            literal_type_against(literal, other)
        }
        _ => t.clone(),
    }
}

/// `expr` (of type `from`) converted to `to`. A literal is converted now, strictly (a value
/// that does not convert stays a cast, for the executor to report); other expressions get a
/// cast node.
fn cast_to(expr: Expr, from: &DataType, to: &DataType) -> Expr {
    if from == to {
        return expr;
    }
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    match expr {
        Expr::Literal(literal) => match cast_with_options(&literal.0, to, &strict) {
            Ok(array) => Expr::Literal(Literal(array)),
            Err(_) => Expr::Cast {
                input: Arc::new(Expr::Literal(literal)),
                to: to.clone(),
            },
        },
        other => Expr::Cast {
            input: Arc::new(other),
            to: to.clone(),
        },
    }
}

/// Brings both sides of a comparison to one type. A dictionary side stays encoded when the
/// other side has its value type (arrow-rs compares dictionaries by value).
fn coerce_pair(
    left: (Expr, DataType),
    right: (Expr, DataType),
    context: &dyn Fn() -> String,
) -> Result<(Expr, Expr)> {
    let ((left, lt), (right, rt)) = (left, right);
    let left_as = effective_type(&left, &lt, &right, &rt);
    let right_as = effective_type(&right, &rt, &left, &lt);
    let common = common_type(&left_as, &right_as).ok_or_else(|| PlanError::Type(context()))?;
    let keep = |expr: Expr, t: &DataType| {
        if value_type(t) == &common {
            expr
        } else {
            cast_to(expr, t, &common)
        }
    };
    Ok((keep(left, &lt), keep(right, &rt)))
}

/// The common type of several values that meet (`when` branches): the non-literal ones decide
/// first, then each literal joins as `literal_type_against` says. None when two clash.
fn common_type_of(
    values: &[(&Expr, &DataType)],
) -> std::result::Result<DataType, (DataType, DataType)> {
    let mut common: Option<DataType> = None;
    let literal = |e: &Expr| matches!(e, Expr::Literal(_));
    for (_, t) in values.iter().filter(|(e, _)| !literal(e)) {
        common = Some(match common {
            None => value_type(t).clone(),
            Some(c) => common_type(&c, t).ok_or_else(|| (c.clone(), (*t).clone()))?,
        });
    }
    for (expr, t) in values.iter().filter(|(e, _)| literal(e)) {
        let Expr::Literal(l) = expr else {
            unreachable!("filtered on literals")
        };
        common = Some(match common {
            None => value_type(t).clone(),
            Some(c) => {
                let as_type = literal_type_against(l, &c);
                common_type(&c, &as_type).ok_or_else(|| (c.clone(), (*t).clone()))?
            }
        });
    }
    Ok(common.unwrap_or(DataType::Null))
}

/// Candidates of `is_in` converted to `target`, keeping only those that convert exactly: one
/// that does not (1000 against int8, a datetime with a time of day against dates) can equal no
/// value of the column, and neither can a null. No candidate left is written as one null
/// candidate, which matches nothing: a literal always holds a value to show in plans.
fn exact_candidates(values: &ArrayRef, target: &DataType) -> Option<ArrayRef> {
    let kept = if values.data_type() == &DataType::Null {
        new_empty_array(target)
    } else {
        let converted = cast_with_options(values, target, &CastOptions::default()).ok()?;
        let back =
            cast_with_options(&converted, values.data_type(), &CastOptions::default()).ok()?;
        let exact: BooleanArray = (0..values.len())
            .map(|i| {
                Some(
                    converted.is_valid(i)
                        && values.is_valid(i)
                        && back.slice(i, 1).to_data() == values.slice(i, 1).to_data(),
                )
            })
            .collect();
        arrow::compute::filter(&converted, &exact).ok()?
    };
    Some(if kept.is_empty() {
        new_null_array(target, 1)
    } else {
        kept
    })
}

/// The resolved expression and its output type.
#[derive(Debug)]
pub struct Resolved {
    pub expr: Expr,
    pub data_type: DataType,
}

pub fn resolve(expr: Expr, schema: &Schema) -> Result<Resolved> {
    expr.check_depth()?;
    let (expr, data_type) = resolve_inner(expr, schema)?;
    Ok(Resolved { expr, data_type })
}

/// Arithmetic where one side is a decimal. Against a float, both sides are float64; against an
/// integer or a decimal, both are decimals and the result type is arrow-rs's rule for the
/// operation (`+`/`-`: the larger scale plus a carry digit; `*`: the scales add up; `/`: a
/// scale wide enough for the quotient), capped at 38 digits. The executor runs the same
/// kernels, so the type found here is the type computed.
fn decimal_arithmetic(
    op: BinaryOp,
    left: (Expr, DataType),
    right: (Expr, DataType),
    mismatch: &dyn Fn() -> String,
) -> Result<(Expr, DataType)> {
    let ((left, lt), (right, rt)) = (left, right);
    let left_as = effective_type(&left, value_type(&lt), &right, value_type(&rt));
    let right_as = effective_type(&right, value_type(&rt), &left, value_type(&lt));
    let decimal_side = |t: &DataType| match t {
        DataType::Decimal128(..) => Some(t.clone()),
        t if t.is_integer() => Some(decimal_of_integer_type(t)),
        DataType::Null => Some(DataType::Decimal128(1, 0)),
        _ => None,
    };
    let (Some(left_decimal), Some(right_decimal)) =
        (decimal_side(&left_as), decimal_side(&right_as))
    else {
        if left_as.is_floating() || right_as.is_floating() {
            let (left, right) = (
                cast_to(left, &lt, &DataType::Float64),
                cast_to(right, &rt, &DataType::Float64),
            );
            return Ok((left.binary(op, right), DataType::Float64));
        }
        return Err(PlanError::Type(format!(
            "{} (arithmetic needs numbers)",
            mismatch()
        )));
    };
    let (l, r) = (
        new_empty_array(&left_decimal),
        new_empty_array(&right_decimal),
    );
    let computed = match op {
        BinaryOp::Add => numeric::add(&l, &r),
        BinaryOp::Sub => numeric::sub(&l, &r),
        BinaryOp::Mul => numeric::mul(&l, &r),
        BinaryOp::Div => numeric::div(&l, &r),
        _ => {
            return Err(PlanError::Type(format!(
                "{} ({} is not defined for decimals: cast to a float or an integer first)",
                mismatch(),
                op.symbol()
            )));
        }
    };
    let output = computed
        .map_err(|e| PlanError::Type(format!("{} ({e})", mismatch())))?
        .data_type()
        .clone();
    Ok((
        cast_to(left, &lt, &left_decimal).binary(op, cast_to(right, &rt, &right_decimal)),
        output,
    ))
}

/// The field of `schema` called `name`, or `ColumnNotFound` listing the columns it has.
pub(crate) fn field_named<'a>(schema: &'a Schema, name: &str) -> Result<&'a Field> {
    schema
        .field_with_name(name)
        .map_err(|_| PlanError::ColumnNotFound {
            name: name.to_owned(),
            available: schema
                .fields()
                .iter()
                .map(|f| format!("{:?}", f.name()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn describe(expr: &Expr, t: &DataType) -> String {
    format!("{expr} ({})", type_name(t))
}

fn resolve_inner(expr: Expr, schema: &Schema) -> Result<(Expr, DataType)> {
    with_stack_room(|| resolve_node(expr, schema))
}

fn resolve_node(expr: Expr, schema: &Schema) -> Result<(Expr, DataType)> {
    match expr {
        Expr::Column(name) => {
            let t = field_named(schema, &name)?.data_type().clone();
            Ok((Expr::Column(name), t))
        }
        Expr::Literal(literal) => {
            let t = literal.data_type().clone();
            Ok((Expr::Literal(literal), t))
        }
        Expr::Alias { input, name } => {
            let (input, t) = resolve_inner(Arc::unwrap_or_clone(input), schema)?;
            Ok((input.alias(name), t))
        }
        Expr::Binary { op, left, right } => {
            let original = Expr::Binary {
                op,
                left: left.clone(),
                right: right.clone(),
            };
            let (left, lt) = resolve_inner(Arc::unwrap_or_clone(left), schema)?;
            let (right, rt) = resolve_inner(Arc::unwrap_or_clone(right), schema)?;
            let mismatch = || {
                format!(
                    "cannot apply {} to {} and {} in {original}",
                    op.symbol(),
                    describe(&left_name(&original, 0), &lt),
                    describe(&left_name(&original, 1), &rt)
                )
            };
            if op.is_logical() {
                let boolean = |t: &DataType| matches!(t, DataType::Boolean | DataType::Null);
                if !boolean(&lt) || !boolean(&rt) {
                    return Err(PlanError::Type(format!(
                        "{} (both sides must be boolean)",
                        mismatch()
                    )));
                }
                return Ok((left.binary(op, right), DataType::Boolean));
            }
            if op.is_comparison() {
                let (left, right) =
                    coerce_pair((left, lt.clone()), (right, rt.clone()), &mismatch)?;
                return Ok((left.binary(op, right), DataType::Boolean));
            }
            // Arithmetic: numbers only (dictionaries of numbers decode first).
            let (lv, rv) = (value_type(&lt).clone(), value_type(&rt).clone());
            if is_decimal(&lv) || is_decimal(&rv) {
                return decimal_arithmetic(op, (left, lt.clone()), (right, rt.clone()), &mismatch);
            }
            let numeric = |t: &DataType| is_numeric(t) || t == &DataType::Null;
            if !numeric(&lv) || !numeric(&rv) {
                return Err(PlanError::Type(format!(
                    "{} (arithmetic needs numbers)",
                    mismatch()
                )));
            }
            let left_as = effective_type(&left, &lv, &right, &rv);
            let right_as = effective_type(&right, &rv, &left, &lv);
            let mut common = numeric_supertype(&left_as, &right_as);
            if op == BinaryOp::Div && !matches!(common, DataType::Float32 | DataType::Float64) {
                common = DataType::Float64;
            }
            let left = cast_to(left, &lt, &common);
            let right = cast_to(right, &rt, &common);
            Ok((left.binary(op, right), common))
        }
        Expr::Unary { op, input } => {
            let (input, t) = resolve_inner(Arc::unwrap_or_clone(input), schema)?;
            let bad = |what: &str| {
                PlanError::Type(format!(
                    "{}() needs {what}, got {}",
                    op.name(),
                    describe(&input, &t)
                ))
            };
            let out = match op {
                UnaryOp::Not => {
                    if !matches!(t, DataType::Boolean | DataType::Null) {
                        return Err(bad("a boolean"));
                    }
                    DataType::Boolean
                }
                UnaryOp::Negate | UnaryOp::Abs => {
                    if !(is_numeric(value_type(&t)) || is_decimal(&t)) {
                        return Err(bad("a number"));
                    }
                    // As in Polars: an unsigned number has no negation (it would wrap).
                    if op == UnaryOp::Negate && value_type(&t).is_unsigned_integer() {
                        return Err(bad(
                            "a signed number or a float (cast unsigned integers first)",
                        ));
                    }
                    let v = value_type(&t).clone();
                    let input = cast_to(input, &t, &v);
                    return Ok((input.unary(op), v));
                }
                UnaryOp::IsNull | UnaryOp::IsNotNull => DataType::Boolean,
                UnaryOp::StrLen => {
                    if !is_string(value_type(&t)) {
                        return Err(bad("a string"));
                    }
                    DataType::UInt32
                }
                UnaryOp::Year | UnaryOp::Month | UnaryOp::Day => {
                    if !matches!(
                        t,
                        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
                    ) {
                        return Err(bad("a date or timestamp"));
                    }
                    // Polars' types: the year is int32, the month and the day int8.
                    if op == UnaryOp::Year {
                        DataType::Int32
                    } else {
                        DataType::Int8
                    }
                }
            };
            Ok((input.unary(op), out))
        }
        Expr::StringMatch {
            kind,
            input,
            pattern,
        } => {
            let (input, t) = resolve_inner(Arc::unwrap_or_clone(input), schema)?;
            if !is_string(value_type(&t)) {
                return Err(PlanError::Type(format!(
                    "{}() needs a string, got {}",
                    kind.name(),
                    describe(&input, &t)
                )));
            }
            Ok((
                Expr::StringMatch {
                    kind,
                    input: Arc::new(input),
                    pattern,
                },
                DataType::Boolean,
            ))
        }
        Expr::IsIn { input, values } => {
            let (input, t) = resolve_inner(Arc::unwrap_or_clone(input), schema)?;
            let target = value_type(&t).clone();
            let given = values.data_type().clone();
            // As in Polars 2: candidates compare with the column's values without a lossy
            // conversion, so float candidates for an integer column are an error (cast one
            // side explicitly); integers for a float column convert exactly or are dropped.
            let comparable = given == DataType::Null
                || if is_numeric(&target) || is_numeric(&given) {
                    is_numeric(&target)
                        && is_numeric(&given)
                        && !(given.is_floating() && target.is_integer())
                } else {
                    common_type(&target, &given).is_some()
                };
            let values = comparable
                .then(|| exact_candidates(&values.0, &target))
                .flatten()
                .ok_or_else(|| {
                    PlanError::Type(format!(
                        "is_in() values of type {} cannot be compared with {}",
                        type_name(&given),
                        describe(&input, &t)
                    ))
                })?;
            Ok((
                Expr::IsIn {
                    input: Arc::new(input),
                    values: Literal(values),
                },
                DataType::Boolean,
            ))
        }
        Expr::FillNull { input, value } => {
            let original = format!("{input}.fill_null({value})");
            let (input, t) = resolve_inner(Arc::unwrap_or_clone(input), schema)?;
            let (value, vt) = resolve_inner(Arc::unwrap_or_clone(value), schema)?;
            let input_as = effective_type(&input, &t, &value, &vt);
            let value_as = effective_type(&value, &vt, &input, &t);
            let common = common_type(&input_as, &value_as).ok_or_else(|| {
                PlanError::Type(format!(
                    "cannot fill nulls of {} with {} in {original}",
                    describe(&input, &t),
                    type_name(&vt)
                ))
            })?;
            let input = cast_to(input, &t, &common);
            let value = cast_to(value, &vt, &common);
            Ok((
                Expr::FillNull {
                    input: Arc::new(input),
                    value: Arc::new(value),
                },
                common,
            ))
        }
        Expr::Cast { input, to } => {
            let (input, t) = resolve_inner(Arc::unwrap_or_clone(input), schema)?;
            if !arrow::compute::can_cast_types(&t, &to) {
                return Err(PlanError::Type(format!(
                    "cannot cast {} to {}",
                    describe(&input, &t),
                    type_name(&to)
                )));
            }
            // Kept as a cast even of a literal: `lit(127).cast("int8")` is a typed value, not a
            // literal that adapts to what it meets (`+ 1` then wraps in int8, as in Polars).
            // Constant folding converts it later, strictly.
            let cast = if t == to {
                input
            } else {
                Expr::Cast {
                    input: Arc::new(input),
                    to: to.clone(),
                }
            };
            Ok((cast, to))
        }
        Expr::Case {
            branches,
            otherwise,
        } => {
            let mut resolved = Vec::with_capacity(branches.len());
            for (when, then) in branches {
                let (when, wt) = resolve_inner(when, schema)?;
                if !matches!(wt, DataType::Boolean | DataType::Null) {
                    return Err(PlanError::Type(format!(
                        "when() needs a boolean condition, got {}",
                        describe(&when, &wt)
                    )));
                }
                let (then, tt) = resolve_inner(then, schema)?;
                resolved.push((when, then, tt));
            }
            let (otherwise, otherwise_type) =
                resolve_inner(Arc::unwrap_or_clone(otherwise), schema)?;
            let values: Vec<(&Expr, &DataType)> = resolved
                .iter()
                .map(|(_, then, tt)| (then, tt))
                .chain(std::iter::once((&otherwise, &otherwise_type)))
                .collect();
            let out_type = common_type_of(&values).map_err(|(a, b)| {
                PlanError::Type(format!(
                    "when/then/otherwise branches have incompatible types {} and {}",
                    type_name(&a),
                    type_name(&b)
                ))
            })?;
            let branches = resolved
                .into_iter()
                .map(|(when, then, tt)| (when, cast_to(then, &tt, &out_type)))
                .collect();
            let otherwise = cast_to(otherwise, &otherwise_type, &out_type);
            Ok((
                Expr::Case {
                    branches,
                    otherwise: Arc::new(otherwise),
                },
                out_type,
            ))
        }
    }
}

/// The `index`-th operand of a binary expression, for error messages.
fn left_name(expr: &Expr, index: usize) -> Expr {
    match expr {
        Expr::Binary { left, right, .. } => {
            if index == 0 {
                (**left).clone()
            } else {
                (**right).clone()
            }
        }
        other => other.clone(),
    }
}

/// The output schema of a list of (already resolved) projections.
pub fn project_schema(exprs: &[(Expr, DataType)]) -> Arc<Schema> {
    Arc::new(Schema::new(
        exprs
            .iter()
            .map(|(expr, t)| arrow::datatypes::Field::new(expr.output_name(), t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// The aggregation with its input resolved against `schema`, and the type of its output.
/// Sums, means, spreads and quantiles need numbers (decimals included), minima and maxima
/// ordered values. Output types follow Polars: a decimal sums to a 38-digit decimal of the
/// same scale, a float32 median or quantile stays float32, other means and quantiles are
/// float64.
pub fn resolve_aggregate(agg: AggExpr, schema: &Schema) -> Result<(AggExpr, DataType)> {
    let AggExpr { func, input, name } = agg;
    let (input, input_type) = resolve_inner(input, schema)?;
    let refuse = |needs: &str| {
        PlanError::Type(format!(
            "{}() needs {needs}, but {} is {} (output column {name:?})",
            func.name(),
            input,
            type_name(&input_type)
        ))
    };
    let is_decimal = matches!(input_type, DataType::Decimal128(..));
    let output = match func {
        AggFunc::Sum
        | AggFunc::Mean
        | AggFunc::Std
        | AggFunc::Var
        | AggFunc::Median
        | AggFunc::Quantile(_)
            if !(is_numeric(&input_type) || is_decimal) =>
        {
            return Err(refuse("a numeric column"));
        }
        AggFunc::Sum => match &input_type {
            DataType::Float16 | DataType::Float32 => DataType::Float32,
            DataType::Float64 => DataType::Float64,
            DataType::Decimal128(_, scale) => DataType::Decimal128(38, *scale),
            t if t.is_signed_integer() => DataType::Int64,
            _ => DataType::UInt64,
        },
        AggFunc::Median | AggFunc::Quantile(_)
            if matches!(input_type, DataType::Float16 | DataType::Float32) =>
        {
            DataType::Float32
        }
        AggFunc::Mean | AggFunc::Std | AggFunc::Var | AggFunc::Median | AggFunc::Quantile(_) => {
            DataType::Float64
        }
        AggFunc::Min | AggFunc::Max if !is_orderable(&input_type) => {
            return Err(refuse("comparable values"));
        }
        AggFunc::Min | AggFunc::Max | AggFunc::First | AggFunc::Last => input_type.clone(),
        AggFunc::Count | AggFunc::Len | AggFunc::NUnique => DataType::UInt32,
    };
    Ok((AggExpr { func, input, name }, output))
}

/// Whether values of `t` have an order that min / max / sort use: numbers, strings, binary,
/// booleans, dates and times, dictionaries of those.
pub fn is_orderable(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, value) => is_orderable(value),
        t => {
            t.is_primitive()
                || is_string(t)
                || matches!(
                    t,
                    DataType::Boolean | DataType::Binary | DataType::LargeBinary | DataType::Null
                )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("age", DataType::Int32, true),
            Field::new("f0", DataType::Float32, true),
            Field::new(
                "city",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("name", DataType::Utf8, true),
        ])
    }

    fn int(v: i64) -> Expr {
        Expr::lit(Arc::new(Int64Array::from(vec![v])))
    }

    #[test]
    fn integer_literals_take_the_column_type_when_they_fit() {
        let resolved = resolve(Expr::col("age").binary(BinaryOp::Gt, int(94)), &schema()).unwrap();
        let Expr::Binary { right, .. } = resolved.expr else {
            panic!()
        };
        let Expr::Literal(literal) = Arc::unwrap_or_clone(right) else {
            panic!()
        };
        assert_eq!(literal.data_type(), &DataType::Int32);
    }

    #[test]
    fn literals_that_do_not_fit_widen_the_column() {
        let resolved = resolve(
            Expr::col("age").binary(BinaryOp::Gt, int(1 << 40)),
            &schema(),
        )
        .unwrap();
        let Expr::Binary { left, .. } = resolved.expr else {
            panic!()
        };
        assert!(matches!(
            *left,
            Expr::Cast {
                to: DataType::Int64,
                ..
            }
        ));
    }

    #[test]
    fn comparing_a_string_dictionary_with_a_number_names_both_types() {
        let error = resolve(Expr::col("city").binary(BinaryOp::Gt, int(3)), &schema())
            .unwrap_err()
            .to_string();
        assert!(error.contains("col(\"city\")"), "{error}");
        assert!(error.contains("dictionary<values=string"), "{error}");
        assert!(error.contains("int64"), "{error}");
    }

    #[test]
    fn a_dictionary_compares_with_a_string_literal_without_decoding() {
        let oslo = Expr::lit(Arc::new(StringArray::from(vec!["oslo"])));
        let resolved = resolve(Expr::col("city").binary(BinaryOp::Eq, oslo), &schema()).unwrap();
        let Expr::Binary { left, .. } = resolved.expr else {
            panic!()
        };
        assert_eq!(*left, Expr::col("city"));
    }

    #[test]
    fn true_division_gives_floats_and_mixed_arithmetic_widens() {
        let div = resolve(Expr::col("age").binary(BinaryOp::Div, int(2)), &schema()).unwrap();
        assert_eq!(div.data_type, DataType::Float64);
        let mixed = resolve(
            Expr::col("age").binary(BinaryOp::Add, Expr::col("f0")),
            &schema(),
        )
        .unwrap();
        assert_eq!(mixed.data_type, DataType::Float64);
    }

    #[test]
    fn unknown_columns_list_the_available_ones() {
        let error = resolve(Expr::col("nope"), &schema())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"nope\"") && error.contains("\"age\""),
            "{error}"
        );
    }

    #[test]
    fn logical_operators_need_booleans() {
        assert!(resolve(Expr::col("age").binary(BinaryOp::And, int(1)), &schema()).is_err());
    }

    fn typed_schema() -> Schema {
        Schema::new(vec![
            Field::new("i8", DataType::Int8, true),
            Field::new("u8", DataType::UInt8, true),
            Field::new("u32", DataType::UInt32, true),
            Field::new("u64", DataType::UInt64, true),
            Field::new("f32", DataType::Float32, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("day", DataType::Date32, true),
            Field::new("name", DataType::Utf8, true),
        ])
    }

    fn float(v: f64) -> Expr {
        Expr::lit(Arc::new(arrow::array::Float64Array::from(vec![v])))
    }

    fn null() -> Expr {
        Expr::Literal(Literal::null())
    }

    fn type_of(expr: Expr) -> DataType {
        resolve(expr, &typed_schema()).unwrap().data_type
    }

    #[test]
    fn integer_literals_that_do_not_fit_take_the_smallest_type_that_holds_them() {
        // Polars: int8 + 200 is int16, uint8 + 1000 is uint16, uint8 + -1 is int16.
        assert_eq!(
            type_of(Expr::col("i8").binary(BinaryOp::Add, int(200))),
            DataType::Int16
        );
        assert_eq!(
            type_of(Expr::col("i8").binary(BinaryOp::Add, int(70_000))),
            DataType::Int32
        );
        assert_eq!(
            type_of(Expr::col("u8").binary(BinaryOp::Add, int(1000))),
            DataType::UInt16
        );
        assert_eq!(
            type_of(Expr::col("u8").binary(BinaryOp::Sub, int(-1))),
            DataType::Int16
        );
        assert_eq!(
            type_of(Expr::col("u32").binary(BinaryOp::Add, int(-1))),
            DataType::Int64
        );
        assert_eq!(
            type_of(int(1).binary(BinaryOp::Sub, Expr::col("u8"))),
            DataType::UInt8
        );
    }

    #[test]
    fn float_literals_never_become_integers() {
        assert_eq!(
            type_of(Expr::col("i8").binary(BinaryOp::Mul, float(2.0))),
            DataType::Float64
        );
        assert_eq!(
            type_of(Expr::col("f32").binary(BinaryOp::Mul, float(0.1))),
            DataType::Float32
        );
        // Any integer meets a float32 column as a float32, as in Polars.
        assert_eq!(
            type_of(Expr::col("f32").binary(BinaryOp::Add, int((1 << 24) + 1))),
            DataType::Float32
        );
        let compared = resolve(
            Expr::col("i8").binary(BinaryOp::Eq, float(2.0)),
            &typed_schema(),
        )
        .unwrap();
        let Expr::Binary { left, .. } = compared.expr else {
            panic!()
        };
        assert!(
            matches!(
                *left,
                Expr::Cast {
                    to: DataType::Float64,
                    ..
                }
            ),
            "{left}"
        );
    }

    #[test]
    fn fill_null_and_when_keep_the_column_type_for_literals_that_fit() {
        assert_eq!(
            type_of(Expr::FillNull {
                input: Arc::new(Expr::col("i8")),
                value: Arc::new(int(0))
            }),
            DataType::Int8
        );
        assert_eq!(
            type_of(Expr::FillNull {
                input: Arc::new(Expr::col("i8")),
                value: Arc::new(int(1000))
            }),
            DataType::Int16
        );
        assert_eq!(
            type_of(Expr::FillNull {
                input: Arc::new(Expr::col("i8")),
                value: Arc::new(float(0.5))
            }),
            DataType::Float64
        );
        let case = |then: Expr, otherwise: Expr| Expr::Case {
            branches: vec![(Expr::col("flag"), then)],
            otherwise: Arc::new(otherwise),
        };
        assert_eq!(type_of(case(Expr::col("u8"), int(-1))), DataType::Int16);
        assert_eq!(type_of(case(int(7), Expr::col("u8"))), DataType::UInt8);
        assert_eq!(type_of(case(Expr::col("i8"), null())), DataType::Int8);
        assert_eq!(
            type_of(case(Expr::col("i8"), Expr::col("f32"))),
            DataType::Float32
        );
        assert_eq!(type_of(case(int(1), int(2))), DataType::Int64);
        let error = resolve(case(Expr::col("name"), int(1)), &typed_schema())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("string") && error.contains("int64"),
            "{error}"
        );
    }

    #[test]
    fn negating_an_unsigned_column_is_a_type_error() {
        let error = resolve(Expr::col("u8").unary(UnaryOp::Negate), &typed_schema())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("col(\"u8\")") && error.contains("uint8"),
            "{error}"
        );
        assert_eq!(
            type_of(Expr::col("u8").unary(UnaryOp::Abs)),
            DataType::UInt8
        );
    }

    #[test]
    fn date_parts_have_polars_types() {
        assert_eq!(
            type_of(Expr::col("day").unary(UnaryOp::Year)),
            DataType::Int32
        );
        assert_eq!(
            type_of(Expr::col("day").unary(UnaryOp::Month)),
            DataType::Int8
        );
        assert_eq!(
            type_of(Expr::col("day").unary(UnaryOp::Day)),
            DataType::Int8
        );
    }

    fn is_in(column: &str, values: ArrayRef) -> Result<Resolved> {
        resolve(
            Expr::IsIn {
                input: Arc::new(Expr::col(column)),
                values: Literal(values),
            },
            &typed_schema(),
        )
    }

    fn candidates(resolved: Resolved) -> ArrayRef {
        let Expr::IsIn { values, .. } = resolved.expr else {
            panic!()
        };
        values.0
    }

    #[test]
    fn is_in_keeps_the_candidates_that_convert_exactly() {
        let values = candidates(
            is_in(
                "i8",
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    Some(1000),
                    None,
                    Some(-128),
                ])),
            )
            .unwrap(),
        );
        assert_eq!(
            values.as_ref(),
            &arrow::array::Int8Array::from(vec![1, -128]) as &dyn Array
        );
        // No candidate left: one null candidate, which matches nothing.
        let values = candidates(is_in("u8", Arc::new(Int64Array::from(vec![-1, 256]))).unwrap());
        assert_eq!(
            (
                values.len(),
                values.logical_null_count(),
                values.data_type()
            ),
            (1, 1, &DataType::UInt8)
        );
        let values =
            candidates(is_in("u8", arrow::array::new_empty_array(&DataType::Null)).unwrap());
        assert_eq!((values.len(), values.logical_null_count()), (1, 1));
        let values = candidates(
            is_in(
                "u64",
                Arc::new(arrow::array::UInt64Array::from(vec![u64::MAX])),
            )
            .unwrap(),
        );
        assert_eq!(values.as_primitive::<UInt64Type>().value(0), u64::MAX);
    }

    #[test]
    fn is_in_refuses_lossy_candidates_as_polars_does() {
        let error = is_in("i8", Arc::new(arrow::array::Float64Array::from(vec![1.5])))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("float64") && error.contains("col(\"i8\") (int8)"),
            "{error}"
        );
        assert!(is_in("name", Arc::new(Int64Array::from(vec![1]))).is_err());
        assert!(is_in("flag", Arc::new(Int64Array::from(vec![1]))).is_err());
        // Integers for a float column convert exactly (1 is 1.0).
        assert!(is_in("f32", Arc::new(Int64Array::from(vec![1]))).is_ok());
    }

    #[test]
    fn an_explicitly_cast_literal_keeps_its_type() {
        let typed = Expr::Cast {
            input: Arc::new(int(127)),
            to: DataType::Int8,
        };
        assert_eq!(
            type_of(typed.clone().binary(BinaryOp::Add, int(1))),
            DataType::Int8
        );
        assert_eq!(
            type_of(Expr::col("i8").binary(
                BinaryOp::Add,
                Expr::Cast {
                    input: Arc::new(int(300)),
                    to: DataType::Int16
                }
            )),
            DataType::Int16
        );
        assert_eq!(
            type_of(Expr::col("u8").binary(BinaryOp::Add, typed)),
            DataType::Int16
        );
    }

    #[test]
    fn an_explicit_cast_of_a_literal_is_strict() {
        let resolved = resolve(
            Expr::Cast {
                input: Arc::new(int(300)),
                to: DataType::UInt8,
            },
            &typed_schema(),
        )
        .unwrap();
        // Not folded into a null: left for the executor, which reports the value.
        assert!(
            matches!(resolved.expr, Expr::Cast { .. }),
            "{}",
            resolved.expr
        );
    }

    #[test]
    fn booleans_and_numbers_do_not_mix() {
        assert!(
            resolve(
                Expr::col("flag").binary(BinaryOp::Eq, int(1)),
                &typed_schema()
            )
            .is_err()
        );
        assert!(
            resolve(
                Expr::col("flag").binary(BinaryOp::Add, int(1)),
                &typed_schema()
            )
            .is_err()
        );
    }
}
