//! Dense form of a column: one contiguous fixed-width buffer of shape (n,) or (n, d), the form
//! NumPy, the buffer protocol and DLPack take.
//!
//! A single-chunk column of a fixed-width type with no nulls, decoded straight from the mapping,
//! is a view: its buffer is the mapped bytes. Anything else is materialized here in one pass into
//! a fresh buffer, and `copy_reason` says why, so that `zero_copy=True` can refuse with the reason.
//!
//! Null rules, as pandas and pyarrow do for NumPy: integers with nulls become float64 with NaN,
//! floats keep their width with NaN, datetimes and durations get NaT. Booleans with nulls and
//! types without a fixed-width form (strings, decimals, nested lists, structs) have no dense form.

use std::borrow::Cow;
use std::ops::Range;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray};
use arrow::buffer::{Buffer, MutableBuffer};
use arrow::datatypes::{DataType, Float16Type, Float32Type, Float64Type, TimeUnit};
use relay_storage::{DecodedColumn, type_name};

/// Element type of a dense buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseDtype {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float16,
    Float32,
    Float64,
    /// 64-bit count of `unit` since the epoch (NumPy datetime64).
    Datetime(DenseTimeUnit),
    /// 64-bit count of `unit` (NumPy timedelta64).
    Timedelta(DenseTimeUnit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenseTimeUnit {
    Day,
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
}

impl DenseTimeUnit {
    fn of(unit: &TimeUnit) -> Self {
        match unit {
            TimeUnit::Second => Self::Second,
            TimeUnit::Millisecond => Self::Millisecond,
            TimeUnit::Microsecond => Self::Microsecond,
            TimeUnit::Nanosecond => Self::Nanosecond,
        }
    }

    fn numpy_code(self) -> &'static str {
        match self {
            Self::Day => "D",
            Self::Second => "s",
            Self::Millisecond => "ms",
            Self::Microsecond => "us",
            Self::Nanosecond => "ns",
        }
    }
}

impl DenseDtype {
    pub fn item_size(self) -> usize {
        match self {
            Self::Bool | Self::Int8 | Self::UInt8 => 1,
            Self::Int16 | Self::UInt16 | Self::Float16 => 2,
            Self::Int32 | Self::UInt32 | Self::Float32 => 4,
            Self::Int64 | Self::UInt64 | Self::Float64 | Self::Datetime(_) | Self::Timedelta(_) => {
                8
            }
        }
    }

    /// The NumPy dtype string, e.g. `"<f4"` or `"<M8[us]"`.
    pub fn numpy_str(self) -> String {
        match self {
            Self::Bool => "|b1".into(),
            Self::Int8 => "|i1".into(),
            Self::Int16 => "<i2".into(),
            Self::Int32 => "<i4".into(),
            Self::Int64 => "<i8".into(),
            Self::UInt8 => "|u1".into(),
            Self::UInt16 => "<u2".into(),
            Self::UInt32 => "<u4".into(),
            Self::UInt64 => "<u8".into(),
            Self::Float16 => "<f2".into(),
            Self::Float32 => "<f4".into(),
            Self::Float64 => "<f8".into(),
            Self::Datetime(unit) => format!("<M8[{}]", unit.numpy_code()),
            Self::Timedelta(unit) => format!("<m8[{}]", unit.numpy_code()),
        }
    }

    /// The dense element type of an Arrow leaf type, before null handling.
    pub(crate) fn of_leaf(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Boolean => Self::Bool,
            DataType::Int8 => Self::Int8,
            DataType::Int16 => Self::Int16,
            DataType::Int32 => Self::Int32,
            DataType::Int64 => Self::Int64,
            DataType::UInt8 => Self::UInt8,
            DataType::UInt16 => Self::UInt16,
            DataType::UInt32 => Self::UInt32,
            DataType::UInt64 => Self::UInt64,
            DataType::Float16 => Self::Float16,
            DataType::Float32 => Self::Float32,
            DataType::Float64 => Self::Float64,
            DataType::Date32 => Self::Datetime(DenseTimeUnit::Day),
            DataType::Date64 => Self::Datetime(DenseTimeUnit::Millisecond),
            DataType::Timestamp(unit, _) => Self::Datetime(DenseTimeUnit::of(unit)),
            DataType::Duration(unit) => Self::Timedelta(DenseTimeUnit::of(unit)),
            _ => return None,
        })
    }

    /// The element type once nulls are present, or None where nulls have no dense encoding.
    fn with_nulls(self) -> Option<Self> {
        match self {
            Self::Bool => None,
            Self::Float16
            | Self::Float32
            | Self::Float64
            | Self::Datetime(_)
            | Self::Timedelta(_) => Some(self),
            _ => Some(Self::Float64),
        }
    }
}

/// A column as one contiguous buffer.
#[derive(Debug, Clone)]
pub struct DenseArray {
    /// Owns the bytes: the mapping for a view, a fresh allocation for a copy.
    pub buffer: Buffer,
    pub dtype: DenseDtype,
    /// `[n]`, or `[n, d]` for `fixed_size_list<_, d>`.
    pub shape: Vec<usize>,
    /// None when `buffer` is a view of the mapped file.
    pub copy_reason: Option<String>,
}

/// The Arrow leaf type and row width of a column that has a dense form.
fn leaf_of(data_type: &DataType) -> Option<(&DataType, Option<usize>)> {
    match data_type {
        DataType::FixedSizeList(field, width) if *width >= 0 => {
            DenseDtype::of_leaf(field.data_type())?;
            Some((field.data_type(), Some(*width as usize)))
        }
        other => {
            DenseDtype::of_leaf(other)?;
            Some((other, None))
        }
    }
}

/// The flat leaf values of a chunk and a validity per flat element (None when all are valid).
fn flatten(chunk: &ArrayRef, width: Option<usize>) -> (ArrayRef, Option<Vec<bool>>) {
    match width {
        None => {
            let validity = chunk.logical_nulls().map(|nulls| nulls.iter().collect());
            (chunk.clone(), validity)
        }
        Some(width) => {
            let list = chunk
                .as_any()
                .downcast_ref::<FixedSizeListArray>()
                .expect("fixed-size list");
            let values = list.values().clone();
            let outer = list.logical_nulls();
            let inner = values.logical_nulls();
            let validity = (outer.is_some() || inner.is_some()).then(|| {
                (0..values.len())
                    .map(|i| {
                        outer.as_ref().is_none_or(|n| n.is_valid(i / width.max(1)))
                            && inner.as_ref().is_none_or(|n| n.is_valid(i))
                    })
                    .collect()
            });
            (values, validity)
        }
    }
}

/// The raw little-endian bytes of a fixed-width flat array (not booleans).
fn raw_bytes(values: &ArrayRef) -> Buffer {
    let data = values.to_data();
    let size = values
        .data_type()
        .primitive_width()
        .expect("fixed-width leaf");
    data.buffers()[0].slice_with_length(data.offset() * size, data.len() * size)
}

const DICTIONARY_COPY: &str =
    "the column is dictionary-encoded: decoding it copies (its codes are a view)";
const RUN_END_COPY: &str = "the column is run-end encoded: expanding the runs copies";

/// The value type of an encoded column (dictionary or run-end) and why decoding it copies.
fn encoding_of(data_type: &DataType) -> Option<(&DataType, &'static str)> {
    match data_type {
        DataType::Dictionary(_, value_type) => Some((value_type, DICTIONARY_COPY)),
        DataType::RunEndEncoded(_, values) => Some((values.data_type(), RUN_END_COPY)),
        _ => None,
    }
}

/// Encoded chunks decoded to their value type (a copy); other chunks as they are.
fn decode_encodings(chunks: &[DecodedColumn]) -> Result<Cow<'_, [DecodedColumn]>, String> {
    let Some((value_type, reason)) = encoding_of(chunks[0].array.data_type()) else {
        return Ok(Cow::Borrowed(chunks));
    };
    chunks
        .iter()
        .map(|chunk| {
            let array =
                arrow::compute::cast(&chunk.array, value_type).map_err(|e| e.to_string())?;
            Ok(DecodedColumn {
                array,
                copy_reason: Some(reason.into()),
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Cow::Owned)
}

/// The codes (keys) of a dictionary-encoded column, as chunks that share the mapping.
pub fn dictionary_codes(chunks: &[DecodedColumn]) -> Result<Vec<DecodedColumn>, String> {
    chunks
        .iter()
        .map(|chunk| {
            let dictionary = chunk.array.as_any_dictionary_opt().ok_or_else(|| {
                format!(
                    "type {} is not dictionary-encoded",
                    type_name(chunk.array.data_type())
                )
            })?;
            Ok(DecodedColumn {
                array: arrow::array::make_array(dictionary.keys().to_data()),
                copy_reason: chunk.copy_reason.clone(),
            })
        })
        .collect()
}

/// Why this column can't be a view of the mapping, or None if it can.
pub fn zero_copy_blocker(chunks: &[DecodedColumn], mapped: &Range<usize>) -> Option<String> {
    if let Some((_, reason)) = encoding_of(chunks[0].array.data_type()) {
        return Some(reason.into());
    }
    let data_type = chunks[0].array.data_type();
    let Some((leaf, width)) = leaf_of(data_type) else {
        return Some(format!(
            "type {} has no fixed-width NumPy / DLPack form",
            type_name(data_type)
        ));
    };
    // A reason the decoder already gave (a compressed or misaligned batch) names the cause
    // better than the batch count does.
    if let Some(reason) = chunks.iter().find_map(|chunk| chunk.copy_reason.clone()) {
        return Some(reason);
    }
    if chunks.len() > 1 {
        return Some(format!(
            "the column spans {} record batches; one view needs one contiguous buffer \
             (`relay convert` rewrites the file as one record batch)",
            chunks.len()
        ));
    }
    let chunk = &chunks[0];
    let (values, validity) = flatten(&chunk.array, width);
    if let Some(validity) = validity {
        let nulls = validity.iter().filter(|v| !**v).count();
        return Some(format!(
            "the column has {nulls} null values, filled with NaN / NaT in a copy"
        ));
    }
    match leaf {
        DataType::Boolean => {
            return Some("Arrow booleans are bits; NumPy booleans are bytes".into());
        }
        DataType::Date32 => {
            return Some("date32 holds 32-bit days; datetime64[D] needs 64 bits".into());
        }
        _ => {}
    }
    let bytes = raw_bytes(&values);
    let start = bytes.as_ptr() as usize;
    let inside_mapping = mapped.start <= start && start + bytes.len() <= mapped.end;
    if !bytes.is_empty() && !inside_mapping {
        return Some("the decoded buffer is not inside the mapping".into());
    }
    None
}

fn fill_float<T: arrow::datatypes::ArrowPrimitiveType>(
    out: &mut MutableBuffer,
    values: &ArrayRef,
    validity: &[bool],
    nan: T::Native,
) {
    let values = values.as_primitive::<T>();
    for (value, valid) in values.values().iter().zip(validity) {
        out.push(if *valid { *value } else { nan });
    }
}

/// The column as one contiguous buffer: a view of the mapping where possible, else one copy.
/// Returns Err with the reason when the column has no dense form at all.
pub fn materialize(chunks: &[DecodedColumn], mapped: &Range<usize>) -> Result<DenseArray, String> {
    let encoded = chunks[0].array.data_type().clone();
    let decoded = decode_encodings(chunks)?;
    let chunks: &[DecodedColumn] = &decoded;
    let data_type = chunks[0].array.data_type().clone();
    let (leaf, width) = leaf_of(&data_type).ok_or_else(|| match &encoded {
        DataType::Dictionary(..) => format!(
            "type {} has no fixed-width NumPy / DLPack form: its values are {}; .codes() gives \
             the dictionary's integer codes (a view), for an embedding layer",
            type_name(&encoded),
            type_name(&data_type)
        ),
        _ => format!(
            "type {} has no fixed-width NumPy / DLPack form",
            type_name(&data_type)
        ),
    })?;
    let rows: usize = chunks.iter().map(|c| c.array.len()).sum();
    let shape = match width {
        Some(width) => vec![rows, width],
        None => vec![rows],
    };
    let base_dtype = DenseDtype::of_leaf(leaf).expect("checked by leaf_of");
    let flat: Vec<(ArrayRef, Option<Vec<bool>>)> =
        chunks.iter().map(|c| flatten(&c.array, width)).collect();
    let has_nulls = flat
        .iter()
        .any(|(_, validity)| validity.as_ref().is_some_and(|v| v.iter().any(|x| !x)));
    let dtype = if has_nulls {
        base_dtype.with_nulls().ok_or_else(|| {
            format!(
                "type {} with nulls has no fixed-width form",
                type_name(&data_type)
            )
        })?
    } else {
        base_dtype
    };

    let copy_reason = zero_copy_blocker(chunks, mapped);
    if copy_reason.is_none() {
        return Ok(DenseArray {
            buffer: raw_bytes(&flat[0].0),
            dtype,
            shape,
            copy_reason,
        });
    }

    let total_items: usize = flat.iter().map(|(values, _)| values.len()).sum();
    let mut out = MutableBuffer::new(total_items * dtype.item_size());
    for (values, validity) in &flat {
        let all_valid;
        let validity: &[bool] = match validity {
            Some(v) => v,
            None => {
                all_valid = vec![true; values.len()];
                &all_valid
            }
        };
        match (leaf, has_nulls) {
            (DataType::Boolean, _) => {
                for value in values.as_boolean().values().iter() {
                    out.push(value as u8);
                }
            }
            (DataType::Float16, true) => {
                fill_float::<Float16Type>(&mut out, values, validity, half::f16::NAN)
            }
            (DataType::Float32, true) => {
                fill_float::<Float32Type>(&mut out, values, validity, f32::NAN)
            }
            (DataType::Float64, true) => {
                fill_float::<Float64Type>(&mut out, values, validity, f64::NAN)
            }
            (DataType::Date32, _) => {
                let days = values.as_primitive::<arrow::datatypes::Date32Type>();
                for (day, valid) in days.values().iter().zip(validity) {
                    out.push(if *valid { *day as i64 } else { i64::MIN });
                }
            }
            (_, true) if matches!(dtype, DenseDtype::Datetime(_) | DenseDtype::Timedelta(_)) => {
                let bytes = raw_bytes(values);
                let ticks = bytes.typed_data::<i64>();
                for (tick, valid) in ticks.iter().zip(validity) {
                    out.push(if *valid { *tick } else { i64::MIN });
                }
            }
            (_, true) => {
                // Integers with nulls: float64 with NaN.
                let as_float =
                    arrow::compute::cast(values, &DataType::Float64).map_err(|e| e.to_string())?;
                fill_float::<Float64Type>(&mut out, &as_float, validity, f64::NAN);
            }
            (_, false) => out.extend_from_slice(raw_bytes(values).as_slice()),
        }
    }
    Ok(DenseArray {
        buffer: out.into(),
        dtype,
        shape,
        copy_reason,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Date32Array, Float32Array, Int32Array, Int64Array, StringArray,
    };
    use arrow::datatypes::Field;

    use super::*;

    fn chunk(array: ArrayRef) -> DecodedColumn {
        DecodedColumn {
            array,
            copy_reason: None,
        }
    }

    /// A "mapping" that covers all of memory, so heap arrays count as mapped.
    const EVERYWHERE: Range<usize> = 0..usize::MAX;
    const NOWHERE: Range<usize> = 0..0;

    #[test]
    fn single_chunk_without_nulls_is_a_view() {
        let array: ArrayRef = Arc::new(Float32Array::from(vec![1.0, 2.0, 3.0]));
        let values_ptr = array.to_data().buffers()[0].as_ptr();
        let dense = materialize(&[chunk(array)], &EVERYWHERE).unwrap();
        assert_eq!(dense.copy_reason, None);
        assert_eq!(dense.buffer.as_ptr(), values_ptr);
        assert_eq!(dense.buffer.typed_data::<f32>(), &[1.0, 2.0, 3.0]);
        assert_eq!(dense.shape, vec![3]);
    }

    #[test]
    fn a_slice_is_a_view_at_an_offset() {
        let array: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5]));
        let dense = materialize(&[chunk(array.slice(1, 3))], &EVERYWHERE).unwrap();
        assert_eq!(dense.copy_reason, None);
        assert_eq!(dense.buffer.typed_data::<i64>(), &[2, 3, 4]);
    }

    #[test]
    fn buffers_outside_the_mapping_are_not_called_views() {
        let array: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let dense = materialize(&[chunk(array)], &NOWHERE).unwrap();
        assert!(
            dense
                .copy_reason
                .unwrap()
                .contains("not inside the mapping")
        );
        assert_eq!(dense.buffer.typed_data::<i32>(), &[1, 2]);
    }

    #[test]
    fn several_chunks_are_concatenated() {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let b: ArrayRef = Arc::new(Int32Array::from(vec![3]));
        let dense = materialize(&[chunk(a), chunk(b)], &EVERYWHERE).unwrap();
        assert!(dense.copy_reason.unwrap().contains("2 record batches"));
        assert_eq!(dense.buffer.typed_data::<i32>(), &[1, 2, 3]);
    }

    #[test]
    fn integers_with_nulls_become_float64_nan() {
        let array: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(3)]));
        let dense = materialize(&[chunk(array)], &EVERYWHERE).unwrap();
        assert_eq!(dense.dtype, DenseDtype::Float64);
        let values = dense.buffer.typed_data::<f64>();
        assert_eq!((values[0], values[2]), (1.0, 3.0));
        assert!(values[1].is_nan());
    }

    #[test]
    fn floats_with_nulls_keep_their_width() {
        let array: ArrayRef = Arc::new(Float32Array::from(vec![None, Some(2.5)]));
        let dense = materialize(&[chunk(array)], &EVERYWHERE).unwrap();
        assert_eq!(dense.dtype, DenseDtype::Float32);
        let values = dense.buffer.typed_data::<f32>();
        assert!(values[0].is_nan() && values[1] == 2.5);
    }

    #[test]
    fn booleans_unpack_to_bytes_and_dates_widen() {
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![true, false, true]));
        let dense = materialize(&[chunk(bools)], &EVERYWHERE).unwrap();
        assert_eq!(dense.buffer.as_slice(), &[1, 0, 1]);
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(1), None]));
        let dense = materialize(&[chunk(dates)], &EVERYWHERE).unwrap();
        assert_eq!(dense.dtype, DenseDtype::Datetime(DenseTimeUnit::Day));
        assert_eq!(dense.buffer.typed_data::<i64>(), &[1, i64::MIN]);
    }

    #[test]
    fn fixed_size_lists_are_two_dimensional_with_row_nulls_as_nan() {
        let values = Arc::new(Float32Array::from(vec![1.0, 2.0, 3.0, 4.0]));
        let field = Arc::new(Field::new("item", DataType::Float32, true));
        let nulls = arrow::buffer::NullBuffer::from(vec![true, false]);
        let list: ArrayRef = Arc::new(FixedSizeListArray::new(field, 2, values, Some(nulls)));
        let dense = materialize(&[chunk(list)], &EVERYWHERE).unwrap();
        assert_eq!(dense.shape, vec![2, 2]);
        let out = dense.buffer.typed_data::<f32>();
        assert_eq!(&out[..2], &[1.0, 2.0]);
        assert!(out[2].is_nan() && out[3].is_nan());
    }

    #[test]
    fn strings_have_no_dense_form_and_say_so() {
        let array: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        let error = materialize(&[chunk(array.clone())], &EVERYWHERE).unwrap_err();
        assert!(error.contains("no fixed-width"));
        assert!(zero_copy_blocker(&[chunk(array)], &EVERYWHERE).is_some());
    }

    #[test]
    fn dictionary_codes_share_the_keys_and_values_decode() {
        let dictionary: arrow::array::DictionaryArray<arrow::datatypes::Int32Type> =
            vec!["x", "y", "x"].into_iter().collect();
        let keys_ptr = dictionary.keys().values().inner().as_ptr();
        let array: ArrayRef = Arc::new(dictionary);
        let codes = dictionary_codes(&[chunk(array.clone())]).unwrap();
        let dense = materialize(&codes, &EVERYWHERE).unwrap();
        assert_eq!(dense.buffer.as_ptr(), keys_ptr);
        assert_eq!(dense.buffer.typed_data::<i32>(), &[0, 1, 0]);
        assert!(
            zero_copy_blocker(&[chunk(array)], &EVERYWHERE)
                .unwrap()
                .contains("dictionary")
        );
    }
}
