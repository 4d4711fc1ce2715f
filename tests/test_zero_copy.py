"""Proofs that fixed-width single-batch columns reach NumPy as views of the mapped file."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import address_in_file_mapping, write_arrow


def test_numpy_view_points_into_the_mapping(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path)
    for name in ["id", "x", "y", "label"]:
        column = frame[name]
        assert column.is_zero_copy and column.copy_reason is None
        array = column.to_numpy(zero_copy=True)
        assert address_in_file_mapping(array.ctypes.data, path), name
        assert not array.flags.writeable
        np.testing.assert_array_equal(array, table[name].to_numpy())


def test_fixed_size_list_is_a_2d_view(numeric_file):
    path, table = numeric_file
    emb = relay.scan(path)["emb"].to_numpy(zero_copy=True)
    assert emb.shape == (1000, 8) and emb.dtype == np.float32 and emb.flags.c_contiguous
    assert address_in_file_mapping(emb.ctypes.data, path)
    np.testing.assert_array_equal(emb, np.stack(table["emb"].to_numpy(zero_copy_only=False)))


def test_buffer_protocol_and_array_protocol_share_the_mapping(numeric_file):
    path, _ = numeric_file
    column = relay.scan(path)["x"]
    view = memoryview(column)
    assert view.readonly and view.format == "f" and view.shape == (1000,)
    assert address_in_file_mapping(np.frombuffer(view, dtype=np.float32).ctypes.data, path)
    as_array = np.asarray(column)
    assert address_in_file_mapping(as_array.ctypes.data, path)
    assert np.asarray(column, copy=False).ctypes.data == as_array.ctypes.data
    with pytest.raises(ValueError, match="WRITEABLE"):
        np.asarray(column).setflags(write=True)


def test_writable_buffer_request_is_refused(numeric_file):
    path, _ = numeric_file
    column = relay.scan(path)["x"]
    view = memoryview(column)
    with pytest.raises(TypeError):
        view[0] = 1.0
    # Ask for PyBUF_WRITABLE directly through the C API.
    import ctypes

    get_buffer = ctypes.pythonapi.PyObject_GetBuffer
    get_buffer.argtypes = [ctypes.py_object, ctypes.c_void_p, ctypes.c_int]
    raw = ctypes.create_string_buffer(256)  # room for a Py_buffer
    with pytest.raises(BufferError, match="read-only"):
        get_buffer(column, raw, 0x0001)  # PyBUF_WRITABLE


def test_slices_stay_views(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path)
    part = frame.slice(100, 50)["x"].to_numpy(zero_copy=True)
    assert address_in_file_mapping(part.ctypes.data, path)
    np.testing.assert_array_equal(part, table["x"].to_numpy()[100:150])
    np.testing.assert_array_equal(
        frame["x"][10:20].to_numpy(zero_copy=True), table["x"].to_numpy()[10:20]
    )


def test_export_outlives_frame_and_column(numeric_file):
    path, table = numeric_file
    array = relay.scan(path)["y"].to_numpy()
    gc.collect()
    assert address_in_file_mapping(array.ctypes.data, path)
    np.testing.assert_array_equal(array, table["y"].to_numpy())
    view = memoryview(relay.scan(path)["label"])
    gc.collect()
    assert view.tolist() == table["label"].to_pylist()


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: pa.table({"c": pa.array([1.0, None, 3.0], pa.float32())}), "null"),
        (lambda: pa.table({"c": pa.array([True, False, True])}), "bits"),
        (lambda: pa.table({"c": pa.array(["a", "b", "c"])}), "fixed-width"),
        (lambda: pa.table({"c": pa.array(["a", "b", "a"]).dictionary_encode()}), "dictionary"),
    ],
)
def test_copies_are_reported_and_refused_on_request(tmp_path, make, reason):
    path = write_arrow(tmp_path / "c.arrow", make())
    column = relay.scan(path)["c"]
    assert not column.is_zero_copy and reason in column.copy_reason
    with pytest.raises(relay.ZeroCopyError, match=reason) as info:
        column.to_numpy(zero_copy=True)
    assert isinstance(info.value, BufferError) and str(path) in str(info.value)
    with pytest.raises(ValueError):
        np.asarray(column, copy=False)
    column.to_numpy()  # without the requirement it copies


def test_a_same_width_integer_cast_whose_values_fit_is_a_view(tmp_path):
    # Values that fit the target type have the same bits in both: the cast converts nothing.
    table = pa.table(
        {
            "age": pa.array(np.arange(1000, dtype=np.int32) % 100),
            "count": pa.array(np.arange(1000, dtype=np.uint64) * 7),
            "delta": pa.array(np.arange(1000, dtype=np.int16) - 10),
        }
    )
    path = write_arrow(tmp_path / "ints.arrow", table)
    frame = relay.scan(path).cast({"age": "uint32", "count": "int64"})
    assert frame.schema["age"] == "uint32" and frame.schema["count"] == "int64"
    for name, dtype in [("age", np.uint32), ("count", np.int64)]:
        column = frame[name]
        assert column.copy_reason is None
        array = column.to_numpy(zero_copy=True)
        assert array.dtype == dtype and address_in_file_mapping(array.ctypes.data, path)
        np.testing.assert_array_equal(array, table[name].to_numpy().astype(dtype))
    # A value that does not fit still fails the strict cast.
    with pytest.raises(relay.RelayError, match="-10"):
        relay.scan(path).cast({"delta": "uint16"})["delta"].to_numpy()
    # Rows that do not fit, filtered out first, do not count.
    kept = relay.scan(path).filter(relay.col("delta") >= 0).cast({"delta": "uint16"})
    np.testing.assert_array_equal(kept["delta"].to_numpy(), np.arange(990, dtype=np.uint16))
    # A cast to another width or kind converts, into new memory.
    widened = relay.scan(path).cast({"age": "int64"})["age"]
    assert widened.copy_reason is not None
    np.testing.assert_array_equal(widened.to_numpy(), table["age"].to_numpy().astype(np.int64))


def test_several_record_batches_copy_once(tmp_path):
    table = pa.table({"c": np.arange(100, dtype=np.int64)})
    path = write_arrow(tmp_path / "multi.arrow", table, batch_rows=30)
    column = relay.scan(path)["c"]
    assert "4 record batches" in column.copy_reason
    array = column.to_numpy()
    assert not address_in_file_mapping(array.ctypes.data, path)
    np.testing.assert_array_equal(array, np.arange(100))
    # A slice inside one batch is a view again.
    inside = relay.scan(path).slice(30, 30)["c"]
    assert inside.is_zero_copy
    np.testing.assert_array_equal(inside.to_numpy(zero_copy=True), np.arange(30, 60))


def test_codes_of_a_dictionary_column_are_a_view(tmp_path):
    table = pa.table({"city": pa.array(["oslo", "rome", "oslo", "lima"] * 10).dictionary_encode()})
    path = write_arrow(tmp_path / "dict.arrow", table)
    column = relay.scan(path)["city"]
    codes = column.codes()
    assert address_in_file_mapping(codes.ctypes.data, path)
    np.testing.assert_array_equal(codes, table["city"].chunk(0).indices.to_numpy())
    assert column.to_numpy().tolist() == table["city"].to_pylist()


def test_arrow_export_shares_the_mapping(numeric_file):
    path, table = numeric_file
    exported = relay.scan(path).to_arrow()
    assert exported.equals(table)
    data_buffer = exported["x"].chunk(0).buffers()[1]
    assert address_in_file_mapping(data_buffer.address, path)


def _run_isolated(code: str) -> str:
    """Run `code` in a fresh interpreter, so RssAnon is not disturbed by this test session."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_write_through_an_export_is_not_seen_by_other_scans(numeric_file):
    """torch ignores DLPack's read-only flag: a write through a tensor lands in the mapping of
    the scan it came from, never in the file nor in any other scan (earlier or later)."""
    import torch

    path, table = numeric_file
    # A file last written a minute ago, as most files are when they are read.
    past = time.time() - 60
    os.utime(path, (past, past))
    expected = table["x"].to_numpy()
    file_bytes = path.read_bytes()
    earlier = relay.scan(path)
    writer = relay.scan(path)
    tensor = writer["x"].to_tensor()
    assert address_in_file_mapping(tensor.data_ptr(), path), "the tensor is a view"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch may warn that the memory is read-only
        tensor[0] = 42.0
        torch.from_dlpack(writer["id"])[1] = -7
    assert float(writer["x"].to_numpy()[0]) == 42.0, "the writer's own scan sees its write"
    for frame in (earlier, relay.scan(path)):
        assert frame["x"].to_numpy()[0] == expected[0]
        assert frame["id"].to_numpy()[1] == 1
        assert len(frame.filter(relay.col("x") == 42.0)) == 0
        assert len(frame.filter(relay.col("id") == -7)) == 0
    assert path.read_bytes() == file_bytes


def test_exporting_a_1gb_column_costs_no_anonymous_memory(tmp_path):
    path = tmp_path / "big.arrow"
    rows = 1 << 28  # 268 M float32 = 1 GiB
    # Written in a child so the writer's memory is gone before measuring.
    _run_isolated(
        f"""
        import numpy as np, pyarrow as pa
        schema = pa.schema([("x", pa.float32())])
        values = np.arange({rows}, dtype=np.float32)
        with pa.ipc.new_file({str(path)!r}, schema) as w:
            w.write_table(pa.table({{"x": values}}, schema=schema))
        """
    )
    out = _run_isolated(
        f"""
        import sys; sys.path.insert(0, {str(__import__("pathlib").Path(__file__).parent)!r})
        import numpy as np, torch, relay_ml as relay
        from conftest import rss_anon_bytes, address_in_file_mapping
        before = rss_anon_bytes()
        column = relay.scan({str(path)!r})["x"]
        array = column.to_numpy(zero_copy=True)
        tensor = column.to_tensor()
        total = float(array.sum(dtype=np.float64)) + float(tensor[::4096].sum())  # touch every page
        grown = rss_anon_bytes() - before
        assert array.nbytes == {rows * 4}
        assert address_in_file_mapping(array.ctypes.data, {str(path)!r})
        assert tensor.data_ptr() == array.ctypes.data
        print(grown)
        """
    )
    grown = int(out.strip().splitlines()[-1])
    assert grown < 16 * 1024 * 1024, (
        f"RssAnon grew by {grown / 2**20:.1f} MiB exporting a 1 GiB column"
    )
