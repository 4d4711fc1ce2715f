"""Shared helpers: write Arrow files with pyarrow, and read this process's memory maps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest


def write_arrow(path: Path, table: pa.Table, batch_rows: int | None = None) -> Path:
    """Write `table` as an Arrow IPC file with pyarrow (8-byte aligned buffers), in record
    batches of `batch_rows` rows (one batch when None)."""
    with pa.ipc.new_file(path, table.schema) as writer:
        if batch_rows is None:
            writer.write_table(table, max_chunksize=max(table.num_rows, 1))
        else:
            writer.write_table(table, max_chunksize=batch_rows)
    return path


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges at which this process maps `path` (from /proc/self/maps)."""
    target = os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == target:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((start, end))
    return ranges


def address_in_file_mapping(address: int, path: Path) -> bool:
    return any(start <= address < end for start, end in mapped_ranges(path))


def rss_anon_bytes() -> int:
    """Anonymous resident memory of this process (RssAnon in /proc/self/status)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("RssAnon not found in /proc/self/status")


@pytest.fixture
def numeric_file(tmp_path: Path) -> tuple[Path, pa.Table]:
    rng = np.random.default_rng(0)
    n = 1000
    table = pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(rng.standard_normal(n).astype(np.float32)),
            "y": pa.array(rng.standard_normal(n)),
            "label": pa.array(rng.integers(0, 10, n).astype(np.int32)),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(rng.standard_normal(n * 8).astype(np.float32)), 8),
        }
    )
    return write_arrow(tmp_path / "numeric.arrow", table), table
