"""TPC-H at scale factor 1 (by default): relay_ml, DuckDB and Polars side by side.

Data comes from tpchgen-cli (Parquet) and is converted once to Arrow IPC files. Each engine runs
in its own process, so each peak RSS is its own:

- relay_ml: `relay.scan` of the IPC files (memory-mapped), the queries of `queries.py`;
- Polars: `pl.scan_ipc` of the same files, the same plans in Polars' lazy API;
- DuckDB: the specification's SQL over tables loaded into DuckDB's own storage before timing
  (its fastest setting: no file format in the way).

Every query runs once untimed, then `--repeats` times; the median is reported, with the ratio
relay / DuckDB and relay / Polars (below 1: relay is faster).

    python benchmarks/tpch/run.py                       # SF 1: ~1 GB of Parquet, ~2 GB IPC
    python benchmarks/tpch/run.py --scale 0.1 --repeats 3
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


def ensure_data(scale: float, root: Path) -> tuple[Path, Path]:
    parquet, ipc = root / f"tpch_sf{scale:g}", root / f"tpch_sf{scale:g}_ipc"
    if not (parquet / "lineitem.parquet").exists():
        generator = shutil.which("tpchgen-cli") or str(
            Path(sys.executable).with_name("tpchgen-cli")
        )
        subprocess.run(
            [generator, "parquet", "-s", f"{scale:g}", f"--output-dir={parquet}"], check=True
        )
    if not (ipc / "lineitem.arrow").exists():
        queries.convert_to_ipc(str(parquet), str(ipc))
    return parquet, ipc


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
    parser.add_argument("--json", type=Path, default=HERE.parent / "results" / "tpch.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    numbers = [int(n) for n in args.queries.split(",")]
    parquet, ipc = ensure_data(args.scale, args.data)
    if args.child:
        print(json.dumps(run_engine(args.child, parquet, ipc, numbers, args.repeats)))
        return
    results = {}
    for engine in args.engines.split(","):
        command = [
            sys.executable,
            __file__,
            "--child",
            engine,
            "--scale",
            f"{args.scale:g}",
            "--data",
            str(args.data),
            "--repeats",
            str(args.repeats),
            "--queries",
            args.queries,
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[engine] = json.loads(output.strip().splitlines()[-1])
        results[engine]["queries"] = {int(k): v for k, v in results[engine]["queries"].items()}
    import relay_ml

    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"relay_ml from {Path(relay_ml._relay.__file__).name}"
    )
    print(f"TPC-H SF {args.scale:g}, median of {args.repeats} (ms); {machine}")
    engines = list(results)
    print("query " + "".join(f"{e:>12}" for e in engines) + "  relay/duckdb  relay/polars")
    for n in numbers:
        cells = "".join(f"{results[e]['queries'][n]['ms']:12.1f}" for e in engines)
        relay_ms = results.get("relay_ml", {}).get("queries", {}).get(n, {}).get("ms")
        ratios = ""
        for peer in ("duckdb", "polars"):
            if relay_ms is not None and peer in results:
                ratios += f"{relay_ms / results[peer]['queries'][n]['ms']:14.2f}"
        print(f"Q{n:<5}{cells}{ratios}")
    print("peak RSS (MiB) " + "".join(f"{e}={results[e]['peak_rss_mib']:.0f} " for e in engines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"scale": args.scale, "repeats": args.repeats, "machine": machine, "results": results},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
