"""Relational operators: sort / top_k, unique, group_by().agg() and concat, checked against
Polars on random data (nulls, repeated keys and empty inputs included)."""

from __future__ import annotations

import math
import pickle
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay_ml as relay
from conftest import write_arrow
from relay_ml import col

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- random tables ------------------------------------------------------------------------------

WORDS = ["a", "b", "bb", "c", "zz"]


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    """Small tables with few distinct keys (so groups and ties repeat) and nulls everywhere."""
    n = draw(st.integers(0, 40))
    maybe = lambda values: st.one_of(st.none(), values)  # noqa: E731
    k = draw(st.lists(maybe(st.integers(-2, 2)), min_size=n, max_size=n))
    s = draw(st.lists(maybe(st.sampled_from(WORDS)), min_size=n, max_size=n))
    # -0.0 + 0.0 is 0.0: relay orders floats totally (-0.0 before 0.0, as arrow-rs does), Polars
    # takes them as equal; that difference is documented, not tested here.
    floats = st.floats(-100, 100, allow_nan=False, width=32).map(lambda v: v + 0.0)
    x = draw(st.lists(maybe(floats), min_size=n, max_size=n))
    y = draw(st.lists(maybe(st.integers(-1000, 1000)), min_size=n, max_size=n))
    return pa.table(
        {
            "k": pa.array(k, pa.int32()),
            "s": pa.array(s, pa.string()),
            "d": pa.array(s, pa.string()).dictionary_encode(),
            "x": pa.array(x, pa.float64()),
            "y": pa.array(y, pa.int64()),
        }
    )


def frames_of(table: pa.Table, batch_rows: int | None, directory: Path) -> relay.Frame:
    """The table as a scanned file in batches of `batch_rows` (chunked columns), or in memory."""
    if batch_rows is None:
        return relay.from_arrow(table)
    path = write_arrow(directory / f"t{batch_rows}.arrow", table, batch_rows=batch_rows)
    return relay.scan(path)


def to_polars(table: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(table)  # type: ignore[return-value]


def as_dict(frame: relay.Frame) -> dict[str, list]:
    return pa.table(frame).to_pydict()


def close(a: list, b: list) -> bool:
    """Equal lists, floats within a relative 1e-9 (sums may add in another order)."""
    if len(a) != len(b):
        return False
    for left, right in zip(a, b, strict=True):
        if isinstance(left, float) or isinstance(right, float):
            if left is None or right is None:
                if left is not right:
                    return False
            elif not math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-7):
                return False
        elif left != right:
            return False
    return True


batch_rows = st.sampled_from([None, 1, 7, 64])
sort_columns = st.lists(
    st.sampled_from(["k", "s", "x", "y", "d"]), min_size=1, max_size=3, unique=True
)

# -- sort and top_k -----------------------------------------------------------------------------


@SETTINGS
@given(table=tables(), rows=batch_rows, by=sort_columns, data=st.data())
def test_sort_matches_polars(table, rows, by, data):
    descending = data.draw(st.lists(st.booleans(), min_size=len(by), max_size=len(by)))
    nulls_last = data.draw(st.lists(st.booleans(), min_size=len(by), max_size=len(by)))
    # Polars orders categoricals by their strings only with lexical ordering; compare strings.
    expected = (
        to_polars(table)
        .with_columns(pl.col("d").cast(pl.String))
        .sort(by, descending=descending, nulls_last=nulls_last, maintain_order=True)
    )
    with tempfile.TemporaryDirectory() as directory:
        frame = frames_of(table, rows, Path(directory))
        result = frame.sort(by, descending=descending, nulls_last=nulls_last)
        assert as_dict(result) == expected.to_dict(as_series=False)
        k = data.draw(st.integers(0, table.num_rows + 2))
        expected_head = expected.head(k).to_dict(as_series=False)
        assert as_dict(result.head(k)) == expected_head
        assert (
            as_dict(frame.top_k(k, by, descending=descending, nulls_last=nulls_last))
            == expected_head
        )
        # A sort then a projection gathers only the selected columns.
        assert as_dict(result.select("y", "s")) == expected.select("y", "s").to_dict(
            as_series=False
        )


def test_sort_by_expressions_and_scalar_options(tmp_path):
    table = pa.table({"a": [3, 1, None, 2, 1], "b": ["x", "y", "z", "w", "v"]})
    frame = relay.scan(write_arrow(tmp_path / "t.arrow", table, batch_rows=2))
    assert as_dict(frame.sort(-col("a"), nulls_last=True))["b"] == ["x", "w", "y", "v", "z"]
    assert as_dict(frame.sort("a", "b", descending=True))["b"] == ["z", "x", "w", "y", "v"]
    assert as_dict(frame.sort(col("a") % 2, "b"))["b"] == ["z", "w", "v", "x", "y"]
    # A slice not at the start of a sort is still a top-k below the slice.
    assert as_dict(frame.sort("b").slice(1, 2))["b"] == ["w", "x"]
    assert as_dict(frame.sort("b").head(2).sort("a"))["b"] == ["v", "w"]


def test_sort_errors_name_the_column(tmp_path):
    frame = relay.from_arrow(pa.table({"a": [1, 2], "l": pa.array([[1], [2]])}))
    with pytest.raises(relay.ColumnNotFoundError, match='"nope"'):
        frame.sort("nope")
    with pytest.raises(relay.RelayTypeError, match='col\\("l"\\)'):
        frame.sort("l")
    with pytest.raises(relay.RelayValueError, match="descending"):
        frame.sort(["a"], descending=[True, False])
    with pytest.raises(relay.RelayValueError):
        frame.top_k(-1, "a")


def test_sort_explain_names_the_operator_and_the_copy():
    frame = relay.from_arrow(pa.table({"a": [2, 1], "b": [1.0, 2.0]}))
    text = frame.sort("a").head(1).select("b").explain()
    assert 'SORT by=[col("a")] top_k=1' in text
    assert "b (float64): copy: sort() reordered the rows" in text
    assert relay.from_arrow(pa.table({"a": [2, 1]})).sort("a")["a"].copy_reason is not None


# -- unique -------------------------------------------------------------------------------------


@SETTINGS
@given(
    table=tables(),
    rows=batch_rows,
    subset=st.one_of(
        st.none(),
        st.lists(st.sampled_from(["k", "s", "x", "d"]), min_size=1, max_size=3, unique=True),
    ),
    keep=st.sampled_from(["first", "last", "none", "any"]),
)
def test_unique_matches_polars(table, rows, subset, keep):
    expected = to_polars(table).with_columns(pl.col("d").cast(pl.String))
    expected = expected.unique(subset=subset, keep=keep, maintain_order=True).to_dict(
        as_series=False
    )
    with tempfile.TemporaryDirectory() as directory:
        frame = frames_of(table, rows, Path(directory))
        assert as_dict(frame.unique(subset, keep=keep)) == expected
        assert as_dict(frame.distinct(subset, keep=keep)) == expected


def test_unique_errors_and_explain():
    frame = relay.from_arrow(pa.table({"a": [1, 1, 2]}))
    with pytest.raises(relay.ColumnNotFoundError, match='"b"'):
        frame.unique("b")
    with pytest.raises(relay.RelayValueError, match="keep"):
        frame.unique(keep="middle")
    assert "UNIQUE subset=[a] keep=first" in frame.unique("a").explain()
    assert frame.unique().num_rows == 2


# -- group_by / agg -----------------------------------------------------------------------------

AGGREGATIONS = [
    "sum",
    "mean",
    "min",
    "max",
    "count",
    "len",
    "n_unique",
    "first",
    "last",
    "std",
    "var",
    "median",
]


@SETTINGS
@given(
    table=tables(),
    rows=batch_rows,
    keys=st.lists(st.sampled_from(["k", "s", "d", "y"]), min_size=1, max_size=2, unique=True),
    functions=st.lists(st.sampled_from(AGGREGATIONS), min_size=1, max_size=4, unique=True),
    value=st.sampled_from(["x", "y", "k"]),
)
def test_group_by_matches_polars(table, rows, keys, functions, value):
    polars_aggs = [getattr(pl.col(value), f)().alias(f) for f in functions]
    expected = (
        to_polars(table)
        .with_columns(pl.col("d").cast(pl.String))
        .group_by(keys, maintain_order=True)
        .agg(polars_aggs)
        .to_dict(as_series=False)
    )
    with tempfile.TemporaryDirectory() as directory:
        frame = frames_of(table, rows, Path(directory))
        result = frame.group_by(keys).agg([getattr(col(value), f)().alias(f) for f in functions])
        assert result.columns == [*keys, *functions]
        got = as_dict(result)
    for name, values in expected.items():
        assert close(got[name], values), (name, got[name], values)


@SETTINGS
@given(table=tables(), rows=batch_rows)
def test_string_aggregations_match_polars(table, rows):
    functions = ["min", "max", "first", "last", "n_unique", "count"]
    expected = (
        to_polars(table)
        .group_by("k", maintain_order=True)
        .agg([getattr(pl.col("s"), f)().alias(f) for f in functions])
    )
    with tempfile.TemporaryDirectory() as directory:
        frame = frames_of(table, rows, Path(directory))
        got = as_dict(frame.group_by("k").agg([getattr(col("s"), f)().alias(f) for f in functions]))
    assert got == expected.to_dict(as_series=False)


@SETTINGS
@given(
    table=tables(),
    rows=batch_rows,
    # Multiples of 1/16: positions are exact, where Polars' position (which adds the null
    # count) rounds differently for some floats (a q of 1e-40 with nulls is position 0).
    q=st.integers(0, 16).map(lambda k: k / 16),
    interpolation=st.sampled_from(["nearest", "lower", "higher", "midpoint", "linear"]),
    value=st.sampled_from(["x", "y"]),
)
def test_quantiles_match_polars(table, rows, q, interpolation, value):
    expected = (
        to_polars(table)
        .group_by("k", maintain_order=True)
        .agg(pl.col(value).quantile(q, interpolation).alias("q"), pl.col(value).median().alias("m"))
        .to_dict(as_series=False)
    )
    with tempfile.TemporaryDirectory() as directory:
        frame = frames_of(table, rows, Path(directory))
        got = as_dict(
            frame.group_by("k").agg(
                col(value).quantile(q, interpolation).alias("q"), col(value).median().alias("m")
            )
        )
    for name, values in expected.items():
        assert close(got[name], values), (name, got[name], values)


def test_quantile_types_and_argument_errors():
    table = pa.table(
        {
            "k": [1, 1, 1, 2],
            "f": pa.array([3.0, 1.0, 2.0, None], pa.float32()),
            "i": [10, 30, 20, 5],
        }
    )
    result = (
        relay.from_arrow(table)
        .group_by("k")
        .agg(col("f").median(), col("i").quantile(0.5, "lower").alias("q"))
    )
    assert pa.table(result).schema.types == [pa.int64(), pa.float32(), pa.float64()]
    assert as_dict(result) == {"k": [1, 2], "f": [2.0, None], "q": [20.0, 5.0]}
    assert 'quantile(0.5, "lower")' in result.explain()
    frame = relay.from_arrow(table)
    with pytest.raises(relay.RelayValueError, match=r"between 0 and 1, got 1\.5"):
        col("i").quantile(1.5)
    with pytest.raises(relay.RelayTypeError, match="got str"):
        col("i").quantile("0.5")  # type: ignore[arg-type]
    with pytest.raises(relay.RelayValueError, match=r"interpolation must be one of .*got 'cubic'"):
        col("i").quantile(0.5, "cubic")
    with pytest.raises(relay.RelayTypeError, match="median\\(\\) needs a numeric column"):
        relay.from_arrow(pa.table({"k": [1], "s": ["a"]})).group_by("k").agg(col("s").median())
    aggregated = frame.group_by("k").agg(col("i").quantile(0.25, "linear").alias("q"))
    assert as_dict(pickle.loads(pickle.dumps(aggregated))) == as_dict(aggregated)


def test_decimal_aggregations_match_polars():
    import decimal

    values = [
        decimal.Decimal(v) if v is not None else None
        for v in ["1.25", "2.50", None, "-3.75", "10.00", None]
    ]
    table = pa.table({"k": [1, 1, 1, 2, 2, 3], "p": pa.array(values, pa.decimal128(12, 2))})
    functions = ["sum", "mean", "min", "max", "median", "std", "count"]
    expected = (
        to_polars(table)
        .group_by("k", maintain_order=True)
        .agg([getattr(pl.col("p"), f)().alias(f) for f in functions])
    )
    result = (
        relay.from_arrow(table)
        .group_by("k")
        .agg([getattr(col("p"), f)().alias(f) for f in functions])
    )
    got = pa.table(result)
    assert got.schema.field("sum").type == pa.decimal128(38, 2)
    assert got.schema.field("min").type == pa.decimal128(12, 2)
    want = expected.to_dict(as_series=False)
    for name, column in got.to_pydict().items():
        assert close(
            [float(v) if isinstance(v, decimal.Decimal) else v for v in column],
            [float(v) if isinstance(v, decimal.Decimal) else v for v in want[name]],
        ), name


def test_group_by_expressions_default_names_and_filters():
    frame = relay.from_arrow(pa.table({"a": [1, 2, 3, 4, 5], "b": [1.0, 2.0, 3.0, None, 5.0]}))
    result = (
        frame.filter(col("a") > 1)
        .group_by((col("a") % 2).alias("odd"))
        .agg(col("b").sum(), (col("b") * 2).max().alias("m"))
    )
    assert as_dict(result) == {"odd": [0, 1], "b": [2.0, 8.0], "m": [4.0, 10.0]}
    # An aggregation of a computed frame, sorted after.
    assert as_dict(result.sort("odd", descending=True))["odd"] == [1, 0]
    assert as_dict(frame.head(0).group_by("a").agg(col("b").mean())) == {"a": [], "b": []}


def test_aggregation_errors_are_typed_and_name_the_columns():
    frame = relay.from_arrow(pa.table({"a": [1, 2], "s": ["x", "y"], "l": pa.array([[1], [2]])}))
    with pytest.raises(
        relay.RelayTypeError, match='sum\\(\\) needs a numeric column, but col\\("s"\\) is string'
    ):
        frame.group_by("a").agg(col("s").sum())
    with pytest.raises(TypeError, match='col\\("s"\\)'):
        frame.group_by("a").agg(col("s").mean())
    with pytest.raises(relay.RelayTypeError, match='col\\("l"\\)'):
        frame.group_by("a").agg(col("l").min())
    with pytest.raises(relay.ColumnNotFoundError, match='"nope"'):
        frame.group_by("nope").agg(col("a").sum())
    with pytest.raises(relay.ColumnNotFoundError, match='"nope"'):
        frame.group_by("a").agg(col("nope").sum())
    with pytest.raises(relay.RelayValueError, match='"a" appears twice'):
        frame.group_by("a").agg(col("a").sum())
    with pytest.raises(relay.RelayTypeError, match="agg\\(\\) takes aggregations"):
        frame.group_by("a").agg(col("a"))
    with pytest.raises(relay.RelayTypeError, match='"l"'):
        frame.group_by("l").agg(col("a").sum())


def test_group_by_explain_and_pickle(tmp_path):
    path = write_arrow(
        tmp_path / "t.arrow", pa.table({"a": [1, 1, 2], "b": [1.0, 2.0, 3.0], "c": ["u", "v", "w"]})
    )
    frame = relay.scan(path).group_by("a").agg(col("b").sum().alias("total"))
    text = frame.explain()
    assert 'AGGREGATE keys=[col("a")] aggs=[col("b").sum().alias("total")]' in text
    assert "total (float64): copy: group_by().agg() computed the column into new memory" in text
    # Projection pruning reads only the columns the aggregation needs.
    assert "columns=[a, b]" in text.split("optimized plan:")[1]
    assert as_dict(pickle.loads(pickle.dumps(frame))) == {"a": [1, 2], "total": [3.0, 3.0]}
    sorted_frame = relay.scan(path).sort("b", descending=True).unique("a")
    assert as_dict(pickle.loads(pickle.dumps(sorted_frame))) == as_dict(sorted_frame)


def test_filters_stay_above_sorts_and_aggregations(tmp_path):
    path = write_arrow(tmp_path / "t.arrow", pa.table({"a": [5, 4, 3, 2, 1], "b": [1, 1, 2, 2, 3]}))
    frame = relay.scan(path)
    top = frame.sort("a").head(2).filter(col("a") > 1)
    assert as_dict(top)["a"] == [2]
    grouped = frame.group_by("b").agg(col("a").sum()).filter(col("a") > 3)
    assert as_dict(grouped) == {"b": [1, 2], "a": [9, 5]}
    unique = frame.unique("b").filter(col("a") < 5)
    assert as_dict(unique)["a"] == [3, 1]


def test_batches_of_a_sorted_or_grouped_frame_run_it_once():
    frame = relay.from_arrow(pa.table({"a": [3, 1, 2, 1, 3], "b": [1.0, 2.0, 3.0, 4.0, 5.0]}))
    sorted_batches = [as_dict(batch)["a"] for batch in frame.sort("a").iter_batches(2)]
    assert sorted_batches == [[1, 1], [2, 3], [3]]
    grouped = frame.group_by("a").agg(col("b").sum())
    assert [as_dict(batch)["b"] for batch in grouped.iter_batches(2)] == [[6.0, 6.0], [3.0]]


# -- concat -------------------------------------------------------------------------------------


@SETTINGS
@given(tables=st.lists(tables(), min_size=1, max_size=3), rows=batch_rows)
def test_concat_matches_polars(tables, rows):
    expected = pl.concat([to_polars(t) for t in tables]).to_dict(as_series=False)
    with tempfile.TemporaryDirectory() as directory:
        frames = []
        for i, table in enumerate(tables):
            sub = Path(directory) / str(i)
            sub.mkdir()
            frame = frames_of(table, rows, sub)
            # Filtered frames are gathered when collected; unfiltered ones stay views.
            frames.append(
                frame.filter(col("y").is_null() | (col("y") > -10_000)) if i % 2 else frame
            )
        result = relay.concat(frames)
        assert as_dict(result) == expected
        assert result.num_rows == sum(t.num_rows for t in tables)


def test_concat_errors_name_the_column(tmp_path):
    a = relay.from_arrow(pa.table({"x": [1], "y": ["u"]}))
    with pytest.raises(relay.RelayTypeError, match='"y"'):
        relay.concat([a, relay.from_arrow(pa.table({"x": [1], "y": [2.0]}))])
    with pytest.raises(relay.RelayTypeError, match='"z"'):
        relay.concat([a, relay.from_arrow(pa.table({"x": [1], "z": ["u"]}))])
    with pytest.raises(relay.RelayTypeError, match='"w"'):
        relay.concat([a, relay.from_arrow(pa.table({"x": [1], "y": ["u"], "w": [1]}))])
    with pytest.raises(relay.RelayValueError):
        relay.concat([])
    with pytest.raises(relay.RelayTypeError):
        relay.concat([pa.table({"x": [1]})])


def test_concat_of_scans_keeps_views_and_pickles(tmp_path):
    path = write_arrow(tmp_path / "t.arrow", pa.table({"x": [1.0, 2.0, 3.0]}))
    frame = relay.concat([relay.scan(path), relay.scan(path).head(1)])
    assert as_dict(frame) == {"x": [1.0, 2.0, 3.0, 1.0]}
    assert "MEMORY <concat>" in frame.explain()
    again = pickle.loads(pickle.dumps(frame.sort("x")))
    assert as_dict(again) == {"x": [1.0, 1.0, 2.0, 3.0]}
