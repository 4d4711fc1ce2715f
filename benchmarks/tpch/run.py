"""TPC-H at scale factor 1 (by default): relay_ml, DuckDB and Polars side by side.

Data comes from tpchgen-cli (Parquet) and is converted once to Arrow IPC files by each writer of
`--writers` (see `queries.convert_to_ipc`): relay's own (one batch, 64-byte aligned), pyarrow's
and Polars' (string views, 8-byte alignment, a record batch per row group), the files users
have. Each engine runs in its own process, so each peak RSS is its own:

- relay_ml: `relay.scan` of each writer's IPC files (memory-mapped), the queries of `queries.py`;
- Polars: `pl.scan_ipc` of the same files, the same plans in Polars' lazy API;
- DuckDB: the specification's SQL over tables loaded into DuckDB's own storage before timing
  (its fastest setting: no file format in the way).

Every query runs once untimed, then `--repeats` times; the median is reported, with the ratio
relay / DuckDB per writer's files (below 1: relay is faster).

    python benchmarks/tpch/run.py                       # SF 1: ~1 GB of Parquet, ~2 GB IPC each
    python benchmarks/tpch/run.py --scale 0.1 --repeats 3 --writers relay
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import queries  # noqa: E402


def ensure_data(scale: float, root: Path, writers: list[str]) -> tuple[Path, dict[str, Path]]:
    """The Parquet folder, and each writer's IPC folder (made where missing)."""
    parquet = root / f"tpch_sf{scale:g}"
    if not (parquet / "lineitem.parquet").exists():
        generator = shutil.which("tpchgen-cli") or str(
            Path(sys.executable).with_name("tpchgen-cli")
        )
        subprocess.run(
            [generator, "parquet", "-s", f"{scale:g}", f"--output-dir={parquet}"], check=True
        )
    ipc = {}
    for writer in writers:
        suffix = "" if writer == "relay" else f"_{writer}"
        ipc[writer] = root / f"tpch_sf{scale:g}_ipc{suffix}"
        if not (ipc[writer] / "lineitem.arrow").exists():
            queries.convert_to_ipc(str(parquet), str(ipc[writer]), writer)
    return parquet, ipc


def result_key(engine: str, writer: str) -> str:
    """How results are named: the engine, and the writer of the IPC files it read."""
    if engine == "duckdb" or writer == "relay":
        return engine
    return f"{engine}/{writer}-ipc"


def run_engine(engine: str, parquet: Path, ipc: Path, numbers: list[int], repeats: int) -> dict:
    """Runs in a child process: times every query of `numbers` on one engine."""
    if engine == "relay_ml":
        import pyarrow as pa

        import relay_ml as relay

        tables = {name: relay.scan(ipc / f"{name}.arrow") for name in queries.TABLES}

        def run(n: int) -> int:
            return pa.table(queries.RELAY[n](tables)).num_rows

    elif engine == "polars":
        import polars as pl

        tables = {name: pl.scan_ipc(ipc / f"{name}.arrow") for name in queries.TABLES}
        plans = queries.polars_queries()

        def run(n: int) -> int:
            return plans[n](tables).collect().height

    elif engine == "duckdb":
        import duckdb

        connection = duckdb.connect()
        for name in queries.TABLES:
            connection.execute(
                f"create table {name} as select * from "
                f"read_parquet('{parquet / f'{name}.parquet'}')"
            )

        def run(n: int) -> int:
            return connection.sql(queries.SQL[n]).to_arrow_table().num_rows

    else:
        raise SystemExit(f"unknown engine {engine}")
    timings = {}
    for n in numbers:
        rows = run(n)  # warm-up: page cache, lazy statistics
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            run(n)
            samples.append(time.perf_counter() - started)
        timings[n] = {"ms": statistics.median(samples) * 1e3, "rows": rows}
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec from the parent.
    status = Path("/proc/self/status").read_text()
    peak_mib = (
        int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
        / 1024
    )
    return {"queries": timings, "peak_rss_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--data", type=Path, default=HERE.parent / "data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", default=",".join(str(n) for n in sorted(queries.RELAY)))
    parser.add_argument("--engines", default="relay_ml,duckdb,polars")
    parser.add_argument("--writers", default=",".join(queries.WRITERS))
    parser.add_argument("--json", type=Path, default=HERE.parent / "results" / "tpch.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    numbers = [int(n) for n in args.queries.split(",")]
    writers = args.writers.split(",")
    parquet, ipc = ensure_data(args.scale, args.data, writers)
    if args.child:
        engine, writer = args.child.split(":")
        print(json.dumps(run_engine(engine, parquet, ipc[writer], numbers, args.repeats)))
        return
    results = {}
    for engine in args.engines.split(","):
        # DuckDB loads the Parquet files into its own storage: one run, whatever the writers.
        for writer in writers[:1] if engine == "duckdb" else writers:
            command = [
                sys.executable,
                __file__,
                "--child",
                f"{engine}:{writer}",
                "--scale",
                f"{args.scale:g}",
                "--data",
                str(args.data),
                "--repeats",
                str(args.repeats),
                "--queries",
                args.queries,
                "--writers",
                writer,
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            key = result_key(engine, writer)
            results[key] = json.loads(output.strip().splitlines()[-1])
            results[key]["queries"] = {int(k): v for k, v in results[key]["queries"].items()}
    import relay_ml

    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"relay_ml from {Path(relay_ml._relay.__file__).name}"
    )
    print(f"TPC-H SF {args.scale:g}, median of {args.repeats} (ms); {machine}")
    columns = list(results)
    # Each relay run against DuckDB, and against Polars over the same writer's files.
    ratios = [
        (key, peer)
        for key in columns
        if key.startswith("relay_ml")
        for peer in ("duckdb", key.replace("relay_ml", "polars", 1))
        if peer in results
    ]
    width = max(len(c) for c in columns) + 2
    print(
        "query"
        + "".join(f"{c:>{width}}" for c in columns)
        + "".join(f"  {k} / {p}" for k, p in ratios)
    )
    for n in numbers:
        cells = "".join(f"{results[c]['queries'][n]['ms']:{width}.1f}" for c in columns)
        for key, peer in ratios:
            ratio = results[key]["queries"][n]["ms"] / results[peer]["queries"][n]["ms"]
            cells += f"{ratio:{len(key) + len(peer) + 5}.2f}"
        print(f"Q{n:<4}{cells}")
    print("peak RSS (MiB) " + "".join(f"{c}={results[c]['peak_rss_mib']:.0f} " for c in columns))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"scale": args.scale, "repeats": args.repeats, "machine": machine, "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
