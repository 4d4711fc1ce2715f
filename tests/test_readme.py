"""Every Python block of README.md runs as written: top to bottom in one namespace, as a reader
pastes them, on small files made here under the names the README uses. A bare expression is
printed (its `repr`), as an interactive session would show it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import relay_ml as relay

README = Path(__file__).resolve().parent.parent / "README.md"
ROWS = 4096


def python_blocks() -> list[tuple[int, str]]:
    """(first line number, source) of each ```python block."""
    text = README.read_text()
    return [
        (text[: m.start(1)].count("\n") + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)
    ]


def features_table(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = {f"f{i}": rng.standard_normal(rows).astype(np.float32) for i in range(8)}
    columns["label"] = rng.integers(0, 10, rows)
    return columns


def make_files(root: Path) -> None:
    """The files the README's snippets open, each a few thousand rows."""
    rng = np.random.default_rng(0)
    cities = pa.array(rng.choice(["oslo", "rome", "lima", "quito"], ROWS)).dictionary_encode()
    emb = pa.FixedSizeListArray.from_arrays(
        pa.array(rng.standard_normal(ROWS * 64).astype(np.float32)), 64
    )
    data = pa.table(
        {
            "id": np.arange(ROWS),
            "age": rng.integers(0, 100, ROWS).astype(np.int32),
            **features_table(ROWS, 1),
            "city": cities,
            "emb": emb,
        }
    )
    relay.write(relay.from_arrow(data), root / "data.arrow")
    profiles = pa.table({"user_id": np.arange(0, ROWS, 2), "country": ["no", "it"] * (ROWS // 4)})
    pq.write_table(profiles, root / "profiles.parquet")

    train = pa.table({**features_table(ROWS, 2), "split": ["train", "test"] * (ROWS // 2)})
    relay.write(relay.from_arrow(train), root / "train.arrow")
    (root / "shards").mkdir()
    for shard in range(2):
        table = pa.table({**features_table(ROWS, 3 + shard), "lang": ["en", "de"] * (ROWS // 2)})
        pq.write_table(table, root / "shards" / f"train-{shard:05d}.parquet", row_group_size=1024)

    pq.write_table(pa.table(features_table(ROWS, 5)), root / "events.parquet")
    (root / "logs").mkdir()
    for day in (1, 2):
        (root / "logs" / f"2024-01-0{day}.csv").write_text(
            "ts,v\n" + "".join(f"2024-01-0{day} 00:00:0{s},{s}.5\n" for s in range(5))
        )
    for year, month in [(2023, 12), (2024, 3)]:
        folder = root / "lake" / f"year={year}" / f"month={month}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table(features_table(100, year + month)), folder / "part-0.parquet")
    for name, seed in [("a.arrow", 6), ("b.arrow", 7)]:
        relay.write(relay.from_arrow(pa.table(features_table(100, seed))), root / name)
    pq.write_table(
        pa.table(features_table(3 * ROWS, 8)), root / "huge.parquet", row_group_size=1024
    )


def run_block(source: str, line: int, namespace: dict) -> None:
    for statement in ast.parse(source).body:
        name = f"README.md, line {line + statement.lineno - 1}"
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), name, "eval"), namespace)
            repr(value)
        else:
            exec(compile(ast.Module([statement], type_ignores=[]), name, "exec"), namespace)


def test_readme_has_the_blocks_this_test_runs() -> None:
    assert len(python_blocks()) >= 5


def test_every_python_block_of_the_readme_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for line, source in python_blocks():
        run_block(source, line, namespace)
    # What the last block wrote: predictions for every row of huge.parquet.
    assert len(relay.scan("predictions.arrow")) == 3 * ROWS
    assert relay.scan("clean.parquet").to_arrow().equals(relay.scan("data.arrow").to_arrow())
