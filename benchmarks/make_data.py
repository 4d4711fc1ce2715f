"""Generate the benchmark workloads `tab` and `emb` (see DESIGN.md, "Benchmark workloads").

Both files are Arrow IPC *files* (not streams) written by pyarrow -- an independent writer --
as ONE uncompressed record batch, so that a single-chunk fixed-width column can be exported as a
view of the mapping.

    tab: 20,000,000 rows
         id     int64                 0..n-1
         age    int32                 uniform integers 0..99
         f0..f7 float32               standard normal
         label  int64                 uniform integers 0..9
         city   dictionary<int32, string>, 8 city names, uniform
    emb:  4,000,000 rows
         id     int64                 0..n-1
         emb    fixed_size_list<float32, 64>, standard normal
         label  int64                 uniform integers 0..9

Determinism: every (column, chunk) pair gets its own generator,
``numpy.random.default_rng([SEED, workload, column, chunk])``, with a fixed chunk length. The
data therefore does not depend on the machine, and a file made with ``--rows-scale s`` holds
exactly the first rows of the full-size file.

Memory: each column is allocated once at its final size and filled chunk by chunk in place;
the numpy buffers are wrapped by pyarrow without a copy and written as one record batch. Peak RSS
is about the size of the file (~1.1 GB) plus one chunk.

Usage:
    python benchmarks/make_data.py --out benchmarks/data [--rows-scale 1.0] [--only tab|emb]

A file that already exists with the expected schema, one record batch and the expected row count
is kept. New files are written to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

SEED = 20240611
CHUNK_ROWS = 1 << 20  # rows per generator chunk (fixed: part of the data's definition)

TAB_ROWS = 20_000_000
EMB_ROWS = 4_000_000
EMB_DIM = 64
CITIES = ["Amsterdam", "Berlin", "Cairo", "Delhi", "Lima", "Oslo", "Seoul", "Tokyo"]

WORKLOAD_IDS = {"tab": 1, "emb": 2}

TAB_SCHEMA = pa.schema(
    [("id", pa.int64()), ("age", pa.int32())]
    + [(f"f{i}", pa.float32()) for i in range(8)]
    + [("label", pa.int64()), ("city", pa.dictionary(pa.int32(), pa.string()))]
)
EMB_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("emb", pa.list_(pa.field("item", pa.float32()), EMB_DIM)),
        ("label", pa.int64()),
    ]
)
SCHEMAS = {"tab": TAB_SCHEMA, "emb": EMB_SCHEMA}
FULL_ROWS = {"tab": TAB_ROWS, "emb": EMB_ROWS}


def rows_for(workload: str, rows_scale: float) -> int:
    return max(1, round(FULL_ROWS[workload] * rows_scale))


def file_name(workload: str, rows_scale: float) -> str:
    """`tab.arrow` at full size; `tab_x0.01.arrow` for a scaled-down copy."""
    if rows_scale == 1.0:
        return f"{workload}.arrow"
    return f"{workload}_x{rows_scale:g}.arrow"


def data_path(out_dir: str | os.PathLike, workload: str, rows_scale: float = 1.0) -> Path:
    return Path(out_dir) / file_name(workload, rows_scale)


def _rng(workload: str, column: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng([SEED, WORKLOAD_IDS[workload], column, chunk])


def _chunks(n_rows: int):
    for chunk, start in enumerate(range(0, n_rows, CHUNK_ROWS)):
        yield chunk, start, min(start + CHUNK_ROWS, n_rows)


def _fill_normal(out: np.ndarray, workload: str, column: int, row_width: int = 1) -> None:
    """Fill `out` (float32, n_rows * row_width values) with standard normals, chunk by chunk."""
    n_rows = out.shape[0] // row_width
    for chunk, start, stop in _chunks(n_rows):
        _rng(workload, column, chunk).standard_normal(
            out=out[start * row_width : stop * row_width], dtype=np.float32
        )


def _fill_integers(out: np.ndarray, workload: str, column: int, high: int) -> None:
    """Fill `out` with uniform integers in [0, high), chunk by chunk."""
    for chunk, start, stop in _chunks(out.shape[0]):
        out[start:stop] = _rng(workload, column, chunk).integers(
            0, high, size=stop - start, dtype=out.dtype
        )


def _wrap(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """Wrap a contiguous numpy buffer as an Arrow array without copying it."""
    assert values.flags.c_contiguous
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def build_tab(n_rows: int) -> pa.RecordBatch:
    columns = [_wrap(np.arange(n_rows, dtype=np.int64), pa.int64())]

    age = np.empty(n_rows, dtype=np.int32)
    _fill_integers(age, "tab", column=1, high=100)
    columns.append(_wrap(age, pa.int32()))

    for i in range(8):
        values = np.empty(n_rows, dtype=np.float32)
        _fill_normal(values, "tab", column=2 + i)
        columns.append(_wrap(values, pa.float32()))

    label = np.empty(n_rows, dtype=np.int64)
    _fill_integers(label, "tab", column=10, high=10)
    columns.append(_wrap(label, pa.int64()))

    city_codes = np.empty(n_rows, dtype=np.int32)
    _fill_integers(city_codes, "tab", column=11, high=len(CITIES))
    city = pa.DictionaryArray.from_arrays(
        _wrap(city_codes, pa.int32()), pa.array(CITIES, type=pa.string())
    )
    columns.append(city)

    return pa.RecordBatch.from_arrays(columns, schema=TAB_SCHEMA)


def build_emb(n_rows: int) -> pa.RecordBatch:
    ids = _wrap(np.arange(n_rows, dtype=np.int64), pa.int64())

    values = np.empty(n_rows * EMB_DIM, dtype=np.float32)
    _fill_normal(values, "emb", column=1, row_width=EMB_DIM)
    emb = pa.FixedSizeListArray.from_arrays(_wrap(values, pa.float32()), EMB_DIM)

    label = np.empty(n_rows, dtype=np.int64)
    _fill_integers(label, "emb", column=2, high=10)

    return pa.RecordBatch.from_arrays([ids, emb, _wrap(label, pa.int64())], schema=EMB_SCHEMA)


BUILDERS = {"tab": build_tab, "emb": build_emb}


def is_complete(path: Path, workload: str, n_rows: int) -> bool:
    """True if `path` is an IPC file with the workload's schema, one batch and `n_rows` rows."""
    if not path.exists():
        return False
    try:
        with pa.memory_map(str(path)) as source:
            reader = ipc.open_file(source)
            return (
                reader.schema.equals(SCHEMAS[workload])
                and reader.num_record_batches == 1
                and reader.get_batch(0).num_rows == n_rows
            )
    except (pa.ArrowInvalid, OSError):
        return False


def make(out_dir: str | os.PathLike, workload: str, rows_scale: float = 1.0, verbose=True) -> Path:
    """Write one workload file unless a complete one already exists; return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_rows = rows_for(workload, rows_scale)
    path = data_path(out_dir, workload, rows_scale)
    if is_complete(path, workload, n_rows):
        if verbose:
            print(f"{path}: exists with {n_rows:,} rows, kept")
        return path

    started = time.perf_counter()
    batch = BUILDERS[workload](n_rows)
    built = time.perf_counter()

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        options = ipc.IpcWriteOptions(compression=None)
        with (
            pa.OSFile(str(tmp), "wb") as sink,
            ipc.new_file(sink, batch.schema, options=options) as writer,
        ):
            writer.write_batch(batch)
        del batch
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    written = time.perf_counter()

    if verbose:
        size_gb = path.stat().st_size / 1e9
        print(
            f"{path}: {n_rows:,} rows, {size_gb:.3f} GB "
            f"(generate {built - started:.1f} s, write {written - built:.1f} s)"
        )
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "data"), help="output folder")
    parser.add_argument("--rows-scale", type=float, default=1.0, help="fraction of full size")
    parser.add_argument("--only", choices=sorted(BUILDERS), help="make only this workload")
    args = parser.parse_args(argv)
    if args.rows_scale <= 0:
        parser.error("--rows-scale must be > 0")

    workloads = [args.only] if args.only else ["tab", "emb"]
    for workload in workloads:
        make(args.out, workload, args.rows_scale)
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
