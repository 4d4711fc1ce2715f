"""CSV and NDJSON: read a whole file into Arrow memory, against Polars, pyarrow and DuckDB.

Workload: the first `--rows` rows (default 2 M) of `tab` (DESIGN.md; made by make_data.py),
columns id, age, f0..f3 and city (as strings), written once beside `tab.arrow`:

    tab_<rows>.csv      by pyarrow `csv.write_csv` (strings quoted, as pyarrow writes them)
    tab_<rows>.ndjson   by Polars `write_ndjson`

Each method runs in a fresh process: the first read (file in the page cache, nothing else
warm) and the median of `--repeats` more. Row counts and the sum of `id` are checked against
relay's (a mismatch prints WRONG VALUES).

    relay_ml   relay.scan(p).to_arrow()
    polars     pl.read_csv(p) / pl.read_ndjson(p)
    pyarrow    pyarrow.csv.read_csv(p) / pyarrow.json.read_json(p)
    duckdb     con.sql("select * from read_csv(p)").to_arrow_table() (read_json for NDJSON)

Usage:
    python benchmarks/bench_text.py [--data benchmarks/data] [--rows 2000000] [--repeats 5]
        [--json PATH]
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
COLUMNS = ["id", "age", "f0", "f1", "f2", "f3", "city"]

READ = {
    "relay_ml": """
import relay_ml as relay
def run(path, kind):
    return relay.scan(path).to_arrow()
""",
    "polars": """
import polars as pl
def run(path, kind):
    return pl.read_csv(path) if kind == "csv" else pl.read_ndjson(path)
""",
    "pyarrow": """
import pyarrow.csv as pacsv
import pyarrow.json as pajson
def run(path, kind):
    return pacsv.read_csv(path) if kind == "csv" else pajson.read_json(path)
""",
    "duckdb": """
import duckdb
con = duckdb.connect()
def run(path, kind):
    reader = "read_csv" if kind == "csv" else "read_json"
    return con.sql(f"select * from {reader}('{path}')").to_arrow_table()
""",
}


def worker(method: str, path: str, kind: str, repeats: int) -> dict:
    namespace: dict = {}
    exec(READ[method], namespace)
    run = namespace["run"]
    started = time.perf_counter()
    result = run(path, kind)
    first = time.perf_counter() - started
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run(path, kind)
        samples.append(time.perf_counter() - started)
    import pyarrow as pa
    import pyarrow.compute as pc

    table = result if isinstance(result, pa.Table) else result.to_arrow()  # Polars: zero-copy
    id_sum = pc.sum(table["id"]).as_py()
    return {
        "first_ms": first * 1e3,
        "median_ms": statistics.median(samples) * 1e3,
        "rows": table.num_rows,
        "id_sum": id_sum,
    }


def ensure_files(data: Path, rows: int) -> dict[str, Path]:
    import polars as pl
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.ipc as ipc

    paths = {"csv": data / f"tab_{rows}.csv", "ndjson": data / f"tab_{rows}.ndjson"}
    if all(path.exists() for path in paths.values()):
        return paths
    table = (
        ipc.open_file(pa.memory_map(str(data / "tab.arrow")))
        .read_all()
        .slice(0, rows)
        .select(COLUMNS)
    )
    table = table.set_column(6, "city", table["city"].cast(pa.string()))
    pacsv.write_csv(table, paths["csv"])
    pl.from_arrow(table).write_ndjson(paths["ndjson"])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "text.json")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, path, kind = args.worker
        print(json.dumps(worker(method, path, kind, args.repeats)))
        return
    paths = ensure_files(args.data, args.rows)

    def spawn(method: str, kind: str) -> dict:
        command = [
            sys.executable,
            __file__,
            "--worker",
            method,
            str(paths[kind]),
            kind,
            "--repeats",
            str(args.repeats),
        ]
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(output.strip().splitlines()[-1])

    import relay_ml

    results: dict = {}
    print(f"tab, first {args.rows:,} rows; relay_ml from {Path(relay_ml._relay.__file__).name}")
    for kind, path in paths.items():
        path.read_bytes()  # page cache warm for everyone
        results[kind] = {
            "file_mb": path.stat().st_size / 1e6,
            "methods": {m: spawn(m, kind) for m in READ},
        }
        reference = results[kind]["methods"]["relay_ml"]
        print(
            f"{path.name} ({results[kind]['file_mb']:.0f} MB)    first (ms)   median (ms)   vs "
            "relay"
        )
        for method, r in results[kind]["methods"].items():
            same = (r["rows"], r["id_sum"]) == (reference["rows"], reference["id_sum"])
            ratio = r["median_ms"] / reference["median_ms"]
            wrong = "" if same else "  WRONG VALUES"
            print(f"  {method:<22}{r['first_ms']:10.1f}{r['median_ms']:14.1f}{ratio:12.2f}x{wrong}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
