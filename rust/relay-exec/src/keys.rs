//! Keys packed into one integer, and the hasher the hash tables of joins and aggregations use.
//!
//! A join or a group_by on a few narrow keys need not encode them in arrow-rs's row format
//! (a byte string per row, hashed byte by byte): up to two keys, each an integer-like value
//! (integers, dates, timestamps, durations, times: their bits) or a string of at most 7 bytes
//! (its bytes and its length in one word), pack into one `u128` per row, equal exactly when
//! the keys are, and hash in two multiplies: several times faster than the row format for a
//! join on two integer keys (TPC-H Q9's lineitem join on (l_partkey, l_suppkey)).
//!
//! A value that does not fit (a longer string; for a group_by, a null integer, which has no
//! bits of its own) makes `pack` answer None, and the caller falls back to the row format.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, GenericStringArray, OffsetSizeTrait,
    StringViewArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Int8Type, Int16Type, Int32Type, Int64Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use num_traits::AsPrimitive;

/// A multiplicative hasher (the FxHash mix) for the hash tables of joins and aggregations: a
/// few instructions per 8 bytes of key, where std's SipHash runs several rounds. Keys come from
/// the data, and a query runs once over them, so speed matters more here than resistance to
/// chosen inputs.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl KeyHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_i64(&mut self, value: i64) {
        self.add(value as u64);
    }

    fn write_u128(&mut self, value: u128) {
        self.add(value as u64);
        self.add((value >> 64) as u64);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        // The table takes its bucket from the low bits and its tag from the high ones: fold
        // the well-mixed high half into the low half.
        self.0 ^ (self.0 >> 32)
    }
}

/// A hash map keyed by packed keys (or int64 keys, or encoded rows), hashed by `KeyHasher`.
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// What a null key value packs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Nulls {
    /// Anything: the caller leaves rows with a null key out (a join, where null matches
    /// nothing).
    Ignored,
    /// A word no value has, equal for every null (a group_by, where nulls form a group). Only
    /// strings have one; an integer column with a null does not pack.
    Distinct,
}

/// The word of a null string: a length byte of 255, which no packed string has.
const NULL_STRING: u64 = 0xff << 56;

/// Whether a key column of type `t` may pack (its values may still not fit).
pub fn packable(t: &DataType) -> bool {
    integer_like(t) || matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn integer_like(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
                | DataType::Duration(_)
                | DataType::Time32(_)
                | DataType::Time64(_)
        )
}

/// Up to two key columns of `len` rows packed into one `u128` per row (the first column in the
/// high word); None when there are more columns, or a type or value that does not pack.
pub fn pack(keys: &[ArrayRef], nulls: Nulls) -> Option<Vec<u128>> {
    match keys {
        [only] => Some(
            words(only.as_ref(), nulls)?
                .into_iter()
                .map(u128::from)
                .collect(),
        ),
        [first, second] => {
            let high = words(first.as_ref(), nulls)?;
            let low = words(second.as_ref(), nulls)?;
            Some(
                high.into_iter()
                    .zip(low)
                    .map(|(h, l)| (u128::from(h) << 64) | u128::from(l))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Whether `pack(keys, nulls)` packs: checks types and string lengths, packs nothing.
pub fn fits(keys: &[ArrayRef], nulls: Nulls) -> bool {
    fn short<O: OffsetSizeTrait>(strings: &GenericStringArray<O>) -> bool {
        strings
            .value_offsets()
            .windows(2)
            .enumerate()
            .all(|(row, ends)| strings.is_null(row) || (ends[1] - ends[0]).as_usize() <= 7)
    }
    keys.len() <= 2
        && keys.iter().all(|key| {
            let t = key.data_type();
            match t {
                _ if integer_like(t) => nulls == Nulls::Ignored || key.null_count() == 0,
                DataType::Utf8 => short(key.as_string::<i32>()),
                DataType::LargeUtf8 => short(key.as_string::<i64>()),
                DataType::Utf8View => {
                    let strings = key.as_string_view();
                    strings
                        .views()
                        .iter()
                        .enumerate()
                        .all(|(row, view)| strings.is_null(row) || (*view as u32) <= 7)
                }
                _ => false,
            }
        })
}

/// One key column as a 64-bit word per row (see `pack`).
fn words(array: &dyn Array, nulls: Nulls) -> Option<Vec<u64>> {
    let t = array.data_type();
    if integer_like(t) {
        if nulls == Nulls::Distinct && array.null_count() > 0 {
            return None;
        }
        return Some(integer_words(array));
    }
    match t {
        DataType::Utf8 => string_words(array.as_string::<i32>()),
        DataType::LargeUtf8 => string_words(array.as_string::<i64>()),
        DataType::Utf8View => view_words(array.as_string_view()),
        _ => None,
    }
}

/// `string_words` of a string view column, read from the views alone: a string of at most 12
/// bytes lies inline in its view, after the 4-byte length.
fn view_words(strings: &StringViewArray) -> Option<Vec<u64>> {
    let word = |view: u128| {
        let len = view as u32;
        (len <= 7)
            .then(|| ((view >> 32) as u64 & ((1u64 << (8 * len)) - 1)) | (u64::from(len) << 56))
    };
    let views = strings.views();
    match strings.nulls() {
        None => views.iter().map(|&view| word(view)).collect(),
        Some(nulls) => views
            .iter()
            .zip(nulls.iter())
            .map(|(&view, valid)| if valid { word(view) } else { Some(NULL_STRING) })
            .collect(),
    }
}

/// The bits of each value of an integer-like column, widened to 64 (sign-extended, so every
/// width keeps equal values equal; a uint64 by its bits).
fn integer_words(array: &dyn Array) -> Vec<u64> {
    fn bits<T: ArrowPrimitiveType>(array: &dyn Array) -> Vec<u64>
    where
        T::Native: AsPrimitive<i64>,
    {
        array
            .as_primitive::<T>()
            .values()
            .iter()
            .map(|v| v.as_() as u64)
            .collect()
    }
    match array.data_type() {
        DataType::Int8 => bits::<Int8Type>(array),
        DataType::Int16 => bits::<Int16Type>(array),
        DataType::Int32 => bits::<Int32Type>(array),
        DataType::Int64 => bits::<Int64Type>(array),
        DataType::UInt8 => bits::<UInt8Type>(array),
        DataType::UInt16 => bits::<UInt16Type>(array),
        DataType::UInt32 => bits::<UInt32Type>(array),
        DataType::UInt64 => bits::<UInt64Type>(array),
        DataType::Date32 => bits::<Date32Type>(array),
        DataType::Date64 => bits::<Date64Type>(array),
        DataType::Time32(TimeUnit::Second) => bits::<Time32SecondType>(array),
        DataType::Time32(_) => bits::<Time32MillisecondType>(array),
        DataType::Time64(TimeUnit::Microsecond) => bits::<Time64MicrosecondType>(array),
        DataType::Time64(_) => bits::<Time64NanosecondType>(array),
        DataType::Timestamp(TimeUnit::Second, _) => bits::<TimestampSecondType>(array),
        DataType::Timestamp(TimeUnit::Millisecond, _) => bits::<TimestampMillisecondType>(array),
        DataType::Timestamp(TimeUnit::Microsecond, _) => bits::<TimestampMicrosecondType>(array),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => bits::<TimestampNanosecondType>(array),
        DataType::Duration(TimeUnit::Second) => bits::<DurationSecondType>(array),
        DataType::Duration(TimeUnit::Millisecond) => bits::<DurationMillisecondType>(array),
        DataType::Duration(TimeUnit::Microsecond) => bits::<DurationMicrosecondType>(array),
        DataType::Duration(TimeUnit::Nanosecond) => bits::<DurationNanosecondType>(array),
        // `integer_like` admits only the types above.
        _ => vec![0; array.len()],
    }
}

fn string_words<O: OffsetSizeTrait>(strings: &GenericStringArray<O>) -> Option<Vec<u64>> {
    let offsets = strings.value_offsets();
    let bytes = strings.values().as_slice();
    let mut out = Vec::with_capacity(strings.len());
    for (row, ends) in offsets.windows(2).enumerate() {
        let (start, end) = (ends[0].as_usize(), ends[1].as_usize());
        let len = end.checked_sub(start)?;
        if strings.is_null(row) {
            out.push(NULL_STRING);
        } else if len > 7 {
            return None;
        } else if let Some(word) = bytes.get(start..start + 8) {
            // One unaligned 8-byte load, masked to the string's bytes (faster than a copy of
            // a variable length).
            let word = u64::from_le_bytes(word.try_into().ok()?) & ((1u64 << (8 * len)) - 1);
            out.push(word | ((len as u64) << 56));
        } else {
            out.push(string_word(bytes.get(start..end)?)?);
        }
    }
    Some(out)
}

/// A string of at most 7 bytes as one word: its bytes in the low 7 bytes, its length in the
/// high one (so "a" and "a\0" differ).
fn string_word(value: &[u8]) -> Option<u64> {
    if value.len() > 7 {
        return None;
    }
    let mut word = [0u8; 8];
    word[..value.len()].copy_from_slice(value);
    word[7] = value.len() as u8;
    Some(u64::from_le_bytes(word))
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hash};
    use std::sync::Arc;

    use arrow::array::{
        Date32Array, Int32Array, Int64Array, StringArray, StringViewArray, UInt64Array,
    };

    use super::*;

    #[test]
    fn integers_of_every_width_and_dates_pack_by_value() {
        let narrow: ArrayRef = Arc::new(Int32Array::from(vec![-1, 5, 7]));
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![-1, 5, 7]));
        assert_eq!(
            pack(std::slice::from_ref(&narrow), Nulls::Distinct),
            pack(std::slice::from_ref(&wide), Nulls::Distinct)
        );
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![3, 3, 4]));
        let packed = pack(&[wide, dates], Nulls::Distinct).unwrap();
        assert_eq!(packed[0], ((-1i64 as u64 as u128) << 64) | 3);
        assert_ne!(packed[1], packed[2]);
        // A uint64 packs by its bits: the largest value stays distinct from -1.
        let unsigned: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, 1]));
        assert_eq!(
            pack(&[unsigned], Nulls::Distinct).unwrap(),
            vec![u64::MAX as u128, 1]
        );
    }

    #[test]
    fn short_strings_pack_with_their_length_and_long_ones_do_not() {
        let strings: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some("a\0"),
            Some(""),
            None,
            Some("1234567"),
        ]));
        assert!(fits(std::slice::from_ref(&strings), Nulls::Distinct));
        let packed = pack(&[strings], Nulls::Distinct).unwrap();
        let mut distinct = packed.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
        let views: ArrayRef = Arc::new(StringViewArray::from(vec![
            Some("a"),
            Some("a\0"),
            Some(""),
            None,
            Some("1234567"),
        ]));
        assert_eq!(pack(&[views], Nulls::Distinct).unwrap(), packed);
        let long: ArrayRef = Arc::new(StringArray::from(vec!["12345678"]));
        assert_eq!(pack(std::slice::from_ref(&long), Nulls::Distinct), None);
        assert!(!fits(&[long], Nulls::Ignored));
        let long_view: ArrayRef = Arc::new(StringViewArray::from(vec!["1234567", "12345678"]));
        assert!(!fits(std::slice::from_ref(&long_view), Nulls::Ignored));
        assert!(fits(&[long_view.slice(0, 1)], Nulls::Ignored));
    }

    #[test]
    fn a_null_integer_packs_only_where_nulls_are_ignored_and_three_keys_never() {
        let with_null: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        assert_eq!(
            pack(std::slice::from_ref(&with_null), Nulls::Distinct),
            None
        );
        assert!(!fits(std::slice::from_ref(&with_null), Nulls::Distinct));
        assert!(fits(std::slice::from_ref(&with_null), Nulls::Ignored));
        assert_eq!(
            pack(std::slice::from_ref(&with_null), Nulls::Ignored).map(|p| p.len()),
            Some(2)
        );
        assert_eq!(
            pack(
                &[with_null.clone(), with_null.clone(), with_null],
                Nulls::Ignored
            ),
            None
        );
    }

    #[test]
    fn the_hasher_spreads_packed_keys_over_the_low_bits() {
        let hasher = BuildHasherDefault::<KeyHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..64u128)
            .map(|k| hasher.hash_one((k << 64) | 7) & 0xff)
            .collect();
        assert!(
            buckets.len() > 32,
            "{} buckets of 256 for 64 keys",
            buckets.len()
        );
        let mut h = KeyHasher::default();
        5u128.hash(&mut h);
        assert_ne!(h.finish(), hasher.hash_one(6u128));
    }
}
