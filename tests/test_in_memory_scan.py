"""``scan(memory_map=False)``: Arrow IPC files read into memory when opened, so that later
truncations and in-place writes of the file cannot reach what relay reads."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import write_arrow

ROWS = 1 << 20


def mapping_of(address: int) -> str:
    """The file behind the mapping that holds ``address`` ("" for anonymous memory)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            if start <= address < end:
                return fields[5].strip() if len(fields) == 6 else ""
    raise AssertionError(f"{address:#x} is in no mapping")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    values = np.arange(1, ROWS + 1, dtype=np.float32)
    return write_arrow(tmp_path / "data.arrow", pa.table({"f": values, "g": values * 2}))


def test_values_survive_a_truncation_and_an_in_place_rewrite(path: Path) -> None:
    frame = relay.scan(path, memory_map=False)
    expected = np.arange(1, ROWS + 1, dtype=np.float32)
    size = path.stat().st_size
    with open(path, "r+b") as handle:  # rewrite every byte in place, then cut the file
        handle.write(b"\xff" * size)
        handle.truncate(4096)
    np.testing.assert_array_equal(frame["f"].to_numpy(), expected)
    filtered = frame.filter(relay.col("f") > ROWS - 2).select(["g"]).to_numpy()
    np.testing.assert_array_equal(filtered.ravel(), expected[-2:] * 2)
    # A mapped scan of the cut file is refused, as before.
    with pytest.raises(relay.RelayError):
        relay.scan(path)["f"].to_numpy()


def test_a_loader_over_an_in_memory_scan_finishes_its_epoch_after_a_cut(path: Path) -> None:
    import relay_ml.torch as rt

    batches = iter(rt.loader(relay.scan(path, memory_map=False), 4096, shuffle="global", seed=1))
    seen = [next(batches)]
    os.truncate(path, 4096)
    seen.extend(batches)
    rows = np.concatenate([b["f"].numpy() for b in seen])
    np.testing.assert_array_equal(np.sort(rows), np.arange(1, ROWS + 1, dtype=np.float32))


def test_exports_are_views_of_the_copy_in_memory(path: Path) -> None:
    mapped = relay.scan(path)["f"].to_numpy()
    assert mapping_of(mapped.ctypes.data) == str(path)
    frame = relay.scan(path, memory_map=False)
    first = frame["f"].to_numpy()
    second = frame["f"].to_numpy()
    assert mapping_of(first.ctypes.data) != str(path)
    assert first.ctypes.data == second.ctypes.data  # one copy, read when opened
    assert not first.flags.writeable


def test_datasets_of_ipc_files_read_into_memory_too(tmp_path: Path) -> None:
    for part in range(3):
        values = np.full(1000, part + 1, dtype=np.int64)
        (tmp_path / f"part={part}").mkdir()
        write_arrow(tmp_path / f"part={part}" / "x.arrow", pa.table({"v": values}))
    frame = relay.scan(tmp_path, memory_map=False)
    assert int(frame["v"].to_numpy().sum()) == 1000 * (1 + 2 + 3)  # opens every file
    for part in range(3):
        os.truncate(tmp_path / f"part={part}" / "x.arrow", 64)
    assert int(frame["v"].to_numpy().sum()) == 1000 * (1 + 2 + 3)


def test_pickles_keep_memory_map_false(path: Path) -> None:
    frame = relay.scan(path, memory_map=False).filter(relay.col("f") <= 2)
    copy = pickle.loads(pickle.dumps(frame))
    os.truncate(path, 4096)
    np.testing.assert_array_equal(copy["f"].to_numpy(), [1.0, 2.0])


def test_memory_map_must_be_a_bool(path: Path) -> None:
    with pytest.raises(relay.RelayTypeError, match="memory_map must be a bool"):
        relay.scan(path, memory_map="no")  # type: ignore[arg-type]
