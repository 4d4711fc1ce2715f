"""Lazy plans: what stays a view of the mapped file, explain(), profile(), type checking."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import address_in_file_mapping, write_arrow
from relay_ml import col


@pytest.mark.parametrize(
    "derive",
    [
        lambda f: f.select("x", "id"),
        lambda f: f.select(col("x")),
        lambda f: f.rename({"x": "renamed"}),
        lambda f: f.with_column("doubled", col("y") * 2),
        lambda f: f.drop("emb"),
        lambda f: f.head(500),
        lambda f: f.slice(100, 200).select("x"),
    ],
)
def test_view_preserving_operations_keep_columns_as_views(numeric_file, derive):
    path, table = numeric_file
    frame = derive(relay.scan(path))
    name = "renamed" if "renamed" in frame.columns else "x"
    column = frame[name]
    assert column.is_zero_copy, column.copy_reason
    array = column.to_numpy(zero_copy=True)
    assert address_in_file_mapping(array.ctypes.data, path)
    start = 100 if len(frame) == 200 else 0
    np.testing.assert_array_equal(array, table["x"].to_numpy()[start : start + len(array)])


def test_filtered_columns_are_gathered_copies_and_refuse_zero_copy(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path).filter(col("label") == 3)
    column = frame["x"]
    assert not column.is_zero_copy and "filter" in column.copy_reason
    with pytest.raises(relay.ZeroCopyError, match="filter"):
        column.to_numpy(zero_copy=True)
    expected = table["x"].to_numpy()[table["label"].to_numpy() == 3]
    np.testing.assert_array_equal(column.to_numpy(), expected)


def test_computed_columns_are_copies(numeric_file):
    path, table = numeric_file
    column = relay.scan(path).with_column("z", col("x") + 1)["z"]
    assert not column.is_zero_copy
    np.testing.assert_allclose(column.to_numpy(), table["x"].to_numpy() + 1)


def test_explain_shows_plans_and_view_or_copy_per_column(numeric_file):
    path, _ = numeric_file
    text = (
        relay.scan(path).filter(col("label") > 4).select("x", (col("y") * 2).alias("y2")).explain()
    )
    assert "logical plan:" in text and "optimized plan:" in text
    assert "FILTER" in text and "SCAN" in text
    assert "x (float32): copy: a filter selected rows" in text
    assert "y2 (float64): copy" in text
    plain = relay.scan(path).select("x").explain()
    assert "x (float32): view of the mapped file" in plain


def test_type_errors_name_the_column_and_both_types(tmp_path):
    table = pa.table(
        {"city": pa.array(["a", "b"]).dictionary_encode(), "age": pa.array([1, 2], pa.int32())}
    )
    frame = relay.scan(write_arrow(tmp_path / "t.arrow", table))
    with pytest.raises(TypeError) as info:
        frame.filter(col("city") > 3)
    message = str(info.value)
    assert isinstance(info.value, relay.RelayError)
    assert 'col("city")' in message and "dictionary<values=string" in message and "int64" in message
    with pytest.raises(relay.RelayTypeError, match="boolean"):
        frame.filter(col("age") + 1)
    with pytest.raises(relay.ColumnNotFoundError, match='"age"'):
        frame.filter(col("nope") > 1)


def test_filter_and_multi_column_numpy_orders(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path).filter((col("label") >= 2) & (col("x") > 0)).select("x", "y")
    mask = (table["label"].to_numpy() >= 2) & (table["x"].to_numpy() > 0)
    expected = np.column_stack(
        [table["x"].to_numpy()[mask], table["y"].to_numpy()[mask].astype(np.float64)]
    )
    c_order = frame.to_numpy()
    f_order = frame.to_numpy(order="F")
    assert c_order.flags.c_contiguous and f_order.flags.f_contiguous
    np.testing.assert_array_equal(c_order, expected)
    np.testing.assert_array_equal(f_order, expected)
    same_dtype = relay.scan(path).filter(col("label") == 1).select("x", (col("x") * 2).alias("x2"))
    assert same_dtype.to_numpy().dtype == np.float32


def test_profile_reports_each_operator(numeric_file):
    path, _ = numeric_file
    profile = relay.scan(path).filter(col("label") == 0).select("x").profile()
    operators = [entry["operator"].split()[0] for entry in profile]
    assert "SCAN" in operators
    scan = next(e for e in profile if e["operator"].startswith("SCAN"))
    assert scan["rows_in"] == 1000
    assert profile[-1]["rows_out"] == int(
        np.sum(pa.ipc.open_file(path).read_all()["label"].to_numpy() == 0)
    )
    assert all(e["seconds"] >= 0 for e in profile)


def test_len_of_a_filtered_frame_runs_the_filter(numeric_file):
    path, table = numeric_file
    assert len(relay.scan(path).filter(col("label") < 5)) == int(
        np.sum(table["label"].to_numpy() < 5)
    )
    assert len(relay.scan(path).filter(col("label") < 5).head(7)) == 7
