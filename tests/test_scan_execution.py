"""Scans: batches pruned by min/max are not read, explain() decides without running the plan,
evaluation errors name the file, long is_in lists, one mapping per scan of a file."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import relay_ml as relay
from conftest import mapped_ranges, write_arrow
from relay_ml import col


@pytest.fixture
def sorted_batches(tmp_path):
    """10 record batches of 1,000 rows: `id` ascending (so each batch has its own range),
    `x` float32, `city` a dictionary of four strings."""
    n = 10_000
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(rng.standard_normal(n).astype(np.float32)),
            "city": pa.array(
                np.array(["lima", "oslo", "bern", "quito"])[rng.integers(0, 4, n)]
            ).dictionary_encode(),
        }
    )
    return write_arrow(tmp_path / "sorted.arrow", table, batch_rows=1_000), table


def scan_profile(frame):
    """The SCAN row of the frame's profile, with the record batch counts."""
    keys = (
        "operator",
        "rows_in",
        "rows_out",
        "bytes_read",
        "bytes_copied",
        "seconds",
        "batches_read",
        "batches_skipped",
        "files_read",
        "files_skipped",
    )
    rows = [dict(zip(keys, row, strict=True)) for row in frame._native._profile()]
    return next(row for row in rows if row["operator"].startswith("SCAN"))


def test_batches_pruned_by_statistics_are_not_read(sorted_batches):
    path, table = sorted_batches
    # Rows 2,500..2,599 and 7,000..7,049: batches 2 and 7 only; those between are skipped.
    predicate = ((col("id") >= 2_500) & (col("id") < 2_600)) | (
        (col("id") >= 7_000) & (col("id") < 7_050)
    )
    frame = relay.scan(path).filter(predicate).select("id", "x")
    scan = scan_profile(frame)
    assert (scan["batches_read"], scan["batches_skipped"]) == (2, 4)
    assert scan["rows_in"] == 2_000 and scan["rows_out"] == 150
    ids = table["id"].to_numpy()
    mask = ((ids >= 2_500) & (ids < 2_600)) | ((ids >= 7_000) & (ids < 7_050))
    np.testing.assert_array_equal(frame["id"].to_numpy(), ids[mask])
    np.testing.assert_array_equal(frame["x"].to_numpy(), table["x"].to_numpy()[mask])
    # Nothing can match: no batch is read.
    empty = relay.scan(path).filter(col("id") > 50_000)
    assert scan_profile(empty)["batches_read"] == 0
    assert len(empty) == 0
    # No filter: every batch.
    assert scan_profile(relay.scan(path).select("x"))["batches_read"] == 10


def test_conjuncts_are_reordered_by_sampled_selectivity(sorted_batches):
    path, table = sorted_batches
    frame = relay.scan(path).filter((col("city") == "lima") & (col("x") > 0) & (col("id") < 300))
    optimized = frame.explain().split("optimized plan:")[1].split("columns:")[0]
    filters = optimized.split("filters=[")[1]
    assert filters.index('col("id")') < filters.index('col("x")') < filters.index('col("city")'), (
        optimized
    )
    mask = pc.and_(
        pc.and_(pc.equal(table["city"], "lima"), pc.greater(table["x"], 0)),
        pc.less(table["id"], 300),
    )
    assert frame["id"].to_pylist() == table.filter(mask)["id"].to_pylist()


def test_explain_does_not_run_the_plan(sorted_batches):
    path, _ = sorted_batches
    # Ids from 128 on do not fit an int8: the strict cast fails when the filter runs.
    failing = relay.scan(path).filter(col("id").cast("int8") > 1)
    with pytest.raises(relay.RelayError):
        len(failing)
    text = failing.explain()
    assert "id (int64): copy: a filter selected rows" in text
    computed = relay.scan(path).with_column("bad", col("id").cast("int8"))
    assert "bad (int8): copy: computed" in computed.explain()
    # Column.copy_reason decides from the plan too: it does not run the failing filter.
    assert failing["id"].copy_reason == "a filter selected rows: they are gathered into a copy"
    assert computed["bad"].copy_reason.startswith("computed by an expression")


@pytest.mark.parametrize(
    "derive",
    [
        lambda f: f,
        lambda f: f.select("x"),
        lambda f: f.slice(1_200, 500),
        lambda f: f.slice(100, 50).select("x", "id"),
        lambda f: f.filter(col("id") > 10),
        lambda f: f.rename({"x": "renamed"}),
        lambda f: f.take([5, 1, 3]),
        lambda f: f.slice(1_000, 1_000).view({"x": "int32"}),
        lambda f: f.slice(1_000, 1_000).with_column("u", col("id").cast("uint64")),
        lambda f: f.with_column("u", col("id").cast("uint64")),
        lambda f: f.slice(2_000, 1_000).collect(),
        lambda f: f.with_column("doubled", col("x") * 2),
        lambda f: f.with_column("doubled", col("x") * 2).collect(),
        lambda f: f.filter(col("id") > 10).take([0, 1]),
        lambda f: f.sort("x"),
        lambda f: f.top_k(3, by="x"),
        lambda f: f.unique("city"),
        lambda f: f.group_by("city").agg(col("x").sum().alias("total")),
        lambda f: f.join(
            relay.from_arrow(pa.table({"id": [1, 2, 3], "w": [0.5, 1.5, 2.5]})), on="id"
        ),
        lambda f: f.join(relay.from_arrow(pa.table({"id": [1, 2, 3]})), on="id", how="semi"),
        lambda f: f.with_column("w", np.arange(10_000, dtype=np.float64)),
        lambda f: f.slice(1_000, 1_000).with_column("w", np.arange(1_000, dtype=np.float64)),
        lambda f: f.slice(1_000, 1_000).with_column("w", np.arange(2_000, dtype=np.int64)[::2]),
        lambda f: relay.concat([f.slice(0, 10), f.slice(10, 10)]),
        lambda f: relay.concat([f.slice(0, 10)]).slice(0, 5),
        lambda f: relay.from_arrow(pa.table({"a": np.arange(5.0)})),
    ],
)
def test_explain_agrees_with_what_exporting_does(sorted_batches, derive):
    """explain(), Column.copy_reason and exports with zero_copy=True give one verdict per
    column, whatever the plan."""
    path, _ = sorted_batches
    frame = derive(relay.scan(path))
    text = frame.explain()
    for name in frame.columns:
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{name} ("))
        column = frame[name]
        if column.is_zero_copy:
            assert "view of" in line, (line, column.copy_reason)
            column.to_numpy(zero_copy=True)
        else:
            assert ": copy: " in line, (line, column.copy_reason)
            assert line.split(": copy: ", 1)[1] == column.copy_reason
            with pytest.raises(relay.ZeroCopyError) as refused:
                column.to_numpy(zero_copy=True)
            assert str(refused.value).endswith(column.copy_reason)


def test_explain_prints_the_values_of_is_in(sorted_batches):
    path, _ = sorted_batches
    text = relay.scan(path).filter(col("city").is_in(["oslo", "rome"])).explain()
    assert 'col("city").is_in(["oslo", "rome"])' in text
    long = relay.scan(path).filter(col("id").is_in(list(range(100, 200)))).explain()
    assert 'col("id").is_in([100, 101, 102, 103, 104, 105, 106, 107, 108, 109, … 90 more])' in long


def test_evaluation_errors_name_the_file(sorted_batches):
    path, _ = sorted_batches
    with pytest.raises(relay.RelayError) as filtering:
        len(relay.scan(path).filter(col("id").cast("int8") > 1))
    message = str(filtering.value)
    assert str(path) in message and "filter evaluation failed" in message and "int8" in message
    assert isinstance(filtering.value, ValueError)
    with pytest.raises(relay.RelayError) as computing:
        relay.scan(path).with_column("bad", col("id").cast("int8"))["bad"].to_numpy()
    assert str(path) in str(computing.value)


@pytest.mark.parametrize("count", [3, 200])
def test_is_in_with_long_lists_matches_pyarrow(sorted_batches, count):
    path, table = sorted_batches
    rng = np.random.default_rng(count)
    ids = rng.integers(-100, 12_000, count).tolist()
    frame = relay.scan(path).filter(col("id").is_in(ids))
    expected = table.filter(pc.is_in(table["id"], pa.array(ids)))
    assert frame["id"].to_pylist() == expected["id"].to_pylist()
    cities = ["lima", "bern"] + [f"nowhere{i}" for i in range(count)]
    by_city = relay.scan(path).filter(col("city").is_in(cities))
    assert (
        by_city["id"].to_pylist()
        == table.filter(pc.is_in(table["city"], pa.array(cities)))["id"].to_pylist()
    )
    xs = [*table["x"].to_numpy()[:count].tolist(), 0.0, float("nan")]
    by_x = relay.scan(path).filter(col("x").is_in(xs))
    assert len(by_x) == count


@pytest.fixture
def one_batch(tmp_path):
    """A single-batch file (its columns export as views), written a minute ago."""
    table = pa.table(
        {"x": pa.array(np.arange(5_000, dtype=np.float32)), "id": pa.array(np.arange(5_000))}
    )
    return settled(write_arrow(tmp_path / "one.arrow", table)), table


def settled(path):
    """`path` with its modification time a minute back, as for a file written long before."""
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def test_each_scan_of_an_unchanged_file_maps_it_anew(one_batch, tmp_path):
    path, table = one_batch
    first = relay.scan(path)
    second = relay.scan(path)
    first_view, second_view = first["x"].to_numpy(), second["x"].to_numpy()
    assert first_view.ctypes.data != second_view.ctypes.data
    np.testing.assert_array_equal(first_view, second_view)
    assert len(mapped_ranges(path)) == 2
    # Frames made from one scan share its mapping.
    narrowed = first.select("x", "id")
    assert narrowed["x"].to_numpy().ctypes.data == first_view.ctypes.data
    # A file replaced by rename is mapped anew, and each frame keeps reading its own file.
    replacement = write_arrow(tmp_path / "next.arrow", table.slice(0, 3_000))
    os.replace(settled(replacement), path)
    third = relay.scan(path)
    assert len(third) == 3_000 and len(first) == 5_000
    assert len(mapped_ranges(path)) == 1  # the first mappings are of the old, unlinked inode
    del first, second, narrowed, first_view, second_view


def test_a_forked_child_maps_the_file_itself(one_batch):
    path, _ = one_batch
    frame = relay.scan(path)
    parent_address = frame["x"].to_numpy().ctypes.data
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any cleanup of the parent's
        try:
            child = relay.scan(path)
            address = child["x"].to_numpy().ctypes.data
            ok = address != parent_address and float(child["x"].to_numpy().sum()) == float(
                frame["x"].to_numpy().sum()
            )
            os.write(write_end, b"ok" if ok else b"shared")
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 16)
    os.waitpid(pid, 0)
    os.close(read_end)
    assert answer == b"ok"
    assert float(frame["x"].to_numpy().sum()) == float(relay.scan(path)["x"].to_numpy().sum())


def test_relay_inspect_gives_the_reasons_columns_give(sorted_batches, tmp_path):
    from relay_ml._relay import inspect_file

    path, table = sorted_batches
    single = write_arrow(tmp_path / "single.arrow", table)
    for file in (path, single):
        frame = relay.scan(file)
        for column in inspect_file(str(file))["columns"]:
            assert column["reason"] == frame[column["name"]].copy_reason
            assert column["zero_copy"] is frame[column["name"]].is_zero_copy
