"""`relay inspect` and `relay convert`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa

import relay_ml as relay
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


def test_inspect_reads_every_format_scan_reads(tmp_path, capsys):
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.table({"x": np.arange(6, dtype=np.float64), "s": list("abcdef")})
    pq.write_table(table, tmp_path / "t.parquet")
    pacsv.write_csv(table, tmp_path / "t.csv")
    (tmp_path / "t.ndjson").write_text(
        "".join(json.dumps({"x": float(i), "s": c}) + "\n" for i, c in enumerate("abcdef"))
    )
    for name, format_name in [("t.parquet", "Parquet"), ("t.csv", "CSV"), ("t.ndjson", "NDJSON")]:
        assert main(["inspect", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        assert "rows:        6" in out and f"format:      {format_name}" in out, out
        assert f"no: decoded from {format_name}" in out
        assert main(["inspect", "--json", str(tmp_path / name)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert [c["name"] for c in report["columns"]] == ["x", "s"]
        assert not any(c["zero_copy"] for c in report["columns"])
        frame = relay.scan(tmp_path / name)
        assert all(c["reason"] == frame[c["name"]].copy_reason for c in report["columns"])


def test_version_and_a_closed_pipe(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "relay_ml.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("relay_ml ")
    wide = pa.table({f"column_{i}": np.arange(3) for i in range(2000)})
    path = write_arrow(tmp_path / "wide.arrow", wide)
    # `relay inspect wide.arrow | head -1`: the reader closes the pipe after one line.
    with subprocess.Popen(
        [sys.executable, "-m", "relay_ml.cli", "inspect", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as inspect:
        assert inspect.stdout is not None and inspect.stderr is not None
        assert inspect.stdout.readline().startswith(b"file:")
        inspect.stdout.close()
        stderr = inspect.stderr.read()
        assert inspect.wait(timeout=60) == 0, stderr
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr


def test_relay_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "relay_ml.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "inspect" in result.stdout


def test_convert_writes_one_aligned_uncompressed_batch(tmp_path, capsys):
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "x": rng.standard_normal(10_000).astype(np.float32),
            "s": pa.array([f"v{i}" if i % 5 else None for i in range(10_000)]),
            "city": pa.array(["a", "b", "c", "d"] * 2_500).dictionary_encode(),
        }
    )
    source = write_arrow(tmp_path / "in.arrow", table, batch_rows=999)
    out = tmp_path / "out.arrow"
    assert main(["convert", str(source), str(out)]) == 0
    assert "10,000 rows in 1 record batch," in capsys.readouterr().out
    reader = pa.ipc.open_file(out)
    assert reader.num_record_batches == 1
    assert reader.read_all().equals(table.combine_chunks())
    assert main(["inspect", "--json", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(c["alignment"] == 64 for c in report["columns"])
    assert report["batches"][0]["compression"] is None
    assert next(c["zero_copy"] for c in report["columns"])


def test_convert_batches_progress_and_in_place(tmp_path, capsys):
    table = pa.table({"x": np.arange(1000, dtype=np.int64)})
    source = write_arrow(tmp_path / "in.arrow", table)
    assert main(["convert", "--batch-size", "300", "--progress", str(source), str(source)]) == 0
    captured = capsys.readouterr()
    assert "4 record batches" in captured.out
    assert "relay convert" in captured.err and "1.00k/1.00k" in captured.err  # the tqdm bar
    reader = pa.ipc.open_file(source)
    assert [reader.get_batch(i).num_rows for i in range(4)] == [300, 300, 300, 100]
    assert reader.read_all().equals(table)
    # Without --batch-size, batches stay under --max-batch-bytes.
    out = tmp_path / "small.arrow"
    assert (
        main(["convert", "--max-batch-bytes", "4000", "--no-progress", str(source), str(out)]) == 0
    )
    assert pa.ipc.open_file(out).num_record_batches > 1
    assert capsys.readouterr().err == ""


def test_convert_without_tqdm_and_with_bad_input(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    source = write_arrow(tmp_path / "in.arrow", pa.table({"x": [1, 2, 3]}))
    assert main(["convert", "--progress", str(source), str(tmp_path / "out.arrow")]) == 0
    assert capsys.readouterr().err == ""
    bad = tmp_path / "bad.arrow"
    bad.write_text("not arrow")
    assert main(["convert", str(bad), str(tmp_path / "never.arrow")]) == 1
    assert "relay convert:" in capsys.readouterr().err
    assert not (tmp_path / "never.arrow").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.arrow", "in.arrow", "out.arrow"]


def test_convert_reads_parquet_csv_and_folders_and_writes_parquet(tmp_path, capsys):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    table = pa.table(
        {"x": np.arange(5_000, dtype=np.int64), "s": pa.array([f"v{i % 7}" for i in range(5_000)])}
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=1_000)
    assert (
        main(["convert", str(tmp_path / "in.parquet"), str(tmp_path / "from_parquet.arrow")]) == 0
    )
    assert "5,000 rows in 1 record batch," in capsys.readouterr().out
    assert pa.ipc.open_file(tmp_path / "from_parquet.arrow").read_all().equals(table)

    pcsv.write_csv(table, tmp_path / "in.csv")
    assert main(["convert", str(tmp_path / "in.csv"), str(tmp_path / "from_csv.arrow")]) == 0
    assert pa.ipc.open_file(tmp_path / "from_csv.arrow").read_all().equals(table)

    # Arrow IPC to Parquet; --batch-size is the row group size.
    assert (
        main(
            [
                "convert",
                "--batch-size",
                "2000",
                str(tmp_path / "from_csv.arrow"),
                str(tmp_path / "out.parquet"),
            ]
        )
        == 0
    )
    assert "5,000 rows" in capsys.readouterr().out
    written = pq.ParquetFile(tmp_path / "out.parquet")
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [
        2000,
        2000,
        1000,
    ]
    assert written.read().equals(table)

    # A folder of files converts as one.
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(table.slice(0, 2_000), folder / "a.parquet")
    pq.write_table(table.slice(2_000), folder / "b.parquet")
    assert main(["convert", str(folder), str(tmp_path / "joined.arrow")]) == 0
    assert pa.ipc.open_file(tmp_path / "joined.arrow").read_all().equals(table)


def test_convert_of_a_union_column_to_parquet_fails_cleanly(tmp_path, capfd):
    union = pa.UnionArray.from_sparse(
        pa.array([0, 1, 0], pa.int8()), [pa.array([1, 2, 3]), pa.array(["a", "b", "c"])]
    )
    source = write_arrow(tmp_path / "in.arrow", pa.table({"id": [1, 2, 3], "u": union}))
    assert main(["convert", str(source), str(tmp_path / "out.parquet")]) == 1
    err = capfd.readouterr().err
    assert "relay convert:" in err and 'column "u"' in err and "union" in err
    assert "panicked" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.arrow"]
