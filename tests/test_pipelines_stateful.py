"""Random pipelines, checked step by step against Polars.

A hypothesis state machine keeps a relay frame and a Polars DataFrame in step: it starts both
from the same random table (nulls in every column, repeated keys, a scanned file of several
record batches or a table in memory) and applies the same operations to both (filter, select,
with_column, sort, unique, group_by().agg(), join, concat, head), comparing the results after
every step. Pipelines of up to 12 operations, run lazily and executed at each comparison.

`RELAY_SLOW_TESTS=1` runs 10,000 pipelines instead of a quick sample.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import relay_ml as relay
from conftest import write_arrow
from relay_ml import col

SLOW = os.environ.get("RELAY_SLOW_TESTS") == "1"
WORDS = ["a", "b", "bb", "zz"]
# Rows past which a step that could multiply them (join, concat) is not taken.
MAX_ROWS = 400


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 30))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    floats = st.floats(-50, 50, allow_nan=False, width=32).map(lambda v: v + 0.0)
    return pa.table(
        {
            "k": pa.array(column(st.integers(-2, 2)), pa.int32()),
            "s": pa.array(column(st.sampled_from(WORDS)), pa.string()),
            "x": pa.array(column(floats), pa.float64()),
            "y": pa.array(column(st.integers(-100, 100)), pa.int64()),
            "b": pa.array(column(st.booleans()), pa.bool_()),
        }
    )


# The right side of joins: keys with repeats and a null, one value column.
RIGHT = pa.table(
    {
        "k": pa.array([0, 1, 1, 2, None, -2], pa.int32()),
        "r": pa.array([10, 11, 12, 13, 14, None], pa.int64()),
    }
)


def same(ours: dict[str, list[Any]], theirs: dict[str, list[Any]]) -> bool:
    """Equal columns in the same order; floats within a relative 1e-9 (sums may add in
    another order)."""
    if list(ours) != list(theirs):
        return False
    for name, left_values in ours.items():
        right_values = theirs[name]
        if len(left_values) != len(right_values):
            return False
        for left, right in zip(left_values, right_values, strict=True):
            if isinstance(left, float) and isinstance(right, float | int):
                if not math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif left != right:
                return False
    return True


class Pipelines(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.ours: relay.Frame
        self.theirs: pl.DataFrame
        self.steps: list[str] = []

    def teardown(self) -> None:
        self.directory.cleanup()

    # -- the columns the current frame has, by kind --------------------------------------------

    def columns(self, *kinds: type[pl.DataType]) -> list[str]:
        return [
            name
            for name, dtype in self.theirs.schema.items()
            if any(isinstance(dtype, kind) for kind in kinds)
        ]

    def numeric(self) -> list[str]:
        return self.columns(pl.Int32, pl.Int64, pl.Float64, pl.UInt32)

    def step(self, description: str, ours: relay.Frame, theirs: pl.DataFrame) -> None:
        self.steps.append(description)
        self.ours, self.theirs = ours, theirs

    # -- start ----------------------------------------------------------------------------------

    @initialize(table=tables(), batch_rows=st.sampled_from([None, 1, 4, 64]))
    def start(self, table: pa.Table, batch_rows: int | None) -> None:
        if batch_rows is None:
            ours = relay.from_arrow(table)
        else:
            path = Path(self.directory.name) / "start.arrow"
            ours = relay.scan(write_arrow(path, table, batch_rows=batch_rows))
        self.step(
            f"start({table.num_rows} rows, batches of {batch_rows})", ours, pl.from_arrow(table)
        )  # type: ignore[arg-type]

    # -- operations -----------------------------------------------------------------------------

    @precondition(lambda self: self.numeric())
    @rule(
        data=st.data(), op=st.sampled_from(["<", ">", "==", "!=", ">="]), value=st.integers(-3, 3)
    )
    def filter_number(self, data: st.DataObject, op: str, value: int) -> None:
        name = data.draw(st.sampled_from(self.numeric()))
        compare = {
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            ">=": lambda a, b: a >= b,
        }[op]
        self.step(
            f"filter({name} {op} {value})",
            self.ours.filter(compare(col(name), value)),
            self.theirs.filter(compare(pl.col(name), value)),
        )

    @precondition(lambda self: self.columns(pl.String))
    @rule(data=st.data(), word=st.sampled_from(WORDS), nulls=st.booleans())
    def filter_string(self, data: st.DataObject, word: str, nulls: bool) -> None:
        name = data.draw(st.sampled_from(self.columns(pl.String)))
        if nulls:
            ours, theirs = (
                col(name).is_null() | (col(name) == word),
                (pl.col(name).is_null() | (pl.col(name) == word)),
            )
        else:
            ours, theirs = col(name) != word, pl.col(name) != word
        self.step(
            f"filter({name} {'is null or ==' if nulls else '!='} {word!r})",
            self.ours.filter(ours),
            self.theirs.filter(theirs),
        )

    @rule(data=st.data())
    def select(self, data: st.DataObject) -> None:
        names = list(self.theirs.columns)
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        self.step(f"select({chosen})", self.ours.select(chosen), self.theirs.select(chosen))

    @precondition(lambda self: self.numeric())
    @rule(data=st.data(), kind=st.sampled_from(["sum", "double", "is_null"]))
    def with_column(self, data: st.DataObject, kind: str) -> None:
        a = data.draw(st.sampled_from(self.numeric()))
        b = data.draw(st.sampled_from(self.numeric()))
        name = f"w{len(self.steps)}"
        ours, theirs = {
            "sum": (col(a) + col(b), pl.col(a) + pl.col(b)),
            "double": (col(a) * 2, pl.col(a) * 2),
            "is_null": (col(a).is_null(), pl.col(a).is_null()),
        }[kind]
        self.step(
            f"with_column({name} = {kind} of {a}, {b})",
            self.ours.with_column(name, ours),
            self.theirs.with_columns(theirs.alias(name)),
        )

    @rule(data=st.data(), descending=st.booleans())
    def sort(self, data: st.DataObject, descending: bool) -> None:
        names = list(self.theirs.columns)
        by = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        self.step(
            f"sort({by}, descending={descending})",
            self.ours.sort(by, descending=descending),
            self.theirs.sort(by, descending=descending, maintain_order=True),
        )

    @rule(keep=st.sampled_from(["first", "last"]))
    def unique(self, keep: str) -> None:
        self.step(
            f"unique(keep={keep})",
            self.ours.unique(keep=keep),
            self.theirs.unique(keep=keep, maintain_order=True),  # type: ignore[arg-type]
        )

    @precondition(lambda self: self.columns(pl.Int32, pl.String) and self.numeric())
    @rule(data=st.data())
    def group_by(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.columns(pl.Int32, pl.String)))
        value = data.draw(st.sampled_from(self.numeric()))
        # Group order is unspecified in both: the groups are sorted by key afterwards.
        total, least, n = (f"{name}{len(self.steps)}" for name in ("total", "least", "n"))
        ours = (
            self.ours.group_by(key)
            .agg(
                col(value).sum().alias(total),
                col(value).min().alias(least),
                col(value).count().alias(n),
            )
            .sort(key)
        )
        theirs = (
            self.theirs.group_by(key)
            .agg(
                pl.col(value).sum().alias(total),
                pl.col(value).min().alias(least),
                pl.col(value).count().alias(n),
            )
            .sort(key)
        )
        self.step(f"group_by({key}).agg(sum, min, count of {value})", ours, theirs)

    @precondition(
        lambda self: (
            isinstance(self.theirs.schema.get("k"), pl.Int32)
            and "r_right" not in self.theirs.columns
            and len(self.theirs) <= MAX_ROWS // 3
        )
    )
    @rule(how=st.sampled_from(["inner", "left", "semi", "anti"]))
    def join(self, how: str) -> None:
        self.step(
            f"join(on k, how={how})",
            self.ours.join(relay.from_arrow(RIGHT), on="k", how=how),
            self.theirs.join(
                pl.from_arrow(RIGHT),  # type: ignore[arg-type]
                on="k",
                how=how,  # type: ignore[arg-type]
                nulls_equal=False,
                maintain_order="left_right",
            ),
        )

    @precondition(lambda self: len(self.theirs) <= MAX_ROWS // 2)
    @rule(n=st.integers(0, 5))
    def concat(self, n: int) -> None:
        self.step(
            f"concat(frame, head({n}))",
            relay.concat([self.ours, self.ours.head(n)]),
            pl.concat([self.theirs, self.theirs.head(n)]),
        )

    @rule(n=st.integers(0, 20))
    def head(self, n: int) -> None:
        self.step(f"head({n})", self.ours.head(n), self.theirs.head(n))

    # -- the check ------------------------------------------------------------------------------

    @invariant()
    def same_as_polars(self) -> None:
        if not self.steps:
            return
        ours = pa.table(self.ours).to_pydict()
        theirs = self.theirs.to_dict(as_series=False)
        assert same(ours, theirs), (
            "relay and Polars differ after:\n  "
            + "\n  ".join(self.steps)
            + f"\nrelay:  {ours}\nPolars: {theirs}"
        )


Pipelines.TestCase.settings = settings(
    max_examples=10_000 if SLOW else 60,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_pipelines_match_polars = Pipelines.TestCase
