"""relay_ml.jax in this process: zero-copy checked by address, the 64-bit rule under JAX's
32-bit mode, batches. Run by tests/test_jax.py in a child pytest (JAX's backend starts threads,
which would make the forks of other test modules unsafe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import address_in_file_mapping, write_arrow

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from relay_ml.jax import explain, iter_batches, narrow_for_jax, to_jax  # noqa: E402

pytestmark = pytest.mark.skipif(
    jax.config.jax_enable_x64, reason="these tests expect JAX's default 32-bit mode"
)


def aligned(values: np.ndarray, alignment: int = 64) -> np.ndarray:
    """A copy of ``values`` whose data starts on an ``alignment``-byte boundary."""
    spare = alignment // values.itemsize
    buffer = np.empty(values.size + spare, dtype=values.dtype)
    start = (-buffer.ctypes.data % alignment) // values.itemsize
    out = buffer[start : start + values.size].reshape(values.shape)
    out[...] = values
    assert out.ctypes.data % alignment == 0
    return out


def file_with_column_at(tmp_path: Path, values: np.ndarray, remainder: int) -> Path:
    """An Arrow file (written by pyarrow) whose column "x" lies at an address that is
    ``remainder`` past a 64-byte boundary, found by padding the schema metadata."""
    for pad in range(0, 256, 8):
        path = write_arrow(
            tmp_path / f"x{pad}.arrow",
            pa.table({"x": values}).replace_schema_metadata({"pad": "p" * pad}),
        )
        if relay.scan(path)["x"].to_numpy().ctypes.data % 64 == remainder:
            return path
    raise AssertionError("no padding gave the wanted alignment")


def test_aligned_in_memory_column_is_zero_copy() -> None:
    x = aligned(np.arange(1000, dtype=np.float32))
    frame = relay.from_numpy({"x": x})
    array = to_jax(frame["x"])
    assert array.unsafe_buffer_pointer() == x.ctypes.data
    assert jnp.from_dlpack(frame["x"]).unsafe_buffer_pointer() == x.ctypes.data
    assert "zero-copy" in explain(frame)
    np.testing.assert_array_equal(np.asarray(array), x)


def test_aligned_file_column_is_a_view_of_the_mapping(tmp_path: Path) -> None:
    values = np.arange(4096, dtype=np.float32)
    path = file_with_column_at(tmp_path, values, 0)
    column = relay.scan(path)["x"]
    array = to_jax(column)
    assert address_in_file_mapping(array.unsafe_buffer_pointer(), path)
    assert explain(column) == "x (float32): zero-copy (DLPack view)"
    del column
    np.testing.assert_array_equal(np.asarray(array), values)  # the array keeps the mapping alive


def test_misaligned_column_copies_and_says_why(tmp_path: Path) -> None:
    values = np.arange(4096, dtype=np.float32)
    path = file_with_column_at(tmp_path, values, 8)
    column = relay.scan(path)["x"]
    assert "8 bytes past a 64-byte boundary" in explain(column)
    array = to_jax(column)
    assert not address_in_file_mapping(array.unsafe_buffer_pointer(), path)
    np.testing.assert_array_equal(np.asarray(array), values)


def test_frame_to_jax_and_fixed_size_lists() -> None:
    emb = aligned(np.arange(64, dtype=np.float32).reshape(16, 4))
    frame = relay.from_numpy({"emb": emb, "label": np.arange(16, dtype=np.int32)})
    arrays = to_jax(frame)
    assert set(arrays) == {"emb", "label"}
    assert arrays["emb"].shape == (16, 4)
    assert arrays["emb"].unsafe_buffer_pointer() == emb.ctypes.data
    np.testing.assert_array_equal(np.asarray(arrays["label"]), np.arange(16))


def test_copies_of_filters_and_nulls_are_explained(tmp_path: Path) -> None:
    path = write_arrow(
        tmp_path / "n.arrow", pa.table({"x": pa.array([1.0, None, 3.0], pa.float32())})
    )
    frame = relay.scan(path)
    assert "relay copies the column" in explain(frame)
    assert np.isnan(np.asarray(to_jax(frame["x"]))[1])
    filtered = frame.filter(relay.col("x") > 1)
    assert "filter" in explain(filtered)


# -- 64-bit values under the 32-bit default -------------------------------------------------


def test_int64_that_fits_becomes_int32() -> None:
    frame = relay.from_numpy({"i": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int64)})
    array = to_jax(frame["i"])
    assert array.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(array), [-(2**31), 0, 2**31 - 1])
    assert "32-bit mode" in explain(frame)


def test_int64_that_does_not_fit_raises_instead_of_wrapping() -> None:
    frame = relay.from_numpy({"id": np.array([1, 2**40], dtype=np.int64)})
    with pytest.raises(relay.RelayValueError, match=r"'id'.*jax_enable_x64"):
        to_jax(frame["id"])
    with pytest.raises(relay.RelayValueError, match="uint32"):
        narrow_for_jax(np.array([2**33], dtype=np.uint64), "u")


def test_float64_rounds_to_float32_but_never_overflows() -> None:
    values = np.array([0.1, -2.5, np.nan, np.inf], dtype=np.float64)
    array = to_jax(relay.from_numpy({"d": values})["d"])
    assert array.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(array), values.astype(np.float32))
    with pytest.raises(relay.RelayValueError, match="float32's range"):
        to_jax(relay.from_numpy({"d": np.array([1e300])})["d"])


# -- batches --------------------------------------------------------------------------------


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    n = 1000
    table = pa.table(
        {"x": np.arange(n, dtype=np.float32), "label": np.arange(n, dtype=np.int64) % 10}
    )
    return write_arrow(tmp_path / "train.arrow", table)


def test_iter_batches_in_order(train_file: Path) -> None:
    batches = list(iter_batches(relay.scan(train_file), 300))
    assert [len(b["x"]) for b in batches] == [300, 300, 300, 100]
    assert all(isinstance(b["x"], jax.Array) for b in batches)
    assert batches[0]["label"].dtype == jnp.int32  # int64 labels that fit, by the 32-bit rule
    np.testing.assert_array_equal(
        np.concatenate([np.asarray(b["x"]) for b in batches]), np.arange(1000)
    )


def test_iter_batches_shuffled_is_a_seeded_permutation(train_file: Path) -> None:
    frame = relay.scan(train_file)

    def epoch_rows(seed: int, epoch: int) -> np.ndarray:
        rows = [
            np.asarray(b["x"])
            for b in iter_batches(frame, 128, shuffle=True, seed=seed, epoch=epoch)
        ]
        return np.concatenate(rows).astype(np.int64)

    first = epoch_rows(1, 0)
    assert sorted(first.tolist()) == list(range(1000))
    assert not np.array_equal(first, np.arange(1000))
    np.testing.assert_array_equal(first, epoch_rows(1, 0))
    assert not np.array_equal(first, epoch_rows(1, 1))
    assert not np.array_equal(first, epoch_rows(2, 0))


def test_iter_batches_columns_and_drop_last(train_file: Path) -> None:
    batches = list(iter_batches(relay.scan(train_file), 300, columns=["label"], drop_last=True))
    assert len(batches) == 3 and all(
        set(b) == {"label"} and len(b["label"]) == 300 for b in batches
    )
