"""Frame.join: differential tests against Polars' DataFrame.join (nulls_equal=False) on random
small frames with nulls, duplicated keys and empty inputs, for every join type; joins of
scanned files and in-memory frames; joins followed by filters, selects and aggregations; the
plans (pushdown, pruning), explain / profile, pickling, and errors."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay_ml as relay
from conftest import arrow_type_name, write_arrow
from relay_ml import col

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
HOWS = ["inner", "left", "right", "full", "semi", "anti"]
WORDS = ["a", "b", "bb", "c"]


# -- random tables ------------------------------------------------------------------------------


@st.composite
def tables(draw: st.DrawFn, key_type: pa.DataType, extra: str) -> pa.Table:
    """Up to 12 rows over few distinct keys (so keys repeat on both sides), nulls everywhere:
    key columns k (`key_type`), s (string), d (dictionary of s), and a value column `extra`
    plus x, which both sides have (so it is suffixed)."""
    n = draw(st.integers(0, 12))
    maybe = lambda values: st.one_of(st.none(), values)  # noqa: E731
    k = draw(st.lists(maybe(st.integers(0, 3)), min_size=n, max_size=n))
    s = draw(st.lists(maybe(st.sampled_from(WORDS)), min_size=n, max_size=n))
    x = draw(st.lists(maybe(st.integers(-50, 50)), min_size=n, max_size=n))
    return pa.table(
        {
            "k": pa.array(k, key_type),
            "s": pa.array(s, pa.string()),
            "d": pa.array(s, pa.string()).dictionary_encode(),
            "x": pa.array(x, pa.float64()),
            extra: pa.array(range(n), pa.int64()),
        }
    )


def frame_of(table: pa.Table, batch_rows: int | None, directory: Path, name: str) -> relay.Frame:
    """The table as a scanned IPC file in batches of `batch_rows` rows, or in memory (None)."""
    if batch_rows is None:
        return relay.from_arrow(table)
    return relay.scan(write_arrow(directory / f"{name}.arrow", table, batch_rows=batch_rows))


def polars_of(table: pa.Table) -> pl.DataFrame:
    """The table for Polars, with the dictionary column as plain strings (Polars joins no
    categorical with a string; relay compares dictionaries by their values)."""
    name = table.column_names[2]
    return pl.from_arrow(table.set_column(2, name, table[name].cast(pa.string())))  # type: ignore[return-value]


def rows_of(frame: relay.Frame | pl.DataFrame) -> tuple[list[str], list[tuple]]:
    """Column names and rows (dictionary values decoded) of a relay or Polars result."""
    table = pa.table(frame) if isinstance(frame, relay.Frame) else frame.to_arrow()
    columns = [
        c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns
    ]
    decoded = pa.table(columns, names=table.column_names)
    nan_safe = lambda v: "NaN" if isinstance(v, float) and v != v else v  # noqa: E731
    return table.column_names, [
        tuple(nan_safe(v) for v in row.values()) for row in decoded.to_pylist()
    ]


def unordered(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=repr)


def check_against_polars(
    left: pa.Table,
    right: pa.Table,
    how: str,
    batch_rows: tuple[int | None, int | None],
    directory: Path,
    **keys: object,
) -> None:
    ours = frame_of(left, batch_rows[0], directory, "left").join(
        frame_of(right, batch_rows[1], directory, "right"), how=how, **keys
    )
    theirs = polars_of(left).join(polars_of(right), how=how, nulls_equal=False, **keys)  # type: ignore[arg-type]
    our_names, our_rows = rows_of(ours)
    their_names, their_rows = rows_of(theirs)
    assert our_names == their_names
    assert unordered(our_rows) == unordered(their_rows)
    # The left order, each left row's matches in right order; for right joins the other way
    # round (Polars' maintain_order). Full joins: left rows, then the unmatched right rows.
    order = "right_left" if how == "right" else "left_right"
    ordered = polars_of(left).join(
        polars_of(right),
        how=how,
        nulls_equal=False,
        maintain_order=order,
        **keys,  # type: ignore[arg-type]
    )
    assert our_rows == rows_of(ordered)[1]
    assert len(ours) == len(their_rows)


# -- differential tests -----------------------------------------------------------------------


@SETTINGS
@given(
    left=tables(pa.int32(), "l"),
    right=tables(pa.int64(), "r"),
    how=st.sampled_from(HOWS),
    batch_rows=st.tuples(st.sampled_from([None, 4]), st.sampled_from([None, 3])),
)
def test_a_single_integer_key_of_different_widths_matches_polars(
    left, right, how, batch_rows, tmp_path
):
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        check_against_polars(left, right, how, batch_rows, Path(directory), on="k")


@SETTINGS
@given(
    left=tables(pa.int64(), "l"),
    right=tables(pa.int64(), "r"),
    how=st.sampled_from(HOWS),
    keys=st.sampled_from([["k", "s"], ["s"], ["d"], ["s", "k"]]),
    batch_rows=st.tuples(st.sampled_from([None, 5]), st.sampled_from([None, 2])),
)
def test_string_and_multi_column_keys_match_polars(left, right, how, keys, batch_rows, tmp_path):
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        check_against_polars(left, right, how, batch_rows, Path(directory), on=keys)


@SETTINGS
@given(
    left=tables(pa.int64(), "l"),
    right=tables(pa.int64(), "r"),
    how=st.sampled_from(HOWS),
)
def test_differently_named_keys_and_expressions_match_polars(left, right, how, tmp_path):
    right = right.rename_columns(["rk", "rs", "rd", "x", "r"])
    with tempfile.TemporaryDirectory(dir=tmp_path) as directory:
        check_against_polars(
            left,
            right,
            how,
            (None, None),
            Path(directory),
            left_on=["k", "s"],
            right_on=["rk", "rs"],
        )
        # An expression key: no key column is dropped (Polars coalesces plain columns only).
        ours = relay.from_arrow(left).join(
            relay.from_arrow(right), left_on=col("k") + 1, right_on="rk", how=how
        )
        theirs = polars_of(left).join(
            polars_of(right), left_on=pl.col("k") + 1, right_on="rk", how=how, nulls_equal=False
        )  # type: ignore[arg-type]
        assert rows_of(ours)[0] == rows_of(theirs)[0]
        assert unordered(rows_of(ours)[1]) == unordered(rows_of(theirs)[1])


def test_the_suffix_and_key_columns_follow_polars():
    left = pa.table({"k": [1, 2, 2], "v": ["a", "b", "c"], "w": [1.0, 2.0, 3.0]})
    right = pa.table({"k": [2, 3], "v": ["x", "y"], "z": [True, False]})
    for how in HOWS:
        ours = relay.from_arrow(left).join(
            relay.from_arrow(right), on="k", how=how, suffix="_other"
        )
        theirs = pl.from_arrow(left).join(pl.from_arrow(right), on="k", how=how, suffix="_other")  # type: ignore[union-attr]
        assert ours.columns == theirs.columns, how
        assert ours.schema == {
            name: arrow_type_name(t)
            for name, t in zip(ours.columns, pa.table(ours).schema.types, strict=True)
        }


def test_key_types_dates_bools_floats_and_decimals_join():
    from decimal import Decimal

    left = pa.table(
        {
            "day": pa.array([1, 2, None, 3], pa.date32()),
            "flag": [True, False, True, None],
            "f": pa.array([1.5, 2.5, 1.5, float("nan")], pa.float32()),
            "dec": pa.array(
                [Decimal("1.10"), Decimal("2.20"), None, Decimal("1.10")], pa.decimal128(5, 2)
            ),
            "ts": pa.array([10, 20, 30, None], pa.timestamp("us")),
        }
    )
    right = pa.table(
        {
            "day": pa.array([2, 3, 3], pa.date32()),
            "flag": [True, True, None],
            "f": pa.array([1.5, 9.0, 2.5], pa.float64()),
            "dec": pa.array([Decimal("1.10"), None, Decimal("2.20")], pa.decimal128(5, 2)),
            "ts": pa.array([20, None, 10], pa.timestamp("us")),
        }
    )
    for key in ["day", "flag", "dec", "ts", ["day", "flag"]]:
        for how in HOWS:
            ours = relay.from_arrow(left).join(relay.from_arrow(right), on=key, how=how)
            theirs = pl.from_arrow(left).join(
                pl.from_arrow(right), on=key, how=how, nulls_equal=False
            )  # type: ignore[union-attr]
            assert rows_of(ours)[0] == rows_of(theirs)[0], (key, how)
            assert unordered(rows_of(ours)[1]) == unordered(rows_of(theirs)[1]), (key, how)
    # float32 with float64 keys compare as float64.
    joined = relay.from_arrow(left).join(relay.from_arrow(right), on="f", how="inner")
    assert sorted(joined["f"].to_pylist()) == [1.5, 1.5, 2.5]


def test_utf8_view_large_utf8_and_dictionary_keys_join_with_each_other():
    words = ["a", "b", None, "a"]
    left = pa.table({"s": pa.array(words, pa.string_view()), "i": [0, 1, 2, 3]})
    for right_type in [pa.large_string(), pa.string(), pa.dictionary(pa.int8(), pa.string())]:
        right = pa.table(
            {"s": pa.array(["a", "c", None], pa.string()).cast(right_type), "j": [10, 11, 12]}
        )
        joined = relay.from_arrow(left).join(relay.from_arrow(right), on="s", how="left")
        assert pa.table(joined).to_pydict() == {
            "s": words,
            "i": [0, 1, 2, 3],
            "j": [10, None, None, 10],
        }


def test_all_null_keys_and_empty_frames():
    nulls = pa.table({"k": pa.array([None, None], pa.int64()), "v": [1, 2]})
    empty = pa.table({"k": pa.array([], pa.int64()), "w": pa.array([], pa.string())})
    some = pa.table({"k": [1, 2], "w": ["x", "y"]})
    cases = [
        (nulls, some),
        (some, nulls),
        (empty, some),
        (some, empty),
        (empty, empty),
        (nulls, nulls),
    ]
    for left, right in cases:
        for how in HOWS:
            ours = relay.from_arrow(left).join(relay.from_arrow(right), on="k", how=how)
            theirs = pl.from_arrow(left).join(
                pl.from_arrow(right), on="k", how=how, nulls_equal=False
            )  # type: ignore[union-attr]
            assert rows_of(ours)[0] == rows_of(theirs)[0]
            assert unordered(rows_of(ours)[1]) == unordered(rows_of(theirs)[1]), (left, right, how)


def test_many_to_many_over_several_morsels_matches_polars(tmp_path):
    rng = np.random.default_rng(0)
    n = 150_000  # more than two morsels of the probe side
    left = pa.table({"k": rng.integers(0, 50_000, n), "a": np.arange(n)})
    right = pa.table({"k": rng.integers(0, 50_000, 60_000), "b": np.arange(60_000)})
    path = write_arrow(tmp_path / "left.arrow", left, batch_rows=40_000)
    for how in ["inner", "left", "full", "semi"]:
        ours = relay.scan(path).join(relay.from_arrow(right), on="k", how=how)
        theirs = pl.from_arrow(left).join(pl.from_arrow(right), on="k", how=how)  # type: ignore[union-attr]
        ours_sorted = pl.from_arrow(pa.table(ours)).sort(pl.all(), nulls_last=True)  # type: ignore[union-attr]
        assert ours_sorted.equals(theirs.sort(pl.all(), nulls_last=True)), how


def test_large_build_sides_partitioned_by_hash_match_polars_in_order(tmp_path):
    """Build sides of 270 k rows (built in hash partitions, in parallel) and small build sides
    of left, right and full joins, on an integer key, a packed pair of keys and row-format
    string keys; rows in Polars' maintained order."""
    rng = np.random.default_rng(1)

    def table(rows: int, name: str) -> pa.Table:
        k = rng.integers(0, 2_000_000, rows)
        return pa.table(
            {
                "k": pa.array(k, mask=rng.random(rows) < 0.01),
                "j": k % 7,
                "s": pa.array([f"key number {v}" for v in k]),
                name: np.arange(rows),
            }
        )

    big, other_big, small = table(270_000, "a"), table(270_000, "b"), table(30_000, "b")
    for keys in [{"on": "k"}, {"on": ["k", "j"]}, {"on": "s"}]:
        # Inner: both sides large, the built one partitioned. Left: the small left side built.
        check_against_polars(big, other_big, "inner", (100_000, None), tmp_path, **keys)
        check_against_polars(small, big, "left", (None, None), tmp_path, **keys)
    # The smaller side built for right and full joins, its unmatched rows placed in order.
    check_against_polars(big, small, "right", (100_000, None), tmp_path, on="k")
    check_against_polars(small, big, "full", (None, 100_000), tmp_path, on="k")


# -- composition: files, memory, filters, selects, aggregations ----------------------------------


@pytest.fixture
def people_and_cities(tmp_path):
    people = pa.table(
        {
            "id": pa.array(range(8), pa.int64()),
            "city": ["oslo", "rome", "oslo", None, "lima", "rome", "oslo", "nuuk"],
            "age": pa.array([30, 41, 25, 60, 33, 52, 47, 19], pa.int32()),
        }
    )
    cities = pa.table(
        {
            "city": ["oslo", "rome", "lima", "pune"],
            "country": ["no", "it", "pe", "in"],
            "pop": [0.7, 2.8, 10.0, 3.1],
        }
    )
    return (
        relay.scan(write_arrow(tmp_path / "people.arrow", people, batch_rows=3)),
        relay.scan(write_arrow(tmp_path / "cities.arrow", cities)),
        pl.from_arrow(people),
        pl.from_arrow(cities),
    )


def test_join_then_filter_select_and_group_by(people_and_cities):
    people, cities, pl_people, pl_cities = people_and_cities
    joined = people.join(cities, on="city", how="left")
    ours = joined.filter((col("age") > 26) & col("country").is_not_null()).select("id", "country")
    theirs = (
        pl_people.join(pl_cities, on="city", how="left")
        .filter((pl.col("age") > 26) & pl.col("country").is_not_null())
        .select("id", "country")
    )
    assert pa.table(ours).to_pylist() == theirs.to_arrow().to_pylist()
    grouped = joined.group_by("country").agg([col("age").mean().alias("mean_age")]).sort("country")
    expected = (
        pl_people.join(pl_cities, on="city", how="left")
        .group_by("country")
        .agg(pl.col("age").mean().alias("mean_age"))
        .sort("country")
    )
    assert pa.table(grouped).to_pylist() == expected.to_arrow().to_pylist()
    # A filter on the right side of a left join stays above it (nulls of unmatched rows fail it).
    kept = joined.filter(col("pop") < 5.0)
    assert sorted(kept["id"].to_pylist()) == [0, 1, 2, 5, 6]


def test_the_optimizer_pushes_filters_and_prunes_columns_into_both_sides(people_and_cities):
    people, cities, _, _ = people_and_cities
    plan = (
        people.join(cities, on="city")
        .filter((col("age") > 30) & (col("pop") > 1.0))
        .select("id", "country")
    )
    text = plan.explain()
    optimized = text.split("optimized plan:")[1].split("columns:")[0]
    assert "JOIN how=inner" in optimized and "FILTER" not in optimized, optimized
    assert 'columns=[id, city, age] rows=0..8 filters=[(col("age") > 30)]' in optimized, optimized
    assert 'columns=[city, country, pop] rows=0..4 filters=[(col("pop") > 1.0)]' in optimized, (
        optimized
    )
    assert "columns=[id, country]" in optimized, optimized
    assert "id (int64): copy: join() gathered the matched rows into new memory" in text
    assert sorted(pa.table(plan).to_pylist(), key=repr) == sorted(
        [{"id": 1, "country": "it"}, {"id": 5, "country": "it"}, {"id": 4, "country": "pe"}],
        key=repr,
    )
    # A full join keeps the filter above it.
    full = people.join(cities, on="city", how="full").filter(col("age") > 30).explain()
    assert "FILTER" in full.split("optimized plan:")[1].split("columns:")[0]


def test_profile_records_the_join(people_and_cities):
    people, cities, _, _ = people_and_cities
    rows = people.join(cities, on="city", how="semi").profile()
    join = [row for row in rows if row["operator"].startswith("JOIN how=semi")]
    assert len(join) == 1
    assert join[0]["rows_in"] == 12 and join[0]["rows_out"] == 6 and join[0]["bytes_copied"] == 0
    rows = people.join(cities, on="city").profile()
    inner = next(row for row in rows if row["operator"].startswith("JOIN how=inner"))
    assert inner["rows_out"] == 6 and inner["bytes_copied"] > 0
    # A select above the join: only the selected column is gathered.
    rows = people.join(cities, on="city").select("pop").profile()
    narrow = next(row for row in rows if row["operator"].startswith("JOIN how=inner"))
    assert "columns=[pop]" in narrow["operator"]
    assert 0 < narrow["bytes_copied"] < inner["bytes_copied"]


def test_in_memory_frames_from_numpy_and_arrow_join():
    left = relay.from_numpy({"k": np.array([3, 1, 2, 1]), "a": np.arange(4.0)})
    right = relay.from_arrow(pa.table({"k": pa.array([1, 2, 5], pa.int16()), "b": ["x", "y", "z"]}))
    joined = left.join(right, on="k", how="left")
    assert pa.table(joined).to_pydict() == {
        "k": [3, 1, 2, 1],
        "a": [0.0, 1.0, 2.0, 3.0],
        "b": [None, "x", "y", "x"],
    }
    assert joined.select("a", "b").to_pandas()["a"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert joined["b"].to_pylist() == [None, "x", "y", "x"]
    assert len(joined) == 4


def test_joined_frames_pickle_as_recipes(people_and_cities):
    people, cities, _, _ = people_and_cities
    joined = people.join(cities, on="city", how="anti").filter(col("age") > 20)
    restored = pickle.loads(pickle.dumps(joined))
    assert pa.table(restored).equals(pa.table(joined))
    assert restored["id"].to_pylist() == [3]
    in_memory = relay.from_arrow(pa.table({"city": ["oslo"]})).join(cities, on="city")
    assert pa.table(pickle.loads(pickle.dumps(in_memory))).to_pylist() == [
        {"city": "oslo", "country": "no", "pop": 0.7}
    ]


# -- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_argument_column_and_types(people_and_cities):
    people, cities, _, _ = people_and_cities
    with pytest.raises(
        relay.RelayTypeError, match=r'col\("age"\) \(int32\).*col\("city"\) \(string\)'
    ):
        people.join(cities, left_on="age", right_on="city")
    with pytest.raises(TypeError):  # a RelayTypeError is a TypeError
        people.join(cities, left_on="age", right_on="pop")
    with pytest.raises(relay.ColumnNotFoundError, match="nope"):
        people.join(cities, on="nope")
    with pytest.raises(KeyError):
        people.join(cities, left_on="city", right_on="nope")
    with pytest.raises(relay.RelayValueError, match="how must be one of"):
        people.join(cities, on="city", how="outer")
    with pytest.raises(relay.RelayValueError, match="not both"):
        people.join(cities, on="city", left_on="city", right_on="city")
    with pytest.raises(relay.RelayValueError, match="right_on is missing"):
        people.join(cities, left_on="city")
    with pytest.raises(relay.RelayValueError, match="left_on has 2 keys and right_on has 1"):
        people.join(cities, left_on=["city", "id"], right_on=["city"])
    with pytest.raises(relay.RelayValueError, match="on names no key"):
        people.join(cities, on=[])
    with pytest.raises(relay.RelayTypeError, match="takes a relay_ml Frame"):
        people.join(pa.table({"city": ["x"]}), on="city")  # type: ignore[arg-type]
    with pytest.raises(relay.RelayTypeError, match="column names, expressions or columns"):
        people.join(cities, on=3)
    clashing = relay.from_arrow(pa.table({"city": ["oslo"], "age": [1], "age_right": [2]}))
    with pytest.raises(relay.RelayValueError, match='"age_right" appears twice'):
        people.join(clashing, on="city")


@pytest.mark.parametrize("how", ["semi", "anti"])
def test_a_selection_after_a_semi_or_anti_join_keeps_only_its_columns(how):
    """The optimizer prunes the join's columns to those selected above it; the join's output
    must hold exactly those."""
    left = relay.from_arrow(pa.table({"k": pa.array([0, 1, 2], pa.int32()), "y": [1, 2, 3]}))
    right = relay.from_arrow(pa.table({"k": pa.array([1, 5], pa.int32()), "r": [10, 11]}))
    joined = left.join(right, on="k", how=how).select(["k"])
    assert joined.columns == ["k"]
    assert pa.table(joined).to_pydict() == {"k": [1] if how == "semi" else [0, 2]}
    empty = relay.from_arrow(
        pa.table({"k": pa.array([], pa.int32()), "y": pa.array([], pa.int64())})
    )
    assert pa.table(empty.join(right, on="k", how=how).select(["y"])).column_names == ["y"]
