"""`relay inspect`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa

from conftest import write_arrow
from relay_ml.cli import main


def test_inspect_reports_layout_and_zero_copy(tmp_path, capsys):
    table = pa.table(
        {
            "x": np.arange(10, dtype=np.float32),
            "s": pa.array([str(i) for i in range(10)]),
            "n": pa.array([1, None] * 5),
        }
    )
    path = write_arrow(tmp_path / "t.arrow", table)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rows:        10" in out and "batches:     1" in out and "compression: none" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line[:2] in ("x ", "s ", "n ")}
    assert lines["x"].rstrip().endswith("yes")
    assert "no:" in lines["s"] and "no:" in lines["n"] and "null" in lines["n"]

    assert main(["inspect", "--json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_rows"] == 10 and report["size"] == path.stat().st_size
    by_name = {c["name"]: c for c in report["columns"]}
    assert by_name["x"]["zero_copy"] and by_name["x"]["alignment"] >= 8
    assert by_name["n"]["null_count"] == 5


def test_inspect_missing_file_fails_cleanly(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.arrow")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_relay_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "relay_ml.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "inspect" in result.stdout
