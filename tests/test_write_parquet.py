"""Frame.write_parquet and relay.write to .parquet / .pq: round trips checked with pyarrow and
Polars, row groups, codecs, option validation, atomic replacement."""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import relay_ml as relay
from conftest import many_types_table, write_arrow


def assert_same_rows(read: pa.Table, expected: pa.Table) -> None:
    assert read.schema.equals(expected.schema), f"{read.schema}\n!=\n{expected.schema}"
    assert read.num_rows == expected.num_rows
    for name in expected.column_names:
        assert read[name].to_pylist() == expected[name].to_pylist(), name


@pytest.mark.parametrize("batch_rows", [None, 40])
def test_every_column_kind_round_trips_through_pyarrow_and_polars(tmp_path, batch_rows):
    table = many_types_table()
    source = write_arrow(tmp_path / "in.arrow", table, batch_rows=batch_rows)
    out = tmp_path / "out.parquet"
    summary = relay.scan(source).write_parquet(out)
    assert summary["rows"] == table.num_rows
    assert summary["batches"] == 1
    assert summary["bytes"] == os.path.getsize(out)
    assert_same_rows(pq.read_table(out), table)
    # Polars reads the same values (it maps a dictionary to Categorical and a fixed-size list
    # to Array, both in pl.from_arrow and in its Parquet reader).
    assert pl.read_parquet(out).to_dict(as_series=False) == pl.from_arrow(table).to_dict(
        as_series=False
    )


def test_row_groups_and_statistics(tmp_path):
    table = pa.table({"id": np.arange(257, dtype=np.int64), "x": np.linspace(0, 1, 257)})
    out = tmp_path / "groups.parquet"
    summary = relay.from_arrow(table).write_parquet(out, row_group_size=100)
    assert summary["batches"] == 3
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_row_groups == 3
    assert [metadata.row_group(i).num_rows for i in range(3)] == [100, 100, 57]
    stats = metadata.row_group(1).column(0).statistics
    assert (stats.min, stats.max, stats.null_count) == (100, 199, 0)
    assert pq.read_table(out).equals(table)
    # Row groups may span the frame's record batches.
    source = write_arrow(tmp_path / "in.arrow", table, batch_rows=30)
    relay.scan(source).write_parquet(out, row_group_size=64)
    metadata = pq.ParquetFile(out).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [
        64,
        64,
        64,
        64,
        1,
    ]
    assert pq.read_table(out).equals(table)


@pytest.mark.parametrize(
    ("compression", "level", "codec"),
    [
        ("zstd", None, "ZSTD"),
        ("zstd", 19, "ZSTD"),
        ("lz4", None, "LZ4_RAW"),
        ("snappy", None, "SNAPPY"),
        ("uncompressed", None, "UNCOMPRESSED"),
    ],
)
def test_codecs(tmp_path, compression, level, codec):
    table = pa.table(
        {"a": np.arange(1000, dtype=np.int64) % 7, "s": [f"v{i % 13}" for i in range(1000)]}
    )
    out = tmp_path / "codec.parquet"
    relay.from_arrow(table).write_parquet(out, compression=compression, compression_level=level)
    column = pq.ParquetFile(out).metadata.row_group(0).column(0)
    assert column.compression.upper() in {codec, codec.replace("_RAW", "")}
    assert pq.read_table(out).equals(table)
    assert pl.read_parquet(out).to_arrow().cast(table.schema).equals(table)


def test_filtered_and_computed_frames(tmp_path, numeric_file):
    path, table = numeric_file
    frame = (
        relay.scan(path)
        .filter(relay.col("label") > 6)
        .select(["id", "x"])
        .with_column("twice", relay.col("id") * 2)
    )
    out = tmp_path / "filtered.pq"
    summary = relay.write(frame, out, row_group_size=50)
    mask = np.asarray(table["label"]) > 6
    written = pq.read_table(out)
    assert summary["rows"] == int(mask.sum()) == written.num_rows
    np.testing.assert_array_equal(written["id"].to_numpy(), np.asarray(table["id"])[mask])
    np.testing.assert_array_equal(written["x"].to_numpy(), np.asarray(table["x"])[mask])
    np.testing.assert_array_equal(written["twice"].to_numpy(), np.asarray(table["id"])[mask] * 2)
    polars = pl.read_parquet(out)
    np.testing.assert_array_equal(polars["twice"].to_numpy(), np.asarray(table["id"])[mask] * 2)


def test_dictionary_columns_of_several_batches(tmp_path):
    # Each record batch has a dictionary of its own.
    first = pa.table(
        {"city": pa.array(["oslo", "rome", None, "oslo"]).dictionary_encode(), "n": [1, 2, 3, 4]}
    )
    second = pa.table(
        {"city": pa.array(["lima", "paris", "lima"]).dictionary_encode(), "n": [5, 6, 7]}
    )
    table = pa.concat_tables([first, second])
    assert table["city"].num_chunks == 2
    out = tmp_path / "dict.parquet"
    relay.from_arrow(table).write_parquet(out, row_group_size=3)
    read = pq.read_table(out)
    assert pa.types.is_dictionary(read.schema.field("city").type)
    assert read["city"].to_pylist() == ["oslo", "rome", None, "oslo", "lima", "paris", "lima"]
    assert pl.read_parquet(out)["city"].to_list() == [
        "oslo",
        "rome",
        None,
        "oslo",
        "lima",
        "paris",
        "lima",
    ]


def test_empty_frame_writes_the_schema(tmp_path):
    table = pa.table({"a": pa.array([1, None, 3], pa.int64()), "b": ["x", "y", None]})
    out = tmp_path / "empty.parquet"
    summary = relay.from_arrow(table).filter(relay.col("a") > 100).write_parquet(out)
    assert (summary["rows"], summary["batches"]) == (0, 0)
    read = pq.read_table(out)
    assert read.num_rows == 0 and read.schema.equals(table.schema)


def test_invalid_options_raise_and_write_nothing(tmp_path):
    frame = relay.from_arrow(pa.table({"a": [1, 2, 3]}))
    out = tmp_path / "out.parquet"
    with pytest.raises(
        relay.RelayValueError,
        match="compression must be one of 'zstd', 'lz4', 'snappy', 'uncompressed'",
    ):
        frame.write_parquet(out, compression="gzip")
    with pytest.raises(relay.RelayTypeError, match="compression must be a str"):
        frame.write_parquet(out, compression=None)
    with pytest.raises(relay.RelayValueError, match="compression_level is for zstd only"):
        frame.write_parquet(out, compression="snappy", compression_level=3)
    with pytest.raises(relay.RelayValueError, match="from 1 to 22"):
        frame.write_parquet(out, compression_level=23)
    with pytest.raises(relay.RelayValueError, match="row_group_size must be at least 1"):
        frame.write_parquet(out, row_group_size=0)
    with pytest.raises(relay.RelayTypeError, match="row_group_size must be an int"):
        frame.write_parquet(out, row_group_size="10")
    with pytest.raises(relay.RelayTypeError, match="compression_level must be an int"):
        frame.write_parquet(out, compression_level=2.5)
    with pytest.raises(TypeError, match="batch_size"):
        relay.write(frame, out, batch_size=10)
    with pytest.raises(relay.RelayTypeError):
        relay.write(42, out)
    with pytest.raises(relay.RelayFileNotFoundError):
        frame.write_parquet(tmp_path / "missing-folder" / "out.parquet")
    with pytest.raises(relay.WrongFormatError, match="directory"):
        frame.write_parquet(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_storage_layer_validates_options_too(tmp_path):
    # The binding checks what the Python wrapper checks, for callers that bypass it.
    from relay_ml import _relay

    frame = relay.from_arrow(pa.table({"a": [1]}))
    with pytest.raises(relay.RelayValueError, match="compression"):
        _relay.write_parquet(frame._native, str(tmp_path / "x.parquet"), "brotli", None, None)
    with pytest.raises(relay.RelayValueError, match="compression_level"):
        _relay.write_parquet(frame._native, str(tmp_path / "x.parquet"), "zstd", None, 99)
    with pytest.raises(relay.RelayValueError, match="row_group_size"):
        _relay.write_parquet(frame._native, str(tmp_path / "x.parquet"), "zstd", 0, None)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    # Parquet has no type for a month-day-nanosecond interval: the write fails.
    unsupported = pa.table({"a": [1], "span": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})
    out = tmp_path / "out.parquet"
    with pytest.raises(relay.RelayValueError, match=r"span|Interval|interval"):
        relay.from_arrow(unsupported).write_parquet(out)
    assert list(tmp_path.iterdir()) == []
    # Over an existing file: the file keeps its bytes.
    relay.from_arrow(pa.table({"a": [1, 2]})).write_parquet(out)
    before = out.read_bytes()
    with pytest.raises(relay.RelayValueError):
        relay.from_arrow(unsupported).write_parquet(out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_an_existing_file_is_replaced_atomically(tmp_path):
    out = tmp_path / "data.parquet"
    relay.write(pa.table({"x": np.arange(1000, dtype=np.int64)}), out)
    inode = os.stat(out).st_ino
    # A reader that opened the old file keeps reading it after the replacement.
    with open(out, "rb") as old:
        relay.write(pa.table({"x": np.arange(5, dtype=np.int64) * 10}), out)
        assert os.stat(out).st_ino != inode  # renamed over, never rewritten in place
        np.testing.assert_array_equal(pq.read_table(old)["x"].to_numpy(), np.arange(1000))
    np.testing.assert_array_equal(pq.read_table(out)["x"].to_numpy(), np.arange(5) * 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.parquet"]


def test_a_union_column_raises_naming_it_and_writes_nothing(tmp_path, capfd):
    union = pa.UnionArray.from_dense(
        pa.array([0, 1, 0], pa.int8()),
        pa.array([0, 0, 1], pa.int32()),
        [pa.array([1.5, 2.5]), pa.array(["a"])],
    )
    nested = pa.StructArray.from_arrays([union], names=["inner"])
    for name, column in [("u", union), ("s", nested)]:
        source = write_arrow(tmp_path / f"{name}.arrow", pa.table({"id": [1, 2, 3], name: column}))
        out = tmp_path / f"{name}.parquet"
        with pytest.raises(
            relay.RelayError, match=f'column "{name}" holds a dense_union'
        ) as raised:
            relay.scan(source).write_parquet(out)
        assert isinstance(raised.value, ValueError)
        assert not out.exists()
    assert "panicked" not in capfd.readouterr().err
