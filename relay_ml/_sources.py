"""What ``relay_ml.scan`` reads, as the engine takes it: the source (a path, a glob, a
directory, or a list of paths) and the schema that replaces CSV / NDJSON inference. The engine
lists the files, tells their formats and reads their hive partitions."""

from __future__ import annotations

import os
from typing import Any

from relay_ml._core import dtype_name
from relay_ml.errors import RelayTypeError


def source_arg(source: Any) -> str | list[str]:
    """``source`` of ``scan()`` as the engine takes it: a path, glob or directory as text, or a
    list of paths."""
    if isinstance(source, (list, tuple)):
        for item in source:
            if not isinstance(item, (str, os.PathLike)):
                raise RelayTypeError(
                    f"scan() takes paths (str or os.PathLike), got {type(item).__name__} in the "
                    "list"
                )
        return [os.fspath(item) for item in source]
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    raise RelayTypeError(
        f"scan() takes a path, a glob, a directory or a list of paths, got {type(source).__name__}"
    )


def schema_pairs(schema: Any) -> list[tuple[str, str]] | None:
    """``schema=`` (a pyarrow schema or a dict name -> dtype) as ``[(name, dtype name)]``."""
    if schema is None:
        return None
    if isinstance(schema, dict):
        return [(str(name), dtype_name(dtype)) for name, dtype in schema.items()]
    if type(schema).__module__.startswith("pyarrow") and hasattr(schema, "names"):
        return [(f.name, dtype_name(f.type)) for f in schema]
    raise RelayTypeError(
        "scan(): schema must be a pyarrow.Schema or a dict name -> dtype, got "
        f"{type(schema).__name__}"
    )
