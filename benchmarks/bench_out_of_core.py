"""Training from a Parquet dataset larger than memory: block-shuffled batches into torch.

Workload (DESIGN.md, "Benchmark workloads", out of core): the ``tab`` schema (id int64, age int32
0..99, f0..f7 float32 standard normal, label int64 0..9, city dictionary<int32, string> of 8
values) as a dataset of Parquet shards written by pyarrow (zstd, row groups of 1,000,000 rows,
``--file-rows`` rows per file) in ``benchmarks/data/ooc/``. The rows are make_data.py's: the
same seed and per-(column, 2^20-row chunk) generators, so the first 20 M rows equal ``tab.arrow``.
Generation runs chunk by chunk (two files at a time, one per core): its memory is bounded
whatever ``--rows`` is (61 s and 636 MB peak RSS for the default 100 M rows, 3.7 GB on disk).

Each method yields batches of 1024 rows: ``f0..f7`` stacked into a (B, 8) float32 tensor and
``label`` as int64, for one epoch or ``--max-rows`` rows, each in a fresh subprocess:

- ``relay``: ``relay_ml.torch.loader(relay_ml.scan("ooc/*.parquet"), 1024, features=f0..f7,
  target="label", shuffle="block", seed=0)`` (row groups in a keyed random order, read piece by
  piece; rows shuffled within windows of at least 1,048,576 rows);
- ``ray``: ``ray.data.read_parquet(dir, shuffle="files").select_columns(...).iter_torch_batches(
  batch_size=1024, local_shuffle_buffer_size=1_048_576, local_shuffle_seed=0)`` after
  ``ray.init(num_cpus=2, include_dashboard=False, object_store_memory=--ray-object-store)``
  (500 MB by default; with 1 GB too, Ray's processes were OOM-killed under the 2 GiB limit),
  ``torch.stack`` of the eight column tensors. ``--nolimit ray`` (the default) also runs it
  without the memory limit, as an extra row;
- ``datasets``: HF ``load_dataset("parquet", data_files=files, split="train", streaming=True,
  columns=...).shuffle(seed=0, buffer_size=10_000).with_format("torch").iter(batch_size=1024)``,
  ``torch.stack`` of the eight column tensors. datasets 5 fills the shuffle buffer from up to 10
  shards at once (``max_buffer_input_shards=10``; 8.4 GB of RssAnon without a limit here);
  ``datasets.1shard`` passes ``max_buffer_input_shards=1`` (one shard at a time).
  ``datasets.DataLoader`` (not run by default): the first through
  ``torch.utils.data.DataLoader(ds, batch_size=1024)``, which collates row by row (2 k rows/s);
- ``pyarrow``: no shuffle, a hand-written loop: per file, ``pq.ParquetFile(f).iter_batches(
  batch_size=1024, columns=...)``, ``np.stack`` of the eight columns, ``torch.from_numpy``.

Memory. Where a cgroup memory controller accepts a child group (cgroup v1 here; v2 where the
parent allows it), each method's process runs in a fresh group limited to ``--mem-limit`` GiB
(default 2; the dataset's decoded f0..f7 + label, 40 bytes a row, is then 1.86x the limit at the
default 100 M rows). The first OOM kill in the group ends the run and is reported
(``--allow-oom-kills`` lets it go on: Ray restarts killed workers, and can keep doing so until
``--timeout``). Everything the method starts (Ray's GCS, raylet and workers) inherits the group.
Otherwise (no cgroup) nothing is limited and the numbers are measurements only; the output says
which. Either way a sampler in the parent reads ``/proc/<pid>/status`` of every process of the
method (the cgroup's processes, or the child and its descendants) every 0.1 s and reports the
peak of the summed RssAnon (heap, not file pages or shared memory), the driver's own peak
RssAnon, and, with a cgroup, the group's peak charge (``memory.max_usage_in_bytes``: anon + page
cache it read in + shared memory, e.g. Ray's object store in /dev/shm) and its peak shared memory.

The shards are read once before the runs, so they are in the page cache (charged to the parent's
group, not to the method's: like a fast disk) unless ``--cold``, which evicts them
(``posix_fadvise(DONTNEED)``) before each method: the page cache the method reads in then counts
against its limit.

Timing: ``first batch`` is from building the pipeline (after imports of torch and the library,
reported as ``import_s`` in the JSON; for Ray including
``ray.init``, also reported alone as ``init``) to the first batch in hand; ``rows/s`` counts the
rows after the first batch. Full epochs are checked: rows, the sum of ``label`` and of ``f0``
against pyarrow's. The machine is shared: a run during which other processes kept more than
``--max-other-load`` cores (default 0.3) busy on average is run again, up to ``--tries`` (2) runs;
the table shows the load of the run kept. ``--timeout`` (600 s) ends a method that hangs (all
the processes of its group are killed).

Usage:
    python benchmarks/bench_out_of_core.py [--rows 100_000_000] [--max-rows 20_000_000]
        [--mem-limit 2] [--skip relay] [--only relay,ray,datasets,datasets.1shard,pyarrow] [--cold]
        [--nolimit ray] [--allow-oom-kills] [--repeats 1] [--tries 2] [--max-other-load 0.3]
        [--ray-object-store 5e8] [--timeout 600] [--json PATH] [--generate-only]
    python benchmarks/bench_out_of_core.py --rows 2_000_000 --file-rows 500_000 \\
        --max-rows 0  # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BATCH = 1024
FEATURES = [f"f{i}" for i in range(8)]
COLUMNS = [*FEATURES, "label"]
DECODED_BYTES_PER_ROW = 8 * 4 + 8  # f0..f7 float32 + label int64
ALL_BYTES_PER_ROW = 8 + 4 + 8 * 4 + 8 + 4  # id, age, f0..f7, label, city codes (int32)
DEFAULT_ROWS = 100_000_000
DEFAULT_FILE_ROWS = 10_000_000
ROW_GROUP_ROWS = 1_000_000
METHODS = ["relay", "ray", "datasets", "datasets.1shard", "pyarrow"]
EXTRA_METHODS = ["datasets.DataLoader"]
REFERENCE = "relay"
SHUFFLE_BUFFER = 1_048_576  # relay's default "block" window; Ray's local shuffle buffer
HF_BUFFER = 10_000
META_KEY = b"relay_ml.bench.out_of_core"


# --------------------------------------------------------------------------------------------
# data


def dataset_dir(data: Path, rows: int, file_rows: int) -> Path:
    name = "ooc" if rows == DEFAULT_ROWS else f"ooc_{rows}"
    if file_rows != DEFAULT_FILE_ROWS:
        name += f"_f{file_rows}"
    return data / name


def _file_ranges(rows: int, file_rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + file_rows, rows)) for start in range(0, rows, file_rows)]


def _shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _tab_batches(start: int, stop: int):
    """Record batches of rows [start, stop) of make_data's ``tab``, in order, chunk by chunk."""
    import numpy as np
    import pyarrow as pa

    import make_data as md

    chunk_rows = md.CHUNK_ROWS
    for chunk in range(start // chunk_rows, (stop - 1) // chunk_rows + 1):
        c0 = chunk * chunk_rows
        # A generator's first k draws do not depend on how many are asked for, so a chunk cut
        # short at `stop` holds the same values as the full one.
        n = min(c0 + chunk_rows, stop) - c0
        lo = max(start, c0) - c0
        columns = [pa.array(np.arange(c0, c0 + n, dtype=np.int64))]
        columns.append(pa.array(md._rng("tab", 1, chunk).integers(0, 100, size=n, dtype=np.int32)))
        for i in range(8):
            values = np.empty(n, dtype=np.float32)
            md._rng("tab", 2 + i, chunk).standard_normal(out=values, dtype=np.float32)
            columns.append(pa.array(values))
        columns.append(pa.array(md._rng("tab", 10, chunk).integers(0, 10, size=n, dtype=np.int64)))
        codes = md._rng("tab", 11, chunk).integers(0, len(md.CITIES), size=n, dtype=np.int32)
        columns.append(
            pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(md.CITIES, type=pa.string()))
        )
        yield pa.RecordBatch.from_arrays(columns, schema=md.TAB_SCHEMA).slice(lo)


def _schema(rows: int, file_rows: int):
    import make_data as md

    meta = json.dumps(
        {"seed": md.SEED, "rows": rows, "file_rows": file_rows, "row_group_rows": ROW_GROUP_ROWS}
    )
    return md.TAB_SCHEMA.with_metadata({META_KEY: meta.encode()})


def _write_shard(path: Path, start: int, stop: int, schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(str(tmp), schema, compression="zstd") as writer:
            pending: list = []
            pending_rows = 0
            for batch in _tab_batches(start, stop):
                pending.append(batch)
                pending_rows += batch.num_rows
                while pending_rows >= ROW_GROUP_ROWS:  # exactly 1 M rows per row group
                    table = pa.Table.from_batches(pending, schema=schema)
                    writer.write_table(
                        table.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS
                    )
                    rest = table.slice(ROW_GROUP_ROWS)
                    pending, pending_rows = rest.to_batches(), rest.num_rows
            if pending_rows:
                writer.write_table(
                    pa.Table.from_batches(pending, schema=schema), row_group_size=ROW_GROUP_ROWS
                )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _shard_ok(path: Path, start: int, stop: int, schema) -> bool:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(str(path)).metadata
        return meta.num_rows == stop - start and meta.schema.to_arrow_schema().equals(
            schema, check_metadata=True
        )
    except Exception:  # missing, truncated, or not Parquet: rewrite it
        return False


def make_dataset(data: Path, rows: int, file_rows: int, threads: int = 2) -> Path:
    """Writes the shards that are missing or wrong; returns the dataset folder."""
    folder = dataset_dir(data, rows, file_rows)
    folder.mkdir(parents=True, exist_ok=True)
    schema = _schema(rows, file_rows)
    ranges = _file_ranges(rows, file_rows)
    expected = {_shard_name(i) for i in range(len(ranges))}
    for stray in folder.glob("*.parquet"):
        if stray.name not in expected:
            stray.unlink()
    todo = [
        (folder / _shard_name(i), a, b)
        for i, (a, b) in enumerate(ranges)
        if not _shard_ok(folder / _shard_name(i), a, b, schema)
    ]
    if not todo:
        print(f"{folder}: {len(ranges)} shards with {rows:,} rows, kept", file=sys.stderr)
        return folder
    started = time.perf_counter()
    print(
        f"{folder}: writing {len(todo)} of {len(ranges)} shards ({rows:,} rows) ...",
        file=sys.stderr,
    )
    with ThreadPoolExecutor(
        threads
    ) as pool:  # numpy's generators and the Parquet writer release the GIL
        for _ in pool.map(lambda job: _write_shard(job[0], job[1], job[2], schema), todo):
            pass
    print(f"{folder}: written in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return folder


def dataset_info(folder: Path) -> dict:
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    rows = 0
    groups = 0
    for f in files:
        meta = pq.ParquetFile(str(f)).metadata
        rows += meta.num_rows
        groups += meta.num_row_groups
    return {
        "dir": str(folder),
        "files": len(files),
        "row_groups": groups,
        "rows": rows,
        "on_disk_bytes": sum(f.stat().st_size for f in files),
        "decoded_selected_bytes": rows * DECODED_BYTES_PER_ROW,
        "decoded_all_bytes": rows * ALL_BYTES_PER_ROW,
    }


def reference_sums(folder: Path) -> dict:
    """Sums over the whole dataset, to check full epochs."""
    import numpy as np
    import pyarrow.parquet as pq

    label = 0
    f0 = 0.0
    for f in sorted(folder.glob("*.parquet")):
        pf = pq.ParquetFile(str(f))
        for i in range(pf.num_row_groups):
            t = pf.read_row_group(i, columns=["f0", "label"])
            label += int(np.sum(t["label"].to_numpy(), dtype=np.int64))
            f0 += float(np.sum(t["f0"].to_numpy(), dtype=np.float64))
    return {"label_sum": label, "f0_sum": f0}


def _touch(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as handle:
            while handle.read(1 << 24):
                pass


def _evict(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# worker side (runs in a fresh subprocess)


def _status_kb(pid: int | str, fields: tuple[str, ...]) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key = line.split(":", 1)[0]
                if key in fields:
                    out[key] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _batches(method: str, folder: str, timings: dict):
    """An iterator of (x, y) torch batches; records set-up times in `timings`."""
    import numpy as np
    import torch

    files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
    if method == "relay":
        import relay_ml as relay
        from relay_ml.torch import loader

        frame = relay.scan(os.path.join(folder, "*.parquet"))
        return iter(
            loader(frame, BATCH, features=FEATURES, target="label", shuffle="block", seed=0)
        )
    if method == "ray":
        import ray

        started = time.perf_counter()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=int(float(os.environ["OOC_RAY_STORE"])),
            log_to_driver=False,
            logging_level="error",
        )
        timings["init_s"] = time.perf_counter() - started
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        with contextlib.suppress(AttributeError):
            ctx.print_on_execution_start = False
        ds = ray.data.read_parquet(folder, shuffle="files").select_columns(COLUMNS)

        def gen():
            for b in ds.iter_torch_batches(
                batch_size=BATCH, local_shuffle_buffer_size=SHUFFLE_BUFFER, local_shuffle_seed=0
            ):
                yield torch.stack([b[f] for f in FEATURES], dim=1), b["label"]

        return gen()
    if method.startswith("datasets"):
        import datasets

        datasets.disable_progress_bars()
        ds = datasets.load_dataset(
            "parquet", data_files=files, split="train", streaming=True, columns=COLUMNS
        )
        # datasets >= 5 fills the buffer from up to 10 shards at once (`max_buffer_input_shards`);
        # ".1shard" reads one shard at a time.
        shards = {"max_buffer_input_shards": 1} if method == "datasets.1shard" else {}
        ds = ds.shuffle(seed=0, buffer_size=HF_BUFFER, **shards).with_format("torch")
        if method == "datasets.DataLoader":
            batches = iter(torch.utils.data.DataLoader(ds, batch_size=BATCH))
        else:
            batches = ds.iter(batch_size=BATCH)

        def gen():
            for b in batches:
                yield torch.stack([b[f] for f in FEATURES], dim=1), b["label"]

        return gen()
    if method == "pyarrow":
        import pyarrow.parquet as pq

        def gen():
            for f in files:
                for rb in pq.ParquetFile(f).iter_batches(batch_size=BATCH, columns=COLUMNS):
                    x = np.stack([rb.column(name).to_numpy() for name in FEATURES], axis=1)
                    yield torch.from_numpy(x), torch.from_numpy(rb.column("label").to_numpy())

        return gen()
    raise ValueError(f"unknown method {method!r}")


_IMPORTS = {
    "relay": ["relay_ml", "relay_ml.torch"],
    "ray": ["ray", "ray.data"],
    "datasets": ["datasets"],
    "datasets.1shard": ["datasets"],
    "datasets.DataLoader": ["datasets"],
    "pyarrow": ["pyarrow", "pyarrow.parquet"],
}


def worker(method: str, folder: str, max_rows: int) -> dict:
    import importlib

    started = time.perf_counter()
    import numpy  # noqa: F401
    import torch

    for module in _IMPORTS[method]:
        importlib.import_module(module)
    import_s = time.perf_counter() - started
    anon_after_imports = _status_kb("self", ("RssAnon",)).get("RssAnon", 0) / 1024
    timings: dict = {}
    started = time.perf_counter()
    batches = _batches(method, folder, timings)
    x, y = next(batches)
    first_s = time.perf_counter() - started
    shape, x_dtype, y_dtype = list(x.shape), str(x.dtype), str(y.dtype)
    total = len(y)
    label_sum = torch.zeros((), dtype=torch.int64) + y.sum()
    f0_sum = x[:, 0].sum(dtype=torch.float64)
    bad_shapes = 0
    rows = 0
    epoch_done = True
    started = time.perf_counter()
    for x, y in batches:
        n = len(y)
        if x.shape[1] != 8 or x.shape[0] != n or x.dtype != torch.float32 or y.dtype != torch.int64:
            bad_shapes += 1
        rows += n
        label_sum += y.sum()
        f0_sum += x[:, 0].sum(dtype=torch.float64)
        if max_rows and total + rows >= max_rows:
            epoch_done = False
            break
    elapsed = time.perf_counter() - started
    del x, y
    status = _status_kb("self", ("RssAnon", "VmHWM"))
    return {
        "rows_timed": rows,
        "rows_seen": total + rows,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed if elapsed > 0 else None,
        "first_batch_s": first_s,
        "init_s": timings.get("init_s"),
        "import_s": import_s,
        "driver_rss_anon_after_imports_mb": anon_after_imports,
        "epoch_done": epoch_done,
        "label_sum": int(label_sum),
        "f0_sum": float(f0_sum),
        "bad_batches": bad_shapes,
        "first_x_shape": shape,
        "x_dtype": x_dtype,
        "y_dtype": y_dtype,
        "driver_rss_anon_end_mb": status.get("RssAnon", 0) / 1024,
        "driver_vm_hwm_mb": status.get("VmHWM", 0) / 1024,
    }


# --------------------------------------------------------------------------------------------
# memory: a cgroup per method where possible, and a sampler of the method's processes


class MemoryGroup:
    """A child memory cgroup (v1 or v2) with a limit, for one method's processes."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version

    @staticmethod
    def parent() -> tuple[Path, int] | None:
        """The memory cgroup this process is in, if the controller is mounted."""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                folder = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
                if (folder / "memory.limit_in_bytes").exists():
                    return folder, 1
        for line in lines:
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and controllers == "":
                for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                    folder = root / path.lstrip("/")
                    try:
                        if "memory" in (folder / "cgroup.controllers").read_text().split():
                            return folder, 2
                    except OSError:
                        continue
        return None

    @classmethod
    def create(cls, name: str, limit_bytes: int) -> MemoryGroup:
        found = cls.parent()
        if found is None:
            raise OSError("no memory cgroup controller")
        parent, version = found
        if version == 2:
            control = parent / "cgroup.subtree_control"
            if "memory" not in control.read_text().split():
                control.write_text("+memory")  # fails if the parent holds processes itself
        path = parent / name
        path.mkdir()
        group = cls(path, version)
        try:
            (path / ("memory.limit_in_bytes" if version == 1 else "memory.max")).write_text(
                str(limit_bytes)
            )
            if version == 2:
                (path / "memory.swap.max").write_text("0") if (
                    path / "memory.swap.max"
                ).exists() else None
        except OSError:
            group.remove()
            raise
        return group

    def add_self(self) -> None:  # called in the child between fork and exec
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def peak_bytes(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def stat(self) -> dict[str, int]:
        try:
            lines = (self.path / "memory.stat").read_text().splitlines()
            return {k: int(v) for k, v in (line.split() for line in lines)}
        except (OSError, ValueError):
            return {}

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                key, value = line.split()
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def kill_all(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def remove(self) -> None:
        self.kill_all()
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def probe_cgroup(limit_bytes: int) -> str | None:
    """A description of the limit that can be applied, or None."""
    try:
        group = MemoryGroup.create(f"relay_bench_probe_{os.getpid()}", limit_bytes)
    except OSError:
        return None
    version = group.version
    group.remove()
    return f"cgroup v{version} memory limit"


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, all threads
    except (OSError, ValueError, IndexError):
        return None


class Sampler(threading.Thread):
    """Every `interval` s, over the method's processes: the peak of summed RssAnon, the driver's
    own peak, CPU time (last seen value per process), and, with a group, its shared memory and
    OOM kills (`abort_on_oom`: the first OOM kill in the group ends the run: a method whose
    processes are killed and restarted, as Ray's are, could otherwise retry until the timeout)."""

    def __init__(
        self, driver: int, group: MemoryGroup | None, abort_on_oom: bool, interval: float = 0.1
    ) -> None:
        super().__init__(daemon=True)
        self.driver, self.group, self.abort_on_oom, self.interval = (
            driver,
            group,
            abort_on_oom,
            interval,
        )
        self.stop = threading.Event()
        self.peak_tree_kb = self.peak_driver_kb = self.peak_processes = self.peak_shmem = 0
        self.cpu_ticks: dict[int, int] = {}
        self.seen: dict[int, str | None] = {}  # pid -> start time, to end leftovers without a group
        self.oom_aborted = False

    def cpu_s(self) -> float:
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.stop.is_set():
            pids = self.group.pids() if self.group else _descendants(self.driver)
            total = 0
            for pid in pids:
                anon = _status_kb(pid, ("RssAnon",)).get("RssAnon", 0)
                total += anon
                if pid == self.driver:
                    self.peak_driver_kb = max(self.peak_driver_kb, anon)
                ticks = _cpu_ticks(pid)
                if ticks is not None:
                    self.cpu_ticks[pid] = max(ticks, self.cpu_ticks.get(pid, 0))
                if pid not in self.seen:
                    self.seen[pid] = _start_time(pid)
            self.peak_tree_kb = max(self.peak_tree_kb, total)
            self.peak_processes = max(self.peak_processes, len(pids))
            if self.group:
                self.peak_shmem = max(self.peak_shmem, self.group.stat().get("shmem", 0))
                if self.abort_on_oom and not self.oom_aborted and self.group.oom_kills():
                    self.oom_aborted = True
                    self.group.kill_all()
            self.stop.wait(self.interval)


# --------------------------------------------------------------------------------------------
# parent side


def _busy_cpu_s() -> float:
    """CPU seconds all processes on the machine have spent busy (as in bench_filter.py)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _run(
    method: str, limited: bool, folder: Path, args: argparse.Namespace, files: list[Path]
) -> dict:
    """One method in a fresh subprocess; again (up to --tries in all) when other processes kept
    more than --max-other-load cores busy meanwhile (the development machine is shared)."""
    for attempt in range(1, args.tries + 1):
        busy, own, children = (
            _busy_cpu_s(),
            _cpu_s(resource.RUSAGE_SELF),
            _cpu_s(resource.RUSAGE_CHILDREN),
        )
        record = _run_once(method, limited, folder, args, files)
        # The method's CPU: its reaped processes, or the per-process samples where larger (Ray's
        # workers are not our children and may never be reaped by theirs).
        method_cpu = max(_cpu_s(resource.RUSAGE_CHILDREN) - children, record["cpu_s"])
        own_cpu = _cpu_s(resource.RUSAGE_SELF) - own  # the sampler
        other = max(0.0, _busy_cpu_s() - busy - method_cpu - own_cpu) / record["wall_s"]
        record.update({"other_load": other, "attempts": attempt})
        if other <= args.max_other_load or "timed out" in record.get("error", ""):
            break
        if attempt < args.tries:
            print(
                f"# {method}: other processes used {other:.2f} cores meanwhile, again",
                file=sys.stderr,
            )
    return record


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _run_once(
    method: str, limited: bool, folder: Path, args: argparse.Namespace, files: list[Path]
) -> dict:
    if args.cold:
        _evict(files)
    group = None
    if limited:
        group = MemoryGroup.create(
            f"relay_bench_ooc_{method}_{os.getpid()}", int(args.mem_limit * 2**30)
        )
    scratch = Path(tempfile.mkdtemp(prefix="relay_bench_ooc_"))
    result_path, log_path = scratch / "result.json", scratch / "log.txt"
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--path",
        str(folder),
        "--max-rows",
        str(args.max_rows),
        "--result",
        str(result_path),
    ]
    env = dict(
        os.environ,
        OOC_RAY_STORE=str(args.ray_object_store),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        RAY_DEDUP_LOGS="0",
    )
    started = time.perf_counter()
    # Output to a file, not a pipe: processes the method leaves running (Ray's) would hold a
    # pipe open after the driver exits.
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            preexec_fn=group.add_self if group else None,
        )
    sampler = Sampler(process.pid, group, abort_on_oom=not args.allow_oom_kills)
    sampler.start()
    timed_out = False
    try:
        process.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    # End whatever the method left running (Ray's processes) or, after a timeout, all of it.
    if group:
        group.kill_all()
    else:
        for pid in set(_descendants(process.pid)) | set(sampler.seen):
            started_at = _start_time(pid)
            if (
                pid != os.getpid()
                and started_at is not None
                and started_at == sampler.seen.get(pid, started_at)
            ):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    process.wait()
    stderr = log_path.read_text(errors="replace")
    result = result_path.read_text() if result_path.exists() else ""
    shutil.rmtree(scratch, ignore_errors=True)
    record: dict = {
        "memory_limit_gib": args.mem_limit if group else None,
        "wall_s": wall,
        "cpu_s": sampler.cpu_s(),
        "peak_rss_anon_all_mb": sampler.peak_tree_kb / 1024,
        "peak_rss_anon_driver_mb": sampler.peak_driver_kb / 1024,
        "peak_processes": sampler.peak_processes,
    }
    if group:
        peak = group.peak_bytes()
        record["cgroup_peak_mb"] = peak / 2**20 if peak is not None else None
        record["cgroup_peak_shmem_mb"] = sampler.peak_shmem / 2**20
        record["oom_kills"] = group.oom_kills()
        group.remove()
    record["exit_code"] = process.returncode
    if result and not timed_out and not sampler.oom_aborted:
        record.update(json.loads(result))
        return record
    if sampler.oom_aborted:
        record["error"] = (
            f"OOM kill in its group under the {args.mem_limit:g} GiB limit (run ended)"
        )
    elif timed_out:
        record["error"] = f"timed out after {args.timeout:g} s"
    elif record.get("oom_kills"):
        record["error"] = (
            f"OOM-killed under the {args.mem_limit:g} GiB limit (exit {process.returncode})"
        )
    else:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        record["error"] = lines[-1][:300] if lines else f"exit {process.returncode}"
    record["stderr_tail"] = stderr[-3000:]
    return record


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for package in ["relay_ml", "numpy", "pyarrow", "torch", "ray", "datasets"]:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=DEFAULT_ROWS)
    parser.add_argument(
        "--file-rows", type=lambda s: int(s.replace("_", "")), default=DEFAULT_FILE_ROWS
    )
    parser.add_argument(
        "--max-rows",
        type=lambda s: int(s.replace("_", "")),
        default=20_000_000,
        help="rows per method (0: one full epoch)",
    )
    parser.add_argument(
        "--mem-limit", type=float, default=2.0, help="GiB per method, by cgroup (0: no limit)"
    )
    parser.add_argument("--ray-object-store", type=float, default=5e8, help="bytes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per method run")
    parser.add_argument(
        "--max-other-load",
        type=float,
        default=0.3,
        help="run a method again when other processes used more cores than this meanwhile",
    )
    parser.add_argument(
        "--tries", type=int, default=2, help="runs per method at most (see --max-other-load)"
    )
    parser.add_argument(
        "--only", default=",".join(METHODS), help=f"methods, of {METHODS + EXTRA_METHODS}"
    )
    parser.add_argument("--skip", default="", help="methods to leave out, e.g. relay")
    parser.add_argument(
        "--nolimit",
        default="ray",
        help="methods also run without the memory limit (an extra row each; '' for none)",
    )
    parser.add_argument(
        "--allow-oom-kills",
        action="store_true",
        help="let a run go on after an OOM kill in its group (Ray restarts killed workers)",
    )
    parser.add_argument(
        "--cold", action="store_true", help="evict the shards from the page cache before each run"
    )
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = json.dumps(worker(args.worker, args.path, args.max_rows))
        Path(args.result).write_text(result)
        sys.stdout.flush()
        sys.stderr.flush()
        # No interpreter teardown and no ray.shutdown(): closing a half-read HF streaming
        # pipeline at exit has hung (threads in futex waits), and ray.shutdown() with a half-read
        # iterator has aborted in Ray's core worker. The result is written; the parent kills
        # every process the method started (its cgroup's, or those the sampler saw).
        os._exit(0)

    from bench_open_export import machine_info

    skip = {m for m in args.skip.split(",") if m}
    methods = [m for m in args.only.split(",") if m and m not in skip]
    unknown = [m for m in methods if m not in METHODS + EXTRA_METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}")
    if args.json is None:
        suffix = "" if args.rows == DEFAULT_ROWS else f"_{args.rows}"
        args.json = HERE / "results" / f"out_of_core{suffix}.json"

    folder = make_dataset(args.data, args.rows, args.file_rows)
    info = dataset_info(folder)
    if args.generate_only:
        print(json.dumps(info, indent=1))
        return 0
    files = sorted(folder.glob("*.parquet"))
    args.limit_mode = None
    if args.mem_limit > 0:
        args.limit_mode = probe_cgroup(int(args.mem_limit * 2**30))
    if args.limit_mode:
        memory_note = f"each method in its own {args.limit_mode} of {args.mem_limit:g} GiB"
    elif args.mem_limit > 0:
        memory_note = "no memory limit could be applied (no writable memory cgroup): measured only"
    else:
        memory_note = "no memory limit (--mem-limit 0): measured only"
    full_epoch = args.max_rows == 0 or args.max_rows >= info["rows"]
    reference = reference_sums(folder) if full_epoch else None
    if not args.cold:
        _touch(files)

    # Runs: each method under the limit (where one applies), and without it for --nolimit methods.
    nolimit = {m for m in args.nolimit.split(",") if m}
    runs: list[tuple[str, str, bool]] = []
    for method in methods:
        runs.append((method, method, bool(args.limit_mode)))
        if args.limit_mode and method in nolimit:
            runs.append((f"{method} (no limit)", method, False))
    results: dict[str, list[dict]] = {key: [] for key, _, _ in runs}
    for repeat in range(args.repeats):
        for key, method, limited in runs:
            record = _run(method, limited, folder, args, files)
            results[key].append(record)
            line = (
                f"{record['rows_per_s'] / 1e6:7.3f} M rows/s, first batch "
                f"{record['first_batch_s']:.2f} s"
                if record.get("rows_per_s")
                else record.get("error", "?")
            )
            print(
                f"[{repeat}] {key:28s} {line}; peak RssAnon {record['peak_rss_anon_all_mb']:.0f} "
                f"MiB (driver {record['peak_rss_anon_driver_mb']:.0f}); other load "
                f"{record['other_load']:.2f}",
                file=sys.stderr,
            )
            if "error" in record and record.get("stderr_tail"):
                print(record["stderr_tail"][-1500:], file=sys.stderr)

    def median(records: list[dict], key: str) -> float | None:
        values = [r[key] for r in records if r.get(key) is not None and "error" not in r]
        return statistics.median(values) if values else None

    machine = machine_info()
    machine["versions"] = _versions()
    gb = 1e9
    print(
        f"\nMachine: {machine['cpu_model']} ({machine['usable_cpus']} cores, {machine['ram_gib']} "
        f"GiB); batches of {BATCH} x (f0..f7 -> (B, 8) float32, label int64)"
    )
    print(
        f"Dataset: {info['rows']:,} rows in {info['files']} Parquet files ({info['row_groups']} "
        f"row groups), {info['on_disk_bytes'] / gb:.2f} GB on disk, "
        f"{info['decoded_selected_bytes'] / gb:.2f} GB decoded (f0..f7 + label; "
        f"{info['decoded_all_bytes'] / gb:.2f} GB all columns)"
    )
    ratio_note = (
        f" (decoded selection = {info['decoded_selected_bytes'] / (args.mem_limit * 2**30):.2f}x "
        "the limit; an OOM kill of any of its processes ends a run)"
        if args.limit_mode
        else ""
    )
    print(f"Memory: {memory_note}{ratio_note}")
    page_cache = (
        "evicted before each run (--cold)"
        if args.cold
        else "shards read once before the runs (warm)"
    )
    print(f"Page cache: {page_cache}")
    print(
        "Rows per run: "
        f"{'one epoch' if args.max_rows == 0 else f'{args.max_rows:,} (or an epoch)'}; "
        f"{'medians of ' + str(args.repeats) + ' runs' if args.repeats > 1 else 'one run each'}; "
        f"Ray object store {args.ray_object_store / 1e6:.0f} MB\n"
    )
    has_group = bool(args.limit_mode)
    header = (
        "| method | shuffle | M rows/s | relay / method | first batch (s) | peak RssAnon, all "
        "processes (MiB) | driver (MiB) | driver after imports (MiB) |"
    )
    rule = "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    if has_group:
        header += " cgroup peak (MiB) | shm peak (MiB) |"
        rule += " ---: | ---: |"
    print(header + " other load (cores) | check |")
    print(rule + " ---: | --- |")
    shuffles = {
        "relay": "block (row groups, 1 M-row windows)",
        "ray": f"files + local buffer {SHUFFLE_BUFFER:,}",
        "datasets": f"shards + buffer {HF_BUFFER:,} from 10 shards",
        "datasets.1shard": f"shards + buffer {HF_BUFFER:,} from 1 shard",
        "datasets.DataLoader": f"shards + buffer {HF_BUFFER:,} from 10 shards",
        "pyarrow": "none",
    }
    relay_rate = median(results.get(REFERENCE, []), "rows_per_s")
    summary: dict = {}

    def cell(value: float | None, digits: int = 0) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for key, method, limited in runs:
        records = results[key]
        rate = median(records, "rows_per_s")
        if rate is None:
            last = records[-1]
            error = last.get("error", "?")
            row = (
                f"| {key} | {shuffles[method]} | failed: {error} | | | "
                f"{last['peak_rss_anon_all_mb']:.0f} | {last['peak_rss_anon_driver_mb']:.0f} | |"
            )
            if has_group:
                row += (
                    f" {cell(last.get('cgroup_peak_mb'))} | "
                    f"{cell(last.get('cgroup_peak_shmem_mb'))} |"
                )
            print(row + f" {last.get('other_load', 0):.2f} | |")
            summary[key] = {
                "error": error,
                "limited": limited,
                "peak_rss_anon_all_mb": last["peak_rss_anon_all_mb"],
                "cgroup_peak_mb": last.get("cgroup_peak_mb"),
            }
            continue
        check = []
        for r in records:
            if "error" in r:
                continue
            if r["bad_batches"]:
                check.append(f"{r['bad_batches']} bad batches")
            if reference and r["epoch_done"]:
                if r["rows_seen"] != info["rows"]:
                    check.append(f"rows {r['rows_seen']:,} != {info['rows']:,}")
                if r["label_sum"] != reference["label_sum"]:
                    check.append("WRONG label sum")
                if abs(r["f0_sum"] - reference["f0_sum"]) > 1e-6 * info["rows"]:
                    check.append("WRONG f0 sum")
        check_text = "; ".join(sorted(set(check))) or ("epoch ok" if reference else "shapes ok")
        ratio = f"{relay_rate / rate:.2f}x" if relay_rate else "-"
        values = {
            k: median(records, k)
            for k in (
                "first_batch_s",
                "peak_rss_anon_all_mb",
                "peak_rss_anon_driver_mb",
                "cgroup_peak_mb",
                "cgroup_peak_shmem_mb",
                "init_s",
                "driver_rss_anon_after_imports_mb",
                "other_load",
            )
        }
        first = f"{values['first_batch_s']:.2f}" + (
            f" (init {values['init_s']:.1f})" if values["init_s"] else ""
        )
        row = (
            f"| {key} | {shuffles[method]} | {rate / 1e6:.3f} | {ratio} | {first} | "
            f"{values['peak_rss_anon_all_mb']:.0f} | {values['peak_rss_anon_driver_mb']:.0f} | "
            f"{values['driver_rss_anon_after_imports_mb']:.0f} |"
        )
        if has_group:
            row += f" {cell(values['cgroup_peak_mb'])} | {cell(values['cgroup_peak_shmem_mb'])} |"
        print(f"{row} {values['other_load']:.2f} | {check_text} |")
        summary[key] = {"rows_per_s": rate, "limited": limited, **values, "check": check_text}

    def rate_of(method: str) -> tuple[float | None, str]:
        for key in (method, f"{method} (no limit)"):
            if summary.get(key, {}).get("rows_per_s"):
                return summary[key]["rows_per_s"], (
                    ""
                    if summary[key]["limited"] or not args.limit_mode
                    else " (peer without the limit)"
                )
        return None, ""

    targets = []
    (ray_rate, ray_note), (arrow_rate, arrow_note) = rate_of("ray"), rate_of("pyarrow")
    relay_anon = summary.get("relay", {}).get("peak_rss_anon_all_mb")
    if relay_rate and ray_rate:
        targets.append(
            (
                "relay >= 3x Ray Data shuffled rows/s",
                f"{relay_rate / ray_rate:.2f}x{ray_note}",
                relay_rate >= 3 * ray_rate,
            )
        )
    else:
        targets.append(("relay >= 3x Ray Data shuffled rows/s", "not measured", None))
    if relay_rate and arrow_rate:
        targets.append(
            (
                "relay >= hand-written unshuffled pyarrow loop rows/s",
                f"{relay_rate / arrow_rate:.2f}x{arrow_note}",
                relay_rate >= arrow_rate,
            )
        )
    else:
        targets.append(
            ("relay >= hand-written unshuffled pyarrow loop rows/s", "not measured", None)
        )
    if relay_anon is not None and relay_rate:
        targets.append(
            (
                "relay peak RssAnon < 1 GB (954 MiB)",
                f"{relay_anon:.0f} MiB",
                relay_anon * 2**20 < 1e9,
            )
        )
    elif "error" in summary.get("relay", {}):
        targets.append(
            (
                "relay peak RssAnon < 1 GB (954 MiB)",
                f"failed ({summary['relay']['error']}) at {relay_anon:.0f} MiB",
                False,
            )
        )
    else:
        targets.append(("relay peak RssAnon < 1 GB (954 MiB)", "not measured", None))
    print("\nTargets:")
    for name, value, met in targets:
        print(f"- {name}: {value} -> {'met' if met else 'NOT met' if met is False else '-'}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": machine,
                "dataset": info,
                "memory": memory_note,
                "mem_limit_gib": args.mem_limit if args.limit_mode else None,
                "cold": args.cold,
                "max_rows": args.max_rows,
                "ray_object_store_bytes": args.ray_object_store,
                "command": sys.argv,
                "shuffle": shuffles,
                "reference_sums": reference,
                "summary": summary,
                "targets": [{"target": n, "value": v, "met": m} for n, v, m in targets],
                "results": results,
            },
            indent=1,
        )
    )
    print(f"\n{args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
