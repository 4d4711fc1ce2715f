//! How deeply a file's schema may nest, and the checks that hold files to it before any code
//! that recurses over a schema sees it.
//!
//! Schema conversions, type printing and array decoding recurse once per level of nesting, so a
//! file that nests its columns thousands of levels deep (a few bytes per level in a Parquet
//! footer) would overflow the stack of the thread that opens it. pyarrow refuses schemas nested
//! more than 100 levels deep, and so does relay:
//!
//! - Parquet: the footer's flattened schema is read here (`parquet_schema_depth`), without
//!   recursion, before the `parquet` crate builds its schema tree from it.
//! - Arrow IPC: footers and messages are verified with a flatbuffer depth limit that leaves room
//!   for 100 levels of fields (`ipc_verifier_options`), then the converted schema is measured.
//!
//! A column that is not nested is 1 level deep; a struct of such columns is 2, and so on.

use arrow::datatypes::{DataType, Schema};

/// The deepest nesting of a column that a file may have (pyarrow's limit).
pub(crate) const MAX_NESTING_DEPTH: usize = 100;

/// Flatbuffer verifier options for Arrow IPC footers and messages.
///
/// The verifier counts nested tables: a footer (or message) holds a schema, which holds the
/// top-level fields, each field its children and its type table, and a dictionary-encoded field
/// an index type table below that. A field `d` levels deep lies `d + 2` tables down and its type
/// tables up to `d + 4`; flatbuffers' default of 64 refuses files pyarrow reads (Arrow C++
/// verifies with 128). 128 leaves room for `MAX_NESTING_DEPTH` levels, and a schema between
/// 100 and about 124 levels is then refused by `check_arrow_schema_depth` with its depth.
pub(crate) fn ipc_verifier_options() -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: 128,
        ..Default::default()
    }
}

/// Verifies an Arrow IPC footer flatbuffer with `ipc_verifier_options`.
pub(crate) fn root_as_footer(
    bytes: &[u8],
) -> Result<arrow::ipc::Footer<'_>, flatbuffers::InvalidFlatbuffer> {
    arrow::ipc::root_as_footer_with_opts(&ipc_verifier_options(), bytes)
}

/// Verifies an Arrow IPC message flatbuffer with `ipc_verifier_options`.
pub(crate) fn root_as_message(
    bytes: &[u8],
) -> Result<arrow::ipc::Message<'_>, flatbuffers::InvalidFlatbuffer> {
    arrow::ipc::root_as_message_with_opts(&ipc_verifier_options(), bytes)
}

/// Words a flatbuffer verification failure, naming the depth limit when that is the cause.
pub(crate) fn flatbuffer_error(error: &flatbuffers::InvalidFlatbuffer) -> String {
    match error {
        flatbuffers::InvalidFlatbuffer::DepthLimitReached => format!(
            "its schema is nested more than {MAX_NESTING_DEPTH} levels deep (the flatbuffer nests \
             tables more than 128 deep); relay reads at most {MAX_NESTING_DEPTH} levels, like pyarrow"
        ),
        other => other.to_string().trim_end().to_string(),
    }
}

/// The nesting depth of a column of this type: 1 for a type without children.
///
/// Recursive: call it on schemas whose depth is already bounded (a verified IPC schema, or a
/// Parquet schema that passed `parquet_schema_depth`).
pub(crate) fn data_type_depth(data_type: &DataType) -> usize {
    let children = match data_type {
        DataType::List(field)
        | DataType::LargeList(field)
        | DataType::ListView(field)
        | DataType::LargeListView(field)
        | DataType::FixedSizeList(field, _)
        | DataType::Map(field, _) => data_type_depth(field.data_type()),
        DataType::Struct(fields) => fields
            .iter()
            .map(|field| data_type_depth(field.data_type()))
            .max()
            .unwrap_or(0),
        DataType::Union(fields, _) => fields
            .iter()
            .map(|(_, field)| data_type_depth(field.data_type()))
            .max()
            .unwrap_or(0),
        DataType::Dictionary(_, values) => return data_type_depth(values),
        DataType::RunEndEncoded(_, values) => data_type_depth(values.data_type()),
        _ => 0,
    };
    1 + children
}

/// The deepest nesting of any column of `schema` (0 without columns).
pub(crate) fn schema_depth(schema: &Schema) -> usize {
    schema
        .fields()
        .iter()
        .map(|field| data_type_depth(field.data_type()))
        .max()
        .unwrap_or(0)
}

/// Refuses a schema nested more than `MAX_NESTING_DEPTH` levels: the reason, for an error that
/// names the file.
pub(crate) fn check_arrow_schema_depth(schema: &Schema) -> Result<(), String> {
    let depth = schema_depth(schema);
    if depth > MAX_NESTING_DEPTH {
        return Err(too_deep(depth));
    }
    Ok(())
}

fn too_deep(depth: usize) -> String {
    format!(
        "its schema is nested {depth} levels deep; relay reads at most {MAX_NESTING_DEPTH} levels, like pyarrow"
    )
}

/// Thrift compact protocol type ids (the low nibble of a field header).
mod compact {
    pub const STOP: u8 = 0;
    pub const BOOL_TRUE: u8 = 1;
    pub const BOOL_FALSE: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;
    pub const UUID: u8 = 13;
}

/// How deeply `skip` follows structs, lists and maps nested in a value it skips (the `parquet`
/// crate's own limit is 64).
const SKIP_DEPTH: usize = 64;

/// A reader of thrift compact protocol values, enough to find the schema of a Parquet footer.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or("the footer ends in the middle of a value")?;
        self.at += 1;
        Ok(byte)
    }

    fn advance(&mut self, count: u64) -> Result<(), String> {
        let left = (self.bytes.len() - self.at) as u64;
        if count > left {
            return Err("the footer ends in the middle of a value".into());
        }
        self.at += count as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift.min(63);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    fn zigzag_i32(&mut self) -> Result<i32, String> {
        let raw = self.varint()?;
        let raw = u32::try_from(raw).map_err(|_| "a 32-bit integer is out of range".to_string())?;
        Ok((raw >> 1) as i32 ^ -((raw & 1) as i32))
    }

    /// A field header: (type, field id), or None at the end of a struct.
    fn field(&mut self, last_id: i16) -> Result<Option<(u8, i16)>, String> {
        let header = self.byte()?;
        let field_type = header & 0x0f;
        if field_type == compact::STOP {
            return Ok(None);
        }
        let delta = header >> 4;
        let id = if delta == 0 {
            let raw = self.varint()?;
            let raw = u16::try_from(raw).map_err(|_| "a field id is out of range".to_string())?;
            (raw >> 1) as i16 ^ -((raw & 1) as i16)
        } else {
            last_id.wrapping_add(i16::from(delta))
        };
        Ok(Some((field_type, id)))
    }

    /// A list or set header: (element type, element count).
    fn list(&mut self) -> Result<(u8, u64), String> {
        let header = self.byte()?;
        let size = match header >> 4 {
            15 => self.varint()?,
            short => u64::from(short),
        };
        Ok((header & 0x0f, size))
    }

    /// Skips a value of `value_type`; in a list, booleans take a byte each.
    fn skip(&mut self, value_type: u8, depth: usize) -> Result<(), String> {
        if depth == 0 {
            return Err(format!(
                "values are nested more than {SKIP_DEPTH} levels deep"
            ));
        }
        match value_type {
            compact::BOOL_TRUE | compact::BOOL_FALSE => Ok(()),
            compact::BYTE => self.advance(1),
            compact::I16 | compact::I32 | compact::I64 => self.varint().map(|_| ()),
            compact::DOUBLE => self.advance(8),
            compact::UUID => self.advance(16),
            compact::BINARY => {
                let length = self.varint()?;
                self.advance(length)
            }
            compact::LIST | compact::SET => {
                let (element_type, size) = self.list()?;
                self.skip_elements(element_type, size, depth)
            }
            compact::MAP => {
                let size = self.varint()?;
                if size == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..size {
                    self.skip_element(types >> 4, depth)?;
                    self.skip_element(types & 0x0f, depth)?;
                }
                Ok(())
            }
            compact::STRUCT => {
                let mut last_id = 0;
                while let Some((field_type, id)) = self.field(last_id)? {
                    self.skip(field_type, depth - 1)?;
                    last_id = id;
                }
                Ok(())
            }
            other => Err(format!("unknown thrift type {other}")),
        }
    }

    fn skip_element(&mut self, element_type: u8, depth: usize) -> Result<(), String> {
        match element_type {
            compact::BOOL_TRUE | compact::BOOL_FALSE => self.advance(1),
            other => self.skip(other, depth - 1),
        }
    }

    fn skip_elements(&mut self, element_type: u8, size: u64, depth: usize) -> Result<(), String> {
        for _ in 0..size {
            // Each element takes at least one byte (an empty struct its stop byte): a count
            // larger than the bytes left ends in an error, not in a long loop.
            if self.at >= self.bytes.len() && element_type != compact::STRUCT {
                return Err("the footer ends in the middle of a list".into());
            }
            self.skip_element(element_type, depth)?;
        }
        Ok(())
    }
}

/// The deepest nesting of a column in a Parquet footer (the thrift `FileMetaData`, without the
/// length and magic that follow it), read from its flattened schema without recursion.
///
/// The schema is a list of elements in depth-first order, the root first; a group says how many
/// children follow it. The root's children are 1 level deep. Errors are reasons, for an error
/// that names the file.
pub(crate) fn parquet_schema_depth(footer: &[u8]) -> Result<usize, String> {
    let mut reader = Compact {
        bytes: footer,
        at: 0,
    };
    let mut last_id = 0;
    while let Some((field_type, id)) = reader.field(last_id)? {
        last_id = id;
        if id != 2 {
            reader.skip(field_type, SKIP_DEPTH)?;
            continue;
        }
        if field_type != compact::LIST {
            return Err(format!(
                "the schema (field 2) has thrift type {field_type}, not a list"
            ));
        }
        let (element_type, size) = reader.list()?;
        if element_type != compact::STRUCT {
            return Err(format!(
                "the schema's elements have thrift type {element_type}, not a struct"
            ));
        }
        // Per open group, how many of its children are still to come.
        let mut open_groups: Vec<u64> = Vec::new();
        let mut deepest = 0;
        for index in 0..size {
            let children = schema_element_children(&mut reader)?;
            if index > 0 {
                let Some(siblings_left) = open_groups.last_mut() else {
                    return Err(format!(
                        "schema element {index} follows the end of the root's children"
                    ));
                };
                *siblings_left -= 1;
                deepest = deepest.max(open_groups.len());
            }
            if children > 0 {
                open_groups.push(children);
            }
            while open_groups.last() == Some(&0) {
                open_groups.pop();
            }
        }
        return Ok(deepest);
    }
    Err("the footer has no schema".into())
}

/// Reads one thrift `SchemaElement`, returning its `num_children` (field 5; 0 when absent or
/// negative).
fn schema_element_children(reader: &mut Compact<'_>) -> Result<u64, String> {
    let mut children = 0;
    let mut last_id = 0;
    while let Some((field_type, id)) = reader.field(last_id)? {
        last_id = id;
        if id == 5 && field_type == compact::I32 {
            children = u64::try_from(reader.zigzag_i32()?).unwrap_or(0);
        } else {
            reader.skip(field_type, SKIP_DEPTH)?;
        }
    }
    Ok(children)
}

/// Refuses a Parquet footer whose schema nests more than `MAX_NESTING_DEPTH` levels.
pub(crate) fn check_parquet_footer_depth(footer: &[u8]) -> Result<(), String> {
    let depth = parquet_schema_depth(footer)?;
    if depth > MAX_NESTING_DEPTH {
        return Err(too_deep(depth));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Fields};
    use parquet::file::metadata::ParquetMetaDataWriter;
    use parquet::schema::types::{SchemaDescriptor, Type};

    use super::*;

    /// A Parquet schema of `depth` levels: optional groups one inside the other, around one
    /// int32 leaf; beside it a flat column.
    fn nested_parquet_schema(depth: usize) -> Type {
        let mut node = Type::primitive_type_builder("leaf", parquet::basic::Type::INT32)
            .with_repetition(parquet::basic::Repetition::OPTIONAL)
            .build()
            .unwrap();
        for level in 1..depth {
            node = Type::group_type_builder(&format!("g{level}"))
                .with_repetition(parquet::basic::Repetition::OPTIONAL)
                .with_fields(vec![Arc::new(node)])
                .build()
                .unwrap();
        }
        let flat = Type::primitive_type_builder("flat", parquet::basic::Type::INT64)
            .with_repetition(parquet::basic::Repetition::REQUIRED)
            .build()
            .unwrap();
        Type::group_type_builder("schema")
            .with_fields(vec![Arc::new(flat), Arc::new(node)])
            .build()
            .unwrap()
    }

    /// The thrift footer of a file with no row groups and this schema, as the `parquet` crate
    /// writes it.
    fn footer_of(schema: Type) -> Vec<u8> {
        let descriptor = Arc::new(SchemaDescriptor::new(Arc::new(schema)));
        let file_metadata =
            parquet::file::metadata::FileMetaData::new(2, 0, None, None, descriptor, None);
        let metadata = parquet::file::metadata::ParquetMetaData::new(file_metadata, vec![]);
        let mut bytes = Vec::new();
        ParquetMetaDataWriter::new(&mut bytes, &metadata)
            .finish()
            .unwrap();
        // The writer appends the footer length and the magic.
        bytes.truncate(bytes.len() - 8);
        bytes
    }

    #[test]
    fn parquet_schema_depth_counts_levels_below_the_root() {
        for depth in [1, 2, 3, 100, 101, 150] {
            let footer = footer_of(nested_parquet_schema(depth));
            assert_eq!(parquet_schema_depth(&footer).unwrap(), depth, "{depth}");
        }
        assert!(check_parquet_footer_depth(&footer_of(nested_parquet_schema(100))).is_ok());
        let refused = check_parquet_footer_depth(&footer_of(nested_parquet_schema(101)));
        assert!(refused.unwrap_err().contains("nested 101 levels deep"));
    }

    #[test]
    fn damaged_parquet_footers_are_errors_not_panics() {
        let footer = footer_of(nested_parquet_schema(5));
        for cut in 0..footer.len() {
            // Any answer will do, as long as there is one.
            let _ = parquet_schema_depth(&footer[..cut]);
        }
        let mut flipped = footer.clone();
        for at in 0..flipped.len() {
            for bit in 0..8 {
                flipped[at] ^= 1 << bit;
                let _ = parquet_schema_depth(&flipped);
                flipped[at] ^= 1 << bit;
            }
        }
        assert!(parquet_schema_depth(&[]).is_err());
        // A struct nested 10,000 levels deep inside a skipped field: refused, not a crash.
        let mut deep = vec![0x1c; 10_000]; // field 1, type struct, over and over
        deep.extend(std::iter::repeat_n(0u8, 10_000));
        assert!(parquet_schema_depth(&deep).unwrap_err().contains("nested"));
    }

    fn nested_arrow_type(depth: usize) -> DataType {
        let mut data_type = DataType::Int32;
        for level in 1..depth {
            data_type = DataType::Struct(Fields::from(vec![Field::new(
                format!("s{level}"),
                data_type,
                true,
            )]));
        }
        data_type
    }

    /// An IPC file (or stream) of two rows whose column "deep" nests `depth` levels.
    fn write_nested_ipc(path: &std::path::Path, depth: usize, stream: bool) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("deep", nested_arrow_type(depth), true),
            Field::new("n", DataType::Int64, false),
        ]));
        let deep = arrow::array::new_null_array(&nested_arrow_type(depth), 2);
        let n = Arc::new(arrow::array::Int64Array::from(vec![1, 2]));
        let batch = arrow::array::RecordBatch::try_new(schema.clone(), vec![deep, n]).unwrap();
        let file = std::fs::File::create(path).unwrap();
        if stream {
            let mut writer = arrow::ipc::writer::StreamWriter::try_new(file, &schema).unwrap();
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
        } else {
            let mut writer = arrow::ipc::writer::FileWriter::try_new(file, &schema).unwrap();
            writer.write(&batch).unwrap();
            writer.finish().unwrap();
        }
    }

    #[test]
    fn ipc_schemas_up_to_100_levels_deep_open_and_deeper_ones_are_refused() {
        let dir = crate::test_support::temp_dir("relay-nesting");
        for stream in [false, true] {
            for depth in [64, 65, 100] {
                let path = dir.join(format!("deep{depth}-{stream}.arrow"));
                write_nested_ipc(&path, depth, stream);
                let file = crate::IpcFile::open(&path)
                    .unwrap_or_else(|e| panic!("depth {depth}, stream {stream}: {e}"));
                assert_eq!(schema_depth(file.schema()), depth);
                assert_eq!(file.num_rows(), 2);
                assert_eq!(file.decode_column(0, 0).unwrap().array.null_count(), 2);
            }
            for depth in [101, 124, 125, 300] {
                let path = dir.join(format!("deep{depth}-{stream}.arrow"));
                write_nested_ipc(&path, depth, stream);
                let error = crate::IpcFile::open(&path).unwrap_err().to_string();
                assert!(error.contains(&path.display().to_string()), "{error}");
                assert!(
                    error.contains(&format!("nested {depth} levels deep"))
                        || error.contains("nested more than 100 levels deep"),
                    "depth {depth}, stream {stream}: {error}"
                );
                assert!(error.contains("at most 100 levels"), "{error}");
            }
        }
    }

    #[test]
    fn parquet_files_nested_deeper_than_100_levels_are_refused() {
        let dir = crate::test_support::temp_dir("relay-nesting");
        for depth in [100, 101, 150] {
            let path = dir.join(format!("deep{depth}.parquet"));
            let footer = footer_of(nested_parquet_schema(depth));
            let mut bytes = b"PAR1".to_vec();
            bytes.extend_from_slice(&footer);
            bytes.extend_from_slice(&(footer.len() as u32).to_le_bytes());
            bytes.extend_from_slice(b"PAR1");
            std::fs::write(&path, bytes).unwrap();
            let opened = crate::ParquetFile::open(&path);
            if depth <= MAX_NESTING_DEPTH {
                let file = opened.unwrap();
                assert_eq!(schema_depth(file.metadata().schema()), depth);
            } else {
                let error = opened.unwrap_err().to_string();
                assert!(error.contains(&path.display().to_string()), "{error}");
                assert!(
                    error.contains(&format!("nested {depth} levels deep")),
                    "{error}"
                );
            }
        }
    }

    #[test]
    fn arrow_schema_depth() {
        let mut data_type = DataType::Int32;
        for _ in 1..5 {
            data_type = DataType::Struct(Fields::from(vec![Field::new("s", data_type, true)]));
        }
        data_type = DataType::new_list(data_type, true);
        let schema = Schema::new(vec![
            Field::new("flat", DataType::Int8, false),
            Field::new("deep", data_type, true),
        ]);
        assert_eq!(schema_depth(&schema), 6);
        assert_eq!(schema_depth(&Schema::empty()), 0);
        assert_eq!(
            data_type_depth(&DataType::Dictionary(
                Box::new(DataType::Int8),
                Box::new(DataType::Utf8)
            )),
            1
        );
    }
}
