"""Row and column operations that keep frames lazy or zero-copy: take, sample, collect,
iter_batches / scan(batch_size=...), view (bit reinterpretation) and with_column(array)."""

from __future__ import annotations

import gc
import pickle

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relay_ml as relay
from conftest import address_in_file_mapping, write_arrow
from relay_ml import col

# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def mixed_file(tmp_path):
    """Several record batches (of 7 rows), with nulls and strings."""
    rng = np.random.default_rng(1)
    n = 40
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "f": pa.array(rng.standard_normal(n).astype(np.float32)),
            "maybe": pa.array([None if i % 5 == 0 else i * 10 for i in range(n)], pa.int32()),
            "name": pa.array([f"row{i}" for i in range(n)]),
        }
    )
    return write_arrow(tmp_path / "mixed.arrow", table, batch_rows=7), table


def as_table(frame) -> pa.Table:
    return pa.table(frame)


def assert_same_rows(frame, expected: pa.Table) -> None:
    got = as_table(frame)
    assert got.column_names == expected.column_names
    assert got.num_rows == expected.num_rows
    for name in expected.column_names:
        assert got[name].to_pylist() == expected[name].to_pylist(), name


# -- take -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "indices",
    [
        [5, 3, 999, 0, 3],
        np.array([10, -1, -1000, 500], dtype=np.int64),
        np.array([7, 2], dtype=np.uint32),
        range(100, 90, -1),
        np.random.default_rng(0).permutation(1000),
    ],
)
def test_take_matches_numpy_indexing_in_order(numeric_file, indices):
    path, table = numeric_file
    taken = relay.scan(path).take(indices)
    positions = np.asarray(list(indices) if isinstance(indices, range) else indices).astype(
        np.int64
    )
    assert len(taken) == len(positions)
    for name in ("id", "x", "y", "label"):
        np.testing.assert_array_equal(taken[name].to_numpy(), table[name].to_numpy()[positions])
    np.testing.assert_array_equal(
        taken["emb"].to_numpy(),
        table["emb"].combine_chunks().flatten().to_numpy().reshape(-1, 8)[positions],
    )
    np.testing.assert_array_equal(
        taken.select("x", "y").to_numpy(order="F"),
        np.stack([table["x"].to_numpy()[positions], table["y"].to_numpy()[positions]], axis=1),
    )


def test_take_across_record_batches_with_nulls_and_strings_matches_pyarrow(mixed_file):
    path, table = mixed_file
    indices = [39, 0, 6, 7, 7, 13, 14, 2, 38, 21]
    taken = relay.scan(path).take(indices)
    assert_same_rows(taken, table.take(indices))
    expected = pl.DataFrame(table)[indices]
    assert pl.DataFrame(taken).equals(expected)


def test_take_is_a_selection_until_export(numeric_file):
    path, _ = numeric_file
    taken = relay.scan(path).take([3, 1, 2])
    assert "TAKE 3 rows [3, 1, 2]" in taken.explain()
    column = taken["x"]
    assert not column.is_zero_copy
    assert "take() or sample()" in column.copy_reason
    with pytest.raises(relay.ZeroCopyError, match="take"):
        column.to_numpy(zero_copy=True)
    operators = [row["operator"] for row in taken.profile()]
    assert any(op.startswith("TAKE") for op in operators)
    assert all(row["bytes_copied"] == 0 for row in taken.profile())


def test_take_out_of_range_names_the_index_and_the_length(numeric_file):
    path, _ = numeric_file
    frame = relay.scan(path)
    with pytest.raises(relay.RelayValueError, match=r"index 1000 .*1000 rows") as info:
        frame.take([0, 1000])
    assert isinstance(info.value, ValueError)
    with pytest.raises(relay.RelayValueError, match=r"index -1001 .*1000 rows"):
        frame.take([-1001])
    with pytest.raises(relay.RelayValueError, match=r"index 18446744073709551615"):
        frame.take(np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(relay.RelayValueError, match=r"index 3 .*3 rows"):
        frame.head(3).take([3])


def test_take_rejects_masks_and_non_integers(numeric_file):
    path, _ = numeric_file
    frame = relay.scan(path)
    with pytest.raises(relay.RelayTypeError, match="mask"):
        frame.take(np.ones(1000, dtype=bool))
    with pytest.raises(relay.RelayTypeError, match="integer"):
        frame.take([1.5, 2.0])
    with pytest.raises(relay.RelayTypeError):
        frame.take(3)
    with pytest.raises(relay.RelayValueError, match="1-D"):
        frame.take(np.zeros((2, 2), dtype=np.int64))


def test_take_of_nothing_is_an_empty_frame_with_the_schema(numeric_file, mixed_file):
    path, _ = numeric_file
    for indices in ([], np.array([], dtype=np.int64)):
        empty = relay.scan(path).take(indices)
        assert len(empty) == 0 and empty.columns == ["id", "x", "y", "label", "emb"]
        assert empty["x"].to_numpy().shape == (0,)
        assert empty["emb"].to_numpy().shape == (0, 8)
        assert empty.select("x", "y").to_numpy().shape == (0, 2)
        assert as_table(empty).num_rows == 0
    mixed, table = mixed_file
    assert as_table(relay.scan(mixed).take([])).schema == table.schema


def test_take_composes_with_filter_slice_and_take(mixed_file):
    path, table = mixed_file
    frame = relay.scan(path)
    ids = table["id"].to_numpy()
    # take of a filtered frame: positions among the filtered rows
    kept = ids[ids % 3 == 0]
    taken = frame.filter(col("id") % 3 == 0).take([4, 0, -1])
    np.testing.assert_array_equal(taken["id"].to_numpy(), kept[[4, 0, -1]])
    # take of a take composes into one take
    twice = frame.take([30, 20, 10, 0]).take([3, 0, 0])
    assert twice.explain().count("TAKE") == 2  # once in the logical, once in the optimized plan
    np.testing.assert_array_equal(twice["id"].to_numpy(), [0, 30, 30])
    # slices and heads of a take
    perm = np.random.default_rng(3).permutation(40)
    shuffled = frame.take(perm)
    np.testing.assert_array_equal(shuffled.slice(5, 10)["id"].to_numpy(), perm[5:15])
    np.testing.assert_array_equal(
        shuffled.head(3)["name"].to_pylist(), [f"row{i}" for i in perm[:3]]
    )


@pytest.mark.parametrize("batch_rows", [None, 7])
def test_filter_after_an_unordered_take_keeps_the_take_order(tmp_path, batch_rows):
    n = 300
    table = pa.table(
        {"id": np.arange(n, dtype=np.int64), "v": np.arange(n, dtype=np.float64) * 0.5}
    )
    path = write_arrow(tmp_path / "t.arrow", table, batch_rows=batch_rows)
    perm = np.random.default_rng(7).permutation(n)
    perm = np.concatenate([perm, perm[:50]])  # repeats too
    frame = relay.scan(path).take(perm)
    filtered = frame.filter(col("id") % 4 != 1).filter(col("v") < 120)
    expected = perm[(perm % 4 != 1) & (perm * 0.5 < 120)]
    np.testing.assert_array_equal(filtered["id"].to_numpy(), expected)
    # two passes over the rows (backwards once), no row copied by the take
    halves = np.concatenate([np.arange(n), np.arange(n)])
    again = relay.scan(path).take(halves).filter(col("id") % 7 == 0)
    np.testing.assert_array_equal(again["id"].to_numpy(), halves[halves % 7 == 0])
    assert all(
        row["bytes_copied"] == 0 for row in again.profile() if row["operator"].startswith("TAKE")
    )
    # a sorted take of a shuffled frame still reads rows backwards
    nested = frame.select("id", "v").take(np.arange(0, 350, 2)).filter(col("id") % 2 == 0)
    inner = perm[np.arange(0, 350, 2)]
    np.testing.assert_array_equal(nested["id"].to_numpy(), inner[inner % 2 == 0])
    # through a projection and a computed column too
    computed = frame.with_column("w", col("v") * 2).select("id", "w").filter(col("w") > 100)
    np.testing.assert_array_equal(computed["id"].to_numpy(), perm[perm * 1.0 > 100])


@st.composite
def row_pipelines(draw):
    """A file layout and a random chain of take / filter / slice / collect / sample / view
    steps (the strategy follows the row count, so a take can come after a filter)."""
    rows = draw(st.integers(0, 60))
    batch_rows = draw(st.sampled_from([None, 1, 4, 13]))
    steps = []
    current = np.arange(rows, dtype=np.int64)
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["take", "filter", "slice", "collect", "sample", "view"]))
        length = len(current)
        if kind == "take":
            count = draw(st.integers(0, 30)) if length else 0
            indices = (
                draw(st.lists(st.integers(-length, length - 1), min_size=count, max_size=count))
                if length
                else []
            )
            steps.append(("take", indices))
            current = current[np.asarray(indices, dtype=np.int64)]
        elif kind == "filter":
            modulus = draw(st.integers(2, 4))
            steps.append(("filter", modulus))
            current = current[current % modulus != 0]
        elif kind == "slice":
            offset, count = draw(st.integers(0, 10)), draw(st.integers(0, 20))
            steps.append(("slice", offset, count))
            current = current[offset : offset + count]
        elif kind == "sample":
            n, seed = draw(st.integers(0, min(5, length))), draw(st.integers(0, 2**64 - 1))
            steps.append(("sample", n, seed))
            current = current[reference_sample(length, n, seed)]
        else:
            steps.append((kind,))
    return rows, batch_rows, steps, current


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(row_pipelines())
def test_random_row_pipelines_match_numpy(tmp_path, pipeline):
    rows, batch_rows, steps, expected = pipeline
    table = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "v": pa.array([None if i % 6 == 5 else float(i) for i in range(rows)], pa.float64()),
        }
    )
    path = write_arrow(tmp_path / f"p{rows}_{batch_rows}.arrow", table, batch_rows=batch_rows)
    frame = relay.scan(path)
    for step in steps:
        if step[0] == "take":
            frame = frame.take(step[1])
        elif step[0] == "filter":
            frame = frame.filter(col("id") % step[1] != 0)
        elif step[0] == "slice":
            frame = frame.slice(step[1], step[2])
        elif step[0] == "collect":
            frame = frame.collect()
        elif step[0] == "view":
            frame = frame.view({"id": "uint64"}).filter(col("id") < 2**63).view({"id": "int64"})
        else:
            frame = frame.sample(step[1], seed=step[2])
    assert len(frame) == len(expected)
    assert frame["id"].to_pylist() == expected.tolist()
    values = pa.table(frame)["v"].to_pylist()
    assert values == [None if i % 6 == 5 else float(i) for i in expected]
    batches = [b["id"].to_pylist() for b in frame.iter_batches(7)]
    assert [value for batch in batches for value in batch] == expected.tolist()


def test_filters_after_takes_across_morsels_of_a_large_batch(tmp_path):
    # The filter works in morsels of 64Ki rows of a chunk: selections that jump back across
    # morsels must come out in the take's order.
    n = 200_000
    path = write_arrow(tmp_path / "large.arrow", pa.table({"id": np.arange(n, dtype=np.int64)}))
    frame = relay.scan(path)
    backwards = np.concatenate(
        [np.arange(150_000, 150_300), np.arange(0, 300), np.arange(70_000, 70_300)]
    )
    got = frame.take(backwards).filter(col("id") % 3 == 0)
    np.testing.assert_array_equal(got["id"].to_numpy(), backwards[backwards % 3 == 0])
    shuffled = np.random.default_rng(11).choice(n, 5000)
    got = frame.take(shuffled).filter(col("id") % 3 == 0)
    np.testing.assert_array_equal(got["id"].to_numpy(), shuffled[shuffled % 3 == 0])
    nested = frame.take(shuffled).take(np.arange(0, 5000, 2)).filter(col("id") > n // 2)
    inner = shuffled[::2]
    np.testing.assert_array_equal(nested["id"].to_numpy(), inner[inner > n // 2])


# -- sample -----------------------------------------------------------------------------------

MASK64 = 2**64 - 1


def reference_sample(num_rows: int, n: int, seed: int, replace: bool = False) -> list[int]:
    """An independent implementation of relay's sampler: SplitMix64, Lemire's bounded draw,
    Floyd's algorithm."""
    state = seed

    def next_u64() -> int:
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(bound: int) -> int:
        product = next_u64() * bound
        if product & MASK64 < bound:
            threshold = (2**64 - bound) % bound
            while product & MASK64 < threshold:
                product = next_u64() * bound
        return product >> 64

    if replace:
        return sorted(below(num_rows) for _ in range(n))
    chosen: set[int] = set()
    for j in range(num_rows - n, num_rows):
        t = below(j + 1)
        chosen.add(j if t in chosen else t)
    return sorted(chosen)


def test_sample_is_distinct_sorted_and_reproducible(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path)
    sample = frame.sample(100, seed=42)
    ids = sample["id"].to_numpy()
    assert len(ids) == 100 and len(set(ids.tolist())) == 100
    assert np.all(np.diff(ids) > 0)
    np.testing.assert_array_equal(frame.sample(100, seed=42)["id"].to_numpy(), ids)
    assert not np.array_equal(frame.sample(100, seed=43)["id"].to_numpy(), ids)
    np.testing.assert_array_equal(sample["x"].to_numpy(), table["x"].to_numpy()[ids])


@pytest.mark.parametrize(
    ("num_rows", "n", "seed", "replace"),
    [
        (1000, 100, 42, False),
        (1000, 3, 0, False),
        (1000, 1000, 7, False),
        (1000, 900, 2**64 - 1, False),
        (1000, 50, 5, True),
        (1000, 2500, 9, True),
    ],
)
def test_sample_rows_are_the_same_on_every_machine(numeric_file, num_rows, n, seed, replace):
    # Both the bitmap and the hash-set form of Floyd's algorithm are exercised (n vs rows/256).
    path, _ = numeric_file
    ids = relay.scan(path).sample(n, seed=seed, replace=replace)["id"].to_numpy()
    assert ids.tolist() == reference_sample(num_rows, n, seed, replace)


def test_sample_of_a_large_frame_uses_the_hash_set_and_matches(tmp_path):
    n_rows = 100_000
    path = write_arrow(tmp_path / "big.arrow", pa.table({"id": np.arange(n_rows, dtype=np.int64)}))
    ids = relay.scan(path).sample(10, seed=123)["id"].to_numpy()
    assert ids.tolist() == reference_sample(n_rows, 10, 123)
    # pinned: the same rows on any machine and any version
    assert (
        reference_sample(n_rows, 3, 2024) == relay.scan(path).sample(3, seed=2024)["id"].to_pylist()
    )


def test_sample_is_uniform(tmp_path):
    path = write_arrow(tmp_path / "ten.arrow", pa.table({"id": np.arange(10, dtype=np.int64)}))
    frame = relay.scan(path)
    counts = np.zeros(10)
    for seed in range(3000):
        counts[frame.sample(3, seed=seed)["id"].to_numpy()] += 1
    expected = 3000 * 3 / 10
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 30, counts  # 9 degrees of freedom: p < 0.001 beyond ~27.9


def test_sample_edge_cases(numeric_file, tmp_path):
    path, _ = numeric_file
    frame = relay.scan(path)
    assert len(frame.sample(0, seed=1)) == 0
    np.testing.assert_array_equal(frame.sample(1000, seed=1)["id"].to_numpy(), np.arange(1000))
    with pytest.raises(relay.RelayValueError, match=r"1001 distinct rows .*1000 rows"):
        frame.sample(1001, seed=1)
    with_repeats = frame.sample(1500, seed=1, replace=True)["id"].to_numpy()
    assert len(with_repeats) == 1500 and np.all(np.diff(with_repeats) >= 0)
    with pytest.raises(relay.RelayValueError):
        frame.sample(-1)
    with pytest.raises(relay.RelayValueError):
        frame.sample(1, seed=-5)
    with pytest.raises(relay.RelayTypeError):
        frame.sample(1.5)
    empty = frame.head(0)
    assert len(empty.sample(0, seed=3)) == 0
    with pytest.raises(relay.RelayValueError, match="empty"):
        empty.sample(2, seed=3, replace=True)
    # a sample of a filtered frame draws among the rows that pass
    odd = frame.filter(col("id") % 2 == 1).sample(20, seed=5)["id"].to_numpy()
    assert np.all(odd % 2 == 1) and len(set(odd.tolist())) == 20


def test_sample_without_seed_pickles_to_the_same_rows(numeric_file):
    path, _ = numeric_file
    sample = relay.scan(path).sample(50)
    again = pickle.loads(pickle.dumps(sample))
    np.testing.assert_array_equal(again["id"].to_numpy(), sample["id"].to_numpy())


# -- collect ----------------------------------------------------------------------------------


def test_collect_runs_the_plan_once_and_holds_the_result(mixed_file):
    path, _table = mixed_file
    frame = relay.scan(path).filter(col("id") % 3 != 0).with_column("g", col("f") * 2)
    collected = frame.collect()
    expected = pa.table(frame)
    assert_same_rows(collected, expected)
    text = collected.explain()
    assert "MEMORY" in text and "FILTER" not in text
    operators = [row["operator"] for row in collected.profile()]
    assert len(operators) == 1 and operators[0].startswith("MEMORY")
    # later operations work on the memory, not the file
    assert_same_rows(collected.slice(3, 4), expected.slice(3, 4))
    assert_same_rows(
        collected.filter(col("id") > 30), expected.filter(pa.compute.greater(expected["id"], 30))
    )
    assert_same_rows(collected.take([2, 0]), expected.take([2, 0]))
    # rows selected across record batches are gathered into one batch
    gathered = relay.scan(path).filter(col("id") % 3 != 0).collect()
    assert len(gathered["f"].to_arrow().chunks) == 1
    assert gathered["f"].to_pylist() == expected["f"].to_pylist()


def test_collected_copies_say_so_and_views_stay_views(numeric_file):
    path, table = numeric_file
    plain = relay.scan(path).select("x", "id").collect()
    array = plain["x"].to_numpy(zero_copy=True)
    assert address_in_file_mapping(array.ctypes.data, path)
    computed = relay.scan(path).with_column("z", col("x") + 1).collect()
    assert computed["x"].is_zero_copy
    assert "collected into memory" in computed["z"].copy_reason
    with pytest.raises(relay.ZeroCopyError, match="collected"):
        computed["z"].to_numpy(zero_copy=True)
    np.testing.assert_allclose(computed["z"].to_numpy(), table["x"].to_numpy() + 1)
    filtered = relay.scan(path).filter(col("label") == 2).collect()
    assert "collected into memory" in filtered["emb"].copy_reason
    mask = table["label"].to_numpy() == 2
    np.testing.assert_array_equal(
        filtered["emb"].to_numpy(),
        table["emb"].combine_chunks().flatten().to_numpy().reshape(-1, 8)[mask],
    )
    np.testing.assert_array_equal(
        filtered.select("id", "label").to_numpy()[:, 0], table["id"].to_numpy()[mask]
    )


def test_collect_of_nothing(numeric_file):
    path, _ = numeric_file
    empty = relay.scan(path).filter(col("id") < 0).collect()
    assert len(empty) == 0 and empty.columns == ["id", "x", "y", "label", "emb"]
    assert empty["emb"].to_numpy().shape == (0, 8)
    assert pa.table(empty).num_rows == 0


def test_collected_frames_pickle(mixed_file):
    path, _ = mixed_file
    collected = relay.scan(path).filter(col("id") > 20).collect()
    again = pickle.loads(pickle.dumps(collected))
    assert_same_rows(again, pa.table(collected))


# -- iter_batches and scan(batch_size=...) ----------------------------------------------------


def test_scan_with_batch_size_iterates_views_of_the_file(numeric_file):
    path, table = numeric_file
    batches = relay.scan(path, batch_size=300)
    assert isinstance(batches, relay.BatchIterator) and len(batches) == 4
    sizes, ids = [], []
    for batch in batches:
        sizes.append(len(batch))
        assert batch["x"].is_zero_copy
        x = batch["x"].to_numpy(zero_copy=True)
        assert address_in_file_mapping(x.ctypes.data, path)
        ids.append(batch.select("id", "label").to_numpy()[:, 0])
    assert sizes == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate(ids), table["id"].to_numpy())
    assert [len(b) for b in batches] == sizes  # iterable again


def test_batch_size_larger_than_the_frame_and_empty_frames(numeric_file):
    path, _ = numeric_file
    frame = relay.scan(path)
    batches = list(frame.iter_batches(5000))
    assert len(batches) == 1 and len(batches[0]) == 1000
    assert len(frame.iter_batches(1000)) == 1
    empty = frame.head(0).iter_batches(10)
    assert len(empty) == 0 and list(empty) == []
    assert len(frame.filter(col("id") < 0).iter_batches(10)) == 0


def test_batch_size_must_be_a_positive_int(numeric_file):
    path, _ = numeric_file
    for bad in (0, -3):
        with pytest.raises(relay.RelayValueError):
            relay.scan(path, batch_size=bad)
    for bad in (1.5, "10", True):
        with pytest.raises(relay.RelayTypeError):
            relay.scan(path).iter_batches(bad)


def test_filtered_frames_run_once_then_slice(mixed_file):
    path, _table = mixed_file
    frame = relay.scan(path).filter(col("maybe").is_not_null())
    batches = frame.iter_batches(5)
    expected = pa.table(frame)
    assert len(batches) == -(-expected.num_rows // 5)
    got = list(batches)
    for batch in got:
        assert not any(
            "FILTER" in row["operator"] or "filters" in row["operator"] for row in batch.profile()
        )
    assert pa.concat_tables([pa.table(b) for b in got]).equals(expected)


def test_batches_of_computed_and_taken_frames(mixed_file):
    path, _table = mixed_file
    perm = np.random.default_rng(2).permutation(40)
    frame = relay.scan(path).take(perm).with_column("g", col("f") + 1)
    got = pa.concat_tables([pa.table(b) for b in frame.iter_batches(6)])
    assert got.equals(pa.table(frame))
    np.testing.assert_array_equal(got["id"].to_numpy(), perm)


# -- view: bit reinterpretation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "dtype", "numpy_dtype"),
    [
        ("x", "int32", np.int32),
        ("x", np.uint32, np.uint32),
        ("label", "float32", np.float32),
        ("y", "int64", np.int64),
        ("id", "float64", np.float64),
        ("id", "uint64", np.uint64),
        ("id", "timestamp[us]", "datetime64[us]"),
        ("y", "duration[ns]", "timedelta64[ns]"),
    ],
)
def test_view_reinterprets_bits_without_copying(numeric_file, column, dtype, numpy_dtype):
    path, table = numeric_file
    viewed = relay.scan(path).view({column: dtype})
    array = viewed[column].to_numpy(zero_copy=True)
    assert address_in_file_mapping(array.ctypes.data, path)
    original = table[column].to_numpy()
    assert array.dtype == np.dtype(numpy_dtype)
    np.testing.assert_array_equal(array.view(original.dtype), original)
    assert "REINTERPRET" in viewed.explain()
    assert viewed.columns == ["id", "x", "y", "label", "emb"]


def test_view_of_fixed_size_lists_and_nulls(numeric_file, mixed_file):
    path, table = numeric_file
    emb = relay.scan(path).view({"emb": "uint32"})
    assert emb.schema["emb"].startswith("fixed_size_list<item: uint32>")
    array = emb["emb"].to_numpy(zero_copy=True)
    assert address_in_file_mapping(array.ctypes.data, path) and array.shape == (1000, 8)
    expected = table["emb"].combine_chunks().flatten().to_numpy().reshape(-1, 8)
    np.testing.assert_array_equal(array.view(np.float32), expected)
    mixed, mixed_table = mixed_file
    viewed = pa.table(relay.scan(mixed).view({"maybe": "uint32"}))
    assert viewed["maybe"].type == pa.uint32()
    assert (
        viewed["maybe"].to_pylist() == mixed_table["maybe"].cast(pa.uint32()).to_pylist()
    )  # same bits: values >= 0


def test_view_on_a_filtered_frame_is_gathered_correctly(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path).filter(col("label") < 3).view({"x": "uint32"})
    mask = table["label"].to_numpy() < 3
    np.testing.assert_array_equal(
        frame["x"].to_numpy(), table["x"].to_numpy()[mask].view(np.uint32)
    )
    assert "filter" in frame["x"].copy_reason
    # a filter on the viewed column sees the new type
    bits = relay.scan(path).view({"x": "uint32"}).filter(col("x") >= 2**31)  # negative floats
    np.testing.assert_array_equal(bits["id"].to_numpy(), np.flatnonzero(table["x"].to_numpy() < 0))


def test_view_needs_equal_widths_and_fixed_width_types(numeric_file, mixed_file):
    path, _ = numeric_file
    frame = relay.scan(path)
    with pytest.raises(relay.RelayTypeError, match=r'"x".*float.*int64.*widths differ') as info:
        frame.view({"x": "int64"})
    assert isinstance(info.value, TypeError)
    with pytest.raises(relay.RelayTypeError):
        frame.view({"id": "string"})
    mixed, _ = mixed_file
    with pytest.raises(relay.RelayTypeError, match="name"):
        relay.scan(mixed).view({"name": "int64"})
    with pytest.raises(relay.ColumnNotFoundError):
        frame.view({"nope": "int32"})
    with pytest.raises(relay.RelayTypeError):
        frame.view("x")


def test_view_back_to_the_original_type_is_no_view(numeric_file):
    path, table = numeric_file
    frame = relay.scan(path).view({"x": "int32"}).view({"x": "float32"})
    assert "REINTERPRET" not in frame.explain()
    np.testing.assert_array_equal(frame["x"].to_numpy(zero_copy=True), table["x"].to_numpy())


# -- with_column(array): referenced, not copied -----------------------------------------------


def test_a_numpy_array_is_referenced_not_copied(numeric_file):
    path, _table = numeric_file
    values = np.arange(1000, dtype=np.float64) * 1.5
    frame = relay.scan(path).with_column("w", values)
    assert frame.columns[-1] == "w" and frame.schema["w"] == "float64"
    column = frame["w"]
    assert column.is_zero_copy, column.copy_reason
    exported = column.to_numpy(zero_copy=True)
    assert exported.ctypes.data == values.ctypes.data
    assert "ATTACH [w: float64 (referenced)]" in frame.explain()
    assert "w (float64): view of the array attached" in frame.explain()
    # the file's columns are still views of the mapping
    assert address_in_file_mapping(frame["x"].to_numpy(zero_copy=True).ctypes.data, path)
    # referenced: a later write shows, and the frame keeps the memory alive
    values[0] = -7.0
    assert frame["w"].to_numpy()[0] == -7.0
    address = values.ctypes.data
    del values, column, exported
    gc.collect()
    again = frame["w"].to_numpy()
    assert again.ctypes.data == address and again[1] == 1.5
    # slices stay views of the same memory
    assert frame.slice(10, 5)["w"].to_numpy(zero_copy=True).ctypes.data == address + 10 * 8
    # and operations see the values
    assert frame.filter(col("w") > 1490)["id"].to_pylist() == [994, 995, 996, 997, 998, 999]
    assert pl.DataFrame(frame)["w"][3] == 4.5


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.arange(2000, dtype=np.int64)[::2], "not C-contiguous"),
        (np.arange(1000, dtype=">i4"), "big-endian"),
        (np.arange(1000) % 2 == 0, "booleans"),
        ([float(i) for i in range(1000)], "Python list"),
        (np.array([f"s{i}" for i in range(1000)]), "pyarrow"),
    ],
)
def test_arrays_without_arrow_layout_are_copied_and_say_so(numeric_file, values, reason):
    path, _ = numeric_file
    frame = relay.scan(path).with_column("w", values)
    column = frame["w"]
    assert not column.is_zero_copy and reason in column.copy_reason
    assert reason in frame.explain()
    expected = np.asarray(values)
    assert column.to_pylist() == expected.tolist()


def test_two_dimensional_arrays_are_fixed_size_lists(numeric_file):
    path, _ = numeric_file
    values = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    frame = relay.scan(path).with_column("v", values)
    assert frame.schema["v"].startswith("fixed_size_list<item: float32>[3]")
    exported = frame["v"].to_numpy(zero_copy=True)
    assert exported.ctypes.data == values.ctypes.data and exported.shape == (1000, 3)


def test_datetimes_keep_nat_as_null(numeric_file):
    path, _ = numeric_file
    values = np.arange(1000).astype("datetime64[ms]")
    values[5] = np.datetime64("NaT")
    frame = relay.scan(path).with_column("t", values)
    assert frame["t"].null_count == 1
    assert pa.table(frame)["t"].to_pylist()[5] is None
    assert frame.filter(col("t").is_null())["id"].to_pylist() == [5]


def test_arrow_arrays_and_columns_of_other_frames_are_referenced(numeric_file, tmp_path):
    path, table = numeric_file
    frame = relay.scan(path)
    arrow_values = pa.array(np.arange(1000, dtype=np.int32))
    with_arrow = frame.with_column("a", arrow_values)
    assert with_arrow["a"].to_numpy(zero_copy=True).ctypes.data == arrow_values.buffers()[1].address
    other_path = write_arrow(
        tmp_path / "other.arrow", pa.table({"z": np.arange(1000, dtype=np.float32) / 4})
    )
    other = relay.scan(other_path)["z"]
    with_other = frame.with_column("z", other)
    exported = with_other["z"].to_numpy(zero_copy=True)
    assert exported.ctypes.data == other.to_numpy().ctypes.data
    assert address_in_file_mapping(exported.ctypes.data, other_path)
    # a Column of this frame stays an expression
    same = frame.with_column("x2", frame["x"])
    assert "ATTACH" not in same.explain()
    np.testing.assert_array_equal(same["x2"].to_numpy(), table["x"].to_numpy())
    # polars series and chunked arrays come in through the Arrow stream interface
    series = pl.Series("s", np.arange(1000, dtype=np.int64))
    assert frame.with_column("s", series)["s"].to_pylist() == list(range(1000))
    chunked = pa.chunked_array([np.arange(500), np.arange(500, 1000)])
    with_chunked = frame.with_column("c", chunked)
    assert "2 chunks" in with_chunked["c"].copy_reason
    assert with_chunked["c"].to_pylist() == list(range(1000))


def test_attaching_replaces_in_place_and_chains(numeric_file):
    path, _ = numeric_file
    a = np.arange(1000, dtype=np.int64)
    b = np.arange(1000, dtype=np.float32)
    frame = relay.scan(path).with_column("x", b).with_column("a", a)
    assert frame.columns == ["id", "x", "y", "label", "emb", "a"]
    assert frame["x"].to_numpy(zero_copy=True).ctypes.data == b.ctypes.data
    assert frame["a"].to_numpy(zero_copy=True).ctypes.data == a.ctypes.data
    both = relay.scan(path).with_columns(p=a, q=col("id") * 2)
    np.testing.assert_array_equal(both["q"].to_numpy(), a * 2)


def test_attaching_needs_the_frame_length(numeric_file):
    path, _ = numeric_file
    with pytest.raises(relay.RelayValueError, match=r"5 rows.*1000") as info:
        relay.scan(path).with_column("w", np.zeros(5))
    assert isinstance(info.value, ValueError)
    with pytest.raises(relay.RelayValueError, match="dimensions"):
        relay.scan(path).with_column("w", np.zeros((10, 10, 10)))
    with pytest.raises(relay.RelayTypeError):
        relay.scan(path).with_column("w", relay.scan(path))


def test_attaching_to_a_filtered_frame_collects_it_first(mixed_file):
    path, _table = mixed_file
    frame = relay.scan(path).filter(col("id") >= 30)
    values = np.arange(10, dtype=np.int64) * 100
    attached = frame.with_column("h", values)
    assert "MEMORY" in attached.explain()
    assert attached["h"].to_numpy(zero_copy=True).ctypes.data == values.ctypes.data
    assert attached["id"].to_pylist() == list(range(30, 40))
    assert attached["name"].to_pylist() == [f"row{i}" for i in range(30, 40)]


def test_attached_arrays_over_several_record_batches(mixed_file):
    path, _table = mixed_file
    values = np.arange(40, dtype=np.float64) ** 2
    frame = relay.scan(path).with_column("sq", values)
    assert "record batches" in frame["sq"].copy_reason  # 6 chunks: one view is impossible
    np.testing.assert_array_equal(frame["sq"].to_numpy(), values)
    np.testing.assert_array_equal(
        frame.filter(col("sq") > 1000)["id"].to_numpy(), np.arange(32, 40)
    )
    np.testing.assert_array_equal(frame.take([39, 0])["sq"].to_numpy(), [39.0**2, 0.0])


def test_frames_with_attached_arrays_pickle(numeric_file):
    path, _ = numeric_file
    values = np.arange(1000, dtype=np.int16)
    frame = relay.scan(path).with_column("w", values).filter(col("w") > 990)
    again = pickle.loads(pickle.dumps(frame))
    assert again["w"].to_pylist() == list(range(991, 1000))
    other = relay.scan(path).take(np.arange(999, -1, -1))["y"]  # a Column of another frame
    via_column = pickle.loads(pickle.dumps(relay.scan(path).with_column("c", other)))
    np.testing.assert_array_equal(via_column["c"].to_numpy(), other.to_numpy())
