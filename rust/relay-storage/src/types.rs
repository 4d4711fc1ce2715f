//! Names of Arrow types as Python users read them: pyarrow's `str(type)`, except that floats
//! are named by their width as NumPy, torch and `cast` name them ("float32", not "float").

use arrow::datatypes::{DataType, IntervalUnit, TimeUnit, UnionMode};

/// A time unit as pyarrow spells it ("s", "ms", "us", "ns").
pub fn unit_name(unit: &TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "null".into(),
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "float16".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Utf8View => "string_view".into(),
        DataType::Binary => "binary".into(),
        DataType::LargeBinary => "large_binary".into(),
        DataType::BinaryView => "binary_view".into(),
        DataType::FixedSizeBinary(width) => format!("fixed_size_binary[{width}]"),
        DataType::Date32 => "date32[day]".into(),
        DataType::Date64 => "date64[ms]".into(),
        DataType::Time32(unit) | DataType::Time64(unit) => {
            let bits = if matches!(data_type, DataType::Time32(_)) {
                32
            } else {
                64
            };
            format!("time{bits}[{}]", unit_name(unit))
        }
        DataType::Timestamp(unit, None) => format!("timestamp[{}]", unit_name(unit)),
        DataType::Timestamp(unit, Some(tz)) => format!("timestamp[{}, tz={tz}]", unit_name(unit)),
        DataType::Duration(unit) => format!("duration[{}]", unit_name(unit)),
        DataType::Decimal32(p, s) => format!("decimal32({p}, {s})"),
        DataType::Decimal64(p, s) => format!("decimal64({p}, {s})"),
        DataType::Decimal128(p, s) => format!("decimal128({p}, {s})"),
        DataType::Decimal256(p, s) => format!("decimal256({p}, {s})"),
        DataType::Interval(IntervalUnit::MonthDayNano) => "month_day_nano_interval".into(),
        DataType::Interval(IntervalUnit::YearMonth) => "month_interval".into(),
        DataType::Interval(IntervalUnit::DayTime) => "day_time_interval".into(),
        DataType::List(field) => {
            format!("list<{}: {}>", field.name(), type_name(field.data_type()))
        }
        DataType::LargeList(field) => format!(
            "large_list<{}: {}>",
            field.name(),
            type_name(field.data_type())
        ),
        DataType::ListView(field) => format!(
            "list_view<{}: {}>",
            field.name(),
            type_name(field.data_type())
        ),
        DataType::LargeListView(field) => {
            format!(
                "large_list_view<{}: {}>",
                field.name(),
                type_name(field.data_type())
            )
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!(
                    "map<{}, {}>",
                    type_name(kv[0].data_type()),
                    type_name(kv[1].data_type())
                )
            }
            other => format!("map<{}>", type_name(other)),
        },
        DataType::RunEndEncoded(run_ends, values) => format!(
            "run_end_encoded<run_ends: {}, values: {}>",
            type_name(run_ends.data_type()),
            type_name(values.data_type())
        ),
        DataType::Union(fields, mode) => format!(
            "{}_union<{}>",
            if *mode == UnionMode::Sparse {
                "sparse"
            } else {
                "dense"
            },
            fields
                .iter()
                .map(|(code, f)| format!("{}: {}={code}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::FixedSizeList(field, width) => {
            format!(
                "fixed_size_list<{}: {}>[{width}]",
                field.name(),
                type_name(field.data_type())
            )
        }
        DataType::Struct(fields) => format!(
            "struct<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Dictionary(key, value) => format!(
            "dictionary<values={}, indices={}, ordered=0>",
            type_name(value),
            type_name(key)
        ),
    }
}
