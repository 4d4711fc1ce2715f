"""A file truncated in place while relay has it mapped.

Reading a page of a mapping past the file's new end raises SIGBUS. Inside relay's own reads
(queries, loaders, datasets, DataLoader workers) that must become `FileChangedError` and never
kill the process, and no batch may carry the zeros that stand in for the lost pages. A view the
user already holds is not protected: reading it dies as a NumPy or pyarrow memory map does.

Each case runs in a child process, so that a SIGBUS fails the test instead of killing pytest.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import write_arrow

ROWS = 1 << 20


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """16 MiB of four float32 columns, every value nonzero (row i holds i + 1)."""
    values = np.arange(1, ROWS + 1, dtype=np.float32)
    table = pa.table({f"f{i}": values for i in range(4)})
    return write_arrow(tmp_path / "cut.arrow", table)


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    prelude = """
        import os, threading
        import numpy as np
        import relay_ml as relay

        def cut(path):
            os.truncate(path, 4096)
    """
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(prelude) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip().endswith("ok"), result.stdout


# Each reader consumes a few batches, the file is cut, and the rest of the epoch must fail with
# FileChangedError naming the file. Batches gathered before the cut may still arrive (the
# loaders fill ahead); none may hold a zero.
READERS = {
    "loader": """
        import relay_ml.torch as rt
        batches = iter(rt.loader(relay.scan(PATH), 4096, shuffle="global", seed=1))
    """,
    "loader_file_order": """
        import relay_ml.torch as rt
        batches = iter(rt.loader(relay.scan(PATH), 4096, prefetch=4))
    """,
    "iter_batches": """
        from relay_ml.batches import iter_batches
        batches = iter_batches(relay.scan(PATH), 4096, features=["f0", "f1", "f2", "f3"])
    """,
    "dataset": """
        import relay_ml.torch as rt
        dataset = rt.RelayDataset(relay.scan(PATH))
        order = np.random.default_rng(0).permutation(len(dataset))
        batches = (dataset.__getitems__(order[i : i + 4096].tolist())
                   for i in range(0, len(dataset), 4096))
    """,
    "dataloader_workers": """
        import torch
        import relay_ml.torch as rt
        dataset = rt.RelayIterableDataset(relay.scan(PATH), 4096, shuffle="global")
        batches = iter(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2))
    """,
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_cut_mid_epoch_raises_file_changed(path: Path, reader: str) -> None:
    code = f"""
        PATH = {str(path)!r}
        {textwrap.indent(textwrap.dedent(READERS[reader]), " " * 8).strip()}

        def values(batch):
            if isinstance(batch, tuple):
                batch = batch[0]
            if isinstance(batch, dict):
                return [np.asarray(v) for v in batch.values()]
            return [np.asarray(batch)]

        for _ in range(3):
            for array in values(next(batches)):
                assert array.all(), "a batch before the cut holds a zero"
        cut(PATH)
        after = 0
        try:
            for batch in batches:
                for array in values(batch):
                    assert array.all(), "a batch after the cut holds a zero"
                after += 1
        except relay.FileChangedError as error:
            assert PATH in str(error), error
        else:
            raise AssertionError("the epoch ended without an error")
        assert after <= 16, f"{{after}} batches after the cut"
        print("ok")
    """
    assert_ok(run_child(code))


def test_queries_racing_a_cut_fail_cleanly(path: Path) -> None:
    """Queries on four threads while the file is cut: each one returns the right answer or
    raises FileChangedError; none kills the process or returns zeros."""
    code = f"""
        PATH = {str(path)!r}
        frame = relay.scan(PATH)
        rows = frame.num_rows
        expected_sum = float(np.arange(1, rows + 1, dtype=np.float64).sum())
        outcomes = []
        started = threading.Barrier(5)

        def query(kind):
            started.wait()
            for _ in range(1000):
                try:
                    if kind == 0:
                        got = frame.filter(relay.col("f0") > 0).select(["f1"]).to_numpy()
                        assert len(got) == rows and got.all(), "wrong filter result"
                    elif kind == 1:
                        got = frame.select((relay.col("f2") * 2).alias("d")).to_arrow()
                        assert got.num_rows == rows
                        assert pa_compute.min(got["d"]).as_py() == 2.0, "zeros in a result"
                    elif kind == 2:
                        got = frame.sort("f3", descending=True).head(3)["f3"].to_numpy()
                        assert got[0] == rows, "wrong sort result"
                    else:
                        got = frame.group_by("f0").agg(relay.col("f1").sum()).num_rows
                        assert got == rows, "wrong group count"
                    outcomes.append("answer")
                except relay.FileChangedError as error:
                    assert PATH in str(error), error
                    outcomes.append("changed")
                    return

        import pyarrow.compute as pa_compute
        threads = [threading.Thread(target=query, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        import time
        time.sleep(0.3)
        cut(PATH)
        for thread in threads:
            thread.join()
        assert outcomes.count("changed") == 4, outcomes
        print("ok")
    """
    assert_ok(run_child(code))


def test_a_fresh_scan_after_a_cut_reads_the_new_file(path: Path) -> None:
    """A loader that met the cut leaves nothing behind: the file, rewritten, scans and loads
    with its new values."""
    code = f"""
        import pyarrow as pa
        import relay_ml.torch as rt
        PATH = {str(path)!r}
        batches = iter(rt.loader(relay.scan(PATH), 4096))
        next(batches)
        cut(PATH)
        try:
            for _ in batches:
                pass
        except relay.FileChangedError:
            pass
        table = pa.table({{"f0": np.full(10_000, 3.0, dtype=np.float32)}})
        with pa.ipc.new_file(PATH + ".new", table.schema) as writer:
            writer.write_table(table)
        os.replace(PATH + ".new", PATH)
        total = sum(float(b["f0"].sum()) for b in rt.loader(relay.scan(PATH), 1000))
        assert total == 30_000.0, total
        print("ok")
    """
    assert_ok(run_child(code))


def test_a_view_held_by_the_user_is_not_protected(path: Path) -> None:
    """The documented limit: a NumPy view exported before the cut and read by NumPy after it
    dies of SIGBUS, as a NumPy memory map of the same file does. Relay cannot stand between
    NumPy and the page."""
    for i, export in enumerate(('relay.scan(PATH)["f0"].to_numpy()', "np.memmap(PATH, np.uint8)")):
        copy = path.with_name(f"view{i}.arrow")
        shutil.copyfile(path, copy)
        code = f"""
            PATH = {str(copy)!r}
            view = {export}
            cut(PATH)
            print(float(view[-1]))
        """
        result = run_child(code)
        assert result.returncode == -signal.SIGBUS, (export, result.returncode, result.stderr)
