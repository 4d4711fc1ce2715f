//! Arrow values as Python objects: the same values pyarrow's `to_pylist()` gives.
//!
//! | Arrow type | Python value |
//! | --- | --- |
//! | null | `None` |
//! | bool, int8..uint64 | `bool`, `int` |
//! | float16, float32, float64 | `float` |
//! | string, large_string, string_view | `str` |
//! | binary, large_binary, binary_view, fixed_size_binary | `bytes` |
//! | date32, date64 | `datetime.date` (date64 rounds down to the day, as pyarrow does) |
//! | timestamp without a time zone | naive `datetime.datetime` |
//! | timestamp with a time zone | aware `datetime.datetime` in that zone: `zoneinfo.ZoneInfo` for a name, `datetime.timezone` for a fixed offset such as `"+01:00"` |
//! | time32, time64 | `datetime.time` |
//! | duration | `datetime.timedelta` |
//! | decimal32..decimal256 | `decimal.Decimal` with the type's scale as its exponent |
//! | month_day_nano_interval | `(months, days, nanoseconds)` (equal to pyarrow's `MonthDayNano`) |
//! | dictionary, run_end_encoded | the decoded values |
//! | list, large_list, list_view, large_list_view, fixed_size_list | `list` |
//! | struct | `dict` (duplicate field names are refused, as pyarrow does) |
//! | map | `list` of `(key, value)` tuples |
//!
//! A null at any level is `None`.
//!
//! **Nanoseconds.** Python's `datetime` and `timedelta` stop at microseconds. For `timestamp[ns]`
//! and `duration[ns]`, pyarrow returns `pandas.Timestamp` / `pandas.Timedelta` when pandas is
//! installed; relay never depends on pandas and returns `datetime.datetime` /
//! `datetime.timedelta` rounded down (towards the past) to the microsecond, the value
//! `pandas.Timestamp.to_pydatetime()` gives. `time64[ns]` rounds down the same way, as pyarrow does.
//!
//! Values Python cannot hold (a date outside years 1..9999, a timedelta beyond 999,999,999
//! days) raise `relay_ml.RelayValueError`; types without a Python form (unions, year-month and
//! day-time intervals) raise `relay_ml.RelayTypeError`. Nothing here panics on a valid array.
//!
//! Conversion goes one array at a time, not one value at a time: each nested level converts its
//! child array once, then slices the result. A child is converted only at the positions some
//! valid parent row refers to (`wanted`), so values hidden under a null parent (which may hold
//! anything) are never looked at, and a small slice of a large list column converts only the
//! values it covers.

use std::collections::HashMap;
use std::ops::Range;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, GenericListArray, GenericListViewArray,
    OffsetSizeTrait, PrimitiveArray, RunArray,
};
use arrow::datatypes::{
    ArrowNativeType, DataType, Date32Type, Date64Type, Decimal32Type, Decimal64Type,
    Decimal128Type, Decimal256Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, IntervalMonthDayNanoType, IntervalUnit, RunEndIndexType,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDate, PyDateTime, PyDelta, PyDict, PyFloat, PyList, PyString, PyTime,
    PyTuple, PyType, PyTzInfo,
};
use pyo3::{IntoPyObjectExt, intern};

use relay_storage::type_name;

use crate::errors::{ErrorKind, relay_error};

/// The Python values of every row of `array` (sliced arrays convert only their rows).
pub fn array_to_pylist<'py>(py: Python<'py>, array: &dyn Array) -> PyResult<Bound<'py, PyList>> {
    let mut converter = Converter::new(py);
    let values = converter.convert(array, None)?;
    PyList::new(py, values)
}

/// `array_to_pylist`, with `what` (say `column "x" of /data/file.arrow`) leading the message of
/// any relay error, so that errors name the column and file at fault.
pub fn array_to_pylist_of<'py>(
    py: Python<'py>,
    array: &dyn Array,
    what: &str,
) -> PyResult<Bound<'py, PyList>> {
    array_to_pylist(py, array).map_err(|error| with_context(py, error, what))
}

/// `error` with `what: ` before its message, keeping its class and cause, when it is one of
/// relay's own errors (others pass through unchanged).
fn with_context(py: Python<'_>, error: PyErr, what: &str) -> PyErr {
    let class = error.get_type(py);
    let is_relay_error = class
        .module()
        .is_ok_and(|module| module.to_str().is_ok_and(|m| m == "relay_ml.errors"));
    if !is_relay_error {
        return error;
    }
    let wrapped = PyErr::from_type(class, (format!("{what}: {}", error.value(py)),));
    wrapped.set_cause(py, error.cause(py));
    wrapped
}

const MICROS_PER_SECOND: i128 = 1_000_000;
const MICROS_PER_DAY: i128 = 86_400 * MICROS_PER_SECOND;
/// `datetime.date(1, 1, 1)` and `datetime.date(9999, 12, 31)` as days since 1970-01-01.
const FIRST_PYTHON_DAY: i128 = -719_162;
const LAST_PYTHON_DAY: i128 = 2_932_896;
/// `datetime.timedelta.max.days`.
const MAX_DELTA_DAYS: i128 = 999_999_999;

/// Which rows of an array are asked for; `None` means all of them.
type Wanted<'a> = Option<&'a [bool]>;

fn is_wanted(wanted: Wanted<'_>, row: usize) -> bool {
    wanted.is_none_or(|rows| rows.get(row).copied().unwrap_or(false))
}

fn type_error(data_type: &DataType, what: &str) -> PyErr {
    relay_error(
        ErrorKind::Type,
        format!("arrow type {} {what}", type_name(data_type)),
    )
}

fn unsupported(data_type: &DataType) -> PyErr {
    type_error(
        data_type,
        "has no Python value conversion (to_pylist / to_numpy of objects)",
    )
}

/// A malformed array (offsets or keys out of bounds): an error, never a panic.
fn corrupt(data_type: &DataType, detail: impl std::fmt::Display) -> PyErr {
    relay_error(
        ErrorKind::Value,
        format!(
            "cannot convert arrow {} to Python: {detail}",
            type_name(data_type)
        ),
    )
}

fn downcast<T: 'static>(array: &dyn Array) -> PyResult<&T> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| type_error(array.data_type(), "does not match its array layout"))
}

fn ticks_per_second(unit: &TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// `value` ticks of `unit` as microseconds, rounded down (only nanoseconds round).
fn to_micros(value: i64, unit: &TimeUnit) -> i128 {
    let value = i128::from(value);
    match unit {
        TimeUnit::Nanosecond => value.div_euclid(1_000),
        other => value * (MICROS_PER_SECOND / ticks_per_second(other)),
    }
}

/// (year, month, day) of a day count since 1970-01-01, for days in the Python range
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i128) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    // In range by the caller's check: years 1..=9999, months 1..=12, days 1..=31.
    (year as i32, month as u8, day as u8)
}

/// A broken-down date and time of day.
struct Civil {
    year: i32,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    microsecond: u32,
}

/// `micros` since 1970-01-01T00:00 as a civil date and time, or None outside years 1..9999.
fn civil_from_micros(micros: i128) -> Option<Civil> {
    let days = micros.div_euclid(MICROS_PER_DAY);
    if !(FIRST_PYTHON_DAY..=LAST_PYTHON_DAY).contains(&days) {
        return None;
    }
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, microsecond) = time_of_day(micros.rem_euclid(MICROS_PER_DAY));
    Some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
        microsecond,
    })
}

/// (hour, minute, second, microsecond) of `micros` in `0..MICROS_PER_DAY`.
fn time_of_day(micros: i128) -> (u8, u8, u8, u32) {
    let seconds = micros / MICROS_PER_SECOND;
    (
        (seconds / 3_600) as u8,
        (seconds / 60 % 60) as u8,
        (seconds % 60) as u8,
        (micros % MICROS_PER_SECOND) as u32,
    )
}

/// Seconds east of UTC of a fixed-offset zone string: `+HH:MM`, `+HHMM` or `+HH` (or `-`).
fn parse_fixed_offset(zone: &str) -> Option<i32> {
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits = &zone[1..];
    if !digits.is_ascii() {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits, "00"),
        4 => digits.split_at(2),
        5 if digits.as_bytes()[2] == b':' => (&digits[..2], &digits[3..]),
        _ => return None,
    };
    if !(hours.bytes().all(|b| b.is_ascii_digit()) && minutes.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60).then_some(sign * (hours * 3_600 + minutes * 60))
}

/// A timestamp type's time zone, resolved once per conversion.
#[derive(Clone)]
enum Zone<'py> {
    /// A fixed offset from UTC, in seconds, and its `datetime.timezone`.
    Fixed(i32, Bound<'py, PyTzInfo>),
    /// A named zone (`zoneinfo.ZoneInfo`); values are converted from UTC with `astimezone`.
    Named(Bound<'py, PyTzInfo>),
}

static DECIMAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The state of one `array_to_pylist` call: Python objects looked up once, not per value.
struct Converter<'py> {
    py: Python<'py>,
    none: Bound<'py, PyAny>,
    zones: HashMap<String, Zone<'py>>,
}

impl<'py> Converter<'py> {
    fn new(py: Python<'py>) -> Self {
        Converter {
            py,
            none: py.None().into_bound(py),
            zones: HashMap::new(),
        }
    }

    /// One Python value per row of `array`: `None` for nulls and for rows not `wanted`.
    fn convert(
        &mut self,
        array: &dyn Array,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let py = self.py;
        let data_type = array.data_type();
        match data_type {
            DataType::Null => Ok(vec![self.none.clone(); array.len()]),
            DataType::Boolean => {
                let values = array
                    .as_boolean_opt()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyBool::new(py, values.value(i)).to_owned().into_any())
                })
            }
            DataType::Int8 => self.integers::<Int8Type>(array, wanted),
            DataType::Int16 => self.integers::<Int16Type>(array, wanted),
            DataType::Int32 => self.integers::<Int32Type>(array, wanted),
            DataType::Int64 => self.integers::<Int64Type>(array, wanted),
            DataType::UInt8 => self.integers::<UInt8Type>(array, wanted),
            DataType::UInt16 => self.integers::<UInt16Type>(array, wanted),
            DataType::UInt32 => self.integers::<UInt32Type>(array, wanted),
            DataType::UInt64 => self.integers::<UInt64Type>(array, wanted),
            DataType::Float16 => {
                let values = primitive::<Float16Type>(array)?;
                self.each(array, wanted, |i| {
                    Ok(PyFloat::new(py, values.value(i).to_f64()).into_any())
                })
            }
            DataType::Float32 => {
                let values = primitive::<Float32Type>(array)?;
                self.each(array, wanted, |i| {
                    Ok(PyFloat::new(py, f64::from(values.value(i))).into_any())
                })
            }
            DataType::Float64 => {
                let values = primitive::<Float64Type>(array)?;
                self.each(array, wanted, |i| {
                    Ok(PyFloat::new(py, values.value(i)).into_any())
                })
            }
            DataType::Utf8 => {
                let values = array
                    .as_string_opt::<i32>()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyString::new(py, values.value(i)).into_any())
                })
            }
            DataType::LargeUtf8 => {
                let values = array
                    .as_string_opt::<i64>()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyString::new(py, values.value(i)).into_any())
                })
            }
            DataType::Utf8View => {
                let values = array
                    .as_string_view_opt()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyString::new(py, values.value(i)).into_any())
                })
            }
            DataType::Binary => {
                let values = array
                    .as_binary_opt::<i32>()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyBytes::new(py, values.value(i)).into_any())
                })
            }
            DataType::LargeBinary => {
                let values = array
                    .as_binary_opt::<i64>()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyBytes::new(py, values.value(i)).into_any())
                })
            }
            DataType::BinaryView => {
                let values = array
                    .as_binary_view_opt()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyBytes::new(py, values.value(i)).into_any())
                })
            }
            DataType::FixedSizeBinary(_) => {
                let values = array
                    .as_fixed_size_binary_opt()
                    .ok_or_else(|| unsupported(data_type))?;
                self.each(array, wanted, |i| {
                    Ok(PyBytes::new(py, values.value(i)).into_any())
                })
            }
            DataType::Date32 => {
                let values = primitive::<Date32Type>(array)?;
                self.each(array, wanted, |i| date(py, i128::from(values.value(i))))
            }
            DataType::Date64 => {
                let values = primitive::<Date64Type>(array)?;
                self.each(array, wanted, |i| {
                    date(py, i128::from(values.value(i)).div_euclid(86_400_000))
                })
            }
            DataType::Timestamp(unit, zone) => {
                let ticks = timestamp_ticks(array, unit)?;
                let zone = match zone {
                    Some(name) => Some(self.zone(name, data_type)?),
                    None => None,
                };
                self.each(array, wanted, |i| {
                    datetime(py, ticks.value(i), unit, zone.as_ref())
                })
            }
            DataType::Time32(unit) | DataType::Time64(unit) => {
                let ticks = time_ticks(array)?;
                self.each(array, wanted, |i| {
                    let micros = to_micros(ticks.value(i), unit).rem_euclid(MICROS_PER_DAY);
                    let (hour, minute, second, microsecond) = time_of_day(micros);
                    Ok(PyTime::new(py, hour, minute, second, microsecond, None)?.into_any())
                })
            }
            DataType::Duration(unit) => {
                let ticks = duration_ticks(array, unit)?;
                self.each(array, wanted, |i| timedelta(py, ticks.value(i), unit))
            }
            DataType::Decimal32(_, scale) => {
                let values = primitive::<Decimal32Type>(array)?;
                self.each(array, wanted, |i| decimal(py, values.value(i), *scale))
            }
            DataType::Decimal64(_, scale) => {
                let values = primitive::<Decimal64Type>(array)?;
                self.each(array, wanted, |i| decimal(py, values.value(i), *scale))
            }
            DataType::Decimal128(_, scale) => {
                let values = primitive::<Decimal128Type>(array)?;
                self.each(array, wanted, |i| decimal(py, values.value(i), *scale))
            }
            DataType::Decimal256(_, scale) => {
                let values = primitive::<Decimal256Type>(array)?;
                self.each(array, wanted, |i| decimal(py, values.value(i), *scale))
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let values = primitive::<IntervalMonthDayNanoType>(array)?;
                self.each(array, wanted, |i| {
                    let value = values.value(i);
                    (value.months, value.days, value.nanoseconds).into_bound_py_any(py)
                })
            }
            DataType::List(_) => self.list(
                array
                    .as_list_opt::<i32>()
                    .ok_or_else(|| unsupported(data_type))?,
                wanted,
            ),
            DataType::LargeList(_) => self.list(
                array
                    .as_list_opt::<i64>()
                    .ok_or_else(|| unsupported(data_type))?,
                wanted,
            ),
            DataType::ListView(_) => self.list_view(
                array
                    .as_list_view_opt::<i32>()
                    .ok_or_else(|| unsupported(data_type))?,
                wanted,
            ),
            DataType::LargeListView(_) => self.list_view(
                array
                    .as_list_view_opt::<i64>()
                    .ok_or_else(|| unsupported(data_type))?,
                wanted,
            ),
            DataType::FixedSizeList(_, _) => self.fixed_size_list(array, wanted),
            DataType::Struct(_) => self.structs(array, wanted),
            DataType::Map(_, _) => self.map(array, wanted),
            DataType::Dictionary(_, _) => self.dictionary(array, wanted),
            DataType::RunEndEncoded(run_ends, _) => match run_ends.data_type() {
                DataType::Int16 => {
                    self.run_end_encoded(downcast::<RunArray<Int16Type>>(array)?, wanted)
                }
                DataType::Int32 => {
                    self.run_end_encoded(downcast::<RunArray<Int32Type>>(array)?, wanted)
                }
                DataType::Int64 => {
                    self.run_end_encoded(downcast::<RunArray<Int64Type>>(array)?, wanted)
                }
                _ => Err(unsupported(data_type)),
            },
            _ => Err(unsupported(data_type)),
        }
    }

    /// `value(i)` for each wanted valid row, `None` elsewhere.
    fn each(
        &self,
        array: &dyn Array,
        wanted: Wanted<'_>,
        mut value: impl FnMut(usize) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        (0..array.len())
            .map(|i| {
                if is_wanted(wanted, i) && array.is_valid(i) {
                    value(i)
                } else {
                    Ok(self.none.clone())
                }
            })
            .collect()
    }

    fn integers<T>(&self, array: &dyn Array, wanted: Wanted<'_>) -> PyResult<Vec<Bound<'py, PyAny>>>
    where
        T: ArrowPrimitiveType,
        T::Native: for<'a> IntoPyObject<'a>,
    {
        let values = primitive::<T>(array)?;
        self.each(array, wanted, |i| {
            values.value(i).into_bound_py_any(self.py)
        })
    }

    /// Rows that are wanted and valid in `array`.
    fn live_rows(array: &dyn Array, wanted: Wanted<'_>) -> impl Iterator<Item = usize> {
        (0..array.len()).filter(move |&i| is_wanted(wanted, i) && array.is_valid(i))
    }

    /// Python lists of `values[ranges[row]]` for each live row, `None` elsewhere. `values` is
    /// converted only at the positions these ranges cover.
    fn lists_of(
        &mut self,
        array: &dyn Array,
        values: &ArrayRef,
        ranges: &[(usize, Range<usize>)],
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let py = self.py;
        let mut child_wanted = vec![false; values.len()];
        for (_, range) in ranges {
            child_wanted[range.clone()].fill(true);
        }
        let converted = self.convert(values.as_ref(), Some(&child_wanted))?;
        let mut out = vec![self.none.clone(); array.len()];
        for (row, range) in ranges {
            out[*row] = PyList::new(py, &converted[range.clone()])?.into_any();
        }
        Ok(out)
    }

    /// Checked `start..start + len` inside a child of `child_len` values.
    fn child_range(
        data_type: &DataType,
        start: usize,
        len: usize,
        child_len: usize,
    ) -> PyResult<Range<usize>> {
        match start.checked_add(len) {
            Some(end) if end <= child_len => Ok(start..end),
            _ => Err(corrupt(
                data_type,
                format!("list entry {start}..{start}+{len} is outside its {child_len} values"),
            )),
        }
    }

    fn list<O: OffsetSizeTrait>(
        &mut self,
        array: &GenericListArray<O>,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let offsets = array.value_offsets();
        let values = array.values();
        let data_type = array.data_type();
        let mut ranges = Vec::new();
        for row in Self::live_rows(array, wanted) {
            let (Some(start), Some(end)) = (offsets.get(row), offsets.get(row + 1)) else {
                return Err(corrupt(data_type, "offsets are shorter than the array"));
            };
            let (Some(start), Some(end)) = (start.to_usize(), end.to_usize()) else {
                return Err(corrupt(data_type, "negative offset"));
            };
            let len = end
                .checked_sub(start)
                .ok_or_else(|| corrupt(data_type, "offsets decrease"))?;
            ranges.push((row, Self::child_range(data_type, start, len, values.len())?));
        }
        self.sliced_lists(array, values, ranges)
    }

    /// `lists_of` over only the part of `values` the ranges span (a slice of a long list
    /// column converts only its own values).
    fn sliced_lists(
        &mut self,
        array: &dyn Array,
        values: &ArrayRef,
        mut ranges: Vec<(usize, Range<usize>)>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let span = rebase(&mut ranges);
        if span == (0..values.len()) {
            return self.lists_of(array, values, &ranges);
        }
        self.lists_of(array, &values.slice(span.start, span.len()), &ranges)
    }

    fn list_view<O: OffsetSizeTrait>(
        &mut self,
        array: &GenericListViewArray<O>,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let (offsets, sizes) = (array.offsets(), array.sizes());
        let values = array.values();
        let data_type = array.data_type();
        let mut ranges = Vec::new();
        for row in Self::live_rows(array, wanted) {
            let (Some(start), Some(len)) = (offsets.get(row), sizes.get(row)) else {
                return Err(corrupt(
                    data_type,
                    "offsets or sizes are shorter than the array",
                ));
            };
            let (Some(start), Some(len)) = (start.to_usize(), len.to_usize()) else {
                return Err(corrupt(data_type, "negative offset or size"));
            };
            ranges.push((row, Self::child_range(data_type, start, len, values.len())?));
        }
        self.sliced_lists(array, values, ranges)
    }

    fn fixed_size_list(
        &mut self,
        array: &dyn Array,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let data_type = array.data_type();
        let list = array
            .as_fixed_size_list_opt()
            .ok_or_else(|| unsupported(data_type))?;
        let width = usize::try_from(list.value_length())
            .map_err(|_| corrupt(data_type, "negative list size"))?;
        let values = list.values();
        let mut ranges = Vec::new();
        for row in Self::live_rows(array, wanted) {
            let start = row
                .checked_mul(width)
                .ok_or_else(|| corrupt(data_type, "list size overflows"))?;
            ranges.push((
                row,
                Self::child_range(data_type, start, width, values.len())?,
            ));
        }
        self.sliced_lists(array, values, ranges)
    }

    /// The rows of `array` that are wanted and valid, as a mask for its children.
    fn child_mask(array: &dyn Array, wanted: Wanted<'_>) -> Vec<bool> {
        (0..array.len())
            .map(|i| is_wanted(wanted, i) && array.is_valid(i))
            .collect()
    }

    fn structs(
        &mut self,
        array: &dyn Array,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let py = self.py;
        let data_type = array.data_type();
        let structs = array
            .as_struct_opt()
            .ok_or_else(|| unsupported(data_type))?;
        let mask = Self::child_mask(array, wanted);
        if !mask.iter().any(|&live| live) {
            return Ok(vec![self.none.clone(); array.len()]);
        }
        let names = structs.column_names();
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            return Err(relay_error(
                ErrorKind::Value,
                format!(
                    "arrow {} has duplicate field names, which a Python dict cannot hold",
                    type_name(data_type)
                ),
            ));
        }
        let keys: Vec<Bound<'py, PyString>> =
            names.iter().map(|name| PyString::new(py, name)).collect();
        let mut children = Vec::with_capacity(structs.num_columns());
        for child in structs.columns() {
            if child.len() < array.len() {
                return Err(corrupt(data_type, "a field is shorter than the struct"));
            }
            children.push(self.convert(child.as_ref(), Some(&mask))?);
        }
        let mut out = Vec::with_capacity(array.len());
        for (row, live) in mask.iter().enumerate() {
            if !live {
                out.push(self.none.clone());
                continue;
            }
            let dict = PyDict::new(py);
            for (key, child) in keys.iter().zip(&children) {
                dict.set_item(key, &child[row])?;
            }
            out.push(dict.into_any());
        }
        Ok(out)
    }

    fn map(&mut self, array: &dyn Array, wanted: Wanted<'_>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let py = self.py;
        let data_type = array.data_type();
        let map = array.as_map_opt().ok_or_else(|| unsupported(data_type))?;
        let offsets = map.value_offsets();
        let entries = map.entries();
        let mut ranges = Vec::new();
        for row in Self::live_rows(array, wanted) {
            let (Some(&start), Some(&end)) = (offsets.get(row), offsets.get(row + 1)) else {
                return Err(corrupt(data_type, "offsets are shorter than the array"));
            };
            let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
                return Err(corrupt(data_type, "negative offset"));
            };
            let len = end
                .checked_sub(start)
                .ok_or_else(|| corrupt(data_type, "offsets decrease"))?;
            ranges.push((
                row,
                Self::child_range(data_type, start, len, entries.len())?,
            ));
        }
        if entries.num_columns() != 2 {
            return Err(corrupt(data_type, "map entries are not (key, value) pairs"));
        }
        let span = rebase(&mut ranges);
        let mut entry_wanted = vec![false; span.len()];
        for (_, range) in &ranges {
            entry_wanted[range.clone()].fill(true);
        }
        // Map entries themselves are never null (the format forbids it), so only keys and
        // values are converted.
        let keys = entries.column(0).slice(span.start, span.len());
        let values = entries.column(1).slice(span.start, span.len());
        let keys = self.convert(keys.as_ref(), Some(&entry_wanted))?;
        let values = self.convert(values.as_ref(), Some(&entry_wanted))?;
        let mut out = vec![self.none.clone(); array.len()];
        for (row, range) in ranges {
            let pairs = range
                .map(|entry| PyTuple::new(py, [&keys[entry], &values[entry]]))
                .collect::<PyResult<Vec<_>>>()?;
            out[row] = PyList::new(py, pairs)?.into_any();
        }
        Ok(out)
    }

    fn dictionary(
        &mut self,
        array: &dyn Array,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let data_type = array.data_type();
        let dictionary = array
            .as_any_dictionary_opt()
            .ok_or_else(|| unsupported(data_type))?;
        let keys = dictionary_keys(dictionary.keys(), wanted)?;
        let values = dictionary.values();
        let mut values_wanted = vec![false; values.len()];
        for key in keys.iter().flatten() {
            *values_wanted.get_mut(*key).ok_or_else(|| {
                corrupt(
                    data_type,
                    format!("key {key} is outside its {} values", values.len()),
                )
            })? = true;
        }
        let converted = self.convert(values.as_ref(), Some(&values_wanted))?;
        Ok(keys
            .iter()
            .map(|key| key.map_or_else(|| self.none.clone(), |key| converted[key].clone()))
            .collect())
    }

    fn run_end_encoded<R: RunEndIndexType>(
        &mut self,
        array: &RunArray<R>,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let data_type = array.data_type();
        let run_ends = array.run_ends();
        let ends = run_ends.values();
        let offset = run_ends.offset();
        let values = array.values();
        // The physical index of each wanted logical row, walking the runs once.
        let mut physical = Vec::with_capacity(array.len());
        let mut run = 0;
        for row in 0..array.len() {
            let logical = offset + row;
            while ends.get(run).is_some_and(|end| end.as_usize() <= logical) {
                run += 1;
            }
            if run >= ends.len() || run >= values.len() {
                return Err(corrupt(data_type, "run ends stop before the array does"));
            }
            physical.push(is_wanted(wanted, row).then_some(run));
        }
        let mut values_wanted = vec![false; values.len()];
        for &run in physical.iter().flatten() {
            values_wanted[run] = true;
        }
        let converted = self.convert(values.as_ref(), Some(&values_wanted))?;
        Ok(physical
            .iter()
            .map(|run| run.map_or_else(|| self.none.clone(), |run| converted[run].clone()))
            .collect())
    }

    /// The zone of a timestamp type, looked up once per conversion.
    fn zone(&mut self, name: &str, data_type: &DataType) -> PyResult<Zone<'py>> {
        if let Some(zone) = self.zones.get(name) {
            return Ok(zone.clone());
        }
        let py = self.py;
        let zone = match parse_fixed_offset(name) {
            Some(seconds) => {
                let offset = PyDelta::new(py, 0, seconds, 0, true)?;
                Zone::Fixed(seconds, PyTzInfo::fixed_offset(py, offset)?)
            }
            None => Zone::Named(PyTzInfo::timezone(py, name).map_err(|error| {
                let wrapped = relay_error(
                    ErrorKind::Value,
                    format!(
                        "arrow {} names time zone {name:?}, which zoneinfo does not know",
                        type_name(data_type)
                    ),
                );
                wrapped.set_cause(py, Some(error));
                wrapped
            })?),
        };
        self.zones.insert(name.to_owned(), zone.clone());
        Ok(zone)
    }
}

/// The span of child positions that `ranges` cover, with `ranges` made relative to its start.
fn rebase(ranges: &mut [(usize, Range<usize>)]) -> Range<usize> {
    let first = ranges.iter().map(|(_, r)| r.start).min().unwrap_or(0);
    let last = ranges.iter().map(|(_, r)| r.end).max().unwrap_or(0);
    for (_, range) in ranges.iter_mut() {
        *range = range.start - first..range.end - first;
    }
    first..last.max(first)
}

fn primitive<T: ArrowPrimitiveType>(array: &dyn Array) -> PyResult<&PrimitiveArray<T>> {
    array
        .as_primitive_opt::<T>()
        .ok_or_else(|| unsupported(array.data_type()))
}

/// Read access to the i64 ticks of a temporal array, whatever its unit's array type.
enum Ticks<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Ticks<'_> {
    fn value(&self, i: usize) -> i64 {
        match self {
            Ticks::I32(values) => i64::from(values[i]),
            Ticks::I64(values) => values[i],
        }
    }
}

fn timestamp_ticks<'a>(array: &'a dyn Array, unit: &TimeUnit) -> PyResult<Ticks<'a>> {
    Ok(Ticks::I64(match unit {
        TimeUnit::Second => primitive::<TimestampSecondType>(array)?.values(),
        TimeUnit::Millisecond => primitive::<TimestampMillisecondType>(array)?.values(),
        TimeUnit::Microsecond => primitive::<TimestampMicrosecondType>(array)?.values(),
        TimeUnit::Nanosecond => primitive::<TimestampNanosecondType>(array)?.values(),
    }))
}

fn duration_ticks<'a>(array: &'a dyn Array, unit: &TimeUnit) -> PyResult<Ticks<'a>> {
    Ok(Ticks::I64(match unit {
        TimeUnit::Second => primitive::<DurationSecondType>(array)?.values(),
        TimeUnit::Millisecond => primitive::<DurationMillisecondType>(array)?.values(),
        TimeUnit::Microsecond => primitive::<DurationMicrosecondType>(array)?.values(),
        TimeUnit::Nanosecond => primitive::<DurationNanosecondType>(array)?.values(),
    }))
}

fn time_ticks(array: &dyn Array) -> PyResult<Ticks<'_>> {
    Ok(match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            Ticks::I32(primitive::<Time32SecondType>(array)?.values())
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            Ticks::I32(primitive::<Time32MillisecondType>(array)?.values())
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            Ticks::I64(primitive::<Time64MicrosecondType>(array)?.values())
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            Ticks::I64(primitive::<Time64NanosecondType>(array)?.values())
        }
        other => return Err(unsupported(other)),
    })
}

fn out_of_range(what: &str, value: impl std::fmt::Display, limits: &str) -> PyErr {
    relay_error(
        ErrorKind::Value,
        format!("{what} {value} is outside the range of Python's {limits}"),
    )
}

fn date(py: Python<'_>, days: i128) -> PyResult<Bound<'_, PyAny>> {
    if !(FIRST_PYTHON_DAY..=LAST_PYTHON_DAY).contains(&days) {
        return Err(out_of_range(
            "date of",
            format!("{days} days since 1970-01-01"),
            "datetime.date (years 1 to 9999)",
        ));
    }
    let (year, month, day) = civil_from_days(days);
    Ok(PyDate::new(py, year, month, day)?.into_any())
}

fn datetime<'py>(
    py: Python<'py>,
    ticks: i64,
    unit: &TimeUnit,
    zone: Option<&Zone<'py>>,
) -> PyResult<Bound<'py, PyAny>> {
    let micros = to_micros(ticks, unit);
    let local = match zone {
        Some(Zone::Fixed(offset, _)) => micros + i128::from(*offset) * MICROS_PER_SECOND,
        _ => micros,
    };
    let civil = civil_from_micros(local).ok_or_else(|| {
        out_of_range(
            "timestamp",
            format!("{ticks} {} since the epoch", relay_storage::unit_name(unit)),
            "datetime.datetime (years 1 to 9999)",
        )
    })?;
    let make = |tz: Option<&Bound<'py, PyTzInfo>>| {
        PyDateTime::new(
            py,
            civil.year,
            civil.month,
            civil.day,
            civil.hour,
            civil.minute,
            civil.second,
            civil.microsecond,
            tz,
        )
    };
    match zone {
        None => Ok(make(None)?.into_any()),
        Some(Zone::Fixed(_, tz)) => Ok(make(Some(tz))?.into_any()),
        Some(Zone::Named(tz)) => {
            let utc = PyTzInfo::utc(py)?.to_owned();
            make(Some(&utc))?
                .call_method1(intern!(py, "astimezone"), (tz,))
                .map_err(|error| {
                    // An instant in the first or last day Python holds can fall outside it in
                    // the zone's local time (datetime raises OverflowError).
                    if !error.is_instance_of::<PyOverflowError>(py) {
                        return error;
                    }
                    let wrapped = out_of_range(
                        "timestamp",
                        format!(
                            "{ticks} {} since the epoch, in its time zone,",
                            relay_storage::unit_name(unit)
                        ),
                        "datetime.datetime (years 1 to 9999)",
                    );
                    wrapped.set_cause(py, Some(error));
                    wrapped
                })
        }
    }
}

fn timedelta<'py>(py: Python<'py>, ticks: i64, unit: &TimeUnit) -> PyResult<Bound<'py, PyAny>> {
    let micros = to_micros(ticks, unit);
    let days = micros.div_euclid(MICROS_PER_DAY);
    if !(-MAX_DELTA_DAYS..=MAX_DELTA_DAYS).contains(&days) {
        return Err(out_of_range(
            "duration",
            format!("{ticks} {}", relay_storage::unit_name(unit)),
            "datetime.timedelta (999,999,999 days)",
        ));
    }
    let within_day = micros.rem_euclid(MICROS_PER_DAY);
    let (seconds, microseconds) = (
        within_day / MICROS_PER_SECOND,
        within_day % MICROS_PER_SECOND,
    );
    // In range by the checks above: |days| <= 999_999_999, seconds < 86_400, micros < 10^6.
    Ok(PyDelta::new(py, days as i32, seconds as i32, microseconds as i32, false)?.into_any())
}

/// `decimal.Decimal` of `unscaled * 10^-scale`, built from `"{unscaled}E{-scale}"` so that its
/// exponent is the type's scale (`Decimal("1.20")` for 120 at scale 2), as pyarrow gives.
fn decimal<'py>(
    py: Python<'py>,
    unscaled: impl std::fmt::Display,
    scale: i8,
) -> PyResult<Bound<'py, PyAny>> {
    let class = DECIMAL.import(py, "decimal", "Decimal")?;
    class.call1((format!("{unscaled}E{}", -i32::from(scale)),))
}

/// Each row's dictionary key as an index (None for nulls and rows not wanted).
fn dictionary_keys(keys: &dyn Array, wanted: Wanted<'_>) -> PyResult<Vec<Option<usize>>> {
    fn indices<K: ArrowPrimitiveType>(
        keys: &dyn Array,
        wanted: Wanted<'_>,
    ) -> PyResult<Vec<Option<usize>>> {
        let typed = primitive::<K>(keys)?;
        (0..keys.len())
            .map(|i| {
                if !(is_wanted(wanted, i) && keys.is_valid(i)) {
                    return Ok(None);
                }
                let key = typed.value(i);
                key.to_usize().map(Some).ok_or_else(|| {
                    corrupt(
                        keys.data_type(),
                        format!("dictionary key {key:?} is negative"),
                    )
                })
            })
            .collect()
    }
    match keys.data_type() {
        DataType::Int8 => indices::<Int8Type>(keys, wanted),
        DataType::Int16 => indices::<Int16Type>(keys, wanted),
        DataType::Int32 => indices::<Int32Type>(keys, wanted),
        DataType::Int64 => indices::<Int64Type>(keys, wanted),
        DataType::UInt8 => indices::<UInt8Type>(keys, wanted),
        DataType::UInt16 => indices::<UInt16Type>(keys, wanted),
        DataType::UInt32 => indices::<UInt32Type>(keys, wanted),
        DataType::UInt64 => indices::<UInt64Type>(keys, wanted),
        other => Err(unsupported(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(FIRST_PYTHON_DAY), (1, 1, 1));
        assert_eq!(civil_from_days(LAST_PYTHON_DAY), (9999, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn micros_round_down_to_civil_time() {
        let civil = civil_from_micros(-1).expect("in range");
        assert_eq!(
            (
                civil.year,
                civil.hour,
                civil.minute,
                civil.second,
                civil.microsecond
            ),
            (1969, 23, 59, 59, 999_999)
        );
        assert!(civil_from_micros(i128::from(i64::MAX) * 1_000_000).is_none());
        assert_eq!(to_micros(-1_500, &TimeUnit::Nanosecond), -2);
        assert_eq!(
            to_micros(i64::MIN, &TimeUnit::Second),
            i128::from(i64::MIN) * 1_000_000
        );
    }

    #[test]
    fn context_leads_relay_error_messages_only() {
        Python::initialize();
        Python::attach(|py| {
            // A stand-in for relay_ml.errors, so the test needs no installed package.
            let code =
                c"class RelayValueError(ValueError):\n    pass\nRelayValueError.__module__ = 'relay_ml.errors'\n";
            let module =
                PyModule::from_code(py, code, c"errors.py", c"relay_ml_errors_stand_in").unwrap();
            let class = module
                .getattr("RelayValueError")
                .unwrap()
                .cast_into::<PyType>()
                .unwrap();
            let cause = PyOverflowError::new_err("too far");
            let error = PyErr::from_type(class.clone(), ("out of range",));
            error.set_cause(py, Some(cause));
            let wrapped = with_context(py, error, "column \"t\" of /f.arrow");
            assert!(wrapped.get_type(py).is(&class));
            assert_eq!(
                wrapped.value(py).to_string(),
                "column \"t\" of /f.arrow: out of range"
            );
            assert!(
                wrapped
                    .cause(py)
                    .unwrap()
                    .is_instance_of::<PyOverflowError>(py)
            );
            let other = with_context(py, PyOverflowError::new_err("plain"), "column");
            assert_eq!(other.value(py).to_string(), "plain");
        });
    }

    #[test]
    fn fixed_offsets_parse() {
        assert_eq!(parse_fixed_offset("+01:00"), Some(3_600));
        assert_eq!(parse_fixed_offset("-0530"), Some(-19_800));
        assert_eq!(parse_fixed_offset("+05"), Some(18_000));
        assert_eq!(parse_fixed_offset("Europe/Paris"), None);
        assert_eq!(parse_fixed_offset("+1:00"), None);
        assert_eq!(parse_fixed_offset("+é0:00"), None);
    }
}
