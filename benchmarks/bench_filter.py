"""Filter + select to NumPy: `tab` rows where a predicate holds, columns f0..f3, as an (N, 4) array.

Workload `tab` (see DESIGN.md, "Benchmark workloads"; made by make_data.py). Two queries:

    age:    age > 94                                            (~1.0 M of 20 M rows, 5 %)
    three:  (city == "Lima") & (f0 > 0) & (age > 98)            (~12.6 k rows, 0.06 %)

``three`` is written with its costly, unselective conjuncts first (a dictionary-string compare,
then a coin flip) and the cheap, selective one last, so conjunct order matters; relay runs it with
its optimizer on and off (``relay_ml._relay._set_optimizer_enabled``, a benchmark-only switch).

Each measurement is a fresh Python subprocess (no shared imports, caches or allocator state).
Inside it:

1. import numpy and the library; run the query once on a 1,000-row copy of the workload (a
   different file): "first-call init" (lazy imports, thread pools), not counted elsewhere;
2. read RssAnon and the minor page-fault count; **open** the file (a mapping, a footer, a lazy
   frame: whatever the method needs before it can query), then run the **query** to a NumPy
   array; the clock reads after the open and after the query;
3. read RssAnon again with the result alive: growth relative to ``result.nbytes``;
4. run the query again on the same opened object (**repeat**): the file's pages are now in this
   process's page tables, so the difference to the first query is what first touch of a fresh
   mapping costs (page faults), plus whatever else the method caches;
5. outside the timed region: shape, dtype, memory order and a hash of the result, checked
   against a NumPy reference (a mismatch prints WRONG VALUES).

After the methods, a **read floor** per query: a fresh process only reads every column the
query reads, once, split over all CPUs (first on a fresh mapping, then with its pages mapped).
It bounds what any method's "query" and "repeat" can reach on the machine.

The parent reads the files once before the runs (page cache warm), runs every method once
untimed, then 5 repeats round-robin over the methods, and reports medians. Two guards against
noise that is not the method's: workers run with OPENBLAS_NUM_THREADS=1 (``import numpy``
starts OpenBLAS threads that busy-wait for a while; on 2 cores they took a core from relay's
first query: 55 ms instead of 30 ms; no method here calls BLAS; ``--blas-threads`` keeps
them), and a measurement during which other processes kept more than ``--max-other-load``
cores busy on average is run again (up to 4 tries; the machine may be shared).

Usage:
    python benchmarks/bench_filter.py [--data benchmarks/data] [--rows-scale 1.0]
        [--repeats 5] [--only relay_ml,duckdb.fetchnumpy,...] [--queries age,three] [--json PATH]
        [--max-other-load 0.15] [--blas-threads]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["f0", "f1", "f2", "f3"]
WARMUP_ROWS = 1_000
CITY = "Lima"

QUERIES = {
    "age": {
        "text": "age > 94",
        "relay": 'col("age") > 94',
        "sql": "age > 94",
        "polars": 'pl.col("age") > 94',
    },
    "three": {
        "text": f'(city == "{CITY}") & (f0 > 0) & (age > 98)',
        "relay": f'(col("city") == "{CITY}") & (col("f0") > 0) & (col("age") > 98)',
        "sql": f"city = '{CITY}' AND f0 > 0 AND age > 98",
        "polars": f'(pl.col("city") == "{CITY}") & (pl.col("f0") > 0) & (pl.col("age") > 98)',
    },
}

# name -> (what "open" does, what "query" does); the code is in `_method` below.
METHODS = {
    "relay_ml": (
        "frame = relay_ml.scan(path)",
        "frame.filter(PRED).select(f0..f3).to_numpy()",
    ),
    "relay_ml.no_optimizer": (
        "_set_optimizer_enabled(False); frame = relay_ml.scan(path)",
        "frame.filter(PRED).select(f0..f3).to_numpy()  (plan run as written)",
    ),
    "duckdb.fetchnumpy": (
        "table = ipc.open_file(pa.memory_map(path)).read_all(); con.register('tab', table)",
        "d = con.sql('select f0..f3 from tab where SQL').fetchnumpy(); "
        "np.stack([d[c] ...], axis=1)",
    ),
    "duckdb.arrow": (
        "table = ipc.open_file(pa.memory_map(path)).read_all(); con.register('tab', table)",
        "t = con.sql('select f0..f3 from tab where SQL').to_arrow_table(); "
        "np.stack([t[c].to_numpy() ...], axis=1)",
    ),
    "polars": (
        "lf = pl.scan_ipc(path)",
        "lf.filter(PRED).select(f0..f3).collect().to_numpy()",
    ),
    "pyarrow": (
        "table = ipc.open_file(pa.memory_map(path)).read_all()",
        "t = table.select(f0..f3).filter(MASK); np.stack([t[c].to_numpy() ...], axis=1)",
    ),
    "pyarrow.as_written": (
        "table = ipc.open_file(pa.memory_map(path)).read_all()",
        "t = table.filter(MASK).select(f0..f3); np.stack([t[c].to_numpy() ...], axis=1)  "
        "(the query's order: pyarrow has no optimizer to select first)",
    ),
    "numpy": (
        "batch = ipc.open_file(pa.memory_map(path)).get_batch(0); "
        "age, f0..f3 = zero-copy np views of the mapped buffers",
        "mask = MASK; np.stack([f[mask] for f in (f0..f3)], axis=1)",
    ),
}
REFERENCE = "relay_ml"


# --------------------------------------------------------------------------------------------
# worker side (runs in a fresh subprocess)


def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise KeyError(field)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _method(method: str, query: str):
    """Import the library; return (open(path) -> opened, run(opened) -> (N, 4) numpy array)."""
    import numpy as np

    if method.startswith("relay_ml"):
        import relay_ml
        from relay_ml import col

        if method == "relay_ml.no_optimizer":
            from relay_ml._relay import _set_optimizer_enabled

            _set_optimizer_enabled(False)

        def predicate():
            if query == "age":
                return col("age") > 94
            return (col("city") == CITY) & (col("f0") > 0) & (col("age") > 98)

        return (
            lambda path: relay_ml.scan(path),
            lambda frame: frame.filter(predicate()).select(*COLUMNS).to_numpy(),
        )

    if method.startswith("duckdb."):
        import duckdb
        import pyarrow as pa
        import pyarrow.ipc as ipc

        sql = f"select {', '.join(COLUMNS)} from tab where {QUERIES[query]['sql']}"

        def open_duckdb(path):
            table = ipc.open_file(pa.memory_map(path)).read_all()
            con = duckdb.connect()
            con.register("tab", table)
            return con, table

        if method == "duckdb.fetchnumpy":

            def run(opened):
                found = opened[0].sql(sql).fetchnumpy()
                return np.stack([found[c] for c in COLUMNS], axis=1)

        else:

            def run(opened):
                found = opened[0].sql(sql).to_arrow_table()
                return np.stack([found[c].to_numpy() for c in COLUMNS], axis=1)

        return open_duckdb, run

    if method == "polars":
        import polars as pl

        def predicate():
            if query == "age":
                return pl.col("age") > 94
            return (pl.col("city") == CITY) & (pl.col("f0") > 0) & (pl.col("age") > 98)

        return (
            lambda path: pl.scan_ipc(path),
            lambda lf: lf.filter(predicate()).select(COLUMNS).collect().to_numpy(),
        )

    if method.startswith("pyarrow"):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.ipc as ipc

        def run(table):
            if query == "age":
                mask = pc.greater(table["age"], 94)
            else:
                mask = pc.and_(
                    pc.and_(pc.equal(table["city"], CITY), pc.greater(table["f0"], 0)),
                    pc.greater(table["age"], 98),
                )
            if method == "pyarrow.as_written":
                selected = table.filter(mask).select(COLUMNS)
            else:
                selected = table.select(COLUMNS).filter(mask)
            return np.stack([selected[c].to_numpy() for c in COLUMNS], axis=1)

        return lambda path: ipc.open_file(pa.memory_map(path)).read_all(), run

    if method == "numpy":
        import pyarrow as pa
        import pyarrow.ipc as ipc

        def open_views(path):
            reader = ipc.open_file(pa.memory_map(path))
            if reader.num_record_batches > 1:
                # A file of many batches (`--file`): columns concatenated, and the city test
                # made a 0/1 code, since each batch may carry its own dictionary.
                import pyarrow.compute as pc

                table = reader.read_all()
                views = {c: table.column(c).to_numpy() for c in ["age", *COLUMNS]}
                hits = []
                for chunk in table.column("city").chunks:
                    names = chunk.dictionary.cast(pa.string())
                    hit = pc.equal(names, CITY).to_numpy(zero_copy_only=False)
                    hits.append(hit[chunk.indices.to_numpy()])
                views["city_codes"] = np.concatenate(hits).astype(np.int8)
                views["city_code"] = 1
                return views
            batch = reader.get_batch(0)
            views = {c: batch.column(c).to_numpy(zero_copy_only=True) for c in ["age", *COLUMNS]}
            city = batch.column("city")
            views["city_codes"] = city.indices.to_numpy(zero_copy_only=True)
            views["city_code"] = city.dictionary.to_pylist().index(CITY)
            return views

        def run(views):
            if query == "age":
                mask = views["age"] > 94
            else:
                mask = (
                    (views["city_codes"] == views["city_code"])
                    & (views["f0"] > 0)
                    & (views["age"] > 98)
                )
            return np.stack([views[c][mask] for c in COLUMNS], axis=1)

        return open_views, run

    raise ValueError(f"unknown method {method!r}")


def _describe(array) -> dict:
    import numpy as np

    return {
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "order": "C"
        if array.flags.c_contiguous
        else "F"
        if array.flags.f_contiguous
        else "strided",
        "hash": hashlib.blake2b(np.ascontiguousarray(array).tobytes(), digest_size=16).hexdigest(),
    }


def worker(method: str, query: str, path: str, warm_path: str) -> dict:
    open_file, run = _method(method, query)

    started = time.perf_counter()
    warm = run(open_file(warm_path))
    first_call_s = time.perf_counter() - started
    del warm

    anon_before = _proc_status_mb("RssAnon")
    faults_before = _minor_faults()
    started = time.perf_counter()
    opened = open_file(path)
    opened_at = time.perf_counter()
    array = run(opened)
    done_at = time.perf_counter()
    faults_after = _minor_faults()
    anon_after = _proc_status_mb("RssAnon")

    started_repeat = time.perf_counter()
    again = run(opened)
    repeat_s = time.perf_counter() - started_repeat
    repeat_faults = _minor_faults() - faults_after
    del again

    return {
        "open_ms": (opened_at - started) * 1e3,
        "query_ms": (done_at - opened_at) * 1e3,
        "open_query_ms": (done_at - started) * 1e3,
        "repeat_query_ms": repeat_s * 1e3,
        "minor_faults": faults_after - faults_before,
        "repeat_minor_faults": repeat_faults,
        "first_call_ms": first_call_s * 1e3,
        "rss_anon_growth_mb": anon_after - anon_before,
        "result_mb": array.nbytes / 2**20,
        **_describe(array),
    }


READ_FLOOR = "read_floor"
QUERY_COLUMNS = {"age": ["age", *COLUMNS], "three": ["city_codes", "age", *COLUMNS]}


def read_floor(query: str, path: str) -> dict:
    """How long it takes just to read every column the query reads, once, on all CPUs.

    NumPy sums over the mapped buffers (zero-copy views; the sums release the GIL), each thread
    one contiguous share of every column: first on a fresh mapping (page faults included, as in
    a method's first query), then again with the pages mapped. No method can read the bytes
    its query needs faster, so these are floors for "query" and "repeat query".
    """
    import threading

    open_views, _ = _method("numpy", query)
    views = open_views(path)
    columns = [views[name] for name in QUERY_COLUMNS[query]]
    rows, threads = len(columns[0]), os.cpu_count() or 1

    def read_share(index):
        start, stop = index * rows // threads, (index + 1) * rows // threads
        for column in columns:
            column[start:stop].sum()

    def read_all_once() -> float:
        started = time.perf_counter()
        workers = [threading.Thread(target=read_share, args=(i,)) for i in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return (time.perf_counter() - started) * 1e3

    first_ms = read_all_once()
    mapped_ms = min(read_all_once() for _ in range(3))
    return {
        "first_ms": first_ms,
        "mapped_ms": mapped_ms,
        "read_mb": sum(column.nbytes for column in columns) / 1e6,
        "threads": threads,
    }


# --------------------------------------------------------------------------------------------
# parent side


def reference(path: Path, query: str) -> dict:
    """The expected result, computed with NumPy over pyarrow's zero-copy views."""
    open_views, run = _method("numpy", query)
    return _describe(run(open_views(str(path))))


def _busy_cpu_s() -> float:
    """CPU seconds all processes on the machine have spent busy (not idle or waiting for IO)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_worker(method, query, path, warm_path, max_other_load, blas_threads, timeout_s=600) -> dict:
    """One measurement in a fresh subprocess. Runs it again (up to 4 tries in all) when other
    processes kept the machine busy meanwhile: more than `max_other_load` cores' worth of CPU
    on average over the subprocess's life (this machine is shared; see --max-other-load)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        method,
        "--query",
        query,
        "--path",
        str(path),
        "--warm-path",
        str(warm_path),
    ]
    env = dict(os.environ)
    if not blas_threads:
        # `import numpy` starts OpenBLAS worker threads that busy-wait for a while; on a 2-core
        # machine they take a core from any multi-threaded method timed right after import
        # (relay's first query: 55 ms with them, 30 ms without). No method here calls BLAS.
        env["OPENBLAS_NUM_THREADS"] = "1"
    for attempt in range(1, 5):
        busy, own, started = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, env=env
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s} s"}
        wall = time.perf_counter() - started
        other_load = max(0.0, (_busy_cpu_s() - busy) - (_own_cpu_s() - own)) / wall
        if done.returncode != 0:
            last_line = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
            return {"error": f"exit {done.returncode}: {last_line}"}
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result.update({"other_load": other_load, "attempts": attempt})
        if other_load <= max_other_load:
            break
        print(
            f"# {method} {query}: other processes used {other_load:.2f} cores, again",
            file=sys.stderr,
        )
    return result


def summarize(method, query, runs, expected) -> dict:
    good = [run for run in runs if "error" not in run]
    summary = {"method": method, "query": query, "runs": runs}
    if not good:
        summary["error"] = runs[0]["error"] if runs else "not run"
        return summary

    def median(key):
        return statistics.median(run[key] for run in good)

    correct = all(
        run["shape"] == expected["shape"]
        and run["dtype"] == expected["dtype"]
        and run["hash"] == expected["hash"]
        for run in good
    )
    summary.update(
        {
            "query_ms": median("query_ms"),
            "open_ms": median("open_ms"),
            "open_query_ms": median("open_query_ms"),
            "repeat_query_ms": median("repeat_query_ms"),
            "minor_faults": median("minor_faults"),
            "repeat_minor_faults": median("repeat_minor_faults"),
            "first_call_ms": median("first_call_ms"),
            "rss_anon_growth_mb": median("rss_anon_growth_mb"),
            "result_mb": good[-1]["result_mb"],
            "rss_growth_per_result_byte": median("rss_anon_growth_mb") / good[-1]["result_mb"]
            if good[-1]["result_mb"]
            else None,
            "max_other_load": max(run.get("other_load", 0.0) for run in good),
            "order": good[-1]["order"],
            "shape": good[-1]["shape"],
            "correct": correct,
            "good_runs": len(good),
        }
    )
    if len(good) < len(runs):
        summary["error"] = next(run["error"] for run in runs if "error" in run)
    return summary


def format_ms(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def format_ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def ratio_cell(result: dict, reference: dict | None, key: str) -> str:
    """``result[key]`` over the reference method's, as a table cell."""
    if reference is None:
        return "n/a"
    if result is reference:
        return "1.00x"
    return format_ratio(result[key] / reference[key])


def markdown(results_by_query, floors, info, n_rows, file_size, repeats) -> str:
    lines = [
        f"Filter + select f0..f3 to a NumPy (N, 4) float32 array, `tab` ({n_rows:,} rows, "
        f"{file_size / 1e9:.3f} GB), file in page cache, median of {repeats} fresh processes.",
        "",
        f"Machine: {info['cpu_model']}, nproc {info['nproc']}, {info['ram_gib']} GiB RAM, "
        f"Linux {info['kernel']}, Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + f"; relay_ml extension: {info['relay_ml_extension']}",
    ]
    for query, results in results_by_query.items():
        reference = next((r for r in results if r["method"] == REFERENCE and "query_ms" in r), None)
        rows = next((r["shape"][0] for r in results if "shape" in r), None)
        lines += [
            "",
            f"Query `{query}`: `{QUERIES[query]['text']}` -> {rows:,} rows"
            if rows is not None
            else f"Query `{query}`: `{QUERIES[query]['text']}`",
            "",
            "| method | query ms | vs relay | open+query ms | vs relay | repeat query ms "
            "| minor faults (repeat) | RssAnon growth MB | growth / result | order |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for result in results:
            if "query_ms" not in result:
                lines.append(f"| {result['method']} | unavailable: {result['error']} |" + " |" * 8)
                continue
            ratio = functools.partial(ratio_cell, result, reference)
            note = "" if result["correct"] else " WRONG VALUES"
            growth = result["rss_growth_per_result_byte"]
            lines.append(
                f"| {result['method']}{note} | {format_ms(result['query_ms'])} "
                f"| {ratio('query_ms')} | {format_ms(result['open_query_ms'])} "
                f"| {ratio('open_query_ms')} | {format_ms(result['repeat_query_ms'])} "
                f"| {result['minor_faults']:,.0f} ({result['repeat_minor_faults']:,.0f}) "
                f"| {result['rss_anon_growth_mb']:.1f} "
                f"| {'n/a' if growth is None else f'{growth:.2f}x'} | {result['order']} |"
            )
        if query in floors:
            floor = floors[query]
            lines += [
                "",
                f"Read floor: reading the query's columns ({', '.join(QUERY_COLUMNS[query])}; "
                f"{floor['read_mb']:.0f} MB) once on {floor['threads']} threads takes "
                f"{format_ms(floor['first_ms'])} ms on a fresh mapping and "
                f"{format_ms(floor['mapped_ms'])} ms with its pages mapped.",
            ]
    lines += ["", "What each method runs (PRED / SQL / MASK: the query's predicate):", ""]
    lines += ["| method | open | query |", "| --- | --- | --- |"]
    for method, (open_code, query_code) in METHODS.items():
        if any(r["method"] == method for results in results_by_query.values() for r in results):
            lines.append(
                f"| {method} | `{open_code.replace('|', chr(92) + '|')}` "
                f"| `{query_code.replace('|', chr(92) + '|')}` |"
            )
    lines += [
        "",
        "query: from an opened file to the array in hand (timed after open). open+query: from "
        "the path. vs relay = peer time / relay time (above 1: relay faster). repeat query: the "
        "same query again on the same opened file in the same process (its pages already "
        "mapped). minor faults: page faults during open+query (during the repeat). RssAnon "
        "growth: anonymous memory added by open+query with the result alive, and that over the "
        "result's bytes. order: the result's memory layout. DuckDB reads the table through "
        "pyarrow's memory map (DuckDB has no built-in Arrow IPC file reader); its two rows "
        "are its two ways out to NumPy. Workers run with OPENBLAS_NUM_THREADS=1 (numpy's "
        "OpenBLAS threads busy-wait after import and would take a core from multi-threaded "
        "methods; no method uses BLAS); a measurement during which other processes used more "
        "than a set share of the CPUs is run again.",
    ]
    return "\n".join(lines)


def machine_info() -> dict:
    sys.path.insert(0, str(HERE))
    from bench_open_export import machine_info as base_info

    info = base_info()
    for package in ["duckdb"]:
        try:
            info["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info["versions"][package] = None
    info["versions"].pop("datasets", None)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(HERE / "data"), help="folder with the workloads")
    parser.add_argument("--rows-scale", type=float, default=1.0)
    parser.add_argument(
        "--file",
        help="run on this copy of tab instead of make_data's (e.g. tab_polars.arrow, as Polars "
        "writes it: 163 record batches); results go to filter_<name>.json",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="comma-separated methods (default: all)")
    parser.add_argument("--queries", default="age,three", help="comma-separated: age,three")
    parser.add_argument("--json", help="where to write results (default: benchmarks/results/)")
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=0.15,
        help="re-run a measurement when other processes used more than this many cores meanwhile",
    )
    parser.add_argument(
        "--blas-threads",
        action="store_true",
        help="leave OpenBLAS its worker threads (default: OPENBLAS_NUM_THREADS=1 in the workers)",
    )
    # worker mode (internal)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--query", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--warm-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == READ_FLOOR:
        print(json.dumps(read_floor(args.query, args.path)))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.query, args.path, args.warm_path)))
        return 0

    sys.path.insert(0, str(HERE))
    import make_data
    from bench_open_export import read_into_page_cache

    methods = args.only.split(",") if args.only else list(METHODS)
    queries = args.queries.split(",")
    unknown = [m for m in methods if m not in METHODS] + [q for q in queries if q not in QUERIES]
    if unknown:
        parser.error(f"unknown {unknown}; methods {list(METHODS)}, queries {list(QUERIES)}")

    data = Path(args.data)
    path = (
        Path(args.file)
        if args.file
        else make_data.make(data, "tab", args.rows_scale, verbose=False)
    )
    warm_path = make_data.make(data, "tab", WARMUP_ROWS / make_data.TAB_ROWS, verbose=False)
    n_rows = make_data.rows_for("tab", args.rows_scale)
    info = machine_info()
    read_into_page_cache([path, warm_path])
    expected = {query: reference(path, query) for query in queries}

    jobs = [(m, q) for q in queries for m in methods]
    for method, query in jobs:  # warm-up run, discarded
        outcome = run_worker(method, query, path, warm_path, args.max_other_load, args.blas_threads)
        if "error" in outcome:
            print(f"# {method} {query}: {outcome['error']}", file=sys.stderr)
    runs = {job: [] for job in jobs}
    for repeat in range(args.repeats):
        for job in jobs:
            runs[job].append(
                run_worker(*job, path, warm_path, args.max_other_load, args.blas_threads)
            )
        print(f"# repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    results_by_query = {
        q: [summarize(m, q, runs[(m, q)], expected[q]) for m in methods] for q in queries
    }
    floors = {}
    for query in queries:
        floor_runs = [
            run_worker(READ_FLOOR, query, path, warm_path, args.max_other_load, args.blas_threads)
            for _ in range(args.repeats)
        ]
        good = [run for run in floor_runs if "error" not in run]
        if good:
            floors[query] = {
                "first_ms": statistics.median(run["first_ms"] for run in good),
                "mapped_ms": statistics.median(run["mapped_ms"] for run in good),
                "read_mb": good[0]["read_mb"],
                "threads": good[0]["threads"],
            }
    for results in results_by_query.values():
        reference_result = next(
            (r for r in results if r["method"] == REFERENCE and "query_ms" in r), None
        )
        for result in results:
            if reference_result and "query_ms" in result:
                result["ratio_vs_relay"] = result["query_ms"] / reference_result["query_ms"]
                result["open_query_ratio_vs_relay"] = (
                    result["open_query_ms"] / reference_result["open_query_ms"]
                )
    table = markdown(results_by_query, floors, info, n_rows, path.stat().st_size, args.repeats)
    print(table)

    suffix = "" if args.rows_scale == 1.0 else f"_x{args.rows_scale:g}"
    if args.file:
        suffix = f"_{Path(args.file).stem}"
    out = Path(args.json) if args.json else HERE / "results" / f"filter{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "filter",
        "workload": "tab",
        "columns": COLUMNS,
        "queries": {q: QUERIES[q] for q in queries},
        "methods": {m: {"open": METHODS[m][0], "query": METHODS[m][1]} for m in methods},
        "rows": n_rows,
        "rows_scale": args.rows_scale,
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "repeats": args.repeats,
        "openblas_num_threads": None if args.blas_threads else 1,
        "max_other_load": args.max_other_load,
        "reference_method": REFERENCE,
        "expected": expected,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "results": results_by_query,
        "read_floor": floors,
        "table_markdown": table,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n# wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
