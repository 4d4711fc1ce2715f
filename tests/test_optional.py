"""A missing optional dependency names what needed it and how to install it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa

from conftest import write_arrow

# Runs in a fresh interpreter where the listed packages cannot be imported.
SCRIPT = """
import importlib.abc, sys

BLOCKED = {"torch", "jax", "pyarrow", "pandas", "narwhals", "sklearn"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Block())
import relay_ml as relay

frame = relay.scan(sys.argv[1])
calls = {
    "import relay_ml.torch": lambda: __import__("relay_ml.torch"),
    "Column.to_tensor": lambda: frame["x"].to_tensor(),
    "Column.to_jax": lambda: frame["x"].to_jax(),
    "Frame.to_arrow": lambda: frame.to_arrow(),
    "Frame.to_pandas": lambda: frame.to_pandas(),
    "Frame.__narwhals_dataframe__": lambda: frame.__narwhals_dataframe__(),
}
for name, call in calls.items():
    try:
        call()
        print(name, "-> no error")
    except ModuleNotFoundError as error:
        print(name, "->", error)
print("numpy still works:", frame["x"].to_numpy().sum())
"""


def test_missing_packages_say_what_to_install(tmp_path: Path) -> None:
    path = write_arrow(tmp_path / "x.arrow", pa.table({"x": [1.0, 2.0]}))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = dict(line.split(" -> ", 1) for line in done.stdout.splitlines() if " -> " in line)
    expected = {
        "import relay_ml.torch": ("relay_ml.torch needs torch", "'.[torch]'"),
        "Column.to_tensor": ("Column.to_tensor needs torch", "pip install torch"),
        "Column.to_jax": ("Column.to_jax needs jax", "'.[jax]'"),
        "Frame.to_arrow": ("Frame.to_arrow needs pyarrow", "pip install pyarrow"),
        "Frame.to_pandas": ("Frame.to_pandas needs pandas", "'.[pandas]'"),
        "Frame.__narwhals_dataframe__": ("needs narwhals", "'.[sklearn]'"),
    }
    for call, parts in expected.items():
        for part in parts:
            assert part in lines[call], (call, lines[call])
    assert "numpy still works: 3.0" in done.stdout
