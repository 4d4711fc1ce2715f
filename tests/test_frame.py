"""The Frame API: schema, narrowing, exports, errors, pickling, display."""

from __future__ import annotations

import os
import pickle

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import arrow_type_name, write_arrow


def test_scan_reads_shape_and_schema(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path)
    assert len(frame) == frame.num_rows == 1000
    assert frame.columns == ["id", "x", "y", "label", "emb"]
    assert frame.schema == {
        name: arrow_type_name(table.schema.field(name).type) for name in table.column_names
    }
    assert frame.shape == (1000, 5)
    assert "x" in frame and "nope" not in frame
    assert frame.path == str(path)


def test_scan_accepts_pathlike_and_str(numeric_file):
    path, _ = numeric_file
    assert len(relay.scan(str(path))) == len(relay.scan(path)) == 1000


def test_select_head_slice(numeric_file):
    path, _table = numeric_file
    frame = relay.scan(path)
    picked = frame.select(["label", "id"])
    assert picked.columns == ["label", "id"]
    assert frame[["y", "x"]].columns == ["y", "x"]
    assert len(frame.head()) == 5 and len(frame.head(2000)) == 1000
    part = frame.slice(990, 100)
    assert len(part) == 10
    assert part["id"].to_numpy().tolist() == list(range(990, 1000))
    assert len(frame.slice(5000)) == 0
    assert frame.slice(5000)["x"].to_numpy().shape == (0,)
    np.testing.assert_array_equal(frame.slice(10, 5).slice(2, 2)["id"].to_numpy(), [12, 13])


def test_unknown_column_is_a_key_error_listing_the_columns(numeric_file):
    path, _ = numeric_file
    frame = relay.scan(path)
    with pytest.raises(KeyError) as info:
        frame["age"]
    assert isinstance(info.value, relay.ColumnNotFoundError)
    message = str(info.value)
    assert "'age'" in message or '"age"' in message
    assert '"label"' in message and str(path) in message
    with pytest.raises(relay.ColumnNotFoundError, match='"emb"'):
        frame.select(["id"])["emb"]
    with pytest.raises(relay.ColumnNotFoundError):
        frame.select(["id", "nope"])


@pytest.mark.parametrize(
    "call",
    [
        lambda f: relay.scan(42),
        lambda f: f[3],
        lambda f: f.select([1, 2]),
        lambda f: f.slice("a"),
        lambda f: f.slice(1, -3),
        lambda f: f.head(2.0),
        lambda f: f.tail("2"),
        lambda f: f["x"].slice(1.5),
        lambda f: f["x"][::2],
    ],
)
def test_wrong_arguments_raise_relay_errors(numeric_file, call):
    path, _ = numeric_file
    with pytest.raises(relay.RelayError) as info:
        call(relay.scan(path))
    assert isinstance(info.value, (TypeError, ValueError))


def test_slices_count_negative_offsets_from_the_end_like_python(numeric_file):
    path, _ = numeric_file
    frame = relay.scan(path)
    x = frame["x"].to_numpy()
    n = len(x)
    for offset in (-n - 5, -n, -7, -1, 0, 3, n, n + 2):
        for length in (None, 0, 4, n + 10):
            stop = None if length is None else (offset % n if -n <= offset < 0 else offset) + length
            want = x[offset:stop] if -n <= offset else x[0:length]
            np.testing.assert_array_equal(frame.slice(offset, length)["x"].to_numpy(), want)
            np.testing.assert_array_equal(frame["x"].slice(offset, length).to_numpy(), want)
    for k in (-n - 1, -3, 0, 2, n + 1):
        np.testing.assert_array_equal(frame.head(k)["x"].to_numpy(), x[:k] if k > -n else x[:0])
        np.testing.assert_array_equal(frame.tail(k)["x"].to_numpy(), x[-k:] if k else x[:0])
    filtered = frame.filter(relay.col("x") > x[n // 2])
    np.testing.assert_array_equal(filtered.tail(2)["x"].to_numpy(), x[x > x[n // 2]][-2:])


def test_selecting_a_column_twice_is_refused(numeric_file):
    path, _ = numeric_file
    with pytest.raises(relay.RelayError, match="twice"):
        relay.scan(path).select(["x", "x"])


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        relay.scan(tmp_path / "missing.arrow")
    assert isinstance(info.value, relay.RelayError) and "missing.arrow" in str(info.value)
    with pytest.raises(relay.NotArrowFileError, match="directory"):
        relay.scan(tmp_path)


def test_to_numpy_2d_of_numeric_columns(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path).select(["id", "label", "x"])
    out = frame.to_numpy()
    assert out.shape == (1000, 3) and out.dtype == np.float64
    expected = np.column_stack(
        [table[c].to_numpy().astype(np.float64) for c in ["id", "label", "x"]]
    )
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(relay.RelayTypeError, match="emb"):
        relay.scan(path).to_numpy()


def test_to_dict(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path).select(["id", "x"]).head(3)
    columns = frame.to_dict()
    assert list(columns) == ["id", "x"] and isinstance(columns["id"], relay.Column)
    assert frame.to_dict(as_series=False) == {"id": [0, 1, 2], "x": table["x"].to_pylist()[:3]}


def test_arrow_pycapsule_interop(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path)
    assert pa.table(frame).equals(table)
    assert frame.to_arrow().equals(table)
    assert pa.schema(frame) == table.schema
    assert pl.DataFrame(frame.select(["id", "x"])).equals(pl.from_arrow(table.select(["id", "x"])))
    assert frame["x"].to_arrow().equals(table["x"])
    assert pa.array(frame["label"]).equals(table["label"].chunk(0))


def test_pickle_travels_as_path_and_plan(numeric_file):
    path, _ = numeric_file
    frame = relay.scan(path).select(["x", "id"]).slice(10, 20)
    payload = pickle.dumps(frame)
    assert len(payload) < 500  # no column data inside
    again = pickle.loads(payload)
    assert again.columns == ["x", "id"] and len(again) == 20
    np.testing.assert_array_equal(again["id"].to_numpy(), np.arange(10, 30))


def test_repr_looks_like_a_table(numeric_file):
    path, _ = numeric_file
    text = repr(relay.scan(path).select(["id", "label"]))
    assert text.startswith("shape: (1_000, 2)")
    assert "│ id" in text and "i64" in text and "…" in text
    shown = repr(relay.scan(path)["x"])
    assert "Column('x', dtype=float32, len=1000)" in shown
    # float32 values by their own shortest repr, not float64 digits.
    assert str(np.float32(relay.scan(path)["x"].to_numpy()[0])) in shown


class _CountingNative:
    """A frame's native side that records every call but those reading its schema: the calls
    through which the frame's plan can run."""

    _METADATA = frozenset({"schema", "columns", "origin", "path", "_slices_rerun"})

    def __init__(self, native: object) -> None:
        self.native = native
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        if name not in self._METADATA:
            self.calls.append(name)
        return getattr(self.native, name)


@pytest.mark.parametrize(
    "derive",
    [
        lambda f: f.select("label", "id").unique(),
        lambda f: f.filter(relay.col("id") % 3 == 0),
        lambda f: f.sort("x"),
        lambda f: f.with_column("twice", relay.col("x") * 2),
        lambda f: f,
        lambda f: f.head(6),
    ],
)
def test_printing_a_frame_runs_its_plan_once(numeric_file, derive):
    path, _ = numeric_file
    frame = derive(relay.scan(path))
    counting = _CountingNative(frame._native)
    text = repr(relay.Frame._wrap(counting))  # type: ignore[arg-type]
    assert len(counting.calls) == 1, counting.calls
    assert text == repr(frame)
    expected = pl.from_arrow(frame.to_arrow())
    assert text.startswith(f"shape: ({len(expected):_}, {len(frame.columns)})")
    body = [line for line in text.splitlines() if line.startswith("│")][3:]
    rows = expected.rows() if len(expected) <= 8 else [*expected.head(4).rows(), None]
    rows += [] if len(expected) <= 8 else expected.tail(4).rows()
    assert len(body) == len(rows)
    for line, row in zip(body, rows, strict=True):
        cells = [cell.strip() for cell in line.strip("│").split("┆")]
        if row is None:
            assert set(cells) == {"…"}
        else:  # the first column holds integers in every frame here
            assert cells[0] == str(row[0])


def test_a_wide_frame_prints_within_100_characters(tmp_path):
    rng = np.random.default_rng(5)
    table = pa.table(
        {f"feature_{i}": rng.standard_normal(20).astype(np.float64) for i in range(30)}
    )
    frame = relay.scan(write_arrow(tmp_path / "wide.arrow", table))
    text = repr(frame)
    lines = text.splitlines()
    assert lines[0] == "shape: (20, 30)"
    assert max(len(line) for line in lines) <= 100, text
    header = [cell.strip() for cell in lines[2].strip("│").split("┆")]
    # The first and the last columns, the ones left out stood for by `…`.
    assert header[0] == "feature_0" and header[-1] == "feature_29" and "…" in header, header
    assert 3 <= len(header) <= 9
    left_out = header.index("…")
    assert header[:left_out] == [f"feature_{i}" for i in range(left_out)]
    # Frames that fit print every column.
    narrow = relay.scan(write_arrow(tmp_path / "narrow.arrow", table.select([0, 1, 2])))
    header = [cell.strip() for cell in repr(narrow).splitlines()[2].strip("│").split("┆")]
    assert header == ["feature_0", "feature_1", "feature_2"]


def test_float32_values_print_as_float32(tmp_path):
    table = pa.table(
        {
            "f32": pa.array([0.1, 1 / 3, None], pa.float32()),
            "f64": pa.array([0.1, float(np.float32(0.1)), 2.5]),
            "f16": pa.array(np.array([0.1, 1, 2], np.float16)),
            "emb": pa.FixedSizeListArray.from_arrays(
                pa.array([0.1, 0.2, 0.3, 0.7, 1.5, 2.0], pa.float32()), 2
            ),
        }
    )
    text = repr(relay.scan(write_arrow(tmp_path / "floats.arrow", table)))
    rows = [
        [cell.strip() for cell in line.strip("│").split("┆")]
        for line in text.splitlines()
        if line.startswith("│")
    ][3:]
    assert [row[0] for row in rows] == ["0.1", "0.33333334", "null"]
    # float64 keeps its own digits: float32's 0.1 read as a float64 is not 0.1.
    assert [row[1] for row in rows] == ["0.1", "0.10000000149011612", "2.5"]
    assert [row[2] for row in rows] == ["0.1", "1.0", "2.0"]
    assert [row[3] for row in rows] == ["[0.1, 0.2]", "[0.3, 0.7]", "[1.5, 2.0]"]


def test_to_numpy_of_a_frame_with_strings_is_an_object_array(tmp_path):
    table = pa.table(
        {
            "name": ["ann", "bob", None, "dan"],
            "age": pa.array([25, 41, 35, 52], pa.int32()),
            "salary": [50_000.0, 72_500.5, 61_000.0, 90_000.0],
        }
    )
    df = relay.scan(write_arrow(tmp_path / "people.arrow", table))
    out = df.filter(df["age"] > 30).select(["name", "salary"]).to_numpy()
    expected = pl.from_arrow(table).filter(pl.col("age") > 30).select("name", "salary").to_numpy()
    assert out.dtype == expected.dtype == np.dtype(object)
    assert out.shape == (3, 2)
    assert (
        out.tolist()
        == expected.tolist()
        == [["bob", 72_500.5], [None, 61_000.0], ["dan", 90_000.0]]
    )
    assert df.to_numpy(order="F").flags.f_contiguous
    assert df.to_numpy()[:, 1].tolist() == [25, 41, 35, 52]
    # Numeric frames keep their dtype.
    assert df.select("age", "salary").to_numpy().dtype == np.float64
    assert df.select("age").to_numpy().dtype == np.int32


def test_frame_cannot_be_constructed_directly():
    with pytest.raises(TypeError):
        relay.Frame()


def test_file_truncated_in_place_is_refused_not_a_crash(tmp_path):
    table = pa.table({"x": np.arange(100_000, dtype=np.float64)})
    path = write_arrow(tmp_path / "shrinks.arrow", table)
    frame = relay.scan(path)
    os.truncate(path, 1000)
    with pytest.raises(relay.FileChangedError, match="changed size"):
        frame["x"].to_numpy()


def test_a_file_of_20000_columns_reads_whole_and_by_column(tmp_path):
    # Each column is decoded from its own part of the record batch header: reading them all
    # is linear in the number of columns.
    rng = np.random.default_rng(3)
    table = pa.table(
        {f"c{i}": pa.array(rng.integers(-100, 100, size=3), pa.int8()) for i in range(20_000)}
    )
    path = write_arrow(tmp_path / "wide.arrow", table)
    frame = relay.scan(path)
    assert frame.to_arrow().equals(table)
    assert frame.select("c19999", "c0").to_arrow().equals(table.select(["c19999", "c0"]))
    assert "c19999" in repr(frame)
