"""The ``relay`` command line.

``relay inspect FILE``: schema, rows, record batches, file size, IPC format (file or stream),
per-column buffer alignment and nulls, compression, and whether each column exports without a
copy (and why not).

``relay convert IN OUT``: rewrites anything ``relay_ml.scan`` reads (Arrow IPC, Parquet, CSV,
NDJSON, several files or a partitioned folder) as a zero-copy-ready Arrow IPC file: 64-byte
aligned buffers, no compression, and large record batches (one, unless the data is larger than
``--max-batch-bytes``); or, when OUT ends in ``.parquet`` / ``.pq``, as a zstd Parquet file.
Shows a progress bar (tqdm, when installed: ``pip install tqdm``) for inputs larger than
256 MiB.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from relay_ml._relay import NativeIpcWriter, __version__, inspect_file
from relay_ml.errors import NotArrowFileError, RelayError
from relay_ml.frame import scan
from relay_ml.io import PARQUET_SUFFIXES, write_parquet

#: Inputs larger than this get a progress bar.
PROGRESS_MIN_BYTES = 256 * 1024 * 1024
#: Default upper bound on the size of one output record batch.
DEFAULT_MAX_BATCH_BYTES = 2 * 1024**3


def _size(n: int) -> str:
    size: float = n
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    raise AssertionError("unreachable")


def format_report(report: dict[str, Any]) -> str:
    batches = report["batches"]
    compressions = sorted({b["compression"] for b in batches if b["compression"]})
    lines = [
        f"file:        {report['path']}",
        f"size:        {_size(report['size'])} ({report['size']:,} bytes)",
        f"rows:        {report['num_rows']:,}",
    ]
    if not report.get("decoded"):
        lines.append(
            f"batches:     {len(batches)}"
            + (
                f" (rows per batch {min(b['rows'] for b in batches):,}"
                f"..{max(b['rows'] for b in batches):,})"
                if batches
                else ""
            )
        )
    lines += [
        "format:      "
        + (
            f"{report['format']} (decoded on read; relay convert writes a file that maps)"
            if report.get("decoded")
            else f"Arrow IPC {report['format']}"
        ),
        "compression: "
        + (
            ", ".join(compressions) + " (decompressed into memory on read)"
            if compressions
            else "none"
        ),
        "",
    ]
    columns = report["columns"]
    name_w = max([len("column")] + [len(c["name"]) for c in columns])
    type_w = max([len("type")] + [len(c["type"]) for c in columns])
    lines.append(
        f"{'column':<{name_w}}  {'type':<{type_w}}  {'align':>5}  {'nulls':>10}  zero-copy"
    )
    for c in columns:
        align = "-" if c["alignment"] is None else str(c["alignment"])
        nulls = "?" if c["null_count"] is None else f"{c['null_count']:,}"
        verdict = "yes" if c["zero_copy"] else f"no: {c['reason']}"
        lines.append(
            f"{c['name']:<{name_w}}  {c['type']:<{type_w}}  {align:>5}  {nulls:>10}  {verdict}"
        )
    return "\n".join(lines)


#: Formats other than Arrow IPC that ``scan`` reads, by file suffix.
_DECODED_FORMATS = {
    ".parquet": "Parquet",
    ".pq": "Parquet",
    ".csv": "CSV",
    ".tsv": "CSV",
    ".json": "NDJSON",
    ".jsonl": "NDJSON",
    ".ndjson": "NDJSON",
}


def decoded_report(path: str) -> dict[str, Any]:
    """``inspect_file``'s report for a file ``scan`` decodes (Parquet, CSV, NDJSON): from the
    file's metadata, without decoding a column. Every column is a copy, decoded into memory,
    for the reason its ``copy_reason`` gives."""
    frame = scan(path)
    name = _DECODED_FORMATS.get(os.path.splitext(path)[1].lower(), "a decoded format")
    return {
        "path": path,
        "size": os.path.getsize(path),
        "num_rows": len(frame),
        "format": name,
        "decoded": True,
        "batches": [],
        "columns": [
            {
                "name": column,
                "type": type_name,
                "alignment": None,
                "null_count": None,
                "zero_copy": False,
                "reason": frame[column].copy_reason,
            }
            for column, type_name in frame.schema.items()
        ],
    }


def _progress_bar(total_rows: int, enabled: bool) -> Any:
    """A tqdm bar over rows, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(
        total=total_rows, unit="rows", unit_scale=True, desc="relay convert", file=sys.stderr
    )


def _input_bytes(source: str) -> int:
    """The bytes of the file, or of every file of the folder or glob, ``source`` names."""
    if os.path.isfile(source):
        return os.path.getsize(source)
    if os.path.isdir(source):
        return sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(source) for f in files
        )
    return sum(os.path.getsize(p) for p in glob.glob(source, recursive=True) if os.path.isfile(p))


def convert(
    source: str,
    target: str,
    batch_size: int | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    progress: bool | None = None,
) -> dict[str, int]:
    """Rewrites ``source`` (anything :func:`relay_ml.scan` reads) as a zero-copy-ready Arrow IPC
    file at ``target``, or as a Parquet file when ``target`` ends in ``.parquet`` / ``.pq``
    (``batch_size`` then sets the row group size).

    Record batches hold ``batch_size`` rows; by default, all rows (one batch, so that every
    column is one contiguous view), or as many as fit in ``max_batch_bytes`` when the data is
    larger. The output is written under a temporary name and renamed into place at the end, so
    ``target`` may be ``source`` itself. ``progress`` (default: inputs over 256 MiB) shows a
    tqdm bar on stderr when tqdm is installed.
    """
    frame = scan(source)
    rows = frame.num_rows
    if target.lower().endswith(PARQUET_SUFFIXES):
        bar = _progress_bar(
            rows, _input_bytes(source) > PROGRESS_MIN_BYTES if progress is None else progress
        )
        try:
            summary = write_parquet(frame, target, row_group_size=batch_size)
            if bar is not None:
                bar.update(rows)
        finally:
            if bar is not None:
                bar.close()
        return summary
    size = _input_bytes(source)
    if batch_size is None:
        bytes_per_row = size / max(rows, 1)
        batch_size = max(1, min(rows, int(max_batch_bytes / max(bytes_per_row, 1e-9))))
    elif batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    bar = _progress_bar(rows, size > PROGRESS_MIN_BYTES if progress is None else progress)
    writer = NativeIpcWriter(target)
    try:
        for start in range(0, rows, batch_size):
            part = frame.slice(start, batch_size)
            writer.write(part._native)
            if bar is not None:
                bar.update(part.num_rows)
        summary = dict(writer.finish(frame._native))
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay", description="relay_ml command line tools")
    parser.add_argument("--version", action="version", version=f"relay_ml {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect", help="describe a file (Arrow IPC, Parquet, CSV, NDJSON) and its exports"
    )
    inspect.add_argument("file", help="path to a file that relay_ml.scan reads")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    conv = commands.add_parser(
        "convert",
        help="rewrite data as zero-copy-ready Arrow IPC (64-byte aligned, uncompressed, "
        "large batches) or Parquet",
    )
    conv.add_argument(
        "input", help="what to read: an Arrow IPC, Parquet, CSV or NDJSON file, a glob or a folder"
    )
    conv.add_argument(
        "output", help="Arrow IPC file to write, or Parquet for .parquet/.pq (replaced atomically)"
    )
    conv.add_argument(
        "--batch-size", type=int, default=None, help="rows per record batch (default: one batch)"
    )
    conv.add_argument(
        "--max-batch-bytes",
        type=int,
        default=DEFAULT_MAX_BATCH_BYTES,
        help="without --batch-size, the largest record batch to write (default: 2 GiB)",
    )
    bar = conv.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show a progress bar",
    )
    bar.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show a progress bar"
    )
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except BrokenPipeError:
        # The reader went away (`relay inspect f | head`): not an error. Output still buffered
        # for the closed pipe is dropped so that the interpreter's exit does not fail on it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "inspect":
        try:
            try:
                report = inspect_file(args.file)
            except NotArrowFileError:
                report = decoded_report(args.file)
        except RelayError as error:
            print(f"relay inspect: {error}", file=sys.stderr)
            return 1
        print(json.dumps(report, indent=2) if args.json else format_report(report))
    elif args.command == "convert":
        if args.batch_size is not None and args.batch_size < 1:
            parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
        try:
            summary = convert(
                args.input, args.output, args.batch_size, args.max_batch_bytes, args.progress
            )
        except RelayError as error:
            print(f"relay convert: {error}", file=sys.stderr)
            return 1
        print(
            f"{args.output}: {summary['rows']:,} rows in {summary['batches']} record "
            f"batch{'es' if summary['batches'] != 1 else ''}, {_size(summary['bytes'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
