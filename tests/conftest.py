"""Shared helpers: write Arrow files with pyarrow, a table of many column types, and read this
process's memory maps."""

from __future__ import annotations

import datetime
import decimal
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest


def write_arrow(path: Path, table: pa.Table, batch_rows: int | None = None) -> Path:
    """Write `table` as an Arrow IPC file with pyarrow (8-byte aligned buffers), in record
    batches of `batch_rows` rows (one batch when None)."""
    with pa.ipc.new_file(path, table.schema) as writer:
        if batch_rows is None:
            writer.write_table(table, max_chunksize=max(table.num_rows, 1))
        else:
            writer.write_table(table, max_chunksize=batch_rows)
    return path


def many_types_table(n: int = 257) -> pa.Table:
    """`n` rows of one column per kind the writers handle (integers of every width, floats,
    booleans, strings, binary, dates, timestamps with and without a zone, decimals, lists,
    fixed-size lists, structs, dictionaries), each with nulls."""
    rng = np.random.default_rng(7)
    nulls = rng.random(n) < 0.2

    def with_nulls(values, type=None):
        return pa.array([None if m else v for v, m in zip(values, nulls, strict=True)], type=type)

    ints = rng.integers(-1000, 1000, n)
    return pa.table(
        {
            "i8": with_nulls((ints % 100).tolist(), pa.int8()),
            "i16": with_nulls(ints.tolist(), pa.int16()),
            "i32": with_nulls(ints.tolist(), pa.int32()),
            "i64": with_nulls((ints * 10**12).tolist(), pa.int64()),
            "u8": with_nulls((np.abs(ints) % 256).tolist(), pa.uint8()),
            "u16": with_nulls(np.abs(ints).tolist(), pa.uint16()),
            "u32": with_nulls(np.abs(ints).tolist(), pa.uint32()),
            "u64": with_nulls(np.abs(ints).tolist(), pa.uint64()),
            "f32": with_nulls(rng.standard_normal(n).astype(np.float32).tolist(), pa.float32()),
            "f64": with_nulls(rng.standard_normal(n).tolist(), pa.float64()),
            "bool": with_nulls((ints % 2 == 0).tolist(), pa.bool_()),
            "str": with_nulls([f"value {i}" * (i % 3) for i in range(n)], pa.string()),
            "large_str": with_nulls([f"s{i}" for i in range(n)], pa.large_string()),
            "bin": with_nulls([bytes([i % 256]) * (i % 5) for i in range(n)], pa.binary()),
            "date": with_nulls(
                [datetime.date(2024, 1, 1) + datetime.timedelta(days=i) for i in range(n)],
                pa.date32(),
            ),
            "ts": with_nulls(
                [datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=i) for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
            "ts_naive": with_nulls(
                [
                    datetime.datetime(2020, 5, 1) + datetime.timedelta(milliseconds=7 * i)
                    for i in range(n)
                ],
                pa.timestamp("ms"),
            ),
            "dec": with_nulls([decimal.Decimal(i) / 100 for i in range(n)], pa.decimal128(10, 2)),
            "list": with_nulls([list(range(i % 4)) for i in range(n)], pa.list_(pa.int32())),
            "str_list": with_nulls(
                [[f"t{j}" for j in range(i % 3)] for i in range(n)], pa.list_(pa.string())
            ),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.standard_normal(n * 4).astype(np.float32)), 4, mask=pa.array(nulls)
            ),
            "struct": with_nulls(
                [{"a": i, "b": f"b{i}"} for i in range(n)],
                pa.struct([("a", pa.int64()), ("b", pa.string())]),
            ),
            "city": with_nulls(
                [["oslo", "rome", "lima"][i % 3] for i in range(n)], pa.string()
            ).dictionary_encode(),
        }
    )


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges at which this process maps `path` (from /proc/self/maps)."""
    target = os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == target:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((start, end))
    return ranges


def address_in_file_mapping(address: int, path: Path) -> bool:
    return any(start <= address < end for start, end in mapped_ranges(path))


def rss_anon_bytes() -> int:
    """Anonymous resident memory of this process (RssAnon in /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("RssAnon not found in /proc/self/status")


@pytest.fixture
def numeric_file(tmp_path: Path) -> tuple[Path, pa.Table]:
    rng = np.random.default_rng(0)
    n = 1000
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(rng.standard_normal(n).astype(np.float32)),
            "y": pa.array(rng.standard_normal(n)),
            "label": pa.array(rng.integers(0, 10, n).astype(np.int32)),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.standard_normal(n * 8).astype(np.float32)), 8
            ),
        }
    )
    return write_arrow(tmp_path / "numeric.arrow", table), table


def arrow_type_name(arrow_type: object) -> str:
    """A pyarrow type as relay names it: pyarrow's spelling, except that floats are named by
    their width ("float32", not "float"), as NumPy and `cast` name them."""
    name = str(arrow_type)
    for pyarrow_name, relay_name in [
        ("halffloat", "float16"),
        ("float", "float32"),
        ("double", "float64"),
    ]:
        name = re.sub(rf"\b{pyarrow_name}\b", relay_name, name)
    return name
