"""Frame.write_ipc and relay.write: round trips against pyarrow, alignment, atomic replacement."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import many_types_table, write_arrow
from relay_ml._relay import inspect_file


def alignments(path: Path) -> dict[str, int | None]:
    return {c["name"]: c["alignment"] for c in inspect_file(str(path))["columns"]}


@pytest.mark.parametrize("batch_rows", [None, 50])
def test_round_trip_of_many_types_with_nulls(tmp_path, batch_rows):
    table = many_types_table()
    source = write_arrow(tmp_path / "in.arrow", table, batch_rows=batch_rows)
    out = tmp_path / "out.arrow"
    summary = relay.scan(source).write_ipc(out)
    assert summary["rows"] == table.num_rows and summary["batches"] == 1
    assert summary["bytes"] == os.path.getsize(out)
    written = pa.ipc.open_file(out)
    assert written.num_record_batches == 1
    assert written.read_all().equals(pa.ipc.open_file(source).read_all().combine_chunks())
    # relay reads back what it wrote.
    assert relay.scan(out).to_arrow().equals(written.read_all())


def test_buffers_are_64_byte_aligned(tmp_path):
    table = many_types_table(1001)
    source = write_arrow(tmp_path / "in.arrow", table)
    assert min(a for a in alignments(source).values() if a) < 64  # pyarrow aligns to 8
    out = tmp_path / "out.arrow"
    relay.scan(source).write_ipc(out, batch_size=300)
    found = alignments(out)
    assert set(found) == set(table.column_names)
    assert all(a == 64 for a in found.values()), found
    report = inspect_file(str(out))
    assert [b["rows"] for b in report["batches"]] == [300, 300, 300, 101]
    assert all(b["offset"] % 64 == 0 for b in report["batches"])
    # One batch (the default) of columns without nulls: every column exports as a view.
    dense = tmp_path / "dense.arrow"
    relay.write(pa.table({"i64": np.arange(1001), "f32": np.ones(1001, np.float32)}), dense)
    assert all(c["zero_copy"] and c["alignment"] == 64 for c in inspect_file(str(dense))["columns"])


def test_batch_size_splits_across_input_batches(tmp_path):
    table = many_types_table(100)
    source = write_arrow(tmp_path / "in.arrow", table, batch_rows=7)
    out = tmp_path / "out.arrow"
    summary = relay.scan(source).write_ipc(out, batch_size=30)
    assert summary["batches"] == 4
    reader = pa.ipc.open_file(out)
    assert [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)] == [
        30,
        30,
        30,
        10,
    ]
    assert reader.read_all().to_pydict() == table.to_pydict()


def test_filtered_selected_and_computed_frames_write_their_rows(tmp_path, numeric_file):
    path, table = numeric_file
    frame = (
        relay.scan(path)
        .filter(relay.col("label") > 6)
        .select(["id", "x"])
        .with_column("twice", relay.col("id") * 2)
    )
    out = tmp_path / "filtered.arrow"
    relay.write(frame, out)
    mask = np.asarray(table["label"]) > 6
    written = pa.ipc.open_file(out).read_all()
    np.testing.assert_array_equal(written["id"].to_numpy(), np.asarray(table["id"])[mask])
    np.testing.assert_array_equal(written["x"].to_numpy(), np.asarray(table["x"])[mask])
    np.testing.assert_array_equal(written["twice"].to_numpy(), np.asarray(table["id"])[mask] * 2)


def test_in_memory_and_empty_frames(tmp_path):
    table = pa.table({"a": pa.array([1, None, 3], pa.int64()), "b": ["x", "y", None]})
    out = tmp_path / "memory.feather"
    relay.write(table, out)
    assert pa.ipc.open_file(out).read_all().equals(table)
    empty = tmp_path / "empty.ipc"
    relay.from_arrow(table).filter(relay.col("a") > 100).write_ipc(empty)
    read = pa.ipc.open_file(empty).read_all()
    assert read.num_rows == 0 and read.schema == table.schema
    assert relay.scan(empty).num_rows == 0


def test_replacing_a_file_keeps_earlier_readers_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "data.arrow"
    relay.write(pa.table({"x": np.arange(1000, dtype=np.int64)}), path)
    old = relay.scan(path)
    old_values = old["x"].to_numpy()
    # Overwrite the file that `old` maps with other data: a rename, never a write in place.
    relay.scan(path).with_column("x", relay.col("x") + 1).write_ipc(path)
    np.testing.assert_array_equal(old["x"].to_numpy(), np.arange(1000))
    np.testing.assert_array_equal(old_values, np.arange(1000))
    np.testing.assert_array_equal(relay.scan(path)["x"].to_numpy(), np.arange(1, 1001))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.arrow"]


def test_unknown_suffix_and_bad_options_raise(tmp_path):
    frame = relay.from_arrow(pa.table({"a": [1]}))
    with pytest.raises(relay.RelayValueError, match=r"'\.csv'"):
        relay.write(frame, tmp_path / "out.csv")
    with pytest.raises(relay.RelayValueError, match="no suffix"):
        relay.write(frame, tmp_path / "out")
    with pytest.raises(relay.RelayValueError, match="compression"):
        frame.write_ipc(tmp_path / "out.arrow", compression="zstd")
    with pytest.raises(relay.RelayValueError, match="compression"):
        frame.write_ipc(tmp_path / "out.arrow", compression="gzip")
    with pytest.raises(relay.RelayValueError, match="batch_size"):
        frame.write_ipc(tmp_path / "out.arrow", batch_size=0)
    with pytest.raises(relay.RelayTypeError):
        relay.write(42, tmp_path / "out.arrow")
    with pytest.raises(relay.RelayFileNotFoundError):
        frame.write_ipc(tmp_path / "missing-folder" / "out.arrow")
    with pytest.raises(relay.NotArrowFileError):
        frame.write_ipc(tmp_path)
    assert list(tmp_path.iterdir()) == []
