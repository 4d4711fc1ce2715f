//! Arguments as Python passes them (names of dtypes, operators, join kinds, shuffles,
//! formats, ...) parsed into the engine's types, each in one place, with an error that names
//! the argument and what it accepts.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use pyo3::prelude::*;
use relay_exec::{DenseDtype, MemoryLayout, Shuffle};
use relay_plan::{AggFunc, BinaryOp, Interpolation, JoinType, Keep, Quantile, UnaryOp};
use relay_storage::{FileFormat, Source};

use crate::errors::{ErrorKind, relay_error};

fn value_error(message: String) -> PyErr {
    relay_error(ErrorKind::Value, message)
}

/// What `scan` reads: a path, glob or directory, or a list of paths.
#[derive(FromPyObject)]
pub enum SourceArg {
    One(PathBuf),
    List(Vec<PathBuf>),
}

impl SourceArg {
    pub fn into_source(self) -> Source {
        match self {
            SourceArg::One(path) => Source::One(path),
            SourceArg::List(paths) => Source::List(paths),
        }
    }
}

/// `format=` of `scan`.
pub fn file_format(name: &str) -> PyResult<FileFormat> {
    FileFormat::parse(name).ok_or_else(|| {
        value_error(format!(
            "scan(): format must be one of 'ipc', 'arrow', 'feather', 'parquet', 'csv', 'ndjson', \
             'json', 'jsonl', got {name:?}"
        ))
    })
}

/// `separator=` of CSV: one ASCII character.
pub fn separator(text: &str) -> PyResult<u8> {
    match text.as_bytes() {
        [byte] => Ok(*byte),
        _ => Err(value_error(format!(
            "scan(): separator must be one ASCII character, got {text:?}"
        ))),
    }
}

/// A schema given as `[(name, dtype name)]`.
pub fn schema(columns: Vec<(String, String)>) -> PyResult<SchemaRef> {
    let fields = columns
        .into_iter()
        .map(|(name, name_of_type)| Ok(Field::new(name, dtype(&name_of_type)?, true)))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// `keep=` of `unique`.
pub fn keep(name: &str) -> PyResult<Keep> {
    Ok(match name {
        "first" | "any" => Keep::First,
        "last" => Keep::Last,
        "none" => Keep::None,
        other => {
            return Err(value_error(format!(
                "unique(): keep must be \"first\", \"last\", \"any\" or \"none\", got {other:?}"
            )));
        }
    })
}

/// `how=` of `join`.
pub fn join_type(how: &str) -> PyResult<JoinType> {
    JoinType::parse(how).ok_or_else(|| {
        value_error(format!(
            "join(): how must be \"inner\", \"left\", \"right\", \"full\", \"semi\" or \"anti\", got {how:?}"
        ))
    })
}

/// The memory order of a 2-D array: "C" (rows contiguous) or "F" (columns contiguous).
pub fn matrix_order(name: &str) -> PyResult<MemoryLayout> {
    match name {
        "C" => Ok(MemoryLayout::C),
        "F" => Ok(MemoryLayout::F),
        other => Err(value_error(format!(
            "order must be \"C\" or \"F\", got {other:?}"
        ))),
    }
}

/// An aggregation by name; "quantile" takes `(q, interpolation)`.
pub fn agg_func(name: &str, quantile_args: Option<(f64, String)>) -> PyResult<AggFunc> {
    match (name, quantile_args) {
        ("quantile", Some((q, interpolation))) => {
            Ok(AggFunc::Quantile(quantile(q, &interpolation)?))
        }
        _ => AggFunc::parse(name)
            .ok_or_else(|| value_error(format!("agg(): unknown aggregation {name:?}"))),
    }
}

/// The quantile `q` with the named interpolation, or a RelayValueError naming what is wrong.
pub fn quantile(q: f64, interpolation: &str) -> PyResult<Quantile> {
    let interpolation = Interpolation::ALL
        .into_iter()
        .find(|i| i.name() == interpolation)
        .ok_or_else(|| {
            let names: Vec<&str> = Interpolation::ALL.iter().map(|i| i.name()).collect();
            relay_error(
                ErrorKind::Value,
                format!(
                    "quantile(): interpolation must be one of {names:?}, got {interpolation:?}"
                ),
            )
        })?;
    Quantile::new(q, interpolation).ok_or_else(|| {
        relay_error(
            ErrorKind::Value,
            format!("quantile(): q must be between 0 and 1, got {q}"),
        )
    })
}

/// An Arrow type from its name as Python users write it (pyarrow's and NumPy's spellings).
pub fn dtype(name: &str) -> PyResult<DataType> {
    let name = name.trim();
    Ok(match name {
        "bool" | "boolean" => DataType::Boolean,
        "int8" | "i8" => DataType::Int8,
        "int16" | "i16" => DataType::Int16,
        "int32" | "i32" => DataType::Int32,
        "int64" | "i64" | "int" => DataType::Int64,
        "uint8" | "u8" => DataType::UInt8,
        "uint16" | "u16" => DataType::UInt16,
        "uint32" | "u32" => DataType::UInt32,
        "uint64" | "u64" => DataType::UInt64,
        "float16" | "halffloat" | "f16" => DataType::Float16,
        "float32" | "float" | "f32" => DataType::Float32,
        "float64" | "double" | "f64" => DataType::Float64,
        "string" | "str" | "utf8" => DataType::Utf8,
        "large_string" | "large_utf8" => DataType::LargeUtf8,
        "binary" => DataType::Binary,
        "date32" | "date32[day]" | "date" => DataType::Date32,
        "date64" | "date64[ms]" => DataType::Date64,
        "timestamp[s]" | "datetime64[s]" => DataType::Timestamp(TimeUnit::Second, None),
        "timestamp[ms]" | "datetime64[ms]" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "timestamp[us]" | "datetime64[us]" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamp[ns]" | "datetime64[ns]" => DataType::Timestamp(TimeUnit::Nanosecond, None),
        "duration[s]" | "timedelta64[s]" => DataType::Duration(TimeUnit::Second),
        "duration[ms]" | "timedelta64[ms]" => DataType::Duration(TimeUnit::Millisecond),
        "duration[us]" | "timedelta64[us]" => DataType::Duration(TimeUnit::Microsecond),
        "duration[ns]" | "timedelta64[ns]" => DataType::Duration(TimeUnit::Nanosecond),
        other => {
            return Err(relay_error(
                ErrorKind::Type,
                format!(
                    "unknown dtype {other:?}; use a NumPy dtype or a name such as \"int32\", \"float64\", \"string\", \"timestamp[us]\""
                ),
            ));
        }
    })
}

pub fn binary_op(op: &str) -> PyResult<BinaryOp> {
    BinaryOp::ALL
        .into_iter()
        .find(|candidate| candidate.symbol() == op)
        .ok_or_else(|| value_error(format!("unknown operator {op:?}")))
}

pub fn unary_op(op: &str) -> PyResult<UnaryOp> {
    UnaryOp::ALL
        .into_iter()
        .find(|candidate| candidate.name() == op)
        .ok_or_else(|| value_error(format!("unknown function {op:?}")))
}

/// The Arrow type of a NumPy dtype string (`"<f4"`, `"<M8[us]"`, ...) without its byte-order
/// character, or None when it has no fixed-width Arrow form.
pub fn numpy_arrow_type(code: &str) -> Option<DataType> {
    let unit = |code: &str| match code {
        "[s]" => Some(TimeUnit::Second),
        "[ms]" => Some(TimeUnit::Millisecond),
        "[us]" => Some(TimeUnit::Microsecond),
        "[ns]" => Some(TimeUnit::Nanosecond),
        _ => None,
    };
    Some(match code {
        "i1" => DataType::Int8,
        "i2" => DataType::Int16,
        "i4" => DataType::Int32,
        "i8" => DataType::Int64,
        "u1" => DataType::UInt8,
        "u2" => DataType::UInt16,
        "u4" => DataType::UInt32,
        "u8" => DataType::UInt64,
        "f2" => DataType::Float16,
        "f4" => DataType::Float32,
        "f8" => DataType::Float64,
        _ if code.starts_with("M8") => DataType::Timestamp(unit(&code[2..])?, None),
        _ if code.starts_with("m8") => DataType::Duration(unit(&code[2..])?),
        _ => return None,
    })
}

pub fn dense_dtype(code: &str) -> PyResult<DenseDtype> {
    Ok(match code.trim_start_matches(['<', '|', '=']) {
        "b1" => DenseDtype::Bool,
        "i1" => DenseDtype::Int8,
        "i2" => DenseDtype::Int16,
        "i4" => DenseDtype::Int32,
        "i8" => DenseDtype::Int64,
        "u1" => DenseDtype::UInt8,
        "u2" => DenseDtype::UInt16,
        "u4" => DenseDtype::UInt32,
        "u8" => DenseDtype::UInt64,
        "f2" => DenseDtype::Float16,
        "f4" => DenseDtype::Float32,
        "f8" => DenseDtype::Float64,
        _ => {
            return Err(relay_error(
                ErrorKind::Type,
                format!("a batch cannot hold dtype {code}: use a numeric or boolean dtype"),
            ));
        }
    })
}
pub fn shuffle(name: &str, block_rows: u64, buffer_rows: u64) -> PyResult<Shuffle> {
    Ok(match name {
        "none" => Shuffle::Sequential,
        "global" => Shuffle::Global,
        "block" => Shuffle::Block {
            block_rows,
            buffer_rows,
        },
        other => {
            return Err(relay_error(
                ErrorKind::Value,
                format!("shuffle must be None, 'global' or 'block', not {other:?}"),
            ));
        }
    })
}
