"""Limits instead of crashes and fictions: schemas nested deeper than pyarrow reads are refused
with their depth, and Parquet row counts the column chunks do not hold are refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import relay_ml as relay
from conftest import write_arrow
from parquet_footer import BINARY, I32, I64, LIST, STRUCT, encode, field, read_footer, write_footer

# Parquet's enums, as thrift i32 values.
PARQUET_INT32 = 1
OPTIONAL = 1


def nested_parquet(path: Path, depth: int) -> Path:
    """A Parquet file without row groups whose only column is an int32 inside `depth - 1`
    optional groups, one inside the other (pyarrow refuses to write such a file past 100)."""
    root = [[4, BINARY, b"schema"], [5, I32, 1]]
    groups = [
        [[3, I32, OPTIONAL], [4, BINARY, f"g{level}".encode()], [5, I32, 1]]
        for level in range(1, depth)
    ]
    leaf = [[1, I32, PARQUET_INT32], [3, I32, OPTIONAL], [4, BINARY, b"leaf"]]
    footer = [
        [1, I32, 1],
        [2, LIST, (STRUCT, [root, *groups, leaf])],
        [3, I64, 0],
        [4, LIST, (STRUCT, [])],
    ]
    encoded = encode(footer)
    path.write_bytes(b"PAR1" + encoded + len(encoded).to_bytes(4, "little") + b"PAR1")
    return path


def nested_struct_type(depth: int) -> pa.DataType:
    data_type = pa.int32()
    for level in range(1, depth):
        data_type = pa.struct([(f"s{level}", data_type)])
    return data_type


def test_a_parquet_schema_100_levels_deep_reads(tmp_path):
    frame = relay.scan(nested_parquet(tmp_path / "deep100.parquet", 100))
    assert len(frame) == 0
    assert frame.columns == ["g1"]
    assert "g1" in repr(frame)


@pytest.mark.parametrize("depth", [101, 5_000])
def test_a_parquet_schema_nested_deeper_than_100_levels_is_refused(tmp_path, depth):
    path = nested_parquet(tmp_path / f"deep{depth}.parquet", depth)
    with pytest.raises(relay.CorruptFileError) as refused:
        relay.scan(path)
    message = str(refused.value)
    assert str(path) in message
    assert f"nested {depth} levels deep" in message and "at most 100" in message


def test_a_parquet_schema_10000_levels_deep_does_not_crash(tmp_path):
    """10,000 nested groups overflowed the stack while the footer was converted: run where a
    crash cannot take the other tests down."""
    path = nested_parquet(tmp_path / "deep10000.parquet", 10_000)
    script = textwrap.dedent(
        f"""
        import relay_ml as relay
        try:
            relay.scan({str(path)!r})
        except relay.CorruptFileError as error:
            print("refused:", error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert "refused:" in result.stdout and "nested 10000 levels deep" in result.stdout


@pytest.mark.parametrize("depth", [2, 63, 64])
def test_ipc_schemas_nested_as_deep_as_pyarrow_writes_them_read(tmp_path, depth):
    """pyarrow writes and reads IPC schemas up to 64 levels deep ("Max recursion depth reached"
    past that); relay reads what pyarrow writes (files nested deeper, up to 100 levels, are
    tested in relay-storage, whose arrow-rs writer has no such limit)."""
    values = pa.array([None, {}], type=nested_struct_type(depth))
    table = pa.table({"deep": values, "n": pa.array([1, 2], pa.int64())})
    path = write_arrow(tmp_path / f"deep{depth}.arrow", table)
    assert pa.ipc.open_file(path).read_all().equals(table)
    frame = relay.scan(path)
    assert len(frame) == 2
    assert frame["n"].to_pylist() == [1, 2]
    assert frame["deep"].to_pylist()[0] is None


def write_lists(path: Path, with_flat_column: bool) -> pa.Table:
    """2,000 rows in two row groups; three list entries per row, so that the list column's
    chunks hold 3,000 entries each."""
    columns = {"xs": pa.array([[i, i + 1, i + 2] for i in range(2_000)])}
    if with_flat_column:
        columns["id"] = pa.array(np.arange(2_000))
    table = pa.table(columns)
    pq.write_table(table, path, row_group_size=1_000)
    return table


@pytest.mark.parametrize(
    ("with_flat_column", "rows", "column"),
    [
        (True, 2**40, "xs.list.element"),  # more rows than the list column's entries
        (False, 3_001, "xs.list.element"),
        (True, 1_001, "id"),  # more rows than a flat column's values
        (True, 999, "id"),  # fewer rows than a flat column's values
    ],
)
def test_parquet_row_counts_the_column_chunks_do_not_hold_are_refused(
    tmp_path, with_flat_column, rows, column
):
    path = tmp_path / "rows.parquet"
    table = write_lists(path, with_flat_column)
    frame = relay.scan(path)
    assert len(frame) == 2_000
    assert frame["xs"].to_pylist() == table["xs"].to_pylist()
    del frame
    head, footer = read_footer(path)
    row_groups = field(footer, 4)[2][1]
    field(row_groups[1], 3)[2] = rows
    write_footer(path, head, footer)
    for open_it in (lambda: relay.scan(path), lambda: relay.scan(path, batch_size=100_000)):
        with pytest.raises(relay.CorruptFileError) as refused:
            open_it()
        message = str(refused.value)
        assert str(path) in message and "row group 1" in message, message
        assert f"{rows} rows" in message and f'column "{column}"' in message, message


def test_a_negative_parquet_row_count_is_refused(tmp_path):
    path = tmp_path / "negative.parquet"
    write_lists(path, with_flat_column=True)
    head, footer = read_footer(path)
    field(field(footer, 4)[2][1][0], 3)[2] = -5
    write_footer(path, head, footer)
    with pytest.raises(relay.CorruptFileError, match=r"row group 0.*negative row count -5"):
        relay.scan(path)
