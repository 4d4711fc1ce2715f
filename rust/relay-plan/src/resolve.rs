//! Type checking and coercion of expressions against a schema, when a plan is built.
//!
//! `resolve` returns the expression with every implicit conversion made explicit (casts of
//! literals or columns to a common type), so the executor never guesses. Literal numbers take
//! the type of the column they meet when the value fits (`col("age") > 94` on an int32 column
//! compares int32s), as in Polars; otherwise both sides go to their common supertype.

use std::sync::Arc;

use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use relay_storage::type_name;

use crate::error::{PlanError, Result};
use crate::expr::{BinaryOp, Expr, Literal, UnaryOp};

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() && !matches!(t, DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) | DataType::Decimal256(..))
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
                if int_bits(a) >= int_bits(b) { a.clone() } else { b.clone() }
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
        _ if is_string(a) && is_string(b) => Some(LargeUtf8),
        (Binary | LargeBinary, Binary | LargeBinary) => Some(LargeBinary),
        (Timestamp(ua, tza), Timestamp(ub, tzb)) if tza == tzb => Some(Timestamp(finer_unit(ua, ub), tza.clone())),
        (Date32, Date64) | (Date64, Date32) => Some(Date64),
        (Date32 | Date64, Timestamp(unit, tz)) | (Timestamp(unit, tz), Date32 | Date64) => {
            Some(Timestamp(*unit, tz.clone()))
        }
        (Duration(ua), Duration(ub)) => Some(Duration(finer_unit(ua, ub))),
        _ => None,
    }
}

/// `literal` converted to `target` if the value survives the round trip exactly.
fn fit_literal(literal: &Literal, target: &DataType) -> Option<Literal> {
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

fn cast_to(expr: Expr, from: &DataType, to: &DataType) -> Expr {
    if from == to {
        return expr;
    }
    match expr {
        Expr::Literal(literal) => match cast_with_options(&literal.0, to, &CastOptions::default()) {
            Ok(array) => Expr::Literal(Literal(array)),
            Err(_) => Expr::Cast {
                input: Box::new(Expr::Literal(literal)),
                to: to.clone(),
            },
        },
        other => Expr::Cast {
            input: Box::new(other),
            to: to.clone(),
        },
    }
}

/// Brings both sides of a comparison to one type. A dictionary side stays encoded when the
/// other side has its value type (arrow-rs compares dictionaries by value).
fn coerce_pair(left: (Expr, DataType), right: (Expr, DataType), context: &dyn Fn() -> String) -> Result<(Expr, Expr)> {
    let ((left, lt), (right, rt)) = (left, right);
    // A literal meeting a column takes the column's (value) type when it fits.
    if let Expr::Literal(literal) = &right
        && !matches!(left, Expr::Literal(_))
        && let Some(fitted) = fit_literal(literal, value_type(&lt))
        && common_type(&lt, &rt).is_some()
    {
        return Ok((left, Expr::Literal(fitted)));
    }
    if let Expr::Literal(literal) = &left
        && !matches!(right, Expr::Literal(_))
        && let Some(fitted) = fit_literal(literal, value_type(&rt))
        && common_type(&lt, &rt).is_some()
    {
        return Ok((Expr::Literal(fitted), right));
    }
    let common = common_type(&lt, &rt).ok_or_else(|| PlanError::Type(context()))?;
    let keep = |expr: Expr, t: &DataType| {
        if value_type(t) == &common { expr } else { cast_to(expr, t, &common) }
    };
    Ok((keep(left, &lt), keep(right, &rt)))
}

/// The resolved expression and its output type.
#[derive(Debug)]
pub struct Resolved {
    pub expr: Expr,
    pub data_type: DataType,
}

pub fn resolve(expr: Expr, schema: &Schema) -> Result<Resolved> {
    let (expr, data_type) = resolve_inner(expr, schema)?;
    Ok(Resolved { expr, data_type })
}

fn describe(expr: &Expr, t: &DataType) -> String {
    format!("{expr} ({})", type_name(t))
}

fn resolve_inner(expr: Expr, schema: &Schema) -> Result<(Expr, DataType)> {
    match expr {
        Expr::Column(name) => {
            let field = schema.field_with_name(&name).map_err(|_| PlanError::ColumnNotFound {
                name: name.clone(),
                available: schema.fields().iter().map(|f| format!("{:?}", f.name())).collect::<Vec<_>>().join(", "),
            })?;
            let t = field.data_type().clone();
            Ok((Expr::Column(name), t))
        }
        Expr::Literal(literal) => {
            let t = literal.data_type().clone();
            Ok((Expr::Literal(literal), t))
        }
        Expr::Alias { input, name } => {
            let (input, t) = resolve_inner(*input, schema)?;
            Ok((input.alias(name), t))
        }
        Expr::Binary { op, left, right } => {
            let original = Expr::Binary {
                op,
                left: left.clone(),
                right: right.clone(),
            };
            let (left, lt) = resolve_inner(*left, schema)?;
            let (right, rt) = resolve_inner(*right, schema)?;
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
                    return Err(PlanError::Type(format!("{} (both sides must be boolean)", mismatch())));
                }
                return Ok((left.binary(op, right), DataType::Boolean));
            }
            if op.is_comparison() {
                let (left, right) = coerce_pair((left, lt.clone()), (right, rt.clone()), &mismatch)?;
                return Ok((left.binary(op, right), DataType::Boolean));
            }
            // Arithmetic: numbers only (dictionaries of numbers decode first).
            let (lv, rv) = (value_type(&lt).clone(), value_type(&rt).clone());
            let numeric = |t: &DataType| is_numeric(t) || t == &DataType::Null;
            if !numeric(&lv) || !numeric(&rv) {
                return Err(PlanError::Type(format!("{} (arithmetic needs numbers)", mismatch())));
            }
            let fits = |side: &Expr, other: &DataType| matches!(side, Expr::Literal(l) if fit_literal(l, other).is_some());
            let mut common = if fits(&right, &lv) && !matches!(left, Expr::Literal(_)) {
                lv.clone()
            } else if fits(&left, &rv) && !matches!(right, Expr::Literal(_)) {
                rv.clone()
            } else {
                numeric_supertype(&lv, &rv)
            };
            if op == BinaryOp::Div && !matches!(common, DataType::Float32 | DataType::Float64) {
                common = DataType::Float64;
            }
            let left = cast_to(left, &lt, &common);
            let right = cast_to(right, &rt, &common);
            Ok((left.binary(op, right), common))
        }
        Expr::Unary { op, input } => {
            let (input, t) = resolve_inner(*input, schema)?;
            let bad = |what: &str| PlanError::Type(format!("{}() needs {what}, got {}", op.name(), describe(&input, &t)));
            let out = match op {
                UnaryOp::Not => {
                    if !matches!(t, DataType::Boolean | DataType::Null) {
                        return Err(bad("a boolean"));
                    }
                    DataType::Boolean
                }
                UnaryOp::Negate | UnaryOp::Abs => {
                    if !is_numeric(value_type(&t)) {
                        return Err(bad("a number"));
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
                    if !matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) {
                        return Err(bad("a date or timestamp"));
                    }
                    DataType::Int32
                }
            };
            Ok((input.unary(op), out))
        }
        Expr::StringMatch { kind, input, pattern } => {
            let (input, t) = resolve_inner(*input, schema)?;
            if !is_string(value_type(&t)) {
                return Err(PlanError::Type(format!("{}() needs a string, got {}", kind.name(), describe(&input, &t))));
            }
            Ok((Expr::StringMatch { kind, input: Box::new(input), pattern }, DataType::Boolean))
        }
        Expr::IsIn { input, values } => {
            let (input, t) = resolve_inner(*input, schema)?;
            let target = value_type(&t).clone();
            let values = if values.data_type() == &target || values.0.is_empty() {
                cast_with_options(&values.0, &target, &CastOptions::default()).map(Literal).ok()
            } else {
                common_type(&target, values.data_type())
                    .and_then(|_| cast_with_options(&values.0, &target, &CastOptions::default()).ok())
                    .map(Literal)
            }
            .ok_or_else(|| {
                PlanError::Type(format!(
                    "is_in() values of type {} cannot be compared with {}",
                    type_name(values.data_type()),
                    describe(&input, &t)
                ))
            })?;
            Ok((Expr::IsIn { input: Box::new(input), values }, DataType::Boolean))
        }
        Expr::FillNull { input, value } => {
            let original = format!("{input}.fill_null({value})");
            let (input, t) = resolve_inner(*input, schema)?;
            let (value, vt) = resolve_inner(*value, schema)?;
            let common = common_type(&t, &vt)
                .ok_or_else(|| PlanError::Type(format!("cannot fill nulls of {} with {} in {original}", describe(&input, &t), type_name(&vt))))?;
            let input = cast_to(input, &t, &common);
            let value = cast_to(value, &vt, &common);
            Ok((Expr::FillNull { input: Box::new(input), value: Box::new(value) }, common))
        }
        Expr::Cast { input, to } => {
            let (input, t) = resolve_inner(*input, schema)?;
            if !arrow::compute::can_cast_types(&t, &to) {
                return Err(PlanError::Type(format!("cannot cast {} to {}", describe(&input, &t), type_name(&to))));
            }
            Ok((cast_to(input, &t, &to), to))
        }
        Expr::Case { branches, otherwise } => {
            let mut resolved = Vec::with_capacity(branches.len());
            let (otherwise, mut out_type) = resolve_inner(*otherwise, schema)?;
            for (when, then) in branches {
                let (when, wt) = resolve_inner(when, schema)?;
                if !matches!(wt, DataType::Boolean | DataType::Null) {
                    return Err(PlanError::Type(format!("when() needs a boolean condition, got {}", describe(&when, &wt))));
                }
                let (then, tt) = resolve_inner(then, schema)?;
                out_type = common_type(&out_type, &tt).ok_or_else(|| {
                    PlanError::Type(format!("when/then/otherwise branches have incompatible types {} and {}", type_name(&out_type), type_name(&tt)))
                })?;
                resolved.push((when, then, tt));
            }
            let otherwise_type = resolve_inner(otherwise.clone(), schema)?.1;
            let branches = resolved
                .into_iter()
                .map(|(when, then, tt)| (when, cast_to(then, &tt, &out_type)))
                .collect();
            let otherwise = cast_to(otherwise, &otherwise_type, &out_type);
            Ok((Expr::Case { branches, otherwise: Box::new(otherwise) }, out_type))
        }
    }
}

/// The `index`-th operand of a binary expression, for error messages.
fn left_name(expr: &Expr, index: usize) -> Expr {
    match expr {
        Expr::Binary { left, right, .. } => if index == 0 { (**left).clone() } else { (**right).clone() },
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("age", DataType::Int32, true),
            Field::new("f0", DataType::Float32, true),
            Field::new("city", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), true),
            Field::new("name", DataType::Utf8, true),
        ])
    }

    fn int(v: i64) -> Expr {
        Expr::lit(Arc::new(Int64Array::from(vec![v])))
    }

    #[test]
    fn integer_literals_take_the_column_type_when_they_fit() {
        let resolved = resolve(Expr::col("age").binary(BinaryOp::Gt, int(94)), &schema()).unwrap();
        let Expr::Binary { right, .. } = resolved.expr else { panic!() };
        let Expr::Literal(literal) = *right else { panic!() };
        assert_eq!(literal.data_type(), &DataType::Int32);
    }

    #[test]
    fn literals_that_do_not_fit_widen_the_column() {
        let resolved = resolve(Expr::col("age").binary(BinaryOp::Gt, int(1 << 40)), &schema()).unwrap();
        let Expr::Binary { left, .. } = resolved.expr else { panic!() };
        assert!(matches!(*left, Expr::Cast { to: DataType::Int64, .. }));
    }

    #[test]
    fn comparing_a_string_dictionary_with_a_number_names_both_types() {
        let error = resolve(Expr::col("city").binary(BinaryOp::Gt, int(3)), &schema()).unwrap_err().to_string();
        assert!(error.contains("col(\"city\")"), "{error}");
        assert!(error.contains("dictionary<values=string"), "{error}");
        assert!(error.contains("int64"), "{error}");
    }

    #[test]
    fn a_dictionary_compares_with_a_string_literal_without_decoding() {
        let oslo = Expr::lit(Arc::new(StringArray::from(vec!["oslo"])));
        let resolved = resolve(Expr::col("city").binary(BinaryOp::Eq, oslo), &schema()).unwrap();
        let Expr::Binary { left, .. } = resolved.expr else { panic!() };
        assert_eq!(*left, Expr::col("city"));
    }

    #[test]
    fn true_division_gives_floats_and_mixed_arithmetic_widens() {
        let div = resolve(Expr::col("age").binary(BinaryOp::Div, int(2)), &schema()).unwrap();
        assert_eq!(div.data_type, DataType::Float64);
        let mixed = resolve(Expr::col("age").binary(BinaryOp::Add, Expr::col("f0")), &schema()).unwrap();
        assert_eq!(mixed.data_type, DataType::Float64);
    }

    #[test]
    fn unknown_columns_list_the_available_ones() {
        let error = resolve(Expr::col("nope"), &schema()).unwrap_err().to_string();
        assert!(error.contains("\"nope\"") && error.contains("\"age\""), "{error}");
    }

    #[test]
    fn logical_operators_need_booleans() {
        assert!(resolve(Expr::col("age").binary(BinaryOp::And, int(1)), &schema()).is_err());
    }
}
