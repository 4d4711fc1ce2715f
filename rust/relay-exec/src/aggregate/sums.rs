//! Sums per group: integer and float sums, and decimal sums checked against their precision.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Decimal128Type};
use arrow::error::ArrowError;

/// Adds each non-null value of `values` (cast to `T`) to its group's entry of `sums`.
pub(super) fn add_per_group<T: ArrowPrimitiveType>(
    sums: &mut [T::Native],
    values: &ArrayRef,
    ids: &[u32],
    plus: impl Fn(T::Native, T::Native) -> T::Native,
) -> Result<(), ArrowError> {
    let values = cast(values, &T::DATA_TYPE)?;
    let values = values.as_primitive::<T>();
    for (row, &g) in ids.iter().enumerate() {
        if values.is_valid(row) {
            sums[g as usize] = plus(sums[g as usize], values.value(row));
        }
    }
    Ok(())
}

pub(super) fn decimal_overflow(precision: u8, scale: i8) -> ArrowError {
    ArrowError::ComputeError(format!(
        "sum(): the sum of a group overflows decimal128({precision}, {scale})"
    ))
}

/// Adds each non-null decimal of `values` (brought to `scale`; the values at `picked`, when
/// given) to its group's sum in `sums`.
pub(super) fn add_decimals(
    sums: &mut [i128],
    values: &ArrayRef,
    picked: Option<&[u32]>,
    ids: &[u32],
    precision: u8,
    scale: i8,
) -> Result<(), ArrowError> {
    // Values of the sum's scale are added as they are: a cast to a wider precision would check
    // every value against it (a tenth of TPC-H Q1's time).
    let values = match values.data_type() {
        DataType::Decimal128(_, s) if *s == scale => values.clone(),
        _ => cast(values, &DataType::Decimal128(38, scale))?,
    };
    let values = values.as_primitive::<Decimal128Type>();
    let raw: &[i128] = values.values();
    // Overflow is checked once per morsel, not per row: a flag folded over the adds keeps
    // the loop free of early exits.
    let mut overflowed = false;
    let mut add = |g: u32, value: i128| {
        let sum = &mut sums[g as usize];
        let (added, overflow) = sum.overflowing_add(value);
        *sum = added;
        overflowed |= overflow;
    };
    match (values.nulls(), picked) {
        (None, None) => raw.iter().zip(ids).for_each(|(&value, &g)| add(g, value)),
        (None, Some(picked)) => picked
            .iter()
            .zip(ids)
            .for_each(|(&row, &g)| add(g, raw[row as usize])),
        (Some(nulls), None) => raw
            .iter()
            .zip(ids)
            .zip(nulls.iter())
            .filter(|(_, valid)| *valid)
            .for_each(|((&value, &g), _)| add(g, value)),
        (Some(nulls), Some(picked)) => picked
            .iter()
            .zip(ids)
            .filter(|(row, _)| nulls.is_valid(**row as usize))
            .for_each(|(&row, &g)| add(g, raw[row as usize])),
    }
    if overflowed {
        return Err(decimal_overflow(precision, scale));
    }
    Ok(())
}
