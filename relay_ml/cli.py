"""The ``relay`` command line.

``relay inspect FILE``: schema, rows, record batches, file size, per-column buffer alignment
and nulls, compression, and whether each column exports without a copy (and why not).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from relay_ml._relay import inspect_file
from relay_ml.errors import RelayError


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    raise AssertionError("unreachable")


def format_report(report: dict[str, Any]) -> str:
    batches = report["batches"]
    compressions = sorted({b["compression"] for b in batches if b["compression"]})
    lines = [
        f"file:        {report['path']}",
        f"size:        {_size(report['size'])} ({report['size']:,} bytes)",
        f"rows:        {report['num_rows']:,}",
        f"batches:     {len(batches)}" + (f" (rows per batch {min(b['rows'] for b in batches):,}"
                                           f"..{max(b['rows'] for b in batches):,})" if batches else ""),
        f"compression: {', '.join(compressions) if compressions else 'none'}",
        "",
    ]
    columns = report["columns"]
    name_w = max([len("column")] + [len(c["name"]) for c in columns])
    type_w = max([len("type")] + [len(c["type"]) for c in columns])
    lines.append(f"{'column':<{name_w}}  {'type':<{type_w}}  {'align':>5}  {'nulls':>10}  zero-copy")
    for c in columns:
        align = "-" if c["alignment"] is None else str(c["alignment"])
        nulls = "?" if c["null_count"] is None else f"{c['null_count']:,}"
        verdict = "yes" if c["zero_copy"] else f"no: {c['reason']}"
        lines.append(f"{c['name']:<{name_w}}  {c['type']:<{type_w}}  {align:>5}  {nulls:>10}  {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay", description="relay_ml command line tools")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="describe an Arrow IPC file and its zero-copy exports")
    inspect.add_argument("file", help="path to an Arrow IPC file")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    if args.command == "inspect":
        try:
            report = inspect_file(args.file)
        except RelayError as error:
            print(f"relay inspect: {error}", file=sys.stderr)
            return 1
        print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
