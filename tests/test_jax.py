"""relay_ml.jax: every test runs JAX in a child process. JAX's backend starts threads when it
initializes, and an os.fork() afterwards (DataLoader workers in test_torch) risks a deadlock, so
no JAX backend ever starts in the pytest process itself. The in-process cases (zero-copy by
address, the 64-bit rule, batches) are in tests/jax_in_process.py, run here by a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from conftest import write_arrow

pytest.importorskip("jax")

TESTS = Path(__file__).resolve().parent


def test_in_process_cases() -> None:
    """tests/jax_in_process.py in a child pytest; its output is shown when it fails."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(TESTS / "jax_in_process.py"),
        ],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_x64_mode_keeps_64_bit_columns() -> None:
    out = run_python(
        """
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np, relay_ml as relay
        from relay_ml.jax import to_jax
        frame = relay.from_numpy({"id": np.array([1, 2**40]), "d": np.array([1e300, 0.5])})
        ids, d = to_jax(frame["id"]), to_jax(frame["d"])
        print(ids.dtype, int(ids[1]) == 2**40, d.dtype, float(d[0]) == 1e300)
        """
    )
    assert out.split() == ["int64", "True", "float64", "True"]


@pytest.fixture
def train_file(tmp_path: Path) -> Path:
    n = 1000
    table = pa.table(
        {"x": np.arange(n, dtype=np.float32), "label": np.arange(n, dtype=np.int64) % 10}
    )
    return write_arrow(tmp_path / "train.arrow", table)


def test_iter_batches_with_a_sharding_over_two_host_devices(train_file: Path) -> None:
    out = run_python(
        f"""
        import jax, numpy as np, relay_ml as relay
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        from relay_ml.jax import iter_batches
        devices = jax.devices()
        assert len(devices) == 2, devices
        sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
        seen = []
        batches = iter_batches(
            relay.scan({str(train_file)!r}), 200, shuffle=True, seed=3, sharding=sharding
        )
        for batch in batches:
            x = batch["x"]
            assert x.sharding == sharding, x.sharding
            assert [s.data.shape for s in x.addressable_shards] == [(100,), (100,)]
            assert {{s.device for s in x.addressable_shards}} == set(devices)
            seen.append(np.asarray(x))
        print(sorted(np.concatenate(seen).astype(int).tolist()) == list(range(1000)))
        """,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    assert out.strip() == "True"


def test_example_runs() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "jax_train.py"
    result = subprocess.run(
        [sys.executable, "-W", "error", str(example), "--rows", "20000", "--epochs", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout
