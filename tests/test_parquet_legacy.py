"""Parquet layouts of older and other writers, read as pyarrow reads them or refused with an
error that names the file and the column, never returned short or wrong.

The files are written by pyarrow and their footers rewritten (tests/parquet_footer.py) into what
Spark, Hive, Impala and older parquet-mr write: lists in the two-level layouts of the
parquet-format backward-compatibility rules (a bare repeated field, a LIST group whose repeated
child is the element), INT96 timestamps, and column chunks whose dictionary page offset is 0.
Rewriting only the schema keeps the pages valid where the definition and repetition levels of
the old layout equal those of the one pyarrow wrote.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import relay_ml as relay
from parquet_footer import BINARY, I32, I64, field, read_footer, write_footer

# Parquet's enums, as thrift i32 values.
PARQUET_INT32 = 1
REQUIRED, OPTIONAL, REPEATED = 0, 1, 2
CONVERTED_LIST = 3


def element(
    name: str,
    repetition: int,
    physical: int | None = None,
    children: int | None = None,
    converted: int | None = None,
) -> list:
    """A thrift `SchemaElement`: a leaf of type `physical`, or a group of `children` fields."""
    fields = []
    if physical is not None:
        fields.append([1, I32, physical])
    fields += [[3, I32, repetition], [4, BINARY, name.encode()]]
    if children is not None:
        fields.append([5, I32, children])
    if converted is not None:
        fields.append([6, I32, converted])
    return fields


def _subtree_size(elements: list, at: int) -> int:
    """How many schema elements the field at `at` spans, itself and all below it."""
    children = next((value for field_id, _, value in elements[at] if field_id == 5), 0)
    size = 1
    for _ in range(children):
        size += _subtree_size(elements, at + size)
    return size


def rewrite_last_column(path: Path, elements: list, leaf_paths: list[list[str]]) -> Path:
    """Replaces the schema of the file's last top-level column with `elements`, whose leaves
    are at `leaf_paths` (the chunks' `path_in_schema`, in order)."""
    head, footer = read_footer(path)
    schema = field(footer, 2)[2][1]
    root_children = field(schema[0], 5)[2]
    at = 1
    for _ in range(root_children - 1):
        at += _subtree_size(schema, at)
    schema[at : at + _subtree_size(schema, at)] = elements
    for row_group in field(footer, 4)[2][1]:
        chunks = field(row_group, 1)[2][1]
        for chunk, leaf_path in zip(chunks[-len(leaf_paths) :], leaf_paths, strict=True):
            metadata = field(chunk, 3)[2]
            field(metadata, 3)[2] = (BINARY, [name.encode() for name in leaf_path])
    return write_footer(path, head, footer)


def write(path: Path, table: pa.Table, **options) -> Path:
    """`table` written by pyarrow without its Arrow schema (older writers store none, and the
    layouts here are read from the Parquet schema alone), in row groups of 400 rows."""
    pq.write_table(table, path, store_schema=False, row_group_size=400, **options)
    return path


def required_list(item: pa.DataType, nullable: bool) -> pa.Field:
    return pa.field("xs", pa.list_(pa.field("element", item, nullable=False)), nullable=nullable)


def list_rows(rows: int, null_every: int | None = None) -> list:
    return [
        None if null_every and i % null_every == 3 else list(range(i % 4 * 2, i % 4 * 3))
        for i in range(rows)
    ]


def every(table: pa.Table, step: int, remainder: int) -> pa.Array:
    """The mask of the rows of `table` whose id is `remainder` modulo `step`."""
    return pa.array(table["id"].to_numpy() % step == remainder)


def assert_reads_as_pyarrow(path: Path) -> pa.Table:
    """relay reads `path` as pyarrow does: the same rows, types and values, whole, per column,
    filtered and in batches."""
    expected = pq.read_table(path)
    frame = relay.scan(path)
    assert len(frame) == expected.num_rows
    read = frame.to_arrow()
    assert read.schema == expected.schema
    assert read.to_pylist() == expected.to_pylist()
    last = expected.column_names[-1]
    assert frame.select(last).to_arrow().column(0).to_pylist() == expected[last].to_pylist()
    batches = [batch.to_arrow() for batch in relay.scan(path, batch_size=333)]
    assert sum(batch.num_rows for batch in batches) == expected.num_rows
    if "id" in expected.column_names:
        kept = frame.filter(relay.col("id") % 7 == 2).to_arrow()
        assert kept.to_pylist() == expected.filter(every(expected, 7, 2)).to_pylist()
    return read


# Two-level lists (parquet-format LogicalTypes.md, "Backward-compatibility rules").


def test_a_bare_repeated_field_is_a_list(tmp_path):
    """`repeated int32 xs` at the top level, with no LIST group: a required list of required
    elements (older parquet-mr, protobuf and thrift writers)."""
    rows = 1000
    table = pa.table(
        {"id": np.arange(rows, dtype=np.int64), "xs": pa.array(list_rows(rows))},
        schema=pa.schema([pa.field("id", pa.int64()), required_list(pa.int32(), False)]),
    )
    path = write(tmp_path / "bare.parquet", table)
    rewrite_last_column(path, [element("xs", REPEATED, PARQUET_INT32)], [["xs"]])
    read = assert_reads_as_pyarrow(path)
    assert read.num_rows == rows
    assert read["xs"].to_pylist() == list_rows(rows)
    assert pa.types.is_list(read.schema.field("xs").type)


def test_a_two_level_list_reads_its_repeated_field_as_the_element(tmp_path):
    """`optional group xs (LIST) { repeated int32 element; }`: the repeated field is the
    element (parquet-avro and older Spark)."""
    rows = 1000
    table = pa.table(
        {"id": np.arange(rows, dtype=np.int64), "xs": pa.array(list_rows(rows, 5))},
        schema=pa.schema([pa.field("id", pa.int64()), required_list(pa.int32(), True)]),
    )
    path = write(tmp_path / "two_level.parquet", table)
    rewrite_last_column(
        path,
        [
            element("xs", OPTIONAL, children=1, converted=CONVERTED_LIST),
            element("element", REPEATED, PARQUET_INT32),
        ],
        [["xs", "element"]],
    )
    read = assert_reads_as_pyarrow(path)
    assert read["xs"].to_pylist() == list_rows(rows, 5)


@pytest.mark.parametrize(
    ("group", "element_is_struct"),
    [
        # A repeated group of one field named `array` or `<list name>_tuple` is the element.
        ("array", True),
        ("xs_tuple", True),
        # Any other name: the group is the three-level layout's, its one field the element.
        ("bag", False),
        ("list", False),
    ],
)
def test_a_repeated_group_of_one_field_follows_the_naming_rules(tmp_path, group, element_is_struct):
    """`optional group xs (LIST) { repeated group <group> { required int32 n; } }`."""
    rows = 1000
    item = pa.struct([pa.field("n", pa.int32(), nullable=False)])
    values = [
        None if i % 5 == 3 else [{"n": n} for n in range(i % 4 * 2, i % 4 * 3)] for i in range(rows)
    ]
    table = pa.table(
        {"id": np.arange(rows, dtype=np.int64), "xs": pa.array(values)},
        schema=pa.schema([pa.field("id", pa.int64()), required_list(item, True)]),
    )
    path = write(tmp_path / f"{group}.parquet", table)
    rewrite_last_column(
        path,
        [
            element("xs", OPTIONAL, children=1, converted=CONVERTED_LIST),
            element(group, REPEATED, children=1),
            element("n", REQUIRED, PARQUET_INT32),
        ],
        [["xs", group, "n"]],
    )
    read = assert_reads_as_pyarrow(path)
    item_type = read.schema.field("xs").type.value_type
    assert pa.types.is_struct(item_type) == element_is_struct
    if element_is_struct:
        assert read["xs"].to_pylist() == values
    else:
        assert read["xs"].to_pylist() == [
            None if value is None else [entry["n"] for entry in value] for value in values
        ]


def test_a_repeated_group_of_two_fields_is_the_element(tmp_path):
    """`optional group xs (LIST) { repeated group pair { required int32 a; required int32 b; }
    }`: a group of several fields is the element, whatever its name."""
    rows = 600
    item = pa.struct([pa.field("a", pa.int32(), nullable=False), pa.field("b", pa.int32(), False)])
    values = [
        None if i % 9 == 0 else [{"a": i, "b": -k} for k in range(i % 3)] for i in range(rows)
    ]
    table = pa.table(
        {"id": np.arange(rows, dtype=np.int64), "xs": pa.array(values)},
        schema=pa.schema([pa.field("id", pa.int64()), required_list(item, True)]),
    )
    path = write(tmp_path / "pairs.parquet", table)
    rewrite_last_column(
        path,
        [
            element("xs", OPTIONAL, children=1, converted=CONVERTED_LIST),
            element("pair", REPEATED, children=2),
            element("a", REQUIRED, PARQUET_INT32),
            element("b", REQUIRED, PARQUET_INT32),
        ],
        [["xs", "pair", "a"], ["xs", "pair", "b"]],
    )
    read = assert_reads_as_pyarrow(path)
    assert read["xs"].to_pylist() == values


# Row counts: a decode that returns other rows than the footer says is refused.


def bare_repeated_file(path: Path, values: list, rows_in_footer: int) -> Path:
    """A file of one bare `repeated int32 xs` column holding `values`, whose footer says it has
    `rows_in_footer` rows."""
    table = pa.table({"xs": pa.array(values)}, schema=pa.schema([required_list(pa.int32(), False)]))
    write(path, table)
    rewrite_last_column(path, [element("xs", REPEATED, PARQUET_INT32)], [["xs"]])
    head, footer = read_footer(path)
    field(footer, 3)[2] = rows_in_footer
    for row_group in field(footer, 4)[2][1]:
        field(row_group, 3)[2] = rows_in_footer
    return write_footer(path, head, footer)


@pytest.mark.parametrize(
    ("values", "rows_in_footer"),
    [
        # Fewer lists than the footer's rows: the read came back short, with no error.
        ([[1, 2], [], [3]], 4),
        ([[1, 2, 3, 4]], 4),
        # More lists than the footer's rows: `len()` and the rows read disagreed.
        ([[1, 2], [], [3]], 2),
    ],
)
def test_a_repeated_column_holding_other_rows_than_the_footer_is_refused(
    tmp_path, values, rows_in_footer
):
    path = bare_repeated_file(tmp_path / "rows.parquet", values, rows_in_footer)
    frame = relay.scan(path)
    for read in (
        frame.to_arrow,
        lambda: frame["xs"].to_pylist(),
        lambda: [batch.to_arrow() for batch in relay.scan(path, batch_size=1)],
    ):
        with pytest.raises(relay.CorruptFileError) as refused:
            read()
        message = str(refused.value)
        assert str(path) in message and 'row group 0, column "xs"' in message, message
        assert f"holds {rows_in_footer} rows" in message, message


def test_a_row_group_of_no_rows_over_repeated_values_is_refused(tmp_path):
    """A footer of 0 rows over a chunk of lists read as an empty file."""
    path = bare_repeated_file(tmp_path / "zero.parquet", [[1, 2], [], [3]], 0)
    with pytest.raises(relay.CorruptFileError) as refused:
        relay.scan(path)
    message = str(refused.value)
    assert str(path) in message and 'row group 0, column "xs"' in message, message
    assert "0 rows" in message, message


# INT96 timestamps (Spark, Hive, Impala; pyarrow's `use_deprecated_int96_timestamps`).

INT96_MICROSECONDS = [
    dt.datetime(1970, 1, 1),
    dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
    dt.datetime(1900, 1, 1, 12, 30),
    dt.datetime(1582, 10, 4),
    dt.datetime(1, 1, 1),
    dt.datetime(1677, 9, 21, 0, 12, 43, 145224),
    dt.datetime(2262, 4, 11, 23, 47, 16, 854775),
    dt.datetime(2262, 4, 12),
    dt.datetime(3000, 1, 1, 0, 0, 0, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    None,
]


def test_int96_timestamps_read_in_microseconds_as_spark_writes_them(tmp_path):
    """INT96 reads as timestamp[us], every date intact: what pyarrow reads with
    `coerce_int96_timestamp_unit="us"`. pyarrow's default (nanoseconds) wraps the dates after
    2262 around into wrong ones, which relay used to return too."""
    values = pa.array(INT96_MICROSECONDS * 40, pa.timestamp("us"))
    lists = pa.array([[v, v] if v is not None else None for v in INT96_MICROSECONDS] * 40)
    table = pa.table({"id": np.arange(len(values), dtype=np.int64), "at": values, "ats": lists})
    path = write(tmp_path / "int96.parquet", table, use_deprecated_int96_timestamps=True)
    assert pq.ParquetFile(path).schema.column(1).physical_type == "INT96"
    expected = pq.read_table(path, coerce_int96_timestamp_unit="us")
    assert expected.equals(table)
    # pyarrow's default unit cannot hold the later dates.
    wrapped = pq.read_table(path)["at"].cast(pa.int64()).to_pylist()
    assert wrapped[8] < 0, "a date in 3000 reads before 1970 at nanoseconds"

    frame = relay.scan(path)
    assert frame.schema["at"] == "timestamp[us]"
    read = frame.to_arrow()
    assert read.schema == expected.schema
    assert read.equals(expected)
    kept = frame.filter(relay.col("id") % 11 == 9).to_arrow()
    assert kept.equals(expected.filter(every(expected, 11, 9)))


def test_int96_nanoseconds_are_read_to_the_microsecond(tmp_path):
    """Sub-microsecond digits (Impala, pyarrow from nanosecond data) are dropped, rounding
    toward the past as pyarrow's `coerce_int96_timestamp_unit="us"` does; every value of the
    nanosecond range reads."""
    nanoseconds = [0, 1, -1, 999, 1_000, -1_001, 86_400 * 10**9 - 1, -(2**63) + 1, 2**63 - 1, None]
    table = pa.table({"at": pa.array(nanoseconds, pa.timestamp("ns"))})
    path = write(tmp_path / "int96_ns.parquet", table, use_deprecated_int96_timestamps=True)
    expected = pq.read_table(path, coerce_int96_timestamp_unit="us")
    read = relay.scan(path).to_arrow()
    assert read.equals(expected)
    assert read["at"].cast(pa.int64()).to_pylist() == [
        None if n is None else n // 1_000 for n in nanoseconds
    ]


# Dictionary page offsets of older parquet-mr.


def dictionary_offset_file(path: Path, table: pa.Table, dictionary: bool) -> Path:
    """`table` with every column chunk's `dictionary_page_offset` set to 0. Without a
    dictionary, the field is added; with one, `data_page_offset` is moved to the dictionary
    page, as older parquet-mr wrote both."""
    write(path, table, use_dictionary=dictionary)
    head, footer = read_footer(path)
    for row_group in field(footer, 4)[2][1]:
        for chunk in field(row_group, 1)[2][1]:
            metadata = field(chunk, 3)[2]
            offsets = [entry for entry in metadata if entry[0] == 11]
            if offsets:
                field(metadata, 9)[2] = offsets[0][2]
                offsets[0][2] = 0
            else:
                metadata.append([11, I64, 0])
                metadata.sort(key=lambda entry: entry[0])
    assert all(
        field(field(chunk, 3)[2], 11)[2] == 0
        for row_group in field(footer, 4)[2][1]
        for chunk in field(row_group, 1)[2][1]
    )
    return write_footer(path, head, footer)


@pytest.mark.parametrize("dictionary", [False, True])
def test_a_dictionary_page_offset_of_0_is_ignored(tmp_path, dictionary):
    rows = 1000
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "x": np.arange(rows, dtype=np.float64) / 3,
            "city": pa.array([["oslo", "rome", "lima"][i % 3] for i in range(rows)]),
            "n": pa.array([None if i % 7 == 0 else i % 5 for i in range(rows)], pa.int32()),
        }
    )
    path = dictionary_offset_file(tmp_path / "offset0.parquet", table, dictionary)
    assert pq.read_table(path).equals(table)
    assert_reads_as_pyarrow(path)
    assert relay.scan(path).to_arrow().equals(table)
    # The columns a filter does not read are decoded at the rows that pass, from the same
    # chunk offsets.
    kept = relay.scan(path).filter(relay.col("id") > 990).select("n", "x").to_arrow()
    assert kept.equals(table.slice(991).select(["n", "x"]))
