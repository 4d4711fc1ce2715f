"""Parquet: filter + select to NumPy, and conversion to Arrow IPC, against DuckDB, Polars, pyarrow.

Workload `tab` (DESIGN.md; made by make_data.py) written once as Parquet with pyarrow: zstd,
row groups of 1 M rows (`tab.parquet` beside `tab.arrow`).

1. Query `age > 94` -> columns f0..f3 as an (N, 4) float32 NumPy array, each method in
   `--processes` fresh processes (rounds of one per method, in turn): in each, the first run
   (file pages in the page cache, nothing else warm) and the median of `--repeats` more;
   reported as the medians over the processes. Results are checked against relay's (a
   mismatch prints WRONG VALUES).

       relay_ml   relay.scan(p).filter(col("age") > 94).select(f0..f3).to_numpy()
       duckdb     con.sql("select f0..f3 from read_parquet(p) where age > 94").fetchnumpy() + stack
       polars     pl.scan_parquet(p).filter(...).select(...).collect().to_numpy()
       pyarrow    pq.read_table(p, columns=f0..f3 + age, filters=age > 94) + stack

2. Convert the whole file to an uncompressed Arrow IPC file: `relay convert` (the CLI's code
   path, `relay.write(relay.scan(p), out)`) against pyarrow `pq.read_table` + `ipc.new_file`
   writing the table, one conversion per process, alternating between the two. Reported as the
   median seconds and input MB/s.

Usage:
    python benchmarks/bench_parquet.py [--data benchmarks/data] [--repeats 5] [--processes 3]
        [--convert-repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["f0", "f1", "f2", "f3"]

QUERY = {
    "relay_ml": """
import relay_ml as relay
from relay_ml import col
def run():
    return relay.scan(PATH).filter(col("age") > 94).select(*COLUMNS).to_numpy()
""",
    "duckdb": """
import duckdb
con = duckdb.connect()
def run():
    query = f"select {', '.join(COLUMNS)} from read_parquet('{PATH}') where age > 94"
    d = con.sql(query).fetchnumpy()
    return np.stack([d[c] for c in COLUMNS], axis=1)
""",
    "polars": """
import polars as pl
def run():
    return pl.scan_parquet(PATH).filter(pl.col("age") > 94).select(COLUMNS).collect().to_numpy()
""",
    "pyarrow": """
import pyarrow.parquet as pq
def run():
    t = pq.read_table(PATH, columns=COLUMNS, filters=[("age", ">", 94)])
    return np.stack([t[c].to_numpy() for c in COLUMNS], axis=1)
""",
}

CONVERT = {
    "relay_ml": """
import relay_ml as relay
def run(out):
    relay.write(relay.scan(PATH), out)
""",
    "pyarrow": """
import pyarrow as pa
import pyarrow.parquet as pq
def run(out):
    table = pq.read_table(PATH)
    with pa.ipc.new_file(out, table.schema) as writer:
        writer.write_table(table)
""",
}


def worker(kind: str, method: str, path: str, repeats: int) -> dict:
    import numpy as np

    namespace = {"np": np, "PATH": path, "COLUMNS": COLUMNS}
    exec((QUERY if kind == "query" else CONVERT)[method], namespace)
    run = namespace["run"]
    if kind == "query":
        started = time.perf_counter()
        result = run()
        first = time.perf_counter() - started
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            samples.append(time.perf_counter() - started)
        result = np.ascontiguousarray(result, dtype=np.float32)
        return {
            "first_ms": first * 1e3,
            "median_ms": statistics.median(samples) * 1e3,
            "rows": int(result.shape[0]),
            "checksum": float(np.float64(result.sum(dtype=np.float64))),
        }
    out = str(Path(path).with_name(f"converted_{method}.arrow"))
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(out)
        samples.append(time.perf_counter() - started)
    os.unlink(out)
    return {"median_s": statistics.median(samples)}


def ensure_parquet(data: Path) -> Path:
    path = data / "tab.parquet"
    if not path.exists():
        import pyarrow as pa
        import pyarrow.ipc as ipc
        import pyarrow.parquet as pq

        table = ipc.open_file(pa.memory_map(str(data / "tab.arrow"))).read_all()
        pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--convert-repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per query method")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "parquet.json")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, method, path = args.worker
        repeats = args.repeats if kind == "query" else args.convert_repeats
        print(json.dumps(worker(kind, method, path, repeats)))
        return
    path = ensure_parquet(args.data)
    size_mb = path.stat().st_size / 1e6
    Path(path).read_bytes()  # page cache warm for everyone

    def spawn(kind: str, method: str, convert_repeats: int = args.convert_repeats) -> dict:
        command = [
            sys.executable,
            __file__,
            "--worker",
            kind,
            method,
            str(path),
            "--repeats",
            str(args.repeats),
            "--convert-repeats",
            str(convert_repeats),
        ]
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(output.strip().splitlines()[-1])

    results: dict = {"file_mb": size_mb, "query": {}, "convert": {}}
    # Rounds of one fresh process per method, in turn: a process's figures move by 5% or so
    # with its heap and its threads' placement, so one process per method decides little.
    runs: dict = {method: [] for method in QUERY}
    for _ in range(args.processes):
        for method in QUERY:
            runs[method].append(spawn("query", method))
    for method, samples in runs.items():
        results["query"][method] = {
            "first_ms": statistics.median(run["first_ms"] for run in samples),
            "median_ms": statistics.median(run["median_ms"] for run in samples),
            "rows": samples[0]["rows"],
            "checksum": samples[0]["checksum"],
            "processes": samples,
        }
    # Conversions alternate between the methods, one per process: how fast the kernel takes a
    # 1.1 GB write depends on the writeback of the one before (on the development VM a
    # method's time moved between 1.9 and 3.5 s with the order alone).
    seconds: dict = {method: [] for method in CONVERT}
    for _ in range(args.convert_repeats):
        for method in CONVERT:
            seconds[method].append(spawn("convert", method, convert_repeats=1)["median_s"])
    for method, samples in seconds.items():
        results["convert"][method] = {"median_s": statistics.median(samples), "runs_s": samples}

    import relay_ml

    print(
        f"tab.parquet ({size_mb:.0f} MB, zstd, 1 M-row groups); relay_ml from "
        f"{Path(relay_ml._relay.__file__).name}"
    )
    print("query age > 94 -> f0..f3 to NumPy   first (ms)   median (ms)   vs relay")
    reference = results["query"]["relay_ml"]
    for method, r in results["query"].items():
        wrong = (
            ""
            if (r["rows"], round(r["checksum"], 1))
            == (reference["rows"], round(reference["checksum"], 1))
            else "  WRONG VALUES"
        )
        ratio = r["median_ms"] / reference["median_ms"]
        print(f"  {method:<34}{r['first_ms']:10.1f}{r['median_ms']:14.1f}{ratio:12.2f}x{wrong}")
    print("convert to Arrow IPC            seconds     MB/s (input)")
    for method, r in results["convert"].items():
        print(f"  {method:<30}{r['median_s']:8.2f}{size_mb / r['median_s']:12.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
