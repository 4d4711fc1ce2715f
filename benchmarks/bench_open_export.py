"""Open + export one column: time and memory from "a path" to "a NumPy array of f0 in hand".

Workload `tab` (see DESIGN.md, "Benchmark workloads"; made by make_data.py). For each method below,
every measurement runs in a fresh Python subprocess, so that one library's imports, caches and
allocator state never touch another's numbers. Inside the subprocess:

1. import numpy and the library under test;
2. run the same operation once on a tiny copy of the workload (1,000 rows, a different file) and
   record its time as "first-call init": this pays one-time lazy work (pyarrow, for example,
   imports pandas on its first ``to_numpy``) so that it is not counted as work on the data;
3. read RssAnon from /proc/self/status, start the clock, run the operation on the real file,
   stop the clock, read RssAnon again (the result is still alive);
4. outside the timed region: sum the array once ("first pass", which pays the page faults a
   lazily mapped view defers), check where the array's memory lives (/proc/self/maps: a view of
   the file or anonymous memory), and checksum the first and last rows.

The parent reads every file once before the runs so they sit in the page cache, runs each method
once untimed as a warm-up, then runs the 5 timed repeats round-robin over the methods (so slow
drift of the machine affects all methods alike) and reports medians.

Usage:
    python benchmarks/bench_open_export.py [--data benchmarks/data] [--rows-scale 1.0]
        [--repeats 5] [--only relay_ml,pyarrow.read_all,...] [--json PATH]

Missing data is generated with make_data.py (and the HF datasets copy with save_to_disk) before
any timing. The Markdown table goes to stdout, the full record to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMN = "f0"
WARMUP_ROWS = 1_000

# name -> (library to import, what the timed code does). The code is in `_operation` below.
METHODS = {
    "relay_ml": ("relay_ml", 'relay_ml.scan(path)["f0"].to_numpy()'),
    "pyarrow.read_all": (
        "pyarrow",
        'ipc.open_file(pa.memory_map(path)).read_all()["f0"].to_numpy()',
    ),
    "pyarrow.get_batch": (
        "pyarrow",
        'ipc.open_file(pa.memory_map(path)).get_batch(0).column("f0")'
        ".to_numpy(zero_copy_only=True)",
    ),
    "polars.read_ipc": ("polars", 'pl.read_ipc(path)["f0"].to_numpy()'),
    "polars.read_ipc_columns": (
        "polars",
        'pl.read_ipc(path, columns=["f0"])["f0"].to_numpy()',
    ),
    "polars.scan_ipc": (
        "polars",
        'pl.scan_ipc(path).select("f0").collect()["f0"].to_numpy()',
    ),
    "datasets.numpy": (
        "datasets",
        'load_from_disk(hf_dir).with_format("numpy")["f0"][:]',
    ),
    "datasets.arrow": (
        "datasets",
        'load_from_disk(hf_dir).with_format("arrow")["f0"].to_numpy()',
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


def _mapping_of(address: int) -> str:
    """The file backing the mapping that holds `address`, or "anonymous"."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            low, high = (int(x, 16) for x in parts[0].split("-"))
            if low <= address < high:
                return parts[5] if len(parts) > 5 and parts[5].startswith("/") else "anonymous"
    return "unknown"


def _operation(method: str):
    """Import the library and return fn(path, hf_dir) -> numpy array (the timed operation)."""
    if method == "relay_ml":
        import relay_ml

        return lambda path, hf_dir: relay_ml.scan(path)[COLUMN].to_numpy()
    if method.startswith("pyarrow."):
        import pyarrow as pa
        import pyarrow.ipc as ipc

        if method == "pyarrow.read_all":
            return lambda path, hf_dir: (
                ipc.open_file(pa.memory_map(path)).read_all()[COLUMN].to_numpy()
            )
        if method == "pyarrow.get_batch":
            return lambda path, hf_dir: (
                ipc.open_file(pa.memory_map(path))
                .get_batch(0)
                .column(COLUMN)
                .to_numpy(zero_copy_only=True)
            )
    if method.startswith("polars."):
        import polars as pl

        if method == "polars.read_ipc":
            return lambda path, hf_dir: pl.read_ipc(path)[COLUMN].to_numpy()
        if method == "polars.read_ipc_columns":
            return lambda path, hf_dir: pl.read_ipc(path, columns=[COLUMN])[COLUMN].to_numpy()
        if method == "polars.scan_ipc":
            return lambda path, hf_dir: (
                pl.scan_ipc(path).select(COLUMN).collect()[COLUMN].to_numpy()
            )
    if method.startswith("datasets."):
        import datasets
        from datasets import load_from_disk

        datasets.disable_progress_bars()
        if method == "datasets.numpy":
            return lambda path, hf_dir: load_from_disk(hf_dir).with_format("numpy")[COLUMN][:]
        if method == "datasets.arrow":
            return lambda path, hf_dir: (
                load_from_disk(hf_dir).with_format("arrow")[COLUMN].to_numpy()
            )
    raise ValueError(f"unknown method {method!r}")


def worker(method: str, path: str, hf_dir: str, warm_path: str, warm_hf_dir: str) -> dict:
    import numpy as np

    operation = _operation(method)

    started = time.perf_counter()
    warm = operation(warm_path, warm_hf_dir)
    first_call_s = time.perf_counter() - started
    del warm

    anon_before = _proc_status_mb("RssAnon")
    file_before = _proc_status_mb("RssFile")
    started = time.perf_counter()
    array = operation(path, hf_dir)
    export_s = time.perf_counter() - started
    anon_after = _proc_status_mb("RssAnon")
    file_after = _proc_status_mb("RssFile")

    started = time.perf_counter()
    np.add.reduce(array)
    first_pass_s = time.perf_counter() - started

    array = np.asarray(array)
    return {
        "export_ms": export_s * 1e3,
        "first_pass_ms": first_pass_s * 1e3,
        "first_call_ms": first_call_s * 1e3,
        "rss_anon_growth_mb": anon_after - anon_before,
        "rss_file_growth_mb": file_after - file_before,
        "rss_anon_after_mb": anon_after,
        "memory": _mapping_of(array.ctypes.data) if array.size else "empty",
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "writeable": bool(array.flags.writeable),
        "head_sum": float(array[:1000].astype(np.float64).sum()),
        "tail_sum": float(array[-1000:].astype(np.float64).sum()),
    }


# --------------------------------------------------------------------------------------------
# parent side


def machine_info() -> dict:
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_total_gib = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    mem_total_gib = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    versions = {}
    for package in ["relay_ml", "numpy", "pyarrow", "polars", "datasets"]:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "relay_ml_extension": relay_extension(),
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "ram_gib": round(mem_total_gib, 1) if mem_total_gib else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
    }


def relay_extension() -> str | None:
    """Path and size of the relay_ml extension the workers will import (tells builds apart)."""
    from importlib.util import find_spec

    try:
        spec = find_spec("relay_ml")
    except ImportError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for library in sorted(Path(folder).glob("_relay*.so")):
            return f"{library} ({library.stat().st_size / 1e6:.0f} MB)"
    return None


def prepare_hf(arrow_path: Path, hf_dir: Path) -> None:
    """Save `arrow_path` once as an HF datasets folder (its own format); skipped if present."""
    if (hf_dir / "state.json").exists():
        return
    import datasets
    import pyarrow as pa
    import pyarrow.ipc as ipc

    datasets.disable_progress_bars()
    started = time.perf_counter()
    table = ipc.open_file(pa.memory_map(str(arrow_path))).read_all()
    tmp = hf_dir.with_name(hf_dir.name + f".tmp-{os.getpid()}")
    # One shard, like the single IPC file the other methods read. HF stores the table with its
    # own writer (batches of `writer_batch_size` rows); the dictionary column becomes string.
    # An explicit fingerprint: without one, Dataset() hashes the whole table (~4 GB of heap at
    # full size) only to name cache files.
    stat = arrow_path.stat()
    fingerprint = f"{arrow_path.name}-{stat.st_size}-{stat.st_mtime_ns}"
    datasets.Dataset(table, fingerprint=fingerprint).save_to_disk(str(tmp), num_shards=1)
    os.replace(tmp, hf_dir)
    print(f"# prepared {hf_dir} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def read_into_page_cache(paths) -> None:
    buffer = bytearray(16 << 20)
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            with open(file, "rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass


def run_worker(method, path, hf_dir, warm_path, warm_hf_dir, timeout_s=600) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        method,
        "--path",
        str(path),
        "--hf-dir",
        str(hf_dir),
        "--warm-path",
        str(warm_path),
        "--warm-hf-dir",
        str(warm_hf_dir),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s} s"}
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {"error": f"exit {done.returncode}: {last_line}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def reference_checksums(path: Path) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    column = ipc.open_file(pa.memory_map(str(path))).read_all()[COLUMN]
    values = column.to_numpy().astype(np.float64)
    return {
        "rows": len(values),
        "head_sum": float(values[:1000].sum()),
        "tail_sum": float(values[-1000:].sum()),
    }


def summarize(method, runs, reference, n_rows, file_path) -> dict:
    good = [run for run in runs if "error" not in run]
    summary = {"method": method, "code": METHODS[method][1], "runs": runs}
    if not good:
        summary["error"] = runs[0]["error"] if runs else "not run"
        return summary
    last = good[-1]
    correct = all(
        run["shape"] == [n_rows]
        and run["dtype"] == "float32"
        and run["head_sum"] == reference["head_sum"]
        and run["tail_sum"] == reference["tail_sum"]
        for run in good
    )
    memory = last["memory"]
    if memory == str(file_path.resolve()) or memory == str(file_path):
        where = "view of file"
    elif memory == "anonymous":
        where = "heap copy"
    else:
        where = memory
    summary.update(
        {
            "export_ms": statistics.median(run["export_ms"] for run in good),
            "export_plus_first_pass_ms": statistics.median(
                run["export_ms"] + run["first_pass_ms"] for run in good
            ),
            "first_call_ms": statistics.median(run["first_call_ms"] for run in good),
            "rss_anon_growth_mb": statistics.median(run["rss_anon_growth_mb"] for run in good),
            "rss_file_growth_mb": statistics.median(run["rss_file_growth_mb"] for run in good),
            "result_memory": where,
            "writeable": last["writeable"],
            "correct": correct,
            "good_runs": len(good),
        }
    )
    if len(good) < len(runs):
        summary["error"] = next(run["error"] for run in runs if "error" in run)
    return summary


def format_ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def format_ratio(value: float) -> str:
    return f"{value:.1f}x" if value < 100 else f"{value:,.0f}x"


def markdown(results, info, n_rows, file_size, repeats) -> str:
    reference = next((r for r in results if r["method"] == REFERENCE and "export_ms" in r), None)
    lines = [
        f"Open + export column `{COLUMN}` (float32, {n_rows:,} rows) of `tab` "
        f"({file_size / 1e9:.3f} GB), file in page cache, median of {repeats} fresh processes.",
        "",
        f"Machine: {info['cpu_model']}, nproc {info['nproc']}, {info['ram_gib']} GiB RAM, "
        f"Linux {info['kernel']}, Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + f"; relay_ml extension: {info['relay_ml_extension']}",
        "",
        "| method | code | open+export ms | vs relay | RssAnon growth MB "
        "| + first pass ms | result | first-call init ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for result in results:
        code = "`" + result["code"].replace("|", "\\|") + "`"
        if "export_ms" not in result:
            lines.append(
                f"| {result['method']} | {code} | unavailable: {result['error']} | | | | | |"
            )
            continue
        ratio = (
            format_ratio(result["export_ms"] / reference["export_ms"])
            if reference and result is not reference
            else ("1.0x" if result is reference else "n/a")
        )
        note = "" if result["correct"] else " WRONG VALUES"
        lines.append(
            f"| {result['method']} | {code} | {format_ms(result['export_ms'])} | {ratio} "
            f"| {result['rss_anon_growth_mb']:.1f} "
            f"| {format_ms(result['export_plus_first_pass_ms'])} "
            f"| {result['result_memory']}{note} | {format_ms(result['first_call_ms'])} |"
        )
    lines += [
        "",
        "vs relay = peer time / relay time (higher: relay faster). RssAnon growth: anonymous "
        "(heap) memory added by the operation, result still alive; file-backed pages of a "
        "mapping are not anonymous. + first pass: open+export plus one `np.add.reduce` over the "
        "array (a mapped view pays its page faults here). result: where the array's memory lives "
        "(/proc/self/maps). first-call init: the same operation on a 1,000-row file, first call "
        "in the process (lazy imports and setup), not included in the other columns.",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(HERE / "data"), help="folder with the workloads")
    parser.add_argument("--rows-scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="comma-separated methods (default: all)")
    parser.add_argument("--json", help="where to write results (default: benchmarks/results/)")
    # worker mode (internal)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--hf-dir", help=argparse.SUPPRESS)
    parser.add_argument("--warm-path", help=argparse.SUPPRESS)
    parser.add_argument("--warm-hf-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker(args.worker, args.path, args.hf_dir, args.warm_path, args.warm_hf_dir)
        print(json.dumps(result))
        return 0

    sys.path.insert(0, str(HERE))
    import make_data

    methods = args.only.split(",") if args.only else list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")

    data = Path(args.data)
    path = make_data.make(data, "tab", args.rows_scale, verbose=False)
    warm_path = make_data.make(data, "tab", WARMUP_ROWS / make_data.TAB_ROWS, verbose=False)
    hf_dir = data / (path.stem + "_hf")
    warm_hf_dir = data / (warm_path.stem + "_hf")
    if any(m.startswith("datasets.") for m in methods):
        prepare_hf(path, hf_dir)
        prepare_hf(warm_path, warm_hf_dir)

    n_rows = make_data.rows_for("tab", args.rows_scale)
    reference = reference_checksums(path)
    info = machine_info()
    read_into_page_cache([path, warm_path] + [d for d in (hf_dir, warm_hf_dir) if d.exists()])

    def run(method):
        return run_worker(method, path, hf_dir, warm_path, warm_hf_dir)

    for method in methods:  # warm-up run, discarded
        outcome = run(method)
        if "error" in outcome:
            print(f"# {method}: {outcome['error']}", file=sys.stderr)
    runs = {method: [] for method in methods}
    for repeat in range(args.repeats):
        for method in methods:
            runs[method].append(run(method))
        print(f"# repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)

    results = [summarize(m, runs[m], reference, n_rows, path) for m in methods]
    table = markdown(results, info, n_rows, path.stat().st_size, args.repeats)
    print(table)

    suffix = "" if args.rows_scale == 1.0 else f"_x{args.rows_scale:g}"
    out = Path(args.json) if args.json else HERE / "results" / f"open_export{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": "open_export",
        "workload": "tab",
        "column": COLUMN,
        "rows": n_rows,
        "rows_scale": args.rows_scale,
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "repeats": args.repeats,
        "reference_method": REFERENCE,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": info,
        "results": results,
        "table_markdown": table,
    }
    if any(r["method"] == REFERENCE and "export_ms" in r for r in results):
        relay_ms = next(r["export_ms"] for r in results if r["method"] == REFERENCE)
        for result in results:
            if "export_ms" in result:
                result["ratio_vs_relay"] = result["export_ms"] / relay_ms
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n# wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
