"""Frames pickle as their logical plan, serialized by the engine: one frame per kind of plan
node and expression, each compared with its unpickled copy, and damaged bytes as errors."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import relay_ml as relay
from relay_ml import col, when
from relay_ml._relay import NativeFrame
from tests.conftest import write_arrow


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    table = pa.table(
        {
            "id": pa.array(range(40), pa.int64()),
            "x": pa.array([float(i) / 4 for i in range(40)]),
            "g": pa.array([f"g{i % 3}" for i in range(40)]),
            "n": pa.array([None if i % 7 == 0 else i for i in range(40)], pa.int32()),
        }
    )
    ipc = write_arrow(tmp_path / "t.arrow", table, batch_rows=16)
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=10)
    (tmp_path / "t.csv").write_text(
        "id;x;g\n" + "".join(f"{i};{i / 4};g{i % 3}\n" for i in range(40))
    )
    (tmp_path / "t.ndjson").write_text(
        "".join(f'{{"id": {i}, "g": "g{i % 3}"}}\n' for i in range(40))
    )
    for year in (2023, 2024):
        folder = tmp_path / "hive" / f"year={year}"
        folder.mkdir(parents=True)
        pq.write_table(table.slice(0 if year == 2023 else 20, 20), folder / "part.parquet")
    return {
        "ipc": ipc,
        "parquet": tmp_path / "t.parquet",
        "csv": tmp_path / "t.csv",
        "ndjson": tmp_path / "t.ndjson",
        "hive": tmp_path / "hive",
    }


def _scan(files: dict[str, Path]) -> relay.Frame:
    return relay.scan(files["ipc"])


FRAMES: dict[str, Callable[[dict[str, Path]], relay.Frame]] = {
    "scan": _scan,
    "scan_select_slice": lambda f: _scan(f).select("n", "id").slice(5, 20),
    "parquet": lambda f: relay.scan(f["parquet"]).filter(col("id") > 12),
    "csv_options": lambda f: relay.scan(
        f["csv"], separator=";", schema={"id": "int64", "x": "float64", "g": "string"}
    ),
    "csv_no_header": lambda f: relay.scan(f["csv"], separator=";", has_header=False),
    "ndjson": lambda f: relay.scan(f["ndjson"]).filter(col("g") == "g1"),
    "hive": lambda f: relay.scan(f["hive"]).filter(col("year") == 2024).select("id", "year"),
    "glob": lambda f: relay.scan(str(f["hive"] / "*" / "*.parquet")).head(25),
    "filter": lambda f: _scan(f).filter((col("x") > 2.0) & col("n").is_not_null()),
    "select_exprs": lambda f: _scan(f).select(
        col("id"),
        (col("x") * 2 + 1).alias("a"),
        (col("id") // 3).alias("fd"),
        (col("id") % 3).alias("m"),
        (col("x") / 3).alias("d"),
        (-col("x")).abs().alias("ab"),
        (~(col("id") < 5)).alias("nt"),
        col("g").str.starts_with("g1").alias("sw"),
        col("g").str.ends_with("2").alias("ew"),
        col("g").str.contains("0").alias("ct"),
        col("g").str.len().alias("ln"),
        col("id").is_in([1, 5, 9]).alias("isin"),
        col("n").fill_null(-1).alias("fill"),
        col("n").is_null().alias("isnull"),
        col("id").cast("float32").alias("cast"),
        when(col("id") < 10).then(relay.lit("low")).otherwise(relay.lit("high")).alias("case"),
    ),
    "with_column": lambda f: _scan(f).with_column("y", col("x") + col("id")),
    "with_columns": lambda f: _scan(f).with_columns(
        (col("id") * 2).alias("id2"), z=col("x") - 1, w=np.arange(40, dtype=np.int16)
    ),
    "attached_list": lambda f: _scan(f).with_column("l", list(range(40))),
    "view": lambda f: _scan(f).view({"x": "int64"}),
    "take": lambda f: _scan(f).take([39, 0, 5, 5, -2]),
    "sample": lambda f: _scan(f).sample(10, seed=3),
    "slice_of_filter": lambda f: _scan(f).filter(col("id") > 3).slice(2, 6),
    "sort": lambda f: _scan(f).sort("g", "x", descending=[False, True], nulls_last=True),
    "top_k": lambda f: _scan(f).top_k(5, "n", descending=True),
    "unique": lambda f: _scan(f).unique("g", keep="last"),
    "unique_none": lambda f: _scan(f).select("g").unique(keep="none"),
    "group_by": lambda f: (
        _scan(f)
        .group_by("g")
        .agg(
            col("x").sum(),
            col("x").mean().alias("mean"),
            col("n").count().alias("count"),
            col("x").quantile(0.3, "nearest").alias("q"),
            col("id").n_unique().alias("nu"),
        )
        .sort("g")
    ),
    "agg": lambda f: _scan(f).agg(col("x").max(), col("id").len().alias("len")),
    "join": lambda f: _scan(f).join(
        relay.scan(f["parquet"]).select("id", (col("x") * 10).alias("x10")), on="id", how="left"
    ),
    "join_self": lambda f: _scan(f).join(_scan(f), on="g", how="semi"),
    "join_exprs": lambda f: _scan(f).join(
        relay.from_arrow(pa.table({"k": [0, 1, 2], "v": ["a", "b", "c"]})),
        left_on=col("id") % 3,
        right_on="k",
        how="inner",
    ),
    "concat": lambda f: relay.concat([_scan(f).head(3), _scan(f).filter(col("id") > 36)]),
    "collect": lambda f: _scan(f).filter(col("id") > 30).collect().with_column("c", col("id") * 2),
    "from_numpy": lambda f: relay.from_numpy({"a": np.arange(6.0), "b": np.arange(6)}).filter(
        col("a") > 1
    ),
    "from_arrow": lambda f: relay.from_arrow(
        pa.table({"s": ["x", None, "z"], "l": pa.array([[1], [], None], pa.list_(pa.int64()))})
    ),
    "empty": lambda f: relay.from_numpy({"a": np.zeros(0)}),
    "dates": lambda f: relay.from_arrow(
        pa.table({"d": pa.array([0, 400, 9000], pa.date32())})
    ).select(col("d").dt.year().alias("y"), col("d").dt.month().alias("m"), col("d").dt.day()),
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_each_kind_of_frame_pickles_to_the_same_rows(files: dict[str, Path], name: str) -> None:
    frame = FRAMES[name](files)
    again = pickle.loads(pickle.dumps(frame))
    assert again.columns == frame.columns
    assert again.schema == frame.schema
    assert again.origin == frame.origin
    assert again.path == frame.path
    assert again.to_arrow().equals(frame.to_arrow())
    # And again, from the unpickled frame.
    assert pickle.loads(pickle.dumps(again)).to_arrow().equals(frame.to_arrow())


def test_a_pickle_of_a_file_holds_no_column_data(files: dict[str, Path]) -> None:
    frame = relay.scan(files["ipc"]).filter(col("x") > 1.0).sort("id")
    assert len(pickle.dumps(frame)) < 1_000


def test_damaged_pickles_raise_relay_errors(files: dict[str, Path]) -> None:
    frame = relay.scan(files["ipc"]).with_column("w", np.arange(40)).filter(col("id") > 3)
    kind, origin, plan = frame._native._serialize()
    with pytest.raises(relay.RelayError, match="not a relay_ml plan"):
        NativeFrame._deserialize(kind, origin, b"pickled frame")
    for cut in (0, 8, 12, 20, len(plan) // 2, len(plan) - 1):
        with pytest.raises(relay.RelayError):
            NativeFrame._deserialize(kind, origin, plan[:cut])
    for position in range(0, len(plan), max(1, len(plan) // 50)):
        damaged = bytearray(plan)
        damaged[position] ^= 0x5A
        with pytest.raises(relay.RelayError):
            NativeFrame._deserialize(kind, origin, bytes(damaged))
    payload = pickle.dumps(frame)
    index = payload.index(plan[20:40])
    broken = (
        payload[:index] + bytes(b ^ 0xFF for b in payload[index : index + 4]) + payload[index + 4 :]
    )
    with pytest.raises(relay.RelayError, match="damaged"):
        pickle.loads(broken)


def test_a_file_that_changed_since_pickling_is_an_error(tmp_path: Path) -> None:
    path = write_arrow(tmp_path / "t.arrow", pa.table({"a": [1, 2, 3]}))
    payload = pickle.dumps(relay.scan(path).head(2))
    write_arrow(path, pa.table({"b": ["x"]}))
    with pytest.raises(relay.RelayError, match="changed since"):
        pickle.loads(payload)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(payload)
