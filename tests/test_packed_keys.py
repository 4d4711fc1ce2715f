"""Joins and group_bys on up to two narrow keys (integers, dates, strings of at most 7 bytes),
which hash as one packed integer, checked against Polars, including the rows that make them
fall back to the row format (longer strings, null integers in a group_by) after other rows
were already grouped, over several morsels and record batches."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import write_arrow
from relay_ml import col

ROWS = 200_000  # a few morsels of 64 Ki rows


def _table(long_from: int | None, null_ints: bool) -> pa.Table:
    rng = np.random.default_rng(7)
    names = np.array(["a", "bb", "ccc", "", "seven77"], dtype=object)[rng.integers(0, 5, ROWS)]
    if long_from is not None:
        names[long_from::9] = "a name over seven bytes"
    names[::13] = None
    numbers = rng.integers(-3, 4, ROWS)
    mask = (np.arange(ROWS) % 17 == 0) if null_ints else None
    days = [date(1994, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 3, ROWS)]
    return pa.table(
        {
            "s": pa.array(names, pa.string()),
            "n": pa.array(numbers, pa.int64(), mask=mask),
            "d": pa.array(days, pa.date32()),
            "x": pa.array(rng.integers(0, 1000, ROWS), pa.int64()),
        }
    )


@pytest.mark.parametrize(
    ("long_from", "null_ints", "keys"),
    [
        (None, False, ["s", "n"]),
        (None, True, ["s"]),
        (150_001, False, ["s", "n"]),
        (None, True, ["n", "d"]),
        (70_000, True, ["d", "s"]),
    ],
)
def test_group_by_two_narrow_keys_matches_polars(long_from, null_ints, keys, tmp_path):
    table = _table(long_from, null_ints)
    path = write_arrow(tmp_path / "t.arrow", table, batch_rows=90_000)
    frame = relay.scan(path).filter(col("x") < 990)
    got = pl.from_arrow(
        pa.table(
            frame.group_by(*keys).agg(col("x").sum().alias("sum"), col("x").len().alias("len"))
        )
    )
    expected = (
        pl.from_arrow(table)
        .filter(pl.col("x") < 990)
        .group_by(keys, maintain_order=True)
        .agg(pl.col("x").sum().alias("sum"), pl.len().alias("len"))
    )
    assert got.to_dict(as_series=False) == expected.cast({"len": got.schema["len"]}).to_dict(
        as_series=False
    )


@pytest.mark.parametrize("how", ["inner", "left", "semi", "anti"])
@pytest.mark.parametrize("long_strings", [False, True])
def test_join_on_an_integer_and_a_string_matches_polars(how, long_strings, tmp_path):
    left = _table(None, True).slice(0, 30_000)
    words = ["a", "bb", "ccc", "", "seven77"] + (
        ["a name over seven bytes"] if long_strings else []
    )
    right = pa.table(
        {
            "n": pa.array([n for n in range(-3, 4) for _ in words], pa.int64()),
            "s": pa.array([w for _ in range(-3, 4) for w in words], pa.string()),
            "y": pa.array(np.arange(7 * len(words)), pa.int64()),
        }
    ).filter(pa.array([i % 3 != 1 for i in range(7 * len(words))]))
    left_path = write_arrow(tmp_path / "l.arrow", left, batch_rows=20_000)
    right_path = write_arrow(tmp_path / "r.arrow", right)
    got = pl.from_arrow(
        pa.table(relay.scan(left_path).join(relay.scan(right_path), on=["n", "s"], how=how))
    )
    expected = pl.from_arrow(left).join(
        pl.from_arrow(right), on=["n", "s"], how=how, maintain_order="left_right", nulls_equal=False
    )
    assert got.to_dict(as_series=False) == expected.to_dict(as_series=False)
