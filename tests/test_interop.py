"""Frames to and from pandas, Polars, pyarrow and DuckDB; in-memory frames from Arrow, NumPy
and pandas. Zero-copy claims are checked by address."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import address_in_file_mapping, write_arrow


@pytest.fixture
def mixed_table() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 300
    ints = pa.array(
        [None if i % 7 == 0 else int(v) for i, v in enumerate(rng.integers(-50, 50, n))], pa.int64()
    )
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(rng.standard_normal(n).astype(np.float32)),
            "y": pa.array(rng.standard_normal(n)),
            "maybe": ints,
            "name": pa.array([None if i % 5 == 0 else f"n{i}" for i in range(n)]),
            "flag": pa.array([bool(i % 3) for i in range(n)]),
            "ts": pa.array(np.arange(n).astype("datetime64[us]")),
        }
    )


@pytest.fixture
def mixed_file(tmp_path: Path, mixed_table: pa.Table) -> Path:
    return write_arrow(tmp_path / "mixed.arrow", mixed_table)


# -- out of relay ---------------------------------------------------------------------------


def test_pyarrow_round_trip_keeps_nulls(mixed_file: Path, mixed_table: pa.Table) -> None:
    assert pa.table(relay.scan(mixed_file)).equals(mixed_table)
    assert relay.scan(mixed_file).to_arrow().equals(mixed_table)


def test_polars_from_frame(mixed_file: Path, mixed_table: pa.Table) -> None:
    expected = pl.from_arrow(mixed_table)
    assert pl.DataFrame(relay.scan(mixed_file)).equals(expected)
    assert pl.from_arrow(relay.scan(mixed_file).to_arrow()).equals(expected)


def test_duckdb_queries_a_frame(mixed_file: Path, mixed_table: pa.Table) -> None:
    duckdb = pytest.importorskip("duckdb")
    frame = relay.scan(mixed_file)  # noqa: F841 - the SQL below reads this local by name
    result = duckdb.sql("select * from frame").to_arrow_table()
    assert result.equals(mixed_table)
    count, nulls = duckdb.sql(
        "select count(*), count(*) - count(maybe) from frame where x > 0"
    ).fetchall()[0]
    x = mixed_table["x"].to_numpy()
    assert count == int((x > 0).sum())
    assert nulls == int(
        pa.compute.sum(
            pa.compute.is_null(mixed_table["maybe"].filter(pa.compute.greater(mixed_table["x"], 0)))
        ).as_py()
    )


def test_duckdb_result_back_into_relay(mixed_table: pa.Table) -> None:
    duckdb = pytest.importorskip("duckdb")
    source = mixed_table  # noqa: F841 - the SQL below reads this local by name
    relation = duckdb.sql("select id, maybe, name from source order by id")
    frame = relay.from_arrow(relation)
    assert pa.table(frame).equals(mixed_table.select(["id", "maybe", "name"]))


def test_to_pandas_views_numeric_columns_of_the_file(
    mixed_file: Path, mixed_table: pa.Table
) -> None:
    frame = relay.scan(mixed_file)
    df = frame.to_pandas()
    for name in ("id", "x", "y", "ts"):
        assert address_in_file_mapping(df[name].to_numpy().ctypes.data, mixed_file), name
    copied = df.attrs["relay_ml.copied"]
    assert set(copied) == {"maybe", "name", "flag"}
    assert "null" in copied["maybe"]
    expected = mixed_table.to_pandas()
    pd.testing.assert_frame_equal(df, expected, check_dtype=True)


def test_to_pandas_zero_copy_names_the_columns_that_copy(mixed_file: Path) -> None:
    frame = relay.scan(mixed_file)
    frame.select("id", "x").to_pandas(zero_copy=True)
    with pytest.raises(relay.ZeroCopyError, match=r"'maybe'.*'name'"):
        frame.to_pandas(zero_copy=True)


def test_to_pandas_of_a_filtered_frame(mixed_file: Path, mixed_table: pa.Table) -> None:
    frame = relay.scan(mixed_file).filter(relay.col("x") > 0)
    df = frame.to_pandas()
    expected = mixed_table.filter(pa.compute.greater(mixed_table["x"], 0)).to_pandas()
    pd.testing.assert_frame_equal(df, expected)
    assert "filter" in df.attrs["relay_ml.copied"]["x"]


# -- into relay -----------------------------------------------------------------------------


def test_from_numpy_references_the_arrays() -> None:
    x = np.arange(1000, dtype=np.float64)
    emb = np.ones((1000, 4), dtype=np.float32)
    frame = relay.from_numpy({"x": x, "emb": emb, "label": np.arange(1000) % 3})
    assert frame.shape == (1000, 3)
    assert frame.path is None and frame.origin == "from_numpy"
    assert frame["x"].to_numpy().ctypes.data == x.ctypes.data
    assert frame["emb"].to_numpy().ctypes.data == emb.ctypes.data
    assert frame["emb"].to_numpy().shape == (1000, 4)
    assert "referenced" in frame.explain() and "<from_numpy>" in frame.explain()
    assert "MEMORY <from_numpy> rows=1000" in frame.explain()  # a memory leaf, no file behind it
    assert frame["x"].path is None and frame.filter(relay.col("x") > 1)["x"].path is None
    np.testing.assert_array_equal(
        frame.filter(relay.col("label") == 1)["x"].to_numpy(), x[x % 3 == 1]
    )


def test_from_numpy_copies_what_has_no_arrow_layout_and_says_so() -> None:
    c_ordered = np.arange(20.0).reshape(10, 2)
    frame = relay.from_numpy(c_ordered, columns=["a", "b"])
    np.testing.assert_array_equal(frame.to_numpy(), c_ordered)
    assert "not C-contiguous" in frame.explain()
    f_ordered = np.asfortranarray(c_ordered)
    frame = relay.from_numpy(f_ordered)
    assert frame.columns == ["column_0", "column_1"]
    assert frame["column_1"].to_numpy().ctypes.data == f_ordered[:, 1].ctypes.data


def test_from_numpy_checks_lengths_and_names() -> None:
    with pytest.raises(relay.RelayValueError, match="differ in length"):
        relay.from_numpy({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(relay.RelayTypeError):
        relay.from_numpy([1, 2, 3])  # type: ignore[arg-type]
    empty = relay.from_numpy({})
    assert empty.shape == (0, 0)


def test_from_arrow_shares_buffers_and_keeps_nulls(mixed_table: pa.Table) -> None:
    frame = relay.from_arrow(mixed_table)
    assert frame.origin == "from_arrow(pyarrow.Table)"
    assert pa.table(frame).equals(mixed_table)
    values = mixed_table["y"].chunk(0).buffers()[1].address
    assert frame["y"].to_numpy().ctypes.data == values


def test_from_arrow_of_many_chunks_concatenates_once(mixed_table: pa.Table) -> None:
    chunked = pa.Table.from_batches(mixed_table.to_batches(max_chunksize=100))
    frame = relay.from_arrow(chunked)
    assert pa.table(frame).equals(mixed_table)
    assert "3 chunks" in frame.explain()


def test_from_arrow_record_batch_polars_and_dict(mixed_table: pa.Table) -> None:
    batch = mixed_table.to_batches()[0]
    assert pa.table(relay.from_arrow(batch)).equals(mixed_table)
    polars_frame = pl.from_arrow(mixed_table)
    back = relay.from_arrow(polars_frame)
    assert pl.DataFrame(back).equals(polars_frame)
    frame = relay.from_arrow({"a": pa.array([1, None, 3]), "b": pa.array(["x", "y", None])})
    assert frame["a"].to_pylist() == [1, None, 3]
    with pytest.raises(relay.RelayTypeError, match="__arrow_c_stream__"):
        relay.from_arrow(42)


def test_from_pandas_references_numeric_columns() -> None:
    df = pd.DataFrame(
        {
            "x": np.linspace(0, 1, 50),
            "n": np.arange(50, dtype=np.int32),
            "s": [f"v{i}" for i in range(50)],
            "nullable": pd.array([None if i % 4 == 0 else i for i in range(50)], dtype="Int64"),
            "when": pd.date_range("2024-01-01", periods=50, freq="h"),
        }
    )
    frame = relay.from_pandas(df)
    for name in ("x", "n", "when"):
        assert frame[name].to_numpy().ctypes.data == df[name].to_numpy().ctypes.data, name
    assert frame["nullable"].to_pylist() == [None if i % 4 == 0 else i for i in range(50)]
    assert frame["s"].to_pylist() == list(df["s"])
    back = frame.to_pandas()
    pd.testing.assert_series_equal(back["x"], df["x"])
    pd.testing.assert_series_equal(back["when"], df["when"])
    assert "Int64" in frame.explain()


def test_from_pandas_index_and_names() -> None:
    df = pd.DataFrame({"a": [1.0, 2.0]}, index=pd.Index([10, 20], name="key"))
    frame = relay.from_pandas(df, index=True)
    assert frame.columns == ["key", "a"]
    assert frame["key"].to_pylist() == [10, 20]
    with pytest.raises(relay.RelayTypeError, match="strings"):
        relay.from_pandas(pd.DataFrame({0: [1, 2]}))


def test_in_memory_frames_pickle_their_data(mixed_table: pa.Table) -> None:
    x = np.arange(10.0)
    frame = (
        relay.from_numpy({"x": x})
        .with_column("twice", relay.col("x") * 2)
        .filter(relay.col("x") > 3)
    )
    clone = pickle.loads(pickle.dumps(frame))
    assert clone.origin == "from_numpy"
    np.testing.assert_array_equal(clone.to_numpy(), frame.to_numpy())
    arrow_frame = relay.from_arrow(mixed_table)
    assert pa.table(pickle.loads(pickle.dumps(arrow_frame))).equals(mixed_table)


def test_in_memory_frames_outlive_their_source() -> None:
    frame = relay.from_numpy({"x": np.arange(100.0)})
    import gc

    gc.collect()
    np.testing.assert_array_equal(frame["x"].to_numpy(), np.arange(100.0))


def test_in_memory_error_messages_name_the_origin() -> None:
    frame = relay.from_numpy({"s": np.array(["a", "b"]), "x": np.zeros(2), "e": np.zeros((2, 3))})
    with pytest.raises(relay.RelayTypeError, match="from_numpy"):
        frame.select("e", "x").to_numpy()
    with pytest.raises(relay.ZeroCopyError, match='column "s" of <from_numpy>'):
        frame.filter(relay.col("x") >= 0)["s"].to_numpy(zero_copy=True)


def test_torch_dataset_over_an_in_memory_frame() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from relay_ml.torch import RelayDataset

    n = 200
    f0 = np.arange(n, dtype=np.float32)
    emb = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    label = np.arange(n, dtype=np.int64) % 7
    ds = RelayDataset(
        relay.from_numpy({"f0": f0, "emb": emb, "label": label}),
        features=["f0", "emb"],
        target="label",
    )
    assert len(ds) == n
    rows = np.array([199, 0, 57, 57, 3])
    x, y = ds.__getitems__(rows).output
    np.testing.assert_array_equal(x.numpy(), np.hstack([f0[rows, None], emb[rows]]))
    np.testing.assert_array_equal(y.numpy(), label[rows])
    # Worker processes get the dataset by pickling: the frame sends its data.
    clone = pickle.loads(pickle.dumps(ds))
    x, y = clone.__getitems__(rows).output
    np.testing.assert_array_equal(y.numpy(), label[rows])
    labels = torch.cat(
        [
            y
            for _, y in DataLoader(
                ds, batch_size=64, num_workers=2, multiprocessing_context="spawn"
            )
        ]
    )
    np.testing.assert_array_equal(labels.numpy(), label)
