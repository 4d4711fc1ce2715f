"""Training-loader throughput: batches of rows into torch tensors, relay_ml against its peers.

Workloads (DESIGN.md, "Benchmark workloads"; data made by make_data.py):
- ``tab``: shuffled batches of 1024 rows of ``f0..f7`` (stacked into a (B, 8) float32 tensor)
  and ``label`` (int64);
- ``emb``: shuffled batches of 1024 rows of ``emb`` (a (B, 64) float32 tensor) and ``label``;
- ``tab-seq``: ``tab`` batches in file order (no shuffle);
- ``tab-block``: ``tab`` batches with relay's ``shuffle="block"`` (relay only; the NumPy
  reference stays a global permutation);
- ``tab-parquet``: ``tab.parquet`` (pyarrow, zstd, 1 M-row groups) read piece by piece with
  ``shuffle="block"``, against a hand-written ``pyarrow.parquet.ParquetFile.iter_batches`` loop
  in file order (``pyarrow``), the reference of that workload;
- ``tab-polars``: ``tab`` as Polars writes it (``write_ipc``: 163 record batches, a
  ``dictionary<string_view>`` column), relay only, globally shuffled; its reference is relay's
  loader over the one-batch ``tab.arrow`` of the same run (a gather across record batches
  should cost no more than one within a batch).

Methods (each in a fresh subprocess, so imports and allocators never mix):
- ``relay.loader``: ``relay_ml.torch.loader(frame, 1024, features=..., target="label",
  shuffle="global")`` (Rust gather, prefetch 2, no worker processes);
- ``relay.DataLoader-0`` / ``relay.DataLoader-2``: ``torch.utils.data.DataLoader`` over
  ``RelayDataset`` with ``batch_size=1024, shuffle=True`` and 0 or 2 worker processes;
- ``numpy``: hand-written NumPy fancy indexing on the mapped buffers (pyarrow memory_map views),
  ``np.stack`` of the feature columns, then ``torch.from_numpy``;
- ``datasets``: HF datasets ``with_format("torch")``, indexing a batch of rows at a time;
- ``polars``: the columns read into RAM first (not timed), then ``df[indices]`` per batch and
  ``to_numpy`` into torch.
Lance is not measured: no ``pylance`` wheel is installable from this machine's package index.

Each run takes batches until the epoch ends or ``--seconds`` pass, after one untimed batch (so
imports, worker start-up and first-touch are not counted as throughput), and reports rows/s and
RssAnon growth from after that first batch to the end (what the loop keeps, beyond the
prefetched batches). It also reports the time to the first batch and the RssAnon growth until
then, both measured from after the imports (what making the loader costs: a permutation, a
decode of the whole source). Repeats are round-robin over methods; medians are reported.

``--cold`` adds a larger-than-page-cache comparison without dropping caches: before each run,
``posix_fadvise(DONTNEED)`` evicts the file's pages, and relay's ``"global"`` and ``"block"``
shuffles are timed on the cold file.

Usage:
    python benchmarks/bench_loader.py [--data benchmarks/data] [--seconds 4] [--repeats 3]
        [--workloads tab,emb,tab-seq] [--only relay.loader,numpy,...] [--cold] [--json PATH]
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
sys.path.insert(0, str(HERE))

from bench_open_export import _proc_status_mb, machine_info  # noqa: E402

BATCH = 1024
FEATURES = {"tab": [f"f{i}" for i in range(8)], "emb": ["emb"]}
METHODS = [
    "relay.loader",
    "relay.DataLoader-0",
    "relay.DataLoader-2",
    "numpy",
    "datasets",
    "polars",
    "pyarrow",
]
#: The methods each workload runs (of those asked for); the others run every method but pyarrow.
WORKLOAD_METHODS = {
    "tab-block": ["relay.loader", "numpy"],
    "tab-parquet": ["relay.loader", "pyarrow"],
    "tab-polars": ["relay.loader"],
}
REFERENCES = {"tab-parquet": "pyarrow"}
#: Workloads whose reference is a method of another workload of the same run.
CROSS_REFERENCES = {"tab-polars": ("tab", "relay.loader")}
REFERENCE = "numpy"
#: The shuffle of each workload (relay's name; the peers shuffle globally when it is not None).
SHUFFLES = {
    "tab": "global",
    "emb": "global",
    "tab-seq": None,
    "tab-block": "block",
    "tab-parquet": "block",
    "tab-polars": "global",
}


def _file(data: Path, workload: str) -> Path:
    if workload == "tab-parquet":
        return data / "tab.parquet"
    if workload == "tab-polars":
        return data / "tab_polars.arrow"
    return data / ("emb.arrow" if workload == "emb" else "tab.arrow")


# --------------------------------------------------------------------------------------------
# worker side (runs in a fresh subprocess)


def _batches(method: str, workload: str, path: str, hf_dir: str, shuffle: str | None):
    """An iterator of (x, y) torch batches for the method."""
    import numpy as np
    import torch

    features = FEATURES["emb" if workload == "emb" else "tab"]
    if method == "pyarrow":
        import pyarrow.parquet as pq

        def gen():
            for batch in pq.ParquetFile(path).iter_batches(
                batch_size=BATCH, columns=[*features, "label"]
            ):
                columns = [batch.column(f).to_numpy() for f in features]
                yield (
                    torch.from_numpy(np.stack(columns, axis=1)),
                    torch.from_numpy(batch.column("label").to_numpy()),
                )

        return gen()
    if method.startswith("relay."):
        import relay_ml as relay
        from relay_ml.torch import RelayDataset, loader

        frame = relay.scan(path)
        if method == "relay.loader":
            return iter(
                loader(frame, BATCH, features=features, target="label", shuffle=shuffle, seed=0)
            )
        workers = int(method.rsplit("-", 1)[1])
        ds = RelayDataset(frame, features=features, target="label")
        return iter(
            torch.utils.data.DataLoader(
                ds, batch_size=BATCH, shuffle=shuffle is not None, num_workers=workers
            )
        )
    import pyarrow as pa

    n = pa.ipc.open_file(pa.memory_map(path)).get_batch(0).num_rows
    order = np.random.default_rng(0).permutation(n) if shuffle else np.arange(n)
    starts = range(0, n, BATCH)
    if method == "numpy":
        batch = pa.ipc.open_file(pa.memory_map(path)).get_batch(0)
        label = batch.column("label").to_numpy()
        if workload == "emb":
            emb = batch.column("emb").flatten().to_numpy().reshape(n, -1)

            def gen():
                for s in starts:
                    idx = order[s : s + BATCH]
                    yield torch.from_numpy(emb[idx]), torch.from_numpy(label[idx])
        elif shuffle:
            columns = [batch.column(f).to_numpy() for f in features]

            def gen():
                for s in starts:
                    idx = order[s : s + BATCH]
                    yield (
                        torch.from_numpy(np.stack([c[idx] for c in columns], axis=1)),
                        torch.from_numpy(label[idx]),
                    )
        else:
            columns = [batch.column(f).to_numpy() for f in features]

            def gen():
                for s in starts:
                    yield (
                        torch.from_numpy(np.stack([c[s : s + BATCH] for c in columns], axis=1)),
                        torch.from_numpy(label[s : s + BATCH]),
                    )

        return gen()
    if method == "datasets":
        import datasets

        datasets.disable_progress_bars()
        ds = datasets.load_from_disk(hf_dir).with_format("torch")

        def gen():
            for s in starts:
                rows = ds[order[s : s + BATCH].tolist()] if shuffle else ds[s : s + BATCH]
                if workload == "emb":
                    yield rows["emb"], rows["label"]
                else:
                    yield torch.stack([rows[f] for f in features], dim=1), rows["label"]

        return gen()
    if method == "polars":
        import polars as pl

        df = pl.read_ipc(path, columns=[*features, "label"]).rechunk()

        def gen():
            for s in starts:
                rows = df[order[s : s + BATCH]] if shuffle else df[s : s + BATCH]
                if workload == "emb":
                    x = torch.from_numpy(rows["emb"].to_numpy())
                else:
                    x = torch.from_numpy(rows.select(features).to_numpy())
                yield x, torch.from_numpy(rows["label"].to_numpy())

        return gen()
    raise ValueError(f"unknown method {method!r}")


def worker(
    method: str, workload: str, path: str, hf_dir: str, seconds: float, shuffle: str | None
) -> dict:
    import numpy  # noqa: F401  imports are not part of the time to the first batch
    import torch  # noqa: F401

    if method.startswith("relay."):
        import relay_ml.torch  # noqa: F401
    anon_start = _proc_status_mb("RssAnon")
    started = time.perf_counter()
    batches = _batches(method, workload, path, hf_dir, shuffle)
    x, y = next(batches)  # untimed as throughput: worker start-up, first touch
    first_s = time.perf_counter() - started
    anon_first = _proc_status_mb("RssAnon") - anon_start
    shape = list(x.shape)
    anon_before = _proc_status_mb("RssAnon")
    rows = 0
    checksum = 0.0
    started = time.perf_counter()
    deadline = started + seconds
    for x, y in batches:  # noqa: B007 - the last x is read after the loop
        rows += len(y)
        checksum += float(y[:4].sum())
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "first_batch_s": first_s,
        "rss_anon_first_batch_mb": anon_first,
        "rss_anon_growth_mb": _proc_status_mb("RssAnon") - anon_before,
        "x_shape": shape,
        "x_dtype": str(x.dtype),
        "checksum": checksum,
    }


def _evict(path: Path) -> None:
    """Drops the file's clean pages from the page cache (a cold file, without root)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# parent side


def _run(
    method: str, workload: str, args: argparse.Namespace, shuffle: str | None, cold: bool = False
) -> dict:
    path = _file(args.data, workload)
    hf_dir = args.data / ("emb_hf" if workload == "emb" else "tab_hf")
    if cold:
        _evict(path)
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--workload",
        workload,
        "--path",
        str(path),
        "--hf-dir",
        str(hf_dir),
        "--seconds",
        str(args.seconds),
        "--shuffle",
        shuffle or "none",
    ]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        return {
            "error": done.stderr.strip().splitlines()[-1]
            if done.stderr.strip()
            else f"exit {done.returncode}"
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ensure_data(args: argparse.Namespace, workloads: list[str]) -> None:
    import make_data

    if "tab-parquet" in workloads:
        from bench_parquet import ensure_parquet

        make_data.make(args.data, "tab")
        ensure_parquet(args.data)
    if "tab-polars" in workloads and not _file(args.data, "tab-polars").exists():
        import polars as pl

        source = make_data.make(args.data, "tab")
        target = _file(args.data, "tab-polars")
        pl.read_ipc(source).write_ipc(target.with_suffix(".tmp"))
        target.with_suffix(".tmp").rename(target)
    for workload in {"emb" if w == "emb" else "tab" for w in workloads if w != "tab-parquet"}:
        path = make_data.make(args.data, workload)
        hf_dir = args.data / f"{workload}_hf"
        if not hf_dir.exists() and "datasets" in args.methods:
            import datasets
            import pyarrow as pa

            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
            datasets.Dataset(table).save_to_disk(str(hf_dir))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="tab,emb,tab-seq")
    parser.add_argument("--only", default=",".join(METHODS))
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "loader.json")
    parser.add_argument("--worker")
    parser.add_argument("--workload")
    parser.add_argument("--path")
    parser.add_argument("--hf-dir")
    parser.add_argument("--shuffle")
    args = parser.parse_args()
    if args.worker:
        shuffle = None if args.shuffle == "none" else args.shuffle
        print(
            json.dumps(
                worker(args.worker, args.workload, args.path, args.hf_dir, args.seconds, shuffle)
            )
        )
        return 0

    args.methods = args.only.split(",")
    workloads = args.workloads.split(",")
    _ensure_data(args, workloads)
    for workload in workloads:  # page cache warm-up
        with open(_file(args.data, workload), "rb") as f:
            while f.read(1 << 24):
                pass

    def methods_of(workload: str) -> list[str]:
        return [m for m in args.methods if m in WORKLOAD_METHODS.get(workload, METHODS[:-1])]

    results: dict[str, dict[str, list[dict]]] = {
        w: {m: [] for m in methods_of(w)} for w in workloads
    }
    for repeat in range(args.repeats):
        for workload in workloads:
            shuffle = SHUFFLES[workload]
            for method in methods_of(workload):
                # Peers have no block shuffle: NumPy visits a global permutation, pyarrow file
                # order.
                peer = "global" if shuffle else None
                run_shuffle = (
                    shuffle
                    if method.startswith("relay.")
                    else (None if method == "pyarrow" else peer)
                )
                record = _run(
                    method,
                    "tab" if workload in ("tab-seq", "tab-block") else workload,
                    args,
                    run_shuffle,
                )
                results[workload][method].append(record)
                print(
                    f"[{repeat}] {workload:8s} {method:20s} "
                    + (
                        f"{record['rows_per_s'] / 1e6:7.3f} M rows/s"
                        if "rows_per_s" in record
                        else record["error"]
                    ),
                    file=sys.stderr,
                )
    cold: dict[str, list[dict]] = {}
    if args.cold:
        for repeat in range(args.repeats):
            for shuffle in ("global", "block"):
                cold.setdefault(shuffle, []).append(
                    _run("relay.loader", "tab", args, shuffle, cold=True)
                )
                print(
                    f"[{repeat}] cold tab relay.loader {shuffle}: "
                    f"{cold[shuffle][-1].get('rows_per_s', 0) / 1e6:.3f} M rows/s",
                    file=sys.stderr,
                )

    def median(records: list[dict], key: str) -> float | None:
        values = [r[key] for r in records if key in r]
        return statistics.median(values) if values else None

    print(
        f"\nMachine: {machine_info()['cpu_model']} ({machine_info()['usable_cpus']} cores); "
        f"batches of {BATCH}; medians of {args.repeats} runs of up to {args.seconds:g} s\n"
    )
    for workload in workloads:
        print(f"### {workload}\n")
        reference_name = REFERENCES.get(workload, REFERENCE)
        reference_records = results[workload].get(reference_name, [])
        if workload in CROSS_REFERENCES:
            other, reference_name = CROSS_REFERENCES[workload]
            reference_records = results.get(other, {}).get(reference_name, [])
            reference_name = f"{reference_name} on {other}"
        print(
            f"| method | M rows/s | vs {reference_name} | first batch (ms) | RssAnon to first "
            "batch (MB) | RssAnon growth after (MB) |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        reference = median(reference_records, "rows_per_s")
        for method in results[workload]:
            rate = median(results[workload][method], "rows_per_s")
            growth = median(results[workload][method], "rss_anon_growth_mb")
            if rate is None:
                print(
                    f"| {method} | failed: {results[workload][method][-1].get('error', '?')} | | | "
                    "| |"
                )
                continue
            ratio = f"{rate / reference:.2f}x" if reference else "-"
            first_ms = median(results[workload][method], "first_batch_s") * 1e3
            first_mb = median(results[workload][method], "rss_anon_first_batch_mb")
            print(
                f"| {method} | {rate / 1e6:.3f} | {ratio} | {first_ms:.1f} | {first_mb:.1f} | "
                f"{growth:.1f} |"
            )
        print()
    if cold:
        print("### cold file (tab, evicted from the page cache before each run)\n")
        print("| shuffle | M rows/s |")
        print("| --- | ---: |")
        for shuffle, records in cold.items():
            print(f"| {shuffle} | {median(records, 'rows_per_s') / 1e6:.3f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": machine_info(), "results": results, "cold": cold}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
