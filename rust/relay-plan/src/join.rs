//! `LogicalPlan::Join`: what a join computes, built and type-checked when the user writes it.
//!
//! The output columns follow Polars' `DataFrame.join` exactly (checked by the differential
//! tests in `tests/test_join.py`):
//! - `semi` / `anti`: the left input's columns only.
//! - `inner` / `left`: every left column, then the right columns except the right keys; when
//!   every key on both sides is a plain column (the keys are "coalesced"), else every right
//!   column.
//! - `right`: the left columns except the left keys (when coalesced), then every right column.
//! - `full`: every left column, then every right column (keys are never coalesced).
//!
//! A right column whose name is already an output name of the left side gets `suffix`; a
//! suffixed name that still clashes is an error. The columns are recorded in the node
//! (`JoinColumn`: which side, which input column, which output name), so that projection
//! pruning can drop outputs nobody reads without renaming the others.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use relay_storage::type_name;

use crate::error::{PlanError, Result};
use crate::expr::Expr;
use crate::plan::LogicalPlan;
use crate::resolve::{field_named, resolve};

/// Which rows of the two inputs a join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    /// Pairs of rows with equal keys.
    Inner,
    /// Inner pairs, plus each left row without a match (right columns null).
    Left,
    /// Inner pairs, plus each right row without a match (left columns null).
    Right,
    /// Inner pairs, plus the unmatched rows of both sides.
    Full,
    /// The left rows that have a match (each once), left columns only.
    Semi,
    /// The left rows without a match, left columns only.
    Anti,
}

impl JoinType {
    /// The type named `how` (as Polars names it).
    pub fn parse(how: &str) -> Option<Self> {
        Some(match how {
            "inner" => JoinType::Inner,
            "left" => JoinType::Left,
            "right" => JoinType::Right,
            "full" => JoinType::Full,
            "semi" => JoinType::Semi,
            "anti" => JoinType::Anti,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            JoinType::Inner => "inner",
            JoinType::Left => "left",
            JoinType::Right => "right",
            JoinType::Full => "full",
            JoinType::Semi => "semi",
            JoinType::Anti => "anti",
        }
    }

    /// Whether the output is a selection of the left rows (semi / anti).
    pub fn filters_left(self) -> bool {
        matches!(self, JoinType::Semi | JoinType::Anti)
    }

    /// Whether a filter on the left columns may run before the join: every output row that
    /// carries a left row carries it unchanged, and no output row exists without one
    /// except where the filter would drop it anyway. True for inner, left, semi and anti.
    pub fn left_filter_commutes(self) -> bool {
        matches!(
            self,
            JoinType::Inner | JoinType::Left | JoinType::Semi | JoinType::Anti
        )
    }

    /// Whether a filter on the right columns may run before the join (inner and right).
    pub fn right_filter_commutes(self) -> bool {
        matches!(self, JoinType::Inner | JoinType::Right)
    }
}

impl fmt::Display for JoinType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The input a join's output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinSide {
    Left,
    Right,
}

/// One output column of a join: input column `name` of `side`, named `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinColumn {
    pub side: JoinSide,
    pub name: String,
    pub output: String,
}

/// The type both keys are compared in, when a key of type `left` may be joined with one of
/// type `right`: integers with integers (of any width or sign, as Polars allows: signed or
/// mixed as int64, unsigned as uint64; a value the common type cannot hold matches nothing),
/// floats with floats (as float64), strings with strings (utf8, large_utf8, utf8_view and
/// dictionaries of them, as large_utf8); any other type only with itself. None when they do
/// not join, or for types without equality (lists, structs, maps).
pub fn join_key_type(left: &DataType, right: &DataType) -> Option<DataType> {
    use DataType::*;
    let is_string = |t: &DataType| match t {
        Utf8 | LargeUtf8 | Utf8View => true,
        Dictionary(_, values) => matches!(values.as_ref(), Utf8 | LargeUtf8 | Utf8View),
        _ => false,
    };
    if matches!(
        left,
        List(_)
            | LargeList(_)
            | FixedSizeList(..)
            | Struct(_)
            | Map(..)
            | ListView(_)
            | LargeListView(_)
            | Union(..)
    ) {
        return None;
    }
    if left == right {
        return Some(left.clone());
    }
    if left.is_integer() && right.is_integer() {
        let unsigned = left.is_unsigned_integer() && right.is_unsigned_integer();
        return Some(if unsigned { UInt64 } else { Int64 });
    }
    if left.is_floating() && right.is_floating() {
        return Some(Float64);
    }
    if is_string(left) && is_string(right) {
        return Some(LargeUtf8);
    }
    None
}

impl LogicalPlan {
    /// `self` joined with `right` on `left_on[i] == right_on[i]` for every i (null keys never
    /// match). Keys are resolved against their side's schema and must have types that join
    /// (`join_key_type`); the output columns are named as Polars names them (module docs).
    pub fn join(
        self: &Arc<Self>,
        right: &Arc<LogicalPlan>,
        left_on: Vec<Expr>,
        right_on: Vec<Expr>,
        how: JoinType,
        suffix: &str,
    ) -> Result<LogicalPlan> {
        if left_on.is_empty() {
            return Err(PlanError::Invalid(
                "join(): on (or left_on and right_on) names no key column".into(),
            ));
        }
        if left_on.len() != right_on.len() {
            return Err(PlanError::Invalid(format!(
                "join(): left_on has {} keys and right_on has {}; they are compared pairwise",
                left_on.len(),
                right_on.len()
            )));
        }
        let left_schema = self.schema()?;
        let right_schema = right.schema()?;
        let mut resolved_left = Vec::with_capacity(left_on.len());
        let mut resolved_right = Vec::with_capacity(right_on.len());
        for (left_key, right_key) in left_on.into_iter().zip(right_on) {
            let left_resolved = resolve(left_key.clone(), &left_schema)?;
            let right_resolved = resolve(right_key.clone(), &right_schema)?;
            if join_key_type(&left_resolved.data_type, &right_resolved.data_type).is_none() {
                return Err(PlanError::Type(format!(
                    "join(): the left key {left_key} ({}) cannot be joined with the right key {right_key} ({}): \
                     keys must both be integers, both floats, both strings, or of the same type",
                    type_name(&left_resolved.data_type),
                    type_name(&right_resolved.data_type)
                )));
            }
            resolved_left.push(left_resolved.expr);
            resolved_right.push(right_resolved.expr);
        }
        let columns = join_columns(
            &left_schema,
            &right_schema,
            &resolved_left,
            &resolved_right,
            how,
            suffix,
        )?;
        Ok(LogicalPlan::Join {
            left: self.clone(),
            right: right.clone(),
            left_on: resolved_left,
            right_on: resolved_right,
            how,
            columns,
        })
    }
}

/// The name of a key that is a plain column reference (casts added by resolution aside).
fn plain_column(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(name) => Some(name),
        _ => None,
    }
}

/// The output columns of a join, named as Polars names them.
fn join_columns(
    left: &Schema,
    right: &Schema,
    left_on: &[Expr],
    right_on: &[Expr],
    how: JoinType,
    suffix: &str,
) -> Result<Vec<JoinColumn>> {
    let names = |schema: &Schema| -> Vec<String> {
        schema.fields().iter().map(|f| f.name().clone()).collect()
    };
    let column = |side, name: &str| JoinColumn {
        side,
        name: name.to_string(),
        output: name.to_string(),
    };
    if how.filters_left() {
        return Ok(names(left)
            .iter()
            .map(|name| column(JoinSide::Left, name))
            .collect());
    }
    let coalesced = matches!(how, JoinType::Inner | JoinType::Left | JoinType::Right)
        && left_on
            .iter()
            .chain(right_on)
            .all(|key| plain_column(key).is_some());
    let left_keys: HashSet<&str> = left_on.iter().filter_map(plain_column).collect();
    let right_keys: HashSet<&str> = right_on.iter().filter_map(plain_column).collect();
    let drop_left = coalesced && how == JoinType::Right;
    let drop_right = coalesced && how != JoinType::Right;
    let mut columns: Vec<JoinColumn> = names(left)
        .iter()
        .filter(|name| !(drop_left && left_keys.contains(name.as_str())))
        .map(|name| column(JoinSide::Left, name))
        .collect();
    let left_names: HashSet<String> = columns.iter().map(|c| c.output.clone()).collect();
    let mut taken = left_names.clone();
    for name in names(right) {
        if drop_right && right_keys.contains(name.as_str()) {
            continue;
        }
        let output = if left_names.contains(&name) {
            format!("{name}{suffix}")
        } else {
            name.clone()
        };
        if !taken.insert(output.clone()) {
            return Err(PlanError::Invalid(format!(
                "join(): the output column {output:?} appears twice (the right column {name:?} with suffix {suffix:?}); \
                 pass another suffix or rename the column first"
            )));
        }
        columns.push(JoinColumn {
            side: JoinSide::Right,
            name,
            output,
        });
    }
    Ok(columns)
}

/// The output schema of a join's `columns`: types from the inputs, nullable (a row without a
/// match on the other side has nulls there).
pub(crate) fn join_schema(
    left: &Schema,
    right: &Schema,
    columns: &[JoinColumn],
) -> Result<SchemaRef> {
    let fields = columns
        .iter()
        .map(|column| {
            let schema = match column.side {
                JoinSide::Left => left,
                JoinSide::Right => right,
            };
            let field = field_named(schema, &column.name)?;
            Ok(Field::new(&column.output, field.data_type().clone(), true))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};

    use super::*;

    fn memory(columns: &[(&str, DataType)]) -> Arc<LogicalPlan> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, t)| Field::new(*name, t.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let arrays = columns
            .iter()
            .map(|(_, t)| match t {
                DataType::Int64 => Arc::new(Int64Array::from(vec![1])) as arrow::array::ArrayRef,
                DataType::Int32 => Arc::new(Int32Array::from(vec![1])),
                _ => Arc::new(StringArray::from(vec!["a"])),
            })
            .collect();
        Arc::new(LogicalPlan::memory(
            schema.clone(),
            vec![RecordBatch::try_new(schema, arrays).unwrap()],
        ))
    }

    fn output_names(plan: &LogicalPlan) -> Vec<String> {
        plan.schema()
            .unwrap()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn output_columns_follow_polars() {
        let left = memory(&[
            ("k", DataType::Int64),
            ("m", DataType::Int64),
            ("z", DataType::Int64),
        ]);
        let right = memory(&[
            ("k", DataType::Int64),
            ("z", DataType::Int64),
            ("m", DataType::Int64),
        ]);
        let keys = |names: &[&str]| {
            names
                .iter()
                .map(|&name| Expr::col(name))
                .collect::<Vec<_>>()
        };
        let join = |how, l: &[&str], r: &[&str]| {
            output_names(&left.join(&right, keys(l), keys(r), how, "_right").unwrap())
        };
        assert_eq!(
            join(JoinType::Inner, &["k", "m"], &["k", "z"]),
            ["k", "m", "z", "m_right"]
        );
        assert_eq!(
            join(JoinType::Left, &["k"], &["k"]),
            ["k", "m", "z", "z_right", "m_right"]
        );
        assert_eq!(
            join(JoinType::Right, &["k", "m"], &["k", "z"]),
            ["z", "k", "z_right", "m"]
        );
        assert_eq!(
            join(JoinType::Full, &["k"], &["k"]),
            ["k", "m", "z", "k_right", "z_right", "m_right"]
        );
        assert_eq!(join(JoinType::Semi, &["k"], &["k"]), ["k", "m", "z"]);
        // An expression key: no key column is dropped.
        let doubled = vec![Expr::col("k").binary(
            crate::expr::BinaryOp::Mul,
            Expr::lit(Arc::new(Int64Array::from(vec![2]))),
        )];
        let plan = left
            .join(&right, doubled, keys(&["k"]), JoinType::Inner, "_r")
            .unwrap();
        assert_eq!(output_names(&plan), ["k", "m", "z", "k_r", "z_r", "m_r"]);
    }

    #[test]
    fn keys_are_type_checked_and_names_must_stay_unique() {
        let left = memory(&[("k", DataType::Int32), ("s", DataType::Utf8)]);
        let right = memory(&[
            ("k", DataType::Int64),
            ("s", DataType::Utf8),
            ("s_right", DataType::Utf8),
        ]);
        // "s" clashes and becomes "s_right", which the right side already has.
        let clash = left.join(
            &right,
            vec![Expr::col("k")],
            vec![Expr::col("k")],
            JoinType::Inner,
            "_right",
        );
        assert!(
            clash
                .unwrap_err()
                .to_string()
                .contains("\"s_right\" appears twice")
        );
        let plan = left
            .join(
                &right,
                vec![Expr::col("k")],
                vec![Expr::col("k")],
                JoinType::Inner,
                "_x",
            )
            .unwrap();
        assert_eq!(output_names(&plan), ["k", "s", "s_x", "s_right"]);
        let error = left
            .join(
                &right,
                vec![Expr::col("k")],
                vec![Expr::col("s")],
                JoinType::Inner,
                "_right",
            )
            .unwrap_err();
        assert!(matches!(error, PlanError::Type(_)), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("col(\"k\") (int32)") && text.contains("col(\"s\") (string)"),
            "{text}"
        );
        let error = left
            .join(
                &right,
                vec![Expr::col("nope")],
                vec![Expr::col("k")],
                JoinType::Inner,
                "_right",
            )
            .unwrap_err();
        assert!(matches!(error, PlanError::ColumnNotFound { .. }), "{error}");
        let error = left
            .join(
                &right,
                vec![Expr::col("k")],
                vec![],
                JoinType::Inner,
                "_right",
            )
            .unwrap_err();
        assert!(error.to_string().contains("left_on has 1 keys"), "{error}");
    }

    #[test]
    fn key_types_follow_polars() {
        use DataType::*;
        assert_eq!(join_key_type(&Int32, &UInt8), Some(Int64));
        assert_eq!(join_key_type(&UInt32, &UInt64), Some(UInt64));
        assert_eq!(join_key_type(&Float32, &Float64), Some(Float64));
        assert_eq!(join_key_type(&Int32, &Float64), None);
        assert_eq!(
            join_key_type(&Utf8View, &Dictionary(Box::new(Int32), Box::new(Utf8))),
            Some(LargeUtf8)
        );
        assert_eq!(join_key_type(&Date32, &Date32), Some(Date32));
        assert_eq!(join_key_type(&Date32, &Int32), None);
    }
}
