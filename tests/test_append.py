"""relay.append: appends that survive SIGKILL, schema checks, earlier readers, bounded streaming."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import rss_anon_bytes, write_arrow
from relay_ml._relay import inspect_file

# The rows of append number k in the crash test: a block of ids and values derived from them.
BLOCK_CODE = """
import numpy as np, pyarrow as pa

def block_size(k):
    return 1 + (k * 7919) % 20_000

def block_start(k):
    return sum(block_size(j) for j in range(k))

def block(k):
    ids = np.arange(block_start(k), block_start(k) + block_size(k), dtype=np.int64)
    return pa.table({
        "id": ids,
        "value": pa.array(ids * 0.5, mask=(ids % 11 == 0)),
        "name": pa.array([f"row {i}" for i in ids[:50]] + [None] * (len(ids) - min(len(ids), 50))),
    })
"""
namespace: dict = {}
exec(BLOCK_CODE, namespace)
block, block_size = namespace["block"], namespace["block_size"]

CHILD = BLOCK_CODE + textwrap.dedent(
    """
    import sys
    import relay_ml as relay
    path, first = sys.argv[1], int(sys.argv[2])
    relay.from_arrow(block(0))  # imports done before the first append
    print("ready", flush=True)
    k = first
    while True:
        relay.append(path, block(k))
        print(k, flush=True)
        k += 1
    """
)


def appends_in(path: Path) -> int:
    """How many whole blocks the file holds, checking that its rows are exactly blocks 0..n-1."""
    ids = relay.scan(path)["id"].to_numpy()
    n, rows = 0, 0
    while rows < len(ids):
        rows += block_size(n)
        n += 1
    assert rows == len(ids), f"{len(ids)} rows is not a whole number of appends"
    np.testing.assert_array_equal(ids, np.arange(len(ids)))
    return n


def test_appends_survive_sigkill_at_random_moments(tmp_path):
    kills = 100 if os.environ.get("RELAY_SLOW_TESTS") == "1" else 20
    rng = random.Random(20240601)
    path = tmp_path / "appended.arrow"
    held = 0  # appends the file holds
    torn = 0
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(held)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        reported = [int(line) for line in child.stdout.read().split()]
        child.wait()
        child.stdout.close()
        returned = held + len(reported)
        assert reported == list(range(held, returned))
        if path.exists() and not path.read_bytes().endswith(b"ARROW1"):
            torn += 1
        if not path.exists():
            assert returned == 0
            continue
        found = appends_in(path)
        # Every append that returned is there; the one in flight is there whole or not at all.
        assert returned <= found <= returned + 1, (returned, found)
        held = found
    # A last append makes a torn tail whole for every reader, pyarrow included.
    relay.append(path, block(held))
    expected = pa.concat_tables([block(k) for k in range(held + 1)])
    assert pa.ipc.open_file(path).read_all().equals(expected)
    assert relay.scan(path).to_arrow().equals(expected)
    print(f"{kills} kills, {held} appends held, {torn} torn tails recovered")
    assert held > kills  # the kills landed while appends were running


def test_append_creates_then_grows_the_file(tmp_path):
    path = tmp_path / "new.arrow"
    first = pa.table({"a": pa.array([1, None, 3], pa.int64()), "s": ["x", None, "z"]})
    assert relay.append(path, first)["rows"] == 3
    before = path.read_bytes()
    relay.append(path, relay.from_arrow(first).filter(relay.col("a") > 1))
    after = path.read_bytes()
    assert after[: len(before)] == before  # bytes are only ever added
    expected = pa.concat_tables([first, first.slice(2)])
    assert pa.ipc.open_file(path).read_all().equals(expected)
    assert relay.scan(path).to_arrow().equals(expected)
    report = inspect_file(str(path))
    assert all(b["offset"] % 64 == 0 for b in report["batches"])
    assert all(c["alignment"] == 64 for c in report["columns"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.arrow"]


def test_append_to_a_pyarrow_file_and_to_an_empty_file(tmp_path):
    table = pa.table({"x": np.arange(10, dtype=np.float64)})
    path = write_arrow(tmp_path / "pa.arrow", table)
    relay.append(path, table)
    assert pa.ipc.open_file(path).read_all().equals(pa.concat_tables([table, table]))
    empty = tmp_path / "empty.arrow"
    empty.touch()
    relay.append(empty, table)
    assert pa.ipc.open_file(empty).read_all().equals(table)


def test_schema_mismatch_raises_naming_both_schemas_and_writes_nothing(tmp_path):
    path = tmp_path / "data.arrow"
    relay.append(path, pa.table({"id": pa.array([1], pa.int64()), "x": [0.5]}))
    before = path.read_bytes()
    cases = [
        pa.table({"id": pa.array([1], pa.int32()), "x": [0.5]}),
        pa.table({"id": pa.array([1], pa.int64())}),
        pa.table({"x": [0.5], "id": pa.array([1], pa.int64())}),
    ]
    for table in cases:
        with pytest.raises(relay.RelayValueError) as error:
            relay.append(path, table)
        message = str(error.value)
        assert str(path) in message and "id: int64, x: float64" in message
        assert message.count("{") == 2
        assert path.read_bytes() == before


def test_dictionary_columns_append_against_the_files_dictionary(tmp_path):
    path = tmp_path / "dict.arrow"
    first = pa.table(
        {"city": pa.array(["oslo", "rome", None, "lima"]).dictionary_encode(), "n": [1, 2, 3, 4]}
    )
    relay.append(path, first)
    # The same column with another dictionary (other order, a subset of the values).
    second = pa.table(
        {"city": pa.array(["lima", "oslo", "lima"]).dictionary_encode(), "n": [5, 6, 7]}
    )
    relay.append(path, second)
    relay.append(path, relay.scan(path).filter(relay.col("n") <= 2))
    expected = ["oslo", "rome", None, "lima", "lima", "oslo", "lima", "oslo", "rome"]
    read = pa.ipc.open_file(path).read_all()
    assert read.num_rows == 9
    assert pa.types.is_dictionary(read.schema.field("city").type)
    assert read["city"].to_pylist() == expected
    assert read["n"].to_pylist() == [1, 2, 3, 4, 5, 6, 7, 1, 2]
    assert relay.scan(path)["city"].to_pylist() == expected
    import polars as pl

    assert pl.read_ipc(path)["city"].to_list() == expected
    # A value the file's dictionary lacks: a clear error, nothing written.
    before = path.read_bytes()
    with pytest.raises(relay.RelayValueError, match=r'column "city" holds the value "paris"'):
        relay.append(
            path, pa.table({"city": pa.array(["oslo", "paris"]).dictionary_encode(), "n": [8, 9]})
        )
    assert path.read_bytes() == before


def test_nested_dictionary_columns_and_bad_files_are_refused(tmp_path):
    nested = pa.array([["a"], ["b", "a"]], pa.list_(pa.dictionary(pa.int32(), pa.string())))
    with pytest.raises(relay.RelayValueError, match="dictionary"):
        relay.append(tmp_path / "dict.arrow", pa.table({"tags": nested}))
    assert not (tmp_path / "dict.arrow").exists()
    not_arrow = tmp_path / "text.arrow"
    not_arrow.write_text("hello, this is not an arrow file")
    with pytest.raises(relay.NotArrowFileError):
        relay.append(not_arrow, pa.table({"a": [1]}))
    with pytest.raises(relay.RelayTypeError):
        relay.append(tmp_path / "x.arrow", [1, 2])


def test_earlier_readers_keep_their_rows(tmp_path):
    path = tmp_path / "data.arrow"
    relay.append(path, pa.table({"x": np.arange(1000, dtype=np.int64)}))
    old = relay.scan(path)
    column = old["x"].to_numpy()
    relay.append(path, pa.table({"x": np.arange(1000, 1500, dtype=np.int64)}))
    np.testing.assert_array_equal(old["x"].to_numpy(), np.arange(1000))
    np.testing.assert_array_equal(column, np.arange(1000))
    assert old.filter(relay.col("x") >= 990).num_rows == 10
    np.testing.assert_array_equal(relay.scan(path)["x"].to_numpy(), np.arange(1500))


def test_concurrent_appends_from_threads(tmp_path):
    path = tmp_path / "data.arrow"

    def worker(t: int) -> None:
        for i in range(10):
            relay.append(path, pa.table({"t": pa.array([t] * (i + 1), pa.int64())}))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = pa.ipc.open_file(path).read_all()["t"].to_numpy()
    assert sorted(np.bincount(values).tolist()) == [55, 55, 55, 55]


def test_streaming_predictions_keep_memory_bounded(tmp_path):
    rows, batch_rows = 2_000_000, 50_000
    rng = np.random.default_rng(0)
    table = pa.table({f"f{i}": rng.standard_normal(rows).astype(np.float32) for i in range(4)})
    source = write_arrow(tmp_path / "huge.arrow", table)  # 32 MB, 40 batches of 0.8 MB
    out = tmp_path / "predictions.arrow"
    weights = np.arange(1, 5, dtype=np.float32)
    batch_bytes = batch_rows * 4 * 4
    baseline = None
    peak = 0
    for index, batch in enumerate(relay.scan(source, batch_size=batch_rows)):
        preds = batch.to_numpy() @ weights
        relay.append(out, batch.with_column("pred", preds))
        if index == 2:
            baseline = rss_anon_bytes()
        elif baseline is not None:
            peak = max(peak, rss_anon_bytes() - baseline)
    assert os.path.getsize(source) > 8 * batch_bytes
    assert peak < 6 * batch_bytes, f"RssAnon grew by {peak / 2**20:.1f} MiB while streaming"
    written = pa.ipc.open_file(out).read_all()
    assert written.num_rows == rows
    np.testing.assert_array_equal(written["f2"].to_numpy(), table["f2"].to_numpy())
    expected = np.column_stack([table[f"f{i}"].to_numpy() for i in range(4)]) @ weights
    np.testing.assert_allclose(written["pred"].to_numpy(), expected, rtol=1e-6)


def _three_appends(path: Path) -> tuple[bytes, int]:
    """Three appends of 20 rows; the file's bytes and where its last footer starts."""
    for start in (0, 20, 40):
        relay.append(path, pa.table({"id": np.arange(start, start + 20, dtype=np.int64)}))
    data = path.read_bytes()
    footer_length = int.from_bytes(data[-10:-6], "little")
    return data, len(data) - 10 - footer_length


def test_a_damaged_last_footer_never_drops_the_last_append_silently(tmp_path):
    """Flipping any byte of the last footer or its trailer either leaves all 60 rows readable or
    is a CorruptFileError naming the file; it never reads the file at the previous footer."""
    path = tmp_path / "log.arrow"
    data, footer_start = _three_appends(path)
    refused = 0
    for at in range(footer_start, len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            rows = len(relay.scan(path))
        except relay.CorruptFileError as error:
            assert str(path) in str(error)
            refused += 1
        else:
            assert rows == 60, f"byte {at}: {rows} rows"
    assert refused >= (len(data) - footer_start) // 2
    damaged = bytearray(data)
    damaged[footer_start + 1] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(relay.CorruptFileError, match=f"footer at byte offset {footer_start}"):
        relay.scan(path)


def test_repair_keeps_the_appends_before_a_damaged_footer_and_reports_the_loss(tmp_path):
    path = tmp_path / "log.arrow"
    data, _ = _three_appends(path)
    assert relay.repair(path) == {"rows": 60, "rows_dropped": 0, "bytes_dropped": 0}
    damaged = bytearray(data)
    damaged[-3] ^= 0x20  # a flipped bit in the trailing magic
    path.write_bytes(bytes(damaged))
    with pytest.raises(relay.CorruptFileError, match="repair"):
        relay.scan(path)
    report = relay.repair(path)
    assert report["rows"] == 40 and report["rows_dropped"] == 20
    assert report["bytes_dropped"] == len(data) - path.stat().st_size
    assert relay.scan(path)["id"].to_pylist() == list(range(40))
    assert pa.ipc.open_file(path).read_all()["id"].to_pylist() == list(range(40))
    relay.append(path, pa.table({"id": np.arange(40, 45, dtype=np.int64)}))
    assert relay.scan(path)["id"].to_pylist() == list(range(45))
    with pytest.raises(relay.RelayFileNotFoundError):
        relay.repair(tmp_path / "missing.arrow")
    with pytest.raises(relay.RelayTypeError):
        relay.repair(3)
