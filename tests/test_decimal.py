"""decimal128 columns in expressions and aggregations: exact arithmetic with SQL's precision
rules (arrow-rs's kernels), comparisons with integer and float literals, whole-frame
aggregation. Values are checked against Python's decimal module."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relay_ml as relay
from relay_ml import col

decimals = st.decimals(
    min_value=-99999, max_value=99999, places=2, allow_nan=False, allow_infinity=False
)


def frame_of(prices: list[Decimal | None], discounts: list[Decimal | None]) -> relay.Frame:
    return relay.from_arrow(
        pa.table(
            {
                "p": pa.array(prices, pa.decimal128(15, 2)),
                "d": pa.array(discounts, pa.decimal128(15, 2)),
                "i": pa.array(range(len(prices)), pa.int64()),
            }
        )
    )


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.one_of(st.none(), decimals), st.one_of(st.none(), decimals)), max_size=30
    )
)
def test_arithmetic_is_exact(rows):
    prices, discounts = [r[0] for r in rows], [r[1] for r in rows]
    frame = frame_of(prices, discounts)
    result = pa.table(
        frame.select(
            (col("p") * (1 - col("d"))).alias("net"),
            (col("p") + col("d") - col("i")).alias("sum"),
            (-col("p")).alias("neg"),
            col("p").abs().alias("abs"),
        )
    )
    # Types: 1 is decimal(1, 0); p - d has a carry digit; * adds the scales.
    assert result.schema.field("net").type == pa.decimal128(32, 4)
    assert result.schema.field("sum").type.scale == 2
    for row, (p, d) in enumerate(zip(prices, discounts, strict=True)):
        net = None if p is None or d is None else p * (1 - d)
        total = None if p is None or d is None else p + d - row
        assert result["net"][row].as_py() == net
        assert result["sum"][row].as_py() == total
        assert result["neg"][row].as_py() == (None if p is None else -p)
        assert result["abs"][row].as_py() == (None if p is None else abs(p))


def test_comparisons_with_literals_are_exact():
    frame = frame_of(
        [Decimal("0.04"), Decimal("0.05"), Decimal("0.07"), Decimal("0.08"), None], [None] * 5
    )
    # 0.05 and 0.07 are decimal(2, 2) literals here, compared exactly (as in SQL).
    picked = frame.filter(col("p").between(0.05, 0.07))
    assert pa.table(picked)["i"].to_pylist() == [1, 2]
    assert pa.table(frame.filter(col("p") < 1))["i"].to_pylist() == [0, 1, 2, 3]
    assert pa.table(frame.filter(col("p") == 0.07))["i"].to_pylist() == [2]
    # A float with no short decimal form compares as a float.
    assert pa.table(frame.filter(col("p") > 1 / 30))["i"].to_pylist() == [0, 1, 2, 3]


def test_mixing_with_floats_gives_floats_and_errors_are_clear():
    frame = frame_of([Decimal("1.50")], [Decimal("0.10")])
    out = pa.table(frame.select((col("p") * col("p").cast("float64")).alias("x")))
    assert out.schema.field("x").type == pa.float64()
    assert out["x"].to_pylist() == [2.25]
    with pytest.raises(relay.RelayTypeError, match="% is not defined for decimals"):
        frame.select(col("p") % 2)
    with pytest.raises(relay.RelayTypeError, match="decimal128\\(15, 2\\)"):
        frame.select(col("p") + "a")


def test_sums_and_means_of_products():
    decimal.getcontext().prec = 50
    prices = [Decimal("10.25"), Decimal("3.10"), None, Decimal("7.99")]
    discounts = [Decimal("0.05"), Decimal("0.10"), Decimal("0.02"), None]
    frame = frame_of(prices, discounts)
    result = pa.table(
        frame.agg(
            (col("p") * (1 - col("d"))).sum().alias("revenue"),
            col("p").mean().alias("mean"),
            col("p").max().alias("max"),
            col("i").len().alias("rows"),
        )
    )
    assert result.num_rows == 1
    assert result["revenue"][0].as_py() == Decimal("10.25") * Decimal("0.95") + Decimal(
        "3.10"
    ) * Decimal("0.90")
    assert result.schema.field("revenue").type == pa.decimal128(38, 4)
    assert result["mean"][0].as_py() == pytest.approx((10.25 + 3.10 + 7.99) / 3)
    assert result["max"][0].as_py() == Decimal("10.25")
    assert result["rows"][0].as_py() == 4


def test_aggregating_an_empty_frame_gives_one_row():
    frame = frame_of([], [])
    result = pa.table(
        frame.agg(
            col("p").sum(), col("d").min(), col("i").len().alias("n"), col("i").first().alias("f")
        )
    )
    assert result.to_pylist() == [{"p": Decimal("0.00"), "d": None, "n": 0, "f": None}]
